//! Inbound webhooks through a real `writ serve` on a real git target: Jira, ServiceNow, GitHub,
//! GitLab and Standard Webhooks deliveries (in the products' documented payload shapes, signed
//! as each product signs) sent twice, out of order and late yield one change each with every
//! delivery recorded; a bad signature, a stale timestamp or a reused delivery id is refused,
//! recorded as a security event, and changes nothing else.

use std::os::unix::fs::PermissionsExt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};
use sha2::Digest;

use crate::api::Http;
use crate::harness::World;
use crate::server::Reply;

const HUB_SECRET: &str = "hub-secret-for-github-and-jira";
const GITLAB_TOKEN: &str = "gitlab-token-shared-secret";
const NOW_BASIC: &str = "writ-hook:servicenow basic password";
const WHSEC_RAW: [u8; 32] = [42; 32];
/// ServiceNow sys_user ids mapped to bob, dave and alice.
const BOB_NOW: &str = "46d44a23a9fe19810012d100cca80666";
const DAVE_NOW: &str = "9ee1b8a5a9fe198100a4a1d1c8c9b44a";
const ALICE_NOW: &str = "62826bf03710200044e0bfc8bcbe5df1";

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

fn iso(ms: i64) -> String {
    writ_core::time::Timestamp::from_millis(ms).to_rfc3339()
}

fn hub(body: &[u8]) -> String {
    format!("sha256={}", hex::encode(writ_intake::hmac_sha256(HUB_SECRET.as_bytes(), body)))
}

fn sha256(body: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(body))
}

/// Starts a server with five hooks; svc-hooks (owned by alice) requests on their behalf.
fn start() -> Http {
    start_with(World::new(), &[])
}

/// As [`start`], with extra configuration after some hooks' tables (for example
/// `[[hook.manifests]]` after the GitHub hook's): (hook name, TOML).
fn start_with(world: World, extras: &[(&str, &str)]) -> Http {
    start_serving(world, extras, &[])
}

