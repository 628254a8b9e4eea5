//! Notifications in the engine: which notices an event writes with it (the outbox, from the
//! policy's `[[notify]]` routes and the identities' addresses), and the delivery pass that
//! hands due notifications to a [`Courier`] (email, webhooks: the server's), retries them on
//! the schedule and dead-letters the ones that never get through with a finding.
//!
//! Nothing in a change waits for a notification: an approval request whose notification
//! failed is still approved, and still escalates, on its own schedule.

use std::collections::BTreeMap;

use serde_json::json;
use writ_core::change::{Change, ChangeState};
use writ_core::event::{ChangeEvent, ChangeEventBody};
use writ_core::finding::Finding;
use writ_core::identity::{Actor, IdentityKind, IdentityState};
use writ_core::machine::Command;
use writ_core::name::IdentityName;
use writ_core::notify::{Channel, DEAD_LETTER, Notice, NoticeState, Notification, after_failure, kind};
use writ_core::time::Duration;
use writ_policy::{Audience, Policy, Route};
use writ_store::Attempt;

use crate::policy::person_of;
use crate::{Engine, EngineError, Result};

/// Why a delivery did not get through.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Undelivered {
    /// What happened, for the record and the logs (never a secret).
    pub reason: String,
    /// Trying again cannot help (a refused address, a redirect, a missing configuration): the
    /// notification is dead-lettered at once.
    pub permanent: bool,
}

/// One notification ready to send: its row, and what it says.
#[derive(Clone, Debug)]
pub struct Message {
    pub notification: Notification,
    /// One line, with the change ID (or the finding) in it.
    pub subject: String,
    /// The plain-text body.
    pub text: String,
    /// The webhook body: `{"type", "timestamp", "data"}` (Standard Webhooks' convention).
    pub payload: serde_json::Value,
}

/// Delivers messages over their channel.
pub trait Courier: Send + Sync {
    fn send(&self, message: &Message) -> std::result::Result<(), Undelivered>;
}

/// What one delivery pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeliveryPass {
    pub delivered: Vec<String>,
    pub retrying: Vec<String>,
    pub dead: Vec<String>,
}

/// How notifications are retried: the wait after each failed attempt (the last one used, the
/// notification is dead), and how long a dispatcher holds the one it is delivering (longer
/// than one delivery may take).
#[derive(Clone, Debug)]
pub struct Schedule {
    pub waits: Vec<Duration>,
    pub lease: Duration,
}

impl Default for Schedule {
    fn default() -> Schedule {
        Schedule { waits: writ_core::notify::SCHEDULE.to_vec(), lease: Duration::seconds(60) }
    }
}

/// Notifications one delivery pass delivers at most.
const BATCH: usize = 20;

/// The notification kind an event of `change` (as it stands after the event) tells of.
fn notice_kind(change: &Change, event: &ChangeEvent) -> Option<&'static str> {
    Some(match &event.body {
        ChangeEventBody::Validated { .. } | ChangeEventBody::Revalidated { .. }
            if change.state == ChangeState::PendingApproval =>
        {
            kind::APPROVAL_REQUESTED
        }
        ChangeEventBody::Escalated { .. } if change.emergency.is_some() => kind::BREAKGLASS_OVERDUE,
        ChangeEventBody::Escalated { .. } => kind::ESCALATED,
        ChangeEventBody::BreakGlass { .. } => kind::BREAKGLASS_OPENED,
        // Only the approval that completes the change: the others leave it pending.
        ChangeEventBody::Approved { .. } if change.state == ChangeState::Approved => kind::APPROVED,
        ChangeEventBody::Rejected { .. } => kind::REJECTED,
        ChangeEventBody::Expired { .. } => kind::EXPIRED,
        ChangeEventBody::Implemented { .. } | ChangeEventBody::AttemptRecovered { error: None, .. } => {
            kind::IMPLEMENTED
        }
        ChangeEventBody::ExecutionFailed { .. }
        | ChangeEventBody::AttemptRecovered { error: Some(_), .. } => kind::FAILED,
        ChangeEventBody::Verified { .. } => kind::VERIFIED,
        ChangeEventBody::VerificationFailed { .. } => kind::VERIFICATION_FAILED,
        ChangeEventBody::AlertRaised { .. } => kind::ALERT,
        ChangeEventBody::ExpiryWarned { .. } => kind::ACCESS_EXPIRING,
        _ => return None,
    })
}

