//! Deterministic keys and signed fixtures for tests, the benchmark and the CLI's tests. Keys
//! come from labelled seeds so that every run builds the same blocks; nothing here is used by a
//! validator to decide anything.

use crate::crypto::signing::{ControllerSigner, Ed25519Signer};
use crate::crypto::{Hash32, tagged_hash};
use crate::ledger::{
    AccountFlags, Batch, BatchSignature, GateApproval, NewAccount, Transfer, TransferEntry,
    batch_signing_digest,
};

/// A reproducible 32-byte seed for `label` and `index`.
pub fn seed(label: &str, index: u64) -> [u8; 32] {
    tagged_hash(
        b"rempart.testkit.seed",
        &[label.as_bytes(), &index.to_le_bytes()],
    )
}

/// A controller key (secp256k1) for `label`/`index`.
pub fn controller(label: &str, index: u64) -> ControllerSigner {
    ControllerSigner::from_seed(&seed(label, index))
}

/// An Ed25519 key for `label`/`index` (gate, CA, validator).
pub fn ed25519(label: &str, index: u64) -> Ed25519Signer {
    Ed25519Signer::from_seed(&seed(label, index))
}

/// The gate's approval of a decision hash.
pub fn approve(gate: &Ed25519Signer, decision_hash: &Hash32) -> GateApproval {
    GateApproval {
        gate_key: gate.public_key(),
        signature: gate.sign(decision_hash),
    }
}

/// A decision hash standing for the gate's decision record `index`.
pub fn decision(index: u128) -> Hash32 {
    tagged_hash(b"rempart.testkit.decision", &[&index.to_le_bytes()])
}

/// A transfer approved by `gate` and signed alone by `signer`.
pub fn signed_entry(
    transfer: Transfer,
    signer: &ControllerSigner,
    gate: &Ed25519Signer,
) -> TransferEntry {
    TransferEntry {
        transfer,
        gate: Some(approve(gate, &transfer.decision_hash)),
        signature: Some(signer.sign_digest(&transfer.signing_digest())),
    }
}

/// A batch of gated transfers under one signature by `signer`.
pub fn batch_signed(
    transfers: &[Transfer],
    signer: &ControllerSigner,
    gate: &Ed25519Signer,
) -> Batch {
    let signer_key = signer.public_key();
    let digest = batch_signing_digest(&signer_key, transfers);
    Batch::CreateTransfers {
        entries: transfers
            .iter()
            .map(|transfer| TransferEntry {
                transfer: *transfer,
                gate: Some(approve(gate, &transfer.decision_hash)),
                signature: None,
            })
            .collect(),
        batch_signature: Some(BatchSignature {
            signer: signer_key,
            signature: signer.sign_digest(&digest),
        }),
    }
}

/// A new account controlled by `controller`.
pub fn new_account(id: u128, ledger: u32, flags: u16, controller: &ControllerSigner) -> NewAccount {
    NewAccount {
        id,
        user_data: 0,
        ledger,
        code: 1,
        flags: AccountFlags(flags),
        controller: controller.public_key(),
    }
}
