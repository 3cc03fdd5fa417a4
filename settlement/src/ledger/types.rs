//! The ledger's records: accounts, transfers and the batches that carry them into a block,
//! with their canonical encodings (see docs/ledger-format.md) and the digests that custody and
//! the gate sign.

use crate::codec::{DecodeError, Reader, Writer};
use crate::crypto::{
    ControllerKey, DOMAIN_BATCH, DOMAIN_TRANSFER, Ed25519Key, Hash32, Signature64, tagged_hash,
};
use crate::limits::{ACCOUNTS_PER_BATCH_MAX, TRANSFERS_PER_BATCH_MAX};

/// Account flags (a bit set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct AccountFlags(pub u16);

impl AccountFlags {
    /// This account and the next in its batch succeed or fail together.
    pub const LINKED: u16 = 1 << 0;
    /// Debits (pending + posted) may never exceed posted credits: an asset holder's account.
    pub const DEBITS_MUST_NOT_EXCEED_CREDITS: u16 = 1 << 1;
    /// Credits (pending + posted) may never exceed posted debits: an issuer's liability limit.
    pub const CREDITS_MUST_NOT_EXCEED_DEBITS: u16 = 1 << 2;
    /// The account refuses new transfers (set by a closing pending transfer; state, not an
    /// option at creation).
    pub const CLOSED: u16 = 1 << 3;
    /// Every defined bit.
    pub const ALL: u16 = 0b1111;

    /// True if `bit` is set.
    pub fn has(self, bit: u16) -> bool {
        self.0 & bit != 0
    }
}

/// Transfer flags (a bit set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TransferFlags(pub u16);

impl TransferFlags {
    /// This transfer and the next in its batch succeed or fail together.
    pub const LINKED: u16 = 1 << 0;
    /// Phase one of a two-phase transfer: the amount is reserved as pending.
    pub const PENDING: u16 = 1 << 1;
    /// Phase two: post (all or part of) the pending transfer named by `pending_id`.
    pub const POST_PENDING: u16 = 1 << 2;
    /// Phase two: void the pending transfer named by `pending_id`.
    pub const VOID_PENDING: u16 = 1 << 3;
    /// With `PENDING`: closes the debit account (voiding or expiry reopens it).
    pub const CLOSING_DEBIT: u16 = 1 << 4;
    /// With `PENDING`: closes the credit account (voiding or expiry reopens it).
    pub const CLOSING_CREDIT: u16 = 1 << 5;
    /// Every defined bit.
    pub const ALL: u16 = 0b11_1111;

    /// True if `bit` is set.
    pub fn has(self, bit: u16) -> bool {
        self.0 & bit != 0
    }
}

/// The amount that posts the whole pending amount, whatever it is.
pub const AMOUNT_MAX: u128 = u128::MAX;

/// What a client submits to open an account. Balances always start at zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NewAccount {
    /// Client-chosen id (idempotency key).
    pub id: u128,
    /// Opaque reference for the client (a pseudonymous customer id, never personal data).
    pub user_data: u128,
    /// The asset.
    pub ledger: u32,
    /// The account's kind (chart-of-accounts code).
    pub code: u16,
    /// `LINKED`, `DEBITS_MUST_NOT_EXCEED_CREDITS`, `CREDITS_MUST_NOT_EXCEED_DEBITS`.
    pub flags: AccountFlags,
    /// The secp256k1 key whose signature authorises debits.
    pub controller: ControllerKey,
}

/// An account as the ledger holds it. Never deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Account {
    /// Client-chosen id.
    pub id: u128,
    /// Amounts reserved by pending transfers debiting the account.
    pub debits_pending: u128,
    /// Amounts debited for good.
    pub debits_posted: u128,
    /// Amounts reserved by pending transfers crediting the account.
    pub credits_pending: u128,
    /// Amounts credited for good.
    pub credits_posted: u128,
    /// Opaque client reference.
    pub user_data: u128,
    /// The asset.
    pub ledger: u32,
    /// The account's kind.
    pub code: u16,
    /// Options and the `CLOSED` state bit.
    pub flags: AccountFlags,
    /// The key that authorises debits.
    pub controller: ControllerKey,
    /// Timestamp (µs) of the block that created it.
    pub timestamp_us: u64,
}

