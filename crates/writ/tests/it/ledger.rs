//! The tamper-evident ledger against an attacker with write access to the database file: each
//! attack is plain SQL on a copy of a real database, and `writ ledger verify` must name it.

use std::path::{Path, PathBuf};

use crate::harness::{Run, World};

/// A world with one complete change (events 0..=12) under a signed checkpoint.
fn ledger_world() -> (World, String) {
    let w = World::new();
    let id = w.request("dave", "access:eng-read");
    w.writ(&["change", "approve", &id, "--as", "bob"]).ok();
    w.writ(&["change", "execute", &id]).ok();
    w.writ(&["change", "verify", &id]).ok();
    w.writ(&["change", "review", &id, "--as", "carol"]).ok();
    let checkpoint = w.writ(&["ledger", "checkpoint", "--json"]).json();
    assert_eq!(checkpoint["size"], 13);
    (w, id)
}

pub fn key(w: &World) -> PathBuf {
    let mut name = w.db.as_os_str().to_owned();
    name.push(".key");
    PathBuf::from(name)
}

/// Copies the database, lets `attack` change the copy with raw SQL, and verifies the copy.
fn attack(w: &World, name: &str, attack: impl FnOnce(&rusqlite::Connection)) -> Run {
    let original = rusqlite::Connection::open(&w.db).unwrap();
    original.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)").unwrap();
    drop(original);
    let copy = w.dir.path().join(format!("{name}.db"));
    std::fs::copy(&w.db, &copy).unwrap();
    let connection = rusqlite::Connection::open(&copy).unwrap();
    connection
        .execute_batch(
            "DROP TRIGGER events_no_update; DROP TRIGGER events_no_delete;
             DROP TRIGGER checkpoints_no_update; DROP TRIGGER checkpoints_no_delete;",
        )
        .unwrap();
    attack(&connection);
    drop(connection);
    verify(&copy, &key(w))
}

fn verify(db: &Path, key: &Path) -> Run {
    // The copy's clear text is checked with the original's HMAC key.
    let hmac = key.with_extension("hmac");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_writ"))
        .args(["--db", db.to_str().unwrap(), "--ledger-key", key.to_str().unwrap()])
        .args(["--hmac-key", hmac.to_str().unwrap(), "ledger", "verify"])
        .output()
        .unwrap();
    crate::harness::Run::from_output(output)
}

/// Runs `writ ARGS` on a copy of the world's database with the world's key files.
pub fn on_copy(w: &World, copy: &Path, args: &[&str]) -> Run {
    let hmac = key(w).with_extension("hmac");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_writ"))
        .args(["--db", copy.to_str().unwrap(), "--hmac-key", hmac.to_str().unwrap()])
        .args(["--ledger-key", key(w).to_str().unwrap()])
        .args(args)
        .output()
        .unwrap();
    Run::from_output(output)
}

fn assert_detected(run: &Run, code: &str, index_text: &str) {
    assert_eq!(run.code, 8, "stdout: {}\nstderr: {}", run.stdout, run.stderr);
    assert!(
        run.stderr.starts_with(&format!("error[{code}]: ledger verification failed: ")),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains(index_text), "expected {index_text:?} in {}", run.stderr);
}

fn bytes_of(connection: &rusqlite::Connection, index: i64) -> Vec<u8> {
    connection.query_row("SELECT bytes FROM events WHERE idx = ?1", [index], |r| r.get(0)).unwrap()
}

