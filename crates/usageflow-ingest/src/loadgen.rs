//! A load generator: realistic metering events for the catalogue's products and assets,
//! with a chosen share of duplicates, invalid events and late events, produced to Kafka at a
//! target rate. It also returns the ground truth (per-record totals the lake must end up
//! with, and how many events must reach the dead-letter topic), which the crash tests and
//! the benchmark check against.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientConfig, ClientContext};
use serde::{Deserialize, Serialize};
use usageflow_lake::tables::{RecordKey, RecordTotals};
use usageflow_model::{ItemType, ReportingSchema};

use crate::KafkaConfig;
use crate::validate::{Index, period_of};

/// What to generate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoadgenConfig {
    /// Messages to produce.
    pub events: u64,
    /// Target messages per second; 0 = as fast as possible.
    pub rate: u64,
    /// Random seed: the same seed gives the same stream.
    pub seed: u64,
    /// Share of messages that repeat an earlier event (same id), per mille.
    pub duplicates_per_mille: u32,
    /// Share of messages that are invalid, per mille.
    pub invalid_per_mille: u32,
    /// Share of messages reporting usage five days old, per mille (accepted for products with
    /// late charges, rejected for the others).
    pub late_per_mille: u32,
    /// Share of valid messages wrapped in a CloudEvents envelope, per mille.
    pub cloudevents_per_mille: u32,
    /// Kafka timestamp of the first message, epoch ms; 0 = now.
    pub start_ms: i64,
    /// Kafka timestamps advance by this much per message, µs (so a run spans a realistic time).
    /// Brokers refuse timestamps more than `message.timestamp.after.max.ms` (1 h by default)
    /// ahead, so `events × step_us` must stay well under an hour.
    pub step_us: i64,
}

impl Default for LoadgenConfig {
    fn default() -> Self {
        Self {
            events: 100_000,
            rate: 0,
            seed: 1,
            duplicates_per_mille: 10,
            invalid_per_mille: 5,
            late_per_mille: 5,
            cloudevents_per_mille: 100,
            start_ms: 0,
            step_us: 50,
        }
    }
}

/// What the lake and the dead-letter topic must hold after ingesting a generated stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Truth {
    /// Expected per-record totals.
    pub records: BTreeMap<RecordKey, RecordTotals>,
    /// Distinct valid events.
    pub valid: u64,
    /// Duplicate messages.
    pub duplicates: u64,
    /// Messages that must be rejected.
    pub rejected: u64,
    /// Messages produced.
    pub messages: u64,
}

#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn per_mille(&mut self, p: u32) -> bool {
        self.below(1000) < u64::from(p)
    }
}

fn fixed_text(units: i128, scale: u32) -> String {
    let one = 10i128.pow(scale);
    if scale == 0 {
        return units.to_string();
    }
    format!("{}.{:0width$}", units / one, units % one, width = scale as usize)
}

fn iso_ms(ms: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

/// Generates messages; `emit(key, payload, timestamp_ms)` receives each one.
#[derive(Debug)]
pub struct Generator<'a> {
    index: &'a Index,
    config: LoadgenConfig,
    rng: Rng,
    /// Assets grouped by product, active only.
    assets: Vec<Vec<u32>>,
    recent: Vec<(Vec<u8>, Vec<u8>)>,
    truth: Truth,
    n: u64,
    start_us: i64,
    buf: Vec<u8>,
}

impl<'a> Generator<'a> {
    /// A generator over the catalogue.
    pub fn new(index: &'a Index, config: LoadgenConfig) -> Self {
        let mut assets = vec![Vec::new(); index.products.len()];
        for (i, a) in index.assets.iter().enumerate() {
            if a.terminated_from.is_none() {
                assets[a.product as usize].push(i as u32);
            }
        }
        let start_ms = if config.start_ms == 0 { chrono::Utc::now().timestamp_millis() } else { config.start_ms };
        Self {
            index,
            rng: Rng(config.seed),
            config,
            assets,
            recent: Vec::new(),
            truth: Truth::default(),
            n: 0,
            start_us: start_ms * 1000,
            buf: Vec::with_capacity(512),
        }
    }

