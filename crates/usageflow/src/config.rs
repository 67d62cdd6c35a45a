//! Configuration: one typed struct per component, loaded in one place.
//!
//! Layers, each overriding the one before:
//! 1. compiled-in defaults ([`Config::default`]);
//! 2. TOML files, in the order given (`--config FILE`, repeatable, or `USAGEFLOW_CONFIG`);
//! 3. environment variables `USAGEFLOW__SECTION__KEY=value` (e.g. `USAGEFLOW__KAFKA__TOPIC`);
//! 4. command-line overrides `--set section.key=value`.
//!
//! Unknown keys are an error that names the key and where it came from. Values from the
//! environment and flags are converted to the type of the key they set.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use toml::{Table, Value};
use usageflow_catalog::CatalogConfig;
use usageflow_ingest::{IngestConfig, KafkaConfig};
use usageflow_lake::StoreConfig;

/// Prefix of environment variables that set configuration keys.
pub const ENV_PREFIX: &str = "USAGEFLOW__";

/// The whole configuration of a Usageflow process.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Kafka cluster, topics and consumer group.
    pub kafka: KafkaConfig,
    /// Object store that holds the lake, the workflow state and the usage files.
    pub store: StoreConfig,
    /// The product catalogue.
    pub catalog: CatalogConfig,
    /// The Kafka ingester.
    pub ingest: IngestConfig,
    /// The HTTP API.
    pub api: usageflow_api::ApiConfig,
    /// The lake's Delta tables.
    pub lake: LakeConfig,
    /// Logging.
    pub log: LogConfig,
}

/// Settings of the lake's Delta tables.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LakeConfig {
    /// A Parquet checkpoint every this many commits (`delta.checkpointInterval` of the tables
    /// created): a reader loads the last checkpoint and at most this many commits after it.
    pub checkpoint_interval: u64,
    /// Hours of commits the tables' logs keep (`delta.logRetentionDuration`): how far back
    /// time travel and `lake history` reach. Older commits are deleted after a checkpoint, so
    /// the log's length, and what finding its newest commits costs, follow this window rather
    /// than the table's age. At least 168 (a week, the shortest `lake vacuum` retention).
    pub log_retention_hours: u64,
}

impl Default for LakeConfig {
    fn default() -> Self {
        let settings = usageflow_lake::delta::TableSettings::default();
        Self { checkpoint_interval: settings.checkpoint_interval, log_retention_hours: settings.log_retention_hours }
    }
}

impl LakeConfig {
    /// Refuses settings that cannot work.
    pub fn check(&self) -> Result<(), usageflow_ingest::InvalidSetting> {
        let invalid = |key: &str, message: String| usageflow_ingest::InvalidSetting { key: key.to_owned(), message };
        if self.checkpoint_interval == 0 {
            return Err(invalid("lake.checkpoint_interval", "must be greater than 0".to_owned()));
        }
        let floor = usageflow_lake::delta::MIN_VACUUM_RETENTION_HOURS;
        if self.log_retention_hours < floor {
            return Err(invalid(
                "lake.log_retention_hours",
                format!("must be at least {floor} (a week): time-travel reads and exports of that age need their log"),
            ));
        }
        Ok(())
    }

    /// The table properties these settings give.
    pub fn table_settings(&self) -> usageflow_lake::delta::TableSettings {
        usageflow_lake::delta::TableSettings {
            checkpoint_interval: self.checkpoint_interval,
            log_retention_hours: self.log_retention_hours,
        }
    }
}

/// Logging settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A `tracing` filter such as `info` or `usageflow_ingest=debug,info`; `RUST_LOG` wins if set.
    pub level: String,
    /// `text` for people, `json` for log collectors.
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { level: "info".to_owned(), format: LogFormat::Text }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Why a configuration could not be loaded. Each variant names where the bad value came from.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A configuration file could not be read.
    #[error("cannot read configuration file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A configuration file is not valid TOML.
    #[error("configuration file {path} is not valid TOML: {message}")]
    Syntax { path: PathBuf, message: String },
    /// A key is unknown or its value has the wrong type.
    #[error("{origin}: {message}")]
    Invalid { origin: String, message: String },
}

