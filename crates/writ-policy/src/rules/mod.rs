//! The declarative workflow rules (`rules.toml`): tiers, groups, entitlement classes and rules,
//! parsed and checked once (one module per section of the file), then evaluated against a
//! change's facts.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use toml::Spanned;
use writ_core::time::Duration;

use crate::window::Recurring;
use crate::{ChangeFacts, Denial, PolicyError};

mod birthright;
mod breakglass;
mod entitlements;
mod exception;
mod notify;
mod reconcile;
mod ticket_approval;
mod tiers;
mod workflow;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    #[serde(default)]
    tier: Vec<Spanned<TierSpec>>,
    #[serde(default)]
    groups: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    entitlement: Vec<Spanned<EntitlementSpec>>,
    #[serde(default)]
    breakglass: Option<Spanned<BreakglassSpec>>,
    #[serde(default)]
    rule: Vec<Spanned<RuleSpec>>,
    #[serde(default)]
    exception: Option<Spanned<ExceptionSpec>>,
    #[serde(default)]
    birthright: Vec<Spanned<BirthrightSpec>>,
    #[serde(default)]
    ticket_approval: Vec<Spanned<TicketApprovalSpec>>,
    #[serde(default)]
    finding: Vec<Spanned<reconcile::FindingSpec>>,
    #[serde(default)]
    secret: Vec<Spanned<reconcile::SecretSpec>>,
    #[serde(default)]
    automation: Option<Spanned<reconcile::AutomationSpec>>,
    #[serde(default)]
    usage: Option<Spanned<reconcile::UsageSpec>>,
    #[serde(default)]
    notify: Vec<Spanned<notify::NotifySpec>>,
    #[serde(default)]
    rollback: Option<Spanned<RollbackSpec>>,
    #[serde(default)]
    retention: Option<Spanned<BTreeMap<String, RetentionSpec>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RetentionSpec {
    keep: String,
}

/// How long one class of data is kept after a change closes (`[retention.CLASS] keep`); the
/// rule id recorded with each erasure is `retention.CLASS`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetentionRule {
    pub id: String,
    pub class: writ_core::change::RetentionClass,
    /// Milliseconds after the change closed.
    pub keep_ms: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RollbackSpec {
    owners: Vec<String>,
}

/// Where a change's rollback owner comes from (`[rollback] owners`), tried in order until one
/// names an active human: the owner of an NHI the change is about, the owner of an entitlement
/// it touches, the requester (or, for an NHI requester, its owner), or a named person.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RollbackOwner {
    SubjectOwner,
    EntitlementOwner,
    Requester,
    Person(String),
}

impl RollbackOwner {
    /// The order without a `[rollback]` section.
    pub const DEFAULT: [RollbackOwner; 3] =
        [RollbackOwner::SubjectOwner, RollbackOwner::EntitlementOwner, RollbackOwner::Requester];
}

pub use notify::{Audience, Route};
pub use reconcile::{AutomationLimits, FINDING_KINDS, FindingRule, SECRET_CLASSES, SecretLimit};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TicketApprovalSpec {
    id: String,
    description: Option<String>,
    source: String,
    tiers: Vec<String>,
}

/// Where a ticket's approval counts as the approval of the person who gave it
/// (`[[ticket_approval]]`): approvals received from `source` (a hook's name), on changes at one
/// of `tiers`. Everything else about an approval still holds: the person must be allowed to
/// approve, fill a slot, and be neither the requester nor a subject.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TicketApproval {
    pub id: String,
    pub description: Option<String>,
    pub source: String,
    pub tiers: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BirthrightSpec {
    id: String,
    description: Option<String>,
    #[serde(default)]
    when: BirthrightWhen,
    grant: Vec<String>,
}

/// What a person's IdP record must show for a birthright rule to apply: every key given must
/// match (any of its values, in any case); no key at all applies to every active person.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BirthrightWhen {
    pub department: Option<Vec<String>>,
    pub title: Option<Vec<String>>,
    pub user_type: Option<Vec<String>>,
    pub role: Option<Vec<String>>,
    pub group: Option<Vec<String>>,
}

/// A birthright rule: who gets what by virtue of their place in the organisation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Birthright {
    pub id: String,
    pub description: Option<String>,
    pub when: BirthrightWhen,
    pub grant: Vec<writ_core::name::EntitlementRef>,
}

