//! BIP-0032 test vectors 1 to 5, typed in from the specification (bitcoin/bips,
//! `bip-0032.mediawiki`, section "Test Vectors"), and the watch-only derivation.

use super::*;

/// (path, xpub, xprv) for each chain of a vector.
type Chain = (&'static str, &'static str, &'static str);

const VECTOR_1_SEED: &str = "000102030405060708090a0b0c0d0e0f";
const VECTOR_1: &[Chain] = &[
    (
        "m",
        "xpub661MyMwAqRbcFtXgS5sYJABqqG9YLmC4Q1Rdap9gSE8NqtwybGhePY2gZ29ESFjqJoCu1Rupje8YtGqsefD265TMg7usUDFdp6W1EGMcet8",
        "xprv9s21ZrQH143K3QTDL4LXw2F7HEK3wJUD2nW2nRk4stbPy6cq3jPPqjiChkVvvNKmPGJxWUtg6LnF5kejMRNNU3TGtRBeJgk33yuGBxrMPHi",
    ),
    (
        "m/0H",
        "xpub68Gmy5EdvgibQVfPdqkBBCHxA5htiqg55crXYuXoQRKfDBFA1WEjWgP6LHhwBZeNK1VTsfTFUHCdrfp1bgwQ9xv5ski8PX9rL2dZXvgGDnw",
        "xprv9uHRZZhk6KAJC1avXpDAp4MDc3sQKNxDiPvvkX8Br5ngLNv1TxvUxt4cV1rGL5hj6KCesnDYUhd7oWgT11eZG7XnxHrnYeSvkzY7d2bhkJ7",
    ),
    (
        "m/0H/1",
        "xpub6ASuArnXKPbfEwhqN6e3mwBcDTgzisQN1wXN9BJcM47sSikHjJf3UFHKkNAWbWMiGj7Wf5uMash7SyYq527Hqck2AxYysAA7xmALppuCkwQ",
        "xprv9wTYmMFdV23N2TdNG573QoEsfRrWKQgWeibmLntzniatZvR9BmLnvSxqu53Kw1UmYPxLgboyZQaXwTCg8MSY3H2EU4pWcQDnRnrVA1xe8fs",
    ),
    (
        "m/0H/1/2H",
        "xpub6D4BDPcP2GT577Vvch3R8wDkScZWzQzMMUm3PWbmWvVJrZwQY4VUNgqFJPMM3No2dFDFGTsxxpG5uJh7n7epu4trkrX7x7DogT5Uv6fcLW5",
        "xprv9z4pot5VBttmtdRTWfWQmoH1taj2axGVzFqSb8C9xaxKymcFzXBDptWmT7FwuEzG3ryjH4ktypQSAewRiNMjANTtpgP4mLTj34bhnZX7UiM",
    ),
    (
        "m/0H/1/2H/2",
        "xpub6FHa3pjLCk84BayeJxFW2SP4XRrFd1JYnxeLeU8EqN3vDfZmbqBqaGJAyiLjTAwm6ZLRQUMv1ZACTj37sR62cfN7fe5JnJ7dh8zL4fiyLHV",
        "xprvA2JDeKCSNNZky6uBCviVfJSKyQ1mDYahRjijr5idH2WwLsEd4Hsb2Tyh8RfQMuPh7f7RtyzTtdrbdqqsunu5Mm3wDvUAKRHSC34sJ7in334",
    ),
    (
        "m/0H/1/2H/2/1000000000",
        "xpub6H1LXWLaKsWFhvm6RVpEL9P4KfRZSW7abD2ttkWP3SSQvnyA8FSVqNTEcYFgJS2UaFcxupHiYkro49S8yGasTvXEYBVPamhGW6cFJodrTHy",
        "xprvA41z7zogVVwxVSgdKUHDy1SKmdb533PjDz7J6N6mV6uS3ze1ai8FHa8kmHScGpWmj4WggLyQjgPie1rFSruoUihUZREPSL39UNdE3BBDu76",
    ),
];

const VECTOR_2_SEED: &str = "fffcf9f6f3f0edeae7e4e1dedbd8d5d2cfccc9c6c3c0bdbab7b4b1aeaba8a5a29f9c999693908d8a8784817e7b7875726f6c696663605d5a5754514e4b484542";
const VECTOR_2: &[Chain] = &[
    (
        "m",
        "xpub661MyMwAqRbcFW31YEwpkMuc5THy2PSt5bDMsktWQcFF8syAmRUapSCGu8ED9W6oDMSgv6Zz8idoc4a6mr8BDzTJY47LJhkJ8UB7WEGuduB",
        "xprv9s21ZrQH143K31xYSDQpPDxsXRTUcvj2iNHm5NUtrGiGG5e2DtALGdso3pGz6ssrdK4PFmM8NSpSBHNqPqm55Qn3LqFtT2emdEXVYsCzC2U",
    ),
    (
        "m/0",
        "xpub69H7F5d8KSRgmmdJg2KhpAK8SR3DjMwAdkxj3ZuxV27CprR9LgpeyGmXUbC6wb7ERfvrnKZjXoUmmDznezpbZb7ap6r1D3tgFxHmwMkQTPH",
        "xprv9vHkqa6EV4sPZHYqZznhT2NPtPCjKuDKGY38FBWLvgaDx45zo9WQRUT3dKYnjwih2yJD9mkrocEZXo1ex8G81dwSM1fwqWpWkeS3v86pgKt",
    ),
    (
        "m/0/2147483647H",
        "xpub6ASAVgeehLbnwdqV6UKMHVzgqAG8Gr6riv3Fxxpj8ksbH9ebxaEyBLZ85ySDhKiLDBrQSARLq1uNRts8RuJiHjaDMBU4Zn9h8LZNnBC5y4a",
        "xprv9wSp6B7kry3Vj9m1zSnLvN3xH8RdsPP1Mh7fAaR7aRLcQMKTR2vidYEeEg2mUCTAwCd6vnxVrcjfy2kRgVsFawNzmjuHc2YmYRmagcEPdU9",
    ),
    (
        "m/0/2147483647H/1",
        "xpub6DF8uhdarytz3FWdA8TvFSvvAh8dP3283MY7p2V4SeE2wyWmG5mg5EwVvmdMVCQcoNJxGoWaU9DCWh89LojfZ537wTfunKau47EL2dhHKon",
        "xprv9zFnWC6h2cLgpmSA46vutJzBcfJ8yaJGg8cX1e5StJh45BBciYTRXSd25UEPVuesF9yog62tGAQtHjXajPPdbRCHuWS6T8XA2ECKADdw4Ef",
    ),
    (
        "m/0/2147483647H/1/2147483646H",
        "xpub6ERApfZwUNrhLCkDtcHTcxd75RbzS1ed54G1LkBUHQVHQKqhMkhgbmJbZRkrgZw4koxb5JaHWkY4ALHY2grBGRjaDMzQLcgJvLJuZZvRcEL",
        "xprvA1RpRA33e1JQ7ifknakTFpgNXPmW2YvmhqLQYMmrj4xJXXWYpDPS3xz7iAxn8L39njGVyuoseXzU6rcxFLJ8HFsTjSyQbLYnMpCqE2VbFWc",
    ),
    (
        "m/0/2147483647H/1/2147483646H/2",
        "xpub6FnCn6nSzZAw5Tw7cgR9bi15UV96gLZhjDstkXXxvCLsUXBGXPdSnLFbdpq8p9HmGsApME5hQTZ3emM2rnY5agb9rXpVGyy3bdW6EEgAtqt",
        "xprvA2nrNbFZABcdryreWet9Ea4LvTJcGsqrMzxHx98MMrotbir7yrKCEXw7nadnHM8Dq38EGfSh6dqA9QWTyefMLEcBYJUuekgW4BYPJcr9E7j",
    ),
];

/// Vector 3: retention of leading zeros (bitpay/bitcore-lib#47).
const VECTOR_3_SEED: &str = "4b381541583be4423346c643850da4b320e46a87ae3d2a4e6da11eba819cd4acba45d239319ac14f863b8d5ab5a0d0c64d2e8a1e7d1457df2e5a3c51c73235be";
const VECTOR_3: &[Chain] = &[
    (
        "m",
        "xpub661MyMwAqRbcEZVB4dScxMAdx6d4nFc9nvyvH3v4gJL378CSRZiYmhRoP7mBy6gSPSCYk6SzXPTf3ND1cZAceL7SfJ1Z3GC8vBgp2epUt13",
        "xprv9s21ZrQH143K25QhxbucbDDuQ4naNntJRi4KUfWT7xo4EKsHt2QJDu7KXp1A3u7Bi1j8ph3EGsZ9Xvz9dGuVrtHHs7pXeTzjuxBrCmmhgC6",
    ),
    (
        "m/0H",
        "xpub68NZiKmJWnxxS6aaHmn81bvJeTESw724CRDs6HbuccFQN9Ku14VQrADWgqbhhTHBaohPX4CjNLf9fq9MYo6oDaPPLPxSb7gwQN3ih19Zm4Y",
        "xprv9uPDJpEQgRQfDcW7BkF7eTya6RPxXeJCqCJGHuCJ4GiRVLzkTXBAJMu2qaMWPrS7AANYqdq6vcBcBUdJCVVFceUvJFjaPdGZ2y9WACViL4L",
    ),
];

/// Vector 4: retention of leading zeros (btcsuite/btcutil#172); a 32-byte seed.
const VECTOR_4_SEED: &str = "3ddd5602285899a946114506157c7997e5444528f3003f6134712147db19b678";
const VECTOR_4: &[Chain] = &[
    (
        "m",
        "xpub661MyMwAqRbcGczjuMoRm6dXaLDEhW1u34gKenbeYqAix21mdUKJyuyu5F1rzYGVxyL6tmgBUAEPrEz92mBXjByMRiJdba9wpnN37RLLAXa",
        "xprv9s21ZrQH143K48vGoLGRPxgo2JNkJ3J3fqkirQC2zVdk5Dgd5w14S7fRDyHH4dWNHUgkvsvNDCkvAwcSHNAQwhwgNMgZhLtQC63zxwhQmRv",
    ),
    (
        "m/0H",
        "xpub69AUMk3qDBi3uW1sXgjCmVjJ2G6WQoYSnNHyzkmdCHEhSZ4tBok37xfFEqHd2AddP56Tqp4o56AePAgCjYdvpW2PU2jbUPFKsav5ut6Ch1m",
        "xprv9vB7xEWwNp9kh1wQRfCCQMnZUEG21LpbR9NPCNN1dwhiZkjjeGRnaALmPXCX7SgjFTiCTT6bXes17boXtjq3xLpcDjzEuGLQBM5ohqkao9G",
    ),
    (
        "m/0H/1H",
        "xpub6BJA1jSqiukeaesWfxe6sNK9CCGaujFFSJLomWHprUL9DePQ4JDkM5d88n49sMGJxrhpjazuXYWdMf17C9T5XnxkopaeS7jGk1GyyVziaMt",
        "xprv9xJocDuwtYCMNAo3Zw76WENQeAS6WGXQ55RCy7tDJ8oALr4FWkuVoHJeHVAcAqiZLE7Je3vZJHxspZdFHfnBEjHqU5hG1Jaj32dVoS6XLT1",
    ),
];

fn check_vector(seed_hex: &str, chains: &[Chain]) {
    let seed = Seed::from_hex(seed_hex).unwrap();
    for (path, xpub, xprv) in chains {
        let path = DerivationPath::parse(path).unwrap();
        let pair = derive_serialized(&seed, &path).unwrap();
        assert_eq!(pair.xpub, *xpub, "xpub at {path}");
        assert_eq!(pair.xprv.as_str(), *xprv, "xprv at {path}");
        // Every valid key of the vectors also imports, and round-trips.
        match import_extended_key(xprv).unwrap() {
            ImportedKey::Private(k) => assert_eq!(k.to_string(Prefix::XPRV).as_str(), *xprv),
            ImportedKey::Public(_) => panic!("xprv imported as public"),
        }
        match import_extended_key(xpub).unwrap() {
            ImportedKey::Public(k) => assert_eq!(k.to_string(Prefix::XPUB), *xpub),
            ImportedKey::Private(_) => panic!("xpub imported as private"),
        }
    }
}

#[test]
fn bip32_test_vector_1() {
    check_vector(VECTOR_1_SEED, VECTOR_1);
}

#[test]
fn bip32_test_vector_2() {
    check_vector(VECTOR_2_SEED, VECTOR_2);
}

#[test]
fn bip32_test_vector_3() {
    check_vector(VECTOR_3_SEED, VECTOR_3);
}

#[test]
fn bip32_test_vector_4() {
    check_vector(VECTOR_4_SEED, VECTOR_4);
}

/// Test vector 5: the 16 invalid extended keys, each with the reason the specification gives
/// and the refusal expected for that reason.
#[test]
fn bip32_test_vector_5_rejects_all_sixteen() {
    use KeyImportError as E;
    let cases: &[(&str, &str, E)] = &[
        (
            "xpub661MyMwAqRbcEYS8w7XLSVeEsBXy79zSzH1J8vCdxAZningWLdN3zgtU6LBpB85b3D2yc8sfvZU521AAwdZafEz7mnzBBsz4wKY5fTtTQBm",
            "pubkey version / prvkey mismatch",
            E::PublicVersionPrivateData,
        ),
        (
            "xprv9s21ZrQH143K24Mfq5zL5MhWK9hUhhGbd45hLXo2Pq2oqzMMo63oStZzFGTQQD3dC4H2D5GBj7vWvSQaaBv5cxi9gafk7NF3pnBju6dwKvH",
            "prvkey version / pubkey mismatch",
            E::PrivateVersionPublicData,
        ),
        (
            "xpub661MyMwAqRbcEYS8w7XLSVeEsBXy79zSzH1J8vCdxAZningWLdN3zgtU6Txnt3siSujt9RCVYsx4qHZGc62TG4McvMGcAUjeuwZdduYEvFn",
            "invalid pubkey prefix 04",
            E::PublicKeyPrefix(0x04),
        ),
        (
            "xprv9s21ZrQH143K24Mfq5zL5MhWK9hUhhGbd45hLXo2Pq2oqzMMo63oStZzFGpWnsj83BHtEy5Zt8CcDr1UiRXuWCmTQLxEK9vbz5gPstX92JQ",
            "invalid prvkey prefix 04",
            E::PrivateKeyPrefix(0x04),
        ),
        (
            "xpub661MyMwAqRbcEYS8w7XLSVeEsBXy79zSzH1J8vCdxAZningWLdN3zgtU6N8ZMMXctdiCjxTNq964yKkwrkBJJwpzZS4HS2fxvyYUA4q2Xe4",
            "invalid pubkey prefix 01",
            E::PublicKeyPrefix(0x01),
        ),
        (
            "xprv9s21ZrQH143K24Mfq5zL5MhWK9hUhhGbd45hLXo2Pq2oqzMMo63oStZzFAzHGBP2UuGCqWLTAPLcMtD9y5gkZ6Eq3Rjuahrv17fEQ3Qen6J",
            "invalid prvkey prefix 01",
            E::PrivateKeyPrefix(0x01),
        ),
        (
            "xprv9s2SPatNQ9Vc6GTbVMFPFo7jsaZySyzk7L8n2uqKXJen3KUmvQNTuLh3fhZMBoG3G4ZW1N2kZuHEPY53qmbZzCHshoQnNf4GvELZfqTUrcv",
            "zero depth with non-zero parent fingerprint",
            E::DepthZeroWithParent,
        ),
        (
            "xpub661no6RGEX3uJkY4bNnPcw4URcQTrSibUZ4NqJEw5eBkv7ovTwgiT91XX27VbEXGENhYRCf7hyEbWrR3FewATdCEebj6znwMfQkhRYHRLpJ",
            "zero depth with non-zero parent fingerprint",
            E::DepthZeroWithParent,
        ),
        (
            "xprv9s21ZrQH4r4TsiLvyLXqM9P7k1K3EYhA1kkD6xuquB5i39AU8KF42acDyL3qsDbU9NmZn6MsGSUYZEsuoePmjzsB3eFKSUEh3Gu1N3cqVUN",
            "zero depth with non-zero index",
            E::DepthZeroWithIndex,
        ),
        (
            "xpub661MyMwAuDcm6CRQ5N4qiHKrJ39Xe1R1NyfouMKTTWcguwVcfrZJaNvhpebzGerh7gucBvzEQWRugZDuDXjNDRmXzSZe4c7mnTK97pTvGS8",
            "zero depth with non-zero index",
            E::DepthZeroWithIndex,
        ),
        (
            "DMwo58pR1QLEFihHiXPVykYB6fJmsTeHvyTp7hRThAtCX8CvYzgPcn8XnmdfHGMQzT7ayAmfo4z3gY5KfbrZWZ6St24UVf2Qgo6oujFktLHdHY4",
            "unknown extended key version",
            E::UnknownVersion(0),
        ),
        (
            "DMwo58pR1QLEFihHiXPVykYB6fJmsTeHvyTp7hRThAtCX8CvYzgPcn8XnmdfHPmHJiEDXkTiJTVV9rHEBUem2mwVbbNfvT2MTcAqj3nesx8uBf9",
            "unknown extended key version",
            E::UnknownVersion(0),
        ),
        (
            "xprv9s21ZrQH143K24Mfq5zL5MhWK9hUhhGbd45hLXo2Pq2oqzMMo63oStZzF93Y5wvzdUayhgkkFoicQZcP3y52uPPxFnfoLZB21Teqt1VvEHx",
            "private key 0 not in 1..n-1",
            E::PrivateKeyOutOfRange,
        ),
        (
            "xprv9s21ZrQH143K24Mfq5zL5MhWK9hUhhGbd45hLXo2Pq2oqzMMo63oStZzFAzHGBP2UuGCqWLTAPLcMtD5SDKr24z3aiUvKr9bJpdrcLg1y3G",
            "private key n not in 1..n-1",
            E::PrivateKeyOutOfRange,
        ),
        (
            "xpub661MyMwAqRbcEYS8w7XLSVeEsBXy79zSzH1J8vCdxAZningWLdN3zgtU6Q5JXayek4PRsn35jii4veMimro1xefsM58PgBMrvdYre8QyULY",
            "invalid pubkey 020000000000000000000000000000000000000000000000000000000000000007",
            E::PublicKeyNotOnCurve,
        ),
        (
            "xprv9s21ZrQH143K3QTDL4LXw2F7HEK3wJUD2nW2nRk4stbPy6cq3jPPqjiChkVvvNKmPGJxWUtg6LnF5kejMRNNU3TGtRBeJgk33yuGBxrMPHL",
            "invalid checksum",
            E::Checksum,
        ),
    ];
    assert_eq!(cases.len(), 16);
    for (text, reason, want) in cases {
        match import_extended_key(text) {
            Ok(_) => panic!("accepted invalid key ({reason}): {text}"),
            // The version value itself is whatever the vector's author picked; the variant
            // is what matters there.
            Err(E::UnknownVersion(v)) => {
                assert!(
                    matches!(want, E::UnknownVersion(_)),
                    "{reason}: got version {v:08x}"
                );
                assert!(![VERSION_XPRV, VERSION_XPUB, VERSION_TPRV, VERSION_TPUB].contains(&v));
            }
            Err(got) => assert_eq!(&got, want, "{reason}: {text}"),
        }
    }
}

#[test]
fn bad_input_is_refused_clearly() {
    assert_eq!(
        import_extended_key("xpub0OIl").unwrap_err(),
        KeyImportError::Base58
    );
    assert_eq!(
        import_extended_key(&"x".repeat(200)).unwrap_err(),
        KeyImportError::TooLong
    );
    assert_eq!(Seed::from_hex("00zz").unwrap_err(), HdError::SeedNotHex);
    assert_eq!(Seed::from_hex("0011").unwrap_err(), HdError::SeedLength(2));
    assert_eq!(
        Seed::from_hex(&"00".repeat(65)).unwrap_err(),
        HdError::SeedLength(65)
    );
    // A 20-byte seed is valid BIP-0032 even though `XPrv::new` would refuse it.
    assert!(Seed::from_hex(&"ab".repeat(20)).is_ok_and(|s| master_key(&s).is_ok()));
    let seed = Seed::from_hex(VECTOR_1_SEED).unwrap();
    assert!(!format!("{seed:?}").contains("0102"));
}

#[test]
fn watch_only_derivation_matches_the_private_side() {
    // From vector 1: the xpub at m/0H/1/2H/2 derives m/0H/1/2H/2/1000000000 publicly.
    let account = WatchOnlyAccount::from_xpub(VECTOR_1[4].1).unwrap();
    let child = account
        .derive(&DerivationPath::parse("m/1000000000").unwrap())
        .unwrap();
    assert_eq!(child.to_string(Prefix::XPUB), VECTOR_1[5].1);
    // Deposit keys from the xpub equal those from the seed (path 0/index below the account).
    let seed = Seed::from_hex(VECTOR_1_SEED).unwrap();
    let account_path = DerivationPath::parse("m/44'/0'/7'").unwrap();
    let account_xprv = derive_xprv(&seed, &account_path).unwrap();
    let online =
        WatchOnlyAccount::from_xpub(&WatchOnlyAccount::from_xprv(&account_xprv).xpub()).unwrap();
    for index in [0u32, 1, 2, 1_000, (1 << 31) - 1] {
        let full = DerivationPath::parse(&format!("m/44'/0'/7'/0/{index}")).unwrap();
        let want = derive_xprv(&seed, &full).unwrap().public_key().to_bytes();
        assert_eq!(online.deposit_key(index).unwrap(), want);
    }
    // Hardened steps and private keys are refused on the online side.
    assert!(matches!(
        online.derive(&DerivationPath::parse("m/1'").unwrap()),
        Err(HdError::HardenedFromPublic(_))
    ));
    assert!(matches!(
        WatchOnlyAccount::from_xpub(VECTOR_1[0].2),
        Err(WatchOnlyError::Hd(HdError::NotPublic))
    ));
    assert!(online.deposit_key(1 << 31).is_err());
}
