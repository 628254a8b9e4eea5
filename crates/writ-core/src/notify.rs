//! Notifications: who is told what about a change or a finding, over which channel, and how a
//! delivery that did not get through is tried again.
//!
//! A notification is written in the same store transaction as the event it tells of (the
//! outbox); a dispatcher delivers it at least once, retrying on the schedule until a bound,
//! after which it is dead-lettered. Its id is made from the event's ledger index, so it is
//! stable across retries and receivers deduplicate on it. Notifications are coordination, like
//! execution claims: they never grant authority, and nothing in the change waits for one.

use std::fmt;

use crate::Refusal;
use crate::change::ChangeId;
use crate::time::{Duration, Timestamp};

/// What a notification tells of. Policy routes name these (`[[notify]] on = […]`).
pub mod kind {
    /// A change waits for approvals: told to every person who could give one.
    pub const APPROVAL_REQUESTED: &str = "approval.requested";
    /// A pending approval passed its escalation deadline.
    pub const ESCALATED: &str = "change.escalated";
    /// Break glass was used: a change executes before its approval.
    pub const BREAKGLASS_OPENED: &str = "breakglass.opened";
    /// A break-glass change was not approved by its deadline.
    pub const BREAKGLASS_OVERDUE: &str = "breakglass.overdue";
    pub const APPROVED: &str = "change.approved";
    pub const REJECTED: &str = "change.rejected";
    pub const EXPIRED: &str = "change.expired";
    pub const IMPLEMENTED: &str = "change.implemented";
    pub const FAILED: &str = "change.failed";
    pub const VERIFIED: &str = "change.verified";
    pub const VERIFICATION_FAILED: &str = "change.verification_failed";
    /// Writ could not finish a change on its own; a person must act.
    pub const ALERT: &str = "change.alert";
    pub const FINDING_OPENED: &str = "finding.opened";
    /// Time-bound access ends within a day, or within an hour.
    pub const ACCESS_EXPIRING: &str = "access.expiring";
    /// An exception's term ends within a day, or within an hour.
    pub const EXCEPTION_EXPIRING: &str = "exception.expiring";

    /// Every kind a route may name.
    pub const ALL: [&str; 16] = [
        ACCESS_EXPIRING,
        EXCEPTION_EXPIRING,
        APPROVAL_REQUESTED,
        ESCALATED,
        BREAKGLASS_OPENED,
        BREAKGLASS_OVERDUE,
        APPROVED,
        REJECTED,
        EXPIRED,
        IMPLEMENTED,
        FAILED,
        VERIFIED,
        VERIFICATION_FAILED,
        ALERT,
        FINDING_OPENED,
        super::DEAD_LETTER,
    ];
}

/// The finding kind of a notification that never got through.
pub const DEAD_LETTER: &str = "notify.dead_letter";

/// How a notification travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Channel {
    /// To a person's email address.
    Email,
    /// To a group's webhook (Standard Webhooks, signed).
    Webhook,
}

impl Channel {
    pub const ALL: [Channel; 2] = [Channel::Email, Channel::Webhook];

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Webhook => "webhook",
        }
    }

    pub fn parse(input: &str) -> Result<Channel, Refusal> {
        Channel::ALL.into_iter().find(|c| c.as_str() == input).ok_or_else(|| Refusal::InvalidValue {
            field: "channel",
            input: input.chars().take(40).collect(),
            expected: "email or webhook",
        })
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a notification is in its delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NoticeState {
    /// Not delivered yet; tried again at `next_at`.
    Pending,
    /// The channel accepted it (a 2xx answer, an SMTP `250`).
    Delivered,
    /// Every attempt the schedule allows failed; a `notify.dead_letter` finding says so.
    Dead,
}

impl NoticeState {
    pub const ALL: [NoticeState; 3] = [NoticeState::Pending, NoticeState::Delivered, NoticeState::Dead];

    pub fn as_str(self) -> &'static str {
        match self {
            NoticeState::Pending => "pending",
            NoticeState::Delivered => "delivered",
            NoticeState::Dead => "dead",
        }
    }

    pub fn parse(input: &str) -> Result<NoticeState, Refusal> {
        NoticeState::ALL.into_iter().find(|s| s.as_str() == input).ok_or_else(|| Refusal::InvalidValue {
            field: "state",
            input: input.chars().take(40).collect(),
            expected: "one of pending, delivered, dead",
        })
    }
}

impl fmt::Display for NoticeState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A notification to write with its event: what it tells of, to whom, how.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Notice {
    /// One of [`kind::ALL`].
    pub kind: String,
    /// Who: an identity's name, or `group:NAME` for a group's webhook.
    pub recipient: String,
    pub channel: Channel,
    /// The email address, or the group's name for its webhook.
    pub address: String,
    /// Whether sealed text (a justification) may be sent in clear: the route allows it.
    pub clear: bool,
}

