//! Findings: list, show, resolve.

use axum::Json;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::Value;
use writ_core::access::Action;

use crate::State;
use crate::auth::Caller;
use crate::error::ApiResult;
use crate::http::{JsonBody, Operation, Path, Query, blocking, op, request_parts, required, write};
use crate::idempotency::Written;
use writ_api::view::{FindingView, List, to_json};
use writ_api::wire::ResolveFinding;

pub fn operations() -> Vec<Operation> {
    use Action as A;
    use Method as M;
    vec![
        op(
            M::GET,
            "/api/v1/findings",
            "Findings (`state` query: open, excepted, resolved).",
            Some(A::ReadLedger),
            None,
            get(list_findings),
        )
        .query::<FindingQuery>()
        .returns::<List<FindingView>>(),
        op(M::GET, "/api/v1/findings/{id}", "One finding.", Some(A::ReadLedger), None, get(show_finding))
            .returns::<FindingView>(),
        op(
            M::POST,
            "/api/v1/findings/{id}/resolve",
            "Resolve an open finding (`note` required: what was done).",
            Some(A::Review),
            Some("ResolveFinding"),
            post(resolve_finding),
        )
        .returns::<FindingView>(),
    ]
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FindingQuery {
    #[schemars(extend("enum" = ["open", "excepted", "resolved"]))]
    pub state: Option<String>,
}

pub(crate) async fn list_findings(
    axum::extract::State(state): axum::extract::State<State>,
    Caller(caller): Caller,
    Query(query): Query<FindingQuery>,
) -> ApiResult<Json<Value>> {
    caller.may(Action::ReadLedger)?;
    let wanted = query.state.as_deref().map(writ_core::finding::FindingState::parse).transpose()?;
    blocking(&state, move |state| {
        let items = state.engine.findings(wanted)?.iter().map(FindingView::of).collect();
        Ok(Json(to_json(&List { items })))
    })
    .await
}

pub(crate) async fn show_finding(
    axum::extract::State(state): axum::extract::State<State>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.may(Action::ReadLedger)?;
    blocking(&state, move |state| Ok(Json(writ_api::view::finding_json(&state.engine.finding(&id)?)))).await
}

pub(crate) async fn resolve_finding(
    axum::extract::State(state): axum::extract::State<State>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    method: Method,
    headers: HeaderMap,
    body: JsonBody<ResolveFinding>,
) -> ApiResult<Response> {
    caller.may(Action::Review)?;
    let note = required(body.value.note, "note")?;
    let request = request_parts(&method, &format!("/findings/{id}/resolve"), &body.raw);
    let me = caller.identity.name.clone();
    write(&state, &caller, headers, request, move |state| {
        let finding = state.engine.resolve_finding(&me, &id, note)?;
        Ok(Written {
            status: StatusCode::OK,
            resource: format!("finding:{}", finding.id),
            body: writ_api::view::finding_json(&finding),
        })
    })
    .await
}
