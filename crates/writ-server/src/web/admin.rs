//! The pages of oversight: findings (with remediation), exceptions (with approval),
//! break-glass changes with their deadlines, the audit page (ledger status, verification, the
//! bundle, the policy in force) and administration (identities and owners, targets, roles,
//! tokens). Each checks the same role as the API's operation for the same data.

use axum::Router;
use axum::extract::{Path, State as Extract};
use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use writ_api::view::{
    ExceptionView, FindingView, IdentityView, LedgerStateView, SummaryView, TargetView, TokenView,
};
use writ_core::access::Action;

use super::{Chrome, Posted, Viewer, respond, work};
use crate::State;
use crate::error::ApiResult;

pub fn routes() -> Router<State> {
    Router::new()
        .route("/ui/findings", get(findings))
        .route("/ui/findings/{id}/remediate", post(remediate))
        .route("/ui/exceptions", get(exceptions))
        .route("/ui/exceptions/{id}/approve", post(approve_exception))
        .route("/ui/breakglass", get(breakglass).post(break_glass))
        .route("/ui/audit", get(audit))
        .route("/ui/audit/verify", get(verify))
        .route("/ui/audit/bundle", get(bundle))
        .route("/ui/admin", get(admin))
        .route("/ui/admin/roles", post(set_role))
        .route("/ui/admin/identities/{name}/state", post(set_state))
        .route("/ui/admin/tokens/{id}/revoke", post(revoke_token))
        .route("/ui/findings/{id}/except", post(except_finding))
}

// ---- findings ----

#[derive(askama::Template)]
#[template(path = "findings.html")]
struct FindingsPage {
    chrome: Chrome,
    items: Vec<FindingView>,
    may_remediate: bool,
}

async fn findings(Extract(state): Extract<State>, viewer: Viewer) -> Response {
    let json = viewer.json;
    let principal = viewer.principal.clone();
    let items = work(&state, json, move |state| {
        principal.may(Action::ReadLedger)?;
        let mut items: Vec<FindingView> = state.engine.findings(None)?.iter().map(FindingView::of).collect();
        items.sort_by_key(|f| f.state == "resolved");
        Ok(items)
    })
    .await;
    match items {
        Ok(items) => {
            let may_remediate =
                viewer.principal.may(Action::Request).is_ok() && viewer.principal.identity.vendor.is_none();
            let page = FindingsPage { chrome: Chrome::of(&viewer, "Findings"), items, may_remediate };
            respond(json, &writ_api::view::List { items: page.items.clone() }, &page)
        }
        Err(response) => response,
    }
}

#[derive(Deserialize)]
struct RemediateForm {
    #[serde(rename = "csrf")]
    _csrf: Option<String>,
    justification: Option<String>,
}

async fn remediate(
    Extract(state): Extract<State>,
    Path(id): Path<String>,
    posted: Posted<RemediateForm>,
) -> Response {
    let Posted { viewer, form } = posted;
    let json = viewer.json;
    let principal = viewer.principal.clone();
    let opened = work(&state, json, move |state| {
        principal.may(Action::Request)?;
        principal.within_scope(Action::Request, std::iter::once(None))?;
        let justification = form.justification.filter(|j| !j.trim().is_empty());
        let (_, record) = state.engine.remediate_finding(
            &principal.identity.name,
            &id,
            justification,
            writ_engine::random_bits()?,
        )?;
        Ok(record.change.id)
    })
    .await;
    match opened {
        Ok(change) => Redirect::to(&format!("/ui/changes/{change}")).into_response(),
        Err(response) => response,
    }
}

#[derive(Deserialize)]
struct ExceptForm {
    #[serde(rename = "csrf")]
    _csrf: Option<String>,
    owner: Option<String>,
    justification: Option<String>,
    compensating_control: Option<String>,
    #[serde(rename = "for")]
    duration: Option<String>,
}

