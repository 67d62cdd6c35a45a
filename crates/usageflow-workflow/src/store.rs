use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};
use usageflow_lake::paths;
use usageflow_model::ids::usage_file_id_candidates;
use usageflow_model::{Actor, FileChange, FileEvent, NewFile, UsageFile, WorkflowError};

use crate::{Clock, Error, Result};

/// How many times a step is re-checked after losing a race before giving up.
const MAX_ATTEMPTS: u32 = 32;
/// How many id candidates are tried for a new file.
const MAX_ID_CANDIDATES: u32 = 64;

/// An event as stored: the event and, on the creating event, the key that makes creation
/// idempotent.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredEvent {
    #[serde(flatten)]
    event: FileEvent,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    idempotency_key: Option<String>,
}

/// What to create. The id is chosen by the store from `idempotency_key`.
#[derive(Debug, Clone)]
pub struct CreateRequest {
    /// The new file; its `id` is replaced by the chosen one.
    pub file: NewFile,
    /// Two creates with the same key create one file (the second returns the first).
    /// Deterministic callers use the natural key (vendor, product, contract, period...);
    /// interactive callers use a request id.
    pub idempotency_key: String,
}

/// Usage-file workflow state on an object store.
#[derive(Debug, Clone)]
pub struct WorkflowStore {
    store: Arc<dyn ObjectStore>,
    clock: Arc<dyn Clock>,
    /// States written through this store (and its clones), kept for a [`crate::FileIndex`]
    /// once one watches them, so that this process's own changes show without a listing.
    local: Arc<std::sync::Mutex<Option<Vec<UsageFile>>>>,
}

fn store_err(path: &Path) -> impl FnOnce(object_store::Error) -> Error + '_ {
    move |source| Error::Store { path: path.to_string(), source }
}

impl WorkflowStore {
    /// A workflow store on `store`, timestamping events with `clock`.
    pub fn new(store: Arc<dyn ObjectStore>, clock: Arc<dyn Clock>) -> Self {
        Self { store, clock, local: Arc::default() }
    }

    async fn read_event(&self, file_id: &str, seq: u64) -> Result<Option<StoredEvent>> {
        let path = paths::file_event(file_id, seq);
        let bytes = match self.store.get(&path).await {
            Ok(got) => got.bytes().await.map_err(store_err(&path))?,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(source) => return Err(Error::Store { path: path.to_string(), source }),
        };
        let stored: StoredEvent = serde_json::from_slice(&bytes)
            .map_err(|e| Error::Corrupt { path: path.to_string(), reason: e.to_string() })?;
        if stored.event.seq != seq {
            return Err(Error::Corrupt {
                path: path.to_string(),
                reason: format!("holds event {} instead of {seq}", stored.event.seq),
            });
        }
        Ok(Some(stored))
    }

