//! Output: the JSON shapes scripts read (stable field names) and the text people read. The
//! trail answers, for one change: who asked, who approved, who executed, what changed, and
//! whether the observed state was the approved state.

// Indexing a `serde_json::Value` by a key returns `Null` when the key is absent or the value is
// not an object; it never panics, so the slice-indexing lint does not apply to it here.
#![allow(clippy::indexing_slicing)]

use serde_json::{Value, json};
use writ_core::change::{Change, ChangeState, OpAction};
use writ_core::event::{ChangeEvent, ChangeEventBody};
use writ_core::identity::{Grant, Identity, Target};
use writ_engine::ChangeRecord;
use writ_store::ChangeSummary;

/// Prints `value` as JSON, or the text `text()` builds.
pub fn print(json: bool, value: Value, text: impl FnOnce() -> String) {
    if json {
        println!("{value}");
    } else {
        let text = text();
        if !text.is_empty() {
            println!("{text}");
        }
    }
}

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

pub fn identity_table(identities: &[Identity]) -> String {
    identities
        .iter()
        .map(|i| {
            let owner = i.owner.as_ref().map_or_else(
                || {
                    if i.kind.is_nhi() { "ORPHAN".to_owned() } else { "-".to_owned() }
                },
                ToString::to_string,
            );
            let vendor = i.vendor.as_ref().map_or("-".to_owned(), |v| format!("vendor:{v}"));
            format!("{:<24} {:<16} owner:{:<16} {}", i.name, i.kind.as_str(), owner, vendor)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

pub fn identity_detail(identity: &Identity, grants: &[Grant]) -> String {
    let mut out = identity_table(std::slice::from_ref(identity));
    if grants.is_empty() {
        out.push_str("\n  no grants");
    }
    for grant in grants {
        let expiry = grant.expires_at.map_or("no expiry".to_owned(), |t| format!("expires {t}"));
        out.push_str(&format!(
            "\n  {}  granted {} by {}  {}",
            grant.entitlement, grant.granted_at, grant.change, expiry
        ));
    }
    out
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

pub fn summary_table(changes: &[ChangeSummary]) -> String {
    changes
        .iter()
        .map(|c| format!("{}  {:<20} {:<22} {}", c.id, c.state.as_str(), c.kind.as_str(), c.requester))
        .collect::<Vec<_>>()
        .join("\n")
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

pub fn change_json(record: &ChangeRecord, checkpoints: &[u64]) -> Value {
    let change = &record.change;
    let operations: Vec<Value> = change
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
            json!({
                "action": op.action.as_str(),
                "identity": op.identity.to_string(),
                "target": op.entitlement.target.to_string(),
                "entitlement": op.entitlement.entitlement.to_string(),
                "duration": op.duration.map(|d| d.to_string()),
                "approved_state": match op.action {
                    OpAction::Grant => "present",
                    OpAction::Revoke => "absent",
                    OpAction::Rotate => "rotated",
                },
                "before": applied.as_ref().map(|a| presence(a.0)),
                "after": applied.as_ref().map(|a| presence(a.1)),
                "target_reference": applied.and_then(|a| a.2),
                "observed": observed.map(presence),
            })
        })
        .collect();
    let approvals: Vec<Value> = change
        .approvals
        .iter()
        .map(|a| {
            json!({
                "approver": a.approver.to_string(),
                "on_behalf_of": a.on_behalf_of.as_ref().map(ToString::to_string),
                "at": a.at.to_rfc3339(),
                "expires_at": a.expires_at.to_rfc3339(),
                "slot": a.slot,
                "post_hoc": change.emergency.is_some(),
                "late": change.emergency.map(|e| a.at > e.approval_due),
            })
        })
        .collect();
    let executions: Vec<Value> = change
        .executions
        .iter()
        .map(|e| {
            json!({
                "executor": e.executor.to_string(),
                "started_at": e.started_at.to_rfc3339(),
                "finished_at": e.finished_at.map(|t| t.to_rfc3339()),
                "error": e.error,
            })
        })
        .collect();
    let trail: Vec<Value> = record
        .events
        .iter()
        .map(|(index, e)| event_json(*index, e, covering(checkpoints, *index), change.emergency.is_some()))
        .collect();
    let reviewed = change.state == ChangeState::Reviewed;
    json!({
        "id": change.id.to_string(),
        "kind": change.kind.as_str(),
        "state": change.state.as_str(),
        "event": change.event.as_str(),
        "requester": change.requester.to_string(),
        "created_at": change.created_at.to_rfc3339(),
        "on_behalf_of": change.on_behalf_of.as_ref().map(ToString::to_string),
        "vendor": change.vendor.as_ref().map(ToString::to_string),
        "justification": change.justification.as_str(),
        "origin": change.origin.as_ref().map(ToString::to_string),
        "alert": change.alert,
        "references": change.refs.iter().map(|r| json!({ "kind": r.kind.as_str(), "value": r.value() })).collect::<Vec<_>>(),
        "deliveries": change.links.iter().map(|l| delivery_json(&l.delivery, Some((l.seq, l.late)))).collect::<Vec<_>>(),
        "required_approvals": change.requirement.approvals,
        "policy": change.controls.as_ref().map(|c| json!({
            "tier": c.tier,
            "slots": c.slots,
            "escalate_at": c.escalate_at.map(|t| t.to_rfc3339()),
            "escalate_to": c.escalate_to,
            "review_required": c.review_required,
        })),
        "escalated": change.escalated.as_ref().map(|(at, to)| json!({ "at": at.to_rfc3339(), "to": to })),
        "emergency": change.emergency.map(|e| json!({
            "declared_at": e.declared_at.to_rfc3339(),
            "approval_due": e.approval_due.to_rfc3339(),
            "post_hoc_approvals_needed": change.requirement.approvals,
            "post_hoc_approval": if !change.awaits_post_hoc_approval() {
                if change.approvals.iter().all(|a| a.at <= e.approval_due) { "in_time" } else { "late" }
            } else if change.alert.is_some() { "missed" } else { "pending" },
        })),
        "operations": operations,
        "approvals": approvals,
        "executions": executions,
        "verification": change.verification.as_ref().map(|v| json!({
            "at": v.at.to_rfc3339(),
            "matches_approved_state": v.mismatches.is_empty() && v.residual.is_empty(),
            "mismatched_operations": v.mismatches,
            "residual_access": v.residual.iter().map(|h| json!({
                "identity": h.identity.to_string(),
                "target": h.entitlement.target.to_string(),
                "entitlement": h.entitlement.entitlement.to_string(),
            })).collect::<Vec<_>>(),
        })),
        "closing": change.closing.as_ref().map(|c| json!({ "actor": c.actor.to_string(), "at": c.at.to_rfc3339(), "reason": c.reason })),
        "answers": {
            "who_asked": change.requester.to_string(),
            "who_approved": change.approvals.iter().map(|a| a.approver.to_string()).collect::<Vec<_>>(),
            "who_executed": change.executions.iter().map(|e| e.executor.to_string()).collect::<Vec<_>>(),
            "observed_equals_approved": change.verification.as_ref().map(|v| v.mismatches.is_empty() && v.residual.is_empty()),
            "reviewed_by": if reviewed { change.closing.as_ref().map(|c| c.actor.to_string()) } else { None },
        },
        "events": trail,
    })
}

/// A delivery from another system: where it came from, what it is about, the SHA-256 of the
/// bytes received; with `link`, the change event that attached it and whether it was late.
pub fn delivery_json(d: &writ_core::intake::Delivery, link: Option<(u64, bool)>) -> Value {
    let mut value = json!({
        "source": d.source.to_string(),
        "id": d.id,
        "event": d.event,
        "object": d.object,
        "version": d.version.map(|t| t.to_rfc3339()),
        "sha256": d.sha256_hex(),
        "received_at": d.received_at.to_rfc3339(),
        "references": d.refs.iter().map(|r| json!({ "kind": r.kind.as_str(), "value": r.value() })).collect::<Vec<_>>(),
    });
    if let (Some((seq, late)), Some(map)) = (link, value.as_object_mut()) {
        map.insert("seq".into(), json!(seq));
        map.insert("late".into(), json!(late));
    }
    value
}

/// The JSON of a delivery record (the API's and `writ intake --json`'s).
pub fn delivery_record_json(r: &writ_core::intake::DeliveryRecord) -> Value {
    json!({
        "delivery": delivery_json(&r.delivery, None),
        "outcome": r.outcome.as_str(),
        "changes": r.changes.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "detail": r.detail,
        "attempts": r.attempts,
        "updated_at": r.updated_at.to_rfc3339(),
    })
}

/// One line per delivery: when, source/id, outcome, changes, detail.
pub fn deliveries_text(items: &[Value]) -> String {
    let text = |v: &Value| v.as_str().unwrap_or("-").to_owned();
    let mut out = String::new();
    for r in items {
        let changes: Vec<String> = r["changes"].as_array().into_iter().flatten().map(text).collect();
        out.push_str(&format!(
            "{}  {}/{}  {:<12} {:<28} {} (x{})\n",
            text(&r["updated_at"]),
            text(&r["delivery"]["source"]),
            text(&r["delivery"]["id"]),
            text(&r["outcome"]),
            if changes.is_empty() { "-".to_owned() } else { changes.join(",") },
            text(&r["detail"]),
            r["attempts"],
        ));
    }
    if items.is_empty() {
        out.push_str("no deliveries\n");
    }
    out
}

pub fn evidence_json(evidence: &writ_core::event::EvidenceRef) -> Value {
    json!({
        "sha256": hex::encode(evidence.digest),
        "label": evidence.label,
        "media_type": evidence.media_type,
        "size": evidence.size,
    })
}

fn presence(present: bool) -> &'static str {
    if present { "present" } else { "absent" }
}

fn event_json(index: u64, event: &ChangeEvent, checkpoint: Option<u64>, emergency: bool) -> Value {
    json!({
        "index": index,
        "checkpoint": checkpoint,
        "seq": event.seq,
        "at": event.at.to_rfc3339(),
        "phase": event.body.phase().as_str(),
        "type": event.body.type_name(),
        "actor": event.actor.to_string(),
        "on_behalf_of": event.on_behalf_of.as_ref().map(ToString::to_string),
        "detail": event_detail(event, emergency),
        "evidence": event.evidence.iter().map(evidence_json).collect::<Vec<_>>(),
        "policy": event.policy.as_ref().map(|p| json!({ "hash": p.hash, "rules": p.rules, "slot": p.slot })),
    })
}

fn event_detail(event: &ChangeEvent, emergency: bool) -> String {
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

/// The human-readable trail of one change, from its JSON (so that a local database and a
/// server print exactly the same text).
pub fn trail(change: &Value) -> String {
    let text = |v: &Value| v.as_str().unwrap_or("-").to_owned();
    let list = |v: &Value| v.as_array().cloned().unwrap_or_default();
    let mut out = format!(
        "{}  {} · {} · state {}\n",
        text(&change["id"]),
        text(&change["kind"]),
        text(&change["event"]),
        text(&change["state"])
    );
    let proxy = change["on_behalf_of"].as_str().map_or(String::new(), |p| format!(" on behalf of {p}"));
    let vendor = change["vendor"].as_str().map_or(String::new(), |v| format!(" (vendor {v})"));
    out.push_str(&format!(
        "  asked      {}{proxy}{vendor} at {}: {:?}\n",
        text(&change["requester"]),
        text(&change["created_at"]),
        text(&change["justification"])
    ));
    if let Some(origin) = change["origin"].as_str() {
        out.push_str(&format!(
            "  origin     ends time-bound access granted by {origin}; pre-authorised by its approval\n"
        ));
    }
    if let Some(emergency) = change["emergency"].as_object() {
        let field = |key: &str| emergency.get(key).map_or_else(|| "-".to_owned(), text);
        out.push_str(&format!(
            "  EMERGENCY  break-glass at {}; post-hoc approval due by {}: {}\n",
            field("declared_at"),
            field("approval_due"),
            field("post_hoc_approval").to_uppercase()
        ));
    }
    if let Some(alert) = change["alert"].as_str() {
        out.push_str(&format!("  ALERT      {alert}\n"));
    }
    for reference in list(&change["references"]) {
        out.push_str(&format!("  {:<10} {}\n", text(&reference["kind"]), text(&reference["value"])));
    }
    for d in list(&change["deliveries"]) {
        let late = if d["late"].as_bool() == Some(true) { " LATE" } else { "" };
        out.push_str(&format!(
            "  delivery   {} {} {} about {} sha256:{}{late}\n",
            text(&d["source"]),
            text(&d["id"]),
            text(&d["event"]),
            text(&d["object"]),
            text(&d["sha256"]),
        ));
    }
    if let Some(policy) = change["policy"].as_object() {
        let slots: Vec<String> = policy.get("slots").map(list).unwrap_or_default().iter().map(text).collect();
        let review =
            if policy.get("review_required") == Some(&Value::Bool(true)) { "; review required" } else { "" };
        out.push_str(&format!(
            "  policy     tier {}: approvals [{}]{review}\n",
            policy.get("tier").map_or_else(|| "-".to_owned(), text),
            slots.join(", ")
        ));
    }
    if let Some(escalated) = change["escalated"].as_object() {
        out.push_str(&format!(
            "  ESCALATED  to {} at {}: approval overdue\n",
            escalated.get("to").map_or_else(|| "-".to_owned(), text),
            escalated.get("at").map_or_else(|| "-".to_owned(), text)
        ));
    }
    let approvals = list(&change["approvals"]);
    if approvals.is_empty() {
        out.push_str("  approved   -\n");
    }
    for a in &approvals {
        let proxy = a["on_behalf_of"].as_str().map_or(String::new(), |p| format!(" on behalf of {p}"));
        let slot = a["slot"].as_str().map_or(String::new(), |s| format!(" as {s}"));
        let validity = match (a["post_hoc"].as_bool(), a["late"].as_bool()) {
            (Some(true), Some(true)) => "post-hoc, LATE".to_owned(),
            (Some(true), _) => "post-hoc, in time".to_owned(),
            _ => format!("valid until {}", text(&a["expires_at"])),
        };
        out.push_str(&format!(
            "  approved   {}{proxy}{slot} at {} ({validity})\n",
            text(&a["approver"]),
            text(&a["at"]),
        ));
    }
    for (attempt, e) in list(&change["executions"]).iter().enumerate() {
        let result = match (e["error"].as_str(), e["finished_at"].as_str()) {
            (Some(error), _) => format!("FAILED: {error}"),
            (None, Some(t)) => format!("done at {t}"),
            (None, None) => "in progress".to_owned(),
        };
        out.push_str(&format!(
            "  executed   {} at {} (attempt {}) {result}\n",
            text(&e["executor"]),
            text(&e["started_at"]),
            attempt + 1
        ));
    }
    for op in list(&change["operations"]) {
        let sign = match op["action"].as_str() {
            Some("grant") => "+",
            Some("rotate") => "~",
            _ => "-",
        };
        let duration = op["duration"].as_str().map_or(String::new(), |d| format!(" for {d}"));
        let applied = match (op["before"].as_str(), op["after"].as_str()) {
            (Some(before), Some(after)) => {
                let reference = op["target_reference"]
                    .as_str()
                    .map_or(String::new(), |r| format!("  [{}]", r.chars().take(12).collect::<String>()));
                format!("{before} → {after}{reference}")
            }
            _ => "not applied".to_owned(),
        };
        out.push_str(&format!(
            "  changed    {sign} {} {} {}:{}{duration}: {applied}\n",
            text(&op["identity"]),
            text(&op["action"]),
            text(&op["target"]),
            text(&op["entitlement"])
        ));
    }
    match change["verification"].as_object() {
        Some(v) if v.get("matches_approved_state") == Some(&Value::Bool(true)) => out.push_str(&format!(
            "  verified   at {}: observed state equals approved state\n",
            v.get("at").map_or_else(|| "-".to_owned(), text)
        )),
        Some(v) => {
            let mismatched: Vec<String> = v
                .get("mismatched_operations")
                .and_then(Value::as_array)
                .map(|m| m.iter().map(ToString::to_string).collect())
                .unwrap_or_default();
            out.push_str(&format!(
                "  verified   at {}: MISMATCH on operation(s) [{}]\n",
                v.get("at").map_or_else(|| "-".to_owned(), text),
                mismatched.join(", ")
            ));
            for held in v.get("residual_access").and_then(Value::as_array).into_iter().flatten() {
                out.push_str(&format!(
                    "  STILL HELD {} {}:{}
",
                    text(&held["identity"]),
                    text(&held["target"]),
                    text(&held["entitlement"])
                ));
            }
        }
        None => out.push_str("  verified   -\n"),
    }
    match change["closing"].as_object() {
        Some(c) => {
            let label =
                if change["state"] == "reviewed" { "reviewed".to_owned() } else { text(&change["state"]) };
            out.push_str(&format!(
                "  {:<10} {} at {}: {:?}\n",
                label,
                c.get("actor").map_or_else(|| "-".to_owned(), text),
                c.get("at").map_or_else(|| "-".to_owned(), text),
                c.get("reason").map_or_else(|| "-".to_owned(), text)
            ))
        }
        None => out.push_str("  reviewed   -\n"),
    }
    let events = list(&change["events"]);
    let evidence: Vec<(Value, Value, Value)> = events
        .iter()
        .flat_map(|e| list(&e["evidence"]).into_iter().map(|x| (e["seq"].clone(), e["phase"].clone(), x)))
        .collect();
    if !evidence.is_empty() {
        out.push_str("  evidence\n");
    }
    for (seq, step, e) in &evidence {
        out.push_str(&format!(
            "    {:<14} {:<18} sha256:{}  {} bytes  (event seq {seq})\n",
            text(step),
            text(&e["label"]),
            text(&e["sha256"]),
            e["size"]
        ));
    }
    out.push_str("  events (ledger index, and the signed checkpoint that covers it)\n");
    for event in &events {
        let proxy = event["on_behalf_of"].as_str().map_or(String::new(), |p| format!(" (for {p})"));
        let checkpoint = event["checkpoint"]
            .as_u64()
            .map_or("not yet checkpointed".to_owned(), |s| format!("checkpoint {s}"));
        out.push_str(&format!(
            "    #{:<5} {}  {:<14} {:<28} {}{proxy}  {}  [{checkpoint}]\n",
            event["index"].as_u64().unwrap_or_default(),
            text(&event["at"]),
            text(&event["phase"]),
            text(&event["type"]),
            text(&event["actor"]),
            text(&event["detail"])
        ));
    }
    out.trim_end().to_owned()
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

pub fn finding_table(findings: &[writ_core::finding::Finding]) -> String {
    if findings.is_empty() {
        return "no findings".to_owned();
    }
    findings
        .iter()
        .map(|f| format!("{}  {:<9} {:<28} {}", f.id, f.state.as_str(), f.kind, f.subject))
        .collect::<Vec<_>>()
        .join("\n")
}

pub fn finding_detail(f: &writ_core::finding::Finding) -> String {
    let mut out = format!("{}  {} · {}\n  subject    {}\n", f.id, f.kind, f.state, f.subject);
    if let Some(change) = &f.change {
        out.push_str(&format!("  change     {change}\n"));
    }
    if let Some(exception) = &f.exception {
        out.push_str(&format!("  covered by {exception}\n"));
    }
    out.push_str(&format!("  opened     {}\n  updated    {}\n  {}", f.opened_at, f.updated_at, f.detail));
    out
}
