//! Signed checkpoints: C2SP `tlog-checkpoint` bodies in C2SP `signed-note` envelopes, signed
//! with Ed25519.
//!
//! ```text
//! writ/3f9a0c1e7d2b4a55            origin (also the key name)
//! 1234                             tree size
//! 0ZxYbK…=                         base64 root hash
//!
//! — writ/3f9a0c1e7d2b4a55 AbCd…    key name, base64(key id ‖ signature)
//! ```
//!
//! The key id is the first four bytes of SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key), as the
//! signed-note spec defines for Ed25519. Verifier keys are written `name+hexid+base64(0x01‖key)`
//! and signer keys `PRIVATE+KEY+name+hexid+base64(0x01‖seed)`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::merkle::Hash;

/// Why a note or key could not be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    /// The text is not a well-formed signed note or checkpoint.
    #[error("malformed checkpoint: {0}")]
    Malformed(String),
    /// A key string is not in the expected form.
    #[error("malformed key: {0}")]
    BadKey(String),
    /// No signature on the note is by a trusted key.
    #[error("checkpoint is not signed by any trusted key (signed by: {0})")]
    UnknownKey(String),
    /// A signature by a trusted key does not verify.
    #[error("checkpoint signature by {0} does not verify")]
    BadSignature(String),
}

/// A tree head: the origin (log identity), the size, and the root hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
}

impl Checkpoint {
    /// The checkpoint body, the exact text that is signed.
    pub fn body(&self) -> String {
        format!("{}\n{}\n{}\n", self.origin, self.size, B64.encode(self.root))
    }

    fn parse_body(text: &str) -> Result<Checkpoint, NoteError> {
        let malformed = |why: &str| NoteError::Malformed(why.to_owned());
        let mut lines = text.split_terminator('\n');
        let origin = lines.next().filter(|o| !o.is_empty()).ok_or_else(|| malformed("missing origin"))?;
        let size = lines
            .next()
            .filter(|s| {
                !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (*s == "0" || !s.starts_with('0'))
            })
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| malformed("bad tree size"))?;
        let root = lines
            .next()
            .and_then(|r| B64.decode(r).ok())
            .and_then(|r| <Hash>::try_from(r.as_slice()).ok())
            .ok_or_else(|| malformed("bad root hash"))?;
        Ok(Checkpoint { origin: origin.to_owned(), size, root })
    }
}

fn key_id(name: &str, public: &[u8; 32]) -> [u8; 4] {
    let mut hasher = Sha256::new();
    hasher.update(name.as_bytes());
    hasher.update([0x0a, 0x01]);
    hasher.update(public);
    let digest: [u8; 32] = hasher.finalize().into();
    [digest[0], digest[1], digest[2], digest[3]]
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.contains('+') && !name.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// The public half: checks signatures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoteVerifier {
    name: String,
    id: [u8; 4],
    key: VerifyingKey,
}

impl NoteVerifier {
    /// Parses `name+hexid+base64(0x01‖key)`.
    pub fn parse(text: &str) -> Result<NoteVerifier, NoteError> {
        let bad = |why: &str| NoteError::BadKey(why.to_owned());
        let mut parts = text.trim().splitn(3, '+');
        let (Some(name), Some(id_hex), Some(key_b64)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad("expected name+id+key"));
        };
        let raw = B64.decode(key_b64).map_err(|_| bad("key is not base64"))?;
        let (Some(&0x01), Some(public)) = (raw.first(), raw.get(1..)) else {
            return Err(bad("not an Ed25519 key"));
        };
        let public: [u8; 32] = public.try_into().map_err(|_| bad("wrong key length"))?;
        let key = VerifyingKey::from_bytes(&public).map_err(|_| bad("invalid Ed25519 point"))?;
        let id = key_id(name, &public);
        if !valid_name(name) || hex(&id) != id_hex {
            return Err(bad("key id does not match name and key"));
        }
        Ok(NoteVerifier { name: name.to_owned(), id, key })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key id as 8 hex digits.
    pub fn id_hex(&self) -> String {
        hex(&self.id)
    }

