//! `ws-gateway`: parse the config, start one pinned shard per CPU, print
//! where clients connect, and run until the shards stop.
#![deny(unsafe_code)]

use std::net::TcpListener;
use std::os::unix::net::UnixStream;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use glommio::channels::channel_mesh::MeshBuilder;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Registry, reload};
use ws_gateway::admin::{self, AdminState};
use ws_gateway::config::{self, Config, LoadError, LogFormat};
use ws_gateway::metrics::Counters;
use ws_gateway::shard::{self, ShardSpec};
use ws_gateway::tls::Tls;
use ws_gateway::upstream::targets::Targets;

/// Messages in flight between two cores before the sender sees "full".
const MESH_CAPACITY: usize = 4096;

fn main() -> ExitCode {
    let config = match config::load(std::env::args_os()) {
        Ok(c) => c,
        Err(LoadError::Cli(e)) => e.exit(),
        Err(e) => {
            eprintln!("ws-gateway: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = config.validate() {
        eprintln!("ws-gateway: {e}");
        return ExitCode::from(2);
    }
    if config.print_config {
        print!("{}", config.to_toml());
        return ExitCode::SUCCESS;
    }
    if config.check {
        return match check_io_uring(&config) {
            Ok(()) => {
                println!("ws-gateway: configuration and io_uring OK");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("ws-gateway: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let log_reload = init_tracing(&config);
    abort_on_panic();
    match run(config, log_reload) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ws-gateway: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A panic on any core aborts the process with a message: a half-dead core
/// that still accepts connections would be worse than a restart.
fn abort_on_panic() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        tracing::error!(%info, "panic: aborting");
        std::process::abort();
    }));
}

type LogReload = reload::Handle<EnvFilter, Registry>;

/// Logs go to stderr; the filter can be swapped on SIGHUP.
fn init_tracing(config: &Config) -> LogReload {
    let filter = EnvFilter::try_new(&config.log).unwrap_or_else(|_| EnvFilter::new("info"));
    let (filter, handle) = reload::Layer::new(filter);
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let registry = tracing_subscriber::registry().with(filter);
    match config.log_format {
        LogFormat::Text => registry.with(fmt).init(),
        LogFormat::Json => registry.with(fmt.json()).init(),
    }
    handle
}

/// SIGTERM/SIGINT start the drain (a second one exits at once, and so does
/// the `--shutdown-timeout` deadline); SIGHUP re-reads the configuration and
/// applies what can change live: the log filter.
fn watch_signals(
    draining: Arc<AtomicBool>,
    mut stop_senders: Vec<UnixStream>,
    timeout: Duration,
    reload: Reload,
) -> anyhow::Result<()> {
    let mut signals =
        Signals::new([SIGTERM, SIGINT, SIGHUP]).context("installing signal handlers")?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                if signal == SIGHUP {
                    reload.apply();
                    continue;
                }
                if draining.swap(true, Ordering::Relaxed) {
                    tracing::warn!("second shutdown signal: exiting now");
                    std::process::exit(1);
                }
                tracing::info!(?timeout, "shutdown signal: draining");
                // Closing our ends wakes every core's stop socket.
                stop_senders.clear();
                std::thread::spawn(move || {
                    std::thread::sleep(timeout + Duration::from_secs(1));
                    tracing::warn!("shutdown deadline passed: exiting");
                    std::process::exit(1);
                });
            }
        })?;
    Ok(())
}

/// What SIGHUP changes live: the log filter and the TLS certificate.
struct Reload {
    log: LogReload,
    tls: Option<Arc<Tls>>,
}

