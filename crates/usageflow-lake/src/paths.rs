//! Every object key Usageflow writes, in one place.
//!
//! ```text
//! workflow/files/{UF-id}/events/{seq:010}.json   usage-file event log (create-if-absent)
//! workflow/files/{UF-id}/state.json              latest folded state (a cache of the log)
//! lake/records/_delta_log/{version:020}.json     commits of the records table (create-if-absent)
//! lake/events/_delta_log/{version:020}.json      commits of the events table (create-if-absent)
//! lake/records/product={id}/month={YYYY-MM}/part-{partition}-{from}-{to}-{nonce}.parquet
//! lake/events/date={YYYY-MM-DD}/part-{partition}-{from}-{to}-{nonce}.parquet
//! ```
//! `records` and `events` are Delta tables with Hive-style `key=value` directories: any Delta
//! reader (Spark, Trino, Polars, DuckDB's `delta_scan`) reads them at a consistent version.
//! Their directories may hold files no commit names (a writer that died before committing):
//! read the tables through their logs, not by listing the files.

use object_store::path::Path;

/// Prefix of all usage-file workflow logs.
pub fn files_prefix() -> Path {
    Path::from("workflow/files")
}

/// Prefix of one usage file's objects.
pub fn file_prefix(file_id: &str) -> Path {
    files_prefix().join(file_id)
}

/// Event number `seq` (from 1) of a usage file's log. Zero-padded so that keys sort by `seq`.
pub fn file_event(file_id: &str, seq: u64) -> Path {
    file_prefix(file_id).join("events").join(format!("{seq:010}.json"))
}

/// The cached folded state of a usage file.
pub fn file_state(file_id: &str) -> Path {
    file_prefix(file_id).join("state.json")
}

/// Prefix of the usage-record table.
pub fn records_prefix() -> Path {
    Path::from("lake/records")
}

/// Prefix of the raw-event table.
pub fn events_prefix() -> Path {
    Path::from("lake/events")
}

fn part_name(partition: i32, from: i64, to: i64, nonce: &str) -> String {
    format!("part-{partition:05}-{from:020}-{to:020}-{nonce}.parquet")
}

/// A records data file for `product` and `month` (`YYYY-MM`) holding offsets `from..to` of a partition.
pub fn records_file(product: &str, month: &str, partition: i32, from: i64, to: i64, nonce: &str) -> Path {
    records_prefix()
        .join(format!("product={product}"))
        .join(format!("month={month}"))
        .join(part_name(partition, from, to, nonce))
}

/// A raw-event data file for `date` (`YYYY-MM-DD`) holding offsets `from..to` of a partition.
pub fn events_file(date: &str, partition: i32, from: i64, to: i64, nonce: &str) -> Path {
    events_prefix().join(format!("date={date}")).join(part_name(partition, from, to, nonce))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_by_sequence() {
        assert_eq!(
            file_event("UF-2026-11-0001-0002", 7).as_ref(),
            "workflow/files/UF-2026-11-0001-0002/events/0000000007.json"
        );
        assert!(file_event("UF-1", 9).as_ref() < file_event("UF-1", 10).as_ref());
        assert_eq!(file_state("UF-1").as_ref(), "workflow/files/UF-1/state.json");
        assert_eq!(
            records_file("PRD-1", "2026-11", 3, 10, 20, "ab12").as_ref(),
            "lake/records/product=PRD-1/month=2026-11/part-00003-00000000000000000010-00000000000000000020-ab12.parquet"
        );
    }
}
