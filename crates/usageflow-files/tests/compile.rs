//! Compiling usage files from the lake's committed records.

use std::path::Path;
use std::sync::Arc;

use chrono::{NaiveDate, TimeZone, Utc};
use usageflow_files::{FileService, ReadLimits, read_workbook};
use usageflow_lake::tables::{RecordRow, RecordsBuilder};
use usageflow_lake::{DeltaLake, Table};
use usageflow_model::{Actor, FileStatus, Period, Ref};
use usageflow_workflow::{FixedClock, WorkflowStore};

const DAY: i64 = 86_400_000_000;

fn us(y: i32, m: u32, d: u32) -> i64 {
    Utc.with_ymd_and_hms(y, m, d, 0, 0, 0).unwrap().timestamp_micros()
}

fn row<'a>(contract: &'a str, mpn: &'a str, item: &'a str, scale: i8, day: i64, quantity: i128) -> RecordRow<'a> {
    RecordRow {
        product_id: "PRD-200-200-002",
        contract_id: contract,
        marketplace_id: "MP-10001",
        hub_id: "HB-0001-0001",
        vendor_id: "VA-200-002",
        provider_id: "PA-500-001",
        asset_id: "AS-1000-0719-1201",
        item_id: Some(item),
        item_mpn: mpn,
        item_precision: scale,
        tier: None,
        category_id: Some("data"),
        period_start: day,
        period_end: day + DAY,
        quantity,
        amount: None,
        event_count: 2,
        first_event_at: day,
        last_event_at: day + 1000,
        kafka_partition: 0,
    }
}

