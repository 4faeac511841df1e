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

/// Every option, each set away from its default: what `--print-config`
/// writes must load back through `--config` and print the same again.
/// `cores` conflicts with `cpus`, so it goes through a second pass.
const NON_DEFAULT: &[(&str, &str)] = &[
    ("listen", "127.0.0.1:18080"),
    ("upstream", "https://127.0.0.1:1,https://127.0.0.1:2"),
    ("upstream-ca", "/nonexistent/ca.pem"),
    ("upstream-cert", "/nonexistent/gw.pem"),
    ("upstream-key", "/nonexistent/gw.key"),
    ("upstream-tls-name", "ws-api.internal"),
    ("upstream-secret-file", "/nonexistent/gateway.secret"),
    ("upstream-resolve-interval", "7s"),
    ("admin-listen", "127.0.0.1:19090"),
    ("cpus", "0"),
    ("paths", "/a,/b"),
    ("frame-format", "raw"),
    ("compression", "deflate"),
    ("compression-level", "6"),
    ("compression-min-size", "1024"),
    ("compression-context-takeover", ""),
    ("compression-window-bits", "11"),
    ("tls-cert", "/nonexistent/cert.pem"),
    ("tls-key", "/nonexistent/key.pem"),
    (
        "allowed-origins",
        "https://a.example,https://b.example:8443",
    ),
    ("subprotocols", "one,two"),
    ("refuse-in-band", "never"),
    ("advertise", "10.0.0.1:8080"),
    ("max-connections-per-core", "7"),
    ("max-message-size", "1000"),
    ("max-frame-size", "999"),
    ("handshake-timeout", "2s"),
    ("write-timeout", "3s"),
    ("resume-timeout", "4s"),
    ("shutdown-timeout", "12s"),
    ("drain-window", "6s"),
    ("ping-interval", "7s"),
    ("app-ping", ""),
    ("max-connections-per-user", "3"),
    ("connect-rate", "1.5"),
    ("per-ip-connect-rate", "2.5"),
    ("max-inbound-rate", "3.5"),
    ("send-queue", "9"),
    ("upstream-buffer", "12345"),
    ("upstream-flush-interval", "1ms"),
    ("batch-wait", "0s"),
    ("rpc-timeout", "8s"),
    ("upstream-keepalive", "9s"),
    ("reassert-rate", "500.5"),
    ("reassert-in-flight", "7"),
    ("reconnect-min", "1s"),
    ("reconnect-max", "11s"),
    ("io-memory", "2097152"),
    ("log", "debug"),
    ("log-format", "json"),
];

fn print_config(args: &[String]) -> String {
    let out = gateway()
        .args(args)
        .arg("--print-config")
        .env_clear()
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// `defaults`: what `--print-config` prints with no options.
fn round_trip(options: &[(&str, &str)], defaults: &toml::Table, name: &str) {
    let mut args = Vec::new();
    for (flag, value) in options {
        args.push(format!("--{flag}"));
        if !value.is_empty() {
            args.push((*value).to_owned());
        }
    }
    let printed = print_config(&args);
    let printed_t: toml::Table = printed.parse().expect("--print-config is TOML");
    for (flag, _) in options {
        let key = flag.replace('-', "_");
        assert_ne!(
            printed_t.get(&key),
            defaults.get(&key),
            "{key} is at its default"
        );
    }
    let file = temp_file(name, &printed);
    let again = print_config(&["--config".into(), file.to_str().unwrap().into()]);
    let _ = std::fs::remove_file(file);
    assert_eq!(
        again, printed,
        "--print-config does not load back through --config"
    );
}

#[test]
fn print_config_loads_back_through_config_for_every_option() {
    use clap::CommandFactory;
    let listed: Vec<&str> = NON_DEFAULT
        .iter()
        .map(|(f, _)| *f)
        .chain(["cores"])
        .collect();
    for arg in ws_gateway::config::Config::command().get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if matches!(
            long,
            "config" | "print-config" | "check" | "help" | "version"
        ) {
            continue;
        }
        assert!(listed.contains(&long), "--{long} is not in NON_DEFAULT");
    }
    let defaults: toml::Table = print_config(&[]).parse().expect("--print-config is TOML");
    round_trip(NON_DEFAULT, &defaults, "all.toml");
    let with_cores: Vec<_> = NON_DEFAULT
        .iter()
        .copied()
        .filter(|(f, _)| *f != "cpus")
        .chain([("cores", "1")])
        .collect();
    round_trip(&with_cores, &defaults, "cores.toml");
}

