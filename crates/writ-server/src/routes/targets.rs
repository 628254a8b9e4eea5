//! Targets: registration (checked by the connector registry, as the CLI's) and their entitlements.

use axum::Json;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use serde_json::Value;
use writ_core::access::Action;
use writ_core::identity::Actor;
use writ_core::name::TargetName;

use crate::State;
use crate::auth::Caller;
use crate::error::ApiResult;
use crate::http::{JsonBody, Operation, Path, blocking, op, request_parts, required, write};
use crate::idempotency::Written;
use writ_api::view::{EntitlementsView, List, TargetView, to_json};
use writ_api::wire::NewTarget;

pub fn operations() -> Vec<Operation> {
    use Action as A;
    use Method as M;
    vec![
        op(M::GET, "/api/v1/targets", "Registered targets.", Some(A::Read), None, get(list_targets)),
        op(
            M::POST,
            "/api/v1/targets",
            "Register a target (its connector must reach it).",
            Some(A::Administer),
            Some("NewTarget"),
            post(add_target),
        ),
        op(
            M::GET,
            "/api/v1/targets/{name}/entitlements",
            "Entitlements the target offers, read live.",
            Some(A::Read),
            None,
            get(entitlements),
        ),
    ]
    .into_iter()
    .map(|operation| match (operation.method.as_str(), operation.path) {
        ("GET", "/api/v1/targets") => operation.returns::<List<TargetView>>(),
        ("POST", _) => operation.returns::<TargetView>(),
        _ => operation.returns::<EntitlementsView>(),
    })
    .collect()
}

pub(crate) async fn list_targets(
    axum::extract::State(state): axum::extract::State<State>,
    Caller(caller): Caller,
) -> ApiResult<Json<Value>> {
    caller.may(Action::Read)?;
    blocking(&state, |state| {
        let items = state.engine.store().targets()?.iter().map(TargetView::of).collect();
        Ok(Json(to_json(&List { items })))
    })
    .await
}

pub(crate) async fn add_target(
    axum::extract::State(state): axum::extract::State<State>,
    Caller(caller): Caller,
    method: Method,
    headers: HeaderMap,
    body: JsonBody<NewTarget>,
) -> ApiResult<Response> {
    caller.may(Action::Administer)?;
    let NewTarget { name, connector, settings } = body.value;
    let name = TargetName::parse(&required(name, "name")?)?;
    // The same checks as `writ target add`: the connector registry's.
    let (connector, settings) = crate::targets::prepare(&required(connector, "connector")?, settings)?;
    let actor = Actor::Identity(caller.identity.name.clone());
    let request = request_parts(&method, "/targets", &body.raw);
    write(&state, &caller, headers, request, move |state| {
        let target = state.engine.add_target(actor, name, connector, settings)?;
        Ok(Written {
            status: StatusCode::CREATED,
            resource: format!("target:{}", target.name),
            body: writ_api::view::target_json(&target),
        })
    })
    .await
}

pub(crate) async fn entitlements(
    axum::extract::State(state): axum::extract::State<State>,
    Caller(caller): Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.may(Action::Read)?;
    let name = TargetName::parse(&name)?;
    blocking(&state, move |state| {
        let items = state.engine.entitlements(&name)?.iter().map(ToString::to_string).collect();
        Ok(Json(to_json(&EntitlementsView { target: name.to_string(), items })))
    })
    .await
}
