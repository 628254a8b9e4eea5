//! `writ-bench bench-web`: how soon the web interface's pages start to answer on the demo
//! database. It runs `writ-bench demo --keep` into a temporary directory, serves that database
//! with `writ serve`, signs in with a token (an identity holding every reading role), and times
//! each page's first byte (the response head received) over `--requests` sequential requests
//! after a warm-up. Baselines from the same run: `GET /healthz` (HTTP only) and the API's
//! `GET /api/v1/changes/{id}` (the same change as the change page, as JSON with a bearer token).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, bail};
use writ_core::access::Role;
use writ_core::identity::{Actor, IdentityKind, SystemActor};
use writ_core::name::IdentityName;

/// The issue's target for a page's first byte on the demo database.
const TARGET_MS: f64 = 50.0;

struct Line {
    what: String,
    p50: f64,
    p99: f64,
}

pub fn run(requests: usize, json: bool) -> anyhow::Result<()> {
    if requests == 0 {
        bail!("--requests must be at least 1");
    }
    let dir = tempfile::tempdir()?;
    let keep = dir.path().join("demo");
    let bench = std::env::current_exe().context("locating the writ-bench binary")?;
    let demo = Command::new(&bench)
        .args(["demo", "--keep"])
        .arg(&keep)
        .stdout(Stdio::null())
        .status()
        .context("running the demo")?;
    anyhow::ensure!(demo.success(), "the demo failed");
    let db = keep.join("writ.db");
    let token = viewer_token(&db)?;
    let writ = bench.with_file_name("writ");
    let mut server = Command::new(&writ)
        .arg("--db")
        .arg(&db)
        .args(["serve", "--listen", "127.0.0.1:0", "--rate-limit", "0"])
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", writ.display()))?;
    let mut line = String::new();
    if let Some(stdout) = server.stdout.take() {
        BufReader::new(stdout).read_line(&mut line)?;
    }
    let result = line
        .trim()
        .strip_prefix("listening on ")
        .map(str::to_owned)
        .with_context(|| format!("writ serve did not start: {line:?}"))
        .and_then(|base| measure(&base, &token, requests));
    let _ = Command::new("kill").arg("-TERM").arg(server.id().to_string()).status();
    let _ = server.wait();
    print(&result?, json);
    Ok(())
}

/// A token for a new identity that may read every page (requester, approver, reviewer, auditor,
/// admin), issued on the demo's database.
fn viewer_token(db: &Path) -> anyhow::Result<String> {
    let database = writ_server::db::Database::parse(Some(db))?;
    let hmac =
        writ_server::keys::load_hmac(&database.hmac_path(None)?)?.context("the demo left no HMAC key")?;
    let engine = writ_server::compose::engine_over(database.open(false)?, Some(hmac));
    let admin = Actor::System(SystemActor::Admin);
    let name = IdentityName::parse("bench-viewer")?;
    engine.add_identity(admin.clone(), name.clone(), IdentityKind::Human, None, None)?;
    for role in [Role::Requester, Role::Approver, Role::Reviewer, Role::Auditor, Role::Admin] {
        engine.set_role(admin.clone(), &name, role, true)?;
    }
    let ttl = writ_core::time::Duration::parse("1d")?;
    Ok(engine.issue_token(admin, &name, "bench-web", ttl)?.token)
}

fn measure(base: &str, token: &str, requests: usize) -> anyhow::Result<Vec<Line>> {
    let agent: ureq::Agent =
        ureq::Agent::config_builder().http_status_as_error(false).max_redirects(0).build().into();
    // Sign in as a browser does: the form's cookie and token, then the session cookie.
    let mut form = agent.get(format!("{base}/ui/signin")).call()?;
    let presession = cookie(&form).context("no sign-in cookie")?;
    let page = form.body_mut().read_to_string()?;
    let csrf =
        page.split("name=\"csrf\" value=\"").nth(1).and_then(|r| r.split('"').next()).unwrap_or_default();
    let body = format!("csrf={csrf}&token={token}");
    let signed = agent
        .post(format!("{base}/ui/signin/token"))
        .header("cookie", &presession)
        .header("content-type", "application/x-www-form-urlencoded")
        .send(body)?;
    let session = cookie(&signed).context("signing in set no session")?;
    let mut list = agent
        .get(format!("{base}/api/v1/changes?limit=1"))
        .header("authorization", format!("Bearer {token}"))
        .call()?;
    let changes: serde_json::Value = list.body_mut().read_json()?;
    let id = changes
        .pointer("/items/0/id")
        .and_then(serde_json::Value::as_str)
        .context("the demo left no change")?
        .to_owned();
    let pages = [
        ("GET /healthz (baseline)", "/healthz".to_owned(), false),
        ("API change (baseline)", format!("/api/v1/changes/{id}"), false),
        ("/ui/inbox", "/ui/inbox".to_owned(), true),
        ("/ui/changes", "/ui/changes".to_owned(), true),
        ("/ui/changes/{id}", format!("/ui/changes/{id}"), true),
        ("/ui/request", "/ui/request".to_owned(), true),
        ("/ui/audit", "/ui/audit".to_owned(), true),
        ("/ui/admin", "/ui/admin".to_owned(), true),
    ];
    let mut lines = Vec::new();
    for (what, path, page) in pages {
        let call = || -> anyhow::Result<f64> {
            let started = Instant::now();
            let request = agent.get(format!("{base}{path}"));
            let request = if page {
                request.header("cookie", &session)
            } else {
                request.header("authorization", format!("Bearer {token}"))
            };
            let mut response = request.call()?;
            let first_byte = started.elapsed().as_secs_f64() * 1000.0;
            anyhow::ensure!(response.status() == 200, "{path} answered {}", response.status());
            response.body_mut().read_to_vec()?;
            Ok(first_byte)
        };
        for _ in 0..requests.div_ceil(10) {
            call()?;
        }
        let mut samples = (0..requests).map(|_| call()).collect::<anyhow::Result<Vec<f64>>>()?;
        samples.sort_by(f64::total_cmp);
        let at =
            |q: f64| samples.get(((samples.len() - 1) as f64 * q).round() as usize).copied().unwrap_or(0.0);
        lines.push(Line { what: what.to_owned(), p50: at(0.5), p99: at(0.99) });
    }
    Ok(lines)
}

/// The `name=value` of the first cookie a response sets.
fn cookie(response: &ureq::http::Response<ureq::Body>) -> Option<String> {
    let set = response.headers().get("set-cookie")?.to_str().ok()?;
    set.split(';').next().map(str::to_owned)
}

fn print(lines: &[Line], json: bool) {
    let api = lines.iter().find(|l| l.what.starts_with("API")).map_or(1.0, |l| l.p50.max(1e-6));
    if json {
        let rows: Vec<serde_json::Value> = lines
            .iter()
            .map(|l| serde_json::json!({ "page": l.what, "p50_ms": l.p50, "p99_ms": l.p99, "p50_vs_api": l.p50 / api }))
            .collect();
        println!("{}", serde_json::Value::Array(rows));
        return;
    }
    println!("{:<26} {:>9} {:>9} {:>9}  note", "first byte of", "p50 ms", "p99 ms", "p50/API");
    for l in lines {
        let note = if l.what.contains("baseline") {
            "baseline".to_owned()
        } else if l.p99 < TARGET_MS {
            format!("target < {TARGET_MS} ms met (p99)")
        } else {
            format!("target < {TARGET_MS} ms MISSED (p99)")
        };
        println!("{:<26} {:>9.2} {:>9.2} {:>8.1}x  {note}", l.what, l.p50, l.p99, l.p50 / api);
    }
}