    /// Writes event `seq` if no one has; `Ok(false)` when another writer got there first.
    async fn put_event(&self, file_id: &str, stored: &StoredEvent) -> Result<bool> {
        let path = paths::file_event(file_id, stored.event.seq);
        let body = serde_json::to_vec_pretty(stored).expect("events serialize");
        let opts = PutOptions { mode: PutMode::Create, ..PutOptions::default() };
        match self.store.put_opts(&path, PutPayload::from(body), opts).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }) => Ok(false),
            Err(source) => Err(Error::Store { path: path.to_string(), source }),
        }
    }

    /// Reads events after `state` (all of them when `None`) and folds them in.
    async fn catch_up(
        &self,
        file_id: &str,
        mut state: Option<UsageFile>,
        mut log: Option<&mut Vec<FileEvent>>,
    ) -> Result<Option<UsageFile>> {
        let mut seq = state.as_ref().map_or(1, |f| f.version + 1);
        while let Some(stored) = self.read_event(file_id, seq).await? {
            state = Some(UsageFile::apply(state, &stored.event).map_err(|e| Error::Corrupt {
                path: paths::file_event(file_id, seq).to_string(),
                reason: format!("the stored event does not apply: {e}"),
            })?);
            if let Some(log) = log.as_deref_mut() {
                log.push(stored.event);
            }
            seq += 1;
        }
        Ok(state)
    }

    /// The current state of a file.
    pub async fn get(&self, file_id: &str) -> Result<UsageFile> {
        let cached = self.read_state(file_id).await;
        let state = self.catch_up(file_id, cached, None).await?;
        state.ok_or_else(|| WorkflowError::NotFound { file: file_id.to_owned() }.into())
    }

    /// The current state and the full event log (the audit trail) of a file.
    pub async fn history(&self, file_id: &str) -> Result<(UsageFile, Vec<FileEvent>)> {
        let mut log = Vec::new();
        let state = self.catch_up(file_id, None, Some(&mut log)).await?;
        let state = state.ok_or_else(|| Error::from(WorkflowError::NotFound { file: file_id.to_owned() }))?;
        Ok((state, log))
    }

    async fn read_state(&self, file_id: &str) -> Option<UsageFile> {
        let path = paths::file_state(file_id);
        let bytes = self.store.get(&path).await.ok()?.bytes().await.ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Caches the folded state; a stale or missing cache only costs reads.
    async fn write_state(&self, file: &UsageFile) {
        let path = paths::file_state(&file.id);
        let body = serde_json::to_vec(file).expect("files serialize");
        if let Err(err) = self.store.put(&path, PutPayload::from(body)).await {
            tracing::warn!(file = %file.id, %err, "could not cache the usage file state");
        }
    }

    /// Records that `file` changed at `at` in the change feed that [`crate::FileIndex`] follows.
    /// A lost marker only delays the index until its next full reload.
    async fn mark_change(&self, file: &UsageFile, at: DateTime<Utc>) {
        if let Some(local) = self.local.lock().unwrap_or_else(std::sync::PoisonError::into_inner).as_mut() {
            local.push(file.clone());
        }
        let path = crate::index::marker_path(at, &file.id, file.version);
        if let Err(err) = self.store.put(&path, PutPayload::default()).await {
            tracing::warn!(file = %file.id, %err, "could not record the usage file change");
        }
    }

    /// Starts keeping the states this store writes for [`WorkflowStore::take_local_changes`].
    pub(crate) fn watch_local_changes(&self) {
        let mut local = self.local.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        local.get_or_insert_with(Vec::new);
    }

    /// The states written since the last call (when watched).
    pub(crate) fn take_local_changes(&self) -> Vec<UsageFile> {
        let mut local = self.local.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        local.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// The time of the store's clock.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// The object store.
    pub fn object_store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// Creates a file, choosing its id from the idempotency key. Creating again with the
    /// same key returns the file created first while the vendor may still change it (see
    /// `FileStatus::is_open_for_vendor`); after that, the same key creates another file.
    pub async fn create(&self, request: CreateRequest, actor: &Actor) -> Result<UsageFile> {
        let CreateRequest { mut file, idempotency_key } = request;
        let year = chrono::Datelike::year(&file.period.from);
        let month = chrono::Datelike::month(&file.period.from);
        for candidate in usage_file_id_candidates(year, month, &idempotency_key).take(MAX_ID_CANDIDATES as usize) {
            file.id = candidate;
            let event = FileEvent {
                seq: 1,
                at: self.clock.now(),
                actor: actor.clone(),
                change: FileChange::Create(Box::new(file.clone())),
            };
            let state = UsageFile::apply(None, &event)?;
            let stored = StoredEvent { event, idempotency_key: Some(idempotency_key.clone()) };
            if self.put_event(&file.id, &stored).await? {
                self.write_state(&state).await;
                self.mark_change(&state, stored.event.at).await;
                tracing::info!(file = %state.id, "usage file created");
                return Ok(state);
            }
            let existing = self.read_event(&file.id, 1).await?;
            if existing.and_then(|e| e.idempotency_key).as_deref() == Some(idempotency_key.as_str()) {
                // The same request again: the file it made, while that file is still the
                // vendor's to change (a retry); once submitted or deleted, a new file.
                let earlier = self.get(&file.id).await?;
                if earlier.status.is_open_for_vendor() {
                    return Ok(earlier);
                }
            }
        }
        Err(Error::NoFreeId { key: idempotency_key, attempts: MAX_ID_CANDIDATES })
    }

    /// Applies one change by `actor` to a file, after checking it against the file's current
    /// state. Returns the new state.
    pub async fn act(&self, file_id: &str, change: FileChange, actor: &Actor) -> Result<UsageFile> {
        let mut state = self.read_state(file_id).await;
        for _ in 0..MAX_ATTEMPTS {
            state = self.catch_up(file_id, state, None).await?;
            let current = state.clone().ok_or_else(|| WorkflowError::NotFound { file: file_id.to_owned() })?;
            let event = FileEvent {
                seq: current.version + 1,
                at: self.clock.now(),
                actor: actor.clone(),
                change: change.clone(),
            };
            let next = UsageFile::apply(Some(current), &event)?;
            let at = event.at;
            if self.put_event(file_id, &StoredEvent { event, idempotency_key: None }).await? {
                self.write_state(&next).await;
                self.mark_change(&next, at).await;
                tracing::debug!(file = %file_id, status = %next.status, version = next.version, "usage file changed");
                return Ok(next);
            }
            // Another writer appended this event first: re-read and re-check.
        }
        Err(Error::Contention { file: file_id.to_owned(), attempts: MAX_ATTEMPTS })
    }

    /// Ids of all usage files, sorted.
    pub async fn list_ids(&self) -> Result<Vec<String>> {
        let prefix = paths::files_prefix();
        let listing = self.store.list_with_delimiter(Some(&prefix)).await.map_err(store_err(&prefix))?;
        let mut ids: Vec<String> =
            listing.common_prefixes.iter().filter_map(|p| p.filename().map(str::to_owned)).collect();
        ids.sort();
        Ok(ids)
    }

    /// The current state of every usage file.
    pub async fn list(&self) -> Result<Vec<UsageFile>> {
        let ids = self.list_ids().await?;
        futures::stream::iter(ids.into_iter().map(|id| async move { self.get(&id).await }))
            .buffered(16)
            .try_collect()
            .await
    }
}
