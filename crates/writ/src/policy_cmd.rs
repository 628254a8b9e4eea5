//! `writ policy`: show, check, reload, test and explain the policy as code.

// Indexing a `serde_json::Value` by a key returns `Null` when the key is absent; it never panics.
#![allow(clippy::indexing_slicing)]

use std::path::Path;

use serde_json::{Value, json};
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

fn show(policy: &Policy, json: bool) -> Result<(), CliError> {
    let default = PolicyBundle::default_pack().hash() == policy.hash();
    let rules: Vec<Value> = policy
        .rules()
        .listing()
        .into_iter()
        .map(|(id, description, controls)| json!({ "id": id, "description": description, "controls": controls }))
        .collect();
    let cedar: Vec<Value> = policy
        .cedar_listing()
        .into_iter()
        .map(|(id, controls)| json!({ "id": id, "controls": controls }))
        .collect();
    let value = json!({
        "hash": policy.hash(),
        "default_pack": default,
        "files": policy.bundle().files().keys().collect::<Vec<_>>(),
        "workflow_rules": rules,
        "cedar_policies": cedar,
    });
    print(json, value.clone(), || {
        let mut out =
            vec![format!("policy {}{}", policy.hash(), if default { " (Writ's default pack)" } else { "" })];
        for (kind, list) in [("rule ", &value["workflow_rules"]), ("cedar", &value["cedar_policies"])] {
            for item in list.as_array().into_iter().flatten() {
                let controls: Vec<&str> =
                    item["controls"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
                out.push(format!(
                    "  {kind} {:<48} {}",
                    item["id"].as_str().unwrap_or("-"),
                    controls.join(", ")
                ));
            }
        }
        out.join("\n")
    })
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
        let rules: Vec<Value> =
            stamp.rules.iter().map(|r| json!({ "id": r, "controls": policy.controls(r) })).collect();
        steps.push(json!({
            "ledger_index": index,
            "type": event.body.type_name(),
            "actor": event.actor.to_string(),
            "at": event.at.to_rfc3339(),
            "policy": stamp.hash,
            "rules": rules,
            "slot": stamp.slot,
        }));
    }
    let replay = |p: &Policy| -> Result<Value, CliError> {
        Ok(match engine.replay_validation(change, p)? {
            Ok(v) => validation_json(&v, change),
            Err(denial) => {
                json!({ "refused": { "code": denial.code, "rule": denial.rule, "reason": denial.reason } })
            }
        })
    };
    let recorded = match &validated_by {
        Some(hash) => match engine.policy_by_hash(hash)? {
            Some(p) => json!({ "policy": hash, "decision": replay(&p)? }),
            None => {
                json!({ "policy": hash, "decision": Value::Null, "note": "this policy is not in the store" })
            }
        },
        None => Value::Null,
    };
    let value = json!({
        "change": id.to_string(),
        "state": change.state.as_str(),
        "steps": steps,
        "replay_recorded_policy": recorded,
        "replay_policy_in_force": { "policy": policy.hash(), "decision": replay(&policy)? },
    });
    print(json, value.clone(), || {
        let short = |v: &Value| {
            v.as_str().map(|h| h.chars().take(12).collect::<String>()).unwrap_or_else(|| "-".into())
        };
        let mut out = vec![format!("{id} · state {}", change.state)];
        for step in value["steps"].as_array().into_iter().flatten() {
            let rules: Vec<String> = step["rules"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|r| {
                    let controls: Vec<&str> =
                        r["controls"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
                    if controls.is_empty() {
                        r["id"].as_str().unwrap_or("-").to_owned()
                    } else {
                        format!("{} [{}]", r["id"].as_str().unwrap_or("-"), controls.join(", "))
                    }
                })
                .collect();
            let slot = step["slot"].as_str().map_or(String::new(), |s| format!(" as {s}"));
            out.push(format!(
                "  #{:<6} {:<26} {}{slot} · policy {} · {}",
                step["ledger_index"],
                step["type"].as_str().unwrap_or("-"),
                step["actor"].as_str().unwrap_or("-"),
                short(&step["policy"]),
                rules.join("; ")
            ));
        }
        for (label, key) in
            [("recorded policy", "replay_recorded_policy"), ("policy in force", "replay_policy_in_force")]
        {
            let replay = &value[key];
            if replay.is_null() {
                continue;
            }
            let decision = &replay["decision"];
            let text = if let Some(refused) = decision["refused"].as_object() {
                format!(
                    "would refuse it [{}]: {}",
                    refused.get("code").and_then(Value::as_str).unwrap_or("-"),
                    refused.get("reason").and_then(Value::as_str).unwrap_or("-")
                )
            } else if decision.is_null() {
                "not in the store".to_owned()
            } else {
                let same = if decision["matches_record"] == Value::Bool(true) {
                    "same as recorded"
                } else {
                    "DIFFERS from the record"
                };
                format!(
                    "tier {}, slots [{}] ({same})",
                    decision["tier"].as_str().unwrap_or("-"),
                    decision["slots"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            out.push(format!("  replay under {label} {}: {text}", short(&replay["policy"])));
        }
        out.join("\n")
    })
}

fn validation_json(v: &Validation, change: &writ_core::change::Change) -> Value {
    let slots: Vec<&str> = v.slots.iter().map(|s| s.label.as_str()).collect();
    let matches = change.controls.as_ref().is_some_and(|c| c.tier == v.tier && c.slots == slots)
        && change.requirement.approvals == v.approvals
        && change.requirement.validity == v.validity;
    json!({
        "tier": v.tier,
        "approvals": v.approvals,
        "approval_validity": v.validity.to_string(),
        "slots": slots,
        "review_required": v.review,
        "rules": v.rules,
        "matches_record": matches,
    })
}

fn print(json: bool, value: Value, text: impl FnOnce() -> String) -> Result<(), CliError> {
    render::print(json, value, text);
    Ok(())
}
