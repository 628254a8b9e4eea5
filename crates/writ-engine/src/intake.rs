//! Intake: deliveries from other systems correlated to changes, robust by construction.
//!
//! - **One delivery per (source, delivery id).** A delivery seen before is recorded again as a
//!   duplicate (`intake.duplicate`, its attempt count raised) and nothing else happens; the
//!   same id with different bytes is refused as a security event.
//! - **One change per (source, external object).** The first delivery that asks for a change
//!   reserves a change ID for its object (`IntakeStore::bind_object`: the first writer wins,
//!   across processes), then opens the change under that ID; any later, duplicate or
//!   concurrent delivery about the object finds the same change. A reservation whose change
//!   was never opened (refused, or a crash in between) is opened by the next delivery that asks.
//! - **Order does not matter.** Every delivery carries the object's version; one older than the
//!   newest already seen is `late`: attached to the change, never acted on (a late "created"
//!   cannot undo a cancellation). An update to a closed change is attached and recorded.
//! - **Nothing is dropped.** A delivery no change can be found or opened for is kept with
//!   outcome `uncorrelated` (or `refused`, with the reason); when its object is bound to a
//!   change later, the queued deliveries about it are attached (`intake.correlated`).
//! - **Refused deliveries** (bad signature, stale timestamp) are security events
//!   (`intake.refused`): recorded in the ledger, nothing else written.

use std::collections::BTreeMap;

use writ_core::change::{BusinessEvent, ChangeId, ExternalRef, Justification};
use writ_core::event::RegistryEvent;
use writ_core::identity::{Actor, SystemActor};
use writ_core::intake::{Delivery, DeliveryEventKind, DeliveryRecord, Outcome, RefusedDelivery};
use writ_core::machine::Command;
use writ_core::name::{IdentityName, SourceName};
use writ_core::time::Timestamp;
use writ_intake::Parsed;

use crate::{Engine, EngineError, RequestInput, RequestedOp, Result, registry_event};

/// A configured source, as correlation needs it.
#[derive(Clone, Debug)]
pub struct Source {
    pub name: SourceName,
    /// The registered identity the source acts as: the requester of the changes it opens and
    /// the actor of the cancellations it carries.
    pub requester: IdentityName,
    /// The source's accounts (a Jira accountId, a ServiceNow sys_user) mapped to Writ
    /// identities: the person a change is asked for on behalf of.
    pub accounts: BTreeMap<String, IdentityName>,
    /// What a delivery from an account not in `accounts` may open.
    pub unmapped: Unmapped,
    /// How far back a delivery that names no object is a replay when the same bytes arrive
    /// under a new id (the source's timestamp tolerance).
    pub replay_window: writ_core::time::Duration,
}

/// What a delivery from an account missing from a source's `accounts` may open.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Unmapped {
    /// Nothing: it is recorded, and refused with the reason (the default).
    #[default]
    Refuse,
    /// The change, asked for by the source's own identity on behalf of nobody.
    AsHook,
}

impl Unmapped {
    pub fn parse(input: &str) -> Option<Unmapped> {
        match input {
            "refuse" => Some(Unmapped::Refuse),
            "as_hook" => Some(Unmapped::AsHook),
            _ => None,
        }
    }
}

/// An approval given in another system's ticket, as the evidence of the approval records it.
#[derive(Clone, Debug)]
pub struct Via {
    pub source: SourceName,
    pub delivery: String,
    pub sha256: String,
    pub account: String,
    /// The `[[ticket_approval]]` rule under which it counts.
    pub rule: String,
}

impl Via {
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "source": self.source.to_string(),
            "delivery": self.delivery,
            "sha256": self.sha256,
            "account": self.account,
            "rule": self.rule,
        })
    }
}

/// What became of a delivery, and whether it had been received before.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    pub record: DeliveryRecord,
    pub duplicate: bool,
}

/// Queued deliveries a pass attaches at most, per object.
const SWEEP_LIMIT: usize = 200;

/// What asking for a delivery's change came to.
pub(crate) enum Opened {
    Change(ChangeId),
    /// The rules or policy refused it (the reason is in the notes).
    Refused,
    /// The delivery asks for nothing that can be opened now.
    NotAsked,
}

