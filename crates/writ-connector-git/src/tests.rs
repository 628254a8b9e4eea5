//! The git connector against real repositories made with the git binary.

use std::path::Path;
use std::process::Command;

use writ_connector::{ApplyContext, Connector, ConnectorError, TargetOp};
use writ_core::change::{ChangeId, OpAction};
use writ_core::name::{EntitlementName, IdentityName};
use writ_core::time::Timestamp;

use crate::GitConnector;

const ACCESS: &str = r#"# owned by platform
[entitlements.deploy-prod]
description = "Deploy to production"
members = ["alice"]
owner = "platform"

[entitlements.read-logs]
members = []
"#;

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git").arg("-C").arg(dir).args(args).output().unwrap();
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn repo(bare: bool) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    git(&work, &["init", "-q", "-b", "main"]);
    std::fs::write(work.join("access.toml"), ACCESS).unwrap();
    git(&work, &["add", "access.toml"]);
    git(
        &work,
        &["-c", "user.name=Setup", "-c", "user.email=setup@example.invalid", "commit", "-q", "-m", "initial"],
    );
    if !bare {
        return (dir, work);
    }
    let bare_path = dir.path().join("access.git");
    git(dir.path(), &["clone", "-q", "--bare", work.to_str().unwrap(), bare_path.to_str().unwrap()]);
    (dir, bare_path)
}

fn context(summary: &str) -> ApplyContext {
    ApplyContext {
        change: ChangeId::generate(Timestamp::from_millis(1_800_000_000_000), 9),
        summary: summary.into(),
        requester: "alice".into(),
        approvers: vec!["bob".into()],
        executor: "system:writ-engine".into(),
        at: Timestamp::from_millis(1_800_000_000_000),
    }
}

fn op(action: OpAction, entitlement: &str, member: &str) -> TargetOp {
    TargetOp {
        action,
        entitlement: EntitlementName::parse(entitlement).unwrap(),
        member: IdentityName::parse(member).unwrap(),
        ttl: None,
    }
}

#[test]
fn apply_commits_with_trailers_and_observe_reads_head() {
    for bare in [true, false] {
        let (_dir, path) = repo(bare);
        let connector = GitConnector::open("access", &path, None, None).unwrap();
        let grant = [op(OpAction::Grant, "read-logs", "dave")];
        let plan = connector.plan(&grant).unwrap();
        assert!(plan[0].will_change && !plan[0].present_now);
        let report = connector.apply(&context("grant read-logs to dave"), &grant).unwrap();
        let commit = report.reference.clone().unwrap();
        assert!(!report.applied[0].before && report.applied[0].after);
        let message = git(&path, &["log", "-1", "--format=%an%n%B", &commit]);
        assert!(message.starts_with("system:writ-engine\ngrant read-logs to dave"), "{message}");
        assert!(message.contains("Writ-Change: CHG-"), "{message}");
        assert!(message.contains("Writ-Approved-By: bob"), "{message}");
        let trailer = git(&path, &["log", "-1", "--format=%(trailers:key=Writ-Change,valueonly)"]);
        assert_eq!(trailer.trim(), context("").change.as_str());
        let observed = connector.observe(&[EntitlementName::parse("read-logs").unwrap()]).unwrap();
        assert!(
            observed.is_member(
                &EntitlementName::parse("read-logs").unwrap(),
                &IdentityName::parse("dave").unwrap()
            )
        );
        assert_eq!(observed.reference.as_deref(), Some(commit.as_str()));
        let file = git(&path, &["show", "HEAD:access.toml"]);
        assert!(file.contains("owner = \"platform\""), "unknown keys are kept: {file}");
        if !bare {
            assert_eq!(git(&path, &["status", "--porcelain"]), "", "working tree follows the branch");
            assert!(std::fs::read_to_string(path.join("access.toml")).unwrap().contains("dave"));
        }
    }
}

#[test]
fn apply_is_idempotent_and_a_retry_commits_nothing() {
    let (_dir, path) = repo(true);
    let connector = GitConnector::open("access", &path, None, None).unwrap();
    let ops = [op(OpAction::Grant, "read-logs", "dave"), op(OpAction::Revoke, "deploy-prod", "alice")];
    connector.apply(&context("first"), &ops).unwrap();
    let head = git(&path, &["rev-parse", "HEAD"]);
    let again = connector.apply(&context("retry"), &ops).unwrap();
    assert_eq!(again.reference, None);
    assert!(again.applied.iter().all(|a| a.before == a.after));
    assert_eq!(git(&path, &["rev-parse", "HEAD"]), head);
}

