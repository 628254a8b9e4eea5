//! The PostgreSQL target connector end to end on the server the test command starts: grants
//! land in the catalog with the change ID beside them, verification reads the catalog and
//! catches a change made behind Writ's back, revocation removes the membership, and a DSN with
//! a password is refused before anything is stored.

use crate::harness::{World, git};
use crate::server::{postgres, postgres_database};

/// A target database `writ_P` with group roles `P_read`, `P_write` and login role `P_dave` (roles
/// are cluster-wide, so each test has its own prefix and they are dropped and made again), and
/// its libpq DSN.
pub(crate) fn target(config: &str, p: &str) -> (postgres::Client, String) {
    postgres_database(config, &format!("writ_{p}"));
    let mut admin = postgres::Client::connect(&format!("{config} dbname=postgres"), postgres::NoTls).unwrap();
    admin
        .batch_execute(&format!(
            "DROP ROLE IF EXISTS {p}_read; DROP ROLE IF EXISTS {p}_write; DROP ROLE IF EXISTS {p}_dave;
             CREATE ROLE {p}_read NOLOGIN; CREATE ROLE {p}_write NOLOGIN; CREATE ROLE {p}_dave LOGIN;"
        ))
        .unwrap();
    let dsn = format!("{config} dbname=writ_{p}");
    (postgres::Client::connect(&dsn, postgres::NoTls).unwrap(), dsn)
}

/// Registers the database as target `pg`, managing `roles`.
fn add_target(w: &World, dsn: &str, roles: &str, extra: &[&str]) -> crate::harness::Run {
    let mut args = words("target add pg --connector postgres --roles");
    args.extend([roles, "--dsn", dsn]);
    args.extend_from_slice(extra);
    w.writ(&args)
}

/// The target database stops taking connections and its open ones are cut: the target is down.
fn take_down(admin: &mut postgres::Client, database: &str) {
    admin
        .batch_execute(&format!(
            "ALTER DATABASE {database} ALLOW_CONNECTIONS false;
             SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{database}';"
        ))
        .unwrap();
}

fn words(line: &str) -> Vec<&str> {
    line.split(' ').collect()
}

pub(crate) fn member(client: &mut postgres::Client, who: &str, role: &str) -> bool {
    client.query_one("SELECT pg_has_role($1, $2, 'MEMBER')", &[&who, &role]).unwrap().get(0)
}

#[test]
fn postgres_grants_are_applied_observed_verified_and_revoked_on_the_server() {
    let Some(config) = postgres() else { return };
    let (mut pg, dsn) = target(&config, "pga");
    let w = World::new();
    let added = add_target(&w, &dsn, "pga_read,pga_write", &["--json"]);
    assert_eq!(added.json()["entitlements"], serde_json::json!(["pga_read", "pga_write"]));
    w.writ(&["identity", "add", "pga_dave", "--kind", "human"]).ok();

    // Grant: the membership is in the catalog, with the change ID beside it on the target.
    let grant = w.request("pga_dave", "pg:pga_read");
    w.writ(&["change", "approve", &grant, "--as", "bob"]).ok();
    w.writ(&["change", "execute", &grant]).ok();
    assert!(member(&mut pg, "pga_dave", "pga_read"), "the grant is not in pg_auth_members");
    assert_eq!(w.writ(&["change", "verify", &grant]).ok(), format!("{grant} verified"));
    let row = pg
        .query_one(
            "SELECT action, role_name, member, changed, requester, approvers, executor FROM writ_audit.changes WHERE change_id = $1",
            &[&grant],
        )
        .unwrap();
    let recorded: (String, String, String, bool, String, String) =
        (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4), row.get(5));
    assert_eq!(
        recorded,
        ("grant".into(), "pga_read".into(), "pga_dave".into(), true, "alice".into(), "bob".into())
    );

    // A change behind Writ's back between apply and verify is caught by verification.
    let write = w.request("pga_dave", "pg:pga_write");
    w.writ(&["change", "approve", &write, "--as", "bob"]).ok();
    w.writ(&["change", "execute", &write]).ok();
    pg.batch_execute("REVOKE pga_write FROM pga_dave").unwrap();
    let verified = w.writ(&["change", "verify", &write]);
    assert_eq!(verified.code, 7, "{}", verified.stderr);
    assert!(verified.stderr.contains("change.verification_failed"), "{}", verified.stderr);
    let shown = w.writ(&["change", "show", &write, "--json"]).json();
    assert_eq!(shown["verification"]["matches_approved_state"], false);

    // Revoke: gone from the catalog, and verified as gone.
    let revoke = w.request_with(&[
        "--as",
        "alice",
        "--identity",
        "pga_dave",
        "--revoke",
        "pg:pga_read",
        "--justification",
        "project ended",
    ]);
    w.writ(&["change", "approve", &revoke, "--as", "bob"]).ok();
    w.writ(&["change", "execute", &revoke]).ok();
    assert!(!member(&mut pg, "pga_dave", "pga_read"), "the revoke left the membership");
    assert_eq!(w.writ(&["change", "verify", &revoke]).ok(), format!("{revoke} verified"));
    // The target's own trail: exactly the three operations that changed a membership.
    let before: i64 =
        pg.query_one("SELECT COUNT(*) FROM writ_audit.changes WHERE changed", &[]).unwrap().get(0);
    assert_eq!(before, 3, "grant, grant, revoke changed the target");
}

