//! Notifications: every one for admins and auditors (a change's own are on the change, for
//! whoever may read it), and an admin's retry of one that did not get through.

use axum::Json;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::Value;
use writ_api::view::{List, NotificationView, to_json};
use writ_api::wire::RetryNotification;
use writ_core::access::Action;
use writ_core::change::ChangeId;
use writ_core::identity::Actor;
use writ_core::notify::NoticeState;

use crate::State;
use crate::auth::Caller;
use crate::error::ApiResult;
use crate::http::{JsonBody, Operation, Path, Query, blocking, op, request_parts, write};
use crate::idempotency::Written;

pub fn operations() -> Vec<Operation> {
    use Action as A;
    use Method as M;
    vec![
        op(
            M::GET,
            "/api/v1/notifications",
            "Notifications, newest first (`state`: pending, delivered or dead; `change`: of one change; `limit`, \
             default 100, at most 1000): who was told of what, over which channel, and how delivery went.",
            Some(A::ReadLedger),
            None,
            get(list_notifications),
        )
        .query::<NotificationQuery>()
        .returns::<List<NotificationView>>(),
        op(
            M::GET,
            "/api/v1/notifications/{id}",
            "One notification with its delivery so far.",
            Some(A::ReadLedger),
            None,
            get(show_notification),
        )
        .returns::<NotificationView>(),
        op(
            M::POST,
            "/api/v1/notifications/{id}/retry",
            "Try a dead (or pending) notification again now, after its channel was fixed; its attempts are kept \
             and its id (the receivers' idempotency key) stays. A delivered one is refused (409).",
            Some(A::Administer),
            Some("RetryNotification"),
            post(retry_notification),
        )
        .returns::<NotificationView>(),
    ]
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NotificationQuery {
    #[schemars(extend("enum" = ["pending", "delivered", "dead"]))]
    pub state: Option<String>,
    #[schemars(regex(pattern = writ_api::wire::CHANGE_ID_PATTERN))]
    pub change: Option<String>,
    #[schemars(range(min = 1, max = 1000))]
    pub limit: Option<usize>,
}

pub(crate) async fn list_notifications(
    axum::extract::State(state): axum::extract::State<State>,
    Caller(caller): Caller,
    Query(query): Query<NotificationQuery>,
) -> ApiResult<Json<Value>> {
    caller.may(Action::ReadLedger)?;
    let notice = query.state.as_deref().map(NoticeState::parse).transpose()?;
    let change = query.change.as_deref().map(ChangeId::parse).transpose()?;
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(writ_core::Refusal::InvalidValue {
            field: "limit",
            input: limit.to_string(),
            expected: "from 1 to 1000",
        }
        .into());
    }
    blocking(&state, move |state| {
        let items = state
            .engine
            .notifications(change.as_ref(), notice, limit)?
            .iter()
            .map(NotificationView::of)
            .collect();
        Ok(Json(to_json(&List { items })))
    })
    .await
}

pub(crate) async fn show_notification(
    axum::extract::State(state): axum::extract::State<State>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.may(Action::ReadLedger)?;
    blocking(&state, move |state| Ok(Json(to_json(&NotificationView::of(&state.engine.notification(&id)?)))))
        .await
}

pub(crate) async fn retry_notification(
    axum::extract::State(state): axum::extract::State<State>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    method: Method,
    headers: HeaderMap,
    body: JsonBody<RetryNotification>,
) -> ApiResult<Response> {
    caller.may(Action::Administer)?;
    writ_core::notify::Notification::parse_id(&id)?;
    let request = request_parts(&method, &format!("/notifications/{id}/retry"), &body.raw);
    let actor = Actor::Identity(caller.identity.name.clone());
    write(&state, &caller, headers, request, move |state| {
        let notification = state.engine.retry_notification(&actor, &id)?;
        Ok(Written {
            status: StatusCode::OK,
            resource: format!("notification:{}", notification.id),
            body: to_json(&NotificationView::of(&notification)),
        })
    })
    .await
}
