//! The one configuration struct: flags, then `WS_GATEWAY_*` environment
//! variables, then an optional TOML file (`--config`), then defaults, checked
//! once by [`Config::validate`] before any core starts.
//!
//! The file is applied by turning each of its keys into the flag of the same
//! name, for the options neither a flag nor the environment set, so a file
//! value goes through exactly the parser and checks a flag does, and an
//! unknown key is an error naming it (see [`load`]).
//!
//! The Go gateway's flag names (`--http_server_addr`, `--ws_api_endpoint`)
//! are kept as aliases so existing deploy scripts keep working.
//!
//! # Layout
//!
//! - this file: [`Config`], its enums, and [`Config::validate`].
//! - [`file`]: [`load`]: flags and environment, with the `--config` file layered in.
//! - [`parse`]: the value parsers clap's types lack (CPU lists, origins).

mod file;
mod parse;

pub use file::{LoadError, load};
pub use parse::{normalize_origin, online_cpus, parse_cpu_list};

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use serde::Serialize;

use crate::upstream::targets::{is_tls, well_formed};

/// How client WebSocket messages map to `Protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FrameFormat {
    /// Text frames carry the JSON envelope, binary frames a protobuf `Protocol`.
    Json,
    /// Each message passes verbatim as `Protocol{type: "text"|"binary"}`.
    Raw,
}

/// Whether connections may negotiate permessage-deflate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CompressionMode {
    /// Never: the offer is ignored (the default, as in Centrifugo and
    /// uWebSockets: compression costs CPU on every message).
    Off,
    /// When the client offers it.
    Deflate,
}

/// When a refused upgrade is answered in-band (101, then a Close frame)
/// rather than with an HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RefuseInBand {
    /// For requests with an `Origin` header: browsers.
    Auto,
    Always,
    Never,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// ws-gateway: thread-per-core WebSocket gateway to a gRPC backend (ws-api).
#[derive(Debug, Clone, Parser, Serialize)]
#[command(version, about)]
pub struct Config {
    /// TOML file of options (keys are the long flag names, `-` or `_`).
    /// Flags and environment variables override it.
    #[arg(long, env = "WS_GATEWAY_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,

    /// Print the effective configuration as TOML and exit.
    #[arg(long)]
    #[serde(skip)]
    pub print_config: bool,

    /// Validate the configuration and io_uring availability, then exit.
    #[arg(long)]
    #[serde(skip)]
    pub check: bool,

