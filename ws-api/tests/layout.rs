//! The `# Layout` of `ws-api/src/lib.rs` lists the modules so that each
//! imports only modules listed below it: this keeps it true. Sources are
//! parsed with `syn`, so a `use crate::{…}` group rustfmt wraps over several
//! lines, `use super::…` from a module's own files and `crate::x::…` paths
//! written inline (in code, types or macro arguments) all count. Doc
//! comments and `#[cfg(test)]` items may name anything.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use proc_macro2::{TokenStream, TokenTree};
use syn::visit::Visit;

/// Names in the order `# Layout` lists them: `//! - [`a`], [`b`]: …` lines
/// under the `# Layout` heading, each name in backticks before the colon.
fn layout(lib: &str) -> Vec<String> {
    let mut order = Vec::new();
    let mut inside = false;
    for line in lib.lines() {
        let Some(doc) = line.strip_prefix("//!") else {
            if inside {
                break;
            }
            continue;
        };
        let doc = doc.trim();
        if doc.starts_with('#') {
            inside = doc == "# Layout";
            continue;
        }
        let Some(item) = doc.strip_prefix("- ").filter(|_| inside) else {
            continue;
        };
        let head = item.split(": ").next().unwrap_or_default();
        for name in head.split(',') {
            let name = name.trim().trim_start_matches("[`").trim_end_matches("`]");
            order.push(name.to_owned());
        }
    }
    order
}

/// Whether `attrs` hold `#[cfg(test)]`.
fn test_only(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        a.path().is_ident("cfg")
            && a.parse_args::<syn::Meta>()
                .is_ok_and(|m| m.path().is_ident("test"))
    })
}

/// Collects the crate modules a file refers to, resolving `crate::`,
/// `super::` and `self::` against the file's module path.
struct Refs {
    /// The module the visitor is in (`["presence", "memory"]`).
    here: Vec<String>,
    /// Each reference: the top module it reaches and the path as written.
    found: Vec<(String, String)>,
}

impl Refs {
    /// Resolves a path given as segments; records it if it starts at the
    /// crate root (`crate::`, or enough `super::`) and names an item there.
    fn resolve(&mut self, segments: &[String]) {
        let mut at: Vec<String> = match segments.first().map(String::as_str) {
            Some("crate") => Vec::new(),
            Some("super" | "self") => self.here.clone(),
            _ => return,
        };
        let mut rest = &segments[usize::from(segments[0] == "crate")..];
        while let Some(first) = rest.first() {
            match first.as_str() {
                "super" => {
                    at.pop();
                }
                "self" => {}
                _ => break,
            }
            rest = &rest[1..];
        }
        let top = at.first().or(rest.first());
        if let Some(top) = top.filter(|t| *t != "*") {
            self.found.push((top.clone(), segments.join("::")));
        }
    }

    /// Every path a use tree names, as segment lists.
    fn use_paths(tree: &syn::UseTree, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
        match tree {
            syn::UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                Self::use_paths(&p.tree, prefix, out);
                prefix.pop();
            }
            syn::UseTree::Name(n) => {
                let mut path = prefix.clone();
                if n.ident != "self" {
                    path.push(n.ident.to_string());
                }
                out.push(path);
            }
            syn::UseTree::Rename(r) => {
                let mut path = prefix.clone();
                if r.ident != "self" {
                    path.push(r.ident.to_string());
                }
                out.push(path);
            }
            syn::UseTree::Glob(_) => {
                let mut path = prefix.clone();
                path.push("*".to_owned());
                out.push(path);
            }
            syn::UseTree::Group(g) => {
                for t in &g.items {
                    Self::use_paths(t, prefix, out);
                }
            }
        }
    }

    /// `crate :: a :: b` runs in a macro's tokens (which syn leaves unparsed).
    fn tokens(&mut self, tokens: TokenStream) {
        let trees: Vec<TokenTree> = tokens.into_iter().collect();
        let mut i = 0;
        while i < trees.len() {
            match &trees[i] {
                TokenTree::Group(g) => self.tokens(g.stream()),
                TokenTree::Ident(id) if id == "crate" || id == "super" => {
                    let mut segments = vec![id.to_string()];
                    let mut j = i + 1;
                    while let (Some(TokenTree::Punct(a)), Some(TokenTree::Punct(b))) =
                        (trees.get(j), trees.get(j + 1))
                    {
                        if a.as_char() != ':' || b.as_char() != ':' {
                            break;
                        }
                        let Some(TokenTree::Ident(next)) = trees.get(j + 2) else {
                            break;
                        };
                        segments.push(next.to_string());
                        j += 3;
                    }
                    if segments.len() > 1 {
                        self.resolve(&segments);
                    }
                    i = j;
                    continue;
                }
                _ => {}
            }
            i += 1;
        }
    }
}

