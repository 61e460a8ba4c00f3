//! The library's layering, checked from its source: every top-level module imports only
//! modules below it in [`ORDER`], no core module names a terminal-UI crate, and no two files
//! of a module depend on each other (directly or round a longer loop). A file's references
//! are the `crate::…`, `super::…` and `self::…` paths in it, resolved to the file that
//! defines the item (through `pub use` re-exports); a `mod.rs` re-exporting its own
//! children is not a dependency. The binary's `cli/` is checked as the top layer.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Lowest first: a module may use only modules before it.
const ORDER: &[&str] = &[
    "units",
    "allocator",
    "pyjson",
    "paths",
    "files",
    "choice",
    "telemetry",
    "logging",
    "data",
    "template",
    "ops",
    "lora",
    "model",
    "batch",
    "infer",
    "config",
    "synth",
    "eval",
    "reward",
    "runs",
    "track",
    "sweep",
    "queue",
    "export",
    "scaleout",
    "serve",
    "train",
    "engine",
    "workspace",
    "doctor",
    "tui",
    "cli",
];

/// A source file and the module path it defines (`train::step`, `tui::tabs`).
struct File {
    path: PathBuf,
    module: Vec<String>,
    /// `mod.rs`, `lib.rs` or a file with child modules: its module is a folder.
    is_dir_root: bool,
    text: String,
}

