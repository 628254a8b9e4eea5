//! The CLI as a client of `writ serve`: with `--server URL` (or `WRIT_SERVER`) and an API token
//! in `WRIT_TOKEN`, commands go over HTTP instead of opening a database, and print the same
//! output (the same JSON with `--json`, the same text otherwise; the server's JSON is what the
//! local renderers are built from). The acting identity is the token's: an `--as` naming anyone
//! else is refused before anything is sent.
//!
//! The token is read from the environment only, never from an argument (which other users can
//! see in the process list).

// Indexing a `serde_json::Value` by a key returns `Null` when the key is absent or the value is
// not an object; it never panics, so the slice-indexing lint does not apply to it here.
#![allow(clippy::indexing_slicing)]

use serde_json::{Value, json};
use writ_core::change::ChangeId;
use writ_core::identity::{Grant, Identity, IdentityKind};
use writ_core::name::{EntitlementRef, IdentityName, OrgName};
use writ_core::time::Timestamp;

use crate::cli::{
    AuditCmd, ChangeCmd, EvidenceCmd, IdentityCmd, LedgerCmd, RoleCmd, TargetCmd, TokenCmd, Top,
};
use crate::http::{Client, check_actor, percent};
use crate::{CliError, render};

fn not_remote(what: &str) -> CliError {
    CliError::new(
        "input.not_remote",
        format!("{what} works on a local database only; unset WRIT_SERVER / --server"),
    )
}

pub fn run(server: &str, command: Top, json: bool) -> Result<(), CliError> {
    let token = std::env::var("WRIT_TOKEN").map_err(|_| {
        // Caught before anything is sent, so an input error here; the server itself would answer
        // 401 auth.missing_token.
        CliError::new(
            "input.missing_option",
            "talking to a server needs an API token in WRIT_TOKEN (see `writ token create`); \
             without one the server refuses with auth.missing_token",
        )
    })?;
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let client = Client { base: server.to_owned(), token, agent };
    match command {
        Top::Identity(command) => identity(&client, command, json),
        Top::Target(command) => target(&client, command, json),
        Top::Change(command) => change(&client, command, json),
        Top::Evidence(command) => evidence(&client, command, json),
        Top::Token(command) => token_cmd(&client, command, json),
        Top::Role(command) => role(&client, command, json),
        Top::Ledger(LedgerCmd::Checkpoint) => {
            let value = client.json("POST", "/api/v1/ledger/checkpoints", None)?;
            let note = value["note"].as_str().unwrap_or_default().trim_end().to_owned();
            render::print(json, value, || note);
            Ok(())
        }
        Top::Ledger(LedgerCmd::Verify { .. }) => {
            let value = client.json("GET", "/api/v1/ledger/verify", None)?;
            crate::ledger::report_verification(value, json)
        }
        Top::Ledger(_) => Err(not_remote("this ledger command")),
        Top::Policy(crate::cli::PolicyCmd::Reload { dir: None }) => {
            let value = client.json("POST", "/api/v1/policy/reload", None)?;
            let loaded = match (value["hash"].as_str(), value["ledger_index"].as_u64()) {
                (Some(hash), Some(index)) => {
                    writ_engine::policy::Loaded::Changed { hash: hash.to_owned(), index }
                }
                (hash, _) => {
                    writ_engine::policy::Loaded::Unchanged { hash: hash.unwrap_or_default().to_owned() }
                }
            };
            crate::policy_cmd::print_loaded(&loaded, json)
        }
        Top::Policy(command @ (crate::cli::PolicyCmd::Check { .. } | crate::cli::PolicyCmd::Test { .. })) => {
            crate::policy_cmd::run(None, command, json)
        }
        Top::Policy(_) => Err(not_remote("this policy command (a server reloads its own --policy-dir)")),
        Top::Audit(AuditCmd::Bundle { change, all: _, out }) => {
            let path = match change {
                Some(id) => format!("/api/v1/audit/bundle?change={}", ChangeId::parse(&id)?),
                None => "/api/v1/audit/bundle".to_owned(),
            };
            crate::audit::refuse_existing(&out)?;
            let archive = client.send("GET", &path, None, "application/json")?;
            let bundle = crate::audit::untar(&archive, &out)?;
            crate::audit::report(&bundle, &out, json);
            Ok(())
        }
        // Verifying a bundle needs no database and no server.
        Top::Audit(AuditCmd::Verify { path, trusted }) => crate::audit::verify(&path, &trusted, json),
        Top::Breakglass(args) => {
            check_actor(&client, Some(&args.actor))?;
            let body = json!({
                "identity": args.identity, "grant": args.grant, "for": args.duration,
                "reason": args.reason, "ticket": args.ticket,
            });
            let value = client.json("POST", "/api/v1/breakglass", Some(body))?;
            let error =
                value["executions"].as_array().and_then(|e| e.last()).and_then(|e| e["error"].as_str());
            crate::render::report_state(text(&value["id"]), text(&value["state"]), error, json)
        }
        Top::Finding(command) => finding(&client, command, json),
        Top::Exception(command) => crate::exception_cmd::run_remote(&client, command, json),
        Top::Intake(command) => crate::intake_cmd::run_remote(&client, command, json),
        Top::RunDue(_) => Err(CliError::new(
            "input.not_remote",
            "a server does due work itself (every second, on one instance)",
        )),
        _ => Err(not_remote("this command")),
    }
}

