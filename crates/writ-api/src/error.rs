//! The one table of error kinds.
//!
//! Invariants:
//! - every stable code Writ can answer with has exactly one row in `CODES` (a test scans the
//!   workspace's sources for codes and fails on one without a row, or on a row twice);
//! - a code's kind gives both its HTTP status and its CLI exit code, so the server, the CLI
//!   (local and `--server`) and `docs/api.md` cannot disagree about what a refusal is;
//! - a code that arrives from elsewhere and has no row (a newer server) is `Kind::Internal`.

use std::borrow::Cow;

use writ_engine::EngineError;
use writ_engine::access::{AccessError, AuthError};

/// What kind of failure a code names. Each kind has one HTTP status and one exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The input is malformed or out of range; fix it and ask again. 400, exit 2.
    Invalid,
    /// The input is well formed but its content cannot be used as given. 422, exit 2.
    Unprocessable,
    /// The body is larger than the server accepts. 413, exit 2.
    TooLarge,
    /// The body's media type is not one the operation accepts. 415, exit 2.
    UnsupportedMediaType,
    /// The request's URI is longer than the server accepts. 414, exit 2.
    UriTooLong,
    /// No credentials, or credentials that are not (or no longer) valid. 401, exit 3.
    Unauthenticated,
    /// A rule refuses this actor this action: roles, separation of duties, policy. 403, exit 3.
    Forbidden,
    /// The record's rules refuse what was asked (identity kinds and owners, break-glass
    /// scope). 422, exit 3.
    Refused,
    /// The record is not in a state that allows it (already decided, not yet due). 409, exit 3.
    Conflict,
    /// The thing named does not exist. 404, exit 4.
    NotFound,
    /// A condition the request set (`If-Match`) does not hold. 412, exit 3.
    PreconditionFailed,
    /// Another writer got there first; read again and retry. 409, exit 5.
    Contended,
    /// The client sent more requests than it may; wait (`Retry-After`) and ask again. 429, exit 5.
    RateLimited,
    /// The store, a key file or a service Writ needs is unavailable; nothing was written.
    /// 503, exit 5.
    Unavailable,
    /// The store failed in a way retrying will not fix. 500, exit 5.
    Storage,
    /// The target refused or could not be reached. 502, exit 6.
    TargetUnavailable,
    /// The target's registration is not usable (settings, credentials). 422, exit 6.
    TargetInvalid,
    /// The command ran and recorded its outcome, and the outcome is a failure (execution,
    /// verification, an overdue deadline). The API answers these with the record. 500, exit 7.
    ChangeFailed,
    /// The targets were written but the outcome could not be recorded (the store refused it
    /// after the connectors ran): not "nothing written". The attempt is recovered from the
    /// targets once its claim ends. 500, exit 9.
    Unrecorded,
    /// The ledger or a bundle does not verify. 500, exit 8.
    Ledger,
    /// A check the command ran did not pass (policy tests). 422, exit 1.
    CheckFailed,
    /// Anything else. 500, exit 1.
    Internal,
}

impl Kind {
    /// The HTTP status the server answers with.
    pub fn status(self) -> u16 {
        match self {
            Kind::Invalid => 400,
            Kind::Unauthenticated => 401,
            Kind::Forbidden => 403,
            Kind::NotFound => 404,
            Kind::PreconditionFailed => 412,
            Kind::Conflict | Kind::Contended => 409,
            Kind::TooLarge => 413,
            Kind::UriTooLong => 414,
            Kind::UnsupportedMediaType => 415,
            Kind::Unprocessable | Kind::Refused | Kind::TargetInvalid | Kind::CheckFailed => 422,
            Kind::RateLimited => 429,
            Kind::TargetUnavailable => 502,
            Kind::Unavailable => 503,
            Kind::Storage | Kind::ChangeFailed | Kind::Unrecorded | Kind::Ledger | Kind::Internal => 500,
        }
    }

