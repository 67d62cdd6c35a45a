//! `/usage/records` and `/usage/aggregates`: queries run on DataFusion over the records
//! tables of the caller's files, which hold only the caller's rows (see
//! `usageflow_query::tenant_records_session`); RQL filters become DataFusion expressions over a
//! fixed set of columns, with every value a typed literal: no SQL text is assembled from a
//! request.

use std::collections::HashMap;
use std::str::FromStr;

use arrow::array::RecordBatch;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Multipart, Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use usageflow_files::RecordRequest;
use usageflow_model::{RecordStatus, UsageFile};
use usageflow_query::datafusion::common::ScalarValue;
use usageflow_query::datafusion::prelude::{Expr as DfExpr, cast, coalesce, col, lit, not};
use usageflow_query::sql_string;

use crate::error::{ApiError, ApiResult};
use crate::files::{multipart_file, parse_json, visible_file, xlsx_response};
use crate::listing::page_response;
use crate::rql::{Expr, Op, Query};
use crate::{AppState, Principal, Role, sees_file};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Time,
    Int,
}

/// Filterable record fields: API name → column of the `records` view.
const RECORD_FIELDS: &[(&str, &str, Kind)] = &[
    ("id", "id", Kind::Text),
    ("asset.id", "asset_id", Kind::Text),
    ("asset_id", "asset_id", Kind::Text),
    ("asset.external_id", "asset_external_id", Kind::Text),
    ("asset_external_id", "asset_external_id", Kind::Text),
    ("asset.external_uid", "asset_external_uid", Kind::Text),
    ("asset_external_uid", "asset_external_uid", Kind::Text),
    ("item.id", "item_id", Kind::Text),
    ("item_id", "item_id", Kind::Text),
    ("item.local_id", "item_local_id", Kind::Text),
    ("item.type", "item_type", Kind::Text),
    ("product.id", "product_id", Kind::Text),
    ("product_id", "product_id", Kind::Text),
    ("hub.id", "hub_id", Kind::Text),
    ("part_usage_file__hub__id", "hub_id", Kind::Text),
    ("usage_file", "usagefile_id", Kind::Text),
    ("usagefile.id", "usagefile_id", Kind::Text),
    ("usagefile.schema", "usagefile_schema", Kind::Text),
    ("category.id", "category_id", Kind::Text),
    ("tier", "tier", Kind::Int),
    ("status", "status", Kind::Text),
    ("external_billing_id", "external_billing_id", Kind::Text),
    ("start_date", "start_date", Kind::Time),
    ("end_date", "end_date", Kind::Time),
    ("usage_start_time", "start_date", Kind::Time),
    ("created_time", "created_time", Kind::Time),
];

const RECORD_ORDERABLE: &[&str] = &["status", "usage_start_time", "start_date", "created_time", "id"];

fn column(field: &str) -> ApiResult<(&'static str, Kind)> {
    RECORD_FIELDS.iter().find(|(f, _, _)| *f == field).map(|(_, c, k)| (*c, *k)).ok_or_else(|| {
        let names: Vec<&str> = RECORD_FIELDS.iter().map(|(f, _, _)| *f).collect();
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "RQL_002",
            format!("usage records cannot be filtered by `{field}`; filterable fields: {}", names.join(", ")),
        )
    })
}

/// A value of a field as a typed literal; a value of the wrong type is refused.
fn literal(field: &str, kind: Kind, value: &str) -> ApiResult<DfExpr> {
    let bad = |what: &str| {
        ApiError::new(StatusCode::BAD_REQUEST, "RQL_004", format!("`{value}` given for `{field}` is not {what}"))
    };
    Ok(match kind {
        Kind::Text => lit(value),
        Kind::Int => lit(value.parse::<u64>().map_err(|_| bad("a whole number"))?),
        Kind::Time => {
            let t = DateTime::parse_from_rfc3339(value)
                .map(|t| t.with_timezone(&Utc))
                .or_else(|_| chrono::NaiveDateTime::parse_from_str(value, "%Y-%m-%dT%H:%M:%S").map(|t| t.and_utc()))
                .or_else(|_| {
                    chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d")
                        .map(|d| d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc())
                })
                .map_err(|_| bad("a date or date-time"))?;
            lit(ScalarValue::Int64(Some(t.timestamp_micros())))
        }
    })
}

/// The column of a field; times compare as microseconds since the epoch.
fn field_column(c: &str, kind: Kind) -> DfExpr {
    let column = col(c);
    if kind == Kind::Time { cast(column, arrow::datatypes::DataType::Int64) } else { column }
}

