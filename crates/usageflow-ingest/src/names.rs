//! A map from catalogue names (product ids, asset ids, item MPNs and ids, and the MPNs of
//! dynamic items) to indexes, for the per-event lookups of validation.
//!
//! Names of up to 27 bytes are stored in the table's slots themselves (32 bytes a slot, open
//! addressing, at most half full), so a lookup compares against bytes on the slot's own cache
//! line. A `HashMap<String, _>` keeps each key in an allocation of its own: on the hot path
//! that comparison was a cache miss per lookup. Longer names go to an ordinary map.

use rustc_hash::FxHashMap;

/// Longest name stored in a slot.
const INLINE: usize = 27;
/// `len` of an empty slot.
const EMPTY: u8 = u8::MAX;

#[derive(Debug, Clone, Copy)]
struct Slot {
    bytes: [u8; INLINE],
    len: u8,
    value: u32,
}

const EMPTY_SLOT: Slot = Slot { bytes: [0; INLINE], len: EMPTY, value: 0 };

/// Names to `u32` values; inserting a name again replaces its value.
#[derive(Debug, Clone, Default)]
pub(crate) struct Names {
    slots: Vec<Slot>,
    inline: usize,
    long: FxHashMap<String, u32>,
}

fn hash(name: &[u8]) -> usize {
    xxhash_rust::xxh3::xxh3_64(name) as usize
}

impl Names {
    /// The value of `name`.
    pub(crate) fn get(&self, name: &str) -> Option<u32> {
        let bytes = name.as_bytes();
        if bytes.len() > INLINE {
            return self.long.get(name).copied();
        }
        if self.slots.is_empty() {
            return None;
        }
        let slot = &self.slots[self.find(bytes)];
        (slot.len != EMPTY).then_some(slot.value)
    }

    /// Sets the value of `name`.
    pub(crate) fn insert(&mut self, name: &str, value: u32) {
        let bytes = name.as_bytes();
        if bytes.len() > INLINE {
            self.long.insert(name.to_owned(), value);
            return;
        }
        if (self.inline + 1) * 2 > self.slots.len() {
            let grown = vec![EMPTY_SLOT; (self.slots.len() * 2).max(16)];
            let old = std::mem::replace(&mut self.slots, grown);
            for slot in old.into_iter().filter(|s| s.len != EMPTY) {
                let at = self.find(&slot.bytes[..usize::from(slot.len)]);
                self.slots[at] = slot;
            }
        }
        let at = self.find(bytes);
        let slot = &mut self.slots[at];
        if slot.len == EMPTY {
            self.inline += 1;
            slot.bytes[..bytes.len()].copy_from_slice(bytes);
            slot.len = bytes.len() as u8;
        }
        slot.value = value;
    }

    /// The slot holding `bytes`, or the empty slot where it belongs (the table is not empty).
    fn find(&self, bytes: &[u8]) -> usize {
        let mask = self.slots.len() - 1;
        let mut i = hash(bytes) & mask;
        loop {
            let slot = &self.slots[i];
            if slot.len == EMPTY || (usize::from(slot.len) == bytes.len() && &slot.bytes[..bytes.len()] == bytes) {
                return i;
            }
            i = (i + 1) & mask;
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
