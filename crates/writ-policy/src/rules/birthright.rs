//! `[[birthright]]`: the entitlements a person's attributes give them (joiner, mover, leaver).

use super::*;

pub(super) fn birthright(file: &RulesFile, text: &str) -> Result<Vec<Birthright>, PolicyError> {
    let at = |span: std::ops::Range<usize>| line_of(text, span.start);
    let mut birthright: Vec<Birthright> = Vec::new();
    for spec in &file.birthright {
        let line = at(spec.span());
        let spec = spec.get_ref();
        let err = |reason: String| {
            PolicyError::invalid(FILE, line, &format!("[[birthright]] {:?}: {reason}", spec.id))
        };
        if !is_rule_id(&spec.id) || birthright.iter().any(|b| b.id == spec.id) {
            return Err(err("ids must be unique, of letters, digits, '.', '-' and '_'".into()));
        }
        if spec.grant.is_empty() {
            return Err(err("grant lists at least one TARGET:ENTITLEMENT".into()));
        }
        let grant = spec
            .grant
            .iter()
            .map(|g| writ_core::name::EntitlementRef::parse(g).map_err(|e| err(format!("grant {g:?}: {e}"))))
            .collect::<Result<Vec<_>, _>>()?;
        birthright.push(Birthright {
            id: spec.id.clone(),
            description: spec.description.clone(),
            when: spec.when.clone(),
            grant,
        });
    }
    Ok(birthright)
}
