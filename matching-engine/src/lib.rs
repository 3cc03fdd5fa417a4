//! The matching engine: order books for CITY/EUR, CITY/LCL and LCL/EUR with a risk engine in
//! front, as a deterministic state machine (`apply(command) -> events`).
//!
//! Architecture Invariant: nothing in this crate reads a clock, a random source, the network or
//! the disk, except the journal and snapshot modules, which only read and write the files they
//! are handed. Time, sequence numbers and ids arrive with each command.
