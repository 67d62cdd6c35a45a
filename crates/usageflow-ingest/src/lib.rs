//! Kafka ingestion for Usageflow.
//!
//! Producers stream metering events into a Kafka topic. The ingester ([`Ingester`]) decodes
//! them (JSON or CloudEvents, [`decode`]), validates them against the catalogue
//! ([`validate`]), sends every rejected event with its reason to a dead-letter topic,
//! drops duplicates by event id, aggregates the rest into per-period usage records with
//! exact decimals ([`fixed`]), and commits Parquet files to the lake exactly once
//! ([`pipeline`] explains the protocol). [`loadgen`] produces realistic event streams.

mod aggregate;
mod config;
pub mod deadletter;
pub mod decode;
mod dedupe;
mod error;
pub mod fetch;
pub mod fixed;
mod kafka;
pub mod loadgen;
mod names;
pub mod pipeline;
pub mod reject;
mod rows;
mod scan;
pub mod validate;

pub use config::IngestConfig;
pub use error::{Error, InvalidSetting, Result};
pub use kafka::{BrokerInfo, KafkaConfig, TopicEnds, probe_cluster, topic_ends, topic_ends_of, topic_name_problem};
pub use pipeline::{CaughtUp, Counters, Ingester, PipelineError};
pub use reject::{Code, Rejection};
pub use validate::{Index, ValidationConfig, Validator};
