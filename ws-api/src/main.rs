//! `ws-api`: the reference backend. Prints `ws-api listening on <addr>` once
//! it accepts connections.

use std::io::Write;
use std::net::SocketAddr;

use anyhow::Context;
use clap::Parser;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use ws_api::Handler;
use ws_api::biz::Biz;
use ws_api::proto::wsapi::biz_msg_service_server::BizMsgServiceServer;
use ws_api::proto::wsapi::exchange_service_server::ExchangeServiceServer;
use ws_api::service::{Backend, Exchange};

/// ws-api: reference gRPC backend for ws-gateway.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
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
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
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
    rt.enable_all().build()?.block_on(serve(args))
}

async fn serve(args: Args) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    let backend = Backend::new(args.handler);
    println!("ws-api listening on {addr} (handler {:?})", args.handler);
    std::io::stdout().flush()?;
    Server::builder()
        .initial_stream_window_size(1 << 20)
        .initial_connection_window_size(16 << 20)
        .add_service(
            ExchangeServiceServer::new(Exchange(backend.clone()))
                .max_decoding_message_size(args.max_message_size)
                .max_encoding_message_size(args.max_message_size),
        )
        .add_service(BizMsgServiceServer::new(Biz(backend)))
        .serve_with_incoming(TcpIncoming::from(listener).with_nodelay(Some(true)))
        .await?;
    Ok(())
}
