//! The lake's Delta tables on the local store and on the S3-compatible server: creation with
//! the declared schema and partitioning, commits of data files with statistics and of Kafka
//! positions as application transactions, the refusal of a writer whose partition moved, two
//! writers racing for one version, and locations that hold something else.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;

use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use usageflow_lake::Table;
use usageflow_lake::delta::{DeltaError, DeltaLake, TableCommit, TableFile, statistics};
use usageflow_lake::tables::{EventRow, EventsBuilder, to_parquet};

const GROUP: &str = "usageflow-ingest";
const TOPIC: &str = "usage-events";

/// An events data file for `date` holding offsets `from..to` of partition 0, written to the
/// store, with its statistics.
async fn events_file(store: &Arc<dyn ObjectStore>, date: &str, from: i64, to: i64) -> TableFile {
    let mut rows = EventsBuilder::default();
    let time = chrono::DateTime::parse_from_rfc3339(&format!("{date}T10:00:00.123456Z")).unwrap().timestamp_micros();
    for offset in from..to {
        let id = format!("e-{offset}");
        rows.push(&EventRow {
            event_id: &id,
            product_id: "PRD-200-200-002",
            contract_id: "CRD-20001-10001-00001",
            asset_id: "AS-1000-0719-1201",
            item_id: Some("PRD-200-200-002-0002"),
            item_mpn: "FL-SMS",
            tier: None,
            category_id: None,
            quantity: 150_000_000 * (offset as i128 + 1),
            amount: None,
            start_time: time,
            end_time: time,
            attributes: None,
            kafka_partition: 0,
            kafka_offset: offset,
            kafka_timestamp: time,
        });
    }
    let batch = rows.finish();
    let bytes = to_parquet(&batch).unwrap();
    let name = format!("date={date}/part-00000-{from:020}-{to:020}-test.parquet");
    store.put(&Path::from(format!("lake/events/{name}")), PutPayload::from(bytes.clone())).await.unwrap();
    TableFile {
        table: Table::Events,
        path: name,
        partition_values: BTreeMap::from([("date".to_owned(), date.to_owned())]),
        size: bytes.len() as u64,
        rows: batch.num_rows() as u64,
        stats: Some(statistics(&batch)),
    }
}

fn advance(expected: Option<i64>, next: i64, file: TableFile) -> TableCommit {
    TableCommit {
        operation: "ingest".into(),
        group: GROUP.into(),
        advance: BTreeMap::from([(TOPIC.to_owned(), BTreeMap::from([(0, (expected, next))]))]),
        add: vec![file],
        remove: vec![],
        claims: vec![],
    }
}

