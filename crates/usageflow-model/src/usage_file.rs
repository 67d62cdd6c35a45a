//! The usage file and its workflow.
//!
//! A usage file's state is the fold of its [`FileEvent`]s: each event carries one
//! [`FileChange`], who made it, and when. [`UsageFile::apply`] checks the change against the
//! transition table (status, actor role, ownership, payload) before applying it, so an
//! illegal step is a typed [`WorkflowError`], never a panic, and no sequence of events can
//! reach a status the table does not allow.
//!
//! | change | actor | from | to |
//! |---|---|---|---|
//! | create | vendor | (new) | draft |
//! | update | vendor | draft, invalid, ready, rejected | (same) |
//! | upload | vendor | draft, invalid, ready, rejected | uploading |
//! | stored | system | uploading | uploaded |
//! | processing_started | system | uploaded | processing |
//! | processed | system | processing | ready (no invalid record) or invalid |
//! | submit | vendor | ready | pending |
//! | accept | provider, system (usage rules) | pending | accepted |
//! | reject | provider, system (usage rules) | pending | rejected |
//! | approve_all | provider | pending | pending |
//! | records_closed | provider, system | accepted | accepted |
//! | close | provider, system (all records closed) | accepted | closed |
//! | delete | vendor | draft, invalid, ready, rejected | deleted |
//! | reprocess | provider | accepted, closed | (same), sub_status processing |
//! | reprocessed | system | accepted, closed | (same), sub_status processed |

use std::fmt;

use chrono::{DateTime, Datelike, NaiveDate, NaiveTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{Environment, Ref, ReportingSchema};

/// Usage file status (wire values of the Connect API).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileStatus {
    /// Created, no spreadsheet yet.
    Draft,
    /// A spreadsheet was uploaded and is being stored.
    Uploading,
    /// Stored, queued for processing.
    Uploaded,
    /// Validation failed; see `error_detail` and the processed file.
    Invalid,
    /// Being parsed and validated.
    Processing,
    /// Valid; may be submitted.
    Ready,
    /// The provider rejected it; the vendor may upload again.
    Rejected,
    /// Submitted; the provider reviews it.
    Pending,
    /// Accepted; records are usable for billing.
    Accepted,
    /// All records billed; terminal.
    Closed,
    /// Deleted by the vendor; terminal.
    Deleted,
}

impl FileStatus {
    /// All statuses.
    pub const ALL: [FileStatus; 11] = [
        FileStatus::Draft,
        FileStatus::Uploading,
        FileStatus::Uploaded,
        FileStatus::Invalid,
        FileStatus::Processing,
        FileStatus::Ready,
        FileStatus::Rejected,
        FileStatus::Pending,
        FileStatus::Accepted,
        FileStatus::Closed,
        FileStatus::Deleted,
    ];

    /// Not yet submitted, or rejected back to the vendor, and not deleted: the vendor may
    /// still upload to it or change it.
    pub fn is_open_for_vendor(self) -> bool {
        !matches!(self, FileStatus::Pending | FileStatus::Accepted | FileStatus::Closed | FileStatus::Deleted)
    }

    /// Accepted or closed: the file's records go to billing, split into per-hub chunks.
    pub fn is_billed(self) -> bool {
        matches!(self, FileStatus::Accepted | FileStatus::Closed)
    }

    /// The wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            FileStatus::Draft => "draft",
            FileStatus::Uploading => "uploading",
            FileStatus::Uploaded => "uploaded",
            FileStatus::Invalid => "invalid",
            FileStatus::Processing => "processing",
            FileStatus::Ready => "ready",
            FileStatus::Rejected => "rejected",
            FileStatus::Pending => "pending",
            FileStatus::Accepted => "accepted",
            FileStatus::Closed => "closed",
            FileStatus::Deleted => "deleted",
        }
    }

    /// Statuses from which the vendor may upload, update or delete.
    pub fn is_editable(self) -> bool {
        matches!(self, FileStatus::Draft | FileStatus::Invalid | FileStatus::Ready | FileStatus::Rejected)
    }
}

impl fmt::Display for FileStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Secondary processing state while the main status stays (reprocessing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SubStatus {
    /// Reprocessing runs.
    Processing,
    /// Reprocessing finished.
    Processed,
}

/// Who acts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ActorRole {
    /// The file's vendor.
    Vendor,
    /// The file's provider (distributor).
    Provider,
    /// Usageflow itself: processing, usage rules, automatic close.
    System,
}

