//! JWK sets (RFC 7517) that change while ws-api runs, so keys rotate
//! without a restart (publish the new key, start signing with it, retire
//! the old one): a file (`--jwt-jwks-file`) read again when it changes, or
//! a URL (`--jwt-jwks-url`, an identity provider's `jwks_uri`) fetched
//! every `--jwt-jwks-refresh`, and at once when a token names a `kid` the
//! set does not hold (at most every [`REFETCH_AFTER`]): a key published
//! just before its first token is found without waiting for the period.
//! A failed read or fetch keeps the keys read before, logged.
//!
//! Also [`Key`], one verification key for one algorithm, which the other
//! key sources (`jwt`) build too.

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey};
use parking_lot::RwLock;
use tracing::{info, warn};

/// The least time between two fetches of a JWKS URL.
pub const REFETCH_AFTER: Duration = Duration::from_secs(5);
/// How long one fetch of a JWKS URL may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// One key, for one algorithm.
pub struct Key {
    pub kid: Option<String>,
    pub alg: Algorithm,
    pub key: DecodingKey,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Key({:?}, {:?})", self.alg, self.kid)
    }
}

/// Where a set comes from.
#[derive(Debug)]
enum Source {
    File(PathBuf),
    Url(reqwest::Url, reqwest::Client),
}

/// A set that is read again, and the keys last read from it.
#[derive(Debug)]
pub struct Jwks {
    source: Source,
    keys: RwLock<Arc<Vec<Key>>>,
    /// The file's (modification time, length) when `keys` was read.
    stamp: RwLock<Option<(SystemTime, u64)>>,
    /// When the URL was last fetched for a missed kid (the periodic
    /// fetches do not count: a key published after one is found at once);
    /// held across every fetch, so Connects that miss a kid together wait
    /// for one fetch rather than each make one.
    missed: tokio::sync::Mutex<Option<Instant>>,
}

/// Why a set could not be read; the keys read before stay.
#[derive(Debug, thiserror::Error)]
#[error("{from}: {why}")]
pub struct JwksError {
    from: String,
    why: String,
}

impl Jwks {
    /// The set in `path`, read now (an unreadable file fails startup).
    pub fn file(path: PathBuf) -> Result<Jwks, JwksError> {
        let jwks = Jwks::new(Source::File(path));
        jwks.reload()?;
        Ok(jwks)
    }

    /// The set at `url`, fetched when [`Jwks::spawn_refresh`] starts (an
    /// identity provider down at startup must not keep ws-api down).
    pub fn url(url: reqwest::Url) -> Result<Jwks, JwksError> {
        let client = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .user_agent(concat!("ws-api/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| JwksError {
                from: url.to_string(),
                why: e.to_string(),
            })?;
        Ok(Jwks::new(Source::Url(url, client)))
    }

    fn new(source: Source) -> Jwks {
        Jwks {
            source,
            keys: RwLock::new(Arc::new(Vec::new())),
            stamp: RwLock::new(None),
            missed: tokio::sync::Mutex::new(None),
        }
    }

    /// The keys held now.
    pub fn keys(&self) -> Arc<Vec<Key>> {
        Arc::clone(&self.keys.read())
    }

    /// Reads the file again, or fetches the URL, every `every`.
    pub fn spawn_refresh(self: &Arc<Self>, every: Duration) {
        let jwks = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let read = match &jwks.source {
                    Source::File(_) => jwks.reload(),
                    Source::Url(..) => jwks.fetch(false).await.map(drop),
                };
                if let Err(e) = read {
                    warn!(error = %e, "JWKS not read; keeping the keys read before");
                }
            }
        });
    }

    /// A token named a kid the set lacks: fetch the URL now unless it was
    /// fetched within [`REFETCH_AFTER`]. True if the keys may have changed.
    pub async fn missed(&self) -> bool {
        if !matches!(self.source, Source::Url(..)) {
            return false;
        }
        match self.fetch(true).await {
            Ok(fetched) => fetched,
            Err(e) => {
                warn!(error = %e, "JWKS not fetched for a token's unknown kid");
                false
            }
        }
    }

    /// Fetches the URL (for a missed kid: unless one was fetched for a
    /// miss within [`REFETCH_AFTER`]); true if it was fetched.
    async fn fetch(&self, for_a_miss: bool) -> Result<bool, JwksError> {
        let Source::Url(url, client) = &self.source else {
            return Ok(false);
        };
        let mut missed = self.missed.lock().await;
        if for_a_miss {
            if missed.is_some_and(|at| at.elapsed() < REFETCH_AFTER) {
                return Ok(false);
            }
            *missed = Some(Instant::now());
        }
        let failed = |why: String| JwksError {
            from: url.to_string(),
            why,
        };
        let resp = client
            .get(url.clone())
            .send()
            .await
            .map_err(|e| failed(e.to_string()))?;
        if !resp.status().is_success() {
            return Err(failed(format!("HTTP {}", resp.status())));
        }
        let body = resp.bytes().await.map_err(|e| failed(e.to_string()))?;
        self.replace(parse(&body).map_err(failed)?, url.as_str());
        Ok(true)
    }

    /// Reads the file again if its modification time or length changed.
    pub fn reload(&self) -> Result<(), JwksError> {
        let Source::File(path) = &self.source else {
            return Ok(());
        };
        let failed = |why: String| JwksError {
            from: path.display().to_string(),
            why,
        };
        let meta = std::fs::metadata(path).map_err(|e| failed(e.to_string()))?;
        let stamp = (
            meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            meta.len(),
        );
        if *self.stamp.read() == Some(stamp) {
            return Ok(());
        }
        let text = std::fs::read(path).map_err(|e| failed(e.to_string()))?;
        self.replace(parse(&text).map_err(failed)?, &path.display().to_string());
        *self.stamp.write() = Some(stamp);
        Ok(())
    }

    fn replace(&self, keys: Vec<Key>, from: &str) {
        let kids: Vec<&str> = keys.iter().filter_map(|k| k.kid.as_deref()).collect();
        info!(%from, keys = keys.len(), ?kids, "JWKS read");
        *self.keys.write() = Arc::new(keys);
    }

    /// Where the set comes from, for the startup line.
    pub fn describe(&self) -> String {
        match &self.source {
            Source::File(p) => format!("JWKS {}", p.display()),
            Source::Url(u, _) => format!("JWKS {u}"),
        }
    }
}

/// The usable keys of a JWK set (a key for encryption only, or of a type
/// jsonwebtoken cannot verify with, is an error: a typo should not shrink
/// the set unnoticed).
fn parse(text: &[u8]) -> Result<Vec<Key>, String> {
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
