//! The storage contract as executable tests. Each backend's test file implements [`Backend`]
//! (a factory of fresh, empty stores) and calls [`run_all`]; a failing contract panics with the
//! test's name. Kept in its own crate so backends can depend on it without a cycle.

// PANIC SAFETY: this crate is test code; a failed assertion is the report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::sync::Arc;

use writ_core::access::{Role, TokenInfo};
use writ_core::change::{ChangeId, ChangeKind, ChangeState};
use writ_core::identity::{Grant, Identity, IdentityKind};
use writ_core::name::{EntitlementRef, IdentityName};
use writ_core::notify::{Channel, Notice, NoticeState, Notification};
use writ_core::time::Timestamp;
use writ_store::{
    Attempt, CLAIM_HELD, ChangeCommit, ChangeSummary, Claim, ClaimOp, Erasure, EvidenceBlob, GrantUpdate,
    NewEvent, RefusalBucket, Store, StoreError, StoredCheckpoint, StoredToken,
};

/// Makes fresh, empty stores of one backend.
pub trait Backend {
    fn fresh(&self) -> Arc<dyn Store>;
}

type Test = fn(Arc<dyn Store>);

const TESTS: &[(&str, Test)] = &[
    ("indices are contiguous across changes and registry", indices_are_contiguous),
    ("a stale writer conflicts and writes nothing", stale_writer_conflicts),
    ("a duplicate identity is a conflict and appends no event", duplicate_identity),
    ("concurrent commits get contiguous indices, none lost", concurrent_commits),
    ("checkpoints are idempotent and a second root for a size conflicts", checkpoints),
    ("evidence and sealed values round-trip, meta is set once", evidence_and_meta),
    ("an erasure deletes what it names with its event, and only so", erasure_with_its_event),
    ("a decision keyed once is appended once", append_once),
    ("leaf pages resume after the last index", leaf_pages),
    ("change pages are newest first and resume before the last id", change_pages),
    ("tokens: issue, revoke once, unknown identity refused", tokens),
    ("roles: grant and revoke once each, with events", roles),
    ("identity state: moved only from the state read, tokens revoked with it", identity_state),
    ("idempotency keys: fresh, in progress, replay, mismatch, release", idempotency),
    ("concurrent claims of one key: exactly one is fresh", concurrent_claims),
    ("leases: one holder at a time until expiry", leases),
    ("claims: taken with an attempt's events, refused while live, taken over when expired", claims),
    ("a token's principal and sealed values read in one go", one_read_lookups),
    ("due grants: only expired time-bound grants, oldest first, limited", due_grants),
    ("due changes: by deadline, rescheduled only from the sequence read", due_changes),
    ("findings: opened once, moved only from the state read, each with its event", findings),
    ("reconcile: findings, snapshot and run event in one transaction, seen findings touched", reconcile),
    ("usage: last use moves forward only, each report with its event", usage),
    ("transfers: one pending per identity, decided once, acceptance moves the owner", transfers),
    ("exceptions: versioned updates with their approvals, due by deadline", exceptions),
    ("intake: one delivery per source and id, objects bound once, versions only forward", intake),
    ("scim: versioned writes with their delivery, live names unique, tombstones kept", scim),
    ("refusals: the first of a bucket recorded, the rest counted and closed once", refusals),
    ("scim links and delegations: one per identity or pair, each with its event", links),
    ("repair: every fix and its event in one transaction, token hashes kept", repair),
    ("cosignatures: one per witness and size, the largest size per witness", cosignatures),
    ("notifications: written with their event, leased to one holder, settled by it, retried", notifications),
];

/// Runs every contract test against fresh stores of `backend`.
pub fn run_all(backend: &dyn Backend) {
    for (name, test) in TESTS {
        eprintln!("conformance: {name}");
        test(backend.fresh());
    }
}

/// A test event whose leaf hash is `[body length; 32]` (so tests can tell rows apart).
pub fn event(change: Option<&ChangeId>, seq: Option<u64>, body: &str) -> NewEvent {
    NewEvent {
        change: change.cloned(),
        seq,
        type_name: "test",
        phase: "request",
        actor: "alice".into(),
        on_behalf_of: None,
        at: Timestamp::from_millis(1),
        bytes: body.as_bytes().to_vec(),
        leaf: [body.len() as u8; 32],
        notices: Vec::new(),
    }
}

/// A commit of `events` test events for `id`, after `expected_seq` existing ones.
pub fn commit(id: &ChangeId, expected_seq: u64, events: usize, state: ChangeState) -> ChangeCommit {
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
        due_at: None,
        claim: None,
        erase: None,
    }
}

fn alice() -> Identity {
    Identity::new(
        IdentityName::parse("alice").unwrap(),
        IdentityKind::Human,
        None,
        None,
        Timestamp::from_millis(1),
    )
    .unwrap()
}

fn id(n: u128) -> ChangeId {
    ChangeId::generate(Timestamp::from_millis(5), n)
}

fn indices_are_contiguous(store: Arc<dyn Store>) {
    assert_eq!(store.add_identity(&alice(), &event(None, None, "a")).unwrap(), 0);
    assert_eq!(store.identity(&IdentityName::parse("alice").unwrap()).unwrap(), Some(alice()));
    let (one, two) = (id(1), id(2));
    assert_eq!(store.commit(commit(&one, 0, 2, ChangeState::PendingApproval)).unwrap(), vec![1, 2]);
    assert_eq!(store.commit(commit(&two, 0, 1, ChangeState::PendingApproval)).unwrap(), vec![3]);
    assert_eq!(store.commit(commit(&one, 2, 1, ChangeState::Approved)).unwrap(), vec![4]);
    assert_eq!(store.event_count().unwrap(), 5);
    let indices: Vec<u64> = store.events(0, 100).unwrap().iter().map(|e| e.index).collect();
    assert_eq!(indices, vec![0, 1, 2, 3, 4]);
    let seqs: Vec<Option<u64>> = store.change_events(&one).unwrap().iter().map(|e| e.seq).collect();
    assert_eq!(seqs, vec![Some(0), Some(1), Some(2)]);
    assert_eq!(store.changes(Some(ChangeState::Approved)).unwrap().len(), 1);
    assert_eq!(store.changes(None).unwrap().len(), 2);
}

fn stale_writer_conflicts(store: Arc<dyn Store>) {
    let change = id(3);
    store.commit(commit(&change, 0, 2, ChangeState::PendingApproval)).unwrap();
    let recreate = store.commit(commit(&change, 0, 2, ChangeState::PendingApproval)).unwrap_err();
    assert!(matches!(recreate, StoreError::Conflict(_)), "{recreate}");
    store.commit(commit(&change, 2, 1, ChangeState::Approved)).unwrap();
    let stale = store.commit(commit(&change, 2, 1, ChangeState::Rejected)).unwrap_err();
    assert!(matches!(stale, StoreError::Conflict(_)), "{stale}");
    assert_eq!(store.event_count().unwrap(), 3);
    assert_eq!(store.changes(None).unwrap()[0].state, ChangeState::Approved);
}

fn duplicate_identity(store: Arc<dyn Store>) {
    store.add_identity(&alice(), &event(None, None, "a")).unwrap();
    let again = store.add_identity(&alice(), &event(None, None, "a")).unwrap_err();
    assert!(matches!(again, StoreError::Conflict(_)), "{again}");
    assert!(again.to_string().contains("already exists"), "{again}");
    assert_eq!(store.event_count().unwrap(), 1);
}

fn concurrent_commits(store: Arc<dyn Store>) {
    let threads: Vec<_> = (0..8u128)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                let mut mine = Vec::new();
                for i in 0..25u128 {
                    let change = id(t * 1000 + i);
                    mine.extend(store.commit(commit(&change, 0, 2, ChangeState::PendingApproval)).unwrap());
                    let stale = store.commit(commit(&change, 0, 1, ChangeState::Approved)).unwrap_err();
                    assert!(matches!(stale, StoreError::Conflict(_)));
                }
                mine
            })
        })
        .collect();
    let mut all: Vec<u64> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
    all.sort_unstable();
    assert_eq!(all, (0..400).collect::<Vec<u64>>(), "every acknowledged event has its own index, no gaps");
    assert_eq!(store.event_count().unwrap(), 400);
}

fn checkpoints(store: Arc<dyn Store>) {
    assert_eq!(store.latest_checkpoint().unwrap(), None);
    let checkpoint = StoredCheckpoint {
        size: 3,
        root: [1; 32],
        note: "note\n".into(),
        created_at: Timestamp::from_millis(9),
    };
    store.add_checkpoint(&checkpoint).unwrap();
    store.add_checkpoint(&checkpoint).unwrap();
    let fork = StoredCheckpoint { root: [2; 32], ..checkpoint.clone() };
    assert!(matches!(store.add_checkpoint(&fork), Err(StoreError::Conflict(_))));
    let later = StoredCheckpoint { size: 7, ..checkpoint.clone() };
    store.add_checkpoint(&later).unwrap();
    let sizes: Vec<u64> = store.checkpoints().unwrap().iter().map(|c| c.size).collect();
    assert_eq!(sizes, vec![3, 7]);
    assert_eq!(store.checkpoints().unwrap()[0], checkpoint);
    let earlier = StoredCheckpoint { size: 5, root: [5; 32], ..checkpoint.clone() };
    store.add_checkpoint(&earlier).unwrap();
    assert_eq!(store.latest_checkpoint().unwrap(), Some(later), "the largest size, not the last added");
}

