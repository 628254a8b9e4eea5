//! Write-back: Writ puts the change ID on the ticket a change was opened for.
//!
//! ```toml
//! [hook.writeback]                       # under a servicenow or jira [[hook]]
//! url = "https://acme.service-now.com"   # the instance (https; http only to loopback)
//! credentials_file = "/etc/writ/servicenow-writeback"  # user:password (Jira: email:api-token), mode 0600
//! field = "u_writ_change"                # ServiceNow default; Jira: a custom field, else the issue property `writ`
//! table = "change_request"               # ServiceNow only (default change_request)
//! ```
//!
//! The binding of a ticket to its change (`intake_objects`) is the outbox: every binding of a
//! source with write-back is due until written. Each pass (in `writ serve`, under the
//! `writeback` lease) writes the due ones: ServiceNow with the Table API (`PATCH
//! /api/now/table/TABLE/SYS_ID` with `{FIELD: CHANGE}`), Jira with `PUT /rest/api/3/issue/ID`
//! (`{"fields": {FIELD: CHANGE}}`) or the issue property `writ` (`{"change": CHANGE}`). Both are
//! idempotent, so a crash between the write and its record only writes the same value again.
//! A failure is kept with the binding and retried with backoff (2 s doubling, at most 1 h).

use std::path::PathBuf;
use std::time::Duration as StdDuration;

use base64::Engine as _;
use serde::Deserialize;
use serde_json::json;
use writ_core::change::ChangeId;
use writ_core::name::SourceName;
use writ_intake::Kind;

use writ_api::Error;

/// One `[hook.writeback]` table.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct WritebackConfig {
    pub url: String,
    pub credentials_file: PathBuf,
    pub field: Option<String>,
    pub table: Option<String>,
}

/// A ticket system Writ writes change IDs back to.
pub struct Writeback {
    kind: Kind,
    base: String,
    authorization: String,
    field: Option<String>,
    table: String,
    agent: ureq::Agent,
}

/// Bindings one pass writes back at most, per source.
const BATCH: usize = 5;

fn identifier(text: &str) -> bool {
    !text.is_empty() && text.len() <= 80 && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl Writeback {
    /// Checks a configuration and reads its credentials; the error names what to fix.
    pub fn new(kind: Kind, config: &WritebackConfig) -> Result<Writeback, String> {
        if !matches!(kind, Kind::Servicenow | Kind::Jira) {
            return Err("writeback is for servicenow and jira hooks".into());
        }
        let base = config.url.trim().trim_end_matches('/').to_owned();
        if !(base.starts_with("https://") || writ_connector::loopback_http(&base)) || base.contains('@') {
            return Err(format!(
                "writeback url {base:?} must be https:// (or http:// to a loopback address), without credentials"
            ));
        }
        let credentials = crate::keys::read_secret(&config.credentials_file).map_err(|e| e.to_string())?;
        let credentials = credentials.trim();
        if !credentials.contains(':') {
            return Err(format!("{} must hold user:password", config.credentials_file.display()));
        }
        let field = match (&config.field, kind) {
            (Some(field), _) => Some(field.clone()),
            (None, Kind::Servicenow) => Some("u_writ_change".into()),
            (None, _) => None,
        };
        let table = config.table.clone().unwrap_or_else(|| "change_request".into());
        if field.as_deref().is_some_and(|f| !identifier(f)) || !identifier(&table) {
            return Err("writeback field and table are letters, digits and '_'".into());
        }
        if config.table.is_some() && kind != Kind::Servicenow {
            return Err("writeback table is for servicenow hooks".into());
        }
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(StdDuration::from_secs(10)))
            .http_status_as_error(false)
            .build()
            .into();
        Ok(Writeback {
            kind,
            base,
            authorization: format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(credentials)),
            field,
            table,
            agent,
        })
    }

    /// Writes `change` onto the ticket `object` (a sys_id, a Jira issue id).
    fn write(&self, object: &str, change: &ChangeId) -> Result<(), String> {
        if !object.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(format!("{object:?} is not a ticket id this source can address"));
        }
        let change = change.to_string();
        let (method, url, body) = match (self.kind, &self.field) {
            (Kind::Servicenow, Some(field)) => (
                "PATCH",
                format!("{}/api/now/table/{}/{object}", self.base, self.table),
                json!({ field: change }),
            ),
            (_, Some(field)) => (
                "PUT",
                format!("{}/rest/api/3/issue/{object}", self.base),
                json!({"fields": { field: change }}),
            ),
            (_, None) => (
                "PUT",
                format!("{}/rest/api/3/issue/{object}/properties/writ", self.base),
                json!({"change": change}),
            ),
        };
        let request = ureq::http::Request::builder()
            .method(method)
            .uri(&url)
            .header("authorization", &self.authorization)
            .header("accept", "application/json")
            .header("content-type", "application/json")
            .body(body.to_string())
            .map_err(|e| format!("building the request: {e}"))?;
        let mut response = self.agent.run(request).map_err(|e| format!("{method} {url}: {e}"))?;
        let status = response.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(());
        }
        let text = response.body_mut().read_to_string().unwrap_or_default();
        Err(format!("{method} {url}: HTTP {status} {}", text.chars().take(200).collect::<String>()))
    }
}

/// Writes back what is due for each source with write-back; failures are kept and retried.
pub fn pass(
    engine: &writ_engine::Engine,
    writebacks: &[(SourceName, &Writeback)],
) -> Result<usize, writ_engine::EngineError> {
    let store = engine.store();
    let mut written = 0;
    for (source, writeback) in writebacks {
        let now = engine.now();
        for (object, change, attempts) in store.writebacks_due(source, now, BATCH)? {
            let result = if store.change_events(&change)?.is_empty() {
                // Reserved for a change that was never opened (refused): nothing to write yet.
                Err(format!("{change} is reserved for this ticket but was not opened"))
            } else {
                writeback.write(&object, &change)
            };
            let now = engine.now();
            match result {
                Ok(()) => {
                    store.record_writeback(source, &object, Some(now), now, None)?;
                    tracing::info!(target: "writ::intake", %source, object, %change, "change ID written back to the ticket");
                    written += 1;
                }
                Err(error) => {
                    let wait = 2_000_i64.saturating_mul(1 << attempts.min(11)).min(3_600_000);
                    let next = writ_core::time::Timestamp::from_millis(now.as_millis() + wait);
                    tracing::warn!(target: "writ::intake", %source, object, %change, %error, "write-back failed; retried later");
                    store.record_writeback(source, &object, None, next, Some(&error))?;
                }
            }
        }
    }
    Ok(written)
}

/// The configuration error for a hook's write-back.
pub fn config_error(hook: &str, message: impl std::fmt::Display) -> Error {
    Error::new("input.config", format!("hook {hook:?}: writeback: {message}"))
}
