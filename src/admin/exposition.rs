//! Prometheus exposition of every core's counters, summed at scrape time.
//!
//! Encoding is prometheus-client's (OpenMetrics text). The Go gateway's three
//! series keep their exact names, so existing dashboards keep working: the
//! online count is a gauge; the two byte counts are declared `unknown`,
//! since OpenMetrics would append `_total` to a counter.

use std::fmt;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use strum::IntoEnumIterator;

use crate::admin::procstat;
use crate::metrics::{Counter, Counters, Gauge, Loss, RPC_BUCKETS, Reject, Resume, Rpc};

/// Reads the cores' counters on each scrape.
#[derive(Debug)]
pub struct GatewayCollector {
    pub cores: Vec<Arc<Counters>>,
}

impl GatewayCollector {
    fn sum(&self, f: impl Fn(&Counters) -> &Counter) -> u64 {
        self.cores.iter().map(|c| f(c).get()).sum()
    }

    fn sum_gauge(&self, f: impl Fn(&Counters) -> &Gauge) -> i64 {
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

/// One counter series per label value, e.g. losses by reason.
fn labelled_counter<L: AsRef<str>>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label: &str,
    values: impl Iterator<Item = (L, u64)>,
) -> fmt::Result {
    let mut family = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (value, n) in values {
        let labels = [(label, value.as_ref())];
        family
            .encode_family(&labels)?
            .encode_counter::<NoLabelSet, _, u64>(&n, None)?;
    }
    Ok(())
}

/// One gauge series per core.
fn per_core_gauge(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    cores: &[Arc<Counters>],
    f: fn(&Counters) -> &Gauge,
) -> fmt::Result {
    let mut family = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (i, c) in cores.iter().enumerate() {
        let core = i.to_string();
        let labels = [("core", core.as_str())];
        family.encode_family(&labels)?.encode_gauge(&f(c).get())?;
    }
    Ok(())
}

impl Collector for GatewayCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let e = &mut enc;
        gauge(
            e,
            "gateway_websocket_online_totals",
            "Open WebSocket sessions.",
            self.sum_gauge(|c| &c.online),
        )?;
        let legacy = [
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
        let counters: [(&str, &str, Field); 18] = [
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
            (
                "gateway_client_acks",
                "Acks written to clients for their messages with an id (ws-api received them).",
                |c| &c.client_acks,
            ),
            (
                "gateway_client_resent",
                "Client messages marked resent (sent again after a reconnect).",
                |c| &c.client_resent,
            ),
            (
                "gateway_client_duplicates",
                "Acks marked duplicate: ws-api had received that message already.",
                |c| &c.client_duplicates,
            ),
        ];
        for (name, help, field) in counters {
            counter(e, name, help, self.sum(field))?;
        }
        labelled_counter(
            e,
            "gateway_handshakes_rejected",
            "Upgrades refused, by reason.",
            "reason",
            Reject::iter().map(|r| {
                let name: &'static str = r.into();
                (name, self.cores.iter().map(|c| c.rejects(r)).sum())
            }),
        )?;
        labelled_counter(
            e,
            "gateway_resumes",
            "Resumes of sessions that asked (or had unacknowledged messages), by outcome.",
            "outcome",
            Resume::iter().map(|r| {
                let name: &'static str = r.into();
                (name, self.cores.iter().map(|c| c.resumes(r)).sum())
            }),
        )?;
        labelled_counter(
            e,
            "gateway_messages_lost",
            "Messages not delivered, by reason.",
            "reason",
            Loss::iter().map(|l| {
                let name: &'static str = l.into();
                (name, self.cores.iter().map(|c| c.lost(l)).sum())
            }),
        )?;
        type GaugeField = fn(&Counters) -> &Gauge;
        let gauges: [(&str, &str, GaugeField); 5] = [
            (
                "gateway_upstream_up",
                "ws-api nodes the core's ExchangeMsg stream is up to.",
                |c| &c.upstream_up,
            ),
            (
                "gateway_upstream_nodes",
                "ws-api nodes the core knows.",
                |c| &c.upstream_nodes,
            ),
            (
                "gateway_upstream_buffered_bytes",
                "Bytes waiting for the core's stream.",
                |c| &c.upstream_buffered,
            ),
            ("gateway_core_sessions", "Open sessions per core.", |c| {
                &c.online
            }),
            (
                "gateway_send_queue_messages",
                "Messages waiting in session send queues.",
                |c| &c.send_queued,
            ),
        ];
        for (name, help, f) in gauges {
            per_core_gauge(e, name, help, &self.cores, f)?;
        }
        let mut family = e.encode_descriptor(
            "gateway_upstream_rpc_duration_seconds",
            "Latency of unary calls to ws-api, by method.",
            None,
            MetricType::Histogram,
        )?;
        for rpc in Rpc::iter() {
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
            let method: &'static str = rpc.into();
            let labels = [("method", method)];
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
        let cpu = ConstCounter::new(p.cpu_seconds);
        cpu.encode(e.encode_descriptor(
            "process_cpu_seconds",
            "User and system CPU time.",
            None,
            cpu.metric_type(),
        )?)?;
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
