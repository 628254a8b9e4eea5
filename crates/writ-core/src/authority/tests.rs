//! The decision table, enumerated: every relationship × role × kind of change for cancel, and
//! every step × state × role for evidence.

use super::*;
use crate::access::Role;
use crate::change::*;
use crate::event::Phase;
use crate::identity::{Identity, IdentityKind};
use crate::machine::{Command, NewChange, decide, evolve};
use crate::name::{EntitlementRef, IdentityName};
use crate::time::{Duration, Timestamp};

const T0: Timestamp = Timestamp::from_millis(1_800_000_000_000);

fn person(n: &str) -> Identity {
    Identity::new(IdentityName::parse(n).unwrap(), IdentityKind::Human, None, None, T0).unwrap()
}

fn name(n: &str) -> IdentityName {
    IdentityName::parse(n).unwrap()
}

fn step(change: Option<Change>, command: Command) -> Change {
    let events = decide(change.as_ref(), command, T0).unwrap();
    events.iter().fold(change, |c, e| Some(evolve(c, e).unwrap())).unwrap()
}

/// alice's request of one operation on dave (`on_behalf_of`: paul).
fn request(action: OpAction, event: BusinessEvent, principal: bool, approvals: u8) -> Command {
    let dave = person("dave");
    let op = PlannedOp {
        action,
        identity: dave.name.clone(),
        entitlement: EntitlementRef::parse("repo:read").unwrap(),
        duration: None,
    };
    Command::Request(Box::new(NewChange {
        id: ChangeId::generate(T0, 7),
        requester: person("alice"),
        on_behalf_of: principal.then(|| person("paul")),
        event,
        refs: Vec::new(),
        justification: Justification::parse("because").unwrap(),
        ops: vec![op],
        window: None,
        rollback_owner: None,
        rollback_of: None,
        subjects: vec![dave],
        requirement: ApprovalRequirement { approvals, validity: Duration::hours(24) },
        controls: None,
    }))
}

/// The change of [`request`], needing two approvals.
fn change(action: OpAction, event: BusinessEvent, principal: bool) -> Change {
    step(None, request(action, event, principal, 2))
}

fn approved_by_bob(change: Change) -> Change {
    step(Some(change), Command::Approve { approver: person("bob"), on_behalf_of: None, validity: None })
}

#[test]
fn cancel_follows_the_relationship_not_the_role() {
    let kinds = [
        ("grant", OpAction::Grant, BusinessEvent::Adhoc, false),
        ("grant for paul", OpAction::Grant, BusinessEvent::Adhoc, true),
        ("revocation", OpAction::Revoke, BusinessEvent::Adhoc, false),
        ("leaver", OpAction::Revoke, BusinessEvent::Leaver, true),
    ];
    let role_sets: [&[Role]; 4] =
        [&[], &[Role::Requester], &[Role::Approver, Role::Executor], &[Role::Admin]];
    let mut cases = 0;
    for (label, action, event, principal) in kinds {
        let change = approved_by_bob(change(action, event, principal));
        let removes = action == OpAction::Revoke;
        for who in ["alice", "paul", "dave", "bob", "carol"] {
            for roles in role_sets {
                let expected = if who == "dave" && removes {
                    false // a subject never calls off their own removal, admin or not
                } else {
                    who == "alice" || (who == "paul" && principal) || roles.contains(&Role::Admin)
                };
                let decision = may_cancel(&change, &name(who), roles);
                assert_eq!(decision.is_ok(), expected, "{label}: {who} with {roles:?}: {decision:?}");
                if let Err(refusal) = decision {
                    assert_eq!(refusal.code(), "authority.not_yours");
                }
                cases += 1;
            }
        }
    }
    assert_eq!(cases, 80);
}

#[test]
fn relationships_name_every_way_someone_stands_to_a_change() {
    let change = approved_by_bob(change(OpAction::Grant, BusinessEvent::Adhoc, true));
    assert_eq!(relationships(&change, &name("alice")), [Relationship::Requester]);
    assert_eq!(relationships(&change, &name("paul")), [Relationship::Principal]);
    assert_eq!(relationships(&change, &name("dave")), [Relationship::Subject]);
    assert_eq!(relationships(&change, &name("bob")), [Relationship::Approver]);
    assert!(relationships(&change, &name("carol")).is_empty());
    assert!(!removes_access(&change));
    assert!(removes_access(&super::tests::change(OpAction::Revoke, BusinessEvent::Adhoc, false)));
}

