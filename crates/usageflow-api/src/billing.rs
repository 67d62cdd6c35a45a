//! `GET /billing/export`: the accepted records of the caller's share, ready for a billing
//! system, as CSV, Parquet or XLSX (the same export as `usageflow export-billing`).

use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use chrono::NaiveDate;
use serde::Deserialize;
use usageflow_query::billing::Selection;

use crate::error::{ApiError, ApiResult};
use crate::{AppState, Principal, Role};

/// The export's selection and format.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExportQuery {
    /// `csv` (default), `parquet` or `xlsx`.
    format: Option<String>,
    /// Files whose period starts on or after this day.
    from: Option<String>,
    /// Files whose period ends on or before this day.
    to: Option<String>,
    hub: Option<String>,
    marketplace: Option<String>,
    product: Option<String>,
}

/// The day a query parameter names (`YYYY-MM-DD`); none when absent or empty.
pub(crate) fn day(text: Option<&str>, name: &str) -> ApiResult<Option<NaiveDate>> {
    match text.filter(|t| !t.is_empty()) {
        None => Ok(None),
        Some(t) => NaiveDate::parse_from_str(t, "%Y-%m-%d")
            .map(Some)
            .map_err(|_| ApiError::invalid(format!("{name} `{t}` is not a date (YYYY-MM-DD)"))),
    }
}

pub(crate) async fn export(
    State(state): State<AppState>,
    who: Principal,
    query: Result<Query<ExportQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Response> {
    let Query(q) = query.map_err(|e| ApiError::invalid(e.body_text()))?;
    if who.role == Role::Reseller {
        return Err(ApiError::forbidden("billing exports are for providers and vendors"));
    }
    let format = q.format.clone().filter(|f| !f.is_empty()).unwrap_or_else(|| "csv".to_owned());
    let (content_type, extension) = match format.as_str() {
        "csv" => ("text/csv", "csv"),
        "parquet" => ("application/vnd.apache.parquet", "parquet"),
        "xlsx" => ("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "xlsx"),
        other => return Err(ApiError::invalid(format!("format `{other}` is not csv, parquet or xlsx"))),
    };
    let nonempty = |v: Option<String>| v.filter(|t| !t.is_empty());
    let selection = Selection {
        from: day(q.from.as_deref(), "from")?,
        to: day(q.to.as_deref(), "to")?,
        hub: nonempty(q.hub),
        marketplace: nonempty(q.marketplace),
        product: nonempty(q.product),
    };
    let sources = usageflow_query::load_file_sources_of(&state.service, state.files.files().await?.to_vec()).await?;
    let lake = sources.lake.version();
    let ctx = crate::sql::session(&state, &who, &sources).await?;
    let (bytes, rows) = usageflow_query::billing::export(&ctx, &selection, &format, lake).await?;
    let name = format!(
        "billing-{}-{}.{extension}",
        selection.from.map_or_else(|| "all".to_owned(), |d| d.to_string()),
        selection.to.map_or_else(|| "all".to_owned(), |d| d.to_string()),
    );
    Ok((
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{name}\"")),
            (header::HeaderName::from_static("x-record-count"), rows.to_string()),
            (
                header::HeaderName::from_static(crate::sql::LAKE_VERSION_HEADER),
                serde_json::to_string(&lake).unwrap_or_default(),
            ),
        ],
        bytes,
    )
        .into_response())
}
