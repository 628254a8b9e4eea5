//! Witnessed checkpoints with two `writ witness serve` processes: every checkpoint is cosigned
//! by both, a witness that is down holds no write back and is caught up, and with the
//! witnesses a restored backup, a deleted tail and a forked history are named by
//! `writ ledger verify --witness`, while each witness refuses a checkpoint that does not extend
//! the one it last cosigned.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{Run, World};

struct Witness {
    child: Option<Child>,
    key_file: PathBuf,
    state: PathBuf,
    listen: String,
    log_key: String,
    /// `KEY@URL`, as `--witness` takes it.
    pub spec: String,
}

fn writ(args: &[&str]) -> Run {
    Run::from_output(Command::new(env!("CARGO_BIN_EXE_writ")).args(args).output().unwrap())
}

fn free_address() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

impl Witness {
    fn new(w: &World, name: &str) -> Witness {
        let key_file = w.dir.path().join(format!("{name}.key"));
        let made = writ(&[
            "witness",
            "init",
            "--name",
            &format!("witness.test/{name}"),
            "--key",
            key_file.to_str().unwrap(),
            "--json",
        ]);
        let key = made.json()["key"].as_str().unwrap().to_owned();
        let log_key = w.writ(&["ledger", "checkpoint", "--json"]).json()["key"].as_str().unwrap().to_owned();
        let listen = free_address();
        let mut witness = Witness {
            child: None,
            key_file,
            state: w.dir.path().join(format!("{name}.state")),
            spec: format!("{key}@http://{listen}"),
            listen,
            log_key,
        };
        witness.start();
        witness
    }

    fn start(&mut self) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_writ"))
            .args(["witness", "serve", "--key", self.key_file.to_str().unwrap()])
            .args([
                "--state",
                self.state.to_str().unwrap(),
                "--log-key",
                &self.log_key,
                "--listen",
                &self.listen,
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        assert!(line.starts_with("listening on http://"), "witness did not start: {line:?}");
        self.child = Some(child);
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
            let _ = child.wait();
        }
    }
}