#[test]
fn an_untouched_ledger_verifies_and_proves() {
    let (w, _) = ledger_world();
    let run = w.writ(&["ledger", "verify", "--json"]).json();
    assert_eq!(run["ok"], true);
    assert_eq!(run["events"], 13);
    assert_eq!(run["covered"], 13);
    let proof = w.writ(&["ledger", "prove", "--index", "8", "--json"]).json();
    let hash =
        |v: &serde_json::Value| <[u8; 32]>::try_from(hex::decode(v.as_str().unwrap()).unwrap()).unwrap();
    let path: Vec<[u8; 32]> = proof["proof"].as_array().unwrap().iter().map(hash).collect();
    assert!(writ_ledger::merkle::verify_inclusion(
        &hash(&proof["leaf_hash"]),
        8,
        13,
        &path,
        &hash(&proof["root"])
    ));
    let consistency = w.writ(&["ledger", "prove", "--from", "6", "--to", "13", "--json"]).json();
    let path: Vec<[u8; 32]> = consistency["proof"].as_array().unwrap().iter().map(hash).collect();
    assert!(writ_ledger::merkle::verify_consistency(
        6,
        13,
        &hash(&consistency["old_root"]),
        &hash(&consistency["new_root"]),
        &path
    ));
    let uncovered = w.writ(&["ledger", "prove", "--index", "13"]);
    assert_eq!(uncovered.code, 4, "{}", uncovered.stderr);
}

#[test]
fn editing_one_byte_of_an_event_is_named() {
    let (w, _) = ledger_world();
    let run = attack(&w, "edit", |c| {
        let edited =
            String::from_utf8(bytes_of(c, 8)).unwrap().replacen("\"bob\"", "\"bab\"", 1).into_bytes();
        c.execute("UPDATE events SET bytes = ?1 WHERE idx = 8", [edited]).unwrap();
    });
    assert_detected(&run, "ledger.edited_event", "event 8 was edited");
}

#[test]
fn editing_an_event_and_its_recorded_hash_still_breaks_the_signed_root() {
    let (w, _) = ledger_world();
    let run = attack(&w, "edit-hash", |c| {
        let edited =
            String::from_utf8(bytes_of(c, 8)).unwrap().replacen("\"bob\"", "\"bab\"", 1).into_bytes();
        let leaf = writ_ledger::leaf_hash(&edited).to_vec();
        c.execute("UPDATE events SET bytes = ?1, leaf = ?2 WHERE idx = 8", rusqlite::params![edited, leaf])
            .unwrap();
    });
    assert_detected(&run, "ledger.root_mismatch", " was edited, reordered, replaced or removed");
    // The range runs from the newest checkpoint that still matches to the first that does
    // not: it holds event 8.
    let range = run.stderr.split("at index ").nth(1).unwrap().split(' ').next().unwrap();
    let (from, to) = range.split_once("..").unwrap();
    let (from, to): (u64, u64) = (from.parse().unwrap(), to.parse().unwrap());
    assert!(from <= 8 && 8 < to, "{}", run.stderr);
}

#[test]
fn deleting_an_event_is_named() {
    let (w, _) = ledger_world();
    let run = attack(&w, "delete", |c| {
        c.execute("DELETE FROM events WHERE idx = 9", []).unwrap();
    });
    assert_detected(&run, "ledger.missing_event", "event 9 is missing");
}

#[test]
fn swapping_two_events_is_named() {
    let (w, _) = ledger_world();
    let run = attack(&w, "swap", |c| {
        c.execute_batch(
            "UPDATE events SET idx = -1 WHERE idx = 9;
             UPDATE events SET idx = 9, seq = 4 WHERE idx = 10;
             UPDATE events SET idx = 10, seq = 3 WHERE idx = -1;",
        )
        .unwrap();
    });
    assert_detected(&run, "ledger.reordered_events", "event 9 is out of sequence");
}

#[test]
fn truncating_below_a_checkpoint_is_named() {
    let (w, _) = ledger_world();
    let run = attack(&w, "truncate", |c| {
        c.execute("DELETE FROM events WHERE idx >= 10", []).unwrap();
    });
    assert_detected(&run, "ledger.truncated", "the log holds 10");
}

#[test]
fn a_replaced_checkpoint_signature_is_named() {
    let (w, _) = ledger_world();
    let run = attack(&w, "signature", |c| {
        let note: String =
            c.query_row("SELECT note FROM checkpoints WHERE size = 13", [], |r| r.get(0)).unwrap();
        let (head, signature) = note.trim_end().rsplit_once(' ').unwrap();
        let mut chars: Vec<char> = signature.chars().collect();
        chars[20] = if chars[20] == 'Q' { 'R' } else { 'Q' };
        let forged = format!("{head} {}\n", chars.into_iter().collect::<String>());
        c.execute("UPDATE checkpoints SET note = ?1 WHERE size = 13", [forged]).unwrap();
    });
    assert_detected(&run, "ledger.bad_signature", "checkpoint at size 13");
}

