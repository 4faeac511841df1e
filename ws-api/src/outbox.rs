//! [`Outbox`]: what every part that sends to sessions shares: the presence
//! store (who is where), the open `ExchangeMsg` streams (the way down to
//! each gateway core) and the counters. Delivery, the chat rooms, the
//! redis-stream appender, the sweeper and `BizMsgService` each take the
//! outbox instead of the whole backend.

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
    pub fn new(presence: Presence) -> Outbox {
        Outbox {
            presence,
            streams: Streams::default(),
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
        let Some(tx) = self.streams.get(&key.server) else {
            return false;
        };
        let msg = Msg {
            server: key.server.clone(),
            sid: key.sid.clone(),
            payload,
            control: control.map(|op| Control { op: Some(op) }),
            group: String::new(),
            replay,
        };
        tx.send(Ok(msg)).await.is_ok()
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
