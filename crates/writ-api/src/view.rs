//! The views of the API: typed structs the server answers with, the CLI prints with `--json`
//! (stable field names) and reads back over `--server`, and the OpenAPI document states. The
//! text people read is rendered from them (`text`). The `*_json` functions are the same views
//! as JSON values, for the server's stored idempotent answers.
//!
//! A change's view answers, for one change: who asked, who approved, who executed, what changed,
//! and whether the observed state was the approved state.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use writ_core::event::{ChangeEvent, ChangeEventBody};
use writ_core::exception::Exception;
use writ_core::identity::{Identity, Target};
use writ_core::time::Timestamp;
use writ_engine::ChangeRecord;

mod change;
mod reconcile;
mod resources;
pub use change::*;
pub use reconcile::*;
pub use resources::*;

/// An optional name or time as the text a view holds.
fn text<T: ToString>(value: &Option<T>) -> Option<String> {
    value.as_ref().map(ToString::to_string)
}

pub fn identity_json(identity: &Identity) -> Value {
    to_json(&IdentityView::of(identity))
}

pub fn target_json(target: &Target) -> Value {
    to_json(&TargetView::of(target))
}

/// A list, whole.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, PartialEq)]
pub struct List<T> {
    pub items: Vec<T>,
}

/// One page of a paged list: its items and the cursor of the next page (null on the last).
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<String>,
}

/// The JSON of a change's view (see [`ChangeView`]).
pub fn change_json(record: &ChangeRecord, checkpoints: &[u64]) -> Value {
    to_json(&ChangeView::of(record, checkpoints))
}

/// A view as JSON. Views are plain structs of strings, numbers and lists, which always serialize.
pub fn to_json<T: serde::Serialize>(view: &T) -> Value {
    serde_json::to_value(view).unwrap_or(Value::Null)
}

/// A delivery from another system: where it came from, what it is about, the SHA-256 of the
/// bytes received; on a change, the change event that attached it and whether it was late.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, PartialEq)]
pub struct DeliveryView {
    pub source: String,
    pub id: String,
    pub event: String,
    pub object: Option<String>,
    pub version: Option<String>,
    pub sha256: String,
    pub received_at: String,
    pub references: Vec<ReferenceView>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub late: Option<bool>,
}

impl DeliveryView {
    /// The view of `d`; `link` is the change event that attached it and whether it was late.
    pub fn of(d: &writ_core::intake::Delivery, link: Option<(u64, bool)>) -> DeliveryView {
        DeliveryView {
            source: d.source.to_string(),
            id: d.id.clone(),
            event: d.event.clone(),
            object: d.object.clone(),
            version: d.version.map(|t| t.to_rfc3339()),
            sha256: d.sha256_hex(),
            received_at: d.received_at.to_rfc3339(),
            references: d.refs.iter().map(ReferenceView::of).collect(),
            seq: link.map(|l| l.0),
            late: link.map(|l| l.1),
        }
    }
}

/// A delivery and what became of it (`writ intake --json`, `GET /api/v1/intake`).
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, PartialEq)]
pub struct DeliveryRecordView {
    pub delivery: DeliveryView,
    pub outcome: String,
    pub changes: Vec<String>,
    pub detail: String,
    pub attempts: u32,
    pub updated_at: String,
}

impl DeliveryRecordView {
    pub fn of(r: &writ_core::intake::DeliveryRecord) -> DeliveryRecordView {
        DeliveryRecordView {
            delivery: DeliveryView::of(&r.delivery, None),
            outcome: r.outcome.as_str().to_owned(),
            changes: r.changes.iter().map(ToString::to_string).collect(),
            detail: r.detail.clone(),
            attempts: r.attempts,
            updated_at: r.updated_at.to_rfc3339(),
        }
    }
}

/// The JSON of a delivery record (the API's and `writ intake --json`'s).
pub fn delivery_record_json(r: &writ_core::intake::DeliveryRecord) -> Value {
    to_json(&DeliveryRecordView::of(r))
}

/// Evidence captured at the point of action: the SHA-256 of its bytes, what it is, its size.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, PartialEq)]
pub struct EvidenceView {
    pub sha256: String,
    pub label: String,
    pub media_type: String,
    pub size: u64,
}

impl EvidenceView {
    pub fn of(evidence: &writ_core::event::EvidenceRef) -> EvidenceView {
        EvidenceView {
            sha256: hex::encode(evidence.digest),
            label: evidence.label.clone(),
            media_type: evidence.media_type.clone(),
            size: evidence.size,
        }
    }
}

