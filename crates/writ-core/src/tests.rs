//! Unit and property tests of the pure core: every rule of the state machine without a database.

use proptest::prelude::*;

use crate::change::*;
use crate::error::Refusal;
use crate::event::{ChangeEvent, ChangeEventBody};
use crate::identity::{Actor, Identity, IdentityKind, SystemActor};
use crate::machine::{Command, NewChange, decide, evolve, replay};
use crate::name::{EntitlementRef, IdentityName, OrgName};
use crate::time::{Duration, Timestamp};

const T0: Timestamp = Timestamp::from_millis(1_800_000_000_000);

fn name(n: &str) -> IdentityName {
    IdentityName::parse(n).unwrap()
}

fn human(n: &str) -> Identity {
    Identity::new(name(n), IdentityKind::Human, None, None, T0).unwrap()
}

fn vendor(n: &str, org: &str) -> Identity {
    Identity::new(name(n), IdentityKind::Human, None, Some(OrgName::parse(org).unwrap()), T0).unwrap()
}

fn service(n: &str, owner: &Identity) -> Identity {
    Identity::new(name(n), IdentityKind::ServiceAccount, Some(owner), None, T0).unwrap()
}

fn op(action: OpAction, who: &Identity, ent: &str) -> PlannedOp {
    PlannedOp {
        action,
        identity: who.name.clone(),
        entitlement: EntitlementRef::parse(ent).unwrap(),
        duration: None,
    }
}

fn request(
    requester: &Identity,
    on_behalf_of: Option<&Identity>,
    ops: Vec<(PlannedOp, Identity)>,
    approvals: u8,
) -> Command {
    let (ops, subjects): (Vec<_>, Vec<_>) = ops.into_iter().unzip();
    Command::Request(Box::new(NewChange {
        id: ChangeId::generate(T0, 42),
        requester: requester.clone(),
        on_behalf_of: on_behalf_of.cloned(),
        event: BusinessEvent::Joiner,
        refs: vec![ExternalRef::new(RefKind::Ticket, "JIRA-1").unwrap()],
        justification: Justification::parse("needs read access for onboarding").unwrap(),
        ops,
        window: None,
        rollback_owner: None,
        rollback_of: None,
        subjects,
        requirement: ApprovalRequirement { approvals, validity: Duration::hours(24) },
        controls: None,
    }))
}

/// Applies a command, folding its events; returns the refusal untouched.
fn step(change: Option<Change>, command: Command, now: Timestamp) -> Result<Change, Refusal> {
    let events = decide(change.as_ref(), command, now)?;
    let mut current = change;
    for event in &events {
        current = Some(evolve(current, event).unwrap());
    }
    Ok(current.unwrap())
}

fn pending(requester: &Identity, grantee: &Identity) -> Change {
    let ops = vec![(op(OpAction::Grant, grantee, "repo:read"), grantee.clone())];
    step(None, request(requester, None, ops, 1), T0).unwrap()
}

fn at(hours: i64) -> Timestamp {
    T0.plus(Duration::from_millis(hours * 3_600_000 + 1).unwrap())
}

fn engine() -> Actor {
    Actor::System(SystemActor::Engine)
}

#[test]
fn full_chain_reaches_reviewed_and_records_every_actor() {
    let (alice, bob, carol, dave) = (human("alice"), human("bob"), human("carol"), human("dave"));
    let change = pending(&alice, &dave);
    assert_eq!(change.state, ChangeState::PendingApproval);
    let change = step(
        Some(change),
        Command::Approve { approver: bob.clone(), on_behalf_of: None, validity: None },
        at(1),
    )
    .unwrap();
    assert_eq!(change.state, ChangeState::Approved);
    let change = step(Some(change), Command::StartExecution { executor: engine() }, at(2)).unwrap();
    assert_eq!(change.state, ChangeState::Implementing);
    let outcomes = vec![OpOutcome { op: 0, before: false, after: true, reference: Some("abc".into()) }];
    let change = step(Some(change), Command::RecordImplementation { outcomes, error: None }, at(2)).unwrap();
    assert_eq!(change.state, ChangeState::Implemented);
    let observations = vec![Observation { op: 0, present: true }];
    let change = step(
        Some(change),
        Command::RecordVerification { verifier: engine(), observations, residual: vec![] },
        at(3),
    )
    .unwrap();
    assert_eq!(change.state, ChangeState::Verified);
    let change =
        step(Some(change), Command::Review { reviewer: carol.clone(), notes: "ok".into() }, at(4)).unwrap();
    assert_eq!(change.state, ChangeState::Reviewed);
    assert_eq!(change.requester, alice.name);
    assert_eq!(change.approvals[0].approver, bob.name);
    assert_eq!(change.executions[0].executor, engine());
    assert_eq!(change.closing.unwrap().actor, Actor::Identity(carol.name));
    assert_eq!(change.seq, 7);
}

#[test]
fn requester_cannot_approve_their_own_change() {
    let (alice, dave) = (human("alice"), human("dave"));
    let change = pending(&alice, &dave);
    let refusal = step(
        Some(change.clone()),
        Command::Approve { approver: alice.clone(), on_behalf_of: None, validity: None },
        at(1),
    )
    .unwrap_err();
    assert_eq!(refusal.code(), "sod.self_approval");
    assert!(refusal.to_string().contains("requester"), "{refusal}");
}

#[test]
fn approving_on_behalf_of_the_requester_is_self_approval() {
    let (alice, bob, dave) = (human("alice"), human("bob"), human("dave"));
    let change = pending(&alice, &dave);
    let refusal = step(
        Some(change),
        Command::Approve { approver: bob, on_behalf_of: Some(alice), validity: None },
        at(1),
    )
    .unwrap_err();
    assert_eq!(refusal.code(), "sod.self_approval");
}

#[test]
fn the_principal_of_an_on_behalf_of_request_cannot_approve_it() {
    let (alice, bob, dave) = (human("alice"), human("bob"), human("dave"));
    let ops = vec![(op(OpAction::Grant, &dave, "repo:read"), dave.clone())];
    let change = step(None, request(&alice, Some(&bob), ops, 1), T0).unwrap();
    assert_eq!(change.on_behalf_of.as_ref(), Some(&bob.name));
    let refusal =
        step(Some(change), Command::Approve { approver: bob, on_behalf_of: None, validity: None }, at(1))
            .unwrap_err();
    assert_eq!(refusal.code(), "sod.self_approval");
    assert!(refusal.to_string().contains("on-behalf-of"), "{refusal}");
}

#[test]
fn a_beneficiary_cannot_approve_their_own_access() {
    let (alice, dave) = (human("alice"), human("dave"));
    let change = pending(&alice, &dave);
    let refusal =
        step(Some(change), Command::Approve { approver: dave, on_behalf_of: None, validity: None }, at(1))
            .unwrap_err();
    assert_eq!(refusal.code(), "sod.self_approval");
    assert!(refusal.to_string().contains("beneficiary"), "{refusal}");
}

