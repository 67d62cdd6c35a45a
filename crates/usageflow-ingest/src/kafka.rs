use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// How Usageflow reaches Kafka.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Comma-separated `host:port` list of brokers.
    pub bootstrap_servers: String,
    /// Topic the producers write metering events to.
    pub topic: String,
    /// Topic that receives every rejected event, with the reason in its headers.
    pub dead_letter_topic: String,
    /// Consumer group of the ingesters; instances in one group share the partitions.
    pub group_id: String,
    /// Consumer session timeout: how long the group waits for a silent member.
    pub session_timeout_ms: u64,
    /// Static group membership: a stable id per instance lets a restarted ingester take its
    /// partitions back at once instead of waiting for the session to expire. Empty = dynamic.
    pub group_instance_id: String,
    /// Extra librdkafka properties (e.g. `security.protocol`), applied last.
    pub properties: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            bootstrap_servers: "127.0.0.1:19092".to_owned(),
            topic: "usage-events".to_owned(),
            dead_letter_topic: "usage-events-dlq".to_owned(),
            group_id: "usageflow-ingest".to_owned(),
            session_timeout_ms: 10_000,
            group_instance_id: String::new(),
            properties: BTreeMap::new(),
        }
    }
}

impl KafkaConfig {
    /// Base librdkafka client configuration: brokers plus the extra properties.
    pub fn client_config(&self) -> ClientConfig {
        self.with_properties(ClientConfig::new())
    }

    /// Sets the brokers, then applies the extra properties over `config` (so they win).
    pub fn with_properties(&self, mut config: ClientConfig) -> ClientConfig {
        config.set("bootstrap.servers", &self.bootstrap_servers);
        for (key, value) in &self.properties {
            config.set(key, value);
        }
        config
    }
}

/// What a metadata request returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerInfo {
    /// `id host:port` of each broker.
    pub brokers: Vec<String>,
    /// Topic names with their partition counts.
    pub topics: Vec<(String, usize)>,
}

/// Asks the cluster for its metadata; proves the brokers answer.
pub fn probe_cluster(config: &KafkaConfig, timeout: Duration) -> Result<BrokerInfo> {
    let consumer: BaseConsumer = config.client_config().create().map_err(Error::ClientConfig)?;
    let metadata = consumer.fetch_metadata(None, timeout).map_err(|source| Error::Unreachable {
        bootstrap: config.bootstrap_servers.clone(),
        timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
        source,
    })?;
    Ok(BrokerInfo {
        brokers: metadata.brokers().iter().map(|b| format!("{} {}:{}", b.id(), b.host(), b.port())).collect(),
        topics: metadata.topics().iter().map(|t| (t.name().to_owned(), t.partitions().len())).collect(),
    })
}
