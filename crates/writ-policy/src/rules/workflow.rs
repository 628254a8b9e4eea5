//! `[[rule]]`: the workflow rules, each matching changes (`when`) and setting a tier, approver
//! slots, a maximum duration, a ticket or review requirement, or a denial.

use std::collections::{BTreeMap, BTreeSet};

use super::*;

pub(super) fn rules(
    file: &RulesFile,
    text: &str,
    tiers: &[Tier],
    groups: &BTreeMap<String, BTreeSet<String>>,
) -> Result<Vec<Rule>, PolicyError> {
    let at = |span: std::ops::Range<usize>| line_of(text, span.start);
    let mut rules: Vec<Rule> = Vec::new();
    for spec in &file.rule {
        let line = at(spec.span());
        let spec = spec.get_ref();
        let err = |reason: String| PolicyError::invalid(FILE, line, &format!("rule {:?}: {reason}", spec.id));
        if !is_rule_id(&spec.id) || rules.iter().any(|r| r.id == spec.id) {
            return Err(err("rule ids must be unique, of letters, digits, '.', '-' and '_'".into()));
        }
        check_when(&spec.when).map_err(&err)?;
        let tier = spec
            .tier
            .as_ref()
            .map(|name| {
                tiers.iter().position(|t| &t.name == name).ok_or_else(|| {
                    let known: Vec<&str> = tiers.iter().map(|t| t.name.as_str()).collect();
                    err(format!("tier {name:?} is not defined (tiers: {})", known.join(", ")))
                })
            })
            .transpose()?;
        let approvers = spec
            .approvers
            .iter()
            .map(|a| slot_spec(a, groups))
            .collect::<Result<Vec<_>, _>>()
            .map_err(&err)?;
        let has_effect = tier.is_some()
            || !approvers.is_empty()
            || spec.max_duration.is_some()
            || spec.require_ticket.is_some()
            || spec.review.is_some()
            || spec.require_window.is_some()
            || !spec.allowed_windows.is_empty()
            || spec.deny.is_some();
        if !has_effect {
            return Err(err(
                "has no effect: give tier, approvers, max_duration, require_ticket, require_window, allowed_windows, review or deny".into(),
            ));
        }
        rules.push(Rule {
            id: spec.id.clone(),
            controls: spec.controls.clone(),
            description: spec.description.clone(),
            when: spec.when.clone(),
            tier,
            approvers,
            max_duration: spec.max_duration.as_deref().map(duration).transpose().map_err(&err)?,
            require_ticket: spec.require_ticket,
            review: spec.review,
            deny: spec.deny.clone(),
            require_window: spec.require_window,
            allowed_windows: windows(&spec.allowed_windows).map_err(&err)?,
        });
    }
    Ok(rules)
}
