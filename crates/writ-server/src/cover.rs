//! No uncovered tail: a write is answered only once a signed checkpoint covers its events, so
//! no acknowledged decision can be deleted from the database without trace. Signing is grouped:
//! one signer task (under the `checkpoint-signer` lease, so one instance signs at a time) signs
//! as soon as a write waits, then at most once per checkpoint interval while writes keep coming,
//! each checkpoint covering every write that arrived meanwhile. Instances without the lease
//! read the newest checkpoint instead, on the same beat.

use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::http::{HeaderValue, Method};
use axum::response::Response;
use tokio::sync::{Notify, watch};
use writ_core::time::Timestamp;

use crate::State;

/// The signed size every waiting write compares with, and how to wake the signer.
pub struct Coverage {
    covered: watch::Sender<u64>,
    wake: Notify,
    /// Told when a checkpoint was signed, so it goes to the witnesses at once.
    signed: Notify,
    interval: Duration,
}

impl Coverage {
    pub fn new(interval: Duration) -> Coverage {
        Coverage { covered: watch::Sender::new(0), wake: Notify::new(), signed: Notify::new(), interval }
    }

    /// How long a write waits for its checkpoint before it answers without one.
    fn patience(&self) -> Duration {
        (self.interval * 10).clamp(Duration::from_secs(5), Duration::from_secs(60))
    }

    /// Waits until a checkpoint covers `size` events; `None` if none did within the patience.
    async fn wait(&self, size: u64) -> Option<u64> {
        if *self.covered.borrow() >= size {
            return Some(*self.covered.borrow());
        }
        let mut covered = self.covered.subscribe();
        self.wake.notify_one();
        let reached = tokio::time::timeout(self.patience(), covered.wait_for(|c| *c >= size)).await;
        match reached {
            Ok(Ok(size)) => Some(*size),
            _ => None,
        }
    }
}

/// Signs (or, without the lease, reads) the newest checkpoint whenever a write waits and at
/// every interval, never more than once per interval; publishes the covered size.
pub async fn signer(state: State) {
    let interval = state.coverage.interval;
    let mut last_signed: Option<Instant> = None;
    loop {
        tokio::select! {
            () = state.coverage.wake.notified() => {},
            () = tokio::time::sleep(interval) => {},
        }
        if let Some(wait) = last_signed.and_then(|last| interval.checked_sub(last.elapsed())) {
            tokio::time::sleep(wait).await;
        }
        let work = std::sync::Arc::clone(&state);
        match tokio::task::spawn_blocking(move || sign_or_read(&work)).await {
            Ok(Ok((size, signed))) => {
                if signed {
                    last_signed = Some(Instant::now());
                    state.coverage.signed.notify_one();
                }
                state.coverage.covered.send_if_modified(|covered| {
                    let grew = size > *covered;
                    *covered = (*covered).max(size);
                    grew
                });
            }
            Ok(Err(error)) => {
                tracing::warn!(target: "writ::ledger", code = error.code(), "no checkpoint signed: {error}");
            }
            Err(error) => tracing::warn!(target: "writ::ledger", "checkpoint signer stopped: {error}"),
        }
    }
}

/// Sends each new checkpoint to the witnesses (under the `witness-publisher` lease, so one
/// instance does it), at once after a signature and again every few seconds, so a witness
/// that was down is caught up. Writes never wait for it.
pub async fn publisher(state: State) {
    if state.witnesses.list.is_empty() {
        return;
    }
    let pause = (state.coverage.interval * 2).max(Duration::from_secs(2));
    loop {
        tokio::select! {
            () = state.coverage.signed.notified() => {},
            () = tokio::time::sleep(pause) => {},
        }
        let work = std::sync::Arc::clone(&state);
        let outcome = tokio::task::spawn_blocking(move || {
            let (engine, store) = (&work.engine, work.engine.store());
            let now = engine.now();
            let until = Timestamp::from_millis(now.as_millis().saturating_add(30_000));
            if store.acquire_lease("witness-publisher", &work.instance, now, until)? {
                crate::publish::round(engine, &work.witnesses).map(Some)
            } else {
                Ok(None)
            }
        })
        .await;
        if let Ok(Err(error)) = outcome {
            tracing::warn!(target: "writ::ledger", code = error.code(), "publishing to witnesses failed: {error}");
        }
    }
}

/// The newest checkpoint's size, signing one first if this instance holds the signer lease and
/// events are uncovered; and whether it signed.
fn sign_or_read(state: &crate::AppState) -> writ_engine::Result<(u64, bool)> {
    let (engine, store) = (&state.engine, state.engine.store());
    let before = store.latest_checkpoint()?.map_or(0, |c| c.size);
    if !state.signer.present() {
        return Ok((before, false));
    }
    let now = engine.now();
    let hold = i64::try_from((state.coverage.interval * 3).max(Duration::from_secs(5)).as_millis())
        .unwrap_or(i64::MAX);
    let until = Timestamp::from_millis(now.as_millis().saturating_add(hold));
    if !store.acquire_lease("checkpoint-signer", &state.instance, now, until)? {
        return Ok((before, false));
    }
    match state.signer.with(|signer| engine.checkpoint(signer)) {
        Some(signed) => {
            let signed = signed?;
            Ok((signed.size, signed.size > before))
        }
        None => Ok((before, false)),
    }
}

/// Answers a request that may have written only once a signed checkpoint covers every event
/// recorded when its handler finished (its own among them); says which in `Writ-Checkpoint`
/// (the covering checkpoint's size, or `pending` if none came within the patience, which is
/// also logged). Reads are not held.
pub async fn cover_writes(
    axum::extract::State(state): axum::extract::State<State>,
    request: Request,
    next: axum::middleware::Next,
) -> Response {
    let reads = matches!(*request.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let mut response = next.run(request).await;
    if reads {
        return response;
    }
    let counting = std::sync::Arc::clone(&state);
    let count = tokio::task::spawn_blocking(move || counting.engine.store().event_count()).await;
    let Ok(Ok(count)) = count else { return response };
    let value = match state.coverage.wait(count).await {
        Some(size) => HeaderValue::from(size),
        None => {
            tracing::warn!(target: "writ::ledger", events = count, "a write was answered before a checkpoint covered it");
            HeaderValue::from_static("pending")
        }
    };
    response.headers_mut().insert("writ-checkpoint", value);
    response
}
