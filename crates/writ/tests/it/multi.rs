//! Three `writ serve` processes on one PostgreSQL database take concurrent writes for 30
//! seconds (`WRIT_MULTI_SECONDS` shortens it for local runs). Afterwards the ledger verifies,
//! indices are contiguous from 0, and every acknowledged write is there exactly once.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::World;
use crate::server::{Server, postgres, postgres_database, roles, token};

#[test]
fn three_instances_on_one_postgres_never_fork_the_log() {
    let Some(config) = postgres() else { return };
    let url = postgres_database(&config, "writ_multi");
    let world = World::on_postgres(&url);
    roles(&world, "alice", &["requester"]);
    roles(&world, "bob", &["approver", "auditor"]);
    roles(&world, "carol", &["approver"]);
    let alice = token(&world, "alice");
    let approvers = [token(&world, "bob"), token(&world, "carol")];
    let db_args = world.db_args();
    let args: Vec<&str> = db_args.iter().map(String::as_str).collect();
    let servers: Vec<Server> =
        (0..3).map(|n| Server::start(&args, &world.dir.path().join(format!("serve-{n}.log")))).collect();
    let apis: Vec<_> = servers.iter().map(Server::api).collect();
    let seconds: u64 = std::env::var("WRIT_MULTI_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(30);
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..6)
        .map(|worker| {
            let (apis, alice, approver, stop) =
                (apis.clone(), alice.clone(), approvers[worker % 2].clone(), stop.clone());
            std::thread::spawn(move || {
                // change id -> whether its approval was acknowledged
                let mut acked: BTreeMap<String, bool> = BTreeMap::new();
                let mut n = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let here = &apis[(worker + n) % 3];
                    let there = &apis[(worker + n + 1) % 3];
                    let body = json!({ "identity": "dave", "grant": ["access:eng-read"], "justification": format!("load {worker}-{n}") });
                    let key = format!("w{worker}-{n}");
                    let made = here.post_with("/api/v1/changes", &alice, &[("idempotency-key", &key)], body);
                    let id = made.expect(201)["id"].as_str().unwrap().to_owned();
                    acked.insert(id.clone(), false);
                    let approved = there.post(&format!("/api/v1/changes/{id}/approve"), &approver, json!({}));
                    assert_eq!(approved.expect(200)["state"], "approved");
                    acked.insert(id, true);
                    n += 1;
                }
                acked
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(seconds));
    stop.store(true, Ordering::Relaxed);
    let mut acked = BTreeMap::new();
    for worker in workers {
        acked.extend(worker.join().unwrap());
    }
    let started = Instant::now();
    for server in servers {
        let log = server.log.clone();
        let status = server.stop();
        let text = std::fs::read_to_string(&log).unwrap();
        let tail: Vec<&str> = text.lines().rev().take(80).collect();
        assert!(status.success(), "a server did not shut down cleanly: {status}\n{tail:#?}");
    }
    assert!(started.elapsed() < Duration::from_secs(20), "graceful shutdown took too long");
    assert!(acked.len() > 30, "too little load to mean anything: {}", acked.len());

    // Contiguous indices, no event twice, every acknowledged write present exactly once.
    let mut client =
        postgres::Client::connect(&format!("{config} dbname=writ_multi"), postgres::NoTls).unwrap();
    let row = client
        .query_one("SELECT COUNT(*), COALESCE(MIN(idx), 0), COALESCE(MAX(idx), -1) FROM events", &[])
        .unwrap();
    let (count, min, max): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
    assert_eq!((min, max), (0, count - 1), "indices are not contiguous");
    let mut recorded: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for row in client
        .query(
            "SELECT change_id, COUNT(*) FILTER (WHERE type = 'change.requested'), COUNT(*) FILTER (WHERE type = 'change.approved')
             FROM events WHERE change_id IS NOT NULL GROUP BY change_id",
            &[],
        )
        .unwrap()
    {
        recorded.insert(row.get(0), (row.get(1), row.get(2)));
    }
    assert_eq!(recorded.len(), acked.len(), "changes in the database differ from the acknowledged ones");
    for (id, approved) in &acked {
        assert_eq!(recorded.get(id), Some(&(1, i64::from(*approved))), "{id}");
    }
    // The ledger verifies with the key from outside the database, checkpoints included.
    let verify = world.writ(&["ledger", "verify", "--json"]).json();
    assert_eq!(verify["ok"], true, "{verify}");
    assert_eq!(verify["events"], count);
    assert!(verify["checkpoints_verified"].as_u64().unwrap() > 1, "{verify}");
    eprintln!("{} changes, {count} events over 3 instances in {seconds} s", acked.len());
}
