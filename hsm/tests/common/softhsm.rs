//! A private SoftHSM2 for one test process: a token directory of its own, a `softhsm2.conf`
//! pointing at it, and `SOFTHSM2_CONF` set before the module is first loaded (SoftHSM2 reads it
//! in `C_Initialize`, which happens once per process). SoftHSM2 lists only the tokens that
//! existed at `C_Initialize`, so [`TOKENS`] tokens are initialised up front with
//! `softhsm2-util --init-token --free`, and each test takes a fresh one: tests never see each
//! other's keys.

use hsm::SecretBytes;
use hsm::pkcs11::Pkcs11Config;
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Debian's SoftHSM2 module (package `softhsm2`, installed by `.ci/install`).
pub const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
pub const SO_PIN: &str = "5678";
pub const USER_PIN: &str = "1234";

/// Tokens made for one test process; [`new_token`] hands out each once.
pub const TOKENS: usize = 24;

struct Fixture {
    next: AtomicUsize,
}

fn token_label(index: usize) -> String {
    format!("test-token-{index:02}")
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        // Under cargo's per-target temporary directory, not /tmp: the directory must outlive
        // every test of the process (a static is never dropped), and `cargo clean` removes it.
        remove_stale_fixtures();
        let dir = tempfile::Builder::new()
            .prefix("softhsm-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .expect("temporary directory")
            .keep();
        let tokens = dir.join("tokens");
        std::fs::create_dir_all(&tokens).expect("token directory");
        let conf = dir.join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n",
                tokens.display()
            ),
        )
        .expect("softhsm2.conf");
        for index in 0..TOKENS {
            let output = Command::new("softhsm2-util")
                .env("SOFTHSM2_CONF", &conf)
                .args(["--init-token", "--free", "--label", &token_label(index)])
                .args(["--so-pin", SO_PIN, "--pin", USER_PIN])
                .output()
                .expect("softhsm2-util runs (is softhsm2 installed? see .ci/install)");
            assert!(
                output.status.success(),
                "softhsm2-util --init-token failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        // SAFETY: `set_var` races with concurrent reads of the environment by other threads.
        // This runs inside the `OnceLock` initialiser, before any test of this binary has
        // loaded the module, and the test threads read no environment variable meanwhile.
        #[allow(unsafe_code)]
        unsafe {
            std::env::set_var("SOFTHSM2_CONF", &conf);
        }
        Fixture {
            next: AtomicUsize::new(0),
        }
    })
}

/// Token directories of earlier test processes (a static's directory is never removed at
/// exit): an hour old means no running test still uses it.
fn remove_stale_fixtures() {
    let Ok(entries) = std::fs::read_dir(env!("CARGO_TARGET_TMPDIR")) else {
        return;
    };
    for entry in entries.flatten() {
        let stale = entry
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|t| t.elapsed().is_ok_and(|age| age.as_secs() > 3600));
        if stale && entry.file_name().to_string_lossy().starts_with("softhsm-") {
            // Best effort: another process may be removing it at the same time.
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// A configuration for a token no other test uses.
pub fn new_token() -> Pkcs11Config {
    let index = fixture().next.fetch_add(1, Ordering::SeqCst);
    assert!(
        index < TOKENS,
        "more than {TOKENS} tokens wanted: raise TOKENS"
    );
    Pkcs11Config::new(
        MODULE,
        token_label(index),
        SecretBytes::new(USER_PIN.as_bytes().to_vec()),
    )
}
