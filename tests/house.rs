//! The house's shape, checked from the code's imports: no crate has files that import
//! each other in a circle, and the gateway's layers only import downwards (foundation ←
//! limits ← error ← runtime ← pipeline ← edge). `cargo test --test house -- --nocapture`
//! prints the gateway's picture: each file with its layer and what it imports.
//!
//! An import is any `crate::`, `super::` or `self::` path outside comments and the test
//! module at the end of a file, and a `use child::…` of a module file's own child.
//!
//! And no function on the request path (the gateway, the router, the policy, the
//! providers) is longer than 80 lines.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test that reads the source tree fails loudly"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The source directories of the workspace's library and binary crates.
fn crate_sources() -> Vec<PathBuf> {
    let root = root();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root.join("crates"))
        .unwrap()
        .map(|e| e.unwrap().path().join("src"))
        .collect();
    dirs.push(root.join("training/src"));
    dirs.push(root.join("eval/src"));
    dirs.retain(|d| d.is_dir());
    dirs.sort();
    dirs
}

/// A crate's files by module path (`""` for the crate root, `"a::b"` for `src/a/b.rs`).
fn modules(src: &Path) -> BTreeMap<String, PathBuf> {
    let mut out = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(src).unwrap().with_extension("");
            let mut parts: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if matches!(
                parts.last().map(String::as_str),
                Some("mod" | "lib" | "main")
            ) {
                parts.pop();
            }
            out.insert(parts.join("::"), path);
        }
    }
    out
}

/// The file's code without comments and without its trailing test module.
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let mut out = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let t = line.trim_start();
        if t == "#[cfg(test)]"
            && lines.peek().is_some_and(|n| {
                let n = n.trim_start();
                n.strip_prefix("pub(crate) ")
                    .unwrap_or(n)
                    .starts_with("mod tests")
            })
        {
            break;
        }
        if t.starts_with("//") {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Every path written after `crate`, `super` or `self`, with `{a, b::{c}}` groups expanded.
fn paths(code: &str) -> Vec<String> {
    let bytes = code.as_bytes();
    let mut out = Vec::new();
    for head in ["crate::", "super::", "self::"] {
        let mut from = 0;
        while let Some(i) = code[from..].find(head) {
            let at = from + i;
            from = at + head.len();
            let before = at.checked_sub(1).map(|j| bytes[j] as char);
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            expand(&head[..head.len() - 2], &code[at + head.len()..], &mut out);
        }
    }
    out
}

/// Appends `prefix::rest` for the path (or group) at the start of `rest`.
fn expand(prefix: &str, rest: &str, out: &mut Vec<String>) {
    if let Some(group) = rest.strip_prefix('{') {
        let mut depth = 0;
        let mut item = String::new();
        for c in group.chars() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => break,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    expand(prefix, item.trim(), out);
                    item.clear();
                    continue;
                }
                _ => {}
            }
            item.push(c);
        }
        if !item.trim().is_empty() {
            expand(prefix, item.trim(), out);
        }
        return;
    }
    let segment: String = rest
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    let after = &rest[segment.len()..];
    let joined = format!("{prefix}::{segment}");
    match after.strip_prefix("::") {
        Some(more) => expand(&joined, more, out),
        None => out.push(joined),
    }
}

/// The module (file) a path written in module `from` lands in, if it is a file of the crate.
/// In `a/b.rs` (module `a::b`) `super` is `a`; in `a/mod.rs` (module `a`) it is the root.
fn target(
    path: &str,
    from: &str,
    mods: &BTreeMap<String, PathBuf>,
    names: &Reexports,
) -> Option<String> {
    let mut segments: Vec<&str> = path.split("::").collect();
    let mut base: Vec<&str> = if from.is_empty() {
        vec![]
    } else {
        from.split("::").collect()
    };
    match segments.first().copied() {
        Some("crate") => {
            base.clear();
            segments.remove(0);
        }
        Some("self") => {
            segments.remove(0);
        }
        _ => {
            while segments.first() == Some(&"super") {
                segments.remove(0);
                base.pop();
            }
        }
    }
    let mut best = None;
    let mut next = None;
    let mut full = base.clone();
    for s in segments {
        full.push(s);
        let key = full.join("::");
        if mods.contains_key(&key) {
            best = Some(key);
            next = None;
        } else if next.is_none() {
            next = Some(s);
        }
    }
    let best = best.or_else(|| Some(base.join("::")).filter(|k| mods.contains_key(k)))?;
    // A name the module only re-exports: the file that defines it.
    match next.and_then(|n| names.get(&best)?.get(n)) {
        Some(defined) => Some(defined.clone()),
        None => Some(best),
    }
}

