//! `ws-bench`: a load generator for ws-gateway, command-compatible with the
//! Go original's `websocket-benchmark-cli conn|message`, plus what a serious
//! measurement needs: open-loop rates, several source addresses, threads,
//! latency histograms, the gateway's CPU and memory, and a JSON report.
//!
//! Modules: [`load`] drives connections, [`stats`] collects and reports,
//! [`procstat`] reads CPU and memory from /proc, [`window`] measures the
//! steady window (CPU split, syscalls), [`push`] measures ws-api `Push`
//! fan-out, [`resume`] a resume storm, and [`sink`] is the floor: a minimal epoll WebSocket server.

mod load;
mod procstat;
mod push;
mod resume;
mod sink;
mod stats;
mod window;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use base64::Engine;
use clap::{Args, Parser, Subcommand};
use tokio_tungstenite::tungstenite::Message;

#[derive(Debug, Parser)]
#[command(version, about = "Load generator for ws-gateway")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Open connections and hold them idle.
    Conn {
        #[command(flatten)]
        common: Common,
        /// How long to hold the connections open.
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        sleep: Duration,
    },
    /// Open connections and send messages on each at a fixed rate.
    Message {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        message: MessageArgs,
    },
    /// Connect users, then measure ws-api `Push` deliveries to them.
    Push {
        #[command(flatten)]
        common: Common,
        /// ws-api's gRPC address.
        #[arg(long, default_value = "127.0.0.1:8081")]
        api: String,
        /// Push rounds (one Push per user per round).
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// One Broadcast per round instead of a Push per user.
        #[arg(long)]
        broadcast: bool,
    },
    /// Resume storm: users learn their position, lose their connections,
    /// miss --messages pushes each, then all reconnect at once and resume.
    Resume {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        resume: resume::ResumeArgs,
    },
    /// The floor: a single-threaded epoll WebSocket server that answers the
    /// upgrade and reads and discards every frame.
    Sink {
        /// Address to listen on (port 0: any free port; the bound address is printed).
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Pin the sink to this CPU.
        #[arg(long)]
        cpu: Option<usize>,
        /// Write every data frame back (the floor for a round trip).
        #[arg(long)]
        echo: bool,
    },
}

/// Options every mode shares.
#[derive(Debug, Clone, Args)]
pub struct Common {
    /// Gateway host:port.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub host: String,
    /// WebSocket path.
    #[arg(long, default_value = "/gateway/ws")]
    pub path: String,
    /// Connections to open.
    #[arg(long, default_value_t = 100)]
    pub user: usize,
    /// Delay between connection starts (0: as fast as --concurrency allows).
    #[arg(long = "connectInterval", alias = "connect-interval", default_value = "0s", value_parser = humantime::parse_duration)]
    pub connect_interval: Duration,
    /// Connection attempts in flight at once when --connectInterval is 0.
    #[arg(long, default_value_t = 256)]
    pub concurrency: usize,
    /// Token per connection; `{i}` is replaced by the connection number (from 1).
    #[arg(long, default_value = "{i}")]
    pub token: String,
    /// Source addresses to bind, e.g. `127.0.0.1-127.0.0.20` (past 64k connections).
    #[arg(long)]
    pub source: Option<String>,
    /// Worker threads.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Write the report as JSON here too.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// The gateway's (or the sink's) PID, to report its CPU time and memory from /proc.
    #[arg(long = "gateway-pid")]
    pub gateway_pid: Option<u32>,
    /// ws-api's PID, to report its CPU over the steady window too.
    #[arg(long = "api-pid")]
    pub api_pid: Option<u32>,
    /// Count the gateway's syscalls per message with `perf stat` after the
    /// steady window (message loads with --duration).
    #[arg(long)]
    pub syscalls: bool,
    /// A label for the report.
    #[arg(long, default_value = "")]
    pub name: String,
}

