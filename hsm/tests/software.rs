//! The shared key-store suite against the software backend, in memory and on disk.

mod common;

use hsm::software::{KdfParams, SoftwareKeyStore};
use hsm::{KeyStore, SecretBytes};

mod in_memory {
    use super::*;

    key_store_suite!(|name: &str| (Box::new(SoftwareKeyStore::in_memory()), format!("{name}/")));
}

mod on_disk {
    use super::*;

    /// The store and the directory it lives in, which must outlive it.
    struct OnDisk {
        store: SoftwareKeyStore,
        _dir: tempfile::TempDir,
    }

    impl std::ops::Deref for OnDisk {
        type Target = SoftwareKeyStore;
        fn deref(&self) -> &SoftwareKeyStore {
            &self.store
        }
    }

    fn open(name: &str) -> (OnDisk, String) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SoftwareKeyStore::open_with_params(
            dir.path().join("keys"),
            &SecretBytes::new(b"test passphrase".to_vec()),
            KdfParams::INSECURE_FAST_FOR_TESTS,
        )
        .expect("open");
        (OnDisk { store, _dir: dir }, format!("{name}/"))
    }

    key_store_suite!(open);
}

mod model {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        // In memory: the store's bookkeeping is what is compared, and cases are cheap.
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn in_memory_store_matches_the_model(ops in common::suite::ops(40)) {
            let store = SoftwareKeyStore::in_memory();
            common::suite::matches_model(&store, "m/", &ops);
        }
    }

    proptest! {
        // On disk each case pays an Argon2id derivation and file writes: fewer cases.
        #![proptest_config(ProptestConfig::with_cases(16))]

        #[test]
        fn on_disk_store_matches_the_model_and_after_reopening(ops in common::suite::ops(30)) {
            let dir = tempfile::tempdir().expect("tempdir");
            let open = || SoftwareKeyStore::open_with_params(
                dir.path(),
                &SecretBytes::new(b"model".to_vec()),
                KdfParams::INSECURE_FAST_FOR_TESTS,
            ).expect("open");
            let store = open();
            common::suite::matches_model(&store, "m/", &ops);
            let before = store.list_keys().expect("list");
            drop(store);
            prop_assert_eq!(open().list_keys().expect("list"), before);
        }
    }
}
