//! Delivering notifications: the `[notify]` configuration (the SMTP relay, each group's
//! webhook, the retry schedule), the couriers that send email (`lettre`, STARTTLS or TLS) and
//! Standard Webhooks 1.0 (HMAC-SHA256 over `id.timestamp.body`, no redirects followed, private
//! addresses refused unless the webhook allows them, a deadline per request), and the pass the
//! server runs every second.
//!
//! ```toml
//! [notify]
//! from = "Writ <writ@example.com>"
//! timeout = "15s"                        # per delivery
//! retry = ["5s", "5m", "30m", "2h"]      # the wait after each failed attempt (default:
//!                                        # Standard Webhooks' schedule, about three days)
//!
//! [notify.smtp]
//! host = "smtp.example.com"
//! port = 587
//! tls = "starttls"                       # starttls, tls, or none (a local relay only)
//! ca_file = "/etc/writ/relay-ca.pem"     # optional: an internal CA the relay's certificate is from
//! credentials_file = "/etc/writ/smtp"    # `user:password` on one line, mode 0600
//!
//! [notify.webhook.security]              # the webhook of the group `security` in [groups]
//! url = "https://hooks.example.com/writ"
//! secret_file = "/etc/writ/security.whsec"   # whsec_… (24 to 64 bytes), mode 0600
//! format = "standard"                    # or "text": {"text": "…"} for chat tools
//! allow_private = false                  # whether a loopback/private/link-local address is allowed
//! ```
//!
//! No secret reaches the database, the ledger, a payload or a log: the SMTP password and the
//! webhook secrets are read from their files at start and kept in memory.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration as StdDuration;

use base64::Engine as _;
use hmac::{KeyInit, Mac};
use serde::Deserialize;
use writ_api::Error;
use writ_core::notify::Channel;
use writ_engine::notify::{Courier, Message, Schedule, Undelivered};

use crate::AppState;

/// `[notify]` in the configuration file.
#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    from: Option<String>,
    timeout: Option<String>,
    retry: Option<Vec<String>>,
    smtp: Option<SmtpConfig>,
    #[serde(default)]
    webhook: BTreeMap<String, WebhookConfig>,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct SmtpConfig {
    host: String,
    port: Option<u16>,
    tls: Option<String>,
    /// A PEM file of certificate authorities to trust for the relay (an internal CA), besides the
    /// public ones.
    ca_file: Option<PathBuf>,
    credentials_file: Option<PathBuf>,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct WebhookConfig {
    url: String,
    secret_file: PathBuf,
    #[serde(default)]
    format: Option<String>,
    #[serde(default)]
    allow_private: bool,
}

/// A group's webhook, ready to send to.
struct Webhook {
    url: String,
    /// The decoded `whsec_` key.
    key: Vec<u8>,
    text: bool,
    allow_private: bool,
    agent: ureq::Agent,
}

/// Everything the server needs to deliver notifications.
pub struct Notifier {
    pub schedule: Schedule,
    from: Option<lettre::message::Mailbox>,
    smtp: Option<lettre::SmtpTransport>,
    webhooks: BTreeMap<String, Webhook>,
    public_url: Option<String>,
}

fn config_error(message: String) -> Error {
    Error::new("notify.config", message)
}

impl NotifyConfig {
    /// Checks the configuration and reads its secret files: a webhook at an address it may not
    /// reach, a secret that is not a Standard Webhooks secret, or a file others can read stops
    /// the start with what to fix.
    pub fn load(&self, public_url: Option<String>) -> Result<Notifier, Error> {
        let timeout = match &self.timeout {
            None => StdDuration::from_secs(15),
            Some(text) => {
                let millis = writ_core::time::Duration::parse(text)?.as_millis();
                if !(1_000..=60_000).contains(&millis) {
                    return Err(config_error(format!("[notify] timeout {text:?}: from 1s to 60s")));
                }
                StdDuration::from_millis(u64::try_from(millis).unwrap_or(15_000))
            }
        };
        let mut schedule = Schedule::default();
        if let Some(retry) = &self.retry {
            schedule.waits = retry
                .iter()
                .map(|w| writ_core::time::Duration::parse(w))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| config_error(format!("[notify] retry: {e}")))?;
            if schedule.waits.len() > 20 {
                return Err(config_error("[notify] retry: at most 20 waits".into()));
            }
        }
        // A claim outlives its delivery: the deadline, and time to record the outcome.
        schedule.lease = writ_core::time::Duration::from_millis(
            i64::try_from(timeout.as_millis()).unwrap_or(15_000) + 5_000,
        )?;
        let from = self
            .from
            .as_deref()
            .map(|f| f.parse::<lettre::message::Mailbox>())
            .transpose()
            .map_err(|e| config_error(format!("[notify] from: {e}")))?;
        let smtp = self.smtp.as_ref().map(|s| smtp(s, timeout)).transpose()?;
        if smtp.is_some() && from.is_none() {
            return Err(config_error(
                "[notify] smtp needs a from address (from = \"Writ <writ@example.com>\")".into(),
            ));
        }
        let mut webhooks = BTreeMap::new();
        for (group, config) in &self.webhook {
            webhooks.insert(group.clone(), webhook(group, config, timeout)?);
        }
        Ok(Notifier { schedule, from, smtp, webhooks, public_url })
    }
}

