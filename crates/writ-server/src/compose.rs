//! Composition: a database, its key files and the connector registry wired into an engine. The
//! server and the CLI's local mode build their engine here and nowhere else.

use std::path::Path;
use std::sync::Arc;

use writ_api::Error;
use writ_engine::{Engine, SystemClock};
use writ_ledger::sensitive::HmacKey;
use writ_store::Store;

use crate::db::Database;
use crate::targets::Connectors;

/// Opens an existing database and wires the engine over it, with the HMAC key if its file
/// exists (without it the engine can read but records nothing).
pub fn open(db: Option<&Path>, hmac: Option<&Path>) -> Result<Engine, Error> {
    let database = Database::parse(db)?;
    let store = database.open(false)?;
    let key = crate::keys::load_hmac(&database.hmac_path(hmac)?)?;
    Ok(engine_over(store, key))
}

/// The engine over `store`, with the connectors of every registered target and the system clock.
pub fn engine_over(store: Arc<dyn Store>, hmac: Option<HmacKey>) -> Engine {
    let engine = Engine::new(store, Arc::new(Connectors::default()), Arc::new(SystemClock));
    match hmac {
        Some(key) => engine.with_hmac_key(Arc::new(key)),
        None => engine,
    }
}
