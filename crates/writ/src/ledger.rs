//! `writ ledger …`: checkpoints, verification and proofs, printed for people or as JSON.

use std::path::Path;

use base64::Engine as _;
use writ_engine::Engine;

use crate::cli::LedgerCmd;
use crate::{CliError, render};
use writ_api::view::{ConsistencyView, InclusionView, ReportView};
use writ_server::keys;

pub fn run(engine: &Engine, command: LedgerCmd, key: &Path, json: bool) -> Result<(), CliError> {
    match command {
        LedgerCmd::Checkpoint => {
            let signer = keys::load(key)?;
            let checkpoint = engine.checkpoint(&signer)?;
            let value = serde_json::json!({
                "size": checkpoint.size,
                "root": hex::encode(checkpoint.root),
                "note": checkpoint.note,
                "key": signer.verifier().to_text(),
            });
            render::print(json, value, || checkpoint.note.trim_end().to_owned());
            Ok(())
        }
        LedgerCmd::Verify { trusted, shallow, witnesses, witness_quorum } => {
            let trusted = keys::trusted(&trusted, key)?;
            let report = engine.verify_ledger(&trusted, !shallow)?;
            let divergences = engine.check_projections()?;
            let mut view = ReportView::of(&report, &divergences);
            if !witnesses.is_empty() {
                let pairs = witnesses
                    .iter()
                    .map(|entry| {
                        entry.rsplit_once('@').map(|(k, u)| (k.to_owned(), u.to_owned())).ok_or_else(|| {
                            CliError::new(
                                "input.invalid_value",
                                format!("--witness {entry:?}: expected KEY@URL"),
                            )
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let witnesses = writ_server::publish::Witnesses::new(&pairs, witness_quorum)?;
                for problem in writ_server::publish::check(engine, &witnesses, &trusted)? {
                    view.ok = false;
                    view.problems.push(writ_api::view::ProblemView {
                        code: problem.code.to_owned(),
                        index: report.events,
                        message: problem.message,
                    });
                }
            }
            report_verification(&view, json)
        }
        LedgerCmd::RotateKey { retire } => rotate_key(engine, key, retire.as_deref(), json),
        LedgerCmd::Repair { .. } => {
            let repair = engine.repair_projections(writ_core::identity::Actor::System(
                writ_core::identity::SystemActor::Admin,
            ))?;
            if repair.index.is_some() {
                engine.checkpoint(&keys::load(key)?)?;
            }
            let rows = |list: &[writ_engine::projections::Divergence]| -> Vec<String> {
                list.iter().map(ToString::to_string).collect()
            };
            let value = serde_json::json!({
                "repaired": rows(&repair.repaired),
                "index": repair.index,
                "remaining": rows(&repair.remaining),
            });
            render::print(json, value, || match repair.index {
                None => "nothing to repair: every table is what the ledger says".to_owned(),
                Some(index) => {
                    let mut out = format!(
                        "repaired {} rows from the ledger, recorded as event {index}:",
                        repair.repaired.len()
                    );
                    for row in rows(&repair.repaired) {
                        out.push_str(&format!("\n  {row}"));
                    }
                    out
                }
            });
            match repair.remaining.first() {
                None => Ok(()),
                Some(first) => Err(CliError::new(
                    "ledger.projection_diverged",
                    format!(
                        "{} rows cannot be restored from the ledger alone, first: {first}; reload the policy (`writ policy reload`) or re-issue what is named",
                        repair.remaining.len()
                    ),
                )),
            }
        }
        LedgerCmd::Prove { index: Some(index), .. } => {
            let proof = engine.prove_inclusion(index)?;
            render::print(json, InclusionView::of(&proof), || {
                let mut out = format!(
                    "event {} is included in the tree of size {} (verified)\nleaf  {}\n",
                    proof.index,
                    proof.checkpoint.size,
                    hex::encode(proof.leaf)
                );
                for hash in &proof.proof {
                    out.push_str(&format!("path  {}\n", hex::encode(hash)));
                }
                out.push_str(&format!("signed checkpoint:\n{}", proof.checkpoint.note.trim_end()));
                out
            });
            Ok(())
        }
        LedgerCmd::Prove { from: Some(from), to: Some(to), .. } => {
            let proof = engine.prove_consistency(from, to)?;
            let b64 = |h: &[u8; 32]| base64::engine::general_purpose::STANDARD.encode(h);
            render::print(json, ConsistencyView::of(&proof), || {
                let mut out = format!(
                    "tree {} (root {}) is a prefix of tree {} (root {})\n",
                    proof.old_size,
                    b64(&proof.old_root),
                    proof.new_size,
                    b64(&proof.new_root)
                );
                for hash in &proof.proof {
                    out.push_str(&format!("path  {}\n", hex::encode(hash)));
                }
                out.trim_end().to_owned()
            });
            Ok(())
        }
        LedgerCmd::Hash { value } => {
            let mac = engine.seal(&value)?;
            render::print(json, serde_json::json!({ "hmac": mac }), || mac.clone());
            Ok(())
        }
        LedgerCmd::Prove { .. } => {
            Err(CliError::new("input.invalid_value", "use --index N, or --from A --to B"))
        }
    }
}

/// `writ ledger rotate-key`: records the change of keys, rewrites the key file, and signs a
/// checkpoint with the keys now in force (covering the record of the change).
fn rotate_key(engine: &Engine, key: &Path, retire: Option<&str>, json: bool) -> Result<(), CliError> {
    use writ_ledger::checkpoint::{KeyRing, NoteSigner};
    let ring = keys::load(key)?;
    let admin = writ_core::identity::Actor::System(writ_core::identity::SystemActor::Admin);
    let bad = |e: writ_ledger::checkpoint::NoteError| CliError::new("ledger.bad_key", e.to_string());
    let (changed, kept): (String, Vec<NoteSigner>) = match retire {
        None => {
            let new = keys::fresh(&engine.ledger_origin()?)?;
            engine.record_ledger_key(admin, &new.verifier(), false)?;
            let mut keys: Vec<NoteSigner> = ring
                .keys()
                .iter()
                .map(|k| NoteSigner::parse(&k.to_private_text()))
                .collect::<Result<_, _>>()
                .map_err(bad)?;
            let added = new.verifier().to_text();
            keys.push(new);
            (added, keys)
        }
        Some(id) => {
            let Some(old) = ring.verifiers().into_iter().find(|v| v.id_hex() == id) else {
                return Err(CliError::new("input.invalid_value", format!("no key {id:?} in the key file")));
            };
            if ring.keys().len() < 2 {
                return Err(CliError::new(
                    "input.invalid_value",
                    "the only signing key cannot be retired: run `writ ledger rotate-key` first to add its successor",
                ));
            }
            engine.record_ledger_key(admin, &old, true)?;
            let keys = ring
                .keys()
                .iter()
                .filter(|k| k.verifier() != old)
                .map(|k| NoteSigner::parse(&k.to_private_text()))
                .collect::<Result<_, _>>()
                .map_err(bad)?;
            (old.to_text(), keys)
        }
    };
    let ring = KeyRing::new(kept).map_err(bad)?;
    keys::replace(key, &ring)?;
    let checkpoint = engine.checkpoint(&ring)?;
    let now: Vec<String> = ring.verifiers().iter().map(|v| v.to_text()).collect();
    let value = serde_json::json!({
        if retire.is_some() { "retired" } else { "added" }: changed,
        "keys": now,
        "checkpoint": checkpoint.size,
    });
    render::print(json, value, || {
        format!(
            "{} {changed}\nsigning keys now: {}\ncheckpoint {} signed by them",
            if retire.is_some() { "retired" } else { "added" },
            now.join(", "),
            checkpoint.size
        )
    });
    Ok(())
}

/// Prints a verification report (built locally or read from a server) and fails with the first
/// problem's code.
pub fn report_verification(report: &ReportView, json: bool) -> Result<(), CliError> {
    let summary = format!(
        "ledger ok: {} events, {} checkpoints verified (newest covers {}); {} events not yet checkpointed",
        report.events, report.checkpoints_verified, report.covered, report.uncovered
    );
    let diverged = |d: &writ_api::view::DivergenceView| {
        format!("{} {}: the ledger says {}, the table holds {}", d.table, d.key, d.expected, d.found)
    };
    let mut findings: Vec<(String, String)> =
        report.problems.iter().map(|p| (p.code.clone(), p.message.clone())).collect();
    findings
        .extend(report.projections.iter().map(|d| ("ledger.projection_diverged".to_owned(), diverged(d))));
    let also: Vec<String> =
        findings.iter().skip(1).map(|(code, message)| format!("also: [{code}] {message}")).collect();
    let first = findings.first();
    render::print(json, report, || if first.is_some() { also.join("\n") } else { summary });
    match first {
        None => Ok(()),
        Some((code, message)) => {
            Err(CliError::received(code, format!("ledger verification failed: {message}")))
        }
    }
}
