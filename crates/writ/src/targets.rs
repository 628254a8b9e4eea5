//! The composition root for connectors: turns a registered target into a live connector.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use writ_connector::{Connector, ConnectorError, MemoryConnector};
use writ_connector_git::GitConnector;
use writ_connector_postgres::PostgresConnector;
use writ_core::identity::{ConnectorKind, Target};
use writ_core::name::EntitlementName;
use writ_engine::ConnectorFactory;

/// Builds git and PostgreSQL connectors from target settings, and in-process memory targets for
/// the benchmark.
#[derive(Default)]
pub struct Connectors {
    memory: Mutex<BTreeMap<String, Arc<MemoryConnector>>>,
    /// Open PostgreSQL targets, by target name and settings (reconnected when closed).
    postgres: Mutex<OpenTargets>,
}

/// Open PostgreSQL connectors by (target name, settings).
type OpenTargets = BTreeMap<(String, Vec<(String, String)>), Arc<PostgresConnector>>;

impl Connectors {
    fn postgres(&self, target: &Target) -> Result<Arc<dyn Connector>, ConnectorError> {
        let name = target.name.as_str();
        let key = (name.to_owned(), target.settings.clone());
        let mut open = self.postgres.lock().map_err(|_| ConnectorError::Unavailable {
            target: name.to_owned(),
            detail: "connection cache poisoned".into(),
        })?;
        if let Some(connector) = open.get(&key).filter(|c| !c.is_closed()) {
            return Ok(connector.clone());
        }
        let dsn = target.setting("dsn").ok_or_else(|| ConnectorError::Invalid {
            target: name.to_owned(),
            detail: "postgres target without a dsn setting".into(),
        })?;
        let password = target
            .setting("password_file")
            .map(|file| {
                std::fs::read_to_string(file).map_err(|e| ConnectorError::Invalid {
                    target: name.to_owned(),
                    detail: format!("cannot read the password file {file}: {e}"),
                })
            })
            .transpose()?;
        let connector =
            Arc::new(PostgresConnector::connect(name, dsn, password.as_deref(), target.setting("roles"))?);
        open.insert(key, connector.clone());
        Ok(connector)
    }
}

impl ConnectorFactory for Connectors {
    fn connect(&self, target: &Target) -> Result<Arc<dyn Connector>, ConnectorError> {
        let name = target.name.as_str();
        match target.connector {
            ConnectorKind::Git => {
                let repo = target.setting("repo").ok_or_else(|| ConnectorError::Invalid {
                    target: name.to_owned(),
                    detail: "git target without a repo setting".into(),
                })?;
                let connector = GitConnector::open(
                    name,
                    Path::new(repo),
                    target.setting("branch"),
                    target.setting("file"),
                )?;
                Ok(Arc::new(connector))
            }
            ConnectorKind::Postgres => self.postgres(target),
            ConnectorKind::Memory => {
                let mut memory = self.memory.lock().map_err(|_| ConnectorError::Unavailable {
                    target: name.to_owned(),
                    detail: "memory target lock poisoned".into(),
                })?;
                let entitlements: Vec<EntitlementName> = target
                    .setting("entitlements")
                    .unwrap_or_default()
                    .split(',')
                    .filter_map(|e| EntitlementName::parse(e.trim()).ok())
                    .collect();
                let connector = memory
                    .entry(name.to_owned())
                    .or_insert_with(|| Arc::new(MemoryConnector::new(name, &entitlements)))
                    .clone();
                Ok(connector)
            }
        }
    }
}