async fn the_tables_keep_files_positions_and_refuse_a_moved_partition(config: &usageflow_lake::StoreConfig) {
    let open = || DeltaLake::open_store(config).unwrap();
    let lake = open();
    let store = lake.store().clone();
    let empty = lake.state(Table::Events).await.unwrap();
    assert_eq!((empty.version, empty.files.len()), (Some(0), 0), "created empty, at version 0");
    assert_eq!(lake.position(Table::Events, GROUP, TOPIC, 0).await.unwrap(), None);

    let first = events_file(&store, "2026-11-01", 0, 10).await;
    let stats: serde_json::Value = serde_json::from_str(first.stats.as_deref().unwrap()).unwrap();
    assert_eq!(stats["numRecords"], 10);
    assert_eq!(stats["minValues"]["kafka_offset"], 0);
    assert_eq!(stats["maxValues"]["kafka_offset"], 9);
    assert_eq!(stats["minValues"]["quantity"].to_string(), "1.5", "exact decimals");
    assert_eq!(stats["maxValues"]["quantity"].to_string(), "15");
    assert_eq!(stats["minValues"]["start_time"], "2026-11-01T10:00:00.123Z");
    assert_eq!(stats["maxValues"]["start_time"], "2026-11-01T10:00:00.124Z", "rounded up");
    assert_eq!(stats["nullCount"]["amount"], 10);
    assert_eq!(lake.commit(Table::Events, &advance(None, 10, first.clone())).await.unwrap(), 1);
    assert_eq!(lake.position(Table::Events, GROUP, TOPIC, 0).await.unwrap(), Some(10));

    // A writer that started from an older position commits nothing.
    let late = events_file(&store, "2026-11-01", 0, 10).await;
    let err = lake.commit(Table::Events, &advance(None, 10, late)).await.unwrap_err();
    assert!(matches!(&err, DeltaError::Conflict { found: Some(10), expected: None, .. }), "{err}");
    let second = events_file(&store, "2026-11-02", 10, 25).await;
    assert_eq!(lake.commit(Table::Events, &advance(Some(10), 25, second)).await.unwrap(), 2);

    // Read again from the store: two files with their partition values and row counts.
    let state = open().state(Table::Events).await.unwrap();
    assert_eq!(state.version, Some(2));
    let rows: Vec<(String, u64)> = state.files.values().map(|f| (f.partition_values["date"].clone(), f.rows)).collect();
    assert_eq!(rows, [("2026-11-01".to_owned(), 10), ("2026-11-02".to_owned(), 15)]);
    assert_eq!(state.files[&first.path].size, first.size);
    assert_eq!(open().position(Table::Events, GROUP, TOPIC, 0).await.unwrap(), Some(25));

    // Two writers from the same position race for one version: exactly one advances it.
    let a = events_file(&store, "2026-11-03", 25, 30).await;
    let b = events_file(&store, "2026-11-03", 25, 31).await;
    let (lake_a, lake_b) = (open(), open());
    let (commit_a, commit_b) = (advance(Some(25), 30, a), advance(Some(25), 31, b));
    let (ra, rb) = tokio::join!(lake_a.commit(Table::Events, &commit_a), lake_b.commit(Table::Events, &commit_b));
    let lost = match (ra, rb) {
        (Ok(_), Err(e)) | (Err(e), Ok(_)) => e,
        other => panic!("exactly one writer wins: {other:?}"),
    };
    assert!(
        matches!(lost, DeltaError::Conflict { .. } | DeltaError::ConcurrentTransaction { .. }),
        "the loser is told its partition moved: {lost}"
    );
    let state = lake.state(Table::Events).await.unwrap();
    assert_eq!((state.version, state.files.len()), (Some(3), 3));
    let next = lake.position(Table::Events, GROUP, TOPIC, 0).await.unwrap();
    assert!(next == Some(30) || next == Some(31), "{next:?}");

    // The records table is a table of its own, partitioned by product and month.
    let records = lake.state(Table::Records).await.unwrap();
    assert_eq!((records.version, records.files.len()), (Some(0), 0));
}

#[tokio::test]
async fn delta_tables_on_the_local_store() {
    let dir = tempfile::tempdir().unwrap();
    let config = usageflow_lake::StoreConfig::local(dir.path());
    the_tables_keep_files_positions_and_refuse_a_moved_partition(&config).await;
    // Other engines find a Delta log where they look, and read what the lake holds: the
    // Python `deltalake` package (delta-rs), Polars, and DuckDB over the files the snapshot lists.
    assert!(dir.path().join("lake/events/_delta_log/00000000000000000003.json").exists());
    let lake = DeltaLake::open_store(&config).unwrap();
    let files = lake.state(Table::Events).await.unwrap().files;
    let rows: u64 = files.values().map(|f| f.rows).sum();
    let seen = readers(&dir.path().join("lake/events"), "quantity");
    assert_eq!(seen["version"], 3, "{seen}");
    assert_eq!(seen["partition_columns"], serde_json::json!(["date"]), "{seen}");
    assert_eq!(seen["files"], files.len(), "{seen}");
    assert_eq!(seen["polars"]["rows"], rows, "{seen}");
    assert_eq!(seen["duckdb"]["rows"], rows, "{seen}");
    assert!(seen["polars"]["columns"].as_array().unwrap().iter().any(|c| c == "date"), "{seen}");
    // The files hold offsets 0..rows (the racing winner's ends at 30 or 31), each event a
    // quantity of 1.5 × (offset + 1).
    let expected: rust_decimal::Decimal = (0..rows as i64).map(|o| rust_decimal::Decimal::new(15 * (o + 1), 1)).sum();
    assert_eq!(seen["polars"]["sum"], expected.normalize().to_string(), "{seen}");
    assert_eq!(seen["duckdb"]["sum"], expected.normalize().to_string(), "{seen}");
    // And Spark with Delta Lake, also as of version 1 (the first file only).
    let seen = spark(&dir.path().join("lake/events"), 1);
    assert_eq!((seen["version"].as_u64(), seen["latest"]["rows"].as_u64()), (Some(3), Some(rows)), "{seen}");
    assert_eq!(seen["as_of"]["rows"], 10, "{seen}");
    let spark_sum: rust_decimal::Decimal = spark_totals(&seen["latest"]).values().sum();
    assert_eq!(spark_sum.normalize(), expected.normalize(), "{seen}");
}

