//! One function per command: parse the arguments into domain types, call the engine, print.

use std::path::{Path, PathBuf};

use writ_core::change::{ChangeId, ChangeState};
use writ_core::identity::{Actor, IdentityKind, IdentityState, SystemActor};
use writ_core::name::{IdentityName, OrgName, TargetName};
use writ_core::time::Duration;
use writ_core::transfer::Decision;
use writ_engine::{ChangeRecord, Engine, RequestInput};

use crate::CliError;
use crate::cli::{
    AuditCmd, BreakglassArgs, ChangeCmd, Cli, DelegationCmd, EvidenceCmd, ExceptionCmd, FindingCmd,
    IdentityCmd, RequestArgs, RoleCmd, TargetAddArgs, TargetCmd, TokenCmd, Top,
};
use crate::render;
use writ_api::view::{
    AttachedEvidenceView, DelegationView, EvidenceView, FindingView, GrantView, IdentityDetailView,
    IdentityView, IssuedTokenView, SummaryView, TargetAddedView, TargetView, TokenView,
};
use writ_server::compose::open;
use writ_server::db::Database;

pub fn run(cli: Cli) -> Result<(), CliError> {
    let Cli { db, ledger_key: key, hmac_key, json, command, server, claim_ttl: claim_ttl_arg, .. } = cli;
    let hmac = hmac_key.as_deref();
    if let Some(server) = server.as_deref().filter(|_| !matches!(command, Top::Serve(_) | Top::Witness(_))) {
        return crate::client::run(server, command, json);
    }
    match command {
        Top::Init => init(&Database::parse(db.as_deref())?, key, hmac_key, json),
        Top::Serve(args) => {
            let mut options: writ_server::ServeOptions = args.into();
            options.claim_ttl = claim_ttl_arg;
            writ_server::run(db.as_deref(), key.as_deref(), hmac, options)
        }
        Top::Witness(crate::cli::WitnessCmd::Init { name, key }) => {
            let verifier = writ_server::witness::init(&name, &key)?;
            render::print(json, serde_json::json!({ "key": verifier }), || verifier.clone());
            Ok(())
        }
        Top::Witness(crate::cli::WitnessCmd::Serve { key, state, logs, listen }) => {
            writ_server::witness::serve(writ_server::witness::WitnessOptions { listen, key, state, logs })
        }
        Top::LoadAppend { count, threads } => load_append(&open(db.as_deref(), hmac)?, count, threads),
        Top::Audit(AuditCmd::Verify { path, trusted, witness_keys, witness_quorum, witnesses }) => {
            let witnessed =
                crate::audit::Witnessed { keys: witness_keys, quorum: witness_quorum, live: witnesses };
            crate::audit::verify(&path, &trusted, &witnessed, json)
        }
        Top::Audit(AuditCmd::Bundle { change, all: _, out }) => {
            let engine = open(db.as_deref(), hmac)?;
            let change = change.as_deref().map(ChangeId::parse).transpose()?;
            crate::audit::bundle(&engine, change.as_ref(), &out, json)
        }
        Top::Policy(command @ (crate::cli::PolicyCmd::Check { .. } | crate::cli::PolicyCmd::Test { .. })) => {
            crate::policy_cmd::run(None, command, json)
        }
        Top::Policy(command) => {
            let database = Database::parse(db.as_deref())?;
            let engine = open(db.as_deref(), hmac)?;
            let result = crate::policy_cmd::run(Some(&engine), command, json);
            if result.is_ok() {
                auto_checkpoint(&engine, &database.key_path(key.as_deref())?);
            }
            result
        }
        Top::Ledger(command) => {
            let database = Database::parse(db.as_deref())?;
            let engine = open(db.as_deref(), hmac)?;
            crate::ledger::run(&engine, command, &database.key_path(key.as_deref())?, json)
        }
        command if is_read(&command) => dispatch(&open(db.as_deref(), hmac)?, command, json),
        command => {
            let database = Database::parse(db.as_deref())?;
            let engine =
                open(db.as_deref(), hmac)?.with_claim_ttl(writ_server::claim_ttl(claim_ttl_arg.as_deref())?);
            let size = engine.store().event_count();
            let result = dispatch(&engine, command, json);
            // Only a command that recorded events signs (a refusal writes nothing at all), and
            // one that recorded some before it failed signs them too.
            let recorded = match &result {
                Ok(()) => true,
                Err(_) => engine.store().event_count().ok() != size.ok(),
            };
            if recorded {
                auto_checkpoint(&engine, &database.key_path(key.as_deref())?);
            }
            result
        }
    }
}

fn is_read(command: &Top) -> bool {
    matches!(
        command,
        Top::Identity(IdentityCmd::List | IdentityCmd::Show { .. } | IdentityCmd::Transfers { .. })
            | Top::Target(TargetCmd::List | TargetCmd::Entitlements { .. })
            | Top::Change(ChangeCmd::Show { .. } | ChangeCmd::List { .. })
            | Top::Evidence(EvidenceCmd::List { .. } | EvidenceCmd::Get { .. })
            | Top::Finding(FindingCmd::List { .. } | FindingCmd::Show { .. })
            | Top::Notify(crate::cli::NotifyCmd::List { .. } | crate::cli::NotifyCmd::Show { .. })
            | Top::Automation(crate::cli::AutomationCmd::Status)
            | Top::Exception(
                ExceptionCmd::List { .. } | ExceptionCmd::Show { .. } | ExceptionCmd::Export { .. }
            )
            | Top::Intake(_)
            | Top::Token(TokenCmd::List)
            | Top::Role(RoleCmd::List)
            | Top::Delegation(DelegationCmd::List)
    )
}

