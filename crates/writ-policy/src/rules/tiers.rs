//! `[[tier]]` and `[groups]`: the risk tiers (approvals, validity, escalation, maximum duration,
//! review, tickets) and the named groups of people that approver slots and escalation name.

use std::collections::{BTreeMap, BTreeSet};

use super::*;

/// The tiers, in the order the file gives them (at least one).
pub(super) fn tiers(file: &RulesFile, text: &str) -> Result<Vec<Tier>, PolicyError> {
    let at = |span: std::ops::Range<usize>| line_of(text, span.start);
    let mut tiers: Vec<Tier> = Vec::new();
    for spec in &file.tier {
        let line = at(spec.span());
        let spec = spec.get_ref();
        let err =
            |reason: String| PolicyError::invalid(FILE, line, &format!("tier {:?}: {reason}", spec.name));
        if tiers.iter().any(|t| t.name == spec.name) || !is_name(&spec.name) {
            return Err(err("tier names must be unique words (letters, digits, - and _)".into()));
        }
        if spec.approvals == 0 || spec.approvals > 10 {
            return Err(err("approvals must be 1 to 10".into()));
        }
        tiers.push(Tier {
            name: spec.name.clone(),
            approvals: spec.approvals,
            validity: duration(&spec.approval_validity).map_err(&err)?,
            escalate_after: spec.escalate_after.as_deref().map(duration).transpose().map_err(&err)?,
            escalate_to: spec.escalate_to.clone(),
            max_duration: spec.max_duration.as_deref().map(duration).transpose().map_err(&err)?,
            review: spec.review,
            require_ticket: spec.require_ticket,
            require_window: spec.require_window,
            allowed_windows: windows(&spec.allowed_windows).map_err(&err)?,
        });
    }
    if tiers.is_empty() {
        return Err(PolicyError::invalid(FILE, 1, "no [[tier]]: at least one risk tier is needed"));
    }
    if tiers.is_empty() {
        return Err(PolicyError::invalid(FILE, 1, "no [[tier]]: at least one risk tier is needed"));
    }
    Ok(tiers)
}

/// The groups, each a set of identity names; a tier escalating to a group must name one.
pub(super) fn groups(
    file: &RulesFile,
    text: &str,
    tiers: &[Tier],
) -> Result<BTreeMap<String, BTreeSet<String>>, PolicyError> {
    let at = |span: std::ops::Range<usize>| line_of(text, span.start);
    let mut groups = BTreeMap::new();
    for (name, members) in &file.groups {
        if !is_name(name) {
            return Err(PolicyError::invalid(FILE, find_line(text, name), &format!("group name {name:?}")));
        }
        groups.insert(name.clone(), members.iter().cloned().collect::<BTreeSet<_>>());
    }
    for (tier, spec) in tiers.iter().zip(&file.tier) {
        if let Some(target) = &tier.escalate_to {
            check_escalation_target(target, &groups).map_err(|reason| {
                PolicyError::invalid(FILE, at(spec.span()), &format!("tier {:?}: {reason}", tier.name))
            })?;
        }
    }
    Ok(groups)
}
