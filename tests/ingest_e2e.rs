//! Ingestion end to end against the real broker: generated events (with duplicates,
//! invalid and late events) land in the lake with exact per-record totals, rejected events
//! in the dead-letter topic with their reason, and a replay of the same events adds nothing.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use usageflow_ingest::loadgen::{self, LoadgenConfig};
use usageflow_ingest::{CaughtUp, Counters, IngestConfig, Ingester, PipelineError};
use usageflow_lake::DeltaLake;

/// Runs an ingester until it has seen `messages` messages, then stops it (which flushes).
fn ingest_until(ingester: &Ingester, messages: u64) {
    let stop = Arc::new(AtomicBool::new(false));
    let runner = {
        let (ingester, stop) = (ingester.clone(), stop.clone());
        std::thread::spawn(move || ingester.run(&stop))
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    while ingester.counters.messages.load(Ordering::Relaxed) < messages {
        assert!(Instant::now() < deadline, "ingester saw only {:?} of {messages} messages", ingester.counters);
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed);
    runner.join().unwrap().expect("the ingester's settings are valid");
}

/// An ingester given a setting no run could work with (an empty topic) returns the error at
/// once, naming the key, instead of retrying; nothing is written to the lake.
#[test]
fn a_setting_that_cannot_work_stops_the_ingester_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let lake = DeltaLake::open_store(&usageflow_lake::StoreConfig::local(dir.path())).unwrap();
    let mut kafka = support::kafka_config("ingest-invalid");
    kafka.topic = String::new();
    let ingester = Ingester {
        kafka,
        config: IngestConfig { metrics_listen: String::new(), ..IngestConfig::default() },
        index: support::sample_index(),
        lake,
        counters: Arc::new(Counters::default()),
    };
    let started = Instant::now();
    let err = ingester.run(&AtomicBool::new(false)).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(1), "took {:?}", started.elapsed());
    assert!(matches!(&err, PipelineError::Config(s) if s.key == "kafka.topic"), "{err}");
    assert!(err.to_string().contains("invalid configuration: key `kafka.topic`"), "{err}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

/// Stopped while it cannot reach the broker, the ingester returns the failure instead of
/// pretending a clean run (the command then exits non-zero).
#[test]
fn stopped_while_failing_the_ingester_returns_the_failure() {
    let dir = tempfile::tempdir().unwrap();
    let lake = DeltaLake::open_store(&usageflow_lake::StoreConfig::local(dir.path())).unwrap();
    let mut kafka = support::kafka_config("ingest-unreachable");
    kafka.bootstrap_servers = "127.0.0.1:1".into();
    let ingester = Ingester {
        kafka,
        config: IngestConfig {
            metrics_listen: String::new(),
            transaction_timeout_ms: 1_000,
            restart_backoff_ms: 100,
            ..IngestConfig::default()
        },
        index: support::sample_index(),
        lake,
        counters: Arc::new(Counters::default()),
    };
    let stop = Arc::new(AtomicBool::new(false));
    let stopper = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(1_500));
            stop.store(true, Ordering::Relaxed);
        })
    };
    let err = ingester.run(&stop).unwrap_err();
    stopper.join().unwrap();
    assert!(matches!(err, PipelineError::Kafka(_)), "{err}");
    assert_eq!(ingester.counters.messages.load(Ordering::Relaxed), 0);
}

