//! Shared helpers of the integration tests: where the local stack is.
//!
//! The stack (deploy/stack.sh up) runs a real Kafka broker and an S3-compatible server on
//! 127.0.0.1. Tests read their addresses from `USAGEFLOW_TEST_KAFKA_BOOTSTRAP` and
//! `USAGEFLOW_TEST_S3_ENDPOINT`, or from the files the stack scripts write. A test that needs
//! a service that is not running fails and says how to start it.
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

fn stack_file(parts: &[&str]) -> Option<String> {
    let dir = std::env::var_os("USAGEFLOW_STACK_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/usageflow/stack")))?;
    let path = parts.iter().fold(dir, |p, part| p.join(part));
    std::fs::read_to_string(path).ok().map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

/// Bootstrap address of the test Kafka broker.
pub fn kafka_bootstrap() -> String {
    std::env::var("USAGEFLOW_TEST_KAFKA_BOOTSTRAP").ok().or_else(|| stack_file(&["kafka", "bootstrap"])).expect(
        "no Kafka broker for the tests: run `deploy/stack.sh up` (or the README's test command), \
         or set USAGEFLOW_TEST_KAFKA_BOOTSTRAP",
    )
}

/// Endpoint URL of the test S3-compatible server.
pub fn s3_endpoint() -> String {
    std::env::var("USAGEFLOW_TEST_S3_ENDPOINT").ok().or_else(|| stack_file(&["s3", "endpoint"])).expect(
        "no S3-compatible server for the tests: run `deploy/stack.sh up` (or the README's test command), \
         or set USAGEFLOW_TEST_S3_ENDPOINT",
    )
}

/// A name no other test run uses: `prefix-<pid>-<nanos>`.
pub fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

/// A store config for a fresh prefix in the test bucket of the S3 server.
pub fn s3_store_config(prefix: &str) -> usageflow_lake::StoreConfig {
    usageflow_lake::StoreConfig {
        url: format!("s3://usageflow-test/{}", unique(prefix)),
        s3: usageflow_lake::S3Options {
            endpoint: s3_endpoint(),
            allow_http: true,
            access_key_id: "usageflow".to_owned(),
            secret_access_key: "usageflow-secret".to_owned(),
            ..usageflow_lake::S3Options::default()
        },
    }
}

/// A Kafka config for a fresh topic, dead-letter topic and group on the test broker.
pub fn kafka_config(prefix: &str) -> usageflow_ingest::KafkaConfig {
    let name = unique(prefix);
    usageflow_ingest::KafkaConfig {
        bootstrap_servers: kafka_bootstrap(),
        topic: name.clone(),
        dead_letter_topic: format!("{name}-dlq"),
        group_id: format!("{name}-group"),
        session_timeout_ms: 6_000,
        ..usageflow_ingest::KafkaConfig::default()
    }
}

/// The benchmarks' event mix: 0.5 % duplicates, 0.1 % invalid, 0.1 % late, 10 % in
/// CloudEvents envelopes.
pub fn bench_mix(events: u64) -> usageflow_ingest::loadgen::LoadgenConfig {
    usageflow_ingest::loadgen::LoadgenConfig {
        events,
        seed: 42,
        duplicates_per_mille: 5,
        invalid_per_mille: 1,
        late_per_mille: 1,
        cloudevents_per_mille: 100,
        ..usageflow_ingest::loadgen::LoadgenConfig::default()
    }
}

/// The sample catalogue, indexed for ingestion.
pub fn sample_index() -> std::sync::Arc<usageflow_ingest::Index> {
    let dir = std::path::Path::new(&std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo"))
        .ancestors()
        .map(|d| d.join("config/catalog"))
        .find(|d| d.join("catalog.toml").exists())
        .expect("config/catalog above the crate");
    let catalogue = usageflow_catalog::load_dir(&dir).unwrap();
    std::sync::Arc::new(usageflow_ingest::Index::new(catalogue.data()))
}

/// Every committed message of a topic (read_committed), as (partition, offset, headers).
pub fn read_topic(bootstrap: &str, topic: &str) -> Vec<(i32, i64, std::collections::BTreeMap<String, String>)> {
    use rdkafka::message::{Headers, Message};
    let mut out = Vec::new();
    for_each_message(bootstrap, topic, |m| {
        let mut headers = std::collections::BTreeMap::new();
        if let Some(h) = m.headers() {
            for i in 0..h.count() {
                let h = h.get(i);
                headers.insert(h.key.to_owned(), String::from_utf8_lossy(h.value.unwrap_or(&[])).into_owned());
            }
        }
        out.push((m.partition(), m.offset(), headers));
    });
    out
}

/// Calls `f` with every committed message of a topic (read_committed), to its end.
pub fn for_each_message(bootstrap: &str, topic: &str, mut f: impl FnMut(&rdkafka::message::BorrowedMessage<'_>)) {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    // Assigned, not subscribed: reading to the end needs no consumer group.
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "usageflow-test-reader")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        .create()
        .unwrap();
    consumer.assign(&whole_topic(&consumer, topic)).unwrap();
    let partitions = consumer.assignment().unwrap().count();
    if partitions == 0 {
        return;
    }
    let mut eof = std::collections::BTreeSet::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while eof.len() < partitions && std::time::Instant::now() < deadline {
        match consumer.poll(std::time::Duration::from_millis(200)) {
            Some(Ok(m)) => f(&m),
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                eof.insert(p);
            }
            _ => {}
        }
    }
    assert_eq!(eof.len(), partitions, "timed out reading {topic}");
}

/// Every partition of `topic` from its beginning, for `assign` (no consumer group needed).
pub fn whole_topic<C: rdkafka::consumer::ConsumerContext>(
    consumer: &rdkafka::consumer::BaseConsumer<C>,
    topic: &str,
) -> rdkafka::TopicPartitionList {
    use rdkafka::consumer::Consumer;
    let metadata = consumer.fetch_metadata(Some(topic), std::time::Duration::from_secs(30)).unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in metadata.topics().iter().filter(|t| t.name() == topic).flat_map(|t| t.partitions()) {
        tpl.add_partition_offset(topic, p.id(), rdkafka::Offset::Beginning).unwrap();
    }
    tpl
}

/// How far the lake's two tables have read `kafka`'s topic for its consumer group: the
/// positions of partitions `0..partitions` summed, `(records, events)`.
pub fn lake_covered(
    lake: &usageflow_lake::DeltaLake,
    rt: &tokio::runtime::Runtime,
    kafka: &usageflow_ingest::KafkaConfig,
    partitions: i32,
) -> (i64, i64) {
    let all: Vec<i32> = (0..partitions).collect();
    let sum = |table| {
        let at = rt.block_on(lake.positions(table, &kafka.group_id, &kafka.topic, &all)).unwrap();
        at.values().map(|p| p.unwrap_or(0)).sum::<i64>()
    };
    (sum(usageflow_lake::Table::Records), sum(usageflow_lake::Table::Events))
}

/// Sets back by `days` days the modification time of the files in the Delta log directory
/// `log` whose versions (the number their names start with) are in `versions`: commits and
/// checkpoints made that long ago, as the log retention sees them.
pub fn age_log_files(log: &std::path::Path, versions: impl std::ops::RangeBounds<u64>, days: u64) {
    let then = SystemTime::now() - std::time::Duration::from_secs(days * 86_400);
    for entry in std::fs::read_dir(log).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let version = name.split('.').next().and_then(|v| v.parse::<u64>().ok());
        if version.is_some_and(|v| versions.contains(&v)) {
            std::fs::File::options().write(true).open(&path).unwrap().set_modified(then).unwrap();
        }
    }
}
