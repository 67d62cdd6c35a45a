//! `GET /usage/live`: usage being ingested, read from the committed events of the lake:
//! totals, a time series per item, usage per item and the top assets of a window (by default
//! the current calendar month up to now), optionally narrowed to a product, an item and an
//! asset. Sums are exact decimals written as strings.

use axum::Json;
use axum::extract::{Query, State};
use chrono::{DateTime, Datelike, Utc};
use serde::Deserialize;
use serde_json::{Value, json};
use usageflow_query::sql_string;

use crate::error::{ApiError, ApiResult};
use crate::{AppState, Principal, Role};

/// The window and filters of the live view.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LiveQuery {
    product: Option<String>,
    /// Item id or MPN.
    item: Option<String>,
    asset: Option<String>,
    /// First day (inclusive), `YYYY-MM-DD`; default: the first day of the current month.
    from: Option<String>,
    /// Last day (inclusive); default: today.
    to: Option<String>,
    /// `hour` or `day`; default: hours for windows of up to three days, days otherwise.
    bucket: Option<String>,
}

/// The live view at `now`.
pub(crate) async fn live_at(state: &AppState, who: &Principal, q: LiveQuery, now: DateTime<Utc>) -> ApiResult<Value> {
    if who.role == Role::Reseller {
        return Err(ApiError::forbidden("the live ingestion view is for vendors and providers"));
    }
    let today = now.date_naive();
    let month_start = today.with_day(1).unwrap_or(today);
    let from = crate::billing::day(q.from.as_deref(), "from")?.unwrap_or(month_start);
    let to = crate::billing::day(q.to.as_deref(), "to")?.unwrap_or(today);
    if to < from {
        return Err(ApiError::invalid(format!("to ({to}) is before from ({from})")));
    }
    if (to - from).num_days() > 366 {
        return Err(ApiError::invalid("the window is longer than 366 days"));
    }
    let bucket = match q.bucket.as_deref() {
        Some("hour") => "hour",
        Some("day") => "day",
        None | Some("") => {
            if (to - from).num_days() < 3 {
                "hour"
            } else {
                "day"
            }
        }
        Some(other) => return Err(ApiError::invalid(format!("bucket `{other}` is not hour or day"))),
    };
    let end = to.succ_opt().unwrap_or(to);
    let mut filter = format!(
        "start_time >= CAST('{from}T00:00:00Z' AS TIMESTAMP) AND start_time < CAST('{end}T00:00:00Z' AS TIMESTAMP)"
    );
    if let Some(p) = q.product.as_deref().filter(|p| !p.is_empty()) {
        filter.push_str(&format!(" AND product_id = {}", sql_string(p)));
    }
    if let Some(i) = q.item.as_deref().filter(|i| !i.is_empty()) {
        filter.push_str(&format!(" AND (item_id = {0} OR item_mpn = {0})", sql_string(i)));
    }
    if let Some(a) = q.asset.as_deref().filter(|a| !a.is_empty()) {
        filter.push_str(&format!(" AND asset_id = {}", sql_string(a)));
    }
    let sources = usageflow_query::load_lake_sources(&state.service).await?;
    let ctx = crate::sql::session(state, who, &sources).await?;
    let rows = |sql: String| {
        let ctx = &ctx;
        async move { crate::records::json_rows(ctx, &sql).await }
    };
    let totals = rows(format!(
        "SELECT COUNT(*) AS events, CAST(SUM(quantity) AS VARCHAR) AS quantity, COUNT(DISTINCT asset_id) AS assets, \
         CAST(MAX(end_time) AS VARCHAR) AS last_usage_at, CAST(MAX(kafka_timestamp) AS VARCHAR) AS last_ingested_at \
         FROM events WHERE {filter}"
    ))
    .await?;
    let series = rows(format!(
        "SELECT CAST(date_trunc('{bucket}', start_time) AS VARCHAR) AS bucket, item_mpn, \
         CAST(SUM(quantity) AS VARCHAR) AS quantity, COUNT(*) AS events \
         FROM events WHERE {filter} GROUP BY date_trunc('{bucket}', start_time), item_mpn ORDER BY bucket, item_mpn"
    ))
    .await?;
    let per_item = rows(format!(
        "SELECT product_id, item_id, item_mpn, CAST(q AS VARCHAR) AS quantity, events, assets FROM \
         (SELECT product_id, item_id, item_mpn, SUM(quantity) AS q, COUNT(*) AS events, COUNT(DISTINCT asset_id) AS assets \
         FROM events WHERE {filter} GROUP BY product_id, item_id, item_mpn) ORDER BY q DESC, item_mpn"
    ))
    .await?;
    let top_assets = rows(format!(
        "SELECT asset_id, CAST(q AS VARCHAR) AS quantity, events FROM (SELECT asset_id, SUM(quantity) AS q, \
         COUNT(*) AS events FROM events WHERE {filter} GROUP BY asset_id) ORDER BY q DESC, asset_id LIMIT 10"
    ))
    .await?;
    Ok(json!({
        "from": from.to_string(),
        "to": to.to_string(),
        "bucket": bucket,
        "totals": totals.into_iter().next().unwrap_or(Value::Null),
        "series": series,
        "per_item": per_item,
        "top_assets": top_assets,
    }))
}

pub(crate) async fn live(
    State(state): State<AppState>,
    who: Principal,
    query: Result<Query<LiveQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Value>> {
    let Query(q) = query.map_err(|e| ApiError::invalid(e.body_text()))?;
    Ok(Json(live_at(&state, &who, q, Utc::now()).await?))
}
