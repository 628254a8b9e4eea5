//! The routes under `/api/v1`, plus `/healthz` and `/readyz`. Each handler: authenticate
//! (the [`Caller`] extractor), check the role and the vendor scope, run the engine on the
//! blocking pool, render the same JSON the CLI prints with `--json`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, Path, Query, Request};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use writ_core::access::{Action, Principal, Role};
use writ_core::change::{ChangeId, ChangeState};
use writ_core::identity::{Actor, IdentityKind};
use writ_core::name::{IdentityName, OrgName, TargetName};
use writ_core::time::Duration;
use writ_engine::{ChangeRecord, Engine};

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::idempotency::{self, Outcome, Written};
use crate::{AppState, State};
use writ_api::wire::{BreakGlass, NewChange, NewIdentity, NewTarget, NewToken, ResolveFinding, StepBody};

/// One operation of the API: the single source for both the router and the OpenAPI document.
pub struct Operation {
    pub method: Method,
    pub path: &'static str,
    pub summary: &'static str,
    /// The roles that may call it (empty: no authentication).
    pub roles: &'static [Role],
    /// The request body: a JSON schema name in `openapi.rs`, or `None`.
    pub body: Option<&'static str>,
    /// Whether it honours `Idempotency-Key`.
    pub idempotent: bool,
    handler: MethodRouter<State>,
}

pub(super) fn op(
    method: Method,
    path: &'static str,
    summary: &'static str,
    action: Option<Action>,
    body: Option<&'static str>,
    handler: MethodRouter<State>,
) -> Operation {
    let idempotent = body.is_some() && method == Method::POST && path != "/api/v1/tokens";
    Operation { method, path, summary, roles: action.map_or(&[], Action::roles), body, idempotent, handler }
}

