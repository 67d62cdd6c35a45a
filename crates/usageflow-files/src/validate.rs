//! Validating the records of an uploaded usage workbook, row by row.
//!
//! The whole file is one transaction: it becomes `ready` only when every row is valid and no
//! file-level rule is broken; otherwise `invalid`, with every problem reported at once (row,
//! column, reason) rather than the first one only. Rules (spec §5.5):
//!
//! * required columns: `record_id`, `item_search_criteria`, `item_search_value`, `quantity`,
//!   `start_time_utc`, `end_time_utc`, `asset_search_criteria`, `asset_search_value`; `amount`
//!   for TR/PR/CR; `tier` for TR; the product's `required_custom_fields`;
//! * `record_id` present and unique in the file;
//! * `item_search_criteria` ∈ `item.mpn`, `item.local_id`, `item.global_id`, and the item exists
//!   in the product, or the product allows dynamic items and the row names `item_mpn` (or an
//!   `item.mpn` search) with `item_name` and `item_precision`;
//! * `asset_search_criteria` ∈ `asset.id`, `parameter.{id}`, and the asset belongs to the file's
//!   product and distribution contract;
//! * `quantity` (and `amount`) decimal, not negative, within the item's precision;
//! * `tier` 0, 1 or 2 for TR, naming a tier account the asset has;
//! * times `YYYY-MM-DD hh:mm:ss` (UTC, Connect's own files) or ISO 8601 in UTC
//!   (`YYYY-MM-DDThh:mm:ss`, with optional fractions of a second and `Z` or `+00:00`, what
//!   vendors' tools write), start ≤ end, inside the file's period unless the product accepts
//!   late (before) or future (after) charges; written back as `YYYY-MM-DD hh:mm:ss`;
//! * `category_id` defined in the `categories` sheet; a row without one belongs to the file's
//!   only category when it defines exactly one (Connect's processed files have a `categories`
//!   sheet and no `category_id` column), and to `generic_category` otherwise;
//! * no HTML markup in any cell.

use std::collections::{BTreeMap, HashSet};
use std::str::FromStr;

use chrono::{DateTime, NaiveDateTime, Utc};
use rust_decimal::Decimal;
use usageflow_model::{
    AssetCriteria, Catalogue, Category, ItemCriteria, ItemType, Period, Precision, RecordParam, ReportingSchema,
};

use crate::xlsx::{SheetRow, UsageWorkbook};

/// Columns that hold identifiers (record, category, asset and item references).
const IDENTIFIER_COLUMNS: [&str; 4] = ["record_id", "category_id", "asset_search_value", "item_search_value"];

/// What an upload is validated against.
#[derive(Debug, Clone, Copy)]
pub struct FileContext<'a> {
    /// The catalogue.
    pub catalogue: &'a Catalogue,
    /// The file's product.
    pub product_id: &'a str,
    /// The file's distribution contract.
    pub contract_id: &'a str,
    /// The file's reporting schema.
    pub schema: ReportingSchema,
    /// The file's period.
    pub period: Period,
}

/// A problem with one row (or, with `row` 0, with the file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    /// Excel row; 0 for the file as a whole.
    pub row: u32,
    /// The column at fault, if one.
    pub column: Option<String>,
    /// What is wrong.
    pub reason: String,
}

/// The item a valid row reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidItem {
    /// Global id (`None` for a dynamic item).
    pub id: Option<String>,
    /// Local id.
    pub local_id: String,
    /// MPN.
    pub mpn: String,
    /// Name.
    pub name: String,
    /// Unit.
    pub unit: String,
    /// Precision.
    pub precision: Precision,
    /// Type.
    pub item_type: ItemType,
}

/// A valid row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidRecord {
    /// Excel row.
    pub row: u32,
    /// The vendor's record id.
    pub record_id: String,
    /// The vendor's note.
    pub record_note: Option<String>,
    /// Item.
    pub item: ValidItem,
    /// Asset id.
    pub asset_id: String,
    /// Quantity.
    pub quantity: Decimal,
    /// Amount.
    pub amount: Option<Decimal>,
    /// Tier.
    pub tier: Option<u8>,
    /// Start (UTC).
    pub start: DateTime<Utc>,
    /// End (UTC).
    pub end: DateTime<Utc>,
    /// Category.
    pub category_id: String,
    /// `v.*` and `p.*` columns.
    pub params: Vec<RecordParam>,
}

