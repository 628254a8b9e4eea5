//! Just-in-time access: time-bound grants end when their duration is over, through a change
//! record of their own.
//!
//! Each tick, [`Engine::revoke_due`] reads the grants whose expiry has passed, groups them by
//! the change that granted them and the instant they expire, and drives one expiry change per
//! group: opened by the scheduler (pre-authorised by the origin's approval, so it starts
//! `approved` and cannot be cancelled or rejected), executed, verified. The change ID is derived
//! from (origin, expiry), so two instances or a restart find the same change instead of opening
//! a second one. A failed revocation is retried with exponential backoff (1 s doubling up to
//! 5 min); after [`ExpiryPolicy::alert_after_attempts`] failed attempts the change carries an
//! alert that a person must act on, and retries continue.

use std::collections::BTreeMap;

use writ_core::change::{ChangeId, ChangeState, OpAction, PlannedOp};
use writ_core::identity::{Actor, Grant, SystemActor};
use writ_core::machine::{Command, ExpiryChange, decide};
use writ_core::time::{Duration, Timestamp};

use crate::{ChangeRecord, Engine, EngineError, PASS_LIMIT, Result, evidence};

/// How the scheduler retries and when it gives up on its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExpiryPolicy {
    /// Failed attempts after which the change carries an alert.
    pub alert_after_attempts: u32,
    /// The wait after the first failure; doubled after each further one.
    pub first_backoff: Duration,
    /// The longest wait between two attempts.
    pub max_backoff: Duration,
}

impl Default for ExpiryPolicy {
    fn default() -> ExpiryPolicy {
        ExpiryPolicy {
            alert_after_attempts: 5,
            first_backoff: Duration::seconds(1),
            max_backoff: Duration::minutes(5),
        }
    }
}

impl ExpiryPolicy {
    /// When the next attempt may start after `attempts` failed ones, the last ending at `last`.
    pub fn next_attempt(&self, attempts: u32, last: Timestamp) -> Timestamp {
        let doublings = attempts.saturating_sub(1).min(30);
        let wait = self.first_backoff.as_millis().saturating_mul(1_i64 << doublings);
        Timestamp::from_millis(last.as_millis().saturating_add(wait.min(self.max_backoff.as_millis())))
    }
}

/// What one pass of the scheduler did, change by change.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DueReport {
    /// Expiry changes opened in this pass.
    pub opened: Vec<ChangeId>,
    /// Expiry changes that reached `verified` (access observed gone) in this pass.
    pub verified: Vec<ChangeId>,
    /// Expiry changes whose attempt failed in this pass; they are retried later.
    pub failed: Vec<ChangeId>,
    /// Expiry changes that got an alert in this pass.
    pub alerted: Vec<ChangeId>,
    /// Expiry changes the pass could not work on, with the reason (a store or target error).
    pub errors: Vec<(ChangeId, String)>,
}

impl Engine {
    /// Ends every time-bound grant that is due (see the module documentation). Errors on one
    /// change are reported and do not stop the others.
    pub fn revoke_due(&self, policy: &ExpiryPolicy) -> Result<DueReport> {
        let now = self.now();
        let mut groups: BTreeMap<(Timestamp, ChangeId), Vec<Grant>> = BTreeMap::new();
        for grant in self.store.due_grants(now, PASS_LIMIT)? {
            if let Some(due) = grant.expires_at {
                groups.entry((due, grant.change.clone())).or_default().push(grant);
            }
        }
        let mut report = DueReport::default();
        for ((due_at, origin), grants) in groups {
            let id = expiry_id(&origin, due_at);
            if let Err(error) = self.drive_expiry(&id, &origin, due_at, grants, policy, &mut report) {
                tracing::warn!(target: "writ::expiry", change = %id, origin = %origin, error = %error, "expiry not finished");
                report.errors.push((id, error.to_string()));
            }
        }
        Ok(report)
    }

