//! The `# Layout` of `src/lib.rs` lists the modules so that each imports
//! only modules listed below it: this keeps it true. (Test modules and
//! test-only files may import anything.)

use std::collections::HashMap;
use std::path::Path;

/// Modules in the order `# Layout` lists them.
fn layout(lib: &str) -> Vec<String> {
    let mut order = Vec::new();
    for line in lib.lines() {
        let Some(item) = line.strip_prefix("//! - ") else {
            continue;
        };
        let head = item.split(':').next().unwrap_or_default();
        for name in head.split(',') {
            let name = name.trim().trim_start_matches("[`").trim_end_matches("`]");
            order.push(name.to_owned());
        }
    }
    order
}

/// The crate modules `code` refers to (`crate::x`, `use crate::{x, y}`),
/// leaving out comments and the `#[cfg(test)] mod tests` at the end.
fn imports(code: &str) -> Vec<String> {
    let code = code
        .split("#[cfg(test)]\nmod tests")
        .next()
        .unwrap_or_default();
    let mut found = Vec::new();
    for line in code.lines() {
        let line = line.trim_start();
        if line.starts_with("//") {
            continue;
        }
        for (i, _) in line.match_indices("crate::") {
            let rest = &line[i + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                let group = group.split('}').next().unwrap_or_default();
                found.extend(
                    group
                        .split(',')
                        .map(|m| m.trim().split("::").next().unwrap_or_default().to_owned()),
                );
            } else {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                found.push(name);
            }
        }
    }
    found
}

fn sources(dir: &Path, out: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push((
                path.display().to_string(),
                std::fs::read_to_string(&path).unwrap(),
            ));
        }
    }
}

#[test]
fn modules_import_only_downward() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    let order = layout(&lib);
    let rank: HashMap<&str, usize> = order
        .iter()
        .enumerate()
        .map(|(i, m)| (m.as_str(), i))
        .collect();
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut upward = Vec::new();
    for (path, code) in &files {
        let rel = Path::new(path).strip_prefix(&src).unwrap();
        let top = rel.iter().next().unwrap().to_str().unwrap();
        let module = top.trim_end_matches(".rs");
        if matches!(module, "lib" | "main") {
            continue;
        }
        let Some(&me) = rank.get(module) else {
            // Test-only files are declared `#[cfg(test)]` in lib.rs.
            assert!(
                lib.contains(&format!("#[cfg(test)]\nmod {module};")),
                "{module} is not listed in the # Layout of src/lib.rs"
            );
            continue;
        };
        for used in imports(code) {
            if used == module || used.is_empty() {
                continue;
            }
            let Some(&them) = rank.get(used.as_str()) else {
                panic!("{path} uses crate::{used}, which # Layout does not list");
            };
            if them <= me {
                upward.push(format!("{path}: {module} imports {used}, listed above it"));
            }
        }
    }
    assert!(upward.is_empty(), "upward imports:\n{}", upward.join("\n"));
}

#[test]
fn every_module_is_listed() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    let order = layout(&lib);
    for line in lib.lines() {
        if let Some(name) = line.strip_prefix("pub mod ") {
            let name = name.trim_end_matches(" {").trim_end_matches(';');
            assert!(
                order.iter().any(|m| m == name),
                "pub mod {name} is not in the # Layout of src/lib.rs"
            );
        }
    }
}
