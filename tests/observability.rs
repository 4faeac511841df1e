//! What an operator installs beside the binaries: the Prometheus rules
//! (`promtool check rules`, and `promtool test rules` proving the alerts
//! fire), the Grafana dashboard (valid JSON, and every metric it or the
//! rules name is one the binaries export, per docs/metrics.md, itself
//! checked against them), and a real Prometheus scraping a running gateway
//! and ws-api with those rules loaded.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Prometheus's binaries, as `make deps` unpacks them (else from PATH).
fn prometheus_bin(name: &str) -> PathBuf {
    let unpacked = repo().join("target/prometheus/usr/bin").join(name);
    if unpacked.exists() {
        unpacked
    } else {
        PathBuf::from(name)
    }
}

fn promtool(args: &[&str]) {
    let out = Command::new(prometheus_bin("promtool"))
        .args(args)
        .current_dir(repo().join("deploy/prometheus"))
        .output()
        .expect("promtool runs (make deps unpacks it into target/prometheus)");
    assert!(
        out.status.success(),
        "promtool {args:?}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn promtool_checks_the_rules_and_their_alerts_fire() {
    promtool(&["check", "rules", "rules.yml"]);
    promtool(&["test", "rules", "rules_test.yml"]);
}

/// The metric names in a PromQL text: identifiers that start like ours.
fn metric_names(text: &str, into: &mut BTreeSet<String>) {
    let mut rest = text;
    while let Some(at) = ["gateway_", "ws_api_", "process_"]
        .iter()
        .filter_map(|p| rest.find(p))
        .min()
    {
        let word: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        // A recording rule's name (gateway:messages_in:rate1m) is not a metric.
        let after = rest[at + word.len()..].chars().next();
        let before = rest[..at].chars().last();
        if after != Some(':') && before != Some(':') {
            let base = word
                .strip_suffix("_bucket")
                .or_else(|| word.strip_suffix("_count"))
                .or_else(|| word.strip_suffix("_sum"))
                .unwrap_or(&word);
            into.insert(base.to_owned());
        }
        rest = &rest[at + word.len()..];
    }
}

#[test]
fn every_metric_the_rules_and_the_dashboard_name_exists() {
    let doc = std::fs::read_to_string(repo().join("docs/metrics.md")).expect("docs/metrics.md");
    let documented: BTreeSet<&str> = doc
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .collect();
    assert!(documented.len() > 40, "{documented:?}");

    let mut named = BTreeSet::new();
    let rules = std::fs::read_to_string(repo().join("deploy/prometheus/rules.yml")).expect("rules");
    metric_names(&rules, &mut named);
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("deploy/grafana/ws-gateway.json")).expect("dashboard"),
    )
    .expect("the dashboard is JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(!panels.is_empty());
    for panel in panels {
        for target in panel["targets"].as_array().expect("targets") {
            metric_names(target["expr"].as_str().expect("expr"), &mut named);
        }
    }
    assert!(named.contains("gateway_messages_lost_total"), "{named:?}");
    let missing: Vec<_> = named
        .iter()
        .filter(|n| !documented.contains(n.as_str()))
        .collect();
    assert!(missing.is_empty(), "named but not exported: {missing:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_the_gateway_and_ws_api_with_the_rules() {
    let api = ws_api_with("127.0.0.1:0", "echo", &["--http-listen", "127.0.0.1:0"]);
    let gw = gateway(api.addr, 1, &[]);
    let _ws = connect(gw.addr, "5").await;

    let dir = profile_dir().join(format!("prometheus-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("prometheus dir");
    let config = dir.join("prometheus.yml");
    let rules = repo().join("deploy/prometheus/rules.yml");
    std::fs::write(
        &config,
        format!(
            "global: {{ scrape_interval: 1s, evaluation_interval: 1s }}\n\
             rule_files: [{rules:?}]\n\
             scrape_configs:\n\
             - job_name: ws-gateway\n  static_configs: [{{ targets: ['{}'] }}]\n\
             - job_name: ws-api\n  static_configs: [{{ targets: ['{}'] }}]\n",
            gw.admin.expect("gateway admin"),
            api.admin.expect("ws-api http"),
        ),
    )
    .expect("config");
    let port = free_port();
    let _prometheus = Killed(
        Command::new(prometheus_bin("prometheus"))
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus runs (make deps unpacks it into target/prometheus)"),
    );
    // curl: Prometheus answers in chunks, which http_get does not read.
    let get = |path: &str| -> Option<Value> {
        let out = Command::new("curl")
            .args(["-sf", "--max-time", "5"])
            .arg(format!("http://127.0.0.1:{port}{path}"))
            .output()
            .expect("curl runs");
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).expect("JSON"))
    };
    let query = |q: &str| get(&format!("/api/v1/query?query={q}"));
    let until = Instant::now() + Duration::from_secs(30);
    let sessions = loop {
        assert!(
            Instant::now() < until,
            "no scrape of the gateway within 30 s"
        );
        if let Some(v) = query("gateway_websocket_online_totals")
            && let Some(sample) = v["data"]["result"].as_array().and_then(|r| r.first())
        {
            break sample["value"][1].as_str().unwrap_or_default().to_owned();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(sessions, "1");
    loop {
        assert!(Instant::now() < until, "ws-api never scraped");
        let up = query("up%7Bjob%3D%22ws-api%22%7D");
        if up.is_some_and(|v| v["data"]["result"][0]["value"][1] == "1") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let rules = get("/api/v1/rules").expect("the rules API answers");
    let groups = rules["data"]["groups"].as_array().expect("rule groups");
    assert_eq!(groups.len(), 2, "{rules}");
}

/// A child killed when the test ends, failed or not.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
