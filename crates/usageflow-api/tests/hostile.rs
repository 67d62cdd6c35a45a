//! Hostile tenants against the HTTP API: error-channel exfiltration through SQL with several
//! casts and functions on every table and column, nested and oversized RQL on every listing,
//! dense and lying workbooks on every upload path, memory-hungry SQL, concurrent and
//! interrupted uploads, and formulas in CSV. Each asserts that nothing of another tenant
//! appears in any answer or error, and that the server still answers afterwards.

mod support;

use std::collections::BTreeSet;

use axum::http::StatusCode;
use serde_json::json;
use usageflow_model::{FileChange, ReportingSchema};

use support::{ACCOUNTS, Api, api, qt_book, seed, sms};

/// Every text value of every table an account can read through `POST /sql`.
async fn visible(api: &Api, who: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for table in usageflow_query::lake::TABLES {
        let r = api.post(who, "/sql", json!({"sql": format!("SELECT * FROM {table}")})).await;
        assert_eq!(r.status, StatusCode::OK, "{who} {table}: {}", r.body);
        for row in r.body.as_array().into_iter().flatten() {
            for value in row.as_object().into_iter().flat_map(|o| o.values()) {
                if let Some(text) = value.as_str() {
                    out.insert(text.to_owned());
                }
            }
        }
    }
    out
}

/// For each account, the values some other account sees and it does not, long enough to be
/// recognised in any text (ids, names, notes).
async fn foreign(api: &Api) -> std::collections::BTreeMap<&'static str, Vec<String>> {
    let mut seen = std::collections::BTreeMap::new();
    for (who, _, _) in ACCOUNTS {
        seen.insert(who, visible(api, who).await);
    }
    let mut out = std::collections::BTreeMap::new();
    for (who, mine) in &seen {
        let others: BTreeSet<&String> = seen.iter().filter(|(w, _)| *w != who).flat_map(|(_, v)| v).collect();
        let secrets = others
            .into_iter()
            .filter(|v| {
                v.len() >= 6 && !mine.contains(*v) && v.parse::<f64>().is_err() && !OWN_WORDS.contains(v.as_str())
            })
            .cloned()
            .collect();
        out.insert(*who, secrets);
    }
    out
}

/// Words of the server's own answers, which a value may share without having leaked.
const OWN_WORDS: &str = "execution error: the query failed while it ran; the message is withheld because it may quote \
    values of rows (the server's log has it under the request id) error_code errors request_id syntax plan limit \
    resources";

fn leaked<'a>(bytes: &[u8], secrets: &'a [String]) -> Option<&'a String> {
    let text = String::from_utf8_lossy(bytes);
    secrets.iter().find(|s| text.contains(s.as_str()))
}

