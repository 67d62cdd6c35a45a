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
use deltalake_core::kernel::transaction::{CommitBuilder, CommitProperties, TransactionError};
use deltalake_core::kernel::{Action, Add, Remove, StructType, Transaction};
use deltalake_core::logstore::{LogStore, LogStoreFactory, ObjectStoreRef, StorageConfig};
use deltalake_core::protocol::{DeltaOperation, SaveMode};
use deltalake_core::{DeltaTable, DeltaTableBuilder, DeltaTableError, TableProperty};
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt as _};
use url::Url;

use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

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
    /// A concurrent commit conflicts with this one: it advanced a partition this commit
    /// advances, or removed a file this one removes.
    #[error("lake/{table}: a concurrent commit conflicts with this one ({reason}); nothing was written")]
    ConcurrentTransaction { table: &'static str, reason: String },
    /// A vacuum retention shorter than readers may need.
    #[error(
        "lake/{table}: a vacuum retention of {asked_hours} h is shorter than the {floor_hours} h that queries, exports \
         and time-travel reads may need; nothing was deleted"
    )]
    RetentionTooShort { table: &'static str, asked_hours: i64, floor_hours: u64 },
    /// The checkpoint the log names is missing or unreadable.
    #[error(
        "lake/{table}: the log's last checkpoint (_delta_log/_last_checkpoint) names {path}, which {found}; the table \
         cannot be read until it is restored or _last_checkpoint is removed; nothing was written"
    )]
    Checkpoint { table: &'static str, path: String, found: String },
    /// A version or time the table has no state for.
    #[error("lake/{table} has no version {asked}; its newest is {newest}")]
    NoSuchVersion { table: &'static str, asked: String, newest: u64 },
    /// `deltalake-core` failed (the store, a corrupt log or checkpoint, ...).
    #[error("lake/{table}: {source}")]
    Delta {
        table: &'static str,
        #[source]
        source: DeltaTableError,
    },
}

/// One of the lake's two tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Table {
    /// Per-period usage record aggregates (deltas; a record is the sum of its rows).
    Records,
    /// Raw accepted metering events.
    Events,
}

impl Table {
    /// Both tables, in the order the ingester commits them (records first: see
    /// [`DeltaLake::commit`]).
    pub const ALL: [Table; 2] = [Table::Records, Table::Events];

    /// The table's name: `records` or `events` (its directory under `lake/`).
    pub fn name(self) -> &'static str {
        match self {
            Table::Records => "records",
            Table::Events => "events",
        }
    }

    fn slot(self) -> usize {
        match self {
            Table::Records => 0,
            Table::Events => 1,
        }
    }
}

impl std::fmt::Display for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Where a table's position for a topic and partition is kept: the `txn` app id.
pub fn app_id(group: &str, topic: &str, partition: i32) -> String {
    format!("usageflow:{group}:{topic}:{partition}")
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
    /// The table it belongs to.
    pub table: Table,
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

impl TableFile {
    /// The object's path in the store (`lake/{table}/{path}`).
    pub fn location(&self) -> String {
        // Paths are URIs in the log: `%XX` escapes decoded.
        let decoded = percent_encoding::percent_decode_str(&self.path).decode_utf8_lossy();
        format!("lake/{}/{decoded}", self.table.name())
    }

    /// The value of a partition column.
    pub fn partition(&self, column: &str) -> Option<&str> {
        self.partition_values.get(column).map(String::as_str)
    }

    /// The Kafka partition whose events an ingested file holds (from its name,
    /// `part-{partition:05}-…`); `None` for a compacted file.
    pub fn kafka_partition(&self) -> Option<i32> {
        let name = self.path.rsplit('/').next()?;
        name.strip_prefix("part-")?.split('-').next()?.parse().ok()
    }

    /// The minimum and maximum statistics of a column, as the JSON values Delta wrote.
    pub fn min_max(&self, column: &str) -> Option<(serde_json::Value, serde_json::Value)> {
        let stats: serde_json::Value = serde_json::from_str(self.stats.as_deref()?).ok()?;
        let min = stats.get("minValues")?.get(column)?.clone();
        let max = stats.get("maxValues")?.get(column)?.clone();
        Some((min, max))
    }
}

/// `batch` encoded as the data file `path` of `table` (relative to the table's root, in the
/// directory of `partition`: column and value, in the table's partition order): its bytes, and
/// the content of its `add` action with its partition values and statistics.
pub fn encode_file(
    table: Table,
    path: String,
    partition: &[(&str, &str)],
    batch: &RecordBatch,
) -> Result<(TableFile, bytes::Bytes), parquet::errors::ParquetError> {
    let bytes = crate::tables::to_parquet(batch)?;
    let file = TableFile {
        table,
        path,
        partition_values: partition.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
        size: bytes.len() as u64,
        rows: batch.num_rows() as u64,
        stats: Some(statistics(batch)),
    };
    Ok((file, bytes))
}

/// A table at one version: its files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableState {
    /// The version read (`None`: the table has no commit yet).
    pub version: Option<u64>,
    /// When that version was committed (milliseconds since the epoch), when known.
    pub timestamp: Option<i64>,
    /// Live files by path.
    pub files: BTreeMap<String, TableFile>,
}

