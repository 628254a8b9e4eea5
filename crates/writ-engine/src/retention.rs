//! Retention: what is kept, and for how long, once a change is closed.
//!
//! The policy's `[retention.clear_text]` and `[retention.evidence]` say how long after a change
//! closes (reviewed, rejected, cancelled, expired) the clear text of its sealed values
//! (justification, reasons, notes, comments, evidence names) and its evidence blobs are kept.
//! [`Engine::retention_run`] (`writ retention run`, and `writ serve` every hour) erases what is
//! past its term: the clear text and the blobs only. The events, which hold only the seals and
//! digests, stay, so the ledger, its proofs and auditor bundles still verify; each erasure is a
//! `change.erased` event naming the rule, committed in the transaction that deletes (if the
//! ledger cannot record it, nothing is deleted). A change under legal hold
//! ([`Engine::hold`]) keeps everything: the core refuses its erasure.
//!
//! Values and blobs are kept once, shared by everything that holds them (equal texts seal
//! alike; blobs are content-addressed), so one is erased only when no change that must still
//! keep it (held, open, or within its term) and no registry event holds it; what stays for that
//! reason is erased by a later run, once nothing needs it.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

use writ_core::change::{Change, ChangeId, RetentionClass};
use writ_core::event::{Event, RegistryEvent};
use writ_core::identity::Actor;
use writ_core::machine::{Command, decide, evolve};
use writ_core::name::IdentityName;
use writ_store::Erasure;

use crate::{ChangeRecord, Engine, EngineError, Result, evidence};

/// What one retention run erased, and what it left and why.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RetentionReport {
    /// Each erasure: the change, the rule, how many sealed values lost their clear text, how
    /// many blobs were deleted.
    pub erased: Vec<(ChangeId, String, u32, usize)>,
    /// Changes past a term that keep everything under legal hold.
    pub held: Vec<ChangeId>,
    /// Values and blobs past their term on one change but still needed by another record.
    pub shared_kept: usize,
}

/// What the scan learnt of one change.
#[derive(Default)]
struct Seen {
    change: Option<Change>,
    closed_at: Option<writ_core::time::Timestamp>,
    hmacs: BTreeSet<String>,
    blobs: BTreeSet<[u8; 32]>,
}

/// What one pass over the log found: each change, the seals registry events hold, and the
/// erasure requests.
type Scan = (BTreeMap<ChangeId, Seen>, BTreeSet<String>, Vec<ErasureRequest>);

/// How many events one page of the scan reads.
const PAGE: usize = 1000;

impl Engine {
    /// Places (`held`) or lifts a legal hold on a change, for an admin or an auditor, with the
    /// reason (sealed like a justification).
    pub fn hold(
        &self,
        id: &ChangeId,
        actor: &IdentityName,
        held: bool,
        reason: String,
    ) -> Result<ChangeRecord> {
        let identity = self.actor(actor)?;
        let record = self.load(id)?;
        let command = Command::Hold { actor: identity.clone(), held, reason };
        decide(Some(&record.change), command.clone(), self.clock.now())?;
        let roles = self.store.roles_of(&identity.name)?;
        if !roles
            .iter()
            .any(|r| matches!(r, writ_core::access::Role::Admin | writ_core::access::Role::Auditor))
        {
            return Err(writ_core::Refusal::NotYours {
                change: id.clone(),
                actor: identity.name,
                action: if held { "place a legal hold on" } else { "lift the legal hold on" },
                reason: "legal holds are placed and lifted by an admin or an auditor".into(),
            }
            .into());
        }
        self.transition_from(record, command, evidence::Captured::default())
    }