/// The facts of a person's IdP record (a SCIM User) the birthright rules look at.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Record {
    pub department: Option<String>,
    pub title: Option<String>,
    pub user_type: Option<String>,
    pub roles: Vec<String>,
    pub groups: Vec<String>,
}

impl BirthrightWhen {
    fn matches(&self, person: &Record) -> bool {
        let one = |want: &Option<Vec<String>>, have: Option<&String>| match want {
            None => true,
            Some(want) => have.is_some_and(|h| want.iter().any(|w| w.eq_ignore_ascii_case(h))),
        };
        let any = |want: &Option<Vec<String>>, have: &[String]| match want {
            None => true,
            Some(want) => have.iter().any(|h| want.iter().any(|w| w.eq_ignore_ascii_case(h))),
        };
        one(&self.department, person.department.as_ref())
            && one(&self.title, person.title.as_ref())
            && one(&self.user_type, person.user_type.as_ref())
            && any(&self.role, &person.roles)
            && any(&self.group, &person.groups)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExceptionSpec {
    id: String,
    description: Option<String>,
    #[serde(default)]
    controls: Vec<String>,
    tier: String,
    #[serde(default)]
    approvers: Vec<String>,
    max_duration: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TierSpec {
    name: String,
    approvals: u8,
    approval_validity: String,
    escalate_after: Option<String>,
    escalate_to: Option<String>,
    max_duration: Option<String>,
    #[serde(default)]
    review: bool,
    #[serde(default)]
    require_ticket: bool,
    #[serde(default)]
    require_window: bool,
    #[serde(default)]
    allowed_windows: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EntitlementSpec {
    #[serde(rename = "match")]
    patterns: Vec<String>,
    #[serde(default)]
    privileged: bool,
    owner: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BreakglassSpec {
    max_duration: String,
    approval_deadline: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleSpec {
    id: String,
    description: Option<String>,
    #[serde(default)]
    controls: Vec<String>,
    #[serde(default)]
    when: When,
    tier: Option<String>,
    #[serde(default)]
    approvers: Vec<String>,
    max_duration: Option<String>,
    require_ticket: Option<bool>,
    review: Option<bool>,
    deny: Option<String>,
    require_window: Option<bool>,
    #[serde(default)]
    allowed_windows: Vec<String>,
}

/// When a rule applies. Every condition given must hold; the operation conditions must hold
/// for one operation of the change (the rule then acts on every operation that matched).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct When {
    // change conditions
    kind: Option<Vec<String>>,
    event: Option<Vec<String>>,
    vendor: Option<bool>,
    has_ticket: Option<bool>,
    emergency: Option<bool>,
    // operation conditions
    action: Option<Vec<String>>,
    entitlement: Option<Vec<String>>,
    subject_kind: Option<Vec<String>>,
    subject_nhi: Option<bool>,
    subject_owned: Option<bool>,
    privileged: Option<bool>,
    entitlement_owned: Option<bool>,
    has_duration: Option<bool>,
}

/// A risk tier and its defaults.
#[derive(Clone, Debug)]
pub struct Tier {
    pub name: String,
    pub approvals: u8,
    pub validity: Duration,
    pub escalate_after: Option<Duration>,
    pub escalate_to: Option<String>,
    pub max_duration: Option<Duration>,
    pub review: bool,
    pub require_ticket: bool,
    /// Changes of this tier are carried out in a maintenance window (`allowed_windows`, if
    /// any, says which windows are allowed).
    pub require_window: bool,
    pub allowed_windows: Vec<crate::window::Recurring>,
}

/// Who may fill an approval slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Eligible {
    /// Any human the Cedar policy lets approve.
    Anyone,
    /// A human who acts for no vendor.
    Internal,
    /// A member of this group.
    Group { name: String, members: BTreeSet<String> },
    /// One of these people.
    People(BTreeSet<String>),
}

/// One approval a change needs: a label recorded in the ledger, and who can give it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slot {
    pub label: String,
    pub eligible: Eligible,
}

/// What the rules decided for a change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Validation {
    pub tier: String,
    pub approvals: u8,
    pub validity: Duration,
    /// One slot per approval; the slots beyond the named ones are `any`.
    pub slots: Vec<Slot>,
    pub escalate_after: Option<Duration>,
    pub escalate_to: Option<String>,
    pub review: bool,
    /// The rules that matched, in file order.
    pub rules: Vec<String>,
    /// The longest duration each operation may have (in the facts' order), and the rule or
    /// tier (`tier.NAME`) that sets it; `None`: no limit.
    pub max_durations: Vec<(Option<Duration>, String)>,
    /// The rules (or `tier.NAME`) that demand a maintenance window, each with the windows it
    /// allows (empty: any window).
    pub window_rules: Vec<(String, Vec<crate::window::Recurring>)>,
}

#[derive(Clone, Debug)]
enum SlotSpec {
    Any,
    Internal,
    Group(String),
    Person(String),
    SubjectOwner,
    EntitlementOwner,
    RollbackOwner,
}

#[derive(Clone, Debug)]
struct Rule {
    id: String,
    controls: Vec<String>,
    description: Option<String>,
    when: When,
    tier: Option<usize>,
    approvers: Vec<SlotSpec>,
    max_duration: Option<Duration>,
    require_ticket: Option<bool>,
    review: Option<bool>,
    deny: Option<String>,
    require_window: Option<bool>,
    allowed_windows: Vec<crate::window::Recurring>,
}

#[derive(Clone, Debug)]
struct EntitlementClass {
    patterns: Vec<String>,
    privileged: bool,
    owner: Option<String>,
}

/// Break-glass limits: how long an emergency grant lasts and how soon someone else must
/// approve it after the fact.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Breakglass {
    pub max_duration: Duration,
    pub approval_deadline: Duration,
}

/// How exceptions are approved (`[exception]`): the rule id recorded with each decision, the
/// tier whose approval count applies, named approver slots, and the longest term an exception
/// (or a renewal, counted from when it is asked for) may have.
#[derive(Clone, Debug)]
struct ExceptionRule {
    id: String,
    description: Option<String>,
    controls: Vec<String>,
    tier: usize,
    approvers: Vec<SlotSpec>,
    max_duration: Duration,
}

/// What an exception needs, as the policy in force decides it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExceptionPolicy {
    /// The rule id recorded with every exception decision.
    pub rule: String,
    pub tier: String,
    pub approvals: u8,
    /// One slot per approval; the slots beyond the named ones are `any`.
    pub slots: Vec<Slot>,
    pub max_duration: Duration,
}

