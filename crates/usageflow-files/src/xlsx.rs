//! Reading Connect-format usage workbooks (XLSX).
//!
//! Sheets are found by name, never by position: `general` (two columns `attribute_id`,
//! `attribute_value`, optional), `categories` (`category_id`, `category_name`,
//! `category_description`, optional), and the records sheet, `records` or the legacy
//! `usage_records` (required). Other sheets (`instructions`, `summary`, ...) are ignored.
//! Columns are found by their header in the first row, so their order does not matter; the
//! 2019 template's `usage_record_id` and `usage_record_note` are read as `record_id` and
//! `record_note`.
//!
//! Cells are read as text: strings trimmed; numbers in their shortest exact decimal form
//! (Excel stores numbers as binary doubles; `4.0000` typed in a cell reads `4`, `0.1` reads
//! `0.1`), dates and times as `YYYY-MM-DD hh:mm:ss`. Typed parsing and validation happen later,
//! row by row, so one bad cell never hides the others.
//!
//! Untrusted uploads are bounded before any parsing: the file size, the total uncompressed
//! size declared by the archive, and its compression ratio are checked first, so a zip bomb is
//! refused without being inflated. Encrypted (password-protected) and legacy `.xls` workbooks,
//! which are not ZIP archives, are refused with a message that says so. Sheets are then read
//! cell by cell, never as the dense range of their bounding box: a workbook with one cell at
//! `XFD1048576` costs one cell, and positions outside a worksheet, rows out of order and more
//! rows than allowed stop the reading with a reason.

use std::collections::BTreeMap;
use std::io::Cursor;

use calamine::{Data, DataType, Reader, Xlsx};

/// Bounds on an uploaded workbook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadLimits {
    /// Largest file accepted, in bytes.
    pub max_file_bytes: u64,
    /// Largest total uncompressed size of the archive's entries, in bytes.
    pub max_uncompressed_bytes: u64,
    /// Largest ratio of uncompressed to compressed size of any entry.
    pub max_compression_ratio: u64,
    /// Most data rows in the records sheet (Excel's own limit is 1,048,575 below the header).
    pub max_rows: usize,
}

impl Default for ReadLimits {
    fn default() -> Self {
        Self {
            max_file_bytes: 200 * 1024 * 1024,
            max_uncompressed_bytes: 2 * 1024 * 1024 * 1024,
            max_compression_ratio: 250,
            max_rows: 1_048_575,
        }
    }
}

/// Why a workbook could not be read at all. Row-level problems are not errors here.
#[derive(Debug, thiserror::Error)]
pub enum XlsxError {
    /// The file is larger than allowed.
    #[error("the file is {size} bytes; at most {max} are accepted")]
    TooLarge { size: u64, max: u64 },
    /// An encrypted or legacy binary workbook.
    #[error(
        "the file is an encrypted (password-protected) or legacy .xls workbook; remove the password and save it as .xlsx"
    )]
    Encrypted,
    /// Not a ZIP archive, or a damaged one.
    #[error("the file is not an XLSX workbook: {0}")]
    NotXlsx(String),
    /// The archive would inflate beyond the limits.
    #[error(
        "the archive inflates to {uncompressed} bytes (entry {entry} at ratio {ratio}:1); this looks like a zip bomb and is refused"
    )]
    ZipBomb { entry: String, uncompressed: u64, ratio: u64 },
    /// No records sheet.
    #[error("the workbook has no `records` (or legacy `usage_records`) sheet; sheets found: {found}")]
    MissingRecordsSheet { found: String },
    /// Required columns are missing from a sheet's header row.
    #[error("sheet `{sheet}` lacks the column(s) {missing}")]
    MissingColumns { sheet: String, missing: String },
    /// A header appears twice.
    #[error("sheet `{sheet}` has the column `{column}` twice")]
    DuplicateColumn { sheet: String, column: String },
    /// Too many rows.
    #[error(
        "sheet `{sheet}` has more than {max} data rows; at most {max} are accepted (split the period into several files)"
    )]
    TooManyRows { sheet: String, max: usize },
    /// A sheet could not be parsed.
    #[error("sheet `{sheet}` cannot be read: {reason}")]
    Sheet { sheet: String, reason: String },
}

