//! Client frames ⇄ `wsgateway.Protocol`, with no I/O.
//!
//! Text frames carry the Go gateway's JSON envelope
//! `{"type": "...", "payload": "<base64>"}`; binary frames carry a protobuf
//! `Protocol`. A session answers in the format of the client's latest frame
//! (JSON until the client sends binary, or from the start with
//! `?format=protobuf`), so one gateway serves browsers and native apps alike.
//!
//! In raw mode (`--frame-format raw`) a message passes verbatim as
//! `Protocol{type: "text"|"binary", payload}`, and a downstream `Protocol`
//! of type text or binary becomes that frame type again; other types still
//! use the envelope, so pushes keep working.
//!
//! Upstream `Msg`s are encoded here too: `server` and `sid` never change
//! during a session, so their encoding is computed once ([`MsgPrefix`]) and
//! each message only appends its `Protocol`.
//!
//! # Layout
//!
//! - this file: client frames (JSON envelope, protobuf, raw).
//! - [`deflate`]: permessage-deflate: the handshake's negotiation and the codec.
//! - [`sid`]: session ids (core, instance, slot) and their text form.

pub mod deflate;
pub mod sid;

use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use bytes::{Bytes, BytesMut};
use prost::Message;
use serde::{Deserialize, Serialize};

use crate::proto::wsapi::{Control, Msg};
use crate::proto::wsgateway::Protocol;
use crate::upstream::grpc;

/// Standard alphabet, padding optional on input (clients differ), emitted on output (as Go does).
const B64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// How a session encodes what it sends to its client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Protobuf,
}

/// Why a client frame could not be turned into a `Protocol`.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("invalid JSON envelope: {0}")]
    Json(#[from] serde_json::Error),
    #[error("payload is not base64: {0}")]
    Base64(#[from] base64::DecodeError),
    #[error("invalid protobuf Protocol: {0}")]
    Protobuf(#[from] prost::DecodeError),
}

/// A field the envelope does not have is refused (the client gets an
/// error frame naming it): `{"type":"message","text":"hi"}` would otherwise
/// go up with an empty payload and no one would know why.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonIn<'a> {
    #[serde(rename = "type", borrow)]
    ty: std::borrow::Cow<'a, str>,
    #[serde(default, borrow)]
    payload: std::borrow::Cow<'a, str>,
    #[serde(default)]
    offset: String,
    #[serde(default)]
    id: String,
    #[serde(default)]
    resent: bool,
    /// Written by the gateway on acks, never read: a client that sends a
    /// frame it received back is not refused for it.
    #[serde(default, rename = "duplicate")]
    _duplicate: serde::de::IgnoredAny,
}

/// The delivery fields (docs/delivery.md) are left out when unset, so a
/// frame without them is byte for byte the Go gateway's.
#[derive(Serialize)]
struct JsonOut<'a> {
    #[serde(rename = "type")]
    ty: &'a str,
    payload: String,
    #[serde(skip_serializing_if = "str::is_empty")]
    offset: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    id: &'a str,
    #[serde(skip_serializing_if = "is_false")]
    duplicate: bool,
}

fn is_false(b: &bool) -> bool {
    !b
}

/// Decodes a text frame's JSON envelope.
pub fn decode_json(text: &str) -> Result<Protocol, DecodeError> {
    let frame: JsonIn = serde_json::from_str(text)?;
    let payload = B64.decode(frame.payload.as_bytes())?;
    Ok(Protocol {
        r#type: frame.ty.into_owned(),
        payload: Bytes::from(payload),
        offset: frame.offset,
        id: frame.id,
        resent: frame.resent,
        duplicate: false,
    })
}

/// Decodes a binary frame's protobuf `Protocol`.
pub fn decode_protobuf(bytes: &[u8]) -> Result<Protocol, DecodeError> {
    Ok(Protocol::decode(bytes)?)
}

/// Encodes `Protocol` as the JSON envelope of a text frame.
pub fn encode_json(p: &Protocol) -> String {
    let out = JsonOut {
        ty: &p.r#type,
        payload: B64.encode(&p.payload),
        offset: &p.offset,
        id: &p.id,
        duplicate: p.duplicate,
    };
    // Serializing a struct of strings and a bool cannot fail.
    serde_json::to_string(&out).unwrap_or_default()
}

/// Encodes `Protocol` as a protobuf binary frame.
pub fn encode_protobuf(p: &Protocol) -> Bytes {
    Bytes::from(p.encode_to_vec())
}

/// Raw mode: the message itself, typed by its frame kind.
pub fn raw(binary: bool, payload: Bytes) -> Protocol {
    Protocol {
        r#type: if binary { "binary" } else { "text" }.into(),
        payload,
        ..Protocol::default()
    }
}

/// The encoded `server`, `sid` and `device` fields of every `Msg` a
/// session sends (the device, when the client gave one, lets ws-api keep
/// its acks per device without remembering the session's).
#[derive(Debug, Clone)]
pub struct MsgPrefix(Bytes);

impl MsgPrefix {
    pub fn new(server: &str, sid: &str, device: Option<&str>) -> Self {
        let head = Msg {
            server: server.to_owned(),
            sid: sid.to_owned(),
            device: device.unwrap_or_default().to_owned(),
            ..Msg::default()
        };
        MsgPrefix(Bytes::from(head.encode_to_vec()))
    }

    /// Appends the gRPC frame of `Msg{server, sid, payload}` to `out`:
    /// the 5-byte gRPC header, then the message.
    pub fn encode_grpc(&self, payload: &Protocol, out: &mut BytesMut) {
        let inner = payload.encoded_len();
        let field = 1 + prost::length_delimiter_len(inner) + inner;
        grpc::codec::put_header(self.0.len() + field, out);
        out.extend_from_slice(&self.0);
        prost::encoding::encode_key(3, prost::encoding::WireType::LengthDelimited, out);
        prost::encoding::encode_varint(inner as u64, out);
        // Writing into a BytesMut that put_header reserved cannot run out of space.
        let _ = payload.encode(out);
    }

