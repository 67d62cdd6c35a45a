//! The HTTP API of Usageflow under `/public/v1`, compatible with the usage part of the
//! CloudBlue Connect REST API: the same paths, bodies, wire values, RQL listing conventions
//! and error shape, so that existing Connect clients work against it unchanged.
//!
//! Every call is authenticated with an API key bound to an account (vendor, provider or
//! reseller); every object a call can reach is checked against that account, and objects of
//! other tenants answer 404 as if they did not exist.

pub mod auth;
mod billing;
mod catalog;
mod chunks;
pub mod error;
mod events;
mod files;
pub mod listing;
mod live;
mod openapi;
mod portal;
mod recon;
mod records;
mod records_cache;
pub mod rql;
mod rules;
mod server;
mod sql;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post, put};
use usageflow_files::FileService;
use usageflow_model::{Catalogue, UsageFile};

pub use auth::{KeyRing, Principal, Role, StoredKey};
pub use events::EventSink;
pub use server::{ApiConfig, app, serve};

/// Shared state of the handlers.
#[derive(Debug, Clone)]
pub struct AppState {
    /// Usage files, records, chunks and rules.
    pub service: FileService,
    /// The catalogue.
    pub catalogue: Arc<Catalogue>,
    /// Accepted API keys.
    pub keys: Arc<KeyRing>,
    /// Where ingested events go (absent: the endpoint answers 503).
    pub events: Option<Arc<EventSink>>,
    /// Every usage file's state, from memory, following the workflow's change feed.
    pub files: Arc<usageflow_workflow::FileIndex>,
    /// The API form of the index's last snapshot, made again only when the snapshot changes.
    files_json: Arc<std::sync::Mutex<Option<FilesJson>>>,
    /// Record rows of the files' current uploads, read once per upload.
    records: Arc<records_cache::RecordsCache>,
    /// The chunks read so far, by id, with their version.
    chunks: Arc<std::sync::Mutex<ChunkCache>>,
    /// The latest version of every chunk and when it was listed; kept for a second, and
    /// dropped by any call that may change chunks.
    chunk_versions: Arc<std::sync::Mutex<Option<ChunkVersions>>>,
    /// What one request may use (`api.sql_*`, `api.rql_*`).
    pub(crate) limits: Arc<Limits>,
}

/// The bounds of requests, from [`ApiConfig`], and the queries running per account.
#[derive(Debug)]
pub(crate) struct Limits {
    pub(crate) query: usageflow_query::limits::QueryLimits,
    pub(crate) memory: usageflow_query::limits::SharedMemory,
    pub(crate) queries_per_account: usize,
    pub(crate) rql_max_length: usize,
    pub(crate) rql_max_depth: usize,
    running: std::sync::Mutex<std::collections::HashMap<String, usize>>,
}

impl Limits {
    fn of(config: &ApiConfig) -> Self {
        Self {
            query: config.query_limits(),
            memory: usageflow_query::limits::SharedMemory::new(config.sql_max_total_memory_mb.max(1) << 20),
            queries_per_account: config.sql_max_concurrent_per_account.max(1),
            rql_max_length: config.rql_max_length,
            rql_max_depth: config.rql_max_depth,
            running: std::sync::Mutex::default(),
        }
    }

    /// A slot for one more query of `account`, or `None` when it runs as many as it may.
    pub(crate) fn start_query(self: &Arc<Self>, account: &str) -> Option<QuerySlot> {
        let mut running = self.running.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = running.entry(account.to_owned()).or_insert(0);
        if *n >= self.queries_per_account {
            return None;
        }
        *n += 1;
        Some(QuerySlot { limits: self.clone(), account: account.to_owned() })
    }
}

/// A running query of an account; the slot is given back when dropped.
#[derive(Debug)]
pub(crate) struct QuerySlot {
    limits: Arc<Limits>,
    account: String,
}

impl Drop for QuerySlot {
    fn drop(&mut self) {
        let mut running = self.limits.running.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = running.get_mut(&self.account) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                running.remove(&self.account);
            }
        }
    }
}

/// When the chunks were listed, and their latest versions.
type ChunkVersions = (std::time::Instant, Arc<std::collections::BTreeMap<String, u64>>);

/// Chunks by id, with the version read.
type ChunkCache = std::collections::HashMap<String, (u64, Arc<usageflow_model::Chunk>)>;

/// A snapshot of the index and the API form of each of its files, in the same order.
type FilesJson = (Arc<Vec<UsageFile>>, Arc<Vec<serde_json::Value>>);

