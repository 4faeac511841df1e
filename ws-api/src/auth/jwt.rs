//! JSON Web Token verification (`--auth jwt`), with jsonwebtoken.
//!
//! Keys come from files given at startup: an HMAC secret (HS256/384/512)
//! and PEM public keys (RSA: RS256/384/512; EC: ES256/384); and from a JWK
//! set, a file or a URL, read again while ws-api runs ([`super::jwks`]). A
//! token is tried against the keys of its header's `alg` whose `kid`
//! matches (keys from PEM files have none and match any).
//!
//! Claims: `sub` is the decimal uid; `exp` is required; `nbf` is checked
//! when present; `aud` and `iss` are required and checked when
//! `--jwt-audience` / `--jwt-issuer` are given (and `aud` is ignored when
//! no audience is configured, as Centrifugo does). `--jwt-leeway` allows
//! for clocks apart. With `--jwt-groups-claim NAME`, the claim NAME (a
//! list of strings) names the groups the session joins as it is admitted.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde_json::{Map, Value};

use super::jwks::{Jwks, JwksError, Key};
use super::{Identity, Refused, expiry_time, groups, read_secret};

/// The shortest HMAC secret accepted: RFC 7518 §3.2 wants a key at least
/// as long as the hash (256 bits for HS256).
pub const MIN_SECRET: usize = 32;

/// What `--jwt-*` gave.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub hmac_secret_file: Option<PathBuf>,
    pub public_key_files: Vec<PathBuf>,
    pub jwks_file: Option<PathBuf>,
    pub jwks_url: Option<reqwest::Url>,
    /// The claim that lists the session's groups.
    pub groups_claim: Option<String>,
    pub audience: Vec<String>,
    pub issuer: Vec<String>,
    pub leeway: Duration,
}

/// A key ws-api could not use, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("{0}: HMAC secret is {1} bytes, at least {MIN_SECRET} are needed")]
    ShortSecret(PathBuf, usize),
    #[error("{0}: neither an RSA nor an EC public key in PEM")]
    NotAPublicKey(PathBuf),
    #[error("signing: {0}")]
    Sign(String),
    #[error("JWK set {0}")]
    Jwks(#[from] JwksError),
    #[error(
        "--auth jwt needs a key: --jwt-hmac-secret-file, --jwt-public-key-file, --jwt-jwks-file or --jwt-jwks-url"
    )]
    NoKeys,
}

/// Checks tokens against the configured keys and claims.
#[derive(Debug)]
pub struct Verifier {
    keys: Vec<Key>,
    jwks: Option<Arc<Jwks>>,
    validation: Validation,
    leeway: Duration,
    groups_claim: Option<String>,
}

