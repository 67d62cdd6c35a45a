//! Object storage for Usageflow.
//!
//! Every durable byte Usageflow keeps (Parquet data files, Delta logs, workflow
//! event logs, uploaded and generated usage files) lives in one object store, opened
//! from a URL: a local directory by default, or any S3-compatible store. [`open_store`]
//! turns a [`StoreConfig`] into an `Arc<dyn ObjectStore>` rooted at the configured prefix,
//! so that the rest of the system only ever sees relative object paths.
//!
//! The lake itself is two Delta Lake tables (`delta`): Parquet files (`tables`) made visible
//! by commits to each table's `_delta_log/`, under the Hive-style layout in `paths`.

pub mod compact;
pub mod delta;
mod direct;
mod error;
pub mod paths;
mod store;
pub mod tables;

pub use delta::{AsOf, DeltaError, DeltaLake, LakeState, LakeVersion, Table, TableCommit, TableFile, TableState};
pub use error::{Error, Result};
pub use store::{S3Options, StoreConfig, StoreKind, open_store};
