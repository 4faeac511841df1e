//! History in Redis (`--redis`), shared by every node:
//!
//! | key | type | content |
//! |---|---|---|
//! | `ws:hist:{<uid>}` | HASH | `epoch`, `head` (last offset), `acked` (acknowledged offset, once the user acks) |
//! | `ws:hist:{<uid>}:log` | STREAM | entry id `<n>-0`, fields `at` (unix ms), `msg` (protobuf `Protocol`); `MAXLEN ~ --history-size` |
//! | `ws:hist:{<uid>}:devices` | HASH | field: a device id; value `<n>:<unix ms>`, the device's acknowledged offset and when it last acknowledged; at most `--devices-per-user` fields (the least recent is dropped) |
//! | `ws:dedup:{<uid>}:<id>` | STRING | a client message id seen, PX `--dedup-window` |
//! | `ws:push:{<uid>}:<key>` | STRING | `<epoch>:<n>` a Push with idempotency key `<key>` was appended at, PX `--idempotency-window` |
//!
//! The three history keys expire `--history-ttl` after the user's last
//! push (a device's first ack gives its hash the others' remaining time);
//! the next push then starts a new epoch, and drops the devices' offsets. An append is one Lua script (offset,
//! entry and expiry together), so concurrent pushes from several nodes get
//! consecutive offsets. A Push with an idempotency key is one script too
//! ([`APPEND_ONCE`]): the key's check, the append and the key's record
//! together, so a Push that Redis ran late (its caller had timed out) has
//! left its key for the retry. The braces keep a user's keys in one
//! cluster slot.

use std::time::Duration;

use prost::Message;
use redis::Script;
use redis::aio::ConnectionManager;

use super::{Appended, Entry, Keyed, KeyedAppend, Log, Position, Retention, new_epoch, now_ms};
use crate::presence::PresenceError;
use crate::proto::wsgateway::Protocol;

/// The append itself, shared by both scripts (KEYS: meta, log, devices):
/// `epoch` is the user's current epoch or nil (a new one is started with
/// `ARGV[1]`, forgetting the old log and devices' positions); leaves the
/// new position in `n` and in `acked` 1 if the user or a device has
/// acknowledged.
macro_rules! append_step {
    () => {
        r"
if not epoch then
  epoch = ARGV[1]
  redis.call('DEL', KEYS[2], KEYS[3])
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'head', 0)
end
local n = redis.call('HINCRBY', KEYS[1], 'head', 1)
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], n .. '-0', 'at', ARGV[3], 'msg', ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
redis.call('PEXPIRE', KEYS[2], ARGV[5])
redis.call('PEXPIRE', KEYS[3], ARGV[5])
local acked = redis.call('HEXISTS', KEYS[1], 'acked') + redis.call('EXISTS', KEYS[3])
"
    };
}

/// KEYS: meta, log, devices. Returns epoch, n, and 1 if the user or a
/// device has acknowledged.
const APPEND: &str = concat!(
    "local epoch = redis.call('HGET', KEYS[1], 'epoch')",
    append_step!(),
    "return {epoch, n, acked}"
);

/// [`APPEND`] unless `KEYS[4]` names a position of the current epoch;
/// then that position (and its message while the stream keeps it). A key
/// of another epoch (the history was lost) is overwritten: forgotten with
/// its epoch. The key's expiry counts from its append; a duplicate does
/// not extend it. KEYS: meta, log, devices, key.
const APPEND_ONCE: &str = concat!(
    r"
local epoch = redis.call('HGET', KEYS[1], 'epoch')
local seen = redis.call('GET', KEYS[4])
if epoch and seen then
  local e, n = string.match(seen, '^(.*):(%d+)$')
  if e == epoch then
    local msg = false
    local found = redis.call('XRANGE', KEYS[2], n .. '-0', n .. '-0')
    if found[1] then
      local fields = found[1][2]
      for i = 1, #fields, 2 do
        if fields[i] == 'msg' then msg = fields[i + 1] end
      end
    end
    return {epoch, tonumber(n), 0, 1, msg}
  end
end
",
    append_step!(),
    r"redis.call('SET', KEYS[4], epoch .. ':' .. n, 'PX', ARGV[6])
return {epoch, n, acked, 0, false}
"
);

