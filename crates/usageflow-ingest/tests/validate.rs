//! Every rejection code, on events against the sample catalogue, and what is accepted.

use std::path::Path;
use std::sync::Arc;

use usageflow_ingest::decode::{CeHeaders, decode};
use usageflow_ingest::validate::ItemKey;
use usageflow_ingest::{Code, Index, ValidationConfig, Validator};

/// 2026-11-25T10:00:00Z in µs: the Kafka timestamp of every test message.
const TS: i64 = 1_795_600_800_000_000;

fn validator() -> Validator {
    let dir = Path::new(&std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo")).join("../../config/catalog");
    let catalogue = usageflow_catalog::load_dir(&dir).unwrap();
    Validator::new(Arc::new(Index::new(catalogue.data())), ValidationConfig::default())
}

/// A Fieldlink (QT, daily, late charges) event with `extra` fields merged in.
fn qt(extra: &str) -> String {
    format!(
        r#"{{"id":"e","product":"PRD-200-200-002","asset_id":"AS-1000-0719-1201","item_mpn":"FL-DATA-MB","quantity":"10.25","time":"2026-11-25T09:00:00Z"{extra}}}"#
    )
}

/// A Nimbus (TR, hourly, dynamic items) event.
fn tr(extra: &str) -> String {
    format!(
        r#"{{"id":"e","product":"PRD-100-100-001","asset_id":"AS-1000-7919-0001","item_mpn":"NIM-VCPU-H","quantity":"2","amount":"0.40","tier":0,"time":"2026-11-25T09:30:00Z"{extra}}}"#
    )
}

fn check(json: &str) -> Result<usageflow_ingest::validate::Valid, usageflow_ingest::Rejection> {
    let mut v = validator();
    let event = decode(json.as_bytes(), &CeHeaders::default())?;
    v.validate(&event, TS)
}

fn code(json: &str) -> Code {
    match check(json) {
        Ok(v) => panic!("accepted: {json} -> {v:?}"),
        Err(r) => {
            assert!(!r.reason.is_empty());
            r.code
        }
    }
}

#[test]
fn valid_events_resolve_and_bucket_by_period() {
    let v = check(&qt("")).unwrap();
    assert_eq!(v.quantity, 1_025_000_000);
    assert_eq!(v.amount, None);
    assert_eq!(v.period_end - v.period_start, 86_400_000_000, "Fieldlink records are daily");
    let v = check(&tr("")).unwrap();
    assert_eq!((v.amount, v.tier), (Some(40_000_000), Some(0)));
    assert_eq!(v.period_end - v.period_start, 3_600_000_000, "Nimbus records are hourly");
    // Asset by parameter, item by global id.
    let json = r#"{"id":"e","product":"PRD-100-100-001","asset":{"parameter":"instance_uuid","value":"d837115f-ea8f-026f-50a7-8f8d73e1d036"},"item":{"global_id":"PRD-100-100-001-0002"},"quantity":1,"amount":1,"tier":0,"time":"2026-11-25T09:00:00Z"}"#;
    let v = check(json).unwrap();
    assert_eq!(v.item, ItemKey::Declared(1));
    // Dynamic item on the product that allows them.
    let v = check(
        &tr(r#","item":{"mpn":"NIM-GPU-H","name":"GPU hours","precision":"decimal(2)"}"#)
            .replace(r#""item_mpn":"NIM-VCPU-H","#, ""),
    )
    .unwrap();
    assert!(matches!(v.item, ItemKey::Dynamic(_)));
    // Late usage is accepted on a product with late charges, within the limit.
    assert!(check(&qt("").replace("2026-11-25T09:00:00Z", "2026-11-10T09:00:00Z")).is_ok());
}

#[test]
fn each_cause_has_its_code() {
    assert_eq!(code("{"), Code::MalformedJson);
    assert_eq!(code(r#"{"product":"x"}"#), Code::MissingField);
    assert_eq!(code(&qt("").replace("PRD-200-200-002", "PRD-404")), Code::UnknownProduct);
    assert_eq!(code(&qt("").replace("AS-1000-0719-1201", "AS-1000-7919-0001")), Code::UnknownAsset);
    assert_eq!(code(&qt("").replace("FL-DATA-MB", "FL-NOPE")), Code::UnknownItem);
    assert_eq!(code(&qt("").replace("FL-DATA-MB", "FL-SMS")), Code::PrecisionExceeded);
    assert_eq!(code(&qt("").replace("\"10.25\"", "\"-1\"")), Code::NegativeValue);
    assert_eq!(code(&qt("").replace("\"10.25\"", "\"5000000000000\"")), Code::AbsurdValue);
    assert_eq!(code(&qt("").replace("\"10.25\"", "\"ten\"")), Code::InvalidField);
    assert_eq!(code(&qt(r#","amount":"1.00""#)), Code::AmountNotAllowed);
    assert_eq!(code(&tr("").replace(r#""amount":"0.40","#, "")), Code::AmountRequired);
    assert_eq!(code(&tr("").replace(r#","tier":0"#, "")), Code::TierRequired);
    assert_eq!(code(&tr("").replace(r#""tier":0"#, r#""tier":3"#)), Code::InvalidTier);
    assert_eq!(code(&qt(r#","tier":1"#)), Code::InvalidTier);
    assert_eq!(
        code(&qt(r#","start_time":"2026-11-25T09:00:00Z","end_time":"2026-11-24T09:00:00Z""#)),
        Code::InvalidTime
    );
    assert_eq!(code(&qt("").replace("2026-11-25T09:00:00Z", "yesterday")), Code::InvalidTime);
    // Vaultline Backup has no late charges: five days old is late.
    let backup = r#"{"id":"e","product":"PRD-300-300-003","asset_id":"AS-1000-3519-2401","item_mpn":"VL-BKP-GB","quantity":"1","amount":"1","time":"2026-11-20T09:00:00Z"}"#;
    assert_eq!(code(backup), Code::LateEvent);
    // Terminated on 2026-10-31.
    assert_eq!(code(&qt("").replace("AS-1000-0719-1201", "AS-1000-1111-1369")), Code::AssetTerminated);
    // Too old even with late charges.
    assert_eq!(code(&qt("").replace("2026-11-25T09:00:00Z", "2026-06-01T09:00:00Z")), Code::LateEvent);
    // The future: Fieldlink has no future charges.
    assert_eq!(code(&qt("").replace("2026-11-25T09:00:00Z", "2026-11-26T09:00:00Z")), Code::FutureEvent);
}

#[test]
fn rejections_name_the_item_and_value() {
    let r = check(&qt("").replace("FL-DATA-MB", "FL-SMS").replace("\"10.25\"", "\"3.5\"")).unwrap_err();
    assert_eq!(r.reason, "quantity 3.5 of item FL-SMS has 1 decimal place(s); the item's precision allows 0");
    let r = check(&qt("").replace("AS-1000-0719-1201", "AS-X")).unwrap_err();
    assert_eq!(r.reason, "asset `AS-X` is not an asset of product PRD-200-200-002");
}
