//! `usageflow ingest` reads the catalogue again on SIGHUP, against the real broker: events for
//! an asset the catalogue does not have yet are dead-lettered; once the asset is added and the
//! process is sent SIGHUP, the next events for it are accepted, with nothing counted twice.

#[path = "../../../tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use usageflow_ingest::loadgen;

const ASSET: &str = "AS-1000-0719-1201";

fn produce(kafka: &usageflow_ingest::KafkaConfig, from: usize, to: usize) {
    let producer: BaseProducer = kafka.client_config().create().unwrap();
    let time = (chrono::Utc::now() - chrono::Duration::minutes(10)).to_rfc3339();
    for n in from..to {
        let json = format!(
            r#"{{"id":"r-{n}","product":"PRD-200-200-002","asset_id":"{ASSET}","item_mpn":"FL-DATA-MB","quantity":"2","time":"{time}"}}"#
        );
        producer.send(BaseRecord::<str, str>::to(&kafka.topic).key(ASSET).payload(&json)).map_err(|(e, _)| e).unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

#[test]
fn sighup_reads_the_catalogue_again() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let kafka = support::kafka_config("reload");
    loadgen::ensure_topic(&kafka, &kafka.topic, 2).unwrap();
    loadgen::ensure_topic(&kafka, &kafka.dead_letter_topic, 1).unwrap();
    // A catalogue without the asset.
    let dir = tempfile::tempdir().unwrap();
    let catalog = dir.path().join("catalog");
    copy_dir(&root.join("config/catalog"), &catalog);
    let assets = std::fs::read_to_string(catalog.join("assets.csv")).unwrap();
    let without: String = assets.lines().filter(|l| !l.starts_with(ASSET)).map(|l| format!("{l}\n")).collect();
    assert!(without.len() < assets.len());
    std::fs::write(catalog.join("assets.csv"), &without).unwrap();

    produce(&kafka, 0, 3);
    let mut child = Command::new(env!("CARGO_BIN_EXE_usageflow"))
        .args(["--config", root.join("config/usageflow.toml").to_str().unwrap(), "ingest", "--idle-exit-secs", "8"])
        .env_remove("USAGEFLOW_CONFIG")
        .env("RUST_LOG", "info")
        .env("USAGEFLOW__KAFKA__BOOTSTRAP_SERVERS", &kafka.bootstrap_servers)
        .env("USAGEFLOW__KAFKA__TOPIC", &kafka.topic)
        .env("USAGEFLOW__KAFKA__DEAD_LETTER_TOPIC", &kafka.dead_letter_topic)
        .env("USAGEFLOW__KAFKA__GROUP_ID", &kafka.group_id)
        .env("USAGEFLOW__STORE__URL", dir.path().join("lake"))
        .env("USAGEFLOW__CATALOG__DIR", &catalog)
        .env("USAGEFLOW__INGEST__INSTANCE_ID", support::unique("reload"))
        .env("USAGEFLOW__INGEST__FLUSH_INTERVAL_MS", "300")
        .env("USAGEFLOW__INGEST__METRICS_LISTEN", "")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The log, line by line, as the ingester writes it.
    let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
    let stderr = child.stderr.take().unwrap();
    let logger = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut all = String::new();
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line.clone());
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    // The three are rejected (and committed) under the old catalogue.
    let deadline = Instant::now() + Duration::from_secs(60);
    while support::read_topic(&kafka.bootstrap_servers, &kafka.dead_letter_topic).len() < 3 {
        assert!(Instant::now() < deadline, "the first events were not dead-lettered");
        std::thread::sleep(Duration::from_millis(300));
    }
    // The asset is added; SIGHUP; once the catalogue is read again, three more events for it
    // (events arriving before that are validated by the run that is finishing).
    std::fs::write(catalog.join("assets.csv"), &assets).unwrap();
    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
    loop {
        let line = lines.recv_timeout(Duration::from_secs(60)).expect("no \"catalogue reloaded\" in the log");
        if line.contains("catalogue reloaded") {
            break;
        }
    }
    produce(&kafka, 3, 6);
    let deadline = Instant::now() + Duration::from_secs(90);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the ingester did not stop");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = child.wait_with_output().unwrap();
    let stderr = logger.join().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("ingested 6 messages") && stdout.contains(": 3 accepted, 3 rejected, 0 duplicates"),
        "{stdout}"
    );
    assert_eq!(support::read_topic(&kafka.bootstrap_servers, &kafka.dead_letter_topic).len(), 3);
}
