//! Reconciliation in the engine: reads everything a target holds (`Connector::holdings`),
//! merges it with the grants Writ implemented there (both sorted: one pass, no lookups per
//! row), raises a finding for each problem and resolves the ones a complete observation no
//! longer shows, and records the run with the observed snapshot as evidence, all in one
//! transaction.
//!
//! An incomplete observation (a target down, a page that failed) raises what it saw but never
//! `access.missing` (what it did not list may be there) and resolves nothing.

use std::collections::BTreeMap;

use writ_connector::{Credential, Holdings};
use writ_core::change::ChangeId;
use writ_core::event::RegistryEvent;
use writ_core::finding::{Finding, FindingState};
use writ_core::identity::{Actor, Identity, IdentityState};
use writ_core::name::{EntitlementName, EntitlementRef, IdentityName, TargetName};
use writ_core::reconcile::{REGISTRY_SCOPE, Run, Situation, Tally, merge, situation, target_scope};
use writ_core::time::Timestamp;
use writ_store::{EvidenceBlob, GrantRow, NewEvent, ReconcileCommit};

use crate::findings::finding_id;
use crate::{Engine, Result, registry_event};

/// The finding a write on a target that names no Writ change raises. It records an event, not
/// a state: once resolved it stays resolved, and a run that no longer lists it (it left the
/// connector's window) does not resolve it.
pub const TELEMETRY: &str = "change.unmatched_telemetry";

/// The most entries one usage report may carry.
pub const MAX_USAGE_ENTRIES: usize = 1000;

/// The finding for access not used within the policy's `stale_after`.
pub const STALE: &str = "access.stale";

/// The media type of an observed snapshot: JSON Lines, one array per row.
pub const SNAPSHOT_MEDIA_TYPE: &str = "application/jsonl";

/// What one reconciliation found and did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// `target:NAME` or `registry`.
    pub scope: String,
    pub at: Timestamp,
    /// (account, entitlement) pairs per situation. `missing` is not assessed (zero) when the
    /// observation is partial.
    pub tally: Tally,
    /// Accounts on the target that are no registered identity (`unmatched`, with or without
    /// entitlements).
    pub unmatched_accounts: u64,
    pub credentials: u64,
    /// Why the observation was incomplete; empty when complete.
    pub partial: Vec<String>,
    /// Whether the target gave a usage signal ("no usage signal" otherwise: nothing stale is
    /// raised from it).
    pub usage_signal: bool,
    /// SHA-256 (hex) of the observed snapshot, kept as evidence.
    pub snapshot: String,
    pub opened: Vec<Finding>,
    pub reopened: Vec<Finding>,
    pub resolved: Vec<Finding>,
    /// Findings seen again that were already open (or excepted).
    pub still_open: u64,
    /// The ledger index of the `reconcile.run` event.
    pub index: u64,
}

/// A finding a run wants open: its kind, subject, what to say, and the change it concerns.
struct Wanted {
    kind: &'static str,
    subject: String,
    detail: String,
    change: Option<writ_core::change::ChangeId>,
    privileged: bool,
}

/// The subject of an access finding: `IDENTITY TARGET:ENTITLEMENT`.
pub fn access_subject(account: &str, target: &TargetName, entitlement: &str) -> String {
    format!("{account} {target}:{entitlement}")
}

/// Reads an access finding's subject back: the identity and the entitlement.
pub fn parse_access_subject(subject: &str) -> Option<(IdentityName, EntitlementRef)> {
    let (identity, entitlement) = subject.split_once(' ')?;
    Some((IdentityName::parse(identity).ok()?, EntitlementRef::parse(entitlement).ok()?))
}

