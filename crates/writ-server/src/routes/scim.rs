//! The SCIM 2.0 service provider at `/scim/v2` (RFC 7643/7644): discovery, Users and Groups.
//!
//! Every request needs a Writ API token (or OIDC bearer) whose identity holds the
//! `provisioner` role; that identity is the actor of every write and the requester of the
//! lifecycle changes the writes open (`writ_engine::scim`). Bodies are `application/scim+json`
//! (plain JSON is accepted); every error, authentication included, is a SCIM error body with
//! `status` as a string. Resources carry a weak ETag (`meta.version`): `If-Match` on PUT, PATCH
//! and DELETE (412 when stale), `If-None-Match` on GET (304).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use axum::body::Bytes;
use axum::extract::FromRequestParts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, post, put};
use serde_json::{Map, Value, json};
use writ_core::access::{Action, Principal};
use writ_engine::EngineError;
use writ_engine::scim::{ScimResource, ScimWrite};
use writ_scim::schema::{self, Kind};
use writ_scim::{ScimError, ScimType, list};

use crate::auth::Caller;
use crate::http::{Operation, Path, Query, op};
use crate::{AppState, State};

/// Most resources in one page (advertised as `filter.maxResults`).
const MAX_RESULTS: usize = 200;
const MEDIA_TYPE: &str = "application/scim+json";

/// A SCIM response: a status, a body and headers.
pub struct Reply {
    status: StatusCode,
    body: Option<Value>,
    etag: Option<String>,
    location: Option<String>,
}

impl Reply {
    fn ok(body: Value) -> Reply {
        Reply { status: StatusCode::OK, body: Some(body), etag: None, location: None }
    }
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let mut response = match self.body {
            Some(body) => (self.status, body.to_string()).into_response(),
            None => self.status.into_response(),
        };
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(MEDIA_TYPE));
        for (name, value) in [(header::ETAG, self.etag), (header::LOCATION, self.location)] {
            if let Some(value) = value.and_then(|v| HeaderValue::from_str(&v).ok()) {
                headers.insert(name, value);
            }
        }
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"writ-scim\""));
        }
        response
    }
}

/// A SCIM error as a response.
pub struct Failure(ScimError);

impl From<ScimError> for Failure {
    fn from(error: ScimError) -> Failure {
        Failure(error)
    }
}

impl From<EngineError> for Failure {
    fn from(error: EngineError) -> Failure {
        match error {
            EngineError::Scim(error) => Failure(error),
            other => {
                let api = crate::error::ApiError::from(other);
                Failure(ScimError::status(
                    api.status.as_u16(),
                    format!("{} ({})", api.error.message, api.error.code),
                ))
            }
        }
    }
}

impl From<crate::error::ApiError> for Failure {
    fn from(api: crate::error::ApiError) -> Failure {
        Failure(ScimError::status(api.status.as_u16(), format!("{} ({})", api.error.message, api.error.code)))
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status.is_server_error() {
            tracing::error!(target: "writ::scim", status = self.0.status, detail = %self.0.detail, "SCIM request failed");
        }
        Reply { status, body: Some(self.0.body()), etag: None, location: None }.into_response()
    }
}

type ScimResult = Result<Reply, Failure>;

/// The caller, authenticated as for the rest of the API and holding the `provisioner` role;
/// refusals are SCIM errors.
pub struct Provisioner(Principal);

impl FromRequestParts<State> for Provisioner {
    type Rejection = Failure;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &State,
    ) -> Result<Provisioner, Failure> {
        let Caller(principal) = Caller::from_request_parts(parts, state).await?;
        principal.may(Action::Provision).map_err(crate::error::ApiError::from)?;
        Ok(Provisioner(principal))
    }
}

