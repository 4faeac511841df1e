//! ws-api's HTTP listener (`--http-listen`, axum): probes, metrics and the
//! publish API, for operators and for business services that would rather
//! not speak gRPC.
//!
//! - `GET /healthz`: 200 while the process runs.
//! - `GET /readyz`: 200 while it serves; 503 once it is stopping, or while
//!   the Redis presence store does not answer (as its gRPC health says).
//! - `GET /metrics`: the counters of [`crate::streams::Stats`] and a few
//!   gauges, Prometheus text ([`METRICS`] names and explains each once).
//! - `POST /api/<call>` (`push`, `kick`, `join`, `leave`, `push-group`,
//!   `broadcast`), a JSON body with the CLI's fields, answered with
//!   [`Answer`] as JSON; only with the API key (`Authorization: Bearer
//!   <key>` or `X-API-Key: <key>`) from `--http-api-key-file`. Without a key
//!   file the API is off (403), so a listener opened for probes publishes
//!   nothing.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use subtle::ConstantTimeEq;
use tonic::Code;

use crate::biz::Biz;
use crate::cli::{Answer, Call};
use crate::streams::Stats;

/// What the handlers share.
#[derive(Clone)]
pub struct Http {
    biz: Biz,
    api_key: Option<Arc<[u8]>>,
    stopping: tokio::sync::watch::Receiver<bool>,
}

impl Http {
    /// `api_key`: the key `/api/*` wants (none: the API is off);
    /// `stopping`: turns true when ws-api begins to stop.
    pub fn new(
        biz: Biz,
        api_key: Option<Vec<u8>>,
        stopping: tokio::sync::watch::Receiver<bool>,
    ) -> Http {
        Http {
            biz,
            api_key: api_key.map(Into::into),
            stopping,
        }
    }

    pub fn router(self) -> Router {
        Router::new()
            .route("/healthz", get(|| async { "ok\n" }))
            .route("/readyz", get(readyz))
            .route("/metrics", get(metrics))
            .route("/api/{call}", post(publish))
            .with_state(self)
    }
}

async fn readyz(State(http): State<Http>) -> (StatusCode, &'static str) {
    if *http.stopping.borrow() {
        (StatusCode::SERVICE_UNAVAILABLE, "stopping\n")
    } else if http.biz.outbox.stats.store_down.load(Relaxed) {
        (StatusCode::SERVICE_UNAVAILABLE, "presence store down\n")
    } else {
        (StatusCode::OK, "ready\n")
    }
}

/// A counter's name, help, and where it is counted.
pub type Metric = (&'static str, &'static str, fn(&Stats) -> &AtomicU64);

/// Every counter ws-api exports.
pub const METRICS: &[Metric] = &[
    (
        "ws_api_upstream_messages_total",
        "Messages gateways sent up.",
        |s| &s.upstream,
    ),
    (
        "ws_api_upstream_duplicates_total",
        "Upstream messages dropped as already received (a gateway's resend).",
        |s| &s.duplicates,
    ),
    (
        "ws_api_downstream_messages_total",
        "Messages sent down to gateways.",
        |s| &s.downstream,
    ),
    (
        "ws_api_downstream_refused_total",
        "Downstream messages refused: no stream to their gateway core, nothing kept.",
        |s| &s.downstream_refused,
    ),
    (
        "ws_api_downstream_kept_total",
        "Downstream messages kept while their core had no stream.",
        |s| &s.downstream_kept,
    ),
    (
        "ws_api_downstream_lost_total",
        "Kept downstream messages dropped: their gateway restarted or stayed away past --server-ttl.",
        |s| &s.downstream_lost,
    ),
    (
        "ws_api_replayed_total",
        "Messages sent again by resumes.",
        |s| &s.replayed,
    ),
    (
        "ws_api_resume_failed_total",
        "Resumes that could not be served.",
        |s| &s.resume_failed,
    ),
    (
        "ws_api_redelivered_total",
        "Messages sent again for want of a client acknowledgement.",
        |s| &s.redelivered,
    ),
    (
        "ws_api_redelivery_gave_up_total",
        "Users whose unacknowledged messages ran out of retries.",
        |s| &s.redelivery_gave_up,
    ),
    (
        "ws_api_client_duplicates_total",
        "Client messages with an id already received.",
        |s| &s.client_duplicates,
    ),
    (
        "ws_api_push_duplicates_total",
        "Pushes whose idempotency key had been appended.",
        |s| &s.push_duplicates,
    ),
    (
        "ws_api_auth_refused_total",
        "Connects refused for their token (--auth).",
        |s| &s.auth_refused,
    ),
    (
        "ws_api_gateways_refused_total",
        "ExchangeService calls refused for want of the gateway secret (--gateway-secret-file).",
        |s| &s.gateways_refused,
    ),
    (
        "ws_api_sessions_expired_total",
        "Sessions closed because their token expired.",
        |s| &s.sessions_expired,
    ),
    (
        "ws_api_xadd_errors_total",
        "Messages the redis-stream handler failed to append.",
        |s| &s.xadd_errors,
    ),
];

async fn metrics(State(http): State<Http>) -> impl IntoResponse {
    let stats = &http.biz.outbox.stats;
    let mut text = String::new();
    for (name, help, counter) in METRICS {
        let _ = writeln!(
            text,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
            counter(stats).load(Relaxed)
        );
    }
    let down = u8::from(stats.store_down.load(Relaxed));
    let _ = writeln!(
        text,
        "# HELP ws_api_presence_store_down 1 while the Redis presence store does not answer.\n\
         # TYPE ws_api_presence_store_down gauge\nws_api_presence_store_down {down}"
    );
    (
        [("content-type", "text/plain; version=0.0.4; charset=utf-8")],
        text,
    )
}

/// An HTTP API error: its status and `{"error": "..."}`.
fn error(status: StatusCode, message: impl Into<String>) -> Response {
    let body = serde_json::json!({ "error": message.into() });
    (status, axum::Json(body)).into_response()
}

async fn publish(
    State(http): State<Http>,
    Path(call): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let Some(key) = &http.api_key else {
        return error(
            StatusCode::FORBIDDEN,
            "the HTTP API is off: start ws-api with --http-api-key-file",
        );
    };
    let given = headers.get("x-api-key").map(|v| v.as_bytes()).or_else(|| {
        headers
            .get("authorization")
            .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
    });
    match given {
        Some(given) if bool::from(given.ct_eq(key)) => {}
        Some(_) => return error(StatusCode::UNAUTHORIZED, "wrong API key"),
        None => {
            return error(
                StatusCode::UNAUTHORIZED,
                "API key missing: Authorization: Bearer <key>, or X-API-Key",
            );
        }
    }
    // `{"push": {...}}`: the externally tagged form of `Call`.
    let fields: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("body is not JSON: {e}")),
    };
    let call: Call = match serde_json::from_value(serde_json::json!({ call.as_str(): fields })) {
        Ok(c) => c,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let mut biz = http.biz.clone();
    match call.on(&mut biz).await {
        Ok(answer) => axum::Json::<Answer>(answer).into_response(),
        Err(status) => {
            let code = match status.code() {
                Code::InvalidArgument => StatusCode::BAD_REQUEST,
                Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            error(code, status.message())
        }
    }
}
