//! `writ-bench bench-api`: the HTTP API under an open-loop load of request → approve → show at a fixed
//! rate, on SQLite, on PostgreSQL, and with three instances on one PostgreSQL. Latency is
//! measured from each request's *scheduled* start (so a slow server cannot hide queueing by
//! slowing the client down: no coordinated omission). The baseline, measured in the same run at
//! the same rate, is `GET /healthz`: the HTTP stack with no authentication and no database.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::json;
use writ_core::access::Role;
use writ_core::identity::{Actor, ConnectorKind, IdentityKind, SystemActor};
use writ_core::name::{IdentityName, TargetName};
use writ_core::time::Duration as WritDuration;

use writ_server::db::Database;

pub struct Options {
    pub seconds: u64,
    pub rate: u64,
    pub threads: usize,
    pub postgres: Option<String>,
    pub json: bool,
}

struct Scenario {
    name: String,
    servers: Vec<Child>,
    bases: Vec<String>,
    requester: String,
    approver: String,
}

impl Drop for Scenario {
    fn drop(&mut self) {
        for server in &mut self.servers {
            let _ = Command::new("kill").arg("-TERM").arg(server.id().to_string()).status();
            let _ = server.wait();
        }
    }
}

struct Line {
    scenario: String,
    op: &'static str,
    count: usize,
    errors: usize,
    seconds: f64,
    p50: f64,
    p99: f64,
}

pub fn run(options: Options) -> anyhow::Result<()> {
    if options.rate == 0 || options.threads == 0 || options.seconds == 0 {
        bail!("--rate, --threads and --seconds must be at least 1");
    }
    let dir = tempfile::tempdir()?;
    let mut scenarios = vec![setup(dir.path(), "sqlite", None, 1)?];
    match &options.postgres {
        Some(config) => {
            scenarios.push(setup(dir.path(), "postgres", Some(config), 1)?);
            scenarios.push(setup(dir.path(), "postgres, 3 instances", Some(config), 3)?);
        }
        None => eprintln!("no PostgreSQL given (--postgres or WRIT_BENCH_POSTGRES): SQLite only"),
    }
    let mut lines = Vec::new();
    for scenario in &scenarios {
        eprintln!("{}: {} s at {} requests/s", scenario.name, options.seconds, options.rate);
        lines.extend(load(scenario, &options, true)?);
        lines.extend(load(scenario, &options, false)?);
    }
    print(&lines, options.json);
    Ok(())
}

/// Drops and creates the benchmark database `name` on the server `config` names; returns an
/// administrative connection to the server's `postgres` database.
pub fn recreate_database(config: &str, name: &str) -> anyhow::Result<postgres::Client> {
    let mut admin = postgres::Client::connect(&format!("{config} dbname=postgres"), postgres::NoTls)?;
    admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))?;
    admin.batch_execute(&format!("CREATE DATABASE {name}"))?;
    Ok(admin)
}

/// The `writ` binary beside this one (`cargo build -p writ -p writ-bench` puts both there).
fn exe() -> anyhow::Result<std::path::PathBuf> {
    let bench = std::env::current_exe().context("locating the writ-bench binary")?;
    let writ = bench.with_file_name("writ");
    anyhow::ensure!(
        writ.is_file(),
        "no writ binary beside {}: build it with `cargo build -p writ`",
        bench.display()
    );
    Ok(writ)
}

