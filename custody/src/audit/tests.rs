//! The audit log's verifier catches every edit, reorder, removal and truncation.

use super::*;
use hsm::software::SoftwareKeyStore;
use hsm::{KeyAlgorithm, KeyStore};

fn event(i: u64) -> AuditEvent {
    AuditEvent::Approved {
        id: u128::from(i),
        approver: format!("approver-{i}"),
        live: 1,
        required: 2,
    }
}

/// 30 entries, checkpoints after 10 and 20; entries 20..30 are unanchored.
fn log() -> (AuditLog, [u8; 32]) {
    let store = SoftwareKeyStore::in_memory();
    store.generate_key("audit", KeyAlgorithm::Ed25519).unwrap();
    let mut pk = [0u8; 32];
    pk.copy_from_slice(&store.public_key("audit").unwrap().bytes);
    let mut log = AuditLog::new();
    for i in 0..30 {
        log.append(1_000 + i, event(i)).unwrap();
        if i == 9 || i == 19 {
            log.checkpoint(&store, "audit", 1_000 + i).unwrap();
        }
    }
    (log, pk)
}

fn rehash_from(entries: &mut [AuditEntry], from: usize) {
    let mut prev = if from == 0 {
        [0; 32]
    } else {
        entries[from - 1].hash
    };
    for (i, e) in entries.iter_mut().enumerate().skip(from) {
        e.index = i as u64;
        e.hash = chain_hash(
            &prev,
            &canonical_bytes(e.index, e.time_us, &e.event).unwrap(),
        );
        prev = e.hash;
    }
}

#[test]
fn a_clean_log_verifies() {
    let (log, pk) = log();
    let report = verify(log.entries(), log.checkpoints(), &pk).unwrap();
    assert_eq!(
        report,
        VerifyReport {
            entries: 30,
            anchored: 20,
            unanchored: 10
        }
    );
}

#[test]
fn an_edited_entry_is_named() {
    let (log, pk) = log();
    let mut entries = log.entries().to_vec();
    entries[13].event = event(999);
    assert_eq!(
        verify(&entries, log.checkpoints(), &pk).unwrap_err(),
        AuditViolation::HashMismatch { index: 13 }
    );
    let mut entries = log.entries().to_vec();
    entries[25].time_us += 1;
    assert_eq!(
        verify(&entries, log.checkpoints(), &pk).unwrap_err(),
        AuditViolation::HashMismatch { index: 25 }
    );
}

#[test]
fn a_consistently_rewritten_chain_fails_at_its_checkpoint() {
    let (log, pk) = log();
    let mut entries = log.entries().to_vec();
    entries[13].event = event(999);
    rehash_from(&mut entries, 13);
    assert_eq!(
        verify(&entries, log.checkpoints(), &pk).unwrap_err(),
        AuditViolation::CheckpointMismatch {
            checkpoint: 1,
            first_bad_index: 10
        }
    );
}

#[test]
fn reordered_or_removed_entries_are_named() {
    let (log, pk) = log();
    let mut entries = log.entries().to_vec();
    entries.swap(4, 5);
    assert_eq!(
        verify(&entries, log.checkpoints(), &pk).unwrap_err(),
        AuditViolation::IndexGap {
            position: 4,
            found: 5
        }
    );
    let mut entries = log.entries().to_vec();
    entries.remove(7);
    assert_eq!(
        verify(&entries, log.checkpoints(), &pk).unwrap_err(),
        AuditViolation::IndexGap {
            position: 7,
            found: 8
        }
    );
    // Removing and renumbering and rehashing still runs into the signed checkpoint.
    rehash_from(&mut entries, 7);
    assert!(matches!(
        verify(&entries, log.checkpoints(), &pk).unwrap_err(),
        AuditViolation::CheckpointMismatch {
            checkpoint: 0,
            first_bad_index: 0
        }
    ));
}

#[test]
fn a_truncated_tail_is_detected() {
    let (log, pk) = log();
    // Cut back before the last checkpoint (which covers 20 entries).
    let entries = &log.entries()[..18];
    assert_eq!(
        verify(entries, log.checkpoints(), &pk).unwrap_err(),
        AuditViolation::Truncated {
            expected: 20,
            found: 18
        }
    );
    // Cutting only unanchored entries leaves a valid, shorter log: the report says how much
    // is anchored, and the next checkpoint will cover the rest.
    let report = verify(&log.entries()[..25], log.checkpoints(), &pk).unwrap();
    assert_eq!((report.anchored, report.unanchored), (20, 5));
}

#[test]
fn forged_or_reordered_checkpoints_are_detected() {
    let (log, pk) = log();
    let mut checkpoints = log.checkpoints().to_vec();
    checkpoints[1].entries = 25;
    assert_eq!(
        verify(log.entries(), &checkpoints, &pk).unwrap_err(),
        AuditViolation::BadSignature { checkpoint: 1 }
    );
    let mut checkpoints = log.checkpoints().to_vec();
    checkpoints.swap(0, 1);
    assert_eq!(
        verify(log.entries(), &checkpoints, &pk).unwrap_err(),
        AuditViolation::CheckpointOrder { checkpoint: 1 }
    );
    let other = SoftwareKeyStore::in_memory();
    other.generate_key("audit", KeyAlgorithm::Ed25519).unwrap();
    let mut wrong = [0u8; 32];
    wrong.copy_from_slice(&other.public_key("audit").unwrap().bytes);
    assert_eq!(
        verify(log.entries(), log.checkpoints(), &wrong).unwrap_err(),
        AuditViolation::BadSignature { checkpoint: 0 }
    );
}

#[test]
fn entries_serialise_and_still_verify() {
    let (log, pk) = log();
    let text = serde_json::to_string(log.entries()).unwrap();
    let back: Vec<AuditEntry> = serde_json::from_str(&text).unwrap();
    let cps: Vec<Checkpoint> =
        serde_json::from_str(&serde_json::to_string(log.checkpoints()).unwrap()).unwrap();
    assert!(verify(&back, &cps, &pk).is_ok());
}
