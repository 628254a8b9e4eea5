//! Tests of policy compilation, the default pack's own cases, slot matching and globs.

use std::collections::BTreeMap;

use super::*;

fn pack_with(rules: &str) -> Result<Policy, PolicyError> {
    let mut files: BTreeMap<String, String> = PolicyBundle::default_pack().files().clone();
    files.insert("rules.toml".into(), rules.into());
    Policy::compile(PolicyBundle::from_files(files)?)
}

#[test]
fn the_default_pack_passes_its_own_tests() {
    let policy = Policy::default_pack().unwrap();
    let results = testing::run(&policy, "default.toml", DEFAULT_TESTS).unwrap();
    let failed: Vec<_> = results.iter().filter(|r| !r.passed).collect();
    assert!(results.len() >= 30, "{}", results.len());
    assert!(failed.is_empty(), "{failed:#?}");
}

#[test]
fn a_broken_expectation_fails_the_test_run() {
    let policy = Policy::default_pack().unwrap();
    let text = DEFAULT_TESTS.replace(
        "name = \"the requester cannot approve their own change\"\naction = \"approve\"\nprincipal = \"alice\"\nexpect = \"deny\"",
        "name = \"the requester cannot approve their own change\"\naction = \"approve\"\nprincipal = \"alice\"\nexpect = \"allow\"",
    );
    assert_ne!(text, DEFAULT_TESTS);
    let results = testing::run(&policy, "default.toml", &text).unwrap();
    let failed: Vec<_> = results.iter().filter(|r| !r.passed).collect();
    assert_eq!(failed.len(), 1, "{failed:#?}");
    assert!(failed[0].detail.contains("sod.no-self-approval"), "{}", failed[0].detail);
}

#[test]
fn the_hash_covers_names_and_contents() {
    let a = PolicyBundle::default_pack();
    let mut files = a.files().clone();
    let b = PolicyBundle::from_files(files.clone()).unwrap();
    assert_eq!(a.hash(), b.hash());
    files.insert("extra.cedar".into(), String::new());
    assert_ne!(PolicyBundle::from_files(files).unwrap().hash(), a.hash());
    assert_eq!(a.hash().len(), 64);
}

#[test]
fn invalid_cedar_is_refused_with_file_and_line() {
    let mut files = PolicyBundle::default_pack().files().clone();
    files.insert(
        "extra.cedar".into(),
        "// comment\n\n@id(\"x\")\npermit (principal, action, resource)\nwhen { principal.no_such == 1 };\n"
            .into(),
    );
    let error = Policy::compile(PolicyBundle::from_files(files.clone()).unwrap()).unwrap_err();
    let PolicyError::Invalid { file, line, reason } = &error else { panic!("{error}") };
    assert_eq!((file.as_str(), *line), ("extra.cedar", 5), "{error}");
    assert!(reason.contains("no_such"), "{reason}");

    files.insert("extra.cedar".into(), "\n\npermit (principal, action, resource) when { true }\n".into());
    let error = Policy::compile(PolicyBundle::from_files(files.clone()).unwrap()).unwrap_err();
    let PolicyError::Invalid { file, line, .. } = &error else { panic!("{error}") };
    assert_eq!((file.as_str(), *line), ("extra.cedar", 3), "a syntax error: {error}");

    files.insert(
        "extra.cedar".into(),
        "\n@id(\"nope\")\npermit (principal, action, resource);\n\npermit (principal, action, resource);\n"
            .into(),
    );
    let error = Policy::compile(PolicyBundle::from_files(files.clone()).unwrap()).unwrap_err();
    assert_eq!(error.to_string(), "extra.cedar:5: policy has no @id(\"…\"); every policy needs a unique id");

    files.insert(
        "extra.cedar".into(),
        "@id(\"sod.no-self-approval\")\npermit (principal, action, resource);\n".into(),
    );
    let error = Policy::compile(PolicyBundle::from_files(files).unwrap()).unwrap_err();
    assert!(error.to_string().contains("used twice"), "{error}");
}