/// An RQL filter as a DataFusion expression over the `records` view: columns from a fixed
/// list, every value a typed literal, no SQL text.
fn to_expr(expr: &Expr) -> ApiResult<DfExpr> {
    Ok(match expr {
        Expr::And(v) => {
            v.iter().map(to_expr).collect::<ApiResult<Vec<_>>>()?.into_iter().reduce(DfExpr::and).unwrap_or(lit(true))
        }
        Expr::Or(v) => {
            v.iter().map(to_expr).collect::<ApiResult<Vec<_>>>()?.into_iter().reduce(DfExpr::or).unwrap_or(lit(false))
        }
        Expr::Not(e) => not(coalesce(vec![to_expr(e)?, lit(false)])),
        Expr::Null { field } => {
            let (c, k) = column(field)?;
            field_column(c, k).is_null()
        }
        Expr::Empty { field } => {
            let (c, k) = column(field)?;
            let column = field_column(c, k);
            if k == Kind::Text { column.clone().is_null().or(column.eq(lit(""))) } else { column.is_null() }
        }
        Expr::In { field, values, negated } => {
            let (c, k) = column(field)?;
            let list = values.iter().map(|v| literal(field, k, v)).collect::<ApiResult<Vec<_>>>()?;
            let column = field_column(c, k);
            if *negated { column.clone().is_null().or(column.in_list(list, true)) } else { column.in_list(list, false) }
        }
        Expr::Cmp { op, field, value } => {
            let (c, k) = column(field)?;
            let column = field_column(c, k);
            match op {
                Op::Like | Op::Ilike => {
                    if k != Kind::Text {
                        return Err(ApiError::new(
                            StatusCode::BAD_REQUEST,
                            "RQL_004",
                            format!("`{}` cannot be used on `{field}`", op.name()),
                        ));
                    }
                    let pattern = lit(value.replace('*', "%"));
                    if *op == Op::Like { column.like(pattern) } else { column.ilike(pattern) }
                }
                _ => {
                    let value = literal(field, k, value)?;
                    match op {
                        Op::Eq => column.eq(value),
                        Op::Ne => column.clone().is_null().or(column.not_eq(value)),
                        Op::Lt => column.lt(value),
                        Op::Le => column.lt_eq(value),
                        Op::Gt => column.gt(value),
                        _ => column.gt_eq(value),
                    }
                }
            }
        }
    })
}

/// Files whose records the caller may query and, for a reseller, its account: its records are
/// cut at the scan to the assets it resells (`usageflow_query::tenant_records_session`).
async fn scope(state: &AppState, who: &Principal) -> ApiResult<(Vec<UsageFile>, Option<String>)> {
    let all = state.files.files().await?;
    Ok(match who.role {
        Role::Vendor | Role::Provider => (all.iter().filter(|f| sees_file(who, f)).cloned().collect(), None),
        Role::Reseller => (all.to_vec(), Some(who.account.clone())),
    })
}

/// A session whose `records` view holds only the records of `files` (and, for a reseller,
/// only its own among them), in every table it joins.
async fn session(
    state: &AppState,
    files: &[UsageFile],
    reseller: Option<&str>,
) -> ApiResult<datafusion::prelude::SessionContext> {
    let changes = state.service.record_changes_of(files).await?;
    let store = state.service.object_store().clone();
    let rows = match state.records.table(&store, files).await? {
        Some(rows) => rows,
        None => usageflow_query::record_rows_of(files)?,
    };
    Ok(usageflow_query::tenant_records_session(store, files, &changes, rows, reseller).await?)
}

/// A record as the API shows it (`usage.UsageRecord`); quantities are exact JSON numbers.
#[derive(Debug, Serialize)]
pub(crate) struct ApiRecord {
    id: String,
    start_date: Option<String>,
    end_date: Option<String>,
    product_id: Option<String>,
    item: Value,
    item_id: Option<String>,
    resource_local_id: Option<String>,
    asset: Value,
    asset_id: Option<String>,
    asset_external_id: Option<String>,
    asset_external_uid: Option<String>,
    category: Value,
    tier: Option<u64>,
    usage: Box<RawValue>,
    amount: Option<Box<RawValue>>,
    multiplier: u64,
    status: Option<String>,
    external_billing_id: Option<String>,
    external_billing_note: Option<String>,
    closed_at: Option<String>,
    closed_by: Option<String>,
    params: Value,
    usagefile: Value,
    hub: Value,
    vendor_record_id: Option<String>,
    record_note: Option<String>,
}

