//! The payloads of each sender, read into [`Parsed`]. Shapes follow the products' documented
//! webhook payloads: GitHub `pull_request` and `push`, GitLab `Merge Request Hook` and `Push
//! Hook`, Jira Cloud `jira:issue_*`, a ServiceNow `change_request` record as the Table API
//! returns it (every value a string; reference fields as `{value, link}`), and Writ's own
//! envelope for Standard Webhooks senders (`docs/intake.md`).

use serde_json::Value;
use writ_core::change::{ExternalRef, RefKind};
use writ_core::intake::key;
use writ_core::time::Timestamp;

use crate::block::scan;
use crate::manifest::Revision;
use crate::{IntakeError, Parsed, Received};

type Result<T> = std::result::Result<T, IntakeError>;

fn malformed(message: impl Into<String>) -> IntakeError {
    IntakeError::Malformed { code: "hook.malformed", message: message.into() }
}

/// The string at `path`, if it is a non-empty string (or a number, written as text).
fn text(json: &Value, path: &[&str]) -> Option<String> {
    let value = path.iter().try_fold(json, |v, k| v.get(k))?;
    match value {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn required(json: &Value, path: &[&str]) -> Result<String> {
    text(json, path).ok_or_else(|| malformed(format!("the payload has no {}", path.join("."))))
}

fn reference(kind: RefKind, value: &str) -> Result<ExternalRef> {
    ExternalRef::new(kind, value).map_err(|e| malformed(e.to_string()))
}

fn checked(value: &str, field: &'static str) -> Result<String> {
    key(value, field).map_err(|e| malformed(e.to_string()))
}

/// The delivery id from the first of `headers` present.
fn delivery_id(received: &Received<'_>, headers: &[&str]) -> Result<String> {
    let id = headers.iter().find_map(|h| received.header(h)).ok_or_else(|| IntakeError::Malformed {
        code: "hook.missing_delivery_id",
        message: format!("a delivery id is required (header {})", headers.join(" or ")),
    })?;
    checked(id, "delivery id")
}

/// RFC 3339, or `YYYY-MM-DD HH:MM:SS` in UTC (ServiceNow), optionally followed by ` UTC`
/// (older GitLab payloads).
fn time(text: &str) -> Option<Timestamp> {
    Timestamp::parse_rfc3339(text).or_else(|| {
        let plain = text.strip_suffix(" UTC").unwrap_or(text);
        Timestamp::parse_rfc3339(&format!("{}Z", plain.replacen(' ', "T", 1)))
    })
}

fn version(json: &Value, path: &[&str]) -> Result<Option<Timestamp>> {
    text(json, path)
        .map(|t| {
            time(&t).ok_or_else(|| malformed(format!("{} is not a date and time: {t:?}", path.join("."))))
        })
        .transpose()
}

/// Applies the Writ lines of `body` to `parsed`; `opens`: the event may open the change.
fn apply_text(parsed: &mut Parsed, body: &str, opens: bool) {
    let scanned = scan(body);
    parsed.changes.extend(scanned.changes.into_iter().map(|c| (c, None)));
    parsed.block_error = scanned.error;
    match scanned.block {
        Some(block) if opens => parsed.request = Some(block),
        Some(_) => parsed.pending_request = true,
        None => {}
    }
}

/// Commits whose messages carry `Writ-Change:` lines: each named change with its commit.
fn commits(parsed: &mut Parsed, commits: Option<&Value>, id_key: &str) -> Result<()> {
    for commit in commits.and_then(Value::as_array).into_iter().flatten() {
        let (Some(sha), Some(message)) = (text(commit, &[id_key]), text(commit, &["message"])) else {
            continue;
        };
        let scanned = scan(&message);
        if scanned.changes.is_empty() {
            // Only a commit id (hex, SHA-1 or SHA-256) names a commit a finding can be about.
            let commit_id = matches!(sha.len(), 40 | 64) && sha.bytes().all(|b| b.is_ascii_hexdigit());
            if commit_id && parsed.unstamped.len() < crate::MAX_UNSTAMPED {
                let paths = ["added", "modified", "removed"]
                    .iter()
                    .filter_map(|key| commit.get(*key).and_then(Value::as_array))
                    .flatten()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect();
                let author = text(commit, &["author", "name"]).unwrap_or_else(|| "unknown".into());
                let first = message.lines().next().unwrap_or_default();
                let summary = format!("{author}: {first}").chars().take(200).collect();
                parsed.unstamped.push(crate::UnstampedCommit { sha, summary, paths });
            }
            continue;
        }
        let commit_ref = reference(RefKind::Commit, &sha)?;
        parsed.refs.push(commit_ref.clone());
        parsed.changes.extend(scanned.changes.into_iter().map(|c| (c, Some(commit_ref.clone()))));
    }
    Ok(())
}

/// The branch a push moved, from `before` to `after` (GitLab: `checkout_sha`, else `after`).
fn push_revision(json: &Value, repository: Option<&str>, after_key: &str) -> Option<Revision> {
    let after = text(json, &[after_key]).or_else(|| text(json, &["after"]))?;
    let before = text(json, &["before"]);
    Revision::new(repository?, &text(json, &["ref"])?, before.as_deref(), &after)
}

pub(crate) fn github(received: &Received<'_>, json: &Value) -> Result<Parsed> {
    let id = delivery_id(received, &["x-github-delivery"])?;
    let event = checked(received.header("x-github-event").unwrap_or("unknown"), "event type")?;
    let repo = text(json, &["repository", "full_name"]);
    let mut parsed = Parsed { id, event: event.clone(), ..Parsed::default() };
    match event.as_str() {
        "pull_request" => {
            let repo = repo.ok_or_else(|| malformed("the payload has no repository.full_name"))?;
            let action = required(json, &["action"])?;
            let pr = json.get("pull_request").ok_or_else(|| malformed("the payload has no pull_request"))?;
            let number = required(pr, &["number"])?;
            let merged = action == "closed" && pr.get("merged") == Some(&Value::Bool(true));
            parsed.event = checked(&format!("pull_request.{action}"), "event type")?;
            parsed.object = Some(checked(&format!("{repo}#{number}"), "object")?);
            parsed.version = version(pr, &["updated_at"])?;
            parsed.sent_at = parsed.version;
            parsed.refs.push(reference(RefKind::PullRequest, &format!("{repo}#{number}"))?);
            if merged && let Some(sha) = text(pr, &["merge_commit_sha"]) {
                parsed.refs.push(reference(RefKind::Commit, &sha)?);
                let base = text(pr, &["base", "ref"]).unwrap_or_default();
                parsed.revision = Revision::new(&repo, &base, None, &sha);
            }
            parsed.account = text(pr, &["user", "login"]);
            parsed.summary = text(pr, &["title"]);
            apply_text(&mut parsed, &text(pr, &["body"]).unwrap_or_default(), merged);
        }
        "push" => {
            parsed.sent_at = json
                .get("repository")
                .and_then(|r| r.get("pushed_at"))
                .and_then(Value::as_i64)
                .map(|s| Timestamp::from_millis(s.saturating_mul(1000)));
            parsed.account = text(json, &["pusher", "name"]);
            commits(&mut parsed, json.get("commits"), "id")?;
            parsed.revision = push_revision(json, repo.as_deref(), "after");
        }
        _ => {}
    }
    Ok(parsed)
}

pub(crate) fn gitlab(received: &Received<'_>, json: &Value) -> Result<Parsed> {
    let id = delivery_id(received, &["idempotency-key", "webhook-id", "x-gitlab-event-uuid"])?;
    let kind = text(json, &["object_kind"]).unwrap_or_default();
    let event = checked(if kind.is_empty() { "unknown" } else { &kind }, "event type")?;
    let mut parsed = Parsed { id, event, ..Parsed::default() };
    let project = text(json, &["project", "path_with_namespace"]);
    match kind.as_str() {
        "merge_request" => {
            let project =
                project.ok_or_else(|| malformed("the payload has no project.path_with_namespace"))?;
            let mr = json
                .get("object_attributes")
                .ok_or_else(|| malformed("the payload has no object_attributes"))?;
            let iid = required(mr, &["iid"])?;
            let action = text(mr, &["action"]).unwrap_or_else(|| "update".into());
            let merged = action == "merge";
            parsed.event = checked(&format!("merge_request.{action}"), "event type")?;
            parsed.object = Some(checked(&format!("{project}!{iid}"), "object")?);
            parsed.version = version(mr, &["updated_at"])?;
            parsed.sent_at = parsed.version;
            parsed.refs.push(reference(RefKind::PullRequest, &format!("{project}!{iid}"))?);
            if merged && let Some(sha) = text(mr, &["merge_commit_sha"]) {
                parsed.refs.push(reference(RefKind::Commit, &sha)?);
            }
            if merged {
                // A fast-forward merge has no merge commit: the last commit is what landed.
                let landed = text(mr, &["merge_commit_sha"]).or_else(|| text(mr, &["last_commit", "id"]));
                let target = text(mr, &["target_branch"]).unwrap_or_default();
                parsed.revision = landed.and_then(|sha| Revision::new(&project, &target, None, &sha));
            }
            parsed.account = text(json, &["user", "username"]);
            parsed.summary = text(mr, &["title"]);
            apply_text(&mut parsed, &text(mr, &["description"]).unwrap_or_default(), merged);
        }
        "push" => {
            parsed.account = text(json, &["user_username"]);
            commits(&mut parsed, json.get("commits"), "id")?;
            parsed.revision = push_revision(json, project.as_deref(), "checkout_sha");
        }
        _ => {}
    }
    Ok(parsed)
}

/// The plain text of an Atlassian Document Format node (Jira Cloud's rich text), one line per
/// block node.
fn adf_text(node: &Value, out: &mut String) {
    if let Some(t) = node.get("text").and_then(Value::as_str) {
        out.push_str(t);
    }
    if node.get("type").and_then(Value::as_str) == Some("hardBreak") {
        out.push('\n');
    }
    for child in node.get("content").and_then(Value::as_array).into_iter().flatten() {
        adf_text(child, out);
    }
    if matches!(
        node.get("type").and_then(Value::as_str),
        Some("paragraph" | "heading" | "listItem" | "codeBlock")
    ) {
        out.push('\n');
    }
}

/// Jira statuses that end a request without doing it.
const JIRA_CANCELLED: &[&str] = &["cancelled", "canceled", "declined", "won't do", "rejected"];

pub(crate) fn jira(received: &Received<'_>, json: &Value) -> Result<Parsed> {
    let id = delivery_id(received, &["x-atlassian-webhook-identifier"])?;
    let event = checked(&required(json, &["webhookEvent"])?, "event type")?;
    let mut parsed = Parsed { id, event: event.clone(), ..Parsed::default() };
    let at = json.get("timestamp").and_then(Value::as_i64).map(Timestamp::from_millis);
    parsed.sent_at = at;
    let Some(issue) = json.get("issue") else { return Ok(parsed) };
    let issue_id = required(issue, &["id"])?;
    parsed.object = Some(checked(&issue_id, "object")?);
    parsed.version = at;
    if let Some(key) = text(issue, &["key"]) {
        parsed.refs.push(reference(RefKind::Ticket, &key)?);
    }
    let fields = issue.get("fields").cloned().unwrap_or(Value::Null);
    parsed.summary = text(&fields, &["summary"]);
    parsed.account = text(&fields, &["reporter", "accountId"]).or_else(|| text(json, &["user", "accountId"]));
    let status = text(&fields, &["status", "name"]).unwrap_or_default().to_lowercase();
    parsed.cancelled = event == "jira:issue_deleted" || JIRA_CANCELLED.contains(&status.as_str());
    let description = jira_text(fields.get("description"));
    let opens = !parsed.cancelled;
    apply_text(&mut parsed, &description, opens);
    parsed.approved_by = jsm_approvers(&fields);
    if let Some(comment) = json.get("comment").filter(|_| event.starts_with("comment_")) {
        let body = jira_text(comment.get("body"));
        let written = required(comment, &["created"])?;
        parsed.comment = Some(ticket_comment(
            &required(comment, &["id"])?,
            text(comment, &["author", "accountId"]),
            &body,
            jira_time(&written)
                .ok_or_else(|| malformed(format!("comment.created is not a date and time: {written:?}")))?,
        )?);
    }
    Ok(parsed)
}

/// A Jira text field: plain (wiki markup) or Atlassian Document Format.
fn jira_text(value: Option<&Value>) -> String {
    match value {
        Some(Value::String(s)) => s.clone(),
        Some(node @ Value::Object(_)) => {
            let mut out = String::new();
            adf_text(node, &mut out);
            out
        }
        _ => String::new(),
    }
}

/// RFC 3339, or Jira's `2026-12-04T13:33:56.302+0100` (an offset without a colon).
fn jira_time(text: &str) -> Option<Timestamp> {
    Timestamp::parse_rfc3339(text).or_else(|| {
        let (head, tail) = text.split_at(text.len().checked_sub(5)?);
        let offset = tail.strip_prefix(['+', '-']).filter(|d| d.bytes().all(|b| b.is_ascii_digit()))?;
        Timestamp::parse_rfc3339(&format!("{head}{}{}:{}", &tail[..1], &offset[..2], &offset[2..]))
    })
}

/// A ticket's comment, its text cleaned of control characters and cut to [`crate::MAX_COMMENT`].
fn ticket_comment(
    id: &str,
    account: Option<String>,
    body: &str,
    written_at: Timestamp,
) -> Result<crate::TicketComment> {
    let mut body: String = writ_core::machine::clean_text(body.trim());
    if body.chars().count() > crate::MAX_COMMENT {
        body = body.chars().take(crate::MAX_COMMENT - 12).collect::<String>() + " [truncated]";
    }
    if body.is_empty() {
        return Err(malformed("the comment has no text"));
    }
    Ok(crate::TicketComment { id: checked(id, "comment id")?, account, body, written_at })
}

/// The approvers who approved a Jira Service Management approval that ended approved: the
/// approval field (a custom field whose id varies by site) holds a list of approvals, each with
/// `finalDecision` and `approvers: [{approver: {accountId}, approverDecision}]`.
fn jsm_approvers(fields: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let approvals = fields
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(key, _)| key.starts_with("customfield_"))
        .filter_map(|(_, value)| value.as_array())
        .flatten()
        .filter(|a| {
            a.get("approvers").is_some() && text(a, &["finalDecision"]).as_deref() == Some("approved")
        });
    for approval in approvals {
        for approver in approval.get("approvers").and_then(Value::as_array).into_iter().flatten() {
            if text(approver, &["approverDecision"]).as_deref() == Some("approved")
                && let Some(account) = text(approver, &["approver", "accountId"])
                && !out.contains(&account)
            {
                out.push(account);
            }
        }
    }
    out
}

/// A ServiceNow value: a string, or a reference field `{value, link}` / `{value, display_value}`.
fn now_value(record: &Value, field: &str) -> Option<String> {
    text(record, &[field]).or_else(|| text(record, &[field, "value"]))
}

fn now_state(state: &str) -> &'static str {
    match state {
        "-5" => "new",
        "-4" => "assess",
        "-3" => "authorize",
        "-2" => "scheduled",
        "-1" => "implement",
        "0" => "review",
        "3" => "closed",
        "4" => "canceled",
        _ => "updated",
    }
}

