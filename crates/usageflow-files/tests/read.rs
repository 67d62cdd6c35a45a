//! Reading Connect-format usage workbooks: the real processed file from the Connect platform,
//! workbooks written here with other layouts, and hostile uploads.

use std::path::Path;

use rust_xlsxwriter::{ExcelDateTime, Format, Workbook};
use usageflow_files::{ReadLimits, XlsxError, read_workbook};

/// A processed usage file produced by the Connect platform (a copy of
/// shared/fixtures/connect/processed-usage-file-qt.xlsx).
fn fixture() -> Vec<u8> {
    let path = Path::new(&std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo"))
        .join("../../tests/fixtures/processed-usage-file-qt.xlsx");
    std::fs::read(&path).expect("the Connect fixture")
}

#[test]
fn reads_the_processed_file_from_connect() {
    let book = read_workbook(&fixture(), &ReadLimits::default()).unwrap();
    assert_eq!(book.sheets, ["instructions", "general", "categories", "records"]);
    assert_eq!(book.general["report_id"], "UF-2021-07-2818-2430");
    assert_eq!(book.general["usage_schema"], "QT");
    assert_eq!(book.general["report_start_time_utc"], "2021-07-05 00:00:00");
    assert_eq!(book.general["report_end_time_utc"], "2021-07-08 23:59:59");
    assert_eq!(book.general["product_id"], "PRD-113-628-780");
    assert_eq!(book.general["distribution_contract_id"], "CRD-90574-88738-44763");
    assert_eq!(book.categories.len(), 1);
    assert_eq!((book.categories[0].id.as_str(), book.categories[0].name.as_str()), ("Cat1", "Category Name"));
    assert_eq!(book.records_sheet, "records");
    for column in usageflow_files::REQUIRED_COLUMNS {
        assert!(book.columns.iter().any(|c| c == column), "missing {column}: {:?}", book.columns);
    }
    assert_eq!(book.records.len(), 5);
    let first = &book.records[0];
    assert_eq!(first.row, 2);
    assert_eq!(first.get("record_id"), Some("R18-001-BGS-56001"));
    assert_eq!(first.get("item_search_criteria"), Some("item.global_id"));
    assert_eq!(first.get("asset_search_criteria"), Some("asset.id"));
    assert_eq!(first.get("start_time_utc"), Some("2019-11-13 07:20:42"));
    assert_eq!(first.get("quantity"), Some("4.0000"));
    let items: Vec<_> = book.records.iter().filter_map(|r| r.get("item_search_value")).collect();
    assert!(items.iter().all(|i| i.starts_with("PRD-838-787-106-")), "{items:?}");
}

fn workbook(build: impl FnOnce(&mut Workbook)) -> Vec<u8> {
    let mut book = Workbook::new();
    build(&mut book);
    book.save_to_buffer().unwrap()
}

#[test]
fn legacy_sheet_name_any_column_order_and_typed_cells() {
    let bytes = workbook(|book| {
        let sheet = book.add_worksheet().set_name("usage_records").unwrap();
        let headers = ["quantity", "record_id", "start_time_utc", "item_search_criteria", "v.aobo"];
        for (c, h) in headers.iter().enumerate() {
            sheet.write_string(0, c as u16, *h).unwrap();
        }
        sheet.write_number(1, 0, 0.1).unwrap();
        sheet.write_string(1, 1, "  r-1 ").unwrap();
        let date = ExcelDateTime::parse_from_str("2026-11-05 13:45:30").unwrap();
        sheet.write_datetime_with_format(1, 2, &date, &Format::new().set_num_format("yyyy-mm-dd hh:mm:ss")).unwrap();
        sheet.write_string(1, 3, "item.mpn").unwrap();
        sheet.write_string(1, 4, "customer-7").unwrap();
        sheet.write_number(3, 0, 4.0).unwrap(); // row 4; row 3 stays empty
    });
    let book = read_workbook(&bytes, &ReadLimits::default()).unwrap();
    assert_eq!(book.records_sheet, "usage_records");
    assert!(book.general.is_empty() && book.categories.is_empty());
    assert_eq!(book.records.len(), 2, "the empty row is skipped");
    let r = &book.records[0];
    assert_eq!(r.get("quantity"), Some("0.1"));
    assert_eq!(r.get("record_id"), Some("r-1"));
    assert_eq!(r.get("start_time_utc"), Some("2026-11-05 13:45:30"));
    assert_eq!(r.get("v.aobo"), Some("customer-7"));
    assert_eq!((book.records[1].row, book.records[1].get("quantity")), (4, Some("4")));
}

#[test]
fn structural_problems_are_named() {
    let bytes = workbook(|book| {
        book.add_worksheet().set_name("general").unwrap().write_string(0, 0, "attribute_id").unwrap();
        book.add_worksheet().set_name("data").unwrap();
    });
    let err = read_workbook(&bytes, &ReadLimits::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "the workbook has no `records` (or legacy `usage_records`) sheet; sheets found: general, data"
    );

    let bytes = workbook(|book| {
        let sheet = book.add_worksheet().set_name("records").unwrap();
        sheet.write_string(0, 0, "record_id").unwrap();
        sheet.write_string(0, 1, "record_id").unwrap();
    });
    let err = read_workbook(&bytes, &ReadLimits::default()).unwrap_err();
    assert!(matches!(err, XlsxError::DuplicateColumn { .. }), "{err}");

    let bytes = workbook(|book| {
        book.add_worksheet().set_name("records").unwrap().write_string(0, 0, "record_id").unwrap();
        book.add_worksheet().set_name("categories").unwrap().write_string(0, 0, "category_id").unwrap();
    });
    let err = read_workbook(&bytes, &ReadLimits::default()).unwrap_err();
    assert_eq!(err.to_string(), "sheet `categories` lacks the column(s) `category_name`");

    let bytes = workbook(|book| {
        let sheet = book.add_worksheet().set_name("records").unwrap();
        for r in 0..11 {
            sheet.write_string(r, 0, "x").unwrap();
        }
    });
    let err = read_workbook(&bytes, &ReadLimits { max_rows: 5, ..ReadLimits::default() }).unwrap_err();
    assert!(err.to_string().contains("has more than 5 data rows; at most 5"), "{err}");
}

/// A ZIP central directory declaring the given entries (no data: the reader must refuse the
/// archive from its directory alone).
fn declared_zip(entries: &[(&str, u32, u32)]) -> Vec<u8> {
    let mut out = b"PK\x03\x04".to_vec();
    out.resize(64, 0);
    let cd_start = out.len() as u32;
    for (name, compressed, uncompressed) in entries {
        out.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        out.extend_from_slice(&[0u8; 16]);
        out.extend_from_slice(&compressed.to_le_bytes());
        out.extend_from_slice(&uncompressed.to_le_bytes());
        out.extend_from_slice(&(name.len() as u16).to_le_bytes());
        out.extend_from_slice(&[0u8; 16]);
        out.extend_from_slice(name.as_bytes());
    }
    let cd_size = out.len() as u32 - cd_start;
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    out.extend_from_slice(&[0u8; 4]);
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&cd_size.to_le_bytes());
    out.extend_from_slice(&cd_start.to_le_bytes());
    out.extend_from_slice(&[0u8; 2]);
    out
}

