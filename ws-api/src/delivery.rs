//! What ws-api does for the delivery guarantees (docs/delivery.md), on top
//! of [`History`], sending through the [`Outbox`] it is handed:
//!
//! - a Push by uid appends to the user's stream and carries its position,
//!   once per idempotency key within `--idempotency-window`;
//! - `Control.Resume` from a gateway replays, on the stream it came from,
//!   what the session missed, then `Control.Resumed`;
//! - a client's `{"type":"ack","offset"}` records the user's position, or
//!   its device's when the session gave a device id (`Msg.device`), and
//!   users that acknowledge get what they leave unacknowledged for
//!   `--ack-timeout` again, at most `--ack-retries` times: each session
//!   what its own device (or the user, without one) has not acknowledged;
//! - a client message with an `id` is answered `{"type":"ack","id"}` once
//!   handled, and one already received from that user is acknowledged as a
//!   `duplicate` without being handled again.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tracing::{debug, warn};

use crate::Handler;
use crate::history::{Entry, History, Keyed, Log, Position, Replay, SessionDevices, plan_replay};
use crate::outbox::Outbox;
use crate::presence::SessionKey;
use crate::proto::Device;
use crate::proto::wsapi::control::Op;
use crate::proto::wsapi::{Msg, Resume, Resumed};
use crate::proto::wsgateway::Protocol;

/// Redelivery settings.
#[derive(Debug, Clone, Copy)]
pub struct Redelivery {
    pub ack_timeout: Duration,
    pub retries: u32,
}

#[derive(Debug)]
struct Pending {
    due: Instant,
    tries: u32,
}

/// What a Push did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pushed {
    /// Sessions it reached.
    pub reached: i64,
    /// Its position `<epoch>:<n>`; empty when no history is kept.
    pub offset: String,
    /// Its idempotency key had been appended: `offset` is the original's.
    pub duplicate: bool,
}

/// History (if kept) and the users waiting for acknowledgements.
#[derive(Debug)]
pub struct Delivery {
    pub history: Option<History>,
    pub redelivery: Redelivery,
    pending: Mutex<HashMap<u64, Pending>>,
    /// Which device each session connected here with, for redelivery.
    sessions: Mutex<SessionDevices>,
}

/// What the stream pump does with an upstream message after [`Delivery::intercept`].
#[derive(Debug)]
pub enum Upstream {
    /// Taken care of here (a resume, an ack, a duplicate).
    Consumed,
    /// Hand it to the handler; then acknowledge `id` if there is one.
    Handle { ack: Option<String> },
}

impl Delivery {
    pub fn new(history: Option<History>, redelivery: Redelivery) -> Delivery {
        Delivery {
            history,
            redelivery,
            pending: Mutex::default(),
            sessions: Mutex::default(),
        }
    }

    /// Connect: remembers the session's device (none: `None`) until
    /// [`Self::disconnected`], so redelivery sends it what that device
    /// has not acknowledged.
    pub fn connected(&self, key: &SessionKey, device: Option<&Device>) {
        self.sessions
            .lock()
            .remember(key, device.map(Device::as_str));
    }

    pub fn disconnected(&self, key: &SessionKey) {
        self.sessions.lock().forget(key);
    }

    /// A Push by uid: appended to the user's stream (when history is kept,
    /// even with no session online, so a reconnect can resume), then sent
    /// to every session of the user. With an idempotency `key` already
    /// appended (docs/delivery.md, "Push that can be retried") nothing is
    /// appended: the original message goes again, at its original offset,
    /// to the sessions online now (a retry after a timeout then also
    /// reaches those that missed it; the others drop it by offset).
    pub async fn push_to_user(
        &self,
        outbox: &Outbox,
        uid: u64,
        payload: Protocol,
        key: &str,
    ) -> Result<Pushed, crate::presence::PresenceError> {
        let (payload, duplicate) = self.append(outbox, uid, payload, key).await?;
        let offset = payload
            .as_ref()
            .map(|p| p.offset.clone())
            .unwrap_or_default();
        let mut pushed = Pushed {
            reached: 0,
            offset,
            duplicate: duplicate.is_some(),
        };
        let Some(payload) = payload else {
            pushed.offset = duplicate.map(|d| d.to_string()).unwrap_or_default();
            return Ok(pushed);
        };
        for key in outbox.presence.sessions(uid).await? {
            pushed.reached += i64::from(
                outbox
                    .to_session(&key, Some(payload.clone()), None, false)
                    .await,
            );
        }
        Ok(pushed)
    }

