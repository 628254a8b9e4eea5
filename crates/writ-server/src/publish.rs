//! Publishing checkpoints to witnesses (C2SP `tlog-witness`, the client side) and asking them
//! what they last saw. Every checkpoint goes to every configured witness with a consistency
//! proof from the size that witness last cosigned; its cosignature is verified and kept. A
//! checkpoint counts as published once a quorum of witnesses cosigned it. A witness that is
//! down holds nothing back: the next round catches it up.
//!
//! The same exchange checks a database against its witnesses (`writ ledger verify --witness`):
//! a witness that cosigned a larger tree than the database holds names a restored backup or a
//! deleted tail; one that cannot be shown a consistency proof to the database's head names a
//! forked history.

use std::time::Duration;

use writ_api::Error;
use writ_engine::Engine;
use writ_ledger::checkpoint::{Checkpoint, NoteVerifier, open};
use writ_ledger::cosignature::{CosignatureVerifier, cosigned_by};
use writ_store::{StoredCheckpoint, StoredCosignature};

/// How long one witness request may take.
const DEADLINE: Duration = Duration::from_secs(5);

/// One configured witness.
#[derive(Clone, Debug)]
pub struct Witness {
    pub key: CosignatureVerifier,
    /// The URL prefix its `add-checkpoint` is under.
    pub url: String,
}

/// The witnesses and how many must cosign.
#[derive(Clone, Debug, Default)]
pub struct Witnesses {
    pub list: Vec<Witness>,
    pub quorum: usize,
}

impl Witnesses {
    /// Parses (key, url) pairs; the quorum defaults to all of them and must be 1..=n.
    pub fn new(entries: &[(String, String)], quorum: Option<usize>) -> Result<Witnesses, Error> {
        let list = entries
            .iter()
            .map(|(key, url)| {
                let key = CosignatureVerifier::parse(key)
                    .map_err(|e| Error::new("input.config", format!("witness key {key:?}: {e}")))?;
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(Error::new("input.config", format!("witness URL {url:?} must be http(s)")));
                }
                Ok(Witness { key, url: url.trim_end_matches('/').to_owned() })
            })
            .collect::<Result<Vec<_>, Error>>()?;
        let quorum = quorum.unwrap_or(list.len());
        if !list.is_empty() && !(1..=list.len()).contains(&quorum) {
            return Err(Error::new(
                "input.config",
                format!("a witness quorum of {quorum} is not between 1 and the {} witnesses", list.len()),
            ));
        }
        Ok(Witnesses { list, quorum })
    }
}

/// What a witness said about one checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// It cosigned (the line, verified, and its timestamp).
    Cosigned(String, u64),
    /// It last cosigned a larger tree than the database's head: a rollback or a deleted tail.
    Ahead(u64),
    /// The checkpoint does not extend what it cosigned at this size: a forked history.
    Forked(u64),
    /// Anything else (unreachable, refused for another reason), in words.
    Failed(String),
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder().timeout_global(Some(DEADLINE)).http_status_as_error(false).build().into()
}

/// Sends `latest` to `witness`, first claiming `old` as the size it last cosigned; on a 409
/// naming another size, once more from that size.
pub fn submit(engine: &Engine, witness: &Witness, latest: &StoredCheckpoint, old: u64) -> Answer {
    let agent = agent();
    let mut old = old.min(latest.size);
    for _ in 0..2 {
        let proof = if old == 0 || old == latest.size {
            Vec::new()
        } else {
            match engine.prove_consistency(old, latest.size) {
                Ok(proof) => proof.proof,
                Err(e) => return Answer::Failed(format!("no consistency proof from {old}: {e}")),
            }
        };
        let body = writ_ledger::witness::request_body(old, &proof, &latest.note);
        let url = format!("{}/add-checkpoint", witness.url);
        let response = match agent.post(&url).send(body.as_bytes()) {
            Ok(response) => response,
            Err(e) => return Answer::Failed(format!("{url}: {e}")),
        };
        let status = response.status().as_u16();
        let text = response.into_body().read_to_string().unwrap_or_default();
        match status {
            200 => return cosignature(latest, witness, &text),
            409 => {
                let Ok(size) = text.trim().parse::<u64>() else {
                    return Answer::Failed(format!("409 without a size: {}", text.trim()));
                };
                if size > latest.size {
                    return Answer::Ahead(size);
                }
                if size == old {
                    // Same size, another root.
                    return Answer::Forked(size);
                }
                old = size;
            }
            422 => return Answer::Forked(old),
            other => return Answer::Failed(format!("{url} answered {other}: {}", text.trim())),
        }
    }
    Answer::Failed("the witness's size kept changing".into())
}

fn cosignature(latest: &StoredCheckpoint, witness: &Witness, text: &str) -> Answer {
    let checkpoint = Checkpoint { origin: origin(&latest.note), size: latest.size, root: latest.root };
    for line in text.split_terminator('\n') {
        if let Ok(Some(timestamp)) = witness.key.check(&checkpoint, line) {
            return Answer::Cosigned(line.to_owned(), timestamp);
        }
    }
    Answer::Failed(format!("no valid cosignature by {} in its answer", witness.key.name()))
}

