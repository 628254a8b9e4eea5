//! Round trips of every event type through the canonical record, and refusal of altered bytes.

use writ_core::access::{Role, TokenInfo};
use writ_core::change::*;
use writ_core::event::{ChangeEvent, ChangeEventBody, Event, EvidenceRef, Phase, RegistryEvent};
use writ_core::identity::{Actor, ConnectorKind, Identity, IdentityKind, SystemActor, Target};
use writ_core::name::{EntitlementRef, IdentityName, OrgName, TargetName};
use writ_core::time::{Duration, Timestamp};

use crate::sensitive::{ERASED, HmacKey};
use crate::{RecordError, decode, encode, leaf_hash};

fn key() -> HmacKey {
    HmacKey::from_bytes([3; 32])
}

fn encode_plain(event: &Event) -> Vec<u8> {
    encode(event, &key()).0
}

/// Decodes with every sealed value available.
fn decode_all(bytes: &[u8], sealed: &[(String, String)]) -> Result<Event, RecordError> {
    decode(bytes, &|mac| sealed.iter().find(|(m, _)| m == mac).map(|(_, v)| v.clone()))
}

const T0: Timestamp = Timestamp::from_millis(1_800_000_000_123);

fn change_event(seq: u64, body: ChangeEventBody) -> Event {
    Event::Change(ChangeEvent {
        change: ChangeId::generate(T0, 7),
        seq,
        at: T0,
        actor: Actor::Identity(IdentityName::parse("alice").unwrap()),
        on_behalf_of: Some(IdentityName::parse("bob").unwrap()),
        evidence: if seq.is_multiple_of(2) {
            vec![EvidenceRef {
                digest: [seq as u8; 32],
                label: "plan".into(),
                media_type: "application/json".into(),
                size: 12,
            }]
        } else {
            vec![]
        },
        policy: seq.is_multiple_of(3).then(|| writ_core::event::PolicyStamp {
            hash: "ab".repeat(32),
            rules: vec!["sod.no-self-approval".into(), "tier.high".into()],
            slot: seq.is_multiple_of(2).then(|| "group:security".into()),
        }),
        body,
    })
}

fn controls() -> writ_core::change::Controls {
    writ_core::change::Controls {
        tier: "high".into(),
        slots: vec!["any".into(), "owner:dana".into()],
        escalate_at: Some(T0.plus(Duration::hours(4))),
        escalate_to: Some("group:security".into()),
        review_required: true,
        window_rules: vec!["tier.high".into(), "db-admin".into()],
    }
}

