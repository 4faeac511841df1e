//! `ws-api`: the reference backend. Prints `ws-api listening on <addr>` once
//! it accepts connections.

#![forbid(unsafe_code)]

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tracing::{info, warn};
use ws_api::Handler;
use ws_api::auth::gateways::GatewaySecret;
use ws_api::auth::proxy::ConnectProxy;
use ws_api::auth::{Auth, jwt};
use ws_api::biz::Biz;
use ws_api::cli::Call;
use ws_api::delivery::{Delivery, Redelivery};
use ws_api::history::{
    DedupLimits, Evicted, History, KeyLimits, MemoryHistory, RedisHistory, Retention,
};
use ws_api::presence::{Presence, RedisPresence};
use ws_api::proto::wsapi::biz_msg_service_server::BizMsgServiceServer;
use ws_api::proto::wsapi::exchange_service_server::ExchangeServiceServer;
use ws_api::service::{Backend, Exchange};
use ws_api::{store_watch, sweeper};

/// ws-api: reference gRPC backend for ws-gateway. Without a subcommand it
/// serves; with one it calls a running ws-api's BizMsgService and prints
/// the answer.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    #[command(subcommand)]
    command: Option<Sub>,
    /// For the subcommands: the ws-api they call.
    #[arg(
        long,
        env = "WS_API_ADDR",
        default_value = "http://127.0.0.1:8081",
        global = true
    )]
    api: String,
    /// gRPC listen address.
    #[arg(
        long,
        env = "WS_API_LISTEN",
        default_value = "127.0.0.1:8081",
        alias = "grpc_server_address"
    )]
    listen: SocketAddr,
    /// What to do with each upstream message.
    #[arg(long, env = "WS_API_HANDLER", value_enum, default_value_t = Handler::Echo)]
    handler: Handler,
    /// Largest gRPC message accepted or sent, in bytes.
    #[arg(long, env = "WS_API_MAX_MESSAGE_SIZE", default_value_t = 4 << 20)]
    max_message_size: usize,
    /// Runtime worker threads (default: one per CPU).
    #[arg(long, env = "WS_API_THREADS")]
    threads: Option<usize>,
    /// Keep presence in Redis (`redis://host:port[/db]`), shared by every
    /// ws-api node, instead of in memory.
    #[arg(long, env = "WS_API_REDIS")]
    redis: Option<String>,
    /// Expiry of a user's presence key, refreshed on Connect and KeepAlive.
    #[arg(long, env = "WS_API_PRESENCE_TTL", default_value = "60m", value_parser = humantime::parse_duration)]
    presence_ttl: Duration,
    /// A gateway core whose stream no node has held for this long has its
    /// presence purged, in memory or in Redis (within about twice this),
    /// and what this node kept for it to write again is dropped.
    #[arg(long, env = "WS_API_SERVER_TTL", default_value = "30s", value_parser = humantime::parse_duration)]
    server_ttl: Duration,
    /// `MAXLEN ~` of each Redis Stream written by `--handler redis-stream`.
    #[arg(long, env = "WS_API_STREAM_MAXLEN", default_value_t = 100_000)]
    stream_maxlen: usize,
    /// Send `ExchangeMsg` response headers only with the first downstream
    /// message, like grpc-go and gRPC C-core servers (tonic sends them at
    /// once). For tests of the gateway against both behaviours.
    #[arg(long, env = "WS_API_LAZY_HEADERS")]
    lazy_headers: bool,
    /// Messages kept per user for resume (docs/delivery.md); 0 keeps no
    /// history and gives pushes no position.
    #[arg(long, env = "WS_API_HISTORY_SIZE", default_value_t = 100)]
    history_size: usize,
    /// How long a pushed message is kept for resume.
    #[arg(long, env = "WS_API_HISTORY_TTL", default_value = "5m", value_parser = humantime::parse_duration)]
    history_ttl: Duration,
    /// A message a user that acknowledges leaves unacknowledged this long is
    /// sent again.
    #[arg(long, env = "WS_API_ACK_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    ack_timeout: Duration,
    /// How many times unacknowledged messages are sent again.
    #[arg(long, env = "WS_API_ACK_RETRIES", default_value_t = 3)]
    ack_retries: u32,
    /// How long a client message id is remembered to drop its duplicates.
    #[arg(long, env = "WS_API_DEDUP_WINDOW", default_value = "5m", value_parser = humantime::parse_duration)]
    dedup_window: Duration,
    /// Client message ids remembered per user (in-memory history); past it
    /// the user's oldest is forgotten, counted.
    #[arg(long, env = "WS_API_DEDUP_IDS_PER_USER", default_value_t = 10_000)]
    dedup_ids_per_user: usize,
    /// Client message ids remembered in all (about 60 bytes each, whatever
    /// their length: the default holds them under 60 MB).
    #[arg(long, env = "WS_API_DEDUP_IDS", default_value_t = 1_000_000)]
    dedup_ids: usize,
    /// Bytes of in-memory history in all (messages' encoded size and a few
    /// bytes each); past it the user pushed to least recently loses its
    /// log, logged.
    #[arg(long, env = "WS_API_HISTORY_BYTES", default_value_t = 256 << 20)]
    history_bytes: usize,
    /// How long a Push's idempotency key is remembered: a Push with the
    /// same key for the same uid within it is answered with the original
    /// offset and `duplicate`, not appended again (docs/delivery.md).
    #[arg(long, env = "WS_API_IDEMPOTENCY_WINDOW", default_value = "10m", value_parser = humantime::parse_duration)]
    idempotency_window: Duration,
    /// Push idempotency keys remembered in all (in-memory history; Redis
    /// keeps its own, each expiring with the window). Keys are at most 128
    /// bytes, about 330 bytes each held: the default stays under 35 MB.
    /// Past it the oldest key is forgotten, counted.
    #[arg(long, env = "WS_API_IDEMPOTENCY_KEYS", default_value_t = 100_000)]
    idempotency_keys: usize,
    /// Devices whose acknowledged position is kept per user (clients that
    /// give a device id, docs/delivery.md "Devices"); past it the device
    /// that acknowledged least recently is forgotten, counted.
    #[arg(long, env = "WS_API_DEVICES_PER_USER", default_value_t = 16)]
    devices_per_user: usize,
    /// How Connect checks tokens: `jwt` (signed JSON Web Tokens, `sub` the
    /// uid), `proxy` (ask --connect-proxy-url), or `insecure-dev` (any
    /// token; for trying it out and tests).
    #[arg(long, env = "WS_API_AUTH", value_enum, default_value_t = AuthMode::Jwt)]
    auth: AuthMode,
    /// File holding the HMAC secret for HS256/384/512 tokens (at least 32
    /// bytes; a trailing newline is ignored).
    #[arg(long, env = "WS_API_JWT_HMAC_SECRET_FILE")]
    jwt_hmac_secret_file: Option<PathBuf>,
    /// PEM public key (RSA: RS256/384/512; EC: ES256/384); repeat, or
    /// separate with commas, for several.
    #[arg(long, env = "WS_API_JWT_PUBLIC_KEY_FILE", value_delimiter = ',')]
    jwt_public_key_file: Vec<PathBuf>,
    /// JWK set file (RFC 7517), read again when it changes (key rotation);
    /// a token's `kid` picks the key.
    #[arg(long, env = "WS_API_JWT_JWKS_FILE")]
    jwt_jwks_file: Option<PathBuf>,
    /// JWK set URL (an identity provider's `jwks_uri`), fetched every
    /// --jwt-jwks-refresh and when a token's `kid` is not in the set.
    #[arg(long, env = "WS_API_JWT_JWKS_URL", conflicts_with = "jwt_jwks_file")]
    jwt_jwks_url: Option<reqwest::Url>,
    /// The claim listing the groups a session joins as it is admitted (a
    /// list of at most 64 strings); none unless given.
    #[arg(long, env = "WS_API_JWT_GROUPS_CLAIM")]
    jwt_groups_claim: Option<String>,
    /// `--auth proxy`: the business's endpoint each Connect is POSTed to
    /// (JSON with the token; the answer admits, with the uid, or refuses).
    #[arg(long, env = "WS_API_CONNECT_PROXY_URL")]
    connect_proxy_url: Option<reqwest::Url>,
    /// How long the connect proxy may take (keep it under the gateway's
    /// --rpc-timeout, 3 s by default).
    #[arg(long, env = "WS_API_CONNECT_PROXY_TIMEOUT", default_value = "2s", value_parser = humantime::parse_duration)]
    connect_proxy_timeout: Duration,
    /// How often the JWK set (file or URL) is read again.
    #[arg(long, env = "WS_API_JWT_JWKS_REFRESH", default_value = "10s", value_parser = humantime::parse_duration)]
    jwt_jwks_refresh: Duration,
    /// Accepted `aud` values (then required); repeat or separate with commas.
    #[arg(long, env = "WS_API_JWT_AUDIENCE", value_delimiter = ',')]
    jwt_audience: Vec<String>,
    /// Accepted `iss` values (then required); repeat or separate with commas.
    #[arg(long, env = "WS_API_JWT_ISSUER", value_delimiter = ',')]
    jwt_issuer: Vec<String>,
    /// Clock difference allowed on `exp` and `nbf`; a session is closed this
    /// long after its token's `exp`.
    #[arg(long, env = "WS_API_JWT_LEEWAY", default_value = "5s", value_parser = humantime::parse_duration)]
    jwt_leeway: Duration,
    /// After SIGTERM or SIGINT: how long calls in flight may take to finish
    /// (new connections are refused at once, and gateways told to go
    /// elsewhere with GOAWAY) before ws-api exits 0. A second signal exits
    /// at once.
    #[arg(long, env = "WS_API_SHUTDOWN_GRACE", default_value = "2s", value_parser = humantime::parse_duration)]
    shutdown_grace: Duration,
    /// HTTP listener for /healthz, /readyz, /metrics and the publish API
    /// (`POST /api/push` …); off unless given.
    #[arg(long, env = "WS_API_HTTP_LISTEN", value_parser = socket_addr)]
    http_listen: Option<SocketAddr>,
    /// File holding the key `POST /api/*` wants (`Authorization: Bearer
    /// <key>` or `X-API-Key`); at least 16 bytes, a trailing newline
    /// ignored. Without it the HTTP API answers 403.
    #[arg(long, env = "WS_API_HTTP_API_KEY_FILE")]
    http_api_key_file: Option<PathBuf>,
    /// File holding the secret every ExchangeService call must carry
    /// (`authorization: Bearer <secret>`: the gateways'
    /// `--upstream-secret-file`); at least 16 bytes, a trailing newline
    /// ignored. Without it any caller may open ExchangeMsg.
    #[arg(long, env = "WS_API_GATEWAY_SECRET_FILE")]
    gateway_secret_file: Option<PathBuf>,
    /// PEM certificate chain: serve gRPC over TLS (with --tls-key).
    #[arg(long, env = "WS_API_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert.
    #[arg(long, env = "WS_API_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// PEM CA certificate(s): every gRPC client (the gateways, and business
    /// services calling BizMsgService) must present a certificate it signed
    /// (mTLS). Needs --tls-cert.
    #[arg(long, env = "WS_API_TLS_CLIENT_CA", requires = "tls_cert")]
    tls_client_ca: Option<PathBuf>,
}