/// A notification as stored, with its delivery so far.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notification {
    /// `NTF-<event index>-<n>`: stable across retries, the receivers' idempotency key.
    pub id: String,
    /// The ledger index of the event it tells of.
    pub event: u64,
    pub change: Option<ChangeId>,
    /// The finding it tells of (`finding.opened`) or the one it raised (dead-lettered).
    pub notice: Notice,
    pub state: NoticeState,
    pub attempts: u32,
    /// When the dispatcher tries it (again).
    pub next_at: Timestamp,
    /// What the last failed attempt answered (never a secret: a status, a reason).
    pub last_error: Option<String>,
    pub created_at: Timestamp,
    pub delivered_at: Option<Timestamp>,
}

impl Notification {
    /// The id of the `n`th notification of the event at ledger index `event`.
    pub fn id_of(event: u64, n: usize) -> String {
        format!("NTF-{event}-{n}")
    }

    /// Checks the shape of a notification id before any lookup.
    pub fn parse_id(input: &str) -> Result<&str, Refusal> {
        let valid = input.strip_prefix("NTF-").and_then(|rest| rest.split_once('-')).is_some_and(|(e, n)| {
            !e.is_empty()
                && !n.is_empty()
                && e.len() <= 20
                && n.len() <= 6
                && e.bytes().all(|b| b.is_ascii_digit())
                && n.bytes().all(|b| b.is_ascii_digit())
        });
        if valid {
            Ok(input)
        } else {
            Err(Refusal::InvalidValue {
                field: "notification",
                input: input.chars().take(40).collect(),
                expected: "a notification id such as NTF-12-0",
            })
        }
    }
}

/// The Standard Webhooks retry schedule: the wait after the first, second, … failed attempt.
/// After the last one, the notification is dead-lettered.
pub const SCHEDULE: [Duration; 9] = [
    Duration::seconds(5),
    Duration::minutes(5),
    Duration::minutes(30),
    Duration::hours(2),
    Duration::hours(5),
    Duration::hours(10),
    Duration::hours(14),
    Duration::hours(20),
    Duration::hours(24),
];

/// What a failed attempt leads to: the next try at, or dead (`None`) once `attempts` (this one
/// included) have used the whole schedule.
pub fn after_failure(schedule: &[Duration], attempts: u32, now: Timestamp) -> Option<Timestamp> {
    let index = usize::try_from(attempts).ok()?.checked_sub(1)?;
    schedule.get(index).map(|wait| now.plus(*wait))
}

/// Checks an email address enough to refuse what no mail system takes: one `@` with text on
/// both sides, no spaces, control characters or the delimiters `<>,;"\()[]`, at most 254
/// characters (RFC 5321's path limit). The SMTP server is the final judge (a local relay may
/// take a domain without a dot).
pub fn parse_email(input: &str) -> Result<String, Refusal> {
    let refuse = || Refusal::InvalidValue {
        field: "email",
        input: input.chars().take(40).collect(),
        expected: "an email address such as alice@example.com",
    };
    let (local, domain) = input.split_once('@').ok_or_else(refuse)?;
    let plain = |s: &str| {
        !s.is_empty()
            && !s.contains('@')
            && s.chars().all(|c| !c.is_whitespace() && !c.is_control() && !"<>,;\"\\()[]\u{feff}".contains(c))
    };
    if input.chars().count() > 254 || !plain(local) || !plain(domain) {
        return Err(refuse());
    }
    Ok(input.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_ends_in_a_dead_letter() {
        let now = Timestamp::from_millis(0);
        assert_eq!(after_failure(&SCHEDULE, 1, now), Some(Timestamp::from_millis(5_000)));
        assert_eq!(after_failure(&SCHEDULE, 2, now), Some(Timestamp::from_millis(300_000)));
        assert_eq!(after_failure(&SCHEDULE, 9, now), Some(Timestamp::from_millis(86_400_000)));
        assert_eq!(after_failure(&SCHEDULE, 10, now), None);
        assert_eq!(after_failure(&[], 1, now), None);
        assert_eq!(after_failure(&SCHEDULE, 0, now), None);
    }

    #[test]
    fn emails_are_checked() {
        for good in ["alice@example.com", "a.b+c@sub.example.org", "root@localhost"] {
            assert_eq!(parse_email(good).ok().as_deref(), Some(good));
        }
        for bad in [
            "",
            "alice",
            "@example.com",
            "alice@",
            "a b@example.com",
            "a@b@c.com",
            "<a@b.c>",
            "a\u{85}@b.c",
            "a\n@b.c",
        ] {
            assert!(parse_email(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(parse_email(&format!("{}@example.com", "a".repeat(250))).is_err());
    }

    #[test]
    fn notification_ids_are_checked() {
        assert_eq!(Notification::id_of(12, 0), "NTF-12-0");
        assert!(Notification::parse_id("NTF-12-0").is_ok());
        for bad in ["NTF-", "NTF-12", "NTF-a-0", "ntf-1-0", "NTF-1-0-1", "NTF--0", "NTF-1-"] {
            assert!(Notification::parse_id(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
