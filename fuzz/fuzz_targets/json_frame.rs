//! Text frames: the JSON envelope decoder must reject, never panic, and
//! whatever it accepts must survive an encode/decode round trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ws_gateway::codec;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(p) = codec::decode_json(text) {
        let again = codec::decode_json(&codec::encode_json(&p)).expect("re-encoded frame decodes");
        assert_eq!(again, p);
    }
});
