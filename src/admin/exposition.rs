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
use crate::metrics::{
    Counters, Family, LOSSES, REJECTS, RESUMES, RPC_BUCKETS, RPC_LATENCY, Read, Rpc, SERIES, Series,
};

/// Reads the cores' counters on each scrape.
#[derive(Debug)]
pub struct GatewayCollector {
    pub cores: Vec<Arc<Counters>>,
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
    family: Family,
    values: impl Iterator<Item = (L, u64)>,
) -> fmt::Result {
    let mut enc = enc.encode_descriptor(family.name, family.help, None, MetricType::Counter)?;
    for (value, n) in values {
        let labels = [(family.label, value.as_ref())];
        enc.encode_family(&labels)?
            .encode_counter::<NoLabelSet, _, u64>(&n, None)?;
    }
    Ok(())
}

impl GatewayCollector {
    /// One series of [`SERIES`].
    fn series(&self, e: &mut DescriptorEncoder, s: &Series) -> fmt::Result {
        let cores = self.cores.iter();
        match s.read {
            Read::Counter(f) => counter(e, s.name, s.help, cores.map(|c| f(c).get()).sum()),
            Read::Legacy(f) => {
                let g = ConstGauge::new(cores.map(|c| f(c).get()).sum::<u64>() as i64);
                g.encode(e.encode_descriptor(s.name, s.help, None, MetricType::Unknown)?)
            }
            Read::Gauge(f) => gauge(e, s.name, s.help, cores.map(|c| f(c).get()).sum()),
            Read::PerCore(f) => {
                let mut family = e.encode_descriptor(s.name, s.help, None, MetricType::Gauge)?;
                for (i, c) in cores.enumerate() {
                    let core = i.to_string();
                    let labels = [("core", core.as_str())];
                    family.encode_family(&labels)?.encode_gauge(&f(c).get())?;
                }
                Ok(())
            }
        }
    }

    /// A family labelled by the variants of `E`, each summed over the cores.
    fn labelled<E>(
        &self,
        e: &mut DescriptorEncoder,
        family: Family,
        count: fn(&Counters, E) -> u64,
    ) -> fmt::Result
    where
        E: IntoEnumIterator + Into<&'static str> + Copy,
    {
        let values = E::iter().map(|v| (v.into(), self.cores.iter().map(|c| count(c, v)).sum()));
        labelled_counter::<&'static str>(e, family, values)
    }

    /// The unary-call latency histogram, by method.
    fn rpc(&self, e: &mut DescriptorEncoder) -> fmt::Result {
        let f = RPC_LATENCY;
        let mut family = e.encode_descriptor(f.name, f.help, None, MetricType::Histogram)?;
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
            let labels = [(f.label, method)];
            family
                .encode_family(&labels)?
                .encode_histogram::<NoLabelSet>(sum, counts.iter().sum(), &buckets, None)?;
        }
        Ok(())
    }
}

/// The process's own series, from /proc at scrape time.
fn process(e: &mut DescriptorEncoder) -> fmt::Result {
    let p = procstat::read();
    gauge(
        e,
        "process_resident_memory_bytes",
        "Resident set size.",
        p.rss_bytes as i64,
    )?;
    let cpu = ConstCounter::new(p.cpu_seconds);
    let help = "User and system CPU time.";
    cpu.encode(e.encode_descriptor("process_cpu_seconds", help, None, cpu.metric_type())?)?;
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
    )
}

impl Collector for GatewayCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let e = &mut enc;
        for s in SERIES {
            self.series(e, s)?;
        }
        self.labelled(e, REJECTS, Counters::rejects)?;
        self.labelled(e, RESUMES, Counters::resumes)?;
        self.labelled(e, LOSSES, Counters::lost)?;
        self.rpc(e)?;
        process(e)
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

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::metrics::Loss;

    /// Every declared series and family is in the body once, with its help,
    /// and no two share a name.
    #[test]
    fn every_declared_name_is_exposed_once() {
        let core = Arc::new(Counters::default());
        core.lose(Loss::MeshFull, 5);
        let body = render(&[Arc::clone(&core), core]);
        let names = SERIES.iter().map(|s| (s.name, s.help));
        let families = [REJECTS, RESUMES, LOSSES, RPC_LATENCY].map(|f| (f.name, f.help));
        let mut seen = HashSet::new();
        for (name, help) in names.chain(families) {
            assert!(seen.insert(name), "{name} is declared twice");
            let line = format!("# HELP {name} {help}");
            assert_eq!(body.matches(&format!("{line}\n")).count(), 1, "{line}");
        }
        assert!(body.contains("gateway_messages_lost_total{reason=\"mesh_full\"} 10\n"));
    }
}
