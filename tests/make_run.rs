//! `make run`'s script as a newcomer meets it: the commands its banner
//! prints work as printed (the CLI push, the Python client), and Ctrl-C
//! (SIGINT to the terminal's whole process group) stops everything once,
//! gracefully: no second signal cutting the gateway's drain short, exit 0.
//! The chat demo at the banner's URL works in Chromium, two tabs talking.
//! With `AUTH=jwt` the banner's token is a signed one that ws-api admits.
//! Runs tools/run.sh on free loopback ports with the release binaries
//! (`make test` builds them before the integration tests).

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;

fn free_addr() -> String {
    format!("127.0.0.1:{}", free_port())
}

/// tools/run.sh running on free ports, its process group, and what it printed.
struct Run {
    child: std::process::Child,
    _group: KillGroup,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Run {
    /// Starts it with `env` beside the free ports, and waits for the banner.
    fn start(repo: &Path, env: &[(&str, &str)]) -> Run {
        let mut child = Command::new("bash")
            .arg(repo.join("tools/run.sh"))
            .current_dir(repo)
            .envs([
                ("GW_LISTEN", free_addr()),
                ("API_LISTEN", free_addr()),
                ("ADMIN_LISTEN", free_addr()),
                ("DEMO_LISTEN", free_addr()),
            ])
            .envs(env.iter().copied())
            .process_group(0)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("bash runs");
        // A failed assertion must not leave ws-api, the gateway and the demo
        // server running: the whole group goes when the test ends.
        let group = KillGroup(child.id() as i32);
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
        let mut run = Run {
            child,
            _group: group,
            lines: rx,
            seen: Vec::new(),
        };
        let until = Instant::now() + DEADLINE;
        while !run.seen.iter().any(|l| l.contains("Ctrl-C stops them all")) {
            let left = until.saturating_duration_since(Instant::now());
            match run.lines.recv_timeout(left) {
                Ok(line) => run.seen.push(line),
                Err(_) => panic!("no banner within {DEADLINE:?}:\n{}", run.seen.join("\n")),
            }
        }
        run
    }

    /// The banner's line that starts with `start`, trimmed.
    fn banner(&self, start: &str) -> String {
        self.seen
            .iter()
            .find(|l| l.trim_start().starts_with(start))
            .unwrap_or_else(|| panic!("no banner line starting {start}"))
            .trim()
            .to_owned()
    }
}

/// Whether the release binaries and the venv are there; says so if not.
fn can_run(repo: &Path) -> bool {
    if !repo.join("target/release/ws-gateway").exists() || !peers::python().exists() {
        cannot_run(
            "make run",
            "release binaries or target/venv missing (make test builds both)",
        );
        return false;
    }
    true
}

/// The banner's push command, run as printed: its stdout.
fn push(repo: &Path, run: &Run) -> String {
    let push = run.banner("./target/release/ws-api push");
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
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The banner's client command, running, with the banner's line typed
/// into it: the process, its input (it ends when that closes) and its
/// stdout lines.
fn client(repo: &Path, run: &Run) -> (std::process::Child, ChildStdin, mpsc::Receiver<String>) {
    let client = run.banner("target/venv/bin/python3 -m websockets");
    let typed = run.banner(r#"{"type":"message""#);
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
    let (tx, rx) = mpsc::channel();
    let stdout = py.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    (py, stdin, rx)
}

/// Waits for a line of the client's that contains `want`.
fn client_prints(lines: &mpsc::Receiver<String>, want: &str) {
    let until = Instant::now() + DEADLINE;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        let line = lines
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("the client never printed {want}"));
        if line.contains(want) {
            return;
        }
    }
}

#[test]
fn the_banner_commands_work_and_ctrl_c_stops_everything_once() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    if !can_run(repo) {
        return;
    }
    let mut run = Run::start(repo, &[]);
    // The push, as printed (no session yet: it reaches none, and says so).
    assert!(push(repo, &run).starts_with("pushed to 0 session(s) of uid 42"));
    // The client, as printed, with a line typed into it: the echo.
    let (mut py, _stdin, lines) = client(repo, &run);
    client_prints(&lines, r#""type":"message""#);
    let _ = py.kill();
    let _ = py.wait();

    demo_in_chromium(repo, &run.banner("JS client"));

    // SAFETY: kill(2) on the process group this test made.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::kill(-(run.child.id() as i32), libc::SIGINT) };
    assert_eq!(rc, 0);
    let until = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(status) = run.child.try_wait().expect("try_wait") {
            break status;
        }
        assert!(
            Instant::now() < until,
            "make run still running after Ctrl-C"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let rest: Vec<String> = run.lines.try_iter().collect();
    run.seen.extend(rest);
    let log = run.seen.join("\n");
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(log.contains("make run: stopped"), "{log}");
    assert!(log.contains("drained"), "{log}");
    assert!(!log.contains("second shutdown signal"), "{log}");
}

/// `make run AUTH=jwt`: the banner's token is a signed one, admitted, and
/// the banner's push reaches the client that uses it.
#[test]
fn with_auth_jwt_the_banner_token_is_admitted_and_gets_the_push() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    if !can_run(repo) {
        return;
    }
    let run = Run::start(repo, &[("AUTH", "jwt")]);
    let client_line = run.banner("target/venv/bin/python3 -m websockets");
    assert!(
        client_line.contains("?token=eyJ"),
        "not a JWT: {client_line}"
    );
    let (mut py, _stdin, lines) = client(repo, &run);
    client_prints(&lines, r#""type":"message""#);
    assert!(push(repo, &run).starts_with("pushed to 1 session(s) of uid 42"));
    client_prints(&lines, r#""type":"notice""#);
    let _ = py.kill();
    let _ = py.wait();
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