/// A cumulative ack, the user's (`ARGV[3]` empty) or a device's. KEYS:
/// meta, devices; ARGV: epoch, n, device, now (ms), `--devices-per-user`.
/// Returns 0 (ignored), 1 (recorded) or 2 (recorded, and the least
/// recently acknowledging other device dropped for room).
const ACK: &str = r"
if redis.call('HGET', KEYS[1], 'epoch') ~= ARGV[1] then return 0 end
local n = tonumber(ARGV[2])
if n > tonumber(redis.call('HGET', KEYS[1], 'head')) then return 0 end
if ARGV[3] == '' then
  local acked = tonumber(redis.call('HGET', KEYS[1], 'acked') or '-1')
  if n > acked then redis.call('HSET', KEYS[1], 'acked', n) end
  return 1
end
local known = redis.call('HGET', KEYS[2], ARGV[3])
if known then
  local was = tonumber(string.match(known, '^(%d+):'))
  if was and was > n then n = was end
end
redis.call('HSET', KEYS[2], ARGV[3], n .. ':' .. ARGV[4])
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then redis.call('PEXPIRE', KEYS[2], ttl) end
if known or redis.call('HLEN', KEYS[2]) <= tonumber(ARGV[5]) then return 1 end
local all = redis.call('HGETALL', KEYS[2])
local oldest, oldest_at = nil, nil
for i = 1, #all, 2 do
  local at = tonumber(string.match(all[i + 1], ':(%d+)$')) or 0
  if all[i] ~= ARGV[3] and (oldest_at == nil or at < oldest_at) then
    oldest, oldest_at = all[i], at
  end
end
if oldest then redis.call('HDEL', KEYS[2], oldest) end
return 2
";

fn meta(uid: u64) -> String {
    format!("ws:hist:{{{uid}}}")
}

fn entries(uid: u64) -> String {
    format!("ws:hist:{{{uid}}}:log")
}

fn devices(uid: u64) -> String {
    format!("ws:hist:{{{uid}}}:devices")
}

/// A `ws:hist:{<uid>}:devices` value `<n>:<unix ms>` → its offset.
fn device_offset(value: &str) -> Option<u64> {
    value.split_once(':')?.0.parse().ok()
}

/// History in Redis.
pub struct RedisHistory {
    conn: ConnectionManager,
    retention: Retention,
    dedup_window: Duration,
    key_window: Duration,
    append: Script,
    append_once: Script,
    ack: Script,
}

impl std::fmt::Debug for RedisHistory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisHistory")
            .field("retention", &self.retention)
            .finish_non_exhaustive()
    }
}

type StreamEntry = (String, Vec<(String, Vec<u8>)>);
/// [`APPEND_ONCE`]'s reply: epoch, n, acknowledged (0: never), duplicate
/// (0/1), the duplicate's message.
type Once = (String, u64, u8, u8, Option<Vec<u8>>);
/// `HMGET epoch head acked`.
type Meta = (Option<String>, Option<u64>, Option<u64>);

impl RedisHistory {
    pub fn new(
        conn: ConnectionManager,
        retention: Retention,
        dedup_window: Duration,
        key_window: Duration,
    ) -> RedisHistory {
        RedisHistory {
            conn,
            retention,
            dedup_window,
            key_window,
            append: Script::new(APPEND),
            append_once: Script::new(APPEND_ONCE),
            ack: Script::new(ACK),
        }
    }

    pub fn retention(&self) -> Retention {
        self.retention
    }

    pub fn dedup_window(&self) -> Duration {
        self.dedup_window
    }

    pub async fn append(&self, uid: u64, msg: &Protocol) -> Result<Appended, PresenceError> {
        let (epoch, n, acked): (String, u64, u8) = self
            .append
            .key(meta(uid))
            .key(entries(uid))
            .key(devices(uid))
            .arg(new_epoch())
            .arg(self.retention.size)
            .arg(now_ms())
            .arg(msg.encode_to_vec())
            .arg(self.retention.ttl.as_millis() as u64)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(Appended {
            position: Position { epoch, n },
            acknowledged: acked > 0,
        })
    }

