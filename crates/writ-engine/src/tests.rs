//! Engine tests on a real SQLite file with in-process targets (the git connector has its own
//! tests against real repositories; the CLI tests run both together).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};

use writ_connector::{
    ApplyContext, ApplyReport, Connector, ConnectorError, MemoryConnector, Observed, PlanStep, TargetOp,
};
use writ_core::change::{BusinessEvent, ChangeId, ChangeState, Justification, OpAction};
use writ_core::identity::{Actor, ConnectorKind, IdentityKind, SystemActor, Target};
use writ_core::name::{EntitlementName, EntitlementRef, IdentityName, TargetName};
use writ_core::time::{Duration, Timestamp};
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

/// A memory target whose apply can be held at its start (to run attempts side by side) or
/// can die right after writing (a process killed before it records the outcome); it reports the
/// write of each change as the stamp it left.
#[derive(Default)]
struct Gated {
    inner: Option<MemoryConnector>,
    /// Set: apply says it entered, then waits for a message before it writes.
    hold: std::sync::Mutex<Option<(std::sync::mpsc::Sender<()>, std::sync::mpsc::Receiver<()>)>>,
    /// Apply dies (panics) right after writing, or before writing anything.
    die_after_write: std::sync::atomic::AtomicBool,
    die_before_write: std::sync::atomic::AtomicBool,
    writes: std::sync::Mutex<Vec<String>>,
    /// The target cannot be reached.
    down: std::sync::atomic::AtomicBool,
}

impl Gated {
    fn memory(&self) -> writ_connector::Result<&MemoryConnector> {
        if self.down.load(Ordering::SeqCst) {
            return Err(ConnectorError::Unavailable {
                target: "gated".into(),
                detail: "connection refused".into(),
            });
        }
        self.inner
            .as_ref()
            .ok_or_else(|| ConnectorError::Invalid { target: "gated".into(), detail: "no target".into() })
    }
}

impl Connector for Gated {
    fn entitlements(&self) -> writ_connector::Result<Vec<EntitlementName>> {
        self.memory()?.entitlements()
    }
    fn plan(&self, ops: &[TargetOp]) -> writ_connector::Result<Vec<PlanStep>> {
        self.memory()?.plan(ops)
    }
    #[allow(clippy::panic)] // a process dying mid-apply
    fn apply(&self, context: &ApplyContext, ops: &[TargetOp]) -> writ_connector::Result<ApplyReport> {
        if let Some((entered, release)) = self.hold.lock().unwrap().take() {
            entered.send(()).unwrap();
            release.recv().unwrap();
        }
        if self.die_before_write.swap(false, Ordering::SeqCst) {
            panic!("killed before writing");
        }
        let report = self.memory()?.apply(context, ops)?;
        let stamp = format!("write {} #{}", context.change, self.writes.lock().unwrap().len() + 1);
        self.writes.lock().unwrap().push(stamp.clone());
        if self.die_after_write.swap(false, Ordering::SeqCst) {
            panic!("killed after writing");
        }
        Ok(ApplyReport { reference: Some(stamp), ..report })
    }
    fn observe(&self, entitlements: &[EntitlementName]) -> writ_connector::Result<Observed> {
        self.memory()?.observe(entitlements)
    }
    fn stamped(&self, change: &ChangeId, _ops: &[TargetOp]) -> writ_connector::Result<Option<String>> {
        Ok(self.writes.lock().unwrap().iter().rev().find(|w| w.contains(change.as_str())).cloned())
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
    gated: Arc<Gated>,
}

/// Every test's tables must stay projections of its ledger, whatever it did.
impl Drop for World {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let divergences = self.engine.check_projections().unwrap();
            let named: Vec<String> = divergences.iter().map(ToString::to_string).collect();
            assert!(named.is_empty(), "tables diverged from the ledger: {named:#?}");
        }
    }
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
    let gated =
        Arc::new(Gated { inner: Some(MemoryConnector::new("gated", &[ent("deploy")])), ..Gated::default() });
    targets.insert("gated".into(), gated.clone());
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
    for target in ["apps", "flaky", "gated"] {
        engine
            .add_target(
                admin.clone(),
                TargetName::parse(target).unwrap(),
                ConnectorKind::parse("memory").unwrap(),
                vec![],
            )
            .unwrap();
    }
    World { _dir: dir, engine, clock, apps, flaky, gated }
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
        window: None,
        rollback_owner: None,
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
    // 8 registry events came first (5 identities, 3 targets).
    assert_eq!(indices, vec![8, 9, 10, 11, 12, 13, 14]);
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

