//! The gRPC API, package `rempart.v1`. Only this crate and the node binary know tonic and prost.
