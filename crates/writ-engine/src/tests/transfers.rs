//! Ownership transfers: two people decide (who asked, and the new owner or whoever the rules
//! name), every refusal changes nothing, acceptance moves the owner and resolves the orphan.

use writ_core::access::Role;
use writ_core::event::{Event, RegistryEvent};
use writ_core::finding::FindingState;
use writ_core::identity::IdentityState;
use writ_core::transfer::{Decision, TransferState};

use super::*;

fn admin() -> Actor {
    Actor::System(SystemActor::Admin)
}

fn owner(w: &World, identity: &str) -> Option<IdentityName> {
    w.engine.identity(&n(identity)).unwrap().owner
}

/// Asserts that `result` is refused with `code` and that nothing was recorded.
fn refused<T: std::fmt::Debug>(w: &World, code: &str, attempt: impl FnOnce() -> Result<T>) {
    let events = w.engine.store().event_count().unwrap();
    let transfers = w.engine.transfers(None).unwrap();
    let err = attempt().unwrap_err();
    assert_eq!(err.code(), code, "{err}");
    assert_eq!(w.engine.store().event_count().unwrap(), events, "a refusal records nothing: {err}");
    assert_eq!(w.engine.transfers(None).unwrap(), transfers);
}

#[test]
fn an_orphan_is_handed_over_only_when_someone_other_than_the_claimant_accepts() {
    let w = world();
    w.engine.add_identity(admin(), n("erin"), IdentityKind::Human, None, None).unwrap();
    w.engine.set_role(admin(), &n("dave"), Role::Admin, true).unwrap();
    w.engine.set_identity_state(admin(), &n("alice"), IdentityState::Offboarded, "left".into()).unwrap();
    let orphan = w.engine.findings(Some(FindingState::Open)).unwrap();
    assert_eq!(orphan.len(), 1);
    assert_eq!(orphan[0].kind, "nhi.orphaned");
    // Someone with no stake in it cannot hand it to a third person.
    refused(&w, "transfer.not_allowed", || {
        w.engine.request_transfer(&n("bob"), &n("svc-ci"), &n("carol"), "ownerless".into(), 1)
    });
    // carol claims it: she cannot accept her own claim; with the owner gone, an admin decides.
    let claim = w
        .engine
        .request_transfer(&n("carol"), &n("svc-ci"), &n("carol"), "my team runs it".into(), 2)
        .unwrap();
    assert_eq!((claim.state, claim.from.clone()), (TransferState::Pending, Some(n("alice"))));
    let id = claim.id.to_string();
    refused(&w, "transfer.self_approval", || {
        w.engine.decide_transfer(&n("carol"), &id, Decision::Accept, None)
    });
    for outsider in ["bob", "erin"] {
        refused(&w, "transfer.not_allowed", || {
            w.engine.decide_transfer(&n(outsider), &id, Decision::Accept, None)
        });
    }
    refused(&w, "identity.inactive", || w.engine.decide_transfer(&n("alice"), &id, Decision::Accept, None));
    refused(&w, "transfer.not_allowed", || w.engine.decide_transfer(&n("dave"), &id, Decision::Cancel, None));
    assert_eq!(owner(&w, "svc-ci"), Some(n("alice")));

    let accepted = w
        .engine
        .decide_transfer(&n("dave"), &id, Decision::Accept, Some("confirmed with carol's lead".into()))
        .unwrap();
    assert_eq!(accepted.state, TransferState::Accepted);
    assert_eq!(accepted.decided_by, Some(n("dave")));
    assert_eq!(owner(&w, "svc-ci"), Some(n("carol")));
    let finding = w.engine.finding(&orphan[0].id).unwrap();
    assert_eq!(finding.state, FindingState::Resolved);
    // The registry's run agrees: nothing is orphaned any more, nothing reopens.
    let report = w.engine.reconcile_registry(admin()).unwrap();
    assert!(report.opened.is_empty() && report.reopened.is_empty(), "{report:?}");
    // Decided once: a second decision is refused.
    refused(&w, "transfer.not_pending", || {
        w.engine.decide_transfer(&n("dave"), &id, Decision::Decline, None)
    });
    // Both steps are in the ledger, with who took them.
    let recorded: Vec<(String, String)> = w
        .engine
        .store()
        .events(0, 1000)
        .unwrap()
        .iter()
        .filter_map(|row| match writ_ledger::decode(&row.bytes, &|_| None).unwrap() {
            Event::Registry(event @ RegistryEvent::Transfer { .. }) => {
                Some((event.type_name().to_owned(), event.actor().to_string()))
            }
            _ => None,
        })
        .collect();
    let pairs =
        |list: &[(&str, &str)]| list.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect::<Vec<_>>();
    assert_eq!(
        recorded,
        pairs(&[("identity.transfer_requested", "carol"), ("identity.transfer_accepted", "dave")])
    );
}

