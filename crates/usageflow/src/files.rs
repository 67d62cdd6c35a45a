//! `usageflow files ...`: the usage-file workflow from the command line.
#![allow(clippy::print_stdout)]

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use usageflow_files::{CreateFile, FileService};
use usageflow_model::{Actor, FileChange, Period, Ref, UsageFile};
use usageflow_workflow::{SystemClock, WorkflowStore};

use crate::cli::{FileScopeArgs, FilesAction};
use crate::config::Config;

fn operator() -> Ref {
    let user = std::env::var("USER").unwrap_or_else(|_| "operator".to_owned());
    Ref { id: format!("cli:{user}"), name: user }
}

fn vendor_of(file: &UsageFile) -> Actor {
    Actor::vendor(&file.vendor.id, operator())
}

fn provider_of(file: &UsageFile) -> Actor {
    Actor::provider(&file.provider.id, operator())
}

fn summary(file: &UsageFile) -> String {
    format!(
        "{} {:<10} {} {} .. {} {} valid {} invalid {}{}",
        file.id,
        file.status.as_str(),
        file.schema.sheet_name(),
        file.period.from,
        file.period.to,
        file.product.id,
        file.records.valid,
        file.records.invalid,
        file.error_detail.as_deref().map(|d| format!("  ({d})")).unwrap_or_default()
    )
}

/// The file service over the configured store and catalogue.
pub fn file_service(config: &Config) -> anyhow::Result<FileService> {
    let store = usageflow_lake::open_store(&config.store)?;
    let catalogue = Arc::new(usageflow_catalog::load_dir(&config.catalog.dir)?);
    Ok(FileService::new(store.clone(), WorkflowStore::new(store, Arc::new(SystemClock)), catalogue)
        .with_lake(lake_of(config)?))
}

/// The lake's tables on the configured store, with the configured table settings.
pub fn lake_of(config: &Config) -> anyhow::Result<usageflow_lake::DeltaLake> {
    Ok(usageflow_lake::DeltaLake::open_store(&config.store)?.with_settings(config.lake.table_settings()))
}