fn number(text: Option<&str>) -> Option<Box<RawValue>> {
    let d = Decimal::from_str(text?).ok()?.normalize();
    RawValue::from_string(d.to_string()).ok()
}

fn time(text: Option<&str>) -> Option<String> {
    let t = text?;
    Some(DateTime::parse_from_rfc3339(t).map(|d| d.with_timezone(&Utc).to_rfc3339()).unwrap_or_else(|_| t.to_owned()))
}

/// Rows of batches as maps of column → text.
fn rows(batches: &[RecordBatch]) -> ApiResult<Vec<HashMap<String, Option<String>>>> {
    Ok(usageflow_query::output::text_rows(batches)?)
}

fn record_of(row: &HashMap<String, Option<String>>) -> ApiRecord {
    let s = |k: &str| row.get(k).cloned().flatten();
    ApiRecord {
        id: s("id").unwrap_or_default(),
        start_date: time(s("start_date").as_deref()),
        end_date: time(s("end_date").as_deref()),
        product_id: s("product_id"),
        item: json!({"id": s("item_id"), "local_id": s("item_local_id"), "name": s("item_name"), "unit": s("item_unit"),
            "mpn": s("item_mpn"), "precision": s("item_precision"), "type": s("item_type")}),
        item_id: s("item_id"),
        resource_local_id: s("item_local_id"),
        asset: json!({"id": s("asset_id"), "external_id": s("asset_external_id"),
            "external_uid": s("asset_external_uid"), "recon_id": s("asset_recon_id")}),
        asset_id: s("asset_id"),
        asset_external_id: s("asset_external_id"),
        asset_external_uid: s("asset_external_uid"),
        category: json!({"id": s("category_id"), "name": s("category_name")}),
        tier: s("tier").and_then(|t| t.parse().ok()),
        usage: number(s("usage").as_deref()).unwrap_or_else(|| RawValue::from_string("0".into()).expect("0 is JSON")),
        amount: number(s("amount").as_deref()),
        multiplier: s("multiplier").and_then(|m| m.parse().ok()).unwrap_or(1),
        status: s("status"),
        external_billing_id: s("external_billing_id"),
        external_billing_note: s("external_billing_note"),
        closed_at: time(s("closed_at").as_deref()),
        closed_by: s("closed_by"),
        params: s("params").and_then(|p| serde_json::from_str(&p).ok()).unwrap_or_else(|| json!([])),
        usagefile: json!({"id": s("usagefile_id"), "name": s("usagefile_name"), "schema": s("usagefile_schema"),
            "currency": s("usagefile_currency")}),
        hub: json!({"id": s("hub_id")}),
        vendor_record_id: s("vendor_record_id"),
        record_note: s("record_note"),
    }
}

/// The filter of a listing: its RQL filter and its search, as one expression.
fn filter_of(query: &Query) -> ApiResult<DfExpr> {
    let mut parts = Vec::new();
    if let Some(f) = &query.filter {
        parts.push(to_expr(f)?);
    }
    if let Some(search) = query.search.as_deref().filter(|s| !s.is_empty()) {
        let p = || lit(format!("%{search}%"));
        let any =
            ["id", "asset_id", "item_id", "vendor_record_id"].into_iter().map(|c| col(c).ilike(p())).reduce(DfExpr::or);
        parts.extend(any);
    }
    Ok(parts.into_iter().reduce(DfExpr::and).unwrap_or(lit(true)))
}

/// A query failed in the engine: logged, its message withheld (it may quote a row).
fn engine(e: datafusion::error::DataFusionError) -> ApiError {
    usageflow_query::QueryError::DataFusion(e).into()
}

