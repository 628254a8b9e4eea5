//! Deliveries from other systems: an IdP or HR feed (SCIM), an ITSM ticket (ServiceNow, Jira),
//! an SCM event (GitHub, GitLab) or any signed webhook. A delivery is what Writ received, from
//! which source, about which external object and version, with the SHA-256 of the exact bytes;
//! it is attached to the change it concerns ([`Link`]) or kept in the queue with its
//! [`Outcome`].
//!
//! The rules that make intake robust live in the engine: one delivery per (source, delivery
//! id), one change per (source, external object), and an older version of an object than one
//! already seen is `late`: attached, never acted on.

use std::fmt;

use crate::change::{ChangeId, ExternalRef};
use crate::error::Refusal;
use crate::name::SourceName;
use crate::time::Timestamp;

string_enum!(
    /// What became of a delivery: `correlated` (attached to its change, which it may have opened
    /// or updated), `late` (attached, but older than a version already seen: recorded, not acted
    /// on), `uncorrelated` (no change could be found or opened: it waits in the queue for a
    /// person), `refused` (it asked for a change the rules or policy refused; the detail says
    /// why), `ignored` (nothing to do: a ping, an event kind Writ does not act on).
    Outcome, "delivery outcome" {
        Correlated => "correlated",
        Late => "late",
        Uncorrelated => "uncorrelated",
        Refused => "refused",
        Ignored => "ignored",
    }
);

string_enum!(
    /// What one ledger event of a delivery records: it was received, received again with the
    /// same bytes (a retry or a duplicate), or, queued before, attached to a change later.
    DeliveryEventKind, "delivery event" {
        Received => "intake.received",
        Duplicate => "intake.duplicate",
        Correlated => "intake.correlated",
    }
);

/// One delivery as received, once its authenticity was checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    pub source: SourceName,
    /// The sender's delivery id (stable across its retries).
    pub id: String,
    /// The sender's event type (`jira:issue_updated`, `pull_request.closed`, …).
    pub event: String,
    /// The external object it is about (a ticket's sys_id, an issue id, a pull request).
    pub object: Option<String>,
    /// The object's version as of this delivery (its last-update time), to order deliveries.
    pub version: Option<Timestamp>,
    /// SHA-256 of the raw body exactly as received.
    pub sha256: [u8; 32],
    pub received_at: Timestamp,
    /// References the delivery carries (ticket numbers, commits, pull requests, records).
    pub refs: Vec<ExternalRef>,
}

/// Longest delivery id, event type or object key Writ accepts.
pub const MAX_KEY_LEN: usize = 200;

/// Checks a delivery id, event type or object key: 1 to 200 printable characters, no leading or
/// trailing space.
pub fn key(input: &str, field: &'static str) -> Result<String, Refusal> {
    let ok = !input.is_empty()
        && input.len() <= MAX_KEY_LEN
        && input.trim() == input
        && input.chars().all(|c| !c.is_control());
    if !ok {
        return Err(Refusal::InvalidValue {
            field,
            input: input.chars().take(40).collect(),
            expected: "1 to 200 printable characters",
        });
    }
    Ok(input.to_owned())
}

impl Delivery {
    /// The key that binds every delivery about the same thing to one change: the external
    /// object, or the delivery itself when it names none.
    pub fn object_key(&self) -> String {
        match &self.object {
            Some(object) => object.clone(),
            None => format!("delivery/{}", self.id),
        }
    }

    /// The SHA-256 of the body in lower-case hex.
    pub fn sha256_hex(&self) -> String {
        self.sha256.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// A delivery attached to a change (see [`crate::event::ChangeEventBody::Linked`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    /// The sequence of the event that attached it.
    pub seq: u64,
    pub at: Timestamp,
    pub delivery: Delivery,
    pub late: bool,
}

/// A delivery and what became of it: the queue entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryRecord {
    pub delivery: Delivery,
    pub outcome: Outcome,
    /// The changes it is attached to.
    pub changes: Vec<ChangeId>,
    /// Why it has this outcome, for a person reading the queue.
    pub detail: String,
    /// How many times it was received (retries and duplicates count).
    pub attempts: u32,
    pub updated_at: Timestamp,
}

/// A delivery refused before anything in it was believed: a bad or missing signature, a
/// timestamp outside the tolerance, a delivery id reused for different bytes. Recorded as a
/// security event; nothing else changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefusedDelivery {
    pub source: SourceName,
    /// The stable code of the reason (`hook.bad_signature`, `hook.stale_timestamp`, …).
    pub reason: String,
    /// The delivery id the request claimed, if any (checked like any key, else dropped).
    pub delivery: Option<String>,
    pub sha256: [u8; 32],
    pub at: Timestamp,
}

impl fmt::Display for DeliveryRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{} {}", self.delivery.source, self.delivery.id, self.outcome)
    }
}