/// How long a window of refused deliveries lasts unless configured: a minute.
pub const REFUSAL_WINDOW_MS: i64 = 60_000;

/// Buckets of refused deliveries closed per pass.
const REFUSAL_PASS: usize = 1000;

/// Digests of counted refusals kept with their event.
const REFUSAL_SAMPLES: usize = 5;

impl Engine {
    /// Records a delivery refused before it was believed (a security event). Unauthenticated
    /// senders must not be able to grow the ledger at will: the first refusal of a source for a
    /// reason in a window is recorded on its own (the index is returned), and the rest of that
    /// window are only counted until [`Engine::count_refusals`] records them as one event.
    pub fn refuse_delivery(&self, refused: RefusedDelivery) -> Result<Option<u64>> {
        let window_ms = self.refusal_window_ms;
        let start = refused.at.as_millis() - refused.at.as_millis().rem_euclid(window_ms);
        let bucket = (refused.source.clone(), refused.reason.clone(), Timestamp::from_millis(start));
        let sha256 = crate::access::hex(&refused.sha256);
        let event = RegistryEvent::DeliveryRefused {
            actor: Actor::System(SystemActor::Intake),
            refused: Box::new(refused),
        };
        Ok(self.store.add_refusal(
            (&bucket.0, &bucket.1, bucket.2),
            &sha256,
            &registry_event(&event, self.hmac()?),
        )?)
    }

    /// Records the refusals counted in windows that have ended, one event per source, reason
    /// and window (`intake.refusals_counted`); a window with only its first refusal records
    /// nothing more. Returns how many refusals the events counted.
    pub fn count_refusals(&self) -> Result<u64> {
        let window_ms = self.refusal_window_ms;
        let ended = Timestamp::from_millis(self.now().as_millis() - window_ms);
        let mut counted = 0;
        for bucket in self.store.refusal_buckets(ended, REFUSAL_PASS)? {
            let beyond = bucket.count.saturating_sub(1);
            let event = (beyond > 0).then(|| RegistryEvent::RefusalsCounted {
                actor: Actor::System(SystemActor::Intake),
                source: bucket.source.clone(),
                reason: bucket.reason.clone(),
                from: bucket.window,
                at: Timestamp::from_millis(bucket.window.as_millis() + window_ms),
                count: beyond,
                samples: bucket.samples.iter().skip(1).take(REFUSAL_SAMPLES).cloned().collect(),
            });
            let event = event.map(|e| self.hmac().map(|key| registry_event(&e, key))).transpose()?;
            match self.store.close_refusal_bucket(&bucket, event.as_ref()) {
                Ok(()) => counted += beyond,
                // Counted again since it was read (a late refusal, or another instance): the
                // next pass takes it.
                Err(writ_store::StoreError::Conflict(_)) => {}
                Err(error) => return Err(error.into()),
            }
        }
        if counted > 0 {
            tracing::warn!(target: "writ::intake", refusals = counted, "refused deliveries counted");
        }
        Ok(counted)
    }

    /// Deliveries, most recently updated first (`outcome`: only those).
    pub fn deliveries(&self, outcome: Option<Outcome>, limit: usize) -> Result<Vec<DeliveryRecord>> {
        Ok(self.store.deliveries(outcome, limit)?)
    }

    /// One delivery.
    pub fn delivery(&self, source: &SourceName, id: &str) -> Result<DeliveryRecord> {
        self.store
            .delivery(source, id)?
            .ok_or_else(|| EngineError::NotFound { what: "delivery", name: format!("{source}/{id}") })
    }