impl Verifier {
    /// Reads every key file; fails naming the file that cannot be used.
    pub fn new(opts: &Options) -> Result<Verifier, KeyError> {
        let mut keys = Vec::new();
        if let Some(path) = &opts.hmac_secret_file {
            keys.extend(hmac_keys(path)?);
        }
        for path in &opts.public_key_files {
            keys.extend(pem_keys(path)?);
        }
        let jwks = match (&opts.jwks_file, &opts.jwks_url) {
            (Some(path), _) => Some(Arc::new(Jwks::file(path.clone())?)),
            (None, Some(url)) => Some(Arc::new(Jwks::url(url.clone())?)),
            (None, None) => None,
        };
        if keys.is_empty() && jwks.is_none() {
            return Err(KeyError::NoKeys);
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = opts.leeway.as_secs();
        validation.validate_nbf = true;
        let mut required = vec!["exp", "sub"];
        if opts.audience.is_empty() {
            validation.validate_aud = false;
        } else {
            validation.set_audience(&opts.audience);
            required.push("aud");
        }
        if !opts.issuer.is_empty() {
            validation.set_issuer(&opts.issuer);
            required.push("iss");
        }
        validation.set_required_spec_claims(&required);
        Ok(Verifier {
            keys,
            jwks,
            validation,
            leeway: opts.leeway,
            groups_claim: opts.groups_claim.clone(),
        })
    }

    /// Reads the JWK set again every `every` (see [`super::jwks`]).
    pub fn spawn_refresh(&self, every: Duration) {
        if let Some(jwks) = &self.jwks {
            jwks.spawn_refresh(every);
        }
    }

    pub fn describe(&self) -> String {
        let mut algs: Vec<String> = self.keys.iter().map(|k| format!("{:?}", k.alg)).collect();
        algs.dedup();
        let jwks = match &self.jwks {
            Some(j) => format!(", {} ({} keys)", j.describe(), j.keys().len()),
            None => String::new(),
        };
        format!("{} file keys [{}]{jwks}", self.keys.len(), algs.join(" "))
    }

    /// The identity a token proves; a kid the JWK set lacks has the set
    /// fetched again (a URL, at most every few seconds) and is tried once more.
    pub async fn verify(&self, token: &[u8]) -> Result<Identity, Refused> {
        let first = self.verify_now(token);
        match (&first, &self.jwks) {
            (Err(Refused::NoKey(..)), Some(jwks)) if jwks.missed().await => self.verify_now(token),
            _ => first,
        }
    }

    /// The identity a token proves, with the keys held now.
    pub fn verify_now(&self, token: &[u8]) -> Result<Identity, Refused> {
        let text =
            std::str::from_utf8(token).map_err(|_| Refused::Malformed("not UTF-8".into()))?;
        let header = decode_header(text).map_err(|e| Refused::Malformed(e.to_string()))?;
        let jwks = self.jwks.as_ref().map(|j| j.keys());
        let candidates = self
            .keys
            .iter()
            .chain(jwks.iter().flat_map(|k| k.iter()))
            .filter(|k| k.alg == header.alg)
            .filter(|k| match (&header.kid, &k.kid) {
                (Some(want), Some(have)) => want == have,
                _ => true,
            });
        let mut refused = None;
        for key in candidates {
            let mut validation = self.validation.clone();
            validation.algorithms = vec![key.alg];
            match decode::<Map<String, Value>>(text, &key.key, &validation) {
                Ok(data) => return self.identity(data.claims),
                Err(e) if *e.kind() == ErrorKind::InvalidSignature => {
                    refused = Some(Refused::Signature);
                }
                Err(e) => return Err(refused_for(e.kind())),
            }
        }
        Err(refused.unwrap_or_else(|| {
            Refused::NoKey(header.kid.unwrap_or_default(), format!("{:?}", header.alg))
        }))
    }

    fn identity(&self, claims: Map<String, Value>) -> Result<Identity, Refused> {
        let uid = claims
            .get("sub")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse().ok())
            .ok_or(Refused::Subject)?;
        let groups = match self.groups_claim.as_deref().and_then(|c| claims.get(c)) {
            None => Vec::new(),
            Some(v) => groups(v)?,
        };
        Ok(Identity {
            uid,
            expires: claims
                .get("exp")
                .and_then(Value::as_u64)
                .map(|exp| expiry_time(exp, self.leeway)),
            groups,
        })
    }
}

/// What `ws-api token` puts in a token.
#[derive(Debug, Clone)]
pub struct Minted {
    pub uid: u64,
    pub ttl: Duration,
    pub audience: Option<String>,
    pub issuer: Option<String>,
    /// In the claim `groups`.
    pub groups: Vec<String>,
}

/// An HS256 token signed with the secret in `secret_file`, which
/// [`Verifier`] accepts when given the same file.
pub fn mint(secret_file: &Path, m: &Minted) -> Result<String, KeyError> {
    let secret = hmac_secret(secret_file)?;
    let exp = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        + m.ttl;
    let mut claims = serde_json::json!({"sub": m.uid.to_string(), "exp": exp.as_secs()});
    if let Some(aud) = &m.audience {
        claims["aud"] = aud.clone().into();
    }
    if let Some(iss) = &m.issuer {
        claims["iss"] = iss.clone().into();
    }
    if !m.groups.is_empty() {
        claims["groups"] = m.groups.clone().into();
    }
    let key = jsonwebtoken::EncodingKey::from_secret(&secret);
    jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key)
        .map_err(|e| KeyError::Sign(e.to_string()))
}

