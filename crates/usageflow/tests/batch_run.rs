//! `usageflow ingest --idle-exit-secs`: a batch run against the real broker stops once it has
//! caught up with the topic, never before its first assignment, and says what went wrong
//! when it could not read the topic.

#[path = "../../../tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use usageflow_ingest::KafkaConfig;
use usageflow_ingest::loadgen::{self, LoadgenConfig};

fn ingest(kafka: &KafkaConfig, lake: &Path, args: &[&str]) -> Output {
    let root = &format!("{}/../..", std::env::var("CARGO_MANIFEST_DIR").expect("run by cargo"));
    Command::new(env!("CARGO_BIN_EXE_usageflow"))
        .arg("ingest")
        .args(args)
        .env_remove("USAGEFLOW_CONFIG")
        .env_remove("RUST_LOG")
        .env("USAGEFLOW__KAFKA__BOOTSTRAP_SERVERS", &kafka.bootstrap_servers)
        .env("USAGEFLOW__KAFKA__TOPIC", &kafka.topic)
        .env("USAGEFLOW__KAFKA__DEAD_LETTER_TOPIC", &kafka.dead_letter_topic)
        .env("USAGEFLOW__KAFKA__GROUP_ID", &kafka.group_id)
        .env("USAGEFLOW__INGEST__INSTANCE_ID", support::unique("batch"))
        .env("USAGEFLOW__INGEST__METRICS_LISTEN", "")
        .env("USAGEFLOW__STORE__URL", lake)
        .env("USAGEFLOW__CATALOG__DIR", format!("{root}/config/catalog"))
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The first run reads every message and stops by itself with exact counts; a second run of
/// the same group into the same lake finds nothing new and stops too, successfully.
#[test]
fn a_batch_run_reads_the_whole_topic_then_stops() {
    let kafka = support::kafka_config("batch-run");
    loadgen::ensure_topic(&kafka, &kafka.topic, 3).unwrap();
    let spec = LoadgenConfig { events: 4_000, seed: 11, invalid_per_mille: 20, ..LoadgenConfig::default() };
    let truth = loadgen::produce(&kafka, &support::sample_index(), &spec).unwrap();
    let lake = tempfile::tempdir().unwrap();

    let out = ingest(&kafka, lake.path(), &["--idle-exit-secs", "1"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let summary = text(&out.stdout);
    let expected = format!("ingested {} messages in", truth.messages);
    assert!(summary.contains(&expected), "{summary}");
    assert!(
        summary.contains(&format!(
            ": {} accepted, {} rejected, {} duplicates",
            truth.valid, truth.rejected, truth.duplicates
        )),
        "{summary}"
    );

    let out = ingest(&kafka, lake.path(), &["--idle-exit-secs", "1"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("ingested 0 messages"), "{}", text(&out.stdout));
}

/// A topic that does not exist is never assigned: the run fails once its wait for an
/// assignment is over, naming the topic.
#[test]
fn a_batch_run_on_a_missing_topic_fails_naming_it() {
    let kafka = support::kafka_config("batch-missing");
    let lake = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let out = ingest(&kafka, lake.path(), &["--idle-exit-secs", "1", "--assign-timeout-secs", "4"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains(&format!("no partition of topic `{}` was assigned", kafka.topic)), "{err}");
    assert!(err.contains("the topic does not exist"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(60), "took {:?}", started.elapsed());
}

/// A group that has already read the topic, pointed at a new lake, reads nothing: that is
/// reported as an error naming the topic and its offsets, not as an empty success.
#[test]
fn reading_nothing_from_a_topic_the_lake_has_never_seen_is_an_error() {
    let kafka = support::kafka_config("batch-other-lake");
    loadgen::ensure_topic(&kafka, &kafka.topic, 2).unwrap();
    let spec = LoadgenConfig { events: 1_000, seed: 5, ..LoadgenConfig::default() };
    let truth = loadgen::produce(&kafka, &support::sample_index(), &spec).unwrap();
    let first = tempfile::tempdir().unwrap();
    let out = ingest(&kafka, first.path(), &["--idle-exit-secs", "1"]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    let second = tempfile::tempdir().unwrap();
    let out = ingest(&kafka, second.path(), &["--idle-exit-secs", "1"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("ingested 0 messages"), "{}", text(&out.stdout));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!("nothing was ingested, yet topic `{}` holds {} message(s)", kafka.topic, truth.messages)),
        "{err}"
    );
    assert!(err.contains("low-high offsets per partition: 0:0-") && err.contains(" 1:0-"), "{err}");
    assert!(err.contains(&kafka.group_id), "{err}");
}
