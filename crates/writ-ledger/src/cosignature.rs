//! Witness cosignatures: C2SP `tlog-cosignature` v1 (Ed25519, signature type 0x04). A witness
//! states, with a timestamp, that a checkpoint is the largest consistent tree head it has seen
//! of that log. The signed message is
//!
//! ```text
//! cosignature/v1
//! time <POSIX seconds>
//! <the checkpoint body: origin, size, root>
//! ```
//!
//! and the signature line is `— <name> base64(key id ‖ u64 timestamp, big-endian ‖ signature)`,
//! the key id being `SHA-256(name ‖ 0x0A ‖ 0x04 ‖ public key)[:4]`. Verifier keys are written
//! `name+hexid+base64(0x04‖key)` (a signed-note vkey), signer keys
//! `PRIVATE+KEY+name+hexid+base64(0x04‖seed)`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::checkpoint::{Checkpoint, NoteError};

const TYPE: u8 = 0x04;

fn key_id(name: &str, public: &[u8; 32]) -> [u8; 4] {
    let mut hasher = Sha256::new();
    hasher.update(name.as_bytes());
    hasher.update([0x0a, TYPE]);
    hasher.update(public);
    let digest: [u8; 32] = hasher.finalize().into();
    [digest[0], digest[1], digest[2], digest[3]]
}

fn message(checkpoint: &Checkpoint, timestamp: u64) -> String {
    format!("cosignature/v1\ntime {timestamp}\n{}", checkpoint.body())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.contains('+') && !name.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// Splits `name+hexid+base64(type‖bytes)` into its parts, checking the type byte.
fn parse_key(text: &str) -> Result<(&str, &str, [u8; 32]), NoteError> {
    let bad = |why: &str| NoteError::BadKey(why.to_owned());
    let mut parts = text.trim().splitn(3, '+');
    let (Some(name), Some(id_hex), Some(key_b64)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad("expected name+id+key"));
    };
    let raw = B64.decode(key_b64).map_err(|_| bad("key is not base64"))?;
    let (Some(&TYPE), Some(bytes)) = (raw.first(), raw.get(1..)) else {
        return Err(bad("not a timestamped Ed25519 cosigner key (type 0x04)"));
    };
    let bytes: [u8; 32] = bytes.try_into().map_err(|_| bad("wrong key length"))?;
    if !valid_name(name) {
        return Err(bad("invalid key name"));
    }
    Ok((name, id_hex, bytes))
}

/// A witness's public key: checks its cosignatures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CosignatureVerifier {
    name: String,
    id: [u8; 4],
    key: VerifyingKey,
}

impl CosignatureVerifier {
    /// Parses `name+hexid+base64(0x04‖key)`.
    pub fn parse(text: &str) -> Result<CosignatureVerifier, NoteError> {
        let (name, id_hex, public) = parse_key(text)?;
        let key = VerifyingKey::from_bytes(&public)
            .map_err(|_| NoteError::BadKey("invalid Ed25519 point".into()))?;
        let id = key_id(name, &public);
        if hex(&id) != id_hex {
            return Err(NoteError::BadKey("key id does not match name and key".into()));
        }
        Ok(CosignatureVerifier { name: name.to_owned(), id, key })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `name+hexid+base64(0x04‖key)`.
    pub fn to_text(&self) -> String {
        let mut raw = vec![TYPE];
        raw.extend_from_slice(self.key.as_bytes());
        format!("{}+{}+{}", self.name, hex(&self.id), B64.encode(raw))
    }

    /// Checks one signature line (`— name base64(…)`) on `checkpoint`: `Ok(None)` if the line is
    /// not this witness's, `Ok(Some(timestamp))` if it verifies, an error if it is this
    /// witness's and does not verify.
    pub fn check(&self, checkpoint: &Checkpoint, line: &str) -> Result<Option<u64>, NoteError> {
        let (name, id, timestamp, signature) = parse_line(line)?;
        if name != self.name || id != self.id {
            return Ok(None);
        }
        let bad = || NoteError::BadSignature(format!("{}+{}", self.name, hex(&self.id)));
        let signature = Signature::from_slice(&signature).map_err(|_| bad())?;
        if i64::try_from(timestamp).is_err() {
            return Err(bad());
        }
        self.key.verify(message(checkpoint, timestamp).as_bytes(), &signature).map_err(|_| bad())?;
        Ok(Some(timestamp))
    }
}

/// A witness's private key: cosigns checkpoints. Never printed.
pub struct Cosigner {
    name: String,
    id: [u8; 4],
    key: SigningKey,
}

impl std::fmt::Debug for Cosigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Cosigner({}+{}, private key redacted)", self.name, hex(&self.id))
    }
}

