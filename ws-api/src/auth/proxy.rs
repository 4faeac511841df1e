//! `--auth proxy`: the business decides who a token is, as with
//! Centrifugo's connect proxy. Each Connect is a `POST` of JSON to
//! `--connect-proxy-url`:
//!
//! ```json
//! {"token": "<the client's token>", "server": "<gateway core>", "sid": "<session>", "device": "<device id or empty>"}
//! ```
//!
//! and the answer, with any status, is one of
//!
//! ```json
//! {"result": {"user": "42", "expire_at": 1767225600, "groups": ["news"]}}
//! {"error": {"message": "account suspended"}}
//! ```
//!
//! `user` is the decimal uid (a string or a number); `expire_at` (seconds
//! since the epoch) closes the session then, 4401 "token expired";
//! `groups` are joined as the session is admitted. An `error` refuses the
//! client with its message (4401 "connect refused: account suspended").
//! Anything else — a timeout (`--connect-proxy-timeout`), a status other
//! than 2xx without an `error`, a body that is neither — is the proxy's
//! fault, not the token's: UNAVAILABLE, which the client hears as
//! "ws-api unavailable" (503/1011) and may retry.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Identity, Refused, groups};

/// The Connect a token came with, as the proxy is told of it.
#[derive(Debug, Default, Serialize)]
pub struct Who<'a> {
    pub server: &'a str,
    pub sid: &'a str,
    pub device: &'a str,
}

/// The endpoint, and the client that calls it.
#[derive(Debug)]
pub struct ConnectProxy {
    url: reqwest::Url,
    client: reqwest::Client,
}

#[derive(Serialize)]
struct Ask<'a> {
    token: &'a str,
    #[serde(flatten)]
    who: &'a Who<'a>,
}

#[derive(Deserialize)]
struct Answer {
    result: Option<Admit>,
    error: Option<Refusal>,
}

#[derive(Deserialize)]
struct Admit {
    user: Value,
    expire_at: Option<u64>,
    #[serde(default)]
    groups: Value,
}

#[derive(Deserialize)]
struct Refusal {
    message: String,
}

impl ConnectProxy {
    pub fn new(url: reqwest::Url, timeout: Duration) -> Result<ConnectProxy, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .user_agent(concat!("ws-api/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(ConnectProxy { url, client })
    }

    pub fn describe(&self) -> String {
        self.url.to_string()
    }

    /// Asks the endpoint who `token` is.
    pub async fn verify(&self, token: &[u8], who: &Who<'_>) -> Result<Identity, Refused> {
        let token =
            std::str::from_utf8(token).map_err(|_| Refused::Malformed("not UTF-8".into()))?;
        let unavailable = |why: String| Refused::Unavailable(why);
        let resp = self
            .client
            .post(self.url.clone())
            .json(&Ask { token, who })
            .send()
            .await
            .map_err(|e| unavailable(without_url(e)))?;
        let status = resp.status();
        let body = resp
            .bytes()
            .await
            .map_err(|e| unavailable(without_url(e)))?;
        let answer: Option<Answer> = serde_json::from_slice(&body).ok();
        match answer {
            Some(Answer {
                error: Some(refusal),
                ..
            }) => Err(Refused::ByProxy(refusal.message)),
            Some(Answer {
                result: Some(admit),
                ..
            }) if status.is_success() => identity(admit),
            _ if status.is_success() => Err(unavailable(
                "answer has neither a result nor an error".into(),
            )),
            _ => Err(unavailable(format!("HTTP {status}"))),
        }
    }
}

/// What the proxy admitted.
fn identity(admit: Admit) -> Result<Identity, Refused> {
    let uid = match &admit.user {
        Value::Number(n) => n.as_u64(),
        Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            s.parse().ok()
        }
        _ => None,
    };
    let uid = uid.ok_or_else(|| {
        Refused::Unavailable(format!("result.user {} is not a decimal uid", admit.user))
    })?;
    let groups = match &admit.groups {
        Value::Null => Vec::new(),
        v => groups(v).map_err(|e| Refused::Unavailable(format!("result.{e}")))?,
    };
    Ok(Identity {
        uid,
        expires: admit
            .expire_at
            .map(|at| SystemTime::UNIX_EPOCH + Duration::from_secs(at)),
        groups,
    })
}

/// reqwest's error without the URL, which may carry credentials, and
/// which the client would otherwise see in its close reason.
fn without_url(e: reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "failed"
    };
    let e = e.without_url();
    format!("{kind}: {e}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admit(v: Value) -> Result<Identity, Refused> {
        identity(serde_json::from_value(v).unwrap())
    }

    #[test]
    fn answers_map_to_identities() {
        let id =
            admit(serde_json::json!({"user": "42", "expire_at": 10, "groups": ["a"]})).unwrap();
        assert_eq!(id.uid, 42);
        assert_eq!(id.groups, ["a"]);
        assert_eq!(
            id.expires,
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(10))
        );
        assert_eq!(admit(serde_json::json!({"user": 7})).map(|i| i.uid), Ok(7));
        for bad in [
            serde_json::json!({"user": "bob"}),
            serde_json::json!({"user": -1}),
            serde_json::json!({"user": "1", "groups": "a"}),
        ] {
            assert!(
                matches!(admit(bad.clone()), Err(Refused::Unavailable(_))),
                "{bad}"
            );
        }
    }
}
