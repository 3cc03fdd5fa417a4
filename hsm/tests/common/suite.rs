//! The key-store test suite, written once over `&dyn KeyStore` and run against every backend
//! (`tests/software.rs`, `tests/pkcs11.rs`) through [`key_store_suite!`].
//!
//! Each function takes a label prefix so that it also holds on a store shared with other
//! tests; signatures are checked with `k256` and `ed25519-dalek` directly, never through the
//! store under test.

use hsm::{
    HsmError, KeyAlgorithm, KeyInfo, KeyStore, MESSAGE_LEN_MAX, SECRET_LEN_MAX, SecretBytes,
    Signature,
};
use k256::ecdsa::{RecoveryId, VerifyingKey};
use sha2::{Digest, Sha256};

/// Signatures per secp256k1 key in [`secp256k1_signatures`]: a device that returns high-S
/// half the time returns at least one among 24 with probability 1 - 2^-24, so the
/// normalisation path is exercised.
const SECP256K1_SIGNATURES: usize = 24;

fn digest_of(i: usize) -> [u8; 32] {
    Sha256::digest(format!("transfer {i}").as_bytes()).into()
}

/// Generates one key of each algorithm and checks the public key formats.
pub fn generates_each_algorithm(store: &dyn KeyStore, p: &str) {
    for (name, algorithm) in [
        ("secp", KeyAlgorithm::Secp256k1),
        ("ed", KeyAlgorithm::Ed25519),
        ("aes", KeyAlgorithm::Aes256Wrap),
    ] {
        let label = format!("{p}{name}");
        let info = store.generate_key(&label, algorithm).expect("generate");
        assert_eq!(
            info,
            KeyInfo {
                label: label.clone(),
                algorithm
            }
        );
    }
    let secp = store.public_key(&format!("{p}secp")).expect("public key");
    assert_eq!(secp.algorithm, KeyAlgorithm::Secp256k1);
    assert_eq!(secp.bytes.len(), 33);
    assert!(matches!(secp.bytes[0], 2 | 3), "compressed SEC1");
    VerifyingKey::from_sec1_bytes(&secp.bytes).expect("a point on secp256k1");

    let ed = store.public_key(&format!("{p}ed")).expect("public key");
    assert_eq!(ed.algorithm, KeyAlgorithm::Ed25519);
    let ed_bytes: [u8; 32] = ed.bytes.as_slice().try_into().expect("32 bytes");
    ed25519_dalek::VerifyingKey::from_bytes(&ed_bytes).expect("an Ed25519 point");

    assert!(matches!(
        store.public_key(&format!("{p}aes")),
        Err(HsmError::WrongAlgorithm {
            algorithm: KeyAlgorithm::Aes256Wrap,
            ..
        })
    ));
    assert!(matches!(
        store.public_key(&format!("{p}missing")),
        Err(HsmError::KeyNotFound(_))
    ));
    // Two keys of the same algorithm are different keys.
    store
        .generate_key(&format!("{p}secp2"), KeyAlgorithm::Secp256k1)
        .expect("generate");
    assert_ne!(
        store.public_key(&format!("{p}secp2")).expect("pk").bytes,
        secp.bytes
    );
}

/// secp256k1: every signature verifies independently, is low-S, and its recovery id recovers
/// the key's public key.
pub fn secp256k1_signatures(store: &dyn KeyStore, p: &str) {
    let label = format!("{p}secp");
    store
        .generate_key(&label, KeyAlgorithm::Secp256k1)
        .expect("generate");
    let public = store.public_key(&label).expect("public key");
    let verifying = VerifyingKey::from_sec1_bytes(&public.bytes).expect("point");
    for i in 0..SECP256K1_SIGNATURES {
        let digest = digest_of(i);
        let Signature::Secp256k1 { rs, recovery_id } = store.sign(&label, &digest).expect("sign")
        else {
            panic!("a secp256k1 key gave another kind of signature")
        };
        let signature = k256::ecdsa::Signature::from_slice(&rs).expect("r || s");
        assert_eq!(
            signature.normalize_s(),
            signature,
            "signature {i} is high-S"
        );
        use k256::ecdsa::signature::hazmat::PrehashVerifier;
        verifying
            .verify_prehash(&digest, &signature)
            .expect("verifies independently");
        assert!(recovery_id <= 1);
        let recovered = VerifyingKey::recover_from_prehash(
            &digest,
            &signature,
            RecoveryId::from_byte(recovery_id).expect("id"),
        )
        .expect("recovers");
        assert_eq!(
            recovered, verifying,
            "recovery id {recovery_id} of signature {i}"
        );
        assert!(
            verifying
                .verify_prehash(&digest_of(i + 1), &signature)
                .is_err(),
            "a signature must not verify another digest"
        );
    }
}