async fn query_records(state: &AppState, who: &Principal, query: &Query) -> ApiResult<(Vec<ApiRecord>, usize)> {
    for o in &query.ordering {
        if !RECORD_ORDERABLE.contains(&o.field.as_str()) {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "RQL_003",
                format!(
                    "usage records cannot be ordered by `{}`; orderable fields: {}",
                    o.field,
                    RECORD_ORDERABLE.join(", ")
                ),
            ));
        }
    }
    let (files, reseller) = scope(state, who).await?;
    let filter = filter_of(query)?;
    let ctx = session(state, &files, reseller.as_deref()).await?;
    let picked = ctx.table("records").await.map_err(engine)?.filter(filter).map_err(engine)?;
    let total = picked.clone().count().await.map_err(engine)?;
    if query.page_size() == 0 {
        // `limit=0`: the count alone (how Connect's clients count a collection).
        return Ok((Vec::new(), total));
    }
    let mut order = query
        .ordering
        .iter()
        .map(|o| {
            let (c, _) = column(&o.field)?;
            Ok(col(c).sort(!o.descending, o.descending))
        })
        .collect::<ApiResult<Vec<_>>>()?;
    order.push(col("id").sort(true, false));
    let batches = picked
        .sort(order)
        .map_err(engine)?
        .limit(query.offset, Some(query.page_size()))
        .map_err(engine)?
        .collect()
        .await
        .map_err(engine)?;
    Ok((rows(&batches)?.iter().map(record_of).collect(), total))
}

pub(crate) async fn list(State(state): State<AppState>, who: Principal, RawQuery(q): RawQuery) -> ApiResult<Response> {
    let query = state.rql(q.as_deref())?;
    let (items, total) = query_records(&state, &who, &query).await?;
    Ok(page_response(items, &query, total))
}

async fn one(state: &AppState, who: &Principal, id: &str) -> ApiResult<ApiRecord> {
    let query = Query {
        filter: Some(Expr::Cmp { op: Op::Eq, field: "id".into(), value: id.into() }),
        limit: Some(1),
        ..Query::default()
    };
    let (mut items, _) = query_records(state, who, &query).await?;
    items.pop().ok_or_else(|| ApiError::not_found("usage record", id))
}

pub(crate) async fn detail(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<ApiRecord>> {
    Ok(Json(one(&state, &who, &id).await?))
}

async fn change_one(state: &AppState, who: &Principal, id: &str, request: RecordRequest) -> ApiResult<Json<ApiRecord>> {
    let file_id = usageflow_model::ids::file_of_record(id).ok_or_else(|| ApiError::not_found("usage record", id))?;
    let file = visible_file(state, who, &file_id).await.map_err(|_| ApiError::not_found("usage record", id))?;
    if who.role != Role::Provider {
        return Err(ApiError::forbidden(format!("only the provider of {} changes its records", file.id)));
    }
    let outcome = state.service.change_records(&who.actor(), &file_id, &[request]).await?;
    if let Some(Err(reason)) = outcome.into_iter().next().map(|o| o.result) {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "USG_007", reason));
    }
    Ok(Json(one(state, who, id).await?))
}

pub(crate) async fn set_status(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<ApiRecord>> {
    let body: Value = parse_json(&body)?;
    let status: RecordStatus = body
        .get("status")
        .cloned()
        .ok_or_else(|| ApiError::invalid("status is required"))
        .and_then(|s| serde_json::from_value(s).map_err(|e| ApiError::invalid(format!("invalid `status`: {e}"))))?;
    change_one(&state, &who, &id, RecordRequest::SetStatus { id: id.clone(), status }).await
}

fn close_request(id: &str, body: &Value) -> RecordRequest {
    let s = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_owned);
    RecordRequest::Close {
        id: id.to_owned(),
        external_billing_id: s("external_billing_id").unwrap_or_default(),
        external_billing_note: s("external_billing_note"),
    }
}

