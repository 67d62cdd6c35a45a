//! The usage records a worker is summing for one partition's batch.
//!
//! Every accepted event updates one record, and the records of a batch (tens of thousands
//! per partition) are spread over megabytes: looking a record up is a cache miss, paid in
//! full between one event and the next when the lookup follows the chain hash → control
//! bytes → entry of a general hash map. [`Records`] is an open-addressing table (linear
//! probing, at most half full) whose slots hold the keys themselves, so a record is nearly
//! always in its home slot, and [`Records::warm`] loads the home slots of a chunk's events
//! before they are added: those loads do not depend on one another, so the processor
//! overlaps their misses.

use crate::validate::{ItemKey, Valid};

/// Aggregation key of a usage record (the product and contract follow from the asset).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub(crate) struct AggKey {
    pub(crate) period_start: i64,
    pub(crate) asset: u32,
    /// Category id, 0 for none.
    pub(crate) category: u32,
    /// The item: a declared item's index, or a dynamic item's index with the top bit set.
    item: u32,
    /// Tier, −1 for none.
    pub(crate) tier: i8,
}

const DYNAMIC_ITEM: u32 = 1 << 31;

impl AggKey {
    /// The key of an accepted event in `category` (0 for none).
    pub(crate) fn of(valid: &Valid, category: u32) -> Self {
        let item = match valid.item {
            ItemKey::Declared(i) => i,
            ItemKey::Dynamic(i) => {
                assert!(i < DYNAMIC_ITEM, "fewer than 2^31 dynamic items");
                i | DYNAMIC_ITEM
            }
        };
        Self { period_start: valid.period_start, asset: valid.asset, category, item, tier: valid.tier.unwrap_or(-1) }
    }

    pub(crate) fn item(&self) -> ItemKey {
        if self.item & DYNAMIC_ITEM == 0 {
            ItemKey::Declared(self.item)
        } else {
            ItemKey::Dynamic(self.item & !DYNAMIC_ITEM)
        }
    }

    /// A 64-bit hash: the fields folded into two words, multiplied, and the product's halves
    /// combined, so that every bit of the key reaches the low bits the table uses.
    fn hash(&self) -> u64 {
        const A: u64 = 0x9e37_79b9_7f4a_7c15;
        const B: u64 = 0xc2b2_ae3d_27d4_eb4f;
        let x = (self.period_start as u64) ^ (u64::from(self.asset) << 32 | u64::from(self.category)).rotate_left(23);
        let y = u64::from(self.item) << 8 | u64::from(self.tier as u8);
        let product = u128::from(x ^ A) * u128::from(y ^ B);
        (product as u64) ^ ((product >> 64) as u64)
    }
}

/// An `i128` as two words: 8-byte aligned, where an `i128` field would align the whole slot
/// to 16 bytes.
#[derive(Debug, Clone, Copy, Default)]
struct Wide {
    low: u64,
    high: i64,
}

impl Wide {
    fn new(value: i128) -> Self {
        Self { low: value as u64, high: (value >> 64) as i64 }
    }

    fn get(self) -> i128 {
        (i128::from(self.high) << 64) | i128::from(self.low)
    }
}

/// A usage record's totals so far (its period's end follows from the key's product).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Agg {
    /// Events summed; 0 marks an empty slot.
    count: u32,
    has_amount: bool,
    first: i64,
    last: i64,
    quantity: Wide,
    /// Sum of the amounts; meaningful when `has_amount`.
    amount: Wide,
}

impl Agg {
    fn add(&mut self, valid: &Valid) {
        if self.count == 0 {
            (self.first, self.last) = (valid.start, valid.end);
        }
        self.quantity = Wide::new(self.quantity.get() + valid.quantity);
        if let Some(amount) = valid.amount {
            self.amount = Wide::new(self.amount.get() + amount);
            self.has_amount = true;
        }
        self.count += 1;
        self.first = self.first.min(valid.start);
        self.last = self.last.max(valid.end);
    }

    /// Events summed.
    pub(crate) fn count(&self) -> i64 {
        i64::from(self.count)
    }

    /// Sum of the quantities (10^-8 units).
    pub(crate) fn quantity(&self) -> i128 {
        self.quantity.get()
    }

    /// Sum of the amounts, if any event had one (10^-8 units).
    pub(crate) fn amount(&self) -> Option<i128> {
        self.has_amount.then(|| self.amount.get())
    }

    /// Earliest event start (µs).
    pub(crate) fn first(&self) -> i64 {
        self.first
    }

    /// Latest event end (µs).
    pub(crate) fn last(&self) -> i64 {
        self.last
    }
}

/// One slot: 80 bytes, the key (24) then the totals (56); the default is an empty slot
/// (count 0).
#[derive(Debug, Clone, Copy, Default)]
#[repr(C)]
struct Slot {
    key: AggKey,
    agg: Agg,
}

/// Usage records by key.
#[derive(Debug, Default)]
pub(crate) struct Records {
    slots: Vec<Slot>,
    len: usize,
}

