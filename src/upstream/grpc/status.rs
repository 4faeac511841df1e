//! gRPC status: the `grpc-status` / `grpc-message` pair that ends every call,
//! and the errors of the transport below it mapped onto the same codes.

use http::HeaderMap;
use percent_encoding::percent_decode_str;

/// How [`Status::from_h2`] words a peer's GOAWAY ENHANCE_YOUR_CALM.
const GOAWAY_CALM: &str = "ws-api sent GOAWAY ENHANCE_YOUR_CALM";

/// gRPC status codes (<https://grpc.github.io/grpc/core/md_doc_statuscodes.html>),
/// in their numeric order: the discriminant is the code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::FromRepr)]
#[repr(u8)]
pub enum Code {
    Ok,
    Cancelled,
    Unknown,
    InvalidArgument,
    DeadlineExceeded,
    NotFound,
    AlreadyExists,
    PermissionDenied,
    ResourceExhausted,
    FailedPrecondition,
    Aborted,
    OutOfRange,
    Unimplemented,
    Internal,
    Unavailable,
    DataLoss,
    Unauthenticated,
}

impl Code {
    pub fn from_i32(v: i32) -> Code {
        u8::try_from(v)
            .ok()
            .and_then(Code::from_repr)
            .unwrap_or(Code::Unknown)
    }
}

/// The outcome of a failed call, as the server (or the transport) reported it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("grpc status {code:?}: {message}")]
pub struct Status {
    pub code: Code,
    pub message: String,
}

impl Status {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Status {
            code,
            message: message.into(),
        }
    }

    /// Reads `grpc-status` from trailers (or trailers-only headers).
    /// `None` when the map holds no status at all.
    pub fn from_headers(map: &HeaderMap) -> Option<Status> {
        let code = map.get("grpc-status")?;
        let code = code
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
            .map(Code::from_i32)
            .unwrap_or(Code::Unknown);
        let message = map
            .get("grpc-message")
            .and_then(|m| m.to_str().ok())
            // Percent-encoded (the gRPC HTTP/2 spec); what is not valid passes as is.
            .map(|m| percent_decode_str(m).decode_utf8_lossy().into_owned())
            .unwrap_or_default();
        Some(Status { code, message })
    }

    /// The server's GOAWAY ENHANCE_YOUR_CALM: grpc-go and gRPC C-core send
    /// it (debug data `too_many_pings`) to a client that pings more often
    /// than their keepalive policy permits.
    pub fn is_too_many_pings(&self) -> bool {
        self.code == Code::ResourceExhausted && self.message.starts_with(GOAWAY_CALM)
    }

    /// An h2 error seen by a call: resets and GOAWAYs become their gRPC codes.
    pub fn from_h2(err: &h2::Error) -> Status {
        let code = match err.reason() {
            Some(h2::Reason::CANCEL) => Code::Cancelled,
            Some(h2::Reason::REFUSED_STREAM) => Code::Unavailable,
            Some(h2::Reason::ENHANCE_YOUR_CALM) => Code::ResourceExhausted,
            Some(h2::Reason::INADEQUATE_SECURITY) => Code::PermissionDenied,
            _ if err.is_io() || err.is_go_away() => Code::Unavailable,
            _ => Code::Internal,
        };
        if err.is_go_away() && err.is_remote() && code == Code::ResourceExhausted {
            return Status::new(code, format!("{GOAWAY_CALM}: {err}"));
        }
        Status::new(code, format!("h2: {err}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_trailers() {
        let mut m = HeaderMap::new();
        assert_eq!(Status::from_headers(&m), None);
        m.insert("grpc-status", "16".parse().unwrap());
        m.insert("grpc-message", "bad%20token%3A x".parse().unwrap());
        let s = Status::from_headers(&m).unwrap();
        assert_eq!(s.code, Code::Unauthenticated);
        assert_eq!(s.message, "bad token: x");
        // Invalid escapes pass as they are; UTF-8 is decoded.
        m.insert("grpc-message", "100% %zz %E2%9C%93".parse().unwrap());
        let s = Status::from_headers(&m).unwrap();
        assert_eq!(s.message, "100% %zz \u{2713}");
    }

    #[test]
    fn unknown_codes_are_unknown() {
        assert_eq!(Code::from_i32(99), Code::Unknown);
        assert_eq!(Code::from_i32(-1), Code::Unknown);
        assert_eq!(Code::from_i32(0), Code::Ok);
        assert_eq!(Code::from_i32(14), Code::Unavailable);
        assert_eq!(Code::from_i32(16), Code::Unauthenticated);
        assert_eq!(Code::from_i32(17), Code::Unknown);
    }
}
