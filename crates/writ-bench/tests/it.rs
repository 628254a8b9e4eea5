//! Integration tests of `writ-bench`: the demo, run as the README runs it.

// Tests may unwrap and index: a panic is a test failure with a clear location.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::path::Path;
use std::process::Command;

/// The `writ` binary, built beside `writ-bench` by `cargo test --workspace`.
fn writ() -> std::path::PathBuf {
    let writ = Path::new(env!("CARGO_BIN_EXE_writ-bench")).with_file_name("writ");
    assert!(
        writ.is_file(),
        "no writ binary at {}: build the workspace (cargo build -p writ)",
        writ.display()
    );
    writ
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git").arg("-C").arg(dir).args(args).output().unwrap();
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[test]
fn the_demo_runs_on_a_fresh_directory_and_tells_the_whole_story() {
    let dir = tempfile::tempdir().unwrap();
    let keep = dir.path().join("demo");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_writ-bench"))
        .args(["demo", "--keep", keep.to_str().unwrap()])
        .env_remove("WRIT_DB")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    for needle in [
        "1. Joiner",
        "2. Mover",
        "refused   [sod.self_approval]",
        "refused   [sod.executor_not_independent]",
        "4. Leaver",
        "dave now holds 0 grant(s)",
        "5. Reconciliation",
        "access.unapproved            dave access:deploy-prod",
        "is resolved: the fix is verified on the repository",
    ] {
        assert!(stdout.contains(needle), "missing {needle:?}");
    }
    // Four stories and the fix of what reconciliation found.
    assert_eq!(stdout.matches("state reviewed").count(), 5, "{stdout}");
    let log = git(&keep.join("access-repo"), &["log", "--format=%(trailers:key=Writ-Change,valueonly)"]);
    let ids: Vec<&str> = log.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(ids.len(), 5, "every applied commit carries its change id: {log}");
    let listed = std::process::Command::new(writ())
        .args(["--db", keep.join("writ.db").to_str().unwrap(), "change", "list", "--json"])
        .output()
        .unwrap();
    let changes: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    for id in ids {
        assert!(changes.as_array().unwrap().iter().any(|c| c["id"] == id), "{id} not in the database");
    }
}
