//! `ws-gateway`: parse the config, start one pinned shard per CPU, print
//! where clients connect, and run until the shards stop.

use std::net::TcpListener;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, mpsc};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use glommio::channels::channel_mesh::MeshBuilder;
use tracing_subscriber::EnvFilter;
use ws_gateway::admin::{self, AdminState};
use ws_gateway::config::{self, Config, LoadError, LogFormat};
use ws_gateway::metrics::Counters;
use ws_gateway::shard::{self, ShardSpec};

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
    init_tracing(&config);
    match run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ws-gateway: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(config: &Config) {
    let filter = EnvFilter::try_new(&config.log).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn run(config: Config) -> anyhow::Result<()> {
    raise_nofile_limit();
    let cpus = config.cpu_list()?;
    let upstream = config.upstream_addr()?;
    if config.listen.port() != 0 {
        // SO_REUSEPORT would let a second gateway silently share the port.
        TcpListener::bind(config.listen)
            .with_context(|| format!("cannot listen on {}", config.listen))?;
    }
    let epoch_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis() as u64;
    let mesh = MeshBuilder::full(cpus.len(), MESH_CAPACITY);
    let counters: Vec<Arc<Counters>> = cpus.iter().map(|_| Arc::default()).collect();
    let mut listen = config.listen;
    let mut handles = Vec::with_capacity(cpus.len());
    for (id, &cpu) in cpus.iter().enumerate() {
        let (bound_tx, bound_rx) = mpsc::channel();
        let spec = ShardSpec {
            id,
            cpu,
            config: config.clone(),
            listen,
            upstream,
            epoch_ms,
            mesh: mesh.clone(),
            counters: Arc::clone(&counters[id]),
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
    let admin = AdminState {
        cores: counters,
        draining: Arc::new(AtomicBool::new(false)),
    };
    let admin_addr = admin::spawn(config.admin_listen, admin)
        .with_context(|| format!("cannot listen on --admin-listen {}", config.admin_listen))?;
    println!("admin listening on http://{admin_addr} (/metrics /healthz /readyz)");
    let path = config.paths.first().map(String::as_str).unwrap_or("/");
    println!(
        "ws-gateway listening on ws://{listen}{path} ({} cores on CPUs {cpus:?}, upstream {upstream})",
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
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on a stack-allocated rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return;
        }
        let before = lim.rlim_cur;
        lim.rlim_cur = lim.rlim_max;
        let ok = libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0;
        tracing::info!(
            soft_before = before,
            soft = if ok { lim.rlim_max } else { before },
            hard = lim.rlim_max,
            "open files limit"
        );
    }
}
