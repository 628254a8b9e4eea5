//! The views of the API's other resources: identities and their grants, targets, change
//! summaries, findings, tokens, roles, evidence, exceptions and the ledger's proofs. Each is a
//! struct the server serializes, the CLI deserializes (over `--server`) or builds (locally) and
//! prints, and the OpenAPI document states (`Operation::returns`).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use writ_core::exception::Exception;
use writ_core::identity::{Grant, Identity, Target};
use writ_core::time::Timestamp;
use writ_store::ChangeSummary;

use super::{EvidenceView, text};

#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, PartialEq)]
pub struct IdentityView {
    pub name: String,
    pub kind: String,
    /// The accountable person (non-human identities only).
    pub owner: Option<String>,
    pub vendor: Option<String>,
    pub created_at: String,
    /// Only an active identity authenticates and acts.
    #[schemars(extend("enum" = ["active", "disabled", "offboarded"]))]
    pub state: String,
    /// Where notifications reach it by email, if it has an address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

impl IdentityView {
    pub fn of(identity: &Identity) -> IdentityView {
        IdentityView {
            name: identity.name.to_string(),
            kind: identity.kind.as_str().to_owned(),
            owner: text(&identity.owner),
            vendor: text(&identity.vendor),
            created_at: identity.created_at.to_rfc3339(),
            state: identity.state.as_str().to_owned(),
            email: identity.email.clone(),
        }
    }

    /// The identity again, as the core types it (for the text renderers).
    pub fn identity(&self) -> Result<Identity, writ_core::Refusal> {
        use writ_core::name::{IdentityName, OrgName};
        Ok(Identity {
            name: IdentityName::parse(&self.name)?,
            kind: writ_core::identity::IdentityKind::parse(&self.kind)?,
            owner: self.owner.as_deref().map(IdentityName::parse).transpose()?,
            vendor: self.vendor.as_deref().map(OrgName::parse).transpose()?,
            created_at: time(&self.created_at, "created_at")?,
            state: writ_core::identity::IdentityState::parse(&self.state)?,
            email: self.email.as_deref().map(writ_core::notify::parse_email).transpose()?,
        })
    }
}

/// What disabling, enabling or offboarding an identity did.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, PartialEq)]
pub struct StandingView {
    /// The identity as it now stands.
    pub identity: IdentityView,
    /// The state it was in (equal to `identity.state` if nothing needed to change).
    pub from: String,
    /// Public ids of the tokens this revoked.
    pub tokens_revoked: Vec<String>,
    /// Open changes whose approval by this identity no longer counts.
    pub approvals_withdrawn: Vec<String>,
    /// Non-human identities it owns, flagged for ownership transfer.
    pub owned_flagged: Vec<String>,
}

impl StandingView {
    pub fn of(standing: &writ_engine::standing::Standing) -> StandingView {
        StandingView {
            identity: IdentityView::of(&standing.identity),
            from: standing.from.as_str().to_owned(),
            tokens_revoked: standing.tokens_revoked.clone(),
            approvals_withdrawn: standing.withdrawn.iter().map(ToString::to_string).collect(),
            owned_flagged: standing.flagged.iter().map(ToString::to_string).collect(),
        }
    }
}

/// What offboarding did: the identity stopped acting, and the change that removes what it held
/// (none if it held nothing on any target).
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, PartialEq)]
pub struct OffboardingView {
    #[serde(flatten)]
    pub standing: StandingView,
    /// The leaver (or decommission) change, if one was opened.
    pub change: Option<String>,
    pub change_state: Option<String>,
    /// `leaver` for a person, `decommission` for a non-human identity.
    #[schemars(extend("enum" = ["leaver", "decommission"]))]
    pub event: Option<String>,
    /// The entitlements the change revokes.
    pub revoke: Vec<String>,
}

impl OffboardingView {
    pub fn of(offboarding: &writ_engine::Offboarding) -> OffboardingView {
        let change = offboarding.change.as_ref().map(|r| &r.change);
        OffboardingView {
            standing: StandingView::of(&offboarding.standing),
            change: change.map(|c| c.id.to_string()),
            change_state: change.map(|c| c.state.as_str().to_owned()),
            event: change.map(|c| c.event.as_str().to_owned()),
            revoke: change
                .map(|c| c.ops.iter().map(|op| op.entitlement.to_string()).collect())
                .unwrap_or_default(),
        }
    }
}

