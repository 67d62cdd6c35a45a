//! The HTTP API end to end on a local store: the Connect usage workflow over HTTP, RQL
//! listings on DataFusion, bulk close with 206, reconciliation, rules, chunks, and a walk of
//! every endpoint with every role that checks that nothing crosses tenants.

mod support;

use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::{Value, json};
use tower::ServiceExt;
use usageflow_api::{ApiConfig, AppState, KeyRing, Role, StoredKey, auth::digest};
use usageflow_files::FileService;
use usageflow_model::ReportingSchema;
use usageflow_workflow::WorkflowStore;

use support::{ACCOUNTS, api, rows_of, seed, sms, workbook};

#[tokio::test]
async fn connect_workflow_over_http() {
    let api = api();
    let (a, b) = seed(&api).await;

    // Listings: tenants, RQL, paging.
    let list = api.get("fieldlink", "/usage/files").await;
    assert_eq!(list.range.as_deref(), Some("items 0-0/1"));
    assert_eq!(list.body[0]["id"], a.as_str());
    assert_eq!(list.body[0]["product"]["id"], "PRD-200-200-002");
    assert_eq!(list.body[0]["schema"], "qt");
    let q = api.get("fieldlink", "/usage/files?and(eq(status,ready),in(product.id,(PRD-200-200-002)))&limit=10").await;
    assert_eq!(q.body.as_array().unwrap().len(), 1, "{}", q.body);
    let q = api.get("fieldlink", "/usage/files?status=draft").await;
    assert_eq!((q.status, q.range.as_deref()), (StatusCode::OK, Some("items 0-0/0")));
    let bad = api.get("fieldlink", "/usage/files?eq(status,ready").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.body["error_code"], "RQL_001");
    assert!(bad.body["errors"][0].as_str().unwrap().contains("at character 15"), "{}", bad.body);
    let bad = api.get("fieldlink", "/usage/files?eq(password,x)").await;
    assert_eq!(bad.body["error_code"], "RQL_002");

    // Records of a ready file, on DataFusion.
    let recs = api.get("northwind", &format!("/usage/records?usagefile.id={a}&ordering(usage_start_time)")).await;
    assert_eq!(recs.status, StatusCode::OK, "{}", recs.body);
    assert_eq!(recs.range.as_deref(), Some("items 0-3/4"));
    assert_eq!(recs.body[0]["status"], "valid");
    assert_eq!(recs.body[0]["item"]["mpn"], "FL-SMS");
    assert_eq!(recs.body[3]["usage"], json!(40));
    let page = api
        .get("northwind", "/usage/records?ge(usage_start_time,2026-11-02)&limit=2&offset=1&ordering(-usage_start_time)")
        .await;
    assert_eq!(page.range.as_deref(), Some("items 1-2/3"), "{}", page.body);
    assert_eq!(page.body[0]["vendor_record_id"], "r3");
    let first_id = recs.body[0]["id"].as_str().unwrap().to_owned();

    // Vendor submits; provider approves one record, rejects none, accepts the file.
    assert_eq!(api.post("fieldlink", &format!("/usage/files/{a}/submit"), json!({})).await.body["status"], "pending");
    let r = api
        .call("northwind", Method::PUT, &format!("/usage/records/{first_id}"), Some(json!({"status": "approved"})))
        .await;
    assert_eq!((r.status, r.body["status"].as_str()), (StatusCode::OK, Some("approved")), "{}", r.body);
    let r = api
        .call("fieldlink", Method::PUT, &format!("/usage/records/{first_id}"), Some(json!({"status": "rejected"})))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    let acc = api.post("northwind", &format!("/usage/files/{a}/accept"), json!({"acceptance_note": "fine"})).await;
    assert_eq!(acc.body["status"], "accepted", "{}", acc.body);
    assert_eq!(acc.body["acceptance_note"], "fine");

    // Aggregates: consumed and accepted per asset and item.
    let agg = api.get("northwind", "/usage/aggregates?eq(asset.id,AS-1000-6557-1203)").await;
    assert_eq!(agg.status, StatusCode::OK, "{}", agg.body);
    assert_eq!(agg.body[0]["consumed"], json!(70));
    assert_eq!(agg.body[0]["accepted"], json!(70));
    let agg = api.get("fieldlink", "/assets/AS-1000-0719-1201/usage/aggregates").await;
    assert_eq!(agg.body.as_array().unwrap().len(), 1, "{}", agg.body);

    // Bulk close: 206 with per-record outcomes; unknown and foreign ids fail alone.
    let ids: Vec<String> = recs.body.as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_owned()).collect();
    let closed = api
        .post(
            "northwind",
            "/usage/records/close-records",
            json!([
                {"id": ids[0], "external_billing_id": "INV-1", "external_billing_note": "Nov"},
                {"id": ids[1], "external_billing_id": ""},
                {"id": "UR-0000-00-0000-0000-0000-0000-0001", "external_billing_id": "INV-1"},
                {"id": ids[2], "external_billing_id": "INV-1"},
            ]),
        )
        .await;
    assert_eq!(closed.status, StatusCode::PARTIAL_CONTENT, "{}", closed.body);
    let statuses: Vec<&str> = closed.body.as_array().unwrap().iter().map(|r| r["status"].as_str().unwrap()).collect();
    // Each entry in the spec's shape: the record's status after the call, codes and details
    // as strings (null when it closed).
    assert_eq!(statuses, ["closed", "approved", "invalid", "closed"], "{}", closed.body);
    assert_eq!(closed.body[0]["error_codes"], Value::Null, "{}", closed.body);
    assert_eq!(closed.body[1]["error_codes"], "USG_007", "{}", closed.body);
    assert!(closed.body[1]["error_details"].as_str().unwrap().contains("external_billing_id"), "{}", closed.body);
    let r = api.get("northwind", &format!("/usage/records/{}", ids[0])).await;
    assert_eq!((r.body["status"].as_str(), r.body["external_billing_id"].as_str()), (Some("closed"), Some("INV-1")));
    let q = api.get("northwind", "/usage/records?status=closed").await;
    assert_eq!(q.range.as_deref(), Some("items 0-1/2"));

    // Chunks of the accepted file, for its provider only.
    let chunks = api.get("northwind", &format!("/usage/chunks?usagefile.id={a}")).await;
    assert_eq!(chunks.status, StatusCode::OK);
    let chunk = chunks.body[0]["id"].as_str().unwrap().to_owned();
    let dl = api.get("northwind", &format!("/usage/chunks/{chunk}/download")).await;
    assert_eq!(dl.status, StatusCode::OK);
    assert!(dl.bytes.starts_with(b"PK"));
    let up = api
        .call("northwind", Method::PUT, &format!("/usage/chunks/{chunk}"), Some(json!({"external_id": "BATCH-7"})))
        .await;
    assert_eq!(up.body["binding"]["external_id"], "BATCH-7", "{}", up.body);

    // Reconciliation closes the last open record, which closes the file.
    let recon = workbook(ReportingSchema::Qt, &[]);
    let bad = api.upload("northwind", &format!("/usage/files/{a}/reconciliation"), "recon_file", &recon).await;
    let r = api.get("northwind", "/usage/reconciliations").await;
    assert_eq!(bad.status, StatusCode::CREATED, "{}", bad.body);
    assert_eq!(r.body[0]["status"], "failed", "a reconciliation without billing ids fails: {}", r.body);
    let columns = ["record_id", "external_billing_id", "external_billing_note"];
    let rows = vec![
        vec![ids[3].clone(), "INV-2".to_owned(), "late".to_owned()],
        vec![ids[1].clone(), "INV-2".to_owned(), String::new()],
        vec![ids[0].clone(), "INV-9".into(), String::new()],
    ];
    let recon = usageflow_files::write_workbook(&[], &[], &columns, &rows).unwrap();
    let done = api.upload("northwind", &format!("/usage/files/{a}/reconciliation"), "recon_file", &recon).await;
    assert_eq!(done.body["status"], "closed", "{}", done.body);
    let list = api.get("northwind", "/usage/reconciliations?ordering(id)").await;
    assert_eq!(list.range.as_deref(), Some("items 0-1/2"));
    let rid = list.body[1]["id"].as_str().unwrap();
    assert_eq!(list.body[1]["status"], "processed");
    let processed = api.get("northwind", &format!("/usage/reconciliations/{rid}/processedfile")).await;
    let book = usageflow_files::read_workbook(&processed.bytes, &Default::default()).unwrap();
    assert_eq!(book.records[0].get("status"), Some("closed"));
    assert_eq!(book.records[1].get("status"), Some("closed"));
    assert_eq!(book.records[2].get("status"), Some("failed"), "a closed record keeps its first billing id");

    // Rules: provider writes, vendor reads, nobody else sees them.
    let rule = api
        .post("northwind", "/products/PRD-200-200-002/usage/rules", json!({"action": "accept", "scope": "file", "rule": "records <= 1000", "item": {"id": "PRD-200-200-002-0002"}}))
        .await;
    assert_eq!(rule.status, StatusCode::CREATED, "{}", rule.body);
    let id = rule.body["id"].as_str().unwrap();
    assert_eq!(
        api.get("fieldlink", &format!("/products/PRD-200-200-002/usage/rules/{id}")).await.body["action"],
        "accept"
    );
    let r = api.post("fieldlink", "/products/PRD-200-200-002/usage/rules", json!({"action": "accept"})).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = api.call("northwind", Method::DELETE, &format!("/products/PRD-200-200-002/usage/rules/{id}"), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = api.get("northwind", "/products/PRD-200-200-002/usage/rules?status=deleted").await;
    assert_eq!(r.body.as_array().unwrap().len(), 1);

    // Tenant B is untouched by all of this.
    let bfile = api.get("vaultline", &format!("/usage/files/{b}")).await;
    assert_eq!(bfile.body["status"], "ready");
    let brecs = api.get("southgate", "/usage/records").await;
    assert_eq!(brecs.body[0]["amount"], json!(12.5), "{}", brecs.body);
    assert_eq!(brecs.body[0]["usage"], json!(100.25));

    // Resellers see the records of the assets they resell, nothing else.
    let rr = api.get("blueharbor", "/usage/records").await;
    let assets: Vec<&str> = rr.body.as_array().unwrap().iter().map(|r| r["asset"]["id"].as_str().unwrap()).collect();
    assert_eq!(assets, ["AS-1000-0719-1201", "AS-1000-8638-1202"], "{}", rr.body);
    assert_eq!(api.get("other-reseller", "/usage/records").await.range.as_deref(), Some("items 0-0/0"));
}

