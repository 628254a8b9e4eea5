//! The text people read, rendered from the JSON views (`view`), so that a command prints the same
//! text on a local database and over a server. The trail answers, for one change: who asked,
//! who approved, who executed, what changed, and whether the observed state was the approved
//! state.

// Indexing a `serde_json::Value` by a key returns `Null` when the key is absent or the value is
// not an object; it never panics, so the slice-indexing lint does not apply to it here.
#![allow(clippy::indexing_slicing)]

use serde_json::Value;
use writ_core::identity::{Grant, Identity};
use writ_store::ChangeSummary;

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

pub fn summary_table(changes: &[ChangeSummary]) -> String {
    changes
        .iter()
        .map(|c| format!("{}  {:<20} {:<22} {}", c.id, c.state.as_str(), c.kind.as_str(), c.requester))
        .collect::<Vec<_>>()
        .join("\n")
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
