//! Execution that always finishes and tells the truth, end to end: concurrent executes from two
//! executors leave one attempt; `writ serve` killed mid-execution resumes its stranded changes
//! on its own and links what the cut-off attempt wrote; the executor retries its own attempt
//! over the API; a stat-dirty checkout or a stale lock leaves the repository consistent; the
//! configured timeout bounds the whole exchange with a target.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::api::Http;
use crate::harness::{World, git};
use crate::proxy::{Mode, Proxy};
use crate::server::{Api, Server, roles, token};

fn shown(w: &World, id: &str) -> Value {
    w.writ(&["change", "show", id, "--json"]).json()
}

fn events_of(change: &Value, kind: &str) -> Vec<Value> {
    change["events"].as_array().unwrap().iter().filter(|e| e["type"] == kind).cloned().collect()
}

fn commits_of(w: &World, id: &str) -> Vec<String> {
    git(&w.repo, &["log", "--format=%H %an", &format!("--grep=Writ-Change: {id}")])
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Waits (up to `limit`) for `done` to hold of the change, re-reading it.
fn wait_for(w: &World, id: &str, limit: Duration, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let change = shown(w, id);
        if done(&change) {
            return change;
        }
        assert!(Instant::now() < deadline, "gave up waiting on {id}: {change:#}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn twenty_concurrent_executes_from_two_executors_leave_one_attempt() {
    let http = Http::start(World::new());
    http.world.writ(&["identity", "add", "writ-executor-2", "--kind", "workload", "--owner", "dave"]).ok();
    roles(&http.world, "writ-executor-2", &["executor"]);
    let second = token(&http.world, "writ-executor-2");
    for entitlement in ["eng-read", "deploy-prod", "finance-read"] {
        let id = http.request("dave", entitlement);
        http.api.post(&format!("/api/v1/changes/{id}/approve"), &http.bob, json!({})).expect(200);
        let replies: Vec<(String, u16, Value)> = std::thread::scope(|scope| {
            let calls: Vec<_> = (0..20)
                .map(|i| {
                    let (who, token) = if i % 2 == 0 {
                        ("writ-executor", http.executor.clone())
                    } else {
                        ("writ-executor-2", second.clone())
                    };
                    let (api, path) = (Api::new(&http.server.base), format!("/api/v1/changes/{id}/execute"));
                    scope.spawn(move || {
                        let reply = api.post(&path, &token, json!({}));
                        (who.to_owned(), reply.status, reply.body)
                    })
                })
                .collect();
            calls.into_iter().map(|c| c.join().unwrap()).collect()
        });
        let winners: Vec<&(String, u16, Value)> =
            replies.iter().filter(|(_, status, _)| *status == 200).collect();
        assert_eq!(winners.len(), 1, "exactly one caller executes: {replies:#?}");
        assert_eq!(winners[0].2["state"], "implemented");
        for (_, status, body) in replies.iter().filter(|(_, status, _)| *status != 200) {
            assert_eq!(*status, 409, "{body}");
            let code = body["error"]["code"].as_str().unwrap();
            assert!(
                ["state.execution_in_progress", "state.invalid_transition"].contains(&code),
                "a refused caller got {code}: {body}"
            );
        }
        let change = shown(&http.world, &id);
        assert_eq!(events_of(&change, "change.execution_started").len(), 1, "{change:#}");
        assert_eq!(change["events"].as_array().unwrap().len(), 5, "only one attempt's events: {change:#}");
        let executor = &winners[0].0;
        assert_eq!(change["answers"]["who_executed"], json!([executor]));
        let commits = commits_of(&http.world, &id);
        assert_eq!(commits.len(), 1, "one write on the target: {commits:?}");
        assert!(
            commits[0].ends_with(executor.as_str()),
            "the commit names the executor that wrote: {commits:?}"
        );
        assert_eq!(change["executions"][0]["writes"], json!([commits[0].split(' ').next().unwrap()]));
    }
    assert_eq!(git(&http.world.repo, &["status", "--porcelain"]), "");
    http.settle();
    assert_eq!(http.api.get("/api/v1/ledger/verify", &http.root).expect(200)["ok"], true);
}

#[test]
fn the_executor_retries_its_own_failed_attempt_over_the_api() {
    let http = Http::start(World::new());
    let id = http.request("dave", "eng-read");
    http.api.post(&format!("/api/v1/changes/{id}/approve"), &http.bob, json!({})).expect(200);
    // The repository's access file has a local edit: the attempt fails, nothing written.
    let file = http.world.repo.join("access.toml");
    let original = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, format!("{original}\n# local note\n")).unwrap();
    let failed = http.api.post(&format!("/api/v1/changes/{id}/execute"), &http.executor, json!({}));
    let failed = failed.expect(200);
    assert_eq!(failed["state"], "failed", "{failed}");
    let error = failed["executions"][0]["error"].as_str().unwrap();
    assert!(error.contains("local modifications") && error.contains("nothing was written"), "{error}");
    assert!(commits_of(&http.world, &id).is_empty());
    std::fs::write(&file, original).unwrap();
    // The same executor retries.
    let retried = http.api.post(&format!("/api/v1/changes/{id}/execute"), &http.executor, json!({}));
    assert_eq!(retried.expect(200)["state"], "implemented");
    let change = shown(&http.world, &id);
    assert_eq!(
        change["answers"]["who_executed"],
        json!(["writ-executor", "writ-executor"]),
        "one per attempt"
    );
    assert_eq!(git(&http.world.repo, &["status", "--porcelain"]), "");
}

/// A server whose claims last 2 s, on `world`'s database.
fn serve(world: &World, log: &str) -> Server {
    let db_args = world.db_args();
    let args: Vec<&str> = db_args.iter().map(String::as_str).collect();
    Server::start_with(&args, &["--claim-ttl", "2s"], &world.dir.path().join(log))
}

#[test]
fn a_server_killed_mid_execution_resumes_on_its_own_and_ends_verified_repeatedly() {
    let world = World::new();
    roles(&world, "alice", &["requester"]);
    roles(&world, "bob", &["approver"]);
    world.writ(&["identity", "add", "writ-executor", "--kind", "workload", "--owner", "dave"]).ok();
    roles(&world, "writ-executor", &["executor"]);
    let executor = token(&world, "writ-executor");
    let git_dir = world.repo.join(".git");
    for (round, entitlement) in ["eng-read", "deploy-prod", "finance-read"].iter().enumerate() {
        let id = world.request("dave", &format!("access:{entitlement}"));
        world.writ(&["change", "approve", &id, "--as", "bob"]).ok();
        let server = serve(&world, &format!("serve-{round}.log"));
        // Another Writ apply holds the repository: the attempt waits inside the connector.
        let held = std::fs::File::create(git_dir.join("writ-apply.lock")).unwrap();
        let (api, path, token) = (server.api(), format!("/api/v1/changes/{id}/execute"), executor.clone());
        let caller = std::thread::spawn(move || api.post(&path, &token, json!({})).status);
        wait_for(&world, &id, Duration::from_secs(10), |c| c["state"] == "implementing");
        server.kill();
        let _ = caller.join();
        drop(held);
        std::fs::remove_file(git_dir.join("writ-apply.lock")).unwrap();
        assert!(commits_of(&world, &id).is_empty(), "nothing was written before the kill");
        // Restarted, the server resumes the change itself once the dead attempt's claim ends.
        let restarted = serve(&world, &format!("serve-{round}-again.log"));
        let change = wait_for(&world, &id, Duration::from_secs(20), |c| c["state"] == "verified");
        let executions = change["executions"].as_array().unwrap();
        assert_eq!(executions.len(), 2, "{change:#}");
        assert_eq!(executions[0]["executor"], "writ-executor");
        assert_eq!(executions[0]["recovered"], true);
        assert!(executions[0]["error"].as_str().unwrap().contains("0 of 1 operations are in effect"));
        assert_eq!(executions[1]["executor"], "system:writ-engine");
        let commits = commits_of(&world, &id);
        assert_eq!(commits.len(), 1, "{commits:?}");
        assert_eq!(executions[1]["writes"], json!([commits[0].split(' ').next().unwrap()]));
        assert_eq!(events_of(&change, "change.attempt_recovered").len(), 1);
        assert_eq!(git(&world.repo, &["status", "--porcelain"]), "");
        drop(restarted);
    }
    assert_eq!(world.writ(&["ledger", "verify"]).code, 0);
}

/// A world with the PostgreSQL target `pg` (its role `{p}_read` the entitlement) reached through a
/// fault proxy with the target timeout `timeout`, and the identity `{p}_dave`; `None` without a
/// PostgreSQL server.
fn proxied_postgres(p: &str, timeout: &str) -> Option<(World, postgres::Client, Proxy)> {
    let config = crate::server::postgres()?;
    let (pg, dsn) = crate::pgtarget::target(&config, p);
    let world = World::new();
    let proxy = Proxy::start(&format!("127.0.0.1:{}", crate::server::port_of(&dsn)));
    let proxied: Vec<String> = dsn
        .split_whitespace()
        .map(|kv| if kv.starts_with("port=") { format!("port={}", proxy.port) } else { kv.to_owned() })
        .collect();
    let (roles, proxied) = (format!("{p}_read"), proxied.join(" "));
    let add = ["target", "add", "pg", "--connector", "postgres", "--roles", &roles, "--dsn", &proxied];
    world.writ(&[&add[..], &["--timeout", timeout]].concat()).ok();
    world.writ(&["identity", "add", &format!("{p}_dave"), "--kind", "human"]).ok();
    Some((world, pg, proxy))
}

#[test]
fn a_write_that_landed_before_the_kill_is_linked_to_the_attempt_that_made_it() {
    let Some((world, mut pg, proxy)) = proxied_postgres("exk", "30s") else { return };
    world.writ(&["identity", "add", "writ-executor", "--kind", "workload", "--owner", "dave"]).ok();
    roles(&world, "writ-executor", &["executor"]);
    let executor = token(&world, "writ-executor");
    let id = world.request_with(&[
        "--as",
        "alice",
        "--identity",
        "exk_dave",
        "--grant",
        "pg:exk_read",
        "--justification",
        "kill test",
    ]);
    world.writ(&["change", "approve", &id, "--as", "bob"]).ok();
    let server = serve(&world, "serve.log");
    // The write reaches PostgreSQL; its answer never comes back.
    proxy.set(Mode::Mute(id.as_bytes().to_vec()));
    let (api, path) = (server.api(), format!("/api/v1/changes/{id}/execute"));
    let caller = std::thread::spawn(move || api.post(&path, &executor, json!({})).status);
    let deadline = Instant::now() + Duration::from_secs(15);
    while !crate::pgtarget::member(&mut pg, "exk_dave", "exk_read") {
        assert!(Instant::now() < deadline, "the write never landed");
        std::thread::sleep(Duration::from_millis(50));
    }
    server.kill();
    let _ = caller.join();
    proxy.set(Mode::Pass);
    let restarted = serve(&world, "serve-again.log");
    let change = wait_for(&world, &id, Duration::from_secs(20), |c| c["state"] == "verified");
    let executions = change["executions"].as_array().unwrap();
    assert_eq!(executions.len(), 1, "the write was recovered, not made again: {change:#}");
    assert_eq!(executions[0]["executor"], "writ-executor");
    assert_eq!(executions[0]["recovered"], true);
    assert_eq!(executions[0]["error"], Value::Null);
    let write = executions[0]["writes"][0].as_str().unwrap().to_owned();
    assert!(write.starts_with(&format!("writ_audit.changes change_id={id} at=")), "{write}");
    let recovered = &events_of(&change, "change.attempt_recovered")[0];
    assert!(recovered["detail"].as_str().unwrap().contains(&write), "{recovered}");
    let op = &change["operations"][0];
    assert_eq!((op["before"].as_str(), op["after"].as_str()), (Some("absent"), Some("present")), "{op}");
    let rows: i64 =
        pg.query_one("SELECT count(*) FROM writ_audit.changes WHERE change_id = $1", &[&id]).unwrap().get(0);
    assert_eq!(rows, 1, "one write on the target");
    drop(restarted);
    assert_eq!(world.writ(&["ledger", "verify"]).code, 0);
}

#[test]
fn a_stat_dirty_checkout_and_a_stale_index_lock_leave_the_repository_consistent() {
    let w = World::new();
    let id = w.request("dave", "access:eng-read");
    w.writ(&["change", "approve", &id, "--as", "bob"]).ok();
    std::thread::sleep(Duration::from_millis(1100));
    let file = w.repo.join("access.toml");
    std::fs::write(&file, std::fs::read(&file).unwrap()).unwrap();
    let lock = w.repo.join(".git/index.lock");
    std::fs::write(&lock, "").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&lock)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - Duration::from_secs(300))
        .unwrap();
    assert_eq!(w.writ(&["change", "execute", &id, "--as", "carol"]).ok(), format!("{id} implemented"));
    assert_eq!(w.writ(&["change", "verify", &id]).ok(), format!("{id} verified"));
    assert!(!lock.exists());
    assert_eq!(git(&w.repo, &["status", "--porcelain"]), "", "index and working tree follow the branch");
    assert!(std::fs::read_to_string(&file).unwrap().contains("\"dave\""));
    // A person's next commit keeps the grant.
    std::fs::write(w.repo.join("NOTES"), "n").unwrap();
    git(&w.repo, &["add", "NOTES"]);
    git(&w.repo, &["-c", "user.name=P", "-c", "user.email=p@example.invalid", "commit", "-q", "-m", "notes"]);
    assert!(git(&w.repo, &["show", "HEAD:access.toml"]).contains("\"dave\""));
    assert_eq!(w.writ(&["change", "verify", &id]).code, 3, "already verified: state refusal");
}

