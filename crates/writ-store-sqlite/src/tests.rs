//! Contract tests of the SQLite store on real database files.

use writ_core::change::{ChangeId, ChangeKind, ChangeState};
use writ_core::identity::{Identity, IdentityKind};
use writ_core::name::IdentityName;
use writ_core::time::Timestamp;
use writ_store::*;

use crate::{OpenMode, SqliteStore};

fn event(change: Option<&ChangeId>, seq: Option<u64>, body: &str) -> NewEvent {
    NewEvent {
        change: change.cloned(),
        seq,
        type_name: "test",
        phase: "request",
        actor: "alice".into(),
        on_behalf_of: None,
        at: Timestamp::from_millis(1),
        bytes: body.as_bytes().to_vec(),
        leaf: [0; 32],
    }
}

fn commit(id: &ChangeId, expected_seq: u64, events: usize, state: ChangeState) -> ChangeCommit {
    ChangeCommit {
        summary: ChangeSummary {
            id: id.clone(),
            kind: ChangeKind::Grant,
            state,
            requester: IdentityName::parse("alice").unwrap(),
            created_at: Timestamp::from_millis(1),
            updated_at: Timestamp::from_millis(2),
        },
        expected_seq,
        events: (0..events).map(|i| event(Some(id), Some(expected_seq + i as u64), "{}")).collect(),
        grants: vec![],
        evidence: vec![],
        sensitive: vec![],
    }
}

fn store() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("writ.db"), OpenMode::Create).unwrap();
    (dir, store)
}

#[test]
fn indices_are_contiguous_across_changes_and_registry() {
    let (_dir, store) = store();
    let alice = Identity::new(
        IdentityName::parse("alice").unwrap(),
        IdentityKind::Human,
        None,
        None,
        Timestamp::from_millis(1),
    )
    .unwrap();
    assert_eq!(store.add_identity(&alice, &event(None, None, "a")).unwrap(), 0);
    let one = ChangeId::generate(Timestamp::from_millis(5), 1);
    let two = ChangeId::generate(Timestamp::from_millis(6), 2);
    assert_eq!(store.commit(commit(&one, 0, 2, ChangeState::PendingApproval)).unwrap(), vec![1, 2]);
    assert_eq!(store.commit(commit(&two, 0, 1, ChangeState::PendingApproval)).unwrap(), vec![3]);
    assert_eq!(store.commit(commit(&one, 2, 1, ChangeState::Approved)).unwrap(), vec![4]);
    assert_eq!(store.event_count().unwrap(), 5);
    let indices: Vec<u64> = store.events(0, 100).unwrap().iter().map(|e| e.index).collect();
    assert_eq!(indices, vec![0, 1, 2, 3, 4]);
    assert_eq!(
        store.change_events(&one).unwrap().iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![Some(0), Some(1), Some(2)]
    );
    assert_eq!(store.changes(Some(ChangeState::Approved)).unwrap().len(), 1);
}

#[test]
fn a_stale_writer_conflicts_and_writes_nothing() {
    let (_dir, store) = store();
    let id = ChangeId::generate(Timestamp::from_millis(5), 1);
    store.commit(commit(&id, 0, 2, ChangeState::PendingApproval)).unwrap();
    let recreate = store.commit(commit(&id, 0, 2, ChangeState::PendingApproval)).unwrap_err();
    assert!(matches!(recreate, StoreError::Conflict(_)), "{recreate}");
    store.commit(commit(&id, 2, 1, ChangeState::Approved)).unwrap();
    let stale = store.commit(commit(&id, 2, 1, ChangeState::Rejected)).unwrap_err();
    assert!(matches!(stale, StoreError::Conflict(_)), "{stale}");
    assert_eq!(store.event_count().unwrap(), 3);
    assert_eq!(store.changes(None).unwrap()[0].state, ChangeState::Approved);
}

#[test]
fn duplicate_identity_is_a_conflict_and_appends_no_event() {
    let (_dir, store) = store();
    let alice = Identity::new(
        IdentityName::parse("alice").unwrap(),
        IdentityKind::Human,
        None,
        None,
        Timestamp::from_millis(1),
    )
    .unwrap();
    store.add_identity(&alice, &event(None, None, "a")).unwrap();
    let again = store.add_identity(&alice, &event(None, None, "a")).unwrap_err();
    assert!(again.to_string().contains("already exists"), "{again}");
    assert_eq!(store.event_count().unwrap(), 1);
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

#[test]
fn concurrent_commits_are_group_committed_with_contiguous_indices() {
    let (_dir, store) = store();
    let store = std::sync::Arc::new(store);
    let threads: Vec<_> = (0..8u128)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                let mut mine = Vec::new();
                for i in 0..40u128 {
                    let id = ChangeId::generate(Timestamp::from_millis(5), t * 1000 + i);
                    mine.extend(store.commit(commit(&id, 0, 2, ChangeState::PendingApproval)).unwrap());
                    // A stale commit in the same stream: refused, and must not disturb the batch.
                    let stale = store.commit(commit(&id, 0, 1, ChangeState::Approved)).unwrap_err();
                    assert!(matches!(stale, StoreError::Conflict(_)));
                }
                mine
            })
        })
        .collect();
    let mut all: Vec<u64> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
    all.sort_unstable();
    assert_eq!(all, (0..640).collect::<Vec<u64>>(), "every acknowledged event has its own index, no gaps");
    assert_eq!(store.event_count().unwrap(), 640);
    assert_eq!(store.changes(Some(ChangeState::PendingApproval)).unwrap().len(), 320);
}