    /// The exit code the CLI ends with (listed in `writ --help`).
    pub fn exit(self) -> u8 {
        match self {
            Kind::CheckFailed | Kind::Internal => exit::OTHER,
            Kind::Invalid
            | Kind::Unprocessable
            | Kind::TooLarge
            | Kind::UriTooLong
            | Kind::UnsupportedMediaType => exit::INPUT,
            Kind::Unauthenticated
            | Kind::Forbidden
            | Kind::Refused
            | Kind::Conflict
            | Kind::PreconditionFailed => exit::REFUSED,
            Kind::NotFound => exit::NOT_FOUND,
            Kind::Contended | Kind::Unavailable | Kind::Storage | Kind::RateLimited => exit::STORE,
            Kind::TargetUnavailable | Kind::TargetInvalid => exit::TARGET,
            Kind::ChangeFailed => exit::CHANGE_FAILED,
            Kind::Unrecorded => exit::UNRECORDED,
            Kind::Ledger => exit::LEDGER,
        }
    }
}

/// The CLI's exit codes, one per group of kinds.
pub mod exit {
    pub const OTHER: u8 = 1;
    pub const INPUT: u8 = 2;
    pub const REFUSED: u8 = 3;
    pub const NOT_FOUND: u8 = 4;
    pub const STORE: u8 = 5;
    pub const TARGET: u8 = 6;
    pub const CHANGE_FAILED: u8 = 7;
    pub const LEDGER: u8 = 8;
    pub const UNRECORDED: u8 = 9;
}

use Kind::*;

