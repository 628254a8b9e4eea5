//! Application manifests: the access an application's non-human identities need, kept in the
//! application's own repository and read at the commit that deploys it.
//!
//! ```toml
//! # .writ/apps/payments.toml
//! app = "payments"
//! owner = "alice"              # the accountable human for every identity below
//! decommissioned = false       # true (or deleting the file): the app is gone
//!
//! [[identity]]
//! name = "svc-payments"
//! kind = "service_account"     # any non-human kind; service_account by default
//! grants = ["access:deploy-prod", "bao:payments-db"]
//! ```
//!
//! A merge or push to the deploy branch that changes a manifest asks for the change that brings
//! the identities in line with it: grants for what it lists and they do not hold, revokes for
//! what the previous version listed and this one does not. A deleted or decommissioned manifest
//! asks for every identity it named to lose everything. What the engine does with that is in
//! `writ_engine::deploy`; this module only reads the files.

use std::collections::BTreeSet;

use serde::Deserialize;
use writ_core::identity::IdentityKind;
use writ_core::name::{EntitlementRef, IdentityName};

/// Largest manifest file read, in bytes.
pub const MAX_BYTES: u64 = 64 * 1024;
/// Most identities one manifest may declare.
pub const MAX_IDENTITIES: usize = 20;

/// One application's declared identities and access.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    pub app: String,
    pub owner: IdentityName,
    pub decommissioned: bool,
    pub identities: Vec<AppIdentity>,
}

/// A non-human identity the application runs as, and what it must hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppIdentity {
    pub name: IdentityName,
    pub kind: IdentityKind,
    pub grants: BTreeSet<EntitlementRef>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    app: String,
    owner: String,
    #[serde(default)]
    decommissioned: bool,
    #[serde(default)]
    identity: Vec<IdentityEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IdentityEntry {
    name: String,
    kind: Option<String>,
    #[serde(default)]
    grants: Vec<String>,
}

impl Manifest {
    /// Reads a manifest; the error says what is wrong in words a developer can act on.
    pub fn parse(text: &str) -> Result<Manifest, String> {
        if text.len() as u64 > MAX_BYTES {
            return Err(format!("{} bytes: a manifest is at most {MAX_BYTES}", text.len()));
        }
        let file: File = toml::from_str(text).map_err(|e| e.message().to_owned())?;
        let app = file.app.trim();
        if app.is_empty()
            || app.len() > 64
            || !app.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(format!("app {:?}: 1 to 64 letters, digits, '-', '_' or '.'", file.app));
        }
        let owner = IdentityName::parse(&file.owner).map_err(|e| format!("owner: {e}"))?;
        if file.identity.len() > MAX_IDENTITIES {
            return Err(format!(
                "{} identities: a manifest declares at most {MAX_IDENTITIES}",
                file.identity.len()
            ));
        }
        let mut identities: Vec<AppIdentity> = Vec::new();
        for entry in file.identity {
            let name = IdentityName::parse(&entry.name).map_err(|e| format!("identity: {e}"))?;
            let kind = IdentityKind::parse(entry.kind.as_deref().unwrap_or("service_account"))
                .map_err(|e| format!("identity {name}: {e}"))?;
            if !kind.is_nhi() {
                return Err(format!(
                    "identity {name}: a manifest declares non-human identities only; people get access through requests"
                ));
            }
            if identities.iter().any(|i| i.name == name) {
                return Err(format!("identity {name} is declared twice"));
            }
            let grants = entry
                .grants
                .iter()
                .map(|g| EntitlementRef::parse(g).map_err(|e| format!("identity {name}: {e}")))
                .collect::<Result<BTreeSet<_>, _>>()?;
            identities.push(AppIdentity { name, kind, grants });
        }
        Ok(Manifest { app: app.to_owned(), owner, decommissioned: file.decommissioned, identities })
    }

    /// What `identity` must hold under this manifest (nothing once decommissioned).
    pub fn grants_of(&self, identity: &IdentityName) -> BTreeSet<EntitlementRef> {
        if self.decommissioned {
            return BTreeSet::new();
        }
        self.identities.iter().find(|i| &i.name == identity).map(|i| i.grants.clone()).unwrap_or_default()
    }
}

/// Where a deploy happened: the repository as the sender names it, the branch, and the commits
/// before and after (`before` unknown for a merge: its first parent is used).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Revision {
    pub repository: String,
    pub branch: String,
    pub before: Option<String>,
    pub after: String,
}

impl Revision {
    /// A revision from a payload's values; `None` unless `after` is a commit id (a branch
    /// deletion sends zeros) and the branch is a branch.
    pub fn new(repository: &str, git_ref: &str, before: Option<&str>, after: &str) -> Option<Revision> {
        let branch = git_ref.strip_prefix("refs/heads/").unwrap_or(git_ref);
        let valid = |sha: &str| {
            matches!(sha.len(), 40 | 64)
                && sha.chars().all(|c| c.is_ascii_hexdigit())
                && sha.chars().any(|c| c != '0')
        };
        if !valid(after) || branch.is_empty() || git_ref.starts_with("refs/tags/") {
            return None;
        }
        Some(Revision {
            repository: repository.to_owned(),
            branch: branch.to_owned(),
            before: before.filter(|b| valid(b)).map(|b| b.to_ascii_lowercase()),
            after: after.to_ascii_lowercase(),
        })
    }
}

/// One manifest file a revision touched: its path in the repository and what it said before
/// and after (`None`: absent). `after` is an error when the new version cannot be read; the
/// old version, if unreadable, counts as absent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppRevision {
    pub path: String,
    pub before: Option<Manifest>,
    pub after: Result<Option<Manifest>, String>,
}
