//! JSON Web Token verification (`--auth jwt`), with jsonwebtoken.
//!
//! Keys come from files given at startup: an HMAC secret (HS256/384/512),
//! PEM public keys (RSA: RS256/384/512; EC: ES256/384), and a JWKS file
//! that is read again in the background whenever it changes, so keys
//! rotate without a restart (publish the new key, start signing with it,
//! retire the old one). A token is tried against the keys of its header's
//! `alg` whose `kid` matches (keys from PEM files have none and match any).
//!
//! Claims: `sub` is the decimal uid; `exp` is required; `nbf` is checked
//! when present; `aud` and `iss` are required and checked when
//! `--jwt-audience` / `--jwt-issuer` are given (and `aud` is ignored when
//! no audience is configured, as Centrifugo does). `--jwt-leeway` allows
//! for clocks apart.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use parking_lot::RwLock;
use serde::Deserialize;
use tracing::{info, warn};

use super::{Identity, Refused, expiry_time, read_secret};

/// The shortest HMAC secret accepted: RFC 7518 §3.2 wants a key at least
/// as long as the hash (256 bits for HS256).
pub const MIN_SECRET: usize = 32;

/// What `--jwt-*` gave.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub hmac_secret_file: Option<PathBuf>,
    pub public_key_files: Vec<PathBuf>,
    pub jwks_file: Option<PathBuf>,
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
    #[error("{0}: not a JWK set: {1}")]
    Jwks(PathBuf, String),
    #[error(
        "--auth jwt needs a key: --jwt-hmac-secret-file, --jwt-public-key-file or --jwt-jwks-file"
    )]
    NoKeys,
}

/// One key, for one algorithm.
struct Key {
    kid: Option<String>,
    alg: Algorithm,
    key: DecodingKey,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Key({:?}, {:?})", self.alg, self.kid)
    }
}

/// The JWKS file and the keys last read from it.
#[derive(Debug)]
struct JwksFile {
    path: PathBuf,
    keys: RwLock<Arc<Vec<Key>>>,
    /// (modification time, length) of what `keys` was read from.
    read: RwLock<Option<(SystemTime, u64)>>,
}

/// Checks tokens against the configured keys and claims.
#[derive(Debug)]
pub struct Verifier {
    keys: Vec<Key>,
    jwks: Option<Arc<JwksFile>>,
    validation: Validation,
    leeway: Duration,
}