/// What the Delta readers of deploy/compat/delta-readers.txt see of a table.
fn readers(table: &std::path::Path, column: &str) -> serde_json::Value {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = std::process::Command::new(root.join("deploy/compat/venv.sh"))
        .args(["python", "delta-readers"])
        .output()
        .unwrap();
    assert!(python.status.success(), "cannot install the Delta readers: {}", String::from_utf8_lossy(&python.stderr));
    let python = String::from_utf8(python.stdout).unwrap().trim().to_owned();
    let out = std::process::Command::new(python)
        .arg(root.join("tests/compat/delta_readers.py"))
        .arg(table)
        .arg(column)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test]
async fn delta_tables_on_the_s3_server() {
    the_tables_keep_files_positions_and_refuse_a_moved_partition(&support::s3_store_config(&support::unique("delta")))
        .await;
}

#[tokio::test]
async fn a_location_that_holds_something_else_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let config = usageflow_lake::StoreConfig::local(dir.path());
    let store = usageflow_lake::open_store(&config).unwrap();
    store
        .put(&Path::from("lake/records/product=P/month=2026-11/x.parquet"), PutPayload::from_static(b"PAR1"))
        .await
        .unwrap();
    let err = DeltaLake::open_store(&config).unwrap().state(Table::Records).await.unwrap_err();
    assert!(matches!(err, DeltaError::NotADeltaTable { objects: 1, .. }), "{err}");
    assert!(err.to_string().contains("lake/records/product=P/month=2026-11/x.parquet"), "{err}");
    assert!(!dir.path().join("lake/records/_delta_log").exists(), "nothing was written");

    // A Delta table with another schema.
    let other = r#"{"protocol":{"minReaderVersion":1,"minWriterVersion":2}}
{"metaData":{"id":"00000000-0000-0000-0000-000000000001","format":{"provider":"parquet","options":{}},"schemaString":"{\"type\":\"struct\",\"fields\":[{\"name\":\"x\",\"type\":\"long\",\"nullable\":true,\"metadata\":{}}]}","partitionColumns":[],"configuration":{},"createdTime":0}}
"#;
    store
        .put(&Path::from("lake/events/_delta_log/00000000000000000000.json"), PutPayload::from_static(other.as_bytes()))
        .await
        .unwrap();
    let err = DeltaLake::open_store(&config).unwrap().state(Table::Events).await.unwrap_err();
    assert!(matches!(err, DeltaError::OtherSchema { .. }), "{err}");
    assert!(err.to_string().contains("columns [x Int64]"), "{err}");

    // A table that needs a newer protocol than this build reads.
    let dir = tempfile::tempdir().unwrap();
    let config = usageflow_lake::StoreConfig::local(dir.path());
    let store = usageflow_lake::open_store(&config).unwrap();
    let newer =
        other.replace(r#""minReaderVersion":1,"minWriterVersion":2"#, r#""minReaderVersion":4,"minWriterVersion":8"#);
    store
        .put(&Path::from("lake/events/_delta_log/00000000000000000000.json"), PutPayload::from(newer.into_bytes()))
        .await
        .unwrap();
    let err = DeltaLake::open_store(&config).unwrap().state(Table::Events).await.unwrap_err();
    assert!(err.to_string().contains("lake/events"), "{err}");
}

/// What Apache Spark (pyspark with delta-spark, deploy/compat/spark.txt) sees of a table: its
/// version, and rows and per-record sums at the latest version and as of `as_of`.
fn spark(table: &std::path::Path, as_of: u64) -> serde_json::Value {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let python =
        std::process::Command::new(root.join("deploy/compat/venv.sh")).args(["python", "spark"]).output().unwrap();
    assert!(python.status.success(), "cannot install Spark: {}", String::from_utf8_lossy(&python.stderr));
    let python = String::from_utf8(python.stdout).unwrap().trim().to_owned();
    let out = std::process::Command::new(python)
        .arg(root.join("tests/compat/spark_read.py"))
        .arg(table)
        .arg(as_of.to_string())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap()
}