#[test]
fn the_timeout_bounds_the_whole_exchange_with_a_stopped_target() {
    let Some((w, _pg, proxy)) = proxied_postgres("exs", "3s") else { return };
    let id = w.request_with(&[
        "--as",
        "alice",
        "--identity",
        "exs_dave",
        "--grant",
        "pg:exs_read",
        "--justification",
        "timeout",
    ]);
    w.writ(&["change", "approve", &id, "--as", "bob"]).ok();
    proxy.set(Mode::Stall);
    let started = Instant::now();
    let run = w.writ(&["change", "execute", &id, "--as", "carol"]);
    let took = started.elapsed();
    assert_eq!(run.code, 7, "{}", run.stderr);
    assert!(run.stderr.contains("no answer within 3s"), "{}", run.stderr);
    assert!(took < Duration::from_millis(4500), "took {took:?} with --timeout 3s");
    assert!(took >= Duration::from_secs(3), "gave up before the timeout: {took:?}");
    assert_eq!(shown(&w, &id)["state"], "failed");
}

#[test]
fn an_outcome_the_store_refused_after_the_write_exits_9_and_is_recovered_with_its_commit() {
    let w = World::new();
    let id = w.request("dave", "access:eng-read");
    w.writ(&["change", "approve", &id, "--as", "bob"]).ok();
    let apply_lock = w.repo.join(".git/writ-apply.lock");
    // Pause the attempt inside the git connector, lock the database, then let the write land.
    let held = std::fs::File::create(&apply_lock).unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_writ"))
        .args([
            "--db",
            w.db.to_str().unwrap(),
            "--claim-ttl",
            "1s",
            "change",
            "execute",
            &id,
            "--as",
            "carol",
        ])
        .env_remove("WRIT_DB")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(&w, &id, Duration::from_secs(10), |c| c["state"] == "implementing");
    let db = rusqlite::Connection::open(&w.db).unwrap();
    db.execute_batch("BEGIN EXCLUSIVE").unwrap();
    drop(held);
    std::fs::remove_file(&apply_lock).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while commits_of(&w, &id).is_empty() {
        assert!(Instant::now() < deadline, "the write never landed");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Longer than the store's busy timeout: the outcome cannot be recorded.
    std::thread::sleep(Duration::from_secs(6));
    db.execute_batch("ROLLBACK").unwrap();
    drop(db);
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(9), "{stderr}");
    assert!(stderr.contains("error[change.outcome_unrecorded]"), "{stderr}");
    assert!(stderr.contains("the targets were written"), "{stderr}");
    let commit = commits_of(&w, &id)[0].split(' ').next().unwrap().to_owned();
    assert!(stderr.contains(&commit), "the error names the write: {stderr}");
    // Once the claim has ended, the next execute recovers the attempt and links its commit.
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(w.writ(&["change", "execute", &id, "--as", "carol"]).ok(), format!("{id} implemented"));
    let change = shown(&w, &id);
    let executions = change["executions"].as_array().unwrap();
    assert_eq!(executions.len(), 1, "{change:#}");
    assert_eq!((&executions[0]["recovered"], &executions[0]["writes"]), (&json!(true), &json!([commit])));
    assert_eq!(commits_of(&w, &id).len(), 1, "not written twice");
    assert_eq!(w.writ(&["change", "verify", &id]).ok(), format!("{id} verified"));
    assert_eq!(w.writ(&["ledger", "verify"]).code, 0);
}