impl AppState {
    /// The state of a server over `service`, accepting `keys`, without an event sink.
    pub fn new(service: FileService, keys: KeyRing) -> Self {
        let files = Arc::new(usageflow_workflow::FileIndex::new(service.workflow().clone()));
        Self {
            catalogue: service.shared_catalogue(),
            service,
            keys: Arc::new(keys),
            events: None,
            files,
            files_json: Arc::default(),
            records: Arc::default(),
            chunks: Arc::default(),
            chunk_versions: Arc::default(),
            limits: Arc::new(Limits::of(&ApiConfig::default())),
        }
    }

    /// Parses a listing's RQL query string within the server's bounds.
    pub(crate) fn rql(&self, raw: Option<&str>) -> Result<rql::Query, rql::RqlError> {
        let limits = rql::RqlLimits { max_length: self.limits.rql_max_length, max_depth: self.limits.rql_max_depth };
        rql::parse_limited(raw.unwrap_or(""), limits)
    }

    /// Holds requests to the bounds of `config` (`api.sql_*`, `api.rql_*`).
    pub fn with_limits(mut self, config: &ApiConfig) -> Self {
        self.limits = Arc::new(Limits::of(config));
        self
    }

    /// Every usage file, with its API form (`usage.UsageFileDetail`).
    pub(crate) async fn file_listing(&self) -> Result<FilesJson, usageflow_workflow::Error> {
        let files = self.files.files().await?;
        let mut cache = self.files_json.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((snapshot, json)) = cache.as_ref()
            && Arc::ptr_eq(snapshot, &files)
        {
            return Ok((files, json.clone()));
        }
        let json = Arc::new(files.iter().map(files::file_json).collect::<Vec<_>>());
        *cache = Some((files.clone(), json.clone()));
        Ok((files, json))
    }

    /// Sends `POST /usage/events` to `sink`.
    pub fn with_events(mut self, sink: EventSink) -> Self {
        self.events = Some(Arc::new(sink));
        self
    }
}

impl AsRef<KeyRing> for AppState {
    fn as_ref(&self) -> &KeyRing {
        &self.keys
    }
}

/// Every endpoint the API serves: method, path under `/public/v1`, summary, success status,
/// whether it is a paged listing.
pub fn openapi_endpoints() -> &'static [(&'static str, &'static str, &'static str, u16, bool)] {
    openapi::ENDPOINTS
}

/// The OpenAPI document of the API.
pub fn openapi_document() -> serde_json::Value {
    openapi::spec()
}

/// Whether `who` may see `file`.
pub(crate) fn sees_file(who: &Principal, file: &UsageFile) -> bool {
    match who.role {
        Role::Vendor => file.vendor.id == who.account,
        Role::Provider => file.provider.id == who.account,
        Role::Reseller => false,
    }
}

