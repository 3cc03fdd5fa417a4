//! The journal on a real directory: group commit, reopening, segment rollover, preallocated
//! segments and their zero tails, torn tails cut at the last good record, corruption in the
//! middle refused with file and offset, and the threaded writer's tickets.

use std::fs;
use std::path::{Path, PathBuf};

use matching_engine::journal::{
    self, Journal, JournalError, JournalOptions, JournalWriter, RECORD_HEADER_LEN,
    SEGMENT_HEADER_LEN, SegmentRecords, WriterOptions,
};
use proptest::prelude::*;

fn small() -> JournalOptions {
    JournalOptions {
        segment_bytes_max: 4096,
        sync: true,
    }
}

fn payload(seq: u64) -> Vec<u8> {
    // Lengths vary so that records straddle segment boundaries differently.
    let len = (seq * 37 % 200) as usize;
    (0..len).map(|i| (seq as usize + i) as u8).collect()
}

type Records = Vec<(u64, Vec<u8>)>;

fn open_collect(dir: &Path, after: u64) -> Result<(Journal, Records), JournalError> {
    let mut got = Vec::new();
    let (j, _) = Journal::open(dir, small(), after, |seq, p| {
        got.push((seq, p.to_vec()));
        Ok(())
    })?;
    Ok((j, got))
}

fn write_n(dir: &Path, n: u64, batch: usize) {
    let (mut j, _) = open_collect(dir, 0).unwrap();
    let items: Vec<Vec<u8>> = (j.next_seq()..j.next_seq() + n).map(payload).collect();
    for chunk in items.chunks(batch) {
        j.append_batch(chunk).unwrap();
    }
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    journal::list_segments(dir)
        .unwrap()
        .into_iter()
        .map(|(_, p)| p)
        .collect()
}

/// Bytes of a segment's header and records, i.e. where its zero tail begins.
fn used_len(bytes: &[u8]) -> usize {
    let mut it = SegmentRecords::new(bytes, Path::new("seg"), true).unwrap();
    for r in it.by_ref() {
        r.unwrap();
    }
    it.valid_len() as usize
}

fn all_zero(bytes: &[u8]) -> bool {
    bytes.iter().all(|&b| b == 0)
}

#[test]
fn batches_survive_reopen_and_roll_over_segments() {
    let dir = tempfile::tempdir().unwrap();
    write_n(dir.path(), 300, 7);
    assert!(
        segments(dir.path()).len() > 3,
        "small segments must roll over"
    );
    let (mut j, got) = open_collect(dir.path(), 0).unwrap();
    assert_eq!(got.len(), 300);
    for (i, (seq, p)) in got.iter().enumerate() {
        assert_eq!(*seq, i as u64 + 1);
        assert_eq!(*p, payload(*seq));
    }
    assert_eq!(j.durable_seq(), 300);
    // Appending after reopen continues the sequence.
    assert_eq!(j.append_batch(&[payload(301)]).unwrap(), 301..=301);
    drop(j);
    let (_, got) = open_collect(dir.path(), 250).unwrap();
    assert_eq!(got.first().map(|r| r.0), Some(251));
    assert_eq!(got.last().map(|r| r.0), Some(301));
}