#[test]
fn postgres_targets_refuse_passwords_unknown_roles_and_members_without_a_login() {
    let Some(config) = postgres() else { return };
    let (mut pg, dsn) = target(&config, "pgb");
    let w = World::new();
    let before = w.fingerprint();
    let with_password = add_target(&w, &format!("{dsn} password=hunter2"), "pgb_read", &[]);
    assert_eq!(with_password.code, 6, "{}", with_password.stderr);
    assert!(with_password.stderr.contains("password_file"), "{}", with_password.stderr);
    assert!(!with_password.stderr.contains("hunter2"), "the password was echoed: {}", with_password.stderr);
    assert_eq!(w.fingerprint(), before, "a refused target left a trace");
    add_target(&w, &dsn, "pgb_read,pgb_write", &[]).ok();
    // A role Writ does not manage is not an entitlement.
    let unknown = w.writ(&words(
        "change request --as alice --identity dave --grant pg:pg_read_all_data --justification x",
    ));
    assert_eq!(unknown.code, 4, "{}", unknown.stderr);
    // dave has no login role on the target: the change fails, recorded, and nothing is granted.
    let id = w.request("dave", "pg:pgb_read");
    w.writ(&["change", "approve", &id, "--as", "bob"]).ok();
    let run = w.writ(&["change", "execute", &id]);
    assert_eq!(run.code, 7, "{}", run.stderr);
    assert!(run.stderr.contains("no login role"), "{}", run.stderr);
    let count: i64 = pg.query_one("SELECT COUNT(*) FROM pg_auth_members am JOIN pg_roles r ON r.oid = am.roleid WHERE r.rolname = 'pgb_read'", &[]).unwrap().get(0);
    assert_eq!(count, 0);
}

fn executions(w: &World, id: &str) -> Vec<serde_json::Value> {
    w.writ(&["change", "show", id, "--json"]).json()["executions"].as_array().unwrap().clone()
}