/// The compiled `rules.toml`.
#[derive(Clone, Debug)]
pub struct Rules {
    tiers: Vec<Tier>,
    groups: BTreeMap<String, BTreeSet<String>>,
    entitlements: Vec<EntitlementClass>,
    rules: Vec<Rule>,
    exception: ExceptionRule,
    pub breakglass: Breakglass,
    birthright: Vec<Birthright>,
    ticket_approvals: Vec<TicketApproval>,
    findings: Vec<FindingRule>,
    secrets: BTreeMap<String, SecretLimit>,
    pub automation: AutomationLimits,
    /// How long access may go unused before it is stale (`[usage]`), if the policy says.
    pub stale_after: Option<Duration>,
    /// Where a change's rollback owner comes from, tried in order (`[rollback] owners`).
    pub rollback_owners: Vec<RollbackOwner>,
    /// How long each class of data is kept after a change closes (`[retention]`); empty:
    /// nothing is erased.
    pub retention: Vec<RetentionRule>,
    notify: Vec<Route>,
}

const FILE: &str = "rules.toml";
const CHANGE_KINDS: &[&str] = &[
    "grant",
    "revoke",
    "modify",
    "time_bound_elevation",
    "rotate_secret",
    "rotate_certificate",
    "create_identity",
    "decommission_identity",
    "transfer_ownership",
];
const EVENTS: &[&str] =
    &["joiner", "mover", "leaver", "deploy", "decommission", "incident", "vendor", "adhoc", "expiry"];
const ACTIONS: &[&str] = &["grant", "revoke", "rotate"];
const KINDS: &[&str] =
    &["human", "service_account", "api_key", "secret", "certificate", "workload", "ai_agent"];