fn finding(client: &Client, command: crate::cli::FindingCmd, json: bool) -> Result<(), CliError> {
    use crate::cli::FindingCmd;
    let line = |f: &Value| {
        format!(
            "{}  {:<9} {:<28} {}",
            text(&f["id"]),
            text(&f["state"]),
            text(&f["kind"]),
            text(&f["subject"])
        )
    };
    match command {
        FindingCmd::List { state } => {
            let path = state
                .map_or_else(|| "/api/v1/findings".to_owned(), |s| format!("/api/v1/findings?state={s}"));
            let items = client.json("GET", &path, None)?["items"].clone();
            let lines: Vec<String> =
                items.as_array().map(|a| a.iter().map(line).collect()).unwrap_or_default();
            render::print(json, items, || {
                if lines.is_empty() { "no findings".to_owned() } else { lines.join("\n") }
            });
        }
        FindingCmd::Show { id } => {
            let value = client.json("GET", &format!("/api/v1/findings/{id}"), None)?;
            let detail = format!("{}\n  {}", line(&value), text(&value["detail"]));
            render::print(json, value, || detail);
        }
        FindingCmd::Resolve { id, actor, note } => {
            check_actor(client, Some(&actor))?;
            writ_core::finding::Finding::parse_id(&id)?;
            let value = client.json(
                "POST",
                &format!("/api/v1/findings/{id}/resolve"),
                Some(json!({ "note": note })),
            )?;
            let done = format!("{} {}", text(&value["id"]), text(&value["state"]));
            render::print(json, value, || done);
        }
    }
    Ok(())
}

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or_default()
}

fn time(value: &Value) -> Timestamp {
    value.as_str().and_then(Timestamp::parse_rfc3339).unwrap_or(Timestamp::from_millis(0))
}

fn identity_of(value: &Value) -> Result<Identity, CliError> {
    Ok(Identity {
        name: IdentityName::parse(text(&value["name"]))?,
        kind: IdentityKind::parse(text(&value["kind"]))?,
        owner: value["owner"].as_str().map(IdentityName::parse).transpose()?,
        vendor: value["vendor"].as_str().map(OrgName::parse).transpose()?,
        created_at: time(&value["created_at"]),
    })
}

fn grant_of(identity: &IdentityName, value: &Value) -> Result<Grant, CliError> {
    Ok(Grant {
        identity: identity.clone(),
        entitlement: EntitlementRef::parse(&format!(
            "{}:{}",
            text(&value["target"]),
            text(&value["entitlement"])
        ))?,
        change: ChangeId::parse(text(&value["change"]))?,
        granted_at: time(&value["granted_at"]),
        expires_at: value["expires_at"].as_str().and_then(Timestamp::parse_rfc3339),
    })
}

