//! The file workflow with its documents, on a local store: create after the prerequisite
//! checks, upload → processed file → ready or invalid, then review.

use std::path::Path;
use std::sync::Arc;

use chrono::{NaiveDate, TimeZone, Utc};
use usageflow_files::{CreateFile, FileService, ReadLimits, ServiceError, read_workbook};
use usageflow_model::{Actor, FileChange, FileStatus, Period, Ref};
use usageflow_workflow::{FixedClock, WorkflowStore};

fn service(dir: &Path) -> FileService {
    let store = usageflow_lake::open_store(&usageflow_lake::StoreConfig::local(dir)).unwrap();
    let clock = Arc::new(FixedClock::new(Utc.with_ymd_and_hms(2026, 12, 1, 9, 0, 0).unwrap()));
    let catalogue = usageflow_catalog::load_dir(
        &Path::new(&std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo")).join("../../config/catalog"),
    )
    .unwrap();
    FileService::new(store.clone(), WorkflowStore::new(store, clock), Arc::new(catalogue))
}

fn vendor() -> Actor {
    Actor::vendor("VA-200-002", Ref { id: "SU-1".into(), name: "Fieldlink billing".into() })
}

fn provider() -> Actor {
    Actor::provider("PA-500-001", Ref { id: "SU-2".into(), name: "Northwind usage desk".into() })
}

fn request() -> CreateFile {
    CreateFile {
        product: "PRD-200-200-002".into(),
        contract: "CRD-20001-10001-00001".into(),
        period: Some(Period {
            from: NaiveDate::from_ymd_opt(2026, 11, 1).unwrap(),
            to: NaiveDate::from_ymd_opt(2026, 11, 30).unwrap(),
        }),
        name: None,
        description: "November".into(),
        note: String::new(),
        external_id: "fieldlink-2026-11".into(),
        currency: None,
        corrects: None,
    }
}

fn workbook(rows: &[[&str; 8]]) -> Vec<u8> {
    let columns = usageflow_files::REQUIRED_COLUMNS;
    let rows: Vec<Vec<&str>> = rows.iter().map(|r| r.to_vec()).collect();
    usageflow_files::write_workbook(&[], &[], &columns, &rows).unwrap()
}

#[tokio::test]
async fn upload_process_submit_accept() {
    let dir = tempfile::tempdir().unwrap();
    let svc = service(dir.path());
    let file = svc.create(&vendor(), request()).await.unwrap();
    assert_eq!((file.status, file.name.as_str()), (FileStatus::Draft, "11/01/2026 - 11/30/2026"));
    assert_eq!(file.provider.id, "PA-500-001");
    // The same request again (a retry): the same file. The same external id for another
    // period: another file.
    assert_eq!(svc.create(&vendor(), request()).await.unwrap().id, file.id);
    let mut second_half = request();
    second_half.period =
        Some(Period { from: NaiveDate::from_ymd_opt(2026, 11, 16).unwrap(), ..second_half.period.unwrap() });
    let other = svc.create(&vendor(), second_half).await.unwrap();
    assert_ne!(other.id, file.id);
    assert_eq!(other.period.from.to_string(), "2026-11-16");

    // An invalid upload: the processed file says which rows and why.
    let bad = workbook(&[
        [
            "r1",
            "item.mpn",
            "FL-SMS",
            "2",
            "2026-11-01 00:00:00",
            "2026-11-01 23:59:59",
            "asset.id",
            "AS-1000-0719-1201",
        ],
        [
            "r2",
            "item.mpn",
            "FL-SMS",
            "2.5",
            "2026-11-01 00:00:00",
            "2026-11-01 23:59:59",
            "asset.id",
            "AS-1000-0719-1201",
        ],
    ]);
    let outcome = svc.upload(&vendor(), &file.id, "nov.xlsx", bad).await.unwrap();
    assert_eq!(outcome.file.status, FileStatus::Invalid);
    assert_eq!((outcome.file.records.valid, outcome.file.records.invalid), (1, 1));
    assert_eq!(outcome.file.error_detail.as_deref(), Some("1 of 2 records are invalid; see the processed file"));
    let processed = svc.document(outcome.file.processed_file.as_ref().unwrap()).await.unwrap();
    let book = read_workbook(&processed, &ReadLimits::default()).unwrap();
    assert_eq!(book.general["report_id"], file.id);
    assert_eq!(book.general["invalid_records"], "1");
    assert_eq!(book.records[0].get("status"), Some("valid"));
    assert_eq!(book.records[1].get("status"), Some("invalid"));
    assert!(
        book.records[1].get("error").unwrap().starts_with("quantity: quantity 2.5 of item FL-SMS"),
        "{:?}",
        book.records[1]
    );

    // Submitting an invalid file is refused with the reason.
    let err = svc.workflow().act(&file.id, FileChange::Submit, &vendor()).await.unwrap_err();
    assert!(err.to_string().contains("fix them and upload again"), "{err}");

    // A corrupt upload: invalid, with the reader's reason.
    let outcome = svc.upload(&vendor(), &file.id, "broken.xlsx", b"not a workbook".to_vec()).await.unwrap();
    assert_eq!(outcome.file.status, FileStatus::Invalid);
    assert!(outcome.file.error_detail.as_deref().unwrap().contains("not an XLSX workbook"));

    // A valid upload, then the review.
    let good = workbook(&[
        [
            "r1",
            "item.mpn",
            "FL-SMS",
            "2",
            "2026-11-01 00:00:00",
            "2026-11-01 23:59:59",
            "asset.id",
            "AS-1000-0719-1201",
        ],
        [
            "r2",
            "item.mpn",
            "FL-DATA-MB",
            "2.5",
            "2026-11-02 00:00:00",
            "2026-11-02 23:59:59",
            "asset.id",
            "AS-1000-0719-1201",
        ],
    ]);
    let outcome = svc.upload(&vendor(), &file.id, "nov-fixed.xlsx", good).await.unwrap();
    assert_eq!(outcome.file.status, FileStatus::Ready);
    assert_eq!(outcome.file.stats.validated, 2);
    svc.workflow().act(&file.id, FileChange::Submit, &vendor()).await.unwrap();
    let accepted = svc
        .workflow()
        .act(&file.id, FileChange::Accept { note: "ok".into(), rejected_records: 0 }, &provider())
        .await
        .unwrap();
    assert_eq!((accepted.status, accepted.stats.accepted), (FileStatus::Accepted, 2));

    // After acceptance the vendor cannot upload again.
    let err = svc.upload(&vendor(), &file.id, "late.xlsx", workbook(&[])).await.unwrap_err();
    assert!(matches!(err, ServiceError::Workflow(_)), "{err}");
    assert!(err.to_string().contains("report corrections in a new file"), "{err}");
    // The same request as the accepted file's now makes a new file.
    let again = svc.create(&vendor(), request()).await.unwrap();
    assert_ne!(again.id, file.id);
    assert_eq!(again.status, FileStatus::Draft);
}

#[tokio::test]
async fn a_file_without_a_period_covers_its_records_and_a_whole_file_problem_is_every_rows() {
    let dir = tempfile::tempdir().unwrap();
    let svc = service(dir.path());
    let mut req = request();
    req.period = None;
    req.name = Some("hourly".into());
    let file = svc.create(&vendor(), req).await.unwrap();
    assert!(file.period_from_records);
    let row = |id: &'static str, day: &'static str, end: &'static str| {
        [id, "item.mpn", "FL-SMS", "2", day, end, "asset.id", "AS-1000-0719-1201"]
    };
    let outcome = svc
        .upload(
            &vendor(),
            &file.id,
            "f.xlsx",
            workbook(&[
                row("r1", "2026-10-30T10:00:00Z", "2026-10-30 11:00:00"),
                row("r2", "2026-11-02 00:00:00", "2026-11-03T00:00:00+00:00"),
            ]),
        )
        .await
        .unwrap();
    assert_eq!(outcome.file.status, FileStatus::Ready, "{:?}", outcome.validation.errors);
    assert_eq!(outcome.file.period.from.to_string(), "2026-10-30");
    assert_eq!(outcome.file.period.to.to_string(), "2026-11-03");
    // Times are written back in Connect's form.
    let processed = svc.document(outcome.file.processed_file.as_ref().unwrap()).await.unwrap();
    let book = read_workbook(&processed, &ReadLimits::default()).unwrap();
    assert_eq!(book.records[0].get("start_time_utc"), Some("2026-10-30 10:00:00"));
    assert_eq!(book.records[1].get("end_time_utc"), Some("2026-11-03 00:00:00"));
    // Submitted, the period is the file's own.
    let submitted = svc.submit(&vendor(), &file.id).await.unwrap();
    assert!(!submitted.period_from_records);

    // A workbook without a required column: every row says why, and none is a record.
    let file = svc.create(&vendor(), request()).await.unwrap();
    let mut book = rust_xlsxwriter::Workbook::new();
    let sheet = book.add_worksheet().set_name("records").unwrap();
    for (c, h) in ["record_id", "item_search_criteria", "item_search_value", "quantity"].iter().enumerate() {
        sheet.write_string(0, c as u16, *h).unwrap();
        sheet.write_string(1, c as u16, ["r1", "item.mpn", "FL-SMS", "1"][c]).unwrap();
        sheet.write_string(2, c as u16, ["r2", "item.mpn", "FL-SMS", "1"][c]).unwrap();
    }
    let outcome = svc.upload(&vendor(), &file.id, "f.xlsx", book.save_to_buffer().unwrap()).await.unwrap();
    assert_eq!(outcome.file.status, FileStatus::Invalid);
    assert_eq!((outcome.file.records.valid, outcome.file.records.invalid), (0, 2));
    let processed = svc.document(outcome.file.processed_file.as_ref().unwrap()).await.unwrap();
    let book = read_workbook(&processed, &ReadLimits::default()).unwrap();
    assert!(book.general["error_1"].contains("lacks the column(s) `start_time_utc`"), "{:?}", book.general);
    for r in &book.records {
        assert_eq!(r.get("status"), Some("invalid"));
        assert!(r.get("error").unwrap().starts_with("file: sheet `records` lacks the column(s)"), "{r:?}");
    }
    assert!(svc.record_ids(&outcome.file).await.unwrap().is_empty(), "an invalid upload has no records");
}