#[test]
fn a_change_across_git_and_postgres_fails_partway_and_a_retry_applies_only_what_is_missing() {
    let Some(config) = postgres() else { return };
    let (mut pg, dsn) = target(&config, "pgc");
    let mut admin = postgres::Client::connect(&format!("{config} dbname=postgres"), postgres::NoTls).unwrap();
    admin.batch_execute("DROP ROLE IF EXISTS pgc_erin").unwrap();
    let w = World::new();
    add_target(&w, &dsn, "pgc_read", &[]).ok();
    w.writ(&["identity", "add", "pgc_erin", "--kind", "human"]).ok();
    let id = w.request_with(&words(
        "--as alice --identity pgc_erin --grant access:eng-read --grant pg:pgc_read --justification onboarding",
    ));
    w.writ(&["change", "approve", &id, "--as", "bob"]).ok();
    // The git target ("access") applies first; the PostgreSQL target has no login role for erin.
    let first = w.writ(&["change", "execute", &id]);
    assert_eq!(first.code, 7, "{}", first.stderr);
    let shown = w.writ(&["change", "show", &id, "--json"]).json();
    assert_eq!(shown["state"], "failed");
    let ops = shown["operations"].as_array().unwrap();
    let on = |target: &str| ops.iter().find(|o| o["target"] == target).unwrap().clone();
    assert_eq!(on("access")["after"], "present", "the git grant was applied and recorded: {shown}");
    assert!(on("pg")["after"].is_null(), "the PostgreSQL grant is recorded as not applied: {shown}");
    let commits_before = git(&w.repo, &["log", "--format=%H", &format!("--grep=Writ-Change: {id}")]);
    assert_eq!(commits_before.lines().count(), 1);
    // Fix the target, retry: only the missing grant is applied; git gets no second commit.
    admin.batch_execute("CREATE ROLE pgc_erin LOGIN").unwrap();
    assert_eq!(w.writ(&["change", "execute", &id]).ok(), format!("{id} implemented"));
    assert!(member(&mut pg, "pgc_erin", "pgc_read"));
    assert_eq!(git(&w.repo, &["log", "--format=%H", &format!("--grep=Writ-Change: {id}")]), commits_before);
    assert_eq!(executions(&w, &id).len(), 2, "both attempts are on the record");
    assert_eq!(w.writ(&["change", "verify", &id]).ok(), format!("{id} verified"));
}

#[test]
fn a_postgres_target_that_is_down_during_execute_fails_the_change_and_a_retry_succeeds() {
    let Some(config) = postgres() else { return };
    let (_, dsn) = target(&config, "pgd");
    let mut admin = postgres::Client::connect(&format!("{config} dbname=postgres"), postgres::NoTls).unwrap();
    let w = World::new();
    add_target(&w, &dsn, "pgd_read", &[]).ok();
    w.writ(&["identity", "add", "pgd_dave", "--kind", "human"]).ok();
    let id = w.request("pgd_dave", "pg:pgd_read");
    w.writ(&["change", "approve", &id, "--as", "bob"]).ok();
    // The target goes down: no new connections, existing ones cut.
    take_down(&mut admin, "writ_pgd");
    let down = w.writ(&["change", "execute", &id]);
    admin.batch_execute("ALTER DATABASE writ_pgd ALLOW_CONNECTIONS true").unwrap();
    assert_eq!(down.code, 7, "{}", down.stderr);
    assert!(down.stderr.contains("target pg unavailable"), "{}", down.stderr);
    assert_eq!(w.writ(&["change", "show", &id, "--json"]).json()["state"], "failed");
    // The test's own connection was cut with the others: connect again.
    let mut pg = postgres::Client::connect(&dsn, postgres::NoTls).unwrap();
    assert!(!member(&mut pg, "pgd_dave", "pgd_read"), "nothing was granted while the target was down");
    assert_eq!(w.writ(&["change", "execute", &id]).ok(), format!("{id} implemented"));
    assert!(member(&mut pg, "pgd_dave", "pgd_read"));
    assert_eq!(w.writ(&["change", "verify", &id]).ok(), format!("{id} verified"));
}

/// The change that ended `origin`'s time-bound access, found through `change list` (there is
/// exactly one) and shown whole.
fn expiry_of(w: &World, origin: &str) -> serde_json::Value {
    let listed = w.writ(&["change", "list", "--json"]).json();
    let mut found: Vec<serde_json::Value> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|c| w.writ(&["change", "show", c["id"].as_str().unwrap(), "--json"]).json())
        .filter(|c| c["origin"] == origin)
        .collect();
    assert_eq!(found.len(), 1, "one expiry change per grant, not {}", found.len());
    found.remove(0)
}

