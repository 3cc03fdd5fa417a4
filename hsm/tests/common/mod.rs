//! Shared test support: the one key-store test suite every backend passes.
#![allow(dead_code)] // each test binary uses a different part of this module

pub mod softhsm;
pub mod suite;
