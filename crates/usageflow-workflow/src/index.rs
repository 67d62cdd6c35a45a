//! An in-memory index of every usage file's current state, kept fresh by following a change
//! feed, so that listings do not read one object per file per request.
//!
//! Every workflow step also writes an empty marker object
//! `workflow/changes/{YYYYMMDDHHMM}/{micros}-{file id}-{version}` (see
//! [`crate::WorkflowStore`]). The index loads every file once, then on each use lists only
//! the markers of the minutes since its last look (three or four small listings) and re-reads the
//! files named there. Markers are read back over a window of [`SKEW`] before the last look,
//! so that a writer whose clock runs behind, or whose marker lands late, is not missed; markers
//! already applied are remembered by name. Changes made through the index's own
//! [`WorkflowStore`] (or a clone of it) show at once, without a listing; changes by other
//! processes (the command line, the compiler, another server) show once the index looks at the
//! feed again, which it does on use at most every [`FileIndex::with_follow_every`] (one second
//! by default). A marker lost to a crash
//! between the event and the marker only delays the index until the next full reload, done
//! every [`FileIndex::with_full_reload`] (ten minutes by default) and after a long idle gap.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use usageflow_model::UsageFile;

use crate::{Error, Result, WorkflowStore};

/// How far before the last look markers are read again.
pub const SKEW: chrono::Duration = chrono::Duration::seconds(120);
/// A gap after which the index reloads everything instead of listing each minute.
const MAX_GAP: chrono::Duration = chrono::Duration::minutes(30);

fn changes_prefix() -> Path {
    Path::from("workflow/changes")
}

fn minute_prefix(at: DateTime<Utc>) -> Path {
    changes_prefix().join(at.format("%Y%m%d%H%M").to_string())
}

/// Where the marker of `file_id` reaching `version` at `at` is written.
pub(crate) fn marker_path(at: DateTime<Utc>, file_id: &str, version: u64) -> Path {
    minute_prefix(at).join(format!("{:020}-{file_id}-{version:010}", at.timestamp_micros().max(0)))
}

/// `(time, file id, version)` of a marker's name.
fn parse_marker(name: &str) -> Option<(DateTime<Utc>, &str, u64)> {
    let (micros, rest) = name.split_once('-')?;
    let (file, version) = rest.rsplit_once('-')?;
    Some((Utc.timestamp_micros(micros.parse().ok()?).single()?, file, version.parse().ok()?))
}

#[derive(Debug, Default)]
struct IndexState {
    files: BTreeMap<String, UsageFile>,
    snapshot: Arc<Vec<UsageFile>>,
    /// The clock's time at the last look; `None` before the first load.
    cursor: Option<DateTime<Utc>>,
    /// Markers applied within the window, with their times.
    seen: HashMap<String, DateTime<Utc>>,
    loaded: Option<Instant>,
    followed: Option<Instant>,
}

impl IndexState {
    /// Keeps each of `files` that is newer than the state held; whether any was.
    fn merge(&mut self, files: impl IntoIterator<Item = UsageFile>) -> bool {
        let mut any = false;
        for f in files {
            if self.files.get(&f.id).is_none_or(|known| known.version < f.version) {
                self.files.insert(f.id.clone(), f);
                any = true;
            }
        }
        any
    }

    /// Whether the state held of `file` is older than `version`.
    fn behind(&self, file: &str, version: u64) -> bool {
        self.files.get(file).is_none_or(|known| known.version < version)
    }
}

/// Every usage file's current state, from memory, refreshed from the change feed on each use.
#[derive(Debug)]
pub struct FileIndex {
    workflow: WorkflowStore,
    state: tokio::sync::Mutex<IndexState>,
    full_reload: Duration,
    follow_every: Duration,
}

impl FileIndex {
    /// An index over `workflow`; nothing is read until first use.
    pub fn new(workflow: WorkflowStore) -> Self {
        workflow.watch_local_changes();
        Self {
            workflow,
            state: tokio::sync::Mutex::new(IndexState::default()),
            full_reload: Duration::from_secs(600),
            follow_every: Duration::from_secs(1),
        }
    }

