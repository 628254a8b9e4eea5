//! A policy bundle: the files of a policy directory, by relative path, and their hash.

use std::collections::BTreeMap;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::PolicyError;

/// Most files one bundle may hold, and the largest file.
pub const MAX_FILES: usize = 200;
pub const MAX_FILE_BYTES: usize = 256 * 1024;

/// The default pack shipped with Writ.
const DEFAULT_PACK: &[(&str, &str)] = &[
    ("access.cedar", include_str!("../pack/access.cedar")),
    ("rules.toml", include_str!("../pack/rules.toml")),
];
/// The default pack's own test cases (`writ policy test` without a directory).
pub const DEFAULT_TESTS: &str = include_str!("../pack/tests/default.toml");

/// The policy files Writ evaluates: every `*.cedar` file and `rules.toml`, at the top of the
/// directory. Other files (a README, the `tests/` directory) are not part of the policy and do
/// not change its hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyBundle {
    files: BTreeMap<String, String>,
}

impl PolicyBundle {
    pub fn default_pack() -> PolicyBundle {
        let files = DEFAULT_PACK.iter().map(|(p, t)| ((*p).to_owned(), (*t).to_owned())).collect();
        PolicyBundle { files }
    }

    /// Reads the policy files of `dir`.
    pub fn from_dir(dir: &Path) -> Result<PolicyBundle, PolicyError> {
        let io =
            |e: std::io::Error| PolicyError::Io { path: dir.display().to_string(), detail: e.to_string() };
        let mut files = BTreeMap::new();
        let mut entries: Vec<_> =
            std::fs::read_dir(dir).map_err(io)?.collect::<Result<_, _>>().map_err(io)?;
        entries.sort_by_key(std::fs::DirEntry::file_name);
        for entry in entries {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !(name.ends_with(".cedar") || name == "rules.toml") || !entry.path().is_file() {
                continue;
            }
            let bytes = std::fs::read(entry.path()).map_err(io)?;
            let text = String::from_utf8(bytes)
                .map_err(|_| PolicyError::invalid(&name, 1, "the file is not UTF-8 text"))?;
            files.insert(name, text);
        }
        PolicyBundle::from_files(files)
    }

    /// A bundle from file contents (as stored), checked for size and shape.
    pub fn from_files(files: BTreeMap<String, String>) -> Result<PolicyBundle, PolicyError> {
        if files.len() > MAX_FILES {
            return Err(PolicyError::invalid("", 0, &format!("more than {MAX_FILES} policy files")));
        }
        for (name, text) in &files {
            let allowed = (name.ends_with(".cedar") && name.len() > 6) || name == "rules.toml";
            if !allowed || name.contains(['/', '\\']) || name.starts_with('.') {
                return Err(PolicyError::invalid(name, 0, "not a policy file name (*.cedar or rules.toml)"));
            }
            if text.len() > MAX_FILE_BYTES {
                return Err(PolicyError::invalid(name, 0, &format!("larger than {MAX_FILE_BYTES} bytes")));
            }
        }
        if !files.contains_key("rules.toml") {
            return Err(PolicyError::invalid("rules.toml", 0, "missing: a policy needs its workflow rules"));
        }
        if !files.keys().any(|name| name.ends_with(".cedar")) {
            return Err(PolicyError::invalid(
                "*.cedar",
                0,
                "missing: a policy needs at least one Cedar file",
            ));
        }
        Ok(PolicyBundle { files })
    }

    pub fn files(&self) -> &BTreeMap<String, String> {
        &self.files
    }

    /// SHA-256 over every file's name and bytes, in name order, lowercase hex. The same
    /// directory checked out anywhere gives the same hash.
    pub fn hash(&self) -> String {
        let mut hasher = Sha256::new();
        for (name, text) in &self.files {
            for part in [name.as_bytes(), text.as_bytes()] {
                hasher.update((part.len() as u64).to_be_bytes());
                hasher.update(part);
            }
        }
        hasher.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }
}
