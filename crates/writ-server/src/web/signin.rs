//! Signing in and out. OpenID Connect: the authorization code flow with PKCE (RFC 7636, S256),
//! a `state` bound to the browser that started it (the pre-session cookie) and taken once, and
//! a `nonce` the ID token must carry; the token's claim (the server's `oidc_claim`) must name a
//! registered, active Writ identity. A Writ API token: checked once, its secret not kept; the
//! session then follows the token's standing. Either way the session id is new (no fixation),
//! and the redirect after sign-in goes only to a path under `/ui`.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State as Extract};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::session::{self, Pending, Via, random_text, read_cookie, sha256};
use super::{check_form, html, local_next, page_error};
use crate::State;
use crate::error::ApiError;

pub fn routes() -> Router<State> {
    Router::new()
        .route("/ui/signin", get(signin_page))
        .route("/ui/signin/token", post(signin_token))
        .route("/ui/signin/oidc", get(signin_oidc))
        .route("/ui/auth/callback", get(callback))
        .route("/ui/signout", post(signout))
}

#[derive(askama::Template)]
#[template(path = "signin.html")]
struct SigninPage {
    csrf: String,
    next: String,
    oidc: bool,
    notice: Option<String>,
    error: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct SigninQuery {
    next: Option<String>,
    expired: Option<String>,
}

/// The pre-session cookie of this browser, or a new one (with its `Set-Cookie`).
fn presession(state: &State, headers: &HeaderMap) -> Result<(String, Option<String>), ApiError> {
    let sessions = &state.web.sessions;
    if let Some(value) = read_cookie(headers, sessions.signin_cookie_name())
        && sessions.unsign(value).is_some()
    {
        return Ok((value.to_owned(), None));
    }
    let value = sessions.sign(&random_text(24)?);
    let cookie = sessions.cookie(sessions.signin_cookie_name(), &value, Some(session::PENDING_FOR.as_secs()));
    Ok((value, Some(cookie)))
}

fn with_cookies(mut response: Response, cookies: impl IntoIterator<Item = String>) -> Response {
    for cookie in cookies {
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    response
}

/// The pre-session's CSRF token: its id, which the form carries back.
fn presession_csrf(state: &State, value: &str) -> String {
    state.web.sessions.unsign(value).unwrap_or_default().to_owned()
}

async fn signin_page(
    Extract(state): Extract<State>,
    headers: HeaderMap,
    Query(query): Query<SigninQuery>,
) -> Response {
    let (value, set) = match presession(&state, &headers) {
        Ok(found) => found,
        Err(error) => return page_error(false, error),
    };
    let page = SigninPage {
        csrf: presession_csrf(&state, &value),
        next: local_next(query.next.as_deref()),
        oidc: state.oidc.is_some() && state.web.settings.client.is_some(),
        notice: query.expired.map(|_| "Your session has ended. Sign in again.".to_owned()),
        error: None,
    };
    with_cookies(html(&page), set)
}

#[derive(Deserialize)]
struct TokenForm {
    #[serde(rename = "csrf")]
    _csrf: Option<String>,
    token: String,
    next: Option<String>,
}

/// The sign-in page again, saying why the sign-in failed (401). Rendered here rather than
/// redirected with the reason in the URL, so no one can make the page say what they like.
fn signin_failed(state: &State, headers: &HeaderMap, next: &str, message: &str) -> Response {
    let (value, set) = match presession(state, headers) {
        Ok(found) => found,
        Err(error) => return page_error(false, error),
    };
    let page = SigninPage {
        csrf: presession_csrf(state, &value),
        next: local_next(Some(next)),
        oidc: state.oidc.is_some() && state.web.settings.client.is_some(),
        notice: None,
        error: Some(message.to_owned()),
    };
    let mut response = with_cookies(html(&page), set);
    *response.status_mut() = axum::http::StatusCode::UNAUTHORIZED;
    response
}

/// A session cookie for a new session of `identity`.
fn open(state: &State, identity: writ_core::name::IdentityName, via: Via) -> Result<String, ApiError> {
    let sessions = &state.web.sessions;
    let (value, _) = sessions.open(identity, via)?;
    Ok(sessions.cookie(sessions.cookie_name(), &value, None))
}

/// Ends the pre-session cookie (a sign-in used it).
fn clear_presession(state: &State) -> String {
    let sessions = &state.web.sessions;
    sessions.cookie(sessions.signin_cookie_name(), "", Some(0))
}

async fn signin_token(Extract(state): Extract<State>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(value) = read_cookie(&headers, state.web.sessions.signin_cookie_name()).map(str::to_owned)
    else {
        return page_error(
            false,
            ApiError::new("auth.csrf", "no sign-in form was opened here: open /ui/signin"),
        );
    };
    let form: TokenForm = match check_form(&headers, &body, &presession_csrf(&state, &value)) {
        Ok(form) => form,
        Err(error) => return page_error(false, error),
    };
    let next = local_next(form.next.as_deref());
    let token = form.token.trim().to_owned();
    let shared = state.clone();
    let checked = tokio::task::spawn_blocking(move || {
        let principal = shared.engine.authenticate(&token)?;
        let id = writ_engine::access::parse_token(&token).map(|(id, _)| id.to_owned()).unwrap_or_default();
        Ok::<_, writ_engine::access::AccessError>((principal, id))
    })
    .await;
    match checked {
        Ok(Ok((principal, id))) => match open(&state, principal.identity.name.clone(), Via::Token(id)) {
            Ok(cookie) => {
                tracing::info!(target: "writ::web", identity = %principal.identity.name, via = "token", "signed in");
                with_cookies(Redirect::to(&next).into_response(), [cookie, clear_presession(&state)])
            }
            Err(error) => page_error(false, error),
        },
        Ok(Err(error)) => signin_failed(&state, &headers, &next, &ApiError::from(error).error.message),
        Err(e) => page_error(false, ApiError::internal(format!("sign-in task failed: {e}"))),
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct OidcQuery {
    next: Option<String>,
}

/// The redirect URI registered for the web client: the public URL's callback.
fn redirect_uri(state: &State) -> String {
    let base = state.public_url.get().map_or("", String::as_str).trim_end_matches('/');
    format!("{base}/ui/auth/callback")
}

/// Starts an OIDC sign-in: PKCE verifier and challenge, state and nonce, remembered for this
/// browser; then to the issuer's authorization endpoint.
async fn signin_oidc(
    Extract(state): Extract<State>,
    headers: HeaderMap,
    Query(query): Query<OidcQuery>,
) -> Response {
    let (Some(_), Some(client)) = (&state.oidc, state.web.settings.client.clone()) else {
        return page_error(
            false,
            ApiError::new("auth.signin_failed", "this server has no OpenID Connect issuer configured"),
        );
    };
    let (value, set) = match presession(&state, &headers) {
        Ok(found) => found,
        Err(error) => return page_error(false, error),
    };
    let shared = state.clone();
    let endpoints = tokio::task::spawn_blocking(move || shared.oidc.as_ref().map(|o| o.endpoints())).await;
    let authorize = match endpoints {
        Ok(Some(Ok((authorize, _)))) => authorize,
        Ok(Some(Err(error))) => return page_error(false, ApiError::from(error)),
        _ => return page_error(false, ApiError::internal("the issuer could not be asked")),
    };
    let secrets = (random_text(32), random_text(24), random_text(24));
    let (Ok(verifier), Ok(state_value), Ok(nonce)) = secrets else {
        return page_error(false, ApiError::internal("no randomness for the sign-in"));
    };
    let challenge =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    let next = local_next(query.next.as_deref());
    state
        .web
        .sessions
        .begin(state_value.clone(), Pending::new(verifier, nonce.clone(), sha256(&value), next));
    let redirect = redirect_uri(&state);
    let parameters = serde_urlencoded::to_string([
        ("response_type", "code"),
        ("client_id", client.id.as_str()),
        ("redirect_uri", redirect.as_str()),
        ("scope", "openid"),
        ("state", state_value.as_str()),
        ("nonce", nonce.as_str()),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ])
    .unwrap_or_default();
    let separator = if authorize.contains('?') { '&' } else { '?' };
    with_cookies(Redirect::to(&format!("{authorize}{separator}{parameters}")).into_response(), set)
}

#[derive(Deserialize, Default)]
struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// The issuer sends the browser back here: the state must be one this browser started (once),
/// the code is redeemed with the verifier, the ID token verified, and a session opened.
async fn callback(
    Extract(state): Extract<State>,
    headers: HeaderMap,
    Query(query): Query<CallbackQuery>,
) -> Response {
    let refuse = |message: String| signin_failed(&state, &headers, "/ui/inbox", &message);
    if let Some(error) = query.error {
        let detail = query.error_description.unwrap_or_default();
        return refuse(format!("the identity provider refused the sign-in: {error} {detail}"));
    }
    let (Some(code), Some(state_value)) = (query.code, query.state) else {
        return refuse("the identity provider's answer has no code or state".to_owned());
    };
    let Some(pending) = state.web.sessions.finish(&state_value) else {
        return refuse("this sign-in is unknown, used or too old: start again".to_owned());
    };
    let browser = read_cookie(&headers, state.web.sessions.signin_cookie_name()).map(sha256);
    if browser != Some(pending.browser) {
        return refuse("this sign-in was started in another browser: start again".to_owned());
    }
    let Some(client) = state.web.settings.client.clone() else {
        return refuse("this server has no OpenID Connect client configured".to_owned());
    };
    let redirect = redirect_uri(&state);
    let shared = state.clone();
    let next = pending.next.clone();
    let redeemed = tokio::task::spawn_blocking(move || {
        let oidc = shared.oidc.as_ref().ok_or_else(|| ApiError::new("auth.signin_failed", "no issuer"))?;
        let name = oidc.redeem(&code, &pending.verifier, &redirect, &client, &pending.nonce)?;
        let principal = shared.engine.principal(&name).map_err(|error| match error {
            writ_engine::access::AccessError::Auth(writ_engine::access::AuthError::Invalid) => ApiError::new(
                "auth.signin_failed",
                format!("{name} is not a registered Writ identity: ask an admin to register it"),
            ),
            other => ApiError::from(other),
        })?;
        Ok::<_, ApiError>(principal)
    })
    .await;
    match redeemed {
        Ok(Ok(principal)) => match open(&state, principal.identity.name.clone(), Via::Oidc) {
            Ok(cookie) => {
                tracing::info!(target: "writ::web", identity = %principal.identity.name, via = "oidc", "signed in");
                with_cookies(Redirect::to(&next).into_response(), [cookie, clear_presession(&state)])
            }
            Err(error) => page_error(false, error),
        },
        Ok(Err(error)) => refuse(error.error.message),
        Err(e) => page_error(false, ApiError::internal(format!("sign-in task failed: {e}"))),
    }
}

/// Ends the session (CSRF-checked: a cross-site page cannot sign anyone out).
async fn signout(Extract(state): Extract<State>, headers: HeaderMap, body: Bytes) -> Response {
    let sessions = &state.web.sessions;
    let cookie = read_cookie(&headers, sessions.cookie_name());
    let Ok(live) = sessions.touch(cookie) else {
        return Redirect::to("/ui/signin").into_response();
    };
    if let Err(error) = check_form::<std::collections::HashMap<String, String>>(&headers, &body, &live.csrf) {
        return page_error(false, error);
    }
    sessions.close(cookie);
    tracing::info!(target: "writ::web", identity = %live.identity, "signed out");
    with_cookies(
        Redirect::to("/ui/signin").into_response(),
        [sessions.cookie(sessions.cookie_name(), "", Some(0))],
    )
}
