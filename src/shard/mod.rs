//! One core: a pinned glommio executor that owns its SO_REUSEPORT listener,
//! its sessions, its upstream streams (one per ws-api node) and its counters.
//!
//! Shards are started one after another (see `server.rs`): shard 0 binds the
//! configured address, the others bind the exact address it got (so port 0
//! works), and glommio numbers mesh peers by executor id, which is the
//! start order, so peer `i` of the mesh is shard `i`.
//!
//! # Layout
//!
//! - this file: [`spawn`] starts a shard (a pinned executor) and builds its state.
//! - [`drain`]: a core's graceful shutdown (1001 to every session, then the stream).
//! - [`keepalive`]: server pings, one timer per core.

pub mod drain;
pub mod keepalive;

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, IntoRawFd};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use futures_lite::{AsyncReadExt, future};

use async_tungstenite::tungstenite::protocol::WebSocketConfig;
use glommio::channels::channel_mesh::FullMesh;
use glommio::{ExecutorJoinHandle, LocalExecutorBuilder, Placement};
use tracing::info;

use crate::codec::sid::Instance;
use crate::config::Config;
use crate::edge::listener;
use crate::edge::tls::Tls;
use crate::edge::upgrade::Accept;
use crate::metrics::Counters;
use crate::proto::wsapi::Msg;
use crate::ratelimit::{PerIp, TokenBucket};
use crate::routing::admission::{Admission, AdmitMsg};
use crate::routing::router::Router;
use crate::routing::sessions::Sessions;
use crate::session::context::SessionContext;
use crate::shard::drain::Drain;
use crate::shard::keepalive::Keepalive;
use crate::upstream::UpstreamConfig;
use crate::upstream::grpc::{ChannelConfig, Credentials};
use crate::upstream::pool::Upstreams;
use crate::upstream::reassert::Pace;
use crate::upstream::targets::Targets;

/// Everything one core owns; its tasks each get the part they use.
struct Core {
    id: usize,
    /// What the accept path uses; holds the sessions' context.
    accept: Rc<Accept>,
    router: Rc<Router>,
}

impl Core {
    fn session(&self) -> &Rc<SessionContext> {
        &self.accept.session
    }

    fn keepalive(&self) -> Keepalive {
        let ctx = self.session();
        Keepalive {
            core: self.id,
            interval: ctx.config.ping_interval,
            app_ping: ctx.config.app_ping,
            sessions: Rc::clone(&ctx.sessions),
            tick: Rc::clone(&ctx.tick),
            counters: Arc::clone(&ctx.counters),
        }
    }
}

/// io_uring submission queue entries per core (see `spawn`).
const RING_DEPTH: usize = 4096;

/// See `spawn`.
const PREEMPT_TIMER: std::time::Duration = std::time::Duration::from_millis(10);

/// What a shard needs to start.
pub struct ShardSpec {
    pub id: usize,
    pub cpu: usize,
    pub config: Config,
    pub listen: SocketAddr,
    /// The ws-api nodes, shared by every core.
    pub targets: Arc<Targets>,
    pub epoch_ms: u64,
    pub mesh: FullMesh<Msg>,
    pub admission_mesh: FullMesh<AdmitMsg>,
    pub tls: Option<Arc<Tls>>,
    /// TLS and the shared secret to ws-api.
    pub upstream_credentials: Credentials,
    pub cores: usize,
    pub counters: Arc<Counters>,
    /// Closed (or written to) by the server on SIGTERM/SIGINT: the core drains.
    /// A socket rather than a polled flag, so an idle core has no timer.
    pub stop: std::os::unix::net::UnixStream,
    /// Reports the bound address (or why binding failed) back to the server.
    pub bound: mpsc::Sender<Result<SocketAddr, String>>,
}

/// The identity base of this gateway: `--advertise`, else the bound address,
/// else (on a wildcard address) hostname:port.
pub fn advertise(config: &Config, bound: SocketAddr) -> String {
    if let Some(a) = &config.advertise {
        return a.clone();
    }
    if !bound.ip().is_unspecified() {
        return bound.to_string();
    }
    let uname = rustix::system::uname();
    let host = uname.nodename().to_string_lossy();
    format!("{host}:{}", bound.port())
}

/// Starts the shard's executor thread, pinned to its CPU.
pub fn spawn(spec: ShardSpec) -> glommio::Result<ExecutorJoinHandle<()>, ()> {
    LocalExecutorBuilder::new(Placement::Fixed(spec.cpu))
        .name(&format!("core-{}", spec.id))
        .io_memory(spec.config.io_memory)
        // io_uring sizes its cancel hash by the ring: with the default depth, 10k
        // pending socket polls share 8 buckets and every cancel walks ~1,000 of them.
        .ring_depth(RING_DEPTH)
        .batch_wait(spec.config.batch_wait)
        // How long task queues may run before the core looks at its sockets
        // again. glommio re-armed its 100 ms timer on every loop iteration,
        // so in practice it looked far more often; the timer now stays armed
        // and that period is what a busy core's other sessions may wait
        // (a client flooded by pushes held a reading one up for ~100 ms).
        .preempt_timer(PREEMPT_TIMER)
        .spawn(move || run(spec))
}

