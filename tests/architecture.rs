//! The shape of the source tree (issue 15), checked on every test run:
//! no import cycle between modules, no source file over 700 lines, no two
//! public types with the same name.
//!
//! The module graph: one node per file module (`src/rollout/kube.rs` is
//! `rollout::kube`), one edge per `crate::…`/`super::…` path its code names
//! (unit tests excluded), to the longest module that path starts with. A
//! module naming its own ancestors is not an edge (a child may use what its
//! parent declares); every other edge counts, a parent naming its children
//! included, so `a → a::b → c → a` is a cycle between `a` and `c`.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

const MAX_LINES: usize = 700;

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// `src/a/b.rs` → `a::b`, `src/a/mod.rs` → `a`, `src/lib.rs` → `` (the
/// crate). None for binaries.
fn module_of(file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src()).unwrap();
    if rel.starts_with("bin") {
        return None;
    }
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().unwrap();
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" && stem != "lib" {
        parts.push(stem.to_string());
    }
    Some(parts.join("::"))
}

/// The code of a file without comments and without its unit tests.
fn code(text: &str) -> String {
    let body = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    body.lines()
        .map(|l| match l.find("//") {
            // A `//` inside a string ("http://…") is kept: only a comment
            // starts a line or follows code after a space.
            Some(i) if l[..i].trim().is_empty() || l[..i].ends_with(' ') => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every path a use tree starting at `rest` (just after `crate::` or
/// `super::`) names: `{a::{b, c}, d}` → `a::b`, `a::c`, `d`.
fn use_paths(rest: &str) -> Vec<String> {
    fn tree(s: &[u8], i: &mut usize, prefix: &str, out: &mut Vec<String>) {
        let mut path = prefix.to_string();
        loop {
            while *i < s.len() && s[*i].is_ascii_whitespace() {
                *i += 1;
            }
            if *i < s.len() && s[*i] == b'{' {
                *i += 1;
                loop {
                    tree(s, i, &path, out);
                    while *i < s.len() && (s[*i].is_ascii_whitespace() || s[*i] == b',') {
                        *i += 1;
                    }
                    if *i >= s.len() || s[*i] == b'}' {
                        *i += 1;
                        return;
                    }
                }
            }
            let start = *i;
            while *i < s.len() && (s[*i].is_ascii_alphanumeric() || s[*i] == b'_') {
                *i += 1;
            }
            let ident = std::str::from_utf8(&s[start..*i]).unwrap();
            if ident.is_empty() {
                out.push(path);
                return;
            }
            if !path.is_empty() {
                path.push_str("::");
            }
            path.push_str(ident);
            if s[*i..].starts_with(b"::") {
                *i += 2;
                continue;
            }
            out.push(path);
            return;
        }
    }
    let mut out = Vec::new();
    tree(rest.as_bytes(), &mut 0, "", &mut out);
    out
}

fn is_ancestor(a: &str, of: &str) -> bool {
    a.is_empty() || of.starts_with(&format!("{a}::"))
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let modules: BTreeSet<String> = files.iter().filter_map(|f| module_of(f)).collect();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in &files {
        let Some(from) = module_of(f) else { continue };
        let text = code(&std::fs::read_to_string(f).unwrap());
        let parent = from.rsplit_once("::").map_or("", |(p, _)| p).to_string();
        // A `mod.rs`'s `super` is its folder's parent, as for a file.
        for (anchor, base) in [("crate::", String::new()), ("super::", parent)] {
            for (i, _) in text.match_indices(anchor) {
                if i > 0 {
                    let b = text.as_bytes()[i - 1];
                    if b.is_ascii_alphanumeric() || b == b'_' || (b == b':' && anchor == "super::")
                    {
                        continue;
                    }
                }
                for p in use_paths(&text[i + anchor.len()..]) {
                    let full = if base.is_empty() {
                        p
                    } else {
                        format!("{base}::{p}")
                    };
                    // The longest module the path starts with.
                    let mut target = full.as_str();
                    let to = loop {
                        if modules.contains(target) {
                            break target.to_string();
                        }
                        match target.rsplit_once("::") {
                            Some((head, _)) => target = head,
                            None => break String::new(),
                        }
                    };
                    if to == from || to.is_empty() || is_ancestor(&to, &from) {
                        continue;
                    }
                    edges.entry(from.clone()).or_default().insert(to);
                }
            }
        }
        // A parent declares its children: `mod kube;` is an edge too.
        if !from.is_empty() {
            edges.entry(from).or_default();
        }
    }
    for m in &modules {
        if let Some((parent, _)) = m.rsplit_once("::") {
            edges
                .entry(parent.to_string())
                .or_default()
                .insert(m.clone());
        }
    }
    edges
}

/// A cycle of `edges`, if there is one.
fn find_cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(n.to_string(), 1);
        stack.push(n.to_string());
        for m in edges.get(n).into_iter().flatten() {
            match state.get(m.as_str()).copied().unwrap_or(0) {
                0 => {
                    if let Some(c) = visit(m, edges, state, stack) {
                        return Some(c);
                    }
                }
                1 => {
                    let at = stack.iter().position(|s| s == m).unwrap();
                    let mut c = stack[at..].to_vec();
                    c.push(m.clone());
                    return Some(c);
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(n.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in edges.keys() {
        if state.get(n.as_str()).copied().unwrap_or(0) == 0 {
            if let Some(c) = visit(n, edges, &mut state, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

#[test]
fn the_module_graph_has_no_cycle() {
    let edges = graph();
    assert!(edges.len() > 20, "the graph was read: {edges:?}");
    assert!(
        edges["promotion"].contains("rollout") && edges["server"].contains("promotion"),
        "edges are found: {edges:?}"
    );
    if let Some(cycle) = find_cycle(&edges) {
        panic!("import cycle: {}", cycle.join(" → "));
    }
}

#[test]
fn the_cycle_check_finds_cycles() {
    let mut e: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut edge = |a: &str, b: &str| {
        e.entry(a.into()).or_default().insert(b.into());
    };
    edge("channel", "store");
    edge("store", "refplan");
    edge("refplan", "channel");
    edge("refname", "store");
    assert_eq!(
        find_cycle(&e).unwrap(),
        vec!["channel", "store", "refplan", "channel"]
    );
    e.get_mut("refplan").unwrap().clear();
    assert_eq!(find_cycle(&e), None);
    assert_eq!(
        use_paths("{config::Pipeline, store::{Store, StoreError}, refname};"),
        vec![
            "config::Pipeline",
            "store::Store",
            "store::StoreError",
            "refname"
        ]
    );
}

#[test]
fn no_source_file_is_over_700_lines() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut long: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let n = std::fs::read_to_string(f).unwrap().lines().count();
            (n > MAX_LINES).then(|| format!("{} ({n} lines)", f.display()))
        })
        .collect();
    long.sort();
    assert!(long.is_empty(), "over {MAX_LINES} lines: {long:#?}");
}

#[test]
fn no_two_public_types_share_a_name() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut seen: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for f in &files {
        for line in code(&std::fs::read_to_string(f).unwrap()).lines() {
            let l = line.trim_start();
            for kind in ["pub struct ", "pub enum ", "pub trait ", "pub type "] {
                if let Some(rest) = l.strip_prefix(kind) {
                    let name: String = rest
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    seen.entry(name)
                        .or_default()
                        .push(f.strip_prefix(src()).unwrap().display().to_string());
                }
            }
        }
    }
    let shared: Vec<_> = seen.iter().filter(|(_, at)| at.len() > 1).collect();
    assert!(
        shared.is_empty(),
        "public types sharing a name: {shared:#?}"
    );
}