    /// Appends the gRPC frame of `Msg{server, sid, control}` (a resume:
    /// once per session at most). Concatenated protobuf messages merge, so
    /// the prefix is followed by a `Msg` holding only the control.
    pub fn encode_grpc_control(&self, control: Control, out: &mut BytesMut) {
        let tail = Msg {
            control: Some(control),
            ..Msg::default()
        };
        grpc::codec::put_header(self.0.len() + tail.encoded_len(), out);
        out.extend_from_slice(&self.0);
        let _ = tail.encode(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proto(ty: &str, payload: &[u8]) -> Protocol {
        Protocol {
            r#type: ty.into(),
            payload: Bytes::copy_from_slice(payload),
            ..Protocol::default()
        }
    }

    #[test]
    fn json_carries_the_delivery_fields_only_when_set() {
        let p = decode_json(r#"{"type":"chat","payload":"aGk=","id":"m-1","resent":true}"#)
            .expect("decodes");
        assert_eq!((p.id.as_str(), p.resent), ("m-1", true));
        let ack = decode_json(r#"{"type":"ack","offset":"k3:42"}"#).expect("decodes");
        assert_eq!(ack.offset, "k3:42");
        let pushed = Protocol {
            offset: "k3:43".into(),
            ..proto("news", b"hi")
        };
        assert_eq!(
            encode_json(&pushed),
            r#"{"type":"news","payload":"aGk=","offset":"k3:43"}"#
        );
        let acked = Protocol {
            id: "m-1".into(),
            duplicate: true,
            ..proto("ack", b"")
        };
        assert_eq!(
            encode_json(&acked),
            r#"{"type":"ack","payload":"","id":"m-1","duplicate":true}"#
        );
    }

    #[test]
    fn json_matches_the_seed_shape() {
        let seed = r#"{"type":"message","payload":"eyJrZXkiOiJYVmxCemdiYWlDIn0="}"#;
        let p = decode_json(seed).expect("seed frame decodes");
        assert_eq!(p.r#type, "message");
        assert_eq!(&p.payload[..], br#"{"key":"XVlBzgbaiC"}"#);
        assert_eq!(encode_json(&p), seed);
    }

    #[test]
    fn json_accepts_missing_padding_and_payload() {
        assert_eq!(
            &decode_json(r#"{"type":"a","payload":"YWI"}"#)
                .unwrap()
                .payload[..],
            b"ab"
        );
        assert!(
            decode_json(r#"{"type":"HEARTBEAT"}"#)
                .unwrap()
                .payload
                .is_empty()
        );
    }

    #[test]
    fn json_rejects_bad_input() {
        for bad in [
            "",
            "{",
            "[]",
            r#"{"payload":"YQ=="}"#,
            r#"{"type":"a","payload":"!!"}"#,
        ] {
            assert!(decode_json(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn json_names_a_field_the_envelope_does_not_have() {
        let err = decode_json(r#"{"type":"message","text":"hi"}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field `text`"), "{err}");
        // What the gateway writes it reads back (its `duplicate` ignored).
        let ack = decode_json(r#"{"type":"ack","payload":"","id":"m-1","duplicate":true}"#);
        assert!(ack.is_ok_and(|p| !p.duplicate));
    }

    #[test]
    fn protobuf_round_trips_and_rejects_garbage() {
        let p = proto("bin", &[0, 1, 2, 255]);
        assert_eq!(decode_protobuf(&encode_protobuf(&p)).unwrap(), p);
        assert!(decode_protobuf(&[0xff, 0xff, 0xff]).is_err());
    }

    #[test]
    fn prefix_encoding_equals_prost() {
        let p = proto("message", b"hello");
        let mut out = BytesMut::new();
        MsgPrefix::new("10.0.0.5:8080#1", "abc-0-1", None).encode_grpc(&p, &mut out);
        let len = u32::from_be_bytes([out[1], out[2], out[3], out[4]]) as usize;
        assert_eq!(out[0], 0);
        assert_eq!(len, out.len() - 5);
        let msg = Msg::decode(&out[5..]).unwrap();
        let want = Msg {
            server: "10.0.0.5:8080#1".into(),
            sid: "abc-0-1".into(),
            payload: Some(p.clone()),
            ..Msg::default()
        };
        assert_eq!(msg, want);
        assert_eq!(&out[5..], &want.encode_to_vec()[..]);
        // With a device id the fields come in another order: the same Msg.
        let mut out = BytesMut::new();
        MsgPrefix::new("10.0.0.5:8080#1", "abc-0-1", Some("tab-2")).encode_grpc(&p, &mut out);
        let with_device = Msg {
            device: "tab-2".into(),
            ..want
        };
        assert_eq!(Msg::decode(&out[5..]).unwrap(), with_device);
    }

    #[test]
    fn control_encoding_decodes_as_one_msg() {
        use crate::proto::wsapi::{Resume, control::Op};
        let control = Control {
            op: Some(Op::Resume(Resume {
                uid: 7,
                since: "k3:42".into(),
                device: "tab-2".into(),
            })),
        };
        let mut out = BytesMut::new();
        MsgPrefix::new("gw#0", "abc-0-1", None).encode_grpc_control(control.clone(), &mut out);
        let msg = Msg::decode(&out[5..]).unwrap();
        assert_eq!((msg.sid.as_str(), msg.control), ("abc-0-1", Some(control)));
    }
}
