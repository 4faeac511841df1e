//! `--handler chat`: the demo's chat rooms (clients/js/demo). A client sends
//! `{"type":"join","payload":<room>}` to enter a room and
//! `{"type":"say","payload":<text>}` to speak; every member gets
//! `{"type":"said","payload":{"room","from","text"}}` as a Push to its uid,
//! so chat lines have positions and survive reconnects like any push.
//! Any other message is echoed, as `--handler echo` does. Rooms live in
//! this node's memory (a demo, not a chat server).

use std::collections::{BTreeSet, HashMap};

use parking_lot::Mutex;
use tracing::debug;

use crate::delivery::Delivery;
use crate::outbox::Outbox;
use crate::presence::SessionKey;
use crate::proto::wsapi::Msg;
use crate::proto::wsgateway::Protocol;

/// Room → member uids.
#[derive(Debug, Default)]
pub struct Rooms(Mutex<HashMap<String, BTreeSet<u64>>>);

impl Rooms {
    /// One upstream message of the chat handler; whether it was a chat one
    /// (join or say), else the caller echoes it. Members are looked up in
    /// `outbox`'s presence, and chat lines pushed through `delivery`.
    pub async fn chat(&self, outbox: &Outbox, delivery: &Delivery, msg: &Msg) -> bool {
        let Some(p) = msg
            .payload
            .as_ref()
            .filter(|p| p.r#type == "join" || p.r#type == "say")
        else {
            return false;
        };
        let key = SessionKey {
            server: msg.server.clone(),
            sid: msg.sid.clone(),
        };
        let Ok(Some(uid)) = outbox.presence.author_of(&key).await else {
            debug!(sid = %key.sid, "chat message from an unknown session");
            return true;
        };
        let text = String::from_utf8_lossy(&p.payload);
        match p.r#type.as_str() {
            "join" => {
                let mut rooms = self.0.lock();
                rooms.entry(text.into_owned()).or_default().insert(uid);
            }
            "say" => {
                let rooms: Vec<(String, Vec<u64>)> = self
                    .0
                    .lock()
                    .iter()
                    .filter(|(_, members)| members.contains(&uid))
                    .map(|(room, members)| (room.clone(), members.iter().copied().collect()))
                    .collect();
                for (room, members) in rooms {
                    let line = serde_json::json!({"room": room, "from": uid, "text": text});
                    let said = Protocol {
                        r#type: "said".into(),
                        payload: line.to_string().into_bytes().into(),
                        ..Protocol::default()
                    };
                    for member in members {
                        if let Err(e) = delivery.push_to_user(outbox, member, said.clone()).await {
                            debug!(member, error = %e, "chat line not pushed");
                        }
                    }
                }
            }
            _ => {}
        }
        true
    }
}
