//! Kafka ingestion for Usageflow.
//!
//! Producers stream metering events into a Kafka topic; this crate holds the Kafka client
//! settings shared by the ingester, the load generator and the tools, and the connection
//! probe used by `usageflow doctor`.

mod error;
mod kafka;

pub use error::{Error, Result};
pub use kafka::{BrokerInfo, KafkaConfig, probe_cluster};
