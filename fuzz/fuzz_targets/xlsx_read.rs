//! Any bytes given to the usage-workbook reader: it returns a workbook or an error, never
//! panics, and stays within its limits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use usageflow_files::{ReadLimits, read_workbook};

fuzz_target!(|data: &[u8]| {
    let limits = ReadLimits {
        max_file_bytes: 1 << 20,
        max_uncompressed_bytes: 16 << 20,
        max_compression_ratio: 100,
        max_rows: 10_000,
    };
    if let Ok(book) = read_workbook(data, &limits) {
        assert!(book.records.len() <= limits.max_rows);
    }
});
