//! Bad input and forbidden actions: a clear error, the right exit code, and nothing changed in
//! the database or the repository.

use crate::harness::World;

/// Runs `args`, expects failure with `code` and `exit`, and checks nothing changed.
fn refused(w: &World, args: &[&str], code: &str, exit: i32) {
    let before = w.fingerprint();
    let run = w.writ(args);
    assert_eq!(run.code, exit, "{args:?}\nstdout: {}\nstderr: {}", run.stdout, run.stderr);
    assert!(run.stderr.starts_with(&format!("error[{code}]: ")), "{args:?}: {}", run.stderr);
    assert!(run.stdout.is_empty(), "{args:?} printed {}", run.stdout);
    assert_eq!(w.fingerprint(), before, "{args:?} changed the database or repository");
}

#[test]
fn separation_of_duties_violations_change_nothing() {
    let w = World::new();
    let id = w.request("dave", "access:eng-read");
    refused(&w, &["change", "approve", &id, "--as", "alice"], "sod.self_approval", 3);
    refused(&w, &["change", "approve", &id, "--as", "dave"], "sod.self_approval", 3);
    refused(
        &w,
        &["change", "approve", &id, "--as", "bob", "--on-behalf-of", "alice"],
        "sod.self_approval",
        3,
    );
    refused(&w, &["change", "approve", &id, "--as", "svc-ci"], "identity.not_human", 3);
    refused(&w, &["change", "execute", &id], "state.invalid_transition", 3);
    w.writ(&["change", "approve", &id, "--as", "bob"]).ok();
    refused(&w, &["change", "approve", &id, "--as", "carol"], "state.invalid_transition", 3);
    refused(&w, &["change", "execute", &id, "--as", "bob"], "sod.executor_not_independent", 3);
    refused(&w, &["change", "execute", &id, "--as", "alice"], "sod.executor_not_independent", 3);
    refused(&w, &["change", "review", &id, "--as", "carol"], "state.invalid_transition", 3);
    w.writ(&["change", "execute", &id, "--as", "carol"]).ok();
    w.writ(&["change", "verify", &id]).ok();
    for who in ["alice", "bob", "carol", "dave"] {
        refused(&w, &["change", "review", &id, "--as", who], "sod.reviewer_not_independent", 3);
    }
}

#[test]
fn a_vendor_cannot_approve_for_its_own_organisation() {
    let w = World::new();
    w.writ(&["identity", "add", "acme-jo", "--kind", "human", "--vendor", "acme"]).ok();
    w.writ(&["identity", "add", "acme-li", "--kind", "human", "--vendor", "acme"]).ok();
    let id = w.request_with(&[
        "--as",
        "acme-jo",
        "--identity",
        "acme-jo",
        "--grant",
        "access:eng-read",
        "--event",
        "vendor",
        "--justification",
        "support case",
    ]);
    refused(&w, &["change", "approve", &id, "--as", "acme-li"], "sod.vendor_self_approval", 3);
}

#[test]
fn expired_and_rejected_approvals_cannot_be_executed() {
    let w = World::new();
    let id = w.request("dave", "access:eng-read");
    w.writ(&["change", "approve", &id, "--as", "bob", "--valid-for", "1s"]).ok();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    refused(&w, &["change", "execute", &id], "approval.expired", 3);
    assert_eq!(w.writ(&["run-due", "--json"]).json()["expired"][0], id.as_str());
    refused(&w, &["change", "execute", &id], "state.invalid_transition", 3);

    let rejected = w.request("dave", "access:deploy-prod");
    refused(
        &w,
        &["change", "reject", &rejected, "--as", "alice", "--reason", "mine"],
        "sod.self_rejection",
        3,
    );
    refused(&w, &["change", "reject", &rejected, "--as", "bob", "--reason", " "], "input.invalid_text", 2);
    w.writ(&["change", "reject", &rejected, "--as", "bob", "--reason", "not needed"]).ok();
    refused(&w, &["change", "execute", &rejected], "state.invalid_transition", 3);
    refused(&w, &["change", "approve", &rejected, "--as", "carol"], "state.invalid_transition", 3);
    assert!(!std::fs::read_to_string(w.repo.join("access.toml")).unwrap().contains("dave"));
}

