//! The CLI as a client of `writ serve`: with `--server URL` (or `WRIT_SERVER`) and an API token
//! in `WRIT_TOKEN`, commands go over HTTP instead of opening a database, and print the same
//! output (the same JSON with `--json`, the same text otherwise; the server's JSON is what the
//! local renderers are built from). The acting identity is the token's: an `--as` naming anyone
//! else is refused before anything is sent.
//!
//! The token is read from the environment only, never from an argument (which other users can
//! see in the process list).

use serde_json::{Value, json};
use writ_api::view::{
    AttachedEvidenceView, ChangeView, CheckpointView, DelegationView, EntitlementsView, EvidenceView,
    FindingView, IdentityDetailView, IdentityView, IssuedTokenView, PolicyLoadedView, ReportView,
    RoleChangeView, RoleView, SummaryView, TargetView, TokenView,
};
use writ_core::change::ChangeId;
use writ_core::name::IdentityName;

use crate::cli::{
    AuditCmd, ChangeCmd, DelegationCmd, EvidenceCmd, IdentityCmd, LedgerCmd, RoleCmd, TargetCmd, TokenCmd,
    Top,
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
        Top::Delegation(command) => delegation(&client, command, json),
        Top::Ledger(LedgerCmd::Checkpoint) => {
            let checkpoint: CheckpointView = client.view("POST", "/api/v1/ledger/checkpoints", None)?;
            render::print(json, &checkpoint, || checkpoint.note.trim_end().to_owned());
            Ok(())
        }
        Top::Ledger(LedgerCmd::Verify { witnesses, .. }) if !witnesses.is_empty() => {
            Err(not_remote("ledger verify --witness (it asks the witnesses from this machine)"))
        }
        Top::Ledger(LedgerCmd::Verify { .. }) => {
            let report: ReportView = client.view("GET", "/api/v1/ledger/verify", None)?;
            crate::ledger::report_verification(&report, json)
        }
        Top::Ledger(_) => Err(not_remote("this ledger command")),
        Top::Policy(crate::cli::PolicyCmd::Reload { dir: None }) => {
            let loaded: PolicyLoadedView = client.view("POST", "/api/v1/policy/reload", None)?;
            crate::policy_cmd::print_loaded(&loaded.loaded(), json)
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
        Top::Audit(AuditCmd::Verify { path, trusted, witness_keys, witness_quorum, witnesses }) => {
            let witnessed =
                crate::audit::Witnessed { keys: witness_keys, quorum: witness_quorum, live: witnesses };
            crate::audit::verify(&path, &trusted, &witnessed, json)
        }
        Top::Breakglass(args) => {
            check_actor(&client, Some(&args.actor))?;
            let body = json!({
                "identity": args.identity, "grant": args.grant, "for": args.duration,
                "reason": args.reason, "ticket": args.ticket,
            });
            let change: ChangeView = client.view("POST", "/api/v1/breakglass", Some(body))?;
            report(&change, json)
        }
        Top::Finding(command) => finding(&client, command, json),
        Top::Notify(command) => notify(&client, command, json),
        Top::Automation(crate::cli::AutomationCmd::Status) => {
            let paused: Vec<FindingView> = client.items("/api/v1/automation")?;
            render::automation_status(&paused, json);
            Ok(())
        }
        Top::Automation(crate::cli::AutomationCmd::Resume { scope, actor, justification }) => {
            check_actor(&client, Some(&actor))?;
            let path = format!("/api/v1/automation/{}/resume", percent(&scope));
            let view: writ_api::view::ResumedView =
                client.view("POST", &path, Some(json!({ "justification": justification })))?;
            render::resumed(&view, json);
            Ok(())
        }
        Top::Reconcile(args) => {
            let view: writ_api::view::ReconcileRunsView =
                client.view("POST", "/api/v1/reconcile", Some(json!({ "target": args.target })))?;
            render::reconcile_runs(&view, json)
        }
        Top::Exception(command) => crate::exception_cmd::run_remote(&client, command, json),
        Top::Intake(command) => crate::intake_cmd::run_remote(&client, command, json),
        Top::Erase(_) => Err(CliError::new(
            "input.not_remote",
            "erasure requests are recorded and approved on the server's host (writ erase)",
        )),
        Top::Retention(_) => Err(CliError::new(
            "input.not_remote",
            "a server runs retention itself (every hour, on one instance)",
        )),
        Top::RunDue(_) => Err(CliError::new(
            "input.not_remote",
            "a server does due work itself (every second, on one instance)",
        )),
        _ => Err(not_remote("this command")),
    }
}

