//! Every refusal the API can give, mapped to a gRPC status with the stable reject code in its
//! details (`grpc-status-details-bin` = google.rpc.Status carrying one `rempart.v1.ErrorDetail`)
//! and in the `rempart-reject-code` trailer.
//!
//! Codes: the matching engine's `RejectCode` n is published as 1000 + n; custody's
//! `custody::RejectCode` n (1001-1099) as 1000 + n (2001-2099, [`CUSTODY_CODE_BASE`]); the
//! gateway's own refusals ([`ApiReject`]) are 9000-9999; kyc-aml's `Reject` k (1001-7999) is
//! published as 20000 + k ([`KYC_CODE_BASE`], mapped in `node::compliance`). Numbers are never
//! reused or renumbered.

use matching_engine::RejectCode;
use prost::Message;
use rempart_proto::v1::ErrorDetail;
use tonic::{Code, Status};

/// Offset of the engine's reject codes in the API's code space.
pub const ENGINE_CODE_BASE: u32 = 1000;
/// Offset of kyc-aml's reject codes (1001-7999) in the API's code space.
pub const KYC_CODE_BASE: u32 = 20_000;

/// Refusals made by the gateway itself (authentication, authorisation, validation, limits).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum ApiReject {
    MissingCredentials = 9001,
    InvalidCredentials = 9002,
    KeyExpired = 9003,
    KeyRevoked = 9004,
    RoleNotAllowed = 9010,
    NotAccountOwner = 9011,
    RateLimited = 9020,
    TooManyStreams = 9021,
    InvalidDecimal = 9030,
    MissingField = 9031,
    InvalidField = 9032,
    FieldTooLong = 9033,
    UnknownOrder = 9034,
    KycRequired = 9040,
    // 9050 was NOT_WIRED (a service not connected yet); retired, never to be reused.
    ShuttingDown = 9060,
    NotInProof = 9070,
    LedgerUnknownTransfer = 9080,
    LedgerUnknownBlock = 9081,
    LedgerResultTooLarge = 9082,
    LedgerRefused = 9083,
    LedgerBusy = 9084,
    LedgerStopped = 9085,
    Internal = 9099,
}

impl ApiReject {
    /// The stable number.
    pub fn code(self) -> u32 {
        self as u32
    }

