//! Crash safety: SIGKILL in the middle of a stream of group-committed appends loses no
//! acknowledged event and leaves no gap.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use crate::harness::World;

#[test]
fn sigkill_mid_batch_loses_no_acknowledged_event_and_leaves_no_gap() {
    let w = World::new();
    let mut child = Command::new(env!("CARGO_BIN_EXE_writ"))
        .args(["--db", w.db.to_str().unwrap(), "load-append", "--count", "1000000", "--threads", "16"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let mut acked = Vec::new();
    // Let a few hundred batches through, then kill without warning.
    while acked.len() < 3000 {
        let line = lines.next().expect("the load generator stopped early").unwrap();
        acked.push(line.trim_start_matches("ack ").to_owned());
    }
    child.kill().unwrap(); // SIGKILL
    // Acknowledgements already in the pipe were also durable when printed.
    acked.extend(lines.map_while(Result::ok).map(|l| l.trim_start_matches("ack ").to_owned()));
    child.wait().unwrap();

    let connection = rusqlite::Connection::open(&w.db).unwrap();
    let integrity: String = connection.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(integrity, "ok");
    let (count, max): (i64, i64) = connection
        .query_row("SELECT COUNT(*), MAX(idx) FROM events", [], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap();
    assert_eq!(count, max + 1, "indices are contiguous from 0: no gap");
    let identities: i64 = connection.query_row("SELECT COUNT(*) FROM identities", [], |r| r.get(0)).unwrap();
    let registry: i64 = connection
        .query_row("SELECT COUNT(*) FROM events WHERE type = 'registry.identity_added'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(identities, registry, "every identity row has its event and no event lacks its row");
    let mut missing = Vec::new();
    let mut statement = connection.prepare("SELECT 1 FROM identities WHERE name = ?1").unwrap();
    for name in &acked {
        if !statement.exists([name]).unwrap() {
            missing.push(name.clone());
        }
    }
    assert!(missing.is_empty(), "{} acknowledged identities lost, e.g. {:?}", missing.len(), missing.first());
    assert!(identities as usize >= acked.len() + 5);
    drop(statement);
    drop(connection);
    w.writ(&["ledger", "checkpoint"]).ok();
    let verify = w.writ(&["ledger", "verify", "--json"]).json();
    assert_eq!(verify["ok"], true, "{verify}");
}
