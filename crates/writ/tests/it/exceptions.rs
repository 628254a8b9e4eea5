//! Exceptions through the binary and the API: a missed break-glass approval (a real finding on
//! a real git target) accepted as risk by an exception that its requester and owner cannot
//! approve, covered while it is active, listed and exported, and open again when it expires
//! or is revoked.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::breakglass::{breakglass, load_policy, policy_dir};
use crate::harness::World;

/// Breaks glass as alice under a 2 s post-hoc deadline and lets it pass; returns the finding.
pub fn missed_finding(w: &World) -> String {
    load_policy(w, "policy-2s", "2s");
    breakglass(w, "alice", "access:deploy-prod").json();
    std::thread::sleep(Duration::from_millis(2500));
    let due = w.writ(&["run-due", "--json"]);
    assert_eq!(due.code, 7, "{}", due.stderr);
    let report: Value = serde_json::from_str(&due.stdout).unwrap();
    report["breakglass_overdue"][0]["finding"].as_str().unwrap().to_owned()
}

pub fn request<'a>(finding: &'a str, actor: &'a str, owner: &'a str, term: &'a str) -> Vec<&'a str> {
    vec![
        "exception",
        "request",
        "--as",
        actor,
        "--finding",
        finding,
        "--owner",
        owner,
        "--for",
        term,
        "--justification",
        "the on-call approver was unreachable during the outage",
        "--compensating-control",
        "the grant was checked line by line against the incident log",
        "--json",
    ]
}

#[test]
fn an_exception_covers_its_finding_until_it_expires_and_is_listed_and_exported() {
    let w = World::new();
    let finding = missed_finding(&w);

    // Refused requests change nothing.
    let before = w.fingerprint();
    let owner = w.writ(&request(&finding, "dave", "svc-ci", "1h"));
    assert_eq!(owner.code, 3, "{}", owner.stderr);
    assert!(owner.stderr.contains("exception.owner_not_human"), "{}", owner.stderr);
    let long = w.writ(&request(&finding, "dave", "carol", "91d"));
    assert!(long.stderr.contains("exception.duration_exceeded"), "{}", long.stderr);
    let no_term =
        w.writ(&["exception", "request", "--as", "dave", "--finding", &finding, "--owner", "carol"]);
    assert_eq!(no_term.code, 2, "{}", no_term.stderr);
    let unknown = w.writ(&request("FND-0000000000000000", "dave", "carol", "1h"));
    assert_eq!(unknown.code, 4, "{}", unknown.stderr);
    assert_eq!(w.fingerprint(), before);

    let started = Instant::now();
    let created = w.writ(&request(&finding, "dave", "carol", "5s")).json();
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!((created["state"].as_str(), created["approvals_needed"].as_u64()), (Some("pending"), Some(2)));
    assert_eq!(created["control"], "breakglass.approval_missed");

    // Neither the requester nor the owner approves; one person counts once.
    for (who, code) in [("dave", "sod.self_approval"), ("carol", "sod.self_approval")] {
        let run = w.writ(&["exception", "approve", &id, "--as", who]);
        assert!(run.stderr.contains(code), "{who}: {}", run.stderr);
    }
    w.writ(&["exception", "approve", &id, "--as", "bob"]).ok();
    let twice = w.writ(&["exception", "approve", &id, "--as", "bob"]);
    assert!(twice.stderr.contains("sod.duplicate_approval"), "{}", twice.stderr);
    assert_eq!(w.writ(&["finding", "show", &finding, "--json"]).json()["state"], "open");
    let active = w.writ(&["exception", "approve", &id, "--as", "alice", "--json"]).json();
    assert_eq!(active["state"], "active", "{active}");
    let covered = w.writ(&["finding", "show", &finding, "--json"]).json();
    assert_eq!(
        (covered["state"].as_str(), covered["exception"].as_str()),
        (Some("excepted"), Some(id.as_str()))
    );

    // Listed, shown and exported.
    let listed =
        w.writ(&["exception", "list", "--state", "active", "--expiring-within", "1h", "--json"]).json();
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    let later = w.writ(&["exception", "list", "--state", "pending", "--json"]).json();
    assert!(later.as_array().unwrap().is_empty());
    let shown = w.writ(&["exception", "show", &id]).ok();
    assert!(shown.contains("approvals     2 of 2") && shown.contains("owner         carol"), "{shown}");
    let csv_file = w.dir.path().join("exceptions.csv");
    w.writ(&["exception", "export", "--format", "csv", "-o", csv_file.to_str().unwrap()]).ok();
    let mut reader = csv::Reader::from_path(&csv_file).unwrap();
    let header: Vec<String> = reader.headers().unwrap().iter().map(str::to_owned).collect();
    assert_eq!(&header[..4], ["id", "state", "control", "subject"]);
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 1);
    let column = |name: &str| rows[0].get(header.iter().position(|h| h == name).unwrap()).unwrap().to_owned();
    assert_eq!(column("id"), id);
    assert_eq!(column("state"), "active");
    assert_eq!(column("owner"), "carol");
    assert!(column("approvers").contains("bob (") && column("approvers").contains("alice ("), "{rows:?}");
    assert!(column("justification").contains("unreachable"), "free text survives quoting");
    let exported: Value =
        serde_json::from_str(&w.writ(&["exception", "export", "--format", "json"]).ok()).unwrap();
    assert_eq!(exported[0]["id"], id.as_str());
    let bad_format = w.writ(&["exception", "export", "--format", "xml"]);
    assert_eq!(bad_format.code, 2, "{}", bad_format.stderr);

    // The term ends: the exception expires on the next pass, and the finding opens again.
    std::thread::sleep(Duration::from_secs(5).saturating_sub(started.elapsed()) + Duration::from_millis(300));
    let due = w.writ(&["run-due", "--json"]).json();
    assert_eq!(due["exceptions_expired"], json!([{ "exception": id, "reopened": [finding] }]), "{due}");
    assert_eq!(w.writ(&["exception", "show", &id, "--json"]).json()["state"], "expired");
    let reopened = w.writ(&["finding", "show", &finding, "--json"]).json();
    assert_eq!((reopened["state"].as_str(), &reopened["exception"]), (Some("open"), &Value::Null));
    let late = w.writ(&["exception", "approve", &id, "--as", "bob"]);
    assert!(late.stderr.contains("state.invalid_transition"), "{}", late.stderr);
    // Every step is in the verified ledger.
    w.writ(&["ledger", "verify"]).ok();
}

