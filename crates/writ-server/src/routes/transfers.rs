//! Transfers of an NHI's ownership: asked for by its owner, the new owner or an admin, and
//! decided by someone else (the engine decides who, `writ_core::transfer`). Admins and auditors
//! see every transfer; everyone else those they asked for, give or receive.

use axum::Json;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::Value;
use writ_api::view::{List, TransferView, to_json};
use writ_api::wire::{TransferDecision, TransferRequest};
use writ_core::access::{Action, Role};
use writ_core::name::IdentityName;
use writ_core::transfer::{Decision, Transfer};

use crate::State;
use crate::auth::Caller;
use crate::error::ApiResult;
use crate::http::{JsonBody, Operation, Path, Query, blocking, op, request_parts, required, write};
use crate::idempotency::Written;

pub fn operations() -> Vec<Operation> {
    use Action as A;
    use Method as M;
    vec![
        op(
            M::POST,
            "/api/v1/identities/{name}/transfers",
            "Ask that `to` own the non-human identity NAME (`justification` required): by its owner, the new owner \
             or an admin. Someone else accepts: the new owner, or when the new owner asked, the current owner \
             (or an admin if the owner is gone). Supersedes a pending transfer of NAME; valid 7 days.",
            Some(A::Request),
            Some("TransferRequest"),
            post(request_transfer),
        )
        .returns::<TransferView>()
        .for_roles(ACTING),
        op(
            M::GET,
            "/api/v1/transfers",
            "Transfers of ownership (`identity` query: of one identity): every one for admins and auditors, else \
             those you asked for, give or receive.",
            Some(A::Read),
            None,
            get(list_transfers),
        )
        .query::<TransferQuery>()
        .returns::<List<TransferView>>(),
        op(M::GET, "/api/v1/transfers/{id}", "One transfer of ownership.", Some(A::Read), None, get(show_transfer))
            .returns::<TransferView>(),
        op(
            M::POST,
            "/api/v1/transfers/{id}/{decision}",
            "Decide a pending transfer: `accept` (the identity's owner is then its `to`, and an open nhi.orphaned \
             finding about it is resolved), `decline`, or `cancel` (by who asked); `note`: what you say about it.",
            Some(A::Request),
            Some("TransferDecision"),
            post(decide_transfer),
        )
        .returns::<TransferView>()
        .for_roles(ACTING),
    ]
}

/// Who may ask for or decide a transfer over the API: people who act on access (requesters) and
/// admins; an approver, reviewer or auditor alone does not take on an NHI. The engine then
/// decides from the relationship (`writ_core::transfer`).
const ACTING: &[Role] = &[Role::Requester, Role::Admin];

/// The role check of [`ACTING`].
fn may_act(caller: &writ_core::access::Principal) -> ApiResult<()> {
    if caller.may(Action::Request).is_err() {
        caller.may(Action::Operate)?;
    }
    Ok(())
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TransferQuery {
    #[schemars(regex(pattern = writ_api::wire::NAME_PATTERN))]
    pub identity: Option<String>,
}

/// Whether `who` (holding `roles`) may see `transfer`.
fn visible(transfer: &Transfer, who: &IdentityName, roles: &[Role]) -> bool {
    roles.iter().any(|r| matches!(r, Role::Admin | Role::Auditor))
        || [Some(&transfer.requested_by), Some(&transfer.to), transfer.from.as_ref()].contains(&Some(who))
}

pub(crate) async fn list_transfers(
    axum::extract::State(state): axum::extract::State<State>,
    Caller(caller): Caller,
    Query(query): Query<TransferQuery>,
) -> ApiResult<Json<Value>> {
    caller.may(Action::Read)?;
    let identity = query.identity.as_deref().map(IdentityName::parse).transpose()?;
    blocking(&state, move |state| {
        let now = state.engine.now();
        let items = state
            .engine
            .transfers(identity.as_ref())?
            .iter()
            .filter(|t| visible(t, &caller.identity.name, &caller.roles))
            .map(|t| TransferView::of(t, now))
            .collect();
        Ok(Json(to_json(&List { items })))
    })
    .await
}

pub(crate) async fn show_transfer(
    axum::extract::State(state): axum::extract::State<State>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.may(Action::Read)?;
    blocking(&state, move |state| {
        let transfer = state.engine.transfer(&id)?;
        if !visible(&transfer, &caller.identity.name, &caller.roles) {
            // Indistinguishable from an unknown id: the caller has no part in it.
            return Err(writ_engine::EngineError::NotFound { what: "transfer", name: id }.into());
        }
        Ok(Json(to_json(&TransferView::of(&transfer, state.engine.now()))))
    })
    .await
}

pub(crate) async fn request_transfer(
    axum::extract::State(state): axum::extract::State<State>,
    Caller(caller): Caller,
    Path(name): Path<String>,
    method: Method,
    headers: HeaderMap,
    body: JsonBody<TransferRequest>,
) -> ApiResult<Response> {
    may_act(&caller)?;
    // Ownership is the organisation's accountability: a vendor's principal takes no part.
    caller.within_scope(Action::Request, std::iter::once(None))?;
    let identity = IdentityName::parse(&name)?;
    let to = IdentityName::parse(&required(body.value.to, "to")?)?;
    let justification = required(body.value.justification, "justification")?;
    let request = request_parts(&method, &format!("/identities/{identity}/transfers"), &body.raw);
    let me = caller.identity.name.clone();
    write(&state, &caller, headers, request, move |state| {
        let transfer =
            state.engine.request_transfer(&me, &identity, &to, justification, writ_engine::random_bits()?)?;
        Ok(Written {
            status: StatusCode::CREATED,
            resource: format!("transfer:{}", transfer.id),
            body: to_json(&TransferView::of(&transfer, state.engine.now())),
        })
    })
    .await
}

/// Accept, decline or cancel: the engine decides whether the caller may.
pub(crate) async fn decide_transfer(
    axum::extract::State(state): axum::extract::State<State>,
    Caller(caller): Caller,
    Path((id, decision)): Path<(String, String)>,
    method: Method,
    headers: HeaderMap,
    body: JsonBody<TransferDecision>,
) -> ApiResult<Response> {
    may_act(&caller)?;
    caller.within_scope(Action::Request, std::iter::once(None))?;
    let decision = match decision.as_str() {
        "accept" => Decision::Accept,
        "decline" => Decision::Decline,
        "cancel" => Decision::Cancel,
        other => {
            return Err(writ_core::Refusal::InvalidValue {
                field: "decision",
                input: other.chars().take(40).collect(),
                expected: "accept, decline or cancel",
            }
            .into());
        }
    };
    let request = request_parts(&method, &format!("/transfers/{id}/{}", decision.as_str()), &body.raw);
    let me = caller.identity.name.clone();
    let note = body.value.note;
    write(&state, &caller, headers, request, move |state| {
        let transfer = state.engine.decide_transfer(&me, &id, decision, note)?;
        Ok(Written {
            status: StatusCode::OK,
            resource: format!("transfer:{}", transfer.id),
            body: to_json(&TransferView::of(&transfer, state.engine.now())),
        })
    })
    .await
}
