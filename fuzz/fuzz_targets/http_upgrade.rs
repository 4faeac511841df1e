//! The hand-parsed HTTP upgrade: any bytes give a request, a refusal with a
//! status, or "incomplete" — never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ws_gateway::handshake;

fuzz_target!(|data: &[u8]| {
    let paths = ["/gateway/ws".to_string()];
    let origins = ["https://app.example".to_string()];
    match handshake::parse(data, &paths, &origins) {
        Ok(Some(u)) => assert!(!u.accept_key.is_empty()),
        Ok(None) => {}
        Err(r) => assert!((400..600).contains(&r.status)),
    }
});
