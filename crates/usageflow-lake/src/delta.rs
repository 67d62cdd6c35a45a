//! The lake's tables as Delta Lake tables, written with `deltalake-core` on the project's own
//! object store.
//!
//! `records` (partitioned by `product` and `month`) and `events` (by `date`) live at
//! `lake/records/` and `lake/events/`, each with its `_delta_log/`. Data files are committed as
//! `add` actions with their partition values and statistics (`numRecords`, and `minValues`,
//! `maxValues`, `nullCount` for the columns that have them), so that any Delta reader prunes on
//! them.
//!
//! Exactly once from Kafka goes through the log: every commit carries, for each topic and
//! partition it advances, a Delta application transaction (`txn`) whose app id names the
//! consumer group, topic and partition and whose version is the next offset to read. A writer
//! states where it started for each of them; a commit whose partition moved since (another
//! writer's `txn` for the same app id) is refused before anything is written, and one that
//! races a concurrent writer for the same app id loses in Delta's conflict check.
//!
//! Commits are create-if-absent writes of `_delta_log/{version:020}.json` (`If-None-Match` on
//! S3), so two writers racing for one version cannot both win, and no lock service is needed.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, OnceLock};

use arrow::array::{Array, ArrayRef, RecordBatch};
use arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use deltalake_core::kernel::engine::arrow_conversion::{TryIntoArrow as _, TryIntoKernel as _};
use deltalake_core::kernel::transaction::{CommitBuilder, TransactionError};
use deltalake_core::kernel::{Action, Add, Remove, StructType, Transaction};
use deltalake_core::logstore::{LogStore, LogStoreFactory, ObjectStoreRef, StorageConfig};
use deltalake_core::protocol::{DeltaOperation, SaveMode};
use deltalake_core::{DeltaTable, DeltaTableBuilder, DeltaTableError};
use futures::TryStreamExt;
use object_store::ObjectStore;
use object_store::path::Path;
use url::Url;

use crate::manifest::Table;

/// The URL scheme under which the tables are opened on the project's store: only a label for
/// `deltalake-core`'s log-store registry; the bytes go to the store given.
const SCHEME: &str = "usageflow";

/// Highest Delta protocol versions this writer understands.
const MAX_READER_VERSION: i32 = 3;
const MAX_WRITER_VERSION: i32 = 7;

/// Why a table could not be opened, read or committed to.
#[derive(Debug, thiserror::Error)]
pub enum DeltaError {
    /// The location holds objects but no Delta log.
    #[error(
        "lake/{table} holds {objects} object(s) (for example {example}) but no Delta log (_delta_log/); it is not a \
         Delta table and nothing was written"
    )]
    NotADeltaTable { table: &'static str, objects: usize, example: String },
    /// The table's schema or partitioning is not the one this version writes.
    #[error("lake/{table} is a Delta table with another schema ({found}); expected {expected}; nothing was written")]
    OtherSchema { table: &'static str, found: String, expected: String },
    /// The table needs a newer Delta reader or writer than this one.
    #[error(
        "lake/{table} needs Delta reader version {reader} and writer version {writer}; this build reads up to \
         {MAX_READER_VERSION} and writes up to {MAX_WRITER_VERSION}; nothing was written"
    )]
    NewerProtocol { table: &'static str, reader: i32, writer: i32 },
    /// A partition this commit advances moved since the writer read it.
    #[error(
        "partition {topic}/{partition} is at offset {found:?} in lake/{table}, not {expected:?}: another writer \
         committed it; this writer no longer owns it"
    )]
    Conflict { table: &'static str, topic: String, partition: i32, expected: Option<i64>, found: Option<i64> },
    /// A concurrent commit advanced the same partition while this one was being written.
    #[error("lake/{table}: a concurrent commit advanced a partition this commit advances; nothing was written")]
    ConcurrentTransaction { table: &'static str },
    /// `deltalake-core` failed (the store, a corrupt log or checkpoint, ...).
    #[error("lake/{table}: {source}")]
    Delta {
        table: &'static str,
        #[source]
        source: DeltaTableError,
    },
}

/// Where a table's position for a topic and partition is kept: the `txn` app id.
pub fn app_id(group: &str, topic: &str, partition: i32) -> String {
    format!("usageflow:{group}:{topic}:{partition}")
}

fn table_name(table: Table) -> &'static str {
    match table {
        Table::Records => "records",
        Table::Events => "events",
    }
}

