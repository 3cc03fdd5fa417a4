//! Customers (natural persons and legal entities), their personal data, customer due diligence
//! levels, the tiers those levels map to, and each tier's limits.
//!
//! Only [`CustomerId`] leaves this crate. [`PersonalData`] lives in the stores and nowhere else;
//! [`CustomerProfile`] is the non-personal view the gate works from.
//!
//! No anonymous accounts: a customer whose CDD level is [`CddLevel::None`] is at
//! [`Tier::Tier0`], whose limits are all zero, so nothing moves before basic CDD is complete.

use serde::{Deserialize, Serialize};

use crate::limits::{BENEFICIAL_OWNER_SHARE_BP_MIN, BENEFICIAL_OWNERS_MAX, PEP_RETENTION_US};
use crate::reject::{Refusal, Reject};
use crate::validate::{country_ok, date_ok, field_ok};

/// The pseudonymous customer id: the only customer identifier other crates see.
pub type CustomerId = u64;

/// UTC time in microseconds since the Unix epoch; it comes in with every command.
pub type TimestampUs = i64;

/// Natural person or legal entity (a merchant, onboarded with KYB).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum CustomerKind {
    /// A natural person.
    NaturalPerson = 1,
    /// A legal entity; needs its beneficial owners.
    LegalEntity = 2,
}

/// A natural person owning 25 % or more of a legal entity (or controlling it otherwise).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BeneficialOwner {
    /// Full legal name.
    pub full_name: String,
    /// `YYYY-MM-DD`.
    pub birth_date: Option<String>,
    /// ISO 3166-1 alpha-2.
    pub nationality: Option<String>,
    /// Ownership share in basis points (2500 = 25 %).
    pub share_bp: u16,
    /// Whether the owner's identity was verified (a valid attestation or documents).
    pub verified: bool,
}

/// A postal address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostalAddress {
    /// Street and number.
    pub line: String,
    /// Town.
    pub town: String,
    /// Postcode, if the country has them.
    pub post_code: Option<String>,
    /// ISO 3166-1 alpha-2.
    pub country: String,
}

/// A customer's personal data. It lives only in the stores and is what GDPR erasure removes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersonalData {
    /// Full legal name (the registered name for a legal entity).
    pub full_name: String,
    /// For natural persons: first names, kept apart for goAML's first/last name fields.
    pub first_name: Option<String>,
    /// For natural persons: family name.
    pub last_name: Option<String>,
    /// `YYYY-MM-DD`, natural persons only.
    pub birth_date: Option<String>,
    /// ISO 3166-1 alpha-2.
    pub nationality: Option<String>,
    /// ISO 3166-1 alpha-2; also drives the risk rating.
    pub residence_country: String,
    /// Postal address.
    pub address: Option<PostalAddress>,
    /// National identification number (passport, ID card, company registration).
    pub national_id: Option<String>,
    /// Legal entities: register number.
    pub registration_number: Option<String>,
    /// Legal entities: beneficial owners.
    #[serde(default)]
    pub beneficial_owners: Vec<BeneficialOwner>,
    /// Legal entities with no owner of 25 % or more: the senior managing official.
    pub senior_managing_official: Option<String>,
}

impl PersonalData {
    /// Checks field shapes, and for a legal entity its beneficial owners (KYB).
    pub fn validate(&self, kind: CustomerKind) -> Result<(), Refusal> {
        let bad = |what: &str| Refusal::new(Reject::CustomerFieldInvalid, what.to_string());
        if !field_ok(&self.full_name) {
            return Err(bad("full_name"));
        }
        for (name, v) in [
            ("first_name", &self.first_name),
            ("last_name", &self.last_name),
            ("national_id", &self.national_id),
            ("registration_number", &self.registration_number),
            ("senior_managing_official", &self.senior_managing_official),
        ] {
            if v.as_deref().is_some_and(|s| !field_ok(s)) {
                return Err(bad(name));
            }
        }
        if self.birth_date.as_deref().is_some_and(|d| !date_ok(d)) {
            return Err(bad("birth_date"));
        }
        if self.nationality.as_deref().is_some_and(|c| !country_ok(c)) {
            return Err(bad("nationality"));
        }
        if !country_ok(&self.residence_country) {
            return Err(bad("residence_country"));
        }
        if let Some(a) = &self.address {
            if !field_ok(&a.line) || !field_ok(&a.town) || !country_ok(&a.country) {
                return Err(bad("address"));
            }
            if a.post_code.as_deref().is_some_and(|p| !field_ok(p)) {
                return Err(bad("address.post_code"));
            }
        }
        match kind {
            CustomerKind::NaturalPerson => {
                if !self.beneficial_owners.is_empty() {
                    return Err(bad("beneficial_owners on a natural person"));
                }
                Ok(())
            }
            CustomerKind::LegalEntity => self.validate_kyb(),
        }
    }

