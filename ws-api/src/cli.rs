//! `ws-api push|kick|join|leave|push-group|broadcast`: the publish API from
//! a shell. Each subcommand is one `BizMsgService` call to a running ws-api
//! (`--api`, default `http://127.0.0.1:8081`), printing what it answered,
//! so trying the headline feature needs no generated stubs:
//!
//! ```text
//! ws-api push --uid 42 --type notice --payload hello
//! pushed to 1 session(s) of uid 42, offset 3f2a:1
//! ```

use tonic::transport::{Channel, Endpoint};

use crate::proto::wsapi::biz_msg_service_client::BizMsgServiceClient;
use crate::proto::wsapi::{BizMsg, GroupMsg, GroupRequest, KickRequest};

/// The calls, one per subcommand.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Call {
    /// Push a message to every session of a user (and keep it for resume).
    Push {
        /// The user.
        #[arg(long)]
        uid: u64,
        /// The message's `type` as the client sees it.
        #[arg(long = "type")]
        kind: String,
        /// Its payload (text; the client sees it base64 in JSON frames).
        #[arg(long, default_value = "")]
        payload: String,
        /// A retry with the same key within ws-api's idempotency window
        /// is not appended twice.
        #[arg(long, default_value = "")]
        idempotency_key: String,
    },
    /// Close every session of a user, or the one given by --server and --sid.
    Kick {
        #[arg(long, default_value_t = 0)]
        uid: u64,
        #[arg(long, default_value = "", requires = "sid")]
        server: String,
        #[arg(long, default_value = "", requires = "server")]
        sid: String,
        /// The close code the clients get.
        #[arg(long, default_value_t = 1000)]
        code: u32,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Add a user's sessions to a group.
    Join {
        #[arg(long)]
        uid: u64,
        #[arg(long)]
        group: String,
    },
    /// Remove a user's sessions from a group.
    Leave {
        #[arg(long)]
        uid: u64,
        #[arg(long)]
        group: String,
    },
    /// Send a message to every session in a group.
    PushGroup {
        #[arg(long)]
        group: String,
        #[arg(long = "type")]
        kind: String,
        #[arg(long, default_value = "")]
        payload: String,
    },
    /// Send a message to every connected session.
    Broadcast {
        #[arg(long = "type")]
        kind: String,
        #[arg(long, default_value = "")]
        payload: String,
    },
}

/// Why a call gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("--api {0}: {1}")]
    Address(String, String),
    #[error("cannot reach ws-api at {0}: {1}")]
    Connect(String, String),
    #[error("ws-api answered {}: {}", .0.code(), .0.message())]
    Refused(tonic::Status),
}

impl Call {
    /// Makes the call against `api` (`http://host:port`, or `host:port`);
    /// the line to print.
    pub async fn run(self, api: &str) -> Result<String, CallError> {
        let mut client = BizMsgServiceClient::new(channel(api).await?);
        let refused = CallError::Refused;
        Ok(match self {
            Call::Push {
                uid,
                kind,
                payload,
                idempotency_key,
            } => {
                let msg = BizMsg {
                    uid,
                    biz_code: kind,
                    biz_payload: payload,
                    idempotency_key,
                    ..BizMsg::default()
                };
                let r = client.push(msg).await.map_err(refused)?.into_inner();
                let offset = match r.offset.as_str() {
                    "" => String::new(),
                    o => format!(", offset {o}"),
                };
                let dup = if r.duplicate { " (duplicate key)" } else { "" };
                format!(
                    "pushed to {} session(s) of uid {uid}{offset}{dup}",
                    r.success_count
                )
            }
            Call::Kick {
                uid,
                server,
                sid,
                code,
                reason,
            } => {
                let req = KickRequest {
                    uid,
                    server,
                    sid,
                    code,
                    reason,
                };
                let r = client.kick(req).await.map_err(refused)?.into_inner();
                format!("closed {} session(s)", r.closed)
            }
            Call::Join { uid, group } => {
                let req = GroupRequest { uid, group };
                let r = client.join_group(req).await.map_err(refused)?.into_inner();
                format!("{} session(s) joined", r.sessions)
            }
            Call::Leave { uid, group } => {
                let req = GroupRequest { uid, group };
                let r = client.leave_group(req).await.map_err(refused)?.into_inner();
                format!("{} session(s) left", r.sessions)
            }
            Call::PushGroup {
                group,
                kind,
                payload,
            } => {
                let msg = GroupMsg {
                    group,
                    biz_code: kind,
                    biz_payload: payload,
                };
                let r = client.push_group(msg).await.map_err(refused)?.into_inner();
                format!("sent to the group's {} session(s)", r.success_count)
            }
            Call::Broadcast { kind, payload } => {
                let msg = BizMsg {
                    biz_code: kind,
                    biz_payload: payload,
                    ..BizMsg::default()
                };
                let r = client.broadcast(msg).await.map_err(refused)?.into_inner();
                format!("sent to the {} session(s) online", r.success_count)
            }
        })
    }
}

async fn channel(api: &str) -> Result<Channel, CallError> {
    let url = if api.contains("://") {
        api.to_owned()
    } else {
        format!("http://{api}")
    };
    let endpoint = Endpoint::from_shared(url.clone())
        .map_err(|e| CallError::Address(api.to_owned(), e.to_string()))?
        .connect_timeout(std::time::Duration::from_secs(5));
    endpoint
        .connect()
        .await
        .map_err(|e| CallError::Connect(url, chain(&e)))
}

/// An error and its causes, `a: b: c` (tonic's own text is only
/// "transport error").
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text = format!("{text}: {c}");
        cause = c.source();
    }
    text
}
