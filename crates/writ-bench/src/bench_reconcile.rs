//! `writ-bench reconcile`: one reconciliation of a synthetic target holding M grants over N
//! identities against a real SQLite store holding the grants Writ implemented there, beside a
//! baseline measured in the same run: reading the same rows (the target's grants from the store,
//! page by page in key order as reconciliation reads them, and the target's holdings) without
//! classifying them. Peak resident memory is measured for each (Linux
//! `VmHWM`, reset through `/proc/self/clear_refs` before each step).
//!
//! The store is filled with SQL in one transaction (setup, not measured): identities and grants
//! as rows, with no events, since this measures reconciliation, not registration. The target
//! holds every grant but a thousandth (missing) and a thousandth more that Writ never approved
//! (unapproved), so the run raises findings as a real one would.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use writ_connector::{
    ApplyContext, ApplyReport, Connector, ConnectorError, Holdings, Observed, PlanStep, TargetOp,
};
use writ_core::identity::{Actor, ConnectorKind, SystemActor, Target};
use writ_core::name::{EntitlementName, TargetName};
use writ_engine::{ConnectorFactory, Engine, SystemClock};
use writ_store::GrantStore;
use writ_store_sqlite::{OpenMode, SqliteStore};

use crate::table::Row;

/// Entitlements on the synthetic target.
const ENTITLEMENTS: usize = 1000;

/// The (identity, entitlement) of grant `g` over `identities` identities: the `g / identities`th
/// entitlement of identity `g % identities`, distinct for each g while an identity has fewer
/// than [`ENTITLEMENTS`] grants (7 is prime to 1000).
fn grant(g: usize, identities: usize) -> (usize, usize) {
    let i = g % identities;
    (i, ((g / identities) * 7 + i) % ENTITLEMENTS)
}

fn identity(i: usize) -> String {
    format!("id-{i:07}")
}

fn entitlement(e: usize) -> String {
    format!("role-{e:04}")
}

/// A target whose holdings are generated: every grant `g` but those with `g % 1000 == 0`
/// (missing), and as many more that the store does not have (unapproved).
struct Synthetic {
    identities: usize,
    grants: usize,
}

impl Connector for Synthetic {
    fn entitlements(&self) -> writ_connector::Result<Vec<EntitlementName>> {
        (0..ENTITLEMENTS).map(|e| EntitlementName::parse(&entitlement(e)).map_err(invalid)).collect()
    }
    fn plan(&self, _: &[TargetOp]) -> writ_connector::Result<Vec<PlanStep>> {
        Ok(Vec::new())
    }
    fn apply(&self, _: &ApplyContext, _: &[TargetOp]) -> writ_connector::Result<ApplyReport> {
        Err(invalid("the synthetic target takes no writes"))
    }
    fn observe(&self, _: &[EntitlementName]) -> writ_connector::Result<Observed> {
        Ok(Observed::default())
    }
    fn holdings(&self) -> writ_connector::Result<Holdings> {
        let names: Vec<EntitlementName> = self.entitlements()?;
        let mut held = Vec::with_capacity(self.grants + self.grants / 1000);
        for g in (0..self.grants).filter(|g| g % 1000 != 0) {
            let (i, e) = grant(g, self.identities);
            held.push((identity(i), names.get(e).cloned().ok_or_else(|| invalid("entitlement"))?));
        }
        for extra in 0..self.grants / 1000 {
            let (i, e) = grant(self.grants + extra, self.identities);
            held.push((
                identity(i),
                names.get((e + 1) % ENTITLEMENTS).cloned().ok_or_else(|| invalid("entitlement"))?,
            ));
        }
        let mut holdings = Holdings { held, ..Holdings::default() };
        holdings.normalize();
        Ok(holdings)
    }
}

fn invalid(detail: impl std::fmt::Display) -> ConnectorError {
    ConnectorError::Invalid { target: "synthetic".into(), detail: detail.to_string() }
}

struct Factory(Arc<Synthetic>);

impl ConnectorFactory for Factory {
    fn connect(&self, _: &Target) -> Result<Arc<dyn Connector>, ConnectorError> {
        Ok(self.0.clone())
    }
}

