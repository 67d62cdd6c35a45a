//! Usageflow's domain model. No I/O.
//!
//! The catalogue (products and their usage capabilities, items, marketplaces, accounts,
//! contracts, listings, hubs, assets), the usage objects of the Connect usage module (usage
//! files, records, categories, chunks, reconciliations, usage rules), metering events, the
//! state machines of files, records and chunks, and the validation rules they share.
//! Wire values (statuses, schemas, precisions, ID formats) follow the Connect usage API.

mod precision;
mod schema;

pub use precision::{Precision, PrecisionError, UnknownPrecision};
pub use schema::{ReportingSchema, UnknownSchema};
