//! The ingester's per-event work on one thread, without Kafka: decoding generated events
//! (the scanner, with `serde_json` for what it declines) and validating them against the
//! sample catalogue. Prints the best of several passes, in nanoseconds per event.
//!
//! ```sh
//! cargo bench --bench decode
//! USAGEFLOW_BENCH_EVENTS=500000 cargo bench --bench decode
//! ```

#![allow(clippy::print_stdout, clippy::float_arithmetic)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::hint::black_box;
use std::time::Instant;

use usageflow_ingest::decode::{CeHeaders, decode};
use usageflow_ingest::loadgen::Generator;
use usageflow_ingest::{ValidationConfig, Validator};

const PASSES: usize = 7;

/// The fastest of `PASSES` runs of `pass` over the events, per event.
fn best(events: usize, mut pass: impl FnMut() -> usize) -> (f64, usize) {
    let mut best = f64::MAX;
    let mut count = 0;
    for _ in 0..PASSES {
        let started = Instant::now();
        count = black_box(pass());
        best = best.min(started.elapsed().as_secs_f64());
    }
    (best * 1e9 / events as f64, count)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("decode: benchmark");
        return;
    }
    let events: usize = std::env::var("USAGEFLOW_BENCH_EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(200_000);
    let index = support::sample_index();
    let config = support::bench_mix(events as u64);
    let mut generator = Generator::new(&index, config);
    // The payloads one after the other in one buffer, as the ingester's chunks hold them.
    let mut data = Vec::new();
    let mut spans: Vec<(std::ops::Range<usize>, i64)> = Vec::with_capacity(events);
    while spans.len() < events {
        generator.next(|_key, payload, ts_ms| {
            spans.push((data.len()..data.len() + payload.len(), ts_ms * 1000));
            data.extend_from_slice(payload);
        });
    }
    let messages: Vec<(&[u8], i64)> = spans.into_iter().map(|(span, ts)| (&data[span], ts)).collect();
    let bytes = data.len();
    let ce = CeHeaders::default();

    let (decode_ns, decoded) =
        best(events, || messages.iter().filter(|(payload, _)| decode(payload, &ce).is_ok()).count());
    let mut validator = Validator::new(index.clone(), ValidationConfig::default());
    let (both_ns, valid) = best(events, || {
        messages
            .iter()
            .filter(|(payload, ts)| decode(payload, &ce).is_ok_and(|event| validator.validate(&event, *ts).is_ok()))
            .count()
    });
    println!("# decode: {events} generated events, {} bytes on average, best of {PASSES} passes", bytes / events);
    println!("decode               {decode_ns:>8.1} ns/event  ({decoded} decoded)");
    println!("decode and validate  {both_ns:>8.1} ns/event  ({valid} valid)");
}
