//! The local Kafka broker works the way the ingester relies on: a consumer group with manual
//! offset commits resumes exactly after what it committed.

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};
use usageflow_ingest::fetch::FetchQueue;

fn client(group: Option<&str>) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", support::kafka_bootstrap());
    if let Some(group) = group {
        config
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "6000");
    }
    config
}

async fn create_topic(name: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = client(None).create().unwrap();
    let results = admin
        .create_topics(&[NewTopic::new(name, partitions, TopicReplication::Fixed(1))], &AdminOptions::new())
        .await
        .unwrap();
    for result in results {
        result.unwrap();
    }
}

async fn produce(topic: &str, range: std::ops::Range<u32>) {
    let producer: FutureProducer = client(None).set("enable.idempotence", "true").create().unwrap();
    for i in range {
        let key = format!("k{i}");
        let payload = format!("event-{i}");
        producer
            .send(FutureRecord::to(topic).key(&key).payload(&payload), Duration::from_secs(10))
            .await
            .map_err(|(e, _)| e)
            .unwrap();
    }
}

/// Polls until `expected` messages arrived or the deadline passed; returns their payloads.
fn consume(consumer: &BaseConsumer, expected: usize, deadline: Duration) -> Vec<String> {
    let start = Instant::now();
    let mut seen = Vec::new();
    while seen.len() < expected && start.elapsed() < deadline {
        if let Some(message) = consumer.poll(Duration::from_millis(200)) {
            let message = message.unwrap();
            seen.push(String::from_utf8(message.payload().unwrap().to_vec()).unwrap());
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread")]
async fn consumer_group_resumes_after_manual_commit() {
    let topic = support::unique("stack-kafka");
    let group = support::unique("stack-group");
    create_topic(&topic, 3).await;
    produce(&topic, 0..300).await;

    let topic2 = topic.clone();
    let group2 = group.clone();
    let first = tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = client(Some(&group2)).create().unwrap();
        consumer.subscribe(&[&topic2]).unwrap();
        let seen = consume(&consumer, 300, Duration::from_secs(60));
        consumer.commit_consumer_state(CommitMode::Sync).unwrap();
        let committed = consumer.committed(Duration::from_secs(10)).unwrap();
        let total: i64 = committed
            .elements_for_topic(&topic2)
            .iter()
            .map(|e| match e.offset() {
                Offset::Offset(o) => o,
                other => panic!("partition {} has no committed offset: {other:?}", e.partition()),
            })
            .sum();
        (seen, total)
    })
    .await
    .unwrap();
    let (seen, committed_total) = first;
    assert_eq!(seen.len(), 300, "the first consumer must read every message once");
    let distinct: BTreeSet<_> = seen.iter().collect();
    assert_eq!(distinct.len(), 300);
    assert_eq!(committed_total, 300, "committed offsets must cover exactly what was read");

    // Messages produced after the commit are the only ones a new member of the group sees.
    produce(&topic, 300..350).await;
    let resumed = tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = client(Some(&group)).create().unwrap();
        consumer.subscribe(&[&topic]).unwrap();
        let mut seen = consume(&consumer, 50, Duration::from_secs(60));
        // Anything beyond the 50 new messages would show a lost commit.
        seen.extend(consume(&consumer, 1, Duration::from_secs(2)));
        seen
    })
    .await
    .unwrap();
    let expected: Vec<String> = (300..350).map(|i| format!("event-{i}")).collect();
    let mut resumed_sorted = resumed.clone();
    resumed_sorted.sort();
    let mut expected_sorted = expected;
    expected_sorted.sort();
    assert_eq!(resumed_sorted, expected_sorted);
}

#[test]
fn assigned_partition_can_be_read_from_an_explicit_offset() {
    let topic = support::unique("stack-assign");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        create_topic(&topic, 1).await;
        produce(&topic, 0..20).await;
    });
    let consumer: BaseConsumer = client(Some(&support::unique("stack-assign-group"))).create().unwrap();
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(&topic, 0, Offset::Offset(15)).unwrap();
    consumer.assign(&assignment).unwrap();
    let seen = consume(&consumer, 5, Duration::from_secs(30));
    assert_eq!(seen, (15..20).map(|i| format!("event-{i}")).collect::<Vec<_>>());
}

/// Reads from the fetch queue until `expected` messages arrived or the deadline passed:
/// (partition, offset, key, payload, headers) of each.
type Read = (i32, i64, Option<Vec<u8>>, String, Vec<(String, Option<Vec<u8>>)>);

