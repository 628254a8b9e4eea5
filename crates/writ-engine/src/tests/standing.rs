//! Identity lifecycle: a disabled or offboarded identity stops acting on every path, its
//! tokens stop working, and the approvals it gave to open changes stop counting.

use writ_core::event::ChangeEventBody;
use writ_core::identity::IdentityState;
use writ_core::time::Duration;

use super::*;

fn admin() -> Actor {
    Actor::System(SystemActor::Admin)
}

fn grant(w: &World, who: &str, what: &str, random: u128) -> ChangeId {
    w.engine.request(input("alice", &[(OpAction::Grant, who, what)]), random).unwrap().change.id
}

fn disable(w: &World, who: &str) -> crate::standing::Standing {
    w.engine.set_identity_state(admin(), &n(who), IdentityState::Disabled, "left the team".into()).unwrap()
}

fn code<T: std::fmt::Debug>(result: Result<T>) -> &'static str {
    result.unwrap_err().code()
}

#[test]
fn a_disabled_identity_stops_acting_and_its_approvals_stop_counting() {
    let w = world();
    let token = w.engine.issue_token(admin(), &n("bob"), "laptop", Duration::parse("1d").unwrap()).unwrap();
    assert_eq!(w.engine.authenticate(&token.token).unwrap().identity.name, n("bob"));
    // Two approvals needed: bob's is one of them. One approval needed: bob's approved it.
    let high = grant(&w, "dave", "apps:admin", 1);
    assert_eq!(
        w.engine.approve(&high, &n("bob"), None, None).unwrap().change.state,
        ChangeState::PendingApproval
    );
    let low = grant(&w, "dave", "apps:read", 2);
    assert_eq!(w.engine.approve(&low, &n("bob"), None, None).unwrap().change.state, ChangeState::Approved);

    let standing = disable(&w, "bob");
    assert_eq!((standing.from, standing.identity.state), (IdentityState::Active, IdentityState::Disabled));
    assert_eq!(standing.tokens_revoked, vec![token.info.id.clone()]);
    let mut withdrawn = standing.withdrawn.clone();
    withdrawn.sort();
    let mut expected = vec![high.clone(), low.clone()];
    expected.sort();
    assert_eq!(withdrawn, expected);
    for id in [&high, &low] {
        let record = w.engine.load(id).unwrap();
        assert_eq!(record.change.state, ChangeState::PendingApproval, "{id} needs approval again");
        assert!(record.change.approvals.is_empty(), "bob's approval no longer counts on {id}");
        let Some((_, last)) = record.events.last() else { panic!("no events") };
        let ChangeEventBody::Revalidated { reason, .. } = &last.body else { panic!("{:?}", last.body) };
        assert!(reason.contains("bob is disabled"), "{reason}");
    }
    let executed = w.engine.execute(&low, None);
    assert_eq!(code(executed), "state.invalid_transition", "it waits for approval again");

    // The token names why it stopped working; every actor path refuses bob and records nothing.
    let refused = w.engine.authenticate(&token.token).unwrap_err();
    assert!(matches!(refused, access::AccessError::Auth(access::AuthError::IdentityDisabled { .. })));
    let other = grant(&w, "dave", "flaky:db", 3);
    let before = snapshot(&w.engine);
    let attempts: Vec<(&str, &'static str)> = vec![
        ("approve", code(w.engine.approve(&other, &n("bob"), None, None))),
        ("reject", code(w.engine.reject(&other, &n("bob"), "no".into()))),
        ("request", code(w.engine.request(input("bob", &[(OpAction::Grant, "dave", "apps:read")]), 4))),
        ("cancel", code(w.engine.cancel(&other, &n("bob"), "no".into()))),
        ("execute", code(w.engine.execute(&other, Some(&n("bob"))))),
        ("review", code(w.engine.review(&other, &n("bob"), "fine".into()))),
        (
            "evidence",
            code(w.engine.attach_evidence(
                &other,
                &n("bob"),
                writ_core::event::Phase::Validation,
                "x.txt".into(),
                "text/plain".into(),
                b"x".to_vec(),
            )),
        ),
        ("token", code(w.engine.issue_token(admin(), &n("bob"), "again", Duration::parse("1d").unwrap()))),
        ("grant to bob", code(w.engine.request(input("alice", &[(OpAction::Grant, "bob", "apps:read")]), 5))),
        (
            "owner",
            code(w.engine.add_identity(
                admin(),
                n("svc-new"),
                IdentityKind::ServiceAccount,
                Some(&n("bob")),
                None,
            )),
        ),
        (
            "offboard as bob",
            code(w.engine.offboard(n("bob"), &n("dave"), Justification::parse("x").unwrap(), vec![], 6)),
        ),
    ];
    for (what, code) in attempts {
        assert_eq!(code, "identity.inactive", "{what}");
        assert_eq!(snapshot(&w.engine), before, "{what} changed the store");
    }
    // Access can still be taken away from bob.
    w.engine.request(input("alice", &[(OpAction::Revoke, "bob", "apps:read")]), 7).unwrap();

    // Enabled again: roles are back, new tokens work, the revoked one stays revoked.
    let back =
        w.engine.set_identity_state(admin(), &n("bob"), IdentityState::Active, "rehired".into()).unwrap();
    assert!(back.tokens_revoked.is_empty() && back.withdrawn.is_empty());
    let refused = w.engine.authenticate(&token.token).unwrap_err();
    assert!(matches!(refused, access::AccessError::Auth(access::AuthError::Revoked { .. })));
    let fresh = w.engine.issue_token(admin(), &n("bob"), "new", Duration::parse("1d").unwrap()).unwrap();
    assert!(w.engine.authenticate(&fresh.token).is_ok());
    assert_eq!(w.engine.approve(&low, &n("bob"), None, None).unwrap().change.state, ChangeState::Approved);

    let events = w.engine.store().events(0, 10_000).unwrap();
    let moves =
        events.iter().filter(|e| String::from_utf8_lossy(&e.bytes).contains("registry.identity_state"));
    assert_eq!(moves.count(), 2, "disable and enable, each one event");
}

