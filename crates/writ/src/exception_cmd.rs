//! `writ exception`: request, approve, reject, renew, revoke, list, show and export
//! exceptions, on the local database or (with `--server`) over the API. Both render from the
//! same JSON, so the text, `--json` and the exports look the same either way.

// Indexing a `serde_json::Value` by a key returns `Null` when the key is absent or the value is
// not an object; it never panics, so the slice-indexing lint does not apply to it here.
#![allow(clippy::indexing_slicing)]

use std::io::Write;

use serde_json::{Value, json};
use writ_core::exception::ExceptionState;
use writ_core::name::IdentityName;
use writ_core::time::{Duration, Timestamp};
use writ_engine::Engine;

use crate::CliError;
use crate::cli::{ExceptionCmd, ExceptionRequestArgs};
use crate::http::Client;
use crate::render;

/// The request the command line describes, through the same checks as the API's body.
fn request(args: ExceptionRequestArgs) -> Result<writ_api::wire::CheckedException, CliError> {
    let ExceptionRequestArgs {
        actor: _,
        finding,
        control,
        subject,
        owner,
        justification,
        compensating_control,
        duration,
        until,
    } = args;
    writ_api::wire::NewException {
        finding,
        control,
        subject,
        owner: Some(owner),
        justification: Some(justification),
        compensating_control: Some(compensating_control),
        duration,
        until,
    }
    .check()
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
    let given = writ_api::view::approvers(e);
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
            let actor = args.actor.clone();
            let input = request(args)?.into_input(engine, &actor)?;
            let exception = engine.request_exception(input, writ_engine::random_bits()?)?;
            show(writ_api::view::exception_json(&exception), json);
        }
        ExceptionCmd::Approve { id, actor } => {
            show(writ_api::view::exception_json(&engine.approve_exception(&name(&actor)?, &id)?), json)
        }
        ExceptionCmd::Reject { id, actor, reason } => {
            show(
                writ_api::view::exception_json(&engine.reject_exception(&name(&actor)?, &id, reason)?),
                json,
            );
        }
        ExceptionCmd::Renew { id, actor, duration, until, reason } => {
            let term = writ_api::wire::term(duration.as_deref(), until.as_deref())?;
            show(
                writ_api::view::exception_json(&engine.renew_exception(&name(&actor)?, &id, term, reason)?),
                json,
            );
        }
        ExceptionCmd::Revoke { id, actor, reason } => {
            show(
                writ_api::view::exception_json(&engine.revoke_exception(&name(&actor)?, &id, reason)?),
                json,
            );
        }
        ExceptionCmd::List { state: wanted, expiring_within } => {
            let items: Vec<Value> = engine
                .exceptions(state(wanted.as_deref())?)?
                .iter()
                .map(writ_api::view::exception_json)
                .collect();
            let items = expiring(items, expiring_within.as_deref(), engine.now())?;
            let text = table(&items);
            render::print(json, Value::Array(items), || text);
        }
        ExceptionCmd::Show { id } => {
            let value = writ_api::view::exception_json(&engine.exception(&id)?);
            let text = detail(&value);
            render::print(json, value, || text);
        }
        ExceptionCmd::Export { format, state: wanted, output } => {
            let items: Vec<Value> = engine
                .exceptions(state(wanted.as_deref())?)?
                .iter()
                .map(writ_api::view::exception_json)
                .collect();
            write_export(
                &writ_api::view::exceptions_export(&items, &format)?,
                output.as_deref(),
                items.len(),
                json,
            )?;
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
        crate::http::check_actor(client, Some(actor))?;
        writ_core::exception::ExceptionId::parse(id)?;
        show(client.json("POST", &format!("/api/v1/exceptions/{id}/{step}"), Some(body))?, json);
        Ok(())
    };
    match command {
        ExceptionCmd::Request(args) => {
            crate::http::check_actor(client, Some(&args.actor))?;
            writ_api::wire::term(args.duration.as_deref(), args.until.as_deref())?;
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
            writ_api::wire::term(duration.as_deref(), until.as_deref())?;
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
            write_export(
                &writ_api::view::exceptions_export(&items, &format)?,
                output.as_deref(),
                items.len(),
                json,
            )?;
        }
    }
    Ok(())
}
