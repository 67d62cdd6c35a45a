//! Usage records and their state machine.
//!
//! The workflow documents name seven record states; the API exposes five `status` values.
//! [`RecordState::api_status`] maps one onto the other:
//!
//! | state | API `status` | reached by |
//! |---|---|---|
//! | uploaded | (none) | a spreadsheet is stored, or re-uploaded |
//! | validated | `valid` | validation passed |
//! | invalid | `invalid` | validation failed |
//! | pending | `valid` | the file was submitted |
//! | rejected | `rejected` | the file was rejected (or the provider rejected the record) |
//! | accepted | `approved` | the file was accepted, approve-all, or the provider approved the record |
//! | closed | `closed` | billing references were recorded (`external_billing_id` required) |

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::{ItemType, Precision, ReportingSchema};

/// Record status as the API spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordStatus {
    /// Valid (validated or pending review).
    Valid,
    /// Failed validation.
    Invalid,
    /// Accepted by the provider.
    Approved,
    /// Rejected by the provider.
    Rejected,
    /// Billed and closed.
    Closed,
}

impl RecordStatus {
    /// The wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordStatus::Valid => "valid",
            RecordStatus::Invalid => "invalid",
            RecordStatus::Approved => "approved",
            RecordStatus::Rejected => "rejected",
            RecordStatus::Closed => "closed",
        }
    }
}

/// Record state in the workflow's vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordState {
    /// Created from a stored spreadsheet.
    Uploaded,
    /// Passed validation.
    Validated,
    /// Failed validation.
    Invalid,
    /// Its file is submitted.
    Pending,
    /// Rejected.
    Rejected,
    /// Accepted.
    Accepted,
    /// Closed with billing references.
    Closed,
}

impl RecordState {
    /// All states.
    pub const ALL: [RecordState; 7] = [
        RecordState::Uploaded,
        RecordState::Validated,
        RecordState::Invalid,
        RecordState::Pending,
        RecordState::Rejected,
        RecordState::Accepted,
        RecordState::Closed,
    ];

    /// The API `status`; `None` while uploaded and not yet validated.
    pub fn api_status(self) -> Option<RecordStatus> {
        match self {
            RecordState::Uploaded => None,
            RecordState::Validated | RecordState::Pending => Some(RecordStatus::Valid),
            RecordState::Invalid => Some(RecordStatus::Invalid),
            RecordState::Rejected => Some(RecordStatus::Rejected),
            RecordState::Accepted => Some(RecordStatus::Approved),
            RecordState::Closed => Some(RecordStatus::Closed),
        }
    }
}

/// What happens to a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordStep {
    /// Validation passed.
    Validate,
    /// Validation failed.
    Invalidate,
    /// Its file was uploaded again; the record is replaced.
    Reupload,
    /// Its file was submitted.
    Submit,
    /// Its file was rejected, or the provider rejected it while the file is pending.
    Reject,
    /// Its file was accepted, approve-all, or the provider approved it while pending.
    Approve,
    /// Billing references recorded.
    Close {
        /// Billing system's id (required).
        external_billing_id: String,
    },
}

/// A record step that its state does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The step does not apply in this state.
    #[error("record {record} cannot go from {from:?} by {step}: {hint}")]
    IllegalTransition { record: String, from: RecordState, step: &'static str, hint: &'static str },
    /// Close without a billing reference.
    #[error("record {record} cannot close without an external_billing_id")]
    MissingBillingId { record: String },
}

impl RecordStep {
    fn name(&self) -> &'static str {
        match self {
            RecordStep::Validate => "validate",
            RecordStep::Invalidate => "invalidate",
            RecordStep::Reupload => "re-upload",
            RecordStep::Submit => "submit",
            RecordStep::Reject => "reject",
            RecordStep::Approve => "approve",
            RecordStep::Close { .. } => "close",
        }
    }
}

impl RecordState {
    /// The state after `step`, or why the step is refused.
    pub fn next(self, record: &str, step: &RecordStep) -> Result<RecordState, RecordError> {
        use RecordState as S;
        let illegal =
            |hint| RecordError::IllegalTransition { record: record.to_owned(), from: self, step: step.name(), hint };
        match (self, step) {
            (S::Uploaded, RecordStep::Validate) => Ok(S::Validated),
            (S::Uploaded, RecordStep::Invalidate) => Ok(S::Invalid),
            (S::Invalid | S::Validated | S::Rejected, RecordStep::Reupload) => Ok(S::Uploaded),
            (S::Validated, RecordStep::Submit) => Ok(S::Pending),
            (S::Pending | S::Accepted, RecordStep::Reject) => Ok(S::Rejected),
            (S::Pending, RecordStep::Approve) => Ok(S::Accepted),
            (S::Accepted, RecordStep::Close { external_billing_id }) => {
                if external_billing_id.trim().is_empty() {
                    Err(RecordError::MissingBillingId { record: record.to_owned() })
                } else {
                    Ok(S::Closed)
                }
            }
            (S::Closed, _) => Err(illegal("closed records only accept new billing references")),
            (_, RecordStep::Close { .. }) => Err(illegal("only accepted records can be closed")),
            (_, RecordStep::Approve | RecordStep::Reject) => {
                Err(illegal("only records of a pending file can be reviewed"))
            }
            (_, RecordStep::Submit) => Err(illegal("only validated records can be submitted")),
            (_, RecordStep::Reupload) => Err(illegal("records of a submitted or accepted file cannot be replaced")),
            (_, RecordStep::Validate | RecordStep::Invalidate) => Err(illegal("only uploaded records are validated")),
        }
    }
}