/// A batch run against a broker that never answers fails once its wait for an assignment is
/// over, instead of retrying forever or reporting an empty success.
#[test]
fn a_batch_run_against_a_silent_broker_fails_within_its_wait() {
    let dir = tempfile::tempdir().unwrap();
    let lake = DeltaLake::open_store(&usageflow_lake::StoreConfig::local(dir.path())).unwrap();
    let mut kafka = support::kafka_config("ingest-silent");
    kafka.bootstrap_servers = "127.0.0.1:1".into();
    let ingester = Ingester {
        kafka,
        config: IngestConfig {
            metrics_listen: String::new(),
            transaction_timeout_ms: 1_000,
            restart_backoff_ms: 100,
            ..IngestConfig::default()
        },
        index: support::sample_index(),
        lake,
        counters: Arc::new(Counters::default()),
    };
    let rule = CaughtUp { idle: Duration::from_secs(1), assignment_timeout: Duration::from_secs(2) };
    let started = Instant::now();
    let err = ingester.run_until_caught_up(&AtomicBool::new(false), rule).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(20), "took {:?}", started.elapsed());
    assert!(matches!(err, PipelineError::NotAssigned { .. }), "{err}");
    assert!(err.to_string().contains("every run failed, the last with: Kafka"), "{err}");
    assert_eq!(ingester.counters.assignments.load(Ordering::Relaxed), 0);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "nothing is written");
}

/// A batch run stops by itself once every partition is at its end, with exact totals, and
/// not before its first assignment (the clock of the idle period starts there).
#[test]
fn a_batch_run_stops_once_caught_up_with_exact_totals() {
    let kafka = support::kafka_config("ingest-caught-up");
    let index = support::sample_index();
    loadgen::ensure_topic(&kafka, &kafka.topic, 3).unwrap();
    let spec = LoadgenConfig {
        events: 6_000,
        seed: 3,
        duplicates_per_mille: 20,
        invalid_per_mille: 20,
        ..LoadgenConfig::default()
    };
    let truth = loadgen::produce(&kafka, &index, &spec).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let lake = DeltaLake::open_store(&usageflow_lake::StoreConfig::local(dir.path())).unwrap();
    let ingester = Ingester {
        kafka,
        config: IngestConfig { max_batch_events: 2_500, metrics_listen: String::new(), ..IngestConfig::default() },
        index,
        lake: lake.clone(),
        counters: Arc::new(Counters::default()),
    };
    // An idle period far shorter than a first group join on a new broker: the run must still
    // wait for its assignment and read everything.
    let rule = CaughtUp { idle: Duration::from_millis(300), assignment_timeout: Duration::from_secs(60) };
    ingester.run_until_caught_up(&AtomicBool::new(false), rule).unwrap();
    let c = &ingester.counters;
    assert_eq!(c.messages.load(Ordering::Relaxed), truth.messages);
    assert_eq!(c.accepted.load(Ordering::Relaxed), truth.valid);
    assert_eq!(c.rejected.load(Ordering::Relaxed), truth.rejected);
    assert_eq!(c.duplicates.load(Ordering::Relaxed), truth.duplicates);
    assert!(c.assignments.load(Ordering::Relaxed) >= 1);
    assert_eq!(c.transactions.load(Ordering::Relaxed), c.commits.load(Ordering::Relaxed));
}

