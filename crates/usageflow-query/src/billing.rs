//! Billing exports and reconciliation joins, as SQL over an analyst session.
//!
//! * The billing export lists the accepted (approved or closed) records of usage files whose
//!   period lies in a range, optionally for one hub, marketplace or product, with what a
//!   billing system needs: customer and resellers, asset, item and unit, period, quantity,
//!   the amount in the column of its tier, currency.
//! * The reconciliation join compares a billing system's lines with the accepted records:
//!   each line names a record by `record_id`, or by `asset_id` + `item_id` + `period` (the
//!   first day of the usage file's period, `YYYY-MM-DD`), with `billed_quantity`,
//!   `billed_amount` and `external_billing_id`. Every record and every line gets one outcome:
//!   `matched`, `missing_from_billing`, `billed_not_reported`, `reported_after_billing` (with
//!   the time of the export: missing from it, in a usage file created after it),
//!   `quantity_mismatch` (the
//!   quantities differ by at least one unit of the item's precision) or `amount_mismatch`
//!   (the amounts differ by a cent or more). Matched records can then be closed with their
//!   billing id.

use std::collections::BTreeMap;
use std::path::Path;

use arrow::array::{Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use chrono::NaiveDate;
use datafusion::prelude::{CsvReadOptions, ParquetReadOptions, SessionContext};
use usageflow_files::{FileService, RecordRequest};
use usageflow_model::Actor;

use crate::{QueryError, sql_string};

/// Which accepted records a billing export or a reconciliation covers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// Files whose period starts on or after this day.
    pub from: Option<NaiveDate>,
    /// Files whose period ends on or before this day.
    pub to: Option<NaiveDate>,
    /// Only this hub.
    pub hub: Option<String>,
    /// Only this marketplace.
    pub marketplace: Option<String>,
    /// Only this product.
    pub product: Option<String>,
}

impl Selection {
    fn predicate(&self) -> String {
        let mut p = vec!["status IN ('approved', 'closed')".to_owned()];
        if let Some(d) = self.from {
            p.push(format!("period_from >= {}", sql_string(&d.to_string())));
        }
        if let Some(d) = self.to {
            p.push(format!("period_to <= {}", sql_string(&d.to_string())));
        }
        for (col, v) in [("hub_id", &self.hub), ("marketplace_id", &self.marketplace), ("product_id", &self.product)] {
            if let Some(v) = v {
                p.push(format!("{col} = {}", sql_string(v)));
            }
        }
        p.join(" AND ")
    }
}

/// The order of the billing export's rows (by its output columns).
pub const BILLING_EXPORT_ORDER: &str =
    "hub_id, marketplace_id, product_id, customer_id, asset_id, item_id, start_date, record_id";

/// The billing export query.
pub fn billing_export_sql(selection: &Selection) -> String {
    format!(
        "SELECT id AS record_id, usagefile_id, hub_id, marketplace_id, product_id, contract_id, \
         customer_id, customer_name, tier1_id, tier2_id, asset_id, asset_external_id, asset_external_uid, \
         item_id, item_mpn, item_name, item_unit, item_precision, category_id, \
         period_from, period_to, start_date, end_date, usage AS quantity, \
         CASE WHEN tier IS NULL OR tier = 0 THEN amount END AS amount_customer, \
         CASE WHEN tier = 1 THEN amount END AS amount_tier1, \
         CASE WHEN tier = 2 THEN amount END AS amount_tier2, \
         usagefile_currency AS currency, status, external_billing_id \
         FROM file_records WHERE {} ORDER BY {BILLING_EXPORT_ORDER}",
        selection.predicate()
    )
}

/// Registers the billing lines of a CSV or Parquet file as the table `billing`. CSV columns
/// are read as text (quantities are cast to exact decimals in SQL, never parsed as floats).
pub async fn register_billing(ctx: &SessionContext, path: &Path) -> Result<(), QueryError> {
    let name = path.to_string_lossy().into_owned();
    if name.ends_with(".parquet") {
        ctx.register_parquet("billing", &name, ParquetReadOptions::default()).await?;
        return Ok(());
    }
    let header = std::fs::read_to_string(path)
        .map_err(|e| QueryError::Source(format!("cannot read {name}: {e}")))?
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned();
    let fields: Vec<Field> =
        header.split(',').map(|c| Field::new(c.trim().trim_matches('"'), DataType::Utf8, true)).collect();
    let known =
        ["record_id", "asset_id", "item_id", "period", "billed_quantity", "billed_amount", "external_billing_id"];
    if let Some(f) = fields.iter().find(|f| !known.contains(&f.name().as_str())) {
        return Err(QueryError::Source(format!(
            "{name}: unknown column `{}`; billing lines have {}",
            f.name(),
            known.join(", ")
        )));
    }
    let schema = Schema::new(fields);
    ctx.register_csv("billing", &name, CsvReadOptions::new().has_header(true).schema(&schema)).await?;
    Ok(())
}

