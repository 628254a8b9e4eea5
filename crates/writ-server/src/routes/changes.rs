//! Changes: request, each step of the chain, the trail, and break-glass.

use axum::Json;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use serde_json::Value;
use writ_core::access::Action;
use writ_core::change::{ChangeId, ChangeState};
use writ_core::name::IdentityName;
use writ_core::time::Duration;

use crate::State;
use crate::auth::Caller;
use crate::error::ApiResult;
use crate::http::{
    ChangePage, JsonBody, Operation, Path, Query, blocking, change_json, check_scope, op, page_limit,
    request_parts, required, scoped_change, write,
};
use crate::idempotency::Written;
use writ_api::wire::{Approval, BreakGlass, Comment, Decision, NewChange, NoFields, Review, Rollback};
use writ_core::access::Principal;
use writ_engine::{ChangeRecord, Engine};

pub fn operations() -> Vec<Operation> {
    use Action as A;
    use Method as M;
    vec![
        op(
            M::GET,
            "/api/v1/changes",
            "Changes, newest first (paged by `before`, `limit`; filter `state`).",
            Some(A::Read),
            None,
            get(list_changes),
        )
        .query::<ChangePage>(),
        op(
            M::POST,
            "/api/v1/changes",
            "Request a change; the caller is the requester.",
            Some(A::Request),
            Some("NewChange"),
            post(request_change),
        ),
        op(
            M::GET,
            "/api/v1/changes/{id}",
            "A change with its full trail.",
            Some(A::Read),
            None,
            get(show_change),
        ),
        op(
            M::POST,
            "/api/v1/changes/{id}/approve",
            "Approve as the caller (`valid_for` may shorten validity).",
            Some(A::Approve),
            Some("Approval"),
            post(approve_change),
        ),
        op(
            M::POST,
            "/api/v1/changes/{id}/reject",
            "Reject as the caller (`reason` required).",
            Some(A::Reject),
            Some("Decision"),
            post(|s, c, p, m, h, b| {
                decide_change(s, c, p, m, h, b, ("reject", Action::Reject, Engine::reject))
            }),
        ),
        op(
            M::POST,
            "/api/v1/changes/{id}/cancel",
            "Cancel your own change (`reason` required).",
            Some(A::Cancel),
            Some("Decision"),
            post(|s, c, p, m, h, b| {
                decide_change(s, c, p, m, h, b, ("cancel", Action::Cancel, Engine::cancel))
            }),
        ),
        op(
            M::POST,
            "/api/v1/changes/{id}/execute",
            "Implement an approved change on its targets.",
            Some(A::Execute),
            Some("NoFields"),
            post(|s, c, p, m, h, b| {
                let execute: Act = |engine, id, me| engine.execute(id, Some(me));
                act_on_change(s, c, p, m, h, b, ("execute", Action::Execute, execute))
            }),
        ),
        op(
            M::POST,
            "/api/v1/changes/{id}/verify",
            "Observe the targets and compare with the approved state.",
            Some(A::Verify),
            Some("NoFields"),
            post(|s, c, p, m, h, b| {
                let verify: Act = |engine, id, _| engine.verify(id);
                act_on_change(s, c, p, m, h, b, ("verify", Action::Verify, verify))
            }),
        ),
        op(
            M::POST,
            "/api/v1/changes/{id}/review",
            "Review an implemented change (`notes` required).",
            Some(A::Review),
            Some("Review"),
            post(review_change),
        ),
        op(
            M::POST,
            "/api/v1/changes/{id}/rollback",
            "Ask to undo a change that was carried out (`justification` required): its rollback \
             owner, who asked for it, or an admin. Answers the new rollback change: the inverse \
             operations, linked both ways, approved like any other.",
            Some(A::Rollback),
            Some("Rollback"),
            post(rollback_change),
        ),
        op(
            M::POST,
            "/api/v1/changes/{id}/hold",
            "Place a legal hold (`reason` required; an admin or an auditor): nothing of the change \
             is erased under retention until it is lifted.",
            Some(A::Hold),
            Some("Decision"),
            post(|s, c, p, m, h, b| {
                let hold: Decide = |engine, id, me, reason| engine.hold(id, me, true, reason);
                decide_change(s, c, p, m, h, b, ("hold", Action::Hold, hold))
            }),
        ),
        op(
            M::POST,
            "/api/v1/changes/{id}/release",
            "Lift a legal hold (`reason` required; an admin or an auditor).",
            Some(A::Hold),
            Some("Decision"),
            post(|s, c, p, m, h, b| {
                let release: Decide = |engine, id, me, reason| engine.hold(id, me, false, reason);
                decide_change(s, c, p, m, h, b, ("release", Action::Hold, release))
            }),
        ),
        op(
            M::POST,
            "/api/v1/changes/{id}/comment",
            "Comment on a change, in any state (`text` required): the people it concerns, and \
             approvers, executors, reviewers, auditors and admins.",
            Some(A::Comment),
            Some("Comment"),
            post(comment_change),
        ),
        op(
            M::POST,
            "/api/v1/breakglass",
            "Break glass as the caller: a short grant executed at once (policy decides who may); \
             someone else approves it afterwards by the deadline, then it is reviewed.",
            Some(A::Request),
            Some("BreakGlass"),
            post(break_glass),
        ),
    ]
    .into_iter()
    .map(|operation| {
        // Every operation on changes answers the change's view; the list, a page of summaries.
        if operation.method == M::GET && operation.path == "/api/v1/changes" {
            operation.returns::<writ_api::view::Page<writ_api::view::SummaryView>>()
        } else {
            operation.returns::<writ_api::view::ChangeView>()
        }
    })
    .collect()
}

