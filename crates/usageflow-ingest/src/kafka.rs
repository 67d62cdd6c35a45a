use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, ProducerContext};
use serde::{Deserialize, Serialize};

use crate::{Error, InvalidSetting, Result};

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
    /// Extra librdkafka properties (e.g. `security.protocol`), applied last; the ones in
    /// [`OWNED_PROPERTIES`] are refused.
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

const BROKERS: &str = "set kafka.bootstrap_servers instead";
const OFFSETS: &str = "offsets are committed only in the ingester's Kafka transaction, after the lake commit";
const CLASSIC: &str = "the ingester hands partitions over with the classic group protocol's rebalances";

/// The librdkafka properties the ingester sets itself, with why: the exactly-once contract
/// (docs/events.md) rests on them, so `kafka.properties` may not set them (nor their
/// librdkafka aliases).
pub const OWNED_PROPERTIES: &[(&str, &str)] = &[
    ("bootstrap.servers", BROKERS),
    ("metadata.broker.list", BROKERS),
    ("group.id", "set kafka.group_id instead"),
    ("group.instance.id", "set kafka.group_instance_id instead"),
    ("session.timeout.ms", "set kafka.session_timeout_ms instead"),
    ("transaction.timeout.ms", "set ingest.transaction_timeout_ms instead"),
    ("enable.auto.commit", OFFSETS),
    ("auto.commit.enable", OFFSETS),
    ("enable.auto.offset.store", OFFSETS),
    ("isolation.level", "the ingester reads committed messages only (read_committed)"),
    (
        "auto.offset.reset",
        "a partition without a committed offset is read from its start (earliest), so nothing is skipped",
    ),
    ("transactional.id", "each ingester instance has its own, derived from the group and the instance id"),
    ("enable.idempotence", "the ingester's transactions need the idempotent producer"),
    ("enable.partition.eof", "the ingester uses the end-of-partition events to know when it has caught up"),
    ("partition.assignment.strategy", "the ingester hands partitions over with eager (non-cooperative) rebalances"),
    ("group.protocol", CLASSIC),
    ("group.remote.assignor", CLASSIC),
];

/// Why `name` cannot be a Kafka topic, if it cannot: Kafka allows 1 to 249 ASCII letters,
/// digits, `.`, `_` and `-`, but not `.` or `..` alone.
pub fn topic_name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("a topic name is required".to_owned());
    }
    if name.len() > 249 {
        return Some(format!("a topic name has at most 249 characters, this one has {}", name.len()));
    }
    if name == "." || name == ".." {
        return Some(format!("`{name}` cannot be a topic name"));
    }
    if let Some(c) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))) {
        return Some(format!(
            "`{name}` has the character {c:?}; topic names have ASCII letters, digits, `.`, `_` and `-`"
        ));
    }
    None
}

impl KafkaConfig {
    /// Checks the values that no broker could accept, so that a bad setting stops the
    /// program at once with its key named, instead of failing every attempt to subscribe.
    pub fn check(&self) -> Result<(), InvalidSetting> {
        if self.bootstrap_servers.split(',').any(|s| s.trim().is_empty()) {
            return Err(InvalidSetting::new(
                "kafka.bootstrap_servers",
                format!("expected a comma-separated list of host:port, got `{}`", self.bootstrap_servers),
            ));
        }
        for (key, name) in [("kafka.topic", &self.topic), ("kafka.dead_letter_topic", &self.dead_letter_topic)] {
            if let Some(problem) = topic_name_problem(name) {
                return Err(InvalidSetting::new(key, problem));
            }
        }
        if self.dead_letter_topic == self.topic {
            return Err(InvalidSetting::new(
                "kafka.dead_letter_topic",
                format!("`{}` is also the events topic; rejected events would be read again", self.topic),
            ));
        }
        if self.group_id.trim().is_empty() {
            return Err(InvalidSetting::new("kafka.group_id", "a consumer group id is required"));
        }
        for key in self.properties.keys() {
            let normalized = key.trim().to_ascii_lowercase();
            if let Some((_, why)) = OWNED_PROPERTIES.iter().find(|(owned, _)| *owned == normalized) {
                return Err(InvalidSetting::new(
                    &format!("kafka.properties.{key}"),
                    format!("the ingester sets `{normalized}` itself and may not be overridden: {why}"),
                ));
            }
        }
        if !(1..=3_600_000).contains(&self.session_timeout_ms) {
            return Err(InvalidSetting::new(
                "kafka.session_timeout_ms",
                format!("must be between 1 and 3600000 (librdkafka's range), got {}", self.session_timeout_ms),
            ));
        }
        Ok(())
    }

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

/// A record of `payload` for `topic`, with `key` if there is one and `headers` in order.
pub(crate) fn record<'a, 'h>(
    topic: &'a str,
    key: Option<&'a [u8]>,
    payload: &'a [u8],
    headers: impl Iterator<Item = (&'h str, &'h [u8])>,
) -> BaseRecord<'a, [u8], [u8]> {
    let owned = headers.fold(OwnedHeaders::new(), |all, (key, value)| all.insert(Header { key, value: Some(value) }));
    let record = BaseRecord::to(topic).payload(payload).headers(owned);
    match key {
        Some(key) => record.key(key),
        None => record,
    }
}