#[test]
fn invalid_rules_are_refused_with_line_and_reason() {
    let base = PolicyBundle::default_pack().files()["rules.toml"].clone();
    let cases = [
        (
            base.replace("tier = \"high\"\n", "tier = \"hihg\"\n"),
            "tier \"hihg\" is not defined (tiers: low, high)",
        ),
        (
            base.replace("max_duration = \"8h\"\n\n[[rule]]", "max_duration = \"8 hours\"\n\n[[rule]]"),
            "unknown unit",
        ),
        (
            base.replace("approvers = [\"internal\"]", "approvers = [\"group:nobody\"]"),
            "group \"nobody\" is not defined",
        ),
        (base.replace("when = { vendor = true }", "when = { vendorr = true }"), "unknown field `vendorr`"),
        (
            base.replace("when = { kind = [\"time_bound_elevation\"] }", "when = { kind = [\"elevation\"] }"),
            "\"elevation\" is not one of",
        ),
        (base.replace("approvals = 2", "approvals = 0"), "approvals must be 1 to 10"),
        (
            format!("{base}\n[[rule]]\nid = \"vendor.internal-sponsor\"\ntier = \"high\"\n"),
            "rule ids must be unique",
        ),
        (
            base.replace(
                "approvers = [\"internal\"]\nmax_duration = \"90d\"",
                "approvers = [\"owner:subject\"]\nmax_duration = \"90d\"",
            ),
            "[exception]: approver \"owner:subject\": an exception's owner is an interested party",
        ),
        (
            base.replace("id = \"exception.two-approvers\"", "id = \"vendor.internal-sponsor\""),
            "[exception]: id \"vendor.internal-sponsor\" must be unique",
        ),
        (base.replace("max_duration = \"90d\"", "max_duration = \"900d\""), "[exception]: invalid duration"),
    ];
    for (text, expected) in cases {
        let error = pack_with(&text).unwrap_err();
        let PolicyError::Invalid { file, line, reason } = &error else { panic!("{error}") };
        assert_eq!(file, "rules.toml");
        assert!(*line > 1, "{error}");
        assert!(reason.contains(expected), "{error} should say {expected}");
    }
    // The line points at the offending rule.
    let error = pack_with(&base.replace("tier = \"high\"\n", "tier = \"hihg\"\n")).unwrap_err();
    let PolicyError::Invalid { line, .. } = error else { panic!() };
    let rule_line = base.lines().position(|l| l.contains("id = \"privileged.two-approvers\"")).unwrap() + 1;
    assert!((rule_line - 1..=rule_line).contains(&line), "{line} vs {rule_line}");
}

#[test]
fn slot_assignment_finds_a_matching_when_greedy_would_not() {
    let rules = "[[tier]]\nname = \"low\"\napprovals = 1\napproval_validity = \"1h\"\n[groups]\nsec = [\"sam\"]\n\
        [[rule]]\nid = \"r\"\nwhen = {}\napprovers = [\"any\", \"group:sec\"]\n";
    let policy = pack_with(rules).unwrap();
    let facts = ChangeFacts {
        kind: "grant".into(),
        event: "adhoc".into(),
        requester: Person::human("alice"),
        on_behalf_of: None,
        vendor: None,
        has_ticket: false,
        emergency: false,
        ops: vec![OpFacts {
            action: "grant".into(),
            identity: Person::human("carol"),
            owner: None,
            entitlement: "db:read".into(),
            duration: None,
        }],
        tier: String::new(),
        approvers: Vec::new(),
        executors: Vec::new(),
        window: None,
        now: None,
        rollback_owner: None,
    };
    let v = policy.validate(&facts).unwrap();
    assert_eq!(v.slots.iter().map(|s| s.label.as_str()).collect::<Vec<_>>(), ["any", "group:sec"]);
    // sam approves first and takes "any" greedily; bob then needs it: a matching moves sam.
    let people = [Person::human("sam"), Person::human("bob")];
    assert_eq!(policy.assign(&v.slots, &people), Some(vec![1, 0]));
    assert_eq!(policy.assign(&v.slots, &[Person::human("bob"), Person::human("dave")]), None);
    assert_eq!(policy.assign(&v.slots, &[Person::human("sam"), Person::human("sam")]), None);
}

