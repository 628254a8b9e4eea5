//! The composition root for connectors: turns a registered target into a live connector.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use writ_connector::{Connector, ConnectorError, MemoryConnector};
use writ_connector_git::GitConnector;
use writ_connector_ldap::{LdapConnector, LdapSettings};
use writ_connector_openbao::{OpenBaoConnector, OpenBaoSettings};
use writ_connector_postgres::{PostgresConnector, PostgresSettings};
use writ_core::identity::{ConnectorKind, Target};
use writ_core::name::EntitlementName;
use writ_engine::ConnectorFactory;

/// Builds git, PostgreSQL and LDAP connectors from target settings, and in-process memory
/// targets for the benchmark.
#[derive(Default)]
pub struct Connectors {
    memory: Mutex<BTreeMap<String, Arc<MemoryConnector>>>,
    postgres: Open<PostgresConnector>,
    ldap: Open<LdapConnector>,
}

/// Open connections by (target name, settings), reconnected when closed.
type Open<T> = Mutex<BTreeMap<(String, Vec<(String, String)>), Arc<T>>>;

/// The open connector for `target`, or a new one from `connect` if there is none or it closed.
fn cached<T: Connector + 'static>(
    open: &Open<T>,
    target: &Target,
    closed: impl Fn(&T) -> bool,
    connect: impl FnOnce() -> Result<T, ConnectorError>,
) -> Result<Arc<dyn Connector>, ConnectorError> {
    let key = (target.name.to_string(), target.settings.clone());
    let mut open = open.lock().map_err(|_| ConnectorError::Unavailable {
        target: target.name.to_string(),
        detail: "connection cache poisoned".into(),
    })?;
    if let Some(connector) = open.get(&key).filter(|c| !closed(c)) {
        return Ok(connector.clone());
    }
    let connector = Arc::new(connect()?);
    open.insert(key, connector.clone());
    Ok(connector)
}

fn setting<'a>(target: &'a Target, key: &str) -> Result<&'a str, ConnectorError> {
    target.setting(key).ok_or_else(|| ConnectorError::Invalid {
        target: target.name.to_string(),
        detail: format!("{} target without a {key} setting", target.connector.as_str()),
    })
}

/// The password named by the target's `password_file` setting, read now (never stored).
fn password(target: &Target) -> Result<Option<String>, ConnectorError> {
    target
        .setting("password_file")
        .map(|file| {
            std::fs::read_to_string(file).map_err(|e| ConnectorError::Invalid {
                target: target.name.to_string(),
                detail: format!("cannot read the password file {file}: {e}"),
            })
        })
        .transpose()
}

/// The target's `timeout` setting (a duration such as `2s`), or the default.
fn timeout(target: &Target) -> Result<std::time::Duration, ConnectorError> {
    let Some(text) = target.setting("timeout") else { return Ok(writ_connector::DEFAULT_TIMEOUT) };
    parse_timeout(text).map_err(|detail| ConnectorError::Invalid { target: target.name.to_string(), detail })
}

/// A target timeout: a duration from 1s to 5m (`2s`, `1m`).
pub fn parse_timeout(text: &str) -> Result<std::time::Duration, String> {
    let duration = writ_core::time::Duration::parse(text).map_err(|e| e.to_string())?;
    let millis = u64::try_from(duration.as_millis()).unwrap_or(0);
    if !(1_000..=300_000).contains(&millis) {
        return Err(format!("timeout must be between 1s and 5m, not {text:?}"));
    }
    Ok(std::time::Duration::from_millis(millis))
}

impl ConnectorFactory for Connectors {
    fn connect(&self, target: &Target) -> Result<Arc<dyn Connector>, ConnectorError> {
        let name = target.name.as_str();
        match target.connector {
            ConnectorKind::Git => {
                let connector = GitConnector::open(
                    name,
                    Path::new(setting(target, "repo")?),
                    target.setting("branch"),
                    target.setting("file"),
                )?;
                Ok(Arc::new(connector))
            }
            ConnectorKind::Postgres => cached(&self.postgres, target, PostgresConnector::is_closed, || {
                let settings = PostgresSettings {
                    dsn: setting(target, "dsn")?.to_owned(),
                    roles: target.setting("roles").map(str::to_owned),
                    schemas: target.setting("schemas").map(str::to_owned),
                    timeout: timeout(target)?,
                };
                PostgresConnector::connect(name, &settings, password(target)?.as_deref())
            }),
            ConnectorKind::Ldap => cached(&self.ldap, target, LdapConnector::is_closed, || {
                let settings = LdapSettings {
                    url: setting(target, "url")?.to_owned(),
                    bind_dn: target.setting("bind_dn").map(str::to_owned),
                    groups: setting(target, "groups")?.to_owned(),
                    users: setting(target, "users")?.to_owned(),
                    empty_member: target.setting("empty_member").unwrap_or("cn=empty-membership").to_owned(),
                    timeout: timeout(target)?,
                };
                LdapConnector::connect(name, settings, password(target)?.as_deref())
            }),
            ConnectorKind::OpenBao => {
                let settings = OpenBaoSettings {
                    addr: setting(target, "addr")?.to_owned(),
                    database_mount: target.setting("database_mount").unwrap_or("database").to_owned(),
                    kv_mount: target.setting("kv_mount").unwrap_or("secret").to_owned(),
                    kv_prefix: target.setting("kv_prefix").unwrap_or("writ").to_owned(),
                    policies: target
                        .setting("policies")
                        .unwrap_or_default()
                        .split(',')
                        .map(str::trim)
                        .filter(|p| !p.is_empty())
                        .map(str::to_owned)
                        .collect(),
                    pki_mount: target.setting("pki_mount").unwrap_or("pki").to_owned(),
                    pki_domain: target.setting("pki_domain").map(str::to_owned),
                    timeout: timeout(target)?,
                };
                let file = setting(target, "token_file")?;
                let token = std::fs::read_to_string(file).map_err(|e| ConnectorError::Invalid {
                    target: name.to_owned(),
                    detail: format!("cannot read the token file {file}: {e}"),
                })?;
                Ok(Arc::new(OpenBaoConnector::connect(name, settings, &token)?))
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
