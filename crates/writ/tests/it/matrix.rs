//! The decision table, enumerated through the API: every action on a change (approve, reject,
//! cancel, execute) × the actor's relationship to it (requester, on-behalf-of principal,
//! subject, uninvolved) × the actor's roles (the action's own role, admin only, none) × the
//! change kind (a grant, a revocation, a leaver). Each case runs on a change of its own, with
//! people of its own; each refusal has its stable code and changes nothing.

use serde_json::{Value, json};
use writ_server::testkit::spawn_app;

use crate::harness::World;
use crate::server::Api;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Act {
    Approve,
    Reject,
    Cancel,
    Execute,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rel {
    Requester,
    Principal,
    Subject,
    Other,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Roles {
    /// The role the action needs (approver, requester, executor).
    Own,
    Admin,
    None,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Grant,
    Revocation,
    Leaver,
}

/// The decision table (`docs`: README "Authority by relationship", `writ_core::authority`,
/// `writ_core::machine`): what each case must answer, as (status, code).
fn expected(act: Act, rel: Rel, roles: Roles, kind: Kind) -> (u16, &'static str) {
    const OK: (u16, &str) = (200, "");
    let role_required = (403, "auth.role_required");
    let removes = matches!(kind, Kind::Revocation | Kind::Leaver);
    match act {
        // Roles say who may attempt; then nobody approves or rejects a change they asked for,
        // were named in, or are the subject of.
        Act::Approve | Act::Reject if roles != Roles::Own => role_required,
        Act::Approve if rel != Rel::Other => (403, "sod.self_approval"),
        Act::Reject if rel != Rel::Other => (403, "sod.self_rejection"),
        Act::Approve | Act::Reject => OK,
        // Cancel: the requester or principal (with a role that may cancel), or an admin; never
        // the subject of a removal, whoever they are.
        Act::Cancel if roles == Roles::None => role_required,
        Act::Cancel if rel == Rel::Subject && removes => (403, "authority.not_yours"),
        Act::Cancel if matches!(rel, Rel::Requester | Rel::Principal) || roles == Roles::Admin => OK,
        Act::Cancel => (403, "authority.not_yours"),
        // Execute: an executor independent of the change.
        Act::Execute if roles != Roles::Own => role_required,
        Act::Execute if rel != Rel::Other => (403, "sod.executor_not_independent"),
        Act::Execute => OK,
    }
}

struct Case {
    act: Act,
    rel: Rel,
    roles: Roles,
    kind: Kind,
}

fn post(api: &Api, path: &str, token: &str, body: Value) -> Value {
    let reply = api.post(path, token, body);
    assert!(reply.status == 200 || reply.status == 201, "{path}: {}", reply.text);
    reply.body
}

fn put(api: &Api, path: &str, token: &str, body: Option<Value>) {
    let bytes = body.map(|b| serde_json::to_vec(&b).unwrap());
    let reply = api.send("PUT", path, Some(token), &[("content-type", "application/json")], bytes);
    assert_eq!(reply.status, 200, "{path}: {}", reply.text);
}

fn delete(api: &Api, path: &str, token: &str) {
    let reply = api.send("DELETE", path, Some(token), &[], None);
    assert_eq!(reply.status, 200, "{path}: {}", reply.text);
}

#[test]
fn every_action_relationship_role_and_change_kind_gets_the_decision_the_table_names() {
    let w = World::new();
    w.writ(&["identity", "add", "root", "--kind", "human"]).ok();
    w.writ(&["role", "grant", "root", "admin"]).ok();
    w.writ(&["identity", "add", "approver0", "--kind", "human"]).ok();
    w.writ(&["role", "grant", "approver0", "approver"]).ok();
    let root = crate::server::token(&w, "root");
    let approver = crate::server::token(&w, "approver0");
    let options = writ_server::ServeOptions { rate_limit: Some(0), ..writ_server::ServeOptions::default() };
    let app = spawn_app(&w.db, options).unwrap();
    let api = Api::new(&app.base);

    let mut cases = Vec::new();
    for act in [Act::Approve, Act::Reject, Act::Cancel, Act::Execute] {
        for rel in [Rel::Requester, Rel::Principal, Rel::Subject, Rel::Other] {
            for roles in [Roles::Own, Roles::Admin, Roles::None] {
                for kind in [Kind::Grant, Kind::Revocation, Kind::Leaver] {
                    cases.push(Case { act, rel, roles, kind });
                }
            }
        }
    }
    let mut failures = Vec::new();
    for (n, case) in cases.iter().enumerate() {
        let [r, p, s, o] = ["r", "p", "s", "o"].map(|x| format!("{x}{n}"));
        for name in [&r, &p, &s, &o] {
            post(&api, "/api/v1/identities", &root, json!({ "name": name, "kind": "human" }));
        }
        put(&api, &format!("/api/v1/identities/{r}/roles/requester"), &root, None);
        put(&api, &format!("/api/v1/delegations/{p}/{r}"), &root, Some(json!({ "for": "1d" })));
        let requester =
            post(&api, "/api/v1/tokens", &root, json!({ "identity": r, "label": "matrix" }))["token"]
                .as_str()
                .unwrap()
                .to_owned();
        let mut body = json!({ "identity": s, "justification": "matrix", "on_behalf_of": p });
        match case.kind {
            Kind::Grant => body["grant"] = json!(["access:eng-read"]),
            Kind::Revocation => body["revoke"] = json!(["access:eng-read"]),
            Kind::Leaver => {
                body["revoke"] = json!(["access:eng-read"]);
                body["event"] = json!("leaver");
            }
        }
        let id = post(&api, "/api/v1/changes", &requester, body)["id"].as_str().unwrap().to_owned();
        if case.act == Act::Execute {
            post(&api, &format!("/api/v1/changes/{id}/approve"), &approver, json!({}));
        }
        // The actor holds exactly the case's roles.
        let actor = match case.rel {
            Rel::Requester => &r,
            Rel::Principal => &p,
            Rel::Subject => &s,
            Rel::Other => &o,
        };
        let own = match case.act {
            Act::Approve | Act::Reject => "approver",
            Act::Cancel => "requester",
            Act::Execute => "executor",
        };
        let wanted: &[&str] = match case.roles {
            Roles::Own => &[own],
            Roles::Admin => &["admin"],
            Roles::None => &[],
        };
        if case.rel == Rel::Requester && !wanted.contains(&"requester") {
            delete(&api, &format!("/api/v1/identities/{r}/roles/requester"), &root);
        }
        for role in wanted.iter().filter(|role| !(case.rel == Rel::Requester && **role == "requester")) {
            put(&api, &format!("/api/v1/identities/{actor}/roles/{role}"), &root, None);
        }
        let token =
            post(&api, "/api/v1/tokens", &root, json!({ "identity": actor, "label": "matrix" }))["token"]
                .as_str()
                .unwrap()
                .to_owned();

        let (path, body) = match case.act {
            Act::Approve => ("approve", json!({})),
            Act::Reject => ("reject", json!({ "reason": "no" })),
            Act::Cancel => ("cancel", json!({ "reason": "no longer needed" })),
            Act::Execute => ("execute", json!({})),
        };
        let before = w.fingerprint_except(&["leases", "checkpoints"]);
        let reply = api.post(&format!("/api/v1/changes/{id}/{path}"), &token, body);
        let got = (reply.status, if reply.status == 200 { "" } else { reply.code() });
        let want = expected(case.act, case.rel, case.roles, case.kind);
        if got != want {
            failures.push(format!(
                "{:?} by {:?} with {:?} roles on a {:?}: got {got:?}, want {want:?}: {}",
                case.act, case.rel, case.roles, case.kind, reply.text
            ));
        } else if got.0 != 200 && w.fingerprint_except(&["leases", "checkpoints"]) != before {
            failures.push(format!(
                "{:?} by {:?} on a {:?}: the refusal changed something",
                case.act, case.rel, case.kind
            ));
        }
    }
    assert_eq!(cases.len(), 144);
    assert!(failures.is_empty(), "{} of {} cases:\n{}", failures.len(), cases.len(), failures.join("\n"));
}