/// An identity with what it holds and its roles (`identity show`, `whoami` without grants).
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, PartialEq)]
pub struct IdentityDetailView {
    #[serde(flatten)]
    pub identity: IdentityView,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grants: Option<Vec<GrantView>>,
    pub roles: Vec<String>,
}

#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, PartialEq)]
pub struct GrantView {
    pub target: String,
    pub entitlement: String,
    /// The change that granted it.
    pub change: String,
    pub granted_at: String,
    pub expires_at: Option<String>,
}

impl GrantView {
    pub fn of(grant: &Grant) -> GrantView {
        GrantView {
            target: grant.entitlement.target.to_string(),
            entitlement: grant.entitlement.entitlement.to_string(),
            change: grant.change.to_string(),
            granted_at: grant.granted_at.to_rfc3339(),
            expires_at: grant.expires_at.map(|t| t.to_rfc3339()),
        }
    }

    /// The grant again, as the core types it (for the text renderers).
    pub fn grant(&self, identity: &writ_core::name::IdentityName) -> Result<Grant, writ_core::Refusal> {
        Ok(Grant {
            identity: identity.clone(),
            entitlement: writ_core::name::EntitlementRef::parse(&format!(
                "{}:{}",
                self.target, self.entitlement
            ))?,
            change: writ_core::change::ChangeId::parse(&self.change)?,
            granted_at: time(&self.granted_at, "granted_at")?,
            expires_at: self.expires_at.as_deref().map(|t| time(t, "expires_at")).transpose()?,
        })
    }
}

fn time(text: &str, field: &'static str) -> Result<Timestamp, writ_core::Refusal> {
    Timestamp::parse_rfc3339(text).ok_or_else(|| writ_core::Refusal::InvalidValue {
        field,
        input: text.chars().take(40).collect(),
        expected: "an RFC 3339 time",
    })
}

#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, PartialEq)]
pub struct TargetView {
    pub name: String,
    pub connector: String,
    /// Its checked settings (never secret: a secret is the path of a file).
    pub settings: BTreeMap<String, String>,
    pub created_at: String,
}

impl TargetView {
    pub fn of(target: &Target) -> TargetView {
        TargetView {
            name: target.name.to_string(),
            connector: target.connector.as_str().to_owned(),
            settings: target.settings.iter().cloned().collect(),
            created_at: target.created_at.to_rfc3339(),
        }
    }
}

/// A target's entitlements.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, PartialEq)]
pub struct EntitlementsView {
    pub target: String,
    pub items: Vec<String>,
}

/// One line of the change list.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, PartialEq)]
pub struct SummaryView {
    pub id: String,
    pub kind: String,
    pub state: String,
    pub requester: String,
    pub created_at: String,
    pub updated_at: String,
}

impl SummaryView {
    pub fn of(summary: &ChangeSummary) -> SummaryView {
        SummaryView {
            id: summary.id.to_string(),
            kind: summary.kind.as_str().to_owned(),
            state: summary.state.as_str().to_owned(),
            requester: summary.requester.to_string(),
            created_at: summary.created_at.to_rfc3339(),
            updated_at: summary.updated_at.to_rfc3339(),
        }
    }
}

#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, PartialEq)]
pub struct FindingView {
    pub id: String,
    pub kind: String,
    pub subject: String,
    pub change: Option<String>,
    pub state: String,
    pub detail: String,
    pub opened_at: String,
    pub updated_at: String,
    /// The exception that covers it, while one does.
    pub exception: Option<String>,
    #[schemars(extend("enum" = ["low", "medium", "high", "critical"]))]
    pub severity: String,
    /// The controls it fails, as the policy maps them (`NIST-CSF:PR.AA-05`, `OWASP-NHI:NHI7:2025`).
    pub controls: Vec<String>,
    /// What raised it: `target:NAME` or `registry` for a reconciliation.
    pub scope: Option<String>,
    /// SHA-256 of the observed snapshot that last saw it (an evidence blob).
    pub evidence: Option<String>,
    /// The change opened to fix it; its verification resolves the finding.
    pub remediation: Option<String>,
    pub first_seen: String,
    pub last_seen: String,
}

impl FindingView {
    pub fn of(finding: &writ_core::finding::Finding) -> FindingView {
        FindingView {
            id: finding.id.clone(),
            kind: finding.kind.clone(),
            subject: finding.subject.clone(),
            change: text(&finding.change),
            state: finding.state.as_str().to_owned(),
            detail: finding.detail.clone(),
            opened_at: finding.opened_at.to_rfc3339(),
            updated_at: finding.updated_at.to_rfc3339(),
            exception: finding.exception.clone(),
            severity: finding.severity.as_str().to_owned(),
            controls: finding.controls.clone(),
            scope: finding.scope.clone(),
            evidence: finding.evidence.clone(),
            remediation: text(&finding.remediation),
            first_seen: finding.opened_at.to_rfc3339(),
            last_seen: finding.last_seen.to_rfc3339(),
        }
    }
}

