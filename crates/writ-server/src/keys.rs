//! The key files beside the database, created by `writ init` with mode 0600 and never stored
//! inside it: the ledger signing key (`.key`) and the HMAC key that seals sensitive values
//! (`.hmac`). Files other users can read are refused.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use writ_ledger::checkpoint::{KeyRing, NoteSigner, NoteVerifier};
use writ_ledger::sensitive::HmacKey;

use writ_api::Error;

/// The signing key file: `--ledger-key` / `WRIT_LEDGER_KEY`, or the database path + `.key`.
pub fn key_path(db: &Path, explicit: Option<&Path>) -> PathBuf {
    beside(db, explicit, ".key")
}

/// The HMAC key file: `--hmac-key` / `WRIT_HMAC_KEY`, or the database path + `.hmac`.
pub fn hmac_path(db: &Path, explicit: Option<&Path>) -> PathBuf {
    beside(db, explicit, ".hmac")
}

fn beside(db: &Path, explicit: Option<&Path>, suffix: &str) -> PathBuf {
    match explicit {
        Some(path) => path.to_owned(),
        None => {
            let mut name = db.as_os_str().to_owned();
            name.push(suffix);
            PathBuf::from(name)
        }
    }
}

/// Creates a new random HMAC key file readable only by its owner.
pub fn create_hmac(path: &Path) -> Result<HmacKey, Error> {
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).map_err(|e| Error::new("internal.random", e.to_string()))?;
    let key = HmacKey::from_bytes(key);
    write_secret(path, &key.to_text())?;
    Ok(key)
}

/// Loads the HMAC key if its file exists (`Ok(None)` if it does not), refusing a file other
/// users can read.
pub fn load_hmac(path: &Path) -> Result<Option<HmacKey>, Error> {
    if !path.exists() {
        return Ok(None);
    }
    let text = read_secret(path)?;
    HmacKey::parse(&text)
        .map(Some)
        .map_err(|e| Error::new("ledger.key_file", format!("{}: {e}", path.display())))
}

pub(crate) fn write_secret(path: &Path, text: &str) -> Result<(), Error> {
    let mut file =
        std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(|e| {
            Error::new("ledger.key_file", format!("cannot create the key file {}: {e}", path.display()))
        })?;
    file.write_all(format!("{text}\n").as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| Error::new("ledger.key_file", format!("writing {}: {e}", path.display())))
}

pub(crate) fn read_secret(path: &Path) -> Result<String, Error> {
    let unusable = |why: String| Error::new("ledger.key_file", why);
    let metadata = std::fs::metadata(path)
        .map_err(|e| unusable(format!("cannot read the key file {}: {e}", path.display())))?;
    if metadata.permissions().mode() & 0o077 != 0 {
        return Err(unusable(format!(
            "the key file {} is accessible to other users; run chmod 600 on it",
            path.display()
        )));
    }
    std::fs::read_to_string(path).map_err(|e| unusable(format!("cannot read {}: {e}", path.display())))
}

/// A new random log origin, `writ/<16 hex digits>`.
pub fn new_origin() -> Result<String, Error> {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).map_err(|e| Error::new("internal.random", e.to_string()))?;
    Ok(format!("writ/{}", hex::encode(bytes)))
}

/// Creates a new signing key file (refusing to overwrite one) readable only by its owner.
pub fn create(path: &Path, origin: &str) -> Result<NoteSigner, Error> {
    let signer = fresh(origin)?;
    write_secret(path, &signer.to_private_text())?;
    Ok(signer)
}

/// A new signing key for `origin`, from the OS random source (not written anywhere).
pub fn fresh(origin: &str) -> Result<NoteSigner, Error> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| Error::new("internal.random", e.to_string()))?;
    NoteSigner::from_seed(origin, seed).map_err(|e| Error::new("ledger.bad_key", e.to_string()))
}

/// Loads the signing keys (one per line; two during a rotation), refusing a file other users
/// can read.
pub fn load(path: &Path) -> Result<KeyRing, Error> {
    let text = read_secret(path)?;
    KeyRing::parse(&text).map_err(|e| Error::new("ledger.key_file", format!("{}: {e}", path.display())))
}

/// Replaces the key file's keys atomically (a new file, mode 0600, synced, renamed over it).
pub fn replace(path: &Path, ring: &KeyRing) -> Result<(), Error> {
    let temporary = path.with_extension("rotating");
    let _ = std::fs::remove_file(&temporary);
    write_secret(&temporary, ring.to_private_text().trim_end())?;
    std::fs::rename(&temporary, path)
        .map_err(|e| Error::new("ledger.key_file", format!("replacing {}: {e}", path.display())))
}

/// Keys to trust when verifying: those given explicitly, plus the public half of the signing key
/// if it can be loaded. Never the keys stored in the database an attacker could have replaced.
pub fn trusted(explicit: &[String], key: &Path) -> Result<Vec<NoteVerifier>, Error> {
    let mut trusted = explicit
        .iter()
        .map(|k| NoteVerifier::parse(k).map_err(|e| Error::new("input.bad_key", e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    if let Ok(ring) = load(key) {
        trusted.extend(ring.verifiers());
    }
    if trusted.is_empty() {
        return Err(Error::new(
            "ledger.no_trusted_key",
            format!(
                "no trusted key: pass --trusted-key NAME+ID+KEY or make the ledger key {} readable",
                key.display()
            ),
        ));
    }
    Ok(trusted)
}

/// A server's signing keys: loaded at start if the key file exists, and loaded again whenever
/// the file changes, so a key rotated with `writ ledger rotate-key` signs (and a retired one
/// stops signing) without a restart. A file that cannot be read keeps the keys in use.
pub struct Signer {
    path: PathBuf,
    loaded: std::sync::Mutex<Option<(std::time::SystemTime, KeyRing)>>,
}

impl Signer {
    pub fn open(path: &Path) -> Result<Signer, Error> {
        let loaded = if path.exists() { Some((modified(path), load(path)?)) } else { None };
        Ok(Signer { path: path.to_owned(), loaded: std::sync::Mutex::new(loaded) })
    }

    /// Whether this instance has signing keys at all.
    pub fn present(&self) -> bool {
        self.loaded.lock().map(|l| l.is_some()).unwrap_or(false)
    }

    /// Runs `work` with the current keys (re-read first if the file changed); `None` without.
    pub fn with<T>(&self, work: impl FnOnce(&KeyRing) -> T) -> Option<T> {
        let mut loaded = self.loaded.lock().ok()?;
        let changed = modified(&self.path);
        if loaded.as_ref().is_some_and(|(seen, _)| *seen != changed) {
            match load(&self.path) {
                Ok(ring) => {
                    tracing::warn!(target: "writ::ledger", keys = ?ring.verifiers().iter().map(NoteVerifier::to_text).collect::<Vec<_>>(), "checkpoint signing keys changed on disk: signing with them");
                    *loaded = Some((changed, ring));
                }
                Err(error) => {
                    tracing::error!(target: "writ::ledger", "the key file changed and cannot be read; signing with the keys in use: {}", error.message)
                }
            }
        }
        loaded.as_ref().map(|(_, ring)| work(ring))
    }
}

fn modified(path: &Path) -> std::time::SystemTime {
    std::fs::metadata(path).and_then(|m| m.modified()).unwrap_or(std::time::UNIX_EPOCH)
}
