//! `[[finding]]` and `[[secret]]`: how reconciliation's findings are weighed (severity and the
//! controls each fails) and how long a credential may live, per class.
//!
//! Without the sections every finding kind keeps its default severity and fails no named
//! control, and no credential is too old.

use writ_core::finding::Severity;

use super::*;

/// The credential classes a target reports (see `writ_connector::Credential`).
pub const SECRET_CLASSES: &[&str] = &["token", "lease", "static", "certificate"];

/// The finding kinds a `[[finding]]` rule may weigh: reconciliation's, break-glass's, automation's
/// and notification's.
pub const FINDING_KINDS: &[&str] = &[
    "access.unapproved",
    "access.missing",
    "access.expired_not_revoked",
    "identity.unmatched_account",
    "nhi.orphaned",
    "secret.long_lived",
    "access.stale",
    "change.unmatched_telemetry",
    "breakglass.approval_missed",
    "automation.paused",
    "notify.dead_letter",
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FindingSpec {
    kind: String,
    severity: Option<String>,
    #[serde(default)]
    controls: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SecretSpec {
    class: String,
    max_ttl: Option<String>,
    max_secret_age: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct UsageSpec {
    stale_after: String,
}

/// How long access may go unused before it is `access.stale` (`[usage] stale_after`), where
/// the target gives a usage signal; `None` without the section.
pub(super) fn stale_after(file: &RulesFile, text: &str) -> Result<Option<Duration>, PolicyError> {
    let Some(spec) = &file.usage else { return Ok(None) };
    let line = line_of(text, spec.span().start);
    let err = |reason: String| PolicyError::invalid(FILE, line, &format!("[usage]: {reason}"));
    Ok(Some(duration(&spec.get_ref().stale_after).map_err(err)?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AutomationSpec {
    window: Option<String>,
    max_removed_percent: Option<u8>,
    min_removed: Option<u32>,
    max_removed_grants: Option<u32>,
    feed_interval: Option<String>,
}

/// When automated removals pause (`[automation]`): more people removed within `window` than
/// `max_removed_percent` of the scope's holders (never fewer than `min_removed`), or more
/// grants than `max_removed_grants`; or an identity provider feed silent for longer than
/// `feed_interval` (when set: how often the provider syncs at the least).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AutomationLimits {
    pub window: Duration,
    pub max_removed_percent: u8,
    pub min_removed: u32,
    pub max_removed_grants: u32,
    pub feed_interval: Option<Duration>,
}

impl Default for AutomationLimits {
    fn default() -> AutomationLimits {
        AutomationLimits {
            window: Duration::hours(1),
            max_removed_percent: 10,
            min_removed: 3,
            max_removed_grants: 50,
            feed_interval: None,
        }
    }
}

impl AutomationLimits {
    /// Whether removing `removed` people and `grants` grants within the window, out of
    /// `holders`, is beyond the limits.
    pub fn exceeded(&self, removed: u64, grants: u64, holders: u64) -> bool {
        let share = holders.saturating_mul(u64::from(self.max_removed_percent)) / 100;
        removed > share.max(u64::from(self.min_removed)) || grants > u64::from(self.max_removed_grants)
    }
}

pub(super) fn automation(file: &RulesFile, text: &str) -> Result<AutomationLimits, PolicyError> {
    let Some(spec) = &file.automation else { return Ok(AutomationLimits::default()) };
    let line = line_of(text, spec.span().start);
    let spec = spec.get_ref();
    let err = |reason: String| PolicyError::invalid(FILE, line, &format!("[automation]: {reason}"));
    let defaults = AutomationLimits::default();
    let percent = spec.max_removed_percent.unwrap_or(defaults.max_removed_percent);
    if !(1..=100).contains(&percent) {
        return Err(err(format!("max_removed_percent {percent} must be from 1 to 100")));
    }
    Ok(AutomationLimits {
        window: spec.window.as_deref().map(duration).transpose().map_err(&err)?.unwrap_or(defaults.window),
        max_removed_percent: percent,
        min_removed: spec.min_removed.unwrap_or(defaults.min_removed),
        max_removed_grants: spec.max_removed_grants.unwrap_or(defaults.max_removed_grants),
        feed_interval: spec.feed_interval.as_deref().map(duration).transpose().map_err(&err)?,
    })
}

/// How a finding kind is weighed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FindingRule {
    pub kind: String,
    pub severity: Severity,
    pub controls: Vec<String>,
}

/// How long a credential of one class may live: `max_ttl` bounds the lifetime it was issued
/// with, `max_secret_age` how long ago it was issued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SecretLimit {
    pub max_ttl: Option<Duration>,
    pub max_secret_age: Option<Duration>,
}

pub(super) fn findings(file: &RulesFile, text: &str) -> Result<Vec<FindingRule>, PolicyError> {
    let mut rules: Vec<FindingRule> = Vec::new();
    for spec in &file.finding {
        let line = line_of(text, spec.span().start);
        let spec = spec.get_ref();
        let err = |reason: String| {
            PolicyError::invalid(FILE, line, &format!("[[finding]] {}: {reason}", spec.kind))
        };
        if !FINDING_KINDS.contains(&spec.kind.as_str()) {
            return Err(err(format!("unknown kind; one of {}", FINDING_KINDS.join(", "))));
        }
        if rules.iter().any(|r| r.kind == spec.kind) {
            return Err(err("given twice".into()));
        }
        let severity = match &spec.severity {
            Some(text) => Severity::parse(text).map_err(|e| err(e.to_string()))?,
            None => Severity::of_kind(&spec.kind),
        };
        rules.push(FindingRule { kind: spec.kind.clone(), severity, controls: spec.controls.clone() });
    }
    Ok(rules)
}

pub(super) fn secrets(file: &RulesFile, text: &str) -> Result<BTreeMap<String, SecretLimit>, PolicyError> {
    let mut limits = BTreeMap::new();
    for spec in &file.secret {
        let line = line_of(text, spec.span().start);
        let spec = spec.get_ref();
        let err = |reason: String| {
            PolicyError::invalid(FILE, line, &format!("[[secret]] {}: {reason}", spec.class))
        };
        if !SECRET_CLASSES.contains(&spec.class.as_str()) {
            return Err(err(format!("unknown class; one of {}", SECRET_CLASSES.join(", "))));
        }
        let limit = SecretLimit {
            max_ttl: spec.max_ttl.as_deref().map(duration).transpose().map_err(&err)?,
            max_secret_age: spec.max_secret_age.as_deref().map(duration).transpose().map_err(&err)?,
        };
        if limit.max_ttl.is_none() && limit.max_secret_age.is_none() {
            return Err(err("give max_ttl, max_secret_age or both".into()));
        }
        if limits.insert(spec.class.clone(), limit).is_some() {
            return Err(err("given twice".into()));
        }
    }
    Ok(limits)
}
