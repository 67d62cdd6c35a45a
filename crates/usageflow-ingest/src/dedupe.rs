//! The set of event ids seen, shared by the workers.
//!
//! Ids are 128-bit XXH3 digests of product and event id ([`event_key`]), so their bits are
//! already uniform: the top six choose one of 64 shards, the low bits the slot in that shard's
//! open-addressing table (linear probing, ids stored in the slots themselves, at most 5/8 full).
//! An insert therefore touches one slot's cache line (rarely the next), where a general hash set
//! reads a control byte and then the slot: on 10 M ids neither stays in cache, so the misses are
//! what an insert costs.
//!
//! Workers insert a chunk's ids at once ([`Dedupe::insert_batch`]): grouped by shard, one lock
//! per shard, in a tight loop whose independent misses the processor overlaps. Inserted one by
//! one between the decoding of events, each miss was paid in full.

use std::sync::{Mutex, MutexGuard};

/// Shards (a power of two): the top `SHARD_BITS` bits of an id choose one.
const SHARD_BITS: u32 = 6;
const SHARDS: usize = 1 << SHARD_BITS;
/// Slots of an empty shard's first table.
const FIRST_SLOTS: usize = 1 << 10;

/// The key of an event id: a 128-bit digest of the product and the id.
///
/// The digest of `product`, a zero byte and `id`: hashed in one call from a copy on the stack
/// when they fit in 256 bytes (the usual case; the streaming hasher costs more per event than
/// the copy), through the streaming hasher otherwise. Both give the same digest.
pub(crate) fn event_key(product: &str, id: &str) -> u128 {
    let (product, id) = (product.as_bytes(), id.as_bytes());
    let len = product.len() + 1 + id.len();
    if len <= 256 {
        let mut bytes = [0u8; 256];
        bytes[..product.len()].copy_from_slice(product);
        bytes[product.len() + 1..len].copy_from_slice(id);
        return xxhash_rust::xxh3::xxh3_128(&bytes[..len]);
    }
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(product);
    h.update(&[0]);
    h.update(id);
    h.digest128()
}

/// One shard: an open-addressing table of ids; 0 marks an empty slot (the id 0 has a flag).
#[derive(Debug, Default)]
struct IdTable {
    slots: Vec<u128>,
    len: usize,
    has_zero: bool,
}

impl IdTable {
    /// Whether `id` is new (and now remembered).
    fn insert(&mut self, id: u128) -> bool {
        if id == 0 {
            return !std::mem::replace(&mut self.has_zero, true);
        }
        // Grow before the table is more than 5/8 full, so that probe runs stay short.
        if (self.len + 1) * 8 > self.slots.len() * 5 {
            self.grow();
        }
        let mask = self.slots.len() - 1;
        let mut i = id as usize & mask;
        loop {
            let slot = self.slots[i];
            if slot == id {
                return false;
            }
            if slot == 0 {
                self.slots[i] = id;
                self.len += 1;
                return true;
            }
            i = (i + 1) & mask;
        }
    }

    /// Doubles the table and inserts the ids again (at most 5/16 full afterwards, so none of
    /// these inserts grows it).
    fn grow(&mut self) {
        let slots = (self.slots.len() * 2).max(FIRST_SLOTS);
        let old = std::mem::replace(&mut self.slots, vec![0; slots]);
        self.len = 0;
        for id in old.into_iter().filter(|&id| id != 0) {
            self.insert(id);
        }
    }

    /// Loads the home slots of `ids` ahead of their inserts: these loads are independent of
    /// one another, so the processor overlaps their cache misses, and the inserts that follow
    /// find the slots cached instead of paying each miss in turn.
    fn warm(&self, ids: impl Iterator<Item = u128>) {
        let mask = self.slots.len().wrapping_sub(1);
        let touched = ids.fold(0u128, |acc, id| acc | self.slots.get(id as usize & mask).copied().unwrap_or(0));
        std::hint::black_box(touched);
    }

    fn len(&self) -> usize {
        self.len + usize::from(self.has_zero)
    }
}

/// One shard alone on its cache lines, so that workers locking different shards do not
/// contend for the same line.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Shard(Mutex<IdTable>);

/// Event keys seen, shared by the workers: 64 shards, each behind its own lock.
#[derive(Debug)]
pub(crate) struct Dedupe {
    shards: Vec<Shard>,
}

/// Scratch space of [`Dedupe::insert_batch`], kept by its caller between batches.
#[derive(Debug, Default)]
pub(crate) struct BatchScratch {
    /// Positions in the batch, grouped by shard (in batch order within a shard).
    order: Vec<u32>,
    /// Where each shard's group starts in `order`.
    starts: Vec<u32>,
}

impl Default for Dedupe {
    fn default() -> Self {
        Self { shards: (0..SHARDS).map(|_| Shard::default()).collect() }
    }
}

impl Dedupe {
    fn shard_of(id: u128) -> usize {
        (id >> (128 - SHARD_BITS)) as usize
    }

