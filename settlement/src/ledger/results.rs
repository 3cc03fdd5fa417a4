//! The ledger's business outcomes: one stable numbered code per way an account or a transfer
//! can be created or refused. Clients, the exchange and regulators key on these numbers; a code
//! is never renumbered or reused (new codes are appended).

macro_rules! result_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $code:literal => $message:literal,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u16)]
        pub enum $name {
            $($(#[$vmeta])* $variant = $code,)*
        }

        impl $name {
            /// Every code, in numeric order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];

            /// The stable numeric code.
            pub fn code(self) -> u16 {
                self as u16
            }

            /// A human-readable explanation.
            pub fn message(self) -> &'static str {
                match self {
                    $($name::$variant => $message,)*
                }
            }

            /// The result with this code, if any.
            pub fn from_code(code: u16) -> Option<Self> {
                match code {
                    $($code => Some($name::$variant),)*
                    _ => None,
                }
            }

            /// True for `Ok` and for an identical resubmission (`Exists`): the effect is in the
            /// ledger either way.
            pub fn is_applied(self) -> bool {
                matches!(self, $name::Ok | $name::Exists)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{} ({})", self.message(), self.code())
            }
        }
    };
}

result_enum! {
    /// The outcome of creating one account.
    CreateAccountResult {
        /// The account was created.
        Ok = 0 => "ok",
        /// Another account of the same linked chain failed, so this one was not created.
        LinkedEventFailed = 1 => "linked event failed",
        /// The batch ends with the linked flag set: the chain is never closed.
        LinkedEventChainOpen = 2 => "linked event chain open",
        /// A flag bit that has no meaning, or `closed`, which is state and not an option.
        ReservedFlag = 3 => "reserved flag",
        /// Id 0 is reserved.
        IdMustNotBeZero = 4 => "id must not be zero",
        /// Id 2^128-1 is reserved.
        IdMustNotBeIntMax = 5 => "id must not be int max",
        /// Both balance limits at once make every transfer impossible.
        FlagsAreMutuallyExclusive = 6 => "flags are mutually exclusive",
        /// Ledger 0 is reserved.
        LedgerMustNotBeZero = 7 => "ledger must not be zero",
        /// Code 0 is reserved.
        CodeMustNotBeZero = 8 => "code must not be zero",
        /// The controller is not a valid compressed secp256k1 public key.
        ControllerKeyInvalid = 9 => "controller key invalid",
        /// The id exists with other flags.
        ExistsWithDifferentFlags = 10 => "exists with different flags",
        /// The id exists with other user data.
        ExistsWithDifferentUserData = 11 => "exists with different user_data",
        /// The id exists on another ledger.
        ExistsWithDifferentLedger = 12 => "exists with different ledger",
        /// The id exists with another code.
        ExistsWithDifferentCode = 13 => "exists with different code",
        /// The id exists with another controller key.
        ExistsWithDifferentController = 14 => "exists with different controller",
        /// The same account exists already (an idempotent resubmission).
        Exists = 15 => "exists",
        /// The ledger holds its maximum number of accounts.
        AccountsFull = 16 => "accounts full",
    }
}

