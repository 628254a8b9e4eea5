//! Group commit for PostgreSQL: the queue and leadership are `writ_store::group_commit`; this is
//! how one batch runs. Every write takes the `log_head` row lock for its transaction, so writes
//! to one database are serial across all instances and each one pays a WAL flush while holding
//! the lock. Batching the writes of one process into one transaction pays that flush once per
//! batch.
//!
//! The leader opens a transaction on the writer connection, locks `log_head`, runs each queued
//! job in its own savepoint (a lone job needs none) at the next free index, advances `log_head`
//! once and commits. Callers are answered only after the commit; a job that fails is rolled back
//! to its savepoint and answered with its error while the others commit; if the commit fails,
//! every job of the batch gets the error and none is visible (fail closed).

use std::collections::HashMap;

use postgres::{Client, Statement};
use writ_store::Result;
use writ_store::group_commit::{GroupCommit, copy};

use crate::{Tx, map_err};

/// Most jobs committed by one transaction.
const MAX_BATCH: usize = 256;

/// One unit of work: runs inside the batch transaction with the next free ledger index and
/// returns how many events it appended there.
pub(crate) type Work = Box<dyn FnOnce(&mut Tx<'_, '_>, i64) -> Result<i64> + Send>;

/// The writer connection and the statements prepared on it.
pub(crate) struct Connection {
    client: Client,
    prepared: HashMap<String, Statement>,
}

/// The writer connection, group-committed.
pub(crate) type Writer = GroupCommit<Connection, Work, ()>;

pub(crate) fn writer(client: Client) -> Writer {
    GroupCommit::new(Connection { client, prepared: HashMap::new() }, MAX_BATCH, commit_batch)
}

fn commit_batch(connection: &mut Connection, batch: Vec<Work>) -> Vec<Result<()>> {
    let mut answers: Vec<Result<()>> = Vec::with_capacity(batch.len());
    let Connection { client, prepared } = connection;
    match run_batch(client, prepared, batch, &mut answers) {
        Ok(()) => answers,
        Err(error) => answers.iter().map(|_| Err(copy(&error))).collect(),
    }
}

/// Runs the jobs and commits. Each job's own result goes into `answers`; the returned error, if
/// any, is the batch's (the transaction broke or did not commit) and overrides them all.
fn run_batch(
    client: &mut Client,
    prepared: &mut HashMap<String, Statement>,
    batch: Vec<Work>,
    answers: &mut Vec<Result<()>>,
) -> Result<()> {
    let lone = batch.len() == 1;
    let mut jobs = batch.into_iter();
    let mut tx = match client.transaction() {
        Ok(tx) => tx,
        Err(error) => {
            answers.extend(jobs.map(|_| Ok(())));
            return Err(map_err(error));
        }
    };
    let start = match tx.query_one("SELECT next FROM log_head WHERE id = 1 FOR UPDATE", &[]) {
        Ok(row) => row.get::<_, i64>(0),
        Err(error) => {
            answers.extend(jobs.map(|_| Ok(())));
            return Err(map_err(error));
        }
    };
    let mut next = start;
    if lone {
        // A lone job needs no savepoint: the transaction itself isolates it.
        if let Some(job) = jobs.next() {
            match job(&mut Tx { client: &mut tx, prepared }, next) {
                Ok(appended) => {
                    next += appended;
                    answers.push(Ok(()));
                }
                Err(error) => {
                    answers.push(Err(error));
                    return Ok(()); // dropping `tx` rolls it back; nothing to commit
                }
            }
        }
    } else {
        for job in jobs.by_ref() {
            let mut savepoint = match tx.savepoint("job") {
                Ok(savepoint) => savepoint,
                Err(error) => {
                    answers.push(Ok(()));
                    answers.extend(jobs.map(|_| Ok(())));
                    return Err(map_err(error));
                }
            };
            match job(&mut Tx { client: &mut savepoint, prepared }, next) {
                Ok(appended) => match savepoint.commit() {
                    Ok(()) => {
                        next += appended;
                        answers.push(Ok(()));
                    }
                    Err(error) => {
                        answers.push(Ok(()));
                        answers.extend(jobs.map(|_| Ok(())));
                        return Err(map_err(error));
                    }
                },
                // Dropping the savepoint rolls back to it; the batch goes on.
                Err(error) => answers.push(Err(error)),
            }
        }
    }
    if next != start {
        tx.execute("UPDATE log_head SET next = $1 WHERE id = 1", &[&next]).map_err(map_err)?;
    }
    tx.commit().map_err(map_err)
}
