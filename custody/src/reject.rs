//! Business refusals: stable numeric codes with fixed messages. A refusal is a value returned to
//! the caller (and written to the audit log), never an `Err`: the machine worked, the request
//! was not allowed.

use serde::{Deserialize, Serialize};

/// Why custody refused a command. The discriminants are stable: never renumber, only append.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[repr(u16)]
pub enum RejectCode {
    /// The move is not on an allowed path (only cold → warm → hot, and out from hot to a
    /// whitelisted address).
    FlowNotAllowed = 1001,
    /// No wallet has this id.
    UnknownWallet = 1002,
    /// The asset is not the wallet's asset.
    AssetMismatch = 1003,
    /// The destination is not in the address book.
    DestinationNotWhitelisted = 1004,
    /// The destination is whitelisted but its activation delay has not passed yet.
    DestinationNotYetActive = 1005,
    /// Amount zero.
    AmountZero = 1006,
    /// The wallet's known balance does not cover the amount.
    InsufficientBalance = 1007,
    /// The move would take the hot wallet above its float limit.
    HotFloatExceeded = 1008,
    /// The policy's decision was to deny.
    PolicyDenied = 1009,
    /// A withdrawal from a cold wallet was cleared by a rule that asks for no quorum.
    ColdRequiresQuorum = 1010,
    /// A withdrawal or change with this id exists already.
    DuplicateId = 1011,
    /// No withdrawal has this id.
    UnknownWithdrawal = 1012,
    /// The withdrawal is not in a state where this command applies.
    WrongState = 1013,
    /// The initiator of a request cannot approve it.
    InitiatorCannotApprove = 1014,
    /// The approver is not a member of the group the rule names.
    NotAnApprover = 1015,
    /// This approver already has a live approval on this request.
    AlreadyApproved = 1016,
    /// The time lock has not run out yet.
    TimeLockActive = 1017,
    /// Only the initiator or an administrator can cancel.
    NotAllowedToCancel = 1018,
    /// No policy change has this id.
    UnknownPolicyChange = 1019,
    /// The proposed policy does not load (see the policy error in the audit log).
    InvalidPolicy = 1020,
    /// Too many policy changes are pending.
    TooManyPendingChanges = 1021,
    /// The address book is full, or the address is malformed.
    AddressRejected = 1022,
    /// An address with this id exists already.
    DuplicateAddress = 1023,
    /// Too many withdrawals are held in memory.
    TooManyWithdrawals = 1024,
}

impl RejectCode {
    /// The stable numeric code.
    pub fn code(self) -> u16 {
        self as u16
    }

    /// A fixed human-readable message.
    pub fn message(self) -> &'static str {
        match self {
            Self::FlowNotAllowed => {
                "flow not allowed: only cold → warm → hot, and out from hot to a whitelisted address"
            }
            Self::UnknownWallet => "unknown wallet",
            Self::AssetMismatch => "asset does not match the wallet",
            Self::DestinationNotWhitelisted => "destination is not whitelisted",
            Self::DestinationNotYetActive => "destination is whitelisted but not active yet",
            Self::AmountZero => "amount must be positive",
            Self::InsufficientBalance => "insufficient wallet balance",
            Self::HotFloatExceeded => "the hot wallet float limit would be exceeded",
            Self::PolicyDenied => "denied by policy",
            Self::ColdRequiresQuorum => "cold wallet withdrawals need a quorum of approvals",
            Self::DuplicateId => "id already used",
            Self::UnknownWithdrawal => "unknown withdrawal",
            Self::WrongState => "command not valid in the current state",
            Self::InitiatorCannotApprove => "the initiator cannot approve their own request",
            Self::NotAnApprover => "not a member of the approver group",
            Self::AlreadyApproved => "already approved by this approver",
            Self::TimeLockActive => "time lock still running",
            Self::NotAllowedToCancel => "only the initiator or an administrator can cancel",
            Self::UnknownPolicyChange => "unknown policy change",
            Self::InvalidPolicy => "the proposed policy is invalid",
            Self::TooManyPendingChanges => "too many pending policy changes",
            Self::AddressRejected => "address rejected",
            Self::DuplicateAddress => "address id already used",
            Self::TooManyWithdrawals => "too many withdrawals held",
        }
    }
}

impl std::fmt::Display for RejectCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message(), self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_stable() {
        assert_eq!(RejectCode::FlowNotAllowed.code(), 1001);
        assert_eq!(RejectCode::PolicyDenied.code(), 1009);
        assert_eq!(RejectCode::TooManyWithdrawals.code(), 1024);
        assert!(RejectCode::TimeLockActive.to_string().contains("1017"));
    }
}