/// Someone takes `entitlement` on `apps` away from `who` behind Writ's back.
fn revoke_out_of_band(w: &World, id: &ChangeId, who: &str, entitlement: &str) {
    let context = ApplyContext {
        change: id.clone(),
        summary: "out of band".into(),
        requester: "x".into(),
        approvers: vec![],
        executor: "x".into(),
        at: w.clock.now(),
    };
    w.apps.revoke(&context, &n(who), &ent(entitlement)).unwrap();
}

#[test]
fn drift_after_implementation_fails_verification() {
    let w = world();
    let id =
        w.engine.request(input("alice", &[(OpAction::Grant, "dave", "apps:admin")]), 1).unwrap().change.id;
    // A privileged entitlement: the default policy asks for two approvals.
    w.engine.approve(&id, &n("bob"), None, None).unwrap();
    w.engine.approve(&id, &n("carol"), None, None).unwrap();
    w.engine.execute(&id, None).unwrap();
    revoke_out_of_band(&w, &id, "dave", "admin");
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

// ---- policy as code ----

const RULES_WITH_SECURITY: &str = r#"
[[tier]]
name = "low"
approvals = 1
approval_validity = "24h"
escalate_after = "2h"
escalate_to = "group:security"

[[tier]]
name = "high"
approvals = 2
approval_validity = "8h"
review = true

[groups]
security = ["carol"]

[[rule]]
id = "admin.security-approves"
when = { entitlement = ["apps:admin"] }
tier = "high"
approvers = ["group:security"]

[[rule]]
id = "short-elevation"
when = { has_duration = true }
max_duration = "2h"
"#;

fn policy_with(rules: &str) -> writ_policy::PolicyBundle {
    let mut files = writ_policy::PolicyBundle::default_pack().files().clone();
    files.insert("rules.toml".into(), rules.into());
    writ_policy::PolicyBundle::from_files(files).unwrap()
}

fn stamp_of(record: &ChangeRecord, type_name: &str) -> writ_core::event::PolicyStamp {
    record
        .events
        .iter()
        .rev()
        .find(|(_, e)| e.body.type_name() == type_name)
        .and_then(|(_, e)| e.policy.clone())
        .unwrap_or_else(|| panic!("no policy stamp on {type_name}"))
}

#[test]
fn every_decision_records_the_policy_hash_and_the_rules_that_decided() {
    let w = world();
    let hash = writ_policy::PolicyBundle::default_pack().hash();
    let id =
        w.engine.request(input("alice", &[(OpAction::Grant, "dave", "apps:admin")]), 1).unwrap().change.id;
    let first = w.engine.approve(&id, &n("bob"), None, None).unwrap();
    assert_eq!(first.change.state, ChangeState::PendingApproval, "one approval is not enough for admin");
    let second = w.engine.approve(&id, &n("carol"), None, None).unwrap();
    assert_eq!(second.change.state, ChangeState::Approved);
    let validated = stamp_of(&second, "change.validated");
    assert_eq!(validated.hash, hash);
    assert!(validated.rules.contains(&"privileged.two-approvers".to_owned()), "{:?}", validated.rules);
    assert!(validated.rules.contains(&"request.registered-identities".to_owned()), "{:?}", validated.rules);
    let approved = stamp_of(&second, "change.approved");
    assert_eq!((approved.hash.as_str(), approved.slot.as_deref()), (hash.as_str(), Some("any")));
    assert_eq!(approved.rules, ["decide.humans-only"]);
    let controls = second.change.controls.clone().unwrap();
    assert_eq!((controls.tier.as_str(), controls.review_required), ("high", true));
    w.engine.execute(&id, None).unwrap();
    let verified = w.engine.verify(&id).unwrap();
    assert_eq!(stamp_of(&verified, "change.execution_started").rules, ["execute.executors"]);
    let refused = w.engine.review(&id, &n("bob"), "looks fine".into()).unwrap_err();
    assert_eq!(refused.code(), "sod.reviewer_not_independent", "the core's floor decides first");
    let reviewed = w.engine.review(&id, &n("dave2"), "x".into());
    assert_eq!(reviewed.unwrap_err().code(), "not_found");
    // The record rebuilt from the ledger carries the same stamps.
    let loaded = w.engine.load(&id).unwrap();
    assert_eq!(stamp_of(&loaded, "change.approved"), approved);
}

#[test]
fn an_approver_who_fills_no_slot_is_refused_and_nothing_is_recorded() {
    let w = world();
    w.engine.load_policy(Actor::System(SystemActor::Admin), policy_with(RULES_WITH_SECURITY)).unwrap();
    let id =
        w.engine.request(input("alice", &[(OpAction::Grant, "dave", "apps:admin")]), 1).unwrap().change.id;
    w.engine.approve(&id, &n("bob"), None, None).unwrap();
    let before = snapshot(&w.engine);
    // bob fills "any"; the group slot is left for a member of security, so no other
    // non-member can be placed.
    let refused = w.engine.approve(&id, &n("svc-ci"), None, None).unwrap_err();
    assert_eq!(refused.code(), "identity.not_human", "{refused}");
    w.engine
        .add_identity(Actor::System(SystemActor::Admin), n("erin"), IdentityKind::Human, None, None)
        .unwrap();
    let before = (before.0 + 1, before.1, before.2.len() + 1);
    let refused = w.engine.approve(&id, &n("erin"), None, None).unwrap_err();
    assert_eq!(refused.code(), "approval.not_eligible", "{refused}");
    assert!(refused.to_string().contains("group:security"), "{refused}");
    let after = snapshot(&w.engine);
    assert_eq!((after.0, after.1, after.2.len()), before, "a refused approval records nothing");
    let approved = w.engine.approve(&id, &n("carol"), None, None).unwrap();
    assert_eq!(approved.change.state, ChangeState::Approved);
    let slots: Vec<_> = approved.change.approvals.iter().map(|a| a.slot.clone().unwrap()).collect();
    assert_eq!(slots, ["any", "group:security"]);
}

#[test]
fn a_tightened_policy_stops_execution_and_sends_the_change_back_to_approval() {
    let w = world();
    let id =
        w.engine.request(input("alice", &[(OpAction::Grant, "dave", "apps:admin")]), 1).unwrap().change.id;
    w.engine.approve(&id, &n("bob"), None, None).unwrap();
    w.engine.approve(&id, &n("carol"), None, None).unwrap();
    // Policy tightened after approval: admin now needs a member of security, which is erin
    // alone. bob and carol both fill only "any", so one of their approvals no longer counts.
    w.engine
        .add_identity(Actor::System(SystemActor::Admin), n("erin"), IdentityKind::Human, None, None)
        .unwrap();
    let rules = RULES_WITH_SECURITY.replace("security = [\"carol\"]", "security = [\"erin\"]");
    w.engine.load_policy(Actor::System(SystemActor::Admin), policy_with(&rules)).unwrap();
    let refused = w.engine.execute(&id, None).unwrap_err();
    assert_eq!(refused.code(), "policy.revalidation_required", "{refused}");
    assert!(
        !w.apps.observe(&[ent("admin")]).unwrap().is_member(&ent("admin"), &n("dave")),
        "nothing applied"
    );
    let record = w.engine.load(&id).unwrap();
    assert_eq!(record.change.state, ChangeState::PendingApproval);
    assert_eq!(record.change.approvals.len(), 1, "one of the two approvals still counts");
    let last = &record.events.last().unwrap().1;
    assert_eq!(last.body.type_name(), "change.revalidated");
    // A member of the new security group completes it; then it executes.
    w.engine.approve(&id, &n("erin"), None, None).unwrap();
    assert_eq!(w.engine.execute(&id, None).unwrap().change.state, ChangeState::Implemented);
}

#[test]
fn executing_after_the_approval_expired_is_refused() {
    let w = world();
    let id =
        w.engine.request(input("alice", &[(OpAction::Grant, "dave", "apps:admin")]), 1).unwrap().change.id;
    w.engine.approve(&id, &n("bob"), None, None).unwrap();
    w.engine.approve(&id, &n("carol"), None, None).unwrap();
    // The high tier's approvals are valid 8 hours.
    w.clock.0.fetch_add(8 * 3_600_000 + 1, Ordering::SeqCst);
    let before = snapshot(&w.engine);
    let refused = w.engine.execute(&id, None).unwrap_err();
    assert_eq!(refused.code(), "approval.expired", "{refused}");
    assert_eq!(snapshot(&w.engine).0, before.0);
    assert!(!w.apps.observe(&[ent("admin")]).unwrap().is_member(&ent("admin"), &n("dave")));
}

#[test]
fn a_grant_beyond_the_maximum_duration_is_refused_at_request() {
    let w = world();
    let before = snapshot(&w.engine);
    let mut long = input("alice", &[(OpAction::Grant, "dave", "apps:read")]);
    long.ops[0].duration = Some(Duration::hours(9));
    let refused = w.engine.request(long, 1).unwrap_err();
    assert_eq!(refused.code(), "policy.duration_exceeded", "{refused}");
    assert!(refused.to_string().contains("elevation.max-duration"), "{refused}");
    assert_eq!(snapshot(&w.engine).0, before.0, "nothing recorded");
}

#[test]
fn an_invalid_policy_is_refused_and_the_policy_in_force_stays() {
    let w = world();
    w.engine.load_policy(Actor::System(SystemActor::Admin), policy_with(RULES_WITH_SECURITY)).unwrap();
    let in_force = w.engine.policy().unwrap().hash().to_owned();
    let events = w.engine.store().event_count().unwrap();
    let broken = RULES_WITH_SECURITY.replace("tier = \"high\"\napprovers", "tier = \"urgent\"\napprovers");
    let refused = w.engine.load_policy(Actor::System(SystemActor::Admin), policy_with(&broken)).unwrap_err();
    assert_eq!(refused.code(), "policy.invalid");
    assert!(refused.to_string().contains("rules.toml:"), "{refused}");
    assert!(refused.to_string().contains("tier \"urgent\" is not defined"), "{refused}");
    assert_eq!(w.engine.policy().unwrap().hash(), in_force);
    assert_eq!(w.engine.store().event_count().unwrap(), events);
    // A fresh engine on the same store finds the same policy in force.
    assert_eq!(w.engine.store().policy(None).unwrap().unwrap().0, in_force);
    // Loading the same files again records nothing.
    let again =
        w.engine.load_policy(Actor::System(SystemActor::Admin), policy_with(RULES_WITH_SECURITY)).unwrap();
    assert_eq!(again, crate::policy::Loaded::Unchanged { hash: in_force });
    assert_eq!(w.engine.store().event_count().unwrap(), events);
}

#[test]
fn an_overdue_approval_escalates_once() {
    let w = world();
    w.engine.load_policy(Actor::System(SystemActor::Admin), policy_with(RULES_WITH_SECURITY)).unwrap();
    let id =
        w.engine.request(input("alice", &[(OpAction::Grant, "dave", "apps:read")]), 1).unwrap().change.id;
    assert_eq!(w.engine.deadlines_due().unwrap(), breakglass::Deadlines::default(), "not due yet");
    w.clock.0.fetch_add(2 * 3_600_000, Ordering::SeqCst);
    assert_eq!(w.engine.deadlines_due().unwrap().escalated, vec![(id.clone(), "group:security".to_owned())]);
    assert_eq!(w.engine.deadlines_due().unwrap(), breakglass::Deadlines::default(), "escalated once");
    let change = w.engine.load(&id).unwrap();
    let last = &change.events.last().unwrap().1;
    assert!(
        matches!(&last.body, writ_core::event::ChangeEventBody::Escalated { people, .. } if people == &[n("carol")])
    );
    // Approval still works after escalation.
    assert_eq!(w.engine.approve(&id, &n("carol"), None, None).unwrap().change.state, ChangeState::Approved);
}

// ---- break-glass ----

/// The default pack with alice as the only incident responder.
fn responders_policy(w: &World) {
    let rules = writ_policy::PolicyBundle::default_pack().files()["rules.toml"]
        .replace("incident-responders = []", "incident-responders = [\"alice\"]");
    assert!(rules.contains("[\"alice\"]"));
    w.engine.load_policy(Actor::System(SystemActor::Admin), policy_with(&rules)).unwrap();
}

fn glass(actor: &str, entitlement: &str, duration: Option<Duration>) -> breakglass::BreakGlassInput {
    breakglass::BreakGlassInput {
        actor: n(actor),
        ops: vec![RequestedOp {
            action: OpAction::Grant,
            identity: n(actor),
            entitlement: EntitlementRef::parse(entitlement).unwrap(),
            duration,
        }],
        reason: Justification::parse("INC-42: primary database down").unwrap(),
        refs: vec![],
    }
}

fn types(record: &ChangeRecord) -> Vec<&'static str> {
    record.events.iter().map(|(_, e)| e.body.type_name()).collect()
}

