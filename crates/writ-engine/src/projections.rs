//! The tables as projections of the ledger. Identities (and their state), targets and their
//! settings, tokens (issue, expiry, revocation), roles, delegations, SCIM links, the policy in
//! force, findings and exceptions, each change's row (kind, state, requester, times, event
//! count, scheduler deadline) and the grants changes implemented (with their expiry) are each
//! written only together with their event, so each can be rebuilt from the events alone.
//! [`Engine::check_projections`] rebuilds them and names every divergence between what the
//! ledger says and what the tables hold: a row edited, added or removed with plain SQL is found
//! even though every event still verifies. So is kept clear text that no longer matches the
//! seal its event holds (`sensitive`). [`Engine::repair_projections`] puts every diverged row
//! back from the ledger, recorded as one `ledger.projections_repaired` event.

use std::collections::{BTreeMap, BTreeSet};

use writ_core::access::{Delegation, Role, TokenInfo};
use writ_core::change::{Change, ChangeId};
use writ_core::event::{ChangeEvent, ChangeEventBody, Event, RegistryEvent};
use writ_core::exception::Exception;
use writ_core::finding::{Finding, FindingState};
use writ_core::identity::{Actor, Grant, Identity, IdentityState, Target};
use writ_core::name::{IdentityName, TargetName};
use writ_core::time::Timestamp;
use writ_store::{ChangeRow, Fix, GrantUpdate};

use crate::lifecycle::grant_updates;
use crate::{Engine, EngineError, Result};

/// Events read per page while rebuilding.
const PAGE: usize = 1000;

/// How much of the log a check reads: all of it, or what was appended since the last check.
#[derive(Clone, Copy)]
enum Mode {
    Full,
    Incremental,
}

/// The fold of the log as far as the last incremental check read it.
#[derive(Default)]
pub struct Cache(std::sync::Mutex<Option<(u64, Box<Expected>)>>);

/// Surveys taken before giving up on a moment when no write lands in between.
const SURVEY_ATTEMPTS: usize = 10;

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

/// What `writ ledger repair --projections` did: the rows it put back (and the index of the
/// event recording them), and what it could not put back from the ledger alone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Repair {
    pub repaired: Vec<Divergence>,
    pub index: Option<u64>,
    pub remaining: Vec<Divergence>,
}

type Token = (TokenInfo, Option<Timestamp>);

/// Every projection as the ledger's events build it, typed, keyed as divergences name them.
#[derive(Default)]
struct Expected {
    identities: BTreeMap<String, Identity>,
    targets: BTreeMap<String, Target>,
    tokens: BTreeMap<String, Token>,
    roles: BTreeMap<String, (IdentityName, Role)>,
    delegations: BTreeMap<String, Delegation>,
    scim_links: BTreeMap<String, (IdentityName, String)>,
    /// Every policy hash loaded, and the one in force (the last loaded).
    policies_loaded: BTreeSet<String>,
    policy: Option<String>,
    findings: BTreeMap<String, Finding>,
    /// "target account" → (target, account, last use)
    usage: BTreeMap<String, (TargetName, String, Timestamp)>,
    exceptions: BTreeMap<String, Exception>,
    transfers: BTreeMap<String, writ_core::transfer::Transfer>,
    /// id → (the fold of its events, the time of its last event)
    changes: BTreeMap<ChangeId, (Change, Timestamp)>,
    /// "identity target:entitlement" → grant
    grants: BTreeMap<String, Grant>,
    /// Every seal the events hold, to check kept clear text against.
    seals: Vec<String>,
}

fn role_key(identity: &IdentityName, role: Role) -> String {
    format!("{identity} {role}")
}

fn delegation_key(principal: &IdentityName, delegate: &IdentityName) -> String {
    format!("{principal} → {delegate}")
}

fn grant_key(grant: &Grant) -> String {
    format!("{} {}", grant.identity, grant.entitlement)
}

fn time(at: Option<Timestamp>, none: &str) -> String {
    at.map_or_else(|| none.to_owned(), |t| t.to_rfc3339())
}