impl Engine {
    /// Records the last use of accounts on `target` (a usage feed, or sessions a reconciliation
    /// saw): each account's time moves forward, never back, and never past the report's arrival.
    /// Refused, recording nothing: an unknown target, no entries or more than
    /// [`MAX_USAGE_ENTRIES`], a blank, multi-line or overlong account, a blank source.
    pub fn report_usage(
        &self,
        actor: Actor,
        target: &TargetName,
        source: &str,
        entries: Vec<(String, Timestamp)>,
    ) -> Result<u64> {
        self.target(target)?;
        let source = writ_core::machine::line(source.to_owned(), "usage source")?;
        if entries.is_empty() || entries.len() > MAX_USAGE_ENTRIES {
            return Err(writ_core::Refusal::InvalidValue {
                field: "usage entries",
                input: entries.len().to_string(),
                expected: "1 to 1000 entries",
            }
            .into());
        }
        let now = self.now();
        let mut latest: BTreeMap<String, Timestamp> = BTreeMap::new();
        for (account, at) in entries {
            let account = writ_core::machine::line(account, "account")?;
            if account.chars().count() > 200 {
                return Err(writ_core::Refusal::InvalidValue {
                    field: "account",
                    input: account.chars().take(40).collect(),
                    expected: "at most 200 characters",
                }
                .into());
            }
            // A time ahead of this clock (a skewed source) counts as now: no report can claim a
            // use later than its own arrival.
            let at = at.min(now);
            let slot = latest.entry(account).or_insert(at);
            *slot = (*slot).max(at);
        }
        let entries: Vec<(String, Timestamp)> = latest.into_iter().collect();
        let event = RegistryEvent::UsageReported {
            actor,
            target: target.clone(),
            source,
            entries: entries.clone(),
            at: now,
        };
        Ok(self.store.report_usage(target, &entries, &registry_event(&event, self.hmac()?))?)
    }

    /// Reconciles every registered target, then the registry's owners; a target that cannot be
    /// read gives a partial run, not an error.
    pub fn reconcile_all(&self, actor: Actor) -> Result<Vec<Report>> {
        let mut reports = Vec::new();
        for target in self.store.targets()? {
            reports.push(self.reconcile_target(actor.clone(), &target.name)?);
        }
        reports.push(self.reconcile_registry(actor)?);
        Ok(reports)
    }

