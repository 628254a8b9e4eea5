//! What every route module shares: the `Operation` (one entry of the router and of the OpenAPI
//! document), the strict JSON body extractor, the idempotent write, and running engine work on
//! the blocking pool.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use writ_core::access::{Action, Principal, Role};
use writ_core::change::ChangeId;
use writ_core::name::{IdentityName, TargetName};
use writ_engine::{ChangeRecord, Engine};

use crate::error::{ApiError, ApiResult};
use crate::idempotency::{self, Outcome, Written};
use crate::{AppState, State};

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
    /// The media types of what it answers (its errors are JSON, or SCIM's for SCIM).
    pub media: &'static [&'static str],
    /// The schema of its query parameters (the struct its handler parses them into).
    pub query: Option<fn() -> serde_json::Value>,
    /// The schema of what it answers on success, when it answers a typed view.
    pub response: Option<fn(&mut schemars::SchemaGenerator) -> schemars::Schema>,
    /// Whether it is routed only to say it is not implemented (501, as RFC 7644 asks of `/Me`).
    pub unsupported: bool,
    pub handler: MethodRouter<State>,
}

impl Operation {
    /// The operation needs no `Idempotency-Key`: repeating it changes nothing more (moving an
    /// identity to the state it holds, offboarding while its cleanup is open).
    pub fn idempotent_by_nature(mut self) -> Operation {
        self.idempotent = false;
        self
    }

    /// Takes the query parameters `T` describes.
    pub fn query<T: schemars::JsonSchema>(mut self) -> Operation {
        self.query = Some(writ_api::wire::schema::<T>);
        self
    }

    /// Answers `T` (one of `writ_api::view`'s views) on success.
    pub fn returns<T: schemars::JsonSchema>(mut self) -> Operation {
        self.response = Some(|generator| generator.subschema_for::<T>());
        self
    }

    /// Is routed only to answer 501 Not Implemented.
    pub fn unsupported(mut self) -> Operation {
        self.unsupported = true;
        self
    }

    /// Answers in `media` instead of JSON.
    pub fn produces(mut self, media: &'static [&'static str]) -> Operation {
        self.media = media;
        self
    }
}

pub(crate) fn op(
    method: Method,
    path: &'static str,
    summary: &'static str,
    action: Option<Action>,
    body: Option<&'static str>,
    handler: MethodRouter<State>,
) -> Operation {
    let idempotent = body.is_some() && method == Method::POST && path != "/api/v1/tokens";
    let roles = action.map_or(&[][..], Action::roles);
    Operation {
        method,
        path,
        summary,
        roles,
        body,
        idempotent,
        media: &["application/json"],
        query: None,
        response: None,
        unsupported: false,
        handler,
    }
}

impl Operation {
    /// Any one of `roles` allows the operation (where no one action's roles say it).
    pub(crate) fn for_roles(mut self, roles: &'static [writ_core::access::Role]) -> Operation {
        self.roles = roles;
        self
    }
}

