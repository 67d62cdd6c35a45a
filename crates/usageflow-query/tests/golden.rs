//! SQL golden tests: every `tests/sql/*.slt` file runs against one fixture world (usage files
//! through their workflow, a lake with committed and uncommitted files, billing lines) and
//! each result must equal the file's expected rows.
//!
//! Format (sqllogictest style): records separated by blank lines; `#` comments;
//! `scope all|vendor ID|provider ID|reseller ID` switches the tenant of what follows;
//! `statement error <text>` + SQL expects an error containing the text;
//! `query` + SQL + `----` + rows, values separated by ` | `, NULL for null;
//! `reconcile [close]` + billing file name + `----` + rows: runs the reconciliation join of the
//! fixture's accepted records with that billing file (and closes the matched records).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{TimeZone, Utc};
use object_store::ObjectStoreExt;
use usageflow_files::{CreateFile, FileService};
use usageflow_lake::tables::{RecordRow, RecordsBuilder, to_parquet};
use usageflow_lake::{CommitRequest, DataFile, Manifests, Table};
use usageflow_model::{Actor, Period, Ref, ReportingSchema};
use usageflow_query::billing::{
    BILLING_EXPORT_ORDER, Selection, close_matched, reconciliation_sql, register_billing, to_rows,
};
use usageflow_query::{Scope, analyst_session, load_sources};
use usageflow_workflow::{FixedClock, WorkflowStore};

fn catalogue_dir() -> PathBuf {
    Path::new(&std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo")).join("../../config/catalog")
}

fn book(schema: ReportingSchema, extra: &[&str], rows: &[&[(&str, &str)]]) -> Vec<u8> {
    let mut columns = usageflow_files::write::record_columns(schema);
    columns.extend_from_slice(extra);
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| columns.iter().map(|c| r.iter().find(|(k, _)| k == c).map_or("", |(_, v)| *v).to_owned()).collect())
        .collect();
    usageflow_files::write_workbook(&[], &[], &columns, &rows).unwrap()
}

fn by(id: &str) -> Ref {
    Ref { id: id.into(), name: id.into() }
}

fn request(product: &str, contract: &str, external_id: &str) -> CreateFile {
    CreateFile {
        product: product.into(),
        contract: contract.into(),
        period: Period {
            from: chrono::NaiveDate::from_ymd_opt(2026, 11, 1).unwrap(),
            to: chrono::NaiveDate::from_ymd_opt(2026, 11, 30).unwrap(),
        },
        name: None,
        description: String::new(),
        note: String::new(),
        external_id: external_id.into(),
        currency: None,
        corrects: None,
    }
}

fn sms(id: &'static str, q: &'static str, day: &'static str, asset: &'static str) -> Vec<(&'static str, String)> {
    vec![
        ("record_id", id.into()),
        ("item_search_criteria", "item.mpn".into()),
        ("item_search_value", "FL-SMS".into()),
        ("quantity", q.into()),
        ("start_time_utc", format!("2026-11-{day} 00:00:00")),
        ("end_time_utc", format!("2026-11-{day} 23:59:59")),
        ("asset_search_criteria", "asset.id".into()),
        ("asset_search_value", asset.into()),
    ]
}