#[test]
fn evidence_goes_to_reached_steps_of_open_changes_from_the_steps_people() {
    let pending = approved_by_bob(change(OpAction::Grant, BusinessEvent::Adhoc, false));
    assert_eq!(pending.state, ChangeState::PendingApproval);
    let role_sets: [&[Role]; 6] =
        [&[], &[Role::Approver], &[Role::Executor], &[Role::Reviewer], &[Role::Auditor], &[Role::Admin]];
    for step in Phase::STEPS {
        for who in ["alice", "carol", "dave"] {
            for roles in role_sets {
                let decision = may_attach_evidence(&pending, &name(who), roles, step, 10);
                let reached = step <= Phase::Approval;
                let allowed = who == "alice"
                    || roles.iter().any(|r| match r {
                        Role::Auditor | Role::Admin => true,
                        Role::Approver => step == Phase::Approval,
                        Role::Executor => matches!(step, Phase::Implementation | Phase::Verification),
                        Role::Reviewer => step == Phase::Review,
                        _ => false,
                    });
                match decision {
                    Ok(()) => assert!(reached && allowed, "{step:?} {who} {roles:?}"),
                    Err(refusal) if !reached => {
                        assert_eq!(refusal.code(), "evidence.step_not_reached", "{step:?} {who}")
                    }
                    Err(refusal) => {
                        assert!(!allowed, "{step:?} {who} {roles:?}: {refusal}");
                        assert_eq!(refusal.code(), "authority.not_yours");
                    }
                }
            }
        }
    }
    // A closed change takes nothing, from anyone.
    let cancelled = step(
        Some(pending.clone()),
        Command::Cancel { actor: crate::identity::Actor::Identity(name("alice")), reason: "no".into() },
    );
    let closed = may_attach_evidence(&cancelled, &name("alice"), &[Role::Admin], Phase::Request, 1);
    assert_eq!(closed.unwrap_err().code(), "evidence.change_closed");
    // The quota counts bytes already attached.
    let full = may_attach_evidence(&pending, &name("alice"), &[], Phase::Request, MAX_EVIDENCE_BYTES + 1);
    assert_eq!(full.unwrap_err().code(), "evidence.quota_exceeded");
}

#[test]
fn the_business_event_fits_the_operations() {
    let events = [
        BusinessEvent::Joiner,
        BusinessEvent::Mover,
        BusinessEvent::Leaver,
        BusinessEvent::Decommission,
        BusinessEvent::Adhoc,
        BusinessEvent::Expiry,
    ];
    for event in events {
        for action in [OpAction::Grant, OpAction::Revoke, OpAction::Rotate] {
            let request = request(action, event, false, 1);
            let fits = match event {
                BusinessEvent::Leaver | BusinessEvent::Decommission => action != OpAction::Grant,
                BusinessEvent::Joiner => action != OpAction::Revoke,
                BusinessEvent::Expiry => false,
                _ => true,
            };
            let decided = decide(None, request, T0);
            assert_eq!(decided.is_ok(), fits, "{event:?} {action:?}: {decided:?}");
            if let Err(refusal) = decided {
                assert_eq!(refusal.code(), "input.event_mismatch");
            }
        }
    }
}

#[test]
fn canonical_names_fold_case_and_end_separators_only() {
    for (a, b, same) in [
        ("bob", "Bob", true),
        ("bob", "bob.", true),
        ("bob", "BOB-_", true),
        ("bob", "b.ob", false),
        ("bob", "bob2", false),
        ("bob", "bob@x", false),
    ] {
        assert_eq!(name(a).canonical() == name(b).canonical(), same, "{a} {b}");
    }
}

#[test]
fn comments_come_from_the_people_a_change_concerns_and_the_roles_that_work_on_changes() {
    let change = approved_by_bob(change(OpAction::Grant, BusinessEvent::Adhoc, true));
    let role_sets: [&[Role]; 8] = [
        &[],
        &[Role::Requester],
        &[Role::Provisioner],
        &[Role::Approver],
        &[Role::Executor],
        &[Role::Reviewer],
        &[Role::Auditor],
        &[Role::Admin],
    ];
    let mut cases = 0;
    for who in ["alice", "paul", "dave", "bob", "carol"] {
        for roles in role_sets {
            let concerned = who != "carol";
            let working = roles.iter().any(|r| !matches!(r, Role::Requester | Role::Provisioner));
            let decision = may_comment(&change, &name(who), roles);
            assert_eq!(decision.is_ok(), concerned || working, "{who} with {roles:?}: {decision:?}");
            if let Err(refusal) = decision {
                assert_eq!(refusal.code(), "authority.not_yours");
            }
            cases += 1;
        }
    }
    assert_eq!(cases, 40);
}