/// As [`start_with`], with more `writ serve` flags.
fn start_serving(world: World, extras: &[(&str, &str)], flags: &[&str]) -> Http {
    world.writ(&["identity", "add", "svc-hooks", "--kind", "service_account", "--owner", "alice"]).ok();
    let dir = world.dir.path().to_owned();
    let secret = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, format!("{text}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let whsec = format!("whsec_{}", B64.encode(WHSEC_RAW));
    let files = [
        ("github", "github", secret("github.secret", HUB_SECRET)),
        ("jira", "jira", secret("jira.secret", HUB_SECRET)),
        ("gitlab", "gitlab", secret("gitlab.secret", GITLAB_TOKEN)),
        ("servicenow", "servicenow", secret("servicenow.secret", NOW_BASIC)),
        ("ops", "standard", secret("ops.secret", &whsec)),
    ];
    let mut config = String::new();
    for (name, kind, file) in files {
        config.push_str(&format!(
            "[[hook]]\nname = \"{name}\"\nkind = \"{kind}\"\nsecret_file = \"{file}\"\nrequester = \"svc-hooks\"\n\
             accounts = {{ \"5b10ac8d82e05b22cc7d4ef5\" = \"carol\", \"{BOB_NOW}\" = \"bob\", \"{DAVE_NOW}\" = \"dave\", \"{ALICE_NOW}\" = \"alice\", \"557058:bob\" = \"bob\", \"octocat\" = \"carol\", \"root\" = \"carol\" }}\n\n"
        ));
        if name == "servicenow" {
            // Its requesters are not all Writ users: their records open changes as the hook.
            config.push_str("unmapped_accounts = \"as_hook\"\n\n");
        }
        for (_, extra) in extras.iter().filter(|(hook, _)| *hook == name) {
            config.push_str(extra);
        }
    }
    let path = dir.join("serve.toml");
    std::fs::write(&path, config).unwrap();
    let mut args = vec!["--config", path.to_str().unwrap()];
    args.extend_from_slice(flags);
    Http::start_with(world, &args)
}

fn post(h: &Http, hook: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    let mut all = vec![("content-type", "application/json")];
    all.extend_from_slice(headers);
    h.api.send("POST", &format!("/hooks/{hook}"), None, &all, Some(body.to_vec()))
}

fn changes(h: &Http) -> Vec<String> {
    let list = h.api.get("/api/v1/changes", &h.root);
    list.expect(200)["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect()
}

fn change(h: &Http, id: &str) -> Value {
    h.api.get(&format!("/api/v1/changes/{id}"), &h.root).expect(200).clone()
}

/// The deliveries a change lists, as (source, id, late, sha256).
fn deliveries(change: &Value) -> Vec<(String, String, bool, String)> {
    change["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["source"].as_str().unwrap().to_owned(),
                d["id"].as_str().unwrap().to_owned(),
                d["late"].as_bool().unwrap(),
                d["sha256"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn last_event_types(h: &Http, n: usize) -> Vec<String> {
    let connection = rusqlite::Connection::open(&h.world.db).unwrap();
    let mut statement = connection.prepare("SELECT type FROM events ORDER BY idx DESC LIMIT ?1").unwrap();
    statement.query_map([n as i64], |r| r.get(0)).unwrap().collect::<Result<_, _>>().unwrap()
}

/// Everything but the ledger (which gains the security event), the counts of refused
/// deliveries and the server's own leases.
fn state(h: &Http) -> String {
    h.settle();
    h.world.fingerprint_except(&["leases", "events", "checkpoints", "intake_refusals"])
}

/// Every refused delivery the store accounts for, read in one snapshot: those recorded one by
/// one (`intake.refused`), those counted by `intake.refusals_counted` events, and those counted
/// in windows not yet closed beyond each window's first.
pub(crate) fn refusals_accounted(h: &Http) -> u64 {
    let mut connection = rusqlite::Connection::open(&h.world.db).unwrap();
    let snapshot = connection.transaction().unwrap();
    let single: i64 = snapshot
        .query_row("SELECT COUNT(*) FROM events WHERE type = 'intake.refused'", [], |r| r.get(0))
        .unwrap();
    let counted: u64 = snapshot
        .prepare("SELECT bytes FROM events WHERE type = 'intake.refusals_counted'")
        .unwrap()
        .query_map([], |r| r.get::<_, Vec<u8>>(0))
        .unwrap()
        .map(|bytes| {
            serde_json::from_slice::<Value>(&bytes.unwrap()).unwrap()["data"]["count"].as_u64().unwrap()
        })
        .sum();
    let open: i64 = snapshot
        .query_row("SELECT COALESCE(SUM(count - 1), 0) FROM intake_refusals", [], |r| r.get(0))
        .unwrap();
    u64::try_from(single + open).unwrap() + counted
}

/// Sends a refused delivery and checks: 401 (or `status`) with `code`, accounted for as a
/// security event (recorded on its own if it is the first of its hook and reason in the window,
/// else counted), and nothing else changed.
fn refused(h: &Http, hook: &str, headers: &[(&str, &str)], body: &[u8], status: u16, code: &str) {
    let before = state(h);
    let (events, accounted) = (last_event_types(h, 100_000).len(), refusals_accounted(h));
    post(h, hook, headers, body).refused(status, code);
    assert_eq!(state(h), before, "a refused delivery ({code}) changes nothing but the ledger");
    assert_eq!(refusals_accounted(h), accounted + 1, "{code} is accounted for, once");
    let after = last_event_types(h, 100_000);
    let new = &after[..after.len() - events];
    assert!(
        new.iter().all(|t| t == "intake.refused" || t == "intake.refusals_counted"),
        "only security events for {code}: {new:?}"
    );
}

fn jira_issue(event: &str, at: i64, status: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "timestamp": at,
        "webhookEvent": event,
        "issue_event_type_name": "issue_generic",
        "user": {"accountId": "5b10a2844c20165700ede21g"},
        "issue": {
            "id": "10002", "key": "ACC-7", "self": "https://acme.atlassian.net/rest/api/2/issue/10002",
            "fields": {
                "summary": "Deploy access for bob",
                "status": {"name": status},
                "issuetype": {"name": "Access"}, "project": {"key": "ACC"},
                "reporter": {"accountId": "5b10ac8d82e05b22cc7d4ef5"},
                "description": "Bob is on the release rota.\nWrit-Grant: bob access:deploy-prod for 8h\nWrit-Event: adhoc"
            }
        },
        "changelog": {"items": [{"field": "status", "fieldtype": "jira", "fromString": "Open", "toString": status}]}
    }))
    .unwrap()
}

#[test]
fn jira_deliveries_twice_out_of_order_and_late_make_one_change() {
    let h = start();
    let now = now_ms();
    let before = changes(&h).len();
    // "Approved" (newer) arrives before "created" (older).
    let updated = jira_issue("jira:issue_updated", now - 1_000, "Approved");
    let created = jira_issue("jira:issue_created", now - 60_000, "Open");
    let jira = |id: &str, body: &[u8]| {
        post(&h, "jira", &[("x-atlassian-webhook-identifier", id), ("x-hub-signature", &hub(body))], body)
    };
    let first = jira("wh-2", &updated);
    let first = first.expect(200).clone();
    assert_eq!(first["outcome"], "correlated", "{first}");
    let id = first["changes"][0].as_str().unwrap().to_owned();
    let late = jira("wh-1", &created);
    assert_eq!(late.expect(200)["outcome"], "late", "the older version is attached, not acted on");
    assert_eq!(late.body["changes"][0], id.as_str());
    // The same delivery again (a Jira retry): recorded as a duplicate, nothing else.
    let again = jira("wh-2", &updated);
    assert_eq!(
        (again.expect(200)["duplicate"].as_bool(), again.body["attempts"].as_u64()),
        (Some(true), Some(2))
    );
    assert_eq!(changes(&h).len(), before + 1, "one change for the ticket, whatever the order");

    let c = change(&h, &id);
    assert_eq!(c["requester"], "svc-hooks");
    assert_eq!(c["on_behalf_of"], "carol", "the reporter's account maps to carol");
    assert_eq!(c["state"], "pending_approval");
    assert!(c["references"].as_array().unwrap().contains(&json!({"kind": "ticket", "value": "ACC-7"})));
    assert_eq!(
        deliveries(&c),
        vec![
            ("jira".to_owned(), "wh-2".to_owned(), false, sha256(&updated)),
            ("jira".to_owned(), "wh-1".to_owned(), true, sha256(&created)),
        ],
        "every delivery is on the change with the digest of its exact bytes"
    );
    let shown = h.world.writ(&["change", "show", &id]).ok();
    assert!(
        shown.contains("ACC-7") && shown.contains(&sha256(&created)) && shown.contains("LATE"),
        "{shown}"
    );

    // Refused: a bad signature, a replay outside the tolerance, a missing delivery id.
    let forged = jira_issue("jira:issue_updated", now, "Cancelled");
    refused(
        &h,
        "jira",
        &[("x-atlassian-webhook-identifier", "wh-3"), ("x-hub-signature", &hub(&updated))],
        &forged,
        401,
        "hook.bad_signature",
    );
    let stale = jira_issue("jira:issue_updated", now - 2 * 3_600_000, "Cancelled");
    refused(
        &h,
        "jira",
        &[("x-atlassian-webhook-identifier", "wh-4"), ("x-hub-signature", &hub(&stale))],
        &stale,
        401,
        "hook.stale_timestamp",
    );
    let before_missing = state(&h);
    post(&h, "jira", &[("x-hub-signature", &hub(&forged))], &forged).refused(400, "hook.missing_delivery_id");
    assert_eq!(state(&h), before_missing);
    assert_eq!(change(&h, &id)["state"], "pending_approval", "no refused delivery cancelled anything");

    // The ticket is cancelled (a newer version): the change is cancelled by the source.
    let cancel = jira_issue("jira:issue_updated", now, "Cancelled");
    let reply = jira("wh-5", &cancel);
    assert_eq!(reply.expect(200)["outcome"], "correlated");
    assert_eq!(change(&h, &id)["state"], "cancelled");
    // An update after the change closed is attached and recorded; no second change.
    let after = jira_issue("jira:issue_updated", now + 1_000, "Approved");
    let reply = jira("wh-6", &after);
    assert_eq!(reply.expect(200)["changes"][0], id.as_str());
    assert!(reply.body["detail"].as_str().unwrap().contains("closed"), "{}", reply.body);
    assert_eq!(changes(&h).len(), before + 1);
    assert_eq!(deliveries(&change(&h, &id)).len(), 4);
    // The CLI reads the same records.
    let late = h.world.writ(&["intake", "list", "--outcome", "late", "--json"]).json();
    let ids: Vec<&str> =
        late["items"].as_array().unwrap().iter().map(|d| d["delivery"]["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["wh-1"]);
    let shown = h.world.writ(&["intake", "show", "jira", "wh-2"]).ok();
    assert!(shown.contains("jira/wh-2") && shown.contains("correlated") && shown.contains("(x2)"), "{shown}");
    assert_eq!(
        h.world.writ(&["intake", "list", "--outcome", "lost"]).code,
        2,
        "an unknown outcome is an input error"
    );
    h.world.writ(&["ledger", "verify"]).ok();
}

fn servicenow_record(state: &str, updated: &str, description: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({"record": {
        "sys_id": "c286d61347c80210d8e7b3c6d36d4357", "number": "CHG0030001", "state": state,
        "approval": "requested", "type": "normal", "short_description": "Finance read for dave",
        "description": description,
        "requested_by": {"link": "https://acme.service-now.com/api/now/table/sys_user/5137153cc611227c000bbd1bd8cd2005", "value": "5137153cc611227c000bbd1bd8cd2005"},
        "sys_updated_on": updated
    }}))
    .unwrap()
}

#[test]
fn servicenow_github_gitlab_and_standard_webhooks_correlate_and_refuse() {
    let h = start();
    let now = now_ms();
    let before = changes(&h).len();
    let basic = format!("Basic {}", B64.encode(NOW_BASIC));
    let fmt = |ms: i64| iso(ms).replace('T', " ").chars().take(19).collect::<String>();

    // ServiceNow: the record opens a change; a resend of the same version is a duplicate; a
    // cancellation (newer) cancels it; a late "new" (older) is attached and changes nothing.
    let block = "Writ-Grant: dave access:finance-read\nWrit-Justification: month-end close";
    let authorize = servicenow_record("-3", &fmt(now - 30_000), block);
    let sn = |body: &[u8]| post(&h, "servicenow", &[("authorization", &basic)], body);
    let opened = sn(&authorize).expect(200).clone();
    let id = opened["changes"][0].as_str().unwrap().to_owned();
    assert_eq!(sn(&authorize).expect(200)["duplicate"], true);
    assert_eq!(sn(&servicenow_record("4", &fmt(now - 10_000), block)).expect(200)["outcome"], "correlated");
    assert_eq!(sn(&servicenow_record("-5", &fmt(now - 60_000), block)).expect(200)["outcome"], "late");
    let c = change(&h, &id);
    assert_eq!(
        (c["state"].as_str(), c["justification"].as_str()),
        (Some("cancelled"), Some("month-end close"))
    );
    assert_eq!(deliveries(&c).len(), 3);
    refused(
        &h,
        "servicenow",
        &[("authorization", &format!("Basic {}", B64.encode("writ-hook:guess")))],
        &authorize,
        401,
        "hook.bad_signature",
    );

    // GitHub: an open pull request asking for access waits in the queue; merging it opens the
    // change and attaches the queued delivery; a push whose commit names the change is
    // execution telemetry on it.
    let pr = |action: &str, merged: bool, at: i64| {
        serde_json::to_vec(&json!({
            "action": action, "number": 7,
            "pull_request": {"number": 7, "title": "Deploy role for svc-ci", "user": {"login": "octocat"},
                "body": "Needed by the release job.\r\nWrit-Grant: svc-ci access:deploy-prod\r\nWrit-Event: deploy",
                "merged": merged, "merge_commit_sha": "e5bd3914e2e596debea16f433f57875b5b90bcd6",
                "updated_at": iso(at), "state": if merged { "closed" } else { "open" }},
            "repository": {"full_name": "acme/infra"}, "sender": {"login": "octocat"}
        }))
        .unwrap()
    };
    let gh = |event: &str, delivery: &str, body: &[u8]| {
        post(
            &h,
            "github",
            &[
                ("x-github-event", event),
                ("x-github-delivery", delivery),
                ("x-hub-signature-256", &hub(body)),
            ],
            body,
        )
    };
    let opened_pr = gh("pull_request", "gh-1", &pr("opened", false, now - 50_000));
    assert_eq!(opened_pr.expect(200)["outcome"], "uncorrelated", "{}", opened_pr.body);
    let queue = h.api.get("/api/v1/intake?outcome=uncorrelated", &h.root);
    assert!(
        queue.expect(200)["items"].as_array().unwrap().iter().any(|d| d["delivery"]["id"] == "gh-1"),
        "visible in the queue"
    );
    let merged = gh("pull_request", "gh-2", &pr("closed", true, now - 40_000));
    let pr_change = merged.expect(200)["changes"][0].as_str().unwrap().to_owned();
    let attached = h.api.get("/api/v1/intake/github/gh-1", &h.root);
    // It joined its change, as the older version it is.
    assert_eq!(attached.expect(200)["outcome"], "late", "{}", attached.body);
    assert_eq!(attached.body["changes"], json!([pr_change]));
    let c = change(&h, &pr_change);
    assert_eq!(c["event"], "deploy");
    let refs = c["references"].as_array().unwrap();
    assert!(refs.contains(&json!({"kind": "pull_request", "value": "acme/infra#7"})), "{c}");
    assert!(refs.contains(&json!({"kind": "commit", "value": "e5bd3914e2e596debea16f433f57875b5b90bcd6"})));
    let push = serde_json::to_vec(&json!({
        "ref": "refs/heads/main", "after": "9fceb02d0ae598e95dc970b74767f19372d61af8",
        "repository": {"full_name": "acme/infra", "pushed_at": now / 1000},
        "pusher": {"name": "octocat"},
        "commits": [
            {"id": "9fceb02d0ae598e95dc970b74767f19372d61af8", "message": format!("Apply deploy role\n\nWrit-Change: {pr_change}\n")},
            {"id": "1111111111111111111111111111111111111111", "message": "Writ-Change: CHG-7ZZZZZZZZZZZZZZZZZZZZZZZZZ"}
        ]
    }))
    .unwrap();
    let pushed = gh("push", "gh-3", &push);
    assert_eq!(pushed.expect(200)["changes"], json!([pr_change]), "{}", pushed.body);
    assert!(
        pushed.body["detail"].as_str().unwrap().contains("does not exist"),
        "the unknown change is named: {}",
        pushed.body
    );
    let c = change(&h, &pr_change);
    assert_eq!(deliveries(&c).iter().map(|d| d.1.as_str()).collect::<Vec<_>>(), ["gh-2", "gh-1", "gh-3"]);
    assert!(
        c["references"]
            .as_array()
            .unwrap()
            .contains(&json!({"kind": "commit", "value": "9fceb02d0ae598e95dc970b74767f19372d61af8"}))
    );
    refused(
        &h,
        "github",
        &[("x-github-event", "push"), ("x-github-delivery", "gh-4"), ("x-hub-signature-256", &hub(b"{}"))],
        &push,
        401,
        "hook.bad_signature",
    );
    let old_push = String::from_utf8(push.clone())
        .unwrap()
        .replace(&format!("\"pushed_at\":{}", now / 1000), &format!("\"pushed_at\":{}", now / 1000 - 7200));
    refused(
        &h,
        "github",
        &[
            ("x-github-event", "push"),
            ("x-github-delivery", "gh-5"),
            ("x-hub-signature-256", &hub(old_push.as_bytes())),
        ],
        old_push.as_bytes(),
        401,
        "hook.stale_timestamp",
    );

    // GitLab: a merged merge request with the classic token.
    let mr = serde_json::to_vec(&json!({
        "object_kind": "merge_request", "event_type": "merge_request",
        "user": {"username": "root"}, "project": {"path_with_namespace": "acme/platform"},
        "object_attributes": {"iid": 12, "title": "Read access for bob", "action": "merge", "state": "merged",
            "description": "Writ-Grant: bob access:eng-read", "updated_at": iso(now - 5_000),
            "merge_commit_sha": "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c"}
    }))
    .unwrap();
    let gl = |token: &str, key: &str| {
        post(
            &h,
            "gitlab",
            &[("x-gitlab-event", "Merge Request Hook"), ("x-gitlab-token", token), ("idempotency-key", key)],
            &mr,
        )
    };
    let gl_change = gl(GITLAB_TOKEN, "gl-1").expect(200)["changes"][0].as_str().unwrap().to_owned();
    assert_eq!(gl(GITLAB_TOKEN, "gl-1").expect(200)["duplicate"], true);
    refused(
        &h,
        "gitlab",
        &[
            ("x-gitlab-event", "Merge Request Hook"),
            ("x-gitlab-token", "gitlab-token-guess"),
            ("idempotency-key", "gl-2"),
        ],
        &mr,
        401,
        "hook.bad_signature",
    );

    // Standard Webhooks: signed id and timestamp; the same id with other bytes is refused.
    let seconds = now / 1000;
    let event = |text: &str| {
        serde_json::to_vec(
            &json!({"type": "access.requested", "object": "app-42", "version": iso(now), "text": text}),
        )
        .unwrap()
    };
    let signed = |id: &str, at: i64, body: &[u8]| {
        let signature = writ_intake::standard_signature(&WHSEC_RAW, id, at, body);
        post(
            &h,
            "ops",
            &[("webhook-id", id), ("webhook-timestamp", &at.to_string()), ("webhook-signature", &signature)],
            body,
        )
    };
    let std_body = event("Writ-Grant: carol access:eng-read for 2h");
    let std_change =
        signed("msg_1", seconds, &std_body).expect(200)["changes"][0].as_str().unwrap().to_owned();
    assert_eq!(
        signed("msg_1", seconds + 1, &std_body).expect(200)["duplicate"],
        true,
        "a retry is a new attempt of the same id"
    );
    let other = event("Writ-Grant: carol access:deploy-prod");
    let before_reuse = state(&h);
    signed("msg_1", seconds, &other).refused(409, "hook.delivery_id_reused");
    assert_eq!(state(&h), before_reuse);
    assert_eq!(last_event_types(&h, 1), ["intake.refused"]);
    let old = seconds - 600;
    let sig = writ_intake::standard_signature(&WHSEC_RAW, "msg_2", old, &std_body);
    refused(
        &h,
        "ops",
        &[("webhook-id", "msg_2"), ("webhook-timestamp", &old.to_string()), ("webhook-signature", &sig)],
        &std_body,
        401,
        "hook.stale_timestamp",
    );
    post(&h, "nope", &[], b"{}").refused(404, "hook.unknown");
    // An envelope that names no object, replayed with the same bytes under a new id: the
    // first one's duplicate, never a second change.
    let loose = serde_json::to_vec(
        &json!({"type": "access.requested", "text": "Writ-Grant: carol access:finance-read"}),
    )
    .unwrap();
    let loose_change =
        signed("msg_3", seconds, &loose).expect(200)["changes"][0].as_str().unwrap().to_owned();
    let replayed = signed("msg_4", seconds + 2, &loose);
    let replayed = replayed.expect(200).clone();
    assert_eq!(
        (replayed["duplicate"].as_bool(), replayed["delivery"]["id"].as_str()),
        (Some(true), Some("msg_3")),
        "{replayed}"
    );
    assert_eq!(replayed["changes"][0], loose_change.as_str());

    let all = changes(&h);
    assert_eq!(all.len(), before + 5, "one change per ticket, pull request, merge request and event");
    for id in [&id, &pr_change, &gl_change, &std_change, &loose_change] {
        assert!(all.contains(id));
    }
    let listed = h.api.get("/api/v1/intake?limit=1000", &h.root).expect(200).clone();
    let mut recorded: Vec<String> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            format!("{}/{}", d["delivery"]["source"].as_str().unwrap(), d["delivery"]["id"].as_str().unwrap())
        })
        .collect();
    recorded.sort();
    assert_eq!(recorded.len(), 9, "every accepted delivery is recorded once, refused ones never: {listed}");
    assert!(recorded.iter().filter(|r| r.starts_with("servicenow/")).count() == 3);
    assert!(
        ["github/gh-1", "github/gh-2", "github/gh-3", "gitlab/gl-1", "ops/msg_1"]
            .iter()
            .all(|d| recorded.contains(&d.to_string()))
    );
    h.api.get("/api/v1/intake", &h.alice).refused(403, "auth.role_required");
    h.world.writ(&["ledger", "verify"]).ok();
}

/// Writes `files` (path → content; `None` deletes) into the work tree at `dir` on `branch` and
/// commits; the new commit id.
fn commit(dir: &std::path::Path, branch: &str, files: &[(&str, Option<&str>)], message: &str) -> String {
    use crate::harness::git;
    if git_head(dir, branch).is_some() {
        git(dir, &["checkout", "-q", branch]);
    } else {
        git(dir, &["checkout", "-q", "-b", branch]);
    }
    for (path, content) in files {
        let full = dir.join(path);
        match content {
            Some(text) => {
                std::fs::create_dir_all(full.parent().unwrap()).unwrap();
                std::fs::write(&full, text).unwrap();
                git(dir, &["add", path]);
            }
            None => {
                git(dir, &["rm", "-q", path]);
            }
        }
    }
    git(
        dir,
        &[
            "-c",
            "user.name=dev",
            "-c",
            "user.email=dev@example.com",
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            message,
        ],
    );
    git(dir, &["rev-parse", "HEAD"])
}

/// A change's operations as `action identity target:entitlement`, sorted.
fn operations(change: &Value) -> Vec<String> {
    let mut ops: Vec<String> = change["operations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            let field = |k: &str| o[k].as_str().unwrap().to_owned();
            format!("{} {} {}:{}", field("action"), field("identity"), field("target"), field("entitlement"))
        })
        .collect();
    ops.sort();
    ops
}

