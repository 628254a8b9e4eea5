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
    for blank in ["   ", "\u{85}", "\u{a0}\u{3000}", "\t\n"] {
        assert!(!admits(super::TEXT_PATTERN, blank), "{blank:?}");
        assert!(writ_core::change::Justification::parse(blank).is_err(), "{blank:?}");
    }
    assert!(
        admits(super::TEXT_PATTERN, "\u{feff}")
            && writ_core::change::Justification::parse("\u{feff}").is_ok()
    );
    assert!(writ_core::change::Justification::parse("   ").is_err());
}

#[test]
fn text_patterns_and_lengths_agree_with_the_core() {
    use super::{CONTROL_PATTERN, LABEL_PATTERN, REF_PATTERN, SUBJECT_PATTERN};
    use writ_core::change::{ExternalRef, RefKind};
    let chars = |n: usize| "é".repeat(n); // two bytes each: limits count characters
    // (pattern, max characters, the core's parser, accepted, refused)
    type Case = (&'static str, usize, fn(&str) -> bool, Vec<String>, Vec<String>);
    let cases: Vec<Case> = vec![
        (
            LABEL_PATTERN,
            100,
            |v| writ_core::access::token_label(v).is_ok(),
            vec!["ci".into(), "déploiement nocturne".into(), chars(100)],
            vec![
                "".into(),
                "a\u{1}b".into(),
                "tab\there".into(),
                "x\u{7f}".into(),
                "\u{85}".into(),
                chars(101),
            ],
        ),
        (
            REF_PATTERN,
            200,
            |v| ExternalRef::new(RefKind::Ticket, v).is_ok(),
            vec!["CHG0001".into(), " INC-7 ".into(), "ticket é".into(), chars(200)],
            vec!["".into(), "   ".into(), "a\nb".into(), chars(201)],
        ),
        (
            SUBJECT_PATTERN,
            200,
            |v| writ_core::exception::parse_subject(v).is_ok(),
            vec!["dave".into(), "access:deploy-prod".into(), chars(200)],
            vec!["".into(), "a b".into(), "a\u{0}".into(), chars(201)],
        ),
        (
            CONTROL_PATTERN,
            100,
            |v| writ_core::exception::parse_control(v).is_ok(),
            vec!["secret.long_lived".into(), "a-b_c.0".into(), "a".repeat(100)],
            vec!["".into(), "Secret".into(), "a b".into(), "a".repeat(101)],
        ),
    ];
    for (pattern, max, parse, accepted, refused) in cases {
        for value in accepted {
            let fits = admits(pattern, &value) && value.chars().count() <= max;
            assert!(fits && parse(&value), "{pattern}: {value:?} should be accepted by both");
        }
        for value in refused {
            let fits = admits(pattern, &value) && value.chars().count() <= max;
            assert!(!fits && !parse(&value), "{pattern}: {value:?} should be refused by both");
        }
    }
    // Reasons and justifications: at most 2000 characters as sent, not only blanks.
    assert!(writ_core::change::Justification::parse(&chars(2000)).is_ok());
    assert!(writ_core::change::Justification::parse(&chars(2001)).is_err());
    assert!(writ_core::change::Justification::parse(&format!(" {}", "a".repeat(2000))).is_err());
}