fn smtp(config: &SmtpConfig, timeout: StdDuration) -> Result<lettre::SmtpTransport, Error> {
    use lettre::transport::smtp::client::{Tls, TlsParameters};
    let tls_parameters = || {
        let mut builder = TlsParameters::builder(config.host.clone());
        if let Some(path) = &config.ca_file {
            let pem = std::fs::read(path)
                .map_err(|e| config_error(format!("[notify.smtp] ca_file {}: {e}", path.display())))?;
            let certificate = lettre::transport::smtp::client::Certificate::from_pem(&pem)
                .map_err(|e| config_error(format!("[notify.smtp] ca_file {}: {e}", path.display())))?;
            builder = builder.add_root_certificate(certificate);
        }
        builder.build_rustls().map_err(|e| config_error(format!("[notify.smtp] TLS: {e}")))
    };
    let (tls, default_port) = match config.tls.as_deref().unwrap_or("starttls") {
        "starttls" => (Tls::Required(tls_parameters()?), 587),
        "tls" => (Tls::Wrapper(tls_parameters()?), 465),
        "none" => (Tls::None, 25),
        other => return Err(config_error(format!("[notify.smtp] tls {other:?}: starttls, tls or none"))),
    };
    let mut builder = lettre::SmtpTransport::builder_dangerous(config.host.clone())
        .port(config.port.unwrap_or(default_port))
        .tls(tls)
        .timeout(Some(timeout));
    if let Some(path) = &config.credentials_file {
        let text = crate::keys::read_secret(path)
            .map_err(|e| config_error(format!("[notify.smtp] {}", e.message)))?;
        let (user, password) = text.trim_end_matches(['\r', '\n']).split_once(':').ok_or_else(|| {
            config_error(format!("[notify.smtp] {}: expected `user:password` on one line", path.display()))
        })?;
        builder = builder.credentials(lettre::transport::smtp::authentication::Credentials::new(
            user.to_owned(),
            password.to_owned(),
        ));
    }
    Ok(builder.build())
}

fn webhook(group: &str, config: &WebhookConfig, timeout: StdDuration) -> Result<Webhook, Error> {
    let err = |why: String| config_error(format!("[notify.webhook.{group}] {why}"));
    let text = crate::keys::read_secret(&config.secret_file).map_err(|e| err(e.message))?;
    let key = text
        .trim()
        .strip_prefix("whsec_")
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .filter(|k| (24..=64).contains(&k.len()))
        .ok_or_else(|| {
            err(format!(
                "{}: a Standard Webhooks secret is `whsec_` and the base64 of 24 to 64 random bytes",
                config.secret_file.display()
            ))
        })?;
    let text = match config.format.as_deref().unwrap_or("standard") {
        "standard" => false,
        "text" => true,
        other => return Err(err(format!("format {other:?}: standard or text"))),
    };
    // Refused now rather than at the first delivery; checked again at each delivery too.
    destination(&config.url, config.allow_private).map_err(|e| err(e.reason))?;
    let resolver = Guarded { allow_private: config.allow_private };
    let agent_config = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .max_redirects(0)
        .max_redirects_will_error(false)
        .http_status_as_error(false)
        .build();
    let agent = ureq::Agent::with_parts(
        agent_config,
        ureq::unversioned::transport::DefaultConnector::default(),
        resolver,
    );
    Ok(Webhook { url: config.url.clone(), key, text, allow_private: config.allow_private, agent })
}

/// Whether `ip` is an address a webhook must not reach unless allowed: loopback, private,
/// link-local (cloud metadata lives there), unspecified, shared, or the IPv6 equivalents.
fn internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || (a == 100 && (64..128).contains(&b)) // shared address space (RFC 6598)
                || a == 0
        }
        IpAddr::V6(v6) => {
            let first = v6.segments().first().copied().unwrap_or(0);
            v6.is_loopback()
                || v6.is_unspecified()
                || (first & 0xfe00) == 0xfc00 // unique local
                || (first & 0xffc0) == 0xfe80 // link-local
                || v6.to_ipv4_mapped().is_some_and(|v4| internal(IpAddr::V4(v4)))
        }
    }
}

