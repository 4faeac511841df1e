//! Keeps every `# Layout` of the workspace's crates true (the gateway,
//! ws-api, ws-util), and proves on a small tree that the check finds each
//! kind of upward import. `src/lib.rs` and each folder's module file
//! list their modules in rank order, one per `//! - [`name`]: …` line
//! under `# Layout`; a module may import what is listed below it (in its
//! own list, or below its folder in an enclosing one), its own children,
//! and its ancestors (a folder's module file holds what its children
//! share), never anything listed above it. Every declared module is listed,
//! and every listed one declared. Test code (`#[cfg(test)]` items and the
//! files they declare) may import anything.
//!
//! Imports are read from the syntax tree (`syn`): `use` groups over several
//! lines, inline `crate::…`/`super::…`/`self::…` paths, and paths inside
//! macro calls.

use std::collections::BTreeMap;
use std::path::Path;

use proc_macro2::{TokenStream, TokenTree};
use syn::visit::Visit;

/// A module's path from the crate root, e.g. `["edge", "listener"]`.
type ModPath = Vec<String>;

/// What the checker knows of one module.
struct Module {
    /// Its rank at each level: lexicographic order is layout order.
    key: Vec<usize>,
    /// The file it lives in, relative to `src/`; `None` for a re-export
    /// (`pub use ws_proto as proto`).
    file: Option<String>,
}

/// Every finding in the tree `files` (paths relative to `src/`).
fn check(files: &BTreeMap<String, String>) -> Vec<String> {
    let mut modules = BTreeMap::new();
    let mut findings = Vec::new();
    collect(
        files,
        "lib.rs",
        Vec::new(),
        Vec::new(),
        &mut modules,
        &mut findings,
    );
    for (path, module) in &modules {
        let Some(file) = &module.file else { continue };
        let Ok(ast) = syn::parse_file(&files[file]) else {
            continue; // collect reported it
        };
        let mut refs = Refs::default();
        refs.visit_file(&ast);
        for used in refs.paths {
            let Some(target) = resolve(path, &used, &modules) else {
                continue;
            };
            let upward = !target.is_empty()
                && !path.starts_with(&target)
                && !target.starts_with(path)
                && modules[&target].key < module.key;
            if upward {
                findings.push(format!(
                    "src/{file}: {} uses {}, which is listed above it",
                    path.join("::"),
                    used.join("::")
                ));
            }
        }
    }
    findings
}

/// Registers the module in `file` and, recursively, the modules it declares.
fn collect(
    files: &BTreeMap<String, String>,
    file: &str,
    path: ModPath,
    key: Vec<usize>,
    modules: &mut BTreeMap<ModPath, Module>,
    findings: &mut Vec<String>,
) {
    let Some(code) = files.get(file) else {
        findings.push(format!("src/{file} is declared but missing"));
        return;
    };
    modules.insert(
        path.clone(),
        Module {
            key: key.clone(),
            file: Some(file.to_owned()),
        },
    );
    let ast = match syn::parse_file(code) {
        Ok(ast) => ast,
        Err(e) => {
            findings.push(format!("src/{file}: {e}"));
            return;
        }
    };
    let listed = layout(code);
    let mut declared = Vec::new();
    for item in &ast.items {
        if is_test(item) {
            continue;
        }
        match item {
            // An inline module's code is its parent's file's.
            syn::Item::Mod(m) => declared.push((m.ident.to_string(), m.content.is_none())),
            syn::Item::Use(u) if matches!(u.vis, syn::Visibility::Public(_)) => {
                let mut tree = &u.tree;
                while let syn::UseTree::Path(p) = tree {
                    tree = &p.tree;
                }
                if let syn::UseTree::Rename(r) = tree {
                    declared.push((r.rename.to_string(), false));
                }
            }
            _ => {}
        }
    }
    for (name, _) in &declared {
        if !listed.contains(name) {
            findings.push(format!("src/{file}: mod {name} is not in its # Layout"));
        }
    }
    // A file's children live in a folder of its name (`a.rs` → `a/`);
    // lib.rs's and a mod.rs's beside them.
    let dir = match file.strip_suffix("mod.rs").or(file.strip_suffix("lib.rs")) {
        Some(dir) => dir.to_owned(),
        None => format!("{}/", file.trim_end_matches(".rs")),
    };
    for (rank, name) in listed.iter().enumerate() {
        let Some((_, has_file)) = declared.iter().find(|(n, _)| n == name) else {
            findings.push(format!(
                "src/{file}: # Layout lists {name}, which it does not declare"
            ));
            continue;
        };
        let mut child = path.clone();
        child.push(name.clone());
        let mut child_key = key.clone();
        child_key.push(rank);
        if !has_file {
            modules.insert(
                child,
                Module {
                    key: child_key,
                    file: None,
                },
            );
            continue;
        }
        let flat = format!("{dir}{name}.rs");
        let folder = format!("{dir}{name}/mod.rs");
        let child_file = if files.contains_key(&folder) {
            folder
        } else {
            flat
        };
        collect(files, &child_file, child, child_key, modules, findings);
    }
}

