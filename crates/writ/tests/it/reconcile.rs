//! Reconciliation end to end on the real targets the test command starts: a grant made outside
//! Writ with the product's own tool (`psql`, `ldapmodify`, `bao`, `git commit`) becomes an
//! `access.unapproved` finding with its evidence and controls on the next `writ reconcile`;
//! `writ finding remediate` opens the revoke through approvals; the finding is resolved only
//! once that change is verified on the target. Accounts no identity is are
//! `identity.unmatched_account`, an NHI whose owner left is `nhi.orphaned`, an OpenBao token
//! living longer than policy is `secret.long_lived`, a target that cannot be reached gives a
//! partial run that raises no missing access, and reconciling twice raises nothing new.

use std::process::Command;

use serde_json::{Value, json};

use crate::harness::{World, git};
use crate::proxy::{Mode, Proxy};
use crate::server::service;

/// `writ reconcile --target T --json`: the one run.
fn reconcile(w: &World, target: &str) -> Value {
    w.writ(&["reconcile", "--target", target, "--json"]).json()["runs"][0].clone()
}

/// The finding of `kind` about `subject` among a run's opened ones.
fn opened<'a>(run: &'a Value, kind: &str, subject: &str) -> &'a Value {
    run["opened"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["kind"] == kind && f["subject"] == subject)
        .unwrap_or_else(|| panic!("no {kind} about {subject:?} opened: {run:#}"))
}

fn finding(w: &World, id: &str) -> Value {
    w.writ(&["finding", "show", id, "--json"]).json()
}

/// Remediates `finding` as carol, approves as bob (and dave when two are needed), executes and
/// verifies; checks the finding stays open until the verification. Returns the change ID.
fn remediate(w: &World, id: &str) -> String {
    let fix = w.writ(&["finding", "remediate", id, "--as", "carol", "--json"]).json();
    let change = fix["change"]["id"].as_str().unwrap().to_owned();
    assert_eq!(fix["finding"]["remediation"], change.as_str());
    assert_eq!(fix["change"]["state"], "pending_approval");
    // The requester of the fix cannot approve it.
    let own = w.writ(&["change", "approve", &change, "--as", "carol"]);
    assert_eq!(own.code, 3, "{}", own.stderr);
    for approver in ["bob", "dave"] {
        let state = w.writ(&["change", "show", &change, "--json"]).json()["state"].clone();
        if state == "pending_approval" {
            w.writ(&["change", "approve", &change, "--as", approver]).ok();
        }
    }
    assert_eq!(finding(w, id)["state"], "open", "resolved before the fix ran");
    w.writ(&["change", "execute", &change]).ok();
    assert_eq!(finding(w, id)["state"], "open", "resolved before the fix was verified");
    assert_eq!(w.writ(&["change", "verify", &change]).ok(), format!("{change} verified"));
    let after = finding(w, id);
    assert_eq!(after["state"], "resolved", "{after}");
    change
}

fn evidence_and_controls(f: &Value, run: &Value) {
    assert_eq!(f["evidence"], run["snapshot"], "{f}");
    assert!(
        f["controls"].as_array().unwrap().iter().any(|c| c.as_str().unwrap().starts_with("NIST-CSF:")),
        "{f}"
    );
    assert!(
        f["controls"].as_array().unwrap().iter().any(|c| c.as_str().unwrap().starts_with("OWASP-NHI:")),
        "{f}"
    );
}

