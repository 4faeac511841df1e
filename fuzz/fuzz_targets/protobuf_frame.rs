//! Binary frames: the protobuf `Protocol` decoder, and the gRPC frames the
//! gateway builds around what it accepts.
//!
//! For any bytes the decoder accepts as a `Protocol` `p`:
//! - the downstream binary frame (`encode_protobuf`) decodes back to `p`;
//! - the upstream frame `MsgPrefix::encode_grpc` is a gRPC message: flag
//!   byte 0, a 4-byte big-endian length equal to the body's, and a body
//!   that prost decodes into `Msg{server, sid, payload: p}` and that is
//!   byte for byte prost's own encoding of that `Msg`;
//! - likewise the resume frame `encode_grpc_control` decodes into one
//!   `Msg{server, sid, control}` (the prefix and the tail merge);
//! - the gateway's incremental gRPC `Decoder` given those frames in two
//!   pieces split anywhere yields exactly their bodies, and nothing left.
//!
//! `server` and `sid` come from the decoded frame itself (`id` and
//! `offset`), so they range over arbitrary strings without a new input format.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use prost::Message;
// The library's paths, all here so that a module move is fixed in one place.
use ws_gateway::codec::{MsgPrefix, decode_protobuf, encode_protobuf};
use ws_gateway::proto::wsapi::{Control, Msg, Resume, control::Op};
use ws_gateway::upstream::grpc::codec::Decoder;

fuzz_target!(|data: &[u8]| {
    let Ok(p) = decode_protobuf(data) else { return };
    assert_eq!(
        decode_protobuf(&encode_protobuf(&p)).expect("an encoded Protocol decodes"),
        p,
        "downstream binary frame round-trips"
    );

    let (server, sid) = (p.id.as_str(), p.offset.as_str());
    let prefix = MsgPrefix::new(server, sid, None);

    let mut frame = BytesMut::new();
    prefix.encode_grpc(&p, &mut frame);
    let want = Msg {
        server: server.to_owned(),
        sid: sid.to_owned(),
        payload: Some(p.clone()),
        ..Msg::default()
    };
    let body = grpc_body(&frame);
    assert_eq!(Msg::decode(body).expect("the body decodes"), want);
    assert_eq!(body, &want.encode_to_vec()[..], "prost's own encoding");

    let control = Control {
        op: Some(Op::Resume(Resume {
            uid: p.payload.len() as u64 * 0x9e37_79b9,
            since: p.r#type.clone(),
            ..Resume::default()
        })),
    };
    let mut resume = BytesMut::new();
    prefix.encode_grpc_control(control.clone(), &mut resume);
    let want_resume = Msg {
        server: server.to_owned(),
        sid: sid.to_owned(),
        control: Some(control),
        ..Msg::default()
    };
    assert_eq!(
        Msg::decode(grpc_body(&resume)).expect("the resume body decodes"),
        want_resume
    );

    // Both frames back to back, split at a point the input chooses.
    let mut wire = frame.to_vec();
    wire.extend_from_slice(&resume);
    let cut = data.first().map_or(0, |b| *b as usize * wire.len() / 255);
    let mut d = Decoder::new(wire.len());
    let mut got = Vec::new();
    for piece in [&wire[..cut], &wire[cut..]] {
        d.push(piece);
        while let Some(m) = d.next_message().expect("a gateway frame is valid gRPC") {
            got.push(m);
        }
    }
    assert_eq!(got.len(), 2, "two frames, two messages");
    assert_eq!(&got[0][..], grpc_body(&frame));
    assert_eq!(&got[1][..], grpc_body(&resume));
    assert_eq!(d.buffered(), 0);
});

/// Checks the gRPC length prefix of one frame: flag 0 (uncompressed), then
/// the body's length, big-endian; returns the body.
fn grpc_body(frame: &[u8]) -> &[u8] {
    assert!(frame.len() >= 5, "a gRPC frame has a 5-byte header");
    assert_eq!(frame[0], 0, "uncompressed flag");
    let len = u32::from_be_bytes([frame[1], frame[2], frame[3], frame[4]]) as usize;
    assert_eq!(len, frame.len() - 5, "length prefix equals the body length");
    &frame[5..]
}