/// Runs a `files` action.
pub fn run(config: &Config, action: FilesAction) -> anyhow::Result<ExitCode> {
    let service = file_service(config)?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async move {
        let wf = service.workflow();
        let step = |id: String, change: FileChange, provider: bool| {
            let service = service.clone();
            async move {
                let file = service.workflow().get(&id).await?;
                let actor = if provider { provider_of(&file) } else { vendor_of(&file) };
                let file = service.workflow().act(&id, change, &actor).await?;
                println!("{}", summary(&file));
                Ok::<_, anyhow::Error>(ExitCode::SUCCESS)
            }
        };
        match action {
            FilesAction::Create { scope: FileScopeArgs { product, contract, from, to }, external_id, description } => {
                let catalogue_vendor =
                    service.catalogue().product(&product).map(|p| p.vendor.clone()).unwrap_or_default();
                let actor = Actor::vendor(&catalogue_vendor, operator());
                let req = CreateFile {
                    product,
                    contract,
                    period: Some(Period { from, to }),
                    name: None,
                    description,
                    note: String::new(),
                    external_id,
                    currency: None,
                    corrects: None,
                };
                let file = service.create(&actor, req).await?;
                println!("{}", summary(&file));
                Ok(ExitCode::SUCCESS)
            }
            FilesAction::Compile { scope: FileScopeArgs { product, contract, from, to } } => {
                let vendor = service.catalogue().product(&product).map(|p| p.vendor.clone()).unwrap_or_default();
                let outcome = service
                    .compile(&Actor::vendor(&vendor, operator()), &product, &contract, Period { from, to })
                    .await?;
                println!("{}", summary(&outcome.file));
                for e in outcome.validation.errors.iter().take(20) {
                    println!("  row {:>6} {:<24} {}", e.row, e.column.as_deref().unwrap_or("-"), e.reason);
                }
                Ok(if outcome.file.status == usageflow_model::FileStatus::Ready {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                })
            }
            FilesAction::Upload { id, path, processed } => {
                let bytes = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
                let file = wf.get(&id).await?;
                let filename = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                let outcome = service.upload(&vendor_of(&file), &id, &filename, bytes).await?;
                println!("{}", summary(&outcome.file));
                for e in outcome.validation.errors.iter().take(20) {
                    println!("  row {:>6} {:<24} {}", e.row, e.column.as_deref().unwrap_or("-"), e.reason);
                }
                if outcome.validation.errors.len() > 20 {
                    println!("  ... {} more problems in the processed file", outcome.validation.errors.len() - 20);
                }
                if let (Some(out), Some(object)) = (processed, &outcome.file.processed_file) {
                    std::fs::write(&out, service.document(object).await?)?;
                    println!("processed file written to {}", out.display());
                }
                Ok(if outcome.file.status == usageflow_model::FileStatus::Ready {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                })
            }
            FilesAction::Export { id, format, out } => {
                let file = wf.get(&id).await?;
                let object = file.uploaded_file.as_ref().context("the file has no uploaded records yet")?;
                let bytes = service.document(object).await?;
                let book = usageflow_files::read_workbook(&bytes, &usageflow_files::ReadLimits::default())?;
                let columns: Vec<&str> = book.columns.iter().map(String::as_str).collect();
                let rows: Vec<Vec<String>> = book
                    .records
                    .iter()
                    .map(|r| book.columns.iter().map(|c| r.get(c).unwrap_or_default().to_owned()).collect())
                    .collect();
                let data = match format.as_str() {
                    "xlsx" => bytes,
                    "parquet" => usageflow_files::write_parquet(&columns, &rows)?,
                    _ => usageflow_files::write_csv(&columns, &rows)?,
                };
                std::fs::write(&out, data).with_context(|| format!("cannot write {}", out.display()))?;
                println!("{} records of {id} written to {} ({format})", rows.len(), out.display());
                Ok(ExitCode::SUCCESS)
            }
            FilesAction::Submit { id } => {
                let file = wf.get(&id).await?;
                let file = service.submit(&vendor_of(&file), &id).await?;
                println!("{}", summary(&file));
                Ok(ExitCode::SUCCESS)
            }
            FilesAction::SetRules { product, path } => {
                let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
                let rules: Vec<usageflow_model::UsageRule> = serde_json::from_str(&text)
                    .with_context(|| format!("{} is not a JSON array of usage rules", path.display()))?;
                let provider = rules.first().map(|r| r.account_id.clone()).unwrap_or_default();
                let count = rules.len();
                service.set_rules(&Actor::provider(&provider, operator()), &product, rules).await?;
                println!("{count} usage rule(s) set for {product} by {provider}");
                Ok(ExitCode::SUCCESS)
            }
            FilesAction::Rules { product, provider } => {
                println!("{}", serde_json::to_string_pretty(&service.rules(&product, &provider).await?)?);
                Ok(ExitCode::SUCCESS)
            }
            FilesAction::Accept { id, note } => {
                let file = wf.get(&id).await?;
                let file = service.accept(&provider_of(&file), &id, &note).await?;
                println!("{}", summary(&file));
                for chunk in service.chunks(&id).await? {
                    println!(
                        "  chunk {} {} hub {} records {}",
                        chunk.id, chunk.status, chunk.binding.hub.id, chunk.stats.accepted
                    );
                }
                Ok(ExitCode::SUCCESS)
            }
            FilesAction::Chunks { id } => {
                for chunk in service.chunks(&id).await? {
                    println!(
                        "{} {} hub {} records {}{}",
                        chunk.id,
                        chunk.status,
                        chunk.binding.hub.id,
                        chunk.stats.accepted,
                        chunk.external_billing_id.as_deref().map(|b| format!(" billed as {b}")).unwrap_or_default()
                    );
                }
                Ok(ExitCode::SUCCESS)
            }
            FilesAction::ChunkClose { chunk, billing_id, note } => {
                let current = service.chunk(&chunk).await?;
                let actor = Actor::provider(&current.provider.id, operator());
                let step =
                    usageflow_model::ChunkStep::Close { external_billing_id: billing_id, external_billing_note: note };
                let closed = service.chunk_step(&actor, &chunk, step).await?;
                println!("{} {}", closed.id, closed.status);
                Ok(ExitCode::SUCCESS)
            }
            FilesAction::ChunkRegenerate { chunk } => {
                let current = service.chunk(&chunk).await?;
                let actor = Actor::provider(&current.provider.id, operator());
                let done = service.chunk_step(&actor, &chunk, usageflow_model::ChunkStep::Regenerate).await?;
                println!("{} {}", done.id, done.status);
                Ok(ExitCode::SUCCESS)
            }
            FilesAction::Reject { id, note } => step(id, FileChange::Reject { note }, true).await,
            FilesAction::ApproveAll { id } => step(id, FileChange::ApproveAll, true).await,
            FilesAction::Close { id } => step(id, FileChange::Close, true).await,
            FilesAction::Delete { id } => step(id, FileChange::Delete, false).await,
            FilesAction::Reprocess { id } => step(id, FileChange::Reprocess, true).await,
            FilesAction::Show { id } => {
                println!("{}", serde_json::to_string_pretty(&wf.get(&id).await?)?);
                Ok(ExitCode::SUCCESS)
            }
            FilesAction::History { id } => {
                let (_, events) = wf.history(&id).await?;
                for e in events {
                    let by =
                        e.actor.by.as_ref().map_or_else(|| "system".to_owned(), |b| format!("{} ({})", b.name, b.id));
                    println!(
                        "{:>3} {} {:<8} {:<20} {by}",
                        e.seq,
                        e.at.to_rfc3339(),
                        e.actor.role.to_string(),
                        format!("{:?}", e.change.action())
                    );
                }
                Ok(ExitCode::SUCCESS)
            }
            FilesAction::List => {
                for file in wf.list().await? {
                    println!("{}", summary(&file));
                }
                Ok(ExitCode::SUCCESS)
            }
        }
    })
}
