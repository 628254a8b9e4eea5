//! Findings in SQLite: each insert or state change appends its ledger event in the same
//! transaction; a reconciliation's findings, snapshot and run event are one transaction.

use rusqlite::{OptionalExtension, Row, Transaction, params};
use writ_core::change::ChangeId;
use writ_core::finding::{Finding, FindingState};
use writ_core::time::Timestamp;
use writ_store::{FindingExtra, FindingStore, NewEvent, ReconcileCommit, Result, StoreError};

use crate::{SqliteStore, append, corrupt, map_err};

const COLUMNS: &str = "id, kind, subject, change_id, detail, state, opened_ms, updated_ms, exception, \
                       severity, controls, scope, evidence, remediation, seen_ms";

fn parse(row: &Row<'_>) -> rusqlite::Result<Result<Finding>> {
    let state: String = row.get(5)?;
    let change: Option<String> = row.get(3)?;
    let extra = FindingExtra {
        severity: row.get(9)?,
        controls: row.get(10)?,
        scope: row.get(11)?,
        evidence: row.get(12)?,
        remediation: row.get(13)?,
        seen_ms: row.get(14)?,
    };
    let kind: String = row.get(1)?;
    let opened = Timestamp::from_millis(row.get(6)?);
    let mut finding = Finding::new(row.get(0)?, &kind, &row.get::<_, String>(2)?, row.get(4)?, opened);
    finding.updated_at = Timestamp::from_millis(row.get(7)?);
    finding.exception = row.get(8)?;
    Ok((|| {
        finding.change =
            change.as_deref().map(ChangeId::parse).transpose().map_err(corrupt("finding change"))?;
        finding.state = FindingState::parse(&state).map_err(corrupt("finding state"))?;
        extra.apply(&mut finding)?;
        Ok(finding)
    })())
}

fn one_index(indices: Vec<u64>) -> Result<u64> {
    indices.first().copied().ok_or_else(|| StoreError::Other("no index assigned".into()))
}

/// Writes a finding's row (no event: the caller appends the one that records it).
pub(crate) fn insert_row(tx: &Transaction<'_>, f: &Finding) -> Result<()> {
    let x = FindingExtra::of(f);
    tx.prepare_cached(
        "INSERT INTO findings (id, kind, subject, change_id, detail, state, opened_ms, updated_ms, exception,
                               severity, controls, scope, evidence, remediation, seen_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
    )
    .and_then(|mut s| {
        s.execute(params![
            f.id,
            f.kind,
            f.subject,
            f.change.as_ref().map(ChangeId::as_str),
            f.detail,
            f.state.as_str(),
            f.opened_at.as_millis(),
            f.updated_at.as_millis(),
            f.exception,
            x.severity,
            x.controls,
            x.scope,
            x.evidence,
            x.remediation,
            x.seen_ms,
        ])
    })
    .map_err(|e| match map_err(e) {
        StoreError::Conflict(_) => StoreError::Conflict(format!("finding {} already exists", f.id)),
        other => other,
    })?;
    Ok(())
}

/// Stores a finding's new state and details if it is still in `expected`.
fn update_row(tx: &Transaction<'_>, f: &Finding, expected: FindingState) -> Result<()> {
    let x = FindingExtra::of(f);
    let changed = tx
        .prepare_cached(
            "UPDATE findings SET detail = ?2, state = ?3, updated_ms = ?4, exception = ?5, severity = ?6,
                 controls = ?7, scope = ?8, evidence = ?9, remediation = ?10, seen_ms = ?11
             WHERE id = ?1 AND state = ?12",
        )
        .and_then(|mut s| {
            s.execute(params![
                f.id,
                f.detail,
                f.state.as_str(),
                f.updated_at.as_millis(),
                f.exception,
                x.severity,
                x.controls,
                x.scope,
                x.evidence,
                x.remediation,
                x.seen_ms,
                expected.as_str()
            ])
        })
        .map_err(map_err)?;
    if changed != 1 {
        return Err(StoreError::Conflict(format!(
            "finding {} is not {expected} any more (or does not exist); read it again",
            f.id
        )));
    }
    Ok(())
}

fn reconcile(tx: &Transaction<'_>, commit: &ReconcileCommit) -> Result<Vec<u64>> {
    for (finding, _) in &commit.opened {
        insert_row(tx, finding)?;
    }
    for (finding, expected, _) in &commit.updated {
        update_row(tx, finding, *expected)?;
    }
    let evidence = commit.evidence_hex();
    for id in &commit.seen {
        tx.prepare_cached("UPDATE findings SET seen_ms = ?2, evidence = ?3 WHERE id = ?1")
            .and_then(|mut s| s.execute(params![id, commit.at.as_millis(), evidence]))
            .map_err(map_err)?;
    }
    let blob = &commit.snapshot;
    tx.prepare_cached(
        "INSERT OR IGNORE INTO evidence (sha256, media_type, bytes, created_ms) VALUES (?1, ?2, ?3, ?4)",
    )
    .and_then(|mut s| {
        s.execute(params![blob.sha256.as_slice(), blob.media_type, blob.bytes, commit.at.as_millis()])
    })
    .map_err(map_err)?;
    append(tx, &commit.events())
}

