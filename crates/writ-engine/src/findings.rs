//! Findings in the engine: opened idempotently (one per kind and subject), moved between
//! open, excepted and resolved with a note, each step a ledger event.

use writ_core::change::ChangeId;
use writ_core::event::RegistryEvent;
use writ_core::finding::{Finding, FindingState};
use writ_core::identity::{Actor, SystemActor};

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
                let finding = Finding {
                    id,
                    kind: kind.to_owned(),
                    subject: subject.to_owned(),
                    change,
                    detail,
                    state: FindingState::Open,
                    opened_at: now,
                    updated_at: now,
                    exception: None,
                };
                let event = RegistryEvent::Finding {
                    actor: Actor::System(SystemActor::Scheduler),
                    finding: finding.clone(),
                    first: true,
                    note: "opened".to_owned(),
                };
                match self.store.open_finding(&finding, &registry_event(&event, self.hmac()?)) {
                    Ok(_) => self.apply_exceptions(finding),
                    // Another instance opened it first.
                    Err(writ_store::StoreError::Conflict(_)) => self.finding(&finding.id),
                    Err(error) => Err(error.into()),
                }
            }
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
        let next = Finding { state, exception, updated_at: self.now(), ..finding };
        let event = RegistryEvent::Finding { actor, finding: next.clone(), first: false, note };
        self.store.update_finding(&next, expected, &registry_event(&event, self.hmac()?))?;
        tracing::info!(target: "writ::findings", finding = %next.id, state = %next.state, "finding updated");
        Ok(next)
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
            return Err(EngineError::Denied(writ_policy::Denial {
                code: "finding.not_open",
                rule: None,
                reason: format!("finding {id} is already resolved"),
            }));
        }
        self.set_finding_state(actor, finding, FindingState::Resolved, None, note)
    }
}
