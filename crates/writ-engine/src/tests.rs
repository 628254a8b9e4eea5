//! Engine tests on a real SQLite file with in-process targets (the git connector has its own
//! tests against real repositories; the CLI tests run both together).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};

use writ_connector::{
    ApplyContext, ApplyReport, Connector, ConnectorError, MemoryConnector, Observed, PlanStep, TargetOp,
};
use writ_core::change::{BusinessEvent, ChangeState, Justification, OpAction};
use writ_core::identity::{Actor, ConnectorKind, IdentityKind, SystemActor, Target};
use writ_core::name::{EntitlementName, EntitlementRef, IdentityName, TargetName};
use writ_core::time::Timestamp;
use writ_store_sqlite::{OpenMode, SqliteStore};

use crate::*;

struct TestClock(AtomicI64);

impl Clock for TestClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_millis(self.0.load(Ordering::SeqCst))
    }
}

/// Fails the first `failures` applies, then delegates.
struct Flaky {
    inner: MemoryConnector,
    failures: AtomicUsize,
}

impl Connector for Flaky {
    fn entitlements(&self) -> writ_connector::Result<Vec<EntitlementName>> {
        self.inner.entitlements()
    }
    fn plan(&self, ops: &[TargetOp]) -> writ_connector::Result<Vec<PlanStep>> {
        self.inner.plan(ops)
    }
    fn apply(&self, context: &ApplyContext, ops: &[TargetOp]) -> writ_connector::Result<ApplyReport> {
        if self.failures.load(Ordering::SeqCst) > 0 {
            self.failures.fetch_sub(1, Ordering::SeqCst);
            return Err(ConnectorError::Unavailable {
                target: "flaky".into(),
                detail: "connection refused".into(),
            });
        }
        self.inner.apply(context, ops)
    }
    fn observe(&self, entitlements: &[EntitlementName]) -> writ_connector::Result<Observed> {
        self.inner.observe(entitlements)
    }
}

struct Targets(BTreeMap<String, Arc<dyn Connector>>);

impl ConnectorFactory for Targets {
    fn connect(&self, target: &Target) -> Result<Arc<dyn Connector>, ConnectorError> {
        self.0.get(target.name.as_str()).cloned().ok_or_else(|| ConnectorError::Unavailable {
            target: target.name.to_string(),
            detail: "no such test target".into(),
        })
    }
}

struct World {
    _dir: tempfile::TempDir,
    engine: Engine,
    clock: Arc<TestClock>,
    apps: Arc<MemoryConnector>,
    flaky: Arc<Flaky>,
}

fn n(name: &str) -> IdentityName {
    IdentityName::parse(name).unwrap()
}

fn ent(name: &str) -> EntitlementName {
    EntitlementName::parse(name).unwrap()
}

fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("writ.db"), OpenMode::Create).unwrap());
    let apps = Arc::new(MemoryConnector::new("apps", &[ent("read"), ent("admin")]));
    let flaky =
        Arc::new(Flaky { inner: MemoryConnector::new("flaky", &[ent("db")]), failures: AtomicUsize::new(1) });
    let mut targets: BTreeMap<String, Arc<dyn Connector>> = BTreeMap::new();
    targets.insert("apps".into(), apps.clone());
    targets.insert("flaky".into(), flaky.clone());
    let clock = Arc::new(TestClock(AtomicI64::new(1_800_000_000_000)));
    let engine = Engine::new(store, Arc::new(Targets(targets)), clock.clone())
        .with_hmac_key(Arc::new(writ_ledger::sensitive::HmacKey::from_bytes([1; 32])));
    let admin = Actor::System(SystemActor::Admin);
    for person in ["alice", "bob", "carol", "dave"] {
        engine.add_identity(admin.clone(), n(person), IdentityKind::Human, None, None).unwrap();
    }
    engine
        .add_identity(admin.clone(), n("svc-ci"), IdentityKind::ServiceAccount, Some(&n("alice")), None)
        .unwrap();
    for target in ["apps", "flaky"] {
        engine
            .add_target(admin.clone(), TargetName::parse(target).unwrap(), ConnectorKind::Memory, vec![])
            .unwrap();
    }
    World { _dir: dir, engine, clock, apps, flaky }
}

