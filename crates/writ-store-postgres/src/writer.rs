//! Group commit for PostgreSQL, leader/follower style (the same shape as the SQLite store's
//! writer). Every write takes the `log_head` row lock for its transaction, so writes to one
//! database are serial across all instances and each one pays a WAL flush while holding the
//! lock. Batching the writes of one process into one transaction pays that flush once per batch.
//!
//! A caller queues its job; if no one is committing it leads: it opens a transaction on the
//! writer connection, locks `log_head`, runs each queued job in its own savepoint (a lone job
//! needs none) at the next free index, advances `log_head` once and commits. Callers are
//! answered only after the commit; a job that fails is rolled back to its savepoint and answered
//! with its error while the others commit; if the commit fails, every job of the batch gets the
//! error and none is visible (fail closed).

use std::collections::{HashMap, VecDeque};
use std::sync::mpsc::{self, SyncSender};
use std::sync::{Mutex, MutexGuard};

use postgres::{Client, Statement};
use writ_store::{Result, StoreError};

use crate::{Tx, map_err};

/// Most jobs committed by one transaction.
const MAX_BATCH: usize = 256;

/// One unit of work: runs inside the batch transaction with the next free ledger index and
/// returns how many events it appended there.
pub(crate) type Work = Box<dyn FnOnce(&mut Tx<'_, '_>, i64) -> Result<i64> + Send>;

enum Reply {
    Done(Result<()>),
    Lead,
}

struct Job {
    work: Work,
    reply: SyncSender<Reply>,
}

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    leader_active: bool,
}

/// The writer connection and the statements prepared on it.
struct Connection {
    client: Client,
    prepared: HashMap<String, Statement>,
}

pub(crate) struct Writer {
    queue: Mutex<Queue>,
    connection: Mutex<Connection>,
}

impl Writer {
    pub(crate) fn new(client: Client) -> Writer {
        Writer {
            queue: Mutex::new(Queue::default()),
            connection: Mutex::new(Connection { client, prepared: HashMap::new() }),
        }
    }

    /// Runs `work` in a batch and waits until that batch is durably committed (or not).
    pub(crate) fn submit(&self, work: Work) -> Result<()> {
        let (reply, answer) = mpsc::sync_channel(1);
        let lead_now = {
            let mut queue = self.queue()?;
            queue.jobs.push_back(Job { work, reply });
            !std::mem::replace(&mut queue.leader_active, true)
        };
        if lead_now {
            self.lead()?;
        }
        loop {
            match answer.recv() {
                Ok(Reply::Done(result)) => return result,
                Ok(Reply::Lead) => self.lead()?,
                Err(_) => {
                    return Err(StoreError::Unavailable(
                        "the store's writer stopped before answering".into(),
                    ));
                }
            }
        }
    }

    fn queue(&self) -> Result<MutexGuard<'_, Queue>> {
        self.queue.lock().map_err(|_| StoreError::Unavailable("the store's write queue is poisoned".into()))
    }

    fn lead(&self) -> Result<()> {
        let batch: Vec<Job> = {
            let mut queue = self.queue()?;
            let take = queue.jobs.len().min(MAX_BATCH);
            queue.jobs.drain(..take).collect()
        };
        match self.connection.lock() {
            Ok(mut connection) => commit_batch(&mut connection, batch),
            Err(_) => {
                for job in batch {
                    let _ = job.reply.send(Reply::Done(Err(StoreError::Unavailable(
                        "the store's write connection is poisoned".into(),
                    ))));
                }
            }
        }
        let mut queue = self.queue()?;
        match queue.jobs.front() {
            Some(next) => {
                let _ = next.reply.send(Reply::Lead);
            }
            None => queue.leader_active = false,
        }
        Ok(())
    }
}

fn commit_batch(connection: &mut Connection, batch: Vec<Job>) {
    let mut answers: Vec<(SyncSender<Reply>, Result<()>)> = Vec::with_capacity(batch.len());
    let Connection { client, prepared } = connection;
    let outcome = run_batch(client, prepared, batch, &mut answers);
    for (reply, answer) in answers {
        let answer = match &outcome {
            Ok(()) => answer,
            Err(error) => Err(copy(error)),
        };
        let _ = reply.send(Reply::Done(answer));
    }
}

/// Runs the jobs and commits. Each job's own result goes into `answers`; the returned error, if
/// any, is the batch's (the transaction broke or did not commit) and overrides them all.
fn run_batch(
    client: &mut Client,
    prepared: &mut HashMap<String, Statement>,
    batch: Vec<Job>,
    answers: &mut Vec<(SyncSender<Reply>, Result<()>)>,
) -> Result<()> {
    let lone = batch.len() == 1;
    let mut jobs = batch.into_iter();
    let mut tx = match client.transaction() {
        Ok(tx) => tx,
        Err(error) => {
            answers.extend(jobs.map(|job| (job.reply, Ok(()))));
            return Err(map_err(error));
        }
    };
    let start = match tx.query_one("SELECT next FROM log_head WHERE id = 1 FOR UPDATE", &[]) {
        Ok(row) => row.get::<_, i64>(0),
        Err(error) => {
            answers.extend(jobs.map(|job| (job.reply, Ok(()))));
            return Err(map_err(error));
        }
    };
    let mut next = start;
    if lone {
        // A lone job needs no savepoint: the transaction itself isolates it.
        if let Some(job) = jobs.next() {
            match (job.work)(&mut Tx { tx: &mut tx, prepared }, next) {
                Ok(appended) => {
                    next += appended;
                    answers.push((job.reply, Ok(())));
                }
                Err(error) => {
                    answers.push((job.reply, Err(error)));
                    return Ok(()); // dropping `tx` rolls it back; nothing to commit
                }
            }
        }
    } else {
        for job in jobs.by_ref() {
            let mut savepoint = match tx.savepoint("job") {
                Ok(savepoint) => savepoint,
                Err(error) => {
                    answers.push((job.reply, Ok(())));
                    answers.extend(jobs.map(|job| (job.reply, Ok(()))));
                    return Err(map_err(error));
                }
            };
            match (job.work)(&mut Tx { tx: &mut savepoint, prepared }, next) {
                Ok(appended) => match savepoint.commit() {
                    Ok(()) => {
                        next += appended;
                        answers.push((job.reply, Ok(())));
                    }
                    Err(error) => {
                        answers.push((job.reply, Ok(())));
                        answers.extend(jobs.map(|job| (job.reply, Ok(()))));
                        return Err(map_err(error));
                    }
                },
                // Dropping the savepoint rolls back to it; the batch goes on.
                Err(error) => answers.push((job.reply, Err(error))),
            }
        }
    }
    if next != start {
        tx.execute("UPDATE log_head SET next = $1 WHERE id = 1", &[&next]).map_err(map_err)?;
    }
    tx.commit().map_err(map_err)
}

fn copy(error: &StoreError) -> StoreError {
    match error {
        StoreError::Conflict(m) => StoreError::Conflict(m.clone()),
        StoreError::Unavailable(m) => StoreError::Unavailable(m.clone()),
        StoreError::Corrupt(m) => StoreError::Corrupt(m.clone()),
        StoreError::Other(m) => StoreError::Other(m.clone()),
    }
}