fn identity_row(i: &Identity) -> String {
    let (owner, vendor) = (i.owner.as_ref().map(IdentityName::as_str), i.vendor.as_ref().map(|v| v.as_str()));
    format!(
        "kind {}, owner {}, vendor {}, {}",
        i.kind.as_str(),
        owner.unwrap_or("-"),
        vendor.unwrap_or("-"),
        i.state
    )
}

fn target_row(t: &Target) -> String {
    let settings: Vec<String> = t.settings.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{} [{}]", t.connector.as_str(), settings.join(", "))
}

fn token_row((info, revoked): &Token) -> String {
    format!(
        "of {} ({:?}), expires {}, revoked {}",
        info.identity,
        info.label,
        info.expires_at.to_rfc3339(),
        time(*revoked, "no")
    )
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
        time(row.due_at, "never"),
    )
}

/// The row the ledger says a change has: its fold, and the time of its last event.
fn expected_change_row(change: &Change, updated_at: Timestamp) -> ChangeRow {
    ChangeRow {
        summary: crate::lifecycle::summary_of(change, updated_at),
        seq: change.seq,
        due_at: change.next_deadline(),
    }
}

fn grant_row(grant: &Grant) -> String {
    format!(
        "by {} at {}, expires {}",
        grant.change,
        grant.granted_at.to_rfc3339(),
        time(grant.expires_at, "never")
    )
}

impl Expected {
    fn apply(&mut self, event: &RegistryEvent) {
        match event {
            RegistryEvent::IdentityAdded { identity, .. } => {
                let identity = Identity { state: IdentityState::Active, ..identity.clone() };
                self.identities.insert(identity.name.to_string(), identity);
            }
            RegistryEvent::IdentityState { identity, to, tokens_revoked, at, .. } => {
                if let Some(row) = self.identities.get_mut(identity.as_str()) {
                    row.state = *to;
                }
                for id in tokens_revoked {
                    if let Some(row) = self.tokens.get_mut(id) {
                        row.1 = Some(*at);
                    }
                }
            }
            RegistryEvent::TargetAdded { target, .. } => {
                self.targets.insert(target.name.to_string(), target.clone());
            }
            RegistryEvent::TokenIssued { token, .. } => {
                self.tokens.insert(token.id.clone(), (token.clone(), None));
            }
            RegistryEvent::TokenRevoked { id, at, .. } => {
                if let Some(row) = self.tokens.get_mut(id) {
                    row.1 = Some(*at);
                }
            }
            RegistryEvent::RoleGranted { identity, role, .. } => {
                self.roles.insert(role_key(identity, *role), (identity.clone(), *role));
            }
            RegistryEvent::RoleRevoked { identity, role, .. } => {
                self.roles.remove(&role_key(identity, *role));
            }
            RegistryEvent::DelegationGranted { delegation: d, .. } => {
                self.delegations.insert(delegation_key(&d.principal, &d.delegate), d.clone());
            }
            RegistryEvent::DelegationRevoked { principal, delegate, .. } => {
                self.delegations.remove(&delegation_key(principal, delegate));
            }
            RegistryEvent::ScimLinked { identity, external_id, .. } => {
                self.scim_links.insert(identity.to_string(), (identity.clone(), external_id.clone()));
            }
            RegistryEvent::PolicyLoaded { hash, .. } => {
                self.policies_loaded.insert(hash.clone());
                self.policy = Some(hash.clone());
            }
            RegistryEvent::Finding { finding, first, .. } => {
                let mut finding = finding.clone();
                // Every move to open is a sighting; excepting and resolving are not.
                if !*first
                    && finding.state != FindingState::Open
                    && let Some(before) = self.findings.get(&finding.id)
                {
                    finding.last_seen = before.last_seen;
                }
                self.findings.insert(finding.id.clone(), finding);
            }
            RegistryEvent::UsageReported { target, entries, .. } => {
                for (account, at) in entries {
                    let row = self.usage.entry(format!("{target} {account}")).or_insert((
                        target.clone(),
                        account.clone(),
                        *at,
                    ));
                    row.2 = row.2.max(*at);
                }
            }
            RegistryEvent::FindingRemediation { finding, .. }
            | RegistryEvent::FindingChanged { finding, .. } => {
                let mut finding = finding.clone();
                if let Some(before) = self.findings.get(&finding.id) {
                    finding.last_seen = before.last_seen;
                }
                self.findings.insert(finding.id.clone(), finding);
            }
            RegistryEvent::Reconciled { run, .. } => {
                let evidence: String = run.snapshot.iter().map(|b| format!("{b:02x}")).collect();
                for id in &run.seen {
                    if let Some(finding) = self.findings.get_mut(id) {
                        finding.last_seen = run.at;
                        finding.evidence = Some(evidence.clone());
                    }
                }
            }
            RegistryEvent::Exception { exception, .. } => {
                self.exceptions.insert(exception.id.to_string(), (**exception).clone());
            }
            RegistryEvent::Transfer { transfer, supersedes, .. } => {
                if let Some(old) = supersedes.as_ref().and_then(|id| self.transfers.get_mut(id.as_str())) {
                    *old = old.superseded(&transfer.requested_by, transfer.requested_at);
                }
                if transfer.state == writ_core::transfer::TransferState::Accepted
                    && let Some(row) = self.identities.get_mut(transfer.identity.as_str())
                {
                    row.owner = Some(transfer.to.clone());
                }
                self.transfers.insert(transfer.id.to_string(), (**transfer).clone());
            }
            RegistryEvent::Delivery { .. }
            | RegistryEvent::DeliveryRefused { .. }
            | RegistryEvent::RefusalsCounted { .. }
            | RegistryEvent::ProjectionsRepaired { .. }
            | RegistryEvent::ErasureRequested { .. }
            | RegistryEvent::ErasureApproved { .. }
            | RegistryEvent::LedgerKey { .. } => {}
        }
    }