/// Bytes of an encoded [`Account`].
pub const ACCOUNT_BYTES: usize = 16 * 6 + 4 + 2 + 2 + 33 + 8;

impl Account {
    /// Canonical encoding.
    pub fn encode(&self, w: &mut Writer) {
        w.u128(self.id);
        w.u128(self.debits_pending);
        w.u128(self.debits_posted);
        w.u128(self.credits_pending);
        w.u128(self.credits_posted);
        w.u128(self.user_data);
        w.u32(self.ledger);
        w.u16(self.code);
        w.u16(self.flags.0);
        w.bytes(&self.controller);
        w.u64(self.timestamp_us);
    }

    /// Decodes [`Account::encode`]'s output.
    pub fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            id: r.u128("account.id")?,
            debits_pending: r.u128("account.debits_pending")?,
            debits_posted: r.u128("account.debits_posted")?,
            credits_pending: r.u128("account.credits_pending")?,
            credits_posted: r.u128("account.credits_posted")?,
            user_data: r.u128("account.user_data")?,
            ledger: r.u32("account.ledger")?,
            code: r.u16("account.code")?,
            flags: AccountFlags(r.u16("account.flags")?),
            controller: r.array("account.controller")?,
            timestamp_us: r.u64("account.timestamp_us")?,
        })
    }
}

impl NewAccount {
    /// Canonical encoding.
    pub fn encode(&self, w: &mut Writer) {
        w.u128(self.id);
        w.u128(self.user_data);
        w.u32(self.ledger);
        w.u16(self.code);
        w.u16(self.flags.0);
        w.bytes(&self.controller);
    }

    /// Decodes [`NewAccount::encode`]'s output.
    pub fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            id: r.u128("new_account.id")?,
            user_data: r.u128("new_account.user_data")?,
            ledger: r.u32("new_account.ledger")?,
            code: r.u16("new_account.code")?,
            flags: AccountFlags(r.u16("new_account.flags")?),
            controller: r.array("new_account.controller")?,
        })
    }
}

/// Bytes of an encoded [`NewAccount`].
pub const NEW_ACCOUNT_BYTES: usize = 16 * 2 + 4 + 2 + 2 + 33;

/// A transfer as submitted and as stored: every field the controller signs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Transfer {
    /// Client-chosen id (idempotency key).
    pub id: u128,
    /// The account debited (for post/void: 0 or the pending transfer's).
    pub debit_account_id: u128,
    /// The account credited (for post/void: 0 or the pending transfer's).
    pub credit_account_id: u128,
    /// Minor units. For post_pending, [`AMOUNT_MAX`] posts the whole pending amount.
    pub amount: u128,
    /// For post/void: the pending transfer's id; otherwise 0.
    pub pending_id: u128,
    /// Opaque client reference (a trade id, an order id).
    pub user_data: u128,
    /// For pending transfers: seconds until it expires (0 = never).
    pub timeout_s: u32,
    /// The asset.
    pub ledger: u32,
    /// The transfer's kind (trade leg, fee, deposit, ...).
    pub code: u16,
    /// See [`TransferFlags`].
    pub flags: TransferFlags,
    /// The compliance gate's decision hash, kept with the transfer so a regulator can match it
    /// to the decision record.
    pub decision_hash: Hash32,
}

/// Bytes of an encoded [`Transfer`].
pub const TRANSFER_BYTES: usize = 16 * 6 + 4 + 4 + 2 + 2 + 32;

