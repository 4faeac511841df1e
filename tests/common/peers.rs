//! ws-api implementations that share no code with the gateway's gRPC
//! client, so the wire contract is checked against more than one server:
//!
//! - tonic (the reference `ws-api`), which sends a stream's response
//!   headers at once, and the same with `--lazy-headers`;
//! - grpc-go (`tests/peers/grpc-go`, built here from Debian's packages);
//! - gRPC C-core (`tests/peers/grpcio`, Python `grpcio` in `target/venv`).
//!
//! grpc-go and C-core send response headers lazily, with the first message.
//! `make deps` installs what they need. Where one is missing the test says
//! so loudly, and under `CI=true` it fails instead of skipping.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use super::{Proc, profile_dir, spawn_and_wait, ws_api_with};

/// One implementation of ws-api's `ExchangeService` + `BizMsgService`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    Tonic,
    TonicLazyHeaders,
    GrpcGo,
    Grpcio,
}

/// Starts `peer` on `listen` (port 0 for an ephemeral one), echoing every
/// upstream message. `None` (after a loud message) where the peer cannot
/// run on this machine and `CI` is not `true`.
pub fn start(peer: Peer, listen: &str) -> Option<Proc> {
    let marker = "ws-api listening on ";
    match peer {
        Peer::Tonic => Some(ws_api_with(listen, "echo", &[])),
        Peer::TonicLazyHeaders => Some(ws_api_with(listen, "echo", &["--lazy-headers"])),
        Peer::GrpcGo => {
            let bin = grpc_go_binary()
                .as_ref()
                .map_err(|e| unavailable(peer, e))
                .ok()?;
            let mut cmd = Command::new(bin);
            cmd.args(["--listen", listen]);
            Some(spawn_and_wait(cmd, marker))
        }
        Peer::Grpcio => {
            let python = python();
            let ready = Command::new(&python)
                .args(["-c", "import grpc, grpc_tools"])
                .status()
                .is_ok_and(|s| s.success());
            if !ready {
                let why = format!("{} cannot import grpc (run `make deps`)", python.display());
                unavailable(peer, &why);
                return None;
            }
            let mut cmd = Command::new(python);
            cmd.arg(repo().join("tests/peers/grpcio/ws_api.py"))
                .args(["--listen", listen]);
            Some(spawn_and_wait(cmd, marker))
        }
    }
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The Python of the venv `make deps` creates (websockets, grpcio).
pub fn python() -> PathBuf {
    repo().join("target/venv/bin/python3")
}

/// Builds the grpc-go peer once per test process (a warm build takes well
/// under a second; concurrent builds take turns on a lock).
fn grpc_go_binary() -> &'static Result<PathBuf, String> {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BIN.get_or_init(|| {
        let out = profile_dir().join("peers/ws-api-grpc-go");
        let built = Command::new("bash")
            .arg(repo().join("tests/peers/grpc-go/build.sh"))
            .arg(&out)
            .output()
            .map_err(|e| format!("running build.sh: {e}"))?;
        if !built.status.success() {
            return Err(format!(
                "tests/peers/grpc-go/build.sh failed ({}): {}",
                built.status,
                String::from_utf8_lossy(&built.stderr)
            ));
        }
        Ok(out)
    })
}

/// A peer that cannot run here: fails under CI, else says so loudly.
fn unavailable(peer: Peer, why: &str) {
    super::cannot_run(&format!("the {peer:?} ws-api"), why);
}