/// The addresses `url` resolves to, refused if the scheme is not http(s) or, unless
/// `allow_private`, if any of them is internal.
fn destination(url: &str, allow_private: bool) -> Result<Vec<SocketAddr>, Undelivered> {
    let refuse = |reason: String| Undelivered { reason, permanent: true };
    let parsed: ureq::http::Uri = url.parse().map_err(|_| refuse(format!("{url:?} is not a URL")))?;
    let port = match parsed.scheme_str() {
        Some("https") => 443,
        Some("http") => 80,
        _ => return Err(refuse("a webhook URL is http:// or https://".into())),
    };
    let host = parsed.host().ok_or_else(|| refuse("the webhook URL has no host".into()))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let addresses: Vec<SocketAddr> = (host, parsed.port_u16().unwrap_or(port))
        .to_socket_addrs()
        .map_err(|e| Undelivered { reason: format!("cannot resolve {host}: {e}"), permanent: false })?
        .collect();
    if !allow_private && let Some(address) = addresses.iter().find(|a| internal(a.ip())) {
        return Err(refuse(format!(
            "refused: {host} resolves to {}, a loopback, private or link-local address; \
             set allow_private = true on this webhook if it is meant to be internal",
            address.ip()
        )));
    }
    Ok(addresses)
}

/// ureq's resolver with the same check, so the address connected to is one that was checked
/// (a name that resolves elsewhere between the check and the connection is refused too).
#[derive(Debug)]
struct Guarded {
    allow_private: bool,
}

impl ureq::unversioned::resolver::Resolver for Guarded {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        config: &ureq::config::Config,
        timeout: ureq::unversioned::transport::NextTimeout,
    ) -> Result<ureq::unversioned::resolver::ResolvedSocketAddrs, ureq::Error> {
        let resolved =
            ureq::unversioned::resolver::DefaultResolver::default().resolve(uri, config, timeout)?;
        if !self.allow_private && resolved.iter().any(|a| internal(a.ip())) {
            return Err(ureq::Error::Io(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                "the webhook's host resolves to a loopback, private or link-local address",
            )));
        }
        Ok(resolved)
    }
}

impl Notifier {
    fn email(&self, message: &Message) -> Result<(), Undelivered> {
        let permanent = |reason: String| Undelivered { reason, permanent: true };
        let (Some(smtp), Some(from)) = (&self.smtp, &self.from) else {
            return Err(permanent("no SMTP relay is configured ([notify.smtp])".into()));
        };
        let notification = &message.notification;
        let to: lettre::message::Mailbox = notification.notice.address.parse().map_err(|e| {
            permanent(format!("the address of {} is not usable: {e}", notification.notice.recipient))
        })?;
        let mut builder = lettre::Message::builder()
            .from(from.clone())
            .to(to)
            .subject(message.subject.clone())
            .message_id(Some(format!("<{}.{}@writ>", notification.id, notification.event)));
        if let Some(change) = &notification.change {
            builder = builder.raw_header(lettre::message::header::HeaderValue::new(
                lettre::message::header::HeaderName::new_from_ascii_str("Writ-Change"),
                change.to_string(),
            ));
        }
        let text = self.with_link(message);
        let html = html(&message.subject, &text);
        let email = builder
            .multipart(lettre::message::MultiPart::alternative_plain_html(text, html))
            .map_err(|e| permanent(format!("the message cannot be built: {e}")))?;
        use lettre::Transport as _;
        smtp.send(&email).map(|_| ()).map_err(|e| Undelivered {
            permanent: e.is_permanent(),
            reason: format!("the SMTP relay refused or failed: {}", smtp_reason(&e)),
        })
    }

    fn webhook(&self, message: &Message) -> Result<(), Undelivered> {
        let notification = &message.notification;
        let group = &notification.notice.address;
        let hook = self.webhooks.get(group).ok_or_else(|| Undelivered {
            reason: format!("no webhook is configured for group {group} ([notify.webhook.{group}])"),
            permanent: true,
        })?;
        let mut payload = message.payload.clone();
        if let (Some(url), Some(change), Some(data)) =
            (&self.public_url, &notification.change, payload.get_mut("data").and_then(|d| d.as_object_mut()))
        {
            data.insert("url".into(), serde_json::json!(format!("{url}/api/v1/changes/{change}")));
        }
        let body = if hook.text {
            serde_json::json!({ "text": format!("{}\n{}", message.subject, self.with_link(message)) })
                .to_string()
        } else {
            payload.to_string()
        };
        destination(&hook.url, hook.allow_private)?;
        let timestamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
            .to_string();
        let signature = sign(&hook.key, &notification.id, &timestamp, &body);
        let response = hook
            .agent
            .post(&hook.url)
            .header("content-type", "application/json")
            .header("user-agent", "writ")
            .header("webhook-id", notification.id.as_str())
            .header("webhook-timestamp", timestamp.as_str())
            .header("webhook-signature", signature.as_str())
            .send(body.as_bytes())
            .map_err(|e| Undelivered {
                reason: format!("cannot reach the webhook: {e}"),
                permanent: false,
            })?;
        let status = response.status().as_u16();
        match status {
            200..=299 => Ok(()),
            300..=399 => Err(Undelivered {
                reason: format!(
                    "refused: the webhook answered {status}, a redirect; Writ does not follow redirects (set the final URL)"
                ),
                permanent: true,
            }),
            410 => Err(Undelivered { reason: "the webhook answered 410 Gone".into(), permanent: true }),
            408 | 425 | 429 | 500..=599 => {
                Err(Undelivered { reason: format!("the webhook answered {status}"), permanent: false })
            }
            _ => Err(Undelivered { reason: format!("the webhook answered {status}"), permanent: true }),
        }
    }

