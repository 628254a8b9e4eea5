//! Deploys and decommissions read from application manifests (`writ_intake::manifest`).
//!
//! A merged pull request or a push that changes a manifest on the deploy branch asks, per
//! application, for one change that brings its identities in line with the manifest at that
//! commit:
//!
//! - **grant** what the manifest lists and the identity does not hold (observed on every
//!   target, or granted through Writ);
//! - **revoke** what the previous version listed and this one does not (the manifest removes
//!   what it gave, never access granted some other way);
//! - a **decommission** (the file deleted, or `decommissioned = true`) revokes everything each
//!   identity it named holds anywhere, and flags each identity (`nhi.app_decommissioned`) for
//!   its account to be disabled or deleted.
//!
//! The change is reserved for (source, `deploy:REPO@COMMIT:PATH`), so the pull request event
//! and the push of the same merge commit open one change, in either order. It goes through
//! policy and approval like any request. A manifest cannot take an identity over: it may only
//! name non-human identities, and an existing one must already be owned by the manifest's
//! owner. Identities a manifest introduces are registered (owner from the manifest) when their
//! change is requested; they hold nothing until it is approved and carried out.

use std::collections::{BTreeMap, BTreeSet};

use writ_core::change::{BusinessEvent, ExternalRef, Justification, OpAction, RefKind};
use writ_core::identity::Actor;
use writ_core::name::{EntitlementRef, IdentityName};
use writ_intake::Parsed;
use writ_intake::manifest::{AppRevision, Manifest};

use crate::intake::{Opened, Source};
use crate::{Engine, RequestInput, RequestedOp, Result};

/// How a change opened from a manifest names it (`record` reference `manifest:REPO/PATH`).
pub const MANIFEST_REF: &str = "manifest:";

/// The finding raised on each identity of a decommissioned application.
pub const APP_DECOMMISSIONED: &str = "nhi.app_decommissioned";