#[test]
fn a_torn_tail_is_cut_at_the_last_good_record() {
    // Two shapes of the same crash: the file ends inside the final record (a segment written
    // before preallocation, or by a crash while it grew), or the preallocated file keeps its
    // length and the final record's last bytes never left the zeros.
    for truncate in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        write_n(dir.path(), 20, 5);
        let last = segments(dir.path()).pop().unwrap();
        let mut bytes = fs::read(&last).unwrap();
        let used = used_len(&bytes);
        if truncate {
            bytes.truncate(used - 3);
        } else {
            bytes[used - 3..used].fill(0);
        }
        fs::write(&last, &bytes).unwrap();
        let end = journal::read_dir(dir.path(), 0, |_, _| Ok(())).unwrap();
        let (path, offset, _) = end.torn.clone().unwrap();
        assert_eq!(path, last);
        assert_eq!(end.last_seq, 19);
        // Read-only reading does not repair; opening does: the tail from the cut is zero and
        // the segment has its full preallocated length.
        assert_eq!(fs::read(&last).unwrap(), bytes);
        let (mut j, got) = open_collect(dir.path(), 0).unwrap();
        assert_eq!(got.len(), 19);
        let repaired = fs::read(&last).unwrap();
        assert_eq!(repaired.len() as u64, small().segment_bytes_max);
        assert_eq!(repaired[..offset as usize], bytes[..offset as usize]);
        assert!(all_zero(&repaired[offset as usize..]));
        // The next command gets the lost record's number, and everything reads back cleanly.
        assert_eq!(j.append_batch(&[b"again".to_vec()]).unwrap(), 20..=20);
        drop(j);
        let (_, got) = open_collect(dir.path(), 0).unwrap();
        assert_eq!(got.last().unwrap(), &(20, b"again".to_vec()));
        assert!(
            journal::read_dir(dir.path(), 0, |_, _| Ok(()))
                .unwrap()
                .torn
                .is_none()
        );
    }
}

#[test]
fn garbage_after_the_last_record_is_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    write_n(dir.path(), 10, 10);
    let last = segments(dir.path()).pop().unwrap();
    let mut bytes = fs::read(&last).unwrap();
    let good = used_len(&bytes);
    let len = bytes.len();
    for (i, b) in bytes[good..good + 100].iter_mut().enumerate() {
        *b = 0x5a ^ i as u8; // non-zero garbage where the next record would start
    }
    fs::write(&last, &bytes).unwrap();
    let (_, got) = open_collect(dir.path(), 0).unwrap();
    assert_eq!(got.len(), 10);
    // Cut by zeroing, not by shrinking.
    let repaired = fs::read(&last).unwrap();
    assert_eq!(repaired.len(), len);
    assert!(all_zero(&repaired[good..]));
}

#[test]
fn a_file_that_ends_with_its_last_record_is_preallocated_on_open() {
    // A segment as written before preallocation, plus one extended by zeros never written.
    for extra_zeros in [0usize, 100] {
        let dir = tempfile::tempdir().unwrap();
        write_n(dir.path(), 10, 10);
        let last = segments(dir.path()).pop().unwrap();
        let mut bytes = fs::read(&last).unwrap();
        let good = used_len(&bytes);
        bytes.truncate(good + extra_zeros);
        fs::write(&last, &bytes).unwrap();
        let end = journal::read_dir(dir.path(), 0, |_, _| Ok(())).unwrap();
        assert!(end.torn.is_none(), "a zero tail is not a tear");
        let (mut j, got) = open_collect(dir.path(), 0).unwrap();
        assert_eq!(got.len(), 10);
        assert_eq!(
            fs::metadata(&last).unwrap().len(),
            small().segment_bytes_max
        );
        assert_eq!(j.append_batch(&[payload(11)]).unwrap(), 11..=11);
        drop(j);
        let (_, got) = open_collect(dir.path(), 0).unwrap();
        assert_eq!(got.len(), 11);
        assert_eq!(got[10], (11, payload(11)));
    }
}

#[test]
fn segments_are_preallocated_and_reopen_appends_after_the_last_record() {
    let dir = tempfile::tempdir().unwrap();
    write_n(dir.path(), 10, 3);
    let seg = segments(dir.path()).pop().unwrap();
    let bytes = fs::read(&seg).unwrap();
    assert_eq!(bytes.len() as u64, small().segment_bytes_max);
    let used = used_len(&bytes);
    assert!(used < bytes.len() / 2, "10 short records leave a zero tail");
    assert!(all_zero(&bytes[used..]));
    let (mut j, got) = open_collect(dir.path(), 0).unwrap();
    assert_eq!(got.len(), 10);
    assert_eq!(
        j.append_batch(&[payload(11), payload(12)]).unwrap(),
        11..=12
    );
    drop(j);
    // The new records were written over the zeros right after record 10, not at the end.
    let after = fs::read(&seg).unwrap();
    assert_eq!(after.len(), bytes.len());
    assert_eq!(after[..used], bytes[..used]);
    let mut it = SegmentRecords::new(&after, &seg, true).unwrap();
    let records: Vec<_> = it.by_ref().map(|r| r.unwrap()).collect();
    assert_eq!(records.len(), 12);
    assert_eq!(records[10].offset, used as u64);
    assert_eq!(records[11].payload, &payload(12)[..]);
    assert!(all_zero(&after[it.valid_len() as usize..]));
    assert!(matches!(it.end(), Some(journal::SegmentEnd::Clean)));
}

