//! The HTTP API end to end: `writ serve` as a process, tokens from the CLI, real SQLite (and
//! PostgreSQL where named), the real git target. Every refusal is checked to leave the database,
//! the ledger and the repository exactly as they were.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::{World, git};
use crate::server::{Api, Server, postgres, postgres_database, roles, token};

/// A world with a server and one token per role:
/// alice requester, bob approver, writ-executor (a workload) executor, carol reviewer,
/// root admin and auditor; vera (requester) and victor (approver) work for the vendor acme.
pub struct Http {
    pub world: World,
    pub server: Server,
    pub api: Api,
    pub alice: String,
    pub bob: String,
    pub executor: String,
    pub carol: String,
    pub root: String,
    pub vera: String,
    pub victor: String,
}

impl Http {
    pub fn start(world: World) -> Http {
        Http::start_with(world, &[])
    }

    /// [`Http::start`] with more `serve` options.
    pub fn start_with(world: World, serve_args: &[&str]) -> Http {
        world.writ(&["identity", "add", "root", "--kind", "human"]).ok();
        world.writ(&["identity", "add", "writ-executor", "--kind", "workload", "--owner", "dave"]).ok();
        world.writ(&["identity", "add", "vera", "--kind", "human", "--vendor", "acme"]).ok();
        world.writ(&["identity", "add", "victor", "--kind", "human", "--vendor", "acme"]).ok();
        roles(&world, "alice", &["requester"]);
        roles(&world, "bob", &["approver"]);
        roles(&world, "writ-executor", &["executor"]);
        roles(&world, "carol", &["reviewer"]);
        roles(&world, "root", &["admin", "auditor"]);
        roles(&world, "vera", &["requester"]);
        roles(&world, "victor", &["approver"]);
        let tokens: Vec<String> = ["alice", "bob", "writ-executor", "carol", "root", "vera", "victor"]
            .iter()
            .map(|who| token(&world, who))
            .collect();
        let db_args = world.db_args();
        let args: Vec<&str> = db_args.iter().map(String::as_str).collect();
        let server = Server::start_with(&args, serve_args, &world.dir.path().join("serve.log"));
        let api = server.api();
        let [alice, bob, executor, carol, root, vera, victor] = tokens.try_into().unwrap();
        Http { world, server, api, alice, bob, executor, carol, root, vera, victor }
    }

    /// Requests a grant of `access:ENTITLEMENT` for `who` as alice; returns the change ID.
    pub fn request(&self, who: &str, entitlement: &str) -> String {
        let body = json!({ "identity": who, "grant": [format!("access:{entitlement}")], "justification": "on-call rotation", "ticket": ["JIRA-9"] });
        let reply = self.api.post("/api/v1/changes", &self.alice, body);
        reply.expect(201)["id"].as_str().unwrap().to_owned()
    }

