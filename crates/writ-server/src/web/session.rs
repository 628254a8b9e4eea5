//! Sessions of the web interface, kept on the server: the cookie holds only a random id and its
//! MAC under this process's key, so a forged or altered cookie is refused before any lookup, and
//! the table is keyed by the id's SHA-256 (what is held in memory cannot be replayed as a
//! cookie). A session ends after `idle` without a request, at `absolute` after sign-in, at
//! sign-out, and when the server restarts (everyone signs in again: nothing survives that could
//! outlive a revoked token or a disabled identity). Authority is never taken from the session
//! alone: each request resolves its identity again (`Engine::principal`, or the token's standing
//! for a token sign-in), so a disabled identity or a revoked token ends the session at once.
//!
//! Every state-changing form carries the session's CSRF token (compared in constant time);
//! sign-in forms, which have no session yet, carry the token of a short pre-session cookie
//! (double submit), which also binds an OpenID Connect login to the browser that started it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use hmac::{KeyInit, Mac};
use sha2::{Digest, Sha256};
use writ_core::name::IdentityName;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// At most this many live sessions, and this many sign-ins under way: past them the oldest
/// are dropped, so unauthenticated requests cannot grow the server's memory without bound.
const MAX_SESSIONS: usize = 50_000;
const MAX_PENDING: usize = 10_000;
/// How long a sign-in started at the identity provider may take.
pub const PENDING_FOR: Duration = Duration::from_secs(600);

/// How a session was opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Via {
    /// OpenID Connect: the identity's own standing decides each request.
    Oidc,
    /// A Writ API token, by its id: its standing (revoked, expired) decides each request.
    Token(String),
}

#[derive(Clone, Debug)]
pub struct Session {
    pub identity: IdentityName,
    pub via: Via,
    /// The token every form of this session carries.
    pub csrf: String,
    started: Instant,
    seen: Instant,
}

/// An OpenID Connect sign-in under way, by its `state`.
#[derive(Clone, Debug)]
pub struct Pending {
    pub verifier: String,
    pub nonce: String,
    /// The SHA-256 of the pre-session cookie of the browser that started it.
    pub browser: [u8; 32],
    pub next: String,
    started: Instant,
}

impl Pending {
    pub fn new(verifier: String, nonce: String, browser: [u8; 32], next: String) -> Pending {
        Pending { verifier, nonce, browser, next, started: Instant::now() }
    }
}

/// Why a presented session is not one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lapse {
    /// No cookie, or one this server did not issue.
    None,
    /// It was one, and has ended (idle, absolute, or the server forgot it).
    Expired,
}

pub struct Sessions {
    key: [u8; 32],
    pub idle: Duration,
    pub absolute: Duration,
    /// Cookies are `Secure` (and `__Host-` prefixed) when the server is reached over TLS.
    pub secure: bool,
    live: Mutex<HashMap<[u8; 32], Session>>,
    pending: Mutex<HashMap<String, Pending>>,
}

/// `n` random bytes, base64url.
pub fn random_text(n: usize) -> Result<String, writ_api::Error> {
    let mut bytes = vec![0u8; n];
    getrandom::fill(&mut bytes).map_err(|e| writ_api::Error::new("internal.random", e.to_string()))?;
    Ok(B64.encode(bytes))
}