impl fmt::Display for ActorRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ActorRole::Vendor => "vendor",
            ActorRole::Provider => "provider",
            ActorRole::System => "system",
        })
    }
}

/// An actor: a role and, for people and integrations, the account (and user) acting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// Role.
    pub role: ActorRole,
    /// The account acting (`VA-…`/`PA-…`); `None` for the system.
    #[serde(default)]
    pub account: Option<String>,
    /// Who is recorded in `events.*.by`: a user or API key `{id, name}`.
    #[serde(default)]
    pub by: Option<Ref>,
}

impl Actor {
    /// Usageflow itself.
    pub fn system() -> Self {
        Self { role: ActorRole::System, account: None, by: None }
    }

    /// A vendor account, recorded as `by`.
    pub fn vendor(account: &str, by: Ref) -> Self {
        Self { role: ActorRole::Vendor, account: Some(account.to_owned()), by: Some(by) }
    }

    /// A provider account, recorded as `by`.
    pub fn provider(account: &str, by: Ref) -> Self {
        Self { role: ActorRole::Provider, account: Some(account.to_owned()), by: Some(by) }
    }
}

/// A file's reporting period (dates, inclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Period {
    /// First day.
    pub from: NaiveDate,
    /// Last day.
    pub to: NaiveDate,
}

impl Period {
    /// `from 00:00:00` UTC.
    pub fn start_utc(&self) -> DateTime<Utc> {
        self.from.and_time(NaiveTime::MIN).and_utc()
    }

    /// `to 23:59:59` UTC.
    pub fn end_utc(&self) -> DateTime<Utc> {
        self.to.and_hms_opt(23, 59, 59).expect("valid time").and_utc()
    }

    /// The calendar month of `day`.
    pub fn month_of(day: NaiveDate) -> Self {
        let from = day.with_day(1).expect("every month has a first day");
        let next = from.checked_add_months(chrono::Months::new(1)).unwrap_or(NaiveDate::MAX);
        Self { from, to: next.pred_opt().unwrap_or(next) }
    }