    /// Folds one change event into its change, and applies the grant updates its commit made:
    /// an implementation's outcomes (as `lifecycle::grant_updates` decides them), and an expiry
    /// change's removals once it is verified.
    fn apply_change(&mut self, event: &ChangeEvent) {
        let before = self.changes.remove(&event.change).map(|(change, _)| change);
        let updates = match (&event.body, before.as_ref()) {
            (
                ChangeEventBody::Implemented { outcomes }
                | ChangeEventBody::ExecutionFailed { outcomes, .. }
                | ChangeEventBody::AttemptRecovered { outcomes, .. },
                Some(change),
            ) => grant_updates(change, outcomes, event.at),
            (ChangeEventBody::Verified { .. }, Some(change)) if change.origin.is_some() => change
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
        // An event its change cannot take is the ledger check's to report (`load` refuses the
        // change too); the fold stops there.
        if let Ok(after) = writ_core::machine::evolve(before, event) {
            self.changes.insert(event.change.clone(), (after, event.at));
        }
    }
}

/// What comparing the tables with the ledger found: each divergence, and the fix for those the
/// ledger alone can put back.
#[derive(Default)]
struct Survey {
    divergences: Vec<Divergence>,
    fixes: Vec<Fix>,
}

impl Survey {
    /// Compares one table, row by row, by the text `render` gives each row; `fix` builds the
    /// fix that makes a row what the ledger says (`None`: the ledger has no such row).
    fn table<T>(
        &mut self,
        table: &'static str,
        expected: &BTreeMap<String, T>,
        found: &BTreeMap<String, T>,
        render: impl Fn(&T) -> String,
        fix: impl Fn(&str, Option<&T>, Option<&T>) -> Option<Fix>,
    ) {
        let absent = || "absent".to_owned();
        for key in expected.keys().chain(found.keys().filter(|k| !expected.contains_key(*k))) {
            let (want, have) = (expected.get(key), found.get(key));
            let (want_text, have_text) = (want.map(&render), have.map(&render));
            if want_text != have_text {
                self.divergences.push(Divergence {
                    table,
                    key: key.clone(),
                    expected: want_text.unwrap_or_else(absent),
                    found: have_text.unwrap_or_else(absent),
                });
                self.fixes.extend(fix(key, want, have));
            }
        }
    }
}

fn keyed<T>(rows: impl IntoIterator<Item = T>, key: impl Fn(&T) -> String) -> BTreeMap<String, T> {
    rows.into_iter().map(|row| (key(&row), row)).collect()
}

impl Engine {
    /// Rebuilds the tables from the ledger's events and names every divergence, in table then
    /// key order. Empty when the tables are what the ledger says.
    ///
    /// Every table write appends an event in the same transaction, so a survey during which the
    /// log did not grow saw the tables and the events at one point in time. One that raced a
    /// write is taken again; under writes that never pause, only what every attempt found is
    /// reported (a real divergence stays, a write in flight does not).
    pub fn check_projections(&self) -> Result<Vec<Divergence>> {
        self.checked(Mode::Full)
    }

