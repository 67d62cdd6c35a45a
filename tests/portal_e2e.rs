//! The vendor and distributor portals end to end in headless Chromium (Debian's `chromium`,
//! driven through `chromedriver` over WebDriver): a vendor creates a usage file, uploads a
//! workbook with an invalid row and sees why, uploads a valid one, looks at the plots and
//! submits; the distributor reviews it with its summary, accepts it, downloads the billing
//! export, uploads the reconciliation, and finds the file closed. The live view shows the
//! committed events of the lake. Screenshots of every step are kept in
//! `artifacts/portal-e2e/` (or `$USAGEFLOW_ARTIFACTS_DIR/portal-e2e/`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;
use usageflow_api::{ApiConfig, AppState, KeyRing, Role, StoredKey, auth::digest};
use usageflow_files::FileService;
use usageflow_lake::tables::{EventRow, EventsBuilder};
use usageflow_lake::{DeltaLake, Table};
use usageflow_model::ReportingSchema;
use usageflow_workflow::{SystemClock, WorkflowStore};

const VENDOR_KEY: &str = "SU-fieldlink.portal-secret-of-fieldlink";
const PROVIDER_KEY: &str = "SU-northwind.portal-secret-of-northwind";
const RESELLER_KEY: &str = "SU-blueharbor.portal-secret-of-blueharbor";
const WAIT: Duration = Duration::from_secs(20);

struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn artifacts() -> PathBuf {
    let base = std::env::var_os("USAGEFLOW_ARTIFACTS_DIR").map_or_else(
        || Path::new(&std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo")).join("artifacts"),
        PathBuf::from,
    );
    let dir = base.join("portal-e2e");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

struct Browser {
    client: Client,
    base: String,
    shots: PathBuf,
    taken: usize,
}

impl Browser {
    async fn start(base: String, downloads: &Path, profile: &Path) -> (Browser, Driver) {
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map(Driver)
            .expect("chromedriver is not installed: deploy/install-deps.sh installs Debian's chromium-driver");
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--window-size=1366,1000",
                    format!("--user-data-dir={}", profile.display())],
                "prefs": {
                    "download.default_directory": downloads.display().to_string(),
                    "download.prompt_for_download": false,
                },
            },
        });
        let serde_json::Value::Object(caps) = caps else { unreachable!() };
        let started = Instant::now();
        let client = loop {
            match ClientBuilder::new(HttpConnector::new())
                .capabilities(caps.clone())
                .connect(&format!("http://127.0.0.1:{port}"))
                .await
            {
                Ok(c) => break c,
                Err(e) if started.elapsed() < WAIT => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("cannot start headless Chromium through chromedriver: {e}"),
            }
        };
        (Browser { client, base, shots: artifacts(), taken: 0 }, driver)
    }

    async fn open(&self, hash: &str) {
        self.client.goto(&format!("{}/portal/{hash}", self.base)).await.unwrap();
    }

    async fn shot(&mut self, name: &str) {
        self.taken += 1;
        let png = self.client.screenshot().await.unwrap();
        assert!(png.starts_with(b"\x89PNG"), "a screenshot is a PNG");
        std::fs::write(self.shots.join(format!("{:02}-{name}.png", self.taken)), png).unwrap();
    }

    async fn fail(&mut self, what: String) -> ! {
        self.shot("failure").await;
        let banner = self.text_now("#banner").await.unwrap_or_default();
        let main = self.text_now("#main").await.unwrap_or_default();
        panic!("{what}\nbanner: {banner}\npage: {}", main.chars().take(2000).collect::<String>());
    }

    async fn text_now(&self, css: &str) -> Option<String> {
        let el = self.client.find(Locator::Css(css)).await.ok()?;
        el.text().await.ok()
    }

    /// Waits until `css` exists and its text contains `text`; returns the text.
    async fn wait_text(&mut self, css: &str, text: &str) -> String {
        let started = Instant::now();
        loop {
            if let Some(t) = self.text_now(css).await
                && t.contains(text)
            {
                return t;
            }
            if started.elapsed() > WAIT {
                let now = self.text_now(css).await;
                self.fail(format!("`{css}` never showed `{text}` (it shows {now:?})")).await;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn wait_for(&mut self, css: &str) {
        self.wait_text(css, "").await;
    }

    async fn click(&mut self, css: &str) {
        self.wait_for(css).await;
        self.client.find(Locator::Css(css)).await.unwrap().click().await.unwrap();
    }

    async fn type_in(&mut self, css: &str, text: &str) {
        self.wait_for(css).await;
        self.client.find(Locator::Css(css)).await.unwrap().send_keys(text).await.unwrap();
    }

    /// Sets an input's value as a date picker would.
    async fn set_value(&mut self, css: &str, value: &str) {
        self.wait_for(css).await;
        self.client
            .execute("document.querySelector(arguments[0]).value = arguments[1];", vec![json!(css), json!(value)])
            .await
            .unwrap();
    }

    async fn select(&mut self, css: &str, value: &str) {
        self.wait_for(css).await;
        self.client.find(Locator::Css(css)).await.unwrap().select_by_value(value).await.unwrap();
    }

    /// Creates an October file of Fieldlink's connectivity product on the "New file" page and
    /// returns its id.
    async fn new_file(&mut self, name: &str) -> String {
        self.open("#/files/new").await;
        self.select("#new-product", "PRD-200-200-002").await;
        self.select("#new-contract", "CRD-20001-10001-00001").await;
        self.set_value("#new-from", "2026-10-01").await;
        self.set_value("#new-to", "2026-10-31").await;
        self.type_in("#new-name", name).await;
        self.click("#create-file").await;
        self.wait_text("#file-status", "draft").await;
        self.wait_text("h1", name).await;
        let url = self.client.current_url().await.unwrap();
        url.fragment().unwrap().trim_start_matches("/files/").to_owned()
    }

    async fn upload(&mut self, path: &Path) {
        self.type_in("#upload-input", path.to_str().unwrap()).await;
        self.click("#upload-submit").await;
    }

    async fn sign_in(&mut self, key: &str, role: &str) {
        self.open("#/login").await;
        self.wait_for("#api-key").await;
        let field = self.client.find(Locator::Css("#api-key")).await.unwrap();
        field.clear().await.unwrap();
        field.send_keys(key).await.unwrap();
        let typed = field.prop("value").await.unwrap().unwrap_or_default();
        assert_eq!(typed, key, "the key field holds exactly the key typed");
        self.click("#login-submit").await;
        self.wait_text("#account", role).await;
    }

    async fn sign_out(&mut self) {
        self.click("#logout").await;
        self.wait_for("#login-form").await;
    }
}

/// Waits for the browser to finish downloading a file whose name ends with `suffix`.
async fn wait_download(dir: &Path, suffix: &str) -> PathBuf {
    let started = Instant::now();
    loop {
        let found = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| p.to_string_lossy().ends_with(suffix));
        if let Some(p) = found {
            return p;
        }
        assert!(started.elapsed() < WAIT, "nothing ending in {suffix} was downloaded to {}", dir.display());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn row(id: &str, mpn: &str, quantity: &str, day: u32, asset: &str) -> Vec<String> {
    let columns = usageflow_files::write::record_columns(ReportingSchema::Qt);
    let value = |c: &str| match c {
        "record_id" => id.to_owned(),
        "item_search_criteria" => "item.mpn".to_owned(),
        "item_search_value" => mpn.to_owned(),
        "quantity" => quantity.to_owned(),
        "start_time_utc" => format!("2026-10-{day:02} 00:00:00"),
        "end_time_utc" => format!("2026-10-{day:02} 23:59:59"),
        "asset_search_criteria" => "asset.id".to_owned(),
        "asset_search_value" => asset.to_owned(),
        _ => String::new(),
    };
    columns.iter().map(|c| value(c)).collect()
}

fn workbook(rows: &[Vec<String>]) -> Vec<u8> {
    let columns = usageflow_files::write::record_columns(ReportingSchema::Qt);
    usageflow_files::write_workbook(&[], &[], &columns, rows).unwrap()
}

/// Commits one events file to the lake: `(asset, quantity, hours ago)` per event, all of
/// Fieldlink's SMS item, so that the live view has usage of the current month.
async fn commit_events(lake: &DeltaLake, events: &[(&str, i128, i64)]) -> i128 {
    let now = Utc::now();
    let month_start = Utc
        .with_ymd_and_hms(
            now.format("%Y").to_string().parse().unwrap(),
            now.format("%m").to_string().parse().unwrap(),
            1,
            0,
            0,
            0,
        )
        .unwrap();
    let mut b = EventsBuilder::default();
    let mut total = 0;
    for (n, (asset, quantity, hours_ago)) in events.iter().enumerate() {
        let start = (now - chrono::Duration::hours(*hours_ago)).max(month_start).timestamp_micros();
        let id = format!("ev-{n}");
        b.push(&EventRow {
            event_id: &id,
            product_id: "PRD-200-200-002",
            contract_id: "CRD-20001-10001-00001",
            asset_id: asset,
            item_id: Some("PRD-200-200-002-0002"),
            item_mpn: "FL-SMS",
            tier: None,
            category_id: None,
            quantity: quantity * 100_000_000,
            amount: None,
            start_time: start,
            end_time: start + 60_000_000,
            attributes: None,
            kafka_partition: 0,
            kafka_offset: n as i64,
            kafka_timestamp: start,
        });
        total += quantity;
    }
    let day = month_start.format("%Y-%m-%d").to_string();
    let file =
        lake.write_file(Table::Events, &b.finish(), &[("date", &day)], "part-00000-portal.parquet").await.unwrap();
    lake.append(Table::Events, vec![file]).await.unwrap();
    total
}

/// Committed events of the current month: `(asset, quantity, hours ago)`.
const LIVE_EVENTS: &[(&str, i128, i64)] =
    &[("AS-1000-0719-1201", 5, 3), ("AS-1000-0719-1201", 7, 2), ("AS-1000-8638-1202", 11, 1)];

/// The server's router over `store` with the sample catalogue, accepting `keys`
/// (`(key, account, role)`; the key id is the part before the dot), and its file service.
fn portal_app(lake: &DeltaLake, keys: &[(&str, &str, Role)]) -> (FileService, axum::Router) {
    let store = lake.store().clone();
    let catalogue = Arc::new(
        usageflow_catalog::load_dir(
            &Path::new(&std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo")).join("config/catalog"),
        )
        .unwrap(),
    );
    let service = FileService::new(store.clone(), WorkflowStore::new(store, Arc::new(SystemClock)), catalogue)
        .with_lake(lake.clone());
    let keys = keys.iter().map(|(key, account, role)| {
        let id = key.split_once('.').map_or(*key, |(id, _)| id);
        StoredKey { id: id.into(), name: id.into(), account: (*account).into(), role: *role, sha256: digest(key) }
    });
    let app = usageflow_api::app(AppState::new(service.clone(), KeyRing::new(keys)), &ApiConfig::default());
    (service, app)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vendor_to_distributor_in_the_browser() {
    let dir = tempfile::tempdir().unwrap();
    let lake = DeltaLake::open_store(&usageflow_lake::StoreConfig::local(dir.path().join("store"))).unwrap();
    let (service, app) = portal_app(
        &lake,
        &[
            (VENDOR_KEY, "VA-200-002", Role::Vendor),
            (PROVIDER_KEY, "PA-500-001", Role::Provider),
            (RESELLER_KEY, "RA-700-001", Role::Reseller),
        ],
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let live_total = commit_events(&lake, LIVE_EVENTS).await;

    let downloads = dir.path().join("downloads");
    std::fs::create_dir_all(&downloads).unwrap();
    let (mut b, _driver) = Browser::start(base, &downloads, &dir.path().join("profile")).await;

    // A wrong key is refused with the API's reason.
    b.open("#/login").await;
    b.type_in("#api-key", "SU-fieldlink.wrong").await;
    b.click("#login-submit").await;
    b.wait_text("#banner", "AUTH_").await;
    b.shot("login-refused").await;

    // Vendor: products, a new file, an invalid upload with its reasons, a valid one, submit.
    b.sign_in(VENDOR_KEY, "vendor").await;
    b.wait_for("#files-table").await;
    b.open("#/products").await;
    b.wait_text("#main", "FL-SMS").await;
    b.shot("vendor-products").await;
    let file_id = b.new_file("Fieldlink October").await;
    assert!(file_id.starts_with("UF-2026-10-"), "{file_id}");
    b.shot("vendor-new-file").await;

    let bad = dir.path().join("october-bad.xlsx");
    std::fs::write(
        &bad,
        workbook(&[
            row("r1", "FL-SMS", "10", 1, "AS-1000-0719-1201"),
            row("r2", "FL-SMS", "-3", 2, "AS-1000-8638-1202"),
        ]),
    )
    .unwrap();
    // A workbook without a required column: the whole file's problem is shown first.
    let no_column = dir.path().join("october-no-column.xlsx");
    let columns: Vec<&str> = usageflow_files::write::record_columns(ReportingSchema::Qt)
        .into_iter()
        .filter(|c| *c != "asset_search_value")
        .collect();
    let rows: Vec<Vec<String>> = [row("r1", "FL-SMS", "10", 1, "AS-1000-0719-1201")]
        .iter()
        .map(|r| {
            let all = usageflow_files::write::record_columns(ReportingSchema::Qt);
            all.iter().zip(r).filter(|(c, _)| **c != "asset_search_value").map(|(_, v)| v.clone()).collect()
        })
        .collect();
    std::fs::write(&no_column, usageflow_files::write_workbook(&[], &[], &columns, &rows).unwrap()).unwrap();
    b.upload(&no_column).await;
    b.wait_text("#file-status", "invalid").await;
    let problems = b.wait_text("#invalid-rows", "lacks the column").await;
    assert!(problems.contains("file") && problems.contains("asset_search_value"), "{problems}");
    b.shot("vendor-file-problem").await;

    b.upload(&bad).await;
    b.wait_text("#file-status", "invalid").await;
    let invalid = b.wait_text("#invalid-rows", "r2").await;
    assert!(invalid.contains("quantity"), "the reason names the column: {invalid}");
    b.shot("vendor-invalid-rows").await;
    // The processed file, with the same reasons, downloads from the page.
    b.click("#download-processed").await;
    let processed = wait_download(&downloads, "-PROCESSED.xlsx").await;
    let book = usageflow_files::read_workbook(&std::fs::read(processed).unwrap(), &Default::default()).unwrap();
    assert_eq!(book.records.iter().filter(|r| r.get("status") == Some("invalid")).count(), 1);

    let good = dir.path().join("october.xlsx");
    std::fs::write(
        &good,
        workbook(&[
            row("r1", "FL-SMS", "10", 1, "AS-1000-0719-1201"),
            row("r2", "FL-DATA-MB", "20.5", 2, "AS-1000-8638-1202"),
            row("r3", "FL-SMS", "30", 3, "AS-1000-6557-1203"),
            row("r4", "FL-SMS", "40", 4, "AS-1000-6557-1203"),
        ]),
    )
    .unwrap();
    b.upload(&good).await;
    b.wait_text("#file-status", "ready").await;
    assert_eq!(b.wait_text("#total-usage", "100.5").await, "100.5", "the exact decimal sum");
    b.wait_for("[data-testid=per-item-chart] rect").await;
    b.wait_for("[data-testid=per-day-chart] polyline").await;
    assert_eq!(b.client.find_all(Locator::Css("[data-testid=top-assets-chart] rect")).await.unwrap().len(), 3);
    b.shot("vendor-ready-with-plots").await;
    b.click("#submit-file").await;
    b.wait_text("#file-status", "pending").await;
    let history = b.wait_text("#history", "submit").await;
    assert!(history.contains("upload") && history.contains("create"), "{history}");
    b.shot("vendor-submitted").await;

    // A second file, submitted too: the distributor will reject it.
    let second = b.new_file("Fieldlink October, second try").await;
    b.upload(&good).await;
    b.wait_text("#file-status", "ready").await;
    b.click("#submit-file").await;
    b.wait_text("#file-status", "pending").await;

    // The live view: the committed events of this month, exact sums, plots.
    b.open("#/live?auto=off").await;
    assert_eq!(b.wait_text("#live-quantity", &live_total.to_string()).await, live_total.to_string());
    b.wait_for("[data-testid=live-series-chart] circle").await;
    b.wait_text("[data-testid=live-assets-chart]", "AS-1000-8638-1202").await;
    b.shot("vendor-live-usage").await;
    b.sign_out().await;

    // Distributor: review with summary and plots, accept with a note.
    b.sign_in(PROVIDER_KEY, "provider").await;
    b.wait_text("#files-table", &file_id).await;
    b.wait_text("#files-table", &second).await;
    b.shot("provider-review-list").await;
    b.click(&format!("a.file-link[href='#/files/{second}']")).await;
    b.wait_text("#file-status", "pending").await;
    b.click("#reject-file").await;
    b.wait_text("#banner", "note").await;
    b.type_in("#review-note", "Duplicate of the first October file").await;
    b.click("#reject-file").await;
    b.wait_text("#file-status", "rejected").await;
    b.open("#/review").await;
    b.wait_text("#files-table", &file_id).await;
    b.click(&format!("a.file-link[href='#/files/{file_id}']")).await;
    b.wait_text("#file-status", "pending").await;
    b.wait_for("[data-testid=per-item-chart] rect").await;
    let per_item = b.wait_text("#per-item-table", "FL-DATA-MB").await;
    assert!(per_item.contains("FL-SMS 3 2 80 message") && per_item.contains("FL-DATA-MB 1 1 20.5 MB"), "{per_item}");
    b.shot("provider-review-file").await;
    b.type_in("#review-note", "Checked against our traffic logs").await;
    b.click("#accept-file").await;
    b.wait_text("#file-status", "accepted").await;
    b.shot("provider-accepted").await;

    // Rules, accepted records and chunks per hub.
    b.open("#/rules").await;
    b.wait_for("#rule-form").await;
    b.type_in("#rule-text", "quantity <= 1000").await;
    b.click("#rule-create").await;
    b.wait_text("#rules-table", "quantity <= 1000").await;
    b.shot("provider-rules").await;
    // Per hub: the assets of this file are all in Northwind's EU hub, none in its UK hub.
    b.open("#/records").await;
    b.wait_text("#records-table", "20.5").await;
    b.select("#filter-hub", "HB-0001-0002").await;
    b.click("#filter-hub-submit").await;
    b.wait_text("#records-table", "Nothing here").await;
    b.select("#filter-hub", "HB-0001-0001").await;
    b.click("#filter-hub-submit").await;
    b.wait_text("#records-table", "20.5").await;
    assert_eq!(b.client.find_all(Locator::Css("#records-table tbody tr")).await.unwrap().len(), 4);
    b.shot("provider-accepted-records").await;
    b.open("#/chunks?hub=HB-0001-0002").await;
    b.wait_text("#chunks-table", "Nothing here").await;
    b.select("#filter-hub", "HB-0001-0001").await;
    b.click("#filter-hub-submit").await;
    b.wait_text("#chunks-table", &file_id).await;
    b.wait_text("#chunks-table", "Northwind Hub EU").await;
    b.shot("provider-chunks").await;

    // Billing export download.
    b.open("#/billing").await;
    b.set_value("#billing-from", "2026-10-01").await;
    b.set_value("#billing-to", "2026-10-31").await;
    b.click("#billing-download").await;
    let result = b.wait_text("#billing-result", "records").await;
    assert!(result.contains(": 4 records"), "{result}");
    b.shot("provider-billing-export").await;
    let csv = std::fs::read_to_string(wait_download(&downloads, ".csv").await).unwrap();
    assert_eq!(csv.lines().count(), 5, "a header and 4 records:\n{csv}");
    assert!(csv.contains("20.5"), "{csv}");

    // Reconciliation: billing's references for every record close them, and the file.
    let file = service.workflow().get(&file_id).await.unwrap();
    let ids = service.record_ids(&file).await.unwrap();
    assert_eq!(ids.len(), 4);
    let rows: Vec<Vec<String>> = ids.iter().enumerate().map(|(n, id)| vec![id.clone(), format!("INV-{n}")]).collect();
    let recon = dir.path().join("recon.xlsx");
    std::fs::write(
        &recon,
        usageflow_files::write_workbook(&[], &[], &["record_id", "external_billing_id"], &rows).unwrap(),
    )
    .unwrap();
    b.open(&format!("#/files/{file_id}")).await;
    b.click("#reconcile-file").await;
    b.wait_for("#recon-form").await;
    let chosen = b.client.find(Locator::Css("#recon-file")).await.unwrap().prop("value").await.unwrap();
    assert_eq!(chosen.as_deref(), Some(file_id.as_str()), "the file's own reconciliation form names it");
    b.type_in("#recon-input", recon.to_str().unwrap()).await;
    b.click("#recon-submit").await;
    b.wait_text("#recon-table", &file_id).await;
    b.shot("provider-reconciliation").await;
    b.open("#/closed").await;
    b.wait_text("#files-table", &file_id).await;
    b.shot("provider-closed").await;
    assert_eq!(service.workflow().get(&file_id).await.unwrap().status.as_str(), "closed");

    // The vendor reads why the second file was rejected, and deletes it.
    b.sign_out().await;
    b.sign_in(VENDOR_KEY, "vendor").await;
    b.open(&format!("#/files/{second}")).await;
    b.wait_text("#rejection-note", "Duplicate of the first October file").await;
    b.shot("vendor-rejected").await;
    b.click("#delete-file").await;
    b.client.accept_alert().await.unwrap();
    b.wait_text("#file-status", "deleted").await;
    b.open("#/files?status=deleted").await;
    b.wait_text("#files-table", &second).await;
    b.shot("vendor-deleted").await;

    // A reseller sees the usage of the assets it resells, and only those.
    b.sign_out().await;
    b.sign_in(RESELLER_KEY, "reseller").await;
    let usage = b.wait_text("#aggregates-table", "AS-1000-0719-1201").await;
    assert!(usage.contains("AS-1000-8638-1202") && !usage.contains("AS-1000-6557-1203"), "{usage}");
    b.shot("reseller-usage").await;
    b.client.clone().close().await.unwrap();
}

/// The live view's numbers: exact sums of the committed events, narrowed by asset and item,
/// per hour, and only of the caller's products; bad windows are refused with a reason.
#[tokio::test]
async fn live_view_is_exact_and_scoped() {
    use tower::ServiceExt;
    let dir = tempfile::tempdir().unwrap();
    let lake = DeltaLake::open_store(&usageflow_lake::StoreConfig::local(dir.path())).unwrap();
    let accounts = [
        ("fieldlink", "VA-200-002", Role::Vendor),
        ("vaultline", "VA-300-003", Role::Vendor),
        ("northwind", "PA-500-001", Role::Provider),
        ("blueharbor", "RA-700-001", Role::Reseller),
    ];
    let keys: Vec<(String, &str, Role)> =
        accounts.iter().map(|(name, account, role)| (format!("SU-{name}.live-{name}"), *account, *role)).collect();
    let keys: Vec<(&str, &str, Role)> = keys.iter().map(|(k, a, r)| (k.as_str(), *a, *r)).collect();
    let (_, app) = portal_app(&lake, &keys);
    commit_events(&lake, LIVE_EVENTS).await;
    let get = |who: &str, query: &str| {
        let req = axum::http::Request::builder()
            .uri(format!("/public/v1/usage/live{query}"))
            .header("Authorization", format!("ApiKey SU-{who}.live-{who}"))
            .body(axum::body::Body::empty())
            .unwrap();
        let app = app.clone();
        async move {
            let res = app.oneshot(req).await.unwrap();
            let status = res.status();
            let body = axum::body::to_bytes(res.into_body(), usize::MAX).await.unwrap();
            (status, serde_json::from_slice::<serde_json::Value>(&body).unwrap())
        }
    };
    let (status, all) = get("fieldlink", "").await;
    assert_eq!(status, 200, "{all}");
    assert_eq!(
        (all["totals"]["quantity"].as_str(), all["totals"]["events"].as_str()),
        (Some("23"), Some("3")),
        "{all}"
    );
    assert_eq!(
        (all["top_assets"][0]["asset_id"].as_str(), all["top_assets"][0]["quantity"].as_str()),
        (Some("AS-1000-0719-1201"), Some("12"))
    );
    assert_eq!(
        (all["top_assets"][1]["asset_id"].as_str(), all["top_assets"][1]["quantity"].as_str()),
        (Some("AS-1000-8638-1202"), Some("11"))
    );
    assert_eq!(all["per_item"][0]["item_mpn"], "FL-SMS");
    let (_, one) = get("fieldlink", "?asset=AS-1000-0719-1201&product=PRD-200-200-002").await;
    assert_eq!(one["totals"]["quantity"], "12", "{one}");
    let (_, none) = get("fieldlink", "?item=FL-DATA-MB").await;
    assert_eq!(none["totals"]["events"], "0", "{none}");
    let (_, hourly) = get("fieldlink", "?bucket=hour").await;
    let sum: rust_decimal::Decimal = hourly["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["quantity"].as_str().unwrap().parse::<rust_decimal::Decimal>().unwrap())
        .sum();
    assert_eq!(sum.to_string(), "23");
    assert_eq!(hourly["bucket"], "hour");
    assert_eq!(get("northwind", "").await.1["totals"]["quantity"], "23", "the provider of the product sees it");
    assert_eq!(get("vaultline", "").await.1["totals"]["events"], "0", "another vendor sees none of it");
    assert_eq!(get("blueharbor", "").await.0, 403);
    for (query, says) in [
        ("?from=yesterday", "yesterday"),
        ("?bucket=week", "week"),
        ("?from=2026-11-10&to=2026-11-01", "before"),
        ("?colour=red", "colour"),
    ] {
        let (status, body) = get("fieldlink", query).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert!(body["errors"][0].as_str().unwrap().contains(says), "{query}: {body}");
    }
}
