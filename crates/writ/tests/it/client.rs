//! The CLI as a client of `writ serve`: the same commands with WRIT_SERVER and WRIT_TOKEN print
//! what they print on the local database, and the acting identity is always the token's.

use std::process::Command;

use crate::api::Http;
use crate::harness::{Run, World};
use crate::server::roles;

pub(crate) fn remote(http: &Http, token: &str, args: &[&str]) -> Run {
    let output = Command::new(env!("CARGO_BIN_EXE_writ"))
        .args(args)
        .env_remove("WRIT_DB")
        .env_remove("RUST_LOG")
        .env("WRIT_SERVER", &http.server.base)
        .env("WRIT_TOKEN", token)
        .output()
        .unwrap();
    Run::from_output(output)
}

#[test]
fn cli_commands_over_a_server_print_what_they_print_locally() {
    let http = Http::start(World::new());
    let request = [
        "change",
        "request",
        "--as",
        "alice",
        "--identity",
        "dave",
        "--grant",
        "access:eng-read",
        "--justification",
        "on call",
        "--ticket",
        "JIRA-12",
        "--json",
    ];
    let created = remote(&http, &http.alice, &request).json();
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["state"], "pending_approval");
    assert_eq!(
        remote(&http, &http.bob, &["change", "approve", &id, "--as", "bob"]).ok(),
        format!("{id} approved")
    );
    assert_eq!(remote(&http, &http.executor, &["change", "execute", &id]).ok(), format!("{id} implemented"));
    assert_eq!(remote(&http, &http.executor, &["change", "verify", &id]).ok(), format!("{id} verified"));
    let file = http.world.dir.path().join("approval.pdf");
    std::fs::write(&file, b"%PDF signed approval").unwrap();
    let attach = [
        "evidence",
        "add",
        &id,
        file.to_str().unwrap(),
        "--step",
        "review",
        "--as",
        "carol",
        "--media-type",
        "application/pdf",
    ];
    let attached = remote(&http, &http.carol, &attach).ok();
    assert!(attached.starts_with("attached sha256:"), "{attached}");
    let digest = attached.split_whitespace().nth(1).unwrap().trim_start_matches("sha256:").to_owned();
    // Evidence goes to an open change: the reviewer attaches it, then reviews.
    let reviewed =
        remote(&http, &http.carol, &["change", "review", &id, "--as", "carol", "--notes", "ok", "--json"]);
    assert_eq!(reviewed.json()["state"], "reviewed");
    let fetched = http.world.dir.path().join("fetched.pdf");
    remote(&http, &http.root, &["evidence", "get", &digest, "--out", fetched.to_str().unwrap()]).ok();
    assert_eq!(std::fs::read(&fetched).unwrap(), b"%PDF signed approval");
    http.settle();
    // An auditor bundle fetched through the server verifies offline like a local one.
    let remote_dir = http.world.dir.path().join("bundle-remote");
    let local_dir = http.world.dir.path().join("bundle-local");
    let fetched_bundle = remote(
        &http,
        &http.root,
        &["audit", "bundle", "--change", &id, "--out", remote_dir.to_str().unwrap()],
    );
    assert!(fetched_bundle.ok().starts_with(&format!("wrote {}", remote_dir.display())));
    http.world.writ(&["audit", "bundle", "--change", &id, "--out", local_dir.to_str().unwrap()]).ok();
    assert_eq!(
        std::fs::read(remote_dir.join("manifest.json")).unwrap(),
        std::fs::read(local_dir.join("manifest.json")).unwrap(),
        "the same bundle either way"
    );
    let verified = http.world.writ(&["audit", "verify", remote_dir.to_str().unwrap(), "--json"]).json();
    assert_eq!(verified["ok"], true, "{verified}");
    for args in [
        vec!["change", "show", id.as_str()],
        vec!["change", "show", id.as_str(), "--json"],
        vec!["change", "list"],
        vec!["change", "list", "--json"],
        vec!["identity", "list"],
        vec!["identity", "list", "--json"],
        vec!["identity", "show", "dave"],
        vec!["identity", "show", "dave", "--json"],
        vec!["evidence", "list", id.as_str()],
        vec!["role", "list", "--json"],
        vec!["token", "list"],
        vec!["ledger", "verify", "--json"],
    ] {
        let local = http.world.writ(&args).ok();
        let over_http = remote(&http, &http.root, &args).ok();
        assert_eq!(over_http, local, "writ {args:?} differs over the server");
    }
}

#[test]
fn over_a_server_the_actor_is_the_token_and_refusals_keep_their_codes() {
    let http = Http::start(World::new());
    roles(&http.world, "bob", &["requester"]);
    let id = http.request("bob", "deploy-prod");
    // alice's token cannot act as bob.
    let impostor = remote(&http, &http.alice, &["change", "cancel", &id, "--as", "bob", "--reason", "x"]);
    assert_eq!(impostor.code, 2, "{}", impostor.stderr);
    assert!(impostor.stderr.contains("input.actor_mismatch"), "{}", impostor.stderr);
    // bob approving a change for himself: the server's SoD refusal, with the local exit code.
    let own = remote(&http, &http.bob, &["change", "approve", &id, "--as", "bob"]);
    assert_eq!(own.code, 3, "{}", own.stderr);
    assert!(own.stderr.contains("sod.self_approval"), "{}", own.stderr);
    // No token: refused before anything is sent.
    let output = Command::new(env!("CARGO_BIN_EXE_writ"))
        .args(["change", "list"])
        .env("WRIT_SERVER", &http.server.base)
        .env_remove("WRIT_TOKEN")
        .env_remove("WRIT_DB")
        .output()
        .unwrap();
    let bare = Run::from_output(output);
    assert_eq!(bare.code, 2);
    assert!(bare.stderr.contains("auth.missing_token"), "{}", bare.stderr);
    let revoked = remote(
        &http,
        "writ_0123456789abcdef_0000000000000000000000000000000000000000000000000000000000000000",
        &["change", "list"],
    );
    assert_eq!(revoked.code, 3, "{}", revoked.stderr);
    assert!(revoked.stderr.contains("auth.invalid_token"), "{}", revoked.stderr);
    // Commands that need the database itself say so.
    let init = remote(&http, &http.root, &["init"]);
    assert!(init.stderr.contains("input.not_remote"), "{}", init.stderr);
}
