//! Group commit, leader/follower style. A caller queues its work; if no one is committing, it
//! becomes the leader and commits the batch itself on its own thread (no hand-off when
//! uncontended). While a leader commits, others queue up; when it finishes, it answers its batch
//! and passes leadership to the first waiting caller, whose batch is everything queued meanwhile.
//!
//! A batch runs each job in its own savepoint (a lone job needs none) inside one
//! `BEGIN IMMEDIATE` transaction and commits once (one fsync with `synchronous=FULL`); callers are answered only after the commit.
//! A job that fails is rolled back to its savepoint and answered with its error; the others still
//! commit. If the commit itself fails, every job of the batch gets the error and none of them is
//! visible (fail closed).

use std::collections::VecDeque;
use std::sync::mpsc::{self, SyncSender};
use std::sync::{Mutex, MutexGuard};

use rusqlite::{Connection, Transaction, TransactionBehavior};
use writ_store::{Result, StoreError};

use crate::map_err_ref;

/// Most jobs committed by one transaction.
const MAX_BATCH: usize = 512;

/// One unit of work: statements run inside the batch transaction, returning ledger indices.
pub(crate) type Work = Box<dyn FnOnce(&Transaction<'_>) -> Result<Vec<u64>> + Send>;

enum Reply {
    Done(Result<Vec<u64>>),
    /// The previous leader finished; the receiver commits the next batch.
    Lead,
}

struct Job {
    work: Work,
    reply: SyncSender<Reply>,
}

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    /// Invariant: when no leader is active, `jobs` is empty.
    leader_active: bool,
}

pub(crate) struct Writer {
    queue: Mutex<Queue>,
    connection: Mutex<Connection>,
}

impl Writer {
    pub(crate) fn new(connection: Connection) -> Writer {
        Writer { queue: Mutex::new(Queue::default()), connection: Mutex::new(connection) }
    }

    /// Runs `work` in a batch and waits until that batch is durably committed (or not).
    pub(crate) fn submit(&self, work: Work) -> Result<Vec<u64>> {
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

    /// Commits one batch from the front of the queue, then hands leadership on or releases it.
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
    let tx = match connection.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(error) => {
            for job in batch {
                let _ = job.reply.send(Reply::Done(Err(map_err_ref(&error))));
            }
            return;
        }
    };
    // A lone job needs no savepoint: the transaction itself isolates it.
    if batch.len() == 1 {
        if let Some(job) = batch.into_iter().next() {
            let answer = match (job.work)(&tx) {
                Ok(indices) => tx.commit().map(|()| indices).map_err(|e| map_err_ref(&e)),
                Err(error) => Err(error), // dropping `tx` rolls it back
            };
            let _ = job.reply.send(Reply::Done(answer));
        }
        return;
    }
    let mut answered = Vec::with_capacity(batch.len());
    let mut broken = None;
    for job in batch {
        if broken.is_some() {
            answered.push((job.reply, Ok(Vec::new())));
            continue;
        }
        match run_in_savepoint(&tx, job.work) {
            Ok(outcome) => answered.push((job.reply, outcome)),
            Err(error) => {
                broken = Some(error);
                answered.push((job.reply, Ok(Vec::new())));
            }
        }
    }
    let committed = match broken {
        Some(error) => Err(error),
        None => tx.commit().map_err(|e| map_err_ref(&e)),
    };
    for (reply, outcome) in answered {
        let answer = match &committed {
            Ok(()) => outcome,
            Err(error) => Err(copy(error)),
        };
        let _ = reply.send(Reply::Done(answer));
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

fn copy(error: &StoreError) -> StoreError {
    match error {
        StoreError::Conflict(m) => StoreError::Conflict(m.clone()),
        StoreError::Unavailable(m) => StoreError::Unavailable(m.clone()),
        StoreError::Corrupt(m) => StoreError::Corrupt(m.clone()),
        StoreError::Other(m) => StoreError::Other(m.clone()),
    }
}