/// The versions of the lake's two tables that a reader saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LakeVersion {
    /// Version of `records`.
    pub records: Option<u64>,
    /// Version of `events`.
    pub events: Option<u64>,
}

impl std::fmt::Display for LakeVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let v = |v: Option<u64>| v.map_or_else(|| "none".to_owned(), |v| v.to_string());
        write!(f, "records@{}, events@{}", v(self.records), v(self.events))
    }
}

/// Both tables as one reader sees them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LakeState {
    /// `records`.
    pub records: TableState,
    /// `events`.
    pub events: TableState,
}

impl LakeState {
    /// One table's state.
    pub fn table(&self, table: Table) -> &TableState {
        match table {
            Table::Records => &self.records,
            Table::Events => &self.events,
        }
    }

    /// The live files of a table.
    pub fn files_of(&self, table: Table) -> impl Iterator<Item = &TableFile> {
        self.table(table).files.values()
    }

    /// The versions read.
    pub fn version(&self) -> LakeVersion {
        LakeVersion { records: self.records.version, events: self.events.version }
    }
}

/// Which version of the lake a reader asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AsOf {
    /// The latest.
    Latest,
    /// `records` at this version, `events` as of the time it was committed.
    Version(u64),
    /// Both tables as of this instant: the last version committed at or before it.
    Timestamp(chrono::DateTime<chrono::Utc>),
}

impl std::str::FromStr for AsOf {
    type Err = String;

    /// `latest`, a version number, or an RFC 3339 time (`2026-12-01T00:00:00Z`) or date.
    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.is_empty() || text.eq_ignore_ascii_case("latest") {
            return Ok(AsOf::Latest);
        }
        if let Ok(v) = text.parse::<u64>() {
            return Ok(AsOf::Version(v));
        }
        if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
            return Ok(AsOf::Timestamp(t.with_timezone(&chrono::Utc)));
        }
        if let Ok(d) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
            && let Some(t) = d.and_hms_opt(0, 0, 0)
        {
            return Ok(AsOf::Timestamp(t.and_utc()));
        }
        Err("expected a lake version (a number), an RFC 3339 time such as 2026-12-01T00:00:00Z, or a date".to_owned())
    }
}

/// One commit of a table's history.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryEntry {
    /// Version.
    pub version: u64,
    /// When (milliseconds since the epoch).
    pub timestamp: Option<i64>,
    /// Delta's operation (`CREATE TABLE`, `WRITE`, `OPTIMIZE`, …).
    pub operation: Option<String>,
    /// Usageflow's operation (`ingest`, `compact`), when Usageflow wrote it.
    pub usageflow_operation: Option<String>,
    /// Files added.
    pub files_added: Option<u64>,
    /// Files removed.
    pub files_removed: Option<u64>,
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
    /// Application transaction ids this commit claims, besides its positions: a concurrent
    /// commit that claims one of them conflicts with it. Compaction claims its product and
    /// month, since Delta's conflict check lets two commits remove the same file when both
    /// say `dataChange: false`.
    pub claims: Vec<String>,
}

/// The claim of a compaction of one partition of a table (see [`TableCommit::claims`]).
pub fn compaction_claim(table: Table, partition: &BTreeMap<String, String>) -> String {
    let values: Vec<String> = partition.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("usageflow:compact:{}:{}", table.name(), values.join("/"))
}

/// A writer's view of a table: the snapshot its commits build on, and the positions it knows
/// to hold at that snapshot (read at assignment, or written by its own commits).
#[derive(Debug)]
struct Writer {
    table: DeltaTable,
    known: HashMap<String, Option<i64>>,
}

