//! The pages people work in: the inbox, the request form with the policy's answer before
//! submitting, the change list, and a change's trail with the steps the viewer may take (and,
//! for those they may not, the refusal the step would meet), its evidence and an inclusion proof
//! of each event for the browser to check.

use axum::Router;
use axum::extract::{Path, Query, State as Extract};
use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use writ_api::view::{ChangeView, ExceptionView, GrantView, SummaryView};
use writ_core::access::Action;
use writ_core::change::{ChangeId, ChangeState};
use writ_core::identity::IdentityKind;
use writ_engine::ask::Step;

use super::{Chrome, Posted, Viewer, page_error, respond, work};
use crate::State;
use crate::error::{ApiError, ApiResult};
use crate::http::{blocking, change_view, check_scope, scoped_change};

pub fn routes() -> Router<State> {
    Router::new()
        .route("/ui/inbox", get(inbox))
        .route("/ui/request", get(request_page).post(request_submit))
        .route("/ui/request/preview", post(request_preview))
        .route("/ui/changes", get(changes))
        .route("/ui/changes/{id}", get(change_page))
        .route("/ui/changes/{id}/proof/{index}", get(proof))
        .route("/ui/changes/{id}/evidence/{sha256}", get(evidence))
        .route("/ui/changes/{id}/{step}", post(step))
}

/// How many recent changes "my requests" looks through.
const RECENT: usize = 500;

/// The identities a person answers for: themselves and the non-human identities they own.
fn yours(
    engine: &writ_engine::Engine,
    me: &writ_core::name::IdentityName,
) -> ApiResult<Vec<writ_core::name::IdentityName>> {
    let mut names = vec![me.clone()];
    names.extend(
        engine
            .store()
            .identities()?
            .into_iter()
            .filter(|i| i.kind != IdentityKind::Human && i.owner.as_ref() == Some(me))
            .map(|i| i.name),
    );
    Ok(names)
}

// ---- inbox ----

#[derive(Serialize)]
struct InboxData {
    /// Changes waiting for an approval the viewer may give now.
    approvals: Vec<SummaryView>,
    /// Implemented changes waiting for the viewer's review.
    reviews: Vec<SummaryView>,
    /// Exceptions waiting for approval, for approvers.
    exceptions: Vec<ExceptionView>,
    /// The viewer's own requests, newest first.
    requests: Vec<SummaryView>,
    /// Time-bound access the viewer, or an NHI they own, holds, with its end.
    access: Vec<AccessLine>,
}

#[derive(Serialize)]
struct AccessLine {
    identity: String,
    #[serde(flatten)]
    grant: GrantView,
}

#[derive(askama::Template)]
#[template(path = "inbox.html")]
struct InboxPage {
    chrome: Chrome,
    data: InboxData,
}

async fn inbox(Extract(state): Extract<State>, viewer: Viewer) -> Response {
    let json = viewer.json;
    let principal = viewer.principal.clone();
    let data = work(&state, json, move |state| {
        let engine = &state.engine;
        let me = &principal.identity.name;
        let visible = |change: &writ_core::change::Change| {
            principal.within_scope(Action::Read, std::iter::once(change.vendor.as_ref())).is_ok()
        };
        let mut approvals = Vec::new();
        if principal.may(Action::Approve).is_ok() {
            for summary in engine.store().changes(Some(ChangeState::PendingApproval))? {
                let record = engine.load(&summary.id)?;
                if visible(&record.change) && engine.may(&record, me, Step::Approve).is_ok() {
                    approvals.push(SummaryView::of(&summary));
                }
            }
        }
        let mut reviews = Vec::new();
        if principal.may(Action::Review).is_ok() {
            for state in [ChangeState::Verified, ChangeState::VerificationFailed] {
                for summary in engine.store().changes(Some(state))? {
                    let record = engine.load(&summary.id)?;
                    if visible(&record.change) && engine.may(&record, me, Step::Review).is_ok() {
                        reviews.push(SummaryView::of(&summary));
                    }
                }
            }
        }
        let exceptions = if principal.may(Action::Approve).is_ok() && principal.identity.vendor.is_none() {
            engine
                .exceptions(None)?
                .iter()
                .filter(|e| {
                    e.awaits_approval()
                        && e.requester != *me
                        && !e.approvals.iter().any(|a| a.approver == *me)
                })
                .map(ExceptionView::of)
                .collect()
        } else {
            Vec::new()
        };
        let requests = engine
            .store()
            .changes_page(None, None, RECENT)?
            .iter()
            .filter(|s| s.requester == *me)
            .map(SummaryView::of)
            .collect();
        let mut access = Vec::new();
        for holder in yours(engine, me)? {
            for grant in engine.store().grants_of(&holder)? {
                if grant.expires_at.is_some() {
                    access.push(AccessLine { identity: holder.to_string(), grant: GrantView::of(&grant) });
                }
            }
        }
        Ok(InboxData { approvals, reviews, exceptions, requests, access })
    })
    .await;
    match data {
        Ok(data) => {
            let page = InboxPage { chrome: Chrome::of(&viewer, "Inbox"), data };
            respond(json, &page.data, &page)
        }
        Err(response) => response,
    }
}