#[test]
fn breakglass_executes_at_once_and_with_post_hoc_approval_the_trail_ends_in_review() {
    let w = world();
    responders_policy(&w);
    let before = snapshot(&w.engine);
    let refused = w.engine.breakglass(glass("bob", "apps:read", None), 1).unwrap_err();
    assert_eq!(refused.code(), "policy.not_permitted", "{refused}");
    let too_long = w.engine.breakglass(glass("alice", "apps:read", Some(Duration::hours(2))), 1).unwrap_err();
    assert_eq!(too_long.code(), "breakglass.duration_exceeded", "{too_long}");
    assert_eq!(snapshot(&w.engine), before, "refused break-glass records nothing");

    let record = w.engine.breakglass(glass("alice", "apps:read", None), 2).unwrap();
    let change = &record.change;
    let id = change.id.clone();
    assert_eq!(change.state, ChangeState::Verified, "executed and verified in the same call");
    assert_eq!(change.event, BusinessEvent::Incident);
    assert!(w.apps.observe(&[ent("read")]).unwrap().is_member(&ent("read"), &n("alice")));
    assert_eq!(change.executions[0].executor, Actor::Identity(n("alice")), "who broke glass executed");
    assert_eq!(change.ops[0].duration, Some(Duration::hours(1)), "the policy's maximum by default");
    let emergency = change.emergency.expect("marked emergency");
    assert_eq!(emergency.approval_due, emergency.declared_at.plus(Duration::hours(24)));
    assert!(change.controls.as_ref().unwrap().review_required);
    assert!(
        stamp_of(&record, "change.breakglass").rules.contains(&"breakglass.incident-responders".to_owned())
    );

    // Review waits for the post-hoc approval; whoever broke glass cannot approve it.
    let early = w.engine.review(&id, &n("carol"), "looked fine".into()).unwrap_err();
    assert_eq!(early.code(), "breakglass.approval_missing", "{early}");
    let own = w.engine.approve(&id, &n("alice"), None, None).unwrap_err();
    assert_eq!(own.code(), "sod.self_approval", "{own}");
    let approved = w.engine.approve(&id, &n("bob"), None, None).unwrap();
    assert_eq!(approved.change.state, ChangeState::Verified, "a post-hoc approval changes no state");
    let second = w.engine.approve(&id, &n("carol"), None, None).unwrap_err();
    assert_eq!(second.code(), "state.invalid_transition", "{second}");
    let reviewed = w.engine.review(&id, &n("carol"), "emergency justified, access ended".into()).unwrap();
    assert_eq!(reviewed.change.state, ChangeState::Reviewed);
    assert_eq!(
        types(&reviewed),
        [
            "change.requested",
            "change.breakglass",
            "change.execution_started",
            "change.implemented",
            "change.verified",
            "change.approved",
            "change.reviewed"
        ]
    );

    // The deadline passing after an approval in time finds nothing; the access still ends.
    advance(&w, 25 * 3_600_000);
    assert_eq!(w.engine.deadlines_due().unwrap(), breakglass::Deadlines::default());
    assert!(w.engine.findings(None).unwrap().is_empty());
    assert_eq!(w.engine.revoke_due(&expiry::ExpiryPolicy::default()).unwrap().verified.len(), 1);
    assert!(!w.apps.observe(&[ent("read")]).unwrap().is_member(&ent("read"), &n("alice")));
}

