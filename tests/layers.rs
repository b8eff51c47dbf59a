//! The shape of the code, checked: layers only point down (ARCHITECTURE.md),
//! no file reaches itself through `use crate::` paths, no file is over 600
//! lines and no function over 80, except the proxy's hot pumps, which say
//! so in a comment above them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layer of each top-level module.
fn layer(module: &str) -> Option<u8> {
    Some(match module {
        "vocab" => 0,
        "topology" | "proxy" | "redis_admin" => 1,
        "fault" | "conductor" | "load" | "workload" | "recorder" | "telemetry" | "ledger"
        | "testbed" => 2,
        "scenario" => 3,
        "report" => 4,
        "run" | "capacity" | "lab" | "bench" | "bench_http" | "bench_gate" | "bench_open"
        | "bench_peer" | "bench_proxy" | "bench_soak" | "gate" | "stop" | "clean" => 5,
        "cli" | "testing" => 6,
        _ => return None,
    })
}

/// Every source file, by its module path (`fault/mod.rs` → `fault`).
fn sources() -> BTreeMap<String, (PathBuf, String)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    walk(&src, &mut files);
    files
        .into_iter()
        .map(|p| {
            let rel = p.strip_prefix(&src).unwrap().with_extension("");
            let mut parts: Vec<String> = rel.iter().map(|s| s.to_string_lossy().into()).collect();
            if matches!(
                parts.last().map(String::as_str),
                Some("mod" | "lib" | "main")
            ) {
                parts.pop();
            }
            let text = std::fs::read_to_string(&p).unwrap();
            (parts.join("::"), (p, text))
        })
        .collect()
}

/// The code of a file without its trailing unit tests.
fn code(text: &str) -> &str {
    text.find("#[cfg(test)]\nmod tests")
        .map_or(text, |i| &text[..i])
}

/// The modules a file names through `crate::` paths.
fn imports(text: &str, modules: &BTreeSet<String>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let code = code(text);
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        let path: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
            .collect();
        let segs: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
        if let Some(n) = (1..=segs.len())
            .rev()
            .find(|&n| modules.contains(&segs[..n].join("::")))
        {
            out.insert(segs[..n].join("::"));
        }
    }
    out
}

#[test]
fn layers_only_point_down() {
    let _gate = crate::common::gate(module_path!());
    let files = sources();
    let modules: BTreeSet<String> = files.keys().cloned().collect();
    let mut upward = Vec::new();
    for (module, (_, text)) in &files {
        let Some(mine) = layer(module.split("::").next().unwrap()) else {
            continue;
        };
        for target in imports(text, &modules) {
            let theirs = layer(target.split("::").next().unwrap());
            if theirs.is_some_and(|t| t > mine) {
                upward.push(format!(
                    "{module} (L{mine}) imports {target} (L{})",
                    theirs.unwrap()
                ));
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports pointing up:\n{}",
        upward.join("\n")
    );
}

#[test]
fn no_file_reaches_itself() {
    let _gate = crate::common::gate(module_path!());
    let files = sources();
    let modules: BTreeSet<String> = files.keys().cloned().collect();
    let edges: BTreeMap<&String, BTreeSet<String>> = files
        .iter()
        .map(|(m, (_, text))| {
            let mut targets = imports(text, &modules);
            targets.remove(m);
            targets.remove("");
            (m, targets)
        })
        .collect();
    // A file is on a cycle when it can reach itself.
    let mut cyclic = Vec::new();
    for start in edges.keys() {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<&String> = edges[start].iter().collect();
        while let Some(m) = stack.pop() {
            if m == *start {
                cyclic.push(start.to_string());
                break;
            }
            if seen.insert(m.clone()) {
                stack.extend(edges.get(m).into_iter().flatten());
            }
        }
    }
    assert!(cyclic.is_empty(), "files on an import cycle: {cyclic:?}");
}

#[test]
fn files_and_functions_stay_small() {
    let _gate = crate::common::gate(module_path!());
    let mut too_big = Vec::new();
    for (path, text) in sources().values() {
        let lines: Vec<&str> = text.lines().collect();
        if lines.len() > 600 {
            too_big.push(format!("{}: {} lines", path.display(), lines.len()));
        }
        for (start, len) in functions(&lines) {
            let above = lines[start.saturating_sub(4)..start].join("\n");
            if len > 80 && !above.contains("hot pump") {
                too_big.push(format!(
                    "{}:{}: a function of {len} lines",
                    path.display(),
                    start + 1
                ));
            }
        }
    }
    assert!(
        too_big.is_empty(),
        "over the limits:\n{}",
        too_big.join("\n")
    );
}

/// `(first line index, length)` of every function with a body.
fn functions(lines: &[&str]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let t = line.trim_start();
        let is_fn = !t.starts_with("//")
            && [
                "fn ",
                "pub fn ",
                "async fn ",
                "pub async fn ",
                "pub(crate) fn ",
                "pub(super) fn ",
                "pub(crate) async fn ",
                "pub(super) async fn ",
                "const fn ",
                "pub const fn ",
            ]
            .iter()
            .any(|p| t.starts_with(p));
        if !is_fn {
            continue;
        }
        let mut depth = 0i32;
        let mut opened = false;
        for (j, l) in lines.iter().enumerate().skip(i) {
            let code = strip(l);
            if !opened && code.trim_end().ends_with(';') {
                break;
            }
            for c in code.chars() {
                match c {
                    '{' => {
                        depth += 1;
                        opened = true;
                    }
                    '}' => depth -= 1,
                    _ => {}
                }
            }
            if opened && depth == 0 {
                out.push((i, j - i + 1));
                break;
            }
        }
    }
    out
}

/// A line without its comment and the contents of its string and char
/// literals (so that braces in them do not count).
fn strip(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.chars().peekable();
    let mut in_str = false;
    while let Some(c) = chars.next() {
        match (in_str, c) {
            (true, '\\') => {
                chars.next();
            }
            (true, '"') => in_str = false,
            (true, _) => {}
            (false, '"') => in_str = true,
            (false, '\'') => {
                // A char literal such as '{' (a lifetime has no closing quote).
                let mut look = chars.clone();
                let lit = match (look.next(), look.next(), look.next()) {
                    (Some('\\'), Some(_), Some('\'')) => 3,
                    (Some(_), Some('\''), _) => 2,
                    _ => 0,
                };
                for _ in 0..lit {
                    chars.next();
                }
            }
            (false, '/') if chars.peek() == Some(&'/') => break,
            (false, c) => out.push(c),
        }
    }
    out
}