/// Every operation Writ serves.
pub fn operations() -> Vec<Operation> {
    use Action as A;
    use Method as M;
    vec![
        op(M::GET, "/healthz", "Liveness: the process answers.", None, None, get(healthz)),
        op(
            M::GET,
            "/readyz",
            "Readiness: the store takes writes and the keys are loaded.",
            None,
            None,
            get(readyz),
        ),
        op(M::GET, "/api/v1/openapi.json", "This document.", None, None, get(crate::openapi::document)),
        op(
            M::GET,
            "/api/v1/whoami",
            "The authenticated identity and its roles.",
            Some(A::Read),
            None,
            get(whoami),
        ),
        op(
            M::GET,
            "/api/v1/identities",
            "Identities (paged by `after`, `limit`).",
            Some(A::Read),
            None,
            get(list_identities),
        ),
        op(
            M::POST,
            "/api/v1/identities",
            "Register an identity.",
            Some(A::Administer),
            Some("NewIdentity"),
            post(add_identity),
        ),
        op(
            M::GET,
            "/api/v1/identities/{name}",
            "An identity with its grants and roles.",
            Some(A::Read),
            None,
            get(show_identity),
        ),
        op(
            M::PUT,
            "/api/v1/identities/{name}/roles/{role}",
            "Assign a role.",
            Some(A::Administer),
            None,
            put(grant_role),
        ),
        op(
            M::DELETE,
            "/api/v1/identities/{name}/roles/{role}",
            "Remove a role.",
            Some(A::Administer),
            None,
            delete(revoke_role),
        ),
        op(M::GET, "/api/v1/roles", "Every role assignment.", Some(A::ReadLedger), None, get(list_roles)),
        op(
            M::POST,
            "/api/v1/policy/reload",
            "Load the server's policy directory again and put it in force (policy.loaded in the ledger); an invalid policy is refused with FILE:LINE: reason and the policy in force stays.",
            Some(A::Administer),
            None,
            post(reload_policy),
        ),
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
        op(
            M::GET,
            "/api/v1/changes",
            "Changes, newest first (paged by `before`, `limit`; filter `state`).",
            Some(A::Read),
            None,
            get(list_changes),
        ),
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
            Some("StepBody"),
            post(change_step),
        ),
        op(
            M::POST,
            "/api/v1/changes/{id}/reject",
            "Reject as the caller (`reason` required).",
            Some(A::Reject),
            Some("StepBody"),
            post(change_step),
        ),
        op(
            M::POST,
            "/api/v1/changes/{id}/cancel",
            "Cancel your own change (`reason` required).",
            Some(A::Cancel),
            Some("StepBody"),
            post(change_step),
        ),
        op(
            M::POST,
            "/api/v1/changes/{id}/execute",
            "Implement an approved change on its targets.",
            Some(A::Execute),
            Some("StepBody"),
            post(change_step),
        ),
        op(
            M::POST,
            "/api/v1/changes/{id}/verify",
            "Observe the targets and compare with the approved state.",
            Some(A::Verify),
            Some("StepBody"),
            post(change_step),
        ),
        op(
            M::POST,
            "/api/v1/changes/{id}/review",
            "Review an implemented change (`notes` required).",
            Some(A::Review),
            Some("StepBody"),
            post(change_step),
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
        op(
            M::GET,
            "/api/v1/findings",
            "Findings (`state` query: open, excepted, resolved).",
            Some(A::ReadLedger),
            None,
            get(list_findings),
        ),
        op(M::GET, "/api/v1/findings/{id}", "One finding.", Some(A::ReadLedger), None, get(show_finding)),
        op(
            M::POST,
            "/api/v1/findings/{id}/resolve",
            "Resolve an open finding (`note` required: what was done).",
            Some(A::Review),
            Some("ResolveFinding"),
            post(resolve_finding),
        ),
        op(
            M::GET,
            "/api/v1/changes/{id}/evidence",
            "Evidence attached to a change.",
            Some(A::Read),
            None,
            get(list_evidence),
        ),
        op(
            M::POST,
            "/api/v1/changes/{id}/evidence",
            "Attach the raw body as evidence (`step`, `name` query).",
            Some(A::AttachEvidence),
            Some("binary"),
            post(add_evidence),
        ),
        op(
            M::GET,
            "/api/v1/evidence/{sha256}",
            "An evidence blob by SHA-256.",
            Some(A::Read),
            None,
            get(get_evidence),
        ),
        op(
            M::GET,
            "/api/v1/tokens",
            "Tokens (never their secrets).",
            Some(A::ReadLedger),
            None,
            get(list_tokens),
        ),
        op(
            M::POST,
            "/api/v1/tokens",
            "Issue a token for an identity; the secret is in this response only.",
            Some(A::Administer),
            Some("NewToken"),
            post(create_token),
        ),
        op(
            M::DELETE,
            "/api/v1/tokens/{id}",
            "Revoke a token (your own, or any as admin).",
            Some(A::Read),
            None,
            delete(revoke_token),
        ),
        op(
            M::GET,
            "/api/v1/ledger/checkpoints",
            "Event count and the newest signed checkpoint.",
            Some(A::ReadLedger),
            None,
            get(checkpoints),
        ),
        op(
            M::POST,
            "/api/v1/ledger/checkpoints",
            "Sign a checkpoint now.",
            Some(A::Operate),
            None,
            post(sign_checkpoint),
        ),
        op(
            M::GET,
            "/api/v1/ledger/proofs/inclusion/{index}",
            "Inclusion proof of an event.",
            Some(A::ReadLedger),
            None,
            get(inclusion_proof),
        ),
        op(
            M::GET,
            "/api/v1/ledger/proofs/consistency",
            "Consistency proof between sizes `from` and `to`.",
            Some(A::ReadLedger),
            None,
            get(consistency_proof),
        ),
        op(
            M::GET,
            "/api/v1/ledger/verify",
            "Verify the log against its checkpoints.",
            Some(A::ReadLedger),
            None,
            get(verify_ledger),
        ),
        op(
            M::GET,
            "/api/v1/audit/bundle",
            "Auditor bundle (tar) of one change (`change`) or the whole log; verify it with `writ audit verify`.",
            Some(A::ReadLedger),
            None,
            get(audit_bundle),
        ),
    ]
    .into_iter()
    .chain(crate::exceptions::operations())
    .chain(crate::hooks::operations())
    .chain(crate::scim::operations())
    .collect()
}

pub fn router(state: State) -> Router {
    let mut router = Router::new();
    for operation in operations() {
        router = router.route(operation.path, operation.handler);
    }
    router.fallback(not_found).layer(axum::middleware::from_fn(log_request)).with_state(state)
}