fn every_event() -> Vec<Event> {
    let outcomes = vec![OpOutcome { op: 0, before: false, after: true, reference: Some("c0ffee".into()) }];
    let observations = vec![Observation { op: 0, present: true }];
    let bodies = vec![
        ChangeEventBody::Requested {
            kind: ChangeKind::TimeBoundElevation,
            event: BusinessEvent::Incident,
            refs: vec![ExternalRef::new(RefKind::Ticket, "INC-9").unwrap()],
            vendor: Some(OrgName::parse("acme").unwrap()),
            justification: Justification::parse("on call \"quoted\" é").unwrap(),
            ops: vec![PlannedOp {
                action: OpAction::Grant,
                identity: IdentityName::parse("dave").unwrap(),
                entitlement: EntitlementRef::parse("repo:db/admin").unwrap(),
                duration: Some(Duration::hours(8)),
            }],
            window: Some(
                writ_core::change::Window::new(T0, T0.plus(Duration::hours(4)), "Europe/Berlin").unwrap(),
            ),
            rollback_owner: Some(IdentityName::parse("carol").unwrap()),
            rollback_of: Some(writ_core::change::RollbackOf {
                origin: ChangeId::generate(T0, 9),
                origin_requester: IdentityName::parse("erin").unwrap(),
            }),
        },
        ChangeEventBody::Validated { requirement: ApprovalRequirement::BASELINE, controls: None },
        ChangeEventBody::Approved { expires_at: T0.plus(Duration::hours(24)) },
        ChangeEventBody::Rejected { reason: "no".into() },
        ChangeEventBody::Cancelled { reason: "withdrawn".into() },
        ChangeEventBody::Expired { reason: "late".into() },
        ChangeEventBody::ExecutionStarted { attempt: 2, claimed_until: None },
        ChangeEventBody::ExecutionStarted { attempt: 1, claimed_until: Some(T0.plus(Duration::seconds(30))) },
        ChangeEventBody::Implemented { outcomes: outcomes.clone() },
        ChangeEventBody::ExecutionFailed { error: "down".into(), outcomes: vec![] },
        ChangeEventBody::AttemptRecovered {
            attempt: 2,
            outcomes: vec![],
            error: Some("1 of 1 missing".into()),
        },
        ChangeEventBody::AttemptRecovered { attempt: 1, outcomes: outcomes.clone(), error: None },
        ChangeEventBody::LegalHold { held: true, reason: "litigation hold LH-7".into() },
        ChangeEventBody::LegalHold { held: false, reason: "released by counsel".into() },
        ChangeEventBody::Erased {
            class: RetentionClass::Evidence,
            rule: "retention.evidence".into(),
            values: 0,
            blobs: vec![[7; 32], [9; 32]],
        },
        ChangeEventBody::Erased {
            class: RetentionClass::ClearText,
            rule: "retention.clear_text".into(),
            values: 3,
            blobs: vec![],
        },
        ChangeEventBody::RollbackNoted {
            rollback: ChangeId::generate(T0, 10),
            step: writ_core::change::RollbackStep::Verified,
        },
        ChangeEventBody::Commented {
            step: writ_core::event::Phase::Approval,
            text: "CAB asked for a rollback plan\nsee the runbook".into(),
            source: None,
            late: false,
        },
        ChangeEventBody::Commented {
            step: writ_core::event::Phase::Review,
            text: "looks fine".into(),
            source: Some(writ_core::change::CommentSource {
                source: writ_core::name::SourceName::parse("jira").unwrap(),
                id: "10042".into(),
                account: Some("557058:bob".into()),
                written_at: T0.plus(Duration::hours(1)),
            }),
            late: true,
        },
        ChangeEventBody::Verified { observations: observations.clone() },
        ChangeEventBody::VerificationFailed {
            observations: observations.clone(),
            mismatches: vec![0],
            residual: vec![],
        },
        ChangeEventBody::VerificationFailed {
            observations,
            mismatches: vec![],
            residual: vec![Holding {
                identity: IdentityName::parse("dave").unwrap(),
                entitlement: EntitlementRef::parse("pg:login").unwrap(),
            }],
        },
        ChangeEventBody::Reviewed { notes: "fine".into() },
        ChangeEventBody::EvidenceAttached {
            step: Phase::Approval,
            name: "cab-minutes.pdf".into(),
            late: true,
        },
        ChangeEventBody::ExpiryOpened {
            origin: ChangeId::generate(T0, 7),
            requester: IdentityName::parse("alice").unwrap(),
            due_at: T0.plus(Duration::hours(8)),
            ops: vec![PlannedOp {
                action: OpAction::Revoke,
                identity: IdentityName::parse("dave").unwrap(),
                entitlement: EntitlementRef::parse("repo:db/admin").unwrap(),
                duration: None,
            }],
        },
        ChangeEventBody::AlertRaised { reason: "not ended after 5 attempts".into() },
        ChangeEventBody::ExpiryWarned {
            identity: IdentityName::parse("dave").unwrap(),
            entitlement: EntitlementRef::parse("repo:db/admin").unwrap(),
            ends_at: Timestamp::from_millis(1_800_003_600_000),
            before: Duration::hours(1),
        },
        ChangeEventBody::Validated {
            requirement: ApprovalRequirement::BASELINE,
            controls: Some(Box::new(controls())),
        },
        ChangeEventBody::Revalidated {
            requirement: ApprovalRequirement { approvals: 2, validity: Duration::hours(8) },
            controls: Box::new(writ_core::change::Controls {
                escalate_at: None,
                escalate_to: None,
                ..controls()
            }),
            kept: vec![IdentityName::parse("bob").unwrap()],
            reason: "policy now asks for tier high".into(),
        },
        ChangeEventBody::Escalated {
            to: "group:security".into(),
            people: vec![IdentityName::parse("sam").unwrap()],
        },
        ChangeEventBody::Linked { delivery: Box::new(delivery()), late: true },
        ChangeEventBody::Linked {
            delivery: Box::new(writ_core::intake::Delivery {
                object: None,
                version: None,
                refs: Vec::new(),
                ..delivery()
            }),
            late: false,
        },
    ];
    let mut events: Vec<Event> =
        bodies.into_iter().enumerate().map(|(i, b)| change_event(i as u64, b)).collect();
    let alice =
        Identity::new(IdentityName::parse("alice").unwrap(), IdentityKind::Human, None, None, T0).unwrap();
    let svc = Identity::new(
        IdentityName::parse("svc-ci").unwrap(),
        IdentityKind::ServiceAccount,
        Some(&alice),
        None,
        T0,
    )
    .unwrap();
    events.push(Event::Registry(RegistryEvent::IdentityAdded {
        actor: Actor::System(SystemActor::Admin),
        identity: svc.clone(),
    }));
    events.push(Event::Registry(RegistryEvent::IdentityAdded {
        actor: Actor::System(SystemActor::Admin),
        identity: Identity { email: Some("alice@example.com".into()), ..alice.clone() },
    }));
    events.push(Event::Registry(RegistryEvent::PolicyLoaded {
        actor: Actor::System(SystemActor::Admin),
        hash: "cd".repeat(32),
        files: vec!["access.cedar".into(), "rules.toml".into()],
        at: T0,
    }));
    for retired in [false, true] {
        events.push(Event::Registry(RegistryEvent::LedgerKey {
            actor: Actor::System(SystemActor::Admin),
            key: "writ/test+01020304+AQ==".into(),
            retired,
            at: T0,
        }));
    }
    events.push(Event::Registry(RegistryEvent::ProjectionsRepaired {
        actor: Actor::Identity(IdentityName::parse("root").unwrap()),
        repaired: vec!["roles alice admin".into(), "grants dave repo:db/admin".into()],
        at: T0,
    }));
    events.push(Event::Registry(RegistryEvent::TargetAdded {
        actor: Actor::System(SystemActor::Admin),
        target: Target {
            name: TargetName::parse("repo").unwrap(),
            connector: ConnectorKind::parse("git").unwrap(),
            settings: vec![("repo".into(), "/srv/access.git".into())],
            created_at: T0,
        },
    }));
    let admin = Actor::Identity(IdentityName::parse("root").unwrap());
    let alice = IdentityName::parse("alice").unwrap();
    events.push(Event::Registry(RegistryEvent::TokenIssued {
        actor: admin.clone(),
        token: TokenInfo {
            id: "wt1a2b3c4d5e6f7g8".into(),
            identity: alice.clone(),
            label: "laptop cli".into(),
            created_at: T0,
            expires_at: T0.plus(Duration::parse("30d").unwrap()),
        },
    }));
    events.push(Event::Registry(RegistryEvent::TokenRevoked {
        actor: admin.clone(),
        id: "wt1a2b3c4d5e6f7g8".into(),
        identity: alice.clone(),
        at: T0,
    }));
    for role in Role::ALL {
        events.push(Event::Registry(RegistryEvent::RoleGranted {
            actor: admin.clone(),
            identity: alice.clone(),
            role,
            at: T0,
        }));
        events.push(Event::Registry(RegistryEvent::RoleRevoked {
            actor: admin.clone(),
            identity: alice.clone(),
            role,
            at: T0,
        }));
    }
    // Later additions go last: some tests pick their sample by index.
    events.push(change_event(
        100,
        ChangeEventBody::BreakGlass {
            approval_due: T0.plus(Duration::hours(24)),
            requirement: ApprovalRequirement { approvals: 2, validity: Duration::hours(8) },
            controls: Box::new(controls()),
        },
    ));
    let finding = writ_core::finding::Finding {
        change: Some(ChangeId::generate(T0, 9)),
        ..writ_core::finding::Finding::new(
            "FND-0123456789abcdef".into(),
            "breakglass.approval_missed",
            ChangeId::generate(T0, 9).as_str(),
            "no post-hoc approval by the deadline".into(),
            T0,
        )
    };
    for (state, first) in [
        (writ_core::finding::FindingState::Open, true),
        (writ_core::finding::FindingState::Excepted, false),
        (writ_core::finding::FindingState::Open, false),
        (writ_core::finding::FindingState::Resolved, false),
    ] {
        events.push(Event::Registry(RegistryEvent::Finding {
            actor: Actor::System(SystemActor::Scheduler),
            finding: writ_core::finding::Finding {
                state,
                exception: (state == writ_core::finding::FindingState::Excepted).then(|| "EXC-1".to_owned()),
                updated_at: T0.plus(Duration::hours(1)),
                last_seen: T0.plus(Duration::hours(1)),
                ..finding.clone()
            },
            first,
            note: "deadline passed".into(),
        }));
    }
    // A reconciliation's finding with every field, its remediation, and the run.
    let reconciled = writ_core::finding::Finding {
        severity: writ_core::finding::Severity::High,
        controls: vec!["NIST-CSF:PR.AA-05".into(), "OWASP-NHI:NHI5:2025".into()],
        scope: Some("target:db".into()),
        evidence: Some("ab".repeat(32)),
        ..writ_core::finding::Finding::new(
            "FND-00000000000000aa".into(),
            "access.unapproved",
            "alice db:app_admin",
            "held with no approved change".into(),
            T0.plus(Duration::hours(2)),
        )
    };
    events.push(Event::Registry(RegistryEvent::Finding {
        actor: Actor::System(SystemActor::Scheduler),
        finding: reconciled.clone(),
        first: true,
        note: "raised by reconciliation of target:db".into(),
    }));
    events.push(Event::Registry(RegistryEvent::FindingChanged {
        actor: Actor::System(SystemActor::Scheduler),
        finding: writ_core::finding::Finding { detail: "now holds more".into(), ..reconciled.clone() },
        note: "seen again, changed".into(),
    }));
    events.push(Event::Registry(RegistryEvent::FindingRemediation {
        actor: Actor::Identity(IdentityName::parse("carol").unwrap()),
        finding: writ_core::finding::Finding { remediation: Some(ChangeId::generate(T0, 10)), ..reconciled },
        note: "opened to fix it".into(),
    }));
    events.push(Event::Registry(RegistryEvent::Reconciled {
        actor: Actor::System(SystemActor::Scheduler),
        run: Box::new(writ_core::reconcile::Run {
            scope: "target:db".into(),
            at: T0.plus(Duration::hours(2)),
            snapshot: [7; 32],
            snapshot_size: 1234,
            tally: writ_core::reconcile::Tally::from_pairs([
                (writ_core::reconcile::Situation::Linked, 10),
                (writ_core::reconcile::Situation::Unapproved, 1),
            ]),
            partial: vec!["users: a page could not be read".into()],
            usage_signal: true,
            seen: vec!["FND-00000000000000aa".into()],
        }),
    }));
    {
        use writ_core::transfer::{Decision, TransferId, TransferState};
        let alice = svc.owner.clone().unwrap();
        let bob =
            Identity::new(IdentityName::parse("bob").unwrap(), IdentityKind::Human, None, None, T0).unwrap();
        let pending = writ_core::transfer::request(
            TransferId::generate(T0, 11),
            &svc,
            &bob,
            &alice,
            &[],
            "leaving".into(),
            T0,
        )
        .unwrap();
        let accepted = pending
            .decide(
                Decision::Accept,
                &bob.name,
                &[],
                true,
                Some("mine now".into()),
                T0.plus(Duration::hours(1)),
            )
            .unwrap();
        assert_eq!(accepted.state, TransferState::Accepted);
        for (transfer, supersedes) in [
            (pending.clone(), None),
            (pending.superseded(&bob.name, T0), Some(TransferId::generate(T0, 12))),
            (accepted, None),
        ] {
            events.push(Event::Registry(RegistryEvent::Transfer {
                actor: Actor::Identity(alice.clone()),
                transfer: Box::new(transfer),
                supersedes,
            }));
        }
    }
    use writ_core::exception::{
        Exception, ExceptionApproval, ExceptionEventKind, ExceptionId, ExceptionRequest, ExceptionState,
    };
    let request = ExceptionRequest {
        control: "breakglass.approval_missed".into(),
        subject: ChangeId::generate(T0, 9).to_string(),
        owner: IdentityName::parse("carol").unwrap(),
        requester: IdentityName::parse("dave").unwrap(),
        justification: "the approver was on leave".into(),
        compensating_control: "the grant was reviewed line by line".into(),
        expires_at: T0.plus(Duration::hours(72)),
    };
    let pending = Exception::new(ExceptionId::generate(T0, 11), request, 2, T0).unwrap();
    let active = Exception {
        state: ExceptionState::Active,
        renewal: Some(T0.plus(Duration::hours(144))),
        approvals: vec![ExceptionApproval {
            approver: IdentityName::parse("bob").unwrap(),
            at: T0.plus(Duration::hours(1)),
            slot: Some("internal".into()),
        }],
        updated_at: T0.plus(Duration::hours(1)),
        version: 2,
        ..pending.clone()
    };
    let warned = Exception { warned: Some(Duration::hours(24)), version: 3, ..active.clone() };
    for (exception, kind, policy) in [
        (warned, ExceptionEventKind::ExpiryWarned, None),
        (pending, ExceptionEventKind::Requested, None),
        (
            active,
            ExceptionEventKind::Approved,
            Some(writ_core::event::PolicyStamp {
                hash: "ab".repeat(32),
                rules: vec!["exception.approval".into()],
                slot: None,
            }),
        ),
    ] {
        events.push(Event::Registry(RegistryEvent::Exception {
            actor: Actor::Identity(IdentityName::parse("bob").unwrap()),
            exception: Box::new(exception),
            kind,
            note: String::new(),
            policy,
        }));
    }
    use writ_core::intake::{DeliveryEventKind, DeliveryRecord, Outcome, RefusedDelivery};
    for (kind, outcome) in [
        (DeliveryEventKind::Received, Outcome::Uncorrelated),
        (DeliveryEventKind::Duplicate, Outcome::Late),
        (DeliveryEventKind::Correlated, Outcome::Correlated),
    ] {
        events.push(Event::Registry(RegistryEvent::Delivery {
            actor: Actor::System(writ_core::identity::SystemActor::Intake),
            record: Box::new(DeliveryRecord {
                delivery: delivery(),
                outcome,
                changes: vec![ChangeId::generate(T0, 11)],
                detail: "attached to its ticket's change".into(),
                attempts: 2,
                updated_at: T0.plus(Duration::minutes(3)),
            }),
            kind,
        }));
    }
    for delivery in [Some("d-1".to_owned()), None] {
        events.push(Event::Registry(RegistryEvent::DeliveryRefused {
            actor: Actor::System(writ_core::identity::SystemActor::Intake),
            refused: Box::new(RefusedDelivery {
                source: writ_core::name::SourceName::parse("github").unwrap(),
                reason: "hook.bad_signature".into(),
                delivery,
                sha256: [7; 32],
                at: T0.plus(Duration::minutes(4)),
            }),
        }));
    }
    events
}

