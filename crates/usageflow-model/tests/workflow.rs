//! The usage-file state machine against the transition table of the Connect usage module
//! (shared/spec/connect-usage.md §4.2), written out here independently of the code.

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use proptest::prelude::*;
use usageflow_model::*;

const VENDOR: &str = "VA-000-001";
const PROVIDER: &str = "PA-000-001";
const FILE: &str = "UF-2026-11-0001-0002";

/// (from, action, roles, to): `None` from = new file; `None` to = same status.
type Row = (Option<FileStatus>, FileAction, &'static [ActorRole], Option<FileStatus>);

fn table() -> Vec<Row> {
    use ActorRole::*;
    use FileAction as A;
    use FileStatus::*;
    let mut rows = vec![(None, A::Create, &[Vendor][..], Some(Draft))];
    for from in [Draft, Invalid, Ready, Rejected] {
        rows.push((Some(from), A::Upload, &[Vendor][..], Some(Uploading)));
        rows.push((Some(from), A::Update, &[Vendor][..], None));
        rows.push((Some(from), A::Delete, &[Vendor][..], Some(Deleted)));
    }
    rows.push((Some(Uploading), A::Stored, &[System][..], Some(Uploaded)));
    rows.push((Some(Uploaded), A::ProcessingStarted, &[System][..], Some(Processing)));
    // Processed goes to ready or invalid depending on the outcome; checked separately.
    rows.push((Some(Processing), A::Processed, &[System][..], None));
    rows.push((Some(Ready), A::Submit, &[Vendor][..], Some(Pending)));
    rows.push((Some(Pending), A::Accept, &[Provider, System][..], Some(Accepted)));
    rows.push((Some(Pending), A::Reject, &[Provider, System][..], Some(Rejected)));
    rows.push((Some(Pending), A::ApproveAll, &[Provider][..], None));
    rows.push((Some(Accepted), A::Close, &[Provider, System][..], Some(Closed)));
    rows.push((Some(Accepted), A::RecordsClosed, &[Provider, System][..], None));
    for from in [Accepted, Closed] {
        rows.push((Some(from), A::Reprocess, &[Provider][..], None));
        rows.push((Some(from), A::Reprocessed, &[System][..], None));
    }
    rows
}

fn at(minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).unwrap() + chrono::Duration::minutes(i64::from(minute))
}

fn r(id: &str) -> Ref {
    Ref { id: id.to_owned(), name: id.to_owned() }
}

fn new_file() -> NewFile {
    NewFile {
        id: FILE.to_owned(),
        name: "November 2026".to_owned(),
        description: String::new(),
        note: String::new(),
        external_id: "ext-1".to_owned(),
        schema: ReportingSchema::Tr,
        currency: Some("EUR".to_owned()),
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
        product: r("PRD-000-000-001"),
        corrects: None,
    }
}

fn actor(role: ActorRole) -> Actor {
    match role {
        ActorRole::Vendor => Actor::vendor(VENDOR, r("SU-vendor-user")),
        ActorRole::Provider => Actor::provider(PROVIDER, r("SU-provider-user")),
        ActorRole::System => Actor::system(),
    }
}

fn change_for(action: FileAction, invalid: u64) -> FileChange {
    let object = StoredObject { path: "x.xlsx".into(), size: 1, sha256: "00".into(), filename: "x.xlsx".into() };
    match action {
        FileAction::Create => FileChange::Create(Box::new(new_file())),
        FileAction::Update => FileChange::Update(FileUpdate { note: Some("n".into()), ..FileUpdate::default() }),
        FileAction::Upload => FileChange::Upload { object },
        FileAction::Stored => FileChange::Stored,
        FileAction::ProcessingStarted => FileChange::ProcessingStarted,
        FileAction::Processed => {
            FileChange::Processed { valid: 10, invalid, error_detail: None, processed: None, period: None }
        }
        FileAction::Submit => FileChange::Submit,
        FileAction::Accept => FileChange::Accept { note: "ok".into(), rejected_records: 0 },
        FileAction::Reject => FileChange::Reject { note: "wrong totals".into() },
        FileAction::ApproveAll => FileChange::ApproveAll,
        FileAction::RecordsClosed => FileChange::RecordsClosed { count: 0 },
        FileAction::Close => FileChange::Close,
        FileAction::Delete => FileChange::Delete,
        FileAction::Reprocess => FileChange::Reprocess,
        FileAction::Reprocessed => FileChange::Reprocessed { processed: None },
    }
}

