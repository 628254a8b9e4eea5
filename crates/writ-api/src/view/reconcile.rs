//! Reconciliation's report, and a remediation's answer.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use writ_engine::reconcile::Report;

use super::{ChangeView, FindingView};

/// One reconciliation run: what the target holds against what Writ approved.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, PartialEq)]
pub struct ReconcileView {
    /// `target:NAME`, or `registry` for the owners of non-human identities.
    pub scope: String,
    pub at: String,
    /// (account, entitlement) pairs per situation: linked (held and approved), missing
    /// (approved, not held), unapproved (held with no approved change), expired (held past its
    /// approved end), unmatched (held by, or an account of, no registered identity).
    pub situations: BTreeMap<String, u64>,
    /// Accounts of the target that are no registered identity.
    pub unmatched_accounts: u64,
    /// Credentials read (tokens, leases, static roles, certificates).
    pub credentials: u64,
    /// Whether everything was read. A partial run raises no `access.missing` and resolves
    /// nothing.
    pub complete: bool,
    /// Why it is partial.
    pub partial: Vec<String>,
    /// `"signal"`, or `"no usage signal"` when the target gives none.
    pub usage: String,
    /// SHA-256 of the observed snapshot, kept as an evidence blob.
    pub snapshot: String,
    pub opened: Vec<FindingView>,
    pub reopened: Vec<FindingView>,
    pub resolved: Vec<FindingView>,
    /// Findings seen again that were already open or excepted.
    pub still_open: u64,
    /// The ledger index of the `reconcile.run` event.
    pub index: u64,
}

impl ReconcileView {
    pub fn of(report: &Report) -> ReconcileView {
        let findings = |list: &[writ_core::finding::Finding]| list.iter().map(FindingView::of).collect();
        ReconcileView {
            scope: report.scope.clone(),
            at: report.at.to_rfc3339(),
            situations: report.tally.pairs().map(|(s, n)| (s.as_str().to_owned(), n)).collect(),
            unmatched_accounts: report.unmatched_accounts,
            credentials: report.credentials,
            complete: report.partial.is_empty(),
            partial: report.partial.clone(),
            usage: if report.usage_signal { "signal" } else { "no usage signal" }.to_owned(),
            snapshot: report.snapshot.clone(),
            opened: findings(&report.opened),
            reopened: findings(&report.reopened),
            resolved: findings(&report.resolved),
            still_open: report.still_open,
            index: report.index,
        }
    }
}

impl ReconcileView {
    /// A run as its `reconcile.run` event records it (at ledger `index`): the counts and how
    /// many findings it saw, not which it opened or resolved (those are their own events).
    pub fn of_run(run: &writ_core::reconcile::Run, index: u64) -> ReconcileView {
        ReconcileView {
            scope: run.scope.clone(),
            at: run.at.to_rfc3339(),
            situations: run.tally.pairs().map(|(s, n)| (s.as_str().to_owned(), n)).collect(),
            unmatched_accounts: 0,
            credentials: 0,
            complete: run.partial.is_empty(),
            partial: run.partial.clone(),
            usage: if run.usage_signal { "signal" } else { "no usage signal" }.to_owned(),
            snapshot: run.snapshot.iter().map(|b| format!("{b:02x}")).collect(),
            opened: Vec::new(),
            reopened: Vec::new(),
            resolved: Vec::new(),
            still_open: run.seen.len() as u64,
            index,
        }
    }
}

/// The runs of one `reconcile` request, in order.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, PartialEq)]
pub struct ReconcileRunsView {
    pub runs: Vec<ReconcileView>,
}

/// A remediation: the finding, now carrying its remediation, and the change that fixes it.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, PartialEq)]
pub struct RemediationView {
    pub finding: FindingView,
    pub change: ChangeView,
}

/// A resumed scope of automation: the pause's finding, now resolved, and how many held steps
/// proceeded.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, PartialEq)]
pub struct ResumedView {
    pub scope: String,
    pub finding: FindingView,
    pub settled: u64,
}

impl ResumedView {
    pub fn of(resumed: &writ_engine::automation::Resumed) -> ResumedView {
        ResumedView {
            scope: resumed.finding.subject.clone(),
            finding: FindingView::of(&resumed.finding),
            settled: resumed.settled as u64,
        }
    }
}

/// A usage report as recorded: the target, how many accounts, and the ledger index.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, PartialEq)]
pub struct UsageView {
    pub target: String,
    pub accounts: u64,
    pub index: u64,
}
