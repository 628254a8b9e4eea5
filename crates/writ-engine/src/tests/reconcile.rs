//! Reconciliation: every situation raises its finding once, a partial observation raises no
//! missing access and resolves nothing, a remediation resolves its finding only once verified.

use writ_connector::{Credential, Holdings};
use writ_core::finding::{FindingState, Severity};
use writ_core::identity::IdentityState;
use writ_core::reconcile::Situation;

use super::*;

fn admin() -> Actor {
    Actor::System(SystemActor::Admin)
}

fn apps() -> TargetName {
    TargetName::parse("apps").unwrap()
}

/// Writes on the memory target as someone outside Writ would.
fn out_of_band(w: &World, action: OpAction, who: &str, what: &str) {
    let context = ApplyContext {
        change: ChangeId::generate(w.clock.now(), 999),
        summary: "made by hand".into(),
        requester: "root".into(),
        approvers: vec![],
        executor: "root".into(),
        at: w.clock.now(),
    };
    let op = TargetOp { action, entitlement: ent(what), member: n(who), ttl: None };
    w.apps.apply(&context, &[op]).unwrap();
}

fn granted(w: &World, who: &str, what: &str, duration: Option<Duration>, random: u128) -> ChangeId {
    let mut request = input("alice", &[(OpAction::Grant, who, what)]);
    request.ops[0].duration = duration;
    let id = w.engine.request(request, random).unwrap().change.id;
    for approver in ["bob", "carol", "dave"].into_iter().filter(|a| *a != who) {
        if w.engine.load(&id).unwrap().change.state == ChangeState::PendingApproval {
            w.engine.approve(&id, &n(approver), None, None).unwrap();
        }
    }
    w.engine.execute(&id, None).unwrap();
    assert_eq!(w.engine.verify(&id).unwrap().change.state, ChangeState::Verified);
    id
}

fn kinds(findings: &[writ_core::finding::Finding]) -> Vec<(String, String)> {
    let mut kinds: Vec<(String, String)> =
        findings.iter().map(|f| (f.kind.clone(), f.subject.clone())).collect();
    kinds.sort();
    kinds
}

fn pair(kind: &str, subject: &str) -> (String, String) {
    (kind.to_owned(), subject.to_owned())
}

