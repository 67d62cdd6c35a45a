//! Usageflow's domain model. No I/O.
//!
//! The catalogue (products and their usage capabilities, items, marketplaces, accounts,
//! contracts, listings, hubs, assets), the usage objects of the Connect usage module (usage
//! files, records, categories, chunks, reconciliations, usage rules), metering events, the
//! state machines of files, records and chunks, and the validation rules they share.
//! Wire values (statuses, schemas, precisions, ID formats) follow the Connect usage API.

mod catalog;
mod chunk;
mod error;
mod event;
pub mod ids;
mod precision;
mod prerequisites;
mod record;
mod rule;
mod schema;
mod usage_file;

pub use catalog::{
    Account, AccountRole, AggregationPeriod, Asset, AssetCriteria, AssetStatus, AssetTiers, Capabilities, Catalogue,
    CatalogueData, Contract, ContractKind, ContractStatus, Environment, Hub, Item, ItemCriteria, ItemType, Listing,
    ListingStatus, Marketplace, PpuCapability, Product, Ref, ReservationCapability,
};
pub use chunk::{
    Binding, Chunk, ChunkError, ChunkStatus, ChunkStep, ErrorDetail, Reconciliation, ReconciliationNotes,
    ReconciliationStatus,
};
pub use error::{CatalogueError, PrerequisiteError};
pub use event::MeteringEvent;
pub use precision::{Precision, PrecisionError, UnknownPrecision};
pub use prerequisites::FileScope;
pub use record::{
    Category, RecordAsset, RecordError, RecordFile, RecordItem, RecordParam, RecordState, RecordStatus, RecordStep,
    UsageRecord,
};
pub use rule::{RuleAction, RuleScope, RuleStatus, UsageRule};
pub use schema::{ReportingSchema, UnknownSchema};
pub use usage_file::{
    Actor, ActorRole, EventStamp, FileAction, FileChange, FileEvent, FileEvents, FileStatus, FileUpdate, NewFile,
    Period, RecordCounts, Stats, StoredObject, SubStatus, UsageFile, WorkflowError,
};