    /// Erases what the policy's `[retention]` says is past its term (see the module
    /// documentation). Reads the whole log once.
    pub fn retention_run(&self) -> Result<RetentionReport> {
        let policy = self.policy()?;
        let rules = policy.rules().retention.clone();
        let mut report = RetentionReport::default();
        let now = self.clock.now();
        let (changes, registry_hmacs, erasures) = self.scan_for_retention()?;
        for rule in &rules {
            let due = |seen: &Seen| {
                seen.closed_at
                    .is_some_and(|at| at.as_millis().saturating_add(rule.keep_ms) <= now.as_millis())
            };
            self.erase_where(&changes, &registry_hmacs, (&rule.id, rule.class), &due, &mut report)?;
        }
        // Approved requests to erase what is kept about a person: their closed changes' clear
        // text, whatever the term (a change closing later is erased by a later run).
        for request in erasures.iter().filter(|r| r.approved.is_some()) {
            let concerns = |seen: &Seen| {
                seen.change.as_ref().is_some_and(|c| {
                    !writ_core::authority::relationships(c, &request.subject).is_empty()
                        || c.comments.iter().any(|m| m.author.identity() == Some(&request.subject))
                })
            };
            let rule = format!("erasure.{}", request.id);
            self.erase_where(
                &changes,
                &registry_hmacs,
                (&rule, RetentionClass::ClearText),
                &concerns,
                &mut report,
            )?;
        }
        Ok(report)
    }

    /// Erases, of every closed change `due` picks and no legal hold keeps, what `class` covers
    /// and nothing else still needs, under the rule `rule`.
    fn erase_where(
        &self,
        changes: &BTreeMap<ChangeId, Seen>,
        registry_hmacs: &BTreeSet<String>,
        (rule, class): (&str, RetentionClass),
        due: &dyn Fn(&Seen) -> bool,
        report: &mut RetentionReport,
    ) -> Result<()> {
        let closed = |seen: &Seen| seen.change.as_ref().is_some_and(|c| c.state.is_terminal());
        let held = |seen: &Seen| seen.change.as_ref().is_some_and(|c| c.legal_hold.is_some());
        let eligible = |seen: &Seen| closed(seen) && due(seen) && !held(seen);
        // What something that is not erased now still holds.
        let mut keep_hmacs: BTreeSet<&String> = BTreeSet::new();
        let mut keep_blobs: BTreeSet<&[u8; 32]> = BTreeSet::new();
        if class == RetentionClass::ClearText {
            keep_hmacs.extend(registry_hmacs.iter());
        }
        for seen in changes.values().filter(|s| !eligible(s)) {
            keep_hmacs.extend(seen.hmacs.iter());
            keep_blobs.extend(seen.blobs.iter());
        }
        for (id, seen) in changes {
            if closed(seen) && due(seen) && held(seen) {
                if !report.held.contains(id) {
                    report.held.push(id.clone());
                }
                continue;
            }
            if !eligible(seen) {
                continue;
            }
            if let Some(erased) =
                self.erase_change(id, seen, (rule, class), (&keep_hmacs, &keep_blobs), report)?
            {
                report.erased.push(erased);
            }
        }
        Ok(())
    }

