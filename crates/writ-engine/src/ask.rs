//! Questions a surface asks before it offers an action: may this person take this step on this
//! change now, and what would the policy in force say of this request. Each answer runs the very
//! checks the step runs (the core's separation of duties, the relationship rules, Cedar and the
//! open approval slots), stops before anything is committed, and records nothing. A "yes" is not
//! a promise: the step decides again when it is taken.

use writ_core::identity::Actor;
use writ_core::machine::{Command, decide};
use writ_core::name::IdentityName;
use writ_core::time::Duration;

use crate::{ChangeRecord, Engine, RequestInput, Result};

/// A step a person may be offered on a change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Approve,
    Reject,
    Cancel,
    Review,
    Comment,
}

impl Step {
    pub const ALL: [Step; 5] = [Step::Approve, Step::Reject, Step::Cancel, Step::Review, Step::Comment];

    pub fn as_str(self) -> &'static str {
        match self {
            Step::Approve => "approve",
            Step::Reject => "reject",
            Step::Cancel => "cancel",
            Step::Review => "review",
            Step::Comment => "comment",
        }
    }
}

/// What the policy in force would require of a request, had it been made now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Preview {
    pub tier: String,
    pub approvals: u8,
    /// One label per approval needed (`any`, `group:…`, `owner:subject`, …).
    pub slots: Vec<String>,
    /// How long an approval stays valid.
    pub validity: Duration,
    pub review_required: bool,
    pub escalate_after: Option<Duration>,
    pub escalate_to: Option<String>,
    /// The rules and Cedar policies that matched.
    pub rules: Vec<String>,
    /// Per operation, in the request's order: the longest duration allowed and what sets it.
    pub max_durations: Vec<(Option<Duration>, String)>,
    /// The rules (or `tier.NAME`) that demand a maintenance window, each with the recurring
    /// windows it allows (empty: any window).
    pub windows: Vec<(String, Vec<String>)>,
}

/// The placeholder text a dry run gives the steps that take one; never recorded.
const DRY_RUN_TEXT: &str = "(asked before acting)";

impl Engine {
    /// Whether `actor` may take `step` on `record` now: `Ok` if the step would be decided in
    /// their favour, else the refusal it would meet (the same code and text).
    pub fn may(&self, record: &ChangeRecord, actor: &IdentityName, step: Step) -> Result<()> {
        let identity = self.actor(actor)?;
        let now = self.clock.now();
        let change = &record.change;
        match step {
            Step::Approve => {
                self.receivers_active(change)?;
                let command =
                    Command::Approve { approver: identity.clone(), on_behalf_of: None, validity: None };
                self.approval_events(record, command, &identity, None)?;
            }
            Step::Reject => {
                decide(Some(change), Command::Reject { actor: identity, reason: DRY_RUN_TEXT.into() }, now)?;
            }
            Step::Cancel => {
                let command =
                    Command::Cancel { actor: Actor::Identity(actor.clone()), reason: DRY_RUN_TEXT.into() };
                decide(Some(change), command, now)?;
                writ_core::authority::may_cancel(change, actor, &self.store.roles_of(actor)?)?;
            }
            Step::Review => {
                let command = Command::Review { reviewer: identity.clone(), notes: DRY_RUN_TEXT.into() };
                decide(Some(change), command, now)?;
                self.check_review(change, &identity)?;
            }
            Step::Comment => {
                let author = Actor::Identity(actor.clone());
                decide(
                    Some(change),
                    Command::Comment { author, text: DRY_RUN_TEXT.into(), source: None },
                    now,
                )?;
                writ_core::authority::may_comment(change, actor, &self.store.roles_of(actor)?)?;
            }
        }
        Ok(())
    }

    /// What the policy in force would say of `input`: the same resolution and checks as
    /// [`Engine::request`] (names, entitlements on their targets, delegation, the core's rules,
    /// Cedar and the rules), with nothing recorded. A refusal is the one the request would get.
    pub fn preview_request(&self, input: RequestInput) -> Result<Preview> {
        if let Some(principal) = input.on_behalf_of.as_ref().filter(|p| **p != input.requester) {
            self.actor(&input.requester)?;
            self.check_delegation(&input.requester, principal)?;
        }
        // Any ID will do: nothing is recorded under it.
        let id = writ_core::change::ChangeId::generate(self.clock.now(), 0);
        let (_, facts, _) = self.requested(id, input, None)?;
        let policy = self.policy()?;
        let validation = policy.validate(&facts)?;
        Ok(Preview {
            tier: validation.tier,
            approvals: validation.approvals,
            slots: validation.slots.into_iter().map(|s| s.label).collect(),
            validity: validation.validity,
            review_required: validation.review,
            escalate_after: validation.escalate_after,
            escalate_to: validation.escalate_to,
            rules: validation.rules,
            max_durations: validation.max_durations,
            windows: validation
                .window_rules
                .into_iter()
                .map(|(rule, allowed)| (rule, allowed.iter().map(ToString::to_string).collect()))
                .collect(),
        })
    }
}
