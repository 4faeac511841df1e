//! The whole gateway in one call: [`run`] starts one pinned shard per CPU,
//! the admin listener and the resolver, serves until `shutdown` resolves,
//! then drains every core and waits for them. `main` only parses the
//! configuration, sets up logging and signals, and calls it; a test can call
//! it (or [`Server::start`]) in-process.

use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use glommio::ExecutorJoinHandle;
use glommio::channels::channel_mesh::MeshBuilder;

use crate::admin::{self, AdminState};
use crate::config::Config;
use crate::edge::tls::Tls;
use crate::metrics::Counters;
use crate::shard::{self, ShardSpec};
use crate::upstream::grpc::Credentials;
use crate::upstream::grpc::tls::UpstreamTls;
use crate::upstream::targets::Targets;

/// Messages in flight between two cores before the sender sees "full".
const MESH_CAPACITY: usize = 4096;

/// Serves until `shutdown` resolves, then drains (`--drain-window`,
/// `--shutdown-timeout`) and returns once every core has stopped. Prints
/// where clients and the admin endpoints are reached. With TLS, SIGHUP
/// reloads the certificate.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let mut server = Server::start(&config)?;
    if let Some(tls) = server.tls.clone() {
        reload_tls_on_sighup(tls)?;
    }
    println!(
        "admin listening on http://{} (/metrics /healthz /readyz)",
        server.admin
    );
    let path = config.paths.first().map(String::as_str).unwrap_or("/");
    let scheme = if server.tls.is_some() { "wss" } else { "ws" };
    println!(
        "ws-gateway listening on {scheme}://{}{path} ({} cores on CPUs {:?}, upstream {})",
        server.listen,
        server.cpus.len(),
        server.cpus,
        config.upstream.join(","),
    );
    shutdown.await;
    server.shutdown();
    server.join()
}

/// A running gateway: its cores, its admin listener, and the sockets that
/// tell each core to drain.
pub struct Server {
    listen: SocketAddr,
    admin: SocketAddr,
    cpus: Vec<usize>,
    cores: Vec<ExecutorJoinHandle<()>>,
    /// Closing these wakes every core's stop socket: the cores drain.
    stop: Vec<UnixStream>,
    /// Set once draining began: `/readyz` answers 503.
    draining: Arc<AtomicBool>,
    tls: Option<Arc<Tls>>,
}