/// Runs engine work on the blocking pool.
pub(super) async fn blocking<T: Send + 'static>(
    state: &State,
    work: impl FnOnce(&AppState) -> ApiResult<T> + Send + 'static,
) -> ApiResult<T> {
    let state = Arc::clone(state);
    tokio::task::spawn_blocking(move || work(&state))
        .await
        .map_err(|e| ApiError::internal(format!("request task failed: {e}")))?
}

async fn log_request(request: Request, next: axum::middleware::Next) -> Response {
    let started = std::time::Instant::now();
    let method = request.method().clone();
    // The matched route, never the raw URI: query strings may carry what should not be logged.
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "-".to_owned(), |p| p.as_str().to_owned());
    let has_body = request.headers().contains_key(header::CONTENT_LENGTH)
        || request.headers().contains_key(header::TRANSFER_ENCODING);
    let mut response = next.run(request).await;
    if has_body && (response.status().is_client_error() || response.status().is_server_error()) {
        // A refusal may come before the body was read (authentication runs first); the rest of
        // it is then still on the connection, so close it rather than let the client reuse it.
        response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    tracing::info!(
        target: "writ::http",
        %method,
        route,
        status = response.status().as_u16(),
        micros = started.elapsed().as_micros() as u64,
        "request"
    );
    response
}

async fn not_found() -> ApiError {
    ApiError::new("not_found", "no such endpoint; see /api/v1/openapi.json")
}

// ---- request bodies ----

/// A JSON body: at most the configured size, `application/json`, parsed strictly; a parse error
/// names the field at fault. Keeps the raw bytes for the idempotency fingerprint.
pub struct JsonBody<T> {
    pub value: T,
    pub raw: Bytes,
}

impl<T: DeserializeOwned> FromRequest<State> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &State) -> Result<JsonBody<T>, ApiError> {
        let json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(';').next().is_some_and(|m| m.trim() == "application/json"));
        let raw = read_body(request, state.limits.body_bytes).await?;
        if !json && !raw.is_empty() {
            return Err(ApiError::new(
                "request.unsupported_media_type",
                "send the body as Content-Type: application/json",
            ));
        }
        let text: &[u8] = if raw.is_empty() { b"{}" } else { &raw };
        let mut deserializer = serde_json::Deserializer::from_slice(text);
        let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
            let field = e.path().to_string();
            let message = format!("malformed JSON body at `{field}`: {}", e.inner());
            ApiError::new("request.malformed_json", message).field(field)
        })?;
        Ok(JsonBody { value, raw })
    }
}

/// How much of an oversize body is read and dropped so the client can still read the 413
/// (a client that is still sending when the connection closes sees only a broken pipe).
const DRAIN_LIMIT: usize = 32 * 1024 * 1024;

/// Reads a body of at most `limit` bytes. A larger one is answered 413 after draining it (up to
/// [`DRAIN_LIMIT`]) without keeping it.
async fn read_body(request: Request, limit: usize) -> ApiResult<Bytes> {
    use http_body_util::BodyExt;
    let mut body = request.into_body();
    let mut kept: Vec<u8> = Vec::new();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ApiError::new("request.unreadable_body", e.to_string()))?;
        let Ok(data) = frame.into_data() else { continue };
        seen = seen.saturating_add(data.len());
        if seen <= limit {
            kept.extend_from_slice(&data);
        } else if seen > DRAIN_LIMIT {
            break;
        }
    }
    if seen > limit {
        return Err(ApiError::new(
            "request.too_large",
            format!("the request body is larger than the {limit} bytes this endpoint accepts"),
        ));
    }
    Ok(Bytes::from(kept))
}

pub(super) fn required<T>(value: Option<T>, field: &str) -> ApiResult<T> {
    value.ok_or_else(|| ApiError::new("request.missing_field", format!("`{field}` is required")).field(field))
}

