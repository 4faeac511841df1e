//! Who a `Connect`'s token is: [`Auth`] turns the token into an
//! [`Identity`] (the uid, and until when the token holds) or a [`Refused`]
//! whose text the gateway puts in its 4401 "connect refused: …" answer.
//!
//! Three modes, chosen by `--auth`:
//! - `jwt` (the default): a JSON Web Token signed with one of the keys ws-api
//!   was given ([`jwt`], [`jwks`]); `sub` is the decimal uid, `exp` is
//!   required, and a session is closed (4401 "token expired") when it
//!   passes ([`expiry`]).
//! - `proxy`: the business's own HTTP endpoint is asked ([`proxy`]), as
//!   Centrifugo's connect proxy is.
//! - `insecure-dev`: any non-empty token is admitted (a decimal token is the
//!   uid, any other hashes to one; `deny…` is refused). For `make run` and
//!   the tests; ws-api warns at startup.
//!
//! # Layout
//!
//! - this file: [`Auth`], [`Identity`], [`Refused`], the insecure-dev placeholder.
//! - [`proxy`]: `--auth proxy`: a POST to the business's endpoint with the token; its answer admits or refuses.
//! - [`jwt`]: keys (HMAC secret, RSA/EC public keys, a JWK set) and verification.
//! - [`jwks`]: a JWK set read again while ws-api runs (a file, or a URL), and [`jwks::Key`].
//! - [`expiry`]: one timer per session whose token expires, closing it when it does.
//! - [`gateways`]: `--gateway-secret-file`, the check that only gateways call ExchangeService.

pub mod expiry;
pub mod gateways;
pub mod jwks;
pub mod jwt;
pub mod proxy;

use std::time::{Duration, SystemTime};

use tonic::Status;

/// How tokens are checked (`--auth`).
#[derive(Debug)]
pub enum Auth {
    /// Any non-empty token; see [`uid_for_token`].
    InsecureDev,
    /// Signed JSON Web Tokens.
    Jwt(Box<jwt::Verifier>),
    /// The business's connect endpoint.
    Proxy(Box<proxy::ConnectProxy>),
}

/// The most groups a token (or a connect proxy's answer) may put a session in.
pub const MAX_GROUPS: usize = 64;

/// What a token proved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub uid: u64,
    /// When the session's token stops holding (JWT `exp`, plus the leeway).
    pub expires: Option<SystemTime>,
    /// Groups the session joins as it is admitted.
    pub groups: Vec<String>,
}

/// Why a token was refused: the text a client sees after "connect refused: ".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("missing token")]
    Missing,
    #[error("token denied")]
    Denied,
    #[error("token is not a JWT: {0}")]
    Malformed(String),
    #[error("token expired")]
    Expired,
    #[error("token not yet valid")]
    NotYetValid,
    #[error("token audience is not accepted")]
    Audience,
    #[error("token issuer is not accepted")]
    Issuer,
    #[error("token claim missing: {0}")]
    MissingClaim(String),
    #[error("token sub is not a decimal uid")]
    Subject,
    #[error("token signature does not verify with any key")]
    Signature,
    #[error("no key for the token's kid {0:?} and alg {1}")]
    NoKey(String, String),
    #[error("token groups: {0}")]
    Groups(String),
    /// The connect proxy's own reason.
    #[error("{0}")]
    ByProxy(String),
    /// Not the token's fault: the connect proxy cannot be asked.
    #[error("connect proxy unavailable: {0}")]
    Unavailable(String),
}

impl From<Refused> for Status {
    fn from(r: Refused) -> Status {
        match r {
            Refused::Denied => Status::permission_denied(r.to_string()),
            Refused::Unavailable(_) => Status::unavailable(r.to_string()),
            _ => Status::unauthenticated(r.to_string()),
        }
    }
}

