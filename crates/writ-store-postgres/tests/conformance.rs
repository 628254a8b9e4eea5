//! The PostgreSQL store against a real server: the shared conformance suite, plus what only
//! several connections can show (two writers never fork the log). The server comes from
//! `WRIT_TEST_POSTGRES` (a libpq connection string without `dbname`), which `scripts/test.sh`
//! sets after starting a throwaway cluster. Each fresh store is a new database, dropped at the
//! end unless `WRIT_TEST_KEEP` is set.

// Tests may unwrap and panic: a failure is the report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use writ_store::{ChangeStore, Store};
use writ_store_postgres::PostgresStore;

struct Postgres {
    server: String,
    run: String,
    created: Mutex<Vec<String>>,
}

impl Postgres {
    fn admin(&self) -> postgres::Client {
        postgres::Client::connect(&format!("{} dbname=postgres", self.server), postgres::NoTls).unwrap()
    }

    fn database(&self) -> String {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!("writ_{}_{}", self.run, NEXT.fetch_add(1, Ordering::SeqCst));
        self.admin().batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
        self.created.lock().unwrap().push(name.clone());
        name
    }
}

impl writ_store_conformance::Backend for Postgres {
    fn fresh(&self) -> Arc<dyn Store> {
        let name = self.database();
        Arc::new(PostgresStore::connect(&format!("{} dbname={name}", self.server)).unwrap())
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if std::env::var_os("WRIT_TEST_KEEP").is_some() {
            return;
        }
        let mut admin = self.admin();
        for name in self.created.lock().unwrap().iter() {
            let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
        }
    }
}

/// The server to test against, or `None` when this run does not use services. With
/// `WRIT_REQUIRE_SERVICES=1` (set by the test script) a missing server is a failure, never a skip.
fn server() -> Option<Postgres> {
    let Ok(server) = std::env::var("WRIT_TEST_POSTGRES") else {
        assert!(
            std::env::var_os("WRIT_REQUIRE_SERVICES").is_none(),
            "WRIT_TEST_POSTGRES is not set but services are required; run `bash scripts/test.sh`"
        );
        eprintln!("PostgreSQL suite NOT RUN: set WRIT_TEST_POSTGRES or run `bash scripts/test.sh`");
        return None;
    };
    let run = format!(
        "{}_{}",
        std::process::id(),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()
    );
    Some(Postgres { server, run, created: Mutex::new(Vec::new()) })
}

#[test]
fn the_postgres_store_meets_the_storage_contract() {
    let Some(postgres) = server() else { return };
    writ_store_conformance::run_all(&postgres);
}

#[test]
fn several_connections_appending_at_once_never_fork_the_log() {
    let Some(postgres) = server() else { return };
    let name = postgres.database();
    let config = format!("{} dbname={name}", postgres.server);
    // Four stores, each its own connection, as four server instances would be.
    let stores: Vec<Arc<PostgresStore>> =
        (0..4).map(|_| Arc::new(PostgresStore::connect(&config).unwrap())).collect();
    let workers: Vec<_> = stores
        .iter()
        .enumerate()
        .map(|(s, store)| {
            let store = store.clone();
            std::thread::spawn(move || {
                let mut mine = Vec::new();
                for i in 0..50u128 {
                    let id = writ_core::change::ChangeId::generate(
                        writ_core::time::Timestamp::from_millis(1),
                        (s as u128) << 32 | i,
                    );
                    let commit = writ_store::ChangeCommit {
                        summary: writ_store::ChangeSummary {
                            id: id.clone(),
                            kind: writ_core::change::ChangeKind::Grant,
                            state: writ_core::change::ChangeState::PendingApproval,
                            requester: writ_core::name::IdentityName::parse("alice").unwrap(),
                            created_at: writ_core::time::Timestamp::from_millis(1),
                            updated_at: writ_core::time::Timestamp::from_millis(1),
                        },
                        expected_seq: 0,
                        events: (0..2u64)
                            .map(|seq| writ_store::NewEvent {
                                change: Some(id.clone()),
                                seq: Some(seq),
                                type_name: "test",
                                phase: "request",
                                actor: "alice".into(),
                                on_behalf_of: None,
                                at: writ_core::time::Timestamp::from_millis(1),
                                bytes: vec![s as u8, i as u8, seq as u8],
                                leaf: [0; 32],
                                notices: Vec::new(),
                            })
                            .collect(),
                        grants: vec![],
                        evidence: vec![],
                        sensitive: vec![],
                        due_at: None,
                        claim: None,
                        erase: None,
                    };
                    mine.extend(store.commit(commit).unwrap());
                }
                mine
            })
        })
        .collect();
    let mut all: Vec<u64> = workers.into_iter().flat_map(|w| w.join().unwrap()).collect();
    all.sort_unstable();
    assert_eq!(all, (0..400).collect::<Vec<u64>>(), "contiguous, each index once");
    let reader = &stores[0];
    assert_eq!(writ_store::EventLog::event_count(reader.as_ref()).unwrap(), 400);
}
