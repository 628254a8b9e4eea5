//! Findings in the engine: opened idempotently (one per kind and subject), moved between
//! open, excepted and resolved with a note, each step a ledger event.

use writ_core::change::ChangeId;
use writ_core::event::RegistryEvent;
use writ_core::finding::{Finding, FindingState};
use writ_core::identity::{Actor, SystemActor};
use writ_core::name::{EntitlementRef, IdentityName};

use writ_store::NewEvent;

use crate::scim::OWNER_LEFT;

/// The finding kind of an account on a target that no registered identity is.
pub const UNMATCHED: &str = "identity.unmatched_account";
use crate::{Engine, EngineError, Result, registry_event};

/// The one id of the finding of `kind` about `subject`: `FND-` and 16 hex digits of SHA-256.
pub fn finding_id(kind: &str, subject: &str) -> String {
    let digest = writ_ledger::leaf_hash(format!("writ finding\n{kind}\n{subject}").as_bytes());
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("FND-{hex}")
}

impl Engine {
    /// Findings, optionally only those in `state`.
    pub fn findings(&self, state: Option<FindingState>) -> Result<Vec<Finding>> {
        Ok(self.store.findings(state)?)
    }

    /// The finding with this id.
    pub fn finding(&self, id: &str) -> Result<Finding> {
        Finding::parse_id(id)?;
        self.store.finding(id)?.ok_or_else(|| EngineError::NotFound { what: "finding", name: id.to_owned() })
    }

    /// Opens the finding of `kind` about `subject`, or returns it if it is already open or
    /// excepted; a resolved one is reopened.
    pub(crate) fn raise_finding(
        &self,
        kind: &str,
        subject: &str,
        change: Option<ChangeId>,
        detail: String,
    ) -> Result<Finding> {
        let now = self.now();
        let id = finding_id(kind, subject);
        let existing = self.store.finding(&id)?;
        match existing {
            Some(finding) if finding.state != FindingState::Resolved => Ok(finding),
            Some(finding) => {
                let reopened = Finding { detail, ..finding };
                let note = "seen again".to_owned();
                let reopened = self.set_finding_state(
                    Actor::System(SystemActor::Scheduler),
                    reopened,
                    FindingState::Open,
                    None,
                    note,
                )?;
                self.apply_exceptions(reopened)
            }
            None => {
                let rule = self.policy()?.rules().finding_rule(kind);
                // An orphaned NHI is the registry's problem: the registry's reconciliation sees
                // it again, or resolves it once the NHI has an accountable owner.
                let scope = (kind == OWNER_LEFT).then(|| writ_core::reconcile::REGISTRY_SCOPE.to_owned());
                let finding = Finding {
                    change,
                    severity: rule.severity,
                    controls: rule.controls,
                    scope,
                    ..Finding::new(id, kind, subject, detail, now)
                };
                let event = RegistryEvent::Finding {
                    actor: Actor::System(SystemActor::Scheduler),
                    finding: finding.clone(),
                    first: true,
                    note: "opened".to_owned(),
                };
                let event = NewEvent {
                    notices: self.finding_notices(&finding)?,
                    ..registry_event(&event, self.hmac()?)
                };
                match self.store.open_finding(&finding, &event) {
                    Ok(_) => self.apply_exceptions(finding),
                    // Another instance opened it first.
                    Err(writ_store::StoreError::Conflict(_)) => self.finding(&finding.id),
                    Err(error) => Err(error.into()),
                }
            }
        }
    }

    /// Opens the finding of `kind` about `subject` in `scope` unless it exists in any state: a
    /// finding that records an event (a write outside Writ) is raised once, never reopened.
    pub(crate) fn raise_event_finding(
        &self,
        kind: &str,
        subject: &str,
        scope: String,
        detail: String,
    ) -> Result<()> {
        let id = finding_id(kind, subject);
        if self.store.finding(&id)?.is_some() {
            return Ok(());
        }
        let rule = self.policy()?.rules().finding_rule(kind);
        let finding = Finding {
            severity: rule.severity,
            controls: rule.controls,
            scope: Some(scope),
            ..Finding::new(id, kind, subject, detail, self.now())
        };
        let event = RegistryEvent::Finding {
            actor: Actor::System(SystemActor::Intake),
            finding: finding.clone(),
            first: true,
            note: "raised by a delivery".to_owned(),
        };
        let event =
            NewEvent { notices: self.finding_notices(&finding)?, ..registry_event(&event, self.hmac()?) };
        match self.store.open_finding(&finding, &event) {
            Ok(_) => self.apply_exceptions(finding).map(|_| ()),
            Err(writ_store::StoreError::Conflict(_)) => Ok(()),
            Err(error) => Err(error.into()),
        }
    }