async fn run(spec: ShardSpec) {
    let listener = match listener::bind(spec.listen) {
        Ok(l) => l,
        Err(e) => {
            let _ = spec
                .bound
                .send(Err(format!("cannot listen on {}: {e}", spec.listen)));
            return;
        }
    };
    let addr = match listener.local_addr() {
        Ok(a) => a,
        Err(e) => {
            let _ = spec.bound.send(Err(format!("listener address: {e}")));
            return;
        }
    };
    let _ = spec.bound.send(Ok(addr));
    // A core that cannot reach the others would leave the process serving
    // with a core fewer and never ready: abort instead (a panic on a core
    // aborts the process, see main.rs).
    let (senders, receivers) = spec
        .mesh
        .clone()
        .join()
        .await
        .unwrap_or_else(|e| panic!("core {} could not join the cross-core mesh: {e}", spec.id));
    assert_eq!(
        senders.peer_id(),
        spec.id,
        "core {}: mesh peer id differs from core id",
        spec.id
    );
    let (admit_tx, admit_rx) = spec
        .admission_mesh
        .clone()
        .join()
        .await
        .unwrap_or_else(|e| panic!("core {} could not join the admission mesh: {e}", spec.id));
    let core = build_core(&spec, addr);
    let ctx = Rc::clone(core.session());
    core.router.set_mesh(senders);
    ctx.admission.set_mesh(admit_tx);
    glommio::spawn_local(Rc::clone(&core.router).serve_mesh(receivers)).detach();
    glommio::spawn_local(Rc::clone(&ctx.admission).serve(admit_rx)).detach();
    glommio::spawn_local(core.keepalive().run()).detach();
    ctx.upstream
        .start(&core.router, spec.config.upstream_resolve_interval);
    info!(
        core = core.id,
        cpu = spec.cpu,
        identity = ctx.upstream.identity(),
        "core started"
    );
    // SAFETY: the descriptor comes from an owned std socket that gives it up.
    #[allow(unsafe_code)]
    let mut stop_rx = unsafe { glommio::net::UnixStream::from_raw_fd(spec.stop.into_raw_fd()) };
    let stop = async {
        let mut byte = [0u8; 1];
        let _ = stop_rx.read(&mut byte).await;
    };
    future::or(listener::serve(Rc::clone(&core.accept), listener), stop).await;
    let drain = Drain {
        core: core.id,
        sessions: &ctx.sessions,
        draining: &core.accept.draining,
        window: spec.config.drain_window,
        deadline: Instant::now() + spec.config.shutdown_timeout,
    };
    drain.run(ctx.upstream.close()).await;
}

/// How a core reaches ws-api, from the flags.
pub(crate) fn upstream_config(
    config: &Config,
    identity: String,
    epoch_ms: u64,
    credentials: Credentials,
) -> UpstreamConfig {
    UpstreamConfig {
        identity,
        epoch: epoch_ms.to_string(),
        channel: ChannelConfig {
            connect_timeout: config.rpc_timeout,
            stream_window: 1 << 20,
            connection_window: 16 << 20,
            // ws-api's replies echo client messages, plus the Msg envelope.
            max_message: (4 << 20).max(config.max_message_size + 64 * 1024),
            credentials,
        },
        rpc_timeout: config.rpc_timeout,
        keepalive: config.upstream_keepalive,
        buffer_limit: config.upstream_buffer,
        flush_interval: config.upstream_flush_interval,
        reconnect_min: config.reconnect_min,
        reconnect_max: config.reconnect_max.max(Duration::from_millis(1)),
        reassert: Pace {
            rate: config.reassert_rate,
            in_flight: config.reassert_in_flight,
        },
    }
}

/// tungstenite's settings for a core's sessions, from the flags.
///
/// The read buffer is allocated at the upgrade and kept for the session's
/// life, idle or not: 128 bytes holds a typical client frame, and reads are
/// copies from glommio's receive ring, not syscalls, so a 1 KiB frame's
/// eight reads cost little (512 bytes: 0.39 KiB more per idle connection;
/// docs/benchmarks.md).
pub(crate) fn ws_config(config: &Config) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(128)
        .write_buffer_size(64 * 1024)
        .max_write_buffer_size(64 * 1024 + config.max_message_size * 4)
        .max_message_size(Some(config.max_message_size))
        .max_frame_size(Some(config.max_frame_size))
}

fn build_core(spec: &ShardSpec, bound: SocketAddr) -> Core {
    let config = &spec.config;
    let base = advertise(config, bound);
    let instance = Instance::new(&base, spec.epoch_ms);
    let counters = Arc::clone(&spec.counters);
    let sessions = Rc::new(Sessions::default());
    let upstream = Upstreams::new(
        upstream_config(
            config,
            format!("{base}#{}", spec.id),
            spec.epoch_ms,
            spec.upstream_credentials.clone(),
        ),
        Arc::clone(&spec.targets),
        Arc::clone(&counters),
    );
    let router = Rc::new(Router::new(
        spec.id,
        instance,
        Rc::clone(&sessions),
        Arc::clone(&counters),
    ));
    let ws_config = ws_config(config);
    let session = Rc::new(SessionContext {
        config: config.clone(),
        counters,
        sessions,
        tick: Rc::new(Cell::new(0)),
        upstream,
        admission: Rc::new(Admission::new(
            spec.id,
            spec.cores,
            config.max_connections_per_user,
        )),
    });
    let accept = Rc::new(Accept {
        id: spec.id,
        instance,
        session,
        ws_config,
        draining: Rc::new(Cell::new(false)),
        connect_limit: (config.connect_rate > 0.0).then(|| {
            let share = config.connect_rate / spec.cores as f64;
            RefCell::new(TokenBucket::new(share, share.max(1.0)))
        }),
        per_ip_limit: (config.per_ip_connect_rate > 0.0).then(|| {
            let share = config.per_ip_connect_rate / spec.cores as f64;
            RefCell::new(PerIp::new(share, share.max(1.0)))
        }),
        tls: spec.tls.clone(),
    });
    Core {
        id: spec.id,
        accept,
        router,
    }
}