const PAYMENTS: &str = ".writ/apps/payments.toml";

#[test]
fn application_manifests_deploy_and_decommission_from_the_repository() {
    use crate::scim::{carry_out, held, set};
    let world = World::new();
    let app = world.dir.path().join("payments-src");
    std::fs::create_dir_all(&app).unwrap();
    crate::harness::git(&app, &["init", "-q", "-b", "main"]);
    let root = commit(&app, "main", &[("README.md", Some("payments\n"))], "Start");
    let mirror = |name: &str| world.dir.path().join(name).to_str().unwrap().to_owned();
    let extra = format!(
        "[[hook.manifests]]\nrepository = \"acme/payments\"\nremote = \"{src}\"\nmirror = \"{m1}\"\n\n\
         [[hook.manifests]]\nrepository = \"acme/sandbox\"\nremote = \"{src}\"\nmirror = \"{m2}\"\nbranch = \"sandbox\"\n\n",
        src = app.to_str().unwrap(),
        m1 = mirror("mirror-payments.git"),
        m2 = mirror("mirror-sandbox.git"),
    );
    let h = start_with(world, &[("github", &extra)]);
    let now = now_ms();
    let gh = |event: &str, delivery: &str, body: &Value| {
        let body = serde_json::to_vec(body).unwrap();
        let headers = [
            ("x-github-event", event),
            ("x-github-delivery", delivery),
            ("x-hub-signature-256", &hub(&body)),
        ];
        post(&h, "github", &headers, &body)
    };
    let push = |repo: &str, branch: &str, before: &str, after: &str| {
        json!({"ref": format!("refs/heads/{branch}"), "before": before, "after": after,
            "repository": {"full_name": repo, "pushed_at": now / 1000}, "pusher": {"name": "octocat"},
            "commits": [{"id": after, "message": "Deploy"}]})
    };
    let manifest = |grants: &str, extra: &str| {
        format!(
            "app = \"payments\"\nowner = \"alice\"\n\n[[identity]]\nname = \"svc-payments\"\ngrants = [{grants}]\n{extra}"
        )
    };

    // Deploy: the merged pull request opens the change its manifest asks for, registering the
    // new service account (owned by alice, holding nothing yet).
    let v1 =
        commit(&app, "main", &[(PAYMENTS, Some(&manifest("\"access:deploy-prod\"", "")))], "Add payments");
    let pr = json!({
        "action": "closed", "number": 9,
        "pull_request": {"number": 9, "title": "Ship payments", "user": {"login": "octocat"}, "body": "",
            "merged": true, "merge_commit_sha": v1, "base": {"ref": "main"}, "updated_at": iso(now - 20_000)},
        "repository": {"full_name": "acme/payments"}
    });
    let before = changes(&h).len();
    let merged = gh("pull_request", "m-1", &pr);
    assert_eq!(merged.expect(200)["outcome"], "correlated", "{}", merged.body);
    let deploy = merged.body["changes"][0].as_str().unwrap().to_owned();
    let c = change(&h, &deploy);
    assert_eq!(c["event"], "deploy");
    assert_eq!(operations(&c), ["grant svc-payments access:deploy-prod"]);
    let refs = c["references"].as_array().unwrap();
    assert!(refs.contains(&json!({"kind": "commit", "value": v1})), "{c}");
    assert!(refs.contains(&json!({"kind": "record", "value": format!("manifest:acme/payments/{PAYMENTS}")})));
    let svc = h.api.get("/api/v1/identities/svc-payments", &h.root).expect(200).clone();
    assert_eq!((svc["kind"].as_str(), svc["owner"].as_str()), (Some("service_account"), Some("alice")));
    assert!(held(&h, "svc-payments").is_empty(), "registered, holding nothing before approval");
    // The push of the same merge commit, and the pull request delivered again, join it.
    let pushed = gh("push", "p-1", &push("acme/payments", "main", &root, &v1));
    assert_eq!(pushed.expect(200)["changes"], json!([deploy]), "{}", pushed.body);
    assert_eq!(gh("pull_request", "m-1", &pr).expect(200)["duplicate"], true);
    assert_eq!(changes(&h).len(), before + 1, "one change for the merge and its push");
    assert_eq!(deliveries(&change(&h, &deploy)).len(), 2);
    carry_out(&h, &deploy);
    assert_eq!(held(&h, "svc-payments"), set(&["deploy-prod"]));

    // A new version moves the service account and adds an API key: one change, and the
    // manifest removes only what it gave (alice's grant of eng-read to svc-ci stays).
    let v2 = commit(
        &app,
        "main",
        &[(
            PAYMENTS,
            Some(&manifest(
                "\"access:eng-read\"",
                "\n[[identity]]\nname = \"payments-key\"\nkind = \"api_key\"\ngrants = [\"access:finance-read\"]\n",
            )),
        )],
        "Payments v2",
    );
    let moved = gh("push", "p-2", &push("acme/payments", "main", &v1, &v2));
    let moved_id = moved.expect(200)["changes"][0].as_str().unwrap().to_owned();
    assert_eq!(
        operations(&change(&h, &moved_id)),
        [
            "grant payments-key access:finance-read",
            "grant svc-payments access:eng-read",
            "revoke svc-payments access:deploy-prod"
        ]
    );
    carry_out(&h, &moved_id);
    assert_eq!(held(&h, "svc-payments"), set(&["eng-read"]));
    assert_eq!(held(&h, "payments-key"), set(&["finance-read"]));

    // A push to another branch, or of a commit that changes no manifest, asks for nothing.
    let feature =
        commit(&app, "feature", &[(PAYMENTS, Some(&manifest("\"access:finance-read\"", "")))], "Try");
    let other = gh("push", "p-3", &push("acme/payments", "feature", &v2, &feature));
    assert_eq!(
        (other.expect(200)["outcome"].as_str(), other.body["changes"].clone()),
        (Some("ignored"), json!([]))
    );
    let docs = commit(&app, "main", &[("README.md", Some("payments, documented\n"))], "Docs");
    let quiet = gh("push", "p-4", &push("acme/payments", "main", &v2, &docs));
    assert_eq!(quiet.expect(200)["outcome"], "ignored", "{}", quiet.body);

    // Hostile manifests are refused with the reason and change nothing but the delivery record:
    // taking over alice's svc-ci for carol, naming a person, an unreadable file.
    let hostile: [(&str, &str, &str); 3] = [
        (
            "app = \"grab\"\nowner = \"carol\"\n[[identity]]\nname = \"svc-ci\"\ngrants = [\"access:deploy-prod\"]\n",
            "p-5",
            "owned by alice",
        ),
        (
            "app = \"grab\"\nowner = \"carol\"\n[[identity]]\nname = \"new-bot\"\ngrants = [\"access:deploy-prod\"]\n[[identity]]\nname = \"bob\"\n",
            "p-6",
            "bob is a person",
        ),
        ("app = \"grab\"\nowner = \"carol\"\nsecret = \"x\"\n", "p-7", "unknown field"),
    ];
    // The sandbox branch starts at main's head; only grab.toml differs on it.
    let mut previous = docs.clone();
    for (text, delivery, reason) in hostile {
        let sha = commit(&app, "sandbox", &[(".writ/apps/grab.toml", Some(text))], "Grab");
        let before = h.world.fingerprint_except(&["leases", "events", "checkpoints", "deliveries"]);
        let reply = gh("push", delivery, &push("acme/sandbox", "sandbox", &previous, &sha));
        assert_eq!(reply.expect(200)["outcome"], "refused", "{}", reply.body);
        assert!(reply.body["detail"].as_str().unwrap().contains(reason), "{}", reply.body);
        assert_eq!(h.world.fingerprint_except(&["leases", "events", "checkpoints", "deliveries"]), before);
        previous = sha;
    }
    // A commit the repository does not have: 503, nothing recorded at all, so it can be resent.
    let before = state(&h);
    let events = last_event_types(&h, 100_000).len();
    let missing = push("acme/payments", "main", &docs, "1234567890abcdef1234567890abcdef12345678");
    gh("push", "p-8", &missing).refused(503, "hook.manifest_unavailable");
    assert_eq!((state(&h), last_event_types(&h, 100_000).len()), (before, events));
    h.api.get("/api/v1/intake/github/p-8", &h.root).refused(404, "not_found");

    // Decommission: deleting the manifest revokes everything both identities hold and flags
    // them for their accounts to be removed.
    let gone = commit(&app, "main", &[(PAYMENTS, None)], "Retire payments");
    let retired = gh("push", "p-9", &push("acme/payments", "main", &docs, &gone));
    let retire_id = retired.expect(200)["changes"][0].as_str().unwrap().to_owned();
    let c = change(&h, &retire_id);
    assert_eq!(c["event"], "decommission");
    assert_eq!(
        operations(&c),
        ["revoke payments-key access:finance-read", "revoke svc-payments access:eng-read"]
    );
    let findings = h.api.get("/api/v1/findings?state=open", &h.root).expect(200).clone();
    let mut flagged: Vec<&str> = findings["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["kind"] == "nhi.app_decommissioned")
        .map(|f| f["subject"].as_str().unwrap())
        .collect();
    flagged.sort();
    assert_eq!(flagged, ["payments-key", "svc-payments"], "{findings}");
    // The access repository cannot be read during a reconciliation: its automation pauses, and
    // the approved decommission waits (refused, nothing recorded) until a person resumes it.
    h.api.post(&format!("/api/v1/changes/{retire_id}/approve"), &h.bob, json!({})).expect(200);
    let aside = h.world.dir.path().join("access-repo-aside");
    std::fs::rename(&h.world.repo, &aside).unwrap();
    let partial = h.world.writ(&["reconcile", "--target", "access", "--json"]);
    std::fs::rename(&aside, &h.world.repo).unwrap();
    assert_eq!(partial.code, 6, "{}", partial.stderr);
    let before = h.world.fingerprint_except(&["leases", "idempotency"]);
    let execute = format!("/api/v1/changes/{retire_id}/execute");
    let held_back = h.api.post(&execute, &h.executor, json!({}));
    held_back.refused(409, "automation.paused");
    assert!(
        held_back.body["error"]["message"].as_str().unwrap().contains("target:access"),
        "{}",
        held_back.body
    );
    assert_eq!(
        h.world.fingerprint_except(&["leases", "idempotency"]),
        before,
        "a held execution changed something"
    );
    h.api
        .post(
            "/api/v1/automation/target:access/resume",
            &h.root,
            json!({ "justification": "the disk was remounted" }),
        )
        .expect(200);
    h.api.post(&execute, &h.executor, json!({})).expect(200);
    let verified = h.api.post(&format!("/api/v1/changes/{retire_id}/verify"), &h.executor, json!({}));
    assert_eq!(verified.expect(200)["state"], "verified");
    assert!(held(&h, "svc-payments").is_empty() && held(&h, "payments-key").is_empty());
    h.world.writ(&["ledger", "verify"]).ok();
}

fn git_head(dir: &std::path::Path, branch: &str) -> Option<String> {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["rev-parse", "--verify", "--quiet", branch])
        .output()
        .unwrap();
    out.status.success().then(|| String::from_utf8(out.stdout).unwrap().trim().to_owned())
}