#[test]
fn every_situation_is_classified_and_raised_once_with_severity_controls_and_evidence() {
    let w = world();
    granted(&w, "dave", "apps:read", None, 1);
    // Missing: approved and implemented, then removed by hand.
    granted(&w, "carol", "apps:read", None, 2);
    out_of_band(&w, OpAction::Revoke, "carol", "read");
    // Expired: time-bound, still held after its end (the expiry job has not run).
    granted(&w, "bob", "apps:read", Some(Duration::hours(1)), 3);
    // Unapproved: a registered identity given a privileged entitlement by hand.
    out_of_band(&w, OpAction::Grant, "svc-ci", "admin");
    // Unmatched: an account no identity is.
    out_of_band(&w, OpAction::Grant, "mallory", "read");
    w.clock.0.fetch_add(2 * 3_600_000, Ordering::SeqCst);

    let report = w.engine.reconcile_target(admin(), &apps()).unwrap();
    assert!(report.partial.is_empty(), "{:?}", report.partial);
    let counts: Vec<(Situation, u64)> = report.tally.pairs().collect();
    assert_eq!(
        counts,
        [
            (Situation::Linked, 1),
            (Situation::Missing, 1),
            (Situation::Unapproved, 1),
            (Situation::Expired, 1),
            (Situation::Unmatched, 1)
        ]
    );
    assert_eq!(
        kinds(&report.opened),
        [
            pair("access.expired_not_revoked", "bob apps:read"),
            pair("access.missing", "carol apps:read"),
            pair("access.unapproved", "svc-ci apps:admin"),
            pair("identity.unmatched_account", "apps account mallory"),
        ]
    );
    let unapproved = report.opened.iter().find(|f| f.kind == "access.unapproved").unwrap();
    assert_eq!(unapproved.severity, Severity::High, "privileged entitlement");
    assert!(unapproved.controls.iter().any(|c| c.starts_with("NIST-CSF:")), "{:?}", unapproved.controls);
    assert_eq!(unapproved.evidence.as_deref(), Some(report.snapshot.as_str()));
    assert_eq!(unapproved.scope.as_deref(), Some("target:apps"));
    let read = w.engine.finding(&unapproved.id).unwrap();
    assert_eq!(&read, unapproved, "stored as reported");
    // The snapshot is kept as evidence and names what was held.
    let digest: [u8; 32] = (0..32)
        .map(|i| u8::from_str_radix(&report.snapshot[i * 2..i * 2 + 2], 16).unwrap())
        .collect::<Vec<_>>()
        .try_into()
        .unwrap();
    let blob = w.engine.store().evidence(&digest).unwrap().unwrap();
    let text = String::from_utf8(blob.bytes).unwrap();
    assert!(text.contains(r#"["held","svc-ci","admin"]"#), "{text}");

    // Nothing changed: nothing new, the same findings seen again.
    let events = w.engine.store().event_count().unwrap();
    let again = w.engine.reconcile_target(admin(), &apps()).unwrap();
    assert!(again.opened.is_empty() && again.reopened.is_empty() && again.resolved.is_empty(), "{again:?}");
    assert_eq!(again.still_open, 4);
    assert_eq!(w.engine.store().event_count().unwrap(), events + 1, "only the run is recorded");
    assert_eq!(w.engine.findings(Some(FindingState::Open)).unwrap().len(), 4);
}

#[test]
fn a_partial_observation_raises_no_missing_access_and_resolves_nothing() {
    let w = world();
    granted(&w, "dave", "gated:deploy", None, 1);
    out_of_band_gated(&w, "dave");
    let gated = TargetName::parse("gated").unwrap();
    let first = w.engine.reconcile_target(admin(), &gated).unwrap();
    assert_eq!(kinds(&first.opened), [pair("access.missing", "dave gated:deploy")]);

    w.gated.down.store(true, Ordering::SeqCst);
    let down = w.engine.reconcile_target(admin(), &gated).unwrap();
    assert_eq!(down.partial.len(), 1, "{down:?}");
    assert!(down.partial[0].contains("connection refused"), "{:?}", down.partial);
    assert!(down.opened.is_empty() && down.resolved.is_empty(), "{down:?}");
    assert_eq!(down.tally.get(Situation::Missing), 0, "missing is not assessed on a partial read");
    let finding = w.engine.finding(&first.opened[0].id).unwrap();
    assert_eq!(finding.state, FindingState::Open, "a partial run resolves nothing");
}

fn out_of_band_gated(w: &World, who: &str) {
    let context = ApplyContext {
        change: ChangeId::generate(w.clock.now(), 998),
        summary: "by hand".into(),
        requester: "root".into(),
        approvers: vec![],
        executor: "root".into(),
        at: w.clock.now(),
    };
    let op = TargetOp { action: OpAction::Revoke, entitlement: ent("deploy"), member: n(who), ttl: None };
    w.gated.inner.as_ref().unwrap().apply(&context, &[op]).unwrap();
}

#[test]
fn remediation_opens_a_revoke_through_approvals_and_resolves_only_once_verified() {
    let w = world();
    out_of_band(&w, OpAction::Grant, "dave", "read");
    let report = w.engine.reconcile_target(admin(), &apps()).unwrap();
    let finding = report.opened.iter().find(|f| f.kind == "access.unapproved").unwrap().clone();

    let (linked, record) = w.engine.remediate_finding(&n("carol"), &finding.id, None, 7).unwrap();
    assert_eq!(linked.remediation.as_ref(), Some(&record.change.id));
    let change = &record.change;
    assert_eq!(change.state, ChangeState::PendingApproval);
    assert_eq!(change.ops.len(), 1);
    assert_eq!((change.ops[0].action, change.ops[0].identity.as_str()), (OpAction::Revoke, "dave"));
    assert!(change.refs.iter().any(|r| r.value() == finding.id), "the change names the finding");
    // A second remediation while the first is under way is refused, and changes nothing.
    let before = snapshot(&w.engine);
    let again = w.engine.remediate_finding(&n("carol"), &finding.id, None, 8).unwrap_err();
    assert_eq!(again.code(), "finding.remediation_open");
    assert_eq!(snapshot(&w.engine), before);
    // The requester cannot approve the fix (separation of duties still holds).
    assert_eq!(
        w.engine.approve(&change.id, &n("carol"), None, None).unwrap_err().code(),
        "sod.self_approval"
    );
    w.engine.approve(&change.id, &n("bob"), None, None).unwrap();
    w.engine.execute(&change.id, None).unwrap();
    assert_eq!(w.engine.finding(&finding.id).unwrap().state, FindingState::Open, "not before verification");
    assert_eq!(w.engine.verify(&change.id).unwrap().change.state, ChangeState::Verified);
    let resolved = w.engine.finding(&finding.id).unwrap();
    assert_eq!(resolved.state, FindingState::Resolved);
    assert!(!w.apps.observe(&[ent("read")]).unwrap().is_member(&ent("read"), &n("dave")));
    // Seen again after resolution (granted by hand once more): reopened, not a second finding.
    out_of_band(&w, OpAction::Grant, "dave", "read");
    let later = w.engine.reconcile_target(admin(), &apps()).unwrap();
    assert!(later.opened.is_empty(), "{:?}", later.opened);
    assert_eq!(later.reopened.iter().map(|f| f.id.as_str()).collect::<Vec<_>>(), [finding.id.as_str()]);
    assert_eq!(later.reopened[0].remediation, None, "a fresh problem has no fix under way");
}

#[test]
fn what_no_change_fixes_is_refused_with_what_to_do_and_records_nothing() {
    let w = world();
    out_of_band(&w, OpAction::Grant, "mallory", "read");
    let report = w.engine.reconcile_target(admin(), &apps()).unwrap();
    let unmatched = &report.opened[0];
    assert_eq!(unmatched.kind, "identity.unmatched_account");
    let before = snapshot(&w.engine);
    // Decommissioning an unknown account registers it first: an admin's work.
    let err = w.engine.remediate_finding(&n("carol"), &unmatched.id, None, 1).unwrap_err();
    assert_eq!(err.code(), "finding.remediation_not_allowed");
    assert!(err.to_string().contains("admin"), "{err}");
    for bad in ["FND-nothex", "FND-0000000000000000"] {
        assert!(w.engine.remediate_finding(&n("carol"), bad, None, 2).is_err(), "{bad}");
    }
    assert!(w.engine.remediate_finding(&n("mallory"), &unmatched.id, None, 3).is_err(), "unknown actor");
    assert_eq!(snapshot(&w.engine), before);
}

#[test]
fn a_condition_gone_from_a_complete_run_is_resolved() {
    let w = world();
    out_of_band(&w, OpAction::Grant, "dave", "read");
    let first = w.engine.reconcile_target(admin(), &apps()).unwrap();
    assert_eq!(first.opened.len(), 1);
    out_of_band(&w, OpAction::Revoke, "dave", "read");
    let second = w.engine.reconcile_target(admin(), &apps()).unwrap();
    assert_eq!(
        second.resolved.iter().map(|f| f.id.as_str()).collect::<Vec<_>>(),
        [first.opened[0].id.as_str()]
    );
    assert_eq!(w.engine.finding(&first.opened[0].id).unwrap().state, FindingState::Resolved);
}

#[test]
fn an_nhi_whose_owner_leaves_is_orphaned_and_seen_again_until_it_has_an_owner() {
    let w = world();
    let clean = w.engine.reconcile_registry(admin()).unwrap();
    assert!(clean.opened.is_empty(), "{:?}", clean.opened);
    // Offboarding flags what alice owns at once; the registry's run sees the same finding.
    w.engine.set_identity_state(admin(), &n("alice"), IdentityState::Offboarded, "left".into()).unwrap();
    let flagged = w.engine.findings(Some(FindingState::Open)).unwrap();
    assert_eq!(kinds(&flagged), [pair("nhi.orphaned", "svc-ci")]);
    assert_eq!(flagged[0].severity, Severity::High);
    assert_eq!(flagged[0].scope.as_deref(), Some("registry"));
    let report = w.engine.reconcile_registry(admin()).unwrap();
    assert!(report.opened.is_empty() && report.resolved.is_empty(), "{report:?}");
    assert_eq!(report.still_open, 1);
    // Closed by hand without a fix: the next run opens it again.
    w.engine.resolve_finding(&n("bob"), &flagged[0].id, "will look at it later".into()).unwrap();
    let report = w.engine.reconcile_registry(admin()).unwrap();
    assert_eq!(kinds(&report.reopened), [pair("nhi.orphaned", "svc-ci")]);
    assert!(report.reopened[0].detail.contains("offboarded"), "{}", report.reopened[0].detail);
    let err = w.engine.remediate_finding(&n("bob"), &flagged[0].id, None, 1).unwrap_err();
    assert_eq!(err.code(), "finding.no_remedy");
}

/// A target that reports credentials: one within policy, one issued for too long, one issued
/// too long ago, one that never expires.
struct Vault;

impl Connector for Vault {
    fn entitlements(&self) -> writ_connector::Result<Vec<EntitlementName>> {
        Ok(vec![ent("policy/deploy")])
    }
    fn plan(&self, _: &[TargetOp]) -> writ_connector::Result<Vec<PlanStep>> {
        Ok(vec![])
    }
    fn apply(&self, _: &ApplyContext, _: &[TargetOp]) -> writ_connector::Result<ApplyReport> {
        Ok(ApplyReport { applied: vec![], reference: None })
    }
    fn observe(&self, _: &[EntitlementName]) -> writ_connector::Result<Observed> {
        Ok(Observed::default())
    }
    fn holdings(&self) -> writ_connector::Result<Holdings> {
        let now = 1_800_000_000_000;
        let day = 86_400_000;
        let token = |handle: &str, issued: i64, lifetime: Option<i64>| Credential {
            class: "token",
            handle: handle.into(),
            account: Some("svc-ci".into()),
            entitlement: Some(ent("policy/deploy")),
            issued_at: Some(Timestamp::from_millis(issued)),
            expires_at: lifetime.map(|l| Timestamp::from_millis(issued + l)),
        };
        Ok(Holdings {
            held: vec![("svc-ci".into(), ent("policy/deploy"))],
            credentials: vec![
                token("ok", now - day, Some(7 * day)),
                token("ttl", now - day, Some(365 * day)),
                token("old", now - 100 * day, Some(7 * day)),
                token("forever", now - day, None),
            ],
            ..Holdings::default()
        })
    }
}

#[test]
fn credentials_beyond_the_policy_limits_are_long_lived() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("writ.db"), OpenMode::Create).unwrap());
    let mut targets: BTreeMap<String, Arc<dyn Connector>> = BTreeMap::new();
    targets.insert("vault".into(), Arc::new(Vault));
    let clock = Arc::new(TestClock(AtomicI64::new(1_800_000_000_000)));
    let engine = Engine::new(store, Arc::new(Targets(targets)), clock.clone())
        .with_hmac_key(Arc::new(writ_ledger::sensitive::HmacKey::from_bytes([1; 32])));
    engine.add_identity(admin(), n("alice"), IdentityKind::Human, None, None).unwrap();
    engine.add_identity(admin(), n("svc-ci"), IdentityKind::ServiceAccount, Some(&n("alice")), None).unwrap();
    let vault = TargetName::parse("vault").unwrap();
    engine.add_target(admin(), vault.clone(), ConnectorKind::parse("memory").unwrap(), vec![]).unwrap();
    let report = engine.reconcile_target(admin(), &vault).unwrap();
    let mut long_lived: Vec<&str> = report
        .opened
        .iter()
        .filter(|f| f.kind == "secret.long_lived")
        .map(|f| f.subject.rsplit(' ').next().unwrap())
        .collect();
    long_lived.sort_unstable();
    // The pack allows tokens 30 days of lifetime and 90 days of age.
    assert_eq!(long_lived, ["forever", "old", "ttl"]);
    let ttl = report.opened.iter().find(|f| f.subject.ends_with(" ttl")).unwrap();
    assert!(ttl.detail.contains("365d") && ttl.detail.contains("30d"), "{}", ttl.detail);
    assert!(ttl.controls.iter().any(|c| c == "OWASP-NHI:NHI7:2025"), "{:?}", ttl.controls);
    assert_eq!(ttl.subject, "svc-ci vault:policy/deploy token ttl");
    assert_eq!(report.credentials, 4);
    assert!(engine.check_projections().unwrap().is_empty());
    // Days later nothing changed on the target: the run records itself and nothing else (the
    // findings say when a secret was issued, not how old it is today).
    clock.0.fetch_add(3 * 86_400_000, Ordering::SeqCst);
    let events = engine.store().event_count().unwrap();
    let again = engine.reconcile_target(admin(), &vault).unwrap();
    assert!(again.opened.is_empty() && again.reopened.is_empty(), "{again:?}");
    assert_eq!(engine.store().event_count().unwrap(), events + 1, "only the run is recorded");
}