#[test]
fn a_checkpoint_signed_with_another_key_is_an_unknown_key() {
    let (w, _) = ledger_world();
    let run = attack(&w, "rekey", |c| {
        let note: String =
            c.query_row("SELECT note FROM checkpoints WHERE size = 13", [], |r| r.get(0)).unwrap();
        let origin = note.lines().next().unwrap().to_owned();
        let attacker = writ_ledger::checkpoint::NoteSigner::from_seed(&origin, [9; 32]).unwrap();
        let body = note.split("\n\n").next().unwrap();
        let mut lines = body.lines();
        let checkpoint = writ_ledger::checkpoint::Checkpoint {
            origin: lines.next().unwrap().to_owned(),
            size: lines.next().unwrap().parse().unwrap(),
            root: [0; 32],
        };
        c.execute("UPDATE checkpoints SET note = ?1 WHERE size = 13", [attacker.sign(&checkpoint)]).unwrap();
    });
    assert_detected(&run, "ledger.unknown_key", "unknown key");
}

#[test]
fn checkpointing_refuses_to_sign_over_a_tampered_history() {
    let (w, id) = ledger_world();
    let connection = rusqlite::Connection::open(&w.db).unwrap();
    connection.execute_batch("DROP TRIGGER events_no_update").unwrap();
    let edited =
        String::from_utf8(bytes_of(&connection, 8)).unwrap().replacen("\"bob\"", "\"bab\"", 1).into_bytes();
    connection.execute("UPDATE events SET bytes = ?1 WHERE idx = 8", [edited]).unwrap();
    drop(connection);
    let _ = id;
    w.writ(&["identity", "add", "erin", "--kind", "human"]).ok();
    let run = w.writ(&["ledger", "checkpoint"]);
    assert_ne!(run.code, 0);
    assert!(run.stderr.contains("do not match the checkpoint at size 13"), "{}", run.stderr);
}

#[test]
fn a_deleted_event_beyond_the_first_page_is_named_once() {
    let w = World::new();
    // More events than one read page (10,000), then a deletion past the page boundary.
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_writ"))
        .args(["--db", w.db.to_str().unwrap(), "load-append", "--count", "10100", "--threads", "4"])
        .output()
        .unwrap();
    assert!(run.status.success());
    w.writ(&["ledger", "checkpoint"]).ok();
    let verify = attack(&w, "deep-delete", |c| {
        c.execute("DELETE FROM events WHERE idx = 50", []).unwrap();
    });
    assert_detected(&verify, "ledger.missing_event", "event 50 is missing");
    assert!(
        !verify.stdout.contains("out of order") && !verify.stderr.contains("out of order"),
        "{}",
        verify.stderr
    );
}