/// The SCIM operations, for the router and the OpenAPI document.
pub fn operations() -> Vec<Operation> {
    let scim = Some(Action::Provision);
    vec![
        op(
            Method::GET,
            "/scim/v2/ServiceProviderConfig",
            "SCIM: what this service provider supports (RFC 7644 §4).",
            scim,
            None,
            get(service_provider_config),
        ),
        op(
            Method::GET,
            "/scim/v2/ResourceTypes",
            "SCIM: the resource types (User, Group).",
            scim,
            None,
            get(resource_types),
        ),
        op(
            Method::GET,
            "/scim/v2/ResourceTypes/{name}",
            "SCIM: one resource type.",
            scim,
            None,
            get(resource_type),
        ),
        op(
            Method::GET,
            "/scim/v2/Schemas",
            "SCIM: the schemas (User, enterprise User, Group).",
            scim,
            None,
            get(schemas),
        ),
        op(Method::GET, "/scim/v2/Schemas/{id}", "SCIM: one schema, by URN.", scim, None, get(schema_one)),
        op(
            Method::GET,
            "/scim/v2/{resource}",
            "SCIM: list Users or Groups (filter, sortBy, sortOrder, startIndex, count, attributes, \
             excludedAttributes).",
            scim,
            None,
            get(list_resources),
        ),
        op(
            Method::POST,
            "/scim/v2/{resource}",
            "SCIM: create a User or Group (201). A new active User is a joiner: the birthright rules \
             open a change.",
            scim,
            None,
            post(create),
        ),
        op(
            Method::GET,
            "/scim/v2/{resource}/{id}",
            "SCIM: one User or Group (If-None-Match: 304).",
            scim,
            None,
            get(read),
        ),
        op(
            Method::PUT,
            "/scim/v2/{resource}/{id}",
            "SCIM: replace a User or Group (If-Match: 412 when stale). A change of department, title, \
             user type, roles or groups is a mover, active false a leaver: each opens its change.",
            scim,
            None,
            put(update),
        ),
        op(
            Method::PATCH,
            "/scim/v2/{resource}/{id}",
            "SCIM: modify a User or Group (RFC 7644 §3.5.2; If-Match: 412 when stale); movers and \
             leavers as for PUT.",
            scim,
            None,
            patch(update),
        ),
        op(
            Method::DELETE,
            "/scim/v2/{resource}/{id}",
            "SCIM: remove a User or Group (204); removing a User is a leaver and opens its change.",
            scim,
            None,
            delete(update),
        ),
        op(
            Method::POST,
            "/scim/v2/{resource}/{id}",
            "SCIM: POST to /scim/v2/{resource}/.search searches with a body (§3.4.3).",
            scim,
            None,
            post(search),
        ),
        op(Method::GET, "/scim/v2/Me", "SCIM: /Me is not supported (501).", scim, None, get(me))
            .unsupported(),
        op(Method::POST, "/scim/v2/Me", "SCIM: /Me is not supported (501).", scim, None, post(me))
            .unsupported(),
    ]
    .into_iter()
    .map(|operation| operation.produces(&["application/scim+json"]))
    .collect()
}

/// The SCIM base URL: the server's public URL (configured, or the bound address), never the
/// request's Host header, which the client controls.
fn base(state: &AppState) -> String {
    let origin = state.public_url.get().map_or("http://localhost", String::as_str);
    format!("{origin}/scim/v2")
}

fn kind(resource: &str) -> Result<Kind, Failure> {
    match resource {
        "Users" => Ok(Kind::User),
        "Groups" => Ok(Kind::Group),
        _ => Err(Failure(ScimError::status(
            404,
            format!(
                "no SCIM endpoint /{resource}: Users, Groups, Schemas, ResourceTypes, ServiceProviderConfig"
            ),
        ))),
    }
}

fn header_text(headers: &HeaderMap, name: header::HeaderName) -> Option<String> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

/// Reads a JSON request body, refusing oversize, non-JSON media types and malformed JSON.
fn json_body(state: &State, headers: &HeaderMap, body: &Bytes) -> Result<Value, Failure> {
    if body.len() > state.limits.body_bytes {
        return Err(Failure(ScimError::status(
            413,
            format!("the body is larger than {} bytes", state.limits.body_bytes),
        )));
    }
    if let Some(media) = header_text(headers, header::CONTENT_TYPE) {
        let media = media.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
        if media != MEDIA_TYPE && media != "application/json" {
            return Err(Failure(ScimError::status(
                415,
                format!("send {MEDIA_TYPE} (or application/json), not {media}"),
            )));
        }
    }
    serde_json::from_slice(body)
        .map_err(|e| Failure(ScimError::bad(ScimType::InvalidSyntax, format!("the body is not JSON: {e}"))))
}

/// A resource as returned: attributes, `id`, `schemas`, `meta`, and a User's groups.
fn render(state: &State, resource: &ScimResource, base: &str) -> Result<Map<String, Value>, Failure> {
    let mut out = resource.doc.clone();
    let location = format!("{base}/{}/{}", resource.kind.endpoint(), resource.id);
    out.insert("schemas".into(), Value::Array(schema::schemas_of(resource.kind, &resource.doc)));
    out.insert("id".into(), Value::String(resource.id.clone()));
    out.insert(
        "meta".into(),
        json!({
            "resourceType": resource.kind.name(),
            "created": resource.created.to_rfc3339(),
            "lastModified": resource.updated.to_rfc3339(),
            "location": location,
            "version": resource.etag(),
        }),
    );
    if resource.kind == Kind::User {
        let groups: Vec<Value> = state
            .engine
            .scim_groups_of(&resource.id)?
            .into_iter()
            .map(|(id, name)| json!({"value": id, "$ref": format!("{base}/Groups/{id}"), "display": name, "type": "direct"}))
            .collect();
        if !groups.is_empty() {
            out.insert("groups".into(), Value::Array(groups));
        }
    }
    Ok(out)
}

