//! The publish calls ([`Call`]): `ws-api push|kick|join|leave|push-group|
//! broadcast` from a shell, and the same calls as JSON over ws-api's HTTP
//! API (`POST /api/push`, …, [`crate::http`]). Each is one `BizMsgService`
//! call, made through [`Publish`]: a tonic client to a running ws-api for
//! the CLI (`--api`, default `http://127.0.0.1:8081`), this node's own
//! service for HTTP. So trying the headline feature needs no generated stubs:
//!
//! ```text
//! ws-api push --uid 42 --type notice --payload hello
//! pushed to 1 session(s) of uid 42, offset 3f2a:1
//! ```

use serde::{Deserialize, Serialize};
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Status};

use crate::biz::Biz;
use crate::proto::wsapi::biz_msg_service_client::BizMsgServiceClient;
use crate::proto::wsapi::biz_msg_service_server::BizMsgService;
use crate::proto::wsapi::{
    BizMsg, GroupMsg, GroupReply, GroupRequest, KickReply, KickRequest, PushBizMsgReply,
};

/// The calls, one per subcommand (and per `POST /api/<name>`, whose JSON
/// body has the same fields: `{"uid": 42, "type": "notice", "payload": "hi"}`).
#[derive(Debug, Clone, clap::Subcommand, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum Call {
    /// Push a message to every session of a user (and keep it for resume).
    Push {
        /// The user.
        #[arg(long)]
        uid: u64,
        /// The message's `type` as the client sees it.
        #[arg(long = "type")]
        #[serde(rename = "type")]
        kind: String,
        /// Its payload (text; the client sees it base64 in JSON frames).
        #[arg(long, default_value = "")]
        #[serde(default)]
        payload: String,
        /// A retry with the same key within ws-api's idempotency window
        /// is not appended twice.
        #[arg(long, default_value = "")]
        #[serde(default)]
        idempotency_key: String,
    },
    /// Close every session of a user, or the one given by --server and --sid.
    Kick {
        #[arg(long, default_value_t = 0)]
        #[serde(default)]
        uid: u64,
        #[arg(long, default_value = "", requires = "sid")]
        #[serde(default)]
        server: String,
        #[arg(long, default_value = "", requires = "server")]
        #[serde(default)]
        sid: String,
        /// The close code the clients get.
        #[arg(long, default_value_t = 1000)]
        #[serde(default)]
        code: u32,
        #[arg(long, default_value = "")]
        #[serde(default)]
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
        #[serde(rename = "type")]
        kind: String,
        #[arg(long, default_value = "")]
        #[serde(default)]
        payload: String,
    },
    /// Send a message to every connected session.
    Broadcast {
        #[arg(long = "type")]
        #[serde(rename = "type")]
        kind: String,
        #[arg(long, default_value = "")]
        #[serde(default)]
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
    Refused(Status),
}

/// What a call answered: the CLI prints its line, the HTTP API its JSON.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Answer {
    /// Sessions reached (Push: of the user; PushGroup: in the group;
    /// Broadcast: online; Kick: closed; Join/Leave: moved).
    pub sessions: i64,
    /// Push: the message's position, when ws-api keeps history.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub offset: String,
    /// Push: the idempotency key had been used (nothing appended).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub duplicate: bool,
}

/// The six `BizMsgService` calls, whoever makes them.
#[tonic::async_trait]
pub trait Publish: Send {
    async fn push(&mut self, m: BizMsg) -> Result<PushBizMsgReply, Status>;
    async fn kick(&mut self, r: KickRequest) -> Result<KickReply, Status>;
    async fn join(&mut self, r: GroupRequest) -> Result<GroupReply, Status>;
    async fn leave(&mut self, r: GroupRequest) -> Result<GroupReply, Status>;
    async fn push_group(&mut self, m: GroupMsg) -> Result<PushBizMsgReply, Status>;
    async fn broadcast(&mut self, m: BizMsg) -> Result<PushBizMsgReply, Status>;
}

