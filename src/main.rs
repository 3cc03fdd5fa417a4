//! `rempart`: the exchange node and its command line.
//!
//! # Layout
//! - `cli::custody`: `rempart custody …` (key derivation, proof-of-reserves tools).
//! - `cli::aml`: `rempart aml …` (screening, name matching, goAML reports).
//! - `cli::ledger`: `rempart ledger …` (ledger verification and the cluster benchmark).
//!
//! Each area's module owns its subcommands; this file only dispatches.

mod cli;

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
    /// Ledger tools: chain verification, cluster benchmark.
    Ledger {
        #[command(subcommand)]
        command: cli::ledger::Command,
    },
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let outcome = match args.command {
        Command::Custody { command } => cli::custody::run(command),
        Command::Aml { command } => cli::aml::run(command),
        Command::Ledger { command } => cli::ledger::run(command),
    };
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
