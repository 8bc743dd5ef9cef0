//! Dense indices for the allocator's string ids, a growable bit set over them, scalar
//! quantity vectors, and the seeded generator that shuffles agents.
//!
//! The allocator's public API speaks in framework, role and agent id strings, as the master
//! does; internally every id is interned once into a small integer so that the hot loops of an
//! allocation cycle index vectors and test bits instead of hashing and comparing strings.
//! Scalar resource names are interned the same way, so that a share computation is a walk over
//! a short vector of integers. Nothing here knows about DRF, quota or filters.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

/// The multiply-rotate hash of rustc (FxHash): the allocator hashes small integers and short
/// ids millions of times per cycle, where SipHash's flooding resistance costs more than the
/// rest of the lookup. Keys are ids the master assigned or validated, not raw network input.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct FxHasher(u64);

impl FxHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }

    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// A `HashMap` with [`FxHasher`].
pub(crate) type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// Maps id strings to dense indices and back; freed indices are reused so that vectors indexed
/// by them stay as small as the live population.
#[derive(Debug, Clone, Default)]
pub(crate) struct Interner {
    by_name: FastMap<Arc<str>, u32>,
    names: Vec<Option<Arc<str>>>,
    free: Vec<u32>,
}

impl Interner {
    /// The index of `name`, if interned.
    pub(crate) fn get(&self, name: &str) -> Option<u32> {
        self.by_name.get(name).copied()
    }

    /// The index of `name`, interning it first when needed; the flag says it is new.
    pub(crate) fn intern(&mut self, name: &str) -> (u32, bool) {
        if let Some(&idx) = self.by_name.get(name) {
            return (idx, false);
        }
        let name: Arc<str> = Arc::from(name);
        let idx = match self.free.pop() {
            Some(idx) => {
                self.names[idx as usize] = Some(name.clone());
                idx
            }
            None => {
                // More than four billion live ids would exhaust memory long before this.
                let idx = u32::try_from(self.names.len()).unwrap_or(u32::MAX);
                self.names.push(Some(name.clone()));
                idx
            }
        };
        self.by_name.insert(name, idx);
        (idx, true)
    }

    /// Forgets `idx`; the caller must have dropped every reference to it.
    pub(crate) fn release(&mut self, idx: u32) {
        if let Some(name) = self.names.get_mut(idx as usize).and_then(Option::take) {
            self.by_name.remove(&name);
            self.free.push(idx);
        }
    }

    /// The name of a live index.
    pub(crate) fn name(&self, idx: u32) -> &Arc<str> {
        self.names[idx as usize].as_ref().expect("callers only hold live indices")
    }
}

/// A set of small integers as a bit vector that grows on demand.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct BitSet {
    words: Vec<u64>,
}

impl BitSet {
    /// True when `idx` is in the set.
    pub(crate) fn contains(&self, idx: u32) -> bool {
        let (w, b) = (idx as usize / 64, idx % 64);
        self.words.get(w).is_some_and(|word| word & (1 << b) != 0)
    }

    /// Adds `idx`; returns true when it was not there.
    pub(crate) fn insert(&mut self, idx: u32) -> bool {
        let (w, b) = (idx as usize / 64, idx % 64);
        if self.words.len() <= w {
            self.words.resize(w + 1, 0);
        }
        let was = self.words[w] & (1 << b) != 0;
        self.words[w] |= 1 << b;
        !was
    }

    /// Removes `idx`; returns true when it was there.
    pub(crate) fn remove(&mut self, idx: u32) -> bool {
        let (w, b) = (idx as usize / 64, idx % 64);
        match self.words.get_mut(w) {
            Some(word) if *word & (1 << b) != 0 => {
                *word &= !(1 << b);
                true
            }
            _ => false,
        }
    }

    /// Empties the set, keeping its memory.
    pub(crate) fn clear(&mut self) {
        self.words.iter_mut().for_each(|w| *w = 0);
    }

    /// How many members of `self` are not in `other`.
    pub(crate) fn count_minus(&self, other: &BitSet) -> usize {
        self.words
            .iter()
            .enumerate()
            .map(|(i, w)| (w & !other.words.get(i).copied().unwrap_or(0)).count_ones() as usize)
            .sum()
    }

