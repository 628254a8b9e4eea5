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