/// Loads the configuration from its layers.
///
/// `env` is the process environment (only `USAGEFLOW__*` variables are read); `overrides`
/// are `key=value` strings from `--set`.
pub fn load<I>(files: &[PathBuf], env: I, overrides: &[String]) -> Result<Config, ConfigError>
where
    I: IntoIterator<Item = (String, String)>,
{
    let mut tree = Value::try_from(Config::default()).expect("defaults serialize");

    for path in files {
        let table = read_file(path)?;
        // Checked alone first so that an unknown key is reported against its file.
        check(Value::Table(table.clone()), || format!("configuration file {}", path.display()))?;
        merge(&mut tree, Value::Table(table));
    }

    let mut env: Vec<(String, String)> = env.into_iter().filter(|(k, _)| k.starts_with(ENV_PREFIX)).collect();
    env.sort();
    for (var, raw) in env {
        let key: Vec<String> = var[ENV_PREFIX.len()..].split("__").map(|part| part.to_ascii_lowercase()).collect();
        let origin = || format!("environment variable {var}");
        set_key(&mut tree, &key, &raw, &origin)?;
        check(tree.clone(), origin)?;
    }

    for item in overrides {
        let origin = || format!("--set {item}");
        let (key, raw) = item.split_once('=').ok_or_else(|| ConfigError::Invalid {
            origin: origin(),
            message: "expected KEY=VALUE, e.g. --set kafka.topic=usage-events".to_owned(),
        })?;
        let key: Vec<String> = key.trim().split('.').map(str::to_owned).collect();
        set_key(&mut tree, &key, raw.trim(), &origin)?;
        check(tree.clone(), origin)?;
    }

    let config = check(tree, || "configuration".to_owned())?;
    // Values each of right type that still cannot work, judged once all layers are merged.
    config
        .kafka
        .check()
        .and_then(|()| config.ingest.check())
        .and_then(|()| config.lake.check())
        .map_err(|invalid| ConfigError::Invalid { origin: "configuration".to_owned(), message: invalid.to_string() })?;
    Ok(config)
}

/// Reads one TOML file into a table.
pub fn read_file(path: &Path) -> Result<Table, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
    text.parse::<Table>().map_err(|e| ConfigError::Syntax { path: path.to_owned(), message: e.to_string() })
}

/// Deserializes a tree into [`Config`], naming the offending key on error.
fn check(tree: Value, origin: impl FnOnce() -> String) -> Result<Config, ConfigError> {
    serde_path_to_error::deserialize(tree).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner().to_string();
        let inner = inner.trim_end();
        let message = if path == "." { inner.to_owned() } else { format!("key `{path}`: {inner}") };
        ConfigError::Invalid { origin: origin(), message }
    })
}

/// Deep-merges `overlay` into `base`: tables merge key by key, anything else replaces.
fn merge(base: &mut Value, overlay: Value) {
    match (base, overlay) {
        (Value::Table(base), Value::Table(overlay)) => {
            for (key, value) in overlay {
                match base.get_mut(&key) {
                    Some(existing) => merge(existing, value),
                    None => {
                        base.insert(key, value);
                    }
                }
            }
        }
        (base, overlay) => *base = overlay,
    }
}