fn dispatch(engine: &Engine, command: Top, json: bool) -> Result<(), CliError> {
    match command {
        Top::Identity(command) => identity(engine, command, json),
        Top::Target(command) => target(engine, command, json),
        Top::Change(command) => change(engine, command, json),
        Top::Evidence(command) => evidence(engine, command, json),
        Top::Token(command) => token(engine, command, json),
        Top::Role(command) => role(engine, command, json),
        Top::Delegation(command) => delegation(engine, command, json),
        Top::Breakglass(args) => {
            let record = engine.breakglass(breakglass_input(args)?, writ_engine::random_bits()?)?;
            report_transition(&record, json)
        }
        Top::Finding(command) => finding(engine, command, json),
        Top::Notify(command) => notify(engine, command, json),
        Top::Automation(crate::cli::AutomationCmd::Status) => {
            let paused = engine.automation_status()?;
            let view: Vec<FindingView> = paused.iter().map(FindingView::of).collect();
            crate::render::automation_status(&view, json);
            Ok(())
        }
        Top::Automation(crate::cli::AutomationCmd::Resume { scope, actor, justification }) => {
            let resumed = engine.resume_automation(&IdentityName::parse(&actor)?, &scope, justification)?;
            crate::render::resumed(&writ_api::view::ResumedView::of(&resumed), json);
            Ok(())
        }
        Top::Reconcile(args) => {
            // What Writ approved is read from the grants table: a table edited behind the
            // ledger's back would hide a grant made outside Writ, so it is checked first (the
            // server refuses every write while a table disagrees).
            if let Some(divergence) = engine.check_projections()?.first() {
                return Err(CliError::new(
                    "ledger.projection_diverged",
                    format!(
                        "the tables disagree with the ledger ({divergence}); reconciling against them could hide \
                         access granted outside Writ: run `writ ledger verify`, then `writ ledger repair --projections`"
                    ),
                ));
            }
            let actor = writ_core::identity::Actor::System(writ_core::identity::SystemActor::Admin);
            let reports = match args.target {
                Some(target) => {
                    vec![engine.reconcile_target(actor, &writ_core::name::TargetName::parse(&target)?)?]
                }
                None => engine.reconcile_all(actor)?,
            };
            let view = writ_api::view::ReconcileRunsView {
                runs: reports.iter().map(writ_api::view::ReconcileView::of).collect(),
            };
            crate::render::reconcile_runs(&view, json)
        }
        Top::Exception(command) => crate::exception_cmd::run_local(engine, command, json),
        Top::Intake(command) => crate::intake_cmd::run_local(engine, command, json),
        Top::Erase(args) => crate::erase_cmd::run_local(engine, args, json),
        Top::Retention(crate::cli::RetentionCmd::Run) => {
            crate::erase_cmd::print_report(&engine.retention_run()?, json);
            Ok(())
        }
        Top::RunDue(args) => {
            let resumed = engine.resume_stranded()?;
            let expired = engine.expire_due()?;
            let deadlines = engine.deadlines_due()?;
            let policy = writ_engine::expiry::ExpiryPolicy {
                alert_after_attempts: args.alert_after,
                ..writ_engine::expiry::ExpiryPolicy::default()
            };
            let warned = engine.warn_expiring()?;
            let exceptions_warned = engine.warn_expiring_exceptions()?;
            let ended = engine.revoke_due(&policy)?;
            let ids = |ids: &[ChangeId]| ids.iter().map(ToString::to_string).collect::<Vec<_>>();
            let errors: Vec<serde_json::Value> =
                ended
                    .errors
                    .iter()
                    .chain(&deadlines.errors)
                    .chain(&resumed.errors)
                    .map(|(id, error)| serde_json::json!({ "change": id.to_string(), "error": error }))
                    .chain(deadlines.exceptions.errors.iter().map(
                        |(id, error)| serde_json::json!({ "exception": id.to_string(), "error": error }),
                    ))
                    .collect();
            let value = serde_json::json!({
                "resumed": resumed
                    .resumed
                    .iter()
                    .map(|(id, state)| serde_json::json!({ "change": id.to_string(), "state": state.as_str() }))
                    .collect::<Vec<_>>(),
                "expired": ids(&expired),
                "escalated": deadlines
                    .escalated
                    .iter()
                    .map(|(id, to)| serde_json::json!({ "change": id.to_string(), "to": to }))
                    .collect::<Vec<_>>(),
                "breakglass_overdue": deadlines
                    .overdue
                    .iter()
                    .map(|(id, finding)| serde_json::json!({ "change": id.to_string(), "finding": finding }))
                    .collect::<Vec<_>>(),
                "exceptions_expired": deadlines
                    .exceptions
                    .expired
                    .iter()
                    .map(|(id, reopened)| serde_json::json!({ "exception": id.to_string(), "reopened": reopened }))
                    .collect::<Vec<_>>(),
                "expiry_warned": warned
                    .iter()
                    .map(|w| serde_json::json!({
                        "change": w.change.to_string(),
                        "identity": w.identity.to_string(),
                        "entitlement": w.entitlement.to_string(),
                        "ends_at": w.ends_at.to_rfc3339(),
                    }))
                    .collect::<Vec<_>>(),
                "exceptions_warned": exceptions_warned.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "expiry_opened": ids(&ended.opened),
                "expiry_verified": ids(&ended.verified),
                "expiry_failed": ids(&ended.failed),
                "expiry_alerted": ids(&ended.alerted),
                "refusals_counted": deadlines.refusals_counted,
                "errors": errors,
            });
            render::print(json, value, || {
                let mut lines: Vec<String> = Vec::new();
                lines.extend(
                    resumed
                        .resumed
                        .iter()
                        .map(|(id, state)| format!("resumed {id} (cut off mid-execution): now {state}")),
                );
                lines.extend(
                    expired.iter().map(|id| {
                        format!("expired {id} (its approval validity or maintenance window ended)")
                    }),
                );
                lines.extend(
                    exceptions_warned
                        .iter()
                        .map(|id| format!("warned: the term of exception {id} ends soon")),
                );
                lines.extend(warned.iter().map(|w| {
                    format!(
                        "warned: {} of {} ends at {} ({})",
                        w.entitlement, w.identity, w.ends_at, w.change
                    )
                }));
                lines.extend(
                    deadlines
                        .escalated
                        .iter()
                        .map(|(id, to)| format!("escalated {id} to {to} (approval overdue)")),
                );
                lines.extend(deadlines.overdue.iter().map(|(id, finding)| {
                    format!("ALERT {id}: break-glass not approved after the fact by its deadline; finding {finding}")
                }));
                lines.extend(deadlines.exceptions.expired.iter().map(|(id, reopened)| {
                    format!("exception {id} expired; findings open again: {}", list_or_none(reopened))
                }));
                if deadlines.refusals_counted > 0 {
                    lines.push(format!(
                        "recorded {} refused webhook deliveries as counts (windows that ended)",
                        deadlines.refusals_counted
                    ));
                }
                lines.extend(ended.opened.iter().map(|id| format!("opened {id} to end time-bound access")));
                lines.extend(
                    ended.verified.iter().map(|id| format!("verified {id}: time-bound access ended")),
                );
                lines.extend(ended.failed.iter().map(|id| format!("failed {id}: will retry with backoff")));
                lines.extend(
                    ended.alerted.iter().map(|id| format!("ALERT {id}: time-bound access not ended")),
                );
                lines.extend(
                    ended
                        .errors
                        .iter()
                        .chain(&deadlines.errors)
                        .map(|(id, error)| format!("error {id}: {error}")),
                );
                lines.extend(
                    deadlines.exceptions.errors.iter().map(|(id, error)| format!("error {id}: {error}")),
                );
                if lines.is_empty() { "nothing due".to_owned() } else { lines.join("\n") }
            });
            if !deadlines.overdue.is_empty() {
                Err(CliError::new(
                    "breakglass.approval_missed",
                    "a break-glass change was not approved after the fact by its deadline (see above); a finding is open",
                ))
            } else if !deadlines.errors.is_empty() || !deadlines.exceptions.errors.is_empty() {
                Err(CliError::new(
                    "deadline.not_handled",
                    "a due deadline could not be handled (see above); it is tried again on the next run",
                ))
            } else if ended.failed.is_empty() && ended.alerted.is_empty() && ended.errors.is_empty() {
                Ok(())
            } else {
                Err(CliError::new(
                    "expiry.not_ended",
                    "time-bound access that is due could not be ended everywhere (see above); it is retried with backoff",
                ))
            }
        }
        _ => Err(CliError::new("internal", "command not dispatched here")),
    }
}

