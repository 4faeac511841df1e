//! The gateway's two hashes, both stable across builds and processes (which
//! matters more than speed): [`fnv1a`] turns bytes into a key (a node's
//! rendezvous seed, spreading `Connect` by sid, the instance part of sids),
//! [`mix`] scores a (key, node) pair for rendezvous hashing.

pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// splitmix64's finalizer: a well-spread score from a key and a node seed.
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    #[test]
    fn known_values() {
        // The FNV reference values.
        assert_eq!(super::fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(super::fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        // splitmix64 (Vigna) from seed 0: its first output finalizes 0x9e37_79b9_7f4a_7c15.
        assert_eq!(super::mix(0x9e37_79b9_7f4a_7c15), 0xe220_a839_7b1d_cdaf);
    }
}