/// An API token's record (never its secret).
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, PartialEq)]
pub struct TokenView {
    pub id: String,
    pub identity: String,
    pub label: String,
    pub created_at: String,
    pub expires_at: String,
    pub revoked_at: Option<String>,
}

impl TokenView {
    pub fn of(info: &writ_core::access::TokenInfo, revoked: Option<Timestamp>) -> TokenView {
        TokenView {
            id: info.id.clone(),
            identity: info.identity.to_string(),
            label: info.label.clone(),
            created_at: info.created_at.to_rfc3339(),
            expires_at: info.expires_at.to_rfc3339(),
            revoked_at: revoked.map(Timestamp::to_rfc3339),
        }
    }
}

/// An identity linked to the identity provider's record of it.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, PartialEq)]
pub struct ScimLinkView {
    pub identity: String,
    pub external_id: String,
}

/// A delegation: `delegate` may act on behalf of `principal` until `until`.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, PartialEq)]
pub struct DelegationView {
    pub principal: String,
    pub delegate: String,
    pub until: String,
    pub created_at: String,
    /// Whether it is in force now (its end not reached).
    pub in_force: bool,
}

impl DelegationView {
    pub fn of(delegation: &writ_core::access::Delegation, now: Timestamp) -> DelegationView {
        DelegationView {
            principal: delegation.principal.to_string(),
            delegate: delegation.delegate.to_string(),
            until: delegation.until.to_rfc3339(),
            created_at: delegation.created_at.to_rfc3339(),
            in_force: delegation.until > now,
        }
    }
}

/// A transfer of an NHI's ownership and its decision.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, PartialEq)]
pub struct TransferView {
    pub id: String,
    pub identity: String,
    /// Its owner when the transfer was asked for.
    pub from: Option<String>,
    pub to: String,
    pub requested_by: String,
    pub reason: String,
    /// pending, accepted, declined, cancelled or superseded.
    pub state: String,
    pub requested_at: String,
    pub expires_at: String,
    /// Pending but past `expires_at`: nobody can decide it any more.
    pub expired: bool,
    pub decided_by: Option<String>,
    pub decided_at: Option<String>,
    pub note: Option<String>,
}

impl TransferView {
    pub fn of(t: &writ_core::transfer::Transfer, now: Timestamp) -> TransferView {
        TransferView {
            id: t.id.to_string(),
            identity: t.identity.to_string(),
            from: t.from.as_ref().map(ToString::to_string),
            to: t.to.to_string(),
            requested_by: t.requested_by.to_string(),
            reason: t.reason.clone(),
            state: t.state.as_str().to_owned(),
            requested_at: t.requested_at.to_rfc3339(),
            expires_at: t.expires_at.to_rfc3339(),
            expired: t.state.is_pending() && !t.is_open_at(now),
            decided_by: t.decided_by.as_ref().map(ToString::to_string),
            decided_at: t.decided_at.map(Timestamp::to_rfc3339),
            note: t.note.clone(),
        }
    }
}

/// A token just issued: its record and, this once, its secret.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, PartialEq)]
pub struct IssuedTokenView {
    #[serde(flatten)]
    pub record: TokenView,
    pub token: String,
}

#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, PartialEq)]
pub struct RoleView {
    pub identity: String,
    pub role: String,
}

/// A role assigned or taken away.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, PartialEq)]
pub struct RoleChangeView {
    pub identity: String,
    pub role: String,
    pub assigned: bool,
}

/// Evidence on a change: the blob's view, the step it belongs to and the event that attached it.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, PartialEq)]
pub struct AttachedEvidenceView {
    #[serde(flatten)]
    pub evidence: EvidenceView,
    pub step: String,
    pub seq: u64,
}

#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, PartialEq)]
pub struct ExceptionView {
    pub id: String,
    pub state: String,
    pub control: String,
    pub subject: String,
    pub owner: String,
    pub requester: String,
    pub justification: String,
    pub compensating_control: String,
    pub requested_at: String,
    pub updated_at: String,
    pub expires_at: String,
    pub renewal_until: Option<String>,
    pub awaiting_approval: bool,
    pub approvals_needed: u8,
    pub approvals: Vec<ExceptionApprovalView>,
}