/// What ws-api does instead of serving.
#[derive(Debug, clap::Subcommand)]
enum Sub {
    #[command(flatten)]
    Call(Call),
    /// Print an HS256 token for `--auth jwt --jwt-hmac-secret-file FILE`
    /// (for trying it out, as `centrifugo gentoken` is; real tokens come
    /// from your login service).
    Token {
        /// The user (`sub`).
        #[arg(long)]
        uid: u64,
        /// The secret file ws-api verifies with.
        #[arg(long)]
        hmac_secret_file: PathBuf,
        /// How long it holds (`exp`).
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        ttl: Duration,
        /// `aud`, if ws-api checks one.
        #[arg(long)]
        audience: Option<String>,
        /// `iss`, if ws-api checks one.
        #[arg(long)]
        issuer: Option<String>,
        /// Groups, in the claim `groups` (`--jwt-groups-claim groups`).
        #[arg(long, value_delimiter = ',')]
        groups: Vec<String>,
    },
}

impl Args {
    /// `--tls-*` as tonic's server TLS settings.
    fn tls(&self) -> anyhow::Result<Option<ServerTlsConfig>> {
        let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) else {
            return Ok(None);
        };
        let read =
            |p: &PathBuf| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
        let mut tls = ServerTlsConfig::new().identity(Identity::from_pem(read(cert)?, read(key)?));
        if let Some(ca) = &self.tls_client_ca {
            tls = tls.client_ca_root(Certificate::from_pem(read(ca)?));
        }
        Ok(Some(tls))
    }
}

