//! The hand-parsed HTTP upgrade: any bytes give a request, a refusal with a
//! status, or "incomplete" — never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ws_gateway::edge::handshake;

fuzz_target!(|data: &[u8]| {
    let paths = ["/gateway/ws".to_string()];
    let subprotocols = ["graphql-ws".to_string()];
    let origins = ["https://app.example".to_string()];
    match handshake::parse(data, &paths, &subprotocols) {
        Ok(Some(u)) => {
            assert!(!u.accept_key.is_empty());
            if let Err(r) = handshake::check_origin(u.origin.as_deref(), &origins) {
                assert_eq!(r.status, 403);
            }
        }
        Ok(None) => {}
        Err(r) => assert!((400..600).contains(&r.status)),
    }
});
