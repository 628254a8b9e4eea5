//! `writ exception`: request, approve, reject, renew, revoke, list, show and export
//! exceptions, on the local database or (with `--server`) over the API. Both render from the
//! same JSON, so the text, `--json` and the exports look the same either way.

// Indexing a `serde_json::Value` by a key returns `Null` when the key is absent or the value is
// not an object; it never panics, so the slice-indexing lint does not apply to it here.
#![allow(clippy::indexing_slicing)]

use std::io::Write;

use serde_json::{Value, json};
use writ_core::exception::{Exception, ExceptionState};
use writ_core::name::IdentityName;
use writ_core::time::{Duration, Timestamp};
use writ_engine::Engine;
use writ_engine::exceptions::{ExceptionInput, Term};

use crate::CliError;
use crate::cli::{ExceptionCmd, ExceptionRequestArgs};
use crate::client::Client;
use crate::render;

/// The term from `--for` or `--until`.
pub fn term(duration: Option<&str>, until: Option<&str>) -> Result<Term, CliError> {
    match (duration, until) {
        (Some(d), None) => Ok(Term::For(Duration::parse(d)?)),
        (None, Some(u)) => Timestamp::parse_rfc3339(u).map(Term::Until).ok_or_else(|| {
            CliError::new("input.invalid_value", format!("--until {u:?} is not an RFC 3339 time"))
        }),
        _ => Err(CliError::new("input.missing_field", "give either --for DURATION or --until TIME")),
    }
}

/// A request from the command line (or the same fields over the API); `--finding` takes the
/// control and subject from that finding.
pub fn input(engine: &Engine, args: ExceptionRequestArgs) -> Result<ExceptionInput, CliError> {
    let (control, subject) = match (args.finding, args.control, args.subject) {
        (Some(id), None, None) => {
            let finding = engine.finding(&id)?;
            (finding.kind, finding.subject)
        }
        (None, Some(control), Some(subject)) => (control, subject),
        _ => {
            return Err(CliError::new(
                "input.missing_field",
                "name the finding (--finding) or the control and subject (--control, --subject)",
            ));
        }
    };
    Ok(ExceptionInput {
        actor: IdentityName::parse(&args.actor)?,
        control,
        subject,
        owner: IdentityName::parse(&args.owner)?,
        justification: args.justification,
        compensating_control: args.compensating_control,
        term: term(args.duration.as_deref(), args.until.as_deref())?,
    })
}

pub fn json(e: &Exception) -> Value {
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

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or("")
}

fn line(e: &Value) -> String {
    format!(
        "{}  {:<8} {:<28} {:<30} owner {:<10} until {}",
        text(&e["id"]),
        text(&e["state"]),
        text(&e["control"]),
        text(&e["subject"]),
        text(&e["owner"]),
        text(&e["expires_at"])
    )
}

fn table(items: &[Value]) -> String {
    if items.is_empty() {
        "no exceptions".to_owned()
    } else {
        items.iter().map(line).collect::<Vec<_>>().join("\n")
    }
}

