//! Unit tests: filters (parse, print, evaluate), PATCH, normalisation and list shaping.

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde_json::{Map, Value, json};

use crate::filter::{self, AttrPath, Filter, Op};
use crate::schema::{self, Kind};
use crate::{ENTERPRISE, ScimType, list, patch};

fn object(value: Value) -> Map<String, Value> {
    value.as_object().cloned().unwrap_or_default()
}

fn bjensen() -> Map<String, Value> {
    object(json!({
        "id": "2819c223",
        "userName": "bjensen@example.com",
        "name": {"familyName": "Jensen", "givenName": "Barbara"},
        "title": "Tour Guide",
        "active": true,
        "emails": [
            {"value": "bjensen@example.com", "type": "work", "primary": true},
            {"value": "babs@jensen.org", "type": "home"}
        ],
        "meta": {"lastModified": "2011-05-13T04:42:34Z", "resourceType": "User"},
        ENTERPRISE: {"department": "Tour Operations", "employeeNumber": "701984"}
    }))
}

fn hits(text: &str) -> bool {
    let parsed = filter::parse(text)
        .unwrap_or_else(|e| Filter::Present(AttrPath { uri: None, name: format!("ERR {e}"), sub: None }));
    filter::check(Kind::User, &parsed).is_ok() && filter::matches(Kind::User, &parsed, &bjensen())
}