fn identity(client: &Client, command: IdentityCmd, json: bool) -> Result<(), CliError> {
    match command {
        IdentityCmd::Add { name, kind, owner, vendor, actor } => {
            check_actor(client, actor.as_deref())?;
            let value = client.json(
                "POST",
                "/api/v1/identities",
                Some(json!({ "name": name, "kind": kind, "owner": owner, "vendor": vendor })),
            )?;
            let added = identity_of(&value)?;
            render::print(json, value, || format!("added {} ({})", added.name, added.kind));
        }
        IdentityCmd::List => {
            let items = client.all("/api/v1/identities", "after")?;
            let identities = items.iter().map(identity_of).collect::<Result<Vec<_>, _>>()?;
            render::print(json, Value::Array(items), || writ_api::text::identity_table(&identities));
        }
        IdentityCmd::Show { name } => {
            let value =
                client.json("GET", &format!("/api/v1/identities/{}", IdentityName::parse(&name)?), None)?;
            let shown = identity_of(&value)?;
            let grants = value["grants"]
                .as_array()
                .map(|g| g.iter().map(|g| grant_of(&shown.name, g)).collect::<Result<Vec<_>, _>>())
                .transpose()?
                .unwrap_or_default();
            render::print(json, value, || writ_api::text::identity_detail(&shown, &grants));
        }
        IdentityCmd::Offboard { .. } => return Err(not_remote("identity offboard")),
    }
    Ok(())
}

fn target(client: &Client, command: TargetCmd, json: bool) -> Result<(), CliError> {
    match command {
        TargetCmd::Add(_) => Err(CliError::new(
            "input.not_remote",
            "register targets on the server's machine (its paths), or POST /api/v1/targets",
        )),
        TargetCmd::List => {
            let items = client.items("/api/v1/targets")?;
            let lines: Vec<String> = items
                .iter()
                .map(|t| {
                    let repo = t["settings"]["repo"].as_str().unwrap_or("-");
                    format!("{}\t{}\t{repo}", text(&t["name"]), text(&t["connector"]))
                })
                .collect();
            render::print(json, Value::Array(items), || lines.join("\n"));
            Ok(())
        }
        TargetCmd::Entitlements { name } => {
            let names = client.items(&format!("/api/v1/targets/{name}/entitlements"))?;
            let lines: Vec<&str> = names.iter().map(text).collect();
            let joined = lines.join("\n");
            render::print(json, Value::Array(names), || joined);
            Ok(())
        }
    }
}

fn change(client: &Client, command: ChangeCmd, json: bool) -> Result<(), CliError> {
    let step = |id: &str, step: &str, body: Value| {
        let id = ChangeId::parse(id)?;
        client.json("POST", &format!("/api/v1/changes/{id}/{step}"), Some(body))
    };
    let value = match command {
        ChangeCmd::Request(args) => {
            check_actor(client, Some(&args.actor))?;
            let body = json!({
                "identity": args.identity, "grant": args.grant, "revoke": args.revoke, "rotate": args.rotate, "for": args.duration,
                "justification": args.justification, "ticket": args.ticket, "commit": args.commit, "pr": args.pr,
                "event": args.event, "on_behalf_of": args.on_behalf_of,
            });
            let value = client.json("POST", "/api/v1/changes", Some(body))?;
            let id = text(&value["id"]).to_owned();
            render::print(json, json!({ "id": id, "state": value["state"] }), || id.clone());
            return Ok(());
        }
        ChangeCmd::Approve { id, actor, on_behalf_of, valid_for } => {
            check_actor(client, Some(&actor))?;
            step(&id, "approve", json!({ "on_behalf_of": on_behalf_of, "valid_for": valid_for }))?
        }
        ChangeCmd::Reject { id, actor, reason } => {
            check_actor(client, Some(&actor))?;
            step(&id, "reject", json!({ "reason": reason }))?
        }
        ChangeCmd::Cancel { id, actor, reason } => {
            check_actor(client, Some(&actor))?;
            step(&id, "cancel", json!({ "reason": reason }))?
        }
        ChangeCmd::Execute { id, actor } => {
            check_actor(client, actor.as_deref())?;
            step(&id, "execute", json!({}))?
        }
        ChangeCmd::Verify { id } => step(&id, "verify", json!({}))?,
        ChangeCmd::Review { id, actor, notes } => {
            check_actor(client, Some(&actor))?;
            step(&id, "review", json!({ "notes": notes }))?
        }
        ChangeCmd::Show { id } => {
            let path = format!("/api/v1/changes/{}", ChangeId::parse(&id)?);
            let view: writ_api::view::ChangeView = client.view("GET", &path, None)?;
            render::print(json, &view, || writ_api::text::trail(&view));
            return Ok(());
        }
        ChangeCmd::List { state } => {
            let path =
                state.map_or_else(|| "/api/v1/changes".to_owned(), |s| format!("/api/v1/changes?state={s}"));
            let items = client.all(&path, "before")?;
            let lines: Vec<String> = items
                .iter()
                .map(|c| {
                    format!(
                        "{}  {:<20} {:<22} {}",
                        text(&c["id"]),
                        text(&c["state"]),
                        text(&c["kind"]),
                        text(&c["requester"])
                    )
                })
                .collect();
            render::print(json, Value::Array(items), || lines.join("\n"));
            return Ok(());
        }
    };
    let error = value["executions"].as_array().and_then(|e| e.last()).and_then(|e| e["error"].as_str());
    crate::render::report_state(text(&value["id"]), text(&value["state"]), error, json)
}