fn files() -> Vec<File> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = Vec::new();
    for e in walkdir::WalkDir::new(&src).sort_by_file_name() {
        let e = e.unwrap();
        let p = e.path();
        if p.extension().is_none_or(|x| x != "rs") {
            continue;
        }
        let rel = p.strip_prefix(&src).unwrap();
        let parts: Vec<String> = rel
            .iter()
            .map(|c| c.to_string_lossy().into_owned())
            .collect();
        // The crate roots; `cli/` is the binary's shell over the library, checked too (its
        // `crate::cli::…` paths name the same tree).
        if parts[0] == "main.rs" || parts[0] == "lib.rs" {
            continue;
        }
        let mut module: Vec<String> = parts.clone();
        let last = module.pop().unwrap();
        let is_dir_root = last == "mod.rs";
        if !is_dir_root {
            module.push(last.trim_end_matches(".rs").to_string());
        }
        // Code only: comments would count paths they merely mention.
        let text = std::fs::read_to_string(p)
            .unwrap()
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        out.push(File {
            path: rel.to_path_buf(),
            module,
            is_dir_root,
            text,
        });
    }
    out
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Every path that starts with `crate::`, `super::` or `self::` (braces expanded one level
/// per group), as segments including the leading keyword.
fn paths(text: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let bytes: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < bytes.len() {
        let at_word = i == 0 || !is_ident(bytes[i - 1]);
        let rest: String = bytes[i..bytes.len().min(i + 8)].iter().collect();
        let kw = ["crate::", "super::", "self::"]
            .into_iter()
            .find(|k| rest.starts_with(k));
        let (Some(kw), true) = (kw, at_word) else {
            i += 1;
            continue;
        };
        let mut prefix = vec![kw.trim_end_matches("::").to_string()];
        i += kw.len();
        loop {
            // `super::super::x`
            let seg: String = bytes[i..].iter().take_while(|c| is_ident(**c)).collect();
            if !seg.is_empty() {
                i += seg.len();
                prefix.push(seg);
                let next: String = bytes[i..bytes.len().min(i + 2)].iter().collect();
                if next == "::" {
                    i += 2;
                    continue;
                }
                out.push(prefix);
                break;
            }
            if bytes.get(i) == Some(&'{') {
                let mut depth = 0;
                let mut j = i;
                let mut group = String::new();
                while j < bytes.len() {
                    let c = bytes[j];
                    if c == '{' {
                        depth += 1;
                    } else if c == '}' {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    if depth >= 1 && !(depth == 1 && c == '{') {
                        group.push(c);
                    }
                    j += 1;
                }
                for item in group.split(',') {
                    let segs: Vec<String> = item
                        .split("::")
                        .map(|s| {
                            s.split_whitespace()
                                .next()
                                .unwrap_or("")
                                .trim_matches(|c: char| !is_ident(c))
                                .to_string()
                        })
                        .filter(|s| !s.is_empty())
                        .collect();
                    if !segs.is_empty() {
                        let mut p = prefix.clone();
                        p.extend(segs);
                        out.push(p);
                    }
                }
                i = j + 1;
            } else {
                out.push(prefix);
            }
            break;
        }
    }
    out
}

struct Tree {
    /// Module path → file index.
    modules: BTreeMap<Vec<String>, usize>,
    /// For each file: re-exported item name → the module it comes from.
    reexports: Vec<BTreeMap<String, Vec<String>>>,
}

impl Tree {
    fn new(files: &[File]) -> Self {
        let modules = files
            .iter()
            .enumerate()
            .map(|(i, f)| (f.module.clone(), i))
            .collect();
        let reexports = files
            .iter()
            .map(|f| {
                let mut m = BTreeMap::new();
                for line in f.text.lines() {
                    let l = line.trim();
                    let Some(rest) = l.strip_prefix("pub use ") else {
                        continue;
                    };
                    let rest = rest.trim_end_matches(';');
                    let (head, items) = match rest.split_once("::{") {
                        Some((h, i)) => (h.to_string(), i.trim_end_matches('}').to_string()),
                        None => match rest.rsplit_once("::") {
                            Some((h, i)) => (h.to_string(), i.to_string()),
                            None => continue,
                        },
                    };
                    let base = resolve_base(&f.module, f.is_dir_root, &head);
                    for item in items.split(',') {
                        let name = item.split(" as ").last().unwrap_or("").trim();
                        let first = item.split("::").next().unwrap_or("").trim();
                        if !name.is_empty() {
                            let mut target = base.clone();
                            if item.contains("::") {
                                target.push(first.to_string());
                            }
                            m.insert(name.to_string(), target);
                        }
                    }
                }
                m
            })
            .collect();
        Tree { modules, reexports }
    }

    /// The file that defines what `segs` (absolute, without `crate`) names: the deepest
    /// module on the path, followed through re-exports of an item.
    fn file_of(&self, segs: &[String], depth: usize) -> Option<usize> {
        let mut best = None;
        for n in (1..=segs.len()).rev() {
            if let Some(i) = self.modules.get(&segs[..n]) {
                best = Some((n, *i));
                break;
            }
        }
        let (n, i) = best?;
        if n < segs.len() && depth < 4 {
            if let Some(target) = self.reexports[i].get(&segs[n]) {
                let mut t = target.clone();
                t.extend_from_slice(&segs[n + 1..]);
                if t != segs {
                    return self.file_of(&t, depth + 1).or(Some(i));
                }
            }
        }
        Some(i)
    }
}

/// `head` (starting with crate/super/self, or a bare child name) made absolute for a file
/// of `module`.
fn resolve_base(module: &[String], is_dir_root: bool, head: &str) -> Vec<String> {
    let segs: Vec<&str> = head.split("::").collect();
    let mut base: Vec<String> = match segs[0] {
        "crate" => Vec::new(),
        "self" => module.to_vec(),
        "super" => {
            let mut m = module.to_vec();
            if !is_dir_root {
                m.pop();
            }
            m
        }
        child => {
            let mut m = module.to_vec();
            if !is_dir_root {
                m.pop();
            }
            m.push(child.to_string());
            m
        }
    };
    for s in &segs[1..] {
        if *s == "super" {
            base.pop();
        } else {
            base.push(s.to_string());
        }
    }
    base
}

/// Absolute segments of a path found in a file (its first segment is the keyword).
fn absolute(f: &File, p: &[String]) -> Vec<String> {
    let mut base = match p[0].as_str() {
        "crate" => Vec::new(),
        "self" => f.module.clone(),
        _ => {
            let mut m = f.module.clone();
            if !f.is_dir_root {
                m.pop();
            }
            m
        }
    };
    for s in &p[1..] {
        if s == "super" {
            base.pop();
        } else if s != "self" {
            base.push(s.clone());
        }
    }
    base
}

#[test]
fn modules_import_only_what_is_below_them() {
    let files = files();
    let mut bad = Vec::new();
    for f in &files {
        let me = &f.module[0];
        let Some(rank) = ORDER.iter().position(|m| m == me) else {
            bad.push(format!(
                "{}: module {me} is not in the layer order",
                f.path.display()
            ));
            continue;
        };
        for p in paths(&f.text) {
            let abs = absolute(f, &p);
            let Some(top) = abs.first() else { continue };
            if top == me {
                continue;
            }
            match ORDER.iter().position(|m| m == top) {
                Some(r) if r < rank => {}
                Some(_) => bad.push(format!(
                    "{}: {me} uses {}, which is above it",
                    f.path.display(),
                    abs.join("::")
                )),
                None => {}
            }
        }
        let shell = me == "tui" || me == "cli";
        if !shell && (f.text.contains("ratatui::") || f.text.contains("crossterm::")) {
            bad.push(format!(
                "{}: a core module names a terminal-UI crate",
                f.path.display()
            ));
        }
    }
    assert!(bad.is_empty(), "layering broken:\n{}", bad.join("\n"));
}

#[test]
fn no_two_files_depend_on_each_other() {
    let files = files();
    let tree = Tree::new(&files);
    let mut edges: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); files.len()];
    for (i, f) in files.iter().enumerate() {
        for p in paths(&f.text) {
            let abs = absolute(f, &p);
            let Some(j) = tree.file_of(&abs, 0) else {
                continue;
            };
            let target = &files[j].module;
            // A module root re-exporting or declaring its own children is not a dependency.
            let into_own_child = f.is_dir_root && target.starts_with(&f.module);
            if j != i && !into_own_child {
                edges[i].insert(j);
            }
        }
    }
    // Depth-first search for a cycle, reporting the loop.
    fn visit(
        n: usize,
        edges: &[BTreeSet<usize>],
        state: &mut [u8],
        stack: &mut Vec<usize>,
    ) -> Option<Vec<usize>> {
        state[n] = 1;
        stack.push(n);
        for &m in &edges[n] {
            if state[m] == 1 {
                let at = stack.iter().position(|x| *x == m).unwrap_or(0);
                let mut cycle = stack[at..].to_vec();
                cycle.push(m);
                return Some(cycle);
            }
            if state[m] == 0 {
                if let Some(c) = visit(m, edges, state, stack) {
                    return Some(c);
                }
            }
        }
        stack.pop();
        state[n] = 2;
        None
    }
    let mut state = vec![0u8; files.len()];
    for n in 0..files.len() {
        if state[n] == 0 {
            if let Some(c) = visit(n, &edges, &mut state, &mut Vec::new()) {
                let names: Vec<String> = c
                    .iter()
                    .map(|i| files[*i].path.display().to_string())
                    .collect();
                panic!("files depend on each other: {}", names.join(" → "));
            }
        }
    }
    // The check sees real edges: the step dispatches to the hand-written backward.
    let idx = |p: &str| files.iter().position(|f| f.path == Path::new(p)).unwrap();
    assert!(edges[idx("train/step.rs")].contains(&idx("train/manual.rs")));
    // …and the CLI's files are in it.
    assert!(edges[idx("cli/data/stats.rs")].contains(&idx("cli/data/input.rs")));
    assert!(edges[idx("train/manual.rs")].contains(&idx("train/micro.rs")));
}