    /// Address the WebSocket listeners bind (one SO_REUSEPORT socket per
    /// core); a host name binds the first address it resolves to.
    #[arg(
        long,
        env = "WS_GATEWAY_LISTEN",
        default_value = "0.0.0.0:8080",
        alias = "http_server_addr",
        value_parser = parse::socket_addr
    )]
    pub listen: SocketAddr,

    /// ws-api nodes, comma-separated host:port (an http:// prefix is
    /// accepted). Each core streams to every node; a name may resolve to
    /// several nodes and is re-resolved every --upstream-resolve-interval.
    #[arg(
        long,
        env = "WS_GATEWAY_UPSTREAM",
        value_delimiter = ',',
        default_value = "127.0.0.1:8081",
        alias = "ws_api_endpoint"
    )]
    pub upstream: Vec<String>,

    /// How often DNS names in --upstream are re-resolved (0: only at start).
    #[arg(long, env = "WS_GATEWAY_UPSTREAM_RESOLVE_INTERVAL", default_value = "30s", value_parser = humantime::parse_duration)]
    #[serde(with = "humantime_serde")]
    pub upstream_resolve_interval: Duration,

    /// Admin listener: /metrics, /healthz, /readyz (a host name as for --listen).
    #[arg(
        long,
        env = "WS_GATEWAY_ADMIN_LISTEN",
        default_value = "127.0.0.1:9090",
        value_parser = parse::socket_addr
    )]
    pub admin_listen: SocketAddr,

    /// Number of cores to run on (the first N online CPUs). Default: all.
    #[arg(long, env = "WS_GATEWAY_CORES", conflicts_with = "cpus")]
    pub cores: Option<usize>,

    /// Exact CPUs to pin one executor each to, e.g. `0,2-3`.
    #[arg(long, env = "WS_GATEWAY_CPUS")]
    pub cpus: Option<String>,

    /// WebSocket upgrade paths.
    #[arg(long, env = "WS_GATEWAY_PATHS", value_delimiter = ',', default_values_t = ["/gateway/ws".to_string(), "/gateway/connect".to_string()])]
    pub paths: Vec<String>,

    /// Client message mapping: `json` (the Go gateway's envelope) or `raw`
    /// (messages pass verbatim as Protocol{type: "text"|"binary"}).
    #[arg(long, env = "WS_GATEWAY_FRAME_FORMAT", value_enum, default_value_t = FrameFormat::Json)]
    pub frame_format: FrameFormat,

    /// permessage-deflate (RFC 7692): `off`, or `deflate` for clients that
    /// offer it (browsers do), with no context takeover unless
    /// --compression-context-takeover, so an idle connection holds no
    /// compressor (docs/configuration.md).
    #[arg(long, env = "WS_GATEWAY_COMPRESSION", value_enum, default_value_t = CompressionMode::Off)]
    pub compression: CompressionMode,

    /// zlib level of compressed messages: 1 (fastest) to 9 (smallest).
    #[arg(long, env = "WS_GATEWAY_COMPRESSION_LEVEL", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=9))]
    pub compression_level: u32,

    /// Messages shorter than this go out uncompressed (units: 256, 1KiB).
    #[arg(long, env = "WS_GATEWAY_COMPRESSION_MIN_SIZE", default_value_t = 256, value_parser = parse::size)]
    pub compression_min_size: usize,

    /// Compress each message against the ones sent before it on its
    /// connection (server context takeover) when the client allows it:
    /// small, similar messages shrink far more, and each such connection
    /// keeps its last 2^--compression-window-bits bytes sent (from its
    /// first compressed message on). Clients always inflate from a fresh
    /// state (client_no_context_takeover).
    #[arg(long, env = "WS_GATEWAY_COMPRESSION_CONTEXT_TAKEOVER")]
    pub compression_context_takeover: bool,

    /// The largest compression window, as bits (9..=15: 512 B to 32 KiB);
    /// with context takeover, what each connection keeps.
    #[arg(long, env = "WS_GATEWAY_COMPRESSION_WINDOW_BITS", default_value_t = 15, value_parser = clap::value_parser!(u8).range(9..=15))]
    pub compression_window_bits: u8,

    /// For `--upstream https://…`: PEM certificates of the CA(s) that sign
    /// ws-api's certificate.
    #[arg(long, env = "WS_GATEWAY_UPSTREAM_CA")]
    pub upstream_ca: Option<PathBuf>,

    /// This gateway's PEM certificate chain for mTLS to ws-api (with
    /// --upstream-key).
    #[arg(long, env = "WS_GATEWAY_UPSTREAM_CERT", requires = "upstream_key")]
    pub upstream_cert: Option<PathBuf>,

    /// The private key of --upstream-cert.
    #[arg(long, env = "WS_GATEWAY_UPSTREAM_KEY", requires = "upstream_cert")]
    pub upstream_key: Option<PathBuf>,

    /// The name ws-api's certificate must be for. Default: the host of the
    /// first --upstream entry.
    #[arg(long, env = "WS_GATEWAY_UPSTREAM_TLS_NAME")]
    pub upstream_tls_name: Option<String>,

    /// File holding the secret ws-api's `--gateway-secret-file` wants on
    /// every ExchangeService call (sent as `authorization: Bearer …`; at
    /// least 16 bytes, a trailing newline ignored).
    #[arg(long, env = "WS_GATEWAY_UPSTREAM_SECRET_FILE")]
    pub upstream_secret_file: Option<PathBuf>,

    /// PEM certificate chain for wss:// (with --tls-key); re-read on SIGHUP.
    #[arg(long, env = "WS_GATEWAY_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key for wss:// (with --tls-cert); re-read on SIGHUP.
    #[arg(long, env = "WS_GATEWAY_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Browser origins allowed to connect (exact `scheme://host[:port]`, or `*`
    /// for any). Requests without an Origin header (native apps) are always
    /// allowed; others get 403 (cross-site WebSocket hijacking).
    #[arg(long, env = "WS_GATEWAY_ALLOWED_ORIGINS", value_delimiter = ',', default_values_t = ["*".to_string()])]
    pub allowed_origins: Vec<String>,

    /// Application subprotocols the gateway may select (e.g. `graphql-ws`):
    /// the first one the client offers is answered, also beside the
    /// `token` marker.
    #[arg(long, env = "WS_GATEWAY_SUBPROTOCOLS", value_delimiter = ',')]
    pub subprotocols: Vec<String>,

    /// Answer refusals (token, Origin, limits, ws-api down) in-band: complete
    /// the upgrade, then close with 4401, 4403, 4429 or 4503 and a reason
    /// that page code can read (browsers hide HTTP statuses behind close
    /// 1006). `auto`: for requests with an Origin header.
    #[arg(long, env = "WS_GATEWAY_REFUSE_IN_BAND", value_enum, default_value_t = RefuseInBand::Auto)]
    pub refuse_in_band: RefuseInBand,

    /// Identity sent to ws-api as `x-gateway-ip` / `Msg.server` (suffixed `#core`).
    /// Default: the listen address, or hostname:port when listening on all interfaces.
    #[arg(long, env = "WS_GATEWAY_ADVERTISE")]
    pub advertise: Option<String>,

    /// Sessions per core beyond which upgrades get HTTP 503.
    #[arg(
        long,
        env = "WS_GATEWAY_MAX_CONNECTIONS_PER_CORE",
        default_value_t = 50_000
    )]
    pub max_connections_per_core: usize,

    /// Largest client message (after reassembly of fragments), in bytes
    /// (units: 64KiB, 1MB).
    #[arg(long, env = "WS_GATEWAY_MAX_MESSAGE_SIZE", default_value_t = 64 * 1024, value_parser = parse::size)]
    pub max_message_size: usize,

    /// Largest single client frame, in bytes (units: 64KiB).
    #[arg(long, env = "WS_GATEWAY_MAX_FRAME_SIZE", default_value_t = 64 * 1024, value_parser = parse::size)]
    pub max_frame_size: usize,

    /// Time a client has to send a complete upgrade request.
    #[arg(long, env = "WS_GATEWAY_HANDSHAKE_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,

    /// Time a write to a client may take before the session is closed.
    #[arg(long, env = "WS_GATEWAY_WRITE_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    #[serde(with = "humantime_serde")]
    pub write_timeout: Duration,

    /// Time ws-api has to replay what a resuming client missed; the session
    /// holds newer messages back meanwhile, and past it the client gets
    /// `resume-failed` and the held messages (docs/delivery.md).
    #[arg(long, env = "WS_GATEWAY_RESUME_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    #[serde(with = "humantime_serde")]
    pub resume_timeout: Duration,

    /// On SIGTERM/SIGINT: how long draining may take before the process exits anyway.
    #[arg(long, env = "WS_GATEWAY_SHUTDOWN_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,

    /// On shutdown, spread the 1001 closes over this window (avoids a reconnect storm).
    #[arg(long, env = "WS_GATEWAY_DRAIN_WINDOW", default_value = "1s", value_parser = humantime::parse_duration)]
    #[serde(with = "humantime_serde")]
    pub drain_window: Duration,

    /// Server ping interval (browsers cannot ping); a client silent for a
    /// whole interval after a ping is closed. 0 disables.
    #[arg(long, env = "WS_GATEWAY_PING_INTERVAL", default_value = "30s", value_parser = humantime::parse_duration)]
    #[serde(with = "humantime_serde")]
    pub ping_interval: Duration,

    /// Also send an application-level `{"type":"PING"}` frame with each ping.
    #[arg(long, env = "WS_GATEWAY_APP_PING")]
    pub app_ping: bool,

    /// Sessions one user (uid) may have on this gateway; 0 = unlimited.
    #[arg(long, env = "WS_GATEWAY_MAX_CONNECTIONS_PER_USER", default_value_t = 0)]
    pub max_connections_per_user: u32,

    /// New connections per second this gateway accepts (split evenly over
    /// its cores); beyond it: 503 with Retry-After. 0 = unlimited.
    #[arg(long, env = "WS_GATEWAY_CONNECT_RATE", default_value_t = 0.0)]
    pub connect_rate: f64,

    /// New connections per second from one client IP (burst: one second's
    /// worth); beyond: 503 with Retry-After. Enforced per core on its share
    /// (SO_REUSEPORT spreads an IP's connections over cores). 0 = unlimited.
    #[arg(long, env = "WS_GATEWAY_PER_IP_CONNECT_RATE", default_value_t = 0.0)]
    pub per_ip_connect_rate: f64,

    /// Messages per second one client may send (burst of one second's worth);
    /// beyond it the session is closed with 1008. 0 = unlimited.
    #[arg(long, env = "WS_GATEWAY_MAX_INBOUND_RATE", default_value_t = 0.0)]
    pub max_inbound_rate: f64,

    /// Messages queued toward one client before it counts as a slow consumer.
    #[arg(long, env = "WS_GATEWAY_SEND_QUEUE", default_value_t = 1024)]
    pub send_queue: usize,

    /// Bytes of client messages a core buffers for ws-api (also across an outage).
    #[arg(long, env = "WS_GATEWAY_UPSTREAM_BUFFER", default_value_t = 4 << 20, value_parser = parse::size)]
    pub upstream_buffer: usize,

    /// Under load, each core writes to ws-api at most once per this interval
    /// (or sooner once 64 KiB are waiting), so one write and one wake-up of
    /// ws-api carry many messages. The first message after a quiet interval
    /// goes at once. 0 writes whenever anything is buffered.
    #[arg(long, env = "WS_GATEWAY_UPSTREAM_FLUSH_INTERVAL", default_value = "200us", value_parser = humantime::parse_duration)]
    #[serde(with = "humantime_serde")]
    pub upstream_flush_interval: Duration,

    /// Under load, a core that has nothing to run sleeps until 64 completions
    /// are pending or this much time has passed, instead of waking for each
    /// socket event: fewer wake-ups and syscalls per message, at the price of
    /// up to this much added latency (timers still fire on time). Batching
    /// starts only while events come less than four of these apart, so a
    /// lone message on a quiet core is not delayed. 0 wakes for every event.
    #[arg(long, env = "WS_GATEWAY_BATCH_WAIT", default_value = "250us", value_parser = humantime::parse_duration)]
    #[serde(with = "humantime_serde")]
    pub batch_wait: Duration,

    /// Timeout of unary calls to ws-api (Connect, Disconnect, KeepAlive).
    #[arg(long, env = "WS_GATEWAY_RPC_TIMEOUT", default_value = "3s", value_parser = humantime::parse_duration)]
    #[serde(with = "humantime_serde")]
    pub rpc_timeout: Duration,

    /// HTTP/2 ping interval on each core's connection to ws-api; a ping not
    /// answered within --rpc-timeout tears the connection down (a hung
    /// ws-api). 0 disables.
    #[arg(long, env = "WS_GATEWAY_UPSTREAM_KEEPALIVE", default_value = "10s", value_parser = humantime::parse_duration)]
    #[serde(with = "humantime_serde")]
    pub upstream_keepalive: Duration,

    /// Sessions per second each core re-registers with a ws-api node whose
    /// presence lost them (its stream came back, or it sent Reassert); 0
    /// unpaced.
    #[arg(long, env = "WS_GATEWAY_REASSERT_RATE", default_value_t = 2000.0)]
    pub reassert_rate: f64,

    /// KeepAlive calls each core has in flight at once while it re-registers
    /// sessions with a ws-api node.
    #[arg(long, env = "WS_GATEWAY_REASSERT_IN_FLIGHT", default_value_t = 32)]
    pub reassert_in_flight: usize,

    /// First delay before reconnecting to ws-api (doubles, with jitter).
    #[arg(long, env = "WS_GATEWAY_RECONNECT_MIN", default_value = "100ms", value_parser = humantime::parse_duration)]
    #[serde(with = "humantime_serde")]
    pub reconnect_min: Duration,

    /// Largest delay between reconnect attempts.
    #[arg(long, env = "WS_GATEWAY_RECONNECT_MAX", default_value = "5s", value_parser = humantime::parse_duration)]
    #[serde(with = "humantime_serde")]
    pub reconnect_max: Duration,

    /// io_uring registered memory per core, in bytes (counts against RLIMIT_MEMLOCK
    /// for non-root users and in containers).
    #[arg(long, env = "WS_GATEWAY_IO_MEMORY", default_value_t = 1 << 20, value_parser = parse::size)]
    pub io_memory: usize,

    /// Log filter (tracing EnvFilter syntax), e.g. `info` or `ws_gateway=debug`.
    #[arg(long, env = "WS_GATEWAY_LOG", default_value = "info")]
    pub log: String,

    /// Log format.
    #[arg(long, env = "WS_GATEWAY_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// A configuration value that cannot work, with the key that holds it.