#[test]
fn a_zero_tail_is_not_an_error_in_any_segment() {
    let dir = tempfile::tempdir().unwrap();
    write_n(dir.path(), 300, 7);
    let segs = segments(dir.path());
    assert!(segs.len() > 3);
    for seg in &segs {
        let bytes = fs::read(seg).unwrap();
        assert_eq!(bytes.len() as u64, small().segment_bytes_max);
        // Each closed segment was rolled when the next batch no longer fit: a zero tail.
        assert!(used_len(&bytes) < bytes.len(), "{}", seg.display());
    }
    let end = journal::read_dir(dir.path(), 0, |_, _| Ok(())).unwrap();
    assert!(end.torn.is_none());
    assert_eq!(end.last_seq, 300);
    // The spare the writer was filling is gone or ready, and never read as a segment.
    let names: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| !n.ends_with(".journal"))
        .collect();
    assert!(
        names.iter().all(|n| n == journal::SPARE_SEGMENT_NAME),
        "{names:?}"
    );
}

/// Writes the last segment's records, a zero gap of `gap` bytes, then `after`.
fn put_after_gap(dir: &Path, gap: usize, after: &[u8]) -> (PathBuf, usize) {
    let seg = segments(dir).pop().unwrap();
    let mut bytes = fs::read(&seg).unwrap();
    let used = used_len(&bytes);
    bytes[used + gap..used + gap + after.len()].copy_from_slice(after);
    fs::write(&seg, &bytes).unwrap();
    (seg, used)
}

#[test]
fn a_valid_record_after_a_zero_gap_is_corruption_at_the_gap() {
    let dir = tempfile::tempdir().unwrap();
    write_n(dir.path(), 10, 10);
    // Record 11 lies 48 bytes past the end of record 10: the zeros between are not a tail.
    let mut rec = Vec::new();
    journal::encode_record(&mut rec, 11, &payload(11)).unwrap();
    let (seg, used) = put_after_gap(dir.path(), 48, &rec);
    let before = fs::read(&seg).unwrap();
    match open_collect(dir.path(), 0) {
        Err(JournalError::Corrupt { path, offset, what }) => {
            assert_eq!(path, seg);
            assert_eq!(offset, used as u64);
            assert!(what.contains("zero record header"), "{what}");
        }
        other => panic!("expected corruption, got {other:?}"),
    }
    assert_eq!(fs::read(&seg).unwrap(), before, "nothing repaired");
}

#[test]
fn a_reader_beside_a_writer_reads_again_past_a_batch_seen_with_a_hole() {
    // What a read-only reader can see while a batch is being copied into the page cache:
    // records 1..=10, then zeros where record 11 is still to be copied, then record 12 already
    // there. Read once, that is corruption; the writer finishes the copy (here: the callback
    // writes record 11 when it is handed record 10), and the reader, reading again from where
    // it stopped, gets both records.
    let dir = tempfile::tempdir().unwrap();
    write_n(dir.path(), 10, 10);
    let mut r11 = Vec::new();
    journal::encode_record(&mut r11, 11, &payload(11)).unwrap();
    let mut r12 = Vec::new();
    journal::encode_record(&mut r12, 12, &payload(12)).unwrap();
    let (seg, used) = put_after_gap(dir.path(), r11.len(), &r12);
    let mut got = Vec::new();
    let end = journal::read_dir(dir.path(), 0, |seq, _| {
        got.push(seq);
        if seq == 10 {
            let mut bytes = fs::read(&seg).unwrap();
            bytes[used..used + r11.len()].copy_from_slice(&r11);
            fs::write(&seg, &bytes).unwrap();
        }
        Ok(())
    })
    .unwrap();
    assert_eq!(got, (1..=12).collect::<Vec<_>>());
    assert_eq!(end.last_seq, 12);
    assert!(end.torn.is_none());
    // Damage that stays is still reported by the read-only reader, after its re-reads.
    let dir = tempfile::tempdir().unwrap();
    write_n(dir.path(), 10, 10);
    let (seg, used) = put_after_gap(dir.path(), r11.len(), &r12);
    match journal::read_dir(dir.path(), 0, |_, _| Ok(())) {
        Err(JournalError::Corrupt { path, offset, .. }) => {
            assert_eq!(path, seg);
            assert_eq!(offset, used as u64);
        }
        other => panic!("expected corruption, got {other:?}"),
    }
}

