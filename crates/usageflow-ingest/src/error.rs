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

/// Result of the ingestion layer.
pub type Result<T, E = Error> = std::result::Result<T, E>;