/// Sets `key` (a path of table keys) to `raw`, converted to the type of the value it replaces.
fn set_key(tree: &mut Value, key: &[String], raw: &str, origin: &dyn Fn() -> String) -> Result<(), ConfigError> {
    let invalid = |message: String| ConfigError::Invalid { origin: origin(), message };
    let dotted = key.join(".");
    if key.iter().any(String::is_empty) {
        return Err(invalid(format!("`{dotted}` is not a valid key")));
    }
    let (last, parents) = key.split_last().ok_or_else(|| invalid("empty key".to_owned()))?;
    let mut table = tree.as_table_mut().expect("the root is a table");
    for (depth, part) in parents.iter().enumerate() {
        let entry = table.entry(part.clone()).or_insert_with(|| Value::Table(Table::new()));
        table = entry
            .as_table_mut()
            .ok_or_else(|| invalid(format!("`{}` is a value, not a section", key[..=depth].join("."))))?;
    }
    let value = match table.get(last) {
        None | Some(Value::String(_)) => Value::String(raw.to_owned()),
        Some(Value::Integer(_)) => {
            Value::Integer(raw.parse().map_err(|_| invalid(format!("key `{dotted}` expects an integer, got `{raw}`")))?)
        }
        Some(Value::Boolean(_)) => Value::Boolean(
            raw.parse().map_err(|_| invalid(format!("key `{dotted}` expects true or false, got `{raw}`")))?,
        ),
        Some(Value::Array(_)) => match format!("v = {raw}").parse::<Table>().ok().and_then(|mut t| t.remove("v")) {
            Some(array @ Value::Array(_)) => array,
            _ => Value::Array(
                raw.split(',').map(str::trim).filter(|s| !s.is_empty()).map(|s| Value::String(s.to_owned())).collect(),
            ),
        },
        Some(Value::Table(_)) => {
            return Err(invalid(format!("`{dotted}` is a section; set one of its keys, e.g. `{dotted}.KEY`")));
        }
        Some(other) => {
            return Err(invalid(format!("key `{dotted}` holds a {} and cannot be set here", other.type_str())));
        }
    };
    table.insert(last.clone(), value);
    Ok(())
}