fn approvers(e: &Value) -> Vec<String> {
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

fn detail(e: &Value) -> String {
    let mut out = format!(
        "{}  {} · {}\n  subject       {}\n  owner         {}\n  requested by  {} at {}\n  expires       {}\n",
        text(&e["id"]),
        text(&e["control"]),
        text(&e["state"]),
        text(&e["subject"]),
        text(&e["owner"]),
        text(&e["requester"]),
        text(&e["requested_at"]),
        text(&e["expires_at"]),
    );
    if let Some(until) = e["renewal_until"].as_str() {
        out.push_str(&format!("  renewal       until {until}, awaiting approval\n"));
    }
    let given = approvers(e);
    out.push_str(&format!(
        "  approvals     {} of {}{}\n",
        given.len(),
        e["approvals_needed"],
        if given.is_empty() { String::new() } else { format!(": {}", given.join(", ")) }
    ));
    out.push_str(&format!(
        "  justification {}\n  compensating  {}",
        text(&e["justification"]),
        text(&e["compensating_control"])
    ));
    out
}

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
pub fn export(items: &[Value], format: &str) -> Result<Vec<u8>, CliError> {
    match format {
        "json" => {
            serde_json::to_vec_pretty(items).map_err(|e| CliError::new("internal.export", e.to_string()))
        }
        "csv" => {
            let fail = |e: csv::Error| CliError::new("internal.export", e.to_string());
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
            writer.into_inner().map_err(|e| CliError::new("internal.export", e.to_string()))
        }
        other => Err(CliError::new(
            "input.invalid_value",
            format!("export format {other:?}: expected csv or json"),
        )),
    }
}

/// Keeps live exceptions that end within `within` of `now`.
fn expiring(items: Vec<Value>, within: Option<&str>, now: Timestamp) -> Result<Vec<Value>, CliError> {
    let Some(within) = within else { return Ok(items) };
    let limit = now.plus(Duration::parse(within)?);
    Ok(items
        .into_iter()
        .filter(|e| {
            matches!(text(&e["state"]), "pending" | "active")
                && e["expires_at"].as_str().and_then(Timestamp::parse_rfc3339).is_some_and(|at| at <= limit)
        })
        .collect())
}

fn write_export(
    bytes: &[u8],
    output: Option<&std::path::Path>,
    count: usize,
    json: bool,
) -> Result<(), CliError> {
    let io = |e: std::io::Error| CliError::new("input.invalid_path", e.to_string());
    match output {
        Some(path) => {
            std::fs::write(path, bytes).map_err(io)?;
            let value = json!({ "file": path.display().to_string(), "exceptions": count });
            render::print(json, value, || format!("wrote {count} exception(s) to {}", path.display()));
        }
        None => std::io::stdout().write_all(bytes).map_err(io)?,
    }
    Ok(())
}

fn state(state: Option<&str>) -> Result<Option<ExceptionState>, CliError> {
    Ok(state.map(ExceptionState::parse).transpose()?)
}

fn show(value: Value, json: bool) {
    let done = format!("{} {}", text(&value["id"]), text(&value["state"]));
    render::print(json, value, || done);
}

/// On the local database.
pub fn run_local(engine: &Engine, command: ExceptionCmd, json: bool) -> Result<(), CliError> {
    let name = |actor: &str| IdentityName::parse(actor);
    match command {
        ExceptionCmd::Request(args) => {
            let exception = engine.request_exception(input(engine, args)?, writ_engine::random_bits()?)?;
            show(self::json(&exception), json);
        }
        ExceptionCmd::Approve { id, actor } => {
            show(self::json(&engine.approve_exception(&name(&actor)?, &id)?), json)
        }
        ExceptionCmd::Reject { id, actor, reason } => {
            show(self::json(&engine.reject_exception(&name(&actor)?, &id, reason)?), json);
        }
        ExceptionCmd::Renew { id, actor, duration, until, reason } => {
            let term = term(duration.as_deref(), until.as_deref())?;
            show(self::json(&engine.renew_exception(&name(&actor)?, &id, term, reason)?), json);
        }
        ExceptionCmd::Revoke { id, actor, reason } => {
            show(self::json(&engine.revoke_exception(&name(&actor)?, &id, reason)?), json);
        }
        ExceptionCmd::List { state: wanted, expiring_within } => {
            let items: Vec<Value> =
                engine.exceptions(state(wanted.as_deref())?)?.iter().map(self::json).collect();
            let items = expiring(items, expiring_within.as_deref(), engine.now())?;
            let text = table(&items);
            render::print(json, Value::Array(items), || text);
        }
        ExceptionCmd::Show { id } => {
            let value = self::json(&engine.exception(&id)?);
            let text = detail(&value);
            render::print(json, value, || text);
        }
        ExceptionCmd::Export { format, state: wanted, output } => {
            let items: Vec<Value> =
                engine.exceptions(state(wanted.as_deref())?)?.iter().map(self::json).collect();
            write_export(&export(&items, &format)?, output.as_deref(), items.len(), json)?;
        }
    }
    Ok(())
}

/// Over the API, as the token's identity (`--as` must name it).
pub fn run_remote(client: &Client, command: ExceptionCmd, json: bool) -> Result<(), CliError> {
    let list = |wanted: Option<&str>| -> Result<Vec<Value>, CliError> {
        state(wanted)?;
        let path = wanted
            .map_or_else(|| "/api/v1/exceptions".to_owned(), |s| format!("/api/v1/exceptions?state={s}"));
        Ok(client.json("GET", &path, None)?["items"].as_array().cloned().unwrap_or_default())
    };
    let post = |actor: &str, id: &str, step: &str, body: Value| -> Result<(), CliError> {
        crate::client::check_actor(client, Some(actor))?;
        writ_core::exception::ExceptionId::parse(id)?;
        show(client.json("POST", &format!("/api/v1/exceptions/{id}/{step}"), Some(body))?, json);
        Ok(())
    };
    match command {
        ExceptionCmd::Request(args) => {
            crate::client::check_actor(client, Some(&args.actor))?;
            term(args.duration.as_deref(), args.until.as_deref())?;
            let body = json!({
                "finding": args.finding, "control": args.control, "subject": args.subject,
                "owner": args.owner, "justification": args.justification,
                "compensating_control": args.compensating_control,
                "for": args.duration, "until": args.until,
            });
            show(client.json("POST", "/api/v1/exceptions", Some(body))?, json);
        }
        ExceptionCmd::Approve { id, actor } => post(&actor, &id, "approve", json!({}))?,
        ExceptionCmd::Reject { id, actor, reason } => {
            post(&actor, &id, "reject", json!({ "reason": reason }))?
        }
        ExceptionCmd::Renew { id, actor, duration, until, reason } => {
            term(duration.as_deref(), until.as_deref())?;
            post(&actor, &id, "renew", json!({ "for": duration, "until": until, "reason": reason }))?;
        }
        ExceptionCmd::Revoke { id, actor, reason } => {
            post(&actor, &id, "revoke", json!({ "reason": reason }))?
        }
        ExceptionCmd::List { state: wanted, expiring_within } => {
            let now = writ_engine::Clock::now(&writ_engine::SystemClock);
            let items = expiring(list(wanted.as_deref())?, expiring_within.as_deref(), now)?;
            let text = table(&items);
            render::print(json, Value::Array(items), || text);
        }
        ExceptionCmd::Show { id } => {
            writ_core::exception::ExceptionId::parse(&id)?;
            let value = client.json("GET", &format!("/api/v1/exceptions/{id}"), None)?;
            let text = detail(&value);
            render::print(json, value, || text);
        }
        ExceptionCmd::Export { format, state: wanted, output } => {
            let items = list(wanted.as_deref())?;
            write_export(&export(&items, &format)?, output.as_deref(), items.len(), json)?;
        }
    }
    Ok(())
}
