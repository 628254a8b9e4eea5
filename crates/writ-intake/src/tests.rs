//! Signatures against the senders' documented schemes (Standard Webhooks checked against the
//! official `standardwebhooks` library), and payloads in the products' documented shapes.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::json;
use writ_core::change::{ChangeId, OpAction, RefKind};
use writ_core::time::{Duration, Timestamp};

use crate::{IntakeError, Kind, Received, Secret, authenticate, hmac_sha256, read, standard_signature};

const NOW: i64 = 1_795_000_000_000;
const KEY: &[u8] = b"a-github-secret-of-24-bytes";

fn headers(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_ascii_lowercase(), (*v).to_owned())).collect()
}

fn hub(body: &[u8]) -> String {
    format!("sha256={}", hmac_sha256(KEY, body).iter().map(|b| format!("{b:02x}")).collect::<String>())
}

fn secret() -> Vec<Secret> {
    vec![Secret::parse(std::str::from_utf8(KEY).unwrap()).unwrap()]
}

fn check(kind: Kind, h: &BTreeMap<String, String>, body: &[u8]) -> Result<(), IntakeError> {
    let received = Received { headers: h, body, now: Timestamp::from_millis(NOW) };
    authenticate(kind, &secret(), &received, Duration::minutes(5))
}

fn code(result: Result<(), IntakeError>) -> &'static str {
    result.err().map_or("ok", |e| e.code())
}

#[test]
fn hub_signatures_match_the_raw_body_only() {
    let body = br#"{"zen":"Keep it logically awesome."}"#;
    for (kind, header) in [(Kind::Github, "x-hub-signature-256"), (Kind::Jira, "x-hub-signature")] {
        assert_eq!(code(check(kind, &headers(&[(header, &hub(body))]), body)), "ok");
        // One byte more, or the same body signed with another key, is refused.
        let longer = [body.as_slice(), b" "].concat();
        assert_eq!(code(check(kind, &headers(&[(header, &hub(body))]), &longer)), "hook.bad_signature");
        let other = format!("sha256={}", "0".repeat(64));
        assert_eq!(code(check(kind, &headers(&[(header, &other)]), body)), "hook.bad_signature");
        assert_eq!(code(check(kind, &headers(&[(header, "sha1=abc")]), body)), "hook.bad_signature");
        assert_eq!(code(check(kind, &headers(&[]), body)), "hook.missing_signature");
    }
    // GitHub's legacy SHA-1 header alone is not enough.
    assert_eq!(
        code(check(Kind::Github, &headers(&[("x-hub-signature", &hub(body))]), body)),
        "hook.missing_signature"
    );
}

#[test]
fn gitlab_tokens_and_servicenow_basic_credentials_compare_whole() {
    let token = std::str::from_utf8(KEY).unwrap();
    assert_eq!(code(check(Kind::Gitlab, &headers(&[("x-gitlab-token", token)]), b"{}")), "ok");
    assert_eq!(
        code(check(Kind::Gitlab, &headers(&[("x-gitlab-token", &token[..20])]), b"{}")),
        "hook.bad_signature"
    );
    let basic = |s: &str| format!("Basic {}", B64.encode(s));
    let secrets = vec![Secret::parse("writ-hook:correct horse battery").unwrap()];
    let now = Timestamp::from_millis(NOW);
    let basic_check = |value: &str| {
        let h = headers(&[("authorization", value)]);
        code(authenticate(
            Kind::Servicenow,
            &secrets,
            &Received { headers: &h, body: b"{}", now },
            Duration::hours(1),
        ))
    };
    assert_eq!(basic_check(&basic("writ-hook:correct horse battery")), "ok");
    assert_eq!(basic_check(&basic("writ-hook:correct horse")), "hook.bad_signature");
    assert_eq!(basic_check("Bearer abc"), "hook.bad_signature");
}

