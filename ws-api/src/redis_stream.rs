//! `--handler redis-stream`: appends every upstream message to a Redis
//! Stream named by its Protocol type, as the Go original did:
//!
//! `XADD <type> MAXLEN ~ <--stream-maxlen> * server <server> sid <sid> uid <uid> payload <bytes>`
//!
//! A message with no payload or an empty type goes to the stream
//! [`DEFAULT_STREAM`] (`default`). The uid comes from presence
//! ([`author_of`](crate::presence::RedisPresence::author_of), cached in
//! process and kept past the session's Disconnect, which can overtake its
//! last messages); 0 when unknown, counted in `Stats::unknown_uid`.
//!
//! Each `ExchangeMsg` stream gets one appender task fed through a bounded
//! queue; the task takes whatever has queued up (up to [`BATCH`]) and sends
//! it as one pipeline, so a busy stream costs one round trip per batch, and
//! a slow Redis slows that gateway core's stream instead of growing memory.
//! A failed pipeline counts all its messages in `Stats::xadd_errors`; the
//! first failure and every 1000th after it are logged at warn.
//!
//! A message with a client `id` (docs/delivery.md) is appended by a Lua
//! script in the same pipeline that appends it only if its dedup key is new
//! (`SET NX` and `XADD` together), and the client's `{"type":"ack","id"}`
//! goes out only once that pipeline has succeeded: an acknowledged message
//! is in Redis, and a ws-api that dies before appending it has not marked it
//! seen either, so the client's resend is appended. Messages keep their
//! order: ids go through the same queue and pipeline as the rest.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::warn;

use crate::history::{History, dedup_key};
use crate::outbox::Outbox;
use crate::presence::{Presence, SessionKey};
use crate::proto::wsapi::Msg;
use crate::streams::Stats;

/// The stream of messages with an empty type.
pub const DEFAULT_STREAM: &str = "default";
/// Most messages in one pipeline.
pub const BATCH: usize = 512;
/// Messages queued per gateway core stream before the reader waits.
const QUEUE: usize = 8 * 1024;

/// Feeds one gateway core stream's messages to its appender task.
#[derive(Debug)]
pub struct Appender {
    tx: mpsc::Sender<Msg>,
}

impl Appender {
    /// Starts an appender writing through `outbox`'s Redis presence, to
    /// streams capped at `maxlen` (`--stream-maxlen`); `None` unless
    /// presence is in Redis. With Redis `history`, ids are deduplicated
    /// here (see the module doc).
    pub fn spawn(
        outbox: &Arc<Outbox>,
        history: Option<&History>,
        maxlen: usize,
    ) -> Option<Appender> {
        if !matches!(outbox.presence, Presence::Redis(_)) {
            return None;
        }
        let dedup_window = match history {
            Some(History::Redis(h)) => Some(h.dedup_window()),
            _ => None,
        };
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(Arc::clone(outbox), dedup_window, maxlen, rx));
        Some(Appender { tx })
    }

    /// Queues `msg`; false if the appender is gone.
    pub async fn append(&self, msg: Msg) -> bool {
        self.tx.send(msg).await.is_ok()
    }
}

/// The stream a message goes to.
pub fn stream_name(msg: &Msg) -> &str {
    match msg.payload.as_ref().map(|p| p.r#type.as_str()) {
        Some(ty) if !ty.is_empty() => ty,
        _ => DEFAULT_STREAM,
    }
}

fn failed(stats: &Stats, n: usize, err: &redis::RedisError) {
    let before = stats.xadd_errors.fetch_add(n as u64, Relaxed);
    if before == 0 || before / 1000 != (before + n as u64) / 1000 {
        warn!(error = %err, errors = before + n as u64, "redis-stream append failed");
    }
}

