/// Errors of the ingestion layer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// librdkafka rejected a client setting.
    #[error("invalid Kafka client setting: {0}")]
    ClientConfig(#[source] rdkafka::error::KafkaError),

    /// The cluster did not answer a metadata request in time.
    #[error("Kafka cluster at {bootstrap} did not answer within {timeout_ms} ms: {source}")]
    Unreachable {
        bootstrap: String,
        timeout_ms: u64,
        #[source]
        source: rdkafka::error::KafkaError,
    },
}

/// A setting whose value cannot work, named by its key in the configuration file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("key `{key}`: {message}")]
pub struct InvalidSetting {
    /// The key, e.g. `kafka.topic`.
    pub key: String,
    /// What is wrong with its value.
    pub message: String,
}

impl InvalidSetting {
    pub(crate) fn new(key: &str, message: impl Into<String>) -> Self {
        Self { key: key.to_owned(), message: message.into() }
    }
}

/// Result of the ingestion layer.
pub type Result<T, E = Error> = std::result::Result<T, E>;
