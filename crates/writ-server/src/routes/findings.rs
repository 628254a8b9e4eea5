//! Findings: list, show, resolve, remediate; reconciliation, which raises most of them.

use axum::Json;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::Value;
use writ_core::access::Action;

use crate::State;
use crate::auth::Caller;
use crate::error::ApiResult;
use crate::http::{JsonBody, Operation, Path, Query, blocking, op, request_parts, required, write};
use crate::idempotency::Written;
use writ_api::view::{
    ChangeView, FindingView, List, ReconcileRunsView, ReconcileView, RemediationView, ResumedView, UsageView,
    to_json,
};
use writ_api::wire::{Reconcile, RemediateFinding, ResolveFinding, ResumeAutomation, UsageReport};

pub fn operations() -> Vec<Operation> {
    use Action as A;
    use Method as M;
    vec![
        op(
            M::GET,
            "/api/v1/findings",
            "Findings (`state` query: open, excepted, resolved).",
            Some(A::ReadLedger),
            None,
            get(list_findings),
        )
        .query::<FindingQuery>()
        .returns::<List<FindingView>>(),
        op(M::GET, "/api/v1/findings/{id}", "One finding.", Some(A::ReadLedger), None, get(show_finding))
            .returns::<FindingView>(),
        op(
            M::POST,
            "/api/v1/findings/{id}/resolve",
            "Resolve an open finding (`note` required: what was done).",
            Some(A::Review),
            Some("ResolveFinding"),
            post(resolve_finding),
        )
        .returns::<FindingView>(),
        op(
            M::POST,
            "/api/v1/findings/{id}/remediate",
            "Open the change that fixes a finding (revoke unapproved or expired access, grant missing access, \
             rotate a long-lived secret; decommission an unmatched account, which registers it as a service account \
             owned by the caller, an admin, and offboards it), requested by the caller through policy and approvals; \
             the finding is resolved when that change is verified.",
            Some(A::Request),
            Some("RemediateFinding"),
            post(remediate_finding),
        )
        .returns::<RemediationView>(),
        op(
            M::POST,
            "/api/v1/reconcile",
            "Reconcile a target now (`target`), or every target and the registry: observe everything it holds, \
             classify each holding against what Writ approved, raise and resolve findings, record the run.",
            Some(A::Operate),
            Some("Reconcile"),
            post(reconcile),
        )
        .returns::<ReconcileRunsView>(),
        op(
            M::POST,
            "/api/v1/usage",
            "Report when accounts on a target were last used (up to 40 entries, accounts of up to 100 characters; a time moves forward, never \
             back, and never past the report's arrival): the usage signal for access.stale where the target gives none itself. Recorded in the \
             ledger. For a feed with the provisioner role, or an admin.",
            Some(A::Provision),
            Some("UsageReport"),
            post(report_usage),
        )
        .returns::<UsageView>()
        .for_roles(&[writ_core::access::Role::Provisioner, writ_core::access::Role::Admin]),
        op(
            M::GET,
            "/api/v1/automation",
            "The paused scopes of automation (`scim`, `target:NAME`): the findings that pause them.",
            Some(A::ReadLedger),
            None,
            get(automation_status),
        )
        .returns::<List<FindingView>>(),
        op(
            M::POST,
            "/api/v1/automation/{scope}/resume",
            "Resume a paused scope (`justification` required): recorded with the caller as the person who \
             decided, and the held lifecycle steps proceed.",
            Some(A::Operate),
            Some("ResumeAutomation"),
            post(resume_automation),
        )
        .returns::<ResumedView>(),
    ]
}

pub(crate) async fn report_usage(
    axum::extract::State(state): axum::extract::State<State>,
    Caller(caller): Caller,
    method: Method,
    headers: HeaderMap,
    body: JsonBody<UsageReport>,
) -> ApiResult<Response> {
    if caller.may(Action::Provision).is_err() {
        caller.may(Action::Operate)?;
    }
    // Usage is about the organisation's own targets: a vendor's principal does not report it.
    caller.within_scope(Action::Operate, std::iter::once(None))?;
    let (target, source, entries) = body.value.into_parts()?;
    let request = request_parts(&method, "/usage", &body.raw);
    let actor = writ_core::identity::Actor::Identity(caller.identity.name.clone());
    write(&state, &caller, headers, request, move |state| {
        let accounts = entries.len() as u64;
        let index = state.engine.report_usage(actor, &target, &source, entries)?;
        let view = UsageView { target: target.to_string(), accounts, index };
        Ok(Written {
            status: StatusCode::OK,
            resource: format!("usage:{target}:{accounts}:{index}"),
            body: to_json(&view),
        })
    })
    .await
}