impl Auth {
    /// The identity `token` proves, or why it proves none. `who`: the
    /// Connect's session, for the connect proxy.
    pub async fn verify(&self, token: &[u8], who: &proxy::Who<'_>) -> Result<Identity, Refused> {
        if token.is_empty() {
            return Err(Refused::Missing);
        }
        match self {
            Auth::InsecureDev if token.starts_with(b"deny") => Err(Refused::Denied),
            Auth::InsecureDev => Ok(Identity {
                uid: uid_for_token(token),
                expires: None,
                groups: Vec::new(),
            }),
            Auth::Jwt(v) => v.verify(token).await,
            Auth::Proxy(p) => p.verify(token, who).await,
        }
    }

    /// Short name for the startup line.
    pub fn describe(&self) -> String {
        match self {
            Auth::InsecureDev => "insecure-dev".into(),
            Auth::Jwt(v) => format!("jwt ({})", v.describe()),
            Auth::Proxy(p) => format!("proxy ({})", p.describe()),
        }
    }
}

/// The uid an `insecure-dev` token stands for: a decimal token is the uid
/// itself, any other token hashes (FNV-1a 64, top bit clear) to a stable uid.
pub fn uid_for_token(token: &[u8]) -> u64 {
    if let Some(uid) = std::str::from_utf8(token)
        .ok()
        .filter(|t| t.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|t| t.parse().ok())
    {
        return uid;
    }
    let h = token.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    h & (u64::MAX >> 1)
}

/// A secret kept in a file (the HMAC secret, the HTTP API key), without
/// the newline an editor or `echo` leaves at its end.
pub fn read_secret(path: &std::path::Path) -> std::io::Result<Vec<u8>> {
    let mut secret = std::fs::read(path)?;
    while secret.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        secret.pop();
    }
    Ok(secret)
}

/// A token's (or a proxy's) list of groups: strings, at most [`MAX_GROUPS`],
/// each non-empty and at most 256 bytes.
pub(crate) fn groups(value: &serde_json::Value) -> Result<Vec<String>, Refused> {
    let bad = |why: &str| Refused::Groups(why.to_owned());
    let list = value.as_array().ok_or_else(|| bad("not a list"))?;
    if list.len() > MAX_GROUPS {
        return Err(bad(&format!("more than {MAX_GROUPS}")));
    }
    list.iter()
        .map(|g| match g.as_str() {
            Some(g) if !g.is_empty() && g.len() <= 256 => Ok(g.to_owned()),
            _ => Err(bad("each must be a string of 1 to 256 bytes")),
        })
        .collect()
}

/// `exp` (seconds since the epoch) plus `leeway` as a time.
pub(crate) fn expiry_time(exp: u64, leeway: Duration) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(exp) + leeway
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_map_to_uids() {
        assert_eq!(uid_for_token(b"42"), 42);
        assert_eq!(uid_for_token(b"abc"), uid_for_token(b"abc"));
        assert_ne!(uid_for_token(b"abc"), uid_for_token(b"abd"));
        assert!(uid_for_token(b"abc") < 1 << 63);
    }

    #[tokio::test]
    async fn insecure_dev_admits_all_but_empty_and_deny() {
        let auth = Auth::InsecureDev;
        let who = proxy::Who::default();
        assert_eq!(auth.verify(b"7", &who).await.map(|i| i.uid), Ok(7));
        assert_eq!(auth.verify(b"", &who).await, Err(Refused::Missing));
        assert_eq!(auth.verify(b"deny-me", &who).await, Err(Refused::Denied));
        let denied: Status = Refused::Denied.into();
        assert_eq!(denied.code(), tonic::Code::PermissionDenied);
        let expired: Status = Refused::Expired.into();
        assert_eq!(expired.code(), tonic::Code::Unauthenticated);
        assert_eq!(expired.message(), "token expired");
    }

    #[test]
    fn groups_are_a_bounded_list_of_names() {
        let ok = serde_json::json!(["news", "room:1"]);
        assert_eq!(groups(&ok), Ok(vec!["news".into(), "room:1".into()]));
        for bad in [
            serde_json::json!("news"),
            serde_json::json!([1]),
            serde_json::json!([""]),
            serde_json::json!(vec!["g"; MAX_GROUPS + 1]),
        ] {
            assert!(matches!(groups(&bad), Err(Refused::Groups(_))), "{bad}");
        }
    }
}