#[test]
fn unknown_names_and_malformed_input_change_nothing() {
    let w = World::new();
    let request = |extra: &[&str]| -> Vec<String> {
        let mut args: Vec<String> = ["change", "request", "--as", "alice", "--justification", "because"]
            .iter()
            .map(ToString::to_string)
            .collect();
        args.extend(extra.iter().map(ToString::to_string));
        args
    };
    let cases: Vec<(Vec<String>, &str, i32)> = vec![
        (request(&["--identity", "nobody", "--grant", "access:eng-read"]), "not_found", 4),
        (request(&["--identity", "dave", "--grant", "nowhere:eng-read"]), "not_found", 4),
        (request(&["--identity", "dave", "--grant", "access:root"]), "target.unknown_entitlement", 4),
        (request(&["--identity", "dave", "--grant", "access"]), "input.invalid_name", 2),
        (
            request(&["--identity", "dave", "--grant", "access:eng-read", "--for", "8x"]),
            "input.invalid_duration",
            2,
        ),
        (
            request(&["--identity", "dave", "--grant", "access:eng-read", "--for", "0h"]),
            "input.invalid_duration",
            2,
        ),
        (
            request(&["--identity", "dave", "--revoke", "access:eng-read", "--for", "1h"]),
            "input.duration_on_revoke",
            2,
        ),
        (request(&["--identity", "dave"]), "input.no_operations", 2),
        (
            request(&["--identity", "dave", "--grant", "access:eng-read", "--event", "party"]),
            "input.invalid_value",
            2,
        ),
        (
            request(&["--identity", "dave", "--grant", "access:eng-read", "--grant", "access:eng-read"]),
            "input.duplicate_operation",
            2,
        ),
        (
            request(&["--identity", "dave", "--grant", "access:eng-read", "--on-behalf-of", "alice"]),
            "input.on_behalf_of_self",
            2,
        ),
        (
            request(&["--identity", "dave", "--grant", "access:eng-read", "--ticket", ""]),
            "input.invalid_value",
            2,
        ),
        (
            vec![
                "change",
                "request",
                "--as",
                "mallory",
                "--identity",
                "dave",
                "--grant",
                "access:eng-read",
                "--justification",
                "x",
            ]
            .into_iter()
            .map(String::from)
            .collect(),
            "not_found",
            4,
        ),
        (
            vec![
                "change",
                "request",
                "--as",
                "alice",
                "--identity",
                "dave",
                "--grant",
                "access:eng-read",
                "--justification",
                "   ",
            ]
            .into_iter()
            .map(String::from)
            .collect(),
            "input.empty_justification",
            2,
        ),
    ];
    for (args, code, exit) in &cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        refused(&w, &args, code, *exit);
    }
    refused(&w, &["change", "approve", "CHG-123", "--as", "bob"], "input.invalid_value", 2);
    refused(&w, &["change", "show", "CHG-01M83SGPQACCJKTYMJ51ZX94Q4"], "not_found", 4);
    refused(&w, &["identity", "add", "svc-x", "--kind", "workload"], "identity.owner_required", 3);
    refused(
        &w,
        &["identity", "add", "svc-x", "--kind", "workload", "--owner", "svc-ci"],
        "identity.owner_not_human",
        3,
    );
    refused(&w, &["identity", "add", "eve", "--kind", "robot"], "input.invalid_value", 2);
    refused(&w, &["identity", "add", "alice", "--kind", "human"], "store.conflict", 5);
    refused(&w, &["identity", "add", "bad name", "--kind", "human"], "input.invalid_name", 2);
    refused(&w, &["change", "list", "--state", "done"], "input.invalid_value", 2);
    refused(&w, &["init"], "input.database_exists", 2);
    let not_a_repo = w.dir.path().to_str().unwrap().to_owned();
    refused(
        &w,
        &["target", "add", "other", "--connector", "git", "--repo", &not_a_repo],
        "target.invalid",
        6,
    );
}

#[test]
fn without_a_database_commands_say_how_to_get_one() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_writ"))
        .args(["identity", "list"])
        .env_remove("WRIT_DB")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--db FILE or set WRIT_DB"));
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("none.db");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_writ"))
        .args(["--db", missing.to_str().unwrap(), "--json", "change", "list"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(5));
    let error: serde_json::Value = serde_json::from_slice(&output.stderr).unwrap();
    assert_eq!(error["error"]["code"], "store.unavailable");
    assert!(error["error"]["message"].as_str().unwrap().contains("writ init"));
    assert!(!missing.exists(), "a read command must not create a database");
}

#[test]
fn a_name_that_only_looks_different_is_refused() {
    let w = World::new();
    // bob exists; these are bob spelt differently.
    for name in ["Bob", "BOB", "bob.", "bob-", "bob_", "bOb..", "Bob-_."] {
        refused(&w, &["identity", "add", name, "--kind", "human"], "identity.lookalike", 3);
    }
    // Different names, even close ones, register.
    for name in ["bob2", "b.ob", "bobby", "bob@vendor"] {
        w.writ(&["identity", "add", name, "--kind", "human"]).ok();
    }
    // And the look-alike of a new name is refused in turn.
    refused(&w, &["identity", "add", "Bob2", "--kind", "human"], "identity.lookalike", 3);
}

#[test]
fn a_uri_longer_than_the_server_accepts_gets_414_with_an_error_body() {
    let w = World::new();
    let app = writ_server::testkit::spawn_app(&w.db, writ_server::ServeOptions::default()).unwrap();
    let api = crate::server::Api::new(&app.base);
    let long = "a".repeat(writ_server::MAX_URI_BYTES);
    let reply = api.send("GET", &format!("/api/v1/changes?x={long}"), None, &[], None);
    assert_eq!((reply.status, reply.code()), (414, "request.uri_too_long"), "{}", reply.text);
    let scim = api.send("GET", &format!("/scim/v2/Users?x={long}"), None, &[], None);
    assert_eq!(scim.status, 414);
    assert_eq!(scim.headers["content-type"], "application/scim+json");
    assert_eq!(scim.body["status"], "414", "{}", scim.text);
    // Just under the limit is served as usual (here: refused for want of a token).
    let under = "a".repeat(writ_server::MAX_URI_BYTES - 40);
    let reply = api.send("GET", &format!("/api/v1/changes?x={under}"), None, &[], None);
    assert_eq!(reply.status, 401, "{}", reply.text);
}