fn origin(note: &str) -> String {
    note.split('\n').next().unwrap_or_default().to_owned()
}

/// One publishing round: the newest checkpoint to every witness that has not cosigned it.
/// Returns how many witnesses have cosigned it after the round.
pub fn round(engine: &Engine, witnesses: &Witnesses) -> writ_engine::Result<usize> {
    let store = engine.store();
    let Some(latest) = store.latest_checkpoint()? else { return Ok(0) };
    let heads = store.witness_heads()?;
    let mut cosigned = 0;
    for witness in &witnesses.list {
        let name = witness.key.to_text();
        let known = heads.iter().find(|(w, _)| *w == name).map_or(0, |(_, size)| *size);
        if known == latest.size {
            cosigned += 1;
            continue;
        }
        match submit(engine, witness, &latest, known) {
            Answer::Cosigned(line, signed_s) => {
                store.add_cosignature(&StoredCosignature {
                    witness: name,
                    size: latest.size,
                    line,
                    signed_s,
                })?;
                cosigned += 1;
            }
            Answer::Ahead(size) => {
                tracing::error!(target: "writ::ledger", witness = %witness.key.name(), size, ours = latest.size, "a witness cosigned a larger tree than this database holds: it was restored from an older copy or its newest events were deleted")
            }
            Answer::Forked(size) => {
                tracing::error!(target: "writ::ledger", witness = %witness.key.name(), size, "a witness refuses this log's checkpoint as inconsistent with the one it cosigned: a forked history")
            }
            Answer::Failed(why) => {
                tracing::warn!(target: "writ::ledger", witness = %witness.key.name(), "witness not reached: {why}")
            }
        }
    }
    if cosigned < witnesses.quorum {
        tracing::warn!(target: "writ::ledger", size = latest.size, cosigned, quorum = witnesses.quorum, "checkpoint not yet published: too few witnesses cosigned");
    }
    Ok(cosigned)
}

/// One problem a check against witnesses found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WitnessProblem {
    pub code: &'static str,
    pub message: String,
}

/// Checks the database against its witnesses: the newest checkpoint must carry a quorum of
/// valid cosignatures (kept, or obtained now), and no witness may have cosigned a larger or a
/// different tree. `trusted` are the log's own keys.
pub fn check(
    engine: &Engine,
    witnesses: &Witnesses,
    trusted: &[NoteVerifier],
) -> writ_engine::Result<Vec<WitnessProblem>> {
    let store = engine.store();
    let mut problems = Vec::new();
    let Some(latest) = store.latest_checkpoint()? else {
        problems.push(WitnessProblem {
            code: "ledger.no_checkpoint",
            message: "no signed checkpoint to check".into(),
        });
        return Ok(problems);
    };
    let checkpoint = match open(&latest.note, trusted) {
        Ok(checkpoint) => checkpoint,
        Err(e) => {
            problems.push(WitnessProblem { code: "ledger.bad_checkpoint", message: e.to_string() });
            return Ok(problems);
        }
    };
    let kept: String = store.cosignatures(latest.size)?.into_iter().map(|c| c.line + "\n").collect();
    let keys: Vec<CosignatureVerifier> = witnesses.list.iter().map(|w| w.key.clone()).collect();
    let mut cosigners: Vec<String> = match cosigned_by(&checkpoint, &kept, &keys) {
        Ok(found) => found.into_iter().map(|(key, _)| key).collect(),
        Err(e) => {
            problems.push(WitnessProblem { code: "ledger.bad_cosignature", message: e.to_string() });
            Vec::new()
        }
    };
    let heads = store.witness_heads()?;
    for witness in &witnesses.list {
        let name = witness.key.to_text();
        let known = heads.iter().find(|(w, _)| *w == name).map_or(0, |(_, size)| *size);
        match submit(engine, witness, &latest, known) {
            Answer::Cosigned(line, signed_s) => {
                store.add_cosignature(&StoredCosignature {
                    witness: name.clone(),
                    size: latest.size,
                    line,
                    signed_s,
                })?;
                if !cosigners.contains(&name) {
                    cosigners.push(name);
                }
            }
            Answer::Ahead(size) => problems.push(WitnessProblem {
                code: "ledger.rolled_back",
                message: format!(
                    "witness {} cosigned a tree of {size} events, but this database's newest checkpoint covers {}: it was restored from an older copy, or its newest events and checkpoints were deleted",
                    witness.key.name(),
                    latest.size
                ),
            }),
            Answer::Forked(size) => problems.push(WitnessProblem {
                code: "ledger.forked",
                message: format!(
                    "witness {} cosigned a tree of {size} events that this database's history does not extend: the history was rewritten (forked)",
                    witness.key.name()
                ),
            }),
            Answer::Failed(why) => {
                tracing::warn!(target: "writ::ledger", witness = %witness.key.name(), "witness not reached: {why}");
            }
        }
    }
    if cosigners.len() < witnesses.quorum {
        problems.push(WitnessProblem {
            code: "ledger.witness_quorum",
            message: format!(
                "the newest checkpoint (size {}) is cosigned by {} of the {} witnesses required",
                latest.size,
                cosigners.len(),
                witnesses.quorum
            ),
        });
    }
    Ok(problems)
}
