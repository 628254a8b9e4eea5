//! `[[ticket_approval]]`: the sources and tiers at which an approval a ticket carries counts as
//! its approver's.

use super::*;

pub(super) fn ticket_approvals(
    file: &RulesFile,
    text: &str,
    tiers: &[Tier],
) -> Result<Vec<TicketApproval>, PolicyError> {
    let at = |span: std::ops::Range<usize>| line_of(text, span.start);
    let mut ticket_approvals: Vec<TicketApproval> = Vec::new();
    for spec in &file.ticket_approval {
        let line = at(spec.span());
        let spec = spec.get_ref();
        let err = |reason: String| {
            PolicyError::invalid(FILE, line, &format!("[[ticket_approval]] {:?}: {reason}", spec.id))
        };
        if !is_rule_id(&spec.id) || ticket_approvals.iter().any(|t| t.id == spec.id) {
            return Err(err("ids must be unique, of letters, digits, '.', '-' and '_'".into()));
        }
        if !is_name(&spec.source) {
            return Err(err(format!("source {:?} must be the name of a [[hook]]", spec.source)));
        }
        if spec.tiers.is_empty() {
            return Err(err("tiers lists at least one tier".into()));
        }
        if let Some(unknown) = spec.tiers.iter().find(|t| !tiers.iter().any(|tier| &tier.name == *t)) {
            return Err(err(format!("tier {unknown:?} is not a [[tier]]")));
        }
        ticket_approvals.push(TicketApproval {
            id: spec.id.clone(),
            description: spec.description.clone(),
            source: spec.source.clone(),
            tiers: spec.tiers.clone(),
        });
    }
    Ok(ticket_approvals)
}