#[test]
fn a_grant_to_someone_disabled_after_the_request_is_neither_approved_nor_executed() {
    let w = world();
    let pending = grant(&w, "dave", "apps:read", 1);
    let approved = grant(&w, "dave", "flaky:db", 2);
    w.engine.approve(&approved, &n("bob"), None, None).unwrap();
    disable(&w, "dave");
    let before = snapshot(&w.engine);
    assert_eq!(code(w.engine.approve(&pending, &n("bob"), None, None)), "identity.inactive");
    assert_eq!(code(w.engine.execute(&approved, None)), "identity.inactive");
    assert_eq!(snapshot(&w.engine), before);
    assert!(w.apps.observe(&[ent("read")]).unwrap().members[&ent("read")].is_empty(), "target untouched");
}

#[test]
fn offboarding_stops_the_identity_even_with_nothing_to_revoke_and_never_opens_two_cleanups() {
    let w = world();
    let carol =
        w.engine.offboard(n("alice"), &n("carol"), Justification::parse("HR-1").unwrap(), vec![], 1).unwrap();
    assert!(carol.change.is_none(), "carol holds nothing: no change");
    assert_eq!(w.engine.identity(&n("carol")).unwrap().state, IdentityState::Offboarded);
    let events = w.engine.store().event_count().unwrap();
    let again =
        w.engine.offboard(n("alice"), &n("carol"), Justification::parse("HR-1").unwrap(), vec![], 2).unwrap();
    assert_eq!((again.standing.from, again.change.is_none()), (IdentityState::Offboarded, true));
    assert_eq!(w.engine.store().event_count().unwrap(), events, "offboarding twice records nothing more");

    // dave holds apps:read: offboarding opens one leaver change, and again answers the same one.
    let id = grant(&w, "dave", "apps:read", 3);
    w.engine.approve(&id, &n("bob"), None, None).unwrap();
    w.engine.execute(&id, None).unwrap();
    let dave =
        w.engine.offboard(n("alice"), &n("dave"), Justification::parse("HR-2").unwrap(), vec![], 4).unwrap();
    let leaver = dave.change.unwrap().change;
    assert_eq!((leaver.event, leaver.ops.len()), (BusinessEvent::Leaver, 1));
    let again =
        w.engine.offboard(n("alice"), &n("dave"), Justification::parse("HR-2").unwrap(), vec![], 5).unwrap();
    assert_eq!(again.change.unwrap().change.id, leaver.id);
    // The leaver change runs to the end although dave can no longer act.
    w.engine.approve(&leaver.id, &n("bob"), None, None).unwrap();
    w.engine.execute(&leaver.id, None).unwrap();
    assert_eq!(w.engine.verify(&leaver.id).unwrap().change.state, ChangeState::Verified);

    // alice owns svc-ci: offboarding alice flags it for transfer.
    let alice =
        w.engine.offboard(n("bob"), &n("alice"), Justification::parse("HR-3").unwrap(), vec![], 6).unwrap();
    assert_eq!(alice.standing.flagged, vec![n("svc-ci")]);
    let findings = w.engine.findings(None).unwrap();
    assert!(findings.iter().any(|f| f.kind == "nhi.orphaned" && f.subject == "svc-ci"), "{findings:?}");
}