#[test]
fn garbage_after_a_zero_gap_is_a_torn_tail_in_the_last_segment_only() {
    let garbage: Vec<u8> = (1..=40).collect();
    // Last segment: no valid record follows, so it is the remains of an unsynced batch.
    let dir = tempfile::tempdir().unwrap();
    write_n(dir.path(), 10, 10);
    let (seg, used) = put_after_gap(dir.path(), 200, &garbage);
    let end = journal::read_dir(dir.path(), 0, |_, _| Ok(())).unwrap();
    assert_eq!(end.torn.as_ref().map(|t| t.1), Some(used as u64));
    let (_, got) = open_collect(dir.path(), 0).unwrap();
    assert_eq!(got.len(), 10);
    assert!(all_zero(&fs::read(&seg).unwrap()[used..]));
    // A closed segment was synced whole before the next was created: the same is corruption.
    // Ten short records, then a batch too big for the rest of the segment, which rolls over
    // and leaves the first segment a long zero tail.
    let dir = tempfile::tempdir().unwrap();
    write_n(dir.path(), 10, 10);
    let (mut j, _) = open_collect(dir.path(), 0).unwrap();
    j.append_batch(&[vec![7u8; 3000]]).unwrap();
    drop(j);
    let first = segments(dir.path()).remove(0);
    assert_eq!(segments(dir.path()).len(), 2);
    let mut bytes = fs::read(&first).unwrap();
    let used = used_len(&bytes);
    bytes[used + 200..used + 200 + garbage.len()].copy_from_slice(&garbage);
    fs::write(&first, &bytes).unwrap();
    match open_collect(dir.path(), 0) {
        Err(JournalError::Corrupt { path, offset, .. }) => {
            assert_eq!(path, first);
            assert_eq!(offset, used as u64);
        }
        other => panic!("expected corruption, got {other:?}"),
    }
}

#[test]
fn a_crash_mid_batch_leaves_a_partial_record_before_zeros_which_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    write_n(dir.path(), 10, 10);
    // The batch 11..=13 was being written: the first record and part of the second reached
    // the disk, the rest of the preallocated file is still zero.
    let mut batch = Vec::new();
    for seq in 11..=13 {
        journal::encode_record(&mut batch, seq, &payload(seq)).unwrap();
    }
    let first_len = RECORD_HEADER_LEN + payload(11).len();
    let written = first_len + RECORD_HEADER_LEN + payload(12).len() / 2;
    let (seg, used) = put_after_gap(dir.path(), 0, &batch[..written]);
    let (mut j, got) = open_collect(dir.path(), 0).unwrap();
    // Record 11 is complete and valid: it is kept; record 12 is cut.
    assert_eq!(got.len(), 11);
    assert_eq!(got[10], (11, payload(11)));
    let bytes = fs::read(&seg).unwrap();
    assert!(all_zero(&bytes[used + first_len..]));
    assert_eq!(j.append_batch(&[b"next".to_vec()]).unwrap(), 12..=12);
    drop(j);
    let (_, got) = open_collect(dir.path(), 0).unwrap();
    assert_eq!(got.last().unwrap(), &(12, b"next".to_vec()));
}

