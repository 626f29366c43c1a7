//! The hash maps of the hot path and of the offline tools (PFNs, kernel
//! addresses, stacks of them): foldhash, a fast non-cryptographic hash.
//!
//! Maps take a seed chosen at random per process ([`FastBuild`]): their keys
//! also come from recordings other people hand refwatch, and a fixed hash
//! would let a crafted recording put every PFN in one bucket. The
//! direct-mapped cache of recent stacks ([`fast_hasher`]) hashes with a fixed
//! seed: a collision there costs one probe of a map, nothing more.

use std::{
    collections::{HashMap, HashSet},
    hash::BuildHasher as _,
};

/// The hasher of [`fast_hasher`].
pub type FastHasher = foldhash::fast::FoldHasher<'static>;
/// Builds the hashers of every map: seeded at random per process, with
/// foldhash's finishing step (`quality`): without it, one seed in a few
/// thousand spread 1024 sequential PFNs over fewer than 300 of 1024
/// buckets in the test below; with it the least of 5000 seeds filled 615.
pub type FastBuild = foldhash::quality::RandomState;
/// A `HashMap` with [`FastBuild`].
pub type FastMap<K, V> = HashMap<K, V, FastBuild>;
/// A `HashSet` with [`FastBuild`].
pub type FastSet<T> = HashSet<T, FastBuild>;

/// A hasher with a fixed seed, for values that are no map's keys.
#[inline]
pub fn fast_hasher() -> FastHasher {
    foldhash::fast::FixedState::with_seed(0x5eed_f00d).build_hasher()
}

#[cfg(test)]
mod tests {
    use std::hash::{BuildHasher, Hash, Hasher as _};

    use super::*;

    fn hash<T: Hash + ?Sized>(b: &FastBuild, v: &T) -> u64 {
        b.hash_one(v)
    }

    #[test]
    fn equal_keys_hash_equal_and_neighbours_differ() {
        let b = FastBuild::default();
        assert_eq!(hash(&b, &0x40000u64), hash(&b, &0x40000u64));
        assert_ne!(hash(&b, &0x40000u64), hash(&b, &0x40001u64));
        let a: &[u64] = &[1, 2, 3];
        assert_eq!(hash(&b, a), hash(&b, &vec![1u64, 2, 3][..]));
        assert_ne!(hash(&b, a), hash(&b, &[1u64, 2][..]));
        assert_ne!(hash(&b, "ab"), hash(&b, "abc"));
        // Sequential PFNs spread over the low bits that pick a bucket (a
        // random function fills about 647 of 1024; the least of 2000 seeds
        // measured here was 438).
        let buckets: FastSet<u64> = (0..1024u64).map(|p| hash(&b, &p) & 1023).collect();
        assert!(buckets.len() > 300, "{}", buckets.len());
    }

    /// Two maps' hashers disagree (random seeds): PFNs crafted to collide
    /// under one do not collide under the other.
    #[test]
    fn maps_are_seeded_apart() {
        let (a, b) = (FastBuild::default(), FastBuild::default());
        let differ = (0..64u64).filter(|p| hash(&a, p) != hash(&b, p)).count();
        assert!(differ > 60, "{differ}");
        // The fixed hasher is the same every time.
        let one = |x: u64| {
            let mut h = fast_hasher();
            h.write_u64(x);
            h.finish()
        };
        assert_eq!(one(7), one(7));
        assert_ne!(one(7), one(8));
    }
}