/// Ed25519: signatures over an empty, a short and a maximal message verify independently.
pub fn ed25519_signatures(store: &dyn KeyStore, p: &str) {
    let label = format!("{p}ed");
    store
        .generate_key(&label, KeyAlgorithm::Ed25519)
        .expect("generate");
    let public = store.public_key(&label).expect("public key");
    let bytes: [u8; 32] = public.bytes.as_slice().try_into().expect("32 bytes");
    let verifying = ed25519_dalek::VerifyingKey::from_bytes(&bytes).expect("point");
    let long = vec![0xa5u8; MESSAGE_LEN_MAX];
    for message in [&b""[..], b"decision record 1", &long] {
        let Signature::Ed25519(signature) = store.sign(&label, message).expect("sign") else {
            panic!("an Ed25519 key gave another kind of signature")
        };
        let signature = ed25519_dalek::Signature::from_bytes(&signature);
        verifying
            .verify_strict(message, &signature)
            .expect("verifies independently");
        assert!(verifying.verify_strict(b"other", &signature).is_err());
    }
    assert!(matches!(
        store.sign(&label, &vec![0u8; MESSAGE_LEN_MAX + 1]),
        Err(HsmError::InvalidInput(_))
    ));
}

/// Wrong inputs to `sign`: digest length, algorithm, label.
pub fn sign_refusals(store: &dyn KeyStore, p: &str) {
    let secp = format!("{p}secp");
    let aes = format!("{p}aes");
    store
        .generate_key(&secp, KeyAlgorithm::Secp256k1)
        .expect("generate");
    store
        .generate_key(&aes, KeyAlgorithm::Aes256Wrap)
        .expect("generate");
    for len in [0, 31, 33, 64] {
        assert!(
            matches!(
                store.sign(&secp, &vec![1u8; len]),
                Err(HsmError::InvalidInput(_))
            ),
            "digest of {len} bytes"
        );
    }
    assert!(matches!(
        store.sign(&aes, &[0u8; 32]),
        Err(HsmError::WrongAlgorithm {
            operation: "sign",
            ..
        })
    ));
    assert!(matches!(
        store.sign(&format!("{p}missing"), &[0u8; 32]),
        Err(HsmError::KeyNotFound(_))
    ));
}

