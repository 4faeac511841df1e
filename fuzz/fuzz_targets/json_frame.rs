//! Text frames: the JSON envelope decoder rejects or accepts any text,
//! never panics, and what the encoder writes of an accepted frame decodes
//! back to the same fields.
//!
//! The encoder does not write every field the decoder reads: `resent` is
//! upstream only (a client's flag for ws-api, never sent back to a
//! client), and `duplicate` is downstream only (on an ack from ws-api,
//! never read from a client). So the round trip is checked field by field:
//! `type`, `payload`, `offset` and `id` must survive, `resent` must come
//! back false, `duplicate` must never be set by decoding.
#![no_main]

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use libfuzzer_sys::fuzz_target;
// The library's paths, all here so that a module move is fixed in one place.
use ws_gateway::codec::{decode_json, encode_json};
use ws_gateway::proto::wsgateway::Protocol;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(p) = decode_json(text) else { return };
    assert!(
        !p.duplicate,
        "decoding never sets duplicate (not read from a client)"
    );

    let encoded = encode_json(&p);
    let again = decode_json(&encoded).expect("an encoded frame decodes");
    assert_eq!(again.r#type, p.r#type, "type round-trips");
    assert_eq!(again.payload, p.payload, "payload round-trips");
    assert_eq!(again.offset, p.offset, "offset round-trips");
    assert_eq!(again.id, p.id, "id round-trips");
    // `resent` is decoded but deliberately not encoded (see the top).
    assert!(
        !again.resent,
        "resent is not encoded, so it decodes as false"
    );
    assert!(!again.duplicate);
    // What the encoder writes it writes the same way again: one canonical form.
    assert_eq!(encode_json(&again), encoded, "encoding is canonical");

    // The encoded envelope is the Go gateway's shape: `type` and `payload`
    // (standard base64 with padding) always, `offset` and `id` only when
    // set, and no `resent`; checked with a JSON parser of its own.
    assert_eq!(envelope_keys(&encoded, &p), keys(&p, false), "{encoded}");

    // `duplicate` is written (on an ack from ws-api) exactly when set, and
    // does not disturb the other fields; decoding ignores it (downstream only).
    let acked = Protocol {
        duplicate: true,
        ..p.clone()
    };
    let with_dup = encode_json(&acked);
    assert_eq!(envelope_keys(&with_dup, &p), keys(&p, true), "{with_dup}");
    let back = decode_json(&with_dup).expect("an encoded ack decodes");
    assert_eq!(
        (&back.r#type, &back.payload, &back.offset, &back.id),
        (&p.r#type, &p.payload, &p.offset, &p.id),
        "duplicate does not disturb the other fields"
    );
    assert!(
        !back.duplicate,
        "duplicate is downstream only: never decoded"
    );
});

/// The keys `encode_json` must write for `p`.
fn keys(p: &Protocol, duplicate: bool) -> Vec<&'static str> {
    let mut k = vec!["payload", "type"];
    if !p.offset.is_empty() {
        k.push("offset");
    }
    if !p.id.is_empty() {
        k.push("id");
    }
    if duplicate {
        k.push("duplicate");
    }
    k.sort_unstable();
    k
}

/// The keys of an encoded envelope, after checking each value against `p`.
fn envelope_keys(encoded: &str, p: &Protocol) -> Vec<&'static str> {
    let v: serde_json::Value = serde_json::from_str(encoded).expect("encode_json writes JSON");
    let obj = v.as_object().expect("an object");
    let mut k = Vec::new();
    for (key, value) in obj {
        let (name, ok) = match key.as_str() {
            "type" => ("type", value.as_str() == Some(p.r#type.as_str())),
            "payload" => (
                "payload",
                value
                    .as_str()
                    .and_then(|s| STANDARD.decode(s).ok())
                    .as_deref()
                    == Some(&p.payload[..]),
            ),
            "offset" => ("offset", value.as_str() == Some(p.offset.as_str())),
            "id" => ("id", value.as_str() == Some(p.id.as_str())),
            "duplicate" => ("duplicate", value.as_bool() == Some(true)),
            other => panic!("unexpected key {other:?} in {encoded}"),
        };
        assert!(ok, "{name} is wrong in {encoded}");
        k.push(name);
    }
    k.sort_unstable();
    k
}
