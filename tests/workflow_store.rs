//! The durable usage-file workflow on a real object store: the local filesystem and the
//! S3-compatible server. Concurrent writers race for each step and exactly one wins.

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::{NaiveDate, TimeZone, Utc};
use object_store::{ObjectStore, ObjectStoreExt};
use usageflow_model::{
    Actor, Environment, FileChange, FileStatus, FileUpdate, NewFile, Period, Ref, ReportingSchema, StoredObject,
    WorkflowError,
};
use usageflow_workflow::{CreateRequest, Error, FileIndex, FixedClock, WorkflowStore};

const VENDOR: &str = "VA-100-001";
const PROVIDER: &str = "PA-200-001";

fn r(id: &str) -> Ref {
    Ref { id: id.to_owned(), name: format!("{id} name") }
}

fn vendor() -> Actor {
    Actor::vendor(VENDOR, r("SU-vendor"))
}

fn provider() -> Actor {
    Actor::provider(PROVIDER, r("SU-provider"))
}

fn request(key: &str) -> CreateRequest {
    CreateRequest {
        file: NewFile {
            id: String::new(),
            name: "2026-11".to_owned(),
            description: String::new(),
            note: String::new(),
            external_id: String::new(),
            schema: ReportingSchema::Qt,
            currency: None,
            period: Period {
                from: NaiveDate::from_ymd_opt(2026, 11, 1).unwrap(),
                to: NaiveDate::from_ymd_opt(2026, 11, 30).unwrap(),
            },
            period_from_records: false,
            environment: Environment::Production,
            vendor: r(VENDOR),
            provider: r(PROVIDER),
            marketplace: r("MP-00001"),
            contract: r("CRD-00001-00001-00001"),
            product: r("PRD-100-100-100"),
            corrects: None,
        },
        idempotency_key: key.to_owned(),
    }
}

fn workflow(store: Arc<dyn ObjectStore>) -> WorkflowStore {
    WorkflowStore::new(store, Arc::new(FixedClock::new(Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap())))
}

/// Takes a new file to `ready`.
async fn ready_file(wf: &WorkflowStore, key: &str) -> String {
    let file = wf.create(request(key), &vendor()).await.unwrap();
    let object =
        StoredObject { path: "uploads/x.xlsx".into(), size: 10, sha256: "ab".into(), filename: "x.xlsx".into() };
    wf.act(&file.id, FileChange::Upload { object }, &vendor()).await.unwrap();
    wf.act(&file.id, FileChange::Stored, &Actor::system()).await.unwrap();
    wf.act(&file.id, FileChange::ProcessingStarted, &Actor::system()).await.unwrap();
    let processed = FileChange::Processed { valid: 3, invalid: 0, error_detail: None, processed: None, period: None };
    let f = wf.act(&file.id, processed, &Actor::system()).await.unwrap();
    assert_eq!(f.status, FileStatus::Ready);
    file.id
}

async fn lifecycle_and_audit_trail(store: Arc<dyn ObjectStore>) {
    let wf = workflow(store);
    let id = ready_file(&wf, "lifecycle").await;
    wf.act(&id, FileChange::Submit, &vendor()).await.unwrap();
    let f = wf.act(&id, FileChange::Accept { note: "fine".into(), rejected_records: 0 }, &provider()).await.unwrap();
    assert_eq!(f.status, FileStatus::Accepted);

    let err = wf.act(&id, FileChange::Delete, &vendor()).await.unwrap_err();
    assert!(
        matches!(&err, Error::Workflow(WorkflowError::IllegalTransition { status: FileStatus::Accepted, .. })),
        "{err}"
    );
    assert!(err.to_string().contains("report corrections in a new file for the same period"), "{err}");

    let (state, log) = wf.history(&id).await.unwrap();
    assert_eq!(state, wf.get(&id).await.unwrap());
    let steps: Vec<_> = log.iter().map(|e| e.change.action()).collect();
    use usageflow_model::FileAction as A;
    assert_eq!(steps, vec![A::Create, A::Upload, A::Stored, A::ProcessingStarted, A::Processed, A::Submit, A::Accept]);
    assert_eq!(log[6].actor.by.as_ref().unwrap().id, "SU-provider");
    assert_eq!(wf.list_ids().await.unwrap(), vec![id.clone()]);
    assert_eq!(wf.list().await.unwrap(), vec![state]);

    // Creating with a key returns the file it made only while the vendor may still change that
    // file: the accepted one is not returned, a new file is made, and that one is returned to a
    // retry while it is a draft. Another key, another file.
    let again = wf.create(request("lifecycle"), &vendor()).await.unwrap();
    assert_ne!(again.id, id);
    assert_eq!(again.status, FileStatus::Draft);
    assert_eq!(wf.create(request("lifecycle"), &vendor()).await.unwrap().id, again.id);
    let other = wf.create(request("another"), &vendor()).await.unwrap();
    assert!(other.id != id && other.id != again.id);
    assert_eq!(wf.list_ids().await.unwrap().len(), 3);
}

