//! The ingester: Kafka → validate → de-duplicate → aggregate → Parquet lake, exactly once.
//!
//! # Threads
//! * the **poll thread** reads messages in batches from the fetch queue into which the
//!   assigned partitions are routed (see the `fetch` module) and polls the `BaseConsumer`
//!   itself for everything else (rebalance callbacks run on it); it keeps each partition's
//!   offsets for the current batch, copies each message into a chunk (1,024 messages) for the
//!   worker that owns the message's partition, and decides where batches end;
//! * **workers** (`ingest.workers`, one per CPU by default) decode, validate, de-duplicate
//!   and aggregate the messages and append the raw events. A partition is routed to one
//!   worker while it is assigned, so its messages are processed in offset order; the
//!   de-duplication set is shared (64 locked shards, a chunk's ids inserted at once, see
//!   the `dedupe` module), so duplicates are found across partitions. At the end of a batch
//!   the poll thread sends every worker a *cut*; each worker hands what it holds to the
//!   flusher and starts the next batch;
//! * the **flusher thread** joins the poll thread's offsets with the workers' data and
//!   writes the batch: Parquet files (each partition's encoded on a thread of its own), then
//!   the lake commits, one to the `records` Delta table and then one to `events`;
//! * the **transaction thread** then runs the batch's Kafka transaction (its dead-letter
//!   events and the consumer offsets), one at a time in batch order, while the flusher writes
//!   the next batch. After a failed transaction it runs none, so Kafka's offsets never pass
//!   dead-letter events that were not published.
//!
//! Every hand-over is bounded: 256 chunks per worker (deep enough that a long run of one
//! partition's messages, up to a whole 8 MiB fetch, does not leave the other workers idle);
//! a finished batch is handed to the flusher only once it has written the previous one. When
//! they are full the poll thread waits, so memory stays bounded and the consumer is
//! back-pressured instead of anything being dropped.
//!
//! # Exactly once
//! The lake is the system of record for data: each commit to a table stores, per partition,
//! the next offset to read as a Delta application transaction (`L`, one per table), and is
//! refused if another writer moved a partition since this writer took it over. `records` is
//! committed before `events`, so `L(events) ≤ L(records)`. Kafka's committed group offset
//! (`K`) moves only inside the transaction that also publishes the batch's dead-letter
//! events, and only after both lake commits, so `K ≤ L`. After any failure the ingester
//! restarts from scratch: it consumes from `K`; messages below both positions are already in
//! the lake, so they are only re-validated to publish their dead-letter events (lost with the
//! aborted transaction); a message between the two (a stop between the two commits) is
//! de-duplicated and written to the table that lacks it only. Event ids are remembered from
//! the committed raw events below the lower position, so duplicates are recognised across
//! restarts and rebalances, and the de-duplication of a message read again decides as it
//! did the first time.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, SyncSender, channel, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use chrono::{DateTime, Datelike, Utc};
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, ConsumerGroupMetadata, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::producer::{BaseProducer, Producer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use rustc_hash::{FxHashMap, FxHashSet};
use usageflow_lake::tables::{RecordRow, RecordsBuilder};
use usageflow_lake::{DeltaLake, Table, TableCommit, TableFile, paths};

use crate::aggregate::{Agg, AggKey, Records};
use crate::decode::{CeHeaders, decode};
use crate::dedupe::{BatchScratch, Dedupe, event_key};
use crate::fetch::{FetchQueue, Fetched, Router};
use crate::reject::Rejection;
use crate::rows::{EventRows, Extra};
use crate::validate::{DynamicItems, Index, Validator, period_of};
use crate::{IngestConfig, KafkaConfig};

/// Why the ingester stopped.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// Kafka failed (broker down, transaction aborted, fenced).
    #[error("Kafka: {0}")]
    Kafka(#[from] KafkaError),
    /// The lake refused or failed a commit, or its tables could not be read.
    #[error("lake: {0}")]
    Commit(#[from] usageflow_lake::DeltaError),
    /// Reading committed lake files failed.
    #[error("lake read: {0}")]
    Read(#[from] usageflow_lake::tables::ReadError),
    /// Writing a data file failed.
    #[error("writing {path}: {reason}")]
    Write { path: String, reason: String },
    /// The flusher thread is gone.
    #[error("the flusher stopped: {0}")]
    Flusher(String),
    /// A setting no run could work with; the ingester does not start.
    #[error("invalid configuration: {0}")]
    Config(#[from] crate::InvalidSetting),
    /// A run that was to stop once caught up ([`Ingester::run_until_caught_up`]) had no
    /// partition assigned within its wait for the first assignment.
    #[error("no partition of topic `{topic}` was assigned to consumer group `{group}` within {seconds} s: {found}")]
    NotAssigned {
        /// The events topic.
        topic: String,
        /// The consumer group.
        group: String,
        /// How long the run waited.
        seconds: u64,
        /// What the brokers said of the topic.
        found: String,
    },
}

impl PipelineError {
    /// Whether another run cannot do better: [`Ingester::run`] returns these at once instead
    /// of restarting.
    pub fn is_fatal(&self) -> bool {
        matches!(self, Self::Config(_) | Self::NotAssigned { .. })
    }
}

/// When a run ends by itself: once it has caught up with the topic
/// ([`Ingester::run_until_caught_up`]), for batch runs, demos and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaughtUp {
    /// The run stops once every assigned partition is at its end and nothing new arrived
    /// for this long. The clock starts at the first assignment, never before, and again at
    /// every message and every change of the assignment.
    pub idle: Duration,
    /// With no partition assigned this long after the start, the run fails with
    /// [`PipelineError::NotAssigned`], naming the topic and what the brokers hold of it.
    pub assignment_timeout: Duration,
}

/// The poll thread's view of a [`CaughtUp`] run: the last change, and the end offset at which
/// each partition last reported its end (librdkafka's partition EOF: the high watermark, or
/// the last stable offset under `read_committed`).
#[derive(Debug)]
struct Watch {
    rule: CaughtUp,
    started: Instant,
    last_change: Instant,
    assigned: usize,
    at_end: FxHashMap<i32, i64>,
}

/// What the poll loop does after a look at a [`Watch`].
enum Verdict {
    Continue,
    Stop,
    Fail(PipelineError),
}

impl Watch {
    /// A watch for a run of an ingester started at `started`.
    fn new(rule: CaughtUp, started: Instant) -> Self {
        Self { rule, started, last_change: Instant::now(), assigned: 0, at_end: FxHashMap::default() }
    }

    /// Notes a turn of the poll loop: messages consumed and partitions assigned now.
    fn observe(&mut self, consumed: usize, assigned: usize) {
        if consumed > 0 || assigned != self.assigned {
            self.last_change = Instant::now();
            self.assigned = assigned;
        }
    }

    fn look(&mut self, consumer: &BaseConsumer<IngestContext>, kafka: &KafkaConfig) -> Verdict {
        const ASK: Duration = Duration::from_secs(5);
        if self.assigned == 0 {
            if self.started.elapsed() < self.rule.assignment_timeout {
                return Verdict::Continue;
            }
            let found = match crate::kafka::topic_ends(consumer, &kafka.topic, ASK) {
                Ok(ends) if ends.partitions.is_empty() => "the topic does not exist".to_owned(),
                Ok(ends) => format!(
                    "it has {} partition(s) holding {} message(s) (low-high offsets {ends}); another member of the \
                     group may hold them all, or the group coordinator did not answer",
                    ends.partitions.len(),
                    ends.messages()
                ),
                Err(err) => format!("the brokers at {} did not answer: {err}", kafka.bootstrap_servers),
            };
            return Verdict::Fail(PipelineError::NotAssigned {
                topic: kafka.topic.clone(),
                group: kafka.group_id.clone(),
                seconds: self.rule.assignment_timeout.as_secs(),
                found,
            });
        }
        if self.last_change.elapsed() < self.rule.idle {
            return Verdict::Continue;
        }
        // Idle for the whole period: stop if every assigned partition is at its end.
        self.last_change = Instant::now();
        match self.behind(consumer, &kafka.topic, ASK) {
            Ok(behind) if behind.is_empty() => Verdict::Stop,
            Ok(behind) => {
                tracing::info!(?behind, "idle but not caught up (partition, position, end); waiting");
                Verdict::Continue
            }
            Err(err) => {
                tracing::warn!(%err, "idle, but the partitions' ends could not be read; waiting");
                Verdict::Continue
            }
        }
    }

    /// The assigned partitions not at their end: `(partition, position, high watermark)`.
    fn behind(
        &self,
        consumer: &BaseConsumer<IngestContext>,
        topic: &str,
        ask: Duration,
    ) -> Result<Vec<(i32, i64, i64)>, KafkaError> {
        let positions = consumer.position()?;
        let mut behind = Vec::new();
        for e in positions.elements_for_topic(topic) {
            let (low, high) = consumer.fetch_watermarks(topic, e.partition(), ask)?;
            let position = e.offset().to_raw().filter(|o| *o >= 0).unwrap_or(-1);
            let reported_end = self.at_end.get(&e.partition()).copied().unwrap_or(-1);
            if position.max(reported_end) < high && high > low {
                behind.push((e.partition(), position, high));
            }
        }
        Ok(behind)
    }
}

/// Counters of one run, for progress lines and tests.
#[derive(Debug, Default)]
pub struct Counters {
    /// Messages polled.
    pub messages: std::sync::atomic::AtomicU64,
    /// Events accepted and counted.
    pub accepted: std::sync::atomic::AtomicU64,
    /// Events rejected (sent to the dead-letter topic).
    pub rejected: std::sync::atomic::AtomicU64,
    /// Duplicate events dropped.
    pub duplicates: std::sync::atomic::AtomicU64,
    /// Messages below the lake position, only re-validated.
    pub replayed: std::sync::atomic::AtomicU64,
    /// Batches committed to the lake (one commit to `records` and one to `events` each, of
    /// the tables the batch advances).
    pub commits: std::sync::atomic::AtomicU64,
    /// Time spent in lake commits (both tables), in microseconds: the commit share of ingest.
    pub commit_micros: std::sync::atomic::AtomicU64,
    /// Kafka transactions committed (a batch's dead-letter events and offsets, after its lake
    /// commit): a batch is fully committed when this counts it.
    pub transactions: std::sync::atomic::AtomicU64,
    /// Assignments taken (rebalances that gave this process partitions).
    pub assignments: std::sync::atomic::AtomicU64,
    /// Partitions assigned now.
    pub assigned_partitions: std::sync::atomic::AtomicU64,
}

fn add(counter: &std::sync::atomic::AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// A rejected message, kept until its dead-letter copy is published.
#[derive(Debug)]
struct Rejected {
    partition: i32,
    offset: i64,
    /// The message's Kafka timestamp (µs; 0 for none).
    kafka_ts: i64,
    key: Option<Vec<u8>>,
    payload: Vec<u8>,
    headers: Vec<(String, Vec<u8>)>,
    rejection: Rejection,
}

/// A partition's positions in the lake's two tables: the next offset each holds (`None`: none
/// yet). The ingester commits `records` first, so `events` is never ahead; after a crash
/// between the two commits, the partition is read again from the lower one and each table
/// skips what it holds.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Positions {
    records: Option<i64>,
    events: Option<i64>,
}

impl Positions {
    fn of(&self, table: Table) -> Option<i64> {
        match table {
            Table::Records => self.records,
            Table::Events => self.events,
        }
    }

    /// Whether `table` already holds `offset`.
    fn holds(&self, table: Table, offset: i64) -> bool {
        self.of(table).is_some_and(|p| offset < p)
    }

    /// The offset below which both tables hold everything.
    fn lower(&self) -> i64 {
        self.records.unwrap_or(0).min(self.events.unwrap_or(0))
    }

    /// Both moved on to `to`, where they were behind it.
    fn advance(&mut self, to: i64) {
        for p in [&mut self.records, &mut self.events] {
            if p.is_none_or(|v| v < to) {
                *p = Some(to);
            }
        }
    }
}

/// Offsets of one partition in the current batch, kept by the poll thread.
#[derive(Debug, Default, Clone, Copy)]
struct Marks {
    /// The lake positions when the batch started (the commits' compare-and-set values).
    lake_from: Positions,
    /// Set once a message that a table does not hold yet was polled.
    lake_to: Option<i64>,
    /// Next offset to consume.
    kafka_next: Option<i64>,
}

impl Marks {
    /// Where `table`'s commit moves the partition: `(from, to)`, if the batch reached past
    /// what the table holds.
    fn advance(&self, table: Table) -> Option<(Option<i64>, i64)> {
        let from = self.lake_from.of(table);
        let to = self.lake_to?;
        from.is_none_or(|f| to > f).then_some((from, to))
    }
}

/// What a worker made of one partition's messages in the current batch.
#[derive(Debug, Default)]
struct PartData {
    records: Records,
    events: EventRows,
    first_kafka_ts: Option<i64>,
    rejected: Vec<Rejected>,
}

/// One partition's share of a finished batch, as the flusher writes it.
#[derive(Debug, Default)]
struct PartBatch {
    marks: Marks,
    data: PartData,
    /// The category names of the worker that processed the partition (ids start at 1).
    categories: Arc<Vec<String>>,
    /// The dynamic items of that worker.
    dynamic: Arc<DynamicItems>,
}

/// A worker's share of a batch, handed over at a cut.
struct WorkerBatch {
    parts: FxHashMap<i32, PartData>,
    categories: Arc<Vec<String>>,
    dynamic: Arc<DynamicItems>,
}

/// A finished batch: the poll thread's marks, and the workers' data as they deliver it.
struct FlushJob {
    marks: BTreeMap<i32, Marks>,
    from_workers: Receiver<WorkerBatch>,
    workers: usize,
    cgm: Option<Arc<ConsumerGroupMetadata>>,
}

/// What a thread down the line is handed: a job, or a barrier to acknowledge once every job
/// handed before it is done.
enum Handed<J> {
    Job(Box<J>),
    Barrier(SyncSender<()>),
}

type ToFlusher = Handed<FlushJob>;
type ToTxn = Handed<TxnJob>;

/// Waits until the thread at the other end of `to` has done every job handed before.
fn barrier<J>(to: &SyncSender<Handed<J>>) {
    let (tx, rx) = sync_channel(1);
    if to.send(Handed::Barrier(tx)).is_ok() {
        let _ = rx.recv();
    }
}

/// Serves a thread's hand-overs in order: runs each job, unless the pipeline has failed (a
/// job's error is recorded in `failure`, and every later job is skipped); acknowledges a
/// barrier once `settle` has returned.
fn serve<J>(
    from: Receiver<Handed<J>>,
    failure: &Mutex<Option<PipelineError>>,
    mut run: impl FnMut(J) -> Result<(), PipelineError>,
    mut settle: impl FnMut(),
) {
    for msg in from {
        match msg {
            Handed::Job(job) => {
                if failure.lock().expect("failure slot").is_some() {
                    continue;
                }
                if let Err(err) = run(*job) {
                    failure.lock().expect("failure slot").get_or_insert(err);
                }
            }
            Handed::Barrier(ack) => {
                settle();
                let _ = ack.send(());
            }
        }
    }
}

/// Messages per chunk handed from the poll thread to a worker, and the payload bytes that
/// close a chunk early.
const CHUNK_MESSAGES: usize = 1024;
const CHUNK_BYTES: usize = 512 * 1024;
/// Chunks queued per worker before the poll thread waits (back-pressure). librdkafka hands
/// out a partition's fetched messages in one run (up to `max.partition.fetch.bytes`, 8 MiB of
/// compressed batches: about 110 chunks of the benchmark's events); a queue that holds such a
/// run keeps the other workers fed meanwhile.
const WORKER_QUEUE: usize = 256;

/// One polled message inside a [`Chunk`]: ranges index the chunk's buffers.
#[derive(Debug, Clone)]
struct Meta {
    partition: i32,
    offset: i64,
    kafka_ts: i64,
    /// Held by `records`: not counted again (de-duplicated, if `events` lacks it).
    skip_records: bool,
    /// Held by `events`: not stored again (de-duplicated and counted, if `records` lacks it).
    skip_events: bool,
    payload: Range<usize>,
    key: Option<Range<usize>>,
    headers: Range<usize>,
}

impl Meta {
    /// Below both tables' positions: only re-validated, for the dead-letter topic.
    fn replay(&self) -> bool {
        self.skip_records && self.skip_events
    }
}

/// A consumed message, as the poll thread reads it: from the consumer's own poll or from a
/// batch of the fetch queue.
trait Polled {
    fn partition(&self) -> i32;
    fn offset(&self) -> i64;
    fn timestamp_millis(&self) -> Option<i64>;
    fn payload(&self) -> &[u8];
    fn key(&self) -> Option<&[u8]>;
    fn for_each_header(&self, f: impl FnMut(&[u8], Option<&[u8]>));
}

impl Polled for BorrowedMessage<'_> {
    fn partition(&self) -> i32 {
        Message::partition(self)
    }
    fn offset(&self) -> i64 {
        Message::offset(self)
    }
    fn timestamp_millis(&self) -> Option<i64> {
        self.timestamp().to_millis()
    }
    fn payload(&self) -> &[u8] {
        Message::payload(self).unwrap_or(&[])
    }
    fn key(&self) -> Option<&[u8]> {
        Message::key(self)
    }
    fn for_each_header(&self, mut f: impl FnMut(&[u8], Option<&[u8]>)) {
        if let Some(headers) = self.headers() {
            for h in headers.iter() {
                f(h.key.as_bytes(), h.value);
            }
        }
    }
}

impl Polled for Fetched<'_> {
    fn partition(&self) -> i32 {
        Fetched::partition(self)
    }
    fn offset(&self) -> i64 {
        Fetched::offset(self)
    }
    fn timestamp_millis(&self) -> Option<i64> {
        Fetched::timestamp_millis(self)
    }
    fn payload(&self) -> &[u8] {
        Fetched::payload(self)
    }
    fn key(&self) -> Option<&[u8]> {
        Fetched::key(self)
    }
    fn for_each_header(&self, f: impl FnMut(&[u8], Option<&[u8]>)) {
        Fetched::for_each_header(self, f);
    }
}

/// Polled messages copied out of librdkafka's buffers, for one worker.
#[derive(Debug, Default)]
struct Chunk {
    data: Vec<u8>,
    metas: Vec<Meta>,
    /// Header name and value ranges into `data`.
    headers: Vec<(Range<usize>, Option<Range<usize>>)>,
}

impl Chunk {
    fn bytes(&mut self, b: &[u8]) -> Range<usize> {
        let start = self.data.len();
        self.data.extend_from_slice(b);
        start..self.data.len()
    }

    fn push(&mut self, msg: &impl Polled, kafka_ts: i64, held: Positions) {
        let offset = msg.offset();
        let (skip_records, skip_events) = (held.holds(Table::Records, offset), held.holds(Table::Events, offset));
        let payload = self.bytes(msg.payload());
        let key = msg.key().map(|k| self.bytes(k));
        let first = self.headers.len();
        msg.for_each_header(|name, value| {
            let name = self.bytes(name);
            let value = value.map(|v| self.bytes(v));
            self.headers.push((name, value));
        });
        let headers = first..self.headers.len();
        self.metas.push(Meta {
            partition: msg.partition(),
            offset,
            kafka_ts,
            skip_records,
            skip_events,
            payload,
            key,
            headers,
        });
    }

    /// The CloudEvents binary-mode headers of a message.
    fn ce_headers(&self, m: &Meta) -> CeHeaders<'_> {
        let mut ce = CeHeaders::default();
        for (name, value) in &self.headers[m.headers.clone()] {
            let value = value.as_ref().and_then(|v| std::str::from_utf8(&self.data[v.clone()]).ok());
            match &self.data[name.clone()] {
                b"ce_specversion" => ce.specversion = value,
                b"ce_id" => ce.id = value,
                b"ce_time" => ce.time = value,
                _ => {}
            }
        }
        ce
    }

    /// A rejected message, copied out for the dead-letter topic.
    fn rejected(&self, m: &Meta, rejection: Rejection) -> Rejected {
        Rejected {
            partition: m.partition,
            offset: m.offset,
            kafka_ts: m.kafka_ts,
            key: m.key.clone().map(|k| self.data[k].to_vec()),
            payload: self.data[m.payload.clone()].to_vec(),
            headers: self.headers[m.headers.clone()]
                .iter()
                .map(|(name, value)| {
                    let name = String::from_utf8_lossy(&self.data[name.clone()]).into_owned();
                    (name, value.clone().map(|v| self.data[v].to_vec()).unwrap_or_default())
                })
                .collect(),
            rejection,
        }
    }

    fn full(&self) -> bool {
        self.metas.len() >= CHUNK_MESSAGES || self.data.len() >= CHUNK_BYTES
    }

    fn clear(&mut self) {
        self.data.clear();
        self.metas.clear();
        self.headers.clear();
    }
}