fn evidence_and_meta(store: Arc<dyn Store>) {
    let change = id(4);
    let mut with_evidence = commit(&change, 0, 1, ChangeState::PendingApproval);
    let blob = EvidenceBlob { sha256: [7; 32], media_type: "application/json".into(), bytes: b"{}".to_vec() };
    with_evidence.evidence = vec![blob.clone(), blob.clone()];
    with_evidence.sensitive = vec![("hk-1:abc".into(), "clear text".into())];
    store.commit(with_evidence).unwrap();
    assert_eq!(store.evidence(&[7; 32]).unwrap(), Some(blob));
    assert_eq!(store.evidence(&[8; 32]).unwrap(), None);
    assert_eq!(store.sensitive("hk-1:abc").unwrap().as_deref(), Some("clear text"));
    assert_eq!(store.sensitive("hk-1:zzz").unwrap(), None);
    assert_eq!(store.meta("ledger.origin").unwrap(), None);
    assert_eq!(store.init_meta("ledger.origin", "writ/a").unwrap(), "writ/a");
    assert_eq!(store.init_meta("ledger.origin", "writ/b").unwrap(), "writ/a", "set once");
}

fn append_once(store: Arc<dyn Store>) {
    assert_eq!(
        store.append_once("erasure.approved.ERS-1", "carol", &event(None, None, "a")).unwrap(),
        Some(0)
    );
    assert_eq!(store.append_once("erasure.approved.ERS-1", "dave", &event(None, None, "b")).unwrap(), None);
    assert_eq!(store.event_count().unwrap(), 1, "the second decision wrote nothing");
    assert_eq!(store.meta("erasure.approved.ERS-1").unwrap().as_deref(), Some("carol"));
    assert_eq!(
        store.append_once("erasure.approved.ERS-2", "carol", &event(None, None, "c")).unwrap(),
        Some(1)
    );
}

/// An erasure deletes kept clear text and blobs with the event that records it, and only so.
fn erasure_with_its_event(store: Arc<dyn Store>) {
    let change = id(5);
    let mut first = commit(&change, 0, 1, ChangeState::Reviewed);
    let blob = EvidenceBlob { sha256: [9; 32], media_type: "text/plain".into(), bytes: b"minutes".to_vec() };
    first.evidence = vec![blob.clone()];
    first.sensitive = vec![("hk-1:one".into(), "dave's address".into()), ("hk-1:two".into(), "kept".into())];
    store.commit(first).unwrap();
    // A commit that fails (a stale writer) erases nothing.
    let mut stale = commit(&change, 0, 1, ChangeState::Reviewed);
    stale.erase = Some(Erasure { hmacs: vec!["hk-1:one".into()], blobs: vec![[9; 32]] });
    assert!(matches!(store.commit(stale).unwrap_err(), StoreError::Conflict(_)));
    assert_eq!(store.evidence(&[9; 32]).unwrap(), Some(blob));
    assert_eq!(store.sensitive("hk-1:one").unwrap().as_deref(), Some("dave's address"));
    let mut erase = commit(&change, 1, 1, ChangeState::Reviewed);
    erase.erase = Some(Erasure { hmacs: vec!["hk-1:one".into()], blobs: vec![[9; 32]] });
    assert_eq!(store.commit(erase).unwrap(), vec![1]);
    assert_eq!(store.evidence(&[9; 32]).unwrap(), None);
    assert_eq!(store.sensitive("hk-1:one").unwrap(), None);
    assert_eq!(store.sensitive("hk-1:two").unwrap().as_deref(), Some("kept"), "only what was named");
    // Erasing again (a blob a sharing change erased first) is a no-op, not an error.
    let mut again = commit(&change, 2, 1, ChangeState::Reviewed);
    again.erase = Some(Erasure { hmacs: vec!["hk-1:one".into()], blobs: vec![[9; 32]] });
    assert_eq!(store.commit(again).unwrap(), vec![2]);
}

fn leaf_pages(store: Arc<dyn Store>) {
    for n in 0..7u128 {
        store.commit(commit(&id(100 + n), 0, 3, ChangeState::PendingApproval)).unwrap();
    }
    let mut from = 0;
    let mut seen = Vec::new();
    loop {
        let page = store.leaves(from, 4).unwrap();
        let Some(last) = page.last() else { break };
        from = last.index + 1;
        seen.extend(page.iter().map(|row| (row.index, row.leaf)));
    }
    assert_eq!(seen.len(), 21);
    assert!(seen.iter().enumerate().all(|(i, (index, leaf))| *index == i as u64 && *leaf == Some([2; 32])));
}

fn change_pages(store: Arc<dyn Store>) {
    for n in 1..=5 {
        store.commit(commit(&id(n), 0, 1, ChangeState::PendingApproval)).unwrap();
    }
    let all: Vec<ChangeId> = store.changes(None).unwrap().into_iter().map(|c| c.id).collect();
    let mut sorted = all.clone();
    sorted.sort_by(|a, b| b.as_str().cmp(a.as_str()));
    assert_eq!(all, sorted, "newest (largest id) first");
    let first = store.changes_page(None, None, 2).unwrap();
    assert_eq!(first.iter().map(|c| c.id.clone()).collect::<Vec<_>>(), all[..2]);
    let second = store.changes_page(None, Some(&first[1].id), 2).unwrap();
    assert_eq!(second.iter().map(|c| c.id.clone()).collect::<Vec<_>>(), all[2..4]);
    let last = store.changes_page(None, Some(&second[1].id), 2).unwrap();
    assert_eq!(last.iter().map(|c| c.id.clone()).collect::<Vec<_>>(), all[4..]);
    assert!(store.changes_page(Some(ChangeState::Approved), None, 10).unwrap().is_empty());
}

fn token(id: &str) -> StoredToken {
    StoredToken {
        info: TokenInfo {
            id: id.into(),
            identity: IdentityName::parse("alice").unwrap(),
            label: "cli".into(),
            created_at: Timestamp::from_millis(10),
            expires_at: Timestamp::from_millis(1_000),
        },
        hash: "hk-test:abc".into(),
        revoked_at: None,
    }
}

fn tokens(store: Arc<dyn Store>) {
    let orphan = store.add_token(&token("t1"), &event(None, None, "t")).unwrap_err();
    assert!(matches!(orphan, StoreError::Conflict(_)), "no identity yet: {orphan}");
    assert_eq!(store.event_count().unwrap(), 0);
    store.add_identity(&alice(), &event(None, None, "a")).unwrap();
    assert_eq!(store.add_token(&token("t1"), &event(None, None, "t")).unwrap(), 1);
    let again = store.add_token(&token("t1"), &event(None, None, "t")).unwrap_err();
    assert!(matches!(again, StoreError::Conflict(_)), "{again}");
    assert_eq!(store.token("t1").unwrap(), Some(token("t1")));
    assert_eq!(store.token("t2").unwrap(), None);
    assert_eq!(store.revoke_token("t1", Timestamp::from_millis(50), &event(None, None, "r")).unwrap(), 2);
    assert_eq!(store.token("t1").unwrap().unwrap().revoked_at, Some(Timestamp::from_millis(50)));
    let twice = store.revoke_token("t1", Timestamp::from_millis(60), &event(None, None, "r")).unwrap_err();
    assert!(matches!(twice, StoreError::Conflict(_)), "{twice}");
    let unknown = store.revoke_token("t9", Timestamp::from_millis(60), &event(None, None, "r")).unwrap_err();
    assert!(matches!(unknown, StoreError::Conflict(_)), "{unknown}");
    assert_eq!(store.token("t1").unwrap().unwrap().revoked_at, Some(Timestamp::from_millis(50)));
    assert_eq!(store.tokens().unwrap().len(), 1);
    assert_eq!(store.event_count().unwrap(), 3, "refused writes append nothing");
}

fn roles(store: Arc<dyn Store>) {
    let alice_name = IdentityName::parse("alice").unwrap();
    let unknown = store.set_role(&alice_name, Role::Approver, true, &event(None, None, "g")).unwrap_err();
    assert!(matches!(unknown, StoreError::Conflict(_)), "{unknown}");
    store.add_identity(&alice(), &event(None, None, "a")).unwrap();
    store.set_role(&alice_name, Role::Approver, true, &event(None, None, "g")).unwrap();
    store.set_role(&alice_name, Role::Auditor, true, &event(None, None, "g")).unwrap();
    let twice = store.set_role(&alice_name, Role::Approver, true, &event(None, None, "g")).unwrap_err();
    assert!(matches!(twice, StoreError::Conflict(_)), "{twice}");
    let mut held = store.roles_of(&alice_name).unwrap();
    held.sort();
    assert_eq!(held, vec![Role::Approver, Role::Auditor]);
    store.set_role(&alice_name, Role::Approver, false, &event(None, None, "r")).unwrap();
    let absent = store.set_role(&alice_name, Role::Approver, false, &event(None, None, "r")).unwrap_err();
    assert!(matches!(absent, StoreError::Conflict(_)), "{absent}");
    assert_eq!(store.role_assignments().unwrap(), vec![(alice_name, Role::Auditor)]);
    assert_eq!(store.event_count().unwrap(), 4, "identity + 2 grants + 1 revoke");
}