    /// The members of `self` that are not in `other`, in increasing order.
    pub(crate) fn iter_minus<'a>(&'a self, other: &'a BitSet) -> impl Iterator<Item = u32> + 'a {
        self.words.iter().enumerate().flat_map(move |(i, w)| {
            let mut word = w & !other.words.get(i).copied().unwrap_or(0);
            std::iter::from_fn(move || {
                if word == 0 {
                    return None;
                }
                let bit = word.trailing_zeros();
                word &= word - 1;
                // `i` indexes words of a set of u32 members, so this cannot overflow.
                Some(i as u32 * 64 + bit)
            })
        })
    }
}

/// Scalar quantities in thousandths, indexed by interned resource name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Quantities(Vec<i64>);

/// A sparse list of (name index, thousandths), the scalar part of one `Resources` value.
pub(crate) type ScalarParts = Vec<(usize, i64)>;

impl Quantities {
    /// The amount of name `idx` (zero when never set).
    pub(crate) fn get(&self, idx: usize) -> i64 {
        self.0.get(idx).copied().unwrap_or(0)
    }

    /// Adds `parts`.
    pub(crate) fn add(&mut self, parts: &[(usize, i64)]) {
        for &(idx, amount) in parts {
            if self.0.len() <= idx {
                self.0.resize(idx + 1, 0);
            }
            self.0[idx] = self.0[idx].saturating_add(amount);
        }
    }

    /// Subtracts `parts`, stopping at zero: callers only remove what they added, and stopping
    /// keeps a bookkeeping slip from turning into a negative share.
    pub(crate) fn sub(&mut self, parts: &[(usize, i64)]) {
        for &(idx, amount) in parts {
            if let Some(held) = self.0.get_mut(idx) {
                *held = held.saturating_sub(amount).max(0);
            }
        }
    }

    /// The non-zero entries.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (usize, i64)> + '_ {
        self.0.iter().copied().enumerate().filter(|(_, v)| *v != 0)
    }

    /// True when every amount is zero.
    pub(crate) fn is_zero(&self) -> bool {
        self.0.iter().all(|v| *v == 0)
    }
}

/// A small, fast, seedable generator (SplitMix64). The allocator is sans-IO, so its only
/// randomness, the agent shuffle, comes from a seed the caller controls.
#[derive(Debug, Clone)]
pub(crate) struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator starting from `seed`.
    pub(crate) fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Fisher–Yates shuffle of `items`.
    pub(crate) fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            // The modulo bias is below 2^-40 for any realistic cluster size.
            let j = (self.next_u64() % (i as u64 + 1)) as usize;
            items.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interned_indices_are_dense_and_reused() {
        let mut ids = Interner::default();
        assert_eq!(ids.intern("a"), (0, true));
        assert_eq!(ids.intern("b"), (1, true));
        assert_eq!(ids.intern("a"), (0, false));
        ids.release(0);
        assert_eq!(ids.get("a"), None);
        assert_eq!(ids.intern("c"), (0, true));
        assert_eq!(&**ids.name(0), "c");
    }

    #[test]
    fn bit_set_difference() {
        let mut a = BitSet::default();
        let mut b = BitSet::default();
        for i in [0, 5, 64, 200] {
            a.insert(i);
        }
        b.insert(5);
        b.insert(300);
        assert!(a.contains(64) && !a.contains(65));
        assert_eq!(a.count_minus(&b), 3);
        assert_eq!(a.iter_minus(&b).collect::<Vec<_>>(), [0, 64, 200]);
        assert!(a.remove(64) && !a.remove(64));
        a.clear();
        assert_eq!(a.count_minus(&b), 0);
    }

    #[test]
    fn shuffles_are_reproducible() {
        let mut x: Vec<u32> = (0..20).collect();
        let mut y = x.clone();
        SplitMix64::new(7).shuffle(&mut x);
        SplitMix64::new(7).shuffle(&mut y);
        assert_eq!(x, y);
        assert_ne!(x, (0..20).collect::<Vec<_>>());
    }
}
