//! Subcommands, one module per area.

pub mod aml;
pub mod custody;
pub mod ledger;
