//! The web interface at `/ui`: server-rendered pages (askama templates under `templates/`), a
//! little htmx (vendored, `static/htmx.min.js`) and one script of Writ's own (`static/writ.js`:
//! local times, and checking inclusion proofs in the browser). No inline script or style: the
//! Content-Security-Policy allows only this origin's files.
//!
//! People sign in with OpenID Connect (authorization code with PKCE) or a Writ token
//! (`signin.rs`); a server-side session (`session.rs`) carries them, and every request resolves
//! their identity again, so roles, separation of duties and scope are decided exactly as for the
//! API: handlers call the same engine entry points with the session's identity as the actor, and
//! ask `Engine::may` before offering a step. Every page answers `Accept: application/json` with
//! the data it shows (the API's views).

mod admin;
mod pages;
pub mod session;
mod signin;

use std::path::PathBuf;

use axum::Router;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use serde::Deserialize;
use writ_core::access::Principal;

use crate::State;
use crate::error::ApiError;
use crate::oidc::WebClient;
use session::{Lapse, Session, Sessions, Via};

/// `[web]` in the configuration file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebConfig {
    /// Serve the web interface (default: yes).
    enabled: Option<bool>,
    /// The OIDC client id the interface signs in as (default: `oidc_audience`).
    client_id: Option<String>,
    /// A confidential client's secret, in a file of mode 0600.
    client_secret_file: Option<PathBuf>,
    /// A session ends after this long without a request (default 30m).
    session_idle: Option<String>,
    /// A session ends this long after sign-in, whatever happens (default 12h).
    session_max: Option<String>,
}

/// The web interface's settings, resolved.
#[derive(Clone, Debug)]
pub struct WebSettings {
    pub enabled: bool,
    /// The OIDC client, when an issuer is configured.
    pub client: Option<WebClient>,
    pub idle: std::time::Duration,
    pub absolute: std::time::Duration,
}

fn duration(text: Option<&str>, default: &str, name: &str) -> Result<std::time::Duration, writ_api::Error> {
    let parsed = writ_core::time::Duration::parse(text.unwrap_or(default))?;
    let millis = u64::try_from(parsed.as_millis()).unwrap_or(0);
    if millis < 1_000 {
        return Err(writ_api::Error::new("input.config", format!("[web] {name} must be at least 1s")));
    }
    Ok(std::time::Duration::from_millis(millis))
}

impl WebConfig {
    pub fn resolve(self, oidc: Option<&crate::oidc::OidcConfig>) -> Result<WebSettings, writ_api::Error> {
        let secret = self.client_secret_file.as_deref().map(crate::keys::read_secret).transpose()?;
        let client = oidc.map(|o| WebClient {
            id: self.client_id.clone().unwrap_or_else(|| o.audience.clone()),
            secret: secret.map(|s| s.trim().to_owned()),
        });
        if oidc.is_none() && (self.client_id.is_some() || self.client_secret_file.is_some()) {
            return Err(writ_api::Error::new(
                "input.config",
                "[web] client_id and client_secret_file need an OIDC issuer (oidc_issuer, oidc_audience)",
            ));
        }
        let idle = duration(self.session_idle.as_deref(), "30m", "session_idle")?;
        let absolute = duration(self.session_max.as_deref(), "12h", "session_max")?;
        if idle > absolute {
            return Err(writ_api::Error::new(
                "input.config",
                "[web] session_idle is longer than session_max",
            ));
        }
        Ok(WebSettings { enabled: self.enabled.unwrap_or(true), client, idle, absolute })
    }
}

/// What the web interface keeps while the server runs.
pub struct Web {
    pub settings: WebSettings,
    pub sessions: Sessions,
}

impl Web {
    pub fn new(settings: WebSettings, public_url: Option<&str>) -> Result<Web, writ_api::Error> {
        let secure = public_url.is_some_and(|u| u.starts_with("https://"));
        let sessions = Sessions::new(settings.idle, settings.absolute, secure)?;
        Ok(Web { settings, sessions })
    }
}

/// The routes under `/ui`, with their security headers.
pub fn router(state: &State) -> Router<State> {
    if !state.web.settings.enabled {
        return Router::new();
    }
    let ui = Router::new()
        .route("/ui", get(|| async { Redirect::to("/ui/inbox") }))
        .route("/ui/static/{file}", get(asset))
        .merge(signin::routes())
        .merge(pages::routes())
        .merge(admin::routes())
        .layer(axum::middleware::from_fn(security_headers));
    Router::new().route("/", get(|| async { Redirect::to("/ui/inbox") })).merge(ui)
}

