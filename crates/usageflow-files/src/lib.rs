//! Usage files in the CloudBlue Connect format.
//!
//! [`xlsx`] reads vendor uploads (the records sheet `records` or the legacy `usage_records`,
//! optional `general` and `categories`), bounded against oversized, encrypted and zip-bomb
//! uploads; [`validate`] checks their records row by row against the catalogue and the file;
//! [`write`] produces workbooks with the structure of Connect's processed files;
//! [`service`] runs the file workflow with its documents (create, upload → processed file →
//! ready or invalid, review).

pub mod chunks;
pub mod compile;
pub mod records;
pub mod rules;
pub mod service;
pub mod validate;
pub mod write;
pub mod xlsx;
mod zipdir;

pub use chunks::chunks_of_files;
pub use records::{RecordChange, RecordChanges, RecordOutcome, RecordRequest, record_status_of, records_object_path};
pub use service::{CreateFile, FileService, ServiceError, UploadOutcome};
pub use validate::{FileContext, REQUIRED_COLUMNS, RowError, ValidRecord, Validation, validate};
pub use write::{
    MAX_RECORDS_PER_SHEET, WriteError, record_columns, write_csv, write_parquet, write_split, write_workbook,
};
pub use xlsx::{CategoryRow, ReadLimits, SheetRow, UsageWorkbook, XlsxError, read_workbook};