/// Runs `n` writers at once, each on its own task, and returns their outcomes.
async fn race(
    wf: &WorkflowStore,
    id: &str,
    n: usize,
    make: impl Fn(usize) -> (FileChange, Actor),
) -> Vec<Result<usageflow_model::UsageFile, Error>> {
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let (wf, id, (change, actor)) = (wf.clone(), id.to_owned(), make(i));
            tokio::spawn(async move { wf.act(&id, change, &actor).await })
        })
        .collect();
    let mut out = Vec::new();
    for task in tasks {
        out.push(task.await.unwrap());
    }
    out
}

async fn concurrent_writers_one_wins_per_step(store: Arc<dyn ObjectStore>) {
    let wf = workflow(store);
    let id = ready_file(&wf, "race").await;

    // Eight vendors' integrations submit the same ready file at once: one wins.
    let results = race(&wf, &id, 8, |_| (FileChange::Submit, vendor())).await;
    let wins = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(wins, 1, "{results:?}");
    for err in results.iter().filter_map(|r| r.as_ref().err()) {
        assert!(err.to_string().contains("in status pending: it is submitted already"), "{err}");
    }

    // Accept and reject race: exactly one decision is recorded.
    let decisions = race(&wf, &id, 8, |i| {
        let change = if i % 2 == 0 {
            FileChange::Accept { note: "ok".into(), rejected_records: 0 }
        } else {
            FileChange::Reject { note: "no".into() }
        };
        (change, provider())
    })
    .await;
    let winners: Vec<_> = decisions.iter().filter_map(|x| x.as_ref().ok()).collect();
    assert_eq!(winners.len(), 1);
    let final_state = wf.get(&id).await.unwrap();
    assert_eq!(final_state.status, winners[0].status);
    let (_, log) = wf.history(&id).await.unwrap();
    assert_eq!(log.len(), 7, "create, upload, stored, processing, processed, submit, one decision");

    // Steps that are all legal are all kept, each as its own event: no update is lost.
    let id2 = wf.create(request("race-updates"), &vendor()).await.unwrap().id;
    let results = race(&wf, &id2, 6, |i| {
        (FileChange::Update(FileUpdate { description: Some(format!("edit {i}")), ..FileUpdate::default() }), vendor())
    })
    .await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let (state, log) = wf.history(&id2).await.unwrap();
    assert_eq!(log.len(), 7);
    let seqs: BTreeSet<u64> = log.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=7).collect());
    assert_eq!(state.version, 7);
}

async fn damaged_logs_are_reported(store: Arc<dyn ObjectStore>) {
    use object_store::{ObjectStoreExt, PutPayload};
    let wf = workflow(store.clone());
    let id = wf.create(request("damaged"), &vendor()).await.unwrap().id;
    let path = usageflow_lake::paths::file_event(&id, 2);
    store.put(&path, PutPayload::from_static(b"{not json")).await.unwrap();
    let err = wf.history(&id).await.unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains(&format!("{id}/events/0000000002.json")), "{err}");
    let err = wf.get("UF-2026-11-0000-0000").await.unwrap_err();
    assert_eq!(err.to_string(), "usage file UF-2026-11-0000-0000 does not exist");
}

fn status_in(files: &[usageflow_model::UsageFile], id: &str) -> Option<FileStatus> {
    files.iter().find(|f| f.id == id).map(|f| f.status)
}

