//! The view of one change: who asked, who approved, who executed, what changed on the target,
//! and whether the observed state was the approved state. The server answers it, the CLI prints
//! it with `--json` and renders its text from it (`text::trail`), and the OpenAPI document
//! states its schema.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use writ_core::change::{Change, ChangeState, OpAction};
use writ_engine::ChangeRecord;

use super::{DeliveryView, EvidenceView, event_detail, text};

#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, PartialEq)]
pub struct ChangeView {
    pub id: String,
    pub kind: String,
    pub state: String,
    /// The business event (joiner, mover, leaver, …).
    pub event: String,
    pub requester: String,
    pub created_at: String,
    pub on_behalf_of: Option<String>,
    pub vendor: Option<String>,
    pub justification: String,
    /// The change whose time-bound access this one ends.
    pub origin: Option<String>,
    pub alert: Option<String>,
    pub references: Vec<ReferenceView>,
    pub deliveries: Vec<DeliveryView>,
    pub required_approvals: u8,
    pub policy: Option<PolicyView>,
    pub escalated: Option<EscalationView>,
    pub emergency: Option<EmergencyView>,
    /// The maintenance window the change must be carried out in, if it has one or policy
    /// demanded one.
    #[serde(default)]
    pub window: Option<WindowView>,
    /// Comments by people and from tickets, in the order they were recorded.
    #[serde(default)]
    pub comments: Vec<CommentView>,
    /// The person who answers for undoing the change.
    #[serde(default)]
    pub rollback_owner: Option<String>,
    /// For a rollback: the change it undoes.
    #[serde(default)]
    pub rollback_of: Option<String>,
    /// The rollbacks of this change and each step they reached, as noted on it.
    #[serde(default)]
    pub rollbacks: Vec<RollbackView>,
    /// The legal hold on the change, if one is in force: nothing of it is erased.
    #[serde(default)]
    pub legal_hold: Option<LegalHoldView>,
    /// What retention erased of it.
    #[serde(default)]
    pub erasures: Vec<ErasureView>,
    pub operations: Vec<OperationView>,
    pub approvals: Vec<ApprovalView>,
    pub executions: Vec<ExecutionView>,
    pub verification: Option<VerificationView>,
    pub closing: Option<ClosingView>,
    pub answers: AnswersView,
    pub events: Vec<EventView>,
    /// Who was told of the change's steps, over which channel, and whether it got through.
    #[serde(default)]
    pub notifications: Vec<super::NotificationView>,
}

/// A ticket, commit, pull request or other system's record the change is linked to.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, PartialEq)]
pub struct ReferenceView {
    pub kind: String,
    pub value: String,
}

impl ReferenceView {
    pub fn of(reference: &writ_core::change::ExternalRef) -> ReferenceView {
        ReferenceView { kind: reference.kind.as_str().to_owned(), value: reference.value().to_owned() }
    }
}

#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, PartialEq)]
pub struct PolicyView {
    pub tier: String,
    pub slots: Vec<String>,
    pub escalate_at: Option<String>,
    pub escalate_to: Option<String>,
    pub review_required: bool,
}

/// A change's maintenance window: UTC instants and the zone it was given in. `applies` is false
/// for a break-glass change, which ignores windows (`demanded_by`: the rules it waived).
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, PartialEq)]
pub struct WindowView {
    pub start: Option<String>,
    pub end: Option<String>,
    pub zone: Option<String>,
    pub applies: bool,
    pub demanded_by: Vec<String>,
}

impl WindowView {
    pub fn of(change: &writ_core::change::Change) -> Option<WindowView> {
        let demanded_by = change.controls.as_ref().map(|c| c.window_rules.clone()).unwrap_or_default();
        if change.window.is_none() && demanded_by.is_empty() {
            return None;
        }
        let window = change.window.as_ref();
        Some(WindowView {
            start: window.map(|w| w.start.to_rfc3339()),
            end: window.map(|w| w.end.to_rfc3339()),
            zone: window.map(|w| w.zone.clone()),
            applies: change.emergency.is_none() && window.is_some(),
            demanded_by,
        })
    }
}

/// A legal hold in force: who placed it, when, why.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, PartialEq)]
pub struct LegalHoldView {
    pub by: String,
    pub at: String,
    pub reason: String,
}

