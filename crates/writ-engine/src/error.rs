//! Engine errors: a refusal by the rules, something missing, or a store/target/ledger failure.

use writ_core::Refusal;

pub type Result<T, E = EngineError> = std::result::Result<T, E>;

/// Why an engine operation did not happen. In every case nothing was committed by the failing
/// step (fail closed).
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The rules refused the command (separation of duties, state, validation).
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// A named identity, target or change does not exist.
    #[error("{what} {name:?} not found")]
    NotFound { what: &'static str, name: String },
    /// The store could not read or write; the operation did not happen.
    #[error(transparent)]
    Store(#[from] writ_store::StoreError),
    /// A target refused or could not be reached while planning or observing.
    #[error(transparent)]
    Connector(#[from] writ_connector::ConnectorError),
    /// Stored events could not be decoded.
    #[error(transparent)]
    Ledger(#[from] writ_ledger::RecordError),
    /// No HMAC key is configured, so sensitive values cannot be sealed: nothing is recorded.
    #[error(
        "no HMAC key for sensitive values: Writ records nothing without it (set --hmac-key or WRIT_HMAC_KEY)"
    )]
    NoHmacKey,
    /// The operating system's random source failed.
    #[error("random source unavailable: {0}")]
    Random(String),
    /// Policy refused: Cedar forbade it, a workflow rule denied it, or no approval slot fits.
    #[error(transparent)]
    Denied(#[from] writ_policy::Denial),
    /// An inbound delivery was refused (its code says why).
    #[error("{message}")]
    Intake { code: &'static str, message: String },
    /// A SCIM request was refused (its status and `scimType` say why); nothing was written.
    #[error(transparent)]
    Scim(#[from] writ_scim::ScimError),
    /// Another attempt on the change holds its execution claim; nothing was recorded.
    #[error(
        "{change} is being executed (attempt {attempt} by {executor}, claimed until {until}); \
         wait for it to finish, or for its claim to end and the attempt to be recovered"
    )]
    InProgress {
        change: writ_core::change::ChangeId,
        attempt: usize,
        executor: String,
        until: writ_core::time::Timestamp,
    },
    /// The targets were written but the outcome could not be recorded. The attempt stays in
    /// progress until its claim ends; then it is recovered from the targets.
    #[error(
        "{change}: the targets were written ({written}) but the outcome could not be recorded ({error}); \
         the attempt is recovered from the targets once its claim ends at {until} (`writ change execute` or the server)"
    )]
    OutcomeUnrecorded {
        change: writ_core::change::ChangeId,
        written: String,
        until: writ_core::time::Timestamp,
        error: writ_store::StoreError,
    },
    /// A maintenance window that cannot be used as given: an unknown time zone, a time that is
    /// not one, an end before its start (`detail` says what is expected).
    #[error("invalid maintenance window: {0}")]
    Window(String),
    /// A policy could not be loaded (file, line and reason); the policy in force is unchanged.
    #[error("invalid policy: {0}")]
    Policy(#[from] writ_policy::PolicyError),
}

impl EngineError {
    /// A stable machine-readable code for every error.
    pub fn code(&self) -> &'static str {
        match self {
            EngineError::Refused(refusal) => refusal.code(),
            EngineError::NotFound { .. } => "not_found",
            EngineError::Window(_) => "window.invalid",
            EngineError::Store(writ_store::StoreError::Conflict(_)) => "store.conflict",
            EngineError::Store(writ_store::StoreError::Unavailable(_)) => "store.unavailable",
            EngineError::Store(_) => "store.error",
            EngineError::Connector(writ_connector::ConnectorError::UnknownEntitlement { .. }) => {
                "target.unknown_entitlement"
            }
            EngineError::Connector(writ_connector::ConnectorError::Unavailable { .. }) => {
                "target.unavailable"
            }
            EngineError::Connector(writ_connector::ConnectorError::Conflict { .. }) => "target.conflict",
            EngineError::Connector(writ_connector::ConnectorError::Invalid { .. }) => "target.invalid",
            EngineError::Ledger(_) => "ledger.corrupt_record",
            EngineError::Random(_) => "internal.random",
            EngineError::NoHmacKey => "ledger.no_hmac_key",
            EngineError::Denied(denial) => denial.code,
            EngineError::Policy(_) => "policy.invalid",
            EngineError::InProgress { .. } => "state.execution_in_progress",
            EngineError::OutcomeUnrecorded { .. } => "change.outcome_unrecorded",
            EngineError::Intake { code, .. } => code,
            EngineError::Scim(error) => match error.status {
                404 => "scim.not_found",
                409 => "scim.conflict",
                412 => "scim.precondition_failed",
                _ => "scim.invalid",
            },
        }
    }
}
