//! `rempart aml …` subcommands.

use clap::Subcommand;

/// The `aml` subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {}

/// Runs one subcommand.
pub fn run(command: Command) -> anyhow::Result<()> {
    match command {}
}