#[test]
fn corruption_in_the_middle_names_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    write_n(dir.path(), 10, 10);
    let seg = segments(dir.path()).pop().unwrap();
    let mut bytes = fs::read(&seg).unwrap();
    // Damage the payload of record 3: records 4..10 follow intact.
    let mut off = SEGMENT_HEADER_LEN;
    for seq in 1..3 {
        off += RECORD_HEADER_LEN + payload(seq).len();
    }
    bytes[off + RECORD_HEADER_LEN] ^= 0x01;
    fs::write(&seg, &bytes).unwrap();
    let before = bytes.len();
    match open_collect(dir.path(), 0) {
        Err(JournalError::Corrupt { path, offset, what }) => {
            assert_eq!(path, seg);
            assert_eq!(offset, off as u64);
            assert!(what.contains("checksum"), "{what}");
        }
        other => panic!("expected corruption, got {other:?}"),
    }
    // Nothing was truncated.
    assert_eq!(fs::read(&seg).unwrap().len(), before);
}

#[test]
fn a_torn_closed_segment_is_corruption() {
    // The file cut inside its last record, or that record's end zeroed in place.
    for truncate in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        write_n(dir.path(), 200, 3);
        let segs = segments(dir.path());
        assert!(segs.len() >= 2);
        let first = &segs[0];
        let mut bytes = fs::read(first).unwrap();
        let used = used_len(&bytes);
        if truncate {
            bytes.truncate(used - 1);
        } else {
            bytes[used - 1] ^= 0xff;
        }
        fs::write(first, &bytes).unwrap();
        assert!(matches!(
            open_collect(dir.path(), 0),
            Err(JournalError::Corrupt { .. })
        ));
    }
}

#[test]
fn a_missing_segment_is_a_gap() {
    let dir = tempfile::tempdir().unwrap();
    write_n(dir.path(), 200, 3);
    let segs = segments(dir.path());
    assert!(segs.len() >= 3);
    fs::remove_file(&segs[1]).unwrap();
    let err = open_collect(dir.path(), 0).unwrap_err();
    assert!(err.to_string().contains("gap"), "{err}");
}

#[test]
fn a_half_created_last_segment_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    write_n(dir.path(), 5, 5);
    let partial = dir.path().join(format!("{:020}.journal", 6));
    fs::write(&partial, b"RMPJ").unwrap();
    let (mut j, got) = open_collect(dir.path(), 0).unwrap();
    assert_eq!(got.len(), 5);
    assert!(!partial.exists());
    assert_eq!(j.append_batch(&[b"x".to_vec()]).unwrap(), 6..=6);
}

#[test]
fn pruning_keeps_what_a_snapshot_does_not_cover() {
    let dir = tempfile::tempdir().unwrap();
    write_n(dir.path(), 300, 4);
    let (mut j, _) = open_collect(dir.path(), 0).unwrap();
    let before = segments(dir.path()).len();
    let removed = j.prune_through(150).unwrap();
    assert!(removed > 0 && removed < before);
    drop(j);
    // Every record after the snapshot point is still there.
    let (_, got) = open_collect(dir.path(), 150).unwrap();
    assert_eq!(got.first().unwrap().0, 151);
    assert_eq!(got.len(), 150);
}

#[test]
fn the_writer_completes_tickets_in_batches() {
    let dir = tempfile::tempdir().unwrap();
    let (j, _) = open_collect(dir.path(), 0).unwrap();
    let mut w = JournalWriter::<Vec<u8>>::spawn(
        j,
        WriterOptions {
            queue_depth: 64,
            batch_records_max: 16,
        },
    )
    .unwrap();
    let tickets: Vec<_> = (1..=500).map(|s| w.submit(payload(s)).unwrap()).collect();
    for (i, t) in tickets.iter().enumerate() {
        assert_eq!(t.seq(), i as u64 + 1);
    }
    tickets.last().unwrap().wait().unwrap();
    assert!(tickets.iter().all(|t| t.is_durable()));
    assert_eq!(w.durable_seq(), 500);
    let j = w.close().unwrap();
    assert_eq!(j.durable_seq(), 500);
    drop(j);
    let (_, got) = open_collect(dir.path(), 0).unwrap();
    assert_eq!(got.len(), 500);
    assert!(got.iter().all(|(s, p)| *p == payload(*s)));
}