#[test]
fn a_transfer_asked_by_the_owner_is_decided_by_the_new_owner_and_a_claim_by_the_owner() {
    let w = world();
    // alice gives it to bob: only bob decides (not alice, not an admin).
    w.engine.set_role(admin(), &n("dave"), Role::Admin, true).unwrap();
    let give =
        w.engine.request_transfer(&n("alice"), &n("svc-ci"), &n("bob"), "moving teams".into(), 1).unwrap();
    let id = give.id.to_string();
    refused(&w, "transfer.self_approval", || {
        w.engine.decide_transfer(&n("alice"), &id, Decision::Accept, None)
    });
    refused(&w, "transfer.not_allowed", || w.engine.decide_transfer(&n("dave"), &id, Decision::Accept, None));
    let declined =
        w.engine.decide_transfer(&n("bob"), &id, Decision::Decline, Some("not my system".into())).unwrap();
    assert_eq!(declined.state, TransferState::Declined);
    assert_eq!(owner(&w, "svc-ci"), Some(n("alice")));
    // carol claims it while alice is active: alice decides, an admin may not.
    let claim =
        w.engine.request_transfer(&n("carol"), &n("svc-ci"), &n("carol"), "I run it now".into(), 2).unwrap();
    let id = claim.id.to_string();
    refused(&w, "transfer.not_allowed", || w.engine.decide_transfer(&n("dave"), &id, Decision::Accept, None));
    w.engine.decide_transfer(&n("alice"), &id, Decision::Accept, None).unwrap();
    assert_eq!(owner(&w, "svc-ci"), Some(n("carol")));
}

#[test]
fn requests_outside_the_rules_are_refused_and_change_nothing() {
    let w = world();
    w.engine
        .add_identity(admin(), n("svc-two"), IdentityKind::ServiceAccount, Some(&n("bob")), None)
        .unwrap();
    w.engine.add_identity(admin(), n("erin"), IdentityKind::Human, None, None).unwrap();
    w.engine.set_identity_state(admin(), &n("erin"), IdentityState::Disabled, "on leave".into()).unwrap();
    let cases: [(&str, &str, &str, &str, &str); 8] = [
        ("alice", "bob", "svc-ci", "transfer.not_nhi", "a person has no owner"),
        ("alice", "svc-ci", "svc-two", "transfer.owner_invalid", "an NHI cannot own"),
        ("alice", "svc-ci", "erin", "transfer.owner_invalid", "a disabled person cannot own"),
        ("alice", "svc-ci", "alice", "transfer.same_owner", "already hers"),
        ("carol", "svc-ci", "dave", "transfer.not_allowed", "neither owner, new owner nor admin"),
        ("svc-two", "svc-ci", "bob", "identity.not_human", "an NHI cannot ask"),
        ("alice", "svc-ci", "nobody", "not_found", "an unknown new owner"),
        ("alice", "ghost", "bob", "not_found", "an unknown identity"),
    ];
    for (actor, identity, to, code, why) in cases {
        let events = w.engine.store().event_count().unwrap();
        let err = w.engine.request_transfer(&n(actor), &n(identity), &n(to), "why".into(), 1).unwrap_err();
        assert_eq!(err.code(), code, "{why}: {err}");
        assert_eq!(w.engine.store().event_count().unwrap(), events, "{why}: nothing recorded");
    }
    refused(&w, "input.invalid_text", || {
        w.engine.request_transfer(&n("alice"), &n("svc-ci"), &n("bob"), "  ".into(), 1)
    });
    refused(&w, "input.invalid_value", || {
        w.engine.decide_transfer(&n("bob"), "TRF-nope", Decision::Accept, None)
    });
    assert!(w.engine.transfers(None).unwrap().is_empty());
    assert_eq!(owner(&w, "svc-ci"), Some(n("alice")));
}

