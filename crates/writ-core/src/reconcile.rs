//! Reconciliation: what a target holds against what Writ approved. Every (account,
//! entitlement) either side knows of gets one situation, after midPoint's synchronization
//! situations: `linked` (held and approved), `missing` (approved, not held), `unapproved` (held
//! with no approved change), `expired` (held past its approved end), `unmatched` (held by, or
//! an account of, no registered identity).
//!
//! Pure. Both sides arrive as streams sorted by the same key and are merged in one pass
//! ([`merge`]): no lookups per row, memory for the two cursors only.

use std::cmp::Ordering;
use std::fmt;

use crate::time::Timestamp;

/// Where one (account, entitlement) stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Situation {
    Linked,
    Missing,
    Unapproved,
    Expired,
    Unmatched,
}

impl Situation {
    pub const ALL: [Situation; 5] = [
        Situation::Linked,
        Situation::Missing,
        Situation::Unapproved,
        Situation::Expired,
        Situation::Unmatched,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Situation::Linked => "linked",
            Situation::Missing => "missing",
            Situation::Unapproved => "unapproved",
            Situation::Expired => "expired",
            Situation::Unmatched => "unmatched",
        }
    }

    /// The finding kind this situation raises; `None` for `linked`.
    pub fn finding_kind(self) -> Option<&'static str> {
        match self {
            Situation::Linked => None,
            Situation::Missing => Some("access.missing"),
            Situation::Unapproved => Some("access.unapproved"),
            Situation::Expired => Some("access.expired_not_revoked"),
            Situation::Unmatched => Some("identity.unmatched_account"),
        }
    }

    fn slot(self) -> usize {
        match self {
            Situation::Linked => 0,
            Situation::Missing => 1,
            Situation::Unapproved => 2,
            Situation::Expired => 3,
            Situation::Unmatched => 4,
        }
    }
}

impl fmt::Display for Situation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The situation of one (account, entitlement): `approved` is the approved end of Writ's grant
/// (`Some(None)`: no end), `None` if Writ approved nothing; `held` whether the target has it;
/// `registered` whether the account is a registered identity. `None` when there is nothing
/// to say (an expired grant the target no longer holds: the expiry job only has to forget it).
pub fn situation(
    approved: Option<Option<Timestamp>>,
    held: bool,
    registered: bool,
    now: Timestamp,
) -> Option<Situation> {
    match (approved, held) {
        (None, false) => None,
        (None, true) if registered => Some(Situation::Unapproved),
        (None, true) => Some(Situation::Unmatched),
        (Some(Some(end)), true) if end <= now => Some(Situation::Expired),
        (Some(_), true) => Some(Situation::Linked),
        (Some(Some(end)), false) if end <= now => None,
        (Some(_), false) => Some(Situation::Missing),
    }
}

/// Merges two streams sorted ascending by key (each key at most once per stream), calling
/// `visit` once per key with what each side has for it. Panics never; a stream out of order
/// is reported as `Err` with the offending key's position, since a merge over unsorted input
/// would classify wrongly.
pub fn merge<K: Ord, A, H>(
    approved: impl IntoIterator<Item = (K, A)>,
    held: impl IntoIterator<Item = (K, H)>,
    mut visit: impl FnMut(&K, Option<A>, Option<H>),
) -> Result<(), Unsorted> {
    let mut left = approved.into_iter();
    let mut right = held.into_iter();
    let (mut a, mut h) = (left.next(), right.next());
    let (mut last_a, mut last_h): (Option<K>, Option<K>) = (None, None);
    let mut position = 0u64;
    loop {
        position += 1;
        let order = match (&a, &h) {
            (None, None) => return Ok(()),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some((ka, _)), Some((kh, _))) => ka.cmp(kh),
        };
        if order != Ordering::Greater
            && let (Some((ka, _)), Some(prev)) = (&a, &last_a)
            && ka <= prev
        {
            return Err(Unsorted { side: "approved", position });
        }
        if order != Ordering::Less
            && let (Some((kh, _)), Some(prev)) = (&h, &last_h)
            && kh <= prev
        {
            return Err(Unsorted { side: "held", position });
        }
        match order {
            Ordering::Less => {
                if let Some((k, va)) = a.take() {
                    visit(&k, Some(va), None);
                    last_a = Some(k);
                }
                a = left.next();
            }
            Ordering::Greater => {
                if let Some((k, vh)) = h.take() {
                    visit(&k, None, Some(vh));
                    last_h = Some(k);
                }
                h = right.next();
            }
            Ordering::Equal => {
                if let (Some((k, va)), Some((kh, vh))) = (a.take(), h.take()) {
                    visit(&k, Some(va), Some(vh));
                    last_a = Some(k);
                    last_h = Some(kh);
                }
                a = left.next();
                h = right.next();
            }
        }
    }
}

/// A stream given to [`merge`] was not sorted (or repeated a key).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the {side} stream is not sorted by key (at item {position})")]
pub struct Unsorted {
    pub side: &'static str,
    pub position: u64,
}

/// How many (account, entitlement) pairs are in each situation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally([u64; 5]);

impl Tally {
    pub fn add(&mut self, situation: Situation) {
        if let Some(count) = self.0.get_mut(situation.slot()) {
            *count += 1;
        }
    }

    pub fn get(&self, situation: Situation) -> u64 {
        self.0.get(situation.slot()).copied().unwrap_or_default()
    }

    /// (situation, count) for every situation, in [`Situation::ALL`] order.
    pub fn pairs(&self) -> impl Iterator<Item = (Situation, u64)> + '_ {
        Situation::ALL.into_iter().map(|s| (s, self.get(s)))
    }
}

impl Tally {
    /// A tally from (situation, count) pairs, as a record holds it.
    pub fn from_pairs(pairs: impl IntoIterator<Item = (Situation, u64)>) -> Tally {
        let mut tally = Tally::default();
        for (situation, count) in pairs {
            if let Some(slot) = tally.0.get_mut(situation.slot()) {
                *slot = count;
            }
        }
        tally
    }
}

impl Situation {
    pub fn parse(input: &str) -> Result<Situation, crate::Refusal> {
        Situation::ALL.into_iter().find(|s| s.as_str() == input).ok_or_else(|| crate::Refusal::InvalidValue {
            field: "situation",
            input: input.chars().take(40).collect(),
            expected: "one of linked, missing, unapproved, expired, unmatched",
        })
    }
}

/// The scope of a reconciliation of one target (`target:NAME`), as runs and findings name it.
pub fn target_scope(target: &crate::name::TargetName) -> String {
    format!("target:{target}")
}

/// The scope of the registry's own checks (orphaned non-human identities).
pub const REGISTRY_SCOPE: &str = "registry";

/// One reconciliation run as the ledger records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Run {
    /// What was reconciled: [`target_scope`] or [`REGISTRY_SCOPE`].
    pub scope: String,
    pub at: Timestamp,
    /// SHA-256 of the observed snapshot, kept as an evidence blob, and its size in bytes.
    pub snapshot: [u8; 32],
    pub snapshot_size: u64,
    pub tally: Tally,
    /// Why the observation was incomplete; empty when complete.
    pub partial: Vec<String>,
    /// Whether the target gave a usage signal.
    pub usage_signal: bool,
    /// The findings this run saw (opened, reopened or still open), by id: their `last_seen`.
    pub seen: Vec<String>,
}