/// Runs SCIM engine work on the blocking pool.
async fn blocking(state: &State, work: impl FnOnce(&State) -> ScimResult + Send + 'static) -> ScimResult {
    let state = std::sync::Arc::clone(state);
    tokio::task::spawn_blocking(move || work(&state))
        .await
        .map_err(|e| Failure(ScimError::status(500, format!("request task failed: {e}"))))?
}

async fn service_provider_config(
    axum::extract::State(state): axum::extract::State<State>,
    _caller: Provisioner,
) -> ScimResult {
    Ok(Reply::ok(schema::service_provider_config(&base(&state), MAX_RESULTS)))
}

fn listed(resources: Vec<Value>) -> Value {
    json!({
        "schemas": [writ_scim::LIST_RESPONSE],
        "totalResults": resources.len(),
        "startIndex": 1,
        "itemsPerPage": resources.len(),
        "Resources": resources,
    })
}

async fn resource_types(
    axum::extract::State(state): axum::extract::State<State>,
    _caller: Provisioner,
) -> ScimResult {
    let base = base(&state);
    Ok(Reply::ok(listed(
        [Kind::User, Kind::Group].iter().map(|k| schema::resource_type_document(*k, &base)).collect(),
    )))
}

async fn resource_type(
    axum::extract::State(state): axum::extract::State<State>,
    _caller: Provisioner,
    Path(name): Path<String>,
) -> ScimResult {
    let kind = [Kind::User, Kind::Group]
        .into_iter()
        .find(|k| k.name() == name)
        .ok_or_else(|| Failure(ScimError::status(404, format!("no resource type {name:?}"))))?;
    Ok(Reply::ok(schema::resource_type_document(kind, &base(&state))))
}

async fn schemas(
    axum::extract::State(state): axum::extract::State<State>,
    _caller: Provisioner,
) -> ScimResult {
    let base = base(&state);
    Ok(Reply::ok(listed(schema::schemas().iter().map(|s| schema::schema_document(s, &base)).collect())))
}

async fn schema_one(
    axum::extract::State(state): axum::extract::State<State>,
    _caller: Provisioner,
    Path(id): Path<String>,
) -> ScimResult {
    let found = schema::schemas()
        .into_iter()
        .find(|s| s.id.eq_ignore_ascii_case(&id))
        .ok_or_else(|| Failure(ScimError::status(404, format!("no schema {id:?}"))))?;
    Ok(Reply::ok(schema::schema_document(found, &base(&state))))
}

async fn me(_caller: Provisioner) -> ScimResult {
    Err(Failure(ScimError::status(
        501,
        "/Me is not supported: Writ's SCIM clients are identity providers, not people",
    )))
}

async fn list_resources(
    axum::extract::State(state): axum::extract::State<State>,
    _caller: Provisioner,
    Path(resource): Path<String>,
    Query(params): Query<BTreeMap<String, String>>,
) -> ScimResult {
    let kind = kind(&resource)?;
    let query = list::query(kind, &params)?;
    let base = base(&state);
    listing(state, kind, query, base).await
}

async fn search(
    axum::extract::State(state): axum::extract::State<State>,
    _caller: Provisioner,
    headers: HeaderMap,
    Path((resource, id)): Path<(String, String)>,
    body: Bytes,
) -> ScimResult {
    let kind = kind(&resource)?;
    if id != ".search" {
        return Err(Failure(ScimError::status(
            405,
            format!("POST creates at /{resource}, or searches at /{resource}/.search"),
        )));
    }
    let params = list::search_params(&json_body(&state, &headers, &body)?)?;
    let query = list::query(kind, &params)?;
    let base = base(&state);
    listing(state, kind, query, base).await
}

/// Every live resource of `kind`, as returned.
fn rendered(state: &State, kind: Kind, base: &str) -> Result<Vec<Map<String, Value>>, Failure> {
    state.engine.scim_list(kind)?.iter().map(|resource| render(state, resource, base)).collect()
}