#[derive(Debug, Clone, Args)]
pub struct MessageArgs {
    /// File holding the frame to send (a trailing newline is dropped).
    #[arg(long, conflicts_with = "content")]
    pub file: Option<PathBuf>,
    /// The frame to send.
    #[arg(long)]
    pub content: Option<String>,
    /// Send the frame (JSON `{"type","payload":base64}`) as a protobuf
    /// `Protocol` in a binary frame, as the Go original's bench tool does.
    #[arg(long)]
    pub protobuf: bool,
    /// Interval between messages on one connection.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub interval: Duration,
    /// Messages per connection per second (overrides --interval).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Messages per connection.
    #[arg(long, default_value_t = 10)]
    pub times: u64,
    /// Send for this long instead of --times messages.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// The backend does not echo (ws-api --handler discard): count sends only.
    #[arg(long = "no-echo")]
    pub no_echo: bool,
    /// Replies to messages sent in this first part of the load count as
    /// received but stay out of the latency figures (the burst right after
    /// every connection came up says more about the bench than the gateway).
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    pub warmup: Duration,
    /// After the last send, how long to wait for outstanding replies.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    pub grace: Duration,
}

impl MessageArgs {
    pub fn frame(&self) -> anyhow::Result<Message> {
        let text = match (&self.file, &self.content) {
            (Some(f), _) => {
                let text = std::fs::read_to_string(f)
                    .with_context(|| format!("reading {}", f.display()))?;
                text.trim_end_matches(['\n', '\r']).to_owned()
            }
            (None, Some(c)) => c.clone(),
            (None, None) => bail!("--file or --content is required"),
        };
        if self.protobuf {
            Ok(Message::Binary(protobuf_frame(&text)?.into()))
        } else {
            Ok(Message::Text(text.into()))
        }
    }

    pub fn period(&self) -> Duration {
        match self.rate {
            Some(r) if r > 0.0 => Duration::from_secs_f64(1.0 / r),
            _ => self.interval,
        }
    }
}

/// `{"type": T, "payload": base64}` as the protobuf `Protocol{type = 1; payload = 2}`.
fn protobuf_frame(json: &str) -> anyhow::Result<Vec<u8>> {
    #[derive(serde::Deserialize)]
    struct Protocol {
        r#type: String,
        #[serde(default)]
        payload: String,
    }
    let p: Protocol =
        serde_json::from_str(json).context("--protobuf needs a JSON Protocol frame")?;
    let payload = base64::engine::general_purpose::STANDARD
        .decode(&p.payload)
        .context("payload is not base64")?;
    let mut out = Vec::new();
    for (tag, bytes) in [(0x0a, p.r#type.as_bytes()), (0x12, &payload[..])] {
        if bytes.is_empty() {
            continue;
        }
        out.push(tag);
        let mut n = bytes.len();
        while n >= 0x80 {
            out.push((n as u8) | 0x80);
            n >>= 7;
        }
        out.push(n as u8);
        out.extend_from_slice(bytes);
    }
    Ok(out)
}

/// Parses `a.b.c.d-a.b.c.e` (or a single address) into the addresses it spans.
pub fn parse_sources(spec: &str) -> anyhow::Result<Vec<Ipv4Addr>> {
    let (a, b) = spec.split_once('-').unwrap_or((spec, spec));
    let (a, b): (Ipv4Addr, Ipv4Addr) = (a.trim().parse()?, b.trim().parse()?);
    let (a, b) = (u32::from(a), u32::from(b));
    if a > b {
        bail!("source range {spec} is backwards");
    }
    Ok((a..=b).map(Ipv4Addr::from).collect())
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let report = match cli.command {
        Command::Conn { common, sleep } => load::run(&common, load::Mode::Hold(sleep))?,
        Command::Message { common, message } => {
            let frame = message.frame()?;
            load::run(&common, load::Mode::Messages(message, frame))?
        }
        Command::Push {
            common,
            api,
            rounds,
            broadcast,
        } => push::run(&common, &api, rounds, broadcast)?,
        Command::Resume { common, resume } => return resume::run(&common, &resume),
        Command::Sink { listen, cpu, echo } => return sink::run(listen, cpu, echo),
    };
    print!("{}", report.text());
    if let Some(path) = &report.json_path {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn protobuf_frame_of_the_seed_frame_is_31_bytes() {
        let f =
            super::protobuf_frame(r#"{"type":"message","payload":"eyJrZXkiOiJYVmxCemdiYWlDIn0="}"#)
                .unwrap();
        assert_eq!(f.len(), 31);
        assert_eq!(&f[..9], b"\x0a\x07message");
        assert_eq!(&f[9..11], b"\x12\x14");
    }
}
