//! The API test harness: a server over a new local store with a key per account of the
//! sample catalogue, requests as those accounts, and a seeded world of two tenants.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use chrono::{TimeZone, Utc};
use serde_json::{Value, json};
use tower::ServiceExt;
use usageflow_api::{ApiConfig, AppState, KeyRing, Role, StoredKey, auth::digest};
use usageflow_files::FileService;
use usageflow_model::ReportingSchema;
use usageflow_workflow::{FixedClock, WorkflowStore};

pub struct Api {
    pub app: Router,
    pub keys: HashMap<&'static str, String>,
    pub service: FileService,
    pub _dir: tempfile::TempDir,
}

pub const ACCOUNTS: [(&str, &str, Role); 7] = [
    ("fieldlink", "VA-200-002", Role::Vendor),
    ("vaultline", "VA-300-003", Role::Vendor),
    ("nimbus", "VA-100-001", Role::Vendor),
    ("northwind", "PA-500-001", Role::Provider),
    ("southgate", "PA-500-002", Role::Provider),
    ("blueharbor", "RA-700-001", Role::Reseller),
    ("other-reseller", "RA-700-009", Role::Reseller),
];

pub fn api() -> Api {
    api_with(&ApiConfig::default())
}

/// The API over a new local store, with `config`'s limits.
pub fn api_with(config: &ApiConfig) -> Api {
    let dir = tempfile::tempdir().unwrap();
    let lake = usageflow_lake::DeltaLake::open_store(&usageflow_lake::StoreConfig::local(dir.path())).unwrap();
    let store = lake.store().clone();
    let clock = Arc::new(FixedClock::new(Utc.with_ymd_and_hms(2026, 12, 1, 9, 0, 0).unwrap()));
    let catalogue = Arc::new(
        usageflow_catalog::load_dir(
            &Path::new(&std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo")).join("../../config/catalog"),
        )
        .unwrap(),
    );
    let service = FileService::new(store.clone(), WorkflowStore::new(store, clock), catalogue.clone()).with_lake(lake);
    let mut keys = HashMap::new();
    let mut stored = Vec::new();
    for (name, account, role) in ACCOUNTS {
        let key = format!("SU-{name}.secret-of-{name}");
        stored.push(StoredKey {
            id: format!("SU-{name}"),
            name: name.to_owned(),
            account: account.to_owned(),
            role,
            sha256: digest(&key),
        });
        keys.insert(name, key);
    }
    let state = AppState::new(service.clone(), KeyRing::new(stored)).with_limits(config);
    Api { app: usageflow_api::app(state, config), keys, service, _dir: dir }
}

pub struct Reply {
    pub status: StatusCode,
    pub range: Option<String>,
    pub lake_version: Option<String>,
    pub body: Value,
    pub bytes: Vec<u8>,
}

impl Api {
    pub async fn send(&self, who: Option<&str>, method: Method, path: &str, body: Body, content_type: &str) -> Reply {
        let mut req = Request::builder().method(method).uri(format!("/public/v1{path}"));
        if let Some(who) = who {
            req = req.header("Authorization", format!("ApiKey {}", self.keys[who]));
        }
        let req = req.header("Content-Type", content_type).body(body).unwrap();
        let res = self.app.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let range = res.headers().get("content-range").map(|v| v.to_str().unwrap().to_owned());
        let lake_version = res.headers().get("x-usageflow-lake-version").map(|v| v.to_str().unwrap().to_owned());
        let bytes = axum::body::to_bytes(res.into_body(), usize::MAX).await.unwrap().to_vec();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Reply { status, range, lake_version, body, bytes }
    }

    pub async fn call(&self, who: &str, method: Method, path: &str, body: Option<Value>) -> Reply {
        let body = body.map_or_else(Body::empty, |b| Body::from(b.to_string()));
        self.send(Some(who), method, path, body, "application/json").await
    }

    pub async fn get(&self, who: &str, path: &str) -> Reply {
        self.call(who, Method::GET, path, None).await
    }

    pub async fn post(&self, who: &str, path: &str, body: Value) -> Reply {
        self.call(who, Method::POST, path, Some(body)).await
    }

    pub async fn upload(&self, who: &str, path: &str, field: &str, bytes: &[u8]) -> Reply {
        let boundary = "usageflow-test-boundary";
        let mut body = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"usage.xlsx\"\r\n\
             Content-Type: application/vnd.openxmlformats-officedocument.spreadsheetml.sheet\r\n\r\n"
        )
        .into_bytes();
        body.extend_from_slice(bytes);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        self.send(Some(who), Method::POST, path, Body::from(body), &format!("multipart/form-data; boundary={boundary}"))
            .await
    }
}

