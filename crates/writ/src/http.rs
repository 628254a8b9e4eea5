//! The HTTP transport of the CLI's `--server` mode: a client that sends a request with the token,
//! reads the JSON answer and turns an error body into the same `CliError` a local command would
//! raise (its exit code from the one table of error kinds).

// Indexing a `serde_json::Value` by a key returns `Null` when the key is absent or the value is
// not an object; it never panics, so the slice-indexing lint does not apply to it here.
#![allow(clippy::indexing_slicing)]

use serde_json::Value;

use crate::CliError;

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
        let error: Value = serde_json::from_slice(&bytes).unwrap_or_default();
        let code = error["error"]["code"].as_str().unwrap_or("client.http");
        let message =
            error["error"]["message"].as_str().map_or_else(|| format!("HTTP {status}"), str::to_owned);
        Err(CliError::received(code, message))
    }

    pub(crate) fn json(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, CliError> {
        let bytes = body.map(|b| b.to_string().into_bytes());
        let reply = self.send(method, path, bytes, "application/json")?;
        serde_json::from_slice(&reply)
            .map_err(|e| CliError::new("client.unreadable", format!("the server sent invalid JSON: {e}")))
    }

    /// The answer as the view `T` the server documents.
    pub(crate) fn view<T: serde::de::DeserializeOwned>(
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
    pub(crate) fn all(&self, path: &str, cursor: &str) -> Result<Vec<Value>, CliError> {
        let mut items = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let separator = if path.contains('?') { '&' } else { '?' };
            let page_path = match &next {
                Some(after) => format!("{path}{separator}limit=500&{cursor}={after}"),
                None => format!("{path}{separator}limit=500"),
            };
            let page = self.json("GET", &page_path, None)?;
            items.extend(page["items"].as_array().cloned().unwrap_or_default());
            match page["next"].as_str() {
                Some(after) => next = Some(after.to_owned()),
                None => return Ok(items),
            }
        }
    }

    pub(crate) fn items(&self, path: &str) -> Result<Vec<Value>, CliError> {
        Ok(self.json("GET", path, None)?["items"].as_array().cloned().unwrap_or_default())
    }
}

/// Refuses an `--as` that is not the token's identity: over the API the actor is always the
/// authenticated one.
pub(crate) fn check_actor(client: &Client, actor: Option<&str>) -> Result<(), CliError> {
    let Some(actor) = actor else { return Ok(()) };
    let me = client.json("GET", "/api/v1/whoami", None)?;
    if me["name"].as_str() == Some(actor) {
        return Ok(());
    }
    Err(CliError::new(
        "input.actor_mismatch",
        format!(
            "--as {actor} but the token belongs to {}; over a server you act as your token's identity",
            me["name"].as_str().unwrap_or("?")
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
