//! The authenticated caller of a request. Only `Authorization: Bearer <token>` is read; a
//! missing, malformed, unknown, revoked or expired token is a 401 before any handler runs.

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use writ_core::access::Principal;
use writ_engine::access::AuthError;

use super::State;
use super::error::ApiError;

/// The principal behind the request's credentials.
pub struct Caller(pub Principal);

impl FromRequestParts<State> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &State) -> Result<Caller, ApiError> {
        let header = parts.headers.get(header::AUTHORIZATION).ok_or(AuthError::Missing)?;
        let token = header
            .to_str()
            .ok()
            .and_then(|value| value.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or(AuthError::Invalid)?
            .to_owned();
        let engine = state.engine.clone();
        let principal = tokio::task::spawn_blocking(move || engine.authenticate(&token))
            .await
            .map_err(|e| ApiError::internal(format!("authentication task failed: {e}")))??;
        tracing::debug!(target: "writ::serve", identity = %principal.identity.name, "authenticated");
        Ok(Caller(principal))
    }
}