    /// Look at the change feed at most this often (zero: on every use).
    pub fn with_follow_every(mut self, every: Duration) -> Self {
        self.follow_every = every;
        self
    }

    /// Reload everything at least this often (a safety net for lost markers).
    pub fn with_full_reload(mut self, every: Duration) -> Self {
        self.full_reload = every;
        self
    }

    /// Every usage file, sorted by id, as of now.
    pub async fn files(&self) -> Result<Arc<Vec<UsageFile>>> {
        let mut state = self.state.lock().await;
        let now = self.workflow.now();
        let stale = state.loaded.is_none_or(|t| t.elapsed() >= self.full_reload);
        let gap = state.cursor.is_none_or(|c| now - c > MAX_GAP);
        let local = self.workflow.take_local_changes();
        let changed = if stale || gap {
            self.reload(&mut state, now).await?;
            true
        } else {
            let mut changed = state.merge(local);
            if state.followed.is_none_or(|t| t.elapsed() >= self.follow_every) {
                changed |= self.follow(&mut state, now).await?;
            }
            changed
        };
        if changed {
            state.snapshot = Arc::new(state.files.values().cloned().collect());
        }
        Ok(state.snapshot.clone())
    }

    async fn reload(&self, state: &mut IndexState, now: DateTime<Utc>) -> Result<()> {
        // Markers from before the load are covered by it; those from the window are looked at
        // again by the next follow, which skips the files whose state the load already holds.
        let files = self.workflow.list().await?;
        state.files = files.into_iter().map(|f| (f.id.clone(), f)).collect();
        state.cursor = Some(now);
        state.seen.clear();
        state.loaded = Some(Instant::now());
        state.followed = Some(Instant::now());
        tracing::debug!(files = state.files.len(), "usage file index loaded");
        Ok(())
    }

    /// Reads the change feed since the last look and re-reads the files it names that the
    /// index holds an older state of; whether any file changed.
    async fn follow(&self, state: &mut IndexState, now: DateTime<Utc>) -> Result<bool> {
        let since = state.cursor.unwrap_or(now) - SKEW;
        let store = self.workflow.object_store();
        let mut minute = since;
        let mut fresh = Vec::new();
        loop {
            let prefix = minute_prefix(minute);
            let listed: Vec<_> = store
                .list(Some(&prefix))
                .try_collect()
                .await
                .map_err(|source| Error::Store { path: prefix.to_string(), source })?;
            for meta in listed {
                let Some(name) = meta.location.filename() else { continue };
                let Some((at, file, version)) = parse_marker(name) else { continue };
                if at >= since && !state.seen.contains_key(name) {
                    // A change the index holds already (its own, say) needs no reading.
                    let read = state.behind(file, version).then(|| file.to_owned());
                    fresh.push((name.to_owned(), at, read));
                }
            }
            if prefix == minute_prefix(now) || minute > now {
                break;
            }
            minute += chrono::Duration::minutes(1);
        }
        let mut changed: Vec<String> = fresh.iter().filter_map(|(_, _, f)| f.clone()).collect();
        changed.sort();
        changed.dedup();
        let workflow = &self.workflow;
        let reread: Vec<UsageFile> =
            futures::stream::iter(changed.into_iter().map(|id| async move { workflow.get(&id).await }))
                .buffered(16)
                .try_collect()
                .await?;
        let any = state.merge(reread);
        for (name, at, _) in fresh {
            state.seen.insert(name, at);
        }
        let window_start = now - SKEW;
        state.seen.retain(|_, at| *at >= window_start - SKEW);
        state.cursor = Some(now);
        state.followed = Some(Instant::now());
        Ok(any)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_name_time_and_file() {
        let at = Utc.with_ymd_and_hms(2026, 11, 25, 13, 4, 5).unwrap();
        let path = marker_path(at, "UF-2026-11-1234-5678", 7);
        assert_eq!(path.parts().count(), 4);
        assert!(path.as_ref().starts_with("workflow/changes/202611251304/"));
        let (t, file, version) = parse_marker(path.filename().unwrap()).unwrap();
        assert_eq!((t, file, version), (at, "UF-2026-11-1234-5678", 7));
        assert_eq!(parse_marker("garbage"), None);
    }
}