/// Names a module file re-exports (`pub use child::Name;`) and the module each comes from,
/// so `crate::Name` counts as an import of the file that defines it, not of `lib.rs`.
type Reexports = BTreeMap<String, BTreeMap<String, String>>;

fn reexports(mods: &BTreeMap<String, PathBuf>) -> Reexports {
    let mut out = Reexports::new();
    for (module, path) in mods {
        let text = code(path);
        let names = out.entry(module.clone()).or_default();
        // Each `pub use …;` statement, joined when it spans lines.
        let statements = text
            .split(';')
            .filter_map(|st| st.trim_start().strip_prefix("pub use "));
        for rest in statements {
            let mut found = Vec::new();
            expand("self", rest.trim(), &mut found);
            for p in found {
                let name = p.rsplit("::").next().unwrap_or("").to_owned();
                if let Some(t) = target(&p, module, mods, &Reexports::new()) {
                    names.insert(name, t);
                }
            }
        }
    }
    out
}

/// A crate's file graph: module → modules it imports.
fn graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mods = modules(src);
    let names = reexports(&mods);
    let mut edges = BTreeMap::new();
    for (module, path) in &mods {
        let text = code(path);
        let is_module_file = path
            .file_name()
            .is_some_and(|n| n == "mod.rs" || n == "lib.rs" || n == "main.rs");
        let mut to = BTreeSet::new();
        for p in paths(&text) {
            if let Some(t) = target(&p, module, &mods, &names).filter(|t| t != module) {
                to.insert(t);
            }
        }
        // `use child::X` in a module file: its own child modules.
        if is_module_file {
            for line in text.lines() {
                let t = line.trim_start().trim_start_matches("pub ");
                let Some(rest) = t.strip_prefix("use ") else {
                    continue;
                };
                let first: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                let child = if module.is_empty() {
                    first.clone()
                } else {
                    format!("{module}::{first}")
                };
                if mods.contains_key(&child) && rest[first.len()..].starts_with("::") {
                    to.insert(child);
                }
            }
        }
        edges.insert(module.clone(), to);
    }
    edges
}