/// The fixture: Fieldlink's November file (QT, accepted by Northwind), Nimbus's November file
/// (TR with amounts per tier, accepted by Northwind), Vaultline's file (PR, ready, not accepted),
/// and a lake with two committed usage-record files and one that no commit names.
async fn world(dir: &Path) -> FileService {
    let store = usageflow_lake::open_store(&usageflow_lake::StoreConfig::local(dir)).unwrap();
    let clock = Arc::new(FixedClock::new(Utc.with_ymd_and_hms(2026, 12, 1, 9, 0, 0).unwrap()));
    let catalogue = Arc::new(usageflow_catalog::load_dir(&catalogue_dir()).unwrap());
    let svc = FileService::new(store.clone(), WorkflowStore::new(store.clone(), clock), catalogue);
    let (fieldlink, nimbus, vaultline) = (
        Actor::vendor("VA-200-002", by("SU-f")),
        Actor::vendor("VA-100-001", by("SU-n")),
        Actor::vendor("VA-300-003", by("SU-v")),
    );
    let northwind = Actor::provider("PA-500-001", by("SU-nw"));

    let a = svc.create(&fieldlink, request("PRD-200-200-002", "CRD-20001-10001-00001", "fl")).await.unwrap();
    let rows = [
        sms("r1", "10", "01", "AS-1000-0719-1201"),
        sms("r2", "20", "02", "AS-1000-8638-1202"),
        sms("r3", "30", "03", "AS-1000-6557-1203"),
    ];
    let rows: Vec<Vec<(&str, &str)>> = rows.iter().map(|r| r.iter().map(|(k, v)| (*k, v.as_str())).collect()).collect();
    let rows: Vec<&[(&str, &str)]> = rows.iter().map(Vec::as_slice).collect();
    let up = svc.upload(&fieldlink, &a.id, "a.xlsx", book(ReportingSchema::Qt, &[], &rows)).await.unwrap();
    assert_eq!(up.file.status.as_str(), "ready", "{:?}", up.validation.errors);
    svc.submit(&fieldlink, &a.id).await.unwrap();
    svc.accept(&northwind, &a.id, "").await.unwrap();

    let n = svc.create(&nimbus, request("PRD-100-100-001", "CRD-10001-10001-00001", "nim")).await.unwrap();
    let tr = |id: &'static str, tier: &'static str, amount: &'static str| {
        vec![
            ("record_id", id),
            ("item_search_criteria", "item.mpn"),
            ("item_search_value", "NIM-VCPU-H"),
            ("quantity", "12.5"),
            ("amount", amount),
            ("tier", tier),
            ("start_time_utc", "2026-11-05 00:00:00"),
            ("end_time_utc", "2026-11-05 23:59:59"),
            ("asset_search_criteria", "asset.id"),
            ("asset_search_value", "AS-1000-7919-0001"),
        ]
    };
    let (t0, t1) = (tr("n1", "0", "25.00"), tr("n2", "1", "20.00"));
    let up = svc.upload(&nimbus, &n.id, "n.xlsx", book(ReportingSchema::Tr, &[], &[&t0, &t1])).await.unwrap();
    assert_eq!(up.file.status.as_str(), "ready", "{:?}", up.validation.errors);
    svc.submit(&nimbus, &n.id).await.unwrap();
    svc.accept(&northwind, &n.id, "").await.unwrap();

    let v = svc.create(&vaultline, request("PRD-300-300-003", "CRD-30001-10002-00002", "vl")).await.unwrap();
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
    let up = svc
        .upload(&vaultline, &v.id, "v.xlsx", book(ReportingSchema::Pr, &["v.backup_policy"], &[&row]))
        .await
        .unwrap();
    assert_eq!(up.file.status.as_str(), "ready", "{:?}", up.validation.errors);

    // The lake: October and November records of Fieldlink, and an orphan nobody committed.
    let lake_file = |month: &str, start: i64, quantity: i128| {
        let mut b = RecordsBuilder::default();
        b.push(&RecordRow {
            product_id: "PRD-200-200-002",
            contract_id: "CRD-20001-10001-00001",
            marketplace_id: "MP-10001",
            hub_id: "HB-0001-0001",
            vendor_id: "VA-200-002",
            provider_id: "PA-500-001",
            asset_id: "AS-1000-0719-1201",
            item_id: Some("PRD-200-200-002-0002"),
            item_mpn: "FL-SMS",
            item_precision: 0,
            tier: None,
            category_id: None,
            period_start: start,
            period_end: start + 86_400_000_000,
            quantity: quantity * 100_000_000,
            amount: None,
            event_count: 1,
            first_event_at: start,
            last_event_at: start,
            kafka_partition: 0,
        });
        (
            format!("lake/records/product=PRD-200-200-002/month={month}/part-{month}.parquet"),
            to_parquet(&b.finish()).unwrap(),
        )
    };
    let oct = Utc.with_ymd_and_hms(2026, 10, 3, 0, 0, 0).unwrap().timestamp_micros();
    let nov = Utc.with_ymd_and_hms(2026, 11, 3, 0, 0, 0).unwrap().timestamp_micros();
    let mut add = Vec::new();
    for (month, start, q) in [("2026-10", oct, 7), ("2026-11", nov, 11)] {
        let (path, bytes) = lake_file(month, start, q);
        store.put(&path.as_str().into(), bytes.clone().into()).await.unwrap();
        add.push(DataFile {
            path,
            table: Table::Records,
            rows: 1,
            bytes: bytes.len() as u64,
            kafka_partition: Some(0),
            offset_start: None,
            offset_end: None,
            product: Some("PRD-200-200-002".into()),
            partition_value: Some(month.into()),
        });
    }
    let (orphan, bytes) = lake_file("2026-11", nov, 1000);
    store.put(&orphan.replace("part-", "orphan-").as_str().into(), bytes.into()).await.unwrap();
    Manifests::new(store, "test")
        .commit(&CommitRequest { operation: "test".into(), advance: Default::default(), add, remove: vec![] })
        .await
        .unwrap();
    svc
}

fn parse_scope(line: &str) -> Scope {
    let parts: Vec<&str> = line.split_whitespace().collect();
    match parts.as_slice() {
        ["scope", "all"] => Scope::All,
        ["scope", "vendor", id] => Scope::Vendor((*id).into()),
        ["scope", "provider", id] => Scope::Provider((*id).into()),
        ["scope", "reseller", id] => Scope::Reseller((*id).into()),
        _ => panic!("bad scope line `{line}`"),
    }
}

