//! Inbound deliveries, read before anything in them is believed.
//!
//! [`authenticate`] checks a delivery against its source's secrets on the raw bytes (HMAC
//! signatures in constant time, shared tokens, Standard Webhooks signatures and timestamps);
//! [`read`] then turns the provider's payload into one [`Parsed`] shape the engine correlates:
//! the delivery id, the external object and its version, the references it carries, the Writ
//! changes it names (`Writ-Change:` lines) and the change it asks for (a [`block`] of
//! `Writ-Grant:` / `Writ-Revoke:` lines), and the commit a merge or push put on a branch, where
//! application [`manifest`]s are read.
//!
//! Pure: no I/O, no clock (the time is an argument), no store.

pub mod block;
pub mod manifest;
mod providers;
mod sign;

use std::collections::BTreeMap;
use std::fmt;

use writ_core::change::{ChangeId, ExternalRef};
use writ_core::time::{Duration, Timestamp};

pub use block::RequestBlock;
pub use sign::{Secret, hmac_sha256, standard_signature};

/// The kinds of sender Writ understands, each with its own payload and authentication.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// GitHub: `X-Hub-Signature-256` (HMAC-SHA256 of the body), `X-GitHub-Delivery`.
    Github,
    /// GitLab: `X-Gitlab-Token` (the secret itself) or Standard Webhooks signatures.
    Gitlab,
    /// Jira Cloud admin webhooks: `X-Hub-Signature` (HMAC-SHA256), `X-Atlassian-Webhook-Identifier`.
    Jira,
    /// ServiceNow outbound REST from a business rule or flow: HTTP Basic or Standard Webhooks.
    Servicenow,
    /// Any system signing with Standard Webhooks (`webhook-id`, `-timestamp`, `-signature`).
    Standard,
}

impl Kind {
    pub const ALL: [Kind; 5] = [Kind::Github, Kind::Gitlab, Kind::Jira, Kind::Servicenow, Kind::Standard];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Github => "github",
            Kind::Gitlab => "gitlab",
            Kind::Jira => "jira",
            Kind::Servicenow => "servicenow",
            Kind::Standard => "standard",
        }
    }

    pub fn parse(input: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == input)
    }

    /// The default timestamp tolerance: 5 minutes where the sender signs the time of each
    /// attempt (Standard Webhooks), one hour where only the payload's own event time bounds a
    /// replay (GitHub, GitLab, Jira and ServiceNow retry with the original payload).
    pub fn default_tolerance(self) -> Duration {
        match self {
            Kind::Standard => Duration::minutes(5),
            _ => Duration::hours(1),
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A request as received: lower-case header names (the last value of each) and the raw body.
pub struct Received<'a> {
    pub headers: &'a BTreeMap<String, String>,
    pub body: &'a [u8],
    pub now: Timestamp,
}

impl Received<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str).map(str::trim).filter(|v| !v.is_empty())
    }

    /// The delivery id the request claims (before it is authenticated: for the security
    /// record only).
    pub fn claimed_id(&self, kind: Kind) -> Option<String> {
        let name = match kind {
            Kind::Github => "x-github-delivery",
            Kind::Jira => "x-atlassian-webhook-identifier",
            Kind::Gitlab | Kind::Servicenow | Kind::Standard => {
                return self
                    .header("webhook-id")
                    .or_else(|| self.header("idempotency-key"))
                    .or_else(|| self.header("x-gitlab-event-uuid"))
                    .and_then(|v| writ_core::intake::key(v, "delivery id").ok());
            }
        };
        self.header(name).and_then(|v| writ_core::intake::key(v, "delivery id").ok())
    }
}

/// Why a delivery was not accepted. `Unauthenticated` is answered 401 and recorded as a
/// security event; `Malformed` is answered 400 and changes nothing.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IntakeError {
    #[error("{message}")]
    Unauthenticated { code: &'static str, message: String },
    #[error("{message}")]
    Malformed { code: &'static str, message: String },
}

impl IntakeError {
    pub fn code(&self) -> &'static str {
        match self {
            IntakeError::Unauthenticated { code, .. } | IntakeError::Malformed { code, .. } => code,
        }
    }

    fn unauthenticated(code: &'static str, message: impl Into<String>) -> IntakeError {
        IntakeError::Unauthenticated { code, message: message.into() }
    }

    fn malformed(code: &'static str, message: impl Into<String>) -> IntakeError {
        IntakeError::Malformed { code, message: message.into() }
    }
}

/// A pushed commit that names no Writ change.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UnstampedCommit {
    pub sha: String,
    /// `author: first line of the message`, at most 200 characters.
    pub summary: String,
    /// The files it added, modified or removed.
    pub paths: Vec<String>,
}

/// The most unstamped commits kept from one push.
pub const MAX_UNSTAMPED: usize = 100;

