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
