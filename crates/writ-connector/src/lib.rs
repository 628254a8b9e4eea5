//! The contract between Writ and a target system.
//!
//! Architecture invariant: connectors never read Writ's store. They receive operations and the
//! change context, talk to their target, and report what they saw and did. Every write carries
//! the change ID into the target (commit trailer, role comment, secret metadata, …).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use writ_core::change::{ChangeId, OpAction};
use writ_core::name::{EntitlementName, IdentityName};
use writ_core::time::Timestamp;

pub mod registry;

pub use registry::{Registration, Setting, SettingKind, Settings};

pub type Result<T, E = ConnectorError> = std::result::Result<T, E>;

/// How long one exchange with a networked target may take unless the target sets `timeout`.
/// Past it the target counts as unavailable; the exchange may still have taken effect there,
/// which the next plan observes.
pub const DEFAULT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// What a connector can report as failure. Nothing is assumed applied after an error unless the
/// connector says so in a report.
#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    /// The entitlement does not exist on the target.
    #[error("entitlement {entitlement} does not exist on target {target}")]
    UnknownEntitlement { target: String, entitlement: EntitlementName },
    /// The target cannot be reached or refused to work (down, permission, timeout).
    #[error("target {target} unavailable: {detail}")]
    Unavailable { target: String, detail: String },
    /// The target changed underneath the operation (for example a concurrent push).
    #[error("target {target} changed concurrently: {detail}")]
    Conflict { target: String, detail: String },
    /// The target's configuration or content is not usable.
    #[error("target {target} misconfigured: {detail}")]
    Invalid { target: String, detail: String },
}

/// One membership change on one target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetOp {
    pub action: OpAction,
    pub entitlement: EntitlementName,
    pub member: IdentityName,
    /// For a time-bound grant, how long it lasts. Writ revokes it when it ends whatever the
    /// target does; connectors whose target can also enforce an expiry (a lease, `VALID UNTIL`)
    /// set it as a second bound.
    pub ttl: Option<writ_core::time::Duration>,
}

/// Who and what a write is for; connectors record it in the target's own trail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApplyContext {
    pub change: ChangeId,
    pub summary: String,
    pub requester: String,
    pub approvers: Vec<String>,
    pub executor: String,
    pub at: Timestamp,
}

/// One planned step: what is there now and whether applying changes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanStep {
    pub op: TargetOp,
    pub present_now: bool,
    pub will_change: bool,
}

/// One applied step: membership before and after.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppliedOp {
    pub op: TargetOp,
    pub before: bool,
    pub after: bool,
}

/// The result of an apply. `reference` identifies the target-side write (a commit), if any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApplyReport {
    pub applied: Vec<AppliedOp>,
    pub reference: Option<String>,
}

/// Where a member's current credential came from, as the target records it (for targets that
/// issue credentials).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Issued {
    /// The change the target names as the issuer of the current credential.
    pub change: Option<String>,
    /// Whether every earlier credential of the member is retired (destroyed or deleted).
    pub previous_retired: bool,
    /// Earlier credentials the target still accepts, by handle (lease ID, accessor, certificate
    /// serial; never a secret): what a rotation left valid.
    pub unretired: Vec<String>,
}

/// Observed members per entitlement, read from the target itself.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    pub members: BTreeMap<EntitlementName, BTreeSet<IdentityName>>,
    /// For credential-issuing targets: who issued each member's current credential.
    pub issued: BTreeMap<(EntitlementName, IdentityName), Issued>,
    /// The target's version of what was read (for git, the HEAD commit).
    pub reference: Option<String>,
}

impl Observed {
    pub fn is_member(&self, entitlement: &EntitlementName, member: &IdentityName) -> bool {
        self.members.get(entitlement).is_some_and(|m| m.contains(member))
    }