/// One data row of a sheet: its Excel row number (1-based) and its cells by header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SheetRow {
    /// Excel row number (the header is row 1).
    pub row: u32,
    /// Cell text by column header; empty cells are absent.
    pub cells: BTreeMap<String, String>,
}

impl SheetRow {
    /// A cell's text, if present and not empty.
    pub fn get(&self, column: &str) -> Option<&str> {
        self.cells.get(column).map(String::as_str).filter(|v| !v.is_empty())
    }
}

/// A category row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CategoryRow {
    /// Excel row number.
    pub row: u32,
    /// `category_id`.
    pub id: String,
    /// `category_name`.
    pub name: String,
    /// `category_description`.
    pub description: Option<String>,
}

/// The content of a usage workbook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageWorkbook {
    /// Sheet names, in workbook order.
    pub sheets: Vec<String>,
    /// `general` attributes (empty if the sheet is absent).
    pub general: BTreeMap<String, String>,
    /// `categories` rows (empty if the sheet is absent).
    pub categories: Vec<CategoryRow>,
    /// Name of the records sheet (`records` or `usage_records`).
    pub records_sheet: String,
    /// Column headers of the records sheet, in order.
    pub columns: Vec<String>,
    /// Data rows of the records sheet (entirely empty rows skipped).
    pub records: Vec<SheetRow>,
}

/// Excel serial dates: days since 1899-12-30 (a timestamp, not a quantity: a double by format).
#[allow(clippy::float_arithmetic)]
fn excel_datetime(serial: f64) -> Option<String> {
    let epoch = chrono::NaiveDate::from_ymd_opt(1899, 12, 30)?.and_hms_opt(0, 0, 0)?;
    let millis = (serial * 86_400_000.0).round();
    if !millis.is_finite() || millis.abs() > 1e15 {
        return None;
    }
    let t = epoch + chrono::Duration::milliseconds(millis as i64);
    Some(t.format("%Y-%m-%d %H:%M:%S").to_string())
}

/// A cell as text.
pub fn cell_text(cell: &Data) -> String {
    match cell {
        Data::Empty => String::new(),
        Data::String(s) => s.trim().to_owned(),
        Data::Int(i) => i.to_string(),
        // Shortest text that reads back as the same double: the decimal the user typed.
        Data::Float(f) => {
            let text = format!("{f}");
            text.strip_suffix(".0").map_or_else(|| text.clone(), str::to_owned)
        }
        Data::Bool(b) => b.to_string(),
        Data::DateTime(d) => excel_datetime(d.as_f64()).unwrap_or_default(),
        Data::DateTimeIso(s) => s.replace('T', " "),
        Data::DurationIso(s) => s.clone(),
        Data::Error(e) => format!("#ERROR {e:?}"),
    }
}

/// Checks the archive's entries against the limits without inflating them.
fn check_archive(bytes: &[u8], limits: &ReadLimits) -> Result<(), XlsxError> {
    const CFB_MAGIC: [u8; 8] = [0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1];
    if bytes.len() as u64 > limits.max_file_bytes {
        return Err(XlsxError::TooLarge { size: bytes.len() as u64, max: limits.max_file_bytes });
    }
    if bytes.starts_with(&CFB_MAGIC) {
        return Err(XlsxError::Encrypted);
    }
    if !bytes.starts_with(b"PK") {
        return Err(XlsxError::NotXlsx("it is not a ZIP archive".to_owned()));
    }
    let entries = crate::zipdir::entries(bytes).map_err(XlsxError::NotXlsx)?;
    let mut total = 0u64;
    for e in &entries {
        total = total.saturating_add(e.uncompressed);
        let ratio = e.uncompressed / e.compressed.max(1);
        if ratio > limits.max_compression_ratio && e.uncompressed > 1024 * 1024 {
            return Err(XlsxError::ZipBomb { entry: e.name.clone(), uncompressed: e.uncompressed, ratio });
        }
        if total > limits.max_uncompressed_bytes {
            return Err(XlsxError::ZipBomb { entry: e.name.clone(), uncompressed: total, ratio });
        }
    }
    Ok(())
}