    /// KYB: beneficial owners listed with valid shares, at least one owner of 25 % or more or
    /// a senior managing official.
    fn validate_kyb(&self) -> Result<(), Refusal> {
        if self.beneficial_owners.len() > BENEFICIAL_OWNERS_MAX {
            return Err(Refusal::new(
                Reject::TooManyBeneficialOwners,
                "beneficial_owners",
            ));
        }
        let mut total: u32 = 0;
        for (i, o) in self.beneficial_owners.iter().enumerate() {
            if !field_ok(&o.full_name)
                || o.birth_date.as_deref().is_some_and(|d| !date_ok(d))
                || o.nationality.as_deref().is_some_and(|c| !country_ok(c))
            {
                return Err(Refusal::new(
                    Reject::CustomerFieldInvalid,
                    format!("beneficial_owners[{i}]"),
                ));
            }
            if o.share_bp == 0 || o.share_bp > 10_000 {
                return Err(Refusal::new(
                    Reject::BeneficialOwnerShareInvalid,
                    format!("beneficial_owners[{i}].share_bp"),
                ));
            }
            total += u32::from(o.share_bp);
        }
        if total > 10_000 {
            return Err(Refusal::new(
                Reject::BeneficialOwnerShareInvalid,
                "shares exceed 100 %",
            ));
        }
        let has_owner = self
            .beneficial_owners
            .iter()
            .any(|o| o.share_bp >= BENEFICIAL_OWNER_SHARE_BP_MIN);
        if !has_owner && self.senior_managing_official.is_none() {
            return Err(Refusal::new(
                Reject::BeneficialOwnersMissing,
                "no owner of 25 % or more and no senior managing official",
            ));
        }
        Ok(())
    }

    /// Whether every beneficial owner of 25 % or more is verified (KYB completeness).
    pub fn beneficial_owners_verified(&self) -> bool {
        self.beneficial_owners
            .iter()
            .filter(|o| o.share_bp >= BENEFICIAL_OWNER_SHARE_BP_MIN)
            .all(|o| o.verified)
    }
}

/// Customer due diligence level reached.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum CddLevel {
    /// Nothing verified: nothing moves.
    #[default]
    None = 0,
    /// Identity verified at eIDAS level "substantial".
    Basic = 1,
    /// Identity verified at level "high" (e.g. an EUDI wallet PID presentation).
    Standard = 2,
    /// Standard plus enhanced due diligence signed off by compliance (source of funds, …).
    Enhanced = 3,
}

impl CddLevel {
    /// From the stored byte.
    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0 => Self::None,
            1 => Self::Basic,
            2 => Self::Standard,
            3 => Self::Enhanced,
            _ => return None,
        })
    }
}

/// A tier: the set of limits a customer's CDD level grants.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum Tier {
    /// No CDD: all limits zero.
    #[default]
    Tier0 = 0,
    /// Basic CDD.
    Tier1 = 1,
    /// Standard CDD.
    Tier2 = 2,
    /// Enhanced CDD.
    Tier3 = 3,
}

impl Tier {
    /// The tier a CDD level grants before any risk cap.
    pub fn for_cdd(level: CddLevel) -> Tier {
        match level {
            CddLevel::None => Tier::Tier0,
            CddLevel::Basic => Tier::Tier1,
            CddLevel::Standard => Tier::Tier2,
            CddLevel::Enhanced => Tier::Tier3,
        }
    }

    /// From the stored byte.
    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0 => Self::Tier0,
            1 => Self::Tier1,
            2 => Self::Tier2,
            3 => Self::Tier3,
            _ => return None,
        })
    }
}

/// What a transfer is for; each has its own limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum Activity {
    /// A trade settlement leg.
    Trading = 1,
    /// Money coming in (fiat deposit minted, tokens from another ledger account).
    Deposit = 2,
    /// Money going out to the customer's own bank account.
    Withdrawal = 3,
    /// Tokens to another party outside the exchange (a VASP or a self-hosted address).
    ExternalTransfer = 4,
    /// Redeeming a bonus (local-currency incentives).
    BonusRedemption = 5,
}

impl Activity {
    /// Every activity, in code order.
    pub const ALL: [Activity; 5] = [
        Activity::Trading,
        Activity::Deposit,
        Activity::Withdrawal,
        Activity::ExternalTransfer,
        Activity::BonusRedemption,
    ];

