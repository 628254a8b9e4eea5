//! The change engine: the imperative shell around `writ-core`. It resolves names through the
//! store, asks the core to decide, commits the resulting events together with the new state,
//! and drives connectors.
//!
//! Architecture invariants:
//! - every state change is one `ChangeStore::commit` (events + summary + grants, atomically);
//! - the `implementing` event is committed **before** any connector writes to a target, and the
//!   outcome is committed after, so a crash in between leaves a visible `implementing` change
//!   that `execute` resumes (connectors apply idempotently);
//! - the engine knows traits (`Store`, `Connector`, `ConnectorFactory`, `Clock`), never
//!   implementations.

pub mod access;
pub mod ask;
pub mod automation;
pub mod breakglass;
mod comments;
pub mod deploy;
mod error;
mod evidence;
pub mod exceptions;
pub mod execution;
pub mod expiry;
pub mod findings;
pub mod intake;
pub mod ledger;
mod lifecycle;
pub mod notify;
pub mod policy;
pub mod projections;
pub mod reconcile;
pub mod retention;
mod rollback;
pub mod scim;
pub mod standing;
pub mod transfers;

use std::sync::Arc;

use writ_connector::{Connector, ConnectorError};
use writ_core::change::{BusinessEvent, Change, ExternalRef, Justification, OpAction};
use writ_core::event::{ChangeEvent, Event, RegistryEvent};
use writ_core::identity::{Actor, ConnectorKind, Identity, IdentityKind, Target};
use writ_core::name::{EntitlementName, EntitlementRef, IdentityName, OrgName, TargetName};
use writ_core::time::{Duration, Timestamp};
use writ_ledger::sensitive::HmacKey;
use writ_store::{NewEvent, Store};

pub use error::{EngineError, Result};
pub use lifecycle::Offboarding;

/// Most due items (grants, changes, exceptions) one scheduler pass reads; the rest wait for the
/// next pass.
pub(crate) const PASS_LIMIT: usize = 500;

/// Where the engine reads time from; tests pass a fixed clock.
pub trait Clock: Send + Sync {
    fn now(&self) -> Timestamp;
}

/// The system clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        Timestamp::from_millis(millis)
    }
}

/// Builds a connector for a registered target.
pub trait ConnectorFactory: Send + Sync {
    fn connect(&self, target: &Target) -> Result<Arc<dyn Connector>, ConnectorError>;
}

/// A change and its history as stored: each event with its ledger index.
#[derive(Clone, Debug)]
pub struct ChangeRecord {
    pub change: Change,
    pub events: Vec<(u64, ChangeEvent)>,
}

/// One requested operation before resolution: names as the user gave them.
#[derive(Clone, Debug)]
pub struct RequestedOp {
    pub action: OpAction,
    pub identity: IdentityName,
    pub entitlement: EntitlementRef,
    pub duration: Option<Duration>,
}

/// A request as it arrives from the CLI or API.
#[derive(Clone, Debug)]
pub struct RequestInput {
    pub requester: IdentityName,
    pub on_behalf_of: Option<IdentityName>,
    pub ops: Vec<RequestedOp>,
    pub justification: Justification,
    pub refs: Vec<ExternalRef>,
    pub event: BusinessEvent,
    /// The maintenance window the change must be carried out in (see [`window`]).
    pub window: Option<writ_core::change::Window>,
    /// The person who answers for undoing it; `None`: the policy's `[rollback] owners` decide.
    pub rollback_owner: Option<IdentityName>,
}

/// Reads a maintenance window: `start` and `end` as RFC 3339 instants or local date-times in
/// `zone`, an IANA time zone (see `writ_policy::window::concrete`).
pub fn window(start: &str, end: &str, zone: &str) -> Result<writ_core::change::Window> {
    writ_policy::window::concrete(start, end, zone).map_err(EngineError::Window)
}