#[test]
fn over_the_api_exceptions_are_the_callers_own_and_vendors_cannot_approve_them() {
    let w = World::new();
    let dir = policy_dir(&w, "served-2s", "2s");
    crate::server::roles(&w, "dave", &["approver"]);
    let dave = crate::server::token(&w, "dave");
    let http = crate::api::Http::start_with(w, &["--policy-dir", dir.to_str().unwrap()]);
    let api = &http.api;
    let glass = json!({ "grant": ["access:deploy-prod"], "for": "20m", "reason": "INC-11: outage" });
    api.post("/api/v1/breakglass", &http.alice, glass).expect(201);
    let deadline = Instant::now() + Duration::from_secs(20);
    let finding = loop {
        let open = api.get("/api/v1/findings?state=open", &http.root).expect(200).clone();
        if let Some(id) = open["items"][0]["id"].as_str() {
            break id.to_owned();
        }
        assert!(Instant::now() < deadline, "no finding opened by the server");
        std::thread::sleep(Duration::from_millis(200));
    };
    let body = |extra: Value| {
        let mut body = json!({
            "finding": finding, "owner": "carol", "for": "1h",
            "justification": "approver unreachable", "compensating_control": "line-by-line check",
        });
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        body
    };

    http.settle();
    let before = http.fingerprint();
    api.post("/api/v1/exceptions", &http.bob, body(json!({}))).refused(403, "auth.role_required");
    let no_owner =
        json!({ "finding": finding, "for": "1h", "justification": "j", "compensating_control": "c" });
    api.post("/api/v1/exceptions", &http.alice, no_owner).refused(400, "request.missing_field");
    api.post("/api/v1/exceptions", &http.alice, body(json!({ "as": "bob" })))
        .refused(400, "request.malformed_json");
    api.post("/api/v1/exceptions", &http.alice, body(json!({ "owner": "writ-executor" })))
        .refused(422, "exception.owner_not_human");
    api.post("/api/v1/exceptions", &http.alice, body(json!({ "for": "200d" })))
        .refused(403, "exception.duration_exceeded");
    api.post("/api/v1/exceptions", &http.alice, body(json!({ "for": "soon" })))
        .refused(400, "input.invalid_duration");
    api.get("/api/v1/exceptions/EXC-..%2F..", &http.root).refused(400, "input.invalid_value");
    assert_eq!(http.fingerprint(), before, "refusals change nothing");

    let created = api.post("/api/v1/exceptions", &http.alice, body(json!({}))).expect(201).clone();
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["requester"], "alice", "the caller is the requester");
    api.post("/api/v1/exceptions", &http.alice, body(json!({}))).refused(409, "exception.duplicate");

    let approve = format!("/api/v1/exceptions/{id}/approve");
    // A vendor cannot accept risk for the organisation; an approver approves once.
    let vendor = api.post(&approve, &http.victor, json!({}));
    vendor.refused(403, "policy.forbidden");
    assert!(
        vendor.body["error"]["message"].as_str().unwrap().contains("exception.internal-decision"),
        "{}",
        vendor.body
    );
    let key = [("idempotency-key", "approve-exception-1")];
    let first = api.post_with(&approve, &http.bob, &key, json!({})).expect(200).clone();
    assert_eq!(first["state"], "pending");
    let replay = api.post_with(&approve, &http.bob, &key, json!({}));
    assert_eq!(replay.expect(200)["approvals"], first["approvals"], "a replay approves nothing twice");
    assert_eq!(replay.headers.get("idempotent-replayed").map(|v| v.to_str().unwrap()), Some("true"));
    let active = api.post(&approve, &dave, json!({})).expect(200).clone();
    assert_eq!(active["state"], "active", "{active}");
    let covered = api.get(&format!("/api/v1/findings/{finding}"), &http.root).expect(200).clone();
    assert_eq!(covered["exception"], id.as_str());

    api.get("/api/v1/exceptions", &http.alice).refused(403, "auth.role_required");
    let export = api.get("/api/v1/exceptions/export?format=csv", &http.root);
    assert_eq!(export.status, 200);
    assert!(export.headers["content-type"].to_str().unwrap().starts_with("text/csv"));
    assert!(
        export.text.starts_with("id,state,control,subject,owner") && export.text.contains(&id),
        "{}",
        export.text
    );

    // The requester withdraws it; the finding is open again at once.
    let revoke = format!("/api/v1/exceptions/{id}/revoke");
    api.post(&revoke, &http.bob, json!({ "reason": "x" })).refused(403, "auth.role_required");
    api.post(&revoke, &http.alice, json!({})).refused(400, "request.missing_field");
    let revoked =
        api.post(&revoke, &http.alice, json!({ "reason": "approved after all" })).expect(200).clone();
    assert_eq!(revoked["state"], "revoked");
    let reopened = api.get(&format!("/api/v1/findings/{finding}"), &http.root).expect(200).clone();
    assert_eq!((reopened["state"].as_str(), &reopened["exception"]), (Some("open"), &Value::Null));
}
