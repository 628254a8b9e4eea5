//! How a connector crate registers itself: its name, its settings (what each means, which are
//! required, which name a file holding a secret) and how to connect. The composition lists the
//! registrations once; the CLI's `target add` flags, the API's `POST /api/v1/targets` and the
//! connector factory all go through them, so every surface checks a target's settings alike.
//!
//! Invariants:
//! - a target's stored settings are exactly what `Registration::check` returned: known keys,
//!   every required one present, paths absolute, durations in range;
//! - settings are never secret: a secret is referenced by the path of a file read at connection
//!   time (`SettingKind::SecretFile`), never stored;
//! - a refusal has a stable code (`input.missing_option`, `input.invalid_value`,
//!   `input.invalid_path`) and names the setting by its key and its command-line flag.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::{Connector, ConnectorError};

/// What kind of value a setting holds; decides how it is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SettingKind {
    /// Free text (a URL, a DN, a comma-separated list).
    Text,
    /// An absolute path on the machine Writ runs on.
    Path,
    /// An absolute path to a file holding a secret (mode 0600), read at each connection.
    SecretFile,
    /// A duration from 1s to 5m bounding each exchange with the target (`timeout`).
    Timeout,
}

/// One setting of a connector.
#[derive(Clone, Copy, Debug)]
pub struct Setting {
    /// The key it is stored and sent under (`repo`, `dsn`, `token_file`).
    pub key: &'static str,
    /// The `writ target add` option that sets it, without dashes (`repo`, `url`).
    pub flag: &'static str,
    /// One sentence for `--help` and the docs.
    pub help: &'static str,
    pub required: bool,
    pub kind: SettingKind,
}

impl Setting {
    pub const fn text(key: &'static str, flag: &'static str, help: &'static str) -> Setting {
        Setting { key, flag, help, required: false, kind: SettingKind::Text }
    }

    pub const fn required(mut self) -> Setting {
        self.required = true;
        self
    }

    pub const fn kind(mut self, kind: SettingKind) -> Setting {
        self.kind = kind;
        self
    }
}

/// The `timeout` setting every networked connector takes.
pub const TIMEOUT: Setting = Setting::text(
    "timeout",
    "timeout",
    "how long one exchange with the target may take before it counts as unavailable, 1s to 5m (default: 10s)",
)
.kind(SettingKind::Timeout);

/// The `password_file` setting of connectors that log in with a password.
pub const PASSWORD_FILE: Setting = Setting::text(
    "password_file",
    "password-file",
    "a file holding the password (read at each connection, never stored)",
)
.kind(SettingKind::SecretFile);

/// A target's checked settings, as the connector reads them when it connects.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    target: String,
    values: BTreeMap<String, String>,
}

impl Settings {
    pub fn new(target: &str, values: impl IntoIterator<Item = (String, String)>) -> Settings {
        Settings { target: target.to_owned(), values: values.into_iter().collect() }
    }

