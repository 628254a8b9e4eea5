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

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};
use writ_core::event::Event;
use writ_engine::Engine;

use writ_api::Error;

pub const SCHEMA: &str = "writ.bundle/v1";
pub const NOTE_SEPARATOR: &str = "\n-----\n";

/// A bundle in memory: every file by its path (the manifest included), and what it covers.
pub struct Bundle {
    pub files: BTreeMap<String, Vec<u8>>,
    pub events: usize,
    pub evidence: usize,
    pub tree_size: u64,
    pub uncovered: usize,
}

/// The bundle as a tar archive (ustar; paths relative, mode 0644, no timestamps), for the API.
pub fn tar(bundle: &Bundle) -> Result<Vec<u8>, Error> {
    let mut archive = ::tar::Builder::new(Vec::new());
    for (name, bytes) in &bundle.files {
        let mut header = ::tar::Header::new_ustar();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_cksum();
        archive
            .append_data(&mut header, name, bytes.as_slice())
            .map_err(|e| Error::new("internal", format!("building the archive: {e}")))?;
    }
    archive.into_inner().map_err(|e| Error::new("internal", format!("building the archive: {e}")))
}

/// Builds a bundle for one change (`change = Some`) or the whole log, in memory.
pub fn build(engine: &Engine, change: Option<&writ_core::change::ChangeId>) -> Result<Bundle, Error> {
    let checkpoints = engine.store().checkpoints()?;
    let latest = checkpoints.last().cloned().ok_or_else(|| {
        Error::new("ledger.no_checkpoint", "no signed checkpoint yet; run `writ ledger checkpoint` first")
    })?;
    let tree = engine.ledger_tree()?;
    let rows = engine.all_events()?;
    let wanted: Vec<&writ_store::EventRow> = match change {
        Some(id) => {
            engine.load(id)?;
            rows.iter().filter(|r| r.change.as_ref() == Some(id) && r.index < latest.size).collect()
        }
        None => rows.iter().filter(|r| r.index < latest.size).collect(),
    };
    let uncovered = match change {
        Some(id) => rows.iter().filter(|r| r.change.as_ref() == Some(id) && r.index >= latest.size).count(),
        None => rows.len().saturating_sub(usize::try_from(latest.size).unwrap_or(usize::MAX)),
    };
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut events = String::new();
    let mut proofs = String::new();
    let mut digests: BTreeSet<[u8; 32]> = BTreeSet::new();
    let mut erased: BTreeSet<[u8; 32]> = BTreeSet::new();
    let macs: std::cell::RefCell<BTreeSet<String>> = std::cell::RefCell::new(BTreeSet::new());
    let record_mac = |mac: &str| {
        macs.borrow_mut().insert(mac.to_owned());
        None
    };
    for row in &wanted {
        let leaf = writ_ledger::leaf_hash(&row.bytes);
        events.push_str(&format!(
            "{}\n",
            json!({ "index": row.index, "leaf": hex::encode(leaf), "record": B64.encode(&row.bytes) })
        ));
        let path = tree.inclusion_proof(row.index, latest.size).unwrap_or_default();
        proofs.push_str(&format!(
            "{}\n",
            json!({ "index": row.index, "tree_size": latest.size, "path": path.iter().map(hex::encode).collect::<Vec<_>>() })
        ));
        if let Ok(Event::Change(event)) = writ_ledger::decode(&row.bytes, &record_mac) {
            digests.extend(event.evidence.iter().map(|e| e.digest));
            if let writ_core::event::ChangeEventBody::Erased { blobs, .. } = &event.body {
                erased.extend(blobs.iter().copied());
            }
        }
    }
    // A blob erased under retention is not in the bundle: its erasure event says so.
    for digest in digests.iter().filter(|d| !erased.contains(*d)) {
        let blob = engine.evidence(digest)?;
        files.insert(format!("evidence/{}", hex::encode(digest)), blob.bytes);
    }
    let key = engine
        .store()
        .meta(&format!("ledger.key.{}", key_id_of(&latest.note)))?
        .ok_or_else(|| Error::new("ledger.unknown_key", "the checkpoint's public key is not recorded"))?;
    let mut sensitive = String::new();
    let mut withheld = 0usize;
    for (seal, value) in engine.store().sensitive_many(&macs.into_inner().into_iter().collect::<Vec<_>>())? {
        // The nonce is derived from the kept text, so text changed in the database does not
        // open its seal and `audit verify` says so. A value sealed before commitments (a plain
        // HMAC) cannot be opened offline, so it is withheld (shown as erased) and counted.
        match engine.seal_opening(&seal, &value)? {
            Some(nonce) => sensitive.push_str(&format!(
                "{}\n",
                json!({ "hmac": seal, "nonce": B64.encode(nonce), "value": value })
            )),
            None => withheld += 1,
        }
    }
    files.insert("sensitive.jsonl".into(), sensitive.into_bytes());
    files.insert("events.jsonl".into(), events.into_bytes());
    files.insert("proofs.jsonl".into(), proofs.into_bytes());
    // The checkpoint with every witness cosignature kept on it (C2SP tlog-cosignature lines
    // after the log's own signature), so an auditor can require a quorum offline.
    let mut note = latest.note.clone();
    for cosignature in engine.store().cosignatures(latest.size)? {
        note.push_str(&cosignature.line);
        note.push('\n');
    }
    files.insert("checkpoint.note".into(), note.into_bytes());
    let all_notes: Vec<String> = checkpoints.iter().map(|c| c.note.clone()).collect();
    files.insert("checkpoints.txt".into(), all_notes.join(NOTE_SEPARATOR).into_bytes());
    files.insert("public.key".into(), format!("{key}\n").into_bytes());
    let manifest = json!({
        "schema": SCHEMA,
        "origin": engine.ledger_origin()?,
        "scope": change.map_or("all".to_owned(), ToString::to_string),
        "tree_size": latest.size,
        "events": wanted.len(),
        "events_not_yet_checkpointed": uncovered,
        "sealed_values_withheld": withheld,
        "files": files.iter().map(|(name, bytes)| (name.clone(), Value::String(hex::encode(writ_ledger::sha256(bytes))))).collect::<serde_json::Map<_, _>>(),
    });
    files.insert("manifest.json".into(), serde_json::to_vec_pretty(&manifest).unwrap_or_default());
    Ok(Bundle { files, events: wanted.len(), evidence: digests.len(), tree_size: latest.size, uncovered })
}

fn key_id_of(note: &str) -> String {
    note.rsplit_once(' ')
        .and_then(|(_, sig)| B64.decode(sig.trim()).ok())
        .and_then(|blob| blob.get(..4).map(hex::encode))
        .unwrap_or_default()
}
