//! Identity lifecycle: an identity is `active`, `disabled` or `offboarded`, and only an active
//! one acts (see [`Engine::actor`]). Leaving `active`, in one write with its ledger event,
//! revokes every token of the identity; its roles are suspended while it is not active (no
//! principal is ever built for it). After that write, the approvals it gave to changes still
//! waiting for approval or execution are withdrawn (each such change is revalidated and goes
//! back to needing them), and the non-human identities it owns are flagged for ownership
//! transfer. Both are swept again by repeating the call, and execution revalidates too, so a
//! crash between the write and the sweep leaves nothing counted that should not be.

use writ_core::change::{ChangeId, ChangeState};
use writ_core::event::RegistryEvent;
use writ_core::identity::{Actor, Identity, IdentityState};
use writ_core::name::IdentityName;

use crate::scim::OWNER_LEFT;
use crate::{Engine, EngineError, Result, registry_event};

/// What moving an identity to a state did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Standing {
    /// The identity as it now stands.
    pub identity: Identity,
    /// The state it was in; equal to `identity.state` when nothing needed to change.
    pub from: IdentityState,
    /// Tokens revoked by this move (their public ids).
    pub tokens_revoked: Vec<String>,
    /// Open changes whose approval by this identity no longer counts.
    pub withdrawn: Vec<ChangeId>,
    /// Non-human identities it owns, flagged for ownership transfer.
    pub flagged: Vec<IdentityName>,
}

impl Engine {
    /// Moves `name` to `to`, recorded with `reason`. Moving to the state it is already in
    /// records nothing and sweeps its approvals and owned identities again.
    pub fn set_identity_state(
        &self,
        actor: Actor,
        name: &IdentityName,
        to: IdentityState,
        reason: String,
    ) -> Result<Standing> {
        let mut standing = self.move_identity(actor, name, to, reason)?;
        if to != IdentityState::Active {
            standing.flagged = self.flag_owned(&standing.identity, None)?;
        }
        Ok(standing)
    }

    /// [`Engine::set_identity_state`] without flagging the identities it owns, for callers that
    /// flag them with the change that removes its access (offboarding, a SCIM leaver).
    pub(crate) fn move_identity(
        &self,
        actor: Actor,
        name: &IdentityName,
        to: IdentityState,
        reason: String,
    ) -> Result<Standing> {
        self.acting(&actor)?;
        if to != IdentityState::Active && actor.identity() == Some(name) {
            return Err(writ_core::Refusal::OwnStanding { identity: name.clone() }.into());
        }
        let reason = writ_core::machine::text(reason, "reason")?;
        let identity = self.identity(name)?;
        let from = identity.state;
        let mut tokens_revoked = Vec::new();
        if from != to {
            if to != IdentityState::Active {
                tokens_revoked = self
                    .store
                    .tokens()?
                    .into_iter()
                    .filter(|t| &t.info.identity == name && t.revoked_at.is_none())
                    .map(|t| t.info.id)
                    .collect();
            }
            let event = RegistryEvent::IdentityState {
                actor,
                identity: name.clone(),
                from,
                to,
                reason,
                tokens_revoked: tokens_revoked.clone(),
                at: self.now(),
            };
            self.store.set_identity_state(
                name,
                from,
                to,
                &tokens_revoked,
                event.at(),
                &registry_event(&event, self.hmac()?),
            )?;
            tracing::info!(target: "writ::admin", identity = %name, %from, %to, tokens = tokens_revoked.len(), "identity state changed");
        }
        let identity = Identity { state: to, ..identity };
        let withdrawn = if to == IdentityState::Active { Vec::new() } else { self.withdraw_approvals(name)? };
        Ok(Standing { identity, from, tokens_revoked, withdrawn, flagged: Vec::new() })
    }

    /// Sends every change still waiting for approval or execution that `name` approved back to
    /// approval without their approval (recorded as `change.revalidated`). Returns those changes.
    fn withdraw_approvals(&self, name: &IdentityName) -> Result<Vec<ChangeId>> {
        let mut withdrawn = Vec::new();
        for state in [ChangeState::PendingApproval, ChangeState::Approved] {
            for summary in self.store.changes(Some(state))? {
                let record = self.load(&summary.id)?;
                if !record.change.approvals.iter().any(|a| &a.approver == name) {
                    continue;
                }
                match self.revalidated(&record.change) {
                    Ok(Some(event)) => {
                        self.commit(
                            Some(&record.change),
                            vec![event],
                            Vec::new(),
                            crate::evidence::Captured::default(),
                        )?;
                        withdrawn.push(summary.id);
                    }
                    Ok(None) => {}
                    // Policy now refuses the change outright: it can be neither approved nor
                    // executed any more, which is as much as withdrawing the approval achieves.
                    Err(EngineError::Denied(denial)) => {
                        tracing::warn!(target: "writ::admin", change = %summary.id, reason = %denial.reason, "approval not withdrawn: policy refuses the change");
                    }
                    Err(other) => return Err(other),
                }
            }
        }
        Ok(withdrawn)
    }

    /// Flags every non-human identity `owner` owns for ownership transfer (`nhi.orphaned`).
    pub(crate) fn flag_owned(&self, owner: &Identity, change: Option<ChangeId>) -> Result<Vec<IdentityName>> {
        let mut flagged = Vec::new();
        for nhi in self
            .store
            .identities()?
            .into_iter()
            .filter(|i| i.kind.is_nhi() && i.owner.as_ref() == Some(&owner.name))
        {
            let detail = format!(
                "{} is owned by {}, who is {}: transfer ownership to an active person",
                nhi.name, owner.name, owner.state
            );
            self.raise_finding(OWNER_LEFT, nhi.name.as_str(), change.clone(), detail)?;
            flagged.push(nhi.name);
        }
        Ok(flagged)
    }
}
