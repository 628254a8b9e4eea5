//! Execution: one attempt at a time under its claim, the executor retrying its own attempt, and
//! attempts cut off mid-way (the process died) recovered from what the target shows.

use writ_core::event::ChangeEventBody;

use super::*;

fn approved(w: &World) -> ChangeId {
    let id =
        w.engine.request(input("alice", &[(OpAction::Grant, "dave", "gated:deploy")]), 7).unwrap().change.id;
    w.engine.approve(&id, &n("bob"), None, None).unwrap();
    id
}

fn kinds(w: &World, id: &ChangeId) -> Vec<&'static str> {
    w.engine.load(id).unwrap().events.iter().map(|(_, e)| e.body.type_name()).collect()
}

fn holds(w: &World) -> bool {
    w.gated.observe(&[ent("deploy")]).unwrap().is_member(&ent("deploy"), &n("dave"))
}

/// Runs `execute` as `who` in a process that dies inside the connector.
fn killed(w: &World, id: &ChangeId, who: &str) {
    let engine = w.engine.clone();
    let (id, who) = (id.clone(), n(who));
    let died = std::thread::spawn(move || engine.execute(&id, Some(&who))).join();
    assert!(died.is_err(), "the attempt was meant to die");
}

#[test]
fn a_second_attempt_while_one_runs_is_refused_and_records_nothing() {
    let w = world();
    let id = approved(&w);
    let (entered_tx, entered) = std::sync::mpsc::channel();
    let (release, release_rx) = std::sync::mpsc::channel();
    *w.gated.hold.lock().unwrap() = Some((entered_tx, release_rx));
    let engine = w.engine.clone();
    let first_id = id.clone();
    let first = std::thread::spawn(move || engine.execute(&first_id, Some(&n("carol"))));
    entered.recv().unwrap();
    // The attempt is inside the connector: every other start is refused, by anyone.
    let before = snapshot(&w.engine);
    for who in [Some("carol"), None, Some("bob")] {
        let refused = w.engine.execute(&id, who.map(n).as_ref()).unwrap_err();
        assert_eq!(refused.code(), "state.execution_in_progress", "{who:?}: {refused}");
        assert_eq!(snapshot(&w.engine), before, "{who:?}: a refused start recorded something");
    }
    let refused = w.engine.execute(&id, Some(&n("carol"))).unwrap_err();
    assert!(refused.to_string().contains("attempt 1 by carol"), "{refused}");
    // Deleting the claim's row behind Writ's back does not end it: its event keeps its term.
    let db = rusqlite::Connection::open(w._dir.path().join("writ.db")).unwrap();
    assert_eq!(db.execute("DELETE FROM leases WHERE name LIKE 'execution:%'", []).unwrap(), 1);
    assert_eq!(w.engine.execute(&id, None).unwrap_err().code(), "state.execution_in_progress");
    assert_eq!(snapshot(&w.engine), before);
    release.send(()).unwrap();
    let done = first.join().unwrap().unwrap();
    assert_eq!(done.change.state, ChangeState::Implemented);
    let kinds = kinds(&w, &id);
    assert_eq!(kinds.iter().filter(|k| **k == "change.execution_started").count(), 1, "{kinds:?}");
    assert_eq!(w.gated.writes.lock().unwrap().len(), 1, "one write on the target");
    assert_eq!(w.engine.store().lease(&crate::execution::claim_name(&id)).unwrap(), None, "claim given up");
}

#[test]
fn the_executor_retries_its_own_failed_attempt() {
    let w = world();
    let id = w.engine.request(input("alice", &[(OpAction::Grant, "dave", "flaky:db")]), 8).unwrap().change.id;
    w.engine.approve(&id, &n("bob"), None, None).unwrap();
    assert_eq!(w.engine.execute(&id, Some(&n("carol"))).unwrap().change.state, ChangeState::Failed);
    let retried = w.engine.execute(&id, Some(&n("carol"))).unwrap();
    assert_eq!(retried.change.state, ChangeState::Implemented);
    assert_eq!(retried.change.executions.len(), 2);
    assert!(retried.change.executions.iter().all(|e| e.executor == Actor::Identity(n("carol"))));
}