impl Rules {
    pub fn parse(text: &str) -> Result<Rules, PolicyError> {
        let file: RulesFile = toml::from_str(text).map_err(|e| {
            let line = e.span().map_or(0, |span| line_of(text, span.start));
            PolicyError::invalid(FILE, line, e.message())
        })?;
        let tiers = tiers::tiers(&file, text)?;
        let groups = tiers::groups(&file, text, &tiers)?;
        let entitlements = entitlements::entitlements(&file, text)?;
        let breakglass = breakglass::breakglass(&file, text)?;
        let rules = workflow::rules(&file, text, &tiers, &groups)?;
        let exception = exception::exception(&file, text, &tiers, &groups, &rules)?;
        let birthright = birthright::birthright(&file, text)?;
        let ticket_approvals = ticket_approval::ticket_approvals(&file, text, &tiers)?;
        let findings = reconcile::findings(&file, text)?;
        let secrets = reconcile::secrets(&file, text)?;
        let automation = reconcile::automation(&file, text)?;
        let stale_after = reconcile::stale_after(&file, text)?;
        let notify = notify::routes(&file, text, &tiers, &groups)?;
        let rollback_owners = rollback_owners(&file, text)?;
        let retention = retention(&file, text)?;
        Ok(Rules {
            retention,
            rollback_owners,
            notify,
            automation,
            stale_after,
            tiers,
            groups,
            entitlements,
            rules,
            exception,
            breakglass,
            birthright,
            ticket_approvals,
            findings,
            secrets,
        })
    }

    /// How a finding of `kind` is weighed: its `[[finding]]` rule, or its kind's default
    /// severity and no controls.
    pub fn finding_rule(&self, kind: &str) -> FindingRule {
        self.findings.iter().find(|r| r.kind == kind).cloned().unwrap_or_else(|| FindingRule {
            kind: kind.to_owned(),
            severity: writ_core::finding::Severity::of_kind(kind),
            controls: Vec::new(),
        })
    }

    /// The `[[notify]]` routes that tell of `kind` at `tier`, in file order.
    pub fn notify_routes(&self, kind: &str, tier: Option<&str>) -> impl Iterator<Item = &Route> {
        self.notify.iter().filter(move |r| r.applies(kind, tier))
    }

    /// How long a credential of `class` may live, if the policy says.
    pub fn secret_limit(&self, class: &str) -> Option<SecretLimit> {
        self.secrets.get(class).copied()
    }

    /// The rule under which an approval given in `source`'s tickets counts for a change at
    /// `tier`, if any.
    pub fn ticket_approval(&self, source: &str, tier: &str) -> Option<&TicketApproval> {
        self.ticket_approvals.iter().find(|t| t.source == source && t.tiers.iter().any(|x| x == tier))
    }

    /// The birthright rules, in file order.
    pub fn birthright(&self) -> &[Birthright] {
        &self.birthright
    }

    /// What `person` is entitled to by birthright, each with the ids of the rules that give it.
    pub fn birthright_of(&self, person: &Record) -> BTreeMap<writ_core::name::EntitlementRef, Vec<String>> {
        let mut out: BTreeMap<writ_core::name::EntitlementRef, Vec<String>> = BTreeMap::new();
        for rule in self.birthright.iter().filter(|r| r.when.matches(person)) {
            for entitlement in &rule.grant {
                out.entry(entitlement.clone()).or_default().push(rule.id.clone());
            }
        }
        out
    }

    /// What an exception needs under these rules.
    pub fn exception_policy(&self) -> ExceptionPolicy {
        let spec = &self.exception;
        let tier = self.tiers.get(spec.tier).or(self.tiers.last());
        let mut slots: Vec<Slot> = Vec::new();
        for slot in spec.approvers.iter().filter_map(|a| self.named_slot(a)) {
            if !slots.iter().any(|s| s.label == slot.label) {
                slots.push(slot);
            }
        }
        let approvals = tier.map_or(1, |t| usize::from(t.approvals)).max(slots.len());
        while slots.len() < approvals {
            slots.push(Slot { label: "any".to_owned(), eligible: Eligible::Anyone });
        }
        ExceptionPolicy {
            rule: spec.id.clone(),
            tier: tier.map(|t| t.name.clone()).unwrap_or_default(),
            approvals: u8::try_from(approvals).unwrap_or(u8::MAX),
            slots,
            max_duration: spec.max_duration,
        }
    }

