//! [`Outbox`]: what every part that sends to sessions shares: the presence
//! store (who is where), the open `ExchangeMsg` streams (the way down to
//! each gateway core) and the counters. Delivery, the chat rooms, the
//! redis-stream appender, the sweeper and `BizMsgService` each take the
//! outbox instead of the whole backend.
//!
//! Everything goes down through the core's [`crate::link::Link`], which
//! numbers and keeps it for a gateway that acknowledges.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use crate::link::Sent;
use crate::presence::{Presence, SessionKey};
use crate::proto::wsapi::control::Op;
use crate::proto::wsapi::{Control, Msg};
use crate::proto::wsgateway::Protocol;
use crate::streams::{Stats, Streams};

/// Presence, streams and counters.
#[derive(Debug)]
pub struct Outbox {
    pub presence: Presence,
    pub streams: Streams,
    pub stats: Stats,
}

impl Outbox {
    /// `hold`: how long a gateway core's link outlives its last stream.
    pub fn new(presence: Presence, hold: Duration) -> Outbox {
        Outbox {
            presence,
            streams: Streams::new(hold),
            stats: Stats::default(),
        }
    }

    /// Sends `msg` down the stream of `key.server`; whether a stream took it.
    pub async fn to_session(
        &self,
        key: &SessionKey,
        payload: Option<Protocol>,
        control: Option<Op>,
        replay: bool,
    ) -> bool {
        let msg = Msg {
            server: key.server.clone(),
            sid: key.sid.clone(),
            payload,
            control: control.map(|op| Control { op: Some(op) }),
            group: String::new(),
            replay,
            ..Msg::default()
        };
        self.to_core(msg).await
    }

    /// Sends `msg` down the link of `msg.server`; whether the link took it.
    pub async fn to_core(&self, msg: Msg) -> bool {
        let Some(link) = self.streams.get(&msg.server) else {
            self.stats.downstream_refused.fetch_add(1, Relaxed);
            return false;
        };
        self.count(link.send(msg).await)
    }

    /// Counts how a link took a message; whether it did.
    pub fn count(&self, sent: Sent) -> bool {
        match sent {
            Sent::Written => {}
            Sent::Unkept => _ = self.stats.downstream_unkept.fetch_add(1, Relaxed),
            Sent::Kept => _ = self.stats.downstream_kept.fetch_add(1, Relaxed),
            Sent::Refused => _ = self.stats.downstream_refused.fetch_add(1, Relaxed),
        }
        sent.taken()
    }

    /// `{"type":"ack","id"}` to the session that sent `id`.
    pub async fn answer_id(&self, key: &SessionKey, id: &str, duplicate: bool) {
        let ack = Protocol {
            r#type: "ack".into(),
            id: id.to_owned(),
            duplicate,
            ..Protocol::default()
        };
        self.to_session(key, Some(ack), None, false).await;
    }
}