#[tokio::test]
async fn authentication_and_errors() {
    let api = api();
    let r = api.send(None, Method::GET, "/usage/files", Body::empty(), "application/json").await;
    assert_eq!((r.status, r.body["error_code"].as_str()), (StatusCode::UNAUTHORIZED, Some("AUTH_001")));
    let mut req = Request::builder().uri("/public/v1/usage/files").header("Authorization", "ApiKey SU-fieldlink.wrong");
    req = req.header("Content-Type", "application/json");
    let res = api.app.clone().oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let r = api.call("fieldlink", Method::POST, "/usage/files", None).await;
    assert_eq!(r.body["error_code"], "VAL_001", "{}", r.body);
    let r =
        api.send(Some("fieldlink"), Method::POST, "/usage/files", Body::from("{not json"), "application/json").await;
    assert!(r.body["errors"][0].as_str().unwrap().contains("not valid JSON"), "{}", r.body);
    let r = api.post("fieldlink", "/usage/files", json!({"product": {"id": "PRD-300-300-003"}, "contract": {"id": "CRD-30001-10002-00002"}, "period": {"from": "2026-11-01", "to": "2026-11-30"}})).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "another vendor's product: {}", r.body);
    let r = api.post("northwind", "/usage/files", json!({})).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = api.get("fieldlink", "/nope").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let doc = api.send(None, Method::GET, "/openapi.json", Body::empty(), "").await;
    assert_eq!(doc.status, StatusCode::OK, "the document is public");
    assert_eq!(doc.body["openapi"], "3.0.3");
    assert!(doc.body["paths"]["/usage/records/close-records"]["post"]["responses"]["206"]["description"].is_string());
    // A wrong spreadsheet is refused with a reason and changes nothing.
    let (a, _) = seed(&api).await;
    let r = api.upload("fieldlink", &format!("/usage/files/{a}/upload"), "usage_file", b"not a spreadsheet").await;
    assert_eq!(r.body["status"], "invalid", "{}", r.body);
    assert!(r.body["error_detail"].as_str().unwrap().len() > 10);
    let r = api.upload("fieldlink", &format!("/usage/files/{a}/upload"), "wrong_field", b"x").await;
    assert!(r.body["errors"][0].as_str().unwrap().contains("usage_file"), "{}", r.body);
    let r = api.get("fieldlink", &format!("/usage/records?usagefile.id={a}")).await;
    assert_eq!(r.range.as_deref(), Some("items 0-0/0"), "records of an invalid upload are not listed");
}