    /// Correlates an authenticated delivery (see the module documentation). `sha256` is the
    /// digest of the raw body.
    pub fn receive(&self, source: &Source, parsed: Parsed, sha256: [u8; 32]) -> Result<Receipt> {
        let now = self.now();
        let delivery = Delivery {
            source: source.name.clone(),
            id: parsed.id.clone(),
            event: parsed.event.clone(),
            object: parsed.object.clone(),
            version: parsed.version,
            sha256,
            received_at: now,
            refs: parsed.refs.clone(),
        };
        if let Some(receipt) = self.again(&delivery)? {
            return Ok(receipt);
        }
        // A delivery that names no object (a Standard Webhooks envelope) has only its bytes to
        // tell it apart: the same bytes again under a new id within the tolerance are the same
        // delivery replayed, recorded as a duplicate of the first and never a second change.
        if delivery.object.is_none() {
            let since = Timestamp::from_millis(now.as_millis() - source.replay_window.as_millis());
            if let Some(first) = self.store.delivery_by_digest(&source.name, &delivery.sha256_hex(), since)?
                && let Some(receipt) = self.again(&Delivery { id: first.delivery.id, ..delivery.clone() })?
            {
                return Ok(receipt);
            }
        }
        let record = self.correlate(source, &parsed, delivery)?;
        let event = self.delivery_event(&record, DeliveryEventKind::Received)?;
        match self.store.add_delivery(&record, &event) {
            Ok(_) => {}
            // The same delivery, received at the same time by another instance.
            Err(writ_store::StoreError::Conflict(_)) => {
                if let Some(receipt) = self.again(&record.delivery)? {
                    return Ok(receipt);
                }
            }
            Err(error) => return Err(error.into()),
        }
        if record.outcome == Outcome::Correlated
            && let (Some(object), Some(change)) = (&record.delivery.object, record.changes.first())
        {
            self.sweep(&source.name, object, change);
        }
        // Telemetry is a signal on top of the receipt: reconciliation of the target finds the
        // same commits, so a failure here is logged, not the delivery's.
        if let Err(error) = self.unstamped_pushes(&parsed, &record.delivery) {
            tracing::warn!(target: "writ::intake", %error, "pushed commits not checked for writes outside Writ");
        }
        Ok(Receipt { record, duplicate: false })
    }

    /// Raises `change.unmatched_telemetry` for each pushed commit that names no Writ change and
    /// touches the access file of a git target registered with that repository (and branch,
    /// when the target names one): the same finding a reconciliation of the target raises for
    /// it, raised at once. Like every telemetry finding it is an event: once there, it is not
    /// raised again.
    fn unstamped_pushes(&self, parsed: &Parsed, delivery: &Delivery) -> Result<()> {
        let Some(revision) = &parsed.revision else { return Ok(()) };
        if parsed.unstamped.is_empty() {
            return Ok(());
        }
        for target in self.store.targets()? {
            let setting = |key: &str| target.settings.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
            if target.connector.as_str() != "git"
                || setting("repository") != Some(revision.repository.as_str())
                || setting("branch").is_some_and(|b| b != revision.branch)
            {
                continue;
            }
            let file = setting("file").unwrap_or("access.toml");
            for commit in parsed.unstamped.iter().filter(|c| c.paths.iter().any(|p| p == file)) {
                let detail = format!(
                    "{} on {} was pushed to {}@{} naming no Writ change ({}, delivery {} from {}): review it, and \
                     revert it through a change or resolve this with what it was",
                    commit.sha,
                    target.name,
                    revision.repository,
                    revision.branch,
                    commit.summary,
                    delivery.id,
                    delivery.source
                );
                self.raise_event_finding(
                    crate::reconcile::TELEMETRY,
                    &format!("{} {}", target.name, commit.sha),
                    writ_core::reconcile::target_scope(&target.name),
                    detail,
                )?;
            }
        }
        Ok(())
    }

    /// A delivery received before: recorded again as a duplicate, or refused if its bytes differ.
    fn again(&self, delivery: &Delivery) -> Result<Option<Receipt>> {
        for _ in 0..3 {
            let Some(existing) = self.store.delivery(&delivery.source, &delivery.id)? else {
                return Ok(None);
            };
            if existing.delivery.sha256 != delivery.sha256 {
                self.refuse_delivery(RefusedDelivery {
                    source: delivery.source.clone(),
                    reason: "hook.delivery_id_reused".into(),
                    delivery: Some(delivery.id.clone()),
                    sha256: delivery.sha256,
                    at: delivery.received_at,
                })?;
                return Err(EngineError::Intake {
                    code: "hook.delivery_id_reused",
                    message: format!(
                        "delivery {} from {} was received before with different content: refused",
                        delivery.id, delivery.source
                    ),
                });
            }
            let again = DeliveryRecord {
                attempts: existing.attempts.saturating_add(1),
                updated_at: delivery.received_at,
                ..existing.clone()
            };
            let event = self.delivery_event(&again, DeliveryEventKind::Duplicate)?;
            match self.store.update_delivery(&again, (existing.outcome, existing.attempts), &event) {
                Ok(_) => return Ok(Some(Receipt { record: again, duplicate: true })),
                Err(writ_store::StoreError::Conflict(_)) => continue,
                Err(error) => return Err(error.into()),
            }
        }
        Err(writ_store::StoreError::Conflict(format!(
            "delivery {} is being recorded concurrently",
            delivery.id
        ))
        .into())
    }

