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
        let mac = self.key.mac(value);
        self.sealed.push((mac.clone(), value.to_owned()));
        mac
    }

    /// The (hmac, clear text) pairs sealed so far.
    pub fn into_sealed(self) -> Vec<(String, String)> {
        self.sealed
    }
}
