//! Hostile tenants against the scoped SQL session: every table a scoped session exposes is
//! attacked with expressions that fail on any row the tenant may not see, in filters,
//! projections, joins and aggregates; none may fail (so no foreign row ever reached an
//! expression of the caller) and each answers exactly the tenant's rows. Then the memory-hungry
//! statements: each fails with a limit error, quickly, instead of taking the process's memory.

mod support;

use std::collections::BTreeSet;

use chrono::{TimeZone, Utc};
use usageflow_lake::Table;
use usageflow_lake::tables::{EventRow, EventsBuilder, RecordRow, RecordsBuilder};
use usageflow_query::lake::TABLES;
use usageflow_query::limits::{Phase, QueryLimits, SharedMemory, public_error};
use usageflow_query::{QueryError, Scope, bounded_analyst_session, load_sources, sql_string};

/// The fixture world plus lake rows of two vendors: Fieldlink's (Northwind) and Vaultline's
/// (Southgate), records and raw events in shared files.
async fn world(dir: &std::path::Path) -> usageflow_files::FileService {
    let svc = support::world(dir).await;
    let lake = svc.lake().clone();
    let day = Utc.with_ymd_and_hms(2026, 11, 10, 0, 0, 0).unwrap().timestamp_micros();
    let record = |product, contract, vendor, provider, asset, mpn| RecordRow {
        product_id: product,
        contract_id: contract,
        marketplace_id: "MP-10001",
        hub_id: "HB-0001-0001",
        vendor_id: vendor,
        provider_id: provider,
        asset_id: asset,
        item_id: None,
        item_mpn: mpn,
        item_precision: 0,
        tier: None,
        category_id: Some("secret-category"),
        period_start: day,
        period_end: day + 86_400_000_000,
        quantity: 5 * 100_000_000,
        amount: None,
        event_count: 1,
        first_event_at: day,
        last_event_at: day,
        kafka_partition: 1,
    };
    let (mut records, mut events_files) = (Vec::new(), Vec::new());
    for (product, contract, vendor, provider, asset, mpn) in [
        ("PRD-200-200-002", "CRD-20001-10001-00001", "VA-200-002", "PA-500-001", "AS-1000-0719-1201", "FL-SMS"),
        ("PRD-300-300-003", "CRD-30001-10002-00002", "VA-300-003", "PA-500-002", "AS-1000-3519-2401", "VL-BKP-GB"),
    ] {
        let mut b = RecordsBuilder::default();
        b.push(&record(product, contract, vendor, provider, asset, mpn));
        let partition = [("product", product), ("month", "2026-11")];
        records.push(
            lake.write_file(Table::Records, &b.finish(), &partition, "part-00001-hostile.parquet").await.unwrap(),
        );
    }
    // One events file holding both vendors' events.
    let mut events = EventsBuilder::default();
    for (id, product, contract, asset, mpn) in [
        ("ev-fieldlink", "PRD-200-200-002", "CRD-20001-10001-00001", "AS-1000-0719-1201", "FL-SMS"),
        ("ev-vaultline", "PRD-300-300-003", "CRD-30001-10002-00002", "AS-1000-3519-2401", "VL-BKP-GB"),
    ] {
        events.push(&EventRow {
            event_id: id,
            product_id: product,
            contract_id: contract,
            asset_id: asset,
            item_id: None,
            item_mpn: mpn,
            tier: None,
            category_id: None,
            quantity: 100_000_000,
            amount: None,
            start_time: day,
            end_time: day,
            attributes: Some("{\"secret\":\"attribute\"}"),
            kafka_partition: 1,
            kafka_offset: 0,
            kafka_timestamp: day,
        });
    }
    let partition = [("date", "2026-11-10")];
    events_files.push(
        lake.write_file(Table::Events, &events.finish(), &partition, "part-00001-hostile.parquet").await.unwrap(),
    );
    lake.append(Table::Records, records).await.unwrap();
    lake.append(Table::Events, events_files).await.unwrap();
    svc
}

const SCOPES: [(&str, &str); 6] = [
    ("vendor", "VA-200-002"),
    ("vendor", "VA-300-003"),
    ("vendor", "VA-100-001"),
    ("provider", "PA-500-001"),
    ("provider", "PA-500-002"),
    ("reseller", "RA-700-001"),
];

fn scope(kind: &str, id: &str) -> Scope {
    match kind {
        "vendor" => Scope::Vendor(id.into()),
        "provider" => Scope::Provider(id.into()),
        _ => Scope::Reseller(id.into()),
    }
}