enum ToWorker {
    Chunk(Chunk),
    /// Close the batch: hand everything processed so far to the flusher.
    Cut(SyncSender<WorkerBatch>),
}

/// Per-chunk counts, published once per chunk rather than per event.
#[derive(Debug, Default)]
struct Tally {
    accepted: u64,
    rejected: u64,
    duplicates: u64,
    replayed: u64,
}

/// A processing worker: decodes, validates, de-duplicates and aggregates the messages of
/// the partitions the poll thread gives it, in offset order per partition.
struct Worker {
    index: Arc<Index>,
    validator: Validator,
    dedupe: Arc<Dedupe>,
    /// The de-duplication keys of a chunk's valid events, and whether each was new.
    keys: Vec<u128>,
    fresh: Vec<bool>,
    /// The partition, usage record key and category id of a chunk's new events.
    record_keys: Vec<(i32, AggKey, u32)>,
    scratch: BatchScratch,
    categories: Vec<String>,
    category_ids: FxHashMap<String, u32>,
    parts: FxHashMap<i32, PartData>,
    counters: Arc<Counters>,
}

/// A valid event of the chunk being processed, waiting for the de-duplication verdict.
struct Candidate<'c> {
    meta: &'c Meta,
    valid: crate::validate::Valid,
    id: Cow<'c, str>,
    category: Option<Cow<'c, str>>,
    attributes: Option<&'c str>,
}