    /// Reconciles one target: observes it in full, classifies every (account, entitlement),
    /// raises and resolves findings, and records the run.
    pub fn reconcile_target(&self, actor: Actor, target: &TargetName) -> Result<Report> {
        self.target(target)?;
        let now = self.now();
        let policy = self.policy()?;
        let mut holdings = match self.connector_for(target).and_then(|c| Ok(c.holdings()?)) {
            Ok(holdings) => holdings,
            Err(error) => Holdings {
                partial: vec![format!("the target could not be read: {error}")],
                ..Holdings::default()
            },
        };
        holdings.normalize();
        let complete = holdings.partial.is_empty();
        let identities: BTreeMap<String, Identity> =
            self.store.identities()?.into_iter().map(|i| (i.name.to_string(), i)).collect();

        // Use seen on the target now is kept (a session is a momentary signal), then every
        // account's last use, from the target and the usage feed, decides what is stale.
        if let Some(native) = &holdings.usage {
            let stored: BTreeMap<String, Timestamp> = self.store.usage(target)?.into_iter().collect();
            let newer: Vec<(String, Timestamp)> = native
                .iter()
                .filter(|(account, at)| stored.get(account).is_none_or(|known| known < at))
                // An account name no report may carry (too long, several lines) gives no signal.
                .filter(|(account, _)| {
                    account.chars().count() <= 200
                        && writ_core::machine::line(account.clone(), "account").is_ok()
                })
                .cloned()
                .collect();
            for batch in newer.chunks(MAX_USAGE_ENTRIES) {
                self.report_usage(actor.clone(), target, "reconciliation", batch.to_vec())?;
            }
        }
        let usage: BTreeMap<String, Timestamp> = self.store.usage(target)?.into_iter().collect();
        let usage_signal = holdings.usage.is_some() || !usage.is_empty();
        let stale_before = policy
            .rules()
            .stale_after
            .filter(|_| usage_signal)
            .map(|after| Timestamp::from_millis(now.as_millis() - after.as_millis()));
        let mut tally = Tally::default();
        let mut wanted: Vec<Wanted> = Vec::new();
        let mut unmatched: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        let held = holdings.held.iter().map(|(a, e)| (Key::Held(a.as_str(), e.as_str()), ()));
        let store: &dyn writ_store::Store = &*self.store;
        let merged = stream_grants(store, target, GRANT_PAGE, |approved| {
            merge(approved, held, |key, grant, held| {
                let (account, entitlement) = key.pair();
                let grant = grant.as_ref();
                // Whether the account is registered matters only for what Writ did not approve.
                let registered = grant.is_some() || identities.contains_key(account);
                let Some(found) = situation(grant.map(|g| g.expires_at), held.is_some(), registered, now)
                else {
                    return;
                };
                if found == Situation::Missing && !complete {
                    return;
                }
                tally.add(found);
                if found == Situation::Linked {
                    let last = || usage.get(account).copied();
                    if let (Some(before), Some(grant)) = (stale_before, grant)
                        && grant.granted_at <= before
                        && last().is_none_or(|at| at <= before)
                    {
                        let last = last();
                        let seen =
                            last.map_or_else(|| "never seen used".to_owned(), |at| format!("last used {at}"));
                        wanted.push(Wanted {
                        kind: STALE,
                        subject: access_subject(account, target, entitlement),
                        detail: format!(
                            "{account} holds {target}:{entitlement} (granted by {} at {}) and was {seen}: \
                             beyond the policy's stale_after; revoke it if it is no longer needed",
                            grant.change, grant.granted_at
                        ),
                        change: ChangeId::parse(&grant.change).ok(),
                        privileged: false,
                    });
                    }
                    return;
                }
                if found == Situation::Unmatched {
                    // Only the target holds it: the key borrows from the holdings.
                    if let Key::Held(account, entitlement) = *key {
                        unmatched.entry(account).or_default().push(entitlement);
                    }
                    return;
                }
                let privileged = policy.rules().classify(&format!("{target}:{entitlement}")).0;
                let subject = access_subject(account, target, entitlement);
                let change = grant.and_then(|g| ChangeId::parse(&g.change).ok());
                let detail = match found {
                    Situation::Unapproved => format!(
                        "{account} holds {target}:{entitlement} on the target with no approved change in Writ \
                     (granted outside Writ, or by a change Writ never saw)"
                    ),
                    Situation::Missing => format!(
                        "{account} should hold {target}:{entitlement} (approved and implemented by {}) but the \
                     target does not have it",
                        grant.map_or_else(String::new, |g| g.change.clone())
                    ),
                    _ => format!(
                        "{account} still holds {target}:{entitlement} after its approved end {} (granted by {})",
                        grant.and_then(|g| g.expires_at).map_or_else(String::new, Timestamp::to_rfc3339),
                        grant.map_or_else(String::new, |g| g.change.clone())
                    ),
                };
                let kind = found.finding_kind().unwrap_or_default();
                wanted.push(Wanted { kind, subject, detail, change, privileged });
            })
        })?;
        merged.map_err(|e| writ_store::StoreError::Corrupt(format!("reconciliation of {target}: {e}")))?;

        for account in &holdings.accounts {
            if !identities.contains_key(account.as_str()) {
                unmatched.entry(account.as_str()).or_default();
            }
        }
        let unmatched_accounts = unmatched.len() as u64;
        for (account, entitlements) in &unmatched {
            if entitlements.is_empty() {
                tally.add(Situation::Unmatched);
            }
            let holds = if entitlements.is_empty() {
                "holds nothing Writ manages".to_owned()
            } else {
                format!(
                    "holds {}",
                    entitlements.iter().map(|e| format!("{target}:{e}")).collect::<Vec<_>>().join(", ")
                )
            };
            wanted.push(Wanted {
                kind: "identity.unmatched_account",
                subject: format!("{target} account {account}"),
                detail: format!(
                    "account {account} on {target} is no identity registered in Writ and {holds}: register its \
                     owner and the identity, or decommission the account"
                ),
                change: None,
                privileged: false,
            });
        }
        wanted.extend(long_lived(&policy, target, &holdings.credentials, now));
        // Writes on the target since Writ manages it that name no change: made outside Writ.
        // A target's clock may count whole seconds (git): a write in the second the target was
        // registered counts only if that second began after it.
        let since = self.target(target)?.created_at;
        for write in holdings.unstamped.iter().filter(|w| w.at >= since) {
            wanted.push(Wanted {
                kind: TELEMETRY,
                subject: format!("{target} {}", write.reference),
                detail: format!(
                    "{} on {target} at {} names no Writ change ({}): review it, and revert it through a change \
                     or resolve this with what it was",
                    write.reference,
                    write.at.to_rfc3339(),
                    write.summary.chars().take(200).collect::<String>()
                ),
                change: None,
                privileged: false,
            });
        }

        let snapshot = snapshot(target, &holdings);
        let run = Run {
            scope: target_scope(target),
            at: now,
            snapshot: snapshot.sha256,
            snapshot_size: snapshot.bytes.len() as u64,
            tally,
            partial: holdings.partial.clone(),
            usage_signal,
            seen: Vec::new(),
        };
        let mut report = self.record_run(actor, run, snapshot, wanted, complete)?;
        if !complete {
            // Reconciliation before automation: what acts on this target waits for a person.
            let reason =
                format!("reconciliation could not read {target} in full: {}", holdings.partial.join("; "));
            self.pause_automation(&target_scope(target), reason)?;
        }
        report.unmatched_accounts = unmatched_accounts;
        report.credentials = holdings.credentials.len() as u64;
        tracing::info!(
            target: "writ::reconcile",
            scope = %report.scope,
            partial = !report.partial.is_empty(),
            opened = report.opened.len(),
            resolved = report.resolved.len(),
            "reconciled"
        );
        Ok(report)
    }

