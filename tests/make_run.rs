//! `make run`'s script as a newcomer meets it: the commands its banner
//! prints work as printed (the CLI push, the Python client), and Ctrl-C
//! (SIGINT to the terminal's whole process group) stops everything once,
//! gracefully: no second signal cutting the gateway's drain short, exit 0.
//! The chat demo at the banner's URL works in Chromium, two tabs talking.
//! Runs tools/run.sh on free loopback ports with the release binaries
//! (`make test` builds them before the integration tests).

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;

fn free_addr() -> String {
    format!("127.0.0.1:{}", free_port())
}

#[test]
fn the_banner_commands_work_and_ctrl_c_stops_everything_once() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    if !repo.join("target/release/ws-gateway").exists() || !peers::python().exists() {
        cannot_run(
            "make run",
            "release binaries or target/venv missing (make test builds both)",
        );
        return;
    }
    let mut child = Command::new("bash")
        .arg(repo.join("tools/run.sh"))
        .current_dir(repo)
        .envs([
            ("GW_LISTEN", free_addr()),
            ("API_LISTEN", free_addr()),
            ("ADMIN_LISTEN", free_addr()),
            ("DEMO_LISTEN", free_addr()),
        ])
        .process_group(0)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("bash runs");
    // A failed assertion must not leave ws-api, the gateway and the demo
    // server running: the whole group goes when the test ends.
    let _group = KillGroup(child.id() as i32);
    let (tx, rx) = mpsc::channel::<String>();
    for out in [
        Box::new(child.stdout.take().expect("stdout")) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().expect("stderr")),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
    }
    let mut seen = Vec::new();
    let until = Instant::now() + DEADLINE;
    while !seen
        .iter()
        .any(|l: &String| l.contains("Ctrl-C stops them all"))
    {
        let left = until.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => seen.push(line),
            Err(_) => panic!("no banner within {DEADLINE:?}:\n{}", seen.join("\n")),
        }
    }
    let banner = |start: &str| {
        seen.iter()
            .find(|l| l.trim_start().starts_with(start))
            .unwrap_or_else(|| panic!("no banner line starting {start}"))
            .trim()
            .to_owned()
    };
    // The push, as printed (no session yet: it reaches none, and says so).
    let push = banner("./target/release/ws-api push");
    let out = Command::new("bash")
        .args(["-c", &push])
        .current_dir(repo)
        .output()
        .expect("push");
    assert!(
        out.status.success(),
        "{push}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("pushed to 0 session(s) of uid 42"));
    // The client, as printed, with a line typed into it.
    let client = banner("target/venv/bin/python3 -m websockets");
    let typed = banner(r#"{"type":"message""#);
    let typed = typed.split_whitespace().next().expect("frame");
    let mut py = Command::new("bash")
        .args(["-c", &format!("exec {client}")])
        .current_dir(repo)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("client");
    let mut stdin = py.stdin.take().expect("stdin");
    std::io::Write::write_all(&mut stdin, format!("{typed}\n").as_bytes()).expect("type");
    let (echo_tx, echo_rx) = mpsc::channel();
    let stdout = py.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = echo_tx.send(line);
        }
    });
    let until = Instant::now() + DEADLINE;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        let line = echo_rx
            .recv_timeout(left)
            .expect("the echo, before the deadline");
        if line.contains(r#""type":"message""#) {
            break;
        }
    }
    drop(stdin);
    let _ = py.kill();
    let _ = py.wait();

    demo_in_chromium(repo, &banner("JS client"));

    // SAFETY: kill(2) on the process group this test made.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::kill(-(child.id() as i32), libc::SIGINT) };
    assert_eq!(rc, 0);
    let until = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        assert!(
            Instant::now() < until,
            "make run still running after Ctrl-C"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    seen.extend(rx.try_iter());
    let log = seen.join("\n");
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(log.contains("make run: stopped"), "{log}");
    assert!(log.contains("drained"), "{log}");
    assert!(!log.contains("second shutdown signal"), "{log}");
}

/// The chat demo at the banner's URL, in two Chromium tabs
/// (tests/browser/demo.mjs): a line said in one shows in the other.
fn demo_in_chromium(repo: &Path, line: &str) {
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no demo URL in {line:?}"));
    let gw = url.split("?gw=").nth(1).expect("the URL names the gateway");
    let out = Command::new("node")
        .arg(repo.join("tests/browser/demo.mjs"))
        .arg(url)
        .output()
        .expect("node runs (make deps installs playwright-core)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let seen: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    assert_eq!(seen["gw"], gw, "{seen}");
    assert_eq!(
        seen["states"],
        serde_json::json!(["live", "live"]),
        "{seen}"
    );
    assert_eq!(seen["seen"], "11: hello from tab 11", "{seen}");
}

/// SIGKILLs a process group when dropped (a no-op once it has exited).
struct KillGroup(i32);

impl Drop for KillGroup {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the process group this test made.
        #[allow(unsafe_code)]
        unsafe {
            libc::kill(-self.0, libc::SIGKILL);
        }
    }
}
