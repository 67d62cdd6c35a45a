//! `POST /public/v1/sql`: read-only SQL over the caller's share of the lake, the usage files
//! and the catalogue (see `usageflow_query::lake`). The session holds only views filtered to
//! the caller's tenant, so no statement can read another tenant's rows; statements other than
//! queries are refused.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use usageflow_model::Chunk;
use usageflow_query::{Format, Scope};

use crate::error::{ApiError, ApiResult};
use crate::files::parse_json;
use crate::{AppState, Principal, Role};

/// Most rows one call returns.
pub const MAX_ROWS: usize = 10_000;

/// The rows a caller's SQL session shows.
fn scope_of(who: &Principal) -> Scope {
    match who.role {
        Role::Vendor => Scope::Vendor(who.account.clone()),
        Role::Provider => Scope::Provider(who.account.clone()),
        Role::Reseller => Scope::Reseller(who.account.clone()),
    }
}

/// The caller's scoped analyst session over `sources`.
pub(crate) async fn session(
    state: &AppState,
    who: &Principal,
    sources: &usageflow_query::Sources,
) -> ApiResult<datafusion::prelude::SessionContext> {
    Ok(usageflow_query::analyst_session(state.service.object_store().clone(), sources, &scope_of(who)).await?)
}

pub(crate) async fn query(State(state): State<AppState>, who: Principal, body: Bytes) -> ApiResult<Response> {
    let body: Value = parse_json(&body)?;
    let sql = body.get("sql").and_then(Value::as_str).ok_or_else(|| ApiError::invalid("`sql` is required"))?;
    let format = match body.get("format").and_then(Value::as_str).unwrap_or("json") {
        "json" => Format::Json,
        "csv" => Format::Csv,
        other => return Err(ApiError::invalid(format!("format `{other}` is not json or csv"))),
    };
    // The files and chunks come from the server's index and caches; only the record changes
    // and the reconciliations are read per call.
    let files = state.files.files().await?;
    let mut sources = usageflow_query::load_file_sources_of(&state.service, files.to_vec()).await?;
    let billed = files.iter().filter(|f| f.status.is_billed()).map(|f| f.id.as_str());
    sources.chunks = crate::chunks::chunks_of(&state, billed).await?.iter().map(|c| Chunk::clone(c)).collect();
    sources.reconciliations = usageflow_query::load_reconciliations(&state.service).await?;
    let ctx = session(&state, &who, &sources).await?;
    let bad = |e: &dyn std::fmt::Display| ApiError::new(StatusCode::BAD_REQUEST, "SQL_001", e.to_string());
    let df = ctx.sql_with_options(sql, usageflow_query::read_only()).await.map_err(|e| bad(&e))?;
    let batches = df.limit(0, Some(MAX_ROWS + 1)).map_err(|e| bad(&e))?.collect().await.map_err(|e| bad(&e))?;
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    if rows > MAX_ROWS {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "SQL_002",
            format!("the result has more than {MAX_ROWS} rows; aggregate, filter or page with LIMIT/OFFSET"),
        ));
    }
    let bytes = usageflow_query::output::write(&batches, format)?;
    let content_type = if format == Format::Json { "application/json" } else { "text/csv" };
    Ok(([(header::CONTENT_TYPE, content_type)], bytes).into_response())
}