    /// The tier of that name.
    pub fn tier(&self, name: &str) -> Option<&Tier> {
        self.tiers.iter().find(|t| t.name == name)
    }

    /// The groups `name` is listed in.
    pub fn groups_of(&self, name: &str) -> Vec<&str> {
        self.groups.iter().filter(|(_, m)| m.contains(name)).map(|(g, _)| g.as_str()).collect()
    }

    pub fn members(&self, group: &str) -> Option<&BTreeSet<String>> {
        self.groups.get(group)
    }

    /// Whether a `target:entitlement` is privileged, and its owner, from `[[entitlement]]`.
    pub fn classify(&self, entitlement: &str) -> (bool, Option<&str>) {
        let mut privileged = false;
        let mut owner = None;
        for class in &self.entitlements {
            if class.patterns.iter().any(|p| glob(p, entitlement)) {
                privileged |= class.privileged;
                owner = owner.or(class.owner.as_deref());
            }
        }
        (privileged, owner)
    }

    /// Every rule id with its description and controls, for `writ policy show`.
    pub fn listing(&self) -> Vec<(String, Option<String>, Vec<String>)> {
        let e = &self.exception;
        self.rules
            .iter()
            .map(|r| (r.id.clone(), r.description.clone(), r.controls.clone()))
            .chain(std::iter::once((e.id.clone(), e.description.clone(), e.controls.clone())))
            .collect()
    }

    pub fn controls(&self, id: &str) -> Option<&[String]> {
        if id == self.exception.id {
            return Some(self.exception.controls.as_slice());
        }
        self.rules.iter().find(|r| r.id == id).map(|r| r.controls.as_slice())
    }

    /// Decides the tier and requirements of a change, or refuses it.
    pub fn evaluate(&self, facts: &ChangeFacts) -> Result<Validation, Denial> {
        let mut tier = 0usize;
        let mut named: Vec<Slot> = Vec::new();
        let mut max: Vec<(Option<Duration>, Option<String>)> = vec![(None, None); facts.ops.len()];
        let mut require_ticket = None::<String>;
        let mut review = false;
        let mut fired = Vec::new();
        let mut window_rules = Vec::new();
        for rule in &self.rules {
            let ops: Vec<usize> = self.matching_ops(rule, facts);
            if ops.is_empty() || !change_matches(&rule.when, facts) {
                continue;
            }
            fired.push(rule.id.clone());
            if let Some(reason) = &rule.deny {
                return Err(Denial::rule("policy.denied", &rule.id, reason.clone()));
            }
            if let Some(t) = rule.tier {
                tier = tier.max(t);
            }
            for spec in &rule.approvers {
                for slot in self.slots(spec, facts, &ops) {
                    if !named.iter().any(|s| s.label == slot.label) {
                        named.push(slot);
                    }
                }
            }
            if let Some(limit) = rule.max_duration {
                for &i in &ops {
                    if let Some(entry) = max.get_mut(i)
                        && entry.0.is_none_or(|m| limit < m)
                    {
                        *entry = (Some(limit), Some(rule.id.clone()));
                    }
                }
            }
            if rule.require_ticket == Some(true) {
                require_ticket.get_or_insert_with(|| rule.id.clone());
            }
            review |= rule.review == Some(true);
            if rule.require_window == Some(true) || !rule.allowed_windows.is_empty() {
                window_rules.push((rule.id.clone(), rule.allowed_windows.clone()));
            }
        }
        let tier = self.tiers.get(tier).or(self.tiers.first()).ok_or_else(|| Denial {
            code: "policy.invalid",
            rule: None,
            reason: "the policy defines no tier".into(),
        })?;
        let mut max_durations = Vec::with_capacity(facts.ops.len());
        for (op, (limit, rule)) in facts.ops.iter().zip(&max) {
            let (limit, rule) = match (limit, tier.max_duration) {
                (Some(l), Some(t)) if t < *l => (Some(t), format!("tier.{}", tier.name)),
                (Some(l), _) => (Some(*l), rule.clone().unwrap_or_default()),
                (None, t) => (t, format!("tier.{}", tier.name)),
            };
            max_durations.push((limit, rule.clone()));
            if let (Some(limit), Some(duration)) = (limit, op.duration)
                && duration > limit
            {
                return Err(Denial::rule(
                    "policy.duration_exceeded",
                    &rule,
                    format!(
                        "{} on {} for {duration} is longer than the {limit} this policy allows",
                        op.entitlement, op.identity.name
                    ),
                ));
            }
        }
        if tier.require_ticket && require_ticket.is_none() {
            require_ticket = Some(format!("tier.{}", tier.name));
        }
        if let Some(rule) = require_ticket
            && !facts.has_ticket
        {
            return Err(Denial::rule(
                "policy.ticket_required",
                &rule,
                "this change needs a ticket reference (--ticket)".to_owned(),
            ));
        }
        if tier.require_window || !tier.allowed_windows.is_empty() {
            window_rules.insert(0, (format!("tier.{}", tier.name), tier.allowed_windows.clone()));
        }
        if !facts.emergency {
            check_window(facts, &window_rules)?;
        }
        let approvals = usize::from(tier.approvals).max(named.len());
        let mut slots = named;
        while slots.len() < approvals {
            slots.push(Slot { label: "any".to_owned(), eligible: Eligible::Anyone });
        }
        Ok(Validation {
            tier: tier.name.clone(),
            approvals: u8::try_from(approvals).unwrap_or(u8::MAX),
            validity: tier.validity,
            slots,
            escalate_after: tier.escalate_after,
            escalate_to: tier.escalate_to.clone(),
            review: review || tier.review,
            rules: fired,
            max_durations,
            window_rules,
        })
    }

