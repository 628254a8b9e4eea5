//! The OpenBao connector end to end: a real `bao server -dev` issuing dynamic PostgreSQL logins
//! on the test cluster (which checks passwords for every role but the test superuser). A grant
//! delivers working credentials to the workload's KV path with the change ID; a revoke (or the
//! grant's expiry) makes PostgreSQL refuse them; a lease revoked behind Writ's back fails
//! verification; and the password never appears in Writ's files or output.

use serde_json::{Value, json};

use crate::harness::{Run, World};
use crate::server::{login, postgres, postgres_database, service};

struct Bao {
    addr: String,
    token_file: String,
    token: String,
    agent: ureq::Agent,
}

impl Bao {
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let url = format!("{}/v1/{path}", self.addr);
        let response = match method {
            "GET" => self.agent.get(&url).header("X-Vault-Token", &self.token).call(),
            _ => self
                .agent
                .post(&url)
                .header("X-Vault-Token", &self.token)
                .send_json(body.unwrap_or(json!({}))),
        };
        let mut response = response.unwrap();
        let status = response.status().as_u16();
        (status, response.body_mut().read_json().unwrap_or(json!({})))
    }
}

/// OpenBao with a database mount `db_P` whose role `P-read` creates a PostgreSQL login in
/// database `writ_P` that is a member of group role `P_read`.
fn setup(p: &str) -> Option<(Bao, String)> {
    let config = postgres()?;
    let addr = service("WRIT_TEST_OPENBAO_ADDR", "OpenBao")?;
    let token_file = service("WRIT_TEST_OPENBAO_TOKEN_FILE", "OpenBao")?;
    let token = std::fs::read_to_string(&token_file).unwrap();
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let bao = Bao { addr, token_file, token, agent };
    postgres_database(&config, &format!("writ_{p}"));
    let mut admin = postgres::Client::connect(&format!("{config} dbname=postgres"), postgres::NoTls).unwrap();
    admin.batch_execute(&format!("DROP ROLE IF EXISTS {p}_read; CREATE ROLE {p}_read NOLOGIN")).unwrap();
    let port = config.split_whitespace().find_map(|kv| kv.strip_prefix("port=")).unwrap().to_owned();
    let mount = format!("db_{p}");
    let (status, _) = bao.call("POST", &format!("sys/mounts/{mount}"), Some(json!({ "type": "database" })));
    assert!(status == 204 || status == 400, "mount: {status}");
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
fn delivered(bao: &Bao, identity: &str, role: &str) -> Option<(String, String, Value)> {
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
    let added = run(
        &w,
        &mut out,
        &[
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
            "db_bxa",
            "--json",
        ],
    );
    assert_eq!(added.json()["entitlements"], json!(["bxa-read"]));
    for app in ["bxa_app", "bxa_job", "bxa_tmp"] {
        run(&w, &mut out, &["identity", "add", app, "--kind", "service_account", "--owner", "alice"]).ok();
    }
    let grant = |out: &mut String, who: &str, extra: &[&str]| {
        let mut args =
            vec!["change", "request", "--as", "alice", "--identity", who, "--grant", "vault:bxa-read"];
        args.extend_from_slice(extra);
        args.extend(["--justification", "the app reads reports", "--json"]);
        let id = run(&w, out, &args).json()["id"].as_str().unwrap().to_owned();
        run(&w, out, &["change", "approve", &id, "--as", "bob"]).ok();
        run(&w, out, &["change", "execute", &id]).ok();
        id
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
    for secret in [&password, &tmp_password, &bao.token] {
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