impl<'ast> Visit<'ast> for Refs {
    fn visit_item(&mut self, item: &'ast syn::Item) {
        let attrs: &[syn::Attribute] = match item {
            syn::Item::Const(i) => &i.attrs,
            syn::Item::Enum(i) => &i.attrs,
            syn::Item::Fn(i) => &i.attrs,
            syn::Item::Impl(i) => &i.attrs,
            syn::Item::Macro(i) => &i.attrs,
            syn::Item::Mod(i) => &i.attrs,
            syn::Item::Static(i) => &i.attrs,
            syn::Item::Struct(i) => &i.attrs,
            syn::Item::Trait(i) => &i.attrs,
            syn::Item::Type(i) => &i.attrs,
            syn::Item::Use(i) => &i.attrs,
            _ => &[],
        };
        if !test_only(attrs) {
            syn::visit::visit_item(self, item);
        }
    }

    fn visit_impl_item(&mut self, item: &'ast syn::ImplItem) {
        let attrs: &[syn::Attribute] = match item {
            syn::ImplItem::Const(i) => &i.attrs,
            syn::ImplItem::Fn(i) => &i.attrs,
            syn::ImplItem::Type(i) => &i.attrs,
            syn::ImplItem::Macro(i) => &i.attrs,
            _ => &[],
        };
        if !test_only(attrs) {
            syn::visit::visit_impl_item(self, item);
        }
    }

    fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
        self.here.push(m.ident.to_string());
        syn::visit::visit_item_mod(self, m);
        self.here.pop();
    }

    fn visit_item_use(&mut self, u: &'ast syn::ItemUse) {
        let mut paths = Vec::new();
        Self::use_paths(&u.tree, &mut Vec::new(), &mut paths);
        for path in paths {
            self.resolve(&path);
        }
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
        if segments.len() > 1 {
            self.resolve(&segments);
        }
        syn::visit::visit_path(self, path);
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        self.tokens(mac.tokens.clone());
        syn::visit::visit_macro(self, mac);
    }
}

/// The crate-root names `code`, a file of module `here`, refers to, with
/// the paths as written.
fn references(code: &str, here: &[&str]) -> Vec<(String, String)> {
    let file = syn::parse_file(code).expect("a source file that parses");
    let mut refs = Refs {
        here: here.iter().map(|s| (*s).to_owned()).collect(),
        found: Vec::new(),
    };
    refs.visit_file(&file);
    refs.found
}