#[test]
fn breakglass_without_post_hoc_approval_by_the_deadline_ends_in_a_finding() {
    let w = world();
    responders_policy(&w);
    let id =
        w.engine.breakglass(glass("alice", "apps:admin", Some(Duration::minutes(30))), 3).unwrap().change.id;
    assert_eq!(
        w.engine.load(&id).unwrap().change.requirement.approvals,
        2,
        "privileged: two post-hoc approvals"
    );
    // The short grant ends on its own, through its expiry change.
    advance(&w, 31 * 60_000);
    assert_eq!(w.engine.revoke_due(&expiry::ExpiryPolicy::default()).unwrap().verified.len(), 1);
    assert!(!w.apps.observe(&[ent("admin")]).unwrap().is_member(&ent("admin"), &n("alice")));
    // One approval of two by the deadline is not enough.
    w.engine.approve(&id, &n("bob"), None, None).unwrap();
    advance(&w, 23 * 3_600_000);
    assert_eq!(w.engine.deadlines_due().unwrap(), breakglass::Deadlines::default(), "not due yet");
    advance(&w, 3_600_000);
    let due = w.engine.deadlines_due().unwrap();
    assert_eq!(due.overdue.len(), 1, "{due:?}");
    let (change, finding_id) = &due.overdue[0];
    assert_eq!(change, &id);
    let finding = w.engine.finding(finding_id).unwrap();
    assert_eq!(finding.kind, breakglass::APPROVAL_MISSED);
    assert_eq!(finding.state, writ_core::finding::FindingState::Open);
    assert_eq!(finding.change.as_ref(), Some(&id));
    let alerted = w.engine.load(&id).unwrap();
    assert!(
        alerted.change.alert.as_deref().is_some_and(|a| a.contains(finding_id)),
        "{:?}",
        alerted.change.alert
    );
    // Once only, however often the scheduler looks.
    let events = snapshot(&w.engine).0;
    assert_eq!(w.engine.deadlines_due().unwrap(), breakglass::Deadlines::default());
    assert_eq!(snapshot(&w.engine).0, events);
    // A late approval completes the change and resolves the finding; both stay on record.
    w.engine.approve(&id, &n("carol"), None, None).unwrap();
    let resolved = w.engine.finding(finding_id).unwrap();
    assert_eq!(resolved.state, writ_core::finding::FindingState::Resolved);
    assert_eq!(
        w.engine.review(&id, &n("dave"), "late approval noted".into()).unwrap().change.state,
        ChangeState::Reviewed
    );
    let log = w.engine.store().events(0, 10_000).unwrap();
    let finding_events: Vec<&str> = log
        .iter()
        .filter_map(|e| match writ_ledger::decode(&e.bytes, &|_| None).unwrap() {
            writ_core::event::Event::Registry(r) if r.type_name().starts_with("finding.") => {
                Some(r.type_name())
            }
            _ => None,
        })
        .collect();
    assert_eq!(finding_events, ["finding.opened", "finding.resolved"]);
}

