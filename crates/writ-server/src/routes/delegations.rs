//! Delegations: who may act on behalf of whom (ask for changes for them, approve in their
//! name), until when. Granted by the principal or an admin; revoked by the principal, the
//! delegate or an admin (the engine decides, `Engine::grant_delegation`).

use axum::Json;
use axum::http::Method;
use axum::routing::{delete, get, put};
use serde_json::Value;
use writ_api::view::{DelegationView, List, to_json};
use writ_api::wire::NewDelegation;
use writ_core::access::{Action, Role};
use writ_core::identity::Actor;
use writ_core::name::IdentityName;
use writ_core::time::Duration;

use crate::State;
use crate::auth::Caller;
use crate::error::ApiResult;
use crate::http::{JsonBody, Operation, Path, blocking, op, required};

pub fn operations() -> Vec<Operation> {
    use Action as A;
    use Method as M;
    vec![
        op(
            M::GET,
            "/api/v1/delegations",
            "Delegations: every one for admins and auditors, else those you give or hold.",
            Some(A::Read),
            None,
            get(list_delegations),
        )
        .returns::<List<DelegationView>>(),
        op(
            M::PUT,
            "/api/v1/delegations/{principal}/{delegate}",
            "Let DELEGATE act on behalf of PRINCIPAL `for` a while (at most 366 days): by PRINCIPAL or an admin. Again: moves the end.",
            Some(A::Read),
            Some("NewDelegation"),
            put(grant_delegation),
        )
        .returns::<DelegationView>(),
        op(
            M::DELETE,
            "/api/v1/delegations/{principal}/{delegate}",
            "End a delegation: by its principal, its delegate or an admin.",
            Some(A::Read),
            None,
            delete(revoke_delegation),
        )
        .returns::<DelegationView>(),
    ]
}

pub(crate) async fn list_delegations(
    axum::extract::State(state): axum::extract::State<State>,
    Caller(caller): Caller,
) -> ApiResult<Json<Value>> {
    caller.may(Action::Read)?;
    let everything = caller.roles.iter().any(|r| matches!(r, Role::Admin | Role::Auditor));
    blocking(&state, move |state| {
        let now = state.engine.now();
        let me = &caller.identity.name;
        let items = state
            .engine
            .delegations()?
            .iter()
            .filter(|d| everything || &d.principal == me || &d.delegate == me)
            .map(|d| DelegationView::of(d, now))
            .collect();
        Ok(Json(to_json(&List { items })))
    })
    .await
}

pub(crate) async fn grant_delegation(
    axum::extract::State(state): axum::extract::State<State>,
    Caller(caller): Caller,
    Path((principal, delegate)): Path<(String, String)>,
    body: JsonBody<NewDelegation>,
) -> ApiResult<Json<Value>> {
    caller.may(Action::Read)?;
    let principal = IdentityName::parse(&principal)?;
    let delegate = IdentityName::parse(&delegate)?;
    let ttl = Duration::parse(&required(body.value.duration, "for")?)?;
    let actor = Actor::Identity(caller.identity.name.clone());
    blocking(&state, move |state| {
        let delegation = state.engine.grant_delegation(actor, &principal, &delegate, ttl)?;
        Ok(Json(to_json(&DelegationView::of(&delegation, state.engine.now()))))
    })
    .await
}

pub(crate) async fn revoke_delegation(
    axum::extract::State(state): axum::extract::State<State>,
    Caller(caller): Caller,
    Path((principal, delegate)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    caller.may(Action::Read)?;
    let principal = IdentityName::parse(&principal)?;
    let delegate = IdentityName::parse(&delegate)?;
    let actor = Actor::Identity(caller.identity.name.clone());
    blocking(&state, move |state| {
        let revoked = state.engine.revoke_delegation(actor, &principal, &delegate)?;
        Ok(Json(to_json(&DelegationView::of(&revoked, state.engine.now()))))
    })
    .await
}
