//! Subcommands, one module per area.

pub mod aml;
pub mod bench_api;
pub mod custody;
pub mod kyc;
pub mod ledger;
pub mod node;
pub mod validator;
