//! `ws-gateway`: parse the config, set up logging and signals, and run
//! [`server::run`] until a shutdown signal has drained it.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Registry, reload};
use ws_gateway::config::{self, Config, LoadError, LogFormat};
use ws_gateway::server;

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

/// SIGTERM/SIGINT start the drain; a second one closes every session at
/// once (each still sends its Disconnect), a third exits at once, and so
/// does the `--shutdown-timeout` deadline; SIGHUP re-reads the configuration and
/// applies what can change live: the log filter (the server reloads the TLS
/// certificate itself). Returns when the drain should start.
fn watch_signals(timeout: Duration, log: LogReload) -> anyhow::Result<impl Future<Output = ()>> {
    let mut signals =
        Signals::new([SIGTERM, SIGINT, SIGHUP]).context("installing signal handlers")?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let mut shutdowns = 0;
    let mut stop_tx = Some(stop_tx);
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                if signal == SIGHUP {
                    reload_log(&log);
                    continue;
                }
                match shutdowns {
                    0 => {}
                    1 => {
                        tracing::warn!(
                            "second shutdown signal: closing every session now (a third exits at once)"
                        );
                        server::Server::hurry();
                        shutdowns += 1;
                        continue;
                    }
                    _ => {
                        tracing::warn!("third shutdown signal: exiting now");
                        std::process::exit(1);
                    }
                }
                shutdowns += 1;
                tracing::info!(?timeout, "shutdown signal: draining");
                if let Some(tx) = stop_tx.take() {
                    let _ = tx.send(());
                }
                std::thread::spawn(move || {
                    std::thread::sleep(timeout + Duration::from_secs(1));
                    tracing::warn!("shutdown deadline passed: exiting");
                    std::process::exit(1);
                });
            }
        })?;
    Ok(async move {
        let _ = stop_rx.await;
    })
}

/// SIGHUP: the log filter from the configuration as it is now.
fn reload_log(log: &LogReload) {
    let result = config::load(std::env::args_os())
        .map_err(|e| e.to_string())
        .and_then(|c| EnvFilter::try_new(&c.log).map_err(|e| e.to_string()))
        .and_then(|f| log.reload(f).map_err(|e| e.to_string()));
    match result {
        Ok(()) => tracing::info!("SIGHUP: log filter reloaded"),
        Err(e) => tracing::warn!(error = %e, "SIGHUP: log filter not reloaded"),
    }
}

fn run(config: Config, log: LogReload) -> anyhow::Result<()> {
    let shutdown = watch_signals(config.shutdown_timeout, log)?;
    futures_lite::future::block_on(server::run(config, shutdown))
}

/// Starts (and stops) one executor as the shards would, to prove io_uring
/// and the memlock limit allow it.
fn check_io_uring(config: &Config) -> anyhow::Result<()> {
    // Serving starts with names that do not resolve yet (they may appear in
    // DNS later); a check is asked for now.
    for entry in &config.upstream {
        let addrs = ws_gateway::upstream::targets::resolve(entry)
            .with_context(|| format!("--upstream {entry} does not resolve"))?;
        anyhow::ensure!(
            !addrs.is_empty(),
            "--upstream {entry} resolves to no address"
        );
    }
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