#[test]
fn a_failed_writer_fails_every_waiting_ticket() {
    let dir = tempfile::tempdir().unwrap();
    let (j, _) = open_collect(dir.path(), 0).unwrap();
    let mut w = JournalWriter::<Vec<u8>>::spawn(j, WriterOptions::default()).unwrap();
    let ok = w.submit(b"fine".to_vec()).unwrap();
    ok.wait().unwrap();
    let too_big = w
        .submit(vec![0u8; journal::RECORD_PAYLOAD_MAX + 1])
        .unwrap();
    assert!(matches!(too_big.wait(), Err(JournalError::Poisoned(_))));
    assert!(w.submit(b"after".to_vec()).is_err() || w.wait_durable(3).is_err());
    assert!(w.close().is_err());
}

#[test]
fn invalid_options_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let tiny = JournalOptions {
        segment_bytes_max: 10,
        sync: true,
    };
    assert!(matches!(
        Journal::open(dir.path(), tiny, 0, |_, _| Ok(())),
        Err(JournalError::InvalidOptions(_))
    ));
    let (j, _) = open_collect(dir.path(), 0).unwrap();
    let bad = WriterOptions {
        queue_depth: 0,
        batch_records_max: 1,
    };
    assert!(JournalWriter::<Vec<u8>>::spawn(j, bad).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Whatever happens to the tail of the last segment (cut anywhere, bytes flipped after the
    /// cut point, garbage appended, then optionally zeros up to the preallocated length, with
    /// or without a zero gap before the garbage), opening recovers exactly a prefix of what was
    /// written and never panics; and damage before the last record is never silently accepted.
    #[test]
    fn any_damage_recovers_a_prefix_or_reports_corruption(
        n in 1u64..60,
        cut_from_end in 0usize..400,
        flip in proptest::option::of((any::<usize>(), 1u8..=255)),
        gap in 0usize..48,
        garbage in proptest::collection::vec(any::<u8>(), 0..64),
        keep_preallocated in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        write_n(dir.path(), n, 5);
        let seg = segments(dir.path()).pop().unwrap();
        let mut bytes = fs::read(&seg).unwrap();
        let file_len = bytes.len();
        bytes.truncate(used_len(&bytes));
        let cut = bytes.len().saturating_sub(cut_from_end).max(SEGMENT_HEADER_LEN);
        bytes.truncate(cut);
        if let Some((at, x)) = flip {
            let at = at % bytes.len();
            bytes[at] ^= x;
        }
        bytes.resize(bytes.len() + gap, 0);
        bytes.extend_from_slice(&garbage);
        if keep_preallocated && bytes.len() < file_len {
            bytes.resize(file_len, 0);
        }
        fs::write(&seg, &bytes).unwrap();
        match open_collect(dir.path(), 0) {
            Ok((j, got)) => {
                for (i, (seq, p)) in got.iter().enumerate() {
                    prop_assert_eq!(*seq, i as u64 + 1);
                    prop_assert_eq!(p, &payload(*seq));
                }
                prop_assert_eq!(j.durable_seq(), got.len() as u64);
                drop(j);
                // After repair the journal reads cleanly.
                let end = journal::read_dir(dir.path(), 0, |_, _| Ok(())).unwrap();
                prop_assert!(end.torn.is_none());
                prop_assert_eq!(end.last_seq, got.len() as u64);
            }
            Err(JournalError::Corrupt { path, .. }) => prop_assert_eq!(path, seg),
            Err(e) => prop_assert!(false, "unexpected error {}", e),
        }
    }

    /// The segment reader on arbitrary bytes: never panics, and what it yields is in sequence.
    #[test]
    fn segment_reader_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512), last in any::<bool>()) {
        let mut with_header = journal::encode_segment_header(1).to_vec();
        with_header.extend_from_slice(&bytes);
        for input in [&bytes[..], &with_header[..]] {
            if let Ok(it) = journal::SegmentRecords::new(input, Path::new("fuzz"), last) {
                let mut expect = None;
                for r in it {
                    match r {
                        Ok(r) => {
                            if let Some(e) = expect { prop_assert_eq!(r.seq, e); }
                            expect = Some(r.seq + 1);
                        }
                        Err(e) => {
                            let corrupt = matches!(e, JournalError::Corrupt { .. });
                            prop_assert!(corrupt);
                            break;
                        }
                    }
                }
            }
        }
    }
}
