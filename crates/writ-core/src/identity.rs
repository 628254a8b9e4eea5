//! Identities (humans and non-human identities), actors, targets and grants.

use std::fmt;

use crate::change::ChangeId;
use crate::error::Refusal;
use crate::name::{EntitlementRef, IdentityName, OrgName, TargetName};
use crate::time::Timestamp;

/// What kind of principal an identity is. Everything but `Human` is a non-human identity (NHI).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum IdentityKind {
    Human,
    ServiceAccount,
    ApiKey,
    Secret,
    Certificate,
    Workload,
    AiAgent,
}

impl IdentityKind {
    pub const ALL: [IdentityKind; 7] = [
        IdentityKind::Human,
        IdentityKind::ServiceAccount,
        IdentityKind::ApiKey,
        IdentityKind::Secret,
        IdentityKind::Certificate,
        IdentityKind::Workload,
        IdentityKind::AiAgent,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            IdentityKind::Human => "human",
            IdentityKind::ServiceAccount => "service_account",
            IdentityKind::ApiKey => "api_key",
            IdentityKind::Secret => "secret",
            IdentityKind::Certificate => "certificate",
            IdentityKind::Workload => "workload",
            IdentityKind::AiAgent => "ai_agent",
        }
    }

    pub fn parse(input: &str) -> Result<IdentityKind, Refusal> {
        IdentityKind::ALL.into_iter().find(|kind| kind.as_str() == input).ok_or_else(|| {
            Refusal::InvalidValue {
                field: "identity kind",
                input: input.chars().take(40).collect(),
                expected: "one of human, service_account, api_key, secret, certificate, workload, ai_agent",
            }
        })
    }

    /// True for every non-human kind; those need an accountable human owner.
    pub fn is_nhi(self) -> bool {
        self != IdentityKind::Human
    }
}

impl fmt::Display for IdentityKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether an identity may act in Writ. Only an `active` identity authenticates, holds its
/// roles, requests, approves, executes or reviews; `disabled` (by an admin or the identity
/// provider) and `offboarded` (it left: its access is being removed) keep their record and
/// history but can do nothing, and the approvals they gave to open changes no longer count.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum IdentityState {
    Active,
    Disabled,
    Offboarded,
}

impl IdentityState {
    pub const ALL: [IdentityState; 3] =
        [IdentityState::Active, IdentityState::Disabled, IdentityState::Offboarded];

    pub fn as_str(self) -> &'static str {
        match self {
            IdentityState::Active => "active",
            IdentityState::Disabled => "disabled",
            IdentityState::Offboarded => "offboarded",
        }
    }

    pub fn parse(input: &str) -> Result<IdentityState, Refusal> {
        IdentityState::ALL.into_iter().find(|s| s.as_str() == input).ok_or_else(|| Refusal::InvalidValue {
            field: "identity state",
            input: input.chars().take(40).collect(),
            expected: "one of active, disabled, offboarded",
        })
    }
}

impl fmt::Display for IdentityState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A human or an NHI known to Writ.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub name: IdentityName,
    pub kind: IdentityKind,
    /// The accountable human for an NHI. `None` for humans; `None` for an NHI means orphan.
    pub owner: Option<IdentityName>,
    /// Set for vendor (delegated) identities: the organisation they act for.
    pub vendor: Option<OrgName>,
    pub created_at: Timestamp,
    pub state: IdentityState,
    /// Where notifications reach this identity by email (checked by `notify::parse_email`).
    pub email: Option<String>,
}

impl Identity {
    /// Builds a new identity, enforcing the ownership rules: an NHI needs an owner, the owner
    /// must be an existing human, and humans have no owner.
    pub fn new(
        name: IdentityName,
        kind: IdentityKind,
        owner: Option<&Identity>,
        vendor: Option<OrgName>,
        created_at: Timestamp,
    ) -> Result<Identity, Refusal> {
        match (kind.is_nhi(), owner) {
            (true, None) => {
                return Err(Refusal::OwnerRequired { identity: name, kind });
            }
            (false, Some(_)) => return Err(Refusal::OwnerOnHuman { identity: name }),
            (true, Some(owner)) if owner.kind != IdentityKind::Human => {
                return Err(Refusal::OwnerNotHuman {
                    identity: name,
                    owner: owner.name.clone(),
                    owner_kind: owner.kind,
                });
            }
            _ => {}
        }
        Ok(Identity {
            name,
            kind,
            owner: owner.map(|o| o.name.clone()),
            vendor,
            created_at,
            state: IdentityState::Active,
            email: None,
        })
    }

