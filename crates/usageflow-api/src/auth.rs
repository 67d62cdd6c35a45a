//! API keys: `Authorization: ApiKey {id}.{secret}`.
//!
//! Keys are kept in a TOML file as their SHA-256 digest only; each is bound to one account and
//! its role. A vendor key sees the files of its own products, a provider (distributor) key
//! the files it is the provider of, a reseller key the records and aggregates of the assets it
//! resells. Keys are 256-bit random secrets, so one unsalted SHA-256 is enough to make a
//! leaked key file useless for calling the API.

use std::collections::HashMap;
use std::path::Path;

use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use usageflow_model::{Actor, Ref};

use crate::error::ApiError;

/// The role of an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A vendor: reports usage of its products.
    Vendor,
    /// A provider (distributor): reviews, accepts and bills usage.
    Provider,
    /// A reseller: reads the usage of the assets it resells.
    Reseller,
}

impl Role {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Vendor => "vendor",
            Role::Provider => "provider",
            Role::Reseller => "reseller",
        }
    }
}

/// One stored key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredKey {
    /// Public key id (the part before the dot).
    pub id: String,
    /// What the key is for.
    #[serde(default)]
    pub name: String,
    /// The account the key acts for (`VA-…`, `PA-…`, `TA-…`).
    pub account: String,
    /// The account's role.
    pub role: Role,
    /// SHA-256 of the whole key, hex.
    pub sha256: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    #[serde(default)]
    keys: Vec<StoredKey>,
}

/// The keys the server accepts. A ring loaded from a key file follows the file: a key added
/// with `usageflow api-key add` (or removed from the file) takes effect within a second, without
/// a restart; a file that no longer parses is reported and the keys it had stay in force.
#[derive(Debug, Default)]
pub struct KeyRing {
    keys: std::sync::RwLock<HashMap<String, StoredKey>>,
    source: Option<KeySource>,
}

/// The key file a ring follows, and what was last seen of it.
#[derive(Debug)]
struct KeySource {
    path: std::path::PathBuf,
    /// When the file was last looked at, and its modification time and length then.
    seen: std::sync::Mutex<(std::time::Instant, Option<(std::time::SystemTime, u64)>)>,
}

fn file_stamp(path: &Path) -> Option<(std::time::SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// Why a key file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// Unreadable.
    #[error("cannot read API key file {path}: {source}")]
    Io { path: String, source: std::io::Error },
    /// Not valid TOML of the expected shape.
    #[error("API key file {path} is invalid: {reason}")]
    Invalid { path: String, reason: String },
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The digest stored for a key.
pub fn digest(key: &str) -> String {
    hex(&Sha256::digest(key.as_bytes()))
}

impl KeyRing {
    /// A key ring of `keys`.
    pub fn new(keys: impl IntoIterator<Item = StoredKey>) -> Self {
        Self { keys: std::sync::RwLock::new(keys.into_iter().map(|k| (k.id.clone(), k)).collect()), source: None }
    }

    /// Loads the key file (an absent file is an empty ring) and follows it from then on.
    pub fn load(path: &Path) -> Result<Self, KeyFileError> {
        let stamp = file_stamp(path);
        let keys = Self::read_file(path)?;
        let mut ring = Self::new(keys);
        ring.source =
            Some(KeySource { path: path.to_owned(), seen: std::sync::Mutex::new((std::time::Instant::now(), stamp)) });
        Ok(ring)
    }

    /// Re-reads the key file when it changed (looked at most once a second).
    fn follow(&self) {
        let Some(source) = &self.source else { return };
        let mut seen = source.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if seen.0.elapsed() < std::time::Duration::from_secs(1) {
            return;
        }
        seen.0 = std::time::Instant::now();
        let stamp = file_stamp(&source.path);
        if stamp == seen.1 {
            return;
        }
        match Self::read_file(&source.path) {
            Ok(keys) => {
                let keys: HashMap<String, StoredKey> = keys.into_iter().map(|k| (k.id.clone(), k)).collect();
                tracing::info!(path = %source.path.display(), keys = keys.len(), "API key file reloaded");
                *self.keys.write().unwrap_or_else(std::sync::PoisonError::into_inner) = keys;
                seen.1 = stamp;
            }
            Err(err) => tracing::warn!(%err, "the API key file changed but cannot be used; the previous keys stay"),
        }
    }

    fn read_file(path: &Path) -> Result<Vec<StoredKey>, KeyFileError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(KeyFileError::Io { path: path.display().to_string(), source }),
        };
        let file: KeyFile = toml::from_str(&text)
            .map_err(|e| KeyFileError::Invalid { path: path.display().to_string(), reason: e.to_string() })?;
        for k in &file.keys {
            if k.sha256.len() != 64 || !k.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(KeyFileError::Invalid {
                    path: path.display().to_string(),
                    reason: format!("key {} has no valid sha256 digest", k.id),
                });
            }
        }
        Ok(file.keys)
    }

    /// Appends a new key to the key file and returns the key (shown once; only its digest is
    /// stored).
    pub fn add_to_file(
        path: &Path,
        account: &str,
        role: Role,
        name: &str,
    ) -> Result<(String, StoredKey), KeyFileError> {
        let io = |source| KeyFileError::Io { path: path.display().to_string(), source };
        let mut random = [0u8; 32];
        use std::io::Read;
        std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut random)).map_err(io)?;
        let secret = hex(&random);
        let id = format!("SU-{}", &hex(&Sha256::digest(secret.as_bytes()))[..12]);
        let key = format!("{id}.{secret}");
        let stored = StoredKey { id, name: name.to_owned(), account: account.to_owned(), role, sha256: digest(&key) };
        let mut file: KeyFile = match std::fs::read_to_string(path) {
            Ok(t) => toml::from_str(&t)
                .map_err(|e| KeyFileError::Invalid { path: path.display().to_string(), reason: e.to_string() })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => KeyFile::default(),
            Err(e) => return Err(io(e)),
        };
        file.keys.push(stored.clone());
        let text = toml::to_string(&file)
            .map_err(|e| KeyFileError::Invalid { path: path.display().to_string(), reason: e.to_string() })?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        std::fs::write(path, text).map_err(io)?;
        Ok((key, stored))
    }

    /// The keys, ordered by id.
    pub fn keys(&self) -> Vec<StoredKey> {
        let mut keys: Vec<StoredKey> =
            self.keys.read().unwrap_or_else(std::sync::PoisonError::into_inner).values().cloned().collect();
        keys.sort_by(|a, b| a.id.cmp(&b.id));
        keys
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.read().unwrap_or_else(std::sync::PoisonError::into_inner).len()
    }

    /// Whether there are no keys.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The key a header value names, if it is genuine.
    pub fn verify(&self, key: &str) -> Option<StoredKey> {
        self.follow();
        let (id, _) = key.split_once('.')?;
        let keys = self.keys.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        let stored = keys.get(id)?;
        let given = digest(key);
        // Constant-time comparison of the digests.
        let same = given.bytes().zip(stored.sha256.to_ascii_lowercase().bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b));
        (same == 0 && given.len() == stored.sha256.len()).then(|| stored.clone())
    }
}

