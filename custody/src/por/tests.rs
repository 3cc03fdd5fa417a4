//! Proof-of-reserves tests: round trips, refusals, and tamper detection of every proof field.

use super::bench::{asset_codes, synthetic_liabilities};
use super::*;
use proptest::prelude::*;

fn tree(accounts: usize) -> SumTree {
    SumTree::build(&asset_codes(4), &synthetic_liabilities(accounts, 4, 7)).unwrap()
}

#[test]
fn every_account_verifies_and_totals_add_up() {
    for n in [1usize, 2, 3, 5, 8, 33] {
        let liabilities = synthetic_liabilities(n, 4, 11);
        let t = SumTree::build(&asset_codes(4), &liabilities).unwrap();
        let want: Vec<u64> = (0..4)
            .map(|j| liabilities.iter().map(|l| l.balances[j] as u64).sum())
            .collect();
        assert_eq!(t.totals(), want.as_slice());
        for (i, liability) in liabilities.iter().enumerate() {
            let proof = t.proof(i).unwrap();
            let v = proof.verify().unwrap();
            assert_eq!(v.root, hex::encode(t.root()));
            assert_eq!(v.account_id, liability.account_id);
            let back = InclusionProof::from_bytes(&proof.to_bytes()).unwrap();
            assert_eq!(back, proof);
            let json = serde_json::to_vec(&proof).unwrap();
            assert_eq!(InclusionProof::parse_file(&json).unwrap(), proof);
            check_published_root(&v, &t.published().root).unwrap();
        }
        assert!(t.proof(n).is_none());
    }
}

#[test]
fn proof_for_a_million_accounts_fits_in_1_5_kb() {
    // 20 levels for 2^20 leaves: size depends only on depth and asset count.
    let t = tree(3);
    let mut proof = t.proof(0).unwrap();
    proof.siblings = vec![proof.siblings[0].clone(); 20];
    assert!(proof.to_bytes().len() <= 1536, "{}", proof.to_bytes().len());
}

#[test]
fn bad_liabilities_are_refused() {
    let codes = asset_codes(2);
    let ok = |id: u64, b: [i128; 2]| Liability {
        account_id: id,
        salt: [1; 32],
        balances: b.to_vec(),
    };
    assert!(matches!(
        SumTree::build(&codes, &[ok(1, [5, -1])]),
        Err(BuildError::NegativeBalance { account_id: 1, .. })
    ));
    assert!(matches!(
        SumTree::build(&codes, &[ok(1, [i128::from(u64::MAX) + 1, 0])]),
        Err(BuildError::Overflow { .. })
    ));
    assert!(matches!(
        SumTree::build(&codes, &[ok(1, [i128::from(u64::MAX), 0]), ok(2, [1, 0])]),
        Err(BuildError::Overflow { .. })
    ));
    assert_eq!(
        SumTree::build(&codes, &[ok(1, [1, 1]), ok(1, [2, 2])]).unwrap_err(),
        BuildError::DuplicateAccount(1)
    );
    assert!(matches!(
        SumTree::build(&codes, &[]),
        Err(BuildError::AccountCount(0))
    ));
    assert!(matches!(
        SumTree::build(
            &codes,
            &[Liability {
                account_id: 1,
                salt: [0; 32],
                balances: vec![1]
            }]
        ),
        Err(BuildError::BalanceCount { .. })
    ));
    assert!(matches!(
        SumTree::build(&["EUR".into(), "EUR".into()], &[ok(1, [1, 1])]),
        Err(BuildError::Assets(_))
    ));
}

/// The 2018/1139 attack: a prover shows two siblings whose sums add up to the parent's total
/// but are split differently. With both children's sums in the parent hash it fails.
#[test]
fn shifting_sums_between_siblings_fails() {
    let t = tree(4);
    let mut proof = t.proof(0).unwrap();
    // Claim a smaller own balance and move the difference onto the sibling: same total.
    proof.balances[0] -= 1;
    proof.siblings[0].sums[0] += 1;
    assert!(matches!(
        proof.verify(),
        Err(ProofError::RootMismatch { .. })
    ));
}

#[test]
fn malformed_files_get_clear_errors() {
    assert!(
        matches!(InclusionProof::parse_file(b"RPOR"), Err(ProofError::Malformed(m)) if m == "truncated")
    );
    assert!(
        matches!(InclusionProof::parse_file(b"{}"), Err(ProofError::Malformed(m)) if m.starts_with("JSON"))
    );
    let mut bytes = tree(3).proof(1).unwrap().to_bytes();
    bytes.push(0);
    assert!(
        matches!(InclusionProof::parse_file(&bytes), Err(ProofError::Malformed(m)) if m == "trailing bytes")
    );
    assert!(InclusionProof::parse_file(&vec![b' '; 70_000]).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Any single changed byte of a binary proof fails verification (or parsing).
    #[test]
    fn any_tampered_byte_fails(accounts in 1usize..40, pick in any::<prop::sample::Index>(), pos in any::<prop::sample::Index>(), flip in 1u8..=255) {
        let t = tree(accounts);
        let proof = t.proof(pick.index(accounts)).unwrap();
        let mut bytes = proof.to_bytes();
        let at = pos.index(bytes.len());
        bytes[at] ^= flip;
        let outcome = InclusionProof::parse_file(&bytes).and_then(|p| p.verify());
        prop_assert!(outcome.is_err(), "byte {} of {} flipped by {:#x} still verifies", at, bytes.len(), flip);
    }

    /// Any single changed field of a JSON proof fails verification.
    #[test]
    fn any_tampered_field_fails(accounts in 2usize..40, pick in any::<prop::sample::Index>(), field in 0usize..9, delta in 1u64..1000, which in any::<prop::sample::Index>()) {
        let t = tree(accounts);
        let mut p = t.proof(pick.index(accounts)).unwrap();
        let k = p.assets.len();
        match field {
            0 => p.assets[which.index(k)].push('X'),
            1 => p.account_id ^= delta,
            2 => p.salt[which.index(32)] ^= (delta % 255 + 1) as u8,
            3 => { let i = which.index(k); p.balances[i] = p.balances[i].wrapping_add(delta); }
            4 => p.leaf_index ^= 1 << which.index(p.siblings.len().max(1)),
            5 => { let s = which.index(p.siblings.len()); p.siblings[s].hash[0] ^= (delta % 255 + 1) as u8; }
            6 => { let s = which.index(p.siblings.len()); let j = which.index(k); p.siblings[s].sums[j] = p.siblings[s].sums[j].wrapping_add(delta); }
            7 => p.root[which.index(32)] ^= (delta % 255 + 1) as u8,
            _ => { let i = which.index(k); p.totals[i] = p.totals[i].wrapping_add(delta); }
        }
        let json = serde_json::to_vec(&p).unwrap();
        prop_assert!(InclusionProof::parse_file(&json).and_then(|p| p.verify()).is_err(), "field {} tampered still verifies", field);
    }
}