#[test]
fn quorum_needs_distinct_people() {
    let (alice, bob, erin, dave) = (human("alice"), human("bob"), human("erin"), human("dave"));
    let ops = vec![(op(OpAction::Grant, &dave, "repo:admin"), dave.clone())];
    let change = step(None, request(&alice, None, ops, 2), T0).unwrap();
    let change = step(
        Some(change),
        Command::Approve { approver: bob.clone(), on_behalf_of: None, validity: None },
        at(1),
    )
    .unwrap();
    assert_eq!(change.state, ChangeState::PendingApproval);
    let twice = step(
        Some(change.clone()),
        Command::Approve { approver: bob.clone(), on_behalf_of: None, validity: None },
        at(1),
    )
    .unwrap_err();
    assert_eq!(twice.code(), "sod.duplicate_approval");
    let via_proxy = step(
        Some(change.clone()),
        Command::Approve { approver: erin.clone(), on_behalf_of: Some(bob), validity: None },
        at(1),
    )
    .unwrap_err();
    assert_eq!(via_proxy.code(), "sod.duplicate_approval");
    let self_proxy = step(
        Some(change.clone()),
        Command::Approve { approver: erin.clone(), on_behalf_of: Some(erin.clone()), validity: None },
        at(1),
    )
    .unwrap_err();
    assert_eq!(self_proxy.code(), "input.on_behalf_of_self");
    let change =
        step(Some(change), Command::Approve { approver: erin, on_behalf_of: None, validity: None }, at(1))
            .unwrap();
    assert_eq!(change.state, ChangeState::Approved);
}

#[test]
fn a_vendor_cannot_approve_its_own_organisations_request() {
    let (acme1, acme2, dave) = (vendor("acme-jo", "acme"), vendor("acme-li", "acme"), human("dave"));
    let ops = vec![(op(OpAction::Grant, &dave, "repo:read"), dave.clone())];
    let change = step(None, request(&acme1, None, ops, 1), T0).unwrap();
    let refusal =
        step(Some(change), Command::Approve { approver: acme2, on_behalf_of: None, validity: None }, at(1))
            .unwrap_err();
    assert_eq!(refusal.code(), "sod.vendor_self_approval");
}

#[test]
fn non_humans_cannot_approve_or_review() {
    let (alice, dave) = (human("alice"), human("dave"));
    let bot = Identity::new(name("bot"), IdentityKind::AiAgent, Some(&alice), None, T0).unwrap();
    let change = pending(&alice, &dave);
    let refusal =
        step(Some(change), Command::Approve { approver: bot, on_behalf_of: None, validity: None }, at(1))
            .unwrap_err();
    assert_eq!(refusal.code(), "identity.not_human");
}

fn approved(alice: &Identity, bob: &Identity, dave: &Identity) -> Change {
    let change = pending(alice, dave);
    step(Some(change), Command::Approve { approver: bob.clone(), on_behalf_of: None, validity: None }, at(1))
        .unwrap()
}

#[test]
fn executor_must_be_independent_of_requester_and_approvers() {
    let (alice, bob, dave) = (human("alice"), human("bob"), human("dave"));
    let change = approved(&alice, &bob, &dave);
    for who in [&alice, &bob, &dave] {
        let refusal = step(
            Some(change.clone()),
            Command::StartExecution { executor: Actor::Identity(who.name.clone()) },
            at(2),
        )
        .unwrap_err();
        assert_eq!(refusal.code(), "sod.executor_not_independent", "{who:?}");
    }
    let carol = human("carol");
    let ok =
        step(Some(change), Command::StartExecution { executor: Actor::Identity(carol.name) }, at(2)).unwrap();
    assert_eq!(ok.state, ChangeState::Implementing);
}

#[test]
fn an_expired_approval_cannot_be_executed_and_the_change_can_then_expire() {
    let (alice, bob, dave) = (human("alice"), human("bob"), human("dave"));
    let change = approved(&alice, &bob, &dave);
    let early = step(Some(change.clone()), Command::Expire, at(2)).unwrap_err();
    assert_eq!(early.code(), "state.not_due");
    let refusal =
        step(Some(change.clone()), Command::StartExecution { executor: engine() }, at(26)).unwrap_err();
    assert_eq!(refusal.code(), "approval.expired");
    let expired = step(Some(change), Command::Expire, at(26)).unwrap();
    assert_eq!(expired.state, ChangeState::Expired);
    let after = step(Some(expired), Command::StartExecution { executor: engine() }, at(26)).unwrap_err();
    assert_eq!(after.code(), "state.invalid_transition");
}

#[test]
fn a_rejected_change_cannot_be_approved_or_executed() {
    let (alice, bob, carol, dave) = (human("alice"), human("bob"), human("carol"), human("dave"));
    let change = pending(&alice, &dave);
    let own = step(Some(change.clone()), Command::Reject { actor: alice.clone(), reason: "x".into() }, at(1))
        .unwrap_err();
    assert_eq!(own.code(), "sod.self_rejection");
    let empty =
        step(Some(change.clone()), Command::Reject { actor: bob.clone(), reason: "  ".into() }, at(1))
            .unwrap_err();
    assert_eq!(empty.code(), "input.invalid_text");
    let rejected =
        step(Some(change), Command::Reject { actor: bob, reason: "not needed".into() }, at(1)).unwrap();
    assert_eq!(rejected.state, ChangeState::Rejected);
    for command in [
        Command::Approve { approver: carol, on_behalf_of: None, validity: None },
        Command::StartExecution { executor: engine() },
    ] {
        let refusal = step(Some(rejected.clone()), command, at(2)).unwrap_err();
        assert_eq!(refusal.code(), "state.invalid_transition");
    }
}

#[test]
fn reviewer_must_differ_from_everyone_in_the_chain() {
    let (alice, bob, carol, dave, erin) =
        (human("alice"), human("bob"), human("carol"), human("dave"), human("erin"));
    let change = approved(&alice, &bob, &dave);
    let change =
        step(Some(change), Command::StartExecution { executor: Actor::Identity(carol.name.clone()) }, at(2))
            .unwrap();
    let outcomes = vec![OpOutcome { op: 0, before: false, after: true, reference: None }];
    let change = step(Some(change), Command::RecordImplementation { outcomes, error: None }, at(2)).unwrap();
    let observations = vec![Observation { op: 0, present: true }];
    let change = step(
        Some(change),
        Command::RecordVerification { verifier: engine(), observations, residual: vec![] },
        at(2),
    )
    .unwrap();
    for who in [&alice, &bob, &carol, &dave] {
        let refusal =
            step(Some(change.clone()), Command::Review { reviewer: who.clone(), notes: "ok".into() }, at(3))
                .unwrap_err();
        assert_eq!(refusal.code(), "sod.reviewer_not_independent", "{who:?}");
    }
    assert!(step(Some(change), Command::Review { reviewer: erin, notes: "ok".into() }, at(3)).is_ok());
}

#[test]
fn only_observed_equality_verifies() {
    let (alice, bob, dave) = (human("alice"), human("bob"), human("dave"));
    let change = approved(&alice, &bob, &dave);
    let change = step(Some(change), Command::StartExecution { executor: engine() }, at(2)).unwrap();
    let outcomes = vec![OpOutcome { op: 0, before: false, after: true, reference: None }];
    let change = step(Some(change), Command::RecordImplementation { outcomes, error: None }, at(2)).unwrap();
    let absent = vec![Observation { op: 0, present: false }];
    let failed = step(
        Some(change.clone()),
        Command::RecordVerification { verifier: engine(), observations: absent, residual: vec![] },
        at(2),
    )
    .unwrap();
    assert_eq!(failed.state, ChangeState::VerificationFailed);
    assert_eq!(failed.verification.unwrap().mismatches, vec![0]);
    let partial = step(
        Some(change),
        Command::RecordVerification { verifier: engine(), observations: vec![], residual: vec![] },
        at(2),
    )
    .unwrap_err();
    assert_eq!(partial.code(), "engine.inconsistent_report");
}

