//! A small, fast, non-cryptographic hasher for the hot path's maps (PFNs,
//! kernel addresses, stacks of them), in the manner of rustc's FxHash.
//!
//! The keys come from the kernel and from refwatch's own recordings, not from
//! an adversary who could aim for collisions, so the denial-of-service
//! resistance of the standard `RandomState` (SipHash) buys nothing here and
//! costs a large part of the per-event budget.

use std::{
    collections::{HashMap, HashSet},
    hash::{BuildHasherDefault, Hasher},
};

/// The multiplier of rustc-hash 2.
const K: u64 = 0xf135_7aea_2e62_a9c5;

/// FxHash-style hasher: add, then multiply, per word; rotated at the end so
/// the well-mixed high bits reach the low bits that pick the bucket.
#[derive(Debug, Default, Clone, Copy)]
pub struct FastHasher {
    hash: u64,
}

impl FastHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = self.hash.wrapping_add(word).wrapping_mul(K);
    }
}

impl Hasher for FastHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(w));
        }
        // Keeps "ab" + "c" apart from "a" + "bc".
        self.add(bytes.len() as u64);
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u16(&mut self, i: u16) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.hash.rotate_left(26)
    }
}

/// Builds [`FastHasher`]s.
pub type FastBuild = BuildHasherDefault<FastHasher>;
/// A `HashMap` with [`FastHasher`].
pub type FastMap<K, V> = HashMap<K, V, FastBuild>;
/// A `HashSet` with [`FastHasher`].
pub type FastSet<T> = HashSet<T, FastBuild>;

#[cfg(test)]
mod tests {
    use std::hash::{BuildHasher, Hash};

    use super::*;

    fn hash<T: Hash + ?Sized>(v: &T) -> u64 {
        FastBuild::default().hash_one(v)
    }

    #[test]
    fn equal_keys_hash_equal_and_neighbours_differ() {
        assert_eq!(hash(&0x40000u64), hash(&0x40000u64));
        assert_ne!(hash(&0x40000u64), hash(&0x40001u64));
        let a: &[u64] = &[1, 2, 3];
        assert_eq!(hash(a), hash(&vec![1u64, 2, 3][..]));
        assert_ne!(hash(a), hash(&[1u64, 2][..]));
        assert_ne!(hash("ab"), hash("abc"));
        // Sequential PFNs spread over the low bits that pick a bucket.
        let buckets: FastSet<u64> = (0..1024u64).map(|p| hash(&p) & 1023).collect();
        assert!(buckets.len() > 500, "{}", buckets.len());
    }
}