pub fn sha256(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

pub use writ_engine::access::constant_time_eq as same;

impl Sessions {
    pub fn new(idle: Duration, absolute: Duration, secure: bool) -> Result<Sessions, writ_api::Error> {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(|e| writ_api::Error::new("internal.random", e.to_string()))?;
        Ok(Sessions { key, idle, absolute, secure, live: Mutex::default(), pending: Mutex::default() })
    }

    /// The session cookie's name: `__Host-` bound to this origin when served over TLS.
    pub fn cookie_name(&self) -> &'static str {
        if self.secure { "__Host-writ_session" } else { "writ_session" }
    }

    /// The pre-session cookie's name (sign-in forms and OIDC state binding).
    pub fn signin_cookie_name(&self) -> &'static str {
        if self.secure { "__Host-writ_signin" } else { "writ_signin" }
    }

    fn mac(&self, id: &str) -> String {
        let Ok(mut mac) = hmac::Hmac::<Sha256>::new_from_slice(&self.key) else { return String::new() };
        mac.update(id.as_bytes());
        B64.encode(mac.finalize().into_bytes())
    }

    /// A MAC'd value for a cookie: `id.mac`.
    pub fn sign(&self, id: &str) -> String {
        format!("{id}.{}", self.mac(id))
    }

    /// The id inside a cookie value this process signed.
    pub fn unsign<'a>(&self, value: &'a str) -> Option<&'a str> {
        let (id, mac) = value.split_once('.')?;
        same(mac, &self.mac(id)).then_some(id)
    }

    /// Opens a session: a new random id (never one the browser brought), returned as the
    /// cookie value to set.
    pub fn open(&self, identity: IdentityName, via: Via) -> Result<(String, Session), writ_api::Error> {
        let id = random_text(32)?;
        let now = Instant::now();
        let session = Session { identity, via, csrf: random_text(32)?, started: now, seen: now };
        if let Ok(mut live) = self.live.lock() {
            if live.len() >= MAX_SESSIONS {
                live.retain(|_, s| !self.lapsed(s, now));
            }
            if live.len() >= MAX_SESSIONS
                && let Some(oldest) = live.iter().min_by_key(|(_, s)| s.seen).map(|(k, _)| *k)
            {
                live.remove(&oldest);
            }
            live.insert(sha256(&id), session.clone());
        }
        Ok((self.sign(&id), session))
    }

    fn lapsed(&self, session: &Session, now: Instant) -> bool {
        now.duration_since(session.seen) > self.idle || now.duration_since(session.started) > self.absolute
    }

    /// The live session a cookie value names, its idle clock restarted; or why there is none.
    pub fn touch(&self, cookie: Option<&str>) -> Result<Session, Lapse> {
        let id = cookie.and_then(|c| self.unsign(c)).ok_or(Lapse::None)?;
        let key = sha256(id);
        let now = Instant::now();
        let mut live = self.live.lock().map_err(|_| Lapse::Expired)?;
        let session = live.get_mut(&key).ok_or(Lapse::Expired)?;
        if self.lapsed(session, now) {
            live.remove(&key);
            return Err(Lapse::Expired);
        }
        session.seen = now;
        Ok(session.clone())
    }

    /// Ends the session a cookie value names, if any.
    pub fn close(&self, cookie: Option<&str>) {
        if let (Some(id), Ok(mut live)) = (cookie.and_then(|c| self.unsign(c)), self.live.lock()) {
            live.remove(&sha256(id));
        }
    }

    /// Remembers an OIDC sign-in under way.
    pub fn begin(&self, state: String, pending: Pending) {
        if let Ok(mut all) = self.pending.lock() {
            all.retain(|_, p| p.started.elapsed() <= PENDING_FOR);
            if all.len() >= MAX_PENDING
                && let Some(oldest) = all.iter().min_by_key(|(_, p)| p.started).map(|(k, _)| k.clone())
            {
                all.remove(&oldest);
            }
            all.insert(state, pending);
        }
    }

    /// Takes the sign-in under way for `state` (once: a replayed callback finds nothing).
    pub fn finish(&self, state: &str) -> Option<Pending> {
        let pending = self.pending.lock().ok()?.remove(state)?;
        (pending.started.elapsed() <= PENDING_FOR).then_some(pending)
    }

    /// A `Set-Cookie` value for `name=value`, for this server's settings; `max_age` in seconds
    /// (`Some(0)` deletes it; `None`: until the browser closes).
    pub fn cookie(&self, name: &str, value: &str, max_age: Option<u64>) -> String {
        let mut cookie = format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax");
        if self.secure {
            cookie.push_str("; Secure");
        }
        if let Some(age) = max_age {
            cookie.push_str(&format!("; Max-Age={age}"));
        }
        cookie
    }
}

/// The value of cookie `name` in a request's `Cookie` headers.
pub fn read_cookie<'a>(headers: &'a axum::http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sessions(idle: Duration) -> Sessions {
        Sessions::new(idle, Duration::from_secs(3600), false).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_cookie_is_honoured_only_as_issued() {
        let s = sessions(Duration::from_secs(60));
        let name = IdentityName::parse("alice").unwrap_or_else(|e| panic!("{e}"));
        let (cookie, session) = s.open(name.clone(), Via::Oidc).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.touch(Some(&cookie)).map(|t| t.identity), Ok(name));
        assert_eq!(s.touch(Some(&cookie)).map(|t| t.csrf), Ok(session.csrf));
        // Altered id, altered MAC, no MAC, another process's key: no session.
        let (id, mac) = cookie.split_once('.').unwrap_or_else(|| panic!("no dot"));
        let other = sessions(Duration::from_secs(60));
        for forged in [format!("A{id}.{mac}"), format!("{id}.A{mac}"), id.to_owned(), other.sign(id)] {
            assert_eq!(s.touch(Some(&forged)).err(), Some(Lapse::None), "{forged}");
        }
        s.close(Some(&cookie));
        assert_eq!(s.touch(Some(&cookie)).err(), Some(Lapse::Expired));
    }

    #[test]
    fn an_idle_session_lapses_and_a_state_is_taken_once() {
        let s = sessions(Duration::from_millis(20));
        let name = IdentityName::parse("bob").unwrap_or_else(|e| panic!("{e}"));
        let (cookie, _) = s.open(name, Via::Token("0011".into())).unwrap_or_else(|e| panic!("{e}"));
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(s.touch(Some(&cookie)).err(), Some(Lapse::Expired));
        s.begin("st".into(), Pending::new("v".into(), "n".into(), [0; 32], "/ui".into()));
        assert!(s.finish("st").is_some());
        assert!(s.finish("st").is_none());
        assert!(same("abc", "abc") && !same("abc", "abd") && !same("abc", "ab"));
    }
}