#[test]
fn a_failed_execution_can_be_retried_while_approval_holds() {
    let (alice, bob, dave) = (human("alice"), human("bob"), human("dave"));
    let change = approved(&alice, &bob, &dave);
    let change = step(Some(change), Command::StartExecution { executor: engine() }, at(2)).unwrap();
    let change = step(
        Some(change),
        Command::RecordImplementation { outcomes: vec![], error: Some("target down".into()) },
        at(2),
    )
    .unwrap();
    assert_eq!(change.state, ChangeState::Failed);
    let retried = step(Some(change.clone()), Command::StartExecution { executor: engine() }, at(3)).unwrap();
    assert_eq!(retried.executions.len(), 2);
    let too_late = step(Some(change), Command::StartExecution { executor: engine() }, at(30)).unwrap_err();
    assert_eq!(too_late.code(), "approval.expired");
}

#[test]
fn one_attempt_at_a_time_and_the_executor_may_retry_its_own() {
    let (alice, bob, dave, carol) = (human("alice"), human("bob"), human("dave"), human("carol"));
    let as_carol = || Command::StartExecution { executor: Actor::Identity(carol.name.clone()) };
    let change = approved(&alice, &bob, &dave);
    let running = step(Some(change), as_carol(), at(2)).unwrap();
    // A second start while an attempt is in progress, by anyone: refused.
    for executor in [Actor::Identity(carol.name.clone()), Actor::Identity(human("erin").name), engine()] {
        let refusal = step(Some(running.clone()), Command::StartExecution { executor }, at(2)).unwrap_err();
        assert_eq!(refusal.code(), "state.invalid_transition");
    }
    let failed = step(
        Some(running),
        Command::RecordImplementation { outcomes: vec![], error: Some("target down".into()) },
        at(2),
    )
    .unwrap();
    // The executor of the failed attempt retries it; requester, approver and beneficiary still may not.
    let retried = step(Some(failed.clone()), as_carol(), at(3)).unwrap();
    assert_eq!(retried.executions.len(), 2);
    for who in [&alice, &bob, &dave] {
        let refusal = step(
            Some(failed.clone()),
            Command::StartExecution { executor: Actor::Identity(who.name.clone()) },
            at(3),
        )
        .unwrap_err();
        assert_eq!(refusal.code(), "sod.executor_not_independent", "{who:?}");
    }
    // Having executed still bars reviewing.
    let done = step(
        Some(retried),
        Command::RecordImplementation {
            outcomes: vec![OpOutcome { op: 0, before: false, after: true, reference: None }],
            error: None,
        },
        at(3),
    )
    .unwrap();
    assert_eq!(done.state, ChangeState::Implemented);
}

#[test]
fn a_cut_off_attempt_is_recovered_as_its_own_outcome() {
    let (alice, bob, dave) = (human("alice"), human("bob"), human("dave"));
    let change = approved(&alice, &bob, &dave);
    // Only an attempt in progress can be recovered.
    let recover = |error: Option<&str>, after: bool| Command::RecoverAttempt {
        recoverer: engine(),
        outcomes: vec![OpOutcome { op: 0, before: false, after, reference: Some("abc123".into()) }],
        error: error.map(str::to_owned),
    };
    assert_eq!(
        step(Some(change.clone()), recover(None, true), at(2)).unwrap_err().code(),
        "state.invalid_transition"
    );
    let running = step(Some(change), Command::StartExecution { executor: engine() }, at(2)).unwrap();
    // Everything in effect: implemented, the attempt closed and marked recovered.
    let done = step(Some(running.clone()), recover(None, true), at(3)).unwrap();
    assert_eq!(done.state, ChangeState::Implemented);
    let attempt = done.executions.last().unwrap();
    assert!(attempt.recovered && attempt.finished_at.is_some() && attempt.error.is_none());
    assert_eq!(attempt.outcomes[0].reference.as_deref(), Some("abc123"));
    // Something missing: failed, and a new attempt may start.
    let missing = step(Some(running.clone()), recover(Some("0 of 1 in effect"), false), at(3)).unwrap();
    assert_eq!(missing.state, ChangeState::Failed);
    let again = step(Some(missing), Command::StartExecution { executor: engine() }, at(4)).unwrap();
    assert_eq!(again.executions.len(), 2);
    // A complete recovery must account for every operation.
    let partial = Command::RecoverAttempt { recoverer: engine(), outcomes: vec![], error: None };
    assert_eq!(step(Some(running), partial, at(3)).unwrap_err().code(), "engine.inconsistent_report");
}

#[test]
fn request_validation_refuses_bad_plans() {
    let (alice, dave) = (human("alice"), human("dave"));
    let orphan = Identity {
        name: name("svc-old"),
        kind: IdentityKind::ServiceAccount,
        owner: None,
        vendor: None,
        created_at: T0,
        state: crate::identity::IdentityState::Active,
        email: None,
    };
    let refusal = step(
        None,
        request(&alice, None, vec![(op(OpAction::Grant, &orphan, "repo:read"), orphan.clone())], 1),
        T0,
    )
    .unwrap_err();
    assert_eq!(refusal.code(), "identity.orphan");
    let twice = vec![
        (op(OpAction::Grant, &dave, "repo:read"), dave.clone()),
        (op(OpAction::Revoke, &dave, "repo:read"), dave.clone()),
    ];
    assert_eq!(
        step(None, request(&alice, None, twice, 1), T0).unwrap_err().code(),
        "input.duplicate_operation"
    );
    assert_eq!(step(None, request(&alice, None, vec![], 1), T0).unwrap_err().code(), "input.no_operations");
    let mut timed_revoke = op(OpAction::Revoke, &dave, "repo:read");
    timed_revoke.duration = Some(Duration::hours(1));
    assert_eq!(
        step(None, request(&alice, None, vec![(timed_revoke, dave.clone())], 1), T0).unwrap_err().code(),
        "input.duration_on_revoke"
    );
    let self_proxy = vec![(op(OpAction::Grant, &dave, "repo:read"), dave.clone())];
    assert_eq!(
        step(None, request(&alice, Some(&alice), self_proxy, 1), T0).unwrap_err().code(),
        "input.on_behalf_of_self"
    );
    assert_eq!(Justification::parse("   ").unwrap_err().code(), "input.empty_justification");
}

#[test]
fn identities_follow_ownership_rules() {
    let alice = human("alice");
    let svc = service("svc-ci", &alice);
    assert_eq!(svc.owner.as_ref(), Some(&alice.name));
    let no_owner = Identity::new(name("svc-x"), IdentityKind::ApiKey, None, None, T0).unwrap_err();
    assert_eq!(no_owner.code(), "identity.owner_required");
    let nhi_owner = Identity::new(name("svc-y"), IdentityKind::Secret, Some(&svc), None, T0).unwrap_err();
    assert_eq!(nhi_owner.code(), "identity.owner_not_human");
    let owned_human = Identity::new(name("zed"), IdentityKind::Human, Some(&alice), None, T0).unwrap_err();
    assert_eq!(owned_human.code(), "identity.owner_on_human");
}