fn identity_state(store: Arc<dyn Store>) {
    use writ_core::identity::IdentityState::{Active, Disabled, Offboarded};
    let alice_name = IdentityName::parse("alice").unwrap();
    let at = Timestamp::from_millis(70);
    store.add_identity(&alice(), &event(None, None, "a")).unwrap();
    store.add_token(&token("t1"), &event(None, None, "t")).unwrap();
    store.add_token(&token("t2"), &event(None, None, "t")).unwrap();
    store.revoke_token("t2", Timestamp::from_millis(50), &event(None, None, "r")).unwrap();
    let stale = store.set_identity_state(&alice_name, Disabled, Offboarded, &[], at, &event(None, None, "s"));
    assert!(matches!(stale, Err(StoreError::Conflict(_))), "{stale:?}");
    let miscounted =
        store.set_identity_state(&alice_name, Active, Disabled, &[], at, &event(None, None, "s"));
    assert!(
        matches!(miscounted, Err(StoreError::Conflict(_))),
        "a token the caller did not name: {miscounted:?}"
    );
    assert_eq!(store.identity(&alice_name).unwrap().unwrap().state, Active, "a refused move writes nothing");
    assert_eq!(store.token("t1").unwrap().unwrap().revoked_at, None);
    store
        .set_identity_state(&alice_name, Active, Disabled, &["t1".to_owned()], at, &event(None, None, "s"))
        .unwrap();
    assert_eq!(store.identity(&alice_name).unwrap().unwrap().state, Disabled);
    assert_eq!(store.identities().unwrap()[0].state, Disabled);
    assert_eq!(store.token("t1").unwrap().unwrap().revoked_at, Some(at));
    assert_eq!(
        store.token("t2").unwrap().unwrap().revoked_at,
        Some(Timestamp::from_millis(50)),
        "kept as it was"
    );
    let (_, identity, _) = store.token_principal("t1").unwrap().unwrap();
    assert_eq!(identity.state, Disabled);
    let refused = store.add_token(&token("t3"), &event(None, None, "t")).unwrap_err();
    assert!(matches!(refused, StoreError::Conflict(_)), "no token for a disabled identity: {refused}");
    store.set_identity_state(&alice_name, Disabled, Active, &[], at, &event(None, None, "s")).unwrap();
    store.add_token(&token("t3"), &event(None, None, "t")).unwrap();
    assert_eq!(store.event_count().unwrap(), 7, "identity, 3 tokens, 1 revocation, 2 moves");
}

fn idempotency(store: Arc<dyn Store>) {
    let now = Timestamp::from_millis(100);
    assert_eq!(store.claim_request("alice", "k1", "f1", now).unwrap(), Claim::Fresh);
    assert_eq!(store.claim_request("alice", "k1", "f1", now).unwrap(), Claim::InProgress);
    assert_eq!(store.claim_request("alice", "k1", "f2", now).unwrap(), Claim::Mismatch);
    assert_eq!(store.claim_request("bob", "k1", "f2", now).unwrap(), Claim::Fresh, "keys are per caller");
    store.finish_request("alice", "k1", 201, "change:CHG-1").unwrap();
    assert_eq!(
        store.claim_request("alice", "k1", "f1", now).unwrap(),
        Claim::Replay { status: 201, resource: "change:CHG-1".into() }
    );
    store.release_request("alice", "k1").unwrap();
    assert!(
        matches!(store.claim_request("alice", "k1", "f1", now).unwrap(), Claim::Replay { .. }),
        "finished keys stay"
    );
    store.release_request("bob", "k1").unwrap();
    assert_eq!(store.claim_request("bob", "k1", "f3", now).unwrap(), Claim::Fresh, "released keys are free");
    assert_eq!(store.purge_requests(Timestamp::from_millis(100)).unwrap(), 0, "nothing is older than 100");
    assert_eq!(
        store.purge_requests(Timestamp::from_millis(101)).unwrap(),
        2,
        "finished and interrupted keys age out"
    );
    assert_eq!(
        store.claim_request("bob", "k1", "f4", now).unwrap(),
        Claim::Fresh,
        "an aged-out claim frees its key"
    );
    assert_eq!(store.claim_request("alice", "k1", "f9", now).unwrap(), Claim::Fresh);
    assert_eq!(store.event_count().unwrap(), 0, "idempotency keys are not ledger events");
}

fn concurrent_claims(store: Arc<dyn Store>) {
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            std::thread::spawn(move || {
                store.claim_request("alice", "race", "f", Timestamp::from_millis(1)).unwrap()
            })
        })
        .collect();
    let claims: Vec<Claim> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(claims.iter().filter(|c| **c == Claim::Fresh).count(), 1, "{claims:?}");
    assert!(claims.iter().all(|c| matches!(c, Claim::Fresh | Claim::InProgress)), "{claims:?}");
}

fn leases(store: Arc<dyn Store>) {
    let t = Timestamp::from_millis;
    assert!(store.acquire_lease("signer", "a", t(0), t(100)).unwrap());
    assert!(!store.acquire_lease("signer", "b", t(50), t(150)).unwrap(), "held by a until 100");
    assert!(store.acquire_lease("signer", "a", t(60), t(160)).unwrap(), "the holder renews");
    assert!(!store.acquire_lease("signer", "b", t(150), t(250)).unwrap(), "renewed until 160");
    assert!(store.acquire_lease("other", "b", t(150), t(250)).unwrap(), "leases are independent");
    assert!(store.acquire_lease("signer", "b", t(161), t(261)).unwrap(), "expired: b takes over");
    assert!(!store.acquire_lease("signer", "a", t(200), t(300)).unwrap(), "a lost it");
    assert_eq!(store.lease("signer").unwrap(), Some(("b".to_owned(), t(261))));
    assert_eq!(store.lease("nobody").unwrap(), None);
}

/// An execution claim is taken with the events that start an attempt and given up with its
/// outcome: a second take while it is live fails the whole commit (nothing appended), and an
/// expired claim can be taken over.
fn claims(store: Arc<dyn Store>) {
    let t = Timestamp::from_millis;
    let change = id(21);
    let name = format!("execution:{change}");
    let take = |holder: &str, now: i64, until: i64| ClaimOp::Take {
        name: name.clone(),
        holder: holder.to_owned(),
        now: t(now),
        until: t(until),
    };
    store.commit(commit(&change, 0, 1, ChangeState::Approved)).unwrap();
    let mut first = commit(&change, 1, 1, ChangeState::Implementing);
    first.claim = Some(take("a", 10, 100));
    store.commit(first).unwrap();
    assert_eq!(store.lease(&name).unwrap(), Some(("a".to_owned(), t(100))));
    // A second attempt while the claim is live: refused, nothing appended.
    let size = store.event_count().unwrap();
    let mut second = commit(&change, 2, 1, ChangeState::Implementing);
    second.claim = Some(take("b", 50, 150));
    let refused = store.commit(second).unwrap_err();
    assert!(matches!(&refused, StoreError::Conflict(m) if m.starts_with(CLAIM_HELD)), "{refused:?}");
    assert_eq!(store.event_count().unwrap(), size);
    assert_eq!(store.change_events(&change).unwrap().len(), 2);
    // Expired: taken over in the same commit as the new attempt's event.
    let mut third = commit(&change, 2, 1, ChangeState::Implementing);
    third.claim = Some(take("b", 101, 200));
    store.commit(third).unwrap();
    assert_eq!(store.lease(&name).unwrap(), Some(("b".to_owned(), t(200))));
    // The first holder's release gives up nothing it no longer holds; the holder's does.
    let mut stale = commit(&change, 3, 1, ChangeState::Failed);
    stale.claim = Some(ClaimOp::Release { name: name.clone(), holder: "a".into() });
    store.commit(stale).unwrap();
    assert_eq!(store.lease(&name).unwrap(), Some(("b".to_owned(), t(200))));
    let mut done = commit(&change, 4, 1, ChangeState::Implemented);
    done.claim = Some(ClaimOp::Release { name: name.clone(), holder: "b".into() });
    store.commit(done).unwrap();
    assert_eq!(store.lease(&name).unwrap(), None);
}