/// Per-record sums of `quantity` by the lake's own SQL over a snapshot, keyed as Spark's are.
async fn sql_totals(lake: &DeltaLake, state: usageflow_lake::LakeState) -> BTreeMap<String, rust_decimal::Decimal> {
    let catalogue =
        usageflow_catalog::load_dir(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/catalog")).unwrap();
    let sources = usageflow_query::Sources {
        lake: state,
        catalogue: Arc::new(catalogue),
        files: vec![],
        changes: vec![],
        chunks: vec![],
        reconciliations: vec![],
    };
    let ctx =
        usageflow_query::analyst_session(lake.store().clone(), &sources, &usageflow_query::Scope::All).await.unwrap();
    let text = |c: &str| format!("COALESCE(CAST({c} AS VARCHAR), '')");
    let sql = format!(
        "SELECT {} || '|' || {} || '|' || {} || '|' || {} || '|' || {} || '|' || {} || '|' || \
         CAST(CAST(period_start AS BIGINT) AS VARCHAR) AS k, CAST(sum(quantity) AS VARCHAR) AS q \
         FROM usage_records GROUP BY 1",
        text("product_id"),
        text("contract_id"),
        text("asset_id"),
        text("item_mpn"),
        text("tier"),
        text("category_id"),
    );
    let rows = usageflow_query::billing::to_rows(&usageflow_query::query(&ctx, &sql).await.unwrap()).unwrap();
    rows.into_iter().map(|r| (r[0].clone(), r[1].parse::<rust_decimal::Decimal>().unwrap().normalize())).collect()
}

fn spark_totals(seen: &serde_json::Value) -> BTreeMap<String, rust_decimal::Decimal> {
    seen["totals"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().parse::<rust_decimal::Decimal>().unwrap().normalize()))
        .collect()
}

#[tokio::test]
async fn spark_reads_the_records_table_and_its_past_versions_as_the_lake_s_sql_does() {
    use usageflow_lake::tables::{RecordRow, RecordsBuilder};
    let dir = tempfile::tempdir().unwrap();
    let lake = DeltaLake::open_store(&usageflow_lake::StoreConfig::local(dir.path())).unwrap();
    let day = |d: u32| {
        chrono::NaiveDate::from_ymd_opt(2026, 11, d).unwrap().and_hms_opt(0, 0, 0).unwrap().and_utc().timestamp_micros()
    };
    // Three commits of deltas: the same records summed across files, a second product, tiers.
    let commit = async |name: &str, rows: &[(&str, &str, Option<i8>, u32, i128)]| {
        let mut per_product: BTreeMap<&str, RecordsBuilder> = BTreeMap::new();
        for (product, asset, tier, d, q) in rows {
            per_product.entry(product).or_default().push(&RecordRow {
                product_id: product,
                contract_id: "CRD-20001-10001-00001",
                marketplace_id: "MP-10001",
                hub_id: "HB-0001-0001",
                vendor_id: "VA-200-002",
                provider_id: "PA-500-001",
                asset_id: asset,
                item_id: Some("PRD-200-200-002-0002"),
                item_mpn: "FL-SMS",
                item_precision: 2,
                tier: *tier,
                category_id: None,
                period_start: day(*d),
                period_end: day(*d + 1),
                quantity: *q,
                amount: None,
                event_count: 1,
                first_event_at: day(*d),
                last_event_at: day(*d),
                kafka_partition: 0,
            });
        }
        let mut files = Vec::new();
        for (product, mut rows) in per_product {
            let partition = [("product", product), ("month", "2026-11")];
            let file = format!("part-00000-{name}.parquet");
            files.push(lake.write_file(Table::Records, &rows.finish(), &partition, &file).await.unwrap());
        }
        lake.append(Table::Records, files).await.unwrap()
    };
    assert_eq!(
        commit("a", &[("PRD-200-200-002", "AS-1", None, 3, 125_000_000), ("PRD-1", "AS-2", Some(1), 3, 7)]).await,
        1
    );
    assert_eq!(
        commit("b", &[("PRD-200-200-002", "AS-1", None, 3, 1), ("PRD-200-200-002", "AS-1", None, 4, 5)]).await,
        2
    );
    assert_eq!(commit("c", &[("PRD-1", "AS-2", Some(1), 3, 3), ("PRD-1", "AS-3", Some(2), 5, 1)]).await, 3);

    let seen = spark(&dir.path().join("lake/records"), 2);
    assert_eq!(seen["version"], 3, "{seen}");
    let latest = sql_totals(&lake, lake.snapshot().await.unwrap()).await;
    assert_eq!(spark_totals(&seen["latest"]), latest, "Spark's totals at the latest version");
    let past = sql_totals(&lake, lake.snapshot_as_of(usageflow_lake::AsOf::Version(2)).await.unwrap()).await;
    assert_ne!(past, latest);
    assert_eq!(spark_totals(&seen["as_of"]), past, "Spark's totals as of version 2");
    let rows: u64 = lake.snapshot().await.unwrap().files_of(Table::Records).map(|f| f.rows).sum();
    assert_eq!(seen["latest"]["rows"], rows, "{seen}");
}