    /// The history's part of a Push: the message to send, with its
    /// position (none for a duplicate whose original the history no longer
    /// keeps), and the original position if `key` was a duplicate.
    async fn append(
        &self,
        outbox: &Outbox,
        uid: u64,
        mut payload: Protocol,
        key: &str,
    ) -> Result<(Option<Protocol>, Option<Position>), crate::presence::PresenceError> {
        let Some(history) = &self.history else {
            return Ok((Some(payload), None));
        };
        let appended = if key.is_empty() {
            history.append(uid, &payload).await?
        } else {
            let keyed = history.append_once(uid, &payload, key).await?;
            outbox
                .stats
                .push_keys_evicted
                .fetch_add(keyed.keys_evicted, Relaxed);
            match keyed.outcome {
                Keyed::New(appended) => appended,
                Keyed::Duplicate { position, original } => {
                    outbox.stats.push_duplicates.fetch_add(1, Relaxed);
                    let original = original.map(|mut o| {
                        o.offset = position.to_string();
                        o
                    });
                    return Ok((original, Some(position)));
                }
            }
        };
        payload.offset = appended.position.to_string();
        outbox.stats.positioned.fetch_add(1, Relaxed);
        if appended.acknowledged {
            let due = Instant::now() + self.redelivery.ack_timeout;
            self.pending
                .lock()
                .entry(uid)
                .or_insert(Pending { due, tries: 0 });
        }
        Ok((Some(payload), None))
    }

    /// Connect's `resume`: the client asked, or the user (with a device
    /// id: that device) acknowledged before and is behind. Never with no
    /// history kept.
    pub async fn should_resume(&self, uid: u64, since: &str, device: Option<&Device>) -> bool {
        let Some(history) = &self.history else {
            return false;
        };
        if !since.is_empty() {
            return true;
        }
        let device = device.map(Device::as_str);
        history.behind(uid, device).await.unwrap_or_else(|e| {
            warn!(uid, error = %e, "history unavailable: no resume");
            false
        })
    }

    /// Delivery's part of an upstream message, before the handler.
    /// `handler` is the backend's: with `redis-stream` and Redis history,
    /// the appender deduplicates ids itself.
    pub async fn intercept(
        self: &Arc<Self>,
        outbox: &Arc<Outbox>,
        handler: Handler,
        msg: &Msg,
    ) -> Upstream {
        if let Some(Op::Resume(r)) = msg.control.as_ref().and_then(|c| c.op.as_ref()) {
            let key = SessionKey {
                server: msg.server.clone(),
                sid: msg.sid.clone(),
            };
            let mut r = r.clone();
            if r.device.is_empty() {
                r.device.clone_from(&msg.device);
            }
            tokio::spawn(Arc::clone(self).resume(Arc::clone(outbox), key, r));
            return Upstream::Consumed;
        }
        let Some(p) = &msg.payload else {
            return Upstream::Handle { ack: None };
        };
        let Some(history) = &self.history else {
            return Upstream::Handle { ack: None };
        };
        let is_ack = p.r#type == "ack" && !p.offset.is_empty();
        if !is_ack && p.id.is_empty() {
            return Upstream::Handle { ack: None };
        }
        if !is_ack && handler == Handler::RedisStream && matches!(history, History::Redis(_)) {
            // Deduplicated and acknowledged by the appender, atomically with
            // the append (crate::redis_stream).
            return Upstream::Handle { ack: None };
        }
        let key = SessionKey {
            server: msg.server.clone(),
            sid: msg.sid.clone(),
        };
        let uid = match outbox.presence.author_of(&key).await {
            Ok(Some(uid)) => uid,
            Ok(None) => {
                debug!(sid = %key.sid, "ack or id from an unknown session: handled as is");
                return Upstream::Handle { ack: None };
            }
            Err(e) => {
                warn!(error = %e, "presence unavailable: ack or id not processed");
                return Upstream::Handle { ack: None };
            }
        };
        if is_ack {
            let device = device_of(&msg.device);
            let device = device.as_ref().map(Device::as_str);
            if let Some(at) = Position::parse(&p.offset) {
                match history.ack(uid, device, &at).await {
                    Ok(false) => {}
                    Ok(true) => {
                        outbox.stats.devices_evicted.fetch_add(1, Relaxed);
                        debug!(
                            uid,
                            ?device,
                            "a device's acknowledged position forgotten for room (--devices-per-user)"
                        );
                    }
                    Err(e) => warn!(uid, error = %e, "cannot record an acknowledgement"),
                }
            }
            outbox.stats.client_acks.fetch_add(1, Relaxed);
            return Upstream::Consumed;
        }
        match history.first_time(uid, &p.id).await {
            Ok(true) => Upstream::Handle {
                ack: Some(p.id.clone()),
            },
            Ok(false) => {
                outbox.stats.client_duplicates.fetch_add(1, Relaxed);
                outbox.answer_id(&key, &p.id, true).await;
                Upstream::Consumed
            }
            Err(e) => {
                // Handled and acknowledged: at least once, maybe twice.
                warn!(uid, error = %e, "dedup store unavailable");
                Upstream::Handle {
                    ack: Some(p.id.clone()),
                }
            }
        }
    }