    /// `name+hexid+base64(0x01‖key)`.
    pub fn to_text(&self) -> String {
        let mut raw = vec![0x01];
        raw.extend_from_slice(self.key.as_bytes());
        format!("{}+{}+{}", self.name, hex(&self.id), B64.encode(raw))
    }
}

/// The private half: signs checkpoints. Never printed.
pub struct NoteSigner {
    name: String,
    id: [u8; 4],
    key: SigningKey,
}

impl std::fmt::Debug for NoteSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NoteSigner({}+{}, private key redacted)", self.name, hex(&self.id))
    }
}

impl NoteSigner {
    /// A signer from a 32-byte seed (from the OS random source) and a key name.
    pub fn from_seed(name: &str, seed: [u8; 32]) -> Result<NoteSigner, NoteError> {
        if !valid_name(name) {
            return Err(NoteError::BadKey(format!("invalid key name {name:?}")));
        }
        let key = SigningKey::from_bytes(&seed);
        let id = key_id(name, key.verifying_key().as_bytes());
        Ok(NoteSigner { name: name.to_owned(), id, key })
    }

    /// Parses `PRIVATE+KEY+name+hexid+base64(0x01‖seed)`.
    pub fn parse(text: &str) -> Result<NoteSigner, NoteError> {
        let bad = |why: &str| NoteError::BadKey(why.to_owned());
        let rest = text.trim().strip_prefix("PRIVATE+KEY+").ok_or_else(|| bad("not a signer key"))?;
        let mut parts = rest.splitn(3, '+');
        let (Some(name), Some(id_hex), Some(seed_b64)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad("expected PRIVATE+KEY+name+id+key"));
        };
        let raw = B64.decode(seed_b64).map_err(|_| bad("key is not base64"))?;
        let (Some(&0x01), Some(seed)) = (raw.first(), raw.get(1..)) else {
            return Err(bad("not an Ed25519 key"));
        };
        let seed: [u8; 32] = seed.try_into().map_err(|_| bad("wrong key length"))?;
        let signer = NoteSigner::from_seed(name, seed)?;
        if hex(&signer.id) != id_hex {
            return Err(bad("key id does not match name and key"));
        }
        Ok(signer)
    }

    /// `PRIVATE+KEY+name+hexid+base64(0x01‖seed)`, for the key file only.
    pub fn to_private_text(&self) -> String {
        let mut raw = vec![0x01];
        raw.extend_from_slice(self.key.as_bytes());
        format!("PRIVATE+KEY+{}+{}+{}", self.name, hex(&self.id), B64.encode(raw))
    }

    pub fn verifier(&self) -> NoteVerifier {
        NoteVerifier { name: self.name.clone(), id: self.id, key: self.key.verifying_key() }
    }

    /// Signs a checkpoint and returns the complete signed note.
    pub fn sign(&self, checkpoint: &Checkpoint) -> String {
        let body = checkpoint.body();
        let signature = self.key.sign(body.as_bytes());
        let mut blob = self.id.to_vec();
        blob.extend_from_slice(&signature.to_bytes());
        format!("{body}\n\u{2014} {} {}\n", self.name, B64.encode(blob))
    }
}

/// Whatever signs a log's checkpoints: one key, or a ring of them during a rotation.
pub trait Signing {
    /// The log's origin, which every key is named after.
    fn origin(&self) -> &str;
    /// The complete signed note over `checkpoint`.
    fn sign_note(&self, checkpoint: &Checkpoint) -> String;
}

impl Signing for NoteSigner {
    fn origin(&self) -> &str {
        &self.name
    }

    fn sign_note(&self, checkpoint: &Checkpoint) -> String {
        self.sign(checkpoint)
    }
}

/// The log's signing keys, one per line of the key file, oldest first. Every key signs every
/// checkpoint: during a rotation the old and the new key both sign (a note with two signature
/// lines), so verifiers that know either accept it.
pub struct KeyRing {
    keys: Vec<NoteSigner>,
    newest: NoteVerifier,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(&self.keys).finish()
    }
}

