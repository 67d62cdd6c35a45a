//! `usageflow sql`, `usageflow export-billing`, `usageflow reconcile`.
#![allow(clippy::print_stdout)]

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use datafusion::prelude::SessionContext;
use usageflow_files::FileService;
use usageflow_lake::AsOf;
use usageflow_model::{Actor, Ref};
use usageflow_query::billing::{Selection, close_matched, outcome_counts, reconciliation_sql_as_of, register_billing};
use usageflow_query::{Format, Scope};

use crate::config::Config;

/// Parses `all`, `vendor:ID`, `provider:ID`, `reseller:ID`.
pub fn parse_scope(text: &str) -> anyhow::Result<Scope> {
    Ok(match text.split_once(':') {
        None if text == "all" => Scope::All,
        Some(("vendor", id)) => Scope::Vendor(id.to_owned()),
        Some(("provider", id)) | Some(("distributor", id)) => Scope::Provider(id.to_owned()),
        Some(("reseller", id)) => Scope::Reseller(id.to_owned()),
        _ => anyhow::bail!("scope `{text}` is not all, vendor:ID, provider:ID or reseller:ID"),
    })
}

/// The session over the lake as of `as_of`, and the lake's state it reads.
async fn session_as_of(
    service: &FileService,
    scope: &Scope,
    as_of: AsOf,
) -> anyhow::Result<(SessionContext, usageflow_lake::LakeState)> {
    let sources = usageflow_query::load_sources_as_of(service, as_of).await?;
    if as_of != AsOf::Latest {
        eprintln!("lake as of {}", sources.lake.version());
    }
    let ctx = usageflow_query::analyst_session(service.object_store().clone(), &sources, scope).await?;
    Ok((ctx, sources.lake))
}

fn parse_as_of(text: Option<&str>) -> anyhow::Result<AsOf> {
    text.map_or(Ok(AsOf::Latest), |t| t.parse().map_err(|e: String| anyhow::anyhow!("--as-of {t}: {e}")))
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the runtime")
}

fn emit(bytes: &[u8], out: Option<&Path>) -> anyhow::Result<()> {
    match out {
        Some(path) => std::fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display())),
        None => {
            std::io::stdout().write_all(bytes)?;
            Ok(())
        }
    }
}

/// `usageflow sql`.
pub fn sql(
    config: &Config,
    query: Option<String>,
    format: &str,
    out: Option<PathBuf>,
    scope: &str,
    as_of: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let format: Format = format.parse().map_err(anyhow::Error::msg)?;
    let scope = parse_scope(scope)?;
    let as_of = parse_as_of(as_of)?;
    let service = crate::files::file_service(config)?;
    runtime()?.block_on(async move {
        let (ctx, _) = session_as_of(&service, &scope, as_of).await?;
        if let Some(q) = query {
            let batches = usageflow_query::query(&ctx, &q).await?;
            emit(&usageflow_query::output::write(&batches, format)?, out.as_deref())?;
            return Ok(ExitCode::SUCCESS);
        }
        shell(&ctx, format).await
    })
}

async fn shell(ctx: &SessionContext, format: Format) -> anyhow::Result<ExitCode> {
    let interactive = std::io::stdin().is_terminal();
    let prompt = |continued: bool| {
        if interactive {
            print!("{}", if continued { "   ...> " } else { "usageflow> " });
            let _ = std::io::stdout().flush();
        }
    };
    let mut statement = String::new();
    let mut failed = false;
    prompt(false);
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        let trimmed = line.trim();
        if statement.is_empty() && (trimmed == "\\q" || trimmed == "quit" || trimmed == "exit") {
            break;
        }
        if statement.is_empty() && trimmed == "\\d" {
            for t in usageflow_query::lake::TABLES {
                println!("{t}");
            }
            prompt(false);
            continue;
        }
        statement.push_str(&line);
        statement.push('\n');
        if !trimmed.ends_with(';') {
            prompt(!statement.trim().is_empty());
            continue;
        }
        let text = std::mem::take(&mut statement);
        match usageflow_query::query(ctx, text.trim().trim_end_matches(';')).await {
            Ok(batches) => emit(&usageflow_query::output::write(&batches, format)?, None)?,
            Err(e) => {
                failed = true;
                eprintln!("error: {e}");
            }
        }
        prompt(false);
    }
    Ok(if failed && !interactive { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// `usageflow export-billing`.
pub fn export_billing(
    config: &Config,
    selection: Selection,
    scope: &str,
    format: &str,
    out: &Path,
) -> anyhow::Result<ExitCode> {
    let scope = parse_scope(scope)?;
    let service = crate::files::file_service(config)?;
    runtime()?.block_on(async move {
        let (ctx, lake) = session_as_of(&service, &scope, AsOf::Latest).await?;
        let lake = lake.version();
        let (bytes, rows) = usageflow_query::billing::export(&ctx, &selection, format, lake).await?;
        emit(&bytes, Some(out))?;
        eprintln!("{rows} accepted records written to {} ({format}) from the lake at {lake}", out.display());
        if let Some(v) = lake.records {
            eprintln!("reconcile its billing lines with `usageflow reconcile --as-of {v}`");
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// What `usageflow reconcile` does with its report.
#[derive(Debug)]
pub struct ReconcileOptions<'a> {
    /// Close the matched records.
    pub close: bool,
    /// The report's format.
    pub format: &'a str,
    /// Where the report goes (standard output if none).
    pub out: Option<PathBuf>,
    /// The lake version or time the billing lines were exported from.
    pub as_of: Option<&'a str>,
}

/// `usageflow reconcile`.
pub fn reconcile(
    config: &Config,
    billing: &Path,
    selection: Selection,
    scope: &str,
    options: ReconcileOptions<'_>,
) -> anyhow::Result<ExitCode> {
    let ReconcileOptions { close, format, out, as_of } = options;
    let as_of = parse_as_of(as_of)?;
    let scope = parse_scope(scope)?;
    let Scope::Provider(provider) = &scope else {
        anyhow::bail!("reconcile as a distributor: --scope provider:PA-…")
    };
    let actor = Actor::provider(provider, Ref { id: "cli:reconcile".to_owned(), name: "reconcile".to_owned() });
    let format: Format = format.parse().map_err(anyhow::Error::msg)?;
    let service = crate::files::file_service(config)?;
    runtime()?.block_on(async move {
        let (ctx, lake) = session_as_of(&service, &scope, as_of).await?;
        let billed_at = match as_of {
            AsOf::Latest => None,
            AsOf::Timestamp(t) => Some(t),
            // The instant the version read was committed.
            AsOf::Version(_) => lake.records.timestamp.and_then(chrono::DateTime::from_timestamp_millis),
        };
        register_billing(&ctx, billing).await?;
        let sql = reconciliation_sql_as_of(&ctx, &selection, billed_at).await?;
        let report = usageflow_query::query(&ctx, &sql).await?;
        emit(&usageflow_query::output::write(&report, format)?, out.as_deref())?;
        for (outcome, n) in outcome_counts(&report)? {
            eprintln!("{outcome:>22}: {n}");
        }
        if close {
            let (closed, refused) = close_matched(&service, &actor, &report).await?;
            eprintln!("{closed} matched records closed with their billing ids");
            for r in refused.iter().take(20) {
                eprintln!("  refused: {r}");
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}
