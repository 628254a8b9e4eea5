//! Break-glass through the binary on a real git target: who may break glass, the emergency
//! grant applied at once and marked everywhere, the trail emergency → post-hoc approval →
//! review, and a missed post-hoc approval deadline ending in a finding and an alert.

use crate::harness::{World, git};

const CEDAR: &str = include_str!("../../../writ-policy/pack/access.cedar");
const RULES: &str = include_str!("../../../writ-policy/pack/rules.toml");

/// The default pack with alice as incident responder and `deadline` for post-hoc approval, in
/// a directory.
pub fn policy_dir(w: &World, name: &str, deadline: &str) -> std::path::PathBuf {
    let dir = w.dir.path().join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("access.cedar"), CEDAR).unwrap();
    let rules = RULES
        .replace("incident-responders = []", "incident-responders = [\"alice\"]")
        .replace("approval_deadline = \"24h\"", &format!("approval_deadline = \"{deadline}\""));
    assert!(rules.contains(&format!("approval_deadline = \"{deadline}\"")) && rules.contains("[\"alice\"]"));
    std::fs::write(dir.join("rules.toml"), rules).unwrap();
    dir
}

pub fn load_policy(w: &World, name: &str, deadline: &str) {
    let dir = policy_dir(w, name, deadline);
    w.writ(&["policy", "reload", "--dir", dir.to_str().unwrap()]).ok();
}

pub fn breakglass(w: &World, actor: &str, entitlement: &str) -> crate::harness::Run {
    w.writ(&[
        "breakglass",
        "--as",
        actor,
        "--grant",
        entitlement,
        "--for",
        "30m",
        "--reason",
        "INC-7: deploys are failing in production",
        "--ticket",
        "INC-7",
        "--json",
    ])
}

fn access_file(w: &World) -> String {
    git(&w.repo, &["show", "HEAD:access.toml"])
}

#[test]
fn breakglass_is_applied_at_once_and_the_trail_shows_emergency_post_hoc_approval_and_review() {
    let w = World::new();
    load_policy(&w, "policy-24h", "24h");

    // Someone policy does not let break glass is refused, and nothing changes anywhere.
    let before = w.fingerprint();
    let refused = breakglass(&w, "bob", "access:deploy-prod");
    assert_eq!(refused.code, 3, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("policy.not_permitted") && refused.stderr.contains("may not break glass")
    );
    assert_eq!(w.fingerprint(), before);

    let run = breakglass(&w, "alice", "access:deploy-prod").json();
    let id = run["id"].as_str().unwrap().to_owned();
    assert_eq!(run["state"], "verified", "{run}");
    assert!(access_file(&w).contains("alice"), "the grant is on the target at once");

    let review_early = w.writ(&["change", "review", &id, "--as", "carol", "--notes", "ok"]);
    assert_ne!(review_early.code, 0);
    assert!(review_early.stderr.contains("breakglass.approval_missing"), "{}", review_early.stderr);
    let own = w.writ(&["change", "approve", &id, "--as", "alice"]);
    assert!(own.stderr.contains("sod.self_approval"), "{}", own.stderr);
    w.writ(&["change", "approve", &id, "--as", "bob"]).ok();
    w.writ(&["change", "review", &id, "--as", "carol", "--notes", "justified; access ended on time"]).ok();

    let shown = w.writ(&["change", "show", &id, "--json"]).json();
    assert_eq!(shown["state"], "reviewed");
    assert_eq!(shown["event"], "incident");
    assert_eq!(shown["emergency"]["post_hoc_approval"], "in_time", "{}", shown["emergency"]);
    assert_eq!(shown["answers"]["who_executed"][0], "alice");
    assert_eq!(shown["approvals"][0]["post_hoc"], true);
    let types: Vec<&str> =
        shown["events"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap()).collect();
    let position =
        |t: &str| types.iter().position(|x| *x == t).unwrap_or_else(|| panic!("no {t} in {types:?}"));
    assert!(position("change.breakglass") < position("change.approved"));
    assert!(position("change.verified") < position("change.approved"));
    assert!(position("change.approved") < position("change.reviewed"));
    let text = w.writ(&["change", "show", &id]).ok();
    assert!(text.contains("EMERGENCY  break-glass at"), "{text}");
    assert!(text.contains("IN_TIME"), "{text}");
    assert!(text.contains("approved   bob") && text.contains("post-hoc, in time"), "{text}");
    assert!(w.writ(&["finding", "list", "--json"]).json().as_array().unwrap().is_empty());
}

