//! What the OpenAPI document's patterns admit, the core's parsers accept, and what they refuse
//! the parsers refuse too (so a client that follows the document is not refused for the shape of
//! a value).

use super::{DURATION_PATTERN, ENTITLEMENT_PATTERN, NAME_PATTERN, NewChange, schema};

/// Whether `pattern` (as the OpenAPI document states it, ECMA-262 compatible) matches `value`.
fn admits(pattern: &str, value: &str) -> bool {
    regex::Regex::new(pattern).unwrap().is_match(value)
}

#[test]
fn names_the_pattern_admits_are_names_the_core_accepts() {
    let long = "a".repeat(128);
    let too_long = "a".repeat(129);
    for name in ["a", "alice", "svc-ci", "A.b@c+d-e_f", "0day", long.as_str()] {
        assert!(admits(NAME_PATTERN, name), "{name}");
        assert!(writ_core::name::IdentityName::parse(name).is_ok(), "{name}");
    }
    for name in ["", "-a", ".a", "a b", "a/b", "a:b", "é", too_long.as_str()] {
        assert!(!admits(NAME_PATTERN, name), "{name}");
        assert!(writ_core::name::IdentityName::parse(name).is_err(), "{name}");
    }
    for reference in ["access:deploy-prod", "pg:table/app.orders/select", "vault:static/payments"] {
        assert!(admits(ENTITLEMENT_PATTERN, reference), "{reference}");
        assert!(writ_core::name::EntitlementRef::parse(reference).is_ok(), "{reference}");
    }
    for reference in ["access", ":x", "a:", "a b:c", "a:/x"] {
        assert!(!admits(ENTITLEMENT_PATTERN, reference), "{reference}");
        assert!(writ_core::name::EntitlementRef::parse(reference).is_err(), "{reference}");
    }
}

#[test]
fn the_body_schemas_state_the_constraints() {
    let change = schema::<NewChange>();
    assert_eq!(change["additionalProperties"], false);
    assert_eq!(change["properties"]["identity"]["pattern"], NAME_PATTERN);
    assert_eq!(change["properties"]["grant"]["items"]["pattern"], ENTITLEMENT_PATTERN);
    assert_eq!(change["properties"]["for"]["pattern"], DURATION_PATTERN);
    assert_eq!(change["properties"]["justification"]["maxLength"], 2000);
}

#[test]
fn durations_the_pattern_admits_parse_and_blank_text_is_refused_by_both() {
    for duration in ["8h", "30m", "366d", "8784h", "52w", "1s"] {
        assert!(admits(DURATION_PATTERN, duration), "{duration}");
        assert!(writ_core::time::Duration::parse(duration).is_ok(), "{duration}");
    }
    for duration in ["", "h", "8", "8x", "-1h", "8 h", "0d", "367d", "8785h", "53w"] {
        assert!(!admits(DURATION_PATTERN, duration), "{duration}");
    }
    for refused in ["", "h", "8", "8x", "-1h", "8 h", "0d", "367d", "8785h", "53w"] {
        assert!(writ_core::time::Duration::parse(refused).is_err(), "{refused}");
    }
    assert!(!admits(super::TEXT_PATTERN, "   "));
    assert!(writ_core::change::Justification::parse("   ").is_err());
}