/// What a delivery means, in one shape for every sender.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Parsed {
    /// The sender's delivery id (stable across its retries).
    pub id: String,
    /// The sender's event type.
    pub event: String,
    /// The external object it is about, and the object's version as of this delivery.
    pub object: Option<String>,
    pub version: Option<Timestamp>,
    /// When the sender says the event happened (bounds how late a replay can come).
    pub sent_at: Option<Timestamp>,
    pub refs: Vec<ExternalRef>,
    /// Writ changes the delivery names (`Writ-Change:` lines, a ticket's Writ change field),
    /// each with the commit that named it if it was a commit.
    pub changes: Vec<(ChangeId, Option<ExternalRef>)>,
    /// The change it asks for, if it asks for one and the event is one that should open it (a
    /// merged pull request, not an opened one).
    pub request: Option<RequestBlock>,
    /// A request block seen on an event that does not open a change yet (an open pull request).
    pub pending_request: bool,
    /// The sender's account of the person behind the event (mapped to a Writ identity by the
    /// source's configuration).
    pub account: Option<String>,
    /// A one-line summary (a ticket's title), used as the justification if the block has none.
    pub summary: Option<String>,
    /// The ticket was cancelled or deleted: the change it opened should be cancelled.
    pub cancelled: bool,
    /// A problem with the request block (the delivery is kept, with this as its detail).
    pub block_error: Option<String>,
    /// The commit a merged pull request or a push put on a branch: where application manifests
    /// are read.
    pub revision: Option<manifest::Revision>,
    /// The pushed commits that name no Writ change (no `Writ-Change:` line), with the files
    /// each touched: telemetry of writes made outside Writ when they touch a target's file.
    pub unstamped: Vec<UnstampedCommit>,
    /// The application manifests that revision changed, read from the repository by the
    /// receiver (empty when the source has no manifests configured).
    pub apps: Vec<manifest::AppRevision>,
    /// The source's accounts that approved the ticket (a ServiceNow approval record, the
    /// approvers of a Jira Service Management approval that ended approved, an envelope's
    /// `approved_by`). They count as approvals only where policy says so.
    pub approved_by: Vec<String>,
    /// The maintenance window a ticket plans (ServiceNow's planned `start_date` and `end_date`,
    /// in UTC), as start, end, zone; a `Writ-Window:` line in the request block comes first.
    pub window: Option<(String, String, String)>,
    /// A comment on the ticket (a Jira comment, a ServiceNow work note or additional comment).
    pub comment: Option<TicketComment>,
}

/// A comment made on a ticket in another system.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TicketComment {
    /// The comment's own id in that system (the same comment keeps it across deliveries).
    pub id: String,
    /// The account that wrote it.
    pub account: Option<String>,
    pub body: String,
    /// When it was written there.
    pub written_at: Timestamp,
}

/// The longest comment text kept (longer ones are cut, and say so).
pub const MAX_COMMENT: usize = 2000;

/// Checks that a delivery comes from the source: its signature or token against each of
/// `secrets` (several during a rotation), and for signed timestamps the `tolerance`.
pub fn authenticate(
    kind: Kind,
    secrets: &[Secret],
    received: &Received<'_>,
    tolerance: Duration,
) -> Result<(), IntakeError> {
    if secrets.is_empty() {
        return Err(IntakeError::unauthenticated("hook.no_secret", "this hook has no secret configured"));
    }
    let standard = received.header("webhook-signature").is_some();
    match kind {
        Kind::Standard => sign::check_standard(secrets, received, tolerance),
        Kind::Gitlab | Kind::Servicenow if standard => sign::check_standard(secrets, received, tolerance),
        Kind::Github => sign::check_hub(secrets, received, "x-hub-signature-256"),
        Kind::Jira => sign::check_hub(secrets, received, "x-hub-signature"),
        Kind::Gitlab => sign::check_token(secrets, received.header("x-gitlab-token"), "X-Gitlab-Token"),
        Kind::Servicenow => sign::check_basic(secrets, received.header("authorization")),
    }
}

/// Reads an authenticated delivery. An event older than `tolerance` by the sender's own
/// timestamp is refused as a replay (`hook.stale_timestamp`).
pub fn read(kind: Kind, received: &Received<'_>, tolerance: Duration) -> Result<Parsed, IntakeError> {
    let json: serde_json::Value = serde_json::from_slice(received.body)
        .map_err(|e| IntakeError::malformed("hook.malformed", format!("the body is not JSON: {e}")))?;
    if !json.is_object() {
        return Err(IntakeError::malformed("hook.malformed", "the body must be a JSON object"));
    }
    let parsed = match kind {
        Kind::Github => providers::github(received, &json)?,
        Kind::Gitlab => providers::gitlab(received, &json)?,
        Kind::Jira => providers::jira(received, &json)?,
        Kind::Servicenow => providers::servicenow(received, &json)?,
        Kind::Standard => providers::standard(received, &json)?,
    };
    if let Some(sent) = parsed.sent_at {
        let age = received.now.as_millis().saturating_sub(sent.as_millis());
        if age > tolerance.as_millis() {
            return Err(IntakeError::unauthenticated(
                "hook.stale_timestamp",
                format!(
                    "the event is from {}, older than the {tolerance} this hook accepts: refused as a replay",
                    sent.to_rfc3339()
                ),
            ));
        }
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests;
