//! Usage files in the CloudBlue Connect format.
//!
//! [`xlsx`] reads vendor uploads (the records sheet `records` or the legacy `usage_records`,
//! optional `general` and `categories`), bounded against oversized, encrypted and zip-bomb
//! uploads.

pub mod xlsx;
mod zipdir;

pub use xlsx::{CategoryRow, ReadLimits, SheetRow, UsageWorkbook, XlsxError, read_workbook};
