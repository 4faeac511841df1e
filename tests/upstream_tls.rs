//! The gateway ↔ ws-api link over TLS and mTLS (`--upstream https://…`,
//! ws-api `--tls-cert/--tls-key/--tls-client-ca`), with certificates made
//! here (rcgen): a client gets its echo through a TLS link and an mTLS
//! link; a gateway without the client certificate never gets a stream; and
//! an independent TLS client (gRPC C-core, grpcio) pushes to ws-api over
//! mTLS, so ws-api's TLS is not only proven against the gateway's rustls.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use common::*;
use rcgen::DnType;
use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair};

/// A CA, a certificate for ws-api (127.0.0.1 and localhost) and one for
/// the gateway, as PEM files in a directory of their own.
struct Pki {
    dir: PathBuf,
}

impl Pki {
    fn new(test: &str) -> Pki {
        let dir = profile_dir().join(format!("pki-{test}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("pki dir");
        let ca_key = KeyPair::generate().expect("key");
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("params");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        // Distinct names: rcgen's default is one for every certificate,
        // which makes each leaf look self-signed to BoringSSL (grpcio).
        ca.distinguished_name
            .push(DnType::CommonName, "ws-gateway test CA");
        let ca_cert = ca.self_signed(&ca_key).expect("CA");
        let issuer = Issuer::new(ca, ca_key);
        let write = |name: &str, text: String| std::fs::write(dir.join(name), text).expect("pem");
        write("ca.pem", ca_cert.pem());
        for (name, sans, usage) in [
            (
                "server",
                vec!["127.0.0.1".to_owned(), "localhost".to_owned()],
                ExtendedKeyUsagePurpose::ServerAuth,
            ),
            (
                "client",
                vec!["gateway".to_owned()],
                ExtendedKeyUsagePurpose::ClientAuth,
            ),
        ] {
            let key = KeyPair::generate().expect("key");
            let mut params = CertificateParams::new(sans).expect("params");
            params.extended_key_usages = vec![usage];
            params.distinguished_name.push(DnType::CommonName, name);
            let cert = params.signed_by(&key, &issuer).expect("signed");
            write(&format!("{name}.pem"), cert.pem());
            write(&format!("{name}.key"), key.serialize_pem());
        }
        Pki { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }
}

fn ws_api_tls(pki: &Pki, mtls: bool) -> Proc {
    let (cert, key, ca) = (
        pki.path("server.pem"),
        pki.path("server.key"),
        pki.path("ca.pem"),
    );
    let mut extra = vec!["--tls-cert", &cert, "--tls-key", &key];
    if mtls {
        extra.extend(["--tls-client-ca", &ca]);
    }
    ws_api_with("127.0.0.1:0", "echo", &extra)
}

async fn echoes(gw: &Proc) {
    let mut ws = connect(gw.addr, "9").await;
    send_text(&mut ws, &frame("message", b"over tls")).await;
    assert_eq!(
        recv(&mut ws).await.into_text().expect("text").as_str(),
        frame("message", b"over tls")
    );
}

#[tokio::test]
async fn a_gateway_reaches_ws_api_over_tls_and_mtls() {
    let pki = Pki::new("ok");
    let api = ws_api_tls(&pki, false);
    let upstream = format!("https://{}", api.addr);
    let ca = pki.path("ca.pem");
    let gw = gateway_to(&upstream, 1, &["--upstream-ca", &ca]);
    until_ready(&gw);
    echoes(&gw).await;

    let api = ws_api_tls(&pki, true);
    let upstream = format!("https://{}", api.addr);
    let (cert, key) = (pki.path("client.pem"), pki.path("client.key"));
    let gw = gateway_to(
        &upstream,
        1,
        &[
            "--upstream-ca",
            &ca,
            "--upstream-cert",
            &cert,
            "--upstream-key",
            &key,
        ],
    );
    until_ready(&gw);
    echoes(&gw).await;
}

#[tokio::test]
async fn without_the_client_certificate_a_gateway_gets_no_stream() {
    let pki = Pki::new("refused");
    let api = ws_api_tls(&pki, true);
    let upstream = format!("https://{}", api.addr);
    let gw = gateway_to(&upstream, 1, &["--upstream-ca", &pki.path("ca.pem")]);
    let admin = gw.admin.expect("admin");
    // Several attempts, each refused in the TLS handshake.
    let until = Instant::now() + DEADLINE;
    while metric(admin, "gateway_upstream_reconnects_total").unwrap_or(0.0) < 3.0 {
        assert!(Instant::now() < until, "the gateway stopped trying");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(metric_with(admin, "gateway_upstream_up", "core", "0"), 0.0);
    assert_eq!(http_get(admin, "/readyz").0, 503);
    let refused = refusal(try_connect(gw.addr, Some("9")).await.expect_err("refused"));
    assert_eq!(refused.0, 503, "{refused:?}");
}

#[test]
fn grpc_c_core_pushes_to_ws_api_over_mtls() {
    let pki = Pki::new("grpcio");
    let api = ws_api_tls(&pki, true);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/reflection/call.py");
    let call = |tls: &[String]| {
        Command::new(peers::python())
            .arg(&script)
            .arg(format!("localhost:{}", api.addr.port()))
            .arg("wsapi.BizMsgService/Push")
            .arg(r#"{"uid": "1", "bizCode": "t", "bizPayload": "p"}"#)
            .args(tls)
            .output()
            .expect("the venv's python runs")
    };
    let ca = vec!["--ca".to_owned(), pki.path("ca.pem")];
    let mtls = [
        ca.clone(),
        vec![
            "--cert".into(),
            pki.path("client.pem"),
            "--key".into(),
            pki.path("client.key"),
        ],
    ]
    .concat();
    let out = call(&mtls);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("offset"));
    // The same call without a client certificate is refused.
    assert!(!call(&ca).status.success());
}