#[test]
fn standard_webhooks_agree_with_the_official_library() {
    let raw = [7u8; 32];
    let whsec = format!("whsec_{}", B64.encode(raw));
    let oracle = standardwebhooks::Webhook::new(&whsec).unwrap();
    let body = br#"{"type":"access.requested","object":"app-42"}"#;
    let seconds = NOW / 1000;
    let theirs = oracle.sign("msg_2KWPBgLlAfxdpx2AI54pPJ85f4W", seconds, body).unwrap();
    assert_eq!(standard_signature(&raw, "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W", seconds, body), theirs);
    let secrets = vec![
        Secret::parse("whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA").unwrap(),
        Secret::parse(&whsec).unwrap(),
    ];
    let run = |id: &str, at: i64, signature: &str, body: &[u8]| {
        let at = at.to_string();
        let h = headers(&[("webhook-id", id), ("webhook-timestamp", &at), ("webhook-signature", signature)]);
        let received = Received { headers: &h, body, now: Timestamp::from_millis(NOW) };
        code(authenticate(Kind::Standard, &secrets, &received, Duration::minutes(5)))
    };
    let id = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W";
    // A list of signatures (key rotation): one valid one, under the second secret, suffices.
    assert_eq!(run(id, seconds, &format!("v1,bm9wZQ== {theirs}"), body), "ok");
    assert_eq!(run("msg_other", seconds, &theirs, body), "hook.bad_signature", "the id is signed");
    assert_eq!(run(id, seconds + 1, &theirs, body), "hook.bad_signature", "the timestamp is signed");
    assert_eq!(run(id, seconds, &theirs, b"{}"), "hook.bad_signature");
    // Outside the tolerance either way: refused before the signature is even looked at.
    let old = seconds - 301;
    let signed_old = standard_signature(&raw, id, old, body);
    assert_eq!(run(id, old, &signed_old, body), "hook.stale_timestamp");
    let ahead = seconds + 301;
    assert_eq!(run(id, ahead, &standard_signature(&raw, id, ahead, body), body), "hook.stale_timestamp");
    assert_eq!(run(id, seconds - 299, &standard_signature(&raw, id, seconds - 299, body), body), "ok");
}

#[test]
fn standard_webhooks_v1a_signatures_are_ed25519() {
    use ed25519_dalek::{Signer, SigningKey};
    let key = SigningKey::from_bytes(&[3u8; 32]);
    let public = format!("whpk_{}", B64.encode(key.verifying_key().to_bytes()));
    let secrets = vec![Secret::parse(&public).unwrap()];
    let seconds = NOW / 1000;
    let body = br#"{"type":"x"}"#;
    let content = [format!("msg_1.{seconds}.").as_bytes(), body].concat();
    let signature = format!("v1a,{}", B64.encode(key.sign(&content).to_bytes()));
    let at = seconds.to_string();
    let h =
        headers(&[("webhook-id", "msg_1"), ("webhook-timestamp", &at), ("webhook-signature", &signature)]);
    let now = Timestamp::from_millis(NOW);
    assert!(
        authenticate(Kind::Standard, &secrets, &Received { headers: &h, body, now }, Duration::minutes(5))
            .is_ok()
    );
    let tampered = br#"{"type":"y"}"#;
    let refused = authenticate(
        Kind::Standard,
        &secrets,
        &Received { headers: &h, body: tampered, now },
        Duration::minutes(5),
    );
    assert_eq!(code(refused), "hook.bad_signature");
}

#[test]
fn secrets_are_never_printed_and_short_ones_are_refused() {
    let secret = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
    assert_eq!(format!("{secret:?}"), "Secret(redacted)");
    assert!(Secret::parse("short").is_err());
    assert!(Secret::parse("whsec_!!").is_err());
}

fn parse(kind: Kind, h: &[(&str, &str)], body: &serde_json::Value) -> crate::Parsed {
    let h = headers(h);
    let bytes = serde_json::to_vec(body).unwrap();
    read(kind, &Received { headers: &h, body: &bytes, now: Timestamp::from_millis(NOW) }, Duration::hours(1))
        .unwrap()
}

fn iso(millis: i64) -> String {
    Timestamp::from_millis(millis).to_rfc3339()
}