    /// Replays what `key` missed, then `Resumed`, down its core's stream.
    async fn resume(self: Arc<Self>, outbox: Arc<Outbox>, key: SessionKey, r: Resume) {
        let since = Position::parse(&r.since);
        let device = device_of(&r.device);
        let replay = match (&self.history, &since) {
            (None, _) => Replay::Failed,
            (Some(_), None) if !r.since.is_empty() => Replay::Failed,
            (Some(history), since) => history
                .replay(r.uid, since.as_ref(), device.as_ref().map(Device::as_str))
                .await
                .unwrap_or_else(|e| {
                    warn!(uid = r.uid, error = %e, "history unavailable: resume failed");
                    Replay::Failed
                }),
        };
        let resumed = match replay {
            Replay::Messages {
                epoch,
                entries,
                through,
            } => {
                outbox
                    .stats
                    .replayed
                    .fetch_add(entries.len() as u64, Relaxed);
                for e in entries {
                    let p = with_offset(e.msg, &epoch, e.n);
                    if !outbox.to_session(&key, Some(p), None, true).await {
                        return;
                    }
                }
                Resumed {
                    offset: through,
                    failed: false,
                }
            }
            Replay::Failed => {
                outbox.stats.resume_failed.fetch_add(1, Relaxed);
                Resumed {
                    offset: String::new(),
                    failed: true,
                }
            }
        };
        outbox
            .to_session(&key, None, Some(Op::Resumed(resumed)), false)
            .await;
    }