fn refused_for(kind: &ErrorKind) -> Refused {
    match kind {
        ErrorKind::ExpiredSignature => Refused::Expired,
        ErrorKind::ImmatureSignature => Refused::NotYetValid,
        ErrorKind::InvalidAudience => Refused::Audience,
        ErrorKind::InvalidIssuer => Refused::Issuer,
        ErrorKind::MissingRequiredClaim(c) => Refused::MissingClaim(c.clone()),
        ErrorKind::InvalidSignature => Refused::Signature,
        other => Refused::Malformed(format!("{other:?}")),
    }
}

fn read(path: &Path) -> Result<Vec<u8>, KeyError> {
    std::fs::read(path).map_err(|e| KeyError::Read(path.to_owned(), e))
}

/// The HMAC secret in `path`, at least [`MIN_SECRET`] bytes.
fn hmac_secret(path: &Path) -> Result<Vec<u8>, KeyError> {
    let secret = read_secret(path).map_err(|e| KeyError::Read(path.to_owned(), e))?;
    if secret.len() < MIN_SECRET {
        return Err(KeyError::ShortSecret(path.to_owned(), secret.len()));
    }
    Ok(secret)
}

fn hmac_keys(path: &Path) -> Result<Vec<Key>, KeyError> {
    let secret = hmac_secret(path)?;
    let algs = [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512];
    Ok(algs
        .map(|alg| Key {
            kid: None,
            alg,
            key: DecodingKey::from_secret(&secret),
        })
        .into())
}