/// Every stable error code and its kind. One row per code; `docs/api.md` lists the same.
pub const CODES: &[(&str, Kind)] = &[
    // Input: what was sent cannot be read as asked.
    ("input.actor_mismatch", Invalid),
    ("input.bad_key", Invalid),
    ("input.config", Invalid),
    ("input.database_exists", Invalid),
    ("input.duplicate_operation", Invalid),
    ("input.duration_on_revoke", Invalid),
    ("input.empty_justification", Invalid),
    ("input.idempotency_key", Invalid),
    ("input.invalid_digest", Invalid),
    ("input.invalid_duration", Invalid),
    ("input.invalid_name", Invalid),
    ("input.invalid_path", Invalid),
    ("input.invalid_text", Invalid),
    ("input.invalid_value", Invalid),
    ("input.too_early", Unprocessable),
    ("window.invalid", Unprocessable),
    ("rate.limited", RateLimited),
    ("input.control_character", Invalid),
    ("input.event_mismatch", Invalid),
    ("identity.lookalike", Conflict),
    ("authority.not_yours", Forbidden),
    ("evidence.change_closed", Conflict),
    ("evidence.step_not_reached", Conflict),
    ("evidence.quota_exceeded", Conflict),
    ("input.key_required", Invalid),
    ("input.listen", Invalid),
    ("input.missing", Invalid),
    ("input.missing_field", Invalid),
    ("input.missing_option", Invalid),
    ("input.no_database", Invalid),
    ("input.no_operations", Invalid),
    ("input.not_remote", Invalid),
    ("input.on_behalf_of_self", Invalid),
    ("input.page_limit", Invalid),
    ("input.path_exists", Invalid),
    ("input.server", Invalid),
    ("input.too_large", Invalid),
    ("input.too_many_operations", Invalid),
    ("input.unreadable", Invalid),
    ("request.malformed_json", Invalid),
    ("request.missing_field", Invalid),
    ("request.too_large", TooLarge),
    ("request.uri_too_long", UriTooLong),
    ("request.unreadable_body", Invalid),
    ("request.unsupported_media_type", UnsupportedMediaType),
    ("idempotency.not_supported", Invalid),
    ("idempotency.key_reused", Unprocessable),
    ("idempotency.in_progress", Conflict),
    ("policy.invalid", Unprocessable),
    ("policy.no_tests", Invalid),
    ("policy.tests_failed", CheckFailed),
    ("policy.no_directory", Conflict),
    ("hook.malformed", Invalid),
    ("hook.missing_delivery_id", Invalid),
    ("scim.invalid", Invalid),
    // Who is asking.
    ("auth.missing_token", Unauthenticated),
    ("auth.invalid_token", Unauthenticated),
    ("auth.token_revoked", Unauthenticated),
    ("auth.identity_disabled", Unauthenticated),
    ("auth.token_expired", Unauthenticated),
    ("auth.oidc_refused", Unauthenticated),
    ("auth.session_expired", Unauthenticated),
    ("auth.signin_failed", Unauthenticated),
    ("auth.csrf", Forbidden),
    ("hook.bad_signature", Unauthenticated),
    ("hook.bad_timestamp", Unauthenticated),
    ("hook.missing_signature", Unauthenticated),
    ("hook.no_secret", Unauthenticated),
    ("hook.stale_timestamp", Unauthenticated),
    ("auth.role_required", Forbidden),
    ("identity.inactive", Forbidden),
    ("authority.own_standing", Forbidden),
    ("authority.no_delegation", Forbidden),
    ("auth.vendor_scope", Forbidden),
    // Rules that refuse this actor this action.
    ("sod.self_approval", Forbidden),
    ("sod.self_rejection", Forbidden),
    ("sod.duplicate_approval", Forbidden),
    ("sod.vendor_self_approval", Forbidden),
    ("sod.executor_not_independent", Forbidden),
    ("sod.reviewer_not_independent", Forbidden),
    ("policy.denied", Forbidden),
    ("policy.forbidden", Forbidden),
    ("policy.not_permitted", Forbidden),
    ("policy.duration_exceeded", Forbidden),
    ("policy.ticket_required", Forbidden),
    ("policy.window_required", Forbidden),
    ("policy.window_not_allowed", Forbidden),
    ("policy.no_rollback_owner", Forbidden),
    ("policy.evaluation_error", Forbidden),
    ("policy.revalidation_required", Forbidden),
    ("policy.revalidation_refused", Forbidden),
    ("breakglass.duration_exceeded", Forbidden),
    ("exception.not_yours", Forbidden),
    ("exception.duration_exceeded", Forbidden),
    // The record's own rules.
    ("identity.owner_required", Refused),
    ("identity.owner_on_human", Refused),
    ("identity.owner_not_human", Refused),
    ("identity.orphan", Refused),
    ("identity.not_human", Refused),
    ("breakglass.scope", Refused),
    ("exception.owner_not_human", Refused),
    // Order and state.
    ("approval.expired", Conflict),
    ("window.outside", Conflict),
    ("comment.duplicate", Conflict),
    ("rollback.nothing_to_undo", Conflict),
    ("rollback.open", Conflict),
    ("retention.legal_hold", Conflict),
    ("comment.quota_exceeded", Conflict),
    ("approval.insufficient", Conflict),
    ("approval.not_eligible", Conflict),
    ("state.invalid_transition", Conflict),
    ("state.not_due", Conflict),
    ("state.expiry_irrevocable", Conflict),
    ("breakglass.approval_missing", Conflict),
    ("finding.not_open", Conflict),
    ("finding.remediation_open", Conflict),
    ("automation.not_paused", Conflict),
    ("automation.paused", Conflict),
    ("automation.resume_required", Conflict),
    ("automation.resume_not_allowed", Forbidden),
    ("finding.no_remedy", Conflict),
    ("finding.remediation_not_allowed", Forbidden),
    ("notify.delivered", Conflict),
    ("notify.config", Invalid),
    ("transfer.not_nhi", Conflict),
    ("transfer.identity_offboarded", Conflict),
    ("transfer.owner_invalid", Unprocessable),
    ("transfer.same_owner", Conflict),
    ("transfer.not_allowed", Forbidden),
    ("transfer.self_approval", Forbidden),
    ("transfer.not_pending", Conflict),
    ("transfer.expired", Conflict),
    ("exception.duplicate", Conflict),
    ("intake.already_linked", Conflict),
    ("state.execution_in_progress", Conflict),
    ("hook.delivery_id_reused", Conflict),
    ("scim.conflict", Conflict),
    ("scim.precondition_failed", PreconditionFailed),
    // Not there.
    ("not_found", NotFound),
    ("hook.unknown", NotFound),
    ("policy.unreadable", NotFound),
    ("scim.not_found", NotFound),
    ("target.unknown_entitlement", NotFound),
    // Storage and the services Writ needs.
    ("store.conflict", Contended),
    ("store.unavailable", Unavailable),
    ("witness.state", Unavailable),
    ("store.error", Storage),
    ("ledger.no_hmac_key", Unavailable),
    ("ledger.no_signing_key", Unavailable),
    ("ledger.key_file", Unavailable),
    ("hook.manifest_unavailable", Unavailable),
    ("client.unreachable", Unavailable),
    // Targets.
    ("target.unavailable", TargetUnavailable),
    ("target.conflict", TargetUnavailable),
    ("target.partial_observation", TargetUnavailable),
    ("target.invalid", TargetInvalid),
    // Outcomes recorded as failures.
    ("change.failed", ChangeFailed),
    ("change.verification_failed", ChangeFailed),
    ("change.outcome_unrecorded", Unrecorded),
    ("breakglass.approval_missed", ChangeFailed),
    ("deadline.not_handled", ChangeFailed),
    ("expiry.not_ended", ChangeFailed),
    // The ledger and bundles (each verification problem has its own code).
    ("ledger.verification_failed", Ledger),
    ("ledger.bad_checkpoint", Ledger),
    ("ledger.bad_signature", Ledger),
    ("ledger.corrupt_history", Ledger),
    ("ledger.edited_event", Ledger),
    ("ledger.projection_diverged", Ledger),
    ("ledger.sealed_text_altered", Ledger),
    ("ledger.uncovered_events", Ledger),
    ("ledger.retired_key", Ledger),
    ("ledger.rolled_back", Ledger),
    ("ledger.forked", Ledger),
    ("ledger.witness_quorum", Ledger),
    ("ledger.bad_cosignature", Ledger),
    ("ledger.evidence_altered", Ledger),
    ("ledger.inconsistent_checkpoints", Ledger),
    ("ledger.malformed_checkpoint", Ledger),
    ("ledger.missing_event", Ledger),
    ("ledger.not_included", Ledger),
    ("ledger.out_of_order", Ledger),
    ("ledger.reordered_events", Ledger),
    ("ledger.root_mismatch", Ledger),
    ("ledger.truncated", Ledger),
    ("ledger.undecodable_event", Ledger),
    ("ledger.unknown_key", Ledger),
    ("ledger.wrong_origin", Ledger),
    ("audit.invalid_bundle", Ledger),
    ("ledger.no_checkpoint", Invalid),
    ("ledger.no_trusted_key", Invalid),
    // Everything else.
    ("ledger.bad_key", Internal),
    ("ledger.corrupt_record", Internal),
    ("engine.inconsistent_report", Internal),
    ("audit.io", Internal),
    ("client.unreadable", Internal),
    ("client.http", Internal),
    ("internal", Internal),
    ("internal.export", Internal),
    ("internal.random", Internal),
];