#[test]
fn a_merged_github_pull_request_asks_for_its_block_and_an_open_one_waits() {
    let pr = |action: &str, merged: bool| {
        json!({
            "action": action,
            "number": 42,
            "pull_request": {
                "number": 42, "title": "Deploy billing", "user": {"login": "octocat"},
                "body": "Ships billing.\r\n\r\nWrit-Grant: svc-billing access:deploy for 8h\r\nWrit-Event: deploy\r\n",
                "merged": merged, "merge_commit_sha": "e5bd3914e2e596debea16f433f57875b5b90bcd6",
                "updated_at": iso(NOW - 60_000), "state": if merged { "closed" } else { "open" }
            },
            "repository": {"full_name": "acme/billing"}, "sender": {"login": "octocat"}
        })
    };
    let h =
        [("x-github-event", "pull_request"), ("x-github-delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958")];
    let merged = parse(Kind::Github, &h, &pr("closed", true));
    assert_eq!(merged.event, "pull_request.closed");
    assert_eq!(merged.object.as_deref(), Some("acme/billing#42"));
    assert_eq!(merged.version, Some(Timestamp::from_millis(NOW - 60_000)));
    let block = merged.request.unwrap();
    assert_eq!(block.ops.len(), 1);
    assert_eq!((block.ops[0].action, block.ops[0].duration), (OpAction::Grant, Some(Duration::hours(8))));
    assert_eq!(block.event, Some(writ_core::change::BusinessEvent::Deploy));
    let kinds: Vec<RefKind> = merged.refs.iter().map(|r| r.kind).collect();
    assert_eq!(kinds, [RefKind::PullRequest, RefKind::Commit]);
    let open = parse(Kind::Github, &h, &pr("opened", false));
    assert!(open.request.is_none() && open.pending_request, "an open pull request does not open a change");
}

#[test]
fn github_pushes_name_changes_by_commit_trailer_and_are_bounded_by_push_time() {
    let change = ChangeId::generate(Timestamp::from_millis(NOW), 5);
    let push = |pushed_at: i64| {
        json!({
            "ref": "refs/heads/main", "after": "9fceb02d0ae598e95dc970b74767f19372d61af8",
            "repository": {"full_name": "acme/access", "pushed_at": pushed_at},
            "pusher": {"name": "alice"},
            "commits": [
                {"id": "9fceb02d0ae598e95dc970b74767f19372d61af8", "message": format!("Grant deploy\n\nWrit-Change: {change}\n")},
                {"id": "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c", "message": "Fix typo"}
            ]
        })
    };
    let h = [("x-github-event", "push"), ("x-github-delivery", "d-push-1")];
    let parsed = parse(Kind::Github, &h, &push(NOW / 1000 - 10));
    assert_eq!(parsed.changes.len(), 1);
    assert_eq!(parsed.changes[0].0, change);
    assert_eq!(
        parsed.changes[0].1.as_ref().map(|r| r.value()),
        Some("9fceb02d0ae598e95dc970b74767f19372d61af8")
    );
    assert_eq!(parsed.refs.len(), 1, "only commits that name a change are references");
    // The commit that names no change is kept as unstamped, with the files it touched.
    assert_eq!(
        parsed.unstamped,
        [crate::UnstampedCommit {
            sha: "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c".into(),
            summary: "unknown: Fix typo".into(),
            paths: vec![],
        }]
    );
    let mut odd = push(NOW / 1000 - 10);
    odd["commits"] = json!([
        {"id": "not-a-commit", "message": "x", "modified": ["access.toml"]},
        {"id": "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c", "message": "Edit\nmore", "author": {"name": "eve"},
         "added": ["a"], "modified": ["access.toml"], "removed": ["b"]}
    ]);
    let parsed = parse(Kind::Github, &[("x-github-event", "push"), ("x-github-delivery", "d-push-2")], &odd);
    assert_eq!(parsed.unstamped.len(), 1, "only a commit id names a commit: {:?}", parsed.unstamped);
    assert_eq!((parsed.unstamped[0].summary.as_str(), parsed.unstamped[0].paths.len()), ("eve: Edit", 3));
    let old = serde_json::to_vec(&push(NOW / 1000 - 7200)).unwrap();
    let h = headers(&h);
    let late = read(
        Kind::Github,
        &Received { headers: &h, body: &old, now: Timestamp::from_millis(NOW) },
        Duration::hours(1),
    );
    assert_eq!(late.unwrap_err().code(), "hook.stale_timestamp");
}