struct Log {
    events: Vec<FileEvent>,
    state: Option<UsageFile>,
}

impl Log {
    fn new() -> Self {
        Self { events: Vec::new(), state: None }
    }

    fn step(&mut self, role: ActorRole, change: FileChange) -> Result<&UsageFile, WorkflowError> {
        let seq = self.events.len() as u64 + 1;
        let event = FileEvent { seq, at: at(seq as u32), actor: actor(role), change };
        let next = UsageFile::apply(self.state.clone(), &event)?;
        self.events.push(event);
        self.state = Some(next);
        Ok(self.state.as_ref().unwrap())
    }
}

#[test]
fn the_full_vendor_to_provider_path_records_who_and_when() {
    use ActorRole::*;
    let mut log = Log::new();
    log.step(Vendor, FileChange::Create(Box::new(new_file()))).unwrap();
    log.step(Vendor, change_for(FileAction::Upload, 0)).unwrap();
    log.step(System, FileChange::Stored).unwrap();
    log.step(System, FileChange::ProcessingStarted).unwrap();
    let f = log.step(System, change_for(FileAction::Processed, 0)).unwrap();
    assert_eq!(f.status, FileStatus::Ready);
    assert_eq!((f.stats.uploaded, f.stats.validated, f.records.valid), (10, 10, 10));
    let f = log.step(Vendor, FileChange::Submit).unwrap();
    assert_eq!((f.status, f.stats.pending, f.stats.validated), (FileStatus::Pending, 10, 0));
    let f = log.step(Provider, FileChange::Accept { note: "checked".into(), rejected_records: 0 }).unwrap();
    assert_eq!((f.status, f.stats.accepted), (FileStatus::Accepted, 10));
    assert_eq!(f.acceptance_note.as_deref(), Some("checked"));
    let f = log.step(Provider, FileChange::RecordsClosed { count: 4 }).unwrap();
    assert_eq!((f.stats.accepted, f.stats.closed, f.records.closed), (6, 4, 4));
    assert!(!f.should_auto_close());
    let f = log.step(System, FileChange::RecordsClosed { count: 6 }).unwrap();
    assert!(f.should_auto_close());
    let f = log.step(System, FileChange::Close).unwrap();
    assert_eq!((f.status, f.stats.closed, f.records.closed), (FileStatus::Closed, 10, 10));

    let f = log.state.clone().unwrap();
    assert_eq!(f.events.created.as_ref().unwrap().by.as_ref().unwrap().id, "SU-vendor-user");
    assert_eq!(f.events.created.as_ref().unwrap().at, at(1));
    assert_eq!(f.events.submitted.as_ref().unwrap().at, at(6));
    assert_eq!(f.events.accepted.as_ref().unwrap().by.as_ref().unwrap().id, "SU-provider-user");
    assert!(f.events.closed.as_ref().unwrap().by.is_none(), "the system closes without a `by`");
    assert_eq!(f.version, 10);
    // The state is the fold of the log.
    assert_eq!(UsageFile::replay(&log.events).unwrap().unwrap(), f);
    // Wire shape: lower-case statuses and schema, events keyed by step.
    let json = serde_json::to_value(&f).unwrap();
    assert_eq!(json["status"], "closed");
    assert_eq!(json["schema"], "tr");
    assert_eq!(json["events"]["accepted"]["by"]["id"], "SU-provider-user");
}

#[test]
fn illegal_steps_are_typed_errors_with_a_hint() {
    use ActorRole::*;
    let mut log = Log::new();
    log.step(Vendor, FileChange::Create(Box::new(new_file()))).unwrap();
    let err = log.step(Vendor, FileChange::Submit).unwrap_err();
    assert_eq!(err.to_string(), "cannot submit UF-2026-11-0001-0002 in status draft: upload a file first");
    let err = log.step(Provider, FileChange::Accept { note: String::new(), rejected_records: 0 }).unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot accept UF-2026-11-0001-0002 in status draft: only pending files can be reviewed; the vendor has not submitted it"
    );
    let err = log.step(Vendor, FileChange::Accept { note: String::new(), rejected_records: 0 }).unwrap_err();
    assert_eq!(
        err.to_string(),
        "only the provider or system may accept UF-2026-11-0001-0002; the caller acts as vendor"
    );
    let other_vendor = Actor::vendor("VA-999-999", r("SU-x"));
    let event = FileEvent { seq: 2, at: at(2), actor: other_vendor, change: FileChange::Delete };
    let err = UsageFile::apply(log.state.clone(), &event).unwrap_err();
    assert_eq!(
        err.to_string(),
        "account VA-999-999 may not delete UF-2026-11-0001-0002: the file's vendor is VA-000-001"
    );
    let err = log.step(Vendor, FileChange::Create(Box::new(new_file()))).unwrap_err();
    assert_eq!(err, WorkflowError::AlreadyExists { file: FILE.into() });
    // Nothing was applied by the refused steps.
    assert_eq!(log.state.as_ref().unwrap().version, 1);
    assert_eq!(log.state.as_ref().unwrap().status, FileStatus::Draft);
}