/// Every page's headers: a strict CSP (this origin's scripts, styles and connections only, no
/// inline code, no framing, forms only to this origin), no sniffing, no referrer, no caching.
async fn security_headers(request: Request, next: axum::middleware::Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    let set = |headers: &mut HeaderMap, name: &'static str, value: &'static str| {
        headers.insert(name, HeaderValue::from_static(value));
    };
    set(
        headers,
        "content-security-policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    );
    set(headers, "x-content-type-options", "nosniff");
    set(headers, "referrer-policy", "no-referrer");
    set(headers, "x-frame-options", "DENY");
    set(headers, "cross-origin-opener-policy", "same-origin");
    if !headers.contains_key(header::CACHE_CONTROL) {
        set(headers, "cache-control", "no-store");
    }
    response
}

/// The files the pages load: Writ's script and style, and the vendored htmx (2.0.11, 0BSD).
async fn asset(axum::extract::Path(file): axum::extract::Path<String>) -> Response {
    let (body, media): (&'static [u8], &'static str) = match file.as_str() {
        "htmx.min.js" => (include_bytes!("../../static/htmx.min.js"), "text/javascript"),
        "writ.js" => (include_bytes!("../../static/writ.js"), "text/javascript"),
        "writ.css" => (include_bytes!("../../static/writ.css"), "text/css"),
        _ => return ApiError::new("not_found", format!("no file {file:?} under /ui/static")).into_response(),
    };
    ([(header::CONTENT_TYPE, media), (header::CACHE_CONTROL, "public, max-age=3600")], body).into_response()
}

/// Whether the request asks for JSON rather than a page.
pub fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("application/json") && !accept.contains("text/html"))
}

/// The person behind a page request: a live session, their identity resolved again now.
pub struct Viewer {
    pub principal: Principal,
    pub session: Session,
    pub json: bool,
}

impl Viewer {
    pub fn name(&self) -> &writ_core::name::IdentityName {
        &self.principal.identity.name
    }
}

/// A local path to return to after sign-in: only under `/ui`, never another origin.
pub fn local_next(next: Option<&str>) -> String {
    match next {
        Some(path)
            if path.starts_with("/ui")
                && !path.contains("//")
                && !path.contains('\\')
                && path.chars().all(|c| c.is_ascii_graphic()) =>
        {
            path.to_owned()
        }
        _ => "/ui/inbox".to_owned(),
    }
}

fn signin_redirect(parts: &Parts, lapse: Lapse) -> Response {
    let wanted = parts.uri.path_and_query().map_or("/ui/inbox", |p| p.as_str());
    let next =
        if parts.method == axum::http::Method::GET { local_next(Some(wanted)) } else { "/ui/inbox".into() };
    let mut query = vec![("next", next.as_str())];
    if lapse == Lapse::Expired {
        query.push(("expired", "1"));
    }
    let location = format!("/ui/signin?{}", serde_urlencoded::to_string(&query).unwrap_or_default());
    if parts.headers.contains_key("hx-request") {
        let mut response = StatusCode::UNAUTHORIZED.into_response();
        if let Ok(value) = HeaderValue::from_str(&location) {
            response.headers_mut().insert("hx-redirect", value);
        }
        return response;
    }
    Redirect::to(&location).into_response()
}

impl FromRequestParts<State> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &State) -> Result<Viewer, Response> {
        let json = wants_json(&parts.headers);
        let sessions = &state.web.sessions;
        let cookie = session::read_cookie(&parts.headers, sessions.cookie_name());
        let session = match sessions.touch(cookie) {
            Ok(session) => session,
            Err(lapse) if json => {
                let error = match lapse {
                    Lapse::None => ApiError::new("auth.missing_token", "no session: sign in at /ui/signin"),
                    Lapse::Expired => ApiError::new(
                        "auth.session_expired",
                        "the session has ended: sign in again at /ui/signin",
                    ),
                };
                return Err(error.into_response());
            }
            Err(lapse) => return Err(signin_redirect(parts, lapse)),
        };
        let shared = state.clone();
        let (identity, via) = (session.identity.clone(), session.via.clone());
        let standing = tokio::task::spawn_blocking(move || match via {
            Via::Oidc => shared.engine.principal(&identity),
            Via::Token(id) => shared.engine.token_standing(&id),
        })
        .await;
        let principal = match standing {
            Ok(Ok(principal)) => principal,
            Ok(Err(error)) => {
                // The identity left `active` or the token ended: so does the session.
                sessions.close(cookie);
                return Err(page_error(json, ApiError::from(error)));
            }
            Err(e) => return Err(ApiError::internal(format!("session task failed: {e}")).into_response()),
        };
        if let Some(rate) = &state.rate
            && let Err(refused) = rate.identity(principal.identity.name.as_str())
        {
            return Err(refused.into_response());
        }
        Ok(Viewer { principal, session, json })
    }
}

