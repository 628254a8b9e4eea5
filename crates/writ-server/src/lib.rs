//! `writ serve`: the HTTP API over the same engine the CLI uses.
//!
//! The engine is synchronous; each request runs its engine calls on tokio's blocking pool. Every
//! request is authenticated (API token or OIDC bearer), authorised by role and vendor scope, and
//! the separation-of-duties rules see the authenticated identity only: no request body names the
//! actor. Several instances may share one PostgreSQL database: ledger indices are assigned under
//! the database's lock, and singleton work (checkpoint signing, expiry, key clean-up) runs under
//! leases taken through the database, so each runs on one instance at a time.

mod auth;
pub mod bundle;
pub mod compose;
mod config;
mod cover;
pub mod db;
pub mod error;
mod http;
mod idempotency;
pub mod keys;
mod manifests;
pub mod notify;
mod oidc;
mod openapi;
pub mod publish;
mod ratelimit;
mod routes;
pub use routes::MAX_URI_BYTES;
pub mod targets;
pub mod testkit;
pub mod web;
pub mod witness;
mod writeback;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use axum::Router;
use writ_core::time::Timestamp;
use writ_engine::Engine;

pub use config::{ServeOptions, claim_ttl};

use crate::db::Database;
use writ_api::Error;

/// What every handler shares.
pub struct AppState {
    pub engine: Engine,
    /// The checkpoint signing keys, re-read when their file changes (`writ ledger rotate-key`).
    pub signer: keys::Signer,
    /// This process's name in leases (host-independent random id).
    pub instance: String,
    pub limits: config::Limits,
    /// The OIDC verifier, when an issuer is configured.
    pub oidc: Option<oidc::Oidc>,
    /// How time-bound access is ended: retries and alerting.
    pub expiry: writ_engine::expiry::ExpiryPolicy,
    /// The policy directory loaded at start and on reload, if any.
    pub policy_dir: Option<std::path::PathBuf>,
    /// The inbound webhooks, by name.
    pub hooks: std::collections::BTreeMap<String, routes::hooks::Hook>,
    /// Whether this process has settled the SCIM lifecycles a crash may have left behind.
    pub scim_swept: std::sync::atomic::AtomicBool,
    /// Requests per address and per identity, if limited.
    pub rate: Option<ratelimit::RateLimits>,
    /// The URL clients reach this server at (`public_url`; else `http://` and the bound
    /// address), for the absolute URLs it writes (SCIM `meta.location`). Never taken from a
    /// request's headers.
    pub public_url: std::sync::OnceLock<String>,
    /// Proxies whose `X-Forwarded-For` names the client.
    pub proxies: config::Proxies,
    /// Registry tables found to disagree with the ledger (at start, then every minute): while
    /// any does, the instance is sealed, answering reads and refusing every write.
    pub diverged: std::sync::RwLock<Vec<writ_engine::projections::Divergence>>,
    /// The newest signed size, which every write waits to be covered by (see `cover`).
    pub coverage: cover::Coverage,
    /// How often each target is reconciled on its own; `None`: only on demand.
    pub reconcile_interval: Option<writ_core::time::Duration>,
    /// Targets with their own interval, over `reconcile_interval`.
    pub reconcile_intervals: std::collections::BTreeMap<String, Option<writ_core::time::Duration>>,
    /// The witnesses every checkpoint is sent to (see `publish`).
    pub witnesses: publish::Witnesses,
    /// How notifications are delivered, if configured (`[notify]`, see `notify`).
    pub notifier: Option<notify::Notifier>,
    /// The web interface's settings and sessions (see `web`).
    pub web: web::Web,
}

impl AppState {
    /// Checks the registry tables against the ledger again and seals or unseals writes.
    pub fn check_projections(&self) -> writ_engine::Result<()> {
        let found = self.engine.check_projections_incremental()?;
        for divergence in &found {
            tracing::error!(target: "writ::serve", table = divergence.table, key = %divergence.key, expected = %divergence.expected, found = %divergence.found, "a table disagrees with the ledger: writes are refused until it is repaired");
        }
        if let Ok(mut diverged) = self.diverged.write() {
            *diverged = found;
        }
        Ok(())
    }
}

pub type State = Arc<AppState>;