    pub async fn append_once(
        &self,
        uid: u64,
        msg: &Protocol,
        key: &str,
    ) -> Result<KeyedAppend, PresenceError> {
        let (epoch, n, acked, duplicate, original): Once = self
            .append_once
            .key(meta(uid))
            .key(entries(uid))
            .key(devices(uid))
            .key(super::push_key(uid, key))
            .arg(new_epoch())
            .arg(self.retention.size)
            .arg(now_ms())
            .arg(msg.encode_to_vec())
            .arg(self.retention.ttl.as_millis() as u64)
            .arg((self.key_window.as_millis() as u64).max(1))
            .invoke_async(&mut self.conn.clone())
            .await?;
        let position = Position { epoch, n };
        let outcome = if duplicate == 1 {
            Keyed::Duplicate {
                position,
                original: original.and_then(|m| Protocol::decode(&m[..]).ok()),
            }
        } else {
            Keyed::New(Appended {
                position,
                acknowledged: acked > 0,
            })
        };
        Ok(KeyedAppend {
            outcome,
            keys_evicted: 0,
        })
    }

    pub async fn log(&self, uid: u64) -> Result<Option<Log>, PresenceError> {
        type Devices = Vec<(String, String)>;
        let ((epoch, head, acked), raw, devices): (Meta, Vec<StreamEntry>, Devices) = redis::pipe()
            .cmd("HMGET")
            .arg(meta(uid))
            .arg("epoch")
            .arg("head")
            .arg("acked")
            .cmd("XRANGE")
            .arg(entries(uid))
            .arg("-")
            .arg("+")
            .cmd("HGETALL")
            .arg(devices(uid))
            .query_async(&mut self.conn.clone())
            .await?;
        let (Some(epoch), Some(head)) = (epoch, head) else {
            return Ok(None);
        };
        let entries = raw.into_iter().filter_map(parse_entry).collect();
        let devices = devices
            .into_iter()
            .filter_map(|(device, v)| {
                let n = device_offset(&v)?;
                Some(super::DeviceAck { device, n })
            })
            .collect();
        Ok(Some(Log {
            epoch,
            head,
            acked,
            devices,
            entries,
        }))
    }

    pub async fn behind(&self, uid: u64, device: Option<&str>) -> Result<bool, PresenceError> {
        let mut conn = self.conn.clone();
        let (head, acked): (Option<u64>, Option<u64>) = match device {
            None => {
                redis::cmd("HMGET")
                    .arg(meta(uid))
                    .arg("head")
                    .arg("acked")
                    .query_async(&mut conn)
                    .await?
            }
            Some(d) => {
                let (head, at): (Option<u64>, Option<String>) = redis::pipe()
                    .cmd("HGET")
                    .arg(meta(uid))
                    .arg("head")
                    .cmd("HGET")
                    .arg(devices(uid))
                    .arg(d)
                    .query_async(&mut conn)
                    .await?;
                (head, at.as_deref().and_then(device_offset))
            }
        };
        Ok(matches!((head, acked), (Some(h), Some(a)) if a < h))
    }

    /// Returns whether another device was dropped for room.
    pub async fn ack(
        &self,
        uid: u64,
        device: Option<&str>,
        at: &Position,
    ) -> Result<bool, PresenceError> {
        let done: u64 = self
            .ack
            .key(meta(uid))
            .key(devices(uid))
            .arg(&at.epoch)
            .arg(at.n)
            .arg(device.unwrap_or_default())
            .arg(now_ms())
            .arg(self.retention.devices.max(1))
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(done == 2)
    }

    pub async fn first_time(&self, uid: u64, id: &str) -> Result<bool, PresenceError> {
        let set: Option<String> = redis::cmd("SET")
            .arg(super::dedup_key(uid, id))
            .arg(1)
            .arg("NX")
            .arg("PX")
            .arg(self.dedup_window.as_millis() as u64)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(set.is_some())
    }
}

/// `(id "<n>-0", [at, msg])` → an entry; a malformed one is skipped (and
/// then shows as a gap, so a resume over it fails rather than skip it).
fn parse_entry((id, fields): StreamEntry) -> Option<Entry> {
    let n = id.split_once('-')?.0.parse().ok()?;
    let field = |name: &str| fields.iter().find(|(f, _)| f == name).map(|(_, v)| v);
    let at_ms = std::str::from_utf8(field("at")?).ok()?.parse().ok()?;
    let msg = Protocol::decode(&field("msg")?[..]).ok()?;
    Some(Entry { n, at_ms, msg })
}