async fn commit(lake: &DeltaLake, name: &str, rows: &[RecordRow<'_>]) {
    let mut b = RecordsBuilder::default();
    for r in rows {
        b.push(r);
    }
    let batch = b.finish();
    let partition = [("product", "PRD-200-200-002"), ("month", "2026-11")];
    let file = lake.write_file(Table::Records, &batch, &partition, &format!("{name}.parquet")).await.unwrap();
    lake.append(Table::Records, vec![file]).await.unwrap();
}

#[tokio::test]
async fn compile_sums_the_period_and_is_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    let lake = DeltaLake::open_store(&usageflow_lake::StoreConfig::local(dir.path())).unwrap();
    let store = lake.store().clone();
    let (nov3, nov4) = (us(2026, 11, 3), us(2026, 11, 4));
    let ours = "CRD-20001-10001-00001";
    commit(
        &lake,
        "a",
        &[
            row(ours, "FL-SMS", "PRD-200-200-002-0002", 0, nov3, 5 * 100_000_000),
            row(ours, "FL-DATA-MB", "PRD-200-200-002-0001", 2, nov4, 125_000_000),
        ],
    )
    .await;
    commit(
        &lake,
        "b",
        &[
            row(ours, "FL-SMS", "PRD-200-200-002-0002", 0, nov3, 2 * 100_000_000),
            row("CRD-20001-10003-00001", "FL-SMS", "PRD-200-200-002-0002", 0, nov3, 100_000_000),
            row(ours, "FL-SMS", "PRD-200-200-002-0002", 0, us(2026, 12, 1), 100_000_000),
        ],
    )
    .await;

    let catalogue = usageflow_catalog::load_dir(
        &Path::new(&std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo")).join("../../config/catalog"),
    )
    .unwrap();
    let clock = Arc::new(FixedClock::new(Utc.with_ymd_and_hms(2026, 12, 1, 9, 0, 0).unwrap()));
    let svc = FileService::new(store.clone(), WorkflowStore::new(store.clone(), clock), Arc::new(catalogue))
        .with_lake(lake.clone());
    let vendor = Actor::vendor("VA-200-002", Ref { id: "job".into(), name: "compiler".into() });
    let period = Period {
        from: NaiveDate::from_ymd_opt(2026, 11, 1).unwrap(),
        to: NaiveDate::from_ymd_opt(2026, 11, 30).unwrap(),
    };

    let first = svc.compile(&vendor, "PRD-200-200-002", ours, period).await.unwrap();
    assert_eq!(first.file.status, FileStatus::Ready, "{:?}", first.validation.errors);
    assert_eq!(first.file.records.valid, 2, "other contracts and other periods are left out");
    let read = |bytes: Vec<u8>| read_workbook(&bytes, &ReadLimits::default()).unwrap();
    let book = read(svc.document(first.file.uploaded_file.as_ref().unwrap()).await.unwrap());
    let sms = book.records.iter().find(|r| r.get("item_search_value") == Some("PRD-200-200-002-0002")).unwrap();
    assert_eq!(sms.get("quantity"), Some("7"), "5 + 2, integer precision");
    assert_eq!(sms.get("start_time_utc"), Some("2026-11-03 00:00:00"));
    assert_eq!(sms.get("end_time_utc"), Some("2026-11-03 23:59:59"));
    let data = book.records.iter().find(|r| r.get("item_search_value") == Some("PRD-200-200-002-0001")).unwrap();
    assert_eq!(data.get("quantity"), Some("1.25"));
    assert_eq!(book.categories[0].id, "data");

    // Again: the same file, the same rows in the same order.
    let second = svc.compile(&vendor, "PRD-200-200-002", ours, period).await.unwrap();
    assert_eq!(second.file.id, first.file.id);
    let again = read(svc.document(second.file.uploaded_file.as_ref().unwrap()).await.unwrap());
    assert_eq!(again.records, book.records);

    // Submitted and accepted; then more usage for the period arrives.
    let provider = Actor::provider("PA-500-001", Ref { id: "desk".into(), name: "desk".into() });
    svc.workflow().act(&first.file.id, usageflow_model::FileChange::Submit, &vendor).await.unwrap();
    svc.workflow()
        .act(
            &first.file.id,
            usageflow_model::FileChange::Accept { note: String::new(), rejected_records: 0 },
            &provider,
        )
        .await
        .unwrap();
    let nov5 = us(2026, 11, 5);
    commit(
        &lake,
        "c",
        &[
            row(ours, "FL-SMS", "PRD-200-200-002-0002", 0, nov3, 3 * 100_000_000),
            row(ours, "FL-SMS", "PRD-200-200-002-0002", 0, nov5, 100_000_000),
        ],
    )
    .await;

    // The new usage goes into a correction file, never into the accepted one.
    let correction = svc.compile(&vendor, "PRD-200-200-002", ours, period).await.unwrap();
    assert_ne!(correction.file.id, first.file.id);
    assert_eq!(correction.file.corrects.as_deref(), Some(first.file.id.as_str()));
    assert_eq!(correction.file.status, FileStatus::Ready, "{:?}", correction.validation.errors);
    let fix = read(svc.document(correction.file.uploaded_file.as_ref().unwrap()).await.unwrap());
    let quantities: Vec<(&str, &str)> =
        fix.records.iter().map(|r| (r.get("start_time_utc").unwrap(), r.get("quantity").unwrap())).collect();
    assert_eq!(
        quantities,
        [("2026-11-03 00:00:00", "3"), ("2026-11-05 00:00:00", "1")],
        "only what the accepted file lacks"
    );
    let accepted = svc.workflow().get(&first.file.id).await.unwrap();
    assert_eq!((accepted.status, accepted.records.valid), (FileStatus::Accepted, 2));

    // Compiling again reuses the open correction file; once it is submitted, nothing is new.
    let again = svc.compile(&vendor, "PRD-200-200-002", ours, period).await.unwrap();
    assert_eq!(again.file.id, correction.file.id);
    svc.workflow().act(&correction.file.id, usageflow_model::FileChange::Submit, &vendor).await.unwrap();
    let err = svc.compile(&vendor, "PRD-200-200-002", ours, period).await.unwrap_err();
    assert!(err.to_string().starts_with("nothing to report"), "{err}");
}

#[tokio::test]
async fn a_period_beyond_one_workbook_is_split_into_valid_files() {
    let dir = tempfile::tempdir().unwrap();
    let lake = DeltaLake::open_store(&usageflow_lake::StoreConfig::local(dir.path())).unwrap();
    let store = lake.store().clone();
    let ours = "CRD-20001-10001-00001";
    let days: Vec<i64> = (1..=5).map(|d| us(2026, 11, d)).collect();
    let rows: Vec<_> = days.iter().map(|d| row(ours, "FL-SMS", "PRD-200-200-002-0002", 0, *d, 100_000_000)).collect();
    commit(&lake, "a", &rows).await;
    let catalogue = usageflow_catalog::load_dir(
        &Path::new(&std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo")).join("../../config/catalog"),
    )
    .unwrap();
    let clock = Arc::new(FixedClock::new(Utc.with_ymd_and_hms(2026, 12, 1, 9, 0, 0).unwrap()));
    let svc = FileService::new(store.clone(), WorkflowStore::new(store.clone(), clock), Arc::new(catalogue))
        .with_lake(lake.clone())
        .with_max_records_per_file(2);
    let vendor = Actor::vendor("VA-200-002", Ref { id: "job".into(), name: "compiler".into() });
    let period = Period {
        from: NaiveDate::from_ymd_opt(2026, 11, 1).unwrap(),
        to: NaiveDate::from_ymd_opt(2026, 11, 30).unwrap(),
    };
    let outcome = svc.compile(&vendor, "PRD-200-200-002", ours, period).await.unwrap();
    let mut files = vec![outcome.file.clone()];
    files.extend(outcome.parts.iter().cloned());
    assert_eq!(files.len(), 3);
    assert!(files.iter().all(|f| f.status == FileStatus::Ready), "{files:?}");
    let counts: Vec<u64> = files.iter().map(|f| f.records.valid).collect();
    assert_eq!(counts, [2, 2, 1]);
    assert_eq!(files[1].note, "part 2 of 3");
}