/// Runs a write under the request's idempotency key and renders its result (or, on a replay,
/// the resource as it is now, with the first status).
pub(super) async fn write(
    state: &State,
    caller: &Principal,
    headers: HeaderMap,
    request: Vec<Vec<u8>>,
    work: impl FnOnce(&AppState) -> ApiResult<Written> + Send + 'static,
) -> ApiResult<Response> {
    let scope = caller.identity.name.to_string();
    let outcome = blocking(state, move |state| {
        let parts: Vec<&[u8]> = request.iter().map(Vec::as_slice).collect();
        match idempotency::run(state, &scope, &headers, &parts, || work(state))? {
            Outcome::Fresh(written) => Ok((written.status, written.body, false)),
            Outcome::Replay { status, resource } => {
                Ok((status, resource_json(&state.engine, &resource)?, true))
            }
        }
    })
    .await?;
    let (status, body, replayed) = outcome;
    let mut response = (status, Json(body)).into_response();
    if replayed {
        response.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(response)
}

pub(super) fn request_parts(method: &Method, path: &str, body: &[u8]) -> Vec<Vec<u8>> {
    vec![method.as_str().as_bytes().to_vec(), path.as_bytes().to_vec(), body.to_vec()]
}

/// Renders a stored resource reference (for idempotent replays).
fn resource_json(engine: &Engine, resource: &str) -> ApiResult<Value> {
    let (kind, rest) = resource.split_once(':').unwrap_or((resource, ""));
    match kind {
        "change" => change_json(engine, &engine.load(&ChangeId::parse(rest)?)?),
        "finding" => Ok(writ_api::view::finding_json(&engine.finding(rest)?)),
        "exception" => Ok(writ_api::view::exception_json(&engine.exception(rest)?)),
        "identity" => Ok(writ_api::view::identity_json(&engine.identity(&IdentityName::parse(rest)?)?)),
        "target" => Ok(writ_api::view::target_json(&engine.target(&TargetName::parse(rest)?)?)),
        "token" => {
            let token =
                engine.store().token(rest)?.ok_or_else(|| ApiError::internal("replayed token is gone"))?;
            Ok(writ_api::view::token_json(&token.info, token.revoked_at))
        }
        _ => Ok(json!({ "resource": resource })),
    }
}

fn change_json(engine: &Engine, record: &ChangeRecord) -> ApiResult<Value> {
    let sizes: Vec<u64> = engine.store().checkpoints()?.iter().map(|c| c.size).collect();
    Ok(writ_api::view::change_json(record, &sizes))
}

/// Checks that the caller may take `action` on the change: the role, and for a vendor's
/// principal the change's organisation (which needs the change; internal principals are not
/// scoped, so their writes load the change only once, in the engine).
fn check_scope(engine: &Engine, caller: &Principal, action: Action, id: &ChangeId) -> ApiResult<()> {
    caller.may(action)?;
    if caller.identity.vendor.is_some() {
        scoped_change(engine, caller, action, id)?;
    }
    Ok(())
}

/// Loads a change the caller may touch for `action`: vendors only within their organisation.
fn scoped_change(
    engine: &Engine,
    caller: &Principal,
    action: Action,
    id: &ChangeId,
) -> ApiResult<ChangeRecord> {
    caller.may(action)?;
    let record = engine.load(id)?;
    caller.within_scope(action, std::iter::once(record.change.vendor.as_ref()))?;
    Ok(record)
}

// ---- health ----

async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// Ready only when a write reaches the store (a lease renewal goes through the same path as
/// every commit) and the keys needed to record and sign are loaded.
async fn readyz(axum::extract::State(state): axum::extract::State<State>) -> Response {
    let checked = blocking(&state, |state| {
        let now = state.engine.now();
        let until = writ_core::time::Timestamp::from_millis(now.as_millis() + 1_000);
        let probe = format!("ready:{}", state.instance);
        state.engine.store().acquire_lease(&probe, &state.instance, now, until)?;
        state.engine.seal("readiness")?;
        if state.signer.is_none() {
            return Err(ApiError::new(
                "ledger.no_signing_key",
                "no ledger signing key: checkpoints cannot be signed",
            ));
        }
        Ok(())
    })
    .await;
    match checked {
        Ok(()) => Json(json!({ "status": "ready" })).into_response(),
        Err(mut error) => {
            error.status = StatusCode::SERVICE_UNAVAILABLE;
            error.into_response()
        }
    }
}

async fn whoami(Caller(caller): Caller) -> Json<Value> {
    let roles: Vec<&str> = caller.roles.iter().map(|r| r.as_str()).collect();
    let mut value = writ_api::view::identity_json(&caller.identity);
    writ_api::view::insert(&mut value, "roles", json!(roles));
    Json(value)
}

// ---- identities, roles, targets ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Page {
    pub limit: Option<usize>,
    pub after: Option<String>,
    pub before: Option<String>,
    pub state: Option<String>,
}

const DEFAULT_PAGE: usize = 50;
const MAX_PAGE: usize = 500;