/// The notices a set of routes gives, one per channel and address (a person reached by two
/// routes is told once; sealed text goes in clear only if every route that reaches them allows).
#[derive(Default)]
struct Notices {
    by_address: BTreeMap<(Channel, String), Notice>,
}

impl Notices {
    fn add(&mut self, kind: &str, recipient: String, channel: Channel, address: String, clear: bool) {
        self.by_address
            .entry((channel, address.clone()))
            .and_modify(|n| n.clear &= clear)
            .or_insert(Notice { kind: kind.to_owned(), recipient, channel, address, clear });
    }

    fn into_vec(self) -> Vec<Notice> {
        self.by_address.into_values().collect()
    }
}

impl Engine {
    /// The notices `event` writes with it, `change` being the change after it.
    pub(crate) fn change_notices(&self, change: &Change, event: &ChangeEvent) -> Result<Vec<Notice>> {
        let Some(kind) = notice_kind(change, event) else { return Ok(Vec::new()) };
        let policy = self.policy()?;
        let tier = change.controls.as_ref().map(|c| c.tier.as_str());
        let warned = match &event.body {
            ChangeEventBody::ExpiryWarned { identity, .. } => Some(identity),
            _ => None,
        };
        self.route_notices(&policy, kind, tier, |audience| {
            Ok(match audience {
                Audience::Requester => {
                    change.on_behalf_of.iter().chain([&change.requester]).cloned().collect()
                }
                Audience::Approvers => self.eligible_approvers(&policy, change)?,
                Audience::Escalation => match &event.body {
                    ChangeEventBody::Escalated { people, .. } => people.clone(),
                    _ => Vec::new(),
                },
                // A warning is about one grant: its holder, and that holder's owner.
                Audience::Holder => match warned {
                    Some(holder) => vec![holder.clone()],
                    None => change.ops.iter().map(|op| op.identity.clone()).collect(),
                },
                Audience::Owner => match warned {
                    Some(holder) => self.owner_of(holder)?.into_iter().collect(),
                    None => self.owners(&policy, change.ops.iter().map(|op| &op.identity), change)?,
                },
                Audience::RollbackOwner => change.rollback_owner.iter().cloned().collect(),
                Audience::Group(_) | Audience::Person(_) => Vec::new(),
            })
        })
    }

    /// The notices the opening of `finding` writes with it.
    pub(crate) fn finding_notices(&self, finding: &Finding) -> Result<Vec<Notice>> {
        let kind = if finding.kind == DEAD_LETTER { DEAD_LETTER } else { kind::FINDING_OPENED };
        // A notification about a dead letter that itself died is not told again: no loops.
        if finding.kind == DEAD_LETTER
            && self.store.notification(&finding.subject)?.is_some_and(|n| n.notice.kind == DEAD_LETTER)
        {
            return Ok(Vec::new());
        }
        let policy = self.policy()?;
        self.route_notices(&policy, kind, None, |audience| {
            match (audience, IdentityName::parse(&finding.subject)) {
                (Audience::Owner, Ok(subject)) => Ok(self.owner_of(&subject)?.into_iter().collect()),
                _ => Ok(Vec::new()),
            }
        })
    }

    /// The notices of a warning that `exception`'s term ends soon: to its owner and requester.
    pub(crate) fn exception_notices(
        &self,
        exception: &writ_core::exception::Exception,
    ) -> Result<Vec<Notice>> {
        let policy = self.policy()?;
        self.route_notices(&policy, kind::EXCEPTION_EXPIRING, None, |audience| {
            Ok(match audience {
                Audience::Owner => vec![exception.owner.clone()],
                Audience::Requester => vec![exception.requester.clone()],
                _ => Vec::new(),
            })
        })
    }

