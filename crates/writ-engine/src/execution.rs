//! Executing a change: one attempt at a time under a claim, and the truth about attempts that
//! were cut off.
//!
//! - **Claims.** An attempt starts by committing `change.execution_started` together with the
//!   change's execution claim (the lease `execution:<id>`, see `writ_store::ClaimOp`); a start
//!   while a live claim exists is refused before anything is recorded
//!   (`state.execution_in_progress`). The claim is renewed while the connectors work and given
//!   up with the outcome, in the outcome's transaction.
//! - **Recovery.** A change left `implementing` whose claim ended (its process died, or the store
//!   refused its outcome) is resumed: each target is observed, the write the cut-off attempt
//!   stamped with the change ID is looked up (`Connector::stamped`), and
//!   `change.attempt_recovered` records what is found as that attempt's outcome. If something
//!   approved is still missing, a new attempt applies only that. `writ serve` and `run-due`
//!   resume such changes on their own ([`Engine::resume_stranded`]).
//! - **Read before writing.** Every target is read before the attempt starts (the evidence of
//!   the state before); a target that cannot be read is not written in that attempt, which fails
//!   with its error, so a target that is down costs one timeout, not two.

use std::collections::BTreeMap;
use std::sync::mpsc;

use writ_connector::{ApplyContext, TargetOp};
use writ_core::change::{ChangeId, ChangeState, OpAction, OpOutcome, PlannedOp};
use writ_core::event::ChangeEventBody;
use writ_core::identity::{Actor, SystemActor};
use writ_core::machine::{Command, decide};
use writ_core::name::{EntitlementName, IdentityName};
use writ_core::time::Duration;
use writ_store::{ClaimOp, StoreError};

use crate::lifecycle::{grant_updates, group_by_target, summary_line, target_op};
use crate::{ChangeRecord, Engine, EngineError, Result, evidence};

/// How long an execution claim lasts unless renewed, when the engine is not told otherwise
/// ([`Engine::with_claim_ttl`]). The attempt renews it every third of this while it runs.
pub const DEFAULT_CLAIM_TTL: Duration = Duration::seconds(30);

/// The lease an attempt on `change` holds.
pub fn claim_name(change: &ChangeId) -> String {
    format!("execution:{change}")
}

/// What one pass of [`Engine::resume_stranded`] did.
#[derive(Clone, Debug, Default)]
pub struct Resumed {
    /// Changes whose cut-off attempt was recovered and that now stand in this state.
    pub resumed: Vec<(ChangeId, ChangeState)>,
    /// Changes that could not be resumed now, with the reason (they are tried again).
    pub errors: Vec<(ChangeId, String)>,
}

impl Engine {
    /// Implements an approved change on its targets. Every target is read first (evidence of
    /// the state before; a target that cannot be read is not written by this attempt); then
    /// `implementing` is committed with the execution claim, the connectors apply, and the
    /// outcome is committed with the apply results as evidence. Returns the record in
    /// `implemented` or, if a target failed, in `failed` with what was and was not applied;
    /// `execute` again (by the same executor or another) retries and applies only what is
    /// missing. A change cut off mid-attempt is recovered first (see the module documentation).
    pub fn execute(&self, id: &ChangeId, executor: Option<&IdentityName>) -> Result<ChangeRecord> {
        let executor = match executor {
            Some(name) => Actor::Identity(self.actor(name)?.name),
            None => Actor::System(SystemActor::Engine),
        };
        self.execute_as(self.load(id)?, executor)
    }

