//! Custody through its public API only, as the node will use it: provision keys from a seed,
//! back the seed up and restore it, derive deposit keys on the online side, run a withdrawal
//! from request to submission with an audited, checkpointed log, and publish a proof of
//! reserves that a client verifies.

use std::sync::Arc;

use custody::audit::verify;
use custody::backup::{SeedShare, restore_seed, split_seed};
use custody::hd::{Seed, WatchOnlyAccount, derive_xprv, master_fingerprint};
use custody::path::DerivationPath;
use custody::policy::Policy;
use custody::por::{Liability, SumTree, check_published_root};
use custody::tier::{Destination, Tier};
use custody::withdrawal::{
    Custody, CustodyConfig, Signers, Status, WalletConfig, WithdrawalRequest,
};
use hsm::software::SoftwareKeyStore;
use hsm::{KeyAlgorithm, KeyStore};

const POLICY: &str = r#"{
  "version": 1,
  "groups": { "treasury": ["alice", "bob"], "admins": ["root1", "root2"] },
  "admin_group": "admins", "admin_quorum": 2, "approval_ttl_s": 900,
  "rules": [
    { "name": "small", "when": [ { "amount": { "max_minor": 100000 } }, { "source_tier": { "any_of": ["hot"] } } ], "then": "allow" },
    { "name": "refill", "when": [ { "source_tier": { "any_of": ["cold", "warm"] } } ],
      "then": { "approvals": { "group": "treasury", "required": 2 } } },
    { "name": "deny-all", "then": "deny" }
  ]
}"#;

#[test]
fn seed_to_deposit_keys_with_a_restore_drill() {
    let seed = Seed::from_hex(&"5a".repeat(32)).unwrap();
    let shares: Vec<String> = split_seed(&seed, 3, 5)
        .unwrap()
        .iter()
        .map(|s| s.to_text().to_string())
        .collect();
    let restored = restore_seed(&[
        SeedShare::from_text(&shares[4]).unwrap(),
        SeedShare::from_text(&shares[0]).unwrap(),
        SeedShare::from_text(&shares[2]).unwrap(),
    ])
    .unwrap();
    assert_eq!(
        master_fingerprint(&restored).unwrap(),
        master_fingerprint(&seed).unwrap()
    );

    // Signer side: hardened account key. Online side: its xpub only.
    let account =
        derive_xprv(&restored, &DerivationPath::parse("m/44'/9000'/0'").unwrap()).unwrap();
    let online =
        WatchOnlyAccount::from_xpub(&WatchOnlyAccount::from_xprv(&account).xpub()).unwrap();
    let a = online.deposit_key(1).unwrap();
    let b = online.deposit_key(2).unwrap();
    assert_ne!(a, b);
    assert!(a[0] == 2 || a[0] == 3);
}

#[test]
fn a_withdrawal_from_request_to_settlement_is_audited() {
    let hsm = Arc::new(SoftwareKeyStore::in_memory());
    hsm.generate_key("cold", KeyAlgorithm::Secp256k1).unwrap();
    hsm.generate_key("audit", KeyAlgorithm::Ed25519).unwrap();
    let hot = Arc::new(SoftwareKeyStore::in_memory());
    hot.generate_key("hot", KeyAlgorithm::Secp256k1).unwrap();
    let wallet = |id, tier, key_label: &str, float_max_minor| WalletConfig {
        id,
        tier,
        asset: "CITY".into(),
        key_label: key_label.into(),
        algorithm: KeyAlgorithm::Secp256k1,
        float_max_minor,
    };
    let config = CustodyConfig {
        wallets: vec![
            wallet(1, Tier::Cold, "cold", None),
            wallet(2, Tier::Warm, "cold", None),
            wallet(3, Tier::Hot, "hot", Some(10_000_000)),
        ],
        whitelist_delay_s: 3_600,
        policy: Policy::from_json(POLICY).unwrap(),
    };
    let signers = Signers {
        cold: hsm.clone(),
        warm: hsm.clone(),
        hot: hot.clone(),
        audit_key_label: "audit".into(),
    };
    let mut custody = Custody::new(config, signers).unwrap();
    let t = 1_700_000_000_000_000u64;
    custody.observe_balance(3, 500_000, t).unwrap().unwrap();
    let active = custody
        .add_address(77, "ledger:merchant-9", "CITY", "merchant", "root1", t)
        .unwrap()
        .unwrap();
    assert_eq!(active, t + 3_600_000_000);
    let request = WithdrawalRequest {
        id: 1,
        account: 9,
        initiator: "merchant-9".into(),
        role: "customer".into(),
        from_wallet: 3,
        to: Destination::External(77),
        asset: "CITY".into(),
        amount_minor: 50_000,
    };
    assert_eq!(
        custody.request(request, active).unwrap(),
        Ok(Status::ReadyToSign)
    );
    assert!(matches!(
        custody.sign(1, active + 1).unwrap(),
        Ok(Status::Signed(_))
    ));
    let signed = custody.submit(1, active + 2).unwrap().unwrap();
    assert_eq!(signed.key_label, "hot");
    custody.checkpoint(active + 3).unwrap();

    let mut key = [0u8; 32];
    key.copy_from_slice(&hsm.public_key("audit").unwrap().bytes);
    let report = verify(
        custody.audit().entries(),
        custody.audit().checkpoints(),
        &key,
    )
    .unwrap();
    assert_eq!(report.entries, report.anchored);
    assert!(report.entries >= 5);
}

#[test]
fn a_published_proof_of_reserves_verifies_for_each_client() {
    let assets: Vec<String> = ["CITY", "EUR", "LCL"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    let liabilities: Vec<Liability> = (0..50u64)
        .map(|i| Liability {
            account_id: 500 + i,
            salt: [i as u8; 32],
            balances: vec![i128::from(i) * 100, 7, 0],
        })
        .collect();
    let tree = SumTree::build(&assets, &liabilities).unwrap();
    let published = tree.published();
    assert_eq!(published.totals, vec![122_500, 350, 0]);
    for i in 0..50 {
        let verified = tree.proof(i).unwrap().verify().unwrap();
        check_published_root(&verified, &published.root).unwrap();
    }
}