/// One erasure under retention: the rule, when, how many sealed values lost their clear text,
/// and the digests of the evidence blobs deleted.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, PartialEq)]
pub struct ErasureView {
    pub class: String,
    pub rule: String,
    pub at: String,
    pub values: u32,
    pub blobs: Vec<String>,
}

/// A rollback of a change and one step it reached.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, PartialEq)]
pub struct RollbackView {
    pub change: String,
    /// `requested`, `approved`, `executed`, `verified`, `failed` or `closed`.
    pub step: String,
    pub at: String,
}

/// A comment: who wrote it and when, at which step, and for one from a ticket, its source, its
/// id there, the account that wrote it and when it was written there.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, PartialEq)]
pub struct CommentView {
    pub seq: u64,
    pub at: String,
    pub author: String,
    pub step: String,
    pub text: String,
    pub source: Option<String>,
    pub external_id: Option<String>,
    pub account: Option<String>,
    pub written_at: Option<String>,
    pub late: bool,
}

impl CommentView {
    pub fn of(comment: &writ_core::change::Comment) -> CommentView {
        let source = comment.source.as_ref();
        CommentView {
            seq: comment.seq,
            at: comment.at.to_rfc3339(),
            author: comment.author.to_string(),
            step: comment.step.as_str().to_owned(),
            text: comment.text.clone(),
            source: source.map(|s| s.source.to_string()),
            external_id: source.map(|s| s.id.clone()),
            account: source.and_then(|s| s.account.clone()),
            written_at: source.map(|s| s.written_at.to_rfc3339()),
            late: comment.late,
        }
    }
}

#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, PartialEq)]
pub struct EscalationView {
    pub at: String,
    pub to: String,
}

#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, PartialEq)]
pub struct EmergencyView {
    pub declared_at: String,
    pub approval_due: String,
    pub post_hoc_approvals_needed: u8,
    /// `pending`, `in_time`, `late` or `missed`.
    pub post_hoc_approval: String,
}

impl EmergencyView {
    /// A break-glass change's deadline and how its after-the-fact approval stands; `None` for
    /// any other change.
    pub fn of(change: &writ_core::change::Change) -> Option<EmergencyView> {
        change.emergency.map(|e| EmergencyView {
            declared_at: e.declared_at.to_rfc3339(),
            approval_due: e.approval_due.to_rfc3339(),
            post_hoc_approvals_needed: change.requirement.approvals,
            post_hoc_approval: if !change.awaits_post_hoc_approval() {
                if change.approvals.iter().all(|a| a.at <= e.approval_due) { "in_time" } else { "late" }
            } else if change.alert.is_some() {
                "missed"
            } else {
                "pending"
            }
            .to_owned(),
        })
    }
}

/// One operation: what was approved, the target before and after the execution, and what
/// verification observed.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, PartialEq)]
pub struct OperationView {
    pub action: String,
    pub identity: String,
    pub target: String,
    pub entitlement: String,
    pub duration: Option<String>,
    /// `present`, `absent` or `rotated`.
    pub approved_state: String,
    pub before: Option<String>,
    pub after: Option<String>,
    /// The target's own reference of the write (a commit, a lease).
    pub target_reference: Option<String>,
    pub observed: Option<String>,
}

#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, PartialEq)]
pub struct ApprovalView {
    pub approver: String,
    pub on_behalf_of: Option<String>,
    pub at: String,
    pub expires_at: String,
    pub slot: Option<String>,
    pub post_hoc: bool,
    pub late: Option<bool>,
}

#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, PartialEq)]
pub struct ExecutionView {
    pub executor: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub error: Option<String>,
    /// The attempt was cut off; its outcome was read from the targets by a later one.
    pub recovered: bool,
    /// The writes on the targets this attempt made (commits, audit rows), as they were found.
    pub writes: Vec<String>,
}

#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, PartialEq)]
pub struct VerificationView {
    pub at: String,
    pub matches_approved_state: bool,
    pub mismatched_operations: Vec<usize>,
    pub residual_access: Vec<HoldingView>,
}

/// Access an identity still holds.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, PartialEq)]
pub struct HoldingView {
    pub identity: String,
    pub target: String,
    pub entitlement: String,
}

#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, PartialEq)]
pub struct ClosingView {
    pub actor: String,
    pub at: String,
    pub reason: String,
}

