//! `writ witness serve`: a C2SP `tlog-witness` (`POST /add-checkpoint`). It runs apart from
//! Writ (its own key, its own state file, in production its own host), trusts only the log
//! keys it is given, and cosigns a checkpoint only if it extends the one it last cosigned for
//! that log, proven by a consistency proof. Its state (origin → size and root) is written to
//! disk, atomically with the check, before it answers: a restored database, a deleted tail or
//! a forked history can then never again get its cosignature, and `writ ledger verify` asks it
//! what it last saw.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};
use writ_api::Error;
use writ_ledger::checkpoint::NoteVerifier;
use writ_ledger::cosignature::Cosigner;
use writ_ledger::witness::{Head, Refused, decide, parse};

/// The largest request body accepted (63 proof lines and a checkpoint with a few signatures).
const MAX_BODY: usize = 16 * 1024;

/// What `writ witness serve` is told.
pub struct WitnessOptions {
    pub listen: String,
    pub key: PathBuf,
    pub state: PathBuf,
    /// The logs it witnesses: each a checkpoint verifier key (`origin+id+key`).
    pub logs: Vec<String>,
}

/// Creates a witness key named `name` in a new file (mode 0600); returns its verifier key.
pub fn init(name: &str, key: &Path) -> Result<String, Error> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| Error::new("internal.random", e.to_string()))?;
    let cosigner = Cosigner::from_seed(name, seed).map_err(|e| Error::new("input.bad_key", e.to_string()))?;
    crate::keys::write_secret(key, &cosigner.to_private_text())?;
    Ok(cosigner.verifier().to_text())
}

#[derive(Serialize, Deserialize, Default)]
struct StateFile {
    logs: BTreeMap<String, StoredHead>,
}

#[derive(Serialize, Deserialize)]
struct StoredHead {
    size: u64,
    root: String,
}

struct Witness {
    cosigner: Cosigner,
    logs: Vec<NoteVerifier>,
    path: PathBuf,
    heads: tokio::sync::Mutex<BTreeMap<String, Head>>,
}

fn state_error(path: &Path, why: impl std::fmt::Display) -> Error {
    Error::new("witness.state", format!("the witness state file {}: {why}", path.display()))
}

fn load_state(path: &Path) -> Result<BTreeMap<String, Head>, Error> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(state_error(path, e)),
    };
    let file: StateFile = serde_json::from_str(&text).map_err(|e| state_error(path, e))?;
    file.logs
        .into_iter()
        .map(|(origin, head)| {
            let root = B64
                .decode(&head.root)
                .ok()
                .and_then(|r| <[u8; 32]>::try_from(r.as_slice()).ok())
                .ok_or_else(|| state_error(path, format!("bad root for {origin}")))?;
            Ok((origin, Head { size: head.size, root }))
        })
        .collect()
}

/// Writes the state to a temporary file, syncs it and renames it over the old one.
fn save_state(path: &Path, heads: &BTreeMap<String, Head>) -> Result<(), Error> {
    let file = StateFile {
        logs: heads
            .iter()
            .map(|(origin, head)| {
                (origin.clone(), StoredHead { size: head.size, root: B64.encode(head.root) })
            })
            .collect(),
    };
    let bytes = serde_json::to_vec_pretty(&file).map_err(|e| state_error(path, e))?;
    let temporary = path.with_extension("tmp");
    let mut out = std::fs::File::create(&temporary).map_err(|e| state_error(&temporary, e))?;
    out.write_all(&bytes).and_then(|()| out.sync_all()).map_err(|e| state_error(&temporary, e))?;
    std::fs::rename(&temporary, path).map_err(|e| state_error(path, e))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| state_error(path, e))?;
    }
    Ok(())
}

