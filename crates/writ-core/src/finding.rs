//! Findings: what Writ saw that needs a person to act, kept until it is resolved or an
//! approved exception covers it. A break-glass change whose post-hoc approval deadline passed
//! is one; reconciliation (stale access, orphaned service accounts, long-lived secrets,
//! changes made outside Writ) adds the others.

use std::fmt;

use crate::change::ChangeId;
use crate::error::Refusal;
use crate::time::Timestamp;

/// Where a finding stands. `open` needs action; `excepted` is covered by an approved
/// exception until that exception expires; `resolved` is closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FindingState {
    Open,
    Excepted,
    Resolved,
}

impl FindingState {
    pub const ALL: [FindingState; 3] = [FindingState::Open, FindingState::Excepted, FindingState::Resolved];

    pub fn as_str(self) -> &'static str {
        match self {
            FindingState::Open => "open",
            FindingState::Excepted => "excepted",
            FindingState::Resolved => "resolved",
        }
    }

    pub fn parse(input: &str) -> Result<FindingState, Refusal> {
        FindingState::ALL.into_iter().find(|s| s.as_str() == input).ok_or_else(|| Refusal::InvalidValue {
            field: "finding state",
            input: input.chars().take(40).collect(),
            expected: "one of open, excepted, resolved",
        })
    }
}

impl fmt::Display for FindingState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How much a finding matters: what a person should look at first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub const ALL: [Severity; 4] = [Severity::Low, Severity::Medium, Severity::High, Severity::Critical];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    pub fn parse(input: &str) -> Result<Severity, Refusal> {
        Severity::ALL.into_iter().find(|s| s.as_str() == input).ok_or_else(|| Refusal::InvalidValue {
            field: "severity",
            input: input.chars().take(40).collect(),
            expected: "one of low, medium, high, critical",
        })
    }

    /// The severity a finding of `kind` has unless its rule says otherwise: what a finding
    /// recorded before severities existed is read as.
    pub fn of_kind(kind: &str) -> Severity {
        match kind {
            "breakglass.approval_missed"
            | "access.expired_not_revoked"
            | "access.unapproved"
            | "nhi.orphaned" => Severity::High,
            "access.stale" => Severity::Low,
            _ => Severity::Medium,
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One finding. Its id is derived from (kind, subject), so the same problem seen twice (by two
/// instances, or after a restart) is one finding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub id: String,
    /// What kind of problem, as a stable code (`breakglass.approval_missed`, …).
    pub kind: String,
    /// What it is about: a change ID, an identity name, an entitlement.
    pub subject: String,
    /// The change it concerns, if any.
    pub change: Option<ChangeId>,
    /// What a person needs to know to act on it.
    pub detail: String,
    pub state: FindingState,
    pub opened_at: Timestamp,
    pub updated_at: Timestamp,
    /// The exception covering it while `excepted`.
    pub exception: Option<String>,
    pub severity: Severity,
    /// The controls it fails, as the policy maps them (`NIST-CSF:PR.AA-05`,
    /// `OWASP-NHI:NHI7:2025`).
    pub controls: Vec<String>,
    /// What raised it: `reconcile:TARGET` or `reconcile:registry` for reconciliation, `None`
    /// for the engine's own checks. A complete reconciliation of that scope that no longer
    /// sees the problem resolves it.
    pub scope: Option<String>,
    /// SHA-256 (hex) of the observed snapshot that last saw it, kept as evidence.
    pub evidence: Option<String>,
    /// The change opened to fix it (`writ finding remediate`); its verification resolves it.
    pub remediation: Option<ChangeId>,
    /// When it was last seen: its last record, or the last reconciliation that saw it.
    pub last_seen: Timestamp,
}

impl Finding {
    /// Checks the shape of a finding id (`FND-` and 16 lowercase hex digits).
    pub fn parse_id(input: &str) -> Result<&str, Refusal> {
        let hex = input.strip_prefix("FND-").unwrap_or_default();
        if hex.len() == 16 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Ok(input);
        }
        Err(Refusal::InvalidValue {
            field: "finding id",
            input: input.chars().take(40).collect(),
            expected: "FND- followed by 16 lowercase hexadecimal digits",
        })
    }

    /// A new open finding `id` of `kind` about `subject`, first seen `at`, with its kind's
    /// default severity and no controls.
    pub fn new(id: String, kind: &str, subject: &str, detail: String, at: Timestamp) -> Finding {
        Finding {
            id,
            kind: kind.to_owned(),
            subject: subject.to_owned(),
            change: None,
            detail,
            state: FindingState::Open,
            opened_at: at,
            updated_at: at,
            exception: None,
            severity: Severity::of_kind(kind),
            controls: Vec::new(),
            scope: None,
            evidence: None,
            remediation: None,
            last_seen: at,
        }
    }

    /// The type of the ledger event that records this finding reaching its current state
    /// (`opened` only for its first record).
    pub fn event_type(&self, first: bool) -> &'static str {
        match (first, self.state) {
            (true, _) => "finding.opened",
            (false, FindingState::Open) => "finding.reopened",
            (false, FindingState::Excepted) => "finding.excepted",
            (false, FindingState::Resolved) => "finding.resolved",
        }
    }
}
