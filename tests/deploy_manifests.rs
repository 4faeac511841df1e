//! deploy/k8s validates against the Kubernetes API schemas offline
//! (kubernetes-validate, strict: an unknown or misspelt field fails), and
//! the flags its containers pass are ones the binaries accept.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

#[test]
fn the_kubernetes_manifests_validate_and_their_flags_parse() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let manifest = repo.join("deploy/k8s/ws-gateway.yaml");
    let validate = peers::python().with_file_name("kubernetes-validate");
    let out = Command::new(&validate)
        .args(["--strict", "--quiet"])
        .arg(&manifest)
        .output()
        .expect("kubernetes-validate runs (make deps installs it in target/venv)");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // Each container's `- --flag=value` args, checked by the binary itself.
    let text = std::fs::read_to_string(&manifest).expect("manifest");
    for (container, bin, check) in [
        ("- name: ws-gateway", "ws-gateway", "--print-config"),
        ("- name: ws-api", "ws-api", "--help"),
    ] {
        let start = text.find(container).expect("container");
        let args: Vec<&str> = text[start..]
            .lines()
            .skip_while(|l| !l.trim().starts_with("args:"))
            .skip(1)
            .map(str::trim)
            .take_while(|l| l.starts_with("- --") || l.starts_with('#'))
            .filter_map(|l| l.strip_prefix("- "))
            .collect();
        assert!(args.len() >= 3, "{bin}: {args:?}");
        let out = Command::new(workspace_bin(bin))
            .args(&args)
            .arg(check)
            .output()
            .expect("binary runs");
        assert!(
            out.status.success(),
            "{bin} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