#[test]
fn events_reach_the_lake_exactly_and_bad_ones_the_dead_letter_topic() {
    let kafka = support::kafka_config("ingest-e2e");
    let index = support::sample_index();
    loadgen::ensure_topic(&kafka, &kafka.topic, 4).unwrap();
    loadgen::ensure_topic(&kafka, &kafka.dead_letter_topic, 1).unwrap();
    let spec = LoadgenConfig {
        events: 30_000,
        seed: 7,
        duplicates_per_mille: 30,
        invalid_per_mille: 20,
        late_per_mille: 20,
        ..LoadgenConfig::default()
    };
    let truth = loadgen::produce(&kafka, &index, &spec).unwrap();
    assert!(truth.duplicates > 0 && truth.rejected > 0 && truth.valid > 25_000, "{truth:?}");

    let dir = tempfile::tempdir().unwrap();
    let lake = DeltaLake::open_store(&usageflow_lake::StoreConfig::local(dir.path())).unwrap();
    let config = IngestConfig { max_batch_events: 7_000, metrics_listen: String::new(), ..IngestConfig::default() };
    let ingester = Ingester {
        kafka: kafka.clone(),
        config,
        index: index.clone(),
        lake: lake.clone(),
        counters: Arc::new(Counters::default()),
    };
    ingest_until(&ingester, truth.messages);
    let c = &ingester.counters;
    assert_eq!(c.accepted.load(Ordering::Relaxed), truth.valid);
    assert_eq!(c.duplicates.load(Ordering::Relaxed), truth.duplicates);
    assert_eq!(c.rejected.load(Ordering::Relaxed), truth.rejected);
    // Every lake commit was followed by its Kafka transaction (dead letters and offsets).
    assert!(c.commits.load(Ordering::Relaxed) >= 4);
    assert_eq!(c.transactions.load(Ordering::Relaxed), c.commits.load(Ordering::Relaxed));

    let rt = tokio::runtime::Runtime::new().unwrap();
    let state = rt.block_on(lake.snapshot()).unwrap();
    let version = state.version();
    assert!(version.records >= Some(4) && version.events >= Some(4), "several batches, several commits: {version}");
    let totals = rt.block_on(usageflow_lake::tables::record_totals(lake.store(), &state)).unwrap();
    assert_eq!(totals.len(), truth.records.len());
    assert!(totals == truth.records, "lake totals differ from the generated truth");
    let all = truth.messages as i64;
    assert_eq!(support::lake_covered(&lake, &rt, &kafka, 4), (all, all), "both tables cover every message exactly");
    let events: u64 = state.files_of(usageflow_lake::Table::Events).map(|f| f.rows).sum();
    assert_eq!(events, truth.valid, "one raw event row per accepted event");

    let dead = support::read_topic(&kafka.bootstrap_servers, &kafka.dead_letter_topic);
    assert_eq!(dead.len() as u64, truth.rejected);
    let sources: std::collections::BTreeSet<_> = dead
        .iter()
        .map(|(_, _, h)| (h["usageflow-source-partition"].clone(), h["usageflow-source-offset"].clone()))
        .collect();
    assert_eq!(sources.len(), dead.len(), "no rejected event is published twice");
    for (_, _, h) in &dead {
        assert!(!h["usageflow-error-reason"].is_empty());
        assert_eq!(h["usageflow-source-topic"], kafka.topic);
        let code = h["usageflow-error-code"].as_str();
        assert!(
            [
                "malformed_json",
                "unknown_asset",
                "precision_exceeded",
                "negative_value",
                "unknown_product",
                "late_event"
            ]
            .contains(&code),
            "{code}"
        );
    }

    // Compaction folds the small files; two compactions racing on the same files: one wins.
    let records_files = state.files_of(usageflow_lake::Table::Records).count();
    let (a, b) = rt.block_on(async {
        let config = usageflow_lake::StoreConfig::local(dir.path());
        let (la, lb) = (DeltaLake::open_store(&config).unwrap(), DeltaLake::open_store(&config).unwrap());
        tokio::join!(usageflow_lake::compact::compact_records(&la, 2), usageflow_lake::compact::compact_records(&lb, 2))
    });
    let wins: Vec<_> = [&a, &b].into_iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(wins.len(), 1, "{a:?} {b:?}");
    assert!(wins[0].groups > 0 && wins[0].rows_after < wins[0].rows_before, "{:?}", wins[0]);
    let state = rt.block_on(lake.snapshot()).unwrap();
    let compacted_files = state.files_of(usageflow_lake::Table::Records).count();
    assert!(compacted_files < records_files, "{compacted_files} files after, {records_files} before");
    let totals = rt.block_on(usageflow_lake::tables::record_totals(lake.store(), &state)).unwrap();
    assert!(totals == truth.records, "compaction changed the totals");
    let (_, records_rows) =
        state.files_of(usageflow_lake::Table::Records).fold((0, 0), |(f, r), x| (f + 1, r + x.rows));
    assert_eq!(records_rows as usize, truth.records.len(), "one row per usage record after compaction");

    // The same events again (same ids): nothing is counted twice, the bad ones are rejected again.
    let again = loadgen::produce(&kafka, &index, &spec).unwrap();
    let ingester = Ingester {
        counters: Arc::new(Counters::default()),
        config: IngestConfig { workers: 3, ..ingester.config.clone() },
        ..ingester
    };
    ingest_until(&ingester, again.messages);
    assert_eq!(ingester.counters.accepted.load(Ordering::Relaxed), 0);
    assert_eq!(ingester.counters.duplicates.load(Ordering::Relaxed), again.valid + again.duplicates);
    let state = rt.block_on(lake.snapshot()).unwrap();
    let totals_after = rt.block_on(usageflow_lake::tables::record_totals(lake.store(), &state)).unwrap();
    assert!(totals_after == truth.records, "a replay changed the totals");
    let dead = support::read_topic(&kafka.bootstrap_servers, &kafka.dead_letter_topic);
    assert_eq!(dead.len() as u64, truth.rejected + again.rejected);
}