pub fn evidence_json(evidence: &writ_core::event::EvidenceRef) -> Value {
    to_json(&EvidenceView::of(evidence))
}

pub(crate) fn event_detail(event: &ChangeEvent, emergency: bool) -> String {
    match &event.body {
        ChangeEventBody::Requested { ops, rollback_of: Some(of), .. } => {
            format!("{} operation(s), rolling back {}", ops.len(), of.origin)
        }
        ChangeEventBody::Requested { ops, .. } => format!("{} operation(s)", ops.len()),
        ChangeEventBody::Validated { requirement, controls } => {
            let tier = controls.as_ref().map_or(String::new(), |c| {
                let review = if c.review_required { ", review required" } else { "" };
                format!("tier {} [{}]{review}: ", c.tier, c.slots.join(", "))
            });
            format!("{tier}needs {} approval(s), each valid {}", requirement.approvals, requirement.validity)
        }
        ChangeEventBody::Revalidated { requirement, reason, kept, .. } => format!(
            "needs approval again ({} approval(s), {} kept): {reason}",
            requirement.approvals,
            kept.len()
        ),
        ChangeEventBody::Escalated { to, people } => {
            let names: Vec<&str> = people.iter().map(writ_core::name::IdentityName::as_str).collect();
            format!(
                "approval overdue: escalated to {to} ({})",
                if names.is_empty() { "nobody listed".to_owned() } else { names.join(", ") }
            )
        }
        ChangeEventBody::BreakGlass { approval_due, requirement, controls } => format!(
            "EMERGENCY: glass broken, authorised to execute now; {} post-hoc approval(s) by someone \
             else due by {approval_due}; review required{}",
            requirement.approvals,
            if controls.window_rules.is_empty() {
                String::new()
            } else {
                format!("; maintenance windows waived ({})", controls.window_rules.join(", "))
            }
        ),
        ChangeEventBody::Approved { expires_at } => {
            let slot = event
                .policy
                .as_ref()
                .and_then(|p| p.slot.as_deref())
                .map_or(String::new(), |s| format!(" as {s}"));
            if emergency {
                format!("post-hoc approval{slot}")
            } else {
                format!("valid until {expires_at}{slot}")
            }
        }
        ChangeEventBody::Rejected { reason }
        | ChangeEventBody::Cancelled { reason }
        | ChangeEventBody::Expired { reason } => reason.clone(),
        ChangeEventBody::ExecutionStarted { attempt, claimed_until: None } => format!("attempt {attempt}"),
        ChangeEventBody::ExecutionStarted { attempt, claimed_until: Some(until) } => {
            format!("attempt {attempt}, claimed until {until}")
        }
        ChangeEventBody::Implemented { outcomes } => {
            let changed = outcomes.iter().filter(|o| o.before != o.after).count();
            format!("{changed} of {} operation(s) changed the target", outcomes.len())
        }
        ChangeEventBody::ExecutionFailed { error, .. } => error.clone(),
        ChangeEventBody::AttemptRecovered { attempt, outcomes, error } => {
            let changed = outcomes.iter().filter(|o| o.before != o.after).count();
            let mut written: Vec<&str> = outcomes.iter().filter_map(|o| o.reference.as_deref()).collect();
            written.dedup();
            let write = if written.is_empty() {
                "no write stamped with this change found".to_owned()
            } else {
                format!("its write: {}", written.join(", "))
            };
            let end =
                error.as_deref().map_or_else(|| "everything approved is in effect".to_owned(), str::to_owned);
            format!(
                "attempt {attempt} recovered from the targets: {changed} of {} operation(s) changed the target; {write}; {end}",
                outcomes.len()
            )
        }
        ChangeEventBody::Verified { .. } => "observed state equals approved state".to_owned(),
        ChangeEventBody::VerificationFailed { mismatches, residual, .. } => {
            let mut text = format!("{} operation(s) differ from the approved state", mismatches.len());
            if !residual.is_empty() {
                let held: Vec<String> =
                    residual.iter().map(|h| format!("{} {}", h.identity, h.entitlement)).collect();
                text.push_str(&format!("; access still held: {}", held.join(", ")));
            }
            text
        }
        ChangeEventBody::Reviewed { notes } => notes.clone(),
        ChangeEventBody::EvidenceAttached { name, late: false, .. } => format!("attached {name}"),
        ChangeEventBody::EvidenceAttached { name, late: true, .. } => {
            format!("attached {name} (late: the change had moved past this step)")
        }
        ChangeEventBody::ExpiryOpened { origin, due_at, ops, .. } => {
            format!("ends {} grant(s) of {origin}, due at {due_at}", ops.len())
        }
        ChangeEventBody::AlertRaised { reason } => format!("ALERT: {reason}"),
        ChangeEventBody::ExpiryWarned { identity, entitlement, ends_at, before } => format!(
            "warned {identity} (and the owner) that {entitlement} ends at {ends_at}, within {}",
            writ_core::time::Duration::to_string(before)
        ),
        ChangeEventBody::Linked { delivery, late } => format!(
            "{} {} from {}{}",
            delivery.event,
            delivery.id,
            delivery.source,
            if *late { " (LATE: older than a version already seen; recorded, not acted on)" } else { "" }
        ),
        ChangeEventBody::Commented { text, source: None, .. } => format!("comment: {text}"),
        ChangeEventBody::RollbackNoted { rollback, step } => format!("rollback {rollback}: {step}"),
        ChangeEventBody::LegalHold { held: true, reason } => format!("LEGAL HOLD placed: {reason}"),
        ChangeEventBody::LegalHold { held: false, reason } => format!("legal hold lifted: {reason}"),
        ChangeEventBody::Erased { rule, values, blobs, .. } => {
            let what = match (*values, blobs.len()) {
                (0, n) => format!("{n} evidence blob(s)"),
                (v, 0) => format!("the clear text of {v} sealed value(s)"),
                (v, n) => format!("the clear text of {v} sealed value(s) and {n} evidence blob(s)"),
            };
            format!("erased {what} under retention rule {rule} on {}", event.at)
        }
        ChangeEventBody::Commented { text, source: Some(s), late, .. } => format!(
            "comment {} from {}{} written {}{}: {text}",
            s.id,
            s.source,
            s.account.as_ref().map_or(String::new(), |a| format!(" by {a}")),
            s.written_at,
            if *late { " (LATE: written before one already here)" } else { "" }
        ),
    }
}