/// Every endpoint of the document, called by every account on the objects of tenant A (and
/// of B): an account that is not a party answers 404 or an empty list, never the object.
#[tokio::test]
async fn every_endpoint_times_every_role_stays_in_its_tenant() {
    let api = api();
    let (a, b) = seed(&api).await;
    api.post("fieldlink", &format!("/usage/files/{a}/submit"), json!({})).await;
    api.post("northwind", &format!("/usage/files/{a}/accept"), json!({})).await;
    let rule = api.post("northwind", "/products/PRD-200-200-002/usage/rules", json!({"action": "manual"})).await;
    let rule = rule.body["id"].as_str().unwrap().to_owned();
    let chunk = api.get("northwind", "/usage/chunks").await.body[0]["id"].as_str().unwrap().to_owned();
    let record = api.get("northwind", "/usage/records?limit=1").await.body[0]["id"].as_str().unwrap().to_owned();
    let b_record = api.get("southgate", "/usage/records?limit=1").await.body[0]["id"].as_str().unwrap().to_owned();
    let recon = usageflow_files::write_workbook(
        &[],
        &[],
        &["record_id", "external_billing_id"],
        &[vec![record.clone(), "X".to_owned()]],
    )
    .unwrap();
    api.upload("northwind", &format!("/usage/files/{a}/reconciliation"), "recon_file", &recon).await;
    let recon_id = api.get("northwind", "/usage/reconciliations").await.body[0]["id"].as_str().unwrap().to_owned();

    // Who is a party to tenant A's objects.
    let party_a: &[&str] = &["fieldlink", "northwind"];
    let subst = |p: &str| {
        p.replace("/usage/files/{id}", &format!("/usage/files/{a}"))
            .replace("{file_pk}", &a)
            .replace("/usage/records/{id}", &format!("/usage/records/{record}"))
            .replace("/usage/chunks/{id}", &format!("/usage/chunks/{chunk}"))
            .replace("/usage/reconciliations/{id}", &format!("/usage/reconciliations/{recon_id}"))
            .replace("/usage/products/{id}", "/usage/products/PRD-200-200-002")
            .replace("{product_pk}", "PRD-200-200-002")
            .replace("/rules/{id}", &format!("/rules/{rule}"))
            .replace("{asset_pk}", "AS-1000-6557-1203")
    };
    let mut checked = 0;
    for (method, path, _, _, _) in usageflow_api::openapi_endpoints() {
        if path.contains("/events") || *path == "/openapi.json" {
            continue;
        }
        let concrete = subst(path);
        for (who, _, role) in ACCOUNTS {
            if party_a.contains(&who) || (role == Role::Reseller && path.contains("records")) {
                continue;
            }
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let r = api.call(who, method.clone(), &concrete, Some(json!({}))).await;
            // Errors may echo the id asked for; a success must not carry tenant A's objects.
            let leaked = r.status.is_success() && r.bytes.windows(a.len()).any(|w| w == a.as_bytes())
                || r.status.is_success() && r.bytes.windows(record.len()).any(|w| w == record.as_bytes());
            assert!(!leaked, "{who} {method} {concrete} revealed tenant A: {} {}", r.status, r.body);
            // Views of the caller's own share (who it is, its live usage, its billing export)
            // answer 200 with whatever that share holds; the leak check above still applies.
            let own_share = ["/me", "/usage/live", "/billing/export"].contains(path);
            assert!(
                matches!(r.status, StatusCode::NOT_FOUND | StatusCode::FORBIDDEN | StatusCode::BAD_REQUEST)
                    || (matches!(r.status, StatusCode::OK | StatusCode::PARTIAL_CONTENT) && r.body.is_array())
                    || (r.status == StatusCode::OK && own_share),
                "{who} {method} {concrete}: {} {}",
                r.status,
                r.body
            );
            checked += 1;
        }
    }
    assert!(checked > 150, "{checked}");
    // Tenant A's parties cannot reach tenant B's record either.
    for who in party_a {
        let r = api.get(who, &format!("/usage/records/{b_record}")).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{who}");
        let r = api.get(who, &format!("/usage/files/{b}")).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{who}");
    }
    // Nothing changed for tenant A by all those calls.
    let file = api.get("fieldlink", &format!("/usage/files/{a}")).await;
    assert_eq!(file.body["status"], "accepted");
    let r = api.get("northwind", "/products/PRD-200-200-002/usage/rules").await;
    assert_eq!(r.body[0]["status"], "active");
}