#[test]
fn birthright_rules_give_the_union_of_every_matching_rule_and_refuse_bad_entries() {
    let base = PolicyBundle::default_pack().files()["rules.toml"].clone();
    let rules = format!(
        "{base}\n[[birthright]]\nid = \"everyone\"\ngrant = [\"wiki:read\"]\n\
         \n[[birthright]]\nid = \"eng\"\nwhen = {{ department = [\"Engineering\"], group = [\"oncall\"] }}\n\
         grant = [\"access:deploy-prod\", \"wiki:read\"]\n"
    );
    let policy = pack_with(&rules).unwrap();
    let person = |department: &str, groups: &[&str]| writ_policy_person(department, groups);
    let of = |p: &crate::Record| -> Vec<String> {
        policy.rules().birthright_of(p).into_iter().map(|(e, ids)| format!("{e} {}", ids.join("+"))).collect()
    };
    assert_eq!(of(&person("engineering", &["OnCall"])), ["access:deploy-prod eng", "wiki:read everyone+eng"]);
    assert_eq!(of(&person("Engineering", &[])), ["wiki:read everyone"], "every key must match");
    assert_eq!(of(&person("Finance", &["oncall"])), ["wiki:read everyone"]);
    for (bad, expected) in [
        ("[[birthright]]\nid = \"x\"\ngrant = []\n", "grant lists at least one"),
        ("[[birthright]]\nid = \"x\"\ngrant = [\"no-colon\"]\n", "grant \"no-colon\""),
        (
            "[[birthright]]\nid = \"x\"\nwhen = { dept = [\"a\"] }\ngrant = [\"a:b\"]\n",
            "unknown field `dept`",
        ),
        (
            "[[birthright]]\nid = \"x\"\ngrant = [\"a:b\"]\n[[birthright]]\nid = \"x\"\ngrant = [\"a:c\"]\n",
            "ids must be unique",
        ),
    ] {
        let error = pack_with(&format!("{base}\n{bad}")).unwrap_err();
        assert!(error.to_string().contains(expected), "{error} should say {expected}");
    }
}

fn writ_policy_person(department: &str, groups: &[&str]) -> crate::Record {
    crate::Record {
        department: Some(department.to_owned()),
        groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        ..crate::Record::default()
    }
}

#[test]
fn exceptions_take_their_approvals_from_the_exception_section() {
    let policy = Policy::default_pack().unwrap();
    let e = policy.rules().exception_policy();
    assert_eq!((e.rule.as_str(), e.tier.as_str(), e.approvals), ("exception.two-approvers", "high", 2));
    assert_eq!(e.slots.iter().map(|s| s.label.as_str()).collect::<Vec<_>>(), ["internal", "any"]);
    assert_eq!(e.max_duration, writ_core::time::Duration::hours(24 * 90));
    // Without the section: the highest tier's approvals, one internal, 90 days.
    let base = PolicyBundle::default_pack().files()["rules.toml"].clone();
    let cut = base.find("\n[exception]").unwrap();
    let plain = pack_with(&base[..cut]).unwrap().rules().exception_policy();
    assert_eq!((plain.rule.as_str(), plain.tier.as_str(), plain.approvals), ("exception.default", "high", 2));
}

#[test]
fn globs_match_whole_names() {
    assert!(glob("*:*admin*", "db:db_admin"));
    assert!(glob("*:*admin*", "dir:admins"));
    assert!(!glob("*:*admin*", "db:read"));
    assert!(glob("vault:policy/root", "vault:policy/root"));
    assert!(!glob("vault:policy/root", "vault:policy/rooted"));
    assert!(glob("db:*", "db:"));
    assert!(!glob("db:a*b", "db:ab_c"));
}

#[test]
fn the_entities_writ_builds_match_the_schema() {
    let policy = Policy::default_pack().unwrap();
    let mut owner = Person::human("svc-etl");
    owner.kind = "service_account".into();
    owner.owner = Some("dana".into());
    let mut vendor = Person::human("vera");
    vendor.vendor = Some("acme".into());
    let facts = ChangeFacts {
        kind: "grant".into(),
        event: "vendor".into(),
        requester: vendor.clone(),
        on_behalf_of: Some(Person::human("carol")),
        vendor: Some("acme".into()),
        has_ticket: true,
        emergency: false,
        ops: vec![OpFacts {
            action: "grant".into(),
            owner: owner.owner.clone(),
            identity: owner,
            entitlement: "db:read".into(),
            duration: None,
        }],
        tier: "low".into(),
        approvers: vec!["bob".into()],
        executors: vec!["system:writ-engine".into()],
        window: None,
        now: None,
        rollback_owner: None,
    };
    let (entities, context) = policy
        .cedar_types()
        .decision(&Person::human("sam"), &facts, Some(&Person::human("bob")), policy.rules())
        .unwrap();
    let schema = cedar::schema();
    cedar_policy::Entities::from_entities(entities, Some(&schema)).unwrap();
    let action =
        cedar_policy::EntityUid::from_json(serde_json::json!({ "type": "Writ::Action", "id": "approve" }))
            .unwrap();
    let principal =
        cedar_policy::EntityUid::from_json(serde_json::json!({ "type": "Writ::Identity", "id": "sam" }))
            .unwrap();
    let resource =
        cedar_policy::EntityUid::from_json(serde_json::json!({ "type": "Writ::Change", "id": "change" }))
            .unwrap();
    cedar_policy::Request::new(principal, action, resource, context, Some(&schema)).unwrap();
}