#[tokio::test]
async fn prerequisites_are_checked_on_create() {
    let dir = tempfile::tempdir().unwrap();
    let svc = service(dir.path());
    let mut req = request();
    req.contract = "CRD-20001-10003-00001".into();
    let err = svc.create(&vendor(), req).await.unwrap_err();
    assert_eq!(err.to_string(), "distribution contract CRD-20001-10003-00001 is terminated, not active");
}

#[tokio::test]
async fn accepting_generates_chunks_per_hub_that_the_provider_closes() {
    use usageflow_model::{ChunkStatus, ChunkStep};
    let dir = tempfile::tempdir().unwrap();
    let svc = service(dir.path());
    let file = svc.create(&vendor(), request()).await.unwrap();
    let good = workbook(&[
        [
            "r1",
            "item.mpn",
            "FL-SMS",
            "2",
            "2026-11-01 00:00:00",
            "2026-11-01 23:59:59",
            "asset.id",
            "AS-1000-0719-1201",
        ],
        [
            "r2",
            "item.mpn",
            "FL-DATA-MB",
            "2.5",
            "2026-11-02 00:00:00",
            "2026-11-02 23:59:59",
            "asset.id",
            "AS-1000-8638-1202",
        ],
    ]);
    svc.upload(&vendor(), &file.id, "nov.xlsx", good).await.unwrap();
    svc.workflow().act(&file.id, FileChange::Submit, &vendor()).await.unwrap();
    svc.accept(&provider(), &file.id, "fine").await.unwrap();

    let chunks = svc.chunks(&file.id).await.unwrap();
    assert_eq!(chunks.len(), 1, "both assets are billed through one hub");
    let chunk = &chunks[0];
    assert!(chunk.id.starts_with("UFC-2026-11-") && chunk.id.ends_with("-0001"), "{}", chunk.id);
    assert_eq!(
        (chunk.status, chunk.binding.hub.id.as_str(), chunk.stats.accepted),
        (ChunkStatus::Ready, "HB-0001-0001", 2)
    );
    let book =
        read_workbook(&svc.document(chunk.document.as_ref().unwrap()).await.unwrap(), &ReadLimits::default()).unwrap();
    assert_eq!(book.general["hub_id"], "HB-0001-0001");
    assert_eq!(book.records.len(), 2);
    let ur = book.records[0].get("record_id").unwrap();
    usageflow_model::ids::check_record_id(ur).unwrap();
    assert_eq!(book.records[0].get("vendor_record_id"), Some("r1"));
    // Generating again changes nothing.
    assert_eq!(svc.generate_chunks(&file.id).await.unwrap()[0].id, chunk.id);

    let err = svc
        .chunk_step(
            &vendor(),
            &chunk.id,
            ChunkStep::Close { external_billing_id: "B-1".into(), external_billing_note: String::new() },
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("only the chunk's provider"), "{err}");
    let err = svc
        .chunk_step(
            &provider(),
            &chunk.id,
            ChunkStep::Close { external_billing_id: " ".into(), external_billing_note: String::new() },
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("an external_billing_id is required"), "{err}");
    let closed = svc
        .chunk_step(
            &provider(),
            &chunk.id,
            ChunkStep::Close { external_billing_id: "BATCH-77".into(), external_billing_note: "billed".into() },
        )
        .await
        .unwrap();
    assert_eq!(
        (closed.status, closed.external_billing_id.as_deref(), closed.stats.closed),
        (ChunkStatus::Closed, Some("BATCH-77"), 2)
    );
    assert_eq!(svc.chunk(&chunk.id).await.unwrap(), closed);
    let err = svc.chunk_step(&provider(), &chunk.id, ChunkStep::Regenerate).await.unwrap_err();
    assert!(err.to_string().contains("only ready or failed chunks can be regenerated"), "{err}");
}