impl SqliteStore {
    fn query_findings(&self, sql: &str, arg: Option<&str>) -> Result<Vec<Finding>> {
        let connection = self.lock()?;
        let mut statement = connection.prepare_cached(sql).map_err(map_err)?;
        let rows = statement.query_map([arg], parse).map_err(map_err)?;
        rows.map(|row| row.map_err(map_err)?).collect()
    }
}

impl FindingStore for SqliteStore {
    fn open_finding(&self, finding: &Finding, event: &NewEvent) -> Result<u64> {
        let (finding, event) = (finding.clone(), event.clone());
        one_index(self.writer.submit(Box::new(move |tx| {
            insert_row(tx, &finding)?;
            append(tx, std::slice::from_ref(&event))
        }))?)
    }

    fn update_finding(&self, finding: &Finding, expected: FindingState, event: &NewEvent) -> Result<u64> {
        let (finding, event) = (finding.clone(), event.clone());
        one_index(self.writer.submit(Box::new(move |tx| {
            update_row(tx, &finding, expected)?;
            append(tx, std::slice::from_ref(&event))
        }))?)
    }

    fn finding(&self, id: &str) -> Result<Option<Finding>> {
        let connection = self.lock()?;
        connection
            .prepare_cached(&format!("SELECT {COLUMNS} FROM findings WHERE id = ?1"))
            .and_then(|mut s| s.query_row([id], parse))
            .optional()
            .map_err(map_err)?
            .transpose()
    }

    fn findings(&self, state: Option<FindingState>) -> Result<Vec<Finding>> {
        let sql = format!("SELECT {COLUMNS} FROM findings WHERE (?1 IS NULL OR state = ?1) ORDER BY id");
        self.query_findings(&sql, state.map(FindingState::as_str))
    }

    fn findings_remediated_by(&self, change: &ChangeId) -> Result<Vec<Finding>> {
        let sql = format!("SELECT {COLUMNS} FROM findings WHERE remediation = ?1 ORDER BY id");
        self.query_findings(&sql, Some(change.as_str()))
    }

    fn findings_in_scope(&self, scope: &str) -> Result<Vec<Finding>> {
        self.query_findings(
            &format!("SELECT {COLUMNS} FROM findings WHERE scope = ?1 ORDER BY id"),
            Some(scope),
        )
    }

    fn record_reconcile(&self, commit: ReconcileCommit) -> Result<Vec<u64>> {
        self.writer.submit(Box::new(move |tx| reconcile(tx, &commit)))
    }
}

/// Moves an account's last use forward (never back).
pub(crate) fn upsert_usage(tx: &Transaction<'_>, target: &str, account: &str, at: Timestamp) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO usage (target, account, last_ms) VALUES (?1, ?2, ?3)
         ON CONFLICT (target, account) DO UPDATE SET last_ms = MAX(last_ms, excluded.last_ms)",
    )
    .and_then(|mut s| s.execute(params![target, account, at.as_millis()]))
    .map_err(map_err)?;
    Ok(())
}

impl writ_store::UsageStore for SqliteStore {
    fn report_usage(
        &self,
        target: &writ_core::name::TargetName,
        entries: &[(String, Timestamp)],
        event: &NewEvent,
    ) -> Result<u64> {
        let (target, entries, event) = (target.to_string(), entries.to_vec(), event.clone());
        one_index(self.writer.submit(Box::new(move |tx| {
            for (account, at) in &entries {
                upsert_usage(tx, &target, account, *at)?;
            }
            append(tx, std::slice::from_ref(&event))
        }))?)
    }

    fn usage(&self, target: &writ_core::name::TargetName) -> Result<Vec<(String, Timestamp)>> {
        let connection = self.lock()?;
        let mut statement = connection
            .prepare_cached("SELECT account, last_ms FROM usage WHERE target = ?1 ORDER BY account")
            .map_err(map_err)?;
        let rows = statement
            .query_map([target.as_str()], |row| {
                Ok((row.get::<_, String>(0)?, Timestamp::from_millis(row.get(1)?)))
            })
            .map_err(map_err)?;
        rows.map(|row| row.map_err(map_err)).collect()
    }

    fn all_usage(&self) -> Result<Vec<(writ_core::name::TargetName, String, Timestamp)>> {
        let connection = self.lock()?;
        let mut statement = connection
            .prepare_cached("SELECT target, account, last_ms FROM usage ORDER BY target, account")
            .map_err(map_err)?;
        let rows = statement
            .query_map([], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?, Timestamp::from_millis(row.get(2)?)))
            })
            .map_err(map_err)?;
        rows.map(|row| {
            let (target, account, at) = row.map_err(map_err)?;
            let target = writ_core::name::TargetName::parse(&target).map_err(corrupt("usage target"))?;
            Ok((target, account, at))
        })
        .collect()
    }
}
