//! The shape of `src/`: folders by layer, imports running one way, a thin binary.
//!
//! Reads every `crate::` path in the library's sources (outside `#[cfg(test)]` modules, whose
//! helpers may reach anywhere) and checks that each file imports only from its own layer or
//! from layers below it, that no two files import each other in a circle, that `main.rs`
//! stays thin and that no source file outgrows a reader. The layer table is the one the
//! crate's `lib.rs` and the README's Development section draw.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Bottom to top. A module may import its own layer and the layers below it.
const LAYERS: &[(&str, &[&str])] = &[
    ("base", &["error", "units", "progress", "hooks"]),
    ("registry", &["registry"]),
    ("config", &["config"]),
    ("storage", &["storage"]),
    ("cache", &["cache"]),
    ("gc", &["gc"]),
    ("edit", &["edit", "check"]),
    ("output", &["output"]),
    ("command", &["command"]),
    ("tools", &["synth"]),
];

const MAX_LINES: usize = 800;
const MAX_MAIN_LINES: usize = 250;

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file below `dir`, as (module path like `gc::discover::blobs`, file).
fn modules(dir: &Path, prefix: &str, out: &mut Vec<(String, PathBuf)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_str().unwrap().to_string();
        if path.is_dir() {
            let child = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}::{name}")
            };
            modules(&path, &child, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let module = match (prefix, name.as_str()) {
                ("", n) => n.to_string(),
                (p, "mod") => p.to_string(),
                (p, n) => format!("{p}::{n}"),
            };
            out.push((module, path));
        }
    }
}

/// The source without comments and without its `#[cfg(test)]` module.
fn code(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every path the code names through `crate::`, with `use crate::{a::b, c}` groups expanded
/// into their top-level items.
fn crate_paths(code: &str) -> Vec<String> {
    let mut paths = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 1;
            let mut item = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    _ => {}
                }
                if depth == 0 || (depth == 1 && c == ',') {
                    paths.push(item.trim().to_string());
                    item.clear();
                    if depth == 0 {
                        break;
                    }
                } else {
                    item.push(c);
                }
            }
        } else {
            let end = rest
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(rest.len());
            paths.push(rest[..end].trim_end_matches(':').to_string());
        }
    }
    paths.retain(|p| !p.is_empty());
    paths
}

/// The longest known module a path starts with.
fn module_of<'a>(path: &str, known: &'a BTreeSet<String>) -> Option<&'a String> {
    let segments: Vec<&str> = path.split("::").map(str::trim).collect();
    (1..=segments.len())
        .rev()
        .find_map(|n| known.get(&segments[..n].join("::")))
}

fn layer_of(module: &str) -> usize {
    let top = module.split("::").next().unwrap();
    LAYERS
        .iter()
        .position(|(_, tops)| tops.contains(&top))
        .unwrap_or_else(|| panic!("module {module} is in no layer of tests/layers.rs"))
}

/// Module -> the modules of the crate it imports (not itself, not its own children).
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    modules(&src(), "", &mut files);
    files.retain(|(m, _)| m != "main" && m != "cli" && m != "lib");
    let known: BTreeSet<String> = files.iter().map(|(m, _)| m.clone()).collect();
    let mut graph = BTreeMap::new();
    for (module, path) in &files {
        let text = std::fs::read_to_string(path).unwrap();
        let mut deps = BTreeSet::new();
        for p in crate_paths(&code(&text)) {
            if let Some(dep) = module_of(&p, &known) {
                if dep != module && !dep.starts_with(&format!("{module}::")) {
                    deps.insert(dep.clone());
                }
            }
        }
        graph.insert(module.clone(), deps);
    }
    graph
}

#[test]
fn imports_run_down_the_layers_only() {
    let mut upward = Vec::new();
    for (module, deps) in imports() {
        for dep in deps {
            if layer_of(&dep) > layer_of(&module) {
                upward.push(format!(
                    "{module} ({}) imports {dep} ({})",
                    LAYERS[layer_of(&module)].0,
                    LAYERS[layer_of(&dep)].0
                ));
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports up the layers:\n{}",
        upward.join("\n")
    );
}

#[test]
fn no_file_imports_itself_through_a_circle() {
    let graph = imports();
    // Depth-first search for a back edge; report the circle it closes.
    fn visit(
        m: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = stack.iter().position(|s| s == m) {
            let mut circle = stack[i..].to_vec();
            circle.push(m.to_string());
            return Some(circle);
        }
        if done.contains(m) {
            return None;
        }
        stack.push(m.to_string());
        for dep in graph.get(m).into_iter().flatten() {
            if let Some(c) = visit(dep, graph, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(m.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for m in graph.keys() {
        if let Some(circle) = visit(m, &graph, &mut Vec::new(), &mut done) {
            panic!("an import circle: {}", circle.join(" -> "));
        }
    }
}

#[test]
fn the_binary_is_thin_and_no_file_outgrows_a_reader() {
    let mut files = Vec::new();
    modules(&src(), "", &mut files);
    let mut long = Vec::new();
    for (module, path) in files {
        let lines = std::fs::read_to_string(&path).unwrap().lines().count();
        let limit = if module == "main" {
            MAX_MAIN_LINES
        } else {
            MAX_LINES
        };
        if lines > limit {
            long.push(format!(
                "{}: {lines} lines (at most {limit})",
                path.display()
            ));
        }
    }
    assert!(long.is_empty(), "{}", long.join("\n"));
}

#[test]
fn the_checker_sees_imports_in_every_form() {
    // The parser itself: a grouped use, a nested group, a path in an expression.
    let paths = crate_paths(
        "use crate::{gc::plan::Deleted, registry::{digest, layout}};\nlet x = crate::units::bytes(1);",
    );
    assert_eq!(
        paths,
        [
            "gc::plan::Deleted",
            "registry::{digest, layout}",
            "units::bytes"
        ]
    );
    let known: BTreeSet<String> = ["gc", "gc::plan", "registry", "units"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(module_of("gc::plan::Deleted", &known).unwrap(), "gc::plan");
    assert_eq!(
        module_of("registry::{digest, layout}", &known).unwrap(),
        "registry"
    );
}