#[derive(Debug, thiserror::Error)]
#[error("invalid --{key}: {reason}")]
pub struct ConfigError {
    pub key: &'static str,
    pub reason: String,
}

fn invalid(key: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        key,
        reason: reason.into(),
    }
}

impl Config {
    /// The effective configuration, as a TOML file `--config` would accept.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }

    /// Checks what clap's types cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.upstream.is_empty() {
            return Err(invalid("upstream", "at least one ws-api address is needed"));
        }
        if let Some(bad) = self.upstream.iter().find(|e| !well_formed(e)) {
            return Err(invalid("upstream", format!("{bad:?} is not host:port")));
        }
        let tls = self.upstream.iter().filter(|e| is_tls(e)).count();
        if tls != 0 && tls != self.upstream.len() {
            return Err(invalid(
                "upstream",
                "either every entry is https:// or none",
            ));
        }
        if tls != 0 && self.upstream_ca.is_none() {
            return Err(invalid(
                "upstream-ca",
                "https:// upstreams need the CA that signs ws-api's certificate",
            ));
        }
        if tls == 0 && (self.upstream_ca.is_some() || self.upstream_cert.is_some()) {
            return Err(invalid(
                "upstream-ca",
                "TLS settings for ws-api need https:// upstreams",
            ));
        }
        if self.paths.is_empty() || self.paths.iter().any(|p| !p.starts_with('/')) {
            return Err(invalid("paths", "every path must start with '/'"));
        }
        if let Some(bad) = self
            .allowed_origins
            .iter()
            .find(|o| *o != "*" && normalize_origin(o).is_none())
        {
            return Err(invalid(
                "allowed-origins",
                format!("{bad:?} is not scheme://host[:port] or *"),
            ));
        }
        if let Some(bad) = self
            .subprotocols
            .iter()
            .find(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_graphic() && b != b','))
        {
            return Err(invalid(
                "subprotocols",
                format!("{bad:?} is not a subprotocol name"),
            ));
        }
        for (key, v) in [
            ("max-connections-per-core", self.max_connections_per_core),
            ("max-message-size", self.max_message_size),
            ("max-frame-size", self.max_frame_size),
            ("send-queue", self.send_queue),
            ("upstream-buffer", self.upstream_buffer),
            ("reassert-in-flight", self.reassert_in_flight),
        ] {
            if v == 0 {
                return Err(invalid(key, "must be greater than 0"));
            }
        }
        if self.resume_timeout.is_zero() {
            return Err(invalid("resume-timeout", "must be greater than 0"));
        }
        if self.max_frame_size > self.max_message_size {
            return Err(invalid(
                "max-frame-size",
                "must not exceed --max-message-size",
            ));
        }
        // Every message waits up to this long under load: keep it a batching
        // window, not a delay line.
        if self.batch_wait > Duration::from_millis(10) {
            return Err(invalid("batch-wait", "must be at most 10ms"));
        }
        if self.upstream_flush_interval > Duration::from_millis(100) {
            return Err(invalid("upstream-flush-interval", "must be at most 100ms"));
        }
        if self.reconnect_min.is_zero() || self.reconnect_min > self.reconnect_max {
            return Err(invalid(
                "reconnect-min",
                "must be > 0 and <= --reconnect-max",
            ));
        }
        for (key, v) in [
            ("connect-rate", self.connect_rate),
            ("max-inbound-rate", self.max_inbound_rate),
            ("per-ip-connect-rate", self.per_ip_connect_rate),
            ("reassert-rate", self.reassert_rate),
        ] {
            if !(v >= 0.0 && v.is_finite()) {
                return Err(invalid(key, "must be a finite number >= 0"));
            }
        }
        if self.drain_window >= self.shutdown_timeout {
            return Err(invalid(
                "drain-window",
                "must be shorter than --shutdown-timeout",
            ));
        }
        if self.cores == Some(0) {
            return Err(invalid("cores", "must be at least 1"));
        }
        self.cpu_list()?;
        Ok(())
    }

    /// CPUs to pin executors to, in order: `--cpus`, else the first `--cores`
    /// online CPUs, else all online CPUs.
    pub fn cpu_list(&self) -> Result<Vec<usize>, ConfigError> {
        let online = online_cpus();
        let list = match (&self.cpus, self.cores) {
            (Some(spec), _) => parse_cpu_list(spec).map_err(|r| invalid("cpus", r))?,
            (None, Some(n)) if n > online.len() => {
                return Err(invalid(
                    "cores",
                    format!("{n} requested, {} online", online.len()),
                ));
            }
            (None, Some(n)) => online[..n].to_vec(),
            (None, None) => online.clone(),
        };
        if let Some(bad) = list.iter().find(|c| !online.contains(c)) {
            return Err(invalid("cpus", format!("CPU {bad} is not online")));
        }
        Ok(list)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_flag_names_are_aliases() {
        let c = Config::try_parse_from([
            "ws-gateway",
            "--http_server_addr",
            "127.0.0.1:9",
            "--ws_api_endpoint",
            "127.0.0.1:10",
        ])
        .unwrap();
        assert_eq!(c.listen.port(), 9);
        assert_eq!(c.upstream, ["127.0.0.1:10"]);
        c.validate().unwrap();
    }

    #[test]
    fn rejects_bad_values_with_their_key() {
        let c = Config::try_parse_from(["ws-gateway", "--send-queue", "0"]).unwrap();
        assert_eq!(c.validate().unwrap_err().key, "send-queue");
        let c = Config::try_parse_from(["ws-gateway", "--upstream", "nowhere"]).unwrap();
        assert_eq!(c.validate().unwrap_err().key, "upstream");
        let c = Config::try_parse_from(["ws-gateway", "--upstream", "a:1,b:x"]).unwrap();
        assert_eq!(c.validate().unwrap_err().key, "upstream");
        let c = Config::try_parse_from(["ws-gateway", "--upstream", "a:1,127.0.0.1:2"]).unwrap();
        c.validate().unwrap();
        let c = Config::try_parse_from(["ws-gateway", "--upstream-flush-interval", "1s"]).unwrap();
        assert_eq!(c.validate().unwrap_err().key, "upstream-flush-interval");
    }
}
