//! JWT authentication (`ws-api --auth jwt`) through the real binaries:
//! each token is admitted, or refused with HTTP 401 and its reason, by
//! claims, key and key rotation; a session ends with 4401 "token expired"
//! when its token does. Tokens come from two issuers that share no code:
//! jsonwebtoken (Rust) and PyJWT (Python, `make deps`' venv), and a Python
//! `websockets` client uses one.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use common::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};

const SECRET: &str = "a secret of thirty-two bytes or more, for tests";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// A directory of its own for a test's key files.
fn keys_dir(test: &str) -> PathBuf {
    let dir = profile_dir().join(format!("jwt-{test}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("key directory");
    dir
}

fn write(path: &Path, bytes: &[u8]) {
    // Written aside and renamed: ws-api's background reread never sees half a file.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).expect("write key file");
    std::fs::rename(&tmp, path).expect("rename key file");
}

fn hs256(claims: &Value, secret: &str) -> String {
    encode(
        &Header::default(),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("sign")
}

/// ws-api with `--auth jwt` and `flags`, a one-core gateway in front.
fn stack(flags: &[&str]) -> (Proc, Proc) {
    let mut extra = vec!["--auth", "jwt"];
    extra.extend_from_slice(flags);
    let api = ws_api_with("127.0.0.1:0", "echo", &extra);
    let gw = gateway(api.addr, 1, &[]);
    until_ready(&gw);
    (api, gw)
}

async fn refused_with(gw: &Proc, token: &str) -> String {
    match try_connect(gw.addr, Some(token)).await {
        Ok(_) => panic!("token {token} admitted"),
        Err(e) => {
            let (status, body) = refusal(e);
            assert_eq!(status, 401, "{body}");
            body
        }
    }
}

async fn echoes(gw: &Proc, token: &str) {
    let mut ws = connect(gw.addr, token).await;
    send_text(&mut ws, &frame("message", b"jwt")).await;
    assert_eq!(
        recv(&mut ws).await.into_text().expect("text").as_str(),
        frame("message", b"jwt")
    );
}

#[tokio::test]
async fn claims_and_keys_admit_or_refuse_with_their_reason() {
    let dir = keys_dir("claims");
    let secret = dir.join("secret");
    write(&secret, format!("{SECRET}\n").as_bytes());
    let (_api, gw) = stack(&[
        "--jwt-hmac-secret-file",
        secret.to_str().expect("utf-8 path"),
        "--jwt-audience",
        "gw",
        "--jwt-issuer",
        "biz",
        "--jwt-leeway",
        "0s",
    ]);
    let claims = |exp: u64, aud: &str, iss: &str, sub: &str| json!({"sub": sub, "exp": exp, "aud": aud, "iss": iss});
    echoes(&gw, &hs256(&claims(now() + 300, "gw", "biz", "42"), SECRET)).await;

    let cases = [
        (
            hs256(&claims(now() - 3600, "gw", "biz", "42"), SECRET),
            "token expired",
        ),
        (
            hs256(&claims(now() + 300, "other", "biz", "42"), SECRET),
            "token audience is not accepted",
        ),
        (
            hs256(&claims(now() + 300, "gw", "someone", "42"), SECRET),
            "token issuer is not accepted",
        ),
        (
            hs256(&claims(now() + 300, "gw", "biz", "alice"), SECRET),
            "token sub is not a decimal uid",
        ),
        (
            hs256(
                &claims(now() + 300, "gw", "biz", "42"),
                "another secret of thirty-two bytes or more",
            ),
            "token signature does not verify with any key",
        ),
        (
            hs256(&json!({"sub": "42", "aud": "gw", "iss": "biz"}), SECRET),
            "token claim missing: exp",
        ),
        ("42".to_owned(), "token is not a JWT"),
    ];
    for (token, reason) in cases {
        let body = refused_with(&gw, &token).await;
        assert!(
            body.contains(&format!("connect refused: {reason}")),
            "{reason}: {body}"
        );
    }
}

#[tokio::test]
async fn a_session_is_closed_when_its_token_expires() {
    let dir = keys_dir("expiry");
    let secret = dir.join("secret");
    write(&secret, SECRET.as_bytes());
    let (_api, gw) = stack(&[
        "--jwt-hmac-secret-file",
        secret.to_str().expect("utf-8 path"),
        "--jwt-leeway",
        "0s",
    ]);
    let long = hs256(&json!({"sub": "8", "exp": now() + 300}), SECRET);
    let short = hs256(&json!({"sub": "9", "exp": now() + 2}), SECRET);
    let mut stays = connect(gw.addr, &long).await;
    let mut ends = connect(gw.addr, &short).await;
    let started = Instant::now();
    assert_eq!(
        expect_close(&mut ends).await,
        (4401, "token expired".to_owned())
    );
    assert!(started.elapsed() < Duration::from_secs(4), "closed late");
    nothing_pending(&mut stays, "the other session").await;
}

/// An EC P-256 key pair as a JWK (public) and a signing key.
fn ec_key(kid: &str) -> (Value, EncodingKey) {
    let pair = rcgen::KeyPair::generate().expect("P-256 key");
    let raw = pair.public_key_raw();
    assert_eq!((raw.len(), raw[0]), (65, 4), "uncompressed P-256 point");
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let jwk = json!({
        "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
        "x": b64(&raw[1..33]), "y": b64(&raw[33..]),
    });
    let signing = EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).expect("PKCS#8");
    (jwk, signing)
}

fn es256(kid: &str, key: &EncodingKey, uid: &str) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(kid.into());
    encode(&header, &json!({"sub": uid, "exp": now() + 300}), key).expect("sign")
}

#[tokio::test]
async fn a_rotated_jwks_key_is_picked_up_without_a_restart() {
    let dir = keys_dir("jwks");
    let jwks = dir.join("jwks.json");
    let (k1, sign1) = ec_key("k1");
    let (k2, sign2) = ec_key("k2");
    write(&jwks, json!({"keys": [k1]}).to_string().as_bytes());
    let (_api, gw) = stack(&[
        "--jwt-jwks-file",
        jwks.to_str().expect("utf-8 path"),
        "--jwt-jwks-refresh",
        "100ms",
    ]);
    echoes(&gw, &es256("k1", &sign1, "5")).await;
    let body = refused_with(&gw, &es256("k2", &sign2, "5")).await;
    assert!(
        body.contains(r#"no key for the token's kid "k2""#),
        "{body}"
    );

    write(&jwks, json!({"keys": [k2]}).to_string().as_bytes());
    let rotated = es256("k2", &sign2, "5");
    let until = Instant::now() + DEADLINE;
    while try_connect(gw.addr, Some(&rotated)).await.is_err() {
        assert!(Instant::now() < until, "k2 never admitted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let body = refused_with(&gw, &es256("k1", &sign1, "5")).await;
    assert!(body.contains("no key for the token's kid"), "{body}");
}

#[test]
fn tokens_from_pyjwt_admit_a_python_client() {
    let dir = keys_dir("pyjwt");
    let out = Command::new(peers::python())
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/pyjwt/mint.py"))
        .args([
            dir.to_str().expect("utf-8 path"),
            "77",
            "gw",
            "RS256",
            "ES256",
        ])
        .output()
        .expect("the venv's python runs (make deps installs PyJWT in target/venv)");
    assert!(
        out.status.success(),
        "mint.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    let tokens: Vec<(&str, &str)> = stdout.lines().filter_map(|l| l.split_once(' ')).collect();
    assert_eq!(tokens.len(), 2, "{stdout}");
    let keys = format!(
        "{},{}",
        dir.join("RS256.pem").display(),
        dir.join("ES256.pem").display()
    );
    let (_api, gw) = stack(&["--jwt-public-key-file", &keys, "--jwt-audience", "gw"]);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/ws_client.py");
    let url = format!("ws://{}/gateway/ws", gw.addr);
    for (alg, token) in tokens {
        let out = Command::new(peers::python())
            .arg(&script)
            .args([&url, token])
            .output()
            .expect("python client");
        assert!(
            out.status.success(),
            "{alg}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn jwt_without_a_key_refuses_to_start_and_says_how() {
    let out = Command::new(workspace_bin("ws-api"))
        .args(["--listen", "127.0.0.1:0", "--auth", "jwt"])
        .output()
        .expect("ws-api runs");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--jwt-hmac-secret-file") && err.contains("--auth insecure-dev"),
        "{err}"
    );
}