fn input(requester: &str, ops: &[(OpAction, &str, &str)]) -> RequestInput {
    RequestInput {
        requester: n(requester),
        on_behalf_of: None,
        ops: ops
            .iter()
            .map(|(action, who, what)| RequestedOp {
                action: *action,
                identity: n(who),
                entitlement: EntitlementRef::parse(what).unwrap(),
                duration: None,
            })
            .collect(),
        justification: Justification::parse("ticket work").unwrap(),
        refs: vec![],
        event: BusinessEvent::Adhoc,
    }
}

/// Everything the store holds, to compare before and after a refused command.
fn snapshot(engine: &Engine) -> (u64, Vec<writ_store::ChangeSummary>, Vec<writ_store::EventRow>) {
    let store = engine.store();
    (store.event_count().unwrap(), store.changes(None).unwrap(), store.events(0, 10_000).unwrap())
}

#[test]
fn a_change_runs_the_whole_chain_and_the_record_rebuilds_from_events() {
    let w = world();
    let id =
        w.engine.request(input("alice", &[(OpAction::Grant, "dave", "apps:read")]), 1).unwrap().change.id;
    w.engine.approve(&id, &n("bob"), None, None).unwrap();
    let executed = w.engine.execute(&id, None).unwrap();
    assert_eq!(executed.change.state, ChangeState::Implemented);
    assert!(w.apps.observe(&[ent("read")]).unwrap().is_member(&ent("read"), &n("dave")));
    assert_eq!(w.engine.verify(&id).unwrap().change.state, ChangeState::Verified);
    let reviewed = w.engine.review(&id, &n("carol"), "matches ticket".into()).unwrap();
    assert_eq!(reviewed.change.state, ChangeState::Reviewed);
    let loaded = w.engine.load(&id).unwrap();
    assert_eq!(loaded.change, reviewed.change);
    let indices: Vec<u64> = loaded.events.iter().map(|(i, _)| *i).collect();
    // 7 registry events came first (5 identities, 2 targets).
    assert_eq!(indices, vec![7, 8, 9, 10, 11, 12, 13]);
    let grants = w.engine.grants_of(&n("dave")).unwrap();
    assert_eq!(grants.len(), 1);
    assert_eq!(grants[0].change, id);
}

#[test]
fn refused_commands_change_nothing() {
    let w = world();
    let id =
        w.engine.request(input("alice", &[(OpAction::Grant, "dave", "apps:read")]), 1).unwrap().change.id;
    let before = snapshot(&w.engine);
    let attempts: Vec<(&str, Result<ChangeRecord>)> = vec![
        ("self approval", w.engine.approve(&id, &n("alice"), None, None)),
        ("beneficiary approval", w.engine.approve(&id, &n("dave"), None, None)),
        ("unknown approver", w.engine.approve(&id, &n("mallory"), None, None)),
        ("execute before approval", w.engine.execute(&id, None)),
        (
            "unknown identity",
            w.engine.request(input("alice", &[(OpAction::Grant, "nobody", "apps:read")]), 2),
        ),
        ("unknown target", w.engine.request(input("alice", &[(OpAction::Grant, "dave", "nowhere:read")]), 3)),
        (
            "unknown entitlement",
            w.engine.request(input("alice", &[(OpAction::Grant, "dave", "apps:root")]), 4),
        ),
    ];
    for (name, result) in attempts {
        assert!(result.is_err(), "{name} was accepted");
        assert_eq!(snapshot(&w.engine), before, "{name} changed the store");
    }
    w.engine.approve(&id, &n("bob"), None, None).unwrap();
    let after_approval = snapshot(&w.engine);
    let by_approver = w.engine.execute(&id, Some(&n("bob"))).unwrap_err();
    assert_eq!(by_approver.code(), "sod.executor_not_independent");
    assert_eq!(snapshot(&w.engine), after_approval);
    assert!(w.apps.observe(&[ent("read")]).unwrap().members[&ent("read")].is_empty(), "target untouched");
}

#[test]
fn an_expired_approval_is_not_executed_and_expires_the_change() {
    let w = world();
    let id =
        w.engine.request(input("alice", &[(OpAction::Grant, "dave", "apps:read")]), 1).unwrap().change.id;
    w.engine.approve(&id, &n("bob"), None, None).unwrap();
    assert!(w.engine.expire_due().unwrap().is_empty());
    w.clock.0.fetch_add(25 * 3_600_000, Ordering::SeqCst);
    let before = snapshot(&w.engine);
    assert_eq!(w.engine.execute(&id, None).unwrap_err().code(), "approval.expired");
    assert_eq!(snapshot(&w.engine), before);
    assert_eq!(w.engine.expire_due().unwrap(), vec![id.clone()]);
    assert_eq!(w.engine.load(&id).unwrap().change.state, ChangeState::Expired);
    assert!(!w.apps.observe(&[ent("read")]).unwrap().is_member(&ent("read"), &n("dave")));
}

