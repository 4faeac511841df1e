//! Which callers may use ExchangeService (`--gateway-secret-file`): only
//! those whose every call carries `authorization: Bearer <secret>`, the
//! gateways started with the same secret in their `--upstream-secret-file`.
//! A refusal is UNAUTHENTICATED with a message that begins
//! [`GATEWAY_REFUSED`], counted (`ws_api_gateways_refused_total`).
//!
//! Without the flag any caller may: on a trusted network, or with mTLS
//! (`--tls-client-ca`), which checks callers at the TLS layer. The secret
//! is the check for links where a certificate per gateway is too much,
//! and, beside mTLS, it separates gateways from the business services
//! that hold a client certificate to call BizMsgService.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use subtle::ConstantTimeEq;
use tonic::service::Interceptor;
use tonic::{Request, Status};

use crate::outbox::Outbox;
use crate::proto::{GATEWAY_REFUSED, MIN_GATEWAY_SECRET};

/// Checks each ExchangeService call for the gateway secret.
#[derive(Clone)]
pub struct GatewaySecret {
    secret: Option<Arc<[u8]>>,
    outbox: Arc<Outbox>,
}

/// A secret too short to be one.
#[derive(Debug, thiserror::Error)]
#[error("the gateway secret is {0} bytes, at least {MIN_GATEWAY_SECRET} are needed")]
pub struct ShortSecret(usize);

impl GatewaySecret {
    /// `secret`: what gateways must send (none: every caller is let in).
    pub fn new(secret: Option<Vec<u8>>, outbox: Arc<Outbox>) -> Result<GatewaySecret, ShortSecret> {
        if let Some(s) = &secret
            && s.len() < MIN_GATEWAY_SECRET
        {
            return Err(ShortSecret(s.len()));
        }
        Ok(GatewaySecret {
            secret: secret.map(Into::into),
            outbox,
        })
    }

    /// Why a call whose `authorization` is `given` is refused, if it is.
    fn refusal(&self, given: Option<&[u8]>) -> Option<&'static str> {
        let secret = self.secret.as_deref()?;
        match given.and_then(|v| v.strip_prefix(b"Bearer ")) {
            Some(given) if bool::from(given.ct_eq(secret)) => None,
            Some(_) => Some("wrong secret"),
            None => Some("no secret (authorization: Bearer <--upstream-secret-file>)"),
        }
    }
}

impl Interceptor for GatewaySecret {
    fn call(&mut self, req: Request<()>) -> Result<Request<()>, Status> {
        let given = req.metadata().get("authorization").map(|v| v.as_bytes());
        match self.refusal(given) {
            None => Ok(req),
            Some(why) => {
                self.outbox.stats.gateways_refused.fetch_add(1, Relaxed);
                Err(Status::unauthenticated(format!("{GATEWAY_REFUSED}: {why}")))
            }
        }
    }
}

impl std::fmt::Debug for GatewaySecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewaySecret")
            .field("required", &self.secret.is_some())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_secret_passes() {
        let outbox = Arc::new(Outbox::new(
            Default::default(),
            std::time::Duration::from_secs(1),
        ));
        let secret = b"0123456789abcdef".to_vec();
        let mut check = GatewaySecret::new(Some(secret), Arc::clone(&outbox)).unwrap();
        let call = |value: Option<&str>| {
            let mut req = Request::new(());
            if let Some(v) = value {
                req.metadata_mut()
                    .insert("authorization", v.parse().unwrap());
            }
            req
        };
        assert!(check.call(call(Some("Bearer 0123456789abcdef"))).is_ok());
        for bad in [
            None,
            Some("Bearer 0123456789abcdeX"),
            Some("0123456789abcdef"),
        ] {
            let refused = check.call(call(bad)).unwrap_err();
            assert_eq!(refused.code(), tonic::Code::Unauthenticated);
            assert!(
                refused.message().starts_with(GATEWAY_REFUSED),
                "{refused:?}"
            );
        }
        assert_eq!(outbox.stats.gateways_refused.load(Relaxed), 3);
        let mut open = GatewaySecret::new(None, Arc::clone(&outbox)).unwrap();
        assert!(open.call(call(None)).is_ok());
        assert!(GatewaySecret::new(Some(b"short".to_vec()), outbox).is_err());
    }
}
