//! Handing a non-human identity to a new accountable owner: a two-person decision recorded in
//! the ledger. Someone asks (the current owner giving it away, the new owner claiming it, or an
//! admin), and someone else accepts: the new owner, unless the new owner asked, in which case
//! the current owner (while active) or an admin who did not ask. Nobody takes ownership alone,
//! and nobody is made accountable without agreeing to it.
//!
//! | who asked          | who may accept or decline                                     |
//! |--------------------|---------------------------------------------------------------|
//! | current owner      | the new owner                                                 |
//! | an admin           | the new owner                                                 |
//! | the new owner      | the current owner if active, else an admin other than them    |
//!
//! The one who asked may cancel while it is pending. A request is valid for
//! [`TRANSFER_VALIDITY`]; a new request for the same identity supersedes a pending one.
//! Every rule here is pure: the engine reads the identities and roles and records the result.

use std::fmt;

use crate::access::Role;
use crate::change::{is_ulid, ulid};
use crate::error::Refusal;
use crate::identity::{Identity, IdentityKind, IdentityState};
use crate::name::IdentityName;
use crate::time::{Duration, Timestamp};

/// How long a transfer waits for its decision.
pub const TRANSFER_VALIDITY: Duration = Duration::hours(7 * 24);

/// `TRF-` followed by a 26-character Crockford base32 ULID, like a change ID.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TransferId(String);

impl TransferId {
    /// Builds an ID from a creation time and 80 random bits supplied by the caller.
    pub fn generate(at: Timestamp, random: u128) -> TransferId {
        TransferId(ulid("TRF-", at, random))
    }

    pub fn parse(input: &str) -> Result<TransferId, Refusal> {
        if !is_ulid("TRF-", input) {
            return Err(Refusal::InvalidValue {
                field: "transfer id",
                input: input.chars().take(40).collect(),
                expected: "TRF- followed by 26 characters of Crockford base32",
            });
        }
        Ok(TransferId(input.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TransferId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

string_enum!(
    /// Where a transfer stands. Only `pending` changes; the others are final.
    TransferState, "transfer state" {
        Pending => "pending",
        Accepted => "accepted",
        Declined => "declined",
        Cancelled => "cancelled",
        Superseded => "superseded",
    }
);

impl TransferState {
    pub fn is_pending(self) -> bool {
        self == TransferState::Pending
    }

    /// The ledger event that records a transfer reaching this state (a superseded one is
    /// recorded by the request that supersedes it).
    pub fn event_type(self) -> &'static str {
        match self {
            TransferState::Pending => "identity.transfer_requested",
            TransferState::Accepted => "identity.transfer_accepted",
            TransferState::Declined => "identity.transfer_declined",
            TransferState::Cancelled => "identity.transfer_cancelled",
            TransferState::Superseded => "identity.transfer_superseded",
        }
    }
}

/// A request to make `to` the accountable owner of `identity`, and its decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transfer {
    pub id: TransferId,
    /// The non-human identity handed over.
    pub identity: IdentityName,
    /// Its owner when the transfer was asked for (`None`: it had none).
    pub from: Option<IdentityName>,
    pub to: IdentityName,
    pub requested_by: IdentityName,
    pub reason: String,
    pub requested_at: Timestamp,
    pub expires_at: Timestamp,
    pub state: TransferState,
    /// Who decided (accepted, declined, cancelled; for a superseded one, who asked anew).
    pub decided_by: Option<IdentityName>,
    pub decided_at: Option<Timestamp>,
    /// What the decider said.
    pub note: Option<String>,
}

/// The decision a person takes on a pending transfer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Accept,
    Decline,
    /// Withdrawn by the one who asked.
    Cancel,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Accept => "accept",
            Decision::Decline => "decline",
            Decision::Cancel => "cancel",
        }
    }
}

fn refuse(code: &'static str, reason: String) -> Refusal {
    Refusal::TransferRefused { code, reason }
}