fn notify(client: &Client, command: crate::cli::NotifyCmd, json: bool) -> Result<(), CliError> {
    use writ_api::view::NotificationView;
    match command {
        crate::cli::NotifyCmd::List { state, change, limit } => {
            let mut path = format!("/api/v1/notifications?limit={limit}");
            if let Some(state) = state {
                path.push_str(&format!("&state={}", percent(&state)));
            }
            if let Some(change) = change {
                path.push_str(&format!("&change={}", percent(&change)));
            }
            let items: Vec<NotificationView> = client.items(&path)?;
            render::print(json, &items, || writ_api::text::notifications(&items));
        }
        crate::cli::NotifyCmd::Show { id } => {
            let view: NotificationView =
                client.view("GET", &format!("/api/v1/notifications/{}", percent(&id)), None)?;
            render::notification(&view, false, json);
        }
        crate::cli::NotifyCmd::Retry { id, actor } => {
            check_actor(client, actor.as_deref())?;
            let path = format!("/api/v1/notifications/{}/retry", percent(&id));
            let view: NotificationView = client.view("POST", &path, Some(json!({})))?;
            render::notification(&view, true, json);
        }
    }
    Ok(())
}

fn finding(client: &Client, command: crate::cli::FindingCmd, json: bool) -> Result<(), CliError> {
    use crate::cli::FindingCmd;
    let line =
        |f: &FindingView| format!("{}  {:<9} {:<8} {:<28} {}", f.id, f.state, f.severity, f.kind, f.subject);
    match command {
        FindingCmd::List { state } => {
            let path = state
                .map_or_else(|| "/api/v1/findings".to_owned(), |s| format!("/api/v1/findings?state={s}"));
            let items: Vec<FindingView> = client.items(&path)?;
            render::print(json, &items, || {
                if items.is_empty() {
                    "no findings".to_owned()
                } else {
                    items.iter().map(line).collect::<Vec<_>>().join("\n")
                }
            });
        }
        FindingCmd::Show { id } => {
            let finding: FindingView = client.view("GET", &format!("/api/v1/findings/{id}"), None)?;
            render::print(json, &finding, || format!("{}\n  {}", line(&finding), finding.detail));
        }
        FindingCmd::Remediate { id, actor, justification } => {
            check_actor(client, Some(&actor))?;
            writ_core::finding::Finding::parse_id(&id)?;
            let path = format!("/api/v1/findings/{id}/remediate");
            let view: writ_api::view::RemediationView =
                client.view("POST", &path, Some(json!({ "justification": justification })))?;
            render::remediation(&view, json);
        }
        FindingCmd::Resolve { id, actor, note } => {
            check_actor(client, Some(&actor))?;
            writ_core::finding::Finding::parse_id(&id)?;
            let path = format!("/api/v1/findings/{id}/resolve");
            let finding: FindingView = client.view("POST", &path, Some(json!({ "note": note })))?;
            render::print(json, &finding, || format!("{} {}", finding.id, finding.state));
        }
    }
    Ok(())
}

/// Prints a change's new state (a failed one is an error, exit 7).
fn report(change: &ChangeView, json: bool) -> Result<(), CliError> {
    let error = change.executions.last().and_then(|e| e.error.as_deref());
    crate::render::report_state(&change.id, &change.state, error, json)
}

