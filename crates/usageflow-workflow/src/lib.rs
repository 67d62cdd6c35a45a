//! Durable usage-file workflow state on object storage, with no database.
//!
//! Every transition of a usage file is an immutable event object
//! `workflow/files/{UF-id}/events/{seq}.json`, written with a create-if-absent put
//! (`PutMode::Create`). The current state is the fold of the events
//! ([`usageflow_model::UsageFile::replay`]) and the event list is the audit trail.
//!
//! Concurrency: a writer reads the log up to its last event `n`, checks its change against
//! that state, and writes event `n + 1` only if no one else has. When two writers race for
//! the same `n + 1`, the store lets exactly one create it; the other re-reads the log and
//! re-checks its change against the new state, which usually refuses it with a typed
//! [`usageflow_model::WorkflowError`] (for example "cannot submit … in status pending").
//! This holds on the local filesystem and on S3-compatible stores with conditional puts.

mod clock;
mod error;
mod index;
mod snapshots;
mod store;

pub use clock::{Clock, FixedClock, SystemClock};
pub use error::{Error, Result};
pub use index::FileIndex;
pub use snapshots::Snapshots;
pub use store::{CreateRequest, WorkflowStore};