/// The outcome of validating an upload.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Validation {
    /// Rows that passed.
    pub valid: Vec<ValidRecord>,
    /// Every problem found.
    pub errors: Vec<RowError>,
    /// Categories of the file.
    pub categories: Vec<Category>,
}

impl Validation {
    /// Whether the file may become `ready`.
    pub fn is_valid(&self) -> bool {
        self.errors.is_empty()
    }

    /// Rows with at least one problem.
    pub fn invalid_rows(&self) -> usize {
        let mut rows: Vec<u32> = self.errors.iter().map(|e| e.row).filter(|r| *r > 0).collect();
        rows.dedup();
        rows.len()
    }

    /// Problems of one row, joined, for the processed file's error column.
    pub fn errors_of(&self, row: u32) -> Vec<&RowError> {
        self.errors.iter().filter(|e| e.row == row).collect()
    }
}

const TIME_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

/// The record columns every schema requires (TR/PR/CR add `amount`, TR adds `tier`).
pub const REQUIRED_COLUMNS: [&str; 8] = [
    "record_id",
    "item_search_criteria",
    "item_search_value",
    "quantity",
    "start_time_utc",
    "end_time_utc",
    "asset_search_criteria",
    "asset_search_value",
];

/// Parses a UTC time: `YYYY-MM-DD hh:mm:ss`, or ISO 8601 with a `T`, optional fractions of a
/// second and an optional `Z`, `+00:00` or `-00:00`.
pub fn parse_utc(text: &str) -> Option<DateTime<Utc>> {
    parse_time(text).ok()
}

/// Why a time cell is not a UTC time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeError {
    /// Not a time in either form.
    Malformed,
    /// A time with an offset other than UTC.
    NotUtc,
}

/// Parses a UTC time like [`parse_utc`], telling a time in another zone from text that is no
/// time at all.
pub fn parse_time(text: &str) -> Result<DateTime<Utc>, TimeError> {
    let text = text.trim();
    if let Ok(t) = NaiveDateTime::parse_from_str(text, TIME_FORMAT) {
        return Ok(t.and_utc());
    }
    let (local, zero_offset) = match text.strip_suffix(['Z', 'z']) {
        Some(rest) => (rest, true),
        None => match text.len().checked_sub(6).and_then(|at| text.get(at..).map(|o| (at, o))) {
            Some((at, offset))
                if (offset.starts_with('+') || offset.starts_with('-')) && offset.get(3..4) == Some(":") =>
            {
                (&text[..at], offset[1..].bytes().all(|b| b == b'0' || b == b':'))
            }
            _ => (text, true),
        },
    };
    let naive = ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(local, f).ok())
        .ok_or(TimeError::Malformed)?;
    if zero_offset { Ok(naive.and_utc()) } else { Err(TimeError::NotUtc) }
}

/// A time as Connect writes it, `YYYY-MM-DD hh:mm:ss` (with the fraction of a second, if any).
pub fn format_utc(t: DateTime<Utc>) -> String {
    if t.timestamp_subsec_nanos() == 0 {
        t.format(TIME_FORMAT).to_string()
    } else {
        t.format("%Y-%m-%d %H:%M:%S%.f").to_string()
    }
}

/// A record cell as written to the processed workbook and chunks: times in Connect's form,
/// everything else as uploaded.
pub fn normalized_cell<'a>(column: &str, value: &'a str) -> std::borrow::Cow<'a, str> {
    if matches!(column, "start_time_utc" | "end_time_utc")
        && let Ok(t) = parse_time(value)
    {
        let canonical = format_utc(t);
        if canonical != value {
            return std::borrow::Cow::Owned(canonical);
        }
    }
    std::borrow::Cow::Borrowed(value)
}

fn has_markup(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.windows(2).any(|w| w[0] == b'<' && (w[1].is_ascii_alphabetic() || w[1] == b'/' || w[1] == b'!'))
}

struct RowCheck<'r> {
    row: &'r SheetRow,
    errors: Vec<RowError>,
}

impl<'r> RowCheck<'r> {
    fn fail(&mut self, column: &str, reason: impl Into<String>) {
        self.errors.push(RowError { row: self.row.row, column: Some(column.to_owned()), reason: reason.into() });
    }

