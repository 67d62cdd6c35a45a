//! Usage files in the CloudBlue Connect format.
//!
//! [`xlsx`] reads vendor uploads (the records sheet `records` or the legacy `usage_records`,
//! optional `general` and `categories`), bounded against oversized, encrypted and zip-bomb
//! uploads; [`validate`] checks their records row by row against the catalogue and the file.

pub mod validate;
pub mod xlsx;
mod zipdir;

pub use validate::{FileContext, RowError, ValidRecord, Validation, validate};
pub use xlsx::{CategoryRow, ReadLimits, SheetRow, UsageWorkbook, XlsxError, read_workbook};