#[test]
fn payloads_are_validated() {
    use ActorRole::*;
    let mut bad = new_file();
    bad.currency = None;
    let err = Log::new().step(Vendor, FileChange::Create(Box::new(bad))).unwrap_err();
    assert!(err.to_string().contains("schema TR reports amounts, so the file needs a currency"), "{err}");
    let mut bad = new_file();
    bad.currency = Some("euro".into());
    assert!(Log::new().step(Vendor, FileChange::Create(Box::new(bad))).unwrap_err().to_string().contains("ISO 4217"));
    let mut bad = new_file();
    bad.name = "x".repeat(101);
    assert!(
        Log::new().step(Vendor, FileChange::Create(Box::new(bad))).unwrap_err().to_string().contains("at most 100")
    );
    let mut bad = new_file();
    bad.id = "UF-1".into();
    assert!(
        Log::new()
            .step(Vendor, FileChange::Create(Box::new(bad)))
            .unwrap_err()
            .to_string()
            .contains("UF-YYYY-MM-NNNN-NNNN")
    );

    let mut log = Log::new();
    log.step(Vendor, FileChange::Create(Box::new(new_file()))).unwrap();
    for change in [change_for(FileAction::Upload, 0), FileChange::Stored, FileChange::ProcessingStarted] {
        let role = if matches!(change, FileChange::Upload { .. }) { Vendor } else { System };
        log.step(role, change).unwrap();
    }
    let f = log.step(System, change_for(FileAction::Processed, 3)).unwrap();
    assert_eq!(f.status, FileStatus::Invalid);
    assert_eq!(f.error_detail.as_deref(), Some("3 of 13 records are invalid"));
    // Re-upload after invalid is allowed and resets the counters.
    let f = log.step(Vendor, change_for(FileAction::Upload, 0)).unwrap();
    assert_eq!((f.status, f.stats, f.error_detail.clone()), (FileStatus::Uploading, Stats::default(), None));
    log.step(System, FileChange::Stored).unwrap();
    log.step(System, FileChange::ProcessingStarted).unwrap();
    log.step(System, change_for(FileAction::Processed, 0)).unwrap();
    log.step(Vendor, FileChange::Submit).unwrap();
    let err = log.step(Provider, FileChange::Reject { note: "  ".into() }).unwrap_err();
    assert!(err.to_string().contains("say why the file is rejected"), "{err}");
    let f = log.step(Provider, FileChange::Reject { note: "quantities too high".into() }).unwrap();
    assert_eq!((f.status, f.stats.pending), (FileStatus::Rejected, 0));
}

/// A file in any status, for checking single steps.
fn file_in(status: FileStatus) -> UsageFile {
    let mut log = Log::new();
    log.step(ActorRole::Vendor, FileChange::Create(Box::new(new_file()))).unwrap();
    let mut file = log.state.unwrap();
    file.status = status;
    file.stats.accepted = 5;
    file
}

#[test]
fn the_engine_allows_exactly_the_table() {
    let table = table();
    for action in FileAction::ALL {
        for role in [ActorRole::Vendor, ActorRole::Provider, ActorRole::System] {
            let change = change_for(action, 0);
            // From "no file".
            let row = table.iter().find(|(from, a, _, _)| from.is_none() && *a == action);
            let got = UsageFile::check(None, &change, &actor(role));
            let want = row.filter(|(_, _, roles, _)| roles.contains(&role)).map(|(_, _, _, to)| to.unwrap());
            assert_eq!(got.ok(), want, "new file, {action:?} by {role:?}");
            for status in FileStatus::ALL {
                let file = file_in(status);
                let row = table.iter().find(|(from, a, _, _)| *from == Some(status) && *a == action);
                let got = UsageFile::check(Some(&file), &change, &actor(role));
                let want = row.filter(|(_, _, roles, _)| roles.contains(&role)).map(|(_, _, _, to)| {
                    to.unwrap_or(if action == FileAction::Processed { FileStatus::Ready } else { status })
                });
                assert_eq!(got.clone().ok(), want, "{status} {action:?} by {role:?}: {got:?}");
            }
        }
    }
}