fn one_read_lookups(store: Arc<dyn Store>) {
    let alice_name = IdentityName::parse("alice").unwrap();
    assert_eq!(store.token_principal("t1").unwrap(), None);
    store.add_identity(&alice(), &event(None, None, "a")).unwrap();
    store.add_token(&token("t1"), &event(None, None, "t")).unwrap();
    assert_eq!(store.token_principal("t1").unwrap(), Some((token("t1"), alice(), vec![])));
    store.set_role(&alice_name, Role::Reviewer, true, &event(None, None, "g")).unwrap();
    store.set_role(&alice_name, Role::Approver, true, &event(None, None, "g")).unwrap();
    let (_, _, mut roles) = store.token_principal("t1").unwrap().unwrap();
    roles.sort();
    assert_eq!(roles, vec![Role::Approver, Role::Reviewer]);
    let mut sealed = commit(&id(9), 0, 1, ChangeState::PendingApproval);
    sealed.sensitive = vec![("hk-1:a".into(), "first".into()), ("hk-1:b".into(), "second".into())];
    store.commit(sealed).unwrap();
    let found = store.sensitive_many(&["hk-1:a".into(), "hk-1:b".into(), "hk-1:gone".into()]).unwrap();
    assert_eq!(found.len(), 2);
    assert_eq!(found["hk-1:a"], "first");
    assert_eq!(found["hk-1:b"], "second");
    assert!(store.sensitive_many(&[]).unwrap().is_empty());
}

fn due_grants(store: Arc<dyn Store>) {
    store.add_identity(&alice(), &event(None, None, "a")).unwrap();
    let change = id(40);
    let grant = |entitlement: &str, expires: Option<i64>| {
        GrantUpdate::Upsert(Grant {
            identity: IdentityName::parse("alice").unwrap(),
            entitlement: EntitlementRef::parse(entitlement).unwrap(),
            change: change.clone(),
            granted_at: Timestamp::from_millis(1),
            expires_at: expires.map(Timestamp::from_millis),
        })
    };
    let mut first = commit(&change, 0, 1, ChangeState::Implemented);
    first.grants = vec![grant("t:late", Some(20)), grant("t:early", Some(10)), grant("t:forever", None)];
    store.commit(first).unwrap();
    let names =
        |grants: Vec<Grant>| grants.into_iter().map(|g| g.entitlement.to_string()).collect::<Vec<_>>();
    assert!(store.due_grants(Timestamp::from_millis(9), 10).unwrap().is_empty());
    assert_eq!(names(store.due_grants(Timestamp::from_millis(10), 10).unwrap()), vec!["t:early"]);
    assert_eq!(names(store.due_grants(Timestamp::from_millis(99), 10).unwrap()), vec!["t:early", "t:late"]);
    assert_eq!(names(store.due_grants(Timestamp::from_millis(99), 1).unwrap()), vec!["t:early"]);
    let mut second = commit(&change, 1, 1, ChangeState::Verified);
    second.grants = vec![GrantUpdate::Remove {
        identity: IdentityName::parse("alice").unwrap(),
        entitlement: EntitlementRef::parse("t:early").unwrap(),
    }];
    store.commit(second).unwrap();
    assert_eq!(names(store.due_grants(Timestamp::from_millis(99), 10).unwrap()), vec!["t:late"]);

    // One target's grants in pages, in byte order of (identity, entitlement) whatever the
    // database's collation: upper case before lower, `_` after letters of upper case.
    for person in ["Bob", "bob", "b_b"] {
        let identity = Identity { name: IdentityName::parse(person).unwrap(), ..alice() };
        store.add_identity(&identity, &event(None, None, person)).unwrap();
    }
    let more = id(41);
    let mut third = commit(&more, 0, 1, ChangeState::Implemented);
    third.grants = [("bob", "t:b"), ("Bob", "t:z"), ("b_b", "t:a"), ("bob", "t:B"), ("bob", "u:a")]
        .into_iter()
        .map(|(who, what)| {
            GrantUpdate::Upsert(Grant {
                identity: IdentityName::parse(who).unwrap(),
                entitlement: EntitlementRef::parse(what).unwrap(),
                change: more.clone(),
                granted_at: Timestamp::from_millis(1),
                expires_at: None,
            })
        })
        .collect();
    store.commit(third).unwrap();
    let target = writ_core::name::TargetName::parse("t").unwrap();
    let mut pages = Vec::new();
    let mut after: Option<(String, String)> = None;
    loop {
        let page =
            store.grants_on(&target, after.as_ref().map(|(i, e)| (i.as_str(), e.as_str())), 2).unwrap();
        let Some(last) = page.last() else { break };
        after = Some((last.identity.clone(), last.entitlement.clone()));
        pages.push(
            page.iter().map(|g| format!("{} {} {}", g.identity, g.entitlement, g.change)).collect::<Vec<_>>(),
        );
    }
    assert_eq!(
        pages,
        [["Bob z", "alice forever"], ["alice late", "b_b a"], ["bob B", "bob b"]].map(|page| page
            .map(|row| format!("{row} {}", if row.starts_with("alice") { &change } else { &more })))
    );
}

fn due_changes(store: Arc<dyn Store>) {
    let at = Timestamp::from_millis;
    let (early, late, none) = (id(50), id(51), id(52));
    for (change, due) in [(&late, Some(20)), (&early, Some(10)), (&none, None)] {
        let mut first = commit(change, 0, 1, ChangeState::PendingApproval);
        first.due_at = due.map(at);
        store.commit(first).unwrap();
    }
    assert!(store.due_changes(at(9), 10).unwrap().is_empty());
    assert_eq!(store.due_changes(at(99), 10).unwrap(), vec![early.clone(), late.clone()]);
    assert_eq!(store.due_changes(at(99), 1).unwrap(), vec![early.clone()]);
    // A commit sets the deadline it carries, clearing it when there is none.
    store.commit(commit(&early, 1, 1, ChangeState::Approved)).unwrap();
    assert_eq!(store.due_changes(at(99), 10).unwrap(), vec![late.clone()]);
    // Rescheduling from a stale read does nothing; from the current one it moves the deadline.
    store.reschedule(&late, 0, None).unwrap();
    assert_eq!(store.due_changes(at(99), 10).unwrap(), vec![late.clone()]);
    store.reschedule(&late, 1, Some(at(200))).unwrap();
    assert!(store.due_changes(at(99), 10).unwrap().is_empty());
    assert_eq!(store.due_changes(at(200), 10).unwrap(), vec![late]);
}

fn findings(store: Arc<dyn Store>) {
    use writ_core::finding::{Finding, FindingState};
    let finding = Finding {
        change: Some(id(60)),
        ..Finding::new(
            "FND-1".into(),
            "breakglass.approval_missed",
            id(60).as_str(),
            "missed".into(),
            Timestamp::from_millis(1),
        )
    };
    let first = store.open_finding(&finding, &event(None, None, "f1")).unwrap();
    let again = store.open_finding(&finding, &event(None, None, "f2"));
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
    assert_eq!(store.finding("FND-1").unwrap(), Some(finding.clone()));
    assert_eq!(store.finding("FND-2").unwrap(), None);
    let excepted = Finding {
        state: FindingState::Excepted,
        exception: Some("EXC-1".into()),
        updated_at: Timestamp::from_millis(5),
        ..finding.clone()
    };
    let moved = store.update_finding(&excepted, FindingState::Open, &event(None, None, "f3")).unwrap();
    assert_eq!(moved, first + 1, "the refused second open appended nothing");
    // A writer that read the finding as open before it was excepted is refused.
    let stale = store.update_finding(&finding, FindingState::Open, &event(None, None, "f4"));
    assert!(matches!(stale, Err(StoreError::Conflict(_))), "{stale:?}");
    assert_eq!(store.finding("FND-1").unwrap(), Some(excepted.clone()));
    assert_eq!(store.findings(Some(FindingState::Excepted)).unwrap(), vec![excepted.clone()]);
    assert!(store.findings(Some(FindingState::Open)).unwrap().is_empty());
    assert_eq!(store.findings(None).unwrap(), vec![excepted]);
    assert_eq!(store.events(0, 100).unwrap().len() as u64, moved + 1, "one event per accepted write");
}

