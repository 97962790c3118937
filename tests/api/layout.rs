//! The layout's rules, checked over the source: imports between the top-level modules run
//! one way (each may use only the folders its `mod.rs` names, and the graph has no cycle),
//! and no two modules import each other. Reads every `crate::` path in `src/`, so a new
//! import that breaks a rule fails here, naming the file and the line.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// What each top-level module may use: the "May use" line of its `mod.rs` (and
/// ARCHITECTURE.md's diagram). `model` uses nothing.
const MAY_USE: &[(&str, &[&str])] = &[
    (
        "cli",
        &[
            "web", "guide", "webhook", "deploy", "github", "notify", "store", "config", "metrics",
            "health", "model",
        ],
    ),
    (
        "web",
        &[
            "guide", "webhook", "deploy", "github", "notify", "store", "config", "metrics",
            "health", "model",
        ],
    ),
    ("guide", &["webhook", "config", "model"]),
    (
        "deploy",
        &["github", "store", "config", "metrics", "health", "model"],
    ),
    (
        "github",
        &["notify", "store", "config", "metrics", "health", "model"],
    ),
    ("notify", &["config", "webhook", "model"]),
    ("metrics", &["store", "model"]),
    ("store", &["model"]),
    ("config", &["webhook", "model"]),
    ("webhook", &["model"]),
    ("health", &[]),
    ("model", &[]),
];

/// One `crate::` path found in a file.
#[derive(Debug)]
struct Use {
    /// The module path it names, `["store", "jobs", "claim"]`.
    path: Vec<String>,
    line: usize,
}

fn source_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            source_files(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

/// The module a file defines: `src/store/jobs.rs` → `["store", "jobs"]`.
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let relative = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// Every `crate::…` path in `text`, groups (`crate::{a, b::{c, d}}`) expanded; comments
/// are skipped.
fn crate_paths(text: &str) -> Vec<Use> {
    let mut code = String::new();
    let mut line_of = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.split("//").next().unwrap_or_default();
        code.push_str(line);
        code.push(' ');
        line_of.extend(std::iter::repeat_n(number + 1, line.len() + 1));
    }
    let bytes = code.as_bytes();
    let mut uses = Vec::new();
    let mut from = 0;
    while let Some(at) = code[from..].find("crate::") {
        let start = from + at;
        from = start + "crate::".len();
        let before = start.checked_sub(1).map(|i| bytes[i]);
        if before.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_') {
            continue; // `$crate::`, `my_crate::`
        }
        let mut paths = Vec::new();
        expand(&code, &mut from, Vec::new(), &mut paths);
        for path in paths {
            uses.push(Use {
                path,
                line: line_of[start],
            });
        }
    }
    uses
}

/// Reads a path (or a `{…}` group of them) at `*at`, each prefixed by `prefix`.
fn expand(code: &str, at: &mut usize, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
    let bytes = code.as_bytes();
    let mut path = prefix;
    loop {
        while bytes.get(*at).is_some_and(u8::is_ascii_whitespace) {
            *at += 1;
        }
        if bytes.get(*at) == Some(&b'{') {
            *at += 1;
            loop {
                expand(code, at, path.clone(), out);
                while bytes.get(*at).is_some_and(u8::is_ascii_whitespace) {
                    *at += 1;
                }
                match bytes.get(*at) {
                    Some(b',') => *at += 1,
                    Some(b'}') => {
                        *at += 1;
                        return;
                    }
                    _ => return,
                }
                while bytes.get(*at).is_some_and(u8::is_ascii_whitespace) {
                    *at += 1;
                }
                if bytes.get(*at) == Some(&b'}') {
                    *at += 1;
                    return;
                }
            }
        }
        let start = *at;
        while bytes
            .get(*at)
            .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_')
        {
            *at += 1;
        }
        if *at > start {
            path.push(code[start..*at].to_owned());
        }
        if code[*at..].starts_with("::") {
            *at += 2;
        } else {
            if !path.is_empty() {
                out.push(path);
            }
            return;
        }
    }
}

/// The longest prefix of `path` that names a module file.
fn target_module(path: &[String], modules: &BTreeSet<Vec<String>>) -> Option<Vec<String>> {
    (1..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|prefix| modules.contains(prefix))
}

struct Graph {
    /// (from module, to module) → the first place it happens.
    edges: BTreeMap<(Vec<String>, Vec<String>), String>,
}

fn graph() -> Graph {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    source_files(&src, &mut files);
    files.sort();
    let modules: BTreeSet<Vec<String>> = files.iter().map(|f| module_of(&src, f)).collect();
    let mut edges = BTreeMap::new();
    for file in &files {
        let from = module_of(&src, file);
        let text = std::fs::read_to_string(file).unwrap();
        for used in crate_paths(&text) {
            let Some(to) = target_module(&used.path, &modules) else {
                continue;
            };
            if to != from {
                let place = format!(
                    "{}:{}",
                    file.strip_prefix(&src).unwrap().display(),
                    used.line
                );
                edges.entry((from.clone(), to)).or_insert(place);
            }
        }
    }
    Graph { edges }
}

#[test]
fn each_top_level_module_uses_only_the_folders_below_it() {
    let rules: BTreeMap<&str, &[&str]> = MAY_USE.iter().copied().collect();
    let mut broken = Vec::new();
    for ((from, to), place) in &graph().edges {
        let (Some(a), Some(b)) = (from.first(), to.first()) else {
            continue; // lib.rs and main.rs sit above everything
        };
        if a == b {
            continue;
        }
        let allowed = rules
            .get(a.as_str())
            .unwrap_or_else(|| panic!("top-level module {a} is missing from MAY_USE"));
        if !allowed.contains(&b.as_str()) {
            broken.push(format!("{place}: {a} uses {b}"));
        }
    }
    assert!(
        broken.is_empty(),
        "imports against the layout:\n{}",
        broken.join("\n")
    );
}

