//! Authority by relationship (`writ_core::authority`), through the API and the local CLI alike:
//! who may cancel which change, who may attach evidence to which step, and how evidence is
//! served back. Each refusal has its code and changes nothing.

use serde_json::json;
use writ_server::testkit::spawn_app;

use crate::harness::World;
use crate::server::{Api, roles, token};

/// A change alice asks for: a grant for dave, a revocation of dave's access, or a leaver.
fn open(world: &World, api: &Api, alice: &str, kind: &str) -> String {
    let body = match kind {
        "grant" => json!({ "identity": "dave", "grant": ["access:eng-read"], "justification": "on call" }),
        "revocation" => {
            json!({ "identity": "dave", "revoke": ["access:eng-read"], "justification": "moved team" })
        }
        _ => {
            json!({ "identity": "dave", "revoke": ["access:eng-read"], "justification": "left", "event": "leaver" })
        }
    };
    let reply = api.post("/api/v1/changes", alice, body);
    let id = reply.expect(201)["id"].as_str().unwrap().to_owned();
    assert_eq!(world.writ(&["change", "show", &id, "--json"]).json()["requester"], "alice");
    id
}

#[test]
fn only_whose_change_it_is_may_cancel_it_and_never_the_subject_of_a_removal() {
    let w = World::new();
    w.writ(&["identity", "add", "root", "--kind", "human"]).ok();
    roles(&w, "alice", &["requester"]);
    roles(&w, "dave", &["requester"]);
    roles(&w, "carol", &["requester", "approver"]);
    roles(&w, "root", &["admin"]);
    let tokens: Vec<(&str, String)> =
        ["alice", "dave", "carol", "root"].iter().map(|p| (*p, token(&w, p))).collect();
    let alice = tokens[0].1.clone();
    let app = spawn_app(&w.db, writ_server::ServeOptions::default()).unwrap();
    let api = Api::new(&app.base);
    let mut cases = 0;
    for kind in ["grant", "revocation", "leaver"] {
        for (who, token) in &tokens {
            let allowed = match *who {
                "alice" | "root" => true,
                _ => false, // dave is the subject (or not the requester); carol is uninvolved
            };
            // Over the API.
            let id = open(&w, &api, &alice, kind);
            let before = w.fingerprint_except(&["leases"]);
            let reply =
                api.post(&format!("/api/v1/changes/{id}/cancel"), token, json!({ "reason": "not needed" }));
            if allowed {
                assert_eq!(reply.expect(200)["state"], "cancelled", "{kind}: {who}");
            } else {
                reply.refused(403, "authority.not_yours");
                assert_eq!(
                    w.fingerprint_except(&["leases"]),
                    before,
                    "{kind}: {who}'s refused cancel changed something"
                );
            }
            // And locally, with the same answer.
            let id = open(&w, &api, &alice, kind);
            let local = w.writ(&["change", "cancel", &id, "--as", who, "--reason", "not needed"]);
            if allowed {
                assert_eq!(local.code, 0, "{kind}: {who}: {}", local.stderr);
            } else {
                assert_eq!(local.code, 3, "{kind}: {who}: {}", local.stderr);
                assert!(local.stderr.starts_with("error[authority.not_yours]"), "{}", local.stderr);
            }
            cases += 2;
        }
    }
    assert_eq!(cases, 24);
}

