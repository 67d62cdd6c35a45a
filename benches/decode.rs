//! The ingester's per-event work on one thread, without Kafka: decoding generated events
//! (the scanner, with `serde_json` for what it declines) and validating them against the
//! sample catalogue. Prints the best of several passes, in nanoseconds per event.
//!
//! For reference it also parses the same payloads with `simd-json` (a port of simdjson: a
//! SIMD structural index, then a tape of every value, into reused buffers; each payload is
//! first copied, since simd-json parses in place). That is the cheapest complete JSON parse
//! at hand, so it bounds what a SIMD scanner could save over the project's one. The passes
//! are interleaved (each round runs every pass once), so that a machine whose speed drifts
//! affects all of them alike.
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

/// The fastest of `PASSES` runs of each pass over the events, per event, with what the pass
/// counted. The passes take turns within each round.
fn best(events: usize, passes: &mut [&mut dyn FnMut() -> usize]) -> Vec<(f64, usize)> {
    let mut best = vec![(f64::MAX, 0); passes.len()];
    for _ in 0..PASSES {
        for (pass, best) in passes.iter_mut().zip(&mut best) {
            let started = Instant::now();
            let count = black_box(pass());
            *best = (best.0.min(started.elapsed().as_secs_f64()), count);
        }
    }
    best.into_iter().map(|(s, count)| (s * 1e9 / events as f64, count)).collect()
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

    let mut validator = Validator::new(index.clone(), ValidationConfig::default());
    let (mut scratch, mut copy) = (Vec::new(), Vec::new());
    let mut buffers = simd_json::Buffers::default();
    let results = best(
        events,
        &mut [
            &mut || messages.iter().filter(|(payload, _)| decode(payload, &ce).is_ok()).count(),
            &mut || {
                messages
                    .iter()
                    .filter(|(payload, ts)| {
                        decode(payload, &ce).is_ok_and(|event| validator.validate(&event, *ts).is_ok())
                    })
                    .count()
            },
            &mut || {
                messages
                    .iter()
                    .filter(|(payload, _)| {
                        scratch.clear();
                        scratch.extend_from_slice(payload);
                        simd_json::to_tape_with_buffers(&mut scratch, &mut buffers).is_ok()
                    })
                    .count()
            },
            &mut || {
                messages
                    .iter()
                    .map(|(payload, _)| {
                        copy.clear();
                        copy.extend_from_slice(payload);
                        black_box(&copy).len()
                    })
                    .sum()
            },
        ],
    );
    println!(
        "# decode: {events} generated events, {} bytes on average, best of {PASSES} interleaved passes",
        bytes / events
    );
    let [(decode_ns, decoded), (both_ns, valid), (simd_ns, parsed), (copy_ns, _)] = results[..] else {
        unreachable!("four passes")
    };
    println!("decode               {decode_ns:>8.1} ns/event  ({decoded} decoded)");
    println!("decode and validate  {both_ns:>8.1} ns/event  ({valid} valid)");
    println!(
        "simd-json tape       {simd_ns:>8.1} ns/event  ({parsed} parsed; reference: copy and parse, no fields read)"
    );
    println!("  of which the copy  {copy_ns:>8.1} ns/event");
}