    /// The registry's own checks: every non-human identity whose owner is offboarded, disabled,
    /// absent or not a person is `nhi.orphaned`.
    pub fn reconcile_registry(&self, actor: Actor) -> Result<Report> {
        // The identity provider's feed is the registry's source: one silent too long pauses it.
        self.check_feed()?;
        let now = self.now();
        let identities = self.store.identities()?;
        let by_name: BTreeMap<&str, &Identity> = identities.iter().map(|i| (i.name.as_str(), i)).collect();
        let mut wanted = Vec::new();
        let mut lines = vec![serde_json::json!(["scope", REGISTRY_SCOPE]).to_string()];
        for identity in identities.iter().filter(|i| i.kind.is_nhi() && i.state != IdentityState::Offboarded)
        {
            let owner = identity.owner.as_ref().and_then(|o| by_name.get(o.as_str()));
            lines.push(
                serde_json::json!([
                    "nhi",
                    identity.name.as_str(),
                    identity.owner.as_ref().map(IdentityName::as_str),
                    owner.map(|o| o.state.as_str())
                ])
                .to_string(),
            );
            let why = match (identity.owner.as_ref(), owner) {
                (None, _) => "has no owner".to_owned(),
                (Some(name), None) => format!("is owned by {name}, who is not a registered identity"),
                (Some(name), Some(o)) if o.kind.is_nhi() => {
                    format!("is owned by {name}, who is not a person")
                }
                (Some(name), Some(o)) if o.state != IdentityState::Active => {
                    format!("is owned by {name}, who is {}", o.state.as_str())
                }
                _ => continue,
            };
            wanted.push(Wanted {
                kind: crate::scim::OWNER_LEFT,
                subject: identity.name.to_string(),
                detail: format!(
                    "{} {} {why}: transfer it to an accountable owner (`writ identity transfer`) or decommission it",
                    identity.kind.as_str(),
                    identity.name
                ),
                change: None,
                privileged: false,
            });
        }
        let bytes = (lines.join("\n") + "\n").into_bytes();
        let snapshot = EvidenceBlob {
            sha256: writ_ledger::sha256(&bytes),
            media_type: SNAPSHOT_MEDIA_TYPE.to_owned(),
            bytes,
        };
        let run = Run {
            scope: REGISTRY_SCOPE.to_owned(),
            at: now,
            snapshot: snapshot.sha256,
            snapshot_size: snapshot.bytes.len() as u64,
            tally: Tally::default(),
            partial: Vec::new(),
            usage_signal: false,
            seen: Vec::new(),
        };
        self.record_run(actor, run, snapshot, wanted, true)
    }

