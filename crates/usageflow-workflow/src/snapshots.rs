//! Versioned snapshots: `{prefix}/{version:010}.json`, each written with a create-if-absent
//! put, so that two writers cannot both produce version n; the latest version is the state
//! and the earlier ones are its history.

use std::sync::Arc;

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{Error, Result};

/// Snapshots of small objects (chunks) on an object store.
#[derive(Debug, Clone)]
pub struct Snapshots {
    store: Arc<dyn ObjectStore>,
}

fn key(prefix: &Path, version: u64) -> Path {
    prefix.clone().join(format!("{version:010}.json"))
}

impl Snapshots {
    /// Snapshots on `store`.
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        Self { store }
    }

    /// Every object under `prefix`.
    async fn listed(&self, prefix: &Path) -> Result<Vec<object_store::ObjectMeta>> {
        self.store
            .list(Some(prefix))
            .try_collect()
            .await
            .map_err(|source| Error::Store { path: prefix.to_string(), source })
    }

    /// The latest version under `prefix`, if any.
    pub async fn latest<T: DeserializeOwned>(&self, prefix: &Path) -> Result<Option<(u64, T)>> {
        let listed = self.listed(prefix).await?;
        let Some(version) =
            listed.iter().filter_map(|m| m.location.filename()?.strip_suffix(".json")?.parse::<u64>().ok()).max()
        else {
            return Ok(None);
        };
        Ok(Some((version, self.read(prefix, version).await?)))
    }

    /// The latest version of every object under `parent` (`{parent}/{name}/{version}.json`),
    /// with one listing.
    pub async fn latest_versions(&self, parent: &Path) -> Result<std::collections::BTreeMap<String, u64>> {
        let listed = self.listed(parent).await?;
        let mut latest = std::collections::BTreeMap::new();
        let depth = parent.parts().count();
        for meta in &listed {
            let parts: Vec<_> = meta.location.parts().collect();
            if parts.len() != depth + 2 {
                continue;
            }
            let Some(version) = parts[depth + 1].as_ref().strip_suffix(".json").and_then(|v| v.parse::<u64>().ok())
            else {
                continue;
            };
            let v = latest.entry(parts[depth].as_ref().to_owned()).or_insert(version);
            *v = (*v).max(version);
        }
        Ok(latest)
    }

    /// Version `version` of the object under `prefix`.
    pub async fn read<T: DeserializeOwned>(&self, prefix: &Path, version: u64) -> Result<T> {
        let path = key(prefix, version);
        let bytes = self
            .store
            .get(&path)
            .await
            .map_err(|source| Error::Store { path: path.to_string(), source })?
            .bytes()
            .await
            .map_err(|source| Error::Store { path: path.to_string(), source })?;
        serde_json::from_slice(&bytes).map_err(|e| Error::Corrupt { path: path.to_string(), reason: e.to_string() })
    }

    /// Writes `value` as `version` unless that version exists; `Ok(false)` when another writer
    /// wrote it first.
    pub async fn put<T: Serialize>(&self, prefix: &Path, version: u64, value: &T) -> Result<bool> {
        let path = key(prefix, version);
        let body = serde_json::to_vec_pretty(value).expect("snapshots serialize");
        let opts = PutOptions { mode: PutMode::Create, ..PutOptions::default() };
        match self.store.put_opts(&path, PutPayload::from(body), opts).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }) => Ok(false),
            Err(source) => Err(Error::Store { path: path.to_string(), source }),
        }
    }

    /// Names of the directories directly under `parent`.
    pub async fn children(&self, parent: &Path) -> Result<Vec<String>> {
        let listing = self
            .store
            .list_with_delimiter(Some(parent))
            .await
            .map_err(|source| Error::Store { path: parent.to_string(), source })?;
        let mut names: Vec<String> =
            listing.common_prefixes.iter().filter_map(|p| p.filename().map(str::to_owned)).collect();
        names.sort();
        Ok(names)
    }
}
