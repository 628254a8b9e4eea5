//! Tidy: the architecture rules a machine can check, run by ordinary `cargo test`.

use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
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

fn sources() -> Vec<(PathBuf, String)> {
    let mut files = Vec::new();
    rust_files(&workspace().join("crates"), &mut files);
    files.into_iter().map(|p| (p.clone(), std::fs::read_to_string(&p).unwrap())).collect()
}

#[test]
fn every_module_starts_with_a_doc_comment() {
    for (path, text) in sources() {
        assert!(text.starts_with("//!"), "{} has no //! module doc", path.display());
    }
}

#[test]
fn the_core_stays_pure() {
    let manifest = std::fs::read_to_string(workspace().join("crates/writ-core/Cargo.toml")).unwrap();
    let deps = manifest.split("[dependencies]").nth(1).unwrap().split("\n[").next().unwrap();
    let names: Vec<&str> =
        deps.lines().filter_map(|l| l.split(['.', ' ', '=']).next()).filter(|n| !n.is_empty()).collect();
    assert_eq!(names, ["thiserror", "time"], "writ-core may not depend on I/O crates");
    for (path, text) in sources() {
        if path.to_string_lossy().contains("writ-core/src") {
            for forbidden in ["std::fs", "std::net", "std::process", "SystemTime::now", "std::thread"] {
                assert!(!text.contains(forbidden), "{} uses {forbidden}", path.display());
            }
        }
    }
}

#[test]
fn only_store_crates_contain_sql() {
    for (path, text) in sources() {
        let p = path.to_string_lossy();
        // Exceptions: store crates, the PostgreSQL *target* connector (its SQL manages roles on
        // the target, never Writ's data), tests, and the benchmark's raw-SQL baseline (it
        // measures plain SQLite against the store, so it must not go through the store).
        let file = path.file_name().unwrap().to_string_lossy();
        if p.contains("writ-store-")
            || p.contains("writ-connector-postgres")
            || p.contains("/tests/")
            || file.starts_with("bench")
            || p.ends_with("tests.rs")
        {
            continue;
        }
        for keyword in ["INSERT INTO", "SELECT ", "CREATE TABLE"] {
            assert!(!text.contains(keyword), "{} contains SQL ({keyword})", path.display());
        }
    }
}

#[test]
fn no_ignored_or_should_panic_tests_and_every_allow_is_explained() {
    for (path, text) in sources() {
        assert!(!text.contains(&["#[should", "_panic"].concat()), "{}", path.display());
        assert!(!text.contains(&["#[", "ignore]"].concat()), "{}", path.display());
        for (n, line) in text.lines().enumerate() {
            if line.trim_start().starts_with("#[allow(clippy::") {
                let previous = text.lines().nth(n.saturating_sub(1)).unwrap_or("");
                assert!(
                    previous.contains("PANIC SAFETY") || p_is_test(&path),
                    "{}:{} allow without a PANIC SAFETY note",
                    path.display(),
                    n + 1
                );
            }
        }
    }
}

fn p_is_test(path: &Path) -> bool {
    let p = path.to_string_lossy();
    p.contains("/tests/") || p.ends_with("tests.rs")
}

#[test]
fn store_backends_keep_their_migration_numbers_aligned() {
    let names = |crate_name: &str| -> Vec<String> {
        let mut names: Vec<String> =
            std::fs::read_dir(workspace().join("crates").join(crate_name).join("migrations"))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
        names.sort();
        names
    };
    assert_eq!(names("writ-store-sqlite"), names("writ-store-postgres"));
}