#[test]
fn ticket_approvals_count_for_the_named_source_at_the_named_tiers_only() {
    let base = PolicyBundle::default_pack().files()["rules.toml"].clone();
    let rules = format!(
        "{base}\n[[ticket_approval]]\nid = \"itsm.low\"\nsource = \"servicenow\"\ntiers = [\"low\"]\n"
    );
    let policy = pack_with(&rules).unwrap();
    assert_eq!(policy.rules().ticket_approval("servicenow", "low").map(|t| t.id.as_str()), Some("itsm.low"));
    assert_eq!(policy.rules().ticket_approval("servicenow", "high"), None, "not at other tiers");
    assert_eq!(policy.rules().ticket_approval("jira", "low"), None, "not from other sources");
    let default = pack_with(&base).unwrap();
    assert_eq!(default.rules().ticket_approval("servicenow", "low"), None, "never by default");
    for (bad, expected) in [
        ("id = \"x\"\nsource = \"servicenow\"\ntiers = []\n", "at least one tier"),
        ("id = \"x\"\nsource = \"servicenow\"\ntiers = [\"medium\"]\n", "\"medium\" is not a [[tier]]"),
        ("id = \"x\"\nsource = \"a b\"\ntiers = [\"low\"]\n", "must be the name of a [[hook]]"),
        ("id = \"x\"\nsource = \"s\"\ntiers = [\"low\"]\ncount = 2\n", "unknown field `count`"),
    ] {
        let error = pack_with(&format!("{base}\n[[ticket_approval]]\n{bad}")).unwrap_err();
        assert!(error.to_string().contains(expected), "{error} should say {expected}");
    }
}

#[test]
fn finding_and_secret_sections_are_read_and_bad_entries_refused() {
    let policy = Policy::default_pack().unwrap();
    let rules = policy.rules();
    let unapproved = rules.finding_rule("access.unapproved");
    assert_eq!(unapproved.severity, writ_core::finding::Severity::Medium);
    assert!(unapproved.controls.iter().any(|c| c.starts_with("NIST-CSF:")), "{unapproved:?}");
    assert!(rules.finding_rule("secret.long_lived").controls.iter().any(|c| c == "OWASP-NHI:NHI7:2025"));
    let token = rules.secret_limit("token").unwrap();
    assert_eq!(token.max_ttl, Some(Duration::hours(30 * 24)));
    assert_eq!(rules.secret_limit("static"), None, "the pack sets no limit for static credentials");

    let base = PolicyBundle::default_pack().files()["rules.toml"].clone();
    let bad = [
        ("[[finding]]\nkind = \"access.nope\"\n", "unknown kind"),
        ("[[finding]]\nkind = \"change.unmatched_telemetry\"\nseverity = \"dire\"\n", "severity"),
        ("[[finding]]\nkind = \"access.missing\"\n", "given twice"),
        ("[[secret]]\nclass = \"password\"\nmax_ttl = \"1d\"\n", "unknown class"),
        ("[[secret]]\nclass = \"static\"\n", "max_ttl, max_secret_age or both"),
        ("[[secret]]\nclass = \"static\"\nmax_ttl = \"forever\"\n", "invalid duration"),
        ("[[secret]]\nclass = \"token\"\nmax_ttl = \"1d\"\n", "given twice"),
    ];
    for (extra, want) in bad {
        let err = pack_with(&format!("{base}\n{extra}")).unwrap_err().to_string();
        assert!(err.contains(want), "{extra:?}: {err}");
        assert!(err.starts_with("rules.toml:"), "{err}");
    }
}

#[test]
fn automation_limits_pause_above_the_share_or_the_grant_count_never_below_the_floor() {
    let limits = Policy::default_pack().unwrap().rules().automation;
    assert_eq!(limits, AutomationLimits::default());
    // (removed people, removed grants, holders) → beyond the limits?
    let cases = [
        ((3, 3, 10), false), // the floor: three people in an hour is routine in a small company
        ((4, 4, 10), true),  // four of ten is not
        ((10, 10, 100), false),
        ((11, 11, 100), true),
        ((1, 51, 1000), true),   // one person holding 51 grants
        ((50, 50, 1000), false), // at the limits, not beyond them
        ((50, 51, 1000), true),
        ((0, 0, 0), false),
    ];
    for ((removed, grants, holders), want) in cases {
        assert_eq!(limits.exceeded(removed, grants, holders), want, "{removed} {grants} {holders}");
    }
    let base = PolicyBundle::default_pack().files()["rules.toml"].clone();
    let mut custom = base.replace("max_removed_percent = 10", "max_removed_percent = 50");
    custom = custom.replace("min_removed = 3", "min_removed = 1");
    let policy = pack_with(&custom).unwrap();
    assert!(!policy.rules().automation.exceeded(5, 5, 10));
    assert!(policy.rules().automation.exceeded(6, 6, 10));
    let err = pack_with(&base.replace("max_removed_percent = 10", "max_removed_percent = 0")).unwrap_err();
    assert!(err.to_string().contains("max_removed_percent"), "{err}");
    // The feed's expected interval: off unless set, a duration when set.
    assert_eq!(limits.feed_interval, None);
    let set = pack_with(&base.replace("# feed_interval = \"2h\"", "feed_interval = \"2h\"")).unwrap();
    assert_eq!(set.rules().automation.feed_interval, Some(writ_core::time::Duration::hours(2)));
    let err = pack_with(&base.replace("# feed_interval = \"2h\"", "feed_interval = \"soon\"")).unwrap_err();
    assert!(err.to_string().contains("[automation]"), "{err}");
}