    /// The stable symbolic name.
    pub fn name(self) -> &'static str {
        match self {
            ApiReject::MissingCredentials => "MISSING_CREDENTIALS",
            ApiReject::InvalidCredentials => "INVALID_CREDENTIALS",
            ApiReject::KeyExpired => "KEY_EXPIRED",
            ApiReject::KeyRevoked => "KEY_REVOKED",
            ApiReject::RoleNotAllowed => "ROLE_NOT_ALLOWED",
            ApiReject::NotAccountOwner => "NOT_ACCOUNT_OWNER",
            ApiReject::RateLimited => "RATE_LIMITED",
            ApiReject::TooManyStreams => "TOO_MANY_STREAMS",
            ApiReject::InvalidDecimal => "INVALID_DECIMAL",
            ApiReject::MissingField => "MISSING_FIELD",
            ApiReject::InvalidField => "INVALID_FIELD",
            ApiReject::FieldTooLong => "FIELD_TOO_LONG",
            ApiReject::UnknownOrder => "UNKNOWN_ORDER",
            ApiReject::KycRequired => "KYC_REQUIRED",
            ApiReject::ShuttingDown => "SHUTTING_DOWN",
            ApiReject::NotInProof => "NOT_IN_PROOF",
            ApiReject::LedgerUnknownTransfer => "LEDGER_UNKNOWN_TRANSFER",
            ApiReject::LedgerUnknownBlock => "LEDGER_UNKNOWN_BLOCK",
            ApiReject::LedgerResultTooLarge => "LEDGER_RESULT_TOO_LARGE",
            ApiReject::LedgerRefused => "LEDGER_REFUSED",
            ApiReject::LedgerBusy => "LEDGER_BUSY",
            ApiReject::LedgerStopped => "LEDGER_STOPPED",
            ApiReject::Internal => "INTERNAL",
        }
    }

    /// A short English explanation.
    pub fn message(self) -> &'static str {
        match self {
            ApiReject::MissingCredentials => "no `authorization: Bearer <key>` metadata",
            ApiReject::InvalidCredentials => "API key unknown or secret wrong",
            ApiReject::KeyExpired => "API key expired",
            ApiReject::KeyRevoked => "API key revoked",
            ApiReject::RoleNotAllowed => "the key's roles do not allow this call",
            ApiReject::NotAccountOwner => "the key may not act on this account",
            ApiReject::RateLimited => "rate limit exceeded",
            ApiReject::TooManyStreams => "too many open streams",
            ApiReject::InvalidDecimal => "not a canonical decimal string",
            ApiReject::MissingField => "required field missing",
            ApiReject::InvalidField => "field value not allowed",
            ApiReject::FieldTooLong => "field too long",
            ApiReject::UnknownOrder => "unknown order",
            ApiReject::KycRequired => {
                "the account has no active KYC tier or is frozen by compliance"
            }
            ApiReject::ShuttingDown => "node is shutting down",
            ApiReject::NotInProof => "the account has no leaf in the latest proof of reserves",
            ApiReject::LedgerUnknownTransfer => "no such transfer on the ledger",
            ApiReject::LedgerUnknownBlock => "no block at this height",
            ApiReject::LedgerResultTooLarge => "the answer would exceed its bound",
            ApiReject::LedgerRefused => "the ledger refused the transfer",
            ApiReject::LedgerBusy => "the settlement queue is full",
            ApiReject::LedgerStopped => "the ledger is not running",
            ApiReject::Internal => "internal failure",
        }
    }

    /// The gRPC status code this refusal travels with.
    pub fn grpc_code(self) -> Code {
        match self {
            ApiReject::MissingCredentials
            | ApiReject::InvalidCredentials
            | ApiReject::KeyExpired
            | ApiReject::KeyRevoked => Code::Unauthenticated,
            ApiReject::RoleNotAllowed | ApiReject::NotAccountOwner => Code::PermissionDenied,
            ApiReject::RateLimited | ApiReject::TooManyStreams => Code::ResourceExhausted,
            ApiReject::InvalidDecimal
            | ApiReject::MissingField
            | ApiReject::InvalidField
            | ApiReject::FieldTooLong => Code::InvalidArgument,
            ApiReject::UnknownOrder
            | ApiReject::NotInProof
            | ApiReject::LedgerUnknownTransfer
            | ApiReject::LedgerUnknownBlock => Code::NotFound,
            ApiReject::LedgerResultTooLarge => Code::OutOfRange,
            ApiReject::LedgerRefused => Code::FailedPrecondition,
            ApiReject::LedgerBusy => Code::ResourceExhausted,
            ApiReject::LedgerStopped => Code::Unavailable,
            ApiReject::KycRequired => Code::FailedPrecondition,
            ApiReject::ShuttingDown => Code::Unavailable,
            ApiReject::Internal => Code::Internal,
        }
    }

    /// The status, with `detail` appended to the message and `field` named.
    pub fn status(self, field: &str, detail: &str) -> Status {
        let message = if detail.is_empty() {
            self.message().to_string()
        } else {
            format!("{}: {detail}", self.message())
        };
        build_status(
            self.grpc_code(),
            ErrorDetail {
                code: self.code(),
                name: self.name().into(),
                message,
                field: field.into(),
                retry_after_ms: 0,
            },
        )
    }

    /// The [`ErrorDetail`] alone (for stream errors).
    pub fn detail(self, field: &str, detail: &str) -> ErrorDetail {
        ErrorDetail {
            code: self.code(),
            name: self.name().into(),
            message: if detail.is_empty() {
                self.message().into()
            } else {
                format!("{}: {detail}", self.message())
            },
            field: field.into(),
            retry_after_ms: 0,
        }
    }
}

