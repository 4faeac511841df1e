//! wss:// with rustls on the thread-per-core listeners, and a certificate
//! swapped on SIGHUP without a restart.

mod common;

use std::sync::Arc;

use common::*;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// A fresh self-signed certificate for `localhost`, written to `dir`.
fn certificate(dir: &std::path::Path) -> rustls::pki_types::CertificateDer<'static> {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("certificate");
    std::fs::write(dir.join("cert.pem"), cert.cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), cert.signing_key.serialize_pem()).unwrap();
    cert.cert.der().clone()
}

/// Opens wss:// trusting only `root`; returns the first reply to a frame.
async fn round_trip(
    gw: std::net::SocketAddr,
    root: &rustls::pki_types::CertificateDer<'static>,
) -> Result<String, String> {
    let mut roots = RootCertStore::empty();
    roots.add(root.clone()).map_err(|e| e.to_string())?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(gw)
        .await
        .map_err(|e| e.to_string())?;
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let mut req = format!("wss://localhost:{}/gateway/ws", gw.port())
        .into_client_request()
        .unwrap();
    req.headers_mut().insert("token", "90".parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::client_async(req, tls)
        .await
        .map_err(|e| e.to_string())?;
    let text = frame("message", b"over tls");
    futures_util::SinkExt::send(&mut ws, tokio_tungstenite::tungstenite::Message::text(text))
        .await
        .map_err(|e| e.to_string())?;
    let reply = tokio::time::timeout(DEADLINE, futures_util::StreamExt::next(&mut ws))
        .await
        .map_err(|_| "no reply".to_owned())?
        .ok_or("closed")?
        .map_err(|e| e.to_string())?;
    Ok(reply.into_text().map_err(|e| e.to_string())?.to_string())
}

#[tokio::test]
async fn wss_works_and_sighup_swaps_the_certificate() {
    let dir = std::env::temp_dir().join(format!("ws-gateway-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let first = certificate(&dir);
    let api = ws_api("127.0.0.1:0", "echo");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let gw = gateway(
        api.addr,
        2,
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    eventually("the streams are up", || async {
        http_get(gw.admin.unwrap(), "/readyz").0 == 200
    })
    .await;
    assert_eq!(
        round_trip(gw.addr, &first).await.unwrap(),
        frame("message", b"over tls")
    );

    let second = certificate(&dir);
    gw.signal(libc::SIGHUP);
    eventually("the new certificate is served", || async {
        round_trip(gw.addr, &second).await.is_ok()
    })
    .await;
    assert!(
        round_trip(gw.addr, &first).await.is_err(),
        "the old certificate is still served"
    );

    // Plain ws:// on a TLS listener is refused at the TLS layer and counted.
    assert!(try_connect(gw.addr, Some("1")).await.is_err());
    let admin = gw.admin.unwrap();
    eventually("the failed TLS handshake is counted", || async {
        metric_with(
            admin,
            "gateway_handshakes_rejected_total",
            "reason",
            "tls_handshake",
        ) >= 1.0
    })
    .await;
    let _ = std::fs::remove_dir_all(&dir);
}
