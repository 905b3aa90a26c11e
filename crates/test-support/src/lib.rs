//! Helpers shared by the test packages (the end-to-end tests in `tests/` and ceremony-tools'
//! tests): the documentation's runnable examples, looked up by name.
//!
//! An example is a file `docs/examples/<name>.sh`. A page shows it verbatim between markers,
//! each on a line of its own:
//!
//! ````text
//! <!-- example: <name> -->
//! ```sh
//! ...the file's lines...
//! ```
//! <!-- /example -->
//! ````
//!
//! A test runs it with [`example`]`("<name>")`, the name written as a string literal so that
//! [`example_problems`] can see which tests run which example. That check (run by this crate's
//! unit tests) fails when a page's block differs from its file, a file is included by no page or
//! by two, a marker names no file, or no test names an example.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Where the examples live, relative to the checkout.
pub const EXAMPLES_DIR: &str = "docs/examples";

const OPEN: &str = "<!-- example:";
const CLOSE: &str = "<!-- /example -->";
const CALL: &str = "example(\"";

/// The checkout this crate is built from.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The text of `docs/examples/<name>.sh`, the lines a page shows, for a test to run as written.
pub fn example(name: &str) -> String {
    assert!(valid_name(name), "example {name:?}: a name is lower-case letters, digits and '-'");
    let path = repo_root().join(EXAMPLES_DIR).join(format!("{name}.sh"));
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("example {name:?}: cannot read {}: {e}", path.display()))
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('-')
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// What is wrong with the examples of the checkout at `root`, one line each; empty when every
/// file in `docs/examples` is included exactly once, as written, by a Markdown page and named by
/// a test, and every marker and every test's `example("...")` names a file that exists.
///
/// Pages are the `*.md` files under `root`; tests are the `*.rs` files under any directory
/// named `tests`. Hidden entries and `target` directories are skipped.
pub fn example_problems(root: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    let examples_dir = root.join(EXAMPLES_DIR);
    let mut examples = BTreeMap::new();
    if let Ok(entries) = std::fs::read_dir(&examples_dir) {
        let mut names: Vec<String> =
            entries.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        for file in names {
            match file.strip_suffix(".sh").filter(|name| valid_name(name)) {
                Some(name) => match std::fs::read_to_string(examples_dir.join(&file)) {
                    Ok(text) => {
                        examples.insert(name.to_string(), text);
                    }
                    Err(e) => problems.push(format!("{EXAMPLES_DIR}/{file}: cannot read: {e}")),
                },
                None => problems.push(format!(
                    "{EXAMPLES_DIR}/{file}: not an example: examples are NAME.sh, NAME lower-case \
                     letters, digits and '-'"
                )),
            }
        }
    }

    let (pages, sources) = files(root);
    let mut included: BTreeMap<String, String> = BTreeMap::new();
    for page in &pages {
        let Ok(text) = std::fs::read_to_string(root.join(page)) else {
            problems.push(format!("{}: cannot read", page.display()));
            continue;
        };
        for inclusion in inclusions(&text) {
            let at = format!("{}:{}", page.display(), inclusion.line);
            let block = match inclusion.block {
                Ok(block) => block,
                Err(why) => {
                    problems.push(format!("{at}: {why}"));
                    continue;
                }
            };
            let name = inclusion.name;
            if let Some(first) = included.get(&name) {
                problems.push(format!("{at}: example {name:?} is included twice (first at {first})"));
                continue;
            }
            included.insert(name.clone(), at.clone());
            match examples.get(&name) {
                None => {
                    problems.push(format!("{at}: example {name:?}: {EXAMPLES_DIR}/{name}.sh does not exist"))
                }
                Some(file) if *file != block => problems.push(format!(
                    "{at}: example {name:?} differs from {EXAMPLES_DIR}/{name}.sh: {}",
                    difference(file, &block)
                )),
                Some(_) => {}
            }
        }
    }

    let mut run: BTreeMap<String, String> = BTreeMap::new();
    for source in &sources {
        let Ok(text) = std::fs::read_to_string(root.join(source)) else { continue };
        for (line, name) in calls(&text) {
            let at = format!("{}:{line}", source.display());
            if !examples.contains_key(&name) {
                problems.push(format!(
                    "{at}: runs example {name:?}, but {EXAMPLES_DIR}/{name}.sh does not exist"
                ));
            }
            run.entry(name).or_insert(at);
        }
    }

    for name in examples.keys() {
        if !included.contains_key(name) {
            problems
                .push(format!("{EXAMPLES_DIR}/{name}.sh is included by no page (<!-- example: {name} -->)"));
        }
        if !run.contains_key(name) {
            problems.push(format!("{EXAMPLES_DIR}/{name}.sh: no test runs it (example(\"{name}\"))"));
        }
    }
    problems
}