/// Every kind with the sentence `docs/api.md` gives it, in the order the table lists them.
pub const KINDS: &[(Kind, &str)] = &[
    (Kind::Invalid, "the input is malformed or out of range"),
    (Kind::Unauthenticated, "no credentials, or credentials that are not (or no longer) valid"),
    (Kind::Forbidden, "a rule refuses this actor this action: role, separation of duties, policy"),
    (Kind::NotFound, "the thing named does not exist"),
    (Kind::Conflict, "the record's state does not allow it now"),
    (Kind::Contended, "another writer got there first: read again and retry"),
    (Kind::PreconditionFailed, "a condition the request set (`If-Match`) does not hold"),
    (Kind::TooLarge, "the body is larger than the server accepts"),
    (Kind::UriTooLong, "the URI (path and query) is longer than the server accepts"),
    (Kind::UnsupportedMediaType, "the body's media type is not one the operation accepts"),
    (Kind::Unprocessable, "well formed, but its content cannot be used as given"),
    (Kind::Refused, "the record's own rules refuse it (identity kinds and owners, break-glass scope)"),
    (Kind::TargetInvalid, "the target's registration is not usable"),
    (Kind::CheckFailed, "a check the command ran did not pass (CLI only)"),
    (Kind::RateLimited, "too many requests from this address or identity: wait `Retry-After` seconds"),
    (Kind::TargetUnavailable, "the target refused or could not be reached"),
    (Kind::Unavailable, "the store, a key file or a needed service is unavailable; nothing was written"),
    (Kind::Storage, "the store failed in a way retrying will not fix"),
    (Kind::ChangeFailed, "the outcome was recorded and is a failure (the API answers with the record)"),
    (Kind::Ledger, "the ledger or a bundle does not verify"),
    (
        Kind::Unrecorded,
        "the targets were written but the outcome is not recorded yet: it is recovered from the targets when the attempt's claim ends",
    ),
    (Kind::Internal, "anything else"),
];

