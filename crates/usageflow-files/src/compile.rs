//! Compiling a usage file from the lake: the committed usage records of a product ×
//! distribution contract × period, one row per record, in the product's schema.
//!
//! Compiling the same committed data again gives the same rows in the same order: rows are
//! sorted by record identity, and each row's `record_id` is derived from that identity
//! (`{asset}:{mpn}:{tier}:{category}:{period start}`), so it is stable across compilations.
//! Records whose period starts inside the file's period are included; quantities keep the
//! item's precision and amounts their exact decimals.

use std::sync::Arc;

use chrono::{DateTime, Datelike, Utc};
use object_store::ObjectStore;
use usageflow_lake::compact::{Key, Sum, sum_records};
use usageflow_lake::{LakeState, Table};
use usageflow_model::{Period, ReportingSchema};

use crate::write::record_columns;

/// Formats 10^-8 units with exactly `scale` decimals (the value must fit; lake values do).
fn decimal(units: i128, scale: u32) -> String {
    let d = rust_decimal::Decimal::from_i128_with_scale(units, 8);
    let mut d = d.normalize();
    d.rescale(scale);
    d.to_string()
}

fn utc(us: i64) -> String {
    DateTime::<Utc>::from_timestamp_micros(us).unwrap_or_default().format("%Y-%m-%d %H:%M:%S").to_string()
}

/// The rows of a compiled usage file, in [`record_columns`] order for `schema`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Compiled {
    /// Rows.
    pub rows: Vec<Vec<String>>,
    /// Categories used.
    pub categories: Vec<String>,
    /// Events summed into the rows.
    pub events: i64,
}

/// Compiles the committed records of `product` under `contract` whose period starts inside `period`.
pub async fn compile_from_lake(
    store: &Arc<dyn ObjectStore>,
    state: &LakeState,
    product: &str,
    contract: &str,
    schema: ReportingSchema,
    period: Period,
) -> Result<Compiled, usageflow_lake::tables::ReadError> {
    let from = period.start_utc().timestamp_micros();
    let to = period.end_utc().timestamp_micros() + 1_000_000;
    let months: Vec<String> = {
        let mut m = Vec::new();
        let mut d = period.from.with_day0(0).unwrap_or(period.from);
        while d <= period.to {
            m.push(d.format("%Y-%m").to_string());
            d = d.checked_add_months(chrono::Months::new(1)).unwrap_or(period.to.succ_opt().unwrap_or(period.to));
        }
        m
    };
    let files = state.files_of(Table::Records).filter(|f| {
        f.partition("product") == Some(product) && f.partition("month").is_none_or(|m| months.iter().any(|x| x == m))
    });
    let sums = sum_records(store, files).await?;
    let columns = record_columns(schema);
    let mut out = Compiled::default();
    for (key, sum) in
        sums.iter().filter(|(k, _)| k.contract == contract && k.period_start >= from && k.period_start < to)
    {
        out.events += sum.count;
        let category = key.category.clone().unwrap_or_else(|| "generic_category".to_owned());
        if !out.categories.contains(&category) {
            out.categories.push(category);
        }
        out.rows.push(columns.iter().map(|c| cell(c, key, sum)).collect());
    }
    Ok(out)
}

fn cell(column: &str, k: &Key, s: &Sum) -> String {
    let scale = u32::try_from(k.precision).unwrap_or(8);
    let tier = k.tier.map(|t| t.to_string()).unwrap_or_default();
    let category = k.category.clone().unwrap_or_else(|| "generic_category".to_owned());
    match column {
        "record_id" => format!("{}:{}:{}:{}:{}", k.asset, k.mpn, tier, category, utc(k.period_start).replace(' ', "T")),
        "record_note" => format!("{} event(s)", s.count),
        "item_search_criteria" => if k.item.is_some() { "item.global_id" } else { "item.mpn" }.to_owned(),
        "item_search_value" => k.item.clone().unwrap_or_else(|| k.mpn.clone()),
        "amount" => {
            s.amount.map(|a| decimal(a, 8).trim_end_matches('0').trim_end_matches('.').to_owned()).unwrap_or_default()
        }
        "quantity" => decimal(s.quantity, scale),
        "start_time_utc" => utc(k.period_start),
        "end_time_utc" => utc(k.period_end - 1_000_000),
        "asset_search_criteria" => "asset.id".to_owned(),
        "asset_search_value" => k.asset.clone(),
        // Dynamic items describe themselves.
        "item_name" | "item_mpn" if k.item.is_none() => k.mpn.clone(),
        "item_precision" if k.item.is_none() => {
            if scale == 0 {
                "integer".to_owned()
            } else {
                format!("decimal({scale})")
            }
        }
        "category_id" => category,
        "tier" => tier,
        _ => String::new(),
    }
}