/// Runs the server until SIGINT or SIGTERM.
pub fn run(
    database: Option<&Path>,
    key: Option<&Path>,
    hmac: Option<&Path>,
    options: ServeOptions,
) -> Result<(), Error> {
    let app = compose(database, key, hmac, options)?;
    let runtime = runtime(app.workers)?;
    let result = runtime.block_on(async {
        // Handlers first: a SIGTERM that arrives right after the address is printed must already
        // mean "shut down gracefully", not the default "die".
        let signals = Signals::install()?;
        let listener = bind(&app.listen).await?;
        let address = local_address(&listener)?;
        // The one line on stdout: scripts and tests read the bound address from it.
        println!("listening on http://{address}");
        tracing::info!(target: "writ::serve", %address, database = %app.described, instance = %app.state.instance, "serving");
        serve(Arc::clone(&app.state), listener, signals.received()).await
    });
    // The PostgreSQL client owns a runtime of its own, which must not be dropped inside ours:
    // shut ours down first, then release the store.
    drop(runtime);
    drop(app);
    result
}

/// A server composed from its settings, not yet listening.
pub struct App {
    pub state: State,
    pub listen: String,
    pub workers: usize,
    /// The database, for the log (a URL's password redacted).
    pub described: String,
}

/// Composition: settings → database → keys → engine → the state every handler shares.
pub fn compose(
    database: Option<&Path>,
    key: Option<&Path>,
    hmac: Option<&Path>,
    options: ServeOptions,
) -> Result<App, Error> {
    let settings = config::Settings::resolve(database, key, hmac, options)?;
    let database = Database::parse(Some(&settings.db))?;
    let store = database.open(false)?;
    let hmac =
        crate::keys::load_hmac(&database.hmac_path(settings.hmac_key.as_deref())?)?.ok_or_else(|| {
            Error::new(
                "ledger.no_hmac_key",
                "no HMAC key file: the server records nothing without it (--hmac-key / WRIT_HMAC_KEY)",
            )
        })?;
    let key_path = database.key_path(settings.ledger_key.as_deref())?;
    let signer = crate::keys::Signer::open(&key_path)?;
    let engine = crate::compose::engine_over(store, Some(hmac))
        .with_refusal_window(settings.refusal_window)
        .with_claim_ttl(settings.claim_ttl);
    engine.ledger_origin()?;
    if let Some(dir) = &settings.policy_dir {
        let loaded = load_policy_dir(&engine, dir)?;
        tracing::info!(target: "writ::serve", ?loaded, "policy loaded at start");
    }
    let oidc = settings.oidc.map(oidc::Oidc::new);
    let notifier = settings.notify.map(|n| n.load(settings.public_url.clone())).transpose()?;
    let web = web::Web::new(settings.web, settings.public_url.as_deref())?;
    let state = Arc::new(AppState {
        engine,
        signer,
        instance: instance_id()?,
        limits: settings.limits,
        oidc,
        expiry: settings.expiry,
        policy_dir: settings.policy_dir,
        hooks: routes::hooks::load(&settings.hooks)?,
        scim_swept: std::sync::atomic::AtomicBool::new(false),
        rate: ratelimit::RateLimits::new(settings.limits.rate_per_second),
        public_url: settings.public_url.map(std::sync::OnceLock::from).unwrap_or_default(),
        proxies: settings.proxies,
        diverged: std::sync::RwLock::default(),
        coverage: cover::Coverage::new(settings.checkpoint_interval),
        witnesses: settings.witnesses,
        reconcile_interval: settings.reconcile_interval,
        reconcile_intervals: settings.reconcile_intervals,
        notifier,
        web,
    });
    state.check_projections()?;
    Ok(App { state, listen: settings.listen, workers: settings.workers, described: database.describe() })
}

fn runtime(workers: usize) -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(workers)
        .build()
        .map_err(|e| Error::new("internal", format!("cannot start the runtime: {e}")))
}

async fn bind(listen: &str) -> Result<tokio::net::TcpListener, Error> {
    tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| Error::new("input.listen", format!("cannot listen on {listen}: {e}")))
}

fn local_address(listener: &tokio::net::TcpListener) -> Result<SocketAddr, Error> {
    listener.local_addr().map_err(|e| Error::new("internal", format!("no local address: {e}")))
}

fn instance_id() -> Result<String, Error> {
    let mut bytes = [0u8; 6];
    getrandom::fill(&mut bytes).map_err(|e| Error::new("internal.random", e.to_string()))?;
    Ok(format!("writ-{}", hex::encode(bytes)))
}