/// The engine. Cheap to clone; all state lives in the store and the targets.
#[derive(Clone)]
pub struct Engine {
    store: Arc<dyn Store>,
    connectors: Arc<dyn ConnectorFactory>,
    clock: Arc<dyn Clock>,
    hmac: Option<Arc<HmacKey>>,
    /// The Merkle tree over the log as far as this engine has read it (see `ledger.rs`).
    tree: Arc<std::sync::Mutex<writ_ledger::merkle::Tree>>,
    /// The policy in force, loaded from the store on first use (see `policy.rs`).
    policy: Arc<std::sync::RwLock<Option<Arc<writ_policy::Policy>>>>,
    /// SCIM writes in this process one at a time (across processes, versions and the settled
    /// state are compared and set in the store).
    scim_serial: Arc<std::sync::Mutex<()>>,
    /// How long a window of refused deliveries lasts (see `intake::Engine::refuse_delivery`).
    refusal_window_ms: i64,
    /// The fold of the log the incremental projection check extends (see `projections.rs`).
    projection_cache: Arc<projections::Cache>,
    /// How long an execution claim lasts unless renewed (see `execution.rs`).
    claim_ttl: Duration,
    /// Changes whose resumption failed: (failures, next try), see `Engine::resume_stranded`.
    resume_backoff:
        Arc<std::sync::Mutex<std::collections::BTreeMap<writ_core::change::ChangeId, (u32, Timestamp)>>>,
}

impl Engine {
    /// An engine that can read but not record (no HMAC key for sensitive values yet).
    pub fn new(
        store: Arc<dyn Store>,
        connectors: Arc<dyn ConnectorFactory>,
        clock: Arc<dyn Clock>,
    ) -> Engine {
        Engine {
            store,
            connectors,
            clock,
            hmac: None,
            tree: Arc::default(),
            policy: Arc::default(),
            scim_serial: Arc::default(),
            refusal_window_ms: intake::REFUSAL_WINDOW_MS,
            projection_cache: Arc::default(),
            claim_ttl: execution::DEFAULT_CLAIM_TTL,
            resume_backoff: Arc::default(),
        }
    }

    /// Sets how long an execution claim lasts unless its attempt renews it: how soon a change
    /// whose attempt died can be resumed.
    pub fn with_claim_ttl(mut self, ttl: Duration) -> Engine {
        self.claim_ttl = ttl;
        self
    }

    /// Sets how long a window of refused deliveries lasts: the first refusal of a source for a
    /// reason in a window is recorded on its own, the rest as one count when it ends.
    pub fn with_refusal_window(mut self, window: Duration) -> Engine {
        self.refusal_window_ms = window.as_millis().max(1);
        self
    }

    /// Gives the engine the key that seals sensitive values; needed to record anything.
    pub fn with_hmac_key(mut self, key: Arc<HmacKey>) -> Engine {
        self.hmac = Some(key);
        self
    }

    pub(crate) fn hmac(&self) -> Result<&HmacKey> {
        self.hmac.as_deref().ok_or(EngineError::NoHmacKey)
    }

    /// The seal of a value, as the ledger records it (`writ ledger hash`).
    pub fn seal(&self, value: &str) -> Result<String> {
        Ok(self.hmac()?.seal(value))
    }

    /// The nonce that opens `seal` for `value`, for an auditor bundle: computed from the value,
    /// so kept text that was changed does not open its seal. `None` for a value sealed before
    /// commitments (its keyed HMAC matches): it cannot be opened without the key.
    pub fn seal_opening(&self, seal: &str, value: &str) -> Result<Option<[u8; 32]>> {
        let key = self.hmac()?;
        if key.mac(value) == seal {
            return Ok(None);
        }
        Ok(Some(key.nonce(value)))
    }