impl Worker {
    fn run(mut self, from_poll: Receiver<ToWorker>, recycle: Sender<Chunk>) {
        for msg in from_poll {
            match msg {
                ToWorker::Chunk(mut chunk) => {
                    let tally = self.process(&chunk);
                    add(&self.counters.accepted, tally.accepted);
                    add(&self.counters.rejected, tally.rejected);
                    add(&self.counters.duplicates, tally.duplicates);
                    add(&self.counters.replayed, tally.replayed);
                    chunk.clear();
                    let _ = recycle.send(chunk);
                }
                ToWorker::Cut(to_flusher) => {
                    let batch = WorkerBatch {
                        parts: std::mem::take(&mut self.parts),
                        categories: Arc::new(self.categories.clone()),
                        dynamic: Arc::new(self.validator.dynamic.clone()),
                    };
                    let _ = to_flusher.send(batch);
                }
            }
        }
    }

    /// Processes a chunk in three passes: decode and validate every message (rejections go
    /// to the dead-letter list at once), then de-duplicate the valid events' keys in one
    /// batch, then aggregate and append the new events, in offset order.
    fn process(&mut self, chunk: &Chunk) -> Tally {
        let mut tally = Tally::default();
        // Binary-mode `ce_time` is a bare RFC 3339 string and the decoder expects JSON text:
        // quoted copies, kept for the whole chunk like the events that borrow them.
        let quoted: Vec<(usize, String)> = chunk
            .metas
            .iter()
            .enumerate()
            .filter_map(|(i, m)| chunk.ce_headers(m).time.map(|t| (i, format!("\"{t}\""))))
            .collect();
        let mut quoted_iter = quoted.iter().peekable();
        let mut valid = Vec::with_capacity(chunk.metas.len());
        self.keys.clear();
        for (i, m) in chunk.metas.iter().enumerate() {
            let payload = &chunk.data[m.payload.clone()];
            let mut ce = chunk.ce_headers(m);
            if let Some((_, t)) = quoted_iter.next_if(|(at, _)| *at == i) {
                ce.time = Some(t);
            }
            // Matched in two steps rather than through a `Result` of both, which would copy
            // the decoded event once more.
            let event = match decode(payload, &ce) {
                Ok(event) => event,
                Err(rejection) => {
                    self.reject(chunk, m, rejection, &mut tally);
                    continue;
                }
            };
            match self.validator.validate(&event, m.kafka_ts) {
                Err(rejection) => self.reject(chunk, m, rejection, &mut tally),
                Ok(_) if m.replay() => tally.replayed += 1,
                Ok(v) => {
                    let product = &self.index.products[v.product as usize];
                    self.keys.push(event_key(&product.id, &event.id));
                    valid.push(Candidate {
                        meta: m,
                        valid: v,
                        id: event.id,
                        category: event.category,
                        attributes: event.attributes,
                    });
                }
            }
        }
        self.dedupe.insert_batch(&self.keys, &mut self.fresh, &mut self.scratch);
        let fresh = std::mem::take(&mut self.fresh);
        // The new events' record keys first, then their records loaded ahead, a partition's
        // run of events at a time (see `aggregate`).
        let mut keys = std::mem::take(&mut self.record_keys);
        keys.clear();
        for (event, &new) in valid.iter().zip(&fresh) {
            if new {
                let category = self.category_id(event.category.as_deref());
                keys.push((event.meta.partition, AggKey::of(&event.valid, category), category));
            }
        }
        for run in keys.chunk_by(|a, b| a.0 == b.0) {
            self.parts.entry(run[0].0).or_default().records.warm(run.iter().map(|(_, key, _)| key));
        }
        tally.accepted += keys.len() as u64;
        tally.duplicates += (valid.len() - keys.len()) as u64;
        let mut new_keys = keys.iter();
        for (event, &new) in valid.into_iter().zip(&fresh) {
            if new {
                let &(_, key, category) = new_keys.next().expect("a key per new event");
                self.accept(event, key, category);
            }
        }
        self.record_keys = keys;
        self.fresh = fresh;
        tally
    }

