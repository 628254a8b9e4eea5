//! The text people read, rendered from the views (`view`), so that a command prints the same
//! text on a local database and over a server. The trail answers, for one change: who asked,
//! who approved, who executed, what changed, and whether the observed state was the approved
//! state.

use crate::view::{ChangeView, DeliveryRecordView, EventView, EvidenceView};
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
            let state = match i.state {
                writ_core::identity::IdentityState::Active => String::new(),
                state => format!(" [{state}]"),
            };
            format!("{:<24} {:<16} owner:{:<16} {}{state}", i.name, i.kind.as_str(), owner, vendor)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A SCIM link, for people.
pub fn scim_link(view: &crate::view::ScimLinkView) -> String {
    format!("{} is linked to SCIM externalId {}", view.identity, view.external_id)
}

/// One transfer of ownership, with its decision.
pub fn transfer(t: &crate::view::TransferView) -> String {
    let state = if t.expired { "expired".to_owned() } else { t.state.clone() };
    let mut out = format!(
        "{} {}: {} → {} ({state}), asked by {} at {}: {}",
        t.id,
        t.identity,
        t.from.as_deref().unwrap_or("no owner"),
        t.to,
        t.requested_by,
        t.requested_at,
        t.reason
    );
    match (&t.decided_by, &t.decided_at) {
        (Some(by), Some(at)) => out.push_str(&format!("\n  {} by {by} at {at}", t.state)),
        _ if t.state == "pending" && !t.expired => {
            out.push_str(&format!("\n  waits for a decision until {}", t.expires_at))
        }
        _ => {}
    }
    if let Some(note) = &t.note {
        out.push_str(&format!("\n  note: {note}"));
    }
    out
}

/// Transfers, one block each.
pub fn transfers(views: &[crate::view::TransferView]) -> String {
    if views.is_empty() {
        return "no transfers".to_owned();
    }
    views.iter().map(transfer).collect::<Vec<_>>().join("\n")
}