    /// The text, with the change's link when the server knows its public URL.
    fn with_link(&self, message: &Message) -> String {
        match (&self.public_url, &message.notification.change) {
            (Some(url), Some(change)) => {
                format!("{}\nOpen it: {url}/api/v1/changes/{change}\n", message.text)
            }
            _ => message.text.clone(),
        }
    }
}

/// The Standard Webhooks signature header: `v1,` and the base64 HMAC-SHA256 of
/// `id.timestamp.body` under `key`.
pub fn sign(key: &[u8], id: &str, timestamp: &str, body: &str) -> String {
    let Ok(mut mac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(key) else { return String::new() };
    mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
    format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()))
}

/// A reason from an SMTP error without the message itself.
fn smtp_reason(error: &lettre::transport::smtp::Error) -> String {
    match error.status() {
        Some(code) => format!("SMTP status {code}"),
        None => error.to_string().chars().take(200).collect(),
    }
}

/// The HTML part: the text, escaped, in a preformatted block.
fn html(subject: &str, text: &str) -> String {
    let escape =
        |s: &str| s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;");
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{}</title></head><body><pre style=\"font-family: ui-monospace, monospace\">{}</pre></body></html>",
        escape(subject),
        escape(text)
    )
}

impl Courier for Notifier {
    fn send(&self, message: &Message) -> Result<(), Undelivered> {
        match message.notification.notice.channel {
            Channel::Email => self.email(message),
            Channel::Webhook => self.webhook(message),
        }
    }
}

/// One delivery pass (the server runs it every second, beside its other background work).
pub fn pass(state: &AppState) {
    let Some(notifier) = &state.notifier else { return };
    match state.engine.deliver_notifications(notifier, &state.instance, &notifier.schedule) {
        Ok(pass) if !(pass.delivered.is_empty() && pass.retrying.is_empty() && pass.dead.is_empty()) => {
            tracing::info!(target: "writ::notify", delivered = pass.delivered.len(), retrying = pass.retrying.len(), dead = pass.dead.len(), "delivery pass");
        }
        Ok(_) => {}
        Err(error) => {
            tracing::warn!(target: "writ::notify", code = error.code(), "delivery pass failed: {error}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_named() {
        for internal_ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
        ] {
            let ip: IpAddr = internal_ip.parse().unwrap_or(IpAddr::from([8, 8, 8, 8]));
            assert!(internal(ip), "{internal_ip} was taken for public");
        }
        for public in ["8.8.8.8", "1.1.1.1", "2001:4860:4860::8888", "100.128.0.1"] {
            let ip: IpAddr = public.parse().unwrap_or(IpAddr::from([127, 0, 0, 1]));
            assert!(!internal(ip), "{public} was taken for internal");
        }
    }

    #[test]
    fn a_webhook_to_an_internal_address_is_refused_unless_allowed() {
        for url in [
            "http://127.0.0.1:9/hook",
            "http://localhost:9/",
            "http://[::1]:9/",
            "http://169.254.169.254/latest",
        ] {
            let refused = destination(url, false).err().map(|e| (e.permanent, e.reason));
            assert!(
                matches!(&refused, Some((true, reason)) if reason.contains("refused")),
                "{url}: {refused:?}"
            );
            assert!(destination(url, true).is_ok(), "{url} refused although allowed");
        }
        assert!(destination("ftp://example.com/", true).is_err());
        assert!(destination("file:///etc/passwd", true).is_err());
    }

    #[test]
    fn the_signature_is_the_standard_webhooks_one() {
        // The example of the Standard Webhooks specification (`whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw`).
        let key = base64::engine::general_purpose::STANDARD
            .decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
            .unwrap_or_default();
        let body = r#"{"test": 2432232314}"#;
        assert_eq!(
            sign(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }
}