    /// Turns what a run wants open into findings opened, reopened, seen and (for a complete
    /// run) resolved, and commits them with the snapshot and the run's event.
    fn record_run(
        &self,
        actor: Actor,
        mut run: Run,
        snapshot: EvidenceBlob,
        wanted: Vec<Wanted>,
        complete: bool,
    ) -> Result<Report> {
        let now = run.at;
        let policy = self.policy()?;
        let hmac = self.hmac()?;
        let evidence: String = snapshot.sha256.iter().map(|b| format!("{b:02x}")).collect();
        let mut existing: BTreeMap<String, Finding> =
            self.store.findings_in_scope(&run.scope)?.into_iter().map(|f| (f.id.clone(), f)).collect();
        let system = Actor::System(writ_core::identity::SystemActor::Scheduler);
        let (mut opened, mut updated, mut seen) = (Vec::new(), Vec::new(), Vec::new());
        let mut report_opened = Vec::new();
        let mut report_reopened = Vec::new();
        let mut still_open = 0u64;
        let mut wanted_ids = std::collections::BTreeSet::new();
        for want in wanted {
            let id = finding_id(want.kind, &want.subject);
            if !wanted_ids.insert(id.clone()) {
                continue;
            }
            let rule = policy.rules().finding_rule(want.kind);
            let severity = if want.kind == "access.unapproved" && want.privileged {
                rule.severity.max(writ_core::finding::Severity::High)
            } else {
                rule.severity
            };
            let current = match existing.remove(&id) {
                Some(found) => Some(found),
                None => self.store.finding(&id)?,
            };
            match current {
                None => {
                    let finding = Finding {
                        change: want.change,
                        severity,
                        controls: rule.controls,
                        scope: Some(run.scope.clone()),
                        evidence: Some(evidence.clone()),
                        ..Finding::new(id, want.kind, &want.subject, want.detail, now)
                    };
                    let event = RegistryEvent::Finding {
                        actor: system.clone(),
                        finding: finding.clone(),
                        first: true,
                        note: format!("raised by reconciliation of {}", run.scope),
                    };
                    let notices = self.finding_notices(&finding)?;
                    opened.push((finding.clone(), NewEvent { notices, ..registry_event(&event, hmac) }));
                    report_opened.push(finding);
                }
                Some(found) if found.state == FindingState::Resolved && found.kind == TELEMETRY => {}
                Some(found) if found.state == FindingState::Resolved => {
                    let finding = Finding {
                        state: FindingState::Open,
                        detail: want.detail,
                        change: want.change.or(found.change.clone()),
                        severity,
                        controls: rule.controls,
                        scope: Some(run.scope.clone()),
                        evidence: Some(evidence.clone()),
                        exception: None,
                        remediation: None,
                        updated_at: now,
                        last_seen: now,
                        ..found
                    };
                    let event = RegistryEvent::Finding {
                        actor: system.clone(),
                        finding: finding.clone(),
                        first: false,
                        note: format!("seen again by reconciliation of {}", run.scope),
                    };
                    updated.push((finding.clone(), FindingState::Resolved, registry_event(&event, hmac)));
                    report_reopened.push(finding);
                }
                Some(found) if found.detail != want.detail => {
                    // Still there, but what it is about moved on (an unmatched account that now
                    // holds something): the finding says what is true now.
                    still_open += 1;
                    let expected = found.state;
                    let finding = Finding {
                        detail: want.detail,
                        evidence: Some(evidence.clone()),
                        updated_at: now,
                        last_seen: now,
                        ..found
                    };
                    let event = RegistryEvent::FindingChanged {
                        actor: system.clone(),
                        finding: finding.clone(),
                        note: format!("seen again, changed, by reconciliation of {}", run.scope),
                    };
                    seen.push(finding.id.clone());
                    updated.push((finding, expected, registry_event(&event, hmac)));
                }
                Some(found) => {
                    still_open += 1;
                    seen.push(found.id);
                }
            }
        }
        let mut report_resolved = Vec::new();
        if complete {
            for found in
                existing.into_values().filter(|f| f.state != FindingState::Resolved && f.kind != TELEMETRY)
            {
                // A finding a change is fixing is resolved by that change's verification.
                if self.remediation_in_flight(&found)? {
                    continue;
                }
                let expected = found.state;
                let finding =
                    Finding { state: FindingState::Resolved, updated_at: now, exception: None, ..found };
                let event = RegistryEvent::Finding {
                    actor: system.clone(),
                    finding: finding.clone(),
                    first: false,
                    note: format!("no longer observed by a complete reconciliation of {}", run.scope),
                };
                updated.push((finding.clone(), expected, registry_event(&event, hmac)));
                report_resolved.push(finding);
            }
        }
        run.seen = opened
            .iter()
            .map(|(f, _): &(Finding, _)| f.id.clone())
            .chain(report_reopened.iter().map(|f| f.id.clone()))
            .chain(seen.iter().cloned())
            .collect();
        run.seen.sort();
        let scope = run.scope.clone();
        let partial = run.partial.clone();
        let (tally, usage_signal) = (run.tally, run.usage_signal);
        let event = RegistryEvent::Reconciled { actor, run: Box::new(run) };
        let commit =
            ReconcileCommit { opened, updated, seen, at: now, snapshot, run: registry_event(&event, hmac) };
        let indices = self.store.record_reconcile(commit)?;
        let mut opened_now = Vec::with_capacity(report_opened.len());
        for finding in report_opened {
            opened_now.push(self.apply_exceptions(finding)?);
        }
        let mut reopened_now = Vec::with_capacity(report_reopened.len());
        for finding in report_reopened {
            reopened_now.push(self.apply_exceptions(finding)?);
        }
        Ok(Report {
            scope,
            at: now,
            tally,
            unmatched_accounts: 0,
            credentials: 0,
            partial,
            usage_signal,
            snapshot: evidence,
            opened: opened_now,
            reopened: reopened_now,
            resolved: report_resolved,
            still_open,
            index: indices.last().copied().unwrap_or_default(),
        })
    }
}

