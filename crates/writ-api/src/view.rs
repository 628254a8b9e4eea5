//! The JSON views of the API: the shapes the server answers with and the CLI prints with
//! `--json` (stable field names). The text renderings people read live in the CLI.
//!
//! A change's view answers, for one change: who asked, who approved, who executed, what changed,
//! and whether the observed state was the approved state.

// Indexing a `serde_json::Value` by a key returns `Null` when the key is absent or the value is
// not an object; it never panics, so the slice-indexing lint does not apply to it here.
#![allow(clippy::indexing_slicing)]

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use writ_core::event::{ChangeEvent, ChangeEventBody};
use writ_core::exception::Exception;
use writ_core::identity::{Grant, Identity, Target};
use writ_core::time::Timestamp;
use writ_engine::ChangeRecord;
use writ_store::ChangeSummary;

mod change;
pub use change::*;

/// Adds `key` to a JSON object (no-op for non-objects, which this module never builds).
pub fn insert(value: &mut Value, key: &str, extra: Value) {
    if let Some(object) = value.as_object_mut() {
        object.insert(key.to_owned(), extra);
    }
}

pub fn identity_json(identity: &Identity) -> Value {
    json!({
        "name": identity.name.to_string(),
        "kind": identity.kind.as_str(),
        "owner": identity.owner.as_ref().map(ToString::to_string),
        "vendor": identity.vendor.as_ref().map(ToString::to_string),
        "created_at": identity.created_at.to_rfc3339(),
    })
}

pub fn grant_json(grant: &Grant) -> Value {
    json!({
        "target": grant.entitlement.target.to_string(),
        "entitlement": grant.entitlement.entitlement.to_string(),
        "change": grant.change.to_string(),
        "granted_at": grant.granted_at.to_rfc3339(),
        "expires_at": grant.expires_at.map(|t| t.to_rfc3339()),
    })
}

pub fn target_json(target: &Target) -> Value {
    let settings: serde_json::Map<String, Value> =
        target.settings.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
    json!({
        "name": target.name.to_string(),
        "connector": target.connector.as_str(),
        "settings": settings,
        "created_at": target.created_at.to_rfc3339(),
    })
}

pub fn summary_json(summary: &ChangeSummary) -> Value {
    json!({
        "id": summary.id.to_string(),
        "kind": summary.kind.as_str(),
        "state": summary.state.as_str(),
        "requester": summary.requester.to_string(),
        "created_at": summary.created_at.to_rfc3339(),
        "updated_at": summary.updated_at.to_rfc3339(),
    })
}

/// A list: its items and, for a paged list with more to read, the cursor of the next page.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// The JSON of a change's view (see [`ChangeView`]).
pub fn change_json(record: &ChangeRecord, checkpoints: &[u64]) -> Value {
    to_json(&ChangeView::of(record, checkpoints))
}

/// A view as JSON. Views are plain structs of strings, numbers and lists, which always serialize.
fn to_json<T: serde::Serialize>(view: &T) -> Value {
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
            references: d
                .refs
                .iter()
                .map(|r| ReferenceView { kind: r.kind.as_str().to_owned(), value: r.value().to_owned() })
                .collect(),
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
        ChangeEventBody::BreakGlass { approval_due, requirement, .. } => format!(
            "EMERGENCY: glass broken, authorised to execute now; {} post-hoc approval(s) by someone \
             else due by {approval_due}; review required",
            requirement.approvals
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
        ChangeEventBody::ExecutionStarted { attempt } => format!("attempt {attempt}"),
        ChangeEventBody::Implemented { outcomes } => {
            let changed = outcomes.iter().filter(|o| o.before != o.after).count();
            format!("{changed} of {} operation(s) changed the target", outcomes.len())
        }
        ChangeEventBody::ExecutionFailed { error, .. } => error.clone(),
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
        ChangeEventBody::EvidenceAttached { name, .. } => format!("attached {name}"),
        ChangeEventBody::ExpiryOpened { origin, due_at, ops, .. } => {
            format!("ends {} grant(s) of {origin}, due at {due_at}", ops.len())
        }
        ChangeEventBody::AlertRaised { reason } => format!("ALERT: {reason}"),
        ChangeEventBody::Linked { delivery, late } => format!(
            "{} {} from {}{}",
            delivery.event,
            delivery.id,
            delivery.source,
            if *late { " (LATE: older than a version already seen; recorded, not acted on)" } else { "" }
        ),
    }
}