impl Reload {
    fn apply(&self) {
        let result = config::load(std::env::args_os())
            .map_err(|e| e.to_string())
            .and_then(|c| EnvFilter::try_new(&c.log).map_err(|e| e.to_string()))
            .and_then(|f| self.log.reload(f).map_err(|e| e.to_string()));
        match result {
            Ok(()) => tracing::info!("SIGHUP: log filter reloaded"),
            Err(e) => tracing::warn!(error = %e, "SIGHUP: log filter not reloaded"),
        }
        if let Some(tls) = &self.tls {
            match tls.reload() {
                Ok(()) => tracing::info!("SIGHUP: TLS certificate reloaded"),
                Err(e) => {
                    tracing::warn!(error = %e, "SIGHUP: TLS certificate not reloaded; keeping the old one")
                }
            }
        }
    }
}

fn run(config: Config, log_reload: LogReload) -> anyhow::Result<()> {
    raise_nofile_limit();
    let cpus = config.cpu_list()?;
    // A name that does not resolve yet is retried by the resolver thread.
    let targets = Targets::new(&config.upstream);
    targets
        .spawn_refresh(config.upstream_resolve_interval)
        .context("starting the resolver thread")?;
    let upstream = config.upstream.join(",");
    if config.listen.port() != 0 {
        // The cores' SO_REUSEPORT would let a second gateway silently share
        // the port. This probe sets SO_REUSEADDR (Rust's std does) but not
        // SO_REUSEPORT: TIME_WAIT sockets of a previous run do not stop it,
        // a live listener on the port does.
        TcpListener::bind(config.listen).map_err(|e| match e.kind() {
            std::io::ErrorKind::AddrInUse => anyhow::anyhow!(
                "cannot listen on {}: {e}; another process (a ws-gateway still running?) listens on it",
                config.listen
            ),
            _ => anyhow::anyhow!("cannot listen on {}: {e}", config.listen),
        })?;
    }
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
    let counters: Vec<Arc<Counters>> = cpus.iter().map(|_| Arc::default()).collect();
    let draining = Arc::new(AtomicBool::new(false));
    let mut stop_senders = Vec::with_capacity(cpus.len());
    let mut listen = config.listen;
    let mut handles = Vec::with_capacity(cpus.len());
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
            cores: cpus.len(),
            counters: Arc::clone(&counters[id]),
            stop: {
                let (tx, rx) = UnixStream::pair().context("creating a shutdown socket")?;
                stop_senders.push(tx);
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
        handles.push(handle);
    }
    let reload = Reload {
        log: log_reload,
        tls: tls.clone(),
    };
    watch_signals(
        Arc::clone(&draining),
        stop_senders,
        config.shutdown_timeout,
        reload,
    )?;
    let admin = AdminState {
        cores: counters,
        draining,
    };
    let admin_addr = admin::spawn(config.admin_listen, admin)
        .with_context(|| format!("cannot listen on --admin-listen {}", config.admin_listen))?;
    println!("admin listening on http://{admin_addr} (/metrics /healthz /readyz)");
    let path = config.paths.first().map(String::as_str).unwrap_or("/");
    let scheme = if tls.is_some() { "wss" } else { "ws" };
    println!(
        "ws-gateway listening on {scheme}://{listen}{path} ({} cores on CPUs {cpus:?}, upstream {upstream})",
        cpus.len()
    );
    for h in handles {
        h.join()
            .map_err(|e| anyhow::anyhow!("a core stopped: {e}"))?;
    }
    Ok(())
}

/// Starts (and stops) one executor as the shards would, to prove io_uring
/// and the memlock limit allow it.
fn check_io_uring(config: &Config) -> anyhow::Result<()> {
    let cpu = *config.cpu_list()?.first().context("no CPU to run on")?;
    glommio::LocalExecutorBuilder::new(glommio::Placement::Fixed(cpu))
        .io_memory(config.io_memory)
        .spawn(|| async {})
        .and_then(|h| h.join())
        .map_err(|e| {
            anyhow::anyhow!(
                "io_uring executor failed: {e} (needs io_uring syscalls allowed by seccomp and \
                 RLIMIT_MEMLOCK >= --io-memory per core: raise `ulimit -l` or lower --io-memory)"
            )
        })
}

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