impl Server {
    /// Starts every core and the admin listener; returns once all listen.
    pub fn start(config: &Config) -> anyhow::Result<Server> {
        raise_nofile_limit();
        let cpus = config.cpu_list()?;
        // A name that does not resolve yet is retried by the resolver thread.
        let targets = Targets::new(&config.upstream);
        targets
            .spawn_refresh(config.upstream_resolve_interval)
            .context("starting the resolver thread")?;
        probe_port(config.listen)?;
        let epoch_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_millis() as u64;
        let mesh = MeshBuilder::full(cpus.len(), MESH_CAPACITY);
        let admission_mesh = MeshBuilder::full(cpus.len(), MESH_CAPACITY);
        let tls = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => {
                Some(Tls::load(cert, key).context("loading --tls-cert/--tls-key")?)
            }
            _ => None,
        };
        let upstream_credentials = Credentials {
            tls: upstream_tls(config)?,
            secret: upstream_secret(config)?,
        };
        let counters: Vec<Arc<Counters>> = cpus.iter().map(|_| Arc::default()).collect();
        let draining = Arc::new(AtomicBool::new(false));
        let mut stop = Vec::with_capacity(cpus.len());
        let mut listen = config.listen;
        let mut cores = Vec::with_capacity(cpus.len());
        for (id, &cpu) in cpus.iter().enumerate() {
            let (bound_tx, bound_rx) = mpsc::channel();
            let spec = ShardSpec {
                id,
                cpu,
                config: config.clone(),
                listen,
                targets: Arc::clone(&targets),
                epoch_ms,
                mesh: mesh.clone(),
                admission_mesh: admission_mesh.clone(),
                tls: tls.clone(),
                upstream_credentials: upstream_credentials.clone(),
                cores: cpus.len(),
                counters: Arc::clone(&counters[id]),
                stop: {
                    let (tx, rx) = UnixStream::pair().context("creating a shutdown socket")?;
                    stop.push(tx);
                    rx
                },
                bound: bound_tx,
            };
            let handle = shard::spawn(spec).map_err(|e| {
                anyhow::anyhow!(
                    "cannot start core {id} on CPU {cpu}: {e} (io_uring needs RLIMIT_MEMLOCK >= --io-memory \
                     per core for non-root users and in containers: raise `ulimit -l` or lower --io-memory)"
                )
            })?;
            match bound_rx.recv() {
                Ok(Ok(addr)) => listen = addr,
                Ok(Err(e)) => bail!(e),
                Err(_) => bail!(
                    "core {id} on CPU {cpu} failed to start (io_uring setup? RLIMIT_MEMLOCK must allow \
                     --io-memory per core for non-root users and in containers)"
                ),
            }
            cores.push(handle);
        }
        let admin_state = AdminState {
            cores: counters,
            draining: Arc::clone(&draining),
        };
        let admin = admin::spawn(config.admin_listen, admin_state)
            .with_context(|| format!("cannot listen on --admin-listen {}", config.admin_listen))?;
        Ok(Server {
            listen,
            admin,
            cpus,
            cores,
            stop,
            draining,
            tls,
        })
    }

    /// Where clients connect (the port the cores bound, with `--listen` port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listen
    }

    /// Where `/metrics`, `/healthz` and `/readyz` are served.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
    }

    /// Begins the drain: `/readyz` fails, every core stops accepting and
    /// closes its sessions. Idempotent.
    pub fn shutdown(&mut self) {
        self.draining.store(true, Ordering::Relaxed);
        // Closing our ends wakes every core's stop socket.
        self.stop.clear();
    }

    /// A second shutdown signal: every core closes its remaining sessions
    /// at once instead of over `--drain-window`; each still sends its
    /// `Disconnect` before `--shutdown-timeout`.
    pub fn hurry() {
        crate::shard::drain::hurry();
    }

    /// Waits until every core has stopped (after [`Server::shutdown`], once drained).
    pub fn join(self) -> anyhow::Result<()> {
        for h in self.cores {
            h.join()
                .map_err(|e| anyhow::anyhow!("a core stopped: {e}"))?;
        }
        Ok(())
    }
}

/// SIGHUP swaps the TLS certificate (a bad one keeps the old).
fn reload_tls_on_sighup(tls: Arc<Tls>) -> anyhow::Result<()> {
    use signal_hook::consts::SIGHUP;
    use signal_hook::iterator::Signals;
    let mut signals = Signals::new([SIGHUP]).context("installing the SIGHUP handler")?;
    std::thread::Builder::new()
        .name("tls-reload".into())
        .spawn(move || {
            for _ in signals.forever() {
                match tls.reload() {
                    Ok(()) => tracing::info!("SIGHUP: TLS certificate reloaded"),
                    Err(e) => {
                        tracing::warn!(error = %e, "SIGHUP: TLS certificate not reloaded; keeping the old one")
                    }
                }
            }
        })?;
    Ok(())
}

/// Fails when a live listener holds `listen`. The cores' SO_REUSEPORT
/// would let a second gateway silently share the port; this probe sets
/// SO_REUSEADDR (Rust's std does) but not SO_REUSEPORT, so TIME_WAIT
/// sockets of a previous run do not stop it and a live listener does.
///
/// A gateway killed a moment ago still holds the port for a few
/// milliseconds after it is reaped (the kernel releases an io_uring's
/// sockets after the process: 18-24 ms measured), so a busy port is tried
/// again for up to [`PORT_WAIT`] before it counts as taken.
fn probe_port(listen: SocketAddr) -> anyhow::Result<()> {
    if listen.port() == 0 {
        return Ok(());
    }
    let until = Instant::now() + PORT_WAIT;
    loop {
        match TcpListener::bind(listen) {
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && Instant::now() < until => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => anyhow::bail!(
                "cannot listen on {listen}: {e}; another process (a ws-gateway still running?) listens on it"
            ),
            Err(e) => anyhow::bail!("cannot listen on {listen}: {e}"),
        }
    }
}