/// A ServiceNow `sysapproval_approver` record: `approver`'s decision on the change request.
fn servicenow_approval(sys_id: &str, approver: &str, state: &str, updated: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({"record": {
        "sys_id": sys_id, "state": state, "source_table": "change_request",
        "sysapproval": {"link": "https://acme.service-now.com/api/now/table/task/c286d61347c80210d8e7b3c6d36d4357", "value": "c286d61347c80210d8e7b3c6d36d4357"},
        "approver": {"link": format!("https://acme.service-now.com/api/now/table/sys_user/{approver}"), "value": approver},
        "sys_updated_on": updated
    }}))
    .unwrap()
}

#[test]
fn ticket_approvals_count_only_where_policy_allows_and_keep_separation_of_duties() {
    let world = World::new();
    let dir = world.dir.path().join("ticket-policy");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("access.cedar"), include_str!("../../../writ-policy/pack/access.cedar")).unwrap();
    let rules = format!(
        "{}\n[[ticket_approval]]\nid = \"itsm.servicenow-low\"\ndescription = \"ServiceNow CAB approvals count for low-risk changes\"\nsource = \"servicenow\"\ntiers = [\"low\"]\n",
        include_str!("../../../writ-policy/pack/rules.toml")
    );
    std::fs::write(dir.join("rules.toml"), rules).unwrap();
    world.writ(&["policy", "reload", "--dir", dir.to_str().unwrap()]).ok();
    let h = start_with(world, &[]);
    let now = now_ms();
    let basic = format!("Basic {}", B64.encode(NOW_BASIC));
    let fmt = |ms: i64| iso(ms).replace('T', " ").chars().take(19).collect::<String>();
    let sn = |body: &[u8]| post(&h, "servicenow", &[("authorization", &basic)], body);

    // An approval that arrives before its ticket is kept in the queue, not dropped; when the
    // ticket opens its change it is attached as a record, and not counted.
    let early =
        servicenow_approval("a0000000000000000000000000000000", BOB_NOW, "approved", &fmt(now - 70_000));
    let early = sn(&early);
    assert_eq!(early.expect(200)["outcome"], "uncorrelated", "{}", early.body);
    let block = "Writ-Grant: dave access:finance-read\nWrit-Justification: month-end close";
    let opened = sn(&servicenow_record("-3", &fmt(now - 60_000), block)).expect(200).clone();
    let id = opened["changes"][0].as_str().unwrap().to_owned();
    assert_eq!(change(&h, &id)["state"], "pending_approval");
    let queued = format!("/api/v1/intake/servicenow/{}", early.body["delivery"]["id"].as_str().unwrap());
    assert_eq!(h.api.get(&queued, &h.root).expect(200)["changes"], json!([id]));
    let approvals = |h: &Http| -> Vec<String> {
        change(h, &id)["approvals"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["approver"].as_str().unwrap().to_owned())
            .collect()
    };

    // Not counted, each with its reason, the change still waiting: the subject approving their
    // own access, a person without the approver role, an account mapped to nobody, a rejection.
    let not_counted: [(&str, &str, &str, &str); 4] = [
        ("a0000000000000000000000000000001", DAVE_NOW, "approved", "dave"),
        ("a0000000000000000000000000000002", ALICE_NOW, "approved", "auth.role_required"),
        ("a0000000000000000000000000000003", "0123456789abcdef0123456789abcdef", "approved", "not mapped"),
        ("a0000000000000000000000000000004", BOB_NOW, "rejected", "sysapproval_approver.rejected"),
    ];
    for (n, (sys_id, approver, state, reason)) in not_counted.into_iter().enumerate() {
        let reply = sn(&servicenow_approval(sys_id, approver, state, &fmt(now - 50_000 + n as i64 * 1000)));
        assert_eq!(reply.expect(200)["changes"], json!([id]), "{}", reply.body);
        let said = format!("{} {}", reply.body["detail"], reply.body["delivery"]["event"]);
        assert!(said.contains(reason), "{reason}: {}", reply.body);
        assert_eq!(change(&h, &id)["state"], "pending_approval");
        assert!(approvals(&h).is_empty(), "{reason}");
    }

    // Bob's approval in ServiceNow counts, under the rule, with the delivery as its evidence; its
    // redelivery is a duplicate and adds nothing.
    let by_bob =
        servicenow_approval("a0000000000000000000000000000005", BOB_NOW, "approved", &fmt(now - 40_000));
    let reply = sn(&by_bob);
    assert!(reply.expect(200)["detail"].as_str().unwrap().contains("approved by bob"), "{}", reply.body);
    let c = change(&h, &id);
    assert_eq!((c["state"].as_str(), approvals(&h)), (Some("approved"), vec!["bob".to_owned()]));
    let event =
        c["events"].as_array().unwrap().iter().find(|e| e["type"] == "change.approved").unwrap().clone();
    assert_eq!(event["actor"], "bob");
    assert!(event["policy"]["rules"].as_array().unwrap().contains(&json!("itsm.servicenow-low")), "{event}");
    let context =
        event["evidence"].as_array().unwrap().iter().find(|e| e["label"] == "approval-context").unwrap();
    let blob = h.api.send(
        "GET",
        &format!("/api/v1/evidence/{}", context["sha256"].as_str().unwrap()),
        Some(&h.root),
        &[],
        None,
    );
    let blob: Value = serde_json::from_str(&blob.text).unwrap();
    assert_eq!(blob["via"]["source"], "servicenow");
    assert_eq!(blob["via"]["sha256"], sha256(&by_bob));
    assert_eq!(sn(&by_bob).expect(200)["duplicate"], true);
    assert_eq!(approvals(&h), ["bob"]);
    // The approval is a real one: the change is carried out on the target.
    h.api.post(&format!("/api/v1/changes/{id}/execute"), &h.executor, json!({})).expect(200);
    assert_eq!(
        h.api.post(&format!("/api/v1/changes/{id}/verify"), &h.executor, json!({})).expect(200)["state"],
        "verified"
    );

    // Jira has no [[ticket_approval]] rule: a Service Management approval that ended approved is
    // noted, and the change still needs an approval in Writ.
    let issue = serde_json::to_vec(&json!({
        "timestamp": now - 1_000, "webhookEvent": "jira:issue_updated",
        "issue": {"id": "10077", "key": "ACC-9", "fields": {
            "summary": "Deploy for bob", "status": {"name": "Approved"},
            "reporter": {"accountId": "5b10ac8d82e05b22cc7d4ef5"},
            "description": "Writ-Grant: dave access:eng-read",
            "customfield_10027": [{"id": "3", "name": "Change approval", "finalDecision": "approved",
                "approvers": [{"approver": {"accountId": "557058:bob"}, "approverDecision": "approved"}]}]
        }}
    }))
    .unwrap();
    let jira = post(
        &h,
        "jira",
        &[("x-hub-signature", &hub(&issue)), ("x-atlassian-webhook-identifier", "j-approved")],
        &issue,
    );
    let jira_change = jira.expect(200)["changes"][0].as_str().unwrap().to_owned();
    assert!(jira.body["detail"].as_str().unwrap().contains("no [[ticket_approval]] rule"), "{}", jira.body);
    assert_eq!(change(&h, &jira_change)["state"], "pending_approval");
    assert!(change(&h, &jira_change)["approvals"].as_array().unwrap().is_empty());
    h.world.writ(&["ledger", "verify"]).ok();
}