/// Signs a checkpoint covering every event after a command that wrote, so no run leaves its
/// last events outside every signed checkpoint (where they could be deleted without trace).
/// The events are already durable; a missing key or a refusal to sign is reported, not fatal,
/// and `writ ledger verify` shows what is not yet covered.
fn auto_checkpoint(engine: &Engine, key: &Path) {
    let outcome =
        writ_server::keys::load(key).and_then(|signer| engine.checkpoint(&signer).map_err(CliError::from));
    if let Err(error) = outcome {
        tracing::warn!(target: "writ::ledger", code = %error.code, "no checkpoint signed: {}", error.message);
    }
}

fn init(
    database: &Database,
    key: Option<PathBuf>,
    hmac: Option<PathBuf>,
    json: bool,
) -> Result<(), CliError> {
    let key = database.key_path(key.as_deref())?;
    let hmac = database.hmac_path(hmac.as_deref())?;
    let refuse = |what: String| {
        CliError::new(
            "input.database_exists",
            format!("{what} already exists; Writ never initialises over existing data"),
        )
    };
    if database.exists()? {
        return Err(refuse(database.describe()));
    }
    for existing in [&key, &hmac] {
        if existing.exists() {
            return Err(refuse(existing.display().to_string()));
        }
    }
    let signer = writ_server::keys::create(&key, &writ_server::keys::new_origin()?)?;
    let hmac_key = writ_server::keys::create_hmac(&hmac)?;
    let hmac_id = hmac_key.id().to_owned();
    let engine = writ_server::compose::engine_over(database.open(true)?, Some(hmac_key));
    engine.init_ledger(&signer)?;
    let verifier = signer.verifier();
    if json {
        println!(
            "{}",
            serde_json::json!({ "database": database.describe(), "ledger_key": key.display().to_string(), "origin": verifier.name(), "public_key": verifier.to_text(), "hmac_key": hmac.display().to_string(), "hmac_key_id": hmac_id })
        );
    } else {
        println!("initialised {}", database.describe());
        println!("ledger {} signing key {} (keep it secret; back it up)", verifier.name(), key.display());
        println!("public key {}", verifier.to_text());
        println!(
            "sensitive values sealed with HMAC key {hmac_id} in {} (keep it secret; back it up)",
            hmac.display()
        );
    }
    Ok(())
}

