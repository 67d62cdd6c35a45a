//! The lake's commit protocol.
//!
//! Data files are written first, under names no other writer uses; then one commit object
//! `_manifests/{version:020}.json` is created with a create-if-absent write. A file is part
//! of the lake only once a committed manifest adds it, so readers never see a half-written
//! flush, and files of a failed flush are orphans that `vacuum` may delete.
//!
//! Each commit also records, per Kafka topic and partition, the next offset to read: the
//! position up to which the lake holds everything Kafka delivered. A committer states which
//! position it started from for every partition it advances; if another writer has moved a
//! partition since, the commit is refused ([`CommitError::Conflict`]) and nothing is written.
//! Exactly-once from Kafka rests on this compare-and-set plus the create-if-absent write.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::paths;
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

/// Which table a data file belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Table {
    /// Per-period usage record aggregates (deltas; a record is the sum of its rows).
    Records,
    /// Raw accepted metering events.
    Events,
}

/// A committed data file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataFile {
    /// Object path relative to the lake root.
    pub path: String,
    /// Table.
    pub table: Table,
    /// Rows.
    pub rows: u64,
    /// Size in bytes.
    pub bytes: u64,
    /// Kafka partition whose events the file holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kafka_partition: Option<i32>,
    /// First Kafka offset covered (inclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset_start: Option<i64>,
    /// Offset after the last one covered (exclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset_end: Option<i64>,
    /// Product of the records in the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product: Option<String>,
    /// Hive partition value: `YYYY-MM` for records, `YYYY-MM-DD` for events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition_value: Option<String>,
}

/// One commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Commit {
    /// Version, from 1.
    pub version: u64,
    /// When.
    pub committed_at: DateTime<Utc>,
    /// Writer instance.
    pub writer: String,
    /// `ingest` or `compact`.
    pub operation: String,
    /// New positions: topic → partition → next offset to read.
    #[serde(default)]
    pub offsets: BTreeMap<String, BTreeMap<i32, i64>>,
    /// Files added.
    #[serde(default)]
    pub add: Vec<DataFile>,
    /// Paths of files removed (replaced by compaction).
    #[serde(default)]
    pub remove: Vec<String>,
}

/// The lake's state at a version: the live files and the Kafka positions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LakeState {
    /// Latest version (0 = empty lake).
    pub version: u64,
    /// topic → partition → next offset to read.
    pub offsets: BTreeMap<String, BTreeMap<i32, i64>>,
    /// Live files by path.
    pub files: BTreeMap<String, DataFile>,
}

impl LakeState {
    fn apply(&mut self, commit: &Commit) {
        self.version = commit.version;
        for (topic, partitions) in &commit.offsets {
            let entry = self.offsets.entry(topic.clone()).or_default();
            for (p, o) in partitions {
                entry.insert(*p, *o);
            }
        }
        for path in &commit.remove {
            self.files.remove(path);
        }
        for file in &commit.add {
            self.files.insert(file.path.clone(), file.clone());
        }
    }

    /// The committed position of a partition.
    pub fn offset(&self, topic: &str, partition: i32) -> Option<i64> {
        self.offsets.get(topic).and_then(|t| t.get(&partition)).copied()
    }

    /// Live files of a table.
    pub fn files_of(&self, table: Table) -> impl Iterator<Item = &DataFile> {
        self.files.values().filter(move |f| f.table == table)
    }
}

/// Why a commit failed.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// Another writer moved a partition this commit advances.
    #[error(
        "partition {topic}/{partition} is at offset {found:?} in the lake, not {expected:?}: another writer committed it; \
         this writer no longer owns it"
    )]
    Conflict { topic: String, partition: i32, expected: Option<i64>, found: Option<i64> },
    /// A file the commit replaces is no longer live (another compaction replaced it).
    #[error("file {path} was already removed from the lake by another commit")]
    Removed { path: String },
    /// The object store failed.
    #[error("lake commit I/O at {path}: {source}")]
    Store {
        path: String,
        #[source]
        source: object_store::Error,
    },
    /// A manifest could not be read.
    #[error("corrupt lake manifest {path}: {reason}")]
    Corrupt { path: String, reason: String },
}

/// What a writer commits.
#[derive(Debug, Clone, Default)]
pub struct CommitRequest {
    /// `ingest` or `compact`.
    pub operation: String,
    /// topic → partition → (position the writer started from, new position).
    pub advance: BTreeMap<String, BTreeMap<i32, (Option<i64>, i64)>>,
    /// Files added.
    pub add: Vec<DataFile>,
    /// Paths removed.
    pub remove: Vec<String>,
}