fn rule(
    id: &str,
    action: usageflow_model::RuleAction,
    scope: usageflow_model::RuleScope,
    text: &str,
    gravity: i64,
) -> usageflow_model::UsageRule {
    usageflow_model::UsageRule {
        id: id.into(),
        product_id: "PRD-200-200-002".into(),
        account_id: "PA-500-001".into(),
        item: None,
        action,
        scope,
        rule: Some(text.into()),
        status: usageflow_model::RuleStatus::Active,
        gravity,
        created_at: Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap(),
    }
}

#[tokio::test]
async fn usage_rules_decide_on_submit() {
    use usageflow_model::{RuleAction, RuleScope};
    let dir = tempfile::tempdir().unwrap();
    let svc = service(dir.path());
    let rows = [
        [
            "r1",
            "item.mpn",
            "FL-SMS",
            "20",
            "2026-11-01 00:00:00",
            "2026-11-01 23:59:59",
            "asset.id",
            "AS-1000-0719-1201",
        ],
        [
            "r2",
            "item.mpn",
            "FL-DATA-MB",
            "250.5",
            "2026-11-02 00:00:00",
            "2026-11-02 23:59:59",
            "asset.id",
            "AS-1000-8638-1202",
        ],
    ];
    let ready = |key: &'static str| {
        let svc = svc.clone();
        async move {
            let mut req = request();
            req.external_id = key.into();
            let file = svc.create(&vendor(), req).await.unwrap();
            svc.upload(&vendor(), &file.id, "f.xlsx", workbook(&rows)).await.unwrap();
            file.id
        }
    };

    // A bad rule is refused, and only providers set rules.
    let bad = vec![rule("R-0", RuleAction::Accept, RuleScope::Record, "total_quantity < 5", 0)];
    let err = svc.set_rules(&provider(), "PRD-200-200-002", bad).await.unwrap_err();
    assert!(err.to_string().contains("`total_quantity` is not a record field"), "{err}");
    assert!(svc.set_rules(&vendor(), "PRD-200-200-002", vec![]).await.is_err());

    // Accept when every record is at most 1000.
    let accept = rule("R-1", RuleAction::Accept, RuleScope::Record, "quantity <= 1000", 10);
    svc.set_rules(&provider(), "PRD-200-200-002", vec![accept.clone()]).await.unwrap();
    let id = ready("a").await;
    let file = svc.submit(&vendor(), &id).await.unwrap();
    assert_eq!(file.status, FileStatus::Accepted);
    assert_eq!(file.acceptance_note.as_deref(), Some("Auto Approved by usage rule R-1"));
    assert!(file.events.accepted.as_ref().unwrap().by.is_none(), "accepted by the system");
    assert_eq!(svc.chunks(&id).await.unwrap().len(), 1);

    // A reject rule on the file's totals wins over the accept rule.
    let reject = rule("R-2", RuleAction::Reject, RuleScope::File, "total_quantity > 200", 0);
    svc.set_rules(&provider(), "PRD-200-200-002", vec![accept.clone(), reject]).await.unwrap();
    let id = ready("b").await;
    let file = svc.submit(&vendor(), &id).await.unwrap();
    assert_eq!(file.status, FileStatus::Rejected);
    assert!(
        file.rejection_note
            .as_deref()
            .unwrap()
            .starts_with("Auto Rejected: usage rule R-2 (total_quantity > 200) matched")
    );

    // A manual rule that matches leaves the file for a person.
    let manual = rule("R-3", RuleAction::Manual, RuleScope::Record, "quantity > 100", 0);
    svc.set_rules(&provider(), "PRD-200-200-002", vec![accept, manual]).await.unwrap();
    let id = ready("c").await;
    assert_eq!(svc.submit(&vendor(), &id).await.unwrap().status, FileStatus::Pending);
}