/// The authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Key id.
    pub key_id: String,
    /// Key name.
    pub key_name: String,
    /// Account.
    pub account: String,
    /// Role.
    pub role: Role,
}

impl Principal {
    /// The actor recorded in workflow events.
    pub fn actor(&self) -> Actor {
        let by = Ref { id: self.key_id.clone(), name: self.key_name.clone() };
        match self.role {
            Role::Vendor => Actor::vendor(&self.account, by),
            Role::Provider => Actor::provider(&self.account, by),
            // Resellers only read; an actor is never asked of them, and the workflow refuses
            // anything a reseller could attempt.
            Role::Reseller => Actor { role: usageflow_model::ActorRole::Vendor, account: None, by: Some(by) },
        }
    }
}

impl<S> FromRequestParts<S> for Principal
where
    S: Send + Sync + AsRef<KeyRing>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let unauthorized = |m: &str| ApiError::new(StatusCode::UNAUTHORIZED, "AUTH_001", m);
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or_else(|| unauthorized("missing Authorization header; send `Authorization: ApiKey <key>`"))?;
        let text = header.to_str().map_err(|_| unauthorized("the Authorization header is not text"))?;
        let key = text
            .strip_prefix("ApiKey ")
            .map(str::trim)
            .ok_or_else(|| unauthorized("the Authorization header must be `ApiKey <key>`"))?;
        let stored = state.as_ref().verify(key).ok_or_else(|| unauthorized("the API key is not valid"))?;
        Ok(Principal { key_id: stored.id, key_name: stored.name, account: stored.account, role: stored.role })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_stored_hashed_and_verified() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.toml");
        let (key, stored) = KeyRing::add_to_file(&path, "VA-1", Role::Vendor, "test").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(key.split_once('.').unwrap().1), "the secret must not be stored");
        assert!(text.contains(&stored.sha256));
        let ring = KeyRing::load(&path).unwrap();
        assert_eq!(ring.verify(&key).unwrap().account, "VA-1");
        let mut wrong = key.clone();
        wrong.pop();
        wrong.push('x');
        assert!(ring.verify(&wrong).is_none());
        assert!(ring.verify("SU-unknown.secret").is_none());
        assert!(ring.verify("no-dot").is_none());
    }

    #[test]
    fn a_loaded_ring_follows_its_key_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.toml");
        let (first, _) = KeyRing::add_to_file(&path, "VA-200-002", Role::Vendor, "first").unwrap();
        let ring = KeyRing::load(&path).unwrap();
        assert!(ring.verify(&first).is_some());
        let (second, _) = KeyRing::add_to_file(&path, "PA-500-001", Role::Provider, "second").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(1100));
        assert_eq!(ring.verify(&second).map(|k| k.role), Some(Role::Provider), "added while running");
        assert_eq!(ring.len(), 2);
        // A broken edit is reported and the keys in force stay.
        std::fs::write(&path, "keys = [ this is not toml").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(1100));
        assert!(ring.verify(&first).is_some() && ring.verify(&second).is_some());
        // Removing a key from the file revokes it.
        let text = toml::to_string(&KeyFile { keys: ring.keys().into_iter().filter(|k| k.name == "first").collect() })
            .unwrap();
        std::fs::write(&path, text).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(1100));
        assert!(ring.verify(&second).is_none(), "revoked without a restart");
        assert!(ring.verify(&first).is_some());
    }
}
