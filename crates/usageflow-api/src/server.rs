//! The server: listener, layers (body limit, timeout, access log) and graceful shutdown.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tower_http::timeout::TimeoutLayer;

use crate::AppState;

/// Settings of the HTTP API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// `host:port` to listen on.
    pub listen: String,
    /// The API key file (TOML, digests only); see `usageflow api key-add`.
    pub keys_file: String,
    /// Largest request body, in bytes (spreadsheet uploads included).
    pub max_body_bytes: usize,
    /// A request taking longer is answered 408 and dropped.
    pub request_timeout_secs: u64,
    /// Accept metering events over HTTP and write them to the Kafka topic.
    pub events_enabled: bool,
    /// Memory one `POST /sql` query may reserve, in MiB.
    pub sql_max_query_memory_mb: usize,
    /// Memory all running queries together may reserve, in MiB.
    pub sql_max_total_memory_mb: usize,
    /// The largest text, binary or list value a query's function may build, in bytes.
    pub sql_max_value_bytes: usize,
    /// Queries one account may run at once; more answer 429.
    pub sql_max_concurrent_per_account: usize,
    /// The longest RQL query string (the part after `?`), in bytes.
    pub rql_max_length: usize,
    /// How deeply RQL expressions may nest.
    pub rql_max_depth: usize,
}

impl ApiConfig {
    /// The bounds of one SQL query.
    pub fn query_limits(&self) -> usageflow_query::limits::QueryLimits {
        usageflow_query::limits::QueryLimits {
            max_query_memory_bytes: self.sql_max_query_memory_mb.max(1) << 20,
            max_value_bytes: self.sql_max_value_bytes.max(1),
            max_batch_value_bytes: (self.sql_max_query_memory_mb.max(1) << 20).max(self.sql_max_value_bytes),
        }
    }
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".to_owned(),
            keys_file: "data/api-keys.toml".to_owned(),
            max_body_bytes: 64 * 1024 * 1024,
            request_timeout_secs: 120,
            events_enabled: true,
            sql_max_query_memory_mb: 256,
            sql_max_total_memory_mb: 1024,
            sql_max_value_bytes: 16 << 20,
            sql_max_concurrent_per_account: 2,
            rql_max_length: 8192,
            rql_max_depth: 32,
        }
    }
}

/// One structured access-log line per request.
async fn access_log(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let route = request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned());
    let path = request.uri().path().to_owned();
    let key = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("ApiKey "))
        .and_then(|k| k.split_once('.'))
        .map(|(id, _)| id.to_owned());
    let response = next.run(request).await;
    tracing::info!(
        target: "usageflow::access",
        %method,
        path,
        route = route.as_deref().unwrap_or("-"),
        status = response.status().as_u16(),
        key = key.as_deref().unwrap_or("-"),
        micros = started.elapsed().as_micros() as u64,
        "request"
    );
    response
}

/// A body over the limit (413) or a request over its time (408), answered in the API's error
/// shape with the setting that bounds it, whichever layer refused it.
async fn limit_errors(max_body_bytes: usize, timeout_secs: u64, request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    match response.status() {
        StatusCode::PAYLOAD_TOO_LARGE => crate::error::ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "REQ_001",
            format!(
                "the request body is larger than the {max_body_bytes} bytes this server accepts (api.max_body_bytes); \
                 split the records into several files"
            ),
        )
        .into_response(),
        StatusCode::REQUEST_TIMEOUT => crate::error::ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "REQ_002",
            format!(
                "the request took longer than {timeout_secs} s (api.request_timeout_secs); an upload being processed \
                 finishes on its own: read the file's status"
            ),
        )
        .into_response(),
        _ => response,
    }
}

/// The router with the server's layers.
pub fn app(state: AppState, config: &ApiConfig) -> axum::Router {
    let (max_body_bytes, timeout_secs) = (config.max_body_bytes, config.request_timeout_secs.max(1));
    crate::router(state)
        .layer(middleware::from_fn(access_log))
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, Duration::from_secs(timeout_secs)))
        .layer(middleware::from_fn(move |request: Request, next: Next| {
            limit_errors(max_body_bytes, timeout_secs, request, next)
        }))
}

/// Serves until `shutdown` completes, then finishes the requests in flight.
pub async fn serve(
    state: AppState,
    config: &ApiConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(&config.listen).await?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, keys = state.keys.len(), "HTTP API listening on /public/v1");
    axum::serve(listener, app(state, config)).with_graceful_shutdown(shutdown).await?;
    tracing::info!("HTTP API stopped");
    Ok(addr)
}