// ---- changes ----

pub(crate) async fn list_changes(
    axum::extract::State(state): axum::extract::State<State>,
    Caller(caller): Caller,
    Query(page): Query<ChangePage>,
) -> ApiResult<Json<Value>> {
    caller.may(Action::Read)?;
    let limit = page_limit(page.limit)?;
    let filter = page.state.as_deref().map(ChangeState::parse).transpose()?;
    let before = page.before.as_deref().map(ChangeId::parse).transpose()?;
    blocking(&state, move |state| {
        let store = state.engine.store();
        let mut items = Vec::new();
        let mut cursor = before;
        let mut next = None;
        // Vendors see only their organisation's changes; keep paging until the page is full.
        'pages: loop {
            let batch = store.changes_page(filter, cursor.as_ref(), limit + 1)?;
            let exhausted = batch.len() <= limit;
            for summary in batch.iter().take(limit) {
                cursor = Some(summary.id.clone());
                if let Some(org) = &caller.identity.vendor {
                    let requester = state.engine.identity(&summary.requester)?;
                    if requester.vendor.as_ref() != Some(org) {
                        continue;
                    }
                }
                items.push(writ_api::view::SummaryView::of(summary));
                if items.len() == limit {
                    if !exhausted || batch.len() > items.len() {
                        next = Some(summary.id.to_string());
                    }
                    break 'pages;
                }
            }
            if exhausted {
                break;
            }
        }
        Ok(Json(writ_api::view::to_json(&writ_api::view::Page { items, next })))
    })
    .await
}

pub(crate) async fn request_change(
    axum::extract::State(state): axum::extract::State<State>,
    Caller(caller): Caller,
    method: Method,
    headers: HeaderMap,
    body: JsonBody<NewChange>,
) -> ApiResult<Response> {
    caller.may(Action::Request)?;
    // The requester is the authenticated caller; the body cannot name one.
    let input = body.value.into_input(caller.identity.name.as_str())?;
    let request = request_parts(&method, "/changes", &body.raw);
    let principal = caller.clone();
    write(&state, &caller, headers, request, move |state| {
        let engine = &state.engine;
        crate::http::check_request_scope(engine, &principal, &input)?;
        let record = engine.request(input, writ_engine::random_bits()?)?;
        Ok(Written {
            status: StatusCode::CREATED,
            resource: format!("change:{}", record.change.id),
            body: change_json(engine, &record)?,
        })
    })
    .await
}

pub(crate) async fn show_change(
    axum::extract::State(state): axum::extract::State<State>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let id = ChangeId::parse(&id)?;
    blocking(&state, move |state| {
        let record = scoped_change(&state.engine, &caller, Action::Read, &id)?;
        Ok(Json(change_json(&state.engine, &record)?))
    })
    .await
}

