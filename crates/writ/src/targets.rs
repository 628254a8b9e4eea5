//! The composition root for connectors: turns a registered target into a live connector.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use writ_connector::{Connector, ConnectorError, MemoryConnector};
use writ_connector_git::GitConnector;
use writ_core::identity::{ConnectorKind, Target};
use writ_core::name::EntitlementName;
use writ_engine::ConnectorFactory;

/// Builds git connectors from target settings, and in-process memory targets for the benchmark.
#[derive(Default)]
pub struct Connectors {
    memory: Mutex<BTreeMap<String, Arc<MemoryConnector>>>,
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