#[test]
fn the_snapshot_is_json_lines_whatever_the_target_names_its_accounts() {
    let odd = "o\"dd\\name\nwith\u{1}controls";
    let holdings = Holdings {
        held: vec![(odd.to_owned(), ent("read")), ("dave".into(), ent("read"))],
        accounts: vec!["ghost".into()],
        partial: vec!["users: a page failed".into()],
        reference: Some("abc123".into()),
        ..Holdings::default()
    };
    let blob = crate::reconcile::snapshot(&apps(), &holdings);
    assert_eq!(blob.sha256, writ_ledger::sha256(&blob.bytes));
    let lines: Vec<serde_json::Value> =
        std::str::from_utf8(&blob.bytes).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(
        lines,
        [
            serde_json::json!(["target", "apps", "abc123"]),
            serde_json::json!(["partial", "users: a page failed"]),
            serde_json::json!(["held", odd, "read"]),
            serde_json::json!(["held", "dave", "read"]),
            serde_json::json!(["account", "ghost"]),
        ]
    );
}

#[test]
fn access_unused_beyond_stale_after_is_stale_only_where_there_is_a_usage_signal() {
    let w = world();
    granted(&w, "dave", "apps:read", None, 1);
    granted(&w, "carol", "apps:read", None, 2);
    let day = 86_400_000;
    w.clock.0.fetch_add(100 * day, Ordering::SeqCst);
    // No signal from the memory target and none reported: nothing is stale, and the run says so.
    let quiet = w.engine.reconcile_target(admin(), &apps()).unwrap();
    assert!(!quiet.usage_signal);
    assert!(quiet.opened.is_empty(), "{:?}", quiet.opened);

    // A feed says carol used it yesterday; dave was last seen 95 days ago (pack: stale after 90d).
    let now = w.clock.now().as_millis();
    let entries = vec![
        ("carol".to_owned(), Timestamp::from_millis(now - day)),
        ("dave".to_owned(), Timestamp::from_millis(now - 95 * day)),
        ("dave".to_owned(), Timestamp::from_millis(now - 96 * day)),
    ];
    w.engine.report_usage(admin(), &apps(), "siem", entries).unwrap();
    assert_eq!(
        w.engine.store().usage(&apps()).unwrap(),
        [
            ("carol".to_owned(), Timestamp::from_millis(now - day)),
            ("dave".to_owned(), Timestamp::from_millis(now - 95 * day))
        ],
        "the latest of each account"
    );
    let run = w.engine.reconcile_target(admin(), &apps()).unwrap();
    assert!(run.usage_signal);
    assert_eq!(kinds(&run.opened), [pair("access.stale", "dave apps:read")]);
    assert!(run.opened[0].detail.contains("last used"), "{}", run.opened[0].detail);
    // An older report never moves a last use back; a newer one resolves the finding.
    w.engine
        .report_usage(admin(), &apps(), "siem", vec![("dave".into(), Timestamp::from_millis(now - 99 * day))])
        .unwrap();
    assert_eq!(w.engine.reconcile_target(admin(), &apps()).unwrap().still_open, 1);
    w.engine
        .report_usage(admin(), &apps(), "siem", vec![("dave".into(), Timestamp::from_millis(now))])
        .unwrap();
    let used = w.engine.reconcile_target(admin(), &apps()).unwrap();
    assert_eq!(kinds(&used.resolved), [pair("access.stale", "dave apps:read")]);

    // Bad reports are refused and record nothing.
    let before = snapshot(&w.engine);
    let future = Timestamp::from_millis(now + 3_600_000);
    type Report = (&'static str, TargetName, &'static str, Vec<(String, Timestamp)>);
    let bad: Vec<Report> = vec![
        (
            "unknown target",
            TargetName::parse("nowhere").unwrap(),
            "siem",
            vec![("dave".into(), w.clock.now())],
        ),
        ("no entries", apps(), "siem", vec![]),
        ("too many", apps(), "siem", (0..1001).map(|i| (format!("a{i}"), w.clock.now())).collect()),
        ("blank account", apps(), "siem", vec![(" ".into(), w.clock.now())]),
        ("two lines", apps(), "siem", vec![("da\nve".into(), w.clock.now())]),
        ("long account", apps(), "siem", vec![("x".repeat(201), w.clock.now())]),
        ("blank source", apps(), " ", vec![("dave".into(), w.clock.now())]),
    ];
    for (name, target, source, entries) in bad {
        assert!(w.engine.report_usage(admin(), &target, source, entries).is_err(), "{name} was accepted");
        assert_eq!(snapshot(&w.engine), before, "{name} changed the store");
    }
    // A use reported ahead of the clock counts as now, never later.
    w.engine.report_usage(admin(), &apps(), "siem", vec![("erin".into(), future)]).unwrap();
    let erin = w.engine.store().usage(&apps()).unwrap().into_iter().find(|(a, _)| a == "erin").unwrap();
    assert_eq!(erin.1, w.clock.now());
}