    /// Sends again what users who acknowledge have left unacknowledged past
    /// `--ack-timeout`; runs for the life of the process.
    pub async fn redeliver(self: Arc<Self>, outbox: Arc<Outbox>) {
        let every = (self.redelivery.ack_timeout / 4)
            .clamp(Duration::from_millis(50), Duration::from_secs(1));
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            let now = Instant::now();
            let due: Vec<u64> = self
                .pending
                .lock()
                .iter()
                .filter(|(_, p)| p.due <= now)
                .map(|(uid, _)| *uid)
                .collect();
            for uid in due {
                self.redeliver_to(&outbox, uid).await;
            }
        }
    }

    /// Sends each of the user's sessions what its device (or the user,
    /// for a session without one) has not acknowledged; a session not
    /// connected through this node is sent what any of them has not.
    async fn redeliver_to(&self, outbox: &Outbox, uid: u64) {
        let Some(history) = &self.history else {
            return;
        };
        let (log, sessions) = match (history.log(uid).await, outbox.presence.sessions(uid).await) {
            (Ok(Some(log)), Ok(sessions)) => (log, sessions),
            (Ok(None), _) => {
                self.pending.lock().remove(&uid);
                return;
            }
            (Err(e), _) | (_, Err(e)) => {
                warn!(uid, error = %e, "history or presence unavailable: redelivery postponed");
                return;
            }
        };
        let ttl = history.retention().ttl;
        let lowest = lowest_ack(&log);
        let mut missing: BTreeMap<u64, (String, Vec<Entry>)> = BTreeMap::new();
        // (session, the offset after which it is sent what is kept);
        // with no session online, the user's retries still count down.
        let mut plans: Vec<(Option<SessionKey>, u64)> = Vec::new();
        {
            let known = self.sessions.lock();
            let targets: Vec<(Option<&SessionKey>, Option<u64>)> = if sessions.is_empty() {
                vec![(None, lowest)]
            } else {
                let from = |key| match known.device_of(key) {
                    Some(device) => log.acked_by(device),
                    None => lowest,
                };
                sessions.iter().map(|key| (Some(key), from(key))).collect()
            };
            for (key, from) in targets {
                let Some(from) = from else { continue };
                let (_, entries) = missing
                    .entry(from)
                    .or_insert_with(|| after(&log, from, ttl));
                if !entries.is_empty() {
                    plans.push((key.cloned(), from));
                }
            }
        }
        if plans.is_empty() {
            self.pending.lock().remove(&uid);
            return;
        }
        if self.count_try(outbox, uid) {
            return;
        }
        for (key, from) in plans {
            let (Some(key), Some((epoch, entries))) = (key, missing.get(&from)) else {
                continue;
            };
            for e in entries {
                let p = with_offset(e.msg.clone(), epoch, e.n);
                // As a replay: a session resuming from before it delivers
                // it at once, and one past it still delivers it again.
                if outbox.to_session(&key, Some(p), None, true).await {
                    outbox.stats.redelivered.fetch_add(1, Relaxed);
                }
            }
        }
    }

    /// One more try for `uid`: `true` if its retries are exhausted (then
    /// it is no longer pending, and counted).
    fn count_try(&self, outbox: &Outbox, uid: u64) -> bool {
        let gave_up = {
            let mut pending = self.pending.lock();
            let Some(p) = pending.get_mut(&uid) else {
                return true;
            };
            p.tries += 1;
            p.due = Instant::now() + self.redelivery.ack_timeout;
            let gave_up = p.tries > self.redelivery.retries;
            if gave_up {
                pending.remove(&uid);
            }
            gave_up
        };
        if gave_up {
            outbox.stats.redelivery_gave_up.fetch_add(1, Relaxed);
            debug!(uid, "unacknowledged messages: retries exhausted");
        }
        gave_up
    }
}

/// A session's device id from the wire: none when empty, and none (the
/// user's, logged) when not valid: the gateway checks it, so only a
/// foreign one could send that.
fn device_of(raw: &str) -> Option<Device> {
    if raw.is_empty() {
        return None;
    }
    let device = Device::parse(raw);
    if device.is_none() {
        debug!(device = raw, "not a valid device id: taken as none");
    }
    device
}

/// The lowest acknowledged offset of the user and its devices: what a
/// session whose device is not known here may have missed.
fn lowest_ack(log: &Log) -> Option<u64> {
    let devices = log.devices.iter().map(|d| d.n);
    log.acked.into_iter().chain(devices).min()
}

/// The epoch and the kept messages after offset `from` (none when they are
/// no longer all kept: a resume would fail, so would this).
fn after(log: &Log, from: u64, ttl: Duration) -> (String, Vec<Entry>) {
    let mut at = log.clone();
    at.acked = Some(from);
    match plan_replay(Some(at), None, crate::history::now_ms(), ttl) {
        Replay::Messages { epoch, entries, .. } => (epoch, entries),
        Replay::Failed => (String::new(), Vec::new()),
    }
}

fn with_offset(mut p: Protocol, epoch: &str, n: u64) -> Protocol {
    p.offset = format!("{epoch}:{n}");
    p
}
