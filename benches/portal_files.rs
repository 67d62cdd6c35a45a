//! The portal's pages on a 10,000-file account: the requests the "Usage files" and "Review"
//! pages make (`GET /public/v1/usage/files` with paging, ordering, filters and search), a file's
//! detail, and the "Accepted records" and "Chunks" pages, through the server's router in
//! process, on a local store. Every tenth file is deleted; the others get a four-record workbook
//! uploaded, are submitted and accepted (which makes their chunks). Also times the full read of
//! every file's state, which the index replaces on each request.
//! Run: `cargo bench --bench portal_files` (`USAGEFLOW_BENCH_FILES` to change the count).
#![allow(clippy::print_stdout, clippy::float_arithmetic)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use chrono::NaiveDate;
use futures::StreamExt;
use tower::ServiceExt;
use usageflow_api::{ApiConfig, AppState, KeyRing, Role, StoredKey, auth::digest};
use usageflow_files::FileService;
use usageflow_model::{Actor, Environment, FileChange, NewFile, Period, Ref, ReportingSchema};
use usageflow_workflow::{CreateRequest, SystemClock, WorkflowStore};

const KEY: &str = "SU-northwind.bench";

fn files() -> usize {
    std::env::var("USAGEFLOW_BENCH_FILES").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000)
}

fn r(id: &str, name: &str) -> Ref {
    Ref { id: id.to_owned(), name: name.to_owned() }
}

fn request(n: usize) -> CreateRequest {
    let month = 1 + (n % 12) as u32;
    let year = 2024 + (n / 12 % 3) as i32;
    let from = NaiveDate::from_ymd_opt(year, month, 1).unwrap();
    let to = from + chrono::Months::new(1) - chrono::Days::new(1);
    CreateRequest {
        file: NewFile {
            id: String::new(),
            name: format!("Fieldlink usage {from} #{n}"),
            description: String::new(),
            note: String::new(),
            external_id: format!("bench-{n}"),
            schema: ReportingSchema::Qt,
            currency: None,
            period: Period { from, to },
            period_from_records: false,
            environment: Environment::Production,
            vendor: r("VA-200-002", "Fieldlink IoT Ltd"),
            provider: r("PA-500-001", "Northwind Distribution"),
            marketplace: r("MP-10001", "Germany"),
            contract: r("CRD-20001-10001-00001", "Fieldlink in Germany"),
            product: r("PRD-200-200-002", "Fieldlink Connectivity"),
            corrects: None,
        },
        idempotency_key: format!("bench-{n}"),
    }
}

/// Four SMS records on the first days of the month starting `from`.
fn workbook(from: NaiveDate) -> Vec<u8> {
    let columns = usageflow_files::write::record_columns(ReportingSchema::Qt);
    let assets = ["AS-1000-0719-1201", "AS-1000-8638-1202", "AS-1000-6557-1203", "AS-1000-6557-1203"];
    let rows: Vec<Vec<String>> = assets
        .iter()
        .enumerate()
        .map(|(n, asset)| {
            let day = from + chrono::Days::new(n as u64);
            columns
                .iter()
                .map(|c| match *c {
                    "record_id" => format!("r{n}"),
                    "item_search_criteria" => "item.mpn".into(),
                    "item_search_value" => "FL-SMS".into(),
                    "quantity" => format!("{}", 10 * (n + 1)),
                    "start_time_utc" => format!("{day} 00:00:00"),
                    "end_time_utc" => format!("{day} 23:59:59"),
                    "asset_search_criteria" => "asset.id".into(),
                    "asset_search_value" => (*asset).into(),
                    _ => String::new(),
                })
                .collect()
        })
        .collect();
    usageflow_files::write_workbook(&[], &[], &columns, &rows).unwrap()
}

