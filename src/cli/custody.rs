//! `rempart custody …` subcommands: key derivation and proof-of-reserves tools.
//!
//! - `derive --seed HEX --path "m/0'/1/2'"`: BIP-0032 `xprv`/`xpub` (or SLIP-0010 Ed25519 with
//!   `--curve ed25519`) as one JSON object. For test vectors and provisioning only: it prints
//!   a private key.
//! - `por-bench --accounts N --assets K`: builds a proof-of-reserves tree over seeded random
//!   balances and prints build time, proof size and verification time as one JSON line.
//! - `verify-proof FILE [--root HEX]`: checks a client's inclusion proof offline.

use std::time::Instant;

use anyhow::{Context, bail};
use clap::{Subcommand, ValueEnum};
use custody::hd::{Seed, derive_serialized};
use custody::path::DerivationPath;
use custody::por::{InclusionProof, SumTree, bench, check_published_root};
use custody::slip10::Ed25519ExtendedKey;

/// Which curve `derive` uses.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Curve {
    /// BIP-0032 over secp256k1.
    Secp256k1,
    /// SLIP-0010 over Ed25519 (hardened steps only).
    Ed25519,
}

/// The `custody` subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Derives the extended key at a path from a seed and prints {"xprv", "xpub"} as JSON.
    Derive {
        /// The seed, hexadecimal (16 to 64 bytes).
        #[arg(long)]
        seed: String,
        /// The derivation path, e.g. "m/0'/1/2'" (h or H also mark hardened steps).
        #[arg(long)]
        path: String,
        /// The curve.
        #[arg(long, value_enum, default_value = "secp256k1")]
        curve: Curve,
    },
    /// Benchmarks the proof-of-reserves tree; prints {"build_ms", "proof_bytes", "verify_us"}.
    PorBench {
        /// Number of client accounts.
        #[arg(long, default_value_t = 1_000_000)]
        accounts: usize,
        /// Number of assets summed per node.
        #[arg(long, default_value_t = 4)]
        assets: usize,
        /// Seed of the random balances.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Proofs verified to measure verification time (the median is printed).
        #[arg(long, default_value_t = 1_000)]
        verifications: usize,
    },
    /// Verifies an inclusion proof (binary or JSON) offline; exits non-zero on any mismatch.
    VerifyProof {
        /// The proof file.
        file: std::path::PathBuf,
        /// The published root (hex) the proof must lead to.
        #[arg(long)]
        root: Option<String>,
    },
}

/// Runs one subcommand.
pub fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Derive { seed, path, curve } => derive(&seed, &path, curve),
        Command::PorBench {
            accounts,
            assets,
            seed,
            verifications,
        } => por_bench(accounts, assets, seed, verifications),
        Command::VerifyProof { file, root } => verify_proof(&file, root.as_deref()),
    }
}

fn derive(seed: &str, path: &str, curve: Curve) -> anyhow::Result<()> {
    let seed = Seed::from_hex(seed).context("invalid --seed")?;
    let path = DerivationPath::parse(path).context("invalid --path")?;
    let out = match curve {
        Curve::Secp256k1 => {
            let pair = derive_serialized(&seed, &path)?;
            serde_json::json!({ "xprv": pair.xprv.as_str(), "xpub": pair.xpub })
        }
        Curve::Ed25519 => {
            let key = Ed25519ExtendedKey::derive(&seed, &path)?;
            serde_json::json!({
                "private_key": hex::encode(key.expose_private_key()),
                "public_key": hex::encode(key.public_key()),
                "chain_code": hex::encode(key.chain_code()),
                "parent_fingerprint": hex::encode(key.parent_fingerprint()),
            })
        }
    };
    println!("{out}");
    Ok(())
}

fn por_bench(
    accounts: usize,
    assets: usize,
    seed: u64,
    verifications: usize,
) -> anyhow::Result<()> {
    if verifications == 0 {
        bail!("--verifications must be at least 1");
    }
    let codes = bench::asset_codes(assets);
    let liabilities = bench::synthetic_liabilities(accounts, assets, seed);
    let start = Instant::now();
    let tree = SumTree::build(&codes, &liabilities)?;
    let build_ms = start.elapsed().as_secs_f64() * 1e3;
    drop(liabilities);

    let mut state = seed;
    let mut proof_bytes = 0;
    let mut proof_json_bytes = 0;
    let mut times_us = Vec::with_capacity(verifications);
    for _ in 0..verifications {
        // A cheap LCG step is enough to spread the sampled leaves.
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let index = (state >> 11) as usize % accounts;
        let proof = tree.proof(index).context("proof of an existing leaf")?;
        let bytes = proof.to_bytes();
        proof_bytes = proof_bytes.max(bytes.len());
        proof_json_bytes = proof_json_bytes.max(serde_json::to_vec(&proof)?.len());
        // Timed as a user would run it: parse the file's bytes, then verify.
        let start = Instant::now();
        let verified = InclusionProof::from_bytes(std::hint::black_box(&bytes))?.verify()?;
        times_us.push(start.elapsed().as_secs_f64() * 1e6);
        std::hint::black_box(verified);
    }
    times_us.sort_by(f64::total_cmp);
    let verify_us = times_us[times_us.len() / 2];
    let verify_us_max = times_us[times_us.len() - 1];
    println!(
        "{}",
        serde_json::json!({
            "accounts": accounts,
            "assets": assets,
            "levels": tree.levels(),
            "build_ms": (build_ms * 10.0).round() / 10.0,
            "proof_bytes": proof_bytes,
            "proof_json_bytes": proof_json_bytes,
            "verify_us": (verify_us * 10.0).round() / 10.0,
            "verify_us_max": (verify_us_max * 10.0).round() / 10.0,
        })
    );
    Ok(())
}

fn verify_proof(file: &std::path::Path, root: Option<&str>) -> anyhow::Result<()> {
    let content = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let proof = InclusionProof::parse_file(&content)
        .with_context(|| format!("{} is not a valid proof", file.display()))?;
    let verified = proof.verify().context("proof verification failed")?;
    if let Some(root) = root {
        check_published_root(&verified, root).context("proof verification failed")?;
    }
    let out = serde_json::json!({
        "verified": true,
        "root": verified.root,
        "assets": verified.assets,
        "totals": verified.totals,
        "account_id": verified.account_id,
        "balances": verified.balances,
        "checked_against_published_root": root.is_some(),
    });
    println!("{out}");
    Ok(())
}