/// `host:port`, resolved (`localhost:8082` works).
fn socket_addr(text: &str) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs;
    text.to_socket_addrs()
        .map_err(|e| format!("{text:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("{text:?} resolves to no address"))
}

/// The API key in `path`.
fn read_api_key(path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    let key = ws_api::auth::read_secret(path)
        .with_context(|| format!("--http-api-key-file {}", path.display()))?;
    anyhow::ensure!(
        key.len() >= 16,
        "--http-api-key-file {}: the key is {} bytes, at least 16 are needed",
        path.display(),
        key.len()
    );
    Ok(key)
}

/// `--auth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum AuthMode {
    Jwt,
    Proxy,
    InsecureDev,
}

impl Args {
    /// The token check `--auth` and the `--jwt-*` files give; an error
    /// names the file or what is missing.
    fn auth(&self) -> anyhow::Result<Auth> {
        match self.auth {
            AuthMode::InsecureDev => return Ok(Auth::InsecureDev),
            AuthMode::Proxy => {
                let url = self
                    .connect_proxy_url
                    .clone()
                    .context("--auth proxy needs --connect-proxy-url")?;
                let proxy = ConnectProxy::new(url, self.connect_proxy_timeout)
                    .context("--connect-proxy-url")?;
                return Ok(Auth::Proxy(Box::new(proxy)));
            }
            AuthMode::Jwt => {}
        }
        let opts = jwt::Options {
            hmac_secret_file: self.jwt_hmac_secret_file.clone(),
            public_key_files: self.jwt_public_key_file.clone(),
            jwks_file: self.jwt_jwks_file.clone(),
            jwks_url: self.jwt_jwks_url.clone(),
            groups_claim: self.jwt_groups_claim.clone(),
            audience: self.jwt_audience.clone(),
            issuer: self.jwt_issuer.clone(),
            leeway: self.jwt_leeway,
        };
        let verifier = jwt::Verifier::new(&opts)
            .context("--auth jwt (for trying ws-api out without tokens: --auth insecure-dev)")?;
        Ok(Auth::Jwt(Box::new(verifier)))
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(Sub::Token {
        uid,
        hmac_secret_file,
        ttl,
        audience,
        issuer,
        groups,
    }) = &args.command
    {
        let claims = jwt::Minted {
            uid: *uid,
            ttl: *ttl,
            audience: audience.clone(),
            issuer: issuer.clone(),
            groups: groups.clone(),
        };
        match jwt::mint(hmac_secret_file, &claims) {
            Ok(token) => println!("{token}"),
            Err(e) => {
                eprintln!("ws-api token: {e}");
                std::process::exit(1);
            }
        }
        return Ok(());
    }
    if let Some(Sub::Call(call)) = args.command {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        match rt.block_on(call.run(&args.api)) {
            Ok(line) => println!("{line}"),
            Err(e) => {
                eprintln!("ws-api: {e}");
                std::process::exit(1);
            }
        }
        return Ok(());
    }
    if args.handler == Handler::RedisStream && args.redis.is_none() {
        eprintln!("ws-api: --handler redis-stream needs --redis redis://host:port");
        std::process::exit(2);
    }
    for (flag, d) in [
        ("--server-ttl", args.server_ttl),
        ("--history-ttl", args.history_ttl),
        ("--ack-timeout", args.ack_timeout),
        ("--dedup-window", args.dedup_window),
        ("--idempotency-window", args.idempotency_window),
    ] {
        if d < Duration::from_millis(100) {
            eprintln!("ws-api: {flag} must be at least 100ms");
            std::process::exit(2);
        }
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WS_API_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = args.threads {
        rt.worker_threads(n.max(1));
    }
    let auth = match args.auth() {
        Ok(auth) => auth,
        Err(e) => {
            eprintln!("ws-api: {e:#}");
            std::process::exit(2);
        }
    };
    rt.enable_all().build()?.block_on(serve(args, auth))
}

async fn serve(args: Args, auth: Auth) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    let presence = match &args.redis {
        None => Presence::default(),
        Some(url) => Presence::Redis(
            RedisPresence::connect_to(url, args.presence_ttl, args.server_ttl)
                .await
                .with_context(|| format!("cannot reach redis at {}", redact(url)))?,
        ),
    };
    let retention = Retention {
        size: args.history_size,
        ttl: args.history_ttl,
        devices: args.devices_per_user.max(1),
    };
    let history = match &presence {
        _ if args.history_size == 0 => None,
        Presence::Memory(_) => Some(History::Memory(Box::new(MemoryHistory::new(
            retention,
            DedupLimits {
                window: args.dedup_window,
                per_user: args.dedup_ids_per_user.max(1),
                total: args.dedup_ids.max(1),
            },
            KeyLimits {
                window: args.idempotency_window,
                max: args.idempotency_keys.max(1),
            },
            args.history_bytes,
        )))),
        Presence::Redis(r) => Some(History::Redis(Box::new(RedisHistory::new(
            r.conn(),
            retention,
            args.dedup_window,
            args.idempotency_window,
        )))),
    };
    let redelivery = Redelivery {
        ack_timeout: args.ack_timeout,
        retries: args.ack_retries,
    };
    let delivery = Delivery::new(history, redelivery);
    let backend = Backend::new(
        args.handler,
        presence,
        args.stream_maxlen,
        delivery,
        args.server_ttl,
        auth,
    );
    match &backend.auth {
        Auth::InsecureDev => warn!(
            "--auth insecure-dev: every non-empty token is admitted (a decimal token is the uid); never in production"
        ),
        Auth::Jwt(v) => v.spawn_refresh(args.jwt_jwks_refresh),
        Auth::Proxy(_) => {}
    }
    sweeper::spawn(Arc::clone(&backend.outbox), args.server_ttl);
    // `grpc.health.v1.Health`: NOT_SERVING while the Redis store is
    // unreachable (the gateway's /readyz reads it); always SERVING in memory.
    let (health, health_service) = tonic_health::server::health_reporter();
    store_watch::spawn(Arc::clone(&backend.outbox), health);
    tokio::spawn(Arc::clone(&backend.delivery).redeliver(Arc::clone(&backend.outbox)));
    if let Some(History::Memory(_)) = &backend.delivery.history {
        let backend = backend.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(10));
            let mut evicted = Evicted::default();
            loop {
                tick.tick().await;
                if let Some(History::Memory(m)) = &backend.delivery.history {
                    let now = m.sweep();
                    if now != evicted {
                        warn!(
                            logs = now.logs - evicted.logs,
                            ids = now.ids - evicted.ids,
                            keys = now.keys - evicted.keys,
                            "history evicted before its time: users' logs (--history-bytes), client message ids (--dedup-ids, --dedup-ids-per-user), push idempotency keys (--idempotency-keys)"
                        );
                        evicted = now;
                    }
                }
            }
        });
    }
    let stop = Stop::listen()?;
    if let Some(listen) = args.http_listen {
        let api_key = args
            .http_api_key_file
            .as_deref()
            .map(read_api_key)
            .transpose()?;
        let http = ws_api::http::Http::new(
            Biz {
                outbox: Arc::clone(&backend.outbox),
                delivery: Arc::clone(&backend.delivery),
            },
            api_key,
            stop.0.clone(),
        );
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen} (--http-listen)"))?;
        println!("admin listening on http://{}", listener.local_addr()?);
        let stopped = stop.clone().wait();
        tokio::spawn(async move {
            let served = axum::serve(listener, http.router())
                .with_graceful_shutdown(stopped)
                .await;
            if let Err(e) = served {
                warn!(error = %e, "HTTP listener failed");
            }
        });
    }
    let store = if args.redis.is_some() {
        "redis"
    } else {
        "memory"
    };
    println!(
        "ws-api listening on {addr} (handler {:?}, presence {store}, auth {})",
        args.handler,
        backend.auth.describe()
    );
    std::io::stdout().flush()?;
    // Both versions: grpcurl asks v1 first, grpcio-reflection's client and
    // older tools only v1alpha.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(ws_api::proto::DESCRIPTORS)
    };
    let reflection_v1 = reflection().build_v1().context("gRPC reflection")?;
    let reflection_v1alpha = reflection().build_v1alpha().context("gRPC reflection")?;
    let gateway_secret = GatewaySecret::new(
        args.gateway_secret_file
            .as_deref()
            .map(|p| {
                ws_api::auth::read_secret(p)
                    .with_context(|| format!("--gateway-secret-file {}", p.display()))
            })
            .transpose()?,
        Arc::clone(&backend.outbox),
    )
    .context("--gateway-secret-file")?;
    let mut builder = Server::builder();
    if let Some(tls) = args.tls()? {
        builder = builder
            .tls_config(tls)
            .context("--tls-cert/--tls-key/--tls-client-ca")?;
    }
    let server = builder
        .initial_stream_window_size(1 << 20)
        .initial_connection_window_size(16 << 20)
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(InterceptedService::new(
            ExchangeServiceServer::new(Exchange {
                backend: backend.clone(),
                lazy_headers: args.lazy_headers,
            })
            .max_decoding_message_size(args.max_message_size)
            .max_encoding_message_size(args.max_message_size),
            gateway_secret,
        ))
        .add_service(BizMsgServiceServer::new(Biz {
            outbox: Arc::clone(&backend.outbox),
            delivery: Arc::clone(&backend.delivery),
        }))
        // The stop ends the accept stream (closing the listener), which is
        // what ends tonic's loop; its own signal never fires but makes the
        // end graceful (GOAWAY, calls in flight finish). Given the stop as
        // its signal instead, tonic could leave the loop first and keep the
        // listener, unpolled, until the grace is over.
        .serve_with_incoming_shutdown(accept_until(listener, stop.clone()), std::future::pending());
    tokio::select! {
        served = server => served?,
        () = async {
            stop.wait().await;
            tokio::time::sleep(args.shutdown_grace).await;
        } => info!(grace = ?args.shutdown_grace, "calls still open after the grace; exiting"),
    }
    info!("stopped");
    Ok(())
}