#[test]
fn postgres_an_out_of_band_grant_is_found_remediated_and_resolved_only_once_verified() {
    let Some(config) = crate::server::postgres() else { return };
    let (mut pg, dsn) = crate::pgtarget::target(&config, "rcp");
    let mut admin = postgres::Client::connect(&format!("{config} dbname=postgres"), postgres::NoTls).unwrap();
    admin.batch_execute("DROP ROLE IF EXISTS rcp_ghost; CREATE ROLE rcp_ghost LOGIN").unwrap();
    let w = World::new();
    w.writ(&[
        "target",
        "add",
        "pg",
        "--connector",
        "postgres",
        "--roles",
        "rcp_read,rcp_write",
        "--dsn",
        &dsn,
    ])
    .ok();
    w.writ(&["identity", "add", "rcp_dave", "--kind", "human"]).ok();
    let clean = reconcile(&w, "pg");
    assert_eq!(clean["complete"], true, "{clean}");
    assert!(clean["opened"].as_array().unwrap().iter().all(|f| f["kind"] != "access.unapproved"), "{clean}");
    // A login no identity is (roles are cluster-wide: other tests' logins are unmatched too).
    let ghost = opened(&clean, "identity.unmatched_account", "pg account rcp_ghost");
    assert!(ghost["detail"].as_str().unwrap().contains("holds nothing Writ manages"), "{ghost}");
    let ghost = ghost["id"].as_str().unwrap().to_owned();

    // Behind Writ's back, with PostgreSQL's own client.
    let psql = Command::new("psql")
        .args([
            &dsn,
            "-v",
            "ON_ERROR_STOP=1",
            "-q",
            "-c",
            "GRANT rcp_read TO rcp_dave; GRANT rcp_write TO rcp_ghost",
        ])
        .output()
        .unwrap();
    assert!(psql.status.success(), "{}", String::from_utf8_lossy(&psql.stderr));
    let run = reconcile(&w, "pg");
    let unapproved = opened(&run, "access.unapproved", "rcp_dave pg:rcp_read");
    evidence_and_controls(unapproved, &run);
    assert_eq!(unapproved["scope"], "target:pg");
    // Seen again, not raised again: its last sighting and evidence move to this run.
    let seen = finding(&w, &ghost);
    assert_eq!((seen["state"].as_str(), &seen["evidence"]), (Some("open"), &run["snapshot"]), "{seen}");
    assert_ne!(seen["last_seen"], seen["first_seen"]);
    let id = unapproved["id"].as_str().unwrap().to_owned();

    // The server's own usage signal: a session of rcp_dave open during a run is kept as its
    // last use; a session of an account no identity is counts too, and proves nothing stale.
    assert_eq!(run["usage"], "signal", "{run}");
    admin.batch_execute("ALTER ROLE rcp_dave PASSWORD 'a-throwaway-test-password'").unwrap();
    let session_dsn =
        format!("{} password=a-throwaway-test-password", dsn.replace("user=writ", "user=rcp_dave"));
    let session = postgres::Client::connect(&session_dsn, postgres::NoTls).unwrap();
    reconcile(&w, "pg");
    drop(session);
    let db = rusqlite::Connection::open(&w.db).unwrap();
    let seen: i64 = db
        .query_row("SELECT count(*) FROM usage WHERE target = 'pg' AND account = 'rcp_dave'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(seen, 1, "the session was not kept as a last use");
    assert_eq!(w.writ(&["ledger", "verify"]).code, 0, "the usage table is a projection of the ledger");

    remediate(&w, &id);
    assert!(!crate::pgtarget::member(&mut pg, "rcp_dave", "rcp_read"), "still a member after the fix");
    let after = reconcile(&w, "pg");
    assert!(after["opened"].as_array().unwrap().iter().all(|f| f["id"] != id.as_str()), "{after}");

    // The unmatched login now holds rcp_write: an admin decommissions it through a change.
    assert!(finding(&w, &ghost)["detail"].as_str().unwrap().contains("pg:rcp_write"), "detail moves on");
    w.writ(&["role", "grant", "carol", "admin"]).ok();
    let change = remediate(&w, &ghost);
    let record = w.writ(&["change", "show", &change, "--json"]).json();
    assert_eq!(record["event"], "decommission", "{record}");
    assert!(
        !crate::pgtarget::member(&mut pg, "rcp_ghost", "rcp_write"),
        "still a member after the decommission"
    );
    let ghost_identity = w.writ(&["identity", "show", "rcp_ghost", "--json"]).json();
    assert_eq!(
        (ghost_identity["state"].as_str(), ghost_identity["owner"].as_str()),
        (Some("offboarded"), Some("carol"))
    );
    assert_eq!(w.writ(&["ledger", "verify"]).code, 0);
}

#[test]
fn ldap_an_out_of_band_member_is_found_and_an_unreachable_directory_gives_a_partial_run() {
    let Some(mut dir) = crate::ldaptarget::directory("rcl") else { return };
    let proxy = Proxy::start(dir.url.trim_start_matches("ldap://"));
    let w = World::new();
    let groups = format!("ou=groups,{}", dir.base);
    let users = format!("ou=people,{}", dir.base);
    let url = format!("ldap://127.0.0.1:{}", proxy.port);
    w.writ(&[
        "target",
        "add",
        "dir",
        "--connector",
        "ldap",
        "--url",
        &url,
        "--bind-dn",
        &dir.bind_dn,
        "--password-file",
        &dir.password_file,
        "--groups",
        &groups,
        "--users",
        &users,
    ])
    .ok();
    w.writ(&["identity", "add", "rcl_dave", "--kind", "human"]).ok();
    // Granted through Writ: linked, then missing once taken away by hand.
    let granted = w.request("rcl_dave", "dir:rcl-write");
    w.writ(&["change", "approve", &granted, "--as", "bob"]).ok();
    w.writ(&["change", "execute", &granted]).ok();
    w.writ(&["change", "verify", &granted]).ok();
    let first = reconcile(&w, "dir");
    assert_eq!(first["situations"]["linked"], 1, "{first}");
    // rcl_erin has an entry under the users base but is no identity.
    opened(&first, "identity.unmatched_account", "dir account rcl_erin");

    // Behind Writ's back, with the directory's own tool.
    let ldif = format!(
        "dn: cn=rcl-read,{groups}\nchangetype: modify\nadd: member\nmember: {}\n",
        dir.user("rcl_dave")
    );
    let password = std::fs::read_to_string(&dir.password_file).unwrap();
    let mut modify = Command::new("ldapmodify")
        .args(["-x", "-H", &dir.url, "-D", &dir.bind_dn, "-w", password.trim()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(modify.stdin.as_mut().unwrap(), ldif.as_bytes()).unwrap();
    let done = modify.wait_with_output().unwrap();
    assert!(done.status.success(), "{}", String::from_utf8_lossy(&done.stderr));
    let run = reconcile(&w, "dir");
    let unapproved = opened(&run, "access.unapproved", "rcl_dave dir:rcl-read");
    evidence_and_controls(unapproved, &run);
    let id = unapproved["id"].as_str().unwrap().to_owned();

    // The directory cannot be reached: a partial run, recorded, exit 6; nothing missing is
    // raised (the grant Writ made is not seen, but it may be there) and nothing is resolved.
    let events = w.writ(&["ledger", "verify", "--json"]).json()["events"].clone();
    proxy.set(Mode::Refuse);
    let partial = w.writ(&["reconcile", "--target", "dir", "--json"]);
    proxy.set(Mode::Pass);
    assert_eq!(partial.code, 6, "{}", partial.stderr);
    assert!(partial.stderr.contains("target.partial_observation"), "{}", partial.stderr);
    let partial: Value = serde_json::from_str(partial.stdout.trim()).unwrap();
    let partial = &partial["runs"][0];
    assert_eq!(partial["complete"], false);
    assert_eq!(partial["situations"]["missing"], 0, "{partial}");
    assert!(
        partial["opened"].as_array().unwrap().is_empty()
            && partial["resolved"].as_array().unwrap().is_empty()
    );
    assert_eq!(finding(&w, &id)["state"], "open");
    let recorded = w.writ(&["ledger", "verify", "--json"]).json()["events"].clone();
    assert!(recorded.as_u64() > events.as_u64(), "the partial run is recorded");
    // Reconciliation before automation: automated changes on the directory wait for a person.
    let status = w.writ(&["automation", "status", "--json"]).json();
    let paused: Vec<&str> =
        status.as_array().unwrap().iter().map(|f| f["subject"].as_str().unwrap()).collect();
    assert_eq!(paused, ["target:dir"], "{status}");
    assert!(status[0]["detail"].as_str().unwrap().contains("could not read dir in full"), "{status}");
    let bot = w.writ(&["automation", "resume", "target:dir", "--as", "svc-ci", "--justification", "ok"]);
    assert_eq!(bot.code, 3, "a service account cannot resume: {}", bot.stderr);
    let resumed =
        w.writ(&["automation", "resume", "target:dir", "--as", "carol", "--justification", "directory back"]);
    assert_eq!(resumed.ok(), "automation of target:dir resumed; 0 held lifecycle step(s) proceeded");
    assert_eq!(w.writ(&["automation", "status"]).ok(), "no automation is paused");

    remediate(&w, &id);
    assert!(!dir.group("rcl-read").0.contains(&dir.user("rcl_dave").to_ascii_lowercase()));
    // Nothing changed since: a second run raises nothing new.
    let quiet = reconcile(&w, "dir");
    let again = reconcile(&w, "dir");
    for run in [&quiet, &again] {
        assert_eq!(run["complete"], true, "{run}");
    }
    assert!(again["opened"].as_array().unwrap().is_empty(), "{again}");
    assert!(again["reopened"].as_array().unwrap().is_empty(), "{again}");
    assert_eq!(w.writ(&["ledger", "verify"]).code, 0);
}

#[test]
fn openbao_a_token_minted_outside_writ_is_unapproved_and_long_lived_and_its_revoke_ends_it() {
    let Some((bao, _)) = crate::baotarget::setup("rcb") else { return };
    let Some(bin) = service("WRIT_TEST_OPENBAO_BIN", "OpenBao") else { return };
    let rules = r#"path "secret/data/rcb/*" { capabilities = ["read"] }"#;
    assert_eq!(bao.call("POST", "sys/policies/acl/rcb-agent", Some(json!({ "policy": rules }))).0, 204);
    let w = World::new();
    crate::baotarget::add_vault(&w, &mut String::new(), &bao, "db_rcb", &["--policies", "rcb-agent"]);
    w.writ(&["identity", "add", "rcb-bot", "--kind", "ai_agent", "--owner", "alice"]).ok();

    // An operator mints a token with the managed policy for the agent, for 32 days.
    let token = std::fs::read_to_string(&bao.token_file).unwrap();
    let minted = Command::new(&bin)
        .args(["token", "create", "-policy=rcb-agent", "-display-name=rcb-bot", "-ttl=768h", "-format=json"])
        .env("BAO_ADDR", &bao.addr)
        .env("BAO_TOKEN", token.trim())
        .output()
        .unwrap();
    assert!(minted.status.success(), "{}", String::from_utf8_lossy(&minted.stderr));
    let minted: Value = serde_json::from_slice(&minted.stdout).unwrap();
    let accessor = minted["auth"]["accessor"].as_str().unwrap().to_owned();

    let run = reconcile(&w, "vault");
    assert_eq!(run["complete"], true, "{run}");
    let unapproved = opened(&run, "access.unapproved", "rcb-bot vault:policy/rcb-agent");
    evidence_and_controls(unapproved, &run);
    let long_lived = run["opened"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["kind"] == "secret.long_lived" && f["subject"].as_str().unwrap().ends_with(&accessor))
        .unwrap_or_else(|| panic!("no secret.long_lived for the token: {run:#}"));
    assert!(long_lived["detail"].as_str().unwrap().contains("at most 30d"), "{long_lived}");
    assert!(long_lived["controls"].as_array().unwrap().contains(&json!("OWASP-NHI:NHI7:2025")));
    // Token times are OpenBao's usage signal: the token's creation is the agent's last use.
    assert_eq!(run["usage"], "signal", "{run}");
    let db = rusqlite::Connection::open(&w.db).unwrap();
    let last_ms: i64 = db
        .query_row("SELECT last_ms FROM usage WHERE target = 'vault' AND account = 'rcb-bot'", [], |r| {
            r.get(0)
        })
        .unwrap();
    let now_ms =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    assert!(
        (now_ms - last_ms).abs() < 120_000,
        "last use {last_ms} is the token's creation, about now ({now_ms})"
    );
    // No secret reaches the record: the token itself appears nowhere Writ wrote.
    let secret = minted["auth"]["client_token"].as_str().unwrap();
    assert!(!run.to_string().contains(secret));

    remediate(&w, unapproved["id"].as_str().unwrap());
    let (status, _) = bao.call("POST", "auth/token/lookup-accessor", Some(json!({ "accessor": accessor })));
    assert_ne!(status, 200, "the token still works after the verified revoke");
    let after = reconcile(&w, "vault");
    let resolved: Vec<&str> =
        after["resolved"].as_array().unwrap().iter().map(|f| f["kind"].as_str().unwrap()).collect();
    assert!(resolved.contains(&"secret.long_lived"), "the revoked token is no longer long-lived: {after:#}");
    assert_eq!(w.writ(&["ledger", "verify"]).code, 0);
}

#[test]
fn git_a_hand_edit_of_the_access_file_is_found_and_an_orphaned_service_account_too() {
    let w = World::new();
    let edited = crate::harness::ACCESS.replace(
        "[entitlements.deploy-prod]\nmembers = []",
        "[entitlements.deploy-prod]\nmembers = [\"dave\"]",
    );
    std::fs::write(w.repo.join("access.toml"), edited).unwrap();
    // Git keeps whole seconds: a commit in the second the target was registered is not counted
    // as made after it (see `reconcile::TELEMETRY`), so this one waits for the next second.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    git(
        &w.repo,
        &["-c", "user.name=M", "-c", "user.email=m@example.invalid", "commit", "-qam", "give dave deploy"],
    );
    let run = reconcile(&w, "access");
    let unapproved = opened(&run, "access.unapproved", "dave access:deploy-prod");
    evidence_and_controls(unapproved, &run);
    let id = unapproved["id"].as_str().unwrap().to_owned();
    // The commit itself names no change: telemetry no change matches (the initial commit, from
    // before the target was registered, is not counted).
    let hand = git(&w.repo, &["rev-parse", "HEAD"]).trim().to_owned();
    let telemetry = opened(&run, "change.unmatched_telemetry", &format!("access {hand}"));
    assert!(telemetry["detail"].as_str().unwrap().contains("give dave deploy"), "{telemetry}");
    let kinds: Vec<&str> =
        run["opened"].as_array().unwrap().iter().map(|f| f["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds.iter().filter(|k| **k == "change.unmatched_telemetry").count(), 1, "{run:#}");
    let change = remediate(&w, &id);
    assert!(git(&w.repo, &["log", "-1", "--format=%B"]).contains(&format!("Writ-Change: {change}")));
    assert!(!std::fs::read_to_string(w.repo.join("access.toml")).unwrap().contains("\"dave\""));
    // The trail of the fix names the finding.
    let shown = w.writ(&["change", "show", &change, "--json"]).json();
    assert!(shown.to_string().contains(&id), "{shown}");
    // Writ's own commit names its change; the hand edit stays reported until someone closes it,
    // and closed, it is not reopened by the next run (it is history, not state).
    let after = reconcile(&w, "access");
    assert!(after["opened"].as_array().unwrap().is_empty(), "{after:#}");
    let telemetry_id = telemetry["id"].as_str().unwrap();
    w.writ(&[
        "finding",
        "resolve",
        telemetry_id,
        "--as",
        "carol",
        "--note",
        "the change that fixed it is verified",
    ])
    .ok();

    // alice leaves: svc-ci, which she owns, is orphaned; closed by hand without a fix, the
    // registry's reconciliation opens it again.
    w.writ(&["identity", "offboard", "alice", "--as", "bob", "--justification", "left the company"]).ok();
    let open = w.writ(&["finding", "list", "--state", "open", "--json"]).json();
    let orphan = open.as_array().unwrap().iter().find(|f| f["kind"] == "nhi.orphaned").unwrap().clone();
    assert_eq!((orphan["subject"].as_str(), orphan["severity"].as_str()), (Some("svc-ci"), Some("high")));
    let orphan_id = orphan["id"].as_str().unwrap();
    w.writ(&["finding", "resolve", orphan_id, "--as", "carol", "--note", "later"]).ok();
    let all = w.writ(&["reconcile", "--json"]).json();
    let registry = all["runs"].as_array().unwrap().iter().find(|r| r["scope"] == "registry").unwrap();
    let reopened = &registry["reopened"][0];
    assert_eq!(reopened["id"], orphan_id, "{registry}");
    assert!(reopened["detail"].as_str().unwrap().contains("offboarded"), "{reopened}");
    // Nothing changed: nothing new anywhere.
    let again = w.writ(&["reconcile", "--json"]).json();
    for run in again["runs"].as_array().unwrap() {
        assert!(run["opened"].as_array().unwrap().is_empty(), "{run}");
        assert!(run["reopened"].as_array().unwrap().is_empty(), "{run}");
    }
    assert_eq!(w.writ(&["ledger", "verify"]).code, 0);
    assert_eq!(w.writ(&["finding", "list", "--state", "open", "--json"]).json().as_array().unwrap().len(), 1);
}

#[test]
fn reconcile_and_remediate_over_http_are_refused_to_roles_and_vendors_without_changing_anything() {
    let http = crate::api::Http::start(World::new());
    let api = &http.api;
    let edited = crate::harness::ACCESS
        .replace("[entitlements.eng-read]\nmembers = []", "[entitlements.eng-read]\nmembers = [\"dave\"]");
    std::fs::write(http.world.repo.join("access.toml"), edited).unwrap();
    git(
        &http.world.repo,
        &["-c", "user.name=M", "-c", "user.email=m@example.invalid", "commit", "-qam", "by hand"],
    );
    let before = http.fingerprint();
    for who in [&http.alice, &http.bob, &http.carol, &http.executor, &http.vera] {
        let refused = api.post("/api/v1/reconcile", who, json!({ "target": "access" }));
        assert_eq!(refused.status, 403, "{}", refused.body);
    }
    for body in [json!({ "target": "nowhere" }), json!({ "target": "../x" }), json!({ "targets": "access" })]
    {
        let refused = api.post("/api/v1/reconcile", &http.root, body.clone());
        assert!(matches!(refused.status, 400 | 404 | 422), "{body}: {} {}", refused.status, refused.body);
    }
    assert_eq!(http.fingerprint(), before, "a refused reconcile changed something");

    let ran = api.post("/api/v1/reconcile", &http.root, json!({ "target": "access" }));
    let ran = ran.expect(200);
    let id = ran["runs"][0]["opened"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(ran["runs"][0]["opened"][0]["kind"], "access.unapproved");
    let before = http.fingerprint();
    let path = format!("/api/v1/findings/{id}/remediate");
    // Approvers, reviewers and executors do not request changes; a vendor does not act on findings.
    for who in [&http.bob, &http.carol, &http.executor, &http.vera] {
        let refused = api.post(&path, who, json!({}));
        assert_eq!(refused.status, 403, "{}", refused.body);
    }
    for body in
        [json!({ "justification": "" }), json!({ "justification": "  " }), json!({ "note": "x" }), json!([])]
    {
        let malformed = api.post(&path, &http.alice, body.clone());
        assert!(matches!(malformed.status, 400 | 422), "{body}: {}", malformed.body);
    }
    let unknown = api.post("/api/v1/findings/FND-0000000000000000/remediate", &http.alice, json!({}));
    assert_eq!(unknown.status, 404, "{}", unknown.body);
    assert_eq!(http.fingerprint(), before, "a refused remediation changed something");
    // The usage feed: for a provisioner or an admin only; bad reports change nothing.
    let report = |account: &str, at: &str| json!({ "target": "access", "source": "siem", "entries": [{ "account": account, "last_used": at }] });
    let before = http.fingerprint();
    for who in [&http.alice, &http.bob, &http.carol, &http.executor, &http.vera] {
        let refused = api.post("/api/v1/usage", who, report("dave", "2026-01-01T00:00:00Z"));
        assert_eq!(refused.status, 403, "{}", refused.body);
    }
    for body in [
        json!({ "target": "access", "source": "siem", "entries": [] }),
        json!({ "target": "access", "source": "siem" }),
        json!({ "target": "nowhere", "source": "siem", "entries": [{ "account": "dave", "last_used": "2026-01-01T00:00:00Z" }] }),
        report("dave", "yesterday"),
        json!({ "target": "access", "source": "siem", "entries": (0..41).map(|i| json!({ "account": format!("a{i}"), "last_used": "2026-01-01T00:00:00Z" })).collect::<Vec<_>>() }),
        report("", "2026-01-01T00:00:00Z"),
        json!({ "target": "access", "source": "siem", "entries": [{ "account": "dave" }] }),
        json!({ "target": "access", "source": "siem", "entries": [{ "account": "dave", "last_used": "2026-01-01T00:00:00Z", "x": 1 }] }),
    ] {
        let refused = api.post("/api/v1/usage", &http.root, body.clone());
        assert!(matches!(refused.status, 400 | 404 | 422), "{body}: {} {}", refused.status, refused.body);
    }
    assert_eq!(http.fingerprint(), before, "a refused usage report changed something");
    let accepted = api.post("/api/v1/usage", &http.root, report("dave", "2026-01-01T00:00:00Z"));
    assert_eq!(accepted.expect(200)["accounts"], 1);
    let ran = api.post("/api/v1/reconcile", &http.root, json!({ "target": "access" }));
    assert_eq!(ran.expect(200)["runs"][0]["usage"], "signal");

    let fix = api.post(&path, &http.alice, json!({ "justification": "found by reconciliation" }));
    assert_eq!(fix.status, 201, "{}", fix.body);
    let fix = &fix.body;
    assert_eq!(fix["finding"]["remediation"], fix["change"]["id"]);
    let again = api.post(&path, &http.alice, json!({}));
    assert_eq!(again.status, 409, "{}", again.body);
    assert!(again.body.to_string().contains("finding.remediation_open"), "{}", again.body);
}

#[test]
fn a_grants_table_edited_to_hide_a_grant_made_outside_writ_stops_the_reconciliation() {
    let w = World::new();
    let edited = crate::harness::ACCESS.replace(
        "[entitlements.deploy-prod]\nmembers = []",
        "[entitlements.deploy-prod]\nmembers = [\"dave\"]",
    );
    std::fs::write(w.repo.join("access.toml"), edited).unwrap();
    git(&w.repo, &["-c", "user.name=M", "-c", "user.email=m@example.invalid", "commit", "-qam", "by hand"]);
    // Someone with the database file adds the grant Writ never approved, so it would look linked.
    let granted = w.request("carol", "access:eng-read");
    w.writ(&["change", "approve", &granted, "--as", "bob"]).ok();
    w.writ(&["change", "execute", &granted]).ok();
    let db = rusqlite::Connection::open(&w.db).unwrap();
    db.execute(
        "INSERT INTO grants (identity, target, entitlement, change_id, granted_ms, expires_ms)
         VALUES ('dave', 'access', 'deploy-prod', ?1, 0, NULL)",
        [&granted],
    )
    .unwrap();
    drop(db);
    let before = w.fingerprint();
    let refused = w.writ(&["reconcile", "--target", "access"]);
    assert_eq!(refused.code, 8, "{}", refused.stderr);
    assert!(refused.stderr.contains("ledger.projection_diverged"), "{}", refused.stderr);
    assert_eq!(w.fingerprint(), before, "the refused reconciliation recorded something");
}
