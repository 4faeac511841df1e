//! Keeps the gateway's `# Layout`s true (the rules are in
//! `tests/layout/check.rs`, which ws-api's layout test shares), and proves
//! on a small tree that the check finds each kind of upward import.

#[path = "layout/check.rs"]
mod check;

use std::collections::BTreeMap;
use std::path::Path;

#[test]
fn every_layout_is_true() {
    let findings = check::check_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    assert!(findings.is_empty(), "layout:\n{}", findings.join("\n"));
}

/// A small tree in the gateway's shape: `a` above folder `b` (`b::x` above
/// `b::y`) above `c`, and a re-export `d` at the bottom.
fn fixture(edits: &[(&str, &str)]) -> Vec<String> {
    let mut files: BTreeMap<String, String> = [
        (
            "lib.rs",
            "//! # Layout\n//!\n//! - [`a`]: top.\n//! - [`b`]: middle.\n//! - [`c`]: bottom.\n\
             //! - [`d`]: wire types.\n\npub mod a;\npub mod b;\npub mod c;\n#[cfg(test)]\nmod testing;\n\
             pub use ws_proto as d;\n",
        ),
        ("a.rs", "use crate::b::x::X;\nuse crate::{c, d};\n"),
        (
            "b/mod.rs",
            "//! # Layout\n//!\n//! - this file: shared.\n//! - [`x`]: upper.\n//! - [`y`]: lower.\n\n\
             pub mod x;\npub mod y;\npub struct Shared;\n",
        ),
        ("b/x.rs", "use super::y::Y;\nuse super::Shared;\npub struct X;\n"),
        ("b/y.rs", "use crate::c::C;\npub struct Y;\n#[cfg(test)]\nmod tests { use crate::a; }\n"),
        ("c.rs", "pub struct C;\n"),
        ("testing.rs", "use crate::a;\n"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    for (file, code) in edits {
        files.insert((*file).to_owned(), (*code).to_owned());
    }
    check::check(&files)
}

#[test]
fn the_checker_passes_a_true_layout() {
    assert_eq!(fixture(&[]), Vec::<String>::new());
}

/// Each way an upward import can be written is caught.
#[test]
fn the_checker_finds_each_kind_of_upward_import() {
    let cases = [
        (
            "c.rs",
            "use crate::{\n    a::A,\n    b,\n};\n",
            "c uses crate::a::A",
        ),
        (
            "c.rs",
            "fn f() { crate::b::x::X; }\n",
            "c uses crate::b::x::X",
        ),
        (
            "c.rs",
            "fn f() { tracing::info!(\"{}\", crate::a::NAME); }\n",
            "c uses crate::a::NAME",
        ),
        ("b/y.rs", "use super::x::X;\n", "b::y uses super::x::X"),
        (
            "b/y.rs",
            "use super::super::a;\n",
            "b::y uses super::super::a",
        ),
        ("c.rs", "use crate::b::*;\n", "c uses crate::b"),
    ];
    for (file, code, want) in cases {
        let found = fixture(&[(file, code)]);
        assert!(
            found.iter().any(|f| f.contains(want)),
            "{code:?}: {found:?}"
        );
    }
}

#[test]
fn the_checker_finds_unlisted_and_missing_modules() {
    let lib = "//! # Layout\n//!\n//! - [`a`]: top.\n//! - [`b`]: middle.\n//! - [`e`]: listed only.\n\
               //! - [`d`]: wire types.\n\npub mod a;\npub mod b;\npub mod c;\npub use ws_proto as d;\n";
    let found = fixture(&[("lib.rs", lib)]);
    assert!(
        found
            .iter()
            .any(|f| f.contains("mod c is not in its # Layout")),
        "{found:?}"
    );
    assert!(
        found
            .iter()
            .any(|f| f.contains("lists e, which it does not declare")),
        "{found:?}"
    );
}
