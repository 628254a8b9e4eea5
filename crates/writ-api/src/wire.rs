//! The request bodies of the HTTP API and their conversion into the engine's inputs.
//!
//! Invariants:
//! - every body refuses unknown fields, so a misspelt field is an error, not a silent default;
//! - a body never names the actor: the requester is the authenticated caller, passed in by the
//!   server (or the `--as` of a local command), so the CLI and the API build the same input from
//!   the same fields and refuse the same input with the same code;
//! - a missing required field is `request.missing_field` naming the field.

use serde::{Deserialize, Serialize};
use writ_core::change::{BusinessEvent, ExternalRef, Justification, OpAction, RefKind};
use writ_core::name::{EntitlementRef, IdentityName};
use writ_core::time::{Duration, Timestamp};
use writ_engine::breakglass::BreakGlassInput;
use writ_engine::exceptions::{ExceptionInput, Term};
use writ_engine::{Engine, RequestInput, RequestedOp};

use crate::Error;

/// A field the body must have.
pub fn required<T>(value: Option<T>, field: &str) -> Result<T, Error> {
    value.ok_or_else(|| {
        Error::new("request.missing_field", format!("`{field}` is required")).with_field(field)
    })
}

#[derive(Deserialize, Serialize, Default, Debug)]
#[serde(deny_unknown_fields)]
pub struct NewIdentity {
    pub name: Option<String>,
    pub kind: Option<String>,
    pub owner: Option<String>,
    pub vendor: Option<String>,
}

#[derive(Deserialize, Serialize, Default, Debug)]
#[serde(deny_unknown_fields)]
pub struct NewTarget {
    pub name: Option<String>,
    pub connector: Option<String>,
    #[serde(default)]
    pub settings: std::collections::BTreeMap<String, String>,
}

#[derive(Deserialize, Serialize, Default, Debug)]
#[serde(deny_unknown_fields)]
pub struct NewChange {
    pub identity: Option<String>,
    #[serde(default)]
    pub grant: Vec<String>,
    #[serde(default)]
    pub revoke: Vec<String>,
    #[serde(default)]
    pub rotate: Vec<String>,
    #[serde(rename = "for")]
    pub duration: Option<String>,
    pub justification: Option<String>,
    #[serde(default)]
    pub ticket: Vec<String>,
    #[serde(default)]
    pub commit: Vec<String>,
    #[serde(default)]
    pub pr: Vec<String>,
    pub event: Option<String>,
    pub on_behalf_of: Option<String>,
}

impl NewChange {
    /// The engine's request, asked by `requester`.
    pub fn into_input(self, requester: &str) -> Result<RequestInput, Error> {
        let identity = IdentityName::parse(&required(self.identity, "identity")?)?;
        let justification = required(self.justification, "justification")?;
        let duration = self.duration.as_deref().map(Duration::parse).transpose()?;
        if duration.is_some() && self.grant.is_empty() {
            return Err(writ_core::Refusal::DurationOnRevoke.into());
        }
        let mut ops = Vec::new();
        let actions = [
            (OpAction::Revoke, &self.revoke),
            (OpAction::Grant, &self.grant),
            (OpAction::Rotate, &self.rotate),
        ];
        for (action, entitlements) in actions {
            for entitlement in entitlements {
                ops.push(RequestedOp {
                    action,
                    identity: identity.clone(),
                    entitlement: EntitlementRef::parse(entitlement)?,
                    duration: if action == OpAction::Grant { duration } else { None },
                });
            }
        }
        let mut refs = Vec::new();
        for (kind, values) in [
            (RefKind::Ticket, &self.ticket),
            (RefKind::Commit, &self.commit),
            (RefKind::PullRequest, &self.pr),
        ] {
            for value in values {
                refs.push(ExternalRef::new(kind, value)?);
            }
        }
        Ok(RequestInput {
            requester: IdentityName::parse(requester)?,
            on_behalf_of: self.on_behalf_of.as_deref().map(IdentityName::parse).transpose()?,
            ops,
            justification: Justification::parse(&justification)?,
            refs,
            event: BusinessEvent::parse(self.event.as_deref().unwrap_or("adhoc"))?,
        })
    }
}

#[derive(Deserialize, Serialize, Default, Debug)]
#[serde(deny_unknown_fields)]
pub struct StepBody {
    pub valid_for: Option<String>,
    pub on_behalf_of: Option<String>,
    pub reason: Option<String>,
    pub notes: Option<String>,
}

#[derive(Deserialize, Serialize, Default, Debug)]
#[serde(deny_unknown_fields)]
pub struct BreakGlass {
    pub identity: Option<String>,
    #[serde(default)]
    pub grant: Vec<String>,
    #[serde(rename = "for")]
    pub duration: Option<String>,
    pub reason: Option<String>,
    #[serde(default)]
    pub ticket: Vec<String>,
}