#[test]
fn jira_issue_events_carry_the_issue_with_rich_text_and_status() {
    let issue = |event: &str, status: &str| {
        json!({
            "timestamp": NOW - 1_000,
            "webhookEvent": event,
            "issue_event_type_name": "issue_generic",
            "user": {"accountId": "5b10a2844c20165700ede21g"},
            "issue": {
                "id": "10002", "key": "ACC-7", "self": "https://acme.atlassian.net/rest/api/2/10002",
                "fields": {
                    "summary": "Deploy access for Bob",
                    "status": {"name": status},
                    "reporter": {"accountId": "5b10ac8d82e05b22cc7d4ef5"},
                    "description": {"type": "doc", "version": 1, "content": [
                        {"type": "paragraph", "content": [{"type": "text", "text": "Bob needs deploy."}]},
                        {"type": "paragraph", "content": [{"type": "text", "text": "Writ-Grant: bob access:deploy"}]}
                    ]}
                }
            },
            "changelog": {"items": [{"field": "status", "fieldtype": "jira", "fromString": "To Do", "toString": status}]}
        })
    };
    let h = [("x-atlassian-webhook-identifier", "1a2b3c"), ("x-atlassian-webhook-retry", "0")];
    let parsed = parse(Kind::Jira, &h, &issue("jira:issue_updated", "Approved"));
    assert_eq!(
        (parsed.object.as_deref(), parsed.version),
        (Some("10002"), Some(Timestamp::from_millis(NOW - 1_000)))
    );
    assert_eq!(parsed.refs[0].value(), "ACC-7");
    assert_eq!(parsed.account.as_deref(), Some("5b10ac8d82e05b22cc7d4ef5"));
    assert_eq!(parsed.request.unwrap().ops[0].identity.as_str(), "bob");
    let cancelled = parse(Kind::Jira, &h, &issue("jira:issue_updated", "Won't Do"));
    assert!(cancelled.cancelled && cancelled.request.is_none());
}

#[test]
fn servicenow_records_key_on_sys_id_and_version_on_sys_updated_on() {
    let record = json!({"record": {
        "sys_id": "c286d61347c80210d8e7b3c6d36d4357", "number": "CHG0030001", "state": "-3",
        "approval": "requested", "type": "normal", "short_description": "Grant bob deploy",
        "description": "Writ-Grant: bob access:deploy\nWrit-Justification: release train",
        "requested_by": {"link": "https://acme.service-now.com/api/now/table/sys_user/5137153cc611227c000bbd1bd8cd2005", "value": "5137153cc611227c000bbd1bd8cd2005"},
        "sys_updated_on": "2026-11-23 09:15:02"
    }});
    let parsed = parse(Kind::Servicenow, &[], &record);
    assert_eq!(
        parsed.id, "c286d61347c80210d8e7b3c6d36d4357@2026-11-23T09:15:02.000Z",
        "no header: the record version is the id"
    );
    assert_eq!(parsed.event, "change_request.authorize");
    assert_eq!(parsed.account.as_deref(), Some("5137153cc611227c000bbd1bd8cd2005"));
    assert_eq!(parsed.request.unwrap().justification.as_deref(), Some("release train"));
    let mut bad = record.clone();
    bad["record"]["sys_id"] = json!("not-a-sys-id");
    let body = serde_json::to_vec(&bad).unwrap();
    let h = headers(&[]);
    let refused = read(
        Kind::Servicenow,
        &Received { headers: &h, body: &body, now: Timestamp::from_millis(NOW) },
        Duration::hours(1),
    );
    assert_eq!(refused.unwrap_err().code(), "hook.malformed");
}