/// Attacks on the registry tables (plain SQL, every event left intact): `verify` names the
/// table and the key of each, because each table is rebuilt from the ledger's events.
#[test]
fn sql_edits_of_the_registry_tables_are_named_by_verify() {
    let (w, _) = ledger_world();
    w.writ(&["identity", "add", "erin", "--kind", "human"]).ok();
    w.writ(&["role", "grant", "alice", "requester"]).ok();
    let token = w.writ(&["token", "create", "--identity", "bob", "--label", "laptop", "--json"]).json();
    let token = token["id"].as_str().unwrap().to_owned();
    w.writ(&["token", "revoke", &token]).ok();
    w.writ(&["delegation", "grant", "carol", "alice", "--for", "7d"]).ok();
    w.writ(&["identity", "disable", "erin", "--reason", "left"]).ok();
    w.writ(&["identity", "link-scim", "dave", "--external-id", "00u-dave"]).ok();
    w.writ(&["ledger", "checkpoint"]).ok();
    assert_eq!(verify(&w.db, &key(&w)).code, 0, "untouched, the tables are what the ledger says");

    type Attack = (&'static str, &'static str, &'static str);
    let attacks: Vec<Attack> = vec![
        ("role", "INSERT INTO roles (identity, role) VALUES ('alice', 'admin')", "roles alice admin"),
        ("role gone", "DELETE FROM roles WHERE identity = 'alice'", "roles alice requester"),
        (
            "token",
            "UPDATE tokens SET revoked_ms = NULL, expires_ms = 4102444800000 WHERE identity = 'bob'",
            "tokens ",
        ),
        ("state", "UPDATE identities SET state = 'active' WHERE name = 'erin'", "identities erin"),
        ("owner", "UPDATE identities SET owner = 'bob' WHERE name = 'svc-ci'", "identities svc-ci"),
        (
            "setting",
            "UPDATE target_settings SET value = '/srv/elsewhere' WHERE target = 'access'",
            "targets access",
        ),
        (
            "policy",
            "INSERT INTO policies (hash, files, loaded_ms) VALUES ('sha256:forged', '{}', 1)",
            "policies in force",
        ),
        ("delegation", "UPDATE delegations SET until_ms = 4102444800000", "delegations carol → alice"),
        (
            "forged delegation",
            "INSERT INTO delegations (principal, delegate, until_ms, created_ms) VALUES ('bob', 'alice', 4102444800000, 1)",
            "delegations bob → alice",
        ),
        ("scim link", "UPDATE scim_links SET external_id = '00u-mallory'", "scim_links dave"),
    ];
    for (name, sql, named) in attacks {
        let run = attack(&w, &name.replace(' ', "-"), |c| c.execute_batch(sql).unwrap());
        assert_eq!(run.code, 8, "{name}: stdout: {}\nstderr: {}", run.stdout, run.stderr);
        assert!(
            run.stderr.starts_with("error[ledger.projection_diverged]: ledger verification failed: "),
            "{name}: {}",
            run.stderr
        );
        assert!(run.stderr.contains(named), "{name}: expected {named:?} in {}", run.stderr);
    }
}

/// The change side: a change's row, the grants it implemented and their expiry, findings,
/// exceptions and kept clear text are each checked against the ledger.
#[test]
fn sql_edits_of_changes_grants_findings_exceptions_and_sealed_text_are_named_by_verify() {
    let (w, done) = ledger_world();
    let finding = crate::exceptions::missed_finding(&w);
    let exception = w.writ(&crate::exceptions::request(&finding, "dave", "carol", "1h")).json();
    let exception = exception["id"].as_str().unwrap().to_owned();
    let pending = w.request("carol", "access:eng-read");
    w.writ(&["ledger", "checkpoint"]).ok();
    assert_eq!(verify(&w.db, &key(&w)).code, 0, "untouched, the tables are what the ledger says");

    let state = format!("UPDATE changes SET state = 'reviewed' WHERE id = '{pending}'");
    let forged = format!(
        "INSERT INTO grants (identity, target, entitlement, change_id, granted_ms, expires_ms)
         VALUES ('carol', 'access', 'deploy-prod', '{done}', 1, NULL)"
    );
    let attacks: Vec<(&str, String, String)> = vec![
        ("hidden change", state, format!("changes {pending}: the ledger says grant pending_approval")),
        (
            "expiry",
            "UPDATE grants SET expires_ms = 1 WHERE identity = 'dave'".into(),
            "grants dave access:eng-read".into(),
        ),
        ("forged grant", forged, "grants carol access:deploy-prod: the ledger says absent".into()),
        (
            "grant gone",
            "DELETE FROM grants WHERE identity = 'dave'".into(),
            "grants dave access:eng-read".into(),
        ),
        ("finding", "UPDATE findings SET state = 'resolved'".into(), format!("findings {finding}")),
        (
            "exception",
            "UPDATE exceptions SET expires_ms = 4102444800000".into(),
            format!("exceptions {exception}"),
        ),
        (
            "policy files",
            "UPDATE policies SET files = replace(files, '2s', '9s')".into(),
            "policies in force".into(),
        ),
        (
            "clear text",
            "UPDATE sensitive SET value = 'Emergency approved by CISO' WHERE value = 'needed for the job'"
                .into(),
            "sensitive hk-".into(),
        ),
    ];
    for (name, sql, named) in &attacks {
        let run = attack(&w, &name.replace(' ', "-"), |c| c.execute_batch(sql).unwrap());
        assert_eq!(run.code, 8, "{name}: stdout: {}\nstderr: {}", run.stdout, run.stderr);
        assert!(run.stderr.contains("error[ledger.projection_diverged]"), "{name}: {}", run.stderr);
        assert!(run.stderr.contains(named.as_str()), "{name}: expected {named:?} in {}", run.stderr);
        assert!(!run.stderr.contains("Emergency approved"), "{name}: the forged text is not shown");
    }

    // The forged justification is shown as tampered, never as fact, and a bundle made from the
    // edited database fails `audit verify`.
    let copy = w.dir.path().join("clear-text.db");
    let on_copy = |args: &[&str]| on_copy(&w, &copy, args);
    let shown = on_copy(&["change", "show", &done]);
    assert_eq!(shown.code, 0, "{}", shown.stderr);
    assert!(shown.stdout.contains("[tampered"), "{}", shown.stdout);
    assert!(!shown.stdout.contains("Emergency approved by CISO"), "{}", shown.stdout);
    let bundle = w.dir.path().join("tampered-bundle");
    let made = on_copy(&["audit", "bundle", "--change", &done, "--out", bundle.to_str().unwrap()]);
    assert_eq!(made.code, 0, "{}", made.stderr);
    let checked = w.writ(&["audit", "verify", bundle.to_str().unwrap()]);
    assert_eq!(checked.code, 8, "{}\n{}", checked.stdout, checked.stderr);
    assert!(checked.stderr.contains("error[ledger.sealed_text_altered]"), "{}", checked.stderr);
}

/// Every tamper at once on one copy: `ledger repair --projections` puts each row back from the
/// ledger in one recorded event, verify passes again, what was forged no longer acts, and a
/// second repair finds nothing to do.
#[test]
fn repair_puts_every_diverged_table_back_from_the_ledger_and_is_recorded() {
    let (w, done) = ledger_world();
    crate::exceptions::missed_finding(&w);
    w.writ(&["role", "grant", "alice", "requester"]).ok();
    let token = w.writ(&["token", "create", "--identity", "bob", "--label", "laptop", "--json"]).json();
    let token = token["id"].as_str().unwrap().to_owned();
    w.writ(&["token", "revoke", &token]).ok();
    w.writ(&["delegation", "grant", "carol", "alice", "--for", "7d"]).ok();
    let pending = w.request("carol", "access:eng-read");
    w.writ(&["ledger", "checkpoint"]).ok();
    let tampered = format!(
        "INSERT INTO roles (identity, role) VALUES ('alice', 'admin');
         UPDATE tokens SET revoked_ms = NULL, expires_ms = 4102444800000 WHERE identity = 'bob';
         UPDATE identities SET owner = 'bob' WHERE name = 'svc-ci';
         UPDATE target_settings SET value = '/srv/elsewhere' WHERE target = 'access';
         INSERT INTO policies (hash, files, loaded_ms) VALUES ('sha256:forged', '{{}}', 1);
         UPDATE delegations SET until_ms = 4102444800000;
         UPDATE changes SET state = 'reviewed' WHERE id = '{pending}';
         UPDATE grants SET expires_ms = 1 WHERE identity = 'dave';
         INSERT INTO grants (identity, target, entitlement, change_id, granted_ms, expires_ms)
             VALUES ('carol', 'access', 'deploy-prod', '{done}', 1, NULL);
         UPDATE findings SET state = 'resolved';
         UPDATE sensitive SET value = 'Emergency approved by CISO' WHERE value = 'needed for the job';"
    );
    let run = attack(&w, "everything", |c| c.execute_batch(&tampered).unwrap());
    assert_eq!(run.code, 8, "{}", run.stderr);
    let copy = w.dir.path().join("everything.db");
    let events_before: i64 = rusqlite::Connection::open(&copy)
        .unwrap()
        .query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))
        .unwrap();

    let repaired = on_copy(&w, &copy, &["ledger", "repair", "--projections", "--json"]);
    assert_eq!(repaired.code, 0, "{}\n{}", repaired.stdout, repaired.stderr);
    let report = repaired.json();
    let rows: Vec<&str> =
        report["repaired"].as_array().unwrap().iter().map(|r| r.as_str().unwrap()).collect();
    for named in [
        "roles alice admin",
        "tokens ",
        "identities svc-ci",
        "targets access",
        "policies in force",
        "delegations carol → alice",
        &format!("changes {pending}"),
        "grants dave access:eng-read",
        "grants carol access:deploy-prod",
        "findings FND-",
        "sensitive hk-",
    ] {
        assert!(rows.iter().any(|r| r.starts_with(named)), "{named:?} not repaired: {rows:#?}");
    }
    assert!(report["remaining"].as_array().unwrap().is_empty(), "{report}");
    let connection = rusqlite::Connection::open(&copy).unwrap();
    let (count, kind): (i64, String) = connection
        .query_row(
            "SELECT (SELECT COUNT(*) FROM events), type FROM events ORDER BY idx DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(
        (count, kind.as_str()),
        (events_before + 1, "ledger.projections_repaired"),
        "one recorded repair"
    );
    let admin: i64 = connection
        .query_row("SELECT COUNT(*) FROM roles WHERE identity = 'alice' AND role = 'admin'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(admin, 0, "the forged role is gone");
    let state: String =
        connection.query_row("SELECT state FROM changes WHERE id = ?1", [&pending], |r| r.get(0)).unwrap();
    assert_eq!(state, "pending_approval");
    drop(connection);
    let verified = verify(&copy, &key(&w));
    assert_eq!(verified.code, 0, "after repair the tables are the ledger's: {}", verified.stderr);
    let shown = on_copy(&w, &copy, &["change", "show", &done]);
    assert!(
        !shown.stdout.contains("Emergency approved") && !shown.stdout.contains("[tampered"),
        "{}",
        shown.stdout
    );
    let again = on_copy(&w, &copy, &["ledger", "repair", "--projections"]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(again.stdout.contains("nothing to repair"), "{}", again.stdout);
}

/// An auditor checks each kept clear text in a bundle against its seal without the key: text
/// edited in the bundle (its manifest digest recomputed) fails, the untouched bundle passes.
#[test]
fn a_bundle_whose_sealed_text_was_edited_fails_audit_verify() {
    let (w, id) = ledger_world();
    let bundle = w.dir.path().join("bundle");
    w.writ(&["audit", "bundle", "--change", &id, "--out", bundle.to_str().unwrap()]).ok();
    let fine = w.writ(&["audit", "verify", bundle.to_str().unwrap()]);
    assert_eq!(fine.code, 0, "{}", fine.stderr);
    assert!(fine.stdout.contains("needed for the job"), "{}", fine.stdout);
    let path = bundle.join("sensitive.jsonl");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("\"nonce\""), "each value carries its opening: {text}");
    let forged = text.replace("needed for the job", "Emergency approved by CISO");
    std::fs::write(&path, &forged).unwrap();
    let manifest_path = bundle.join("manifest.json");
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    let digest = hex::encode(writ_ledger::sha256(forged.as_bytes()));
    manifest["files"]["sensitive.jsonl"] = serde_json::Value::String(digest);
    std::fs::write(&manifest_path, serde_json::to_vec_pretty(&manifest).unwrap()).unwrap();
    let checked = w.writ(&["audit", "verify", bundle.to_str().unwrap()]);
    assert_eq!(checked.code, 8, "{}\n{}", checked.stdout, checked.stderr);
    assert!(checked.stderr.contains("error[ledger.sealed_text_altered]"), "{}", checked.stderr);
    assert!(!checked.stdout.contains("Emergency approved"), "{}", checked.stdout);
}