/// The columns of every public table.
async fn columns(api: &Api) -> Vec<(&'static str, Vec<String>)> {
    let sources = usageflow_query::load_sources(&api.service).await.unwrap();
    let ctx =
        usageflow_query::analyst_session(api.service.object_store().clone(), &sources, &usageflow_query::Scope::All)
            .await
            .unwrap();
    let mut out = Vec::new();
    for table in usageflow_query::lake::TABLES {
        let schema = ctx.table(table).await.unwrap().schema().as_arrow().clone();
        out.push((table, schema.fields().iter().map(|f| f.name().clone()).collect()));
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn sql_errors_never_carry_another_tenants_data() {
    let api = api();
    let (a, _) = seed(&api).await;
    // Notes and decisions, so that every table has rows of both tenants.
    api.post("fieldlink", &format!("/usage/files/{a}/submit"), json!({})).await;
    let accepted = api
        .post("northwind", &format!("/usage/files/{a}/accept"), json!({"acceptance_note": "note-of-northwind"}))
        .await;
    assert_eq!(accepted.body["status"], "accepted", "{}", accepted.body);
    let tables = columns(&api).await;
    // Casts and parsers whose errors quote the value they fail on, in a filter and in a
    // projection.
    let attacks_of = |table: &str, c: &str| {
        [
            format!("SELECT count(*) FROM {table} WHERE CAST(CAST({c} AS VARCHAR) || '|' AS INT) = 1"),
            format!("SELECT arrow_cast(CAST({c} AS VARCHAR), 'Int64') FROM {table}"),
            format!("SELECT count(*) FROM {table} WHERE to_timestamp(CAST({c} AS VARCHAR)) IS NULL"),
            format!("SELECT regexp_like('x', CAST({c} AS VARCHAR) || '(') FROM {table}"),
        ]
    };
    let secrets_of = foreign(&api).await;
    let mut attacks = 0;
    for who in ["fieldlink", "southgate", "blueharbor"] {
        let secrets = &secrets_of[who];
        assert!(!secrets.is_empty(), "{who} has no foreign values to look for");
        for (table, cols) in &tables {
            for column in cols {
                for sql in attacks_of(table, &format!("\"{column}\"")) {
                    attacks += 1;
                    let r = api.post(who, "/sql", json!({"sql": sql})).await;
                    if let Some(secret) = leaked(&r.bytes, secrets) {
                        panic!("{who}: `{sql}` answered {} with `{secret}` of another tenant: {}", r.status, r.body);
                    }
                    if r.status != StatusCode::OK {
                        assert!(r.body["error_code"].as_str().is_some_and(|c| c.starts_with("SQL_")), "{}", r.body);
                        if r.body["error_code"] == "SQL_003" {
                            assert!(r.body["request_id"].as_str().is_some(), "{}", r.body);
                        }
                    }
                }
            }
        }
    }
    assert!(attacks > 600, "{attacks}");
    // The server still answers.
    assert_eq!(api.get("fieldlink", "/usage/files").await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn explain_and_memory_hungry_sql_are_refused_and_the_server_goes_on() {
    let api = api();
    seed(&api).await;
    let r = api.post("fieldlink", "/sql", json!({"sql": "EXPLAIN SELECT * FROM usage_records"})).await;
    assert_eq!((r.status, r.body["error_code"].as_str()), (StatusCode::BAD_REQUEST, Some("SQL_001")), "{}", r.body);
    for sql in [
        "SELECT length(repeat('x', 1000000000))",
        "SELECT length(repeat('x', 2000000000))",
        "SELECT length(lpad('x', 2000000000))",
        "SELECT cardinality(range(1, 2000000000))",
        "SELECT length(string_agg(repeat('w', 100000), ',')) FROM generate_series(1, 100000)",
    ] {
        let r = api.post("fieldlink", "/sql", json!({"sql": sql})).await;
        assert_eq!(
            (r.status, r.body["error_code"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("SQL_004")),
            "{sql}: {}",
            r.body
        );
    }
    // A syntax error names the position; an execution error withholds the value.
    let r = api.post("fieldlink", "/sql", json!({"sql": "SELEC 1"})).await;
    assert_eq!(r.body["error_code"], "SQL_001");
    assert!(r.body["errors"][0].as_str().unwrap().contains("syntax error"), "{}", r.body);
    let r = api.post("fieldlink", "/sql", json!({"sql": "SELECT CAST(name AS INT) FROM usage_files"})).await;
    assert_eq!(r.body["error_code"], "SQL_003", "{}", r.body);
    assert!(!r.body.to_string().contains("Fieldlink November"), "{}", r.body);
    let ok = api.post("fieldlink", "/sql", json!({"sql": "SELECT count(*) AS n FROM usage_files"})).await;
    assert_eq!((ok.status, ok.body[0]["n"].as_i64()), (StatusCode::OK, Some(1)), "{}", ok.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn nested_and_oversized_rql_is_refused_on_every_listing() {
    let api = api();
    let (a, _) = seed(&api).await;
    let nested = format!("{}eq(status,ready){}", "(".repeat(1000), ")".repeat(1000));
    let deep_calls = format!("{}eq(status,ready){}", "and(".repeat(200), ")".repeat(200));
    let long = format!("in(id,({}))", vec!["UF-2026-11-0000-0000"; 600].join(","));
    for path in [
        "/usage/files".to_owned(),
        "/usage/records".to_owned(),
        "/usage/chunks".to_owned(),
        "/usage/aggregates".to_owned(),
        "/usage/reconciliations".to_owned(),
        format!("/usage/files/{a}/categories"),
        format!("/usage/files/{a}/errors"),
        "/products/PRD-200-200-002/usage/rules".to_owned(),
    ] {
        for query in [&nested, &deep_calls, &long] {
            let r = api.get("fieldlink", &format!("{path}?{query}")).await;
            assert_eq!(
                (r.status, r.body["error_code"].as_str()),
                (StatusCode::BAD_REQUEST, Some("RQL_001")),
                "{path}: {}",
                r.body
            );
        }
    }
    assert_eq!(api.get("fieldlink", "/usage/files?eq(status,ready)").await.status, StatusCode::OK);
}

/// A workbook with a header row and one cell at the last position of a worksheet (XFD1048576):
/// 1.7 KB that a dense reader would make 2^34 cells of.
fn dense_workbook() -> Vec<u8> {
    let mut book = rust_xlsxwriter::Workbook::new();
    let sheet = book.add_worksheet().set_name("records").unwrap();
    for (i, c) in usageflow_files::write::record_columns(ReportingSchema::Qt).iter().enumerate() {
        sheet.write_string(0, i as u16, *c).unwrap();
    }
    sheet.write_string(1_048_575, 16_383, "far away").unwrap();
    book.save_to_buffer().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn dense_workbooks_are_refused_on_every_upload_path() {
    let api = api();
    let (a, _) = seed(&api).await;
    let bytes = dense_workbook();
    assert!(bytes.len() < 8 * 1024, "{}", bytes.len());
    let up = api.upload("fieldlink", &format!("/usage/files/{a}/upload"), "usage_file", &bytes).await;
    assert_eq!(up.status, StatusCode::CREATED, "{}", up.body);
    assert_eq!(up.body["status"], "invalid", "{}", up.body);
    let detail = up.body["error_detail"].as_str().unwrap_or_default();
    assert!(detail.contains("has no records below its header row"), "{detail}");
    // The reconciliation upload reads workbooks with the same reader.
    let rows = [sms("r1", "10", "01", "AS-1000-0719-1201")];
    let up = api.upload_qt(&a, &rows).await;
    assert_eq!(up.body["status"], "ready", "{}", up.body);
    api.post("fieldlink", &format!("/usage/files/{a}/submit"), json!({})).await;
    api.post("northwind", &format!("/usage/files/{a}/accept"), json!({})).await;
    // A reconciliation of the dense workbook reads its one header and nothing else.
    let recon = api.upload("northwind", &format!("/usage/files/{a}/reconciliation"), "recon_file", &bytes).await;
    assert!(!recon.status.is_server_error(), "{} {}", recon.status, recon.body);
    let recon = api.upload("northwind", "/usage/reconciliations", "recon_file", &bytes).await;
    assert!(!recon.status.is_server_error(), "{} {}", recon.status, recon.body);
    assert_eq!(api.get("fieldlink", "/usage/files").await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn formulas_are_refused_in_identifiers_and_neutralised_in_csv() {
    let api = api();
    let (a, _) = seed(&api).await;
    let mut row = sms("=HYPERLINK(\"http://x\",\"click\")", "1", "01", "AS-1000-0719-1201");
    row.push(("category_id", "@SUM(A1)".into()));
    let rows = [row];
    let up = api.upload_qt(&a, &rows).await;
    assert_eq!(up.body["status"], "invalid", "{}", up.body);
    let errors = api.get("fieldlink", &format!("/usage/files/{a}/errors")).await;
    assert!(errors.body.to_string().contains("may not begin with"), "{}", errors.body);
    let csv = api
        .post("fieldlink", "/sql", json!({"sql": "SELECT '=1+2' AS f, '-3' AS n, -4 AS m, '@x' AS a", "format": "csv"}))
        .await;
    let text = String::from_utf8(csv.bytes).unwrap();
    assert_eq!(text.lines().nth(1), Some("'=1+2,-3,-4,'@x"), "{text}");
}

/// Provider rejects a record, then the file; the vendor uploads corrected rows and submits;
/// the provider accepts: every corrected record is approved, and the file's stats, its chunks
/// and the billing export count the same records. Then a record rejected before acceptance
/// stays out of all three.
#[tokio::test(flavor = "multi_thread")]
async fn decisions_belong_to_one_upload_and_billing_counts_agree() {
    let api = api();
    let (a, _) = seed(&api).await;
    api.post("fieldlink", &format!("/usage/files/{a}/submit"), json!({})).await;
    let recs = api.get("northwind", &format!("/usage/records?usagefile.id={a}")).await;
    let first = recs.body.as_array().unwrap().iter().find(|r| r["vendor_record_id"] == "r1").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = api
        .call(
            "northwind",
            axum::http::Method::PUT,
            &format!("/usage/records/{first}"),
            Some(json!({"status": "rejected"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = api.post("northwind", &format!("/usage/files/{a}/reject"), json!({"rejection_note": "fix r1"})).await;
    assert_eq!(r.body["status"], "rejected", "{}", r.body);
    let rows = [
        sms("r1", "11", "01", "AS-1000-0719-1201"),
        sms("r2", "20", "02", "AS-1000-8638-1202"),
        sms("r3", "30", "03", "AS-1000-6557-1203"),
    ];
    let up = api.upload_qt(&a, &rows).await;
    assert_eq!(up.body["status"], "ready", "{}", up.body);
    api.post("fieldlink", &format!("/usage/files/{a}/submit"), json!({})).await;
    let acc = api.post("northwind", &format!("/usage/files/{a}/accept"), json!({})).await;
    assert_eq!(acc.body["status"], "accepted", "{}", acc.body);
    agree(&api, &a, 3).await;

    // A second file with one record rejected before acceptance.
    let b = month_file(&api, "2026-10", 31, &[("x1", "1"), ("x2", "2"), ("x3", "3")]).await;
    api.post("fieldlink", &format!("/usage/files/{b}/submit"), json!({})).await;
    let recs = api.get("northwind", &format!("/usage/records?usagefile.id={b}")).await;
    let one = recs.body[0]["id"].as_str().unwrap().to_owned();
    api.call(
        "northwind",
        axum::http::Method::PUT,
        &format!("/usage/records/{one}"),
        Some(json!({"status": "rejected"})),
    )
    .await;
    api.post("northwind", &format!("/usage/files/{b}/accept"), json!({})).await;
    agree(&api, &b, 2).await;

    // A third file approved as a whole, then accepted.
    let c = month_file(&api, "2026-09", 30, &[("y1", "4"), ("y2", "5")]).await;
    api.post("fieldlink", &format!("/usage/files/{c}/submit"), json!({})).await;
    let all = api.post("northwind", &format!("/usage/files/{c}/approve-all"), json!({})).await;
    assert!(all.status.is_success(), "{}", all.body);
    api.post("northwind", &format!("/usage/files/{c}/accept"), json!({})).await;
    agree(&api, &c, 2).await;
}

/// A new Fieldlink file for `month` (`2026-MM`) with SMS records `(id, quantity)` on its
/// first day, uploaded and ready.
async fn month_file(api: &Api, month: &str, last_day: u32, records: &[(&str, &str)]) -> String {
    let f = api
        .post(
            "fieldlink",
            "/usage/files",
            json!({"product": {"id": "PRD-200-200-002"}, "contract": {"id": "CRD-20001-10001-00001"},
                "period": {"from": format!("{month}-01"), "to": format!("{month}-{last_day}")}, "external_id": format!("fl-{month}")}),
        )
        .await;
    let id = f.body["id"].as_str().unwrap().to_owned();
    let rows: Vec<Vec<(&str, String)>> = records
        .iter()
        .map(|(rid, q)| {
            let mut r = sms(rid, q, "01", "AS-1000-0719-1201");
            for (k, v) in &mut r {
                if k.ends_with("time_utc") {
                    *v = v.replace("2026-11-", &format!("{month}-"));
                }
            }
            r
        })
        .collect();
    let up = api.upload_qt(&id, &rows).await;
    assert_eq!(up.body["status"], "ready", "{}", up.body);
    id
}

/// The file's accepted count, its chunks' records and its billing export rows are `n`.
async fn agree(api: &Api, file: &str, n: u64) {
    let f = api.get("northwind", &format!("/usage/files/{file}")).await;
    assert_eq!(f.body["stats"]["accepted"], json!(n), "{}", f.body);
    let approved = api.get("northwind", &format!("/usage/records?usagefile.id={file}&status=approved&limit=1")).await;
    assert_eq!(approved.range.as_deref(), Some(format!("items 0-0/{n}").as_str()), "{}", approved.body);
    let chunks = api.get("northwind", &format!("/usage/chunks?usagefile.id={file}")).await;
    let in_chunks: u64 =
        chunks.body.as_array().unwrap().iter().map(|c| c["stats"]["accepted"].as_u64().unwrap_or(0)).sum();
    assert_eq!(in_chunks, n, "{}", chunks.body);
    let export = api.get("northwind", "/billing/export?format=csv").await;
    let text = String::from_utf8_lossy(&export.bytes);
    assert_eq!(text.lines().filter(|l| l.contains(file)).count() as u64, n, "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_uploads_keep_the_winners_workbook_and_records() {
    let api = api();
    let (a, _) = seed(&api).await;
    let book = |q: &str| {
        let rows = [sms("c1", q, "01", "AS-1000-0719-1201")];
        qt_book(&rows)
    };
    let (one, two) = (book("111"), book("222"));
    let path = format!("/usage/files/{a}/upload");
    let (r1, r2) = tokio::join!(
        api.upload("fieldlink", &path, "usage_file", &one),
        api.upload("fieldlink", &path, "usage_file", &two)
    );
    let winners: Vec<(&Vec<u8>, &support::Reply)> =
        [(&one, &r1), (&two, &r2)].into_iter().filter(|(_, r)| r.status == StatusCode::CREATED).collect();
    assert!(!winners.is_empty(), "{} {} / {} {}", r1.status, r1.body, r2.status, r2.body);
    let file = api.get("fieldlink", &format!("/usage/files/{a}")).await;
    assert_eq!(file.body["status"], "ready", "{}", file.body);
    // The stored workbook and the records are one upload's.
    let stored = api.get("fieldlink", &format!("/usage/files/{a}/usagefile")).await;
    let records = api.get("fieldlink", &format!("/usage/records?usagefile.id={a}")).await;
    let usage = records.body[0]["usage"].as_i64().unwrap();
    let expected = if usage == 111 { &one } else { &two };
    assert_eq!(&stored.bytes, expected, "the stored workbook is not the one whose records are listed");
}

#[tokio::test(flavor = "multi_thread")]
async fn interrupted_uploads_end_settled() {
    let api = api();
    let (a, _) = seed(&api).await;
    // A client that goes away mid-request: processing goes on and the file ends ready.
    let rows: Vec<Vec<(&str, String)>> = (0..20_000)
        .map(|i| sms(Box::leak(format!("big{i}").into_boxed_str()), "1", "05", "AS-1000-0719-1201"))
        .collect();
    let big = qt_book(&rows);
    let path = format!("/usage/files/{a}/upload");
    let gone =
        tokio::time::timeout(std::time::Duration::from_millis(300), api.upload("fieldlink", &path, "usage_file", &big))
            .await;
    assert!(gone.is_err(), "the upload finished before the client went away; make it larger");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let f = api.get("fieldlink", &format!("/usage/files/{a}")).await;
        let status = f.body["status"].as_str().unwrap_or_default().to_owned();
        if status == "ready" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the file stayed {status}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    // A process that died mid-upload: the next one finishes the stored upload, or ends the
    // file invalid when the workbook never reached the store.
    let svc = &api.service;
    let system = usageflow_model::Actor::system();
    let vendor =
        usageflow_model::Actor::vendor("VA-200-002", usageflow_model::Ref { id: "SU-x".into(), name: "x".into() });
    let c = api
        .post("fieldlink", "/usage/files", json!({"product": {"id": "PRD-200-200-002"},
            "contract": {"id": "CRD-20001-10001-00001"}, "period": {"from": "2026-10-01", "to": "2026-10-31"}, "external_id": "crash"}))
        .await;
    let c = c.body["id"].as_str().unwrap().to_owned();
    let path = object_store::path::Path::from(format!("files/PRD-200-200-002/{c}/uploaded/{c}-crash.xlsx"));
    let object = svc.store_document(&path, big.clone(), "c.xlsx").await.unwrap();
    svc.workflow().act(&c, FileChange::Upload { object }, &vendor).await.unwrap();
    svc.workflow().act(&c, FileChange::Stored, &system).await.unwrap();
    svc.workflow().act(&c, FileChange::ProcessingStarted, &system).await.unwrap();
    let d = api
        .post("fieldlink", "/usage/files", json!({"product": {"id": "PRD-200-200-002"},
            "contract": {"id": "CRD-20001-10001-00001"}, "period": {"from": "2026-09-01", "to": "2026-09-30"}, "external_id": "lost"}))
        .await;
    let d = d.body["id"].as_str().unwrap().to_owned();
    let missing = usageflow_model::StoredObject {
        path: format!("files/PRD-200-200-002/{d}/uploaded/never-stored.xlsx"),
        size: 1,
        sha256: String::new(),
        filename: "lost.xlsx".into(),
    };
    svc.workflow().act(&d, FileChange::Upload { object: missing }, &vendor).await.unwrap();
    let settled = svc.resume_interrupted().await.unwrap();
    let ids: BTreeSet<&str> = settled.iter().map(|f| f.id.as_str()).collect();
    assert_eq!(ids, BTreeSet::from([c.as_str(), d.as_str()]));
    let c_file = api.get("fieldlink", &format!("/usage/files/{c}")).await;
    assert!(matches!(c_file.body["status"].as_str(), Some("ready" | "invalid")), "{}", c_file.body);
    let d_file = api.get("fieldlink", &format!("/usage/files/{d}")).await;
    assert_eq!(d_file.body["status"], "invalid", "{}", d_file.body);
    assert!(d_file.body["error_detail"].as_str().unwrap().contains("interrupted"), "{}", d_file.body);
}