/// Serves `listener` with the background work beside it until `shutdown` completes, then signs
/// a last checkpoint.
async fn serve(
    state: State,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    if let Ok(address) = listener.local_addr() {
        let _configured = state.public_url.set(format!("http://{address}"));
    }
    let background = tokio::spawn(background(Arc::clone(&state)));
    let signer = tokio::spawn(cover::signer(Arc::clone(&state)));
    let publisher = tokio::spawn(cover::publisher(Arc::clone(&state)));
    let app: Router = routes::router(Arc::clone(&state));
    let result = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(shutdown)
        .await;
    background.abort();
    signer.abort();
    publisher.abort();
    // A last checkpoint so that what this instance wrote is signed before it goes.
    let last = Arc::clone(&state);
    let _ = tokio::task::spawn_blocking(move || last.signer.with(|s| last.engine.checkpoint(s))).await;
    tracing::info!(target: "writ::serve", "stopped");
    result.map_err(|e| Error::new("internal", format!("server error: {e}")))
}

/// SIGINT and SIGTERM, listened to from start-up.
struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> Result<Signals, Error> {
        use tokio::signal::unix::{SignalKind, signal};
        let failed = |e: std::io::Error| Error::new("internal", format!("cannot handle signals: {e}"));
        Ok(Signals {
            interrupt: signal(SignalKind::interrupt()).map_err(failed)?,
            terminate: signal(SignalKind::terminate()).map_err(failed)?,
        })
    }

    async fn received(mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {},
            _ = self.terminate.recv() => {},
        }
        tracing::info!(target: "writ::serve", "shutting down: finishing requests in flight");
    }
}

/// Singleton work, each job under its own lease so one instance runs it at a time (signing
/// checkpoints is `cover::signer`'s): expiring due approvals, ending
/// time-bound access that is due (see `writ_engine::expiry`), and
/// forgetting idempotency keys older than a day. Writing change IDs back to tickets runs beside
/// it, so a slow ticket system never delays the rest.
async fn background(state: State) {
    let mut tick = tokio::time::interval(StdDuration::from_secs(1));
    let mut ticks: u64 = 0;
    let mut writing: Option<tokio::task::JoinHandle<()>> = None;
    let mut reconciling: Option<tokio::task::JoinHandle<()>> = None;
    let mut notifying: Option<tokio::task::JoinHandle<()>> = None;
    loop {
        tick.tick().await;
        ticks += 1;
        // Notifications beside the rest, so a slow mail relay or webhook delays nothing else.
        if state.notifier.is_some() && notifying.as_ref().is_none_or(tokio::task::JoinHandle::is_finished) {
            let state = Arc::clone(&state);
            notifying = Some(tokio::task::spawn_blocking(move || notify::pass(&state)));
        }
        if writing.as_ref().is_none_or(tokio::task::JoinHandle::is_finished) {
            let state = Arc::clone(&state);
            writing = Some(tokio::task::spawn_blocking(move || write_back(&state)));
        }
        if state.reconcile_interval.is_some()
            && reconciling.as_ref().is_none_or(tokio::task::JoinHandle::is_finished)
        {
            let state = Arc::clone(&state);
            reconciling = Some(tokio::task::spawn_blocking(move || reconcile_due(&state)));
        }
        let state = Arc::clone(&state);
        let work = tokio::task::spawn_blocking(move || run_due_work(&state, ticks));
        if let Ok(Err(error)) = work.await {
            tracing::warn!(target: "writ::serve", code = error.code(), "background work failed: {error}");
        }
    }
}

/// Loads a policy directory into the engine: refused (and the policy in force kept) if invalid.
pub fn load_policy_dir(engine: &Engine, dir: &std::path::Path) -> Result<writ_engine::policy::Loaded, Error> {
    let bundle = writ_policy::PolicyBundle::from_dir(dir)
        .map_err(|e| Error::new("policy.invalid", format!("invalid policy: {e}")))?;
    Ok(engine
        .load_policy(writ_core::identity::Actor::System(writ_core::identity::SystemActor::Admin), bundle)?)
}

/// One write-back pass under the `writeback` lease (see `writeback`).
fn write_back(state: &AppState) {
    let writebacks = routes::hooks::writebacks(&state.hooks);
    if writebacks.is_empty() {
        return;
    }
    let engine = &state.engine;
    let now = engine.now();
    let until = Timestamp::from_millis(now.as_millis() + 60_000);
    let result = engine
        .store()
        .acquire_lease("writeback", &state.instance, now, until)
        .map_err(writ_engine::EngineError::from)
        .and_then(|held| if held { writeback::pass(engine, &writebacks).map(|_| ()) } else { Ok(()) });
    if let Err(error) = result {
        tracing::warn!(target: "writ::serve", code = error.code(), "write-back pass failed: {error}");
    }
}