fn actor(name: Option<&str>) -> Result<Actor, CliError> {
    match name {
        None => Ok(Actor::System(SystemActor::Admin)),
        Some(name) => Ok(Actor::Identity(IdentityName::parse(name)?)),
    }
}

/// `identity disable` and `identity enable`: (identity, `--as`).
fn set_state(
    engine: &Engine,
    (name, actor): (&str, Option<&str>),
    to: IdentityState,
    reason: String,
    json: bool,
) -> Result<(), CliError> {
    let actor = registry_actor(engine, actor)?;
    let standing = engine.set_identity_state(actor, &IdentityName::parse(name)?, to, reason)?;
    let view = writ_api::view::StandingView::of(&standing);
    render::print(json, &view, || writ_api::text::standing(&view));
    Ok(())
}

/// Resolves `--as` for registry commands: a named actor must exist.
fn registry_actor(engine: &Engine, name: Option<&str>) -> Result<Actor, CliError> {
    let actor = actor(name)?;
    if let Actor::Identity(name) = &actor {
        engine.identity(name)?;
    }
    Ok(actor)
}

fn identity(engine: &Engine, command: IdentityCmd, json: bool) -> Result<(), CliError> {
    match command {
        IdentityCmd::Add { name, kind, owner, vendor, email, actor } => {
            let name = IdentityName::parse(&name)?;
            let kind = IdentityKind::parse(&kind)?;
            let owner = owner.as_deref().map(IdentityName::parse).transpose()?;
            let vendor = vendor.as_deref().map(OrgName::parse).transpose()?;
            let actor = registry_actor(engine, actor.as_deref())?;
            let identity =
                engine.add_identity_reached(actor, name, kind, owner.as_ref(), vendor, email.as_deref())?;
            render::print(json, IdentityView::of(&identity), || {
                format!("added {} ({})", identity.name, identity.kind)
            });
        }
        IdentityCmd::Offboard { name, actor, justification, ticket } => {
            let (justification, refs) =
                writ_api::wire::Offboard { justification: Some(justification), ticket }.into_parts()?;
            let Some(actor) = actor else {
                return Err(CliError::new(
                    "request.missing_field",
                    "identity offboard needs --as ACTOR: the person who asks for it",
                ));
            };
            let offboarding = engine.offboard(
                IdentityName::parse(&actor)?,
                &IdentityName::parse(&name)?,
                justification,
                refs,
                writ_engine::random_bits()?,
            )?;
            let view = writ_api::view::OffboardingView::of(&offboarding);
            render::print(json, &view, || writ_api::text::offboarding(&view));
        }
        IdentityCmd::Disable { name, reason, actor } => {
            set_state(engine, (&name, actor.as_deref()), IdentityState::Disabled, reason, json)?;
        }
        IdentityCmd::LinkScim { name, external_id, actor } => {
            let actor = registry_actor(engine, actor.as_deref())?;
            let name = IdentityName::parse(&name)?;
            engine.link_scim(actor, &name, &external_id)?;
            let view = writ_api::view::ScimLinkView { identity: name.to_string(), external_id };
            render::print(json, &view, || writ_api::text::scim_link(&view));
        }
        IdentityCmd::Enable { name, reason, actor } => {
            set_state(engine, (&name, actor.as_deref()), IdentityState::Active, reason, json)?;
        }
        IdentityCmd::Transfer { name, to, actor, justification } => {
            let transfer = engine.request_transfer(
                &IdentityName::parse(&actor)?,
                &IdentityName::parse(&name)?,
                &IdentityName::parse(&to)?,
                justification,
                writ_engine::random_bits()?,
            )?;
            let view = writ_api::view::TransferView::of(&transfer, engine.now());
            render::print(json, &view, || writ_api::text::transfer(&view));
        }
        IdentityCmd::Transfers { name } => {
            let name = name.as_deref().map(IdentityName::parse).transpose()?;
            let now = engine.now();
            let views: Vec<_> = engine
                .transfers(name.as_ref())?
                .iter()
                .map(|t| writ_api::view::TransferView::of(t, now))
                .collect();
            render::print(json, &views, || writ_api::text::transfers(&views));
        }
        IdentityCmd::AcceptTransfer(args) => decide_transfer(engine, args, Decision::Accept, json)?,
        IdentityCmd::DeclineTransfer(args) => decide_transfer(engine, args, Decision::Decline, json)?,
        IdentityCmd::CancelTransfer(args) => decide_transfer(engine, args, Decision::Cancel, json)?,
        IdentityCmd::List => {
            let identities = engine.store().identities()?;
            let views: Vec<IdentityView> = identities.iter().map(IdentityView::of).collect();
            render::print(json, &views, || writ_api::text::identity_table(&identities));
        }
        IdentityCmd::Show { name } => {
            let name = IdentityName::parse(&name)?;
            let identity = engine.identity(&name)?;
            let grants = engine.grants_of(&name)?;
            let roles = engine.store().roles_of(&name)?.iter().map(|r| r.as_str().to_owned()).collect();
            let view = IdentityDetailView {
                identity: IdentityView::of(&identity),
                grants: Some(grants.iter().map(GrantView::of).collect()),
                roles,
            };
            render::print(json, &view, || writ_api::text::identity_detail(&identity, &grants));
        }
    }
    Ok(())
}