/// Opens a transfer of `nhi` to `to`, asked by `actor` holding `roles`: the checks of the
/// module's table, then a pending transfer valid for [`TRANSFER_VALIDITY`].
pub fn request(
    id: TransferId,
    nhi: &Identity,
    to: &Identity,
    actor: &IdentityName,
    roles: &[Role],
    reason: String,
    now: Timestamp,
) -> Result<Transfer, Refusal> {
    if !nhi.kind.is_nhi() {
        return Err(refuse(
            "transfer.not_nhi",
            format!("{} is a human; only non-human identities have an owner to transfer", nhi.name),
        ));
    }
    if nhi.state == IdentityState::Offboarded {
        return Err(refuse(
            "transfer.identity_offboarded",
            format!("{} is offboarded; nobody needs to own it any more", nhi.name),
        ));
    }
    if to.kind != IdentityKind::Human || to.state != IdentityState::Active || to.vendor.is_some() {
        return Err(refuse(
            "transfer.owner_invalid",
            format!(
                "{} is a {} ({}{}); an owner must be an active person of the organisation",
                to.name,
                to.kind,
                to.state,
                if to.vendor.is_some() { ", vendor" } else { "" }
            ),
        ));
    }
    if nhi.owner.as_ref() == Some(&to.name) {
        return Err(refuse("transfer.same_owner", format!("{} already owns {}", to.name, nhi.name)));
    }
    let is_owner = nhi.owner.as_ref() == Some(actor);
    if !(is_owner || actor == &to.name || roles.contains(&Role::Admin)) {
        return Err(refuse(
            "transfer.not_allowed",
            format!(
                "{actor} may not hand {} over: its owner ({}), the new owner or an admin asks",
                nhi.name,
                nhi.owner.as_ref().map_or("none", IdentityName::as_str)
            ),
        ));
    }
    let reason = crate::machine::text(reason, "justification")?;
    Ok(Transfer {
        id,
        identity: nhi.name.clone(),
        from: nhi.owner.clone(),
        to: to.name.clone(),
        requested_by: actor.clone(),
        reason,
        requested_at: now,
        expires_at: now.plus(TRANSFER_VALIDITY),
        state: TransferState::Pending,
        decided_by: None,
        decided_at: None,
        note: None,
    })
}

impl Transfer {
    /// Pending and not past its validity.
    pub fn is_open_at(&self, now: Timestamp) -> bool {
        self.state == TransferState::Pending && now < self.expires_at
    }

    /// Who may accept or decline, in words (for refusals and listings).
    pub fn decider(&self, owner_active: bool) -> String {
        if self.requested_by != self.to {
            self.to.to_string()
        } else if let (Some(from), true) = (&self.from, owner_active) {
            format!("{from} (the current owner)")
        } else {
            format!("an admin other than {}", self.requested_by)
        }
    }

    /// `actor` (holding `roles`) takes `decision` at `now`. `owner_active`: the identity's
    /// current owner is the one the transfer names as `from` and is active. The result is
    /// final; accepting it moves the ownership.
    pub fn decide(
        &self,
        decision: Decision,
        actor: &IdentityName,
        roles: &[Role],
        owner_active: bool,
        note: Option<String>,
        now: Timestamp,
    ) -> Result<Transfer, Refusal> {
        if self.state != TransferState::Pending {
            return Err(refuse(
                "transfer.not_pending",
                format!("{} is {}; cannot {}", self.id, self.state, decision.as_str()),
            ));
        }
        if now >= self.expires_at {
            return Err(refuse(
                "transfer.expired",
                format!(
                    "{} expired at {}; ask again with `writ identity transfer {}`",
                    self.id,
                    self.expires_at.to_rfc3339(),
                    self.identity
                ),
            ));
        }
        let state = match decision {
            Decision::Cancel if actor == &self.requested_by => TransferState::Cancelled,
            Decision::Cancel => {
                return Err(refuse(
                    "transfer.not_allowed",
                    format!("only {} (who asked) may cancel {}", self.requested_by, self.id),
                ));
            }
            Decision::Accept | Decision::Decline => {
                let claim = self.requested_by == self.to;
                let allowed = if actor == &self.requested_by {
                    false
                } else if !claim {
                    actor == &self.to
                } else if owner_active {
                    self.from.as_ref() == Some(actor)
                } else {
                    roles.contains(&Role::Admin)
                };
                if !allowed {
                    let why = if actor == &self.requested_by {
                        format!(
                            "separation of duties: {actor} asked for {}; someone else decides it",
                            self.id
                        )
                    } else {
                        format!("{} is decided by {}", self.id, self.decider(owner_active))
                    };
                    return Err(refuse(
                        if actor == &self.requested_by {
                            "transfer.self_approval"
                        } else {
                            "transfer.not_allowed"
                        },
                        why,
                    ));
                }
                if decision == Decision::Accept { TransferState::Accepted } else { TransferState::Declined }
            }
        };
        let note = note.map(|n| crate::machine::text(n, "note")).transpose()?;
        Ok(Transfer { state, decided_by: Some(actor.clone()), decided_at: Some(now), note, ..self.clone() })
    }

    /// This pending transfer, superseded by a new request of `by` at `now`.
    pub fn superseded(&self, by: &IdentityName, now: Timestamp) -> Transfer {
        Transfer {
            state: TransferState::Superseded,
            decided_by: Some(by.clone()),
            decided_at: Some(now),
            note: None,
            ..self.clone()
        }
    }
}
