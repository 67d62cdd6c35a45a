//! The long-running and data commands: ingest, loadgen, lake inspection.
#![allow(clippy::print_stdout)]

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use usageflow_ingest::loadgen::{self, LoadgenConfig};
use usageflow_ingest::{Counters, Index, Ingester};
use usageflow_lake::Table;

use crate::cli::LakeAction;
use crate::config::Config;
use crate::files::lake_of;

fn index(config: &Config) -> anyhow::Result<Arc<Index>> {
    let catalogue = usageflow_catalog::load_dir(&config.catalog.dir)?;
    Ok(Arc::new(Index::new(catalogue.data())))
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start the async runtime")
}

/// Completes on SIGINT or SIGTERM.
pub(crate) async fn stop_signal() {
    let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) else { return };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// The ingester's signals: SIGINT or SIGTERM set `shutdown` (and `stop`, which ends the
/// current run after flushing); SIGHUP sets `reload` (and `stop`), for a new run with the
/// catalogue read again.
fn ingest_signals(stop: Arc<AtomicBool>, shutdown: Arc<AtomicBool>, reload: Arc<AtomicBool>) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    std::thread::Builder::new().name("usageflow-signals".into()).spawn(move || {
        let Ok(rt) = runtime() else { return };
        rt.block_on(async {
            let Ok(mut hangup) = signal(SignalKind::hangup()) else { return };
            loop {
                tokio::select! {
                    () = stop_signal() => {
                        tracing::info!("stopping: flushing what was consumed");
                        shutdown.store(true, Ordering::Relaxed);
                        stop.store(true, Ordering::Relaxed);
                        return;
                    }
                    _ = hangup.recv() => {
                        tracing::info!("SIGHUP: flushing what was consumed, then reading the catalogue again");
                        reload.store(true, Ordering::Relaxed);
                        stop.store(true, Ordering::Relaxed);
                    }
                }
            }
        });
    })?;
    Ok(())
}