fn require(sheet: &str, index: &BTreeMap<String, u32>, columns: &[&str]) -> Result<(), XlsxError> {
    let missing: Vec<String> = columns.iter().filter(|c| !index.contains_key(**c)).map(|c| format!("`{c}`")).collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(XlsxError::MissingColumns { sheet: sheet.to_owned(), missing: missing.join(", ") })
    }
}

/// The last row and column (0-based) a worksheet can have: Excel's 1,048,576 × 16,384.
const LAST_ROW: u32 = 1_048_575;
const LAST_COLUMN: u32 = 16_383;
/// Most header cells a sheet may have.
pub const MAX_HEADER_COLUMNS: usize = 1_024;

/// A sheet as read: its header and its data rows (cells of header columns only).
struct Sheet {
    columns: Vec<String>,
    index: BTreeMap<String, u32>,
    rows: Vec<SheetRow>,
}

/// Reads a sheet cell by cell, in the order the file stores them. Only cells are kept, never
/// the sheet's bounding box (which an upload can make as large as a whole worksheet with two
/// cells): the header is the first row that has a cell; of the data rows, only the cells under
/// a header are kept, and more than `max_rows` rows stop the reading. Rows out of order and
/// positions outside a worksheet are refused.
fn read_sheet<RS: std::io::Read + std::io::Seek>(
    workbook: &mut Xlsx<RS>,
    sheet: &str,
    max_rows: usize,
) -> Result<Sheet, XlsxError> {
    let fail = |reason: String| XlsxError::Sheet { sheet: sheet.to_owned(), reason };
    let mut reader = workbook.worksheet_cells_reader(sheet).map_err(|e| fail(e.to_string()))?;
    let mut header_row: Option<u32> = None;
    let mut header: BTreeMap<u32, String> = BTreeMap::new();
    let mut index: BTreeMap<String, u32> = BTreeMap::new();
    let mut columns = Vec::new();
    let mut rows: Vec<SheetRow> = Vec::new();
    let mut current: Option<SheetRow> = None;
    let mut last_row = 0u32;
    while let Some(cell) = reader.next_cell().map_err(|e| fail(e.to_string()))? {
        let (row, column) = cell.get_position();
        if row > LAST_ROW || column > LAST_COLUMN {
            return Err(fail(format!(
                "it has a cell at row {}, column {}, outside any worksheet (at most {} rows and {} columns)",
                u64::from(row) + 1,
                u64::from(column) + 1,
                LAST_ROW + 1,
                LAST_COLUMN + 1
            )));
        }
        if row < last_row {
            return Err(fail(format!("its rows are out of order (row {} after row {})", row + 1, last_row + 1)));
        }
        last_row = row;
        if cell.get_value().is_empty() {
            continue;
        }
        let header_at = *header_row.get_or_insert(row);
        if row == header_at {
            let name = cell_text(&Data::from(cell.get_value().clone()));
            if name.is_empty() {
                continue;
            }
            if index.insert(name.clone(), column).is_some() {
                return Err(XlsxError::DuplicateColumn { sheet: sheet.to_owned(), column: name });
            }
            if index.len() > MAX_HEADER_COLUMNS {
                return Err(fail(format!("its header has more than {MAX_HEADER_COLUMNS} columns")));
            }
            header.insert(column, name.clone());
            columns.push(name);
            continue;
        }
        let Some(name) = header.get(&column) else { continue };
        let text = cell_text(&Data::from(cell.get_value().clone()));
        if text.is_empty() {
            continue;
        }
        if current.as_ref().is_none_or(|r| r.row != row + 1) {
            if let Some(done) = current.take() {
                rows.push(done);
            }
            if rows.len() >= max_rows {
                return Err(XlsxError::TooManyRows { sheet: sheet.to_owned(), max: max_rows });
            }
            current = Some(SheetRow { row: row + 1, cells: BTreeMap::new() });
        }
        if let Some(r) = current.as_mut() {
            r.cells.insert(name.clone(), text);
        }
    }
    rows.extend(current);
    Ok(Sheet { columns, index, rows })
}