#[test]
fn unknown_entitlements_are_refused_and_nothing_is_written() {
    let (_dir, path) = repo(true);
    let connector = GitConnector::open("access", &path, None, None).unwrap();
    let head = git(&path, &["rev-parse", "HEAD"]);
    let ops = [op(OpAction::Grant, "read-logs", "dave"), op(OpAction::Grant, "root", "dave")];
    assert!(matches!(connector.plan(&ops), Err(ConnectorError::UnknownEntitlement { .. })));
    assert!(matches!(connector.apply(&context("x"), &ops), Err(ConnectorError::UnknownEntitlement { .. })));
    assert_eq!(git(&path, &["rev-parse", "HEAD"]), head);
}

#[test]
fn open_refuses_what_is_not_an_access_repository() {
    let dir = tempfile::tempdir().unwrap();
    let error = GitConnector::open("access", dir.path(), None, None).err().unwrap();
    assert!(error.to_string().contains("not a git repository"), "{error}");
    git(dir.path(), &["init", "-q", "-b", "main"]);
    // A repository without the branch's commit, a branch that does not exist or an access file
    // that is not there is how the target is configured (refused as invalid), not an outage.
    let empty = GitConnector::open("access", dir.path(), None, None).err().unwrap();
    assert!(matches!(empty, ConnectorError::Invalid { .. }), "{empty}");
    let (_d, path) = repo(true);
    assert!(GitConnector::open("access", &path, None, Some("../x")).is_err());
    let branch = GitConnector::open("access", &path, Some("nope"), None).err().unwrap();
    assert!(
        matches!(branch, ConnectorError::Invalid { .. }) && branch.to_string().contains("no branch"),
        "{branch}"
    );
    let file = GitConnector::open("access", &path, None, Some("other.toml")).err().unwrap();
    assert!(
        matches!(file, ConnectorError::Invalid { .. }) && file.to_string().contains("no other.toml"),
        "{file}"
    );
}

/// Sets a file's modification time `seconds` into the past (as a lock a killed process left).
fn age(path: &Path, seconds: u64) {
    let file = std::fs::File::options().write(true).open(path).unwrap();
    file.set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(seconds)).unwrap();
}

fn human_commit(path: &Path, message: &str) {
    git(
        path,
        &["-c", "user.name=Human", "-c", "user.email=human@example.invalid", "commit", "-q", "-am", message],
    );
}

#[test]
fn a_stat_dirty_checkout_follows_the_write_and_a_human_commit_keeps_it() {
    let (_dir, path) = repo(false);
    let connector = GitConnector::open("access", &path, None, None).unwrap();
    // Times change, content does not: the index entry is stale, the file is not modified.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let content = std::fs::read(path.join("access.toml")).unwrap();
    std::fs::write(path.join("access.toml"), content).unwrap();
    connector
        .apply(&context("grant read-logs to dave"), &[op(OpAction::Grant, "read-logs", "dave")])
        .unwrap();
    assert_eq!(git(&path, &["status", "--porcelain"]), "", "index and working tree follow the branch");
    assert!(std::fs::read_to_string(path.join("access.toml")).unwrap().contains("dave"));
    // The next human commit does not revert the grant.
    std::fs::write(path.join("README"), "notes").unwrap();
    git(&path, &["add", "README"]);
    human_commit(&path, "notes");
    assert!(git(&path, &["show", "HEAD:access.toml"]).contains("dave"));
}

#[test]
fn local_modifications_of_the_access_file_are_refused_before_anything_is_written() {
    for staged in [false, true] {
        let (_dir, path) = repo(false);
        let connector = GitConnector::open("access", &path, None, None).unwrap();
        let head = git(&path, &["rev-parse", "HEAD"]);
        let edited = std::fs::read_to_string(path.join("access.toml")).unwrap().replace("alice", "mallory");
        std::fs::write(path.join("access.toml"), &edited).unwrap();
        if staged {
            git(&path, &["add", "access.toml"]);
        }
        let status = git(&path, &["status", "--porcelain"]);
        let refused =
            connector.apply(&context("grant"), &[op(OpAction::Grant, "read-logs", "dave")]).unwrap_err();
        assert!(matches!(refused, ConnectorError::Conflict { .. }), "{refused}");
        assert!(refused.to_string().contains("local modifications"), "{refused}");
        assert_eq!(git(&path, &["rev-parse", "HEAD"]), head, "nothing written");
        assert_eq!(git(&path, &["status", "--porcelain"]), status, "the person's edit is left as it was");
        assert_eq!(std::fs::read_to_string(path.join("access.toml")).unwrap(), edited);
    }
}