    /// The id of a category (1 for the first seen), 0 for none.
    fn category_id(&mut self, category: Option<&str>) -> u32 {
        let Some(c) = category else { return 0 };
        if let Some(&id) = self.category_ids.get(c) {
            return id;
        }
        self.categories.push(c.to_owned());
        let id = self.categories.len() as u32;
        self.category_ids.insert(c.to_owned(), id);
        id
    }

    fn reject(&mut self, chunk: &Chunk, m: &Meta, rejection: Rejection, tally: &mut Tally) {
        metrics::counter!("usageflow_events_rejected_total", "reason" => rejection.code.as_str()).increment(1);
        tally.rejected += 1;
        self.parts.entry(m.partition).or_default().rejected.push(chunk.rejected(m, rejection));
    }

    /// Adds a new valid event to its usage record (`key`) and to the raw events.
    fn accept(&mut self, event: Candidate<'_>, key: AggKey, category: u32) {
        let Candidate { meta: m, valid, id, category: _, attributes } = event;
        let part = self.parts.entry(m.partition).or_default();
        if !m.skip_records {
            part.records.add(key, &valid);
        }
        if !m.skip_events {
            part.first_kafka_ts.get_or_insert(m.kafka_ts);
            let extra = Extra { id: &id, category, attributes, offset: m.offset, kafka_ts: m.kafka_ts };
            part.events.push(&valid, &extra);
        }
    }
}

/// The poll thread's end of a worker.
struct WorkerLink {
    to_worker: SyncSender<ToWorker>,
    /// The chunk being filled for this worker.
    pending: Chunk,
    /// Partitions currently routed to this worker.
    partitions: usize,
}

/// State of the poll thread (inside the consumer context, so rebalance callbacks reach it):
/// batch boundaries, partition positions, and routing of messages to workers.
struct Processor {
    topic: String,
    group: String,
    config: IngestConfig,
    dedupe: Arc<Dedupe>,
    loaded_event_files: FxHashSet<String>,
    /// Lake positions per owned partition (after the batch being flushed, if any).
    lake_next: FxHashMap<i32, Positions>,
    marks: BTreeMap<i32, Marks>,
    workers: Vec<WorkerLink>,
    /// Which worker processes a partition; fixed while the partition is assigned, so each
    /// partition is processed in offset order by one worker.
    worker_of: FxHashMap<i32, usize>,
    recycled: Receiver<Chunk>,
    batch_events: usize,
    batch_bytes: usize,
    batch_started: Instant,
    reported: [u64; 4],
    cgm: Option<Arc<ConsumerGroupMetadata>>,
    to_flusher: SyncSender<ToFlusher>,
    failure: Arc<Mutex<Option<PipelineError>>>,
    counters: Arc<Counters>,
    lake: DeltaLake,
    runtime: tokio::runtime::Handle,
}

impl Processor {
    fn fail(&self, err: PipelineError) {
        let mut slot = self.failure.lock().expect("failure slot");
        if slot.is_none() {
            *slot = Some(err);
        }
    }

    fn failed(&self) -> bool {
        self.failure.lock().expect("failure slot").is_some()
    }

    /// Records the message's offsets and copies it into its worker's chunk.
    fn route(&mut self, msg: &impl Polled) {
        let partition = msg.partition();
        let offset = msg.offset();
        let kafka_ts = msg.timestamp_millis().unwrap_or(0).saturating_mul(1000);
        let held = self.lake_next.get(&partition).copied().unwrap_or_default();
        let marks = self.marks.entry(partition).or_insert_with(|| Marks { lake_from: held, ..Marks::default() });
        marks.kafka_next = Some(offset + 1);
        if offset >= held.lower() {
            marks.lake_to = Some(offset + 1);
        }
        self.batch_bytes += msg.payload().len();
        self.batch_events += 1;
        add(&self.counters.messages, 1);

        let worker = match self.worker_of.get(&partition) {
            Some(&w) => w,
            None => {
                let w = (0..self.workers.len()).min_by_key(|&w| self.workers[w].partitions).unwrap_or(0);
                self.workers[w].partitions += 1;
                self.worker_of.insert(partition, w);
                w
            }
        };
        let link = &mut self.workers[worker];
        link.pending.push(msg, kafka_ts, held);
        if link.pending.full() {
            self.send_chunk(worker);
        }
    }

    /// Routes a message and closes the batch if that made it due.
    fn take(&mut self, msg: &impl Polled) {
        self.route(msg);
        if self.batch_due() {
            self.hand_off();
        }
    }

    /// Hands the worker its pending chunk (waits while the worker's queue is full).
    fn send_chunk(&mut self, worker: usize) {
        let fresh = self.recycled.try_recv().unwrap_or_default();
        let link = &mut self.workers[worker];
        let chunk = std::mem::replace(&mut link.pending, fresh);
        if link.to_worker.send(ToWorker::Chunk(chunk)).is_err() {
            self.fail(PipelineError::Flusher("a worker stopped".into()));
        }
    }

    /// Hands every worker the messages polled so far.
    fn send_pending(&mut self) {
        for w in 0..self.workers.len() {
            if !self.workers[w].pending.metas.is_empty() {
                self.send_chunk(w);
            }
        }
    }

    /// Whether the batch is full or old. The clock is read every 256 messages, not per message.
    fn batch_due(&self) -> bool {
        self.batch_events >= self.config.max_batch_events
            || self.batch_bytes >= self.config.max_batch_bytes
            || (self.batch_events.is_multiple_of(256) && self.batch_old())
    }

    fn batch_old(&self) -> bool {
        self.batch_events > 0 && self.batch_started.elapsed() >= Duration::from_millis(self.config.flush_interval_ms)
    }