/// Peak resident memory since the last reset, in bytes (0 where /proc does not say).
fn peak() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn gib(bytes: u64) -> String {
    format!("{:.2} GiB peak", bytes as f64 / f64::from(1u32 << 30))
}

pub fn run(identities: usize, grants: usize, json: bool) -> anyhow::Result<()> {
    if identities == 0 || grants < identities || grants / identities >= ENTITLEMENTS {
        bail!("--identities must be at least 1, and --grants from --identities to 999 times --identities");
    }
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("reconcile.db");
    let store = Arc::new(SqliteStore::open(&db, OpenMode::Create)?);
    let target = Arc::new(Synthetic { identities, grants });
    let engine = Engine::new(store.clone(), Arc::new(Factory(target.clone())), Arc::new(SystemClock))
        .with_hmac_key(Arc::new(writ_ledger::sensitive::HmacKey::from_bytes([9; 32])));
    let name = TargetName::parse("synthetic")?;
    engine.add_target(
        Actor::System(SystemActor::Admin),
        name.clone(),
        ConnectorKind::parse("memory")?,
        vec![],
    )?;
    let filling = crate::table::progress(grants, "filling the store");
    let change = writ_core::change::ChangeId::generate(engine.now(), 1);
    fill(&db, identities, grants, change.as_str(), &filling).context("filling the store")?;
    filling.finish_and_clear();

    reset_peak();
    let start = Instant::now();
    let rows = count_grants(store.as_ref(), &name)? + target.holdings()?.held.len();
    let read = Row::new("read the same rows (baseline)", rows, start.elapsed().as_secs_f64(), gib(peak()));

    reset_peak();
    let start = Instant::now();
    let report = engine.reconcile_target(Actor::System(SystemActor::Admin), &name)?;
    let seconds = start.elapsed().as_secs_f64();
    let memory = peak();
    let opened = report.opened.len();
    let target_met = seconds <= 10.0 && memory <= 2 << 30;
    let note = format!(
        "{}, {:.2}x the read; {opened} findings; {identities} identities; target 1M x 10M in <= 10 s and <= 2 GiB{}",
        gib(memory),
        seconds / read.seconds.max(1e-9),
        if grants >= 10_000_000 { if target_met { " (met)" } else { " (not met)" } } else { "" }
    );
    let reconciled = Row::new("reconcile (classify, findings, record)", rows, seconds, note);
    crate::table::print(&[read, reconciled], json, "rows");
    Ok(())
}

/// The grants on `target`, read page by page in key order as reconciliation reads them.
fn count_grants(store: &SqliteStore, target: &TargetName) -> anyhow::Result<usize> {
    let (mut count, mut after): (usize, Option<(String, String)>) = (0, None);
    loop {
        let page = store.grants_on(target, after.as_ref().map(|(i, e)| (i.as_str(), e.as_str())), 20_000)?;
        count += page.len();
        match page.last() {
            Some(last) if page.len() == 20_000 => {
                after = Some((last.identity.clone(), last.entitlement.clone()))
            }
            _ => return Ok(count),
        }
    }
}

/// Identities, one change and the grants, as rows in one transaction.
fn fill(
    db: &std::path::Path,
    identities: usize,
    grants: usize,
    change: &str,
    bar: &indicatif::ProgressBar,
) -> anyhow::Result<()> {
    let mut connection = rusqlite::Connection::open(db)?;
    connection.execute_batch("PRAGMA foreign_keys = OFF; PRAGMA synchronous = OFF")?;
    let tx = connection.transaction()?;
    {
        let mut add =
            tx.prepare("INSERT INTO identities (name, kind, created_ms) VALUES (?1, 'service_account', 0)")?;
        for i in 0..identities {
            add.execute([identity(i)])?;
        }
        let mut add = tx.prepare(
            "INSERT INTO grants (identity, target, entitlement, change_id, granted_ms, expires_ms)
             VALUES (?1, 'synthetic', ?2, ?3, 0, NULL)",
        )?;
        for g in 0..grants {
            let (i, e) = grant(g, identities);
            add.execute([identity(i), entitlement(e), change.to_owned()])?;
            if g % 100_000 == 0 {
                bar.set_position(g as u64);
            }
        }
    }
    tx.commit()?;
    Ok(())
}