#[test]
fn hostile_uploads_are_refused_before_parsing() {
    let limits = ReadLimits::default();
    let err = read_workbook(b"id,quantity\n1,2\n", &limits).unwrap_err();
    assert_eq!(err.to_string(), "the file is not an XLSX workbook: it is not a ZIP archive");
    let mut cfb = vec![0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1];
    cfb.resize(4096, 0);
    assert!(matches!(read_workbook(&cfb, &limits).unwrap_err(), XlsxError::Encrypted));
    let err = read_workbook(&fixture(), &ReadLimits { max_file_bytes: 1000, ..limits }).unwrap_err();
    assert!(matches!(err, XlsxError::TooLarge { max: 1000, .. }), "{err}");

    // One sheet declaring 4 GB from 1 MB: a zip bomb, refused from the directory alone.
    let bomb = declared_zip(&[("xl/worksheets/sheet1.xml", 1 << 20, u32::MAX - 1)]);
    let err = read_workbook(&bomb, &limits).unwrap_err();
    assert!(matches!(err, XlsxError::ZipBomb { .. }), "{err}");
    assert!(err.to_string().contains("xl/worksheets/sheet1.xml"), "{err}");
    // Many moderately compressed entries adding up beyond the total.
    let many: Vec<(String, u32, u32)> = (0..40).map(|i| (format!("xl/s{i}.xml"), 10 << 20, 100 << 20)).collect();
    let refs: Vec<(&str, u32, u32)> = many.iter().map(|(n, c, u)| (n.as_str(), *c, *u)).collect();
    let err = read_workbook(&declared_zip(&refs), &limits).unwrap_err();
    assert!(matches!(err, XlsxError::ZipBomb { .. }), "{err}");
    // A truncated archive.
    let fixture = fixture();
    let err = read_workbook(&fixture[..fixture.len() / 2], &limits).unwrap_err();
    assert!(matches!(err, XlsxError::NotXlsx(_)), "{err}");
}

/// Inputs found by fuzzing (fuzz/fuzz_targets/xlsx_read.rs) stay errors, never panics.
#[test]
fn fuzzer_findings_are_errors() {
    let dir =
        Path::new(&std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo")).join("../../tests/fixtures/fuzz");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        let err = read_workbook(&bytes, &ReadLimits::default()).unwrap_err();
        assert!(matches!(err, XlsxError::NotXlsx(_) | XlsxError::Sheet { .. }), "{}: {err}", path.display());
    }
}