/// Every write is answered only once a signed checkpoint covers its event (the answer names
/// it in `Writ-Checkpoint`), and a burst of concurrent writes is covered by a few grouped
/// checkpoints at the default one-second interval, not one each.
#[test]
fn every_write_is_answered_under_a_signed_checkpoint_and_signing_is_grouped() {
    let w = World::new();
    w.writ(&["identity", "add", "root", "--kind", "human"]).ok();
    w.writ(&["role", "grant", "root", "admin"]).ok();
    let root = crate::server::token(&w, "root");
    let args = w.db_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = crate::server::Server::start_with(
        &args,
        &["--checkpoint-interval", "1s"],
        &w.dir.path().join("serve.log"),
    );
    let checkpoints = || -> i64 {
        let connection = rusqlite::Connection::open(&w.db).unwrap();
        connection.query_row("SELECT COUNT(*) FROM checkpoints", [], |r| r.get(0)).unwrap()
    };
    let before = checkpoints();
    let writers: Vec<_> = (0..16)
        .map(|n| {
            let (base, root) = (server.base.clone(), root.clone());
            std::thread::spawn(move || {
                let api = crate::server::Api::new(&base);
                let name = format!("burst-{n}");
                (
                    name.clone(),
                    api.post(
                        "/api/v1/identities",
                        &root,
                        serde_json::json!({ "name": name, "kind": "human" }),
                    ),
                )
            })
        })
        .collect();
    let connection = rusqlite::Connection::open(&w.db).unwrap();
    for writer in writers {
        let (name, reply) = writer.join().unwrap();
        assert_eq!(reply.status, 201, "{}", reply.text);
        let covered: i64 = reply.headers["writ-checkpoint"].to_str().unwrap().parse().unwrap();
        let index: i64 = connection
            .query_row(
                "SELECT idx FROM events WHERE type = 'registry.identity_added' AND CAST(bytes AS TEXT) LIKE ?1",
                [format!("%\"{name}\"%")],
                |r| r.get(0),
            )
            .unwrap();
        assert!(index < covered, "{name}: event {index} answered under a checkpoint of size {covered}");
        let signed: i64 = connection
            .query_row("SELECT COUNT(*) FROM checkpoints WHERE size = ?1", [covered], |r| r.get(0))
            .unwrap();
        assert_eq!(signed, 1, "the checkpoint the answer names is stored");
    }
    let signed = checkpoints() - before;
    assert!((1..=3).contains(&signed), "16 concurrent writes covered by {signed} checkpoints");
    let verified = w.writ(&["ledger", "verify", "--json"]);
    assert_eq!(verified.code, 0, "no uncovered tail: {}", verified.stderr);
    assert_eq!(verified.json()["uncovered"], 0);
}

