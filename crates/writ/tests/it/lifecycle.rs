//! The whole chain through the command line, and what `change show` answers.

use crate::harness::{World, git};

#[test]
fn the_cli_runs_the_chain_and_show_answers_who_what_and_whether_it_matched() {
    let w = World::new();
    let id = w.request("dave", "access:eng-read");
    assert!(id.starts_with("CHG-"), "{id}");
    assert_eq!(
        w.writ(&["change", "list", "--state", "pending_approval", "--json"]).json()[0]["id"],
        id.as_str()
    );
    w.writ(&["change", "approve", &id, "--as", "bob"]).ok();
    assert_eq!(w.writ(&["change", "execute", &id, "--json"]).json()["state"], "implemented");
    assert_eq!(w.writ(&["change", "verify", &id]).ok(), format!("{id} verified"));
    w.writ(&["change", "review", &id, "--as", "carol", "--notes", "matches JIRA-7"]).ok();

    let show = w.writ(&["change", "show", &id, "--json"]).json();
    assert_eq!(show["state"], "reviewed");
    assert_eq!(show["answers"]["who_asked"], "alice");
    assert_eq!(show["answers"]["who_approved"][0], "bob");
    assert_eq!(show["answers"]["who_executed"][0], "system:writ-engine");
    assert_eq!(show["answers"]["observed_equals_approved"], true);
    assert_eq!(show["answers"]["reviewed_by"], "carol");
    assert_eq!(show["operations"][0]["before"], "absent");
    assert_eq!(show["operations"][0]["after"], "present");
    assert_eq!(show["references"][0]["value"], "JIRA-7");
    let types: Vec<&str> =
        show["events"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        [
            "change.requested",
            "change.validated",
            "change.approved",
            "change.execution_started",
            "change.implemented",
            "change.verified",
            "change.reviewed"
        ]
    );
    let indices: Vec<u64> =
        show["events"].as_array().unwrap().iter().map(|e| e["index"].as_u64().unwrap()).collect();
    assert!(indices.windows(2).all(|w| w[1] == w[0] + 1), "{indices:?}");

    let commit = show["operations"][0]["target_reference"].as_str().unwrap().to_owned();
    let trailer = git(&w.repo, &["log", "-1", "--format=%(trailers:key=Writ-Change,valueonly)", &commit]);
    assert_eq!(trailer, id);
    assert_eq!(git(&w.repo, &["log", "-1", "--format=%an", &commit]), "system:writ-engine");
    assert!(git(&w.repo, &["show", "HEAD:access.toml"]).contains("\"dave\""));

    let text = w.writ(&["change", "show", &id]).ok();
    for needle in [
        "asked      alice",
        "approved   bob",
        "executed   system:writ-engine",
        "absent → present",
        "observed state equals approved state",
        "reviewed   carol",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
    let dave = w.writ(&["identity", "show", "dave", "--json"]).json();
    assert_eq!(dave["grants"][0]["change"], id.as_str());
}

#[test]
fn a_mover_loses_the_old_entitlement_in_the_same_change() {
    let w = World::new();
    let first = w.request("dave", "access:eng-read");
    w.writ(&["change", "approve", &first, "--as", "bob"]).ok();
    w.writ(&["change", "execute", &first]).ok();
    let mover = w.request_with(&[
        "--as",
        "alice",
        "--identity",
        "dave",
        "--revoke",
        "access:eng-read",
        "--grant",
        "access:finance-read",
        "--event",
        "mover",
        "--justification",
        "moved to finance",
    ]);
    w.writ(&["change", "approve", &mover, "--as", "bob"]).ok();
    w.writ(&["change", "execute", &mover]).ok();
    w.writ(&["change", "verify", &mover]).ok();
    let show = w.writ(&["change", "show", &mover, "--json"]).json();
    assert_eq!(show["kind"], "modify");
    assert_eq!(show["event"], "mover");
    let file = git(&w.repo, &["show", "HEAD:access.toml"]);
    let eng = file.split("[entitlements.eng-read]").nth(1).unwrap().split('[').next().unwrap().to_owned();
    assert!(!eng.contains("dave"), "old access kept: {file}");
    let grants = w.writ(&["identity", "show", "dave", "--json"]).json()["grants"].clone();
    assert_eq!(grants.as_array().unwrap().len(), 1);
    assert_eq!(grants[0]["entitlement"], "finance-read");
}

#[test]
fn a_target_that_fails_during_execute_leaves_a_failed_change_that_a_retry_completes() {
    let w = World::new();
    let id = w.request("dave", "access:eng-read");
    w.writ(&["change", "approve", &id, "--as", "bob"]).ok();
    let moved = w.dir.path().join("elsewhere");
    std::fs::rename(&w.repo, &moved).unwrap();
    let failed = w.writ(&["change", "execute", &id]);
    assert_eq!(failed.code, 7, "{}", failed.stderr);
    assert!(failed.stderr.contains("change.failed"), "{}", failed.stderr);
    assert_eq!(w.writ(&["change", "show", &id, "--json"]).json()["state"], "failed");
    std::fs::rename(&moved, &w.repo).unwrap();
    assert_eq!(w.writ(&["change", "execute", &id]).ok(), format!("{id} implemented"));
    let show = w.writ(&["change", "show", &id, "--json"]).json();
    assert_eq!(show["executions"].as_array().unwrap().len(), 2);
    assert_eq!(w.writ(&["change", "verify", &id]).ok(), format!("{id} verified"));
}

#[test]
fn drift_on_the_target_makes_verification_fail() {
    let w = World::new();
    let id = w.request("dave", "access:eng-read");
    w.writ(&["change", "approve", &id, "--as", "bob"]).ok();
    w.writ(&["change", "execute", &id]).ok();
    // Someone edits the access file by hand after the change was applied.
    git(&w.repo, &["reset", "-q", "--hard", "HEAD~1"]);
    let run = w.writ(&["change", "verify", &id]);
    assert_eq!(run.code, 7, "{}", run.stderr);
    assert!(run.stderr.contains("change.verification_failed"), "{}", run.stderr);
    let show = w.writ(&["change", "show", &id, "--json"]).json();
    assert_eq!(show["answers"]["observed_equals_approved"], false);
    assert_eq!(show["operations"][0]["observed"], "absent");
}
