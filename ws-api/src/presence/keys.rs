//! The Redis key names of presence, in one place: the schema is a contract
//! that docs and an integration test read (see [`super::redis_store`]).

use super::SessionKey;

pub fn user(uid: u64) -> String {
    format!("ws:user:{uid}")
}
pub fn server(server: &str) -> String {
    format!("ws:server:{server}")
}
pub fn alive(server: &str) -> String {
    format!("ws:alive:{server}")
}
pub fn session(key: &SessionKey) -> String {
    format!("ws:session:{} {}", key.server, key.sid)
}
pub fn group(group: &str) -> String {
    format!("ws:group:{group}")
}
pub fn groups(key: &SessionKey) -> String {
    format!("ws:groups:{} {}", key.server, key.sid)
}
/// Set once, never expired: its absence means Redis lost its data.
pub const MARKER: &str = "ws:marker";
/// What `SCAN MATCH` finds every server set with.
pub const SERVER_PATTERN: &str = "ws:server:*";
pub const SERVER_PREFIX: &str = "ws:server:";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_names() {
        let k = SessionKey {
            server: "10.0.0.1:8080#3".into(),
            sid: "ab-3-7".into(),
        };
        assert_eq!(user(42), "ws:user:42");
        assert_eq!(server(&k.server), "ws:server:10.0.0.1:8080#3");
        assert_eq!(alive(&k.server), "ws:alive:10.0.0.1:8080#3");
        assert_eq!(session(&k), "ws:session:10.0.0.1:8080#3 ab-3-7");
        assert_eq!(group("room"), "ws:group:room");
        assert_eq!(groups(&k), "ws:groups:10.0.0.1:8080#3 ab-3-7");
        assert!(server("x").starts_with(SERVER_PREFIX));
    }
}