    /// Moves `finding` (as read) to `state`, recording who and why.
    pub(crate) fn set_finding_state(
        &self,
        actor: Actor,
        finding: Finding,
        state: FindingState,
        exception: Option<String>,
        note: String,
    ) -> Result<Finding> {
        let expected = finding.state;
        let now = self.now();
        // A finding that is (again) open was seen now; excepting or resolving it is not a sighting.
        let last_seen = if state == FindingState::Open { now } else { finding.last_seen };
        let next = Finding { state, exception, updated_at: now, last_seen, ..finding };
        let event = RegistryEvent::Finding { actor, finding: next.clone(), first: false, note };
        self.store.update_finding(&next, expected, &registry_event(&event, self.hmac()?))?;
        tracing::info!(target: "writ::findings", finding = %next.id, state = %next.state, "finding updated");
        Ok(next)
    }

    /// Resolves the finding of `kind` about `subject` with `note`, if it is open or excepted;
    /// nothing if there is none or it is resolved already.
    pub(crate) fn resolve_if_open(
        &self,
        actor: Actor,
        kind: &str,
        subject: &str,
        note: String,
    ) -> Result<()> {
        match self.store.finding(&finding_id(kind, subject))? {
            Some(finding) if finding.state != FindingState::Resolved => {
                self.set_finding_state(actor, finding, FindingState::Resolved, None, note)?;
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// A person closes an open (or excepted) finding, saying what was done about it.
    pub fn resolve_finding(
        &self,
        actor: &writ_core::name::IdentityName,
        id: &str,
        note: String,
    ) -> Result<Finding> {
        let actor = Actor::Identity(self.actor(actor)?.name);
        let note = writ_core::machine::text(note, "resolution note")?;
        let finding = self.finding(id)?;
        if finding.state == FindingState::Resolved {
            return Err(denied("finding.not_open", format!("finding {id} is already resolved")));
        }
        if finding.kind == crate::automation::PAUSED {
            return Err(denied(
                "automation.resume_required",
                format!(
                    "finding {id} pauses automation of {}: resume it with `writ automation resume {}`, which also \
                     lets what was held proceed",
                    finding.subject, finding.subject
                ),
            ));
        }
        self.set_finding_state(actor, finding, FindingState::Resolved, None, note)
    }
}

/// A refusal about a finding, decided here rather than by a policy rule.
fn denied(code: &'static str, reason: String) -> EngineError {
    EngineError::Denied(writ_policy::Denial { code, rule: None, reason })
}

/// What the change that fixes a finding does, read from its kind and subject.
fn remedy(finding: &Finding) -> Result<(writ_core::change::OpAction, IdentityName, EntitlementRef)> {
    use writ_core::change::OpAction;
    let unsupported = |how: &str| {
        denied(
            "finding.no_remedy",
            format!("finding {} ({}) is not fixed by a change: {how}", finding.id, finding.kind),
        )
    };
    let action = match finding.kind.as_str() {
        "access.unapproved" | "access.expired_not_revoked" | "access.stale" => OpAction::Revoke,
        "access.missing" => OpAction::Grant,
        "secret.long_lived" => OpAction::Rotate,
        crate::reconcile::TELEMETRY => {
            return Err(unsupported(
                "review the write; revert it through a change (`writ change request`), or resolve this finding \
                 saying what it was",
            ));
        }
        "nhi.orphaned" => {
            return Err(unsupported(
                "transfer the identity to an accountable owner with `writ identity transfer`",
            ));
        }
        _ => return Err(unsupported("resolve it with a note saying what was done")),
    };
    let mut words = finding.subject.splitn(3, ' ');
    let parsed = match (words.next(), words.next()) {
        (Some(identity), Some(entitlement)) => {
            crate::reconcile::parse_access_subject(&format!("{identity} {entitlement}"))
        }
        _ => None,
    };
    let (identity, entitlement) = parsed.ok_or_else(|| {
        unsupported(
            "its subject names no registered identity and entitlement; rotate or revoke it on the target",
        )
    })?;
    Ok((action, identity, entitlement))
}

impl Engine {
    /// Opens the change that fixes a finding, requested by `actor` through normal policy and
    /// approvals, and links the two both ways (the change carries a `finding` reference, the
    /// finding its remediation). The finding is resolved when that change is verified.
    pub fn remediate_finding(
        &self,
        actor: &IdentityName,
        id: &str,
        justification: Option<String>,
        random: u128,
    ) -> Result<(Finding, crate::ChangeRecord)> {
        use writ_core::change::{BusinessEvent, ChangeState, ExternalRef, Justification, RefKind};
        self.actor(actor)?;
        // Given, it must say something (blank or control characters are refused).
        let justification =
            justification.map(|j| writ_core::machine::text(j, "justification")).transpose()?;
        let finding = self.finding(id)?;
        if finding.state == FindingState::Resolved {
            return Err(denied("finding.not_open", format!("finding {id} is already resolved")));
        }
        if let Some(change) = &finding.remediation {
            let state = self.load(change)?.change.state;
            let working = matches!(
                state,
                ChangeState::Requested
                    | ChangeState::PendingApproval
                    | ChangeState::Approved
                    | ChangeState::Implementing
                    | ChangeState::Implemented
                    | ChangeState::Verified
            );
            if working {
                return Err(denied(
                    "finding.remediation_open",
                    format!("finding {id} is already being fixed by {change} ({state}); follow that change"),
                ));
            }
        }
        if finding.kind == UNMATCHED {
            return self.decommission_unmatched(actor, finding, justification, random);
        }
        let (action, identity, entitlement) = remedy(&finding)?;
        let duration = match action {
            writ_core::change::OpAction::Grant => self
                .store
                .grants_of(&identity)?
                .into_iter()
                .find(|g| g.entitlement == entitlement)
                .and_then(|g| g.expires_at)
                .map(|end| writ_core::time::Duration::from_millis(end.as_millis() - self.now().as_millis()))
                .transpose()?,
            _ => None,
        };
        let why = match justification.as_deref() {
            Some(text) => format!("remediates {id} ({}): {text}", finding.kind),
            None => format!("remediates {id} ({}): {}", finding.kind, finding.detail),
        };
        let why: String = why.chars().take(Justification::MAX_LEN).collect();
        let input = crate::RequestInput {
            window: None,
            rollback_owner: None,
            requester: actor.clone(),
            on_behalf_of: None,
            ops: vec![crate::RequestedOp { action, identity, entitlement, duration }],
            justification: Justification::parse(&why)?,
            refs: vec![ExternalRef::new(RefKind::Finding, id)?],
            event: BusinessEvent::Adhoc,
        };
        let record = self.request(input, random)?;
        self.link_remediation(actor, finding, record)
    }

    /// Whether a change opened to fix `finding` is still on its way (requested up to
    /// implemented): the finding then waits for its verification.
    pub(crate) fn remediation_in_flight(&self, finding: &Finding) -> Result<bool> {
        use writ_core::change::ChangeState as S;
        let Some(change) = &finding.remediation else { return Ok(false) };
        let state = self.load(change)?.change.state;
        Ok(matches!(
            state,
            S::Requested | S::PendingApproval | S::Approved | S::Implementing | S::Implemented
        ))
    }

    /// Records on `finding` the change opened to fix it.
    fn link_remediation(
        &self,
        actor: &IdentityName,
        finding: Finding,
        record: crate::ChangeRecord,
    ) -> Result<(Finding, crate::ChangeRecord)> {
        let linked =
            Finding { remediation: Some(record.change.id.clone()), updated_at: self.now(), ..finding };
        let event = RegistryEvent::FindingRemediation {
            actor: Actor::Identity(actor.clone()),
            finding: linked.clone(),
            note: format!("{} opened to fix it", record.change.id),
        };
        self.store.update_finding(&linked, linked.state, &registry_event(&event, self.hmac()?))?;
        tracing::info!(target: "writ::findings", finding = %linked.id, change = %record.change.id, "remediation opened");
        Ok((linked, record))
    }

    /// The fix for an account no registered identity is: it is registered under its own name
    /// as a service account owned by `actor` (who answers for its removal) and offboarded at
    /// once, which opens the decommission change that revokes everything any target shows it
    /// holding, through policy and approvals. Only an admin may (it registers an identity).
    /// Refused, recording nothing: a name no identity can have, an account registered since
    /// (the next reconciliation links it), or one that holds nothing Writ manages (Writ does not
    /// delete accounts; remove it on the target).
    fn decommission_unmatched(
        &self,
        actor: &IdentityName,
        finding: Finding,
        justification: Option<String>,
        random: u128,
    ) -> Result<(Finding, crate::ChangeRecord)> {
        use writ_core::change::{ExternalRef, Justification, RefKind};
        let unsupported = |how: String| {
            denied(
                "finding.no_remedy",
                format!("finding {} ({}) is not fixed by a change: {how}", finding.id, finding.kind),
            )
        };
        let account = finding.subject.split_once(" account ").map(|(_, account)| account).unwrap_or_default();
        let name = IdentityName::parse(account).map_err(|_| {
            unsupported(format!("{account:?} is no name an identity can have; remove it on the target"))
        })?;
        if !self.store.roles_of(actor)?.contains(&writ_core::access::Role::Admin) {
            return Err(denied(
                "finding.remediation_not_allowed",
                format!(
                    "decommissioning {name} registers it as an identity first, which takes an admin; {actor} is not one"
                ),
            ));
        }
        let registered = self.store.identity(&name)?;
        // A registration this remediation made before it was cut off (a service account the
        // remediator owns, registered since the finding opened) is carried on, not refused.
        let ours = registered.as_ref().is_some_and(|i| {
            i.kind == writ_core::identity::IdentityKind::ServiceAccount
                && i.owner.as_ref() == Some(actor)
                && i.created_at >= finding.opened_at
        });
        if let Some(identity) = &registered
            && identity.state != writ_core::identity::IdentityState::Offboarded
            && !ours
        {
            return Err(unsupported(format!(
                "{name} is a registered {} now; the next reconciliation links its access",
                identity.kind
            )));
        }
        if self.observed_holdings(&name)?.is_empty() {
            return Err(unsupported(format!(
                "{name} holds nothing Writ manages on any target; remove the account on the target itself"
            )));
        }
        let why = match justification.as_deref() {
            Some(text) => format!("decommissions the unmatched account {name} ({}): {text}", finding.id),
            None => {
                format!("decommissions the unmatched account {name} ({}): {}", finding.id, finding.detail)
            }
        };
        let why = Justification::parse(&why.chars().take(Justification::MAX_LEN).collect::<String>())?;
        if registered.is_none() {
            let kind = writ_core::identity::IdentityKind::ServiceAccount;
            self.add_identity(Actor::Identity(actor.clone()), name.clone(), kind, Some(actor), None)?;
        }
        let refs = vec![ExternalRef::new(RefKind::Finding, &finding.id)?];
        let offboarding = self.offboard(actor.clone(), &name, why, refs, random)?;
        let record = offboarding.change.ok_or_else(|| {
            unsupported(format!(
                "{name} held nothing by the time it was offboarded; nothing is left to revoke"
            ))
        })?;
        self.link_remediation(actor, finding, record)
    }

    /// Resolves the findings `change` remediates, once it is verified: the fix is in effect
    /// on the target, as observed.
    pub(crate) fn settle_remediations(&self, change: &ChangeId) -> Result<Vec<Finding>> {
        let mut resolved = Vec::new();
        for finding in self.store.findings_remediated_by(change)? {
            if finding.state == FindingState::Resolved {
                continue;
            }
            let note = format!("remediated by {change}, verified on the target");
            resolved.push(self.set_finding_state(
                Actor::System(SystemActor::Engine),
                finding,
                FindingState::Resolved,
                None,
                note,
            )?);
        }
        Ok(resolved)
    }
}