impl Engine {
    /// Opens (or finds) the change one application's manifest asks for at the delivery's
    /// revision. A refusal (an unreadable manifest, an identity it may not name, policy) is
    /// noted and kept with the delivery.
    pub(crate) fn deploy(
        &self,
        source: &Source,
        parsed: &Parsed,
        app: &AppRevision,
        notes: &mut Vec<String>,
    ) -> Result<Opened> {
        let Some(revision) = &parsed.revision else { return Ok(Opened::NotAsked) };
        let commit: String = revision.after.chars().take(12).collect();
        let label = format!("{} {} at {commit}", revision.repository, app.path);
        let refuse = |notes: &mut Vec<String>, reason: String| {
            notes.push(format!("refused: manifest {label}: {reason}"));
            Ok(Opened::Refused)
        };
        let after = match &app.after {
            Ok(after) => after.as_ref(),
            Err(reason) => return refuse(notes, reason.clone()),
        };
        let object = format!("deploy:{}@{}:{}", revision.repository, revision.after, app.path);
        let Ok(object) = writ_core::intake::key(&object, "object") else {
            return refuse(notes, "the repository and path are too long to key a change".into());
        };
        if let Some((id, _)) = self.store.object(&source.name, &object)?
            && self.exists(&id)?
        {
            return Ok(Opened::Change(id));
        }
        let Some(manifest) = after.or(app.before.as_ref()) else { return Ok(Opened::NotAsked) };
        let decommission = after.is_none_or(|m| m.decommissioned);
        let names: BTreeSet<&IdentityName> =
            app.before.iter().chain(after).flat_map(|m| m.identities.iter().map(|i| &i.name)).collect();
        // Only identities the manifest may speak for; each target is then observed once.
        let mut existing = Vec::new();
        for &name in &names {
            match self.store.identity(name)? {
                None => {}
                Some(identity) if !identity.kind.is_nhi() => {
                    return refuse(
                        notes,
                        format!("{name} is a person; a manifest names non-human identities only"),
                    );
                }
                Some(identity) if identity.owner.as_ref() != Some(&manifest.owner) => {
                    let owner = identity.owner.as_ref().map_or("nobody".into(), ToString::to_string);
                    return refuse(
                        notes,
                        format!(
                            "{name} is owned by {owner} in Writ, the manifest says {}: transfer its ownership in Writ or fix the manifest",
                            manifest.owner
                        ),
                    );
                }
                Some(_) => existing.push(name),
            }
        }
        let mut holdings = self.holdings_of(&existing)?;
        let mut ops = Vec::new();
        for name in names {
            let desired = after.map(|m| m.grants_of(name)).unwrap_or_default();
            let listed = app.before.as_ref().map(|m| m.grants_of(name)).unwrap_or_default();
            let held = holdings.remove(name).unwrap_or_default();
            let op = |action, entitlement: &EntitlementRef| RequestedOp {
                action,
                identity: name.clone(),
                entitlement: entitlement.clone(),
                duration: None,
            };
            ops.extend(desired.iter().filter(|e| !held.contains(e)).map(|e| op(OpAction::Grant, e)));
            ops.extend(
                held.iter()
                    .filter(|e| !desired.contains(e) && (decommission || listed.contains(e)))
                    .map(|e| op(OpAction::Revoke, e)),
            );
        }
        if ops.len() > writ_intake::block::MAX_OPS {
            return refuse(
                notes,
                format!("{} operations: one change holds at most {}", ops.len(), writ_intake::block::MAX_OPS),
            );
        }
        let verb = if decommission { "decommission" } else { "deploy" };
        let opened = if ops.is_empty() {
            notes.push(format!("{verb} of {} ({label}): no access to grant or revoke", manifest.app));
            Opened::NotAsked
        } else {
            self.register(source, manifest, after)?;
            let input = RequestInput {
                window: None,
                rollback_owner: None,
                requester: source.requester.clone(),
                on_behalf_of: self.on_behalf_of(source, parsed, notes),
                ops,
                justification: Justification::parse(&format!(
                    "{} of application {} from {label}",
                    if decommission { "Decommission" } else { "Deploy" },
                    manifest.app
                ))?,
                refs: vec![
                    ExternalRef::new(RefKind::Commit, &revision.after)?,
                    ExternalRef::new(
                        RefKind::Record,
                        &format!("{MANIFEST_REF}{}/{}", revision.repository, app.path),
                    )?,
                ],
                event: if decommission { BusinessEvent::Decommission } else { BusinessEvent::Deploy },
            };
            let now = self.now();
            let id = writ_core::change::ChangeId::generate(now, crate::random_bits()?);
            let reserved = self.store.bind_object(&source.name, &object, &id, now)?;
            match self.open_reserved(reserved, input)? {
                Ok(id) => Opened::Change(id),
                Err(reason) => return refuse(notes, reason),
            }
        };
        if decommission {
            let change = match &opened {
                Opened::Change(id) => Some(id.clone()),
                _ => None,
            };
            for identity in &manifest.identities {
                if self.store.identity(&identity.name)?.is_some() {
                    let detail = format!(
                        "{} ran application {}, decommissioned at {label}: disable or delete its account and credentials",
                        identity.name, manifest.app
                    );
                    self.raise_finding(APP_DECOMMISSIONED, identity.name.as_str(), change.clone(), detail)?;
                }
            }
        }
        Ok(opened)
    }

    /// Everything `identity` holds: observed on every target, and granted through Writ.
    pub(crate) fn holdings(&self, identity: &IdentityName) -> Result<BTreeSet<EntitlementRef>> {
        Ok(self.holdings_of(&[identity])?.remove(identity).unwrap_or_default())
    }

    /// [`Engine::holdings`] of several identities, observing each target once.
    fn holdings_of(
        &self,
        identities: &[&IdentityName],
    ) -> Result<BTreeMap<IdentityName, BTreeSet<EntitlementRef>>> {
        let mut all = BTreeMap::new();
        for (identity, observed) in self.observed_holdings_of(identities)? {
            let mut held: BTreeSet<EntitlementRef> = observed.into_iter().collect();
            held.extend(self.store.grants_of(&identity)?.into_iter().map(|g| g.entitlement));
            all.insert(identity, held);
        }
        Ok(all)
    }

    /// Registers the identities a manifest introduces with something to hold.
    fn register(&self, source: &Source, manifest: &Manifest, after: Option<&Manifest>) -> Result<()> {
        for identity in after.map(|m| m.identities.as_slice()).unwrap_or_default() {
            if !identity.grants.is_empty() && self.store.identity(&identity.name)?.is_none() {
                let actor = Actor::Identity(source.requester.clone());
                match self.add_identity(
                    actor,
                    identity.name.clone(),
                    identity.kind,
                    Some(&manifest.owner),
                    None,
                ) {
                    Ok(_) => {}
                    // Registered by a concurrent delivery of the same deploy.
                    Err(crate::EngineError::Store(writ_store::StoreError::Conflict(_)))
                        if self.store.identity(&identity.name)?.is_some() => {}
                    Err(error) => return Err(error),
                }
            }
        }
        Ok(())
    }
}