// ---- exceptions ----

/// A break-glass change by alice left without post-hoc approval: returns it and its finding.
fn missed_breakglass(w: &World) -> (ChangeId, String) {
    responders_policy(w);
    let id =
        w.engine.breakglass(glass("alice", "apps:read", Some(Duration::minutes(30))), 5).unwrap().change.id;
    advance(w, 24 * 3_600_000 + 1);
    let due = w.engine.deadlines_due().unwrap();
    assert_eq!(due.overdue.len(), 1, "{due:?}");
    (id, due.overdue[0].1.clone())
}

fn exception_input(
    requester: &str,
    owner: &str,
    subject: &str,
    term: exceptions::Term,
) -> exceptions::ExceptionInput {
    exceptions::ExceptionInput {
        actor: n(requester),
        control: breakglass::APPROVAL_MISSED.into(),
        subject: subject.into(),
        owner: n(owner),
        justification: "the on-call approver was unreachable during the outage".into(),
        compensating_control: "the grant was reviewed line by line against the incident log".into(),
        term,
    }
}

fn exception_types(w: &World) -> Vec<String> {
    let log = w.engine.store().events(0, 10_000).unwrap();
    log.iter()
        .filter_map(|e| match writ_ledger::decode(&e.bytes, &|_| None).unwrap() {
            writ_core::event::Event::Registry(r)
                if r.type_name().starts_with("exception.") || r.type_name().starts_with("finding.") =>
            {
                Some(r.type_name().to_owned())
            }
            _ => None,
        })
        .collect()
}

