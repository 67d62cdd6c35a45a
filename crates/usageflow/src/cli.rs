//! Command-line interface.
#![allow(clippy::print_stdout)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::{Parser, Subcommand};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStoreExt, PutPayload};

use crate::config::{self, Config, LogFormat};

/// Usageflow carries usage (metering) data from the vendors who produce it to the
/// distributors who bill it: Kafka events in, exact per-period usage records in a
/// Parquet lake, Connect-format usage files, billing exports and SQL out.
#[derive(Debug, Parser)]
#[command(name = "usageflow", version, propagate_version = true, max_term_width = 100)]
pub struct Cli {
    /// Configuration file(s), applied in order over the compiled-in defaults
    /// (see config/usageflow.toml for every key). Environment variables
    /// USAGEFLOW__SECTION__KEY and --set come after the files.
    #[arg(long, short = 'c', global = true, env = "USAGEFLOW_CONFIG", value_delimiter = ',', value_name = "FILE")]
    pub config: Vec<PathBuf>,

    /// Override one configuration key, e.g. --set kafka.topic=events (repeatable; applied last).
    #[arg(long = "set", global = true, value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,

    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show or check the effective configuration (defaults, files, environment, flags).
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Inspect the product catalogue (catalog.dir): products, items, contracts, assets.
    Catalog {
        #[command(subcommand)]
        action: CatalogAction,
    },
    /// Consume metering events from Kafka into the lake, exactly once, until SIGINT/SIGTERM.
    /// Rejected events go to the dead-letter topic with their reason; duplicates are dropped.
    Ingest {
        /// Stop once caught up: every assigned partition at its end and no new message for
        /// this many seconds, counted from the first assignment (for batch runs and tests);
        /// 0 = run until stopped.
        #[arg(long, default_value_t = 0)]
        idle_exit_secs: u64,
        /// With --idle-exit-secs: fail (exit 1, naming the topic and its offsets) if no
        /// partition is assigned within this many seconds of the start.
        #[arg(long, default_value_t = 120)]
        assign_timeout_secs: u64,
    },
    /// The dead-letter topic: rejected events per error code, and sending them back to the
    /// events topic once the cause is fixed (e.g. an asset added to the catalogue).
    DeadLetters {
        #[command(subcommand)]
        action: DeadLetterAction,
    },
    /// Produce a realistic stream of metering events to the Kafka topic (load generator).
    Loadgen {
        /// Messages to produce.
        #[arg(long, default_value_t = 100_000)]
        events: u64,
        /// Target messages per second; 0 = as fast as possible.
        #[arg(long, default_value_t = 0)]
        rate: u64,
        /// Random seed; the same seed gives the same stream.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Share of duplicate messages, per mille.
        #[arg(long, default_value_t = 10)]
        duplicates_per_mille: u32,
        /// Share of invalid messages, per mille.
        #[arg(long, default_value_t = 5)]
        invalid_per_mille: u32,
        /// Share of five-day-old (late) messages, per mille.
        #[arg(long, default_value_t = 5)]
        late_per_mille: u32,
        /// Partitions to create the topic with, if it does not exist.
        #[arg(long, default_value_t = 4)]
        partitions: i32,
        /// Write the expected per-record totals (ground truth) as JSON lines to this file.
        #[arg(long)]
        truth: Option<PathBuf>,
    },
    /// Usage files: create, upload (validate, processed file), submit, review, close, inspect.
    Files {
        #[command(subcommand)]
        action: FilesAction,
    },
    /// Inspect the lake: committed version, Kafka positions, files, per-record totals.
    Lake {
        #[command(subcommand)]
        action: LakeAction,
    },
    /// Run SQL over the lake, the usage files and the catalogue (read-only). Without a query,
    /// an interactive shell reads statements ending in `;` (`\d` lists the tables).
    Sql {
        /// The query; omit it for the shell.
        query: Option<String>,
        /// table, csv, json or parquet.
        #[arg(long, default_value = "table")]
        format: String,
        /// Write the result to this file instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Whose rows to show: all, vendor:ID, provider:ID or reseller:ID.
        #[arg(long, default_value = "all")]
        scope: String,
        /// Read the lake as it was: a version of `records` (a number), or a time
        /// (2026-12-01T00:00:00Z) or date.
        #[arg(long)]
        as_of: Option<String>,
    },
    /// Export the accepted records of a period for a billing system (CSV, Parquet or XLSX).
    ExportBilling {
        /// Files whose period starts on or after this day (YYYY-MM-DD).
        #[arg(long)]
        from: Option<chrono::NaiveDate>,
        /// Files whose period ends on or before this day.
        #[arg(long)]
        to: Option<chrono::NaiveDate>,
        /// Only this hub.
        #[arg(long)]
        hub: Option<String>,
        /// Only this marketplace.
        #[arg(long)]
        marketplace: Option<String>,
        /// Only this product.
        #[arg(long)]
        product: Option<String>,
        /// Whose records: provider:ID (a distributor), or all.
        #[arg(long, default_value = "all")]
        scope: String,
        /// csv, parquet or xlsx.
        #[arg(long, default_value = "csv")]
        format: String,
        /// Output file.
        #[arg(long)]
        out: PathBuf,
    },
    /// Reconcile a billing system's lines (CSV or Parquet) with the accepted records; with
    /// --close, close the matched records with their billing ids.
    Reconcile {
        /// The billing lines: record_id or asset_id+item_id+period, billed_quantity,
        /// billed_amount, external_billing_id.
        #[arg(long)]
        billing: PathBuf,
        /// Files whose period starts on or after this day.
        #[arg(long)]
        from: Option<chrono::NaiveDate>,
        /// Files whose period ends on or before this day.
        #[arg(long)]
        to: Option<chrono::NaiveDate>,
        /// The distributor reconciling (provider:ID); its records only.
        #[arg(long)]
        scope: String,
        /// Close the matched records with their external billing id.
        #[arg(long)]
        close: bool,
        /// table, csv, json or parquet for the report.
        #[arg(long, default_value = "table")]
        format: String,
        /// Write the report to this file.
        #[arg(long)]
        out: Option<PathBuf>,
        /// The lake version the billing lines were exported from (the export's
        /// `lake_records_version`, or a time): the lake is read as of it, and records missing
        /// from the billing in files created after it are `reported_after_billing`.
        #[arg(long)]
        as_of: Option<String>,
    },
    /// Serve the HTTP API (the Connect usage API under /public/v1, plus event ingestion) until
    /// SIGINT/SIGTERM, then finish the requests in flight.
    Serve {
        /// Override `api.listen` (`host:port`).
        #[arg(long)]
        listen: Option<String>,
    },
    /// API keys of the HTTP API (stored as SHA-256 digests in `api.keys_file`).
    ApiKey {
        #[command(subcommand)]
        action: ApiKeyAction,
    },
    /// Check that the configured Kafka cluster and object store answer: fetches the
    /// cluster's metadata and writes, reads and deletes a probe object.
    Doctor {
        /// How long to wait for each service.
        #[arg(long, default_value_t = 10)]
        timeout_secs: u64,
    },
}

