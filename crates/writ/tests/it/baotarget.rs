//! The OpenBao connector end to end: a real `bao server -dev` issuing dynamic PostgreSQL logins
//! on the test cluster (which checks passwords for every role but the test superuser). A grant
//! delivers working credentials to the workload's KV path with the change ID; a revoke (or the
//! grant's expiry) makes PostgreSQL refuse them; a lease revoked behind Writ's back fails
//! verification; and the password never appears in Writ's files or output. Rotation: a static
//! role's password rotated through OpenBao is refused by PostgreSQL afterwards, a dynamic
//! credential's old lease dies, a workload token's old accessor is revoked, and every earlier
//! KV version is destroyed. Certificates: issued through the PKI engine, the rotated one
//! refused by a relying party checking OpenBao's CRL (`openssl verify -crl_check`), and a
//! revocation that never reaches the CRL ends in a failed verification naming the serial.

use serde_json::{Value, json};

use crate::harness::{Run, World};
use crate::server::{login, postgres, postgres_database, service};

pub(crate) struct Bao {
    pub(crate) addr: String,
    pub(crate) token_file: String,
    pub(crate) token: String,
    pub(crate) agent: ureq::Agent,
}

impl Bao {
    /// Deletes every KV path under `dir` whose name starts with `prefix`, with all versions.
    fn forget(&self, dir: &str, prefix: &str) {
        let (_, listed) = self.call("GET", &format!("secret/metadata/{dir}?list=true"), None);
        for key in listed["data"]["keys"].as_array().cloned().unwrap_or_default() {
            let key = key.as_str().unwrap();
            if !key.starts_with(prefix) {
                continue;
            }
            if key.ends_with('/') {
                self.forget(&format!("{dir}{key}"), "");
            } else {
                self.call("DELETE", &format!("secret/metadata/{dir}{key}"), None);
            }
        }
    }

    pub(crate) fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.call_as(&self.token, method, path, body)
    }

    fn call_as(&self, token: &str, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let url = format!("{}/v1/{path}", self.addr);
        let response = match method {
            "GET" => self.agent.get(&url).header("X-Vault-Token", token).call(),
            "DELETE" => self.agent.delete(&url).header("X-Vault-Token", token).call(),
            _ => self.agent.post(&url).header("X-Vault-Token", token).send_json(body.unwrap_or(json!({}))),
        };
        let mut response = response.unwrap();
        let status = response.status().as_u16();
        (status, response.body_mut().read_json().unwrap_or(json!({})))
    }
}

/// A client for the test OpenBao, as its root.
fn bao() -> Option<Bao> {
    let addr = service("WRIT_TEST_OPENBAO_ADDR", "OpenBao")?;
    let token_file = service("WRIT_TEST_OPENBAO_TOKEN_FILE", "OpenBao")?;
    let token = std::fs::read_to_string(&token_file).unwrap();
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    Some(Bao { addr, token_file, token, agent })
}

/// OpenBao with a database mount `db_P` whose role `P-read` creates a PostgreSQL login in
/// database `writ_P` that is a member of group role `P_read`.
pub(crate) fn setup(p: &str) -> Option<(Bao, String)> {
    let config = postgres()?;
    let bao = bao()?;
    postgres_database(&config, &format!("writ_{p}"));
    let mut admin = postgres::Client::connect(&format!("{config} dbname=postgres"), postgres::NoTls).unwrap();
    admin.batch_execute(&format!("DROP ROLE IF EXISTS {p}_read; CREATE ROLE {p}_read NOLOGIN")).unwrap();
    let port = crate::server::port_of(&config);
    let mount = format!("db_{p}");
    // A fresh mount each run: static roles and leases of an earlier run go with the old one,
    // and so do the KV paths of this test's identities.
    bao.forget("writ/", &format!("{p}_"));
    let (status, _) = bao.call("DELETE", &format!("sys/mounts/{mount}"), None);
    assert_eq!(status, 204, "unmount");
    let (status, _) = bao.call("POST", &format!("sys/mounts/{mount}"), Some(json!({ "type": "database" })));
    assert_eq!(status, 204, "mount");
    let (status, body) = bao.call(
        "POST",
        &format!("{mount}/config/pg"),
        Some(json!({
            "plugin_name": "postgresql-database-plugin",
            "connection_url": format!("postgresql://{{{{username}}}}:{{{{password}}}}@127.0.0.1:{port}/writ_{p}?sslmode=disable"),
            "username": "writ",
            "password": "the-test-superuser-is-trusted",
            "allowed_roles": "*",
        })),
    );
    assert!(status == 200 || status == 204, "config: {status} {body}");
    let (status, body) = bao.call(
        "POST",
        &format!("{mount}/roles/{p}-read"),
        Some(json!({
            "db_name": "pg",
            "creation_statements": [format!(
                "CREATE ROLE \"{{{{name}}}}\" WITH LOGIN PASSWORD '{{{{password}}}}' VALID UNTIL '{{{{expiration}}}}'; GRANT {p}_read TO \"{{{{name}}}}\";"
            )],
            "default_ttl": "1h",
            "max_ttl": "24h",
        })),
    );
    assert_eq!(status, 204, "role: {body}");
    Some((bao, config))
}