fn page_limit(page: &Page) -> ApiResult<usize> {
    match page.limit {
        None => Ok(DEFAULT_PAGE),
        Some(limit) if (1..=MAX_PAGE).contains(&limit) => Ok(limit),
        Some(_) => {
            Err(ApiError::new("input.page_limit", format!("limit must be 1 to {MAX_PAGE}")).field("limit"))
        }
    }
}

async fn list_identities(
    axum::extract::State(state): axum::extract::State<State>,
    Caller(caller): Caller,
    Query(page): Query<Page>,
) -> ApiResult<Json<Value>> {
    caller.may(Action::Read)?;
    let limit = page_limit(&page)?;
    blocking(&state, move |state| {
        let identities = state.engine.store().identities()?;
        let visible: Vec<_> = identities
            .iter()
            .filter(|i| caller.identity.vendor.is_none() || i.vendor == caller.identity.vendor)
            .filter(|i| page.after.as_deref().is_none_or(|after| i.name.as_str() > after))
            .collect();
        let next =
            (visible.len() > limit).then(|| visible.get(limit - 1).map(|i| i.name.to_string())).flatten();
        let items: Vec<Value> =
            visible.iter().take(limit).map(|i| writ_api::view::identity_json(i)).collect();
        Ok(Json(json!({ "items": items, "next": next })))
    })
    .await
}

async fn add_identity(
    axum::extract::State(state): axum::extract::State<State>,
    Caller(caller): Caller,
    method: Method,
    headers: HeaderMap,
    body: JsonBody<NewIdentity>,
) -> ApiResult<Response> {
    caller.may(Action::Administer)?;
    let NewIdentity { name, kind, owner, vendor } = body.value;
    let name = IdentityName::parse(&required(name, "name")?)?;
    let kind = IdentityKind::parse(&required(kind, "kind")?)?;
    let owner = owner.as_deref().map(IdentityName::parse).transpose()?;
    let vendor = vendor.as_deref().map(OrgName::parse).transpose()?;
    let actor = Actor::Identity(caller.identity.name.clone());
    let request = request_parts(&method, "/identities", &body.raw);
    write(&state, &caller, headers, request, move |state| {
        let identity = state.engine.add_identity(actor, name, kind, owner.as_ref(), vendor)?;
        Ok(Written {
            status: StatusCode::CREATED,
            resource: format!("identity:{}", identity.name),
            body: writ_api::view::identity_json(&identity),
        })
    })
    .await
}

async fn show_identity(
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
        let roles: Vec<&str> = state.engine.store().roles_of(&name)?.iter().map(|r| r.as_str()).collect();
        let mut value = writ_api::view::identity_json(&identity);
        writ_api::view::insert(
            &mut value,
            "grants",
            Value::Array(grants.iter().map(writ_api::view::grant_json).collect()),
        );
        writ_api::view::insert(&mut value, "roles", json!(roles));
        Ok(Json(value))
    })
    .await
}

async fn set_role(
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
        Ok(Json(json!({ "identity": name.to_string(), "role": role.as_str(), "assigned": present }))
            .into_response())
    })
    .await
}

async fn grant_role(
    axum::extract::State(state): axum::extract::State<State>,
    Caller(caller): Caller,
    Path((name, role)): Path<(String, String)>,
) -> ApiResult<Response> {
    set_role(state, caller, name, role, true).await
}

async fn revoke_role(
    axum::extract::State(state): axum::extract::State<State>,
    Caller(caller): Caller,
    Path((name, role)): Path<(String, String)>,
) -> ApiResult<Response> {
    set_role(state, caller, name, role, false).await
}

async fn reload_policy(
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
        Ok(Json(match loaded {
            writ_engine::policy::Loaded::Changed { hash, index } => {
                json!({ "hash": hash, "changed": true, "ledger_index": index })
            }
            writ_engine::policy::Loaded::Unchanged { hash } => {
                json!({ "hash": hash, "changed": false, "ledger_index": null })
            }
        }))
    })
    .await
}

async fn list_roles(
    axum::extract::State(state): axum::extract::State<State>,
    Caller(caller): Caller,
) -> ApiResult<Json<Value>> {
    caller.may(Action::Administer).or_else(|_| caller.may(Action::ReadLedger))?;
    blocking(&state, |state| {
        let items: Vec<Value> = state
            .engine
            .store()
            .role_assignments()?
            .iter()
            .map(|(identity, role)| json!({ "identity": identity.to_string(), "role": role.as_str() }))
            .collect();
        Ok(Json(json!({ "items": items })))
    })
    .await
}

