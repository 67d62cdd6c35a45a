//! Any query string given to the RQL parser: it returns a query or an error, never panics or
//! exhausts the stack, and a query it accepts stays within its limits.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../../crates/usageflow-api/src/rql.rs"]
#[allow(dead_code, unused_qualifications)]
mod rql;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let limits = rql::RqlLimits { max_length: 4096, max_depth: 32 };
    if let Ok(query) = rql::parse_limited(text, limits) {
        assert!(query.limit.is_none_or(|l| (1..=rql::MAX_LIMIT).contains(&l)));
        let _ = query.filter.as_ref().map(|f| f.fields());
    }
});
