//! Inbound webhooks at `/hooks/{name}` and the intake queue under `/api/v1/intake`.
//!
//! A hook is declared in the configuration file (`[[hook]]`: name, kind, secret file,
//! the identity it requests as, tolerance, account map). Each delivery is authenticated on its
//! raw bytes before anything in it is read; a refusal (401) is recorded as a security event
//! (`intake.refused`) and changes nothing else. An accepted delivery is correlated by the
//! engine (`writ_engine::intake`) and answered 200 with what became of it, including the Writ
//! change ID for the sender to keep on its ticket.

use std::collections::BTreeMap;
use std::path::PathBuf;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use writ_core::access::Action;
use writ_core::intake::{Outcome, RefusedDelivery};
use writ_core::name::{IdentityName, SourceName};
use writ_core::time::Duration;
use writ_engine::intake::Source;
use writ_intake::{Kind, Received, Secret};

use crate::State;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::http::{Operation, Path, Query, blocking, op};
use crate::manifests::{ManifestConfig, Manifests};
use crate::writeback::{Writeback, WritebackConfig};
use writ_api::Error;

/// One `[[hook]]` table of the configuration file.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct HookConfig {
    /// The path segment (`/hooks/NAME`) and the source name on every delivery.
    pub name: String,
    /// github, gitlab, jira, servicenow or standard.
    pub kind: String,
    /// A file holding the secret, one per line (several during a rotation); never the secret.
    pub secret_file: PathBuf,
    /// The registered identity the source requests as.
    pub requester: String,
    /// How old an event may be (by its signed or own timestamp), e.g. `5m`.
    pub tolerance: Option<String>,
    /// The source's accounts mapped to Writ identities.
    #[serde(default)]
    pub accounts: BTreeMap<String, String>,
    /// What a delivery from an account missing from `accounts` may open: `refuse` (the
    /// default: recorded and refused) or `as_hook` (opened as the hook's requester, on behalf
    /// of nobody).
    pub unmapped_accounts: Option<String>,
    /// Repositories whose application manifests open deploy and decommission changes
    /// (GitHub and GitLab hooks only).
    #[serde(default)]
    pub manifests: Vec<ManifestConfig>,
    /// Where Writ writes the change ID back to the ticket (ServiceNow and Jira hooks only).
    pub writeback: Option<WritebackConfig>,
}

/// A hook ready to receive.
pub struct Hook {
    kind: Kind,
    source: Source,
    secrets: Vec<Secret>,
    tolerance: Duration,
    manifests: Vec<Manifests>,
    writeback: Option<Writeback>,
}

fn config_error(name: &str, message: impl std::fmt::Display) -> Error {
    Error::new("input.config", format!("hook {name:?}: {message}"))
}

/// Reads every hook's secret file and checks its settings; any problem stops the start.
pub fn load(configs: &[HookConfig]) -> Result<BTreeMap<String, Hook>, Error> {
    let mut hooks = BTreeMap::new();
    for c in configs {
        let name = SourceName::parse(&c.name).map_err(|e| config_error(&c.name, e))?;
        let kind = Kind::parse(&c.kind).ok_or_else(|| {
            config_error(&c.name, "kind must be github, gitlab, jira, servicenow or standard")
        })?;
        let text = crate::keys::read_secret(&c.secret_file).map_err(|e| config_error(&c.name, e))?;
        let secrets = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(Secret::parse)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| config_error(&c.name, format!("{}: {e}", c.secret_file.display())))?;
        if secrets.is_empty() {
            return Err(config_error(&c.name, format!("{} holds no secret", c.secret_file.display())));
        }
        let tolerance = match &c.tolerance {
            Some(t) => Duration::parse(t).map_err(|e| config_error(&c.name, e))?,
            None => kind.default_tolerance(),
        };
        let requester = IdentityName::parse(&c.requester).map_err(|e| config_error(&c.name, e))?;
        let accounts = c
            .accounts
            .iter()
            .map(|(account, identity)| Ok((account.clone(), IdentityName::parse(identity)?)))
            .collect::<Result<_, writ_core::Refusal>>()
            .map_err(|e| config_error(&c.name, e))?;
        if !c.manifests.is_empty() && !matches!(kind, Kind::Github | Kind::Gitlab) {
            return Err(config_error(&c.name, "manifests are read for github and gitlab hooks only"));
        }
        let manifests = c
            .manifests
            .iter()
            .map(Manifests::new)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| config_error(&c.name, e))?;
        let writeback = c
            .writeback
            .as_ref()
            .map(|w| Writeback::new(kind, w))
            .transpose()
            .map_err(|e| crate::writeback::config_error(&c.name, e))?;
        let unmapped = match c.unmapped_accounts.as_deref() {
            None => writ_engine::intake::Unmapped::default(),
            Some(text) => writ_engine::intake::Unmapped::parse(text)
                .ok_or_else(|| config_error(&c.name, "unmapped_accounts must be refuse or as_hook"))?,
        };
        let source = Source { name: name.clone(), requester, accounts, unmapped, replay_window: tolerance };
        let hook = Hook { kind, source, secrets, tolerance, manifests, writeback };
        if hooks.insert(name.to_string(), hook).is_some() {
            return Err(config_error(&c.name, "declared twice"));
        }
    }
    Ok(hooks)
}

/// The hooks that write change IDs back to their tickets.
pub fn writebacks(hooks: &BTreeMap<String, Hook>) -> Vec<(SourceName, &Writeback)> {
    hooks.values().filter_map(|h| Some((h.source.name.clone(), h.writeback.as_ref()?))).collect()
}

