//! Which database a command works on: an embedded SQLite file (the default) or a PostgreSQL
//! server (`postgres://…`), and where that database's key files are.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use writ_store::Store;
use writ_store_postgres::PostgresStore;
use writ_store_sqlite::{OpenMode, SqliteStore};

use writ_api::Error;

/// A database named by `--db` / `WRIT_DB`.
#[derive(Clone, Debug)]
pub enum Database {
    /// `PATH` or `sqlite:PATH`.
    Sqlite(PathBuf),
    /// `postgres://…` or `postgresql://…` (libpq URL).
    Postgres(String),
}

impl Database {
    pub fn parse(db: Option<&Path>) -> Result<Database, Error> {
        let db = db.ok_or_else(|| {
            Error::new(
                "input.no_database",
                "no database: pass --db FILE or set WRIT_DB (or --db postgres://…)",
            )
        })?;
        let text = db.to_string_lossy();
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            return Ok(Database::Postgres(text.into_owned()));
        }
        match text.strip_prefix("sqlite:") {
            Some(path) => Ok(Database::Sqlite(PathBuf::from(path))),
            None => Ok(Database::Sqlite(db.to_owned())),
        }
    }

    /// The database as it may be shown: a URL loses its password.
    pub fn describe(&self) -> String {
        match self {
            Database::Sqlite(path) => path.display().to_string(),
            Database::Postgres(url) => redact_url(url),
        }
    }

    /// The ledger signing key file: explicit, or beside an SQLite file.
    pub fn key_path(&self, explicit: Option<&Path>) -> Result<PathBuf, Error> {
        self.beside(explicit, "--ledger-key / WRIT_LEDGER_KEY", crate::keys::key_path)
    }

    /// The HMAC key file: explicit, or beside an SQLite file.
    pub fn hmac_path(&self, explicit: Option<&Path>) -> Result<PathBuf, Error> {
        self.beside(explicit, "--hmac-key / WRIT_HMAC_KEY", crate::keys::hmac_path)
    }

    fn beside(
        &self,
        explicit: Option<&Path>,
        option: &str,
        default: fn(&Path, Option<&Path>) -> PathBuf,
    ) -> Result<PathBuf, Error> {
        match (self, explicit) {
            (_, Some(path)) => Ok(path.to_owned()),
            (Database::Sqlite(db), None) => Ok(default(db, None)),
            (Database::Postgres(_), None) => Err(Error::new(
                "input.key_required",
                format!("a PostgreSQL database has no directory for its key files: pass {option}"),
            )),
        }
    }

    /// Opens the store; `create` allows making a new SQLite file (PostgreSQL databases must
    /// exist; their schema is created or migrated either way).
    pub fn open(&self, create: bool) -> Result<Arc<dyn Store>, Error> {
        match self {
            Database::Sqlite(path) => {
                let mode = if create { OpenMode::Create } else { OpenMode::Existing };
                Ok(Arc::new(SqliteStore::open(path, mode)?))
            }
            Database::Postgres(url) => Ok(Arc::new(PostgresStore::connect(url)?)),
        }
    }

    /// Whether the database already holds anything (`writ init` refuses to initialise over it).
    pub fn exists(&self) -> Result<bool, Error> {
        match self {
            Database::Sqlite(path) => Ok(path.exists()),
            Database::Postgres(_) => {
                let store = self.open(false)?;
                Ok(store.meta(writ_engine::ledger::ORIGIN)?.is_some())
            }
        }
    }
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let (authority, tail) = rest.split_once('/').map_or((rest, None), |(a, t)| (a, Some(t)));
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => format!("{userinfo}@{host}"),
        },
        None => authority.to_owned(),
    };
    let query_free = tail.map(|t| t.split('?').next().unwrap_or_default().to_owned());
    match query_free {
        Some(tail) => format!("{scheme}://{authority}/{tail}"),
        None => format!("{scheme}://{authority}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_password_and_query() {
        assert_eq!(redact_url("postgres://writ:hunter2@db:5432/writ"), "postgres://writ:***@db:5432/writ");
        assert_eq!(redact_url("postgres://writ@db/writ?password=hunter2"), "postgres://writ@db/writ");
        assert_eq!(redact_url("postgresql://db"), "postgresql://db");
    }
}