async fn listing(state: State, kind: Kind, query: list::Query, base: String) -> ScimResult {
    blocking(&state, move |state| {
        Ok(Reply::ok(list::respond(kind, rendered(state, kind, &base)?, &query, MAX_RESULTS)))
    })
    .await
}

async fn read(
    axum::extract::State(state): axum::extract::State<State>,
    _caller: Provisioner,
    headers: HeaderMap,
    Path((resource, id)): Path<(String, String)>,
    Query(params): Query<BTreeMap<String, String>>,
) -> ScimResult {
    let kind = kind(&resource)?;
    let projection = list::projection(kind, &params)?;
    let base = base(&state);
    let if_none_match = header_text(&headers, header::IF_NONE_MATCH);
    blocking(&state, move |state| {
        let resource = state.engine.scim_get(kind, &id)?;
        let etag = resource.etag();
        if if_none_match.is_some_and(|tags| tags.split(',').map(str::trim).any(|t| t == etag || t == "*")) {
            return Ok(Reply {
                status: StatusCode::NOT_MODIFIED,
                body: None,
                etag: Some(etag),
                location: None,
            });
        }
        let body = list::project(kind, render(state, &resource, &base)?, &projection);
        Ok(Reply { etag: Some(etag), ..Reply::ok(Value::Object(body)) })
    })
    .await
}

/// Applies a write and answers with the resource (or 204 after a delete).
async fn write(
    state: State,
    Provisioner(caller): Provisioner,
    headers: HeaderMap,
    resource: String,
    id: Option<String>,
    body: Option<Bytes>,
    method: Method,
) -> ScimResult {
    let kind = kind(&resource)?;
    let json = body.as_ref().map(|b| json_body(&state, &headers, b)).transpose()?;
    let sha256 = writ_ledger::sha256(body.as_deref().unwrap_or_default());
    let base = base(&state);
    let if_match = header_text(&headers, header::IF_MATCH);
    blocking(&state, move |state| {
        let client = caller.identity.name.clone();
        let empty = Value::Null;
        let json = json.as_ref().unwrap_or(&empty);
        let write = match method {
            Method::POST => ScimWrite::Create(json),
            Method::PUT => ScimWrite::Replace(json),
            Method::PATCH => ScimWrite::Patch(json),
            _ => ScimWrite::Delete,
        };
        let written = state.engine.scim_write(&client, kind, id.as_deref(), write, if_match.as_deref(), sha256)?;
        // The first write after a start also settles anyone a crash left behind.
        if !state.scim_swept.swap(true, Ordering::SeqCst)
            && let Err(error) = state.engine.scim_settle_all(&client)
        {
            tracing::warn!(target: "writ::scim", %error, "start-up lifecycle sweep failed; retried by the next start");
        }
        let Some(resource) = written else {
            return Ok(Reply { status: StatusCode::NO_CONTENT, body: None, etag: None, location: None });
        };
        let body = render(state, &resource, &base)?;
        let location = body.get("meta").and_then(|m| m.get("location")).and_then(Value::as_str).map(str::to_owned);
        let created = method == Method::POST;
        Ok(Reply {
            status: if created { StatusCode::CREATED } else { StatusCode::OK },
            body: Some(Value::Object(body)),
            etag: Some(resource.etag()),
            location: location.filter(|_| created),
        })
    })
    .await
}

async fn create(
    axum::extract::State(state): axum::extract::State<State>,
    caller: Provisioner,
    headers: HeaderMap,
    Path(resource): Path<String>,
    body: Bytes,
) -> ScimResult {
    if resource == ".search" {
        let params = list::search_params(&json_body(&state, &headers, &body)?)?;
        let base = base(&state);
        return blocking(&state, move |state| {
            let mut sets = Vec::new();
            for kind in [Kind::User, Kind::Group] {
                sets.push((kind, rendered(state, kind, &base)?));
            }
            Ok(Reply::ok(list::respond_across(sets, &params, MAX_RESULTS)?))
        })
        .await;
    }
    write(state, caller, headers, resource, None, Some(body), Method::POST).await
}

/// PUT, PATCH or DELETE of one resource (a DELETE's body is not read).
async fn update(
    axum::extract::State(state): axum::extract::State<State>,
    caller: Provisioner,
    headers: HeaderMap,
    method: Method,
    Path((resource, id)): Path<(String, String)>,
    body: Bytes,
) -> ScimResult {
    let body = (method != Method::DELETE).then_some(body);
    write(state, caller, headers, resource, Some(id), body, method).await
}
