//! Writing Connect-format usage workbooks: sheets `instructions`, `general` (attribute_id,
//! attribute_value), `categories` and `records`, the structure of the processed files the
//! Connect platform produces.
//!
//! Every value is written as text, as Connect's own processed files do, so that decimals stay
//! exact (`4.0000` stays `4.0000`; a spreadsheet number would be a binary double) and times
//! keep their `YYYY-MM-DD hh:mm:ss` form. The records sheet is streamed (constant memory). A
//! sheet holds at most 1,048,575 records below its header; [`write_split`] cuts a period with
//! more into several workbooks, each complete and valid on its own.

use usageflow_model::{Category, ReportingSchema};

/// Excel's row limit minus the header row.
pub const MAX_RECORDS_PER_SHEET: usize = 1_048_575;

/// Why a workbook could not be written.
#[derive(Debug, thiserror::Error)]
#[error("cannot write the usage workbook: {0}")]
pub struct WriteError(String);

impl From<rust_xlsxwriter::XlsxError> for WriteError {
    fn from(e: rust_xlsxwriter::XlsxError) -> Self {
        WriteError(e.to_string())
    }
}

/// The record columns of a usage file of `schema`, in Connect's order.
pub fn record_columns(schema: ReportingSchema) -> Vec<&'static str> {
    let mut columns = vec!["record_id", "record_note", "item_search_criteria", "item_search_value"];
    if schema.requires_amount() {
        columns.push("amount");
    }
    columns.extend([
        "quantity",
        "start_time_utc",
        "end_time_utc",
        "asset_search_criteria",
        "asset_search_value",
        "item_name",
        "item_mpn",
        "item_precision",
        "item_unit",
        "category_id",
        "asset_recon_id",
    ]);
    if schema.requires_tier() {
        columns.push("tier");
    }
    columns
}

const INSTRUCTIONS: [&str; 8] = [
    "Usage File",
    "Produced by Usageflow in the CloudBlue Connect usage file format.",
    "'general' tab: the file's attributes (report id, period, schema, product, marketplace, vendor, provider, contract).",
    "'categories' tab: the categories that records refer to by category_id.",
    "'records' tab: one usage record per row. Times are UTC, YYYY-MM-DD hh:mm:ss.",
    "Quantities and amounts are written as text so that their decimals are exact.",
    "Sheets are read by name; other sheets are informational.",
    "Template version: Jan-07-2020",
];

/// Writes one workbook. `rows` yields the record rows as cells in `columns` order
/// (empty strings leave a cell empty).
pub fn write_workbook<I, R, S>(
    general: &[(String, String)],
    categories: &[Category],
    columns: &[&str],
    rows: I,
) -> Result<Vec<u8>, WriteError>
where
    I: IntoIterator<Item = R>,
    R: AsRef<[S]>,
    S: AsRef<str>,
{
    let mut book = rust_xlsxwriter::Workbook::new();
    let bold = rust_xlsxwriter::Format::new().set_bold();

    let sheet = book.add_worksheet().set_name("instructions")?;
    for (r, line) in INSTRUCTIONS.iter().enumerate() {
        sheet.write_string(r as u32, 0, *line)?;
    }
    sheet.set_column_width(0, 110)?;

    let sheet = book.add_worksheet().set_name("general")?;
    sheet.write_string_with_format(0, 0, "attribute_id", &bold)?;
    sheet.write_string_with_format(0, 1, "attribute_value", &bold)?;
    for (r, (k, v)) in general.iter().enumerate() {
        sheet.write_string(r as u32 + 1, 0, k)?;
        sheet.write_string(r as u32 + 1, 1, v)?;
    }

    let sheet = book.add_worksheet().set_name("categories")?;
    for (c, h) in ["category_id", "category_name", "category_description"].iter().enumerate() {
        sheet.write_string_with_format(0, c as u16, *h, &bold)?;
    }
    for (r, cat) in categories.iter().enumerate() {
        let r = r as u32 + 1;
        sheet.write_string(r, 0, &cat.id)?;
        sheet.write_string(r, 1, &cat.name)?;
        if let Some(d) = &cat.description {
            sheet.write_string(r, 2, d)?;
        }
    }

    let sheet = book.add_worksheet_with_constant_memory()?.set_name("records")?;
    for (c, h) in columns.iter().enumerate() {
        sheet.write_string_with_format(0, c as u16, *h, &bold)?;
    }
    let mut r = 0u32;
    for row in rows {
        r += 1;
        if r as usize > MAX_RECORDS_PER_SHEET {
            return Err(WriteError(format!("more than {MAX_RECORDS_PER_SHEET} records in one sheet; use write_split")));
        }
        for (c, value) in row.as_ref().iter().enumerate() {
            let value = value.as_ref();
            if !value.is_empty() {
                sheet.write_string(r, c as u16, value)?;
            }
        }
    }
    Ok(book.save_to_buffer()?)
}

/// Writes records into as many workbooks as Excel's row limit needs (`per_file` records each,
/// at most [`MAX_RECORDS_PER_SHEET`]). `general_for(part, parts)` gives each workbook's
/// attributes (for example its own report id and counts).
pub fn write_split<R, S>(
    general_for: impl Fn(usize, usize) -> Vec<(String, String)>,
    categories: &[Category],
    columns: &[&str],
    rows: &[R],
    per_file: usize,
) -> Result<Vec<Vec<u8>>, WriteError>
where
    R: AsRef<[S]>,
    S: AsRef<str>,
{
    let per_file = per_file.clamp(1, MAX_RECORDS_PER_SHEET);
    let parts = rows.len().div_ceil(per_file).max(1);
    (0..parts)
        .map(|part| {
            let chunk = rows.iter().skip(part * per_file).take(per_file);
            write_workbook(&general_for(part, parts), categories, columns, chunk)
        })
        .collect()
}