#[test]
fn a_switch_in_a_file_takes_true_or_false_only() {
    for (text, ok) in [
        ("app_ping = true\n", true),
        ("app_ping = false\n", true),
        ("app_ping = 1\n", false),
    ] {
        let file = temp_file("switch.toml", text);
        let out = gateway()
            .args(["--config", file.to_str().unwrap(), "--print-config"])
            .env_clear()
            .output()
            .expect("run");
        let _ = std::fs::remove_file(file);
        assert_eq!(
            out.status.success(),
            ok,
            "{text}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        if ok {
            let cfg: toml::Table = String::from_utf8_lossy(&out.stdout).parse().unwrap();
            assert_eq!(
                cfg["app_ping"].as_bool(),
                Some(text.contains("true")),
                "{text}"
            );
        } else {
            assert!(String::from_utf8_lossy(&out.stderr).contains("app_ping"));
        }
    }
}

/// Sizes take units, from a flag, the environment or a file, as docs/configuration.md
/// writes them ("4 MiB"); `--print-config` gives bytes, which load back.
#[test]
fn sizes_take_units_wherever_they_are_set() {
    let file = temp_file("sizes.toml", "max_frame_size = \"16KiB\"\n");
    let out = gateway()
        .args(["--config", file.to_str().unwrap()])
        .args(["--upstream-buffer", "4MiB", "--max-message-size", "1 MB"])
        .arg("--print-config")
        .env("WS_GATEWAY_IO_MEMORY", "2MiB")
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cfg: toml::Table = String::from_utf8(out.stdout).unwrap().parse().unwrap();
    assert_eq!(cfg["upstream_buffer"].as_integer(), Some(4 << 20));
    assert_eq!(cfg["max_message_size"].as_integer(), Some(1_000_000));
    assert_eq!(cfg["io_memory"].as_integer(), Some(2 << 20));
    assert_eq!(cfg["max_frame_size"].as_integer(), Some(16 << 10));
    let _ = std::fs::remove_file(file);
    let out = gateway()
        .args(["--upstream-buffer", "4XB", "--print-config"])
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("--upstream-buffer") && stderr.contains("unknown unit"),
        "{stderr}"
    );
}

#[test]
fn a_refused_value_names_the_variable_or_the_file_line_it_came_from() {
    let out = gateway()
        .args(["--print-config"])
        .env("WS_GATEWAY_SEND_QUEUE", "many")
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("environment variable WS_GATEWAY_SEND_QUEUE"),
        "{err}"
    );

    let file = temp_file("line.toml", "send_queue = 5\n\nrpc-timeout = \"soon\"\n");
    let out = gateway()
        .args(["--config", file.to_str().unwrap(), "--print-config"])
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("line 3, key `rpc-timeout`"), "{err}");
    let _ = std::fs::remove_file(file);

    // On the command line the flag is the name to give.
    let out = gateway()
        .args(["--send-queue", "many", "--print-config"])
        .env("WS_GATEWAY_SEND_QUEUE", "7")
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--send-queue") && !err.contains("environment variable"),
        "{err}"
    );
}

#[test]
fn listen_addresses_take_host_names_and_check_resolves_upstreams() {
    let args = [
        "--listen",
        "localhost:18080",
        "--admin-listen",
        "localhost:0",
    ];
    let cfg: toml::Table = print_config(&args.map(String::from))
        .parse()
        .expect("--print-config is TOML");
    let listen = cfg["listen"].as_str().unwrap_or_default();
    assert!(
        listen.ends_with(":18080") && listen != "0.0.0.0:18080",
        "{listen}"
    );

    let out = gateway()
        .args([
            "--upstream",
            "127.0.0.1:1,no-such-host.invalid:8081",
            "--check",
        ])
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("--upstream no-such-host.invalid:8081 does not resolve"),
        "{err}"
    );
}

#[test]
fn https_upstreams_need_their_ca_and_are_all_or_none() {
    for (args, says) in [
        (&["--upstream", "https://127.0.0.1:1"][..], "upstream-ca"),
        (
            &[
                "--upstream",
                "https://127.0.0.1:1,127.0.0.1:2",
                "--upstream-ca",
                "/x",
            ][..],
            "every entry is https://",
        ),
        (&["--upstream-ca", "/x"][..], "need https:// upstreams"),
    ] {
        let out = gateway()
            .args(args)
            .arg("--print-config")
            .output()
            .expect("run");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} accepted");
        assert!(err.contains(says), "{args:?}: {err}");
    }
}
