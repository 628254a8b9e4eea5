//! Break-glass and the deadlines the scheduler keeps.
//!
//! A person policy lets break glass (Cedar's `breakglass` action) gets short, time-bound access
//! at once: the change opens as `change.requested` + `change.breakglass` (emergency, authorised
//! to execute), is executed by that person and verified in the same call, and ends by itself
//! when its duration (at most `[breakglass] max_duration`) is over, through the expiry
//! scheduler. Someone else must approve it after the fact by `approval_due` (the workflow
//! rules decide how many approvals and from whom, as for any change), and it must be reviewed;
//! a review is refused until the post-hoc approvals are in. A missed deadline opens the finding
//! `breakglass.approval_missed` and puts an alert on the change; a late approval resolves the
//! finding (both stay in the ledger).
//!
//! [`Engine::deadlines_due`] is the scheduler's pass over every change with a deadline due
//! (the store keeps each change's next deadline, see `Change::next_deadline`): escalations of
//! pending approvals and missed break-glass approvals.

use writ_core::change::{BusinessEvent, ChangeId, ChangeState, ExternalRef, Justification, OpAction};
use writ_core::event::PolicyStamp;
use writ_core::identity::Actor;
use writ_core::machine::{Command, NewChange, decide};
use writ_core::name::IdentityName;
use writ_policy::{Act, Denial};

use crate::{ChangeRecord, Engine, PASS_LIMIT, RequestedOp, Result, evidence, policy};

/// The finding a missed post-hoc approval opens.
pub const APPROVAL_MISSED: &str = "breakglass.approval_missed";

/// A break-glass request: who breaks glass, what they get, and why.
#[derive(Clone, Debug)]
pub struct BreakGlassInput {
    pub actor: IdentityName,
    /// Grants only; a missing duration means the policy's `[breakglass] max_duration`.
    pub ops: Vec<RequestedOp>,
    pub reason: Justification,
    pub refs: Vec<ExternalRef>,
}

/// What one pass over due deadlines did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Deadlines {
    /// Pending approvals escalated: (change, escalation target).
    pub escalated: Vec<(ChangeId, String)>,
    /// Break-glass changes whose post-hoc approval deadline passed: (change, finding id).
    pub overdue: Vec<(ChangeId, String)>,
    /// Changes the pass could not work on, with the reason; they stay due.
    pub errors: Vec<(ChangeId, String)>,
    /// What the pass did to exceptions (expiries, and the findings they reopened).
    pub exceptions: crate::exceptions::ExceptionPass,
    /// Refused deliveries counted in windows that ended (see `Engine::count_refusals`).
    pub refusals_counted: u64,
}

impl Engine {
    /// Breaks glass (see the module documentation). Returns the change as the immediate
    /// execution and verification left it (`verified`, or `failed` with the target's error:
    /// `execute` again retries).
    pub fn breakglass(&self, input: BreakGlassInput, random: u128) -> Result<ChangeRecord> {
        let now = self.now();
        let policy = self.policy()?;
        let limits = policy.rules().breakglass;
        let requester = self.actor(&input.actor)?;
        let mut ops = Vec::with_capacity(input.ops.len());
        for op in input.ops {
            if op.action != OpAction::Grant {
                return Err(writ_core::Refusal::BreakGlassScope {
                    detail: format!("{} is not a grant", op.entitlement),
                }
                .into());
            }
            let duration = op.duration.unwrap_or(limits.max_duration);
            if duration > limits.max_duration {
                return Err(Denial {
                    code: "breakglass.duration_exceeded",
                    rule: None,
                    reason: format!(
                        "break-glass access lasts at most {} under the policy in force; {duration} was asked",
                        limits.max_duration
                    ),
                }
                .into());
            }
            ops.push(RequestedOp { duration: Some(duration), ..op });
        }
        let (ops, subjects, plans) = self.resolve_ops(ops)?;
        let facts = writ_policy::ChangeFacts {
            emergency: true,
            ..policy::requested_facts(BusinessEvent::Incident, &requester, None, &input.refs, &ops, &subjects)
        };
        let permits = policy
            .authorize(Act::Breakglass, &policy::person_of(&requester), &facts, None)
            .map_err(|denial| Denial {
                reason: format!("{} may not break glass: {}", requester.name, denial.reason),
                ..denial
            })?;
        // The workflow rules decide the post-hoc approvals as for any change; review is a must.
        let (requirement, controls, validation) = policy::validated(&policy, &facts, now)?;
        let rollback_owner = self.rollback_owner_for(&policy, None, &requester, &ops, &subjects)?;
        let controls = writ_core::change::Controls {
            review_required: true,
            escalate_at: None,
            escalate_to: None,
            ..controls
        };
        let new = NewChange {
            window: None,
            rollback_owner: Some(rollback_owner),
            rollback_of: None,
            id: ChangeId::generate(now, random),
            requester: requester.clone(),
            on_behalf_of: None,
            event: BusinessEvent::Incident,
            refs: input.refs,
            justification: input.reason,
            ops,
            subjects,
            requirement,
            controls: Some(controls),
        };
        let approval_due = now.plus(limits.approval_deadline);
        let mut events = decide(None, Command::BreakGlass { new: Box::new(new), approval_due }, now)?;
        if let Some(declared) = events.get_mut(1) {
            let mut rules = permits;
            rules.extend(validation.rules);
            declared.policy = Some(PolicyStamp { hash: policy.hash().to_owned(), rules, slot: None });
        }
        let mut captured = evidence::Captured::default();
        captured.json("connector-plan", &serde_json::json!({ "targets": plans }));
        captured.attach(events.first_mut());
        let record = self.commit(None, events, Vec::new(), captured)?;
        tracing::warn!(target: "writ::engine", change = %record.change.id, actor = %requester.name, due = %approval_due, "glass broken");
        let id = record.change.id.clone();
        let record = self.execute_as(record, Actor::Identity(requester.name))?;
        if record.change.state == ChangeState::Implemented { self.verify(&id) } else { Ok(record) }
    }