/// `usageflow api-key ...`
#[derive(Debug, Subcommand)]
pub enum ApiKeyAction {
    /// Create a key for an account; the key is printed once, only its digest is kept.
    Add {
        /// The account the key acts for (`VA-…`, `PA-…`, reseller `RA-…`).
        #[arg(long)]
        account: String,
        /// The account's role: vendor, provider or reseller.
        #[arg(long)]
        role: String,
        /// What the key is for.
        #[arg(long, default_value = "")]
        name: String,
    },
    /// List the keys (ids, accounts, roles; never secrets).
    List,
}

/// `usageflow catalog ...`
#[derive(Debug, Subcommand)]
pub enum CatalogAction {
    /// Load the catalogue, check every reference, and print what it holds.
    Check,
    /// Check whether a usage file may be created for a product under a distribution contract.
    Prerequisites {
        /// Product id (PRD-…).
        #[arg(long)]
        product: String,
        /// Distribution contract id (CRD-…).
        #[arg(long)]
        contract: String,
    },
}

/// What a usage file covers: a product under a distribution contract, for a period.
#[derive(Debug, clap::Args)]
pub struct FileScopeArgs {
    /// Product id.
    #[arg(long)]
    pub product: String,
    /// Distribution contract id.
    #[arg(long)]
    pub contract: String,
    /// First day of the period (YYYY-MM-DD).
    #[arg(long)]
    pub from: chrono::NaiveDate,
    /// Last day of the period (YYYY-MM-DD).
    #[arg(long)]
    pub to: chrono::NaiveDate,
}