/// A request the ticket system below received: method, path, authorization header, body.
type Seen = (String, String, String, Value);

/// A stand-in for the ServiceNow Table API and the Jira REST API on a loopback port (neither
/// product can run here): it records each request and answers the next scripted status (200
/// when the script is spent).
fn ticket_system(script: Vec<u16>) -> (String, std::sync::Arc<std::sync::Mutex<Vec<Seen>>>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = std::sync::Arc::clone(&seen);
    std::thread::spawn(move || {
        let mut script = script.into_iter();
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let mut parts = line.split_whitespace();
            let (method, path) =
                (parts.next().unwrap_or("").to_owned(), parts.next().unwrap_or("").to_owned());
            let (mut length, mut authorization) = (0usize, String::new());
            loop {
                let mut header = String::new();
                reader.read_line(&mut header).unwrap();
                if header.trim().is_empty() {
                    break;
                }
                let (name, value) = header.split_once(':').unwrap();
                match name.trim().to_ascii_lowercase().as_str() {
                    "content-length" => length = value.trim().parse().unwrap(),
                    "authorization" => authorization = value.trim().to_owned(),
                    _ => {}
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            record.lock().unwrap().push((
                method,
                path,
                authorization,
                serde_json::from_slice(&body).unwrap(),
            ));
            let status = script.next().unwrap_or(200);
            let reply = format!(
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{{}}"
            );
            stream.write_all(reply.as_bytes()).unwrap();
        }
    });
    (url, seen)
}

#[test]
fn change_ids_are_written_back_to_servicenow_and_jira_and_failures_are_retried() {
    let (url, seen) = ticket_system(vec![503]);
    let world = World::new();
    let credentials = world.dir.path().join("writeback.secret");
    std::fs::write(&credentials, "writ-writeback:tk-8d1f0c2b9e\n").unwrap();
    std::fs::set_permissions(&credentials, std::fs::Permissions::from_mode(0o600)).unwrap();
    let writeback = |extra: &str| {
        format!(
            "[hook.writeback]\nurl = \"{url}\"\ncredentials_file = \"{}\"\n{extra}\n",
            credentials.display()
        )
    };
    let (servicenow, jira) = (writeback(""), writeback(""));
    let h = start_with(world, &[("servicenow", &servicenow), ("jira", &jira)]);
    let now = now_ms();
    let basic = format!("Basic {}", B64.encode(NOW_BASIC));
    let fmt = |ms: i64| iso(ms).replace('T', " ").chars().take(19).collect::<String>();
    let record = servicenow_record("-3", &fmt(now - 30_000), "Writ-Grant: dave access:finance-read");
    let sn_change = post(&h, "servicenow", &[("authorization", &basic)], &record).expect(200)["changes"][0]
        .as_str()
        .unwrap()
        .to_owned();

    // The first attempt at ServiceNow meets a 503 and is retried; then each ticket holds its ID.
    let written = |h: &Http| -> Vec<(String, Option<i64>, i64, Option<String>)> {
        let connection = rusqlite::Connection::open(&h.world.db).unwrap();
        let mut statement = connection
            .prepare("SELECT source, written_ms, writeback_attempts, writeback_error FROM intake_objects ORDER BY source")
            .unwrap();
        statement
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    let all_written = |h: &Http| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while written(h).iter().any(|w| w.1.is_none()) {
            assert!(std::time::Instant::now() < deadline, "not written back: {:?}", written(h));
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    };
    all_written(&h);
    // Then Jira, once ServiceNow's ticket holds its ID (so the scripted 503 was ServiceNow's).
    let issue = jira_issue("jira:issue_created", now - 20_000, "Open");
    let headers = [("x-hub-signature", hub(&issue)), ("x-atlassian-webhook-identifier", "wb-1".to_owned())];
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let jira_change =
        post(&h, "jira", &headers, &issue).expect(200)["changes"][0].as_str().unwrap().to_owned();
    all_written(&h);
    let rows = written(&h);
    assert_eq!(rows.iter().map(|w| w.0.as_str()).collect::<Vec<_>>(), ["jira", "servicenow"]);
    assert!(rows[1].2 >= 2, "the failed attempt is counted: {rows:?}");
    assert!(rows.iter().all(|w| w.3.is_none()), "the error is cleared once written: {rows:?}");
    let seen = seen.lock().unwrap().clone();
    let auth = format!("Basic {}", B64.encode("writ-writeback:tk-8d1f0c2b9e"));
    let patch = (
        "PATCH".to_owned(),
        "/api/now/table/change_request/c286d61347c80210d8e7b3c6d36d4357".to_owned(),
        auth.clone(),
        json!({"u_writ_change": sn_change}),
    );
    let property = (
        "PUT".to_owned(),
        "/rest/api/3/issue/10002/properties/writ".to_owned(),
        auth,
        json!({"change": jira_change}),
    );
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert_eq!(seen.iter().filter(|s| **s == patch).count(), 2, "{seen:?}");
    assert!(seen.contains(&property), "{seen:?}");
    // The credentials are in no table.
    let bytes = std::fs::read(&h.world.db).unwrap();
    assert!(!bytes.windows(13).any(|w| w == b"tk-8d1f0c2b9e"));
}

/// A signed delivery may call off only a change its own object opened: a Jira issue that names
/// someone else's change (`Writ-Change: CHG-…`) and says "Cancelled" is recorded on it and
/// cancels nothing; the issue that opened a change still cancels it.
#[test]
fn a_delivery_cancels_only_what_its_own_object_opened() {
    let h = start();
    let now = now_ms();
    let theirs = h.world.request("dave", "access:eng-read");
    let issue = |key: &str, id: &str, status: &str, description: &str, at: i64| {
        serde_json::to_vec(&json!({
            "timestamp": at,
            "webhookEvent": "jira:issue_updated",
            "issue_event_type_name": "issue_generic",
            "user": {"accountId": "5b10a2844c20165700ede21g"},
            "issue": {
                "id": id, "key": key, "self": format!("https://acme.atlassian.net/rest/api/2/issue/{id}"),
                "fields": {
                    "summary": "access", "status": {"name": status},
                    "issuetype": {"name": "Access"}, "project": {"key": "ACC"},
                    "reporter": {"accountId": "5b10ac8d82e05b22cc7d4ef5"},
                    "description": description
                }
            },
            "changelog": {"items": [{"field": "status", "fieldtype": "jira", "fromString": "Open", "toString": status}]}
        }))
        .unwrap()
    };
    let jira = |delivery: &str, body: &[u8]| {
        post(
            &h,
            "jira",
            &[("x-atlassian-webhook-identifier", delivery), ("x-hub-signature", &hub(body))],
            body,
        )
    };
    let hostile = issue("ACC-99", "10099", "Cancelled", &format!("Writ-Change: {theirs}"), now);
    let reply = jira("wh-hostile", &hostile).expect(200).clone();
    assert_eq!(reply["changes"][0], theirs.as_str(), "{reply}");
    assert!(reply["detail"].as_str().unwrap().contains("not opened by this object"), "{reply}");
    assert_eq!(change(&h, &theirs)["state"], "pending_approval", "a foreign issue cancelled nothing");
    // The issue that opened its change may still call it off.
    let grant = "Writ-Grant: bob access:deploy-prod for 8h\nWrit-Event: adhoc";
    let opened = jira("wh-open", &issue("ACC-100", "10100", "Open", grant, now - 1_000)).expect(200).clone();
    let own = opened["changes"][0].as_str().unwrap().to_owned();
    jira("wh-close", &issue("ACC-100", "10100", "Cancelled", grant, now)).expect(200);
    assert_eq!(change(&h, &own)["state"], "cancelled");
}

#[test]
fn a_flood_of_bad_deliveries_adds_a_bounded_number_of_events_and_every_one_is_counted() {
    // No rate limit, to show the ledger bounds itself; windows of two seconds, to see them end.
    let h = start_serving(World::new(), &[], &["--rate-limit", "0", "--refusal-window", "2s"]);
    h.settle();
    let (events, accounted) = (last_event_types(&h, 1_000_000).len(), refusals_accounted(&h));
    let started = std::time::Instant::now();
    let sent: u64 = std::thread::scope(|scope| {
        let senders: Vec<_> = (0..4)
            .map(|thread| {
                let h = &h;
                scope.spawn(move || {
                    let mut sent = 0;
                    for n in 0..2_500 {
                        let body = format!("{{\"n\": {n}, \"thread\": {thread}}}");
                        let reply = post(
                            h,
                            "github",
                            &[("x-hub-signature-256", "sha256=00"), ("x-github-delivery", "d")],
                            body.as_bytes(),
                        );
                        assert_eq!(
                            (reply.status, reply.code()),
                            (401, "hook.bad_signature"),
                            "{}",
                            reply.body
                        );
                        sent += 1;
                    }
                    sent
                })
            })
            .collect();
        senders.into_iter().map(|s| s.join().unwrap()).sum()
    });
    let seconds = started.elapsed().as_secs();
    assert_eq!(sent, 10_000);
    // Every window's buckets close once the window has ended.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let open = || {
        let connection = rusqlite::Connection::open(&h.world.db).unwrap();
        connection.query_row("SELECT COUNT(*) FROM intake_refusals", [], |r| r.get::<_, i64>(0)).unwrap()
    };
    while open() > 0 {
        assert!(std::time::Instant::now() < deadline, "refusal windows never closed");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_eq!(refusals_accounted(&h), accounted + 10_000, "every refusal is accounted for");
    let added = last_event_types(&h, 1_000_000).len() - events;
    // At most two events (one refusal, one count) per two-second window the flood touched.
    let bound = usize::try_from(2 * (seconds / 2 + 2)).unwrap();
    eprintln!("10,000 refused deliveries in {seconds} s: {added} ledger events (bound {bound})");
    assert!(added <= bound, "{added} events for 10,000 refusals in {seconds} s (bound {bound})");
    let kinds = last_event_types(&h, added);
    assert!(
        kinds
            .iter()
            .all(|k| k == "intake.refused" || k == "intake.refusals_counted" || k.starts_with("ledger")),
        "{kinds:?}"
    );
    // The last count was written by the background pass, not by a request: it is covered
    // within the checkpoint interval, not before an answer.
    h.settle();
    let verify = h.api.get("/api/v1/ledger/verify", &h.root);
    assert_eq!(verify.expect(200)["ok"], true, "{}", verify.body);
}

#[test]
fn a_delivery_from_an_account_no_one_mapped_opens_nothing_unless_the_hook_says_so() {
    let h = start();
    let before = changes(&h).len();
    let body = String::from_utf8(jira_issue("jira:issue_updated", now_ms() - 1_000, "Approved"))
        .unwrap()
        .replace("5b10ac8d82e05b22cc7d4ef5", "5b10ffffffffffffffffffff");
    let reply = post(
        &h,
        "jira",
        &[("x-atlassian-webhook-identifier", "wh-u"), ("x-hub-signature", &hub(body.as_bytes()))],
        body.as_bytes(),
    );
    let reply = reply.expect(200).clone();
    assert_eq!(reply["outcome"], "refused", "{reply}");
    assert!(reply["detail"].as_str().unwrap().contains("is not mapped to a Writ identity"), "{reply}");
    assert_eq!(changes(&h).len(), before, "nothing opened for an account nobody mapped");
    // The same delivery is kept, with its reason, for a person to look at.
    let kept = h.api.get("/api/v1/intake/jira/wh-u", &h.root).expect(200).clone();
    assert_eq!(kept["outcome"], "refused");
}

#[test]
fn a_push_to_the_access_repository_naming_no_change_is_reported_at_once_and_once() {
    let world = World::new();
    let repo = world.repo.to_str().unwrap().to_owned();
    world
        .writ(&["target", "add", "acl", "--connector", "git", "--repo", &repo, "--repository", "acme/access"])
        .ok();
    let h = start_with(world, &[("github", "")]);
    let sha = |n: u8| format!("{:040x}", 0xabc000 + u32::from(n));
    let commit = |id: &str, message: &str, file: &str| json!({"id": id, "message": message, "author": {"name": "mallory"}, "added": [], "modified": [file], "removed": []});
    let push = |delivery: &str, repo: &str, commits: Value| {
        let body = serde_json::to_vec(&json!({
            "ref": "refs/heads/main", "before": sha(0), "after": sha(9),
            "repository": {"full_name": repo, "pushed_at": now_ms() / 1000}, "pusher": {"name": "mallory"},
            "commits": commits,
        }))
        .unwrap();
        let headers = [
            ("x-github-event", "push"),
            ("x-github-delivery", delivery),
            ("x-hub-signature-256", &hub(&body)),
        ];
        post(&h, "github", &headers, &body).expect(200).clone()
    };
    let telemetry = |h: &Http| -> Vec<String> {
        let found = h.api.get("/api/v1/findings", &h.root).expect(200).clone();
        let mut subjects: Vec<String> = found["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["kind"] == "change.unmatched_telemetry")
            .map(|f| f["subject"].as_str().unwrap().to_owned())
            .collect();
        subjects.sort();
        subjects
    };
    // A hand edit of the access file, a commit that names its change, and one touching another
    // file: only the first is telemetry. A push to another repository reports nothing.
    let stamped = format!("Grant\n\nWrit-Change: {}", "CHG-01JQ4Z8Y3V6T2N5R1M0K9H7G6F");
    push(
        "t-1",
        "acme/access",
        json!([
            commit(&sha(1), "add mallory by hand", "access.toml"),
            commit(&sha(2), &stamped, "access.toml"),
            commit(&sha(3), "docs", "README.md")
        ]),
    );
    push("t-2", "acme/other", json!([commit(&sha(4), "add mallory by hand", "access.toml")]));
    assert_eq!(telemetry(&h), [format!("acl {}", sha(1))]);
    let found = h.api.get("/api/v1/findings", &h.root).expect(200).clone();
    let finding = found["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["kind"] == "change.unmatched_telemetry")
        .unwrap();
    assert_eq!(finding["scope"], "target:acl");
    assert!(finding["detail"].as_str().unwrap().contains("mallory: add mallory by hand"), "{finding}");
    // Resolved with what it was, the same commit delivered again in another push stays resolved.
    let id = finding["id"].as_str().unwrap();
    h.world.writ(&["finding", "resolve", id, "--as", "carol", "--note", "a test fixture, reverted"]).ok();
    push("t-3", "acme/access", json!([commit(&sha(1), "add mallory by hand", "access.toml")]));
    let again = h.api.get(&format!("/api/v1/findings/{id}"), &h.root).expect(200).clone();
    assert_eq!(again["state"], "resolved", "{again}");
    h.world.writ(&["ledger", "verify"]).ok();
}

#[test]
fn a_tickets_planned_window_or_its_writ_window_line_becomes_the_changes_window() {
    let h = start();
    let now = now_ms();
    let basic = format!("Basic {}", B64.encode(NOW_BASIC));
    let fmt = |ms: i64| iso(ms).replace('T', " ").chars().take(19).collect::<String>();
    let record = |sys_id: &str, description: &str, planned: Option<(&str, &str)>| {
        let mut record = json!({
            "sys_id": sys_id, "number": "CHG0030002", "state": "-3", "type": "normal",
            "short_description": "Finance read for dave", "description": description,
            "sys_updated_on": fmt(now - 5_000),
        });
        if let Some((start, end)) = planned {
            record["start_date"] = json!(start);
            record["end_date"] = json!(end);
        }
        serde_json::to_vec(&json!({ "record": record })).unwrap()
    };
    let sn = |body: &[u8]| post(&h, "servicenow", &[("authorization", &basic)], body);
    let block = "Writ-Grant: dave access:finance-read\nWrit-Justification: month-end close";
    // The planned start and end (UTC, as the Table API gives them) are the window.
    let planned = sn(&record(
        "d286d61347c80210d8e7b3c6d36d4357",
        block,
        Some(("2031-03-04 21:00:00", "2031-03-05 01:00:00")),
    ))
    .expect(200)
    .clone();
    let id = planned["changes"][0].as_str().unwrap().to_owned();
    let window = change(&h, &id)["window"].clone();
    assert_eq!(
        (window["start"].as_str(), window["end"].as_str(), window["zone"].as_str()),
        (Some("2031-03-04T21:00:00.000Z"), Some("2031-03-05T01:00:00.000Z"), Some("UTC"))
    );
    // A Writ-Window line in the text comes first, in its own zone.
    let lined = format!("{block}\nWrit-Window: 2031-03-04T22:00 2031-03-05T00:30 Europe/Berlin");
    let opened = sn(&record(
        "e286d61347c80210d8e7b3c6d36d4357",
        &lined,
        Some(("2031-03-10 21:00:00", "2031-03-10 23:00:00")),
    ))
    .expect(200)
    .clone();
    let id = opened["changes"][0].as_str().unwrap().to_owned();
    let window = change(&h, &id)["window"].clone();
    assert_eq!(
        (window["start"].as_str(), window["zone"].as_str()),
        (Some("2031-03-04T21:00:00.000Z"), Some("Europe/Berlin"))
    );
    // A window that cannot be read opens nothing; the delivery is kept with the reason.
    let count = changes(&h).len();
    let bad = format!("{block}\nWrit-Window: 2031-03-04T22:00 2031-03-05T00:30 Atlantis/Capital");
    let refused = sn(&record("f286d61347c80210d8e7b3c6d36d4357", &bad, None)).expect(200).clone();
    assert!(refused["detail"].as_str().unwrap().contains("unknown time zone"), "{refused}");
    assert_eq!(changes(&h).len(), count, "no change was opened");
}

/// A Jira Cloud `comment_created` delivery: the comment and the issue it is on (the webhook
/// carries the issue's key fields, not its description).
fn jira_comment(issue: &str, comment: &str, account: &str, created_ms: i64, body: &str) -> Vec<u8> {
    let created = iso(created_ms).replace('Z', "+0000");
    serde_json::to_vec(&json!({
        "timestamp": created_ms,
        "webhookEvent": "comment_created",
        "comment": {
            "id": comment, "self": format!("https://acme.atlassian.net/rest/api/2/issue/{issue}/comment/{comment}"),
            "author": {"accountId": account, "displayName": "someone"},
            "body": body, "created": created, "updated": created,
        },
        "issue": {"id": issue, "key": format!("ACC-{issue}"), "fields": {"summary": "Access", "status": {"name": "Open"}}}
    }))
    .unwrap()
}

#[test]
fn a_jira_comment_delivered_twice_and_late_is_attached_once_to_the_right_change() {
    let h = start();
    let now = now_ms();
    let jira = |id: &str, body: &[u8]| {
        post(&h, "jira", &[("x-atlassian-webhook-identifier", id), ("x-hub-signature", &hub(body))], body)
    };
    // Two tickets, two changes.
    let ours =
        jira("wh-issue", &jira_issue("jira:issue_created", now - 120_000, "Open")).expect(200)["changes"][0]
            .as_str()
            .unwrap()
            .to_owned();
    let other_issue = String::from_utf8(jira_issue("jira:issue_created", now - 120_000, "Open"))
        .unwrap()
        .replace("\"10002\"", "\"10003\"")
        .replace("ACC-7", "ACC-8");
    let other =
        jira("wh-issue-2", other_issue.as_bytes()).expect(200)["changes"][0].as_str().unwrap().to_owned();
    assert_ne!(ours, other);

    let second = jira_comment("10002", "20002", "557058:bob", now - 20_000, "CAB approved for Tuesday night");
    let reply = jira("wh-c2", &second).expect(200).clone();
    assert_eq!(reply["changes"], json!([ours]), "{reply}");
    // The same delivery again is a duplicate; the same comment in a new delivery adds nothing.
    assert_eq!(jira("wh-c2", &second).expect(200)["duplicate"], true);
    let resent = jira("wh-c2-resent", &second).expect(200).clone();
    assert!(resent["detail"].as_str().unwrap().contains("comment 20002 was already on"), "{resent}");
    // An earlier comment arriving after it (late) is attached, marked late, by an unmapped author.
    let first = jira_comment(
        "10002",
        "20001",
        "5b10a2844c20165700ede21g",
        now - 40_000,
        "Rollback plan: revert PR 42",
    );
    let late = jira("wh-c1", &first).expect(200).clone();
    assert_eq!(late["outcome"], "late", "{late}");
    assert_eq!(jira("wh-c1", &first).expect(200)["duplicate"], true);
    // A comment on the other ticket goes to the other change.
    jira("wh-c3", &jira_comment("10003", "20003", "557058:bob", now - 10_000, "for ACC-8")).expect(200);

    let view = change(&h, &ours);
    let comments: Vec<(&str, &str, &str, bool)> = view["comments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["external_id"].as_str().unwrap(),
                c["author"].as_str().unwrap(),
                c["text"].as_str().unwrap(),
                c["late"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        comments,
        [
            ("20002", "bob", "CAB approved for Tuesday night", false),
            ("20001", "system:writ-intake", "Rollback plan: revert PR 42", true),
        ]
    );
    assert_eq!(view["comments"][0]["source"], "jira");
    assert_eq!(view["comments"][1]["written_at"], iso(now - 40_000).as_str());
    let theirs = change(&h, &other);
    assert_eq!(theirs["comments"].as_array().unwrap().len(), 1);
    assert_eq!(theirs["comments"][0]["text"], "for ACC-8");
    // The text is sealed in the ledger: the record carries only its HMAC.
    h.world.writ(&["ledger", "verify"]).ok();
    let db = rusqlite::Connection::open(&h.world.db).unwrap();
    let leaked: i64 = db
        .query_row("SELECT count(*) FROM events WHERE CAST(bytes AS TEXT) LIKE '%Rollback plan%'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(leaked, 0, "comment text is not in the ledger's records");
    let source: i64 = db
        .query_row(
            "SELECT count(*) FROM events WHERE CAST(bytes AS TEXT) LIKE '%\"id\":\"20001\"%'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(source, 1, "the comment's source and id are in the record, once");
}