#[test]
fn an_unmatched_account_is_decommissioned_through_a_change_that_resolves_its_finding_once_verified() {
    let w = world();
    w.engine.set_role(admin(), &n("dave"), writ_core::access::Role::Admin, true).unwrap();
    out_of_band(&w, OpAction::Grant, "mallory", "read");
    out_of_band(&w, OpAction::Grant, "mallory", "admin");
    let report = w.engine.reconcile_target(admin(), &apps()).unwrap();
    let unmatched = report.opened.iter().find(|f| f.kind == "identity.unmatched_account").unwrap().clone();
    assert_eq!(unmatched.subject, "apps account mallory");

    let (linked, record) =
        w.engine.remediate_finding(&n("dave"), &unmatched.id, Some("nobody knows it".into()), 9).unwrap();
    assert_eq!(linked.remediation.as_ref(), Some(&record.change.id));
    let change = &record.change;
    assert_eq!(change.event, BusinessEvent::Decommission);
    let mut revoked: Vec<String> =
        change.ops.iter().map(|op| format!("{} {}", op.action, op.entitlement)).collect();
    revoked.sort();
    assert_eq!(revoked, ["revoke apps:admin", "revoke apps:read"]);
    // Registered under its own name, owned by who decommissions it, and offboarded at once.
    let mallory = w.engine.identity(&n("mallory")).unwrap();
    assert_eq!(
        (mallory.kind, mallory.owner.clone(), mallory.state),
        (IdentityKind::ServiceAccount, Some(n("dave")), IdentityState::Offboarded)
    );
    // While the change is under way, a run that no longer sees the account unmatched leaves
    // its finding to the change.
    w.engine.reconcile_target(admin(), &apps()).unwrap();
    assert_eq!(w.engine.finding(&unmatched.id).unwrap().state, FindingState::Open);
    let again = w.engine.remediate_finding(&n("dave"), &unmatched.id, None, 10).unwrap_err();
    assert_eq!(again.code(), "finding.remediation_open");

    assert_eq!(w.engine.approve(&change.id, &n("dave"), None, None).unwrap_err().code(), "sod.self_approval");
    w.engine.approve(&change.id, &n("bob"), None, None).unwrap();
    if w.engine.load(&change.id).unwrap().change.state == ChangeState::PendingApproval {
        w.engine.approve(&change.id, &n("carol"), None, None).unwrap();
    }
    w.engine.execute(&change.id, None).unwrap();
    assert_eq!(w.engine.verify(&change.id).unwrap().change.state, ChangeState::Verified);
    assert_eq!(w.engine.finding(&unmatched.id).unwrap().state, FindingState::Resolved);
    let held = w.apps.observe(&[ent("read"), ent("admin")]).unwrap();
    assert!(!held.is_member(&ent("read"), &n("mallory")) && !held.is_member(&ent("admin"), &n("mallory")));
    let after = w.engine.reconcile_target(admin(), &apps()).unwrap();
    assert!(after.opened.is_empty() && after.reopened.is_empty(), "{after:?}");
}

