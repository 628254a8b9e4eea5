//! `writ serve` settings: command-line flags and environment variables (`ServeOptions`) override a TOML
//! configuration file, which overrides the defaults.
//!
//! ```toml
//! listen = "127.0.0.1:8750"
//! db = "postgres://writ@db.internal/writ"
//! ledger_key = "/etc/writ/ledger.key"
//! hmac_key = "/etc/writ/hmac.key"
//! workers = 64
//! max_body_bytes = 65536
//! max_evidence_bytes = 16777216
//! rate_limit = 300                     # requests/s per address and per identity; 0: off
//! trusted_proxies = ["10.0.0.5"]      # whose X-Forwarded-For names the client (rate limits)
//! public_url = "https://writ.example.com"   # how clients reach it (SCIM meta.location)
//! refusal_window = "1m"                # refused deliveries: one recorded, the rest counted per window
//! oidc_issuer = "https://login.example.com"
//! oidc_audience = "writ"
//! oidc_claim = "preferred_username"
//! expiry_alert_attempts = 5
//!
//! [[hook]]                             # one per inbound webhook, served at /hooks/NAME
//! name = "github"
//! kind = "github"                      # github, gitlab, jira, servicenow or standard
//! secret_file = "/etc/writ/github.secret"   # one secret per line, mode 0600
//! requester = "svc-github"             # the registered identity the source requests as
//! tolerance = "1h"                     # oldest event accepted (default 1h; 5m for standard)
//! accounts = { "octocat" = "alice" }   # the source's accounts → Writ identities
//! unmapped_accounts = "refuse"         # or "as_hook": open as the requester, for nobody
//!
//! [[hook.manifests]]                   # application manifests (github and gitlab hooks)
//! repository = "acme/payments"
//! remote = "https://github.com/acme/payments.git"
//! mirror = "/var/lib/writ/manifests/payments.git"
//!
//! [[hook]]
//! name = "servicenow"
//! kind = "servicenow"
//! secret_file = "/etc/writ/servicenow.secret"
//! requester = "svc-servicenow"
//!
//! [hook.writeback]                     # the change ID written back to the ticket
//! url = "https://acme.service-now.com"
//! credentials_file = "/etc/writ/servicenow-writeback"
//!
//! [web]                                # the web interface at /ui: see `crate::web`
//! client_id = "writ"                   # its OIDC client id (default: oidc_audience)
//! client_secret_file = "/etc/writ/oidc-client.secret"   # a confidential client's secret, mode 0600
//! session_idle = "30m"
//! session_max = "12h"
//!
//! [notify]                             # delivering notifications: see `crate::notify`
//! from = "Writ <writ@example.com>"
//! [notify.smtp]
//! host = "smtp.example.com"
//! [notify.webhook.security]
//! url = "https://hooks.example.com/writ"
//! secret_file = "/etc/writ/security.whsec"
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;

use writ_api::Error;