/// Asks for an exception to a finding, through the exception policy's approvals, as the API's
/// `POST /api/v1/exceptions` does.
async fn except_finding(
    Extract(state): Extract<State>,
    Path(id): Path<String>,
    posted: Posted<ExceptForm>,
) -> Response {
    let Posted { viewer, form } = posted;
    let json = viewer.json;
    let principal = viewer.principal.clone();
    let blank = |v: Option<String>| v.filter(|v| !v.trim().is_empty());
    let body = writ_api::wire::NewException {
        finding: Some(id),
        owner: blank(form.owner),
        justification: blank(form.justification),
        compensating_control: blank(form.compensating_control),
        duration: blank(form.duration),
        ..writ_api::wire::NewException::default()
    };
    let done = work(&state, json, move |state| {
        principal.may(Action::Request)?;
        principal.within_scope(Action::Request, std::iter::once(None))?;
        let input = body.check()?.into_input(&state.engine, principal.identity.name.as_str())?;
        state.engine.request_exception(input, writ_engine::random_bits()?)?;
        Ok(())
    })
    .await;
    match done {
        Ok(()) => Redirect::to("/ui/exceptions").into_response(),
        Err(response) => response,
    }
}

// ---- exceptions ----

#[derive(askama::Template)]
#[template(path = "exceptions.html")]
struct ExceptionsPage {
    chrome: Chrome,
    items: Vec<ExceptionView>,
    may_approve: bool,
}

async fn exceptions(Extract(state): Extract<State>, viewer: Viewer) -> Response {
    let json = viewer.json;
    let principal = viewer.principal.clone();
    let items = work(&state, json, move |state| {
        principal.may(Action::ReadLedger)?;
        Ok(state.engine.exceptions(None)?.iter().map(ExceptionView::of).collect::<Vec<_>>())
    })
    .await;
    match items {
        Ok(items) => {
            let may_approve = viewer.principal.may(Action::Approve).is_ok();
            let page = ExceptionsPage { chrome: Chrome::of(&viewer, "Exceptions"), items, may_approve };
            respond(json, &writ_api::view::List { items: page.items.clone() }, &page)
        }
        Err(response) => response,
    }
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(rename = "csrf")]
    _csrf: Option<String>,
}

async fn approve_exception(
    Extract(state): Extract<State>,
    Path(id): Path<String>,
    posted: Posted<CsrfForm>,
) -> Response {
    let Posted { viewer, form: _ } = posted;
    let json = viewer.json;
    let principal = viewer.principal.clone();
    let done = work(&state, json, move |state| {
        principal.may(Action::Approve)?;
        principal.within_scope(Action::Approve, std::iter::once(None))?;
        state.engine.approve_exception(&principal.identity.name, &id)?;
        Ok(())
    })
    .await;
    match done {
        // Back to the inbox, where approvers find what waits for them.
        Ok(()) => Redirect::to("/ui/inbox").into_response(),
        Err(response) => response,
    }
}

// ---- break-glass ----

#[derive(Serialize, Clone)]
struct EmergencyLine {
    #[serde(flatten)]
    change: SummaryView,
    approval_due: String,
    post_hoc_approval: String,
}

#[derive(askama::Template)]
#[template(path = "breakglass.html")]
struct BreakglassPage {
    chrome: Chrome,
    items: Vec<EmergencyLine>,
}

/// How many recent changes the break-glass page looks through.
const RECENT: usize = 500;

async fn breakglass(Extract(state): Extract<State>, viewer: Viewer) -> Response {
    let json = viewer.json;
    let principal = viewer.principal.clone();
    let items = work(&state, json, move |state| {
        principal.may(Action::Read)?;
        let engine = &state.engine;
        let mut items = Vec::new();
        for summary in engine.store().changes_page(None, None, RECENT)? {
            let record = engine.load(&summary.id)?;
            if principal.within_scope(Action::Read, std::iter::once(record.change.vendor.as_ref())).is_err() {
                continue;
            }
            // Only the emergency's facts: not the whole view, for each of the recent changes.
            if let Some(emergency) = writ_api::view::EmergencyView::of(&record.change) {
                items.push(EmergencyLine {
                    change: SummaryView::of(&summary),
                    approval_due: emergency.approval_due,
                    post_hoc_approval: emergency.post_hoc_approval,
                });
            }
        }
        Ok(items)
    })
    .await;
    match items {
        Ok(items) => {
            let page = BreakglassPage { chrome: Chrome::of(&viewer, "Break-glass"), items };
            respond(json, &writ_api::view::List { items: page.items.clone() }, &page)
        }
        Err(response) => response,
    }
}