/// One `<!-- example: NAME -->` marker of a page: its line, and the block it encloses or why
/// there is none.
#[derive(Debug)]
struct Inclusion {
    line: usize,
    name: String,
    block: Result<String, String>,
}

/// The markers of a page, outside code fences. The block is the lines of the ```sh fence right
/// after the marker, each ending in a newline, as the example's file holds them.
fn inclusions(text: &str) -> Vec<Inclusion> {
    let lines: Vec<&str> = text.lines().collect();
    let mut found = Vec::new();
    let mut in_fence = false;
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim_end();
        i += 1;
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
            continue;
        }
        if in_fence {
            continue;
        }
        if line == CLOSE {
            found.push(Inclusion {
                line: i,
                name: String::new(),
                block: Err(format!("{CLOSE} without an opening marker")),
            });
            continue;
        }
        let Some(rest) = line.strip_prefix(OPEN) else { continue };
        let at = i;
        let Some(name) = rest.strip_suffix("-->").map(str::trim).filter(|n| valid_name(n)) else {
            found.push(Inclusion {
                line: at,
                name: String::new(),
                block: Err(format!("{line:?} is not a marker {OPEN} NAME --> (NAME: a-z, 0-9, '-')")),
            });
            continue;
        };
        let block = (|| {
            if lines.get(i).map(|l| l.trim_end()) != Some("```sh") {
                return Err(format!("example {name:?}: the marker's next line must open a ```sh fence"));
            }
            i += 1;
            let mut block = String::new();
            loop {
                match lines.get(i).map(|l| l.trim_end()) {
                    None => return Err(format!("example {name:?}: its ```sh fence is never closed")),
                    Some("```") => break,
                    Some(_) => {
                        block.push_str(lines[i]);
                        block.push('\n');
                        i += 1;
                    }
                }
            }
            i += 1;
            if lines.get(i).map(|l| l.trim_end()) != Some(CLOSE) {
                return Err(format!("example {name:?}: the line after its fence must be {CLOSE}"));
            }
            i += 1;
            Ok(block)
        })();
        found.push(Inclusion { line: at, name: name.to_string(), block });
    }
    found
}

/// Where `shown` first departs from `file`.
fn difference(file: &str, shown: &str) -> String {
    let (a, b): (Vec<&str>, Vec<&str>) = (file.lines().collect(), shown.lines().collect());
    match (0..a.len().max(b.len())).find(|&n| a.get(n) != b.get(n)) {
        Some(n) => format!(
            "line {} of the file is {:?}, the page shows {:?}",
            n + 1,
            a.get(n).copied().unwrap_or("(end of file)"),
            b.get(n).copied().unwrap_or("(end of block)")
        ),
        None => "the file does not end in exactly one newline".to_string(),
    }
}

/// Every `example("NAME")` in a test source, with its line.
fn calls(text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let mut rest = line;
        while let Some(start) = rest.find(CALL) {
            rest = &rest[start + CALL.len()..];
            if let Some(end) = rest.find('"') {
                if valid_name(&rest[..end]) {
                    found.push((n + 1, rest[..end].to_string()));
                }
                rest = &rest[end..];
            }
        }
    }
    found
}

