//! SQLite's group commit: the queue and leadership are `writ_store::group_commit`; this is how
//! one batch runs.
//!
//! A batch runs each job in its own savepoint (a lone job needs none) inside one
//! `BEGIN IMMEDIATE` transaction and commits once (one fsync with `synchronous=FULL`); callers
//! are answered only after the commit.
//! A job that fails is rolled back to its savepoint and answered with its error; the others still
//! commit. If the commit itself fails, every job of the batch gets the error and none of them is
//! visible (fail closed).

use rusqlite::{Connection, Transaction, TransactionBehavior};
use writ_store::Result;
use writ_store::group_commit::{GroupCommit, copy};

use crate::map_err_ref;

/// Most jobs committed by one transaction.
const MAX_BATCH: usize = 512;

/// One unit of work: statements run inside the batch transaction, returning ledger indices.
pub(crate) type Work = Box<dyn FnOnce(&Transaction<'_>) -> Result<Vec<u64>> + Send>;

/// The write connection, group-committed.
pub(crate) type Writer = GroupCommit<Connection, Work, Vec<u64>>;

pub(crate) fn writer(connection: Connection) -> Writer {
    GroupCommit::new(connection, MAX_BATCH, commit_batch)
}

fn commit_batch(connection: &mut Connection, batch: Vec<Work>) -> Vec<Result<Vec<u64>>> {
    let tx = match connection.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(error) => return batch.iter().map(|_| Err(map_err_ref(&error))).collect(),
    };
    // A lone job needs no savepoint: the transaction itself isolates it.
    if batch.len() == 1 {
        let mut batch = batch;
        let Some(work) = batch.pop() else { return Vec::new() };
        let answer = match work(&tx) {
            Ok(indices) => tx.commit().map(|()| indices).map_err(|e| map_err_ref(&e)),
            Err(error) => Err(error), // dropping `tx` rolls it back
        };
        return vec![answer];
    }
    let mut outcomes = Vec::with_capacity(batch.len());
    let mut broken = None;
    for work in batch {
        if broken.is_some() {
            outcomes.push(Ok(Vec::new()));
            continue;
        }
        match run_in_savepoint(&tx, work) {
            Ok(outcome) => outcomes.push(outcome),
            Err(error) => {
                broken = Some(error);
                outcomes.push(Ok(Vec::new()));
            }
        }
    }
    let committed = match broken {
        Some(error) => Err(error),
        None => tx.commit().map_err(|e| map_err_ref(&e)),
    };
    match committed {
        Ok(()) => outcomes,
        Err(error) => outcomes.iter().map(|_| Err(copy(&error))).collect(),
    }
}

/// Runs one job in a savepoint. The outer `Err` means the transaction itself is broken (the
/// savepoint could not be opened or ended), which fails the whole batch.
fn run_in_savepoint(tx: &Transaction<'_>, work: Work) -> Result<Result<Vec<u64>>> {
    let run = |sql: &str| {
        tx.prepare_cached(sql).and_then(|mut statement| statement.execute([])).map_err(|e| map_err_ref(&e))
    };
    run("SAVEPOINT job")?;
    let outcome = work(tx);
    if outcome.is_err() {
        run("ROLLBACK TO job")?;
    }
    run("RELEASE job")?;
    Ok(outcome)
}
