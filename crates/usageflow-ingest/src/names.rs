//! A map from catalogue names (product ids, asset ids, item MPNs and ids, and the MPNs of
//! dynamic items) to indexes, for the per-event lookups of validation.
//!
//! Names of up to 27 bytes are stored in the entries of a `hashbrown::HashTable` themselves
//! (32 bytes an entry), so a lookup compares against bytes in the table's own memory. A
//! `HashMap<String, _>` keeps each key in an allocation of its own: on the hot path that
//! comparison was a cache miss per lookup. Longer names go to an ordinary map.

use hashbrown::HashTable;
use hashbrown::hash_table::Entry;
use rustc_hash::FxHashMap;

/// Longest name stored in an entry.
const INLINE: usize = 27;

#[derive(Debug, Clone, Copy)]
struct Slot {
    bytes: [u8; INLINE],
    len: u8,
    value: u32,
}

impl Slot {
    fn name(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

/// Names to `u32` values; inserting a name again replaces its value.
#[derive(Debug, Clone, Default)]
pub(crate) struct Names {
    inline: HashTable<Slot>,
    long: FxHashMap<String, u32>,
}

fn hash(name: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(name)
}

impl Names {
    /// The value of `name`.
    pub(crate) fn get(&self, name: &str) -> Option<u32> {
        let bytes = name.as_bytes();
        if bytes.len() > INLINE {
            return self.long.get(name).copied();
        }
        self.inline.find(hash(bytes), |slot| slot.name() == bytes).map(|slot| slot.value)
    }

    /// Sets the value of `name`.
    pub(crate) fn insert(&mut self, name: &str, value: u32) {
        let bytes = name.as_bytes();
        if bytes.len() > INLINE {
            self.long.insert(name.to_owned(), value);
            return;
        }
        match self.inline.entry(hash(bytes), |slot| slot.name() == bytes, |slot| hash(slot.name())) {
            Entry::Occupied(mut found) => found.get_mut().value = value,
            Entry::Vacant(free) => {
                let mut slot = Slot { bytes: [0; INLINE], len: bytes.len() as u8, value };
                slot.bytes[..bytes.len()].copy_from_slice(bytes);
                free.insert(slot);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    #[test]
    fn short_long_empty_and_replaced_names() {
        let mut names = Names::default();
        assert_eq!(names.get("AS-1"), None);
        let long = "x".repeat(INLINE + 1);
        let edge = "y".repeat(INLINE);
        names.insert("AS-1", 1);
        names.insert("", 2);
        names.insert(&long, 3);
        names.insert(&edge, 4);
        names.insert("AS-1", 5);
        assert_eq!(names.get("AS-1"), Some(5));
        assert_eq!(names.get(""), Some(2));
        assert_eq!(names.get(&long), Some(3));
        assert_eq!(names.get(&edge), Some(4));
        assert_eq!(names.get("AS-"), None);
        assert_eq!(names.get("AS-10"), None);
        assert_eq!(names.get(&"x".repeat(INLINE)), None);
    }

    proptest! {
        /// Agrees with a `HashMap` on any sequence of inserts, for present and absent names,
        /// short and long, through every growth of the table.
        #[test]
        fn agrees_with_a_hash_map(
            inserts in prop::collection::vec(("[a-c]{0,3}|[A-Z0-9-]{20,34}", any::<u32>()), 0..300),
            probes in prop::collection::vec("[a-c]{0,3}|[A-Z0-9-]{20,34}", 0..100),
        ) {
            let mut names = Names::default();
            let mut map = HashMap::new();
            for (name, value) in &inserts {
                names.insert(name, *value);
                map.insert(name.clone(), *value);
            }
            for name in inserts.iter().map(|(n, _)| n).chain(&probes) {
                prop_assert_eq!(names.get(name), map.get(name).copied());
            }
        }
    }
}
