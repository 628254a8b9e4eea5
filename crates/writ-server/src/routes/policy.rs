//! Putting the server's policy directory in force again.

use axum::Json;
use axum::http::Method;
use axum::routing::post;
use serde_json::Value;
use writ_core::access::Action;
use writ_core::identity::Actor;

use crate::State;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::http::{Operation, blocking, op};

pub fn operations() -> Vec<Operation> {
    use Action as A;
    use Method as M;
    vec![op(
        M::POST,
        "/api/v1/policy/reload",
        "Load the server's policy directory again and put it in force (policy.loaded in the ledger); an invalid policy is refused with FILE:LINE: reason and the policy in force stays.",
        Some(A::Administer),
        None,
        post(reload_policy),
    )
    .returns::<writ_api::view::PolicyLoadedView>()]
}

pub(crate) async fn reload_policy(
    axum::extract::State(state): axum::extract::State<State>,
    Caller(caller): Caller,
) -> ApiResult<Json<Value>> {
    caller.may(Action::Administer)?;
    let actor = Actor::Identity(caller.identity.name.clone());
    blocking(&state, move |state| {
        let dir = state.policy_dir.as_ref().ok_or_else(|| {
            ApiError::new(
                "policy.no_directory",
                "the server was started without --policy-dir; the default pack is in force",
            )
        })?;
        let bundle = writ_policy::PolicyBundle::from_dir(dir).map_err(writ_engine::EngineError::from)?;
        let loaded = state.engine.load_policy(actor, bundle)?;
        Ok(Json(writ_api::view::to_json(&writ_api::view::PolicyLoadedView::of(&loaded))))
    })
    .await
}
