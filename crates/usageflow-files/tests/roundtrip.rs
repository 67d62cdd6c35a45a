//! Usage workbooks written here read back (and validate) to exactly what was written, for
//! every reporting schema; oversized periods split into several valid workbooks.

use std::path::Path;

use chrono::NaiveDate;
use usageflow_files::{FileContext, ReadLimits, read_workbook, record_columns, validate, write_split, write_workbook};
use usageflow_model::{Catalogue, Category, Period, ReportingSchema};

fn catalogue() -> Catalogue {
    usageflow_catalog::load_dir(
        &Path::new(&std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo")).join("../../config/catalog"),
    )
    .unwrap()
}

fn november() -> Period {
    Period { from: NaiveDate::from_ymd_opt(2026, 11, 1).unwrap(), to: NaiveDate::from_ymd_opt(2026, 11, 30).unwrap() }
}

/// Rows for `product` under `contract` in `schema`'s columns (plus `extra` columns).
fn rows(
    catalogue: &Catalogue,
    product: &str,
    contract: &str,
    schema: ReportingSchema,
    extra: &[&str],
    n: usize,
) -> Vec<Vec<String>> {
    let p = catalogue.product(product).unwrap();
    let assets: Vec<_> = catalogue.assets_of(product, contract).filter(|a| a.tiers.tier1.is_some()).take(5).collect();
    let items: Vec<_> = p.items.iter().filter(|i| i.item_type == usageflow_model::ItemType::Ppu).collect();
    (0..n)
        .map(|i| {
            let item = items[i % items.len()];
            let asset = assets[i % assets.len()];
            let scale = item.precision.scale().min(2);
            let quantity =
                if scale == 0 { format!("{}", i + 1) } else { format!("{}.{:0w$}", i + 1, i % 10, w = scale as usize) };
            let day = 1 + (i % 28);
            let mut row = Vec::new();
            for column in record_columns(schema).iter().chain(extra) {
                row.push(match *column {
                    "record_id" => format!("rec-{i:05}"),
                    "record_note" => {
                        if i % 3 == 0 {
                            format!("note {i}")
                        } else {
                            String::new()
                        }
                    }
                    "item_search_criteria" => "item.mpn".into(),
                    "item_search_value" => item.mpn.clone(),
                    "amount" => format!("{}.{:02}", i * 3, i % 100),
                    "quantity" => quantity.clone(),
                    "start_time_utc" => format!("2026-11-{day:02} 00:00:00"),
                    "end_time_utc" => format!("2026-11-{day:02} 23:59:59"),
                    "asset_search_criteria" => "asset.id".into(),
                    "asset_search_value" => asset.id.clone(),
                    "category_id" => "usage".into(),
                    "tier" => (i % 2).to_string(),
                    "v.backup_policy" => "daily".into(),
                    _ => String::new(),
                });
            }
            row
        })
        .collect()
}

fn general(schema: ReportingSchema) -> Vec<(String, String)> {
    [
        ("report_id", "UF-2026-11-0001-0002"),
        ("usage_schema", schema.sheet_name()),
        ("report_start_time_utc", "2026-11-01 00:00:00"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect()
}

#[test]
fn every_schema_round_trips() {
    let catalogue = catalogue();
    let categories = vec![Category { id: "usage".into(), name: "Usage".into(), description: Some("All usage".into()) }];
    for (product, contract, schema, extra) in [
        ("PRD-200-200-002", "CRD-20001-10001-00001", ReportingSchema::Qt, &[][..]),
        ("PRD-100-100-001", "CRD-10001-10001-00001", ReportingSchema::Tr, &[][..]),
        ("PRD-300-300-003", "CRD-30001-10002-00002", ReportingSchema::Pr, &["v.backup_policy"][..]),
        ("PRD-300-300-004", "CRD-30001-10002-00002", ReportingSchema::Cr, &[][..]),
    ] {
        let data = rows(&catalogue, product, contract, schema, extra, 50);
        let mut columns = record_columns(schema);
        columns.extend(extra.iter());
        let refs: Vec<Vec<&str>> = data.iter().map(|r| r.iter().map(String::as_str).collect()).collect();
        let bytes = write_workbook(&general(schema), &categories, &columns, &refs).unwrap();

        let book = read_workbook(&bytes, &ReadLimits::default()).unwrap();
        assert_eq!(book.sheets, ["instructions", "general", "categories", "records"]);
        assert_eq!(book.general["usage_schema"], schema.sheet_name());
        assert_eq!(book.categories[0].description.as_deref(), Some("All usage"));
        assert_eq!(book.columns, columns);
        assert_eq!(book.records.len(), 50);
        for (row, written) in book.records.iter().zip(&data) {
            for (column, value) in columns.iter().zip(written) {
                assert_eq!(row.get(column).unwrap_or(""), value.as_str(), "{schema} {column} row {}", row.row);
            }
        }
        let v = validate(
            &book,
            &FileContext {
                catalogue: &catalogue,
                product_id: product,
                contract_id: contract,
                schema,
                period: november(),
            },
        );
        assert!(v.is_valid(), "{schema}: {:?}", &v.errors[..v.errors.len().min(3)]);
        assert_eq!(v.valid.len(), 50);
        assert_eq!(v.valid[1].quantity.to_string(), data[1][columns.iter().position(|c| *c == "quantity").unwrap()]);
        if schema.requires_amount() {
            assert!(v.valid.iter().all(|r| r.amount.is_some()));
        }
    }
}

#[test]
fn large_periods_split_into_valid_workbooks() {
    let catalogue = catalogue();
    let schema = ReportingSchema::Qt;
    let data = rows(&catalogue, "PRD-200-200-002", "CRD-20001-10001-00001", schema, &[], 25);
    let refs: Vec<Vec<&str>> = data.iter().map(|r| r.iter().map(String::as_str).collect()).collect();
    let columns = record_columns(schema);
    let parts = write_split(
        |part, parts| vec![("report_name".into(), format!("November 2026 ({} of {parts})", part + 1))],
        &[Category { id: "usage".into(), name: "Usage".into(), description: None }],
        &columns,
        &refs,
        10,
    )
    .unwrap();
    assert_eq!(parts.len(), 3);
    let mut ids = Vec::new();
    for (i, bytes) in parts.iter().enumerate() {
        let book = read_workbook(bytes, &ReadLimits::default()).unwrap();
        assert_eq!(book.general["report_name"], format!("November 2026 ({} of 3)", i + 1));
        let v = validate(
            &book,
            &FileContext {
                catalogue: &catalogue,
                product_id: "PRD-200-200-002",
                contract_id: "CRD-20001-10001-00001",
                schema,
                period: november(),
            },
        );
        assert!(v.is_valid(), "{:?}", v.errors);
        ids.extend(v.valid.into_iter().map(|r| r.record_id));
    }
    assert_eq!(ids.len(), 25);
    ids.dedup();
    assert_eq!(ids.len(), 25);
}

#[test]
fn csv_and_parquet_carry_the_same_records() {
    use arrow::array::AsArray;
    let catalogue = catalogue();
    let schema = ReportingSchema::Tr;
    let data = rows(&catalogue, "PRD-100-100-001", "CRD-10001-10001-00001", schema, &[], 12);
    let columns = record_columns(schema);
    let csv_bytes = usageflow_files::write_csv(&columns, &data).unwrap();
    let mut reader = csv::Reader::from_reader(&csv_bytes[..]);
    assert_eq!(reader.headers().unwrap().iter().collect::<Vec<_>>(), columns);
    let back: Vec<Vec<String>> = reader.records().map(|r| r.unwrap().iter().map(str::to_owned).collect()).collect();
    assert_eq!(back, data);

    let parquet = usageflow_files::write_parquet(&columns, &data).unwrap();
    let batches: Vec<_> =
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(parquet))
            .unwrap()
            .build()
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
    let batch = &batches[0];
    assert_eq!(batch.num_rows(), 12);
    let q = columns.iter().position(|c| *c == "quantity").unwrap();
    let quantity = batch.column(q).as_primitive::<arrow::datatypes::Decimal128Type>();
    let expected: rust_decimal::Decimal = data[3][q].parse().unwrap();
    assert_eq!(rust_decimal::Decimal::from_i128_with_scale(quantity.value(3), 8), expected);
    let bad = vec![
        data[0].iter().enumerate().map(|(i, v)| if i == q { "lots".to_owned() } else { v.clone() }).collect::<Vec<_>>(),
    ];
    let err = usageflow_files::write_parquet(&columns, &bad).unwrap_err();
    assert!(err.to_string().contains("`lots` in column quantity"), "{err}");
}