/// Loaded tables, per table: the readers' latest snapshot (brought up to date by each read)
/// and the writer's.
#[derive(Debug, Default)]
struct Cache {
    read: [Mutex<Option<DeltaTable>>; 2],
    write: [Mutex<Option<Writer>>; 2],
}

/// The shortest retention `vacuum` accepts, in hours (a week, Delta's default
/// `deletedFileRetentionDuration`): longer than any query, export or time-travel read within
/// a billing cycle's working days needs the files of the version it reads.
pub const MIN_VACUUM_RETENTION_HOURS: u64 = 168;

/// Default number of commits between two checkpoints.
pub const DEFAULT_CHECKPOINT_INTERVAL: u64 = 100;

/// Default log retention, in hours (30 days, Delta's default `logRetentionDuration`).
pub const DEFAULT_LOG_RETENTION_HOURS: u64 = 720;

/// The Delta table properties the lake's settings own, as the lake writes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableSettings {
    /// `delta.checkpointInterval`: a Parquet checkpoint every this many commits.
    pub checkpoint_interval: u64,
    /// `delta.logRetentionDuration`, in hours: commits older than this are deleted after a
    /// checkpoint (never one a time-travel read of the retention may need, never below
    /// [`MIN_VACUUM_RETENTION_HOURS`]).
    pub log_retention_hours: u64,
}

impl Default for TableSettings {
    fn default() -> Self {
        Self { checkpoint_interval: DEFAULT_CHECKPOINT_INTERVAL, log_retention_hours: DEFAULT_LOG_RETENTION_HOURS }
    }
}

impl TableSettings {
    /// The table properties these settings give, by Delta name.
    pub fn properties(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (TableProperty::CheckpointInterval.as_ref().to_owned(), self.checkpoint_interval.to_string()),
            (
                TableProperty::LogRetentionDuration.as_ref().to_owned(),
                format!("interval {} hours", self.log_retention_hours),
            ),
        ])
    }
}

/// The lake's Delta tables on one object store.
#[derive(Debug, Clone)]
pub struct DeltaLake {
    store: Arc<dyn ObjectStore>,
    /// The store's directory when it is the local filesystem: there the log is read through
    /// `file://` URLs, whose listings `deltalake-core` sorts (a directory lists in any order).
    local_root: Option<std::path::PathBuf>,
    /// The properties of the tables this lake creates ([`DeltaLake::configure`] applies them
    /// to existing ones).
    settings: TableSettings,
    cache: Arc<Cache>,
}

impl DeltaLake {
    /// The tables under `lake/` of the store `config` names.
    pub fn open_store(config: &crate::StoreConfig) -> crate::Result<Self> {
        let store = crate::open_store(config)?;
        let local_root = match config.kind()? {
            crate::StoreKind::Local(dir) => {
                std::fs::create_dir_all(&dir).ok();
                Some(std::fs::canonicalize(&dir).unwrap_or(dir))
            }
            crate::StoreKind::S3 { .. } => None,
        };
        Ok(Self::new(store, local_root))
    }

    /// The tables under `lake/` of `store`; `local_root` is its directory when it is the local
    /// filesystem.
    pub fn new(store: Arc<dyn ObjectStore>, local_root: Option<std::path::PathBuf>) -> Self {
        register_scheme();
        Self { store, local_root, settings: TableSettings::default(), cache: Arc::default() }
    }

    /// Creates tables with a checkpoint every `commits` commits (at least 1), instead of
    /// [`DEFAULT_CHECKPOINT_INTERVAL`]; a table created before keeps its own until
    /// [`DeltaLake::configure`].
    pub fn with_checkpoint_interval(self, commits: u64) -> Self {
        let settings = TableSettings { checkpoint_interval: commits, ..self.settings };
        self.with_settings(settings)
    }

    /// Creates tables with `settings` (a log retention below [`MIN_VACUUM_RETENTION_HOURS`]
    /// is raised to it); a table created before keeps its own until [`DeltaLake::configure`].
    pub fn with_settings(mut self, settings: TableSettings) -> Self {
        self.settings = TableSettings {
            checkpoint_interval: settings.checkpoint_interval.max(1),
            log_retention_hours: settings.log_retention_hours.max(MIN_VACUUM_RETENTION_HOURS),
        };
        self
    }

    /// The properties this lake gives the tables it creates.
    pub fn settings(&self) -> TableSettings {
        self.settings
    }

    /// The store the tables' data files are written to.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    fn builder(&self, table: Table) -> Result<DeltaTableBuilder, DeltaError> {
        let name = table.name();
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

