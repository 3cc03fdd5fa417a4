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
    "rempart/v1/validator.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    let well_known = protoc_bin_vendored::include_path()?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("rempart_v1_descriptor.bin"))
        .compile_with_config(
            config,
            PROTOS,
            &[".", well_known.to_str().ok_or("non UTF-8 include path")?],
        )?;
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    Ok(())
}