fn column_or_null(columns: &[String], name: &str, cast: Option<&str>) -> String {
    if columns.iter().any(|c| c == name) {
        match cast {
            Some(t) => format!("CAST(NULLIF(CAST({name} AS VARCHAR), '') AS {t})"),
            None => format!("NULLIF(CAST({name} AS VARCHAR), '')"),
        }
    } else {
        format!("CAST(NULL AS {})", cast.unwrap_or("VARCHAR"))
    }
}

/// The reconciliation query over the tables `file_records` and `billing`.
pub async fn reconciliation_sql(ctx: &SessionContext, selection: &Selection) -> Result<String, QueryError> {
    reconciliation_sql_as_of(ctx, selection, None).await
}

/// [`reconciliation_sql`] of billing lines exported at `billed_at` (the commit time of the
/// lake version the export read): a record missing from the billing whose usage file was
/// created after that instant was reported after billing (`reported_after_billing`), not
/// missed by it.
pub async fn reconciliation_sql_as_of(
    ctx: &SessionContext,
    selection: &Selection,
    billed_at: Option<chrono::DateTime<chrono::Utc>>,
) -> Result<String, QueryError> {
    let columns: Vec<String> = ctx.table("billing").await?.schema().fields().iter().map(|f| f.name().clone()).collect();
    if !columns.iter().any(|c| c == "billed_quantity") {
        return Err(QueryError::Source("billing lines need a `billed_quantity` column".to_owned()));
    }
    let dec = Some("DECIMAL(38, 8)");
    Ok(format!(
        "WITH rec AS (SELECT id, vendor_record_id, usagefile_id, asset_id, item_id, period_from, usage, amount, multiplier, status, \
            created_time, external_billing_id AS closed_billing_id FROM file_records WHERE {sel}), \
         bill AS (SELECT ROW_NUMBER() OVER () AS line, {rid} AS record_id, {asset} AS asset_id, {item} AS item_id, \
            {period} AS period, {q} AS billed_quantity, {a} AS billed_amount, {ext} AS external_billing_id FROM billing), \
         keyed AS (SELECT line, record_id AS rid, billed_quantity, billed_amount, external_billing_id \
            FROM bill WHERE record_id IS NOT NULL \
            UNION ALL \
            SELECT b.line, k.id AS rid, b.billed_quantity, b.billed_amount, b.external_billing_id \
            FROM bill b LEFT JOIN rec k ON k.asset_id = b.asset_id AND k.item_id = b.item_id \
            AND k.period_from = b.period WHERE b.record_id IS NULL) \
         SELECT COALESCE(r.id, k.rid) AS record_id, r.vendor_record_id, r.usagefile_id, r.asset_id, r.item_id, r.period_from, \
            r.status, r.usage AS reported_quantity, k.billed_quantity, r.amount AS reported_amount, k.billed_amount, \
            k.external_billing_id, k.line AS billing_line, \
            CASE WHEN r.id IS NULL THEN 'billed_not_reported' \
                 {after} \
                 WHEN k.line IS NULL THEN 'missing_from_billing' \
                 WHEN k.billed_quantity IS NULL OR abs(r.usage - k.billed_quantity) * r.multiplier >= 1 \
                   THEN 'quantity_mismatch' \
                 WHEN COALESCE(abs(r.amount - k.billed_amount), 0) >= 0.01 \
                   OR (r.amount IS NULL) <> (k.billed_amount IS NULL) THEN 'amount_mismatch' \
                 ELSE 'matched' END AS outcome \
         FROM rec r FULL OUTER JOIN keyed k ON r.id = k.rid \
         ORDER BY outcome, asset_id, item_id, vendor_record_id, billing_line",
        after = billed_at.map_or_else(String::new, |t| format!(
            "WHEN k.line IS NULL AND r.created_time > CAST({} AS TIMESTAMP) THEN 'reported_after_billing'",
            sql_string(&t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
        )),
        sel = selection.predicate(),
        rid = column_or_null(&columns, "record_id", None),
        asset = column_or_null(&columns, "asset_id", None),
        item = column_or_null(&columns, "item_id", None),
        period = column_or_null(&columns, "period", None),
        q = column_or_null(&columns, "billed_quantity", dec),
        a = column_or_null(&columns, "billed_amount", dec),
        ext = column_or_null(&columns, "external_billing_id", None),
    ))
}

fn strings(batch: &RecordBatch, name: &str) -> Result<StringArray, QueryError> {
    let col = batch.column_by_name(name).ok_or_else(|| QueryError::Output(format!("no column {name}")))?;
    crate::output::text_column(col)
}

/// Outcome counts of a reconciliation report.
pub fn outcome_counts(report: &[RecordBatch]) -> Result<BTreeMap<String, u64>, QueryError> {
    let mut counts = BTreeMap::new();
    for b in report {
        let o = strings(b, "outcome")?;
        for i in 0..o.len() {
            *counts.entry(o.value(i).to_owned()).or_insert(0) += 1;
        }
    }
    Ok(counts)
}

/// Closes the matched, still approved records of a report with their billing id (grouped by
/// file; a file whose records are then all closed closes). Returns (closed, refused).
pub async fn close_matched(
    service: &FileService,
    actor: &Actor,
    report: &[RecordBatch],
) -> Result<(u64, Vec<String>), QueryError> {
    let mut by_file: BTreeMap<String, Vec<RecordRequest>> = BTreeMap::new();
    for b in report {
        let (outcome, id, file, status, ext) = (
            strings(b, "outcome")?,
            strings(b, "record_id")?,
            strings(b, "usagefile_id")?,
            strings(b, "status")?,
            strings(b, "external_billing_id")?,
        );
        for i in 0..b.num_rows() {
            if outcome.value(i) != "matched" || status.value(i) != "approved" || ext.is_null(i) {
                continue;
            }
            by_file.entry(file.value(i).to_owned()).or_default().push(RecordRequest::Close {
                id: id.value(i).to_owned(),
                external_billing_id: ext.value(i).to_owned(),
                external_billing_note: Some("reconciled".to_owned()),
            });
        }
    }
    let (mut closed, mut refused) = (0, Vec::new());
    for (file, requests) in by_file {
        let outcomes =
            service.change_records(actor, &file, &requests).await.map_err(|e| QueryError::Source(e.to_string()))?;
        for o in outcomes {
            match o.result {
                Ok(_) => closed += 1,
                Err(reason) => refused.push(reason),
            }
        }
    }
    Ok((closed, refused))
}

/// A session's results as strings, for tests and small outputs.
pub fn to_rows(batches: &[RecordBatch]) -> Result<Vec<Vec<String>>, QueryError> {
    let mut rows = Vec::new();
    for b in batches {
        let cols = b.columns().iter().map(crate::output::text_column).collect::<Result<Vec<_>, _>>()?;
        for i in 0..b.num_rows() {
            rows.push(
                cols.iter().map(|c| if c.is_null(i) { "NULL".to_owned() } else { c.value(i).to_owned() }).collect(),
            );
        }
    }
    Ok(rows)
}

/// The billing export of `selection` in `format` (`csv`, `parquet` or `xlsx`): the file's bytes
/// and how many records it holds. The XLSX export has a `general` sheet naming the export and
/// the selection, and the records on the records sheet, empty cells for nulls.
///
/// `lake` is the version of the lake the session read: the XLSX export's `general` sheet
/// names it (`lake_records_version`, `lake_events_version`), so that a reconciliation can read
/// the lake as this export saw it (`usageflow reconcile --as-of`).
pub async fn export(
    ctx: &SessionContext,
    selection: &Selection,
    format: &str,
    lake: usageflow_lake::LakeVersion,
) -> Result<(Vec<u8>, usize), QueryError> {
    let df = ctx.sql_with_options(&billing_export_sql(selection), crate::read_only()).await?;
    let schema = std::sync::Arc::new(df.schema().as_arrow().clone());
    let mut batches = df.collect().await?;
    if batches.is_empty() {
        // An empty export still names its columns.
        batches.push(RecordBatch::new_empty(schema));
    }
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    let bytes = match format {
        "csv" => crate::output::write(&batches, crate::Format::Csv)?,
        "parquet" => crate::output::write(&batches, crate::Format::Parquet)?,
        "xlsx" => {
            let table = to_rows(&batches)?;
            let columns: Vec<String> = batches
                .first()
                .map(|b| b.schema().fields().iter().map(|f| f.name().clone()).collect())
                .unwrap_or_default();
            let columns: Vec<&str> = columns.iter().map(String::as_str).collect();
            let table: Vec<Vec<String>> = table
                .into_iter()
                .map(|r| r.into_iter().map(|v| if v == "NULL" { String::new() } else { v }).collect())
                .collect();
            let mut general =
                vec![("export".to_owned(), "billing".to_owned()), ("records".to_owned(), rows.to_string())];
            if let Some(d) = selection.from {
                general.push(("period_from".to_owned(), d.to_string()));
            }
            if let Some(d) = selection.to {
                general.push(("period_to".to_owned(), d.to_string()));
            }
            for (key, version) in [("lake_records_version", lake.records), ("lake_events_version", lake.events)] {
                if let Some(v) = version {
                    general.push((key.to_owned(), v.to_string()));
                }
            }
            usageflow_files::write_workbook(&general, &[], &columns, &table)
                .map_err(|e| QueryError::Output(e.to_string()))?
        }
        other => return Err(QueryError::Output(format!("unknown export format `{other}`; use csv, parquet or xlsx"))),
    };
    Ok((bytes, rows))
}
