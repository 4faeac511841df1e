//! Per-device acknowledgements (docs/delivery.md, "Devices"): a user's
//! devices' acknowledged positions with their bound (`--devices-per-user`,
//! the least recently acknowledging device forgotten first), and which
//! device each session is, so redelivery can send each session what its
//! own device has not acknowledged.
//!
//! The acks themselves name their device (`Msg.device`, set by the
//! gateway on every message of the session), so recording one needs no
//! lookup here; the session map only aims redelivery, and a session it
//! does not know (connected through another ws-api node, or past its
//! bound) is sent what any device of the user has not acknowledged.

use std::collections::{BTreeMap, HashMap};

use crate::presence::SessionKey;

/// One device's acknowledged offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceAck {
    pub device: String,
    pub n: u64,
}

/// A user's devices' acknowledged offsets (in memory), least recently
/// acknowledging first.
#[derive(Debug, Default)]
pub struct DeviceAcks(Vec<DeviceAck>);

/// What [`DeviceAcks::ack`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct DeviceAcked {
    /// Bytes the list grew by (a new device's id and offset).
    pub grew: usize,
    /// A device forgotten to stay within the bound: its id and the bytes
    /// given back.
    pub evicted: Option<(String, usize)>,
}

/// What one device costs in memory, near enough for a byte budget.
pub fn device_cost(device: &str) -> usize {
    device.len() + std::mem::size_of::<DeviceAck>()
}

impl DeviceAcks {
    /// `device` acknowledged up to `n` (its offset only moves forward);
    /// it becomes the most recent. A new device past `max` makes the
    /// least recent one forgotten.
    pub fn ack(&mut self, device: &str, n: u64, max: usize) -> DeviceAcked {
        let mut done = DeviceAcked::default();
        let at = match self.0.iter().position(|d| d.device == device) {
            Some(i) => {
                let mut d = self.0.remove(i);
                d.n = d.n.max(n);
                d
            }
            None => {
                done.grew = device_cost(device);
                DeviceAck {
                    device: device.to_owned(),
                    n,
                }
            }
        };
        self.0.push(at);
        if self.0.len() > max.max(1) {
            let old = self.0.remove(0);
            let cost = device_cost(&old.device);
            done.evicted = Some((old.device, cost));
        }
        done
    }

    pub fn get(&self, device: &str) -> Option<u64> {
        self.0.iter().find(|d| d.device == device).map(|d| d.n)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn to_vec(&self) -> Vec<DeviceAck> {
        self.0.clone()
    }
}

/// Sessions' devices remembered at most (about 150 bytes each): past it
/// the oldest is forgotten, and redelivery treats that session as one it
/// does not know.
pub const SESSIONS_MAX: usize = 200_000;

/// Which device each session connected with (`None`: it gave none), from
/// Connect and from its acks on this node, until Disconnect.
#[derive(Debug, Default)]
pub struct SessionDevices {
    by_session: HashMap<SessionKey, (Option<String>, u64)>,
    /// Insertion order, to forget the oldest past [`SESSIONS_MAX`].
    order: BTreeMap<u64, SessionKey>,
    next: u64,
}

impl SessionDevices {
    pub fn remember(&mut self, key: &SessionKey, device: Option<&str>) {
        if let Some((known, _)) = self.by_session.get(key)
            && known.as_deref() == device
        {
            return;
        }
        self.forget(key);
        self.next += 1;
        self.order.insert(self.next, key.clone());
        let entry = (device.map(str::to_owned), self.next);
        self.by_session.insert(key.clone(), entry);
        while self.by_session.len() > SESSIONS_MAX
            && let Some((_, oldest)) = self.order.pop_first()
        {
            self.by_session.remove(&oldest);
        }
    }

    pub fn forget(&mut self, key: &SessionKey) {
        if let Some((_, at)) = self.by_session.remove(key) {
            self.order.remove(&at);
        }
    }

    /// `Some(device)` for a session known here (`Some(None)`: no device).
    pub fn device_of(&self, key: &SessionKey) -> Option<Option<&str>> {
        self.by_session.get(key).map(|(d, _)| d.as_deref())
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.by_session.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_offsets_move_forward_and_the_least_recent_goes() {
        let mut acks = DeviceAcks::default();
        assert!(acks.ack("a", 5, 2).grew > 0);
        assert_eq!(acks.ack("a", 3, 2).grew, 0, "known: no growth");
        assert_eq!(acks.get("a"), Some(5), "never backwards");
        acks.ack("b", 1, 2);
        acks.ack("a", 6, 2); // a is now the most recent
        let done = acks.ack("c", 2, 2);
        assert_eq!(done.evicted.map(|(d, _)| d), Some("b".into()));
        assert_eq!(
            (acks.get("a"), acks.get("b"), acks.get("c")),
            (Some(6), None, Some(2))
        );
    }

    #[test]
    fn sessions_are_remembered_until_forgotten_and_bounded() {
        let key = |sid: &str| SessionKey {
            server: "gw#0".into(),
            sid: sid.into(),
        };
        let mut s = SessionDevices::default();
        s.remember(&key("1"), Some("phone"));
        s.remember(&key("2"), None);
        assert_eq!(s.device_of(&key("1")), Some(Some("phone")));
        assert_eq!(s.device_of(&key("2")), Some(None));
        assert_eq!(s.device_of(&key("3")), None);
        s.forget(&key("1"));
        assert_eq!(s.device_of(&key("1")), None);
        for i in 0..SESSIONS_MAX + 5 {
            s.remember(&key(&format!("x{i}")), None);
        }
        assert_eq!(s.len(), SESSIONS_MAX);
        assert_eq!(s.device_of(&key("2")), None, "the oldest forgotten");
    }
}