/// `secret.long_lived` for each credential issued with a lifetime beyond its class's
/// `max_ttl`, or issued longer ago than its `max_secret_age`.
fn long_lived(
    policy: &writ_policy::Policy,
    target: &TargetName,
    credentials: &[Credential],
    now: Timestamp,
) -> Vec<Wanted> {
    let mut wanted = Vec::new();
    for credential in credentials {
        let Some(limit) = policy.rules().secret_limit(credential.class) else { continue };
        let lifetime = match (credential.issued_at, credential.expires_at) {
            (Some(issued), Some(expires)) => Some(expires.as_millis() - issued.as_millis()),
            _ => None,
        };
        let age = credential.issued_at.map(|issued| now.as_millis() - issued.as_millis());
        let mut why = Vec::new();
        if let Some(max) = limit.max_ttl {
            match lifetime {
                Some(ms) if ms > max.as_millis() => {
                    why.push(format!("was issued for {} (policy: at most {max})", human_duration(ms)))
                }
                None if credential.expires_at.is_none() => {
                    why.push(format!("never expires (policy: at most {max})"));
                }
                _ => {}
            }
        }
        // The issue time, not the age: a finding's detail stays the same from run to run.
        if let (Some(max), Some(ms), Some(issued)) = (limit.max_secret_age, age, credential.issued_at)
            && ms > max.as_millis()
        {
            why.push(format!("was issued at {} (policy: at most {max} old)", issued.to_rfc3339()));
        }
        if why.is_empty() {
            continue;
        }
        let holder = match (&credential.account, &credential.entitlement) {
            (Some(account), Some(e)) => format!(" held by {account} for {target}:{e}"),
            (Some(account), None) => format!(" held by {account}"),
            (None, Some(e)) => format!(" for {target}:{e}"),
            (None, None) => String::new(),
        };
        let subject = match (&credential.account, &credential.entitlement) {
            (Some(account), Some(e)) => format!(
                "{} {} {}",
                access_subject(account, target, e.as_str()),
                credential.class,
                credential.handle
            ),
            _ => format!("{target} {} {}", credential.class, credential.handle),
        };
        wanted.push(Wanted {
            kind: "secret.long_lived",
            subject,
            detail: format!(
                "{} {}{holder} {}: rotate it",
                credential.class,
                credential.handle,
                why.join(" and ")
            ),
            change: None,
            privileged: false,
        });
    }
    wanted
}

/// A duration in the largest whole unit that fits (days, hours, minutes, seconds).
fn human_duration(ms: i64) -> String {
    let seconds = ms / 1000;
    match seconds {
        s if s >= 86_400 => format!("{}d", s / 86_400),
        s if s >= 3600 => format!("{}h", s / 3600),
        s if s >= 60 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// What Writ approved for one (identity, entitlement) on the target: the grant's change (as
/// stored; parsed only where a finding names it), when it was granted and when it ends.
pub(crate) struct Approved {
    pub change: String,
    pub granted_at: Timestamp,
    pub expires_at: Option<Timestamp>,
}

/// Grants read per page while a target is reconciled.
const GRANT_PAGE: usize = 20_000;

/// What both streams of a reconciliation are ordered by: (identity, entitlement) in byte order,
/// owned for a grant read from the store, borrowed for a holding of the target.
pub(crate) enum Key<'h> {
    Granted(String, String),
    Held(&'h str, &'h str),
}

impl Key<'_> {
    pub(crate) fn pair(&self) -> (&str, &str) {
        match self {
            Key::Granted(identity, entitlement) => (identity, entitlement),
            Key::Held(identity, entitlement) => (identity, entitlement),
        }
    }
}

