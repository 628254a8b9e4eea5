//! Findings in PostgreSQL: each insert or state change appends its ledger event in the same
//! transaction; a reconciliation's findings, snapshot and run event are one transaction.

use writ_core::change::ChangeId;
use writ_core::finding::{Finding, FindingState};
use writ_core::time::Timestamp;
use writ_store::{FindingExtra, FindingStore, NewEvent, ReconcileCommit, Result, StoreError};

use crate::{PostgresStore, Tx, append, conflict_as, corrupt, map_err};

const COLUMNS: &str = "id, kind, subject, change_id, detail, state, opened_ms, updated_ms, exception, \
                       severity, controls, scope, evidence, remediation, seen_ms";

fn parse(row: &postgres::Row) -> Result<Finding> {
    let kind: String = row.get(1);
    let mut finding =
        Finding::new(row.get(0), &kind, row.get(2), row.get(4), Timestamp::from_millis(row.get(6)));
    finding.change =
        row.get::<_, Option<&str>>(3).map(ChangeId::parse).transpose().map_err(corrupt("finding change"))?;
    finding.state = FindingState::parse(row.get(5)).map_err(corrupt("finding state"))?;
    finding.updated_at = Timestamp::from_millis(row.get(7));
    finding.exception = row.get(8);
    FindingExtra {
        severity: row.get(9),
        controls: row.get(10),
        scope: row.get(11),
        evidence: row.get(12),
        remediation: row.get(13),
        seen_ms: row.get(14),
    }
    .apply(&mut finding)?;
    Ok(finding)
}

fn one_index(indices: &[u64]) -> Result<u64> {
    indices.first().copied().ok_or_else(|| StoreError::Other("no index assigned".into()))
}

/// Writes a finding's row (no event: the caller appends the one that records it).
pub(crate) fn insert_row(tx: &mut Tx<'_, '_>, f: &Finding) -> Result<()> {
    let x = FindingExtra::of(f);
    tx.execute(
        "INSERT INTO findings (id, kind, subject, change_id, detail, state, opened_ms, updated_ms, exception,
                               severity, controls, scope, evidence, remediation, seen_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
        &[
            &f.id,
            &f.kind,
            &f.subject,
            &f.change.as_ref().map(ChangeId::as_str),
            &f.detail,
            &f.state.as_str(),
            &f.opened_at.as_millis(),
            &f.updated_at.as_millis(),
            &f.exception,
            &x.severity,
            &x.controls,
            &x.scope,
            &x.evidence,
            &x.remediation,
            &x.seen_ms,
        ],
    )
    .map_err(map_err)
    .map_err(conflict_as(format!("finding {} already exists", f.id)))?;
    Ok(())
}

/// Stores a finding's new state and details if it is still in `expected`.
fn update_row(tx: &mut Tx<'_, '_>, f: &Finding, expected: FindingState) -> Result<()> {
    let x = FindingExtra::of(f);
    let changed = tx
        .execute(
            "UPDATE findings SET detail = $2, state = $3, updated_ms = $4, exception = $5, severity = $6,
                 controls = $7, scope = $8, evidence = $9, remediation = $10, seen_ms = $11
             WHERE id = $1 AND state = $12",
            &[
                &f.id,
                &f.detail,
                &f.state.as_str(),
                &f.updated_at.as_millis(),
                &f.exception,
                &x.severity,
                &x.controls,
                &x.scope,
                &x.evidence,
                &x.remediation,
                &x.seen_ms,
                &expected.as_str(),
            ],
        )
        .map_err(map_err)?;
    if changed != 1 {
        return Err(StoreError::Conflict(format!(
            "finding {} is not {expected} any more (or does not exist); read it again",
            f.id
        )));
    }
    Ok(())
}

fn reconcile(tx: &mut Tx<'_, '_>, next: i64, commit: &ReconcileCommit) -> Result<(Vec<u64>, i64)> {
    for (finding, _) in &commit.opened {
        insert_row(tx, finding)?;
    }
    for (finding, expected, _) in &commit.updated {
        update_row(tx, finding, *expected)?;
    }
    if !commit.seen.is_empty() {
        tx.execute(
            "UPDATE findings SET seen_ms = $2, evidence = $3 WHERE id = ANY($1)",
            &[&commit.seen, &commit.at.as_millis(), &commit.evidence_hex()],
        )
        .map_err(map_err)?;
    }
    let blob = &commit.snapshot;
    tx.execute(
        "INSERT INTO evidence (sha256, media_type, bytes, created_ms) VALUES ($1, $2, $3, $4)
         ON CONFLICT (sha256) DO NOTHING",
        &[&blob.sha256.as_slice(), &blob.media_type, &blob.bytes, &commit.at.as_millis()],
    )
    .map_err(map_err)?;
    let events = commit.events();
    let indices = append(tx, next, &events)?;
    let count = i64::try_from(events.len()).map_err(|_| StoreError::Other("too many events".into()))?;
    Ok((indices, count))
}