fn identity(client: &Client, command: IdentityCmd, json: bool) -> Result<(), CliError> {
    match command {
        IdentityCmd::Add { name, kind, owner, vendor, email, actor } => {
            check_actor(client, actor.as_deref())?;
            let body =
                json!({ "name": name, "kind": kind, "owner": owner, "vendor": vendor, "email": email });
            let added: IdentityView = client.view("POST", "/api/v1/identities", Some(body))?;
            render::print(json, &added, || format!("added {} ({})", added.name, added.kind));
        }
        IdentityCmd::List => {
            let items: Vec<IdentityView> = client.all("/api/v1/identities", "after")?;
            let identities = items.iter().map(IdentityView::identity).collect::<Result<Vec<_>, _>>()?;
            render::print(json, &items, || writ_api::text::identity_table(&identities));
        }
        IdentityCmd::Show { name } => {
            let path = format!("/api/v1/identities/{}", IdentityName::parse(&name)?);
            let shown: IdentityDetailView = client.view("GET", &path, None)?;
            let identity = shown.identity.identity()?;
            let grants = shown
                .grants
                .iter()
                .flatten()
                .map(|g| g.grant(&identity.name))
                .collect::<Result<Vec<_>, _>>()?;
            render::print(json, &shown, || writ_api::text::identity_detail(&identity, &grants));
        }
        IdentityCmd::Offboard { name, actor, justification, ticket } => {
            check_actor(client, actor.as_deref())?;
            let path = format!("/api/v1/identities/{}/offboard", IdentityName::parse(&name)?);
            let body = json!({ "justification": justification, "ticket": ticket });
            let done: writ_api::view::OffboardingView = client.view("POST", &path, Some(body))?;
            render::print(json, &done, || writ_api::text::offboarding(&done));
        }
        IdentityCmd::Disable { name, reason, actor } => {
            set_state(client, (&name, actor.as_deref()), "disable", reason, json)?;
        }
        IdentityCmd::LinkScim { name, external_id, actor } => {
            check_actor(client, actor.as_deref())?;
            let path = format!("/api/v1/identities/{}/scim-link", IdentityName::parse(&name)?);
            let view: writ_api::view::ScimLinkView =
                client.view("PUT", &path, Some(json!({ "external_id": external_id })))?;
            render::print(json, &view, || writ_api::text::scim_link(&view));
        }
        IdentityCmd::Enable { name, reason, actor } => {
            set_state(client, (&name, actor.as_deref()), "enable", reason, json)?;
        }
        IdentityCmd::Transfer { name, to, actor, justification } => {
            check_actor(client, Some(&actor))?;
            let path = format!("/api/v1/identities/{}/transfers", IdentityName::parse(&name)?);
            let body = json!({ "to": to, "justification": justification });
            let view: writ_api::view::TransferView = client.view("POST", &path, Some(body))?;
            render::print(json, &view, || writ_api::text::transfer(&view));
        }
        IdentityCmd::Transfers { name } => {
            let path = match name {
                Some(name) => format!("/api/v1/transfers?identity={}", IdentityName::parse(&name)?),
                None => "/api/v1/transfers".to_owned(),
            };
            let list: writ_api::view::List<writ_api::view::TransferView> = client.view("GET", &path, None)?;
            render::print(json, &list.items, || writ_api::text::transfers(&list.items));
        }
        IdentityCmd::AcceptTransfer(args) => decide_transfer(client, args, "accept", json)?,
        IdentityCmd::DeclineTransfer(args) => decide_transfer(client, args, "decline", json)?,
        IdentityCmd::CancelTransfer(args) => decide_transfer(client, args, "cancel", json)?,
    }
    Ok(())
}