/// What `writ serve` was given on its command line or in its environment; each overrides the
/// configuration file.
#[derive(Debug, Default)]
pub struct ServeOptions {
    /// A TOML configuration file; flags and environment variables override it.
    pub config: Option<PathBuf>,
    /// Address to listen on (port 0 picks a free port; the bound address is printed).
    pub listen: Option<String>,
    /// Most requests served at once (each runs its database work on a pool thread).
    pub workers: Option<usize>,
    /// Largest JSON request body, in bytes.
    pub max_body_bytes: Option<usize>,
    /// Requests per second per source address and per identity (0: no limit).
    pub rate_limit: Option<u32>,
    /// The window over which refused webhook deliveries are counted (a duration, 1s to 1h):
    /// the first refusal of a hook for a reason in a window is recorded on its own, the rest as
    /// one count when the window ends.
    pub refusal_window: Option<String>,
    /// The longest gap between checkpoints while writes arrive (10ms to 10s; default 1s): every
    /// write is answered once a checkpoint covers it, and one checkpoint covers every write that
    /// arrived in its interval.
    pub checkpoint_interval: Option<String>,
    /// Witnesses every checkpoint is sent to, each `KEY@URL` (the witness's cosigner key, and
    /// the prefix its `/add-checkpoint` is under).
    pub witnesses: Vec<String>,
    /// How many of the witnesses must cosign for a checkpoint to count as published (default:
    /// all of them).
    pub witness_quorum: Option<usize>,
    /// The URL clients reach this server at (behind a proxy, the proxy's), for the absolute
    /// URLs it writes; default: http:// and the bound address.
    pub public_url: Option<String>,
    /// Proxies in front of the server whose `X-Forwarded-For` names the client address (for
    /// the per-address rate limit); from anyone else the header is ignored.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Also accept OIDC bearer tokens (JWTs) from this issuer, verified with its published keys.
    pub oidc_issuer: Option<String>,
    /// The audience an OIDC token must be for (its `aud`); required with --oidc-issuer.
    pub oidc_audience: Option<String>,
    /// The claim that names the Writ identity (default: sub).
    pub oidc_claim: Option<String>,
    /// Failed attempts to end time-bound access after which the expiry change carries an alert
    /// (retries continue with backoff: 1 s doubling up to 5 min).
    pub expiry_alert_attempts: Option<u32>,
    /// A policy directory (Cedar files and rules.toml) to load at start and on
    /// `POST /api/v1/policy/reload`. An invalid policy stops the start with FILE:LINE: reason.
    pub policy_dir: Option<PathBuf>,
    /// How long an execution claim lasts unless renewed (1s to 1h; default 30s): how soon the
    /// server resumes a change whose attempt died.
    pub claim_ttl: Option<String>,
    /// How often each target is reconciled on its own (a duration from 1m to 7d, or `off`;
    /// default 1h). `POST /api/v1/reconcile` runs one at any time.
    pub reconcile_interval: Option<String>,
}

/// A witness in the configuration file: `[[witness]] key = "…" url = "…"`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WitnessEntry {
    key: String,
    url: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct File {
    listen: Option<String>,
    db: Option<PathBuf>,
    ledger_key: Option<PathBuf>,
    hmac_key: Option<PathBuf>,
    workers: Option<usize>,
    max_body_bytes: Option<usize>,
    max_evidence_bytes: Option<usize>,
    rate_limit: Option<u32>,
    refusal_window: Option<String>,
    checkpoint_interval: Option<String>,
    #[serde(default)]
    witness: Vec<WitnessEntry>,
    witness_quorum: Option<usize>,
    public_url: Option<String>,
    #[serde(default)]
    trusted_proxies: Vec<std::net::IpAddr>,
    oidc_issuer: Option<String>,
    oidc_audience: Option<String>,
    oidc_claim: Option<String>,
    expiry_alert_attempts: Option<u32>,
    policy_dir: Option<PathBuf>,
    claim_ttl: Option<String>,
    reconcile_interval: Option<String>,
    /// Per target: its own reconciliation interval (`[reconcile_intervals] pg = "15m"`, or
    /// `"off"`), over `reconcile_interval`.
    #[serde(default)]
    reconcile_intervals: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    hook: Vec<crate::routes::hooks::HookConfig>,
    /// How notifications are delivered (see `crate::notify`).
    notify: Option<crate::notify::NotifyConfig>,
    /// The web interface (see `crate::web`).
    #[serde(default)]
    web: crate::web::WebConfig,
}

/// Request size limits.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub body_bytes: usize,
    pub evidence_bytes: usize,
    /// Requests per second per source address and per identity; 0 for none.
    pub rate_per_second: u32,
}

/// Where a request comes from: the connection's peer, or behind a trusted proxy the address the
/// proxy says it forwarded for.
#[derive(Clone, Debug, Default)]
pub struct Proxies(pub Vec<std::net::IpAddr>);