#[test]
fn a_partial_failure_records_what_applied_and_a_retry_applies_only_the_rest() {
    let w = world();
    let ops = [(OpAction::Grant, "dave", "apps:read"), (OpAction::Grant, "svc-ci", "flaky:db")];
    let id = w.engine.request(input("alice", &ops), 1).unwrap().change.id;
    w.engine.approve(&id, &n("bob"), None, None).unwrap();
    let failed = w.engine.execute(&id, None).unwrap();
    assert_eq!(failed.change.state, ChangeState::Failed);
    let execution = failed.change.last_execution().unwrap();
    assert!(execution.error.as_deref().unwrap().contains("connection refused"));
    assert_eq!(execution.outcomes.len(), 1, "only apps applied");
    assert_eq!(w.engine.grants_of(&n("dave")).unwrap().len(), 1);
    assert!(w.engine.grants_of(&n("svc-ci")).unwrap().is_empty());
    let retried = w.engine.execute(&id, None).unwrap();
    assert_eq!(retried.change.state, ChangeState::Implemented);
    let outcomes = &retried.change.last_execution().unwrap().outcomes;
    assert!(outcomes[0].before && outcomes[0].after, "apps op was already in place");
    assert!(!outcomes[1].before && outcomes[1].after, "flaky op applied on retry");
    assert_eq!(w.engine.verify(&id).unwrap().change.state, ChangeState::Verified);
}

#[test]
fn drift_after_implementation_fails_verification() {
    let w = world();
    let id =
        w.engine.request(input("alice", &[(OpAction::Grant, "dave", "apps:admin")]), 1).unwrap().change.id;
    w.engine.approve(&id, &n("bob"), None, None).unwrap();
    w.engine.execute(&id, None).unwrap();
    let context = ApplyContext {
        change: id.clone(),
        summary: "out of band".into(),
        requester: "x".into(),
        approvers: vec![],
        executor: "x".into(),
        at: w.clock.now(),
    };
    w.apps.revoke(&context, &n("dave"), &ent("admin")).unwrap();
    let verified = w.engine.verify(&id).unwrap();
    assert_eq!(verified.change.state, ChangeState::VerificationFailed);
    assert_eq!(verified.change.verification.unwrap().mismatches, vec![0]);
}

#[test]
fn concurrent_writers_on_one_change_cannot_both_win() {
    let w = world();
    let id =
        w.engine.request(input("alice", &[(OpAction::Grant, "dave", "apps:read")]), 1).unwrap().change.id;
    let stale = w.engine.load(&id).unwrap();
    w.engine.reject(&id, &n("bob"), "no".into()).unwrap();
    let events = writ_core::machine::decide(
        Some(&stale.change),
        writ_core::machine::Command::Approve {
            approver: w.engine.identity(&n("carol")).unwrap(),
            on_behalf_of: None,
            validity: None,
        },
        w.clock.now(),
    )
    .unwrap();
    let error =
        w.engine.commit(Some(&stale.change), events, vec![], evidence::Captured::default()).unwrap_err();
    assert_eq!(error.code(), "store.conflict");
    assert_eq!(w.engine.load(&id).unwrap().change.state, ChangeState::Rejected);
}

#[test]
fn nhis_need_a_human_owner() {
    let w = world();
    let admin = Actor::System(SystemActor::Admin);
    let error =
        w.engine.add_identity(admin.clone(), n("svc-x"), IdentityKind::Workload, None, None).unwrap_err();
    assert_eq!(error.code(), "identity.owner_required");
    let error =
        w.engine.add_identity(admin, n("svc-y"), IdentityKind::ApiKey, Some(&n("svc-ci")), None).unwrap_err();
    assert_eq!(error.code(), "identity.owner_not_human");
}

// ---- time-bound access ----

fn timed_grant(w: &World, target: &str, hours: i64) -> ChangeId {
    let mut request = input("alice", &[(OpAction::Grant, "dave", target)]);
    request.ops[0].duration = Some(writ_core::time::Duration::hours(hours));
    let id = w.engine.request(request, 11).unwrap().change.id;
    w.engine.approve(&id, &n("bob"), None, None).unwrap();
    while w.engine.execute(&id, None).unwrap().change.state == ChangeState::Failed {}
    assert_eq!(w.engine.verify(&id).unwrap().change.state, ChangeState::Verified);
    id
}