/// Wrap/unwrap: round trip at several lengths, and every refusal.
pub fn wrap_unwrap(store: &dyn KeyStore, p: &str) {
    let kek = format!("{p}kek");
    let other = format!("{p}kek2");
    let ed = format!("{p}ed");
    store
        .generate_key(&kek, KeyAlgorithm::Aes256Wrap)
        .expect("generate");
    store
        .generate_key(&other, KeyAlgorithm::Aes256Wrap)
        .expect("generate");
    store
        .generate_key(&ed, KeyAlgorithm::Ed25519)
        .expect("generate");
    for len in [1usize, 7, 16, 17, 32, 64, SECRET_LEN_MAX] {
        let secret: Vec<u8> = (0..len).map(|i| (i * 31 + len) as u8).collect();
        let wrapped = store
            .wrap_secret(&kek, &SecretBytes::new(secret.clone()))
            .expect("wrap");
        assert_eq!(
            wrapped.len(),
            hsm::wrap_format::wrapped_len(len),
            "length for {len}"
        );
        if len >= 8 {
            assert!(
                !wrapped.windows(8).any(|w| w == &secret[..8]),
                "the secret must not appear in the clear"
            );
        }
        let back = store.unwrap_secret(&kek, &wrapped).expect("unwrap");
        assert_eq!(back.expose(), &secret[..], "round trip of {len} bytes");
        let result = store.unwrap_secret(&other, &wrapped);
        assert!(
            matches!(result, Err(HsmError::InvalidInput(_))),
            "another key must not unwrap it: {result:?}"
        );
        let mut tampered = wrapped.clone();
        tampered[wrapped.len() / 2] ^= 0x01;
        let result = store.unwrap_secret(&kek, &tampered);
        assert!(
            matches!(result, Err(HsmError::InvalidInput(_))),
            "a tampered blob must not unwrap: {result:?}"
        );
    }
    let seed = SecretBytes::new(vec![9u8; 32]);
    assert!(matches!(
        store.wrap_secret(&ed, &seed),
        Err(HsmError::WrongAlgorithm { .. })
    ));
    assert!(matches!(
        store.wrap_secret(&format!("{p}missing"), &seed),
        Err(HsmError::KeyNotFound(_))
    ));
    assert!(matches!(
        store.wrap_secret(&kek, &SecretBytes::new(Vec::new())),
        Err(HsmError::InvalidInput(_))
    ));
    assert!(matches!(
        store.wrap_secret(&kek, &SecretBytes::new(vec![0u8; SECRET_LEN_MAX + 1])),
        Err(HsmError::InvalidInput(_))
    ));
    for bad in [
        &[][..],
        &[0u8; 8][..],
        &[0u8; 23][..],
        &[0u8; hsm::WRAPPED_LEN_MAX + 8][..],
    ] {
        assert!(
            matches!(
                store.unwrap_secret(&kek, bad),
                Err(HsmError::InvalidInput(_))
            ),
            "{} bytes",
            bad.len()
        );
    }
    let wrapped = store.wrap_secret(&kek, &seed).expect("wrap");
    assert!(matches!(
        store.unwrap_secret(&ed, &wrapped),
        Err(HsmError::WrongAlgorithm { .. })
    ));
    // Wrapping is randomised by neither RFC 5649 nor us: the same secret wraps to the same
    // bytes, which is what lets custody compare a re-wrapped backup with the original.
    assert_eq!(store.wrap_secret(&kek, &seed).expect("wrap"), wrapped);
}

/// Labels: duplicates (of any algorithm) and malformed labels are refused.
pub fn label_rules(store: &dyn KeyStore, p: &str) {
    let label = format!("{p}dup");
    store
        .generate_key(&label, KeyAlgorithm::Ed25519)
        .expect("generate");
    for algorithm in [
        KeyAlgorithm::Ed25519,
        KeyAlgorithm::Secp256k1,
        KeyAlgorithm::Aes256Wrap,
    ] {
        assert!(
            matches!(
                store.generate_key(&label, algorithm),
                Err(HsmError::KeyExists(_))
            ),
            "{algorithm:?}"
        );
    }
    for bad in [
        String::new(),
        "x".repeat(hsm::LABEL_LEN_MAX + 1),
        format!("{p}a\nb"),
    ] {
        assert!(
            matches!(
                store.generate_key(&bad, KeyAlgorithm::Ed25519),
                Err(HsmError::InvalidInput(_))
            ),
            "{bad:?}"
        );
    }
    // The longest label is accepted (and, in the software store, is a valid file name).
    let longest = format!("{p}{}", "l".repeat(hsm::LABEL_LEN_MAX - p.len()));
    store
        .generate_key(&longest, KeyAlgorithm::Secp256k1)
        .expect("longest label");
    assert!(store.sign(&longest, &[1u8; 32]).is_ok());
    // The label is unchanged by the duplicate attempts: still one Ed25519 key.
    let mine: Vec<_> = store
        .list_keys()
        .expect("list")
        .into_iter()
        .filter(|k| k.label == label)
        .collect();
    assert_eq!(
        mine,
        vec![KeyInfo {
            label,
            algorithm: KeyAlgorithm::Ed25519
        }]
    );
}