    /// The engine's clock (the system clock, or a test's).
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    pub fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }

    // ---- registry ----

    /// Registers an identity; NHIs need an existing human owner.
    pub fn add_identity(
        &self,
        actor: Actor,
        name: IdentityName,
        kind: IdentityKind,
        owner: Option<&IdentityName>,
        vendor: Option<OrgName>,
    ) -> Result<Identity> {
        self.add_identity_reached(actor, name, kind, owner, vendor, None)
    }

    /// [`Engine::add_identity`], with the email address notifications reach it at.
    pub fn add_identity_reached(
        &self,
        actor: Actor,
        name: IdentityName,
        kind: IdentityKind,
        owner: Option<&IdentityName>,
        vendor: Option<OrgName>,
        email: Option<&str>,
    ) -> Result<Identity> {
        self.acting(&actor)?;
        let email = email.map(writ_core::notify::parse_email).transpose()?;
        // An NHI's accountable owner must be someone who can still act on it.
        let owner = owner.map(|o| self.actor(o)).transpose()?;
        // Names are one namespace however they are spelt: `Bob` may not register beside `bob`.
        let canonical = name.canonical();
        if let Some(existing) =
            self.store.identities()?.into_iter().find(|i| i.name != name && i.name.canonical() == canonical)
        {
            return Err(writ_core::Refusal::LookAlike { name, existing: existing.name }.into());
        }
        let identity =
            Identity { email, ..Identity::new(name, kind, owner.as_ref(), vendor, self.clock.now())? };
        let event = RegistryEvent::IdentityAdded { actor, identity: identity.clone() };
        self.store.add_identity(&identity, &registry_event(&event, self.hmac()?))?;
        tracing::info!(target: "writ::admin", identity = %identity.name, kind = %identity.kind, "identity added");
        Ok(identity)
    }

    pub fn identity(&self, name: &IdentityName) -> Result<Identity> {
        self.store
            .identity(name)?
            .ok_or_else(|| EngineError::NotFound { what: "identity", name: name.to_string() })
    }

    /// The identity `name` as an actor: it must exist and be active. Every step a person or an
    /// NHI takes (request, approve, execute, review, cancel, evidence, administration) resolves
    /// its actor here, so a disabled or offboarded identity does nothing on any surface.
    pub fn actor(&self, name: &IdentityName) -> Result<Identity> {
        let identity = self.identity(name)?;
        identity.require_active()?;
        Ok(identity)
    }

    /// [`Engine::actor`] for an [`Actor`]: Writ's own actors always act.
    pub(crate) fn acting(&self, actor: &Actor) -> Result<()> {
        if let Actor::Identity(name) = actor {
            self.actor(name)?;
        }
        Ok(())
    }

    /// Registers a target after checking that its connector can reach it and finds entitlements.
    pub fn add_target(
        &self,
        actor: Actor,
        name: TargetName,
        connector: ConnectorKind,
        settings: Vec<(String, String)>,
    ) -> Result<Target> {
        let target = Target { name, connector, settings, created_at: self.clock.now() };
        let entitlements = self.connectors.connect(&target)?.entitlements()?;
        if entitlements.is_empty() {
            return Err(ConnectorError::Invalid {
                target: target.name.to_string(),
                detail: "no entitlements found".into(),
            }
            .into());
        }
        let event = RegistryEvent::TargetAdded { actor, target: target.clone() };
        self.store.add_target(&target, &registry_event(&event, self.hmac()?))?;
        tracing::info!(target: "writ::admin", target_name = %target.name, "target added");
        Ok(target)
    }

    pub fn target(&self, name: &TargetName) -> Result<Target> {
        self.store
            .target(name)?
            .ok_or_else(|| EngineError::NotFound { what: "target", name: name.to_string() })
    }

    /// A live connector for a registered target.
    fn connector_for(&self, name: &TargetName) -> Result<Arc<dyn Connector>> {
        let target = self.target(name)?;
        Ok(self.connectors.connect(&target)?)
    }

    /// The entitlements a target offers, read from the target.
    pub fn entitlements(&self, target: &TargetName) -> Result<Vec<EntitlementName>> {
        Ok(self.connector_for(target)?.entitlements()?)
    }
}

/// Generates the 80 random bits of a change ID from the operating system.
pub fn random_bits() -> Result<u128> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| EngineError::Random(e.to_string()))?;
    Ok(u128::from_le_bytes(bytes))
}

pub(crate) fn change_event(event: &ChangeEvent, key: &HmacKey) -> (NewEvent, Vec<(String, String)>) {
    let (bytes, sealed) = writ_ledger::encode(&Event::Change(event.clone()), key);
    let new_event = NewEvent {
        change: Some(event.change.clone()),
        seq: Some(event.seq),
        type_name: event.body.type_name(),
        phase: event.body.phase().as_str(),
        actor: event.actor.to_string(),
        on_behalf_of: event.on_behalf_of.as_ref().map(ToString::to_string),
        at: event.at,
        leaf: writ_ledger::leaf_hash(&bytes),
        notices: Vec::new(),
        bytes,
    };
    (new_event, sealed)
}

pub(crate) fn registry_event(event: &RegistryEvent, key: &HmacKey) -> NewEvent {
    let (bytes, _) = writ_ledger::encode(&Event::Registry(event.clone()), key);
    NewEvent {
        change: None,
        seq: None,
        type_name: event.type_name(),
        phase: writ_core::event::Phase::Registry.as_str(),
        actor: event.actor().to_string(),
        on_behalf_of: None,
        at: event.at(),
        leaf: writ_ledger::leaf_hash(&bytes),
        notices: Vec::new(),
        bytes,
    }
}

#[cfg(test)]
mod tests;
