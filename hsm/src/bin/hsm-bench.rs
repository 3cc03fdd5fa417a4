//! Signing throughput of a key store backend: secp256k1 then Ed25519, each for `--seconds`,
//! printed as one JSON line. Figures go in BENCHMARKS.md.
//!
//! `--backend software` uses an in-memory `SoftwareKeyStore`; `--backend softhsm` makes a
//! throw-away SoftHSM2 token in a temporary directory (its own `softhsm2.conf`), so it needs
//! `softhsm2` installed (see `.ci/install`).
//!
//! ```text
//! cargo run --release -p hsm --bin hsm-bench -- --backend softhsm --seconds 5
//! ```

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use hsm::pkcs11::{Pkcs11Config, Pkcs11KeyStore};
use hsm::software::SoftwareKeyStore;
use hsm::{KeyAlgorithm, KeyStore, SecretBytes};
use sha2::{Digest, Sha256};
use std::process::Command;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Backend {
    Software,
    Softhsm,
}

#[derive(Debug, Parser)]
#[command(about = "Signing throughput of a key store backend")]
struct Args {
    /// Which backend to measure.
    #[arg(long, value_enum)]
    backend: Backend,
    /// Seconds per algorithm (1 to 600).
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Signing threads (1 to 64); the PKCS#11 store gets as many sessions.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// The SoftHSM2 module.
    #[arg(long, default_value = "/usr/lib/softhsm/libsofthsm2.so")]
    module: String,
}

const SECONDS_MAX: u64 = 600;
const THREADS_MAX: usize = 64;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if !(1..=SECONDS_MAX).contains(&args.seconds) || !(1..=THREADS_MAX).contains(&args.threads) {
        bail!("--seconds must be 1 to {SECONDS_MAX} and --threads 1 to {THREADS_MAX}");
    }
    // Kept alive until the end: the token directory of the SoftHSM2 run.
    let mut _token_dir = None;
    let store: Box<dyn KeyStore> = match args.backend {
        Backend::Software => Box::new(SoftwareKeyStore::in_memory()),
        Backend::Softhsm => {
            let dir = tempfile::tempdir().context("temporary directory")?;
            let tokens = dir.path().join("tokens");
            std::fs::create_dir(&tokens)?;
            let conf = dir.path().join("softhsm2.conf");
            std::fs::write(
                &conf,
                format!(
                    "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                    tokens.display()
                ),
            )?;
            let status = Command::new("softhsm2-util")
                .env("SOFTHSM2_CONF", &conf)
                .args(["--init-token", "--free", "--label", "bench"])
                .args(["--so-pin", "5678", "--pin", "1234"])
                .stdout(std::process::Stdio::null())
                .status()
                .context("running softhsm2-util (is softhsm2 installed?)")?;
            if !status.success() {
                bail!("softhsm2-util --init-token failed");
            }
            // SAFETY: set before any other thread exists and before the module is loaded
            // (SoftHSM2 reads it in C_Initialize).
            #[allow(unsafe_code)]
            unsafe {
                std::env::set_var("SOFTHSM2_CONF", &conf);
            }
            let mut config =
                Pkcs11Config::new(&args.module, "bench", SecretBytes::new(b"1234".to_vec()));
            config.sessions_max = args.threads;
            _token_dir = Some(dir);
            Box::new(Pkcs11KeyStore::open(config)?)
        }
    };
    store.generate_key("bench/secp256k1", KeyAlgorithm::Secp256k1)?;
    store.generate_key("bench/ed25519", KeyAlgorithm::Ed25519)?;
    let duration = Duration::from_secs(args.seconds);
    let secp = rate(&*store, "bench/secp256k1", duration, args.threads)?;
    let ed = rate(&*store, "bench/ed25519", duration, args.threads)?;
    println!(
        "{}",
        serde_json::json!({
            "backend": format!("{:?}", args.backend).to_lowercase(),
            "threads": args.threads,
            "seconds": args.seconds,
            "secp256k1_sigs_per_sec": secp,
            "ed25519_sigs_per_sec": ed,
        })
    );
    Ok(())
}

/// Signatures per second over all threads, each signature verified by the store as always.
fn rate(
    store: &dyn KeyStore,
    label: &str,
    duration: Duration,
    threads: usize,
) -> anyhow::Result<u64> {
    let start = Instant::now();
    let counts = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || -> anyhow::Result<u64> {
                    let mut count = 0u64;
                    while start.elapsed() < duration {
                        // A fresh digest each time, as in real use (RFC 6979 nonces differ).
                        let digest: [u8; 32] =
                            Sha256::digest(format!("{t}/{count}").as_bytes()).into();
                        store.sign(label, &digest)?;
                        count += 1;
                    }
                    Ok(count)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .map_err(|_| anyhow::anyhow!("a signing thread panicked"))?
            })
            .collect::<anyhow::Result<Vec<u64>>>()
    })?;
    let elapsed_us = start.elapsed().as_micros().max(1) as u64;
    Ok(counts.iter().sum::<u64>() * 1_000_000 / elapsed_us)
}