/// Destroy: the key is gone for every operation, and its label can be used again.
pub fn destroy(store: &dyn KeyStore, p: &str) {
    let label = format!("{p}gone");
    store
        .generate_key(&label, KeyAlgorithm::Secp256k1)
        .expect("generate");
    let before = store.public_key(&label).expect("pk");
    store.destroy_key(&label).expect("destroy");
    assert!(matches!(
        store.public_key(&label),
        Err(HsmError::KeyNotFound(_))
    ));
    assert!(matches!(
        store.sign(&label, &[0u8; 32]),
        Err(HsmError::KeyNotFound(_))
    ));
    assert!(matches!(
        store.destroy_key(&label),
        Err(HsmError::KeyNotFound(_))
    ));
    assert!(
        store
            .list_keys()
            .expect("list")
            .iter()
            .all(|k| k.label != label)
    );
    store
        .generate_key(&label, KeyAlgorithm::Secp256k1)
        .expect("label reusable");
    assert_ne!(
        store.public_key(&label).expect("pk"),
        before,
        "a new key, not the old one"
    );
}

/// `list_keys` is sorted by label and says each key's algorithm.
pub fn list_sorted(store: &dyn KeyStore, p: &str) {
    let wanted = [
        ("m", KeyAlgorithm::Ed25519),
        ("b", KeyAlgorithm::Secp256k1),
        ("z", KeyAlgorithm::Aes256Wrap),
        ("a/1", KeyAlgorithm::Ed25519),
        ("a", KeyAlgorithm::Secp256k1),
    ];
    for (name, algorithm) in wanted {
        store
            .generate_key(&format!("{p}{name}"), algorithm)
            .expect("generate");
    }
    let all = store.list_keys().expect("list");
    assert!(
        all.windows(2).all(|w| w[0].label < w[1].label),
        "sorted: {all:?}"
    );
    let mine: Vec<KeyInfo> = all.into_iter().filter(|k| k.label.starts_with(p)).collect();
    let mut expected: Vec<KeyInfo> = wanted
        .iter()
        .map(|(name, algorithm)| KeyInfo {
            label: format!("{p}{name}"),
            algorithm: *algorithm,
        })
        .collect();
    expected.sort_by(|a, b| a.label.cmp(&b.label));
    assert_eq!(mine, expected);
}

/// Several threads sign at once (PKCS#11 sessions are not shared between threads); every
/// signature verifies.
pub fn concurrent_signing(store: &dyn KeyStore, p: &str) {
    let secp = format!("{p}secp");
    let ed = format!("{p}ed");
    store
        .generate_key(&secp, KeyAlgorithm::Secp256k1)
        .expect("generate");
    store
        .generate_key(&ed, KeyAlgorithm::Ed25519)
        .expect("generate");
    let secp_public =
        VerifyingKey::from_sec1_bytes(&store.public_key(&secp).expect("pk").bytes).expect("point");
    std::thread::scope(|scope| {
        for t in 0..4 {
            let (secp, ed) = (&secp, &ed);
            scope.spawn(move || {
                for i in 0..8 {
                    let digest = digest_of(t * 100 + i);
                    let Signature::Secp256k1 { rs, .. } = store.sign(secp, &digest).expect("sign")
                    else {
                        panic!("wrong kind")
                    };
                    use k256::ecdsa::signature::hazmat::PrehashVerifier;
                    secp_public
                        .verify_prehash(
                            &digest,
                            &k256::ecdsa::Signature::from_slice(&rs).expect("rs"),
                        )
                        .expect("verifies");
                    assert!(matches!(store.sign(ed, &digest), Ok(Signature::Ed25519(_))));
                }
            });
        }
    });
}

/// Generates one `#[test]` per suite function. `$make` builds a fresh store (anything that
/// derefs to a `KeyStore`) and a label prefix for that test.
#[macro_export]
macro_rules! key_store_suite {
    ($make:expr) => {
        $crate::key_store_suite!(@tests $make;
            generates_each_algorithm, secp256k1_signatures, ed25519_signatures, sign_refusals,
            wrap_unwrap, label_rules, destroy, list_sorted, concurrent_signing);
    };
    (@tests $make:expr; $($name:ident),*) => {
        $(
            #[test]
            fn $name() {
                let (store, prefix) = ($make)(stringify!($name));
                common::suite::$name(&*store, &prefix);
            }
        )*
    };
}

/// One step of a random key-management sequence, for [`matches_model`].
#[derive(Debug, Clone)]
pub enum Op {
    Generate(usize, KeyAlgorithm),
    Destroy(usize),
    PublicKey(usize),
    Sign(usize),
    List,
}

/// Labels a sequence draws from: few, so that duplicates and re-use after destroy happen.
pub const MODEL_LABELS: usize = 5;