    /// The notices of every route telling of `kind` at `tier`: a group or person as the policy
    /// names them, the other audiences as `related` finds them for what happened.
    fn route_notices(
        &self,
        policy: &Policy,
        kind: &str,
        tier: Option<&str>,
        mut related: impl FnMut(&Audience) -> Result<Vec<IdentityName>>,
    ) -> Result<Vec<Notice>> {
        let routes: Vec<Route> = policy.rules().notify_routes(kind, tier).cloned().collect();
        let mut notices = Notices::default();
        for route in &routes {
            for audience in &route.to {
                let people = match audience {
                    Audience::Group(_) | Audience::Person(_) => named(policy, audience),
                    _ => related(audience)?,
                };
                self.reach(&mut notices, kind, route, audience, &people)?;
            }
        }
        Ok(notices.into_vec())
    }

    /// Adds a notice per channel of `route` for `people` (by email) and for a group's webhook.
    fn reach(
        &self,
        notices: &mut Notices,
        kind: &str,
        route: &Route,
        audience: &Audience,
        people: &[IdentityName],
    ) -> Result<()> {
        for channel in &route.channels {
            match channel {
                Channel::Email => {
                    for name in people {
                        // Only someone who can act is told: not a disabled or offboarded identity.
                        let Some(identity) = self.store.identity(name)? else { continue };
                        if let (true, Some(email)) = (identity.state == IdentityState::Active, identity.email)
                        {
                            notices.add(kind, name.to_string(), Channel::Email, email, route.clear_text);
                        }
                    }
                }
                Channel::Webhook => {
                    if let Audience::Group(group) = audience {
                        notices.add(
                            kind,
                            format!("group:{group}"),
                            Channel::Webhook,
                            group.clone(),
                            route.clear_text,
                        );
                    }
                }
            }
        }
        Ok(())
    }

    /// Everyone who could give one of the approvals `change` still needs: active people whom
    /// the core's separation of duties, Cedar and the open slots all let approve it.
    fn eligible_approvers(&self, policy: &Policy, change: &Change) -> Result<Vec<IdentityName>> {
        let facts = self.facts(change)?;
        let Ok(validation) = policy.validate(&facts) else { return Ok(Vec::new()) };
        let mut given = Vec::new();
        for approval in &change.approvals {
            if let Some(identity) = self.store.identity(&approval.approver)? {
                given.push(person_of(&identity));
            }
        }
        let now = self.now();
        let mut eligible = Vec::new();
        for candidate in self.store.identities()? {
            if candidate.kind != IdentityKind::Human || candidate.state != IdentityState::Active {
                continue;
            }
            let command =
                Command::Approve { approver: candidate.clone(), on_behalf_of: None, validity: None };
            if writ_core::machine::decide(Some(change), command, now).is_err() {
                continue;
            }
            let person = person_of(&candidate);
            if policy.authorize(writ_policy::Act::Approve, &person, &facts, None).is_err() {
                continue;
            }
            let mut people = given.clone();
            people.push(person);
            if policy.assign(&validation.slots, &people).is_some() {
                eligible.push(candidate.name);
            }
        }
        Ok(eligible)
    }

