//! End-to-end ingestion benchmark against the real local broker.
//!
//! 1. produces `USAGEFLOW_BENCH_EVENTS` (default 10,000,000) generated metering events
//!    (0.5 % duplicates, 0.1 % invalid, 0.1 % late, 10 % CloudEvents) to a new 4-partition topic;
//! 2. the ceiling: bare consumers read the whole topic and only count messages, one with a
//!    `BaseConsumer::poll` per message, one reading batches from a fetch queue as the ingester
//!    does (`usageflow_ingest::fetch`); the faster is the ceiling;
//! 3. the ingester (in a child process, so its peak memory is its own) consumes the same topic
//!    into a fresh local lake: decode, validate, de-duplicate, aggregate, Parquet, commits,
//!    dead-letter transaction;
//! 4. checks that the lake's totals equal the generated truth.
//!
//! Rates are messages per second from the first message received to the last one consumed
//! (bare) or to the last lake commit (ingester). Run: `deploy/stack.sh up && cargo bench --bench ingest_e2e`.
#![allow(clippy::print_stdout, clippy::float_arithmetic)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use usageflow_ingest::fetch::FetchQueue;
use usageflow_ingest::loadgen;
use usageflow_ingest::{Counters, IngestConfig, Ingester, KafkaConfig};
use usageflow_lake::DeltaLake;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn kafka_for(topic: &str) -> KafkaConfig {
    KafkaConfig {
        bootstrap_servers: support::kafka_bootstrap(),
        topic: topic.to_owned(),
        dead_letter_topic: format!("{topic}-dlq"),
        group_id: format!("{topic}-ingest"),
        ..KafkaConfig::default()
    }
}

/// CPU time in seconds, at one instant or between two: the whole machine's (from
/// `/proc/stat`: busy, and the part of it stolen by the hypervisor for other guests) and this
/// process's (user + system).
#[derive(Debug, Clone, Copy)]
struct CpuSnap {
    busy: f64,
    steal: f64,
    process: f64,
}

fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

fn cpu_snap() -> CpuSnap {
    let ticks = clock_ticks();
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    // cpu  user nice system idle iowait irq softirq steal guest guest_nice
    let f: Vec<f64> =
        stat.lines().next().unwrap_or_default().split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
    let at = |i: usize| f.get(i).copied().unwrap_or(0.0);
    let own = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name: state is the first, utime the 12th, stime the 13th.
    let after: Vec<f64> = own
        .rsplit_once(") ")
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .map(|v| v.parse().unwrap_or(0.0))
        .collect();
    CpuSnap {
        busy: (at(0) + at(1) + at(2) + at(5) + at(6) + at(7)) / ticks,
        steal: at(7) / ticks,
        process: (after.get(11).copied().unwrap_or(0.0) + after.get(12).copied().unwrap_or(0.0)) / ticks,
    }
}

/// A point of a timed phase: the clock and the CPU counters, read together.
#[derive(Debug, Clone, Copy)]
struct Mark {
    at: Instant,
    cpu: CpuSnap,
}

impl Mark {
    fn now() -> Self {
        Mark { at: Instant::now(), cpu: cpu_snap() }
    }

    /// Seconds and core-seconds from this mark to a later one.
    fn until(self, to: Mark) -> (f64, CpuSnap) {
        let cpu = CpuSnap {
            busy: to.cpu.busy - self.cpu.busy,
            steal: to.cpu.steal - self.cpu.steal,
            process: to.cpu.process - self.cpu.process,
        };
        (to.at.duration_since(self.at).as_secs_f64(), cpu)
    }
}

/// One line of CPU accounting for a timed phase: core-seconds, the share of the machine's
/// cores kept busy, and nanoseconds of CPU per event: the process's (librdkafka's threads
/// included) and everything else's (the broker, the rest of the machine).
fn print_cpu(events: u64, seconds: f64, CpuSnap { busy, steal, process }: CpuSnap) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let per = |s: f64| s * 1e9 / events.max(1) as f64;
    println!(
        "               cpu: machine {busy:.2} core-s busy ({:.0} % of {cores:.0} cores; steal {steal:.2}), process {process:.2}, other {:.2}; per event {:.0} ns process + {:.0} ns other",
        100.0 * busy / (seconds * cores),
        busy - process,
        per(process),
        per(busy - process),
    );
}

fn peak_rss_mib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kib| kib / 1024)
}