    /// Whether `member` holds `entitlement` with a credential issued by `change`, every earlier
    /// one retired: the approved state of a rotation.
    pub fn rotated_by(
        &self,
        entitlement: &EntitlementName,
        member: &IdentityName,
        change: &ChangeId,
    ) -> bool {
        self.is_member(entitlement, member)
            && self.issued.get(&(entitlement.clone(), member.clone())).is_some_and(|issued| {
                issued.change.as_deref() == Some(change.as_str()) && issued.previous_retired
            })
    }
}

/// One credential a target reports: a token, a lease, a static role's password or a
/// certificate, by handle (accessor, lease ID, role name, serial; never the secret itself).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credential {
    /// `token`, `lease`, `static` or `certificate` (the classes policy limits).
    pub class: &'static str,
    pub handle: String,
    /// The account it belongs to, as the target names it, if it says.
    pub account: Option<String>,
    pub entitlement: Option<EntitlementName>,
    /// When it was issued (or last rotated), if the target says.
    pub issued_at: Option<Timestamp>,
    /// When it stops working, if it ever does.
    pub expires_at: Option<Timestamp>,
}

/// Everything a connector manages on its target, read in full from the target: not only what
/// Writ granted. Accounts are the target's own names; whether one is a registered identity is
/// the engine's question.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Holdings {
    /// Every (account, entitlement) held, sorted, each once.
    pub held: Vec<(String, EntitlementName)>,
    /// The accounts the target has in Writ's scope (logins, users, token holders), sorted,
    /// whether or not they hold anything managed.
    pub accounts: Vec<String>,
    pub credentials: Vec<Credential>,
    /// Last use per account, sorted by account, where the target gives a signal.
    pub usage: Option<Vec<(String, Timestamp)>>,
    /// Why the observation is incomplete (a timeout, a page that failed, a part of the
    /// catalogue Writ may not read); empty when it is complete. What an incomplete
    /// observation did not list may still be held.
    pub partial: Vec<String>,
    /// The target's version of what was read (for git, the HEAD commit).
    pub reference: Option<String>,
    /// Writes the target records that carry no Writ change ID (for git, commits to the access
    /// file without a `Writ-Change:` trailer), newest first, as far back as the target keeps
    /// them (bounded by [`UNSTAMPED_LIMIT`]).
    pub unstamped: Vec<Unstamped>,
}

/// The most writes without a change ID a connector lists in one observation.
pub const UNSTAMPED_LIMIT: usize = 1000;

/// One write on the target that names no Writ change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unstamped {
    /// How the target names it (a commit hash).
    pub reference: String,
    pub at: Timestamp,
    /// Who made it and what it says, as the target records it.
    pub summary: String,
}

impl Holdings {
    /// Holdings from a membership map (complete): what `observe` reads, flattened.
    pub fn from_members(observed: Observed) -> Holdings {
        let mut held: Vec<(String, EntitlementName)> = observed
            .members
            .into_iter()
            .flat_map(|(entitlement, members)| {
                members.into_iter().map(move |m| (m.to_string(), entitlement.clone()))
            })
            .collect();
        held.sort();
        Holdings { held, reference: observed.reference, ..Holdings::default() }
    }

    /// Sorts and deduplicates every list, as the merge needs them.
    pub fn normalize(&mut self) {
        self.held.sort();
        self.held.dedup();
        self.accounts.sort();
        self.accounts.dedup();
        if let Some(usage) = self.usage.as_mut() {
            usage.sort();
            // Keep the latest use of each account.
            usage.reverse();
            usage.dedup_by(|a, b| a.0 == b.0);
            usage.reverse();
        }
    }
}

/// A connected system Writ can plan, apply, observe and revoke on.
pub trait Connector: Send + Sync {
    /// Whether the connection behind this connector is gone, so that a kept connector must
    /// be opened again. Connectors that hold no connection never close.
    fn is_closed(&self) -> bool {
        false
    }

    /// The entitlements that exist on the target, sorted.
    fn entitlements(&self) -> Result<Vec<EntitlementName>>;