fn decide_transfer(
    engine: &Engine,
    args: crate::cli::TransferDecisionArgs,
    decision: Decision,
    json: bool,
) -> Result<(), CliError> {
    let transfer =
        engine.decide_transfer(&IdentityName::parse(&args.actor)?, &args.id, decision, args.note)?;
    let view = writ_api::view::TransferView::of(&transfer, engine.now());
    render::print(json, &view, || writ_api::text::transfer(&view));
    Ok(())
}

fn target(engine: &Engine, command: TargetCmd, json: bool) -> Result<(), CliError> {
    match command {
        TargetCmd::Add(args) => {
            let TargetAddArgs { name, connector, settings, actor } = *args;
            let name = TargetName::parse(&name)?;
            let (kind, settings) =
                writ_server::targets::prepare(&connector, target_settings(&connector, settings.given)?)?;
            let actor = registry_actor(engine, actor.as_deref())?;
            let target = engine.add_target(actor, name, kind, settings)?;
            let entitlements = engine.entitlements(&target.name)?;
            let view = TargetAddedView {
                target: TargetView::of(&target),
                entitlements: entitlements.iter().map(ToString::to_string).collect(),
            };
            render::print(json, &view, || {
                format!("added {} ({} entitlements)", target.name, entitlements.len())
            });
        }
        TargetCmd::List => {
            let targets = engine.store().targets()?;
            let views: Vec<TargetView> = targets.iter().map(TargetView::of).collect();
            render::print(json, &views, || {
                targets
                    .iter()
                    .map(|t| {
                        format!("{}\t{}\t{}", t.name, t.connector.as_str(), t.setting("repo").unwrap_or("-"))
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
        TargetCmd::Entitlements { name } => {
            let entitlements = engine.entitlements(&TargetName::parse(&name)?)?;
            let names: Vec<String> = entitlements.iter().map(ToString::to_string).collect();
            render::print(json, serde_json::json!(names), || names.join("\n"));
        }
    }
    Ok(())
}

/// The settings the options of `target add` give, by key: each option must be one of the
/// connector's, and paths are made absolute here (relative to where the command runs).
fn target_settings(
    connector: &str,
    given: std::collections::BTreeMap<String, String>,
) -> Result<std::collections::BTreeMap<String, String>, CliError> {
    // An unknown connector is refused by `prepare`, naming the connectors there are.
    let Some(registration) = writ_server::targets::public().find(|r| r.name == connector) else {
        return Ok(std::collections::BTreeMap::new());
    };
    let mut settings = std::collections::BTreeMap::new();
    for (flag, value) in given {
        let setting = registration.by_flag(&flag).ok_or_else(|| {
            let options: Vec<String> =
                registration.settings.iter().map(|s| format!("--{}", s.flag)).collect();
            CliError::new(
                "input.invalid_value",
                format!("--{flag} is not an option of {connector} targets; they take {}", options.join(", ")),
            )
        })?;
        let value = match setting.kind {
            writ_connector::SettingKind::Path | writ_connector::SettingKind::SecretFile => {
                absolute(Path::new(&value))?.display().to_string()
            }
            _ => value,
        };
        settings.insert(setting.key.to_owned(), value);
    }
    Ok(settings)
}

fn absolute(path: &Path) -> Result<PathBuf, CliError> {
    std::path::absolute(path)
        .map_err(|e| CliError::new("input.invalid_path", format!("{}: {e}", path.display())))
}

fn change(engine: &Engine, command: ChangeCmd, json: bool) -> Result<(), CliError> {
    let record = match command {
        ChangeCmd::Request(args) => {
            let record = engine.request(request_input(*args)?, writ_engine::random_bits()?)?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({ "id": record.change.id.to_string(), "state": record.change.state.as_str() })
                );
            } else {
                println!("{}", record.change.id);
            }
            return Ok(());
        }
        ChangeCmd::Approve { id, actor, on_behalf_of, valid_for } => {
            let on_behalf_of = on_behalf_of.as_deref().map(IdentityName::parse).transpose()?;
            let validity = valid_for.as_deref().map(Duration::parse).transpose()?;
            engine.approve(
                &ChangeId::parse(&id)?,
                &IdentityName::parse(&actor)?,
                on_behalf_of.as_ref(),
                validity,
            )?
        }
        ChangeCmd::Reject { id, actor, reason } => {
            engine.reject(&ChangeId::parse(&id)?, &IdentityName::parse(&actor)?, reason)?
        }
        ChangeCmd::Cancel { id, actor, reason } => {
            engine.cancel(&ChangeId::parse(&id)?, &IdentityName::parse(&actor)?, reason)?
        }
        ChangeCmd::Execute { id, actor } => {
            let actor = actor.as_deref().map(IdentityName::parse).transpose()?;
            engine.execute(&ChangeId::parse(&id)?, actor.as_ref())?
        }
        ChangeCmd::Verify { id } => engine.verify(&ChangeId::parse(&id)?)?,
        ChangeCmd::Review { id, actor, notes } => {
            engine.review(&ChangeId::parse(&id)?, &IdentityName::parse(&actor)?, notes)?
        }
        ChangeCmd::Comment { id, actor, text } => {
            engine.comment(&ChangeId::parse(&id)?, &IdentityName::parse(&actor)?, text)?
        }
        ChangeCmd::Hold { id, actor, reason } => {
            engine.hold(&ChangeId::parse(&id)?, &IdentityName::parse(&actor)?, true, reason)?
        }
        ChangeCmd::Release { id, actor, reason } => {
            engine.hold(&ChangeId::parse(&id)?, &IdentityName::parse(&actor)?, false, reason)?
        }
        ChangeCmd::Rollback { id, actor, justification } => {
            let body = writ_api::wire::Rollback { justification: Some(justification) };
            let record = engine.rollback(
                &ChangeId::parse(&id)?,
                &IdentityName::parse(&actor)?,
                body.justification()?,
                writ_engine::random_bits()?,
            )?;
            crate::render::print(
                json,
                serde_json::json!({ "id": record.change.id.as_str(), "state": record.change.state.as_str(), "rollback_of": id }),
                || record.change.id.to_string(),
            );
            return Ok(());
        }
        ChangeCmd::Show { id } => {
            let record = engine.load(&ChangeId::parse(&id)?)?;
            let sizes: Vec<u64> = engine.store().checkpoints()?.iter().map(|c| c.size).collect();
            let notifications = engine.notifications(Some(&record.change.id), None, 500)?;
            let view = writ_api::view::ChangeView::of(&record, &sizes).with_notifications(&notifications);
            render::print(json, &view, || writ_api::text::trail(&view));
            return Ok(());
        }
        ChangeCmd::List { state } => {
            let state = state.as_deref().map(ChangeState::parse).transpose()?;
            let changes = engine.changes(state)?;
            let value: Vec<SummaryView> = changes.iter().map(SummaryView::of).collect();
            render::print(json, value, || writ_api::text::summary_table(&changes));
            return Ok(());
        }
    };
    report_transition(&record, json)
}

/// Prints the state a transition reached; a change that ended failed exits non-zero.
fn report_transition(record: &ChangeRecord, json: bool) -> Result<(), CliError> {
    let change = &record.change;
    let error = change.last_execution().and_then(|e| e.error.as_deref());
    crate::render::report_state(change.id.as_str(), change.state.as_str(), error, json)
}

/// The request the command line describes, through the same conversion as the API's body.
pub fn request_input(args: RequestArgs) -> Result<RequestInput, CliError> {
    let window = args.window();
    let RequestArgs {
        actor,
        identity,
        grant,
        revoke,
        rotate,
        duration,
        justification,
        ticket,
        commit,
        pr,
        event,
        on_behalf_of,
        rollback_owner,
        ..
    } = args;
    let body = writ_api::wire::NewChange {
        identity: Some(identity),
        grant,
        revoke,
        rotate,
        duration,
        justification: Some(justification),
        ticket,
        commit,
        pr,
        event: Some(event),
        on_behalf_of,
        window,
        rollback_owner,
    };
    body.into_input(&actor)
}

/// A break-glass request from the command line, through the same conversion as the API's body.
pub fn breakglass_input(args: BreakglassArgs) -> Result<writ_engine::breakglass::BreakGlassInput, CliError> {
    let BreakglassArgs { actor, identity, grant, duration, reason, ticket } = args;
    let body = writ_api::wire::BreakGlass { identity, grant, duration, reason: Some(reason), ticket };
    body.into_input(&actor)
}

fn notify(engine: &Engine, command: crate::cli::NotifyCmd, json: bool) -> Result<(), CliError> {
    use writ_api::view::NotificationView;
    match command {
        crate::cli::NotifyCmd::List { state, change, limit } => {
            let state = state.as_deref().map(writ_core::notify::NoticeState::parse).transpose()?;
            let change = change.as_deref().map(ChangeId::parse).transpose()?;
            let items: Vec<NotificationView> = engine
                .notifications(change.as_ref(), state, limit)?
                .iter()
                .map(NotificationView::of)
                .collect();
            render::print(json, &items, || writ_api::text::notifications(&items));
        }
        crate::cli::NotifyCmd::Show { id } => {
            let view = NotificationView::of(&engine.notification(&id)?);
            render::notification(&view, false, json);
        }
        crate::cli::NotifyCmd::Retry { id, actor } => {
            let actor = registry_actor(engine, actor.as_deref())?;
            let view = NotificationView::of(&engine.retry_notification(&actor, &id)?);
            render::notification(&view, true, json);
        }
    }
    Ok(())
}

fn finding(engine: &Engine, command: FindingCmd, json: bool) -> Result<(), CliError> {
    match command {
        FindingCmd::List { state } => {
            let state = state.as_deref().map(writ_core::finding::FindingState::parse).transpose()?;
            let findings = engine.findings(state)?;
            let value: Vec<FindingView> = findings.iter().map(FindingView::of).collect();
            render::print(json, value, || writ_api::text::finding_table(&findings));
        }
        FindingCmd::Show { id } => {
            let finding = engine.finding(&id)?;
            render::print(json, FindingView::of(&finding), || writ_api::text::finding_detail(&finding));
        }
        FindingCmd::Remediate { id, actor, justification } => {
            let actor = IdentityName::parse(&actor)?;
            let (finding, record) =
                engine.remediate_finding(&actor, &id, justification, writ_engine::random_bits()?)?;
            let sizes: Vec<u64> = engine.store().checkpoints()?.iter().map(|c| c.size).collect();
            let view = writ_api::view::RemediationView {
                finding: FindingView::of(&finding),
                change: writ_api::view::ChangeView::of(&record, &sizes),
            };
            crate::render::remediation(&view, json);
        }
        FindingCmd::Resolve { id, actor, note } => {
            let finding = engine.resolve_finding(&IdentityName::parse(&actor)?, &id, note)?;
            render::print(json, FindingView::of(&finding), || format!("{} {}", finding.id, finding.state));
        }
    }
    Ok(())
}

fn evidence(engine: &Engine, command: EvidenceCmd, json: bool) -> Result<(), CliError> {
    match command {
        EvidenceCmd::Add { id, file, step, actor, media_type } => {
            let id = ChangeId::parse(&id)?;
            let step = writ_core::event::Phase::parse_step(&step)?;
            let actor = IdentityName::parse(&actor)?;
            let metadata = std::fs::metadata(&file)
                .map_err(|e| CliError::new("input.invalid_path", format!("{}: {e}", file.display())))?;
            if metadata.len() > 16 * 1024 * 1024 {
                return Err(CliError::new(
                    "input.too_large",
                    format!("{} is larger than 16 MiB", file.display()),
                ));
            }
            let bytes = std::fs::read(&file)
                .map_err(|e| CliError::new("input.invalid_path", format!("{}: {e}", file.display())))?;
            let name =
                file.file_name().map_or_else(|| "evidence".to_owned(), |n| n.to_string_lossy().into_owned());
            let record = engine.attach_evidence(&id, &actor, step, name, media_type, bytes)?;
            let Some((_, _, attached)) = record.change.evidence.last() else {
                return Err(CliError::new("internal", "the evidence was not recorded"));
            };
            render::print(json, EvidenceView::of(attached), || {
                format!("attached sha256:{} to {} ({})", hex::encode(attached.digest), id, step.as_str())
            });
            Ok(())
        }
        EvidenceCmd::List { id } => {
            let record = engine.load(&ChangeId::parse(&id)?)?;
            let items: Vec<AttachedEvidenceView> = record
                .change
                .evidence
                .iter()
                .map(|(seq, step, e)| AttachedEvidenceView {
                    evidence: EvidenceView::of(e),
                    step: step.as_str().to_owned(),
                    seq: *seq,
                })
                .collect();
            render::print(json, &items, || {
                record
                    .change
                    .evidence
                    .iter()
                    .map(|(_, step, e)| {
                        format!(
                            "{}  {:<14} {:<18} {} bytes",
                            hex::encode(e.digest),
                            step.as_str(),
                            e.label,
                            e.size
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
            Ok(())
        }
        EvidenceCmd::Get { sha256, out } => {
            let digest = hex::decode(sha256.trim_start_matches("sha256:"))
                .ok()
                .and_then(|d| <[u8; 32]>::try_from(d.as_slice()).ok())
                .ok_or_else(|| {
                    CliError::new("input.invalid_value", "expected a SHA-256 digest as 64 hex digits")
                })?;
            let blob = engine.evidence(&digest)?;
            if writ_ledger::sha256(&blob.bytes) != digest {
                return Err(CliError::new(
                    "ledger.evidence_altered",
                    "the stored blob does not match its digest",
                ));
            }
            crate::render::write_out(out.as_deref(), &blob.bytes)
        }
    }
}

/// Registers `count` identities from `threads` threads, printing `ack NAME` after each commit
/// returns (durable). Used by the crash test, which kills this process mid-stream.
fn load_append(engine: &Engine, count: usize, threads: usize) -> Result<(), CliError> {
    use std::io::Write;
    let stdout = std::sync::Mutex::new(std::io::stdout());
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads.max(1))
            .map(|t| {
                let stdout = &stdout;
                scope.spawn(move || -> Result<(), CliError> {
                    for i in (t..count).step_by(threads.max(1)) {
                        let name = IdentityName::parse(&format!("load-{i}"))?;
                        engine.add_identity(
                            Actor::System(SystemActor::Admin),
                            name.clone(),
                            IdentityKind::Human,
                            None,
                            None,
                        )?;
                        if let Ok(mut out) = stdout.lock() {
                            let _ = writeln!(out, "ack {name}");
                            let _ = out.flush();
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        for worker in workers {
            worker.join().map_err(|_| CliError::new("internal", "a load thread panicked"))??;
        }
        Ok(())
    })
}

/// Token commands act as `system:admin`: whoever holds the database and its keys is root.
fn token(engine: &Engine, command: TokenCmd, json: bool) -> Result<(), CliError> {
    let admin = Actor::System(SystemActor::Admin);
    match command {
        TokenCmd::Create { identity, label, expires_in } => {
            let ttl = Duration::parse(&expires_in)?;
            let issued = engine.issue_token(admin, &IdentityName::parse(&identity)?, &label, ttl)?;
            let view = IssuedTokenView { record: TokenView::of(&issued.info, None), token: issued.token };
            render::print(json, &view, || crate::render::token_text(&view));
        }
        TokenCmd::List => {
            let tokens = engine.store().tokens()?;
            let items: Vec<TokenView> = tokens.iter().map(|t| TokenView::of(&t.info, t.revoked_at)).collect();
            render::print(json, &items, || crate::render::token_lines(&items));
        }
        TokenCmd::Revoke { id } => {
            let info = engine.revoke_token(admin, &id)?.info;
            render::print(json, serde_json::json!({ "id": info.id, "revoked": true }), || {
                format!("revoked token {} of {}", info.id, info.identity)
            });
        }
    }
    Ok(())
}

fn delegation(engine: &Engine, command: DelegationCmd, json: bool) -> Result<(), CliError> {
    let now = engine.now();
    match command {
        DelegationCmd::Grant { principal, delegate, duration, actor } => {
            let actor = registry_actor(engine, actor.as_deref())?;
            let (principal, delegate) = (IdentityName::parse(&principal)?, IdentityName::parse(&delegate)?);
            let granted =
                engine.grant_delegation(actor, &principal, &delegate, Duration::parse(&duration)?)?;
            let view = DelegationView::of(&granted, now);
            render::print(json, &view, || writ_api::text::delegations(std::slice::from_ref(&view)));
        }
        DelegationCmd::Revoke { principal, delegate, actor } => {
            let actor = registry_actor(engine, actor.as_deref())?;
            let (principal, delegate) = (IdentityName::parse(&principal)?, IdentityName::parse(&delegate)?);
            let revoked = engine.revoke_delegation(actor, &principal, &delegate)?;
            let view = DelegationView::of(&revoked, now);
            render::print(json, &view, || format!("{principal} → {delegate}: revoked"));
        }
        DelegationCmd::List => {
            let views: Vec<DelegationView> =
                engine.delegations()?.iter().map(|d| DelegationView::of(d, now)).collect();
            render::print(json, &views, || writ_api::text::delegations(&views));
        }
    }
    Ok(())
}

fn role(engine: &Engine, command: RoleCmd, json: bool) -> Result<(), CliError> {
    let admin = Actor::System(SystemActor::Admin);
    match command {
        RoleCmd::Grant { identity, role } => {
            let (identity, role) = (IdentityName::parse(&identity)?, writ_core::access::Role::parse(&role)?);
            engine.set_role(admin, &identity, role, true)?;
            render::print(
                json,
                serde_json::json!({ "identity": identity.to_string(), "role": role.as_str(), "assigned": true }),
                || format!("{identity} is now {role}"),
            );
        }
        RoleCmd::Revoke { identity, role } => {
            let (identity, role) = (IdentityName::parse(&identity)?, writ_core::access::Role::parse(&role)?);
            engine.set_role(admin, &identity, role, false)?;
            render::print(
                json,
                serde_json::json!({ "identity": identity.to_string(), "role": role.as_str(), "assigned": false }),
                || format!("{identity} is no longer {role}"),
            );
        }
        RoleCmd::List => {
            let roles = engine.store().role_assignments()?;
            let value = serde_json::Value::Array(
                roles
                    .iter()
                    .map(|(i, r)| serde_json::json!({ "identity": i.to_string(), "role": r.as_str() }))
                    .collect(),
            );
            render::print(json, value, || {
                roles.iter().map(|(i, r)| format!("{i:<24} {r}")).collect::<Vec<_>>().join("\n")
            });
        }
    }
    Ok(())
}

/// Names joined by commas, or "none".
fn list_or_none(names: &[String]) -> String {
    if names.is_empty() { "none".to_owned() } else { names.join(", ") }
}
