//! Binary frames: the protobuf `Protocol` decoder, and the upstream `Msg`
//! encoding of whatever it accepts.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use ws_gateway::codec::{self, MsgPrefix};

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = codec::decode_protobuf(data) {
        let mut out = BytesMut::new();
        MsgPrefix::new("fuzz:1#0", "sid").encode_grpc(&p, &mut out);
        assert!(out.len() >= 5);
    }
});