    /// Erases what `rule` covers of one change, but what `keep` still needs; `None` if nothing
    /// of it is left to erase.
    fn erase_change(
        &self,
        id: &ChangeId,
        seen: &Seen,
        (rule, class): (&str, RetentionClass),
        (keep_hmacs, keep_blobs): (&BTreeSet<&String>, &BTreeSet<&[u8; 32]>),
        report: &mut RetentionReport,
    ) -> Result<Option<(ChangeId, String, u32, usize)>> {
        let erasure = match class {
            RetentionClass::ClearText => {
                let wanted: Vec<String> =
                    seen.hmacs.iter().filter(|h| !keep_hmacs.contains(h)).cloned().collect();
                report.shared_kept += seen.hmacs.len() - wanted.len();
                let present = self.store.sensitive_many(&wanted)?;
                Erasure { hmacs: present.into_keys().collect(), blobs: Vec::new() }
            }
            RetentionClass::Evidence => {
                // Each change records the erasure of every blob it references, even one a change
                // sharing it had erased first: its own bundle must say why the blob is missing.
                let recorded: BTreeSet<&[u8; 32]> =
                    seen.change.iter().flat_map(|c| c.erasures.iter().flat_map(|e| e.blobs.iter())).collect();
                let blobs = seen
                    .blobs
                    .iter()
                    .filter(|d| !keep_blobs.contains(d) && !recorded.contains(d))
                    .copied()
                    .collect();
                report.shared_kept += seen.blobs.iter().filter(|d| keep_blobs.contains(d)).count();
                Erasure { hmacs: Vec::new(), blobs }
            }
        };
        if erasure.hmacs.is_empty() && erasure.blobs.is_empty() {
            return Ok(None);
        }
        let record = self.load(id)?;
        let values = u32::try_from(erasure.hmacs.len()).unwrap_or(u32::MAX);
        let command = Command::Erase { class, rule: rule.to_owned(), values, blobs: erasure.blobs.clone() };
        let events = decide(Some(&record.change), command, self.clock.now())?;
        let blobs = erasure.blobs.len();
        match self.commit_full(
            Some(&record.change),
            events,
            Vec::new(),
            evidence::Captured::default(),
            None,
            Some(erasure),
        ) {
            Ok(_) => {
                tracing::info!(target: "writ::retention", change = %id, rule, values, blobs, "erased");
                Ok(Some((id.clone(), rule.to_owned(), values, blobs)))
            }
            // Written meanwhile: the next run looks again.
            Err(EngineError::Store(writ_store::StoreError::Conflict(_))) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// One pass over the log: per change, its fold, when it closed, the seals and blobs its
    /// events hold; the seals registry events hold; and the erasure requests.
    fn scan_for_retention(&self) -> Result<Scan> {
        let mut changes: BTreeMap<ChangeId, Seen> = BTreeMap::new();
        let mut registry = BTreeSet::new();
        let mut requests = Vec::new();
        let sealed: RefCell<Vec<String>> = RefCell::new(Vec::new());
        let collect = |seal: &str| {
            sealed.borrow_mut().push(seal.to_owned());
            None
        };
        let mut from = 0;
        loop {
            let rows = self.store.events(from, PAGE)?;
            let Some(last) = rows.last().map(|r| r.index) else { break };
            for row in &rows {
                sealed.borrow_mut().clear();
                match writ_ledger::decode(&row.bytes, &collect)? {
                    Event::Change(event) => {
                        let seen = changes.entry(event.change.clone()).or_default();
                        let was_closed = seen.change.as_ref().is_some_and(|c| c.state.is_terminal());
                        let change = evolve(seen.change.take(), &event)?;
                        if !was_closed && change.state.is_terminal() {
                            seen.closed_at = Some(event.at);
                        }
                        seen.change = Some(change);
                        seen.hmacs.extend(sealed.borrow_mut().drain(..));
                        seen.blobs.extend(event.evidence.iter().map(|e| e.digest));
                    }
                    Event::Registry(event) => {
                        registry.extend(sealed.borrow_mut().drain(..));
                        fold_erasure(&mut requests, &event);
                    }
                }
            }
            from = last + 1;
        }
        Ok((changes, registry, requests))
    }

    /// Every request to erase what is kept about a person, oldest first.
    pub fn erasure_requests(&self) -> Result<Vec<ErasureRequest>> {
        let mut requests = Vec::new();
        let mut from = 0;
        loop {
            let rows = self.store.events(from, PAGE)?;
            let Some(last) = rows.last().map(|r| r.index) else { break };
            for row in rows.iter().filter(|r| r.change.is_none()) {
                if let Event::Registry(event) = writ_ledger::decode(&row.bytes, &|_| None)? {
                    fold_erasure(&mut requests, &event);
                }
            }
            from = last + 1;
        }
        Ok(requests)
    }

    /// Records a request to erase what Writ keeps about `subject` (a person's request, cited by
    /// `reference`), by an active person; nothing is erased until someone else approves it.
    pub fn request_erasure(
        &self,
        subject: &IdentityName,
        actor: &IdentityName,
        reference: &str,
        random: u128,
    ) -> Result<ErasureRequest> {
        let requester = self.actor(actor)?;
        if requester.kind != writ_core::identity::IdentityKind::Human {
            return Err(writ_core::Refusal::NotHuman {
                actor: requester.name,
                kind: requester.kind,
                action: "ask for an erasure",
            }
            .into());
        }
        self.identity(subject)?;
        let reference = writ_core::change::ExternalRef::new(writ_core::change::RefKind::Ticket, reference)?
            .value()
            .to_owned();
        let at = self.clock.now();
        let id = writ_core::change::erasure_id(at, random);
        let event = RegistryEvent::ErasureRequested {
            actor: Actor::Identity(requester.name.clone()),
            id: id.clone(),
            subject: subject.clone(),
            reference: reference.clone(),
            at,
        };
        self.store
            .append_once(
                &format!("erasure.requested.{id}"),
                subject.as_str(),
                &crate::registry_event(&event, self.hmac()?),
            )?
            .ok_or_else(|| writ_store::StoreError::Conflict(format!("erasure request {id} exists")))?;
        tracing::warn!(target: "writ::retention", erasure = %id, subject = %subject, requester = %requester.name, "erasure requested");
        Ok(ErasureRequest {
            id,
            subject: subject.clone(),
            requester: requester.name,
            reference,
            requested_at: at,
            approved: None,
        })
    }

    /// Approves an erasure request (an admin who neither asked for it nor is its subject;
    /// recorded once), then erases what it covers now (see [`Engine::retention_run`], which
    /// erases the rest as the subject's open changes close).
    pub fn approve_erasure(
        &self,
        id: &str,
        approver: &IdentityName,
    ) -> Result<(ErasureRequest, RetentionReport)> {
        let approver = self.actor(approver)?;
        let request = self
            .erasure_requests()?
            .into_iter()
            .find(|r| r.id == id)
            .ok_or_else(|| EngineError::NotFound { what: "erasure request", name: id.to_owned() })?;
        let denied = |code: &'static str, reason: String| {
            EngineError::from(writ_policy::Denial { code, rule: None, reason })
        };
        if !self.store.roles_of(&approver.name)?.contains(&writ_core::access::Role::Admin) {
            return Err(denied(
                "authority.not_yours",
                format!("{} may not approve an erasure: an admin approves it", approver.name),
            ));
        }
        for (who, role) in [(&request.requester, "requester"), (&request.subject, "subject")] {
            if *who == approver.name {
                return Err(denied(
                    "sod.self_approval",
                    format!(
                        "separation of duties: {} cannot approve {id} because they are its {role}",
                        approver.name
                    ),
                ));
            }
        }
        let at = self.clock.now();
        let event = RegistryEvent::ErasureApproved {
            actor: Actor::Identity(approver.name.clone()),
            id: id.to_owned(),
            at,
        };
        self.store
            .append_once(
                &format!("erasure.approved.{id}"),
                approver.name.as_str(),
                &crate::registry_event(&event, self.hmac()?),
            )?
            .ok_or_else(|| denied("state.invalid_transition", format!("{id} is approved already")))?;
        tracing::warn!(target: "writ::retention", erasure = %id, approver = %approver.name, "erasure approved");
        let report = self.retention_run()?;
        Ok((ErasureRequest { approved: Some((approver.name, at)), ..request }, report))
    }
}

/// A request to erase what Writ keeps about a person.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErasureRequest {
    pub id: String,
    pub subject: IdentityName,
    pub requester: IdentityName,
    pub reference: String,
    pub requested_at: writ_core::time::Timestamp,
    /// Who approved it, and when.
    pub approved: Option<(IdentityName, writ_core::time::Timestamp)>,
}

fn fold_erasure(requests: &mut Vec<ErasureRequest>, event: &RegistryEvent) {
    match event {
        RegistryEvent::ErasureRequested { actor: Actor::Identity(requester), id, subject, reference, at } => {
            requests.push(ErasureRequest {
                id: id.clone(),
                subject: subject.clone(),
                requester: requester.clone(),
                reference: reference.clone(),
                requested_at: *at,
                approved: None,
            });
        }
        RegistryEvent::ErasureApproved { actor: Actor::Identity(approver), id, at } => {
            if let Some(request) = requests.iter_mut().find(|r| &r.id == id && r.approved.is_none()) {
                request.approved = Some((approver.clone(), *at));
            }
        }
        _ => {}
    }
}