/// The credentials delivered to `identity` for `role`, and the path's custom metadata.
pub(crate) fn delivered(bao: &Bao, identity: &str, role: &str) -> Option<(String, String, Value)> {
    let (status, data) = bao.call("GET", &format!("secret/data/writ/{identity}/{role}"), None);
    if status == 404 {
        return None;
    }
    let (_, meta) = bao.call("GET", &format!("secret/metadata/writ/{identity}/{role}"), None);
    Some((
        data["data"]["data"]["username"].as_str().unwrap().to_owned(),
        data["data"]["data"]["password"].as_str().unwrap().to_owned(),
        meta["data"]["custom_metadata"].clone(),
    ))
}

fn run(w: &World, outputs: &mut String, args: &[&str]) -> Run {
    let run = w.writ(args);
    outputs.push_str(&run.stdout);
    outputs.push_str(&run.stderr);
    run
}

#[test]
fn openbao_dynamic_credentials_work_after_a_grant_and_are_refused_after_revoke_or_expiry() {
    let Some((bao, config)) = setup("bxa") else { return };
    let w = World::new();
    let mut out = String::new();
    let added = add_vault(&w, &mut out, &bao, "db_bxa", &[]);
    assert_eq!(added["entitlements"], json!(["bxa-read"]), "no policy is offered unless listed");
    for app in ["bxa_app", "bxa_job", "bxa_tmp"] {
        run(&w, &mut out, &["identity", "add", app, "--kind", "service_account", "--owner", "alice"]).ok();
    }
    let grant = |out: &mut String, who: &str, extra: &[&str]| {
        change(&w, out, "--grant", who, "vault:bxa-read", extra)
    };

    // Grant: working credentials on the workload's path, with the change ID beside them.
    let id = grant(&mut out, "bxa_app", &[]);
    assert_eq!(run(&w, &mut out, &["change", "verify", &id]).ok(), format!("{id} verified"));
    let (user, password, meta) = delivered(&bao, "bxa_app", "bxa-read").unwrap();
    assert_eq!(meta["writ_change"], id.as_str());
    assert_eq!(meta["executor"], "system:writ-engine");
    assert!(login(&config, "bxa", &user, &password), "the issued login works");
    assert!(!login(&config, "bxa", &user, "not-the-password"), "the cluster checks passwords");

    // Behind Writ's back: the lease is revoked directly; verification sees it gone.
    let job = grant(&mut out, "bxa_job", &[]);
    let lease = delivered(&bao, "bxa_job", "bxa-read").unwrap().2["lease_id"].as_str().unwrap().to_owned();
    assert_eq!(bao.call("POST", "sys/leases/revoke", Some(json!({ "lease_id": lease }))).0, 204);
    let verified = run(&w, &mut out, &["change", "verify", &job]);
    assert_eq!(verified.code, 7, "{}", verified.stderr);

    // Revoke: the login is refused and the path is gone.
    let revoke = run(
        &w,
        &mut out,
        &[
            "change",
            "request",
            "--as",
            "alice",
            "--identity",
            "bxa_app",
            "--revoke",
            "vault:bxa-read",
            "--justification",
            "app decommissioned",
            "--json",
        ],
    )
    .json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    run(&w, &mut out, &["change", "approve", &revoke, "--as", "bob"]).ok();
    run(&w, &mut out, &["change", "execute", &revoke]).ok();
    assert_eq!(run(&w, &mut out, &["change", "verify", &revoke]).ok(), format!("{revoke} verified"));
    assert!(!login(&config, "bxa", &user, &password), "the revoked login is refused by PostgreSQL");
    assert!(delivered(&bao, "bxa_app", "bxa-read").is_none());

    // Time-bound: the lease itself ends with the grant, and Writ's expiry change revokes it.
    let timed = grant(&mut out, "bxa_tmp", &["--for", "2s"]);
    let (tmp_user, tmp_password, tmp_meta) = delivered(&bao, "bxa_tmp", "bxa-read").unwrap();
    let (_, lease) = bao.call("POST", "sys/leases/lookup", Some(json!({ "lease_id": tmp_meta["lease_id"] })));
    assert!(lease["data"]["ttl"].as_i64().unwrap() <= 2, "the lease lasts as long as the grant: {lease}");
    assert!(login(&config, "bxa", &tmp_user, &tmp_password));
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let due = run(&w, &mut out, &["run-due", "--json"]).json();
    assert_eq!(
        run(&w, &mut out, &["change", "show", due["expiry_verified"][0].as_str().unwrap(), "--json"]).json()
            ["origin"],
        timed.as_str()
    );
    assert!(!login(&config, "bxa", &tmp_user, &tmp_password));

    // No secret in anything Writ wrote or printed: database, WAL, keys, outputs.
    run(&w, &mut out, &["change", "show", &id, "--json"]).ok();
    run(&w, &mut out, &["audit", "bundle", "--all", "--out", w.dir.path().join("bundle").to_str().unwrap()])
        .ok();
    assert_secrets_absent(&w, &out, &[&password, &tmp_password, &bao.token]);
}