fn reconcile(store: Arc<dyn Store>) {
    use writ_core::finding::{Finding, FindingState, Severity};
    use writ_store::{EvidenceBlob, ReconcileCommit};
    let at = Timestamp::from_millis;
    let finding = |n: &str, kind: &str| Finding {
        severity: Severity::High,
        controls: vec!["NIST-CSF:PR.AA-05".into(), "OWASP-NHI:NHI5:2025".into()],
        scope: Some("target:db".into()),
        evidence: Some("aa".repeat(32)),
        ..Finding::new(n.into(), kind, &format!("alice db:{n}"), "held without a change".into(), at(10))
    };
    let snapshot =
        |n: u8| EvidenceBlob { sha256: [n; 32], media_type: "application/jsonl".into(), bytes: vec![n; 8] };
    let a = finding("FND-a", "access.unapproved");
    let b = finding("FND-b", "access.missing");
    let first = ReconcileCommit {
        opened: vec![(a.clone(), event(None, None, "r1")), (b.clone(), event(None, None, "r2"))],
        updated: Vec::new(),
        seen: Vec::new(),
        at: at(10),
        snapshot: snapshot(1),
        run: event(None, None, "r3"),
    };
    let indices = store.record_reconcile(first.clone()).unwrap();
    assert_eq!(indices.len(), 3, "two findings and the run");
    assert_eq!(store.finding("FND-a").unwrap(), Some(a.clone()), "every column round-trips");
    assert_eq!(store.evidence(&[1; 32]).unwrap().map(|e| e.bytes), Some(vec![1; 8]));
    assert_eq!(store.findings_in_scope("target:db").unwrap(), vec![a.clone(), b.clone()]);
    assert!(store.findings_in_scope("target:other").unwrap().is_empty());

    // A second run that resolves b but fails on a stale expectation writes nothing at all.
    let resolved = Finding { state: FindingState::Resolved, updated_at: at(20), ..b.clone() };
    let stale = ReconcileCommit {
        opened: vec![(finding("FND-c", "access.unapproved"), event(None, None, "r4"))],
        updated: vec![(resolved.clone(), FindingState::Excepted, event(None, None, "r5"))],
        seen: vec!["FND-a".into()],
        at: at(20),
        snapshot: snapshot(2),
        run: event(None, None, "r6"),
    };
    let refused = store.record_reconcile(stale.clone());
    assert!(matches!(refused, Err(StoreError::Conflict(_))), "{refused:?}");
    assert_eq!(store.finding("FND-c").unwrap(), None);
    assert_eq!(store.evidence(&[2; 32]).unwrap(), None);
    assert_eq!(store.finding("FND-a").unwrap(), Some(a.clone()), "seen is part of the refused commit");
    assert_eq!(store.event_count().unwrap(), 3);

    // The same run from a fresh read lands whole; the seen finding moves its last sighting.
    let fresh = ReconcileCommit {
        updated: vec![(resolved.clone(), FindingState::Open, event(None, None, "r5"))],
        ..stale
    };
    assert_eq!(store.record_reconcile(fresh.clone()).unwrap().len(), 3);
    let seen = store.finding("FND-a").unwrap().unwrap();
    assert_eq!((seen.last_seen, seen.evidence.as_deref()), (at(20), Some("02".repeat(32).as_str())));
    assert_eq!(store.finding("FND-b").unwrap(), Some(resolved));
    assert!(store.finding("FND-c").unwrap().is_some());

    // Remediation is found by change.
    let fix = Finding { remediation: Some(id(61)), ..seen };
    store.update_finding(&fix, FindingState::Open, &event(None, None, "r7")).unwrap();
    assert_eq!(store.findings_remediated_by(&id(61)).unwrap(), vec![fix]);
    assert!(store.findings_remediated_by(&id(62)).unwrap().is_empty());
}

fn usage(store: Arc<dyn Store>) {
    use writ_core::name::TargetName;
    let at = Timestamp::from_millis;
    let (db, git) = (TargetName::parse("db").unwrap(), TargetName::parse("access").unwrap());
    let first = store
        .report_usage(&db, &[("bob".into(), at(10)), ("Alice".into(), at(20))], &event(None, None, "u1"))
        .unwrap();
    store.report_usage(&git, &[("bob".into(), at(5))], &event(None, None, "u2")).unwrap();
    // Older times never move a last use back; newer ones move it forward.
    let last = store
        .report_usage(&db, &[("bob".into(), at(30)), ("Alice".into(), at(1))], &event(None, None, "u3"))
        .unwrap();
    assert_eq!(last, first + 2);
    assert_eq!(
        store.usage(&db).unwrap(),
        [("Alice".to_owned(), at(20)), ("bob".to_owned(), at(30))],
        "byte order"
    );
    assert_eq!(store.usage(&git).unwrap(), [("bob".to_owned(), at(5))]);
    assert!(store.usage(&TargetName::parse("none").unwrap()).unwrap().is_empty());
    assert_eq!(
        store.all_usage().unwrap(),
        [
            (git.clone(), "bob".to_owned(), at(5)),
            (db.clone(), "Alice".to_owned(), at(20)),
            (db, "bob".to_owned(), at(30))
        ]
    );
    assert_eq!(store.event_count().unwrap(), 3);
}