#[test]
fn filters_from_the_rfc_match_as_specified() {
    // RFC 7644 §3.4.2.2 examples, against RFC 7643's bjensen.
    assert!(hits(r#"userName Eq "BJENSEN@example.com""#), "userName is not caseExact");
    assert!(!hits(r#"id eq "2819C223""#), "id is caseExact");
    assert!(hits(r#"name.familyName co "ens""#));
    assert!(hits(r#"userName sw "bj""#));
    assert!(hits(r#"title pr"#));
    assert!(!hits(r#"nickName pr"#));
    assert!(hits(r#"meta.lastModified gt "2011-05-13T04:42:00Z""#));
    assert!(!hits(r#"meta.lastModified lt "2011-05-13T04:42:00Z""#));
    assert!(hits(r#"title pr and userType eq "Employee" or active eq true"#), "and binds tighter than or");
    assert!(!hits(r#"title pr and (userType eq "Employee" or active eq false)"#));
    assert!(hits(r#"emails[type eq "work" and value co "@example.com"]"#));
    assert!(!hits(r#"emails[type eq "home" and value co "@example.com"]"#));
    assert!(hits(r#"not (userName eq "someone")"#));
    assert!(hits(
        r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department eq "tour operations""#
    ));
    assert!(hits(r#"urn:ietf:params:scim:schemas:core:2.0:User:userName ew ".COM""#));
    assert!(hits(r#"emails.type eq "home""#), "any value of a multi-valued attribute");
    assert!(hits(r#"userType ne "Employee""#), "ne holds for an absent attribute");
}

#[test]
fn bad_filters_are_invalid_filter_errors_that_say_where() {
    for bad in [
        "",
        "userName",
        "userName eq",
        r#"userName eq "unclosed"#,
        r#"userName zz "x""#,
        r#"(userName eq "x""#,
        r#"userName eq "x")"#,
        r#"not userName eq "x""#,
        r#"emails[type eq "work""#,
        r#"userName eq bjensen"#,
        r#"nosuch eq "x""#,
        r#"emails[nosuch eq "x"]"#,
        r#"name.familyName[givenName eq "x"]"#,
    ] {
        let error = filter::parse(bad).and_then(|f| filter::check(Kind::User, &f));
        let Err(error) = error else { panic!("{bad:?} was accepted") };
        assert_eq!((error.status, error.scim_type), (400, Some(ScimType::InvalidFilter)), "{bad:?}");
        assert!(!error.detail.is_empty());
    }
    let deep = format!("{}userName pr{}", "(".repeat(100), ")".repeat(100));
    assert!(filter::parse(&deep).is_err(), "nesting is bounded");
    assert!(filter::parse(&"a".repeat(5000)).is_err(), "length is bounded");
}

fn leaf() -> impl Strategy<Value = Filter> {
    let path = (
        prop::option::of(Just("urn:ietf:params:scim:schemas:core:2.0:User".to_owned())),
        "[a-zA-Z][a-zA-Z0-9_]{0,6}",
        prop::option::of("[a-z][a-zA-Z]{0,4}"),
    )
        .prop_map(|(uri, name, sub)| AttrPath { uri, name, sub });
    let op =
        prop::sample::select(vec![Op::Eq, Op::Ne, Op::Co, Op::Sw, Op::Ew, Op::Gt, Op::Ge, Op::Lt, Op::Le]);
    let value = prop_oneof![
        any::<String>().prop_map(Value::String),
        any::<bool>().prop_map(Value::Bool),
        any::<i32>().prop_map(|n| json!(n)),
        Just(Value::Null),
    ];
    prop_oneof![
        path.clone().prop_map(Filter::Present),
        (path, op, value).prop_map(|(p, o, v)| Filter::Compare(p, o, v)),
    ]
}

fn tree() -> impl Strategy<Value = Filter> {
    leaf().prop_recursive(4, 24, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Filter::And(Box::new(a), Box::new(b))),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Filter::Or(Box::new(a), Box::new(b))),
            inner.clone().prop_map(|a| Filter::Not(Box::new(a))),
            ("[a-z]{1,5}", inner).prop_map(|(name, a)| Filter::ValuePath(
                AttrPath { uri: None, name, sub: None },
                Box::new(a)
            )),
        ]
    })
}

proptest! {
    #[test]
    fn a_printed_filter_parses_back_to_itself(filter in tree()) {
        let printed = filter.to_string();
        let parsed = filter::parse(&printed);
        prop_assert_eq!(parsed.ok(), Some(filter), "{}", printed);
    }

    #[test]
    fn any_input_parses_or_fails_cleanly(input in ".{0,80}") {
        let _ = filter::parse(&input);
    }
}

fn patched(doc: Value, ops: Value) -> Result<Map<String, Value>, crate::ScimError> {
    let body = json!({"schemas": [crate::PATCH_OP], "Operations": ops});
    let ops = patch::parse(&body)?;
    patch::apply(Kind::User, &object(doc), &ops)
}

#[test]
fn patch_follows_the_rfc_and_what_idps_send() {
    let doc = json!({"userName": "bjensen", "active": true,
        "emails": [{"value": "a@x.org", "type": "work"}, {"value": "b@x.org", "type": "home"}]});
    // Entra: capitalised op, no path, "False" as a string, URN-qualified and dotted keys.
    let out = patched(
        doc.clone(),
        json!([{"op": "Replace", "value": {
        "active": "False",
        "name.givenName": "Barbara",
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department": "Finance"}}]),
    );
    let out = out.unwrap_or_default();
    assert_eq!(out.get("active"), Some(&json!(false)));
    assert_eq!(out.get("name"), Some(&json!({"givenName": "Barbara"})));
    assert_eq!(schema::enterprise(&out, "department"), Some("Finance"));
    // A value filter in the path, with a sub-attribute.
    let out = patched(
        doc.clone(),
        json!([{"op": "replace", "path": "emails[type eq \"work\"].value", "value": "c@x.org"}]),
    )
    .unwrap_or_default();
    assert_eq!(
        out.get("emails"),
        Some(&json!([{"value": "c@x.org", "type": "work"}, {"value": "b@x.org", "type": "home"}]))
    );
    // Remove one value by filter; adding a value already there is not an error.
    let out = patched(
        doc.clone(),
        json!([
        {"op": "remove", "path": "emails[value eq \"A@X.ORG\"]"},
        {"op": "add", "path": "emails", "value": [{"value": "b@x.org", "type": "home"}]}]),
    )
    .unwrap_or_default();
    assert_eq!(out.get("emails"), Some(&json!([{"value": "b@x.org", "type": "home"}])));
    // Entra sends a manager as its id.
    let out = patched(
        doc.clone(),
        json!([{"op": "add",
        "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager", "value": "m-1"}]),
    )
    .unwrap_or_default();
    assert_eq!(out.get(ENTERPRISE), Some(&json!({"manager": {"value": "m-1"}})));
    // Failures, each with its scimType; the operations before a failure are not kept.
    for (ops, scim_type) in [
        (json!([{"op": "remove"}]), ScimType::NoTarget),
        (
            json!([{"op": "replace", "path": "emails[type eq \"other\"].value", "value": "x"}]),
            ScimType::NoTarget,
        ),
        (json!([{"op": "replace", "path": "id", "value": "x"}]), ScimType::Mutability),
        (json!([{"op": "replace", "path": "nosuch", "value": "x"}]), ScimType::InvalidPath),
        (json!([{"op": "replace", "path": "emails[type eq", "value": "x"}]), ScimType::InvalidPath),
        (json!([{"op": "move", "path": "title", "value": "x"}]), ScimType::InvalidSyntax),
        (json!([{"op": "replace", "path": "active", "value": "maybe"}]), ScimType::InvalidValue),
        (json!([{"op": "remove", "path": "userName"}]), ScimType::InvalidValue),
    ] {
        let error = patched(doc.clone(), ops.clone()).err();
        assert_eq!(error.map(|e| e.scim_type), Some(Some(scim_type)), "{ops}");
    }
    let missing_schema = patch::parse(&json!({"Operations": [{"op": "remove", "path": "title"}]}));
    assert_eq!(missing_schema.err().and_then(|e| e.scim_type), Some(ScimType::InvalidSyntax));
}

#[test]
fn normalisation_keeps_known_writable_attributes_in_schema_case_and_never_a_password() {
    let out = schema::normalize(
        Kind::User,
        &json!({
        "USERNAME": "bjensen", "id": "mine", "password": "hunter2", "groups": [{"value": "g"}],
        "unknownThing": 1, "emails": {"value": "a@x.org"},
        "URN:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"Department": "Ops"}}),
    )
    .unwrap_or_default();
    assert_eq!(out.get("userName"), Some(&json!("bjensen")));
    assert_eq!(out.get("emails"), Some(&json!([{"value": "a@x.org"}])), "a single value becomes a list");
    assert_eq!(schema::enterprise(&out, "department"), Some("Ops"));
    for gone in ["id", "password", "groups", "unknownThing"] {
        assert!(!out.contains_key(gone), "{gone} kept");
    }
    let missing = schema::normalize(Kind::User, &json!({"displayName": "x"})).err();
    assert_eq!(missing.and_then(|e| e.scim_type), Some(ScimType::InvalidValue));
    let body = crate::ScimError::bad(ScimType::Uniqueness, "taken").body();
    assert_eq!(
        body,
        json!({"schemas": [crate::ERROR], "status": "400", "scimType": "uniqueness", "detail": "taken"})
    );
}

#[test]
fn lists_sort_paginate_and_project() {
    let people: Vec<Map<String, Value>> = ["carol", "Alice", "bob"]
        .iter()
        .map(|n| {
            object(json!({"id": n.to_lowercase(), "schemas": [crate::USER], "userName": n, "title": "x"}))
        })
        .collect();
    let params = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    };
    let ask = |pairs: &[(&str, &str)]| {
        let query = list::query(Kind::User, &params(pairs)).unwrap_or_default();
        list::respond(Kind::User, people.clone(), &query, 100)
    };
    let page =
        ask(&[("sortBy", "userName"), ("startIndex", "0"), ("count", "2"), ("attributes", "userName")]);
    assert_eq!(page["totalResults"], json!(3));
    assert_eq!(page["startIndex"], json!(1), "startIndex below 1 is 1");
    assert_eq!(
        page["Resources"],
        json!([
        {"id": "alice", "schemas": [crate::USER], "userName": "Alice"},
        {"id": "bob", "schemas": [crate::USER], "userName": "bob"}])
    );
    let last = ask(&[("sortBy", "userName"), ("sortOrder", "descending"), ("startIndex", "3")]);
    assert_eq!(last["Resources"][0]["userName"], json!("Alice"));
    let none = ask(&[("count", "0")]);
    assert_eq!(none["totalResults"], json!(3));
    assert_eq!(none["Resources"], json!([]), "count=0: no resource, only the total");
    let filtered = ask(&[("filter", "userName sw \"B\""), ("excludedAttributes", "title")]);
    assert_eq!(filtered["Resources"], json!([{"id": "bob", "schemas": [crate::USER], "userName": "bob"}]));
    assert!(list::query(Kind::User, &params(&[("filter", "userName eq")])).is_err());
    assert!(list::query(Kind::User, &params(&[("sortOrder", "up")])).is_err());
}
