//! `[exception]`: who approves an exception (a tier and slots; never its owner) and its longest
//! term (the highest tier's approvals, from internal people, 90 days without the section).

use std::collections::{BTreeMap, BTreeSet};

use super::*;

pub(super) fn exception(
    file: &RulesFile,
    text: &str,
    tiers: &[Tier],
    groups: &BTreeMap<String, BTreeSet<String>>,
    rules: &[Rule],
) -> Result<ExceptionRule, PolicyError> {
    let at = |span: std::ops::Range<usize>| line_of(text, span.start);
    let exception = match &file.exception {
        Some(spec) => {
            let line = at(spec.span());
            let spec = spec.get_ref();
            let err = |reason: String| PolicyError::invalid(FILE, line, &format!("[exception]: {reason}"));
            if !is_rule_id(&spec.id) || rules.iter().any(|r| r.id == spec.id) {
                return Err(err(format!(
                    "id {:?} must be unique among the rule ids, of letters, digits, '.', '-' and '_'",
                    spec.id
                )));
            }
            let tier = tiers.iter().position(|t| t.name == spec.tier).ok_or_else(|| {
                let known: Vec<&str> = tiers.iter().map(|t| t.name.as_str()).collect();
                err(format!("tier {:?} is not defined (tiers: {})", spec.tier, known.join(", ")))
            })?;
            let approvers = spec
                .approvers
                .iter()
                .map(|a| match slot_spec(a, groups) {
                    Ok(SlotSpec::SubjectOwner | SlotSpec::EntitlementOwner) => Err(format!(
                        "approver {a:?}: an exception's owner is an interested party and cannot approve it"
                    )),
                    other => other,
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(&err)?;
            ExceptionRule {
                id: spec.id.clone(),
                description: spec.description.clone(),
                controls: spec.controls.clone(),
                tier,
                approvers,
                max_duration: duration(&spec.max_duration).map_err(&err)?,
            }
        }
        // Without a section: the highest tier's approvals, from internal people, 90 days.
        None => ExceptionRule {
            id: "exception.default".to_owned(),
            description: Some("Exceptions need the highest tier's approvals, at least one internal.".into()),
            controls: Vec::new(),
            tier: tiers.len() - 1,
            approvers: vec![SlotSpec::Internal],
            max_duration: Duration::hours(24 * 90),
        },
    };
    Ok(exception)
}