    /// The accountable owners of `subjects` (an NHI's owner) and of the change's entitlements.
    fn owners<'a>(
        &self,
        policy: &Policy,
        subjects: impl Iterator<Item = &'a IdentityName>,
        change: &Change,
    ) -> Result<Vec<IdentityName>> {
        let mut owners = Vec::new();
        for subject in subjects {
            owners.extend(self.owner_of(subject)?);
        }
        for op in &change.ops {
            if let (_, Some(owner)) = policy.rules().classify(&op.entitlement.to_string()) {
                owners.extend(IdentityName::parse(owner).ok());
            }
        }
        owners.sort();
        owners.dedup();
        Ok(owners)
    }

    fn owner_of(&self, subject: &IdentityName) -> Result<Option<IdentityName>> {
        Ok(self.store.identity(subject)?.and_then(|i| i.owner))
    }

    // ---- delivery ----

    /// One delivery pass: claims the notifications due now (a lease, so that several
    /// dispatchers deliver each once), hands each to `courier`, and records the outcome: delivered,
    /// due again after the schedule's next wait, or dead with a `notify.dead_letter` finding.
    pub fn deliver_notifications(
        &self,
        courier: &dyn Courier,
        holder: &str,
        schedule: &Schedule,
    ) -> Result<DeliveryPass> {
        let mut pass = DeliveryPass::default();
        // One at a time, each under a lease as long as one delivery: a dispatcher that dies
        // holds at most one notification, for at most one lease.
        for _ in 0..BATCH {
            let now = self.now();
            let Some(notification) =
                self.store.claim_notifications(holder, now, now.plus(schedule.lease), 1)?.into_iter().next()
            else {
                break;
            };
            let id = notification.id.clone();
            let attempts = notification.attempts.saturating_add(1);
            let outcome = match self.message(notification.clone()) {
                Ok(message) => courier.send(&message),
                Err(error) => {
                    Err(Undelivered { reason: format!("cannot be composed: {error}"), permanent: true })
                }
            };
            let at = self.now();
            let attempt = match outcome {
                Ok(()) => {
                    pass.delivered.push(id.clone());
                    tracing::info!(target: "writ::notify", notification = %id, channel = %notification.notice.channel, attempts, "delivered");
                    Attempt {
                        state: NoticeState::Delivered,
                        attempts,
                        next_at: at,
                        error: None,
                        delivered_at: Some(at),
                    }
                }
                Err(undelivered) => {
                    let next = if undelivered.permanent {
                        None
                    } else {
                        after_failure(&schedule.waits, attempts, at)
                    };
                    tracing::warn!(target: "writ::notify", notification = %id, channel = %notification.notice.channel, attempts, reason = %undelivered.reason, dead = next.is_none(), "not delivered");
                    match next {
                        Some(next_at) => {
                            pass.retrying.push(id.clone());
                            Attempt {
                                state: NoticeState::Pending,
                                attempts,
                                next_at,
                                error: Some(undelivered.reason),
                                delivered_at: None,
                            }
                        }
                        None => {
                            // The finding first: a pass cut off here leaves the notification
                            // pending, and the next pass finds the finding already open.
                            self.dead_letter(&notification, attempts, &undelivered.reason)?;
                            pass.dead.push(id.clone());
                            Attempt {
                                state: NoticeState::Dead,
                                attempts,
                                next_at: at,
                                error: Some(undelivered.reason),
                                delivered_at: None,
                            }
                        }
                    }
                }
            };
            match self.store.settle_notification(&id, holder, &attempt) {
                Ok(()) => {}
                // The lease ended and another dispatcher took it over: its outcome stands.
                Err(writ_store::StoreError::Conflict(detail)) => {
                    tracing::warn!(target: "writ::notify", notification = %id, %detail, "outcome not recorded");
                }
                Err(error) => return Err(error.into()),
            }
        }
        Ok(pass)
    }

    fn dead_letter(&self, notification: &Notification, attempts: u32, reason: &str) -> Result<()> {
        let notice = &notification.notice;
        let detail = format!(
            "the {} notification {} to {} by {} was not delivered after {attempts} attempt(s): {reason}; \
             fix the channel, then `writ notify retry {}`",
            notice.kind, notification.id, notice.recipient, notice.channel, notification.id
        );
        self.raise_finding(DEAD_LETTER, &notification.id, notification.change.clone(), detail)?;
        Ok(())
    }

    /// What a notification says: composed when it is sent, from the change or finding as it
    /// stands, so a retry tells the current state.
    pub fn message(&self, notification: Notification) -> Result<Message> {
        let row = self.check_outbox_row(&notification)?;
        let notice = &notification.notice;
        let mut data = json!({
            "notification": notification.id,
            "event": notification.event,
            "kind": notice.kind,
            "recipient": notice.recipient,
        });
        let (subject, mut text) = match &notification.change {
            Some(id) => {
                let change = self.load(id)?.change;
                let ops: Vec<String> = change
                    .ops
                    .iter()
                    .map(|op| format!("{} {} {}", op.action.as_str(), op.identity, op.entitlement))
                    .collect();
                let justification =
                    if notice.clear { Some(change.justification.as_str().to_owned()) } else { None };
                if let Some(object) = data.as_object_mut() {
                    object.insert("change".into(), json!(change.id.as_str()));
                    object.insert("state".into(), json!(change.state.as_str()));
                    object.insert("requester".into(), json!(change.requester.as_str()));
                    object.insert(
                        "on_behalf_of".into(),
                        json!(change.on_behalf_of.as_ref().map(IdentityName::as_str)),
                    );
                    object.insert("tier".into(), json!(change.controls.as_ref().map(|c| c.tier.as_str())));
                    object.insert("operations".into(), json!(ops));
                    object.insert("justification".into(), json!(justification));
                }
                let subject = format!("[Writ] {} {}: {}", change.id, headline(&notice.kind), ops.join(", "));
                let mut text = format!(
                    "{}\n\nChange:     {}\nState:      {}\nRequester:  {}\n",
                    headline(&notice.kind),
                    change.id,
                    change.state.as_str(),
                    change.requester
                );
                if let Some(principal) = &change.on_behalf_of {
                    text.push_str(&format!("On behalf of: {principal}\n"));
                }
                if let Some(controls) = &change.controls {
                    text.push_str(&format!("Tier:       {}\n", controls.tier));
                }
                text.push_str("Operations:\n");
                for op in &ops {
                    text.push_str(&format!("  - {op}\n"));
                }
                match justification {
                    Some(j) => text.push_str(&format!("Justification: {j}\n")),
                    None => text.push_str("Justification: sealed (read it in Writ: `writ change show`)\n"),
                }
                // A failed verification proposes its undoing to whoever answers for it.
                if notice.kind == kind::VERIFICATION_FAILED
                    && let Some(owner) = &change.rollback_owner
                {
                    text.push_str(&format!(
                        "Rollback owner: {owner}. To undo it: writ change rollback {} --as {owner} --justification \"…\"\n",
                        change.id
                    ));
                    if let Some(object) = data.as_object_mut() {
                        object.insert("rollback_owner".into(), json!(owner.as_str()));
                    }
                }
                // A warning says which access ends, and when.
                if let writ_core::event::Event::Change(ChangeEvent {
                    body: ChangeEventBody::ExpiryWarned { identity, entitlement, ends_at, .. },
                    ..
                }) = writ_ledger::decode(&row.bytes, &|_| None)?
                {
                    text.push_str(&format!("Ends:       {entitlement} of {identity} at {ends_at}\n"));
                    if let Some(object) = data.as_object_mut() {
                        object.insert(
                            "ends".into(),
                            json!({ "identity": identity.as_str(), "entitlement": entitlement.to_string(), "at": ends_at.to_rfc3339() }),
                        );
                    }
                }
                text.push_str(&format!("\nThe whole trail: writ change show {}\n", change.id));
                (subject, text)
            }
            None => match self.finding_of_event(notification.event)? {
                Some(finding) => {
                    if let Some(object) = data.as_object_mut() {
                        object.insert("finding".into(), json!(finding.id));
                        object.insert("finding_kind".into(), json!(finding.kind));
                        object.insert("subject".into(), json!(finding.subject));
                        object.insert("severity".into(), json!(finding.severity.as_str()));
                        object.insert("detail".into(), json!(finding.detail));
                    }
                    let subject = format!(
                        "[Writ] {} {}: {} {}",
                        finding.id,
                        headline(&notice.kind),
                        finding.kind,
                        finding.subject
                    );
                    let text = format!(
                        "{}\n\nFinding:  {}\nKind:     {}\nSubject:  {}\nSeverity: {}\n\n{}\n\nRead it: writ finding show {}\n",
                        headline(&notice.kind),
                        finding.id,
                        finding.kind,
                        finding.subject,
                        finding.severity,
                        finding.detail,
                        finding.id
                    );
                    (subject, text)
                }
                None => {
                    (format!("[Writ] {}", headline(&notice.kind)), format!("{}\n", headline(&notice.kind)))
                }
            },
        };
        text.push_str(&format!(
            "\nNotification {} (event {} of the ledger).\n",
            notification.id, notification.event
        ));
        let payload = json!({
            "type": notice.kind,
            "timestamp": notification.created_at.to_rfc3339(),
            "data": data,
        });
        Ok(Message { notification, subject, text, payload })
    }

    /// Notifications: of one change, in one state, newest first.
    pub fn notifications(
        &self,
        change: Option<&writ_core::change::ChangeId>,
        state: Option<NoticeState>,
        limit: usize,
    ) -> Result<Vec<Notification>> {
        Ok(self.store.notifications(change, state, limit)?)
    }

    pub fn notification(&self, id: &str) -> Result<Notification> {
        Notification::parse_id(id)?;
        self.store
            .notification(id)?
            .ok_or_else(|| EngineError::NotFound { what: "notification", name: id.to_owned() })
    }

    /// Makes a dead or pending notification due again now (`writ notify retry`). A delivered
    /// one is refused: it got through.
    pub fn retry_notification(&self, actor: &Actor, id: &str) -> Result<Notification> {
        self.acting(actor)?;
        self.notification(id)?;
        if !self.store.retry_notification(id, self.now())? {
            return Err(EngineError::Intake {
                code: "notify.delivered",
                message: format!("notification {id} was delivered already: nothing to retry"),
            });
        }
        tracing::info!(target: "writ::notify", notification = %id, actor = %actor, "retry requested");
        self.notification(id)
    }
}