#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, PartialEq)]
pub struct ExceptionApprovalView {
    pub approver: String,
    pub at: String,
    pub slot: Option<String>,
}

impl ExceptionView {
    pub fn of(e: &Exception) -> ExceptionView {
        ExceptionView {
            id: e.id.to_string(),
            state: e.state.as_str().to_owned(),
            control: e.control.clone(),
            subject: e.subject.clone(),
            owner: e.owner.to_string(),
            requester: e.requester.to_string(),
            justification: e.justification.clone(),
            compensating_control: e.compensating_control.clone(),
            requested_at: e.requested_at.to_rfc3339(),
            updated_at: e.updated_at.to_rfc3339(),
            expires_at: e.expires_at.to_rfc3339(),
            renewal_until: e.renewal.map(Timestamp::to_rfc3339),
            awaiting_approval: e.awaits_approval(),
            approvals_needed: e.approvals_needed,
            approvals: e
                .approvals
                .iter()
                .map(|a| ExceptionApprovalView {
                    approver: a.approver.to_string(),
                    at: a.at.to_rfc3339(),
                    slot: a.slot.clone(),
                })
                .collect(),
        }
    }

    /// Who approved its current round (`NAME (slot)`).
    pub fn approvers(&self) -> Vec<String> {
        self.approvals
            .iter()
            .map(|a| match &a.slot {
                Some(slot) => format!("{} ({slot})", a.approver),
                None => a.approver.clone(),
            })
            .collect()
    }
}

/// A signed checkpoint of the ledger (C2SP signed-note text in `note`).
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, PartialEq)]
pub struct CheckpointView {
    pub size: u64,
    pub root: String,
    pub note: String,
}

impl CheckpointView {
    pub fn of(checkpoint: &writ_store::StoredCheckpoint) -> CheckpointView {
        CheckpointView {
            size: checkpoint.size,
            root: hex::encode(checkpoint.root),
            note: checkpoint.note.clone(),
        }
    }
}

/// The ledger's size, its newest checkpoint and the key that signs checkpoints.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, PartialEq)]
pub struct LedgerStateView {
    pub events: u64,
    pub latest: Option<CheckpointView>,
    pub public_key: Option<String>,
}

/// An inclusion proof of one event against a signed checkpoint (RFC 9162 audit path).
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, PartialEq)]
pub struct InclusionView {
    pub index: u64,
    pub leaf_hash: String,
    pub tree_size: u64,
    pub root: String,
    pub proof: Vec<String>,
    pub checkpoint: String,
}

impl InclusionView {
    pub fn of(proof: &writ_engine::ledger::InclusionProof) -> InclusionView {
        InclusionView {
            index: proof.index,
            leaf_hash: hex::encode(proof.leaf),
            tree_size: proof.checkpoint.size,
            root: hex::encode(proof.checkpoint.root),
            proof: proof.proof.iter().map(hex::encode).collect(),
            checkpoint: proof.checkpoint.note.clone(),
        }
    }
}

/// A consistency proof between two tree sizes (RFC 9162).
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, PartialEq)]
pub struct ConsistencyView {
    pub from: u64,
    pub to: u64,
    pub old_root: String,
    pub new_root: String,
    pub proof: Vec<String>,
}

impl ConsistencyView {
    pub fn of(proof: &writ_engine::ledger::ConsistencyProof) -> ConsistencyView {
        ConsistencyView {
            from: proof.old_size,
            to: proof.new_size,
            old_root: hex::encode(proof.old_root),
            new_root: hex::encode(proof.new_root),
            proof: proof.proof.iter().map(hex::encode).collect(),
        }
    }
}

/// What verifying the ledger found.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, PartialEq)]
pub struct ReportView {
    pub ok: bool,
    pub events: u64,
    pub checkpoints_verified: usize,
    /// The size of the newest verified checkpoint.
    pub covered: u64,
    /// Events no verified checkpoint covers yet.
    pub uncovered: u64,
    pub problems: Vec<ProblemView>,
    /// Registry tables that disagree with what the ledger's events build.
    pub projections: Vec<DivergenceView>,
}

/// A registry table row that disagrees with the ledger.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, PartialEq)]
pub struct DivergenceView {
    pub table: String,
    pub key: String,
    /// What the ledger says (`absent`: no event made the row).
    pub expected: String,
    /// What the table holds (`absent`: the row is missing).
    pub found: String,
}

#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, PartialEq)]
pub struct ProblemView {
    pub code: String,
    pub index: u64,
    pub message: String,
}

