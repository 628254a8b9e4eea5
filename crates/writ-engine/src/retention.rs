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
use writ_core::event::Event;
use writ_core::machine::{Command, decide, evolve};
use writ_core::name::IdentityName;
use writ_policy::RetentionRule;
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
        if rules.is_empty() {
            return Ok(report);
        }
        let now = self.clock.now();
        let (changes, registry_hmacs) = self.scan_for_retention()?;
        for rule in &rules {
            let due = |seen: &Seen| {
                seen.change.as_ref().is_some_and(|c| c.state.is_terminal())
                    && seen
                        .closed_at
                        .is_some_and(|at| at.as_millis().saturating_add(rule.keep_ms) <= now.as_millis())
            };
            let eligible =
                |seen: &Seen| due(seen) && seen.change.as_ref().is_some_and(|c| c.legal_hold.is_none());
            // What something that is not erased now still holds.
            let mut keep_hmacs: BTreeSet<&String> = BTreeSet::new();
            let mut keep_blobs: BTreeSet<&[u8; 32]> = BTreeSet::new();
            if rule.class == RetentionClass::ClearText {
                keep_hmacs.extend(registry_hmacs.iter());
            }
            for seen in changes.values().filter(|s| !eligible(s)) {
                keep_hmacs.extend(seen.hmacs.iter());
                keep_blobs.extend(seen.blobs.iter());
            }
            for (id, seen) in &changes {
                if due(seen) && !eligible(seen) {
                    if !report.held.contains(id) {
                        report.held.push(id.clone());
                    }
                    continue;
                }
                if !eligible(seen) {
                    continue;
                }
                if let Some(erased) =
                    self.erase_change(id, seen, rule, (&keep_hmacs, &keep_blobs), &mut report)?
                {
                    report.erased.push(erased);
                }
            }
        }
        Ok(report)
    }

    /// Erases what `rule` covers of one change, but what `keep` still needs; `None` if nothing
    /// of it is left to erase.
    fn erase_change(
        &self,
        id: &ChangeId,
        seen: &Seen,
        rule: &RetentionRule,
        (keep_hmacs, keep_blobs): (&BTreeSet<&String>, &BTreeSet<&[u8; 32]>),
        report: &mut RetentionReport,
    ) -> Result<Option<(ChangeId, String, u32, usize)>> {
        let erasure = match rule.class {
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
        let command =
            Command::Erase { class: rule.class, rule: rule.id.clone(), values, blobs: erasure.blobs.clone() };
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
                tracing::info!(target: "writ::retention", change = %id, rule = %rule.id, values, blobs, "erased");
                Ok(Some((id.clone(), rule.id.clone(), values, blobs)))
            }
            // Written meanwhile: the next run looks again.
            Err(EngineError::Store(writ_store::StoreError::Conflict(_))) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// One pass over the log: per change, its fold, when it closed, the seals and blobs its
    /// events hold; and the seals registry events hold.
    fn scan_for_retention(&self) -> Result<(BTreeMap<ChangeId, Seen>, BTreeSet<String>)> {
        let mut changes: BTreeMap<ChangeId, Seen> = BTreeMap::new();
        let mut registry = BTreeSet::new();
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
                    Event::Registry(_) => registry.extend(sealed.borrow_mut().drain(..)),
                }
            }
            from = last + 1;
        }
        Ok((changes, registry))
    }
}