    fn lock(&self, shard: usize) -> MutexGuard<'_, IdTable> {
        self.shards[shard].0.lock().expect("dedupe shard")
    }

    /// Whether `id` is new (and now remembered).
    #[cfg(test)]
    pub(crate) fn insert(&self, id: u128) -> bool {
        self.lock(Self::shard_of(id)).insert(id)
    }

    /// Inserts `ids` in order; `fresh[i]` tells whether `ids[i]` was new (an id repeated within
    /// the batch is new only the first time).
    pub(crate) fn insert_batch(&self, ids: &[u128], fresh: &mut Vec<bool>, scratch: &mut BatchScratch) {
        fresh.clear();
        fresh.resize(ids.len(), false);
        // Counting sort of the positions by shard; stable, so a shard sees its ids in order.
        let starts = &mut scratch.starts;
        starts.clear();
        starts.resize(SHARDS + 1, 0);
        for &id in ids {
            starts[Self::shard_of(id) + 1] += 1;
        }
        for s in 0..SHARDS {
            starts[s + 1] += starts[s];
        }
        let order = &mut scratch.order;
        order.clear();
        order.resize(ids.len(), 0);
        let mut next: [u32; SHARDS] = [0; SHARDS];
        next.copy_from_slice(&starts[..SHARDS]);
        for (pos, &id) in ids.iter().enumerate() {
            let s = Self::shard_of(id);
            order[next[s] as usize] = pos as u32;
            next[s] += 1;
        }
        for s in 0..SHARDS {
            let group = &order[starts[s] as usize..starts[s + 1] as usize];
            if group.is_empty() {
                continue;
            }
            let mut table = self.lock(s);
            table.warm(group.iter().map(|&pos| ids[pos as usize]));
            for &pos in group {
                fresh[pos as usize] = table.insert(ids[pos as usize]);
            }
        }
    }

    /// Remembers `ids` (loaded from the lake), 64 Ki at a time so that the scratch space
    /// stays small however many ids a restart loads.
    pub(crate) fn extend(&self, ids: &[u128]) {
        let mut fresh = Vec::new();
        let mut scratch = BatchScratch::default();
        for batch in ids.chunks(1 << 16) {
            self.insert_batch(batch, &mut fresh, &mut scratch);
        }
    }

    /// Ids remembered.
    pub(crate) fn len(&self) -> usize {
        (0..SHARDS).map(|s| self.lock(s).len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    #[test]
    fn keys_of_short_and_long_ids_are_the_streaming_digest() {
        for id in ["e-1".to_owned(), "x".repeat(250), "y".repeat(251), "z".repeat(4000)] {
            let mut h = xxhash_rust::xxh3::Xxh3::new();
            h.update(b"PRD-1");
            h.update(&[0]);
            h.update(id.as_bytes());
            assert_eq!(event_key("PRD-1", &id), h.digest128(), "{} bytes", id.len());
        }
        assert_ne!(event_key("PRD-1", "a"), event_key("PRD-1a", ""));
    }

    #[test]
    fn zero_and_collisions_in_one_slot_are_kept_apart() {
        let d = Dedupe::default();
        assert!(d.insert(0));
        assert!(!d.insert(0));
        // Same shard, same low bits: they probe the same slot first.
        let a = 7u128;
        let b = 7u128 | (1 << 100);
        assert!(d.insert(a));
        assert!(d.insert(b));
        assert!(!d.insert(a));
        assert!(!d.insert(b));
        assert_eq!(d.len(), 3);
    }

    #[test]
    fn growth_keeps_every_id() {
        let d = Dedupe::default();
        let ids: Vec<u128> = (0..200_000u128).map(|i| event_key("PRD-1", &i.to_string())).collect();
        let mut fresh = Vec::new();
        let mut scratch = BatchScratch::default();
        for chunk in ids.chunks(1000) {
            d.insert_batch(chunk, &mut fresh, &mut scratch);
            assert!(fresh.iter().all(|&f| f));
        }
        assert_eq!(d.len(), ids.len());
        for chunk in ids.chunks(777) {
            d.insert_batch(chunk, &mut fresh, &mut scratch);
            assert!(fresh.iter().all(|&f| !f));
        }
    }

    #[test]
    fn ids_loaded_from_the_lake_are_duplicates() {
        let d = Dedupe::default();
        let ids: Vec<u128> = (0..150_000u128).map(|i| event_key("PRD-2", &format!("e-{i}"))).collect();
        d.extend(&ids);
        assert_eq!(d.len(), ids.len());
        let mut fresh = Vec::new();
        d.insert_batch(&[ids[0], event_key("PRD-2", "new"), ids[149_999]], &mut fresh, &mut BatchScratch::default());
        assert_eq!(fresh, [false, true, false]);
    }

    proptest! {
        /// Batches give the same answers as a `HashSet` fed one id at a time, with ids drawn
        /// from a small pool (many repeats, within and across batches) and crowded into few
        /// shards and slots.
        #[test]
        fn batches_agree_with_a_hash_set(
            batches in prop::collection::vec(
                prop::collection::vec((0u8..4, 0u16..300, any::<bool>()), 0..200),
                1..20,
            )
        ) {
            let d = Dedupe::default();
            let mut seen = HashSet::new();
            let mut fresh = Vec::new();
            let mut scratch = BatchScratch::default();
            for batch in batches {
                let ids: Vec<u128> = batch
                    .iter()
                    .map(|&(shard, low, high)| (u128::from(shard) << 122) | u128::from(low) | (u128::from(high) << 64))
                    .collect();
                d.insert_batch(&ids, &mut fresh, &mut scratch);
                let expected: Vec<bool> = ids.iter().map(|&id| seen.insert(id)).collect();
                prop_assert_eq!(&fresh, &expected);
            }
            prop_assert_eq!(d.len(), seen.len());
        }
    }
}
