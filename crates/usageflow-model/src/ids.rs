//! Connect-style identifiers, derived deterministically.
//!
//! * usage file `UF-YYYY-MM-NNNN-NNNN`: the eight digits are a hash of the file's natural key
//!   (vendor, product, contract, period, sequence); [`usage_file_id_candidates`] yields further
//!   candidates for the rare collision, and the workflow store claims an id with a
//!   create-if-absent write, so two files never share one;
//! * usage record `UR-YYYY-MM-NNNN-NNNN-NNNN-NNNN`: the file's eight digits followed by the
//!   record's position in the file (up to 10^8 records per file), so record ids are unique
//!   whenever file ids are, and recompiling a file gives the same ids;
//! * chunk `UFC-YYYY-MM-NNNN-NNNN-NNNN`: the file's digits and the chunk's number in the file;
//! * reconciliation `URC-YYYY-MM-NNNN-NNNN`: like a usage file id, from its natural key.

use sha2::{Digest, Sha256};

/// Eight decimal digits from a key and an attempt number.
fn digits8(key: &str, attempt: u32) -> u64 {
    let mut hasher = Sha256::new();
    hasher.update(key.as_bytes());
    hasher.update(b"\x00");
    hasher.update(attempt.to_be_bytes());
    let hash = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&hash[..8]);
    u64::from_be_bytes(first) % 100_000_000
}

fn format_hashed(prefix: &str, year: i32, month: u32, digits: u64) -> String {
    format!("{prefix}-{year:04}-{month:02}-{:04}-{:04}", digits / 10_000, digits % 10_000)
}

/// Candidate usage file ids for a natural key, best first; take the first one not yet claimed.
pub fn usage_file_id_candidates(year: i32, month: u32, natural_key: &str) -> impl Iterator<Item = String> + '_ {
    (0u32..).map(move |attempt| format_hashed("UF", year, month, digits8(natural_key, attempt)))
}

/// Candidate reconciliation ids for a natural key, best first.
pub fn reconciliation_id_candidates(year: i32, month: u32, natural_key: &str) -> impl Iterator<Item = String> + '_ {
    (0u32..).map(move |attempt| format_hashed("URC", year, month, digits8(natural_key, attempt)))
}

/// A malformed id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{id}` is not a valid {kind} id: expected {expected}")]
pub struct IdError {
    /// The text.
    pub id: String,
    /// What it should have been.
    pub kind: &'static str,
    /// The expected shape.
    pub expected: &'static str,
}

/// Checks `PREFIX-YYYY-MM` followed by `groups` groups of four digits.
fn check_shape(id: &str, prefix: &str, groups: usize) -> bool {
    let mut parts = id.split('-');
    parts.next() == Some(prefix)
        && parts.next().is_some_and(|y| y.len() == 4 && y.bytes().all(|b| b.is_ascii_digit()))
        && parts.next().is_some_and(|m| m.len() == 2 && m.bytes().all(|b| b.is_ascii_digit()))
        && (0..groups).all(|_| parts.next().is_some_and(|g| g.len() == 4 && g.bytes().all(|b| b.is_ascii_digit())))
        && parts.next().is_none()
}

/// Checks a usage file id (`UF-YYYY-MM-NNNN-NNNN`).
pub fn check_usage_file_id(id: &str) -> Result<(), IdError> {
    if check_shape(id, "UF", 2) {
        Ok(())
    } else {
        Err(IdError { id: id.to_owned(), kind: "usage file", expected: "UF-YYYY-MM-NNNN-NNNN" })
    }
}

/// Checks a usage record id (`UR-YYYY-MM-NNNN-NNNN-NNNN-NNNN`).
pub fn check_record_id(id: &str) -> Result<(), IdError> {
    if check_shape(id, "UR", 4) {
        Ok(())
    } else {
        Err(IdError { id: id.to_owned(), kind: "usage record", expected: "UR-YYYY-MM-NNNN-NNNN-NNNN-NNNN" })
    }
}

