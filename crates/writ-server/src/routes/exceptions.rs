//! The exception routes under `/api/v1/exceptions`: the caller is always the actor; the
//! engine decides who may approve, reject, renew or revoke, as on the command line.

use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::Value;
use writ_api::view::{ExceptionView, List, to_json};
use writ_core::access::Action;
use writ_core::exception::{Exception, ExceptionState};
use writ_core::name::IdentityName;
use writ_engine::Engine;

use crate::auth::Caller;
use crate::error::ApiResult;
use crate::http::{JsonBody, Operation, Path, Query, blocking, op, request_parts, required, write};
use crate::idempotency::Written;
use crate::{AppState, State};
use writ_api::wire::{Decision, ExceptionStep, NewException, NoFields, Renewal};

pub fn operations() -> Vec<Operation> {
    use Action as A;
    use Method as M;
    vec![
        op(
            M::POST,
            "/api/v1/exceptions",
            "Ask for an exception as the caller: a control not met for one subject (or `finding`), \
             with an owner, a justification, a compensating control and a term (`for` or `until`).",
            Some(A::Request),
            Some("NewException"),
            post(request_exception),
        ),
        op(
            M::GET,
            "/api/v1/exceptions",
            "Exceptions (`state` query: pending, active, rejected, expired, revoked).",
            Some(A::ReadLedger),
            None,
            get(list_exceptions),
        )
        .query::<ExceptionList>(),
        op(
            M::GET,
            "/api/v1/exceptions/export",
            "Exceptions as CSV (RFC 4180) or JSON (`format` query, default csv; `state` query).",
            Some(A::ReadLedger),
            None,
            get(export_exceptions),
        )
        .query::<ExceptionQuery>()
        .produces(&["text/csv", "application/json"]),
        op(
            M::GET,
            "/api/v1/exceptions/{id}",
            "One exception.",
            Some(A::ReadLedger),
            None,
            get(show_exception),
        ),
        op(
            M::POST,
            "/api/v1/exceptions/{id}/approve",
            "Approve the pending request or renewal as the caller (not its requester or owner).",
            Some(A::Approve),
            Some("NoFields"),
            post(|s, c, p, m, h, b: JsonBody<NoFields>| step(s, c, p, m, h, b, Step::Approve)),
        ),
        op(
            M::POST,
            "/api/v1/exceptions/{id}/reject",
            "Refuse the pending request or renewal (`reason` required).",
            Some(A::Approve),
            Some("Decision"),
            post(|s, c, p, m, h, b: JsonBody<Decision>| step(s, c, p, m, h, b, Step::Reject)),
        ),
        op(
            M::POST,
            "/api/v1/exceptions/{id}/renew",
            "Ask for a longer term (`for` or `until`, and `reason`): a new approval round. Requester or owner only.",
            Some(A::Request),
            Some("Renewal"),
            post(|s, c, p, m, h, b: JsonBody<Renewal>| step(s, c, p, m, h, b, Step::Renew)),
        ),
        op(
            M::POST,
            "/api/v1/exceptions/{id}/revoke",
            "Withdraw the exception now (`reason` required); the findings it covered open again.",
            Some(A::Request),
            Some("Decision"),
            post(|s, c, p, m, h, b: JsonBody<Decision>| step(s, c, p, m, h, b, Step::Revoke)),
        ),
    ]
    .into_iter()
    .map(|operation| match (operation.method.as_str(), operation.path) {
        ("GET", "/api/v1/exceptions/export") => operation,
        ("GET", "/api/v1/exceptions") => operation.returns::<List<ExceptionView>>(),
        _ => operation.returns::<ExceptionView>(),
    })
    .collect()
}

fn created(exception: &Exception, status: StatusCode) -> Written {
    Written {
        status,
        resource: format!("exception:{}", exception.id),
        body: writ_api::view::exception_json(exception),
    }
}

