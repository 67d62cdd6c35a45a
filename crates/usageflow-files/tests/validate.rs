//! Validating uploaded records row by row against the sample catalogue and the file.

use std::path::Path;

use chrono::NaiveDate;
use rust_xlsxwriter::Workbook;
use usageflow_files::{FileContext, ReadLimits, Validation, read_workbook, validate};
use usageflow_model::{Catalogue, Period, ReportingSchema};

fn catalogue() -> Catalogue {
    usageflow_catalog::load_dir(
        &Path::new(&std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo")).join("../../config/catalog"),
    )
    .unwrap()
}

fn november() -> Period {
    Period { from: NaiveDate::from_ymd_opt(2026, 11, 1).unwrap(), to: NaiveDate::from_ymd_opt(2026, 11, 30).unwrap() }
}

/// A workbook with a `records` sheet (and `categories` when given).
fn upload(headers: &[&str], rows: &[&[&str]], categories: &[(&str, &str)]) -> Vec<u8> {
    let mut book = Workbook::new();
    let sheet = book.add_worksheet().set_name("records").unwrap();
    for (c, h) in headers.iter().enumerate() {
        sheet.write_string(0, c as u16, *h).unwrap();
    }
    for (r, row) in rows.iter().enumerate() {
        for (c, v) in row.iter().enumerate() {
            if !v.is_empty() {
                sheet.write_string(r as u32 + 1, c as u16, *v).unwrap();
            }
        }
    }
    if !categories.is_empty() {
        let sheet = book.add_worksheet().set_name("categories").unwrap();
        sheet.write_string(0, 0, "category_id").unwrap();
        sheet.write_string(0, 1, "category_name").unwrap();
        for (r, (id, name)) in categories.iter().enumerate() {
            sheet.write_string(r as u32 + 1, 0, *id).unwrap();
            sheet.write_string(r as u32 + 1, 1, *name).unwrap();
        }
    }
    book.save_to_buffer().unwrap()
}

const QT: &[&str] = &[
    "record_id",
    "item_search_criteria",
    "item_search_value",
    "quantity",
    "start_time_utc",
    "end_time_utc",
    "asset_search_criteria",
    "asset_search_value",
    "category_id",
];

fn check(bytes: &[u8], product: &str, contract: &str, schema: ReportingSchema) -> Validation {
    let catalogue = catalogue();
    let book = read_workbook(bytes, &ReadLimits::default()).unwrap();
    validate(
        &book,
        &FileContext { catalogue: &catalogue, product_id: product, contract_id: contract, schema, period: november() },
    )
}

fn fieldlink(bytes: &[u8]) -> Validation {
    check(bytes, "PRD-200-200-002", "CRD-20001-10001-00001", ReportingSchema::Qt)
}

#[test]
fn a_valid_qt_file() {
    let bytes = upload(
        QT,
        &[
            &[
                "r1",
                "item.mpn",
                "FL-DATA-MB",
                "10.25",
                "2026-11-01 00:00:00",
                "2026-11-01 23:59:59",
                "asset.id",
                "AS-1000-0719-1201",
                "",
            ],
            &[
                "r2",
                "item.local_id",
                "sms",
                "3",
                "2026-11-02 00:00:00",
                "2026-11-02 23:59:59",
                "parameter.iccid",
                "89492923278090435886",
                "",
            ],
            &[
                "r3",
                "item.global_id",
                "PRD-200-200-002-0003",
                "30",
                "2026-10-20 00:00:00",
                "2026-10-20 23:59:59",
                "asset.id",
                "AS-1000-0719-1201",
                "",
            ],
        ],
        &[],
    );
    let v = fieldlink(&bytes);
    assert!(v.is_valid(), "{:?}", v.errors);
    assert_eq!(v.valid.len(), 3);
    assert_eq!(v.valid[0].quantity.to_string(), "10.25");
    assert_eq!(v.valid[1].asset_id, "AS-1000-8638-1202");
    assert_eq!(v.valid[1].item.mpn, "FL-SMS");
    assert_eq!(v.valid[0].category_id, "generic_category", "no categories sheet: the generic one");
    assert_eq!(v.categories.len(), 1);
}

#[test]
fn every_problem_is_reported_with_row_and_column() {
    let bytes = upload(
        QT,
        &[
            &[
                "r1",
                "item.mpn",
                "FL-DATA-MB",
                "1",
                "2026-11-01 00:00:00",
                "2026-11-01 01:00:00",
                "asset.id",
                "AS-1000-0719-1201",
                "data",
            ],
            &[
                "r1",
                "item.mpn",
                "FL-DATA-MB",
                "1",
                "2026-11-01 00:00:00",
                "2026-11-01 01:00:00",
                "asset.id",
                "AS-1000-0719-1201",
                "data",
            ],
            &["r3", "item.sku", "X", "1", "2026-11-01 00:00:00", "2026-11-01 01:00:00", "asset.id", "AS-9", "data"],
            &[
                "r4",
                "item.mpn",
                "FL-SMS",
                "1.5",
                "2026-11-01T00:00:00+02:00",
                "2026-11-01 01:00:00",
                "asset.id",
                "AS-1000-0719-1201",
                "voice",
            ],
            &[
                "r5",
                "item.mpn",
                "FL-DATA-MB",
                "-2",
                "2026-11-30 00:00:00",
                "2026-12-01 00:00:00",
                "asset.id",
                "AS-1000-0719-1201",
                "data",
            ],
            &[
                "r6",
                "item.mpn",
                "FL-DATA-MB",
                "<b>1</b>",
                "2026-11-01 00:00:00",
                "2026-11-01 01:00:00",
                "asset.id",
                "AS-1000-0719-1201",
                "data",
            ],
            &[
                "",
                "item.mpn",
                "FL-DATA-MB",
                "1",
                "2026-11-02 00:00:00",
                "2026-11-01 01:00:00",
                "asset.id",
                "AS-1000-0719-1201",
                "data",
            ],
        ],
        &[("data", "Data")],
    );
    let v = fieldlink(&bytes);
    assert!(!v.is_valid());
    assert_eq!(v.valid.len(), 1);
    let at = |row: u32, column: &str| -> String {
        v.errors
            .iter()
            .filter(|e| e.row == row && e.column.as_deref() == Some(column))
            .map(|e| e.reason.clone())
            .collect::<Vec<_>>()
            .join("; ")
    };
    assert_eq!(at(3, "record_id"), "record_id `r1` is used already on row 2");
    assert!(at(4, "item_search_criteria").contains("`item.sku` is not item.mpn"), "{v:?}");
    assert!(at(4, "asset_search_value").contains("no asset of product PRD-200-200-002 matches asset.id `AS-9`"));
    assert_eq!(
        at(5, "quantity"),
        "quantity 1.5 of item FL-SMS has 1 decimal place(s); the item's precision Integer allows 0"
    );
    assert!(at(5, "start_time_utc").contains("is not in UTC"), "{v:?}");
    assert!(at(5, "category_id").contains("category `voice` is not defined"));
    assert_eq!(at(6, "quantity"), "-2 is negative");
    assert!(
        at(6, "end_time_utc")
            .contains("ends after the file's period (2026-11-30) and the product accepts no future charges")
    );
    assert!(at(7, "quantity").contains("HTML markup"));
    assert_eq!(at(8, "record_id"), "`record_id` is required");
    assert!(at(8, "end_time_utc").contains("before it starts"));
    assert_eq!(v.invalid_rows(), 6);
}

#[test]
fn schema_columns_dynamic_items_tiers_and_contracts() {
    // TR needs amount and tier columns: a file-level error.
    let v = check(&upload(QT, &[], &[]), "PRD-100-100-001", "CRD-10001-10001-00001", ReportingSchema::Tr);
    assert_eq!(v.errors.len(), 1);
    assert_eq!(v.errors[0].row, 0);
    assert!(
        v.errors[0].reason.contains("lacks the column(s) `amount`, `tier` required for schema TR"),
        "{:?}",
        v.errors
    );

    let mut tr = QT.to_vec();
    tr.extend(["amount", "tier", "item_name", "item_mpn", "item_precision"]);
    let rows: &[&[&str]] = &[
        // A dynamic item on Nimbus (dynamic items on).
        &[
            "d1",
            "item.mpn",
            "NIM-GPU-H",
            "1.25",
            "2026-11-03 10:00:00",
            "2026-11-03 11:00:00",
            "asset.id",
            "AS-1000-7919-0001",
            "",
            "2.50",
            "1",
            "GPU hours",
            "NIM-GPU-H",
            "decimal(2)",
        ],
        // Tier 2 on an asset without a tier-2 reseller... and an asset of another contract.
        &[
            "d2",
            "item.mpn",
            "NIM-VCPU-H",
            "1",
            "2026-11-03 10:00:00",
            "2026-11-03 11:00:00",
            "asset.id",
            "AS-1000-5019-0901",
            "",
            "1",
            "3",
            "",
            "",
            "",
        ],
    ];
    let v = check(&upload(&tr, rows, &[]), "PRD-100-100-001", "CRD-10001-10001-00001", ReportingSchema::Tr);
    assert_eq!(v.valid.len(), 1, "{:?}", v.errors);
    let dynamic = &v.valid[0];
    assert_eq!((dynamic.item.id.as_deref(), dynamic.item.mpn.as_str()), (None, "NIM-GPU-H"));
    assert_eq!((dynamic.amount.map(|a| a.to_string()), dynamic.tier), (Some("2.50".into()), Some(1)));
    let reasons: Vec<_> = v.errors.iter().map(|e| e.reason.as_str()).collect();
    assert!(reasons.iter().any(|r| r.contains("tier `3` is not 0, 1 or 2")), "{reasons:?}");
    assert!(
        reasons.iter().any(|r| r.contains("belongs to contract CRD-10001-10003-00001, not to this file's")),
        "{reasons:?}"
    );
}

#[test]
fn incomplete_categories_are_a_file_problem() {
    let bytes = upload(QT, &[], &[("data", "")]);
    let v = fieldlink(&bytes);
    let reasons: Vec<(u32, &str)> = v.errors.iter().map(|e| (e.row, e.reason.as_str())).collect();
    assert_eq!(
        reasons,
        [
            (0, "`categories` row 2 needs a category_id and a category_name"),
            (0, "sheet `records` has no records below its header row")
        ]
    );
    assert_eq!(v.invalid_rows(), 0);
}

/// A row of the QT columns for asset AS-1000-0719-1201 on 2026-11-01.
fn sms_row<'a>(id: &'a str, start: &'a str, category: &'a str) -> [&'a str; 9] {
    [id, "item.mpn", "FL-SMS", "2", start, "2026-11-01 23:59:59", "asset.id", "AS-1000-0719-1201", category]
}

