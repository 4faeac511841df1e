//! Prometheus exposition of every core's counters, summed at scrape time.
//!
//! Encoding is prometheus-client's (OpenMetrics text). The Go gateway's three
//! series keep their exact names, so existing dashboards keep working: they
//! are declared `unknown`, since OpenMetrics would append `_total` to a counter.

use std::fmt;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use crate::metrics::{Counter, Counters, Loss, RPC_BUCKETS, Reject, Rpc};
use crate::procstat;

/// Reads the cores' counters on each scrape.
#[derive(Debug)]
pub struct GatewayCollector {
    pub cores: Vec<Arc<Counters>>,
}

impl GatewayCollector {
    fn sum(&self, f: impl Fn(&Counters) -> &Counter) -> u64 {
        self.cores.iter().map(|c| f(c).get()).sum()
    }
}

fn counter(enc: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> fmt::Result {
    let c = ConstCounter::new(v);
    c.encode(enc.encode_descriptor(name, help, None, c.metric_type())?)
}

fn gauge(enc: &mut DescriptorEncoder, name: &str, help: &str, v: i64) -> fmt::Result {
    let g = ConstGauge::new(v);
    g.encode(enc.encode_descriptor(name, help, None, g.metric_type())?)
}

/// One series per label value, e.g. losses by reason.
fn labelled<L: AsRef<str>>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    label: &str,
    values: impl Iterator<Item = (L, u64)>,
) -> fmt::Result {
    let mut family = enc.encode_descriptor(name, help, None, kind)?;
    for (value, n) in values {
        let labels = [(label, value.as_ref())];
        let mut m = family.encode_family(&labels)?;
        match kind {
            MetricType::Counter => m.encode_counter::<NoLabelSet, _, u64>(&n, None)?,
            _ => m.encode_gauge(&(n as i64))?,
        }
    }
    Ok(())
}