#[test]
fn an_exception_is_approved_like_a_change_covers_its_finding_and_reopens_it_when_it_expires() {
    use exceptions::Term;
    use writ_core::exception::ExceptionState;
    use writ_core::finding::FindingState;
    let w = world();
    let (change, finding) = missed_breakglass(&w);
    let subject = change.to_string();

    // Bad requests are refused and record nothing.
    let before = snapshot(&w.engine);
    let not_a_person = w
        .engine
        .request_exception(exception_input("dave", "svc-ci", &subject, Term::For(Duration::hours(2))), 1);
    assert_eq!(not_a_person.unwrap_err().code(), "exception.owner_not_human");
    let too_long = w
        .engine
        .request_exception(exception_input("dave", "carol", &subject, Term::For(Duration::hours(24 * 91))), 1)
        .unwrap_err();
    assert_eq!(too_long.code(), "exception.duration_exceeded", "{too_long}");
    let past = w
        .engine
        .request_exception(exception_input("dave", "carol", &subject, Term::Until(w.engine.now())), 1);
    // Well formed but already past: 422 over HTTP, not a malformed value.
    assert_eq!(past.unwrap_err().code(), "input.too_early");
    assert_eq!(snapshot(&w.engine), before, "refused requests record nothing");

    let requested = w
        .engine
        .request_exception(exception_input("dave", "carol", &subject, Term::For(Duration::hours(2))), 2)
        .unwrap();
    let id = requested.id.to_string();
    assert_eq!((requested.state, requested.approvals_needed), (ExceptionState::Pending, 2));
    let twice = w
        .engine
        .request_exception(exception_input("bob", "carol", &subject, Term::For(Duration::hours(2))), 3);
    assert_eq!(
        twice.unwrap_err().code(),
        "exception.duplicate",
        "one live exception per control and subject"
    );

    // Separation of duties: neither the requester nor the owner, and one approval per person.
    let before = snapshot(&w.engine);
    assert_eq!(w.engine.approve_exception(&n("dave"), &id).unwrap_err().code(), "sod.self_approval");
    assert_eq!(w.engine.approve_exception(&n("carol"), &id).unwrap_err().code(), "sod.self_approval");
    assert_eq!(snapshot(&w.engine), before);
    let half = w.engine.approve_exception(&n("bob"), &id).unwrap();
    assert_eq!(half.state, ExceptionState::Pending);
    assert_eq!(w.engine.approve_exception(&n("bob"), &id).unwrap_err().code(), "sod.duplicate_approval");
    assert_eq!(w.engine.finding(&finding).unwrap().state, FindingState::Open, "not covered while pending");
    let active = w.engine.approve_exception(&n("alice"), &id).unwrap();
    assert_eq!(active.state, ExceptionState::Active);
    let covered = w.engine.finding(&finding).unwrap();
    assert_eq!((covered.state, covered.exception.as_deref()), (FindingState::Excepted, Some(id.as_str())));

    // Renewal: only its requester or owner asks; nobody approves it in time; it expires.
    let refused =
        w.engine.renew_exception(&n("bob"), &id, Term::For(Duration::hours(10)), "still needed".into());
    assert_eq!(refused.unwrap_err().code(), "exception.not_yours");
    let renewing = w
        .engine
        .renew_exception(&n("carol"), &id, Term::For(Duration::hours(10)), "audit still open".into())
        .unwrap();
    assert!(renewing.renewal.is_some() && renewing.approvals.is_empty());
    advance(&w, 3_600_000);
    assert!(w.engine.deadlines_due().unwrap().exceptions.expired.is_empty(), "not due yet");
    advance(&w, 3_600_000);
    let pass = w.engine.deadlines_due().unwrap().exceptions;
    assert_eq!(pass.expired, vec![(active.id.clone(), vec![finding.clone()])]);
    assert_eq!(w.engine.exception(&id).unwrap().state, ExceptionState::Expired);
    let reopened = w.engine.finding(&finding).unwrap();
    assert_eq!((reopened.state, reopened.exception), (FindingState::Open, None));
    let approve_late = w.engine.approve_exception(&n("bob"), &id).unwrap_err();
    assert_eq!(approve_late.code(), "state.invalid_transition", "an expired exception cannot be revived");
    // Once only.
    let events = snapshot(&w.engine).0;
    assert_eq!(w.engine.deadlines_due().unwrap(), breakglass::Deadlines::default());
    assert_eq!(snapshot(&w.engine).0, events);

    assert_eq!(
        exception_types(&w),
        [
            "finding.opened",
            "exception.requested",
            "exception.approved",
            "exception.approved",
            "finding.excepted",
            "exception.renewal_requested",
            "exception.expired",
            "finding.reopened",
        ]
    );
    // Each approval records the policy, the rules that decided and the slot it filled.
    let log = w.engine.store().events(0, 10_000).unwrap();
    let stamps: Vec<writ_core::event::PolicyStamp> = log
        .iter()
        .filter_map(|e| match writ_ledger::decode(&e.bytes, &|_| None).unwrap() {
            writ_core::event::Event::Registry(r) if r.type_name() == "exception.approved" => {
                r.policy().cloned()
            }
            _ => None,
        })
        .collect();
    assert_eq!(stamps.len(), 2);
    for stamp in &stamps {
        assert_eq!(stamp.hash, w.engine.policy().unwrap().hash());
        assert!(stamp.rules.contains(&"exception.two-approvers".to_owned()), "{stamp:?}");
        assert!(stamp.rules.contains(&"decide.humans-only".to_owned()), "{stamp:?}");
    }
    // bob took the internal slot first; alice's approval completed the quorum in it and bob
    // moved to the other: every slot filled by a distinct person.
    // With the old one expired, the same control and subject can be asked for again.
    let fresh = w
        .engine
        .request_exception(exception_input("dave", "carol", &subject, Term::For(Duration::hours(1))), 9)
        .unwrap();
    assert_eq!(fresh.state, ExceptionState::Pending);
    let slots: Vec<Option<&str>> = stamps.iter().map(|s| s.slot.as_deref()).collect();
    assert_eq!(slots, [Some("internal"), Some("internal")]);
    let record: Vec<(String, Option<String>)> =
        active.approvals.iter().map(|a| (a.approver.to_string(), a.slot.clone())).collect();
    assert_eq!(
        record,
        [("bob".to_owned(), Some("any".to_owned())), ("alice".to_owned(), Some("internal".to_owned()))]
    );
}