async fn list_targets(
    axum::extract::State(state): axum::extract::State<State>,
    Caller(caller): Caller,
) -> ApiResult<Json<Value>> {
    caller.may(Action::Read)?;
    blocking(&state, |state| {
        let items: Vec<Value> =
            state.engine.store().targets()?.iter().map(writ_api::view::target_json).collect();
        Ok(Json(json!({ "items": items })))
    })
    .await
}

async fn add_target(
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

async fn entitlements(
    axum::extract::State(state): axum::extract::State<State>,
    Caller(caller): Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.may(Action::Read)?;
    let name = TargetName::parse(&name)?;
    blocking(&state, move |state| {
        let items: Vec<String> = state.engine.entitlements(&name)?.iter().map(ToString::to_string).collect();
        Ok(Json(json!({ "target": name.to_string(), "items": items })))
    })
    .await
}

// ---- changes ----

async fn list_changes(
    axum::extract::State(state): axum::extract::State<State>,
    Caller(caller): Caller,
    Query(page): Query<Page>,
) -> ApiResult<Json<Value>> {
    caller.may(Action::Read)?;
    let limit = page_limit(&page)?;
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
                items.push(writ_api::view::summary_json(summary));
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
        Ok(Json(json!({ "items": items, "next": next })))
    })
    .await
}

async fn request_change(
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
        if principal.identity.vendor.is_some() {
            // A vendor acts only for its own organisation: everyone the change involves.
            let mut involved = Vec::new();
            for name in input.on_behalf_of.iter().chain(input.ops.iter().map(|op| &op.identity)) {
                involved.push(engine.identity(name)?.vendor);
            }
            principal.within_scope(Action::Request, involved.iter().map(Option::as_ref))?;
        }
        let record = engine.request(input, writ_engine::random_bits()?)?;
        Ok(Written {
            status: StatusCode::CREATED,
            resource: format!("change:{}", record.change.id),
            body: change_json(engine, &record)?,
        })
    })
    .await
}

