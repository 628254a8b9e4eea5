//! Pausing automation when its source cannot be trusted: reconciliation before automation.
//!
//! A scope of automation (`scim`: the identity provider's leavers and movers; `target:NAME`:
//! automated changes on one target) is paused by an `automation.paused` finding about it,
//! opened with the reason, and resumed only by a person (`Engine::resume_automation`), which
//! resolves that finding with their justification. While a scope is paused its automated
//! actions are held, not dropped: a SCIM lifecycle step stays unsettled (the write itself is
//! recorded) and is settled when the scope resumes. What pauses a scope:
//!
//! - a reconciliation of a target that could not read everything (`target:NAME`);
//! - a run of SCIM leavers that would remove more people within the policy's window than its
//!   `[automation]` threshold allows (`scim`): a feed deactivating half the company at once is
//!   more likely a broken feed than a layoff, and a person should say which.
//! - an identity provider feed silent for longer than `[automation] feed_interval` (`scim`),
//!   seen by the next SCIM write or the registry's reconciliation.
//!
//! A deploy or decommission opened from an application manifest is requested and approved as
//! usual, but not carried out on a paused target until it is resumed.
//!
//! Expiry of time-bound access is never paused: it only removes what Writ itself granted, for
//! as long as it was approved.

use writ_core::finding::{Finding, FindingState};
use writ_core::identity::{Actor, IdentityState};
use writ_core::name::IdentityName;

use crate::findings::finding_id;
use crate::{Engine, EngineError, Result};

/// The finding kind whose open findings are the paused scopes.
pub const PAUSED: &str = "automation.paused";

/// The scope of the identity provider's lifecycle automation.
pub const SCIM_SCOPE: &str = "scim";

/// What resuming a scope did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resumed {
    pub finding: Finding,
    /// How many held lifecycle steps were settled on resuming.
    pub settled: usize,
}

impl Engine {
    /// The finding that pauses `scope`, if it is paused.
    pub fn paused(&self, scope: &str) -> Result<Option<Finding>> {
        Ok(self.store.finding(&finding_id(PAUSED, scope))?.filter(|f| f.state != FindingState::Resolved))
    }

    /// Every paused scope's finding.
    pub fn automation_status(&self) -> Result<Vec<Finding>> {
        Ok(self
            .store
            .findings(None)?
            .into_iter()
            .filter(|f| f.kind == PAUSED && f.state != FindingState::Resolved)
            .collect())
    }

    /// Pauses `scope` for `reason` (a scope already paused stays paused as it was).
    pub(crate) fn pause_automation(&self, scope: &str, reason: String) -> Result<Finding> {
        if let Some(paused) = self.paused(scope)? {
            return Ok(paused);
        }
        let detail = format!(
            "automation of {scope} is paused: {reason}; held actions proceed after `writ automation resume {scope}`"
        );
        let finding = self.raise_finding(PAUSED, scope, None, detail)?;
        tracing::warn!(target: "writ::automation", %scope, %reason, "automation paused");
        Ok(finding)
    }

    /// A person resumes `scope`: the pause's finding is resolved with their justification, and
    /// what was held proceeds. The person must be an active human; an identity provider's
    /// client (or any non-human identity) cannot lift the pause its own feed caused.
    pub fn resume_automation(
        &self,
        actor: &IdentityName,
        scope: &str,
        justification: String,
    ) -> Result<Resumed> {
        let person = self.actor(actor)?;
        if person.kind.is_nhi() || person.state != IdentityState::Active {
            return Err(EngineError::Denied(writ_policy::Denial {
                code: "automation.resume_not_allowed",
                rule: None,
                reason: format!(
                    "{actor} is not an active person: automation is resumed by a person who takes responsibility for it"
                ),
            }));
        }
        let justification = writ_core::machine::text(justification, "justification")?;
        let Some(paused) = self.paused(scope)? else {
            return Err(EngineError::Denied(writ_policy::Denial {
                code: "automation.not_paused",
                rule: None,
                reason: format!("automation of {scope} is not paused"),
            }));
        };
        let note = format!("automation of {scope} resumed by {actor}: {justification}");
        let finding = self.set_finding_state(
            Actor::Identity(actor.clone()),
            paused,
            FindingState::Resolved,
            None,
            note,
        )?;
        tracing::info!(target: "writ::automation", %scope, %actor, "automation resumed");
        // Held lifecycle steps proceed, approved by this resumption, settled by the identity
        // provider's client (the requester of their changes, as if no pause had been).
        let settled = match self.scim_client()? {
            Some(client) => self.scim_settle_all_approved(&client)?,
            None => 0,
        };
        Ok(Resumed { finding, settled })
    }

    /// The identity provider's client: an active identity with the provisioner role.
    fn scim_client(&self) -> Result<Option<IdentityName>> {
        for (name, role) in self.store.role_assignments()? {
            if role == writ_core::access::Role::Provisioner
                && self.store.identity(&name)?.is_some_and(|i| i.state == IdentityState::Active)
            {
                return Ok(Some(name));
            }
        }
        Ok(None)
    }