impl BreakGlass {
    /// The engine's break-glass request by `actor` (who gets the access unless `identity` names
    /// someone else).
    pub fn into_input(self, actor: &str) -> Result<BreakGlassInput, Error> {
        if self.grant.is_empty() {
            return Err(Error::new("request.missing_field", "`grant` needs at least one entitlement")
                .with_field("grant"));
        }
        let reason = required(self.reason, "reason")?;
        let actor = IdentityName::parse(actor)?;
        let identity =
            self.identity.as_deref().map(IdentityName::parse).transpose()?.unwrap_or_else(|| actor.clone());
        let duration = self.duration.as_deref().map(Duration::parse).transpose()?;
        let ops = self
            .grant
            .iter()
            .map(|entitlement| {
                Ok(RequestedOp {
                    action: OpAction::Grant,
                    identity: identity.clone(),
                    entitlement: EntitlementRef::parse(entitlement)?,
                    duration,
                })
            })
            .collect::<Result<Vec<_>, writ_core::Refusal>>()?;
        let refs = self
            .ticket
            .iter()
            .map(|t| ExternalRef::new(RefKind::Ticket, t))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(BreakGlassInput { actor, ops, reason: Justification::parse(&reason)?, refs })
    }
}

#[derive(Deserialize, Serialize, Default, Debug)]
#[serde(deny_unknown_fields)]
pub struct ResolveFinding {
    pub note: Option<String>,
}

#[derive(Deserialize, Serialize, Default, Debug)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    pub identity: Option<String>,
    pub label: Option<String>,
    pub expires_in: Option<String>,
}

#[derive(Deserialize, Serialize, Default, Debug)]
#[serde(deny_unknown_fields)]
pub struct NewException {
    pub finding: Option<String>,
    pub control: Option<String>,
    pub subject: Option<String>,
    pub owner: Option<String>,
    pub justification: Option<String>,
    pub compensating_control: Option<String>,
    #[serde(rename = "for")]
    pub duration: Option<String>,
    pub until: Option<String>,
}

/// An exception request checked without the store: its required fields and its term.
pub struct CheckedException {
    body: NewException,
    owner: String,
    justification: String,
    compensating_control: String,
    term: Term,
}

impl NewException {
    /// Checks what needs no store (required fields, the term), before any write is attempted.
    pub fn check(self) -> Result<CheckedException, Error> {
        let owner = required(self.owner.clone(), "owner")?;
        let justification = required(self.justification.clone(), "justification")?;
        let compensating_control = required(self.compensating_control.clone(), "compensating_control")?;
        let term = term(self.duration.as_deref(), self.until.as_deref())?;
        Ok(CheckedException { body: self, owner, justification, compensating_control, term })
    }
}

impl CheckedException {
    /// The engine's exception request by `actor`; `finding` gives the control and subject.
    pub fn into_input(self, engine: &Engine, actor: &str) -> Result<ExceptionInput, Error> {
        let (control, subject) = match (self.body.finding, self.body.control, self.body.subject) {
            (Some(id), None, None) => {
                let finding = engine.finding(&id)?;
                (finding.kind, finding.subject)
            }
            (None, Some(control), Some(subject)) => (control, subject),
            _ => {
                return Err(Error::new(
                    "input.missing_field",
                    "name the finding (--finding) or the control and subject (--control, --subject)",
                ));
            }
        };
        Ok(ExceptionInput {
            actor: IdentityName::parse(actor)?,
            control,
            subject,
            owner: IdentityName::parse(&self.owner)?,
            justification: self.justification,
            compensating_control: self.compensating_control,
            term: self.term,
        })
    }
}

#[derive(Deserialize, Serialize, Default, Debug)]
#[serde(deny_unknown_fields)]
pub struct ExceptionStep {
    pub reason: Option<String>,
    #[serde(rename = "for")]
    pub duration: Option<String>,
    pub until: Option<String>,
}

/// An exception's term from `for` or `until` (exactly one).
pub fn term(duration: Option<&str>, until: Option<&str>) -> Result<Term, Error> {
    match (duration, until) {
        (Some(d), None) => Ok(Term::For(Duration::parse(d)?)),
        (None, Some(u)) => Timestamp::parse_rfc3339(u).map(Term::Until).ok_or_else(|| {
            Error::new("input.invalid_value", format!("--until {u:?} is not an RFC 3339 time"))
        }),
        _ => Err(Error::new("input.missing_field", "give either --for DURATION or --until TIME")),
    }
}
