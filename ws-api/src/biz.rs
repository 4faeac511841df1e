//! `wsapi.BizMsgService`: what business services call to reach users.
//!
//! Messages to sessions go down the stream of the gateway core that owns
//! them (`server`); group pushes and broadcasts go once down every stream
//! and each gateway core fans out to its own sessions. Counts in replies are
//! what this node knows: sessions it has presence for, and streams it holds.
//! With Redis presence (`--redis`) every node sees every session, and a
//! session counts as reached only if this node holds the stream of the
//! gateway core that owns it (every core keeps a stream to every node).
//! A Push may carry an idempotency key (at most 128 bytes, else
//! `INVALID_ARGUMENT`); its reply gives the position and whether the key
//! was a duplicate ([`Delivery::push_to_user`]).

use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::delivery::Delivery;
use crate::history::check_key;
use crate::outbox::Outbox;
use crate::presence::{SessionKey, unavailable};
use crate::proto::wsapi::biz_msg_service_server::BizMsgService;
use crate::proto::wsapi::control::Op;
use crate::proto::wsapi::{
    BizMsg, Close, GroupMsg, GroupReply, GroupRequest, Join, KickReply, KickRequest, Leave, Msg,
    PushBizMsgReply,
};
use crate::proto::wsgateway::Protocol;

/// `wsapi.BizMsgService`: sessions and streams from the outbox, pushes by
/// uid through delivery (positions, history).
#[derive(Debug, Clone)]
pub struct Biz {
    pub outbox: Arc<Outbox>,
    pub delivery: Arc<Delivery>,
}

fn protocol(code: String, payload: String) -> Protocol {
    Protocol {
        r#type: code,
        payload: payload.into_bytes().into(),
        ..Protocol::default()
    }
}

impl Biz {
    /// Sends a control to one session; whether a stream took it.
    async fn to_session(&self, key: &SessionKey, op: Op) -> bool {
        self.outbox.to_session(key, None, Some(op), false).await
    }

    /// Sends one message down every stream (every gateway core).
    async fn to_every_core(&self, sid: &str, group: &str, payload: Protocol) -> usize {
        let mut reached = 0;
        let links = self.outbox.streams.all(&self.outbox.stats.downstream_lost);
        for (server, link) in links {
            let msg = Msg {
                server,
                sid: sid.to_owned(),
                payload: Some(payload.clone()),
                group: group.to_owned(),
                ..Msg::default()
            };
            reached += usize::from(self.outbox.count(link.send(msg).await));
        }
        reached
    }

    async fn membership(
        &self,
        req: GroupRequest,
        join: bool,
    ) -> Result<Response<GroupReply>, Status> {
        if req.group.is_empty() {
            return Err(Status::invalid_argument("empty group"));
        }
        let op_name = if join { "JoinGroup" } else { "LeaveGroup" };
        let keys = self
            .outbox
            .presence
            .sessions(req.uid)
            .await
            .map_err(|e| unavailable(op_name, &e))?;
        let mut sessions = 0;
        for key in keys {
            let op = if join {
                Op::Join(Join {
                    group: req.group.clone(),
                })
            } else {
                Op::Leave(Leave {
                    group: req.group.clone(),
                })
            };
            if self.to_session(&key, op).await {
                self.outbox
                    .presence
                    .set_member(&req.group, &key, join)
                    .await
                    .map_err(|e| unavailable(op_name, &e))?;
                sessions += 1;
            }
        }
        Ok(Response::new(GroupReply { sessions }))
    }
}

#[tonic::async_trait]
impl BizMsgService for Biz {
    async fn push(&self, req: Request<BizMsg>) -> Result<Response<PushBizMsgReply>, Status> {
        let biz = req.into_inner();
        check_key(&biz.idempotency_key).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let payload = protocol(biz.biz_code, biz.biz_payload);
        let pushed = self
            .delivery
            .push_to_user(&self.outbox, biz.uid, payload, &biz.idempotency_key)
            .await
            .map_err(|e| unavailable("Push", &e))?;
        Ok(Response::new(PushBizMsgReply {
            success_count: pushed.reached,
            offset: pushed.offset,
            duplicate: pushed.duplicate,
        }))
    }

    async fn kick(&self, req: Request<KickRequest>) -> Result<Response<KickReply>, Status> {
        let req = req.into_inner();
        let targets = if req.sid.is_empty() {
            self.outbox
                .presence
                .sessions(req.uid)
                .await
                .map_err(|e| unavailable("Kick", &e))?
        } else {
            vec![SessionKey {
                server: req.server,
                sid: req.sid,
            }]
        };
        let code = if req.code == 0 { 1000 } else { req.code };
        let mut closed = 0;
        for key in targets {
            let op = Op::Close(Close {
                code,
                reason: req.reason.clone(),
            });
            closed += i64::from(self.to_session(&key, op).await);
        }
        Ok(Response::new(KickReply { closed }))
    }

    async fn join_group(&self, req: Request<GroupRequest>) -> Result<Response<GroupReply>, Status> {
        self.membership(req.into_inner(), true).await
    }

    async fn leave_group(
        &self,
        req: Request<GroupRequest>,
    ) -> Result<Response<GroupReply>, Status> {
        self.membership(req.into_inner(), false).await
    }

    async fn push_group(
        &self,
        req: Request<GroupMsg>,
    ) -> Result<Response<PushBizMsgReply>, Status> {
        let msg = req.into_inner();
        if msg.group.is_empty() {
            return Err(Status::invalid_argument("empty group"));
        }
        let members = self
            .outbox
            .presence
            .group_size(&msg.group)
            .await
            .map_err(|e| unavailable("PushGroup", &e))?;
        self.to_every_core("", &msg.group, protocol(msg.biz_code, msg.biz_payload))
            .await;
        Ok(Response::new(PushBizMsgReply {
            success_count: members as i64,
            ..PushBizMsgReply::default()
        }))
    }

    async fn broadcast(&self, req: Request<BizMsg>) -> Result<Response<PushBizMsgReply>, Status> {
        let biz = req.into_inner();
        let online = self
            .outbox
            .presence
            .online()
            .await
            .map_err(|e| unavailable("Broadcast", &e))?;
        self.to_every_core("*", "", protocol(biz.biz_code, biz.biz_payload))
            .await;
        Ok(Response::new(PushBizMsgReply {
            success_count: online as i64,
            ..PushBizMsgReply::default()
        }))
    }
}
