//! Full verification of a log, with no trust in the database: recompute every leaf hash and the
//! tree, open every checkpoint with trusted keys only, compare each signed root with the tree's
//! root at that size, and check consistency between consecutive checkpoints. The same function
//! verifies a live store and an exported bundle.

use std::collections::HashMap;
use std::fmt;

use crate::checkpoint::{Checkpoint, NoteError, NoteVerifier, open};
use crate::merkle::{Hash, Tree, leaf_hash, verify_consistency};

/// One stored event: its index, exact bytes, and the leaf hash recorded beside it (if any).
pub struct Entry {
    pub index: u64,
    pub bytes: Vec<u8>,
    pub recorded_leaf: Option<Hash>,
}

/// Something wrong with the log. Each names the index (or checkpoint size) where it starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// An index is absent: the event was deleted.
    MissingEvent { index: u64 },
    /// Indices go backwards or repeat.
    OutOfOrder { index: u64, after: u64 },
    /// The stored bytes no longer match the leaf hash recorded when the event was appended.
    EditedEvent { index: u64 },
    /// The bytes are not a valid event record.
    Undecodable { index: u64, detail: String },
    /// A change's events appear out of their sequence (reordered events).
    OutOfSequence { index: u64, change: String },
    /// The tree over the stored events does not reproduce a signed root: some event in
    /// `[from, size)` was edited, reordered, replaced or removed.
    RootMismatch { size: u64, from: u64 },
    /// A signed checkpoint covers more events than the log holds (the log was truncated).
    Truncated { size: u64, log_size: u64 },
    /// A checkpoint's signature does not verify.
    BadSignature { size: Option<u64>, detail: String },
    /// A checkpoint is signed by no trusted key.
    UnknownKey { size: Option<u64>, detail: String },
    /// A checkpoint note cannot be parsed.
    MalformedCheckpoint { position: usize, detail: String },
    /// A checkpoint belongs to another log.
    WrongOrigin { size: u64, origin: String },
    /// Two signed checkpoints are not consistent (a forked or rewritten history).
    Inconsistent { old: u64, new: u64 },
    /// A checkpoint that covers a key's retirement rests only on that retired key.
    RetiredKey { size: u64, key: String },
    /// The newest events are covered by no verified checkpoint: deleting them would leave no
    /// trace. Every write signs one before it answers, so a tail is a finding, not "ok".
    Uncovered { from: u64, count: u64 },
}