    fn matching_ops(&self, rule: &Rule, facts: &ChangeFacts) -> Vec<usize> {
        let w = &rule.when;
        let has = |list: &Option<Vec<String>>, value: &str| {
            list.as_ref().is_none_or(|l| l.iter().any(|v| v == value))
        };
        let is = |cond: Option<bool>, value: bool| cond.is_none_or(|c| c == value);
        facts
            .ops
            .iter()
            .enumerate()
            .filter(|(_, op)| {
                let (privileged, owner) = self.classify(&op.entitlement);
                let nhi = op.identity.kind != "human";
                has(&w.action, &op.action)
                    && w.entitlement.as_ref().is_none_or(|l| l.iter().any(|p| glob(p, &op.entitlement)))
                    && has(&w.subject_kind, &op.identity.kind)
                    && is(w.subject_nhi, nhi)
                    && (w.subject_owned.is_none() || (nhi && is(w.subject_owned, op.owner.is_some())))
                    && is(w.privileged, privileged)
                    && is(w.entitlement_owned, owner.is_some())
                    && is(w.has_duration, op.duration.is_some())
            })
            .map(|(i, _)| i)
            .collect()
    }

    /// The slot a spec names on its own (every spec but the owners of what a change touches).
    fn named_slot(&self, spec: &SlotSpec) -> Option<Slot> {
        match spec {
            SlotSpec::Any => Some(Slot { label: "any".into(), eligible: Eligible::Anyone }),
            SlotSpec::Internal => Some(Slot { label: "internal".into(), eligible: Eligible::Internal }),
            SlotSpec::Group(g) => Some(Slot {
                label: format!("group:{g}"),
                eligible: Eligible::Group {
                    name: g.clone(),
                    members: self.groups.get(g).cloned().unwrap_or_default(),
                },
            }),
            SlotSpec::Person(p) => Some(person(format!("person:{p}"), p)),
            SlotSpec::SubjectOwner | SlotSpec::EntitlementOwner | SlotSpec::RollbackOwner => None,
        }
    }

    fn slots(&self, spec: &SlotSpec, facts: &ChangeFacts, ops: &[usize]) -> Vec<Slot> {
        match spec {
            SlotSpec::Any | SlotSpec::Internal | SlotSpec::Group(_) | SlotSpec::Person(_) => {
                self.named_slot(spec).into_iter().collect()
            }
            SlotSpec::SubjectOwner => ops
                .iter()
                .filter_map(|&i| facts.ops.get(i))
                .filter_map(|op| op.owner.as_deref().map(|o| person(format!("owner:{o}"), o)))
                .collect(),
            SlotSpec::EntitlementOwner => ops
                .iter()
                .filter_map(|&i| facts.ops.get(i))
                .filter_map(|op| self.classify(&op.entitlement).1.map(|o| person(format!("owner:{o}"), o)))
                .collect(),
            SlotSpec::RollbackOwner => facts
                .rollback_owner
                .as_deref()
                .map(|o| person(format!("rollback-owner:{o}"), o))
                .into_iter()
                .collect(),
        }
    }
}