impl Transfer {
    /// Canonical encoding (what controllers sign).
    pub fn encode(&self, w: &mut Writer) {
        w.u128(self.id);
        w.u128(self.debit_account_id);
        w.u128(self.credit_account_id);
        w.u128(self.amount);
        w.u128(self.pending_id);
        w.u128(self.user_data);
        w.u32(self.timeout_s);
        w.u32(self.ledger);
        w.u16(self.code);
        w.u16(self.flags.0);
        w.bytes(&self.decision_hash);
    }

    /// Decodes [`Transfer::encode`]'s output.
    pub fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            id: r.u128("transfer.id")?,
            debit_account_id: r.u128("transfer.debit_account_id")?,
            credit_account_id: r.u128("transfer.credit_account_id")?,
            amount: r.u128("transfer.amount")?,
            pending_id: r.u128("transfer.pending_id")?,
            user_data: r.u128("transfer.user_data")?,
            timeout_s: r.u32("transfer.timeout_s")?,
            ledger: r.u32("transfer.ledger")?,
            code: r.u16("transfer.code")?,
            flags: TransferFlags(r.u16("transfer.flags")?),
            decision_hash: r.array("transfer.decision_hash")?,
        })
    }

    /// The canonical bytes.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(TRANSFER_BYTES);
        self.encode(&mut w);
        w.into_bytes()
    }

    /// The digest the debit account's controller signs for this transfer alone.
    pub fn signing_digest(&self) -> Hash32 {
        tagged_hash(DOMAIN_TRANSFER, &[&self.canonical_bytes()])
    }
}

/// The gate's approval: its key and its Ed25519 signature over the transfer's decision hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GateApproval {
    /// The gate key that signed (must be one of the configured gate keys).
    pub gate_key: Ed25519Key,
    /// Ed25519 signature over the 32-byte decision hash.
    pub signature: Signature64,
}

/// One transfer in a block: the transfer, the gate's approval and, unless its batch is signed
/// as a whole, the debit account controller's signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TransferEntry {
    /// The transfer.
    pub transfer: Transfer,
    /// The gate's approval of `transfer.decision_hash` (None: ungated, refused).
    pub gate: Option<GateApproval>,
    /// The controller's signature over [`Transfer::signing_digest`] (None inside a batch signed
    /// as a whole).
    pub signature: Option<Signature64>,
}

/// One signature over a whole batch by the key that controls every account it debits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BatchSignature {
    /// The signer (a custodian's hot key).
    pub signer: ControllerKey,
    /// ECDSA over [`batch_signing_digest`].
    pub signature: Signature64,
}

/// A unit of submission: accounts to open, or transfers to apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Batch {
    /// Open accounts (a linked chain succeeds or fails as a unit).
    CreateAccounts(Vec<NewAccount>),
    /// Apply transfers, each signed alone or all under one batch signature.
    CreateTransfers {
        /// The transfers in order.
        entries: Vec<TransferEntry>,
        /// The batch signature, if the batch is signed as a whole.
        batch_signature: Option<BatchSignature>,
    },
}

const TAG_ACCOUNTS: u8 = 1;
const TAG_TRANSFERS: u8 = 2;
/// Smallest encoded transfer entry (no gate, no signature).
const ENTRY_BYTES_MIN: usize = TRANSFER_BYTES + 2;

/// The digest a custodian signs once for a batch: every transfer's canonical bytes, in order,
/// after the signer's key.
pub fn batch_signing_digest(signer: &ControllerKey, transfers: &[Transfer]) -> Hash32 {
    let mut w = Writer::with_capacity(33 + 4 + transfers.len() * TRANSFER_BYTES);
    w.bytes(signer);
    w.count(transfers.len());
    for transfer in transfers {
        transfer.encode(&mut w);
    }
    tagged_hash(DOMAIN_BATCH, &[w.as_bytes()])
}