impl Records {
    /// Adds an accepted event to its record.
    pub(crate) fn add(&mut self, key: AggKey, valid: &Valid) {
        if (self.len + 1) * 2 > self.slots.len() {
            self.grow();
        }
        let at = self.find(&key);
        let slot = &mut self.slots[at];
        if slot.agg.count == 0 {
            slot.key = key;
            self.len += 1;
        }
        slot.agg.add(valid);
    }

    /// Loads the home slots of `keys` ahead of adding them (the key and the count of each,
    /// which an 80-byte slot may hold on two cache lines). Called with many keys and nothing
    /// else in the loop, so that the loads overlap.
    pub(crate) fn warm<'k>(&self, keys: impl Iterator<Item = &'k AggKey>) {
        if self.slots.is_empty() {
            return;
        }
        let mask = self.slots.len() - 1;
        let touched = keys.fold(0u64, |acc, key| {
            let slot = &self.slots[key.hash() as usize & mask];
            acc ^ slot.key.period_start as u64 ^ u64::from(slot.agg.count)
        });
        std::hint::black_box(touched);
    }

    /// Records, in no particular order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&AggKey, &Agg)> {
        self.slots.iter().filter(|s| s.agg.count > 0).map(|s| (&s.key, &s.agg))
    }

    /// Number of records.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The slot holding `key`, or the empty slot where it belongs (the table is not full).
    fn find(&self, key: &AggKey) -> usize {
        let mask = self.slots.len() - 1;
        let mut i = key.hash() as usize & mask;
        loop {
            let slot = &self.slots[i];
            if slot.agg.count == 0 || slot.key == *key {
                return i;
            }
            i = (i + 1) & mask;
        }
    }

    fn grow(&mut self) {
        let size = (self.slots.len() * 2).max(1024);
        let old = std::mem::replace(&mut self.slots, vec![Slot::default(); size]);
        for slot in old.into_iter().filter(|s| s.agg.count > 0) {
            let at = self.find(&slot.key);
            self.slots[at] = slot;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    fn valid(asset: u32, item: ItemKey, tier: Option<i8>, start: i64, quantity: i128, amount: Option<i128>) -> Valid {
        Valid {
            product: 0,
            asset,
            item,
            quantity,
            amount,
            tier,
            start,
            end: start + 10,
            period_start: start - start.rem_euclid(3_600_000_000),
            period_end: start - start.rem_euclid(3_600_000_000) + 3_600_000_000,
        }
    }

    #[test]
    fn keys_and_totals_round_trip() {
        let v = valid(7, ItemKey::Dynamic(5), Some(2), 1_000, -(1i128 << 100), Some(3));
        let key = AggKey::of(&v, 4);
        assert_eq!(key.item(), ItemKey::Dynamic(5));
        assert_eq!(AggKey::of(&valid(7, ItemKey::Declared(5), None, 1_000, 1, None), 0).item(), ItemKey::Declared(5));
        let mut records = Records::default();
        records.add(key, &v);
        records.add(key, &valid(7, ItemKey::Dynamic(5), Some(2), 500, 1, None));
        let (k, agg) = records.iter().next().unwrap();
        assert_eq!(*k, key);
        assert_eq!((agg.count(), agg.quantity(), agg.amount()), (2, 1 - (1i128 << 100), Some(3)));
        assert_eq!((agg.first(), agg.last()), (500, 1_010));
        assert_eq!(size_of::<Slot>(), 80);
    }

    proptest! {
        /// Sums what a `HashMap` sums, through every growth of the table, for colliding and
        /// distinct keys, negative quantities and events with and without amounts.
        #[test]
        fn agrees_with_a_hash_map(
            events in prop::collection::vec(
                (0u32..50, 0u32..4, prop::bool::ANY, prop::option::of(0i8..3), -5i64..5, any::<i64>(), prop::option::of(any::<i64>())),
                0..3000,
            ),
        ) {
            let mut records = Records::default();
            let mut map: HashMap<AggKey, (i64, i128, Option<i128>, i64, i64)> = HashMap::new();
            for (asset, item, dynamic, tier, hour, quantity, amount) in events {
                let item = if dynamic { ItemKey::Dynamic(item) } else { ItemKey::Declared(item) };
                let v = valid(asset, item, tier, hour * 3_600_000_000 + i64::from(asset), i128::from(quantity), amount.map(i128::from));
                let key = AggKey::of(&v, asset % 3);
                records.warm(std::iter::once(&key));
                records.add(key, &v);
                let e = map.entry(key).or_insert((0, 0, None, v.start, v.end));
                e.0 += 1;
                e.1 += v.quantity;
                e.2 = match (e.2, v.amount) { (Some(a), Some(b)) => Some(a + b), (a, b) => a.or(b) };
                e.3 = e.3.min(v.start);
                e.4 = e.4.max(v.end);
            }
            prop_assert_eq!(records.len(), map.len());
            let got: HashMap<AggKey, _> =
                records.iter().map(|(k, a)| (*k, (a.count(), a.quantity(), a.amount(), a.first(), a.last()))).collect();
            prop_assert_eq!(got, map);
        }
    }
}
