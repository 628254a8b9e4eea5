//! Sensitive values: free text reaches the ledger only as a keyed HMAC; the clear text is kept
//! outside the log, can be erased, and an auditor can check a value with `writ ledger hash`.

use crate::harness::World;

const SECRET_REASON: &str = "Dave's medical leave ends 2026-12-01";

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

fn request_with_secret(w: &World) -> String {
    w.request_with(&[
        "--as",
        "alice",
        "--identity",
        "dave",
        "--grant",
        "access:eng-read",
        "--justification",
        SECRET_REASON,
    ])
}

#[test]
fn free_text_is_sealed_in_events_and_evidence_and_checkable_by_hash() {
    let w = World::new();
    let id = request_with_secret(&w);
    w.writ(&["change", "approve", &id, "--as", "bob"]).ok();
    let connection = rusqlite::Connection::open(&w.db).unwrap();
    let mut statement =
        connection.prepare("SELECT bytes FROM events UNION ALL SELECT bytes FROM evidence").unwrap();
    let blobs: Vec<Vec<u8>> = statement.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect();
    assert!(blobs.len() > 10);
    assert!(!blobs.iter().any(|b| contains(b, "medical leave")), "clear text in the ledger or evidence");
    let hash = w.writ(&["ledger", "hash", SECRET_REASON, "--json"]).json();
    let mac = hash["hmac"].as_str().unwrap();
    assert!(mac.starts_with("hk-"), "{mac}");
    assert!(blobs.iter().any(|b| contains(b, mac)), "the event carries the HMAC of the justification");
    assert_ne!(w.writ(&["ledger", "hash", "something else"]).ok(), mac);
    let show = w.writ(&["change", "show", &id, "--json"]).json();
    assert_eq!(show["justification"], SECRET_REASON, "people with access to Writ still see the text");
}

#[test]
fn erasing_the_clear_text_keeps_the_ledger_verifiable() {
    let w = World::new();
    let id = request_with_secret(&w);
    w.writ(&["ledger", "checkpoint"]).ok();
    let connection = rusqlite::Connection::open(&w.db).unwrap();
    let erased = connection.execute("DELETE FROM sensitive WHERE value = ?1", [SECRET_REASON]).unwrap();
    assert_eq!(erased, 1);
    drop(connection);
    let show = w.writ(&["change", "show", &id, "--json"]).json();
    assert_eq!(show["justification"], "[erased]");
    assert_eq!(w.writ(&["ledger", "verify", "--json"]).json()["ok"], true);
}

#[test]
fn without_the_hmac_key_nothing_is_recorded() {
    let w = World::new();
    let mut hmac = w.db.as_os_str().to_owned();
    hmac.push(".hmac");
    let moved = w.dir.path().join("hmac.moved");
    std::fs::rename(&hmac, &moved).unwrap();
    let before = w.fingerprint();
    let run = w.writ(&["identity", "add", "erin", "--kind", "human"]);
    assert_eq!(run.code, 5, "{}", run.stderr);
    assert!(run.stderr.starts_with("error[ledger.no_hmac_key]"), "{}", run.stderr);
    assert_eq!(w.fingerprint(), before);
    assert!(w.writ(&["identity", "list"]).ok().contains("alice"), "reading still works");
    std::fs::rename(&moved, &hmac).unwrap();
    std::fs::set_permissions(&hmac, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let exposed = w.writ(&["identity", "add", "erin", "--kind", "human"]);
    assert_eq!(exposed.code, 5, "{}", exposed.stderr);
    assert!(exposed.stderr.contains("accessible to other users"), "{}", exposed.stderr);
}