/// A ServiceNow sys_id: 32 hexadecimal digits.
fn now_id(record: &Value, field: &str) -> Result<String> {
    let id = now_value(record, field).ok_or_else(|| malformed(format!("the record has no {field}")))?;
    if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(malformed(format!("{field} must be 32 hexadecimal digits")));
    }
    Ok(id)
}

pub(crate) fn servicenow(received: &Received<'_>, json: &Value) -> Result<Parsed> {
    let record = json.get("record").unwrap_or(json);
    let sys_id = now_id(record, "sys_id")?;
    if record.get("element_id").is_some() {
        // A sys_journal_field record: a work note or additional comment on the record it names.
        let element = now_value(record, "element").unwrap_or_default();
        if !matches!(element.as_str(), "work_notes" | "comments") {
            return Err(malformed(format!(
                "a journal entry of {element:?}: only work_notes and comments are read"
            )));
        }
        let written = now_value(record, "sys_created_on")
            .ok_or_else(|| malformed("the journal entry has no sys_created_on"))?;
        let written_at = time(&written).ok_or_else(|| {
            malformed(format!("sys_created_on must be YYYY-MM-DD HH:MM:SS (UTC), got {written:?}"))
        })?;
        let id = match ["idempotency-key", "webhook-id"].iter().find_map(|h| received.header(h)) {
            Some(id) => checked(id, "delivery id")?,
            None => checked(&format!("{sys_id}@{}", written_at.to_rfc3339()), "delivery id")?,
        };
        return Ok(Parsed {
            id,
            event: checked(&format!("sys_journal_field.{element}"), "event type")?,
            // Not a version of the ticket (like an approval record): it never makes another late.
            object: Some(now_id(record, "element_id")?),
            account: now_value(record, "sys_created_by"),
            comment: Some(ticket_comment(
                &sys_id,
                now_value(record, "sys_created_by"),
                &now_value(record, "value").unwrap_or_default(),
                written_at,
            )?),
            ..Parsed::default()
        });
    }
    let updated =
        now_value(record, "sys_updated_on").ok_or_else(|| malformed("the record has no sys_updated_on"))?;
    let version = time(&updated).ok_or_else(|| {
        malformed(format!("sys_updated_on must be YYYY-MM-DD HH:MM:SS (UTC), got {updated:?}"))
    })?;
    let id = match ["idempotency-key", "webhook-id"].iter().find_map(|h| received.header(h)) {
        Some(id) => checked(id, "delivery id")?,
        None => checked(&format!("{sys_id}@{}", version.to_rfc3339()), "delivery id")?,
    };
    let state = now_value(record, "state").unwrap_or_default();
    if record.get("sysapproval").is_some() {
        // A sysapproval_approver record: one person's decision on the change request it names.
        // It is not a version of the ticket, so it carries none (it is never "late").
        let approved = state == "approved";
        return Ok(Parsed {
            id,
            event: checked(
                &format!("sysapproval_approver.{}", if state.is_empty() { "unknown" } else { &state }),
                "event type",
            )?,
            object: Some(now_id(record, "sysapproval")?),
            approved_by: now_value(record, "approver").filter(|_| approved).into_iter().collect(),
            ..Parsed::default()
        });
    }
    let mut parsed = Parsed {
        id,
        event: format!("change_request.{}", now_state(&state)),
        object: Some(sys_id),
        version: Some(version),
        cancelled: state == "4",
        account: now_value(record, "requested_by"),
        summary: now_value(record, "short_description"),
        ..Parsed::default()
    };
    if let Some(number) = now_value(record, "number") {
        parsed.refs.push(reference(RefKind::Ticket, &number)?);
    }
    // The planned start and end of a change request, which the Table API gives in UTC.
    if let (Some(start), Some(end)) = (now_value(record, "start_date"), now_value(record, "end_date")) {
        let instant = |field: &str, value: &str| {
            time(value)
                .map(Timestamp::to_rfc3339)
                .ok_or_else(|| malformed(format!("{field} must be YYYY-MM-DD HH:MM:SS (UTC), got {value:?}")))
        };
        parsed.window = Some((instant("start_date", &start)?, instant("end_date", &end)?, "UTC".to_owned()));
    }
    let mut body = now_value(record, "description").unwrap_or_default();
    if let Some(change) = now_value(record, "u_writ_change") {
        body.push_str(&format!("\nWrit-Change: {change}"));
    }
    let opens = !parsed.cancelled;
    apply_text(&mut parsed, &body, opens);
    Ok(parsed)
}

