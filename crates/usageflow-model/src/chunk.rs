//! Usage chunks (per-hub bulk export of an accepted file) and reconciliations.
//!
//! Chunk statuses: `draft` → `ready` (generated) or `failed`; `ready` → `closed` by the
//! provider with an external billing id, or when every record of the chunk is closed;
//! `failed`/`ready` → `draft` on regenerate.
//! Reconciliation statuses: `uploaded` → `processing` → `processed` or `failed`.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{FileEvents, Ref, Stats};

/// Chunk status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChunkStatus {
    /// Being generated.
    Draft,
    /// Ready for download by the billing system.
    Ready,
    /// Billed and closed.
    Closed,
    /// Generation failed; see `error.detail`.
    Failed,
}

impl fmt::Display for ChunkStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ChunkStatus::Draft => "draft",
            ChunkStatus::Ready => "ready",
            ChunkStatus::Closed => "closed",
            ChunkStatus::Failed => "failed",
        })
    }
}

/// A chunk step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ChunkStep {
    /// Generation finished.
    Generated,
    /// Generation failed.
    Failed {
        /// Why.
        detail: String,
    },
    /// The provider closes it with the billing batch id.
    Close {
        /// Billing batch id (required).
        external_billing_id: String,
        /// Note.
        #[serde(default)]
        external_billing_note: String,
    },
    /// The provider asks for it to be generated again.
    Regenerate,
    /// Every record of the chunk was closed (reconciled, closed in bulk or with the file).
    RecordsClosed,
}

/// A chunk step its status does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot {step} chunk {chunk} in status {status}: {hint}")]
pub struct ChunkError {
    /// Chunk id.
    pub chunk: String,
    /// Step name.
    pub step: &'static str,
    /// Current status.
    pub status: ChunkStatus,
    /// What to do.
    pub hint: &'static str,
}

impl ChunkStatus {
    /// The status after `step`.
    pub fn next(self, chunk: &str, step: &ChunkStep) -> Result<ChunkStatus, ChunkError> {
        use ChunkStatus as S;
        let (name, result) = match (self, step) {
            (S::Draft, ChunkStep::Generated) => ("finish generating", Ok(S::Ready)),
            (S::Draft, ChunkStep::Failed { .. }) => ("fail", Ok(S::Failed)),
            (S::Ready, ChunkStep::Close { external_billing_id, .. }) if !external_billing_id.trim().is_empty() => {
                ("close", Ok(S::Closed))
            }
            (S::Ready, ChunkStep::Close { .. }) => ("close", Err("an external_billing_id is required")),
            (S::Ready | S::Failed, ChunkStep::Regenerate) => ("regenerate", Ok(S::Draft)),
            (S::Ready, ChunkStep::RecordsClosed) => ("close with its records", Ok(S::Closed)),
            (_, ChunkStep::RecordsClosed) => {
                ("close with its records", Err("only ready chunks close with their records"))
            }
            (_, ChunkStep::Generated) => ("finish generating", Err("only draft chunks are generated")),
            (_, ChunkStep::Failed { .. }) => ("fail", Err("only draft chunks can fail")),
            (_, ChunkStep::Close { .. }) => ("close", Err("only ready chunks can be closed")),
            (_, ChunkStep::Regenerate) => ("regenerate", Err("only ready or failed chunks can be regenerated")),
        };
        result.map_err(|hint| ChunkError { chunk: chunk.to_owned(), step: name, status: self, hint })
    }
}

/// The hub binding of a chunk or reconciliation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binding {
    /// Hub.
    pub hub: Ref,
    /// Billing system's id for the batch.
    #[serde(default)]
    pub external_id: String,
}

/// Failure detail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// What went wrong.
    pub detail: String,
}

/// A usage chunk (`PartUsageFile`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunk {
    /// `UFC-…`.
    pub id: String,
    /// Status.
    pub status: ChunkStatus,
    /// Records changed since it was generated.
    pub outdated: bool,
    /// Parent file.
    pub usagefile: Ref,
    /// Hub binding.
    pub binding: Binding,
    /// Marketplace.
    pub marketplace: Ref,
    /// Provider.
    pub provider: Ref,
    /// Failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorDetail>,
    /// Timestamps.
    pub events: FileEvents,
    /// Record counts.
    pub stats: Stats,
    /// Billing batch id after close.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_billing_id: Option<String>,
    /// Billing note after close.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_billing_note: Option<String>,
    /// The chunk's workbook.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub document: Option<crate::StoredObject>,
    /// Snapshots written so far.
    #[serde(default)]
    pub version: u64,
}

/// Reconciliation status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReconciliationStatus {
    /// Stored.
    Uploaded,
    /// Being applied.
    Processing,
    /// Applied.
    Processed,
    /// Could not be applied; see `error.detail`.
    Failed,
}

impl ReconciliationStatus {
    /// The status after a step: `uploaded` → `processing` → `processed`/`failed`.
    pub fn advance(self, ok: bool) -> Option<ReconciliationStatus> {
        match (self, ok) {
            (ReconciliationStatus::Uploaded, _) => Some(ReconciliationStatus::Processing),
            (ReconciliationStatus::Processing, true) => Some(ReconciliationStatus::Processed),
            (ReconciliationStatus::Processing, false) => Some(ReconciliationStatus::Failed),
            _ => None,
        }
    }
}

/// Reconciliation notes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconciliationNotes {
    /// Note given with the upload.
    #[serde(default)]
    pub uploaded: String,
    /// Processing outcome.
    #[serde(default)]
    pub processing: String,
}

/// A reconciliation upload: billing references for records, in bulk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reconciliation {
    /// `URC-…`.
    pub id: String,
    /// Status.
    pub status: ReconciliationStatus,
    /// The usage file reconciled.
    pub usagefile: Ref,
    /// The chunk reconciled, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partusagefile: Option<Ref>,
    /// Hub binding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binding: Option<Binding>,
    /// Failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorDetail>,
    /// Notes.
    pub notes: ReconciliationNotes,
    /// When it was uploaded.
    pub uploaded_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_lifecycle() {
        let s = ChunkStatus::Draft.next("UFC-1", &ChunkStep::Generated).unwrap();
        assert_eq!(s, ChunkStatus::Ready);
        let err =
            s.next("UFC-1", &ChunkStep::Close { external_billing_id: "".into(), external_billing_note: "".into() });
        assert_eq!(
            err.unwrap_err().to_string(),
            "cannot close chunk UFC-1 in status ready: an external_billing_id is required"
        );
        let closed = s
            .next("UFC-1", &ChunkStep::Close { external_billing_id: "B-1".into(), external_billing_note: "".into() })
            .unwrap();
        assert_eq!(closed, ChunkStatus::Closed);
        assert!(closed.next("UFC-1", &ChunkStep::Regenerate).is_err());
        let failed = ChunkStatus::Draft.next("UFC-2", &ChunkStep::Failed { detail: "x".into() }).unwrap();
        assert_eq!(failed.next("UFC-2", &ChunkStep::Regenerate).unwrap(), ChunkStatus::Draft);
        assert_eq!(ReconciliationStatus::Uploaded.advance(true), Some(ReconciliationStatus::Processing));
        assert_eq!(ReconciliationStatus::Processing.advance(false), Some(ReconciliationStatus::Failed));
        assert_eq!(ReconciliationStatus::Processed.advance(true), None);
    }
}
