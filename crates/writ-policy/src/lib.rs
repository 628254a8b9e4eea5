//! Policy as code. A policy is a directory of files the operator keeps in git:
//!
//! - `*.cedar`: Cedar policies deciding who may request, approve, reject, execute, review and
//!   open a break-glass change (each policy carries an `@id`, recorded with every decision it
//!   makes, and may carry `@controls`);
//! - `rules.toml`: declarative workflow rules deciding a change's risk tier and what it needs
//!   (approvals, approver slots, maximum grant duration, approval validity, escalation, ticket,
//!   review), or refusing it.
//!
//! [`Policy::compile`] checks everything (Cedar in strict mode against Writ's schema) and
//! reports the file, line and reason of the first problem; a policy that does not compile is
//! never used. Every decision returns the ids of the rules that made it, and the policy's
//! [`Policy::hash`] identifies the exact files.

mod bundle;
mod cedar;
mod rules;
pub mod testing;
pub mod window;

use std::collections::BTreeSet;

use writ_core::time::Duration;

pub use bundle::{DEFAULT_TESTS, MAX_FILE_BYTES, MAX_FILES, PolicyBundle};
pub use rules::{
    Audience, AutomationLimits, Birthright, BirthrightWhen, Breakglass, Eligible, ExceptionPolicy,
    FINDING_KINDS, FindingRule, Record, RetentionRule, RollbackOwner, Route, Rules, SECRET_CLASSES,
    SecretLimit, Slot, TicketApproval, Tier, Validation, glob,
};

/// A policy that cannot be used: where and why.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PolicyError {
    #[error("{file}:{line}: {reason}")]
    Invalid { file: String, line: usize, reason: String },
    #[error("cannot read policy directory {path}: {detail}")]
    Io { path: String, detail: String },
}

impl PolicyError {
    pub(crate) fn invalid(file: &str, line: usize, reason: &str) -> PolicyError {
        PolicyError::Invalid { file: file.to_owned(), line, reason: reason.to_owned() }
    }
}

/// Why policy refused: a stable code, the rule that decided (if one did), and a reason a person
/// can act on.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{reason}{}", rule.as_ref().map(|r| format!(" (policy rule {r})")).unwrap_or_default())]
pub struct Denial {
    pub code: &'static str,
    pub rule: Option<String>,
    pub reason: String,
}

impl Denial {
    pub(crate) fn rule(code: &'static str, rule: &str, reason: String) -> Denial {
        Denial { code, rule: (!rule.is_empty()).then(|| rule.to_owned()), reason }
    }
}

/// An identity as policy sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Person {
    pub name: String,
    /// `human`, `service_account`, …, or `system` for Writ's own actors.
    pub kind: String,
    pub vendor: Option<String>,
    pub owner: Option<String>,
    /// Groups beyond those the policy's `[groups]` list (test fixtures name them).
    pub groups: Vec<String>,
}

impl Person {
    pub fn human(name: &str) -> Person {
        Person {
            name: name.to_owned(),
            kind: "human".to_owned(),
            vendor: None,
            owner: None,
            groups: Vec::new(),
        }
    }
}

/// One planned operation as policy sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpFacts {
    /// `grant`, `revoke` or `rotate`.
    pub action: String,
    pub identity: Person,
    /// The NHI's owner (None for humans and for orphans).
    pub owner: Option<String>,
    /// `target:entitlement`.
    pub entitlement: String,
    pub duration: Option<Duration>,
}

/// A change as policy sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangeFacts {
    pub kind: String,
    pub event: String,
    pub requester: Person,
    pub on_behalf_of: Option<Person>,
    pub vendor: Option<String>,
    pub has_ticket: bool,
    pub emergency: bool,
    pub ops: Vec<OpFacts>,
    /// The tier validation gave it (empty before validation).
    pub tier: String,
    pub approvers: Vec<String>,
    pub executors: Vec<String>,
    /// The maintenance window the change carries, if any.
    pub window: Option<writ_core::change::Window>,
    /// When the facts are judged (for the next allowed window a refusal names).
    pub now: Option<writ_core::time::Timestamp>,
    /// For a rollback: the rollback owner of the change it undoes (`owner:rollback` slots).
    pub rollback_owner: Option<String>,
}

