//! The record rows of usage files, kept in memory by the server so that record listings and
//! aggregates do not open one Parquet object per file per request. A file's rows are read once
//! per upload (the cache is keyed by the records object, which every new upload replaces) and
//! are immutable; record changes are not part of them (they are overlaid per request). Past
//! `max_rows` rows, the server stops caching and reads the objects per request instead.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use arrow::array::RecordBatch;
use datafusion::datasource::{MemTable, TableProvider};
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStore;
use usageflow_model::{FileStatus, UsageFile};

use crate::error::{ApiError, ApiResult};

/// A file's records object path and its rows.
type Entry = (String, Arc<Vec<RecordBatch>>);

/// Cached record rows per file.
#[derive(Debug)]
pub(crate) struct RecordsCache {
    /// File id → its entry.
    entries: Mutex<HashMap<String, Entry>>,
    max_rows: usize,
}

impl Default for RecordsCache {
    fn default() -> Self {
        Self { entries: Mutex::default(), max_rows: 5_000_000 }
    }
}

impl RecordsCache {
    fn cached_rows(&self) -> usize {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.values().map(|(_, b)| b.iter().map(RecordBatch::num_rows).sum::<usize>()).sum()
    }

    /// A table of the record rows of `files`, or `None` when they are more than the cache
    /// holds (the caller then reads the objects).
    pub(crate) async fn table(
        &self,
        store: &Arc<dyn ObjectStore>,
        files: &[UsageFile],
    ) -> ApiResult<Option<Arc<dyn TableProvider>>> {
        let wanted: Vec<(String, String)> = files
            .iter()
            .filter(|f| f.status != FileStatus::Deleted)
            .filter_map(|f| {
                let path = f.processed_file.as_ref().and_then(usageflow_files::records_object_path)?;
                Some((f.id.clone(), path.to_string()))
            })
            .collect();
        let missing: Vec<(String, String)> = {
            let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
            wanted.iter().filter(|(id, path)| entries.get(id).is_none_or(|(p, _)| p != path)).cloned().collect()
        };
        if !missing.is_empty() {
            if self.cached_rows() >= self.max_rows {
                return Ok(None);
            }
            let loaded: Vec<(String, String, Vec<RecordBatch>)> =
                futures::stream::iter(missing.into_iter().map(|(id, path)| async move {
                    let batches = usageflow_lake::tables::read_parquet(store, &path)
                        .await
                        .map_err(|e| ApiError::internal(format!("cannot read the records of {id}: {e}")))?;
                    Ok::<_, ApiError>((id, path, batches))
                }))
                .buffer_unordered(16)
                .try_collect()
                .await?;
            let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
            for (id, path, batches) in loaded {
                entries.insert(id, (path, Arc::new(batches)));
            }
        }
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let batches: Vec<RecordBatch> = wanted
            .iter()
            .filter_map(|(id, _)| entries.get(id))
            .flat_map(|(_, b)| b.iter().cloned())
            .filter(|b| b.num_rows() > 0)
            .collect();
        drop(entries);
        // One batch instead of one per file: the engine's cost is per batch, and files are small.
        let schema = usageflow_files::records::file_records_schema();
        let one = arrow::compute::concat_batches(&schema, &batches).map_err(|e| ApiError::internal(e.to_string()))?;
        let table = MemTable::try_new(schema, vec![vec![one]]).map_err(|e| ApiError::internal(e.to_string()))?;
        Ok(Some(Arc::new(table)))
    }
}