/// `usageflow files ...`. Vendor steps act as the file's vendor, provider steps as its provider.
#[derive(Debug, Subcommand)]
pub enum FilesAction {
    /// Create a usage file (draft) for a product under a distribution contract and a period.
    Create {
        #[command(flatten)]
        scope: FileScopeArgs,
        /// Vendor's reference; creating again with it returns the same file.
        #[arg(long, default_value = "")]
        external_id: String,
        /// Description.
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Compile the lake's committed usage records of a product, contract and period into a
    /// usage file (one per period) and process it like an upload.
    Compile {
        #[command(flatten)]
        scope: FileScopeArgs,
    },
    /// Upload a Connect-format XLSX: it is validated and the file becomes ready or invalid.
    Upload {
        /// File id (UF-…).
        id: String,
        /// The workbook.
        path: PathBuf,
        /// Write the processed workbook (rows with status and error) here.
        #[arg(long)]
        processed: Option<PathBuf>,
    },
    /// Export a file's records (its last uploaded workbook) as xlsx, csv or parquet.
    Export {
        /// File id (UF-…).
        id: String,
        /// Output format.
        #[arg(long, value_parser = ["xlsx", "csv", "parquet"], default_value = "csv")]
        format: String,
        /// Output path.
        #[arg(long)]
        out: PathBuf,
    },
    /// Submit a ready file to the provider (vendor); the provider's usage rules then accept
    /// it, reject it, or leave it pending.
    Submit { id: String },
    /// Set a provider's usage rules for a product from a JSON array of rules
    /// (id, product_id, account_id, item, action, scope, rule, status, gravity, created_at).
    SetRules {
        /// Product id.
        #[arg(long)]
        product: String,
        /// The JSON file.
        path: PathBuf,
    },
    /// Show a provider's usage rules for a product.
    Rules {
        /// Product id.
        #[arg(long)]
        product: String,
        /// Provider account id.
        #[arg(long)]
        provider: String,
    },
    /// Accept a pending file (provider); its chunks (one per hub) are generated.
    Accept {
        id: String,
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Reject a pending file with the reason (provider).
    Reject {
        id: String,
        #[arg(long)]
        note: String,
    },
    /// Approve every record of a pending file before accepting it (provider).
    ApproveAll { id: String },
    /// Close an accepted file (provider).
    Close { id: String },
    /// Delete a draft, invalid, ready or rejected file (vendor).
    Delete { id: String },
    /// Regenerate the processed output of an accepted or closed file (provider).
    Reprocess { id: String },
    /// The chunks of an accepted file (one per hub), for bulk billing export.
    Chunks { id: String },
    /// Close a ready chunk with the billing batch id (provider).
    ChunkClose {
        /// Chunk id (UFC-…).
        chunk: String,
        /// The billing system's batch id.
        #[arg(long)]
        billing_id: String,
        /// Note.
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Generate a ready or failed chunk again (provider).
    ChunkRegenerate { chunk: String },
    /// Show a file as JSON.
    Show { id: String },
    /// The file's audit trail: every step, who and when.
    History { id: String },
    /// List every file: id, status, schema, period, product, records.
    List,
}

/// `usageflow lake ...`
#[derive(Debug, Subcommand)]
pub enum LakeAction {
    /// Each table's latest version, Kafka positions, live files and rows.
    Status,
    /// A table's commits, newest first.
    History {
        /// `records` or `events`.
        #[arg(long, default_value = "records")]
        table: String,
        /// At most this many commits.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Delete the data files no version younger than the retention needs (replaced by
    /// compaction, or never committed).
    Vacuum {
        /// Keep what versions of the last this many hours need (at least 168).
        #[arg(long, default_value_t = 168)]
        retention_hours: u64,
        /// Only list what would be deleted.
        #[arg(long)]
        dry_run: bool,
    },
    /// Give both tables the `[lake]` settings (checkpoint interval, log retention): tables
    /// take them when created, and keep their own until this runs. A metadata commit per table
    /// whose properties differ.
    Configure,
    /// Per-record totals (sum of all committed deltas) as JSON lines.
    Totals,
    /// Fold the small records files of each product and month into one file: a Delta
    /// OPTIMIZE commit (atomic; safe while ingesting).
    Compact {
        /// Only groups with at least this many files.
        #[arg(long, default_value_t = 8)]
        min_files: usize,
    },
}

/// `usageflow dead-letters ...`
#[derive(Debug, Subcommand)]
pub enum DeadLetterAction {
    /// Count the dead-letter messages per error code.
    Summary {
        /// Give up reading the topic after this many seconds.
        #[arg(long, default_value_t = 60)]
        timeout_secs: u64,
    },
    /// Send the dead-letter messages with the given error codes back to the events topic, as
    /// they first arrived (key, payload, headers, Kafka timestamp), to be validated again;
    /// events already accepted are dropped as duplicates.
    Redrive {
        /// Error code to send back (repeatable), e.g. `unknown_asset`.
        #[arg(long = "code", required_unless_present = "all")]
        codes: Vec<String>,
        /// Send back every dead-letter message, whatever its code.
        #[arg(long, conflicts_with = "codes")]
        all: bool,
        /// Only count what would be sent back.
        #[arg(long)]
        dry_run: bool,
        /// Give up reading the topic after this many seconds.
        #[arg(long, default_value_t = 60)]
        timeout_secs: u64,
    },
}

/// `usageflow config ...`
#[derive(Debug, Subcommand)]
pub enum ConfigAction {
    /// Print the effective configuration as TOML (secrets shown as ***).
    Show,
    /// Load the configuration and report the first problem, if any; exit 0 when valid.
    Check,
}

/// Runs the parsed command line; prints errors with their causes.
pub fn run(cli: Cli) -> ExitCode {
    let config = match config::load(&cli.config, std::env::vars(), &cli.overrides) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::from(2);
        }
    };
    init_tracing(&config);
    match dispatch(cli.command, config) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {}", causes(&err));
            ExitCode::FAILURE
        }
    }
}

