//! Whether each ws-api node can serve: its `grpc.health.v1.Health` status,
//! polled every [`POLL_EVERY`] while the node's stream is up, over the
//! node's own HTTP/2 connection (a unary call of a few bytes).
//!
//! A node that answers NOT_SERVING (ours does while its Redis presence store
//! is unreachable: every Connect would fail UNAVAILABLE) counts in the
//! core's `gateway_upstream_store_down` gauge; `/readyz` is 503 for a core
//! whose every live node is in it, and 200 again at the first poll that
//! finds one serving, with no client traffic needed. A node without the
//! service (UNIMPLEMENTED: the Go ws-api, the grpcio and grpc-go peers)
//! counts as serving and is not asked again until its next stream;
//! NOT_FOUND and UNKNOWN count as serving; a failed poll leaves the last
//! state (the stream's HTTP/2 pings judge a node that hangs).
//!
//! The two messages are written here by hand (two fields in all) rather
//! than generated from `grpc/health/v1/health.proto`.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use super::Upstream;
use super::grpc::Code;
use crate::metrics::Counters;

const CHECK: &str = "/grpc.health.v1.Health/Check";

/// How often a node whose stream is up is asked.
pub const POLL_EVERY: Duration = Duration::from_secs(1);

/// `grpc.health.v1.HealthCheckRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HealthCheckRequest {
    /// The service asked about; empty: the whole server.
    #[prost(string, tag = "1")]
    pub service: String,
}

/// `grpc.health.v1.HealthCheckResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HealthCheckResponse {
    /// `ServingStatus`: 0 UNKNOWN, 1 SERVING, 2 NOT_SERVING, 3 SERVICE_UNKNOWN.
    #[prost(int32, tag = "1")]
    pub status: i32,
}

const NOT_SERVING: i32 = 2;

/// One node's health, as this core last heard it.
#[derive(Debug, Default)]
pub(crate) struct NodeHealth {
    /// The node said NOT_SERVING (counted in `upstream_store_down`).
    down: Cell<bool>,
    /// The stream (by when it came up) on which the node had no health service.
    unsupported: Cell<Option<Instant>>,
}

impl NodeHealth {
    fn set_down(&self, down: bool, counters: &Counters) {
        match (self.down.replace(down), down) {
            (false, true) => counters.upstream_store_down.inc(),
            (true, false) => counters.upstream_store_down.dec(),
            _ => {}
        }
    }

    /// The stream is gone: the node no longer counts, up or down.
    pub(crate) fn stream_lost(&self, counters: &Counters) {
        self.set_down(false, counters);
    }
}

/// What a poll's answer means: `Some(down)`, or `None` to keep the last state.
fn judge(answer: Result<HealthCheckResponse, Code>) -> Option<bool> {
    match answer {
        Ok(r) => Some(r.status == NOT_SERVING),
        Err(Code::Unimplemented | Code::NotFound) => Some(false),
        Err(_) => None,
    }
}

/// Polls `node` until it closes.
pub(crate) async fn watch(node: Rc<Upstream>) {
    loop {
        glommio::timer::sleep(POLL_EVERY).await;
        if node.closing.get() {
            node.health.stream_lost(&node.counters);
            return;
        }
        let stream = node.up_since.get();
        if !node.is_up() || (stream.is_some() && node.health.unsupported.get() == stream) {
            continue;
        }
        let answer = match node.channel() {
            Ok(channel) => {
                let req = HealthCheckRequest::default();
                channel.unary(CHECK, &req, node.cfg.rpc_timeout).await
            }
            Err(e) => Err(e),
        };
        let answer = answer.map_err(|e| {
            debug!(upstream = %node.addr, error = %e, "health check failed");
            e.code
        });
        if answer == Err(Code::Unimplemented) {
            node.health.unsupported.set(stream);
        }
        let Some(down) = judge(answer) else {
            continue;
        };
        // A stream lost during the call already took the node out.
        if !node.is_up() {
            continue;
        }
        match (node.health.down.get(), down) {
            (false, true) => {
                warn!(upstream = %node.addr, "ws-api says NOT_SERVING: its presence store is down")
            }
            (true, false) => info!(upstream = %node.addr, "ws-api serving again"),
            _ => {}
        }
        node.health.set_down(down, &node.counters);
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    fn status(s: i32) -> Result<HealthCheckResponse, Code> {
        Ok(HealthCheckResponse { status: s })
    }

    #[test]
    fn only_not_serving_is_down_and_no_health_service_is_serving() {
        assert_eq!(judge(status(1)), Some(false));
        assert_eq!(judge(status(2)), Some(true));
        assert_eq!(judge(status(0)), Some(false), "UNKNOWN");
        assert_eq!(judge(status(3)), Some(false), "SERVICE_UNKNOWN");
        assert_eq!(
            judge(Err(Code::Unimplemented)),
            Some(false),
            "no health service"
        );
        assert_eq!(judge(Err(Code::NotFound)), Some(false));
        assert_eq!(
            judge(Err(Code::DeadlineExceeded)),
            None,
            "keep the last state"
        );
        assert_eq!(judge(Err(Code::Unavailable)), None);
    }

    /// The hand-written messages are the wire format of grpc.health.v1.
    #[test]
    fn messages_match_the_health_proto() {
        let req = HealthCheckRequest {
            service: "wsapi.ExchangeService".into(),
        };
        let mut want = vec![0x0a, 21];
        want.extend_from_slice(b"wsapi.ExchangeService");
        assert_eq!(req.encode_to_vec(), want);
        assert_eq!(
            HealthCheckRequest::default().encode_to_vec(),
            Vec::<u8>::new()
        );
        let resp = HealthCheckResponse::decode(&[0x08, 0x02][..]).expect("decodes");
        assert_eq!(resp.status, NOT_SERVING);
    }

    #[test]
    fn the_gauge_counts_a_node_once_and_forgets_it_with_its_stream() {
        let counters = Counters::default();
        let h = NodeHealth::default();
        h.set_down(true, &counters);
        h.set_down(true, &counters);
        assert_eq!(counters.upstream_store_down.get(), 1);
        h.stream_lost(&counters);
        h.stream_lost(&counters);
        assert_eq!(counters.upstream_store_down.get(), 0);
    }
}