impl Problem {
    /// A stable code for scripts.
    pub fn code(&self) -> &'static str {
        match self {
            Problem::MissingEvent { .. } => "ledger.missing_event",
            Problem::OutOfOrder { .. } => "ledger.out_of_order",
            Problem::EditedEvent { .. } => "ledger.edited_event",
            Problem::Undecodable { .. } => "ledger.undecodable_event",
            Problem::OutOfSequence { .. } => "ledger.reordered_events",
            Problem::RootMismatch { .. } => "ledger.root_mismatch",
            Problem::Truncated { .. } => "ledger.truncated",
            Problem::BadSignature { .. } => "ledger.bad_signature",
            Problem::UnknownKey { .. } => "ledger.unknown_key",
            Problem::MalformedCheckpoint { .. } => "ledger.malformed_checkpoint",
            Problem::WrongOrigin { .. } => "ledger.wrong_origin",
            Problem::Inconsistent { .. } => "ledger.inconsistent_checkpoints",
            Problem::Uncovered { .. } => "ledger.uncovered_events",
            Problem::RetiredKey { .. } => "ledger.retired_key",
        }
    }

    /// The first event index the problem concerns, for ordering and reporting.
    pub fn index(&self) -> u64 {
        match self {
            Problem::MissingEvent { index }
            | Problem::OutOfOrder { index, .. }
            | Problem::EditedEvent { index }
            | Problem::Undecodable { index, .. }
            | Problem::OutOfSequence { index, .. } => *index,
            Problem::RootMismatch { from, .. } => *from,
            Problem::Truncated { log_size, .. } => *log_size,
            Problem::BadSignature { size, .. } | Problem::UnknownKey { size, .. } => size.unwrap_or(0),
            Problem::MalformedCheckpoint { .. } => 0,
            Problem::WrongOrigin { size, .. } => *size,
            Problem::Inconsistent { old, .. } => *old,
            Problem::Uncovered { from, .. } => *from,
            Problem::RetiredKey { size, .. } => *size,
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::MissingEvent { index } => write!(f, "event {index} is missing (deleted)"),
            Problem::OutOfOrder { index, after } => {
                write!(f, "event {index} follows {after}: indices out of order")
            }
            Problem::EditedEvent { index } => {
                write!(f, "event {index} was edited: its bytes no longer match its leaf hash")
            }
            Problem::Undecodable { index, detail } => {
                write!(f, "event {index} is not a valid record: {detail}")
            }
            Problem::OutOfSequence { index, change } => {
                write!(f, "event {index} is out of sequence for {change}: events were reordered")
            }
            Problem::RootMismatch { size, from } => write!(
                f,
                "the signed checkpoint at size {size} does not match the stored events: an event at index {from}..{size} was edited, reordered, replaced or removed"
            ),
            Problem::Truncated { size, log_size } => {
                write!(
                    f,
                    "the log was truncated: a signed checkpoint covers {size} events, the log holds {log_size}"
                )
            }
            Problem::BadSignature { size, detail } => {
                write!(f, "checkpoint{} has a bad signature: {detail}", at(*size))
            }
            Problem::UnknownKey { size, detail } => {
                write!(f, "checkpoint{} is signed by an unknown key: {detail}", at(*size))
            }
            Problem::MalformedCheckpoint { position, detail } => {
                write!(f, "checkpoint #{position} is malformed: {detail}")
            }
            Problem::WrongOrigin { size, origin } => {
                write!(f, "checkpoint at size {size} belongs to another log ({origin})")
            }
            Problem::Inconsistent { old, new } => {
                write!(f, "checkpoints at sizes {old} and {new} are not consistent (forked history)")
            }
            Problem::RetiredKey { size, key } => write!(
                f,
                "checkpoint at size {size} is signed only by {key}, which the log retired before it: a retired (possibly leaked) key cannot extend the log"
            ),
            Problem::Uncovered { from, count } => write!(
                f,
                "{count} events from index {from} are covered by no signed checkpoint, so deleting them would leave no trace; sign one with `writ ledger checkpoint` (a running server signs within its checkpoint interval)"
            ),
        }
    }
}

fn at(size: Option<u64>) -> String {
    size.map_or(String::new(), |s| format!(" at size {s}"))
}

