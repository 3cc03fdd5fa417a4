//! `rempart`: the exchange node and its command line.
//!
//! # Layout
//! - `cli::custody`: `rempart custody …` (key derivation, proof-of-reserves tools).
//! - `cli::aml`: `rempart aml …` (screening, name matching, goAML reports).
//! - `cli::ledger`: `rempart ledger …` (ledger verification and the cluster benchmark).
//! - `cli::kyc`: `rempart kyc …` (provider keys and signed identity attestations).
//! - `cli::node`: `rempart demo`, `rempart node --config FILE`.
//! - `cli::bench_api`: `rempart bench-api` (the gRPC API benchmark).
//! - `cli::validator`: `rempart validator --config FILE` (a consortium validator and its client
//!   API).
//! - `node`: the exchange node itself (engine path, gRPC API, auth, limits, metrics).
//! - `telemetry`: logs and OpenTelemetry (OTLP) trace export.
//!
//! Each area's module owns its subcommands; this file only dispatches.

mod cli;
mod node;
mod telemetry;

use clap::{Parser, Subcommand};

/// Sovereign token exchange and custodian.
#[derive(Debug, Parser)]
#[command(name = "rempart", version, about)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Custody tools: key derivation, proofs of reserves.
    Custody {
        #[command(subcommand)]
        command: cli::custody::Command,
    },
    /// KYC/AML tools: sanctions screening, name matching, regulator reports.
    Aml {
        #[command(subcommand)]
        command: cli::aml::Command,
    },
    /// KYC provider tools: provider key files, signed identity attestations.
    Kyc {
        #[command(subcommand)]
        command: cli::kyc::Command,
    },
    /// Ledger tools: chain verification, cluster benchmark.
    Ledger {
        #[command(subcommand)]
        command: cli::ledger::Command,
    },
    /// Runs the demo exchange node: three markets, funded demo accounts, keys printed at start.
    Demo(cli::node::DemoArgs),
    /// Runs a node from a TOML configuration file (REMPART_* environment overrides).
    Node(cli::node::NodeArgs),
    /// Benchmarks the gRPC API against an in-process demo node; prints one JSON line.
    BenchApi(cli::bench_api::BenchArgs),
    /// Runs one consortium ledger validator with its client API (batch submission).
    Validator(cli::validator::ValidatorArgs),
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let outcome = match args.command {
        Command::Custody { command } => cli::custody::run(command),
        Command::Aml { command } => cli::aml::run(command),
        Command::Kyc { command } => cli::kyc::run(command),
        Command::Ledger { command } => cli::ledger::run(command),
        Command::Demo(args) => cli::node::demo(args),
        Command::Node(args) => cli::node::node(args),
        Command::BenchApi(args) => cli::bench_api::run(args),
        Command::Validator(args) => cli::validator::run(args),
    };
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
