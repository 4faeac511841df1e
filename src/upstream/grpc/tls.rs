//! `--upstream https://…`: TLS to ws-api (rustls, ring), with the CA to
//! trust (`--upstream-ca`) and, for mTLS, this gateway's certificate
//! (`--upstream-cert`/`--upstream-key`). Built once at start and shared by
//! every core's connections; ALPN `h2`, as gRPC servers expect.

use std::path::Path;
use std::sync::Arc;

use futures_rustls::TlsConnector;
use futures_rustls::rustls::{self, ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// Why the upstream TLS settings could not be used.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamTlsError {
    #[error("{path}: {reason}")]
    Pem { path: String, reason: String },
    #[error("--upstream-tls-name {0:?} is not a DNS name or IP address")]
    Name(String),
    #[error("{0}")]
    Rustls(#[from] rustls::Error),
}

/// How every core's connections to ws-api do TLS.
#[derive(Clone)]
pub struct UpstreamTls {
    connector: TlsConnector,
    name: ServerName<'static>,
}

impl std::fmt::Debug for UpstreamTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "UpstreamTls({:?})", self.name)
    }
}

fn pem_err(path: &Path) -> impl Fn(rustls_pki_types::pem::Error) -> UpstreamTlsError + '_ {
    move |e| UpstreamTlsError::Pem {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, UpstreamTlsError> {
    CertificateDer::pem_file_iter(path)
        .map_err(pem_err(path))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_err(path))
}

impl UpstreamTls {
    /// `name`: what ws-api's certificate must be for (the upstream's host).
    pub fn load(
        ca: &Path,
        client: Option<(&Path, &Path)>,
        name: &str,
    ) -> Result<UpstreamTls, UpstreamTlsError> {
        let mut roots = RootCertStore::empty();
        for cert in certs(ca)? {
            roots.add(cert)?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots);
        let mut config = match client {
            Some((cert, key)) => {
                let key = PrivateKeyDer::from_pem_file(key).map_err(pem_err(key))?;
                builder.with_client_auth_cert(certs(cert)?, key)?
            }
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"h2".to_vec()];
        let name = ServerName::try_from(name.to_owned())
            .map_err(|_| UpstreamTlsError::Name(name.to_owned()))?;
        Ok(UpstreamTls {
            connector: TlsConnector::from(Arc::new(config)),
            name,
        })
    }

    pub(super) fn connector(&self) -> (&TlsConnector, ServerName<'static>) {
        (&self.connector, self.name.clone())
    }
}
