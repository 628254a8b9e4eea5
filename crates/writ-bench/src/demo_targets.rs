//! `writ-bench demo --targets all`: the same chain on real servers — a PostgreSQL cluster, slapd and
//! OpenBao — that `scripts/demo.sh --targets all` starts on temporary directories and names in
//! the environment. This module prepares what the demo needs on them (a database with a group
//! role and a login, a directory subtree with a group, an OpenBao database mount issuing logins
//! on that cluster), registers them as targets, and walks a joiner across all three, a
//! credential rotation for a service account, and a proven leaver.

use std::collections::HashSet;

use anyhow::{Context, bail};
use ldap3::{LdapConn, Scope, SearchEntry};
use serde_json::json;
use writ_core::change::{BusinessEvent, ExternalRef, Justification, OpAction, RefKind};
use writ_core::identity::{Actor, ConnectorKind, IdentityKind, SystemActor};
use writ_core::name::{IdentityName, TargetName};
use writ_engine::Engine;
use writ_ledger::checkpoint::NoteSigner;

use crate::story::{complete, heading, name_of, print_trail, request, run_to_review};

/// A target's settings.
type Settings = Vec<(String, String)>;

/// An LDAP entry's attributes.
type Attributes<'a> = Vec<(&'a str, HashSet<String>)>;

/// Where the servers are, from the environment `scripts/demo.sh --targets all` sets.
struct Servers {
    postgres: String,
    ldap_url: String,
    ldap_bind_dn: String,
    ldap_password_file: String,
    openbao_addr: String,
    openbao_token_file: String,
}

impl Servers {
    fn from_env() -> anyhow::Result<Servers> {
        let var = |name: &str| {
            std::env::var(name).with_context(|| {
                format!("{name} is not set: run `bash scripts/demo.sh --targets all`, which starts PostgreSQL, slapd and OpenBao and sets it")
            })
        };
        Ok(Servers {
            postgres: var("WRIT_DEMO_POSTGRES")?,
            ldap_url: var("WRIT_DEMO_LDAP_URL")?,
            ldap_bind_dn: var("WRIT_DEMO_LDAP_BIND_DN")?,
            ldap_password_file: var("WRIT_DEMO_LDAP_PASSWORD_FILE")?,
            openbao_addr: var("WRIT_DEMO_OPENBAO_ADDR")?,
            openbao_token_file: var("WRIT_DEMO_OPENBAO_TOKEN_FILE")?,
        })
    }
}