    pub fn target(&self) -> &str {
        &self.target
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    /// A setting the target cannot work without.
    pub fn required(&self, key: &str) -> Result<&str, ConnectorError> {
        self.get(key).ok_or_else(|| self.invalid(format!("no {key} setting")))
    }

    /// The contents of the file a `SecretFile` setting names, read now (never stored).
    pub fn secret(&self, key: &str) -> Result<Option<String>, ConnectorError> {
        self.get(key)
            .map(|file| {
                std::fs::read_to_string(file)
                    .map_err(|e| self.invalid(format!("cannot read the {key} {file}: {e}")))
            })
            .transpose()
    }

    /// The target's `timeout`, or `crate::DEFAULT_TIMEOUT`.
    pub fn timeout(&self) -> Result<Duration, ConnectorError> {
        match self.get("timeout") {
            None => Ok(crate::DEFAULT_TIMEOUT),
            Some(text) => parse_timeout(text).map_err(|detail| self.invalid(detail)),
        }
    }

    /// A comma-separated list, trimmed, empty items dropped.
    pub fn list(&self, key: &str) -> Vec<String> {
        self.get(key)
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(str::to_owned)
            .collect()
    }

    pub fn invalid(&self, detail: String) -> ConnectorError {
        ConnectorError::Invalid { target: self.target.clone(), detail }
    }
}

/// A target timeout: a duration from 1s to 5m (`2s`, `1m`).
pub fn parse_timeout(text: &str) -> Result<Duration, String> {
    let duration = writ_core::time::Duration::parse(text).map_err(|e| e.to_string())?;
    let millis = u64::try_from(duration.as_millis()).unwrap_or(0);
    if !(1_000..=300_000).contains(&millis) {
        return Err(format!("timeout must be between 1s and 5m, not {text:?}"));
    }
    Ok(Duration::from_millis(millis))
}

/// Why settings were refused: a stable code and a message naming the setting.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{message}")]
pub struct SettingsError {
    pub code: &'static str,
    pub message: String,
}

/// Opens a connector for a target from its checked settings.
pub type Connect = fn(&Settings) -> Result<Arc<dyn Connector>, ConnectorError>;

/// What a connector crate registers: one value, listed once by the composition.
#[derive(Clone, Copy)]
pub struct Registration {
    /// The name targets are registered with (`--connector NAME`).
    pub name: &'static str,
    /// One line on what its targets are and what their entitlements are.
    pub summary: &'static str,
    pub settings: &'static [Setting],
    /// Whether an open connector is kept for the next call (until `Connector::is_closed`).
    pub keep_open: bool,
    /// Whether `writ target add` and the API may register it (the benchmark's in-process
    /// target may not).
    pub public: bool,
    pub connect: Connect,
}

impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Registration({})", self.name)
    }
}

impl Registration {
    /// Checks settings given by key and returns them as they are stored, in key order.
    pub fn check(&self, given: BTreeMap<String, String>) -> Result<Vec<(String, String)>, SettingsError> {
        let refuse = |code: &'static str, message: String| SettingsError { code, message };
        for key in given.keys() {
            if !self.settings.iter().any(|s| s.key == key) {
                let known: Vec<String> =
                    self.settings.iter().map(|s| format!("{} (--{})", s.key, s.flag)).collect();
                return Err(refuse(
                    "input.invalid_value",
                    format!(
                        "{key:?} is not a setting of {} targets; they take {}",
                        self.name,
                        known.join(", ")
                    ),
                ));
            }
        }
        for setting in self.settings {
            let Some(value) = given.get(setting.key) else {
                if setting.required {
                    return Err(refuse(
                        "input.missing_option",
                        format!(
                            "--connector {} needs --{} (setting {})",
                            self.name, setting.flag, setting.key
                        ),
                    ));
                }
                continue;
            };
            let named = || format!("--{} (setting {})", setting.flag, setting.key);
            if value.is_empty() || value.chars().count() > 4096 || value.chars().any(char::is_control) {
                return Err(refuse(
                    "input.invalid_value",
                    format!("{}: expected 1 to 4096 characters with no control characters", named()),
                ));
            }
            match setting.kind {
                SettingKind::Text => {}
                SettingKind::Path | SettingKind::SecretFile => {
                    if !std::path::Path::new(value).is_absolute() {
                        return Err(refuse(
                            "input.invalid_path",
                            format!("{}: {value:?} is not an absolute path", named()),
                        ));
                    }
                }
                SettingKind::Timeout => {
                    parse_timeout(value)
                        .map_err(|e| refuse("input.invalid_value", format!("{}: {e}", named())))?;
                }
            }
        }
        Ok(given.into_iter().collect())
    }

    /// The setting `flag` sets, if this connector takes it.
    pub fn by_flag(&self, flag: &str) -> Option<&Setting> {
        self.settings.iter().find(|s| s.flag == flag)
    }
}

/// The registration named `name` among `registry`.
pub fn find<'a>(registry: &'a [Registration], name: &str) -> Option<&'a Registration> {
    registry.iter().find(|r| r.name == name)
}