/// A form posted by a signed-in viewer: its CSRF token checked against the session's before
/// anything else is read, and a cross-site request refused outright.
pub struct Posted<T> {
    pub viewer: Viewer,
    pub form: T,
}

/// The most a form may carry.
const MAX_FORM_BYTES: usize = 64 * 1024;

#[derive(Deserialize)]
struct CsrfOnly {
    csrf: Option<String>,
}

/// The CSRF token of a form body, checked against `expected`; then the body parsed as `T`.
pub fn check_form<T: serde::de::DeserializeOwned>(
    headers: &HeaderMap,
    body: &[u8],
    expected: &str,
) -> Result<T, ApiError> {
    if headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) == Some("cross-site") {
        return Err(ApiError::new("auth.csrf", "a cross-site form post is refused"));
    }
    let presented = headers
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| serde_urlencoded::from_bytes::<CsrfOnly>(body).ok().and_then(|c| c.csrf));
    match presented {
        Some(token) if session::same(&token, expected) => {}
        _ => {
            return Err(ApiError::new(
                "auth.csrf",
                "the form's CSRF token is missing or wrong: reload the page and submit it again",
            ));
        }
    }
    serde_urlencoded::from_bytes(body)
        .map_err(|e| ApiError::new("request.unreadable_body", format!("the form cannot be read: {e}")))
}

impl<T: serde::de::DeserializeOwned> FromRequest<State> for Posted<T> {
    type Rejection = Response;

    async fn from_request(request: Request, state: &State) -> Result<Posted<T>, Response> {
        let (mut parts, body) = request.into_parts();
        let viewer = Viewer::from_request_parts(&mut parts, state).await?;
        let json = viewer.json;
        let bytes = axum::body::to_bytes(body, MAX_FORM_BYTES).await.map_err(|_| {
            page_error(
                json,
                ApiError::new(
                    "request.too_large",
                    format!("a form may carry at most {MAX_FORM_BYTES} bytes"),
                ),
            )
        })?;
        let form =
            check_form(&parts.headers, &bytes, &viewer.session.csrf).map_err(|e| page_error(json, e))?;
        Ok(Posted { viewer, form })
    }
}

/// What every page's frame shows: who is signed in, their CSRF token, the navigation.
pub struct Chrome {
    pub title: String,
    pub me: String,
    pub csrf: String,
    pub roles: Vec<String>,
    pub admin: bool,
    pub auditor: bool,
}

impl Chrome {
    pub fn of(viewer: &Viewer, title: impl Into<String>) -> Chrome {
        use writ_core::access::Role;
        let has = |r: Role| viewer.principal.roles.contains(&r);
        Chrome {
            title: title.into(),
            me: viewer.name().to_string(),
            csrf: viewer.session.csrf.clone(),
            roles: viewer.principal.roles.iter().map(|r| r.as_str().to_owned()).collect(),
            admin: has(Role::Admin),
            auditor: has(Role::Auditor) || has(Role::Admin),
        }
    }
}

#[derive(askama::Template)]
#[template(path = "error.html")]
struct ErrorPage {
    status: u16,
    code: String,
    message: String,
}

/// An error as a page (or as the API's JSON error, for a JSON request), with the status the
/// table of error kinds gives its code.
pub fn page_error(json: bool, error: ApiError) -> Response {
    if json {
        return error.into_response();
    }
    let status = error.status;
    let page = ErrorPage {
        status: status.as_u16(),
        code: error.error.code.to_string(),
        message: error.error.message,
    };
    let mut response = html(&page);
    *response.status_mut() = status;
    response
}

/// Runs page work on the blocking pool; an error becomes the error page (or JSON).
pub async fn work<T: Send + 'static>(
    state: &State,
    json: bool,
    job: impl FnOnce(&crate::AppState) -> crate::error::ApiResult<T> + Send + 'static,
) -> Result<T, Response> {
    crate::http::blocking(state, job).await.map_err(|e| page_error(json, e))
}

/// A rendered template as a response.
pub fn html(template: &impl askama::Template) -> Response {
    match template.render() {
        Ok(body) => ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response(),
        Err(e) => ApiError::internal(format!("the page could not be rendered: {e}")).into_response(),
    }
}

/// A page, or its data as JSON when the viewer asked for JSON.
pub fn respond(json: bool, data: &impl serde::Serialize, page: &impl askama::Template) -> Response {
    if json { axum::Json(writ_api::view::to_json(data)).into_response() } else { html(page) }
}