/// The partition columns of a table, in order.
pub fn partition_columns(table: Table) -> &'static [&'static str] {
    match table {
        Table::Records => &["product", "month"],
        Table::Events => &["date"],
    }
}

/// The schema a table declares: its data columns, then its partition columns (strings).
pub fn table_schema(table: Table) -> SchemaRef {
    let data = match table {
        Table::Records => crate::tables::records_schema(),
        Table::Events => crate::tables::events_schema(),
    };
    let mut fields: Vec<arrow::datatypes::FieldRef> = data.fields().iter().cloned().collect();
    fields.extend(
        partition_columns(table).iter().map(|c| Arc::new(arrow::datatypes::Field::new(*c, DataType::Utf8, false))),
    );
    Arc::new(arrow::datatypes::Schema::new(fields))
}

/// The log store `deltalake-core` uses for the `usageflow://` scheme: its default one (commits
/// by create-if-absent writes) on the store it is given.
#[derive(Debug, Default)]
struct ProjectStoreFactory;

impl LogStoreFactory for ProjectStoreFactory {
    fn with_options(
        &self,
        prefixed_store: ObjectStoreRef,
        root_store: ObjectStoreRef,
        location: &Url,
        options: &StorageConfig,
    ) -> deltalake_core::DeltaResult<Arc<dyn LogStore>> {
        Ok(deltalake_core::logstore::default_logstore(prefixed_store, root_store, location, options))
    }
}

fn register_scheme() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let url = Url::parse(&format!("{SCHEME}://")).expect("a valid scheme");
        deltalake_core::logstore::logstore_factories().insert(url, Arc::new(ProjectStoreFactory));
    });
}

/// A data file as committed: its path under the table, partition values, size, statistics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableFile {
    /// Path relative to the table's root (`product=…/month=…/part-….parquet`).
    pub path: String,
    /// Partition column → value.
    pub partition_values: BTreeMap<String, String>,
    /// Bytes.
    pub size: u64,
    /// Rows (`numRecords`).
    pub rows: u64,
    /// The statistics as Delta writes them (JSON).
    pub stats: Option<String>,
}

/// A table at one version: its files and the positions its transactions record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableState {
    /// The version read (`None`: the table has no commit yet).
    pub version: Option<u64>,
    /// Live files by path.
    pub files: BTreeMap<String, TableFile>,
}

/// What one commit to a table does.
#[derive(Debug, Clone, Default)]
pub struct TableCommit {
    /// `ingest` or `compact`: the operation named in the commit.
    pub operation: String,
    /// The consumer group whose positions the commit advances.
    pub group: String,
    /// topic → partition → (position the writer started from, new position).
    pub advance: BTreeMap<String, BTreeMap<i32, (Option<i64>, i64)>>,
    /// Files added.
    pub add: Vec<TableFile>,
    /// Paths removed (replaced by compaction).
    pub remove: Vec<String>,
}

/// The lake's Delta tables on one object store.
#[derive(Debug, Clone)]
pub struct DeltaLake {
    store: Arc<dyn ObjectStore>,
    /// The store's directory when it is the local filesystem: there the log is read through
    /// `file://` URLs, whose listings `deltalake-core` sorts (a directory lists in any order).
    local_root: Option<std::path::PathBuf>,
}

impl DeltaLake {
    /// The tables under `lake/` of the store `config` names.
    pub fn open_store(config: &crate::StoreConfig) -> crate::Result<Self> {
        let store = crate::open_store(config)?;
        let local_root = match config.kind()? {
            crate::StoreKind::Local(dir) => Some(std::fs::canonicalize(&dir).unwrap_or(dir)),
            crate::StoreKind::S3 { .. } => None,
        };
        Ok(Self::new(store, local_root))
    }

    /// The tables under `lake/` of `store`; `local_root` is its directory when it is the local
    /// filesystem.
    pub fn new(store: Arc<dyn ObjectStore>, local_root: Option<std::path::PathBuf>) -> Self {
        register_scheme();
        Self { store, local_root }
    }