pub fn finding_json(finding: &writ_core::finding::Finding) -> Value {
    to_json(&FindingView::of(finding))
}

pub fn token_json(info: &writ_core::access::TokenInfo, revoked: Option<Timestamp>) -> Value {
    to_json(&TokenView::of(info, revoked))
}

pub fn inclusion_json(proof: &writ_engine::ledger::InclusionProof) -> Value {
    to_json(&InclusionView::of(proof))
}

pub fn consistency_json(proof: &writ_engine::ledger::ConsistencyProof) -> Value {
    to_json(&ConsistencyView::of(proof))
}

pub fn report_json(
    report: &writ_ledger::verify::Report,
    divergences: &[writ_engine::projections::Divergence],
) -> Value {
    to_json(&ReportView::of(report, divergences))
}

pub fn exception_json(e: &Exception) -> Value {
    to_json(&ExceptionView::of(e))
}

/// The columns of the exceptions export.
const CSV_COLUMNS: [&str; 14] = [
    "id",
    "state",
    "control",
    "subject",
    "owner",
    "requester",
    "justification",
    "compensating_control",
    "requested_at",
    "expires_at",
    "renewal_until",
    "approvals_needed",
    "approvers",
    "updated_at",
];

/// Exceptions as CSV (RFC 4180, header row; approvers joined by `; `) or as a JSON array.
pub fn exceptions_export(items: &[ExceptionView], format: &str) -> Result<Vec<u8>, crate::Error> {
    let fail = |e: String| crate::Error::new("internal.export", e);
    match format {
        "json" => serde_json::to_vec_pretty(items).map_err(|e| fail(e.to_string())),
        "csv" => {
            let mut writer = csv::Writer::from_writer(Vec::new());
            writer.write_record(CSV_COLUMNS).map_err(|e| fail(e.to_string()))?;
            for e in items {
                let optional = |value: &Option<String>| value.clone().unwrap_or_default();
                let row = [
                    e.id.clone(),
                    e.state.clone(),
                    e.control.clone(),
                    e.subject.clone(),
                    e.owner.clone(),
                    e.requester.clone(),
                    e.justification.clone(),
                    e.compensating_control.clone(),
                    e.requested_at.clone(),
                    e.expires_at.clone(),
                    optional(&e.renewal_until),
                    e.approvals_needed.to_string(),
                    e.approvers().join("; "),
                    e.updated_at.clone(),
                ];
                writer.write_record(&row).map_err(|e| fail(e.to_string()))?;
            }
            writer.into_inner().map_err(|e| fail(e.to_string()))
        }
        other => Err(crate::Error::new(
            "input.invalid_value",
            format!("export format {other:?}: expected csv or json"),
        )),
    }
}