#[tonic::async_trait]
impl Publish for BizMsgServiceClient<Channel> {
    async fn push(&mut self, m: BizMsg) -> Result<PushBizMsgReply, Status> {
        Ok(BizMsgServiceClient::push(self, m).await?.into_inner())
    }
    async fn kick(&mut self, r: KickRequest) -> Result<KickReply, Status> {
        Ok(BizMsgServiceClient::kick(self, r).await?.into_inner())
    }
    async fn join(&mut self, r: GroupRequest) -> Result<GroupReply, Status> {
        Ok(self.join_group(r).await?.into_inner())
    }
    async fn leave(&mut self, r: GroupRequest) -> Result<GroupReply, Status> {
        Ok(self.leave_group(r).await?.into_inner())
    }
    async fn push_group(&mut self, m: GroupMsg) -> Result<PushBizMsgReply, Status> {
        Ok(BizMsgServiceClient::push_group(self, m).await?.into_inner())
    }
    async fn broadcast(&mut self, m: BizMsg) -> Result<PushBizMsgReply, Status> {
        Ok(BizMsgServiceClient::broadcast(self, m).await?.into_inner())
    }
}

#[tonic::async_trait]
impl Publish for Biz {
    async fn push(&mut self, m: BizMsg) -> Result<PushBizMsgReply, Status> {
        Ok(BizMsgService::push(self, Request::new(m))
            .await?
            .into_inner())
    }
    async fn kick(&mut self, r: KickRequest) -> Result<KickReply, Status> {
        Ok(BizMsgService::kick(self, Request::new(r))
            .await?
            .into_inner())
    }
    async fn join(&mut self, r: GroupRequest) -> Result<GroupReply, Status> {
        Ok(self.join_group(Request::new(r)).await?.into_inner())
    }
    async fn leave(&mut self, r: GroupRequest) -> Result<GroupReply, Status> {
        Ok(self.leave_group(Request::new(r)).await?.into_inner())
    }
    async fn push_group(&mut self, m: GroupMsg) -> Result<PushBizMsgReply, Status> {
        Ok(BizMsgService::push_group(self, Request::new(m))
            .await?
            .into_inner())
    }
    async fn broadcast(&mut self, m: BizMsg) -> Result<PushBizMsgReply, Status> {
        Ok(BizMsgService::broadcast(self, Request::new(m))
            .await?
            .into_inner())
    }
}

impl Call {
    /// Makes the call against the ws-api at `api` (`http://host:port`, or
    /// `host:port`); the line to print.
    pub async fn run(self, api: &str) -> Result<String, CallError> {
        let mut client = BizMsgServiceClient::new(channel(api).await?);
        let call = self.clone();
        let answer = self.on(&mut client).await.map_err(CallError::Refused)?;
        Ok(call.line(&answer))
    }

    /// Makes the call through `to`.
    pub async fn on(self, to: &mut impl Publish) -> Result<Answer, Status> {
        let pushed = |r: PushBizMsgReply| Answer {
            sessions: r.success_count,
            offset: r.offset,
            duplicate: r.duplicate,
        };
        let counted = |sessions| Answer {
            sessions,
            ..Answer::default()
        };
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
                pushed(to.push(msg).await?)
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
                counted(to.kick(req).await?.closed)
            }
            Call::Join { uid, group } => {
                counted(to.join(GroupRequest { uid, group }).await?.sessions)
            }
            Call::Leave { uid, group } => {
                counted(to.leave(GroupRequest { uid, group }).await?.sessions)
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
                pushed(to.push_group(msg).await?)
            }
            Call::Broadcast { kind, payload } => {
                let msg = BizMsg {
                    biz_code: kind,
                    biz_payload: payload,
                    ..BizMsg::default()
                };
                pushed(to.broadcast(msg).await?)
            }
        })
    }

    /// How the CLI words this call's answer.
    fn line(&self, a: &Answer) -> String {
        match self {
            Call::Push { uid, .. } => {
                let offset = match a.offset.as_str() {
                    "" => String::new(),
                    o => format!(", offset {o}"),
                };
                let dup = if a.duplicate { " (duplicate key)" } else { "" };
                format!(
                    "pushed to {} session(s) of uid {uid}{offset}{dup}",
                    a.sessions
                )
            }
            Call::Kick { .. } => format!("closed {} session(s)", a.sessions),
            Call::Join { .. } => format!("{} session(s) joined", a.sessions),
            Call::Leave { .. } => format!("{} session(s) left", a.sessions),
            Call::PushGroup { .. } => format!("sent to the group's {} session(s)", a.sessions),
            Call::Broadcast { .. } => format!("sent to the {} session(s) online", a.sessions),
        }
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