#[test]
fn an_active_exception_covers_findings_raised_later_and_revoking_it_reopens_them_even_after_a_crash() {
    use exceptions::Term;
    use writ_core::exception::ExceptionState;
    use writ_core::finding::FindingState;
    let w = world();
    responders_policy(&w);
    let change =
        w.engine.breakglass(glass("alice", "apps:read", Some(Duration::minutes(30))), 6).unwrap().change.id;
    let id = w
        .engine
        .request_exception(
            exception_input("dave", "carol", change.as_str(), Term::For(Duration::hours(48))),
            7,
        )
        .unwrap()
        .id
        .to_string();
    w.engine.approve_exception(&n("bob"), &id).unwrap();
    w.engine.approve_exception(&n("alice"), &id).unwrap();
    // The deadline passes: the finding opens and is covered at once.
    advance(&w, 24 * 3_600_000 + 1);
    let due = w.engine.deadlines_due().unwrap();
    let finding = w.engine.finding(&due.overdue[0].1).unwrap();
    assert_eq!((finding.state, finding.exception.as_deref()), (FindingState::Excepted, Some(id.as_str())));
    // A stranger may not reject; a revocation by someone other than its parties needs policy.
    assert_eq!(
        w.engine.reject_exception(&n("bob"), &id, "no".into()).unwrap_err().code(),
        "state.invalid_transition"
    );

    // The process dies after recording the revocation, before reopening the finding: the
    // exception stays due, and the next pass finishes the work.
    let exception = w.engine.exception(&id).unwrap();
    let revoked = exception.revoke(w.engine.now()).unwrap();
    let event = RegistryEvent::Exception {
        actor: Actor::Identity(n("carol")),
        exception: Box::new(revoked.clone()),
        kind: writ_core::exception::ExceptionEventKind::Revoked,
        note: "compensating control withdrawn".into(),
        policy: None,
    };
    let key = writ_ledger::sensitive::HmacKey::from_bytes([1; 32]);
    w.engine.store().update_exception(&revoked, Some(w.engine.now()), &registry_event(&event, &key)).unwrap();
    assert_eq!(
        w.engine.finding(&finding.id).unwrap().state,
        FindingState::Excepted,
        "crashed before the findings"
    );
    let pass = w.engine.deadlines_due().unwrap().exceptions;
    assert!(pass.errors.is_empty(), "{pass:?}");
    let reopened = w.engine.finding(&finding.id).unwrap();
    assert_eq!((reopened.state, reopened.exception), (FindingState::Open, None));
    assert_eq!(w.engine.exception(&id).unwrap().state, ExceptionState::Revoked);
    assert!(w.engine.store().due_exceptions(w.engine.now(), 10).unwrap().is_empty(), "nothing left due");
    let again = w.engine.revoke_exception(&n("carol"), &id, "again".into()).unwrap_err();
    assert_eq!(again.code(), "state.invalid_transition");
}