/// Sends `record`, serving delivery reports while the producer's queue is full; `give_up` is
/// asked after each wait whether to stop trying (and with what error).
pub(crate) fn send_waiting<'a, C, K, P>(
    producer: &BaseProducer<C>,
    mut record: BaseRecord<'a, K, P, C::DeliveryOpaque>,
    wait: Duration,
    mut give_up: impl FnMut() -> Option<KafkaError>,
) -> std::result::Result<(), KafkaError>
where
    C: ProducerContext,
    K: rdkafka::message::ToBytes + ?Sized,
    P: rdkafka::message::ToBytes + ?Sized,
{
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                producer.poll(wait);
                if let Some(err) = give_up() {
                    return Err(err);
                }
            }
            Err((err, _)) => return Err(err),
        }
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

/// The offsets a topic's partitions span, as the brokers report them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicEnds {
    /// `(partition, low watermark, high watermark)`, by partition; empty when the topic does
    /// not exist.
    pub partitions: Vec<(i32, i64, i64)>,
}

impl TopicEnds {
    /// Messages the topic holds (control records of transactions included).
    pub fn messages(&self) -> i64 {
        self.partitions.iter().map(|(_, low, high)| (high - low).max(0)).sum()
    }

    /// The high watermark of `partition`, if the topic has it.
    pub fn high(&self, partition: i32) -> Option<i64> {
        self.partitions.iter().find(|(p, _, _)| *p == partition).map(|(_, _, high)| *high)
    }
}

impl std::fmt::Display for TopicEnds {
    /// `0:0-1200 1:0-1180`: each partition's low and high watermark.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.partitions.is_empty() {
            return f.write_str("(no partitions)");
        }
        for (i, (p, low, high)) in self.partitions.iter().enumerate() {
            write!(f, "{}{p}:{low}-{high}", if i == 0 { "" } else { " " })?;
        }
        Ok(())
    }
}

/// Asks the brokers for the partitions of `topic` and their watermarks, within `timeout` for
/// each request. A topic that does not exist has no partitions.
pub fn topic_ends<C: rdkafka::consumer::ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    timeout: Duration,
) -> std::result::Result<TopicEnds, KafkaError> {
    let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
    let mut ends = TopicEnds::default();
    let Some(found) = metadata.topics().iter().find(|t| t.name() == topic) else { return Ok(ends) };
    if found.error().is_some() {
        return Ok(ends);
    }
    let mut ids: Vec<i32> = found.partitions().iter().map(|p| p.id()).collect();
    ids.sort_unstable();
    for id in ids {
        let (low, high) = consumer.fetch_watermarks(topic, id, timeout)?;
        ends.partitions.push((id, low, high));
    }
    Ok(ends)
}

/// [`topic_ends`] with a client of its own (no group is joined).
pub fn topic_ends_of(config: &KafkaConfig, topic: &str, timeout: Duration) -> Result<TopicEnds> {
    let consumer: BaseConsumer = config.client_config().create().map_err(Error::ClientConfig)?;
    topic_ends(&consumer, topic, timeout).map_err(|source| Error::Unreachable {
        bootstrap: config.bootstrap_servers.clone(),
        timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_follow_kafkas_rules() {
        for ok in ["usage-events", "a", "usage.events_v2", &"x".repeat(249)] {
            assert_eq!(topic_name_problem(ok), None, "{ok}");
        }
        for (bad, says) in [
            ("", "required"),
            (".", "cannot be a topic name"),
            ("..", "cannot be a topic name"),
            ("usage/events", "'/'"),
            ("événements", "'é'"),
            (&"x".repeat(250), "at most 249"),
        ] {
            let problem = topic_name_problem(bad).unwrap_or_default();
            assert!(problem.contains(says), "{bad}: {problem}");
        }
    }

    #[test]
    fn the_defaults_pass_and_each_bad_value_is_named() {
        assert_eq!(KafkaConfig::default().check(), Ok(()));
        let with = |f: fn(&mut KafkaConfig)| {
            let mut c = KafkaConfig::default();
            f(&mut c);
            c.check().unwrap_err().key
        };
        assert_eq!(with(|c| c.bootstrap_servers = String::new()), "kafka.bootstrap_servers");
        assert_eq!(with(|c| c.topic = "a b".into()), "kafka.topic");
        assert_eq!(with(|c| c.dead_letter_topic = String::new()), "kafka.dead_letter_topic");
        assert_eq!(with(|c| c.dead_letter_topic = c.topic.clone()), "kafka.dead_letter_topic");
        assert_eq!(with(|c| c.group_id = " ".into()), "kafka.group_id");
        assert_eq!(with(|c| c.session_timeout_ms = 0), "kafka.session_timeout_ms");
    }

    #[test]
    fn properties_the_ingester_owns_are_refused_with_the_key_named() {
        let checked = |key: &str, value: &str| {
            let mut c = KafkaConfig::default();
            c.properties.insert(key.to_owned(), value.to_owned());
            c.check()
        };
        for (key, _) in OWNED_PROPERTIES {
            let err = checked(key, "x").unwrap_err();
            assert_eq!(err.key, format!("kafka.properties.{key}"));
            assert!(err.message.contains(&format!("sets `{key}` itself")), "{}", err.message);
        }
        let err = checked("Enable.Auto.Commit ", "true").unwrap_err();
        assert!(err.message.contains("Kafka transaction"), "{}", err.message);
        assert!(checked("isolation.level", "read_uncommitted").unwrap_err().message.contains("read_committed"));
        // What the ingester does not own passes.
        for key in ["security.protocol", "sasl.mechanisms", "linger.ms", "socket.keepalive.enable"] {
            assert_eq!(checked(key, "x"), Ok(()), "{key}");
        }
    }
}