async fn add_checkpoint(
    axum::extract::State(witness): axum::extract::State<Arc<Witness>>,
    body: Bytes,
) -> Response {
    let text = |status: StatusCode, body: String| (status, body).into_response();
    if body.len() > MAX_BODY {
        return text(StatusCode::PAYLOAD_TOO_LARGE, format!("the body exceeds {MAX_BODY} bytes\n"));
    }
    let Ok(body) = std::str::from_utf8(&body) else {
        return text(StatusCode::BAD_REQUEST, "the body is not UTF-8\n".into());
    };
    let request = match parse(body) {
        Ok(request) => request,
        Err(refused) => return refusal(&refused),
    };
    // The check and the new head's persistence happen under one lock: two requests can never
    // both pass against the same old head.
    let mut heads = witness.heads.lock().await;
    let origin = request.note.split('\n').next().unwrap_or_default().to_owned();
    let checkpoint = match decide(&request, &witness.logs, heads.get(&origin)) {
        Ok(checkpoint) => checkpoint,
        Err(refused) => {
            tracing::warn!(target: "writ::witness", origin = %origin, status = refused.status(), "refused: {refused}");
            return refusal(&refused);
        }
    };
    let previous = heads.insert(origin.clone(), Head { size: checkpoint.size, root: checkpoint.root });
    if let Err(error) = save_state(&witness.path, &heads) {
        // Not persisted, not cosigned: put the old head back.
        match previous {
            Some(head) => heads.insert(origin, head),
            None => heads.remove(&origin),
        };
        tracing::error!(target: "writ::witness", "{}", error.message);
        return text(StatusCode::SERVICE_UNAVAILABLE, "the witness cannot persist its state\n".into());
    }
    drop(heads);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    tracing::info!(target: "writ::witness", origin = %checkpoint.origin, size = checkpoint.size, "cosigned");
    text(StatusCode::OK, witness.cosigner.cosign(&checkpoint, now))
}

fn refusal(refused: &Refused) -> Response {
    let status = StatusCode::from_u16(refused.status()).unwrap_or(StatusCode::BAD_REQUEST);
    match refused {
        Refused::Conflict(size) => {
            (status, [(header::CONTENT_TYPE, "text/x.tlog.size")], format!("{size}\n")).into_response()
        }
        other => (status, format!("{other}\n")).into_response(),
    }
}

/// The witness's HTTP interface.
fn router(witness: Arc<Witness>) -> Router {
    Router::new()
        .route("/add-checkpoint", axum::routing::post(add_checkpoint))
        .route("/healthz", axum::routing::get(|| async { "ok\n" }))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY * 2))
        .with_state(witness)
}

/// Serves the witness until SIGINT or SIGTERM; prints `listening on http://ADDRESS` first.
pub fn serve(options: WitnessOptions) -> Result<(), Error> {
    let cosigner = Cosigner::parse(&crate::keys::read_secret(&options.key)?)
        .map_err(|e| Error::new("ledger.key_file", format!("{}: {e}", options.key.display())))?;
    if options.logs.is_empty() {
        return Err(Error::new("input.config", "a witness needs at least one log key (--log-key)"));
    }
    let logs = options
        .logs
        .iter()
        .map(|k| {
            NoteVerifier::parse(k).map_err(|e| Error::new("input.bad_key", format!("--log-key {k}: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let heads = load_state(&options.state)?;
    let witness = Arc::new(Witness {
        cosigner,
        logs,
        path: options.state.clone(),
        heads: tokio::sync::Mutex::new(heads),
    });
    let runtime = crate::runtime(4)?;
    runtime.block_on(async move {
        let signals = crate::Signals::install()?;
        let listener = crate::bind(&options.listen).await?;
        let address = crate::local_address(&listener)?;
        println!("listening on http://{address}");
        tracing::info!(target: "writ::witness", %address, key = %witness.cosigner.verifier().to_text(), "witnessing");
        axum::serve(listener, router(witness))
            .with_graceful_shutdown(signals.received())
            .await
            .map_err(|e| Error::new("internal", format!("witness server error: {e}")))
    })
}