#[test]
fn stale_locks_are_removed_and_live_ones_waited_for() {
    for bare in [false, true] {
        let (_dir, path) = repo(bare);
        let git_dir = std::path::PathBuf::from(git(&path, &["rev-parse", "--absolute-git-dir"]).trim());
        let connector = GitConnector::open("access", &path, None, None).unwrap();
        // Left by killed processes: old, open nowhere.
        for lock in ["index.lock", "HEAD.lock", "refs/heads/main.lock"] {
            std::fs::write(git_dir.join(lock), "").unwrap();
            age(&git_dir.join(lock), 60);
        }
        let report = connector
            .apply(&context("grant read-logs to dave"), &[op(OpAction::Grant, "read-logs", "dave")])
            .unwrap();
        assert_eq!(git(&path, &["rev-parse", "HEAD"]).trim(), report.reference.unwrap());
        if !bare {
            assert_eq!(git(&path, &["status", "--porcelain"]), "", "index and working tree follow");
        }
        for lock in ["index.lock", "HEAD.lock", "refs/heads/main.lock", "writ-apply.lock"] {
            assert!(!git_dir.join(lock).exists(), "{lock} is gone");
        }
    }
    // A lock a running process holds open is never removed: the apply waits, then refuses.
    let (_dir, path) = repo(false);
    let git_dir = std::path::PathBuf::from(git(&path, &["rev-parse", "--absolute-git-dir"]).trim());
    let connector = GitConnector::open("access", &path, None, None).unwrap();
    let lock = git_dir.join("index.lock");
    let held = std::fs::File::create(&lock).unwrap();
    age(&lock, 60);
    let head = git(&path, &["rev-parse", "HEAD"]);
    let started = std::time::Instant::now();
    let refused =
        connector.apply(&context("grant"), &[op(OpAction::Grant, "read-logs", "dave")]).unwrap_err();
    assert!(started.elapsed() <= crate::APPLY_DEADLINE + std::time::Duration::from_secs(2));
    assert!(matches!(refused, ConnectorError::Unavailable { .. }), "{refused}");
    assert!(refused.to_string().contains("held open by a running process"), "{refused}");
    assert!(lock.exists(), "a live lock stays");
    assert_eq!(git(&path, &["rev-parse", "HEAD"]), head, "nothing written");
    drop(held);
}

#[test]
fn concurrent_applies_on_one_repository_all_land() {
    let (_dir, path) = repo(false);
    let members: Vec<String> = (0..12).map(|i| format!("user{i}")).collect();
    std::thread::scope(|scope| {
        for member in &members {
            let path = path.clone();
            scope.spawn(move || {
                let connector = GitConnector::open("access", &path, None, None).unwrap();
                connector.apply(&context("grant"), &[op(OpAction::Grant, "read-logs", member)]).unwrap();
            });
        }
    });
    let file = git(&path, &["show", "HEAD:access.toml"]);
    for member in &members {
        assert!(file.contains(member.as_str()), "{member} in {file}");
    }
    assert_eq!(git(&path, &["status", "--porcelain"]), "");
}

#[test]
fn the_write_of_a_change_is_found_by_its_stamp() {
    let (_dir, path) = repo(true);
    let connector = GitConnector::open("access", &path, None, None).unwrap();
    let ops = [op(OpAction::Grant, "read-logs", "dave")];
    let change = context("").change;
    assert_eq!(connector.stamped(&change, &ops).unwrap(), None);
    let report = connector.apply(&context("grant read-logs to dave"), &ops).unwrap();
    assert_eq!(connector.stamped(&change, &ops).unwrap(), report.reference);
    // Another change's commit is not this one's, even when its ID starts the same.
    let other = ChangeId::generate(Timestamp::from_millis(1_800_000_000_000), 10);
    assert_eq!(connector.stamped(&other, &ops).unwrap(), None);
}