/// The configuration as TOML, with secrets replaced by `***`.
pub fn to_redacted_toml(config: &Config) -> String {
    let mut shown = config.clone();
    if !shown.store.s3.secret_access_key.is_empty() {
        shown.store.s3.secret_access_key = "***".to_owned();
    }
    for (key, value) in &mut shown.kafka.properties {
        if key.contains("password") || key.contains("secret") {
            *value = "***".to_owned();
        }
    }
    toml::to_string(&shown).expect("configuration serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn defaults_load_with_no_layers() {
        assert_eq!(load(&[], env(&[]), &[]).unwrap(), Config::default());
    }

    #[test]
    fn layers_override_in_order_files_env_flags() {
        let dir = tempfile::tempdir().unwrap();
        let a = write(&dir, "a.toml", "[kafka]\ntopic = \"from-a\"\ngroup_id = \"g-a\"\n[log]\nlevel = \"debug\"\n");
        let b = write(&dir, "b.toml", "[kafka]\ntopic = \"from-b\"\n");
        let config = load(
            &[a, b],
            env(&[("USAGEFLOW__KAFKA__GROUP_ID", "g-env"), ("USAGEFLOW__STORE__S3__ALLOW_HTTP", "true")]),
            &["log.level=warn".to_owned()],
        )
        .unwrap();
        assert_eq!(config.kafka.topic, "from-b");
        assert_eq!(config.kafka.group_id, "g-env");
        assert!(config.store.s3.allow_http);
        assert_eq!(config.log.level, "warn");
        assert_eq!(config.kafka.bootstrap_servers, KafkaConfig::default().bootstrap_servers);
    }

    #[test]
    fn unknown_key_in_a_file_names_the_file_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let f = write(&dir, "bad.toml", "[kafka]\nbootstrap = \"x:1\"\n");
        let err = load(std::slice::from_ref(&f), env(&[]), &[]).unwrap_err().to_string();
        assert!(err.contains(&f.display().to_string()), "{err}");
        assert!(err.contains("kafka.bootstrap") && err.contains("unknown field `bootstrap`"), "{err}");
    }

    #[test]
    fn unknown_section_and_env_key_are_named() {
        let err = load(&[], env(&[("USAGEFLOW__KAFKA__TOPICS", "x")]), &[]).unwrap_err().to_string();
        assert!(err.contains("USAGEFLOW__KAFKA__TOPICS") && err.contains("kafka.topics"), "{err}");
        let err = load(&[], env(&[]), &["nosuch.key=1".to_owned()]).unwrap_err().to_string();
        assert!(err.contains("--set nosuch.key=1") && err.contains("unknown field `nosuch`"), "{err}");
    }

    #[test]
    fn values_are_converted_to_the_key_type() {
        let err = load(&[], env(&[("USAGEFLOW__STORE__S3__ALLOW_HTTP", "yes")]), &[]).unwrap_err().to_string();
        assert!(err.contains("expects true or false, got `yes`"), "{err}");
        let err = load(&[], env(&[]), &["kafka=1".to_owned()]).unwrap_err().to_string();
        assert!(err.contains("`kafka` is a section"), "{err}");
        let err = load(&[], env(&[]), &["log.format=xml".to_owned()]).unwrap_err().to_string();
        assert!(err.contains("log.format") && err.contains("unknown variant `xml`"), "{err}");
        let config = load(&[], env(&[]), &["kafka.properties.security.protocol=plaintext".to_owned()]);
        // A dotted map key cannot be expressed with --set; it nests and is rejected clearly.
        assert!(config.is_err());
        let config = load(&[], env(&[("USAGEFLOW__KAFKA__PROPERTIES__LINGER.MS", "5")]), &[]).unwrap();
        assert_eq!(config.kafka.properties.get("linger.ms").map(String::as_str), Some("5"));
    }

    /// Values of the right type that cannot work are refused when the configuration loads,
    /// with the key named, whichever layer set them; the checks see the merged result.
    #[test]
    fn values_that_cannot_work_are_refused_by_key() {
        let refused = |overrides: &[&str]| {
            let overrides: Vec<String> = overrides.iter().map(|s| (*s).to_owned()).collect();
            load(&[], env(&[]), &overrides).unwrap_err().to_string()
        };
        let err = refused(&["kafka.topic="]);
        assert!(err.contains("key `kafka.topic`: a topic name is required"), "{err}");
        let err = refused(&["kafka.topic=usage events"]);
        assert!(err.contains("key `kafka.topic`") && err.contains("' '"), "{err}");
        let err = refused(&["kafka.dead_letter_topic=usage-events"]);
        assert!(err.contains("key `kafka.dead_letter_topic`") && err.contains("also the events topic"), "{err}");
        let err = refused(&["kafka.bootstrap_servers=a:1,,b:2"]);
        assert!(err.contains("key `kafka.bootstrap_servers`"), "{err}");
        let err = refused(&["ingest.max_batch_events=0"]);
        assert!(err.contains("key `ingest.max_batch_events`: must be greater than 0"), "{err}");
        let err = refused(&["ingest.validation.late_max_days=120"]);
        assert!(err.contains("key `ingest.dedupe_window_days`") && err.contains("counted twice"), "{err}");
        let err = refused(&["ingest.instance_id=a/b"]);
        assert!(err.contains("key `ingest.instance_id`"), "{err}");
        let err = refused(&["ingest.metrics_listen=nowhere"]);
        assert!(err.contains("key `ingest.metrics_listen`"), "{err}");
        let err = refused(&["lake.log_retention_hours=100"]);
        assert!(err.contains("key `lake.log_retention_hours`: must be at least 168"), "{err}");
        let err = refused(&["lake.checkpoint_interval=0"]);
        assert!(err.contains("key `lake.checkpoint_interval`: must be greater than 0"), "{err}");
        // Raising both together is fine: only the merged configuration is judged.
        let config = load(
            &[],
            env(&[("USAGEFLOW__INGEST__VALIDATION__LATE_MAX_DAYS", "120")]),
            &["ingest.dedupe_window_days=125".to_owned()],
        )
        .unwrap();
        assert_eq!(config.ingest.dedupe_window_days, 125);
    }

    #[test]
    fn syntax_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = write(&dir, "broken.toml", "[kafka\n");
        let err = load(&[f], env(&[]), &[]).unwrap_err().to_string();
        assert!(err.contains("broken.toml is not valid TOML"), "{err}");
        let err = load(&[PathBuf::from("/nonexistent/usageflow.toml")], env(&[]), &[]).unwrap_err().to_string();
        assert!(err.contains("cannot read configuration file /nonexistent/usageflow.toml"), "{err}");
    }

    #[test]
    fn redaction_hides_secrets() {
        let mut config = Config::default();
        config.store.s3.secret_access_key = "topsecret".into();
        config.kafka.properties.insert("sasl.password".into(), "pw".into());
        let shown = to_redacted_toml(&config);
        assert!(!shown.contains("topsecret") && !shown.contains("\"pw\""), "{shown}");
    }
}