/// The Markdown pages and the test sources under `root`, relative to it, sorted.
fn files(root: &Path) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let (mut pages, mut sources) = (Vec::new(), Vec::new());
    let mut stack = vec![PathBuf::new()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(root.join(&dir)) else { continue };
        for entry in entries.filter_map(|e| e.ok()) {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || name == "target" {
                continue;
            }
            let path = dir.join(&name);
            let Ok(kind) = entry.file_type() else { continue };
            if kind.is_dir() {
                stack.push(path);
            } else if kind.is_file() && name.ends_with(".md") {
                pages.push(path);
            } else if kind.is_file()
                && name.ends_with(".rs")
                && dir.components().any(|c| c.as_os_str() == "tests")
            {
                sources.push(path);
            }
        }
    }
    pages.sort();
    sources.sort();
    (pages, sources)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_docs_include_every_example_once_as_written_and_tests_run_each() {
        let problems = example_problems(&repo_root());
        assert!(problems.is_empty(), "the examples and the pages disagree:\n{}", problems.join("\n"));
    }

    /// A checkout with one example `a`, shown by docs/page.md and run by tests/t.rs.
    fn checkout(page: &str) -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("docs/examples")).unwrap();
        std::fs::create_dir_all(root.path().join("tests")).unwrap();
        std::fs::write(root.path().join("docs/examples/a.sh"), "set -eu\necho a\n").unwrap();
        std::fs::write(root.path().join("docs/page.md"), page).unwrap();
        std::fs::write(root.path().join("tests/t.rs"), "run(&example(\"a\"));\n").unwrap();
        root
    }

    const GOOD: &str = "# Page\n\n<!-- example: a -->\n```sh\nset -eu\necho a\n```\n<!-- /example -->\n";

    fn problems(root: &tempfile::TempDir) -> String {
        example_problems(root.path()).join("\n")
    }

    #[test]
    fn a_page_that_shows_its_example_as_written_passes() {
        assert_eq!(problems(&checkout(GOOD)), "");
        // A marker inside a code fence is text about markers, not an inclusion.
        let quoted = format!("{GOOD}\n```text\n<!-- example: b -->\n```\n");
        assert_eq!(problems(&checkout(&quoted)), "");
    }

    #[test]
    fn a_block_that_differs_from_its_file_fails() {
        let p = problems(&checkout(&GOOD.replace("echo a", "echo b")));
        assert!(p.contains("docs/page.md:3: example \"a\" differs") && p.contains("line 2"), "{p}");
        let root = checkout(GOOD);
        std::fs::write(root.path().join("docs/examples/a.sh"), "set -eu\necho a").unwrap();
        let p = problems(&root);
        assert!(p.contains("does not end in exactly one newline"), "{p}");
    }

    #[test]
    fn an_example_no_page_includes_fails() {
        let p = problems(&checkout("# Page\n"));
        assert!(p.contains("docs/examples/a.sh is included by no page"), "{p}");
    }

    #[test]
    fn a_marker_naming_no_file_fails() {
        let p = problems(&checkout(&format!("{GOOD}\n{}", GOOD.replace("example: a", "example: b"))));
        assert!(p.contains("example \"b\": docs/examples/b.sh does not exist"), "{p}");
    }

    #[test]
    fn an_example_included_twice_fails() {
        let root = checkout(GOOD);
        std::fs::write(root.path().join("README.md"), GOOD).unwrap();
        let p = problems(&root);
        assert!(p.contains("docs/page.md:3: example \"a\" is included twice (first at README.md:3)"), "{p}");
    }

    #[test]
    fn an_example_no_test_runs_and_a_test_naming_no_example_fail() {
        let root = checkout(GOOD);
        std::fs::write(root.path().join("tests/t.rs"), "run(&example(\"c\"));\n").unwrap();
        let p = problems(&root);
        assert!(p.contains("docs/examples/a.sh: no test runs it"), "{p}");
        assert!(p.contains("tests/t.rs:1: runs example \"c\", but docs/examples/c.sh does not exist"), "{p}");
    }

    #[test]
    fn broken_markers_are_named() {
        for (page, expected) in [
            ("<!-- example: a -->\necho a\n", "must open a ```sh fence"),
            ("<!-- example: a -->\n```sh\necho a\n", "never closed"),
            ("<!-- example: a -->\n```sh\nset -eu\necho a\n```\n", "must be <!-- /example -->"),
            ("<!-- example: A B -->\n", "is not a marker"),
            ("<!-- /example -->\n", "without an opening marker"),
        ] {
            let p = problems(&checkout(page));
            assert!(p.contains(expected), "{page:?}: {p}");
        }
        let root = checkout(GOOD);
        std::fs::write(root.path().join("docs/examples/notes.txt"), "").unwrap();
        assert!(problems(&root).contains("docs/examples/notes.txt: not an example"));
    }
}