/// The answers the record exists to give.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, PartialEq)]
pub struct AnswersView {
    pub who_asked: String,
    pub who_approved: Vec<String>,
    pub who_executed: Vec<String>,
    pub observed_equals_approved: Option<bool>,
    pub reviewed_by: Option<String>,
}

/// One event of the change's trail, with its ledger index and the smallest signed checkpoint
/// that covers it.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, PartialEq)]
pub struct EventView {
    pub index: u64,
    pub checkpoint: Option<u64>,
    pub seq: u64,
    pub at: String,
    pub phase: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub actor: String,
    pub on_behalf_of: Option<String>,
    pub detail: String,
    pub evidence: Vec<EvidenceView>,
    pub policy: Option<PolicyStampView>,
}

#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, PartialEq)]
pub struct PolicyStampView {
    pub hash: String,
    pub rules: Vec<String>,
    pub slot: Option<String>,
}

/// Membership of each operation before the first and after the last execution.
fn before_after(change: &Change, op: usize) -> Option<(bool, bool, Option<String>)> {
    let outcomes: Vec<_> =
        change.executions.iter().flat_map(|e| e.outcomes.iter()).filter(|o| o.op == op).collect();
    let first = outcomes.first()?;
    let last = outcomes.last()?;
    let reference = outcomes.iter().rev().find_map(|o| o.reference.clone());
    Some((first.before, last.after, reference))
}

/// The smallest checkpoint size that covers event `index`, if any.
fn covering(checkpoints: &[u64], index: u64) -> Option<u64> {
    checkpoints.iter().copied().filter(|size| *size > index).min()
}

fn presence(present: bool) -> String {
    if present { "present" } else { "absent" }.to_owned()
}

