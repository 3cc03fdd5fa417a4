//! Wire and WAL encoding of Malachite's messages for [`LedgerContext`]: Borsh for every type
//! Malachite ships a Borsh form of, and an explicit layout for the two that have none
//! (validator proofs and the sync responses carrying commit certificates). Decoding never
//! panics, refuses trailing bytes and anything longer than [`WIRE_MESSAGE_BYTES_MAX`].

use borsh::{BorshDeserialize, BorshSerialize};
use bytes::Bytes;
use malachitebft_app::consensus::LivenessMsg;
use malachitebft_app::streaming::StreamMessage;
use malachitebft_app::types::codec::{Codec, HasEncodedLen};
use malachitebft_app::types::sync::{RawDecidedValue, Request, Response, Status};
use malachitebft_app::types::{ProposedValue, SignedConsensusMsg};
use malachitebft_core_types::{
    ExtendedCommitCertificate, ExtendedCommitSignature, PolkaCertificate, Round, SignedExtension,
    ValidatorProof,
};
use malachitebft_sync::ValueResponse;

use crate::context::{Address, BlockHash, Height, LedgerContext, ProposalPart, Signature};

/// Largest message the codec encodes or decodes (a sync response of a few full blocks).
pub const WIRE_MESSAGE_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Why a message does not encode or decode.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// Malformed bytes (or a writer failure while encoding).
    #[error("consensus message codec: {0}")]
    Borsh(#[from] std::io::Error),
    /// Longer than [`WIRE_MESSAGE_BYTES_MAX`].
    #[error("consensus message of {0} bytes exceeds the limit")]
    TooLong(usize),
}

/// The codec for the network, the sync protocol and the write-ahead log.
#[derive(Debug, Clone, Copy, Default)]
pub struct WireCodec;

fn decode_borsh<T: BorshDeserialize>(bytes: &[u8]) -> Result<T, CodecError> {
    if bytes.len() > WIRE_MESSAGE_BYTES_MAX {
        return Err(CodecError::TooLong(bytes.len()));
    }
    Ok(borsh::from_slice(bytes)?)
}

fn encode_borsh<T: BorshSerialize>(value: &T) -> Result<Bytes, CodecError> {
    let bytes = borsh::to_vec(value)?;
    if bytes.len() > WIRE_MESSAGE_BYTES_MAX {
        return Err(CodecError::TooLong(bytes.len()));
    }
    Ok(Bytes::from(bytes))
}

macro_rules! borsh_codec {
    ($($ty:ty),* $(,)?) => {$(
        impl Codec<$ty> for WireCodec {
            type Error = CodecError;

            fn decode(&self, bytes: Bytes) -> Result<$ty, CodecError> {
                decode_borsh(&bytes)
            }

            fn encode(&self, msg: &$ty) -> Result<Bytes, CodecError> {
                encode_borsh(msg)
            }
        }
    )*};
}

borsh_codec!(
    ProposalPart,
    SignedConsensusMsg<LedgerContext>,
    LivenessMsg<LedgerContext>,
    StreamMessage<ProposalPart>,
    ProposedValue<LedgerContext>,
    PolkaCertificate<LedgerContext>,
    Status<LedgerContext>,
    Request<LedgerContext>,
);

/// A validator proof: public key, peer id, signature.
#[derive(BorshSerialize, BorshDeserialize)]
struct ProofWire {
    public_key: Vec<u8>,
    peer_id: Vec<u8>,
    signature: Signature,
}

impl Codec<ValidatorProof<LedgerContext>> for WireCodec {
    type Error = CodecError;

    fn decode(&self, bytes: Bytes) -> Result<ValidatorProof<LedgerContext>, CodecError> {
        let wire: ProofWire = decode_borsh(&bytes)?;
        Ok(ValidatorProof::new(
            wire.public_key,
            wire.peer_id,
            wire.signature,
        ))
    }

    fn encode(&self, proof: &ValidatorProof<LedgerContext>) -> Result<Bytes, CodecError> {
        encode_borsh(&ProofWire {
            public_key: proof.public_key.clone(),
            peer_id: proof.peer_id.clone(),
            signature: proof.signature,
        })
    }
}

/// One signature of a synced certificate.
#[derive(BorshSerialize, BorshDeserialize)]
struct CommitSignatureWire {
    address: Address,
    signature: Signature,
    extension: Option<SignedExtension<LedgerContext>>,
}

/// A decided block in a sync response: its bytes and Malachite's certificate.
#[derive(BorshSerialize, BorshDeserialize)]
struct DecidedWire {
    value_bytes: Vec<u8>,
    height: Height,
    round: Round,
    value_id: BlockHash,
    signatures: Vec<CommitSignatureWire>,
}

