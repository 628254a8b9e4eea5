//! The layers agree: one table of error kinds gives the same exit code locally and over
//! `--server`, and `POST /api/v1/targets` checks a target's settings exactly as `writ target add`
//! does (both go through the connector registry). The server runs in-process
//! (`writ_server::testkit::spawn_app`), composed exactly as `writ serve` composes it.

use std::process::Command;

use serde_json::json;
use writ_server::testkit::{TestApp, spawn_app};

use crate::harness::{Run, World};
use crate::server::{Api, roles, token};

struct Remote {
    app: TestApp,
    api: Api,
    alice: String,
    bob: String,
    root: String,
}

fn start(world: &World) -> Remote {
    world.writ(&["identity", "add", "root", "--kind", "human"]).ok();
    roles(world, "alice", &["requester", "approver"]);
    roles(world, "bob", &["approver"]);
    roles(world, "root", &["admin", "auditor"]);
    let (alice, bob, root) = (token(world, "alice"), token(world, "bob"), token(world, "root"));
    let app = spawn_app(&world.db, writ_server::ServeOptions::default()).unwrap();
    let api = Api::new(&app.base);
    Remote { app, api, alice, bob, root }
}

fn remote(remote: &Remote, token: &str, args: &[&str]) -> Run {
    let output = Command::new(env!("CARGO_BIN_EXE_writ"))
        .args(args)
        .env_remove("WRIT_DB")
        .env_remove("RUST_LOG")
        .env("WRIT_SERVER", &remote.app.base)
        .env("WRIT_TOKEN", token)
        .output()
        .unwrap();
    Run::from_output(output)
}

/// The code a failed run names on stderr (`error[CODE]: …`).
fn code_of(run: &Run) -> String {
    let rest = run.stderr.split("error[").nth(1).unwrap_or_else(|| panic!("no error code: {}", run.stderr));
    rest.split(']').next().unwrap().to_owned()
}

#[test]
fn a_refusal_exits_with_the_same_code_locally_and_over_a_server_one_code_of_each_kind() {
    let w = World::new();
    let r = start(&w);
    let pending = w.request("dave", "access:eng-read");
    let cancelled = w.request("dave", "access:deploy-prod");
    w.writ(&["change", "cancel", &cancelled, "--as", "alice", "--reason", "not needed"]).ok();
    let missing = "CHG-01ARZ3NDEKTSV4RRFFQ69G5FAV";
    // (expected code, the arguments, who runs them remotely)
    let cases: Vec<(&str, Vec<&str>, &str)> = vec![
        (
            "input.empty_justification",
            vec![
                "change",
                "request",
                "--as",
                "alice",
                "--identity",
                "dave",
                "--grant",
                "access:eng-read",
                "--justification",
                " ",
            ],
            &r.alice,
        ),
        ("sod.self_approval", vec!["change", "approve", &pending, "--as", "alice"], &r.alice),
        ("state.invalid_transition", vec!["change", "approve", &cancelled, "--as", "bob"], &r.bob),
        ("not_found", vec!["change", "show", missing], &r.root),
        (
            "identity.owner_required",
            vec!["identity", "add", "svc-y", "--kind", "service_account", "--as", "root"],
            &r.root,
        ),
        ("store.conflict", vec!["identity", "add", "alice", "--kind", "human", "--as", "root"], &r.root),
    ];
    let mut kinds = std::collections::BTreeSet::new();
    for (code, args, token) in &cases {
        let local = w.writ(args);
        let over = remote(&r, token, args);
        assert_eq!(code_of(&local), *code, "local {args:?}: {}", local.stderr);
        assert_eq!(code_of(&over), *code, "remote {args:?}: {}", over.stderr);
        let kind = writ_api::error::kind_of(code);
        assert_eq!(local.code, i32::from(kind.exit()), "local {args:?}: {}", local.stderr);
        assert_eq!(over.code, local.code, "remote {args:?} exits differently: {}", over.stderr);
        kinds.insert(format!("{kind:?}"));
    }
    assert_eq!(kinds.len(), cases.len(), "one code of each kind: {kinds:?}");
}