pub fn workbook(schema: ReportingSchema, rows: &[&[(&str, &str)]]) -> Vec<u8> {
    let mut columns = usageflow_files::write::record_columns(schema);
    if schema == ReportingSchema::Pr {
        columns.push("v.backup_policy");
    }
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            columns.iter().map(|c| row.iter().find(|(k, _)| k == c).map_or("", |(_, v)| *v).to_owned()).collect()
        })
        .collect();
    usageflow_files::write_workbook(&[], &[], &columns, &rows).unwrap()
}

pub fn sms(id: &str, quantity: &str, day: &str, asset: &str) -> Vec<(&'static str, String)> {
    vec![
        ("record_id", id.to_owned()),
        ("item_search_criteria", "item.mpn".into()),
        ("item_search_value", "FL-SMS".into()),
        ("quantity", quantity.to_owned()),
        ("start_time_utc", format!("2026-11-{day} 00:00:00")),
        ("end_time_utc", format!("2026-11-{day} 23:59:59")),
        ("asset_search_criteria", "asset.id".into()),
        ("asset_search_value", asset.to_owned()),
    ]
}

pub fn rows_of<'a>(rows: &'a [Vec<(&'static str, String)>]) -> Vec<Vec<(&'static str, &'a str)>> {
    rows.iter().map(|r| r.iter().map(|(k, v)| (*k, v.as_str())).collect()).collect()
}

/// Tenant A: Fieldlink (vendor) → Northwind (provider), assets resold by Blue Harbor (1201, 1202).
/// Tenant B: Vaultline (vendor) → Southgate (provider).
pub async fn seed(api: &Api) -> (String, String) {
    let a = api
        .post(
            "fieldlink",
            "/usage/files",
            json!({"name": "Fieldlink November", "product": {"id": "PRD-200-200-002"},
                "contract": {"id": "CRD-20001-10001-00001"}, "period": {"from": "2026-11-01", "to": "2026-11-30"},
                "external_id": "fl-2026-11", "description": "SMS usage"}),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    let a_id = a.body["id"].as_str().unwrap().to_owned();
    let rows = [
        sms("r1", "10", "01", "AS-1000-0719-1201"),
        sms("r2", "20", "02", "AS-1000-8638-1202"),
        sms("r3", "30", "03", "AS-1000-6557-1203"),
        sms("r4", "40", "04", "AS-1000-6557-1203"),
    ];
    let refs = rows_of(&rows);
    let refs: Vec<&[(&str, &str)]> = refs.iter().map(Vec::as_slice).collect();
    let up = api
        .upload(
            "fieldlink",
            &format!("/usage/files/{a_id}/upload"),
            "usage_file",
            &workbook(ReportingSchema::Qt, &refs),
        )
        .await;
    assert_eq!(up.status, StatusCode::CREATED, "{}", up.body);
    assert_eq!(up.body["status"], "ready", "{}", up.body);
    assert_eq!(up.body["records"]["valid"], 4);

    let b = api
        .post(
            "vaultline",
            "/usage/files",
            json!({"product": {"id": "PRD-300-300-003"}, "contract": {"id": "CRD-30001-10002-00002"},
                "period": {"from": "2026-11-01", "to": "2026-11-30"}, "external_id": "vl-2026-11"}),
        )
        .await;
    assert_eq!(b.status, StatusCode::CREATED, "{}", b.body);
    let b_id = b.body["id"].as_str().unwrap().to_owned();
    let row = [
        ("record_id", "b1"),
        ("item_search_criteria", "item.mpn"),
        ("item_search_value", "VL-BKP-GB"),
        ("amount", "12.50"),
        ("quantity", "100.25"),
        ("start_time_utc", "2026-11-01 00:00:00"),
        ("end_time_utc", "2026-11-30 23:59:59"),
        ("asset_search_criteria", "asset.id"),
        ("asset_search_value", "AS-1000-3519-2401"),
        ("v.backup_policy", "daily"),
    ];
    let up = api
        .upload(
            "vaultline",
            &format!("/usage/files/{b_id}/upload"),
            "usage_file",
            &workbook(ReportingSchema::Pr, &[&row]),
        )
        .await;
    assert_eq!(up.body["status"], "ready", "{}", up.body);
    (a_id, b_id)
}

/// A QT workbook of `rows` (column → value).
pub fn qt_book(rows: &[Vec<(&'static str, String)>]) -> Vec<u8> {
    let refs = rows_of(rows);
    let refs: Vec<&[(&str, &str)]> = refs.iter().map(Vec::as_slice).collect();
    workbook(ReportingSchema::Qt, &refs)
}

impl Api {
    /// Fieldlink uploads a QT workbook of `rows` to `file`.
    pub async fn upload_qt(&self, file: &str, rows: &[Vec<(&'static str, String)>]) -> Reply {
        self.upload("fieldlink", &format!("/usage/files/{file}/upload"), "usage_file", &qt_book(rows)).await
    }
}