    /// Waits until the server has signed a checkpoint over every event, so that nothing changes
    /// in the background any more (except lease renewals).
    pub fn settle(&self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let state = self.api.get("/api/v1/ledger/checkpoints", &self.root);
            let body = state.expect(200);
            if body["latest"]["size"] == body["events"] {
                return;
            }
            assert!(Instant::now() < deadline, "no checkpoint over every event: {body}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn fingerprint(&self) -> String {
        self.settle();
        self.world.fingerprint_except(&["leases"])
    }
}

fn state(http: &Http, id: &str) -> String {
    http.api.get(&format!("/api/v1/changes/{id}"), &http.root).expect(200)["state"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn the_full_lifecycle_runs_over_http_with_four_tokens() {
    let http = Http::start(World::new());
    let api = &http.api;
    let id = http.request("dave", "eng-read");
    let approved = api.post(&format!("/api/v1/changes/{id}/approve"), &http.bob, json!({}));
    assert_eq!(approved.expect(200)["state"], "approved");
    let executed = api.post(&format!("/api/v1/changes/{id}/execute"), &http.executor, json!({}));
    assert_eq!(executed.expect(200)["state"], "implemented");
    let verified = api.post(&format!("/api/v1/changes/{id}/verify"), &http.executor, json!({}));
    assert_eq!(verified.expect(200)["state"], "verified");
    let reviewed = api.post(
        &format!("/api/v1/changes/{id}/review"),
        &http.carol,
        json!({ "notes": "matches the ticket" }),
    );
    let change = reviewed.expect(200);
    assert_eq!(change["state"], "reviewed");
    // The trail names the authenticated identities, each for its own step.
    assert_eq!(change["answers"]["who_asked"], "alice");
    assert_eq!(change["answers"]["who_approved"], json!(["bob"]));
    assert_eq!(change["answers"]["who_executed"], json!(["writ-executor"]));
    assert_eq!(change["answers"]["observed_equals_approved"], true);
    assert_eq!(change["answers"]["reviewed_by"], "carol");
    // The grant is on the real target, committed by the executor with the change ID.
    let access = std::fs::read_to_string(http.world.repo.join("access.toml")).unwrap();
    assert!(access.contains("\"dave\""), "{access}");
    assert!(git(&http.world.repo, &["log", "-1", "--format=%B"]).contains(&format!("Writ-Change: {id}")));
    // The same change through the CLI (same database) reads the same.
    let cli = http.world.writ(&["change", "show", &id, "--json"]).json();
    assert_eq!(cli["answers"], change["answers"]);
    // The whole ledger verifies.
    http.settle();
    let verify = api.get("/api/v1/ledger/verify", &http.root);
    assert_eq!(verify.expect(200)["ok"], true, "{}", verify.body);
}

#[test]
fn every_refused_request_gets_its_code_and_changes_nothing() {
    let http = Http::start(World::new());
    let api = &http.api;
    roles(&http.world, "bob", &["requester"]);
    let for_dave = http.request("dave", "eng-read");
    // bob asks for his own access: he may then not approve it.
    let bobs = api.post(
        "/api/v1/changes",
        &http.bob,
        json!({ "identity": "bob", "grant": ["access:deploy-prod"], "justification": "release duty" }),
    );
    let bobs = bobs.expect(201)["id"].as_str().unwrap().to_owned();
    let vendor = api.post(
        "/api/v1/changes",
        &http.vera,
        json!({ "identity": "vera", "grant": ["access:eng-read"], "justification": "acme support" }),
    );
    let vendor = vendor.expect(201)["id"].as_str().unwrap().to_owned();
    // A revoked token, revoked over the API by its owner.
    let doomed = token(&http.world, "alice");
    let doomed_id = doomed.split('_').nth(1).unwrap();
    api.send("DELETE", &format!("/api/v1/tokens/{doomed_id}"), Some(&doomed), &[], None).expect(200);

    let before = http.fingerprint();
    let approve = |id: &str| format!("/api/v1/changes/{id}/approve");
    // Authentication.
    api.send("POST", "/api/v1/changes", None, &[("content-type", "application/json")], Some(b"{}".to_vec()))
        .refused(401, "auth.missing_token");
    api.post("/api/v1/changes", "writ_0123456789abcdef_nope", json!({})).refused(401, "auth.invalid_token");
    let forged = format!(
        "{}{}",
        &http.alice[..http.alice.len() - 1],
        if http.alice.ends_with('0') { '1' } else { '0' }
    );
    api.post(&approve(&for_dave), &forged, json!({})).refused(401, "auth.invalid_token");
    api.post("/api/v1/changes", &doomed, json!({})).refused(401, "auth.token_revoked");
    // Roles.
    api.post(&approve(&for_dave), &http.alice, json!({})).refused(403, "auth.role_required");
    api.post(&format!("/api/v1/changes/{for_dave}/execute"), &http.bob, json!({}))
        .refused(403, "auth.role_required");
    api.post("/api/v1/identities", &http.alice, json!({ "name": "mallory", "kind": "human" }))
        .refused(403, "auth.role_required");
    api.post("/api/v1/tokens", &http.bob, json!({ "identity": "root", "label": "x" }))
        .refused(403, "auth.role_required");
    api.get("/api/v1/ledger/verify", &http.alice).refused(403, "auth.role_required");
    // Separation of duties, with the authenticated identity.
    api.post(&approve(&bobs), &http.bob, json!({})).refused(403, "sod.self_approval");
    api.post(&approve(&vendor), &http.victor, json!({})).refused(403, "sod.vendor_self_approval");
    api.post(&approve(&for_dave), &http.bob, json!({ "on_behalf_of": "dave" }))
        .refused(403, "sod.self_approval");
    // Vendor scope: vera (acme) may not touch internal people or changes.
    api.post(
        "/api/v1/changes",
        &http.vera,
        json!({ "identity": "dave", "grant": ["access:eng-read"], "justification": "x" }),
    )
    .refused(403, "auth.vendor_scope");
    api.post(&approve(&for_dave), &http.victor, json!({})).refused(403, "auth.vendor_scope");
    api.get(&format!("/api/v1/changes/{for_dave}"), &http.vera).refused(403, "auth.vendor_scope");
    let listed = api.get("/api/v1/changes", &http.vera);
    let ids: Vec<&str> =
        listed.expect(200)["items"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec![vendor.as_str()], "a vendor lists only its organisation's changes");
    // State: executing before approval.
    api.post(&format!("/api/v1/changes/{for_dave}/execute"), &http.executor, json!({}))
        .refused(409, "state.invalid_transition");
    // The body cannot name the actor; malformed JSON names the field.
    let named = api.post(
        "/api/v1/changes",
        &http.alice,
        json!({ "identity": "dave", "grant": ["access:eng-read"], "justification": "x", "requester": "bob" }),
    );
    named.refused(400, "request.malformed_json");
    assert_eq!(named.body["error"]["field"], "requester");
    let typed = api.post("/api/v1/changes", &http.alice, json!({ "identity": 7, "justification": "x" }));
    typed.refused(400, "request.malformed_json");
    assert_eq!(typed.body["error"]["field"], "identity");
    let broken = api.send(
        "POST",
        "/api/v1/changes",
        Some(&http.alice),
        &[("content-type", "application/json")],
        Some(b"{\"identity\": ".to_vec()),
    );
    broken.refused(400, "request.malformed_json");
    api.post("/api/v1/changes", &http.alice, json!({ "grant": ["access:eng-read"], "justification": "x" }))
        .refused(400, "request.missing_field");
    api.post(
        "/api/v1/changes",
        &http.alice,
        json!({ "identity": "dave", "grant": ["access:eng-read"], "justification": "" }),
    )
    .refused(400, "input.empty_justification");
    api.post(
        "/api/v1/changes",
        &http.alice,
        json!({ "identity": "nobody", "grant": ["access:eng-read"], "justification": "x" }),
    )
    .refused(404, "not_found");
    // Too large.
    let huge =
        json!({ "identity": "dave", "grant": ["access:eng-read"], "justification": "x".repeat(80 * 1024) });
    api.post("/api/v1/changes", &http.alice, huge).refused(413, "request.too_large");
    // Same idempotency key, different request.
    let key = [("idempotency-key", "k-refusals")];
    api.post_with(&approve(&for_dave), &http.alice, &key, json!({})).refused(403, "auth.role_required");

    assert_eq!(http.fingerprint(), before, "a refused request changed the database, ledger or repository");
    // And the refusals did not consume the idempotency key.
    api.post_with(&approve(&for_dave), &http.bob, &key, json!({})).expect(200);
}

#[test]
fn a_retried_write_with_the_same_idempotency_key_returns_the_same_change() {
    let http = Http::start(World::new());
    let api = &http.api;
    let body = json!({ "identity": "dave", "grant": ["access:eng-read"], "justification": "retry me" });
    let key = [("idempotency-key", "req-0001")];
    let first = api.post_with("/api/v1/changes", &http.alice, &key, body.clone());
    let id = first.expect(201)["id"].clone();
    let again = api.post_with("/api/v1/changes", &http.alice, &key, body.clone());
    assert_eq!(again.expect(201)["id"], id);
    assert_eq!(again.headers.get("idempotent-replayed").unwrap(), "true");
    // The same key for another request is refused; another caller's key space is separate.
    let other = json!({ "identity": "dave", "grant": ["access:finance-read"], "justification": "retry me" });
    api.post_with("/api/v1/changes", &http.alice, &key, other).refused(422, "idempotency.key_reused");
    // Eight retries at once: one change, never a second.
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (api, token, body) = (api.clone(), http.alice.clone(), body.clone());
            std::thread::spawn(move || {
                api.post_with("/api/v1/changes", &token, &[("idempotency-key", "req-0002")], body)
            })
        })
        .collect();
    let replies: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let ids: std::collections::BTreeSet<String> = replies
        .iter()
        .filter(|r| r.status == 201)
        .map(|r| r.body["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 1, "{replies:?}");
    assert!(replies.iter().all(|r| r.status == 201 || r.code() == "idempotency.in_progress"), "{replies:?}");
    let listed = api.get("/api/v1/changes?limit=10", &http.root);
    assert_eq!(listed.expect(200)["items"].as_array().unwrap().len(), 2, "exactly two changes exist");
    // An approval retried after it succeeded replays instead of failing as a second approval.
    let approve = format!("/api/v1/changes/{}/approve", id.as_str().unwrap());
    api.post_with(&approve, &http.bob, &[("idempotency-key", "ap-1")], json!({})).expect(200);
    let replay = api.post_with(&approve, &http.bob, &[("idempotency-key", "ap-1")], json!({}));
    assert_eq!(replay.expect(200)["approvals"].as_array().unwrap().len(), 1);
}

#[test]
fn tokens_are_stored_hashed_and_never_logged() {
    let http = Http::start(World::new());
    let id = http.request("dave", "eng-read");
    http.api.post(&format!("/api/v1/changes/{id}/approve"), &http.bob, json!({})).expect(200);
    let made = http.api.post("/api/v1/tokens", &http.root, json!({ "identity": "carol", "label": "ci" }));
    let fresh = made.expect(201)["token"].as_str().unwrap().to_owned();
    assert_eq!(made.headers.get("cache-control").unwrap(), "no-store");
    http.api.get("/api/v1/whoami", &fresh).expect(200);
    let listed = http.api.get("/api/v1/tokens", &http.root);
    assert!(!listed.body.to_string().contains(&fresh[20..]), "a listing shows a secret");
    http.settle();
    let log_text = std::fs::read_to_string(&http.server.log).unwrap();
    assert!(log_text.contains("request"), "the server logs requests at debug level");
    let mut files = vec![std::fs::read(&http.world.db).unwrap()];
    for suffix in ["-wal", "-shm"] {
        let mut path = http.world.db.clone().into_os_string();
        path.push(suffix);
        files.push(std::fs::read(path).unwrap_or_default());
    }
    files.push(log_text.into_bytes());
    for token in [&http.alice, &http.bob, &http.executor, &http.carol, &http.root, &fresh] {
        let secret = token.rsplit('_').next().unwrap();
        for file in &files {
            let text = String::from_utf8_lossy(file);
            assert!(!text.contains(secret), "a token secret appears in clear");
        }
    }
}

#[test]
fn openapi_lists_every_route_and_health_endpoints_answer() {
    let http = Http::start(World::new());
    let document = http.api.send("GET", "/api/v1/openapi.json", None, &[], None);
    let paths = document.expect(200)["paths"].as_object().unwrap().clone();
    for path in
        ["/api/v1/changes", "/api/v1/changes/{id}/approve", "/api/v1/tokens/{id}", "/api/v1/ledger/verify"]
    {
        assert!(paths.contains_key(path), "{path} missing");
    }
    assert!(paths["/api/v1/changes"]["post"]["parameters"].to_string().contains("Idempotency-Key"));
    assert_eq!(http.api.send("GET", "/healthz", None, &[], None).expect(200)["status"], "ok");
    assert_eq!(http.api.send("GET", "/readyz", None, &[], None).expect(200)["status"], "ready");
    http.api.get("/api/v1/nothing-here", &http.root).refused(404, "not_found");
}

#[test]
fn pages_of_changes_cover_every_change_once() {
    let http = Http::start(World::new());
    let mut made: Vec<String> = (0..7).map(|_| http.request("dave", "eng-read")).collect();
    made.sort();
    made.reverse();
    let mut seen = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let path = match &next {
            Some(before) => format!("/api/v1/changes?limit=3&before={before}"),
            None => "/api/v1/changes?limit=3".to_owned(),
        };
        let page = http.api.get(&path, &http.root);
        let body = page.expect(200);
        seen.extend(body["items"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap().to_owned()));
        match body["next"].as_str() {
            Some(cursor) => next = Some(cursor.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, made);
    http.api.get("/api/v1/changes?limit=0", &http.root).refused(400, "input.page_limit");
}

/// Two approvers and the requester act on the same change at the same moment. One approval
/// is all the change needs, so at most one approval is recorded; the cancel may land before or
/// after it. Every 200 corresponds to exactly one event and every refusal to none, the state is
/// the fold of those events, and the ledger verifies.
fn racing_decisions_end_in_one_state(http: &Http) {
    roles(&http.world, "dave", &["approver"]);
    let dave = token(&http.world, "dave");
    for round in 0..8 {
        let id = http.request("svc-ci", "eng-read");
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(3));
        let calls = [
            (http.bob.clone(), "approve", json!({})),
            (dave.clone(), "approve", json!({})),
            (http.alice.clone(), "cancel", json!({ "reason": "not needed after all" })),
        ];
        let threads: Vec<_> = calls
            .into_iter()
            .map(|(token, step, body)| {
                let (api, barrier, path) =
                    (http.api.clone(), barrier.clone(), format!("/api/v1/changes/{id}/{step}"));
                std::thread::spawn(move || {
                    barrier.wait();
                    (step, api.post(&path, &token, body))
                })
            })
            .collect();
        let replies: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        for (_, loser) in replies.iter().filter(|(_, r)| r.status != 200) {
            assert!(
                ["state.invalid_transition", "store.conflict"].contains(&loser.code()),
                "round {round}: {}",
                loser.body
            );
        }
        let won = |step: &str| replies.iter().filter(|(s, r)| *s == step && r.status == 200).count();
        let change = http.api.get(&format!("/api/v1/changes/{id}"), &http.root);
        let change = change.expect(200);
        let recorded =
            |kind: &str| change["events"].as_array().unwrap().iter().filter(|e| e["type"] == kind).count();
        assert_eq!(recorded("change.approved"), won("approve"), "round {round}: {change}");
        assert_eq!(recorded("change.cancelled"), won("cancel"), "round {round}: {change}");
        assert!(won("approve") <= 1, "round {round}: two approvals of a one-approval change");
        assert!(won("approve") + won("cancel") >= 1, "round {round}: every decision was refused");
        let expected = if won("cancel") == 1 { "cancelled" } else { "approved" };
        assert_eq!(state(http, &id), expected, "round {round}");
        let seqs: Vec<u64> =
            change["events"].as_array().unwrap().iter().map(|e| e["seq"].as_u64().unwrap()).collect();
        assert_eq!(seqs, (0..seqs.len() as u64).collect::<Vec<_>>(), "round {round}: gap or duplicate");
    }
    http.settle();
    assert_eq!(http.api.get("/api/v1/ledger/verify", &http.root).expect(200)["ok"], true);
}

#[test]
fn racing_approvals_and_cancel_end_in_one_state_on_sqlite() {
    racing_decisions_end_in_one_state(&Http::start(World::new()));
}

#[test]
fn racing_approvals_and_cancel_end_in_one_state_on_postgres() {
    let Some(config) = postgres() else { return };
    let url = postgres_database(&config, "writ_api_race");
    racing_decisions_end_in_one_state(&Http::start(World::on_postgres(&url)));
}

fn chattr(flag: &str, path: &std::path::Path) {
    let status = std::process::Command::new("chattr").arg(flag).arg(path).status().unwrap();
    assert!(status.success(), "chattr {flag} {} failed", path.display());
}

#[test]
fn a_server_whose_database_cannot_be_written_fails_closed_and_recovers() {
    let http = Http::start(World::new());
    let id = http.request("dave", "eng-read");
    let before = http.fingerprint();
    let wal = std::path::PathBuf::from(format!("{}-wal", http.world.db.display()));
    chattr("+i", &http.world.db);
    chattr("+i", &wal);
    let refused = http.api.post(&format!("/api/v1/changes/{id}/approve"), &http.bob, json!({}));
    let ready = http.api.send("GET", "/readyz", None, &[], None);
    let created = http.api.post(
        "/api/v1/changes",
        &http.alice,
        json!({ "identity": "dave", "grant": ["access:finance-read"], "justification": "x" }),
    );
    chattr("-i", &wal);
    chattr("-i", &http.world.db);
    refused.refused(503, "store.unavailable");
    created.refused(503, "store.unavailable");
    assert_eq!(ready.status, 503, "{}", ready.body);
    assert_eq!(http.world.fingerprint_except(&["leases"]), before, "a refused write left a trace");
    // Once the disk takes writes again, so does the server, and nothing was half-done.
    http.api.post(&format!("/api/v1/changes/{id}/approve"), &http.bob, json!({})).expect(200);
    assert_eq!(http.api.send("GET", "/readyz", None, &[], None).expect(200)["status"], "ready");
}

#[test]
fn the_server_reads_a_configuration_file_and_the_environment_overrides_it() {
    let world = World::new();
    let config = world.dir.path().join("writ.toml");
    std::fs::write(
        &config,
        format!("db = {:?}\nlisten = \"127.0.0.1:1\"\nworkers = 8\n", world.db.to_str().unwrap()),
    )
    .unwrap();
    let log = world.dir.path().join("serve.log");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_writ"))
        .args(["serve", "--config", config.to_str().unwrap()])
        .env_remove("WRIT_DB")
        .env("WRIT_LISTEN", "127.0.0.1:0")
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line)
        .unwrap();
    let _ = std::process::Command::new("kill").arg(child.id().to_string()).status();
    let status = child.wait().unwrap();
    let base = line.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("{line:?}"));
    assert!(!base.ends_with(":1"), "WRIT_LISTEN overrides the file: {base}");
    assert!(status.success(), "SIGTERM is a graceful stop: {status}");
    let bad = world.dir.path().join("bad.toml");
    std::fs::write(&bad, "listen = 5\nsurprise = true\n").unwrap();
    let run = world.writ(&["serve", "--config", bad.to_str().unwrap()]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("input.config"), "{}", run.stderr);
}