    /// What `apply` would do now. Fails with `UnknownEntitlement` for an entitlement the target
    /// does not have. Writes nothing.
    fn plan(&self, ops: &[TargetOp]) -> Result<Vec<PlanStep>>;

    /// Applies `ops` atomically where the target allows. Idempotent: an op already in effect is
    /// reported with `before == after` and changes nothing, so a retry applies only what is
    /// missing.
    fn apply(&self, context: &ApplyContext, ops: &[TargetOp]) -> Result<ApplyReport>;

    /// Reads the current members of `entitlements` from the target (not from Writ).
    fn observe(&self, entitlements: &[EntitlementName]) -> Result<Observed>;

    /// The latest write on the target stamped with `change`'s ID for any of `ops` (a commit
    /// with its `Writ-Change` trailer, the audit rows of one transaction, …), as the reference
    /// `apply` reports for it; `None` if the target holds no such write or keeps no stamp it
    /// can be found by. How an attempt that was cut off before its outcome was recorded is
    /// found again.
    fn stamped(&self, change: &ChangeId, ops: &[TargetOp]) -> Result<Option<String>> {
        let _ = (change, ops);
        Ok(None)
    }

    /// Everything the connector manages on its target (see [`Holdings`]), read in pages under
    /// the target's timeout. By default every entitlement's members, as `observe` reads them.
    fn holdings(&self) -> Result<Holdings> {
        let entitlements = self.entitlements()?;
        Ok(Holdings::from_members(self.observe(&entitlements)?))
    }

    /// Removes `member` from `entitlement`: the same as applying one revoke operation.
    fn revoke(
        &self,
        context: &ApplyContext,
        member: &IdentityName,
        entitlement: &EntitlementName,
    ) -> Result<ApplyReport> {
        let op = TargetOp {
            action: OpAction::Revoke,
            entitlement: entitlement.clone(),
            member: member.clone(),
            ttl: None,
        };
        self.apply(context, std::slice::from_ref(&op))
    }
}

/// True if `authority` (`host`, `host:port`, `[v6]:port`) names the local machine: a credential
/// may cross a connection without TLS only to such a host.
pub fn loopback_authority(authority: &str) -> bool {
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// True for a URL `http://AUTHORITY...` whose authority is the local machine (see
/// [`loopback_authority`]).
pub fn loopback_http(url: &str) -> bool {
    url.strip_prefix("http://")
        .is_some_and(|rest| loopback_authority(rest.split('/').next().unwrap_or_default()))
}

/// Refuses rotation on targets that hold memberships, not credentials.
pub fn no_rotation(target: &str, kind: &str, ops: &[TargetOp]) -> Result<()> {
    match ops.iter().find(|op| op.action == OpAction::Rotate) {
        Some(op) => Err(ConnectorError::Invalid {
            target: target.to_owned(),
            detail: format!(
                "{kind} targets hold memberships, not credentials: {} cannot be rotated (revoke and grant instead)",
                op.entitlement
            ),
        }),
        None => Ok(()),
    }
}

/// Computes plan steps against a membership map; shared by connectors that read a whole
/// snapshot first. A rotation always changes the target.
pub fn plan_against(
    target: &str,
    members: &BTreeMap<EntitlementName, BTreeSet<IdentityName>>,
    ops: &[TargetOp],
) -> Result<Vec<PlanStep>> {
    ops.iter()
        .map(|op| {
            let current = members.get(&op.entitlement).ok_or_else(|| ConnectorError::UnknownEntitlement {
                target: target.to_owned(),
                entitlement: op.entitlement.clone(),
            })?;
            let present_now = current.contains(&op.member);
            let will_change = op.action == OpAction::Rotate || present_now != op.action.leaves_present();
            Ok(PlanStep { op: op.clone(), present_now, will_change })
        })
        .collect()
}

/// Applies ops to a membership map in memory, returning what changed.
pub fn apply_to(
    target: &str,
    members: &mut BTreeMap<EntitlementName, BTreeSet<IdentityName>>,
    ops: &[TargetOp],
) -> Result<Vec<AppliedOp>> {
    plan_against(target, members, ops)?;
    let mut applied = Vec::with_capacity(ops.len());
    for op in ops {
        let set = members.entry(op.entitlement.clone()).or_default();
        let before = set.contains(&op.member);
        if op.action.leaves_present() {
            set.insert(op.member.clone());
        } else {
            set.remove(&op.member);
        }
        applied.push(AppliedOp { op: op.clone(), before, after: set.contains(&op.member) });
    }
    Ok(applied)
}

/// A target that lives in process memory: no external system. For engine tests and for the
/// benchmark that measures Writ itself; never a stand-in for a real target in integration tests.
pub struct MemoryConnector {
    name: String,
    members: Mutex<BTreeMap<EntitlementName, BTreeSet<IdentityName>>>,
    issued: Mutex<BTreeMap<(EntitlementName, IdentityName), Issued>>,
}

impl MemoryConnector {
    pub fn new(name: &str, entitlements: &[EntitlementName]) -> MemoryConnector {
        let members = entitlements.iter().map(|e| (e.clone(), BTreeSet::new())).collect();
        MemoryConnector { name: name.to_owned(), members: Mutex::new(members), issued: Mutex::default() }
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, BTreeMap<EntitlementName, BTreeSet<IdentityName>>>> {
        self.locked(&self.members)
    }

    fn locked<'a, T>(&self, mutex: &'a Mutex<T>) -> Result<std::sync::MutexGuard<'a, T>> {
        mutex.lock().map_err(|_| ConnectorError::Unavailable {
            target: self.name.clone(),
            detail: "state lock poisoned".into(),
        })
    }
}