#[test]
fn evidence_comes_from_the_steps_people_to_reached_steps_and_is_served_as_a_download() {
    let w = World::new();
    w.writ(&["identity", "add", "root", "--kind", "human"]).ok();
    roles(&w, "alice", &["requester"]);
    roles(&w, "bob", &["approver"]);
    roles(&w, "carol", &["requester"]);
    roles(&w, "root", &["auditor"]);
    let alice = token(&w, "alice");
    let people: Vec<(&str, String)> =
        ["alice", "bob", "carol", "root"].iter().map(|p| (*p, token(&w, p))).collect();
    let app = spawn_app(&w.db, writ_server::ServeOptions::default()).unwrap();
    let api = Api::new(&app.base);
    let id = open(&w, &api, &alice, "grant");
    let binary = [("content-type", "application/octet-stream")];
    for step in ["request", "validation", "approval", "implementation", "verification", "review"] {
        let reached = matches!(step, "request" | "validation" | "approval");
        for (who, token) in &people {
            let allowed = match *who {
                "alice" | "root" => true,
                "bob" => step == "approval",
                _ => false,
            };
            let before = w.fingerprint_except(&["leases"]);
            let path = format!("/api/v1/changes/{id}/evidence?step={step}&name=note-{who}");
            let body = format!("{step} by {who}").into_bytes();
            let reply = api.send("POST", &path, Some(token), &binary, Some(body));
            match (reached, allowed) {
                (true, true) => assert_eq!(reply.status, 201, "{step} {who}: {}", reply.text),
                (false, _) => reply.refused(409, "evidence.step_not_reached"),
                (true, false) => reply.refused(403, "authority.not_yours"),
            }
            if reply.status != 201 {
                assert_eq!(
                    w.fingerprint_except(&["leases"]),
                    before,
                    "{step} {who}: a refusal changed something"
                );
            }
        }
    }
    // Evidence for a step the change has moved past is taken, and marked late in the trail.
    let shown = w.writ(&["change", "show", &id, "--json"]).json();
    let attached: Vec<(String, String)> = shown["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "change.evidence_attached")
        .map(|e| (e["phase"].as_str().unwrap().to_owned(), e["detail"].as_str().unwrap().to_owned()))
        .collect();
    assert!(!attached.is_empty());
    for (step, detail) in &attached {
        let late = detail.contains("(late: the change had moved past this step)");
        assert_eq!(late, step != "approval", "{step}: {detail}");
    }
    // Whatever media type the uploader claims, it comes back as a download.
    let html = [("content-type", "text/html")];
    let path = format!("/api/v1/changes/{id}/evidence?step=request&name=page");
    let attached = api.send("POST", &path, Some(&alice), &html, Some(b"<script>alert(1)</script>".to_vec()));
    let digest = attached.expect(201)["sha256"].as_str().unwrap().to_owned();
    let served = api.send("GET", &format!("/api/v1/evidence/{digest}"), Some(&alice), &[], None);
    assert_eq!(served.status, 200);
    assert_eq!(served.headers["content-type"], "application/octet-stream");
    assert_eq!(served.headers["x-content-type-options"], "nosniff");
    assert!(served.headers["content-disposition"].to_str().unwrap().starts_with("attachment"));
    // A closed change takes no more evidence, from anyone.
    w.writ(&["change", "cancel", &id, "--as", "alice", "--reason", "done"]).ok();
    let late = api.send("POST", &path, Some(&people[3].1), &binary, Some(b"late".to_vec()));
    late.refused(409, "evidence.change_closed");
}

#[test]
fn a_client_over_its_rate_gets_429_with_retry_after_and_nothing_is_done() {
    let w = World::new();
    roles(&w, "alice", &["requester"]);
    let alice = token(&w, "alice");
    let options = writ_server::ServeOptions { rate_limit: Some(2), ..writ_server::ServeOptions::default() };
    let app = spawn_app(&w.db, options).unwrap();
    let api = Api::new(&app.base);
    // A burst of twice the rate passes; the rest of a fast run is refused, with when to retry.
    let replies: Vec<_> = (0..12).map(|_| api.get("/api/v1/whoami", &alice)).collect();
    let passed = replies.iter().filter(|r| r.status == 200).count();
    assert!((2..=5).contains(&passed), "{passed} passed");
    let limited = replies.iter().find(|r| r.status == 429).expect("some request is limited");
    assert_eq!(limited.code(), "rate.limited", "{}", limited.text);
    let wait: u64 = limited.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&wait), "{wait}");
    // Unauthenticated requests are limited by address: a flood of bad deliveries stops adding
    // refusals to the ledger once it is over the rate.
    std::thread::sleep(std::time::Duration::from_secs(2));
    let before = w.writ(&["ledger", "verify", "--json"]).json()["events"].as_u64().unwrap();
    let statuses: Vec<u16> = (0..20)
        .map(|_| {
            api.send(
                "POST",
                "/hooks/nosuch",
                None,
                &[("content-type", "application/json")],
                Some(b"{}".to_vec()),
            )
            .status
        })
        .collect();
    assert!(statuses.iter().filter(|s| **s == 429).count() >= 14, "{statuses:?}");
    let after = w.writ(&["ledger", "verify", "--json"]).json()["events"].as_u64().unwrap();
    assert_eq!(after, before, "an unknown hook records nothing, limited or not");
}