/// A grant as policy sees it, with `window` and the time it is judged at.
fn windowed(window: Option<writ_core::change::Window>, emergency: bool) -> ChangeFacts {
    ChangeFacts {
        kind: "grant".into(),
        event: "adhoc".into(),
        requester: Person::human("alice"),
        on_behalf_of: None,
        vendor: None,
        has_ticket: false,
        emergency,
        ops: vec![OpFacts {
            action: "grant".into(),
            identity: Person::human("carol"),
            owner: None,
            entitlement: "db:admin".into(),
            duration: None,
        }],
        tier: String::new(),
        approvers: Vec::new(),
        executors: Vec::new(),
        window,
        now: writ_core::time::Timestamp::parse_rfc3339("2026-12-07T12:00:00Z"),
        rollback_owner: None,
    }
}

#[test]
fn windows_are_required_and_bounded_per_tier_and_rule_and_waived_for_break_glass() {
    let rules = "[[tier]]\nname = \"low\"\napprovals = 1\napproval_validity = \"1h\"\n\
        [[tier]]\nname = \"high\"\napprovals = 1\napproval_validity = \"1h\"\nrequire_window = true\n\
        [[rule]]\nid = \"admin\"\nwhen = { entitlement = [\"db:admin\"] }\ntier = \"high\"\n\
        allowed_windows = [\"Tue-Thu 22:00-02:00 Europe/Berlin\"]\n";
    let policy = pack_with(rules).unwrap();
    let window = |start: &str, end: &str| Some(crate::window::concrete(start, end, "Europe/Berlin").unwrap());
    let cases = [
        (None, false, Err("policy.window_required")),
        (window("2026-12-08T22:00", "2026-12-08T23:00"), false, Ok(())),
        (window("2026-12-07T22:00", "2026-12-07T23:00"), false, Err("policy.window_not_allowed")),
        (window("2026-12-08T21:00", "2026-12-08T23:00"), false, Err("policy.window_not_allowed")),
        (None, true, Ok(())),
        (window("2026-12-07T22:00", "2026-12-07T23:00"), true, Ok(())),
    ];
    for (window, emergency, want) in cases {
        let got = policy.validate(&windowed(window.clone(), emergency));
        match (&got, want) {
            (Ok(v), Ok(())) => {
                let rules: Vec<&str> = v.window_rules.iter().map(|(r, _)| r.as_str()).collect();
                assert_eq!(rules, ["tier.high", "admin"], "the demands are reported, waived or not");
            }
            (Err(denial), Err(code)) => assert_eq!(denial.code, code, "{window:?} {emergency}"),
            _ => panic!("{window:?} emergency={emergency}: {got:?}, want {want:?}"),
        }
    }
    // The refusal names the allowed windows and the next one, in the policy's zone.
    let denial = policy.validate(&windowed(None, false)).unwrap_err();
    assert!(
        denial.reason.contains(
            "the next allowed window is Tue 2026-12-08 22:00 to Wed 2026-12-09 02:00 Europe/Berlin"
        ),
        "{denial}"
    );
    // A low-tier change needs no window.
    let low = ChangeFacts {
        ops: vec![OpFacts { entitlement: "db:read".into(), ..windowed(None, false).ops.remove(0) }],
        ..windowed(None, false)
    };
    assert!(policy.validate(&low).unwrap().window_rules.is_empty());
    // A malformed window in the file is named with its line.
    let bad = rules.replace("Tue-Thu 22:00-02:00", "Tue-Thu 22-02");
    let error = pack_with(&bad).unwrap_err().to_string();
    assert!(error.contains("rules.toml:") && error.contains("HH:MM"), "{error}");
}