/// A tail of events no checkpoint covers is a finding, not "ok": it could be deleted without
/// trace.
#[test]
fn an_uncovered_tail_fails_verify() {
    let (w, _) = ledger_world();
    let run = attack(&w, "tail", |c| {
        c.execute_batch("DELETE FROM checkpoints WHERE size = (SELECT MAX(size) FROM checkpoints)").unwrap()
    });
    assert_detected(&run, "ledger.uncovered_events", "events from index ");
}

/// A server over tables that disagree with the ledger answers reads and refuses every write.
#[test]
fn a_server_over_a_diverged_table_refuses_writes() {
    let w = World::new();
    w.writ(&["identity", "add", "root", "--kind", "human"]).ok();
    w.writ(&["role", "grant", "root", "admin"]).ok();
    w.writ(&["role", "grant", "alice", "requester"]).ok();
    let alice = crate::server::token(&w, "alice");
    // An attacker makes alice an approver with SQL, behind the ledger's back.
    let connection = rusqlite::Connection::open(&w.db).unwrap();
    connection.execute_batch("INSERT INTO roles (identity, role) VALUES ('alice', 'approver')").unwrap();
    drop(connection);
    let app = writ_server::testkit::spawn_app(&w.db, writ_server::ServeOptions::default()).unwrap();
    let api = crate::server::Api::new(&app.base);
    let before = w.fingerprint_except(&["leases", "checkpoints"]);
    let body = serde_json::json!({ "identity": "dave", "grant": ["access:eng-read"], "justification": "x" });
    let refused = api.post("/api/v1/changes", &alice, body);
    assert_eq!((refused.status, refused.code()), (500, "ledger.projection_diverged"), "{}", refused.text);
    assert!(refused.text.contains("roles alice approver"), "{}", refused.text);
    assert_eq!(w.fingerprint_except(&["leases", "checkpoints"]), before, "nothing written");
    assert_eq!(api.get("/api/v1/whoami", &alice).status, 200, "reads still answer");
    let ready = api.send("GET", "/readyz", None, &[], None);
    assert_eq!((ready.status, ready.code()), (503, "ledger.projection_diverged"), "{}", ready.text);
}