impl Engine {
    /// Refuses to send what the ledger and the registry do not back: the outbox is a table an SQL
    /// edit could fill, so a row must name a recorded event (of its change), and reach a
    /// registered identity at its registered address, or a group's webhook.
    fn check_outbox_row(&self, notification: &Notification) -> Result<writ_store::EventRow> {
        let refuse = |why: String| {
            Err(EngineError::Store(writ_store::StoreError::Corrupt(format!(
                "notification {} does not match the ledger: {why}",
                notification.id
            ))))
        };
        let row = self
            .store
            .events(notification.event, 1)?
            .into_iter()
            .next()
            .filter(|r| r.index == notification.event);
        let Some(row) = row else { return refuse(format!("no event {}", notification.event)) };
        if row.change != notification.change {
            return refuse("its change is not the event's".into());
        }
        let notice = &notification.notice;
        match notice.channel {
            Channel::Email => {
                let registered = IdentityName::parse(&notice.recipient)
                    .ok()
                    .map(|name| self.store.identity(&name))
                    .transpose()?
                    .flatten()
                    .and_then(|identity| identity.email);
                if registered.as_deref() != Some(notice.address.as_str()) {
                    return refuse(format!(
                        "{} is not the registered address of {}",
                        notice.address, notice.recipient
                    ));
                }
            }
            Channel::Webhook => {
                if notice.recipient != format!("group:{}", notice.address) {
                    return refuse(format!("{} is not the webhook of {}", notice.address, notice.recipient));
                }
            }
        }
        Ok(row)
    }