result_enum! {
    /// The outcome of one transfer.
    CreateTransferResult {
        /// The transfer was applied.
        Ok = 0 => "ok",
        /// Another transfer of the same linked chain failed, so this one was not applied.
        LinkedEventFailed = 1 => "linked event failed",
        /// The batch ends with the linked flag set: the chain is never closed.
        LinkedEventChainOpen = 2 => "linked event chain open",
        /// A flag bit that has no meaning.
        ReservedFlag = 3 => "reserved flag",
        /// Id 0 is reserved.
        IdMustNotBeZero = 4 => "id must not be zero",
        /// Id 2^128-1 is reserved.
        IdMustNotBeIntMax = 5 => "id must not be int max",
        /// The gate decision is absent.
        GateDecisionMissing = 6 => "gate decision missing",
        /// The decision is signed by a key that is not a configured gate key.
        GateKeyUnknown = 7 => "gate key unknown",
        /// The gate's signature over the decision hash does not verify.
        GateSignatureInvalid = 8 => "gate signature invalid",
        /// No controller signature (neither on the transfer nor on its batch).
        SignatureMissing = 9 => "signature missing",
        /// The controller signature (or the batch signature) does not verify.
        SignatureInvalid = 10 => "signature invalid",
        /// The batch signer does not control the account being debited.
        SignerNotController = 11 => "signer is not the debit account's controller",
        /// pending, post_pending and void_pending are exclusive.
        FlagsAreMutuallyExclusive = 12 => "flags are mutually exclusive",
        /// A debit account id of 0 (or 2^128-1) is reserved.
        DebitAccountIdMustNotBeZero = 13 => "debit_account_id must not be zero or int max",
        /// A credit account id of 0 (or 2^128-1) is reserved.
        CreditAccountIdMustNotBeZero = 14 => "credit_account_id must not be zero or int max",
        /// Debit and credit accounts are the same.
        AccountsMustBeDifferent = 15 => "accounts must be different",
        /// pending_id is only for post_pending / void_pending.
        PendingIdMustBeZero = 16 => "pending_id must be zero",
        /// post_pending / void_pending need a pending_id.
        PendingIdMustNotBeZero = 17 => "pending_id must not be zero or int max",
        /// A transfer cannot post or void itself.
        PendingIdMustBeDifferent = 18 => "pending_id must be different",
        /// Only a pending transfer can time out.
        TimeoutReservedForPendingTransfer = 19 => "timeout reserved for pending transfer",
        /// Zero-amount transfers move nothing and are refused.
        AmountMustNotBeZero = 20 => "amount must not be zero",
        /// Ledger 0 is reserved.
        LedgerMustNotBeZero = 21 => "ledger must not be zero",
        /// Code 0 is reserved.
        CodeMustNotBeZero = 22 => "code must not be zero",
        /// No account has the debit account id.
        DebitAccountNotFound = 23 => "debit account not found",
        /// No account has the credit account id.
        CreditAccountNotFound = 24 => "credit account not found",
        /// The two accounts hold different assets.
        AccountsMustHaveTheSameLedger = 25 => "accounts must have the same ledger",
        /// The transfer's ledger differs from its accounts'.
        TransferMustHaveTheSameLedgerAsAccounts = 26 => "transfer must have the same ledger as accounts",
        /// No transfer has the pending_id.
        PendingTransferNotFound = 27 => "pending transfer not found",
        /// The transfer named by pending_id is not a pending transfer.
        PendingTransferNotPending = 28 => "pending transfer not pending",
        /// The debit account differs from the pending transfer's.
        PendingTransferHasDifferentDebitAccountId = 29 => "pending transfer has different debit_account_id",
        /// The credit account differs from the pending transfer's.
        PendingTransferHasDifferentCreditAccountId = 30 => "pending transfer has different credit_account_id",
        /// The ledger differs from the pending transfer's.
        PendingTransferHasDifferentLedger = 31 => "pending transfer has different ledger",
        /// The code differs from the pending transfer's.
        PendingTransferHasDifferentCode = 32 => "pending transfer has different code",
        /// Posting more than is pending.
        ExceedsPendingTransferAmount = 33 => "exceeds pending transfer amount",
        /// Voiding with an amount other than the pending amount.
        PendingTransferHasDifferentAmount = 34 => "pending transfer has different amount",
        /// The pending transfer was posted already.
        PendingTransferAlreadyPosted = 35 => "pending transfer already posted",
        /// The pending transfer was voided already.
        PendingTransferAlreadyVoided = 36 => "pending transfer already voided",
        /// The pending transfer timed out.
        PendingTransferExpired = 37 => "pending transfer expired",
        /// The id exists with other flags.
        ExistsWithDifferentFlags = 38 => "exists with different flags",
        /// The id exists with another debit account.
        ExistsWithDifferentDebitAccountId = 39 => "exists with different debit_account_id",
        /// The id exists with another credit account.
        ExistsWithDifferentCreditAccountId = 40 => "exists with different credit_account_id",
        /// The id exists with another amount.
        ExistsWithDifferentAmount = 41 => "exists with different amount",
        /// The id exists with another pending_id.
        ExistsWithDifferentPendingId = 42 => "exists with different pending_id",
        /// The id exists with other user data.
        ExistsWithDifferentUserData = 43 => "exists with different user_data",
        /// The id exists with another timeout.
        ExistsWithDifferentTimeout = 44 => "exists with different timeout",
        /// The id exists with another code.
        ExistsWithDifferentCode = 45 => "exists with different code",
        /// The id exists on another ledger.
        ExistsWithDifferentLedger = 46 => "exists with different ledger",
        /// The same transfer was applied already (an idempotent resubmission).
        Exists = 47 => "exists",
        /// This id's first attempt failed; a retry never turns a failure into a success.
        IdAlreadyFailed = 48 => "id already failed",
        /// The debit account's pending debits would overflow.
        OverflowsDebitsPending = 49 => "overflows debits pending",
        /// The credit account's pending credits would overflow.
        OverflowsCreditsPending = 50 => "overflows credits pending",
        /// The debit account's posted debits would overflow.
        OverflowsDebitsPosted = 51 => "overflows debits posted",
        /// The credit account's posted credits would overflow.
        OverflowsCreditsPosted = 52 => "overflows credits posted",
        /// The debit account's pending plus posted debits would overflow.
        OverflowsDebits = 53 => "overflows debits",
        /// The credit account's pending plus posted credits would overflow.
        OverflowsCredits = 54 => "overflows credits",
        /// The timeout would overflow the expiry timestamp.
        OverflowsTimeout = 55 => "overflows timeout",
        /// The debit account's debits would exceed its credits (debits_must_not_exceed_credits).
        ExceedsCredits = 56 => "exceeds credits",
        /// The credit account's credits would exceed its debits (credits_must_not_exceed_debits).
        ExceedsDebits = 57 => "exceeds debits",
        /// The debit account is closed.
        DebitAccountClosed = 58 => "debit account closed",
        /// The credit account is closed.
        CreditAccountClosed = 59 => "credit account closed",
        /// Closing an account needs a pending transfer (so that voiding it reopens the account).
        ClosingTransferMustBePending = 60 => "closing transfer must be pending",
        /// The ledger holds its maximum number of transfers.
        TransfersFull = 61 => "transfers full",
    }
}

impl CreateTransferResult {
    /// Refusals for missing or wrong authority: the transfer was never validly submitted, so
    /// its id is not marked as failed (otherwise anyone could burn another client's id by
    /// submitting garbage under it) and a correctly authorised retry may still succeed.
    pub fn is_authority_refusal(self) -> bool {
        matches!(
            self,
            Self::GateDecisionMissing
                | Self::GateKeyUnknown
                | Self::GateSignatureInvalid
                | Self::SignatureMissing
                | Self::SignatureInvalid
                | Self::SignerNotController
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_dense_unique_and_round_trip() {
        for (index, result) in CreateTransferResult::ALL.iter().enumerate() {
            assert_eq!(result.code() as usize, index);
            assert_eq!(
                CreateTransferResult::from_code(result.code()),
                Some(*result)
            );
            assert!(!result.message().is_empty());
        }
        for (index, result) in CreateAccountResult::ALL.iter().enumerate() {
            assert_eq!(result.code() as usize, index);
            assert_eq!(CreateAccountResult::from_code(result.code()), Some(*result));
        }
        assert_eq!(CreateTransferResult::from_code(9999), None);
    }
}