    fn delivery_event(
        &self,
        record: &DeliveryRecord,
        kind: DeliveryEventKind,
    ) -> Result<writ_store::NewEvent> {
        let event = RegistryEvent::Delivery {
            actor: Actor::System(SystemActor::Intake),
            record: Box::new(record.clone()),
            kind,
        };
        Ok(registry_event(&event, self.hmac()?))
    }

    /// Finds or opens the changes a new delivery concerns, attaches it, and says what became of it.
    fn correlate(&self, source: &Source, parsed: &Parsed, delivery: Delivery) -> Result<DeliveryRecord> {
        let now = delivery.received_at;
        let object = delivery.object_key();
        let bound = self.store.object(&source.name, &object)?;
        let late = match (bound.as_ref().and_then(|(_, seen)| *seen), delivery.version) {
            (Some(seen), Some(version)) => version < seen,
            _ => false,
        };
        let mut notes: Vec<String> = Vec::new();
        let mut targets: Vec<(ChangeId, Option<ExternalRef>)> = Vec::new();
        let mut opened = Opened::NotAsked;
        for (id, commit) in &parsed.changes {
            if self.exists(id)? {
                targets.push((id.clone(), commit.clone()));
            } else {
                notes.push(format!("names {id}, which does not exist"));
            }
        }
        if let Some((id, _)) = &bound {
            if !targets.iter().any(|(t, _)| t == id) {
                if self.exists(id)? {
                    targets.push((id.clone(), None));
                } else {
                    // Reserved by an earlier delivery whose change was never opened.
                    opened = self.open_for(source, parsed, id.clone(), late, &mut notes)?;
                }
            }
        } else if let (Some((first, _)), Some(_)) = (targets.first(), &delivery.object) {
            // A ticket that names its change: later updates of the ticket find it too.
            self.store.bind_object(&source.name, &object, first, now)?;
        } else if parsed.request.is_some() && !late {
            let reserved = self.store.bind_object(
                &source.name,
                &object,
                &ChangeId::generate(now, crate::random_bits()?),
                now,
            )?;
            opened = if self.exists(&reserved)? {
                Opened::Change(reserved)
            } else {
                self.open_for(source, parsed, reserved, late, &mut notes)?
            };
        }
        if let Opened::Change(id) = &opened {
            targets.push((id.clone(), None));
        }
        // Application manifests the revision changed: one change per application.
        let mut deploy_refused = false;
        for app in parsed.apps.iter().filter(|_| !late) {
            match self.deploy(source, parsed, app, &mut notes)? {
                Opened::Change(id) if !targets.iter().any(|(t, _)| *t == id) => targets.push((id, None)),
                Opened::Refused => deploy_refused = true,
                Opened::Change(_) | Opened::NotAsked => {}
            }
        }
        let mut record = DeliveryRecord {
            delivery,
            outcome: Outcome::Ignored,
            changes: Vec::new(),
            detail: String::new(),
            attempts: 1,
            updated_at: now,
        };
        for (id, commit) in targets {
            let mut linked = record.delivery.clone();
            if let Some(commit) = commit {
                linked.refs.retain(|r| r.kind != writ_core::change::RefKind::Commit || *r == commit);
            }
            self.attach(&id, linked, late, parsed.cancelled, &source.requester, &mut notes)?;
            if let Some(comment) = &parsed.comment {
                self.comment_from(source, comment, &id, &mut notes)?;
            }
            if !late && !parsed.cancelled && !parsed.approved_by.is_empty() {
                self.ticket_approvals(source, parsed, &id, &record.delivery, &mut notes)?;
            }
            record.changes.push(id);
        }
        record.outcome = match (record.changes.is_empty(), late) {
            (false, true) => Outcome::Late,
            (false, false) => Outcome::Correlated,
            (true, _) if matches!(opened, Opened::Refused) || deploy_refused => Outcome::Refused,
            (true, _) if parsed.block_error.is_some() => {
                notes.extend(parsed.block_error.iter().map(|e| format!("refused: {e}")));
                Outcome::Refused
            }
            (true, _)
                if parsed.pending_request
                    || !parsed.changes.is_empty()
                    || !parsed.approved_by.is_empty()
                    || parsed.comment.is_some() =>
            {
                if parsed.comment.is_some() {
                    notes.push("a comment on a ticket with no change yet: the delivery is kept (its text is not), and attached as a record when the ticket gets its change".into());
                }
                if parsed.pending_request {
                    notes.push("asks for a change on an event that does not open one yet (for example an open pull request); waits for its object".into());
                }
                if !parsed.approved_by.is_empty() {
                    notes.push("an approval for a ticket with no change yet: kept, and attached (as a record, not counted) when the ticket gets its change".into());
                }
                Outcome::Uncorrelated
            }
            (true, _) => {
                if notes.is_empty() {
                    notes.push(
                        "nothing for Writ: no request block, no Writ-Change line, no known object".into(),
                    );
                }
                Outcome::Ignored
            }
        };
        if notes.is_empty() && !record.changes.is_empty() {
            let ids: Vec<String> = record.changes.iter().map(ToString::to_string).collect();
            notes.push(format!("attached to {}", ids.join(", ")));
        }
        record.detail = writ_core::machine::text(
            writ_core::machine::clean_text(&notes.join("; ")).chars().take(1000).collect(),
            "detail",
        )
        .unwrap_or_else(|_| record.outcome.as_str().to_owned());
        Ok(record)
    }