#[test]
fn a_state_move_from_a_stale_state_or_of_oneself_is_refused_and_changes_nothing() {
    let w = world();
    let before = snapshot(&w.engine);
    let own = w.engine.set_identity_state(
        Actor::Identity(n("bob")),
        &n("bob"),
        IdentityState::Disabled,
        "x".into(),
    );
    assert_eq!(code(own), "authority.own_standing");
    let own = w.engine.offboard(n("bob"), &n("bob"), Justification::parse("x").unwrap(), vec![], 1);
    assert_eq!(code(own), "authority.own_standing");
    assert_eq!(snapshot(&w.engine), before);
    disable(&w, "carol");
    let before = snapshot(&w.engine);
    let key = writ_ledger::sensitive::HmacKey::from_bytes([1; 32]);
    let event = writ_core::event::RegistryEvent::IdentityState {
        actor: admin(),
        identity: n("carol"),
        from: IdentityState::Active,
        to: IdentityState::Offboarded,
        reason: "stale".into(),
        tokens_revoked: vec![],
        at: w.engine.now(),
    };
    let refused = w.engine.store().set_identity_state(
        &n("carol"),
        IdentityState::Active,
        IdentityState::Offboarded,
        &[],
        w.engine.now(),
        &registry_event(&event, &key),
    );
    assert!(matches!(refused, Err(writ_store::StoreError::Conflict(_))), "{refused:?}");
    assert_eq!(snapshot(&w.engine), before);
}

#[test]
fn acting_on_behalf_of_someone_needs_their_delegation_in_force() {
    let w = world();
    let for_carol = RequestInput {
        on_behalf_of: Some(n("carol")),
        ..input("alice", &[(OpAction::Grant, "dave", "apps:read")])
    };
    let before = snapshot(&w.engine);
    assert_eq!(code(w.engine.request(for_carol.clone(), 1)), "authority.no_delegation");
    // Only carol (or an admin) gives it; alice cannot give herself carol's authority.
    let by_alice = w.engine.grant_delegation(
        Actor::Identity(n("alice")),
        &n("carol"),
        &n("alice"),
        Duration::parse("1d").unwrap(),
    );
    assert_eq!(code(by_alice), "authority.not_yours");
    assert_eq!(snapshot(&w.engine), before);

    let given = w
        .engine
        .grant_delegation(
            Actor::Identity(n("carol")),
            &n("carol"),
            &n("alice"),
            Duration::parse("1d").unwrap(),
        )
        .unwrap();
    assert_eq!(given.until, w.engine.now().plus(Duration::parse("1d").unwrap()));
    let record = w.engine.request(for_carol.clone(), 2).unwrap();
    assert_eq!(record.change.on_behalf_of, Some(n("carol")));
    // Approving in someone's name needs theirs too (after the rules of the change).
    assert_eq!(
        code(w.engine.approve(&record.change.id, &n("bob"), Some(&n("dave")), None)),
        "sod.self_approval"
    );
    assert_eq!(
        code(w.engine.approve(&record.change.id, &n("bob"), Some(&n("svc-ci")), None)),
        "authority.no_delegation"
    );

    // Past its end, or revoked (by its delegate here), it no longer holds.
    advance(&w, 86_400_001);
    assert_eq!(code(w.engine.request(for_carol.clone(), 3)), "authority.no_delegation");
    w.engine.grant_delegation(admin(), &n("carol"), &n("alice"), Duration::parse("1d").unwrap()).unwrap();
    w.engine.request(for_carol.clone(), 4).unwrap();
    w.engine.revoke_delegation(Actor::Identity(n("alice")), &n("carol"), &n("alice")).unwrap();
    assert_eq!(code(w.engine.request(for_carol, 5)), "authority.no_delegation");
    let again = w.engine.revoke_delegation(admin(), &n("carol"), &n("alice"));
    assert_eq!(code(again), "not_found");
    assert!(w.engine.delegations().unwrap().is_empty());
}