// ---- request ----

#[derive(Serialize)]
struct RequestData {
    /// Whom the viewer may ask for: themselves and the NHIs they own.
    identities: Vec<String>,
    /// The targets' catalogues (`target:entitlement`), filtered by the search.
    catalogue: Vec<String>,
    /// Targets whose catalogue could not be read, and why.
    unreadable: Vec<String>,
    search: String,
    identity: String,
}

#[derive(askama::Template)]
#[template(path = "request.html")]
struct RequestPage {
    chrome: Chrome,
    data: RequestData,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RequestQuery {
    q: Option<String>,
    identity: Option<String>,
}

/// The most catalogue entries a page lists; the search narrows it.
const CATALOGUE_PAGE: usize = 200;

async fn request_page(
    Extract(state): Extract<State>,
    viewer: Viewer,
    Query(query): Query<RequestQuery>,
) -> Response {
    let json = viewer.json;
    if let Err(error) = viewer.principal.may(Action::Request) {
        return page_error(json, error.into());
    }
    let me = viewer.name().clone();
    let search = query.q.unwrap_or_default().trim().to_lowercase();
    let chosen = query.identity.unwrap_or_else(|| me.to_string());
    let data = work(&state, json, move |state| {
        let engine = &state.engine;
        let identities = yours(engine, &me)?.iter().map(ToString::to_string).collect();
        let mut catalogue = Vec::new();
        let mut unreadable = Vec::new();
        for target in engine.store().targets()? {
            match engine.entitlements(&target.name) {
                Ok(items) => catalogue.extend(
                    items
                        .iter()
                        .map(|e| format!("{}:{e}", target.name))
                        .filter(|entry| search.is_empty() || entry.to_lowercase().contains(&search)),
                ),
                Err(error) => unreadable.push(format!("{}: {error}", target.name)),
            }
        }
        catalogue.sort();
        catalogue.truncate(CATALOGUE_PAGE);
        Ok(RequestData { identities, catalogue, unreadable, search, identity: chosen })
    })
    .await;
    match data {
        Ok(data) => {
            let page = RequestPage { chrome: Chrome::of(&viewer, "Request access"), data };
            respond(json, &page.data, &page)
        }
        Err(response) => response,
    }
}

/// The request form's fields as the API's body (`grant` may repeat).
fn new_change(fields: &[(String, String)]) -> writ_api::wire::NewChange {
    let one = |name: &str| {
        fields.iter().find(|(k, v)| k == name && !v.trim().is_empty()).map(|(_, v)| v.trim().to_owned())
    };
    writ_api::wire::NewChange {
        identity: one("identity"),
        grant: fields.iter().filter(|(k, v)| k == "grant" && !v.is_empty()).map(|(_, v)| v.clone()).collect(),
        duration: one("for"),
        justification: one("justification"),
        ticket: one("ticket").into_iter().collect(),
        event: one("event"),
        window: (one("window_start").is_some() || one("window_end").is_some()).then(|| {
            writ_api::wire::WindowBody {
                start: one("window_start").unwrap_or_default(),
                end: one("window_end").unwrap_or_default(),
                zone: one("window_zone").unwrap_or_else(|| "UTC".to_owned()),
            }
        }),
        ..writ_api::wire::NewChange::default()
    }
}

#[derive(Serialize)]
struct PreviewData {
    tier: String,
    approvals: u8,
    slots: Vec<String>,
    validity: String,
    review_required: bool,
    escalate_after: Option<String>,
    rules: Vec<String>,
    /// Per requested entitlement: the longest duration allowed, or `none`.
    max_durations: Vec<(String, String)>,
    /// The rules that demand a maintenance window, each with the windows it allows (`any`).
    windows: Vec<(String, String)>,
}

#[derive(askama::Template)]
#[template(path = "preview.html")]
struct PreviewFragment {
    preview: Option<PreviewData>,
    refusal: Option<(String, String)>,
}

/// The policy's answer to the form as filled in: an htmx fragment (or JSON).
async fn request_preview(Extract(state): Extract<State>, posted: Posted<Vec<(String, String)>>) -> Response {
    let Posted { viewer, form } = posted;
    let json = viewer.json;
    let me = viewer.name().to_string();
    let body = new_change(&form);
    let grants = body.grant.clone();
    let answer = blocking(&state, move |state| {
        viewer.principal.may(Action::Request)?;
        let input = body.into_input(&me)?;
        Ok(state.engine.preview_request(input)?)
    })
    .await;
    let fragment = match answer {
        Ok(p) => PreviewFragment {
            preview: Some(PreviewData {
                tier: p.tier,
                approvals: p.approvals,
                slots: p.slots,
                validity: p.validity.to_string(),
                review_required: p.review_required,
                escalate_after: p.escalate_after.map(|d| d.to_string()),
                rules: p.rules,
                max_durations: grants
                    .into_iter()
                    .zip(p.max_durations)
                    .map(|(g, (limit, _))| (g, limit.map_or_else(|| "none".to_owned(), |d| d.to_string())))
                    .collect(),
                windows: p
                    .windows
                    .into_iter()
                    .map(|(rule, allowed)| {
                        (rule, if allowed.is_empty() { "any window".to_owned() } else { allowed.join(", ") })
                    })
                    .collect(),
            }),
            refusal: None,
        },
        Err(error) => PreviewFragment {
            preview: None,
            refusal: Some((error.error.code.to_string(), error.error.message)),
        },
    };
    if json {
        return axum::Json(serde_json::json!({
            "preview": fragment.preview,
            "refusal": fragment.refusal.as_ref().map(|(code, message)| serde_json::json!({"code": code, "message": message})),
        }))
        .into_response();
    }
    super::html(&fragment)
}

async fn request_submit(Extract(state): Extract<State>, posted: Posted<Vec<(String, String)>>) -> Response {
    let Posted { viewer, form } = posted;
    let json = viewer.json;
    let principal = viewer.principal.clone();
    let body = new_change(&form);
    let record = work(&state, json, move |state| {
        principal.may(Action::Request)?;
        let input = body.into_input(principal.identity.name.as_str())?;
        let engine = &state.engine;
        crate::http::check_request_scope(engine, &principal, &input)?;
        let record = engine.request(input, writ_engine::random_bits()?)?;
        tracing::info!(target: "writ::web", change = %record.change.id, requester = %principal.identity.name, "requested");
        Ok(record)
    })
    .await;
    match record {
        Ok(record) if json => {
            axum::Json(writ_api::view::to_json(&change_view_of(&state, &record))).into_response()
        }
        Ok(record) => Redirect::to(&format!("/ui/changes/{}", record.change.id)).into_response(),
        Err(response) => response,
    }
}

fn change_view_of(state: &State, record: &writ_engine::ChangeRecord) -> serde_json::Value {
    change_view(&state.engine, record).map(|v| writ_api::view::to_json(&v)).unwrap_or_default()
}

// ---- changes ----

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ChangesQuery {
    before: Option<String>,
    state: Option<String>,
}

/// Changes per page of the list.
const PAGE: usize = 50;

#[derive(askama::Template)]
#[template(path = "changes.html")]
struct ChangesPage {
    chrome: Chrome,
    data: writ_api::view::Page<SummaryView>,
    state: String,
}

async fn changes(
    Extract(state): Extract<State>,
    viewer: Viewer,
    Query(query): Query<ChangesQuery>,
) -> Response {
    let json = viewer.json;
    let principal = viewer.principal.clone();
    let filter = query.state.clone().unwrap_or_default();
    let data = work(&state, json, move |state| {
        principal.may(Action::Read)?;
        let filter = query.state.as_deref().filter(|s| !s.is_empty()).map(ChangeState::parse).transpose()?;
        let before = query.before.as_deref().map(ChangeId::parse).transpose()?;
        let engine = &state.engine;
        let batch = engine.store().changes_page(filter, before.as_ref(), PAGE + 1)?;
        let mut items = Vec::new();
        for summary in batch.iter().take(PAGE) {
            if principal.identity.vendor.is_some() {
                let record = engine.load(&summary.id)?;
                if principal
                    .within_scope(Action::Read, std::iter::once(record.change.vendor.as_ref()))
                    .is_err()
                {
                    continue;
                }
            }
            items.push(SummaryView::of(summary));
        }
        let next = (batch.len() > PAGE).then(|| batch.get(PAGE - 1).map(|s| s.id.to_string())).flatten();
        Ok(writ_api::view::Page { items, next })
    })
    .await;
    match data {
        Ok(data) => {
            let page = ChangesPage { chrome: Chrome::of(&viewer, "Changes"), data, state: filter };
            respond(json, &page.data, &page)
        }
        Err(response) => response,
    }
}

/// A step as the change page offers it: a form, or why not.
struct Offer {
    step: &'static str,
    label: &'static str,
    /// What the form asks for besides the button (`reason`, `notes`), if anything.
    field: Option<&'static str>,
    refusal: Option<String>,
}

#[derive(askama::Template)]
#[template(path = "change.html")]
struct ChangePage {
    chrome: Chrome,
    view: ChangeView,
    offers: Vec<Offer>,
}

/// The steps to offer `viewer` on `record`: each of approve, reject, cancel and review whose
/// role they hold, decided by the engine as the step itself would be (a refusal of the kind
/// "not in this state" is not shown: the step is simply not due); execute and verify for
/// executors when the state is theirs.
fn offers(
    engine: &writ_engine::Engine,
    viewer: &writ_core::access::Principal,
    record: &writ_engine::ChangeRecord,
) -> Vec<Offer> {
    let mut offers = Vec::new();
    for step in Step::ALL {
        let (action, label, field) = match step {
            Step::Approve => (Action::Approve, "Approve", None),
            Step::Reject => (Action::Reject, "Reject", Some("reason")),
            Step::Cancel => (Action::Cancel, "Cancel", Some("reason")),
            Step::Review => (Action::Review, "Review", Some("notes")),
            Step::Comment => (Action::Comment, "Comment", Some("text")),
        };
        if viewer.may(action).is_err() {
            continue;
        }
        let refusal = match engine.may(record, &viewer.identity.name, step) {
            Ok(()) => None,
            Err(error) => {
                let error = writ_api::Error::from(error);
                if error.code.starts_with("state.") {
                    continue;
                }
                Some(format!("{} ({})", error.message, error.code))
            }
        };
        offers.push(Offer { step: step.as_str(), label, field, refusal });
    }
    let state = record.change.state;
    let carried_out = matches!(
        state,
        ChangeState::Implemented
            | ChangeState::Verified
            | ChangeState::VerificationFailed
            | ChangeState::Reviewed
    );
    if carried_out
        && viewer.may(Action::Rollback).is_ok()
        && writ_core::authority::may_roll_back(&record.change, &viewer.identity.name, &viewer.roles).is_ok()
    {
        offers.push(Offer {
            step: "rollback",
            label: "Roll back",
            field: Some("justification"),
            refusal: None,
        });
    }
    if viewer.may(Action::Execute).is_ok() {
        if state == ChangeState::Approved {
            offers.push(Offer { step: "execute", label: "Execute", field: None, refusal: None });
        }
        if matches!(state, ChangeState::Implemented | ChangeState::VerificationFailed) {
            offers.push(Offer { step: "verify", label: "Verify", field: None, refusal: None });
        }
    }
    offers
}

async fn change_page(Extract(state): Extract<State>, viewer: Viewer, Path(id): Path<String>) -> Response {
    let json = viewer.json;
    let principal = viewer.principal.clone();
    let found = work(&state, json, move |state| {
        let id = ChangeId::parse(&id)?;
        let record = scoped_change(&state.engine, &principal, Action::Read, &id)?;
        let view = change_view(&state.engine, &record)?;
        Ok((view, offers(&state.engine, &principal, &record)))
    })
    .await;
    match found {
        Ok((view, offers)) => {
            let page = ChangePage { chrome: Chrome::of(&viewer, view.id.clone()), view, offers };
            respond(json, &page.view, &page)
        }
        Err(response) => response,
    }
}

#[derive(Deserialize)]
struct StepForm {
    #[serde(rename = "csrf")]
    _csrf: Option<String>,
    reason: Option<String>,
    notes: Option<String>,
    text: Option<String>,
    justification: Option<String>,
}

/// Takes a step on a change as the viewer: the same engine entry points as the API, with the
/// session's identity as the actor; then back to the change (or its view, for JSON).
async fn step(
    Extract(state): Extract<State>,
    Path((id, step)): Path<(String, String)>,
    posted: Posted<StepForm>,
) -> Response {
    let Posted { viewer, form } = posted;
    let json = viewer.json;
    let principal = viewer.principal.clone();
    let done = work(&state, json, move |state| {
        let id = ChangeId::parse(&id)?;
        let engine = &state.engine;
        let me = &principal.identity.name;
        let text = |value: Option<String>, field: &str| {
            crate::http::required(value.filter(|v| !v.trim().is_empty()), field)
        };
        let action = match step.as_str() {
            "approve" => Action::Approve,
            "reject" => Action::Reject,
            "cancel" => Action::Cancel,
            "review" => Action::Review,
            "comment" => Action::Comment,
            "rollback" => Action::Rollback,
            "execute" => Action::Execute,
            "verify" => Action::Verify,
            other => return Err(ApiError::new("not_found", format!("no step {other:?} on a change"))),
        };
        check_scope(engine, &principal, action, &id)?;
        let record = match step.as_str() {
            "approve" => engine.approve(&id, me, None, None)?,
            "reject" => engine.reject(&id, me, text(form.reason, "reason")?)?,
            "cancel" => engine.cancel(&id, me, text(form.reason, "reason")?)?,
            "review" => engine.review(&id, me, text(form.notes, "notes")?)?,
            "comment" => engine.comment(&id, me, text(form.text, "text")?)?,
            "rollback" => {
                let why =
                    writ_core::change::Justification::parse(&text(form.justification, "justification")?)?;
                engine.rollback(&id, me, why, writ_engine::random_bits()?)?
            }
            "execute" => engine.execute(&id, Some(me))?,
            _ => engine.verify(&id)?,
        };
        tracing::info!(target: "writ::web", change = %id, actor = %me, step, "step taken");
        Ok(record)
    })
    .await;
    match done {
        Ok(record) if json => axum::Json(change_view_of(&state, &record)).into_response(),
        Ok(record) => Redirect::to(&format!("/ui/changes/{}", record.change.id)).into_response(),
        Err(response) => response,
    }
}

/// What the browser needs to check one event of a change itself: the event's exact bytes,
/// the audit path to the newest signed checkpoint, the checkpoint's signed note and the keys
/// that sign checkpoints.
#[derive(Serialize)]
struct ProofData {
    index: u64,
    /// The event's record, base64 (the leaf is SHA-256 of 0x00 and these bytes).
    record: String,
    leaf_hash: String,
    tree_size: u64,
    root: String,
    proof: Vec<String>,
    checkpoint: String,
    keys: Vec<String>,
}

async fn proof(
    Extract(state): Extract<State>,
    viewer: Viewer,
    Path((id, index)): Path<(String, u64)>,
) -> Response {
    let principal = viewer.principal.clone();
    let data = work(&state, true, move |state| {
        let id = ChangeId::parse(&id)?;
        let record = scoped_change(&state.engine, &principal, Action::Read, &id)?;
        let store = state.engine.store();
        let rows = store.change_events(&record.change.id)?;
        let row = rows.iter().find(|r| r.index == index).ok_or_else(|| {
            ApiError::new("not_found", format!("event {index} is not an event of {}", record.change.id))
        })?;
        let proof = state.engine.prove_inclusion(index)?;
        let view = writ_api::view::InclusionView::of(&proof);
        let keys = state.signer.with(|s| s.verifiers()).unwrap_or_default();
        Ok(ProofData {
            index,
            record: base64::engine::general_purpose::STANDARD.encode(&row.bytes),
            leaf_hash: view.leaf_hash,
            tree_size: view.tree_size,
            root: view.root,
            proof: view.proof,
            checkpoint: view.checkpoint,
            keys: keys.iter().map(writ_ledger::checkpoint::NoteVerifier::to_text).collect(),
        })
    })
    .await;
    match data {
        Ok(data) => axum::Json(data).into_response(),
        Err(response) => response,
    }
}

/// An evidence blob of a change, to save (never rendered: `attachment`, `nosniff`).
async fn evidence(
    Extract(state): Extract<State>,
    viewer: Viewer,
    Path((id, sha256)): Path<(String, String)>,
) -> Response {
    let json = viewer.json;
    let principal = viewer.principal.clone();
    let blob = work(&state, json, move |state| {
        let id = ChangeId::parse(&id)?;
        let record = scoped_change(&state.engine, &principal, Action::Read, &id)?;
        let view = change_view(&state.engine, &record)?;
        let attached = view.events.iter().flat_map(|e| &e.evidence).any(|e| e.sha256 == sha256);
        let digest: Option<[u8; 32]> = hex::decode(&sha256).ok().and_then(|d| d.try_into().ok());
        let (true, Some(digest)) = (attached, digest) else {
            return Err(ApiError::new("not_found", format!("{id} has no evidence {sha256}")));
        };
        let blob = state
            .engine
            .store()
            .evidence(&digest)?
            .ok_or_else(|| ApiError::new("not_found", format!("no evidence {sha256}")))?;
        Ok((sha256, blob.bytes))
    })
    .await;
    match blob {
        Ok((name, bytes)) => (
            [
                (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
                (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{name}\"")),
            ],
            bytes,
        )
            .into_response(),
        Err(response) => response,
    }
}
