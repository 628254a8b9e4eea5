//! The registry tables as projections of the ledger. Identities (and their state), targets and
//! their settings, tokens (issue, expiry, revocation), roles, delegations, SCIM links and the
//! policy in force are each written only together with their event, so each can be rebuilt from
//! the events alone. [`Engine::check_projections`] rebuilds them and names every divergence
//! between what the ledger says and what the tables hold: a row edited, added or removed with
//! plain SQL is found even though every event still verifies.

use std::collections::BTreeMap;

use writ_core::event::{Event, RegistryEvent};
use writ_core::identity::IdentityState;

use crate::{Engine, Result};

/// Events read per page while rebuilding.
const PAGE: usize = 1000;

/// One place where a table disagrees with the ledger.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Divergence {
    pub table: &'static str,
    pub key: String,
    /// What the ledger's events say the row is (`absent` if no event made it).
    pub expected: String,
    /// What the table holds (`absent` if the row is missing).
    pub found: String,
}

impl std::fmt::Display for Divergence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: the ledger says {}, the table holds {}",
            self.table, self.key, self.expected, self.found
        )
    }
}

/// The registry as the ledger's events build it, each row rendered as the text compared.
#[derive(Default)]
struct Expected {
    /// name → (kind, owner, vendor, state)
    identities: BTreeMap<String, (String, Option<String>, Option<String>, IdentityState)>,
    targets: BTreeMap<String, String>,
    /// id → (identity, label, expiry, revocation)
    tokens: BTreeMap<String, (String, String, String, Option<String>)>,
    roles: BTreeMap<String, String>,
    delegations: BTreeMap<String, String>,
    scim_links: BTreeMap<String, String>,
    policy: BTreeMap<String, String>,
}

fn identity_row(kind: &str, owner: Option<&str>, vendor: Option<&str>, state: IdentityState) -> String {
    format!("kind {kind}, owner {}, vendor {}, {state}", owner.unwrap_or("-"), vendor.unwrap_or("-"))
}

fn token_row(identity: &str, label: &str, expires: &str, revoked: Option<&str>) -> String {
    format!("of {identity} ({label:?}), expires {expires}, revoked {}", revoked.unwrap_or("no"))
}

impl Expected {
    fn apply(&mut self, event: &RegistryEvent) {
        match event {
            RegistryEvent::IdentityAdded { identity: i, .. } => {
                let row = (
                    i.kind.as_str().to_owned(),
                    i.owner.as_ref().map(ToString::to_string),
                    i.vendor.as_ref().map(ToString::to_string),
                    IdentityState::Active,
                );
                self.identities.insert(i.name.to_string(), row);
            }
            RegistryEvent::IdentityState { identity, to, tokens_revoked, at, .. } => {
                if let Some(row) = self.identities.get_mut(identity.as_str()) {
                    row.3 = *to;
                }
                for id in tokens_revoked {
                    if let Some(row) = self.tokens.get_mut(id) {
                        row.3 = Some(at.to_rfc3339());
                    }
                }
            }
            RegistryEvent::TargetAdded { target, .. } => {
                let settings: Vec<String> = target.settings.iter().map(|(k, v)| format!("{k}={v}")).collect();
                self.targets.insert(
                    target.name.to_string(),
                    format!("{} [{}]", target.connector.as_str(), settings.join(", ")),
                );
            }
            RegistryEvent::TokenIssued { token, .. } => {
                let row =
                    (token.identity.to_string(), token.label.clone(), token.expires_at.to_rfc3339(), None);
                self.tokens.insert(token.id.clone(), row);
            }
            RegistryEvent::TokenRevoked { id, at, .. } => {
                if let Some(row) = self.tokens.get_mut(id) {
                    row.3 = Some(at.to_rfc3339());
                }
            }
            RegistryEvent::RoleGranted { identity, role, .. } => {
                self.roles.insert(format!("{identity} {role}"), "assigned".to_owned());
            }
            RegistryEvent::RoleRevoked { identity, role, .. } => {
                self.roles.remove(&format!("{identity} {role}"));
            }
            RegistryEvent::DelegationGranted { delegation: d, .. } => {
                self.delegations.insert(
                    format!("{} → {}", d.principal, d.delegate),
                    format!("until {}", d.until.to_rfc3339()),
                );
            }
            RegistryEvent::DelegationRevoked { principal, delegate, .. } => {
                self.delegations.remove(&format!("{principal} → {delegate}"));
            }
            RegistryEvent::ScimLinked { identity, external_id, .. } => {
                self.scim_links.insert(identity.to_string(), format!("externalId {external_id:?}"));
            }
            RegistryEvent::PolicyLoaded { hash, .. } => {
                self.policy.insert("in force".to_owned(), hash.clone());
            }
            RegistryEvent::Finding { .. }
            | RegistryEvent::Exception { .. }
            | RegistryEvent::Delivery { .. }
            | RegistryEvent::DeliveryRefused { .. }
            | RegistryEvent::RefusalsCounted { .. } => {}
        }
    }
}