    /// The store the tables' data files are written to.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    fn builder(&self, table: Table) -> Result<DeltaTableBuilder, DeltaError> {
        let name = table_name(table);
        let delta = |source| DeltaError::Delta { table: name, source };
        if let Some(root) = &self.local_root {
            let dir = root.join("lake").join(name);
            std::fs::create_dir_all(&dir)
                .map_err(|e| delta(DeltaTableError::Generic(format!("{}: {e}", dir.display()))))?;
            let url = Url::from_directory_path(&dir)
                .map_err(|()| delta(DeltaTableError::Generic(format!("{} is not an absolute path", dir.display()))))?;
            return DeltaTableBuilder::from_url(url).map_err(delta);
        }
        let url = Url::parse(&format!("{SCHEME}:///lake/{name}")).expect("a valid table URL");
        let root = Url::parse(&format!("{SCHEME}:///")).expect("a valid root URL");
        Ok(DeltaTableBuilder::from_url(url).map_err(delta)?.with_storage_backend(self.store.clone(), root))
    }

    /// The table at its latest version, created when the location is empty. A location that
    /// holds something other than this Delta table is refused with what was found.
    pub async fn open(&self, table: Table) -> Result<DeltaTable, DeltaError> {
        let name = table_name(table);
        let delta = |source| DeltaError::Delta { table: name, source };
        let mut handle = self.builder(table)?.build().map_err(delta)?;
        if handle.verify_deltatable_existence().await.map_err(delta)? {
            handle.load().await.map_err(delta)?;
            self.check(table, &handle)?;
            return Ok(handle);
        }
        let prefix = Path::from(format!("lake/{name}"));
        let found: Vec<object_store::ObjectMeta> =
            self.store.list(Some(&prefix)).try_collect().await.map_err(|e| delta(DeltaTableError::from(e)))?;
        if let Some(first) = found.first() {
            return Err(DeltaError::NotADeltaTable {
                table: name,
                objects: found.len(),
                example: first.location.to_string(),
            });
        }
        let schema: StructType = table_schema(table).as_ref().try_into_kernel().map_err(|e| delta(e.into()))?;
        let created = deltalake_core::operations::create::CreateBuilder::new()
            .with_log_store(handle.log_store())
            .with_table_name(name)
            .with_columns(schema.fields().cloned())
            .with_partition_columns(partition_columns(table).iter().copied())
            .with_save_mode(SaveMode::Ignore)
            .await;
        match created {
            Ok(t) => {
                self.check(table, &t)?;
                Ok(t)
            }
            // Another writer created it first: read theirs.
            Err(_) => {
                handle.load().await.map_err(delta)?;
                self.check(table, &handle)?;
                Ok(handle)
            }
        }
    }

    /// Refuses a table written by a newer protocol or with another schema.
    fn check(&self, table: Table, handle: &DeltaTable) -> Result<(), DeltaError> {
        let name = table_name(table);
        let snapshot = handle.snapshot().map_err(|source| DeltaError::Delta { table: name, source })?;
        let protocol = snapshot.protocol();
        if protocol.min_reader_version() > MAX_READER_VERSION || protocol.min_writer_version() > MAX_WRITER_VERSION {
            return Err(DeltaError::NewerProtocol {
                table: name,
                reader: protocol.min_reader_version(),
                writer: protocol.min_writer_version(),
            });
        }
        let expected = describe(
            table_schema(table).fields().iter().map(|f| (f.name().clone(), f.data_type().to_string())),
            partition_columns(table).iter().map(|c| (*c).to_owned()),
        );
        let arrow: arrow::datatypes::Schema = snapshot.schema().as_ref().try_into_arrow().map_err(|e| {
            DeltaError::Delta { table: name, source: DeltaTableError::Generic(format!("its schema: {e}")) }
        })?;
        let found = describe(
            arrow.fields().iter().map(|f| (f.name().clone(), f.data_type().to_string())),
            snapshot.metadata().partition_columns().iter().cloned(),
        );
        if found != expected {
            return Err(DeltaError::OtherSchema { table: name, found, expected });
        }
        Ok(())
    }

    /// The table's latest state: version and live files.
    pub async fn state(&self, table: Table) -> Result<TableState, DeltaError> {
        let handle = self.open(table).await?;
        state_of(table, &handle).await
    }

    /// The next offset of `topic`/`partition` recorded by `group`'s transactions, if any.
    pub async fn position(
        &self,
        table: Table,
        group: &str,
        topic: &str,
        partition: i32,
    ) -> Result<Option<i64>, DeltaError> {
        let handle = self.open(table).await?;
        position_of(table, &handle, &app_id(group, topic, partition)).await
    }

    /// Commits `request`: its files and, for each partition it advances, a `txn` with the new
    /// position. Refused with [`DeltaError::Conflict`] when a partition is not where the writer
    /// started, and with [`DeltaError::ConcurrentTransaction`] when a concurrent commit moved it
    /// meanwhile. Returns the new version.
    pub async fn commit(&self, table: Table, request: &TableCommit) -> Result<u64, DeltaError> {
        let name = table_name(table);
        let delta = |source| DeltaError::Delta { table: name, source };
        let handle = self.open(table).await?;
        let mut actions = Vec::new();
        for (topic, partitions) in &request.advance {
            for (partition, (expected, next)) in partitions {
                let id = app_id(&request.group, topic, *partition);
                let found = position_of(table, &handle, &id).await?;
                if found != *expected {
                    return Err(DeltaError::Conflict {
                        table: name,
                        topic: topic.clone(),
                        partition: *partition,
                        expected: *expected,
                        found,
                    });
                }
                actions.push(Action::Txn(Transaction::new_with_last_update(
                    id,
                    *next,
                    Some(chrono::Utc::now().timestamp_millis()),
                )));
            }
        }
        let now = chrono::Utc::now().timestamp_millis();
        for file in &request.add {
            actions.push(Action::Add(Add {
                path: file.path.clone(),
                partition_values: file.partition_values.iter().map(|(k, v)| (k.clone(), Some(v.clone()))).collect(),
                size: i64::try_from(file.size).unwrap_or(i64::MAX),
                modification_time: now,
                data_change: request.operation != "compact",
                stats: file.stats.clone(),
                ..Add::default()
            }));
        }
        let state = state_of(table, &handle).await?;
        for path in &request.remove {
            let Some(file) = state.files.get(path) else {
                return Err(delta(DeltaTableError::Generic(format!(
                    "file {path} was already removed from the table by another commit"
                ))));
            };
            actions.push(Action::Remove(Remove {
                path: path.clone(),
                data_change: false,
                deletion_timestamp: Some(now),
                extended_file_metadata: Some(true),
                partition_values: Some(
                    file.partition_values.iter().map(|(k, v)| (k.clone(), Some(v.clone()))).collect(),
                ),
                size: Some(i64::try_from(file.size).unwrap_or(i64::MAX)),
                ..Remove::default()
            }));
        }
        let operation = DeltaOperation::Write {
            mode: SaveMode::Append,
            partition_by: Some(partition_columns(table).iter().map(|c| (*c).to_owned()).collect()),
            predicate: None,
        };
        let snapshot = handle.snapshot().map_err(delta)?;
        let app =
            HashMap::from([("usageflow.operation".to_owned(), serde_json::Value::from(request.operation.clone()))]);
        let done = CommitBuilder::default()
            .with_actions(actions)
            .with_app_metadata(app)
            .with_max_retries(15)
            .build(Some(snapshot), handle.log_store(), operation)
            .await;
        match done {
            Ok(commit) => Ok(commit.version()),
            Err(DeltaTableError::Transaction { source: TransactionError::CommitConflict(_) }) => {
                Err(DeltaError::ConcurrentTransaction { table: name })
            }
            Err(source) => Err(delta(source)),
        }
    }
}