mod ask;
mod execution;
mod notify;
mod reconcile;
mod standing;
mod transfers;

/// Checking the tables while writes land never reports the writes in flight as divergences
/// (they come with their events in one transaction), and a real edit is still found.
#[test]
fn checking_projections_during_writes_reports_no_false_divergence() {
    let w = world();
    let writer = {
        let engine = w.engine.clone();
        std::thread::spawn(move || {
            for i in 0..300 {
                let name = n(&format!("burst-{i}"));
                engine
                    .add_identity(Actor::System(SystemActor::Admin), name, IdentityKind::Human, None, None)
                    .unwrap();
            }
        })
    };
    while !writer.is_finished() {
        let found = w.engine.check_projections().unwrap();
        assert!(found.is_empty(), "writes in flight reported as divergences: {found:?}");
    }
    writer.join().unwrap();
}

/// The incremental check reads only what was appended since the last one, yet a row written
/// behind the ledger's back is found by it as by the full check.
#[test]
fn the_incremental_check_follows_new_events_and_still_finds_a_row_written_behind_the_ledger() {
    use writ_core::access::Role;
    use writ_store::{Fix, NewEvent};
    let w = world();
    assert!(w.engine.check_projections_incremental().unwrap().is_empty());
    for i in 0..5 {
        let name = n(&format!("late-{i}"));
        w.engine
            .add_identity(Actor::System(SystemActor::Admin), name, IdentityKind::Human, None, None)
            .unwrap();
    }
    assert!(w.engine.check_projections_incremental().unwrap().is_empty(), "new events folded in");
    // A role row put in with no role event (an opaque event stands in for the SQL edit).
    let opaque = |body: &str| NewEvent {
        change: None,
        seq: None,
        type_name: "test",
        phase: "registry",
        actor: "mallory".into(),
        on_behalf_of: None,
        at: Timestamp::from_millis(1),
        bytes: body.as_bytes().to_vec(),
        leaf: writ_ledger::leaf_hash(body.as_bytes()),
        notices: Vec::new(),
    };
    let store = w.engine.store();
    store
        .repair(&[Fix::Role(n("alice"), Role::Admin, true)], &opaque("edit"), store.event_count().unwrap())
        .unwrap();
    let incremental = w.engine.check_projections_incremental().unwrap();
    assert_eq!(incremental, w.engine.check_projections().unwrap());
    let named: Vec<String> = incremental.iter().map(|d| format!("{} {}", d.table, d.key)).collect();
    assert_eq!(named, vec!["roles alice admin"]);
    store
        .repair(&[Fix::Role(n("alice"), Role::Admin, false)], &opaque("undo"), store.event_count().unwrap())
        .unwrap();
    assert!(w.engine.check_projections_incremental().unwrap().is_empty());
}
