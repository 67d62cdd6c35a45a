//! `POST /public/v1/usage/events`: metering events over HTTP for producers that cannot speak
//! Kafka. The body is a JSON array of events (or `{"events": [...]}`), each a plain metering
//! event or a structured CloudEvents 1.0 envelope. Every event is decoded and validated
//! against the catalogue at once, exactly as the ingester would; the valid ones are written to
//! the events topic (keyed by asset, like every producer, so a re-sent event lands where the
//! original did and is de-duplicated), and the answer is 202 with one result per event, in
//! order: `accepted`, `rejected` (with the ingester's code and reason; nothing is written),
//! or `failed` (the broker did not take it; send it again).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::value::RawValue;
use serde_json::{Value, json};
use usageflow_ingest::decode::{CeHeaders, decode};
use usageflow_ingest::{Index, KafkaConfig, ValidationConfig, Validator};
use usageflow_model::Catalogue;

use crate::error::{ApiError, ApiResult};
use crate::{AppState, Principal, Role};

/// Most events one request may carry.
pub const MAX_EVENTS_PER_REQUEST: usize = 10_000;

/// Where validated events go.
pub struct EventSink {
    producer: FutureProducer,
    topic: String,
    validator: Mutex<Validator>,
}

impl std::fmt::Debug for EventSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventSink").field("topic", &self.topic).finish_non_exhaustive()
    }
}

impl EventSink {
    /// A sink writing to `kafka.topic` with an idempotent producer, validating with `validation`.
    pub fn new(kafka: &KafkaConfig, catalogue: &Catalogue, validation: ValidationConfig) -> Result<Self, String> {
        let mut settings = rdkafka::ClientConfig::new();
        settings
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("message.timeout.ms", "10000")
            .set("linger.ms", "5");
        let producer: FutureProducer =
            kafka.with_properties(settings).create().map_err(|e| format!("cannot create the Kafka producer: {e}"))?;
        let index = Arc::new(Index::new(catalogue.data()));
        Ok(Self { producer, topic: kafka.topic.clone(), validator: Mutex::new(Validator::new(index, validation)) })
    }
}

fn events_of(body: &[u8]) -> ApiResult<Vec<Box<RawValue>>> {
    let value: Box<RawValue> = crate::files::parse_json(body)?;
    let text = value.get().trim_start();
    if text.starts_with('[') {
        return crate::files::parse_json(value.get().as_bytes());
    }
    #[derive(serde::Deserialize)]
    struct Wrapped {
        events: Vec<Box<RawValue>>,
    }
    if let Ok(w) = serde_json::from_str::<Wrapped>(value.get()) {
        return Ok(w.events);
    }
    Ok(vec![value])
}

pub(crate) async fn ingest(State(state): State<AppState>, who: Principal, body: Bytes) -> ApiResult<Response> {
    if who.role != Role::Vendor {
        return Err(ApiError::forbidden("only vendors report usage events"));
    }
    let sink = state.events.clone().ok_or_else(|| {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "EVT_002", "event ingestion is not configured on this server")
    })?;
    let events = events_of(&body)?;
    if events.is_empty() || events.len() > MAX_EVENTS_PER_REQUEST {
        return Err(ApiError::invalid(format!(
            "send between 1 and {MAX_EVENTS_PER_REQUEST} events per request, not {}",
            events.len()
        )));
    }
    let now_us = chrono::Utc::now().timestamp_micros();
    // Validate all first (synchronously, under the validator's lock), then send.
    let mut results: Vec<Value> = Vec::with_capacity(events.len());
    let mut sends = Vec::new();
    {
        let mut validator = sink.validator.lock().map_err(|_| ApiError::internal("validator poisoned"))?;
        for (i, raw) in events.iter().enumerate() {
            let payload = raw.get().as_bytes();
            let outcome = decode(payload, &CeHeaders::default()).and_then(|event| {
                let owner = state.catalogue.product(&event.product).map(|p| p.vendor.as_str());
                if owner != Some(who.account.as_str()) {
                    return Err(usageflow_ingest::Rejection::new(
                        usageflow_ingest::Code::UnknownProduct,
                        format!("product `{}` is not a product of {}", event.product, who.account),
                    ));
                }
                let valid = validator.validate(&event, now_us)?;
                Ok((event.id.into_owned(), validator.index().assets[valid.asset as usize].id.clone()))
            });
            match outcome {
                Ok((id, asset)) => {
                    results.push(json!({"index": i, "id": id, "status": "accepted"}));
                    sends.push((i, asset, payload.to_vec()));
                }
                Err(r) => {
                    results.push(json!({"index": i, "status": "rejected", "code": r.code.as_str(), "reason": r.reason}))
                }
            }
        }
    }
    let deliveries = sends.iter().map(|(i, key, payload)| {
        let record = FutureRecord::to(&sink.topic).key(key.as_bytes()).payload(payload.as_slice());
        let producer = &sink.producer;
        async move { (*i, producer.send(record, Duration::from_secs(10)).await) }
    });
    let mut failed = 0usize;
    for (i, outcome) in futures::future::join_all(deliveries).await {
        if let Err((e, _)) = outcome {
            failed += 1;
            results[i]["status"] = json!("failed");
            results[i]["reason"] = json!(format!("the broker did not take the event: {e}; send it again"));
        }
    }
    let accepted = results.iter().filter(|r| r["status"] == "accepted").count();
    tracing::info!(account = %who.account, accepted, rejected = results.len() - accepted - failed, failed, "events ingested");
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({
            "accepted": accepted,
            "rejected": results.len() - accepted - failed,
            "failed": failed,
            "results": results,
        })),
    )
        .into_response())
}