/// A sync response.
#[derive(BorshSerialize, BorshDeserialize)]
struct ResponseWire {
    start_height: Height,
    values: Vec<DecidedWire>,
}

fn response_to_wire(response: &Response<LedgerContext>) -> ResponseWire {
    let Response::ValueResponse(response) = response;
    ResponseWire {
        start_height: response.start_height,
        values: response
            .values
            .iter()
            .map(|value| DecidedWire {
                value_bytes: value.value_bytes.to_vec(),
                height: value.certificate.height,
                round: value.certificate.round,
                value_id: value.certificate.value_id,
                signatures: value
                    .certificate
                    .commit_signatures
                    .iter()
                    .map(|s| CommitSignatureWire {
                        address: s.address,
                        signature: s.signature,
                        extension: s.extension.clone(),
                    })
                    .collect(),
            })
            .collect(),
    }
}

fn response_from_wire(wire: ResponseWire) -> Response<LedgerContext> {
    Response::ValueResponse(ValueResponse::new(
        wire.start_height,
        wire.values
            .into_iter()
            .map(|value| {
                RawDecidedValue::new(
                    Bytes::from(value.value_bytes),
                    ExtendedCommitCertificate {
                        height: value.height,
                        round: value.round,
                        value_id: value.value_id,
                        commit_signatures: value
                            .signatures
                            .into_iter()
                            .map(|s| {
                                ExtendedCommitSignature::new(s.address, s.signature, s.extension)
                            })
                            .collect(),
                    },
                )
            })
            .collect(),
    ))
}

impl Codec<Response<LedgerContext>> for WireCodec {
    type Error = CodecError;

    fn decode(&self, bytes: Bytes) -> Result<Response<LedgerContext>, CodecError> {
        Ok(response_from_wire(decode_borsh(&bytes)?))
    }

    fn encode(&self, response: &Response<LedgerContext>) -> Result<Bytes, CodecError> {
        encode_borsh(&response_to_wire(response))
    }
}

impl HasEncodedLen<Response<LedgerContext>> for WireCodec {
    fn encoded_len(&self, response: &Response<LedgerContext>) -> Result<usize, CodecError> {
        Ok(borsh::object_length(&response_to_wire(response))?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::{BlockRef, PartInit};
    use malachitebft_core_types::Validity;

    #[test]
    fn parts_and_values_round_trip_and_garbage_is_refused() {
        let codec = WireCodec;
        let init = ProposalPart::Init(PartInit {
            height: Height(3),
            round: Round::new(1),
            valid_round: Round::Nil,
            proposer: Address(2),
            block_bytes: 10,
        });
        let bytes = Codec::<ProposalPart>::encode(&codec, &init).unwrap();
        assert_eq!(
            Codec::<ProposalPart>::decode(&codec, bytes.clone()).unwrap(),
            init
        );
        let mut longer = bytes.to_vec();
        longer.push(0);
        assert!(Codec::<ProposalPart>::decode(&codec, Bytes::from(longer)).is_err());
        for cut in 0..bytes.len() {
            assert!(Codec::<ProposalPart>::decode(&codec, bytes.slice(..cut)).is_err());
        }
        let value = ProposedValue::<LedgerContext> {
            height: Height(3),
            round: Round::new(0),
            valid_round: Round::Nil,
            proposer: Address(1),
            value: BlockRef {
                hash: BlockHash([4; 32]),
            },
            validity: Validity::Valid,
        };
        let bytes = Codec::<ProposedValue<LedgerContext>>::encode(&codec, &value).unwrap();
        assert_eq!(
            Codec::<ProposedValue<LedgerContext>>::decode(&codec, bytes).unwrap(),
            value
        );
    }

    #[test]
    fn sync_responses_round_trip() {
        let codec = WireCodec;
        let response = Response::ValueResponse(ValueResponse::new(
            Height(5),
            vec![RawDecidedValue::new(
                Bytes::from_static(b"block"),
                ExtendedCommitCertificate {
                    height: Height(5),
                    round: Round::new(0),
                    value_id: BlockHash([1; 32]),
                    commit_signatures: vec![ExtendedCommitSignature::new(
                        Address(1),
                        Signature([2; 64]),
                        None,
                    )],
                },
            )],
        ));
        let bytes = Codec::<Response<LedgerContext>>::encode(&codec, &response).unwrap();
        assert_eq!(
            codec.encoded_len(&response).unwrap(),
            bytes.len(),
            "encoded_len must match the encoding"
        );
        assert_eq!(
            Codec::<Response<LedgerContext>>::decode(&codec, bytes).unwrap(),
            response
        );
    }
}
