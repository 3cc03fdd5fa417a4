//! Customer risk rating (low / medium / high) from country, PEP status, product use and
//! history. High risk and PEP status require enhanced due diligence
//! ([`crate::customer::CustomerProfile::edd_required`]).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::customer::{PepStatus, RiskRating, TimestampUs};
use crate::reject::{Refusal, Reject};
use crate::validate::country_ok;

/// Country lists, configured per deployment (for example from the FATF "black" and "grey"
/// lists).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RiskConfig {
    /// Countries whose customers and counterparties are high risk (FATF call for action,
    /// EU high-risk third countries).
    pub high_risk_countries: BTreeSet<String>,
    /// Countries under increased monitoring (FATF grey list): medium risk.
    #[serde(default)]
    pub monitored_countries: BTreeSet<String>,
}

impl RiskConfig {
    /// Parses and checks a JSON configuration.
    pub fn from_json(bytes: &[u8]) -> Result<RiskConfig, Refusal> {
        let cfg: RiskConfig = serde_json::from_slice(bytes)
            .map_err(|e| Refusal::new(Reject::RuleConfigMalformed, e.to_string()))?;
        if let Some(c) = cfg
            .high_risk_countries
            .iter()
            .chain(&cfg.monitored_countries)
            .find(|c| !country_ok(c))
        {
            return Err(Refusal::new(Reject::RuleInvalid, format!("country {c:?}")));
        }
        Ok(cfg)
    }

    /// Whether a country is on the high-risk list.
    pub fn is_high_risk(&self, country: &str) -> bool {
        self.high_risk_countries.contains(country)
    }
}

/// Everything the rating looks at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RiskFactors {
    /// Countries tied to the customer: residence, nationality, and for an entity its
    /// registration and beneficial owners' nationalities.
    pub countries: Vec<String>,
    /// PEP status, if any.
    pub pep: Option<PepStatus>,
    /// Uses transfers to other VASPs.
    pub uses_external_transfers: bool,
    /// Uses transfers to self-hosted addresses.
    pub uses_self_hosted: bool,
    /// Cases about the customer closed as confirmed.
    pub confirmed_cases: u32,
    /// Alerts (held decisions) in the last 90 days.
    pub recent_alerts: u32,
}

/// Why a rating is what it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RiskReason {
    /// Tied to a high-risk country.
    HighRiskCountry,
    /// Tied to a country under increased monitoring.
    MonitoredCountry,
    /// PEP, in office or less than 12 months out of it.
    Pep,
    /// A confirmed suspicion on record.
    ConfirmedCase,
    /// Uses external or self-hosted transfers.
    RiskyProduct,
    /// Three or more recent alerts.
    RepeatedAlerts,
}

/// The rating and its reasons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RiskAssessment {
    /// The rating.
    pub rating: RiskRating,
    /// Every reason that raised it.
    pub reasons: Vec<RiskReason>,
}

/// Rates a customer at `now`. High: a high-risk country, an active PEP, or a confirmed case.
/// Medium: a monitored country, external or self-hosted transfers, or three recent alerts.
pub fn rate(cfg: &RiskConfig, f: &RiskFactors, now: TimestampUs) -> RiskAssessment {
    let mut reasons = Vec::new();
    let mut rating = RiskRating::Low;
    let mut raise = |r: RiskRating, why: RiskReason| {
        rating = rating.max(r);
        reasons.push(why);
    };
    if f.countries
        .iter()
        .any(|c| cfg.high_risk_countries.contains(c))
    {
        raise(RiskRating::High, RiskReason::HighRiskCountry);
    }
    if f.pep.is_some_and(|p| p.is_active(now)) {
        raise(RiskRating::High, RiskReason::Pep);
    }
    if f.confirmed_cases > 0 {
        raise(RiskRating::High, RiskReason::ConfirmedCase);
    }
    if f.countries
        .iter()
        .any(|c| cfg.monitored_countries.contains(c))
    {
        raise(RiskRating::Medium, RiskReason::MonitoredCountry);
    }
    if f.uses_external_transfers || f.uses_self_hosted {
        raise(RiskRating::Medium, RiskReason::RiskyProduct);
    }
    if f.recent_alerts >= 3 {
        raise(RiskRating::Medium, RiskReason::RepeatedAlerts);
    }
    RiskAssessment { rating, reasons }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::DAY_US;

    fn cfg() -> RiskConfig {
        RiskConfig::from_json(
            br#"{"high_risk_countries":["KP","IR"],"monitored_countries":["XY"]}"#,
        )
        .unwrap()
    }

    #[test]
    fn ratings() {
        let low = RiskFactors {
            countries: vec!["FR".into()],
            ..Default::default()
        };
        assert_eq!(rate(&cfg(), &low, 0).rating, RiskRating::Low);
        let hr = RiskFactors {
            countries: vec!["FR".into(), "KP".into()],
            ..Default::default()
        };
        assert_eq!(rate(&cfg(), &hr, 0).rating, RiskRating::High);
        let product = RiskFactors {
            uses_self_hosted: true,
            ..Default::default()
        };
        assert_eq!(rate(&cfg(), &product, 0).rating, RiskRating::Medium);
        let pep = RiskFactors {
            pep: Some(PepStatus {
                left_office_at_us: Some(0),
            }),
            ..Default::default()
        };
        assert_eq!(rate(&cfg(), &pep, 364 * DAY_US).rating, RiskRating::High);
        assert_eq!(rate(&cfg(), &pep, 365 * DAY_US).rating, RiskRating::Low);
    }

    #[test]
    fn bad_config() {
        let e = RiskConfig::from_json(br#"{"high_risk_countries":["kp"]}"#).unwrap_err();
        assert_eq!(e.reject, Reject::RuleInvalid);
        let e = RiskConfig::from_json(b"[]").unwrap_err();
        assert_eq!(e.reject, Reject::RuleConfigMalformed);
    }
}