/// The API's routes under `/public/v1` (without the server's layers).
pub fn router(state: AppState) -> Router {
    let v1 = Router::new()
        .route("/usage/files", get(files::list).post(files::create))
        .route("/usage/files/{id}", get(files::detail).put(files::update))
        .route("/usage/files/{id}/upload", post(files::upload))
        .route("/usage/files/{id}/submit", post(files::submit))
        .route("/usage/files/{id}/accept", post(files::accept))
        .route("/usage/files/{id}/reject", post(files::reject))
        .route("/usage/files/{id}/approve-all", put(files::approve_all).post(files::approve_all))
        .route("/usage/files/{id}/close", post(files::close))
        .route("/usage/files/{id}/delete", post(files::delete))
        .route("/usage/files/{id}/reprocess", post(files::reprocess))
        .route("/usage/files/{id}/reconciliation", post(records::file_reconciliation))
        .route("/usage/files/{id}/categories", get(files::categories))
        .route("/usage/files/{id}/history", get(files::history))
        .route("/usage/files/{id}/errors", get(files::errors))
        .route("/usage/files/{id}/summary", get(records::file_summary))
        .route("/usage/files/{id}/usagefile", get(files::uploaded_document))
        .route("/usage/files/{id}/processedfile", get(files::processed_document))
        .route("/usage/products/{id}/template", get(files::template))
        .route("/usage/products/{id}/template/download", get(files::template_download))
        .route("/usage/records", get(records::list))
        .route("/usage/records/close-records", post(records::close_many))
        .route("/usage/records/{id}", get(records::detail).put(records::set_status))
        .route("/usage/records/{id}/close", post(records::close_one))
        .route("/usage/aggregates", get(records::aggregates))
        .route("/assets/{asset_pk}/usage/aggregates", get(records::asset_aggregates))
        .route("/usage/chunks", get(chunks::list))
        .route("/usage/chunks/{id}", get(chunks::detail).put(chunks::update))
        .route("/usage/chunks/{id}/download", get(chunks::download))
        .route("/usage/chunks/{id}/close", post(chunks::close))
        .route("/usage/chunks/{id}/regenerate", post(chunks::regenerate))
        .route("/usage/reconciliations", get(records::reconciliations).post(records::reconciliation_upload))
        .route("/usage/reconciliations/{id}", get(records::reconciliation))
        .route("/usage/reconciliations/{id}/uploadedfile", get(records::reconciliation_uploaded))
        .route("/usage/reconciliations/{id}/uploadedFile", get(records::reconciliation_uploaded))
        .route("/usage/reconciliations/{id}/processedfile", get(records::reconciliation_processed))
        .route("/usage/reconciliations/{id}/processedFile", get(records::reconciliation_processed))
        .route("/products/{product_pk}/usage/rules", get(rules::list).post(rules::create))
        .route("/products/{product_pk}/usage/rules/{id}", get(rules::detail).put(rules::update).delete(rules::remove))
        .route("/usage/events", post(events::ingest))
        .route("/usage/live", get(live::live))
        .route("/billing/export", get(billing::export))
        .route("/me", get(catalog::me))
        .route("/products", get(catalog::products))
        .route("/sql", post(sql::query))
        .route("/openapi.json", get(openapi::document))
        .fallback(|| async {
            error::ApiError::new(axum::http::StatusCode::NOT_FOUND, "NOT_FOUND", "no such endpoint")
        });
    let writes = state.clone();
    let v1 =
        v1.layer(axum::middleware::from_fn(move |request: axum::extract::Request, next: axum::middleware::Next| {
            let state = writes.clone();
            async move {
                let write = request.method() != axum::http::Method::GET && request.method() != axum::http::Method::HEAD;
                let response = next.run(request).await;
                if write {
                    // Accepting files, closing records or chunks, reconciling: the chunk listing
                    // may have changed.
                    *state.chunk_versions.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = None;
                }
                response
            }
        }));
    let routes = Router::new()
        .nest("/public/v1", v1)
        .route("/healthz", get(|| async { "ok" }))
        .route("/", get(portal::to_portal))
        .route("/portal", get(portal::to_portal))
        .route("/portal/", get(portal::index))
        .route("/portal/{file}", get(portal::file))
        .with_state(state);
    // Connect answers its paths with or without a trailing slash, and the older SDKs call
    // `usage/files/`, `usage/files/{id}/upload/` and `usage/products/{id}/template/`: the API's
    // paths are routed without it (the portal's `/portal/` keeps its own).
    Router::new().fallback_service(tower::service_fn(move |mut request: axum::extract::Request| {
        if let Some(path) = trimmed_api_path(request.uri()) {
            let query = request.uri().query().map(|q| format!("?{q}")).unwrap_or_default();
            if let Ok(uri) = format!("{path}{query}").parse() {
                *request.uri_mut() = uri;
            }
        }
        tower::ServiceExt::oneshot(routes.clone(), request)
    }))
}

/// An API path (`/public/v1/…/`) without its trailing slashes, if it has any.
fn trimmed_api_path(uri: &axum::http::Uri) -> Option<&str> {
    let path = uri.path();
    let trimmed = path.trim_end_matches('/');
    (path.starts_with("/public/v1/") && trimmed.len() < path.len() && trimmed.len() > "/public/v1".len())
        .then_some(trimmed)
}

#[cfg(test)]
mod limit_tests {
    use super::*;

    #[test]
    fn api_paths_are_routed_without_their_trailing_slash() {
        let trimmed = |p: &str| trimmed_api_path(&p.parse().unwrap()).map(str::to_owned);
        assert_eq!(trimmed("/public/v1/usage/files/").as_deref(), Some("/public/v1/usage/files"));
        assert_eq!(
            trimmed("/public/v1/usage/files/UF-1/upload/?x=1").as_deref(),
            Some("/public/v1/usage/files/UF-1/upload")
        );
        assert_eq!(trimmed("/public/v1/usage/files"), None);
        assert_eq!(trimmed("/public/v1/"), None);
        assert_eq!(trimmed("/portal/"), None);
    }

    #[test]
    fn an_account_runs_at_most_its_queries_at_once() {
        let config = ApiConfig { sql_max_concurrent_per_account: 2, ..ApiConfig::default() };
        let limits = Arc::new(Limits::of(&config));
        let first = limits.start_query("VA-1").expect("a first query");
        let second = limits.start_query("VA-1").expect("a second query");
        assert!(limits.start_query("VA-1").is_none(), "a third query at once");
        // Other accounts are not held back.
        let other = limits.start_query("PA-1").expect("another account's query");
        drop(first);
        let third = limits.start_query("VA-1").expect("a slot is given back when a query ends");
        drop((second, third, other));
        assert!(limits.running.lock().unwrap().is_empty());
    }
}