    /// The finding an event at ledger index `index` records, if it records one.
    fn finding_of_event(&self, index: u64) -> Result<Option<Finding>> {
        let Some(row) = self.store.events(index, 1)?.into_iter().next().filter(|r| r.index == index) else {
            return Ok(None);
        };
        Ok(match writ_ledger::decode(&row.bytes, &|_| None)? {
            writ_core::event::Event::Registry(writ_core::event::RegistryEvent::Finding {
                finding, ..
            }) => Some(finding),
            _ => None,
        })
    }
}

/// The people a group or person audience names.
fn named(policy: &Policy, audience: &Audience) -> Vec<IdentityName> {
    let names = match audience {
        Audience::Group(group) => {
            policy.rules().members(group).cloned().unwrap_or_default().into_iter().collect()
        }
        Audience::Person(person) => vec![person.clone()],
        _ => Vec::new(),
    };
    names.iter().filter_map(|n| IdentityName::parse(n).ok()).collect()
}

/// A notification kind in words.
fn headline(kind: &str) -> &'static str {
    match kind {
        kind::APPROVAL_REQUESTED => "Approval requested",
        kind::ESCALATED => "Approval overdue: escalated",
        kind::BREAKGLASS_OPENED => "Break glass used",
        kind::BREAKGLASS_OVERDUE => "Break-glass change not approved by its deadline",
        kind::APPROVED => "Approved",
        kind::REJECTED => "Rejected",
        kind::EXPIRED => "Expired",
        kind::IMPLEMENTED => "Implemented",
        kind::FAILED => "Execution failed",
        kind::VERIFIED => "Verified",
        kind::VERIFICATION_FAILED => "Verification failed",
        kind::ALERT => "A person must act",
        kind::ACCESS_EXPIRING => "Time-bound access ends soon",
        kind::EXCEPTION_EXPIRING => "An exception ends soon",
        kind::FINDING_OPENED => "Finding opened",
        DEAD_LETTER => "A notification was not delivered",
        _ => "Notification",
    }
}