/// Breaks glass as the viewer, as `POST /api/v1/breakglass` does: policy decides who may; the
/// access is granted at once, and someone else approves it by the deadline.
async fn break_glass(Extract(state): Extract<State>, posted: Posted<Vec<(String, String)>>) -> Response {
    let Posted { viewer, form } = posted;
    let json = viewer.json;
    let principal = viewer.principal.clone();
    let one = |name: &str| {
        form.iter().find(|(k, v)| k == name && !v.trim().is_empty()).map(|(_, v)| v.trim().to_owned())
    };
    let body = writ_api::wire::BreakGlass {
        identity: one("identity"),
        grant: form
            .iter()
            .filter(|(k, v)| k == "grant" && !v.trim().is_empty())
            .map(|(_, v)| v.trim().to_owned())
            .collect(),
        duration: one("for"),
        reason: one("reason"),
        ticket: one("ticket").into_iter().collect(),
    };
    let opened = work(&state, json, move |state| {
        principal.may(Action::Request)?;
        let input = body.into_input(principal.identity.name.as_str())?;
        let record = state.engine.breakglass(input, writ_engine::random_bits()?)?;
        tracing::warn!(target: "writ::web", change = %record.change.id, actor = %principal.identity.name, "glass broken");
        Ok(record.change.id)
    })
    .await;
    match opened {
        Ok(change) => Redirect::to(&format!("/ui/changes/{change}")).into_response(),
        Err(response) => response,
    }
}

// ---- audit ----

#[derive(Serialize)]
struct AuditData {
    ledger: LedgerStateView,
    policy_hash: String,
    /// Each rule and Cedar policy with the controls it maps to.
    controls: Vec<(String, Vec<String>)>,
}

#[derive(askama::Template)]
#[template(path = "audit.html")]
struct AuditPage {
    chrome: Chrome,
    data: AuditData,
    report: Option<serde_json::Value>,
}

fn audit_data(state: &crate::AppState) -> ApiResult<AuditData> {
    let store = state.engine.store();
    let latest = store.checkpoints()?.pop();
    let policy = state.engine.policy()?;
    let mut controls: Vec<(String, Vec<String>)> =
        policy.rules().listing().into_iter().map(|(id, _, controls)| (id, controls)).collect();
    controls.extend(policy.cedar_listing());
    Ok(AuditData {
        ledger: LedgerStateView {
            events: store.event_count()?,
            latest: latest.as_ref().map(writ_api::view::CheckpointView::of),
            public_key: state.signer.with(|s| s.verifier().to_text()),
        },
        policy_hash: policy.hash().to_owned(),
        controls,
    })
}

async fn audit(Extract(state): Extract<State>, viewer: Viewer) -> Response {
    let json = viewer.json;
    let principal = viewer.principal.clone();
    let data = work(&state, json, move |state| {
        principal.may(Action::ReadLedger)?;
        audit_data(state)
    })
    .await;
    match data {
        Ok(data) => {
            let page = AuditPage { chrome: Chrome::of(&viewer, "Audit"), data, report: None };
            respond(json, &page.data, &page)
        }
        Err(response) => response,
    }
}

/// Verifies the whole ledger against the keys this server trusts, and every table against it.
async fn verify(Extract(state): Extract<State>, viewer: Viewer) -> Response {
    let json = viewer.json;
    let principal = viewer.principal.clone();
    let done = work(&state, json, move |state| {
        principal.may(Action::ReadLedger)?;
        let trusted: Vec<_> = state.signer.with(|s| s.verifiers()).unwrap_or_default();
        let report = state.engine.verify_ledger(&trusted, false)?;
        let divergences = state.engine.check_projections()?;
        Ok((audit_data(state)?, writ_api::view::report_json(&report, &divergences)))
    })
    .await;
    match done {
        Ok((data, report)) => {
            if json {
                return axum::Json(report).into_response();
            }
            super::html(&AuditPage { chrome: Chrome::of(&viewer, "Audit"), data, report: Some(report) })
        }
        Err(response) => response,
    }
}

/// The auditor bundle of the whole ledger, as `writ audit bundle` writes it.
async fn bundle(Extract(state): Extract<State>, viewer: Viewer) -> Response {
    let json = viewer.json;
    let principal = viewer.principal.clone();
    let archive = work(&state, json, move |state| {
        principal.may(Action::ReadLedger)?;
        let bundle = crate::bundle::build(&state.engine, None)?;
        Ok(crate::bundle::tar(&bundle)?)
    })
    .await;
    match archive {
        Ok(bytes) => (
            [
                (header::CONTENT_TYPE, "application/x-tar"),
                (header::CONTENT_DISPOSITION, "attachment; filename=\"writ-bundle-all.tar\""),
            ],
            bytes,
        )
            .into_response(),
        Err(response) => response,
    }
}