impl Cosigner {
    /// A cosigner from a 32-byte seed (from the OS random source) and a name.
    pub fn from_seed(name: &str, seed: [u8; 32]) -> Result<Cosigner, NoteError> {
        if !valid_name(name) {
            return Err(NoteError::BadKey(format!("invalid key name {name:?}")));
        }
        let key = SigningKey::from_bytes(&seed);
        let id = key_id(name, key.verifying_key().as_bytes());
        Ok(Cosigner { name: name.to_owned(), id, key })
    }

    /// Parses `PRIVATE+KEY+name+hexid+base64(0x04‖seed)`.
    pub fn parse(text: &str) -> Result<Cosigner, NoteError> {
        let rest = text
            .trim()
            .strip_prefix("PRIVATE+KEY+")
            .ok_or_else(|| NoteError::BadKey("not a cosigner key".into()))?;
        let (name, id_hex, seed) = parse_key(rest)?;
        let cosigner = Cosigner::from_seed(name, seed)?;
        if hex(&cosigner.id) != id_hex {
            return Err(NoteError::BadKey("key id does not match name and key".into()));
        }
        Ok(cosigner)
    }

    /// `PRIVATE+KEY+name+hexid+base64(0x04‖seed)`, for the key file only.
    pub fn to_private_text(&self) -> String {
        let mut raw = vec![TYPE];
        raw.extend_from_slice(self.key.as_bytes());
        format!("PRIVATE+KEY+{}+{}+{}", self.name, hex(&self.id), B64.encode(raw))
    }

    pub fn verifier(&self) -> CosignatureVerifier {
        CosignatureVerifier { name: self.name.clone(), id: self.id, key: self.key.verifying_key() }
    }

    /// The cosignature line (ending in a newline) on `checkpoint` at `timestamp` (POSIX
    /// seconds).
    pub fn cosign(&self, checkpoint: &Checkpoint, timestamp: u64) -> String {
        let signature = self.key.sign(message(checkpoint, timestamp).as_bytes());
        let mut blob = self.id.to_vec();
        blob.extend_from_slice(&timestamp.to_be_bytes());
        blob.extend_from_slice(&signature.to_bytes());
        format!("\u{2014} {} {}\n", self.name, B64.encode(blob))
    }
}

/// A signature line's parts: key name, key id, timestamp and signature bytes (not verified).
pub fn parse_line(line: &str) -> Result<(String, [u8; 4], u64, Vec<u8>), NoteError> {
    let malformed = || NoteError::Malformed("bad cosignature line".into());
    let rest = line.trim_end_matches('\n').strip_prefix("\u{2014} ").ok_or_else(malformed)?;
    let (name, blob) = rest.split_once(' ').ok_or_else(malformed)?;
    let blob = B64.decode(blob).map_err(|_| malformed())?;
    let id = blob.get(..4).and_then(|i| <[u8; 4]>::try_from(i).ok()).ok_or_else(malformed)?;
    let timestamp = blob.get(4..12).and_then(|t| <[u8; 8]>::try_from(t).ok()).ok_or_else(malformed)?;
    let signature = blob.get(12..).ok_or_else(malformed)?.to_vec();
    Ok((name.to_owned(), id, u64::from_be_bytes(timestamp), signature))
}

/// The witnesses among `witnesses` (by verifier key) whose cosignature on `checkpoint` is among
/// `lines` and verifies, each once, with its timestamp. Lines of unknown keys are ignored; a line of a
/// known witness that does not verify is an error.
pub fn cosigned_by(
    checkpoint: &Checkpoint,
    lines: &str,
    witnesses: &[CosignatureVerifier],
) -> Result<Vec<(String, u64)>, NoteError> {
    let mut found: Vec<(String, u64)> = Vec::new();
    for line in lines.split_terminator('\n').filter(|l| !l.is_empty()) {
        for witness in witnesses {
            if let Some(timestamp) = witness.check(checkpoint, line)?
                && !found.iter().any(|(key, _)| *key == witness.to_text())
            {
                found.push((witness.to_text(), timestamp));
            }
        }
    }
    Ok(found)
}