    fn drive_expiry(
        &self,
        id: &ChangeId,
        origin: &ChangeId,
        due_at: Timestamp,
        grants: Vec<Grant>,
        policy: &ExpiryPolicy,
        report: &mut DueReport,
    ) -> Result<()> {
        let mut record = match self.load(id) {
            Ok(record) => record,
            Err(EngineError::NotFound { .. }) => match self.open_expiry(id, origin, due_at, &grants) {
                Ok(record) => {
                    report.opened.push(id.clone());
                    record
                }
                // Another instance opened it first.
                Err(EngineError::Store(writ_store::StoreError::Conflict(_))) => self.load(id)?,
                Err(error) => return Err(error),
            },
            Err(error) => return Err(error),
        };
        let change = &record.change;
        let attempts = u32::try_from(change.executions.len()).unwrap_or(u32::MAX);
        let retry = matches!(change.state, ChangeState::Failed | ChangeState::VerificationFailed);
        // An `implementing` change was cut off mid-attempt (crash): resume it at once.
        if retry || matches!(change.state, ChangeState::Approved | ChangeState::Implementing) {
            let last = change.executions.last().map(|e| e.finished_at.unwrap_or(e.started_at));
            if retry && last.is_some_and(|last| self.now() < policy.next_attempt(attempts, last)) {
                return Ok(());
            }
            record = self.execute_as(record, Actor::System(SystemActor::Scheduler))?;
        }
        if record.change.state == ChangeState::Implemented {
            record = self.verify(id)?;
        }
        match record.change.state {
            ChangeState::Verified => report.verified.push(id.clone()),
            ChangeState::Failed | ChangeState::VerificationFailed => {
                report.failed.push(id.clone());
                let attempts = u32::try_from(record.change.executions.len()).unwrap_or(u32::MAX);
                if attempts >= policy.alert_after_attempts && record.change.alert.is_none() {
                    let last_error = record
                        .change
                        .last_execution()
                        .and_then(|e| e.error.clone())
                        .unwrap_or_else(|| "access still observed on the target".to_owned());
                    let reason = format!(
                        "access granted by {origin} was due to end at {due_at} and is not yet \
                         removed after {attempts} attempts; last error: {last_error}"
                    );
                    self.transition_from(
                        record,
                        Command::RaiseAlert { reason },
                        evidence::Captured::default(),
                    )?;
                    report.alerted.push(id.clone());
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn open_expiry(
        &self,
        id: &ChangeId,
        origin: &ChangeId,
        due_at: Timestamp,
        grants: &[Grant],
    ) -> Result<ChangeRecord> {
        let requester = self.load(origin)?.change.requester;
        let ops = grants
            .iter()
            .map(|g| PlannedOp {
                action: OpAction::Revoke,
                identity: g.identity.clone(),
                entitlement: g.entitlement.clone(),
                duration: None,
            })
            .collect();
        let expiry = ExpiryChange { id: id.clone(), origin: origin.clone(), requester, due_at, ops };
        let mut events = decide(None, Command::OpenExpiry(Box::new(expiry)), self.now())?;
        let mut captured = evidence::Captured::default();
        let due: Vec<serde_json::Value> = grants
            .iter()
            .map(|g| {
                serde_json::json!({
                    "identity": g.identity.as_str(),
                    "entitlement": g.entitlement.to_string(),
                    "granted_at": g.granted_at.to_rfc3339(),
                    "expires_at": g.expires_at.map(Timestamp::to_rfc3339),
                })
            })
            .collect();
        captured.json(
            "expiry-due",
            &serde_json::json!({ "origin": origin.as_str(), "due_at": due_at.to_rfc3339(), "grants": due }),
        );
        captured.attach(events.first_mut());
        self.commit(None, events, Vec::new(), captured)
    }
}

/// The one ID of the change that ends what `origin` granted until `due_at`: the expiry instant
/// as its time part and 80 bits of SHA-256 over (origin, expiry) as its random part.
pub fn expiry_id(origin: &ChangeId, due_at: Timestamp) -> ChangeId {
    let seed = format!("writ expiry\n{origin}\n{}", due_at.as_millis());
    let digest = writ_ledger::leaf_hash(seed.as_bytes());
    let mut bits = [0u8; 16];
    bits.iter_mut().zip(digest.iter()).for_each(|(b, d)| *b = *d);
    ChangeId::generate(due_at, u128::from_le_bytes(bits))
}

/// When the holder (and owner) of time-bound access hear that it ends: a day before, then an
/// hour before.
pub const WARNINGS: [Duration; 2] = [Duration::hours(24), Duration::hours(1)];

/// One warning given by [`Engine::warn_expiring`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warned {
    pub change: ChangeId,
    pub identity: writ_core::name::IdentityName,
    pub entitlement: writ_core::name::EntitlementRef,
    pub ends_at: Timestamp,
    pub before: Duration,
}

impl Engine {
    /// Warns of time-bound access that ends within a day, then within an hour: a
    /// `change.expiry_warned` event on the change that granted it, which writes the
    /// notifications its routes ask for (`access.expiring`, to its holder and owner). Once per
    /// grant, end and warning; access that ends within the hour is warned of once, for the hour.
    /// Changes are read only for grants within the day.
    pub fn warn_expiring(&self) -> Result<Vec<Warned>> {
        let now = self.now();
        let horizon = now.plus(WARNINGS[0]);
        let mut warned = Vec::new();
        for grant in self.store.due_grants(horizon, PASS_LIMIT)? {
            let Some(ends_at) = grant.expires_at.filter(|end| *end > now) else { continue };
            let left = ends_at.as_millis().saturating_sub(now.as_millis());
            // The closest warning that what is left falls within.
            let Some(before) = WARNINGS.iter().rev().find(|w| left <= w.as_millis()).copied() else {
                continue;
            };
            let record = self.load(&grant.change)?;
            let given = record.change.warnings.iter().any(|w| {
                w.identity == grant.identity
                    && w.entitlement == grant.entitlement
                    && w.ends_at == ends_at
                    && w.before.as_millis() <= before.as_millis()
            });
            if given {
                continue;
            }
            let command = Command::WarnExpiry {
                identity: grant.identity.clone(),
                entitlement: grant.entitlement.clone(),
                ends_at,
                before,
            };
            match self.transition_from(record, command, evidence::Captured::default()) {
                Ok(_) => {
                    tracing::info!(target: "writ::engine", change = %grant.change, identity = %grant.identity, entitlement = %grant.entitlement, %ends_at, "warned that time-bound access ends soon");
                    warned.push(Warned {
                        change: grant.change,
                        identity: grant.identity,
                        entitlement: grant.entitlement,
                        ends_at,
                        before,
                    });
                }
                // Another instance warned first, or the grant is not one this change made
                // time-bound: nothing to tell.
                Err(EngineError::Store(writ_store::StoreError::Conflict(_)) | EngineError::Refused(_)) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(warned)
    }
}