    fn required(&mut self, column: &str) -> Option<&'r str> {
        let row: &'r SheetRow = self.row;
        let value = row.get(column);
        if value.is_none() {
            self.fail(column, format!("`{column}` is required"));
        }
        value
    }

    fn decimal(&mut self, column: &str, text: &str, precision: Option<Precision>, item: &str) -> Option<Decimal> {
        let value = Decimal::from_str(text).or_else(|_| Decimal::from_scientific(text));
        let Ok(value) = value else {
            self.fail(column, format!("`{text}` is not a number"));
            return None;
        };
        if value.is_sign_negative() && !value.is_zero() {
            self.fail(column, format!("{value} is negative"));
            return None;
        }
        if let Some(p) = precision
            && let Err(e) = p.check(item, value)
        {
            self.fail(column, e.to_string());
            return None;
        }
        Some(value)
    }
}

/// Validates every record row of `book` for the file described by `ctx`.
pub fn validate(book: &UsageWorkbook, ctx: &FileContext<'_>) -> Validation {
    let mut out = Validation::default();
    let file_error = |out: &mut Validation, reason: String| out.errors.push(RowError { row: 0, column: None, reason });
    let Some(product) = ctx.catalogue.product(ctx.product_id) else {
        file_error(&mut out, format!("product {} is not in the catalogue", ctx.product_id));
        return out;
    };
    let caps = &product.capabilities;

    let mut required = REQUIRED_COLUMNS.to_vec();
    if ctx.schema.requires_amount() {
        required.push("amount");
    }
    if ctx.schema.requires_tier() {
        required.push("tier");
    }
    let custom: Vec<&str> =
        caps.ppu.as_ref().map(|p| p.required_custom_fields.iter().map(String::as_str).collect()).unwrap_or_default();
    let missing: Vec<String> = required
        .iter()
        .chain(custom.iter())
        .filter(|c| !book.columns.iter().any(|h| h == *c))
        .map(|c| format!("`{c}`"))
        .collect();
    if !missing.is_empty() {
        file_error(
            &mut out,
            format!(
                "sheet `{}` lacks the column(s) {} required for schema {}",
                book.records_sheet,
                missing.join(", "),
                ctx.schema
            ),
        );
        return out;
    }

    out.categories = book
        .categories
        .iter()
        .map(|c| Category { id: c.id.clone(), name: c.name.clone(), description: c.description.clone() })
        .collect();
    for c in &book.categories {
        if crate::write::starts_like_formula(&c.id) {
            file_error(
                &mut out,
                format!(
                    "`categories` row {}: a category_id may not begin with `=`, `+`, `-`, `@`, a tab or a carriage return",
                    c.row
                ),
            );
        }
        if c.id.is_empty() || c.name.is_empty() {
            // A file-level problem: `row` numbers refer to the records sheet.
            file_error(&mut out, format!("`categories` row {} needs a category_id and a category_name", c.row));
        }
    }
    if book.records.is_empty() {
        file_error(&mut out, format!("sheet `{}` has no records below its header row", book.records_sheet));
    }
    // Rows without a category: the file's only category, or the generic one.
    let default_category = match out.categories.as_slice() {
        [only] => only.id.clone(),
        _ => Category::generic().id,
    };
    let mut uses_generic = out.categories.is_empty();
    let known_categories: HashSet<String> = out.categories.iter().map(|c| c.id.clone()).collect();

    let mut first_row_of: BTreeMap<&str, u32> = BTreeMap::new();
    let period_start = ctx.period.start_utc();
    let period_end = ctx.period.end_utc();
    let mut valid = Vec::new();
    let mut errors = Vec::new();
    for row in &book.records {
        let mut check = RowCheck { row, errors: Vec::new() };
        for (column, value) in &row.cells {
            if has_markup(value) {
                check.fail(column, "HTML markup is not allowed in cells");
            }
        }
        for column in IDENTIFIER_COLUMNS {
            if let Some(value) = row.get(column)
                && crate::write::starts_like_formula(value)
            {
                check.fail(
                    column,
                    "an identifier may not begin with `=`, `+`, `-`, `@`, a tab or a carriage return (a spreadsheet would \
                     run it as a formula)",
                );
            }
        }
        let record_id = check.required("record_id");
        if let Some(id) = record_id {
            if let Some(first) = first_row_of.get(id) {
                check.fail("record_id", format!("record_id `{id}` is used already on row {first}"));
            } else {
                first_row_of.insert(id, row.row);
            }
        }

        // Item.
        let item = (|| {
            let criteria_text = check.required("item_search_criteria")?;
            let Some(criteria) = ItemCriteria::parse(criteria_text) else {
                check.fail(
                    "item_search_criteria",
                    format!("`{criteria_text}` is not item.mpn, item.local_id or item.global_id"),
                );
                return None;
            };
            let value = check.required("item_search_value")?.to_owned();
            if let Some(item) = ctx.catalogue.find_item(&product.id, criteria, &value) {
                if item.item_type == ItemType::Reservation && !caps.reservation_consumption() {
                    check.fail(
                        "item_search_value",
                        format!(
                            "item {value} is a reservation item and the product does not report reservation consumption"
                        ),
                    );
                    return None;
                }
                return Some(ValidItem {
                    id: Some(item.id.clone()),
                    local_id: item.local_id.clone(),
                    mpn: item.mpn.clone(),
                    name: item.name.clone(),
                    unit: item.unit.clone(),
                    precision: item.precision,
                    item_type: item.item_type,
                });
            }
            if !caps.dynamic_items() {
                check.fail(
                    "item_search_value",
                    format!("no item of product {} has {} `{value}`", product.id, criteria.as_str()),
                );
                return None;
            }
            // A dynamic item: described by the row itself.
            let mpn = row
                .get("item_mpn")
                .map(str::to_owned)
                .or_else(|| (criteria == ItemCriteria::Mpn).then(|| value.clone()));
            let Some(mpn) = mpn else {
                check
                    .fail("item_mpn", format!("item `{value}` is not in the product; a dynamic item needs `item_mpn`"));
                return None;
            };
            let name = check.required("item_name")?.to_owned();
            let precision_text = check.required("item_precision")?.to_owned();
            let Ok(precision) = precision_text.parse::<Precision>() else {
                check.fail(
                    "item_precision",
                    format!("`{precision_text}` is not integer, decimal(1), decimal(2), decimal(4) or decimal(8)"),
                );
                return None;
            };
            Some(ValidItem {
                id: None,
                local_id: String::new(),
                mpn,
                name,
                unit: row.get("item_unit").unwrap_or("unit").to_owned(),
                precision,
                item_type: ItemType::Ppu,
            })
        })();

        // Asset.
        let asset = (|| {
            let criteria_text = check.required("asset_search_criteria")?;
            let Some(criteria) = AssetCriteria::parse(criteria_text) else {
                check.fail("asset_search_criteria", format!("`{criteria_text}` is not asset.id or parameter.<id>"));
                return None;
            };
            let value = check.required("asset_search_value")?.to_owned();
            let Some(asset) = ctx.catalogue.find_asset(&product.id, &criteria, &value) else {
                check.fail(
                    "asset_search_value",
                    format!("no asset of product {} matches {} `{value}`", product.id, criteria.to_wire()),
                );
                return None;
            };
            if asset.contract != ctx.contract_id {
                check.fail(
                    "asset_search_value",
                    format!(
                        "asset {} belongs to contract {}, not to this file's {}",
                        asset.id, asset.contract, ctx.contract_id
                    ),
                );
                return None;
            }
            Some(asset)
        })();

        // Numbers.
        let item_name = item.as_ref().map_or("", |i| i.mpn.as_str()).to_owned();
        let quantity = check
            .required("quantity")
            .map(str::to_owned)
            .and_then(|q| check.decimal("quantity", &q, item.as_ref().map(|i| i.precision), &item_name));
        let amount = match row.get("amount").map(str::to_owned) {
            Some(a) if ctx.schema.requires_amount() => check.decimal("amount", &a, None, &item_name),
            Some(_) => {
                check.fail("amount", format!("schema {} reports quantities only; leave `amount` empty", ctx.schema));
                None
            }
            None if ctx.schema.requires_amount() => {
                check.fail("amount", format!("schema {} needs an amount", ctx.schema));
                None
            }
            None => None,
        };
        let tier = match row.get("tier").map(str::to_owned) {
            Some(t) if ctx.schema.requires_tier() => match t.parse::<u8>() {
                Ok(t) if t <= 2 => {
                    if asset.is_some_and(|a| a.tiers.account(t).is_none()) {
                        check.fail("tier", format!("the asset has no tier-{t} account"));
                        None
                    } else {
                        Some(t)
                    }
                }
                _ => {
                    check.fail("tier", format!("tier `{t}` is not 0, 1 or 2"));
                    None
                }
            },
            Some(_) => None,
            None if ctx.schema.requires_tier() => {
                check.fail("tier", "schema TR needs a tier (0, 1 or 2)");
                None
            }
            None => None,
        };

        // Times.
        let mut time = |column: &str| {
            let text = check.required(column)?.to_owned();
            match parse_time(&text) {
                Ok(t) => Some(t),
                Err(TimeError::Malformed) => {
                    check.fail(
                        column,
                        format!("`{text}` is not a UTC time as YYYY-MM-DD hh:mm:ss or ISO 8601 (YYYY-MM-DDThh:mm:ssZ)"),
                    );
                    None
                }
                Err(TimeError::NotUtc) => {
                    check.fail(column, format!("`{text}` is not in UTC; usage times are UTC (Z or +00:00)"));
                    None
                }
            }
        };
        let start = time("start_time_utc");
        let end = time("end_time_utc");
        if let (Some(s), Some(e)) = (start, end) {
            if s > e {
                check.fail("end_time_utc", format!("ends ({e}) before it starts ({s})"));
            }
            let late = caps.ppu.as_ref().is_some_and(|p| p.late);
            let future = caps.ppu.as_ref().is_some_and(|p| p.future);
            if s < period_start && !late {
                check.fail(
                    "start_time_utc",
                    format!(
                        "starts before the file's period ({}) and the product accepts no late charges",
                        ctx.period.from
                    ),
                );
            }
            if e > period_end && !future {
                check.fail(
                    "end_time_utc",
                    format!(
                        "ends after the file's period ({}) and the product accepts no future charges",
                        ctx.period.to
                    ),
                );
            }
        }

        // Category and custom columns.
        let category_id = match row.get("category_id") {
            Some(c) if known_categories.contains(c) => c.to_owned(),
            Some(c) => {
                check.fail("category_id", format!("category `{c}` is not defined in the `categories` sheet"));
                c.to_owned()
            }
            None => {
                uses_generic |= default_category == Category::generic().id;
                default_category.clone()
            }
        };
        for field in &custom {
            if row.get(field).is_none() {
                check.fail(field, format!("the product requires `{field}`"));
            }
        }
        let params: Vec<RecordParam> = row
            .cells
            .iter()
            .filter(|(k, _)| k.starts_with("v.") || k.starts_with("p."))
            .map(|(k, v)| RecordParam { parameter_name: k.clone(), parameter_value: Some(v.clone()) })
            .collect();

        if check.errors.is_empty() {
            if let (Some(record_id), Some(item), Some(asset), Some(quantity), Some(start), Some(end)) =
                (record_id, item, asset, quantity, start, end)
            {
                valid.push(ValidRecord {
                    row: row.row,
                    record_id: record_id.to_owned(),
                    record_note: row.get("record_note").map(str::to_owned),
                    item,
                    asset_id: asset.id.clone(),
                    quantity,
                    amount,
                    tier,
                    start,
                    end,
                    category_id,
                    params,
                });
            }
        } else {
            errors.extend(check.errors);
        }
    }
    if uses_generic && !out.categories.iter().any(|c| c.id == Category::generic().id) {
        out.categories.push(Category::generic());
    }
    out.errors.extend(errors);
    out.valid = valid;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_connects_form_or_iso_8601_in_utc() {
        let t = |s: &str| parse_time(s).map(format_utc);
        for ok in [
            "2026-10-01 08:30:00",
            "2026-10-01T08:30:00",
            "2026-10-01T08:30:00Z",
            "2026-10-01T08:30:00.000Z",
            "2026-10-01T08:30:00+00:00",
            "2026-10-01T08:30:00-00:00",
            " 2026-10-01T08:30:00z ",
        ] {
            assert_eq!(t(ok).as_deref(), Ok("2026-10-01 08:30:00"), "{ok}");
        }
        assert_eq!(t("2026-10-01T08:30:00.25Z").as_deref(), Ok("2026-10-01 08:30:00.250"));
        assert_eq!(t("2026-10-01T08:30:00+02:00"), Err(TimeError::NotUtc));
        assert_eq!(t("2026-10-01T08:30:00-05:00"), Err(TimeError::NotUtc));
        for bad in ["2026-10-01", "01/10/2026 08:30:00", "2026-13-01T00:00:00Z", "yesterday", ""] {
            assert_eq!(t(bad), Err(TimeError::Malformed), "{bad}");
        }
        assert_eq!(normalized_cell("start_time_utc", "2026-10-01T08:30:00Z"), "2026-10-01 08:30:00");
        assert_eq!(normalized_cell("start_time_utc", "not a time"), "not a time");
        assert_eq!(normalized_cell("quantity", "2026-10-01T08:30:00Z"), "2026-10-01T08:30:00Z");
    }
}
