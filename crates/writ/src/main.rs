//! `writ`: the command-line entry point. Parses arguments, opens the embedded store, runs one
//! command, and turns every error into a stable code, a message on stderr and an exit code.

mod audit;
mod cli;
mod client;
mod commands;
mod erase_cmd;
mod exception_cmd;
mod http;
mod intake_cmd;
mod ledger;
mod policy_cmd;
mod render;

use std::process::ExitCode;

use clap::Parser;

/// An error as the user sees it: a stable code and a message; its exit status comes from the
/// one table of error kinds (`writ_api::error::CODES`), the same table the server answers from.
pub type CliError = writ_api::Error;

pub use writ_api::error::exit;

/// An unexpected failure of the demo or a benchmark, reported with its whole cause.
pub fn internal(error: anyhow::Error) -> CliError {
    CliError::internal(format!("{error:#}"))
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
            ExitCode::from(error.exit())
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
