//! The key files beside the database, created by `writ init` with mode 0600 and never stored
//! inside it: the ledger signing key (`.key`) and the HMAC key that seals sensitive values
//! (`.hmac`). Files other users can read are refused.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use writ_ledger::checkpoint::{NoteSigner, NoteVerifier};
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
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| Error::new("internal.random", e.to_string()))?;
    let signer =
        NoteSigner::from_seed(origin, seed).map_err(|e| Error::new("ledger.bad_key", e.to_string()))?;
    write_secret(path, &signer.to_private_text())?;
    Ok(signer)
}

/// Loads the signing key, refusing a file other users can read.
pub fn load(path: &Path) -> Result<NoteSigner, Error> {
    let text = read_secret(path)?;
    NoteSigner::parse(&text).map_err(|e| Error::new("ledger.key_file", format!("{}: {e}", path.display())))
}

/// Keys to trust when verifying: those given explicitly, plus the public half of the signing key
/// if it can be loaded. Never the keys stored in the database an attacker could have replaced.
pub fn trusted(explicit: &[String], key: &Path) -> Result<Vec<NoteVerifier>, Error> {
    let mut trusted = explicit
        .iter()
        .map(|k| NoteVerifier::parse(k).map_err(|e| Error::new("input.bad_key", e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    if let Ok(signer) = load(key) {
        trusted.push(signer.verifier());
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