/// A fresh database with alice (requester), bob (approver), dave and a memory target, and
/// `instances` servers over it.
fn setup(dir: &Path, name: &str, postgres: Option<&str>, instances: usize) -> anyhow::Result<Scenario> {
    let slug: String = name.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    let db = match postgres {
        Some(config) => {
            let database = format!("writ_bench_{slug}");
            recreate_database(config, &database)?;
            let field = |key: &str| {
                config
                    .split_whitespace()
                    .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
                    .unwrap_or_default()
            };
            format!("postgres://{}@{}:{}/{database}", field("user"), field("host"), field("port"))
        }
        None => dir.join(format!("{slug}.db")).display().to_string(),
    };
    let key = dir.join(format!("{slug}.key"));
    let hmac = dir.join(format!("{slug}.hmac"));
    let database = Database::parse(Some(Path::new(&db)))?;
    let signer = writ_server::keys::create(&key, &writ_server::keys::new_origin()?)?;
    let engine =
        writ_server::compose::engine_over(database.open(true)?, Some(writ_server::keys::create_hmac(&hmac)?));
    engine.init_ledger(&signer)?;
    let admin = Actor::System(SystemActor::Admin);
    for person in ["alice", "bob", "dave"] {
        engine.add_identity(admin.clone(), IdentityName::parse(person)?, IdentityKind::Human, None, None)?;
    }
    engine.set_role(admin.clone(), &IdentityName::parse("alice")?, Role::Requester, true)?;
    engine.set_role(admin.clone(), &IdentityName::parse("bob")?, Role::Approver, true)?;
    let settings = vec![("entitlements".to_owned(), "read".to_owned())];
    engine.add_target(
        admin.clone(),
        TargetName::parse("bench")?,
        ConnectorKind::parse("memory")?,
        settings,
    )?;
    let ttl = WritDuration::parse("1d")?;
    let requester = engine.issue_token(admin.clone(), &IdentityName::parse("alice")?, "bench", ttl)?.token;
    let approver = engine.issue_token(admin, &IdentityName::parse("bob")?, "bench", ttl)?.token;
    drop(engine);
    let mut servers = Vec::new();
    let mut bases = Vec::new();
    for _ in 0..instances {
        let mut child = Command::new(exe()?)
            .args(["--db", &db, "--ledger-key"])
            .arg(&key)
            .arg("--hmac-key")
            .arg(&hmac)
            // The load comes from one address at thousands of requests a second: no rate limit.
            .args(["serve", "--listen", "127.0.0.1:0", "--rate-limit", "0"])
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("starting writ serve")?;
        let mut line = String::new();
        if let Some(stdout) = child.stdout.take() {
            BufReader::new(stdout).read_line(&mut line)?;
        }
        let base = line.trim().strip_prefix("listening on ").map(str::to_owned);
        servers.push(child);
        bases.push(base.with_context(|| format!("writ serve did not start: {line:?}"))?);
    }
    Ok(Scenario { name: name.to_owned(), servers, bases, requester, approver })
}