/// The accepted connections until the stop, when the listener is closed
/// (new connections refused, not queued by the kernel for no one).
fn accept_until(
    listener: tokio::net::TcpListener,
    stop: Stop,
) -> impl futures_util::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    futures_util::stream::unfold(Some((listener, stop)), |state| async move {
        let (listener, stop) = state?;
        tokio::select! {
            accepted = listener.accept() => {
                let accepted = accepted.map(|(tcp, _)| {
                    // Small frames both ways: no Nagle delay.
                    let _ = tcp.set_nodelay(true);
                    tcp
                });
                Some((accepted, Some((listener, stop))))
            }
            () = stop.clone().wait() => None,
        }
    })
}

/// SIGTERM or SIGINT, seen by every task that waits for it; a second one
/// exits at once.
#[derive(Clone)]
struct Stop(tokio::sync::watch::Receiver<bool>);

impl Stop {
    fn listen() -> anyhow::Result<Stop> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let (tx, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            for n in 0.. {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
                if n > 0 {
                    warn!("second shutdown signal: exiting now");
                    std::process::exit(1);
                }
                info!("shutdown signal: refusing new connections, finishing calls in flight");
                tx.send_replace(true);
            }
        });
        Ok(Stop(rx))
    }

    async fn wait(mut self) {
        // An error means the sender is gone: nothing will signal any more.
        let _ = self.0.wait_for(|stopped| *stopped).await;
    }
}

/// `url` without a password (`redis://user:secret@host` → `redis://…@host`).
fn redact(url: &str) -> String {
    match (url.split_once("://"), url.rsplit_once('@')) {
        (Some((scheme, _)), Some((_, host))) => format!("{scheme}://…@{host}"),
        _ => url.to_owned(),
    }
}
