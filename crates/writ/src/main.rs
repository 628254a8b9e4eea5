//! `writ`: the command-line entry point. Parses arguments, opens the embedded store, runs one
//! command, and turns every error into a stable code, a message on stderr and an exit code.

mod audit;
mod bench;
mod bench_api;
mod bench_connector;
mod bench_ledger;
mod bench_policy;
mod cli;
mod client;
mod commands;
mod db;
mod demo;
mod demo_targets;
mod exception_cmd;
mod intake_cmd;
mod keys;
mod ledger;
mod policy_cmd;
mod render;
mod server;
mod targets;

use std::process::ExitCode;

use clap::Parser;
use writ_engine::EngineError;

/// An error as the user sees it: a stable code, a message, and the exit status.
#[derive(Debug)]
pub struct CliError {
    /// Stable code; owned when it comes from elsewhere (a server's reply, a verifier report).
    pub code: std::borrow::Cow<'static, str>,
    pub message: String,
    pub exit: u8,
}

impl CliError {
    pub fn new(code: &'static str, message: impl Into<String>, exit: u8) -> CliError {
        CliError { code: std::borrow::Cow::Borrowed(code), message: message.into(), exit }
    }

    /// An error whose code was received (a server's, a report's) rather than written here.
    pub fn received(code: &str, message: impl Into<String>, exit: u8) -> CliError {
        CliError { code: std::borrow::Cow::Owned(code.to_owned()), message: message.into(), exit }
    }
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{}] {}", self.code, self.message)
    }
}

impl std::error::Error for CliError {}

/// Exit status for each kind of error (documented in `writ --help`).
pub mod exit {
    pub const OTHER: u8 = 1;
    pub const INPUT: u8 = 2;
    pub const REFUSED: u8 = 3;
    pub const NOT_FOUND: u8 = 4;
    pub const STORE: u8 = 5;
    pub const TARGET: u8 = 6;
    pub const CHANGE_FAILED: u8 = 7;
    pub const LEDGER: u8 = 8;
}

impl From<writ_core::Refusal> for CliError {
    fn from(refusal: writ_core::Refusal) -> CliError {
        let exit = if refusal.code().starts_with("input.") { exit::INPUT } else { exit::REFUSED };
        CliError::new(refusal.code(), refusal.to_string(), exit)
    }
}

impl From<EngineError> for CliError {
    fn from(error: EngineError) -> CliError {
        let exit = match &error {
            EngineError::Refused(refusal) => return CliError::from(refusal.clone()),
            EngineError::NotFound { .. } => exit::NOT_FOUND,
            EngineError::Connector(writ_connector::ConnectorError::UnknownEntitlement { .. }) => {
                exit::NOT_FOUND
            }
            EngineError::Store(_) | EngineError::NoHmacKey => exit::STORE,
            EngineError::Connector(_) => exit::TARGET,
            EngineError::Ledger(_) | EngineError::Random(_) => exit::OTHER,
            EngineError::Denied(_) | EngineError::Intake { .. } => exit::REFUSED,
            EngineError::Policy(_) => exit::INPUT,
            EngineError::Scim(error) if error.status == 404 => exit::NOT_FOUND,
            EngineError::Scim(_) => exit::INPUT,
        };
        CliError::new(error.code(), error.to_string(), exit)
    }
}

impl From<writ_store::StoreError> for CliError {
    fn from(error: writ_store::StoreError) -> CliError {
        CliError::from(EngineError::from(error))
    }
}

impl From<anyhow::Error> for CliError {
    fn from(error: anyhow::Error) -> CliError {
        CliError::new("internal", format!("{error:#}"), exit::OTHER)
    }
}

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    init_logging(cli.verbose);
    let json = cli.json;
    match commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            if json {
                let body = serde_json::json!({ "error": { "code": error.code, "message": error.message } });
                eprintln!("{body}");
            } else {
                eprintln!("error[{}]: {}", error.code, error.message);
            }
            ExitCode::from(error.exit)
        }
    }
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}