/// Runs the load for `seconds` at `rate` across `threads`; `baseline` sends only `GET /healthz`.
fn load(scenario: &Scenario, options: &Options, baseline: bool) -> anyhow::Result<Vec<Line>> {
    let ops: &[&'static str] = if baseline { &["GET /healthz"] } else { &["request", "approve", "show"] };
    let total = (options.rate * options.seconds) as usize;
    let period = Duration::from_secs_f64(options.threads as f64 / options.rate as f64);
    let start = Instant::now() + Duration::from_millis(200);
    let results: Vec<Vec<(usize, f64, bool)>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..options.threads)
            .map(|t| {
                scope.spawn(move || {
                    let agent: ureq::Agent =
                        ureq::Agent::config_builder().http_status_as_error(false).build().into();
                    let base = scenario.bases.get(t % scenario.bases.len().max(1)).map_or("", String::as_str);
                    let mut samples = Vec::new();
                    let mut change = String::new();
                    let mut k = 0usize;
                    while k * options.threads + t < total {
                        let scheduled =
                            start + period * (k as u32) + period.mul_f64(t as f64 / options.threads as f64);
                        if let Some(wait) = scheduled.checked_duration_since(Instant::now()) {
                            std::thread::sleep(wait);
                        }
                        let which = k % ops.len();
                        let op = ops.get(which).copied().unwrap_or_default();
                        let ok = call(&agent, base, scenario, op, &mut change, k);
                        samples.push((which, scheduled.elapsed().as_secs_f64() * 1000.0, ok));
                        k += 1;
                    }
                    samples
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap_or_default()).collect()
    });
    let seconds = start.elapsed().as_secs_f64();
    let mut lines = Vec::new();
    for (which, op) in ops.iter().enumerate() {
        let mut latencies: Vec<f64> =
            results.iter().flatten().filter(|s| s.0 == which).map(|s| s.1).collect();
        let errors = results.iter().flatten().filter(|s| s.0 == which && !s.2).count();
        latencies.sort_by(f64::total_cmp);
        let at = |q: f64| {
            latencies.get(((latencies.len() as f64 - 1.0) * q).round() as usize).copied().unwrap_or(0.0)
        };
        lines.push(Line {
            scenario: scenario.name.clone(),
            op,
            count: latencies.len(),
            errors,
            seconds,
            p50: at(0.50),
            p99: at(0.99),
        });
    }
    Ok(lines)
}

/// One operation; `change` carries the change a thread requested to its approve and show.
fn call(
    agent: &ureq::Agent,
    base: &str,
    scenario: &Scenario,
    op: &str,
    change: &mut String,
    k: usize,
) -> bool {
    let bearer = |token: &str| format!("Bearer {token}");
    let result = match op {
        "GET /healthz" => agent.get(format!("{base}/healthz")).call(),
        "request" => agent
            .post(format!("{base}/api/v1/changes"))
            .header("authorization", bearer(&scenario.requester))
            .send_json(
                json!({ "identity": "dave", "grant": ["bench:read"], "justification": format!("bench {k}") }),
            ),
        "approve" => agent
            .post(format!("{base}/api/v1/changes/{change}/approve"))
            .header("authorization", bearer(&scenario.approver))
            .send_json(json!({})),
        _ => agent
            .get(format!("{base}/api/v1/changes/{change}"))
            .header("authorization", bearer(&scenario.requester))
            .call(),
    };
    let Ok(mut response) = result else { return false };
    let ok = response.status().is_success();
    let body: serde_json::Value = response.body_mut().read_json().unwrap_or_default();
    if op == "request"
        && let Some(id) = body.get("id").and_then(|id| id.as_str())
    {
        *change = id.to_owned();
    }
    ok
}

fn print(lines: &[Line], json: bool) {
    let baseline = |scenario: &str| {
        lines
            .iter()
            .find(|l| l.scenario == scenario && l.op == "GET /healthz")
            .map_or(1.0, |l| l.p50.max(1e-6))
    };
    if json {
        let rows: Vec<serde_json::Value> = lines
            .iter()
            .map(|l| json!({ "scenario": l.scenario, "op": l.op, "requests": l.count, "errors": l.errors, "per_second": l.count as f64 / l.seconds, "p50_ms": l.p50, "p99_ms": l.p99, "p50_vs_healthz": l.p50 / baseline(&l.scenario) }))
            .collect();
        println!("{}", serde_json::Value::Array(rows));
        return;
    }
    println!(
        "{:<24} {:<13} {:>7} {:>6} {:>9} {:>8} {:>8} {:>9}  note",
        "scenario", "operation", "n", "errors", "req/s", "p50 ms", "p99 ms", "p50/base"
    );
    for l in lines {
        let note = if l.op == "GET /healthz" {
            "baseline: HTTP only".to_owned()
        } else if l.p99 < 20.0 {
            "p99 target < 20 ms met".to_owned()
        } else {
            "p99 target < 20 ms MISSED".to_owned()
        };
        println!(
            "{:<24} {:<13} {:>7} {:>6} {:>9.0} {:>8.2} {:>8.2} {:>8.1}x  {note}",
            l.scenario,
            l.op,
            l.count,
            l.errors,
            l.count as f64 / l.seconds,
            l.p50,
            l.p99,
            l.p50 / baseline(&l.scenario)
        );
    }
}