    /// The table at its latest version, loaded from the store (created when the location is
    /// empty). A location that holds something other than this Delta table is refused with
    /// what was found.
    pub async fn open(&self, table: Table) -> Result<DeltaTable, DeltaError> {
        let name = table.name();
        let delta = |source| DeltaError::Delta { table: name, source };
        let mut handle = self.builder(table)?.build().map_err(delta)?;
        if handle.verify_deltatable_existence().await.map_err(delta)? {
            if let Err(source) = handle.load().await {
                return Err(self.load_error(table, source).await);
            }
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
            .with_configuration(self.settings.properties().into_iter().map(|(k, v)| (k, Some(v))))
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

    /// Why a table's log could not be loaded: a missing or unreadable checkpoint named, when
    /// that is the cause, else `deltalake-core`'s error.
    async fn load_error(&self, table: Table, source: DeltaTableError) -> DeltaError {
        let name = table.name();
        let log = format!("lake/{name}/_delta_log");
        let last = match self.store.get(&Path::from(format!("{log}/_last_checkpoint"))).await {
            Ok(got) => got.bytes().await.ok(),
            Err(_) => None,
        };
        let version = last
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| v.get("version")?.as_u64());
        let Some(version) = version else { return DeltaError::Delta { table: name, source } };
        let path = format!("{log}/{version:020}.checkpoint.parquet");
        let found = match self.store.get(&Path::from(path.as_str())).await {
            Err(object_store::Error::NotFound { .. }) => "is missing".to_owned(),
            Err(e) => format!("cannot be read ({e})"),
            Ok(got) => match got.bytes().await {
                Err(e) => format!("cannot be read ({e})"),
                Ok(bytes) => match parquet::file::reader::SerializedFileReader::new(bytes) {
                    Err(e) => format!("is not a readable Parquet checkpoint ({e})"),
                    Ok(_) => return DeltaError::Delta { table: name, source },
                },
            },
        };
        DeltaError::Checkpoint { table: name, path, found }
    }

    /// Refuses a table written by a newer protocol or with another schema.
    fn check(&self, table: Table, handle: &DeltaTable) -> Result<(), DeltaError> {
        let name = table.name();
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

    /// Brings a loaded table up to its latest version (reading only the commits since), and
    /// checks it is still one this build reads and writes.
    async fn refresh(&self, table: Table, handle: &mut DeltaTable) -> Result<(), DeltaError> {
        handle.update_incremental(None).await.map_err(|source| DeltaError::Delta { table: table.name(), source })?;
        self.check(table, handle)
    }

    /// The table at its latest version: the loaded snapshot brought up to date (only the
    /// commits since the last read are read).
    pub async fn latest(&self, table: Table) -> Result<DeltaTable, DeltaError> {
        let mut slot = self.cache.read[table.slot()].lock().await;
        match slot.as_mut() {
            Some(handle) => {
                self.refresh(table, handle).await?;
                Ok(handle.clone())
            }
            None => {
                let handle = self.open(table).await?;
                *slot = Some(handle.clone());
                Ok(handle)
            }
        }
    }

    /// The table as of `as_of`.
    pub async fn table_as_of(&self, table: Table, as_of: AsOf) -> Result<DeltaTable, DeltaError> {
        let name = table.name();
        let delta = |source| DeltaError::Delta { table: name, source };
        match as_of {
            AsOf::Latest => self.latest(table).await,
            AsOf::Version(v) => {
                let latest = self.latest(table).await?;
                let newest = latest.version().unwrap_or_default();
                if v > newest {
                    return Err(DeltaError::NoSuchVersion { table: name, asked: v.to_string(), newest });
                }
                let mut handle = self.builder(table)?.build().map_err(delta)?;
                handle.load_version(v as _).await.map_err(|e| match e {
                    DeltaTableError::InvalidVersion(_) | DeltaTableError::NotATable(_) => {
                        DeltaError::NoSuchVersion { table: name, asked: v.to_string(), newest }
                    }
                    source => delta(source),
                })?;
                Ok(handle)
            }
            AsOf::Timestamp(t) => {
                let mut handle = self.builder(table)?.build().map_err(delta)?;
                let Err(source) = handle.load_with_datetime(t).await else { return Ok(handle) };
                // Before the table's first commit: the table as created, empty.
                let latest = self.latest(table).await?;
                let created = latest.snapshot().ok().and_then(|s| s.version_timestamp(0));
                if created.is_none_or(|c| c <= t.timestamp_millis()) {
                    return Err(delta(source));
                }
                let mut empty = self.builder(table)?.build().map_err(delta)?;
                empty.load_version(0).await.map_err(delta)?;
                Ok(empty)
            }
        }
    }

    /// The table's latest state: version and live files.
    pub async fn state(&self, table: Table) -> Result<TableState, DeltaError> {
        let handle = self.latest(table).await?;
        state_of(table, &handle).await
    }

    /// Both tables at their latest versions (`records` read first, so that a reader never sees
    /// raw events newer than the records it reads beside them).
    pub async fn snapshot(&self) -> Result<LakeState, DeltaError> {
        self.snapshot_as_of(AsOf::Latest).await
    }

    /// Both tables as of `as_of`. With a version, `records` is read at that version and
    /// `events` as of the instant that version was committed.
    pub async fn snapshot_as_of(&self, as_of: AsOf) -> Result<LakeState, DeltaError> {
        let records_handle = self.table_as_of(Table::Records, as_of).await?;
        let records = state_of(Table::Records, &records_handle).await?;
        let events_as_of = match as_of {
            AsOf::Version(_) => match records.timestamp.and_then(chrono::DateTime::from_timestamp_millis) {
                Some(t) => AsOf::Timestamp(t),
                None => AsOf::Latest,
            },
            other => other,
        };
        let events_handle = self.table_as_of(Table::Events, events_as_of).await?;
        let events = state_of(Table::Events, &events_handle).await?;
        Ok(LakeState { records, events })
    }

    /// The commits of a table, newest first (at most `limit`).
    pub async fn history(&self, table: Table, limit: Option<usize>) -> Result<Vec<HistoryEntry>, DeltaError> {
        let name = table.name();
        let delta = |source| DeltaError::Delta { table: name, source };
        let handle = self.latest(table).await?;
        let newest = handle.version().unwrap_or_default();
        let infos: Vec<_> = handle.history(limit).try_collect().await.map_err(delta)?;
        let count = |info: &deltalake_core::kernel::CommitInfo, key: &str| info.info.get(key).and_then(|v| v.as_u64());
        Ok(infos
            .iter()
            .enumerate()
            .map(|(i, info)| HistoryEntry {
                version: newest.saturating_sub(i as u64),
                timestamp: info.timestamp,
                operation: info.operation.clone(),
                usageflow_operation: info.info.get("usageflow.operation").and_then(|v| v.as_str()).map(str::to_owned),
                files_added: count(info, "usageflow.filesAdded"),
                files_removed: count(info, "usageflow.filesRemoved"),
            })
            .collect())
    }

    /// Writes `batch` as a data file `name` of `table` in the directory of its partition
    /// (`partition`: column and value, in the table's partition order), with its statistics.
    /// The file is not part of the table until a commit adds it ([`DeltaLake::append`]).
    pub async fn write_file(
        &self,
        table: Table,
        batch: &RecordBatch,
        partition: &[(&str, &str)],
        name: &str,
    ) -> Result<TableFile, DeltaError> {
        let delta = |e: String| DeltaError::Delta { table: table.name(), source: DeltaTableError::Generic(e) };
        // The table first: a location with files but no log is not taken for a Delta table.
        self.latest(table).await?;
        let dirs: Vec<String> = partition.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let path = if dirs.is_empty() { name.to_owned() } else { format!("{}/{name}", dirs.join("/")) };
        let (file, bytes) = encode_file(table, path, partition, batch).map_err(|e| delta(e.to_string()))?;
        self.store
            .put(&Path::from(file.location()), object_store::PutPayload::from(bytes))
            .await
            .map_err(|e| delta(e.to_string()))?;
        Ok(file)
    }

    /// Commits `files` (written with [`DeltaLake::write_file`]) to `table` without a Kafka
    /// position: an append by a writer other than the ingester (a loader, a test). Returns the
    /// new version.
    pub async fn append(&self, table: Table, files: Vec<TableFile>) -> Result<u64, DeltaError> {
        self.commit(table, &TableCommit { operation: "append".to_owned(), add: files, ..TableCommit::default() }).await
    }

    /// Deletes the data files of `table` that no version younger than `retention` needs: the
    /// files compaction replaced, and files that no commit added (left by a writer that
    /// stopped before committing) once older than `retention`. Refused below
    /// [`MIN_VACUUM_RETENTION_HOURS`]: a query, an export being read or a time-travel read of
    /// that age would lose its files. Returns the files deleted (or, with `dry_run`, that
    /// would be).
    pub async fn vacuum(
        &self,
        table: Table,
        retention: chrono::Duration,
        dry_run: bool,
    ) -> Result<Vec<String>, DeltaError> {
        let name = table.name();
        let floor = chrono::Duration::hours(MIN_VACUUM_RETENTION_HOURS as i64);
        if retention < floor {
            return Err(DeltaError::RetentionTooShort {
                table: name,
                asked_hours: retention.num_hours(),
                floor_hours: MIN_VACUUM_RETENTION_HOURS,
            });
        }
        let handle = self.latest(table).await?;
        let (_, metrics) = handle
            .vacuum()
            .with_retention_period(retention)
            .with_mode(deltalake_core::operations::vacuum::VacuumMode::Full)
            .with_dry_run(dry_run)
            .await
            .map_err(|source| DeltaError::Delta { table: name, source })?;
        Ok(metrics.files_deleted)
    }

    /// The table's own values of the properties [`TableSettings`] owns, as it stores them
    /// (`delta.checkpointInterval`, `delta.logRetentionDuration`; absent when unset, Delta's
    /// defaults then apply).
    pub async fn table_properties(&self, table: Table) -> Result<BTreeMap<String, String>, DeltaError> {
        owned_properties(table, &self.latest(table).await?)
    }

    /// Gives an existing table this lake's [`TableSettings`] (tables take them when created;
    /// a table created with other settings keeps its own until this runs). A metadata commit,
    /// made only when a property differs; returns its version, or `None` when the table
    /// already had them. Safe while ingesting: a commit in flight then conflicts and its
    /// ingester restarts from the lake's positions.
    pub async fn configure(&self, table: Table) -> Result<Option<u64>, DeltaError> {
        let name = table.name();
        let delta = |source| DeltaError::Delta { table: name, source };
        let wanted = self.settings.properties();
        let handle = self.latest(table).await?;
        if owned_properties(table, &handle)? == wanted {
            return Ok(None);
        }
        let properties = CommitProperties::default().with_cleanup_expired_logs(Some(false)).with_max_retries(15);
        let done = handle
            .set_tbl_properties()
            .with_properties(wanted.into_iter().collect())
            .with_commit_properties(properties)
            .await
            .map_err(delta)?;
        // The writer's snapshot predates the new metadata: its next commit starts afresh.
        *self.cache.write[table.slot()].lock().await = None;
        Ok(done.version())
    }

    /// The next offset of `topic`/`partition` recorded by `group`'s transactions, if any.
    pub async fn position(
        &self,
        table: Table,
        group: &str,
        topic: &str,
        partition: i32,
    ) -> Result<Option<i64>, DeltaError> {
        Ok(self.positions(table, group, topic, &[partition]).await?.remove(&partition).flatten())
    }

    /// The positions of `partitions` at the table's latest version, read for a writer taking
    /// them over: its next commits build on this version, so that any commit another writer
    /// makes to these partitions from now on makes them conflict.
    pub async fn positions(
        &self,
        table: Table,
        group: &str,
        topic: &str,
        partitions: &[i32],
    ) -> Result<BTreeMap<i32, Option<i64>>, DeltaError> {
        let mut slot = self.cache.write[table.slot()].lock().await;
        match slot.as_mut() {
            Some(writer) => {
                self.refresh(table, &mut writer.table).await?;
                // What was known held at the older snapshot only.
                writer.known.clear();
            }
            None => *slot = Some(Writer { table: self.open(table).await?, known: HashMap::new() }),
        }
        let writer = slot.as_mut().expect("loaded above");
        let mut found = BTreeMap::new();
        for &p in partitions {
            let id = app_id(group, topic, p);
            let position = position_of(table, &writer.table, &id).await?;
            writer.known.insert(id, position);
            found.insert(p, position);
        }
        Ok(found)
    }

    /// Commits `request`: its files and, for each partition it advances, a `txn` with the new
    /// position. Refused with [`DeltaError::Conflict`] when a partition is not where the writer
    /// started, and with [`DeltaError::ConcurrentTransaction`] when another writer's commit
    /// moved it since this writer's snapshot. Returns the new version.
    ///
    /// The commit builds on the writer's snapshot (from [`DeltaLake::positions`] or its last
    /// commit), not on a fresh read: Delta's conflict check then reads every commit made since
    /// by others, and a `txn` for one of this commit's partitions among them refuses it.
    ///
    /// The ingester commits `records` before `events`, so that `events` is never ahead: the
    /// de-duplication state, rebuilt from `events`, is then never newer than what `records`
    /// counted.
    pub async fn commit(&self, table: Table, request: &TableCommit) -> Result<u64, DeltaError> {
        let mut slot = self.cache.write[table.slot()].lock().await;
        if slot.is_none() {
            *slot = Some(Writer { table: self.open(table).await?, known: HashMap::new() });
        }
        let writer = slot.as_mut().expect("loaded above");
        let result = commit_with(table, writer, request).await;
        match &result {
            Ok(_) => {}
            // The snapshot may be behind what was written (a failed store call may still have
            // landed): the next commit starts from a fresh read.
            Err(DeltaError::Delta { .. } | DeltaError::ConcurrentTransaction { .. }) => *slot = None,
            Err(_) => {}
        }
        result
    }
}

async fn commit_with(table: Table, writer: &mut Writer, request: &TableCommit) -> Result<u64, DeltaError> {
    let name = table.name();
    let delta = |source| DeltaError::Delta { table: name, source };
    let mut actions = Vec::new();
    let mut txns = Vec::new();
    let now = chrono::Utc::now().timestamp_millis();
    let compaction = request.operation == "compact";
    // Removals first: finding their files may move the snapshot on, before any position is
    // checked against it.
    if !request.remove.is_empty() {
        let mut state = state_of(table, &writer.table).await?;
        if request.remove.iter().any(|p| !state.files.contains_key(p)) {
            // Files newer than the writer's snapshot (another process added them): read on,
            // forgetting the positions known at the older snapshot.
            writer.table.update_incremental(None).await.map_err(delta)?;
            writer.known.clear();
            state = state_of(table, &writer.table).await?;
        }
        for path in &request.remove {
            let Some(file) = state.files.get(path) else {
                return Err(delta(DeltaTableError::Generic(format!(
                    "file {path} was already removed from the table by another commit"
                ))));
            };
            actions.push(Action::Remove(Remove {
                path: path.clone(),
                data_change: !compaction,
                deletion_timestamp: Some(now),
                extended_file_metadata: Some(true),
                partition_values: Some(
                    file.partition_values.iter().map(|(k, v)| (k.clone(), Some(v.clone()))).collect(),
                ),
                size: Some(i64::try_from(file.size).unwrap_or(i64::MAX)),
                ..Remove::default()
            }));
        }
    }
    for (topic, partitions) in &request.advance {
        for (partition, (expected, next)) in partitions {
            let id = app_id(&request.group, topic, *partition);
            let found = match writer.known.get(&id) {
                Some(known) => *known,
                None => position_of(table, &writer.table, &id).await?,
            };
            if found != *expected {
                writer.known.insert(id, found);
                return Err(DeltaError::Conflict {
                    table: name,
                    topic: topic.clone(),
                    partition: *partition,
                    expected: *expected,
                    found,
                });
            }
            actions.push(Action::Txn(Transaction::new_with_last_update(id.clone(), *next, Some(now))));
            txns.push((id, *next));
        }
    }
    for claim in &request.claims {
        actions.push(Action::Txn(Transaction::new_with_last_update(claim.clone(), now, Some(now))));
    }
    for file in &request.add {
        actions.push(Action::Add(Add {
            path: file.path.clone(),
            partition_values: file.partition_values.iter().map(|(k, v)| (k.clone(), Some(v.clone()))).collect(),
            size: i64::try_from(file.size).unwrap_or(i64::MAX),
            modification_time: now,
            data_change: !compaction,
            stats: file.stats.clone(),
            ..Add::default()
        }));
    }
    let operation = if compaction {
        DeltaOperation::Optimize { predicate: None, target_size: 0 }
    } else {
        DeltaOperation::Write {
            mode: SaveMode::Append,
            partition_by: Some(partition_columns(table).iter().map(|c| (*c).to_owned()).collect()),
            predicate: None,
        }
    };
    let snapshot = writer.table.snapshot().map_err(delta)?;
    let app = HashMap::from([
        ("usageflow.operation".to_owned(), serde_json::Value::from(request.operation.clone())),
        ("usageflow.filesAdded".to_owned(), serde_json::Value::from(request.add.len())),
        ("usageflow.filesRemoved".to_owned(), serde_json::Value::from(request.remove.len())),
    ]);
    // A Parquet checkpoint when the version is a multiple of the table's
    // `delta.checkpointInterval`. The cleanup of commits older than the log retention lists the
    // whole log and reads every entry's time, so it runs after a checkpoint only (below), not
    // after every commit as `deltalake-core` would.
    let properties = CommitProperties::default()
        .with_create_checkpoint(true)
        .with_cleanup_expired_logs(Some(false))
        .with_max_retries(15);
    let done = CommitBuilder::from(properties)
        .with_actions(actions)
        .with_app_metadata(app)
        .build(Some(snapshot), writer.table.log_store(), operation)
        .await;
    match done {
        Ok(commit) => {
            let version = commit.version();
            let checkpointed = commit.metrics.new_checkpoint_created;
            writer.table.state = Some(commit.snapshot());
            writer.known.extend(txns.into_iter().map(|(id, next)| (id, Some(next))));
            if checkpointed {
                expire_log(table, &writer.table).await;
            }
            Ok(version)
        }
        Err(DeltaTableError::Transaction { source: TransactionError::CommitConflict(conflict) }) => {
            Err(DeltaError::ConcurrentTransaction { table: name, reason: conflict.to_string() })
        }
        Err(source) => Err(delta(source)),
    }
}

/// The values `handle`'s table stores for the properties [`TableSettings`] owns.
fn owned_properties(table: Table, handle: &DeltaTable) -> Result<BTreeMap<String, String>, DeltaError> {
    let snapshot = handle.snapshot().map_err(|source| DeltaError::Delta { table: table.name(), source })?;
    let configuration = snapshot.metadata().configuration();
    Ok(TableSettings::default()
        .properties()
        .into_keys()
        .filter_map(|key| configuration.get(&key).map(|v| (key, v.clone())))
        .collect())
}

/// Deletes the commits and checkpoints older than the table's log retention that no version
/// inside it needs (`deltalake-core` keeps everything from the last checkpoint before the
/// oldest retained commit), unless the table's `delta.enableExpiredLogCleanup` is false. The
/// commit has landed: a failure here is logged and the next checkpoint tries again.
async fn expire_log(table: Table, handle: &DeltaTable) {
    use deltalake_core::table::config::TablePropertiesExt as _;
    let enabled = handle.snapshot().map(|s| s.table_config().enable_expired_log_cleanup()).unwrap_or(false);
    if !enabled {
        return;
    }
    match deltalake_core::protocol::checkpoints::cleanup_metadata(handle, None).await {
        Ok(0) => {}
        Ok(n) => tracing::debug!(table = table.name(), deleted = n, "expired log entries deleted"),
        Err(e) => tracing::warn!(table = table.name(), error = %e, "deleting expired log entries failed"),
    }
}

fn describe(columns: impl Iterator<Item = (String, String)>, partitions: impl Iterator<Item = String>) -> String {
    let columns: Vec<String> = columns.map(|(n, t)| format!("{n} {t}")).collect();
    let partitions: Vec<String> = partitions.collect();
    format!("columns [{}], partitioned by [{}]", columns.join(", "), partitions.join(", "))
}

async fn position_of(table: Table, handle: &DeltaTable, app_id: &str) -> Result<Option<i64>, DeltaError> {
    let name = table.name();
    let snapshot = handle.snapshot().map_err(|source| DeltaError::Delta { table: name, source })?;
    snapshot
        .transaction_version(handle.log_store().as_ref(), app_id)
        .await
        .map_err(|source| DeltaError::Delta { table: name, source })
}

async fn state_of(table: Table, handle: &DeltaTable) -> Result<TableState, DeltaError> {
    let name = table.name();
    let delta = |source| DeltaError::Delta { table: name, source };
    let version = handle.version();
    let timestamp = match (version, handle.snapshot()) {
        (Some(v), Ok(s)) => s.version_timestamp(v),
        _ => None,
    };
    let views: Vec<_> = handle.get_active_add_actions_by_partitions(&[]).try_collect().await.map_err(delta)?;
    let files = views
        .iter()
        .map(|f| {
            let file = TableFile {
                table,
                path: f.path().into_owned(),
                partition_values: f.partition_values_map().into_iter().filter_map(|(k, v)| Some((k, v?))).collect(),
                size: u64::try_from(f.size()).unwrap_or_default(),
                rows: f.num_records().unwrap_or_default() as u64,
                stats: f.stats(),
            };
            (file.path.clone(), file)
        })
        .collect();
    Ok(TableState { version, timestamp, files })
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