fn drain(consumer: &BaseConsumer, fetch: &mut FetchQueue<'_>, expected: usize, deadline: Duration) -> Vec<Read> {
    let start = Instant::now();
    let mut seen = Vec::new();
    while seen.len() < expected && start.elapsed() < deadline {
        if let Some(m) = consumer.poll(Duration::ZERO) {
            panic!("a message bypassed the fetch queue: {:?}", m.map(|m| m.offset()));
        }
        fetch.consume(Duration::from_millis(100), |m| {
            assert!(m.error().is_none(), "{:?}", m.error());
            let mut headers = Vec::new();
            m.for_each_header(|name, value| {
                headers.push((String::from_utf8(name.to_vec()).unwrap(), value.map(<[u8]>::to_vec)))
            });
            let payload = String::from_utf8(m.payload().to_vec()).unwrap();
            seen.push((m.partition(), m.offset(), m.key().map(<[u8]>::to_vec), payload, headers));
        });
    }
    seen
}

#[test]
fn fetch_queue_reads_routed_partitions_in_order_and_forgets_unassigned_ones() {
    use rdkafka::message::{Header, OwnedHeaders};

    let topic = support::unique("stack-fetch");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let send = |range: std::ops::Range<u32>| {
        rt.block_on(async {
            let producer: FutureProducer = client(None).set("enable.idempotence", "true").create().unwrap();
            for i in range {
                let headers = OwnedHeaders::new()
                    .insert(Header { key: "ce_id", value: Some(&format!("id-{i}")) })
                    .insert(Header { key: "empty", value: None::<&[u8]> });
                let (key, payload) = ([i as u8, 0, 1], format!("event-{i}"));
                let record =
                    FutureRecord::to(&topic).partition((i % 2) as i32).key(&key[..]).payload(&payload).headers(headers);
                producer.send(record, Duration::from_secs(10)).await.map_err(|(e, _)| e).unwrap();
            }
        })
    };
    rt.block_on(create_topic(&topic, 2));
    send(0..200);

    let consumer: BaseConsumer = client(Some(&support::unique("stack-fetch-group"))).create().unwrap();
    let mut fetch = FetchQueue::new(&consumer).unwrap();
    fetch.router().forward(&topic, &[0, 1]);
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(&topic, 0, Offset::Offset(0)).unwrap();
    assignment.add_partition_offset(&topic, 1, Offset::Offset(50)).unwrap();
    consumer.assign(&assignment).unwrap();
    let seen = drain(&consumer, &mut fetch, 150, Duration::from_secs(30));
    assert_eq!(seen.len(), 150);
    for p in [0, 1] {
        let offsets: Vec<i64> = seen.iter().filter(|r| r.0 == p).map(|r| r.1).collect();
        let from = if p == 0 { 0 } else { 50 };
        assert_eq!(offsets, (from..100).collect::<Vec<_>>(), "partition {p} in offset order, none missing");
    }
    for (partition, offset, key, payload, headers) in &seen {
        let i = (offset * 2) as u32 + *partition as u32;
        assert_eq!(payload, &format!("event-{i}"));
        assert_eq!(key.as_deref(), Some(&[i as u8, 0, 1][..]));
        assert_eq!(
            headers,
            &vec![("ce_id".to_owned(), Some(format!("id-{i}").into_bytes())), ("empty".to_owned(), None)]
        );
    }

    // Unassigned partitions deliver nothing more; assigned again, a partition starts where
    // the new assignment says, with nothing left over from the old one.
    consumer.unassign().unwrap();
    send(200..240);
    assert!(drain(&consumer, &mut fetch, 1, Duration::from_secs(3)).is_empty());
    fetch.router().forward(&topic, &[0]);
    let mut again = TopicPartitionList::new();
    again.add_partition_offset(&topic, 0, Offset::Offset(110)).unwrap();
    consumer.assign(&again).unwrap();
    let seen = drain(&consumer, &mut fetch, 10, Duration::from_secs(30));
    let offsets: Vec<(i32, i64)> = seen.iter().map(|r| (r.0, r.1)).collect();
    assert_eq!(offsets, (110..120).map(|o| (0, o)).collect::<Vec<_>>());
    assert!(drain(&consumer, &mut fetch, 1, Duration::from_secs(2)).is_empty(), "partition 0 ends at 120");
}
