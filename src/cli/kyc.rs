//! `rempart kyc …`: the identity provider's side of onboarding, for demos and tests.
//!
//! - `keygen --out FILE`: creates an Ed25519 provider key file (64 hex digits, mode 0600,
//!   never overwritten) and prints `issuer-public-key=<hex>` for `REMPART_KYC_ISSUERS`.
//! - `attest --key FILE --issuer ID --customer N --name NAME --residence CC [...]`: signs an
//!   attestation about customer N and prints its JSON on stdout (what
//!   `Compliance.SubmitAttestation` takes in `attestation`). The JSON holds personal data: it
//!   goes to stdout only, never to a log.

use std::io::Write;
use std::path::PathBuf;

use clap::Subcommand;
use kyc_aml::attestation::{Assurance, AttestationClaims};

use crate::node::compliance::{
    ATTESTATION_DAYS_DEFAULT, ATTESTATION_DAYS_MAX, create_key_file, read_key_file,
    sign_attestation,
};

/// The `kyc` subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Creates a provider key file and prints its public key.
    Keygen {
        /// Where to write the key (refused if it exists).
        #[arg(long)]
        out: PathBuf,
    },
    /// Signs an identity attestation with a provider key; prints its JSON.
    Attest {
        /// The provider's key file.
        #[arg(long)]
        key: PathBuf,
        /// The provider's issuer id (as the node trusts it).
        #[arg(long)]
        issuer: String,
        /// The customer (engine account id).
        #[arg(long)]
        customer: u64,
        /// Full name.
        #[arg(long)]
        name: String,
        /// Country of residence, ISO 3166-1 alpha-2.
        #[arg(long)]
        residence: String,
        /// Date of birth, YYYY-MM-DD.
        #[arg(long)]
        birth_date: Option<String>,
        /// Nationality, ISO 3166-1 alpha-2.
        #[arg(long)]
        nationality: Option<String>,
        /// National identification number.
        #[arg(long)]
        national_id: Option<String>,
        /// eIDAS level of assurance: substantial or high.
        #[arg(long, default_value = "high")]
        assurance: String,
        /// Days until the attestation expires.
        #[arg(long, default_value_t = ATTESTATION_DAYS_DEFAULT)]
        valid_days: u32,
    },
}

/// Runs one subcommand.
pub fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Keygen { out } => {
            let public = create_key_file(&out)?;
            println!("issuer-public-key={}", hex::encode(public));
            Ok(())
        }
        Command::Attest {
            key,
            issuer,
            customer,
            name,
            residence,
            birth_date,
            nationality,
            national_id,
            assurance,
            valid_days,
        } => {
            let assurance = match assurance.to_ascii_lowercase().as_str() {
                "substantial" => Assurance::Substantial,
                "high" => Assurance::High,
                other => anyhow::bail!("--assurance must be substantial or high, not {other:?}"),
            };
            anyhow::ensure!(
                (1..=ATTESTATION_DAYS_MAX).contains(&valid_days),
                "--valid-days must be between 1 and {ATTESTATION_DAYS_MAX}"
            );
            let seed = read_key_file(&key)?;
            let now_us = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_micros() as i64;
            let claims = AttestationClaims {
                subject: customer,
                issuer,
                assurance,
                full_name: name,
                birth_date,
                nationality,
                residence_country: residence,
                national_id,
                // A second back, so that a node whose clock is slightly behind still accepts it.
                issued_at_us: now_us - 1_000_000,
                expires_at_us: now_us + i64::from(valid_days) * 86_400_000_000,
            };
            claims
                .validate()
                .map_err(|r| anyhow::anyhow!("attestation refused: {r}"))?;
            let att = sign_attestation(&seed, claims);
            let mut out = std::io::stdout().lock();
            writeln!(out, "{}", att.to_json())?;
            out.flush()?;
            Ok(())
        }
    }
}
