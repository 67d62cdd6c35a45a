//! The dead-letter topic: what it holds ([`summary`]), and sending its messages back to the
//! events topic once the cause of their rejection is fixed ([`redrive`]): a catalogue that
//! did not yet have an asset, a limit set too low.
//!
//! A message sent back is the original one: its key, its payload, its own headers (not the
//! `usageflow-*` ones the ingester added) and its original Kafka timestamp, so the time
//! checks judge it as they did when it first arrived. The ingester then validates it again;
//! de-duplication by event id makes sending the same messages back twice harmless.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{BaseProducer, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::KafkaConfig;
use crate::loadgen::{Deliveries, LoadgenError, delivery_error};

/// Header with the Kafka timestamp (ms) of the rejected message.
pub const SOURCE_TIMESTAMP: &str = "usageflow-source-timestamp";
/// Prefix of the headers the ingester adds to a dead-letter message.
const OURS: &str = "usageflow-";

/// Why reading or redriving the dead-letter topic failed.
#[derive(Debug, thiserror::Error)]
pub enum DeadLetterError {
    /// Kafka failed.
    #[error("Kafka: {0}")]
    Kafka(#[from] KafkaError),
    /// The topic was not read to its end in time.
    #[error("the dead-letter topic {topic} was not read to its end within {seconds} s")]
    Timeout { topic: String, seconds: u64 },
    /// Messages sent back were not delivered.
    #[error("sending back: {0}")]
    Delivery(#[from] LoadgenError),
}

/// A message of the dead-letter topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// Error code (`unknown_asset`, ...).
    pub code: String,
    /// The reason given.
    pub reason: String,
    /// Kafka timestamp (ms) of the rejected message, when the ingester recorded it.
    pub source_timestamp_ms: Option<i64>,
    /// The rejected message's key.
    pub key: Option<Vec<u8>>,
    /// The rejected message's payload.
    pub payload: Vec<u8>,
    /// The rejected message's own headers.
    pub headers: Vec<(String, Vec<u8>)>,
}

/// Calls `f` with every message of the dead-letter topic, up to its end as of the call.
pub fn read(kafka: &KafkaConfig, timeout: Duration, mut f: impl FnMut(DeadLetter)) -> Result<u64, DeadLetterError> {
    let topic = &kafka.dead_letter_topic;
    // The partitions are assigned, not subscribed to: reading a topic to its end needs no
    // consumer group, so it does not wait on a group coordinator (which a newly formatted
    // broker creates on the first join) and leaves no group behind.
    let consumer: BaseConsumer = kafka
        .with_properties(ClientConfig::new())
        .set("group.id", "usageflow-dead-letter-reader")
        .set("enable.auto.commit", "false")
        // Dead letters are published in the ingester's transactions.
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        .create()?;
    let deadline = Instant::now() + timeout;
    let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
    let mut assignment = TopicPartitionList::new();
    for partition in metadata.topics().iter().filter(|t| t.name() == topic).flat_map(|t| t.partitions()) {
        assignment.add_partition_offset(topic, partition.id(), Offset::Beginning)?;
    }
    let partitions = assignment.count();
    if partitions == 0 {
        return Ok(0);
    }
    consumer.assign(&assignment)?;
    let (mut at_end, mut read) = (BTreeSet::new(), 0u64);
    while at_end.len() < partitions {
        if Instant::now() > deadline {
            return Err(DeadLetterError::Timeout { topic: topic.clone(), seconds: timeout.as_secs() });
        }
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                at_end.insert(partition);
            }
            Some(Err(err)) => return Err(err.into()),
            Some(Ok(message)) => {
                read += 1;
                let mut letter = DeadLetter {
                    code: String::new(),
                    reason: String::new(),
                    source_timestamp_ms: None,
                    key: message.key().map(<[u8]>::to_vec),
                    payload: message.payload().unwrap_or_default().to_vec(),
                    headers: Vec::new(),
                };
                for header in message.headers().into_iter().flat_map(|h| h.iter()) {
                    let value = header.value.unwrap_or_default();
                    let text = || String::from_utf8_lossy(value).into_owned();
                    match header.key {
                        "usageflow-error-code" => letter.code = text(),
                        "usageflow-error-reason" => letter.reason = text(),
                        SOURCE_TIMESTAMP => letter.source_timestamp_ms = text().parse().ok().filter(|&t: &i64| t > 0),
                        key if key.starts_with(OURS) => {}
                        key => letter.headers.push((key.to_owned(), value.to_vec())),
                    }
                }
                f(letter);
            }
        }
    }
    Ok(read)
}

/// Dead-letter messages per error code.
pub fn summary(kafka: &KafkaConfig, timeout: Duration) -> Result<BTreeMap<String, u64>, DeadLetterError> {
    let mut counts = BTreeMap::new();
    read(kafka, timeout, |letter| *counts.entry(letter.code).or_insert(0) += 1)?;
    Ok(counts)
}

/// What [`redrive`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Redriven {
    /// Dead-letter messages read.
    pub read: u64,
    /// Of those, sent back (or, in a dry run, that would have been), per error code.
    pub sent: BTreeMap<String, u64>,
}

/// Sends the dead-letter messages with one of `codes` (every one if `codes` is empty) back to
/// the events topic, as they first arrived; with `dry_run`, only counts them.
pub fn redrive(
    kafka: &KafkaConfig,
    codes: &[String],
    dry_run: bool,
    timeout: Duration,
) -> Result<Redriven, DeadLetterError> {
    let producer: BaseProducer<Deliveries> = kafka
        .with_properties(ClientConfig::new())
        .set("enable.idempotence", "true")
        .set("linger.ms", "20")
        .create_with_context(Deliveries::default())?;
    let mut sent: BTreeMap<String, u64> = BTreeMap::new();
    let mut failure = None;
    let read = read(kafka, timeout, |letter| {
        if failure.is_some() || !(codes.is_empty() || codes.contains(&letter.code)) {
            return;
        }
        *sent.entry(letter.code.clone()).or_insert(0) += 1;
        if dry_run {
            return;
        }
        let headers = letter.headers.iter().map(|(k, v)| (k.as_str(), v.as_slice()));
        let mut record = crate::kafka::record(&kafka.topic, letter.key.as_deref(), &letter.payload, headers);
        if let Some(ms) = letter.source_timestamp_ms {
            record = record.timestamp(ms);
        }
        if let Err(err) = crate::kafka::send_waiting(&producer, record, Duration::from_millis(50), || None) {
            failure = Some(err);
        }
    })?;
    if let Some(err) = failure {
        return Err(err.into());
    }
    producer.flush(timeout)?;
    if let Some(err) = delivery_error(&producer) {
        return Err(err.into());
    }
    Ok(Redriven { read, sent })
}