/// Writ's envelope for any Standard Webhooks sender: `{type, object?, version?, references?,
/// account?, summary?, text?, cancelled?}`.
pub(crate) fn standard(received: &Received<'_>, json: &Value) -> Result<Parsed> {
    let id = delivery_id(received, &["webhook-id"])?;
    let event = checked(&required(json, &["type"])?, "event type")?;
    let mut parsed = Parsed {
        id,
        event,
        object: text(json, &["object"]).map(|o| checked(&o, "object")).transpose()?,
        version: version(json, &["version"])?,
        account: text(json, &["account"]),
        summary: text(json, &["summary"]),
        cancelled: json.get("cancelled") == Some(&Value::Bool(true)),
        approved_by: json
            .get("approved_by")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|a| a.as_str().map(str::trim).filter(|a| !a.is_empty()).map(str::to_owned))
            .collect(),
        ..Parsed::default()
    };
    for r in json.get("references").and_then(Value::as_array).into_iter().flatten() {
        let kind = RefKind::parse(&required(r, &["kind"])?).map_err(|e| malformed(e.to_string()))?;
        parsed.refs.push(reference(kind, &required(r, &["value"])?)?);
    }
    let opens = !parsed.cancelled;
    apply_text(&mut parsed, &text(json, &["text"]).unwrap_or_default(), opens);
    Ok(parsed)
}