/// What verification found.
pub struct Report {
    /// Events read.
    pub events: u64,
    /// Checkpoints that opened with a trusted key and matched the tree.
    pub verified_checkpoints: Vec<Checkpoint>,
    /// Events after the newest verified checkpoint (valid so far, not yet signed).
    pub uncovered: u64,
    /// Problems: those naming one event first, ordered by index, then range findings.
    pub problems: Vec<Problem>,
    /// The tree over the stored events, for proofs.
    pub tree: Tree,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Verifies `entries` (in stored order) against signed `notes`. `deep` also decodes every record
/// and checks each change's events appear in sequence. `origin`, if given, must match every
/// checkpoint.
pub fn verify(
    entries: impl IntoIterator<Item = Entry>,
    notes: &[String],
    trusted: &[NoteVerifier],
    origin: Option<&str>,
    deep: bool,
) -> Report {
    let mut problems = Vec::new();
    let mut tree = Tree::new();
    let mut expected = 0u64;
    let mut next_seq: HashMap<String, u64> = HashMap::new();
    let mut keys: Vec<KeyEvent> = Vec::new();
    for entry in entries {
        keys.extend(key_event(&entry));
        if entry.index < expected {
            problems.push(Problem::OutOfOrder { index: entry.index, after: expected.saturating_sub(1) });
        } else if entry.index > expected {
            problems.push(Problem::MissingEvent { index: expected });
        }
        expected = entry.index.max(expected) + 1;
        let leaf = leaf_hash(&entry.bytes);
        if entry.recorded_leaf.is_some_and(|recorded| recorded != leaf) {
            problems.push(Problem::EditedEvent { index: entry.index });
        }
        if deep {
            check_record(&entry, &mut next_seq, &mut problems);
        }
        tree.push(leaf);
    }
    let windows = key_windows(&tree, notes, trusted, &keys);
    let verified_checkpoints = check_checkpoints(&tree, notes, &windows, origin, &mut problems);
    let uncovered = tree.size() - verified_checkpoints.last().map_or(0, |c| c.size.min(tree.size()));
    // Exact findings first (they name one event), then those that bound a range.
    problems.sort_by_key(|p| (matches!(p, Problem::RootMismatch { .. }), p.index()));
    if uncovered > 0 {
        problems.push(Problem::Uncovered { from: tree.size() - uncovered, count: uncovered });
    }
    Report { events: tree.size(), verified_checkpoints, uncovered, problems, tree }
}

fn check_record(entry: &Entry, next_seq: &mut HashMap<String, u64>, problems: &mut Vec<Problem>) {
    match crate::record::decode(&entry.bytes, &|_| None) {
        Err(error) => problems.push(Problem::Undecodable { index: entry.index, detail: error.to_string() }),
        Ok(writ_core::event::Event::Change(event)) => {
            let expected = next_seq.entry(event.change.to_string()).or_insert(0);
            if event.seq != *expected {
                problems
                    .push(Problem::OutOfSequence { index: entry.index, change: event.change.to_string() });
            }
            *expected = event.seq.max(*expected) + 1;
        }
        Ok(writ_core::event::Event::Registry(_)) => {}
    }
}

/// A key joining or leaving the log's checkpoint keys, as an event at `index` says.
struct KeyEvent {
    index: u64,
    key: NoteVerifier,
    retired: bool,
}

/// The key event an entry records, if it records one (a cheap byte test first: most do not).
fn key_event(entry: &Entry) -> Option<KeyEvent> {
    let marker = b"\"type\":\"ledger.key_";
    if !entry.bytes.windows(marker.len()).any(|w| w == marker) {
        return None;
    }
    match crate::record::decode(&entry.bytes, &|_| None) {
        Ok(writ_core::event::Event::Registry(writ_core::event::RegistryEvent::LedgerKey {
            key,
            retired,
            ..
        })) => Some(KeyEvent { index: entry.index, key: NoteVerifier::parse(&key).ok()?, retired }),
        _ => None,
    }
}

/// A key and the checkpoint sizes it may sign: more than `after` events (a key added at index
/// `a` signs only checkpoints that include its addition) and at most `until` (a key retired at
/// index `r` signs no checkpoint that includes its retirement).
struct KeyWindow {
    key: NoteVerifier,
    after: u64,
    until: Option<u64>,
}

impl KeyWindow {
    fn covers(&self, size: u64) -> bool {
        size > self.after && self.until.is_none_or(|until| size <= until)
    }
}

/// The keys each checkpoint may be signed by. Key events count only if a checkpoint signed
/// by a trusted key and matching the stored events covers them: the log's own history then
/// vouches for keys the verifier does not hold (an older key, retired since) and for when
/// each key stopped counting.
fn key_windows(
    tree: &Tree,
    notes: &[String],
    trusted: &[NoteVerifier],
    events: &[KeyEvent],
) -> Vec<KeyWindow> {
    let mut windows: Vec<KeyWindow> =
        trusted.iter().map(|key| KeyWindow { key: key.clone(), after: 0, until: None }).collect();
    if events.is_empty() {
        // A log that never rotated a key: no checkpoint needs opening twice.
        return windows;
    }
    let vouched = notes
        .iter()
        .filter_map(|note| open(note, trusted).ok())
        .filter(|c| tree.root_at(c.size) == Some(c.root))
        .map(|c| c.size)
        .max()
        .unwrap_or(0);
    for event in events.iter().filter(|e| e.index < vouched) {
        let position = windows.iter().position(|w| w.key == event.key);
        let window = match position {
            Some(position) => windows.get_mut(position),
            None => {
                windows.push(KeyWindow { key: event.key.clone(), after: 0, until: None });
                windows.last_mut()
            }
        };
        if let Some(window) = window {
            if event.retired {
                window.until = Some(event.index);
            } else if position.is_none() {
                window.after = event.index;
            }
        }
    }
    windows
}

fn check_checkpoints(
    tree: &Tree,
    notes: &[String],
    windows: &[KeyWindow],
    origin: Option<&str>,
    problems: &mut Vec<Problem>,
) -> Vec<Checkpoint> {
    let mut opened: Vec<Checkpoint> = Vec::new();
    let every: Vec<NoteVerifier> = windows.iter().map(|w| w.key.clone()).collect();
    for (position, note) in notes.iter().enumerate() {
        let size = note.lines().nth(1).and_then(|s| s.parse::<u64>().ok());
        let valid: Vec<NoteVerifier> =
            windows.iter().filter(|w| size.is_some_and(|s| w.covers(s))).map(|w| w.key.clone()).collect();
        match open(note, &valid) {
            Ok(checkpoint) => opened.push(checkpoint),
            Err(NoteError::BadSignature(detail)) => problems.push(Problem::BadSignature { size, detail }),
            Err(NoteError::UnknownKey(detail)) => match (size, open(note, &every)) {
                (Some(size), Ok(_)) => {
                    let key = windows
                        .iter()
                        .find(|w| !w.covers(size) && open(note, std::slice::from_ref(&w.key)).is_ok())
                        .map_or(detail, |w| w.key.to_text());
                    problems.push(Problem::RetiredKey { size, key });
                }
                _ => problems.push(Problem::UnknownKey { size, detail }),
            },
            Err(error) => problems.push(Problem::MalformedCheckpoint { position, detail: error.to_string() }),
        }
    }
    opened.sort_by_key(|c| c.size);
    let mut verified: Vec<Checkpoint> = Vec::new();
    let mut previous: Option<&Checkpoint> = None;
    for checkpoint in &opened {
        if origin.is_some_and(|o| o != checkpoint.origin) {
            problems.push(Problem::WrongOrigin { size: checkpoint.size, origin: checkpoint.origin.clone() });
            continue;
        }
        if let Some(previous) = previous
            && previous.size == checkpoint.size
            && previous.root != checkpoint.root
        {
            problems.push(Problem::Inconsistent { old: previous.size, new: checkpoint.size });
            continue;
        }
        match tree.root_at(checkpoint.size) {
            None => problems.push(Problem::Truncated { size: checkpoint.size, log_size: tree.size() }),
            Some(root) if root != checkpoint.root => {
                let from = verified.last().map_or(0, |c| c.size);
                problems.push(Problem::RootMismatch { size: checkpoint.size, from });
            }
            Some(_) => {
                if let Some(last) = verified.last() {
                    let proof = tree.consistency_proof(last.size, checkpoint.size).unwrap_or_default();
                    if !verify_consistency(last.size, checkpoint.size, &last.root, &checkpoint.root, &proof) {
                        problems.push(Problem::Inconsistent { old: last.size, new: checkpoint.size });
                    }
                }
                verified.push(checkpoint.clone());
            }
        }
        previous = Some(checkpoint);
    }
    verified
}