/// The same pipeline with the lake on the S3-compatible server.
#[test]
fn the_lake_works_on_s3() {
    let kafka = support::kafka_config("ingest-s3");
    let index = support::sample_index();
    loadgen::ensure_topic(&kafka, &kafka.topic, 2).unwrap();
    loadgen::ensure_topic(&kafka, &kafka.dead_letter_topic, 1).unwrap();
    let spec = LoadgenConfig { events: 6_000, seed: 8, ..LoadgenConfig::default() };
    let truth = loadgen::produce(&kafka, &index, &spec).unwrap();
    let lake = DeltaLake::open_store(&support::s3_store_config("ingest-lake")).unwrap();
    // One worker here; the test above runs one per CPU, then three for four partitions.
    let config =
        IngestConfig { max_batch_events: 2_000, workers: 1, metrics_listen: String::new(), ..IngestConfig::default() };
    let ingester = Ingester { kafka, config, index, lake: lake.clone(), counters: Arc::new(Counters::default()) };
    ingest_until(&ingester, truth.messages);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let state = rt.block_on(lake.snapshot()).unwrap();
    assert!(state.version().records >= Some(2));
    let totals = rt.block_on(usageflow_lake::tables::record_totals(lake.store(), &state)).unwrap();
    assert!(totals == truth.records, "lake totals on S3 differ from the generated truth");
}