fn limits() -> QueryLimits {
    QueryLimits { max_query_memory_bytes: 32 << 20, max_value_bytes: 1 << 20, max_batch_value_bytes: 32 << 20 }
}

/// Text values of every column of a query's result, by column name.
async fn texts(ctx: &datafusion::prelude::SessionContext, sql: &str) -> Vec<(String, Vec<Option<String>>)> {
    let batches = usageflow_query::query(ctx, sql).await.unwrap();
    let Some(first) = batches.first() else { return Vec::new() };
    let schema = first.schema();
    let mut out: Vec<(String, Vec<Option<String>>)> =
        schema.fields().iter().map(|f| (f.name().clone(), Vec::new())).collect();
    for b in &batches {
        for (i, c) in b.columns().iter().enumerate() {
            let t = usageflow_query::output::text_column(c).unwrap();
            out[i].1.extend(t.iter().map(|v| v.map(str::to_owned)));
        }
    }
    out
}

/// For every scoped table and column: an expression that fails on any value the tenant does
/// not see, in a filter, a projection, an aggregate and a self-join; each must succeed.
#[tokio::test(flavor = "multi_thread")]
async fn no_expression_of_a_tenant_ever_sees_another_tenants_row() {
    let dir = tempfile::tempdir().unwrap();
    let svc = world(dir.path()).await;
    let sources = load_sources(&svc).await.unwrap();
    let shared = SharedMemory::new(256 << 20);
    let mut attacks = 0;
    let mut seen_rows = 0usize;
    for (kind, id) in SCOPES {
        let ctx =
            bounded_analyst_session(svc.object_store().clone(), &sources, &scope(kind, id), Some((&limits(), &shared)))
                .await
                .unwrap();
        for table in TABLES {
            let own = texts(&ctx, &format!("SELECT * FROM {table}")).await;
            let rows = own.first().map_or(0, |(_, v)| v.len());
            seen_rows += rows;
            for (column, values) in &own {
                let mine: BTreeSet<&str> = values.iter().flatten().map(String::as_str).collect();
                let list = if mine.is_empty() {
                    "NULL".to_owned()
                } else {
                    mine.iter().map(|v| sql_string(v)).collect::<Vec<_>>().join(", ")
                };
                let c = format!("CAST(\"{column}\" AS VARCHAR)");
                // True for the tenant's own values; a failing cast for anything else.
                let guard =
                    format!("CASE WHEN {c} IS NULL OR {c} IN ({list}) THEN TRUE ELSE CAST({c} || '!' AS INT) = 1 END");
                let attacks_of = [
                    format!("SELECT count(*) AS n FROM {table} WHERE {guard}"),
                    format!("SELECT count(*) AS n FROM (SELECT {guard} AS g FROM {table}) t WHERE g"),
                    format!("SELECT count(*) AS n FROM {table} GROUP BY {guard} HAVING bool_and({guard})"),
                    format!(
                        "SELECT count(*) AS n FROM {table} a JOIN {table} b ON {} WHERE {}",
                        guard.replace(&c, &format!("CAST(a.\"{column}\" AS VARCHAR)")),
                        guard.replace(&c, &format!("CAST(b.\"{column}\" AS VARCHAR)"))
                    ),
                ];
                for sql in attacks_of {
                    attacks += 1;
                    let result = usageflow_query::query(&ctx, &sql).await;
                    assert!(
                        result.is_ok(),
                        "{kind} {id}: {table}.{column}: a foreign row reached the caller's expression: {:?}\n{sql}",
                        result.err()
                    );
                }
            }
        }
    }
    assert!(attacks > 500, "only {attacks} attacks ran");
    // The attack is real: on a session that holds every tenant's rows, the same guard with
    // one tenant's values fails.
    let all = bounded_analyst_session(svc.object_store().clone(), &sources, &Scope::All, Some((&limits(), &shared)))
        .await
        .unwrap();
    let sql = "SELECT count(*) FROM usage_records WHERE CASE WHEN vendor_id IN ('VA-200-002') THEN TRUE \
               ELSE CAST(vendor_id || '!' AS INT) = 1 END";
    let err = usageflow_query::query(&all, sql).await.unwrap_err();
    assert!(err.to_string().contains("VA-300-003"), "{err}");
    assert!(seen_rows > 0);
}