pub(crate) async fn close_one(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<ApiRecord>> {
    let body: Value = if body.is_empty() { json!({}) } else { parse_json(&body)? };
    change_one(&state, &who, &id, close_request(&id, &body)).await
}

/// One entry of the bulk close answer, in the spec's shape: `status` is the record's status
/// after the call (`closed`, or the one it kept when refused; `invalid` for an id that names
/// no record the caller can see), `error_codes` and `error_details` strings, null on success.
fn close_entry(id: &str, outcome: Result<RecordStatus, String>, status: Option<RecordStatus>) -> Value {
    match outcome {
        Ok(status) => json!({"id": id, "status": status.as_str(), "error_codes": null, "error_details": null}),
        Err(reason) => json!({
            "id": id,
            "status": status.map_or("invalid", RecordStatus::as_str),
            "error_codes": "USG_007",
            "error_details": reason,
        }),
    }
}

/// Closes records in bulk: 206 with one result per record, in the order given.
pub(crate) async fn close_many(State(state): State<AppState>, who: Principal, body: Bytes) -> ApiResult<Response> {
    let body: Vec<Value> = parse_json(&body)?;
    if who.role != Role::Provider {
        return Err(ApiError::forbidden("only providers close records"));
    }
    let mut results: Vec<Option<Value>> = vec![None; body.len()];
    let mut by_file: HashMap<String, Vec<(usize, RecordRequest)>> = HashMap::new();
    for (i, item) in body.iter().enumerate() {
        let id = item.get("id").and_then(Value::as_str).unwrap_or_default();
        match usageflow_model::ids::file_of_record(id) {
            None => {
                results[i] = Some(close_entry(id, Err("the id is not a usage record id (UR-…)".to_owned()), None));
            }
            Some(file) => by_file.entry(file).or_default().push((i, close_request(id, item))),
        }
    }
    for (file_id, requests) in by_file {
        let visible = match visible_file(&state, &who, &file_id).await {
            Ok(_) => true,
            Err(e) if e.status == StatusCode::NOT_FOUND => false,
            Err(e) => return Err(e),
        };
        let outcomes = if visible {
            let reqs: Vec<RecordRequest> = requests.iter().map(|(_, r)| r.clone()).collect();
            state.service.change_records(&who.actor(), &file_id, &reqs).await?
        } else {
            requests
                .iter()
                .map(|(_, r)| usageflow_files::RecordOutcome {
                    id: r.id().to_owned(),
                    result: Err(format!("usage record {} does not exist", r.id())),
                    status: None,
                })
                .collect()
        };
        for ((i, _), outcome) in requests.iter().zip(outcomes) {
            results[*i] = Some(close_entry(&outcome.id, outcome.result, outcome.status));
        }
    }
    Ok((StatusCode::PARTIAL_CONTENT, Json(results.into_iter().flatten().collect::<Vec<_>>())).into_response())
}

const AGGREGATE_FIELDS: &[(&str, &str)] = &[
    ("asset.id", "asset_id"),
    ("asset.external_uid", "asset_external_uid"),
    ("item.id", "item_id"),
    ("item.local_id", "item_local_id"),
    ("item.type", "item_type"),
];

fn aggregate_filter(expr: &Expr) -> ApiResult<()> {
    for f in expr.fields() {
        if !AGGREGATE_FIELDS.iter().any(|(a, _)| *a == f) {
            let names: Vec<&str> = AGGREGATE_FIELDS.iter().map(|(a, _)| *a).collect();
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "RQL_002",
                format!("usage aggregates cannot be filtered by `{f}`; filterable fields: {}", names.join(", ")),
            ));
        }
    }
    Ok(())
}

/// Per asset and item: `consumed` sums every reported record that is not invalid or rejected,
/// `accepted` the approved and closed ones.
async fn aggregate(state: &AppState, who: &Principal, query: &Query, asset: Option<&str>) -> ApiResult<Response> {
    if let Some(f) = &query.filter {
        aggregate_filter(f)?;
    }
    let (files, reseller) = scope(state, who).await?;
    let mut filter = filter_of(&Query { filter: query.filter.clone(), ..Query::default() })?;
    if let Some(a) = asset {
        filter = filter.and(col("asset_id").eq(lit(a)));
    }
    let ctx = session(state, &files, reseller.as_deref()).await?;
    let picked = ctx.table("records").await.map_err(engine)?.filter(filter).map_err(engine)?;
    ctx.register_table("picked", picked.into_view()).map_err(engine)?;
    // The currency is the one of the amounts: a record without an amount (a QT file, whatever
    // its currency field says) does not split an asset and item in two.
    let sql = "SELECT asset_id, asset_external_id, asset_external_uid, item_id, item_local_id, item_name, item_unit, \
         item_mpn, item_precision, item_type, \
         CASE WHEN amount IS NULL THEN NULL ELSE usagefile_currency END AS currency, \
         SUM(usage) AS consumed, \
         SUM(CASE WHEN status IN ('approved', 'closed') THEN usage ELSE 0 END) AS accepted, \
         SUM(amount) AS amount, MAX(created_time) AS last_reported \
         FROM picked WHERE status NOT IN ('invalid', 'rejected') \
         GROUP BY asset_id, asset_external_id, asset_external_uid, item_id, item_local_id, item_name, item_unit, \
         item_mpn, item_precision, item_type, CASE WHEN amount IS NULL THEN NULL ELSE usagefile_currency END \
         ORDER BY asset_id, item_id, item_local_id, item_mpn, item_name, currency NULLS LAST";
    let all = merge_currencies(rows(&usageflow_query::collect(&ctx, sql).await?)?);
    let total = all.len();
    #[derive(Serialize)]
    struct Aggregate {
        item: Value,
        asset: Value,
        amount: Option<Box<RawValue>>,
        currency: Option<String>,
        consumed: Box<RawValue>,
        accepted: Box<RawValue>,
        events: Value,
    }
    let zero = || RawValue::from_string("0".into()).expect("0 is JSON");
    let page: Vec<Aggregate> = all
        .iter()
        .skip(query.offset)
        .take(query.page_size())
        .map(|row| {
            let s = |k: &str| row.get(k).cloned().flatten();
            Aggregate {
                item: json!({"id": s("item_id"), "local_id": s("item_local_id"), "name": s("item_name"),
                    "unit": s("item_unit"), "mpn": s("item_mpn"), "precision": s("item_precision"), "type": s("item_type")}),
                asset: json!({"id": s("asset_id"), "external_id": s("asset_external_id"), "external_uid": s("asset_external_uid")}),
                amount: number(s("amount").as_deref()),
                currency: s("currency"),
                consumed: number(s("consumed").as_deref()).unwrap_or_else(zero),
                accepted: number(s("accepted").as_deref()).unwrap_or_else(zero),
                events: json!({"last_reported": {"at": time(s("last_reported").as_deref())}}),
            }
        })
        .collect();
    Ok(page_response(page, query, total))
}