impl ChangeView {
    /// The view of `record`; `checkpoints` are the sizes of the signed checkpoints.
    pub fn of(record: &ChangeRecord, checkpoints: &[u64]) -> ChangeView {
        let change = &record.change;
        let matches = |v: &writ_core::change::Verification| v.mismatches.is_empty() && v.residual.is_empty();
        let reviewed = change.state == ChangeState::Reviewed;
        ChangeView {
            id: change.id.to_string(),
            kind: change.kind.as_str().to_owned(),
            state: change.state.as_str().to_owned(),
            event: change.event.as_str().to_owned(),
            requester: change.requester.to_string(),
            created_at: change.created_at.to_rfc3339(),
            on_behalf_of: text(&change.on_behalf_of),
            vendor: text(&change.vendor),
            justification: change.justification.as_str().to_owned(),
            origin: text(&change.origin),
            alert: change.alert.clone(),
            references: change.refs.iter().map(ReferenceView::of).collect(),
            deliveries: change
                .links
                .iter()
                .map(|l| DeliveryView::of(&l.delivery, Some((l.seq, l.late))))
                .collect(),
            required_approvals: change.requirement.approvals,
            policy: change.controls.as_ref().map(|c| PolicyView {
                tier: c.tier.clone(),
                slots: c.slots.clone(),
                escalate_at: c.escalate_at.map(|t| t.to_rfc3339()),
                escalate_to: c.escalate_to.clone(),
                review_required: c.review_required,
            }),
            escalated: change
                .escalated
                .as_ref()
                .map(|(at, to)| EscalationView { at: at.to_rfc3339(), to: to.clone() }),
            emergency: EmergencyView::of(change),
            window: WindowView::of(change),
            comments: change.comments.iter().map(CommentView::of).collect(),
            rollback_owner: change.rollback_owner.as_ref().map(ToString::to_string),
            rollback_of: change.rollback_of.as_ref().map(|r| r.origin.to_string()),
            legal_hold: change.legal_hold.as_ref().map(|h| LegalHoldView {
                by: h.by.to_string(),
                at: h.at.to_rfc3339(),
                reason: h.reason.clone(),
            }),
            erasures: change
                .erasures
                .iter()
                .map(|e| ErasureView {
                    class: e.class.as_str().to_owned(),
                    rule: e.rule.clone(),
                    at: e.at.to_rfc3339(),
                    values: e.values,
                    blobs: e.blobs.iter().map(|b| b.iter().map(|x| format!("{x:02x}")).collect()).collect(),
                })
                .collect(),
            rollbacks: change
                .rollbacks
                .iter()
                .map(|n| RollbackView {
                    change: n.rollback.to_string(),
                    step: n.step.as_str().to_owned(),
                    at: n.at.to_rfc3339(),
                })
                .collect(),
            operations: operations(change),
            approvals: change
                .approvals
                .iter()
                .map(|a| ApprovalView {
                    approver: a.approver.to_string(),
                    on_behalf_of: text(&a.on_behalf_of),
                    at: a.at.to_rfc3339(),
                    expires_at: a.expires_at.to_rfc3339(),
                    slot: a.slot.clone(),
                    post_hoc: change.emergency.is_some(),
                    late: change.emergency.map(|e| a.at > e.approval_due),
                })
                .collect(),
            executions: change
                .executions
                .iter()
                .map(|e| ExecutionView {
                    executor: e.executor.to_string(),
                    started_at: e.started_at.to_rfc3339(),
                    finished_at: e.finished_at.map(|t| t.to_rfc3339()),
                    error: e.error.clone(),
                    recovered: e.recovered,
                    writes: {
                        let mut writes: Vec<String> =
                            e.outcomes.iter().filter_map(|o| o.reference.clone()).collect();
                        writes.dedup();
                        writes
                    },
                })
                .collect(),
            verification: change.verification.as_ref().map(|v| VerificationView {
                at: v.at.to_rfc3339(),
                matches_approved_state: matches(v),
                mismatched_operations: v.mismatches.clone(),
                residual_access: v
                    .residual
                    .iter()
                    .map(|h| HoldingView {
                        identity: h.identity.to_string(),
                        target: h.entitlement.target.to_string(),
                        entitlement: h.entitlement.entitlement.to_string(),
                    })
                    .collect(),
            }),
            closing: change.closing.as_ref().map(|c| ClosingView {
                actor: c.actor.to_string(),
                at: c.at.to_rfc3339(),
                reason: c.reason.clone(),
            }),
            answers: AnswersView {
                who_asked: change.requester.to_string(),
                who_approved: change.approvals.iter().map(|a| a.approver.to_string()).collect(),
                who_executed: change.executions.iter().map(|e| e.executor.to_string()).collect(),
                observed_equals_approved: change.verification.as_ref().map(matches),
                reviewed_by: if reviewed {
                    change.closing.as_ref().map(|c| c.actor.to_string())
                } else {
                    None
                },
            },
            events: record
                .events
                .iter()
                .map(|(index, e)| EventView {
                    index: *index,
                    checkpoint: covering(checkpoints, *index),
                    seq: e.seq,
                    at: e.at.to_rfc3339(),
                    phase: e.body.phase().as_str().to_owned(),
                    kind: e.body.type_name().to_owned(),
                    actor: e.actor.to_string(),
                    on_behalf_of: text(&e.on_behalf_of),
                    detail: event_detail(e, change.emergency.is_some()),
                    evidence: e.evidence.iter().map(EvidenceView::of).collect(),
                    policy: e.policy.as_ref().map(|p| PolicyStampView {
                        hash: p.hash.clone(),
                        rules: p.rules.clone(),
                        slot: p.slot.clone(),
                    }),
                })
                .collect(),
            notifications: Vec::new(),
        }
    }

    /// The view with the change's notifications (the store's outbox rows), oldest first.
    pub fn with_notifications(mut self, notifications: &[writ_core::notify::Notification]) -> ChangeView {
        self.notifications = notifications.iter().rev().map(super::NotificationView::of).collect();
        self
    }
}

fn operations(change: &Change) -> Vec<OperationView> {
    change
        .ops
        .iter()
        .enumerate()
        .map(|(index, op)| {
            let applied = before_after(change, index);
            let observed = change
                .verification
                .as_ref()
                .and_then(|v| v.observations.iter().find(|o| o.op == index))
                .map(|o| o.present);
            OperationView {
                action: op.action.as_str().to_owned(),
                identity: op.identity.to_string(),
                target: op.entitlement.target.to_string(),
                entitlement: op.entitlement.entitlement.to_string(),
                duration: op.duration.map(|d| d.to_string()),
                approved_state: match op.action {
                    OpAction::Grant => "present",
                    OpAction::Revoke => "absent",
                    OpAction::Rotate => "rotated",
                }
                .to_owned(),
                before: applied.as_ref().map(|a| presence(a.0)),
                after: applied.as_ref().map(|a| presence(a.1)),
                target_reference: applied.and_then(|a| a.2),
                observed: observed.map(presence),
            }
        })
        .collect()
}
