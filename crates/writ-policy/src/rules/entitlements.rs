//! `[[entitlement]]`: classes of entitlements by pattern (privileged, their owner).

use super::*;

pub(super) fn entitlements(file: &RulesFile, text: &str) -> Result<Vec<EntitlementClass>, PolicyError> {
    let at = |span: std::ops::Range<usize>| line_of(text, span.start);
    let mut entitlements = Vec::new();
    for spec in &file.entitlement {
        let line = at(spec.span());
        let spec = spec.get_ref();
        if spec.patterns.is_empty() || spec.patterns.iter().any(|p| !p.contains(':')) {
            return Err(PolicyError::invalid(
                FILE,
                line,
                "[[entitlement]] match: one or more TARGET:ENTITLEMENT patterns (* matches any text)",
            ));
        }
        entitlements.push(EntitlementClass {
            patterns: spec.patterns.clone(),
            privileged: spec.privileged,
            owner: spec.owner.clone(),
        });
    }
    Ok(entitlements)
}