#[test]
fn durations_parse_strictly() {
    assert_eq!(Duration::parse("8h").unwrap().as_millis(), 8 * 3_600_000);
    assert_eq!(Duration::parse("1h30m").unwrap().as_millis(), 90 * 60_000);
    assert_eq!(Duration::parse("2w").unwrap().to_string(), "14d");
    assert_eq!(Duration::parse("1d2h3m4s").unwrap().to_string(), "1d2h3m4s");
    let bad = ["", "8", "h", "8x", "0h", "400d", "99999999999999999999d", "-1h", "1.5h", " 8h", "8h ", "8 h"];
    let unordered = ["1h1h", "30m1h", "1h0m", "08h", "1H", "８h"];
    for bad in bad.into_iter().chain(unordered) {
        assert_eq!(Duration::parse(bad).unwrap_err().code(), "input.invalid_duration", "{bad:?}");
    }
}

#[test]
fn change_ids_sort_by_time_and_parse_back() {
    let early = ChangeId::generate(T0, u128::MAX);
    let late = ChangeId::generate(at(1), 0);
    assert!(early < late);
    assert_eq!(ChangeId::parse(early.as_str()).unwrap(), early);
    for bad in ["CHG-", "chg-01", "CHG-0000000000000000000000000I", "CHG-80000000000000000000000000"] {
        assert!(ChangeId::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn history_that_skips_a_sequence_number_is_rejected() {
    let (alice, bob, dave) = (human("alice"), human("bob"), human("dave"));
    let change = pending(&alice, &dave);
    let mut events =
        decide(Some(&change), Command::Approve { approver: bob, on_behalf_of: None, validity: None }, at(1))
            .unwrap();
    events[0].seq += 1;
    assert_eq!(evolve(Some(change), &events[0]).unwrap_err().code(), "ledger.corrupt_history");
}

// ---- property test: no path reaches approved or implementing without a valid approval ----

const PEOPLE: [&str; 5] = ["alice", "bob", "carol", "dave", "erin"];

fn person(index: usize) -> Identity {
    let n = PEOPLE[index % PEOPLE.len()];
    if n == "erin" { vendor(n, "acme") } else { human(n) }
}

#[derive(Clone, Debug)]
enum Gen {
    Approve(usize, Option<usize>),
    Reject(usize),
    Cancel,
    Execute(Option<usize>),
    Implement(bool),
    Verify(bool),
    Review(usize),
    Expire,
    Wait(u8),
}

fn gen_command() -> impl Strategy<Value = Gen> {
    prop_oneof![
        (0..5usize, proptest::option::of(0..5usize)).prop_map(|(a, b)| Gen::Approve(a, b)),
        (0..5usize).prop_map(Gen::Reject),
        Just(Gen::Cancel),
        proptest::option::of(0..5usize).prop_map(Gen::Execute),
        any::<bool>().prop_map(Gen::Implement),
        any::<bool>().prop_map(Gen::Verify),
        (0..5usize).prop_map(Gen::Review),
        Just(Gen::Expire),
        (1..30u8).prop_map(Gen::Wait),
    ]
}

fn to_command(g: &Gen, change: &Change) -> Option<Command> {
    Some(match g {
        Gen::Approve(a, b) => {
            Command::Approve { approver: person(*a), on_behalf_of: b.map(person), validity: None }
        }
        Gen::Reject(a) => Command::Reject { actor: person(*a), reason: "no".into() },
        Gen::Cancel => {
            Command::Cancel { actor: Actor::Identity(change.requester.clone()), reason: "withdrawn".into() }
        }
        Gen::Execute(who) => {
            Command::StartExecution { executor: who.map_or(engine(), |w| Actor::Identity(person(w).name)) }
        }
        Gen::Implement(ok) => Command::RecordImplementation {
            outcomes: (0..change.ops.len())
                .map(|op| OpOutcome { op, before: false, after: true, reference: None })
                .collect(),
            error: (!ok).then(|| "boom".to_owned()),
        },
        Gen::Verify(present) => Command::RecordVerification {
            verifier: engine(),
            observations: (0..change.ops.len()).map(|op| Observation { op, present: *present }).collect(),
            residual: vec![],
        },
        Gen::Review(a) => Command::Review { reviewer: person(*a), notes: "seen".into() },
        Gen::Expire => Command::Expire,
        Gen::Wait(_) => return None,
    })
}

/// The invariant, checked independently of `decide`'s own code.
fn approvals_are_sound(change: &Change, now: Option<Timestamp>) -> Result<(), String> {
    let parties: Vec<&IdentityName> = change.interested_parties();
    let mut seen: Vec<&IdentityName> = Vec::new();
    for approval in &change.approvals {
        for who in std::iter::once(&approval.approver).chain(approval.on_behalf_of.as_ref()) {
            if parties.contains(&who) {
                return Err(format!("{who} approved their own change"));
            }
            if seen.contains(&who) {
                return Err(format!("{who} counted twice"));
            }
            seen.push(who);
        }
        if approval.approver.as_str() == "erin" && change.vendor.is_some() {
            return Err("vendor approved its own organisation's change".into());
        }
    }
    if change.approvals.len() < usize::from(change.requirement.approvals) {
        return Err("quorum not met".into());
    }
    if let Some(now) = now
        && change.approvals.iter().any(|a| a.expires_at <= now)
    {
        return Err("executed on an expired approval".into());
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn no_path_reaches_approved_or_implementing_without_a_valid_sod_clean_approval(
        requester in 0..5usize,
        grantee in 0..5usize,
        quorum in 1..3u8,
        commands in proptest::collection::vec(gen_command(), 0..40),
    ) {
        let requester = person(requester);
        let grantee_identity = person(grantee);
        let ops = vec![(op(OpAction::Grant, &grantee_identity, "repo:read"), grantee_identity.clone())];
        let mut now = T0;
        let Ok(mut change) = step(None, request(&requester, None, ops, quorum), now) else {
            return Ok(());
        };
        let mut history: Vec<ChangeEvent> = decide(None, request(&requester, None, vec![(op(OpAction::Grant, &grantee_identity, "repo:read"), grantee_identity.clone())], quorum), now).unwrap();
        for g in &commands {
            if let Gen::Wait(hours) = g {
                now = now.plus(Duration::hours(i64::from(*hours)));
                continue;
            }
            let Some(command) = to_command(g, &change) else { continue };
            let before = change.clone();
            match decide(Some(&change), command, now) {
                Err(_) => prop_assert_eq!(&change, &before),
                Ok(events) => {
                    for event in &events {
                        if let ChangeEventBody::ExecutionStarted { .. } = event.body {
                            prop_assert!(approvals_are_sound(&change, Some(now)).is_ok(), "{:?}", approvals_are_sound(&change, Some(now)));
                            if let Actor::Identity(executor) = &event.actor {
                                prop_assert!(!change.interested_parties().contains(&executor));
                                prop_assert!(!change.approvals.iter().any(|a| &a.approver == executor));
                            }
                        }
                        change = evolve(Some(change), event).unwrap();
                        history.push(event.clone());
                    }
                }
            }
            if matches!(change.state, ChangeState::Approved | ChangeState::Implementing | ChangeState::Implemented) {
                prop_assert!(approvals_are_sound(&change, None).is_ok(), "{:?}", approvals_are_sound(&change, None));
            }
            if change.state.is_terminal() {
                prop_assert!(change.closing.is_some());
            }
        }
        prop_assert_eq!(replay(&history).unwrap(), Some(change));
    }
}

#[test]
fn an_approver_can_shorten_but_never_extend_validity() {
    let (alice, bob, dave) = (human("alice"), human("bob"), human("dave"));
    let short =
        Command::Approve { approver: bob.clone(), on_behalf_of: None, validity: Some(Duration::hours(1)) };
    let change = step(Some(pending(&alice, &dave)), short, T0).unwrap();
    assert_eq!(change.approvals[0].expires_at, T0.plus(Duration::hours(1)));
    let long = Command::Approve { approver: bob, on_behalf_of: None, validity: Some(Duration::hours(100)) };
    let change = step(Some(pending(&alice, &dave)), long, T0).unwrap();
    assert_eq!(change.approvals[0].expires_at, T0.plus(Duration::hours(24)));
}

// ---- changes that end time-bound access ----

fn expiry(due_at: Timestamp, ops: Vec<PlannedOp>) -> Command {
    Command::OpenExpiry(Box::new(crate::machine::ExpiryChange {
        id: ChangeId::generate(due_at, 9),
        origin: ChangeId::generate(T0, 42),
        requester: name("alice"),
        due_at,
        ops,
    }))
}

#[test]
fn an_expiry_change_starts_approved_by_the_scheduler_and_cannot_be_withdrawn() {
    let dave = human("dave");
    let revoke = op(OpAction::Revoke, &dave, "repo:read");
    let early = step(None, expiry(at(2), vec![revoke.clone()]), at(1)).unwrap_err();
    assert_eq!(early.code(), "state.not_due");
    let mut grant = op(OpAction::Grant, &dave, "repo:read");
    assert_eq!(
        step(None, expiry(at(1), vec![grant.clone()]), at(2)).unwrap_err().code(),
        "engine.inconsistent_report"
    );
    grant.action = OpAction::Revoke;
    grant.duration = Some(Duration::hours(1));
    assert_eq!(
        step(None, expiry(at(1), vec![grant]), at(2)).unwrap_err().code(),
        "engine.inconsistent_report"
    );
    assert_eq!(step(None, expiry(at(1), vec![]), at(2)).unwrap_err().code(), "input.no_operations");

    let change = step(None, expiry(at(1), vec![revoke]), at(2)).unwrap();
    assert_eq!(change.state, ChangeState::Approved);
    assert_eq!(change.kind, ChangeKind::Revoke);
    assert_eq!(change.event, BusinessEvent::Expiry);
    assert_eq!(change.origin, Some(ChangeId::generate(T0, 42)));
    assert_eq!(change.requester, name("alice"));
    assert!(change.justification.as_str().contains(ChangeId::generate(T0, 42).as_str()));
    // Nobody may call off the end of time-bound access, not even an uninvolved approver.
    let cancel = Command::Cancel { actor: Actor::Identity(name("carol")), reason: "keep it".into() };
    assert_eq!(step(Some(change.clone()), cancel, at(3)).unwrap_err().code(), "state.expiry_irrevocable");
    let reject = Command::Reject { actor: human("carol"), reason: "keep it".into() };
    assert_eq!(step(Some(change.clone()), reject, at(3)).unwrap_err().code(), "state.expiry_irrevocable");
    // Executable long after any approval validity would have ended: no approval can expire.
    let scheduler = Actor::System(SystemActor::Scheduler);
    let started = step(Some(change), Command::StartExecution { executor: scheduler }, at(24 * 30)).unwrap();
    assert_eq!(started.state, ChangeState::Implementing);
}

#[test]
fn an_expiry_history_must_be_opened_by_the_scheduler() {
    let dave = human("dave");
    let mut events =
        decide(None, expiry(at(1), vec![op(OpAction::Revoke, &dave, "repo:read")]), at(2)).unwrap();
    events[0].actor = Actor::Identity(name("mallory"));
    assert_eq!(evolve(None, &events[0]).unwrap_err().code(), "ledger.corrupt_history");
}

#[test]
fn an_alert_is_raised_once_and_only_on_open_changes() {
    let change = pending(&human("alice"), &human("dave"));
    let alerted = step(Some(change), Command::RaiseAlert { reason: "stuck".into() }, at(1)).unwrap();
    assert_eq!(alerted.alert.as_deref(), Some("stuck"));
    assert_eq!(alerted.state, ChangeState::PendingApproval);
    let again = step(Some(alerted.clone()), Command::RaiseAlert { reason: "still".into() }, at(2));
    assert_eq!(again.unwrap_err().code(), "state.invalid_transition");
    let cancelled = step(
        Some(alerted),
        Command::Cancel { actor: Actor::Identity(name("alice")), reason: "no".into() },
        at(2),
    )
    .unwrap();
    let closed = step(Some(cancelled), Command::RaiseAlert { reason: "late".into() }, at(3));
    assert_eq!(closed.unwrap_err().code(), "state.invalid_transition");
}

#[test]
fn rotations_are_their_own_kind_cannot_be_time_bound_and_verify_only_when_rotated() {
    let (alice, bob, app) = (human("alice"), human("bob"), human("app"));
    let rotate = vec![(op(OpAction::Rotate, &app, "vault:static/app"), app.clone())];
    let change = step(None, request(&alice, None, rotate, 1), T0).unwrap();
    assert_eq!(change.kind, ChangeKind::RotateSecret);
    let mut timed = op(OpAction::Rotate, &app, "vault:static/app");
    timed.duration = Some(Duration::hours(1));
    let refused = step(None, request(&alice, None, vec![(timed, app.clone())], 1), T0).unwrap_err();
    assert_eq!(refused, Refusal::DurationOnRevoke);
    let mixed = vec![
        (op(OpAction::Rotate, &app, "vault:static/app"), app.clone()),
        (op(OpAction::Grant, &app, "vault:read"), app.clone()),
    ];
    assert_eq!(step(None, request(&alice, None, mixed, 1), T0).unwrap().kind, ChangeKind::Modify);

    // The approved state of a rotation is "held": observed absent is a mismatch.
    let change =
        step(Some(change), Command::Approve { approver: bob, on_behalf_of: None, validity: None }, at(1))
            .unwrap();
    let change = step(Some(change), Command::StartExecution { executor: engine() }, at(2)).unwrap();
    let outcomes = vec![OpOutcome { op: 0, before: true, after: true, reference: None }];
    let change = step(Some(change), Command::RecordImplementation { outcomes, error: None }, at(2)).unwrap();
    let verify = |present| Command::RecordVerification {
        verifier: engine(),
        observations: vec![Observation { op: 0, present }],
        residual: vec![],
    };
    assert_eq!(
        step(Some(change.clone()), verify(false), at(2)).unwrap().state,
        ChangeState::VerificationFailed
    );
    assert_eq!(step(Some(change), verify(true), at(2)).unwrap().state, ChangeState::Verified);
}

fn breakglass(requester: &Identity, duration: Option<Duration>, due: Timestamp) -> Command {
    let Command::Request(new) = request(
        requester,
        None,
        vec![(PlannedOp { duration, ..op(OpAction::Grant, requester, "db:admin") }, requester.clone())],
        1,
    ) else {
        unreachable!()
    };
    Command::BreakGlass { new, approval_due: due }
}

#[test]
fn breakglass_grants_only_short_access_and_is_reviewed_only_after_post_hoc_approval() {
    let (alice, bob, carol) = (human("alice"), human("bob"), human("carol"));
    let refused = step(None, breakglass(&alice, None, at(24)), T0).unwrap_err();
    assert_eq!(refused.code(), "breakglass.scope", "a grant without a duration");
    let refused = step(None, breakglass(&alice, Some(Duration::hours(1)), T0), T0).unwrap_err();
    assert_eq!(refused.code(), "breakglass.scope", "a deadline that has already passed");

    let change = step(None, breakglass(&alice, Some(Duration::hours(1)), at(24)), T0).unwrap();
    assert_eq!(change.state, ChangeState::Approved, "authorised to execute without approval");
    assert!(change.awaits_post_hoc_approval());
    assert_eq!(change.next_deadline(), Some(at(24)));
    // Whoever broke glass may execute their own emergency change.
    let as_alice = Command::StartExecution { executor: Actor::Identity(alice.name.clone()) };
    let change = step(Some(change), as_alice, at(0)).unwrap();
    let outcomes = vec![OpOutcome { op: 0, before: false, after: true, reference: None }];
    let change = step(Some(change), Command::RecordImplementation { outcomes, error: None }, at(0)).unwrap();
    let observations = vec![Observation { op: 0, present: true }];
    let verify = Command::RecordVerification { verifier: engine(), observations, residual: vec![] };
    let change = step(Some(change), verify, at(0)).unwrap();
    let review = |who: &Identity| Command::Review { reviewer: who.clone(), notes: "ok".into() };
    let early = step(Some(change.clone()), review(&carol), at(1)).unwrap_err();
    assert_eq!(early.code(), "breakglass.approval_missing");
    let own = Command::Approve { approver: alice.clone(), on_behalf_of: None, validity: None };
    assert_eq!(step(Some(change.clone()), own, at(1)).unwrap_err().code(), "sod.self_approval");
    let approve = Command::Approve { approver: bob.clone(), on_behalf_of: None, validity: None };
    let change = step(Some(change), approve, at(1)).unwrap();
    assert_eq!(change.state, ChangeState::Verified, "a post-hoc approval changes no state");
    assert_eq!(change.next_deadline(), None, "nothing due once approved");
    assert_eq!(
        step(Some(change.clone()), review(&bob), at(2)).unwrap_err().code(),
        "sod.reviewer_not_independent"
    );
    assert_eq!(step(Some(change), review(&carol), at(2)).unwrap().state, ChangeState::Reviewed);
}

mod exceptions {
    use super::{T0, at, name};
    use crate::error::Refusal;
    use crate::exception::{Exception, ExceptionId, ExceptionRequest, ExceptionState};
    use crate::finding::Finding;

    fn pending(hours: i64) -> Exception {
        let request = ExceptionRequest {
            control: "secret.long_lived".into(),
            subject: "svc-ci".into(),
            owner: name("alice"),
            requester: name("dave"),
            justification: "the vendor appliance cannot rotate its key before the upgrade".into(),
            compensating_control: "key restricted to one source address; access logged".into(),
            expires_at: at(hours),
        };
        Exception::new(ExceptionId::generate(T0, 7), request, 2, T0).unwrap()
    }

    fn finding(kind: &str, subject: &str) -> Finding {
        Finding::new("FND-0000000000000001".into(), kind, subject, String::new(), T0)
    }

    #[test]
    fn ids_are_exc_ulids_and_other_shapes_are_refused() {
        let id = ExceptionId::generate(T0, 42);
        assert!(id.as_str().starts_with("EXC-"));
        assert_eq!(ExceptionId::parse(id.as_str()).unwrap(), id);
        for bad in ["", "EXC-", "CHG-01J0000000000000000000000A", "exc-01J0000000000000000000000A", "EXC-0I"]
        {
            assert!(ExceptionId::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn needs_distinct_approvers_who_are_neither_requester_nor_owner() {
        let e = pending(48);
        let err = e.approve(&name("dave"), None, 2, at(1)).unwrap_err();
        assert_eq!(err.code(), "sod.self_approval");
        let err = e.approve(&name("alice"), None, 2, at(1)).unwrap_err();
        assert_eq!(err.code(), "sod.self_approval");
        let once = e.approve(&name("bob"), Some("internal".into()), 2, at(1)).unwrap();
        assert_eq!(once.state, ExceptionState::Pending, "one of two approvals is not enough");
        assert_eq!(once.approve(&name("bob"), None, 2, at(2)).unwrap_err().code(), "sod.duplicate_approval");
        let active = once.approve(&name("carol"), None, 2, at(2)).unwrap();
        assert_eq!(active.state, ExceptionState::Active);
        assert_eq!(active.version, 3);
        assert!(active.covers(&finding("secret.long_lived", "svc-ci"), at(3)));
        assert!(!active.covers(&finding("secret.long_lived", "svc-other"), at(3)));
        assert!(!active.covers(&finding("identity.orphaned", "svc-ci"), at(3)));
        assert!(!active.covers(&finding("secret.long_lived", "svc-ci"), at(48)), "not after its expiry");
    }

    #[test]
    fn a_pending_exception_cannot_be_approved_after_its_expiry_and_lapses() {
        let e = pending(4);
        let err = e.approve(&name("bob"), None, 2, at(4)).unwrap_err();
        assert!(matches!(err, Refusal::ExceptionTransition { action: "approve", .. }), "{err}");
        assert_eq!(e.expire(at(3)).unwrap_err().code(), "state.not_due");
        let expired = e.expire(at(4)).unwrap();
        assert_eq!(expired.state, ExceptionState::Expired);
        assert!(expired.revoke(at(5)).is_err(), "final states stay final");
        assert_eq!(expired.next_deadline(), None);
    }

    #[test]
    fn renewal_is_a_new_round_and_takes_effect_only_when_approved() {
        let active = pending(24).approve(&name("bob"), None, 1, at(1)).unwrap();
        assert_eq!(active.state, ExceptionState::Active);
        assert!(active.request_renewal(at(20), 2, at(2)).is_err(), "a renewal must extend the term");
        let renewing = active.request_renewal(at(72), 2, at(2)).unwrap();
        assert!(renewing.approvals.is_empty(), "the earlier round does not count");
        assert!(renewing.awaits_approval());
        assert!(
            renewing.covers(&finding("secret.long_lived", "svc-ci"), at(3)),
            "the current term still runs"
        );
        let half = renewing.approve(&name("bob"), None, 2, at(3)).unwrap();
        assert_eq!(half.expires_at, at(24), "not renewed until the round is complete");
        let renewed = half.approve(&name("carol"), None, 2, at(4)).unwrap();
        assert_eq!((renewed.expires_at, renewed.renewal), (at(72), None));
        // A renewal nobody approves lapses with the term.
        let lapsed = active.request_renewal(at(72), 2, at(2)).unwrap().expire(at(24)).unwrap();
        assert_eq!((lapsed.state, lapsed.renewal), (ExceptionState::Expired, None));
    }

    #[test]
    fn rejecting_a_renewal_keeps_the_current_term_and_owners_cannot_reject() {
        let active = pending(24).approve(&name("bob"), None, 1, at(1)).unwrap();
        let renewing = active.request_renewal(at(72), 1, at(2)).unwrap();
        assert_eq!(renewing.reject(&name("alice"), at(3)).unwrap_err().code(), "sod.self_rejection");
        let kept = renewing.reject(&name("carol"), at(3)).unwrap();
        assert_eq!((kept.state, kept.expires_at, kept.renewal), (ExceptionState::Active, at(24), None));
        let rejected = pending(24).reject(&name("carol"), at(1)).unwrap();
        assert_eq!(rejected.state, ExceptionState::Rejected);
        assert!(active.reject(&name("carol"), at(3)).is_err(), "nothing to reject");
        assert_eq!(active.revoke(at(3)).unwrap().state, ExceptionState::Revoked);
    }

    #[test]
    fn bad_requests_are_refused() {
        let base = ExceptionRequest {
            control: "secret.long_lived".into(),
            subject: "svc-ci".into(),
            owner: name("alice"),
            requester: name("dave"),
            justification: "why".into(),
            compensating_control: "what instead".into(),
            expires_at: at(1),
        };
        let id = ExceptionId::generate(T0, 1);
        let cases = [
            ExceptionRequest { expires_at: T0, ..base.clone() },
            ExceptionRequest { control: "Secret Long".into(), ..base.clone() },
            ExceptionRequest { subject: "svc ci".into(), ..base.clone() },
            ExceptionRequest { justification: "  ".into(), ..base.clone() },
            ExceptionRequest { compensating_control: "x".repeat(2001), ..base.clone() },
        ];
        for case in cases {
            assert!(Exception::new(id.clone(), case.clone(), 1, T0).is_err(), "{case:?}");
        }
        assert!(Exception::new(id, base, 1, T0).is_ok());
    }
}

#[test]
fn a_delivery_attaches_once_in_any_state_and_adds_its_references() {
    use crate::intake::Delivery;
    let (alice, bob) = (human("alice"), human("bob"));
    let delivery = |id: &str, refs: Vec<ExternalRef>| Delivery {
        source: crate::name::SourceName::parse("jira").unwrap(),
        id: id.into(),
        event: "jira:issue_updated".into(),
        object: Some("10001".into()),
        version: Some(at(1)),
        sha256: [1; 32],
        received_at: at(1),
        refs,
    };
    let ticket = ExternalRef::new(RefKind::Ticket, "JIRA-1").unwrap();
    let commit = ExternalRef::new(RefKind::Commit, "9fceb02").unwrap();
    let change = pending(&alice, &bob);
    let link = |id: &str, refs| Command::Link { delivery: Box::new(delivery(id, refs)), late: false };
    let linked =
        step(Some(change.clone()), link("d-1", vec![ticket.clone(), commit.clone()]), at(2)).unwrap();
    assert_eq!(linked.state, change.state, "attaching a delivery changes no state");
    assert_eq!(linked.refs, vec![ticket.clone(), commit.clone()], "the ticket is not listed twice");
    assert_eq!(linked.links.len(), 1);
    let again = step(Some(linked.clone()), link("d-1", Vec::new()), at(3));
    assert_eq!(again.unwrap_err().code(), "intake.already_linked");
    // A closed change still takes a late delivery: it is recorded, not acted on.
    let cancelled = step(
        Some(linked),
        Command::Cancel { actor: Actor::Identity(alice.name.clone()), reason: "not needed".into() },
        at(4),
    )
    .unwrap();
    let late = Command::Link { delivery: Box::new(delivery("d-2", Vec::new())), late: true };
    let closed = step(Some(cancelled), late, at(5)).unwrap();
    assert_eq!(closed.state, ChangeState::Cancelled);
    assert_eq!(
        closed.links.iter().map(|l| (l.delivery.id.as_str(), l.late)).collect::<Vec<_>>(),
        [("d-1", false), ("d-2", true)]
    );
}

mod reconcile {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use crate::reconcile::{Situation, Tally, merge, situation};
    use crate::time::Timestamp;

    const NOW: Timestamp = Timestamp::from_millis(1_000_000);

    #[test]
    fn every_combination_has_its_situation() {
        let past = Some(Some(Timestamp::from_millis(999_999)));
        let future = Some(Some(Timestamp::from_millis(1_000_001)));
        let cases = [
            // (approved, held, registered) → situation
            (None, false, true, None),
            (None, true, true, Some(Situation::Unapproved)),
            (None, true, false, Some(Situation::Unmatched)),
            (Some(None), true, true, Some(Situation::Linked)),
            (future, true, true, Some(Situation::Linked)),
            (past, true, true, Some(Situation::Expired)),
            (Some(Some(NOW)), true, true, Some(Situation::Expired)),
            (Some(None), false, true, Some(Situation::Missing)),
            (future, false, true, Some(Situation::Missing)),
            (past, false, true, None),
        ];
        for (approved, held, registered, want) in cases {
            assert_eq!(situation(approved, held, registered, NOW), want, "{approved:?} {held} {registered}");
        }
    }

    #[test]
    fn unsorted_input_is_refused_not_misclassified() {
        let approved = [(1, ()), (3, ()), (2, ())];
        let err = merge(approved, [(2, ())], |_, _, _| {}).unwrap_err();
        assert_eq!(err.side, "approved");
        let err = merge([(1, ())], [(5, ()), (5, ())], |_, _, _| {}).unwrap_err();
        assert_eq!(err.side, "held", "a repeated key is out of order too");
    }

    proptest! {
        /// The merge visits exactly the union of both key sets, once each, in order, with what
        /// each side holds: the same answer as a lookup per row.
        #[test]
        fn merge_equals_a_join_by_lookup(
            approved in proptest::collection::btree_map(0u32..200, 0u8..3, 0..60),
            held in proptest::collection::btree_set(0u32..200, 0..60),
        ) {
            let mut seen = Vec::new();
            let mut tally = Tally::default();
            merge(
                approved.iter().map(|(k, v)| (*k, *v)),
                held.iter().map(|k| (*k, ())),
                |k, a, h| {
                    seen.push((*k, a, h.is_some()));
                    let approved = a.map(|v| match v { 0 => None, 1 => Some(Timestamp::from_millis(0)), _ => Some(Timestamp::from_millis(2_000_000)) });
                    if let Some(s) = situation(approved, h.is_some(), k % 2 == 0, NOW) {
                        tally.add(s);
                    }
                },
            ).unwrap();
            let keys: BTreeSet<u32> = approved.keys().copied().chain(held.iter().copied()).collect();
            let want: Vec<(u32, Option<u8>, bool)> =
                keys.iter().map(|k| (*k, approved.get(k).copied(), held.contains(k))).collect();
            prop_assert_eq!(&seen, &want);
            let linked = want.iter().filter(|(_, a, h)| *h && matches!(a, Some(0 | 2))).count() as u64;
            prop_assert_eq!(tally.get(Situation::Linked), linked);
        }
    }
}

#[test]
fn an_exception_is_warned_once_per_term_and_warning() {
    use crate::exception::{Exception, ExceptionId, ExceptionRequest};
    let t = |h: i64| T0.plus(Duration::hours(h));
    let request = ExceptionRequest {
        control: "secret.long_lived".into(),
        subject: "svc-a".into(),
        owner: name("alice"),
        requester: name("dave"),
        justification: "cannot rotate yet".into(),
        compensating_control: "restricted source".into(),
        expires_at: t(30),
    };
    let pending = Exception::new(ExceptionId::generate(T0, 1), request, 1, T0).unwrap();
    assert!(pending.warn(Duration::hours(24), t(10)).is_err(), "only an active exception");
    let active = pending.approve(&name("bob"), None, 1, t(1)).unwrap();
    let day = active.warn(Duration::hours(24), t(10)).unwrap();
    assert_eq!((day.warned, day.version), (Some(Duration::hours(24)), active.version + 1));
    assert!(day.warn(Duration::hours(24), t(11)).is_err(), "once");
    let hour = day.warn(Duration::hours(1), t(29)).unwrap();
    assert!(hour.warn(Duration::hours(24), t(29)).is_err(), "not a day after an hour");
    assert!(hour.warn(Duration::hours(1), t(31)).is_err(), "not past its end");
}

/// `command` (a request) with a maintenance window from `start` to `end` hours after T0.
fn windowed(command: Command, start: i64, end: i64) -> Command {
    let window = Window::new(at(start), at(end), "Europe/Berlin").unwrap();
    match command {
        Command::Request(new) => Command::Request(Box::new(NewChange { window: Some(window), ..*new })),
        Command::BreakGlass { new, approval_due } => {
            Command::BreakGlass { new: Box::new(NewChange { window: Some(window), ..*new }), approval_due }
        }
        other => other,
    }
}

#[test]
fn a_change_runs_only_inside_its_window_and_expires_once_the_window_has_passed() {
    let (alice, bob, carol, dave) = (human("alice"), human("bob"), human("carol"), human("dave"));
    let ops = vec![(op(OpAction::Grant, &dave, "repo:read"), dave.clone())];
    // Approval stays valid 24 hours; the window is hours 4 to 6.
    let change = step(None, windowed(request(&alice, None, ops, 1), 4, 6), T0).unwrap();
    let approve = Command::Approve { approver: bob, on_behalf_of: None, validity: None };
    let change = step(Some(change), approve, at(1)).unwrap();
    let execute = || Command::StartExecution { executor: Actor::Identity(carol.name.clone()) };
    for hour in [1, 3] {
        let refusal = step(Some(change.clone()), execute(), at(hour)).unwrap_err();
        assert_eq!(refusal.code(), "window.outside", "hour {hour}");
        assert!(refusal.to_string().contains("Europe/Berlin"), "{refusal}");
    }
    assert_eq!(step(Some(change.clone()), Command::Expire, at(5)).unwrap_err().code(), "state.not_due");
    assert_eq!(step(Some(change.clone()), execute(), at(4)).unwrap().state, ChangeState::Implementing);
    assert_eq!(step(Some(change.clone()), execute(), at(5)).unwrap().state, ChangeState::Implementing);
    // The end is excluded: at hour 6 it is over, though the approval holds until hour 25.
    assert_eq!(step(Some(change.clone()), execute(), at(6)).unwrap_err().code(), "window.outside");
    let expired = step(Some(change), Command::Expire, at(6)).unwrap();
    assert_eq!(expired.state, ChangeState::Expired);
    let reason = &expired.closing.as_ref().unwrap().reason;
    assert!(reason.contains("maintenance window ended"), "{reason}");
}

#[test]
fn a_window_that_has_ended_cannot_be_asked_for_and_break_glass_ignores_windows() {
    let (alice, dave) = (human("alice"), human("dave"));
    let ops = vec![(op(OpAction::Grant, &dave, "repo:read"), dave.clone())];
    let refusal = step(None, windowed(request(&alice, None, ops, 1), 1, 3), at(3)).unwrap_err();
    assert_eq!(refusal.code(), "input.too_early");
    // Break-glass at hour 0 with a window hours 4 to 6: it runs now, and never expires by it.
    let change =
        step(None, windowed(breakglass(&alice, Some(Duration::hours(1)), at(24)), 4, 6), T0).unwrap();
    let as_alice = Command::StartExecution { executor: Actor::Identity(alice.name.clone()) };
    assert_eq!(step(Some(change.clone()), as_alice, at(0)).unwrap().state, ChangeState::Implementing);
    assert_eq!(step(Some(change), Command::Expire, at(7)).unwrap_err().code(), "state.not_due");
    // A window is at most 7 days and ends after it starts.
    assert!(Window::new(at(2), at(2), "UTC").is_err());
    assert!(Window::new(at(0), at(7 * 24 + 1), "UTC").is_err());
    assert!(Window::new(at(0), at(1), "Europe/Berlin; DROP").is_err());
}

fn ticket_comment(id: &str, written: Timestamp) -> Option<CommentSource> {
    Some(CommentSource {
        source: crate::name::SourceName::parse("jira").unwrap(),
        id: id.to_owned(),
        account: Some("557058:bob".to_owned()),
        written_at: written,
    })
}

#[test]
fn comments_are_taken_in_every_state_once_per_ticket_comment_and_marked_late_out_of_order() {
    let (alice, bob, dave) = (human("alice"), human("bob"), human("dave"));
    let comment = |text: &str, source| Command::Comment {
        author: Actor::Identity(bob.name.clone()),
        text: text.to_owned(),
        source,
    };
    // Pending, approved, and closed (rejected) all take comments.
    let pending = pending(&alice, &dave);
    let approved = approved(&alice, &bob, &dave);
    let rejected =
        step(Some(pending.clone()), Command::Reject { actor: bob.clone(), reason: "no".into() }, at(1))
            .unwrap();
    for change in [pending.clone(), approved, rejected] {
        let state = change.state;
        let after = step(Some(change), comment("see the runbook\nsection 2", None), at(2)).unwrap();
        assert_eq!(after.state, state, "a comment changes no state");
        assert_eq!(after.comments.last().unwrap().text, "see the runbook\nsection 2");
    }
    // Blank, over-long or control-character text is refused.
    for bad in ["   ", &"x".repeat(2001), "bell\u{7}"] {
        assert!(step(Some(pending.clone()), comment(bad, None), at(2)).is_err(), "{bad:?}");
    }
    // A ticket's comment is taken once; one written earlier than one already here is late.
    let first = step(Some(pending), comment("second", ticket_comment("11", at(2))), at(3)).unwrap();
    let again = step(Some(first.clone()), comment("second", ticket_comment("11", at(2))), at(4)).unwrap_err();
    assert_eq!(again.code(), "comment.duplicate");
    let earlier = step(Some(first), comment("first", ticket_comment("10", at(1))), at(4)).unwrap();
    let flags: Vec<(&str, bool)> = earlier.comments.iter().map(|c| (c.text.as_str(), c.late)).collect();
    assert_eq!(flags, [("second", false), ("first", true)]);
    // The quota holds.
    let mut full = earlier;
    full.comments = (0..crate::change::MAX_COMMENTS)
        .map(|i| Comment {
            seq: 0,
            at: T0,
            author: Actor::Identity(bob.name.clone()),
            step: crate::event::Phase::Approval,
            text: format!("{i}"),
            source: None,
            late: false,
        })
        .collect();
    assert_eq!(
        step(Some(full), comment("one more", None), at(5)).unwrap_err().code(),
        "comment.quota_exceeded"
    );
}
