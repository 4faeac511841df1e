//! `--handler chat`: the demo's chat rooms (clients/js/demo). A client sends
//! `{"type":"join","payload":<room>}` to enter a room and
//! `{"type":"say","payload":<text>}` to speak; every member gets
//! `{"type":"said","payload":{"room","from","text"}}` as a Push to its uid,
//! so chat lines have positions and survive reconnects like any push.
//! Any other message is echoed, as `--handler echo` does. Rooms live in
//! this node's memory (a demo, not a chat server), bounded: a user is in at
//! most [`MAX_ROOMS_PER_USER`] rooms with names of at most
//! [`MAX_ROOM_NAME`] bytes, leaves them all when its last session
//! disconnects, and a room without members is dropped.

use std::collections::{BTreeSet, HashMap};

use parking_lot::Mutex;
use tracing::debug;

use crate::delivery::Delivery;
use crate::outbox::Outbox;
use crate::presence::SessionKey;
use crate::proto::wsapi::Msg;
use crate::proto::wsgateway::Protocol;

/// Rooms one user may be in; further joins are ignored (logged).
pub const MAX_ROOMS_PER_USER: usize = 16;
/// Longest room name, in bytes; longer ones are ignored (logged).
pub const MAX_ROOM_NAME: usize = 64;

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
                let joined = self.join(uid, &text);
                if !joined {
                    debug!(uid, "chat join ignored: name too long or too many rooms");
                }
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
                        if let Err(e) = delivery
                            .push_to_user(outbox, member, said.clone(), "")
                            .await
                        {
                            debug!(member, error = %e, "chat line not pushed");
                        }
                    }
                }
            }
            _ => {}
        }
        true
    }

    /// Puts `uid` in `room`; false if the name is too long or the user is
    /// in [`MAX_ROOMS_PER_USER`] rooms already.
    pub fn join(&self, uid: u64, room: &str) -> bool {
        let mut rooms = self.0.lock();
        let joined = rooms.values().filter(|m| m.contains(&uid)).count();
        if room.len() > MAX_ROOM_NAME
            || (joined >= MAX_ROOMS_PER_USER && !rooms.get(room).is_some_and(|m| m.contains(&uid)))
        {
            return false;
        }
        rooms.entry(room.to_owned()).or_default().insert(uid);
        true
    }

    /// Takes `uid` out of every room (its last session is gone), dropping
    /// the rooms left empty.
    pub fn leave_all(&self, uid: u64) {
        self.0.lock().retain(|_, members| {
            members.remove(&uid);
            !members.is_empty()
        });
    }

    pub fn len(&self) -> usize {
        self.0.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.lock().is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The demo's rooms are bounded: per user, by name, and by leaving.
    #[test]
    fn rooms_are_bounded_and_dropped_when_empty() {
        let rooms = Rooms::default();
        for i in 0..100 {
            let joined = rooms.join(1, &format!("room-{i}"));
            assert_eq!(joined, i < MAX_ROOMS_PER_USER, "room {i}");
        }
        assert!(rooms.join(1, "room-0"), "joining a room again");
        assert!(!rooms.join(2, &"r".repeat(MAX_ROOM_NAME + 1)));
        assert!(rooms.join(2, "room-0"));
        assert_eq!(rooms.len(), MAX_ROOMS_PER_USER);
        rooms.leave_all(1);
        assert_eq!(rooms.len(), 1, "room-0 keeps user 2");
        rooms.leave_all(2);
        assert!(rooms.is_empty());
    }
}
