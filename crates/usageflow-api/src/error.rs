//! Errors as the Connect API returns them: `{"error_code": "...", "errors": ["..."]}` with the
//! HTTP status that fits.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use usageflow_files::ServiceError;
use usageflow_model::WorkflowError;

/// An API error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable code (see `docs/api.md`).
    pub code: &'static str,
    /// What went wrong, for people.
    pub errors: Vec<String>,
    /// The id under which the server logged the full error, when it withheld part of it.
    pub request_id: Option<String>,
}

/// A new id for a request's log lines: unique within the process, and across restarts.
pub fn request_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static START: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let start = *START.get_or_init(|| {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        u64::try_from(now.as_micros()).unwrap_or(u64::MAX) ^ u64::from(std::process::id())
    });
    format!("req-{start:x}-{:x}", NEXT.fetch_add(1, Ordering::Relaxed))
}

impl ApiError {
    /// A new error.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, errors: vec![message.into()], request_id: None }
    }

    /// The error, naming the request id under which the server logged it.
    pub fn with_request_id(mut self, id: String) -> Self {
        self.request_id = Some(id);
        self
    }

    /// 400 `VAL_001`: the request body or a parameter is invalid.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "VAL_001", message)
    }

    /// 404 `NOT_FOUND`: no such object, or not one the caller may see.
    pub fn not_found(kind: &str, id: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, "NOT_FOUND", format!("{kind} {id} does not exist"))
    }

    /// 403 `AUTH_002`: the caller may see the object but not do this.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "AUTH_002", message)
    }

    /// 500 `INTERNAL`.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = serde_json::json!({ "error_code": self.code, "errors": self.errors });
        if let Some(id) = &self.request_id {
            body["request_id"] = serde_json::Value::String(id.clone());
        }
        let mut response = (self.status, Json(body)).into_response();
        if let Some(id) = self.request_id.as_deref().and_then(|id| axum::http::HeaderValue::from_str(id).ok()) {
            response.headers_mut().insert("x-request-id", id);
        }
        response
    }
}

impl From<crate::rql::RqlError> for ApiError {
    fn from(e: crate::rql::RqlError) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "RQL_001", e.to_string())
    }
}

impl From<WorkflowError> for ApiError {
    fn from(e: WorkflowError) -> Self {
        let (status, code) = match &e {
            WorkflowError::NotFound { .. } => (StatusCode::NOT_FOUND, "NOT_FOUND"),
            WorkflowError::WrongRole { .. } | WorkflowError::NotOwner { .. } => (StatusCode::FORBIDDEN, "AUTH_002"),
            WorkflowError::AlreadyExists { .. } => (StatusCode::CONFLICT, "USG_002"),
            WorkflowError::InvalidInput { .. } => (StatusCode::BAD_REQUEST, "VAL_001"),
            WorkflowError::IllegalTransition { .. } => (StatusCode::BAD_REQUEST, "USG_001"),
            WorkflowError::OutOfOrder { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL"),
        };
        Self::new(status, code, e.to_string())
    }
}

impl From<usageflow_workflow::Error> for ApiError {
    fn from(e: usageflow_workflow::Error) -> Self {
        match e {
            usageflow_workflow::Error::Workflow(w) => w.into(),
            usageflow_workflow::Error::Contention { .. } => Self::new(StatusCode::CONFLICT, "USG_003", e.to_string()),
            other => {
                tracing::error!(error = %other, "workflow store failed");
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "STORE_001", other.to_string())
            }
        }
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::Workflow(w) => w.into(),
            ServiceError::Prerequisite(p) => Self::new(StatusCode::BAD_REQUEST, "USG_004", p.to_string()),
            ServiceError::NothingNew { .. } => Self::new(StatusCode::BAD_REQUEST, "USG_005", e.to_string()),
            ServiceError::Document(d) => Self::new(StatusCode::BAD_REQUEST, "USG_006", d),
        }
    }
}

impl From<usageflow_query::QueryError> for ApiError {
    fn from(e: usageflow_query::QueryError) -> Self {
        match e {
            usageflow_query::QueryError::DataFusion(d) => {
                // Record listings and aggregates: the query is ours, the caller's part checked;
                // a failure is logged, and its message (which may quote a row) withheld.
                let id = request_id();
                let public = usageflow_query::limits::public_error(&d, usageflow_query::limits::Phase::Running);
                tracing::warn!(request_id = %id, class = public.class, error = %d, "query failed");
                Self::new(StatusCode::BAD_REQUEST, "SQL_003", format!("{} error: {}", public.class, public.message))
                    .with_request_id(id)
            }
            usageflow_query::QueryError::AsOf(m) => Self::new(StatusCode::BAD_REQUEST, "SQL_006", m),
            other => {
                tracing::error!(error = %other, "query failed");
                Self::internal(other.to_string())
            }
        }
    }
}

/// Result of a handler.
pub type ApiResult<T> = Result<T, ApiError>;
