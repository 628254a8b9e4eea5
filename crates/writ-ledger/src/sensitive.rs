//! Sensitive values: free text that may carry personal data (justifications, reasons, review
//! notes, attachment names) never enters an event in clear. The event holds
//! `{"hmac": "<key id>:<base64 HMAC-SHA256>"}`; the clear text is kept outside the ledger, where it
//! can be erased without breaking verification. Anyone holding the key can check a value
//! (`writ ledger hash VALUE`), as with Vault's audit-device hashing.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use crate::checkpoint::NoteError;

/// What a decoder shows for a value whose clear text was erased or is not available.
pub const ERASED: &str = "[erased]";

/// What a reader without the HMAC key shows for kept clear text: it cannot tell it is genuine.
pub const UNCHECKED: &str = "[sealed: cannot be checked without the HMAC key]";

/// What a reader shows for kept clear text that does not match its seal (it was changed
/// outside Writ); the text itself is not shown.
pub const TAMPERED: &str = "[tampered: the kept text does not match the ledger's seal]";

/// The deployment's HMAC key and its id (`hk-` + 8 hex digits, derived from the key).
pub struct HmacKey {
    id: String,
    key: [u8; 32],
}

impl fmt::Debug for HmacKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HmacKey({}, key redacted)", self.id)
    }
}

impl HmacKey {
    /// A key from 32 random bytes.
    pub fn from_bytes(key: [u8; 32]) -> HmacKey {
        let mut hasher = Sha256::new();
        hasher.update(b"writ hmac key id\n");
        hasher.update(key);
        let digest: [u8; 32] = hasher.finalize().into();
        let id = format!("hk-{:02x}{:02x}{:02x}{:02x}", digest[0], digest[1], digest[2], digest[3]);
        HmacKey { id, key }
    }

    /// Parses `HMAC+<id>+<base64 key>`.
    pub fn parse(text: &str) -> Result<HmacKey, NoteError> {
        let bad = |why: &str| NoteError::BadKey(why.to_owned());
        let rest = text.trim().strip_prefix("HMAC+").ok_or_else(|| bad("not an HMAC key"))?;
        let (id, key) = rest.split_once('+').ok_or_else(|| bad("expected HMAC+id+key"))?;
        let key: [u8; 32] = B64
            .decode(key)
            .ok()
            .and_then(|k| k.try_into().ok())
            .ok_or_else(|| bad("key must be 32 bytes of base64"))?;
        let parsed = HmacKey::from_bytes(key);
        if parsed.id != id {
            return Err(bad("key id does not match the key"));
        }
        Ok(parsed)
    }

    /// `HMAC+<id>+<base64 key>`, for the key file only.
    pub fn to_text(&self) -> String {
        format!("HMAC+{}+{}", self.id, B64.encode(self.key))
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// The seal of a value as the ledger records it: `<key id>:<base64 commitment>`, the
    /// commitment being SHA-256 over a domain tag, the value's nonce and the value
    /// ([`commitment`]). Equal values seal alike under one key (so the clear text can be kept
    /// once, keyed by its seal); without the nonce the seal reveals nothing of the value, and
    /// with it (carried by an auditor bundle, one per value) anyone can check the value without
    /// the key.
    pub fn seal(&self, value: &str) -> String {
        format!("{}:{}", self.id, B64.encode(commitment(&self.nonce(value), value)))
    }

    /// The value's nonce: HMAC-SHA256(key, domain tag ‖ value). Revealing it opens that one
    /// value's seal and nothing else.
    pub fn nonce(&self, value: &str) -> [u8; 32] {
        let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key) else {
            // HMAC accepts keys of any length; this branch cannot be taken.
            return [0; 32];
        };
        mac.update(NONCE_TAG);
        mac.update(value.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// Whether `value` is the clear text `seal` was made from: its seal under this key, or (for
    /// values sealed before commitments) its keyed HMAC.
    pub fn check(&self, seal: &str, value: &str) -> bool {
        let expected = self.seal(value);
        let legacy = self.mac(value);
        constant_time_eq(seal.as_bytes(), expected.as_bytes())
            | constant_time_eq(seal.as_bytes(), legacy.as_bytes())
    }

    /// `<key id>:<base64 HMAC-SHA256(key, value)>`.
    pub fn mac(&self, value: &str) -> String {
        let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key) else {
            // HMAC accepts keys of any length; this branch cannot be taken.
            return format!("{}:", self.id);
        };
        mac.update(value.as_bytes());
        format!("{}:{}", self.id, B64.encode(mac.finalize().into_bytes()))
    }
}

const NONCE_TAG: &[u8] = b"writ.seal.nonce/v1\n";
const COMMITMENT_TAG: &[u8] = b"writ.seal/v1\n";

/// SHA-256(domain tag ‖ nonce ‖ value): what a seal holds after its key id.
pub fn commitment(nonce: &[u8; 32], value: &str) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(COMMITMENT_TAG);
    hasher.update(nonce);
    hasher.update(value.as_bytes());
    hasher.finalize().into()
}

/// Whether `value` with `nonce` opens `seal` (`<key id>:<base64 commitment>`): the check an
/// auditor makes without the key.
pub fn opens(seal: &str, nonce: &[u8; 32], value: &str) -> bool {
    let Some((_, digest)) = seal.split_once(':') else {
        return false;
    };
    let expected = B64.encode(commitment(nonce, value));
    constant_time_eq(digest.as_bytes(), expected.as_bytes())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Seals values while an event is encoded, remembering each clear text for the caller to store
/// outside the ledger.
pub struct Sealer<'a> {
    key: &'a HmacKey,
    sealed: Vec<(String, String)>,
}

impl<'a> Sealer<'a> {
    pub fn new(key: &'a HmacKey) -> Sealer<'a> {
        Sealer { key, sealed: Vec::new() }
    }

    pub fn seal(&mut self, value: &str) -> String {
        let seal = self.key.seal(value);
        self.sealed.push((seal.clone(), value.to_owned()));
        seal
    }

    /// The (hmac, clear text) pairs sealed so far.
    pub fn into_sealed(self) -> Vec<(String, String)> {
        self.sealed
    }
}
