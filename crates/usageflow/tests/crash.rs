//! Exactly once under crashes, a broker restart and rebalances, against the real broker:
//! the `usageflow ingest` process is killed with SIGKILL at random points and restarted,
//! the broker is restarted once, and two instances share the partitions while one joins
//! and another dies mid-stream. Afterwards the lake's totals equal the generated truth
//! exactly, both Delta tables' positions cover every message once, and the dead-letter topic
//! holds exactly the rejected events, each once; on the local store and on the S3 server.

#[path = "../../../tests/support/mod.rs"]
mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use usageflow_ingest::KafkaConfig;
use usageflow_ingest::loadgen::{self, LoadgenConfig, Truth};
use usageflow_lake::{DeltaLake, StoreConfig};

fn root() -> PathBuf {
    Path::new(&std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo")).join("../..")
}

struct Instance<'a> {
    kafka: &'a KafkaConfig,
    lake: &'a StoreConfig,
    logs: &'a Path,
    id: &'a str,
    static_membership: bool,
}

impl Instance<'_> {
    fn spawn(&self, run: usize, args: &[&str]) -> Child {
        let log = std::fs::File::create(self.logs.join(format!("{}-{run}.log", self.id))).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_usageflow"));
        cmd.arg("ingest")
            .args(args)
            .env_remove("USAGEFLOW_CONFIG")
            .env("RUST_LOG", "info")
            .env("USAGEFLOW__KAFKA__BOOTSTRAP_SERVERS", &self.kafka.bootstrap_servers)
            .env("USAGEFLOW__KAFKA__TOPIC", &self.kafka.topic)
            .env("USAGEFLOW__KAFKA__DEAD_LETTER_TOPIC", &self.kafka.dead_letter_topic)
            .env("USAGEFLOW__KAFKA__GROUP_ID", &self.kafka.group_id)
            .env("USAGEFLOW__KAFKA__SESSION_TIMEOUT_MS", "6000")
            .env("USAGEFLOW__STORE__URL", &self.lake.url)
            .env("USAGEFLOW__STORE__S3__ENDPOINT", &self.lake.s3.endpoint)
            .env("USAGEFLOW__STORE__S3__ALLOW_HTTP", self.lake.s3.allow_http.to_string())
            .env("USAGEFLOW__STORE__S3__ACCESS_KEY_ID", &self.lake.s3.access_key_id)
            .env("USAGEFLOW__STORE__S3__SECRET_ACCESS_KEY", &self.lake.s3.secret_access_key)
            .env("USAGEFLOW__CATALOG__DIR", root().join("config/catalog"))
            .env("USAGEFLOW__INGEST__INSTANCE_ID", self.id)
            .env("USAGEFLOW__INGEST__MAX_BATCH_EVENTS", "3000")
            .env("USAGEFLOW__INGEST__FLUSH_INTERVAL_MS", "300")
            .env("USAGEFLOW__INGEST__METRICS_LISTEN", "")
            .env("USAGEFLOW__INGEST__RESTART_BACKOFF_MS", "500")
            .env("USAGEFLOW__INGEST__PROGRESS_INTERVAL_SECS", "2")
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        if self.static_membership {
            cmd.env("USAGEFLOW__KAFKA__GROUP_INSTANCE_ID", self.id);
        }
        cmd.spawn().unwrap()
    }
}

fn kill9(child: &mut Child) {
    let _ = child.kill(); // SIGKILL
    let _ = child.wait();
}

