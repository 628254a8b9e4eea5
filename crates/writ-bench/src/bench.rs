//! `writ-bench bench`: complete request → approve → execute → verify → review lifecycles per second,
//! in process, on a durable SQLite file (WAL, synchronous=FULL), beside a baseline measured in
//! the same run: raw single-row durable commits on the same file system. A lifecycle makes six
//! commits, so `6 / raw commits per second` is the floor Writ's own work sits on.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use writ_core::change::{BusinessEvent, Justification, OpAction};
use writ_core::identity::{Actor, ConnectorKind, IdentityKind, SystemActor};
use writ_core::name::{EntitlementRef, IdentityName, TargetName};
use writ_engine::{Engine, RequestInput, RequestedOp};
use writ_store_sqlite::{OpenMode, SqliteStore};

use crate::table::{Row, fan_out, progress};

/// Commits one lifecycle makes: request, approve, execute (start and outcome), verify, review.
const COMMITS_PER_LIFECYCLE: f64 = 6.0;

pub fn run(
    lifecycles: usize,
    threads: usize,
    ledger_events: usize,
    postgres: Option<&str>,
    json: bool,
) -> anyhow::Result<()> {
    if lifecycles == 0 || threads == 0 || ledger_events == 0 {
        bail!("--lifecycles, --threads and --ledger-events must be at least 1");
    }
    let dir = tempfile::tempdir()?;
    let raw = raw_commits(&dir.path().join("raw.db"), lifecycles)?;
    let floor = raw.rate() / COMMITS_PER_LIFECYCLE;
    let git_count = (lifecycles / 10).max(20);
    let measured = [
        (lifecycles_on(dir.path(), Kind::Memory, lifecycles, 1)?, 1000.0),
        (lifecycles_on(dir.path(), Kind::Memory, lifecycles, threads)?, 1000.0),
        (lifecycles_on(dir.path(), Kind::Git, git_count, 1)?, 0.0),
    ];
    let sequential = measured.first().map_or(1.0, |(row, _)| row.rate());
    let mut rows = vec![raw];
    for (row, target) in measured {
        let mut note = format!("{:.2}x the rate of 6 sequential raw commits", row.rate() / floor);
        if target > 0.0 {
            note.push_str(&format!("; target >= {target:.0}/s"));
        }
        rows.push(Row { note, ..row });
    }
    rows.extend(crate::bench_ledger::run(dir.path(), ledger_events)?);
    rows.extend(crate::bench_policy::run(lifecycles.max(1000) * 10, sequential)?);
    match postgres {
        Some(config) => rows.extend(crate::bench_connector::run(config, 500)?),
        None => {
            eprintln!("no PostgreSQL given (--postgres or WRIT_BENCH_POSTGRES): connector figures skipped")
        }
    }
    crate::table::print(&rows, json, "n");
    Ok(())
}

/// Baseline: single-row INSERT transactions with the same durability settings as the store.
fn raw_commits(path: &Path, count: usize) -> anyhow::Result<Row> {
    let connection = rusqlite::Connection::open(path)?;
    connection.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; CREATE TABLE t (x BLOB NOT NULL)",
    )?;
    let payload = vec![7u8; 400];
    let bar = progress(count, "raw durable commits");
    let start = Instant::now();
    for _ in 0..count {
        connection.execute("INSERT INTO t (x) VALUES (?1)", [&payload])?;
        bar.inc(1);
    }
    let seconds = start.elapsed().as_secs_f64();
    bar.finish_and_clear();
    Ok(Row {
        name: "raw durable commit (baseline)".into(),
        count,
        seconds,
        note: "SQLite WAL synchronous=FULL, 1 row per commit".into(),
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Memory,
    Git,
}

fn lifecycles_on(dir: &Path, kind: Kind, count: usize, threads: usize) -> anyhow::Result<Row> {
    let label = if kind == Kind::Git { "git" } else { "memory" };
    let db = dir.join(format!("{label}-{threads}.db"));
    let hmac = writ_ledger::sensitive::HmacKey::from_bytes([8; 32]);
    let engine =
        writ_server::compose::engine_over(Arc::new(SqliteStore::open(&db, OpenMode::Create)?), Some(hmac));
    let admin = Actor::System(SystemActor::Admin);
    let subjects: Vec<String> = (0..threads).map(|t| format!("dave-{t}")).collect();
    for person in ["alice", "bob", "carol"].into_iter().chain(subjects.iter().map(String::as_str)) {
        engine.add_identity(admin.clone(), IdentityName::parse(person)?, IdentityKind::Human, None, None)?;
    }
    let target = TargetName::parse("bench")?;
    let (connector, settings) = match kind {
        Kind::Git => {
            let repo = dir.join(format!("bench-repo-{threads}"));
            make_repo(&repo)?;
            (ConnectorKind::parse("git")?, vec![("repo".to_owned(), repo.display().to_string())])
        }
        Kind::Memory => {
            (ConnectorKind::parse("memory")?, vec![("entitlements".to_owned(), "read".to_owned())])
        }
    };
    engine.add_target(admin, target, connector, settings)?;
    let bar = progress(count, &format!("lifecycles on {label} target, {threads} thread(s)"));
    let start = Instant::now();
    fan_out(threads, |t| {
        let subject = IdentityName::parse(subjects.get(t).map_or("", String::as_str))?;
        let share = count / threads + usize::from(t < count % threads);
        for i in 0..share {
            lifecycle(&engine, &subject, if i % 2 == 0 { OpAction::Grant } else { OpAction::Revoke })?;
            bar.inc(1);
        }
        Ok(())
    })?;
    let seconds = start.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let name = match (kind, threads) {
        (Kind::Git, _) => "lifecycle request→review, git target".to_owned(),
        (Kind::Memory, 1) => "lifecycle request→review, in-memory target".to_owned(),
        (Kind::Memory, n) => format!("lifecycle request→review, in-memory, {n} concurrent"),
    };
    Ok(Row { name, count, seconds, note: String::new() })
}

fn lifecycle(engine: &Engine, subject: &IdentityName, action: OpAction) -> anyhow::Result<()> {
    let (alice, bob, carol) =
        (IdentityName::parse("alice")?, IdentityName::parse("bob")?, IdentityName::parse("carol")?);
    let input = RequestInput {
        requester: alice,
        on_behalf_of: None,
        ops: vec![RequestedOp {
            action,
            identity: subject.clone(),
            entitlement: EntitlementRef::parse("bench:read")?,
            duration: None,
        }],
        justification: Justification::parse("benchmark")?,
        refs: vec![],
        event: BusinessEvent::Adhoc,
        window: None,
        rollback_owner: None,
    };
    let id = engine.request(input, writ_engine::random_bits()?)?.change.id;
    engine.approve(&id, &bob, None, None)?;
    engine.execute(&id, None)?;
    engine.verify(&id)?;
    let done = engine.review(&id, &carol, "ok".into())?;
    if done.change.state != writ_core::change::ChangeState::Reviewed {
        bail!("{id} ended {}", done.change.state);
    }
    Ok(())
}

fn make_repo(repo: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(repo)?;
    std::fs::write(repo.join("access.toml"), "[entitlements.read]\nmembers = []\n")?;
    for args in [
        vec!["init", "-q", "-b", "main"],
        vec!["add", "access.toml"],
        vec!["-c", "user.name=Bench", "-c", "user.email=bench@example.invalid", "commit", "-q", "-m", "init"],
    ] {
        let status = Command::new("git").arg("-C").arg(repo).args(&args).status().context("running git")?;
        if !status.success() {
            bail!("git {} failed", args.join(" "));
        }
    }
    Ok(())
}
