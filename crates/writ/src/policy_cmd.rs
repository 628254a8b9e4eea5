//! `writ policy`: show, check, reload, test and explain the policy as code.

use std::path::Path;

use serde::Serialize;
use serde_json::json;
use writ_core::change::ChangeId;
use writ_core::identity::{Actor, SystemActor};
use writ_engine::Engine;
use writ_policy::{DEFAULT_TESTS, Policy, PolicyBundle, PolicyError, Validation};

use crate::cli::PolicyCmd;
use crate::{CliError, render};

pub fn run(engine: Option<&Engine>, command: PolicyCmd, json: bool) -> Result<(), CliError> {
    match command {
        PolicyCmd::Check { dir } => {
            let policy = compile_dir(&dir)?;
            let value = json!({ "valid": true, "hash": policy.hash(), "files": policy.bundle().files().keys().collect::<Vec<_>>() });
            print(json, value, || {
                format!("valid: policy {} ({} files)", policy.hash(), policy.bundle().files().len())
            })
        }
        PolicyCmd::Test { dir } => test(dir.as_deref(), json),
        PolicyCmd::Show => show(&*need(engine)?.policy()?, json),
        PolicyCmd::Reload { dir } => {
            let dir = dir.ok_or_else(|| {
                CliError::new("input.missing", "give the policy directory with --dir (or WRIT_POLICY_DIR)")
            })?;
            let bundle = PolicyBundle::from_dir(&dir).map_err(invalid)?;
            let loaded = need(engine)?.load_policy(Actor::System(SystemActor::Admin), bundle)?;
            print_loaded(&loaded, json)
        }
        PolicyCmd::Explain { id } => explain(need(engine)?, &ChangeId::parse(&id)?, json),
    }
}

fn need(engine: Option<&Engine>) -> Result<&Engine, CliError> {
    engine.ok_or_else(|| CliError::new("input.not_remote", "this command needs --db"))
}

pub fn print_loaded(loaded: &writ_engine::policy::Loaded, json: bool) -> Result<(), CliError> {
    let (hash, changed, index) = match loaded {
        writ_engine::policy::Loaded::Changed { hash, index } => (hash, true, Some(*index)),
        writ_engine::policy::Loaded::Unchanged { hash } => (hash, false, None),
    };
    let value = json!({ "hash": hash, "changed": changed, "ledger_index": index });
    print(json, value, || {
        if changed {
            format!("policy {hash} is in force (recorded as ledger event {})", index.unwrap_or_default())
        } else {
            format!("policy {hash} was already in force; nothing recorded")
        }
    })
}

fn invalid(error: PolicyError) -> CliError {
    if matches!(error, PolicyError::Io { .. }) {
        return CliError::new("policy.unreadable", format!("cannot read the policy: {error}"));
    }
    CliError::new("policy.invalid", format!("invalid policy: {error}"))
}

fn compile_dir(dir: &Path) -> Result<Policy, CliError> {
    Policy::compile(PolicyBundle::from_dir(dir).map_err(invalid)?).map_err(invalid)
}