#[test]
fn the_api_checks_a_target_registration_like_the_cli() {
    let w = World::new();
    let r = start(&w);
    let not_a_repo = w.dir.path().join("not-a-repo");
    std::fs::create_dir(&not_a_repo).unwrap();
    let not_a_repo = not_a_repo.to_str().unwrap().to_owned();
    let repo = w.repo.to_str().unwrap().to_owned();
    // (expected code, CLI options after `target add NAME`, the API body's connector and settings)
    let cases = vec![
        ("input.missing_option", vec!["--connector", "git"], json!({ "connector": "git" })),
        ("input.invalid_value", vec!["--connector", "nosuch"], json!({ "connector": "nosuch" })),
        (
            "input.invalid_value",
            vec!["--connector", "git", "--repo", &repo, "--dsn", "host=db"],
            json!({ "connector": "git", "settings": { "repo": repo, "dsn": "host=db" } }),
        ),
        (
            "input.invalid_value",
            vec!["--connector", "postgres", "--dsn", "host=db", "--timeout", "9h"],
            json!({ "connector": "postgres", "settings": { "dsn": "host=db", "timeout": "9h" } }),
        ),
        (
            "input.invalid_value",
            vec!["--connector", "memory"],
            json!({ "connector": "memory", "settings": { "entitlements": "read" } }),
        ),
        (
            "target.invalid",
            vec!["--connector", "git", "--repo", &not_a_repo],
            json!({ "connector": "git", "settings": { "repo": not_a_repo } }),
        ),
        (
            "target.invalid",
            vec!["--connector", "git", "--repo", &repo, "--branch", "nope"],
            json!({ "connector": "git", "settings": { "repo": repo, "branch": "nope" } }),
        ),
    ];
    let before = w.writ(&["target", "list", "--json"]).ok();
    for (n, (code, options, body)) in cases.into_iter().enumerate() {
        let name = format!("t{n}");
        let mut args = vec!["target", "add", &name];
        args.extend(options.iter());
        let local = w.writ(&args);
        assert_eq!(code_of(&local), code, "CLI {args:?}: {}", local.stderr);
        let mut body = body;
        body["name"] = json!(name);
        let reply = r.api.post("/api/v1/targets", &r.root, body.clone());
        reply.refused(writ_api::error::kind_of(code).status(), code);
        assert_eq!(local.code, i32::from(writ_api::error::kind_of(code).exit()), "{}", local.stderr);
    }
    assert_eq!(w.writ(&["target", "list", "--json"]).ok(), before, "a refused registration changes nothing");
    // The same registration that the CLI accepts, the API accepts.
    let body = json!({ "name": "access2", "connector": "git", "settings": { "repo": repo } });
    r.api.post("/api/v1/targets", &r.root, body).expect(201);
}

/// Input the OpenAPI document calls invalid is refused with the documented status and a stable
/// code, and changes nothing: each case here is one Schemathesis once found accepted or refused
/// against the document.
#[test]
fn what_the_document_refuses_the_server_refuses_and_nothing_changes() {
    let w = World::new();
    let r = start(&w);
    w.writ(&["role", "grant", "root", "requester"]).ok();
    let pending = w.request("dave", "access:eng-read");
    let json = [("content-type", "application/json")];
    let binary = [("content-type", "application/octet-stream")];
    let approve = format!("/api/v1/changes/{pending}/approve");
    let evidence = format!("/api/v1/changes/{pending}/evidence?step=request&name=log");
    let past = json!({
        "control": "secret.long_lived", "subject": "dave", "owner": "bob", "justification": "j",
        "compensating_control": "c", "until": "2001-01-01T00:00:00Z",
    });
    // (method, path, headers, body, status, code)
    type Case<'a> = (&'a str, String, &'a [(&'a str, &'a str)], Vec<u8>, u16, &'a str);
    let cases: Vec<Case> = vec![
        ("POST", approve.clone(), &json, b"[null, null]".to_vec(), 400, "request.malformed_json"),
        ("POST", approve.clone(), &json, b"\"x\"".to_vec(), 400, "request.malformed_json"),
        ("POST", evidence, &binary, Vec::new(), 400, "input.invalid_value"),
        ("GET", "/api/v1/identities?after=".into(), &[], Vec::new(), 400, "input.invalid_name"),
        ("GET", "/api/v1/intake?limit=1001".into(), &[], Vec::new(), 400, "input.page_limit"),
        ("GET", "/api/v1/intake?limit=0".into(), &[], Vec::new(), 400, "input.page_limit"),
        (
            "POST",
            "/api/v1/exceptions".into(),
            &json,
            serde_json::to_vec(&past).unwrap(),
            422,
            "input.too_early",
        ),
    ];
    for (method, path, headers, body, status, code) in cases {
        let before = w.fingerprint_except(&["leases"]);
        let reply = r.api.send(method, &path, Some(&r.root), headers, Some(body));
        assert_eq!((reply.status, reply.code()), (status, code), "{method} {path}: {}", reply.text);
        assert_eq!(w.fingerprint_except(&["leases"]), before, "{method} {path} changed something");
    }
    // The document states what the server checks for each of these.
    let document = r.api.get("/api/v1/openapi.json", &r.root).expect(200).clone();
    let schemas = &document["components"]["schemas"];
    let connectors: Vec<&str> = schemas["NewTarget"]["oneOf"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|b| b["properties"]["connector"]["const"].as_str())
        .collect();
    assert_eq!(connectors, ["git", "postgres", "ldap", "openbao"]);
    let evidence_body = &document["paths"]["/api/v1/changes/{id}/evidence"]["post"]["requestBody"];
    assert_eq!(evidence_body["content"]["application/octet-stream"]["schema"]["minLength"], 1);
    assert!(schemas["NewChange"]["allOf"].is_array() && schemas["NewException"]["allOf"].is_array());
}