#[test]
fn a_breakglass_change_not_approved_after_the_fact_by_its_deadline_ends_in_a_finding() {
    let w = World::new();
    load_policy(&w, "policy-2s", "2s");
    let id = breakglass(&w, "alice", "access:deploy-prod").json()["id"].as_str().unwrap().to_owned();
    std::thread::sleep(std::time::Duration::from_millis(2500));

    let due = w.writ(&["run-due", "--json"]);
    assert_eq!(
        due.code, 7,
        "an overdue approval is a failure for whoever runs the scheduler: {}",
        due.stderr
    );
    assert!(due.stderr.contains("breakglass.approval_missed"), "{}", due.stderr);
    let report: serde_json::Value = serde_json::from_str(&due.stdout).unwrap();
    let overdue = &report["breakglass_overdue"];
    assert_eq!(overdue[0]["change"], id.as_str(), "{overdue}");
    let finding_id = overdue[0]["finding"].as_str().unwrap().to_owned();

    let findings = w.writ(&["finding", "list", "--state", "open", "--json"]).json();
    assert_eq!(findings.as_array().unwrap().len(), 1, "{findings}");
    assert_eq!(findings[0]["kind"], "breakglass.approval_missed");
    assert_eq!(findings[0]["change"], id.as_str());
    let shown = w.writ(&["change", "show", &id, "--json"]).json();
    assert_eq!(shown["emergency"]["post_hoc_approval"], "missed");
    assert!(shown["alert"].as_str().unwrap().contains(&finding_id), "{}", shown["alert"]);

    // The scheduler records the miss once.
    let before = w.fingerprint();
    assert_eq!(w.writ(&["run-due", "--json"]).json()["breakglass_overdue"], serde_json::json!([]));
    assert_eq!(w.fingerprint(), before);

    // A finding is resolved by a person with a note, once.
    let bad = w.writ(&["finding", "resolve", &finding_id, "--as", "carol", "--note", " "]);
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    w.writ(&[
        "finding",
        "resolve",
        &finding_id,
        "--as",
        "carol",
        "--note",
        "talked to alice; approval process fixed",
    ])
    .ok();
    let again = w.writ(&["finding", "resolve", &finding_id, "--as", "carol", "--note", "twice"]);
    assert!(again.stderr.contains("finding.not_open"), "{}", again.stderr);
    assert_eq!(w.writ(&["finding", "show", &finding_id, "--json"]).json()["state"], "resolved");
}

#[test]
fn over_the_api_breakglass_is_the_callers_own_and_a_missed_deadline_shows_up_as_a_finding() {
    let w = World::new();
    let dir = policy_dir(&w, "served-2s", "2s");
    let http = crate::api::Http::start_with(w, &["--policy-dir", dir.to_str().unwrap()]);
    let api = &http.api;
    let body = |extra: serde_json::Value| {
        let mut body =
            serde_json::json!({ "grant": ["access:deploy-prod"], "for": "20m", "reason": "INC-9: outage" });
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        body
    };
    http.settle();
    let before = http.fingerprint();
    // Refusals: a vendor's requester (policy), an approver (role), malformed and incomplete bodies.
    api.post("/api/v1/breakglass", &http.vera, body(serde_json::json!({})))
        .refused(403, "policy.not_permitted");
    api.post("/api/v1/breakglass", &http.bob, body(serde_json::json!({}))).refused(403, "auth.role_required");
    let unknown = api.post("/api/v1/breakglass", &http.alice, body(serde_json::json!({ "as": "bob" })));
    assert_eq!(unknown.status, 400, "{}", unknown.body);
    let no_reason = serde_json::json!({ "grant": ["access:deploy-prod"] });
    api.post("/api/v1/breakglass", &http.alice, no_reason).refused(400, "request.missing_field");
    let too_long = api.post("/api/v1/breakglass", &http.alice, body(serde_json::json!({ "for": "2h" })));
    too_long.refused(403, "breakglass.duration_exceeded");
    api.get("/api/v1/findings/FND-..%2F..", &http.root).refused(400, "input.invalid_value");
    assert_eq!(http.fingerprint(), before, "refusals change nothing");

    let created =
        api.post("/api/v1/breakglass", &http.alice, body(serde_json::json!({}))).expect(201).clone();
    assert_eq!(created["state"], "verified", "{created}");
    assert_eq!(created["answers"]["who_executed"][0], "alice");
    assert!(created["emergency"]["approval_due"].is_string());
    let id = created["id"].as_str().unwrap().to_owned();

    // The server's own tick notices the missed deadline.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let finding = loop {
        let open = api.get("/api/v1/findings?state=open", &http.root).expect(200).clone();
        if let Some(first) = open["items"].as_array().and_then(|items| items.first()) {
            break first.clone();
        }
        assert!(std::time::Instant::now() < deadline, "no finding opened by the server");
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert_eq!(finding["change"], id.as_str());
    assert_eq!(finding["kind"], "breakglass.approval_missed");
    api.get("/api/v1/findings", &http.alice).refused(403, "auth.role_required");
    let path = format!("/api/v1/findings/{}/resolve", finding["id"].as_str().unwrap());
    api.post(&path, &http.carol, serde_json::json!({})).refused(400, "request.missing_field");
    let resolved = api.post(&path, &http.carol, serde_json::json!({ "note": "approved late, reviewed" }));
    assert_eq!(resolved.expect(200)["state"], "resolved");
    let review = format!("/api/v1/changes/{id}/review");
    api.post(&review, &http.carol, serde_json::json!({ "notes": "ok" }))
        .refused(409, "breakglass.approval_missing");
    api.post(&path, &http.carol, serde_json::json!({ "note": "again" })).refused(409, "finding.not_open");
}

#[test]
fn a_policy_loaded_by_another_process_is_in_force_on_a_running_server_within_seconds() {
    let w = World::new();
    let dir = policy_dir(&w, "responders", "24h");
    let http = crate::api::Http::start(w);
    let body =
        serde_json::json!({ "grant": ["access:deploy-prod"], "for": "10m", "reason": "INC-12: outage" });
    // The default pack in force: alice is no incident responder.
    http.api.post("/api/v1/breakglass", &http.alice, body.clone()).refused(403, "policy.not_permitted");
    // Another process (here the CLI on the same database) loads a policy that makes her one.
    http.world.writ(&["policy", "reload", "--dir", dir.to_str().unwrap()]).ok();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let reply = http.api.post("/api/v1/breakglass", &http.alice, body.clone());
        if reply.status == 201 {
            break;
        }
        reply.refused(403, "policy.not_permitted");
        assert!(std::time::Instant::now() < deadline, "the server kept the old policy");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}