/// The kind of the facts of an exception, as Cedar policies see it (`resource.kind`).
pub const EXCEPTION: &str = "exception";

impl ChangeFacts {
    /// An exception as policy sees it: asked for by `requester`, on behalf of its `owner` (so
    /// the owner is an interested party too), with the approvals of its current round.
    pub fn exception(requester: Person, owner: Person, approvers: Vec<String>) -> ChangeFacts {
        ChangeFacts {
            kind: EXCEPTION.to_owned(),
            event: EXCEPTION.to_owned(),
            vendor: requester.vendor.clone().or_else(|| owner.vendor.clone()),
            on_behalf_of: (owner.name != requester.name).then_some(owner),
            requester,
            has_ticket: false,
            emergency: false,
            window: None,
            now: None,
            rollback_owner: None,
            ops: Vec::new(),
            tier: String::new(),
            approvers,
            executors: Vec::new(),
        }
    }
}

/// An action Cedar decides on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Act {
    Request,
    Approve,
    Reject,
    Execute,
    Review,
    Breakglass,
}

impl Act {
    pub const ALL: [Act; 6] =
        [Act::Request, Act::Approve, Act::Reject, Act::Execute, Act::Review, Act::Breakglass];

    pub fn as_str(self) -> &'static str {
        match self {
            Act::Request => "request",
            Act::Approve => "approve",
            Act::Reject => "reject",
            Act::Execute => "execute",
            Act::Review => "review",
            Act::Breakglass => "breakglass",
        }
    }

    pub fn parse(text: &str) -> Option<Act> {
        Act::ALL.into_iter().find(|a| a.as_str() == text)
    }
}

/// A compiled policy.
pub struct Policy {
    hash: String,
    bundle: PolicyBundle,
    rules: Rules,
    cedar: cedar::Compiled,
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy").field("hash", &self.hash).finish_non_exhaustive()
    }
}

impl Policy {
    /// Checks and compiles a bundle; the first problem is reported with its file and line.
    pub fn compile(bundle: PolicyBundle) -> Result<Policy, PolicyError> {
        let rules = Rules::parse(bundle.files().get("rules.toml").map_or("", String::as_str))?;
        let cedar = cedar::Compiled::new(bundle.files())?;
        Ok(Policy { hash: bundle.hash(), bundle, rules, cedar })
    }

    /// Writ's default pack.
    pub fn default_pack() -> Result<Policy, PolicyError> {
        Policy::compile(PolicyBundle::default_pack())
    }

    /// The Cedar entity builder (for the schema check in tests).
    #[cfg(test)]
    pub(crate) fn cedar_types(&self) -> &cedar::Types {
        self.cedar.types()
    }

    pub fn hash(&self) -> &str {
        &self.hash
    }

    pub fn bundle(&self) -> &PolicyBundle {
        &self.bundle
    }

    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// The Cedar policy ids with their controls, in id order.
    pub fn cedar_listing(&self) -> Vec<(String, Vec<String>)> {
        self.cedar.listing()
    }

    /// The controls a rule or Cedar policy names (`NIST-CSF:…`, `OWASP-NHI:…`).
    pub fn controls(&self, id: &str) -> Vec<String> {
        self.rules.controls(id).map(<[String]>::to_vec).unwrap_or_else(|| self.cedar.controls(id))
    }

