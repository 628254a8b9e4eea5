//! Leavers stop acting: offboarding, `identity disable` and SCIM deactivation revoke the
//! person's tokens (401 `auth.identity_disabled`), and the approvals they gave to changes still
//! waiting no longer count. Through the API, the local CLI and `--server` alike.

use serde_json::json;

use crate::api::Http;
use crate::client::remote;
use crate::harness::{ACCESS, World, git};
use crate::server::{roles, token};

/// erin, an approver and requester with a token, and two changes she approved: one that needs
/// a second approval (privileged) and one she approved outright.
fn with_erin(h: &Http) -> (String, String, String) {
    let repo = &h.world.repo;
    std::fs::write(repo.join("access.toml"), format!("{ACCESS}\n[entitlements.wheel-admin]\nmembers = []\n"))
        .unwrap();
    git(repo, &["-c", "user.name=T", "-c", "user.email=t@example.invalid", "commit", "-qam", "wheel-admin"]);
    h.world.writ(&["identity", "add", "erin", "--kind", "human"]).ok();
    roles(&h.world, "erin", &["approver", "requester"]);
    let erin = token(&h.world, "erin");
    let open = |entitlement: &str| {
        let body = json!({ "identity": "dave", "grant": [entitlement], "justification": "on call" });
        h.api.post("/api/v1/changes", &h.alice, body).expect(201)["id"].as_str().unwrap().to_owned()
    };
    let (privileged, plain) = (open("access:wheel-admin"), open("access:eng-read"));
    assert_eq!(approvals(h, &privileged), ("pending_approval".to_owned(), 0));
    for (id, state) in [(&privileged, "pending_approval"), (&plain, "approved")] {
        let approved = h.api.post(&format!("/api/v1/changes/{id}/approve"), &erin, json!({}));
        assert_eq!(approved.expect(200)["state"], state);
    }
    (erin, privileged, plain)
}

fn approvals(h: &Http, id: &str) -> (String, usize) {
    let change = h.api.get(&format!("/api/v1/changes/{id}"), &h.root).expect(200).clone();
    (change["state"].as_str().unwrap().to_owned(), change["approvals"].as_array().unwrap().len())
}

#[test]
fn an_offboarded_person_stops_acting_at_once_and_their_approvals_stop_counting() {
    let h = Http::start(World::new());
    let (erin, privileged, plain) = with_erin(&h);
    assert_eq!(h.api.get("/api/v1/whoami", &erin).status, 200);

    // Only an admin may disable or offboard; a refusal changes nothing.
    let before = h.world.fingerprint_except(&["leases"]);
    for path in ["disable", "enable"] {
        let reply = h.api.post(&format!("/api/v1/identities/erin/{path}"), &h.alice, json!({"reason": "x"}));
        reply.refused(403, "auth.role_required");
    }
    let reply = h.api.post("/api/v1/identities/erin/offboard", &h.alice, json!({"justification": "x"}));
    reply.refused(403, "auth.role_required");
    assert_eq!(h.world.fingerprint_except(&["leases"]), before);

    // erin holds nothing on any target: she is offboarded all the same, with no change.
    let done =
        h.api.post("/api/v1/identities/erin/offboard", &h.root, json!({"justification": "HR-7: left"}));
    let done = done.expect(200).clone();
    assert_eq!((done["identity"]["state"].as_str(), done["change"].as_str()), (Some("offboarded"), None));
    assert_eq!(done["tokens_revoked"].as_array().unwrap().len(), 1);
    let mut withdrawn: Vec<&str> =
        done["approvals_withdrawn"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    withdrawn.sort_unstable();
    let mut expected = vec![privileged.as_str(), plain.as_str()];
    expected.sort_unstable();
    assert_eq!(withdrawn, expected);

    // Her token is refused with why; her approvals no longer count anywhere.
    h.api.get("/api/v1/whoami", &erin).refused(401, "auth.identity_disabled");
    h.api
        .post(&format!("/api/v1/changes/{privileged}/approve"), &erin, json!({}))
        .refused(401, "auth.identity_disabled");
    for id in [&privileged, &plain] {
        assert_eq!(approvals(&h, id), ("pending_approval".to_owned(), 0), "{id}");
    }
    let execute = h.api.post(&format!("/api/v1/changes/{plain}/execute"), &h.executor, json!({}));
    execute.refused(409, "state.invalid_transition");
    // The local CLI refuses her too, with a stable code, and records nothing.
    let before = h.world.fingerprint_except(&["leases"]);
    for args in [
        vec!["change", "approve", privileged.as_str(), "--as", "erin"],
        vec!["change", "reject", privileged.as_str(), "--as", "erin", "--reason", "no"],
        vec![
            "change",
            "request",
            "--as",
            "erin",
            "--identity",
            "dave",
            "--grant",
            "access:eng-read",
            "--justification",
            "x",
        ],
        vec!["token", "create", "--identity", "erin", "--label", "again"],
    ] {
        let run = h.world.writ(&args);
        assert_eq!(run.code, 3, "{args:?}: {}", run.stderr);
        assert!(run.stderr.starts_with("error[identity.inactive]"), "{args:?}: {}", run.stderr);
    }
    assert_eq!(h.world.fingerprint_except(&["leases"]), before);
    // Another approver's approval makes the change whole again.
    let approved = h.api.post(&format!("/api/v1/changes/{plain}/approve"), &h.bob, json!({}));
    assert_eq!(approved.expect(200)["state"], "approved");

    // Enabled again (over --server): her roles hold again, the revoked token stays revoked.
    let enabled = remote(&h, &h.root, &["identity", "enable", "erin", "--reason", "rehired", "--json"]);
    assert_eq!(enabled.json()["identity"]["state"], "active");
    h.api.get("/api/v1/whoami", &erin).refused(401, "auth.token_revoked");
    let fresh = token(&h.world, "erin");
    assert_eq!(h.api.get("/api/v1/whoami", &fresh).expect(200)["roles"], json!(["approver", "requester"]));
    let verify = h.api.get("/api/v1/ledger/verify", &h.root);
    assert_eq!(verify.expect(200)["ok"], true, "{}", verify.body);
}

#[test]
fn disabling_from_the_cli_is_the_same_decision_and_is_recorded_once() {
    let h = Http::start(World::new());
    let (erin, privileged, _) = with_erin(&h);
    let run = h.world.writ(&["identity", "disable", "erin", "--reason", "laptop stolen", "--json"]).json();
    assert_eq!((run["from"].as_str(), run["identity"]["state"].as_str()), (Some("active"), Some("disabled")));
    h.api.get("/api/v1/whoami", &erin).refused(401, "auth.identity_disabled");
    assert_eq!(approvals(&h, &privileged), ("pending_approval".to_owned(), 0));
    // Disabling again records nothing more.
    let events = || h.world.writ(&["ledger", "verify", "--json"]).json()["events"].as_u64().unwrap();
    let before = events();
    let again = h.world.writ(&["identity", "disable", "erin", "--reason", "again", "--json"]).json();
    assert_eq!(
        (again["from"].as_str(), again["tokens_revoked"].as_array().map(Vec::len)),
        (Some("disabled"), Some(0))
    );
    assert_eq!(events(), before);
    let shown = h.world.writ(&["identity", "list"]).ok();
    assert!(shown.lines().any(|l| l.starts_with("erin") && l.ends_with("[disabled]")), "{shown}");
}