/// How long a busy `--listen` port is retried at startup.
const PORT_WAIT: Duration = Duration::from_secs(1);

/// Raises the soft open-files limit to the hard one: each client is a descriptor.
fn raise_nofile_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut lim = getrlimit(Resource::Nofile);
    let before = lim.current;
    lim.current = lim.maximum;
    let ok = setrlimit(Resource::Nofile, lim).is_ok();
    tracing::info!(
        soft_before = ?before,
        soft = ?if ok { lim.maximum } else { before },
        hard = ?lim.maximum,
        "open files limit"
    );
}

/// `--upstream https://…`: the TLS settings every core's connections use.
fn upstream_tls(config: &Config) -> anyhow::Result<Option<UpstreamTls>> {
    let Some(ca) = &config.upstream_ca else {
        return Ok(None);
    };
    let name = match &config.upstream_tls_name {
        Some(name) => name.clone(),
        None => crate::upstream::targets::host(&config.upstream[0]).to_owned(),
    };
    let client = config
        .upstream_cert
        .as_deref()
        .zip(config.upstream_key.as_deref());
    let tls = UpstreamTls::load(ca, client, &name)
        .context("loading --upstream-ca/--upstream-cert/--upstream-key")?;
    Ok(Some(tls))
}

/// `--upstream-secret-file` as the `authorization` value every call to
/// ws-api carries.
fn upstream_secret(config: &Config) -> anyhow::Result<Option<http::HeaderValue>> {
    let Some(path) = &config.upstream_secret_file else {
        return Ok(None);
    };
    let what = || format!("--upstream-secret-file {}", path.display());
    let mut secret = std::fs::read_to_string(path).with_context(what)?;
    secret.truncate(secret.trim_end_matches(['\r', '\n']).len());
    anyhow::ensure!(
        secret.len() >= crate::proto::MIN_GATEWAY_SECRET,
        "{}: the secret is {} bytes, at least {} are needed",
        what(),
        secret.len(),
        crate::proto::MIN_GATEWAY_SECRET
    );
    let mut value = http::HeaderValue::try_from(format!("Bearer {secret}"))
        .with_context(|| format!("{}: the secret must be printable ASCII", what()))?;
    value.set_sensitive(true);
    Ok(Some(value))
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::Server;
    use crate::config;

    /// A whole gateway in-process: it listens, `/readyz` fails without
    /// ws-api, a client's upgrade is refused with 503, and it drains and stops.
    /// One core on ephemeral ports, its ws-api a port nothing listens on.
    fn config(extra: &[&str]) -> config::Config {
        let base = [
            "ws-gateway",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--upstream",
            "127.0.0.1:9",
            "--cores",
            "1",
        ];
        let config = config::load(base.iter().chain(extra).copied()).unwrap();
        config.validate().unwrap();
        config
    }

    #[test]
    fn starts_serves_and_drains_in_process() {
        let config = config(&["--shutdown-timeout", "2s"]);
        let mut server = Server::start(&config).unwrap();
        let get = |addr, request: &str| {
            let mut tcp = std::net::TcpStream::connect(addr).unwrap();
            tcp.write_all(request.as_bytes()).unwrap();
            let mut reply = String::new();
            let _ = tcp.read_to_string(&mut reply);
            reply
        };
        let ready = get(
            server.admin_addr(),
            "GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        assert!(ready.starts_with("HTTP/1.1 503"), "{ready}");
        let upgrade = get(
            server.local_addr(),
            "GET /gateway/ws?token=t HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        );
        assert!(upgrade.starts_with("HTTP/1.1 503"), "{upgrade}");
        server.shutdown();
        server.join().unwrap();
    }

    #[test]
    fn run_returns_once_shutdown_resolves() {
        let config = config(&[]);
        futures_lite::future::block_on(super::run(config, async {})).unwrap();
    }
}