fn evidence(client: &Client, command: EvidenceCmd, json: bool) -> Result<(), CliError> {
    match command {
        EvidenceCmd::Add { id, file, step, actor, media_type } => {
            check_actor(client, Some(&actor))?;
            let id = ChangeId::parse(&id)?;
            let bytes = std::fs::read(&file)
                .map_err(|e| CliError::new("input.invalid_path", format!("{}: {e}", file.display())))?;
            let name =
                file.file_name().map_or_else(|| "evidence".to_owned(), |n| n.to_string_lossy().into_owned());
            let query = format!("step={step}&name={}", percent(&name));
            let reply = client.send(
                "POST",
                &format!("/api/v1/changes/{id}/evidence?{query}"),
                Some(bytes),
                &media_type,
            )?;
            let value: Value = serde_json::from_slice(&reply).unwrap_or_default();
            let digest = text(&value["sha256"]).to_owned();
            render::print(json, value, || format!("attached sha256:{digest} to {id} ({step})"));
            Ok(())
        }
        EvidenceCmd::List { id } => {
            let items = client.items(&format!("/api/v1/changes/{}/evidence", ChangeId::parse(&id)?))?;
            let lines: Vec<String> = items
                .iter()
                .map(|e| {
                    format!(
                        "{}  {:<14} {:<18} {} bytes",
                        text(&e["sha256"]),
                        text(&e["step"]),
                        text(&e["label"]),
                        e["size"]
                    )
                })
                .collect();
            render::print(json, Value::Array(items), || lines.join("\n"));
            Ok(())
        }
        EvidenceCmd::Get { sha256, out } => {
            let bytes =
                client.send("GET", &format!("/api/v1/evidence/{sha256}"), None, "application/json")?;
            if hex::encode(writ_ledger::sha256(&bytes)) != sha256.to_ascii_lowercase() {
                return Err(CliError::new(
                    "ledger.evidence_altered",
                    "the blob the server sent does not match its digest",
                ));
            }
            crate::render::write_out(out.as_deref(), &bytes)
        }
    }
}

fn token_cmd(client: &Client, command: TokenCmd, json: bool) -> Result<(), CliError> {
    match command {
        TokenCmd::Create { identity, label, expires_in } => {
            let value = client.json(
                "POST",
                "/api/v1/tokens",
                Some(json!({ "identity": identity, "label": label, "expires_in": expires_in })),
            )?;
            let text_form = crate::render::token_text(&value);
            render::print(json, value, || text_form);
        }
        TokenCmd::List => {
            let items = client.items("/api/v1/tokens")?;
            let lines = crate::render::token_lines(&items);
            render::print(json, Value::Array(items), || lines);
        }
        TokenCmd::Revoke { id } => {
            let value = client.json("DELETE", &format!("/api/v1/tokens/{id}"), None)?;
            let (id, identity) = (text(&value["id"]).to_owned(), text(&value["identity"]).to_owned());
            render::print(json, json!({ "id": id, "revoked": true }), || {
                format!("revoked token {id} of {identity}")
            });
        }
    }
    Ok(())
}

fn role(client: &Client, command: RoleCmd, json: bool) -> Result<(), CliError> {
    let (identity, role, present) = match command {
        RoleCmd::Grant { identity, role } => (identity, role, true),
        RoleCmd::Revoke { identity, role } => (identity, role, false),
        RoleCmd::List => {
            let items = client.items("/api/v1/roles")?;
            let lines: Vec<String> =
                items.iter().map(|r| format!("{:<24} {}", text(&r["identity"]), text(&r["role"]))).collect();
            render::print(json, Value::Array(items), || lines.join("\n"));
            return Ok(());
        }
    };
    let method = if present { "PUT" } else { "DELETE" };
    let value = client.json(method, &format!("/api/v1/identities/{identity}/roles/{role}"), None)?;
    let line =
        if present { format!("{identity} is now {role}") } else { format!("{identity} is no longer {role}") };
    render::print(json, value, || line);
    Ok(())
}
