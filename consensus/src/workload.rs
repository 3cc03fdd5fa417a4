//! Deterministic transfer workloads for the tests, the validator's demo mode and the
//! benchmark: one batch opening the accounts, then batches of gated transfers each signed once
//! by the custodian's controller key. Keys come from `settlement::testkit`, so every process
//! builds byte-identical batches (which is what lets a client "submit to every validator" in
//! a test by each validator generating the same batches).

use settlement::crypto::signing::{ControllerSigner, Ed25519Signer};
use settlement::ledger::{Batch, Transfer, TransferFlags};
use settlement::testkit;

/// The asset (ledger) the workload moves.
pub const WORKLOAD_LEDGER: u32 = 1;
/// Accounts the workload may open at most.
pub const WORKLOAD_ACCOUNTS_MAX: u64 = 8_192;

/// A workload over `accounts` accounts (ids 1..=accounts), all controlled by one custodian.
#[derive(Debug)]
pub struct Workload {
    accounts: u64,
    custodian: ControllerSigner,
    gate: Ed25519Signer,
}

impl Workload {
    /// A workload whose transfers the gate of `settlement::membership::fixture::Consortium`
    /// approves. `accounts` is clamped to 2..=[`WORKLOAD_ACCOUNTS_MAX`].
    pub fn new(accounts: u64) -> Self {
        Self {
            accounts: accounts.clamp(2, WORKLOAD_ACCOUNTS_MAX),
            custodian: testkit::controller("workload-custodian", 0),
            gate: testkit::ed25519("gate", 0),
        }
    }

    /// The batch opening every account (no balance limits: transfers always apply).
    pub fn open_accounts(&self) -> Batch {
        Batch::CreateAccounts(
            (1..=u128::from(self.accounts))
                .map(|id| testkit::new_account(id, WORKLOAD_LEDGER, 0, &self.custodian))
                .collect(),
        )
    }

    /// Transfer `id` (ids start at 1): amount 1 between two accounts chosen from the id.
    pub fn transfer(&self, id: u128) -> Transfer {
        let n = u128::from(self.accounts);
        let debit = id % n + 1;
        let credit = (id * 7 + 3) % n + 1;
        let credit = if credit == debit {
            debit % n + 1
        } else {
            credit
        };
        Transfer {
            id,
            debit_account_id: debit,
            credit_account_id: credit,
            amount: 1,
            pending_id: 0,
            user_data: 0,
            timeout_s: 0,
            ledger: WORKLOAD_LEDGER,
            code: 1,
            flags: TransferFlags(0),
            decision_hash: testkit::decision(id),
        }
    }

    /// The batch of transfers `first..first + count`, signed once by the custodian.
    pub fn transfers(&self, first: u128, count: usize) -> Batch {
        let transfers: Vec<Transfer> = (first..first + count as u128)
            .map(|id| self.transfer(id))
            .collect();
        testkit::batch_signed(&transfers, &self.custodian, &self.gate)
    }

    /// All batches of a run: the accounts, then `transfers` transfers in batches of `batch`.
    pub fn batches(&self, transfers: u64, batch: usize) -> Vec<Batch> {
        let batch = batch.max(1);
        let mut batches = vec![self.open_accounts()];
        let mut next: u128 = 1;
        let end = u128::from(transfers) + 1;
        while next < end {
            let count = (end - next).min(batch as u128) as usize;
            batches.push(self.transfers(next, count));
            next += count as u128;
        }
        batches
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use settlement::block::CommittedBlock;
    use settlement::membership::fixture::Consortium;
    use settlement::replica::Replica;
    use settlement::store::memory::MemoryStore;

    #[test]
    fn a_workload_applies_every_transfer_once() {
        let consortium = Consortium::new(1);
        let mut replica = Replica::open(&consortium.genesis, MemoryStore::new(), 1).unwrap();
        let workload = Workload::new(10);
        let batches = workload.batches(25, 10);
        assert_eq!(batches.len(), 4);
        let block = replica.propose(1, 1_000, batches).unwrap();
        let certificate = consortium.certify(1, block.hash(), 1);
        replica
            .commit(CommittedBlock { block, certificate })
            .unwrap();
        for id in 1..=25 {
            assert!(replica.ledger().transfer(id).is_some(), "transfer {id}");
        }
        assert_eq!(replica.ledger().transfer_count(), 25);
    }
}