fn quantiles(mut d: Vec<Duration>) -> (f64, f64) {
    d.sort();
    let ms = |x: Duration| x.as_secs_f64() * 1000.0;
    (ms(d[d.len() / 2]), ms(d[(d.len() * 95 / 100).min(d.len() - 1)]))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n = files();
    let dir = tempfile::tempdir().unwrap();
    let store = usageflow_lake::open_store(&usageflow_lake::StoreConfig::local(dir.path())).unwrap();
    let catalogue = Arc::new(
        usageflow_catalog::load_dir(
            &Path::new(&std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo")).join("config/catalog"),
        )
        .unwrap(),
    );
    let workflow = WorkflowStore::new(store.clone(), Arc::new(SystemClock));
    let setup = FileService::new(store.clone(), workflow.clone(), catalogue.clone());
    let vendor = Actor::vendor("VA-200-002", r("SU-fieldlink", "fieldlink"));
    let provider = Actor::provider("PA-500-001", r("SU-northwind", "northwind"));
    let started = Instant::now();
    let created: Vec<String> = futures::stream::iter((0..n).map(|i| {
        let (workflow, setup, vendor, provider) = (workflow.clone(), setup.clone(), vendor.clone(), provider.clone());
        async move {
            let req = request(i);
            let book = workbook(req.file.period.from);
            let f = workflow.create(req, &vendor).await.unwrap();
            if i % 10 == 0 {
                workflow.act(&f.id, FileChange::Delete, &vendor).await.unwrap();
            } else {
                let up = setup.upload(&vendor, &f.id, "usage.xlsx", book).await.unwrap();
                assert_eq!(up.file.status.as_str(), "ready", "{:?}", up.validation.errors);
                setup.submit(&vendor, &f.id).await.unwrap();
                setup.accept(&provider, &f.id, "").await.unwrap();
            }
            f.id
        }
    }))
    .buffer_unordered(8)
    .collect()
    .await;
    println!(
        "setup: {} files in {:.1} s (every tenth deleted, the others uploaded with 4 records, submitted, accepted)",
        created.len(),
        started.elapsed().as_secs_f64()
    );

    let started = Instant::now();
    let all = workflow.list().await.unwrap();
    println!(
        "reading every file's state (what each listing did before the index): {:.0} ms for {} files",
        started.elapsed().as_secs_f64() * 1000.0,
        all.len()
    );

    let service = FileService::new(store.clone(), workflow, catalogue.clone());
    let key = StoredKey {
        id: "SU-northwind".into(),
        name: "bench".into(),
        account: "PA-500-001".into(),
        role: Role::Provider,
        sha256: digest(KEY),
    };
    let app = usageflow_api::app(AppState::new(service, KeyRing::new([key])), &ApiConfig::default());
    let get = |path: String| {
        let app = app.clone();
        async move {
            let req = Request::builder()
                .uri(format!("/public/v1{path}"))
                .header("Authorization", format!("ApiKey {KEY}"))
                .body(Body::empty())
                .unwrap();
            let started = Instant::now();
            let res = app.oneshot(req).await.unwrap();
            assert_eq!(res.status(), StatusCode::OK, "{path}");
            let range = res.headers().get("content-range").map(|v| v.to_str().unwrap().to_owned());
            let body = axum::body::to_bytes(res.into_body(), usize::MAX).await.unwrap();
            (started.elapsed(), range, body.len())
        }
    };
    let (cold, range, _) = get("/usage/files?ordering(-created.at)&limit=25".into()).await;
    println!(
        "first page, cold index (loads every file once): {:.0} ms, {}",
        cold.as_secs_f64() * 1000.0,
        range.unwrap_or_default()
    );
    let pages: [(&str, String); 8] = [
        ("first page, newest first", "/usage/files?ordering(-created.at)&limit=25".into()),
        ("last page", format!("/usage/files?ordering(-created.at)&limit=25&offset={}", n.saturating_sub(25))),
        ("status filter (review page)", "/usage/files?status=deleted&ordering(-created.at)&limit=25".into()),
        ("product + search", "/usage/files?product.id=PRD-200-200-002&search=2025-03&limit=25".into()),
        ("file detail", format!("/usage/files/{}", created[n / 2])),
        ("file summary (review page)", format!("/usage/files/{}/summary", created[n / 2 + 1])),
        ("accepted records, first page", "/usage/records?in(status,(approved,closed))&limit=25".into()),
        ("chunks, first page", "/usage/chunks?limit=25".into()),
    ];
    println!("\n| request | median ms | p95 ms | answer |");
    println!("|---|---:|---:|---|");
    for (name, path) in pages {
        let mut times = Vec::new();
        let mut last = (None, 0);
        let rounds = if name.starts_with("accepted") || name.starts_with("chunks") { 5 } else { 50 };
        for _ in 0..rounds {
            let (t, range, bytes) = get(path.clone()).await;
            times.push(t);
            last = (range, bytes);
        }
        let (p50, p95) = quantiles(times);
        println!("| {name} | {p50:.1} | {p95:.1} | {} ({} bytes) |", last.0.unwrap_or_else(|| "-".into()), last.1);
    }
}