    /// Opens the change a delivery asks for under the reserved `id`; a refusal is noted, not
    /// raised (the delivery is kept with the reason).
    fn open_for(
        &self,
        source: &Source,
        parsed: &Parsed,
        id: ChangeId,
        late: bool,
        notes: &mut Vec<String>,
    ) -> Result<Opened> {
        let Some(block) = parsed.request.as_ref().filter(|_| !late) else {
            notes.push(format!("{id} is reserved for this object but not opened yet"));
            return Ok(Opened::NotAsked);
        };
        let text = block
            .justification
            .clone()
            .or_else(|| parsed.summary.clone())
            .unwrap_or_else(|| format!("{} from {}", parsed.event, source.name));
        let text = writ_core::machine::clean_text(&text);
        if let Some(account) = parsed.account.as_ref().filter(|a| !source.accounts.contains_key(*a))
            && source.unmapped == Unmapped::Refuse
        {
            notes.push(format!(
                "refused: the sender's account {account:?} is not mapped to a Writ identity: add it to the hook's `accounts` (or set unmapped_accounts = \"as_hook\" to open such changes as {})",
                source.requester
            ));
            return Ok(Opened::Refused);
        }
        let written = block.window.as_ref().or(parsed.window.as_ref());
        let window = match written.map(|(start, end, zone)| crate::window(start, end, zone)).transpose() {
            Ok(window) => window,
            Err(error) => {
                notes.push(format!("refused: {error}"));
                return Ok(Opened::Refused);
            }
        };
        let opened = Justification::parse(&text).map_err(EngineError::from).and_then(|justification| {
            let input = RequestInput {
                window,
                rollback_owner: None,
                requester: source.requester.clone(),
                on_behalf_of: self.on_behalf_of(source, parsed, notes),
                ops: block
                    .ops
                    .iter()
                    .map(|op| RequestedOp {
                        action: op.action,
                        identity: op.identity.clone(),
                        entitlement: op.entitlement.clone(),
                        duration: op.duration,
                    })
                    .collect(),
                justification,
                refs: Vec::new(),
                event: block.event.unwrap_or(BusinessEvent::Adhoc),
            };
            self.open_reserved(id, input)
        })?;
        match opened {
            Ok(id) => Ok(Opened::Change(id)),
            Err(reason) => {
                notes.push(format!("refused: {reason}"));
                Ok(Opened::Refused)
            }
        }
    }