impl Batch {
    /// Canonical encoding.
    pub fn encode(&self, w: &mut Writer) {
        match self {
            Batch::CreateAccounts(accounts) => {
                w.u8(TAG_ACCOUNTS);
                w.count(accounts.len());
                for account in accounts {
                    account.encode(w);
                }
            }
            Batch::CreateTransfers {
                entries,
                batch_signature,
            } => {
                w.u8(TAG_TRANSFERS);
                match batch_signature {
                    None => w.u8(0),
                    Some(batch) => {
                        w.u8(1);
                        w.bytes(&batch.signer);
                        w.bytes(&batch.signature);
                    }
                }
                w.count(entries.len());
                for entry in entries {
                    entry.transfer.encode(w);
                    match &entry.gate {
                        None => w.u8(0),
                        Some(gate) => {
                            w.u8(1);
                            w.bytes(&gate.gate_key);
                            w.bytes(&gate.signature);
                        }
                    }
                    match &entry.signature {
                        None => w.u8(0),
                        Some(signature) => {
                            w.u8(1);
                            w.bytes(signature);
                        }
                    }
                }
            }
        }
    }

    /// Decodes [`Batch::encode`]'s output.
    pub fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match r.u8("batch.tag")? {
            TAG_ACCOUNTS => {
                let count = r.count(ACCOUNTS_PER_BATCH_MAX, NEW_ACCOUNT_BYTES, "batch.accounts")?;
                let mut accounts = Vec::with_capacity(count);
                for _ in 0..count {
                    accounts.push(NewAccount::decode(r)?);
                }
                Ok(Batch::CreateAccounts(accounts))
            }
            TAG_TRANSFERS => {
                let batch_signature = match r.u8("batch.signature.tag")? {
                    0 => None,
                    1 => Some(BatchSignature {
                        signer: r.array("batch.signer")?,
                        signature: r.array("batch.signature")?,
                    }),
                    tag => {
                        return Err(DecodeError::UnknownTag {
                            what: "batch.signature.tag",
                            tag: tag.into(),
                        });
                    }
                };
                let count = r.count(TRANSFERS_PER_BATCH_MAX, ENTRY_BYTES_MIN, "batch.transfers")?;
                let mut entries = Vec::with_capacity(count);
                for _ in 0..count {
                    let transfer = Transfer::decode(r)?;
                    let gate = match r.u8("entry.gate.tag")? {
                        0 => None,
                        1 => Some(GateApproval {
                            gate_key: r.array("entry.gate_key")?,
                            signature: r.array("entry.gate_signature")?,
                        }),
                        tag => {
                            return Err(DecodeError::UnknownTag {
                                what: "entry.gate.tag",
                                tag: tag.into(),
                            });
                        }
                    };
                    let signature = match r.u8("entry.signature.tag")? {
                        0 => None,
                        1 => Some(r.array("entry.signature")?),
                        tag => {
                            return Err(DecodeError::UnknownTag {
                                what: "entry.signature.tag",
                                tag: tag.into(),
                            });
                        }
                    };
                    entries.push(TransferEntry {
                        transfer,
                        gate,
                        signature,
                    });
                }
                Ok(Batch::CreateTransfers {
                    entries,
                    batch_signature,
                })
            }
            tag => Err(DecodeError::UnknownTag {
                what: "batch.tag",
                tag: tag.into(),
            }),
        }
    }

    /// Number of events (accounts or transfers) in the batch.
    pub fn len(&self) -> usize {
        match self {
            Batch::CreateAccounts(accounts) => accounts.len(),
            Batch::CreateTransfers { entries, .. } => entries.len(),
        }
    }

    /// True if the batch holds no event.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Where a pending transfer stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum PendingStatus {
    /// Not a pending transfer (a plain, post or void transfer).
    None = 0,
    /// Reserved, awaiting post, void or expiry.
    Pending = 1,
    /// Posted (wholly or partly).
    Posted = 2,
    /// Voided.
    Voided = 3,
    /// Timed out.
    Expired = 4,
}