    /// Publishes the counters' progress as metrics (once per batch, off the per-event path).
    fn report(&mut self) {
        let c = &self.counters;
        let now = [
            c.messages.load(Ordering::Relaxed),
            c.accepted.load(Ordering::Relaxed),
            c.duplicates.load(Ordering::Relaxed),
            c.rejected.load(Ordering::Relaxed),
        ];
        let names =
            ["usageflow_events_in_total", "usageflow_events_accepted_total", "usageflow_events_duplicate_total"];
        for (i, name) in names.iter().enumerate() {
            metrics::counter!(*name).increment(now[i].saturating_sub(self.reported[i]));
        }
        self.reported = now;
    }

    /// Closes the batch: the workers hand their share to the flusher, which writes it after
    /// the previous batch (the poll thread waits until the flusher has written that one).
    fn hand_off(&mut self) {
        self.report();
        self.batch_events = 0;
        self.batch_bytes = 0;
        self.batch_started = Instant::now();
        if self.marks.is_empty() {
            return;
        }
        self.send_pending();
        let (to_flusher, from_workers) = sync_channel(self.workers.len());
        for link in &self.workers {
            if link.to_worker.send(ToWorker::Cut(to_flusher.clone())).is_err() {
                self.fail(PipelineError::Flusher("a worker stopped".into()));
            }
        }
        drop(to_flusher);
        let marks = std::mem::take(&mut self.marks);
        for (p, m) in &marks {
            if let Some(to) = m.lake_to {
                self.lake_next.entry(*p).or_default().advance(to);
            }
        }
        let job = FlushJob { marks, from_workers, workers: self.workers.len(), cgm: self.cgm.clone() };
        if self.to_flusher.send(Handed::Job(Box::new(job))).is_err() {
            self.fail(PipelineError::Flusher("channel closed".into()));
        }
    }

    /// Waits until every handed-off batch is flushed.
    fn barrier(&self) {
        barrier(&self.to_flusher);
    }

    /// Takes ownership of newly assigned partitions: their positions in both tables (read
    /// from the tables' latest snapshots, on which the next commits build) and the event ids
    /// committed for them below the lower of the two.
    fn assign(&mut self, partitions: &[i32]) {
        let loaded = self.runtime.block_on(async {
            let records = self.lake.positions(Table::Records, &self.group, &self.topic, partitions).await?;
            let events = self.lake.positions(Table::Events, &self.group, &self.topic, partitions).await?;
            let positions: BTreeMap<i32, Positions> = partitions
                .iter()
                .map(|p| {
                    let at = Positions {
                        records: records.get(p).copied().flatten(),
                        events: events.get(p).copied().flatten(),
                    };
                    (*p, at)
                })
                .collect();
            let state = self.lake.state(Table::Events).await?;
            let cutoff = Utc::now() - chrono::Duration::days(i64::from(self.config.dedupe_window_days) + 1);
            let cutoff_day = cutoff.format("%Y-%m-%d").to_string();
            let fresh: Vec<&TableFile> = state
                .files
                .values()
                .filter(|f| f.partition("date").is_none_or(|d| d >= cutoff_day.as_str()))
                .filter(|f| !self.loaded_event_files.contains(&f.path))
                .filter(|f| f.kafka_partition().is_none_or(|p| partitions.contains(&p)))
                .collect();
            let below: BTreeMap<i32, i64> = positions.iter().map(|(p, at)| (*p, at.lower())).collect();
            let mut ids = Vec::new();
            let n = usageflow_lake::tables::event_ids(
                self.lake.store(),
                fresh.iter().copied(),
                &below,
                |_, product, id| {
                    ids.push(event_key(product, id));
                },
            )
            .await?;
            let paths: Vec<String> = fresh.iter().map(|f| f.path.clone()).collect();
            Ok::<_, PipelineError>((state.version, positions, ids, n, paths))
        });
        match loaded {
            Ok((version, positions, ids, n, paths)) => {
                for (p, at) in &positions {
                    self.lake_next.insert(*p, *at);
                    if at.records != at.events {
                        tracing::warn!(
                            partition = p,
                            records = ?at.records,
                            events = ?at.events,
                            "the tables' positions differ (a stop between their commits): reading on from the lower"
                        );
                    }
                }
                self.dedupe.extend(&ids);
                self.loaded_event_files.extend(paths);
                add(&self.counters.assignments, 1);
                self.counters.assigned_partitions.store(self.lake_next.len() as u64, Ordering::Relaxed);
                tracing::info!(
                    ?partitions,
                    events_version = version,
                    event_ids = n,
                    remembered = self.dedupe.len(),
                    "partitions assigned"
                );
            }
            Err(err) => self.fail(err),
        }
    }

    fn revoke(&mut self, partitions: &[i32]) {
        self.hand_off();
        self.barrier();
        for p in partitions {
            self.lake_next.remove(p);
            if let Some(w) = self.worker_of.remove(p) {
                self.workers[w].partitions -= 1;
            }
        }
        self.counters.assigned_partitions.store(self.lake_next.len() as u64, Ordering::Relaxed);
        tracing::info!(?partitions, "partitions revoked after flushing their batch");
    }
}

/// Logs a consumer error (the end of a partition is none); returns it if the consumer cannot
/// go on.
fn consumer_error(err: &KafkaError) -> Option<KafkaError> {
    if matches!(err, KafkaError::PartitionEOF(_)) {
        return None;
    }
    tracing::warn!(%err, "consumer error");
    matches!(err, KafkaError::MessageConsumptionFatal(_)).then(|| err.clone())
}

/// Consumer context: rebalance callbacks reach the processor, and newly assigned partitions
/// are routed into the fetch queue.
struct IngestContext {
    processor: Mutex<Option<Processor>>,
    topic: String,
    router: Mutex<Option<Router>>,
}

impl ClientContext for IngestContext {}

fn partitions_of(tpl: &TopicPartitionList) -> Vec<i32> {
    tpl.elements().iter().map(|e| e.partition()).collect()
}

impl ConsumerContext for IngestContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => {
                if let Some(p) = self.processor.lock().expect("processor").as_mut() {
                    p.revoke(&partitions_of(tpl));
                }
            }
            // Before the assignment starts fetching, so that every message of these
            // partitions goes to the fetch queue.
            Rebalance::Assign(tpl) => {
                if let Some(router) = self.router.lock().expect("router").as_ref() {
                    router.forward(&self.topic, &partitions_of(tpl));
                }
            }
            Rebalance::Error(_) => {}
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance
            && let Some(p) = self.processor.lock().expect("processor").as_mut()
        {
            p.cgm = consumer.group_metadata().map(Arc::new);
            p.assign(&partitions_of(tpl));
        }
    }
}

/// Writes batches: Parquet files, lake commit, Kafka transaction.
struct Flusher {
    topic: String,
    group: String,
    index: Arc<Index>,
    lake: DeltaLake,
    /// The batch's Kafka transaction runs on a thread of its own while the next batch is
    /// written (the rendezvous lets one transaction wait at most).
    to_txn: SyncSender<ToTxn>,
    counters: Arc<Counters>,
}

/// A batch's Kafka transaction: its dead-letter events and the consumer offsets after it.
struct TxnJob {
    rejected: Vec<Rejected>,
    offsets: TopicPartitionList,
    cgm: Option<Arc<ConsumerGroupMetadata>>,
}

/// Runs the batches' Kafka transactions, one at a time, in batch order. After a failure it
/// runs none: a later batch's offsets must not pass the dead-letter events of one whose
/// transaction was lost.
struct Transactor {
    topic: String,
    dead_letter_topic: String,
    producer: BaseProducer,
    txn_timeout: Duration,
    failure: Arc<Mutex<Option<PipelineError>>>,
    counters: Arc<Counters>,
}

fn month_of(us: i64) -> String {
    let t = DateTime::<Utc>::from_timestamp_micros(us).unwrap_or_default();
    format!("{:04}-{:02}", t.year(), t.month())
}

fn date_of(us: i64) -> String {
    DateTime::<Utc>::from_timestamp_micros(us).unwrap_or_default().format("%Y-%m-%d").to_string()
}

fn nonce() -> String {
    let n = Utc::now().timestamp_nanos_opt().unwrap_or_default() as u64 ^ u64::from(std::process::id()).rotate_left(32);
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(&n.to_le_bytes()))
}

/// An encoded data file: where it goes, its bytes, and its `add` action's content.
type Encoded = (Path, Bytes, TableFile);