    /// Counts the approvals a ticket carries as approvals of `id`, where a `[[ticket_approval]]`
    /// rule allows it for this source and the change's tier. Each is an ordinary approval by
    /// the mapped person, so every other check holds (who may approve, slots, separation of
    /// duties); what is not counted is noted with the reason.
    fn ticket_approvals(
        &self,
        source: &Source,
        parsed: &Parsed,
        id: &ChangeId,
        delivery: &Delivery,
        notes: &mut Vec<String>,
    ) -> Result<()> {
        let change = self.load(id)?.change;
        if change.state != writ_core::change::ChangeState::PendingApproval {
            notes.push(format!("approved in {}, but {id} is {}: not counted", source.name, change.state));
            return Ok(());
        }
        let tier = change.controls.as_ref().map(|c| c.tier.clone()).unwrap_or_default();
        let policy = self.policy()?;
        let Some(rule) = policy.rules().ticket_approval(source.name.as_str(), &tier) else {
            notes.push(format!(
                "approved in {}, but no [[ticket_approval]] rule counts its approvals at tier {tier:?}: approve {id} in Writ",
                source.name
            ));
            return Ok(());
        };
        for account in &parsed.approved_by {
            let Some(approver) = source.accounts.get(account) else {
                notes.push(format!(
                    "approval by account {account:?} not counted: it is not mapped to a Writ identity"
                ));
                continue;
            };
            // The person must be someone who may approve in Writ, within their organisation.
            let principal = writ_core::access::Principal {
                identity: self.identity(approver)?,
                roles: self.store.roles_of(approver)?,
            };
            let allowed = principal.may(writ_core::access::Action::Approve).and_then(|()| {
                principal
                    .within_scope(writ_core::access::Action::Approve, std::iter::once(change.vendor.as_ref()))
            });
            if let Err(forbidden) = allowed {
                notes.push(format!(
                    "approval by {approver} in {} not counted: {forbidden} ({})",
                    source.name,
                    forbidden.code()
                ));
                continue;
            }
            let via = Via {
                source: source.name.clone(),
                delivery: delivery.id.clone(),
                sha256: delivery.sha256_hex(),
                account: account.clone(),
                rule: rule.id.clone(),
            };
            match self.approve_via(id, approver, None, None, Some(&via)) {
                Ok(_) => notes.push(format!("approved by {approver} in {} (rule {})", source.name, rule.id)),
                Err(error) if refusable(&error) => notes.push(format!(
                    "approval by {approver} in {} not counted: {error} ({})",
                    source.name,
                    error.code()
                )),
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }

    /// The Writ identity a delivery is on behalf of: its sender's account, mapped by the
    /// source's configuration (an unmapped account is noted).
    pub(crate) fn on_behalf_of(
        &self,
        source: &Source,
        parsed: &Parsed,
        notes: &mut Vec<String>,
    ) -> Option<IdentityName> {
        let mapped = parsed.account.as_ref().and_then(|a| source.accounts.get(a)).cloned();
        if let (Some(account), None) = (&parsed.account, &mapped) {
            notes.push(format!("account {account:?} is not mapped to a Writ identity"));
        }
        mapped.filter(|p| *p != source.requester)
    }

    /// Opens a change under an ID reserved for an external object. The inner error is a
    /// refusal by the rules or policy (kept with the delivery, not raised); a change opened
    /// under the same ID by a concurrent delivery is found, not duplicated.
    pub(crate) fn open_reserved(
        &self,
        id: ChangeId,
        input: RequestInput,
    ) -> Result<std::result::Result<ChangeId, String>> {
        if self.exists(&id)? {
            return Ok(Ok(id));
        }
        match self.request_as(id.clone(), input) {
            Ok(record) => Ok(Ok(record.change.id)),
            Err(EngineError::Store(writ_store::StoreError::Conflict(_))) if self.exists(&id)? => Ok(Ok(id)),
            Err(error) if refusable(&error) => Ok(Err(format!("{error} ({})", error.code()))),
            Err(error) => Err(error),
        }
    }

    /// Attaches a delivery to a change and carries what it says (a cancellation), unless late.
    fn attach(
        &self,
        id: &ChangeId,
        delivery: Delivery,
        late: bool,
        cancelled: bool,
        requester: &IdentityName,
        notes: &mut Vec<String>,
    ) -> Result<()> {
        let label = format!("{}/{}", delivery.source, delivery.id);
        let (source, object) = (delivery.source.clone(), delivery.object.clone());
        let change = self.link(id, delivery, late)?;
        // A source may call off only what its own object opened: a change its requester asked
        // for whose first delivery is this object's (a change a person opened, or another
        // object's, only takes the delivery as a record).
        let opened_here = object.is_some()
            && change.requester == *requester
            && change
                .links
                .first()
                .is_some_and(|l| l.delivery.source == source && l.delivery.object == object);
        if change.state.is_terminal() {
            notes.push(format!("{id} is closed ({}): recorded only", change.state));
        } else if late {
            notes.push(format!("older than a version already seen: recorded on {id}, not acted on"));
        } else if cancelled && !opened_here {
            notes.push(format!(
                "cancelled in the source, but {id} was not opened by this object of {source}: not cancelled"
            ));
        } else if cancelled {
            // The core decides what can be cancelled; what it refuses is for a person.
            match self.cancel(id, requester, format!("cancelled in the source ({label})")) {
                Ok(_) => notes.push(format!("cancelled {id}")),
                Err(EngineError::Refused(refusal))
                    if refusal.code().starts_with("state.") || refusal.code() == "authority.not_yours" =>
                {
                    notes.push(format!(
                        "cancelled in the source, but {id} is {}: a person must decide ({refusal})",
                        change.state
                    ))
                }
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }

    /// Attaches a delivery to a change (attaching it again is not an error); the change after.
    pub(crate) fn link(
        &self,
        id: &ChangeId,
        delivery: Delivery,
        late: bool,
    ) -> Result<writ_core::change::Change> {
        match self.transition(id, Command::Link { delivery: Box::new(delivery), late }) {
            Ok(record) => Ok(record.change),
            Err(EngineError::Refused(writ_core::Refusal::AlreadyLinked { .. })) => Ok(self.load(id)?.change),
            Err(error) => Err(error),
        }
    }

    /// Whether a change with this ID has been opened.
    pub(crate) fn exists(&self, id: &ChangeId) -> Result<bool> {
        Ok(!self.store.change_events(id)?.is_empty())
    }

    /// Attaches the queued deliveries about an object once it has a change. Best effort: a
    /// failure is logged, and the deliveries stay queued for the next delivery or a person.
    fn sweep(&self, source: &SourceName, object: &str, change: &ChangeId) {
        let queued = match self.store.deliveries_about(source, object) {
            Ok(all) => all.into_iter().filter(|r| r.outcome == Outcome::Uncorrelated).take(SWEEP_LIMIT),
            Err(error) => {
                tracing::warn!(target: "writ::intake", %source, object, %error, "queued deliveries not attached");
                return;
            }
        };
        for queued in queued {
            if let Err(error) = self.attach_queued(&queued, change) {
                tracing::warn!(target: "writ::intake", %source, delivery = %queued.delivery.id, %error, "queued delivery not attached");
            }
        }
    }

    /// Attaches one queued delivery to `change` (by a person, or when its object got a change).
    pub fn attach_queued(&self, queued: &DeliveryRecord, change: &ChangeId) -> Result<DeliveryRecord> {
        let seen = match &queued.delivery.object {
            Some(object) => self.store.object(&queued.delivery.source, object)?.and_then(|(_, v)| v),
            None => None,
        };
        let late = matches!((seen, queued.delivery.version), (Some(seen), Some(v)) if v < seen);
        self.link(change, queued.delivery.clone(), late)?;
        let attached = DeliveryRecord {
            outcome: if late { Outcome::Late } else { Outcome::Correlated },
            changes: vec![change.clone()],
            detail: format!("attached to {change} after it was queued"),
            updated_at: self.now(),
            ..queued.clone()
        };
        let event = self.delivery_event(&attached, DeliveryEventKind::Correlated)?;
        self.store.update_delivery(&attached, (queued.outcome, queued.attempts), &event)?;
        Ok(attached)
    }
}

/// Errors that mean "this request is not acceptable" (kept with the delivery), as opposed to
/// "Writ cannot work now" (raised, so the sender retries).
pub(crate) fn refusable(error: &EngineError) -> bool {
    matches!(error, EngineError::Refused(_) | EngineError::Denied(_) | EngineError::NotFound { .. })
        || matches!(error, EngineError::Connector(writ_connector::ConnectorError::UnknownEntitlement { .. }))
}
