//! Identities and their roles.

use axum::Json;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use serde_json::Value;
use writ_core::access::{Action, Principal, Role};
use writ_core::identity::{Actor, IdentityKind, IdentityState};
use writ_core::name::{IdentityName, OrgName};

use crate::State;
use crate::auth::Caller;
use crate::error::ApiResult;
use crate::http::{
    IdentityPage, JsonBody, Operation, Path, Query, blocking, op, page_limit, request_parts, required, write,
};
use crate::idempotency::Written;
use writ_api::view::{
    GrantView, IdentityDetailView, IdentityView, List, OffboardingView, Page, RoleChangeView, RoleView,
    ScimLinkView, StandingView, to_json,
};
use writ_api::wire::{Decision, NewIdentity, Offboard, ScimLink};

pub fn operations() -> Vec<Operation> {
    use Action as A;
    use Method as M;
    vec![
        op(
            M::GET,
            "/api/v1/identities",
            "Identities (paged by `after`, `limit`).",
            Some(A::Read),
            None,
            get(list_identities),
        )
        .query::<IdentityPage>()
        .returns::<Page<IdentityView>>(),
        op(
            M::POST,
            "/api/v1/identities",
            "Register an identity.",
            Some(A::Administer),
            Some("NewIdentity"),
            post(add_identity),
        )
        .returns::<IdentityView>(),
        op(
            M::GET,
            "/api/v1/identities/{name}",
            "An identity with its grants and roles.",
            Some(A::Read),
            None,
            get(show_identity),
        )
        .returns::<IdentityDetailView>(),
        op(
            M::PUT,
            "/api/v1/identities/{name}/roles/{role}",
            "Assign a role.",
            Some(A::Administer),
            None,
            put(grant_role),
        )
        .returns::<RoleChangeView>(),
        op(
            M::DELETE,
            "/api/v1/identities/{name}/roles/{role}",
            "Remove a role.",
            Some(A::Administer),
            None,
            delete(revoke_role),
        )
        .returns::<RoleChangeView>(),
        op(
            M::POST,
            "/api/v1/identities/{name}/disable",
            "Disable an identity: its tokens are revoked, its roles suspended, its approvals of open changes withdrawn, the identities it owns flagged for transfer.",
            Some(A::Administer),
            Some("Decision"),
            post(disable_identity),
        )
        .idempotent_by_nature()
        .returns::<StandingView>(),
        op(
            M::POST,
            "/api/v1/identities/{name}/enable",
            "Make a disabled or offboarded identity active again (its revoked tokens stay revoked).",
            Some(A::Administer),
            Some("Decision"),
            post(enable_identity),
        )
        .idempotent_by_nature()
        .returns::<StandingView>(),
        op(
            M::POST,
            "/api/v1/identities/{name}/offboard",
            "Offboard an identity: it stops acting at once (as disable), and the change that removes everything it holds on any target is opened (none if it holds nothing).",
            Some(A::Administer),
            Some("Offboard"),
            post(offboard_identity),
        )
        .idempotent_by_nature()
        .returns::<OffboardingView>(),
        op(
            M::PUT,
            "/api/v1/identities/{name}/scim-link",
            "Link an existing person to the identity provider's `externalId`, so that a SCIM User with it adopts them (without a link, a SCIM User naming an existing person is refused).",
            Some(A::Administer),
            Some("ScimLink"),
            put(link_scim),
        )
        .returns::<ScimLinkView>(),
        op(M::GET, "/api/v1/roles", "Every role assignment.", Some(A::ReadLedger), None, get(list_roles))
            .returns::<List<RoleView>>(),
    ]
}

pub(crate) async fn list_identities(
    axum::extract::State(state): axum::extract::State<State>,
    Caller(caller): Caller,
    Query(page): Query<IdentityPage>,
) -> ApiResult<Json<Value>> {
    caller.may(Action::Read)?;
    let limit = page_limit(page.limit)?;
    let after = page.after.as_deref().map(writ_core::name::IdentityName::parse).transpose()?;
    blocking(&state, move |state| {
        let identities = state.engine.store().identities()?;
        let visible: Vec<_> = identities
            .iter()
            .filter(|i| caller.identity.vendor.is_none() || i.vendor == caller.identity.vendor)
            .filter(|i| after.as_ref().is_none_or(|after| i.name.as_str() > after.as_str()))
            .collect();
        let next =
            (visible.len() > limit).then(|| visible.get(limit - 1).map(|i| i.name.to_string())).flatten();
        let items = visible.iter().take(limit).map(|i| IdentityView::of(i)).collect();
        Ok(Json(to_json(&Page { items, next })))
    })
    .await
}

pub(crate) async fn add_identity(
    axum::extract::State(state): axum::extract::State<State>,
    Caller(caller): Caller,
    method: Method,
    headers: HeaderMap,
    body: JsonBody<NewIdentity>,
) -> ApiResult<Response> {
    caller.may(Action::Administer)?;
    let NewIdentity { name, kind, owner, vendor, email } = body.value;
    let email = email.as_deref().map(writ_core::notify::parse_email).transpose()?;
    let name = IdentityName::parse(&required(name, "name")?)?;
    let kind = IdentityKind::parse(&required(kind, "kind")?)?;
    let owner = owner.as_deref().map(IdentityName::parse).transpose()?;
    let vendor = vendor.as_deref().map(OrgName::parse).transpose()?;
    let actor = Actor::Identity(caller.identity.name.clone());
    let request = request_parts(&method, "/identities", &body.raw);
    write(&state, &caller, headers, request, move |state| {
        let identity =
            state.engine.add_identity_reached(actor, name, kind, owner.as_ref(), vendor, email.as_deref())?;
        Ok(Written {
            status: StatusCode::CREATED,
            resource: format!("identity:{}", identity.name),
            body: writ_api::view::identity_json(&identity),
        })
    })
    .await
}