    /// Works every change whose deadline is due (see the module documentation). Errors on
    /// one change are reported and do not stop the others.
    pub fn deadlines_due(&self) -> Result<Deadlines> {
        let now = self.now();
        let mut report = Deadlines::default();
        for id in self.store.due_changes(now, PASS_LIMIT)? {
            if let Err(error) = self.drive_deadline(&id, &mut report) {
                tracing::warn!(target: "writ::engine", change = %id, error = %error, "deadline not handled");
                report.errors.push((id, error.to_string()));
            }
        }
        report.exceptions = self.exceptions_due()?;
        report.refusals_counted = self.count_refusals()?;
        Ok(report)
    }

    fn drive_deadline(&self, id: &ChangeId, report: &mut Deadlines) -> Result<()> {
        let now = self.now();
        let record = self.load(id)?;
        let change = &record.change;
        let escalation = change
            .controls
            .as_ref()
            .filter(|_| change.state == ChangeState::PendingApproval && change.escalated.is_none())
            .and_then(|c| Some((c.escalate_at?, c.escalate_to.clone()?)))
            .filter(|(at, _)| *at <= now);
        let overdue = change
            .emergency
            .filter(|e| change.awaits_post_hoc_approval() && change.alert.is_none() && e.approval_due <= now);
        if let Some((_, to)) = escalation {
            let policy = self.policy()?;
            let people =
                policy.escalation_people(&to).iter().filter_map(|p| IdentityName::parse(p).ok()).collect();
            self.transition_from(
                record,
                Command::Escalate { to: to.clone(), people },
                evidence::Captured::default(),
            )?;
            tracing::warn!(target: "writ::engine", change = %id, to = %to, "pending approval escalated");
            report.escalated.push((id.clone(), to));
        } else if let Some(emergency) = overdue {
            let need = usize::from(change.requirement.approvals);
            let detail = format!(
                "break-glass change {id} by {} (declared {}) has {} of {need} post-hoc approval(s); \
                 they were due by {}. Access ended or ends on its own; someone else must approve it \
                 after the fact, and it must be reviewed.",
                change.requester,
                emergency.declared_at,
                change.approvals.len(),
                emergency.approval_due
            );
            let finding = self.raise_finding(APPROVAL_MISSED, id.as_str(), Some(id.clone()), detail)?;
            let reason = format!(
                "post-hoc approval deadline {} passed without approval; finding {}",
                emergency.approval_due, finding.id
            );
            self.transition_from(record, Command::RaiseAlert { reason }, evidence::Captured::default())?;
            tracing::error!(target: "writ::engine", change = %id, finding = %finding.id, "break-glass approval missed");
            report.overdue.push((id.clone(), finding.id));
        } else {
            // Nothing to do now: the recorded deadline is stale (a change from before
            // deadlines were kept, or one already handled); keep the current one.
            self.store.reschedule(id, change.seq, change.next_deadline())?;
        }
        Ok(())
    }

    /// After a post-hoc approval completes a break-glass change, resolves its missed-deadline
    /// finding if one was opened.
    pub(crate) fn settle_breakglass(&self, record: &ChangeRecord, approver: &IdentityName) -> Result<()> {
        let change = &record.change;
        if change.emergency.is_none() || change.awaits_post_hoc_approval() {
            return Ok(());
        }
        let note = format!("approved late by {approver} at {}", self.now());
        self.resolve_if_open(Actor::Identity(approver.clone()), APPROVAL_MISSED, change.id.as_str(), note)
    }
}