impl Connector for MemoryConnector {
    fn entitlements(&self) -> Result<Vec<EntitlementName>> {
        Ok(self.lock()?.keys().cloned().collect())
    }

    fn plan(&self, ops: &[TargetOp]) -> Result<Vec<PlanStep>> {
        plan_against(&self.name, &*self.lock()?, ops)
    }

    fn apply(&self, context: &ApplyContext, ops: &[TargetOp]) -> Result<ApplyReport> {
        let applied = apply_to(&self.name, &mut *self.lock()?, ops)?;
        let mut issued = self.locked(&self.issued)?;
        for op in ops.iter().filter(|op| op.action == OpAction::Rotate) {
            let by = Issued {
                change: Some(context.change.to_string()),
                previous_retired: true,
                unretired: Vec::new(),
            };
            issued.insert((op.entitlement.clone(), op.member.clone()), by);
        }
        Ok(ApplyReport { applied, reference: None })
    }

    fn observe(&self, entitlements: &[EntitlementName]) -> Result<Observed> {
        let members = self.lock()?;
        let members =
            entitlements.iter().filter_map(|e| members.get(e).map(|m| (e.clone(), m.clone()))).collect();
        let issued = self
            .locked(&self.issued)?
            .iter()
            .filter(|((e, _), _)| entitlements.contains(e))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Ok(Observed { members, issued, reference: None })
    }
}

/// The in-process target of the benchmark and the engine's tests (`entitlements`: a
/// comma-separated list). Not registrable through the CLI or the API.
pub static MEMORY: Registration = Registration {
    name: "memory",
    summary: "an in-process target with no external system, for the benchmark",
    settings: &[Setting::text("entitlements", "entitlements", "the entitlements it offers, comma-separated")],
    keep_open: true,
    public: false,
    connect: |settings| {
        let entitlements: Vec<EntitlementName> =
            settings.list("entitlements").iter().filter_map(|e| EntitlementName::parse(e).ok()).collect();
        Ok(std::sync::Arc::new(MemoryConnector::new(settings.target(), &entitlements)))
    },
};