#[test]
fn acting_on_behalf_of_someone_needs_their_delegation_on_every_surface() {
    let w = World::new();
    w.writ(&["identity", "add", "root", "--kind", "human"]).ok();
    roles(&w, "alice", &["requester"]);
    roles(&w, "carol", &["requester"]);
    roles(&w, "dave", &["requester"]);
    roles(&w, "root", &["admin"]);
    let [alice, carol, dave, root] = ["alice", "carol", "dave", "root"].map(|p| token(&w, p));
    let app = spawn_app(&w.db, writ_server::ServeOptions::default()).unwrap();
    let api = Api::new(&app.base);
    let for_carol = json!({ "identity": "dave", "grant": ["access:eng-read"], "justification": "covering", "on_behalf_of": "carol" });

    // Without carol's delegation, alice cannot name her, over the API or locally.
    let before = w.fingerprint_except(&["leases"]);
    api.post("/api/v1/changes", &alice, for_carol.clone()).refused(403, "authority.no_delegation");
    let local = w.writ(&[
        "change",
        "request",
        "--as",
        "alice",
        "--identity",
        "dave",
        "--grant",
        "access:eng-read",
        "--justification",
        "covering",
        "--on-behalf-of",
        "carol",
    ]);
    assert!(local.stderr.starts_with("error[authority.no_delegation]"), "{}", local.stderr);
    // Who may grant carol's delegation: carol or an admin; not alice, not dave.
    let path = "/api/v1/delegations/carol/alice";
    for (who, token) in [("alice", &alice), ("dave", &dave)] {
        let reply = api.send(
            "PUT",
            path,
            Some(token),
            &[("content-type", "application/json")],
            Some(br#"{"for":"7d"}"#.to_vec()),
        );
        assert_eq!((reply.status, reply.code()), (403, "authority.not_yours"), "{who}: {}", reply.text);
    }
    assert_eq!(w.fingerprint_except(&["leases"]), before, "refusals changed nothing");
    for token in [&carol, &root] {
        let reply = api.send(
            "PUT",
            path,
            Some(token),
            &[("content-type", "application/json")],
            Some(br#"{"for":"7d"}"#.to_vec()),
        );
        assert_eq!(reply.expect(200)["in_force"], true);
    }
    let opened = api.post("/api/v1/changes", &alice, for_carol.clone());
    assert_eq!(opened.expect(201)["on_behalf_of"], "carol");
    // Each sees the delegations they give or hold; an admin sees all.
    let seen =
        |token: &str| api.get("/api/v1/delegations", token).expect(200)["items"].as_array().unwrap().len();
    assert_eq!((seen(&alice), seen(&carol), seen(&dave), seen(&root)), (1, 1, 0, 1));
    // The delegate may give it up; then naming carol is refused again.
    assert_eq!(api.send("DELETE", path, Some(&dave), &[], None).code(), "authority.not_yours");
    assert_eq!(api.send("DELETE", path, Some(&alice), &[], None).status, 200);
    api.post("/api/v1/changes", &alice, for_carol).refused(403, "authority.no_delegation");
    let listed = w.writ(&["delegation", "list"]).ok();
    assert_eq!(listed, "no delegations");
}

#[test]
fn an_orphaned_nhi_changes_owner_only_when_someone_other_than_the_claimant_accepts() {
    let w = World::new();
    w.writ(&["identity", "add", "root", "--kind", "human"]).ok();
    for person in ["bob", "carol", "dave"] {
        roles(&w, person, &["requester"]);
    }
    roles(&w, "root", &["admin"]);
    w.writ(&["identity", "add", "erin", "--kind", "human"]).ok();
    roles(&w, "erin", &["auditor", "approver"]);
    w.writ(&["identity", "disable", "alice", "--reason", "left the company"]).ok();
    let findings = w.writ(&["finding", "list", "--json"]).json();
    let orphan = findings
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["kind"] == "nhi.orphaned" && f["subject"] == "svc-ci")
        .unwrap_or_else(|| panic!("svc-ci flagged: {findings}"))["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let tokens: std::collections::BTreeMap<&str, String> =
        ["bob", "carol", "dave", "root", "erin"].into_iter().map(|p| (p, token(&w, p))).collect();
    let app = spawn_app(&w.db, writ_server::ServeOptions::default()).unwrap();
    let api = Api::new(&app.base);
    let unchanged = |what: &str, attempt: &dyn Fn()| {
        let before = w.fingerprint_except(&["leases", "idempotency"]);
        attempt();
        assert_eq!(w.fingerprint_except(&["leases", "idempotency"]), before, "{what} changed something");
    };

    // Asking: neither owner, new owner nor admin is refused; carol claims it for herself.
    let ask = |who: &str, to: &str| {
        api.post(
            "/api/v1/identities/svc-ci/transfers",
            &tokens[who],
            json!({ "to": to, "justification": "ownerless" }),
        )
    };
    for (who, to) in [("bob", "carol"), ("dave", "bob")] {
        unchanged(&format!("{who} asking"), &|| ask(who, to).refused(403, "transfer.not_allowed"));
    }
    // An auditor and approver, who neither requests nor administers, takes on nothing.
    unchanged("erin claiming", &|| ask("erin", "erin").refused(403, "auth.role_required"));
    unchanged("a body without `to`", &|| {
        api.post("/api/v1/identities/svc-ci/transfers", &tokens["carol"], json!({ "justification": "x" }))
            .refused(400, "request.missing_field")
    });
    unchanged("a transfer to a service account", &|| {
        ask("root", "svc-ci").refused(422, "transfer.owner_invalid")
    });
    let claim = ask("carol", "carol");
    let claim = claim.expect(201);
    assert_eq!((claim["state"].as_str(), claim["from"].as_str()), (Some("pending"), Some("alice")));
    let id = claim["id"].as_str().unwrap().to_owned();

    // Seeing: the people it concerns and admins; to anyone else it does not exist.
    for (who, sees) in [("bob", false), ("dave", false), ("carol", true), ("root", true)] {
        let listed = api.get("/api/v1/transfers?identity=svc-ci", &tokens[who]);
        assert_eq!(listed.expect(200)["items"].as_array().unwrap().len(), usize::from(sees), "{who}");
        let shown = api.get(&format!("/api/v1/transfers/{id}"), &tokens[who]);
        if sees {
            assert_eq!(shown.expect(200)["id"], id.as_str());
        } else {
            shown.refused(404, "not_found");
        }
    }

    // Deciding: the claimant cannot; with the owner gone only an admin may.
    let decide = |who: &str, verb: &str| {
        api.post(&format!("/api/v1/transfers/{id}/{verb}"), &tokens[who], json!({ "note": "checked" }))
    };
    for (who, verb, code) in [
        ("carol", "accept", "transfer.self_approval"),
        ("bob", "accept", "transfer.not_allowed"),
        ("dave", "decline", "transfer.not_allowed"),
        ("root", "cancel", "transfer.not_allowed"),
    ] {
        unchanged(&format!("{who} {verb}"), &|| decide(who, verb).refused(403, code));
    }
    assert_eq!(w.writ(&["identity", "show", "svc-ci", "--json"]).json()["owner"], "alice");
    let accepted = decide("root", "accept");
    assert_eq!(accepted.expect(200)["state"], "accepted");
    assert_eq!(w.writ(&["identity", "show", "svc-ci", "--json"]).json()["owner"], "carol");
    assert_eq!(w.writ(&["finding", "show", &orphan, "--json"]).json()["state"], "resolved");
    unchanged("a second decision", &|| decide("root", "decline").refused(409, "transfer.not_pending"));

    // The local CLI takes the same path: carol hands it to bob, who accepts.
    let asked = w.writ(&[
        "identity",
        "transfer",
        "svc-ci",
        "--to",
        "bob",
        "--as",
        "carol",
        "--justification",
        "new team",
        "--json",
    ]);
    let next = asked.json()["id"].as_str().unwrap().to_owned();
    let refused = w.writ(&["identity", "accept-transfer", &next, "--as", "carol"]);
    assert_eq!(refused.code, 3, "{}", refused.stderr);
    assert!(refused.stderr.contains("transfer.self_approval"), "{}", refused.stderr);
    let text = w.writ(&["identity", "accept-transfer", &next, "--as", "bob", "--note", "mine now"]).ok();
    assert!(text.contains("carol → bob (accepted)"), "{text}");
    let listed = w.writ(&["identity", "transfers", "svc-ci", "--json"]).json();
    let states: Vec<&str> = listed.as_array().unwrap().iter().map(|t| t["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["accepted", "accepted"]);
    w.writ(&["ledger", "verify"]).ok();
}
