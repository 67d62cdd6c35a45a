//! `POST /public/v1/usage/events` against the real broker: valid events reach the topic keyed
//! by asset, bad and foreign ones are answered at once and never written.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use serde_json::{Value, json};
use tower::ServiceExt;
use usageflow_api::{ApiConfig, AppState, EventSink, KeyRing, Role, StoredKey, auth::digest};

fn app(kafka: &usageflow_ingest::KafkaConfig) -> axum::Router {
    let dir = tempfile::tempdir().unwrap().keep();
    let store = usageflow_lake::open_store(&usageflow_lake::StoreConfig::local(&dir)).unwrap();
    let catalogue = Arc::new(
        usageflow_catalog::load_dir(
            &Path::new(&std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo")).join("config/catalog"),
        )
        .unwrap(),
    );
    let service = usageflow_files::FileService::new(
        store.clone(),
        usageflow_workflow::WorkflowStore::new(store, Arc::new(usageflow_workflow::SystemClock)),
        catalogue.clone(),
    );
    let keys = [("fieldlink", "VA-200-002", Role::Vendor), ("northwind", "PA-500-001", Role::Provider)].map(
        |(name, account, role)| StoredKey {
            id: format!("SU-{name}"),
            name: name.into(),
            account: account.into(),
            role,
            sha256: digest(&format!("SU-{name}.s3cret")),
        },
    );
    let sink = EventSink::new(kafka, &catalogue, usageflow_ingest::ValidationConfig::default()).unwrap();
    let state = AppState::new(service, KeyRing::new(keys)).with_events(sink);
    usageflow_api::app(state, &ApiConfig::default())
}

async fn post(app: &axum::Router, who: &str, body: &str) -> (StatusCode, Value) {
    let req = Request::post("/public/v1/usage/events")
        .header("Authorization", format!("ApiKey SU-{who}.s3cret"))
        .header("Content-Type", "application/json")
        .body(Body::from(body.to_owned()))
        .unwrap();
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let bytes = axum::body::to_bytes(res.into_body(), usize::MAX).await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

fn read_all(bootstrap: &str, topic: &str, expected: usize) -> Vec<(String, Value)> {
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "usageflow-test-reader")
        .create()
        .unwrap();
    consumer.assign(&support::whole_topic(&consumer, topic)).unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    // Read until the expected count, then a little longer to see that nothing else arrives.
    let mut quiet_until: Option<Instant> = None;
    while Instant::now() < deadline && quiet_until.is_none_or(|q| Instant::now() < q) {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
            out.push((key, serde_json::from_slice(m.payload().unwrap_or_default()).unwrap()));
        }
        if out.len() >= expected && quiet_until.is_none() {
            quiet_until = Some(Instant::now() + Duration::from_secs(2));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn http_events_are_validated_and_written_to_kafka() {
    let kafka = support::kafka_config("http-events");
    let app = app(&kafka);
    let now = chrono::Utc::now().to_rfc3339();
    let batch = json!([
        {"id": "h-1", "product": "PRD-200-200-002", "asset": {"id": "AS-1000-0719-1201"}, "item": {"mpn": "FL-SMS"},
         "quantity": "3", "time": now},
        {"id": "h-2", "product": "PRD-200-200-002", "asset": {"id": "AS-1000-0719-1201"}, "item": {"mpn": "FL-SMS"},
         "quantity": "-1", "time": now},
        {"id": "h-3", "product": "PRD-300-300-003", "asset": {"id": "AS-1000-3519-2401"}, "item": {"mpn": "VL-BKP-GB"},
         "quantity": "1", "amount": "1", "time": now},
        {"specversion": "1.0", "id": "ce-4", "source": "/gw", "type": "com.usageflow.metering.v1", "time": now,
         "data": {"product": "PRD-200-200-002", "asset_id": "AS-1000-8638-1202", "item_mpn": "FL-SMS", "quantity": 2}},
        "not an event"
    ]);
    let (status, body) = post(&app, "fieldlink", &batch.to_string()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let statuses: Vec<&str> =
        body["results"].as_array().unwrap().iter().map(|r| r["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["accepted", "rejected", "rejected", "accepted", "rejected"], "{body}");
    assert_eq!(body["results"][1]["code"], "negative_value", "{body}");
    assert_eq!(body["results"][2]["code"], "unknown_product", "another vendor's product: {body}");
    assert_eq!((body["accepted"].as_u64(), body["rejected"].as_u64()), (Some(2), Some(3)));

    let got = read_all(&kafka.bootstrap_servers, &kafka.topic, 2);
    let by_key: BTreeMap<&str, &Value> = got.iter().map(|(k, v)| (k.as_str(), v)).collect();
    assert_eq!(got.len(), 2, "exactly the accepted events reach the topic: {got:?}");
    assert_eq!(by_key["AS-1000-0719-1201"]["id"], "h-1");
    assert_eq!(by_key["AS-1000-8638-1202"]["id"], "ce-4", "CloudEvents are written as sent");

    // Only vendors report usage; an empty or unreadable body is an error with a reason.
    let (status, body) = post(&app, "northwind", &batch.to_string()).await;
    assert_eq!((status, body["error_code"].as_str()), (StatusCode::FORBIDDEN, Some("AUTH_002")));
    let (status, body) = post(&app, "fieldlink", "[]").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = post(&app, "fieldlink", "{oops").await;
    assert_eq!((status, body["error_code"].as_str()), (StatusCode::BAD_REQUEST, Some("VAL_001")));
}