/// One aggregate per asset and item: the quantities reported without an amount join the row
/// of the amounts' currency when there is one currency. Amounts in several currencies are never
/// added together: each currency keeps its row.
fn merge_currencies(rows: Vec<HashMap<String, Option<String>>>) -> Vec<HashMap<String, Option<String>>> {
    let key = |r: &HashMap<String, Option<String>>| {
        ["asset_id", "item_id", "item_local_id", "item_mpn", "item_name"]
            .map(|k| r.get(k).cloned().flatten().unwrap_or_default())
    };
    let sum = |a: &Option<String>, b: &Option<String>| -> Option<String> {
        let d = |v: &Option<String>| v.as_deref().and_then(|t| Decimal::from_str(t).ok());
        match (d(a), d(b)) {
            (Some(x), Some(y)) => Some((x + y).to_string()),
            (Some(x), None) | (None, Some(x)) => Some(x.to_string()),
            (None, None) => None,
        }
    };
    let mut out: Vec<HashMap<String, Option<String>>> = Vec::with_capacity(rows.len());
    let mut i = 0;
    while i < rows.len() {
        let k = key(&rows[i]);
        let mut j = i;
        while j < rows.len() && key(&rows[j]) == k {
            j += 1;
        }
        let group = &rows[i..j];
        let currencies = group.iter().filter(|r| r.get("currency").is_some_and(Option::is_some)).count();
        if currencies <= 1 && group.len() > 1 {
            let mut merged = group[0].clone();
            for other in &group[1..] {
                for column in ["consumed", "accepted", "amount"] {
                    let total = sum(&merged.get(column).cloned().flatten(), &other.get(column).cloned().flatten());
                    merged.insert(column.to_owned(), total);
                }
                let later =
                    other.get("last_reported").cloned().flatten().max(merged.get("last_reported").cloned().flatten());
                merged.insert("last_reported".to_owned(), later);
                if merged.get("currency").is_none_or(Option::is_none) {
                    merged.insert("currency".to_owned(), other.get("currency").cloned().flatten());
                }
            }
            out.push(merged);
        } else {
            out.extend(group.iter().cloned());
        }
        i = j;
    }
    out
}

pub(crate) async fn aggregates(
    State(state): State<AppState>,
    who: Principal,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let query = state.rql(q.as_deref())?;
    aggregate(&state, &who, &query, None).await
}

pub(crate) async fn asset_aggregates(
    State(state): State<AppState>,
    who: Principal,
    Path(asset): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let query = state.rql(q.as_deref())?;
    aggregate(&state, &who, &query, Some(&asset)).await
}

// Reconciliations.

pub(crate) async fn file_reconciliation(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    form: Multipart,
) -> ApiResult<Response> {
    let file = visible_file(&state, &who, &id).await?;
    if who.role != Role::Provider {
        return Err(ApiError::forbidden(format!("only the provider of {id} reconciles it")));
    }
    let upload = multipart_file(form, RECON_FILE).await?;
    let note = upload.field(UPLOAD_NOTE).unwrap_or_default().to_owned();
    crate::recon::reconcile(&state, &who, &file, &upload.filename, upload.bytes, note).await?;
    let file = state.service.workflow().get(&id).await?;
    Ok((StatusCode::CREATED, Json(crate::files::file_json(&file))).into_response())
}