/// Runs engine work on the blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(
    state: &State,
    work: impl FnOnce(&AppState) -> ApiResult<T> + Send + 'static,
) -> ApiResult<T> {
    let state = Arc::clone(state);
    tokio::task::spawn_blocking(move || work(&state))
        .await
        .map_err(|e| ApiError::internal(format!("request task failed: {e}")))?
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
        // Every body is a JSON object (serde would also read a struct from an array).
        if text.trim_ascii_start().first() != Some(&b'{') {
            return Err(ApiError::new("request.malformed_json", "the body must be a JSON object"));
        }
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
pub(crate) const DRAIN_LIMIT: usize = 32 * 1024 * 1024;

/// Reads a body of at most `limit` bytes. A larger one is answered 413 after draining it (up to
/// [`DRAIN_LIMIT`]) without keeping it.
pub(crate) async fn read_body(request: Request, limit: usize) -> ApiResult<Bytes> {
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

pub(crate) fn required<T>(value: Option<T>, field: &str) -> ApiResult<T> {
    value.ok_or_else(|| ApiError::new("request.missing_field", format!("`{field}` is required")).field(field))
}

/// Runs a write under the request's idempotency key and renders its result (or, on a replay,
/// the resource as it is now, with the first status).
pub(crate) async fn write(
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

pub(crate) fn request_parts(method: &Method, path: &str, body: &[u8]) -> Vec<Vec<u8>> {
    vec![method.as_str().as_bytes().to_vec(), path.as_bytes().to_vec(), body.to_vec()]
}

/// Renders a stored resource reference (for idempotent replays).
pub(crate) fn resource_json(engine: &Engine, resource: &str) -> ApiResult<Value> {
    let (kind, rest) = resource.split_once(':').unwrap_or((resource, ""));
    match kind {
        "change" => change_json(engine, &engine.load(&ChangeId::parse(rest)?)?),
        "finding" => Ok(writ_api::view::finding_json(&engine.finding(rest)?)),
        "usage" => {
            let mut parts = rest.splitn(3, ':');
            let (target, accounts, index) = (parts.next(), parts.next(), parts.next());
            Ok(json!({
                "target": target.unwrap_or_default(),
                "accounts": accounts.and_then(|a| a.parse::<u64>().ok()).unwrap_or_default(),
                "index": index.and_then(|i| i.parse::<u64>().ok()).unwrap_or_default(),
            }))
        }
        "resumed" => {
            let finding = engine.finding(rest)?;
            let resumed = writ_engine::automation::Resumed { finding, settled: 0 };
            Ok(writ_api::view::to_json(&writ_api::view::ResumedView::of(&resumed)))
        }
        "remediation" => {
            let finding = engine.finding(rest)?;
            let change = finding
                .remediation
                .as_ref()
                .ok_or_else(|| ApiError::internal("replayed remediation is gone"))?;
            let record = engine.load(change)?;
            let sizes: Vec<u64> = engine.store().checkpoints()?.iter().map(|c| c.size).collect();
            Ok(writ_api::view::to_json(&writ_api::view::RemediationView {
                finding: writ_api::view::FindingView::of(&finding),
                change: writ_api::view::ChangeView::of(&record, &sizes),
            }))
        }
        "reconcile" => {
            // The runs as the ledger recorded them (counts and the findings seen).
            let mut runs = Vec::new();
            for index in rest.split(',').filter_map(|i| i.parse::<u64>().ok()) {
                let row = engine.store().events(index, 1)?.into_iter().next();
                let event = row.map(|row| writ_ledger::decode(&row.bytes, &|_| None)).transpose();
                let event = event.map_err(|e| ApiError::internal(format!("replayed run: {e}")))?;
                if let Some(writ_core::event::Event::Registry(
                    writ_core::event::RegistryEvent::Reconciled { run, .. },
                )) = event
                {
                    runs.push(writ_api::view::ReconcileView::of_run(&run, index));
                }
            }
            Ok(writ_api::view::to_json(&writ_api::view::ReconcileRunsView { runs }))
        }
        "exception" => Ok(writ_api::view::exception_json(&engine.exception(rest)?)),
        "transfer" => {
            let transfer = engine.transfer(rest)?;
            Ok(writ_api::view::to_json(&writ_api::view::TransferView::of(&transfer, engine.now())))
        }
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

/// The most notifications a change's view lists (the newest).
pub(crate) const CHANGE_NOTIFICATIONS: usize = 500;

pub(crate) fn change_json(engine: &Engine, record: &ChangeRecord) -> ApiResult<Value> {
    Ok(writ_api::view::to_json(&change_view(engine, record)?))
}

/// A change's view with its trail's checkpoints and its notifications.
pub(crate) fn change_view(engine: &Engine, record: &ChangeRecord) -> ApiResult<writ_api::view::ChangeView> {
    let sizes: Vec<u64> = engine.store().checkpoints()?.iter().map(|c| c.size).collect();
    let notifications = engine.notifications(Some(&record.change.id), None, CHANGE_NOTIFICATIONS)?;
    Ok(writ_api::view::ChangeView::of(record, &sizes).with_notifications(&notifications))
}

/// Checks that the caller may take `action` on the change: the role, and for a vendor's
/// principal the change's organisation (which needs the change; internal principals are not
/// scoped, so their writes load the change only once, in the engine).
pub(crate) fn check_scope(
    engine: &Engine,
    caller: &Principal,
    action: Action,
    id: &ChangeId,
) -> ApiResult<()> {
    caller.may(action)?;
    if caller.identity.vendor.is_some() {
        scoped_change(engine, caller, action, id)?;
    }
    Ok(())
}

/// A vendor acts only for its own organisation: everyone a requested change involves (the
/// identities it touches, and whom it is asked for) must be of the caller's vendor.
pub(crate) fn check_request_scope(
    engine: &Engine,
    caller: &Principal,
    input: &writ_engine::RequestInput,
) -> ApiResult<()> {
    if caller.identity.vendor.is_some() {
        let mut involved = Vec::new();
        for name in input.on_behalf_of.iter().chain(input.ops.iter().map(|op| &op.identity)) {
            involved.push(engine.identity(name)?.vendor);
        }
        caller.within_scope(Action::Request, involved.iter().map(Option::as_ref))?;
    }
    Ok(())
}

/// Loads a change the caller may touch for `action`: vendors only within their organisation.
pub(crate) fn scoped_change(
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

// ---- identities, roles, targets ----

/// The paging of the identity list: at most `limit` (1 to 500, default 50) after a name.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IdentityPage {
    #[schemars(range(min = 1, max = 500))]
    pub limit: Option<usize>,
    #[schemars(regex(pattern = writ_api::wire::NAME_PATTERN))]
    pub after: Option<String>,
}

/// The paging of the change list: at most `limit` (1 to 500, default 50) before a change ID,
/// optionally in one state.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePage {
    #[schemars(range(min = 1, max = 500))]
    pub limit: Option<usize>,
    #[schemars(regex(pattern = r"^CHG-[0-7][0-9A-HJKMNP-TV-Z]{25}$"))]
    pub before: Option<String>,
    #[schemars(extend("enum" = ["requested", "pending_approval", "approved", "rejected", "expired", "implementing", "implemented", "failed", "verified", "verification_failed", "reviewed", "cancelled"]))]
    pub state: Option<String>,
}

pub(crate) const DEFAULT_PAGE: usize = 50;
pub(crate) const MAX_PAGE: usize = 500;

pub(crate) fn page_limit(limit: Option<usize>) -> ApiResult<usize> {
    match limit {
        None => Ok(DEFAULT_PAGE),
        Some(limit) if (1..=MAX_PAGE).contains(&limit) => Ok(limit),
        Some(_) => {
            Err(ApiError::new("input.page_limit", format!("limit must be 1 to {MAX_PAGE}")).field("limit"))
        }
    }
}

/// axum's `Query`, whose rejection is a JSON error (`input.invalid_value`, field `query`) like
/// every other refusal, instead of axum's plain-text one.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> axum::extract::FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Query<T>, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Query(value)),
            Err(rejection) => Err(ApiError::new("input.invalid_value", rejection.body_text()).field("query")),
        }
    }
}

/// axum's `Path`, whose rejection is a JSON error (`input.invalid_value`, field `path`).
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> axum::extract::FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Path<T>, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Path(value)),
            Err(rejection) => Err(ApiError::new("input.invalid_value", rejection.body_text()).field("path")),
        }
    }
}