pub(crate) async fn show_identity(
    axum::extract::State(state): axum::extract::State<State>,
    Caller(caller): Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.may(Action::Read)?;
    let name = IdentityName::parse(&name)?;
    blocking(&state, move |state| {
        let identity = state.engine.identity(&name)?;
        caller.within_scope(Action::Read, std::iter::once(identity.vendor.as_ref()))?;
        let grants = state.engine.grants_of(&name)?;
        let roles = state.engine.store().roles_of(&name)?.iter().map(|r| r.as_str().to_owned()).collect();
        Ok(Json(to_json(&IdentityDetailView {
            identity: IdentityView::of(&identity),
            grants: Some(grants.iter().map(GrantView::of).collect()),
            roles,
        })))
    })
    .await
}

pub(crate) async fn link_scim(
    axum::extract::State(state): axum::extract::State<State>,
    Caller(caller): Caller,
    Path(name): Path<String>,
    body: JsonBody<ScimLink>,
) -> ApiResult<Json<Value>> {
    caller.may(Action::Administer)?;
    let name = IdentityName::parse(&name)?;
    let external_id = required(body.value.external_id, "external_id")?;
    let actor = Actor::Identity(caller.identity.name.clone());
    blocking(&state, move |state| {
        state.engine.link_scim(actor, &name, &external_id)?;
        Ok(Json(to_json(&ScimLinkView { identity: name.to_string(), external_id })))
    })
    .await
}

async fn set_state(
    state: State,
    caller: Principal,
    name: String,
    reason: Option<String>,
    to: IdentityState,
) -> ApiResult<Json<Value>> {
    caller.may(Action::Administer)?;
    let name = IdentityName::parse(&name)?;
    let reason = required(reason, "reason")?;
    let actor = Actor::Identity(caller.identity.name.clone());
    blocking(&state, move |state| {
        let standing = state.engine.set_identity_state(actor, &name, to, reason)?;
        Ok(Json(to_json(&StandingView::of(&standing))))
    })
    .await
}

pub(crate) async fn disable_identity(
    axum::extract::State(state): axum::extract::State<State>,
    Caller(caller): Caller,
    Path(name): Path<String>,
    body: JsonBody<Decision>,
) -> ApiResult<Json<Value>> {
    set_state(state, caller, name, body.value.reason, IdentityState::Disabled).await
}

pub(crate) async fn enable_identity(
    axum::extract::State(state): axum::extract::State<State>,
    Caller(caller): Caller,
    Path(name): Path<String>,
    body: JsonBody<Decision>,
) -> ApiResult<Json<Value>> {
    set_state(state, caller, name, body.value.reason, IdentityState::Active).await
}

pub(crate) async fn offboard_identity(
    axum::extract::State(state): axum::extract::State<State>,
    Caller(caller): Caller,
    Path(name): Path<String>,
    body: JsonBody<Offboard>,
) -> ApiResult<Json<Value>> {
    caller.may(Action::Administer)?;
    let name = IdentityName::parse(&name)?;
    let (justification, refs) = body.value.into_parts()?;
    let requester = caller.identity.name.clone();
    blocking(&state, move |state| {
        let offboarding =
            state.engine.offboard(requester, &name, justification, refs, writ_engine::random_bits()?)?;
        Ok(Json(to_json(&OffboardingView::of(&offboarding))))
    })
    .await
}

pub(crate) async fn set_role(
    state: State,
    caller: Principal,
    name: String,
    role: String,
    present: bool,
) -> ApiResult<Response> {
    caller.may(Action::Administer)?;
    let name = IdentityName::parse(&name)?;
    let role = Role::parse(&role)?;
    let actor = Actor::Identity(caller.identity.name.clone());
    blocking(&state, move |state| {
        state.engine.set_role(actor, &name, role, present)?;
        let changed =
            RoleChangeView { identity: name.to_string(), role: role.as_str().to_owned(), assigned: present };
        Ok(Json(to_json(&changed)).into_response())
    })
    .await
}

pub(crate) async fn grant_role(
    axum::extract::State(state): axum::extract::State<State>,
    Caller(caller): Caller,
    Path((name, role)): Path<(String, String)>,
) -> ApiResult<Response> {
    set_role(state, caller, name, role, true).await
}

pub(crate) async fn revoke_role(
    axum::extract::State(state): axum::extract::State<State>,
    Caller(caller): Caller,
    Path((name, role)): Path<(String, String)>,
) -> ApiResult<Response> {
    set_role(state, caller, name, role, false).await
}

pub(crate) async fn list_roles(
    axum::extract::State(state): axum::extract::State<State>,
    Caller(caller): Caller,
) -> ApiResult<Json<Value>> {
    caller.may(Action::Administer).or_else(|_| caller.may(Action::ReadLedger))?;
    blocking(&state, |state| {
        let items = state
            .engine
            .store()
            .role_assignments()?
            .iter()
            .map(|(identity, role)| RoleView {
                identity: identity.to_string(),
                role: role.as_str().to_owned(),
            })
            .collect();
        Ok(Json(to_json(&List { items })))
    })
    .await
}