    /// The days from the first of `starts` to the last of `ends` (record times), if any.
    pub fn covering(
        starts: impl IntoIterator<Item = DateTime<Utc>>,
        ends: impl IntoIterator<Item = DateTime<Utc>>,
    ) -> Option<Self> {
        let from = starts.into_iter().min()?.date_naive();
        let to = ends.into_iter().max()?.date_naive();
        Some(Self { from, to: to.max(from) })
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Record counts per workflow stage (`stats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Records in the uploaded spreadsheet.
    pub uploaded: u64,
    /// Records validated and not yet submitted.
    pub validated: u64,
    /// Records submitted and awaiting review.
    pub pending: u64,
    /// Records accepted (approved) and not yet closed.
    pub accepted: u64,
    /// Records closed with billing references.
    pub closed: u64,
    /// Records exported to billing (chunks or billing exports).
    pub billed: u64,
}

/// Record counts by validity (`records`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordCounts {
    /// Valid records.
    pub valid: u64,
    /// Invalid records.
    pub invalid: u64,
    /// Closed records.
    pub closed: u64,
}

/// When a step happened and who made it (`by` is absent for the system).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventStamp {
    /// When.
    pub at: DateTime<Utc>,
    /// Who.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<Ref>,
}

/// The `events` object of a usage file: the last time each step happened.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEvents {
    /// Created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<EventStamp>,
    /// Last upload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uploaded: Option<EventStamp>,
    /// Submitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submitted: Option<EventStamp>,
    /// Accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted: Option<EventStamp>,
    /// Closed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed: Option<EventStamp>,
    /// Rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected: Option<EventStamp>,
    /// Deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted: Option<EventStamp>,
}

/// What a new usage file is: set once, at creation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewFile {
    /// `UF-…`.
    pub id: String,
    /// Name (≤100).
    pub name: String,
    /// Description (≤200).
    #[serde(default)]
    pub description: String,
    /// Vendor's internal note (≤200), not shown to providers.
    #[serde(default)]
    pub note: String,
    /// Vendor reference (≤200).
    #[serde(default)]
    pub external_id: String,
    /// Reporting schema, copied from the product.
    pub schema: ReportingSchema,
    /// ISO 4217 currency; required for the rated schemas.
    #[serde(default)]
    pub currency: Option<String>,
    /// Reporting period.
    pub period: Period,
    /// Created without a period: until it is submitted (or given one), the period is the days
    /// its last upload's records cover, and `period` holds the month it was created in.
    #[serde(default, skip_serializing_if = "is_false")]
    pub period_from_records: bool,
    /// Environment.
    pub environment: Environment,
    /// Vendor.
    pub vendor: Ref,
    /// Provider.
    pub provider: Ref,
    /// Marketplace.
    pub marketplace: Ref,
    /// Distribution contract.
    pub contract: Ref,
    /// Product.
    pub product: Ref,
    /// The accepted file this one corrects, for records reported after acceptance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub corrects: Option<String>,
}

/// Fields the vendor may change while the file is editable; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileUpdate {
    /// Name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Note.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// External id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    /// Currency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    /// Period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<Period>,
}

/// A stored spreadsheet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredObject {
    /// Object path in the store.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the bytes, hex.
    pub sha256: String,
    /// The name the uploader gave it.
    #[serde(default)]
    pub filename: String,
}

/// One step of a usage file's workflow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FileChange {
    /// The vendor creates the file.
    Create(Box<NewFile>),
    /// The vendor edits descriptive fields.
    Update(FileUpdate),
    /// The vendor uploads a spreadsheet.
    Upload {
        /// The uploaded spreadsheet.
        object: StoredObject,
    },
    /// The upload is stored and queued for processing.
    Stored,
    /// Validation starts.
    ProcessingStarted,
    /// Validation finished.
    Processed {
        /// Valid records.
        valid: u64,
        /// Invalid records.
        invalid: u64,
        /// File-level problem (wrong sheets, missing columns...), if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error_detail: Option<String>,
        /// The processed spreadsheet with per-row outcomes.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        processed: Option<StoredObject>,
        /// The period the records cover, for a file whose period follows its records.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        period: Option<Period>,
    },
    /// The vendor submits the file for review.
    Submit,
    /// The provider (or a usage rule) accepts it.
    Accept {
        /// Acceptance note (≤200).
        #[serde(default)]
        note: String,
        /// Records of the submitted upload that the provider rejected one by one: they are
        /// not accepted with the file.
        #[serde(default)]
        rejected_records: u64,
    },
    /// The provider (or a usage rule) rejects it.
    Reject {
        /// Why (required, ≤200).
        note: String,
    },
    /// The provider approves every record before accepting.
    ApproveAll,
    /// Records were closed with billing references.
    RecordsClosed {
        /// How many.
        count: u64,
    },
    /// The file is closed.
    Close,
    /// The vendor deletes the file.
    Delete,
    /// The provider asks for the processed output to be regenerated.
    Reprocess,
    /// Regeneration finished.
    Reprocessed {
        /// The regenerated spreadsheet.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        processed: Option<StoredObject>,
    },
}

/// The action a change performs, for messages and tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileAction {
    /// [`FileChange::Create`].
    Create,
    /// [`FileChange::Update`].
    Update,
    /// [`FileChange::Upload`].
    Upload,
    /// [`FileChange::Stored`].
    Stored,
    /// [`FileChange::ProcessingStarted`].
    ProcessingStarted,
    /// [`FileChange::Processed`].
    Processed,
    /// [`FileChange::Submit`].
    Submit,
    /// [`FileChange::Accept`].
    Accept,
    /// [`FileChange::Reject`].
    Reject,
    /// [`FileChange::ApproveAll`].
    ApproveAll,
    /// [`FileChange::RecordsClosed`].
    RecordsClosed,
    /// [`FileChange::Close`].
    Close,
    /// [`FileChange::Delete`].
    Delete,
    /// [`FileChange::Reprocess`].
    Reprocess,
    /// [`FileChange::Reprocessed`].
    Reprocessed,
}

impl FileAction {
    /// All actions.
    pub const ALL: [FileAction; 15] = [
        FileAction::Create,
        FileAction::Update,
        FileAction::Upload,
        FileAction::Stored,
        FileAction::ProcessingStarted,
        FileAction::Processed,
        FileAction::Submit,
        FileAction::Accept,
        FileAction::Reject,
        FileAction::ApproveAll,
        FileAction::RecordsClosed,
        FileAction::Close,
        FileAction::Delete,
        FileAction::Reprocess,
        FileAction::Reprocessed,
    ];

    /// The verb used in messages.
    pub fn verb(self) -> &'static str {
        match self {
            FileAction::Create => "create",
            FileAction::Update => "update",
            FileAction::Upload => "upload to",
            FileAction::Stored => "store the upload of",
            FileAction::ProcessingStarted => "start processing",
            FileAction::Processed => "finish processing",
            FileAction::Submit => "submit",
            FileAction::Accept => "accept",
            FileAction::Reject => "reject",
            FileAction::ApproveAll => "approve all records of",
            FileAction::RecordsClosed => "close records of",
            FileAction::Close => "close",
            FileAction::Delete => "delete",
            FileAction::Reprocess => "reprocess",
            FileAction::Reprocessed => "finish reprocessing",
        }
    }

    /// The roles that may perform it.
    pub fn roles(self) -> &'static [ActorRole] {
        use ActorRole::{Provider, System, Vendor};
        match self {
            FileAction::Create | FileAction::Update | FileAction::Upload | FileAction::Submit | FileAction::Delete => {
                &[Vendor]
            }
            FileAction::Stored | FileAction::ProcessingStarted | FileAction::Processed | FileAction::Reprocessed => {
                &[System]
            }
            FileAction::Accept | FileAction::Reject | FileAction::RecordsClosed | FileAction::Close => {
                &[Provider, System]
            }
            FileAction::ApproveAll | FileAction::Reprocess => &[Provider],
        }
    }

    /// The statuses it may start from (`None` = the file does not exist yet).
    pub fn sources(self) -> &'static [FileStatus] {
        use FileStatus::*;
        match self {
            FileAction::Create => &[],
            FileAction::Update | FileAction::Upload | FileAction::Delete => &[Draft, Invalid, Ready, Rejected],
            FileAction::Stored => &[Uploading],
            FileAction::ProcessingStarted => &[Uploaded],
            FileAction::Processed => &[Processing],
            FileAction::Submit => &[Ready],
            FileAction::Accept | FileAction::Reject | FileAction::ApproveAll => &[Pending],
            FileAction::RecordsClosed | FileAction::Close => &[Accepted],
            FileAction::Reprocess | FileAction::Reprocessed => &[Accepted, Closed],
        }
    }
}

impl fmt::Display for FileAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.verb())
    }
}

impl FileChange {
    /// The action this change performs.
    pub fn action(&self) -> FileAction {
        match self {
            FileChange::Create(_) => FileAction::Create,
            FileChange::Update(_) => FileAction::Update,
            FileChange::Upload { .. } => FileAction::Upload,
            FileChange::Stored => FileAction::Stored,
            FileChange::ProcessingStarted => FileAction::ProcessingStarted,
            FileChange::Processed { .. } => FileAction::Processed,
            FileChange::Submit => FileAction::Submit,
            FileChange::Accept { .. } => FileAction::Accept,
            FileChange::Reject { .. } => FileAction::Reject,
            FileChange::ApproveAll => FileAction::ApproveAll,
            FileChange::RecordsClosed { .. } => FileAction::RecordsClosed,
            FileChange::Close => FileAction::Close,
            FileChange::Delete => FileAction::Delete,
            FileChange::Reprocess => FileAction::Reprocess,
            FileChange::Reprocessed { .. } => FileAction::Reprocessed,
        }
    }
}

/// One entry of a usage file's event log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEvent {
    /// Position in the log, from 1.
    pub seq: u64,
    /// When.
    pub at: DateTime<Utc>,
    /// Who.
    pub actor: Actor,
    /// What.
    pub change: FileChange,
}

/// Why a workflow step was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkflowError {
    /// The step is not allowed in the file's status.
    #[error("cannot {action} {file} in status {status}: {hint}")]
    IllegalTransition { file: String, action: FileAction, status: FileStatus, hint: String },
    /// The file does not exist.
    #[error("usage file {file} does not exist")]
    NotFound { file: String },
    /// The file exists already.
    #[error("usage file {file} exists already")]
    AlreadyExists { file: String },
    /// The actor's role may not perform the step.
    #[error("only the {allowed} may {action} {file}; the caller acts as {role}")]
    WrongRole { file: String, action: FileAction, role: ActorRole, allowed: String },
    /// The actor's account is not the file's vendor or provider.
    #[error("account {account} may not {action} {file}: the file's {role} is {owner}")]
    NotOwner { file: String, action: FileAction, account: String, role: ActorRole, owner: String },
    /// A field of the step is invalid.
    #[error("invalid {field} for {file}: {reason}")]
    InvalidInput { file: String, field: &'static str, reason: String },
    /// The event log is out of order.
    #[error("event {seq} of {file} is out of order: expected event {expected}")]
    OutOfOrder { file: String, seq: u64, expected: u64 },
}

fn hint(action: FileAction, status: FileStatus) -> String {
    use FileAction as A;
    use FileStatus as S;
    let text = match (action, status) {
        (_, S::Deleted) => "the file is deleted",
        (A::Reprocess | A::Reprocessed, _) => "only accepted or closed files can be reprocessed",
        (_, S::Closed) => "the file is closed; only the billing references of its records can still change",
        (A::Submit, S::Draft) => "upload a file first",
        (A::Submit, S::Invalid) => "the uploaded file has invalid records; fix them and upload again",
        (_, S::Uploading | S::Uploaded | S::Processing) => "wait until processing finishes",
        (A::Submit, S::Rejected) => "the provider rejected it; upload a corrected file first",
        (A::Submit, S::Pending) => "it is submitted already; the provider reviews it now",
        (A::Submit, S::Accepted) => "it is accepted already",
        (A::Accept | A::Reject | A::ApproveAll, S::Accepted) => "it is accepted already",
        (A::Accept | A::Reject | A::ApproveAll, S::Rejected) => {
            "it is rejected already; the vendor must upload a corrected file and submit it again"
        }
        (A::Accept | A::Reject | A::ApproveAll, _) => {
            "only pending files can be reviewed; the vendor has not submitted it"
        }
        (A::Upload | A::Update | A::Delete, S::Pending) => {
            "it is submitted; the provider must reject it before it can change"
        }
        (A::Upload | A::Update | A::Delete, S::Accepted) => {
            "it is accepted; report corrections in a new file for the same period"
        }
        (A::Close | A::RecordsClosed, _) => "only accepted files can be closed",
        _ => "",
    };
    if text.is_empty() {
        let sources: Vec<&str> = action.sources().iter().map(|s| s.as_str()).collect();
        format!("it needs status {}", sources.join(" or "))
    } else {
        text.to_owned()
    }
}

/// A usage file: the fold of its event log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageFile {
    /// `UF-…`.
    pub id: String,
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Vendor's internal note.
    pub note: String,
    /// Vendor reference.
    pub external_id: String,
    /// Status.
    pub status: FileStatus,
    /// Reprocessing state.
    pub sub_status: Option<SubStatus>,
    /// Reporting schema.
    pub schema: ReportingSchema,
    /// Currency.
    pub currency: Option<String>,
    /// Period.
    pub period: Period,
    /// Whether the period follows the records of the last upload (created without one; until
    /// submitted or given a period).
    #[serde(default, skip_serializing_if = "is_false")]
    pub period_from_records: bool,
    /// Period start, UTC.
    pub start_datetime_utc: DateTime<Utc>,
    /// Period end, UTC.
    pub end_datetime_utc: DateTime<Utc>,
    /// Environment.
    pub environment: Environment,
    /// Vendor.
    pub vendor: Ref,
    /// Provider.
    pub provider: Ref,
    /// Marketplace.
    pub marketplace: Ref,
    /// Distribution contract.
    pub contract: Ref,
    /// Product.
    pub product: Ref,
    /// Acceptance note.
    pub acceptance_note: Option<String>,
    /// Rejection note.
    pub rejection_note: Option<String>,
    /// Why the file is invalid.
    pub error_detail: Option<String>,
    /// Record counts per stage.
    pub stats: Stats,
    /// Record counts by validity.
    pub records: RecordCounts,
    /// When each step last happened, and who made it.
    pub events: FileEvents,
    /// Whether the provider approved every record (approve-all) while pending.
    pub all_approved: bool,
    /// The last uploaded spreadsheet.
    pub uploaded_file: Option<StoredObject>,
    /// The last processed spreadsheet.
    pub processed_file: Option<StoredObject>,
    /// The accepted file this one corrects.
    pub corrects: Option<String>,
    /// Number of events applied.
    pub version: u64,
}

impl UsageFile {
    /// Sets the period and the UTC bounds that follow from it.
    pub fn set_period(&mut self, period: Period) {
        self.period = period;
        self.start_datetime_utc = period.start_utc();
        self.end_datetime_utc = period.end_utc();
    }
}

const MAX_NAME: usize = 100;
const MAX_TEXT: usize = 200;

fn check_len(file: &str, field: &'static str, value: &str, max: usize) -> Result<(), WorkflowError> {
    let len = value.chars().count();
    if len > max {
        return Err(WorkflowError::InvalidInput {
            file: file.to_owned(),
            field,
            reason: format!("{len} characters; at most {max} are allowed"),
        });
    }
    Ok(())
}

fn check_currency(file: &str, currency: &str) -> Result<(), WorkflowError> {
    if currency.len() == 3 && currency.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(())
    } else {
        Err(WorkflowError::InvalidInput {
            file: file.to_owned(),
            field: "currency",
            reason: format!("`{currency}` is not an ISO 4217 code such as USD or EUR"),
        })
    }
}

fn check_period(file: &str, period: &Period) -> Result<(), WorkflowError> {
    if period.from > period.to {
        return Err(WorkflowError::InvalidInput {
            file: file.to_owned(),
            field: "period",
            reason: format!("period.from {} is after period.to {}", period.from, period.to),
        });
    }
    Ok(())
}

fn check_payload(file: &str, change: &FileChange) -> Result<(), WorkflowError> {
    match change {
        FileChange::Create(new) => {
            crate::ids::check_usage_file_id(&new.id).map_err(|e| WorkflowError::InvalidInput {
                file: file.to_owned(),
                field: "id",
                reason: e.to_string(),
            })?;
            check_len(file, "name", &new.name, MAX_NAME)?;
            check_len(file, "description", &new.description, MAX_TEXT)?;
            check_len(file, "note", &new.note, MAX_TEXT)?;
            check_len(file, "external_id", &new.external_id, MAX_TEXT)?;
            check_period(file, &new.period)?;
            match &new.currency {
                Some(c) => check_currency(file, c)?,
                None if new.schema.requires_currency() => {
                    return Err(WorkflowError::InvalidInput {
                        file: file.to_owned(),
                        field: "currency",
                        reason: format!("schema {} reports amounts, so the file needs a currency", new.schema),
                    });
                }
                None => {}
            }
        }
        FileChange::Update(update) => {
            if let Some(v) = &update.name {
                check_len(file, "name", v, MAX_NAME)?;
            }
            if let Some(v) = &update.description {
                check_len(file, "description", v, MAX_TEXT)?;
            }
            if let Some(v) = &update.note {
                check_len(file, "note", v, MAX_TEXT)?;
            }
            if let Some(v) = &update.external_id {
                check_len(file, "external_id", v, MAX_TEXT)?;
            }
            if let Some(c) = &update.currency {
                check_currency(file, c)?;
            }
            if let Some(p) = &update.period {
                check_period(file, p)?;
            }
        }
        FileChange::Accept { note, .. } => check_len(file, "acceptance_note", note, MAX_TEXT)?,
        FileChange::Reject { note } => {
            if note.trim().is_empty() {
                return Err(WorkflowError::InvalidInput {
                    file: file.to_owned(),
                    field: "rejection_note",
                    reason: "say why the file is rejected, so that the vendor can correct it".to_owned(),
                });
            }
            check_len(file, "rejection_note", note, MAX_TEXT)?;
        }
        _ => {}
    }
    Ok(())
}

impl UsageFile {
    /// Checks whether `actor` may make `change` to `file` (`None` = not created yet).
    /// Returns the status the file would have afterwards.
    pub fn check(file: Option<&UsageFile>, change: &FileChange, actor: &Actor) -> Result<FileStatus, WorkflowError> {
        let action = change.action();
        let id = match (file, change) {
            (Some(f), _) => f.id.clone(),
            (None, FileChange::Create(new)) => new.id.clone(),
            (None, _) => return Err(WorkflowError::NotFound { file: "(unknown)".to_owned() }),
        };
        let (status, owner) = match (file, change) {
            (None, FileChange::Create(new)) => (None, Some(&new.vendor)),
            (Some(_), FileChange::Create(_)) => return Err(WorkflowError::AlreadyExists { file: id }),
            (Some(f), _) => (Some(f.status), None),
            (None, _) => unreachable!("handled above"),
        };

        let roles = action.roles();
        if !roles.contains(&actor.role) {
            let allowed: Vec<String> = roles.iter().map(ToString::to_string).collect();
            return Err(WorkflowError::WrongRole { file: id, action, role: actor.role, allowed: allowed.join(" or ") });
        }
        if actor.role != ActorRole::System {
            let owner = match (file, actor.role) {
                (Some(f), ActorRole::Vendor) => &f.vendor,
                (Some(f), _) => &f.provider,
                (None, _) => owner.expect("create names its vendor"),
            };
            let account = actor.account.clone().unwrap_or_default();
            if account != owner.id {
                return Err(WorkflowError::NotOwner {
                    file: id,
                    action,
                    account,
                    role: actor.role,
                    owner: owner.id.clone(),
                });
            }
        }

        let next = match status {
            None => FileStatus::Draft,
            Some(status) => {
                if !action.sources().contains(&status) {
                    return Err(WorkflowError::IllegalTransition {
                        hint: hint(action, status),
                        file: id,
                        action,
                        status,
                    });
                }
                match change {
                    FileChange::Upload { .. } => FileStatus::Uploading,
                    FileChange::Stored => FileStatus::Uploaded,
                    FileChange::ProcessingStarted => FileStatus::Processing,
                    FileChange::Processed { invalid, error_detail, .. } => {
                        if *invalid == 0 && error_detail.is_none() {
                            FileStatus::Ready
                        } else {
                            FileStatus::Invalid
                        }
                    }
                    FileChange::Submit => FileStatus::Pending,
                    FileChange::Accept { .. } => FileStatus::Accepted,
                    FileChange::Reject { .. } => FileStatus::Rejected,
                    FileChange::Close => FileStatus::Closed,
                    FileChange::Delete => FileStatus::Deleted,
                    FileChange::RecordsClosed { count } => {
                        let f = file.expect("status implies a file");
                        if *count > f.stats.accepted {
                            return Err(WorkflowError::InvalidInput {
                                file: id,
                                field: "count",
                                reason: format!(
                                    "{count} records cannot close: only {} are accepted and open",
                                    f.stats.accepted
                                ),
                            });
                        }
                        status
                    }
                    FileChange::Create(_) => unreachable!("handled above"),
                    FileChange::Update(_)
                    | FileChange::ApproveAll
                    | FileChange::Reprocess
                    | FileChange::Reprocessed { .. } => status,
                }
            }
        };
        check_payload(&id, change)?;
        Ok(next)
    }

    /// Applies one event to a file (`None` before its creation) and returns the new state.
    pub fn apply(file: Option<UsageFile>, event: &FileEvent) -> Result<UsageFile, WorkflowError> {
        let next = Self::check(file.as_ref(), &event.change, &event.actor)?;
        let expected = file.as_ref().map_or(1, |f| f.version + 1);
        if event.seq != expected {
            let id = match (&file, &event.change) {
                (Some(f), _) => f.id.clone(),
                (None, FileChange::Create(new)) => new.id.clone(),
                (None, _) => String::new(),
            };
            return Err(WorkflowError::OutOfOrder { file: id, seq: event.seq, expected });
        }
        let stamp = EventStamp { at: event.at, by: event.actor.by.clone() };
        let mut file = match (file, &event.change) {
            (None, FileChange::Create(new)) => UsageFile {
                id: new.id.clone(),
                name: new.name.clone(),
                description: new.description.clone(),
                note: new.note.clone(),
                external_id: new.external_id.clone(),
                status: FileStatus::Draft,
                sub_status: None,
                schema: new.schema,
                currency: new.currency.clone(),
                period: new.period,
                period_from_records: new.period_from_records,
                start_datetime_utc: new.period.start_utc(),
                end_datetime_utc: new.period.end_utc(),
                environment: new.environment,
                vendor: new.vendor.clone(),
                provider: new.provider.clone(),
                marketplace: new.marketplace.clone(),
                contract: new.contract.clone(),
                product: new.product.clone(),
                acceptance_note: None,
                rejection_note: None,
                error_detail: None,
                stats: Stats::default(),
                records: RecordCounts::default(),
                events: FileEvents { created: Some(stamp.clone()), ..FileEvents::default() },
                all_approved: false,
                uploaded_file: None,
                processed_file: None,
                corrects: new.corrects.clone(),
                version: 0,
            },
            (Some(file), _) => file,
            (None, _) => unreachable!("check refuses changes to a missing file"),
        };
        file.status = next;
        file.version = event.seq;
        match &event.change {
            FileChange::Create(_) => {}
            FileChange::Update(update) => {
                if let Some(v) = &update.name {
                    file.name.clone_from(v);
                }
                if let Some(v) = &update.description {
                    file.description.clone_from(v);
                }
                if let Some(v) = &update.note {
                    file.note.clone_from(v);
                }
                if let Some(v) = &update.external_id {
                    file.external_id.clone_from(v);
                }
                if let Some(v) = &update.currency {
                    file.currency = Some(v.clone());
                }
                if let Some(p) = update.period {
                    file.set_period(p);
                    file.period_from_records = false;
                }
            }
            FileChange::Upload { object } => {
                file.uploaded_file = Some(object.clone());
                file.processed_file = None;
                file.stats = Stats::default();
                file.records = RecordCounts::default();
                file.error_detail = None;
                file.all_approved = false;
                file.events.uploaded = Some(stamp);
            }
            FileChange::Stored | FileChange::ProcessingStarted => {}
            FileChange::Processed { valid, invalid, error_detail, processed, period } => {
                if let Some(p) = period.filter(|_| file.period_from_records) {
                    file.set_period(p);
                }
                file.stats.uploaded = valid + invalid;
                file.records.valid = *valid;
                file.records.invalid = *invalid;
                file.processed_file.clone_from(processed);
                if next == FileStatus::Ready {
                    file.stats.validated = *valid;
                } else {
                    file.error_detail = Some(
                        error_detail
                            .clone()
                            .unwrap_or_else(|| format!("{invalid} of {} records are invalid", valid + invalid)),
                    );
                }
            }
            FileChange::Submit => {
                file.period_from_records = false;
                file.stats.pending = file.stats.validated;
                file.stats.validated = 0;
                file.events.submitted = Some(stamp);
            }
            FileChange::ApproveAll => {
                file.stats.accepted += file.stats.pending;
                file.stats.pending = 0;
                file.all_approved = true;
            }
            FileChange::Accept { note, rejected_records } => {
                file.stats.accepted += file.stats.pending.saturating_sub(*rejected_records);
                file.stats.pending = 0;
                file.acceptance_note = Some(note.clone());
                file.events.accepted = Some(stamp);
            }
            FileChange::Reject { note } => {
                file.stats.pending = 0;
                file.stats.accepted = 0;
                file.all_approved = false;
                file.rejection_note = Some(note.clone());
                file.events.rejected = Some(stamp);
            }
            FileChange::RecordsClosed { count } => {
                file.stats.accepted -= count;
                file.stats.closed += count;
                file.records.closed += count;
            }
            FileChange::Close => {
                file.stats.closed += file.stats.accepted;
                file.records.closed += file.stats.accepted;
                file.stats.accepted = 0;
                file.events.closed = Some(stamp);
            }
            FileChange::Delete => file.events.deleted = Some(stamp),
            FileChange::Reprocess => file.sub_status = Some(SubStatus::Processing),
            FileChange::Reprocessed { processed } => {
                file.sub_status = Some(SubStatus::Processed);
                if processed.is_some() {
                    file.processed_file.clone_from(processed);
                }
            }
        }
        Ok(file)
    }

    /// Folds a whole event log into the file's current state.
    pub fn replay<'a>(events: impl IntoIterator<Item = &'a FileEvent>) -> Result<Option<UsageFile>, WorkflowError> {
        let mut state = None;
        for event in events {
            state = Some(Self::apply(state, event)?);
        }
        Ok(state)
    }

    /// Whether every accepted record is closed, so the file should close (by the system).
    pub fn should_auto_close(&self) -> bool {
        self.status == FileStatus::Accepted && self.stats.accepted == 0 && self.records.valid > 0
    }
}