/// Encodes one data file of `table` at `path` (in the store) with its partition values and
/// statistics.
fn encode(batch: &RecordBatch, table: Table, path: Path, partition: &[(&str, &str)]) -> Result<Encoded, PipelineError> {
    let prefix = format!("lake/{}/", table.name());
    let in_table = path.as_ref().strip_prefix(&prefix).unwrap_or(path.as_ref()).to_owned();
    let (file, bytes) = usageflow_lake::delta::encode_file(table, in_table, partition, batch)
        .map_err(|e| PipelineError::Write { path: path.to_string(), reason: e.to_string() })?;
    Ok((path, bytes, file))
}

impl Flusher {
    async fn put(&self, path: Path, bytes: Bytes) -> Result<u64, PipelineError> {
        let len = bytes.len() as u64;
        self.lake
            .store()
            .put(&path, PutPayload::from(bytes))
            .await
            .map_err(|e| PipelineError::Write { path: path.to_string(), reason: e.to_string() })?;
        Ok(len)
    }

    /// Encodes the data files of one partition's batch (CPU only; they are stored after).
    fn encode_files(&self, partition: i32, batch: &mut PartBatch) -> Result<Vec<Encoded>, PipelineError> {
        let Some(to) = batch.marks.lake_to else {
            return Ok(Vec::new());
        };
        let from = |table| batch.marks.lake_from.of(table).unwrap_or(0);
        let mut files = Vec::new();
        let nonce = nonce();
        // Records, one file per product and month.
        let mut groups: BTreeMap<(u32, String), Vec<(&AggKey, &Agg)>> = BTreeMap::new();
        for (key, agg) in batch.data.records.iter() {
            let product = self.index.assets[key.asset as usize].product;
            groups.entry((product, month_of(key.period_start))).or_default().push((key, agg));
        }
        for ((product_idx, month), rows) in groups {
            let product = &self.index.products[product_idx as usize];
            let mut builder = RecordsBuilder::default();
            for (key, agg) in &rows {
                let asset = &self.index.assets[key.asset as usize];
                let item = batch.dynamic.info(&self.index, product_idx, key.item());
                builder.push(&RecordRow {
                    product_id: &product.id,
                    contract_id: &asset.contract,
                    marketplace_id: &asset.marketplace,
                    hub_id: &asset.hub,
                    vendor_id: &asset.vendor,
                    provider_id: &asset.provider,
                    asset_id: &asset.id,
                    item_id: item.id.as_deref(),
                    item_mpn: &item.mpn,
                    item_precision: item.scale as i8,
                    tier: (key.tier >= 0).then_some(key.tier),
                    category_id: (key.category > 0).then(|| batch.categories[key.category as usize - 1].as_str()),
                    period_start: key.period_start,
                    period_end: period_of(product.aggregation, key.period_start).1,
                    quantity: agg.quantity(),
                    amount: agg.amount(),
                    event_count: agg.count(),
                    first_event_at: agg.first(),
                    last_event_at: agg.last(),
                    kafka_partition: partition,
                });
            }
            let path = paths::records_file(&product.id, &month, partition, from(Table::Records), to, &nonce);
            let values = [("product", product.id.as_str()), ("month", month.as_str())];
            files.push(encode(&builder.finish(), Table::Records, path, &values)?);
        }
        if !batch.data.events.is_empty() {
            let date = date_of(batch.data.first_kafka_ts.unwrap_or_default());
            let path = paths::events_file(&date, partition, from(Table::Events), to, &nonce);
            let events = batch.data.events.take_batch(&self.index, &batch.dynamic, &batch.categories, partition);
            files.push(encode(&events, Table::Events, path, &[("date", date.as_str())])?);
        }
        Ok(files)
    }

    /// Joins the poll thread's marks with the workers' data of a batch.
    fn gather(job: FlushJob) -> Result<BTreeMap<i32, PartBatch>, PipelineError> {
        let mut parts: BTreeMap<i32, PartBatch> =
            job.marks.into_iter().map(|(p, marks)| (p, PartBatch { marks, ..PartBatch::default() })).collect();
        let mut delivered = FxHashSet::default();
        for _ in 0..job.workers {
            let share = job.from_workers.recv().map_err(|_| PipelineError::Flusher("a worker stopped".into()))?;
            for (p, data) in share.parts {
                let Some(batch) = parts.get_mut(&p) else {
                    return Err(PipelineError::Flusher(format!("partition {p} has data but no offsets")));
                };
                if !delivered.insert(p) {
                    return Err(PipelineError::Flusher(format!("partition {p} was processed by two workers")));
                }
                batch.data = data;
                batch.categories = share.categories.clone();
                batch.dynamic = share.dynamic.clone();
            }
        }
        Ok(parts)
    }

    fn flush(&self, runtime: &tokio::runtime::Handle, job: FlushJob) -> Result<(), PipelineError> {
        let cgm = job.cgm.clone();
        let mut parts = Self::gather(job)?;
        let started = Instant::now();
        let span = tracing::info_span!("flush", topic = %self.topic, partitions = parts.len());
        let _entered = span.enter();
        // 1. Data files, then 2. the lake commits: `records`, then `events`.
        let commit =
            || TableCommit { operation: "ingest".to_owned(), group: self.group.clone(), ..TableCommit::default() };
        let mut requests = [commit(), commit()];
        // Partitions are encoded in parallel (on a 2-core machine the workers are often waiting
        // for this batch's hand-over meanwhile), then stored.
        let encoded: Vec<Result<Vec<Encoded>, PipelineError>> = std::thread::scope(|scope| {
            let encoders: Vec<_> = parts
                .iter_mut()
                .map(|(partition, batch)| scope.spawn(|| self.encode_files(*partition, batch)))
                .collect();
            encoders
                .into_iter()
                .map(|e| e.join().unwrap_or_else(|_| Err(PipelineError::Flusher("a Parquet encoder panicked".into()))))
                .collect()
        });
        runtime.block_on(async {
            for files in encoded {
                for (path, bytes, file) in files? {
                    self.put(path, bytes).await?;
                    metrics::counter!("usageflow_lake_bytes_written_total", "table" => file.table.name())
                        .increment(file.size);
                    requests[usize::from(file.table == Table::Events)].add.push(file);
                }
            }
            let mut committed = false;
            for (request, table) in requests.iter_mut().zip(Table::ALL) {
                for (partition, batch) in &parts {
                    if let Some(advance) = batch.marks.advance(table) {
                        request.advance.entry(self.topic.clone()).or_default().insert(*partition, advance);
                    }
                }
                if !request.advance.is_empty() {
                    let started = Instant::now();
                    self.lake.commit(table, request).await?;
                    let took = started.elapsed();
                    metrics::histogram!("usageflow_lake_commit_seconds", "table" => table.name())
                        .record(took.as_secs_f64());
                    add(&self.counters.commit_micros, u64::try_from(took.as_micros()).unwrap_or(u64::MAX));
                    committed = true;
                }
            }
            if committed {
                add(&self.counters.commits, 1);
            }
            Ok::<_, PipelineError>(())
        })?;
        // 3. Dead-letter events and consumer offsets, in one transaction, on the transaction
        // thread (after this lake commit, so Kafka's offsets never pass the lake's).
        let mut offsets = TopicPartitionList::new();
        let mut rejected = Vec::new();
        for (partition, batch) in &mut parts {
            if let Some(next) = batch.marks.kafka_next {
                offsets.add_partition_offset(&self.topic, *partition, Offset::Offset(next))?;
            }
            rejected.append(&mut batch.data.rejected);
        }
        let seconds = started.elapsed().as_secs_f64();
        metrics::histogram!("usageflow_flush_duration_seconds").record(seconds);
        let files = requests.iter().map(|r| r.add.len()).sum::<usize>();
        tracing::debug!(files, rejected = rejected.len(), seconds, "batch written");
        if offsets.count() > 0 {
            let job = TxnJob { rejected, offsets, cgm };
            if self.to_txn.send(Handed::Job(Box::new(job))).is_err() {
                return Err(PipelineError::Flusher("the transaction thread stopped".into()));
            }
        }
        Ok(())
    }

