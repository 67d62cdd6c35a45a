//! What a table's history costs a reader and a writer: snapshot load and commit latency of a
//! lake table with 10, 10,000 and 100,000 commits.
//!
//! ```sh
//! cargo bench --bench lake_log            # 10, 10000, 100000 commits, and 100000/10000
//! USAGEFLOW_BENCH_COMMITS=10,1000,1000/100 cargo bench --bench lake_log
//! ```
//!
//! For each size, a fresh `records` table on the local store gets ten data files in its first
//! commit and then position-only commits (each a `txn` for one of four partitions, as an
//! ingester's batches make), written straight into `_delta_log/` so that building a table of
//! 100,000 commits takes seconds, with a Parquet checkpoint every 100 versions made by
//! `deltalake-core` as the tables' `delta.checkpointInterval` says. The history grows; the
//! live state does not, so the figures show what the log's length costs. A size `N/W` is a
//! table of `N` commits of which all but the last `W` are older than the log retention
//! (their files' times set back 60 days) and were deleted by the log cleanup a checkpoint
//! runs: what the history costs once the retention bounds the log. Then:
//!
//! * **snapshot load**: a new `DeltaLake` opens the table (the last checkpoint, then the
//!   commits after it), 20 times;
//! * **commit**: a writer that took the partitions over commits 50 times, each an `add` and a
//!   `txn` (Delta's conflict check, the create-if-absent write, and every 100th version the
//!   checkpoint the commit triggers).
//!
//! Printed: p50 and p99 of each, in milliseconds.
#![allow(clippy::print_stdout, clippy::float_arithmetic)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Instant;

use usageflow_lake::{DeltaLake, Table, TableCommit, TableFile};

const GROUP: &str = "bench";
const TOPIC: &str = "usage-events";
const INTERVAL: u64 = 100;

fn percentile(samples: &mut [f64], p: f64) -> f64 {
    samples.sort_by(f64::total_cmp);
    let i = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[i]
}

fn add_action(name: &str, now: i64) -> String {
    format!(
        r#"{{"add":{{"path":"product=PRD-1/month=2026-11/{name}.parquet","partitionValues":{{"product":"PRD-1","month":"2026-11"}},"size":1000,"modificationTime":{now},"dataChange":true,"stats":"{{\"numRecords\":1}}"}}}}"#
    )
}

/// Writes commits `from..=to` into the table's log: the first adds ten files, the others
/// advance one partition each.
fn write_commits(log: &std::path::Path, from: u64, to: u64) {
    let now = chrono::Utc::now().timestamp_millis();
    for v in from..=to {
        let mut body = format!(
            r#"{{"commitInfo":{{"timestamp":{now},"operation":"WRITE","operationParameters":{{"mode":"Append"}},"usageflow.operation":"ingest"}}}}"#
        );
        body.push('\n');
        if v == 1 {
            for i in 0..10 {
                body.push_str(&add_action(&format!("seed-{i}"), now));
                body.push('\n');
            }
        }
        let partition = v % 4;
        body.push_str(&format!(
            r#"{{"txn":{{"appId":"usageflow:{GROUP}:{TOPIC}:{partition}","version":{},"lastUpdated":{now}}}}}"#,
            v * 1000
        ));
        body.push('\n');
        std::fs::write(log.join(format!("{v:020}.json")), body).unwrap();
    }
}

