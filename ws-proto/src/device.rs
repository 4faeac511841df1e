//! A client's device id (docs/delivery.md, "Devices"): what keeps
//! acknowledged positions per device rather than per user. The gateway
//! checks it at the upgrade; ws-api checks it again before it keys
//! anything by it.

/// The longest device id, in bytes.
pub const MAX_DEVICE_LEN: usize = 64;

/// What a device id is, said once for the refusal and the docs.
pub const DEVICE_RULE: &str = "device id must be 1-64 characters of A-Z a-z 0-9 . _ -";

/// A device id: 1–64 bytes of `[A-Za-z0-9._-]`, so it fits a subprotocol
/// entry, a query, a header and a Redis hash field as it is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Device(String);

impl Device {
    /// Checks `id`.
    pub fn parse(id: &str) -> Option<Device> {
        let valid = !id.is_empty()
            && id.len() <= MAX_DEVICE_LEN
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        valid.then(|| Device(id.to_owned()))
    }

    /// Parses the subprotocol entry `device.<id>`.
    pub fn from_subprotocol(entry: &str) -> Option<Device> {
        Device::parse(entry.strip_prefix("device.")?)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_ids_are_checked() {
        let longest = "a".repeat(MAX_DEVICE_LEN);
        for good in ["A", "phone-1", "ios.App_7", &longest] {
            assert_eq!(
                Device::parse(good).map(|d| d.to_string()),
                Some(good.into())
            );
        }
        let long = "a".repeat(MAX_DEVICE_LEN + 1);
        for bad in ["", "a b", "a:b", "a/b", "é", "a\u{0}", "a,b", &long] {
            assert_eq!(Device::parse(bad), None, "{bad:?}");
        }
        assert_eq!(
            Device::from_subprotocol("device.tab-2").map(|d| d.to_string()),
            Some("tab-2".into())
        );
        assert_eq!(Device::from_subprotocol("device."), None);
        assert_eq!(Device::from_subprotocol("since.k3.4"), None);
    }
}