#[test]
fn an_unmatched_account_that_holds_nothing_or_is_registered_since_is_not_decommissioned() {
    let w = world();
    w.engine.set_role(admin(), &n("dave"), writ_core::access::Role::Admin, true).unwrap();
    out_of_band(&w, OpAction::Grant, "mallory", "read");
    out_of_band(&w, OpAction::Grant, "trudy", "read");
    let report = w.engine.reconcile_target(admin(), &apps()).unwrap();
    let of = |who: &str| {
        report.opened.iter().find(|f| f.subject == format!("apps account {who}")).unwrap().id.clone()
    };
    // mallory's access went away by hand; trudy was registered meanwhile.
    out_of_band(&w, OpAction::Revoke, "mallory", "read");
    w.engine.add_identity(admin(), n("trudy"), IdentityKind::Human, None, None).unwrap();
    let before = snapshot(&w.engine);
    for (who, says) in [("mallory", "holds nothing"), ("trudy", "registered")] {
        let err = w.engine.remediate_finding(&n("dave"), &of(who), None, 1).unwrap_err();
        assert_eq!(err.code(), "finding.no_remedy", "{who}: {err}");
        assert!(err.to_string().contains(says), "{who}: {err}");
    }
    assert_eq!(snapshot(&w.engine), before, "refusals change nothing");
    assert!(w.engine.store().identity(&n("mallory")).unwrap().is_none());
}