#[tokio::test]
async fn a_missing_or_corrupt_checkpoint_is_a_clear_error_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let config = usageflow_lake::StoreConfig::local(dir.path());
    let lake = DeltaLake::open_store(&config).unwrap().with_checkpoint_interval(2);
    let store = lake.store().clone();
    lake.state(Table::Events).await.unwrap();
    for (from, to) in [(0, 5), (5, 9), (9, 12)] {
        let file = events_file(&store, "2026-11-01", from, to).await;
        lake.commit(Table::Events, &advance((from > 0).then_some(from), to, file)).await.unwrap();
    }
    let log = dir.path().join("lake/events/_delta_log");
    // Versions 1 and 3: a checkpoint whenever the next version is a multiple of 2.
    assert!(log.join("00000000000000000001.checkpoint.parquet").exists(), "a checkpoint every 2 commits");
    let checkpoint = log.join("00000000000000000003.checkpoint.parquet");
    assert!(checkpoint.exists(), "a checkpoint every 2 commits");
    assert_eq!(DeltaLake::open_store(&config).unwrap().state(Table::Events).await.unwrap().version, Some(3));
    let listing = || {
        let mut names: Vec<String> =
            std::fs::read_dir(&log).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        names
    };

    std::fs::write(&checkpoint, b"PAR1 not a checkpoint PAR1").unwrap();
    let before = listing();
    let err = DeltaLake::open_store(&config).unwrap().state(Table::Events).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, DeltaError::Checkpoint { .. }), "{text}");
    assert!(text.contains("00000000000000000003.checkpoint.parquet, which is not a readable Parquet"), "{text}");
    assert_eq!(listing(), before, "nothing was written");

    std::fs::remove_file(&checkpoint).unwrap();
    let before = listing();
    let err = DeltaLake::open_store(&config).unwrap().state(Table::Events).await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains("lake/events") && text.contains("checkpoint.parquet, which is missing"), "{text}");
    assert_eq!(listing(), before, "nothing was written");
}

/// A lake on `config` whose events table holds two committed files of one day.
async fn two_events_files(config: &usageflow_lake::StoreConfig) -> (DeltaLake, TableFile, TableFile) {
    let lake = DeltaLake::open_store(config).unwrap();
    lake.state(Table::Events).await.unwrap();
    let store = lake.store().clone();
    let (a, b) = (events_file(&store, "2026-11-01", 0, 5).await, events_file(&store, "2026-11-01", 5, 9).await);
    lake.append(Table::Events, vec![a.clone(), b.clone()]).await.unwrap();
    (lake, a, b)
}

/// Two compactions of the same files, each from a snapshot taken before the other committed:
/// the second is refused (Delta alone would let both remove the files, as neither changes
/// data, and the records would count twice).
#[tokio::test]
async fn a_second_compaction_of_the_same_files_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = usageflow_lake::StoreConfig::local(dir.path());
    let (lake, a, b) = two_events_files(&config).await;
    let (first, second) = (DeltaLake::open_store(&config).unwrap(), DeltaLake::open_store(&config).unwrap());
    // Both writers hold the snapshot with the two files.
    first.positions(Table::Events, GROUP, TOPIC, &[]).await.unwrap();
    second.positions(Table::Events, GROUP, TOPIC, &[]).await.unwrap();
    let compaction = |name: &str| {
        let mut folded = a.clone();
        folded.path = format!("date=2026-11-01/{name}.parquet");
        TableCommit {
            operation: "compact".into(),
            remove: vec![a.path.clone(), b.path.clone()],
            claims: vec![usageflow_lake::delta::compaction_claim(Table::Events, &a.partition_values)],
            add: vec![folded],
            ..TableCommit::default()
        }
    };
    assert_eq!(first.commit(Table::Events, &compaction("compacted-1")).await.unwrap(), 2);
    let err = second.commit(Table::Events, &compaction("compacted-2")).await.unwrap_err();
    assert!(matches!(err, DeltaError::ConcurrentTransaction { .. }), "{err}");
    let files: Vec<String> = lake.state(Table::Events).await.unwrap().files.into_keys().collect();
    assert_eq!(files, ["date=2026-11-01/compacted-1.parquet"]);
}