/// The workspace dependencies each crate's manifest lists under `[dependencies]`.
fn workspace_dependencies(crate_name: &str) -> Vec<String> {
    let manifest =
        std::fs::read_to_string(workspace().join("crates").join(crate_name).join("Cargo.toml")).unwrap();
    let Some(section) = manifest.split("\n[dependencies]\n").nth(1) else { return Vec::new() };
    let section = section.split("\n[").next().unwrap_or_default();
    section
        .lines()
        .filter_map(|line| line.split(['.', ' ', '=']).next())
        .filter(|name| !name.is_empty() && !name.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_layers_point_inward_and_nothing_depends_on_the_command_line() {
    let crates: Vec<String> = std::fs::read_dir(workspace().join("crates"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    for name in &crates {
        let deps = workspace_dependencies(name);
        for binary in ["writ", "writ-bench"] {
            assert!(!deps.iter().any(|d| d == binary), "{name} depends on the binary crate {binary}");
        }
    }
    // Everything writ-api and writ-server reach through the workspace, transitively.
    for (layer, forbidden) in [
        ("writ-api", &["writ-server", "axum", "tokio", "clap"][..]),
        ("writ-server", &["clap", "indicatif"][..]),
    ] {
        let mut seen = std::collections::BTreeSet::new();
        let mut queue = vec![layer.to_owned()];
        while let Some(next) = queue.pop() {
            for dep in workspace_dependencies(&next) {
                if crates.contains(&dep) && seen.insert(dep.clone()) {
                    queue.push(dep);
                }
            }
        }
        assert!(!seen.contains("writ"), "{layer} reaches the CLI: {seen:?}");
        for dep in workspace_dependencies(layer) {
            assert!(!forbidden.contains(&dep.as_str()), "{layer} depends on {dep}");
        }
    }
}

/// Modules of `src` (by their top-level name) and the other top-level modules each refers to
/// with `crate::` or `super::`; the crate root is left out (it declares every module).
fn module_graph(src: &Path) -> std::collections::BTreeMap<String, std::collections::BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut graph: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> =
        Default::default();
    for file in files {
        let relative = file.strip_prefix(src).unwrap();
        let top = relative
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_owned();
        if top == "lib" || top == "main" {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        let refers = graph.entry(top.clone()).or_default();
        for prefix in ["crate::", "super::"] {
            for piece in text.split(prefix).skip(1) {
                let name: String =
                    piece.chars().take_while(|c| c.is_ascii_lowercase() || *c == '_').collect();
                if !name.is_empty() && name != top {
                    refers.insert(name);
                }
            }
        }
    }
    let modules: std::collections::BTreeSet<String> = graph.keys().cloned().collect();
    for refers in graph.values_mut() {
        refers.retain(|m| modules.contains(m));
    }
    graph
}

/// Whether `to` can be reached from `from` in `graph`.
fn reaches(
    graph: &std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
    from: &str,
    to: &str,
) -> bool {
    let mut seen = std::collections::BTreeSet::new();
    let mut queue = vec![from.to_owned()];
    while let Some(next) = queue.pop() {
        for m in graph.get(&next).into_iter().flatten() {
            if m == to {
                return true;
            }
            if seen.insert(m.clone()) {
                queue.push(m.clone());
            }
        }
    }
    false
}

#[test]
fn no_import_cycle_spans_more_than_one_module_of_the_application() {
    for name in ["writ", "writ-server", "writ-api", "writ-bench"] {
        let graph = module_graph(&workspace().join("crates").join(name).join("src"));
        assert!(graph.len() > 2, "{name}: no modules found");
        for (module, refers) in &graph {
            for other in refers {
                assert!(
                    !reaches(&graph, other, module),
                    "{name}: {module} refers to {other}, which leads back to {module} (an import cycle)"
                );
            }
        }
    }
}

#[test]
fn a_module_wide_allow_says_why() {
    for (path, text) in sources() {
        if p_is_test(&path) {
            continue;
        }
        let lines: Vec<&str> = text.lines().collect();
        for (n, line) in lines.iter().enumerate() {
            if line.trim_start().starts_with("#![allow(") {
                let previous = n.checked_sub(1).and_then(|p| lines.get(p)).copied().unwrap_or("");
                assert!(
                    previous.trim_start().starts_with("//") && !previous.trim_start().starts_with("//!"),
                    "{}:{} a module-wide allow without a comment saying why",
                    path.display(),
                    n + 1
                );
            }
        }
    }
}
