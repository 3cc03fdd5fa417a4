//! The shared key-store suite against the software backend, in memory and on disk.

mod common;

use hsm::SecretBytes;
use hsm::software::{KdfParams, SoftwareKeyStore};

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
