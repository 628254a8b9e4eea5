//! Liveness, readiness and who the caller is.

use axum::Json;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::Value;
use writ_api::view::StatusView;
use writ_core::access::Action;

use crate::State;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::http::{Operation, blocking, op};

pub fn operations() -> Vec<Operation> {
    use Action as A;
    use Method as M;
    vec![
        op(M::GET, "/healthz", "Liveness: the process answers.", None, None, get(healthz))
            .returns::<StatusView>(),
        op(
            M::GET,
            "/readyz",
            "Readiness: the store takes writes and the keys are loaded.",
            None,
            None,
            get(readyz),
        )
        .returns::<StatusView>(),
        op(
            M::GET,
            "/api/v1/whoami",
            "The authenticated identity and its roles.",
            Some(A::Read),
            None,
            get(whoami),
        )
        .returns::<writ_api::view::IdentityDetailView>(),
    ]
}

// ---- health ----

pub(crate) async fn healthz() -> Json<Value> {
    Json(writ_api::view::to_json(&StatusView { status: "ok".to_owned() }))
}

/// Ready only when a write reaches the store (a lease renewal goes through the same path as
/// every commit), the keys needed to record and sign are loaded, and no registry table
/// disagrees with the ledger (a sealed instance takes no writes).
pub(crate) async fn readyz(axum::extract::State(state): axum::extract::State<State>) -> Response {
    let checked = blocking(&state, |state| {
        let now = state.engine.now();
        let until = writ_core::time::Timestamp::from_millis(now.as_millis() + 1_000);
        let probe = format!("ready:{}", state.instance);
        state.engine.store().acquire_lease(&probe, &state.instance, now, until)?;
        state.engine.seal("readiness")?;
        if !state.signer.present() {
            return Err(ApiError::new(
                "ledger.no_signing_key",
                "no ledger signing key: checkpoints cannot be signed",
            ));
        }
        if let Some(divergence) = state.diverged.read().ok().and_then(|d| d.first().cloned()) {
            return Err(ApiError::new(
                "ledger.projection_diverged",
                format!("writes are refused: {divergence}"),
            ));
        }
        Ok(())
    })
    .await;
    match checked {
        Ok(()) => Json(writ_api::view::to_json(&StatusView { status: "ready".to_owned() })).into_response(),
        Err(mut error) => {
            error.status = StatusCode::SERVICE_UNAVAILABLE;
            error.into_response()
        }
    }
}

pub(crate) async fn whoami(Caller(caller): Caller) -> Json<Value> {
    let roles = caller.roles.iter().map(|r| r.as_str().to_owned()).collect();
    let me = writ_api::view::IdentityDetailView {
        identity: writ_api::view::IdentityView::of(&caller.identity),
        grants: None,
        roles,
    };
    Json(writ_api::view::to_json(&me))
}
