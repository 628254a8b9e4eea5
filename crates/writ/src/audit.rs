//! The auditor bundle: a self-contained directory an auditor can verify offline, with no
//! database and no trust in the system that produced it.
//!
//! ```text
//! manifest.json        schema writ.bundle/v1, origin, scope, and the SHA-256 of every other file
//! events.jsonl         {"index", "leaf", "record"} per event: the exact stored bytes (base64)
//! proofs.jsonl         {"index", "tree_size", "path"}: inclusion proof against the checkpoint
//! checkpoint.note      the newest signed checkpoint (C2SP signed note), with the witnesses'
//!                      cosignatures (C2SP tlog-cosignature) kept on it
//! checkpoints.txt      every signed checkpoint, separated by blank-line-delimited notes
//! public.key           the ledger's verifier key
//! sensitive.jsonl      {"hmac", "nonce", "value"}: clear text of the sealed values the events
//!                      reference, each with the nonce that opens its seal (SHA-256 of a tag,
//!                      the nonce and the value is what the seal commits to)
//! evidence/<sha256>    every evidence blob the events reference
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};
use writ_core::event::{ChangeEvent, Event};
use writ_engine::{ChangeRecord, Engine};
use writ_ledger::checkpoint::{Checkpoint, NoteVerifier, open};
use writ_ledger::cosignature::{CosignatureVerifier, cosigned_by};
use writ_ledger::merkle::{Hash, verify_inclusion};

use crate::CliError;
use writ_server::bundle::{Bundle, SCHEMA, build};

use crate::render;

fn io(path: &Path) -> impl Fn(std::io::Error) -> CliError + '_ {
    move |e| CliError::new("audit.io", format!("{}: {e}", path.display()))
}

fn invalid(message: String) -> CliError {
    CliError::new("audit.invalid_bundle", message)
}

/// Writes a bundle for one change (`change = Some`) or the whole log.
pub fn bundle(
    engine: &Engine,
    change: Option<&writ_core::change::ChangeId>,
    out: &Path,
    json_out: bool,
) -> Result<(), CliError> {
    refuse_existing(out)?;
    let bundle = build(engine, change)?;
    std::fs::create_dir_all(out.join("evidence")).map_err(io(out))?;
    for (name, bytes) in &bundle.files {
        let path = out.join(name);
        std::fs::write(&path, bytes).map_err(io(&path))?;
    }
    report(&bundle, out, json_out);
    Ok(())
}

/// Refuses to write over anything that exists.
pub fn refuse_existing(out: &Path) -> Result<(), CliError> {
    if out.exists() {
        return Err(CliError::new(
            "input.path_exists",
            format!("{} already exists; choose a new path", out.display()),
        ));
    }
    Ok(())
}

/// Prints what a written bundle holds.
pub fn report(bundle: &Bundle, out: &Path, json_out: bool) {
    let summary = json!({ "bundle": out.display().to_string(), "events": bundle.events, "evidence": bundle.evidence, "tree_size": bundle.tree_size, "events_not_yet_checkpointed": bundle.uncovered });
    render::print(json_out, summary, || {
        let mut text = format!(
            "wrote {}: {} events, {} evidence blobs, checkpoint at size {}",
            out.display(),
            bundle.events,
            bundle.evidence,
            bundle.tree_size
        );
        if bundle.uncovered > 0 {
            text.push_str(&format!("\nnote: {} newer events are not yet checkpointed and were left out; run `writ ledger checkpoint` and bundle again", bundle.uncovered));
        }
        text
    });
}