fn delivery() -> writ_core::intake::Delivery {
    writ_core::intake::Delivery {
        source: writ_core::name::SourceName::parse("servicenow").unwrap(),
        id: "0f8fad5b-d9cb-469f-a165-70867728950e".into(),
        event: "change_request.updated".into(),
        object: Some("c286d61347c80210d8e7b3c6d36d4357".into()),
        version: Some(T0.plus(Duration::minutes(1))),
        sha256: [9; 32],
        received_at: T0.plus(Duration::minutes(2)),
        refs: vec![
            ExternalRef::new(RefKind::Ticket, "CHG0030001").unwrap(),
            ExternalRef::new(RefKind::Commit, "9fceb02d0ae598e95dc970b74767f19372d61af8").unwrap(),
        ],
    }
}

#[test]
fn every_event_type_round_trips_through_canonical_bytes() {
    for event in every_event() {
        let (bytes, sealed) = encode(&event, &key());
        assert_eq!(decode_all(&bytes, &sealed).unwrap(), event, "{}", String::from_utf8_lossy(&bytes));
        assert_eq!(encode(&decode_all(&bytes, &sealed).unwrap(), &key()).0, bytes);
    }
}

#[test]
fn records_are_canonical_json_with_the_schema_tag() {
    let bytes = encode_plain(&every_event()[2]);
    let text = String::from_utf8(bytes).unwrap();
    assert!(text.starts_with(r#"{"actor":"alice","at":"2027-01-15T08:00:00.123Z","change":"CHG-"#), "{text}");
    assert!(text.contains(r#""schema":"writ.event/v1""#));
    assert!(text.contains(r#""type":"change.approved""#));
    assert!(!text.contains(' '), "canonical form has no insignificant whitespace: {text}");
}

#[test]
fn altered_or_reformatted_bytes_are_refused() {
    let bytes = encode_plain(&every_event()[0]);
    let text = String::from_utf8(bytes.clone()).unwrap();
    let pretty =
        serde_json::to_vec_pretty(&serde_json::from_slice::<serde_json::Value>(&bytes).unwrap()).unwrap();
    let decode = |b: &[u8]| decode(b, &|_| None);
    assert!(matches!(decode(&pretty), Err(RecordError::NotCanonical)));
    let extra = text.replacen(r#""actor""#, r#""admin":true,"actor""#, 1);
    assert!(matches!(decode(extra.as_bytes()), Err(RecordError::Malformed(_))));
    let wrong_schema = text.replace("writ.event/v1", "writ.event/v0");
    assert!(matches!(decode(wrong_schema.as_bytes()), Err(RecordError::UnknownSchema(_))));
    let bad_name = text.replace(r#""identity":"dave""#, r#""identity":"da ve""#);
    assert!(matches!(decode(bad_name.as_bytes()), Err(RecordError::Invalid(_))));
    let wrong_type = text.replace("change.requested", "change.reviewed");
    assert!(decode(wrong_type.as_bytes()).is_err());
}

#[test]
fn leaf_hash_uses_the_rfc9162_zero_prefix() {
    // SHA-256 of the single byte 0x00: the RFC 6962 hash of an empty leaf.
    let empty = leaf_hash(b"");
    let hex: String = empty.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(hex, "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d");
}

#[test]
fn sensitive_text_is_sealed_and_can_be_erased() {
    let requested = every_event().remove(0);
    let (bytes, sealed) = encode(&requested, &key());
    let text = String::from_utf8(bytes.clone()).unwrap();
    assert!(!text.contains("on call"), "justification in clear: {text}");
    let mac = key().seal("on call \"quoted\" é");
    assert_eq!(sealed, vec![(mac.clone(), "on call \"quoted\" é".to_owned())]);
    assert!(text.contains(&format!("{{\"hmac\":\"{mac}\"}}")), "{text}");
    assert!(mac.starts_with(key().id()));
    let Event::Change(erased) = decode(&bytes, &|_| None).unwrap() else { panic!("not a change event") };
    let writ_core::event::ChangeEventBody::Requested { justification, .. } = erased.body else {
        panic!("wrong body")
    };
    assert_eq!(justification.as_str(), ERASED);
    assert_ne!(HmacKey::from_bytes([4; 32]).mac("x"), key().mac("x"), "the HMAC is keyed");
    let parsed = HmacKey::parse(&key().to_text()).unwrap();
    assert_eq!(parsed.mac("x"), key().mac("x"));
    assert!(HmacKey::parse(&key().to_text().replace("HMAC+hk-", "HMAC+hk-0")).is_err());
    assert!(!format!("{:?}", key()).contains(&key().to_text()[15..]));
}

/// A seal is a commitment: the key holder checks a value, anyone with the value's nonce opens
/// that one seal, and other text (or another value's nonce) opens nothing.
#[test]
fn a_seal_opens_only_with_its_own_value_and_nonce() {
    let value = "needed for the job";
    let seal = key().seal(value);
    assert_eq!(seal, key().seal(value), "deterministic under one key");
    assert_ne!(seal, HmacKey::from_bytes([4; 32]).seal(value), "keyed");
    assert!(key().check(&seal, value));
    assert!(!key().check(&seal, "Emergency approved by CISO"));
    assert!(key().check(&key().mac(value), value), "values sealed before commitments still check");
    let nonce = key().nonce(value);
    assert!(crate::sensitive::opens(&seal, &nonce, value));
    assert!(!crate::sensitive::opens(&seal, &nonce, "Emergency approved by CISO"));
    let forged_nonce = key().nonce("Emergency approved by CISO");
    assert!(!crate::sensitive::opens(&seal, &forged_nonce, "Emergency approved by CISO"));
    assert!(!crate::sensitive::opens("no colon", &nonce, value));
    assert_ne!(nonce, key().nonce("another value"));
}