/// The index serves listings from memory and follows changes made by other writers, across
/// hours and with a writer whose clock runs behind; a lost marker is caught by the full reload.
async fn index_follows_other_writers(store: Arc<dyn ObjectStore>) {
    let start = Utc.with_ymd_and_hms(2026, 11, 25, 12, 59, 0).unwrap();
    let index_clock = Arc::new(FixedClock::new(start));
    let index = FileIndex::new(WorkflowStore::new(store.clone(), index_clock.clone()))
        .with_follow_every(std::time::Duration::ZERO);
    let writer = workflow(store.clone());
    let first = ready_file(&writer, "index-first").await;
    let files = index.files().await.unwrap();
    assert_eq!(files.len(), 1);
    assert_eq!(status_in(&files, &first), Some(FileStatus::Ready));

    // Another process submits (its clock is behind the index's) and creates a second file.
    let behind_clock = Arc::new(FixedClock::new(start - chrono::Duration::seconds(50)));
    let behind = WorkflowStore::new(store.clone(), behind_clock);
    behind.act(&first, FileChange::Submit, &vendor()).await.unwrap();
    let second = ready_file(&behind, "index-second").await;
    index_clock.advance(chrono::Duration::seconds(30));
    let files = index.files().await.unwrap();
    assert_eq!(status_in(&files, &first), Some(FileStatus::Pending));
    assert_eq!(status_in(&files, &second), Some(FileStatus::Ready));

    // Across the hour boundary (markers are listed per minute).
    let later = Arc::new(FixedClock::new(start + chrono::Duration::minutes(2)));
    WorkflowStore::new(store.clone(), later)
        .act(&first, FileChange::Accept { note: "ok".into(), rejected_records: 0 }, &provider())
        .await
        .unwrap();
    index_clock.advance(chrono::Duration::minutes(2));
    let files = index.files().await.unwrap();
    assert_eq!(status_in(&files, &first), Some(FileStatus::Accepted));
    assert_eq!(files.len(), 2);

    // A change whose marker is lost is invisible to following, then seen by the full reload.
    behind.act(&second, FileChange::Submit, &vendor()).await.unwrap();
    let markers: Vec<object_store::ObjectMeta> =
        futures::TryStreamExt::try_collect(store.list(Some(&object_store::path::Path::from("workflow/changes"))))
            .await
            .unwrap();
    let lost =
        markers.iter().find(|m| m.location.as_ref().contains(&second) && m.location.as_ref().ends_with("0000000006"));
    store.delete(&lost.expect("the submit's marker").location).await.unwrap();
    index_clock.advance(chrono::Duration::seconds(1));
    assert_eq!(status_in(&index.files().await.unwrap(), &second), Some(FileStatus::Ready));
    let reloading = FileIndex::new(WorkflowStore::new(store, index_clock)).with_full_reload(std::time::Duration::ZERO);
    assert_eq!(status_in(&reloading.files().await.unwrap(), &second), Some(FileStatus::Pending));
}

/// Changes made through the index's own store show at once, without waiting for the feed.
async fn index_sees_its_own_writes_at_once(store: Arc<dyn ObjectStore>) {
    let own = workflow(store.clone());
    let index = FileIndex::new(own.clone()).with_follow_every(std::time::Duration::from_secs(3600));
    let id = ready_file(&own, "own-writes").await;
    assert_eq!(status_in(&index.files().await.unwrap(), &id), Some(FileStatus::Ready));
    own.act(&id, FileChange::Submit, &vendor()).await.unwrap();
    // Another process's change waits for the next look at the feed (an hour away here).
    let other = workflow(store).create(request("other-process"), &vendor()).await.unwrap();
    let files = index.files().await.unwrap();
    assert_eq!(status_in(&files, &id), Some(FileStatus::Pending));
    assert_eq!(status_in(&files, &other.id), None);
}

fn local() -> (tempfile::TempDir, Arc<dyn ObjectStore>) {
    let dir = tempfile::tempdir().unwrap();
    let store = usageflow_lake::open_store(&usageflow_lake::StoreConfig::local(dir.path())).unwrap();
    (dir, store)
}

fn s3(prefix: &str) -> Arc<dyn ObjectStore> {
    usageflow_lake::open_store(&support::s3_store_config(prefix)).unwrap()
}

#[tokio::test]
async fn local_lifecycle_and_audit_trail() {
    let (_dir, store) = local();
    lifecycle_and_audit_trail(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn local_concurrent_writers_one_wins_per_step() {
    let (_dir, store) = local();
    concurrent_writers_one_wins_per_step(store).await;
}

#[tokio::test]
async fn local_damaged_logs_are_reported() {
    let (_dir, store) = local();
    damaged_logs_are_reported(store).await;
}

#[tokio::test]
async fn s3_lifecycle_and_audit_trail() {
    lifecycle_and_audit_trail(s3("wf-life")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s3_concurrent_writers_one_wins_per_step() {
    concurrent_writers_one_wins_per_step(s3("wf-race")).await;
}

#[tokio::test]
async fn s3_damaged_logs_are_reported() {
    damaged_logs_are_reported(s3("wf-damaged")).await;
}

#[tokio::test]
async fn local_index_follows_other_writers() {
    let (_dir, store) = local();
    index_follows_other_writers(store).await;
}

#[tokio::test]
async fn s3_index_follows_other_writers() {
    index_follows_other_writers(s3("wf-index")).await;
}

#[tokio::test]
async fn local_index_sees_its_own_writes_at_once() {
    let (_dir, store) = local();
    index_sees_its_own_writes_at_once(store).await;
}
