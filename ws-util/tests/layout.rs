//! Keeps ws-util's `# Layout` true, with the gateway's check (its rules and
//! the tests that prove it finds each kind of upward import are in the
//! workspace's `tests/layout/`).

#[path = "../../tests/layout/check.rs"]
mod check;

#[test]
fn every_layout_is_true() {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let findings = check::check_dir(&src);
    assert!(findings.is_empty(), "layout:\n{}", findings.join("\n"));
}