async fn run(
    outbox: Arc<Outbox>,
    dedup_window: Option<Duration>,
    maxlen: usize,
    mut rx: mpsc::Receiver<Msg>,
) {
    let Presence::Redis(redis) = &outbox.presence else {
        return;
    };
    let mut conn = redis.conn();
    let mut batch = Vec::with_capacity(BATCH);
    let mut with_ids = Vec::new();
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        let mut pipe = redis::pipe();
        for msg in batch.drain(..) {
            let key = SessionKey {
                server: msg.server,
                sid: msg.sid,
            };
            let uid = match redis.author_of(&key).await {
                Ok(Some(uid)) => uid,
                Ok(None) => {
                    outbox.stats.unknown_uid.fetch_add(1, Relaxed);
                    0
                }
                Err(err) => {
                    failed(&outbox.stats, 0, &err);
                    outbox.stats.unknown_uid.fetch_add(1, Relaxed);
                    0
                }
            };
            let msg = Msg {
                server: key.server,
                sid: key.sid,
                ..msg
            };
            let payload = msg.payload.as_ref().map_or(&[][..], |p| &p.payload[..]);
            let id = msg.payload.as_ref().map_or("", |p| p.id.as_str());
            if let Some(window) = dedup_window.filter(|_| !id.is_empty()) {
                pipe.cmd("EVAL")
                    .arg(APPEND_ONCE)
                    .arg(2)
                    .arg(dedup_key(uid, id))
                    .arg(stream_name(&msg))
                    .arg(window.as_millis() as u64)
                    .arg(maxlen)
                    .arg(&msg.server)
                    .arg(&msg.sid)
                    .arg(uid)
                    .arg(payload);
                with_ids.push((
                    SessionKey {
                        server: msg.server.clone(),
                        sid: msg.sid.clone(),
                    },
                    id.to_owned(),
                ));
                continue;
            }
            pipe.cmd("XADD")
                .arg(stream_name(&msg))
                .arg("MAXLEN")
                .arg("~")
                .arg(maxlen)
                .arg("*")
                .arg("server")
                .arg(&msg.server)
                .arg("sid")
                .arg(&msg.sid)
                .arg("uid")
                .arg(uid)
                .arg("payload")
                .arg(payload)
                .ignore();
        }
        let n = pipe.len();
        // One reply per message with an id: 1 appended, 0 a duplicate.
        match pipe.query_async::<Vec<u8>>(&mut conn).await {
            Ok(fresh) => {
                outbox.stats.xadd.fetch_add(n as u64, Relaxed);
                for ((key, id), fresh) in with_ids.drain(..).zip(fresh) {
                    if fresh == 0 {
                        outbox.stats.client_duplicates.fetch_add(1, Relaxed);
                    }
                    outbox.answer_id(&key, &id, fresh == 0).await;
                }
            }
            Err(err) => {
                with_ids.clear();
                failed(&outbox.stats, n, &err);
            }
        }
    }
}

/// Appends a message with a client id unless that id was seen (`SET NX`),
/// atomically: KEYS dedup key, stream; ARGV window ms, maxlen, server, sid,
/// uid, payload. Returns 1 when appended, 0 for a duplicate.
const APPEND_ONCE: &str = r"
if not redis.call('SET', KEYS[1], 1, 'NX', 'PX', ARGV[1]) then return 0 end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', 'server', ARGV[3], 'sid', ARGV[4], 'uid', ARGV[5], 'payload', ARGV[6])
return 1
";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::wsgateway::Protocol;

    #[test]
    fn streams_are_named_by_type() {
        let msg = |ty: Option<&str>| Msg {
            payload: ty.map(|t| Protocol {
                r#type: t.into(),
                ..Protocol::default()
            }),
            ..Msg::default()
        };
        assert_eq!(stream_name(&msg(Some("chat"))), "chat");
        assert_eq!(stream_name(&msg(Some(""))), DEFAULT_STREAM);
        assert_eq!(stream_name(&msg(None)), DEFAULT_STREAM);
    }
}