#[test]
fn policy_can_ask_for_another_executor_after_a_failure() {
    let w = world();
    let forbid = r#"@id("execute.another-after-failure")
forbid (principal, action == Writ::Action::"execute", resource)
when { resource.executors.contains(principal) };"#;
    let mut files = writ_policy::PolicyBundle::default_pack().files().clone();
    files.insert("retry.cedar".into(), forbid.into());
    let bundle = writ_policy::PolicyBundle::from_files(files).unwrap();
    w.engine.load_policy(Actor::System(SystemActor::Admin), bundle).unwrap();
    let id = w.engine.request(input("alice", &[(OpAction::Grant, "dave", "flaky:db")]), 8).unwrap().change.id;
    w.engine.approve(&id, &n("bob"), None, None).unwrap();
    assert_eq!(w.engine.execute(&id, Some(&n("carol"))).unwrap().change.state, ChangeState::Failed);
    let before = snapshot(&w.engine);
    let refused = w.engine.execute(&id, Some(&n("carol"))).unwrap_err();
    assert_eq!(refused.code(), "policy.forbidden", "{refused}");
    assert_eq!(snapshot(&w.engine), before);
    // Someone else may.
    assert_eq!(w.engine.execute(&id, None).unwrap().change.state, ChangeState::Implemented);
}

#[test]
fn an_attempt_killed_after_writing_is_recovered_with_its_write_and_not_applied_twice() {
    let w = world();
    let id = approved(&w);
    w.gated.die_after_write.store(true, Ordering::SeqCst);
    killed(&w, &id, "carol");
    assert!(holds(&w), "the write landed");
    assert_eq!(w.engine.load(&id).unwrap().change.state, ChangeState::Implementing);
    // While its claim is live, nobody resumes it.
    let before = snapshot(&w.engine);
    assert_eq!(w.engine.execute(&id, Some(&n("carol"))).unwrap_err().code(), "state.execution_in_progress");
    assert!(w.engine.resume_stranded().unwrap().resumed.is_empty());
    assert_eq!(snapshot(&w.engine), before);
    // Once it has ended, the same executor resumes: the write is found and linked, not repeated.
    advance(&w, crate::execution::DEFAULT_CLAIM_TTL.as_millis() + 1);
    let resumed = w.engine.execute(&id, Some(&n("carol"))).unwrap();
    assert_eq!(resumed.change.state, ChangeState::Implemented);
    assert_eq!(w.gated.writes.lock().unwrap().len(), 1, "applied twice");
    assert_eq!(
        kinds(&w, &id),
        vec![
            "change.requested",
            "change.validated",
            "change.approved",
            "change.execution_started",
            "change.attempt_recovered"
        ]
    );
    let attempt = &resumed.change.executions[0];
    assert!(attempt.recovered && attempt.error.is_none());
    assert_eq!(attempt.executor, Actor::Identity(n("carol")), "the trail names who wrote");
    let outcome = &attempt.outcomes[0];
    assert!(!outcome.before && outcome.after, "{outcome:?}");
    assert_eq!(outcome.reference.as_deref(), Some(format!("write {id} #1").as_str()));
    assert_eq!(w.engine.verify(&id).unwrap().change.state, ChangeState::Verified);
    assert_eq!(w.engine.grants_of(&n("dave")).unwrap().len(), 1);
}

#[test]
fn an_attempt_killed_before_writing_is_recovered_as_incomplete_and_the_server_finishes_it() {
    let w = world();
    let id = approved(&w);
    w.gated.die_before_write.store(true, Ordering::SeqCst);
    killed(&w, &id, "carol");
    assert!(!holds(&w));
    advance(&w, crate::execution::DEFAULT_CLAIM_TTL.as_millis() + 1);
    // The target is down: nothing recorded, and the next passes leave it alone for a while.
    w.gated.down.store(true, Ordering::SeqCst);
    let before = snapshot(&w.engine);
    let report = w.engine.resume_stranded().unwrap();
    assert!(report.resumed.is_empty() && report.errors.len() == 1, "{report:?}");
    assert!(report.errors[0].1.contains("connection refused"), "{report:?}");
    assert!(w.engine.resume_stranded().unwrap().errors.is_empty(), "tried again at once");
    assert_eq!(snapshot(&w.engine), before);
    w.gated.down.store(false, Ordering::SeqCst);
    advance(&w, 2_001);
    let report = w.engine.resume_stranded().unwrap();
    assert_eq!(report.resumed, vec![(id.clone(), ChangeState::Verified)], "{:?}", report.errors);
    assert!(holds(&w));
    let record = w.engine.load(&id).unwrap();
    let recovered = record
        .events
        .iter()
        .find_map(|(_, e)| match &e.body {
            ChangeEventBody::AttemptRecovered { attempt, outcomes, error } => {
                Some((*attempt, outcomes.clone(), error.clone()))
            }
            _ => None,
        })
        .unwrap();
    assert_eq!(recovered.0, 1);
    assert!(recovered.1.iter().all(|o| !o.after && o.reference.is_none()), "{recovered:?}");
    assert!(recovered.2.unwrap().contains("0 of 1 operations are in effect"));
    assert_eq!(record.change.executions.len(), 2);
    assert_eq!(record.change.executions[1].executor, Actor::System(SystemActor::Engine));
    // Nothing left to resume.
    assert!(w.engine.resume_stranded().unwrap().resumed.is_empty());
}