/// A step: mostly one the table allows from the current status (so that sequences go deep),
/// sometimes any action by any role (so that refusals are exercised too).
fn arb_step() -> impl Strategy<Value = (bool, usize, FileAction, ActorRole, u64)> {
    (
        prop::bool::weighted(0.75),
        0usize..64,
        prop::sample::select(FileAction::ALL.to_vec()),
        prop::sample::select(vec![ActorRole::Vendor, ActorRole::Provider, ActorRole::System]),
        prop_oneof![Just(0u64), 1u64..5],
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// No sequence of actions reaches a status the table does not allow, every accepted step
    /// is a row of the table, counters stay consistent, and the log replays to the same state.
    #[test]
    fn random_action_sequences_stay_inside_the_table(steps in prop::collection::vec(arb_step(), 1..60)) {
        let table = table();
        let mut log = Log::new();
        for (from_table, pick, action, role, n) in steps {
            let current = log.state.as_ref().map(|f| f.status);
            let allowed: Vec<_> = table.iter().filter(|(from, ..)| *from == current).collect();
            let (action, role) = if from_table && !allowed.is_empty() {
                let (_, a, roles, _) = allowed[pick % allowed.len()];
                (*a, roles[pick % roles.len()])
            } else {
                (action, role)
            };
            let change = match action {
                FileAction::RecordsClosed => FileChange::RecordsClosed { count: n },
                _ => change_for(action, n),
            };
            let before = log.state.as_ref().map(|f| f.status);
            match log.step(role, change) {
                Ok(file) => {
                    let after = file.status;
                    let row = table.iter().find(|(from, a, roles, _)| *from == before && *a == action && roles.contains(&role));
                    prop_assert!(row.is_some(), "{before:?} --{action:?}/{role:?}--> {after} is not in the table");
                    let (_, _, _, to) = row.unwrap();
                    match (to, action) {
                        (Some(to), _) => prop_assert_eq!(after, *to),
                        (None, FileAction::Processed) => {
                            prop_assert!(matches!(after, FileStatus::Ready | FileStatus::Invalid))
                        }
                        (None, _) => prop_assert_eq!(Some(after), before),
                    }
                    let s = file.stats;
                    prop_assert!(s.validated + s.pending + s.accepted + s.closed <= file.records.valid);
                    prop_assert!(file.records.closed <= file.records.valid);
                }
                Err(err) => {
                    // A refused step changes nothing and names the file.
                    prop_assert_eq!(log.state.as_ref().map(|f| f.status), before);
                    if before.is_some() {
                        prop_assert!(err.to_string().contains(FILE), "{err}");
                    }
                }
            }
        }
        let replayed = UsageFile::replay(&log.events).unwrap();
        prop_assert_eq!(replayed, log.state);
    }
}

/// Walks the table for many steps (restarting after terminal statuses) and checks that the
/// engine follows it into every status, so the table-driven sequences above go deep.
#[test]
fn table_walks_reach_every_status() {
    let table = table();
    let mut reached = std::collections::BTreeSet::new();
    let mut seed: u64 = 0x5eed;
    let mut next = move || {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (seed >> 33) as usize
    };
    let mut log = Log::new();
    for _ in 0..5_000 {
        let current = log.state.as_ref().map(|f| f.status);
        let allowed: Vec<_> = table.iter().filter(|(from, ..)| *from == current).collect();
        if allowed.is_empty() {
            log = Log::new();
            continue;
        }
        let (_, action, roles, _) = allowed[next() % allowed.len()];
        let role = roles[next() % roles.len()];
        let accepted = log.state.as_ref().map_or(0, |f| f.stats.accepted);
        let change = match action {
            FileAction::Processed => change_for(*action, (next() % 2) as u64),
            FileAction::RecordsClosed => FileChange::RecordsClosed { count: accepted.min(3) },
            _ => change_for(*action, 0),
        };
        let file = log.step(role, change).unwrap_or_else(|e| panic!("{current:?} {action:?} by {role:?}: {e}"));
        reached.insert(file.status);
    }
    assert_eq!(reached.len(), FileStatus::ALL.len(), "reached only {reached:?}");
}
