//! The tables as projections of the ledger. Identities (and their state), targets and their
//! settings, tokens (issue, expiry, revocation), roles, delegations, SCIM links, the policy in
//! force, findings and exceptions, each change's row (kind, state, requester, times, event
//! count, scheduler deadline) and the grants changes implemented (with their expiry) are each
//! written only together with their event, so each can be rebuilt from the events alone.
//! [`Engine::check_projections`] rebuilds them and names every divergence between what the
//! ledger says and what the tables hold: a row edited, added or removed with plain SQL is found
//! even though every event still verifies. So is kept clear text that no longer matches the
//! seal its event holds (`sensitive`).

use std::collections::BTreeMap;

use writ_core::change::{Change, ChangeId};
use writ_core::event::{ChangeEvent, ChangeEventBody, Event, RegistryEvent};
use writ_core::identity::{Grant, IdentityState};
use writ_core::time::Timestamp;
use writ_store::{ChangeRow, ChangeSummary, GrantUpdate};

use crate::lifecycle::grant_updates;
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
    findings: BTreeMap<String, String>,
    exceptions: BTreeMap<String, String>,
    /// id → (the fold of its events, the time of its last event)
    changes: BTreeMap<ChangeId, (Change, Timestamp)>,
    /// "identity target:entitlement" → grant
    grants: BTreeMap<String, Grant>,
    /// Every seal the events hold, to check kept clear text against.
    seals: Vec<String>,
}

fn change_row(row: &ChangeRow) -> String {
    let summary = &row.summary;
    format!(
        "{} {}, requested by {} at {}, updated {}, {} events, due {}",
        summary.kind.as_str(),
        summary.state,
        summary.requester,
        summary.created_at.to_rfc3339(),
        summary.updated_at.to_rfc3339(),
        row.seq,
        row.due_at.map_or_else(|| "never".to_owned(), |d| d.to_rfc3339()),
    )
}

/// The row the ledger says a change has: its fold, and the time of its last event.
fn expected_change_row(change: &Change, updated_at: Timestamp) -> ChangeRow {
    ChangeRow {
        summary: ChangeSummary {
            id: change.id.clone(),
            kind: change.kind,
            state: change.state,
            requester: change.requester.clone(),
            created_at: change.created_at,
            updated_at,
        },
        seq: change.seq,
        due_at: change.next_deadline(),
    }
}

fn grant_key(grant: &Grant) -> String {
    format!("{} {}", grant.identity, grant.entitlement)
}