/// The id of the record at `position` (0-based) in a usage file.
///
/// # Panics
/// If `file_id` is not a usage file id or `position` ≥ 10^8 − 1 (the number `position + 1`
/// must fit the two four-digit groups).
pub fn record_id(file_id: &str, position: u64) -> String {
    check_usage_file_id(file_id).expect("a usage file id");
    assert!(position < 99_999_999, "a usage file holds fewer than 10^8 records");
    let n = position + 1;
    format!("UR{}-{:04}-{:04}", &file_id[2..], n / 10_000, n % 10_000)
}

/// The usage file a record id belongs to: the inverse of [`record_id`]; `None` for text that is
/// not a record id.
pub fn file_of_record(record: &str) -> Option<String> {
    check_record_id(record).ok()?;
    let file = format!("UF{}", record.get(2..record.len().checked_sub(10)?)?);
    check_usage_file_id(&file).ok().map(|()| file)
}

/// The id of chunk number `number` (1-based) of a usage file.
pub fn chunk_id(file_id: &str, number: u32) -> String {
    check_usage_file_id(file_id).expect("a usage file id");
    format!("UFC{}-{:04}", &file_id[2..], number % 10_000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_have_the_connect_shapes() {
        let uf = usage_file_id_candidates(2026, 11, "VA-1|PRD-1|CRD-1|2026-11-01|2026-11-30|0").next().unwrap();
        check_usage_file_id(&uf).unwrap();
        assert!(uf.starts_with("UF-2026-11-"), "{uf}");
        let ur = record_id(&uf, 0);
        check_record_id(&ur).unwrap();
        assert_eq!(&ur[..20], &format!("UR{}", &uf[2..])[..20]);
        assert!(ur.ends_with("-0000-0001"), "{ur}");
        assert!(record_id(&uf, 12_345_678).ends_with("-1234-5679"));
        assert!(chunk_id(&uf, 2).starts_with("UFC-2026-11-") && chunk_id(&uf, 2).ends_with("-0002"));
        assert!(check_usage_file_id("UF-2021-07-2818-2430").is_ok());
        assert!(check_usage_file_id("UF-2018-11-9878764342").is_err());
        assert!(check_record_id("UR-2021-01-2023-8696-9408-6767").is_ok());
        let err = check_record_id("UR-552-340-461").unwrap_err();
        assert_eq!(
            err.to_string(),
            "`UR-552-340-461` is not a valid usage record id: expected UR-YYYY-MM-NNNN-NNNN-NNNN-NNNN"
        );
    }

    #[test]
    fn ids_are_deterministic_and_candidates_differ() {
        let a: Vec<_> = usage_file_id_candidates(2026, 1, "key").take(50).collect();
        let b: Vec<_> = usage_file_id_candidates(2026, 1, "key").take(50).collect();
        assert_eq!(a, b);
        assert_eq!(a.iter().collect::<HashSet<_>>().len(), 50);
        assert_ne!(a[0], usage_file_id_candidates(2026, 1, "other").next().unwrap());
    }

    #[test]
    fn the_file_of_a_record_is_found_from_its_id() {
        let uf = "UF-2026-11-6626-4128";
        assert_eq!(file_of_record(&record_id(uf, 0)).as_deref(), Some(uf));
        assert_eq!(file_of_record(&record_id(uf, 12_345_678)).as_deref(), Some(uf));
        assert!(check_record_id(&record_id(uf, 99_999_998)).is_ok(), "the last position keeps the shape");
        assert_eq!(file_of_record("UR-nope"), None);
        assert_eq!(file_of_record("UF-2026-11-6626-4128"), None);
    }

    #[test]
    fn record_ids_of_one_file_never_collide() {
        let uf = "UF-2026-11-1234-5678";
        let ids: HashSet<_> = (0..100_000).map(|i| record_id(uf, i)).collect();
        assert_eq!(ids.len(), 100_000);
    }
}