#[tokio::test]
async fn the_document_lists_every_route() {
    let api = api();
    for (method, path, _, _, _) in usageflow_api::openapi_endpoints() {
        let concrete = path.replace('{', "X").replace('}', "");
        let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let r = api.call("fieldlink", method.clone(), &concrete, None).await;
        assert!(
            !(r.status == StatusCode::NOT_FOUND && r.body["errors"][0] == "no such endpoint"),
            "{method} {path} is documented but not routed"
        );
        assert_ne!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
    }
}

#[tokio::test]
async fn request_bodies_are_limited() {
    let mut api = api();
    let small = ApiConfig { max_body_bytes: 1024, ..ApiConfig::default() };
    let state = {
        let dir = api._dir.path();
        let store = usageflow_lake::open_store(&usageflow_lake::StoreConfig::local(dir)).unwrap();
        let catalogue = Arc::new(
            usageflow_catalog::load_dir(
                &Path::new(&std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo")).join("../../config/catalog"),
            )
            .unwrap(),
        );
        let service = FileService::new(
            store.clone(),
            WorkflowStore::new(store, Arc::new(usageflow_workflow::SystemClock)),
            catalogue.clone(),
        );
        let key = StoredKey {
            id: "SU-fieldlink".into(),
            name: String::new(),
            account: "VA-200-002".into(),
            role: Role::Vendor,
            sha256: digest(&api.keys["fieldlink"]),
        };
        AppState::new(service, KeyRing::new([key]))
    };
    api.app = usageflow_api::app(state, &small);
    let big = Body::from(vec![b' '; 4096]);
    let r = api.send(Some("fieldlink"), Method::POST, "/usage/files", big, "application/json").await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    let r = api.post("fieldlink", "/usage/files", json!({})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "small bodies still pass: {}", r.body);
}

#[tokio::test]
async fn sql_is_read_only_and_scoped_to_the_tenant() {
    let api = api();
    let (a, b) = seed(&api).await;
    let sql = |q: &str| json!({ "sql": q });
    let r = api.post("fieldlink", "/sql", sql("SELECT id, vendor_id FROM usage_files")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body, json!([{"id": a, "vendor_id": "VA-200-002"}]));
    // Whatever the SQL, another tenant's rows do not come back.
    for q in [
        "SELECT * FROM usage_files WHERE vendor_id = 'VA-300-003'".to_owned(),
        format!("SELECT * FROM file_records WHERE usagefile_id = '{b}'"),
        "SELECT * FROM usage_files UNION ALL SELECT * FROM usage_files".to_owned(),
        "SELECT f.* FROM usage_files f FULL OUTER JOIN file_records r ON f.id = r.usagefile_id".to_owned(),
    ] {
        let r = api.post("fieldlink", "/sql", sql(&q)).await;
        assert_eq!(r.status, StatusCode::OK, "{q}: {}", r.body);
        assert!(!r.bytes.windows(b.len()).any(|w| w == b.as_bytes()), "{q} leaked {b}: {}", r.body);
    }
    let r = api
        .post("vaultline", "/sql", sql("SELECT vendor_record_id, CAST(usage AS VARCHAR) AS q FROM file_records"))
        .await;
    assert_eq!(r.body, json!([{"vendor_record_id": "b1", "q": "100.25000000"}]), "{}", r.body);
    let r = api.post("blueharbor", "/sql", sql("SELECT count(*) AS n FROM file_records")).await;
    assert_eq!(r.body, json!([{"n": 2}]), "a reseller sees the records of its assets: {}", r.body);
    let r = api
        .post("southgate", "/sql", sql("SELECT count(*) AS n FROM assets WHERE product_id = 'PRD-200-200-002'"))
        .await;
    assert_eq!(r.body, json!([{"n": 0}]), "catalogue rows are scoped too: {}", r.body);
    for q in [
        "DROP TABLE usage_files",
        "CREATE TABLE t AS SELECT 1",
        "INSERT INTO usage_files SELECT * FROM usage_files",
        "SELEC 1",
        "SELECT * FROM nope",
    ] {
        let r = api.post("fieldlink", "/sql", sql(q)).await;
        assert_eq!(
            (r.status, r.body["error_code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("SQL_001")),
            "{q}: {}",
            r.body
        );
    }
    let r = api.post("fieldlink", "/sql", sql("SELECT * FROM generate_series(1, 20000)")).await;
    assert_eq!(r.body["error_code"], "SQL_002", "{}", r.body);
    let r = api.post("fieldlink", "/sql", json!({"sql": "SELECT 1 AS one", "format": "csv"})).await;
    assert_eq!(String::from_utf8_lossy(&r.bytes), "one\n1\n");
}

/// `as_of` reads the lake as it was at a version or a time; every answer names the versions
/// it read; a version the lake does not have, or a malformed `as_of`, is refused.
#[tokio::test]
async fn sql_reads_the_lake_as_of_a_version() {
    use chrono::{TimeZone, Utc};
    use usageflow_lake::Table;
    use usageflow_lake::tables::{RecordRow, RecordsBuilder};
    let api = api();
    let lake = api.service.lake().clone();
    let day = Utc.with_ymd_and_hms(2026, 11, 3, 0, 0, 0).unwrap().timestamp_micros();
    for (n, quantity) in [(1, 2i128), (2, 3)] {
        let mut b = RecordsBuilder::default();
        b.push(&RecordRow::sample(day, quantity));
        let partition = [("product", "PRD-200-200-002"), ("month", "2026-11")];
        let file =
            lake.write_file(Table::Records, &b.finish(), &partition, &format!("part-{n}.parquet")).await.unwrap();
        assert_eq!(lake.append(Table::Records, vec![file]).await.unwrap(), n);
    }
    let q = "SELECT CAST(sum(quantity) AS VARCHAR) AS q FROM usage_records";
    let r = api.post("fieldlink", "/sql", json!({ "sql": q })).await;
    assert_eq!(r.body, json!([{"q": "5.00000000"}]), "{}", r.body);
    let version: Value = serde_json::from_str(r.lake_version.as_deref().unwrap()).unwrap();
    assert_eq!(version["records"], 2, "{version}");
    let r = api.post("fieldlink", "/sql", json!({ "sql": q, "as_of": 1 })).await;
    assert_eq!(r.body, json!([{"q": "2.00000000"}]), "{}", r.body);
    assert!(r.lake_version.as_deref().unwrap().contains("\"records\":1"), "{:?}", r.lake_version);
    let r = api.post("fieldlink", "/sql", json!({ "sql": q, "as_of": "2999-01-01T00:00:00Z" })).await;
    assert_eq!(r.body, json!([{"q": "5.00000000"}]), "a time after the last commit reads the latest: {}", r.body);
    let r = api.post("fieldlink", "/sql", json!({ "sql": q, "as_of": 7 })).await;
    assert_eq!((r.status, r.body["error_code"].as_str()), (StatusCode::BAD_REQUEST, Some("SQL_006")), "{}", r.body);
    assert!(r.body.to_string().contains("no version 7"), "{}", r.body);
    let r = api.post("fieldlink", "/sql", json!({ "sql": q, "as_of": "last tuesday" })).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(r.body.to_string().contains("as_of"), "{}", r.body);
}

/// What the portal pages use besides the Connect endpoints: who the key is, its products, a
/// file's audit trail, invalid rows, review summary, the billing export; and the pages
/// themselves, served with a strict content security policy.
#[tokio::test]
async fn portal_endpoints_and_pages() {
    let api = api();
    let (a, _b) = seed(&api).await;

    let me = api.get("fieldlink", "/me").await;
    assert_eq!(me.body["account"], json!({"id": "VA-200-002", "name": "Fieldlink IoT Ltd"}), "{}", me.body);
    assert_eq!((me.body["role"].as_str(), me.body["key"]["id"].as_str()), (Some("vendor"), Some("SU-fieldlink")));
    let provider = api.get("northwind", "/me").await.body;
    assert_eq!(provider["role"], "provider");
    assert!(provider["hubs"].as_array().unwrap().iter().all(|h| h["id"].as_str().unwrap().starts_with("HB-")));
    assert!(!provider["hubs"].as_array().unwrap().is_empty(), "{provider}");
    assert_eq!(me.body["hubs"], json!([]), "vendors have no hubs");

    let products = api.get("fieldlink", "/products").await.body;
    let ids: Vec<&str> = products.as_array().unwrap().iter().map(|p| p["id"].as_str().unwrap()).collect();
    assert!(ids.contains(&"PRD-200-200-002") && !ids.contains(&"PRD-300-300-003"), "{ids:?}");
    let fl = products.as_array().unwrap().iter().find(|p| p["id"] == "PRD-200-200-002").unwrap();
    assert_eq!(fl["capabilities"]["ppu"]["schema"], "QT", "{fl}");
    assert!(fl["items"].as_array().unwrap().iter().any(|i| i["mpn"] == "FL-SMS" && i["precision"] == "Integer"));
    let provided = api.get("southgate", "/products").await.body;
    assert!(provided.as_array().unwrap().iter().all(|p| p["id"] != "PRD-200-200-002"), "{provided}");
    assert_eq!(api.get("blueharbor", "/products").await.body, json!([]));

    // The audit trail, with the status after each step and no storage locations.
    let history = api.get("fieldlink", &format!("/usage/files/{a}/history")).await;
    let steps: Vec<(&str, &str)> = history
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["type"].as_str().unwrap(), s["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        steps,
        [
            ("create", "draft"),
            ("upload", "uploading"),
            ("stored", "uploaded"),
            ("processing_started", "processing"),
            ("processed", "ready")
        ]
    );
    assert!(!String::from_utf8_lossy(&history.bytes).contains("files/PRD-"), "no storage paths: {}", history.body);
    assert_eq!(history.body[0]["actor"]["by"]["id"], "SU-fieldlink");

    // Review summary: exact sums per item, assets by usage, usage per day.
    let summary = api.get("northwind", &format!("/usage/files/{a}/summary")).await;
    assert_eq!(summary.status, StatusCode::OK, "{}", summary.body);
    assert_eq!(summary.body["totals"]["usage"], "100");
    assert_eq!(summary.body["totals"]["records"], "4");
    assert_eq!(summary.body["per_item"][0]["item_mpn"], "FL-SMS");
    assert_eq!(
        summary.body["top_assets"][0],
        json!({"asset_id": "AS-1000-6557-1203", "asset_external_id":
        summary.body["top_assets"][0]["asset_external_id"], "customer_name": summary.body["top_assets"][0]["customer_name"],
        "records": "2", "usage": "70", "amount": null})
    );
    let days: Vec<&str> =
        summary.body["per_day"].as_array().unwrap().iter().map(|d| d["day"].as_str().unwrap()).collect();
    assert_eq!(days, ["2026-11-01", "2026-11-02", "2026-11-03", "2026-11-04"]);
    assert_eq!(api.get("southgate", &format!("/usage/files/{a}/summary")).await.status, StatusCode::NOT_FOUND);

    // Invalid rows with their reasons, paged.
    let bad = api
        .post(
            "fieldlink",
            "/usage/files",
            json!({"product": {"id": "PRD-200-200-002"}, "contract": {"id": "CRD-20001-10001-00001"},
                "period": {"from": "2026-11-01", "to": "2026-11-30"}, "external_id": "fl-bad"}),
        )
        .await;
    let bad_id = bad.body["id"].as_str().unwrap().to_owned();
    let rows = [
        sms("x1", "5", "01", "AS-1000-0719-1201"),
        sms("x2", "1.5", "02", "AS-1000-0719-1201"),
        sms("x3", "7", "03", "AS-9999-0000-0000"),
    ];
    let refs = rows_of(&rows);
    let refs: Vec<&[(&str, &str)]> = refs.iter().map(Vec::as_slice).collect();
    let up = api
        .upload(
            "fieldlink",
            &format!("/usage/files/{bad_id}/upload"),
            "usage_file",
            &workbook(ReportingSchema::Qt, &refs),
        )
        .await;
    assert_eq!(up.body["status"], "invalid", "{}", up.body);
    let errors = api.get("fieldlink", &format!("/usage/files/{bad_id}/errors?ordering(row)")).await;
    assert_eq!(errors.range.as_deref(), Some("items 0-1/2"), "{}", errors.body);
    assert_eq!(errors.body[0]["record_id"], "x2");
    assert!(errors.body[0]["error"].as_str().unwrap().contains("precision"), "{}", errors.body);
    assert_eq!(errors.body[1]["record_id"], "x3");
    assert!(errors.body[1]["error"].as_str().unwrap().contains("AS-9999-0000-0000"), "{}", errors.body);
    let one = api.get("fieldlink", &format!("/usage/files/{bad_id}/errors?search=x3")).await;
    assert_eq!(one.range.as_deref(), Some("items 0-0/1"));
    assert_eq!(api.get("vaultline", &format!("/usage/files/{bad_id}/errors")).await.status, StatusCode::NOT_FOUND);

    // The billing export of accepted records, in each format, for the provider's share only.
    api.post("fieldlink", &format!("/usage/files/{a}/submit"), json!({})).await;
    api.post("northwind", &format!("/usage/files/{a}/accept"), json!({"acceptance_note": "ok"})).await;
    let csv = api.get("northwind", "/billing/export?from=2026-11-01&to=2026-11-30").await;
    assert_eq!(csv.status, StatusCode::OK);
    let text = String::from_utf8(csv.bytes.clone()).unwrap();
    assert_eq!(text.lines().count(), 5, "{text}");
    assert!(text.lines().next().unwrap().starts_with("record_id,usagefile_id,hub_id"), "{text}");
    let xlsx = api.get("northwind", "/billing/export?format=xlsx").await;
    let book = usageflow_files::read_workbook(&xlsx.bytes, &usageflow_files::ReadLimits::default()).unwrap();
    assert_eq!(book.records.len(), 4);
    assert_eq!(book.general.get("records").map(String::as_str), Some("4"));
    // The export names the lake version it read (a new lake: both tables at version 0).
    assert_eq!(book.general.get("lake_records_version").map(String::as_str), Some("0"));
    assert_eq!(csv.lake_version.as_deref(), Some(r#"{"records":0,"events":0}"#));
    let parquet = api.get("northwind", "/billing/export?format=parquet").await;
    assert!(parquet.bytes.starts_with(b"PAR1"));
    let none = api.get("southgate", "/billing/export").await;
    assert_eq!(String::from_utf8(none.bytes).unwrap().lines().count(), 1, "southgate bills none of northwind's");
    let wrong = api.get("northwind", "/billing/export?format=pdf").await;
    assert_eq!((wrong.status, wrong.body["error_code"].as_str()), (StatusCode::BAD_REQUEST, Some("VAL_001")));
    let wrong = api.get("northwind", "/billing/export?from=November").await;
    assert!(wrong.body["errors"][0].as_str().unwrap().contains("November"), "{}", wrong.body);
    assert_eq!(api.get("blueharbor", "/billing/export").await.status, StatusCode::FORBIDDEN);

    // The pages: served from the binary, cacheable by ETag, locked down by CSP.
    let page = |path: &str, etag: Option<&str>| {
        let mut req = Request::builder().uri(path);
        if let Some(e) = etag {
            req = req.header("If-None-Match", e);
        }
        api.app.clone().oneshot(req.body(Body::empty()).unwrap())
    };
    let index = page("/portal/", None).await.unwrap();
    assert_eq!(index.status(), StatusCode::OK);
    let csp = index.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"), "{csp}");
    let etag = index.headers()["etag"].to_str().unwrap().to_owned();
    let html = axum::body::to_bytes(index.into_body(), usize::MAX).await.unwrap();
    assert!(String::from_utf8_lossy(&html).contains("/portal/app.js"));
    let js = page("/portal/app.js", None).await.unwrap();
    assert!(js.headers()["content-type"].to_str().unwrap().starts_with("text/javascript"));
    assert_eq!(page("/portal/", Some(&etag)).await.unwrap().status(), StatusCode::NOT_MODIFIED);
    assert_eq!(page("/portal/secret.txt", None).await.unwrap().status(), StatusCode::NOT_FOUND);
    let root = page("/", None).await.unwrap();
    assert!(root.status().is_redirection());
    assert_eq!(root.headers()["location"], "/portal/");
}