/// Reads a usage workbook from its bytes.
///
/// A malformed workbook that makes the spreadsheet parser panic (fuzzing found cell
/// references that overflow its arithmetic) is reported as [`XlsxError::NotXlsx`]; nothing
/// an upload contains can take the process down.
pub fn read_workbook(bytes: &[u8], limits: &ReadLimits) -> Result<UsageWorkbook, XlsxError> {
    check_archive(bytes, limits)?;
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| parse_workbook(bytes, limits))) {
        Ok(result) => result,
        Err(_) => Err(XlsxError::NotXlsx("the workbook is malformed (its sheet XML cannot be parsed)".to_owned())),
    }
}

fn parse_workbook(bytes: &[u8], limits: &ReadLimits) -> Result<UsageWorkbook, XlsxError> {
    let mut workbook: Xlsx<_> = Xlsx::new(Cursor::new(bytes)).map_err(|e| XlsxError::NotXlsx(e.to_string()))?;
    let sheets = workbook.sheet_names();

    let records_sheet = ["records", "usage_records"]
        .iter()
        .find(|n| sheets.iter().any(|s| s == *n))
        .map(|s| (*s).to_owned())
        .ok_or_else(|| XlsxError::MissingRecordsSheet { found: sheets.join(", ") })?;

    let mut general = BTreeMap::new();
    if sheets.iter().any(|s| s == "general") {
        let sheet = read_sheet(&mut workbook, "general", limits.max_rows)?;
        require("general", &sheet.index, &["attribute_id", "attribute_value"])?;
        for row in sheet.rows {
            if let Some(id) = row.get("attribute_id") {
                general.insert(id.to_owned(), row.get("attribute_value").unwrap_or_default().to_owned());
            }
        }
    }

    let mut categories = Vec::new();
    if sheets.iter().any(|s| s == "categories") {
        let sheet = read_sheet(&mut workbook, "categories", limits.max_rows)?;
        require("categories", &sheet.index, &["category_id", "category_name"])?;
        for row in sheet.rows {
            categories.push(CategoryRow {
                row: row.row,
                id: row.get("category_id").unwrap_or_default().to_owned(),
                name: row.get("category_name").unwrap_or_default().to_owned(),
                description: row.get("category_description").map(str::to_owned),
            });
        }
    }

    let mut sheet = read_sheet(&mut workbook, &records_sheet, limits.max_rows)?;
    legacy_names(&mut sheet);
    Ok(UsageWorkbook { sheets, general, categories, records_sheet, columns: sheet.columns, records: sheet.rows })
}

/// Column names of Connect's 2019 template and the SDKs that followed it, and their names now.
pub const LEGACY_COLUMNS: [(&str, &str); 2] = [("usage_record_id", "record_id"), ("usage_record_note", "record_note")];

/// Reads the legacy columns under their current names (unless the sheet has both).
fn legacy_names(sheet: &mut Sheet) {
    for (old, new) in LEGACY_COLUMNS {
        if sheet.index.contains_key(new) {
            continue;
        }
        let Some(at) = sheet.index.remove(old) else { continue };
        sheet.index.insert(new.to_owned(), at);
        for c in sheet.columns.iter_mut().filter(|c| *c == old) {
            new.clone_into(c);
        }
        for row in &mut sheet.rows {
            if let Some(v) = row.cells.remove(old) {
                row.cells.insert(new.to_owned(), v);
            }
        }
    }
}
