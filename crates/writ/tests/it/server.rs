//! Harness for the HTTP API: `writ serve` as a real process on a free loopback port, a small
//! JSON client, tokens made with the real CLI, and a PostgreSQL database per test when the test
//! command provides a server.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::Value;
use ureq::http;

use crate::harness::World;

/// A running `writ serve`; killed (SIGTERM, then waited for) on drop.
pub struct Server {
    child: Child,
    pub base: String,
    pub log: PathBuf,
}

impl Server {
    /// Starts `writ serve` with `db_args` (for example `["--db", path]`) and logs at debug level
    /// into `log`.
    pub fn start(db_args: &[&str], log: &Path) -> Server {
        Server::start_with(db_args, &[], log)
    }

    /// [`Server::start`] with more `serve` options.
    pub fn start_with(db_args: &[&str], serve_args: &[&str], log: &Path) -> Server {
        let stderr = std::fs::File::create(log).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_writ"))
            .args(db_args)
            .args(["-vv", "serve", "--listen", "127.0.0.1:0"])
            .args(serve_args)
            .env_remove("WRIT_DB")
            .env("RUST_LOG", "debug")
            // Writes here come one after another: a short checkpoint interval keeps each one's
            // wait for its covering checkpoint short.
            .env("WRIT_CHECKPOINT_INTERVAL", "50ms")
            // Reconciliation writes on its own schedule; a test passes the flag when it wants it
            // (the flag overrides the variable).
            .env("WRIT_RECONCILE_INTERVAL", "off")
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let Some(address) = line.trim().strip_prefix("listening on ") else {
            let _ = child.kill();
            panic!(
                "writ serve did not start: {line:?}\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        };
        Server { child, base: address.to_owned(), log: log.to_owned() }
    }

    pub fn api(&self) -> Api {
        Api::new(&self.base)
    }

    /// Kills the server without warning (SIGKILL), as a crash or an OOM kill would.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Stops the server gracefully and returns its exit status.
    pub fn stop(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        self.child.wait().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
            let _ = self.child.wait();
        }
    }
}

/// A reply: status, JSON body (`Null` if not JSON), and headers.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
    pub headers: http::HeaderMap,
    /// The body as text (for replies that are not JSON).
    pub text: String,
}

impl Reply {
    /// The error code of an error reply.
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }

    #[track_caller]
    pub fn expect(&self, status: u16) -> &Value {
        assert_eq!(self.status, status, "unexpected reply: {}", self.body);
        &self.body
    }

    #[track_caller]
    pub fn refused(&self, status: u16, code: &str) {
        assert_eq!((self.status, self.code()), (status, code), "unexpected reply: {}", self.body);
    }
}

#[derive(Clone)]
pub struct Api {
    base: String,
    agent: ureq::Agent,
}

impl Api {
    pub fn new(base: &str) -> Api {
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        Api { base: base.to_owned(), agent }
    }

    /// Sends a request; `body` is sent as JSON unless `raw` is given.
    pub fn send(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Reply {
        let mut request = http::Request::builder().method(method).uri(format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(body.unwrap_or_default()).unwrap();
        let mut response = self.agent.run(request).unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.body_mut().with_config().limit(64 << 20).read_to_string().unwrap();
        Reply { status, body: serde_json::from_str(&text).unwrap_or(Value::Null), headers, text }
    }

    pub fn get(&self, path: &str, token: &str) -> Reply {
        self.send("GET", path, Some(token), &[], None)
    }

    pub fn post(&self, path: &str, token: &str, body: Value) -> Reply {
        self.post_with(path, token, &[], body)
    }

    pub fn post_with(&self, path: &str, token: &str, headers: &[(&str, &str)], body: Value) -> Reply {
        let mut all = vec![("content-type", "application/json")];
        all.extend_from_slice(headers);
        self.send("POST", path, Some(token), &all, Some(serde_json::to_vec(&body).unwrap()))
    }
}

/// Issues a token with the real CLI and returns its text.
pub fn token(world: &World, identity: &str) -> String {
    let run = world.writ(&["token", "create", "--identity", identity, "--label", "test", "--json"]);
    run.json()["token"].as_str().unwrap().to_owned()
}

/// Gives `identity` the roles, with the real CLI.
pub fn roles(world: &World, identity: &str, roles: &[&str]) {
    for role in roles {
        world.writ(&["role", "grant", identity, role]).ok();
    }
}

/// The value of `var`, set by the test command for the service `what` it started, or `None`
/// (the test then says so; with `WRIT_REQUIRE_SERVICES=1` it fails instead).
pub fn service(var: &str, what: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(value) => Some(value),
        Err(_) => {
            assert!(
                std::env::var("WRIT_REQUIRE_SERVICES").as_deref() != Ok("1"),
                "{var} is not set but WRIT_REQUIRE_SERVICES=1: start {what} (scripts/test.sh does)"
            );
            eprintln!("NOT RUN: no {what} (set {var}, as scripts/test.sh does)");
            None
        }
    }
}

/// The base connection string of the PostgreSQL server the test command started.
pub fn postgres() -> Option<String> {
    service("WRIT_TEST_POSTGRES", "PostgreSQL")
}

/// The issuer URL of the OIDC provider the test command started.
pub fn oidc_issuer() -> Option<String> {
    service("WRIT_TEST_OIDC", "the OIDC provider")
}

/// Creates a fresh database on the test server and returns its `postgres://` URL.
pub fn postgres_database(config: &str, name: &str) -> String {
    let mut client =
        postgres::Client::connect(&format!("{config} dbname=postgres"), postgres::NoTls).unwrap();
    client.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).unwrap();
    client.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
    let field = |key: &str| {
        config
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
            .unwrap_or_default()
            .to_owned()
    };
    format!("postgres://{}@{}:{}/{name}", field("user"), field("host"), field("port"))
}

/// A session on database `writ_P` of the test server as `username` with `password`, if the
/// server accepts them (every role but the test superuser must give its password).
pub fn login_as(config: &str, p: &str, username: &str, password: &str) -> Option<postgres::Client> {
    let host = config.replace("user=writ", "");
    let dsn = format!("{host} dbname=writ_{p} user={username} password={password} connect_timeout=5");
    postgres::Client::connect(&dsn, postgres::NoTls).ok()
}

/// Whether the test server accepts `username`/`password` on database `writ_P`.
pub fn login(config: &str, p: &str, username: &str, password: &str) -> bool {
    login_as(config, p, username, password).is_some()
}

/// The `port=` of a libpq key=value configuration.
pub fn port_of(config: &str) -> String {
    config.split_whitespace().find_map(|kv| kv.strip_prefix("port=")).unwrap().to_owned()
}