impl Drop for Witness {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `writ ledger verify --witness …` on `db` (the world's own database or a copy of it), with
/// the world's key files.
fn verify(w: &World, db: &Path, witnesses: &[&Witness], quorum: Option<usize>) -> Run {
    let key = crate::ledger::key(w);
    let hmac = key.with_extension("hmac");
    let mut command = Command::new(env!("CARGO_BIN_EXE_writ"));
    command.args(["--db", db.to_str().unwrap()]).arg("--ledger-key").arg(&key).arg("--hmac-key").arg(&hmac);
    command.args(["ledger", "verify"]);
    for witness in witnesses {
        command.args(["--witness", &witness.spec]);
    }
    if let Some(quorum) = quorum {
        command.args(["--witness-quorum", &quorum.to_string()]);
    }
    Run::from_output(command.env_remove("WRIT_WITNESSES").output().unwrap())
}

/// A consistent copy of the world's database at this moment.
fn copy(w: &World, name: &str) -> PathBuf {
    let connection = rusqlite::Connection::open(&w.db).unwrap();
    connection.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)").unwrap();
    drop(connection);
    let copy = w.dir.path().join(format!("{name}.db"));
    std::fs::copy(&w.db, &copy).unwrap();
    copy
}

fn assert_named(run: &Run, code: &str, text: &str) {
    assert_eq!(run.code, 8, "stdout: {}\nstderr: {}", run.stdout, run.stderr);
    assert!(run.stderr.contains(&format!("[{code}]")), "expected {code}: {}", run.stderr);
    assert!(run.stderr.contains(text), "expected {text:?} in {}", run.stderr);
}

#[test]
fn a_restored_backup_a_deleted_tail_and_a_forked_history_are_named_with_witnesses() {
    let w = World::new();
    let (w1, w2) = (Witness::new(&w, "w1"), Witness::new(&w, "w2"));
    let both = [&w1, &w2];
    w.writ(&["identity", "add", "erin", "--kind", "human"]).ok();
    let first = verify(&w, &w.db, &both, None);
    assert_eq!(first.code, 0, "both witnesses cosign the head: {}", first.stderr);
    let backup = copy(&w, "backup");
    let backup_size: i64 = rusqlite::Connection::open(&backup)
        .unwrap()
        .query_row("SELECT MAX(size) FROM checkpoints", [], |r| r.get(0))
        .unwrap();
    for name in ["frank", "grace"] {
        w.writ(&["identity", "add", name, "--kind", "human"]).ok();
    }
    assert_eq!(verify(&w, &w.db, &both, None).code, 0);

    // An older copy of the database put back.
    let restored = verify(&w, &backup, &both, None);
    assert_named(&restored, "ledger.rolled_back", "restored from an older copy");
    // The newest events and checkpoints deleted.
    let truncated = copy(&w, "truncated");
    let connection = rusqlite::Connection::open(&truncated).unwrap();
    connection
        .execute_batch(&format!(
            "DROP TRIGGER events_no_delete; DROP TRIGGER checkpoints_no_delete;
             DELETE FROM events WHERE idx >= {backup_size}; DELETE FROM checkpoints WHERE size > {backup_size};"
        ))
        .unwrap();
    drop(connection);
    let deleted = verify(&w, &truncated, &both, None);
    assert_named(&deleted, "ledger.rolled_back", "newest events and checkpoints were deleted");
    // Another history from the backup on, signed with the log's own key, longer than the real
    // one: each witness refuses it, and verify names the fork.
    let fork = copy(&w, "fork");
    std::fs::copy(&backup, &fork).unwrap();
    for name in ["mallory", "trent", "oscar", "peggy", "victor"] {
        assert_eq!(crate::ledger::on_copy(&w, &fork, &["identity", "add", name, "--kind", "human"]).code, 0);
    }
    let forked = verify(&w, &fork, &both, None);
    assert_named(&forked, "ledger.forked", "the history was rewritten");
    // The witnesses did not move: the real database still verifies against them.
    assert_eq!(verify(&w, &w.db, &both, None).code, 0, "the witnesses kept the real head");

    // Auditor bundles carry the cosignatures: a quorum is required offline, and the witnesses
    // asked now name a bundle of the restored copy.
    let keys: Vec<&str> = both.iter().map(|x| x.spec.rsplit_once('@').unwrap().0).collect();
    let audit = |dir: &Path, extra: &[&str]| {
        let mut args = vec!["audit", "verify", dir.to_str().unwrap()];
        for key in &keys {
            args.extend(["--witness-key", key]);
        }
        args.extend_from_slice(extra);
        writ(&args)
    };
    let bundle = w.dir.path().join("bundle");
    w.writ(&["audit", "bundle", "--all", "--out", bundle.to_str().unwrap()]).ok();
    let audited = audit(&bundle, &["--witness", &w1.spec]);
    assert_eq!(audited.code, 0, "{}", audited.stderr);
    assert!(audited.stdout.contains("bundle ok"), "{}", audited.stdout);
    // One cosignature taken out (the manifest digest recomputed): too few witnesses.
    let note_path = bundle.join("checkpoint.note");
    let note = std::fs::read_to_string(&note_path).unwrap();
    let w2_name = "\u{2014} witness.test/w2 ";
    let fewer: String = note.lines().filter(|l| !l.starts_with(w2_name)).map(|l| format!("{l}\n")).collect();
    assert_ne!(fewer, note);
    std::fs::write(&note_path, &fewer).unwrap();
    let manifest_path = bundle.join("manifest.json");
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    manifest["files"]["checkpoint.note"] = hex::encode(writ_ledger::sha256(fewer.as_bytes())).into();
    std::fs::write(&manifest_path, serde_json::to_vec_pretty(&manifest).unwrap()).unwrap();
    assert_named(&audit(&bundle, &[]), "ledger.witness_quorum", "cosigned by 1 of the 2 witnesses");
    // A bundle of the restored copy: its own cosignatures are genuine, the witnesses know more.
    let old_bundle = w.dir.path().join("old-bundle");
    assert_eq!(
        crate::ledger::on_copy(
            &w,
            &backup,
            &["audit", "bundle", "--all", "--out", old_bundle.to_str().unwrap()]
        )
        .code,
        0
    );
    assert_eq!(audit(&old_bundle, &[]).code, 0, "offline, an old bundle is a true old bundle");
    assert_named(
        &audit(&old_bundle, &["--witness", &w1.spec]),
        "ledger.rolled_back",
        "rolled-back or truncated log",
    );
}

#[test]
fn a_server_publishes_to_its_witnesses_and_catches_up_one_that_was_down() {
    let w = World::new();
    w.writ(&["identity", "add", "root", "--kind", "human"]).ok();
    w.writ(&["role", "grant", "root", "admin"]).ok();
    let root = crate::server::token(&w, "root");
    let (w1, mut w2) = (Witness::new(&w, "w1"), Witness::new(&w, "w2"));
    let args = w.db_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = crate::server::Server::start_with(
        &args,
        &["--witness", &w1.spec, "--witness", &w2.spec],
        &w.dir.path().join("serve.log"),
    );
    let api = server.api();
    let cosigned_head = || -> i64 {
        let connection = rusqlite::Connection::open(&w.db).unwrap();
        connection
            .query_row(
                "SELECT COUNT(*) FROM cosignatures WHERE size = (SELECT MAX(size) FROM checkpoints)",
                [],
                |r| r.get(0),
            )
            .unwrap()
    };
    let wait_for = |want: i64| {
        let start = Instant::now();
        while cosigned_head() < want {
            assert!(start.elapsed() < Duration::from_secs(30), "the head never got {want} cosignatures");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let add = |name: &str| {
        let reply =
            api.post("/api/v1/identities", &root, serde_json::json!({ "name": name, "kind": "human" }));
        assert_eq!(reply.status, 201, "{}", reply.text);
    };
    add("erin");
    wait_for(2);

    // One witness down: writes go on, the head is cosigned by the other only.
    w2.stop();
    add("frank");
    add("grace");
    wait_for(1);
    assert_eq!(cosigned_head(), 1);
    let short = verify(&w, &w.db, &[&w1, &w2], None);
    assert_named(&short, "ledger.witness_quorum", "cosigned by 1 of the 2 witnesses required");
    // Back again: it is caught up (from the size it last cosigned, with a consistency proof).
    w2.start();
    wait_for(2);
    let caught_up = verify(&w, &w.db, &[&w1, &w2], None);
    assert_eq!(caught_up.code, 0, "{}", caught_up.stderr);
    drop(server);
}
