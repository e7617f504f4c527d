//! The layers of the component (`src/`) and of the simulator (`host-test/src/`), checked on the
//! source: no module imports from a layer above its own, and no two modules import each other
//! (directly or round a cycle). A new module must be given a layer here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The component's layers, lowest first: its top-level modules, as `src/lib.rs` lists them. The
/// folders `domain/` and `clients/` are layers of their own, whose modules (`domain::plan`,
/// `clients::graph`, ...) are the units checked for cycles. `clients::zenqms::api` (ZenQMS's data
/// shapes and request builders, no I/O) sits with the domain, which plans over those shapes.
const COMPONENT: &[&[&str]] = &[
    &["platform", "failure", "log", "testkit"],
    &["config", "state", "domain", "clients::zenqms::api"],
    &["clients"],
    &["write"],
    &["sync"],
    &["call"],
    &["handlers"],
    &["actions"],
    &["wasm"],
];

/// Top-level modules that are folders of separate modules: a path's first two segments name its
/// module there (for the cycle check), elsewhere its first segment does.
const COMPONENT_FOLDERS: &[&str] = &["domain", "clients"];

/// The simulator's layers, lowest first (`host-test/src/lib.rs`).
const SIMULATOR: &[&[&str]] = &[&["sim"], &["host"], &["scenario"], &["tools"]];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file without its tests and comments.
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let text = text.split("#[cfg(test)]").next().unwrap_or_default();
    text.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `crate::a::b::c::…` paths in `code`, as their first three segments.
fn crate_paths(code: &str) -> BTreeSet<Vec<String>> {
    let mut out = BTreeSet::new();
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        let segments: Vec<String> = rest
            .split("::")
            .take(3)
            .map(|s| {
                s.chars()
                    .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                    .collect()
            })
            .take_while(|s: &String| !s.is_empty())
            .collect();
        if !segments.is_empty() {
            out.insert(segments);
        }
    }
    out
}

/// Module name -> layer index, and which module a path names.
fn layer_of<'a>(layers: &'a [&'a [&'a str]]) -> BTreeMap<&'a str, usize> {
    layers
        .iter()
        .enumerate()
        .flat_map(|(i, mods)| mods.iter().map(move |m| (*m, i)))
        .collect()
}

/// The module a file or a path (first segments) belongs to, by the longest name known.
fn module<'a>(segments: &[String], layers: &BTreeMap<&'a str, usize>) -> Option<&'a str> {
    let two = segments.join("::");
    layers
        .keys()
        .filter(|m| two == **m || two.starts_with(&format!("{m}::")) || segments[0] == **m)
        .max_by_key(|m| m.len())
        .copied()
        .filter(|m| !m.contains("::") || two.starts_with(*m))
}

/// The node a path stands for in the cycle check: its first two segments inside a folder
/// module, else its first; a module the layers name on its own (`clients::zenqms::api`) is a
/// node of its own.
fn node(segments: &[String], folders: &[&str], module: &str) -> String {
    let n = if segments.len() > 1 && folders.contains(&segments[0].as_str()) {
        2
    } else {
        1
    };
    let by_folder = segments[..n].join("::");
    if module.len() > by_folder.len() {
        module.to_string()
    } else {
        by_folder
    }
}

fn check(src: &Path, layers: &[&[&str]], folders: &[&str]) -> Vec<String> {
    let map = layer_of(layers);
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut problems = Vec::new();
    for file in files {
        let rel = file.strip_prefix(src).unwrap().with_extension("");
        let parts: Vec<String> = rel
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .filter(|p| p != "mod")
            .collect();
        if parts.is_empty() || ["lib", "main"].contains(&parts[0].as_str()) {
            continue;
        }
        if parts
            .last()
            .is_some_and(|p| p.ends_with("tests") || p == "test_support")
        {
            continue;
        }
        let Some(own) = module(&parts, &map) else {
            problems.push(format!("{}: no layer for this module", file.display()));
            continue;
        };
        let own_node = node(&parts, folders, own);
        for path in crate_paths(&code(&file)) {
            let Some(dep) = module(&path, &map) else {
                continue;
            };
            if map[dep] > map[own] {
                problems.push(format!(
                    "{}: `{own}` imports `crate::{}` from a layer above its own",
                    file.display(),
                    path.join("::")
                ));
            }
            let dep_node = node(&path, folders, dep);
            if dep_node != own_node {
                edges.entry(own_node.clone()).or_default().insert(dep_node);
            }
        }
    }
    // Cycles: a module that reaches itself.
    for start in edges.keys() {
        let mut seen = BTreeSet::new();
        let mut todo: Vec<&String> = edges[start].iter().collect();
        while let Some(n) = todo.pop() {
            if n == start {
                problems.push(format!("import cycle through `{start}`"));
                break;
            }
            if seen.insert(n.clone())
                && let Some(next) = edges.get(n)
            {
                todo.extend(next.iter());
            }
        }
    }
    problems
}

#[test]
fn the_component_imports_only_downwards_and_without_cycles() {
    let problems = check(&root().join("src"), COMPONENT, COMPONENT_FOLDERS);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_simulator_imports_only_downwards_and_without_cycles() {
    let problems = check(
        &root().join("host-test/src"),
        SIMULATOR,
        SIMULATOR[..].concat().as_slice(),
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