/// None of `secrets` is in what the test printed or in any file under the world's directory
/// (database, WAL, keys, bundles).
fn assert_secrets_absent(w: &World, out: &str, secrets: &[&String]) {
    for secret in secrets {
        assert!(!out.contains(secret.as_str()), "a secret was printed");
        for entry in walk(w.dir.path()) {
            let bytes = std::fs::read(&entry).unwrap();
            let found = bytes.windows(secret.len()).any(|window| window == secret.as_bytes());
            assert!(!found, "a secret is in {}", entry.display());
        }
    }
}

/// Every file under `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() { files.extend(walk(&path)) } else { files.push(path) }
    }
    files
}

/// Requests, approves and executes a change by alice and bob; returns its ID.
fn change(w: &World, out: &mut String, flag: &str, who: &str, entitlement: &str, extra: &[&str]) -> String {
    let mut args = vec!["change", "request", "--as", "alice", "--identity", who, flag, entitlement];
    args.extend_from_slice(extra);
    args.extend(["--justification", "workload credentials", "--json"]);
    let id = run(w, out, &args).json()["id"].as_str().unwrap().to_owned();
    run(w, out, &["change", "approve", &id, "--as", "bob"]).ok();
    run(w, out, &["change", "execute", &id]).ok();
    id
}

pub(crate) fn add_vault(w: &World, out: &mut String, bao: &Bao, mount: &str, extra: &[&str]) -> Value {
    let mut args = vec![
        "target",
        "add",
        "vault",
        "--connector",
        "openbao",
        "--url",
        &bao.addr,
        "--token-file",
        &bao.token_file,
        "--database-mount",
        mount,
        "--json",
    ];
    args.extend_from_slice(extra);
    run(w, out, &args).json()
}

/// Which versions of a path exist and which are destroyed, and its current version.
fn versions(bao: &Bao, path: &str) -> (u64, Vec<(u64, bool)>) {
    let (_, meta) = bao.call("GET", &format!("secret/metadata/writ/{path}"), None);
    let mut all: Vec<(u64, bool)> = meta["data"]["versions"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(n, v)| (n.parse().unwrap(), v["destroyed"].as_bool().unwrap()))
        .collect();
    all.sort();
    (meta["data"]["current_version"].as_u64().unwrap(), all)
}

