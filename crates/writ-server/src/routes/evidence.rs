//! Evidence attached to a change at a step, stored by its SHA-256.

use axum::Json;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::Value;
use writ_api::view::{AttachedEvidenceView, EvidenceView, List, to_json};
use writ_core::access::Action;
use writ_core::change::ChangeId;

use crate::State;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::http::{
    Operation, Path, Query, blocking, check_scope, op, read_body, request_parts, required, scoped_change,
    write,
};
use crate::idempotency::Written;

pub fn operations() -> Vec<Operation> {
    use Action as A;
    use Method as M;
    vec![
        op(
            M::GET,
            "/api/v1/changes/{id}/evidence",
            "Evidence attached to a change.",
            Some(A::Read),
            None,
            get(list_evidence),
        )
        .returns::<List<AttachedEvidenceView>>(),
        op(
            M::POST,
            "/api/v1/changes/{id}/evidence",
            "Attach the raw body as evidence (`step`, `name` query).",
            Some(A::AttachEvidence),
            Some("binary"),
            post(add_evidence),
        )
        .returns::<EvidenceView>()
        .query::<EvidenceQuery>(),
        op(
            M::GET,
            "/api/v1/evidence/{sha256}",
            "An evidence blob by SHA-256, as application/octet-stream to save (Content-Disposition: \
             attachment, X-Content-Type-Options: nosniff); its media type is in the change's trail.",
            Some(A::Read),
            None,
            get(get_evidence),
        )
        .produces(&["application/octet-stream"]),
    ]
}

// ---- evidence ----

pub(crate) async fn list_evidence(
    axum::extract::State(state): axum::extract::State<State>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let id = ChangeId::parse(&id)?;
    blocking(&state, move |state| {
        let record = scoped_change(&state.engine, &caller, Action::Read, &id)?;
        let items = record
            .change
            .evidence
            .iter()
            .map(|(seq, step, e)| AttachedEvidenceView {
                evidence: EvidenceView::of(e),
                step: step.as_str().to_owned(),
                seq: *seq,
            })
            .collect();
        Ok(Json(to_json(&List { items })))
    })
    .await
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EvidenceQuery {
    /// The step the evidence belongs to.
    #[schemars(required, with = "String")]
    #[schemars(extend("enum" = ["request", "validation", "approval", "implementation", "verification", "review"]))]
    pub step: Option<String>,
    /// What the file is, as people will read it in the trail.
    #[schemars(required, with = "String")]
    #[schemars(length(min = 1, max = 2000), regex(pattern = writ_api::wire::REF_PATTERN))]
    pub name: Option<String>,
}

pub(crate) async fn add_evidence(
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

pub(crate) async fn get_evidence(
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
        // Served as bytes to save, never as a page to render: whatever media type the uploader
        // claimed (`text/html` included) stays in the change's record, not in this answer.
        let disposition = HeaderValue::from_str(&format!("attachment; filename=\"{sha256}\""))
            .unwrap_or_else(|_| HeaderValue::from_static("attachment"));
        Ok((
            [
                (header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream")),
                (header::CONTENT_DISPOSITION, disposition),
                (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
            ],
            blob.bytes,
        )
            .into_response())
    })
    .await
}