/// Unpacks a bundle archive into a new directory (entries cannot escape it) and reads back what
/// it holds from its manifest.
pub fn untar(bytes: &[u8], out: &Path) -> Result<Bundle, CliError> {
    refuse_existing(out)?;
    std::fs::create_dir_all(out).map_err(io(out))?;
    let mut archive = ::tar::Archive::new(bytes);
    let entries = archive.entries().map_err(|e| invalid(format!("the bundle archive is unreadable: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| invalid(format!("the bundle archive is unreadable: {e}")))?;
        if !entry.unpack_in(out).map_err(io(out))? {
            return Err(invalid("the bundle archive names a path outside its directory".into()));
        }
    }
    let manifest: Value = std::fs::read(out.join("manifest.json"))
        .ok()
        .and_then(|m| serde_json::from_slice(&m).ok())
        .ok_or_else(|| invalid("the bundle archive has no readable manifest.json".into()))?;
    let count = |key: &str| manifest.get(key).and_then(Value::as_u64).unwrap_or(0);
    let files = manifest.get("files").and_then(Value::as_object).cloned().unwrap_or_default();
    Ok(Bundle {
        files: BTreeMap::new(),
        events: usize::try_from(count("events")).unwrap_or(0),
        evidence: files.keys().filter(|k| k.starts_with("evidence/")).count(),
        tree_size: count("tree_size"),
        uncovered: usize::try_from(count("events_not_yet_checkpointed")).unwrap_or(0),
    })
}

/// What `audit verify` asks of witnesses: cosignatures by `keys` (a quorum of them) on the
/// bundle's checkpoint, and the witnesses in `live` (`KEY@URL`) asked now.
pub struct Witnessed {
    pub keys: Vec<String>,
    pub quorum: Option<usize>,
    pub live: Vec<String>,
}

/// Verifies a bundle offline and prints the reconstructed trail of every change in it.
pub fn verify(
    dir: &Path,
    trusted_keys: &[String],
    witnessed: &Witnessed,
    json_out: bool,
) -> Result<(), CliError> {
    let read = |name: &str| std::fs::read(dir.join(name)).map_err(|e| invalid(format!("{name}: {e}")));
    let manifest: Value = serde_json::from_slice(&read("manifest.json")?)
        .map_err(|e| invalid(format!("manifest.json: {e}")))?;
    if manifest.get("schema").and_then(Value::as_str) != Some(SCHEMA) {
        return Err(invalid("manifest.json is not a writ.bundle/v1 manifest".into()));
    }
    let listed = manifest
        .get("files")
        .and_then(Value::as_object)
        .ok_or_else(|| invalid("manifest lists no files".into()))?;
    for (name, digest) in listed {
        if name.contains("..") || name.starts_with('/') {
            return Err(invalid(format!("manifest names an unsafe path {name:?}")));
        }
        let bytes = read(name)?;
        if Some(hex::encode(writ_ledger::sha256(&bytes)).as_str()) != digest.as_str() {
            return Err(invalid(format!("{name} was altered: its SHA-256 differs from the manifest")));
        }
    }
    for entry in std::fs::read_dir(dir.join("evidence")).map_err(|e| invalid(format!("evidence/: {e}")))? {
        let name =
            format!("evidence/{}", entry.map_err(|e| invalid(e.to_string()))?.file_name().to_string_lossy());
        if !listed.contains_key(&name) {
            return Err(invalid(format!("{name} is not listed in the manifest")));
        }
    }
    let shipped = String::from_utf8_lossy(&read("public.key")?).trim().to_owned();
    let pinned = !trusted_keys.is_empty();
    let trusted: Vec<NoteVerifier> = if pinned {
        trusted_keys
            .iter()
            .map(|k| NoteVerifier::parse(k).map_err(|e| CliError::new("input.bad_key", e.to_string())))
            .collect::<Result<_, _>>()?
    } else {
        vec![NoteVerifier::parse(&shipped).map_err(|e| invalid(format!("public.key: {e}")))?]
    };
    let note = String::from_utf8_lossy(&read("checkpoint.note")?).into_owned();
    let checkpoint = open(&note, &trusted)
        .map_err(|e| CliError::new("ledger.bad_checkpoint", format!("checkpoint.note: {e}")))?;
    if manifest.get("origin").and_then(Value::as_str) != Some(checkpoint.origin.as_str()) {
        return Err(invalid("the checkpoint belongs to another log than the manifest names".into()));
    }
    let cosigned = check_cosignatures(&checkpoint, &note, witnessed)?;
    let proofs: BTreeMap<u64, Vec<Hash>> = String::from_utf8_lossy(&read("proofs.jsonl")?)
        .lines()
        .map(|line| {
            let value: Value =
                serde_json::from_str(line).map_err(|e| invalid(format!("proofs.jsonl: {e}")))?;
            let index = value
                .get("index")
                .and_then(Value::as_u64)
                .ok_or_else(|| invalid("proof without index".into()))?;
            let path = value
                .get("path")
                .and_then(Value::as_array)
                .ok_or_else(|| invalid("proof without path".into()))?;
            let path =
                path.iter().map(|h| parse_hash(h.as_str().unwrap_or(""))).collect::<Result<Vec<_>, _>>()?;
            Ok((index, path))
        })
        .collect::<Result<_, CliError>>()?;
    let sensitive = opened_values(&read("sensitive.jsonl")?)?;
    let open_value = |mac: &str| sensitive.get(mac).cloned();
    let mut by_change: BTreeMap<String, Vec<(u64, ChangeEvent)>> = BTreeMap::new();
    let mut count = 0u64;
    let mut seen: BTreeSet<u64> = BTreeSet::new();
    let mut referenced: Vec<(u64, [u8; 32])> = Vec::new();
    let mut erased: BTreeSet<[u8; 32]> = BTreeSet::new();
    for line in String::from_utf8_lossy(&read("events.jsonl")?).lines() {
        let value: Value = serde_json::from_str(line).map_err(|e| invalid(format!("events.jsonl: {e}")))?;
        let index = value
            .get("index")
            .and_then(Value::as_u64)
            .ok_or_else(|| invalid("event without index".into()))?;
        let bytes = B64
            .decode(value.get("record").and_then(Value::as_str).unwrap_or(""))
            .map_err(|_| invalid(format!("event {index}: record is not base64")))?;
        if !seen.insert(index) {
            return Err(invalid(format!("event {index} appears twice")));
        }
        let leaf = writ_ledger::leaf_hash(&bytes);
        let path =
            proofs.get(&index).ok_or_else(|| invalid(format!("event {index} has no inclusion proof")))?;
        if !verify_inclusion(&leaf, index, checkpoint.size, path, &checkpoint.root) {
            return Err(CliError::new(
                "ledger.not_included",
                format!("event {index} is not included in the signed checkpoint (edited, or not this log's)"),
            ));
        }
        let event =
            writ_ledger::decode(&bytes, &open_value).map_err(|e| invalid(format!("event {index}: {e}")))?;
        if let Event::Change(event) = event {
            referenced.extend(event.evidence.iter().map(|e| (index, e.digest)));
            if let writ_core::event::ChangeEventBody::Erased { blobs, .. } = &event.body {
                erased.extend(blobs.iter().copied());
            }
            by_change.entry(event.change.to_string()).or_default().push((index, event));
        }
        count += 1;
    }
    // Every blob an event references is here and matches its digest, unless an erasure event
    // (itself proven above) says retention erased it.
    for (index, digest) in referenced {
        let name = format!("evidence/{}", hex::encode(digest));
        match read(&name) {
            Ok(blob) if writ_ledger::sha256(&blob) != digest => {
                return Err(invalid(format!("{name} does not match the digest recorded in event {index}")));
            }
            Ok(_) => {}
            Err(_) if erased.contains(&digest) => {}
            Err(_) => return Err(invalid(format!("event {index} references missing evidence {name}"))),
        }
    }
    // A whole-log bundle must hold every event the checkpoint covers; a change bundle proves
    // that what it holds was logged, not that nothing of the change was left out.
    if manifest.get("scope").and_then(Value::as_str) == Some("all")
        && let Some(missing) = (0..checkpoint.size).find(|i| !seen.contains(i))
    {
        return Err(CliError::new(
            "ledger.missing_event",
            format!("event {missing} is missing from a bundle of the whole log"),
        ));
    }
    let mut trails = Vec::new();
    let mut text = Vec::new();
    for (id, events) in by_change {
        let mut change = None;
        for (_, event) in &events {
            change =
                Some(writ_core::machine::evolve(change, event).map_err(|e| invalid(format!("{id}: {e}")))?);
        }
        let Some(change) = change else { continue };
        let record = ChangeRecord { change, events };
        let view = writ_api::view::ChangeView::of(&record, &[checkpoint.size]);
        text.push(writ_api::text::trail(&view));
        trails.push(serde_json::to_value(view).map_err(|e| invalid(e.to_string()))?);
    }
    let trust = if pinned {
        "pinned key".to_owned()
    } else {
        format!("the key shipped in the bundle ({shipped}); pass --trusted-key to pin it")
    };
    let value = json!({ "ok": true, "events": count, "tree_size": checkpoint.size, "origin": checkpoint.origin, "trusted": trust, "cosigned_by": cosigned, "changes": trails });
    render::print(json_out, value, || {
        format!(
            "bundle ok: {count} events included in the signed checkpoint of {} at size {}, every evidence blob matches its digest\ntrusted: {trust}\n\n{}",
            checkpoint.origin,
            checkpoint.size,
            text.join("\n\n")
        )
    });
    Ok(())
}

/// The clear text of `sensitive.jsonl`, each value checked against its seal with its nonce: a
/// value that does not open its seal was changed after it was sealed.
fn opened_values(bytes: &[u8]) -> Result<BTreeMap<String, String>, CliError> {
    let mut out = BTreeMap::new();
    for (number, line) in String::from_utf8_lossy(bytes).lines().enumerate() {
        let value: Value = serde_json::from_str(line)
            .map_err(|e| invalid(format!("sensitive.jsonl line {}: {e}", number + 1)))?;
        let field = |name: &str| value.get(name).and_then(Value::as_str);
        let (Some(seal), Some(text)) = (field("hmac"), field("value")) else {
            return Err(invalid(format!("sensitive.jsonl line {}: expected hmac and value", number + 1)));
        };
        let nonce: Option<[u8; 32]> =
            field("nonce").and_then(|n| B64.decode(n).ok()).and_then(|n| n.try_into().ok());
        if !nonce.is_some_and(|nonce| writ_ledger::sensitive::opens(seal, &nonce, text)) {
            return Err(CliError::new(
                "ledger.sealed_text_altered",
                format!(
                    "the clear text kept for sealed value {seal} does not open its seal: it was changed after it was sealed"
                ),
            ));
        }
        out.insert(seal.to_owned(), text.to_owned());
    }
    Ok(out)
}

fn parse_hash(text: &str) -> Result<Hash, CliError> {
    hex::decode(text)
        .ok()
        .and_then(|b| <Hash>::try_from(b.as_slice()).ok())
        .ok_or_else(|| invalid(format!("bad hash {text:?}")))
}

/// Requires a quorum of cosignatures by the given witness keys on the bundle's checkpoint, and
/// asks the live witnesses whether they have seen a larger tree of the log or another root at
/// this size. Returns how many witnesses cosigned.
fn check_cosignatures(checkpoint: &Checkpoint, note: &str, witnessed: &Witnessed) -> Result<usize, CliError> {
    let keys = witnessed
        .keys
        .iter()
        .map(|k| {
            CosignatureVerifier::parse(k)
                .map_err(|e| CliError::new("input.bad_key", format!("--witness-key {k}: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let lines = note.split_once("\n\n").map_or("", |(_, lines)| lines);
    let found = cosigned_by(checkpoint, lines, &keys)
        .map_err(|e| CliError::new("ledger.bad_cosignature", format!("checkpoint.note: {e}")))?;
    let quorum = witnessed.quorum.unwrap_or(keys.len());
    if found.len() < quorum {
        return Err(CliError::new(
            "ledger.witness_quorum",
            format!(
                "the bundle's checkpoint (size {}) is cosigned by {} of the {quorum} witnesses required",
                checkpoint.size,
                found.len()
            ),
        ));
    }
    for entry in &witnessed.live {
        let (key, url) = entry.rsplit_once('@').ok_or_else(|| {
            CliError::new("input.invalid_value", format!("--witness {entry:?}: expected KEY@URL"))
        })?;
        let key =
            CosignatureVerifier::parse(key).map_err(|e| CliError::new("input.bad_key", e.to_string()))?;
        let signed = note.split_once("\n\n").map_or(String::new(), |(body, lines)| {
            let own: String = lines
                .lines()
                .filter(|l| !l.starts_with(&format!("\u{2014} {} ", key.name())))
                .map(|l| format!("{l}\n"))
                .collect();
            format!("{body}\n\n{own}")
        });
        match ask(url, checkpoint, &signed)? {
            Seen::Same => {}
            Seen::Larger(size) => {
                return Err(CliError::new(
                    "ledger.rolled_back",
                    format!(
                        "witness {} has cosigned a tree of {size} events of this log; the bundle's checkpoint covers {}: it comes from a rolled-back or truncated log",
                        key.name(),
                        checkpoint.size
                    ),
                ));
            }
            Seen::Other => {
                return Err(CliError::new(
                    "ledger.forked",
                    format!(
                        "witness {} has cosigned another tree head at size {}: the bundle comes from a forked history",
                        key.name(),
                        checkpoint.size
                    ),
                ));
            }
            Seen::Smaller(size) => {
                eprintln!(
                    "note: witness {} has seen only {size} events of this log; the bundle's newer checkpoint cannot be compared without the events in between",
                    key.name()
                );
            }
        }
    }
    Ok(found.len())
}

enum Seen {
    Same,
    Larger(u64),
    Smaller(u64),
    Other,
}

/// What a witness has seen of the checkpoint's log, compared with the checkpoint: asked with
/// `old 0` (answered with the size it last cosigned), then at the checkpoint's own size.
fn ask(url: &str, checkpoint: &Checkpoint, note: &str) -> Result<Seen, CliError> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(std::time::Duration::from_secs(5)))
        .http_status_as_error(false)
        .build()
        .into();
    let post = |old: u64| -> Result<(u16, String), CliError> {
        let body = writ_ledger::witness::request_body(old, &[], note);
        let target = format!("{}/add-checkpoint", url.trim_end_matches('/'));
        let response = agent
            .post(&target)
            .send(body.as_bytes())
            .map_err(|e| CliError::new("client.unreachable", format!("witness {target}: {e}")))?;
        let status = response.status().as_u16();
        Ok((status, response.into_body().read_to_string().unwrap_or_default()))
    };
    let (status, text) = post(0)?;
    let size = match status {
        200 => return Ok(Seen::Same),
        409 => text
            .trim()
            .parse::<u64>()
            .map_err(|_| invalid(format!("the witness answered 409 without a size: {text}")))?,
        other => {
            return Err(CliError::new(
                "client.http",
                format!("the witness answered {other}: {}", text.trim()),
            ));
        }
    };
    if size > checkpoint.size {
        return Ok(Seen::Larger(size));
    }
    if size < checkpoint.size {
        return Ok(Seen::Smaller(size));
    }
    match post(size)? {
        (200, _) => Ok(Seen::Same),
        (409, _) => Ok(Seen::Other),
        (other, text) => {
            Err(CliError::new("client.http", format!("the witness answered {other}: {}", text.trim())))
        }
    }
}