// ---- admin ----

#[derive(Deserialize)]
struct RoleForm {
    #[serde(rename = "csrf")]
    _csrf: Option<String>,
    identity: String,
    role: String,
    /// `grant` or `revoke`.
    assign: String,
}

/// An admin's step on the registry, as the actor it is: the engine records it in the ledger.
async fn admin_step(
    state: State,
    viewer: Viewer,
    step: impl FnOnce(&writ_engine::Engine, writ_core::identity::Actor) -> ApiResult<()> + Send + 'static,
) -> Response {
    let json = viewer.json;
    let principal = viewer.principal.clone();
    let done = work(&state, json, move |state| {
        principal.may(Action::Administer)?;
        step(&state.engine, writ_core::identity::Actor::Identity(principal.identity.name.clone()))
    })
    .await;
    match done {
        Ok(()) => Redirect::to("/ui/admin").into_response(),
        Err(response) => response,
    }
}

async fn set_role(Extract(state): Extract<State>, posted: Posted<RoleForm>) -> Response {
    let Posted { viewer, form } = posted;
    admin_step(state, viewer, move |engine, actor| {
        let name = writ_core::name::IdentityName::parse(&form.identity)?;
        let role = writ_core::access::Role::parse(&form.role)?;
        let present = match form.assign.as_str() {
            "grant" => true,
            "revoke" => false,
            other => {
                return Err(crate::error::ApiError::new(
                    "request.unreadable_body",
                    format!("assign is {other:?}: use grant or revoke"),
                ));
            }
        };
        engine.set_role(actor, &name, role, present)?;
        Ok(())
    })
    .await
}

#[derive(Deserialize)]
struct StateForm {
    #[serde(rename = "csrf")]
    _csrf: Option<String>,
    /// `disabled` or `active`.
    to: String,
    reason: Option<String>,
}

async fn set_state(
    Extract(state): Extract<State>,
    Path(name): Path<String>,
    posted: Posted<StateForm>,
) -> Response {
    let Posted { viewer, form } = posted;
    admin_step(state, viewer, move |engine, actor| {
        let name = writ_core::name::IdentityName::parse(&name)?;
        let to = writ_core::identity::IdentityState::parse(&form.to)?;
        let reason = crate::http::required(form.reason.filter(|r| !r.trim().is_empty()), "reason")?;
        engine.set_identity_state(actor, &name, to, reason)?;
        Ok(())
    })
    .await
}

async fn revoke_token(
    Extract(state): Extract<State>,
    Path(id): Path<String>,
    posted: Posted<CsrfForm>,
) -> Response {
    let Posted { viewer, form: _ } = posted;
    admin_step(state, viewer, move |engine, actor| {
        engine.revoke_token(actor, &id)?;
        Ok(())
    })
    .await
}

#[derive(Serialize)]
struct AdminData {
    identities: Vec<IdentityView>,
    targets: Vec<TargetView>,
    /// `(identity, role)` pairs.
    roles: Vec<(String, String)>,
    tokens: Vec<TokenView>,
}

#[derive(askama::Template)]
#[template(path = "admin.html")]
struct AdminPage {
    chrome: Chrome,
    data: AdminData,
}

async fn admin(Extract(state): Extract<State>, viewer: Viewer) -> Response {
    let json = viewer.json;
    let principal = viewer.principal.clone();
    let data = work(&state, json, move |state| {
        principal.may(Action::Administer)?;
        let store = state.engine.store();
        Ok(AdminData {
            identities: store.identities()?.iter().map(IdentityView::of).collect(),
            targets: store.targets()?.iter().map(TargetView::of).collect(),
            roles: store
                .role_assignments()?
                .into_iter()
                .map(|(i, r)| (i.to_string(), r.as_str().to_owned()))
                .collect(),
            tokens: store.tokens()?.iter().map(|t| TokenView::of(&t.info, t.revoked_at)).collect(),
        })
    })
    .await;
    match data {
        Ok(data) => {
            let page = AdminPage { chrome: Chrome::of(&viewer, "Administration"), data };
            respond(json, &page.data, &page)
        }
        Err(response) => response,
    }
}
