//! Deterministic keys and signed fixtures for tests, the benchmark and the CLI's tests. Keys
//! come from labelled seeds so that every run builds the same blocks; nothing here is used by a
//! validator to decide anything.

use crate::block::CommittedBlock;
use crate::crypto::signing::{ControllerSigner, Ed25519Signer};
use crate::crypto::{Hash32, gate_approval_message, tagged_hash};
use crate::ledger::{
    AccountFlags, Batch, BatchSignature, GateApproval, NewAccount, Transfer, TransferEntry,
    TransferFlags, batch_signing_digest,
};
use crate::membership::fixture::Consortium;
use crate::replica::Replica;
use crate::store::BlockStore;
use crate::store::memory::MemoryStore;

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

/// The gate's approval of transfer `transfer_id` under decision `decision_hash`.
pub fn approve(gate: &Ed25519Signer, transfer_id: u128, decision_hash: &Hash32) -> GateApproval {
    GateApproval {
        gate_key: gate.public_key(),
        signature: gate.sign(&gate_approval_message(transfer_id, decision_hash)),
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
        gate: Some(approve(gate, transfer.id, &transfer.decision_hash)),
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
                gate: Some(approve(gate, transfer.id, &transfer.decision_hash)),
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

/// Asset of the sample chain.
pub const SAMPLE_LEDGER: u32 = 1;

/// The sample chain's issuer key (account 1) and custodian key (accounts 2..=5).
pub fn sample_keys() -> (ControllerSigner, ControllerSigner) {
    (controller("issuer", 0), controller("custodian", 0))
}

/// The batches of block `height` of the sample chain: block 1 opens accounts 1..=5; every
/// later block mints to account 2 and settles a batch-signed set of transfers (a linked pair,
/// a pending transfer with a 30 s timeout, and one that fails for lack of funds).
pub fn sample_batches(consortium: &Consortium, height: u64) -> Vec<Batch> {
    let (issuer, custodian) = sample_keys();
    if height == 1 {
        let mut accounts = vec![new_account(1, SAMPLE_LEDGER, 0, &issuer)];
        for id in 2..=5 {
            accounts.push(new_account(
                id,
                SAMPLE_LEDGER,
                AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS,
                &custodian,
            ));
        }
        return vec![Batch::CreateAccounts(accounts)];
    }
    let base = u128::from(height) * 100;
    let t = |id: u128, debit: u128, credit: u128, amount: u128, flags: u16| Transfer {
        id,
        debit_account_id: debit,
        credit_account_id: credit,
        amount,
        pending_id: 0,
        user_data: u128::from(height),
        timeout_s: if flags & TransferFlags::PENDING != 0 {
            30
        } else {
            0
        },
        ledger: SAMPLE_LEDGER,
        code: 1,
        flags: TransferFlags(flags),
        decision_hash: decision(id),
    };
    let mint = signed_entry(t(base + 1, 1, 2, 1_000, 0), &issuer, &consortium.gate);
    let settlement = batch_signed(
        &[
            t(base + 2, 2, 3, 300, TransferFlags::LINKED),
            t(base + 3, 3, 4, 100, 0),
            t(base + 4, 2, 5, 50, TransferFlags::PENDING),
            t(base + 5, 5, 4, 1_000_000, 0),
        ],
        &custodian,
        &consortium.gate,
    );
    vec![
        Batch::CreateTransfers {
            entries: vec![mint],
            batch_signature: None,
        },
        settlement,
    ]
}

/// A sample chain of `blocks` committed blocks, one second apart, proposed by validator 1 and
/// certified by a quorum of the consortium.
pub fn sample_chain(consortium: &Consortium, blocks: u64) -> Vec<CommittedBlock> {
    let Ok(mut replica) = Replica::open(&consortium.genesis, MemoryStore::new(), 1) else {
        return Vec::new();
    };
    for height in 1..=blocks {
        let Ok(block) = replica.propose(1, height * 1_000_000, sample_batches(consortium, height))
        else {
            break;
        };
        let certificate = consortium.certify(height, block.hash(), replica.membership().quorum());
        if replica
            .commit(CommittedBlock { block, certificate })
            .is_err()
        {
            break;
        }
    }
    let store = replica.into_store();
    debug_assert_eq!(store.applied_height().ok(), Some(blocks));
    store.blocks().to_vec()
}