fn fmt(rows: &[Vec<String>]) -> String {
    rows.iter().map(|r| r.join(" | ")).collect::<Vec<_>>().join("\n")
}

#[tokio::test(flavor = "multi_thread")]
async fn golden_sql_files() {
    let dir = tempfile::tempdir().unwrap();
    let svc = world(dir.path()).await;
    let sql_dir = Path::new(&std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo")).join("tests/sql");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&sql_dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.retain(|p| p.extension().is_some_and(|e| e == "slt"));
    files.sort();
    assert!(!files.is_empty());
    let mut failures = Vec::new();
    let mut ran = 0;
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let mut scope = Scope::All;
        let mut sessions: HashMap<String, datafusion::prelude::SessionContext> = HashMap::new();
        for record in text.split("\n\n").map(str::trim).filter(|r| !r.is_empty()) {
            let lines: Vec<&str> = record.lines().filter(|l| !l.starts_with('#')).collect();
            let Some(head) = lines.first() else { continue };
            let name = file.file_name().unwrap().to_string_lossy().into_owned();
            if head.starts_with("scope") {
                scope = parse_scope(head);
                continue;
            }
            let key = format!("{scope:?}");
            if !sessions.contains_key(&key) || head.starts_with("reconcile") {
                let sources = load_sources(&svc).await.unwrap();
                sessions
                    .insert(key.clone(), analyst_session(svc.object_store().clone(), &sources, &scope).await.unwrap());
            }
            let ctx = &sessions[&key];
            let split = lines.iter().position(|l| *l == "----").unwrap_or(lines.len());
            let body = lines[1..split].join("\n");
            let expected = lines.get(split + 1..).map(|l| l.join("\n")).unwrap_or_default();
            ran += 1;
            if let Some(err) = head.strip_prefix("statement error") {
                match usageflow_query::query(ctx, &body).await {
                    Ok(_) => failures.push(format!("{name}: expected an error for\n{body}")),
                    Err(e) if !e.to_string().contains(err.trim()) => {
                        failures.push(format!("{name}: error `{e}` lacks `{}`", err.trim()))
                    }
                    Err(_) => {}
                }
                continue;
            }
            let got = if let Some(args) = head.strip_prefix("export") {
                let mut sel = Selection::default();
                for kv in args.split_whitespace() {
                    let (k, v) = kv.split_once('=').unwrap();
                    match k {
                        "from" => sel.from = Some(v.parse().unwrap()),
                        "to" => sel.to = Some(v.parse().unwrap()),
                        "hub" => sel.hub = Some(v.into()),
                        "marketplace" => sel.marketplace = Some(v.into()),
                        "product" => sel.product = Some(v.into()),
                        _ => panic!("bad export argument {kv}"),
                    }
                }
                let sql = usageflow_query::billing::billing_export_sql(&sel);
                // A subquery's ORDER BY does not order the outer query: order again.
                let cols = if body.trim().is_empty() { "*" } else { body.trim() };
                let order =
                    if cols.contains("count(") { String::new() } else { format!(" ORDER BY {BILLING_EXPORT_ORDER}") };
                let wrapped = format!("SELECT {cols} FROM ({sql}) e{order}");
                to_rows(&usageflow_query::query(ctx, &wrapped).await.unwrap()).unwrap()
            } else if head.starts_with("reconcile") {
                register_billing(ctx, &sql_dir.join(body.trim())).await.unwrap();
                let sql = reconciliation_sql(ctx, &Selection::default()).await.unwrap();
                let report = usageflow_query::query(ctx, &sql).await.unwrap();
                if head.contains("close") {
                    let actor = Actor::provider("PA-500-001", by("SU-recon"));
                    let (closed, _) = close_matched(&svc, &actor, &report).await.unwrap();
                    assert!(closed > 0);
                    sessions.clear();
                }
                if let Some(ctx) = sessions.get(&key) {
                    ctx.deregister_table("billing").unwrap();
                }
                let cols =
                    ["vendor_record_id", "outcome", "reported_quantity", "billed_quantity", "external_billing_id"];
                to_rows(&report)
                    .unwrap()
                    .into_iter()
                    .map(|r| {
                        cols.iter()
                            .map(|c| {
                                let i = report[0].schema().index_of(c).unwrap();
                                r[i].clone()
                            })
                            .collect()
                    })
                    .collect::<Vec<Vec<String>>>()
            } else {
                match usageflow_query::query(ctx, &body).await {
                    Ok(b) => to_rows(&b).unwrap(),
                    Err(e) => {
                        failures.push(format!("{name}: {e}\n{body}"));
                        continue;
                    }
                }
            };
            if fmt(&got) != expected {
                failures.push(format!("{name}:\n{body}\nexpected:\n{expected}\ngot:\n{}", fmt(&got)));
            }
        }
    }
    assert!(ran >= 10, "{ran}");
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
