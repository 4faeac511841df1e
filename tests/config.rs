//! Configuration precedence (flag > env > file > default) and rejection of
//! bad files, checked through the real binary's `--print-config`.

use std::process::Command;

fn gateway() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ws-gateway"))
}

fn temp_file(name: &str, text: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("ws-gateway-test-{}-{name}", std::process::id()));
    std::fs::write(&path, text).expect("write config");
    path
}

#[test]
fn flag_beats_env_beats_file_beats_default() {
    let file = temp_file(
        "ok.toml",
        "send_queue = 11\nrpc-timeout = \"7s\"\nmax_frame_size = 1000\nwrite_timeout = \"3s\"\n",
    );
    let out = gateway()
        .args([
            "--config",
            file.to_str().unwrap(),
            "--rpc-timeout",
            "9s",
            "--print-config",
        ])
        .env("WS_GATEWAY_SEND_QUEUE", "22")
        .env("WS_GATEWAY_WRITE_TIMEOUT", "4s")
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let cfg: toml::Table = text.parse().expect("--print-config is TOML");
    assert_eq!(cfg["rpc_timeout"].as_str(), Some("9s"), "flag beats file");
    assert_eq!(cfg["send_queue"].as_integer(), Some(22), "env beats file");
    assert_eq!(cfg["write_timeout"].as_str(), Some("4s"), "env beats file");
    assert_eq!(
        cfg["max_frame_size"].as_integer(),
        Some(1000),
        "file beats default"
    );
    assert_eq!(cfg["handshake_timeout"].as_str(), Some("10s"), "default");
    let _ = std::fs::remove_file(file);
}

#[test]
fn bad_config_is_rejected_with_its_key() {
    for (text, key) in [
        ("bogus_key = 1\n", "bogus_key"),
        ("send_queue = \"many\"\n", "--send-queue"),
        ("send_queue = 0\n", "send-queue"),
    ] {
        let file = temp_file("bad.toml", text);
        let out = gateway()
            .args(["--config", file.to_str().unwrap(), "--print-config"])
            .output()
            .expect("run");
        assert!(!out.status.success(), "{text} accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(key),
            "error for {text:?} does not name {key}: {err}"
        );
        let _ = std::fs::remove_file(file);
    }
}
