//! The routes under `/api/v1`, plus `/healthz`, `/readyz`, `/hooks/NAME` and `/scim/v2`: one module
//! per resource, each contributing its operations to the router and to the OpenAPI document
//! (`openapi.rs` reads the same list). Each handler: authenticate (the `Caller` extractor), check
//! the role and the vendor scope, run the engine on the blocking pool, render the same JSON the
//! CLI prints with `--json` (`writ_api::view`).

use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};

use crate::State;
use crate::error::ApiError;
use crate::http::{Operation, op};

pub mod changes;
pub mod delegations;
pub mod evidence;
pub mod exceptions;
pub mod findings;
pub mod health;
pub mod hooks;
pub mod identities;
pub mod ledger;
pub mod notify;
pub mod policy;
pub mod scim;
pub mod targets;
pub mod tokens;
pub mod transfers;

/// The OpenAPI document, built once from the operation table.
fn document() -> &'static serde_json::Value {
    static DOCUMENT: std::sync::OnceLock<serde_json::Value> = std::sync::OnceLock::new();
    DOCUMENT.get_or_init(|| crate::openapi::document_value(&operations()))
}

/// Every operation Writ serves.
pub fn operations() -> Vec<Operation> {
    use Method as M;
    let document = op(
        M::GET,
        "/api/v1/openapi.json",
        "This document.",
        None,
        None,
        get(|| async { Json(document().clone()) }),
    );
    let mut all = vec![document];
    for resource in [
        health::operations,
        identities::operations,
        policy::operations,
        targets::operations,
        changes::operations,
        findings::operations,
        evidence::operations,
        tokens::operations,
        delegations::operations,
        transfers::operations,
        notify::operations,
        ledger::operations,
        exceptions::operations,
        hooks::operations,
        scim::operations,
    ] {
        all.extend(resource());
    }
    all
}

pub fn router(state: State) -> Router {
    let mut router = Router::new();
    for operation in operations() {
        router = router.route(operation.path, operation.handler);
    }
    router
        .merge(crate::web::router(&state))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(state.clone(), crate::cover::cover_writes))
        .layer(axum::middleware::from_fn_with_state(state.clone(), limit_address))
        .layer(axum::middleware::from_fn_with_state(state.clone(), refuse_when_sealed))
        .layer(axum::middleware::from_fn(limit_uri))
        .layer(axum::middleware::from_fn(log_request))
        .with_state(state)
}

/// The longest URI (path and query) served: far above anything the API needs, far below
/// hyper's own limit (about 64 KiB), which answers 414 with no body.
pub const MAX_URI_BYTES: usize = 8 * 1024;

/// Refuses a request whose URI is longer than [`MAX_URI_BYTES`] with 414 and an error body
/// (in SCIM's format under `/scim`).
async fn limit_uri(request: Request, next: axum::middleware::Next) -> Response {
    let length = request.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if length <= MAX_URI_BYTES {
        return next.run(request).await;
    }
    let message = format!("the URI is {length} bytes; the server accepts at most {MAX_URI_BYTES}");
    if request.uri().path().starts_with("/scim/") {
        let body = serde_json::json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
            "status": "414",
            "detail": message,
        });
        let mut response =
            axum::response::IntoResponse::into_response((StatusCode::URI_TOO_LONG, axum::Json(body)));
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/scim+json"));
        return response;
    }
    axum::response::IntoResponse::into_response(ApiError::new("request.uri_too_long", message))
}

/// While a registry table disagrees with the ledger, nothing is decided on it: every write is
/// refused (reads, and verifying the ledger, still answer).
async fn refuse_when_sealed(
    axum::extract::State(state): axum::extract::State<State>,
    request: Request,
    next: axum::middleware::Next,
) -> Response {
    let reads = matches!(*request.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let first = state.diverged.read().ok().and_then(|d| d.first().cloned());
    match first {
        Some(divergence) if !reads => axum::response::IntoResponse::into_response(ApiError::new(
            "ledger.projection_diverged",
            format!(
                "writes are refused: {divergence} (run `writ ledger verify` for every divergence, and `writ ledger repair --projections` to put the tables back from the ledger)"
            ),
        )),
        _ => next.run(request).await,
    }
}

/// Refuses a request from an address over its rate (before anything else is done for it).
async fn limit_address(
    axum::extract::State(state): axum::extract::State<State>,
    request: Request,
    next: axum::middleware::Next,
) -> Response {
    let peer = request.extensions().get::<axum::extract::ConnectInfo<std::net::SocketAddr>>();
    let forwarded: Vec<&str> =
        request.headers().get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok()).collect();
    let client = peer.map(|peer| state.proxies.client(peer.0.ip(), &forwarded));
    if let (Some(rate), Some(client)) = (&state.rate, client)
        && let Err(refused) = rate.address(client)
    {
        return axum::response::IntoResponse::into_response(refused);
    }
    next.run(request).await
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// Every `$ref` in `value`.
    fn refs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(target)) = map.get("$ref") {
                    out.push(target);
                }
                map.values().for_each(|v| refs(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }

    #[test]
    fn every_reference_resolves_and_typed_answers_name_their_view() {
        let document = crate::openapi::document_value(&operations());
        let mut found = Vec::new();
        refs(&document, &mut found);
        assert!(found.len() > 50, "{}", found.len());
        for target in found {
            let pointer = target.strip_prefix('#').unwrap();
            assert!(document.pointer(pointer).is_some(), "{target} does not resolve");
        }
        let answer = |path: &str, method: &str| {
            document["paths"][path][method]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].clone()
        };
        assert_eq!(answer("/api/v1/changes/{id}", "get"), "#/components/schemas/ChangeView");
        assert_eq!(answer("/api/v1/changes/{id}/approve", "post"), "#/components/schemas/ChangeView");
        assert_eq!(answer("/api/v1/identities/{name}", "get"), "#/components/schemas/IdentityDetailView");
        assert_eq!(answer("/api/v1/ledger/verify", "get"), "#/components/schemas/ReportView");
        let change = &document["components"]["schemas"]["ChangeView"];
        assert!(change["required"].as_array().unwrap().iter().any(|f| f == "answers"));
    }

    #[test]
    fn every_operation_is_documented_with_its_body_schema() {
        let operations = operations();
        let document = crate::openapi::document_value(&operations);
        let schemas = crate::openapi::schemas();
        for operation in &operations {
            let entry = &document["paths"][operation.path][operation.method.as_str().to_ascii_lowercase()];
            assert!(entry.is_object(), "{} {} missing", operation.method, operation.path);
            if let Some(body) = operation.body.filter(|b| *b != "binary") {
                assert!(schemas[body].is_object(), "schema {body} missing");
            }
        }
    }
}