fn person(label: String, name: &str) -> Slot {
    Slot { label, eligible: Eligible::People(std::iter::once(name.to_owned()).collect()) }
}

fn change_matches(w: &When, facts: &ChangeFacts) -> bool {
    let has =
        |list: &Option<Vec<String>>, value: &str| list.as_ref().is_none_or(|l| l.iter().any(|v| v == value));
    let is = |cond: Option<bool>, value: bool| cond.is_none_or(|c| c == value);
    has(&w.kind, &facts.kind)
        && has(&w.event, &facts.event)
        && is(w.vendor, facts.vendor.is_some())
        && is(w.has_ticket, facts.has_ticket)
        && is(w.emergency, facts.emergency)
}

/// Refuses a change that a rule (or its tier) wants in a maintenance window when it carries
/// none, or carries one outside every window the rule allows.
fn check_window(facts: &ChangeFacts, window_rules: &[(String, Vec<Recurring>)]) -> Result<(), Denial> {
    let next = |allowed: &[Recurring]| {
        let next = facts.now.and_then(|now| {
            allowed.iter().filter_map(|w| w.next(now).map(|o| (o, w))).min_by_key(|((open, _), _)| *open)
        });
        next.map(|(o, w)| format!("; the next allowed window is {}", w.local(o))).unwrap_or_default()
    };
    let listed =
        |allowed: &[Recurring]| allowed.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
    let Some(window) = &facts.window else {
        // Name the demand that says most: one that lists the windows it allows.
        let Some((rule, allowed)) =
            window_rules.iter().find(|(_, allowed)| !allowed.is_empty()).or(window_rules.first())
        else {
            return Ok(());
        };
        let within = if allowed.is_empty() {
            String::new()
        } else {
            format!(" within {}{}", listed(allowed), next(allowed))
        };
        return Err(Denial::rule(
            "policy.window_required",
            rule,
            format!(
                "this change must be carried out in a maintenance window{within}: give one (--window-start, --window-end, --window-zone)"
            ),
        ));
    };
    for (rule, allowed) in window_rules {
        if !allowed.is_empty() && !allowed.iter().any(|w| w.holds(window)) {
            return Err(Denial::rule(
                "policy.window_not_allowed",
                rule,
                format!(
                    "the maintenance window {} is not within an allowed window ({}){}",
                    crate::window::describe(window),
                    listed(allowed),
                    next(allowed)
                ),
            ));
        }
    }
    Ok(())
}

fn check_when(w: &When) -> Result<(), String> {
    let check = |field: &str, list: &Option<Vec<String>>, allowed: &[&str]| {
        for value in list.iter().flatten() {
            if !allowed.contains(&value.as_str()) {
                return Err(format!("when.{field}: {value:?} is not one of {}", allowed.join(", ")));
            }
        }
        Ok(())
    };
    check("kind", &w.kind, CHANGE_KINDS)?;
    check("event", &w.event, EVENTS)?;
    check("action", &w.action, ACTIONS)?;
    check("subject_kind", &w.subject_kind, KINDS)?;
    if w.entitlement.iter().flatten().any(|p| !p.contains(':')) {
        return Err("when.entitlement: patterns are TARGET:ENTITLEMENT (* matches any text)".into());
    }
    Ok(())
}

fn slot_spec(text: &str, groups: &BTreeMap<String, BTreeSet<String>>) -> Result<SlotSpec, String> {
    Ok(match text.split_once(':') {
        None if text == "any" => SlotSpec::Any,
        None if text == "internal" => SlotSpec::Internal,
        Some(("group", g)) if groups.contains_key(g) => SlotSpec::Group(g.to_owned()),
        Some(("group", g)) => return Err(format!("approvers: group {g:?} is not defined in [groups]")),
        Some(("person", p)) if is_name(p) => SlotSpec::Person(p.to_owned()),
        Some(("owner", "subject")) => SlotSpec::SubjectOwner,
        Some(("owner", "entitlement")) => SlotSpec::EntitlementOwner,
        Some(("owner", "rollback")) => SlotSpec::RollbackOwner,
        _ => {
            return Err(format!(
                "approvers: {text:?} is not one of any, internal, group:NAME, person:NAME, owner:subject, owner:entitlement, owner:rollback"
            ));
        }
    })
}