/// The multipart names of a reconciliation workbook (the spec's, then the Haxe SDK's).
const RECON_FILE: &[&str] = &["recon_file", "reconciliation_file"];
/// The names of the upload note.
const UPLOAD_NOTE: &[&str] = &["upload_note", "note"];

pub(crate) async fn reconciliation_upload(
    State(state): State<AppState>,
    who: Principal,
    form: Multipart,
) -> ApiResult<Response> {
    if who.role != Role::Provider {
        return Err(ApiError::forbidden("only providers upload reconciliations"));
    }
    let upload = multipart_file(form, RECON_FILE).await?;
    let file_id = match upload.field(&["usagefile", "usagefile.id", "usage_file"]) {
        Some(id) => id.to_owned(),
        None => crate::recon::file_named_in(&upload.bytes)?,
    };
    let note = upload.field(UPLOAD_NOTE).unwrap_or_default().to_owned();
    let file = visible_file(&state, &who, &file_id).await?;
    let recon = crate::recon::reconcile(&state, &who, &file, &upload.filename, upload.bytes, note).await?;
    Ok((StatusCode::CREATED, Json(crate::recon::recon_json(&recon))).into_response())
}

pub(crate) async fn reconciliations(
    State(state): State<AppState>,
    who: Principal,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let query = state.rql(q.as_deref())?;
    crate::recon::list(&state, &who, &query).await
}

pub(crate) async fn reconciliation(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let stored = crate::recon::visible(&state, &who, &id).await?;
    Ok(Json(crate::recon::recon_json(&stored.recon)))
}

pub(crate) async fn reconciliation_uploaded(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let stored = crate::recon::visible(&state, &who, &id).await?;
    let object = stored.uploaded.ok_or_else(|| ApiError::not_found("uploaded file of reconciliation", &id))?;
    Ok(xlsx_response(state.service.document(&object).await?, &object.filename))
}

pub(crate) async fn reconciliation_processed(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let stored = crate::recon::visible(&state, &who, &id).await?;
    let object = stored.processed.ok_or_else(|| ApiError::not_found("processed file of reconciliation", &id))?;
    Ok(xlsx_response(state.service.document(&object).await?, &object.filename))
}

/// Columns that hold exact decimals, written without trailing zeros.
const DECIMAL_COLUMNS: [&str; 3] = ["usage", "amount", "quantity"];

/// Rows of `sql` over `ctx` as JSON objects of text: exact decimals stay text, normalized
/// (`100.5`, not `100.50000000`).
pub(crate) async fn json_rows(ctx: &datafusion::prelude::SessionContext, sql: &str) -> ApiResult<Vec<Value>> {
    let text = |k: &str, v: String| {
        if DECIMAL_COLUMNS.contains(&k)
            && let Ok(d) = Decimal::from_str(&v)
        {
            return Value::String(d.normalize().to_string());
        }
        Value::String(v)
    };
    Ok(rows(&usageflow_query::collect(ctx, sql).await?)?
        .into_iter()
        .map(|row| {
            Value::Object(
                row.into_iter()
                    .map(|(k, v)| {
                        let v = v.map_or(Value::Null, |v| text(&k, v));
                        (k, v)
                    })
                    .collect(),
            )
        })
        .collect())
}

