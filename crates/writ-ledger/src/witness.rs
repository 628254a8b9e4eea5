//! The witness side of C2SP `tlog-witness` (`POST <prefix>/add-checkpoint`), as pure functions:
//! reading a request body and deciding it against what the witness last cosigned. The body is
//!
//! ```text
//! old <size the client believes the witness last cosigned>
//! <zero to 63 base64 consistency proof hashes, one per line>
//!
//! <a signed checkpoint note>
//! ```
//!
//! A checkpoint is cosigned only if a trusted log key signed it and it extends, by a verified
//! RFC 6962 consistency proof, the tree head the witness last cosigned for that origin; the
//! caller then persists the new head before answering (atomically with the check).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use crate::checkpoint::{Checkpoint, NoteError, NoteVerifier, open};
use crate::merkle::{Hash, verify_consistency};

/// The most proof lines a request may carry (the spec's bound).
pub const MAX_PROOF: usize = 63;

/// A parsed `add-checkpoint` request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddCheckpoint {
    pub old: u64,
    pub proof: Vec<Hash>,
    pub note: String,
}

/// The tree head a witness last cosigned for one origin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head {
    pub size: u64,
    pub root: Hash,
}

/// Why a request is not cosigned, with the HTTP status the spec gives it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// 400: the body is not a well-formed request, or `old` exceeds the checkpoint's size.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// 404: the witness knows no log with this origin.
    #[error("unknown log origin {0:?}")]
    UnknownLog(String),
    /// 403: no signature on the checkpoint verifies against the log's keys.
    #[error("the checkpoint is not signed by the log's key: {0}")]
    NotSigned(String),
    /// 409: `old` is not the size last cosigned (the body says which), or the same size comes
    /// with another root (a fork).
    #[error("the witness last cosigned size {0} of this log")]
    Conflict(u64),
    /// 422: the consistency proof does not verify (the checkpoint does not extend the cosigned
    /// head: a rewritten or forked history).
    #[error("the consistency proof from size {old} to {new} does not verify")]
    Inconsistent { old: u64, new: u64 },
}

impl Refused {
    pub fn status(&self) -> u16 {
        match self {
            Refused::BadRequest(_) => 400,
            Refused::UnknownLog(_) => 404,
            Refused::NotSigned(_) => 403,
            Refused::Conflict(_) => 409,
            Refused::Inconsistent { .. } => 422,
        }
    }
}

/// Reads an `add-checkpoint` body.
pub fn parse(body: &str) -> Result<AddCheckpoint, Refused> {
    let bad = |why: &str| Refused::BadRequest(why.to_owned());
    let (head, note) = body.split_once("\n\n").ok_or_else(|| bad("no empty line before the checkpoint"))?;
    let mut lines = head.split('\n');
    let old = lines
        .next()
        .and_then(|l| l.strip_prefix("old "))
        .filter(|s| {
            !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (*s == "0" || !s.starts_with('0'))
        })
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or_else(|| bad("the first line must be `old <size>`"))?;
    let proof = lines
        .map(|line| {
            B64.decode(line)
                .ok()
                .and_then(|h| <Hash>::try_from(h.as_slice()).ok())
                .ok_or_else(|| bad("a proof line is not a base64 SHA-256 hash"))
        })
        .collect::<Result<Vec<Hash>, Refused>>()?;
    if proof.len() > MAX_PROOF {
        return Err(bad("more than 63 proof lines"));
    }
    Ok(AddCheckpoint { old, proof, note: note.to_owned() })
}

/// The origin line of a note, before any signature is checked.
fn origin(note: &str) -> Option<&str> {
    note.split('\n').next().filter(|o| !o.is_empty())
}

/// Decides a request against the log keys the witness trusts (each named by its origin) and
/// the head it last cosigned for that origin (`None`: never). Returns the checkpoint to cosign
/// and persist as the new head.
pub fn decide(
    request: &AddCheckpoint,
    logs: &[NoteVerifier],
    last: Option<&Head>,
) -> Result<Checkpoint, Refused> {
    let origin =
        origin(&request.note).ok_or_else(|| Refused::BadRequest("the checkpoint has no origin".into()))?;
    let keys: Vec<NoteVerifier> = logs.iter().filter(|k| k.name() == origin).cloned().collect();
    if keys.is_empty() {
        return Err(Refused::UnknownLog(origin.to_owned()));
    }
    let checkpoint = open(&request.note, &keys).map_err(|e| match e {
        NoteError::Malformed(why) => Refused::BadRequest(why),
        other => Refused::NotSigned(other.to_string()),
    })?;
    if request.old > checkpoint.size {
        return Err(Refused::BadRequest(format!(
            "old size {} exceeds the checkpoint's size {}",
            request.old, checkpoint.size
        )));
    }
    let last_size = last.map_or(0, |h| h.size);
    if request.old != last_size {
        return Err(Refused::Conflict(last_size));
    }
    match last {
        None => {
            if !request.proof.is_empty() {
                return Err(Refused::Inconsistent { old: 0, new: checkpoint.size });
            }
        }
        Some(head) if head.size == checkpoint.size => {
            if head.root != checkpoint.root {
                return Err(Refused::Conflict(head.size));
            }
        }
        Some(head) => {
            if !verify_consistency(head.size, checkpoint.size, &head.root, &checkpoint.root, &request.proof) {
                return Err(Refused::Inconsistent { old: head.size, new: checkpoint.size });
            }
        }
    }
    Ok(checkpoint)
}

/// The body of an `add-checkpoint` request for `note`, extending `old` by `proof`.
pub fn request_body(old: u64, proof: &[Hash], note: &str) -> String {
    let mut body = format!("old {old}\n");
    for hash in proof {
        body.push_str(&B64.encode(hash));
        body.push('\n');
    }
    body.push('\n');
    body.push_str(note);
    body
}