#[test]
fn a_bad_block_line_is_reported_with_its_line_and_nothing_is_asked() {
    let scanned = crate::block::scan("Intro\nWrit-Grant: bob\nWrit-Revoke: carol access:admin\n");
    assert!(scanned.block.is_none());
    assert!(scanned.error.unwrap().starts_with("line 2: Writ-grant wants IDENTITY"));
    let scanned = crate::block::scan("writ-revoke: carol access:admin\nWRIT-EVENT: leaver");
    assert_eq!(scanned.block.unwrap().ops[0].action, OpAction::Revoke);
    assert_eq!(
        crate::block::scan("Writ-Frobnicate: x").error.unwrap(),
        "line 1: unknown Writ line Writ-frobnicate: use Writ-Grant, -Revoke, -Rotate, -Event, -Justification, -Window or -Change"
    );
}

#[test]
fn merges_and_pushes_name_the_commit_they_put_on_a_branch() {
    let sha = "e5bd3914e2e596debea16f433f57875b5b90bcd6";
    let pr = json!({
        "action": "closed", "number": 3,
        "pull_request": {"number": 3, "merged": true, "merge_commit_sha": sha, "base": {"ref": "main"},
            "updated_at": iso(NOW - 1_000), "title": "Ship"},
        "repository": {"full_name": "acme/billing"}
    });
    let h = [("x-github-event", "pull_request"), ("x-github-delivery", "r-1")];
    let revision = parse(Kind::Github, &h, &pr).revision.unwrap();
    assert_eq!((revision.repository.as_str(), revision.branch.as_str()), ("acme/billing", "main"));
    assert_eq!((revision.before, revision.after.as_str()), (None, sha));
    // An open pull request lands nothing.
    let mut open = pr.clone();
    open["pull_request"]["merged"] = json!(false);
    assert_eq!(parse(Kind::Github, &h, &open).revision, None);
    let push = |git_ref: &str, after: &str| {
        json!({"ref": git_ref, "before": "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c", "after": after,
            "repository": {"full_name": "acme/billing", "pushed_at": NOW / 1000}, "commits": []})
    };
    let h = [("x-github-event", "push"), ("x-github-delivery", "r-2")];
    let pushed = parse(Kind::Github, &h, &push("refs/heads/release", sha)).revision.unwrap();
    assert_eq!(pushed.branch, "release");
    assert_eq!(pushed.before.as_deref(), Some("0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c"));
    // A deleted branch (zeros), a tag, or something that is not a commit id lands nothing.
    assert_eq!(parse(Kind::Github, &h, &push("refs/heads/main", &"0".repeat(40))).revision, None);
    assert_eq!(parse(Kind::Github, &h, &push("refs/tags/v1", sha)).revision, None);
    assert_eq!(parse(Kind::Github, &h, &push("refs/heads/main", "HEAD --upload-pack=x")).revision, None);
    // GitLab: a fast-forward merge has no merge commit; the last commit is what landed.
    let mr = json!({
        "object_kind": "merge_request", "project": {"path_with_namespace": "acme/api"},
        "object_attributes": {"iid": 4, "action": "merge", "target_branch": "main", "merge_commit_sha": null,
            "last_commit": {"id": sha}, "updated_at": iso(NOW - 1_000)}
    });
    let landed = parse(Kind::Gitlab, &[("x-gitlab-event-uuid", "r-3")], &mr).revision.unwrap();
    assert_eq!((landed.repository.as_str(), landed.after.as_str()), ("acme/api", sha));
}

