//! The gRPC API, package `rempart.v1`. Only this crate and the node binary know tonic and prost.
//!
//! # Layout
//! - `rempart/v1/*.proto`: one file per service (Trading, MarketData, Accounts, Custody,
//!   Compliance, Ledger, Admin, Diagnostics) plus `common.proto` (ErrorDetail, Role, paging).
//! - [`v1`]: the messages, the `*_server` traits and the `*_client` stubs generated from them.
//! - [`FILE_DESCRIPTOR_SET`]: the encoded descriptors, for server reflection.
//!
//! Conventions (see `common.proto`): decimals are canonical strings, ids are strings, times are
//! `google.protobuf.Timestamp`, refusals carry an [`v1::ErrorDetail`] with a stable code.

/// Generated code of package `rempart.v1`.
#[allow(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    clippy::all
)]
pub mod v1 {
    tonic::include_proto!("rempart.v1");
}

/// The encoded `FileDescriptorSet` of every `rempart.v1` file, for `tonic-reflection`.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("rempart_v1_descriptor");

/// The encoded `FileDescriptorSet` of the validator's client API (`rempart validator`).
pub const VALIDATOR_FILE_DESCRIPTOR_SET: &[u8] =
    tonic::include_file_descriptor_set!("rempart_v1_validator_descriptor");

/// The services of the validator's client API (`rempart validator`).
pub const VALIDATOR_SERVICE_NAMES: &[&str] = &["rempart.v1.Validator"];

/// The services the exchange node serves, by fully qualified name (for health checks and
/// tests).
pub const SERVICE_NAMES: &[&str] = &[
    "rempart.v1.Trading",
    "rempart.v1.MarketData",
    "rempart.v1.Accounts",
    "rempart.v1.Custody",
    "rempart.v1.Compliance",
    "rempart.v1.Ledger",
    "rempart.v1.Admin",
    "rempart.v1.Diagnostics",
];

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    fn services(descriptor_set: &[u8]) -> Vec<String> {
        let set = prost_types::FileDescriptorSet::decode(descriptor_set).expect("decodes");
        let mut names = Vec::new();
        for file in &set.file {
            for service in &file.service {
                names.push(format!("{}.{}", file.package(), service.name()));
            }
        }
        names.sort();
        names
    }

    #[test]
    fn descriptor_sets_name_every_service_of_their_server() {
        let mut expected: Vec<String> = SERVICE_NAMES.iter().map(|s| s.to_string()).collect();
        expected.sort();
        assert_eq!(services(FILE_DESCRIPTOR_SET), expected);
        let validator: Vec<String> = VALIDATOR_SERVICE_NAMES
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(services(VALIDATOR_FILE_DESCRIPTOR_SET), validator);
    }

    #[test]
    fn error_detail_round_trips() {
        let detail = v1::ErrorDetail {
            code: 1003,
            name: "PRICE_OFF_TICK".into(),
            message: "price is not on the tick grid".into(),
            field: "price".into(),
            retry_after_ms: 0,
        };
        let bytes = detail.encode_to_vec();
        assert_eq!(
            v1::ErrorDetail::decode(bytes.as_slice()).expect("decodes"),
            detail
        );
    }
}