#[test]
fn a_new_request_supersedes_the_pending_one_and_a_request_expires_after_a_week() {
    let w = world();
    let first =
        w.engine.request_transfer(&n("alice"), &n("svc-ci"), &n("bob"), "first thought".into(), 1).unwrap();
    let second =
        w.engine.request_transfer(&n("alice"), &n("svc-ci"), &n("carol"), "better fit".into(), 2).unwrap();
    let first = w.engine.transfer(first.id.as_str()).unwrap();
    assert_eq!((first.state, first.decided_by.clone()), (TransferState::Superseded, Some(n("alice"))));
    refused(&w, "transfer.not_pending", || {
        w.engine.decide_transfer(&n("bob"), first.id.as_str(), Decision::Accept, None)
    });
    // The one who asked may withdraw; nobody else may cancel.
    refused(&w, "transfer.not_allowed", || {
        w.engine.decide_transfer(&n("carol"), second.id.as_str(), Decision::Cancel, None)
    });
    let third =
        w.engine.request_transfer(&n("alice"), &n("svc-ci"), &n("dave"), "last try".into(), 3).unwrap();
    w.clock.0.fetch_add(7 * 86_400_000, Ordering::SeqCst);
    refused(&w, "transfer.expired", || {
        w.engine.decide_transfer(&n("dave"), third.id.as_str(), Decision::Accept, None)
    });
    let fourth = w.engine.request_transfer(&n("alice"), &n("svc-ci"), &n("dave"), "again".into(), 4).unwrap();
    let cancelled =
        w.engine.decide_transfer(&n("alice"), fourth.id.as_str(), Decision::Cancel, None).unwrap();
    assert_eq!(cancelled.state, TransferState::Cancelled);
    assert_eq!(owner(&w, "svc-ci"), Some(n("alice")));
    let states: Vec<TransferState> =
        w.engine.transfers(Some(&n("svc-ci"))).unwrap().iter().map(|t| t.state).collect();
    assert_eq!(
        states,
        [
            TransferState::Superseded,
            TransferState::Superseded,
            TransferState::Superseded,
            TransferState::Cancelled
        ]
    );
}

#[test]
fn an_owner_or_a_transfer_edited_with_sql_is_found_by_the_projection_check() {
    let w = world();
    let t = w.engine.request_transfer(&n("alice"), &n("svc-ci"), &n("bob"), "handover".into(), 1).unwrap();
    w.engine.decide_transfer(&n("bob"), t.id.as_str(), Decision::Accept, None).unwrap();
    assert!(w.engine.check_projections().unwrap().is_empty());
    let db = rusqlite::Connection::open(w._dir.path().join("writ.db")).unwrap();
    db.execute("UPDATE identities SET owner = 'dave' WHERE name = 'svc-ci'", []).unwrap();
    db.execute("UPDATE transfers SET to_owner = 'dave'", []).unwrap();
    let named: Vec<String> =
        w.engine.check_projections().unwrap().iter().map(|d| format!("{} {}", d.table, d.key)).collect();
    assert_eq!(named, ["identities svc-ci".to_owned(), format!("transfers {}", t.id)]);
    w.engine.repair_projections(admin()).unwrap();
    assert_eq!(owner(&w, "svc-ci"), Some(n("bob")));
    assert!(w.engine.check_projections().unwrap().is_empty());
}