fn transfers(store: Arc<dyn Store>) {
    use writ_core::transfer::{Decision, TransferId, TransferState, request};
    let at = Timestamp::from_millis;
    let human = |n: &str| {
        Identity::new(IdentityName::parse(n).unwrap(), IdentityKind::Human, None, None, at(1)).unwrap()
    };
    let (alice, bob, carol) = (alice(), human("bob"), human("carol"));
    let svc = Identity::new(
        IdentityName::parse("svc").unwrap(),
        IdentityKind::ServiceAccount,
        Some(&alice),
        None,
        at(1),
    )
    .unwrap();
    for (n, identity) in [&alice, &bob, &carol, &svc].into_iter().enumerate() {
        store.add_identity(identity, &event(None, None, &"i".repeat(n + 1))).unwrap();
    }
    let ask = |to: &Identity, random: u128, now: i64| {
        request(
            TransferId::generate(at(now), random),
            &svc,
            to,
            &alice.name,
            &[],
            "moving teams".into(),
            at(now),
        )
        .unwrap()
    };
    let to_bob = ask(&bob, 1, 10);
    store.write_transfer(&to_bob, None, &event(None, None, "t1")).unwrap();
    assert_eq!(store.transfer(&to_bob.id).unwrap(), Some(to_bob.clone()));
    // A second pending transfer of the same identity is refused, and records nothing.
    let to_carol = ask(&carol, 2, 20);
    let refused = store.write_transfer(&to_carol, None, &event(None, None, "t2")).unwrap_err();
    assert!(matches!(refused, StoreError::Conflict(_)), "{refused:?}");
    assert_eq!(store.event_count().unwrap(), 5);
    // Unless it supersedes the pending one, in the same transaction.
    let superseded = to_bob.superseded(&alice.name, at(20));
    store.write_transfer(&to_carol, Some(&superseded), &event(None, None, "t2")).unwrap();
    assert_eq!(store.transfer(&to_bob.id).unwrap().unwrap().state, TransferState::Superseded);
    // A decision on a transfer no longer pending is refused.
    let late = to_bob.decide(Decision::Accept, &bob.name, &[], true, None, at(21)).unwrap();
    assert!(matches!(
        store.write_transfer(&late, None, &event(None, None, "t3")),
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(store.identity(&svc.name).unwrap().unwrap().owner, Some(alice.name.clone()));
    // Accepting moves the owner, with its event.
    let accepted =
        to_carol.decide(Decision::Accept, &carol.name, &[], true, Some("ok".into()), at(30)).unwrap();
    let index = store.write_transfer(&accepted, None, &event(None, None, "t3")).unwrap();
    assert_eq!(index, 6);
    assert_eq!(store.identity(&svc.name).unwrap().unwrap().owner, Some(carol.name.clone()));
    assert_eq!(store.transfer(&to_carol.id).unwrap(), Some(accepted.clone()));
    // A transfer asked for while alice owned it cannot move it once the owner changed.
    let stale = ask(&bob, 3, 40);
    store.write_transfer(&stale, None, &event(None, None, "t4")).unwrap();
    let stale = stale.decide(Decision::Accept, &bob.name, &[], true, None, at(41)).unwrap();
    assert!(matches!(
        store.write_transfer(&stale, None, &event(None, None, "t5")),
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(store.identity(&svc.name).unwrap().unwrap().owner, Some(carol.name.clone()));
    assert_eq!(store.event_count().unwrap(), 8);
    let all = store.transfers(Some(&svc.name)).unwrap();
    assert_eq!(
        all.iter().map(|t| t.state).collect::<Vec<_>>(),
        [TransferState::Superseded, TransferState::Accepted, TransferState::Pending]
    );
    assert_eq!(store.transfers(None).unwrap(), all);
    assert!(store.transfers(Some(&bob.name)).unwrap().is_empty());
}

fn exceptions(store: Arc<dyn Store>) {
    use writ_core::exception::{Exception, ExceptionApproval, ExceptionId, ExceptionRequest, ExceptionState};
    let name = |n: &str| IdentityName::parse(n).unwrap();
    let at = Timestamp::from_millis;
    let request = |subject: &str, expires: i64| ExceptionRequest {
        control: "secret.long_lived".into(),
        subject: subject.into(),
        owner: name("alice"),
        requester: name("dave"),
        justification: "cannot rotate yet".into(),
        compensating_control: "restricted source address".into(),
        expires_at: at(expires),
    };
    let first = Exception::new(ExceptionId::generate(at(1), 1), request("svc-a", 500), 2, at(1)).unwrap();
    let second = Exception::new(ExceptionId::generate(at(2), 2), request("svc-b", 300), 1, at(2)).unwrap();
    let index = store.open_exception(&first, Some(at(500)), &event(None, None, "e1")).unwrap();
    store.open_exception(&second, Some(at(300)), &event(None, None, "e2")).unwrap();
    let again = store.open_exception(&first, None, &event(None, None, "e3"));
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
    // A second live exception for the same control and subject conflicts, whatever its id.
    let rival = Exception::new(ExceptionId::generate(at(3), 4), request("svc-a", 400), 1, at(3)).unwrap();
    let rival = store.open_exception(&rival, None, &event(None, None, "e3b"));
    assert!(matches!(rival, Err(StoreError::Conflict(_))), "{rival:?}");
    assert_eq!(store.exception(&first.id).unwrap(), Some(first.clone()));
    assert_eq!(store.exception(&ExceptionId::generate(at(3), 3)).unwrap(), None);
    // Two approvals in one round, stored in order with their slots.
    let one = first.approve(&name("bob"), Some("internal".into()), 2, at(10)).unwrap();
    let two = one.approve(&name("carol"), None, 2, at(11)).unwrap();
    store.update_exception(&one, Some(at(500)), &event(None, None, "e4")).unwrap();
    let stale = store.update_exception(&one, Some(at(500)), &event(None, None, "e5"));
    assert!(
        matches!(stale, Err(StoreError::Conflict(_))),
        "an update from a stale read is refused: {stale:?}"
    );
    let last = store.update_exception(&two, Some(at(20)), &event(None, None, "e6")).unwrap();
    assert_eq!(last, index + 3, "the refused writes appended nothing");
    let stored = store.exception(&first.id).unwrap().unwrap();
    assert_eq!(stored, two);
    assert_eq!(
        stored.approvals,
        vec![
            ExceptionApproval { approver: name("bob"), at: at(10), slot: Some("internal".into()) },
            ExceptionApproval { approver: name("carol"), at: at(11), slot: None },
        ]
    );
    assert_eq!(store.exceptions(Some(ExceptionState::Active)).unwrap(), vec![two.clone()]);
    assert_eq!(store.exceptions(Some(ExceptionState::Pending)).unwrap(), vec![second.clone()]);
    assert_eq!(store.exceptions(None).unwrap(), vec![two.clone(), second.clone()]);
    // A renewal round starts with no approvals.
    let renewing = two.request_renewal(at(900), 2, at(30)).unwrap();
    store.update_exception(&renewing, Some(at(500)), &event(None, None, "e7")).unwrap();
    assert!(store.exception(&first.id).unwrap().unwrap().approvals.is_empty());
    // Deadlines: earliest first, limited; rescheduled only from the version read.
    assert_eq!(store.due_exceptions(at(299), 10).unwrap(), Vec::<ExceptionId>::new());
    assert_eq!(store.due_exceptions(at(600), 10).unwrap(), vec![second.id.clone(), first.id.clone()]);
    assert_eq!(store.due_exceptions(at(600), 1).unwrap(), vec![second.id.clone()]);
    store.reschedule_exception(&first.id, 3, None).unwrap();
    assert_eq!(store.due_exceptions(at(600), 10).unwrap().len(), 2, "a stale version does not reschedule");
    store.reschedule_exception(&first.id, renewing.version, None).unwrap();
    assert_eq!(store.due_exceptions(at(600), 10).unwrap(), vec![second.id]);
    // A warning that the term ends is kept with it.
    let warned = renewing.warn(writ_core::time::Duration::from_millis(400).unwrap(), at(150)).unwrap();
    store.update_exception(&warned, Some(at(500)), &event(None, None, "e8")).unwrap();
    assert_eq!(store.exception(&first.id).unwrap(), Some(warned));
}

fn intake(store: Arc<dyn Store>) {
    use writ_core::change::{ExternalRef, RefKind};
    use writ_core::intake::{Delivery, DeliveryRecord, Outcome};
    use writ_core::name::SourceName;
    let at = Timestamp::from_millis;
    let jira = SourceName::parse("jira").unwrap();
    let record = |id: &str, object: Option<&str>, version: Option<i64>, outcome: Outcome| DeliveryRecord {
        delivery: Delivery {
            source: jira.clone(),
            id: id.into(),
            event: "jira:issue_updated".into(),
            object: object.map(Into::into),
            version: version.map(at),
            sha256: [id.len() as u8; 32],
            received_at: at(10),
            refs: vec![
                ExternalRef::new(RefKind::Ticket, "ACC-7").unwrap(),
                ExternalRef::new(RefKind::Commit, "a b c").unwrap(),
            ],
        },
        outcome,
        changes: Vec::new(),
        detail: "waiting".into(),
        attempts: 1,
        updated_at: at(10),
    };
    let change = ChangeId::generate(at(1), 1);
    let other = ChangeId::generate(at(2), 2);
    assert_eq!(store.object(&jira, "10001").unwrap(), None);
    // The first binding wins; a second one reports the first.
    assert_eq!(store.bind_object(&jira, "10001", &change, at(5)).unwrap(), change);
    assert_eq!(store.bind_object(&jira, "10001", &other, at(6)).unwrap(), change);
    assert_eq!(store.object(&jira, "10001").unwrap(), Some((change.clone(), None)));
    // The binding is the write-back outbox: due until written, retried from `next` when not.
    let due = |now: i64| store.writebacks_due(&jira, at(now), 10).unwrap();
    assert_eq!(due(5), vec![("10001".to_owned(), change.clone(), 0)]);
    store.record_writeback(&jira, "10001", None, at(50), Some("503 from the ticket system")).unwrap();
    assert!(due(49).is_empty(), "not before its retry time");
    assert_eq!(due(50), vec![("10001".to_owned(), change.clone(), 1)]);
    store.record_writeback(&jira, "10001", Some(at(60)), at(60), None).unwrap();
    assert!(due(i64::MAX / 2).is_empty(), "written: never due again");
    assert!(store.writebacks_due(&SourceName::parse("github").unwrap(), at(100), 10).unwrap().is_empty());

    let queued = record("d-1", Some("10001"), Some(100), Outcome::Uncorrelated);
    let first = store.add_delivery(&queued, &event(None, None, "q1")).unwrap();
    let again = store.add_delivery(&queued, &event(None, None, "q2"));
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
    assert_eq!(store.delivery(&jira, "d-1").unwrap(), Some(queued.clone()));
    assert_eq!(store.delivery(&jira, "d-9").unwrap(), None);
    // An uncorrelated delivery does not move the object's version.
    assert_eq!(store.object(&jira, "10001").unwrap(), Some((change.clone(), None)));

    let newer = DeliveryRecord {
        changes: vec![change.clone()],
        ..record("d-2", Some("10001"), Some(300), Outcome::Correlated)
    };
    store.add_delivery(&newer, &event(None, None, "n1")).unwrap();
    assert_eq!(store.object(&jira, "10001").unwrap(), Some((change.clone(), Some(at(300)))));
    // Attaching the queued, older delivery later never moves the version back.
    let attached = DeliveryRecord {
        outcome: Outcome::Correlated,
        changes: vec![change.clone(), other.clone()],
        attempts: 2,
        updated_at: at(20),
        ..queued.clone()
    };
    let stale = store.update_delivery(&attached, (Outcome::Correlated, 1), &event(None, None, "u0"));
    assert!(
        matches!(stale, Err(StoreError::Conflict(_))),
        "an update from a stale read is refused: {stale:?}"
    );
    let last =
        store.update_delivery(&attached, (Outcome::Uncorrelated, 1), &event(None, None, "u1")).unwrap();
    assert_eq!(store.object(&jira, "10001").unwrap(), Some((change.clone(), Some(at(300)))));
    assert_eq!(store.delivery(&jira, "d-1").unwrap(), Some(attached.clone()));
    let refused =
        store.add_refusal((&jira, "hook.bad_signature", at(0)), "aa", &event(None, None, "r1")).unwrap();
    assert_eq!((last, refused), (first + 2, Some(first + 3)), "the refused writes appended nothing");

    let unbound = record("d-3", None, None, Outcome::Uncorrelated);
    store
        .add_delivery(&DeliveryRecord { updated_at: at(30), ..unbound.clone() }, &event(None, None, "x"))
        .unwrap();
    let queue = store.deliveries(Some(Outcome::Uncorrelated), 10).unwrap();
    assert_eq!(queue.iter().map(|r| r.delivery.id.as_str()).collect::<Vec<_>>(), ["d-3"]);
    let all = store.deliveries(None, 2).unwrap();
    assert_eq!(
        all.iter().map(|r| r.delivery.id.as_str()).collect::<Vec<_>>(),
        ["d-3", "d-1"],
        "newest first, limited"
    );
    let about = store.deliveries_about(&jira, "10001").unwrap();
    assert_eq!(about.iter().map(|r| r.delivery.id.as_str()).collect::<Vec<_>>(), ["d-1", "d-2"]);
}

fn scim(store: Arc<dyn Store>) {
    use writ_core::intake::{Delivery, DeliveryRecord, Outcome};
    use writ_core::name::SourceName;
    use writ_store::ScimRow;
    let at = Timestamp::from_millis;
    let source = SourceName::parse("scim").unwrap();
    let delivery = |id: &str| DeliveryRecord {
        delivery: Delivery {
            source: source.clone(),
            id: id.into(),
            event: "scim.user.created".into(),
            object: Some("Users/u-1".into()),
            version: None,
            sha256: [7; 32],
            received_at: at(10),
            refs: Vec::new(),
        },
        outcome: Outcome::Ignored,
        changes: Vec::new(),
        detail: "no access change".into(),
        attempts: 1,
        updated_at: at(10),
    };
    let row = ScimRow {
        kind: "User".into(),
        id: "u-1".into(),
        name_key: "bjensen".into(),
        identity: Some(IdentityName::parse("bjensen").unwrap()),
        doc: "{\"userName\":\"bjensen\"}".into(),
        version: 1,
        created: at(10),
        updated: at(10),
        deleted: false,
        settled: "{}".into(),
    };
    assert_eq!(store.scim_last_write().unwrap(), None, "nothing written yet");
    let first = store.scim_write(&row, None, &delivery("u-1/1"), &event(None, None, "s1")).unwrap();
    assert_eq!(store.scim_resource("User", "u-1").unwrap(), Some(row.clone()));
    assert_eq!(store.scim_last_write().unwrap(), Some(at(10)));
    assert_eq!(
        store.delivery(&source, "u-1/1").unwrap(),
        Some(delivery("u-1/1")),
        "the delivery is written with it"
    );
    // A second live resource with the same name, or a stale version, writes nothing.
    let twin = ScimRow { id: "u-2".into(), ..row.clone() };
    let taken = store.scim_write(&twin, None, &delivery("u-2/1"), &event(None, None, "s2"));
    assert!(matches!(taken, Err(StoreError::Conflict(_))), "{taken:?}");
    assert_eq!(store.delivery(&source, "u-2/1").unwrap(), None);
    let next = ScimRow { version: 2, doc: "{}".into(), updated: at(20), ..row.clone() };
    let stale = store.scim_write(&next, Some(5), &delivery("u-1/2"), &event(None, None, "s3"));
    assert!(matches!(stale, Err(StoreError::Conflict(_))), "{stale:?}");
    let second = store.scim_write(&next, Some(1), &delivery("u-1/2"), &event(None, None, "s4")).unwrap();
    assert_eq!(second, first + 1, "refused writes appended nothing");
    // Settling moves only from the state read.
    assert!(matches!(
        store.scim_settle("User", "u-1", "{\"step\":1}", "{\"step\":9}"),
        Err(StoreError::Conflict(_))
    ));
    store.scim_settle("User", "u-1", "{\"step\":1}", "{}").unwrap();
    // A tombstone frees the name but stays readable and listable on request.
    let gone = ScimRow { version: 3, deleted: true, settled: "{\"step\":1}".into(), ..next.clone() };
    store.scim_write(&gone, Some(2), &delivery("u-1/3"), &event(None, None, "s5")).unwrap();
    store.scim_write(&twin, None, &delivery("u-2/1"), &event(None, None, "s6")).unwrap();
    let live: Vec<String> = store.scim_resources("User", false).unwrap().into_iter().map(|r| r.id).collect();
    let all: Vec<String> = store.scim_resources("User", true).unwrap().into_iter().map(|r| r.id).collect();
    assert_eq!((live, all), (vec!["u-2".to_owned()], vec!["u-1".to_owned(), "u-2".to_owned()]));
    assert_eq!(store.scim_resource("User", "u-1").unwrap().map(|r| r.deleted), Some(true));
    assert!(store.scim_resources("Group", true).unwrap().is_empty());
    assert_eq!(store.scim_last_write().unwrap(), Some(at(20)), "the newest write, a deletion included");
}

fn refusals(store: Arc<dyn Store>) {
    let (jira, github) = (
        writ_core::name::SourceName::parse("jira").unwrap(),
        writ_core::name::SourceName::parse("github").unwrap(),
    );
    let at = Timestamp::from_millis;
    let bad = "hook.bad_signature";
    assert_eq!(store.add_refusal((&jira, bad, at(0)), "d0", &event(None, None, "r0")).unwrap(), Some(0));
    for n in 1..8 {
        let digest = format!("d{n}");
        assert_eq!(store.add_refusal((&jira, bad, at(0)), &digest, &event(None, None, "rx")).unwrap(), None);
    }
    // Another reason, source or window is another bucket, each first recorded.
    assert_eq!(
        store.add_refusal((&jira, "hook.stale_timestamp", at(0)), "s0", &event(None, None, "s")).unwrap(),
        Some(1)
    );
    assert_eq!(store.add_refusal((&github, bad, at(0)), "g0", &event(None, None, "g")).unwrap(), Some(2));
    assert_eq!(store.add_refusal((&jira, bad, at(60)), "n0", &event(None, None, "n")).unwrap(), Some(3));
    assert_eq!(store.event_count().unwrap(), 4, "ten refusals, four events");

    let closed = store.refusal_buckets(at(60), 10).unwrap();
    assert_eq!(closed.len(), 3, "the window starting at 60 has not ended: {closed:?}");
    let first = closed.iter().find(|b| b.source == jira && b.reason == bad).unwrap().clone();
    assert_eq!((first.count, first.window), (8, at(0)));
    assert_eq!(first.samples, ["d0", "d1", "d2", "d3", "d4"], "the first five digests are kept");
    assert_eq!(store.refusal_buckets(at(60), 1).unwrap().len(), 1, "limited");
    // A refusal counted after the read makes closing conflict, and writes nothing.
    store.add_refusal((&jira, bad, at(0)), "late", &event(None, None, "late")).unwrap();
    let stale = store.close_refusal_bucket(&first, Some(&event(None, None, "sum")));
    assert!(matches!(stale, Err(StoreError::Conflict(_))), "{stale:?}");
    assert_eq!(store.event_count().unwrap(), 4);
    let current = RefusalBucket { count: 9, ..first };
    store.close_refusal_bucket(&current, Some(&event(None, None, "sum"))).unwrap();
    assert_eq!(store.event_count().unwrap(), 5, "the count is one event");
    let again = store.close_refusal_bucket(&current, Some(&event(None, None, "sum")));
    assert!(matches!(again, Err(StoreError::Conflict(_))), "closed once: {again:?}");
    for bucket in store.refusal_buckets(at(60), 10).unwrap() {
        store.close_refusal_bucket(&bucket, None).unwrap();
    }
    assert_eq!(store.event_count().unwrap(), 5, "a bucket of one closes with no event");
    assert_eq!(store.refusal_buckets(at(1_000), 10).unwrap().len(), 1, "only the open window is left");
}

fn links(store: Arc<dyn Store>) {
    let name = IdentityName::parse("alice").unwrap();
    let unknown = store.link_scim(&name, "00u-a", &event(None, None, "l"));
    assert!(matches!(unknown, Err(StoreError::Conflict(_))), "{unknown:?}");
    store.add_identity(&alice(), &event(None, None, "a")).unwrap();
    store.link_scim(&name, "00u-a", &event(None, None, "l")).unwrap();
    let twice = store.link_scim(&name, "00u-b", &event(None, None, "l"));
    assert!(matches!(twice, Err(StoreError::Conflict(_))), "{twice:?}");
    assert_eq!(store.scim_link(&name).unwrap().as_deref(), Some("00u-a"));
    assert_eq!(store.scim_links().unwrap(), vec![(name.clone(), "00u-a".to_owned())]);

    let mut bob = alice();
    bob.name = IdentityName::parse("bob").unwrap();
    store.add_identity(&bob, &event(None, None, "b")).unwrap();
    let until = |ms| writ_core::access::Delegation {
        principal: name.clone(),
        delegate: bob.name.clone(),
        until: Timestamp::from_millis(ms),
        created_at: Timestamp::from_millis(1),
    };
    store.set_delegation(&until(100), &event(None, None, "d")).unwrap();
    store.set_delegation(&until(200), &event(None, None, "d")).unwrap();
    assert_eq!(store.delegations().unwrap(), vec![until(200)], "granting again moves the end");
    assert_eq!(store.delegation(&name, &bob.name).unwrap(), Some(until(200)));
    store.revoke_delegation(&name, &bob.name, &event(None, None, "r")).unwrap();
    let again = store.revoke_delegation(&name, &bob.name, &event(None, None, "r"));
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
    assert!(store.delegations().unwrap().is_empty());
    assert_eq!(store.event_count().unwrap(), 6, "two identities, a link, two grants, a revocation");
}

fn repair(store: Arc<dyn Store>) {
    use writ_store::{ChangeRow, Fix};
    let alice_name = IdentityName::parse("alice").unwrap();
    store.add_identity(&alice(), &event(None, None, "a")).unwrap();
    store.add_token(&token("t1"), &event(None, None, "t")).unwrap();
    store.set_role(&alice_name, Role::Auditor, true, &event(None, None, "g")).unwrap();
    let change = id(60);
    let grant = Grant {
        identity: alice_name.clone(),
        entitlement: EntitlementRef::parse("t:read").unwrap(),
        change: change.clone(),
        granted_at: Timestamp::from_millis(1),
        expires_at: None,
    };
    let mut first = commit(&change, 0, 2, ChangeState::Implemented);
    first.grants = vec![GrantUpdate::Upsert(grant.clone())];
    store.commit(first).unwrap();
    let before = store.event_count().unwrap();

    let revoked = (token("t1").info, Some(Timestamp::from_millis(70)));
    let dropped = Grant { entitlement: EntitlementRef::parse("t:admin").unwrap(), ..grant.clone() };
    let row = store.change_rows().unwrap().remove(0);
    let reviewed = ChangeRow {
        summary: ChangeSummary { state: ChangeState::Reviewed, ..row.summary.clone() },
        due_at: Some(Timestamp::from_millis(90)),
        ..row.clone()
    };
    let fixes = vec![
        Fix::Role(alice_name.clone(), Role::Auditor, false),
        Fix::Role(alice_name.clone(), Role::Approver, true),
        Fix::Token("t1".into(), Some(revoked.clone())),
        Fix::Token("t9".into(), Some((TokenInfo { id: "t9".into(), ..token("t1").info }, None))),
        Fix::Grant(alice_name.clone(), grant.entitlement.clone(), None),
        Fix::Grant(alice_name.clone(), dropped.entitlement.clone(), Some(dropped.clone())),
        Fix::Change(change.clone(), Some(reviewed.clone())),
    ];
    let stale = store.repair(&fixes, &event(None, None, "repaired"), before - 1).unwrap_err();
    assert!(matches!(stale, StoreError::Conflict(_)), "fixes computed before the last write: {stale}");
    assert_eq!(store.event_count().unwrap(), before, "refused, nothing appended");
    let index = store.repair(&fixes, &event(None, None, "repaired"), before).unwrap();
    assert_eq!(index, before, "the repair's event is appended after the others");
    assert_eq!(store.event_count().unwrap(), before + 1);
    assert_eq!(store.role_assignments().unwrap(), vec![(alice_name.clone(), Role::Approver)]);
    let t1 = store.token("t1").unwrap().unwrap();
    assert_eq!(
        (t1.hash.as_str(), t1.revoked_at),
        ("hk-test:abc", revoked.1),
        "an existing row keeps its hash"
    );
    assert_eq!(store.token("t9").unwrap().unwrap().hash, "", "a re-created row has no usable hash");
    assert_eq!(store.all_grants().unwrap(), vec![dropped]);
    assert_eq!(store.change_rows().unwrap(), vec![reviewed]);

    // A fix that cannot apply rolls back every other fix and appends nothing.
    let unknown = IdentityName::parse("nobody").unwrap();
    let failing =
        vec![Fix::Role(alice_name.clone(), Role::Approver, false), Fix::Role(unknown, Role::Admin, true)];
    assert!(store.repair(&failing, &event(None, None, "repaired"), before + 1).is_err());
    assert_eq!(
        store.role_assignments().unwrap(),
        vec![(alice_name, Role::Approver)],
        "nothing of it applied"
    );
    assert_eq!(store.event_count().unwrap(), before + 1);
}

fn cosignatures(store: Arc<dyn Store>) {
    use writ_store::StoredCosignature;
    let kept = |witness: &str, size: u64, line: &str| StoredCosignature {
        witness: witness.into(),
        size,
        line: line.into(),
        signed_s: 1_700_000_000 + size,
    };
    assert!(store.witness_heads().unwrap().is_empty());
    store.add_cosignature(&kept("w1", 5, "a")).unwrap();
    store.add_cosignature(&kept("w1", 9, "b")).unwrap();
    store.add_cosignature(&kept("w2", 5, "c")).unwrap();
    store.add_cosignature(&kept("w1", 5, "replayed")).unwrap();
    assert_eq!(
        store.cosignatures(5).unwrap(),
        vec![kept("w1", 5, "a"), kept("w2", 5, "c")],
        "the first kept stays"
    );
    assert_eq!(store.cosignatures(7).unwrap(), vec![]);
    assert_eq!(store.witness_heads().unwrap(), vec![("w1".to_owned(), 9), ("w2".to_owned(), 5)]);
    assert_eq!(store.event_count().unwrap(), 0, "cosignatures are not events");
}

fn notice(kind: &str, address: &str, channel: Channel) -> Notice {
    Notice { kind: kind.into(), recipient: address.into(), channel, address: address.into(), clear: false }
}

fn notifications(store: Arc<dyn Store>) {
    // An identity with its email, read back.
    let reached = Identity { email: Some("alice@example.com".into()), ..alice() };
    store.add_identity(&reached, &event(None, None, "{}")).unwrap();
    assert_eq!(store.identity(&reached.name).unwrap().unwrap().email.as_deref(), Some("alice@example.com"));

    // Notices are written with their event, ids from the event's index; a failed commit
    // writes neither.
    let change = id(70);
    let mut first = commit(&change, 0, 2, ChangeState::PendingApproval);
    first.events[1].notices = vec![
        notice("approval.requested", "bob@example.com", Channel::Email),
        notice("approval.requested", "security", Channel::Webhook),
    ];
    let indices = store.commit(first.clone()).unwrap();
    let mut stale = commit(&change, 0, 1, ChangeState::Approved);
    stale.events[0].notices = vec![notice("change.approved", "alice@example.com", Channel::Email)];
    assert!(matches!(store.commit(stale), Err(StoreError::Conflict(_))));
    let listed = store.notifications(Some(&change), None, 10).unwrap();
    let ids: Vec<&str> = listed.iter().map(|n| n.id.as_str()).collect();
    let (a, b) = (Notification::id_of(indices[1], 0), Notification::id_of(indices[1], 1));
    assert_eq!(ids, [b.as_str(), a.as_str()], "newest first");
    assert!(
        listed.iter().all(|n| n.state == NoticeState::Pending
            && n.attempts == 0
            && n.change.as_ref() == Some(&change))
    );
    assert_eq!(store.notification(&a).unwrap().unwrap().notice, first.events[1].notices[0]);
    assert!(store.notifications(Some(&id(71)), None, 10).unwrap().is_empty());

    // Leased to one holder at a time, until the lease ends.
    let now = Timestamp::from_millis(10_000);
    let until = Timestamp::from_millis(20_000);
    let got = store.claim_notifications("one", now, until, 1).unwrap();
    assert_eq!(got.len(), 1);
    let held = got[0].id.clone();
    let other = store.claim_notifications("two", now, until, 10).unwrap();
    assert_eq!(other.iter().map(|n| n.id.clone()).collect::<Vec<_>>().len(), 1);
    assert_ne!(other[0].id, held);
    assert!(store.claim_notifications("three", now, until, 10).unwrap().is_empty(), "both are held");
    // Only the holder settles; a failure is due again later.
    let failed = Attempt {
        state: NoticeState::Pending,
        attempts: 1,
        next_at: Timestamp::from_millis(30_000),
        error: Some("the webhook answered 503".into()),
        delivered_at: None,
    };
    assert!(matches!(store.settle_notification(&held, "two", &failed), Err(StoreError::Conflict(_))));
    store.settle_notification(&held, "one", &failed).unwrap();
    assert!(
        matches!(store.settle_notification(&held, "one", &failed), Err(StoreError::Conflict(_))),
        "given up"
    );
    assert!(
        store
            .claim_notifications("three", Timestamp::from_millis(25_000), Timestamp::from_millis(40_000), 10)
            .unwrap()
            .len()
            == 1,
        "the other's lease ended"
    );
    let due = store
        .claim_notifications("three", Timestamp::from_millis(30_000), Timestamp::from_millis(40_000), 10)
        .unwrap();
    assert_eq!(due.iter().map(|n| n.id.as_str()).collect::<Vec<_>>(), [held.as_str()]);
    assert_eq!((due[0].attempts, due[0].last_error.as_deref()), (1, Some("the webhook answered 503")));
    let delivered = Attempt {
        state: NoticeState::Delivered,
        attempts: 2,
        next_at: Timestamp::from_millis(31_000),
        error: None,
        delivered_at: Some(Timestamp::from_millis(31_000)),
    };
    store.settle_notification(&held, "three", &delivered).unwrap();
    assert_eq!(store.notifications(None, Some(NoticeState::Delivered), 10).unwrap().len(), 1);
    // A delivered one is not retried; a dead one is, due at once, its attempts kept.
    assert!(!store.retry_notification(&held, Timestamp::from_millis(50_000)).unwrap());
    let dead_id = if held == a { b.clone() } else { a.clone() };
    let dead = Attempt {
        state: NoticeState::Dead,
        attempts: 9,
        next_at: until,
        error: Some("x".into()),
        delivered_at: None,
    };
    store.settle_notification(&dead_id, "three", &dead).unwrap();
    assert!(
        store
            .claim_notifications("four", Timestamp::from_millis(90_000), Timestamp::from_millis(99_000), 10)
            .unwrap()
            .is_empty()
    );
    assert!(store.retry_notification(&dead_id, Timestamp::from_millis(60_000)).unwrap());
    assert!(!store.retry_notification("NTF-999-0", Timestamp::from_millis(60_000)).unwrap());
    let again = store
        .claim_notifications("four", Timestamp::from_millis(60_000), Timestamp::from_millis(70_000), 10)
        .unwrap();
    assert_eq!((again.len(), again[0].attempts, again[0].state), (1, 9, NoticeState::Pending));
}