/// The `.rs` files under `dir`, recursively.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module path of a file under `src` (`presence/memory.rs` →
/// `["presence", "memory"]`, `presence.rs` → `["presence"]`).
fn module_path(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_str().unwrap().trim_end_matches(".rs").to_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The items lib.rs declares outside `#[cfg(test)]`: (name, is a module).
fn root_items(lib: &str) -> Vec<(String, bool)> {
    let file = syn::parse_file(lib).unwrap();
    let mut items = Vec::new();
    for item in &file.items {
        let (ident, attrs, module) = match item {
            syn::Item::Mod(m) => (&m.ident, &m.attrs, true),
            syn::Item::Enum(e) => (&e.ident, &e.attrs, false),
            syn::Item::Struct(s) => (&s.ident, &s.attrs, false),
            syn::Item::Fn(f) => (&f.sig.ident, &f.attrs, false),
            syn::Item::Const(c) => (&c.ident, &c.attrs, false),
            syn::Item::Type(t) => (&t.ident, &t.attrs, false),
            syn::Item::Trait(t) => (&t.ident, &t.attrs, false),
            _ => continue,
        };
        if !test_only(attrs) {
            items.push((ident.to_string(), module));
        }
    }
    items
}

/// The modules lib.rs declares `#[cfg(test)]`: their files may import anything.
fn test_modules(lib: &str) -> Vec<String> {
    let file = syn::parse_file(lib).unwrap();
    file.items
        .iter()
        .filter_map(|item| match item {
            syn::Item::Mod(m) if test_only(&m.attrs) => Some(m.ident.to_string()),
            _ => None,
        })
        .collect()
}

#[test]
fn modules_import_only_downward() {
    let src = src();
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    let order = layout(&lib);
    let rank: HashMap<&str, usize> = order
        .iter()
        .enumerate()
        .map(|(i, m)| (m.as_str(), i))
        .collect();
    let mut files = Vec::new();
    sources(&src, &mut files);
    files.sort();
    let test_mods = test_modules(&lib);
    let mut upward = Vec::new();
    for path in &files {
        let rel = path.strip_prefix(&src).unwrap();
        let here = module_path(rel);
        let module = here[0].as_str();
        if matches!(module, "lib" | "main") {
            continue;
        }
        if test_mods.iter().any(|m| m == module) {
            continue;
        }
        let me = *rank
            .get(module)
            .unwrap_or_else(|| panic!("{module} is not listed in the # Layout of src/lib.rs"));
        let code = std::fs::read_to_string(path).unwrap();
        let here: Vec<&str> = here.iter().map(String::as_str).collect();
        for (used, written) in references(&code, &here) {
            if used == module {
                continue;
            }
            let Some(&them) = rank.get(used.as_str()) else {
                panic!(
                    "{}: {written} reaches crate::{used}, which # Layout does not list",
                    rel.display()
                );
            };
            if them <= me {
                upward.push(format!(
                    "{}: {module} uses {written}, and {used} is listed above it",
                    rel.display()
                ));
            }
        }
    }
    assert!(upward.is_empty(), "upward imports:\n{}", upward.join("\n"));
}

#[test]
fn every_module_is_listed_once() {
    let lib = std::fs::read_to_string(src().join("lib.rs")).unwrap();
    let order = layout(&lib);
    assert!(!order.is_empty(), "src/lib.rs has no # Layout list");
    let items = root_items(&lib);
    for (name, module) in &items {
        let listed = order.iter().filter(|m| *m == name).count();
        if *module {
            assert_eq!(listed, 1, "mod {name}: listed {listed} times in # Layout");
        } else {
            assert!(listed <= 1, "{name}: listed {listed} times in # Layout");
        }
    }
    for name in &order {
        assert!(
            items.iter().any(|(n, _)| n == name),
            "# Layout lists {name}, which src/lib.rs does not declare"
        );
    }
}

/// The parser itself, on the shapes the gateway's line-based test missed.
#[test]
fn references_are_found_in_every_shape() {
    let code = r#"
        use crate::{
            acks::Received,
            presence::{Presence, SessionKey},
            service::Backend,
        };
        use super::keys;
        use super::super::outbox;
        use std::sync::Arc;

        /// Doc comments may name [`crate::biz`].
        fn f(b: &crate::delivery::Delivery) -> crate::chat::Rooms {
            // Nor do comments count: crate::redis_stream
            let s = "crate::sweeper";
            let _ = crate::streams::STREAM_QUEUE;
            tracing::info!(x = ?crate::history::now_ms(), "{s}");
            todo!()
        }

        #[cfg(test)]
        mod tests {
            use crate::service::Backend;
        }
    "#;
    let mut found: Vec<String> = references(code, &["presence", "memory"])
        .into_iter()
        .map(|(top, _)| top)
        .collect();
    found.sort();
    found.dedup();
    assert_eq!(
        found,
        [
            "acks", "chat", "delivery", "history", "outbox", "presence", "service", "streams"
        ]
    );
}
