//! Policy as code through the binary: the default pack's own tests, an operator's policy
//! directory loaded, refused when invalid (file, line, reason; the policy in force stays), its
//! decisions recorded with the policy hash and explained, and execution stopped when a
//! tightened policy no longer allows what was approved.

use std::path::{Path, PathBuf};

use crate::harness::World;

const CEDAR: &str = include_str!("../../../writ-policy/pack/access.cedar");

const RULES: &str = r#"
[[tier]]
name = "low"
approvals = 1
approval_validity = "24h"

[[tier]]
name = "high"
approvals = 2
approval_validity = "8h"
review = true

[groups]
security = ["carol"]

[[rule]]
id = "prod.security-approves"
description = "Production deploy rights need a member of security."
controls = ["NIST-CSF:PR.AA-05"]
when = { entitlement = ["access:deploy-prod"] }
tier = "high"
approvers = ["group:security"]
"#;

const TESTS: &str = r#"
[[case]]
name = "prod needs security"
action = "validate"
expect = "allow"
tier = "high"
slots = ["group:security", "any"]
change = { requester = "alice", ops = [{ action = "grant", identity = "dave", entitlement = "access:deploy-prod" }] }
"#;

fn policy_dir(w: &World, name: &str, rules: &str, tests: Option<&str>) -> PathBuf {
    let dir = w.dir.path().join(name);
    std::fs::create_dir_all(dir.join("tests")).unwrap();
    std::fs::write(dir.join("access.cedar"), CEDAR).unwrap();
    std::fs::write(dir.join("rules.toml"), rules).unwrap();
    std::fs::write(dir.join("README.md"), "not part of the policy").unwrap();
    if let Some(tests) = tests {
        std::fs::write(dir.join("tests/cases.toml"), tests).unwrap();
    }
    dir
}

