//! The connector registry and the factory that turns a registered target into a live connector.
//!
//! `REGISTRY` is the one list of connectors: adding one is its crate plus one line here. The
//! CLI's `target add` options, `POST /api/v1/targets` and the factory all read it, so a target's
//! settings are checked alike whichever way it is registered (`prepare`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use writ_api::Error;
use writ_connector::registry::find;
use writ_connector::{Connector, ConnectorError, Registration, Settings};
use writ_core::identity::{ConnectorKind, Target};
use writ_engine::ConnectorFactory;

/// Every connector this build knows.
pub static REGISTRY: &[Registration] = &[
    writ_connector_git::REGISTRATION,
    writ_connector_postgres::REGISTRATION,
    writ_connector_ldap::REGISTRATION,
    writ_connector_openbao::REGISTRATION,
    writ_connector::MEMORY,
];

/// The connectors `writ target add` and the API may register.
pub fn public() -> impl Iterator<Item = &'static Registration> {
    REGISTRY.iter().filter(|r| r.public)
}

/// Checks a target registration as given (settings by key) against its connector: the
/// connector exists and may be registered, required settings are there, nothing unknown is
/// given, paths are absolute. Returns what the engine stores.
pub fn prepare(
    connector: &str,
    settings: BTreeMap<String, String>,
) -> Result<(ConnectorKind, Vec<(String, String)>), Error> {
    let kind = ConnectorKind::parse(connector)?;
    let registration = find(REGISTRY, kind.as_str()).filter(|r| r.public).ok_or_else(|| {
        let names: Vec<&str> = public().map(|r| r.name).collect();
        Error::new(
            "input.invalid_value",
            format!("there is no connector {connector:?}; the connectors are {}", names.join(", ")),
        )
        .with_field("connector")
    })?;
    let settings =
        registration.check(settings).map_err(|e| Error::new(e.code, e.message).with_field("settings"))?;
    Ok((kind, settings))
}

/// Builds connectors from target settings through `REGISTRY`, keeping open the ones that hold a
/// connection (by target name and settings, reopened once closed).
#[derive(Default)]
pub struct Connectors {
    open: Mutex<BTreeMap<OpenKey, Arc<dyn Connector>>>,
}

/// A kept connector's target name and settings.
type OpenKey = (String, Vec<(String, String)>);

impl ConnectorFactory for Connectors {
    fn connect(&self, target: &Target) -> Result<Arc<dyn Connector>, ConnectorError> {
        let name = target.name.as_str();
        let registration =
            find(REGISTRY, target.connector.as_str()).ok_or_else(|| ConnectorError::Invalid {
                target: name.to_owned(),
                detail: format!("this build has no connector {:?}", target.connector.as_str()),
            })?;
        let settings = Settings::new(name, target.settings.iter().cloned());
        if !registration.keep_open {
            return (registration.connect)(&settings);
        }
        let key = (name.to_owned(), target.settings.clone());
        let mut open = self.open.lock().map_err(|_| ConnectorError::Unavailable {
            target: name.to_owned(),
            detail: "connection cache poisoned".into(),
        })?;
        if let Some(connector) = open.get(&key).filter(|c| !c.is_closed()) {
            return Ok(Arc::clone(connector));
        }
        let connector = (registration.connect)(&settings)?;
        open.insert(key, Arc::clone(&connector));
        Ok(connector)
    }
}
