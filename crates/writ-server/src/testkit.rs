//! The real server in-process, for tests: `spawn_app` composes it exactly as `writ serve` does
//! (the same settings, database, keys and engine) and serves it on a free loopback port from a
//! thread of its own, so HTTP tests need not spawn the binary. Dropping the `TestApp` shuts it
//! down gracefully and waits for it.

use std::path::Path;
use std::sync::Arc;

use writ_api::Error;

use crate::ServeOptions;

/// A running server.
pub struct TestApp {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<(), Error>>>,
}

/// Starts the server over the initialised database `db` (its key files beside it).
pub fn spawn_app(db: &Path, mut options: ServeOptions) -> Result<TestApp, Error> {
    options.listen = Some("127.0.0.1:0".to_owned());
    // Tests write one request after another: a short interval keeps each write's wait for its
    // checkpoint short (production signs about once a second under load).
    options.checkpoint_interval.get_or_insert_with(|| "20ms".to_owned());
    // Reconciliation writes on its own schedule; a test asks for it when it wants it.
    options.reconcile_interval.get_or_insert_with(|| "off".to_owned());
    let app = crate::compose(Some(db), None, None, options)?;
    let runtime = crate::runtime(app.workers)?;
    let listener = runtime.block_on(crate::bind(&app.listen))?;
    let address = crate::local_address(&listener)?;
    let (shutdown, stop) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("writ-test-app".into())
        .spawn(move || {
            let state = Arc::clone(&app.state);
            let result = runtime.block_on(crate::serve(state, listener, async {
                let _ = stop.await;
            }));
            drop(runtime);
            drop(app);
            result
        })
        .map_err(|e| Error::internal(format!("cannot start the server thread: {e}")))?;
    Ok(TestApp { base: format!("http://{address}"), shutdown: Some(shutdown), thread: Some(thread) })
}

impl TestApp {
    /// Shuts the server down and reports how its serving ended.
    pub fn stop(mut self) -> Result<(), Error> {
        self.finish()
    }

    fn finish(&mut self) -> Result<(), Error> {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        match self.thread.take() {
            Some(thread) => thread.join().map_err(|_| Error::internal("the server thread panicked"))?,
            None => Ok(()),
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}