impl PendingStatus {
    /// The status with this byte.
    pub fn from_u8(value: u8) -> Option<Self> {
        Some(match value {
            0 => Self::None,
            1 => Self::Pending,
            2 => Self::Posted,
            3 => Self::Voided,
            4 => Self::Expired,
            _ => return None,
        })
    }
}

/// A transfer as the ledger remembers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TransferRecord {
    /// The transfer as submitted (amount as submitted; see `amount_applied`).
    pub transfer: Transfer,
    /// The amount that moved (a post of `AMOUNT_MAX` records the pending amount here; for a
    /// void, the amount released).
    pub amount_applied: u128,
    /// The effective debit account (post/void may leave it 0 in `transfer`).
    pub debit_account_id: u128,
    /// The effective credit account.
    pub credit_account_id: u128,
    /// Timestamp (µs) of the block that applied it.
    pub timestamp_us: u64,
    /// Height of the block that applied it.
    pub height: u64,
    /// For a pending transfer: where it stands.
    pub status: PendingStatus,
}

/// Bytes of an encoded [`TransferRecord`].
pub const TRANSFER_RECORD_BYTES: usize = TRANSFER_BYTES + 16 * 3 + 8 + 8 + 1;

impl TransferRecord {
    /// Canonical encoding.
    pub fn encode(&self, w: &mut Writer) {
        self.transfer.encode(w);
        w.u128(self.amount_applied);
        w.u128(self.debit_account_id);
        w.u128(self.credit_account_id);
        w.u64(self.timestamp_us);
        w.u64(self.height);
        w.u8(self.status as u8);
    }

    /// Decodes [`TransferRecord::encode`]'s output.
    pub fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let transfer = Transfer::decode(r)?;
        let amount_applied = r.u128("record.amount_applied")?;
        let debit_account_id = r.u128("record.debit_account_id")?;
        let credit_account_id = r.u128("record.credit_account_id")?;
        let timestamp_us = r.u64("record.timestamp_us")?;
        let height = r.u64("record.height")?;
        let tag = r.u8("record.status")?;
        let status = PendingStatus::from_u8(tag).ok_or(DecodeError::UnknownTag {
            what: "record.status",
            tag: tag.into(),
        })?;
        Ok(Self {
            transfer,
            amount_applied,
            debit_account_id,
            credit_account_id,
            timestamp_us,
            height,
            status,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_transfer() -> Transfer {
        Transfer {
            id: 1,
            debit_account_id: 2,
            credit_account_id: 3,
            amount: 4,
            pending_id: 0,
            user_data: 5,
            timeout_s: 6,
            ledger: 7,
            code: 8,
            flags: TransferFlags(TransferFlags::LINKED),
            decision_hash: [9; 32],
        }
    }

    #[test]
    fn batches_round_trip() {
        let batch = Batch::CreateTransfers {
            entries: vec![
                TransferEntry {
                    transfer: sample_transfer(),
                    gate: Some(GateApproval {
                        gate_key: [1; 32],
                        signature: [2; 64],
                    }),
                    signature: None,
                },
                TransferEntry {
                    transfer: sample_transfer(),
                    gate: None,
                    signature: Some([3; 64]),
                },
            ],
            batch_signature: Some(BatchSignature {
                signer: [2; 33],
                signature: [4; 64],
            }),
        };
        let mut w = Writer::new();
        batch.encode(&mut w);
        let bytes = w.into_bytes();
        let mut r = Reader::new(&bytes);
        assert_eq!(Batch::decode(&mut r).unwrap(), batch);
        r.finish().unwrap();
        assert_eq!(sample_transfer().canonical_bytes().len(), TRANSFER_BYTES);
        // Every truncation is an error, never a panic.
        for cut in 0..bytes.len() {
            assert!(Batch::decode(&mut Reader::new(&bytes[..cut])).is_err());
        }
    }
}
