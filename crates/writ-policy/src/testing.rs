//! Policy test cases: the operator's fixtures, so policies are tested like code.
//!
//! A test file (`tests/*.toml` beside the policy) names identities and cases:
//!
//! ```toml
//! [identities]
//! alice = { kind = "human" }
//! vera = { kind = "human", vendor = "acme" }
//! svc-etl = { kind = "service_account", owner = "dana" }
//!
//! [[case]]
//! name = "the requester cannot approve"
//! action = "approve"            # request, approve, reject, execute, review, breakglass, validate or quorum
//! principal = "alice"
//! expect = "deny"               # allow or deny
//! rule = "sod.no-self-approval" # optional: the rule that must decide
//! change = { requester = "alice", ops = [{ action = "grant", identity = "bob", entitlement = "db:read" }] }
//! ```
//!
//! `validate` runs the workflow rules (and the `request` permission) and can check `tier`,
//! `approvals`, `slots` and `code`; `quorum` checks whether `approved_by` fill every slot.

use std::collections::BTreeMap;

use serde::Deserialize;
use writ_core::time::Duration;

use crate::{Act, ChangeFacts, OpFacts, Person, Policy, PolicyError};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TestFile {
    #[serde(default)]
    identities: BTreeMap<String, IdentitySpec>,
    #[serde(default)]
    case: Vec<toml::Spanned<CaseSpec>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IdentitySpec {
    kind: String,
    vendor: Option<String>,
    owner: Option<String>,
    #[serde(default)]
    groups: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseSpec {
    name: String,
    action: String,
    principal: Option<String>,
    on_behalf_of: Option<String>,
    expect: String,
    rule: Option<String>,
    code: Option<String>,
    tier: Option<String>,
    approvals: Option<u8>,
    slots: Option<Vec<String>>,
    #[serde(default)]
    approved_by: Vec<String>,
    change: ChangeSpec,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangeSpec {
    requester: String,
    on_behalf_of: Option<String>,
    kind: Option<String>,
    #[serde(default = "adhoc")]
    event: String,
    #[serde(default)]
    ticket: bool,
    #[serde(default)]
    emergency: bool,
    #[serde(default)]
    tier: String,
    #[serde(default)]
    approvers: Vec<String>,
    #[serde(default)]
    executors: Vec<String>,
    ops: Vec<OpSpec>,
}

fn adhoc() -> String {
    "adhoc".to_owned()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OpSpec {
    action: String,
    identity: String,
    entitlement: String,
    duration: Option<String>,
}

/// The outcome of one case.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaseResult {
    pub file: String,
    pub line: usize,
    pub name: String,
    pub passed: bool,
    /// What the policy decided (and, on failure, what was expected).
    pub detail: String,
}

/// Runs every case of one test file against `policy`.
pub fn run(policy: &Policy, file: &str, text: &str) -> Result<Vec<CaseResult>, PolicyError> {
    let parsed: TestFile = toml::from_str(text).map_err(|e| {
        let line = e.span().map_or(0, |s| crate::rules::line_of(text, s.start));
        PolicyError::invalid(file, line, e.message())
    })?;
    let mut results = Vec::new();
    for case in &parsed.case {
        let line = crate::rules::line_of(text, case.span().start);
        let spec = case.get_ref();
        let (passed, detail) = match run_case(policy, &parsed.identities, spec) {
            Ok(outcome) => outcome,
            Err(reason) => {
                return Err(PolicyError::invalid(file, line, &format!("case {:?}: {reason}", spec.name)));
            }
        };
        results.push(CaseResult { file: file.to_owned(), line, name: spec.name.clone(), passed, detail });
    }
    Ok(results)
}

fn run_case(
    policy: &Policy,
    identities: &BTreeMap<String, IdentitySpec>,
    spec: &CaseSpec,
) -> Result<(bool, String), String> {
    let person = |name: &str| -> Person {
        match identities.get(name) {
            Some(i) => Person {
                name: name.to_owned(),
                kind: i.kind.clone(),
                vendor: i.vendor.clone(),
                owner: i.owner.clone(),
                groups: i.groups.clone(),
            },
            None => Person::human(name),
        }
    };
    let allow = match spec.expect.as_str() {
        "allow" => true,
        "deny" => false,
        other => return Err(format!("expect must be allow or deny, not {other:?}")),
    };
    let facts = facts(&spec.change, &person)?;
    let decided: Result<Allowed, crate::Denial> = match spec.action.as_str() {
        "validate" => policy.validate(&facts).map(|v| {
            let slots: Vec<&str> = v.slots.iter().map(|s| s.label.as_str()).collect();
            let summary =
                format!("tier {}, {} approval(s), slots [{}]", v.tier, v.approvals, slots.join(", "));
            let mut mismatch = Vec::new();
            if spec.tier.as_ref().is_some_and(|t| t != &v.tier) {
                mismatch.push(format!("tier {:?}", spec.tier.as_deref().unwrap_or_default()));
            }
            if spec.approvals.is_some_and(|a| a != v.approvals) {
                mismatch.push(format!("{} approval(s)", spec.approvals.unwrap_or_default()));
            }
            if spec.slots.as_ref().is_some_and(|s| s.iter().map(String::as_str).ne(slots.iter().copied())) {
                mismatch.push(format!("slots [{}]", spec.slots.clone().unwrap_or_default().join(", ")));
            }
            Allowed { rules: v.rules, summary, mismatch }
        }),
        "quorum" => {
            let validation = policy.validate(&facts);
            match validation {
                Err(denial) => Err(denial),
                Ok(v) => {
                    let approvers: Vec<Person> = spec.approved_by.iter().map(|n| person(n)).collect();
                    let filled =
                        approvers.len() >= v.slots.len() && policy.assign(&v.slots, &approvers).is_some();
                    if filled {
                        let summary =
                            format!("{} fill all {} slot(s)", spec.approved_by.join(", "), v.slots.len());
                        Ok(Allowed { rules: v.rules, summary, mismatch: Vec::new() })
                    } else {
                        Err(crate::Denial {
                            code: "approval.insufficient",
                            rule: None,
                            reason: format!(
                                "{} do not fill the {} slot(s) [{}]",
                                spec.approved_by.join(", "),
                                v.slots.len(),
                                v.slots.iter().map(|s| s.label.as_str()).collect::<Vec<_>>().join(", ")
                            ),
                        })
                    }
                }
            }
        }
        other => {
            let act = Act::parse(other).ok_or_else(|| format!("unknown action {other:?}"))?;
            let principal = person(spec.principal.as_deref().ok_or("a principal is needed")?);
            let delegate = spec.on_behalf_of.as_deref().map(person);
            policy.authorize(act, &principal, &facts, delegate.as_ref()).map(|rules| Allowed {
                summary: format!("allowed by {}", rules.join(", ")),
                rules,
                mismatch: Vec::new(),
            })
        }
    };
    Ok(match decided {
        Ok(Allowed { rules, summary, mismatch }) => {
            let rule_ok = spec.rule.as_ref().is_none_or(|r| rules.contains(r));
            let ok = allow && rule_ok && mismatch.is_empty() && spec.code.is_none();
            let detail = match (ok, mismatch.is_empty()) {
                (true, _) => summary,
                (false, true) => format!("allowed ({summary}); expected {}", expected(spec)),
                (false, false) => format!("allowed ({summary}); expected {}", mismatch.join(", ")),
            };
            (ok, detail)
        }
        Err(denial) => {
            let ok = !allow
                && spec.rule.as_ref().is_none_or(|r| denial.rule.as_ref() == Some(r))
                && spec.code.as_ref().is_none_or(|c| c == denial.code);
            let detail = format!("denied [{}] {denial}", denial.code);
            let detail = if ok { detail } else { format!("{detail}; expected {}", expected(spec)) };
            (ok, detail)
        }
    })
}

/// What an allowed decision showed: the deciding rules, a summary, and what differed from the
/// case's expectations of a validation (tier, approvals, slots).
struct Allowed {
    rules: Vec<String>,
    summary: String,
    mismatch: Vec<String>,
}

fn expected(spec: &CaseSpec) -> String {
    let mut text = spec.expect.clone();
    if let Some(rule) = &spec.rule {
        text.push_str(&format!(" by {rule}"));
    }
    if let Some(code) = &spec.code {
        text.push_str(&format!(" with {code}"));
    }
    text
}

fn facts(spec: &ChangeSpec, person: &dyn Fn(&str) -> Person) -> Result<ChangeFacts, String> {
    let mut ops = Vec::new();
    for op in &spec.ops {
        if !["grant", "revoke", "rotate"].contains(&op.action.as_str()) {
            return Err(format!("op action {:?} is not grant, revoke or rotate", op.action));
        }
        let duration = op.duration.as_deref().map(Duration::parse).transpose().map_err(|e| e.to_string())?;
        let identity = person(&op.identity);
        ops.push(OpFacts {
            action: op.action.clone(),
            owner: identity.owner.clone(),
            identity,
            entitlement: op.entitlement.clone(),
            duration,
        });
    }
    let requester = person(&spec.requester);
    let kind = spec.kind.clone().unwrap_or_else(|| derive_kind(&ops, &spec.event));
    Ok(ChangeFacts {
        kind,
        event: spec.event.clone(),
        vendor: requester.vendor.clone(),
        requester,
        on_behalf_of: spec.on_behalf_of.as_deref().map(person),
        has_ticket: spec.ticket,
        emergency: spec.emergency,
        ops,
        tier: spec.tier.clone(),
        approvers: spec.approvers.clone(),
        executors: spec.executors.clone(),
        window: None,
        now: None,
        rollback_owner: None,
    })
}

/// The change kind Writ derives from the operations (`ChangeKind::derive`, as the change machine
/// does), for a fixture that names none; a fixture with an action or event Writ does not know
/// is a modification.
fn derive_kind(ops: &[OpFacts], event: &str) -> String {
    let actions: Option<Vec<(writ_core::change::OpAction, bool)>> = ops
        .iter()
        .map(|op| writ_core::change::OpAction::parse(&op.action).ok().map(|a| (a, op.duration.is_some())))
        .collect();
    match (actions, writ_core::change::BusinessEvent::parse(event)) {
        (Some(actions), Ok(event)) => {
            writ_core::change::ChangeKind::derive(&actions, event).as_str().to_owned()
        }
        _ => writ_core::change::ChangeKind::Modify.as_str().to_owned(),
    }
}