pub fn finding_json(finding: &writ_core::finding::Finding) -> Value {
    json!({
        "id": finding.id,
        "kind": finding.kind,
        "subject": finding.subject,
        "change": finding.change.as_ref().map(ToString::to_string),
        "state": finding.state.as_str(),
        "detail": finding.detail,
        "opened_at": finding.opened_at.to_rfc3339(),
        "updated_at": finding.updated_at.to_rfc3339(),
        "exception": finding.exception,
    })
}

pub fn token_json(
    info: &writ_core::access::TokenInfo,
    revoked: Option<writ_core::time::Timestamp>,
) -> serde_json::Value {
    serde_json::json!({
        "id": info.id,
        "identity": info.identity.to_string(),
        "label": info.label,
        "created_at": info.created_at.to_rfc3339(),
        "expires_at": info.expires_at.to_rfc3339(),
        "revoked_at": revoked.map(|t| t.to_rfc3339()),
    })
}

pub fn inclusion_json(proof: &writ_engine::ledger::InclusionProof) -> serde_json::Value {
    serde_json::json!({
        "index": proof.index,
        "leaf_hash": hex::encode(proof.leaf),
        "tree_size": proof.checkpoint.size,
        "root": hex::encode(proof.checkpoint.root),
        "proof": proof.proof.iter().map(hex::encode).collect::<Vec<_>>(),
        "checkpoint": proof.checkpoint.note,
    })
}

pub fn consistency_json(proof: &writ_engine::ledger::ConsistencyProof) -> serde_json::Value {
    serde_json::json!({
        "from": proof.old_size,
        "to": proof.new_size,
        "old_root": hex::encode(proof.old_root),
        "new_root": hex::encode(proof.new_root),
        "proof": proof.proof.iter().map(hex::encode).collect::<Vec<_>>(),
    })
}

pub fn report_json(report: &writ_ledger::verify::Report) -> serde_json::Value {
    let problems: Vec<serde_json::Value> = report
        .problems
        .iter()
        .map(|p| serde_json::json!({ "code": p.code(), "index": p.index(), "message": p.to_string() }))
        .collect();
    serde_json::json!({
        "ok": report.ok(),
        "events": report.events,
        "checkpoints_verified": report.verified_checkpoints.len(),
        "covered": report.verified_checkpoints.last().map_or(0, |c| c.size),
        "uncovered": report.uncovered,
        "problems": problems,
    })
}

pub fn exception_json(e: &Exception) -> Value {
    json!({
        "id": e.id.to_string(),
        "state": e.state.as_str(),
        "control": e.control,
        "subject": e.subject,
        "owner": e.owner.to_string(),
        "requester": e.requester.to_string(),
        "justification": e.justification,
        "compensating_control": e.compensating_control,
        "requested_at": e.requested_at.to_rfc3339(),
        "updated_at": e.updated_at.to_rfc3339(),
        "expires_at": e.expires_at.to_rfc3339(),
        "renewal_until": e.renewal.map(Timestamp::to_rfc3339),
        "awaiting_approval": e.awaits_approval(),
        "approvals_needed": e.approvals_needed,
        "approvals": e.approvals.iter().map(|a| json!({
            "approver": a.approver.to_string(),
            "at": a.at.to_rfc3339(),
            "slot": a.slot,
        })).collect::<Vec<_>>(),
    })
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
pub fn exceptions_export(items: &[Value], format: &str) -> Result<Vec<u8>, crate::Error> {
    match format {
        "json" => {
            serde_json::to_vec_pretty(items).map_err(|e| crate::Error::new("internal.export", e.to_string()))
        }
        "csv" => {
            let fail = |e: csv::Error| crate::Error::new("internal.export", e.to_string());
            let mut writer = csv::Writer::from_writer(Vec::new());
            writer.write_record(CSV_COLUMNS).map_err(fail)?;
            for e in items {
                let row: Vec<String> = CSV_COLUMNS
                    .iter()
                    .map(|column| match *column {
                        "approvers" => approvers(e).join("; "),
                        "approvals_needed" => e[*column].to_string(),
                        other => text(&e[other]).to_owned(),
                    })
                    .collect();
                writer.write_record(&row).map_err(fail)?;
            }
            writer.into_inner().map_err(|e| crate::Error::new("internal.export", e.to_string()))
        }
        other => Err(crate::Error::new(
            "input.invalid_value",
            format!("export format {other:?}: expected csv or json"),
        )),
    }
}

/// Who approved an exception's current round, from its view.
pub fn approvers(e: &Value) -> Vec<String> {
    e["approvals"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|a| match a["slot"].as_str() {
                    Some(slot) => format!("{} ({slot})", text(&a["approver"])),
                    None => text(&a["approver"]).to_owned(),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or("")
}
