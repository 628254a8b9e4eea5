//! The ledger: checkpoints, proofs, verification, and the auditor bundle.

use axum::Json;
use axum::http::{HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::Value;
use writ_api::view::{CheckpointView, ConsistencyView, InclusionView, LedgerStateView, ReportView, to_json};
use writ_core::access::Action;
use writ_core::change::ChangeId;

use crate::State;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::http::{Operation, Path, Query, blocking, op};

pub fn operations() -> Vec<Operation> {
    use Action as A;
    use Method as M;
    vec![
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
        )
        .query::<ConsistencyQuery>(),
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
        )
        .query::<BundleQuery>()
        .produces(&["application/x-tar"]),
    ]
    .into_iter()
    .map(|operation| match (operation.method.as_str(), operation.path) {
        ("GET", "/api/v1/ledger/checkpoints") => operation.returns::<LedgerStateView>(),
        ("POST", "/api/v1/ledger/checkpoints") => operation.returns::<CheckpointView>(),
        ("GET", "/api/v1/ledger/proofs/inclusion/{index}") => operation.returns::<InclusionView>(),
        ("GET", "/api/v1/ledger/proofs/consistency") => operation.returns::<ConsistencyView>(),
        ("GET", "/api/v1/ledger/verify") => operation.returns::<ReportView>(),
        _ => operation,
    })
    .collect()
}

// ---- ledger ----

pub(crate) async fn checkpoints(
    axum::extract::State(state): axum::extract::State<State>,
    Caller(caller): Caller,
) -> ApiResult<Json<Value>> {
    caller.may(Action::ReadLedger)?;
    blocking(&state, |state| {
        let latest = state.engine.store().checkpoints()?.pop();
        let size = state.engine.store().event_count()?;
        Ok(Json(to_json(&LedgerStateView {
            events: size,
            latest: latest.as_ref().map(CheckpointView::of),
            public_key: state.signer.with(|s| s.verifier().to_text()),
        })))
    })
    .await
}

pub(crate) async fn sign_checkpoint(
    axum::extract::State(state): axum::extract::State<State>,
    Caller(caller): Caller,
) -> ApiResult<Json<Value>> {
    caller.may(Action::Operate)?;
    blocking(&state, |state| {
        let checkpoint = state
            .signer
            .with(|signer| state.engine.checkpoint(signer))
            .ok_or_else(|| ApiError::new("ledger.no_signing_key", "this instance has no signing key"))??;
        Ok(Json(to_json(&CheckpointView::of(&checkpoint))))
    })
    .await
}

pub(crate) async fn inclusion_proof(
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

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyQuery {
    #[schemars(range(max = u64::MAX))]
    pub from: u64,
    #[schemars(range(max = u64::MAX))]
    pub to: u64,
}

pub(crate) async fn consistency_proof(
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

pub(crate) async fn verify_ledger(
    axum::extract::State(state): axum::extract::State<State>,
    Caller(caller): Caller,
) -> ApiResult<Json<Value>> {
    caller.may(Action::ReadLedger)?;
    blocking(&state, |state| {
        let trusted: Vec<_> = state.signer.with(|s| s.verifiers()).unwrap_or_default();
        let report = state.engine.verify_ledger(&trusted, false)?;
        let divergences = state.engine.check_projections()?;
        Ok(Json(writ_api::view::report_json(&report, &divergences)))
    })
    .await
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BundleQuery {
    #[schemars(regex(pattern = r"^CHG-[0-7][0-9A-HJKMNP-TV-Z]{25}$"))]
    pub change: Option<String>,
}

pub(crate) async fn audit_bundle(
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