pub(crate) async fn automation_status(
    axum::extract::State(state): axum::extract::State<State>,
    Caller(caller): Caller,
) -> ApiResult<Json<Value>> {
    caller.may(Action::ReadLedger)?;
    blocking(&state, move |state| {
        let items = state.engine.automation_status()?.iter().map(FindingView::of).collect();
        Ok(Json(to_json(&List { items })))
    })
    .await
}

pub(crate) async fn resume_automation(
    axum::extract::State(state): axum::extract::State<State>,
    Caller(caller): Caller,
    Path(scope): Path<String>,
    method: Method,
    headers: HeaderMap,
    body: JsonBody<ResumeAutomation>,
) -> ApiResult<Response> {
    caller.may(Action::Operate)?;
    let justification = required(body.value.justification, "justification")?;
    let request = request_parts(&method, &format!("/automation/{scope}/resume"), &body.raw);
    let me = caller.identity.name.clone();
    write(&state, &caller, headers, request, move |state| {
        let resumed = state.engine.resume_automation(&me, &scope, justification)?;
        Ok(Written {
            status: StatusCode::OK,
            resource: format!("resumed:{}", resumed.finding.id),
            body: to_json(&ResumedView::of(&resumed)),
        })
    })
    .await
}

pub(crate) async fn remediate_finding(
    axum::extract::State(state): axum::extract::State<State>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    method: Method,
    headers: HeaderMap,
    body: JsonBody<RemediateFinding>,
) -> ApiResult<Response> {
    caller.may(Action::Request)?;
    // A finding is about the organisation's own targets: a vendor's principal does not act on it.
    caller.within_scope(Action::Request, std::iter::once(None))?;
    let justification = body.value.justification;
    let request = request_parts(&method, &format!("/findings/{id}/remediate"), &body.raw);
    let me = caller.identity.name.clone();
    write(&state, &caller, headers, request, move |state| {
        let engine = &state.engine;
        let (finding, record) =
            engine.remediate_finding(&me, &id, justification, writ_engine::random_bits()?)?;
        let sizes: Vec<u64> = engine.store().checkpoints()?.iter().map(|c| c.size).collect();
        let view =
            RemediationView { finding: FindingView::of(&finding), change: ChangeView::of(&record, &sizes) };
        Ok(Written {
            status: StatusCode::CREATED,
            resource: format!("remediation:{}", finding.id),
            body: to_json(&view),
        })
    })
    .await
}

pub(crate) async fn reconcile(
    axum::extract::State(state): axum::extract::State<State>,
    Caller(caller): Caller,
    method: Method,
    headers: HeaderMap,
    body: JsonBody<Reconcile>,
) -> ApiResult<Response> {
    caller.may(Action::Operate)?;
    let target = body.value.target.as_deref().map(writ_core::name::TargetName::parse).transpose()?;
    let request = request_parts(&method, "/reconcile", &body.raw);
    let actor = writ_core::identity::Actor::Identity(caller.identity.name.clone());
    write(&state, &caller, headers, request, move |state| {
        let engine = &state.engine;
        let reports = match &target {
            Some(target) => vec![engine.reconcile_target(actor, target)?],
            None => engine.reconcile_all(actor)?,
        };
        let view = ReconcileRunsView { runs: reports.iter().map(ReconcileView::of).collect() };
        let indices: Vec<String> = reports.iter().map(|r| r.index.to_string()).collect();
        Ok(Written {
            status: StatusCode::OK,
            resource: format!("reconcile:{}", indices.join(",")),
            body: to_json(&view),
        })
    })
    .await
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FindingQuery {
    #[schemars(extend("enum" = ["open", "excepted", "resolved"]))]
    pub state: Option<String>,
}

pub(crate) async fn list_findings(
    axum::extract::State(state): axum::extract::State<State>,
    Caller(caller): Caller,
    Query(query): Query<FindingQuery>,
) -> ApiResult<Json<Value>> {
    caller.may(Action::ReadLedger)?;
    let wanted = query.state.as_deref().map(writ_core::finding::FindingState::parse).transpose()?;
    blocking(&state, move |state| {
        let items = state.engine.findings(wanted)?.iter().map(FindingView::of).collect();
        Ok(Json(to_json(&List { items })))
    })
    .await
}

pub(crate) async fn show_finding(
    axum::extract::State(state): axum::extract::State<State>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.may(Action::ReadLedger)?;
    blocking(&state, move |state| Ok(Json(writ_api::view::finding_json(&state.engine.finding(&id)?)))).await
}

pub(crate) async fn resolve_finding(
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