    pub(crate) fn execute_as(&self, record: ChangeRecord, executor: Actor) -> Result<ChangeRecord> {
        let record = if record.change.state == ChangeState::Implementing {
            let recovered = self.recover(record, &executor)?;
            if recovered.change.state != ChangeState::Failed {
                return Ok(recovered);
            }
            recovered
        } else {
            record
        };
        let id = record.change.id.clone();
        match self.attempt(record, executor.clone()) {
            // Someone else started (or moved the change) between our read and our commit: the
            // answer is what the change says now, decided again on a fresh read.
            Err(EngineError::Store(StoreError::Conflict(detail))) => {
                let fresh = self.load(&id)?;
                if fresh.change.state == ChangeState::Implementing {
                    return Err(self
                        .in_progress(&fresh)?
                        .unwrap_or(EngineError::Store(StoreError::Conflict(detail))));
                }
                decide(Some(&fresh.change), Command::StartExecution { executor }, self.clock.now())?;
                Err(EngineError::Store(StoreError::Conflict(detail)))
            }
            other => other,
        }
    }

    /// Resumes every change cut off mid-execution whose claim has ended: its attempt is
    /// recovered from the targets, what is missing is applied by a new attempt (as the engine),
    /// and the change is verified. Errors on one change do not stop the others.
    ///
    /// A change whose resumption failed (a target still down) is tried again after a backoff
    /// (1 s doubling up to 5 min, kept by this engine), so a target that is down does not hold
    /// up the other due work every second.
    pub fn resume_stranded(&self) -> Result<Resumed> {
        let mut report = Resumed::default();
        let now = self.clock.now();
        for summary in self.store.changes(Some(ChangeState::Implementing))? {
            let id = summary.id;
            let waiting = self.resume_backoff()?.get(&id).is_some_and(|(_, next)| now < *next);
            if waiting {
                continue;
            }
            let resumed = self.load(&id).and_then(|record| {
                if self.in_progress(&record)?.is_some() {
                    return Ok(None);
                }
                let mut record = self.execute_as(record, Actor::System(SystemActor::Engine))?;
                if record.change.state == ChangeState::Implemented {
                    record = self.verify(&id)?;
                }
                Ok(Some(record.change.state))
            });
            let mut backoff = self.resume_backoff()?;
            match resumed {
                Ok(Some(state)) => {
                    tracing::info!(target: "writ::engine", change = %id, state = %state, "cut-off execution resumed");
                    backoff.remove(&id);
                    report.resumed.push((id, state));
                }
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(target: "writ::engine", change = %id, code = error.code(), error = %error, "cut-off execution not resumed");
                    let failures = backoff.get(&id).map_or(0, |(n, _)| *n).saturating_add(1);
                    let wait = 1_000_i64.saturating_mul(1 << failures.min(9)).min(300_000);
                    backoff.insert(
                        id.clone(),
                        (
                            failures,
                            self.clock.now().plus(Duration::from_millis(wait).unwrap_or(DEFAULT_CLAIM_TTL)),
                        ),
                    );
                    report.errors.push((id, error.to_string()));
                }
            }
        }
        Ok(report)
    }

    fn resume_backoff(
        &self,
    ) -> Result<std::sync::MutexGuard<'_, BTreeMap<ChangeId, (u32, writ_core::time::Timestamp)>>> {
        Ok(self
            .resume_backoff
            .lock()
            .map_err(|_| StoreError::Other("resume backoff lock poisoned".into()))?)
    }

    /// `state.execution_in_progress` if an attempt on this `implementing` change holds a live
    /// claim: as renewed in the store, and at least for the first term its event recorded;
    /// `None` if its claim has ended (or it never had one).
    fn in_progress(&self, record: &ChangeRecord) -> Result<Option<EngineError>> {
        let now = self.clock.now();
        let recorded = record.events.iter().rev().find_map(|(_, e)| match e.body {
            ChangeEventBody::ExecutionStarted { claimed_until, .. } => Some(claimed_until),
            _ => None,
        });
        let renewed = self.store.lease(&claim_name(&record.change.id))?.map(|(_, until)| until);
        let until = recorded.flatten().into_iter().chain(renewed).max();
        let live = until.filter(|until| *until >= now);
        Ok(live.map(|until| {
            let last = record.change.last_execution();
            EngineError::InProgress {
                change: record.change.id.clone(),
                attempt: record.change.executions.len(),
                executor: last.map(|e| e.executor.to_string()).unwrap_or_default(),
                until,
            }
        }))
    }

    /// One attempt: read every target, commit `implementing` with the claim, apply, commit the
    /// outcome and give the claim up.
    fn attempt(&self, record: ChangeRecord, executor: Actor) -> Result<ChangeRecord> {
        // Refuse before touching anything if the rules say no: the core's floor, then policy
        // evaluated again with today's policy and registry.
        decide(
            Some(&record.change),
            Command::StartExecution { executor: executor.clone() },
            self.clock.now(),
        )?;
        self.receivers_active(&record.change)?;
        self.automation_allows(&record.change)?;
        let stamp = self.check_execution(&record, &executor)?;
        let mut before = serde_json::Map::new();
        // A target whose state before cannot be read is not written in this attempt: its
        // error is the attempt's, without waiting for it a second time.
        let mut unreadable = BTreeMap::new();
        for (target, group) in group_by_target(&record.change.ops) {
            let target_ops: Vec<TargetOp> = group.iter().map(|(_, op)| target_op(op)).collect();
            let plan = self.connector_for(&target).and_then(|connector| Ok(connector.plan(&target_ops)?));
            let value = match plan {
                Ok(plan) => evidence::plan_json(&plan),
                Err(error) => {
                    let value = serde_json::json!({ "error": error.to_string() });
                    unreadable.insert(target.clone(), error);
                    value
                }
            };
            before.insert(target.to_string(), value);
        }
        let ends = self.grant_ends(&record.change)?;
        let mut captured = evidence::Captured::default();
        captured.json("observed-before", &serde_json::json!({ "targets": before }));
        let holder = format!("{}-{:032x}", std::process::id(), crate::random_bits()?);
        let name = claim_name(&record.change.id);
        let now = self.clock.now();
        let until = now.plus(self.claim_ttl);
        let claim = ClaimOp::Take { name: name.clone(), holder: holder.clone(), now, until };
        let mut events =
            decide(Some(&record.change), Command::StartExecution { executor: executor.clone() }, now)?;
        if let Some(first) = events.first_mut() {
            first.policy = stamp;
            // The ledger keeps the claim's first term: no table edit can end it sooner.
            if let ChangeEventBody::ExecutionStarted { claimed_until, .. } = &mut first.body {
                *claimed_until = Some(until);
            }
        }
        captured.attach(events.first_mut());
        let started = self.commit_claimed(&record, events, Vec::new(), captured, Some(claim))?;
        let change = &started.change;
        let context = |target_ops: &[(usize, &PlannedOp)]| ApplyContext {
            change: change.id.clone(),
            summary: summary_line(change, target_ops),
            requester: change.requester.to_string(),
            approvers: change.approvals.iter().map(|a| a.approver.to_string()).collect(),
            executor: executor.to_string(),
            at: self.clock.now(),
        };
        let (outcomes, error, results) = self.renewing(&name, &holder, || {
            let mut outcomes = Vec::new();
            let mut error = None;
            let mut results = serde_json::Map::new();
            for (target, group) in group_by_target(&change.ops) {
                let target_ops: Vec<TargetOp> = group
                    .iter()
                    .map(|(index, op)| TargetOp { ttl: op.duration.or(ends.get(index).copied()), ..target_op(op) })
                    .collect();
                let applied = match unreadable.remove(&target) {
                    Some(error) => Err(error),
                    None => self
                        .connector_for(&target)
                        .and_then(|connector| Ok(connector.apply(&context(&group), &target_ops)?)),
                };
                match applied {
                    Ok(report) => {
                        results.insert(target.to_string(), evidence::apply_json(&report));
                        for ((index, _), applied) in group.iter().zip(report.applied) {
                            outcomes.push(OpOutcome {
                                op: *index,
                                before: applied.before,
                                after: applied.after,
                                reference: report.reference.clone(),
                            });
                        }
                    }
                    Err(e) => {
                        tracing::warn!(target: "writ::engine", change = %change.id, target_name = %target, error = %e, "apply failed");
                        results.insert(target.to_string(), serde_json::json!({ "error": e.to_string() }));
                        error = Some(format!("{target}: {e}"));
                        break;
                    }
                }
            }
            (outcomes, error, results)
        });
        let mut outcomes = outcomes;
        outcomes.sort_by_key(|o| o.op);
        let now = self.clock.now();
        let grants = grant_updates(change, &outcomes, now);
        let wrote = outcomes.iter().any(|o| o.before != o.after) || error.is_some();
        let written: Vec<String> = outcomes.iter().filter_map(|o| o.reference.clone()).collect();
        let mut events = decide(Some(change), Command::RecordImplementation { outcomes, error }, now)?;
        let mut captured = evidence::Captured::default();
        captured.json("apply-result", &serde_json::json!({ "targets": results }));
        captured.attach(events.first_mut());
        let release = ClaimOp::Release { name, holder };
        match self.commit_claimed(&started, events, grants, captured, Some(release)) {
            Ok(done) => Ok(done),
            // The targets may hold what this attempt did while the record does not say so: not
            // "nothing written". The claim ends on its own and the attempt is recovered then.
            Err(EngineError::Store(error)) if wrote => Err(EngineError::OutcomeUnrecorded {
                change: change.id.clone(),
                written: if written.is_empty() { "see the targets".to_owned() } else { written.join(", ") },
                until: now.plus(self.claim_ttl),
                error,
            }),
            Err(error) => Err(error),
        }
    }

    /// Runs `work` while renewing the claim `name` every third of its term; stops renewing when
    /// `work` returns.
    fn renewing<T: Send>(&self, name: &str, holder: &str, work: impl FnOnce() -> T + Send) -> T {
        let (stop, stopped) = mpsc::channel::<()>();
        let every = std::time::Duration::from_millis(
            u64::try_from(self.claim_ttl.as_millis() / 3).unwrap_or(1).max(1),
        );
        std::thread::scope(|scope| {
            // Owned here, so that `work` panicking (a dying attempt) drops it and the renewer
            // stops before the scope waits for it.
            let stop = stop;
            scope.spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                    let now = self.clock.now();
                    match self.store.acquire_lease(name, holder, now, now.plus(self.claim_ttl)) {
                        Ok(true) => {}
                        Ok(false) => {
                            tracing::warn!(target: "writ::engine", claim = name, "execution claim lost: another attempt took over");
                            break;
                        }
                        Err(error) => {
                            tracing::warn!(target: "writ::engine", claim = name, error = %error, "execution claim not renewed");
                        }
                    }
                }
            });
            let result = work();
            let _ = stop.send(());
            result
        })
    }

    /// Records the outcome of the cut-off attempt of an `implementing` change whose claim has
    /// ended, from what the targets show now (see the module documentation). Refused with
    /// `state.execution_in_progress` while its claim is live; fails with nothing recorded if a
    /// target cannot be read.
    fn recover(&self, record: ChangeRecord, recoverer: &Actor) -> Result<ChangeRecord> {
        if let Some(busy) = self.in_progress(&record)? {
            return Err(busy);
        }
        let change = &record.change;
        let before = self.observed_before(&record)?;
        // A write an earlier attempt already reported is not the cut-off attempt's.
        let known: Vec<&str> = change
            .executions
            .iter()
            .flat_map(|e| e.outcomes.iter().filter_map(|o| o.reference.as_deref()))
            .collect();
        let mut outcomes = Vec::with_capacity(change.ops.len());
        let mut seen = serde_json::Map::new();
        for (target, group) in group_by_target(&change.ops) {
            let connector = self.connector_for(&target)?;
            let entitlements: Vec<EntitlementName> =
                group.iter().map(|(_, op)| op.entitlement.entitlement.clone()).collect();
            let target_ops: Vec<TargetOp> = group.iter().map(|(_, op)| target_op(op)).collect();
            let observed = connector.observe(&entitlements)?;
            let stamped =
                connector.stamped(&change.id, &target_ops)?.filter(|s| !known.contains(&s.as_str()));
            seen.insert(
                target.to_string(),
                serde_json::json!({ "observed": evidence::observed_json(&observed), "stamped": stamped }),
            );
            for (index, op) in group {
                let present = match op.action {
                    OpAction::Rotate => {
                        observed.rotated_by(&op.entitlement.entitlement, &op.identity, &change.id)
                    }
                    OpAction::Grant | OpAction::Revoke => {
                        observed.is_member(&op.entitlement.entitlement, &op.identity)
                    }
                };
                outcomes.push(OpOutcome {
                    op: index,
                    before: before.get(&index).copied().unwrap_or(present),
                    after: present,
                    reference: stamped.clone(),
                });
            }
        }
        outcomes.sort_by_key(|o| o.op);
        let in_effect = outcomes
            .iter()
            .filter(|o| change.ops.get(o.op).is_some_and(|op| o.after == op.action.leaves_present()))
            .count();
        let attempt = change.executions.len();
        let error = (in_effect < change.ops.len()).then(|| {
            format!(
                "attempt {attempt} was cut off before its outcome was recorded; {in_effect} of {} operations are in effect",
                change.ops.len()
            )
        });
        let now = self.clock.now();
        let grants = grant_updates(change, &outcomes, now);
        let command = Command::RecoverAttempt { recoverer: recoverer.clone(), outcomes, error };
        let mut events = decide(Some(change), command, now)?;
        let mut captured = evidence::Captured::default();
        captured.json("recovered", &serde_json::json!({ "attempt": attempt, "targets": seen }));
        captured.attach(events.first_mut());
        tracing::warn!(target: "writ::engine", change = %change.id, attempt, in_effect, "cut-off attempt recovered from the targets");
        self.commit_claimed(&record, events, grants, captured, None)
    }

    /// What the attempt in progress observed before it wrote, per operation (from its
    /// `observed-before` evidence); empty if that evidence cannot be read.
    fn observed_before(&self, record: &ChangeRecord) -> Result<BTreeMap<usize, bool>> {
        let mut found = BTreeMap::new();
        let Some(started) = record
            .events
            .iter()
            .rev()
            .find(|(_, e)| matches!(e.body, ChangeEventBody::ExecutionStarted { .. }))
        else {
            return Ok(found);
        };
        let Some(reference) = started.1.evidence.iter().find(|r| r.label == "observed-before") else {
            return Ok(found);
        };
        let Some(blob) = self.store.evidence(&reference.digest)? else { return Ok(found) };
        let Ok(document) = serde_json::from_slice::<serde_json::Value>(&blob.bytes) else { return Ok(found) };
        for (target, group) in group_by_target(&record.change.ops) {
            let steps = document.pointer(&format!("/targets/{target}")).and_then(|v| v.as_array());
            for (index, op) in group {
                let step = steps.into_iter().flatten().find(|step| {
                    step.get("entitlement").and_then(|v| v.as_str())
                        == Some(op.entitlement.entitlement.as_str())
                        && step.get("member").and_then(|v| v.as_str()) == Some(op.identity.as_str())
                });
                if let Some(present) = step.and_then(|s| s.get("present_now")).and_then(|v| v.as_bool()) {
                    found.insert(index, present);
                }
            }
        }
        Ok(found)
    }

    /// [`Engine::commit`] of `events` on `record`, with a claim step in the same transaction.
    fn commit_claimed(
        &self,
        record: &ChangeRecord,
        events: Vec<writ_core::event::ChangeEvent>,
        grants: Vec<writ_store::GrantUpdate>,
        captured: evidence::Captured,
        claim: Option<ClaimOp>,
    ) -> Result<ChangeRecord> {
        let committed = self.commit_with(Some(&record.change), events, grants, captured, claim)?;
        let mut history = record.events.clone();
        history.extend(committed.events);
        Ok(ChangeRecord { change: committed.change, events: history })
    }
}
