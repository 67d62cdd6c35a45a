//! The same SQL on a Ballista scheduler with two executors on localhost and on the embedded
//! session gives the same answers, over the committed files only.

use std::sync::Arc;

use chrono::{TimeZone, Utc};
use object_store::ObjectStoreExt;
use usageflow_lake::tables::{RecordRow, RecordsBuilder, to_parquet};
use usageflow_lake::{DeltaLake, Table};
use usageflow_query::billing::to_rows;
use usageflow_query::{Scope, Sources};

async fn lake(dir: &std::path::Path) -> usageflow_lake::LakeState {
    let lake = DeltaLake::open_store(&usageflow_lake::StoreConfig::local(dir)).unwrap();
    let store = lake.store().clone();
    let mut add = Vec::new();
    for (k, (product, month, day)) in
        [("PRD-A", "2026-09", 9), ("PRD-A", "2026-10", 10), ("PRD-A", "2026-11", 11), ("PRD-B", "2026-11", 11)]
            .into_iter()
            .enumerate()
    {
        let start = Utc.with_ymd_and_hms(2026, day, 2, 0, 0, 0).unwrap().timestamp_micros();
        let mut b = RecordsBuilder::default();
        let assets: Vec<String> = (0..50).map(|a| format!("AS-{a:04}")).collect();
        for i in 0..2_000u32 {
            b.push(&RecordRow {
                product_id: product,
                contract_id: "CRD-1",
                marketplace_id: "MP-1",
                hub_id: "HB-1",
                vendor_id: "VA-1",
                provider_id: "PA-1",
                asset_id: &assets[(i % 50) as usize],
                item_id: Some("IT-1"),
                item_mpn: "MPN-1",
                item_precision: 2,
                tier: None,
                category_id: None,
                period_start: start + i64::from(i) * 60_000_000,
                period_end: start + i64::from(i + 1) * 60_000_000,
                quantity: i128::from(i) * 1_234_567 + k as i128,
                amount: None,
                event_count: 1,
                first_event_at: start,
                last_event_at: start,
                kafka_partition: 0,
            });
        }
        let batch = b.finish();
        let partition = [("product", product), ("month", month)];
        add.push(lake.write_file(Table::Records, &batch, &partition, &format!("part-{k}.parquet")).await.unwrap());
        if k == 3 {
            // Written but never committed: neither engine may read it.
            let orphan = format!("lake/records/product={product}/month={month}/orphan.parquet");
            store.put(&orphan.as_str().into(), to_parquet(&batch).unwrap().into()).await.unwrap();
        }
    }
    lake.append(Table::Records, add).await.unwrap();
    lake.snapshot().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ballista_gives_the_embedded_answers() {
    let dir = tempfile::tempdir().unwrap();
    let state = lake(dir.path()).await;
    let store = usageflow_lake::open_store(&usageflow_lake::StoreConfig::local(dir.path())).unwrap();
    let catalogue = Arc::new(
        usageflow_catalog::load_dir(
            &std::path::Path::new(&std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo"))
                .join("../../config/catalog"),
        )
        .unwrap(),
    );
    let sources = Sources {
        lake: state.clone(),
        catalogue,
        files: vec![],
        changes: vec![],
        chunks: vec![],
        reconciliations: vec![],
    };
    let embedded = usageflow_query::analyst_session(store, &sources, &Scope::All).await.unwrap();

    let cluster = usageflow_distributed::LocalCluster::start(2, 1).await.unwrap();
    let distributed = usageflow_distributed::connect(&cluster.url()).await.unwrap();
    usageflow_distributed::register_lake(&distributed, dir.path(), &state).await.unwrap();

    let queries = [
        "SELECT product_id, CAST(sum(quantity) AS VARCHAR) AS q, count(*) AS n FROM usage_records GROUP BY product_id ORDER BY product_id",
        "SELECT date_trunc('month', period_start) AS m, CAST(sum(quantity) AS VARCHAR) AS q FROM usage_records \
         WHERE period_start >= TIMESTAMP '2026-10-01T00:00:00Z' GROUP BY 1 ORDER BY 1",
        "SELECT a.asset_id, count(*) AS pairs FROM usage_records a JOIN usage_records b \
         ON a.asset_id = b.asset_id AND a.product_id = b.product_id GROUP BY 1 ORDER BY 1 LIMIT 5",
    ];
    for q in queries {
        let ours = to_rows(&usageflow_query::query(&embedded, q).await.unwrap()).unwrap();
        let theirs = to_rows(&distributed.sql(q).await.unwrap().collect().await.unwrap()).unwrap();
        assert!(!ours.is_empty(), "{q}");
        assert_eq!(ours, theirs, "{q}");
    }
    let n = to_rows(&distributed.sql("SELECT count(*) FROM usage_records").await.unwrap().collect().await.unwrap())
        .unwrap();
    assert_eq!(n, vec![vec!["8000".to_owned()]], "the orphan file is not read");
}
