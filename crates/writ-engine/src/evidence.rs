//! Evidence captured at the point of action: the connector's plan, the observed state before a
//! write, the apply result, the observed state after, the approval context, and files people
//! attach. Each blob is addressed by its SHA-256; the event of the step carries the digest, so
//! the ledger covers the evidence.

use serde_json::{Value, json};
use writ_connector::{ApplyReport, Observed, PlanStep};
use writ_core::change::Change;
use writ_core::event::{ChangeEvent, EvidenceRef};
use writ_core::identity::Identity;
use writ_core::time::Timestamp;
use writ_store::EvidenceBlob;

/// Largest evidence file accepted (16 MiB).
pub const MAX_BYTES: usize = 16 * 1024 * 1024;

/// Evidence gathered for one commit.
#[derive(Default)]
pub struct Captured {
    refs: Vec<EvidenceRef>,
    blobs: Vec<EvidenceBlob>,
}

impl Captured {
    /// Adds a JSON document (serialised with sorted keys).
    pub fn json(&mut self, label: &str, value: &Value) {
        let bytes = serde_json::to_vec_pretty(value).unwrap_or_default();
        self.bytes(label, "application/json", bytes);
    }

    /// Adds raw bytes.
    pub fn bytes(&mut self, label: &str, media_type: &str, bytes: Vec<u8>) {
        let sha256 = writ_ledger::sha256(&bytes);
        self.refs.push(EvidenceRef {
            digest: sha256,
            label: label.to_owned(),
            media_type: media_type.to_owned(),
            size: bytes.len() as u64,
        });
        self.blobs.push(EvidenceBlob { sha256, media_type: media_type.to_owned(), bytes });
    }

    /// Puts the references on `event` (the blobs go to the commit).
    pub fn attach(&self, event: Option<&mut ChangeEvent>) {
        if let Some(event) = event {
            event.evidence.extend(self.refs.iter().cloned());
        }
    }

    pub fn into_blobs(self) -> Vec<EvidenceBlob> {
        self.blobs
    }
}

pub fn plan_json(plan: &[PlanStep]) -> Value {
    Value::Array(
        plan.iter()
            .map(|step| {
                json!({
                    "action": step.op.action.as_str(),
                    "entitlement": step.op.entitlement.to_string(),
                    "member": step.op.member.to_string(),
                    "present_now": step.present_now,
                    "will_change": step.will_change,
                })
            })
            .collect(),
    )
}

pub fn apply_json(report: &ApplyReport) -> Value {
    json!({
        "reference": report.reference,
        "applied": report.applied.iter().map(|a| json!({
            "action": a.op.action.as_str(),
            "entitlement": a.op.entitlement.to_string(),
            "member": a.op.member.to_string(),
            "before": a.before,
            "after": a.after,
        })).collect::<Vec<_>>(),
    })
}

pub fn observed_json(observed: &Observed) -> Value {
    let members: serde_json::Map<String, Value> = observed
        .members
        .iter()
        .map(|(entitlement, members)| {
            (
                entitlement.to_string(),
                Value::Array(members.iter().map(|m| Value::String(m.to_string())).collect()),
            )
        })
        .collect();
    let issued: Vec<Value> = observed
        .issued
        .iter()
        .map(|((entitlement, member), issued)| {
            json!({
                "entitlement": entitlement.as_str(),
                "member": member.as_str(),
                "change": issued.change,
                "previous_retired": issued.previous_retired,
                "still_valid": issued.unretired,
            })
        })
        .collect();
    json!({ "reference": observed.reference, "members": members, "issued": issued })
}

/// What the approver saw and under which requirement they approved.
pub fn approval_context(
    change: &Change,
    approver: &Identity,
    on_behalf_of: Option<&Identity>,
    now: Timestamp,
    justification_hmac: String,
) -> Value {
    json!({
        "change": change.id.to_string(),
        "at": now.to_rfc3339(),
        "approver": approver.name.to_string(),
        "on_behalf_of": on_behalf_of.map(|o| o.name.to_string()),
        "requester": change.requester.to_string(),
        "requested_on_behalf_of": change.on_behalf_of.as_ref().map(ToString::to_string),
        "state_before": change.state.as_str(),
        "required_approvals": change.requirement.approvals,
        "approval_validity": change.requirement.validity.to_string(),
        "approvals_before": change.approvals.iter().map(|a| a.approver.to_string()).collect::<Vec<_>>(),
        "operations": change.ops.iter().map(|op| json!({
            "action": op.action.as_str(),
            "identity": op.identity.to_string(),
            "entitlement": op.entitlement.to_string(),
            "duration": op.duration.map(|d| d.to_string()),
        })).collect::<Vec<_>>(),
        "justification_hmac": justification_hmac,
        "references": change.refs.iter().map(|r| json!({ "kind": r.kind.as_str(), "value": r.value() })).collect::<Vec<_>>(),
    })
}