/// The lake tables hold each vendor's rows only, even where files hold both.
#[tokio::test(flavor = "multi_thread")]
async fn shared_lake_files_show_each_tenant_its_own_rows() {
    let dir = tempfile::tempdir().unwrap();
    let svc = world(dir.path()).await;
    let sources = load_sources(&svc).await.unwrap();
    let shared = SharedMemory::new(256 << 20);
    for (kind, id, events, vendors) in [
        ("vendor", "VA-200-002", vec!["ev-fieldlink"], vec!["VA-200-002"]),
        ("vendor", "VA-300-003", vec!["ev-vaultline"], vec!["VA-300-003"]),
        ("provider", "PA-500-002", vec!["ev-vaultline"], vec!["VA-300-003"]),
        ("vendor", "VA-100-001", vec![], vec![]),
    ] {
        let ctx =
            bounded_analyst_session(svc.object_store().clone(), &sources, &scope(kind, id), Some((&limits(), &shared)))
                .await
                .unwrap();
        let got = texts(&ctx, "SELECT event_id FROM events ORDER BY event_id").await;
        let got: Vec<String> = got.first().map(|(_, v)| v.iter().flatten().cloned().collect()).unwrap_or_default();
        assert_eq!(got, events, "{kind} {id}");
        let got = texts(&ctx, "SELECT DISTINCT vendor_id FROM usage_records ORDER BY 1").await;
        let got: Vec<String> = got.first().map(|(_, v)| v.iter().flatten().cloned().collect()).unwrap_or_default();
        assert_eq!(got, vendors, "{kind} {id}");
    }
}

fn limit_error(sql: &str, result: Result<Vec<arrow::array::RecordBatch>, QueryError>) -> String {
    match result {
        Ok(_) => panic!("the query was not stopped: {sql}"),
        Err(QueryError::DataFusion(e)) => {
            let public = public_error(&e, Phase::Running);
            assert!(matches!(public.class, "limit" | "resources"), "{sql}: {e}");
            public.message
        }
        Err(other) => panic!("{other}"),
    }
}

/// Statements that would build huge values or hold huge state fail with a limit error.
#[tokio::test(flavor = "multi_thread")]
async fn memory_hungry_queries_fail_with_a_limit() {
    let dir = tempfile::tempdir().unwrap();
    let svc = world(dir.path()).await;
    let sources = load_sources(&svc).await.unwrap();
    let shared = SharedMemory::new(64 << 20);
    let ctx = bounded_analyst_session(
        svc.object_store().clone(),
        &sources,
        &Scope::Vendor("VA-200-002".into()),
        Some((&limits(), &shared)),
    )
    .await
    .unwrap();
    let started = std::time::Instant::now();
    for sql in [
        "SELECT length(repeat('x', 1000000000))",
        "SELECT length(repeat(s, 100000)) FROM (SELECT repeat('y', 1000) AS s)",
        "SELECT length(lpad('x', 2000000000))",
        "SELECT length(rpad('x', 2000000000, 'ab'))",
        "SELECT length(replace(repeat('a', 100000), 'a', repeat('b', 100000)))",
        "SELECT length(regexp_replace(repeat('a', 100000), 'a', repeat('b', 100000)))",
        "SELECT cardinality(range(1, 1000000000))",
        "SELECT cardinality(array_repeat(1, 1000000000))",
        // A value that doubles at every step of a chain of subqueries.
        "WITH a AS (SELECT repeat('z', 1000000) AS s), b AS (SELECT s || s AS s FROM a), c AS (SELECT s || s AS s FROM b), \
         d AS (SELECT s || s AS s FROM c), e AS (SELECT s || s AS s FROM d), f AS (SELECT s || s AS s FROM e), \
         g AS (SELECT s || s AS s FROM f), h AS (SELECT s || s AS s FROM g) SELECT length(s) FROM h",
        // State that grows with the input.
        "SELECT length(string_agg(repeat('w', 1000), ',')) FROM generate_series(1, 200000)",
        "SELECT cardinality(array_agg(value)) FROM generate_series(1, 50000000)",
    ] {
        let message = limit_error(sql, usageflow_query::query(&ctx, sql).await);
        assert!(!message.is_empty(), "{sql}");
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(120), "took {:?}", started.elapsed());
    // Grouping state larger than the pool spills to disk and the answer is right.
    let distinct =
        usageflow_query::query(&ctx, "SELECT count(DISTINCT value) AS n FROM generate_series(1, 3000000)").await;
    let distinct = distinct.expect("a grouping over the limit spills");
    assert_eq!(usageflow_query::output::text_column(distinct[0].column(0)).unwrap().value(0), "3000000");
    // Everything reserved is given back.
    assert_eq!(shared.reserved(), 0);
    // And ordinary queries still run.
    let ok = usageflow_query::query(&ctx, "SELECT length(repeat('x', 1000)) AS n").await.unwrap();
    assert_eq!(ok[0].num_rows(), 1);
}