/// `identity accept-transfer`, `decline-transfer` and `cancel-transfer` over the API.
fn decide_transfer(
    client: &Client,
    args: crate::cli::TransferDecisionArgs,
    verb: &str,
    json: bool,
) -> Result<(), CliError> {
    check_actor(client, Some(&args.actor))?;
    let id = writ_core::transfer::TransferId::parse(&args.id)?;
    let path = format!("/api/v1/transfers/{id}/{verb}");
    let view: writ_api::view::TransferView =
        client.view("POST", &path, Some(json!({ "note": args.note })))?;
    render::print(json, &view, || writ_api::text::transfer(&view));
    Ok(())
}

/// `identity disable` and `identity enable` over the API: (identity, `--as`).
fn set_state(
    client: &Client,
    (name, actor): (&str, Option<&str>),
    verb: &str,
    reason: String,
    json: bool,
) -> Result<(), CliError> {
    check_actor(client, actor)?;
    let path = format!("/api/v1/identities/{}/{verb}", IdentityName::parse(name)?);
    let done: writ_api::view::StandingView = client.view("POST", &path, Some(json!({ "reason": reason })))?;
    render::print(json, &done, || writ_api::text::standing(&done));
    Ok(())
}

fn target(client: &Client, command: TargetCmd, json: bool) -> Result<(), CliError> {
    match command {
        TargetCmd::Add(_) => Err(CliError::new(
            "input.not_remote",
            "register targets on the server's machine (its paths), or POST /api/v1/targets",
        )),
        TargetCmd::List => {
            let items: Vec<TargetView> = client.items("/api/v1/targets")?;
            render::print(json, &items, || {
                items
                    .iter()
                    .map(|t| {
                        let repo = t.settings.get("repo").map_or("-", String::as_str);
                        format!("{}\t{}\t{repo}", t.name, t.connector)
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
            Ok(())
        }
        TargetCmd::Entitlements { name } => {
            let names: EntitlementsView =
                client.view("GET", &format!("/api/v1/targets/{name}/entitlements"), None)?;
            render::print(json, &names.items, || names.items.join("\n"));
            Ok(())
        }
    }
}

fn change(client: &Client, command: ChangeCmd, json: bool) -> Result<(), CliError> {
    let step = |id: &str, step: &str, body: Value| -> Result<ChangeView, CliError> {
        let id = ChangeId::parse(id)?;
        client.view("POST", &format!("/api/v1/changes/{id}/{step}"), Some(body))
    };
    let value = match command {
        ChangeCmd::Request(args) => {
            check_actor(client, Some(&args.actor))?;
            let body = json!({
                "identity": args.identity, "grant": args.grant, "revoke": args.revoke, "rotate": args.rotate, "for": args.duration,
                "justification": args.justification, "ticket": args.ticket, "commit": args.commit, "pr": args.pr,
                "event": args.event, "on_behalf_of": args.on_behalf_of, "window": args.window(),
                "rollback_owner": args.rollback_owner,
            });
            let change: ChangeView = client.view("POST", "/api/v1/changes", Some(body))?;
            render::print(json, json!({ "id": change.id, "state": change.state }), || change.id.clone());
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
        ChangeCmd::Comment { id, actor, text } => {
            check_actor(client, Some(&actor))?;
            step(&id, "comment", json!({ "text": text }))?
        }
        ChangeCmd::Hold { id, actor, reason } => {
            check_actor(client, Some(&actor))?;
            step(&id, "hold", json!({ "reason": reason }))?
        }
        ChangeCmd::Release { id, actor, reason } => {
            check_actor(client, Some(&actor))?;
            step(&id, "release", json!({ "reason": reason }))?
        }
        ChangeCmd::Rollback { id, actor, justification } => {
            check_actor(client, Some(&actor))?;
            let change = step(&id, "rollback", json!({ "justification": justification }))?;
            render::print(json, json!({ "id": change.id, "state": change.state, "rollback_of": id }), || {
                change.id.clone()
            });
            return Ok(());
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
            let items: Vec<SummaryView> = client.all(&path, "before")?;
            render::print(json, &items, || {
                items
                    .iter()
                    .map(|c| format!("{}  {:<20} {:<22} {}", c.id, c.state, c.kind, c.requester))
                    .collect::<Vec<_>>()
                    .join("\n")
            });
            return Ok(());
        }
    };
    report(&value, json)
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
            let attached: EvidenceView = serde_json::from_slice(&reply).map_err(|e| {
                CliError::new(
                    "client.unreadable",
                    format!("the server's answer is not the documented view: {e}"),
                )
            })?;
            render::print(json, &attached, || {
                format!("attached sha256:{} to {id} ({step})", attached.sha256)
            });
            Ok(())
        }
        EvidenceCmd::List { id } => {
            let items: Vec<AttachedEvidenceView> =
                client.items(&format!("/api/v1/changes/{}/evidence", ChangeId::parse(&id)?))?;
            render::print(json, &items, || {
                items
                    .iter()
                    .map(|e| {
                        let (blob, step) = (&e.evidence, &e.step);
                        format!("{}  {step:<14} {:<18} {} bytes", blob.sha256, blob.label, blob.size)
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
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
            let body = json!({ "identity": identity, "label": label, "expires_in": expires_in });
            let issued: IssuedTokenView = client.view("POST", "/api/v1/tokens", Some(body))?;
            render::print(json, &issued, || crate::render::token_text(&issued));
        }
        TokenCmd::List => {
            let items: Vec<TokenView> = client.items("/api/v1/tokens")?;
            render::print(json, &items, || crate::render::token_lines(&items));
        }
        TokenCmd::Revoke { id } => {
            let revoked: TokenView = client.view("DELETE", &format!("/api/v1/tokens/{id}"), None)?;
            render::print(json, json!({ "id": revoked.id, "revoked": true }), || {
                format!("revoked token {} of {}", revoked.id, revoked.identity)
            });
        }
    }
    Ok(())
}

fn delegation(client: &Client, command: DelegationCmd, json: bool) -> Result<(), CliError> {
    let path = |principal: &str, delegate: &str| -> Result<String, CliError> {
        Ok(format!(
            "/api/v1/delegations/{}/{}",
            IdentityName::parse(principal)?,
            IdentityName::parse(delegate)?
        ))
    };
    match command {
        DelegationCmd::Grant { principal, delegate, duration, actor } => {
            check_actor(client, actor.as_deref())?;
            let body = json!({ "for": duration });
            let view: DelegationView = client.view("PUT", &path(&principal, &delegate)?, Some(body))?;
            render::print(json, &view, || writ_api::text::delegations(std::slice::from_ref(&view)));
        }
        DelegationCmd::Revoke { principal, delegate, actor } => {
            check_actor(client, actor.as_deref())?;
            let view: DelegationView = client.view("DELETE", &path(&principal, &delegate)?, None)?;
            render::print(json, &view, || format!("{principal} → {delegate}: revoked"));
        }
        DelegationCmd::List => {
            let items: Vec<DelegationView> = client.items("/api/v1/delegations")?;
            render::print(json, &items, || writ_api::text::delegations(&items));
        }
    }
    Ok(())
}

fn role(client: &Client, command: RoleCmd, json: bool) -> Result<(), CliError> {
    let (identity, role, present) = match command {
        RoleCmd::Grant { identity, role } => (identity, role, true),
        RoleCmd::Revoke { identity, role } => (identity, role, false),
        RoleCmd::List => {
            let items: Vec<RoleView> = client.items("/api/v1/roles")?;
            render::print(json, &items, || {
                items.iter().map(|r| format!("{:<24} {}", r.identity, r.role)).collect::<Vec<_>>().join("\n")
            });
            return Ok(());
        }
    };
    let method = if present { "PUT" } else { "DELETE" };
    let value: RoleChangeView =
        client.view(method, &format!("/api/v1/identities/{identity}/roles/{role}"), None)?;
    let line =
        if present { format!("{identity} is now {role}") } else { format!("{identity} is no longer {role}") };
    render::print(json, &value, || line);
    Ok(())
}