/// `GET /usage/files/{id}/summary`: what a reviewer looks at before accepting: totals, usage
/// per item, the top assets and usage per day, over the file's valid records. Sums are exact
/// decimals written as strings.
pub(crate) async fn file_summary(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let file = visible_file(&state, &who, &id).await?;
    let ctx = session(&state, std::slice::from_ref(&file), None).await?;
    let id = sql_string(&file.id);
    let totals = json_rows(
        &ctx,
        &format!(
            "SELECT COUNT(*) AS records, CAST(SUM(usage) AS VARCHAR) AS usage, CAST(SUM(amount) AS VARCHAR) AS amount, \
             COUNT(DISTINCT asset_id) AS assets, COUNT(DISTINCT item_id) AS items, \
             CAST(MIN(start_date) AS VARCHAR) AS first_start, CAST(MAX(end_date) AS VARCHAR) AS last_end \
             FROM records WHERE usagefile_id = {id}"
        ),
    )
    .await?;
    let per_item = json_rows(
        &ctx,
        &format!(
            "SELECT item_id, item_name, item_unit, item_mpn, records, assets, CAST(u AS VARCHAR) AS usage, \
             CAST(a AS VARCHAR) AS amount FROM (SELECT item_id, item_name, item_unit, item_mpn, COUNT(*) AS records, \
             COUNT(DISTINCT asset_id) AS assets, SUM(usage) AS u, SUM(amount) AS a \
             FROM records WHERE usagefile_id = {id} GROUP BY item_id, item_name, item_unit, item_mpn) \
             ORDER BY u DESC, item_id"
        ),
    )
    .await?;
    let top_assets = json_rows(
        &ctx,
        &format!(
            "SELECT asset_id, asset_external_id, customer_name, records, CAST(u AS VARCHAR) AS usage, \
             CAST(a AS VARCHAR) AS amount FROM (SELECT asset_id, asset_external_id, customer_name, COUNT(*) AS records, \
             SUM(usage) AS u, SUM(amount) AS a FROM records WHERE usagefile_id = {id} \
             GROUP BY asset_id, asset_external_id, customer_name) ORDER BY u DESC, asset_id LIMIT 20"
        ),
    )
    .await?;
    let per_day = json_rows(
        &ctx,
        &format!(
            "SELECT CAST(CAST(date_trunc('day', start_date) AS DATE) AS VARCHAR) AS day, item_id, item_name, \
             CAST(SUM(usage) AS VARCHAR) AS usage \
             FROM records WHERE usagefile_id = {id} \
             GROUP BY date_trunc('day', start_date), item_id, item_name ORDER BY day, item_id"
        ),
    )
    .await?;
    Ok(Json(json!({
        "id": file.id,
        "status": file.status,
        "totals": totals.into_iter().next().unwrap_or(Value::Null),
        "per_item": per_item,
        "top_assets": top_assets,
        "per_day": per_day,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rql::parse;

    #[test]
    fn aggregates_split_by_currency_only_between_amounts() {
        let row = |asset: &str, currency: Option<&str>, consumed: &str, amount: Option<&str>| {
            HashMap::from([
                ("asset_id".to_owned(), Some(asset.to_owned())),
                ("item_id".to_owned(), Some("PRD-1-0001".to_owned())),
                ("currency".to_owned(), currency.map(str::to_owned)),
                ("consumed".to_owned(), Some(consumed.to_owned())),
                ("accepted".to_owned(), Some("0".to_owned())),
                ("amount".to_owned(), amount.map(str::to_owned)),
                ("last_reported".to_owned(), Some("2026-10-02".to_owned())),
            ])
        };
        let merged = merge_currencies(vec![
            row("AS-1", Some("USD"), "1.5", Some("3.25")),
            row("AS-1", None, "2", None),
            row("AS-2", Some("EUR"), "1", Some("1")),
            row("AS-2", Some("USD"), "1", Some("2")),
        ]);
        assert_eq!(merged.len(), 3, "{merged:?}");
        assert_eq!(merged[0]["consumed"].as_deref(), Some("3.5"));
        assert_eq!(merged[0]["amount"].as_deref(), Some("3.25"));
        assert_eq!(merged[0]["currency"].as_deref(), Some("USD"));
        assert_eq!(merged[1]["currency"].as_deref(), Some("EUR"));
        assert_eq!(merged[2]["currency"].as_deref(), Some("USD"));
    }

    #[test]
    fn rql_becomes_an_expression_of_typed_literals() {
        let q =
            parse("and(eq(asset.id,AS-1' OR '1'='1),in(status,(approved,closed)),ge(start_date,2024-01-01))").unwrap();
        let e = to_expr(q.filter.as_ref().unwrap()).unwrap().to_string();
        assert!(e.contains("Utf8(\"AS-1' OR '1'='1\")"), "{e}");
        assert!(e.contains("status IN ([Utf8(\"approved\"), Utf8(\"closed\")])"), "{e}");
        assert!(e.contains("CAST(start_date AS Int64) >= Int64(1704067200000000)"), "{e}");
        let e = to_expr(parse("eq(secret,1)").unwrap().filter.as_ref().unwrap()).unwrap_err();
        assert_eq!(e.code, "RQL_002");
        let e = to_expr(parse("gt(created_time,yesterday)").unwrap().filter.as_ref().unwrap()).unwrap_err();
        assert_eq!(e.code, "RQL_004");
    }
}