    /// Waits until every transaction handed over is done.
    fn barrier(&self) {
        barrier(&self.to_txn);
    }
}

impl Transactor {
    fn run(self, from_flusher: Receiver<ToTxn>) {
        let run = |job: TxnJob| {
            let started = Instant::now();
            let result = self.transaction(&job);
            metrics::histogram!("usageflow_transaction_duration_seconds").record(started.elapsed().as_secs_f64());
            if result.is_ok() {
                add(&self.counters.transactions, 1);
            }
            result
        };
        serve(from_flusher, &self.failure, run, || {});
    }

    fn transaction(&self, job: &TxnJob) -> Result<(), PipelineError> {
        let cgm = job.cgm.as_deref().ok_or_else(|| PipelineError::Flusher("no consumer group metadata".into()))?;
        self.producer.begin_transaction()?;
        let result = (|| {
            for r in &job.rejected {
                self.send_dead_letter(r)?;
            }
            self.producer.send_offsets_to_transaction(&job.offsets, cgm, self.txn_timeout)?;
            self.producer.commit_transaction(self.txn_timeout)
        })();
        if let Err(err) = result {
            let _ = self.producer.abort_transaction(self.txn_timeout);
            return Err(err.into());
        }
        Ok(())
    }

    fn send_dead_letter(&self, r: &Rejected) -> Result<(), KafkaError> {
        let partition = r.partition.to_string();
        let offset = r.offset.to_string();
        let timestamp = (r.kafka_ts / 1000).to_string();
        let ours = [
            ("usageflow-error-code", r.rejection.code.as_str()),
            ("usageflow-error-reason", r.rejection.reason.as_str()),
            ("usageflow-source-topic", self.topic.as_str()),
            ("usageflow-source-partition", partition.as_str()),
            ("usageflow-source-offset", offset.as_str()),
            (crate::deadletter::SOURCE_TIMESTAMP, timestamp.as_str()),
        ];
        let headers = r.headers.iter().map(|(k, v)| (k.as_str(), v.as_slice()));
        let headers = headers.chain(ours.iter().map(|(k, v)| (*k, v.as_bytes())));
        let record = crate::kafka::record(&self.dead_letter_topic, r.key.as_deref(), &r.payload, headers);
        crate::kafka::send_waiting(&self.producer, record, Duration::from_millis(50), || None)
    }
}

/// Everything one ingester run needs.
#[derive(Clone)]
pub struct Ingester {
    /// Kafka settings.
    pub kafka: KafkaConfig,
    /// Ingest settings.
    pub config: IngestConfig,
    /// The indexed catalogue.
    pub index: Arc<Index>,
    /// The lake's tables.
    pub lake: DeltaLake,
    /// Counters of the current process.
    pub counters: Arc<Counters>,
}

impl std::fmt::Debug for Ingester {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ingester").field("kafka", &self.kafka).field("config", &self.config).finish_non_exhaustive()
    }
}

impl Ingester {
    /// Runs until `stop` is set, restarting after failures with a back-off. Fails at once,
    /// without starting, when a setting cannot work ([`KafkaConfig::check`],
    /// [`IngestConfig::check`]). Stopped while failing (the broker unreachable, say), it
    /// returns the last failure: what was consumed since the last commit is not in the lake,
    /// and the next run resumes from the committed state.
    pub fn run(&self, stop: &AtomicBool) -> Result<(), PipelineError> {
        self.run_with(stop, None)
    }

    /// [`Ingester::run`] that also stops by itself once caught up with the topic (see
    /// [`CaughtUp`]), and fails with [`PipelineError::NotAssigned`] if no partition is assigned
    /// in time: a broker that never answers is an error, not an empty success.
    pub fn run_until_caught_up(&self, stop: &AtomicBool, rule: CaughtUp) -> Result<(), PipelineError> {
        self.run_with(stop, Some(rule))
    }