/// Every key of `expected` and `found` whose rows differ.
fn compare(
    table: &'static str,
    expected: &BTreeMap<String, String>,
    found: &BTreeMap<String, String>,
    out: &mut Vec<Divergence>,
) {
    let absent = || "absent".to_owned();
    for key in expected.keys().chain(found.keys().filter(|k| !expected.contains_key(*k))) {
        let (want, have) = (expected.get(key), found.get(key));
        if want != have {
            out.push(Divergence {
                table,
                key: key.clone(),
                expected: want.cloned().unwrap_or_else(absent),
                found: have.cloned().unwrap_or_else(absent),
            });
        }
    }
}

impl Engine {
    /// Rebuilds the registry tables from the ledger's events and names every divergence, in
    /// table then key order. Empty when the tables are what the ledger says.
    pub fn check_projections(&self) -> Result<Vec<Divergence>> {
        let mut expected = Expected::default();
        let mut from = 0;
        loop {
            let page = self.store.events(from, PAGE)?;
            for row in &page {
                // Registry rows have no change id; an undecodable one is the ledger check's to
                // report (`writ ledger verify`), not a projection's.
                if row.change.is_some() {
                    continue;
                }
                if let Ok(Event::Registry(event)) = writ_ledger::record::decode(&row.bytes, &|_| None) {
                    expected.apply(&event);
                }
            }
            match page.last() {
                Some(last) if page.len() == PAGE => from = last.index + 1,
                _ => break,
            }
        }
        let store = &self.store;
        let identities = store
            .identities()?
            .iter()
            .map(|i| {
                let row = identity_row(
                    i.kind.as_str(),
                    i.owner.as_ref().map(|o| o.as_str()),
                    i.vendor.as_ref().map(|v| v.as_str()),
                    i.state,
                );
                (i.name.to_string(), row)
            })
            .collect();
        let targets = store
            .targets()?
            .iter()
            .map(|t| {
                let settings: Vec<String> = t.settings.iter().map(|(k, v)| format!("{k}={v}")).collect();
                (t.name.to_string(), format!("{} [{}]", t.connector.as_str(), settings.join(", ")))
            })
            .collect();
        let tokens = store
            .tokens()?
            .iter()
            .map(|t| {
                let revoked = t.revoked_at.map(|at| at.to_rfc3339());
                let row = token_row(
                    t.info.identity.as_str(),
                    &t.info.label,
                    &t.info.expires_at.to_rfc3339(),
                    revoked.as_deref(),
                );
                (t.info.id.clone(), row)
            })
            .collect();
        let roles = store
            .role_assignments()?
            .iter()
            .map(|(identity, role)| (format!("{identity} {role}"), "assigned".to_owned()))
            .collect();
        let delegations = store
            .delegations()?
            .iter()
            .map(|d| (format!("{} → {}", d.principal, d.delegate), format!("until {}", d.until.to_rfc3339())))
            .collect();
        let scim_links = store
            .scim_links()?
            .into_iter()
            .map(|(identity, external_id)| (identity.to_string(), format!("externalId {external_id:?}")))
            .collect();
        let policy = store.policy(None)?.map(|(hash, _)| ("in force".to_owned(), hash)).into_iter().collect();
        let expected_identities = expected
            .identities
            .iter()
            .map(|(name, (kind, owner, vendor, state))| {
                (name.clone(), identity_row(kind, owner.as_deref(), vendor.as_deref(), *state))
            })
            .collect();
        let expected_tokens = expected
            .tokens
            .iter()
            .map(|(id, (identity, label, expires, revoked))| {
                (id.clone(), token_row(identity, label, expires, revoked.as_deref()))
            })
            .collect();
        let mut out = Vec::new();
        compare("identities", &expected_identities, &identities, &mut out);
        compare("targets", &expected.targets, &targets, &mut out);
        compare("tokens", &expected_tokens, &tokens, &mut out);
        compare("roles", &expected.roles, &roles, &mut out);
        compare("delegations", &expected.delegations, &delegations, &mut out);
        compare("scim_links", &expected.scim_links, &scim_links, &mut out);
        compare("policies", &expected.policy, &policy, &mut out);
        Ok(out)
    }
}
