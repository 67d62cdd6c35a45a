//! Any bytes given to the metering-event decoder (with and without CloudEvents headers):
//! an event or a rejection with a code, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use usageflow_ingest::decode::{CeHeaders, decode, parse_time};
use usageflow_ingest::fixed;

fuzz_target!(|data: &[u8]| {
    for headers in [CeHeaders::default(), CeHeaders { specversion: Some("1.0"), id: Some("ce"), time: Some("\"2026-11-25T10:00:00Z\"") }] {
        if let Ok(event) = decode(data, &headers) {
            let _ = fixed::parse(event.quantity);
            let _ = parse_time(event.start);
            let _ = parse_time(event.end);
        }
    }
});
