//! SLIP-0010 key derivation for Ed25519, written on HMAC-SHA512 (the `hmac` and `sha2`
//! crates) because no well-kept crate offers it on the current `ed25519-dalek`.
//!
//! Ed25519 has no public-key derivation, so SLIP-0010 allows hardened steps only: a path with
//! a normal step is refused. The master key is HMAC-SHA512(key = "ed25519 seed", seed); a child
//! is HMAC-SHA512(key = chain code, 0x00 || parent key || ser32(index + 2^31)), the left half
//! being the child key and the right half its chain code.

use hmac::{KeyInit, Mac};
use ripemd::Ripemd160;
use sha2::{Digest, Sha256, Sha512};
use zeroize::Zeroizing;

use crate::hd::Seed;
use crate::path::{ChildIndex, DerivationPath};

/// An Ed25519 extended private key. The key is zeroized on drop and never printed.
#[derive(Clone)]
pub struct Ed25519ExtendedKey {
    key: Zeroizing<[u8; 32]>,
    chain_code: [u8; 32],
    depth: u8,
    parent_fingerprint: [u8; 4],
    child_number: u32,
}

impl std::fmt::Debug for Ed25519ExtendedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ed25519ExtendedKey")
            .field("key", &"[REDACTED]")
            .field("depth", &self.depth)
            .field("parent_fingerprint", &hex::encode(self.parent_fingerprint))
            .field("child_number", &self.child_number)
            .finish()
    }
}

/// Why a SLIP-0010 derivation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Slip10Error {
    /// Ed25519 supports hardened steps only.
    #[error("step {0} is not hardened: Ed25519 (SLIP-0010) supports hardened derivation only")]
    NormalStep(ChildIndex),
    /// Depth 255 reached.
    #[error("derivation deeper than 255")]
    TooDeep,
}

fn hmac_sha512(key: &[u8], parts: &[&[u8]]) -> Zeroizing<[u8; 64]> {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = hmac::Hmac::<Sha512>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    for part in parts {
        mac.update(part);
    }
    let mut out = Zeroizing::new([0u8; 64]);
    out.copy_from_slice(&mac.finalize().into_bytes());
    out
}

impl Ed25519ExtendedKey {
    /// The master key of a seed.
    pub fn master(seed: &Seed) -> Self {
        let i = hmac_sha512(b"ed25519 seed", &[seed.expose()]);
        Self::from_halves(&i, 0, [0; 4], 0)
    }

    fn from_halves(
        i: &[u8; 64],
        depth: u8,
        parent_fingerprint: [u8; 4],
        child_number: u32,
    ) -> Self {
        let mut key = Zeroizing::new([0u8; 32]);
        key.copy_from_slice(&i[..32]);
        let mut chain_code = [0u8; 32];
        chain_code.copy_from_slice(&i[32..]);
        Self {
            key,
            chain_code,
            depth,
            parent_fingerprint,
            child_number,
        }
    }

    /// The hardened child `index'`.
    pub fn derive_child(&self, step: ChildIndex) -> Result<Self, Slip10Error> {
        if !step.hardened {
            return Err(Slip10Error::NormalStep(step));
        }
        let depth = self.depth.checked_add(1).ok_or(Slip10Error::TooDeep)?;
        let raw = step.raw().to_be_bytes();
        let i = hmac_sha512(&self.chain_code, &[&[0u8], self.key.as_slice(), &raw]);
        Ok(Self::from_halves(&i, depth, self.fingerprint(), step.raw()))
    }

    /// Derives along `path` from the seed's master key.
    pub fn derive(seed: &Seed, path: &DerivationPath) -> Result<Self, Slip10Error> {
        let mut key = Self::master(seed);
        for step in path.steps() {
            key = key.derive_child(*step)?;
        }
        Ok(key)
    }

    /// The 32-byte Ed25519 public key.
    pub fn public_key(&self) -> [u8; 32] {
        ed25519_dalek::SigningKey::from_bytes(&self.key)
            .verifying_key()
            .to_bytes()
    }

    /// The public key as SLIP-0010 prints it: 0x00 followed by the 32 bytes.
    pub fn public_key_prefixed(&self) -> [u8; 33] {
        let mut out = [0u8; 33];
        out[1..].copy_from_slice(&self.public_key());
        out
    }