/// The names a file's `# Layout` lists, in order: each `//! - [`name`]: …`
/// line after the heading (`- this file: …` names the file itself).
fn layout(code: &str) -> Vec<String> {
    code.lines()
        .skip_while(|line| line.trim() != "//! # Layout")
        .take_while(|line| line.starts_with("//!"))
        .filter_map(|line| line.strip_prefix("//! - [`"))
        .filter_map(|rest| rest.split_once("`]"))
        .map(|(name, _)| name.to_owned())
        .collect()
}

fn is_test(item: &syn::Item) -> bool {
    let attrs = match item {
        syn::Item::Mod(i) => &i.attrs,
        syn::Item::Fn(i) => &i.attrs,
        syn::Item::Use(i) => &i.attrs,
        syn::Item::Impl(i) => &i.attrs,
        syn::Item::Struct(i) => &i.attrs,
        syn::Item::Enum(i) => &i.attrs,
        syn::Item::Const(i) => &i.attrs,
        syn::Item::Static(i) => &i.attrs,
        syn::Item::Trait(i) => &i.attrs,
        _ => return false,
    };
    attrs.iter().any(|a| {
        a.path().is_ident("cfg") && a.parse_args::<syn::Ident>().is_ok_and(|i| i == "test")
    })
}

/// Every path in a file that starts with `crate`, `super` or `self`.
#[derive(Default)]
struct Refs {
    paths: Vec<Vec<String>>,
}

impl Refs {
    fn tree(&mut self, prefix: &mut Vec<String>, tree: &syn::UseTree) {
        match tree {
            syn::UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                self.tree(prefix, &p.tree);
                prefix.pop();
            }
            syn::UseTree::Name(n) => self.push(prefix, Some(&n.ident)),
            syn::UseTree::Rename(r) => self.push(prefix, Some(&r.ident)),
            syn::UseTree::Glob(_) => self.push(prefix, None),
            syn::UseTree::Group(g) => g.items.iter().for_each(|t| self.tree(prefix, t)),
        }
    }

    fn push(&mut self, prefix: &[String], last: Option<&syn::Ident>) {
        let mut path = prefix.to_vec();
        path.extend(last.map(|i| i.to_string()).filter(|i| i != "self"));
        if path
            .first()
            .is_some_and(|s| matches!(s.as_str(), "crate" | "super" | "self"))
        {
            self.paths.push(path);
        }
    }

    fn tokens(&mut self, tokens: TokenStream) {
        let tokens: Vec<TokenTree> = tokens.into_iter().collect();
        for (i, token) in tokens.iter().enumerate() {
            match token {
                TokenTree::Group(g) => self.tokens(g.stream()),
                TokenTree::Ident(id) if matches!(id.to_string().as_str(), "crate" | "super") => {
                    let mut path = vec![id.to_string()];
                    let mut rest = tokens[i + 1..].chunks(3);
                    while let Some(
                        [
                            TokenTree::Punct(a),
                            TokenTree::Punct(b),
                            TokenTree::Ident(n),
                        ],
                    ) = rest.next()
                    {
                        if a.as_char() != ':' || b.as_char() != ':' {
                            break;
                        }
                        path.push(n.to_string());
                    }
                    self.push(&path, None);
                }
                _ => {}
            }
        }
    }
}

impl<'a> Visit<'a> for Refs {
    fn visit_item(&mut self, item: &'a syn::Item) {
        if !is_test(item) {
            syn::visit::visit_item(self, item);
        }
    }

    fn visit_item_use(&mut self, item: &'a syn::ItemUse) {
        self.tree(&mut Vec::new(), &item.tree);
    }

    fn visit_path(&mut self, path: &'a syn::Path) {
        let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
        self.push(&segments, None);
        syn::visit::visit_path(self, path);
    }

    fn visit_macro(&mut self, mac: &'a syn::Macro) {
        self.tokens(mac.tokens.clone());
    }
}

/// The module `used` (a path as written in module `from`) refers to: the
/// longest known prefix of its absolute path.
fn resolve(
    from: &ModPath,
    used: &[String],
    modules: &BTreeMap<ModPath, Module>,
) -> Option<ModPath> {
    let mut abs = from.clone();
    let mut rest = used;
    match rest.first().map(String::as_str) {
        Some("crate") => {
            abs.clear();
            rest = &rest[1..];
        }
        Some("self") => rest = &rest[1..],
        _ => {}
    }
    while rest.first().is_some_and(|s| s == "super") {
        abs.pop();
        rest = &rest[1..];
    }
    abs.extend(rest.iter().cloned());
    (0..=abs.len())
        .rev()
        .map(|n| abs[..n].to_vec())
        .find(|p| modules.contains_key(p))
}

fn sources(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(root, &path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_str()
                .unwrap()
                .to_owned();
            out.insert(rel, std::fs::read_to_string(&path).unwrap());
        }
    }
}

/// Every finding in the crate whose `lib.rs` is in `src`.
fn check_dir(src: &Path) -> Vec<String> {
    let mut files = BTreeMap::new();
    sources(src, src, &mut files);
    check(&files)
}

/// The crates whose layout is kept, by their source folder.
const CRATES: [&str; 3] = ["src", "ws-api/src", "ws-util/src"];

#[test]
fn every_layout_is_true() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let findings: Vec<String> = CRATES
        .iter()
        .flat_map(|dir| {
            check_dir(&root.join(dir))
                .into_iter()
                .map(move |f| format!("{dir}: {f}"))
        })
        .collect();
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
    check(&files)
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