#[test]
fn manifests_declare_non_human_identities_and_say_what_is_wrong() {
    use crate::manifest::Manifest;
    let good = r#"
        app = "payments"
        owner = "alice"
        [[identity]]
        name = "svc-payments"
        grants = ["access:deploy-prod", "bao:payments-db"]
        [[identity]]
        name = "payments-api-key"
        kind = "api_key"
    "#;
    let manifest = Manifest::parse(good).unwrap();
    assert_eq!(manifest.identities.len(), 2);
    assert_eq!(manifest.identities[0].kind, writ_core::identity::IdentityKind::ServiceAccount);
    let svc = writ_core::name::IdentityName::parse("svc-payments").unwrap();
    assert_eq!(manifest.grants_of(&svc).len(), 2);
    let gone = Manifest::parse(&format!("decommissioned = true\n{good}")).unwrap();
    assert!(gone.grants_of(&svc).is_empty(), "a decommissioned app's identities hold nothing");
    let refused = |text: &str, needle: &str| {
        let error = Manifest::parse(text).unwrap_err();
        assert!(error.contains(needle), "{text:?}: {error}");
    };
    refused("app = \"x\"\nowner = \"alice\"\n[[identity]]\nname = \"bob\"\nkind = \"human\"", "non-human");
    refused("app = \"x\"\nowner = \"alice\"\nextra = 1", "unknown field");
    refused("app = \"x y\"\nowner = \"alice\"", "app");
    refused(
        "app = \"x\"\nowner = \"alice\"\n[[identity]]\nname = \"s\"\ngrants = [\"nocolon\"]",
        "identity s",
    );
    refused(
        "app = \"x\"\nowner = \"alice\"\n[[identity]]\nname = \"s\"\n[[identity]]\nname = \"s\"",
        "twice",
    );
    refused(&format!("app = \"x\"\nowner = \"alice\"\n{}", " ".repeat(70_000)), "at most");
}

#[test]
fn ticket_approvals_name_the_accounts_that_approved() {
    let change = "c286d61347c80210d8e7b3c6d36d4357";
    let approval = |state: &str| {
        json!({"record": {"sys_id": "a0000000000000000000000000000005", "state": state,
            "sysapproval": {"value": change}, "approver": {"value": "46d44a23a9fe19810012d100cca80666"},
            "sys_updated_on": "2026-11-23 10:00:00"}})
    };
    let approved = parse(Kind::Servicenow, &[], &approval("approved"));
    assert_eq!(approved.object.as_deref(), Some(change), "an approval is about its change request");
    assert_eq!(approved.version, None, "an approval is not a version of the ticket");
    assert_eq!(approved.approved_by, ["46d44a23a9fe19810012d100cca80666"]);
    assert!(approved.request.is_none());
    assert!(parse(Kind::Servicenow, &[], &approval("rejected")).approved_by.is_empty());
    // Jira Service Management: only an approval that ended approved, only who approved it.
    let issue = |decision: &str| {
        json!({"timestamp": NOW - 1_000, "webhookEvent": "jira:issue_updated",
            "issue": {"id": "10077", "key": "ACC-9", "fields": {"customfield_10027": [{
                "finalDecision": decision,
                "approvers": [
                    {"approver": {"accountId": "557058:a"}, "approverDecision": "approved"},
                    {"approver": {"accountId": "557058:b"}, "approverDecision": "pending"}]}]}}})
    };
    let h = [("x-atlassian-webhook-identifier", "j-1")];
    assert_eq!(parse(Kind::Jira, &h, &issue("approved")).approved_by, ["557058:a"]);
    assert!(parse(Kind::Jira, &h, &issue("pending")).approved_by.is_empty());
}

#[test]
fn a_writ_window_line_is_read_with_its_zone_or_utc_and_a_malformed_one_is_reported() {
    let block = "Writ-Grant: bob access:deploy\nWrit-Window: 2026-12-08T22:00 2026-12-09T02:00 Europe/Berlin";
    let window = crate::block::scan(block).block.unwrap().window.unwrap();
    assert_eq!(window, ("2026-12-08T22:00".into(), "2026-12-09T02:00".into(), "Europe/Berlin".into()));
    let utc = crate::block::scan(
        "Writ-Grant: bob access:deploy\nWrit-Window: 2026-12-08T21:00:00Z 2026-12-09T01:00:00Z",
    );
    assert_eq!(utc.block.unwrap().window.unwrap().2, "UTC");
    let bad = crate::block::scan("Writ-Grant: bob access:deploy\nWrit-Window: tomorrow");
    assert!(bad.block.is_none());
    assert!(bad.error.unwrap().starts_with("line 2: Writ-Window wants START END [ZONE]"));
}