/// Vacuum deletes a file no commit added once it is older than the retention, keeps every
/// file the latest version reads however old, keeps the files a recent compaction replaced
/// (a reader of an earlier version may need them), and refuses a retention under a week.
#[tokio::test]
async fn vacuum_deletes_only_what_no_version_within_the_retention_needs() {
    let dir = tempfile::tempdir().unwrap();
    let config = usageflow_lake::StoreConfig::local(dir.path());
    let (lake, a, b) = two_events_files(&config).await;
    let store = lake.store().clone();
    let orphan = events_file(&store, "2026-11-01", 9, 12).await;
    let replaced = {
        let mut folded = a.clone();
        folded.path = "date=2026-11-01/compacted.parquet".into();
        store
            .put(
                &Path::from(folded.location()),
                PutPayload::from(std::fs::read(dir.path().join(a.location())).unwrap()),
            )
            .await
            .unwrap();
        let request = TableCommit {
            operation: "compact".into(),
            remove: vec![a.path.clone()],
            add: vec![folded],
            ..TableCommit::default()
        };
        lake.commit(Table::Events, &request).await.unwrap();
        a
    };
    // Every data file is ten days old on disk.
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(10 * 86_400);
    for f in [&replaced, &b, &orphan] {
        std::fs::File::options().write(true).open(dir.path().join(f.location())).unwrap().set_modified(old).unwrap();
    }
    let week = chrono::Duration::hours(168);
    let err = lake.vacuum(Table::Events, chrono::Duration::hours(24), false).await.unwrap_err();
    assert!(matches!(err, DeltaError::RetentionTooShort { floor_hours: 168, .. }), "{err}");
    let planned = lake.vacuum(Table::Events, week, true).await.unwrap();
    assert!(dir.path().join(orphan.location()).exists(), "a dry run deletes nothing");
    let deleted = lake.vacuum(Table::Events, week, false).await.unwrap();
    assert_eq!(deleted, planned);
    assert!(deleted.iter().any(|d| d.ends_with(&orphan.path)), "{deleted:?}");
    assert!(!dir.path().join(orphan.location()).exists(), "the uncommitted file is gone");
    assert!(dir.path().join(b.location()).exists(), "a live file stays");
    assert!(dir.path().join(replaced.location()).exists(), "a file replaced within the retention stays");
    let rows: u64 = lake.state(Table::Events).await.unwrap().files.values().map(|f| f.rows).sum();
    assert_eq!(rows, 9, "the table reads what it read before");
}