/// A RESOURCE_EXHAUSTED status telling the client when to retry, both in the detail and in
/// the `grpc-retry-pushback-ms` trailer that gRPC client libraries honour.
pub fn rate_limited(retry_after_ms: u64, what: &str) -> Status {
    let mut detail = ApiReject::RateLimited.detail("", what);
    detail.retry_after_ms = retry_after_ms.max(1);
    let mut status = build_status(Code::ResourceExhausted, detail);
    if let Ok(v) = retry_after_ms.max(1).to_string().parse() {
        status.metadata_mut().insert("grpc-retry-pushback-ms", v);
    }
    status
}

/// The stable symbolic name of an engine reject code ("PRICE_OFF_TICK").
pub fn engine_code_name(code: RejectCode) -> String {
    variant_name(&code)
}

/// A refusal enum variant's stable symbolic name from its `Debug` form: `PriceOffTick` →
/// `PRICE_OFF_TICK` (every crate's reject enums are fieldless, so `Debug` is the variant).
pub fn variant_name(variant: &impl std::fmt::Debug) -> String {
    let debug = format!("{variant:?}");
    let mut name = String::with_capacity(debug.len() + 4);
    for (i, ch) in debug.chars().enumerate() {
        if ch.is_ascii_uppercase() && i > 0 {
            name.push('_');
        }
        name.push(ch.to_ascii_uppercase());
    }
    name
}

/// The gRPC code an engine refusal travels with.
pub fn engine_grpc_code(code: RejectCode) -> Code {
    use RejectCode as R;
    match code {
        R::UnknownMarket | R::UnknownOrder | R::UnknownAsset => Code::NotFound,
        R::MarketExists => Code::AlreadyExists,
        R::MarketHalted
        | R::PriceOutsideBand
        | R::InsufficientFunds
        | R::TooManyOpenOrders
        | R::PostOnlyWouldTake
        | R::FokNotFillable
        | R::NoReferencePrice
        | R::StopWouldTriggerNow
        | R::NotAllowedInAuction
        | R::NotInAuction
        | R::AmendWouldCross
        | R::OrderNotAmendable
        | R::InvalidPhase => Code::FailedPrecondition,
        R::EngineFull | R::TooManyPriceLevels | R::TooManyAccounts | R::TooManyMarkets => {
            Code::ResourceExhausted
        }
        R::SeqOutOfOrder | R::TimeWentBackwards => Code::Internal,
        _ => Code::InvalidArgument,
    }
}

/// The [`ErrorDetail`] of an engine refusal.
pub fn engine_detail(code: RejectCode, field: &str) -> ErrorDetail {
    ErrorDetail {
        code: ENGINE_CODE_BASE + u32::from(code.code()),
        name: engine_code_name(code),
        message: code.message().into(),
        field: field.into(),
        retry_after_ms: 0,
    }
}

/// The status of an engine refusal.
pub fn engine_status(code: RejectCode, field: &str) -> Status {
    build_status(engine_grpc_code(code), engine_detail(code, field))
}

/// Offset of custody's reject codes (themselves 1001-1099) in the API's code space.
pub const CUSTODY_CODE_BASE: u32 = 1000;

/// The gRPC code a custody refusal travels with.
pub fn custody_grpc_code(code: custody::RejectCode) -> Code {
    use custody::RejectCode as R;
    match code {
        R::UnknownWithdrawal | R::UnknownWallet | R::UnknownPolicyChange => Code::NotFound,
        R::DuplicateId | R::DuplicateAddress => Code::AlreadyExists,
        R::InitiatorCannotApprove | R::NotAnApprover | R::NotAllowedToCancel => {
            Code::PermissionDenied
        }
        R::TooManyWithdrawals | R::TooManyPendingChanges => Code::ResourceExhausted,
        R::AmountZero | R::AddressRejected | R::InvalidPolicy | R::AssetMismatch => {
            Code::InvalidArgument
        }
        _ => Code::FailedPrecondition,
    }
}

