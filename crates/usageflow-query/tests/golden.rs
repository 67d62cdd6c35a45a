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

mod support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use usageflow_model::Actor;
use usageflow_query::billing::{
    BILLING_EXPORT_ORDER, Selection, close_matched, reconciliation_sql_as_of, register_billing, to_rows,
};
use usageflow_query::{Scope, analyst_session, load_sources};

use support::{by, world};

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
                let billed_at = head
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix("billed_at="))
                    .map(|t| chrono::DateTime::parse_from_rfc3339(t).unwrap().with_timezone(&chrono::Utc));
                let sql = reconciliation_sql_as_of(ctx, &Selection::default(), billed_at).await.unwrap();
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