    /// From the stored byte.
    pub fn from_u8(v: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|a| *a as u8 == v)
    }
}

/// One limit: sums over the last 24 hours and the last 30 days, EUR-equivalent minor units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limit {
    /// Most moved over any 24-hour window ending now.
    pub per_day_minor: u64,
    /// Most moved over any 30-day window ending now.
    pub per_30d_minor: u64,
}

impl Limit {
    /// Nothing allowed.
    pub const ZERO: Limit = Limit {
        per_day_minor: 0,
        per_30d_minor: 0,
    };

    const fn eur(day: u64, month: u64) -> Limit {
        Limit {
            per_day_minor: day * 100,
            per_30d_minor: month * 100,
        }
    }
}

/// A tier's limits per activity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierLimits {
    /// Trade settlement.
    pub trading: Limit,
    /// Deposits.
    pub deposit: Limit,
    /// Withdrawals to the customer's bank.
    pub withdrawal: Limit,
    /// Transfers to other VASPs and self-hosted addresses.
    pub external_transfer: Limit,
    /// Bonus redemption.
    pub bonus_redemption: Limit,
}

impl TierLimits {
    /// Nothing moves.
    pub const ZERO: TierLimits = TierLimits {
        trading: Limit::ZERO,
        deposit: Limit::ZERO,
        withdrawal: Limit::ZERO,
        external_transfer: Limit::ZERO,
        bonus_redemption: Limit::ZERO,
    };

    /// The limit for one activity.
    pub fn for_activity(&self, a: Activity) -> Limit {
        match a {
            Activity::Trading => self.trading,
            Activity::Deposit => self.deposit,
            Activity::Withdrawal => self.withdrawal,
            Activity::ExternalTransfer => self.external_transfer,
            Activity::BonusRedemption => self.bonus_redemption,
        }
    }
}

/// The limits of tiers 1 to 3 (tier 0 is always zero and cannot be configured otherwise).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierTable {
    /// Basic CDD.
    pub tier1: TierLimits,
    /// Standard CDD.
    pub tier2: TierLimits,
    /// Enhanced CDD.
    pub tier3: TierLimits,
}

impl TierTable {
    /// The limits of a tier.
    pub fn limits(&self, tier: Tier) -> TierLimits {
        match tier {
            Tier::Tier0 => TierLimits::ZERO,
            Tier::Tier1 => self.tier1,
            Tier::Tier2 => self.tier2,
            Tier::Tier3 => self.tier3,
        }
    }
}

impl Default for TierTable {
    /// Illustrative defaults in EUR; a deployment configures its own.
    fn default() -> Self {
        TierTable {
            tier1: TierLimits {
                trading: Limit::eur(1_000, 5_000),
                deposit: Limit::eur(1_000, 5_000),
                withdrawal: Limit::eur(500, 2_000),
                external_transfer: Limit::eur(0, 0),
                bonus_redemption: Limit::eur(50, 200),
            },
            tier2: TierLimits {
                trading: Limit::eur(50_000, 250_000),
                deposit: Limit::eur(50_000, 250_000),
                withdrawal: Limit::eur(20_000, 100_000),
                external_transfer: Limit::eur(10_000, 50_000),
                bonus_redemption: Limit::eur(500, 2_000),
            },
            tier3: TierLimits {
                trading: Limit::eur(1_000_000, 10_000_000),
                deposit: Limit::eur(1_000_000, 10_000_000),
                withdrawal: Limit::eur(500_000, 5_000_000),
                external_transfer: Limit::eur(250_000, 2_500_000),
                bonus_redemption: Limit::eur(5_000, 20_000),
            },
        }
    }
}

/// Politically exposed person status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PepStatus {
    /// When the person left their prominent public function; `None` while still in office.
    pub left_office_at_us: Option<TimestampUs>,
}

impl PepStatus {
    /// Whether PEP treatment applies at `now`: in office, or left less than 12 months ago.
    pub fn is_active(&self, now: TimestampUs) -> bool {
        match self.left_office_at_us {
            None => true,
            Some(left) => now < left.saturating_add(PEP_RETENTION_US),
        }
    }
}

/// Low, medium or high money-laundering risk.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum RiskRating {
    /// Standard treatment.
    #[default]
    Low = 1,
    /// Closer monitoring.
    Medium = 2,
    /// Enhanced due diligence required.
    High = 3,
}

impl RiskRating {
    /// From the stored byte.
    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => Self::Low,
            2 => Self::Medium,
            3 => Self::High,
            _ => return None,
        })
    }
}