#[test]
fn rows_without_a_category_take_the_only_one_or_the_generic_one() {
    // Connect's own processed layout: a `categories` sheet with one category and records
    // without a `category_id` column.
    let columns: Vec<&str> = QT.iter().copied().filter(|c| *c != "category_id").collect();
    let row = sms_row("r1", "2026-11-01 00:00:00", "");
    let bytes = upload(&columns, &[&row[..8]], &[("Cat1", "Category Name")]);
    let v = fieldlink(&bytes);
    assert!(v.is_valid(), "{:?}", v.errors);
    assert_eq!(v.valid[0].category_id, "Cat1");
    assert_eq!(v.categories.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(), ["Cat1"]);

    // Several categories: a row that names none belongs to the generic one, which the file's
    // categories then list too; a row naming an undefined one is still refused.
    let rows = [
        sms_row("r1", "2026-11-01 00:00:00", "data"),
        sms_row("r2", "2026-11-01 00:00:00", ""),
        sms_row("r3", "2026-11-01 00:00:00", "voice"),
    ];
    let rows: Vec<&[&str]> = rows.iter().map(|r| &r[..]).collect();
    let v = fieldlink(&upload(QT, &rows, &[("data", "Data"), ("sms", "SMS")]));
    assert_eq!(v.valid.iter().map(|r| r.category_id.as_str()).collect::<Vec<_>>(), ["data", "generic_category"]);
    assert_eq!(v.categories.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(), ["data", "sms", "generic_category"]);
    assert_eq!(v.errors.len(), 1, "{:?}", v.errors);
    assert!(v.errors[0].reason.contains("category `voice` is not defined"), "{:?}", v.errors);
}

#[test]
fn the_2019_templates_usage_record_id_is_the_record_id() {
    let mut columns: Vec<&str> = QT.to_vec();
    columns[0] = "usage_record_id";
    let row = sms_row("legacy-1", "2026-11-01T00:00:00Z", "");
    let bytes = upload(&columns, &[&row], &[]);
    let book = read_workbook(&bytes, &ReadLimits::default()).unwrap();
    assert_eq!(book.columns[0], "record_id");
    let v = fieldlink(&bytes);
    assert!(v.is_valid(), "{:?}", v.errors);
    assert_eq!(v.valid[0].record_id, "legacy-1");
    assert_eq!(v.valid[0].start.to_rfc3339(), "2026-11-01T00:00:00+00:00", "ISO 8601 times are read too");
}