async fn request_exception(
    axum::extract::State(state): axum::extract::State<State>,
    Caller(caller): Caller,
    method: Method,
    headers: HeaderMap,
    body: JsonBody<NewException>,
) -> ApiResult<Response> {
    caller.may(Action::Request)?;
    let checked = body.value.check()?;
    let actor = caller.identity.name.to_string();
    let request = request_parts(&method, "/exceptions", &body.raw);
    write(&state, &caller, headers, request, move |state| {
        let engine = &state.engine;
        let input = checked.into_input(engine, &actor)?;
        let exception = engine.request_exception(input, writ_engine::random_bits()?)?;
        Ok(created(&exception, StatusCode::CREATED))
    })
    .await
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExceptionList {
    #[schemars(extend("enum" = ["pending", "active", "rejected", "expired", "revoked"]))]
    pub state: Option<String>,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExceptionQuery {
    #[schemars(extend("enum" = ["pending", "active", "rejected", "expired", "revoked"]))]
    pub state: Option<String>,
    #[schemars(extend("enum" = ["csv", "json"]))]
    pub format: Option<String>,
}

fn listed(engine: &Engine, state: Option<&str>) -> ApiResult<Vec<ExceptionView>> {
    let wanted = state.map(ExceptionState::parse).transpose()?;
    Ok(engine.exceptions(wanted)?.iter().map(ExceptionView::of).collect())
}

async fn list_exceptions(
    axum::extract::State(state): axum::extract::State<State>,
    Caller(caller): Caller,
    Query(query): Query<ExceptionList>,
) -> ApiResult<axum::Json<Value>> {
    caller.may(Action::ReadLedger)?;
    blocking(&state, move |state| {
        Ok(axum::Json(to_json(&List { items: listed(&state.engine, query.state.as_deref())? })))
    })
    .await
}

async fn export_exceptions(
    axum::extract::State(state): axum::extract::State<State>,
    Caller(caller): Caller,
    Query(query): Query<ExceptionQuery>,
) -> ApiResult<Response> {
    caller.may(Action::ReadLedger)?;
    let format = query.format.clone().unwrap_or_else(|| "csv".to_owned());
    let media = if format == "json" { "application/json" } else { "text/csv; charset=utf-8; header=present" };
    let bytes = blocking(&state, move |state| {
        Ok(writ_api::view::exceptions_export(&listed(&state.engine, query.state.as_deref())?, &format)?)
    })
    .await?;
    Ok(([(header::CONTENT_TYPE, media)], bytes).into_response())
}

async fn show_exception(
    axum::extract::State(state): axum::extract::State<State>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Value>> {
    caller.may(Action::ReadLedger)?;
    blocking(&state, move |state| {
        Ok(axum::Json(writ_api::view::exception_json(&state.engine.exception(&id)?)))
    })
    .await
}

#[derive(Clone, Copy)]
enum Step {
    Approve,
    Reject,
    Renew,
    Revoke,
}

impl Step {
    fn name(self) -> &'static str {
        match self {
            Step::Approve => "approve",
            Step::Reject => "reject",
            Step::Renew => "renew",
            Step::Revoke => "revoke",
        }
    }

    fn action(self) -> Action {
        match self {
            Step::Approve | Step::Reject => Action::Approve,
            Step::Renew | Step::Revoke => Action::Request,
        }
    }

    fn run(self, state: &AppState, me: &IdentityName, id: &str, body: ExceptionStep) -> ApiResult<Exception> {
        let engine = &state.engine;
        let reason = || required(body.reason.clone(), "reason");
        Ok(match self {
            Step::Approve => engine.approve_exception(me, id)?,
            Step::Reject => engine.reject_exception(me, id, reason()?)?,
            Step::Renew => {
                let term = writ_api::wire::term(body.duration.as_deref(), body.until.as_deref())?;
                engine.renew_exception(me, id, term, reason()?)?
            }
            Step::Revoke => engine.revoke_exception(me, id, reason()?)?,
        })
    }
}

async fn step<B: Into<ExceptionStep>>(
    axum::extract::State(state): axum::extract::State<State>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    method: Method,
    headers: HeaderMap,
    body: JsonBody<B>,
    step: Step,
) -> ApiResult<Response> {
    caller.may(step.action())?;
    let request = request_parts(&method, &format!("/exceptions/{id}/{}", step.name()), &body.raw);
    let me = caller.identity.name.clone();
    let value: ExceptionStep = body.value.into();
    write(&state, &caller, headers, request, move |state| {
        let exception = step.run(state, &me, &id, value)?;
        Ok(created(&exception, StatusCode::OK))
    })
    .await
}