    /// [`Engine::check_projections`] for a long-running process: the events are folded once
    /// and only those appended since the last check are read again (the tables are compared
    /// whole every time); kept clear text is checked for the new events' seals only (every
    /// reader checks it again before showing it). `ledger verify` does the full check.
    pub fn check_projections_incremental(&self) -> Result<Vec<Divergence>> {
        self.checked(Mode::Incremental)
    }

    fn checked(&self, mode: Mode) -> Result<Vec<Divergence>> {
        let mut persistent: Option<Vec<Divergence>> = None;
        for _ in 0..SURVEY_ATTEMPTS {
            let (survey, quiet) = self.quiet_survey(mode)?;
            if quiet {
                return Ok(survey.divergences);
            }
            persistent = Some(match persistent {
                None => survey.divergences,
                Some(before) => before.into_iter().filter(|d| survey.divergences.contains(d)).collect(),
            });
        }
        Ok(persistent.unwrap_or_default())
    }

    /// A survey, and whether the log stayed the same size while it ran.
    fn quiet_survey(&self, mode: Mode) -> Result<(Survey, bool)> {
        let before = self.store.event_count()?;
        let survey = self.survey(mode)?;
        Ok((survey, self.store.event_count()? == before))
    }

    /// Puts every diverged row back to what the ledger says, in one transaction with a
    /// `ledger.projections_repaired` event naming each row, then checks again. What the ledger
    /// alone cannot restore (a policy whose files were changed; a token's secret hash) is left
    /// and returned in `remaining`. Nothing is recorded when nothing diverged.
    pub fn repair_projections(&self, actor: Actor) -> Result<Repair> {
        self.acting(&actor)?;
        let (survey, quiet) = self.quiet_survey(Mode::Full)?;
        let count = self.store.event_count()?;
        if !quiet {
            return Err(writ_store::StoreError::Conflict(
                "the log grew while the tables were compared with it; run the repair again".into(),
            )
            .into());
        }
        if survey.divergences.is_empty() {
            return Ok(Repair { repaired: Vec::new(), index: None, remaining: Vec::new() });
        }
        // Rows others refer to are removed last and written first.
        let rank = |fix: &Fix| match fix {
            Fix::Identity(_, None) => 2,
            Fix::Target(_, None) | Fix::Change(_, None) => 1,
            Fix::Identity(_, Some(_)) => -2,
            Fix::Target(_, Some(_)) | Fix::Change(_, Some(_)) => -1,
            _ => 0,
        };
        let mut fixes = survey.fixes;
        fixes.sort_by_key(|fix| -rank(fix));
        let named: Vec<String> =
            survey.divergences.iter().map(|d| format!("{} {}", d.table, d.key)).collect();
        let event = RegistryEvent::ProjectionsRepaired { actor, repaired: named, at: self.clock.now() };
        // The store refuses if anything was recorded since the survey: a fix computed before a
        // newer write must not undo it.
        let index = self.store.repair(&fixes, &crate::registry_event(&event, self.hmac()?), count)?;
        tracing::warn!(target: "writ::ledger", rows = survey.divergences.len(), index, "projections repaired from the ledger");
        let remaining = self.check_projections()?;
        let repaired = survey.divergences.into_iter().filter(|d| !remaining.contains(d)).collect();
        Ok(Repair { repaired, index: Some(index), remaining })
    }