    /// First 4 bytes of RIPEMD160(SHA256(0x00 || public key)), as in BIP-0032.
    pub fn fingerprint(&self) -> [u8; 4] {
        let h = Ripemd160::digest(Sha256::digest(self.public_key_prefixed()));
        [h[0], h[1], h[2], h[3]]
    }

    /// The chain code.
    pub fn chain_code(&self) -> &[u8; 32] {
        &self.chain_code
    }

    /// The parent's fingerprint (zero for the master key).
    pub fn parent_fingerprint(&self) -> [u8; 4] {
        self.parent_fingerprint
    }

    /// Depth below the master key.
    pub fn depth(&self) -> u8 {
        self.depth
    }

    /// The private key bytes. Callers must not copy them into anything that is not zeroized.
    pub fn expose_private_key(&self) -> &[u8; 32] {
        &self.key
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (path, parent fingerprint, chain code, private key, public key with 0x00 prefix).
    type Chain = (
        &'static str,
        &'static str,
        &'static str,
        &'static str,
        &'static str,
    );

    fn check(seed_hex: &str, chains: &[Chain]) {
        let seed = Seed::from_hex(seed_hex).unwrap();
        for (path, fingerprint, chain_code, private, public) in chains {
            let path = DerivationPath::parse(path).unwrap();
            let key = Ed25519ExtendedKey::derive(&seed, &path).unwrap();
            assert_eq!(
                hex::encode(key.parent_fingerprint()),
                *fingerprint,
                "{path}"
            );
            assert_eq!(hex::encode(key.chain_code()), *chain_code, "{path}");
            assert_eq!(hex::encode(key.expose_private_key()), *private, "{path}");
            assert_eq!(hex::encode(key.public_key_prefixed()), *public, "{path}");
        }
    }

    /// SLIP-0010 "Test vector 1 for ed25519", typed in from satoshilabs/slips `slip-0010.md`.
    #[test]
    fn slip10_ed25519_test_vector_1() {
        check(
            "000102030405060708090a0b0c0d0e0f",
            &[
                (
                    "m",
                    "00000000",
                    "90046a93de5380a72b5e45010748567d5ea02bbf6522f979e05c0d8d8ca9fffb",
                    "2b4be7f19ee27bbf30c667b642d5f4aa69fd169872f8fc3059c08ebae2eb19e7",
                    "00a4b2856bfec510abab89753fac1ac0e1112364e7d250545963f135f2a33188ed",
                ),
                (
                    "m/0H",
                    "ddebc675",
                    "8b59aa11380b624e81507a27fedda59fea6d0b779a778918a2fd3590e16e9c69",
                    "68e0fe46dfb67e368c75379acec591dad19df3cde26e63b93a8e704f1dade7a3",
                    "008c8a13df77a28f3445213a0f432fde644acaa215fc72dcdf300d5efaa85d350c",
                ),
                (
                    "m/0H/1H",
                    "13dab143",
                    "a320425f77d1b5c2505a6b1b27382b37368ee640e3557c315416801243552f14",
                    "b1d0bad404bf35da785a64ca1ac54b2617211d2777696fbffaf208f746ae84f2",
                    "001932a5270f335bed617d5b935c80aedb1a35bd9fc1e31acafd5372c30f5c1187",
                ),
                (
                    "m/0H/1H/2H",
                    "ebe4cb29",
                    "2e69929e00b5ab250f49c3fb1c12f252de4fed2c1db88387094a0f8c4c9ccd6c",
                    "92a5b23c0b8a99e37d07df3fb9966917f5d06e02ddbd909c7e184371463e9fc9",
                    "00ae98736566d30ed0e9d2f4486a64bc95740d89c7db33f52121f8ea8f76ff0fc1",
                ),
                (
                    "m/0H/1H/2H/2H",
                    "316ec1c6",
                    "8f6d87f93d750e0efccda017d662a1b31a266e4a6f5993b15f5c1f07f74dd5cc",
                    "30d1dc7e5fc04c31219ab25a27ae00b50f6fd66622f6e9c913253d6511d1e662",
                    "008abae2d66361c879b900d204ad2cc4984fa2aa344dd7ddc46007329ac76c429c",
                ),
                (
                    "m/0H/1H/2H/2H/1000000000H",
                    "d6322ccd",
                    "68789923a0cac2cd5a29172a475fe9e0fb14cd6adb5ad98a3fa70333e7afa230",
                    "8f94d394a8e8fd6b1bc2f3f49f5c47e385281d5c17e65324b0f62483e37e8793",
                    "003c24da049451555d51a7014a37337aa4e12d41e485abccfa46b47dfb2af54b7a",
                ),
            ],
        );
    }

    /// SLIP-0010 "Test vector 2 for ed25519", typed in from satoshilabs/slips `slip-0010.md`.
    #[test]
    fn slip10_ed25519_test_vector_2() {
        check(
            "fffcf9f6f3f0edeae7e4e1dedbd8d5d2cfccc9c6c3c0bdbab7b4b1aeaba8a5a29f9c999693908d8a8784817e7b7875726f6c696663605d5a5754514e4b484542",
            &[
                (
                    "m",
                    "00000000",
                    "ef70a74db9c3a5af931b5fe73ed8e1a53464133654fd55e7a66f8570b8e33c3b",
                    "171cb88b1b3c1db25add599712e36245d75bc65a1a5c9e18d76f9f2b1eab4012",
                    "008fe9693f8fa62a4305a140b9764c5ee01e455963744fe18204b4fb948249308a",
                ),
                (
                    "m/0H",
                    "31981b50",
                    "0b78a3226f915c082bf118f83618a618ab6dec793752624cbeb622acb562862d",
                    "1559eb2bbec5790b0c65d8693e4d0875b1747f4970ae8b650486ed7470845635",
                    "0086fab68dcb57aa196c77c5f264f215a112c22a912c10d123b0d03c3c28ef1037",
                ),
                (
                    "m/0H/2147483647H",
                    "1e9411b1",
                    "138f0b2551bcafeca6ff2aa88ba8ed0ed8de070841f0c4ef0165df8181eaad7f",
                    "ea4f5bfe8694d8bb74b7b59404632fd5968b774ed545e810de9c32a4fb4192f4",
                    "005ba3b9ac6e90e83effcd25ac4e58a1365a9e35a3d3ae5eb07b9e4d90bcf7506d",
                ),
                (
                    "m/0H/2147483647H/1H",
                    "fcadf38c",
                    "73bd9fff1cfbde33a1b846c27085f711c0fe2d66fd32e139d3ebc28e5a4a6b90",
                    "3757c7577170179c7868353ada796c839135b3d30554bbb74a4b1e4a5a58505c",
                    "002e66aa57069c86cc18249aecf5cb5a9cebbfd6fadeab056254763874a9352b45",
                ),
                (
                    "m/0H/2147483647H/1H/2147483646H",
                    "aca70953",
                    "0902fe8a29f9140480a00ef244bd183e8a13288e4412d8389d140aac1794825a",
                    "5837736c89570de861ebc173b1086da4f505d4adb387c6a1b1342d5e4ac9ec72",
                    "00e33c0f7d81d843c572275f287498e8d408654fdf0d1e065b84e2e6f157aab09b",
                ),
                (
                    "m/0H/2147483647H/1H/2147483646H/2H",
                    "422c654b",
                    "5d70af781f3a37b829f0d060924d5e960bdc02e85423494afc0b1a41bbe196d4",
                    "551d333177df541ad876a60ea71f00447931c0a9da16f227c11ea080d7391b8d",
                    "0047150c75db263559a70d5778bf36abbab30fb061ad69f69ece61a72b0cfa4fc0",
                ),
            ],
        );
    }

    #[test]
    fn normal_steps_are_refused() {
        let seed = Seed::from_hex("000102030405060708090a0b0c0d0e0f").unwrap();
        let err = Ed25519ExtendedKey::derive(&seed, &DerivationPath::parse("m/0'/1").unwrap())
            .unwrap_err();
        assert_eq!(
            err,
            Slip10Error::NormalStep(ChildIndex {
                index: 1,
                hardened: false
            })
        );
        let key = Ed25519ExtendedKey::master(&seed);
        assert!(!format!("{key:?}").contains("2b4be7"));
    }
}
