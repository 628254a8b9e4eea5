//! The authenticated caller of a request. Only `Authorization: Bearer <token>` is read: a Writ
//! API token (`writ_…`), or, when an issuer is configured, an OIDC JWT (`oidc.rs`). A missing,
//! malformed, unknown, revoked or expired credential is a 401 before any handler runs.

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use writ_core::access::Principal;
use writ_engine::access::{AccessError, AuthError, TOKEN_PREFIX};

use crate::State;
use crate::error::ApiError;

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
        let shared = state.clone();
        let principal = tokio::task::spawn_blocking(move || {
            let state = shared;
            if token.starts_with(TOKEN_PREFIX) {
                return state.engine.authenticate(&token);
            }
            // Anything else can only be an OIDC token, and only if an issuer is configured.
            let oidc = state.oidc.as_ref().ok_or(AuthError::Invalid)?;
            let name = oidc.verify(&token)?;
            state.engine.principal(&name).map_err(|error| match error {
                AccessError::Auth(_) => {
                    AccessError::Auth(AuthError::Oidc(format!("{name} is not a registered Writ identity")))
                }
                other => other,
            })
        })
        .await
        .map_err(|e| ApiError::internal(format!("authentication task failed: {e}")))??;
        tracing::debug!(target: "writ::serve", identity = %principal.identity.name, "authenticated");
        if let Some(rate) = &state.rate {
            rate.identity(principal.identity.name.as_str())?;
        }
        Ok(Caller(principal))
    }
}