fn test(dir: Option<&Path>, json: bool) -> Result<(), CliError> {
    let (policy, files) = match dir {
        None => (
            Policy::default_pack().map_err(invalid)?,
            vec![("default.toml".to_owned(), DEFAULT_TESTS.to_owned())],
        ),
        Some(dir) => {
            let policy = compile_dir(dir)?;
            let mut files = Vec::new();
            let tests = dir.join("tests");
            let read =
                |e: std::io::Error| CliError::new("input.unreadable", format!("{}: {e}", tests.display()));
            let mut entries: Vec<_> =
                std::fs::read_dir(&tests).map_err(read)?.collect::<Result<_, _>>().map_err(read)?;
            entries.sort_by_key(std::fs::DirEntry::file_name);
            for entry in entries.iter().filter(|e| e.file_name().to_string_lossy().ends_with(".toml")) {
                let text = std::fs::read_to_string(entry.path()).map_err(read)?;
                files.push((format!("tests/{}", entry.file_name().to_string_lossy()), text));
            }
            if files.is_empty() {
                return Err(CliError::new(
                    "policy.no_tests",
                    format!("no tests/*.toml in {}", dir.display()),
                ));
            }
            (policy, files)
        }
    };
    let mut results = Vec::new();
    for (name, text) in &files {
        results.extend(writ_policy::testing::run(&policy, name, text).map_err(invalid)?);
    }
    let failed = results.iter().filter(|r| !r.passed).count();
    let value = json!({
        "policy": policy.hash(),
        "passed": results.len() - failed,
        "failed": failed,
        "cases": results.iter().map(|r| json!({ "file": r.file, "line": r.line, "name": r.name, "passed": r.passed, "detail": r.detail })).collect::<Vec<_>>(),
    });
    print(json, value, || {
        let mut out: Vec<String> = results
            .iter()
            .map(|r| {
                format!(
                    "{} {}:{} {} — {}",
                    if r.passed { "ok  " } else { "FAIL" },
                    r.file,
                    r.line,
                    r.name,
                    r.detail
                )
            })
            .collect();
        out.push(format!("{} passed, {failed} failed (policy {})", results.len() - failed, policy.hash()));
        out.join("\n")
    })?;
    if failed > 0 {
        return Err(CliError::new("policy.tests_failed", format!("{failed} policy test case(s) failed")));
    }
    Ok(())
}

/// A rule or Cedar policy of the pack: its id, what it says, the controls it implements.
#[derive(Serialize)]
struct RuleView {
    id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<Option<String>>,
    controls: Vec<String>,
}

/// `writ policy show`.
#[derive(Serialize)]
struct PolicyView<'a> {
    hash: &'a str,
    default_pack: bool,
    files: Vec<&'a String>,
    workflow_rules: Vec<RuleView>,
    cedar_policies: Vec<RuleView>,
}

fn show(policy: &Policy, json: bool) -> Result<(), CliError> {
    let default = PolicyBundle::default_pack().hash() == policy.hash();
    let view = PolicyView {
        hash: policy.hash(),
        default_pack: default,
        files: policy.bundle().files().keys().collect(),
        workflow_rules: policy
            .rules()
            .listing()
            .into_iter()
            .map(|(id, description, controls)| RuleView { id, description: Some(description), controls })
            .collect(),
        cedar_policies: policy
            .cedar_listing()
            .into_iter()
            .map(|(id, controls)| RuleView { id, description: None, controls })
            .collect(),
    };
    print(json, &view, || {
        let mut out =
            vec![format!("policy {}{}", policy.hash(), if default { " (Writ's default pack)" } else { "" })];
        for (kind, list) in [("rule ", &view.workflow_rules), ("cedar", &view.cedar_policies)] {
            for item in list {
                out.push(format!("  {kind} {:<48} {}", item.id, item.controls.join(", ")));
            }
        }
        out.join("\n")
    })
}

/// One step of a change that policy decided, with the rules that decided it.
#[derive(Serialize)]
struct StepView {
    ledger_index: u64,
    #[serde(rename = "type")]
    kind: &'static str,
    actor: String,
    at: String,
    policy: String,
    rules: Vec<RuleView>,
    slot: Option<String>,
}

/// A policy's decision on the change, replayed.
#[derive(Serialize)]
#[serde(untagged)]
enum DecisionView {
    Refused { refused: RefusedView },
    Decided(ValidationView),
}

#[derive(Serialize)]
struct RefusedView {
    code: &'static str,
    rule: Option<String>,
    reason: String,
}

#[derive(Serialize)]
struct ValidationView {
    tier: String,
    approvals: u8,
    approval_validity: String,
    slots: Vec<String>,
    review_required: bool,
    rules: Vec<String>,
    matches_record: bool,
}

#[derive(Serialize)]
struct ReplayView {
    policy: String,
    decision: Option<DecisionView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<&'static str>,
}

/// `writ policy explain`.
#[derive(Serialize)]
struct ExplainView {
    change: String,
    state: &'static str,
    steps: Vec<StepView>,
    replay_recorded_policy: Option<ReplayView>,
    replay_policy_in_force: ReplayView,
}