/// What the gate knows of a customer: no personal data, only what decides limits and risk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerProfile {
    /// Pseudonymous id.
    pub id: CustomerId,
    /// Person or entity.
    pub kind: CustomerKind,
    /// CDD level reached.
    pub cdd: CddLevel,
    /// Risk rating last computed.
    pub risk: RiskRating,
    /// PEP status, if the customer is or was a PEP.
    pub pep: Option<PepStatus>,
    /// Personal data erased (GDPR): the account is closed for new transfers.
    pub erased: bool,
}

impl CustomerProfile {
    /// Whether enhanced due diligence is required at `now`: high risk or an active PEP.
    pub fn edd_required(&self, now: TimestampUs) -> bool {
        self.risk == RiskRating::High || self.pep.is_some_and(|p| p.is_active(now))
    }

    /// The tier in force at `now`, or why the customer may move nothing.
    ///
    /// A customer who needs EDD but lacks it is capped at tier 0: AMLD requires enhanced
    /// measures *before* the relationship, so a partial tier would let money move unchecked.
    pub fn effective_tier(&self, now: TimestampUs) -> Result<Tier, Reject> {
        if self.erased {
            return Err(Reject::CustomerErased);
        }
        if self.cdd == CddLevel::None {
            return Err(Reject::CddIncomplete);
        }
        if self.edd_required(now) && self.cdd < CddLevel::Enhanced {
            return Err(Reject::EddRequired);
        }
        Ok(Tier::for_cdd(self.cdd))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::DAY_US;

    fn profile(cdd: CddLevel) -> CustomerProfile {
        CustomerProfile {
            id: 7,
            kind: CustomerKind::NaturalPerson,
            cdd,
            risk: RiskRating::Low,
            pep: None,
            erased: false,
        }
    }

    #[test]
    fn no_cdd_no_tier() {
        assert_eq!(
            profile(CddLevel::None).effective_tier(0),
            Err(Reject::CddIncomplete)
        );
        assert_eq!(profile(CddLevel::Basic).effective_tier(0), Ok(Tier::Tier1));
        assert_eq!(TierTable::default().limits(Tier::Tier0), TierLimits::ZERO);
    }

    #[test]
    fn pep_status_lasts_twelve_months_after_office() {
        let left = 1_000 * DAY_US;
        let pep = PepStatus {
            left_office_at_us: Some(left),
        };
        assert!(pep.is_active(left + 364 * DAY_US));
        assert!(!pep.is_active(left + 365 * DAY_US));
        let mut p = profile(CddLevel::Standard);
        p.pep = Some(pep);
        assert_eq!(p.effective_tier(left + DAY_US), Err(Reject::EddRequired));
        assert_eq!(p.effective_tier(left + 400 * DAY_US), Ok(Tier::Tier2));
        p.cdd = CddLevel::Enhanced;
        assert_eq!(p.effective_tier(left + DAY_US), Ok(Tier::Tier3));
    }

    fn entity(owners: Vec<(u16, bool)>, smo: bool) -> PersonalData {
        PersonalData {
            full_name: "Boulangerie Martin SARL".into(),
            first_name: None,
            last_name: None,
            birth_date: None,
            nationality: None,
            residence_country: "FR".into(),
            address: None,
            national_id: None,
            registration_number: Some("RCS 123 456 789".into()),
            beneficial_owners: owners
                .into_iter()
                .enumerate()
                .map(|(i, (share_bp, verified))| BeneficialOwner {
                    full_name: format!("Owner {i}"),
                    birth_date: Some("1980-01-01".into()),
                    nationality: Some("FR".into()),
                    share_bp,
                    verified,
                })
                .collect(),
            senior_managing_official: smo.then(|| "Jeanne Martin".to_string()),
        }
    }

    #[test]
    fn kyb_needs_an_owner_of_a_quarter_or_a_senior_official() {
        let k = CustomerKind::LegalEntity;
        assert!(entity(vec![(2_500, true)], false).validate(k).is_ok());
        let e = entity(vec![(2_499, true)], false).validate(k).unwrap_err();
        assert_eq!(e.reject, Reject::BeneficialOwnersMissing);
        assert!(entity(vec![(2_000, true)], true).validate(k).is_ok());
        let e = entity(vec![(6_000, true), (6_000, true)], false)
            .validate(k)
            .unwrap_err();
        assert_eq!(e.reject, Reject::BeneficialOwnerShareInvalid);
        assert!(!entity(vec![(5_000, true), (3_000, false)], false).beneficial_owners_verified());
        assert!(entity(vec![(5_000, true), (1_000, false)], false).beneficial_owners_verified());
    }
}