impl ReportView {
    /// The ledger's report and the projections' divergences.
    pub fn of(
        report: &writ_ledger::verify::Report,
        divergences: &[writ_engine::projections::Divergence],
    ) -> ReportView {
        ReportView {
            ok: report.ok() && divergences.is_empty(),
            projections: divergences
                .iter()
                .map(|d| DivergenceView {
                    table: d.table.to_owned(),
                    key: d.key.clone(),
                    expected: d.expected.clone(),
                    found: d.found.clone(),
                })
                .collect(),
            events: report.events,
            checkpoints_verified: report.verified_checkpoints.len(),
            covered: report.verified_checkpoints.last().map_or(0, |c| c.size),
            uncovered: report.uncovered,
            problems: report
                .problems
                .iter()
                .map(|p| ProblemView { code: p.code().to_owned(), index: p.index(), message: p.to_string() })
                .collect(),
        }
    }
}

/// A policy reload: the hash of the pack in force and, if it changed, the ledger event.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, PartialEq)]
pub struct PolicyLoadedView {
    pub hash: String,
    pub changed: bool,
    pub ledger_index: Option<u64>,
}

impl PolicyLoadedView {
    pub fn of(loaded: &writ_engine::policy::Loaded) -> PolicyLoadedView {
        match loaded {
            writ_engine::policy::Loaded::Changed { hash, index } => {
                PolicyLoadedView { hash: hash.clone(), changed: true, ledger_index: Some(*index) }
            }
            writ_engine::policy::Loaded::Unchanged { hash } => {
                PolicyLoadedView { hash: hash.clone(), changed: false, ledger_index: None }
            }
        }
    }

    /// The reload again, as the engine types it.
    pub fn loaded(&self) -> writ_engine::policy::Loaded {
        match self.ledger_index {
            Some(index) if self.changed => {
                writ_engine::policy::Loaded::Changed { hash: self.hash.clone(), index }
            }
            _ => writ_engine::policy::Loaded::Unchanged { hash: self.hash.clone() },
        }
    }
}

/// A target just registered, with the entitlements its connector reported (`writ target add`).
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, PartialEq)]
pub struct TargetAddedView {
    #[serde(flatten)]
    pub target: TargetView,
    pub entitlements: Vec<String>,
}

/// A delivery just received (`POST /hooks/NAME`): what became of it, and whether it had been
/// received before (a duplicate changes nothing).
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, PartialEq)]
pub struct ReceiptView {
    #[serde(flatten)]
    pub record: super::DeliveryRecordView,
    pub duplicate: bool,
}

/// Liveness and readiness: `ok` or `ready`.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, PartialEq)]
pub struct StatusView {
    pub status: String,
}

/// A notification and its delivery so far.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, PartialEq)]
pub struct NotificationView {
    /// `NTF-<event index>-<n>`: the `webhook-id` receivers deduplicate on.
    pub id: String,
    /// The ledger index of the event it tells of.
    pub event: u64,
    pub change: Option<String>,
    /// What it tells of (`approval.requested`, `change.verified`, `finding.opened`, …).
    pub kind: String,
    /// An identity, or `group:NAME` for a group's webhook.
    pub recipient: String,
    #[schemars(extend("enum" = ["email", "webhook"]))]
    pub channel: String,
    /// The email address, or the group whose webhook it goes to.
    pub address: String,
    #[schemars(extend("enum" = ["pending", "delivered", "dead"]))]
    pub state: String,
    pub attempts: u32,
    /// When it is tried (again), while pending.
    pub next_at: Option<String>,
    /// What the last failed attempt came to.
    pub last_error: Option<String>,
    pub created_at: String,
    pub delivered_at: Option<String>,
}

impl NotificationView {
    pub fn of(n: &writ_core::notify::Notification) -> NotificationView {
        let pending = n.state == writ_core::notify::NoticeState::Pending;
        NotificationView {
            id: n.id.clone(),
            event: n.event,
            change: text(&n.change),
            kind: n.notice.kind.clone(),
            recipient: n.notice.recipient.clone(),
            channel: n.notice.channel.as_str().to_owned(),
            address: n.notice.address.clone(),
            state: n.state.as_str().to_owned(),
            attempts: n.attempts,
            next_at: pending.then(|| n.next_at.to_rfc3339()),
            last_error: n.last_error.clone(),
            created_at: n.created_at.to_rfc3339(),
            delivered_at: n.delivered_at.map(Timestamp::to_rfc3339),
        }
    }
}