    fn run_with(&self, stop: &AtomicBool, until: Option<CaughtUp>) -> Result<(), PipelineError> {
        self.kafka.check()?;
        self.config.check()?;
        let started = Instant::now();
        let assignments = self.counters.assignments.load(Ordering::Relaxed);
        let mut last_failure = None;
        while !stop.load(Ordering::Relaxed) {
            match self.run_once_with(stop, until.map(|rule| (rule, started))) {
                Ok(()) => return Ok(()),
                Err(err) if err.is_fatal() => return Err(err),
                Err(err)
                    if until.is_some_and(|rule| started.elapsed() >= rule.assignment_timeout)
                        && self.counters.assignments.load(Ordering::Relaxed) == assignments =>
                {
                    // Failing since the start, never assigned: a batch run gives up.
                    return Err(PipelineError::NotAssigned {
                        topic: self.kafka.topic.clone(),
                        group: self.kafka.group_id.clone(),
                        seconds: started.elapsed().as_secs(),
                        found: format!("every run failed, the last with: {err}"),
                    });
                }
                Err(err) => {
                    metrics::counter!("usageflow_ingest_restarts_total").increment(1);
                    tracing::error!(%err, "ingester failed; restarting from the committed state");
                    last_failure = Some(err);
                    let until = Instant::now() + Duration::from_millis(self.config.restart_backoff_ms);
                    while Instant::now() < until && !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
            }
        }
        last_failure.map_or(Ok(()), Err)
    }

    /// One run: from the committed state until `stop` (Ok) or a failure (Err).
    pub fn run_once(&self, stop: &AtomicBool) -> Result<(), PipelineError> {
        self.run_once_with(stop, None)
    }

    /// One run; with `until`, it also ends once caught up (the instant is when the first run
    /// of the batch started, from which the wait for an assignment counts).
    fn run_once_with(&self, stop: &AtomicBool, until: Option<(CaughtUp, Instant)>) -> Result<(), PipelineError> {
        let instance = self.config.instance();
        let span = tracing::info_span!("ingest", topic = %self.kafka.topic, group = %self.kafka.group_id, instance = %instance);
        let _entered = span.enter();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("usageflow-io")
            .enable_all()
            .build()
            .map_err(|e| PipelineError::Flusher(e.to_string()))?;
        let failure: Arc<Mutex<Option<PipelineError>>> = Arc::new(Mutex::new(None));

        let mut producer_config = ClientConfig::new();
        producer_config
            .set("transactional.id", format!("usageflow-{}-{instance}", self.kafka.group_id))
            .set("transaction.timeout.ms", self.config.transaction_timeout_ms.to_string())
            .set("linger.ms", "5");
        let producer: BaseProducer = self.kafka.with_properties(producer_config).create()?;
        let txn_timeout = Duration::from_millis(self.config.transaction_timeout_ms);
        producer.init_transactions(txn_timeout)?;

        // A rendezvous: the poll thread hands a finished batch over only when the flusher is done
        // with the previous one, so at most two batches are in memory.
        let (to_flusher, from_poll): (SyncSender<ToFlusher>, Receiver<ToFlusher>) = sync_channel(0);
        let (to_txn, from_flusher) = sync_channel(0);
        let transactor = Transactor {
            topic: self.kafka.topic.clone(),
            dead_letter_topic: self.kafka.dead_letter_topic.clone(),
            producer,
            txn_timeout,
            failure: failure.clone(),
            counters: self.counters.clone(),
        };
        let txn_thread = std::thread::Builder::new()
            .name("usageflow-txn".into())
            .spawn(move || transactor.run(from_flusher))
            .map_err(|e| PipelineError::Flusher(e.to_string()))?;
        let flusher = Flusher {
            topic: self.kafka.topic.clone(),
            group: self.kafka.group_id.clone(),
            index: self.index.clone(),
            lake: self.lake.clone(),
            to_txn,
            counters: self.counters.clone(),
        };
        let handle = runtime.handle().clone();
        let flusher_failure = failure.clone();
        let flusher_thread = std::thread::Builder::new()
            .name("usageflow-flush".into())
            .spawn(move || serve(from_poll, &flusher_failure, |job| flusher.flush(&handle, job), || flusher.barrier()))
            .map_err(|e| PipelineError::Flusher(e.to_string()))?;

        let dedupe = Arc::new(Dedupe::default());
        let (recycle, recycled) = channel();
        let mut links = Vec::new();
        let mut worker_threads = Vec::new();
        for n in 0..self.config.worker_count() {
            let (to_worker, from_poll) = sync_channel(WORKER_QUEUE);
            let worker = Worker {
                index: self.index.clone(),
                validator: Validator::new(self.index.clone(), self.config.validation.clone()),
                dedupe: dedupe.clone(),
                keys: Vec::new(),
                fresh: Vec::new(),
                record_keys: Vec::new(),
                scratch: BatchScratch::default(),
                categories: Vec::new(),
                category_ids: FxHashMap::default(),
                parts: FxHashMap::default(),
                counters: self.counters.clone(),
            };
            let recycle = recycle.clone();
            let thread = std::thread::Builder::new()
                .name(format!("usageflow-work-{n}"))
                .spawn(move || worker.run(from_poll, recycle))
                .map_err(|e| PipelineError::Flusher(e.to_string()))?;
            worker_threads.push(thread);
            links.push(WorkerLink { to_worker, pending: Chunk::default(), partitions: 0 });
        }
        drop(recycle);

        let processor = Processor {
            topic: self.kafka.topic.clone(),
            group: self.kafka.group_id.clone(),
            config: self.config.clone(),
            dedupe,
            loaded_event_files: FxHashSet::default(),
            lake_next: FxHashMap::default(),
            marks: BTreeMap::new(),
            workers: links,
            worker_of: FxHashMap::default(),
            recycled,
            batch_events: 0,
            batch_bytes: 0,
            batch_started: Instant::now(),
            reported: [0; 4],
            cgm: None,
            to_flusher,
            failure: failure.clone(),
            counters: self.counters.clone(),
            lake: self.lake.clone(),
            runtime: runtime.handle().clone(),
        };

        let mut consumer_config = ClientConfig::new();
        consumer_config
            .set("group.id", &self.kafka.group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("isolation.level", "read_committed")
            .set("session.timeout.ms", self.kafka.session_timeout_ms.to_string())
            .set("max.poll.interval.ms", "300000")
            .set("fetch.max.bytes", "67108864")
            .set("max.partition.fetch.bytes", "8388608")
            .set("queued.max.messages.kbytes", "131072")
            .set("queued.min.messages", "500000")
            // Once the fetch queue is over those limits (the poll thread waiting for a worker
            // or the flusher), librdkafka holds the next fetch back this long; its default of
            // one second left the queue empty for whole stretches after each wait.
            .set("fetch.queue.backoff.ms", "10")
            .set("fetch.min.bytes", "1048576")
            .set("fetch.wait.max.ms", "50");
        if !self.kafka.group_instance_id.is_empty() {
            consumer_config.set("group.instance.id", &self.kafka.group_instance_id);
        }
        let mut watch = until.map(|(rule, started)| Watch::new(rule, started));
        if watch.is_some() {
            // Each partition reports when it reaches its end, so a run knows it caught up.
            consumer_config.set("enable.partition.eof", "true");
        }
        let consumer_config = self.kafka.with_properties(consumer_config);
        let context = IngestContext {
            processor: Mutex::new(Some(processor)),
            topic: self.kafka.topic.clone(),
            router: Mutex::new(None),
        };
        let consumer: BaseConsumer<IngestContext> = consumer_config.create_with_context(context)?;
        // Declared after the consumer, so dropped before it.
        let mut fetch = FetchQueue::new(&consumer)?;
        *consumer.context().router.lock().expect("router") = Some(fetch.router());
        consumer.subscribe(&[&self.kafka.topic])?;

        let mut last_progress = Instant::now();
        let progress_every = Duration::from_secs(self.config.progress_interval_secs.max(1));
        // Failures, the stop flag and the progress line are looked at after an idle turn and
        // every 64 turns (up to 64 batches of messages), not per message.
        let mut turn: u32 = 0;
        let mut idle = true;
        let result = loop {
            turn = turn.wrapping_add(1);
            let look = idle || turn.is_multiple_of(64);
            if look && let Some(err) = failure.lock().expect("failure slot").take() {
                break Err(err);
            }
            if look && stop.load(Ordering::Relaxed) {
                break Ok(());
            }
            // The consumer's own queue: rebalances (their callbacks run here), errors, and any
            // message not routed to the fetch queue. Non-blocking; the wait is on the fetch queue.
            let polled = consumer.poll(Duration::ZERO);
            let mut fatal = match &polled {
                Some(Err(err)) => consumer_error(err),
                _ => None,
            };
            if let Some(err) = fatal.take() {
                break Err(err.into());
            }
            // Then a batch of messages, waiting briefly only when nothing at all came.
            let wait = if idle && polled.is_none() { Duration::from_millis(100) } else { Duration::ZERO };
            let mut guard = consumer.context().processor.lock().expect("processor");
            let p = guard.as_mut().expect("processor present");
            if let Some(Ok(msg)) = &polled {
                p.take(msg);
            }
            let n = fetch.consume(wait, |msg| match msg.error() {
                None => p.take(msg),
                Some(KafkaError::PartitionEOF(partition)) => {
                    if let Some(w) = watch.as_mut() {
                        w.at_end.insert(partition, msg.offset());
                    }
                }
                Some(err) => {
                    if let Some(err) = consumer_error(&err) {
                        fatal.get_or_insert(err);
                    }
                }
            });
            if let Some(err) = fatal {
                break Err(err.into());
            }
            idle = n == 0 && polled.is_none();
            if idle {
                p.send_pending();
                if p.batch_due() || p.batch_old() {
                    p.hand_off();
                }
            }
            let assigned = p.lake_next.len();
            drop(guard);
            if let Some(w) = watch.as_mut() {
                w.observe(n, assigned);
                if idle {
                    match w.look(&consumer, &self.kafka) {
                        Verdict::Continue => {}
                        Verdict::Stop => {
                            tracing::info!(partitions = assigned, "caught up and idle; stopping");
                            break Ok(());
                        }
                        Verdict::Fail(err) => break Err(err),
                    }
                }
            }
            if look && last_progress.elapsed() >= progress_every {
                last_progress = Instant::now();
                self.progress(&consumer);
            }
        };
        drop(fetch);
        // Ordered shutdown: flush what was consumed, then stop the flusher.
        {
            let mut guard = consumer.context().processor.lock().expect("processor");
            if let Some(p) = guard.as_mut() {
                if result.is_ok() && !p.failed() {
                    p.hand_off();
                }
                p.barrier();
            }
            // Dropping the processor closes the workers' and the flusher's channels.
            guard.take();
        }
        for thread in worker_threads {
            let _ = thread.join();
        }
        let _ = flusher_thread.join();
        // The flusher's end of the transaction channel is gone with it.
        let _ = txn_thread.join();
        drop(consumer);
        if let Some(err) = failure.lock().expect("failure slot").take() {
            return Err(err);
        }
        result
    }

    fn progress(&self, consumer: &BaseConsumer<IngestContext>) {
        let c = &self.counters;
        let mut lag_total = 0i64;
        if let Ok(assignment) = consumer.assignment()
            && let Ok(positions) = consumer.position()
        {
            for e in assignment.elements() {
                let Ok((_, high)) = consumer.fetch_watermarks(e.topic(), e.partition(), Duration::from_secs(1)) else {
                    continue;
                };
                let pos = positions
                    .find_partition(e.topic(), e.partition())
                    .and_then(|p| p.offset().to_raw())
                    .filter(|o| *o >= 0)
                    .unwrap_or(0);
                let lag = (high - pos).max(0);
                lag_total += lag;
                metrics::gauge!("usageflow_consumer_lag_messages", "partition" => e.partition().to_string())
                    .set(lag as f64);
            }
        }
        tracing::info!(
            messages = c.messages.load(Ordering::Relaxed),
            accepted = c.accepted.load(Ordering::Relaxed),
            rejected = c.rejected.load(Ordering::Relaxed),
            duplicates = c.duplicates.load(Ordering::Relaxed),
            replayed = c.replayed.load(Ordering::Relaxed),
            commits = c.commits.load(Ordering::Relaxed),
            lag = lag_total,
            "ingest progress"
        );
    }
}