/// The Markdown table of `docs/api.md`: one line per kind with its status, exit code and codes.
pub fn markdown_table() -> String {
    let mut text = String::from("| status | exit | kind | codes |\n| --- | --- | --- | --- |\n");
    for (kind, sentence) in KINDS {
        let codes: Vec<String> =
            CODES.iter().filter(|(_, k)| k == kind).map(|(code, _)| format!("`{code}`")).collect();
        text.push_str(&format!(
            "| {} | {} | {sentence} | {} |\n",
            kind.status(),
            kind.exit(),
            codes.join(", ")
        ));
    }
    text
}

/// The kind of `code`: its row, or `Internal` for a code with no row.
pub fn kind_of(code: &str) -> Kind {
    CODES.iter().find(|(known, _)| *known == code).map_or(Internal, |(_, kind)| *kind)
}

/// An error as every surface reports it: a stable code and a message a person can act on, and
/// the request field at fault when there is one. Never carries a credential or a sealed value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    /// Stable code; owned when it comes from elsewhere (a server's reply, a verifier report).
    pub code: Cow<'static, str>,
    pub message: String,
    pub field: Option<String>,
}

impl Error {
    pub fn new(code: &'static str, message: impl Into<String>) -> Error {
        Error { code: Cow::Borrowed(code), message: message.into(), field: None }
    }

    /// An error whose code was received (a server's, a report's) rather than written here.
    pub fn received(code: &str, message: impl Into<String>) -> Error {
        Error { code: Cow::Owned(code.to_owned()), message: message.into(), field: None }
    }

    /// An unexpected failure, reported with its whole cause.
    pub fn internal(message: impl Into<String>) -> Error {
        Error::new("internal", message)
    }

    pub fn with_field(mut self, field: impl Into<String>) -> Error {
        self.field = Some(field.into());
        self
    }

    pub fn kind(&self) -> Kind {
        kind_of(&self.code)
    }

    pub fn status(&self) -> u16 {
        self.kind().status()
    }

    pub fn exit(&self) -> u8 {
        self.kind().exit()
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{}] {}", self.code, self.message)
    }
}

impl std::error::Error for Error {}

impl From<EngineError> for Error {
    fn from(error: EngineError) -> Error {
        Error::new(error.code(), error.to_string())
    }
}

impl From<writ_core::Refusal> for Error {
    fn from(refusal: writ_core::Refusal) -> Error {
        Error::new(refusal.code(), refusal.to_string())
    }
}

impl From<writ_store::StoreError> for Error {
    fn from(error: writ_store::StoreError) -> Error {
        Error::from(EngineError::from(error))
    }
}

impl From<AuthError> for Error {
    fn from(error: AuthError) -> Error {
        Error::new(error.code(), error.to_string())
    }
}

impl From<AccessError> for Error {
    fn from(error: AccessError) -> Error {
        match error {
            AccessError::Auth(auth) => auth.into(),
            AccessError::Engine(engine) => engine.into(),
        }
    }
}

impl From<writ_core::access::Forbidden> for Error {
    fn from(error: writ_core::access::Forbidden) -> Error {
        Error::new(error.code(), error.to_string())
    }
}

impl From<writ_intake::IntakeError> for Error {
    fn from(error: writ_intake::IntakeError) -> Error {
        Error::new(error.code(), error.to_string())
    }
}

#[cfg(test)]
mod tests;