fn describe(columns: impl Iterator<Item = (String, String)>, partitions: impl Iterator<Item = String>) -> String {
    let columns: Vec<String> = columns.map(|(n, t)| format!("{n} {t}")).collect();
    let partitions: Vec<String> = partitions.collect();
    format!("columns [{}], partitioned by [{}]", columns.join(", "), partitions.join(", "))
}

async fn position_of(table: Table, handle: &DeltaTable, app_id: &str) -> Result<Option<i64>, DeltaError> {
    let name = table_name(table);
    let snapshot = handle.snapshot().map_err(|source| DeltaError::Delta { table: name, source })?;
    snapshot
        .transaction_version(handle.log_store().as_ref(), app_id)
        .await
        .map_err(|source| DeltaError::Delta { table: name, source })
}

async fn state_of(table: Table, handle: &DeltaTable) -> Result<TableState, DeltaError> {
    let name = table_name(table);
    let delta = |source| DeltaError::Delta { table: name, source };
    let version = handle.version();
    let views: Vec<_> = handle.get_active_add_actions_by_partitions(&[]).try_collect().await.map_err(delta)?;
    let files = views
        .iter()
        .map(|f| {
            let file = TableFile {
                path: f.path().into_owned(),
                partition_values: f.partition_values_map().into_iter().filter_map(|(k, v)| Some((k, v?))).collect(),
                size: u64::try_from(f.size()).unwrap_or_default(),
                rows: f.num_records().unwrap_or_default() as u64,
                stats: f.stats(),
            };
            (file.path.clone(), file)
        })
        .collect();
    Ok(TableState { version, files })
}