fn explain(engine: &Engine, id: &ChangeId, json: bool) -> Result<(), CliError> {
    let record = engine.load(id)?;
    let change = &record.change;
    let policy = engine.policy()?;
    let mut steps = Vec::new();
    let mut validated_by: Option<String> = None;
    for (index, event) in &record.events {
        let Some(stamp) = &event.policy else { continue };
        if matches!(event.body, writ_core::event::ChangeEventBody::Validated { .. }) {
            validated_by = Some(stamp.hash.clone());
        }
        steps.push(StepView {
            ledger_index: *index,
            kind: event.body.type_name(),
            actor: event.actor.to_string(),
            at: event.at.to_rfc3339(),
            policy: stamp.hash.clone(),
            rules: stamp
                .rules
                .iter()
                .map(|r| RuleView { id: r.clone(), description: None, controls: policy.controls(r) })
                .collect(),
            slot: stamp.slot.clone(),
        });
    }
    let replay = |p: &Policy| -> Result<DecisionView, CliError> {
        Ok(match engine.replay_validation(change, p)? {
            Ok(v) => DecisionView::Decided(validation_view(&v, change)),
            Err(denial) => DecisionView::Refused {
                refused: RefusedView { code: denial.code, rule: denial.rule, reason: denial.reason },
            },
        })
    };
    let recorded = match &validated_by {
        Some(hash) => Some(match engine.policy_by_hash(hash)? {
            Some(p) => ReplayView { policy: hash.clone(), decision: Some(replay(&p)?), note: None },
            None => ReplayView {
                policy: hash.clone(),
                decision: None,
                note: Some("this policy is not in the store"),
            },
        }),
        None => None,
    };
    let view = ExplainView {
        change: id.to_string(),
        state: change.state.as_str(),
        steps,
        replay_recorded_policy: recorded,
        replay_policy_in_force: ReplayView {
            policy: policy.hash().to_owned(),
            decision: Some(replay(&policy)?),
            note: None,
        },
    };
    print(json, &view, || {
        let short = |hash: &str| hash.chars().take(12).collect::<String>();
        let mut out = vec![format!("{id} · state {}", change.state)];
        for step in &view.steps {
            let rules: Vec<String> = step
                .rules
                .iter()
                .map(|r| {
                    if r.controls.is_empty() {
                        r.id.clone()
                    } else {
                        format!("{} [{}]", r.id, r.controls.join(", "))
                    }
                })
                .collect();
            let slot = step.slot.as_ref().map_or(String::new(), |s| format!(" as {s}"));
            out.push(format!(
                "  #{:<6} {:<26} {}{slot} · policy {} · {}",
                step.ledger_index,
                step.kind,
                step.actor,
                short(&step.policy),
                rules.join("; ")
            ));
        }
        let replays = [
            ("recorded policy", view.replay_recorded_policy.as_ref()),
            ("policy in force", Some(&view.replay_policy_in_force)),
        ];
        for (label, replay) in replays {
            let Some(replay) = replay else { continue };
            let text = match &replay.decision {
                Some(DecisionView::Refused { refused }) => {
                    format!("would refuse it [{}]: {}", refused.code, refused.reason)
                }
                None => "not in the store".to_owned(),
                Some(DecisionView::Decided(decision)) => {
                    let same =
                        if decision.matches_record { "same as recorded" } else { "DIFFERS from the record" };
                    format!("tier {}, slots [{}] ({same})", decision.tier, decision.slots.join(", "))
                }
            };
            out.push(format!("  replay under {label} {}: {text}", short(&replay.policy)));
        }
        out.join("\n")
    })
}

fn validation_view(v: &Validation, change: &writ_core::change::Change) -> ValidationView {
    let slots: Vec<String> = v.slots.iter().map(|s| s.label.clone()).collect();
    let matches = change.controls.as_ref().is_some_and(|c| c.tier == v.tier && c.slots == slots)
        && change.requirement.approvals == v.approvals
        && change.requirement.validity == v.validity;
    ValidationView {
        tier: v.tier.clone(),
        approvals: v.approvals,
        approval_validity: v.validity.to_string(),
        slots,
        review_required: v.review,
        rules: v.rules.clone(),
        matches_record: matches,
    }
}

fn print(json: bool, value: impl Serialize, text: impl FnOnce() -> String) -> Result<(), CliError> {
    render::print(json, value, text);
    Ok(())
}