/// `usageflow dead-letters`.
fn dead_letters(config: &Config, action: DeadLetterAction) -> anyhow::Result<ExitCode> {
    use usageflow_ingest::deadletter;
    let topic = &config.kafka.dead_letter_topic;
    match action {
        DeadLetterAction::Summary { timeout_secs } => {
            let counts = deadletter::summary(&config.kafka, Duration::from_secs(timeout_secs))?;
            println!("{} dead-letter message(s) in {topic}", counts.values().sum::<u64>());
            for (code, n) in counts {
                println!("{n:>10}  {code}");
            }
        }
        DeadLetterAction::Redrive { codes, all: _, dry_run, timeout_secs } => {
            let done = deadletter::redrive(&config.kafka, &codes, dry_run, Duration::from_secs(timeout_secs))?;
            let verb = if dry_run { "would send" } else { "sent" };
            let total: u64 = done.sent.values().sum();
            println!(
                "read {} dead-letter message(s) in {topic}; {verb} {total} back to {}",
                done.read, config.kafka.topic
            );
            for (code, n) in done.sent {
                println!("{n:>10}  {code}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// An error and its causes on one line, leaving out a cause whose text the line already
/// holds (many errors repeat their source in their own message).
fn causes(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

/// Libraries whose `info` events are their own internals (the Delta kernel logs every snapshot
/// it builds): at `warn` unless the filter names them.
const QUIET_TARGETS: &[&str] = &["buoyant_kernel", "buoyant_kernel_engine", "deltalake_core"];

/// `filter` with [`QUIET_TARGETS`] at `warn`, except those it names itself.
fn with_quiet_libraries(filter: &str) -> String {
    let mut out = filter.trim().to_owned();
    let named = |target: &str| filter.split(',').any(|d| d.split(['=', '[']).next().map(str::trim) == Some(target));
    for target in QUIET_TARGETS.iter().filter(|t| !named(t)) {
        if !out.is_empty() {
            out.push(',');
        }
        out.push_str(target);
        out.push_str("=warn");
    }
    out
}

fn init_tracing(config: &Config) {
    use tracing_subscriber::EnvFilter;
    let parse = |text: &str| EnvFilter::try_new(with_quiet_libraries(text)).ok();
    let filter = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .and_then(|v| parse(&v))
        .or_else(|| parse(&config.log.level))
        .unwrap_or_else(|| EnvFilter::new(with_quiet_libraries("info")));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match config.log.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

fn dispatch(command: Command, config: Config) -> anyhow::Result<ExitCode> {
    match command {
        Command::Config { action: ConfigAction::Show } => {
            print!("{}", config::to_redacted_toml(&config));
            Ok(ExitCode::SUCCESS)
        }
        Command::Config { action: ConfigAction::Check } => {
            println!("configuration is valid");
            Ok(ExitCode::SUCCESS)
        }
        Command::Doctor { timeout_secs } => doctor(&config, Duration::from_secs(timeout_secs)),
        Command::Catalog { action } => catalog(&config, action),
        Command::Ingest { idle_exit_secs, assign_timeout_secs } => {
            crate::run::ingest(&config, idle_exit_secs, assign_timeout_secs)
        }
        Command::DeadLetters { action } => dead_letters(&config, action),
        Command::Loadgen {
            events,
            rate,
            seed,
            duplicates_per_mille,
            invalid_per_mille,
            late_per_mille,
            partitions,
            truth,
        } => {
            let spec = usageflow_ingest::loadgen::LoadgenConfig {
                events,
                rate,
                seed,
                duplicates_per_mille,
                invalid_per_mille,
                late_per_mille,
                ..Default::default()
            };
            crate::run::loadgen(&config, &spec, partitions, truth.as_deref())
        }
        Command::Lake { action } => crate::run::lake(&config, action),
        Command::Files { action } => crate::files::run(&config, action),
        Command::Sql { query, format, out, scope, as_of } => {
            crate::sql::sql(&config, query, &format, out, &scope, as_of.as_deref())
        }
        Command::ExportBilling { from, to, hub, marketplace, product, scope, format, out } => {
            crate::sql::export_billing(
                &config,
                usageflow_query::billing::Selection { from, to, hub, marketplace, product },
                &scope,
                &format,
                &out,
            )
        }
        Command::Reconcile { billing, from, to, scope, close, format, out, as_of } => crate::sql::reconcile(
            &config,
            &billing,
            usageflow_query::billing::Selection { from, to, ..Default::default() },
            &scope,
            crate::sql::ReconcileOptions { close, format: &format, out, as_of: as_of.as_deref() },
        ),
        Command::Serve { listen } => crate::serve::serve(&config, listen),
        Command::ApiKey { action } => crate::serve::api_key(&config, action),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the async runtime")
}

fn doctor(config: &Config, timeout: Duration) -> anyhow::Result<ExitCode> {
    let mut healthy = true;
    match usageflow_ingest::probe_cluster(&config.kafka, timeout) {
        Ok(info) => {
            println!("kafka   ok   {} broker(s): {}", info.brokers.len(), info.brokers.join(", "));
            let topic = info.topics.iter().find(|(name, _)| *name == config.kafka.topic);
            match topic {
                Some((name, partitions)) => println!("kafka   ok   topic {name}: {partitions} partition(s)"),
                None => println!("kafka   note topic {} does not exist yet", config.kafka.topic),
            }
        }
        Err(err) => {
            healthy = false;
            println!("kafka   FAIL {err}");
        }
    }
    let store_check = runtime()?.block_on(async {
        let store = usageflow_lake::open_store(&config.store)?;
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default();
        let probe = ObjectPath::from(format!("_doctor/probe-{}-{nanos}", std::process::id()));
        let body = format!("usageflow doctor {nanos}");
        tokio::time::timeout(timeout, async {
            store.put(&probe, PutPayload::from(body.clone())).await.context("write")?;
            let read = store.get(&probe).await.context("read")?.bytes().await.context("read")?;
            anyhow::ensure!(read == body.as_bytes(), "read back different bytes than were written");
            store.delete(&probe).await.context("delete")?;
            Ok(())
        })
        .await
        .map_err(|_| anyhow::anyhow!("no answer within {} s", timeout.as_secs()))?
    });
    match store_check {
        Ok(()) => println!("store   ok   {} (write, read, delete)", config.store.url),
        Err(err) => {
            healthy = false;
            println!("store   FAIL {}: {err:#}", config.store.url);
        }
    }
    Ok(if healthy { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn catalog(config: &Config, action: CatalogAction) -> anyhow::Result<ExitCode> {
    let catalogue = usageflow_catalog::load_dir(&config.catalog.dir)?;
    match action {
        CatalogAction::Check => {
            let data = catalogue.data();
            println!(
                "catalogue {} is valid: {} accounts, {} marketplaces, {} hubs, {} products, {} contracts, {} listings, {} assets",
                config.catalog.dir.display(),
                data.accounts.len(),
                data.marketplaces.len(),
                data.hubs.len(),
                data.products.len(),
                data.contracts.len(),
                data.listings.len(),
                data.assets.len()
            );
            for product in &data.products {
                let caps = &product.capabilities;
                let schema = caps.ppu.as_ref().map_or("-".to_owned(), |p| p.schema.to_string());
                println!(
                    "  {} {:<28} schema {:<2} items {:>2} assets {:>5}{}{}",
                    product.id,
                    product.name,
                    schema,
                    product.items.len(),
                    data.assets.iter().filter(|a| a.product == product.id).count(),
                    if caps.dynamic_items() { " dynamic" } else { "" },
                    if caps.reservation_consumption() { " reservation-consumption" } else { "" },
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        CatalogAction::Prerequisites { product, contract } => {
            match catalogue.check_file_prerequisites(&product, &contract) {
                Ok(scope) => {
                    println!(
                        "ok: {} may report usage under {} (listing {}, provider {})",
                        scope.product.id, scope.contract.id, scope.listing.id, scope.contract.provider
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(err) => {
                    println!("not ready: {err}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::causes;

    #[test]
    fn library_internals_stay_at_warn_unless_the_filter_names_them() {
        assert_eq!(
            super::with_quiet_libraries("info"),
            "info,buoyant_kernel=warn,buoyant_kernel_engine=warn,deltalake_core=warn"
        );
        let named = super::with_quiet_libraries("debug,deltalake_core=debug");
        assert!(named.starts_with("debug,deltalake_core=debug,"), "{named}");
        assert_eq!(named.matches("deltalake_core").count(), 1, "{named}");
        assert!(
            tracing_subscriber::EnvFilter::try_new(super::with_quiet_libraries("usageflow_ingest=debug,info")).is_ok()
        );
    }

    #[derive(Debug, thiserror::Error)]
    #[error("cannot read x.toml: {0}")]
    struct Repeats(#[source] std::io::Error);

    #[test]
    fn causes_are_listed_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let err = anyhow::Error::new(Repeats(io)).context("loading the catalogue");
        assert_eq!(causes(&err), "loading the catalogue: cannot read x.toml: no such file");
        let io = std::io::Error::other("disk full");
        let err = anyhow::Error::new(io).context("writing the lake");
        assert_eq!(causes(&err), "writing the lake: disk full");
    }
}