/// One step of a change by the caller: the role the step needs, the vendor scope, then `work`
/// under the request's idempotency key.
async fn step(
    state: State,
    caller: Principal,
    id: String,
    (method, headers, raw): (Method, HeaderMap, &[u8]),
    step: (&'static str, Action),
    work: impl FnOnce(&Engine, &ChangeId, &IdentityName) -> ApiResult<ChangeRecord> + Send + 'static,
) -> ApiResult<Response> {
    let (name, action) = step;
    let id = ChangeId::parse(&id)?;
    caller.may(action)?;
    let request = request_parts(&method, &format!("/changes/{id}/{name}"), raw);
    let me = caller.identity.name.clone();
    let principal = caller.clone();
    write(&state, &caller, headers, request, move |state| {
        let engine = &state.engine;
        check_scope(engine, &principal, action, &id)?;
        let record = work(engine, &id, &me)?;
        Ok(Written {
            status: StatusCode::OK,
            resource: format!("change:{id}"),
            body: change_json(engine, &record)?,
        })
    })
    .await
}

pub(crate) async fn approve_change(
    axum::extract::State(state): axum::extract::State<State>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    method: Method,
    headers: HeaderMap,
    body: JsonBody<Approval>,
) -> ApiResult<Response> {
    let Approval { valid_for, on_behalf_of } = body.value;
    let validity = valid_for.as_deref().map(Duration::parse).transpose()?;
    let on_behalf_of = on_behalf_of.as_deref().map(IdentityName::parse).transpose()?;
    step(
        state,
        caller,
        id,
        (method, headers, &body.raw),
        ("approve", Action::Approve),
        move |engine, id, me| Ok(engine.approve(id, me, on_behalf_of.as_ref(), validity)?),
    )
    .await
}

/// How `reject` and `cancel` record a decision with its reason.
type Decide = fn(&Engine, &ChangeId, &IdentityName, String) -> writ_engine::Result<ChangeRecord>;

/// `reject` and `cancel`: the caller decides, giving a reason.
async fn decide_change(
    axum::extract::State(state): axum::extract::State<State>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    method: Method,
    headers: HeaderMap,
    body: JsonBody<Decision>,
    (name, action, decide): (&'static str, Action, Decide),
) -> ApiResult<Response> {
    let reason = required(body.value.reason, "reason")?;
    step(state, caller, id, (method, headers, &body.raw), (name, action), move |engine, id, me| {
        Ok(decide(engine, id, me, reason)?)
    })
    .await
}

/// How `execute` and `verify` act on a change as the caller.
type Act = fn(&Engine, &ChangeId, &IdentityName) -> writ_engine::Result<ChangeRecord>;

/// `execute` and `verify`: the caller acts on the change; the body is an empty object.
async fn act_on_change(
    axum::extract::State(state): axum::extract::State<State>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    method: Method,
    headers: HeaderMap,
    body: JsonBody<NoFields>,
    (name, action, act): (&'static str, Action, Act),
) -> ApiResult<Response> {
    step(state, caller, id, (method, headers, &body.raw), (name, action), move |engine, id, me| {
        Ok(act(engine, id, me)?)
    })
    .await
}

pub(crate) async fn review_change(
    axum::extract::State(state): axum::extract::State<State>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    method: Method,
    headers: HeaderMap,
    body: JsonBody<Review>,
) -> ApiResult<Response> {
    let notes = required(body.value.notes, "notes")?;
    step(
        state,
        caller,
        id,
        (method, headers, &body.raw),
        ("review", Action::Review),
        move |engine, id, me| Ok(engine.review(id, me, notes)?),
    )
    .await
}

pub(crate) async fn rollback_change(
    axum::extract::State(state): axum::extract::State<State>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    method: Method,
    headers: HeaderMap,
    body: JsonBody<Rollback>,
) -> ApiResult<Response> {
    let justification = body.value.justification()?;
    step(
        state,
        caller,
        id,
        (method, headers, &body.raw),
        ("rollback", Action::Rollback),
        move |engine, id, me| Ok(engine.rollback(id, me, justification, writ_engine::random_bits()?)?),
    )
    .await
}

pub(crate) async fn comment_change(
    axum::extract::State(state): axum::extract::State<State>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    method: Method,
    headers: HeaderMap,
    body: JsonBody<Comment>,
) -> ApiResult<Response> {
    let text = required(body.value.text, "text")?;
    step(
        state,
        caller,
        id,
        (method, headers, &body.raw),
        ("comment", Action::Comment),
        move |engine, id, me| Ok(engine.comment(id, me, text)?),
    )
    .await
}

// ---- break-glass and findings ----

pub(crate) async fn break_glass(
    axum::extract::State(state): axum::extract::State<State>,
    Caller(caller): Caller,
    method: Method,
    headers: HeaderMap,
    body: JsonBody<BreakGlass>,
) -> ApiResult<Response> {
    caller.may(Action::Request)?;
    // Whoever breaks glass is the authenticated caller.
    let input = body.value.into_input(caller.identity.name.as_str())?;
    let request = request_parts(&method, "/breakglass", &body.raw);
    write(&state, &caller, headers, request, move |state| {
        let engine = &state.engine;
        let record = engine.breakglass(input, writ_engine::random_bits()?)?;
        Ok(Written {
            status: StatusCode::CREATED,
            resource: format!("change:{}", record.change.id),
            body: change_json(engine, &record)?,
        })
    })
    .await
}