async fn build(dir: &std::path::Path, commits: u64, window: Option<u64>) -> DeltaLake {
    let lake =
        DeltaLake::open_store(&usageflow_lake::StoreConfig::local(dir)).unwrap().with_checkpoint_interval(INTERVAL);
    let mut table = lake.open(Table::Records).await.unwrap();
    let log = dir.join("lake/records/_delta_log");
    let mut done = 0;
    while done < commits {
        // Up to the next checkpoint version, then its checkpoint, as commits would have made it.
        let to = (done + INTERVAL - done % INTERVAL).min(commits);
        write_commits(&log, done + 1, to);
        if to.is_multiple_of(INTERVAL) {
            table.update_incremental(Some(to as _)).await.unwrap();
            deltalake_core::checkpoints::create_checkpoint(&table, None).await.unwrap();
        }
        done = to;
    }
    if let Some(window) = window {
        // The log cleanup a checkpoint runs (the lake's commits run it after each checkpoint).
        support::age_log_files(&log, ..commits.saturating_sub(window), 60);
        table.update_incremental(None).await.unwrap();
        deltalake_core::protocol::checkpoints::cleanup_metadata(&table, None).await.unwrap();
    }
    lake
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let sizes = std::env::var("USAGEFLOW_BENCH_COMMITS").unwrap_or_else(|_| "10,10000,100000,100000/10000".into());
    println!(
        "{:>13}  {:>9}  {:>11} {:>11}  {:>11} {:>11}  {:>8}",
        "commits", "log files", "load p50", "load p99", "commit p50", "commit p99", "build"
    );
    for size in sizes.split(',').map(str::trim) {
        let (commits, window) = match size.split_once('/') {
            Some((n, w)) => (n.parse::<u64>().unwrap(), Some(w.parse::<u64>().unwrap())),
            None => (size.parse::<u64>().unwrap(), None),
        };
        let dir = tempfile::tempdir().unwrap();
        let started = Instant::now();
        build(dir.path(), commits, window).await;
        let built = started.elapsed().as_secs_f64();
        let log_files = std::fs::read_dir(dir.path().join("lake/records/_delta_log")).unwrap().count();

        let config = usageflow_lake::StoreConfig::local(dir.path());
        let mut loads = Vec::new();
        for _ in 0..20 {
            let t = Instant::now();
            let lake = DeltaLake::open_store(&config).unwrap();
            let table = lake.open(Table::Records).await.unwrap();
            loads.push(t.elapsed().as_secs_f64() * 1000.0);
            assert_eq!(table.version(), Some(commits as _));
        }

        let lake = DeltaLake::open_store(&config).unwrap().with_checkpoint_interval(INTERVAL);
        let partitions = [0, 1, 2, 3];
        let mut at = lake.positions(Table::Records, GROUP, TOPIC, &partitions).await.unwrap();
        let mut commit_ms = Vec::new();
        for n in 0..50u64 {
            let partition = (n % 4) as i32;
            let from = at[&partition];
            let next = from.unwrap_or(0) + 1_000_000;
            let file = TableFile {
                table: Table::Records,
                path: format!("product=PRD-1/month=2026-11/bench-{n}.parquet"),
                partition_values: BTreeMap::from([
                    ("product".to_owned(), "PRD-1".to_owned()),
                    ("month".to_owned(), "2026-11".to_owned()),
                ]),
                size: 1000,
                rows: 1,
                stats: Some(r#"{"numRecords":1}"#.to_owned()),
            };
            let request = TableCommit {
                operation: "ingest".into(),
                group: GROUP.into(),
                advance: BTreeMap::from([(TOPIC.to_owned(), BTreeMap::from([(partition, (from, next))]))]),
                add: vec![file],
                remove: vec![],
                claims: vec![],
            };
            let t = Instant::now();
            lake.commit(Table::Records, &request).await.unwrap();
            commit_ms.push(t.elapsed().as_secs_f64() * 1000.0);
            at.insert(partition, Some(next));
        }
        println!(
            "{size:>13}  {log_files:>9}  {:>9.2}ms {:>9.2}ms  {:>9.2}ms {:>9.2}ms  {built:>7.1}s",
            percentile(&mut loads, 0.5),
            percentile(&mut loads, 0.99),
            percentile(&mut commit_ms, 0.5),
            percentile(&mut commit_ms, 0.99),
        );
        std::io::stdout().flush().unwrap();
    }
}
