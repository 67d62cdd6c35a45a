use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use object_store::ObjectStore;
use object_store::aws::{AmazonS3Builder, S3ConditionalPut};
use object_store::local::LocalFileSystem;
use object_store::prefix::PrefixStore;
use serde::{Deserialize, Serialize};
use url::Url;

use crate::{Error, Result};

/// Where Usageflow keeps its data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `file:///absolute/dir`, a plain directory path (relative paths are taken from the
    /// working directory), or `s3://bucket/optional/prefix`.
    pub url: String,
    /// Settings used only for `s3://` URLs.
    pub s3: S3Options,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self { url: "data/lake".to_owned(), s3: S3Options::default() }
    }
}

/// Settings of an S3-compatible store. Unset credentials fall back to the standard
/// `AWS_*` environment variables.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct S3Options {
    /// Endpoint of an S3-compatible server, e.g. `http://127.0.0.1:19000`; empty for AWS.
    pub endpoint: String,
    /// Region name (any value for most S3-compatible servers).
    pub region: String,
    /// Access key id; empty to read `AWS_ACCESS_KEY_ID`.
    pub access_key_id: String,
    /// Secret access key; empty to read `AWS_SECRET_ACCESS_KEY`.
    pub secret_access_key: String,
    /// Allow plain-HTTP endpoints (local servers).
    pub allow_http: bool,
    /// Use `https://bucket.host/` addressing instead of `https://host/bucket/`.
    pub virtual_hosted_style: bool,
}

impl Default for S3Options {
    fn default() -> Self {
        Self {
            endpoint: String::new(),
            region: "us-east-1".to_owned(),
            access_key_id: String::new(),
            secret_access_key: String::new(),
            allow_http: false,
            virtual_hosted_style: false,
        }
    }
}

/// Which backend a [`StoreConfig`] opens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreKind {
    /// A directory on the local filesystem.
    Local(PathBuf),
    /// A bucket (and key prefix) on an S3-compatible store.
    S3 { bucket: String, prefix: String },
}

impl StoreConfig {
    /// A local-directory store.
    pub fn local(dir: impl AsRef<FsPath>) -> Self {
        Self { url: dir.as_ref().display().to_string(), s3: S3Options::default() }
    }

    /// Parses the URL into the backend it names.
    pub fn kind(&self) -> Result<StoreKind> {
        let invalid = |reason: &str| Error::InvalidUrl { url: self.url.clone(), reason: reason.to_owned() };
        let url = self.url.trim();
        if url.is_empty() {
            return Err(invalid("the URL is empty"));
        }
        if !url.contains("://") {
            return Ok(StoreKind::Local(PathBuf::from(url)));
        }
        let parsed = Url::parse(url).map_err(|e| invalid(&e.to_string()))?;
        match parsed.scheme() {
            "file" => {
                let path = parsed.to_file_path().map_err(|()| invalid("not an absolute file path"))?;
                Ok(StoreKind::Local(path))
            }
            "s3" | "s3a" => {
                let bucket = parsed.host_str().filter(|b| !b.is_empty()).ok_or_else(|| invalid("no bucket name"))?;
                let prefix = parsed.path().trim_matches('/').to_owned();
                Ok(StoreKind::S3 { bucket: bucket.to_owned(), prefix })
            }
            other => Err(invalid(&format!("unsupported scheme `{other}` (use a path, file:// or s3://)"))),
        }
    }
}

/// Opens the store a [`StoreConfig`] names, rooted at its directory or key prefix.
///
/// A local directory is created if missing. S3 stores are opened with conditional puts
/// (`If-None-Match`/`If-Match`) on, which the commit protocols rely on.
pub fn open_store(config: &StoreConfig) -> Result<Arc<dyn ObjectStore>> {
    match config.kind()? {
        StoreKind::Local(dir) => {
            std::fs::create_dir_all(&dir).map_err(|source| Error::LocalDir { path: dir.clone(), source })?;
            let store = LocalFileSystem::new_with_prefix(&dir)
                .map_err(|source| Error::Open { url: config.url.clone(), source })?;
            Ok(Arc::new(store))
        }
        StoreKind::S3 { bucket, prefix } => {
            let s3 = &config.s3;
            let mut builder = AmazonS3Builder::from_env()
                .with_bucket_name(&bucket)
                .with_region(&s3.region)
                .with_allow_http(s3.allow_http)
                .with_virtual_hosted_style_request(s3.virtual_hosted_style)
                .with_conditional_put(S3ConditionalPut::ETagMatch);
            if !s3.endpoint.is_empty() {
                builder = builder.with_endpoint(&s3.endpoint);
            }
            if !s3.access_key_id.is_empty() {
                builder = builder.with_access_key_id(&s3.access_key_id);
            }
            if !s3.secret_access_key.is_empty() {
                builder = builder.with_secret_access_key(&s3.secret_access_key);
            }
            let store = builder.build().map_err(|source| Error::Open { url: config.url.clone(), source })?;
            if prefix.is_empty() { Ok(Arc::new(store)) } else { Ok(Arc::new(PrefixStore::new(store, prefix))) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::path::Path;
    use object_store::{ObjectStoreExt, PutPayload};

    fn kind(url: &str) -> Result<StoreKind> {
        StoreConfig { url: url.to_owned(), s3: S3Options::default() }.kind()
    }

    #[test]
    fn parses_store_urls() {
        assert_eq!(kind("data/lake").unwrap(), StoreKind::Local(PathBuf::from("data/lake")));
        assert_eq!(kind("file:///var/lib/uf").unwrap(), StoreKind::Local(PathBuf::from("/var/lib/uf")));
        assert_eq!(kind("s3://bucket/a/b/").unwrap(), StoreKind::S3 { bucket: "bucket".into(), prefix: "a/b".into() });
        assert_eq!(kind("s3://bucket").unwrap(), StoreKind::S3 { bucket: "bucket".into(), prefix: String::new() });
    }

    #[test]
    fn rejects_bad_urls_with_the_reason() {
        let err = kind("gs://bucket/x").unwrap_err().to_string();
        assert!(err.contains("unsupported scheme `gs`"), "{err}");
        let err = kind("  ").unwrap_err().to_string();
        assert!(err.contains("empty"), "{err}");
        let err = kind("s3:///nobucket").unwrap_err().to_string();
        assert!(err.contains("no bucket"), "{err}");
    }

    #[tokio::test]
    async fn local_store_is_rooted_at_its_directory() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("nested/lake");
        let store = open_store(&StoreConfig::local(&root)).unwrap();
        store.put(&Path::from("a/b.txt"), PutPayload::from_static(b"hello")).await.unwrap();
        assert_eq!(std::fs::read(root.join("a/b.txt")).unwrap(), b"hello");
        let got = store.get(&Path::from("a/b.txt")).await.unwrap().bytes().await.unwrap();
        assert_eq!(&got[..], b"hello");
    }
}
