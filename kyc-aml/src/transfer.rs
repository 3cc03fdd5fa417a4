//! The transfer the gate evaluates: who, what for, how much (EUR-equivalent minor units for
//! limits), to or from whom, and the travel-rule data an external transfer carries.

use serde::{Deserialize, Serialize};

use crate::customer::{Activity, CustomerId};
use crate::limits::FIELD_LEN_MAX;
use crate::reject::{Refusal, Reject};
use crate::travel_rule::TravelRuleData;
use crate::validate::{country_ok, field_ok};

/// Which way money moves, seen from the customer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum Direction {
    /// Money comes in to the customer.
    Incoming = 1,
    /// Money leaves the customer.
    Outgoing = 2,
}

/// Who is on the other side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CounterpartyKind {
    /// Another customer of this exchange (trade legs, internal transfers).
    Customer(CustomerId),
    /// Another virtual-asset service provider; travel-rule data required.
    Vasp,
    /// A self-hosted (unhosted) address; travel-rule data required, and above EUR 1,000 proof
    /// that the customer controls it (TFR 2023/1113 art. 14(5)).
    SelfHosted {
        /// Whether the customer proved control of the address (signed message, micro-payment).
        proof_of_control: bool,
    },
    /// A bank account (fiat deposit or payout through the credit institution).
    Bank,
    /// The exchange, the treasury or an issuer (fees, mint, burn).
    Operator,
}

/// The other side of a transfer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counterparty {
    /// A stable key for windows per counterparty: ledger account, IBAN or chain address.
    pub key: String,
    /// What it is.
    pub kind: CounterpartyKind,
    /// Its name, when known (screened against the lists).
    pub name: Option<String>,
    /// ISO 3166-1 alpha-2, when known.
    pub country: Option<String>,
}

/// A transfer presented to the gate before settlement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transfer {
    /// The settlement transfer id (idempotency key).
    pub id: u128,
    /// The customer whose limits and history apply.
    pub customer: CustomerId,
    /// What it is for.
    pub activity: Activity,
    /// In or out.
    pub direction: Direction,
    /// Asset code (CITY, EUR, LCL).
    pub asset: String,
    /// Amount in the asset's minor units.
    pub amount_minor: u64,
    /// EUR-equivalent in euro cents, converted by the caller at its reference rate; limits and
    /// thresholds are in these units.
    pub amount_eur_minor: u64,
    /// The other side.
    pub counterparty: Counterparty,
    /// IVMS101 data for transfers to or from VASPs and self-hosted addresses.
    pub travel_rule: Option<TravelRuleData>,
}

/// Longest asset code.
pub const ASSET_LEN_MAX: usize = 8;

impl Transfer {
    /// Shapes: non-zero amounts, bounded fields, valid country code.
    pub fn validate(&self) -> Result<(), Refusal> {
        let bad = |f: &str| Refusal::new(Reject::InvalidTransfer, f.to_string());
        if self.amount_minor == 0 || self.amount_eur_minor == 0 {
            return Err(bad("amount is zero"));
        }
        if self.asset.is_empty()
            || self.asset.len() > ASSET_LEN_MAX
            || !self.asset.bytes().all(|b| b.is_ascii_uppercase())
        {
            return Err(bad("asset"));
        }
        let cp = &self.counterparty;
        if cp.key.is_empty() || cp.key.len() > FIELD_LEN_MAX {
            return Err(bad("counterparty.key"));
        }
        if cp.name.as_deref().is_some_and(|n| !field_ok(n)) {
            return Err(bad("counterparty.name"));
        }
        if cp.country.as_deref().is_some_and(|c| !country_ok(c)) {
            return Err(bad("counterparty.country"));
        }
        if let CounterpartyKind::Customer(id) = cp.kind
            && id == self.customer
        {
            return Err(bad("counterparty is the customer"));
        }
        Ok(())
    }

    /// Whether the travel rule applies: crypto-asset transfers to or from another VASP or a
    /// self-hosted address.
    pub fn needs_travel_rule(&self) -> bool {
        matches!(
            self.counterparty.kind,
            CounterpartyKind::Vasp | CounterpartyKind::SelfHosted { .. }
        )
    }
}