#[test]
fn a_decommission_cut_off_after_registering_the_account_is_carried_on() {
    let w = world();
    w.engine.set_role(admin(), &n("dave"), writ_core::access::Role::Admin, true).unwrap();
    out_of_band(&w, OpAction::Grant, "mallory", "read");
    let report = w.engine.reconcile_target(admin(), &apps()).unwrap();
    let unmatched = report.opened.iter().find(|f| f.kind == "identity.unmatched_account").unwrap().clone();
    // The process died right after registering the account, before offboarding it.
    w.clock.0.fetch_add(1000, Ordering::SeqCst);
    w.engine
        .add_identity(
            Actor::Identity(n("dave")),
            n("mallory"),
            IdentityKind::ServiceAccount,
            Some(&n("dave")),
            None,
        )
        .unwrap();
    let (linked, record) = w.engine.remediate_finding(&n("dave"), &unmatched.id, None, 11).unwrap();
    assert_eq!(linked.remediation.as_ref(), Some(&record.change.id));
    assert_eq!(record.change.event, BusinessEvent::Decommission);
    assert_eq!(w.engine.identity(&n("mallory")).unwrap().state, IdentityState::Offboarded);
    // Someone else's registration is theirs to keep: not decommissioned through this finding.
    out_of_band(&w, OpAction::Grant, "trudy", "read");
    let report = w.engine.reconcile_target(admin(), &apps()).unwrap();
    let trudy = report.opened.iter().find(|f| f.subject == "apps account trudy").unwrap().clone();
    w.clock.0.fetch_add(1000, Ordering::SeqCst);
    w.engine
        .add_identity(admin(), n("trudy"), IdentityKind::ServiceAccount, Some(&n("carol")), None)
        .unwrap();
    let err = w.engine.remediate_finding(&n("dave"), &trudy.id, None, 12).unwrap_err();
    assert_eq!(err.code(), "finding.no_remedy", "{err}");
}

#[test]
fn the_grants_of_a_target_stream_in_byte_order_across_pages() {
    let w = world();
    for (n, (who, what)) in
        [("dave", "apps:read"), ("carol", "apps:admin"), ("bob", "apps:read"), ("carol", "apps:read")]
            .into_iter()
            .enumerate()
    {
        granted(&w, who, what, None, 100 + n as u128);
    }
    for page in [1, 2, 3, 100] {
        let seen = crate::reconcile::stream_grants(w.engine.store(), &apps(), page, |grants| {
            grants
                .map(|(key, approved)| {
                    assert!(approved.change.starts_with("CHG-"), "{}", approved.change);
                    format!("{} {}", key.pair().0, key.pair().1)
                })
                .collect::<Vec<_>>()
        })
        .unwrap();
        assert_eq!(seen, ["bob read", "carol admin", "carol read", "dave read"], "pages of {page}");
    }
}
