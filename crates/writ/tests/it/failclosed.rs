//! Fail closed: when the ledger cannot be written, the transition does not happen, the target is
//! not touched, and the command says why. The database is made unwritable mid-run, between two
//! commands, by the file system (immutable flag) and by a full disk (file-size limit).

use std::process::Command;

use crate::harness::{Run, World};

/// Runs writ with writes beyond 1 KiB refused by the kernel (as on a full disk). SIGXFSZ is
/// ignored so the write fails with EFBIG instead of killing the process.
fn writ_on_full_disk(w: &World, args: &[&str]) -> Run {
    let mut command =
        vec![env!("CARGO_BIN_EXE_writ").to_owned(), "--db".into(), w.db.to_str().unwrap().to_owned()];
    command.extend(args.iter().map(|a| (*a).to_owned()));
    let quoted: Vec<String> = command.iter().map(|a| format!("'{a}'")).collect();
    let output = Command::new("bash")
        .args(["-c", &format!("trap '' XFSZ; ulimit -f 1; exec {}", quoted.join(" "))])
        .output()
        .unwrap();
    Run::from_output(output)
}

fn chattr(flag: &str, path: &std::path::Path) {
    let status = Command::new("chattr").arg(flag).arg(path).status().expect("chattr is part of e2fsprogs");
    assert!(status.success(), "chattr {flag} failed: the test directory's file system must support it");
}

#[test]
fn an_immutable_database_refuses_the_transition_and_leaves_the_target_alone() {
    let w = World::new();
    let id = w.request("dave", "access:eng-read");
    w.writ(&["change", "approve", &id, "--as", "bob"]).ok();
    let before = w.fingerprint();
    chattr("+i", &w.db);
    let run = w.writ(&["change", "execute", &id]);
    chattr("-i", &w.db);
    assert_eq!(run.code, 5, "{}", run.stderr);
    assert!(run.stderr.starts_with("error[store.unavailable]"), "{}", run.stderr);
    assert!(run.stderr.contains("readonly"), "{}", run.stderr);
    assert_eq!(w.fingerprint(), before, "nothing recorded and the repository untouched");
    assert_eq!(w.writ(&["change", "execute", &id]).ok(), format!("{id} implemented"));
}

#[test]
fn a_full_disk_refuses_the_transition_and_leaves_the_target_alone() {
    let w = World::new();
    let id = w.request("dave", "access:eng-read");
    w.writ(&["change", "approve", &id, "--as", "bob"]).ok();
    let before = w.fingerprint();
    let run = writ_on_full_disk(&w, &["change", "execute", &id]);
    assert_eq!(run.code, 5, "stdout {}\nstderr {}", run.stdout, run.stderr);
    assert!(run.stderr.starts_with("error[store.unavailable]"), "{}", run.stderr);
    assert_eq!(w.fingerprint(), before, "nothing recorded and the repository untouched");
    let approve_more = writ_on_full_disk(&w, &["identity", "add", "erin", "--kind", "human"]);
    assert_eq!(approve_more.code, 5, "{}", approve_more.stderr);
    assert_eq!(w.fingerprint(), before);
    assert_eq!(w.writ(&["change", "execute", &id]).ok(), format!("{id} implemented"));
}
