//! Every object key Usageflow writes, in one place.
//!
//! ```text
//! workflow/files/{UF-id}/events/{seq:010}.json   usage-file event log (create-if-absent)
//! workflow/files/{UF-id}/state.json              latest folded state (a cache of the log)
//! ```

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
    }
}