impl PostgresStore {
    fn query_findings(&self, sql: &str, arg: Option<&str>) -> Result<Vec<Finding>> {
        let mut client = self.lock()?;
        let rows = client.cached().query(sql, &[&arg]).map_err(map_err)?;
        rows.iter().map(parse).collect()
    }
}

impl FindingStore for PostgresStore {
    fn open_finding(&self, finding: &Finding, event: &NewEvent) -> Result<u64> {
        let (f, event) = (finding.clone(), event.clone());
        self.write(move |tx, next| {
            insert_row(tx, &f)?;
            Ok((one_index(&append(tx, next, std::slice::from_ref(&event))?)?, 1))
        })
    }

    fn update_finding(&self, finding: &Finding, expected: FindingState, event: &NewEvent) -> Result<u64> {
        let (f, event) = (finding.clone(), event.clone());
        self.write(move |tx, next| {
            update_row(tx, &f, expected)?;
            Ok((one_index(&append(tx, next, std::slice::from_ref(&event))?)?, 1))
        })
    }

    fn finding(&self, id: &str) -> Result<Option<Finding>> {
        let mut client = self.lock()?;
        let row = client
            .cached()
            .query_opt(&format!("SELECT {COLUMNS} FROM findings WHERE id = $1"), &[&id])
            .map_err(map_err)?;
        row.as_ref().map(parse).transpose()
    }

    fn findings(&self, state: Option<FindingState>) -> Result<Vec<Finding>> {
        let sql =
            format!("SELECT {COLUMNS} FROM findings WHERE ($1::TEXT IS NULL OR state = $1) ORDER BY id");
        self.query_findings(&sql, state.map(FindingState::as_str))
    }

    fn findings_remediated_by(&self, change: &ChangeId) -> Result<Vec<Finding>> {
        let sql = format!("SELECT {COLUMNS} FROM findings WHERE remediation = $1 ORDER BY id");
        self.query_findings(&sql, Some(change.as_str()))
    }

    fn findings_in_scope(&self, scope: &str) -> Result<Vec<Finding>> {
        self.query_findings(
            &format!("SELECT {COLUMNS} FROM findings WHERE scope = $1 ORDER BY id"),
            Some(scope),
        )
    }

    fn record_reconcile(&self, commit: ReconcileCommit) -> Result<Vec<u64>> {
        self.write(move |tx, next| reconcile(tx, next, &commit))
    }
}

/// Moves an account's last use forward (never back).
pub(crate) fn upsert_usage(tx: &mut Tx<'_, '_>, target: &str, account: &str, at: Timestamp) -> Result<()> {
    tx.execute(
        "INSERT INTO usage (target, account, last_ms) VALUES ($1, $2, $3)
         ON CONFLICT (target, account) DO UPDATE SET last_ms = GREATEST(usage.last_ms, excluded.last_ms)",
        &[&target, &account, &at.as_millis()],
    )
    .map_err(map_err)?;
    Ok(())
}

impl writ_store::UsageStore for PostgresStore {
    fn report_usage(
        &self,
        target: &writ_core::name::TargetName,
        entries: &[(String, Timestamp)],
        event: &NewEvent,
    ) -> Result<u64> {
        let (target, entries, event) = (target.to_string(), entries.to_vec(), event.clone());
        self.write(move |tx, next| {
            for (account, at) in &entries {
                upsert_usage(tx, &target, account, *at)?;
            }
            Ok((one_index(&append(tx, next, std::slice::from_ref(&event))?)?, 1))
        })
    }

    fn usage(&self, target: &writ_core::name::TargetName) -> Result<Vec<(String, Timestamp)>> {
        let mut client = self.lock()?;
        let rows = client
            .cached()
            .query(
                "SELECT account, last_ms FROM usage WHERE target = $1 ORDER BY account COLLATE \"C\"",
                &[&target.as_str()],
            )
            .map_err(map_err)?;
        Ok(rows.iter().map(|row| (row.get::<_, String>(0), Timestamp::from_millis(row.get(1)))).collect())
    }

    fn all_usage(&self) -> Result<Vec<(writ_core::name::TargetName, String, Timestamp)>> {
        let mut client = self.lock()?;
        let rows = client
            .cached()
            .query("SELECT target, account, last_ms FROM usage ORDER BY target COLLATE \"C\", account COLLATE \"C\"", &[])
            .map_err(map_err)?;
        rows.iter()
            .map(|row| {
                let target =
                    writ_core::name::TargetName::parse(row.get(0)).map_err(corrupt("usage target"))?;
                Ok((target, row.get::<_, String>(1), Timestamp::from_millis(row.get(2))))
            })
            .collect()
    }
}