fn verify(w: &World, out: &mut String, id: &str) -> Run {
    run(w, out, &["change", "verify", id])
}

#[test]
fn a_static_login_rotated_through_openbao_is_refused_by_postgres_with_its_old_password() {
    let Some((bao, config)) = setup("bxb") else { return };
    let mut admin = postgres::Client::connect(&format!("{config} dbname=postgres"), postgres::NoTls).unwrap();
    admin
        .batch_execute("DROP ROLE IF EXISTS bxb_svc; CREATE ROLE bxb_svc LOGIN PASSWORD 'bxb-initial'")
        .unwrap();
    let (status, body) = bao.call(
        "POST",
        "db_bxb/static-roles/bxb-svc",
        Some(json!({ "db_name": "pg", "username": "bxb_svc", "rotation_period": "24h" })),
    );
    assert_eq!(status, 204, "static role: {body}");
    let w = World::new();
    let mut out = String::new();
    let added = add_vault(&w, &mut out, &bao, "db_bxb", &[]);
    assert_eq!(added["entitlements"], json!(["bxb-read", "static/bxb-svc"]));
    run(&w, &mut out, &["identity", "add", "bxb_app", "--kind", "service_account", "--owner", "alice"]).ok();

    // Grant: the current password is delivered and works.
    let grant = change(&w, &mut out, "--grant", "bxb_app", "vault:static/bxb-svc", &[]);
    assert_eq!(verify(&w, &mut out, &grant).ok(), format!("{grant} verified"));
    let (user, first, _) = delivered(&bao, "bxb_app", "static/bxb-svc").unwrap();
    assert_eq!(user, "bxb_svc");
    assert!(login(&config, "bxb", &user, &first), "the delivered static password does not log in");

    // Rotate: a new password on the database and as a new KV version tagged with the change;
    // the old password is refused by PostgreSQL and the old version is destroyed.
    let rotate = change(&w, &mut out, "--rotate", "bxb_app", "vault:static/bxb-svc", &[]);
    let shown = run(&w, &mut out, &["change", "show", &rotate, "--json"]).json();
    assert_eq!(shown["kind"], "rotate_secret");
    assert_eq!(verify(&w, &mut out, &rotate).ok(), format!("{rotate} verified"));
    let (_, second, meta) = delivered(&bao, "bxb_app", "static/bxb-svc").unwrap();
    assert_ne!(first, second);
    assert_eq!(meta["writ_change"], rotate.as_str());
    assert!(login(&config, "bxb", &user, &second), "the rotated password does not log in");
    assert!(!login(&config, "bxb", &user, &first), "PostgreSQL still accepts the password rotated away");
    let (current, all) = versions(&bao, "bxb_app/static/bxb-svc");
    assert_eq!(meta["writ_version"], current.to_string().as_str());
    assert!(all.iter().all(|(n, destroyed)| *n == current || *destroyed), "an old version survives: {all:?}");
    let (status, _) =
        bao.call("GET", &format!("secret/data/writ/bxb_app/static/bxb-svc?version={}", current - 1), None);
    assert_eq!(status, 404, "the old version is still readable");

    // Rolling the rotation back rolls forward: a new password, never the retired one.
    let undo = run(
        &w,
        &mut out,
        &["change", "rollback", &rotate, "--as", "alice", "--justification", "bad rollout", "--json"],
    )
    .json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let undone = run(&w, &mut out, &["change", "show", &undo, "--json"]).json();
    assert_eq!(
        (undone["kind"].as_str(), undone["operations"][0]["action"].as_str()),
        (Some("rotate_secret"), Some("rotate"))
    );
    run(&w, &mut out, &["change", "approve", &undo, "--as", "bob"]).ok();
    run(&w, &mut out, &["change", "execute", &undo]).ok();
    assert_eq!(verify(&w, &mut out, &undo).ok(), format!("{undo} verified"));
    let (_, forward, meta) = delivered(&bao, "bxb_app", "static/bxb-svc").unwrap();
    assert_eq!(meta["writ_change"], undo.as_str());
    assert!(forward != first && forward != second, "a rollback restored a retired password");
    assert!(login(&config, "bxb", &user, &forward), "the rolled-forward password does not log in");
    assert!(!login(&config, "bxb", &user, &second), "the password rolled back from still logs in");

    // OpenBao rotates on its own between Writ's apply and verify: the delivered password is
    // stale, and verification says so.
    let again = change(&w, &mut out, "--rotate", "bxb_app", "vault:static/bxb-svc", &[]);
    assert_eq!(bao.call("POST", "db_bxb/rotate-role/bxb-svc", None).0, 204);
    assert_eq!(verify(&w, &mut out, &again).code, 7, "a stale delivered password verified");

    // Someone writes a version of their own after a rotation: not the approved state either.
    let third = change(&w, &mut out, "--rotate", "bxb_app", "vault:static/bxb-svc", &[]);
    let (_, live, _) = delivered(&bao, "bxb_app", "static/bxb-svc").unwrap();
    let planted = json!({ "data": { "username": "bxb_svc", "password": live } });
    assert_eq!(bao.call("POST", "secret/data/writ/bxb_app/static/bxb-svc", Some(planted)).0, 200);
    assert_eq!(verify(&w, &mut out, &third).code, 7, "a version Writ did not write verified");

    // A rotation cannot be time-bound, and a target that holds memberships (git) cannot
    // rotate: both refused at request time, nothing recorded.
    let before = w.fingerprint();
    let words = |line: &str| line.split(' ').map(str::to_owned).collect::<Vec<_>>();
    let timed = words(
        "change request --as alice --identity bxb_app --rotate vault:bxb-read --for 1h --justification x",
    );
    let timed = run(&w, &mut out, &timed.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(timed.code, 2, "{}", timed.stderr);
    assert!(timed.stderr.contains("input.duration_on_revoke"), "{}", timed.stderr);
    let git = words("change request --as alice --identity dave --rotate access:eng-read --justification x");
    let git = run(&w, &mut out, &git.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(git.code, 6, "{}", git.stderr);
    assert!(git.stderr.contains("cannot be rotated"), "{}", git.stderr);
    assert_eq!(w.fingerprint(), before, "a refused rotation left a trace");

    // Revoke: OpenBao rotates the password away from the holder and the path is gone.
    let revoke = change(&w, &mut out, "--revoke", "bxb_app", "vault:static/bxb-svc", &[]);
    assert_eq!(verify(&w, &mut out, &revoke).ok(), format!("{revoke} verified"));
    assert!(!login(&config, "bxb", &user, &live), "the revoked holder's password still logs in");
    assert!(delivered(&bao, "bxb_app", "static/bxb-svc").is_none());

    assert_secrets_absent(&w, &out, &[&first, &second, &forward, &live, &bao.token]);
}

#[test]
fn dynamic_credentials_and_workload_tokens_rotate_with_the_old_ones_revoked() {
    let Some((bao, config)) = setup("bxc") else { return };
    let rules = r#"path "secret/data/bxc/*" { capabilities = ["read"] }"#;
    assert_eq!(bao.call("POST", "sys/policies/acl/bxc-agent", Some(json!({ "policy": rules }))).0, 204);
    let w = World::new();
    let mut out = String::new();
    let added = add_vault(&w, &mut out, &bao, "db_bxc", &["--policies", "bxc-agent"]);
    assert_eq!(added["entitlements"], json!(["bxc-read", "policy/bxc-agent"]));
    run(&w, &mut out, &["identity", "add", "bxc_app", "--kind", "service_account", "--owner", "alice"]).ok();
    run(&w, &mut out, &["identity", "add", "bxc_bot", "--kind", "ai_agent", "--owner", "alice"]).ok();

    // Dynamic credentials: a rotation issues a new login and revokes the old lease.
    change(&w, &mut out, "--grant", "bxc_app", "vault:bxc-read", &[]);
    let (old_user, old_password, old_meta) = delivered(&bao, "bxc_app", "bxc-read").unwrap();
    let rotate = change(&w, &mut out, "--rotate", "bxc_app", "vault:bxc-read", &[]);
    assert_eq!(verify(&w, &mut out, &rotate).ok(), format!("{rotate} verified"));
    let (new_user, new_password, new_meta) = delivered(&bao, "bxc_app", "bxc-read").unwrap();
    assert_ne!(old_meta["lease_id"], new_meta["lease_id"]);
    assert!(login(&config, "bxc", &new_user, &new_password), "the rotated login does not work");
    assert!(!login(&config, "bxc", &old_user, &old_password), "the login rotated away still works");

    // A token for an AI agent: scoped to the policy, bounded by the grant.
    let token_of = |bao: &Bao| -> (String, String) {
        let (_, data) = bao.call("GET", "secret/data/writ/bxc_bot/policy/bxc-agent", None);
        let data = &data["data"]["data"];
        (data["token"].as_str().unwrap().to_owned(), data["accessor"].as_str().unwrap().to_owned())
    };
    let grant = change(&w, &mut out, "--grant", "bxc_bot", "vault:policy/bxc-agent", &["--for", "1h"]);
    assert_eq!(verify(&w, &mut out, &grant).ok(), format!("{grant} verified"));
    let (token, accessor) = token_of(&bao);
    let (status, me) = bao.call_as(&token, "GET", "auth/token/lookup-self", None);
    assert_eq!(status, 200);
    assert!(
        me["data"]["policies"].as_array().unwrap().contains(&json!("bxc-agent")),
        "{}",
        me["data"]["policies"]
    );
    let ttl = me["data"]["ttl"].as_i64().unwrap();
    assert!((3500..=3600).contains(&ttl), "the token outlives the grant: ttl {ttl}");
    let (_, meta) = bao.call("GET", "secret/metadata/writ/bxc_bot/policy/bxc-agent", None);
    assert_eq!(meta["data"]["custom_metadata"]["accessor"], accessor.as_str());

    // Rotate: a new token; the old one is refused.
    let rotate = change(&w, &mut out, "--rotate", "bxc_bot", "vault:policy/bxc-agent", &[]);
    assert_eq!(verify(&w, &mut out, &rotate).ok(), format!("{rotate} verified"));
    let (new_token, new_accessor) = token_of(&bao);
    assert_ne!(accessor, new_accessor);
    let (_, me) = bao.call_as(&new_token, "GET", "auth/token/lookup-self", None);
    let ttl = me["data"]["ttl"].as_i64().unwrap();
    assert!(ttl <= 3600, "the rotated token outlives the grant it replaces: ttl {ttl}");
    assert_eq!(
        bao.call_as(&token, "GET", "auth/token/lookup-self", None).0,
        403,
        "the old token still works"
    );
    assert_eq!(bao.call_as(&new_token, "GET", "auth/token/lookup-self", None).0, 200);

    // Two rotations before either is verified: the earlier one no longer describes what is
    // there (the current token was issued by the later one), so only the later verifies.
    let earlier = change(&w, &mut out, "--rotate", "bxc_bot", "vault:policy/bxc-agent", &[]);
    let later = change(&w, &mut out, "--rotate", "bxc_bot", "vault:policy/bxc-agent", &[]);
    assert_eq!(verify(&w, &mut out, &earlier).code, 7, "a replaced rotation verified");
    assert_eq!(verify(&w, &mut out, &later).ok(), format!("{later} verified"));

    // Revoked behind Writ's back before verification: caught.
    let again = change(&w, &mut out, "--rotate", "bxc_bot", "vault:policy/bxc-agent", &[]);
    let (_, live_accessor) = token_of(&bao);
    assert_eq!(
        bao.call("POST", "auth/token/revoke-accessor", Some(json!({ "accessor": live_accessor }))).0,
        204
    );
    assert_eq!(verify(&w, &mut out, &again).code, 7);

    // Revoke by accessor: refused, path gone.
    let (last_token, _) = token_of(&bao);
    let revoke = change(&w, &mut out, "--revoke", "bxc_bot", "vault:policy/bxc-agent", &[]);
    assert_eq!(verify(&w, &mut out, &revoke).ok(), format!("{revoke} verified"));
    assert_eq!(bao.call_as(&last_token, "GET", "auth/token/lookup-self", None).0, 403);
    assert_eq!(bao.call("GET", "secret/data/writ/bxc_bot/policy/bxc-agent", None).0, 404);

    assert_secrets_absent(&w, &out, &[&old_password, &new_password, &token, &new_token, &bao.token]);
}

/// What `openssl verify -crl_check` says of `certificate` against OpenBao's CA and current
/// CRL: a relying party's view. `Ok(())` if accepted, else openssl's reason.
fn relying_party(bao: &Bao, mount: &str, certificate: &str) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let (_, ca) = bao.call("GET", &format!("{mount}/cert/ca"), None);
    let (_, crl) = bao.call("GET", &format!("{mount}/cert/crl"), None);
    for (name, pem) in [("ca.pem", &ca), ("crl.pem", &crl)] {
        std::fs::write(dir.path().join(name), pem["data"]["certificate"].as_str().unwrap()).unwrap();
    }
    std::fs::write(dir.path().join("leaf.pem"), certificate).unwrap();
    let output = std::process::Command::new("openssl")
        .current_dir(dir.path())
        .args(["verify", "-CAfile", "ca.pem", "-CRLfile", "crl.pem", "-crl_check", "leaf.pem"])
        .output()
        .expect("openssl (installed by the test command)");
    let said =
        format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    if output.status.success() { Ok(()) } else { Err(said) }
}

#[test]
fn a_rotated_certificate_is_refused_by_a_relying_party_and_an_unpublished_revocation_is_a_finding() {
    let Some(bao) = bao() else { return };
    let mount = "pki_bxd";
    assert_eq!(bao.call("DELETE", &format!("sys/mounts/{mount}"), None).0, 204);
    assert_eq!(bao.call("DELETE", "sys/mounts/db_bxd", None).0, 204);
    bao.forget("writ/", "bxd-");
    let pki = json!({ "type": "pki", "config": { "max_lease_ttl": "87600h" } });
    assert_eq!(bao.call("POST", &format!("sys/mounts/{mount}"), Some(pki)).0, 204);
    let (status, _) = bao.call(
        "POST",
        &format!("{mount}/root/generate/internal"),
        Some(json!({ "common_name": "bxd test CA", "ttl": "87600h" })),
    );
    assert_eq!(status, 200);
    let role = json!({
        "allowed_domains": "svc.writ.test", "allow_subdomains": true, "max_ttl": "72h",
        "key_type": "ec", "key_bits": 256,
    });
    assert_eq!(bao.call("POST", &format!("{mount}/roles/svc"), Some(role)).0, 200);
    let w = World::new();
    let mut out = String::new();
    let extra = ["--pki-mount", mount, "--pki-domain", "svc.writ.test"];
    let added = add_vault(&w, &mut out, &bao, "db_bxd", &extra);
    assert_eq!(added["entitlements"], json!(["pki/svc"]));
    run(&w, &mut out, &["identity", "add", "bxd-api", "--kind", "workload", "--owner", "alice"]).ok();
    let cert = |bao: &Bao| -> (String, String, String) {
        let (_, data) = bao.call("GET", "secret/data/writ/bxd-api/pki/svc", None);
        let data = &data["data"]["data"];
        let field = |name: &str| data[name].as_str().unwrap().to_owned();
        (field("certificate"), field("serial_number"), field("private_key"))
    };
    let subject_and_end = |pem: &str| -> String {
        let file = w.dir.path().join("probe.pem");
        std::fs::write(&file, pem).unwrap();
        let output = std::process::Command::new("openssl")
            .args(["x509", "-noout", "-subject", "-enddate", "-in", file.to_str().unwrap()])
            .output()
            .unwrap();
        String::from_utf8(output.stdout).unwrap()
    };

    // Grant for an hour: a certificate for the workload's name, valid for the grant, accepted.
    let grant = change(&w, &mut out, "--grant", "bxd-api", "vault:pki/svc", &["--for", "1h"]);
    assert_eq!(verify(&w, &mut out, &grant).ok(), format!("{grant} verified"));
    let (first, first_serial, first_key) = cert(&bao);
    let described = subject_and_end(&first);
    assert!(described.contains("CN = bxd-api.svc.writ.test"), "{described}");
    let (_, meta) = bao.call("GET", "secret/metadata/writ/bxd-api/pki/svc", None);
    assert_eq!(meta["data"]["custom_metadata"]["serial"], first_serial.as_str());
    assert_eq!(meta["data"]["custom_metadata"]["writ_change"], grant.as_str());
    relying_party(&bao, mount, &first).unwrap();

    // Rotate: a new certificate, still bounded by the grant; the old serial is on the CRL, so
    // a relying party refuses the old certificate and accepts the new one.
    let rotate = change(&w, &mut out, "--rotate", "bxd-api", "vault:pki/svc", &[]);
    assert_eq!(verify(&w, &mut out, &rotate).ok(), format!("{rotate} verified"));
    let (second, second_serial, second_key) = cert(&bao);
    assert_ne!(first_serial, second_serial);
    let said = relying_party(&bao, mount, &first).unwrap_err();
    assert!(said.contains("revoked"), "{said}");
    relying_party(&bao, mount, &second).unwrap();
    let (current, all) = versions(&bao, "bxd-api/pki/svc");
    assert!(all.iter().all(|(n, destroyed)| *n == current || *destroyed), "an old version survives: {all:?}");

    // The CRL stops being published: OpenBao records the next revocation but relying parties
    // never learn of it. The rotation applies, and verification fails naming the serial that
    // is still valid (the "old rotated certificate still valid" finding).
    let off = json!({ "disable": true });
    assert_eq!(bao.call("POST", &format!("{mount}/config/crl"), Some(off)).0, 200);
    let unpublished = change(&w, &mut out, "--rotate", "bxd-api", "vault:pki/svc", &[]);
    assert_eq!(verify(&w, &mut out, &unpublished).code, 7, "an unpublished revocation verified");
    relying_party(&bao, mount, &second).expect("the stale CRL still lets the old certificate through");
    let shown = run(&w, &mut out, &["change", "show", &unpublished, "--json"]).json();
    let failed =
        shown["events"].as_array().unwrap().iter().rfind(|e| e["type"] == "change.verification_failed");
    let digest = failed.unwrap()["evidence"][0]["sha256"].as_str().unwrap().to_owned();
    let observed: Value =
        serde_json::from_str(&run(&w, &mut out, &["evidence", "get", &digest]).ok()).unwrap();
    assert_eq!(observed["targets"]["vault"]["issued"][0]["still_valid"], json!([second_serial]));
    assert_eq!(observed["targets"]["vault"]["issued"][0]["change"], unpublished.as_str());

    // Publishing again (and rebuilding the CRL) ends the finding.
    let publish = |on: bool| {
        let config = json!({ "disable": !on });
        assert_eq!(bao.call("POST", &format!("{mount}/config/crl"), Some(config)).0, 200);
        assert_eq!(bao.call("GET", &format!("{mount}/crl/rotate"), None).0, 200);
    };
    publish(true);
    assert_eq!(verify(&w, &mut out, &unpublished).ok(), format!("{unpublished} verified"));
    let (third, ..) = cert(&bao);

    // A revoke while the CRL is off fails and keeps the path: the workload still holds a
    // certificate relying parties accept. Published again, the retried revoke applies.
    publish(false);
    let revoke_args = [
        "change",
        "request",
        "--as",
        "alice",
        "--identity",
        "bxd-api",
        "--revoke",
        "vault:pki/svc",
        "--justification",
        "workload retired",
        "--json",
    ];
    let revoke = run(&w, &mut out, &revoke_args).json()["id"].as_str().unwrap().to_owned();
    run(&w, &mut out, &["change", "approve", &revoke, "--as", "bob"]).ok();
    let failed = run(&w, &mut out, &["change", "execute", &revoke]);
    assert_ne!(failed.code, 0, "a revocation relying parties cannot see was reported done");
    assert!(failed.stderr.contains("absent from its CRL"), "{}", failed.stderr);
    assert_eq!(bao.call("GET", "secret/metadata/writ/bxd-api/pki/svc", None).0, 200, "the path went");
    relying_party(&bao, mount, &third).expect("accepted while the CRL is stale");
    publish(true);
    run(&w, &mut out, &["change", "execute", &revoke]).ok();
    assert_eq!(verify(&w, &mut out, &revoke).ok(), format!("{revoke} verified"));
    assert!(relying_party(&bao, mount, &third).unwrap_err().contains("revoked"));
    assert_eq!(bao.call("GET", "secret/metadata/writ/bxd-api/pki/svc", None).0, 404);

    assert_secrets_absent(&w, &out, &[&first_key, &second_key, &bao.token]);
}