/// Events rejected for a cause later fixed (here a quantity limit set too low) are sent back
/// from the dead-letter topic, as they first arrived, and then counted exactly once: a second
/// redrive only adds duplicates, and other dead letters stay where they are.
#[test]
fn dead_letters_sent_back_after_a_fix_are_counted_once() {
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::producer::{BaseRecord, Producer};
    use usageflow_ingest::deadletter;

    let kafka = support::kafka_config("dead-letters");
    loadgen::ensure_topic(&kafka, &kafka.topic, 2).unwrap();
    loadgen::ensure_topic(&kafka, &kafka.dead_letter_topic, 1).unwrap();
    let producer: rdkafka::producer::BaseProducer =
        kafka.client_config().set("enable.idempotence", "true").create().unwrap();
    let time = (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    let sent_at = chrono::Utc::now().timestamp_millis() - 60_000;
    for n in 0..3 {
        let json = format!(
            r#"{{"id":"big-{n}","product":"PRD-200-200-002","asset_id":"AS-1000-0719-1201","item_mpn":"FL-DATA-MB","quantity":"5000","time":"{time}"}}"#
        );
        let headers = OwnedHeaders::new().insert(Header { key: "trace", value: Some(b"t-1".as_slice()) });
        let record = BaseRecord::<str, str>::to(&kafka.topic)
            .key("AS-1000-0719-1201")
            .payload(&json)
            .headers(headers)
            .timestamp(sent_at);
        producer.send(record).map_err(|(e, _)| e).unwrap();
    }
    producer.send(BaseRecord::<str, str>::to(&kafka.topic).key("x").payload("{not json")).map_err(|(e, _)| e).unwrap();
    producer.flush(Duration::from_secs(30)).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let lake = DeltaLake::open_store(&usageflow_lake::StoreConfig::local(dir.path())).unwrap();
    let mut config = IngestConfig { metrics_listen: String::new(), ..IngestConfig::default() };
    config.validation.max_quantity = 1_000;
    let run = |config: &IngestConfig, messages: u64| {
        let ingester = Ingester {
            kafka: kafka.clone(),
            config: config.clone(),
            index: support::sample_index(),
            lake: lake.clone(),
            counters: Arc::new(Counters::default()),
        };
        ingest_until(&ingester, messages);
        let c = &ingester.counters;
        [&c.accepted, &c.rejected, &c.duplicates].map(|n| n.load(Ordering::Relaxed))
    };
    assert_eq!(run(&config, 4), [0, 4, 0]);
    let timeout = Duration::from_secs(60);
    let counts = deadletter::summary(&kafka, timeout).unwrap();
    assert_eq!(counts, [("absurd_value".to_owned(), 3), ("malformed_json".to_owned(), 1)].into());

    // The dead letters keep what the redrive needs: the original timestamp and headers.
    let mut letters = Vec::new();
    deadletter::read(&kafka, timeout, |l| letters.push(l)).unwrap();
    let big: Vec<_> = letters.iter().filter(|l| l.code == "absurd_value").collect();
    assert!(big.iter().all(|l| l.source_timestamp_ms == Some(sent_at)), "{big:?}");
    assert!(big.iter().all(|l| l.headers == [("trace".to_owned(), b"t-1".to_vec())]), "{big:?}");
    assert!(big[0].reason.contains("5000"), "{}", big[0].reason);

    // The limit is raised; the three are sent back, the malformed one is not.
    config.validation.max_quantity = IngestConfig::default().validation.max_quantity;
    let codes = ["absurd_value".to_owned()];
    let dry = deadletter::redrive(&kafka, &codes, true, timeout).unwrap();
    assert_eq!((dry.read, dry.sent.clone()), (4, [("absurd_value".to_owned(), 3)].into()));
    assert_eq!(deadletter::redrive(&kafka, &codes, false, timeout).unwrap(), dry);
    assert_eq!(run(&config, 3), [3, 0, 0]);
    // Sent back twice: duplicates, nothing counted again.
    deadletter::redrive(&kafka, &codes, false, timeout).unwrap();
    assert_eq!(run(&config, 3), [0, 0, 3]);

    // Sent back with their original Kafka timestamp: three originals, three copies each time.
    let stamps = topic_timestamps(&kafka.bootstrap_servers, &kafka.topic, "big-");
    assert_eq!(stamps, vec![sent_at; 9]);

    let rt = tokio::runtime::Runtime::new().unwrap();
    let state = rt.block_on(lake.snapshot()).unwrap();
    let totals = rt.block_on(usageflow_lake::tables::record_totals(lake.store(), &state)).unwrap();
    let quantity: i128 = totals.values().map(|t| t.quantity).sum();
    let events: i64 = totals.values().map(|t| t.event_count).sum();
    assert_eq!((quantity, events), (15_000 * 100_000_000, 3));
    assert_eq!(deadletter::summary(&kafka, timeout).unwrap().values().sum::<u64>(), 4, "nothing new was rejected");
}

/// The Kafka timestamps (ms) of the messages of `topic` whose payload contains `marker`.
fn topic_timestamps(bootstrap: &str, topic: &str, marker: &str) -> Vec<i64> {
    use rdkafka::message::Message;
    let mut stamps = Vec::new();
    support::for_each_message(bootstrap, topic, |m| {
        if String::from_utf8_lossy(m.payload().unwrap_or_default()).contains(marker) {
            stamps.push(m.timestamp().to_millis().unwrap_or(-1));
        }
    });
    stamps
}
