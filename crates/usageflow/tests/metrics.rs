//! `usageflow ingest` serves Prometheus metrics while it runs, against the real broker.

#[path = "../../../tests/support/mod.rs"]
mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use usageflow_ingest::loadgen::{self, LoadgenConfig};

fn scrape(addr: &str) -> Option<String> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(stream, "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").ok()?;
    let mut body = String::new();
    stream.read_to_string(&mut body).ok()?;
    Some(body)
}

#[test]
fn ingest_serves_prometheus_metrics() {
    let kafka = support::kafka_config("metrics");
    loadgen::ensure_topic(&kafka, &kafka.topic, 2).unwrap();
    let spec = LoadgenConfig { events: 5_000, invalid_per_mille: 50, ..LoadgenConfig::default() };
    let truth = loadgen::produce(&kafka, &support::sample_index(), &spec).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let lake = tempfile::tempdir().unwrap();
    let root = &format!("{}/../..", std::env::var("CARGO_MANIFEST_DIR").expect("run by cargo"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_usageflow"))
        .args(["ingest", "--idle-exit-secs", "6"])
        .env_remove("USAGEFLOW_CONFIG")
        .env("USAGEFLOW__KAFKA__BOOTSTRAP_SERVERS", &kafka.bootstrap_servers)
        .env("USAGEFLOW__KAFKA__TOPIC", &kafka.topic)
        .env("USAGEFLOW__KAFKA__DEAD_LETTER_TOPIC", &kafka.dead_letter_topic)
        .env("USAGEFLOW__KAFKA__GROUP_ID", &kafka.group_id)
        .env("USAGEFLOW__INGEST__INSTANCE_ID", support::unique("metrics"))
        .env("USAGEFLOW__INGEST__FLUSH_INTERVAL_MS", "200")
        .env("USAGEFLOW__INGEST__METRICS_LISTEN", &addr)
        .env("USAGEFLOW__STORE__URL", lake.path())
        .env("USAGEFLOW__CATALOG__DIR", format!("{root}/config/catalog"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = String::new();
    let mut seen = false;
    while Instant::now() < deadline && child.try_wait().unwrap().is_none() {
        if let Some(body) = scrape(&addr) {
            let want = format!("usageflow_events_in_total {}", truth.messages);
            let timed = ["usageflow_flush_duration_seconds_count", "usageflow_transaction_duration_seconds_count"];
            if body.contains(&want)
                && body.contains("usageflow_events_rejected_total{reason=")
                && body.contains("usageflow_lake_bytes_written_total{table=\"events\"}")
                && timed.iter().all(|t| body.contains(t))
            {
                seen = true;
                break;
            }
            last = body;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(seen, "metrics never showed all {} messages; last scrape:\n{last}", truth.messages);
}
