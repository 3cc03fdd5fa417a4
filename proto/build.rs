//! Generates the rempart.v1 messages, servers and clients from `rempart/v1/*.proto` with the
//! protoc that `protoc-bin-vendored` ships (no system protoc needed), and writes the file
//! descriptor set that server reflection serves.

use std::path::PathBuf;

/// The API's files, one per service plus the shared types.
const PROTOS: &[&str] = &[
    "rempart/v1/common.proto",
    "rempart/v1/trading.proto",
    "rempart/v1/market_data.proto",
    "rempart/v1/accounts.proto",
    "rempart/v1/custody.proto",
    "rempart/v1/compliance.proto",
    "rempart/v1/ledger.proto",
    "rempart/v1/admin.proto",
    "rempart/v1/diagnostics.proto",
];

/// The consortium validator's client API (`rempart validator`), in a descriptor set of its own
/// so that the exchange node's reflection lists only what it serves.
const VALIDATOR_PROTOS: &[&str] = &["rempart/v1/validator.proto"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    let well_known = protoc_bin_vendored::include_path()?;
    let includes = [".", well_known.to_str().ok_or("non UTF-8 include path")?];
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let all: Vec<&str> = PROTOS.iter().chain(VALIDATOR_PROTOS).copied().collect();
    // The code: one module for the whole package (prost writes one file per package).
    // The descriptor sets: one per server, each written beside scratch code that is not used.
    let runs: [(&[&str], PathBuf, &str); 3] = [
        (&all, out_dir.clone(), "rempart_v1_all_descriptor.bin"),
        (
            PROTOS,
            out_dir.join("node-only"),
            "rempart_v1_descriptor.bin",
        ),
        (
            VALIDATOR_PROTOS,
            out_dir.join("validator-only"),
            "rempart_v1_validator_descriptor.bin",
        ),
    ];
    for (protos, code_dir, descriptor) in runs {
        std::fs::create_dir_all(&code_dir)?;
        let mut config = tonic_prost_build::Config::new();
        config.protoc_executable(&protoc);
        tonic_prost_build::configure()
            .out_dir(code_dir)
            .file_descriptor_set_path(out_dir.join(descriptor))
            .compile_with_config(config, protos, &includes)?;
    }
    for proto in &all {
        println!("cargo:rerun-if-changed={proto}");
    }
    Ok(())
}