/// The item as a record embeds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordItem {
    /// Global id.
    pub id: String,
    /// Local id.
    pub local_id: String,
    /// Name.
    pub name: String,
    /// Unit.
    pub unit: String,
    /// MPN.
    pub mpn: String,
    /// Precision.
    pub precision: Precision,
    /// PPU or reservation.
    #[serde(rename = "type")]
    pub item_type: ItemType,
}

/// The asset as a record embeds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordAsset {
    /// `AS-…`.
    pub id: String,
    /// Provider-side id.
    pub external_id: String,
    /// Provider-side unique id.
    pub external_uid: String,
    /// Vendor's reconciliation id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recon_id: Option<String>,
}

/// A usage category (the `categories` sheet).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Category {
    /// `category_id`.
    pub id: String,
    /// `category_name`.
    pub name: String,
    /// `category_description`.
    #[serde(default)]
    pub description: Option<String>,
}

impl Category {
    /// The category used when a file defines none.
    pub fn generic() -> Self {
        Self {
            id: "generic_category".to_owned(),
            name: "Generic Category".to_owned(),
            description: Some("Generic autogenerated category".to_owned()),
        }
    }
}

/// A custom column of a record (`v.*` vendor data, `p.*` provider data).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordParam {
    /// Column name.
    pub parameter_name: String,
    /// Value.
    pub parameter_value: Option<String>,
}

/// The parent file as a record embeds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordFile {
    /// `UF-…`.
    pub id: String,
    /// Name.
    pub name: String,
    /// Schema.
    pub schema: ReportingSchema,
    /// Currency.
    pub currency: Option<String>,
}

/// A usage record as the API returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageRecord {
    /// `UR-…`.
    pub id: String,
    /// The vendor's own record id from the spreadsheet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vendor_record_id: Option<String>,
    /// The vendor's note.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_note: Option<String>,
    /// Usage start.
    pub start_date: DateTime<Utc>,
    /// Usage end.
    pub end_date: DateTime<Utc>,
    /// Product id.
    pub product_id: String,
    /// Item.
    pub item: RecordItem,
    /// Asset.
    pub asset: RecordAsset,
    /// Category.
    pub category: Category,
    /// Tier (TR): 0 customer, 1, 2.
    pub tier: Option<u8>,
    /// Amount (rated schemas).
    #[serde(with = "rust_decimal::serde::str_option", default)]
    pub amount: Option<Decimal>,
    /// The reported quantity.
    #[serde(with = "rust_decimal::serde::str")]
    pub usage: Decimal,
    /// The precision multiplier of the item (1, 10, 100, 10 000, 10^8).
    pub multiplier: u64,
    /// Status.
    pub status: Option<RecordStatus>,
    /// Billing system's id, set on close.
    pub external_billing_id: Option<String>,
    /// Billing note, set on close.
    pub external_billing_note: Option<String>,
    /// When it was closed.
    pub closed_at: Option<DateTime<Utc>>,
    /// Who closed it.
    pub closed_by: Option<String>,
    /// Custom columns.
    #[serde(default)]
    pub params: Vec<RecordParam>,
    /// Parent file.
    pub usagefile: RecordFile,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn happy_path_and_refusals() {
        let mut s = RecordState::Uploaded;
        for step in [RecordStep::Validate, RecordStep::Submit, RecordStep::Approve] {
            s = s.next("UR-1", &step).unwrap();
        }
        assert_eq!(s, RecordState::Accepted);
        assert_eq!(s.api_status(), Some(RecordStatus::Approved));
        let err = s.next("UR-1", &RecordStep::Close { external_billing_id: " ".into() }).unwrap_err();
        assert_eq!(err.to_string(), "record UR-1 cannot close without an external_billing_id");
        let s = s.next("UR-1", &RecordStep::Close { external_billing_id: "INV-1".into() }).unwrap();
        assert_eq!(s, RecordState::Closed);
        let err = s.next("UR-1", &RecordStep::Reject).unwrap_err();
        assert!(err.to_string().contains("closed records only accept new billing references"), "{err}");
        let err =
            RecordState::Validated.next("UR-2", &RecordStep::Close { external_billing_id: "x".into() }).unwrap_err();
        assert!(err.to_string().contains("only accepted records can be closed"), "{err}");
    }

    #[test]
    fn every_state_maps_to_an_api_status_except_uploaded() {
        for s in RecordState::ALL {
            assert_eq!(s.api_status().is_none(), s == RecordState::Uploaded);
        }
    }
}