/// The ingester phase, run in a child process.
fn ingest_phase() {
    let topic = std::env::var("USAGEFLOW_BENCH_TOPIC").unwrap();
    let lake = std::env::var("USAGEFLOW_BENCH_LAKE").unwrap();
    let events = env_u64("USAGEFLOW_BENCH_EVENTS", 0);
    let lake = DeltaLake::open_store(&usageflow_lake::StoreConfig::local(&lake)).unwrap();
    let mut kafka = kafka_for(&topic);
    if let Ok(group) = std::env::var("USAGEFLOW_BENCH_GROUP") {
        kafka.group_id = group;
    }
    for pair in std::env::var("USAGEFLOW_BENCH_KAFKA").unwrap_or_default().split(',').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').expect("USAGEFLOW_BENCH_KAFKA: key=value,...");
        kafka.properties.insert(k.to_owned(), v.to_owned());
    }
    let ingester = Ingester {
        kafka,
        config: IngestConfig {
            metrics_listen: String::new(),
            max_batch_events: env_u64("USAGEFLOW_BENCH_BATCH", 1_000_000) as usize,
            max_batch_bytes: env_u64("USAGEFLOW_BENCH_BATCH_BYTES", 128 << 20) as usize,
            instance_id: "bench".into(),
            workers: env_u64("USAGEFLOW_BENCH_WORKERS", 0) as usize,
            progress_interval_secs: 5,
            ..IngestConfig::default()
        },
        index: support::sample_index(),
        lake,
        counters: Arc::new(Counters::default()),
    };
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicBool::new(false));
    // Times the run from the first message polled to the last batch fully committed (the lake
    // commit and then the Kafka transaction with its offsets), which is what the throughput
    // is about; closing the consumer afterwards (leaving the group) is timed apart.
    let watcher = {
        let (stop, done, counters) = (stop.clone(), done.clone(), ingester.counters.clone());
        std::thread::spawn(move || {
            let mut first = None;
            while counters.messages.load(Ordering::Relaxed) < events {
                if first.is_none() && counters.messages.load(Ordering::Relaxed) > 0 {
                    first = Some(Mark::now());
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            let first = first.unwrap_or_else(Mark::now);
            stop.store(true, Ordering::Relaxed);
            let (mut seen, mut committed) = (counters.transactions.load(Ordering::Relaxed), Mark::now());
            while !done.load(Ordering::Relaxed) {
                let now = counters.transactions.load(Ordering::Relaxed);
                if now != seen {
                    (seen, committed) = (now, Mark::now());
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            (first, committed)
        })
    };
    ingester.run(&stop).expect("the bench's settings are valid");
    let end = Instant::now();
    done.store(true, Ordering::Relaxed);
    let (first, committed) = watcher.join().unwrap();
    let (seconds, CpuSnap { busy, steal, process }) = first.until(committed);
    let to_exit = end.duration_since(first.at).as_secs_f64();
    let c = &ingester.counters;
    println!(
        "RESULT {} {seconds:.3} {} {} {} {} {} {} {to_exit:.3} {busy:.3} {steal:.3} {process:.3} {:.3}",
        c.messages.load(Ordering::Relaxed),
        peak_rss_mib(),
        c.accepted.load(Ordering::Relaxed),
        c.rejected.load(Ordering::Relaxed),
        c.duplicates.load(Ordering::Relaxed),
        c.commits.load(Ordering::Relaxed),
        ingester.config.worker_count(),
        c.commit_micros.load(Ordering::Relaxed) as f64 / 1e6,
    );
}

/// A consumer with the ingester's fetch settings, in a group of its own.
fn bare_config(kafka: &KafkaConfig, group: &str) -> rdkafka::ClientConfig {
    let mut config = rdkafka::ClientConfig::new();
    config
        .set("bootstrap.servers", &kafka.bootstrap_servers)
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("fetch.max.bytes", "67108864")
        .set("max.partition.fetch.bytes", "8388608")
        .set("queued.max.messages.kbytes", "131072")
        .set("queued.min.messages", "500000")
        .set("fetch.queue.backoff.ms", "10")
        .set("fetch.min.bytes", "1048576")
        .set("fetch.wait.max.ms", "50");
    config
}

/// The bare consumer, one `poll` per message.
fn bare_consumer(kafka: &KafkaConfig, events: u64) -> (f64, u64, CpuSnap) {
    let consumer: BaseConsumer = bare_config(kafka, &format!("{}-bare", kafka.topic)).create().unwrap();
    consumer.subscribe(&[&kafka.topic]).unwrap();
    let (mut n, mut bytes, mut first) = (0u64, 0u64, None);
    while n < events {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            first.get_or_insert_with(Mark::now);
            n += 1;
            bytes += rdkafka::Message::payload(&m).map_or(0, |p| p.len() as u64);
        }
    }
    let (seconds, cpu) = first.expect("a message was read").until(Mark::now());
    (seconds, bytes, cpu)
}

/// The bare consumer reading batches from a fetch queue, as the ingester does: all partitions
/// assigned from the start, routed to the queue before the assignment.
fn bare_batched(kafka: &KafkaConfig, events: u64) -> (f64, u64, CpuSnap) {
    let consumer: BaseConsumer = bare_config(kafka, &format!("{}-bare-batch", kafka.topic)).create().unwrap();
    let metadata = consumer.fetch_metadata(Some(&kafka.topic), Duration::from_secs(10)).unwrap();
    let partitions: Vec<i32> = metadata.topics()[0].partitions().iter().map(|p| p.id()).collect();
    let mut fetch = FetchQueue::new(&consumer).unwrap();
    fetch.router().forward(&kafka.topic, &partitions);
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in &partitions {
        tpl.add_partition_offset(&kafka.topic, *p, rdkafka::Offset::Beginning).unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let (mut n, mut bytes, mut first) = (0u64, 0u64, None);
    while n < events {
        let _ = consumer.poll(Duration::ZERO);
        fetch.consume(Duration::from_millis(100), |m| {
            if m.error().is_none() {
                first.get_or_insert_with(Mark::now);
                n += 1;
                bytes += m.payload().len() as u64;
            }
        });
    }
    let (seconds, cpu) = first.expect("a message was read").until(Mark::now());
    (seconds, bytes, cpu)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("ingest_e2e: benchmark");
        return;
    }
    if std::env::var("USAGEFLOW_BENCH_PHASE").as_deref() == Ok("ingest") {
        ingest_phase();
        return;
    }
    let events = env_u64("USAGEFLOW_BENCH_EVENTS", 10_000_000);
    let topic = support::unique("bench");
    let kafka = kafka_for(&topic);
    let index = support::sample_index();
    loadgen::ensure_topic(&kafka, &topic, 4).unwrap();
    loadgen::ensure_topic(&kafka, &kafka.dead_letter_topic, 1).unwrap();
    println!(
        "# ingest_e2e: {events} events, topic {topic}, 4 partitions, {} CPUs",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    let spec = support::bench_mix(events);
    let started = Instant::now();
    let truth = loadgen::produce(&kafka, &index, &spec).unwrap();
    let produce_s = started.elapsed().as_secs_f64();
    println!("produce        {events:>10} msgs {produce_s:>8.2} s {:>12.0} msg/s", events as f64 / produce_s);

    // Two bare consumers; the faster one is the ceiling.
    let mut bare_rate: f64 = 0.0;
    for (name, (bare_s, bytes, cpu)) in
        [("bare poll", bare_consumer(&kafka, events)), ("bare batch", bare_batched(&kafka, events))]
    {
        let rate = events as f64 / bare_s;
        bare_rate = bare_rate.max(rate);
        println!(
            "{name:<14} {events:>10} msgs {bare_s:>8.2} s {rate:>12.0} msg/s  ({:.0} MB/s, {} B/msg avg)",
            bytes as f64 / bare_s / 1e6,
            bytes / events.max(1)
        );
        print_cpu(events, bare_s, cpu);
    }

    // One ingester run per worker count (`USAGEFLOW_BENCH_WORKERS`, e.g. "1,2"; default: one
    // per CPU), each in its own consumer group and into a fresh lake.
    let workers = std::env::var("USAGEFLOW_BENCH_WORKERS").unwrap_or_else(|_| "0".into());
    for (run, n) in workers.split(',').map(|w| w.trim().parse::<usize>().unwrap()).enumerate() {
        let lake = tempfile::tempdir().unwrap();
        let out = Command::new(std::env::current_exe().unwrap())
            .env("USAGEFLOW_BENCH_PHASE", "ingest")
            .env("USAGEFLOW_BENCH_TOPIC", &topic)
            .env("USAGEFLOW_BENCH_GROUP", format!("{topic}-ingest-{run}"))
            .env("USAGEFLOW_BENCH_WORKERS", n.to_string())
            .env("USAGEFLOW_BENCH_LAKE", lake.path())
            .env("USAGEFLOW_BENCH_EVENTS", events.to_string())
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let result = stdout
            .lines()
            .find_map(|l| l.strip_prefix("RESULT "))
            .unwrap_or_else(|| panic!("ingest phase failed: {}\n{}", stdout, String::from_utf8_lossy(&out.stderr)));
        let f: Vec<f64> = result.split_whitespace().map(|v| v.parse().unwrap()).collect();
        let (ingest_s, rss, to_exit) = (f[1], f[2], f[8]);
        let rate = events as f64 / ingest_s;
        println!(
            "ingester w={:<2}  {events:>10} msgs {ingest_s:>8.2} s {rate:>12.0} msg/s  ({:.0} % of bare, peak RSS {rss:.0} MiB, {} lake commits; {to_exit:.2} s to exit, {:.0} msg/s)",
            f[7],
            100.0 * rate / bare_rate,
            f[6],
            events as f64 / to_exit
        );
        println!("               accepted {} rejected {} duplicates {}", f[3], f[4], f[5]);
        let batches = f[6].max(1.0);
        println!(
            "               lake commits (records + events) {:.1} ms per batch, {:.1} % of the ingest time",
            1000.0 * f[12] / batches,
            100.0 * f[12] / ingest_s
        );
        print_cpu(events, ingest_s, CpuSnap { busy: f[9], steal: f[10], process: f[11] });

        let lake = DeltaLake::open_store(&usageflow_lake::StoreConfig::local(lake.path())).unwrap();
        let rt = tokio::runtime::Runtime::new().unwrap();
        let state = rt.block_on(lake.snapshot()).unwrap();
        let totals = rt.block_on(usageflow_lake::tables::record_totals(lake.store(), &state)).unwrap();
        assert!(totals == truth.records, "lake totals differ from the generated truth");
        assert_eq!(f[3] as u64, truth.valid);
        println!("verified: {} usage records equal the generated truth", totals.len());
    }
}
