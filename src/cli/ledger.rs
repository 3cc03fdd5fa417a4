//! `rempart ledger …` subcommands.

use clap::Subcommand;

/// The `ledger` subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {}

/// Runs one subcommand.
pub fn run(command: Command) -> anyhow::Result<()> {
    match command {}
}