impl PartialEq for Key<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.pair() == other.pair()
    }
}

impl Eq for Key<'_> {}

impl PartialOrd for Key<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Key<'_> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.pair().cmp(&other.pair())
    }
}

/// Runs `consume` over the grants on `target` in key order, read page by page on another
/// thread while `consume` works: at most a few pages are in memory, whatever the count. A
/// store error ends the stream and is returned.
pub(crate) fn stream_grants<'h, T>(
    store: &dyn writ_store::Store,
    target: &TargetName,
    page_size: usize,
    consume: impl FnOnce(&mut dyn Iterator<Item = (Key<'h>, Approved)>) -> T,
) -> Result<T> {
    let (pages, received) = std::sync::mpsc::sync_channel::<writ_store::Result<Vec<GrantRow>>>(2);
    std::thread::scope(|scope| {
        scope.spawn(move || {
            let mut after: Option<(String, String)> = None;
            loop {
                let page = store.grants_on(
                    target,
                    after.as_ref().map(|(i, e)| (i.as_str(), e.as_str())),
                    GRANT_PAGE,
                );
                let last = page
                    .as_ref()
                    .ok()
                    .and_then(|p| p.last().map(|g| (g.identity.clone(), g.entitlement.clone())));
                let more = page.as_ref().is_ok_and(|p| p.len() == page_size);
                // The consumer stopped early (an unsorted stream): nothing more to read.
                if pages.send(page).is_err() || !more {
                    return;
                }
                after = last;
            }
        });
        let mut failure = None;
        let mut grants = received
            .iter()
            .map_while(|page| match page {
                Ok(page) => Some(page),
                Err(error) => {
                    failure = Some(error);
                    None
                }
            })
            .flatten()
            .map(|g| {
                let approved = Approved {
                    change: g.change,
                    granted_at: Timestamp::from_millis(g.granted_ms),
                    expires_at: g.expires_ms.map(Timestamp::from_millis),
                };
                (Key::Granted(g.identity, g.entitlement), approved)
            });
        let out = consume(&mut grants);
        drop(grants);
        match failure {
            Some(error) => Err(error.into()),
            None => Ok(out),
        }
    })
}

/// The observed snapshot as JSON Lines: a header, then every row the run classified, each a
/// JSON array of strings (or null).
pub(crate) fn snapshot(target: &TargetName, holdings: &Holdings) -> EvidenceBlob {
    let mut out = String::with_capacity(holdings.held.len() * 40);
    let mut line = |fields: &[Option<&str>]| {
        out.push('[');
        for (n, field) in fields.iter().enumerate() {
            if n > 0 {
                out.push(',');
            }
            match field {
                Some(text) => json_string(&mut out, text),
                None => out.push_str("null"),
            }
        }
        out.push_str("]\n");
    };
    line(&[Some("target"), Some(target.as_str()), holdings.reference.as_deref()]);
    for reason in &holdings.partial {
        line(&[Some("partial"), Some(reason)]);
    }
    for (account, entitlement) in &holdings.held {
        line(&[Some("held"), Some(account), Some(entitlement.as_str())]);
    }
    for account in &holdings.accounts {
        line(&[Some("account"), Some(account)]);
    }
    for c in &holdings.credentials {
        let (issued, expires) =
            (c.issued_at.map(Timestamp::to_rfc3339), c.expires_at.map(Timestamp::to_rfc3339));
        line(&[
            Some("credential"),
            Some(c.class),
            Some(&c.handle),
            c.account.as_deref(),
            c.entitlement.as_ref().map(EntitlementName::as_str),
            issued.as_deref(),
            expires.as_deref(),
        ]);
    }
    for (account, at) in holdings.usage.iter().flatten() {
        line(&[Some("used"), Some(account), Some(&at.to_rfc3339())]);
    }
    for write in &holdings.unstamped {
        line(&[
            Some("unstamped"),
            Some(&write.reference),
            Some(&write.at.to_rfc3339()),
            Some(&write.summary),
        ]);
    }
    let bytes = out.into_bytes();
    EvidenceBlob { sha256: writ_ledger::sha256(&bytes), media_type: SNAPSHOT_MEDIA_TYPE.to_owned(), bytes }
}

/// Appends `text` as a JSON string.
fn json_string(out: &mut String, text: &str) {
    // Serialising a string cannot fail.
    out.push_str(&serde_json::to_string(text).unwrap_or_default());
}