/// Reconciles each target (and the registry) whose interval has passed since its last run by
/// any instance: the lease `reconcile:SCOPE` is held for one interval by whoever ran it. A slow
/// or unreachable target delays only the reconciliations after it, never other work.
fn reconcile_due(state: &AppState) {
    if state.diverged.read().is_ok_and(|d| !d.is_empty()) {
        return;
    }
    let engine = &state.engine;
    let store = engine.store();
    let scopes = match store.targets() {
        Ok(targets) => {
            targets.into_iter().map(|t| Some(t.name)).chain(std::iter::once(None)).collect::<Vec<_>>()
        }
        Err(error) => {
            tracing::warn!(target: "writ::serve", %error, "reconciliation: cannot list targets");
            return;
        }
    };
    for target in scopes {
        let own = target.as_ref().and_then(|t| state.reconcile_intervals.get(t.as_str()));
        let Some(interval) = own.copied().unwrap_or(state.reconcile_interval) else { continue };
        let scope = target.as_ref().map_or_else(
            || writ_core::reconcile::REGISTRY_SCOPE.to_owned(),
            writ_core::reconcile::target_scope,
        );
        let name = format!("reconcile:{scope}");
        let now = engine.now();
        let due = match store.lease(&name) {
            Ok(lease) => lease.is_none_or(|(_, until)| until <= now),
            Err(_) => false,
        };
        if !due || !store.acquire_lease(&name, &state.instance, now, now.plus(interval)).unwrap_or(false) {
            continue;
        }
        let actor = writ_core::identity::Actor::System(writ_core::identity::SystemActor::Scheduler);
        let result = match &target {
            Some(target) => engine.reconcile_target(actor, target),
            None => engine.reconcile_registry(actor),
        };
        match result {
            Ok(report) if !report.partial.is_empty() => tracing::warn!(
                target: "writ::serve",
                scope = %report.scope,
                partial = %report.partial.join("; "),
                "reconciliation partial: no missing access raised, nothing resolved"
            ),
            Ok(report) => tracing::info!(
                target: "writ::serve",
                scope = %report.scope,
                opened = report.opened.len(),
                resolved = report.resolved.len(),
                "reconciled"
            ),
            Err(error) => {
                tracing::warn!(target: "writ::serve", scope = %scope, code = error.code(), "reconciliation failed: {error}");
            }
        }
    }
}

fn run_due_work(state: &AppState, ticks: u64) -> writ_engine::Result<()> {
    let engine = &state.engine;
    engine.refresh_policy()?;
    let store = engine.store();
    let now = engine.now();
    let lease = |name: &str| {
        store.acquire_lease(name, &state.instance, now, Timestamp::from_millis(now.as_millis() + 5_000))
    };
    if lease("run-due")? {
        for id in engine.expire_due()? {
            tracing::info!(target: "writ::serve", change = %id, "approval expired");
        }
        let deadlines = engine.deadlines_due()?;
        for (id, to) in &deadlines.escalated {
            tracing::warn!(target: "writ::serve", change = %id, to = %to, "pending approval escalated");
        }
        for (id, finding) in &deadlines.overdue {
            tracing::error!(target: "writ::serve", change = %id, finding = %finding, "break-glass not approved after the fact by its deadline: alert raised");
        }
        for (id, reopened) in &deadlines.exceptions.expired {
            tracing::warn!(target: "writ::serve", exception = %id, reopened = reopened.len(), "exception expired; the findings it covered are open again");
        }
        // Warnings before access ends: once a minute is soon enough, and reads each change once.
        if ticks.is_multiple_of(60) {
            engine.warn_expiring()?;
            engine.warn_expiring_exceptions()?;
        }
        let report = engine.revoke_due(&state.expiry)?;
        for id in &report.verified {
            tracing::info!(target: "writ::serve", change = %id, "time-bound access ended and verified");
        }
        for id in &report.alerted {
            tracing::error!(target: "writ::serve", change = %id, "time-bound access could not be ended: alert raised");
        }
        // Last: a target still down while a change is resumed delays nothing else.
        let resumed = engine.resume_stranded()?;
        for (id, state) in &resumed.resumed {
            tracing::warn!(target: "writ::serve", change = %id, state = %state, "execution cut off earlier resumed");
        }
    }
    if ticks.is_multiple_of(60) {
        state.check_projections()?;
    }
    // Retention reads the whole log: once an hour (the first a minute after start), on one
    // instance.
    if ticks % 3600 == 60 && lease("retention")? {
        let report = engine.retention_run()?;
        for (id, rule, values, blobs) in &report.erased {
            tracing::info!(target: "writ::serve", change = %id, rule = %rule, values, blobs, "erased under retention");
        }
    }
    if ticks.is_multiple_of(600) && lease("purge-idempotency")? {
        store.purge_requests(Timestamp::from_millis(now.as_millis() - 86_400_000))?;
    }
    Ok(())
}