/// The JSON a command printed, whatever its exit code.
fn out(run: &crate::harness::Run) -> serde_json::Value {
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}", run.stdout))
}

fn labels(change: &serde_json::Value) -> Vec<String> {
    let events = change["events"].as_array().unwrap();
    events
        .iter()
        .flat_map(|e| {
            e["evidence"].as_array().unwrap().iter().map(|x| x["label"].as_str().unwrap().to_owned())
        })
        .collect()
}

#[test]
fn a_grant_for_two_seconds_is_revoked_on_the_server_by_writ_serve_through_its_own_linked_change() {
    let Some(config) = postgres() else { return };
    let (mut pg, dsn) = target(&config, "pge");
    let w = World::new();
    add_target(&w, &dsn, "pge_read", &[]).ok();
    w.writ(&["identity", "add", "pge_dave", "--kind", "human"]).ok();
    let grant = w.request_with(&[
        "--as",
        "alice",
        "--identity",
        "pge_dave",
        "--grant",
        "pg:pge_read",
        "--for",
        "2s",
        "--justification",
        "incident 42 needs read access",
    ]);
    w.writ(&["change", "approve", &grant, "--as", "bob"]).ok();
    w.writ(&["change", "execute", &grant]).ok();
    w.writ(&["change", "verify", &grant]).ok();
    assert!(member(&mut pg, "pge_dave", "pge_read"));
    let expires =
        w.writ(&["identity", "show", "pge_dave", "--json"]).json()["grants"][0]["expires_at"].clone();
    assert!(expires.is_string(), "the grant carries its expiry: {expires}");

    let args = w.db_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = crate::server::Server::start(&args, &w.dir.path().join("serve.log"));
    let started = std::time::Instant::now();
    while member(&mut pg, "pge_dave", "pge_read") {
        assert!(started.elapsed().as_secs() < 30, "writ serve did not end the grant within 30 s");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    // Wait for the verification to be recorded too, then stop the server.
    let shown = loop {
        let shown = expiry_of(&w, &grant);
        if shown["state"] == "verified" || started.elapsed().as_secs() > 30 {
            break shown;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert!(server.stop().success());
    let id = shown["id"].as_str().unwrap();
    assert_eq!(shown["state"], "verified", "{shown}");
    assert_eq!((shown["kind"].as_str(), shown["event"].as_str()), (Some("revoke"), Some("expiry")));
    assert_eq!(shown["requester"], "alice");
    assert_eq!(shown["executions"][0]["executor"], "system:writ-scheduler");
    assert_eq!(shown["operations"][0]["observed"], "absent");
    for label in ["expiry-due", "observed-before", "apply-result", "observed-after"] {
        assert!(labels(&shown).iter().any(|l| l == label), "{label} missing: {:?}", labels(&shown));
    }
    // The target's own trail names the expiry change and who executed it.
    let row = pg
        .query_one("SELECT action, member, executor FROM writ_audit.changes WHERE change_id = $1", &[&id])
        .unwrap();
    let recorded: (String, String, String) = (row.get(0), row.get(1), row.get(2));
    assert_eq!(recorded, ("revoke".into(), "pge_dave".into(), "system:writ-scheduler".into()));
    let grants = w.writ(&["identity", "show", "pge_dave", "--json"]).json()["grants"].clone();
    assert_eq!(grants, serde_json::json!([]), "Writ no longer records the grant");
    // Nobody can call the end of access off.
    let cancel = w.writ(&["change", "cancel", id, "--as", "carol", "--reason", "keep it"]);
    assert_eq!(cancel.code, 3, "{}", cancel.stderr);
    assert!(cancel.stderr.contains("state.expiry_irrevocable"), "{}", cancel.stderr);
    // The trail links back to the grant.
    let trail = w.writ(&["change", "show", id]).ok();
    assert!(trail.contains(&format!("ends time-bound access granted by {grant}")), "{trail}");
    assert_eq!(w.writ(&["ledger", "verify"]).code, 0);
}

#[test]
fn an_expiry_that_cannot_reach_its_target_is_retried_with_backoff_and_alerts() {
    let Some(config) = postgres() else { return };
    let (_, dsn) = target(&config, "pgf");
    let mut admin = postgres::Client::connect(&format!("{config} dbname=postgres"), postgres::NoTls).unwrap();
    let w = World::new();
    add_target(&w, &dsn, "pgf_read", &[]).ok();
    w.writ(&["identity", "add", "pgf_dave", "--kind", "human"]).ok();
    let grant = w.request_with(&[
        "--as",
        "alice",
        "--identity",
        "pgf_dave",
        "--grant",
        "pg:pgf_read",
        "--for",
        "1s",
        "--justification",
        "short task",
    ]);
    w.writ(&["change", "approve", &grant, "--as", "bob"]).ok();
    w.writ(&["change", "execute", &grant]).ok();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    take_down(&mut admin, "writ_pgf");
    let first = w.writ(&["run-due", "--alert-after", "2", "--json"]);
    assert_eq!(first.code, 7, "{}", first.stderr);
    let id = out(&first)["expiry_failed"][0].as_str().unwrap().to_owned();
    assert_eq!(out(&first)["expiry_opened"], serde_json::json!([id]));
    // Within the backoff nothing is tried again.
    let quiet = w.writ(&["run-due", "--alert-after", "2", "--json"]);
    assert_eq!(
        (quiet.code, out(&quiet)["expiry_failed"].clone()),
        (0, serde_json::json!([])),
        "{}",
        quiet.stderr
    );
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let second = w.writ(&["run-due", "--alert-after", "2", "--json"]);
    assert_eq!(out(&second)["expiry_alerted"], serde_json::json!([id]), "{}", second.stdout);
    let shown = w.writ(&["change", "show", &id, "--json"]).json();
    assert_eq!((shown["state"].as_str(), shown["executions"].as_array().unwrap().len()), (Some("failed"), 2));
    assert!(shown["alert"].as_str().unwrap().contains("target pg unavailable"), "{shown}");
    assert!(w.writ(&["change", "show", &id]).ok().contains("ALERT"), "the trail shows the alert");
    assert_eq!(
        w.writ(&["identity", "show", "pgf_dave", "--json"]).json()["grants"].as_array().unwrap().len(),
        1
    );

    admin.batch_execute("ALTER DATABASE writ_pgf ALLOW_CONNECTIONS true").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let third = w.writ(&["run-due", "--json"]);
    assert_eq!(third.json()["expiry_verified"], serde_json::json!([id]), "{}", third.stdout);
    let mut pg = postgres::Client::connect(&dsn, postgres::NoTls).unwrap();
    assert!(!member(&mut pg, "pgf_dave", "pgf_read"));
    assert_eq!(w.writ(&["identity", "show", "pgf_dave", "--json"]).json()["grants"], serde_json::json!([]));
}

fn valid_until(client: &mut postgres::Client, role: &str) -> Option<String> {
    client
        .query_opt("SELECT rolvaliduntil::text FROM pg_roles WHERE rolname = $1", &[&role])
        .unwrap()
        .and_then(|row| row.get(0))
}

#[test]
fn postgres_table_and_schema_privileges_are_granted_observed_and_revoked_through_the_acl() {
    let Some(config) = postgres() else { return };
    let (mut pg, dsn) = target(&config, "pgg");
    pg.batch_execute(
        "CREATE SCHEMA app; CREATE TABLE app.orders (id int); CREATE TABLE public.other (id int);",
    )
    .unwrap();
    let w = World::new();
    let added = add_target(&w, &dsn, "pgg_read", &["--schemas", "app", "--json"]).json();
    let offered: Vec<&str> =
        added["entitlements"].as_array().unwrap().iter().filter_map(|e| e.as_str()).collect();
    for expected in [
        "pgg_read",
        "schema/app/usage",
        "schema/app/create",
        "table/app.orders/select",
        "table/app.orders/insert",
    ] {
        assert!(offered.contains(&expected), "{expected} not offered: {offered:?}");
    }
    assert!(!offered.iter().any(|e| e.contains("public.other") || *e == "login"), "{offered:?}");
    w.writ(&["identity", "add", "pgg_dave", "--kind", "human"]).ok();
    let can = |pg: &mut postgres::Client, privilege: &str| -> bool {
        pg.query_one("SELECT has_table_privilege('pgg_dave', 'app.orders', $1)", &[&privilege])
            .unwrap()
            .get(0)
    };
    assert!(!can(&mut pg, "SELECT"));

    // One change, two privileges: both land in the ACL and verify.
    let grant = w.request_with(&[
        "--as",
        "alice",
        "--identity",
        "pgg_dave",
        "--grant",
        "pg:schema/app/usage",
        "--grant",
        "pg:table/app.orders/select",
        "--justification",
        "reporting",
    ]);
    w.writ(&["change", "approve", &grant, "--as", "bob"]).ok();
    w.writ(&["change", "execute", &grant]).ok();
    assert!(can(&mut pg, "SELECT"), "SELECT was not granted");
    let usage: bool =
        pg.query_one("SELECT has_schema_privilege('pgg_dave', 'app', 'USAGE')", &[]).unwrap().get(0);
    assert!(usage, "USAGE was not granted");
    assert!(!can(&mut pg, "INSERT"), "more than the approved privilege was granted");
    assert_eq!(w.writ(&["change", "verify", &grant]).ok(), format!("{grant} verified"));
    let tagged: Vec<String> = pg
        .query("SELECT role_name FROM writ_audit.changes WHERE change_id = $1 ORDER BY id", &[&grant])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(tagged, ["schema/app/usage", "table/app.orders/select"]);

    // A privilege taken away behind Writ's back between apply and verify is caught.
    let insert = w.request("pgg_dave", "pg:table/app.orders/insert");
    w.writ(&["change", "approve", &insert, "--as", "bob"]).ok();
    w.writ(&["change", "execute", &insert]).ok();
    assert!(can(&mut pg, "INSERT"));
    pg.batch_execute("REVOKE INSERT ON app.orders FROM pgg_dave").unwrap();
    let caught = w.writ(&["change", "verify", &insert]);
    assert_eq!(caught.code, 7, "{}", caught.stderr);

    // Revoke: gone from the ACL, verified as gone, the other privilege untouched.
    let revoke = w.request_with(&[
        "--as",
        "alice",
        "--identity",
        "pgg_dave",
        "--revoke",
        "pg:table/app.orders/select",
        "--justification",
        "report retired",
    ]);
    w.writ(&["change", "approve", &revoke, "--as", "bob"]).ok();
    w.writ(&["change", "execute", &revoke]).ok();
    assert!(!can(&mut pg, "SELECT"), "the revoke left SELECT");
    let usage: bool =
        pg.query_one("SELECT has_schema_privilege('pgg_dave', 'app', 'USAGE')", &[]).unwrap().get(0);
    assert!(usage, "the revoke took more than it named");
    assert_eq!(w.writ(&["change", "verify", &revoke]).ok(), format!("{revoke} verified"));
}

#[test]
fn postgres_login_grants_create_the_role_valid_until_the_grants_end_and_a_revoke_ends_its_sessions() {
    let Some(config) = postgres() else { return };
    let (mut pg, dsn) = target(&config, "pgh");
    pg.batch_execute("DROP ROLE IF EXISTS pgh_eve").unwrap();
    let w = World::new();
    add_target(&w, &dsn, "pgh_read,login", &[]).ok();
    w.writ(&["identity", "add", "pgh_eve", "--kind", "human"]).ok();

    // A time-bound login grant creates the missing role, valid until the grant's end.
    let grant = w.request_with(&[
        "--as",
        "alice",
        "--identity",
        "pgh_eve",
        "--grant",
        "pg:login",
        "--for",
        "1h",
        "--justification",
        "on call",
    ]);
    w.writ(&["change", "approve", &grant, "--as", "bob"]).ok();
    w.writ(&["change", "execute", &grant]).ok();
    let remaining: f64 = pg
        .query_one("SELECT extract(epoch FROM rolvaliduntil - now())::float8 FROM pg_roles WHERE rolname = 'pgh_eve'", &[])
        .unwrap()
        .get(0);
    assert!((3500.0..=3600.0).contains(&remaining), "VALID UNTIL is {remaining}s away, not the grant's hour");
    assert_eq!(w.writ(&["change", "verify", &grant]).ok(), format!("{grant} verified"));
    pg.batch_execute("ALTER ROLE pgh_eve PASSWORD 'pgh-test-login'").unwrap();
    let mut session = crate::server::login_as(&config, "pgh", "pgh_eve", "pgh-test-login")
        .expect("the granted login works");
    session.batch_execute("SELECT 1").unwrap();

    // Revoke: the server refuses new logins and the open session is ended.
    let revoke = w.request_with(&[
        "--as",
        "alice",
        "--identity",
        "pgh_eve",
        "--revoke",
        "pg:login",
        "--justification",
        "shift over",
    ]);
    w.writ(&["change", "approve", &revoke, "--as", "bob"]).ok();
    w.writ(&["change", "execute", &revoke]).ok();
    assert_eq!(valid_until(&mut pg, "pgh_eve").as_deref(), Some("-infinity"));
    assert!(
        !crate::server::login(&config, "pgh", "pgh_eve", "pgh-test-login"),
        "the revoked login still works"
    );
    assert!(session.batch_execute("SELECT 1").is_err(), "the revoked login's session is still open");
    assert_eq!(w.writ(&["change", "verify", &revoke]).ok(), format!("{revoke} verified"));

    // A two-second grant: the server itself refuses the login once it is over, before Writ's
    // own expiry has run.
    let short = w.request_with(&[
        "--as",
        "alice",
        "--identity",
        "pgh_eve",
        "--grant",
        "pg:login",
        "--for",
        "2s",
        "--justification",
        "one query",
    ]);
    w.writ(&["change", "approve", &short, "--as", "bob"]).ok();
    w.writ(&["change", "execute", &short]).ok();
    assert!(
        crate::server::login(&config, "pgh", "pgh_eve", "pgh-test-login"),
        "the re-granted login is refused"
    );
    std::thread::sleep(std::time::Duration::from_millis(2500));
    assert!(
        !crate::server::login(&config, "pgh", "pgh_eve", "pgh-test-login"),
        "the server let an expired login in"
    );

    // A group role cannot be turned into a login through the login entitlement.
    w.writ(&["identity", "add", "pgh_read", "--kind", "human"]).ok();
    let group = w.request("pgh_read", "pg:login");
    w.writ(&["change", "approve", &group, "--as", "bob"]).ok();
    let refused = w.writ(&["change", "execute", &group]);
    assert_eq!(refused.code, 7, "{}", refused.stderr);
    assert!(refused.stderr.contains("group role"), "{}", refused.stderr);
    let can_login: bool =
        pg.query_one("SELECT rolcanlogin FROM pg_roles WHERE rolname = 'pgh_read'", &[]).unwrap().get(0);
    assert!(!can_login);
}

#[test]
fn offboarding_removes_what_every_target_shows_and_verifies_only_when_nothing_is_left() {
    let Some(config) = postgres() else { return };
    let (mut pg, dsn) = target(&config, "pgi");
    pg.batch_execute(
        "DROP ROLE IF EXISTS pgi_erin; DROP ROLE IF EXISTS pgi_extra;
         CREATE ROLE pgi_extra NOLOGIN; CREATE ROLE pgi_erin LOGIN PASSWORD 'pgi-erin-login';",
    )
    .unwrap();
    let w = World::new();
    add_target(&w, &dsn, "pgi_read,pgi_write,pgi_extra,login", &[]).ok();
    w.writ(&["identity", "add", "pgi_erin", "--kind", "human"]).ok();
    for entitlement in ["access:eng-read", "pg:pgi_read"] {
        let id = w.request("pgi_erin", entitlement);
        w.writ(&["change", "approve", &id, "--as", "bob"]).ok();
        w.writ(&["change", "execute", &id]).ok();
    }
    // Access given outside Writ is found on the target, not in Writ's records.
    pg.batch_execute("GRANT pgi_write TO pgi_erin").unwrap();

    // With a target down, what erin holds cannot be proven: no change is opened, but she stops
    // acting in Writ at once; offboarding again opens the change.
    let mut admin = postgres::Client::connect(&format!("{config} dbname=postgres"), postgres::NoTls).unwrap();
    take_down(&mut admin, "writ_pgi");
    let changes = || w.writ(&["change", "list", "--json"]).json().as_array().unwrap().len();
    let before = changes();
    let offboard = words("identity offboard pgi_erin --as alice --justification left --json");
    let down = w.writ(&offboard);
    admin.batch_execute("ALTER DATABASE writ_pgi ALLOW_CONNECTIONS true").unwrap();
    assert_ne!(down.code, 0, "{}", down.stdout);
    assert!(down.stderr.contains("target pg unavailable"), "{}", down.stderr);
    assert_eq!(changes(), before, "no change without proof of what is held");
    let erin = w.writ(&["identity", "show", "pgi_erin", "--json"]).json();
    assert_eq!(erin["state"], "offboarded");
    let mut pg = postgres::Client::connect(&dsn, postgres::NoTls).unwrap();

    let opened = w.writ(&offboard).json();
    assert_eq!((opened["event"].as_str(), opened["from"].as_str()), (Some("leaver"), Some("offboarded")));
    assert_eq!(
        opened["revoke"],
        serde_json::json!(["access:eng-read", "pg:login", "pg:pgi_read", "pg:pgi_write"])
    );
    let id = opened["change"].as_str().unwrap().to_owned();
    w.writ(&["change", "approve", &id, "--as", "bob"]).ok();
    w.writ(&["change", "execute", &id]).ok();
    assert!(!member(&mut pg, "pgi_erin", "pgi_write") && !member(&mut pg, "pgi_erin", "pgi_read"));
    assert!(
        !crate::server::login(&config, "pgi", "pgi_erin", "pgi-erin-login"),
        "the leaver can still log in"
    );

    // Access that appears anywhere before verification keeps the cleanup unproven.
    pg.batch_execute("GRANT pgi_extra TO pgi_erin").unwrap();
    let residual = w.writ(&["change", "verify", &id]);
    assert_eq!(residual.code, 7, "{}", residual.stderr);
    let shown = w.writ(&["change", "show", &id, "--json"]).json();
    assert_eq!(shown["verification"]["matches_approved_state"], false);
    assert_eq!(shown["verification"]["mismatched_operations"], serde_json::json!([]));
    assert_eq!(
        shown["verification"]["residual_access"],
        serde_json::json!([{ "identity": "pgi_erin", "target": "pg", "entitlement": "pgi_extra" }])
    );
    assert!(w.writ(&["change", "show", &id]).ok().contains("STILL HELD pgi_erin pg:pgi_extra"));
    pg.batch_execute("REVOKE pgi_extra FROM pgi_erin").unwrap();
    assert_eq!(w.writ(&["change", "verify", &id]).ok(), format!("{id} verified"));
    assert_eq!(w.writ(&["ledger", "verify"]).code, 0);

    // A non-human identity is decommissioned, not a leaver.
    w.writ(&["identity", "add", "pgi_bot", "--kind", "service_account", "--owner", "alice"]).ok();
    let bot = w.request("pgi_bot", "access:deploy-prod");
    w.writ(&["change", "approve", &bot, "--as", "bob"]).ok();
    w.writ(&["change", "execute", &bot]).ok();
    let decommission =
        w.writ(&words("identity offboard pgi_bot --as alice --justification retired --json")).json();
    assert_eq!(decommission["event"], "decommission");
    assert_eq!(decommission["revoke"], serde_json::json!(["access:deploy-prod"]));
}