fn pem_keys(path: &Path) -> Result<Vec<Key>, KeyError> {
    let pem = read(path)?;
    let (algs, key): (&[Algorithm], _) = if let Ok(key) = DecodingKey::from_rsa_pem(&pem) {
        (&[Algorithm::RS256, Algorithm::RS384, Algorithm::RS512], key)
    } else if let Ok(key) = DecodingKey::from_ec_pem(&pem) {
        // The curve decides which of the two verifies; the other fails as
        // a bad signature.
        (&[Algorithm::ES256, Algorithm::ES384], key)
    } else {
        return Err(KeyError::NotAPublicKey(path.to_owned()));
    };
    Ok(algs
        .iter()
        .map(|&alg| Key {
            kid: None,
            alg,
            key: key.clone(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header, encode};

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn verifier(dir: &Path, audience: &[&str]) -> Verifier {
        let path = dir.join("secret");
        std::fs::write(&path, [SECRET, b"\n"].concat()).unwrap();
        Verifier::new(&Options {
            hmac_secret_file: Some(path),
            audience: audience.iter().map(|s| s.to_string()).collect(),
            ..Options::default()
        })
        .unwrap()
    }

    fn token(claims: serde_json::Value, secret: &[u8]) -> Vec<u8> {
        encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(secret),
        )
        .unwrap()
        .into_bytes()
    }

    fn now() -> u64 {
        jsonwebtoken::get_current_timestamp()
    }

    #[test]
    fn claims_decide() {
        let dir = tempdir();
        let v = verifier(&dir, &["gw"]);
        let ok = serde_json::json!({"sub": "42", "exp": now() + 60, "aud": "gw"});
        let id = v.verify_now(&token(ok, SECRET)).unwrap();
        assert_eq!(id.uid, 42);
        assert!(id.expires.is_some());
        let cases = [
            (
                serde_json::json!({"sub": "42", "exp": now() - 3600, "aud": "gw"}),
                Refused::Expired,
            ),
            (
                serde_json::json!({"sub": "42", "exp": now() + 60, "aud": "other"}),
                Refused::Audience,
            ),
            (
                serde_json::json!({"sub": "42", "exp": now() + 60}),
                Refused::MissingClaim("aud".into()),
            ),
            (
                serde_json::json!({"sub": "42", "aud": "gw"}),
                Refused::MissingClaim("exp".into()),
            ),
            (
                serde_json::json!({"sub": "bob", "exp": now() + 60, "aud": "gw"}),
                Refused::Subject,
            ),
            (
                serde_json::json!({"sub": "42", "exp": now() + 60, "nbf": now() + 3600, "aud": "gw"}),
                Refused::NotYetValid,
            ),
        ];
        for (claims, want) in cases {
            assert_eq!(
                v.verify_now(&token(claims.clone(), SECRET)),
                Err(want),
                "{claims}"
            );
        }
        let wrong = serde_json::json!({"sub": "42", "exp": now() + 60, "aud": "gw"});
        assert_eq!(
            v.verify_now(&token(wrong, b"another secret, 32 bytes or more!")),
            Err(Refused::Signature)
        );
        assert!(matches!(
            v.verify_now(b"not.a.jwt"),
            Err(Refused::Malformed(_))
        ));
    }

    #[test]
    fn minted_tokens_verify() {
        let dir = tempdir();
        let v = verifier(&dir, &["gw"]);
        let m = Minted {
            uid: 42,
            ttl: Duration::from_secs(60),
            audience: Some("gw".into()),
            issuer: None,
            groups: vec!["news".into()],
        };
        let token = mint(&dir.join("secret"), &m).unwrap();
        assert_eq!(v.verify_now(token.as_bytes()).map(|i| i.uid), Ok(42));
    }

    #[test]
    fn keys_are_checked_at_startup() {
        let dir = tempdir();
        let short = dir.join("short");
        std::fs::write(&short, b"too short\n").unwrap();
        let opts = Options {
            hmac_secret_file: Some(short),
            ..Options::default()
        };
        assert!(matches!(
            Verifier::new(&opts),
            Err(KeyError::ShortSecret(_, 9))
        ));
        assert!(matches!(
            Verifier::new(&Options::default()),
            Err(KeyError::NoKeys)
        ));
        let junk = dir.join("junk.pem");
        std::fs::write(
            &junk,
            b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
        )
        .unwrap();
        let opts = Options {
            public_key_files: vec![junk],
            ..Options::default()
        };
        assert!(matches!(
            Verifier::new(&opts),
            Err(KeyError::NotAPublicKey(_))
        ));
    }

    #[test]
    fn jwks_kids_pick_the_key_and_a_rewrite_rotates_them() {
        use base64::Engine;
        let b64 = |k: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(k);
        let old = b"old secret, thirty-two bytes long!!";
        let new = b"new secret, thirty-two bytes long!!";
        let set = |keys: &[(&str, &[u8])]| {
            let keys: Vec<_> = keys
                .iter()
                .map(|(kid, k)| serde_json::json!({"kty": "oct", "kid": kid, "alg": "HS256", "k": b64(k)}))
                .collect();
            serde_json::to_vec(&serde_json::json!({ "keys": keys })).unwrap()
        };
        let dir = tempdir();
        let path = dir.join("jwks.json");
        std::fs::write(&path, set(&[("k1", old)])).unwrap();
        let v = Verifier::new(&Options {
            jwks_file: Some(path.clone()),
            ..Options::default()
        })
        .unwrap();
        let signed = |kid: &str, k: &[u8]| {
            let header = Header {
                kid: Some(kid.into()),
                ..Header::default()
            };
            let claims = serde_json::json!({"sub": "7", "exp": now() + 60});
            encode(&header, &claims, &EncodingKey::from_secret(k))
                .unwrap()
                .into_bytes()
        };
        assert_eq!(v.verify_now(&signed("k1", old)).map(|i| i.uid), Ok(7));
        assert_eq!(
            v.verify_now(&signed("k2", new)),
            Err(Refused::NoKey("k2".into(), "HS256".into()))
        );
        std::fs::write(&path, set(&[("k2", new), ("k3-longer", old)])).unwrap();
        v.jwks.as_ref().unwrap().reload().unwrap();
        assert_eq!(v.verify_now(&signed("k2", new)).map(|i| i.uid), Ok(7));
        assert!(v.verify_now(&signed("k1", old)).is_err());
    }

    fn tempdir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "ws-api-jwt-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