    /// The ground truth of everything generated so far.
    pub fn truth(&self) -> &Truth {
        &self.truth
    }

    /// Produces the next message into `emit`.
    pub fn next(&mut self, mut emit: impl FnMut(&[u8], &[u8], i64)) {
        let ts_us = self.start_us + self.n as i64 * self.config.step_us;
        let ts_ms = ts_us / 1000;
        self.n += 1;
        self.truth.messages += 1;
        if !self.recent.is_empty() && self.rng.per_mille(self.config.duplicates_per_mille) {
            let i = self.rng.below(self.recent.len() as u64) as usize;
            let (key, payload) = &self.recent[i];
            self.truth.duplicates += 1;
            emit(key, payload, ts_ms);
            return;
        }
        if self.rng.per_mille(self.config.invalid_per_mille) {
            self.truth.rejected += 1;
            let payload = self.invalid(ts_us);
            emit(b"invalid", &payload, ts_ms);
            return;
        }
        let late = self.rng.per_mille(self.config.late_per_mille);
        // Event times are written with millisecond precision, so the truth uses the same.
        let event_us = (if late { ts_us - 5 * 86_400_000_000 } else { ts_us - 1_000_000 }) / 1000 * 1000;
        let products: Vec<u32> =
            (0..self.index.products.len() as u32).filter(|&p| !self.assets[p as usize].is_empty()).collect();
        let product_idx = products[self.rng.below(products.len() as u64) as usize];
        let product = &self.index.products[product_idx as usize];
        let asset_idx = {
            let list = &self.assets[product_idx as usize];
            list[self.rng.below(list.len() as u64) as usize]
        };
        let asset = &self.index.assets[asset_idx as usize];
        let items: Vec<usize> = product
            .items
            .iter()
            .enumerate()
            .filter(|(_, i)| i.item_type == ItemType::Ppu || product.reservation)
            .map(|(n, _)| n)
            .collect();
        let item = &product.items[items[self.rng.below(items.len() as u64) as usize]];
        let scale = item.scale.min(4);
        let quantity = (self.rng.below(10_000) as i128 + 1)
            * 10i128.pow(item.scale - scale)
            * i128::from(self.rng.below(3) as u8 + 1);
        let quantity_units = quantity * 10i128.pow(8 - item.scale);
        let schema = product.schema.unwrap_or(ReportingSchema::Qt);
        let amount = schema.requires_amount().then(|| self.rng.below(100_000) as i128 + 1);
        let tier = schema.requires_tier().then(|| if asset.tiers[1] && self.rng.per_mille(300) { 1 } else { 0 });
        let category = ["compute", "storage", "network"][self.rng.below(3) as usize];
        let id = format!("ev-{}-{}", self.config.seed, self.n);

        let accepted = !late || product.late;
        if accepted {
            self.truth.valid += 1;
            let (period_start, _) = period_of(product.aggregation, event_us);
            let key = RecordKey {
                product_id: product.id.clone(),
                contract_id: asset.contract.clone(),
                asset_id: asset.id.clone(),
                item_mpn: item.mpn.clone(),
                tier,
                category_id: Some(category.to_owned()),
                period_start,
            };
            let delta = RecordTotals {
                quantity: quantity_units,
                amount: amount.map(|a| a * 1_000_000),
                event_count: 1,
                first_event_at: event_us,
                last_event_at: event_us,
            };
            self.truth.records.entry(key).or_default().merge(&delta);
        } else {
            self.truth.rejected += 1;
        }

        let buf = &mut self.buf;
        buf.clear();
        let ce = self.rng.per_mille(self.config.cloudevents_per_mille);
        let asset_json = match asset.id.as_str() {
            _ if self.rng.per_mille(100) => {
                // By reconciliation parameter, when the asset has one.
                match &asset.param {
                    Some((name, value)) => format!(r#"{{"parameter":"{name}","value":"{value}"}}"#),
                    None => format!(r#"{{"id":"{}"}}"#, asset.id),
                }
            }
            id => format!(r#"{{"id":"{id}"}}"#),
        };
        let item_json = match self.rng.below(3) {
            0 => format!(r#"{{"mpn":"{}"}}"#, item.mpn),
            1 => format!(r#"{{"global_id":"{}"}}"#, item.id.as_deref().unwrap_or_default()),
            _ => format!(r#"{{"mpn":"{}"}}"#, item.mpn),
        };
        let time = iso_ms(event_us / 1000);
        let mut body = format!(
            r#""product":"{}","asset":{asset_json},"item":{item_json},"quantity":{},"time":"{time}","category":"{category}""#,
            product.id,
            fixed_text(quantity, item.scale),
        );
        if let Some(a) = amount {
            body.push_str(&format!(r#","amount":"{}""#, fixed_text(a, 2)));
        }
        if let Some(t) = tier {
            body.push_str(&format!(r#","tier":{t}"#));
        }
        if ce {
            let _ = write!(
                buf,
                r#"{{"specversion":"1.0","id":"{id}","source":"/loadgen/{}","type":"com.usageflow.metering.v1","time":"{time}","datacontenttype":"application/json","data":{{{body}}}}}"#,
                self.config.seed
            );
        } else {
            let _ = write!(buf, r#"{{"id":"{id}",{body},"attributes":{{"gateway":"gw-{}"}}}}"#, self.n % 64);
        }
        let key = asset.id.as_bytes();
        if accepted && self.recent.len() < 4096 {
            self.recent.push((key.to_vec(), buf.clone()));
        } else if accepted {
            let i = self.rng.below(4096) as usize;
            self.recent[i] = (key.to_vec(), buf.clone());
        }
        emit(key, buf, ts_ms);
    }

    fn invalid(&mut self, ts_us: i64) -> Vec<u8> {
        let time = iso_ms(ts_us / 1000);
        let n = self.n;
        match self.rng.below(5) {
            0 => format!(r#"{{"id":"bad-{n}","product":"PRD-200-200-002","asset_id":"AS-0000"#).into_bytes(),
            1 => format!(r#"{{"id":"bad-{n}","product":"PRD-200-200-002","asset_id":"AS-9999-9999-9999","item_mpn":"FL-SMS","quantity":1,"time":"{time}"}}"#).into_bytes(),
            2 => format!(r#"{{"id":"bad-{n}","product":"PRD-200-200-002","asset_id":"{}","item_mpn":"FL-SMS","quantity":1.5,"time":"{time}"}}"#, self.some_asset("PRD-200-200-002")).into_bytes(),
            3 => format!(r#"{{"id":"bad-{n}","product":"PRD-200-200-002","asset_id":"{}","item_mpn":"FL-DATA-MB","quantity":-3,"time":"{time}"}}"#, self.some_asset("PRD-200-200-002")).into_bytes(),
            _ => format!(r#"{{"id":"bad-{n}","product":"PRD-404","asset_id":"AS-1","item_mpn":"X","quantity":1,"time":"{time}"}}"#).into_bytes(),
        }
    }

    fn some_asset(&mut self, product: &str) -> String {
        let p = self.index.products.iter().position(|p| p.id == product);
        match p.and_then(|p| self.assets.get(p)).filter(|l| !l.is_empty()) {
            Some(list) => {
                let list = list.clone();
                self.index.assets[list[self.rng.below(list.len() as u64) as usize] as usize].id.clone()
            }
            None => "AS-0".to_owned(),
        }
    }
}

/// Creates the topic if it does not exist (with `partitions` partitions).
pub fn ensure_topic(kafka: &KafkaConfig, topic: &str, partitions: i32) -> Result<(), KafkaError> {
    ensure_topic_within(kafka, topic, partitions, Duration::from_secs(30))
}

/// [`ensure_topic`], giving up after `timeout` (an unreachable broker makes it wait that long).
pub fn ensure_topic_within(
    kafka: &KafkaConfig,
    topic: &str,
    partitions: i32,
    timeout: Duration,
) -> Result<(), KafkaError> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> = kafka.client_config().create()?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|_| KafkaError::Canceled)?;
    let results = rt.block_on(admin.create_topics(
        &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
        &AdminOptions::new().request_timeout(Some(timeout)),
    ))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => return Err(KafkaError::AdminOp(code)),
        }
    }
    Ok(())
}

/// Why producing failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadgenError {
    /// The producer could not be created or failed.
    #[error("Kafka: {0}")]
    Kafka(#[from] KafkaError),
    /// The broker refused messages.
    #[error("{failed} message(s) were not delivered; the first error: {first}")]
    Delivery { failed: u64, first: String },
}

/// Counts delivery failures.
#[derive(Debug, Default)]
pub(crate) struct Deliveries {
    failed: AtomicU64,
    first: Mutex<Option<String>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: Self::DeliveryOpaque) {
        if let Err((err, _)) = result {
            self.failed.fetch_add(1, Ordering::Relaxed);
            self.first.lock().expect("delivery lock").get_or_insert_with(|| err.to_string());
        }
    }
}

pub(crate) fn delivery_error(producer: &BaseProducer<Deliveries>) -> Option<LoadgenError> {
    let ctx = producer.context();
    let failed = ctx.failed.load(Ordering::Relaxed);
    if let Some((code, reason)) = producer.client().fatal_error() {
        return Some(LoadgenError::Delivery { failed: failed.max(1), first: format!("{code:?}: {reason}") });
    }
    (failed > 0).then(|| LoadgenError::Delivery {
        failed,
        first: ctx.first.lock().expect("delivery lock").clone().unwrap_or_default(),
    })
}

/// Produces a generated stream to the configured topic; returns the ground truth once every
/// message is acknowledged by the broker.
pub fn produce(kafka: &KafkaConfig, index: &Index, config: &LoadgenConfig) -> Result<Truth, LoadgenError> {
    let mut client: ClientConfig = kafka.client_config();
    client
        .set("enable.idempotence", "true")
        .set("linger.ms", "20")
        .set("batch.size", "1000000")
        .set("compression.type", "lz4")
        .set("queue.buffering.max.kbytes", "262144")
        .set("queue.buffering.max.messages", "1000000");
    let producer: BaseProducer<Deliveries> = client.create_with_context(Deliveries::default())?;
    let mut generator = Generator::new(index, config.clone());
    let started = Instant::now();
    let mut failure: Option<LoadgenError> = None;
    for i in 0..config.events {
        if config.rate > 0 && i % 1000 == 0 {
            let due = Duration::from_micros(i.saturating_mul(1_000_000) / config.rate);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        generator.next(|key, payload, ts| {
            let record = BaseRecord::to(&kafka.topic).key(key).payload(payload).timestamp(ts);
            // While the queue is full, a failed delivery stops the run.
            let mut delivery = None;
            let sent = crate::kafka::send_waiting(&producer, record, Duration::from_millis(10), || {
                delivery = delivery_error(&producer);
                delivery.is_some().then_some(KafkaError::Canceled)
            });
            if let Err(err) = sent {
                failure.get_or_insert(delivery.unwrap_or_else(|| err.into()));
            }
        });
        if let Some(err) = failure.take() {
            return Err(err);
        }
        if i % 10_000 == 0 {
            producer.poll(Duration::ZERO);
            if let Some(err) = delivery_error(&producer) {
                return Err(err);
            }
        }
    }
    producer.flush(Duration::from_secs(120))?;
    if let Some(err) = delivery_error(&producer) {
        return Err(err);
    }
    Ok(generator.truth().clone())
}
