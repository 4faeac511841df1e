//! Session ids: `<instance>-<core>-<slot>`, unique across cores, restarts and
//! gateway instances, and opaque to ws-api.
//!
//! `instance` mixes a hash of the node identity with the boot epoch in
//! milliseconds, so two gateways, or one gateway restarted, never hand out the
//! same sid. `core` lets any core route a downstream message to the core that
//! owns the session without a shared table. `slot` is the per-core session
//! table key, which carries a generation, so a stale sid never reaches the
//! session that later reuses its slot.

use std::fmt;

/// What makes this process's sids unique among all gateway processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Instance(u64);

impl Instance {
    /// `node` is the advertised identity (host:port); `epoch_ms` the start time.
    pub fn new(node: &str, epoch_ms: u64) -> Self {
        let node_hash = crate::hash::fnv1a(node.as_bytes()) >> 32;
        Instance((node_hash << 32) ^ (epoch_ms & 0xffff_ffff_ffff))
    }
}

/// A decoded session id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sid {
    pub instance: Instance,
    pub core: usize,
    pub slot: usize,
}

/// Why a sid from the wire does not name a session of this process.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SidError {
    #[error("malformed sid")]
    Malformed,
    #[error("sid belongs to another gateway instance")]
    ForeignInstance,
}

impl Sid {
    /// Parses `text` and checks that it was issued by `instance`.
    pub fn parse(text: &str, instance: Instance) -> Result<Sid, SidError> {
        let mut parts = text.splitn(3, '-');
        let mut next_hex = || {
            parts
                .next()
                .and_then(|p| u64::from_str_radix(p, 16).ok())
                .ok_or(SidError::Malformed)
        };
        let inst = Instance(next_hex()?);
        let core = usize::try_from(next_hex()?).map_err(|_| SidError::Malformed)?;
        let slot = usize::try_from(next_hex()?).map_err(|_| SidError::Malformed)?;
        if inst != instance {
            return Err(SidError::ForeignInstance);
        }
        Ok(Sid {
            instance: inst,
            core,
            slot,
        })
    }
}

impl fmt::Display for Sid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:016x}-{:x}-{:x}",
            self.instance.0, self.core, self.slot
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let inst = Instance::new("10.0.0.5:8080", 1_700_000_000_123);
        let sid = Sid {
            instance: inst,
            core: 3,
            slot: 0x4000_0012,
        };
        assert_eq!(Sid::parse(&sid.to_string(), inst), Ok(sid));
    }

    #[test]
    fn differs_across_restarts_and_nodes() {
        let a = Instance::new("10.0.0.5:8080", 1);
        assert_ne!(a, Instance::new("10.0.0.5:8080", 2));
        assert_ne!(a, Instance::new("10.0.0.6:8080", 1));
        let sid = Sid {
            instance: a,
            core: 0,
            slot: 1,
        };
        let other = Instance::new("10.0.0.5:8080", 2);
        assert_eq!(
            Sid::parse(&sid.to_string(), other),
            Err(SidError::ForeignInstance)
        );
    }

    #[test]
    fn rejects_garbage() {
        let inst = Instance::new("n", 1);
        for bad in [
            "",
            "zz",
            "1-2",
            "1-2-x",
            "--",
            "1-2-3-4",
            "ffffffffffffffffff-1-1",
        ] {
            assert!(Sid::parse(bad, inst).is_err(), "{bad:?}");
        }
    }
}