/// Delta statistics of a data file's batch: `numRecords`, and `minValues`, `maxValues` and
/// `nullCount` of the columns whose values Delta readers compare (strings, integers, decimals,
/// timestamps). Decimals are written as exact JSON numbers, timestamps in UTC with milliseconds
/// (the minimum rounded down, the maximum up, so that pruning never drops a row).
pub fn statistics(batch: &RecordBatch) -> String {
    let object = |entries: Vec<(String, String)>| {
        let body: Vec<String> =
            entries.into_iter().map(|(k, v)| format!("{}:{v}", serde_json::Value::from(k))).collect();
        format!("{{{}}}", body.join(","))
    };
    let (mut min, mut max, mut nulls) = (Vec::new(), Vec::new(), Vec::new());
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        nulls.push((field.name().clone(), column.null_count().to_string()));
        if let Some((lo, hi)) = min_max(column) {
            min.push((field.name().clone(), lo));
            max.push((field.name().clone(), hi));
        }
    }
    format!(
        "{{\"numRecords\":{},\"minValues\":{},\"maxValues\":{},\"nullCount\":{}}}",
        batch.num_rows(),
        object(min),
        object(max),
        object(nulls)
    )
}

/// A decimal's exact text from its unscaled value (`1234500`, scale 4 → `123.45`).
fn decimal_text(value: i128, scale: i8) -> String {
    let negative = value < 0;
    let digits = value.unsigned_abs().to_string();
    let scale = usize::try_from(scale).unwrap_or(0);
    let (int, frac) = if digits.len() > scale { digits.split_at(digits.len() - scale) } else { ("0", digits.as_str()) };
    let frac = format!("{frac:0>scale$}");
    let frac = frac.trim_end_matches('0');
    let sign = if negative { "-" } else { "" };
    if frac.is_empty() { format!("{sign}{int}") } else { format!("{sign}{int}.{frac}") }
}

/// The minimum and maximum of a column as JSON text, for the types Delta compares.
fn min_max(column: &ArrayRef) -> Option<(String, String)> {
    use arrow::array::AsArray;
    use arrow::compute::kernels::aggregate::{max, max_string, min, min_string};
    use arrow::datatypes::{Decimal128Type, Int8Type, Int32Type, Int64Type, TimestampMicrosecondType};
    if column.null_count() == column.len() {
        return None;
    }
    let time = |micros: i64| {
        let t = chrono::DateTime::from_timestamp_micros(micros)?;
        Some(serde_json::Value::from(t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()).to_string())
    };
    match column.data_type() {
        DataType::Utf8 => {
            let a = column.as_string::<i32>();
            let text = |s: &str| serde_json::Value::from(s).to_string();
            Some((text(min_string(a)?), text(max_string(a)?)))
        }
        DataType::Int8 => {
            let a = column.as_primitive::<Int8Type>();
            Some((min(a)?.to_string(), max(a)?.to_string()))
        }
        DataType::Int32 => {
            let a = column.as_primitive::<Int32Type>();
            Some((min(a)?.to_string(), max(a)?.to_string()))
        }
        DataType::Int64 => {
            let a = column.as_primitive::<Int64Type>();
            Some((min(a)?.to_string(), max(a)?.to_string()))
        }
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            let a = column.as_primitive::<TimestampMicrosecondType>();
            let (lo, hi) = (min(a)?, max(a)?);
            Some((time(lo - lo.rem_euclid(1000))?, time(hi + (1000 - hi.rem_euclid(1000)) % 1000)?))
        }
        DataType::Decimal128(_, scale) => {
            let a = column.as_primitive::<Decimal128Type>();
            Some((decimal_text(min(a)?, *scale), decimal_text(max(a)?, *scale)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_are_exact_text() {
        assert_eq!(decimal_text(1_234_500, 4), "123.45");
        assert_eq!(decimal_text(-5, 8), "-0.00000005");
        assert_eq!(decimal_text(100_000_000, 8), "1");
        assert_eq!(decimal_text(0, 8), "0");
        assert_eq!(
            decimal_text(12_345_678_901_234_567_890_123_456_789_012_345_678, 8),
            "123456789012345678901234567890.12345678"
        );
    }
}
