//! Reading Connect-format usage workbooks (XLSX).
//!
//! Sheets are found by name, never by position: `general` (two columns `attribute_id`,
//! `attribute_value`, optional), `categories` (`category_id`, `category_name`,
//! `category_description`, optional), and the records sheet, `records` or the legacy
//! `usage_records` (required). Other sheets (`instructions`, `summary`, ...) are ignored.
//! Columns are found by their header in the first row, so their order does not matter.
//!
//! Cells are read as text: strings trimmed; numbers in their shortest exact decimal form
//! (Excel stores numbers as binary doubles; `4.0000` typed in a cell reads `4`, `0.1` reads
//! `0.1`), dates and times as `YYYY-MM-DD hh:mm:ss`. Typed parsing and validation happen later,
//! row by row, so one bad cell never hides the others.
//!
//! Untrusted uploads are bounded before any parsing: the file size, the total uncompressed
//! size declared by the archive, and its compression ratio are checked first, so a zip bomb is
//! refused without being inflated. Encrypted (password-protected) and legacy `.xls` workbooks,
//! which are not ZIP archives, are refused with a message that says so.

use std::collections::BTreeMap;
use std::io::Cursor;

use calamine::{Data, Range, Reader, Xlsx};

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
    #[error("sheet `{sheet}` has {rows} data rows; at most {max} are accepted (split the period into several files)")]
    TooManyRows { sheet: String, rows: usize, max: usize },
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

/// Header → column index; refuses duplicates.
fn headers(sheet: &str, range: &Range<Data>) -> Result<(Vec<String>, BTreeMap<String, usize>), XlsxError> {
    let mut names = Vec::new();
    let mut index = BTreeMap::new();
    if let Some(first) = range.rows().next() {
        for (i, cell) in first.iter().enumerate() {
            let name = cell_text(cell);
            if name.is_empty() {
                continue;
            }
            if index.insert(name.clone(), i).is_some() {
                return Err(XlsxError::DuplicateColumn { sheet: sheet.to_owned(), column: name });
            }
            names.push(name);
        }
    }
    Ok((names, index))
}

fn require(sheet: &str, index: &BTreeMap<String, usize>, columns: &[&str]) -> Result<(), XlsxError> {
    let missing: Vec<String> = columns.iter().filter(|c| !index.contains_key(**c)).map(|c| format!("`{c}`")).collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(XlsxError::MissingColumns { sheet: sheet.to_owned(), missing: missing.join(", ") })
    }
}

fn data_rows(range: &Range<Data>, index: &BTreeMap<String, usize>) -> Vec<SheetRow> {
    let first_row = range.start().map_or(0, |(r, _)| r);
    range
        .rows()
        .enumerate()
        .skip(1)
        .filter_map(|(i, cells)| {
            let mut row = BTreeMap::new();
            for (name, &col) in index {
                if let Some(cell) = cells.get(col) {
                    let text = cell_text(cell);
                    if !text.is_empty() {
                        row.insert(name.clone(), text);
                    }
                }
            }
            (!row.is_empty()).then(|| SheetRow { row: first_row + i as u32 + 1, cells: row })
        })
        .collect()
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
    let range = |workbook: &mut Xlsx<_>, name: &str| {
        workbook.worksheet_range(name).map_err(|e| XlsxError::Sheet { sheet: name.to_owned(), reason: e.to_string() })
    };

    let records_sheet = ["records", "usage_records"]
        .iter()
        .find(|n| sheets.iter().any(|s| s == *n))
        .map(|s| (*s).to_owned())
        .ok_or_else(|| XlsxError::MissingRecordsSheet { found: sheets.join(", ") })?;

    let mut general = BTreeMap::new();
    if sheets.iter().any(|s| s == "general") {
        let r = range(&mut workbook, "general")?;
        let (_, index) = headers("general", &r)?;
        require("general", &index, &["attribute_id", "attribute_value"])?;
        for row in data_rows(&r, &index) {
            if let Some(id) = row.get("attribute_id") {
                general.insert(id.to_owned(), row.get("attribute_value").unwrap_or_default().to_owned());
            }
        }
    }

    let mut categories = Vec::new();
    if sheets.iter().any(|s| s == "categories") {
        let r = range(&mut workbook, "categories")?;
        let (_, index) = headers("categories", &r)?;
        require("categories", &index, &["category_id", "category_name"])?;
        for row in data_rows(&r, &index) {
            categories.push(CategoryRow {
                row: row.row,
                id: row.get("category_id").unwrap_or_default().to_owned(),
                name: row.get("category_name").unwrap_or_default().to_owned(),
                description: row.get("category_description").map(str::to_owned),
            });
        }
    }

    let r = range(&mut workbook, &records_sheet)?;
    let (columns, index) = headers(&records_sheet, &r)?;
    let height = r.height().saturating_sub(1);
    if height > limits.max_rows {
        return Err(XlsxError::TooManyRows { sheet: records_sheet, rows: height, max: limits.max_rows });
    }
    let records = data_rows(&r, &index);
    Ok(UsageWorkbook { sheets, general, categories, records_sheet, columns, records })
}
