//! `Engine::may` answers as the step itself would, in every state a person meets a change in,
//! and records nothing; `Engine::preview_request` says what the request would be given, or the
//! refusal it would meet, and records nothing.

use super::*;
use crate::ask::Step;

/// A fresh world with alice's grant of apps:read to dave taken to `state`.
fn change_in(state: &str) -> (World, ChangeId) {
    let w = world();
    let record = w.engine.request(input("alice", &[(OpAction::Grant, "dave", "apps:read")]), 7).unwrap();
    let id = record.change.id;
    if state != "pending_approval" {
        w.engine.approve(&id, &n("bob"), None, None).unwrap();
    }
    if state == "verified" {
        w.engine.execute(&id, None).unwrap();
        w.engine.verify(&id).unwrap();
    }
    (w, id)
}

fn take(engine: &Engine, id: &ChangeId, actor: &IdentityName, step: Step) -> Result<ChangeRecord> {
    match step {
        Step::Approve => engine.approve(id, actor, None, None),
        Step::Reject => engine.reject(id, actor, "not now".into()),
        Step::Cancel => engine.cancel(id, actor, "not needed".into()),
        Step::Review => engine.review(id, actor, "looked at it".into()),
        Step::Comment => engine.comment(id, actor, "a remark".into()),
    }
}

#[test]
fn may_answers_as_the_step_would_for_every_person_step_and_state() {
    let mut allowed = Vec::new();
    for state in ["pending_approval", "approved", "verified"] {
        for actor in ["alice", "bob", "carol", "dave", "svc-ci"] {
            for step in Step::ALL {
                let (w, id) = change_in(state);
                let record = w.engine.load(&id).unwrap();
                let before = snapshot(&w.engine);
                let asked = w.engine.may(&record, &n(actor), step);
                assert_eq!(snapshot(&w.engine), before, "{state} {actor} {step:?}: asking records nothing");
                let taken = take(&w.engine, &id, &n(actor), step);
                let case = format!("{state} {actor} {}", step.as_str());
                match (&asked, &taken) {
                    (Ok(()), Ok(_)) => allowed.push(case),
                    (Err(a), Err(t)) => {
                        assert_eq!(a.code(), t.code(), "{case}: {a} / {t}");
                        assert_eq!(a.to_string(), t.to_string(), "{case}: the same reason is shown");
                        assert_eq!(snapshot(&w.engine), before, "{case}: the refused step changes nothing");
                    }
                    _ => panic!("{case}: asked {asked:?}, the step gave {:?}", taken.map(|r| r.change.state)),
                }
            }
        }
    }
    // The table the answers make (the core's rules): the requester may cancel until execution;
    // anyone but the requester may approve or reject while pending, and reject an approved
    // change; the subject, dave, may do nothing but comment; only someone who neither asked for nor approved
    // it reviews it; an NHI does nothing.
    let expected = [
        "pending_approval alice cancel",
        "pending_approval bob approve",
        "pending_approval bob reject",
        "pending_approval carol approve",
        "pending_approval carol reject",
        "approved alice cancel",
        "approved bob reject",
        "approved carol reject",
        "verified carol review",
        // Comments come from those it concerns (the requester, the subject, an approver once
        // they approved); carol, with no part in it and no role, may not.
        "pending_approval alice comment",
        "pending_approval dave comment",
        "approved alice comment",
        "approved bob comment",
        "approved dave comment",
        "verified alice comment",
        "verified bob comment",
        "verified dave comment",
    ];
    let mut got = allowed.clone();
    got.sort();
    let mut want: Vec<String> = expected.iter().map(|s| (*s).to_owned()).collect();
    want.sort();
    assert_eq!(got, want);
}

#[test]
fn a_preview_is_what_the_request_gets_and_records_nothing() {
    let w = world();
    let before = snapshot(&w.engine);
    let preview =
        w.engine.preview_request(input("alice", &[(OpAction::Grant, "dave", "apps:read")])).unwrap();
    assert_eq!(snapshot(&w.engine), before, "a preview records nothing");
    let made = w.engine.request(input("alice", &[(OpAction::Grant, "dave", "apps:read")]), 9).unwrap();
    let controls = made.change.controls.clone().unwrap();
    assert_eq!(preview.tier, controls.tier);
    assert_eq!(preview.slots, controls.slots);
    assert_eq!(preview.approvals, made.change.requirement.approvals);
    assert_eq!(preview.validity, made.change.requirement.validity);
    assert_eq!(preview.review_required, controls.review_required);
    assert_eq!(preview.max_durations.len(), 1);
    assert!(preview.max_durations[0].0.is_some(), "{:?}", preview.max_durations);
    // Refusals are the request's own: too long, an unknown entitlement, a disabled subject.
    let mut long = input("alice", &[(OpAction::Grant, "dave", "apps:read")]);
    long.ops[0].duration = Some(Duration::hours(9));
    let unknown = input("alice", &[(OpAction::Grant, "dave", "apps:nothing")]);
    let nobody = input("alice", &[(OpAction::Grant, "zed", "apps:read")]);
    for (why, asked) in [("too long", long), ("unknown entitlement", unknown), ("unknown subject", nobody)] {
        let before = snapshot(&w.engine);
        let previewed = w.engine.preview_request(asked.clone()).unwrap_err();
        let requested = w.engine.request(asked, 11).unwrap_err();
        assert_eq!(previewed.code(), requested.code(), "{why}");
        assert_eq!(snapshot(&w.engine), before, "{why}: nothing recorded");
    }
}