    /// Refuses unless the identity is active: every actor check goes through here.
    pub fn require_active(&self) -> Result<(), Refusal> {
        match self.state {
            IdentityState::Active => Ok(()),
            state => Err(Refusal::IdentityInactive { identity: self.name.clone(), state }),
        }
    }
}

/// Who performs a step: a named identity, or Writ itself (for example the engine executing).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Actor {
    Identity(IdentityName),
    System(SystemActor),
}

/// Writ's own actors. Their names contain `:`, which no identity name can, so a person can never
/// register under a system actor's name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SystemActor {
    /// The engine applying and verifying changes on targets.
    Engine,
    /// An administrator using the local CLI without naming themselves.
    Admin,
    /// The scheduler that ends time-bound access when it expires.
    Scheduler,
    /// Intake: records deliveries from other systems and the ones it refused.
    Intake,
}

impl Actor {
    pub fn as_string(&self) -> String {
        match self {
            Actor::Identity(name) => name.to_string(),
            Actor::System(SystemActor::Engine) => "system:writ-engine".to_owned(),
            Actor::System(SystemActor::Admin) => "system:admin".to_owned(),
            Actor::System(SystemActor::Scheduler) => "system:writ-scheduler".to_owned(),
            Actor::System(SystemActor::Intake) => "system:writ-intake".to_owned(),
        }
    }

    pub fn parse(input: &str) -> Result<Actor, Refusal> {
        match input {
            "system:writ-engine" => Ok(Actor::System(SystemActor::Engine)),
            "system:admin" => Ok(Actor::System(SystemActor::Admin)),
            "system:writ-scheduler" => Ok(Actor::System(SystemActor::Scheduler)),
            "system:writ-intake" => Ok(Actor::System(SystemActor::Intake)),
            _ => IdentityName::parse(input).map(Actor::Identity),
        }
    }

    pub fn identity(&self) -> Option<&IdentityName> {
        match self {
            Actor::Identity(name) => Some(name),
            Actor::System(_) => None,
        }
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_string())
    }
}

/// Which connector speaks to a target: the name a connector registered under (`git`,
/// `postgres`, …). The core knows no connector products; the connector registry of the
/// composition (`writ-server`'s `targets`) says which names exist and what their settings are.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnectorKind(String);

impl ConnectorKind {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A connector name: 1 to 32 lowercase ASCII letters, digits, `-` or `_`, starting with a
    /// letter.
    pub fn parse(input: &str) -> Result<ConnectorKind, Refusal> {
        let valid = (1..=32).contains(&input.len())
            && input.starts_with(|c: char| c.is_ascii_lowercase())
            && input.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if !valid {
            return Err(Refusal::InvalidValue {
                field: "connector",
                input: input.chars().take(40).collect(),
                expected: "a connector name (lowercase letters, digits, - and _)",
            });
        }
        Ok(ConnectorKind(input.to_owned()))
    }
}

/// A connected system and how to reach it. `settings` are connector-specific and never secret
/// (secrets are referenced, not stored).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub name: TargetName,
    pub connector: ConnectorKind,
    pub settings: Vec<(String, String)>,
    pub created_at: Timestamp,
}

impl Target {
    pub fn setting(&self, key: &str) -> Option<&str> {
        self.settings.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// Identity × entitlement, as implemented by a change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    pub identity: IdentityName,
    pub entitlement: EntitlementRef,
    pub change: ChangeId,
    pub granted_at: Timestamp,
    pub expires_at: Option<Timestamp>,
}