    fn survey(&self, mode: Mode) -> Result<Survey> {
        match mode {
            Mode::Full => {
                let mut expected = Expected::default();
                self.fold(&mut expected, 0)?;
                self.compare(&expected)
            }
            Mode::Incremental => {
                let mut cache = self.projection_cache.0.lock().map_err(|_| {
                    EngineError::Store(writ_store::StoreError::Other("projection cache lock poisoned".into()))
                })?;
                let (next, expected) = cache.get_or_insert_with(|| (0, Box::default()));
                expected.seals.clear();
                *next = self.fold(expected, *next)?;
                self.compare(expected)
            }
        }
    }

    fn compare(&self, expected: &Expected) -> Result<Survey> {
        let store = &self.store;
        let mut survey = Survey::default();
        let identities = keyed(store.identities()?, |i| i.name.to_string());
        survey.table("identities", &expected.identities, &identities, identity_row, |_, want, have| {
            let name = want.or(have).map(|i| i.name.clone())?;
            Some(Fix::Identity(name, want.cloned()))
        });
        let targets = keyed(store.targets()?, |t| t.name.to_string());
        survey.table("targets", &expected.targets, &targets, target_row, |_, want, have| {
            let name = want.or(have).map(|t| t.name.clone())?;
            Some(Fix::Target(name, want.cloned()))
        });
        let tokens =
            keyed(store.tokens()?.into_iter().map(|t| (t.info, t.revoked_at)), |(info, _)| info.id.clone());
        survey.table("tokens", &expected.tokens, &tokens, token_row, |id, want, _| {
            Some(Fix::Token(id.to_owned(), want.cloned()))
        });
        let roles = keyed(store.role_assignments()?, |(identity, role)| role_key(identity, *role));
        survey.table(
            "roles",
            &expected.roles,
            &roles,
            |_| "assigned".to_owned(),
            |_, want, have| {
                let (identity, role) = want.or(have)?.clone();
                Some(Fix::Role(identity, role, want.is_some()))
            },
        );
        let delegations = keyed(store.delegations()?, |d| delegation_key(&d.principal, &d.delegate));
        survey.table(
            "delegations",
            &expected.delegations,
            &delegations,
            |d| format!("until {}", d.until.to_rfc3339()),
            |_, want, have| {
                let d = want.or(have)?;
                Some(Fix::Delegation(d.principal.clone(), d.delegate.clone(), want.cloned()))
            },
        );
        let links = keyed(store.scim_links()?, |(identity, _)| identity.to_string());
        survey.table(
            "scim_links",
            &expected.scim_links,
            &links,
            |(_, external_id)| format!("externalId {external_id:?}"),
            |_, want, have| {
                let identity = want.or(have)?.0.clone();
                Some(Fix::ScimLink(identity, want.map(|(_, e)| e.clone())))
            },
        );
        self.survey_policy(expected, &mut survey)?;
        let findings = keyed(store.findings(None)?, |f| f.id.clone());
        survey.table(
            "findings",
            &expected.findings,
            &findings,
            |f| format!("{f:?}"),
            |id, want, _| Some(Fix::Finding(id.to_owned(), want.cloned())),
        );
        let usage = keyed(store.all_usage()?, |(target, account, _)| format!("{target} {account}"));
        survey.table(
            "usage",
            &expected.usage,
            &usage,
            |(_, _, at)| format!("last used {}", at.to_rfc3339()),
            |_, want, have| {
                let (target, account, _) = want.or(have)?;
                Some(Fix::Usage(target.clone(), account.clone(), want.map(|(_, _, at)| *at)))
            },
        );
        let exceptions = keyed(store.exceptions(None)?, |e| e.id.to_string());
        survey.table(
            "exceptions",
            &expected.exceptions,
            &exceptions,
            |e| format!("{e:?}"),
            |_, want, have| {
                let id = want.or(have)?.id.clone();
                Some(Fix::Exception(id, want.map(|e| (e.clone(), e.next_deadline()))))
            },
        );
        let transfers = keyed(store.transfers(None)?, |t| t.id.to_string());
        survey.table(
            "transfers",
            &expected.transfers,
            &transfers,
            |t| format!("{t:?}"),
            |_, want, have| Some(Fix::Transfer(want.or(have)?.id.clone(), want.cloned())),
        );
        let changes = keyed(store.change_rows()?, |row| row.summary.id.to_string());
        let expected_changes = expected
            .changes
            .iter()
            .map(|(id, (change, updated))| (id.to_string(), expected_change_row(change, *updated)))
            .collect();
        survey.table("changes", &expected_changes, &changes, change_row, |_, want, have| {
            let id = want.or(have)?.summary.id.clone();
            Some(Fix::Change(id, want.cloned()))
        });
        let grants = keyed(store.all_grants()?, grant_key);
        survey.table("grants", &expected.grants, &grants, grant_row, |_, want, have| {
            let g = want.or(have)?;
            Some(Fix::Grant(g.identity.clone(), g.entitlement.clone(), want.cloned()))
        });
        self.check_sealed(&expected.seals, &mut survey)?;
        Ok(survey)
    }