fn wait_exit(child: &mut Child, limit: Duration, logs: &Path) {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "ingester failed: {status}; logs in {}", logs.display());
            return;
        }
        if Instant::now() > deadline {
            kill9(child);
            panic!("ingester did not finish within {limit:?}; logs in {}", logs.display());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn verify(kafka: &KafkaConfig, lake: &StoreConfig, truth: &Truth, logs: &Path) {
    let lake = DeltaLake::open_store(lake).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let state = rt.block_on(lake.snapshot()).unwrap();
    let covered = support::lake_covered(&lake, &rt, kafka, 4);
    let all = truth.messages as i64;
    assert_eq!(covered, (all, all), "both tables cover every message once; logs in {}", logs.display());
    let totals = rt.block_on(usageflow_lake::tables::record_totals(lake.store(), &state)).unwrap();
    let missing = truth.records.keys().filter(|k| !totals.contains_key(k)).count();
    let wrong = truth.records.iter().filter(|(k, v)| totals.get(k).is_some_and(|t| t != *v)).count();
    let extra = totals.keys().filter(|k| !truth.records.contains_key(k)).count();
    assert!(
        missing == 0 && wrong == 0 && extra == 0,
        "lake totals differ: {missing} missing, {wrong} wrong, {extra} extra records; logs in {}",
        logs.display()
    );
    let dead = support::read_topic(&kafka.bootstrap_servers, &kafka.dead_letter_topic);
    let sources: BTreeSet<_> = dead
        .iter()
        .map(|(_, _, h)| (h["usageflow-source-partition"].clone(), h["usageflow-source-offset"].clone()))
        .collect();
    assert_eq!(sources.len(), dead.len(), "a rejected event was published twice");
    assert_eq!(dead.len() as u64, truth.rejected, "dead-letter topic; logs in {}", logs.display());
}

fn restart_broker() {
    let status =
        Command::new(root().join("deploy/kafka/kafka.sh")).arg("restart").stdout(Stdio::null()).status().unwrap();
    assert!(status.success(), "broker restart failed");
}

/// A small deterministic random source for kill times.
fn next(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

/// Fresh lakes for a run: directories that live as long as it, or prefixes on the S3 server.
enum Lakes {
    Local(Vec<tempfile::TempDir>),
    S3,
}

impl Lakes {
    fn fresh(&mut self) -> StoreConfig {
        match self {
            Lakes::Local(dirs) => {
                dirs.push(tempfile::tempdir().unwrap());
                StoreConfig::local(dirs.last().unwrap().path())
            }
            Lakes::S3 => support::s3_store_config("crash-lake"),
        }
    }
}

/// On the local store, then on the S3 server (one after the other: the broker restart of one
/// run must not land in the other).
#[test]
fn crashes_broker_restart_and_rebalances_keep_the_lake_exact() {
    crashes_broker_restart_and_rebalances(Lakes::Local(Vec::new()), "crash");
    crashes_broker_restart_and_rebalances(Lakes::S3, "crash-s3");
}

fn crashes_broker_restart_and_rebalances(mut lakes: Lakes, name: &str) {
    let index = support::sample_index();
    let logs = tempfile::Builder::new().prefix("usageflow-crash-logs-").tempdir().unwrap().keep();

    // Phase 1: one instance, killed with SIGKILL ten times; the broker restarts once.
    let kafka = support::kafka_config(name);
    loadgen::ensure_topic(&kafka, &kafka.topic, 4).unwrap();
    loadgen::ensure_topic(&kafka, &kafka.dead_letter_topic, 1).unwrap();
    let spec = LoadgenConfig {
        events: 150_000,
        rate: 8_000,
        seed: 11,
        duplicates_per_mille: 20,
        invalid_per_mille: 10,
        late_per_mille: 10,
        ..LoadgenConfig::default()
    };
    // Events keep arriving while the ingester is killed again and again.
    let producer = {
        let (kafka, index, spec) = (kafka.clone(), index.clone(), spec.clone());
        std::thread::spawn(move || loadgen::produce(&kafka, &index, &spec).unwrap())
    };
    let lake = lakes.fresh();
    let instance = Instance { kafka: &kafka, lake: &lake, logs: &logs, id: "crash-a", static_membership: true };
    let probe = DeltaLake::open_store(&lake).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut progress = Vec::new();
    let mut seed = 0x2545_F491_4F6C_DD1D_u64;
    for run in 0..10 {
        let mut child = instance.spawn(run, &[]);
        if run == 5 {
            std::thread::sleep(Duration::from_millis(1500));
            restart_broker();
        }
        std::thread::sleep(Duration::from_millis(800 + next(&mut seed) % 2200));
        kill9(&mut child);
        let (records, events) = support::lake_covered(&probe, &rt, &kafka, 4);
        assert!(events <= records, "events is never ahead of records: {events} > {records}");
        progress.push(records);
    }
    let truth = producer.join().unwrap();
    // The kills landed mid-stream: the lake advanced between them and was not done yet.
    assert!(progress.windows(2).all(|w| w[0] <= w[1]), "{progress:?}");
    let partial: BTreeSet<_> = progress.iter().filter(|&&c| c > 0 && (c as u64) < truth.messages).collect();
    assert!(partial.len() >= 3, "kills did not interrupt ingestion: {progress:?}");
    let mut last = instance.spawn(99, &["--idle-exit-secs", "4"]);
    wait_exit(&mut last, Duration::from_secs(240), &logs);
    verify(&kafka, &lake, &truth, &logs);

    // Phase 2: two instances in one group; the second joins mid-stream, the first dies.
    let kafka = support::kafka_config(&format!("{name}-rebalance"));
    loadgen::ensure_topic(&kafka, &kafka.topic, 4).unwrap();
    loadgen::ensure_topic(&kafka, &kafka.dead_letter_topic, 1).unwrap();
    let lake = lakes.fresh();
    let a = Instance { kafka: &kafka, lake: &lake, logs: &logs, id: "rb-a", static_membership: false };
    let b = Instance { kafka: &kafka, lake: &lake, logs: &logs, id: "rb-b", static_membership: false };
    let mut first = a.spawn(0, &[]);
    let spec = LoadgenConfig { events: 120_000, rate: 30_000, seed: 12, ..spec };
    let producer = {
        let (kafka, index, spec) = (kafka.clone(), index.clone(), spec.clone());
        std::thread::spawn(move || loadgen::produce(&kafka, &index, &spec).unwrap())
    };
    std::thread::sleep(Duration::from_millis(1500));
    // The survivor waits for the session of the dead instance to expire (6 s) and for the
    // broker to abort its open transaction (10 s) before it reads that instance's partitions,
    // so it must not give up as idle before then.
    let mut second = b.spawn(0, &["--idle-exit-secs", "40"]);
    std::thread::sleep(Duration::from_millis(2500));
    kill9(&mut first);
    let truth = producer.join().unwrap();
    wait_exit(&mut second, Duration::from_secs(240), &logs);
    verify(&kafka, &lake, &truth, &logs);
    let _ = std::fs::remove_dir_all(&logs);
}
