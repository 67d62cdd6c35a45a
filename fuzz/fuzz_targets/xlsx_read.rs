//! Any bytes given to the usage-workbook reader: it returns a workbook or an error, never
//! panics, and stays within its limits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use usageflow_files::{ReadLimits, read_workbook};

/// The reader turns a panic of the spreadsheet parser (its cell-reference arithmetic overflows
/// on some inputs) into an error with `catch_unwind`; libFuzzer's hook would abort on such a
/// caught panic. A panic that escapes the reader still aborts the run.
static QUIET_CAUGHT_PANICS: std::sync::Once = std::sync::Once::new();

fuzz_target!(|data: &[u8]| {
    QUIET_CAUGHT_PANICS.call_once(|| std::panic::set_hook(Box::new(|_| {})));
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