/// The log keeps the retention window: after a checkpoint (and only then) the commits older
/// than the window that no version inside it needs are deleted; the table reads as before,
/// and history and time travel reach back to the window's start.
#[tokio::test]
async fn the_log_keeps_its_retention_window_and_drops_older_commits_after_a_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let config = usageflow_lake::StoreConfig::local(dir.path());
    let settings = usageflow_lake::delta::TableSettings { checkpoint_interval: 2, log_retention_hours: 168 };
    let lake = DeltaLake::open_store(&config).unwrap().with_settings(settings);
    let store = lake.store().clone();
    lake.state(Table::Events).await.unwrap();
    let commit = |from: i64, to: i64| {
        let (lake, store) = (lake.clone(), store.clone());
        async move {
            let file = events_file(&store, "2026-11-01", from, to).await;
            lake.commit(Table::Events, &advance((from > 0).then_some(from), to, file)).await.unwrap()
        }
    };
    for (from, to) in [(0, 5), (5, 9), (9, 12)] {
        commit(from, to).await;
    }
    let log = dir.path().join("lake/events/_delta_log");
    let exists = |name: &str| log.join(name).exists();
    // Versions 0 to 3 (checkpoints at 1 and 3) become ten days old: past the week kept.
    support::age_log_files(&log, 0..=3, 10);
    assert_eq!(commit(12, 15).await, 4);
    assert!(exists("00000000000000000000.json"), "no cleanup after a commit without a checkpoint");
    assert_eq!(commit(15, 20).await, 5);
    assert!(exists("00000000000000000005.checkpoint.parquet"));
    for gone in ["00000000000000000000.json", "00000000000000000001.json", "00000000000000000002.json"] {
        assert!(!exists(gone), "{gone} is older than the window and no version in it needs it");
    }
    assert!(!exists("00000000000000000001.checkpoint.parquet"));
    // Version 4 is the oldest inside the window; it is read from checkpoint 3 and commit 4.
    for kept in ["00000000000000000003.checkpoint.parquet", "00000000000000000003.json", "00000000000000000004.json"] {
        assert!(exists(kept), "{kept} is needed by a version inside the window");
    }

    let reader = DeltaLake::open_store(&config).unwrap();
    let state = reader.state(Table::Events).await.unwrap();
    assert_eq!(state.version, Some(5));
    assert_eq!(state.files.values().map(|f| f.rows).sum::<u64>(), 20, "every committed row is still read");
    assert_eq!(reader.position(Table::Events, GROUP, TOPIC, 0).await.unwrap(), Some(20));
    let versions: Vec<u64> = reader.history(Table::Events, None).await.unwrap().iter().map(|h| h.version).collect();
    assert_eq!(versions, vec![5, 4, 3], "history reaches back to the window's start");
    let past = reader.table_as_of(Table::Events, usageflow_lake::AsOf::Version(3)).await.unwrap();
    assert_eq!(past.version(), Some(3), "the window's oldest checkpoint is still read");
    let err = reader.table_as_of(Table::Events, usageflow_lake::AsOf::Version(1)).await.unwrap_err();
    assert!(err.to_string().contains("lake/events"), "{err}");
}

/// A table created with other settings keeps them until `configure`, which then gives it the
/// lake's in one metadata commit, and only once; commits go on as before.
#[tokio::test]
async fn configure_gives_an_existing_table_the_lake_s_settings_once() {
    let dir = tempfile::tempdir().unwrap();
    let config = usageflow_lake::StoreConfig::local(dir.path());
    let old = DeltaLake::open_store(&config).unwrap();
    let store = old.store().clone();
    old.state(Table::Events).await.unwrap();
    let file = events_file(&store, "2026-11-01", 0, 5).await;
    old.commit(Table::Events, &advance(None, 5, file)).await.unwrap();
    let defaults = usageflow_lake::delta::TableSettings::default().properties();
    assert_eq!(old.table_properties(Table::Events).await.unwrap(), defaults);

    let settings = usageflow_lake::delta::TableSettings { checkpoint_interval: 3, log_retention_hours: 200 };
    let lake = DeltaLake::open_store(&config).unwrap().with_settings(settings);
    assert_eq!(lake.table_properties(Table::Events).await.unwrap(), defaults, "settings apply to new tables only");
    assert_eq!(lake.configure(Table::Events).await.unwrap(), Some(2));
    let properties = lake.table_properties(Table::Events).await.unwrap();
    assert_eq!(properties, settings.properties());
    assert_eq!(properties["delta.logRetentionDuration"], "interval 200 hours");
    assert_eq!(lake.configure(Table::Events).await.unwrap(), None, "nothing to change");

    // The writer that committed before the change is refused once, then commits on the new
    // metadata; the new interval checkpoints version 5.
    let file = events_file(&store, "2026-11-01", 5, 9).await;
    let err = old.commit(Table::Events, &advance(Some(5), 9, file.clone())).await;
    let version = match err {
        Ok(v) => v,
        Err(e) => {
            assert!(matches!(e, DeltaError::ConcurrentTransaction { .. }), "{e}");
            old.commit(Table::Events, &advance(Some(5), 9, file)).await.unwrap()
        }
    };
    assert_eq!(version, 3);
    for (from, to) in [(9, 12), (12, 15)] {
        let file = events_file(&store, "2026-11-01", from, to).await;
        lake.commit(Table::Events, &advance(Some(from), to, file)).await.unwrap();
    }
    assert!(dir.path().join("lake/events/_delta_log/00000000000000000005.checkpoint.parquet").exists());
    let state = DeltaLake::open_store(&config).unwrap().state(Table::Events).await.unwrap();
    assert_eq!((state.version, state.files.values().map(|f| f.rows).sum::<u64>()), (Some(5), 15));
}