/// The claims ws-api reads (the rest is the business's own).
#[derive(Deserialize)]
struct Claims {
    sub: Option<String>,
    exp: Option<u64>,
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
        let jwks = match &opts.jwks_file {
            None => None,
            Some(path) => {
                let file = Arc::new(JwksFile {
                    path: path.clone(),
                    keys: RwLock::new(Arc::new(Vec::new())),
                    read: RwLock::new(None),
                });
                file.reload()?;
                Some(file)
            }
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
        })
    }

    /// Rereads the JWKS file every `every` when it changed (a failed read
    /// keeps the keys read before, logged).
    pub fn spawn_refresh(&self, every: Duration) {
        let Some(file) = self.jwks.clone() else {
            return;
        };
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = file.reload() {
                    warn!(error = %e, "JWKS not reread; keeping the keys read before");
                }
            }
        });
    }

    pub fn describe(&self) -> String {
        let jwks = self.jwks.as_ref().map(|j| j.keys.read().len()).unwrap_or(0);
        let mut algs: Vec<String> = self.keys.iter().map(|k| format!("{:?}", k.alg)).collect();
        algs.dedup();
        format!(
            "{} file keys [{}], {jwks} JWKS keys",
            self.keys.len(),
            algs.join(" ")
        )
    }

    /// The identity a token proves.
    pub fn verify(&self, token: &[u8]) -> Result<Identity, Refused> {
        let text =
            std::str::from_utf8(token).map_err(|_| Refused::Malformed("not UTF-8".into()))?;
        let header = decode_header(text).map_err(|e| Refused::Malformed(e.to_string()))?;
        let jwks = self.jwks.as_ref().map(|j| Arc::clone(&j.keys.read()));
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
            match decode::<Claims>(text, &key.key, &validation) {
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

    fn identity(&self, claims: Claims) -> Result<Identity, Refused> {
        let uid = claims
            .sub
            .as_deref()
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse().ok())
            .ok_or(Refused::Subject)?;
        Ok(Identity {
            uid,
            expires: claims.exp.map(|exp| expiry_time(exp, self.leeway)),
        })
    }
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

fn hmac_keys(path: &Path) -> Result<Vec<Key>, KeyError> {
    let secret = read_secret(path).map_err(|e| KeyError::Read(path.to_owned(), e))?;
    if secret.len() < MIN_SECRET {
        return Err(KeyError::ShortSecret(path.to_owned(), secret.len()));
    }
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

impl JwksFile {
    /// Reads the file again if its modification time or length changed.
    fn reload(&self) -> Result<(), KeyError> {
        let meta =
            std::fs::metadata(&self.path).map_err(|e| KeyError::Read(self.path.clone(), e))?;
        let stamp = (
            meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            meta.len(),
        );
        if *self.read.read() == Some(stamp) {
            return Ok(());
        }
        let text = read(&self.path)?;
        let keys = jwks_keys(&text).map_err(|e| KeyError::Jwks(self.path.clone(), e))?;
        info!(path = %self.path.display(), keys = keys.len(), "JWKS read");
        *self.keys.write() = Arc::new(keys);
        *self.read.write() = Some(stamp);
        Ok(())
    }
}

/// The usable keys of a JWK set (a key for encryption only, or of a type
/// jsonwebtoken cannot verify with, is an error: a typo should not shrink
/// the set unnoticed).
fn jwks_keys(text: &[u8]) -> Result<Vec<Key>, String> {
    let set: JwkSet = serde_json::from_slice(text).map_err(|e| e.to_string())?;
    set.keys
        .iter()
        .map(|jwk| {
            let kid = jwk.common.key_id.clone();
            let alg = match (&jwk.common.key_algorithm, &jwk.algorithm) {
                (Some(a), _) => Algorithm::from_str(&a.to_string())
                    .map_err(|_| format!("key {kid:?}: alg {a} does not sign"))?,
                (None, AlgorithmParameters::RSA(_)) => Algorithm::RS256,
                (None, AlgorithmParameters::EllipticCurve(ec)) => match ec.curve {
                    EllipticCurve::P384 => Algorithm::ES384,
                    _ => Algorithm::ES256,
                },
                (None, AlgorithmParameters::OctetKey(_)) => Algorithm::HS256,
                (None, AlgorithmParameters::OctetKeyPair(_)) => Algorithm::EdDSA,
            };
            let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("key {kid:?}: {e}"))?;
            Ok(Key { kid, alg, key })
        })
        .collect()
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
        let id = v.verify(&token(ok, SECRET)).unwrap();
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
                v.verify(&token(claims.clone(), SECRET)),
                Err(want),
                "{claims}"
            );
        }
        let wrong = serde_json::json!({"sub": "42", "exp": now() + 60, "aud": "gw"});
        assert_eq!(
            v.verify(&token(wrong, b"another secret, 32 bytes or more!")),
            Err(Refused::Signature)
        );
        assert!(matches!(v.verify(b"not.a.jwt"), Err(Refused::Malformed(_))));
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
        assert_eq!(v.verify(&signed("k1", old)).map(|i| i.uid), Ok(7));
        assert_eq!(
            v.verify(&signed("k2", new)),
            Err(Refused::NoKey("k2".into(), "HS256".into()))
        );
        std::fs::write(&path, set(&[("k2", new), ("k3-longer", old)])).unwrap();
        v.jwks.as_ref().unwrap().reload().unwrap();
        assert_eq!(v.verify(&signed("k2", new)).map(|i| i.uid), Ok(7));
        assert!(v.verify(&signed("k1", old)).is_err());
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
