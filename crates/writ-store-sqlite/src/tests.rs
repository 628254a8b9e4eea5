//! The SQLite store on real database files: the shared conformance suite, then what only SQLite
//! has (append-only triggers, read-only files, schema checks on open).

use writ_core::change::{ChangeId, ChangeState};
use writ_core::time::Timestamp;
use writ_store::*;
use writ_store_conformance::commit;

use crate::{OpenMode, SqliteStore};

fn store() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("writ.db"), OpenMode::Create).unwrap();
    (dir, store)
}

#[test]
fn events_cannot_be_updated_or_deleted_through_sql() {
    let (dir, store) = store();
    let id = ChangeId::generate(Timestamp::from_millis(5), 1);
    store.commit(commit(&id, 0, 1, ChangeState::PendingApproval)).unwrap();
    drop(store);
    let raw = rusqlite::Connection::open(dir.path().join("writ.db")).unwrap();
    let update = raw.execute("UPDATE events SET bytes = x'00' WHERE idx = 0", []).unwrap_err();
    assert!(update.to_string().contains("append-only"), "{update}");
    let delete = raw.execute("DELETE FROM events", []).unwrap_err();
    assert!(delete.to_string().contains("append-only"), "{delete}");
}

#[test]
fn a_read_only_database_fails_closed_with_unavailable() {
    let (dir, store) = store();
    drop(store);
    let path = dir.path().join("writ.db");
    let read_only =
        rusqlite::Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    drop(read_only);
    let store = SqliteStore::open(&path, OpenMode::Existing).unwrap();
    store.writer_pragma("PRAGMA query_only = ON").unwrap();
    let id = ChangeId::generate(Timestamp::from_millis(5), 1);
    let error = store.commit(commit(&id, 0, 2, ChangeState::PendingApproval)).unwrap_err();
    assert!(matches!(error, StoreError::Unavailable(_)), "{error:?}");
    assert_eq!(store.event_count().unwrap(), 0);
    assert!(store.changes(None).unwrap().is_empty());
}

#[test]
fn opening_requires_an_initialised_writ_database() {
    let dir = tempfile::tempdir().unwrap();
    let missing = SqliteStore::open(&dir.path().join("none.db"), OpenMode::Existing).err().unwrap();
    assert!(missing.to_string().contains("writ init"), "{missing}");
    let foreign = dir.path().join("foreign.db");
    rusqlite::Connection::open(&foreign).unwrap().execute_batch("CREATE TABLE x (y)").unwrap();
    let error = SqliteStore::open(&foreign, OpenMode::Existing).err().unwrap();
    assert!(error.to_string().contains("not a Writ database"), "{error}");
}

struct Sqlite(tempfile::TempDir);

impl writ_store_conformance::Backend for Sqlite {
    fn fresh(&self) -> std::sync::Arc<dyn Store> {
        let path = self.0.path().join(format!(
            "{}.db",
            writ_core::change::ChangeId::generate(Timestamp::from_millis(0), rand_bits())
        ));
        std::sync::Arc::new(SqliteStore::open(&path, OpenMode::Create).unwrap())
    }
}

fn rand_bits() -> u128 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    u128::from(NEXT.fetch_add(1, Ordering::SeqCst))
}

#[test]
fn the_sqlite_store_meets_the_storage_contract() {
    writ_store_conformance::run_all(&Sqlite(tempfile::tempdir().unwrap()));
}

#[test]
fn a_new_database_and_its_journal_are_readable_by_their_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("writ.db");
    let _store = SqliteStore::open(&path, OpenMode::Create).unwrap();
    for file in ["writ.db", "writ.db-wal", "writ.db-shm"] {
        let mode = std::fs::metadata(dir.path().join(file)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{file} is {mode:o}");
    }
}