pub fn operations() -> Vec<Operation> {
    vec![
        op(
            Method::POST,
            "/hooks/{name}",
            "Receive a delivery from a configured source (GitHub, GitLab, Jira, ServiceNow or any \
             Standard Webhooks sender), authenticated by its signature or token, not a Writ token. \
             200 with the outcome and the Writ change IDs; 401 for a bad signature or a stale \
             timestamp (recorded as a security event); 409 for a delivery id reused with other bytes.",
            None,
            None,
            post(receive),
        )
        .returns::<writ_api::view::ReceiptView>(),
        op(
            Method::GET,
            "/api/v1/intake",
            "Deliveries, most recent first (`outcome` query: correlated, late, uncorrelated, refused, \
             ignored; `limit`, default 100).",
            Some(Action::ReadLedger),
            None,
            get(list),
        )
        .query::<IntakeQuery>()
        .returns::<writ_api::view::List<writ_api::view::DeliveryRecordView>>(),
        op(
            Method::GET,
            "/api/v1/intake/{source}/{id}",
            "One delivery and what became of it.",
            Some(Action::ReadLedger),
            None,
            get(show),
        )
        .returns::<writ_api::view::DeliveryRecordView>(),
    ]
}

async fn receive(
    axum::extract::State(state): axum::extract::State<State>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<(StatusCode, axum::Json<Value>)> {
    blocking(&state, move |state| {
        let hook = state.hooks.get(&name).ok_or_else(|| {
            ApiError::new(
                "hook.unknown",
                format!("no hook named {name:?} is configured"))
        })?;
        let headers: BTreeMap<String, String> = headers
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
            .collect();
        let received = Received { headers: &headers, body: &body, now: state.engine.now() };
        let sha256 = writ_ledger::sha256(&body);
        let checked = writ_intake::authenticate(hook.kind, &hook.secrets, &received, hook.tolerance)
            .and_then(|()| writ_intake::read(hook.kind, &received, hook.tolerance));
        let mut parsed = match checked {
            Ok(parsed) => parsed,
            Err(error @ writ_intake::IntakeError::Unauthenticated { .. }) => {
                let recorded = state.engine.refuse_delivery(RefusedDelivery {
                    source: hook.source.name.clone(),
                    reason: error.code().to_owned(),
                    delivery: received.claimed_id(hook.kind),
                    sha256,
                    at: received.now,
                })?;
                if recorded.is_some() {
                    tracing::warn!(target: "writ::intake", hook = %name, code = error.code(), "delivery refused (more of this hook and reason in this window are counted, not logged)");
                }
                return Err(ApiError::new(error.code(), error.to_string()));
            }
            Err(error) => return Err(ApiError::new(error.code(), error.to_string())),
        };
        // Manifests are read for a delivery not seen before (a duplicate is only recorded).
        if let Some(revision) = parsed.revision.as_ref()
            && let Some(repository) = hook.manifests.iter().find(|m| m.covers(revision))
            && state.engine.delivery(&hook.source.name, &parsed.id).is_err()
        {
            parsed.apps = repository.read(revision).map_err(|detail| {
                tracing::warn!(target: "writ::intake", hook = %name, commit = %revision.after, %detail, "manifests not read");
                ApiError::new(
                    "hook.manifest_unavailable",
                    format!(
                        "the application manifests of {} at {} could not be read; nothing was recorded: deliver again",
                        revision.repository, revision.after
                    ))
            })?;
        }
        let receipt = state.engine.receive(&hook.source, parsed, sha256)?;
        let body = writ_api::view::ReceiptView {
            record: writ_api::view::DeliveryRecordView::of(&receipt.record),
            duplicate: receipt.duplicate,
        };
        Ok((StatusCode::OK, axum::Json(writ_api::view::to_json(&body))))
    })
    .await
}

#[derive(Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct IntakeQuery {
    #[schemars(extend("enum" = ["correlated", "late", "uncorrelated", "refused", "ignored"]))]
    outcome: Option<String>,
    #[schemars(range(min = 1, max = 1000))]
    limit: Option<usize>,
}

async fn list(
    axum::extract::State(state): axum::extract::State<State>,
    Caller(caller): Caller,
    Query(query): Query<IntakeQuery>,
) -> ApiResult<axum::Json<Value>> {
    caller.may(Action::ReadLedger)?;
    let outcome = query.outcome.as_deref().map(Outcome::parse).transpose()?;
    let limit = match query.limit {
        None => 100,
        Some(limit @ 1..=1000) => limit,
        Some(_) => return Err(ApiError::new("input.page_limit", "limit must be 1 to 1000").field("limit")),
    };
    blocking(&state, move |state| {
        let items: Vec<Value> = state
            .engine
            .deliveries(outcome, limit)?
            .iter()
            .map(writ_api::view::delivery_record_json)
            .collect();
        Ok(axum::Json(json!({ "items": items })))
    })
    .await
}

async fn show(
    axum::extract::State(state): axum::extract::State<State>,
    Caller(caller): Caller,
    Path((source, id)): Path<(String, String)>,
) -> ApiResult<axum::Json<Value>> {
    caller.may(Action::ReadLedger)?;
    let source = SourceName::parse(&source)?;
    blocking(&state, move |state| {
        Ok(axum::Json(writ_api::view::delivery_record_json(&state.engine.delivery(&source, &id)?)))
    })
    .await
}