fn arg(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn the_default_pack_passes_its_own_tests_and_an_operators_failing_case_fails_the_run() {
    let w = World::new();
    let run = w.writ(&["policy", "test", "--json"]).json();
    assert_eq!(run["failed"], 0, "{run}");
    assert!(run["passed"].as_u64().unwrap() >= 30, "{run}");

    let dir = policy_dir(&w, "ops-policy", RULES, Some(TESTS));
    let run = w.writ(&["policy", "test", "--dir", arg(&dir)]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("1 passed, 0 failed"), "{}", run.stdout);

    std::fs::write(dir.join("tests/cases.toml"), TESTS.replace("tier = \"high\"", "tier = \"low\"")).unwrap();
    let run = w.writ(&["policy", "test", "--dir", arg(&dir)]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("FAIL tests/cases.toml:2 prod needs security"), "{}", run.stdout);
    assert!(run.stderr.starts_with("error[policy.tests_failed]"), "{}", run.stderr);
}

#[test]
fn an_invalid_policy_is_refused_with_file_line_and_reason_and_the_policy_in_force_stays() {
    let w = World::new();
    let good = policy_dir(&w, "good", RULES, None);
    let loaded = w.writ(&["policy", "reload", "--dir", arg(&good), "--json"]).json();
    assert_eq!(loaded["changed"], true);
    let hash = loaded["hash"].as_str().unwrap().to_owned();
    let before = w.fingerprint();

    let bad_rules = policy_dir(
        &w,
        "bad-rules",
        &RULES.replace("tier = \"high\"\napprovers", "tier = \"urgent\"\napprovers"),
        None,
    );
    let bad_cedar = policy_dir(&w, "bad-cedar", RULES, None);
    std::fs::write(
        bad_cedar.join("extra.cedar"),
        "// added by a careless commit\n@id(\"typo\")\npermit (principal, action, resource)\nwhen { principal.knd == \"human\" };\n",
    )
    .unwrap();
    let cases = [
        (&bad_rules, "rules.toml:", "tier \"urgent\" is not defined (tiers: low, high)"),
        (&bad_cedar, "extra.cedar:4:", "knd"),
    ];
    for (dir, location, reason) in cases {
        for command in ["check", "reload"] {
            let run = w.writ(&["policy", command, "--dir", arg(dir)]);
            assert_eq!(run.code, 2, "{command}: {}", run.stderr);
            assert!(run.stderr.starts_with("error[policy.invalid]: invalid policy: "), "{}", run.stderr);
            assert!(run.stderr.contains(location) && run.stderr.contains(reason), "{}", run.stderr);
        }
    }
    assert_eq!(w.fingerprint(), before, "a refused policy changes nothing");
    let shown = w.writ(&["policy", "show", "--json"]).json();
    assert_eq!(shown["hash"], hash.as_str());
    // The same files again: nothing recorded.
    let again = w.writ(&["policy", "reload", "--dir", arg(&good), "--json"]).json();
    assert_eq!(again["changed"], false);
    assert_eq!(w.fingerprint(), before);
}

#[test]
fn decisions_carry_the_policy_hash_and_a_tightened_policy_stops_execution() {
    let w = World::new();
    let dir = policy_dir(&w, "ops-policy", RULES, None);
    let hash = w.writ(&["policy", "reload", "--dir", arg(&dir), "--json"]).json()["hash"]
        .as_str()
        .unwrap()
        .to_owned();
    let id = w.request("dave", "access:deploy-prod");
    w.writ(&["change", "approve", &id, "--as", "bob"]).ok();
    // bob filled "any"; only a member of security can give the second approval.
    let before = w.fingerprint();
    let refused = w.writ(&["change", "approve", &id, "--as", "svc-ci"]);
    assert_eq!(refused.code, 3, "{}", refused.stderr);
    w.writ(&["identity", "add", "erin", "--kind", "human"]).ok();
    let before_erin = w.fingerprint();
    let refused = w.writ(&["change", "approve", &id, "--as", "erin"]);
    assert_eq!(refused.code, 3, "{}", refused.stderr);
    assert!(refused.stderr.starts_with("error[approval.not_eligible]"), "{}", refused.stderr);
    assert!(refused.stderr.contains("group:security"), "{}", refused.stderr);
    assert_eq!(w.fingerprint(), before_erin);
    assert_ne!(before, before_erin);
    w.writ(&["change", "approve", &id, "--as", "carol"]).ok();

    let explained = w.writ(&["policy", "explain", &id, "--json"]).json();
    let steps = explained["steps"].as_array().unwrap();
    let types: Vec<&str> = steps.iter().map(|s| s["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["change.validated", "change.approved", "change.approved"]);
    assert!(steps.iter().all(|s| s["policy"] == hash.as_str()), "{explained}");
    let validated: Vec<&str> =
        steps[0]["rules"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert!(validated.contains(&"prod.security-approves"), "{validated:?}");
    assert_eq!(
        steps[0]["rules"].as_array().unwrap().iter().find(|r| r["id"] == "prod.security-approves").unwrap()["controls"]
            [0],
        "NIST-CSF:PR.AA-05"
    );
    assert_eq!(steps[2]["slot"], "group:security");
    assert_eq!(explained["replay_recorded_policy"]["decision"]["matches_record"], true, "{explained}");
    let text = w.writ(&["policy", "explain", &id]).ok();
    assert!(text.contains("as group:security"), "{text}");
    let trail = w.writ(&["change", "show", &id]).ok();
    assert!(
        trail.contains("policy     tier high: approvals [group:security, any]; review required"),
        "{trail}"
    );

    // Security is now erin alone: carol's approval no longer fills the group slot.
    let tightened =
        policy_dir(&w, "tightened", &RULES.replace("security = [\"carol\"]", "security = [\"erin\"]"), None);
    w.writ(&["policy", "reload", "--dir", arg(&tightened)]).ok();
    let head = super::harness::git(&w.repo, &["rev-parse", "HEAD"]);
    let refused = w.writ(&["change", "execute", &id]);
    assert_eq!(refused.code, 3, "{}", refused.stderr);
    assert!(refused.stderr.starts_with("error[policy.revalidation_required]"), "{}", refused.stderr);
    assert_eq!(super::harness::git(&w.repo, &["rev-parse", "HEAD"]), head, "nothing applied");
    let shown = w.writ(&["change", "show", &id, "--json"]).json();
    assert_eq!(shown["state"], "pending_approval");
    assert_eq!(shown["events"].as_array().unwrap().last().unwrap()["type"], "change.revalidated");
    let explained = w.writ(&["policy", "explain", &id, "--json"]).json();
    assert_eq!(
        explained["replay_policy_in_force"]["decision"]["matches_record"], true,
        "now revalidated: {explained}"
    );
    w.writ(&["change", "approve", &id, "--as", "erin"]).ok();
    w.writ(&["change", "execute", &id]).ok();
    w.writ(&["ledger", "verify"]).ok();
}

#[test]
fn a_server_loads_its_policy_directory_at_start_and_reloads_it_on_request() {
    let w = World::new();
    let dir = policy_dir(&w, "served-policy", RULES, None);
    let http = crate::api::Http::start_with(w, &["--policy-dir", arg(&dir)]);
    let api = &http.api;
    let id = http.request("dave", "deploy-prod");
    let shown = api.get(&format!("/api/v1/changes/{id}"), &http.root).expect(200).clone();
    assert_eq!(shown["policy"]["tier"], "high", "the directory was loaded at start: {shown}");

    // A broken edit: the reload is refused with file and line, and the policy in force stays.
    let good = std::fs::read_to_string(dir.join("rules.toml")).unwrap();
    std::fs::write(dir.join("rules.toml"), good.replace("approvals = 2", "approvals = two")).unwrap();
    let refused = api.post("/api/v1/policy/reload", &http.root, serde_json::json!({}));
    let body = refused.expect(422);
    assert_eq!(body["error"]["code"], "policy.invalid");
    assert!(body["error"]["message"].as_str().unwrap().contains("rules.toml:"), "{body}");
    let denied = api.post("/api/v1/policy/reload", &http.bob, serde_json::json!({}));
    assert_eq!(denied.expect(403)["error"]["code"], "auth.role_required");

    // A valid edit: prod needs no security member any more.
    std::fs::write(dir.join("rules.toml"), good.replace("approvers = [\"group:security\"]\n", "")).unwrap();
    let reloaded = api.post("/api/v1/policy/reload", &http.root, serde_json::json!({})).expect(200).clone();
    assert_eq!(reloaded["changed"], true, "{reloaded}");
    let id = http.request("dave", "eng-read");
    let shown = api.get(&format!("/api/v1/changes/{id}"), &http.root).expect(200).clone();
    assert_eq!(shown["policy"]["tier"], "low");
    let stamp = &shown["events"][1]["policy"];
    assert_eq!(stamp["hash"], reloaded["hash"], "{shown}");
}
