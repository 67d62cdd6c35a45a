//! `usageflow serve` and `usageflow api-key`.
#![allow(clippy::print_stdout)]

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use usageflow_api::{AppState, EventSink, KeyRing, Role};

use crate::cli::ApiKeyAction;
use crate::config::Config;

/// `usageflow serve`.
pub fn serve(config: &Config, listen: Option<String>) -> anyhow::Result<ExitCode> {
    let mut api = config.api.clone();
    if let Some(l) = listen {
        api.listen = l;
    }
    let service = crate::files::file_service(config)?;
    let catalogue = service.shared_catalogue();
    let keys = KeyRing::load(Path::new(&api.keys_file))?;
    if keys.is_empty() {
        tracing::warn!(file = %api.keys_file, "no API keys: every call will be refused; add one with `usageflow api-key add`");
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the runtime")?;
    // Uploads that a stopped process left part-way are finished (or ended invalid) first, so
    // that no file stays `processing`.
    let settled = rt.block_on(service.resume_interrupted()).context("cannot finish the interrupted uploads")?;
    for file in &settled {
        tracing::info!(file = %file.id, status = file.status.as_str(), "interrupted upload settled");
    }
    let mut state = AppState::new(service, keys).with_limits(&api);
    if api.events_enabled {
        state = state.with_events(
            EventSink::new(&config.kafka, &catalogue, config.ingest.validation.clone()).map_err(anyhow::Error::msg)?,
        );
    }
    rt.block_on(async move {
        let shutdown = async {
            crate::run::stop_signal().await;
            tracing::info!("stopping: finishing the requests in flight");
        };
        usageflow_api::serve(state, &api, shutdown).await.with_context(|| format!("cannot serve on {}", api.listen))
    })?;
    Ok(ExitCode::SUCCESS)
}

/// `usageflow api-key ...`.
pub fn api_key(config: &Config, action: ApiKeyAction) -> anyhow::Result<ExitCode> {
    let path = Path::new(&config.api.keys_file);
    match action {
        ApiKeyAction::Add { account, role, name } => {
            let role = match role.as_str() {
                "vendor" => Role::Vendor,
                "provider" | "distributor" => Role::Provider,
                "reseller" => Role::Reseller,
                other => anyhow::bail!("role `{other}` is not vendor, provider or reseller"),
            };
            let catalogue = usageflow_catalog::load_dir(&config.catalog.dir)?;
            if catalogue.account(&account).is_none() {
                anyhow::bail!("account {account} is not in the catalogue ({})", config.catalog.dir.display());
            }
            let (key, stored) = KeyRing::add_to_file(path, &account, role, &name)?;
            println!("{key}");
            eprintln!(
                "key {} for {} ({}) added to {}; it is shown only now",
                stored.id,
                account,
                role.as_str(),
                path.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        ApiKeyAction::List => {
            let ring = KeyRing::load(path)?;
            for k in ring.keys() {
                println!("{} {:<10} {:<8} {}", k.id, k.account, k.role.as_str(), k.name);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
