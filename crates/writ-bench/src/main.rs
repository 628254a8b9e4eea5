//! `writ-bench`: the demo and the benchmarks, kept out of the product's command line.
//!
//! - `writ-bench demo` walks real changes through the whole chain on a temporary database and
//!   git repository (with `--targets all`, also on real PostgreSQL, slapd and OpenBao servers);
//! - `writ-bench bench` measures the engine, the ledger, policy and the PostgreSQL connector;
//! - `writ-bench bench-api` measures the HTTP API against `writ serve` processes;
//! - `writ-bench reconcile` measures one reconciliation of a synthetic target on a real store.
//!
//! Each prints a table with its baseline measured in the same run.

mod bench;
mod bench_api;
mod bench_connector;
mod bench_ledger;
mod bench_policy;
mod bench_reconcile;
mod bench_web;
mod demo;
mod demo_targets;
mod story;
mod table;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "writ-bench", version, about = "Writ's demo and benchmarks")]
struct Cli {
    /// Print machine-readable JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Walk real changes through the whole chain on a temporary database and git repository.
    Demo(DemoArgs),
    /// Measure complete change lifecycles per second.
    Bench(BenchArgs),
    /// Measure the HTTP API: requests per second and p50/p99 latency of request, approve and
    /// show at a fixed rate, on SQLite and (with --postgres) PostgreSQL, one and three instances.
    BenchApi(BenchApiArgs),
    /// Measure one reconciliation: a synthetic target holding --grants grants over --identities
    /// identities against a real SQLite store, beside reading the same rows; seconds and peak
    /// memory of each.
    Reconcile(ReconcileArgs),
    /// Measure the web interface on the demo database: each page's first byte (p50, p99) over
    /// sequential requests, beside GET /healthz and the API's change view in the same run.
    BenchWeb(BenchWebArgs),
}

#[derive(Args, Debug)]
struct BenchWebArgs {
    /// Requests per page (after a tenth as many to warm up).
    #[arg(long, default_value_t = 200)]
    requests: usize,
}

#[derive(Args, Debug)]
struct ReconcileArgs {
    #[arg(long, default_value_t = 100_000)]
    identities: usize,
    #[arg(long, default_value_t = 1_000_000)]
    grants: usize,
}

#[derive(Args, Debug)]
struct DemoArgs {
    /// Keep the database and repository in this directory instead of a temporary one.
    #[arg(long)]
    keep: Option<PathBuf>,
    /// `git` (default): the access repository only. `all`: also real PostgreSQL, slapd and
    /// OpenBao servers, which `bash scripts/demo.sh --targets all` starts on temporary
    /// directories and names in WRIT_DEMO_* variables.
    #[arg(long, default_value = "git", value_parser = ["git", "all"])]
    targets: String,
}

#[derive(Args, Debug)]
struct BenchArgs {
    /// Lifecycles to run with the in-memory target (the git figure uses a tenth).
    #[arg(long, default_value_t = 4000)]
    lifecycles: usize,
    /// Concurrent changes for the group-commit figure.
    #[arg(long, default_value_t = 16)]
    threads: usize,
    /// Events for the ledger append and verification figures.
    #[arg(long, default_value_t = 200_000)]
    ledger_events: usize,
    /// A PostgreSQL server (libpq key=value string without dbname) for the PostgreSQL connector
    /// figures (a throwaway database and roles are made there).
    #[arg(long, env = "WRIT_BENCH_POSTGRES")]
    postgres: Option<String>,
}

#[derive(Args, Debug)]
struct BenchApiArgs {
    /// Seconds of load per scenario (and as much again for the baseline).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Requests per second offered (open loop).
    #[arg(long, default_value_t = 2000)]
    rate: u64,
    /// Client threads sharing the rate.
    #[arg(long, default_value_t = 64)]
    threads: usize,
    /// A PostgreSQL server (libpq key=value string without dbname) on which to create throwaway
    /// benchmark databases.
    #[arg(long, env = "WRIT_BENCH_POSTGRES")]
    postgres: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let json = cli.json;
    let result = match cli.command {
        Command::Demo(args) => demo::run(args.keep.as_deref(), args.targets == "all"),
        Command::Bench(args) => {
            bench::run(args.lifecycles, args.threads, args.ledger_events, args.postgres.as_deref(), json)
        }
        Command::Reconcile(args) => bench_reconcile::run(args.identities, args.grants, json),
        Command::BenchWeb(args) => bench_web::run(args.requests, json),
        Command::BenchApi(args) => bench_api::run(bench_api::Options {
            seconds: args.seconds,
            rate: args.rate,
            threads: args.threads,
            postgres: args.postgres,
            json,
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