    /// The policy in force: the hash of the files that would be put in force (not only the hash
    /// column, so files edited behind an unchanged hash diverge too) against the last
    /// `policy.loaded`. A stored policy no event loaded is removed by repair; the files of the
    /// one in force can be restored only if a row of it still holds them unchanged.
    fn survey_policy(&self, expected: &Expected, survey: &mut Survey) -> Result<()> {
        let found = self.store.policy(None)?.map(|(hash, files)| {
            crate::policy::compile_stored(&hash, &files)
                .map_or_else(|_| format!("files that do not hash to {hash}"), |p| p.hash().to_owned())
        });
        let want: BTreeMap<String, String> =
            expected.policy.iter().map(|hash| ("in force".to_owned(), hash.clone())).collect();
        let have: BTreeMap<String, String> =
            found.into_iter().map(|hash| ("in force".to_owned(), hash)).collect();
        let restorable = match &expected.policy {
            Some(hash) => match self.store.policy(Some(hash))? {
                Some((stored, files)) => crate::policy::compile_stored(&stored, &files).is_ok(),
                None => false,
            },
            None => true,
        };
        let loaded: Vec<String> = expected.policies_loaded.iter().cloned().collect();
        survey.table("policies", &want, &have, Clone::clone, |_, _, _| {
            restorable.then(|| Fix::Policy { loaded: loaded.clone(), in_force: expected.policy.clone() })
        });
        Ok(())
    }

    /// Replays the events from index `from` on into the projections they build; returns the
    /// index after the last event read.
    fn fold(&self, expected: &mut Expected, from: u64) -> Result<u64> {
        let mut from = from;
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
            if let Some(last) = page.last() {
                from = last.index + 1;
            }
            if page.len() < PAGE {
                return Ok(from);
            }
        }
    }

    /// Checks every kept clear text against the seal its events hold: text replaced in the
    /// `sensitive` table no longer matches and is named (the value itself is not shown); repair
    /// erases it.
    fn check_sealed(&self, seals: &[String], survey: &mut Survey) -> Result<()> {
        let Some(key) = self.hmac.as_deref() else {
            if !seals.is_empty() {
                survey.divergences.push(Divergence {
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
                    survey.divergences.push(Divergence {
                        table: "sensitive",
                        key: seal.clone(),
                        expected: "the clear text its seal commits to".to_owned(),
                        found: format!("{} characters of other text", value.chars().count()),
                    });
                    survey.fixes.push(Fix::Sensitive(seal));
                }
            }
        }
        Ok(())
    }
}
