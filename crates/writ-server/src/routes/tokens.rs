//! API tokens: issued once, stored hashed, revoked.

use axum::Json;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde_json::Value;
use writ_api::view::{IssuedTokenView, List, TokenView, to_json};
use writ_core::access::Action;
use writ_core::identity::Actor;
use writ_core::name::IdentityName;
use writ_core::time::Duration;

use crate::State;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::http::{JsonBody, Operation, Path, blocking, op, required};
use crate::idempotency::{self};
use writ_api::wire::NewToken;

pub fn operations() -> Vec<Operation> {
    use Action as A;
    use Method as M;
    vec![
        op(
            M::GET,
            "/api/v1/tokens",
            "Tokens (never their secrets).",
            Some(A::ReadLedger),
            None,
            get(list_tokens),
        )
        .returns::<List<TokenView>>(),
        op(
            M::POST,
            "/api/v1/tokens",
            "Issue a token for an identity; the secret is in this response only.",
            Some(A::Administer),
            Some("NewToken"),
            post(create_token),
        )
        .returns::<IssuedTokenView>(),
        op(
            M::DELETE,
            "/api/v1/tokens/{id}",
            "Revoke a token (your own, or any as admin).",
            Some(A::Read),
            None,
            delete(revoke_token),
        )
        .returns::<TokenView>(),
    ]
}

// ---- tokens ----

pub(crate) async fn create_token(
    axum::extract::State(state): axum::extract::State<State>,
    Caller(caller): Caller,
    headers: HeaderMap,
    body: JsonBody<NewToken>,
) -> ApiResult<Response> {
    caller.may(Action::Administer)?;
    if headers.contains_key(idempotency::HEADER) {
        // A replay could not show the secret again; refuse rather than return a token-less 201.
        return Err(ApiError::new(
            "idempotency.not_supported",
            "token creation cannot be replayed (the secret is shown once): send it without Idempotency-Key",
        )
        .field(idempotency::HEADER));
    }
    let NewToken { identity, label, expires_in } = body.value;
    let identity = IdentityName::parse(&required(identity, "identity")?)?;
    let label = required(label, "label")?;
    let ttl = Duration::parse(expires_in.as_deref().unwrap_or(writ_engine::access::DEFAULT_TOKEN_TTL))?;
    let actor = Actor::Identity(caller.identity.name.clone());
    blocking(&state, move |state| {
        let issued = state.engine.issue_token(actor, &identity, &label, ttl)?;
        let issued = IssuedTokenView { record: TokenView::of(&issued.info, None), token: issued.token };
        Ok((StatusCode::CREATED, [(header::CACHE_CONTROL, "no-store")], Json(to_json(&issued)))
            .into_response())
    })
    .await
}

pub(crate) async fn list_tokens(
    axum::extract::State(state): axum::extract::State<State>,
    Caller(caller): Caller,
) -> ApiResult<Json<Value>> {
    caller.may(Action::Administer).or_else(|_| caller.may(Action::ReadLedger))?;
    blocking(&state, |state| {
        let items =
            state.engine.store().tokens()?.iter().map(|t| TokenView::of(&t.info, t.revoked_at)).collect();
        Ok(Json(to_json(&List { items })))
    })
    .await
}

pub(crate) async fn revoke_token(
    axum::extract::State(state): axum::extract::State<State>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    blocking(&state, move |state| {
        let engine = &state.engine;
        let token = engine
            .store()
            .token(&id)?
            .ok_or_else(|| ApiError::new("not_found", format!("token {id:?} not found")))?;
        // Anyone may revoke their own token; revoking another's takes an admin.
        if token.info.identity != caller.identity.name {
            caller.may(Action::Administer)?;
        }
        let revoked = engine.revoke_token(Actor::Identity(caller.identity.name.clone()), &id)?;
        Ok(Json(writ_api::view::token_json(&revoked.info, revoked.revoked_at)))
    })
    .await
}