fn check_escalation_target(target: &str, groups: &BTreeMap<String, BTreeSet<String>>) -> Result<(), String> {
    match target.split_once(':') {
        Some(("group", g)) if groups.contains_key(g) => Ok(()),
        Some(("group", g)) => Err(format!("escalate_to: group {g:?} is not defined in [groups]")),
        Some(("person", p)) if is_name(p) => Ok(()),
        _ => Err(format!("escalate_to: {target:?} is not group:NAME or person:NAME")),
    }
}

/// `[retention.clear_text]` and `[retention.evidence]`, each with `keep`: a duration (`90d`,
/// `12h`, `30s`) or whole years (`7y`, 365 days each, at most 100).
fn retention(file: &RulesFile, text: &str) -> Result<Vec<RetentionRule>, PolicyError> {
    let Some(spec) = &file.retention else { return Ok(Vec::new()) };
    let line = line_of(text, spec.span().start);
    let mut rules = Vec::new();
    for (class, rule) in spec.get_ref() {
        let err =
            |reason: String| PolicyError::invalid(FILE, line, &format!("[retention.{class}]: {reason}"));
        let class = writ_core::change::RetentionClass::parse(class).map_err(|e| err(e.to_string()))?;
        let keep_ms = match rule.keep.strip_suffix('y') {
            Some(years) => match years.parse::<i64>() {
                Ok(n) if (1..=100).contains(&n) => n * 365 * 86_400_000,
                _ => return Err(err(format!("keep {:?}: years must be 1 to 100", rule.keep))),
            },
            None => duration(&rule.keep).map_err(&err)?.as_millis(),
        };
        rules.push(RetentionRule { id: format!("retention.{}", class.as_str()), class, keep_ms });
    }
    Ok(rules)
}

/// `[rollback] owners`: each of `subject_owner`, `entitlement_owner`, `requester`, `person:NAME`.
fn rollback_owners(file: &RulesFile, text: &str) -> Result<Vec<RollbackOwner>, PolicyError> {
    let Some(spec) = &file.rollback else { return Ok(RollbackOwner::DEFAULT.to_vec()) };
    let line = line_of(text, spec.span().start);
    let mut owners = Vec::new();
    for owner in &spec.get_ref().owners {
        owners.push(match (owner.as_str(), owner.split_once(':')) {
            ("subject_owner", _) => RollbackOwner::SubjectOwner,
            ("entitlement_owner", _) => RollbackOwner::EntitlementOwner,
            ("requester", _) => RollbackOwner::Requester,
            (_, Some(("person", p))) if is_name(p) => RollbackOwner::Person(p.to_owned()),
            _ => {
                return Err(PolicyError::invalid(
                    FILE,
                    line,
                    &format!("[rollback] owners: {owner:?} is not one of subject_owner, entitlement_owner, requester, person:NAME"),
                ));
            }
        });
    }
    if owners.is_empty() {
        return Err(PolicyError::invalid(FILE, line, "[rollback] owners: name at least one source"));
    }
    Ok(owners)
}

/// The recurring windows of an `allowed_windows` list.
fn windows(texts: &[String]) -> Result<Vec<Recurring>, String> {
    texts.iter().map(|t| Recurring::parse(t)).collect()
}

fn duration(text: &str) -> Result<Duration, String> {
    Duration::parse(text).map_err(|e| e.to_string())
}

fn is_name(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 64
        && text.chars().all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c))
}

fn is_rule_id(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 100
        && text.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

/// The 1-based line of a byte offset.
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes().iter().take(offset).filter(|b| **b == b'\n').count() + 1
}

fn find_line(text: &str, needle: &str) -> usize {
    text.find(needle).map_or(0, |at| line_of(text, at))
}

/// `*` matches any run of characters; everything else matches itself.
pub fn glob(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = text.strip_prefix(first) else { return false };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else { return rest.is_empty() };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = rest.get(at + part.len()..).unwrap_or_default(),
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}