/// `usageflow ingest`.
pub fn ingest(config: &Config, idle_exit_secs: u64, assign_timeout_secs: u64) -> anyhow::Result<ExitCode> {
    if !config.ingest.metrics_listen.is_empty() {
        let addr: std::net::SocketAddr =
            config.ingest.metrics_listen.parse().context("ingest.metrics_listen is not host:port")?;
        metrics_exporter_prometheus::PrometheusBuilder::new()
            .with_http_listener(addr)
            .install()
            .with_context(|| format!("cannot serve metrics on {addr}"))?;
        tracing::info!(%addr, "metrics on http://{addr}/metrics");
    }
    let mut ingester = Ingester {
        kafka: config.kafka.clone(),
        config: config.ingest.clone(),
        index: index(config)?,
        lake: lake_of(config)?,
        counters: Arc::new(Counters::default()),
    };
    // Best effort: the ingester reports an unreachable broker itself, and retries.
    let dead_letter = &config.kafka.dead_letter_topic;
    if let Err(err) = loadgen::ensure_topic_within(&config.kafka, dead_letter, 1, Duration::from_secs(5)) {
        tracing::warn!(%err, topic = %dead_letter, "could not make sure the dead-letter topic exists");
    }
    let stop = Arc::new(AtomicBool::new(false));
    let shutdown = Arc::new(AtomicBool::new(false));
    let reload = Arc::new(AtomicBool::new(false));
    ingest_signals(stop.clone(), shutdown.clone(), reload.clone())?;
    let until = (idle_exit_secs > 0).then(|| usageflow_ingest::CaughtUp {
        idle: Duration::from_secs(idle_exit_secs),
        assignment_timeout: Duration::from_secs(assign_timeout_secs.max(1)),
    });
    let started = Instant::now();
    let outcome = loop {
        let outcome = match until {
            Some(rule) => ingester.run_until_caught_up(&stop, rule),
            None => ingester.run(&stop),
        };
        if shutdown.load(Ordering::Relaxed) || !reload.swap(false, Ordering::Relaxed) {
            break outcome;
        }
        // SIGHUP: the run ended after committing what it had consumed; the next one starts
        // from there with the catalogue as it is now (or, if it no longer loads, as it was).
        match index(config) {
            Ok(index) => {
                tracing::info!(products = index.products.len(), assets = index.assets.len(), "catalogue reloaded");
                ingester.index = index;
            }
            Err(err) => tracing::error!(err = %format!("{err:#}"), "catalogue reload failed; keeping the previous one"),
        }
        stop.store(shutdown.load(Ordering::Relaxed), Ordering::Relaxed);
    };
    let c = &ingester.counters;
    let messages = c.messages.load(Ordering::Relaxed);
    println!(
        "ingested {messages} messages in {:.1} s: {} accepted, {} rejected, {} duplicates, {} replayed, {} lake commits",
        started.elapsed().as_secs_f64(),
        c.accepted.load(Ordering::Relaxed),
        c.rejected.load(Ordering::Relaxed),
        c.duplicates.load(Ordering::Relaxed),
        c.replayed.load(Ordering::Relaxed),
        c.commits.load(Ordering::Relaxed),
    );
    if let Err(err) = outcome {
        if err.is_fatal() {
            return Err(err.into());
        }
        return Err(anyhow::Error::new(err)
            .context("the ingester stopped while failing; the next run resumes from the committed state"));
    }
    if messages == 0 {
        nothing_ingested(config, &ingester)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// A run that read nothing: an error if the topic holds messages that the lake has no
/// position for (the run never read the topic it was given), so that a batch run or a demo
/// does not report an empty success.
fn nothing_ingested(config: &Config, ingester: &Ingester) -> anyhow::Result<()> {
    let topic = &config.kafka.topic;
    let ends = match usageflow_ingest::topic_ends_of(&config.kafka, topic, Duration::from_secs(10)) {
        Ok(ends) => ends,
        Err(err) => {
            tracing::warn!(err = %format!("{err:#}"), "could not read the topic's end offsets");
            return Ok(());
        }
    };
    if ends.messages() == 0 {
        return Ok(());
    }
    let rt = runtime()?;
    let partitions: Vec<i32> = ends.partitions.iter().map(|(p, _, _)| *p).collect();
    let group = &config.kafka.group_id;
    let positions = rt.block_on(ingester.lake.positions(Table::Records, group, topic, &partitions))?;
    if positions.values().any(Option::is_some) {
        // The lake has read this topic before: nothing new is a normal outcome.
        return Ok(());
    }
    anyhow::bail!(
        "nothing was ingested, yet topic `{topic}` holds {} message(s) (low-high offsets per partition: {ends}) and the \
         lake at {} has no position for it: consumer group `{}` either did not get the topic's partitions (see the \
         log above and the broker's), or has read them into another lake (a new lake needs a new group id)",
        ends.messages(),
        config.store.url,
        config.kafka.group_id,
    )
}

/// `usageflow loadgen`.
pub fn loadgen(
    config: &Config,
    spec: &LoadgenConfig,
    partitions: i32,
    truth_out: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let index = index(config)?;
    loadgen::ensure_topic(&config.kafka, &config.kafka.topic, partitions)
        .with_context(|| format!("cannot create topic {}", config.kafka.topic))?;
    let started = Instant::now();
    let truth = loadgen::produce(&config.kafka, &index, spec)?;
    let millis = started.elapsed().as_millis().max(1);
    println!(
        "produced {} messages to {} in {}.{:03} s ({}/s): {} valid, {} duplicates, {} to be rejected, {} usage records",
        truth.messages,
        config.kafka.topic,
        millis / 1000,
        millis % 1000,
        u128::from(truth.messages) * 1000 / millis,
        truth.valid,
        truth.duplicates,
        truth.rejected,
        truth.records.len()
    );
    if let Some(path) = truth_out {
        let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
        for (key, totals) in &truth.records {
            writeln!(out, "{}", totals_json(key, totals))?;
        }
        out.flush()?;
    }
    Ok(ExitCode::SUCCESS)
}

fn totals_json(key: &usageflow_lake::tables::RecordKey, t: &usageflow_lake::tables::RecordTotals) -> serde_json::Value {
    serde_json::json!({
        "product_id": key.product_id,
        "contract_id": key.contract_id,
        "asset_id": key.asset_id,
        "item_mpn": key.item_mpn,
        "tier": key.tier,
        "category_id": key.category_id,
        "period_start": chrono::DateTime::<chrono::Utc>::from_timestamp_micros(key.period_start).map(|t| t.to_rfc3339()),
        "quantity": usageflow_ingest::fixed::format(t.quantity),
        "amount": t.amount.map(usageflow_ingest::fixed::format),
        "event_count": t.event_count,
    })
}

/// `usageflow lake ...`.
/// Table properties as `key=value` pairs, space-separated.
fn show_properties(properties: &std::collections::BTreeMap<String, String>) -> String {
    properties.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ")
}

pub fn lake(config: &Config, action: LakeAction) -> anyhow::Result<ExitCode> {
    let lake = lake_of(config)?;
    let rt = runtime()?;
    match action {
        LakeAction::Compact { min_files } => {
            let report = rt.block_on(usageflow_lake::compact::compact_records(&lake, min_files))?;
            println!(
                "compacted {} product-month group(s): {} files with {} rows into {} rows",
                report.groups, report.files_removed, report.rows_before, report.rows_after
            );
        }
        LakeAction::Status => {
            let state = rt.block_on(lake.snapshot())?;
            println!("lake {}: {}", config.store.url, state.version());
            let topic = &config.kafka.topic;
            for table in Table::ALL {
                let (files, rows, bytes) = state
                    .files_of(table)
                    .fold((0u64, 0u64, 0u64), |(f, r, b), file| (f + 1, r + file.rows, b + file.size));
                println!("  {table}: {files} files, {rows} rows, {bytes} bytes");
                let properties = rt.block_on(lake.table_properties(table))?;
                let differs = if properties == lake.settings().properties() {
                    ""
                } else {
                    " (not the [lake] settings: `usageflow lake configure` applies them)"
                };
                let shown = if properties.is_empty() { "none".to_owned() } else { show_properties(&properties) };
                println!("    properties: {shown}{differs}");
                // The partitions the files name, and any below them.
                let highest = state.files_of(table).filter_map(|f| f.kafka_partition()).max();
                let partitions: Vec<i32> = highest.map_or_else(Vec::new, |h| (0..=h).collect());
                let positions = rt.block_on(lake.positions(table, &config.kafka.group_id, topic, &partitions))?;
                let list: Vec<String> = positions.iter().filter_map(|(p, o)| o.map(|o| format!("{p}:{o}"))).collect();
                if !list.is_empty() {
                    println!("    {topic} next offsets for group {}: {}", config.kafka.group_id, list.join(" "));
                }
            }
        }
        LakeAction::History { table, limit } => {
            let table = match table.as_str() {
                "records" => Table::Records,
                "events" => Table::Events,
                other => anyhow::bail!("no lake table `{other}`: the tables are `records` and `events`"),
            };
            let mut out = std::io::stdout().lock();
            for entry in rt.block_on(lake.history(table, Some(limit)))? {
                let when = entry
                    .timestamp
                    .and_then(chrono::DateTime::<chrono::Utc>::from_timestamp_millis)
                    .map_or_else(String::new, |t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
                writeln!(
                    out,
                    "{:>8}  {when:24}  {:14}  {:8}  +{} -{}",
                    entry.version,
                    entry.operation.as_deref().unwrap_or("-"),
                    entry.usageflow_operation.as_deref().unwrap_or("-"),
                    entry.files_added.unwrap_or(0),
                    entry.files_removed.unwrap_or(0),
                )?;
            }
        }
        LakeAction::Vacuum { retention_hours, dry_run } => {
            let retention = chrono::Duration::hours(i64::try_from(retention_hours).unwrap_or(i64::MAX / 3_600_000));
            for table in Table::ALL {
                let files = rt.block_on(lake.vacuum(table, retention, dry_run))?;
                let verb = if dry_run { "would delete" } else { "deleted" };
                println!("{table}: {verb} {} file(s)", files.len());
                for f in files {
                    println!("  {f}");
                }
            }
        }
        LakeAction::Configure => {
            let wanted = show_properties(&lake.settings().properties());
            for table in Table::ALL {
                match rt.block_on(lake.configure(table))? {
                    Some(version) => println!("{table}: set {wanted} (version {version})"),
                    None => println!("{table}: already has {wanted}"),
                }
            }
        }
        LakeAction::Totals => {
            let state = rt.block_on(lake.snapshot())?;
            let totals = rt.block_on(usageflow_lake::tables::record_totals(lake.store(), &state))?;
            let mut out = std::io::stdout().lock();
            for (key, t) in &totals {
                writeln!(out, "{}", totals_json(key, t))?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
