//! Headless Chromium for the browser tests (`tests/browser.rs`,
//! `tests/js_client.rs`): Debian's `chromium`, driven by npm
//! `playwright-core` from `tests/browser/`.
//!
//! `tests/browser/driver.mjs` serves a page from two origins, keeps Chromium
//! open and runs one call per stdin line in the page, answering each with
//! one JSON line. Needs `/usr/bin/chromium` (apt `chromium`) and `npm ci` in
//! `tests/browser`; where either is missing [`Browser::start`] says so
//! loudly and returns `None`, and under `CI=true` it fails instead.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// How long Chromium may take to start and load both pages.
const STARTUP: Duration = Duration::from_secs(45);
/// A page call waits at most 15 s for what it waits for; the driver
/// answers by then.
const CALL: Duration = Duration::from_secs(25);

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

fn chromium_path() -> PathBuf {
    std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/usr/bin/chromium".into())
}

/// Chromium cannot run here: fails under CI, else says so loudly.
fn unavailable(why: &str) {
    super::cannot_run("the browser test (chromium, tests/browser npm ci)", why);
}

/// Headless Chromium with a page on an allowed and a foreign origin.
pub struct Browser {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    /// The page's origin, `http://127.0.0.1:<port>`.
    pub app: String,
    /// Another origin (another port) with the same page.
    pub foreign: String,
}

impl Browser {
    /// Starts the driver on `page` (`page.html`: raw WebSockets;
    /// `client.html`: clients/js/wsgw.js). `None` (after a loud message)
    /// where Chromium or playwright-core is missing and `CI` is not `true`.
    pub fn start(page: &str) -> Option<Browser> {
        let chromium = chromium_path();
        if !chromium.exists() {
            unavailable(&format!("{} is missing", chromium.display()));
            return None;
        }
        if !dir()
            .join("node_modules/playwright-core/package.json")
            .exists()
        {
            unavailable("tests/browser/node_modules/playwright-core is missing");
            return None;
        }
        let mut child = match Command::new("node")
            .arg(dir().join("driver.mjs"))
            .arg(page)
            .env("CHROMIUM", &chromium)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            // Its own process group, so that Drop ends Chromium with it.
            .process_group(0)
            .spawn()
        {
            Ok(child) => child,
            Err(e) => {
                unavailable(&format!("cannot run node: {e}"));
                return None;
            }
        };
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut browser = Browser {
            child,
            stdin,
            lines,
            app: String::new(),
            foreign: String::new(),
        };
        let ready = browser.line(STARTUP, "the driver's ready line");
        assert_eq!(ready["event"], "ready", "{ready}");
        eprintln!("browser: {ready}");
        browser.app = ready["app"].as_str().expect("app origin").to_owned();
        browser.foreign = ready["foreign"].as_str().expect("foreign").to_owned();
        Some(browser)
    }

    fn line(&self, limit: Duration, what: &str) -> Value {
        let line = self
            .lines
            .recv_timeout(limit)
            .unwrap_or_else(|e| panic!("no {what} from driver.mjs within {limit:?}: {e}"));
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("driver said {line:?}: {e}"))
    }

    /// Runs `call(args...)` of the page's script in `page` ("app" or
    /// "foreign"); its answer.
    pub fn call(&mut self, page: &str, call: &str, args: Value) -> Value {
        let cmd = json!({"page": page, "call": call, "args": args});
        let stdin = self.stdin.as_mut().expect("stdin");
        writeln!(stdin, "{cmd}").expect("write to driver");
        stdin.flush().expect("flush");
        let result = self.line(CALL, &format!("answer to {cmd}"));
        eprintln!("{cmd}\n  -> {result}");
        assert_ne!(result["event"], "driver-error", "{result}");
        result
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // End of stdin: the driver closes Chromium and exits.
        drop(self.stdin.take());
        let until = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
        }
        // Whatever is left of the group (node, Chromium) goes now.
        // SAFETY: kill(2) on the process group of our own child.
        #[allow(unsafe_code)]
        unsafe {
            libc::kill(-(self.child.id() as i32), libc::SIGKILL)
        };
        let _ = self.child.wait();
    }
}
