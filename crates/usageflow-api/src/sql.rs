//! `POST /public/v1/sql`: read-only SQL over the caller's share of the lake, the usage files
//! and the catalogue (see `usageflow_query::lake`). The session holds only the caller's rows,
//! cut before any expression of the query runs; statements other than queries are refused;
//! each query is held to the bounds of `api.sql_*` (memory per query and for the server, the
//! size of values, queries at once per account); and an error names its class and, while the
//! query was only planned, what is wrong with it, but never quotes a row.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use datafusion::logical_expr::LogicalPlan;
use serde_json::Value;
use usageflow_model::Chunk;
use usageflow_query::limits::{Phase, public_error};
use usageflow_query::{Format, Scope};

use crate::error::{ApiError, ApiResult, request_id};
use crate::files::parse_json;
use crate::{AppState, Principal, Role};

/// The answer's header naming the versions of the lake's tables the query read
/// (`{"records":12,"events":11}`).
pub const LAKE_VERSION_HEADER: &str = "x-usageflow-lake-version";

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

/// The caller's scoped analyst session over `sources`, held to the server's query bounds.
pub(crate) async fn session(
    state: &AppState,
    who: &Principal,
    sources: &usageflow_query::Sources,
) -> ApiResult<datafusion::prelude::SessionContext> {
    let bounds = Some((&state.limits.query, &state.limits.memory));
    let store = state.service.object_store().clone();
    Ok(usageflow_query::bounded_analyst_session(store, sources, &scope_of(who), bounds).await?)
}

/// A failed query's answer: its class and what may be said, with the request id under which
/// the full error is logged.
fn failure(err: &datafusion::error::DataFusionError, phase: Phase, who: &Principal) -> ApiError {
    let id = request_id();
    let public = public_error(err, phase);
    tracing::warn!(request_id = %id, account = %who.account, class = public.class, error = %err, "SQL query failed");
    let (status, code) = match public.class {
        "resources" | "limit" => (StatusCode::UNPROCESSABLE_ENTITY, "SQL_004"),
        "execution" => (StatusCode::BAD_REQUEST, "SQL_003"),
        _ => (StatusCode::BAD_REQUEST, "SQL_001"),
    };
    ApiError::new(status, code, format!("{} error: {}", public.class, public.message)).with_request_id(id)
}

pub(crate) async fn query(State(state): State<AppState>, who: Principal, body: Bytes) -> ApiResult<Response> {
    let body: Value = parse_json(&body)?;
    let sql = body.get("sql").and_then(Value::as_str).ok_or_else(|| ApiError::invalid("`sql` is required"))?;
    let format = match body.get("format").and_then(Value::as_str).unwrap_or("json") {
        "json" => Format::Json,
        "csv" => Format::Csv,
        other => return Err(ApiError::invalid(format!("format `{other}` is not json or csv"))),
    };
    let as_of = match body.get("as_of") {
        None | Some(Value::Null) => usageflow_lake::AsOf::Latest,
        Some(Value::Number(n)) => {
            usageflow_lake::AsOf::Version(n.as_u64().ok_or_else(|| ApiError::invalid("`as_of` is not a lake version"))?)
        }
        Some(Value::String(t)) => t.parse().map_err(|e: String| ApiError::invalid(format!("`as_of`: {e}")))?,
        Some(_) => return Err(ApiError::invalid("`as_of` is a lake version (a number) or a time (a string)")),
    };
    let Some(_slot) = state.limits.start_query(&who.account) else {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "SQL_005",
            format!(
                "account {} already runs {} queries at once (api.sql_max_concurrent_per_account); try again when one ends",
                who.account, state.limits.queries_per_account
            ),
        ));
    };
    // The files and chunks come from the server's index and caches; only the record changes
    // and the reconciliations are read per call.
    let files = state.files.files().await?;
    let mut sources = usageflow_query::load_file_sources_as_of(&state.service, files.to_vec(), as_of).await?;
    let lake_version = sources.lake.version();
    let billed = files.iter().filter(|f| f.status.is_billed()).map(|f| f.id.as_str());
    sources.chunks = crate::chunks::chunks_of(&state, billed).await?.iter().map(|c| Chunk::clone(c)).collect();
    sources.reconciliations = usageflow_query::load_reconciliations(&state.service).await?;
    let ctx = session(&state, &who, &sources).await?;
    let planning = |e: datafusion::error::DataFusionError| failure(&e, Phase::Planning, &who);
    let df = ctx.sql_with_options(sql, usageflow_query::read_only()).await.map_err(planning)?;
    if matches!(df.logical_plan(), LogicalPlan::Explain(_) | LogicalPlan::Analyze(_)) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "SQL_001",
            "EXPLAIN is not available over the API (plans name objects of the whole lake)",
        ));
    }
    let df = df.limit(0, Some(MAX_ROWS + 1)).map_err(planning)?;
    let task = df.task_ctx();
    let plan = df.create_physical_plan().await.map_err(planning)?;
    let batches = datafusion::physical_plan::collect(plan, std::sync::Arc::new(task))
        .await
        .map_err(|e| failure(&e, Phase::Running, &who))?;
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
    let versions = serde_json::to_string(&lake_version).unwrap_or_default();
    Ok((
        [
            (header::CONTENT_TYPE, content_type),
            (header::HeaderName::from_static(LAKE_VERSION_HEADER), versions.as_str()),
        ],
        bytes,
    )
        .into_response())
}