pub fn run(engine: &Engine, signer: &NoteSigner) -> anyhow::Result<()> {
    let servers = Servers::from_env()?;
    heading("Real targets: PostgreSQL, OpenLDAP (slapd) and OpenBao");
    let dsn = prepare_postgres(&servers.postgres)?;
    let (groups, people) = prepare_directory(&servers)?;
    prepare_openbao(&servers)?;
    let admin = Actor::System(SystemActor::Admin);
    engine.add_identity(admin.clone(), name_of("erin")?, IdentityKind::Human, None, None)?;
    engine.add_identity(
        admin.clone(),
        name_of("svc-payments")?,
        IdentityKind::ServiceAccount,
        Some(&name_of("alice")?),
        None,
    )?;
    println!("  identity  erin         human (new analyst)");
    println!("  identity  svc-payments service_account, owned by alice");
    let targets: [(&str, ConnectorKind, Settings); 3] = [
        (
            "db",
            ConnectorKind::parse("postgres")?,
            vec![("dsn".into(), dsn), ("roles".into(), "analytics_read,login".into())],
        ),
        (
            "directory",
            ConnectorKind::parse("ldap")?,
            vec![
                ("url".into(), servers.ldap_url.clone()),
                ("bind_dn".into(), servers.ldap_bind_dn.clone()),
                ("password_file".into(), servers.ldap_password_file.clone()),
                ("groups".into(), groups),
                ("users".into(), people),
            ],
        ),
        (
            "vault",
            ConnectorKind::parse("openbao")?,
            vec![
                ("addr".into(), servers.openbao_addr.clone()),
                ("token_file".into(), servers.openbao_token_file.clone()),
                ("database_mount".into(), "demo_db".into()),
            ],
        ),
    ];
    for (name, kind, settings) in targets {
        let target = TargetName::parse(name)?;
        engine.add_target(admin.clone(), target.clone(), kind.clone(), settings)?;
        let entitlements: Vec<String> =
            engine.entitlements(&target)?.iter().map(ToString::to_string).collect();
        println!("  target    {name:<9} {} with {}", kind.as_str(), entitlements.join(", "));
    }

    heading("5. Joiner on real systems: erin gets a database login, a role and a directory group");
    let joiner = request(
        engine,
        "erin",
        &[
            (OpAction::Grant, "db:login"),
            (OpAction::Grant, "db:analytics_read"),
            (OpAction::Grant, "directory:analysts"),
        ],
        BusinessEvent::Joiner,
        "HR-2001",
        "new analyst on the risk team",
    )?;
    complete(engine, signer, &joiner)?;

    heading("6. A service account's database credentials, issued by OpenBao, then rotated");
    let issue = request(
        engine,
        "svc-payments",
        &[(OpAction::Grant, "vault:payments-read")],
        BusinessEvent::Deploy,
        "CHG-PAY-12",
        "payments service reads the analytics schema",
    )?;
    complete(engine, signer, &issue)?;
    let rotate = request(
        engine,
        "svc-payments",
        &[(OpAction::Rotate, "vault:payments-read")],
        BusinessEvent::Adhoc,
        "SEC-88",
        "quarterly credential rotation",
    )?;
    complete(engine, signer, &rotate)?;
    println!(
        "  verified: the current credential is the rotation's, and OpenBao reports the old lease revoked"
    );

    heading("7. Leaver, proven: what every target shows erin holding is revoked and observed gone");
    let leaver = engine.offboard(
        name_of("alice")?,
        &IdentityName::parse("erin")?,
        Justification::parse("last working day")?,
        vec![ExternalRef::new(RefKind::Ticket, "HR-2002")?],
        writ_engine::random_bits()?,
    )?;
    let Some(leaver) = leaver.change else {
        bail!("erin holds access on the targets, yet offboarding opened no change; this is a bug");
    };
    println!("  erin is offboarded: her tokens are revoked and she can no longer act in Writ");
    println!("  requested {} by alice (leaver, ticket HR-2002)", leaver.change.id);
    engine.approve(&leaver.change.id, &name_of("bob")?, None, None)?;
    run_to_review(engine, &leaver.change.id)?;
    print_trail(engine, signer, &leaver.change.id)?;
    let left = engine.observed_holdings(&name_of("erin")?)?;
    if !left.is_empty() {
        bail!("erin still holds {left:?} after a verified leaver change; this is a bug");
    }
    println!("  erin holds nothing on any target (observed on each server)");
    Ok(())
}

/// A fresh database `writ_demo` with group role `analytics_read` and a login for `erin`'s
/// group to be granted to; returns the target's DSN.
fn prepare_postgres(config: &str) -> anyhow::Result<String> {
    let mut admin = postgres::Client::connect(&format!("{config} dbname=postgres"), postgres::NoTls)
        .context("connecting to the demo PostgreSQL")?;
    // One statement per call: DROP/CREATE DATABASE cannot run inside a transaction block.
    for statement in [
        "DROP DATABASE IF EXISTS writ_demo WITH (FORCE)",
        "CREATE DATABASE writ_demo",
        "DROP ROLE IF EXISTS erin",
        "DROP ROLE IF EXISTS analytics_read",
        "CREATE ROLE analytics_read NOLOGIN",
    ] {
        admin.batch_execute(statement)?;
    }
    println!("  postgres  database writ_demo, group role analytics_read");
    Ok(format!("{config} dbname=writ_demo"))
}

