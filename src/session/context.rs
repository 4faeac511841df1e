//! What a core's sessions share, from the upgrade to their end: the narrow
//! context a `Session` and its `Claim` run with. `shard` builds one per
//! core; nothing here knows about the listener, the router or other cores.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;

use crate::config::Config;
use crate::metrics::Counters;
use crate::routing::admission::Admission;
use crate::routing::sessions::Sessions;
use crate::upstream::pool::Upstreams;

/// One core's sessions' shared state, behind one `Rc`.
pub struct SessionContext {
    pub config: Config,
    pub counters: Arc<Counters>,
    /// The core's session table: a claim takes and gives back its slot.
    pub sessions: Rc<Sessions>,
    /// Keepalive rounds so far, advanced by the core's keepalive task: a
    /// session notes the round in which it last heard its client.
    pub tick: Rc<Cell<u64>>,
    /// The core's ws-api nodes: messages, `Connect`, `KeepAlive`, `Disconnect`.
    pub upstream: Rc<Upstreams>,
    /// The per-user limit (`--max-connections-per-user`).
    pub admission: Rc<Admission>,
}