    /// Validation: may `facts.requester` ask for this change, and what does it need? An
    /// exception (kind [`EXCEPTION`]) needs what the `[exception]` rules say.
    pub fn validate(&self, facts: &ChangeFacts) -> Result<Validation, Denial> {
        let permit = self.cedar.authorize(Act::Request, &facts.requester, facts, None, &self.rules)?;
        let mut validation = if facts.kind == EXCEPTION {
            let policy = self.rules.exception_policy();
            let validity = self.rules.tier(&policy.tier).map_or(Duration::hours(24), |t| t.validity);
            Validation {
                tier: policy.tier,
                approvals: policy.approvals,
                validity,
                slots: policy.slots,
                escalate_after: None,
                escalate_to: None,
                review: false,
                rules: vec![policy.rule],
                max_durations: Vec::new(),
                window_rules: Vec::new(),
            }
        } else {
            self.rules.evaluate(facts)?
        };
        let mut rules = permit;
        rules.append(&mut validation.rules);
        validation.rules = rules;
        Ok(validation)
    }

    /// May `principal` take `act` on this change? Returns the permits that allowed it.
    pub fn authorize(
        &self,
        act: Act,
        principal: &Person,
        facts: &ChangeFacts,
        on_behalf_of: Option<&Person>,
    ) -> Result<Vec<String>, Denial> {
        self.cedar.authorize(act, principal, facts, on_behalf_of, &self.rules)
    }

    /// Whether `person` may fill `slot`.
    pub fn eligible(&self, slot: &Slot, person: &Person) -> bool {
        match &slot.eligible {
            Eligible::Anyone => true,
            Eligible::Internal => person.vendor.is_none(),
            Eligible::Group { name, members } => {
                members.contains(&person.name) || person.groups.contains(name)
            }
            Eligible::People(names) => names.contains(&person.name),
        }
    }

    /// Assigns approvers to slots, each person to a different slot they are eligible for.
    /// Returns the slot index of each approver, or `None` if no assignment covers all of them.
    pub fn assign(&self, slots: &[Slot], approvers: &[Person]) -> Option<Vec<usize>> {
        let mut names: Vec<&str> = approvers.iter().map(|p| p.name.as_str()).collect();
        names.sort_unstable();
        if names.windows(2).any(|w| w.first() == w.last()) {
            return None; // one person counts once
        }
        let mut owner: Vec<Option<usize>> = vec![None; slots.len()];
        for person in 0..approvers.len() {
            let mut seen = vec![false; slots.len()];
            if !self.augment(person, slots, approvers, &mut owner, &mut seen) {
                return None;
            }
        }
        let mut assignment = vec![0; approvers.len()];
        for (slot, person) in owner.iter().enumerate() {
            if let Some(p) = person
                && let Some(entry) = assignment.get_mut(*p)
            {
                *entry = slot;
            }
        }
        Some(assignment)
    }

    /// One augmenting-path step of a bipartite matching (Kuhn's algorithm).
    fn augment(
        &self,
        person: usize,
        slots: &[Slot],
        approvers: &[Person],
        owner: &mut [Option<usize>],
        seen: &mut [bool],
    ) -> bool {
        let Some(who) = approvers.get(person) else { return false };
        for (i, slot) in slots.iter().enumerate() {
            if !self.eligible(slot, who) || seen.get(i).copied().unwrap_or(true) {
                continue;
            }
            if let Some(s) = seen.get_mut(i) {
                *s = true;
            }
            let current = owner.get(i).copied().flatten();
            let free = match current {
                None => true,
                Some(other) => self.augment(other, slots, approvers, owner, seen),
            };
            if free {
                if let Some(o) = owner.get_mut(i) {
                    *o = Some(person);
                }
                return true;
            }
        }
        false
    }

    /// The people an escalation target names: a group's members or one person.
    pub fn escalation_people(&self, target: &str) -> BTreeSet<String> {
        match target.split_once(':') {
            Some(("group", g)) => self.rules.members(g).cloned().unwrap_or_default(),
            Some(("person", p)) => std::iter::once(p.to_owned()).collect(),
            _ => BTreeSet::new(),
        }
    }
}

#[cfg(test)]
mod tests;
