//! The HTTP transport of the CLI's `--server` mode: a client that sends a request with the token,
//! reads the JSON answer and turns an error body into the same `CliError` a local command would
//! raise (its exit code from the one table of error kinds).

use serde::de::DeserializeOwned;
use serde_json::Value;
use writ_api::view::{IdentityDetailView, List, Page};

use crate::CliError;

/// The error body every refusal carries (`{"error": {"code", "message", "field"}}`).
#[derive(serde::Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(serde::Deserialize)]
struct ErrorDetail {
    code: String,
    #[serde(default)]
    message: String,
}

pub(crate) struct Client {
    pub(crate) base: String,
    pub(crate) token: String,
    pub(crate) agent: ureq::Agent,
}

impl Client {
    pub(crate) fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
        media: &str,
    ) -> Result<Vec<u8>, CliError> {
        let url = format!("{}{path}", self.base.trim_end_matches('/'));
        let request = ureq::http::Request::builder()
            .method(method)
            .uri(&url)
            .header("authorization", format!("Bearer {}", self.token))
            .header("content-type", media)
            .body(body.unwrap_or_default())
            .map_err(|e| CliError::new("input.server", format!("bad server URL {url}: {e}")))?;
        let mut response = self
            .agent
            .run(request)
            .map_err(|e| CliError::new("client.unreachable", format!("cannot reach {}: {e}", self.base)))?;
        let status = response.status();
        let bytes = response
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_vec()
            .map_err(|e| CliError::new("client.unreadable", format!("reading the reply: {e}")))?;
        if status.is_success() {
            return Ok(bytes);
        }
        match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(ErrorBody { error }) if !error.message.is_empty() => {
                Err(CliError::received(&error.code, error.message))
            }
            Ok(ErrorBody { error }) => Err(CliError::received(&error.code, format!("HTTP {status}"))),
            Err(_) => Err(CliError::received("client.http", format!("HTTP {status}"))),
        }
    }

    /// The answer as the view `T` the server documents.
    pub(crate) fn view<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<T, CliError> {
        let bytes = body.map(|b| b.to_string().into_bytes());
        let reply = self.send(method, path, bytes, "application/json")?;
        serde_json::from_slice(&reply).map_err(|e| {
            CliError::new(
                "client.unreadable",
                format!("the server's answer to {method} {path} is not the documented view: {e}"),
            )
        })
    }

    /// Every item of a paged list.
    pub(crate) fn all<T: DeserializeOwned>(&self, path: &str, cursor: &str) -> Result<Vec<T>, CliError> {
        let mut items = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let separator = if path.contains('?') { '&' } else { '?' };
            let page_path = match &next {
                Some(after) => format!("{path}{separator}limit=500&{cursor}={after}"),
                None => format!("{path}{separator}limit=500"),
            };
            let page: Page<T> = self.view("GET", &page_path, None)?;
            items.extend(page.items);
            match page.next {
                Some(after) => next = Some(after),
                None => return Ok(items),
            }
        }
    }

    /// The items of a whole list.
    pub(crate) fn items<T: DeserializeOwned>(&self, path: &str) -> Result<Vec<T>, CliError> {
        Ok(self.view::<List<T>>("GET", path, None)?.items)
    }
}

/// Refuses an `--as` that is not the token's identity: over the API the actor is always the
/// authenticated one.
pub(crate) fn check_actor(client: &Client, actor: Option<&str>) -> Result<(), CliError> {
    let Some(actor) = actor else { return Ok(()) };
    let me: IdentityDetailView = client.view("GET", "/api/v1/whoami", None)?;
    if me.identity.name == actor {
        return Ok(());
    }
    Err(CliError::new(
        "input.actor_mismatch",
        format!(
            "--as {actor} but the token belongs to {}; over a server you act as your token's identity",
            me.identity.name
        ),
    ))
}

/// Percent-encodes a query value or a path segment (everything but unreserved characters).
pub(crate) fn percent(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