async fn show_change(
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

async fn change_step(
    axum::extract::State(state): axum::extract::State<State>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    uri: axum::http::Uri,
    method: Method,
    headers: HeaderMap,
    body: JsonBody<StepBody>,
) -> ApiResult<Response> {
    let id = ChangeId::parse(&id)?;
    let step = uri.path().rsplit('/').next().unwrap_or_default().to_owned();
    let action = match step.as_str() {
        "approve" => Action::Approve,
        "reject" => Action::Reject,
        "cancel" => Action::Cancel,
        "execute" => Action::Execute,
        "verify" => Action::Verify,
        _ => Action::Review,
    };
    caller.may(action)?;
    let StepBody { valid_for, on_behalf_of, reason, notes } = body.value;
    let validity = valid_for.as_deref().map(Duration::parse).transpose()?;
    let on_behalf_of = on_behalf_of.as_deref().map(IdentityName::parse).transpose()?;
    let request = request_parts(&method, &format!("/changes/{id}/{step}"), &body.raw);
    let me = caller.identity.name.clone();
    let principal = caller.clone();
    write(&state, &caller, headers, request, move |state| {
        let engine = &state.engine;
        check_scope(engine, &principal, action, &id)?;
        let record = match action {
            Action::Approve => engine.approve(&id, &me, on_behalf_of.as_ref(), validity)?,
            Action::Reject => engine.reject(&id, &me, required(reason, "reason")?)?,
            Action::Cancel => engine.cancel(&id, &me, required(reason, "reason")?)?,
            Action::Execute => engine.execute(&id, Some(&me))?,
            Action::Verify => engine.verify(&id)?,
            _ => engine.review(&id, &me, required(notes, "notes")?)?,
        };
        Ok(Written {
            status: StatusCode::OK,
            resource: format!("change:{id}"),
            body: change_json(engine, &record)?,
        })
    })
    .await
}

// ---- break-glass and findings ----

async fn break_glass(
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FindingQuery {
    pub state: Option<String>,
}

async fn list_findings(
    axum::extract::State(state): axum::extract::State<State>,
    Caller(caller): Caller,
    Query(query): Query<FindingQuery>,
) -> ApiResult<Json<Value>> {
    caller.may(Action::ReadLedger)?;
    let wanted = query.state.as_deref().map(writ_core::finding::FindingState::parse).transpose()?;
    blocking(&state, move |state| {
        let items: Vec<Value> =
            state.engine.findings(wanted)?.iter().map(writ_api::view::finding_json).collect();
        Ok(Json(json!({ "items": items })))
    })
    .await
}

async fn show_finding(
    axum::extract::State(state): axum::extract::State<State>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.may(Action::ReadLedger)?;
    blocking(&state, move |state| Ok(Json(writ_api::view::finding_json(&state.engine.finding(&id)?)))).await
}

async fn resolve_finding(
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

// ---- evidence ----

async fn list_evidence(
    axum::extract::State(state): axum::extract::State<State>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let id = ChangeId::parse(&id)?;
    blocking(&state, move |state| {
        let record = scoped_change(&state.engine, &caller, Action::Read, &id)?;
        let items: Vec<Value> = record
            .change
            .evidence
            .iter()
            .map(|(seq, step, e)| {
                let mut value = writ_api::view::evidence_json(e);
                writ_api::view::insert(&mut value, "step", json!(step.as_str()));
                writ_api::view::insert(&mut value, "seq", json!(seq));
                value
            })
            .collect();
        Ok(Json(json!({ "items": items })))
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvidenceQuery {
    pub step: Option<String>,
    pub name: Option<String>,
}

async fn add_evidence(
    axum::extract::State(state): axum::extract::State<State>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    Query(query): Query<EvidenceQuery>,
    method: Method,
    headers: HeaderMap,
    request: Request,
) -> ApiResult<Response> {
    caller.may(Action::AttachEvidence)?;
    let id = ChangeId::parse(&id)?;
    let step = writ_core::event::Phase::parse_step(&required(query.step, "step")?)?;
    let name = required(query.name, "name")?;
    let media_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/octet-stream")
        .to_owned();
    let bytes = read_body(request, state.limits.evidence_bytes).await?;
    let fingerprint =
        request_parts(&method, &format!("/changes/{id}/evidence?{}&{name}", step.as_str()), &bytes);
    let me = caller.identity.name.clone();
    let principal = caller.clone();
    write(&state, &caller, headers, fingerprint, move |state| {
        let engine = &state.engine;
        check_scope(engine, &principal, Action::AttachEvidence, &id)?;
        let record = engine.attach_evidence(&id, &me, step, name, media_type, bytes.to_vec())?;
        let attached = record
            .change
            .evidence
            .last()
            .map(|(_, _, e)| writ_api::view::evidence_json(e))
            .ok_or_else(|| ApiError::internal("the evidence was not recorded"))?;
        Ok(Written { status: StatusCode::CREATED, resource: format!("change:{id}"), body: attached })
    })
    .await
}

async fn get_evidence(
    axum::extract::State(state): axum::extract::State<State>,
    Caller(caller): Caller,
    Path(sha256): Path<String>,
) -> ApiResult<Response> {
    caller.may(Action::Read)?;
    // A digest alone does not say whose change it belongs to: vendors fetch nothing by digest.
    caller.within_scope(Action::Read, std::iter::once(None))?;
    let digest: [u8; 32] = hex::decode(&sha256)
        .ok()
        .and_then(|d| d.try_into().ok())
        .ok_or_else(|| ApiError::new("input.invalid_digest", "expected 64 hex digits").field("sha256"))?;
    blocking(&state, move |state| {
        let blob = state
            .engine
            .store()
            .evidence(&digest)?
            .ok_or_else(|| ApiError::new("not_found", format!("no evidence {sha256}")))?;
        let media = HeaderValue::from_str(&blob.media_type)
            .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"));
        Ok(([(header::CONTENT_TYPE, media)], blob.bytes).into_response())
    })
    .await
}

// ---- tokens ----

async fn create_token(
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
        let mut value = writ_api::view::token_json(&issued.info, None);
        writ_api::view::insert(&mut value, "token", json!(issued.token));
        Ok((StatusCode::CREATED, [(header::CACHE_CONTROL, "no-store")], Json(value)).into_response())
    })
    .await
}

async fn list_tokens(
    axum::extract::State(state): axum::extract::State<State>,
    Caller(caller): Caller,
) -> ApiResult<Json<Value>> {
    caller.may(Action::Administer).or_else(|_| caller.may(Action::ReadLedger))?;
    blocking(&state, |state| {
        let items: Vec<Value> = state
            .engine
            .store()
            .tokens()?
            .iter()
            .map(|t| writ_api::view::token_json(&t.info, t.revoked_at))
            .collect();
        Ok(Json(json!({ "items": items })))
    })
    .await
}

async fn revoke_token(
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

// ---- ledger ----

async fn checkpoints(
    axum::extract::State(state): axum::extract::State<State>,
    Caller(caller): Caller,
) -> ApiResult<Json<Value>> {
    caller.may(Action::ReadLedger)?;
    blocking(&state, |state| {
        let latest = state.engine.store().checkpoints()?.pop();
        let size = state.engine.store().event_count()?;
        Ok(Json(json!({
            "events": size,
            "latest": latest.map(|c| json!({ "size": c.size, "root": hex::encode(c.root), "note": c.note })),
            "public_key": state.signer.as_ref().map(|s| s.verifier().to_text()),
        })))
    })
    .await
}

async fn sign_checkpoint(
    axum::extract::State(state): axum::extract::State<State>,
    Caller(caller): Caller,
) -> ApiResult<Json<Value>> {
    caller.may(Action::Operate)?;
    blocking(&state, |state| {
        let signer = state
            .signer
            .as_ref()
            .ok_or_else(|| ApiError::new("ledger.no_signing_key", "this instance has no signing key"))?;
        let checkpoint = state.engine.checkpoint(signer)?;
        Ok(Json(
            json!({ "size": checkpoint.size, "root": hex::encode(checkpoint.root), "note": checkpoint.note }),
        ))
    })
    .await
}

async fn inclusion_proof(
    axum::extract::State(state): axum::extract::State<State>,
    Caller(caller): Caller,
    Path(index): Path<u64>,
) -> ApiResult<Json<Value>> {
    caller.may(Action::ReadLedger)?;
    blocking(&state, move |state| {
        let proof = state.engine.prove_inclusion(index)?;
        Ok(Json(writ_api::view::inclusion_json(&proof)))
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyQuery {
    pub from: u64,
    pub to: u64,
}

async fn consistency_proof(
    axum::extract::State(state): axum::extract::State<State>,
    Caller(caller): Caller,
    Query(query): Query<ConsistencyQuery>,
) -> ApiResult<Json<Value>> {
    caller.may(Action::ReadLedger)?;
    blocking(&state, move |state| {
        let proof = state.engine.prove_consistency(query.from, query.to)?;
        Ok(Json(writ_api::view::consistency_json(&proof)))
    })
    .await
}

async fn verify_ledger(
    axum::extract::State(state): axum::extract::State<State>,
    Caller(caller): Caller,
) -> ApiResult<Json<Value>> {
    caller.may(Action::ReadLedger)?;
    blocking(&state, |state| {
        let trusted: Vec<_> = state.signer.iter().map(|s| s.verifier()).collect();
        let report = state.engine.verify_ledger(&trusted, false)?;
        Ok(Json(writ_api::view::report_json(&report)))
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleQuery {
    pub change: Option<String>,
}

async fn audit_bundle(
    axum::extract::State(state): axum::extract::State<State>,
    Caller(caller): Caller,
    Query(query): Query<BundleQuery>,
) -> ApiResult<Response> {
    caller.may(Action::ReadLedger)?;
    let change = query.change.as_deref().map(ChangeId::parse).transpose()?;
    blocking(&state, move |state| {
        let bundle = crate::bundle::build(&state.engine, change.as_ref())?;
        let archive = crate::bundle::tar(&bundle)?;
        let name =
            change.map_or_else(|| "writ-bundle-all.tar".to_owned(), |id| format!("writ-bundle-{id}.tar"));
        let disposition = HeaderValue::from_str(&format!("attachment; filename=\"{name}\""))
            .unwrap_or_else(|_| HeaderValue::from_static("attachment"));
        Ok((
            [
                (header::CONTENT_TYPE, HeaderValue::from_static("application/x-tar")),
                (header::CONTENT_DISPOSITION, disposition),
            ],
            archive,
        )
            .into_response())
    })
    .await
}