impl KeyRing {
    /// A ring of at least one key, all named alike (the log's origin), none twice.
    pub fn new(keys: Vec<NoteSigner>) -> Result<KeyRing, NoteError> {
        let (Some(first), Some(last)) = (keys.first(), keys.last()) else {
            return Err(NoteError::BadKey("no signing key".into()));
        };
        let newest = last.verifier();
        if keys.iter().any(|k| k.name != first.name) {
            return Err(NoteError::BadKey("every signing key must be named after the log's origin".into()));
        }
        for (n, key) in keys.iter().enumerate() {
            if keys.iter().skip(n + 1).any(|other| other.id == key.id) {
                return Err(NoteError::BadKey(format!("key {} appears twice", hex(&key.id))));
            }
        }
        Ok(KeyRing { keys, newest })
    }

    /// One `PRIVATE+KEY+…` per non-empty line.
    pub fn parse(text: &str) -> Result<KeyRing, NoteError> {
        KeyRing::new(
            text.lines().filter(|l| !l.trim().is_empty()).map(NoteSigner::parse).collect::<Result<_, _>>()?,
        )
    }

    /// One private key per line, for the key file only.
    pub fn to_private_text(&self) -> String {
        self.keys.iter().map(|k| k.to_private_text() + "\n").collect()
    }

    /// The newest key's public half.
    pub fn verifier(&self) -> NoteVerifier {
        self.newest.clone()
    }

    /// Every key's public half, oldest first.
    pub fn verifiers(&self) -> Vec<NoteVerifier> {
        self.keys.iter().map(NoteSigner::verifier).collect()
    }

    pub fn keys(&self) -> &[NoteSigner] {
        &self.keys
    }
}

impl Signing for KeyRing {
    fn origin(&self) -> &str {
        self.keys.first().map_or("", |k| k.name.as_str())
    }

    fn sign_note(&self, checkpoint: &Checkpoint) -> String {
        let body = checkpoint.body();
        let mut note = format!("{body}\n");
        for key in &self.keys {
            let mut blob = key.id.to_vec();
            blob.extend_from_slice(&key.key.sign(body.as_bytes()).to_bytes());
            note.push_str(&format!("\u{2014} {} {}\n", key.name, B64.encode(blob)));
        }
        note
    }
}

/// Opens a signed note: parses the checkpoint and requires a valid signature by one of
/// `trusted`. Any signature line by a trusted key that fails is an error, even if another passes.
pub fn open(note: &str, trusted: &[NoteVerifier]) -> Result<Checkpoint, NoteError> {
    let malformed = |why: &str| NoteError::Malformed(why.to_owned());
    let (body, signatures) = note.split_once("\n\n").ok_or_else(|| malformed("no signature block"))?;
    let body = format!("{body}\n");
    let checkpoint = Checkpoint::parse_body(&body)?;
    let mut seen = Vec::new();
    let mut verified = false;
    for line in signatures.split_terminator('\n') {
        let rest = line.strip_prefix("\u{2014} ").ok_or_else(|| malformed("bad signature line"))?;
        let (name, blob) = rest.split_once(' ').ok_or_else(|| malformed("bad signature line"))?;
        let blob = B64.decode(blob).map_err(|_| malformed("signature is not base64"))?;
        let (Some(id), Some(signature)) = (blob.get(..4), blob.get(4..)) else {
            return Err(malformed("signature too short"));
        };
        seen.push(format!("{name}+{}", hex(id)));
        let Some(verifier) = trusted.iter().find(|v| v.name == name && v.id == id) else { continue };
        let signature =
            Signature::from_slice(signature).map_err(|_| NoteError::BadSignature(verifier.to_text()))?;
        verifier
            .key
            .verify(body.as_bytes(), &signature)
            .map_err(|_| NoteError::BadSignature(format!("{}+{}", verifier.name, verifier.id_hex())))?;
        verified = true;
    }
    if !verified {
        return Err(NoteError::UnknownKey(if seen.is_empty() { "nobody".into() } else { seen.join(", ") }));
    }
    Ok(checkpoint)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
