//! Handing an NHI to a new accountable owner (`writ identity transfer`): asked by one person,
//! accepted by another as [`writ_core::transfer`] decides, each step a ledger event. Accepting
//! moves the owner in the same transaction and resolves the `nhi.orphaned` finding the move
//! fixes.

use writ_core::event::RegistryEvent;
use writ_core::identity::{Actor, Identity, IdentityKind, IdentityState};
use writ_core::name::IdentityName;
use writ_core::transfer::{Decision, Transfer, TransferId};

use crate::{Engine, EngineError, Result, registry_event};

impl Engine {
    /// A person acting on a transfer: active and human (ownership is a person's accountability).
    fn transfer_actor(&self, name: &IdentityName, action: &'static str) -> Result<Identity> {
        let actor = self.actor(name)?;
        if actor.kind != IdentityKind::Human {
            return Err(writ_core::Refusal::NotHuman { actor: actor.name, kind: actor.kind, action }.into());
        }
        Ok(actor)
    }

    /// `actor` asks that `to` become the owner of `identity`, saying why. A pending transfer of
    /// the same identity is superseded by this one (both recorded in one event).
    pub fn request_transfer(
        &self,
        actor: &IdentityName,
        identity: &IdentityName,
        to: &IdentityName,
        reason: String,
        random: u128,
    ) -> Result<Transfer> {
        let actor = self.transfer_actor(actor, "ask for a transfer of ownership")?;
        let nhi = self.identity(identity)?;
        let new_owner = self.identity(to)?;
        let roles = self.store.roles_of(&actor.name)?;
        let now = self.clock.now();
        let transfer = writ_core::transfer::request(
            TransferId::generate(now, random),
            &nhi,
            &new_owner,
            &actor.name,
            &roles,
            reason,
            now,
        )?;
        let pending = self.store.transfers(Some(identity))?.into_iter().find(|t| t.state.is_pending());
        let superseded = pending.map(|t| t.superseded(&actor.name, now));
        let event = RegistryEvent::Transfer {
            actor: Actor::Identity(actor.name.clone()),
            transfer: Box::new(transfer.clone()),
            supersedes: superseded.as_ref().map(|t| t.id.clone()),
        };
        self.store.write_transfer(&transfer, superseded.as_ref(), &registry_event(&event, self.hmac()?))?;
        tracing::info!(target: "writ::admin", transfer = %transfer.id, identity = %transfer.identity, to = %transfer.to, "transfer requested");
        Ok(transfer)
    }

    /// The transfer with this id.
    pub fn transfer(&self, id: &str) -> Result<Transfer> {
        let id = TransferId::parse(id)?;
        self.store
            .transfer(&id)?
            .ok_or_else(|| EngineError::NotFound { what: "transfer", name: id.to_string() })
    }

    /// Every transfer (of one identity, when given), oldest first.
    pub fn transfers(&self, identity: Option<&IdentityName>) -> Result<Vec<Transfer>> {
        Ok(self.store.transfers(identity)?)
    }

    /// `actor` accepts, declines or cancels a pending transfer. Accepted, the identity's owner is
    /// now `to`, and an open `nhi.orphaned` finding about it is resolved.
    pub fn decide_transfer(
        &self,
        actor: &IdentityName,
        id: &str,
        decision: Decision,
        note: Option<String>,
    ) -> Result<Transfer> {
        let actor = self.transfer_actor(actor, "decide a transfer of ownership")?;
        let transfer = self.transfer(id)?;
        let roles = self.store.roles_of(&actor.name)?;
        let nhi = self.identity(&transfer.identity)?;
        let owner_active = match &transfer.from {
            Some(from) if nhi.owner.as_ref() == Some(from) => {
                self.identity(from)?.state == IdentityState::Active
            }
            _ => false,
        };
        let decided = transfer.decide(decision, &actor.name, &roles, owner_active, note, self.clock.now())?;
        let event = RegistryEvent::Transfer {
            actor: Actor::Identity(actor.name.clone()),
            transfer: Box::new(decided.clone()),
            supersedes: None,
        };
        self.store.write_transfer(&decided, None, &registry_event(&event, self.hmac()?))?;
        tracing::info!(target: "writ::admin", transfer = %decided.id, state = %decided.state, "transfer decided");
        if decided.state == writ_core::transfer::TransferState::Accepted {
            self.settle_orphan(&decided, &actor.name)?;
        }
        Ok(decided)
    }

    /// Resolves the `nhi.orphaned` finding about the identity an accepted transfer handed over.
    /// (Should this fail, the registry's next reconciliation resolves it: the NHI has an
    /// accountable owner.)
    fn settle_orphan(&self, transfer: &Transfer, actor: &IdentityName) -> Result<()> {
        let note = format!("owner transferred to {} by {}", transfer.to, transfer.id);
        self.resolve_if_open(
            Actor::Identity(actor.clone()),
            crate::scim::OWNER_LEFT,
            transfer.identity.as_str(),
            note,
        )
    }
}
