//! The layout's rules, checked on the source itself: no module imports one
//! that imports it back (directly or round a longer circle), the shared
//! leaves import neither wing, and the tools wing never reaches into the
//! daemon's session. A unit is a top-level module (`config`, `limits`, ...)
//! or a module of a wing or a shared folder (`proxy::session`,
//! `tools::check`, `smtp::reply`), with its own submodules folded in.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Folders whose modules are units of their own.
const NAMESPACES: &[&str] = &["proxy", "tools", "smtp", "wire"];

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

/// The unit a module path (segments after `crate::`) belongs to.
fn unit(segments: &[&str]) -> Option<String> {
    let first = *segments.first()?;
    if NAMESPACES.contains(&first) {
        let second = segments.get(1)?;
        // `crate::smtp::line::Line`, but not a type re-exported at the top.
        if second.chars().next()?.is_lowercase() {
            return Some(format!("{first}::{second}"));
        }
        return Some(first.to_string());
    }
    Some(first.to_string())
}

/// The unit a source file is part of.
fn file_unit(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap();
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().unwrap();
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" {
        parts.push(stem.to_string());
    }
    let segs: Vec<&str> = parts.iter().map(String::as_str).collect();
    unit(&segs).unwrap_or_else(|| "lib".into())
}

/// Every `crate::...` path in the code (comments and the unit tests at the
/// end of the file stripped), with `use` groups (`crate::{a, b::{c, d}}`)
/// expanded.
fn crate_paths(code: &str) -> Vec<Vec<String>> {
    let code = code.split("\n#[cfg(test)]").next().unwrap_or_default();
    let code: String = code
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut out = Vec::new();
    let bytes = code.as_bytes();
    let mut i = 0;
    while let Some(at) = code[i..].find("crate::") {
        let start = i + at;
        // Not part of a longer identifier (`tlsfront_crate::`).
        if start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_') {
            i = start + 7;
            continue;
        }
        let (paths, end) = parse_tree(&code, start + 7, vec![]);
        out.extend(paths);
        i = end.max(start + 7);
    }
    out
}

/// Parses `a::b::{c, d::e}` from `at`: the full paths, and where it ended.
fn parse_tree(code: &str, mut at: usize, prefix: Vec<String>) -> (Vec<Vec<String>>, usize) {
    let bytes = code.as_bytes();
    let mut path = prefix;
    loop {
        while at < bytes.len() && bytes[at].is_ascii_whitespace() {
            at += 1;
        }
        if at < bytes.len() && bytes[at] == b'{' {
            let mut all = Vec::new();
            at += 1;
            loop {
                while at < bytes.len() && (bytes[at].is_ascii_whitespace() || bytes[at] == b',') {
                    at += 1;
                }
                if at >= bytes.len() || bytes[at] == b'}' {
                    return (all, at + 1);
                }
                let (paths, end) = parse_tree(code, at, path.clone());
                all.extend(paths);
                at = end;
            }
        }
        let ident_end = code[at..]
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .map(|n| at + n)
            .unwrap_or(code.len());
        if ident_end == at {
            return (vec![path], at);
        }
        path.push(code[at..ident_end].to_string());
        at = ident_end;
        if code[at..].starts_with("::") {
            at += 2;
        } else {
            return (vec![path], at);
        }
    }
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        if file.ends_with("main.rs") || file.ends_with("lib.rs") {
            continue;
        }
        let from = file_unit(&src, &file);
        let code = std::fs::read_to_string(&file).unwrap();
        let deps = edges.entry(from.clone()).or_default();
        for path in crate_paths(&code) {
            let segs: Vec<&str> = path.iter().map(String::as_str).collect();
            if let Some(to) = unit(&segs)
                && to != from
                && to != "self"
            {
                deps.insert(to);
            }
        }
    }
    edges
}

/// A circle through `start`, if any (depth-first).
fn circle(
    edges: &BTreeMap<String, BTreeSet<String>>,
    start: &str,
    at: &str,
    path: &mut Vec<String>,
    seen: &mut BTreeSet<String>,
) -> Option<Vec<String>> {
    for next in edges.get(at).into_iter().flatten() {
        if next == start {
            let mut c = path.clone();
            c.push(start.to_string());
            return Some(c);
        }
        if seen.insert(next.clone()) {
            path.push(next.clone());
            if let Some(c) = circle(edges, start, next, path, seen) {
                return Some(c);
            }
            path.pop();
        }
    }
    None
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let edges = graph();
    assert!(edges.contains_key("proxy::session") && edges.contains_key("config"));
    let mut circles = Vec::new();
    for start in edges.keys() {
        let mut path = vec![start.clone()];
        if let Some(c) = circle(&edges, start, start, &mut path, &mut BTreeSet::new()) {
            circles.push(c.join(" -> "));
        }
    }
    assert!(
        circles.is_empty(),
        "import circles:\n{}",
        circles.join("\n")
    );
}

#[test]
fn shared_leaves_import_neither_wing() {
    let edges = graph();
    for (from, deps) in &edges {
        if from.starts_with("proxy") || from.starts_with("tools") || from == "fuzzing" {
            continue;
        }
        for to in deps {
            assert!(
                !to.starts_with("proxy") && !to.starts_with("tools"),
                "the shared module {from} imports {to}"
            );
        }
    }
}

#[test]
fn the_parser_finds_grouped_and_inline_paths() {
    let code = "use crate::{a::b, c::{d, e::f}};\nfn x() { crate::g::h(); }\n// crate::ignored\n";
    let paths: Vec<String> = crate_paths(code).iter().map(|p| p.join("::")).collect();
    assert_eq!(paths, ["a::b", "c::d", "c::e::f", "g::h"]);
    assert_eq!(
        unit(&["proxy", "session", "decide"]).unwrap(),
        "proxy::session"
    );
    assert_eq!(unit(&["config", "Settings"]).unwrap(), "config");
}

#[test]
fn architecture_md_names_every_file_and_folder() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("ARCHITECTURE.md")).unwrap();
    let src = root.join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut missing = Vec::new();
    for file in files {
        let rel = file.strip_prefix(&src).unwrap();
        let name = rel.file_name().unwrap().to_string_lossy().into_owned();
        let wanted = if name == "mod.rs" {
            // A folder module: the folder, as `name/`.
            format!(
                "{}/",
                rel.parent().unwrap().file_name().unwrap().to_string_lossy()
            )
        } else {
            name
        };
        if !doc.contains(&wanted) {
            missing.push(rel.display().to_string());
        }
    }
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md does not mention: {missing:?}"
    );
}