    /// Why a lifecycle step that removes access from `identity` must wait, if it must: the SCIM
    /// scope or a target it holds access on is paused, or this leaver would take the
    /// identity provider's removals within the window beyond the policy's limits (which pauses
    /// the scope). `approved`: the step runs under a person's resumption, which already
    /// decided for it.
    pub(crate) fn lifecycle_hold(
        &self,
        identity: &IdentityName,
        leaving: bool,
        approved: bool,
        recent: &RecentRemovals,
    ) -> Result<Option<String>> {
        if let Some(paused) = self.paused(SCIM_SCOPE)? {
            return Ok(Some(format!(
                "automation of {SCIM_SCOPE} is paused ({}): {}",
                paused.id, paused.detail
            )));
        }
        let grants = self.store.grants_of(identity)?;
        for grant in &grants {
            let scope = writ_core::reconcile::target_scope(&grant.entitlement.target);
            if let Some(paused) = self.paused(&scope)? {
                return Ok(Some(format!(
                    "automation of {scope} is paused ({}): {}",
                    paused.id, paused.detail
                )));
            }
        }
        if !leaving || approved {
            return Ok(None);
        }
        let limits = self.policy()?.rules().automation;
        let removed = recent.people + 1;
        let granted = recent.grants + grants.len() as u64;
        if !limits.exceeded(removed, granted, recent.holders.max(1)) {
            return Ok(None);
        }
        let reason = format!(
            "the identity provider would remove {removed} of {} people ({granted} grants) within {}, beyond the policy's \
             [automation] limits ({}% of its people and at least {}, or {} grants): a broken feed is likelier than \
             a layoff, so a person decides",
            recent.holders,
            limits.window,
            limits.max_removed_percent,
            limits.min_removed,
            limits.max_removed_grants
        );
        self.pause_automation(SCIM_SCOPE, reason.clone())?;
        Ok(Some(reason))
    }

    /// Pauses the SCIM scope when the identity provider's feed has been silent for longer than
    /// the policy's `[automation] feed_interval` (nothing when that is unset or the feed never
    /// wrote). Silence counts from its last write or the scope's last resumption, whichever is
    /// later: a person who resumed after a silence has looked at it.
    pub(crate) fn check_feed(&self) -> Result<Option<Finding>> {
        let Some(interval) = self.policy()?.rules().automation.feed_interval else { return Ok(None) };
        let Some(last_write) = self.store.scim_last_write()? else { return Ok(None) };
        let since = self.scim_resumed_at()?.map_or(last_write, |resumed| resumed.max(last_write));
        let now = self.now();
        if now.as_millis().saturating_sub(since.as_millis()) <= interval.as_millis() {
            return Ok(None);
        }
        let reason = format!(
            "the identity provider's feed has been silent since {} (last write {}), longer than the policy's \
             [automation] feed_interval of {interval}: what it sends next may be a backlog or a broken record",
            since.to_rfc3339(),
            last_write.to_rfc3339()
        );
        self.pause_automation(SCIM_SCOPE, reason).map(Some)
    }

    /// Refuses to carry out a change that automation opened from application manifests
    /// (deploy, decommission) on a target whose automation is paused: the change is kept, with
    /// its approvals, and runs once a person resumes the target. Changes people asked for, and
    /// every other kind, are not held here.
    pub(crate) fn automation_allows(&self, change: &writ_core::change::Change) -> Result<()> {
        use writ_core::change::{BusinessEvent, RefKind};
        let from_manifest = change
            .refs
            .iter()
            .any(|r| r.kind == RefKind::Record && r.value().starts_with(crate::deploy::MANIFEST_REF));
        if !matches!(change.event, BusinessEvent::Deploy | BusinessEvent::Decommission) || !from_manifest {
            return Ok(());
        }
        let mut targets: Vec<&writ_core::name::TargetName> =
            change.ops.iter().map(|op| &op.entitlement.target).collect();
        targets.sort();
        targets.dedup();
        for target in targets {
            let scope = writ_core::reconcile::target_scope(target);
            if let Some(paused) = self.paused(&scope)? {
                return Err(EngineError::Denied(writ_policy::Denial {
                    code: "automation.paused",
                    rule: None,
                    reason: format!(
                        "{} is a {} from a manifest and automation of {scope} is paused ({}): it runs once a person \
                         resumes it with `writ automation resume {scope}`",
                        change.id, change.event, paused.id
                    ),
                }));
            }
        }
        Ok(())
    }

    /// When the SCIM scope was last resumed, if ever: removals before it were decided then.
    pub(crate) fn scim_resumed_at(&self) -> Result<Option<writ_core::time::Timestamp>> {
        let finding = self.store.finding(&finding_id(PAUSED, SCIM_SCOPE))?;
        Ok(finding.filter(|f| f.state == FindingState::Resolved).map(|f| f.updated_at))
    }
}

/// The identity provider's removals counted against the limits: people it removed since the
/// window began (or the last resumption), the grants they held, and how many people it had.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecentRemovals {
    pub people: u64,
    pub grants: u64,
    pub holders: u64,
}
