//! The fixture world of the query tests: usage files through their workflow and a lake with
//! committed and uncommitted files.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{TimeZone, Utc};
use object_store::ObjectStoreExt;
use usageflow_files::{CreateFile, FileService};
use usageflow_lake::tables::{RecordRow, RecordsBuilder, to_parquet};
use usageflow_lake::{DeltaLake, Table};
use usageflow_model::{Actor, Period, Ref, ReportingSchema};
use usageflow_workflow::{FixedClock, WorkflowStore};

pub fn catalogue_dir() -> PathBuf {
    Path::new(&std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo")).join("../../config/catalog")
}

pub fn book(schema: ReportingSchema, extra: &[&str], rows: &[&[(&str, &str)]]) -> Vec<u8> {
    let mut columns = usageflow_files::write::record_columns(schema);
    columns.extend_from_slice(extra);
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| columns.iter().map(|c| r.iter().find(|(k, _)| k == c).map_or("", |(_, v)| *v).to_owned()).collect())
        .collect();
    usageflow_files::write_workbook(&[], &[], &columns, &rows).unwrap()
}

pub fn by(id: &str) -> Ref {
    Ref { id: id.into(), name: id.into() }
}

pub fn request(product: &str, contract: &str, external_id: &str) -> CreateFile {
    CreateFile {
        product: product.into(),
        contract: contract.into(),
        period: Some(Period {
            from: chrono::NaiveDate::from_ymd_opt(2026, 11, 1).unwrap(),
            to: chrono::NaiveDate::from_ymd_opt(2026, 11, 30).unwrap(),
        }),
        name: None,
        description: String::new(),
        note: String::new(),
        external_id: external_id.into(),
        currency: None,
        corrects: None,
    }
}

pub fn sms(id: &'static str, q: &'static str, day: &'static str, asset: &'static str) -> Vec<(&'static str, String)> {
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
pub async fn world(dir: &Path) -> FileService {
    let lake = DeltaLake::open_store(&usageflow_lake::StoreConfig::local(dir)).unwrap();
    let store = lake.store().clone();
    let clock = Arc::new(FixedClock::new(Utc.with_ymd_and_hms(2026, 12, 1, 9, 0, 0).unwrap()));
    let catalogue = Arc::new(usageflow_catalog::load_dir(&catalogue_dir()).unwrap());
    let svc =
        FileService::new(store.clone(), WorkflowStore::new(store.clone(), clock), catalogue).with_lake(lake.clone());
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
    let lake_file = |start: i64, quantity: i128| {
        let mut b = RecordsBuilder::default();
        b.push(&RecordRow::sample(start, quantity));
        b.finish()
    };
    let oct = Utc.with_ymd_and_hms(2026, 10, 3, 0, 0, 0).unwrap().timestamp_micros();
    let nov = Utc.with_ymd_and_hms(2026, 11, 3, 0, 0, 0).unwrap().timestamp_micros();
    let mut add = Vec::new();
    for (month, start, q) in [("2026-10", oct, 7), ("2026-11", nov, 11)] {
        let partition = [("product", "PRD-200-200-002"), ("month", month)];
        let name = format!("part-{month}.parquet");
        add.push(lake.write_file(Table::Records, &lake_file(start, q), &partition, &name).await.unwrap());
    }
    let orphan = "lake/records/product=PRD-200-200-002/month=2026-11/orphan-2026-11.parquet";
    store.put(&orphan.into(), to_parquet(&lake_file(nov, 1000)).unwrap().into()).await.unwrap();
    lake.append(Table::Records, add).await.unwrap();
    svc
}