#[test]
fn the_layers_form_no_cycle() {
    // Removing, again and again, a module that uses no remaining one empties the table
    // exactly when there is no cycle.
    let mut rules: BTreeMap<&str, BTreeSet<&str>> = MAY_USE
        .iter()
        .map(|(m, uses)| (*m, uses.iter().copied().collect()))
        .collect();
    while let Some(leaf) = rules
        .iter()
        .find(|(_, uses)| uses.is_empty())
        .map(|(m, _)| *m)
    {
        rules.remove(leaf);
        for uses in rules.values_mut() {
            uses.remove(leaf);
        }
    }
    assert!(rules.is_empty(), "a cycle among {:?}", rules.keys());
}

#[test]
fn no_two_modules_import_each_other() {
    let edges = graph().edges;
    let mut pairs = Vec::new();
    for ((from, to), place) in &edges {
        if from < to
            && let Some(back) = edges.get(&(to.clone(), from.clone()))
        {
            pairs.push(format!(
                "{} ({place}) and {} ({back})",
                from.join("::"),
                to.join("::")
            ));
        }
    }
    assert!(
        pairs.is_empty(),
        "modules importing each other:\n{}",
        pairs.join("\n")
    );
}

#[test]
fn the_checker_sees_grouped_and_nested_imports() {
    let uses = crate_paths(
        "use crate::store::{self, jobs::{Claimed, claim}};\n// crate::web::nothing\n\
         let x = crate::model::text::description(\"\");",
    );
    let paths: Vec<String> = uses.iter().map(|u| u.path.join("::")).collect();
    assert_eq!(
        paths,
        [
            "store::self",
            "store::jobs::Claimed",
            "store::jobs::claim",
            "model::text::description"
        ]
    );
    assert_eq!(uses[3].line, 3);
}

/// The most lines a source file may have, tests aside (CONVENTIONS.md: split a file
/// along what it owns before it grows past this).
const MAX_FILE_LINES: usize = 500;

/// The lines of `text` that count toward the size rule: everything but `#[cfg(test)]`
/// modules (an inline `mod tests { … }` or a `mod tests;` pointing at a child file, which
/// is then not read at all). An inline module ends at the line its opening brace closes on.
fn counted_lines(text: &str) -> usize {
    let lines: Vec<&str> = text.lines().collect();
    let mut counted = 0;
    let mut at = 0;
    while at < lines.len() {
        let line = lines[at].trim();
        if line == "#[cfg(test)]" {
            // Skip the attribute, any further attributes, and the item it guards.
            let mut item = at + 1;
            while item < lines.len() && lines[item].trim_start().starts_with("#[") {
                item += 1;
            }
            if item < lines.len() && lines[item].trim_start().contains("mod ") {
                if lines[item].trim_end().ends_with(';') {
                    at = item + 1;
                    continue;
                }
                let mut depth = 0i64;
                let mut end = item;
                'module: for (number, body) in lines.iter().enumerate().skip(item) {
                    for c in body.chars() {
                        match c {
                            '{' => depth += 1,
                            '}' => {
                                depth -= 1;
                                if depth == 0 {
                                    end = number;
                                    break 'module;
                                }
                            }
                            _ => {}
                        }
                    }
                    end = number;
                }
                at = end + 1;
                continue;
            }
        }
        counted += 1;
        at += 1;
    }
    counted
}

/// A child file holding only tests: `foo/tests.rs`, or anything under a `tests/` folder.
fn is_test_file(src: &Path, file: &Path) -> bool {
    let relative = file.strip_prefix(src).unwrap();
    relative.file_name().is_some_and(|n| n == "tests.rs")
        || relative
            .parent()
            .is_some_and(|p| p.components().any(|c| c.as_os_str() == "tests"))
}

/// The folders the size rule covers: the library and binary, the test support crate, and
/// the benchmarks.
const SIZED: [&str; 3] = ["src", "testkit/src", "benches"];

#[test]
fn no_source_file_is_over_the_size_limit() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut over = Vec::new();
    for folder in SIZED {
        let dir = root.join(folder);
        let mut files = Vec::new();
        source_files(&dir, &mut files);
        files.sort();
        for file in files.iter().filter(|f| !is_test_file(&dir, f)) {
            let count = counted_lines(&std::fs::read_to_string(file).unwrap());
            if count > MAX_FILE_LINES {
                over.push(format!(
                    "{}: {count} lines",
                    file.strip_prefix(root).unwrap().display()
                ));
            }
        }
    }
    assert!(
        over.is_empty(),
        "files over {MAX_FILE_LINES} lines (tests aside); split them along what they own:\n{}",
        over.join("\n")
    );
}

#[test]
fn the_size_rule_leaves_out_test_modules_and_nothing_else() {
    let text = "fn a() {}\n\n#[cfg(test)]\nmod tests {\n    fn b() {\n    }\n}\nfn c() {}\n\
                #[cfg(test)]\nmod more;\n#[cfg(test)]\nfn helper() {}\n";
    // fn a, the blank line, fn c, and the test-only function (not a module) count.
    assert_eq!(counted_lines(text), 5);
    let src = Path::new("/x/src");
    assert!(is_test_file(src, Path::new("/x/src/store/waits/tests.rs")));
    assert!(is_test_file(src, Path::new("/x/src/config/tests/parse.rs")));
    assert!(!is_test_file(src, Path::new("/x/src/store/waits.rs")));
}