/// A proptest strategy for [`Op`] sequences.
pub fn ops(len_max: usize) -> impl proptest::strategy::Strategy<Value = Vec<Op>> {
    use proptest::prelude::*;
    let algorithm = prop_oneof![
        Just(KeyAlgorithm::Secp256k1),
        Just(KeyAlgorithm::Ed25519),
        Just(KeyAlgorithm::Aes256Wrap),
    ];
    let label = 0..MODEL_LABELS;
    let op = prop_oneof![
        3 => (label.clone(), algorithm).prop_map(|(l, a)| Op::Generate(l, a)),
        2 => label.clone().prop_map(Op::Destroy),
        2 => label.clone().prop_map(Op::PublicKey),
        2 => label.prop_map(Op::Sign),
        1 => Just(Op::List),
    ];
    proptest::collection::vec(op, 1..=len_max)
}

/// Runs `ops` against the store and against a naive model (a map from label to algorithm and
/// public key), comparing every answer.
pub fn matches_model(store: &dyn KeyStore, p: &str, ops: &[Op]) {
    use std::collections::BTreeMap;
    let mut model: BTreeMap<String, (KeyAlgorithm, Option<Vec<u8>>)> = BTreeMap::new();
    let label = |i: usize| format!("{p}{i}");
    for op in ops {
        match *op {
            Op::Generate(i, algorithm) => {
                let result = store.generate_key(&label(i), algorithm);
                match model.entry(label(i)) {
                    std::collections::btree_map::Entry::Occupied(_) => assert!(
                        matches!(result, Err(HsmError::KeyExists(_))),
                        "{op:?}: {result:?}"
                    ),
                    std::collections::btree_map::Entry::Vacant(entry) => {
                        assert!(result.is_ok(), "{op:?}: {result:?}");
                        entry.insert((algorithm, None));
                    }
                }
            }
            Op::Destroy(i) => {
                let result = store.destroy_key(&label(i));
                if model.remove(&label(i)).is_some() {
                    assert!(result.is_ok(), "{op:?}: {result:?}");
                } else {
                    assert!(
                        matches!(result, Err(HsmError::KeyNotFound(_))),
                        "{op:?}: {result:?}"
                    );
                }
            }
            Op::PublicKey(i) => {
                let result = store.public_key(&label(i));
                match model.get_mut(&label(i)) {
                    None => assert!(matches!(result, Err(HsmError::KeyNotFound(_))), "{op:?}"),
                    Some((KeyAlgorithm::Aes256Wrap, _)) => assert!(
                        matches!(result, Err(HsmError::WrongAlgorithm { .. })),
                        "{op:?}: {result:?}"
                    ),
                    Some((algorithm, seen)) => {
                        let public = result.expect("public key");
                        assert_eq!(public.algorithm, *algorithm);
                        // The same key answers with the same public key every time.
                        let seen = seen.get_or_insert_with(|| public.bytes.clone());
                        assert_eq!(seen, &public.bytes, "{op:?}");
                    }
                }
            }
            Op::Sign(i) => {
                let result = store.sign(&label(i), &digest_of(i));
                match model.get(&label(i)) {
                    None => assert!(matches!(result, Err(HsmError::KeyNotFound(_))), "{op:?}"),
                    Some((KeyAlgorithm::Secp256k1, _)) => {
                        assert!(matches!(result, Ok(Signature::Secp256k1 { .. })), "{op:?}")
                    }
                    Some((KeyAlgorithm::Ed25519, _)) => {
                        assert!(matches!(result, Ok(Signature::Ed25519(_))), "{op:?}")
                    }
                    Some(_) => assert!(
                        matches!(result, Err(HsmError::WrongAlgorithm { .. })),
                        "{op:?}: {result:?}"
                    ),
                }
            }
            Op::List => {
                let listed: Vec<(String, KeyAlgorithm)> = store
                    .list_keys()
                    .expect("list")
                    .into_iter()
                    .filter(|k| k.label.starts_with(p))
                    .map(|k| (k.label, k.algorithm))
                    .collect();
                let expected: Vec<(String, KeyAlgorithm)> =
                    model.iter().map(|(l, (a, _))| (l.clone(), *a)).collect();
                assert_eq!(listed, expected);
            }
        }
    }
}
