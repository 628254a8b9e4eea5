//! `writ.event/v1`: encoding core events to canonical bytes and decoding them back.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use writ_core::Refusal;

use crate::sensitive::{ERASED, HmacKey, Sealer};
use writ_core::access::{Role, TokenInfo};
use writ_core::change::{
    ApprovalRequirement, BusinessEvent, ChangeId, ChangeKind, Controls, ExternalRef, Justification,
    Observation, OpAction, OpOutcome, PlannedOp, RefKind, Window,
};
use writ_core::event::{ChangeEvent, ChangeEventBody, Event, EvidenceRef, RegistryEvent};
use writ_core::identity::{Actor, ConnectorKind, Identity, IdentityKind, IdentityState, Target};
use writ_core::name::{EntitlementName, EntitlementRef, IdentityName, OrgName, TargetName};
use writ_core::time::{Duration, Timestamp};

/// The schema tag every record of this version carries.
pub const SCHEMA: &str = "writ.event/v1";

/// Why bytes could not be decoded into an event.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// Not JSON, or not the shape of a `writ.event/v1` record.
    #[error("malformed event record: {0}")]
    Malformed(String),
    /// A record of a schema this build does not know.
    #[error("unknown event schema {0:?}")]
    UnknownSchema(String),
    /// A field holds a value the domain refuses (for example an invalid name).
    #[error("invalid value in event record: {0}")]
    Invalid(#[from] Refusal),
    /// The bytes are valid JSON but not in RFC 8785 canonical form.
    #[error("event record is not in canonical form")]
    NotCanonical,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope {
    schema: String,
    #[serde(rename = "type")]
    kind: String,
    phase: String,
    change: Option<String>,
    seq: Option<u64>,
    at: String,
    actor: String,
    on_behalf_of: Option<String>,
    evidence: Vec<EvidenceRecord>,
    /// Absent from records of steps no policy decided (and from records before policy as code).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    policy: Option<PolicyRecord>,
    data: serde_json::Value,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyRecord {
    hash: String,
    rules: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    slot: Option<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ControlsRecord {
    tier: String,
    slots: Vec<String>,
    escalate_at: Option<String>,
    escalate_to: Option<String>,
    review_required: bool,
    /// Absent when no rule demands a maintenance window (and in records before windows).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    window_rules: Vec<String>,
}

/// The change a rollback undoes, and who requested it.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RollbackOfRecord {
    origin: String,
    origin_requester: String,
}

/// Where a comment from another system came from.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CommentSourceRecord {
    source: String,
    id: String,
    account: Option<String>,
    written_at: String,
}

/// A maintenance window: UTC instants and the zone it was given in.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WindowRecord {
    start: String,
    end: String,
    zone: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct EvidenceRecord {
    sha256: String,
    label: String,
    media_type: String,
    size: u64,
}

/// A sensitive value as it appears in a record: only its keyed HMAC.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Sealed {
    hmac: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RefRecord {
    kind: String,
    value: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct OpRecord {
    action: String,
    identity: String,
    target: String,
    entitlement: String,
    duration_ms: Option<i64>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct OutcomeRecord {
    op: usize,
    before: bool,
    after: bool,
    reference: Option<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ObservationRecord {
    op: usize,
    present: bool,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResidualRecord {
    identity: String,
    target: String,
    entitlement: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExceptionApprovalRecord {
    approver: String,
    at: String,
    slot: Option<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeliveryData {
    source: String,
    id: String,
    event: String,
    object: Option<String>,
    version: Option<String>,
    sha256: String,
    received_at: String,
    refs: Vec<RefRecord>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields, untagged)]
enum Data {
    Requested {
        kind: String,
        event: String,
        refs: Vec<RefRecord>,
        vendor: Option<String>,
        justification: Sealed,
        ops: Vec<OpRecord>,
        /// Absent for a change with no maintenance window (and in records before windows).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        window: Option<WindowRecord>,
        /// Absent in records before rollback owners.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rollback_owner: Option<String>,
        /// For a rollback: `{origin, origin_requester}`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rollback_of: Option<RollbackOfRecord>,
    },
    RollbackNoted {
        rollback: String,
        rollback_step: String,
    },
    LegalHold {
        held: bool,
        reason: Sealed,
    },
    Erased {
        retention_class: String,
        rule: String,
        values: u32,
        blobs: Vec<String>,
    },
    Validated {
        required_approvals: u8,
        approval_validity_ms: i64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        controls: Option<ControlsRecord>,
    },
    Revalidated {
        required_approvals: u8,
        approval_validity_ms: i64,
        controls: ControlsRecord,
        kept: Vec<String>,
        reason: String,
    },
    Escalated {
        to: String,
        people: Vec<String>,
    },
    BreakGlass {
        approval_due: String,
        required_approvals: u8,
        approval_validity_ms: i64,
        controls: ControlsRecord,
    },
    Finding {
        id: String,
        kind: String,
        subject: String,
        change: Option<String>,
        detail: String,
        state: String,
        opened_at: String,
        exception: Option<String>,
        note: String,
        /// Absent from findings recorded before severities: read as the kind's default.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        severity: Option<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        controls: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        scope: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        evidence: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        remediation: Option<String>,
    },
    Exception {
        id: String,
        control: String,
        subject: String,
        owner: String,
        requester: String,
        justification: String,
        compensating_control: String,
        state: String,
        requested_at: String,
        expires_at: String,
        renewal: Option<String>,
        approvals_needed: u8,
        approvals: Vec<ExceptionApprovalRecord>,
        version: u64,
        note: String,
        /// The closest warning given that the term ends (absent before warnings existed, and
        /// until one is given).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        warned_ms: Option<i64>,
    },
    PolicyLoaded {
        hash: String,
        files: Vec<String>,
    },
    Approved {
        expires_at: String,
    },
    Reason {
        reason: Sealed,
    },
    Started {
        attempt: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        claimed_until: Option<String>,
    },
    Recovered {
        attempt: u32,
        outcomes: Vec<OutcomeRecord>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    Implemented {
        outcomes: Vec<OutcomeRecord>,
    },
    Failed {
        error: String,
        outcomes: Vec<OutcomeRecord>,
    },
    Verified {
        observations: Vec<ObservationRecord>,
    },
    VerificationFailed {
        observations: Vec<ObservationRecord>,
        mismatches: Vec<usize>,
        /// Absent from records written before cleanups were checked for residual access.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        residual: Vec<ResidualRecord>,
    },
    Reviewed {
        notes: Sealed,
    },
    Commented {
        step: String,
        text: Sealed,
        /// Absent for a comment made in Writ.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        source: Option<CommentSourceRecord>,
        #[serde(default, skip_serializing_if = "is_false")]
        late: bool,
    },
    EvidenceAttached {
        step: String,
        name: Sealed,
        /// Absent (false) in records written before evidence could be late.
        #[serde(default, skip_serializing_if = "is_false")]
        late: bool,
    },
    IdentityAdded {
        name: String,
        kind: String,
        owner: Option<String>,
        vendor: Option<String>,
        /// Absent in records written before identities had contact addresses.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        email: Option<String>,
    },
    TargetAdded {
        name: String,
        connector: String,
        settings: BTreeMap<String, String>,
    },
    TokenIssued {
        id: String,
        identity: String,
        label: String,
        expires_at: String,
    },
    TokenRevoked {
        id: String,
        identity: String,
    },
    ScimLinked {
        identity: String,
        external_id: String,
    },
    Delegation {
        principal: String,
        delegate: String,
        until: Option<String>,
    },
    IdentityState {
        identity: String,
        from: String,
        to: String,
        reason: String,
        tokens_revoked: Vec<String>,
    },
    Role {
        identity: String,
        role: String,
    },
    ExpiryOpened {
        origin: String,
        requester: String,
        due_at: String,
        ops: Vec<OpRecord>,
    },
    Alert {
        reason: String,
    },
    Linked {
        delivery: DeliveryData,
        late: bool,
    },
    ExpiryWarned {
        holder: String,
        grant: String,
        ends_at: String,
        before_ms: i64,
    },
    Delivery {
        delivery: DeliveryData,
        outcome: String,
        changes: Vec<String>,
        detail: String,
        attempts: u32,
    },
    DeliveryRefused {
        source: String,
        reason: String,
        delivery: Option<String>,
        sha256: String,
    },
    RefusalsCounted {
        source: String,
        reason: String,
        from: String,
        count: u64,
        samples: Vec<String>,
    },
    ProjectionsRepaired {
        repaired: Vec<String>,
    },
    ErasureRequested {
        erasure: String,
        subject: String,
        reference: String,
    },
    ErasureApproved {
        erasure: String,
    },
    LedgerKey {
        key: String,
    },
    Usage {
        target: String,
        source: String,
        /// `[account, last used]` pairs.
        used: Vec<(String, String)>,
    },
    Reconciled {
        scope: String,
        snapshot: String,
        snapshot_size: u64,
        situations: BTreeMap<String, u64>,
        partial: Vec<String>,
        usage_signal: bool,
        seen: Vec<String>,
    },
    Transfer {
        id: String,
        identity: String,
        from: Option<String>,
        to: String,
        requested_by: String,
        reason: String,
        requested_at: String,
        expires_at: String,
        state: String,
        decided_by: Option<String>,
        decided_at: Option<String>,
        note: Option<String>,
        supersedes: Option<String>,
    },
}

fn delivery_data(d: &writ_core::intake::Delivery) -> DeliveryData {
    DeliveryData {
        source: d.source.to_string(),
        id: d.id.clone(),
        event: d.event.clone(),
        object: d.object.clone(),
        version: d.version.map(Timestamp::to_rfc3339),
        sha256: hex(&d.sha256),
        received_at: d.received_at.to_rfc3339(),
        refs: refs_record(&d.refs),
    }
}

fn refs_record(refs: &[ExternalRef]) -> Vec<RefRecord> {
    refs.iter().map(|r| RefRecord { kind: r.kind.as_str().to_owned(), value: r.value().to_owned() }).collect()
}

fn refs_from(refs: Vec<RefRecord>) -> Result<Vec<ExternalRef>, RecordError> {
    Ok(refs
        .into_iter()
        .map(|r| ExternalRef::new(RefKind::parse(&r.kind)?, &r.value))
        .collect::<Result<_, _>>()?)
}

fn delivery_from(d: DeliveryData) -> Result<writ_core::intake::Delivery, RecordError> {
    use writ_core::intake::{Delivery, key};
    let sha256 = unhex(&d.sha256)
        .ok_or_else(|| RecordError::Malformed(format!("bad delivery digest {:?}", d.sha256)))?;
    Ok(Delivery {
        source: writ_core::name::SourceName::parse(&d.source)?,
        id: key(&d.id, "delivery id")?,
        event: key(&d.event, "event type")?,
        object: d.object.as_deref().map(|o| key(o, "object")).transpose()?,
        version: d.version.as_deref().map(parse_time).transpose()?,
        sha256,
        received_at: parse_time(&d.received_at)?,
        refs: refs_from(d.refs)?,
    })
}

/// Encodes an event to its canonical bytes. Sensitive values are replaced by their HMAC under
/// `key`; the returned pairs (hmac, clear text) are for the caller to keep outside the ledger.
pub fn encode(event: &Event, key: &HmacKey) -> (Vec<u8>, Vec<(String, String)>) {
    let mut sealer = Sealer::new(key);
    let envelope = match event {
        Event::Change(e) => Envelope {
            schema: SCHEMA.to_owned(),
            kind: e.body.type_name().to_owned(),
            phase: e.body.phase().as_str().to_owned(),
            change: Some(e.change.to_string()),
            seq: Some(e.seq),
            at: e.at.to_rfc3339(),
            actor: e.actor.as_string(),
            on_behalf_of: e.on_behalf_of.as_ref().map(ToString::to_string),
            evidence: e
                .evidence
                .iter()
                .map(|r| EvidenceRecord {
                    sha256: hex(&r.digest),
                    label: r.label.clone(),
                    media_type: r.media_type.clone(),
                    size: r.size,
                })
                .collect(),
            policy: e.policy.as_ref().map(policy_record),
            data: data_value(change_data(&e.body, &mut sealer)),
        },
        Event::Registry(r) => Envelope {
            schema: SCHEMA.to_owned(),
            kind: r.type_name().to_owned(),
            phase: writ_core::event::Phase::Registry.as_str().to_owned(),
            change: None,
            seq: None,
            at: r.at().to_rfc3339(),
            actor: r.actor().as_string(),
            on_behalf_of: None,
            evidence: Vec::new(),
            policy: r.policy().map(policy_record),
            data: data_value(registry_data(r)),
        },
    };
    // Serialising plain structs of strings, integers and booleans cannot fail.
    (serde_json_canonicalizer::to_vec(&envelope).unwrap_or_default(), sealer.into_sealed())
}

fn policy_record(p: &writ_core::event::PolicyStamp) -> PolicyRecord {
    PolicyRecord { hash: p.hash.clone(), rules: p.rules.clone(), slot: p.slot.clone() }
}

fn policy_stamp(p: PolicyRecord) -> writ_core::event::PolicyStamp {
    writ_core::event::PolicyStamp { hash: p.hash, rules: p.rules, slot: p.slot }
}

/// Decodes canonical bytes back into an event, refusing non-canonical or unknown records.
/// `open` returns the clear text of a sealed value if it is still kept; otherwise the value
/// decodes as [`ERASED`].
pub fn decode(bytes: &[u8], open: &dyn Fn(&str) -> Option<String>) -> Result<Event, RecordError> {
    let envelope: Envelope =
        serde_json::from_slice(bytes).map_err(|e| RecordError::Malformed(e.to_string()))?;
    if envelope.schema != SCHEMA {
        return Err(RecordError::UnknownSchema(envelope.schema));
    }
    let canonical =
        serde_json_canonicalizer::to_vec(&envelope).map_err(|e| RecordError::Malformed(e.to_string()))?;
    if canonical != bytes {
        return Err(RecordError::NotCanonical);
    }
    let at = parse_time(&envelope.at)?;
    let actor = Actor::parse(&envelope.actor)?;
    let data: Data =
        serde_json::from_value(envelope.data).map_err(|e| RecordError::Malformed(e.to_string()))?;
    if let Some(change) = envelope.change {
        let body = change_body(&envelope.kind, data, open)?;
        let seq = envelope.seq.ok_or_else(|| RecordError::Malformed("change event without seq".into()))?;
        let on_behalf_of = envelope.on_behalf_of.as_deref().map(IdentityName::parse).transpose()?;
        let evidence = envelope
            .evidence
            .into_iter()
            .map(|r| {
                let digest = unhex(&r.sha256)
                    .ok_or_else(|| RecordError::Malformed(format!("bad evidence digest {:?}", r.sha256)))?;
                Ok(EvidenceRef { digest, label: r.label, media_type: r.media_type, size: r.size })
            })
            .collect::<Result<Vec<_>, RecordError>>()?;
        return Ok(Event::Change(ChangeEvent {
            change: ChangeId::parse(&change)?,
            seq,
            at,
            actor,
            on_behalf_of,
            body,
            evidence,
            policy: envelope.policy.map(policy_stamp),
        }));
    }
    let registry = match (envelope.kind.as_str(), data) {
        ("registry.identity_added", Data::IdentityAdded { name, kind, owner, vendor, email }) => {
            RegistryEvent::IdentityAdded {
                actor,
                identity: Identity {
                    name: IdentityName::parse(&name)?,
                    kind: IdentityKind::parse(&kind)?,
                    owner: owner.as_deref().map(IdentityName::parse).transpose()?,
                    vendor: vendor.as_deref().map(OrgName::parse).transpose()?,
                    created_at: at,
                    state: IdentityState::Active,
                    email: email.as_deref().map(writ_core::notify::parse_email).transpose()?,
                },
            }
        }
        ("registry.scim_linked", Data::ScimLinked { identity, external_id }) => {
            RegistryEvent::ScimLinked { actor, identity: IdentityName::parse(&identity)?, external_id, at }
        }
        ("access.delegation_granted", Data::Delegation { principal, delegate, until: Some(until) }) => {
            RegistryEvent::DelegationGranted {
                actor,
                delegation: writ_core::access::Delegation {
                    principal: IdentityName::parse(&principal)?,
                    delegate: IdentityName::parse(&delegate)?,
                    until: parse_time(&until)?,
                    created_at: at,
                },
            }
        }
        ("access.delegation_revoked", Data::Delegation { principal, delegate, until: None }) => {
            RegistryEvent::DelegationRevoked {
                actor,
                principal: IdentityName::parse(&principal)?,
                delegate: IdentityName::parse(&delegate)?,
                at,
            }
        }
        ("registry.identity_state", Data::IdentityState { identity, from, to, reason, tokens_revoked }) => {
            RegistryEvent::IdentityState {
                actor,
                identity: IdentityName::parse(&identity)?,
                from: IdentityState::parse(&from)?,
                to: IdentityState::parse(&to)?,
                reason,
                tokens_revoked,
                at,
            }
        }
        ("registry.target_added", Data::TargetAdded { name, connector, settings }) => {
            RegistryEvent::TargetAdded {
                actor,
                target: Target {
                    name: TargetName::parse(&name)?,
                    connector: ConnectorKind::parse(&connector)?,
                    settings: settings.into_iter().collect(),
                    created_at: at,
                },
            }
        }
        ("access.token_issued", Data::TokenIssued { id, identity, label, expires_at }) => {
            RegistryEvent::TokenIssued {
                actor,
                token: TokenInfo {
                    id,
                    identity: IdentityName::parse(&identity)?,
                    label,
                    created_at: at,
                    expires_at: parse_time(&expires_at)?,
                },
            }
        }
        ("access.token_revoked", Data::TokenRevoked { id, identity }) => {
            RegistryEvent::TokenRevoked { actor, id, identity: IdentityName::parse(&identity)?, at }
        }
        ("access.role_granted", Data::Role { identity, role }) => RegistryEvent::RoleGranted {
            actor,
            identity: IdentityName::parse(&identity)?,
            role: Role::parse(&role)?,
            at,
        },
        ("access.role_revoked", Data::Role { identity, role }) => RegistryEvent::RoleRevoked {
            actor,
            identity: IdentityName::parse(&identity)?,
            role: Role::parse(&role)?,
            at,
        },
        ("policy.loaded", Data::PolicyLoaded { hash, files }) => {
            RegistryEvent::PolicyLoaded { actor, hash, files, at }
        }
        (
            kind @ ("finding.opened"
            | "finding.reopened"
            | "finding.excepted"
            | "finding.resolved"
            | "finding.remediation_opened"
            | "finding.changed"),
            Data::Finding {
                id,
                kind: finding_kind,
                subject,
                change,
                detail,
                state,
                opened_at,
                exception,
                note,
                severity,
                controls,
                scope,
                evidence,
                remediation,
            },
        ) => {
            let severity = match severity {
                Some(text) => writ_core::finding::Severity::parse(&text)?,
                None => writ_core::finding::Severity::of_kind(&finding_kind),
            };
            let finding = writ_core::finding::Finding {
                id,
                kind: finding_kind,
                subject,
                change: change.as_deref().map(ChangeId::parse).transpose()?,
                detail,
                state: writ_core::finding::FindingState::parse(&state)?,
                opened_at: parse_time(&opened_at)?,
                updated_at: at,
                exception,
                severity,
                controls,
                scope,
                evidence,
                remediation: remediation.as_deref().map(ChangeId::parse).transpose()?,
                last_seen: at,
            };
            if kind == "finding.remediation_opened" {
                RegistryEvent::FindingRemediation { actor, finding, note }
            } else if kind == "finding.changed" {
                RegistryEvent::FindingChanged { actor, finding, note }
            } else {
                let first = kind == "finding.opened";
                if finding.event_type(first) != kind {
                    return Err(RecordError::Malformed(format!("{kind} for a finding that is {state}")));
                }
                RegistryEvent::Finding { actor, finding, first, note }
            }
        }
        (kind, data @ Data::Exception { .. }) if kind.starts_with("exception.") => {
            let kind = writ_core::exception::ExceptionEventKind::parse(kind)?;
            let (exception, note) = exception_from(data, at)?;
            RegistryEvent::Exception {
                actor,
                exception: Box::new(exception),
                kind,
                note,
                policy: envelope.policy.map(policy_stamp),
            }
        }
        (kind, Data::Delivery { delivery, outcome, changes, detail, attempts })
            if kind.starts_with("intake.") =>
        {
            RegistryEvent::Delivery {
                actor,
                kind: writ_core::intake::DeliveryEventKind::parse(kind)?,
                record: Box::new(writ_core::intake::DeliveryRecord {
                    delivery: delivery_from(delivery)?,
                    outcome: writ_core::intake::Outcome::parse(&outcome)?,
                    changes: changes.iter().map(|c| ChangeId::parse(c)).collect::<Result<_, _>>()?,
                    detail,
                    attempts,
                    updated_at: at,
                }),
            }
        }
        ("intake.refused", Data::DeliveryRefused { source, reason, delivery, sha256 }) => {
            RegistryEvent::DeliveryRefused {
                actor,
                refused: Box::new(writ_core::intake::RefusedDelivery {
                    source: writ_core::name::SourceName::parse(&source)?,
                    reason,
                    delivery,
                    sha256: unhex(&sha256)
                        .ok_or_else(|| RecordError::Malformed(format!("bad delivery digest {sha256:?}")))?,
                    at,
                }),
            }
        }
        ("intake.refusals_counted", Data::RefusalsCounted { source, reason, from, count, samples }) => {
            RegistryEvent::RefusalsCounted {
                actor,
                source: writ_core::name::SourceName::parse(&source)?,
                reason,
                from: parse_time(&from)?,
                at,
                count,
                samples,
            }
        }
        ("ledger.key_added", Data::LedgerKey { key }) => {
            RegistryEvent::LedgerKey { actor, key, retired: false, at }
        }
        ("ledger.key_retired", Data::LedgerKey { key }) => {
            RegistryEvent::LedgerKey { actor, key, retired: true, at }
        }
        ("erasure.requested", Data::ErasureRequested { erasure, subject, reference }) => {
            RegistryEvent::ErasureRequested {
                actor,
                id: erasure,
                subject: IdentityName::parse(&subject)?,
                reference,
                at,
            }
        }
        ("erasure.approved", Data::ErasureApproved { erasure }) => {
            RegistryEvent::ErasureApproved { actor, id: erasure, at }
        }
        ("ledger.projections_repaired", Data::ProjectionsRepaired { repaired }) => {
            RegistryEvent::ProjectionsRepaired { actor, repaired, at }
        }
        ("usage.reported", Data::Usage { target, source, used }) => {
            let entries = used
                .into_iter()
                .map(|(account, last)| Ok((account, parse_time(&last)?)))
                .collect::<Result<Vec<_>, RecordError>>()?;
            RegistryEvent::UsageReported { actor, target: TargetName::parse(&target)?, source, entries, at }
        }
        (
            "reconcile.run",
            Data::Reconciled { scope, snapshot, snapshot_size, situations, partial, usage_signal, seen },
        ) => {
            use writ_core::reconcile::{Run, Situation, Tally};
            let snapshot = unhex(&snapshot)
                .ok_or_else(|| RecordError::Malformed(format!("bad snapshot digest {snapshot:?}")))?;
            let pairs = situations
                .iter()
                .map(|(name, count)| Ok((Situation::parse(name)?, *count)))
                .collect::<Result<Vec<_>, Refusal>>()?;
            let run = Run {
                scope,
                at,
                snapshot,
                snapshot_size,
                tally: Tally::from_pairs(pairs),
                partial,
                usage_signal,
                seen,
            };
            RegistryEvent::Reconciled { actor, run: Box::new(run) }
        }
        (kind, data @ Data::Transfer { .. }) if kind.starts_with("identity.transfer_") => {
            let (transfer, supersedes) = transfer_from(data)?;
            if transfer.state.event_type() != kind {
                return Err(RecordError::Malformed(format!(
                    "{kind} for a transfer that is {}",
                    transfer.state
                )));
            }
            RegistryEvent::Transfer { actor, transfer: Box::new(transfer), supersedes }
        }
        (other, _) => {
            return Err(RecordError::Malformed(format!("unexpected data for {other}")));
        }
    };
    Ok(Event::Registry(registry))
}

fn is_false(value: &bool) -> bool {
    !*value
}

fn data_value(data: Data) -> serde_json::Value {
    serde_json::to_value(data).unwrap_or(serde_json::Value::Null)
}

fn change_data(body: &ChangeEventBody, sealer: &mut Sealer<'_>) -> Data {
    let mut seal = |value: &str| Sealed { hmac: sealer.seal(value) };
    let outcomes = |o: &[OpOutcome]| {
        o.iter()
            .map(|o| OutcomeRecord {
                op: o.op,
                before: o.before,
                after: o.after,
                reference: o.reference.clone(),
            })
            .collect()
    };
    let observations =
        |o: &[Observation]| o.iter().map(|o| ObservationRecord { op: o.op, present: o.present }).collect();
    match body {
        ChangeEventBody::Requested {
            kind,
            event,
            refs,
            vendor,
            justification,
            ops,
            window,
            rollback_owner,
            rollback_of,
        } => Data::Requested {
            kind: kind.as_str().to_owned(),
            event: event.as_str().to_owned(),
            refs: refs_record(refs),
            vendor: vendor.as_ref().map(ToString::to_string),
            justification: seal(justification.as_str()),
            ops: op_records(ops),
            window: window.as_ref().map(|w| WindowRecord {
                start: w.start.to_rfc3339(),
                end: w.end.to_rfc3339(),
                zone: w.zone.clone(),
            }),
            rollback_owner: rollback_owner.as_ref().map(ToString::to_string),
            rollback_of: rollback_of.as_ref().map(|r| RollbackOfRecord {
                origin: r.origin.to_string(),
                origin_requester: r.origin_requester.to_string(),
            }),
        },
        ChangeEventBody::LegalHold { held, reason } => Data::LegalHold { held: *held, reason: seal(reason) },
        ChangeEventBody::Erased { class, rule, values, blobs } => Data::Erased {
            retention_class: class.as_str().to_owned(),
            rule: rule.clone(),
            values: *values,
            blobs: blobs.iter().map(|b| hex(b)).collect(),
        },
        ChangeEventBody::RollbackNoted { rollback, step } => {
            Data::RollbackNoted { rollback: rollback.to_string(), rollback_step: step.as_str().to_owned() }
        }
        ChangeEventBody::ExpiryOpened { origin, requester, due_at, ops } => Data::ExpiryOpened {
            origin: origin.to_string(),
            requester: requester.to_string(),
            due_at: due_at.to_rfc3339(),
            ops: op_records(ops),
        },
        ChangeEventBody::AlertRaised { reason } => Data::Alert { reason: reason.clone() },
        ChangeEventBody::ExpiryWarned { identity, entitlement, ends_at, before } => Data::ExpiryWarned {
            holder: identity.to_string(),
            grant: entitlement.to_string(),
            ends_at: ends_at.to_rfc3339(),
            before_ms: before.as_millis(),
        },
        ChangeEventBody::Linked { delivery, late } => {
            Data::Linked { delivery: delivery_data(delivery), late: *late }
        }
        ChangeEventBody::Validated { requirement, controls } => Data::Validated {
            required_approvals: requirement.approvals,
            approval_validity_ms: requirement.validity.as_millis(),
            controls: controls.as_deref().map(controls_record),
        },
        ChangeEventBody::Revalidated { requirement, controls, kept, reason } => Data::Revalidated {
            required_approvals: requirement.approvals,
            approval_validity_ms: requirement.validity.as_millis(),
            controls: controls_record(controls),
            kept: kept.iter().map(ToString::to_string).collect(),
            reason: reason.clone(),
        },
        ChangeEventBody::Escalated { to, people } => {
            Data::Escalated { to: to.clone(), people: people.iter().map(ToString::to_string).collect() }
        }
        ChangeEventBody::BreakGlass { approval_due, requirement, controls } => Data::BreakGlass {
            approval_due: approval_due.to_rfc3339(),
            required_approvals: requirement.approvals,
            approval_validity_ms: requirement.validity.as_millis(),
            controls: controls_record(controls),
        },
        ChangeEventBody::Approved { expires_at } => Data::Approved { expires_at: expires_at.to_rfc3339() },
        ChangeEventBody::Rejected { reason }
        | ChangeEventBody::Cancelled { reason }
        | ChangeEventBody::Expired { reason } => Data::Reason { reason: seal(reason) },
        ChangeEventBody::ExecutionStarted { attempt, claimed_until } => {
            Data::Started { attempt: *attempt, claimed_until: claimed_until.map(Timestamp::to_rfc3339) }
        }
        ChangeEventBody::Implemented { outcomes: o } => Data::Implemented { outcomes: outcomes(o) },
        ChangeEventBody::ExecutionFailed { error, outcomes: o } => {
            Data::Failed { error: error.clone(), outcomes: outcomes(o) }
        }
        ChangeEventBody::AttemptRecovered { attempt, outcomes: o, error } => {
            Data::Recovered { attempt: *attempt, outcomes: outcomes(o), error: error.clone() }
        }
        ChangeEventBody::Verified { observations: o } => Data::Verified { observations: observations(o) },
        ChangeEventBody::VerificationFailed { observations: o, mismatches, residual } => {
            Data::VerificationFailed {
                observations: observations(o),
                mismatches: mismatches.clone(),
                residual: residual
                    .iter()
                    .map(|h| ResidualRecord {
                        identity: h.identity.to_string(),
                        target: h.entitlement.target.to_string(),
                        entitlement: h.entitlement.entitlement.to_string(),
                    })
                    .collect(),
            }
        }
        ChangeEventBody::Reviewed { notes } => Data::Reviewed { notes: seal(notes) },
        ChangeEventBody::EvidenceAttached { step, name, late } => {
            Data::EvidenceAttached { step: step.as_str().to_owned(), name: seal(name), late: *late }
        }
        ChangeEventBody::Commented { step, text, source, late } => Data::Commented {
            step: step.as_str().to_owned(),
            text: seal(text),
            source: source.as_ref().map(|s| CommentSourceRecord {
                source: s.source.to_string(),
                id: s.id.clone(),
                account: s.account.clone(),
                written_at: s.written_at.to_rfc3339(),
            }),
            late: *late,
        },
    }
}

fn registry_data(event: &RegistryEvent) -> Data {
    match event {
        RegistryEvent::ErasureRequested { id, subject, reference, .. } => Data::ErasureRequested {
            erasure: id.clone(),
            subject: subject.to_string(),
            reference: reference.clone(),
        },
        RegistryEvent::ErasureApproved { id, .. } => Data::ErasureApproved { erasure: id.clone() },
        RegistryEvent::IdentityAdded { identity, .. } => Data::IdentityAdded {
            name: identity.name.to_string(),
            kind: identity.kind.as_str().to_owned(),
            owner: identity.owner.as_ref().map(ToString::to_string),
            vendor: identity.vendor.as_ref().map(ToString::to_string),
            email: identity.email.clone(),
        },
        RegistryEvent::TargetAdded { target, .. } => Data::TargetAdded {
            name: target.name.to_string(),
            connector: target.connector.as_str().to_owned(),
            settings: target.settings.iter().cloned().collect(),
        },
        RegistryEvent::TokenIssued { token, .. } => Data::TokenIssued {
            id: token.id.clone(),
            identity: token.identity.to_string(),
            label: token.label.clone(),
            expires_at: token.expires_at.to_rfc3339(),
        },
        RegistryEvent::TokenRevoked { id, identity, .. } => {
            Data::TokenRevoked { id: id.clone(), identity: identity.to_string() }
        }
        RegistryEvent::ScimLinked { identity, external_id, .. } => {
            Data::ScimLinked { identity: identity.to_string(), external_id: external_id.clone() }
        }
        RegistryEvent::DelegationGranted { delegation, .. } => Data::Delegation {
            principal: delegation.principal.to_string(),
            delegate: delegation.delegate.to_string(),
            until: Some(delegation.until.to_rfc3339()),
        },
        RegistryEvent::DelegationRevoked { principal, delegate, .. } => {
            Data::Delegation { principal: principal.to_string(), delegate: delegate.to_string(), until: None }
        }
        RegistryEvent::IdentityState { identity, from, to, reason, tokens_revoked, .. } => {
            Data::IdentityState {
                identity: identity.to_string(),
                from: from.as_str().to_owned(),
                to: to.as_str().to_owned(),
                reason: reason.clone(),
                tokens_revoked: tokens_revoked.clone(),
            }
        }
        RegistryEvent::RoleGranted { identity, role, .. }
        | RegistryEvent::RoleRevoked { identity, role, .. } => {
            Data::Role { identity: identity.to_string(), role: role.as_str().to_owned() }
        }
        RegistryEvent::PolicyLoaded { hash, files, .. } => {
            Data::PolicyLoaded { hash: hash.clone(), files: files.clone() }
        }
        RegistryEvent::Exception { exception: e, note, .. } => Data::Exception {
            id: e.id.to_string(),
            control: e.control.clone(),
            subject: e.subject.clone(),
            owner: e.owner.to_string(),
            requester: e.requester.to_string(),
            justification: e.justification.clone(),
            compensating_control: e.compensating_control.clone(),
            state: e.state.as_str().to_owned(),
            requested_at: e.requested_at.to_rfc3339(),
            expires_at: e.expires_at.to_rfc3339(),
            renewal: e.renewal.map(Timestamp::to_rfc3339),
            approvals_needed: e.approvals_needed,
            approvals: e
                .approvals
                .iter()
                .map(|a| ExceptionApprovalRecord {
                    approver: a.approver.to_string(),
                    at: a.at.to_rfc3339(),
                    slot: a.slot.clone(),
                })
                .collect(),
            warned_ms: e.warned.map(writ_core::time::Duration::as_millis),
            version: e.version,
            note: note.clone(),
        },
        RegistryEvent::Delivery { record, .. } => Data::Delivery {
            delivery: delivery_data(&record.delivery),
            outcome: record.outcome.as_str().to_owned(),
            changes: record.changes.iter().map(ToString::to_string).collect(),
            detail: record.detail.clone(),
            attempts: record.attempts,
        },
        RegistryEvent::RefusalsCounted { source, reason, from, count, samples, .. } => {
            Data::RefusalsCounted {
                source: source.to_string(),
                reason: reason.clone(),
                from: from.to_rfc3339(),
                count: *count,
                samples: samples.clone(),
            }
        }
        RegistryEvent::LedgerKey { key, .. } => Data::LedgerKey { key: key.clone() },
        RegistryEvent::ProjectionsRepaired { repaired, .. } => {
            Data::ProjectionsRepaired { repaired: repaired.clone() }
        }
        RegistryEvent::DeliveryRefused { refused, .. } => Data::DeliveryRefused {
            source: refused.source.to_string(),
            reason: refused.reason.clone(),
            delivery: refused.delivery.clone(),
            sha256: hex(&refused.sha256),
        },
        RegistryEvent::Finding { finding, note, .. }
        | RegistryEvent::FindingRemediation { finding, note, .. }
        | RegistryEvent::FindingChanged { finding, note, .. } => Data::Finding {
            id: finding.id.clone(),
            kind: finding.kind.clone(),
            subject: finding.subject.clone(),
            change: finding.change.as_ref().map(ToString::to_string),
            detail: finding.detail.clone(),
            state: finding.state.as_str().to_owned(),
            opened_at: finding.opened_at.to_rfc3339(),
            exception: finding.exception.clone(),
            note: note.clone(),
            severity: Some(finding.severity.as_str().to_owned()),
            controls: finding.controls.clone(),
            scope: finding.scope.clone(),
            evidence: finding.evidence.clone(),
            remediation: finding.remediation.as_ref().map(ToString::to_string),
        },
        RegistryEvent::UsageReported { target, source, entries, .. } => Data::Usage {
            target: target.to_string(),
            source: source.clone(),
            used: entries.iter().map(|(account, last)| (account.clone(), last.to_rfc3339())).collect(),
        },
        RegistryEvent::Transfer { transfer: t, supersedes, .. } => Data::Transfer {
            id: t.id.to_string(),
            identity: t.identity.to_string(),
            from: t.from.as_ref().map(ToString::to_string),
            to: t.to.to_string(),
            requested_by: t.requested_by.to_string(),
            reason: t.reason.clone(),
            requested_at: t.requested_at.to_rfc3339(),
            expires_at: t.expires_at.to_rfc3339(),
            state: t.state.as_str().to_owned(),
            decided_by: t.decided_by.as_ref().map(ToString::to_string),
            decided_at: t.decided_at.map(Timestamp::to_rfc3339),
            note: t.note.clone(),
            supersedes: supersedes.as_ref().map(ToString::to_string),
        },
        RegistryEvent::Reconciled { run, .. } => Data::Reconciled {
            scope: run.scope.clone(),
            snapshot: hex(&run.snapshot),
            snapshot_size: run.snapshot_size,
            situations: run.tally.pairs().map(|(s, n)| (s.as_str().to_owned(), n)).collect(),
            partial: run.partial.clone(),
            usage_signal: run.usage_signal,
            seen: run.seen.clone(),
        },
    }
}

/// A transfer as an `identity.transfer_*` record holds it, and the transfer it supersedes.
fn transfer_from(
    data: Data,
) -> Result<(writ_core::transfer::Transfer, Option<writ_core::transfer::TransferId>), RecordError> {
    use writ_core::transfer::{Transfer, TransferId, TransferState};
    let Data::Transfer {
        id,
        identity,
        from,
        to,
        requested_by,
        reason,
        requested_at,
        expires_at,
        state,
        decided_by,
        decided_at,
        note,
        supersedes,
    } = data
    else {
        return Err(RecordError::Malformed("not a transfer record".into()));
    };
    let name = |n: Option<String>| n.as_deref().map(IdentityName::parse).transpose();
    let transfer = Transfer {
        id: TransferId::parse(&id)?,
        identity: IdentityName::parse(&identity)?,
        from: name(from)?,
        to: IdentityName::parse(&to)?,
        requested_by: IdentityName::parse(&requested_by)?,
        reason,
        requested_at: parse_time(&requested_at)?,
        expires_at: parse_time(&expires_at)?,
        state: TransferState::parse(&state)?,
        decided_by: name(decided_by)?,
        decided_at: decided_at.as_deref().map(parse_time).transpose()?,
        note,
    };
    Ok((transfer, supersedes.as_deref().map(TransferId::parse).transpose()?))
}

/// An exception as an `exception.*` record holds it (as of the event's time `at`), and the note.
fn exception_from(
    data: Data,
    at: Timestamp,
) -> Result<(writ_core::exception::Exception, String), RecordError> {
    use writ_core::exception::{Exception, ExceptionApproval, ExceptionId, ExceptionState};
    let Data::Exception {
        id,
        control,
        subject,
        owner,
        requester,
        justification,
        compensating_control,
        state,
        requested_at,
        expires_at,
        renewal,
        approvals_needed,
        approvals,
        version,
        note,
        warned_ms,
    } = data
    else {
        return Err(RecordError::Malformed("exception event without exception data".into()));
    };
    let approvals = approvals
        .into_iter()
        .map(|a| {
            Ok(ExceptionApproval {
                approver: IdentityName::parse(&a.approver)?,
                at: parse_time(&a.at)?,
                slot: a.slot,
            })
        })
        .collect::<Result<Vec<_>, RecordError>>()?;
    let exception = Exception {
        id: ExceptionId::parse(&id)?,
        control: writ_core::exception::parse_control(&control)?,
        subject: writ_core::exception::parse_subject(&subject)?,
        owner: IdentityName::parse(&owner)?,
        requester: IdentityName::parse(&requester)?,
        justification,
        compensating_control,
        state: ExceptionState::parse(&state)?,
        requested_at: parse_time(&requested_at)?,
        updated_at: at,
        expires_at: parse_time(&expires_at)?,
        renewal: renewal.as_deref().map(parse_time).transpose()?,
        approvals_needed,
        approvals,
        version,
        warned: warned_ms.map(writ_core::time::Duration::from_millis).transpose()?,
    };
    Ok((exception, note))
}

fn change_body(
    kind: &str,
    data: Data,
    open: &dyn Fn(&str) -> Option<String>,
) -> Result<ChangeEventBody, RecordError> {
    let unseal = |sealed: Sealed| open(&sealed.hmac).unwrap_or_else(|| ERASED.to_owned());
    let outcomes = |o: Vec<OutcomeRecord>| {
        o.into_iter()
            .map(|o| OpOutcome { op: o.op, before: o.before, after: o.after, reference: o.reference })
            .collect()
    };
    let observations = |o: Vec<ObservationRecord>| {
        o.into_iter().map(|o| Observation { op: o.op, present: o.present }).collect()
    };
    Ok(match (kind, data) {
        (
            "change.requested",
            Data::Requested {
                kind,
                event,
                refs,
                vendor,
                justification,
                ops,
                window,
                rollback_owner,
                rollback_of,
            },
        ) => ChangeEventBody::Requested {
            kind: ChangeKind::parse(&kind)?,
            event: BusinessEvent::parse(&event)?,
            refs: refs_from(refs)?,
            vendor: vendor.as_deref().map(OrgName::parse).transpose()?,
            justification: Justification::parse(&unseal(justification))?,
            ops: planned_ops(ops)?,
            window: window
                .map(|w| {
                    Ok::<_, RecordError>(Window::new(parse_time(&w.start)?, parse_time(&w.end)?, &w.zone)?)
                })
                .transpose()?,
            rollback_owner: rollback_owner.as_deref().map(IdentityName::parse).transpose()?,
            rollback_of: rollback_of
                .map(|r| {
                    Ok::<_, RecordError>(writ_core::change::RollbackOf {
                        origin: ChangeId::parse(&r.origin)?,
                        origin_requester: IdentityName::parse(&r.origin_requester)?,
                    })
                })
                .transpose()?,
        },
        ("change.legal_hold", Data::LegalHold { held, reason }) => {
            ChangeEventBody::LegalHold { held, reason: unseal(reason) }
        }
        ("change.erased", Data::Erased { retention_class, rule, values, blobs }) => ChangeEventBody::Erased {
            class: writ_core::change::RetentionClass::parse(&retention_class)?,
            rule,
            values,
            blobs: blobs
                .iter()
                .map(|b| unhex(b).ok_or_else(|| RecordError::Malformed(format!("bad erased digest {b:?}"))))
                .collect::<Result<_, _>>()?,
        },
        ("change.rollback_noted", Data::RollbackNoted { rollback, rollback_step }) => {
            ChangeEventBody::RollbackNoted {
                rollback: ChangeId::parse(&rollback)?,
                step: writ_core::change::RollbackStep::parse(&rollback_step)?,
            }
        }
        ("change.expiry_opened", Data::ExpiryOpened { origin, requester, due_at, ops }) => {
            ChangeEventBody::ExpiryOpened {
                origin: ChangeId::parse(&origin)?,
                requester: IdentityName::parse(&requester)?,
                due_at: parse_time(&due_at)?,
                ops: planned_ops(ops)?,
            }
        }
        ("change.alert_raised", Data::Alert { reason }) => ChangeEventBody::AlertRaised { reason },
        ("change.expiry_warned", Data::ExpiryWarned { holder, grant, ends_at, before_ms }) => {
            ChangeEventBody::ExpiryWarned {
                identity: IdentityName::parse(&holder)?,
                entitlement: EntitlementRef::parse(&grant)?,
                ends_at: parse_time(&ends_at)?,
                before: writ_core::time::Duration::from_millis(before_ms)?,
            }
        }
        ("change.linked", Data::Linked { delivery, late }) => {
            ChangeEventBody::Linked { delivery: Box::new(delivery_from(delivery)?), late }
        }
        ("change.validated", Data::Validated { required_approvals, approval_validity_ms, controls }) => {
            ChangeEventBody::Validated {
                requirement: ApprovalRequirement {
                    approvals: required_approvals,
                    validity: Duration::from_millis(approval_validity_ms)?,
                },
                controls: controls.map(controls_of).transpose()?.map(Box::new),
            }
        }
        (
            "change.revalidated",
            Data::Revalidated { required_approvals, approval_validity_ms, controls, kept, reason },
        ) => ChangeEventBody::Revalidated {
            requirement: ApprovalRequirement {
                approvals: required_approvals,
                validity: Duration::from_millis(approval_validity_ms)?,
            },
            controls: Box::new(controls_of(controls)?),
            kept: kept.iter().map(|k| IdentityName::parse(k)).collect::<Result<_, _>>()?,
            reason,
        },
        ("change.escalated", Data::Escalated { to, people }) => ChangeEventBody::Escalated {
            to,
            people: people.iter().map(|k| IdentityName::parse(k)).collect::<Result<_, _>>()?,
        },
        (
            "change.breakglass",
            Data::BreakGlass { approval_due, required_approvals, approval_validity_ms, controls },
        ) => ChangeEventBody::BreakGlass {
            approval_due: parse_time(&approval_due)?,
            requirement: ApprovalRequirement {
                approvals: required_approvals,
                validity: Duration::from_millis(approval_validity_ms)?,
            },
            controls: Box::new(controls_of(controls)?),
        },
        ("change.approved", Data::Approved { expires_at }) => {
            ChangeEventBody::Approved { expires_at: parse_time(&expires_at)? }
        }
        ("change.rejected", Data::Reason { reason }) => ChangeEventBody::Rejected { reason: unseal(reason) },
        ("change.cancelled", Data::Reason { reason }) => {
            ChangeEventBody::Cancelled { reason: unseal(reason) }
        }
        ("change.expired", Data::Reason { reason }) => ChangeEventBody::Expired { reason: unseal(reason) },
        ("change.execution_started", Data::Started { attempt, claimed_until }) => {
            ChangeEventBody::ExecutionStarted {
                attempt,
                claimed_until: claimed_until.as_deref().map(parse_time).transpose()?,
            }
        }
        ("change.implemented", Data::Implemented { outcomes: o }) => {
            ChangeEventBody::Implemented { outcomes: outcomes(o) }
        }
        ("change.execution_failed", Data::Failed { error, outcomes: o }) => {
            ChangeEventBody::ExecutionFailed { error, outcomes: outcomes(o) }
        }
        ("change.attempt_recovered", Data::Recovered { attempt, outcomes: o, error }) => {
            ChangeEventBody::AttemptRecovered { attempt, outcomes: outcomes(o), error }
        }
        ("change.verified", Data::Verified { observations: o }) => {
            ChangeEventBody::Verified { observations: observations(o) }
        }
        (
            "change.verification_failed",
            Data::VerificationFailed { observations: o, mismatches, residual },
        ) => {
            let residual = residual
                .into_iter()
                .map(|r| {
                    Ok(writ_core::change::Holding {
                        identity: IdentityName::parse(&r.identity)?,
                        entitlement: EntitlementRef {
                            target: TargetName::parse(&r.target)?,
                            entitlement: EntitlementName::parse(&r.entitlement)?,
                        },
                    })
                })
                .collect::<Result<Vec<_>, Refusal>>()?;
            ChangeEventBody::VerificationFailed { observations: observations(o), mismatches, residual }
        }
        ("change.reviewed", Data::Reviewed { notes }) => ChangeEventBody::Reviewed { notes: unseal(notes) },
        ("change.evidence_attached", Data::EvidenceAttached { step, name, late }) => {
            ChangeEventBody::EvidenceAttached {
                step: writ_core::event::Phase::parse_step(&step)?,
                name: unseal(name),
                late,
            }
        }
        ("change.commented", Data::Commented { step, text, source, late }) => ChangeEventBody::Commented {
            step: writ_core::event::Phase::parse_step(&step)?,
            text: unseal(text),
            source: source
                .map(|s| {
                    Ok::<_, RecordError>(writ_core::change::CommentSource {
                        source: writ_core::name::SourceName::parse(&s.source)?,
                        id: writ_core::intake::key(&s.id, "comment id")?,
                        account: s.account,
                        written_at: parse_time(&s.written_at)?,
                    })
                })
                .transpose()?,
            late,
        },
        (other, _) => {
            return Err(RecordError::Malformed(format!("unexpected data for {other}")));
        }
    })
}

fn controls_record(c: &Controls) -> ControlsRecord {
    ControlsRecord {
        tier: c.tier.clone(),
        slots: c.slots.clone(),
        escalate_at: c.escalate_at.map(Timestamp::to_rfc3339),
        escalate_to: c.escalate_to.clone(),
        review_required: c.review_required,
        window_rules: c.window_rules.clone(),
    }
}

fn controls_of(c: ControlsRecord) -> Result<Controls, RecordError> {
    Ok(Controls {
        tier: c.tier,
        slots: c.slots,
        escalate_at: c.escalate_at.as_deref().map(parse_time).transpose()?,
        escalate_to: c.escalate_to,
        review_required: c.review_required,
        window_rules: c.window_rules,
    })
}

fn op_records(ops: &[PlannedOp]) -> Vec<OpRecord> {
    ops.iter()
        .map(|op| OpRecord {
            action: op.action.as_str().to_owned(),
            identity: op.identity.to_string(),
            target: op.entitlement.target.to_string(),
            entitlement: op.entitlement.entitlement.to_string(),
            duration_ms: op.duration.map(Duration::as_millis),
        })
        .collect()
}

fn planned_ops(ops: Vec<OpRecord>) -> Result<Vec<PlannedOp>, Refusal> {
    ops.into_iter()
        .map(|op| {
            Ok(PlannedOp {
                action: OpAction::parse(&op.action)?,
                identity: IdentityName::parse(&op.identity)?,
                entitlement: EntitlementRef {
                    target: TargetName::parse(&op.target)?,
                    entitlement: EntitlementName::parse(&op.entitlement)?,
                },
                duration: op.duration_ms.map(Duration::from_millis).transpose()?,
            })
        })
        .collect()
}

fn parse_time(text: &str) -> Result<Timestamp, RecordError> {
    Timestamp::parse_rfc3339(text).ok_or_else(|| RecordError::Malformed(format!("bad timestamp {text:?}")))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 || !text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}
