//! Maps keyed by addresses (a chunk's, a piece's), hashed by one
//! multiplication: the bodies' caches look up thousands of them per body,
//! and addresses are distinct and spread already, so SipHash's defence
//! against chosen keys buys nothing there (no key comes from a client).

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};

/// A map keyed by addresses (or tuples of them and lengths).
pub(crate) type AddressMap<K, V> = HashMap<K, V, ByAddress>;

/// An empty [`AddressMap`] with room for `n` entries.
pub(crate) fn with_room<K, V>(n: usize) -> AddressMap<K, V> {
    HashMap::with_capacity_and_hasher(n, ByAddress)
}

/// Builds [`AddressHasher`]s.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ByAddress;

impl BuildHasher for ByAddress {
    type Hasher = AddressHasher;
    fn build_hasher(&self) -> AddressHasher {
        AddressHasher(0)
    }
}

/// Fibonacci hashing: each word is mixed in by one multiplication.
#[derive(Debug, Default)]
pub(crate) struct AddressHasher(u64);

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

impl Hasher for AddressHasher {
    fn finish(&self) -> u64 {
        // An address's low bits are alignment (zeros), and stay zeros in a
        // product's low bits; the table picks a bucket by the low bits, so
        // the product's well-mixed high half comes down.
        self.0.rotate_left(32)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(GOLDEN);
        }
    }

    fn write_usize(&mut self, n: usize) {
        self.0 = (self.0 ^ n as u64).wrapping_mul(GOLDEN);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Aligned addresses spread over the buckets a small table picks by
    /// the low bits of the hash.
    #[test]
    fn aligned_addresses_spread_over_the_buckets() {
        let buckets = 64;
        let mut used = vec![0usize; buckets];
        for n in 0..1024usize {
            let address = 0x7f00_0000_0000 + n * 64;
            let hash = ByAddress.hash_one(address);
            used[(hash as usize) % buckets] += 1;
        }
        // 16 per bucket if even; none empty and none over three times that.
        assert!(used.iter().all(|&u| (1..=48).contains(&u)), "{used:?}");
    }

    /// A pair's two words both count.
    #[test]
    fn both_words_of_a_pair_count() {
        assert_ne!(
            ByAddress.hash_one((8usize, 1usize)),
            ByAddress.hash_one((8usize, 2usize))
        );
        assert_ne!(
            ByAddress.hash_one((8usize, 1usize)),
            ByAddress.hash_one((16usize, 1usize))
        );
    }
}
