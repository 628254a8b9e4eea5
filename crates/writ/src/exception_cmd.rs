//! `writ exception`: request, approve, reject, renew, revoke, list, show and export
//! exceptions, on the local database or (with `--server`) over the API. Both render from the
//! same views, so the text, `--json` and the exports look the same either way.

use std::io::Write;

use serde_json::{Value, json};
use writ_api::view::{ExceptionView, List};
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

fn line(e: &ExceptionView) -> String {
    format!(
        "{}  {:<8} {:<28} {:<30} owner {:<10} until {}",
        e.id, e.state, e.control, e.subject, e.owner, e.expires_at
    )
}

fn table(items: &[ExceptionView]) -> String {
    if items.is_empty() {
        "no exceptions".to_owned()
    } else {
        items.iter().map(line).collect::<Vec<_>>().join("\n")
    }
}

fn detail(e: &ExceptionView) -> String {
    let mut out = format!(
        "{}  {} · {}\n  subject       {}\n  owner         {}\n  requested by  {} at {}\n  expires       {}\n",
        e.id, e.control, e.state, e.subject, e.owner, e.requester, e.requested_at, e.expires_at,
    );
    if let Some(until) = &e.renewal_until {
        out.push_str(&format!("  renewal       until {until}, awaiting approval\n"));
    }
    let given = e.approvers();
    out.push_str(&format!(
        "  approvals     {} of {}{}\n",
        given.len(),
        e.approvals_needed,
        if given.is_empty() { String::new() } else { format!(": {}", given.join(", ")) }
    ));
    out.push_str(&format!("  justification {}\n  compensating  {}", e.justification, e.compensating_control));
    out
}

/// Keeps live exceptions that end within `within` of `now`.
fn expiring(
    items: Vec<ExceptionView>,
    within: Option<&str>,
    now: Timestamp,
) -> Result<Vec<ExceptionView>, CliError> {
    let Some(within) = within else { return Ok(items) };
    let limit = now.plus(Duration::parse(within)?);
    Ok(items
        .into_iter()
        .filter(|e| {
            matches!(e.state.as_str(), "pending" | "active")
                && Timestamp::parse_rfc3339(&e.expires_at).is_some_and(|at| at <= limit)
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

fn show(view: &ExceptionView, json: bool) {
    render::print(json, view, || format!("{} {}", view.id, view.state));
}

/// On the local database.
pub fn run_local(engine: &Engine, command: ExceptionCmd, json: bool) -> Result<(), CliError> {
    let name = |actor: &str| IdentityName::parse(actor);
    match command {
        ExceptionCmd::Request(args) => {
            let actor = args.actor.clone();
            let input = request(args)?.into_input(engine, &actor)?;
            let exception = engine.request_exception(input, writ_engine::random_bits()?)?;
            show(&ExceptionView::of(&exception), json);
        }
        ExceptionCmd::Approve { id, actor } => {
            show(&ExceptionView::of(&engine.approve_exception(&name(&actor)?, &id)?), json)
        }
        ExceptionCmd::Reject { id, actor, reason } => {
            show(&ExceptionView::of(&engine.reject_exception(&name(&actor)?, &id, reason)?), json);
        }
        ExceptionCmd::Renew { id, actor, duration, until, reason } => {
            let term = writ_api::wire::term(duration.as_deref(), until.as_deref())?;
            show(&ExceptionView::of(&engine.renew_exception(&name(&actor)?, &id, term, reason)?), json);
        }
        ExceptionCmd::Revoke { id, actor, reason } => {
            show(&ExceptionView::of(&engine.revoke_exception(&name(&actor)?, &id, reason)?), json);
        }
        ExceptionCmd::List { state: wanted, expiring_within } => {
            let items = engine.exceptions(state(wanted.as_deref())?)?.iter().map(ExceptionView::of).collect();
            let items = expiring(items, expiring_within.as_deref(), engine.now())?;
            render::print(json, &items, || table(&items));
        }
        ExceptionCmd::Show { id } => {
            let view = ExceptionView::of(&engine.exception(&id)?);
            render::print(json, &view, || detail(&view));
        }
        ExceptionCmd::Export { format, state: wanted, output } => {
            let items: Vec<ExceptionView> =
                engine.exceptions(state(wanted.as_deref())?)?.iter().map(ExceptionView::of).collect();
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
    let list = |wanted: Option<&str>| -> Result<Vec<ExceptionView>, CliError> {
        state(wanted)?;
        let path = wanted
            .map_or_else(|| "/api/v1/exceptions".to_owned(), |s| format!("/api/v1/exceptions?state={s}"));
        Ok(client.view::<List<ExceptionView>>("GET", &path, None)?.items)
    };
    let post = |actor: &str, id: &str, step: &str, body: Value| -> Result<(), CliError> {
        crate::http::check_actor(client, Some(actor))?;
        writ_core::exception::ExceptionId::parse(id)?;
        show(&client.view("POST", &format!("/api/v1/exceptions/{id}/{step}"), Some(body))?, json);
        Ok(())
    };
    match command {
        ExceptionCmd::Request(args) => {
            crate::http::check_actor(client, Some(&args.actor))?;
            writ_api::wire::term(args.duration.as_deref(), args.until.as_deref())?;
            let body = writ_api::wire::NewException {
                finding: args.finding,
                control: args.control,
                subject: args.subject,
                owner: Some(args.owner),
                justification: Some(args.justification),
                compensating_control: Some(args.compensating_control),
                duration: args.duration,
                until: args.until,
            };
            let body = serde_json::to_value(&body).map_err(|e| CliError::new("internal", e.to_string()))?;
            show(&client.view("POST", "/api/v1/exceptions", Some(body))?, json);
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
            render::print(json, &items, || table(&items));
        }
        ExceptionCmd::Show { id } => {
            writ_core::exception::ExceptionId::parse(&id)?;
            let view: ExceptionView = client.view("GET", &format!("/api/v1/exceptions/{id}"), None)?;
            render::print(json, &view, || detail(&view));
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