fn grant_row(grant: &Grant) -> String {
    format!(
        "by {} at {}, expires {}",
        grant.change,
        grant.granted_at.to_rfc3339(),
        grant.expires_at.map_or_else(|| "never".to_owned(), |e| e.to_rfc3339())
    )
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
            RegistryEvent::Finding { finding, .. } => {
                self.findings.insert(finding.id.clone(), format!("{finding:?}"));
            }
            RegistryEvent::Exception { exception, .. } => {
                self.exceptions.insert(exception.id.to_string(), format!("{exception:?}"));
            }
            RegistryEvent::Delivery { .. }
            | RegistryEvent::DeliveryRefused { .. }
            | RegistryEvent::RefusalsCounted { .. } => {}
        }
    }

    /// Folds one change event into its change, and applies the grant updates its commit made:
    /// an implementation's outcomes (as `lifecycle::grant_updates` decides them), and an expiry
    /// change's removals once it is verified.
    fn apply_change(&mut self, event: &ChangeEvent) {
        let before = self.changes.remove(&event.change);
        let Ok(after) = writ_core::machine::evolve(before.as_ref().map(|(c, _)| c.clone()), event) else {
            // An event its change cannot take is the ledger check's to report; keep the fold.
            if let Some(before) = before {
                self.changes.insert(event.change.clone(), before);
            }
            return;
        };
        let updates = match (&event.body, before.as_ref()) {
            (
                ChangeEventBody::Implemented { outcomes } | ChangeEventBody::ExecutionFailed { outcomes, .. },
                Some((change, _)),
            ) => grant_updates(change, outcomes, event.at),
            (ChangeEventBody::Verified { .. }, Some((change, _))) if change.origin.is_some() => change
                .ops
                .iter()
                .map(|op| GrantUpdate::Remove {
                    identity: op.identity.clone(),
                    entitlement: op.entitlement.clone(),
                })
                .collect(),
            _ => Vec::new(),
        };
        for update in updates {
            match update {
                GrantUpdate::Upsert(grant) => {
                    self.grants.insert(grant_key(&grant), grant);
                }
                GrantUpdate::Remove { identity, entitlement } => {
                    self.grants.remove(&format!("{identity} {entitlement}"));
                }
            }
        }
        self.changes.insert(event.change.clone(), (after, event.at));
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
                // An undecodable event is the ledger check's to report (`writ ledger verify`),
                // not a projection's.
                let seals = std::cell::RefCell::new(Vec::new());
                let collect = |seal: &str| {
                    seals.borrow_mut().push(seal.to_owned());
                    None
                };
                match writ_ledger::record::decode(&row.bytes, &collect) {
                    Ok(Event::Registry(event)) => expected.apply(&event),
                    Ok(Event::Change(event)) => expected.apply_change(&event),
                    Err(_) => {}
                }
                expected.seals.append(&mut seals.into_inner());
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
        // The hash of the files that would be put in force, not only the hash column: files
        // edited behind an unchanged hash are a divergence too.
        let policy = store
            .policy(None)?
            .map(|(hash, files)| {
                let actual = crate::policy::compile_stored(&hash, &files)
                    .map_or_else(|_| format!("files that do not hash to {hash}"), |p| p.hash().to_owned());
                ("in force".to_owned(), actual)
            })
            .into_iter()
            .collect();
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
        let findings = store.findings(None)?.into_iter().map(|f| (f.id.clone(), format!("{f:?}"))).collect();
        compare("findings", &expected.findings, &findings, &mut out);
        let exceptions =
            store.exceptions(None)?.into_iter().map(|e| (e.id.to_string(), format!("{e:?}"))).collect();
        compare("exceptions", &expected.exceptions, &exceptions, &mut out);
        let changes =
            store.change_rows()?.iter().map(|row| (row.summary.id.to_string(), change_row(row))).collect();
        let expected_changes = expected
            .changes
            .iter()
            .map(|(id, (change, updated))| {
                (id.to_string(), change_row(&expected_change_row(change, *updated)))
            })
            .collect();
        compare("changes", &expected_changes, &changes, &mut out);
        let grants = store.all_grants()?.iter().map(|g| (grant_key(g), grant_row(g))).collect();
        let expected_grants = expected.grants.iter().map(|(k, g)| (k.clone(), grant_row(g))).collect();
        compare("grants", &expected_grants, &grants, &mut out);
        self.check_sealed(&expected.seals, &mut out)?;
        Ok(out)
    }
}

impl Engine {
    /// Checks every kept clear text against the seal its events hold: text replaced in the
    /// `sensitive` table no longer matches and is named (the value itself is not shown).
    fn check_sealed(&self, seals: &[String], out: &mut Vec<Divergence>) -> Result<()> {
        let Some(key) = self.hmac.as_deref() else {
            if !seals.is_empty() {
                out.push(Divergence {
                    table: "sensitive",
                    key: "*".to_owned(),
                    expected: "kept clear text checked against its seal".to_owned(),
                    found: "no HMAC key to check it with".to_owned(),
                });
            }
            return Ok(());
        };
        let mut wanted: Vec<String> = seals.to_vec();
        wanted.sort();
        wanted.dedup();
        for chunk in wanted.chunks(PAGE) {
            for (seal, value) in self.store.sensitive_many(chunk)? {
                if !key.check(&seal, &value) {
                    out.push(Divergence {
                        table: "sensitive",
                        key: seal,
                        expected: "the clear text its seal commits to".to_owned(),
                        found: format!("{} characters of other text", value.chars().count()),
                    });
                }
            }
        }
        Ok(())
    }
}
