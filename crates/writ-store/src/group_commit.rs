//! Group commit, leader/follower style, for any backend: callers queue jobs; if no one is
//! committing, the caller leads and commits the queued batch on its own thread (no hand-off when
//! uncontended). While a leader commits, others queue up; when it finishes it answers its batch
//! and passes leadership to the first waiting caller, whose batch is everything queued
//! meanwhile. Each backend supplies the function that runs one batch in one transaction and
//! returns one answer per job, in order (`writ-store-sqlite/src/writer.rs`,
//! `writ-store-postgres/src/writer.rs`).

use std::collections::VecDeque;
use std::sync::mpsc::{self, SyncSender};
use std::sync::{Mutex, MutexGuard};

use crate::{Result, StoreError};

enum Reply<O> {
    Done(Result<O>),
    /// The previous leader finished; the receiver commits the next batch.
    Lead,
}

struct Pending<J, O> {
    job: J,
    reply: SyncSender<Reply<O>>,
}

struct Queue<J, O> {
    jobs: VecDeque<Pending<J, O>>,
    /// Invariant: when no leader is active, `jobs` is empty.
    leader_active: bool,
}

/// Runs one batch on the connection: one answer per job, in the order given.
pub type CommitBatch<C, J, O> = fn(&mut C, Vec<J>) -> Vec<Result<O>>;

/// A connection whose writes are group-committed.
pub struct GroupCommit<C, J, O> {
    queue: Mutex<Queue<J, O>>,
    connection: Mutex<C>,
    commit: CommitBatch<C, J, O>,
    max_batch: usize,
}

impl<C, J, O> GroupCommit<C, J, O> {
    pub fn new(connection: C, max_batch: usize, commit: CommitBatch<C, J, O>) -> Self {
        GroupCommit {
            queue: Mutex::new(Queue { jobs: VecDeque::new(), leader_active: false }),
            connection: Mutex::new(connection),
            commit,
            max_batch: max_batch.max(1),
        }
    }

    /// Runs `job` in a batch and waits until that batch is durably committed (or not).
    pub fn submit(&self, job: J) -> Result<O> {
        let (reply, answer) = mpsc::sync_channel(1);
        let lead_now = {
            let mut queue = self.queue()?;
            queue.jobs.push_back(Pending { job, reply });
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

    fn queue(&self) -> Result<MutexGuard<'_, Queue<J, O>>> {
        self.queue.lock().map_err(|_| StoreError::Unavailable("the store's write queue is poisoned".into()))
    }

    /// Commits one batch from the front of the queue, then hands leadership on or releases it.
    fn lead(&self) -> Result<()> {
        let batch: Vec<Pending<J, O>> = {
            let mut queue = self.queue()?;
            let take = queue.jobs.len().min(self.max_batch);
            queue.jobs.drain(..take).collect()
        };
        let (jobs, replies): (Vec<J>, Vec<SyncSender<Reply<O>>>) =
            batch.into_iter().map(|p| (p.job, p.reply)).unzip();
        let answers = match self.connection.lock() {
            Ok(mut connection) => (self.commit)(&mut connection, jobs),
            Err(_) => Vec::new(),
        };
        let mut answers = answers.into_iter();
        for reply in replies {
            let answer = answers.next().unwrap_or_else(|| {
                Err(StoreError::Unavailable("the store's write connection is unusable".into()))
            });
            let _ = reply.send(Reply::Done(answer));
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

/// A copy of a store error (errors are not `Clone`), to give every job of a failed batch.
pub fn copy(error: &StoreError) -> StoreError {
    match error {
        StoreError::Conflict(m) => StoreError::Conflict(m.clone()),
        StoreError::Unavailable(m) => StoreError::Unavailable(m.clone()),
        StoreError::Corrupt(m) => StoreError::Corrupt(m.clone()),
        StoreError::Other(m) => StoreError::Other(m.clone()),
    }
}
