//! Where identities come from beyond key files, through the real binaries:
//! a JWK set at a URL (rotated by a token's unknown `kid`, without waiting
//! for the refresh period), groups from a token claim, and the connect
//! proxy (`--auth proxy`) admitting, refusing with its reason, and failing
//! as "unavailable". The HTTP side is played by two servers that share no
//! code, Python's http.server and Node's http (tests/peers/http/).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use jsonwebtoken::{EncodingKey, Header, encode};
use serde_json::{Value, json};

const SECRET: &str = "a secret of thirty-two bytes or more, for tests";

/// The two HTTP peers: (name, program, script).
fn peers() -> [(&'static str, PathBuf, &'static str); 2] {
    [
        ("python", peers::python(), "auth_peer.py"),
        ("node", PathBuf::from("node"), "auth_peer.js"),
    ]
}

/// Starts one HTTP peer serving `dir`.
fn http_peer(program: &Path, script: &str, dir: &Path) -> Proc {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/peers/http")
        .join(script);
    let mut cmd = Command::new(program);
    cmd.arg(script).arg(dir);
    spawn_and_wait(cmd, "listening on ")
}

fn dir_for(test: &str, peer: &str) -> PathBuf {
    let dir = profile_dir().join(format!("auth-{test}-{peer}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("directory");
    dir
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

fn hs256(kid: Option<&str>, claims: &Value, secret: &[u8]) -> String {
    let header = Header {
        kid: kid.map(Into::into),
        ..Header::default()
    };
    encode(&header, claims, &EncodingKey::from_secret(secret)).expect("sign")
}

fn jwk_set(keys: &[(&str, &[u8])]) -> String {
    use base64::Engine;
    let b64 = |k: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(k);
    let keys: Vec<Value> = keys
        .iter()
        .map(|(kid, k)| json!({"kty": "oct", "kid": kid, "alg": "HS256", "k": b64(k)}))
        .collect();
    json!({ "keys": keys }).to_string()
}

/// ws-api with `flags` (an `--auth` among them) and a one-core gateway.
fn stack(flags: &[&str]) -> (Proc, Proc) {
    let api = ws_api_with("127.0.0.1:0", "echo", flags);
    let gw = gateway(api.addr, 1, &[]);
    until_ready(&gw);
    (api, gw)
}

async fn echoes(gw: &Proc, token: &str) {
    let mut ws = connect(gw.addr, token).await;
    send_text(&mut ws, &frame("message", b"hi")).await;
    assert_eq!(
        recv(&mut ws).await.into_text().expect("text").as_str(),
        frame("message", b"hi")
    );
}

/// The refusal's (status, body without its newline).
async fn refused(gw: &Proc, token: &str) -> (u16, String) {
    match try_connect(gw.addr, Some(token)).await {
        Ok(_) => panic!("token {token} admitted"),
        Err(e) => {
            let (status, body) = refusal(e);
            (status, body.trim_end().to_owned())
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jwks_url_is_fetched_again_for_an_unknown_kid() {
    let (k1, k2) = (
        b"first key of thirty-two bytes or more".as_slice(),
        b"second key, thirty-two bytes or more".as_slice(),
    );
    for (name, program, script) in peers() {
        let dir = dir_for("jwks", name);
        std::fs::write(dir.join("jwks.json"), jwk_set(&[("k1", k1)])).expect("jwks");
        let idp = http_peer(&program, script, &dir);
        let url = format!("http://{}/jwks.json", idp.addr);
        // An hour between periodic fetches: only a miss can pick k2 up.
        let (_api, gw) = stack(&[
            "--auth",
            "jwt",
            "--jwt-jwks-url",
            &url,
            "--jwt-jwks-refresh",
            "1h",
        ]);
        let claims = json!({"sub": "5", "exp": now() + 300});
        echoes(&gw, &hs256(Some("k1"), &claims, k1)).await;
        std::fs::write(dir.join("jwks.json"), jwk_set(&[("k2", k2)])).expect("jwks");
        echoes(&gw, &hs256(Some("k2"), &claims, k2)).await;
        let (status, body) = refused(&gw, &hs256(Some("k1"), &claims, k1)).await;
        assert_eq!(status, 401, "{name}: {body}");
        assert!(
            body.contains("no key for the token's kid"),
            "{name}: {body}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_claim_puts_the_session_in_groups() {
    let dir = dir_for("groups", "file");
    let secret = dir.join("secret");
    std::fs::write(&secret, SECRET).expect("secret");
    let (api, gw) = stack(&[
        "--auth",
        "jwt",
        "--jwt-hmac-secret-file",
        secret.to_str().expect("utf-8 path"),
        "--jwt-groups-claim",
        "groups",
    ]);
    let token = |groups: Value| {
        hs256(
            None,
            &json!({"sub": "8", "exp": now() + 300, "groups": groups}),
            SECRET.as_bytes(),
        )
    };
    let mut ws = connect(gw.addr, &token(json!(["news", "room:1"]))).await;
    let said = ws_api_cli(
        &api,
        &[
            "push-group",
            "--group",
            "room:1",
            "--type",
            "say",
            "--payload",
            "hi",
        ],
    )
    .await;
    assert_eq!(said.trim(), "sent to the group's 1 session(s)");
    assert_eq!(next_payload_of(&mut ws, "say").await, "hi");
    let (status, body) = refused(&gw, &token(json!("news"))).await;
    assert_eq!(
        (status, body.as_str()),
        (401, "connect refused: token groups: not a list")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connect_proxy_admits_refuses_and_fails_as_unavailable() {
    for (name, program, script) in peers() {
        let proxy = http_peer(&program, script, &dir_for("proxy", name));
        let url = format!("http://{}/connect", proxy.addr);
        let (api, gw) = stack(&[
            "--auth",
            "proxy",
            "--connect-proxy-url",
            &url,
            "--connect-proxy-timeout",
            "500ms",
        ]);
        echoes(&gw, "user-5").await;
        let (_, last) = http_get(proxy.addr, "/last");
        let last: Value = serde_json::from_str(&last).expect("JSON");
        assert_eq!(last["token"], "user-5", "{name}");
        assert!(
            last["sid"].as_str().is_some_and(|s| !s.is_empty()),
            "{name}: {last}"
        );
        assert!(
            last["server"].as_str().is_some_and(|s| s.ends_with("#0")),
            "{name}: {last}"
        );

        let mut ws = connect(gw.addr, "group-6-news").await;
        ws_api_cli(
            &api,
            &[
                "push-group",
                "--group",
                "news",
                "--type",
                "n",
                "--payload",
                "p",
            ],
        )
        .await;
        assert_eq!(next_payload_of(&mut ws, "n").await, "p", "{name}");

        for (token, want) in [
            ("refuse", (401, "connect refused: account suspended")),
            (
                "broken",
                (
                    503,
                    "ws-api unavailable: connect proxy unavailable: HTTP 500 Internal Server Error",
                ),
            ),
        ] {
            let (status, body) = refused(&gw, token).await;
            assert_eq!((status, body.as_str()), want, "{name}");
        }
        let (status, body) = refused(&gw, "slow").await;
        assert_eq!(status, 503, "{name}: {body}");
        assert!(
            body.contains("connect proxy unavailable: timed out"),
            "{name}: {body}"
        );

        // expire_at is one second away: the session is closed then.
        let started = Instant::now();
        let mut ws = connect(gw.addr, "expire-7").await;
        assert_eq!(
            expect_close(&mut ws).await,
            (4401, "token expired".to_owned()),
            "{name}"
        );
        assert!(started.elapsed() < Duration::from_secs(5), "{name}");
    }
}