impl Proxies {
    /// The client address of a request from `peer` carrying `forwarded_for` (the
    /// `X-Forwarded-For` values, in order): the right-most address that is not a trusted proxy,
    /// when `peer` is one; else `peer`. An entry that is not an address ends the walk there.
    pub fn client(&self, peer: std::net::IpAddr, forwarded_for: &[&str]) -> std::net::IpAddr {
        if !self.0.contains(&peer) {
            return peer;
        }
        let hops = forwarded_for.iter().flat_map(|v| v.split(',')).map(str::trim).rev();
        let mut client = peer;
        for hop in hops {
            let Ok(address) = hop.parse::<std::net::IpAddr>() else { break };
            client = address;
            if !self.0.contains(&address) {
                break;
            }
        }
        client
    }
}

pub struct Settings {
    pub listen: String,
    pub db: PathBuf,
    pub ledger_key: Option<PathBuf>,
    pub hmac_key: Option<PathBuf>,
    pub workers: usize,
    pub limits: Limits,
    pub oidc: Option<crate::oidc::OidcConfig>,
    /// The web interface's settings, resolved.
    pub web: crate::web::WebSettings,
    pub expiry: writ_engine::expiry::ExpiryPolicy,
    pub policy_dir: Option<PathBuf>,
    pub hooks: Vec<crate::routes::hooks::HookConfig>,
    pub refusal_window: writ_core::time::Duration,
    pub checkpoint_interval: std::time::Duration,
    pub claim_ttl: writ_core::time::Duration,
    /// How often each target is reconciled; `None`: only on demand.
    pub reconcile_interval: Option<writ_core::time::Duration>,
    /// Targets with their own interval (`None`: only on demand).
    pub reconcile_intervals: std::collections::BTreeMap<String, Option<writ_core::time::Duration>>,
    pub witnesses: crate::publish::Witnesses,
    pub notify: Option<crate::notify::NotifyConfig>,
    pub public_url: Option<String>,
    pub proxies: Proxies,
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8750";

/// An execution claim's term from its setting (a duration from 1s to 1h), or the default.
pub fn claim_ttl(text: Option<&str>) -> Result<writ_core::time::Duration, Error> {
    let Some(text) = text else { return Ok(writ_engine::execution::DEFAULT_CLAIM_TTL) };
    let ttl = writ_core::time::Duration::parse(text)?;
    if !(1_000..=3_600_000).contains(&ttl.as_millis()) {
        return Err(Error::new("input.config", format!("claim_ttl {text:?} is out of range: from 1s to 1h")));
    }
    Ok(ttl)
}
/// The reconciliation interval from its setting (1m to 7d, or `off`), or the default hour.
pub fn reconcile_interval(text: Option<&str>) -> Result<Option<writ_core::time::Duration>, Error> {
    match text {
        None => Ok(Some(writ_core::time::Duration::hours(1))),
        Some("off") => Ok(None),
        Some(text) => {
            let interval = writ_core::time::Duration::parse(text)?;
            if !(60_000..=7 * 86_400_000).contains(&interval.as_millis()) {
                return Err(Error::new(
                    "input.config",
                    format!("reconcile_interval {text:?} is out of range: from 1m to 7d, or off"),
                ));
            }
            Ok(Some(interval))
        }
    }
}

/// Requests per second per source address and per identity, unless configured.
pub const DEFAULT_RATE_LIMIT: u32 = 300;

impl Settings {
    pub fn resolve(
        db: Option<&Path>,
        ledger_key: Option<&Path>,
        hmac_key: Option<&Path>,
        args: ServeOptions,
    ) -> Result<Settings, Error> {
        let file = match &args.config {
            Some(path) => read(path)?,
            None => File::default(),
        };
        let db = db.map(Path::to_owned).or(file.db).ok_or_else(|| {
            Error::new(
                "input.no_database",
                "no database: pass --db, set WRIT_DB, or put `db` in the configuration file",
            )
        })?;
        let oidc = match (args.oidc_issuer.or(file.oidc_issuer), args.oidc_audience.or(file.oidc_audience)) {
            (None, None) => None,
            (Some(issuer), Some(audience)) => Some(crate::oidc::OidcConfig {
                issuer,
                audience,
                claim: args.oidc_claim.or(file.oidc_claim).unwrap_or_else(|| "sub".to_owned()),
            }),
            _ => {
                return Err(Error::new(
                    "input.config",
                    "OIDC needs both an issuer and an audience (--oidc-issuer, --oidc-audience)",
                ));
            }
        };
        let web = file.web.resolve(oidc.as_ref())?;
        let mut expiry = writ_engine::expiry::ExpiryPolicy::default();
        if let Some(attempts) = args.expiry_alert_attempts.or(file.expiry_alert_attempts) {
            expiry.alert_after_attempts = attempts.max(1);
        }
        let refusal_window = match args.refusal_window.or(file.refusal_window) {
            None => writ_core::time::Duration::parse("1m")?,
            Some(text) => {
                let window = writ_core::time::Duration::parse(&text)?;
                if !(1_000..=3_600_000).contains(&window.as_millis()) {
                    return Err(Error::new(
                        "input.config",
                        format!("refusal_window {text:?} is out of range: from 1s to 1h"),
                    ));
                }
                window
            }
        };
        let checkpoint_interval = match args.checkpoint_interval.or(file.checkpoint_interval) {
            None => std::time::Duration::from_secs(1),
            Some(text) => {
                let interval = match text.strip_suffix("ms").map(str::parse::<i64>) {
                    Some(Ok(millis)) => millis,
                    _ => writ_core::time::Duration::parse(&text)?.as_millis(),
                };
                if !(10..=10_000).contains(&interval) {
                    return Err(Error::new(
                        "input.config",
                        format!(
                            "checkpoint_interval {text:?} is out of range: from 10ms to 10s (milliseconds as 250ms)"
                        ),
                    ));
                }
                std::time::Duration::from_millis(u64::try_from(interval).unwrap_or(1000))
            }
        };
        let mut witnesses: Vec<(String, String)> = file.witness.into_iter().map(|w| (w.key, w.url)).collect();
        for entry in &args.witnesses {
            let (key, url) = entry.rsplit_once('@').ok_or_else(|| {
                Error::new("input.config", format!("--witness {entry:?}: expected KEY@URL"))
            })?;
            witnesses.push((key.to_owned(), url.to_owned()));
        }
        let witnesses =
            crate::publish::Witnesses::new(&witnesses, args.witness_quorum.or(file.witness_quorum))?;
        let public_url = args.public_url.or(file.public_url).map(|url| public_url(&url)).transpose()?;
        let mut trusted = args.trusted_proxies;
        trusted.extend(file.trusted_proxies);
        let claim_ttl = claim_ttl(args.claim_ttl.or(file.claim_ttl).as_deref())?;
        let reconcile_interval =
            reconcile_interval(args.reconcile_interval.or(file.reconcile_interval).as_deref())?;
        let reconcile_intervals = file
            .reconcile_intervals
            .iter()
            .map(|(target, text)| {
                writ_core::name::TargetName::parse(target)?;
                Ok((target.clone(), self::reconcile_interval(Some(text))?))
            })
            .collect::<Result<_, Error>>()?;
        Ok(Settings {
            claim_ttl,
            reconcile_interval,
            reconcile_intervals,
            proxies: Proxies(trusted),
            public_url,
            refusal_window,
            checkpoint_interval,
            witnesses,
            oidc,
            web,
            expiry,
            policy_dir: args.policy_dir.or(file.policy_dir),
            hooks: file.hook,
            notify: file.notify,
            listen: args.listen.or(file.listen).unwrap_or_else(|| DEFAULT_LISTEN.to_owned()),
            db,
            ledger_key: ledger_key.map(Path::to_owned).or(file.ledger_key),
            hmac_key: hmac_key.map(Path::to_owned).or(file.hmac_key),
            workers: args.workers.or(file.workers).unwrap_or(64).clamp(1, 1024),
            limits: Limits {
                body_bytes: args.max_body_bytes.or(file.max_body_bytes).unwrap_or(64 * 1024),
                evidence_bytes: file.max_evidence_bytes.unwrap_or(16 * 1024 * 1024),
                rate_per_second: args.rate_limit.or(file.rate_limit).unwrap_or(DEFAULT_RATE_LIMIT),
            },
        })
    }
}

/// A public URL: http or https, a host, an optional port and path, nothing else; without its
/// trailing slash.
fn public_url(text: &str) -> Result<String, Error> {
    let rest = text.strip_prefix("https://").or_else(|| text.strip_prefix("http://"));
    let valid = rest.is_some_and(|rest| {
        !rest.is_empty()
            && !rest.starts_with('/')
            && rest.chars().all(|c| c.is_ascii_graphic() && !matches!(c, '?' | '#' | '@' | '\\'))
    });
    if !valid {
        return Err(Error::new(
            "input.config",
            format!("public_url {text:?} is not an http(s) URL with a host (and no query, fragment or user)"),
        ));
    }
    Ok(text.trim_end_matches('/').to_owned())
}

fn read(path: &Path) -> Result<File, Error> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::new("input.config", format!("cannot read {}: {e}", path.display())))?;
    toml::from_str(&text).map_err(|e| Error::new("input.config", format!("{}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::Proxies;

    #[test]
    fn reconciliation_intervals_are_read_per_target_and_bad_ones_refused() {
        let dir = tempfile::tempdir().unwrap();
        let read = |text: &str| {
            let path = dir.path().join("writ.toml");
            std::fs::write(&path, format!("db = \"x.db\"\n{text}")).unwrap();
            let options = super::ServeOptions { config: Some(path), ..super::ServeOptions::default() };
            super::Settings::resolve(None, None, None, options)
        };
        let settings =
            read("reconcile_interval = \"off\"\n[reconcile_intervals]\npg = \"15m\"\naccess = \"off\"\n")
                .unwrap();
        assert_eq!(settings.reconcile_interval, None);
        assert_eq!(settings.reconcile_intervals["pg"].map(|d| d.as_millis()), Some(900_000));
        assert_eq!(settings.reconcile_intervals["access"], None);
        assert_eq!(
            read("").unwrap().reconcile_interval.map(|d| d.as_millis()),
            Some(3_600_000),
            "default 1h"
        );
        for bad in [
            "reconcile_interval = \"10s\"",
            "[reconcile_intervals]\npg = \"8d\"",
            "[reconcile_intervals]\n\"bad name!\" = \"1h\"",
        ] {
            assert!(read(bad).is_err(), "{bad}");
        }
    }

    fn ip(text: &str) -> std::net::IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn the_client_is_named_only_by_trusted_proxies_and_only_the_hops_they_added() {
        let proxies = Proxies(vec![ip("10.0.0.5"), ip("10.0.0.6")]);
        let cases: &[(&str, &[&str], &str)] = &[
            // Anyone else's header is ignored: the peer is the client.
            ("203.0.113.9", &["198.51.100.1"], "203.0.113.9"),
            // A trusted proxy names the client it forwarded for.
            ("10.0.0.5", &["198.51.100.1"], "198.51.100.1"),
            // The right-most untrusted hop: what the client wrote itself further left is not believed.
            ("10.0.0.5", &["1.2.3.4, 198.51.100.1"], "198.51.100.1"),
            ("10.0.0.5", &["1.2.3.4", "198.51.100.1, 10.0.0.6"], "198.51.100.1"),
            // No header, or garbage: the proxy itself.
            ("10.0.0.5", &[], "10.0.0.5"),
            ("10.0.0.5", &["not-an-address"], "10.0.0.5"),
            ("10.0.0.5", &["1.2.3.4, junk, 10.0.0.6"], "10.0.0.6"),
        ];
        for (peer, header, expected) in cases {
            assert_eq!(proxies.client(ip(peer), header), ip(expected), "{peer} {header:?}");
        }
    }
}