/// Delegations, one per line.
pub fn delegations(views: &[crate::view::DelegationView]) -> String {
    if views.is_empty() {
        return "no delegations".to_owned();
    }
    views
        .iter()
        .map(|d| {
            let state = if d.in_force { "until" } else { "ended" };
            format!("{} → {}  {state} {}", d.principal, d.delegate, d.until)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// What disabling, enabling or offboarding did, for people.
pub fn standing(view: &crate::view::StandingView) -> String {
    let mut out = if view.from == view.identity.state {
        format!("{} is already {}", view.identity.name, view.identity.state)
    } else {
        format!("{}: {} → {}", view.identity.name, view.from, view.identity.state)
    };
    let list = |items: &[String]| if items.is_empty() { "none".to_owned() } else { items.join(", ") };
    if view.identity.state != "active" {
        out.push_str(&format!("\n  tokens revoked: {}", list(&view.tokens_revoked)));
        out.push_str(&format!("\n  approvals withdrawn from: {}", list(&view.approvals_withdrawn)));
        out.push_str(&format!("\n  owned identities flagged for transfer: {}", list(&view.owned_flagged)));
    }
    out
}

/// What offboarding did, for people.
pub fn offboarding(view: &crate::view::OffboardingView) -> String {
    let mut out = standing(&view.standing);
    match &view.change {
        Some(change) => out.push_str(&format!("\n{change}\n  revokes {}", view.revoke.join(", "))),
        None => out.push_str("\n  nothing held on any target: no change opened"),
    }
    out
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
pub fn deliveries_text(items: &[DeliveryRecordView]) -> String {
    let mut out = String::new();
    for r in items {
        out.push_str(&format!(
            "{}  {}/{}  {:<12} {:<28} {} (x{})\n",
            r.updated_at,
            r.delivery.source,
            r.delivery.id,
            r.outcome,
            if r.changes.is_empty() { "-".to_owned() } else { r.changes.join(",") },
            r.detail,
            r.attempts,
        ));
    }
    if items.is_empty() {
        out.push_str("no deliveries\n");
    }
    out
}

/// The human-readable trail of one change, from its view (so that a local database and a
/// server print exactly the same text).
pub fn trail(change: &ChangeView) -> String {
    let mut out = format!("{}  {} · {} · state {}\n", change.id, change.kind, change.event, change.state);
    let proxy = change.on_behalf_of.as_ref().map_or(String::new(), |p| format!(" on behalf of {p}"));
    let vendor = change.vendor.as_ref().map_or(String::new(), |v| format!(" (vendor {v})"));
    out.push_str(&format!(
        "  asked      {}{proxy}{vendor} at {}: {:?}\n",
        change.requester, change.created_at, change.justification
    ));
    if let Some(origin) = &change.origin {
        out.push_str(&format!(
            "  origin     ends time-bound access granted by {origin}; pre-authorised by its approval\n"
        ));
    }
    if let Some(emergency) = &change.emergency {
        out.push_str(&format!(
            "  EMERGENCY  break-glass at {}; post-hoc approval due by {}: {}\n",
            emergency.declared_at,
            emergency.approval_due,
            emergency.post_hoc_approval.to_uppercase()
        ));
    }
    if let Some(alert) = &change.alert {
        out.push_str(&format!("  ALERT      {alert}\n"));
    }
    for reference in &change.references {
        out.push_str(&format!("  {:<10} {}\n", reference.kind, reference.value));
    }
    for d in &change.deliveries {
        let late = if d.late == Some(true) { " LATE" } else { "" };
        out.push_str(&format!(
            "  delivery   {} {} {} about {} sha256:{}{late}\n",
            d.source,
            d.id,
            d.event,
            d.object.as_deref().unwrap_or("-"),
            d.sha256,
        ));
    }
    if let Some(policy) = &change.policy {
        let review = if policy.review_required { "; review required" } else { "" };
        out.push_str(&format!(
            "  policy     tier {}: approvals [{}]{review}\n",
            policy.tier,
            policy.slots.join(", ")
        ));
    }
    if let Some(window) = &change.window {
        let demanded = if window.demanded_by.is_empty() {
            String::new()
        } else {
            format!(" (demanded by {})", window.demanded_by.join(", "))
        };
        match (&window.start, &window.end, window.applies) {
            (Some(start), Some(end), true) => out.push_str(&format!(
                "  window     {start} to {end}, given in {}{demanded}\n",
                window.zone.as_deref().unwrap_or("UTC")
            )),
            _ if change.emergency.is_some() => out.push_str(&format!(
                "  window     waived: break-glass ignores maintenance windows{demanded}\n"
            )),
            _ => out.push_str(&format!("  window     none{demanded}\n")),
        }
    }
    if let Some(hold) = &change.legal_hold {
        out.push_str(&format!("  LEGAL HOLD by {} at {}: {:?}\n", hold.by, hold.at, hold.reason));
    }
    for e in &change.erasures {
        let what = if e.blobs.is_empty() {
            format!("clear text of {} sealed value(s)", e.values)
        } else {
            format!("{} evidence blob(s)", e.blobs.len())
        };
        out.push_str(&format!("  ERASED     {what} under retention rule {} on {}\n", e.rule, e.at));
    }
    if let Some(owner) = &change.rollback_owner {
        out.push_str(&format!("  rollback   owner {owner}\n"));
    }
    if let Some(origin) = &change.rollback_of {
        out.push_str(&format!("  ROLLBACK   of {origin}: undoes what it did\n"));
    }
    let mut rollbacks: Vec<(&str, Vec<&str>)> = Vec::new();
    for note in &change.rollbacks {
        match rollbacks.iter_mut().find(|(id, _)| *id == note.change) {
            Some((_, steps)) => steps.push(&note.step),
            None => rollbacks.push((&note.change, vec![&note.step])),
        }
    }
    for (id, steps) in rollbacks {
        out.push_str(&format!("  ROLLED BACK by {id}: {}\n", steps.join(", ")));
    }
    for c in &change.comments {
        let from = match (&c.source, &c.external_id) {
            (Some(source), Some(id)) => format!(
                " via {source} (comment {id}{}, written {}){}",
                c.account.as_ref().map_or(String::new(), |a| format!(" by {a}")),
                c.written_at.as_deref().unwrap_or("-"),
                if c.late { " LATE" } else { "" }
            ),
            _ => String::new(),
        };
        out.push_str(&format!("  comment    {} at {}{from}: {:?}\n", c.author, c.at, c.text));
    }
    if let Some(escalated) = &change.escalated {
        out.push_str(&format!("  ESCALATED  to {} at {}: approval overdue\n", escalated.to, escalated.at));
    }
    if change.approvals.is_empty() {
        out.push_str("  approved   -\n");
    }
    for a in &change.approvals {
        let proxy = a.on_behalf_of.as_ref().map_or(String::new(), |p| format!(" on behalf of {p}"));
        let slot = a.slot.as_ref().map_or(String::new(), |s| format!(" as {s}"));
        let validity = match (a.post_hoc, a.late) {
            (true, Some(true)) => "post-hoc, LATE".to_owned(),
            (true, _) => "post-hoc, in time".to_owned(),
            _ => format!("valid until {}", a.expires_at),
        };
        out.push_str(&format!("  approved   {}{proxy}{slot} at {} ({validity})\n", a.approver, a.at));
    }
    for (attempt, e) in change.executions.iter().enumerate() {
        let result = match (&e.error, &e.finished_at) {
            (Some(error), _) => format!("FAILED: {error}"),
            (None, Some(t)) => format!("done at {t}"),
            (None, None) => "in progress".to_owned(),
        };
        let recovered = if e.recovered { " (cut off; outcome recovered from the targets)" } else { "" };
        let writes =
            if e.writes.is_empty() { String::new() } else { format!(" [wrote {}]", e.writes.join(", ")) };
        out.push_str(&format!(
            "  executed   {} at {} (attempt {}) {result}{recovered}{writes}\n",
            e.executor,
            e.started_at,
            attempt + 1
        ));
    }
    for op in &change.operations {
        let sign = match op.action.as_str() {
            "grant" => "+",
            "rotate" => "~",
            _ => "-",
        };
        let duration = op.duration.as_ref().map_or(String::new(), |d| format!(" for {d}"));
        let applied = match (&op.before, &op.after) {
            (Some(before), Some(after)) => {
                let reference = op
                    .target_reference
                    .as_ref()
                    .map_or(String::new(), |r| format!("  [{}]", r.chars().take(12).collect::<String>()));
                format!("{before} → {after}{reference}")
            }
            _ => "not applied".to_owned(),
        };
        out.push_str(&format!(
            "  changed    {sign} {} {} {}:{}{duration}: {applied}\n",
            op.identity, op.action, op.target, op.entitlement
        ));
    }
    match &change.verification {
        Some(v) if v.matches_approved_state => {
            out.push_str(&format!("  verified   at {}: observed state equals approved state\n", v.at))
        }
        Some(v) => {
            let mismatched: Vec<String> = v.mismatched_operations.iter().map(ToString::to_string).collect();
            out.push_str(&format!(
                "  verified   at {}: MISMATCH on operation(s) [{}]\n",
                v.at,
                mismatched.join(", ")
            ));
            for held in &v.residual_access {
                out.push_str(&format!(
                    "  STILL HELD {} {}:{}\n",
                    held.identity, held.target, held.entitlement
                ));
            }
        }
        None => out.push_str("  verified   -\n"),
    }
    match &change.closing {
        Some(c) => out.push_str(&format!("  {:<10} {} at {}: {:?}\n", change.state, c.actor, c.at, c.reason)),
        None => out.push_str("  reviewed   -\n"),
    }
    let evidence: Vec<(&EventView, &EvidenceView)> =
        change.events.iter().flat_map(|e| e.evidence.iter().map(move |x| (e, x))).collect();
    if !evidence.is_empty() {
        out.push_str("  evidence\n");
    }
    for (event, e) in &evidence {
        out.push_str(&format!(
            "    {:<14} {:<18} sha256:{}  {} bytes  (event seq {})\n",
            event.phase, e.label, e.sha256, e.size, event.seq
        ));
    }
    if !change.notifications.is_empty() {
        out.push_str("  notifications\n");
        for n in &change.notifications {
            out.push_str(&format!("    {}\n", notification_line(n)));
        }
    }
    out.push_str("  events (ledger index, and the signed checkpoint that covers it)\n");
    for event in &change.events {
        let proxy = event.on_behalf_of.as_ref().map_or(String::new(), |p| format!(" (for {p})"));
        let checkpoint =
            event.checkpoint.map_or("not yet checkpointed".to_owned(), |s| format!("checkpoint {s}"));
        out.push_str(&format!(
            "    #{:<5} {}  {:<14} {:<28} {}{proxy}  {}  [{checkpoint}]\n",
            event.index, event.at, event.phase, event.kind, event.actor, event.detail
        ));
    }
    out.trim_end().to_owned()
}

/// A reconciliation run as people read it: counts per situation, what it raised and resolved.
pub fn reconcile_run(run: &crate::view::ReconcileView) -> String {
    let counts: Vec<String> = run.situations.iter().map(|(s, n)| format!("{s} {n}")).collect();
    let mut out =
        format!("{} at {}  {}\n", run.scope, run.at, if run.complete { "complete" } else { "PARTIAL" });
    // The registry's run checks owners, not holdings.
    if run.scope.starts_with("target:") {
        out.push_str(&format!(
            "  situations {}\n  accounts   {} unmatched · credentials {} · {}\n",
            counts.join(" · "),
            run.unmatched_accounts,
            run.credentials,
            run.usage
        ));
    }
    for reason in &run.partial {
        out.push_str(&format!("  partial    {reason} (no missing access raised, nothing resolved)\n"));
    }
    for (label, list) in [("opened", &run.opened), ("reopened", &run.reopened), ("resolved", &run.resolved)] {
        for f in list {
            out.push_str(&format!(
                "  {label:<10} {}  {:<8} {:<28} {}\n",
                f.id, f.severity, f.kind, f.subject
            ));
        }
    }
    out.push_str(&format!(
        "  still open {} · snapshot sha256:{} · ledger #{}",
        run.still_open, run.snapshot, run.index
    ));
    out
}

pub fn finding_table(findings: &[writ_core::finding::Finding]) -> String {
    if findings.is_empty() {
        return "no findings".to_owned();
    }
    findings
        .iter()
        .map(|f| {
            format!(
                "{}  {:<9} {:<8} {:<28} {}",
                f.id,
                f.state.as_str(),
                f.severity.as_str(),
                f.kind,
                f.subject
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

pub fn finding_detail(f: &writ_core::finding::Finding) -> String {
    let mut out =
        format!("{}  {} · {} · {}\n  subject    {}\n", f.id, f.kind, f.severity, f.state, f.subject);
    if let Some(change) = &f.change {
        out.push_str(&format!("  change     {change}\n"));
    }
    if let Some(change) = &f.remediation {
        out.push_str(&format!("  remedy     {change} (resolves it once verified)\n"));
    }
    if let Some(exception) = &f.exception {
        out.push_str(&format!("  covered by {exception}\n"));
    }
    if !f.controls.is_empty() {
        out.push_str(&format!("  controls   {}\n", f.controls.join(", ")));
    }
    if let Some(scope) = &f.scope {
        out.push_str(&format!("  raised by  reconciliation of {scope}\n"));
    }
    if let Some(evidence) = &f.evidence {
        out.push_str(&format!("  evidence   sha256:{evidence} (observed snapshot)\n"));
    }
    out.push_str(&format!(
        "  first seen {}\n  last seen  {}\n  updated    {}\n  {}",
        f.opened_at, f.last_seen, f.updated_at, f.detail
    ));
    out
}

/// One notification on one line: what, to whom, how, and how its delivery went.
fn notification_line(n: &crate::view::NotificationView) -> String {
    let how = match n.state.as_str() {
        "delivered" => format!("delivered after {} attempt(s)", n.attempts),
        "dead" => format!("DEAD after {} attempt(s): {}", n.attempts, n.last_error.as_deref().unwrap_or("-")),
        _ if n.attempts == 0 => "pending".to_owned(),
        _ => format!(
            "pending, {} attempt(s), next at {}: {}",
            n.attempts,
            n.next_at.as_deref().unwrap_or("-"),
            n.last_error.as_deref().unwrap_or("-")
        ),
    };
    format!("{:<12} {:<26} {} by {} ({}): {how}", n.id, n.kind, n.recipient, n.channel, n.address)
}

/// Notifications, one per line (`writ notify list`).
pub fn notifications(items: &[crate::view::NotificationView]) -> String {
    if items.is_empty() {
        return "no notifications".to_owned();
    }
    items
        .iter()
        .map(|n| match &n.change {
            Some(change) => format!("{}  [{change}]", notification_line(n)),
            None => notification_line(n),
        })
        .collect::<Vec<_>>()
        .join("\n")
}
