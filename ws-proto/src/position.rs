//! A position in a user's stream, `<epoch>:<n>` (docs/delivery.md): what a
//! push carries, a client resumes from and acknowledges.

/// `<epoch>:<n>`: the epoch names one life of the user's history (lowercase
/// letters and digits, at most 32), `n` counts its messages from 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub epoch: String,
    pub n: u64,
}

impl Position {
    /// Parses `<epoch>:<n>`.
    pub fn parse(s: &str) -> Option<Position> {
        let (epoch, n) = s.split_once(':')?;
        Position::from_parts(epoch, n)
    }

    /// Parses the subprotocol entry `since.<epoch>.<n>` (a subprotocol
    /// cannot hold `:`).
    pub fn from_subprotocol(entry: &str) -> Option<Position> {
        let (epoch, n) = entry.strip_prefix("since.")?.split_once('.')?;
        Position::from_parts(epoch, n)
    }

    fn from_parts(epoch: &str, n: &str) -> Option<Position> {
        let valid = !epoch.is_empty()
            && epoch.len() <= 32
            && epoch
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        let n = n.parse().ok().filter(|_| valid)?;
        Some(Position {
            epoch: epoch.to_owned(),
            n,
        })
    }
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.epoch, self.n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_parse_from_both_spellings() {
        let want = Position {
            epoch: "k3x9".into(),
            n: 42,
        };
        assert_eq!(Position::parse("k3x9:42"), Some(want.clone()));
        assert_eq!(
            Position::from_subprotocol("since.k3x9.42"),
            Some(want.clone())
        );
        assert_eq!(want.to_string(), "k3x9:42");
        let long = format!("{}:1", "a".repeat(33));
        for bad in [
            "", "k3x9", ":4", "k3x9:", "K3:4", "k3:-1", "k:3:4", "k3:4x", &long,
        ] {
            assert_eq!(Position::parse(bad), None, "{bad:?}");
        }
        assert_eq!(Position::from_subprotocol("token.abc"), None);
    }
}