/// A circle of files, if the graph has one.
fn find_cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(n.to_owned(), 1);
        stack.push(n.to_owned());
        for m in edges.get(n).into_iter().flatten() {
            match state.get(m).copied().unwrap_or(0) {
                1 => {
                    let start = stack.iter().position(|s| s == m).unwrap();
                    let mut cycle = stack[start..].to_vec();
                    cycle.push(m.clone());
                    return Some(cycle);
                }
                0 => {
                    if let Some(c) = visit(m, edges, state, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(n.to_owned(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in edges.keys() {
        if state.get(n).copied().unwrap_or(0) == 0 {
            let mut stack = Vec::new();
            if let Some(c) = visit(n, edges, &mut state, &mut stack) {
                return Some(c);
            }
        }
    }
    None
}

#[test]
fn no_crate_has_a_circle_of_files() {
    let mut circles = Vec::new();
    for src in crate_sources() {
        let edges = graph(&src);
        assert!(!edges.is_empty(), "no files under {}", src.display());
        if let Some(cycle) = find_cycle(&edges) {
            circles.push(format!("{}: {}", src.display(), cycle.join(" -> ")));
        }
    }
    assert!(
        circles.is_empty(),
        "files importing each other in a circle:\n{}",
        circles.join("\n")
    );
}

/// The gateway's layers, lowest first; a file belongs to the layer of its top module.
const LAYERS: [(&str, &[&str]); 6] = [
    ("foundation", &["config", "metrics", "traffic"]),
    ("limits", &["limits"]),
    ("error", &["error"]),
    ("runtime", &["runtime"]),
    ("pipeline", &["pipeline"]),
    ("edge", &["edge"]),
];

fn layer(module: &str) -> usize {
    let top = module.split("::").next().unwrap_or("");
    LAYERS
        .iter()
        .position(|(_, mods)| mods.contains(&top))
        .unwrap_or(LAYERS.len())
}

#[test]
fn the_gateway_imports_only_downwards() {
    let edges = graph(&root().join("crates/gateway/src"));
    let mut upwards = Vec::new();
    for (from, to) in &edges {
        let mine = layer(from);
        if mine == LAYERS.len() && !from.is_empty() && from != "fuzz" {
            upwards.push(format!("{from}: belongs to no layer (add it to LAYERS)"));
        }
        let uses: Vec<String> = to
            .iter()
            .map(|t| format!("{t} [{}]", LAYERS.get(layer(t)).map_or("top", |l| l.0)))
            .collect();
        eprintln!(
            "{from:<22} [{}] -> {}",
            LAYERS.get(mine).map_or("top", |l| l.0),
            uses.join(", ")
        );
        for t in to {
            if layer(t) > mine {
                upwards.push(format!("{from} imports {t}, a layer above it"));
            }
        }
    }
    assert!(upwards.is_empty(), "{}", upwards.join("\n"));
}

#[test]
fn the_checker_sees_circles_and_groups() {
    let mut found = Vec::new();
    expand("crate", "{a::{b, c::D}, e}", &mut found);
    assert_eq!(found, ["crate::a::b", "crate::a::c::D", "crate::e"]);
    let mut edges = BTreeMap::new();
    edges.insert("a".to_owned(), BTreeSet::from(["b".to_owned()]));
    edges.insert("b".to_owned(), BTreeSet::from(["c".to_owned()]));
    edges.insert("c".to_owned(), BTreeSet::from(["a".to_owned()]));
    assert_eq!(find_cycle(&edges).unwrap(), ["a", "b", "c", "a"]);
    edges.insert("c".to_owned(), BTreeSet::new());
    assert_eq!(find_cycle(&edges), None);
    assert!(layer("edge::app") > layer("pipeline::chat"));
    assert!(layer("limits::shared") < layer("error"));
}

/// Each workspace crate's `switchyard-*` dependencies, dev-dependencies included.
fn crate_graph() -> BTreeMap<String, BTreeSet<String>> {
    let root = root();
    let mut manifests: Vec<PathBuf> = std::fs::read_dir(root.join("crates"))
        .unwrap()
        .map(|e| e.unwrap().path().join("Cargo.toml"))
        .collect();
    manifests.push(root.join("training/Cargo.toml"));
    manifests.push(root.join("eval/Cargo.toml"));
    let mut edges = BTreeMap::new();
    for path in manifests.iter().filter(|p| p.is_file()) {
        let text = std::fs::read_to_string(path).unwrap();
        let mut name = String::new();
        let mut deps = BTreeSet::new();
        let mut section = String::new();
        for line in text.lines().map(str::trim) {
            if line.starts_with('[') {
                section = line.to_owned();
            } else if section == "[package]" && line.starts_with("name") {
                name = line.split('"').nth(1).unwrap_or("").to_owned();
            } else if section.ends_with("dependencies]") && line.starts_with("switchyard") {
                let dep: String = line
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '-')
                    .collect();
                deps.insert(dep);
            }
        }
        edges.insert(name, deps);
    }
    edges
}

#[test]
fn no_circle_of_crates_even_through_dev_dependencies() {
    let edges = crate_graph();
    assert!(edges.contains_key("switchyard-gateway"), "{edges:?}");
    assert_eq!(
        find_cycle(&edges),
        None,
        "crates depending on each other in a circle"
    );
}

/// Functions longer than `max` lines in `file` (outside its test module), as `name: lines`.
fn long_functions(file: &Path, max: usize) -> Vec<String> {
    let text = code(file);
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let indent = line.len() - line.trim_start().len();
        let head = line.trim_start();
        let head = head.strip_prefix("pub ").unwrap_or(head);
        let head = head.strip_prefix("pub(crate) ").unwrap_or(head);
        let head = head.strip_prefix("async ").unwrap_or(head);
        let Some(name) = head.strip_prefix("fn ") else {
            i += 1;
            continue;
        };
        let close = format!("{}}}", " ".repeat(indent));
        let end = (i + 1..lines.len()).find(|&j| lines[j] == close);
        let Some(end) = end else {
            i += 1;
            continue;
        };
        if end - i + 1 > max {
            let name: String = name
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            out.push(format!(
                "{}: {name} ({} lines)",
                file.display(),
                end - i + 1
            ));
        }
        i = end + 1;
    }
    out
}

#[test]
fn no_long_function_on_the_request_path() {
    let root = root();
    let mut files = Vec::new();
    for dir in [
        "crates/gateway/src",
        "crates/router/src",
        "crates/providers/src",
    ] {
        files.extend(modules(&root.join(dir)).into_values());
    }
    files.push(root.join("crates/core/src/policy.rs"));
    let long: Vec<String> = files.iter().flat_map(|f| long_functions(f, 80)).collect();
    assert!(
        long.is_empty(),
        "functions over 80 lines on the request path:\n{}",
        long.join("\n")
    );
    let anthropic = root.join("crates/providers/src/anthropic.rs");
    assert!(
        long_functions(&anthropic, 20).len() > 1,
        "the checker finds functions"
    );
}