/// Key rotation: a new key signs beside the old one, then alone once the old one is retired;
/// verify follows the history with only the new key at hand, and refuses a checkpoint that
/// rests on the retired key after its retirement.
#[test]
fn a_rotated_key_signs_beside_the_old_then_alone_and_a_retired_key_is_refused() {
    let (w, _) = ledger_world();
    let old = w.writ(&["ledger", "checkpoint", "--json"]).json()["key"].as_str().unwrap().to_owned();
    let old_file = std::fs::read_to_string(key(&w)).unwrap();
    let added = w.writ(&["ledger", "rotate-key", "--json"]).json();
    let new = added["added"].as_str().unwrap().to_owned();
    assert_eq!(added["keys"], serde_json::json!([old, new]));
    let connection = rusqlite::Connection::open(&w.db).unwrap();
    let note: String = connection
        .query_row("SELECT note FROM checkpoints ORDER BY size DESC LIMIT 1", [], |r| r.get(0))
        .unwrap();
    assert_eq!(note.matches('\u{2014}').count(), 2, "both keys sign during the overlap: {note}");
    drop(connection);
    w.writ(&["identity", "add", "erin", "--kind", "human"]).ok();
    let pinned_old = w.writ(&["ledger", "verify", "--trusted-key", &old]);
    assert_eq!(
        pinned_old.code, 0,
        "a verifier that only knows the old key still verifies: {}",
        pinned_old.stderr
    );

    let old_id = old.split('+').nth(1).unwrap();
    let retired = w.writ(&["ledger", "rotate-key", "--retire", old_id, "--json"]).json();
    assert_eq!(retired["keys"], serde_json::json!([new]));
    w.writ(&["identity", "add", "frank", "--kind", "human"]).ok();
    assert!(!std::fs::read_to_string(key(&w)).unwrap().contains(old_file.lines().next().unwrap()));
    let verified = w.writ(&["ledger", "verify"]);
    assert_eq!(
        verified.code, 0,
        "the history before the rotation verifies with the new key: {}",
        verified.stderr
    );
    let only = w.writ(&["ledger", "rotate-key", "--retire", new.split('+').nth(1).unwrap()]);
    assert_eq!(only.code, 2, "the last key cannot be retired: {}", only.stderr);

    // Someone who kept the retired key signs the newest tree head with it alone.
    let old_signer = writ_ledger::checkpoint::NoteSigner::parse(old_file.lines().next().unwrap()).unwrap();
    let run = attack(&w, "retired", |c| {
        let (size, root): (i64, Vec<u8>) = c
            .query_row("SELECT size, root FROM checkpoints ORDER BY size DESC LIMIT 1", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        let origin = old.split('+').next().unwrap().to_owned();
        let forged = old_signer.sign(&writ_ledger::checkpoint::Checkpoint {
            origin,
            size: size as u64,
            root: root.try_into().unwrap(),
        });
        c.execute("UPDATE checkpoints SET note = ?1 WHERE size = ?2", rusqlite::params![forged, size])
            .unwrap();
    });
    assert_detected(&run, "ledger.retired_key", "which the log retired before it");
}