fn advance(w: &World, millis: i64) {
    w.clock.0.fetch_add(millis, Ordering::SeqCst);
}

#[test]
fn time_bound_access_ends_through_its_own_verified_change_linked_to_the_grant() {
    let w = world();
    let policy = expiry::ExpiryPolicy::default();
    let origin = timed_grant(&w, "apps:read", 1);
    let due_at = w.engine.grants_of(&n("dave")).unwrap()[0].expires_at.unwrap();
    advance(&w, 1_800_000);
    assert_eq!(w.engine.revoke_due(&policy).unwrap(), expiry::DueReport::default(), "nothing is due yet");
    advance(&w, 1_800_000);
    let report = w.engine.revoke_due(&policy).unwrap();
    let id = expiry::expiry_id(&origin, due_at);
    assert_eq!((report.opened, report.verified), (vec![id.clone()], vec![id.clone()]));
    assert!(
        !w.apps.observe(&[ent("read")]).unwrap().is_member(&ent("read"), &n("dave")),
        "access ended on the target"
    );
    assert!(w.engine.grants_of(&n("dave")).unwrap().is_empty());
    let record = w.engine.load(&id).unwrap();
    let change = &record.change;
    assert_eq!((change.state, change.origin.as_ref()), (ChangeState::Verified, Some(&origin)));
    assert_eq!(change.requester, n("alice"));
    assert_eq!(change.executions[0].executor, Actor::System(SystemActor::Scheduler));
    let labels: Vec<&str> = change.evidence.iter().map(|(_, _, e)| e.label.as_str()).collect();
    for label in ["expiry-due", "observed-before", "apply-result", "observed-after"] {
        assert!(labels.contains(&label), "{label} missing from {labels:?}");
    }
    assert_eq!(w.engine.revoke_due(&policy).unwrap(), expiry::DueReport::default(), "done once, not twice");
    // The origin is untouched: it still says what was approved.
    assert_eq!(w.engine.load(&origin).unwrap().change.state, ChangeState::Verified);
}

#[test]
fn a_failed_expiry_is_retried_with_backoff_and_alerts_after_its_bound() {
    let w = world();
    let policy = expiry::ExpiryPolicy { alert_after_attempts: 2, ..expiry::ExpiryPolicy::default() };
    let origin = timed_grant(&w, "flaky:db", 1);
    let due_at = w.engine.grants_of(&n("dave")).unwrap()[0].expires_at.unwrap();
    let id = expiry::expiry_id(&origin, due_at);
    w.flaky.failures.store(2, Ordering::SeqCst);
    advance(&w, 3_600_000);
    let first = w.engine.revoke_due(&policy).unwrap();
    assert_eq!((first.opened, first.failed, first.alerted), (vec![id.clone()], vec![id.clone()], vec![]));
    assert_eq!(w.engine.revoke_due(&policy).unwrap(), expiry::DueReport::default(), "backing off");
    assert_eq!(w.engine.load(&id).unwrap().change.executions.len(), 1);
    assert_eq!(w.engine.grants_of(&n("dave")).unwrap().len(), 1, "the grant stays until its end is observed");
    advance(&w, 1_000);
    let second = w.engine.revoke_due(&policy).unwrap();
    assert_eq!((second.failed, second.alerted), (vec![id.clone()], vec![id.clone()]));
    let alert = w.engine.load(&id).unwrap().change.alert.unwrap();
    assert!(alert.contains("2 attempts") && alert.contains("connection refused"), "{alert}");
    advance(&w, 1_999);
    assert_eq!(w.engine.revoke_due(&policy).unwrap(), expiry::DueReport::default(), "second backoff is 2 s");
    advance(&w, 1);
    let third = w.engine.revoke_due(&policy).unwrap();
    assert_eq!((third.verified, third.alerted), (vec![id.clone()], vec![]));
    let change = w.engine.load(&id).unwrap().change;
    assert_eq!((change.state, change.executions.len()), (ChangeState::Verified, 3));
    assert!(change.alert.is_some(), "the alert stays on the record");
    assert!(w.engine.grants_of(&n("dave")).unwrap().is_empty());
}