impl Collector for GatewayCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let e = &mut enc;
        let legacy = [
            (
                "gateway_websocket_online_totals",
                "Open WebSocket sessions.",
                self.sum(|c| &c.online),
            ),
            (
                "gateway_websocket_input_bytes",
                "Bytes of client messages received.",
                self.sum(|c| &c.input_bytes),
            ),
            (
                "gateway_websocket_output_bytes",
                "Bytes of messages sent to clients.",
                self.sum(|c| &c.output_bytes),
            ),
        ];
        for (name, help, v) in legacy {
            let g = ConstGauge::new(v as i64);
            g.encode(e.encode_descriptor(name, help, None, MetricType::Unknown)?)?;
        }
        type Field = fn(&Counters) -> &Counter;
        let counters: [(&str, &str, Field); 15] = [
            (
                "gateway_upstream_acked_messages",
                "Client messages ws-api acknowledged having received.",
                |c| &c.upstream_acked,
            ),
            (
                "gateway_upstream_resent_messages",
                "Client messages written to ws-api again after a break, not acknowledged before it.",
                |c| &c.upstream_resent,
            ),
            (
                "gateway_upstream_ping_timeouts",
                "HTTP/2 pings ws-api left unanswered.",
                |c| &c.upstream_ping_timeouts,
            ),
            (
                "gateway_upstream_ping_slowdowns",
                "Times ws-api refused our HTTP/2 pings as too frequent (GOAWAY ENHANCE_YOUR_CALM); each doubles that node's ping interval.",
                |c| &c.upstream_ping_slowdowns,
            ),
            ("gateway_messages_in", "Client messages received.", |c| {
                &c.messages_in
            }),
            (
                "gateway_messages_out",
                "Messages written to clients.",
                |c| &c.messages_out,
            ),
            ("gateway_handshakes_accepted", "Upgrades completed.", |c| {
                &c.handshakes
            }),
            (
                "gateway_upstream_reconnects",
                "Reconnect attempts to ws-api.",
                |c| &c.upstream_reconnects,
            ),
            (
                "gateway_upstream_failover_messages",
                "Buffered client messages moved from a lost ws-api node to a live one.",
                |c| &c.upstream_failovers,
            ),
            (
                "gateway_disconnect_failures",
                "Disconnect calls ws-api did not get.",
                |c| &c.disconnect_failures,
            ),
            (
                "gateway_kicks",
                "Sessions closed at ws-api's request.",
                |c| &c.kicks,
            ),
            (
                "gateway_fan_outs",
                "Group and broadcast messages fanned out (per core).",
                |c| &c.fan_outs,
            ),
            (
                "gateway_keepalive_timeouts",
                "Sessions closed for not answering pings.",
                |c| &c.keepalive_timeouts,
            ),
            (
                "gateway_inbound_rate_closes",
                "Sessions closed for exceeding --max-inbound-rate.",
                |c| &c.inbound_rate_closes,
            ),
            (
                "gateway_bad_frame_closes",
                "Sessions closed with 1008 for more bad frames than error frames answer (10, then 1/s).",
                |c| &c.bad_frame_closes,
            ),
        ];
        for (name, help, field) in counters {
            counter(e, name, help, self.sum(field))?;
        }
        labelled(
            e,
            "gateway_handshakes_rejected",
            "Upgrades refused, by reason.",
            MetricType::Counter,
            "reason",
            Reject::ALL
                .iter()
                .map(|r| (r.name(), self.cores.iter().map(|c| c.rejects(*r)).sum())),
        )?;
        labelled(
            e,
            "gateway_messages_lost",
            "Messages not delivered, by reason.",
            MetricType::Counter,
            "reason",
            Loss::ALL
                .iter()
                .map(|l| (l.name(), self.cores.iter().map(|c| c.lost(*l)).sum())),
        )?;
        let per_core = |f: fn(&Counters) -> u64| {
            self.cores
                .iter()
                .enumerate()
                .map(move |(i, c)| (i.to_string(), f(c)))
        };
        labelled(
            e,
            "gateway_upstream_up",
            "ws-api nodes the core's ExchangeMsg stream is up to.",
            MetricType::Gauge,
            "core",
            per_core(|c| c.upstream_up.get()),
        )?;
        labelled(
            e,
            "gateway_upstream_nodes",
            "ws-api nodes the core knows.",
            MetricType::Gauge,
            "core",
            per_core(|c| c.upstream_nodes.get()),
        )?;
        labelled(
            e,
            "gateway_upstream_buffered_bytes",
            "Bytes waiting for the core's stream.",
            MetricType::Gauge,
            "core",
            per_core(|c| c.upstream_buffered.get()),
        )?;
        labelled(
            e,
            "gateway_core_sessions",
            "Open sessions per core.",
            MetricType::Gauge,
            "core",
            per_core(|c| c.online.get()),
        )?;
        labelled(
            e,
            "gateway_send_queue_messages",
            "Messages waiting in session send queues.",
            MetricType::Gauge,
            "core",
            per_core(|c| c.send_queued.get()),
        )?;
        let mut family = e.encode_descriptor(
            "gateway_upstream_rpc_duration_seconds",
            "Latency of unary calls to ws-api, by method.",
            None,
            MetricType::Histogram,
        )?;
        for rpc in Rpc::ALL {
            let mut counts = [0u64; RPC_BUCKETS.len() + 1];
            let mut sum = 0.0;
            for core in &self.cores {
                let h = &core.rpc[rpc as usize];
                sum += h.sum_seconds();
                for (total, n) in counts.iter_mut().zip(h.counts()) {
                    *total += n;
                }
            }
            let bounds = RPC_BUCKETS.iter().copied().chain([f64::INFINITY]);
            let buckets: Vec<(f64, u64)> = bounds.zip(counts).collect();
            let labels = [("method", rpc.name())];
            family
                .encode_family(&labels)?
                .encode_histogram::<NoLabelSet>(sum, counts.iter().sum(), &buckets, None)?;
        }
        let p = procstat::read();
        gauge(
            e,
            "process_resident_memory_bytes",
            "Resident set size.",
            p.rss_bytes as i64,
        )?;
        counter(
            e,
            "process_cpu_seconds",
            "User and system CPU time.",
            p.cpu_seconds as u64,
        )?;
        gauge(
            e,
            "process_open_fds",
            "Open file descriptors.",
            p.open_fds as i64,
        )?;
        gauge(
            e,
            "process_max_fds",
            "Open file descriptor limit.",
            p.max_fds as i64,
        )?;
        Ok(())
    }
}

/// The whole `/metrics` body.
pub fn render(cores: &[Arc<Counters>]) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(GatewayCollector {
        cores: cores.to_vec(),
    }));
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
    out
}
