//! The shared key-store suite against the PKCS#11 backend on SoftHSM2, and what only a device
//! has: non-extractable keys, sessions, login, keys shared by two stores on one token.
//!
//! One test binary, one process, one initialised module: every test gets its own token.

mod common;

use common::softhsm::{MODULE, USER_PIN, new_token};
use hsm::pkcs11::{Pkcs11Config, Pkcs11KeyStore, ValueAccess};
use hsm::{HsmError, KeyAlgorithm, KeyStore, SecretBytes};

fn open(name: &str) -> (Box<Pkcs11KeyStore>, String) {
    let store = Pkcs11KeyStore::open(new_token()).expect("open the new token");
    (Box::new(store), format!("{name}/"))
}

mod suite {
    use super::*;

    key_store_suite!(open);
}

#[test]
fn private_and_wrap_keys_never_leave_the_device() {
    let (store, p) = open("protection");
    for (name, algorithm) in [
        ("secp", KeyAlgorithm::Secp256k1),
        ("ed", KeyAlgorithm::Ed25519),
        ("aes", KeyAlgorithm::Aes256Wrap),
    ] {
        let label = format!("{p}{name}");
        store.generate_key(&label, algorithm).expect("generate");
        let protection = store.key_protection(&label).expect("attributes");
        assert!(protection.sensitive, "{name}: {protection:?}");
        assert!(!protection.extractable, "{name}: {protection:?}");
        assert!(protection.always_sensitive, "{name}: {protection:?}");
        assert!(protection.never_extractable, "{name}: {protection:?}");
        assert!(protection.token_object, "{name}: {protection:?}");
        assert_eq!(protection.value, ValueAccess::Refused, "{name}: CKA_VALUE");
    }
}

#[test]
fn keys_persist_on_the_token_and_a_second_store_sees_them() {
    let config = new_token();
    let first = Pkcs11KeyStore::open(config.clone()).expect("open");
    first
        .generate_key("k", KeyAlgorithm::Secp256k1)
        .expect("generate");
    let public = first.public_key("k").expect("pk");
    let second = Pkcs11KeyStore::open(config).expect("open again");
    assert_eq!(second.public_key("k").expect("pk"), public);
    assert!(second.sign("k", &[3u8; 32]).is_ok());

    // The second store destroys the key and makes a new one under the same label: the first
    // store's cached handle is stale, and it must notice rather than sign with a dead handle.
    second.destroy_key("k").expect("destroy");
    assert!(matches!(
        first.sign("k", &[3u8; 32]),
        Err(HsmError::KeyNotFound(_))
    ));
    second
        .generate_key("k", KeyAlgorithm::Ed25519)
        .expect("re-create");
    assert!(matches!(
        first.sign("k", b"now an Ed25519 key"),
        Ok(hsm::Signature::Ed25519(_))
    ));
}

#[test]
fn a_wrong_pin_or_token_is_a_device_error() {
    let mut config = new_token();
    config.user_pin = SecretBytes::new(b"0000".to_vec());
    assert!(matches!(
        Pkcs11KeyStore::open(config),
        Err(HsmError::Device(_))
    ));
    let config = Pkcs11Config::new(
        MODULE,
        "no such token",
        SecretBytes::new(USER_PIN.as_bytes().to_vec()),
    );
    assert!(matches!(
        Pkcs11KeyStore::open(config),
        Err(HsmError::Device(_))
    ));
}

#[test]
fn one_session_serves_many_threads_in_turn() {
    let mut config = new_token();
    config.sessions_max = 1;
    let store = Pkcs11KeyStore::open(config).expect("open");
    common::suite::concurrent_signing(&store, "one/");
}

#[test]
fn softhsm_is_not_production_grade_and_debug_shows_no_pin() {
    let (store, _) = open("grade");
    assert!(!store.is_production_grade());
    let printed = format!("{store:?}");
    assert!(!printed.contains(USER_PIN), "{printed}");
    assert!(printed.contains("SoftHSM"), "{printed}");
}

mod model {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        // One token for all cases (tokens are made up front), each case under its own
        // label prefix; SoftHSM2 writes every key to disk, so few cases.
        #![proptest_config(ProptestConfig::with_cases(12))]

        #[test]
        fn pkcs11_store_matches_the_model(ops in common::suite::ops(25)) {
            use std::sync::OnceLock;
            use std::sync::atomic::{AtomicUsize, Ordering};
            static STORE: OnceLock<Pkcs11KeyStore> = OnceLock::new();
            static CASE: AtomicUsize = AtomicUsize::new(0);
            let store = STORE.get_or_init(|| Pkcs11KeyStore::open(new_token()).expect("open"));
            let prefix = format!("case{}/", CASE.fetch_add(1, Ordering::SeqCst));
            common::suite::matches_model(store, &prefix, &ops);
        }
    }
}
