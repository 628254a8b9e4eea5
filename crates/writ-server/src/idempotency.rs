//! `Idempotency-Key` on writes: the first request with a key runs; a retry with the same key and
//! the same request gets the first result again (the resource as it is now, with the original
//! status) and never runs twice; the same key with a different request is refused. Keys are
//! scoped to the caller's identity and kept for a day.
//!
//! The key is claimed in the database before the work runs, so two instances receiving the
//! same retry at once cannot both run it. A request that fails changes nothing, so its claim is
//! released and the key can be used again; a claim left by a crash mid-request stays "in
//! progress" (409) rather than risk running the work twice, until keys older than a day are
//! forgotten.

use axum::http::{HeaderMap, StatusCode};
use sha2::{Digest, Sha256};
use writ_store::Claim;

use crate::AppState;
use crate::error::{ApiError, ApiResult};

pub const HEADER: &str = "idempotency-key";

/// What a write produced: its status and a reference to re-read it on replay
/// (`change:ID`, `identity:NAME`, …).
pub struct Written {
    pub status: StatusCode,
    pub resource: String,
    pub body: serde_json::Value,
}

/// The outcome of an idempotent write.
pub enum Outcome {
    Fresh(Written),
    /// A replay: the stored status and resource.
    Replay {
        status: StatusCode,
        resource: String,
    },
}

/// Runs `work` under the request's idempotency key, if it has one.
pub fn run(
    state: &AppState,
    scope: &str,
    headers: &HeaderMap,
    request: &[&[u8]],
    work: impl FnOnce() -> ApiResult<Written>,
) -> ApiResult<Outcome> {
    let Some(key) = key(headers)? else {
        return work().map(Outcome::Fresh);
    };
    let mut hasher = Sha256::new();
    for part in request {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    let fingerprint = hex::encode(hasher.finalize());
    let store = state.engine.store();
    let now = state.engine.now();
    match store.claim_request(scope, &key, &fingerprint, now)? {
        Claim::Fresh => {}
        Claim::Replay { status, resource } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            return Ok(Outcome::Replay { status, resource });
        }
        Claim::InProgress => {
            return Err(ApiError::new(
                "idempotency.in_progress",
                "a request with this Idempotency-Key is still in progress (or was interrupted); retry later or use a new key after checking its effect",
            ));
        }
        Claim::Mismatch => {
            return Err(ApiError::new(
                "idempotency.key_reused",
                "this Idempotency-Key was already used for a different request; use a new key",
            )
            .field(HEADER));
        }
    }
    match work() {
        Ok(written) => {
            store.finish_request(scope, &key, written.status.as_u16(), &written.resource)?;
            Ok(Outcome::Fresh(written))
        }
        Err(error) => {
            if let Err(release) = store.release_request(scope, &key) {
                tracing::warn!(target: "writ::serve", "idempotency key not released: {release}");
            }
            Err(error)
        }
    }
}

fn key(headers: &HeaderMap) -> ApiResult<Option<String>> {
    let Some(value) = headers.get(HEADER) else { return Ok(None) };
    let key = value
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= 255 && k.bytes().all(|b| b.is_ascii_graphic()));
    match key {
        Some(key) => Ok(Some(key.to_owned())),
        None => Err(ApiError::new(
            "input.idempotency_key",
            "Idempotency-Key must be 1 to 255 printable ASCII characters",
        )
        .field(HEADER)),
    }
}