/// `ou=demo` with `ou=people` (uid=erin) and `ou=groups` (cn=analysts, holding only the
/// placeholder the schema needs); returns the groups and people base DNs.
fn prepare_directory(servers: &Servers) -> anyhow::Result<(String, String)> {
    let password = std::fs::read_to_string(&servers.ldap_password_file)?;
    let mut conn = LdapConn::new(&servers.ldap_url)?;
    conn.simple_bind(&servers.ldap_bind_dn, password.trim())?.success()?;
    let suffix = servers.ldap_bind_dn.split_once(',').map(|(_, s)| s.to_owned()).unwrap_or_default();
    let base = format!("ou=demo,{suffix}");
    if let Ok((found, _)) = conn.search(&base, Scope::Subtree, "(objectClass=*)", vec!["1.1"])?.success() {
        let mut dns: Vec<String> = found.into_iter().map(|e| SearchEntry::construct(e).dn).collect();
        dns.sort_by_key(|dn| std::cmp::Reverse(dn.len()));
        for dn in dns {
            conn.delete(&dn)?.success()?;
        }
    }
    let set = |values: &[&str]| values.iter().map(|v| (*v).to_owned()).collect::<HashSet<String>>();
    let entries: [(String, Attributes); 5] = [
        (base.clone(), vec![("objectClass", set(&["organizationalUnit"])), ("ou", set(&["demo"]))]),
        (
            format!("ou=people,{base}"),
            vec![("objectClass", set(&["organizationalUnit"])), ("ou", set(&["people"]))],
        ),
        (
            format!("ou=groups,{base}"),
            vec![("objectClass", set(&["organizationalUnit"])), ("ou", set(&["groups"]))],
        ),
        (
            format!("uid=erin,ou=people,{base}"),
            vec![
                ("objectClass", set(&["inetOrgPerson"])),
                ("uid", set(&["erin"])),
                ("cn", set(&["Erin"])),
                ("sn", set(&["Analyst"])),
            ],
        ),
        (
            format!("cn=analysts,ou=groups,{base}"),
            vec![
                ("objectClass", set(&["groupOfNames"])),
                ("cn", set(&["analysts"])),
                ("member", set(&["cn=empty-membership"])),
            ],
        ),
    ];
    for (dn, attrs) in entries {
        let attrs: Vec<(String, HashSet<String>)> =
            attrs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        conn.add(&dn, attrs)?.success()?;
    }
    println!("  ldap      {base}: uid=erin, group analysts");
    Ok((format!("ou=groups,{base}"), format!("ou=people,{base}")))
}

/// A database secrets engine at `demo_db` on the demo cluster, with role `payments-read` that
/// creates a login in group role `analytics_read` for the lease's lifetime.
fn prepare_openbao(servers: &Servers) -> anyhow::Result<()> {
    let token = std::fs::read_to_string(&servers.openbao_token_file)?;
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let call = |method: &str, path: &str, body: serde_json::Value| -> anyhow::Result<u16> {
        let url = format!("{}/v1/{path}", servers.openbao_addr);
        let request = if method == "DELETE" {
            agent.delete(&url).header("X-Vault-Token", token.trim()).call()
        } else {
            agent.post(&url).header("X-Vault-Token", token.trim()).send_json(body)
        };
        Ok(request?.status().as_u16())
    };
    let port = servers
        .postgres
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix("port="))
        .context("WRIT_DEMO_POSTGRES has no port=")?;
    call("DELETE", "sys/mounts/demo_db", json!({}))?;
    let steps = [
        ("sys/mounts/demo_db", json!({ "type": "database" })),
        (
            "demo_db/config/pg",
            json!({
                "plugin_name": "postgresql-database-plugin",
                "connection_url": format!("postgresql://{{{{username}}}}:{{{{password}}}}@127.0.0.1:{port}/writ_demo?sslmode=disable"),
                "username": "writ",
                "password": "trusted-on-loopback",
                "allowed_roles": "*",
            }),
        ),
        (
            "demo_db/roles/payments-read",
            json!({
                "db_name": "pg",
                "creation_statements": ["CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'; GRANT analytics_read TO \"{{name}}\";"],
                "default_ttl": "1h",
                "max_ttl": "24h",
            }),
        ),
    ];
    for (path, body) in steps {
        let status = call("POST", path, body)?;
        if !(200..300).contains(&status) {
            bail!("OpenBao refused {path}: HTTP {status}");
        }
    }
    println!("  openbao   database engine demo_db, role payments-read (logins in analytics_read)");
    Ok(())
}