/// The status of a custody refusal (code 1000 + n, name from the variant), with `detail`
/// appended to the fixed message when not empty.
pub fn custody_status(code: custody::RejectCode, field: &str, detail: &str) -> Status {
    let name = variant_name(&code);
    let message = if detail.is_empty() {
        code.message().to_string()
    } else {
        format!("{}: {detail}", code.message())
    };
    build_status(
        custody_grpc_code(code),
        ErrorDetail {
            code: CUSTODY_CODE_BASE + u32::from(code.code()),
            name,
            message,
            field: field.into(),
            retry_after_ms: 0,
        },
    )
}

/// google.rpc.Status, the message gRPC's rich error model puts in `grpc-status-details-bin`.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
    #[prost(message, repeated, tag = "3")]
    details: Vec<prost_types::Any>,
}

/// Type URL of [`ErrorDetail`] inside `google.protobuf.Any`.
pub const ERROR_DETAIL_TYPE_URL: &str = "type.googleapis.com/rempart.v1.ErrorDetail";

/// A status carrying `detail` in its details and its code in the `rempart-reject-code` trailer.
pub fn build_status(code: Code, detail: ErrorDetail) -> Status {
    let rpc = RpcStatus {
        code: code as i32,
        message: detail.message.clone(),
        details: vec![prost_types::Any {
            type_url: ERROR_DETAIL_TYPE_URL.into(),
            value: detail.encode_to_vec(),
        }],
    };
    let mut status = Status::with_details(code, detail.message.clone(), rpc.encode_to_vec().into());
    if let Ok(v) = detail.code.to_string().parse() {
        status.metadata_mut().insert("rempart-reject-code", v);
    }
    status
}

/// Reads the [`ErrorDetail`] back out of a status (clients and tests).
pub fn detail_of(status: &Status) -> Option<ErrorDetail> {
    let rpc = RpcStatus::decode(status.details()).ok()?;
    let any = rpc
        .details
        .into_iter()
        .find(|a| a.type_url == ERROR_DETAIL_TYPE_URL)?;
    ErrorDetail::decode(any.value.as_slice()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_codes_get_offset_names_and_round_trip_through_status() {
        assert_eq!(engine_code_name(RejectCode::PriceOffTick), "PRICE_OFF_TICK");
        let status = engine_status(RejectCode::PriceOffTick, "price");
        assert_eq!(status.code(), Code::InvalidArgument);
        let detail = detail_of(&status).expect("detail present");
        assert_eq!(detail.code, 1027);
        assert_eq!(detail.field, "price");
        assert_eq!(
            status
                .metadata()
                .get("rempart-reject-code")
                .and_then(|v| v.to_str().ok()),
            Some("1027")
        );
    }

    #[test]
    fn custody_codes_are_offset_and_named() {
        let status = custody_status(custody::RejectCode::InitiatorCannotApprove, "", "");
        assert_eq!(status.code(), Code::PermissionDenied);
        let detail = detail_of(&status).expect("detail present");
        assert_eq!(
            (detail.code, detail.name.as_str()),
            (2014, "INITIATOR_CANNOT_APPROVE")
        );
        let status = custody_status(custody::RejectCode::UnknownWithdrawal, "withdrawal_id", "");
        assert_eq!(status.code(), Code::NotFound);
        assert_eq!(detail_of(&status).map(|d| d.code), Some(2012));
    }

    #[test]
    fn rate_limit_carries_pushback() {
        let status = rate_limited(250, "per key");
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert_eq!(detail_of(&status).map(|d| d.retry_after_ms), Some(250));
        assert_eq!(
            status
                .metadata()
                .get("grpc-retry-pushback-ms")
                .and_then(|v| v.to_str().ok()),
            Some("250")
        );
    }
}