/// Reads and commits the lake's manifests.
#[derive(Debug)]
pub struct Manifests {
    store: Arc<dyn ObjectStore>,
    writer: String,
    cached: Mutex<LakeState>,
}

fn store_error(path: &Path) -> impl FnOnce(object_store::Error) -> CommitError + '_ {
    move |source| CommitError::Store { path: path.to_string(), source }
}

impl Manifests {
    /// Manifests of the lake in `store`; `writer` names this instance in commits.
    pub fn new(store: Arc<dyn ObjectStore>, writer: impl Into<String>) -> Self {
        Self { store, writer: writer.into(), cached: Mutex::new(LakeState::default()) }
    }

    async fn read(&self, version: u64) -> Result<Option<Commit>, CommitError> {
        let path = paths::manifest(version);
        let bytes = match self.store.get(&path).await {
            Ok(got) => got.bytes().await.map_err(store_error(&path))?,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(source) => return Err(CommitError::Store { path: path.to_string(), source }),
        };
        let commit: Commit = serde_json::from_slice(&bytes)
            .map_err(|e| CommitError::Corrupt { path: path.to_string(), reason: e.to_string() })?;
        if commit.version != version {
            return Err(CommitError::Corrupt {
                path: path.to_string(),
                reason: format!("holds version {} instead of {version}", commit.version),
            });
        }
        Ok(Some(commit))
    }

    /// The latest committed state. Reads only the manifests after the last one seen.
    pub async fn state(&self) -> Result<LakeState, CommitError> {
        let mut state = self.cached.lock().expect("manifest cache").clone();
        if state.version == 0 {
            // First read: start from the highest version present rather than probing from 1.
            let prefix = paths::manifests_prefix();
            let listed: Vec<_> = self.store.list(Some(&prefix)).try_collect().await.map_err(store_error(&prefix))?;
            let mut versions: Vec<u64> =
                listed.iter().filter_map(|m| m.location.filename()?.strip_suffix(".json")?.parse().ok()).collect();
            versions.sort_unstable();
            for v in versions {
                if let Some(commit) = self.read(v).await? {
                    state.apply(&commit);
                }
            }
        }
        while let Some(commit) = self.read(state.version + 1).await? {
            state.apply(&commit);
        }
        *self.cached.lock().expect("manifest cache") = state.clone();
        Ok(state)
    }

    /// Commits `request` if every partition it advances is still where the writer started.
    /// Returns the new version.
    pub async fn commit(&self, request: &CommitRequest) -> Result<u64, CommitError> {
        loop {
            let state = self.state().await?;
            if let Some(gone) = request.remove.iter().find(|p| !state.files.contains_key(*p)) {
                return Err(CommitError::Removed { path: gone.clone() });
            }
            for (topic, partitions) in &request.advance {
                for (partition, (expected, _)) in partitions {
                    let found = state.offset(topic, *partition);
                    if found != *expected {
                        return Err(CommitError::Conflict {
                            topic: topic.clone(),
                            partition: *partition,
                            expected: *expected,
                            found,
                        });
                    }
                }
            }
            let commit = Commit {
                version: state.version + 1,
                committed_at: Utc::now(),
                writer: self.writer.clone(),
                operation: request.operation.clone(),
                offsets: request
                    .advance
                    .iter()
                    .map(|(t, ps)| (t.clone(), ps.iter().map(|(p, (_, to))| (*p, *to)).collect()))
                    .collect(),
                add: request.add.clone(),
                remove: request.remove.clone(),
            };
            let path = paths::manifest(commit.version);
            let body = serde_json::to_vec_pretty(&commit).expect("commits serialize");
            let opts = PutOptions { mode: PutMode::Create, ..PutOptions::default() };
            match self.store.put_opts(&path, PutPayload::from(body), opts).await {
                Ok(_) => {
                    let mut cached = self.cached.lock().expect("manifest cache");
                    if cached.version + 1 == commit.version {
                        cached.apply(&commit);
                    }
                    return Ok(commit.version);
                }
                Err(object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }) => {
                    // Another writer took this version; read it and check again.
                }
                Err(source) => return Err(CommitError::Store { path: path.to_string(), source }),
            }
        }
    }
}
