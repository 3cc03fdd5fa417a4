//! The command journal: an append-only, checksummed log of every sequenced command, split into
//! segment files, written with group commit so that many commands share one `fdatasync`.
//!
//! A command is acknowledged to its client only after the batch holding it is durable. After a
//! crash, [`Journal::open`] replays the records, cuts a torn tail (the last batch, written but
//! never synced) and refuses to guess when a damaged record sits in the middle of the log.
//!
//! Segment files are preallocated: each is created at its full size, filled with real zero
//! bytes and synced before its first record, so that a batch overwrites allocated, initialised
//! blocks and its `fdatasync` flushes data only, with no file-size or extent change to commit
//! (on ext4 that roughly halves the sync). The records of a segment are therefore followed by a
//! zero tail, which readers take as the end of the log. The next segment is zero-filled by a
//! helper thread once the current one is half full, so that a roll does not stall a batch.
//!
//! # Layout
//! - framing: [`encode_record`], [`SegmentRecords`] (pure functions over bytes, fuzzed);
//! - [`Journal`]: the synchronous writer (stage records, then one write + one sync per batch);
//! - [`JournalWriter`]: a thread running a [`Journal`] behind a bounded queue, handing out
//!   [`Ticket`]s that complete when their batch is durable;
//! - [`read_dir`]: read-only replay for tools and tests.
//!
//! The byte layout and the assumptions about the disk are in `docs/journal-format.md`.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

/// First bytes of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"RMPJRNL\0";
/// Version of the segment and record layout; a reader refuses any other.
pub const JOURNAL_VERSION: u32 = 1;
/// Bytes of the segment header: magic, version, flags, first sequence number, CRC.
pub const SEGMENT_HEADER_LEN: usize = 32;
/// Bytes of a record header: CRC, payload length, sequence number.
pub const RECORD_HEADER_LEN: usize = 16;
/// Largest payload of one record. Commands encode to well under 100 bytes; the margin leaves
/// room for future commands without letting a corrupt length field make us allocate much.
pub const RECORD_PAYLOAD_MAX: usize = 64 * 1024;
/// Default size at which a segment is closed and a new one begun.
pub const SEGMENT_BYTES_DEFAULT: u64 = 64 * 1024 * 1024;
/// Smallest segment size accepted in [`JournalOptions`] (tests use small segments).
pub const SEGMENT_BYTES_MIN: u64 = 4 * 1024;
/// Largest segment size accepted; a reader refuses larger files, since it reads one whole.
pub const SEGMENT_BYTES_MAX: u64 = 1024 * 1024 * 1024;
/// Most records in one group-commit batch.
pub const BATCH_RECORDS_MAX: usize = 16 * 1024;
/// Most payload bytes staged in one batch before it is committed.
pub const BATCH_BYTES_MAX: usize = 4 * 1024 * 1024;
/// Default depth of the [`JournalWriter`] queue (commands submitted but not yet written).
pub const QUEUE_DEPTH_DEFAULT: usize = 64 * 1024;
/// Largest queue depth accepted for a [`JournalWriter`].
pub const QUEUE_DEPTH_MAX: usize = 1024 * 1024;
/// Most segment files in one journal directory that a reader accepts.
pub const SEGMENTS_MAX: usize = 100_000;

/// Times a read-only reader reads a last segment that looks corrupt again before reporting it
/// (a writer may be copying a batch into it; see `scan_dir`).
pub const LIVE_REREADS_MAX: usize = 3;
/// Bytes of zeros written per call when a segment file is zero-filled (one reused buffer).
pub const ZERO_FILL_CHUNK_BYTES: usize = 1024 * 1024;

const SEGMENT_SUFFIX: &str = ".journal";
/// The next segment while it is being zero-filled, before it gets its header and its name.
/// Readers ignore it (it is not named like a segment); [`Journal::open`] deletes a leftover one.
pub const SPARE_SEGMENT_NAME: &str = "next-segment.zeroed";

/// A failure of the journal: the disk, or bytes on it that are not what this code wrote.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JournalError {
    /// An operating-system call failed.
    #[error("journal I/O on {path}: {source}")]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// The error from the operating system.
        source: io::Error,
    },
    /// A record or header is damaged somewhere other than the torn tail of the last segment.
    #[error("journal corrupt in {path} at byte {offset}: {what}")]
    Corrupt {
        /// The segment file.
        path: PathBuf,
        /// Byte offset of the damaged record or header in that file.
        offset: u64,
        /// What is wrong.
        what: String,
    },
    /// A payload larger than [`RECORD_PAYLOAD_MAX`] was staged.
    #[error("journal record of {len} bytes exceeds the maximum of {RECORD_PAYLOAD_MAX}")]
    RecordTooLarge {
        /// The payload length.
        len: usize,
    },
    /// Invalid options were given.
    #[error("invalid journal options: {0}")]
    InvalidOptions(String),
    /// A previous write or sync failed; the state of the file is unknown, so the journal accepts
    /// nothing more until it is reopened (and recovered) from disk.
    #[error("journal failed earlier and accepts nothing more: {0}")]
    Poisoned(String),
    /// The replay callback refused a record.
    #[error("replay of journal record {seq} failed: {what}")]
    Replay {
        /// Sequence number of the record.
        seq: u64,
        /// What went wrong.
        what: String,
    },
    /// The writer thread is gone (closed or panicked).
    #[error("journal writer is closed")]
    Closed,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> JournalError + '_ {
    move |source| JournalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

// ---------------------------------------------------------------------------------------------
// Framing
// ---------------------------------------------------------------------------------------------

/// Something that can be written as the payload of one journal record.
pub trait RecordEncode {
    /// Appends the encoded payload to `out`.
    fn encode_into(&self, out: &mut Vec<u8>);
}

impl RecordEncode for [u8] {
    fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self);
    }
}

impl RecordEncode for Vec<u8> {
    fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self);
    }
}

impl<T: RecordEncode + ?Sized> RecordEncode for &T {
    fn encode_into(&self, out: &mut Vec<u8>) {
        (**self).encode_into(out);
    }
}

/// The CRC of a record: over everything after the CRC field (length, seq, payload), which
/// is one contiguous slice, so one pass of the hardware CRC instruction.
fn record_crc(after_crc: &[u8]) -> u32 {
    crc32c::crc32c(after_crc)
}

/// Appends one framed record (header + payload) to `out`.
pub fn encode_record(out: &mut Vec<u8>, seq: u64, payload: &[u8]) -> Result<(), JournalError> {
    frame_with(out, seq, |buf| buf.extend_from_slice(payload))
}

/// Frames a record whose payload `fill` writes in place, so that no intermediate buffer is
/// needed; on error `out` is left as it was.
fn frame_with(
    out: &mut Vec<u8>,
    seq: u64,
    fill: impl FnOnce(&mut Vec<u8>),
) -> Result<(), JournalError> {
    let start = out.len();
    out.extend_from_slice(&[0u8; RECORD_HEADER_LEN]);
    fill(out);
    let len = out.len() - start - RECORD_HEADER_LEN;
    if len > RECORD_PAYLOAD_MAX {
        out.truncate(start);
        return Err(JournalError::RecordTooLarge { len });
    }
    out[start + 4..start + 8].copy_from_slice(&(len as u32).to_le_bytes());
    out[start + 8..start + 16].copy_from_slice(&seq.to_le_bytes());
    let crc = record_crc(&out[start + 4..]);
    out[start..start + 4].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// The 32-byte header opening a segment whose first record has sequence number `first_seq`.
pub fn encode_segment_header(first_seq: u64) -> [u8; SEGMENT_HEADER_LEN] {
    let mut h = [0u8; SEGMENT_HEADER_LEN];
    h[0..8].copy_from_slice(&SEGMENT_MAGIC);
    h[8..12].copy_from_slice(&JOURNAL_VERSION.to_le_bytes());
    // 12..16: flags, none defined.
    h[16..24].copy_from_slice(&first_seq.to_le_bytes());
    // 24..28: reserved.
    let crc = crc32c::crc32c(&h[0..28]);
    h[28..32].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Why a segment header could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderFault {
    /// The file is shorter than a header: it was being created when the process stopped.
    Short,
    /// The header is damaged or of another version.
    Bad(&'static str),
}

/// Reads a segment header and returns the sequence number of the segment's first record.
pub fn parse_segment_header(bytes: &[u8]) -> Result<u64, HeaderFault> {
    if bytes.len() < SEGMENT_HEADER_LEN {
        return Err(HeaderFault::Short);
    }
    let h = &bytes[..SEGMENT_HEADER_LEN];
    if h[0..8] != SEGMENT_MAGIC {
        return Err(HeaderFault::Bad("bad magic"));
    }
    let crc = u32::from_le_bytes(h[28..32].try_into().expect("4 bytes"));
    if crc32c::crc32c(&h[0..28]) != crc {
        return Err(HeaderFault::Bad("header checksum mismatch"));
    }
    let version = u32::from_le_bytes(h[8..12].try_into().expect("4 bytes"));
    if version != JOURNAL_VERSION {
        return Err(HeaderFault::Bad("unsupported journal version"));
    }
    let first_seq = u64::from_le_bytes(h[16..24].try_into().expect("8 bytes"));
    if first_seq == 0 {
        return Err(HeaderFault::Bad("first sequence number is zero"));
    }
    Ok(first_seq)
}

/// One record read from a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// Sequence number (1 for the first command ever journaled).
    pub seq: u64,
    /// Byte offset of the record header in its file.
    pub offset: u64,
    /// The payload bytes.
    pub payload: &'a [u8],
}

/// How the records of a segment ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SegmentEnd {
    /// Every byte after the header belongs to a valid record, up to [`SegmentRecords::valid_len`],
    /// and every byte from there to the end of the file is zero: the preallocated space not yet
    /// written (or nothing, in a file that ends with its last record).
    Clean,
    /// The bytes from `offset` on are an incomplete or damaged final record with no valid
    /// record after it: the tail of a batch that was never made durable.
    Torn {
        /// Offset of the first byte that is not part of a valid record.
        offset: u64,
        /// What was found there.
        what: &'static str,
    },
}

enum Parsed<'a> {
    Ok(Record<'a>, usize),
    Bad(&'static str),
}

/// Parses the record at `pos`, expecting sequence number `expect_seq`.
fn parse_record(bytes: &[u8], pos: usize, expect_seq: u64) -> Parsed<'_> {
    let rest = &bytes[pos..];
    if rest.len() < RECORD_HEADER_LEN {
        return Parsed::Bad("short record header");
    }
    let crc = u32::from_le_bytes(rest[0..4].try_into().expect("4 bytes"));
    let len = u32::from_le_bytes(rest[4..8].try_into().expect("4 bytes"));
    let seq = u64::from_le_bytes(rest[8..16].try_into().expect("8 bytes"));
    if len as usize > RECORD_PAYLOAD_MAX {
        return Parsed::Bad("record length exceeds the maximum");
    }
    let end = RECORD_HEADER_LEN + len as usize;
    if rest.len() < end {
        return Parsed::Bad("short record payload");
    }
    let payload = &rest[RECORD_HEADER_LEN..end];
    if record_crc(&rest[4..end]) != crc {
        return Parsed::Bad("record checksum mismatch");
    }
    if seq != expect_seq {
        return Parsed::Bad("record out of sequence");
    }
    Parsed::Ok(
        Record {
            seq,
            offset: pos as u64,
            payload,
        },
        pos + end,
    )
}

/// Whether any checksum-valid record, with a sequence number after `last_seq`, starts anywhere
/// in `bytes` at or after `from`. Such a record proves that the damage before it is not a torn
/// tail. The sequence-number window keeps the search linear on garbage.
fn valid_record_after(bytes: &[u8], from: usize, last_seq: u64) -> Option<usize> {
    let seq_window = (bytes.len() / RECORD_HEADER_LEN) as u64 + 1;
    let mut pos = from;
    while pos + RECORD_HEADER_LEN <= bytes.len() {
        let rest = &bytes[pos..];
        let len = u32::from_le_bytes(rest[4..8].try_into().expect("4 bytes")) as usize;
        let seq = u64::from_le_bytes(rest[8..16].try_into().expect("8 bytes"));
        if len <= RECORD_PAYLOAD_MAX
            && RECORD_HEADER_LEN + len <= rest.len()
            && seq > last_seq
            && seq - last_seq <= seq_window
        {
            let crc = u32::from_le_bytes(rest[0..4].try_into().expect("4 bytes"));
            if record_crc(&rest[4..RECORD_HEADER_LEN + len]) == crc {
                return Some(pos);
            }
        }
        pos += 1;
    }
    None
}

/// Whether every byte is zero. It runs over the unwritten tail of every segment read (most of
/// a fresh 64 MiB segment), so it or-folds fixed blocks, which the compiler vectorises, and
/// stops at the first block holding a non-zero byte.
fn all_zero(bytes: &[u8]) -> bool {
    bytes
        .chunks(256)
        .all(|block| block.iter().fold(0u8, |acc, &b| acc | b) == 0)
}

/// Iterator over the records of one segment held in memory.
///
/// Yields each valid record in order. Where the next record header would start, 16 zero bytes
/// (or fewer, all zero, at the end of the file) begin the zero tail of a preallocated segment:
/// if everything from there on is zero, the segment ends cleanly there. Otherwise, and when it
/// meets bytes that are not a valid record, it looks further: if a valid record follows, it
/// yields one [`JournalError::Corrupt`] naming the offset; otherwise the rest is a torn tail,
/// reported by [`SegmentRecords::end`]. A torn tail is an error too unless `torn_tail_allowed`
/// (only the last segment may have one). No valid record has an all-zero header (its sequence
/// number would be 0), so a zero header is never taken for a record.
#[derive(Debug)]
pub struct SegmentRecords<'a> {
    bytes: &'a [u8],
    path: &'a Path,
    pos: usize,
    next_seq: u64,
    torn_tail_allowed: bool,
    end: Option<SegmentEnd>,
    failed: bool,
}

impl<'a> SegmentRecords<'a> {
    /// Starts reading a segment's bytes (header included). `path` only names the file in
    /// errors.
    pub fn new(
        bytes: &'a [u8],
        path: &'a Path,
        torn_tail_allowed: bool,
    ) -> Result<Self, JournalError> {
        let first_seq = parse_segment_header(bytes).map_err(|fault| JournalError::Corrupt {
            path: path.to_path_buf(),
            offset: 0,
            what: match fault {
                HeaderFault::Short => "short segment header".to_string(),
                HeaderFault::Bad(what) => what.to_string(),
            },
        })?;
        Ok(Self {
            bytes,
            path,
            pos: SEGMENT_HEADER_LEN,
            next_seq: first_seq,
            torn_tail_allowed,
            end: None,
            failed: false,
        })
    }

    /// Continues a reading of the same segment, read again, from the position and sequence
    /// number an earlier pass had reached.
    fn resumed_at(mut self, pos: usize, next_seq: u64) -> Self {
        self.pos = pos.min(self.bytes.len());
        self.next_seq = next_seq;
        self
    }

    /// Sequence number the next record must carry.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Byte length of the valid prefix read so far (header and valid records).
    pub fn valid_len(&self) -> u64 {
        self.pos as u64
    }

    /// How the segment ended, once the iterator has returned `None`.
    pub fn end(&self) -> Option<&SegmentEnd> {
        self.end.as_ref()
    }

    fn corrupt(&mut self, offset: usize, what: String) -> Option<Result<Record<'a>, JournalError>> {
        self.failed = true;
        Some(Err(JournalError::Corrupt {
            path: self.path.to_path_buf(),
            offset: offset as u64,
            what,
        }))
    }
}

impl<'a> Iterator for SegmentRecords<'a> {
    type Item = Result<Record<'a>, JournalError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.end.is_some() {
            return None;
        }
        if self.pos == self.bytes.len() {
            self.end = Some(SegmentEnd::Clean);
            return None;
        }
        let rest = &self.bytes[self.pos..];
        let parsed = if all_zero(&rest[..rest.len().min(RECORD_HEADER_LEN)]) {
            if all_zero(rest) {
                // The unwritten, preallocated tail: the end of the segment's records.
                self.end = Some(SegmentEnd::Clean);
                return None;
            }
            // Something was written after a zero gap: a torn batch or damage, sorted out
            // below exactly like a damaged record.
            Parsed::Bad("zero record header followed by non-zero bytes")
        } else {
            parse_record(self.bytes, self.pos, self.next_seq)
        };
        match parsed {
            Parsed::Ok(record, next) => {
                self.pos = next;
                self.next_seq += 1;
                Some(Ok(record))
            }
            Parsed::Bad(what) => {
                let last_seq = self.next_seq - 1;
                if let Some(at) = valid_record_after(self.bytes, self.pos + 1, last_seq) {
                    let pos = self.pos;
                    return self.corrupt(
                        pos,
                        format!("{what}, yet a valid record follows at byte {at}"),
                    );
                }
                if what == "record out of sequence" {
                    // A complete record with a valid checksum but the wrong number is never a
                    // torn write.
                    let pos = self.pos;
                    return self.corrupt(pos, format!("{what}: expected {}", self.next_seq));
                }
                if !self.torn_tail_allowed {
                    let pos = self.pos;
                    return self.corrupt(pos, format!("{what} at the end of a closed segment"));
                }
                self.end = Some(SegmentEnd::Torn {
                    offset: self.pos as u64,
                    what,
                });
                None
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Directory of segments
// ---------------------------------------------------------------------------------------------

fn segment_name(first_seq: u64) -> String {
    format!("{first_seq:020}{SEGMENT_SUFFIX}")
}

/// Segment files in `dir`, sorted by the first sequence number in their names.
pub fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, JournalError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(stem) = name.strip_suffix(SEGMENT_SUFFIX) else {
            continue;
        };
        if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(first_seq) = stem.parse::<u64>() else {
            continue;
        };
        out.push((first_seq, entry.path()));
        if out.len() > SEGMENTS_MAX {
            return Err(JournalError::Corrupt {
                path: dir.to_path_buf(),
                offset: 0,
                what: format!("more than {SEGMENTS_MAX} segment files"),
            });
        }
    }
    out.sort_unstable_by_key(|(seq, _)| *seq);
    Ok(out)
}

fn sync_dir(dir: &Path) -> Result<(), JournalError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// Reads a whole segment into `buf` (cleared first). One buffer serves every segment of a
/// replay, so that its pages are faulted in once rather than once per segment.
fn read_segment(path: &Path, buf: &mut Vec<u8>) -> Result<(), JournalError> {
    use std::io::Read;
    let mut f = File::open(path).map_err(io_err(path))?;
    let len = f.metadata().map_err(io_err(path))?.len();
    if len > SEGMENT_BYTES_MAX + BATCH_BYTES_MAX as u64 + RECORD_PAYLOAD_MAX as u64 {
        return Err(JournalError::Corrupt {
            path: path.to_path_buf(),
            offset: 0,
            what: format!("segment of {len} bytes is larger than any this journal writes"),
        });
    }
    buf.clear();
    // `len` is bounded above, so it fits in usize.
    buf.reserve(len as usize);
    f.read_to_end(buf).map_err(io_err(path))?;
    Ok(())
}

/// What reading a journal directory found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayEnd {
    /// Sequence number of the last valid record (0 if there is none).
    pub last_seq: u64,
    /// Records passed to the callback.
    pub replayed: u64,
    /// The torn tail of the last segment, if any: file and offset of the first invalid byte.
    pub torn: Option<(PathBuf, u64, &'static str)>,
    /// Segment files read or skipped.
    pub segments: usize,
}

/// Whether a replay may repair the directory (truncate a torn tail, drop a half-created last
/// segment) or only read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    ReadOnly,
    Repair,
}

/// The callback a replay hands each record to.
type OnRecord<'a> = dyn FnMut(u64, &[u8]) -> Result<(), JournalError> + 'a;

struct Scan {
    end: ReplayEnd,
    /// The last segment after repair: first seq, path, valid length.
    last: Option<(u64, PathBuf, u64)>,
}

fn scan_dir(
    dir: &Path,
    mode: Mode,
    after_seq: u64,
    on_record: &mut OnRecord<'_>,
) -> Result<Scan, JournalError> {
    let segments = list_segments(dir)?;
    let mut end = ReplayEnd {
        last_seq: 0,
        replayed: 0,
        torn: None,
        segments: segments.len(),
    };
    let mut last = None;
    if let Some((first, path)) = segments.first()
        && *first > after_seq.saturating_add(1)
    {
        return Err(JournalError::Corrupt {
            path: path.clone(),
            offset: 0,
            what: format!(
                "journal starts at {first}, but records from {} are needed",
                after_seq + 1
            ),
        });
    }
    let mut expect_first: Option<u64> = None;
    let mut buf = Vec::new();
    for (i, (name_seq, path)) in segments.iter().enumerate() {
        let is_last = i + 1 == segments.len();
        if let Some(expect) = expect_first
            && *name_seq != expect
        {
            return Err(JournalError::Corrupt {
                path: path.clone(),
                offset: 0,
                what: format!("segment starts at {name_seq}, expected {expect}: a gap or overlap"),
            });
        }
        // A closed segment whose records all precede `after_seq` need not be read: the next
        // segment's name says where it ends. Its header is still checked.
        let skip = !is_last && segments[i + 1].0 <= after_seq.saturating_add(1);
        if skip {
            let mut head = [0u8; SEGMENT_HEADER_LEN];
            let n = read_prefix(path, &mut head)?;
            buf.clear();
            buf.extend_from_slice(&head[..n]);
        } else {
            read_segment(path, &mut buf)?;
        }
        let bytes = &buf[..];
        match parse_segment_header(bytes) {
            Ok(first) if first == *name_seq => {}
            Ok(first) => {
                return Err(JournalError::Corrupt {
                    path: path.clone(),
                    offset: 0,
                    what: format!("header says first record {first}, file name says {name_seq}"),
                });
            }
            Err(HeaderFault::Short) if is_last && bytes.len() < SEGMENT_HEADER_LEN => {
                // The process stopped while creating this segment: it holds no record, since
                // the header is synced before any record is written.
                if mode == Mode::Repair {
                    fs::remove_file(path).map_err(io_err(path))?;
                    sync_dir(dir)?;
                }
                end.torn = Some((path.clone(), 0, "short segment header"));
                end.segments -= 1;
                break;
            }
            Err(HeaderFault::Short) => {
                return Err(JournalError::Corrupt {
                    path: path.clone(),
                    offset: 0,
                    what: "short segment header".to_string(),
                });
            }
            Err(HeaderFault::Bad(what)) => {
                return Err(JournalError::Corrupt {
                    path: path.clone(),
                    offset: 0,
                    what: what.to_string(),
                });
            }
        }
        if skip {
            expect_first = Some(segments[i + 1].0);
            end.last_seq = segments[i + 1].0 - 1;
            continue;
        }
        // A read-only reader may run beside a live writer (the node's settlement catch-up does),
        // and can see the batch being copied into the page cache with holes: zeros before bytes
        // already copied, i.e. a zero gap or a damaged record followed by a valid one. An
        // appended file never showed that (its size grows behind the copy); a preallocated one
        // can. So a read-only reader whose last segment looks corrupt reads it again and goes
        // on from where it stopped, a bounded number of times: by then a write in progress has
        // finished, while real damage is still there and is reported.
        let mut resume: Option<(usize, u64)> = None;
        let mut rereads = 0;
        let (next_seq, segment_end, valid_len) = loop {
            let mut records = SegmentRecords::new(&buf, path, is_last)?;
            if let Some((pos, seq)) = resume {
                records = records.resumed_at(pos, seq);
            }
            let mut failure = None;
            for record in records.by_ref() {
                match record {
                    Ok(record) => {
                        if record.seq > after_seq {
                            on_record(record.seq, record.payload)?;
                            end.replayed += 1;
                        }
                    }
                    Err(e) => {
                        failure = Some(e);
                        break;
                    }
                }
            }
            match failure {
                None => {
                    break (
                        records.next_seq(),
                        records.end().cloned(),
                        records.valid_len(),
                    );
                }
                Some(_) if is_last && mode == Mode::ReadOnly && rereads < LIVE_REREADS_MAX => {
                    resume = Some((records.valid_len() as usize, records.next_seq()));
                    rereads += 1;
                    read_segment(path, &mut buf)?;
                }
                Some(e) => return Err(e),
            }
        };
        let bytes = &buf[..];
        end.last_seq = next_seq - 1;
        expect_first = Some(next_seq);
        if let Some(SegmentEnd::Torn { offset, what }) = &segment_end {
            end.torn = Some((path.clone(), *offset, what));
            if mode == Mode::Repair {
                // Cut the tail by zeroing it, not by shrinking the file: the segment keeps its
                // preallocated length and the reader's rule stays one (records, then zeros).
                // Only up to the last non-zero byte needs writing.
                let dirty_end = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1) as u64;
                let f = OpenOptions::new()
                    .write(true)
                    .open(path)
                    .map_err(io_err(path))?;
                zero_fill(&f, path, *offset, dirty_end.max(*offset), &|| false)?;
                f.sync_data().map_err(io_err(path))?;
            }
        }
        if is_last {
            last = Some((*name_seq, path.clone(), valid_len));
        }
    }
    Ok(Scan { end, last })
}

/// Writes zero bytes over `from..to` of `file`, a chunk at a time, checking `cancelled` before
/// each chunk; returns `Ok(false)` if it was cancelled. Does not sync.
fn zero_fill(
    file: &File,
    path: &Path,
    from: u64,
    to: u64,
    cancelled: &dyn Fn() -> bool,
) -> Result<bool, JournalError> {
    let zeros = vec![0u8; ZERO_FILL_CHUNK_BYTES.min(to.saturating_sub(from) as usize)];
    let mut at = from;
    while at < to {
        if cancelled() {
            return Ok(false);
        }
        let n = (to - at).min(zeros.len() as u64) as usize;
        file.write_all_at(&zeros[..n], at).map_err(io_err(path))?;
        at += n as u64;
    }
    Ok(true)
}

fn read_prefix(path: &Path, buf: &mut [u8]) -> Result<usize, JournalError> {
    use std::io::Read;
    let mut f = File::open(path).map_err(io_err(path))?;
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]).map_err(io_err(path))? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Reads the journal in `dir` without changing it, passing every record with a sequence number
/// greater than `after_seq` to `on_record`. A torn tail is reported, not cut.
pub fn read_dir(
    dir: &Path,
    after_seq: u64,
    mut on_record: impl FnMut(u64, &[u8]) -> Result<(), JournalError>,
) -> Result<ReplayEnd, JournalError> {
    Ok(scan_dir(dir, Mode::ReadOnly, after_seq, &mut on_record)?.end)
}

// ---------------------------------------------------------------------------------------------
// Synchronous writer
// ---------------------------------------------------------------------------------------------

/// Settings of a journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JournalOptions {
    /// Size past which the current segment is closed and a new one begun.
    pub segment_bytes_max: u64,
    /// Whether to call `fdatasync` after each batch. Only benchmarks turn this off.
    pub sync: bool,
}

impl Default for JournalOptions {
    fn default() -> Self {
        Self {
            segment_bytes_max: SEGMENT_BYTES_DEFAULT,
            sync: true,
        }
    }
}

/// The next segment file being zero-filled by a helper thread (at most one at a time).
#[derive(Debug)]
struct Spare {
    /// The thread; it returns the zero-filled, synced file, still under [`SPARE_SEGMENT_NAME`].
    thread: JoinHandle<Result<File, JournalError>>,
    /// Set to make the thread stop at its next chunk and remove its file (journal dropped).
    cancel: Arc<AtomicBool>,
}

/// The synchronous journal writer: records are staged into a batch, then the batch is written
/// with one `write` and made durable with one `fdatasync`.
#[derive(Debug)]
pub struct Journal {
    dir: PathBuf,
    options: JournalOptions,
    /// The open last segment, `None` before the first record is ever written.
    file: Option<File>,
    /// Path of the open segment, for errors.
    path: PathBuf,
    /// Bytes of records in the open segment (header included): where the next batch is written,
    /// over the zeros that preallocation wrote and synced, so that a batch that fits changes no
    /// file size and its `fdatasync` flushes data only.
    segment_len: u64,
    /// The next segment, being zero-filled ahead of the roll that will need it.
    spare: Option<Spare>,
    /// Sequence number the next staged record gets.
    next_seq: u64,
    /// Sequence number of the last durable record.
    durable_seq: u64,
    /// Framed records staged for the next commit.
    batch: Vec<u8>,
    /// Records in `batch`.
    batch_records: usize,
    /// Set when a write or sync failed.
    poisoned: Option<String>,
}

impl Journal {
    /// Opens (creating if needed) the journal in `dir`: replays every record after `after_seq`
    /// through `on_record`, cuts a torn tail, and returns the journal ready to append after the
    /// last valid record. The caller must check that [`Journal::durable_seq`] is at least
    /// `after_seq` (a journal that ends before its snapshot is an inconsistency).
    pub fn open(
        dir: &Path,
        options: JournalOptions,
        after_seq: u64,
        mut on_record: impl FnMut(u64, &[u8]) -> Result<(), JournalError>,
    ) -> Result<(Self, ReplayEnd), JournalError> {
        if !(SEGMENT_BYTES_MIN..=SEGMENT_BYTES_MAX).contains(&options.segment_bytes_max) {
            return Err(JournalError::InvalidOptions(format!(
                "segment_bytes_max {} outside {SEGMENT_BYTES_MIN}..={SEGMENT_BYTES_MAX}",
                options.segment_bytes_max
            )));
        }
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let scan = scan_dir(dir, Mode::Repair, after_seq, &mut on_record)?;
        // With no segment at all (nothing written since the snapshot at `after_seq`, or a
        // fresh directory), the journal continues right after the snapshot.
        let last_seq = if scan.last.is_none() {
            scan.end.last_seq.max(after_seq)
        } else {
            scan.end.last_seq
        };
        // A spare left by an earlier run may be half filled or carry a header; start afresh.
        let spare_path = dir.join(SPARE_SEGMENT_NAME);
        match fs::remove_file(&spare_path) {
            Ok(()) => sync_dir(dir)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&spare_path)(e)),
        }
        let (file, path, segment_len) = match scan.last {
            Some((_, path, len)) => {
                let f = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&path)
                    .map_err(io_err(&path))?;
                let file_len = f.metadata().map_err(io_err(&path))?.len();
                // A segment written before preallocation, or by a run with smaller segments,
                // is zero-filled to full size now, once, before any batch lands in it.
                if file_len < options.segment_bytes_max {
                    zero_fill(&f, &path, file_len, options.segment_bytes_max, &|| false)?;
                    if options.sync {
                        f.sync_all().map_err(io_err(&path))?;
                    }
                }
                (Some(f), path, len)
            }
            None => (None, dir.to_path_buf(), 0),
        };
        let mut journal = Self {
            dir: dir.to_path_buf(),
            options,
            file,
            path,
            segment_len,
            spare: None,
            next_seq: last_seq + 1,
            durable_seq: last_seq,
            batch: Vec::with_capacity(64 * 1024),
            batch_records: 0,
            poisoned: None,
        };
        journal.start_spare_if_due();
        Ok((journal, scan.end))
    }

    /// The directory holding the segments.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Sequence number of the last durable record (0 if none).
    pub fn durable_seq(&self) -> u64 {
        self.durable_seq
    }

    /// Sequence number the next staged record gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Records staged and not yet committed.
    pub fn staged(&self) -> usize {
        self.batch_records
    }

    /// Bytes staged and not yet committed.
    pub fn staged_bytes(&self) -> usize {
        self.batch.len()
    }

    fn check_poison(&self) -> Result<(), JournalError> {
        match &self.poisoned {
            Some(why) => Err(JournalError::Poisoned(why.clone())),
            None => Ok(()),
        }
    }

    /// Stages one record and returns its sequence number. Nothing is durable before
    /// [`Journal::commit`] returns.
    pub fn stage<T: RecordEncode + ?Sized>(&mut self, item: &T) -> Result<u64, JournalError> {
        self.check_poison()?;
        let seq = self.next_seq;
        frame_with(&mut self.batch, seq, |buf| item.encode_into(buf))?;
        self.next_seq += 1;
        self.batch_records += 1;
        Ok(seq)
    }

    /// Writes the staged batch with one write and makes it durable with one `fdatasync`;
    /// returns the sequence number of the last durable record.
    pub fn commit(&mut self) -> Result<u64, JournalError> {
        self.check_poison()?;
        if self.batch_records == 0 {
            return Ok(self.durable_seq);
        }
        let result = self.write_batch();
        if let Err(e) = &result {
            self.poisoned = Some(e.to_string());
        }
        result?;
        self.batch.clear();
        self.batch_records = 0;
        self.durable_seq = self.next_seq - 1;
        Ok(self.durable_seq)
    }

    fn write_batch(&mut self) -> Result<(), JournalError> {
        let first_seq = self.durable_seq + 1;
        let needs_new = match self.file {
            None => true,
            Some(_) => {
                self.segment_len > SEGMENT_HEADER_LEN as u64
                    && self.segment_len + self.batch.len() as u64 > self.options.segment_bytes_max
            }
        };
        if needs_new {
            self.roll(first_seq)?;
        }
        let file = self.file.as_ref().expect("a segment is open after roll");
        // Within the preallocated length this overwrites zeros: `fdatasync` then has no size
        // to commit. A batch that runs past it (one larger than what is left of a fresh
        // segment) extends the file, and that sync carries the size as before.
        file.write_all_at(&self.batch, self.segment_len)
            .map_err(io_err(&self.path))?;
        if self.options.sync {
            file.sync_data().map_err(io_err(&self.path))?;
        }
        self.segment_len += self.batch.len() as u64;
        self.start_spare_if_due();
        Ok(())
    }

    /// Starts zero-filling the next segment in a helper thread once the open one is half full
    /// (or before the first segment exists), so that the roll finds it ready. At most one
    /// spare exists at a time; if the thread cannot be started, the roll fills one itself.
    fn start_spare_if_due(&mut self) {
        let due = self.file.is_none() || self.segment_len >= self.options.segment_bytes_max / 2;
        if self.spare.is_some() || !due {
            return;
        }
        let cancel = Arc::new(AtomicBool::new(false));
        let (dir, size, sync) = (
            self.dir.clone(),
            self.options.segment_bytes_max,
            self.options.sync,
        );
        let flag = Arc::clone(&cancel);
        let spawned = std::thread::Builder::new()
            .name("journal-zero-fill".into())
            .spawn(move || make_spare(&dir, size, sync, &flag));
        if let Ok(thread) = spawned {
            self.spare = Some(Spare { thread, cancel });
        }
    }

    /// Closes the current segment and opens the next: a zero-filled spare (the helper thread's,
    /// waited for if still filling, or one filled here) gets the header, is synced, and only
    /// then takes the segment's name, so the header is durable (file and directory entry)
    /// before any record is written and no segment is ever seen half filled.
    fn roll(&mut self, first_seq: u64) -> Result<(), JournalError> {
        if let Some(old) = self.file.take()
            && self.options.sync
        {
            old.sync_all().map_err(io_err(&self.path))?;
        }
        let ready = self.spare.take().and_then(|s| s.thread.join().ok()?.ok());
        let f = match ready {
            Some(f) => f,
            None => make_spare(
                &self.dir,
                self.options.segment_bytes_max,
                self.options.sync,
                &AtomicBool::new(false),
            )?,
        };
        let spare_path = self.dir.join(SPARE_SEGMENT_NAME);
        f.write_all_at(&encode_segment_header(first_seq), 0)
            .map_err(io_err(&spare_path))?;
        if self.options.sync {
            f.sync_data().map_err(io_err(&spare_path))?;
        }
        let path = self.dir.join(segment_name(first_seq));
        // A link fails if the name exists (as `create_new` did); the spare name goes after.
        fs::hard_link(&spare_path, &path).map_err(io_err(&path))?;
        fs::remove_file(&spare_path).map_err(io_err(&spare_path))?;
        if self.options.sync {
            sync_dir(&self.dir)?;
        }
        self.file = Some(f);
        self.path = path;
        self.segment_len = SEGMENT_HEADER_LEN as u64;
        Ok(())
    }

    /// Stages every item and commits them as one batch; returns after the batch is durable,
    /// with the sequence numbers given (empty if `items` is empty).
    pub fn append_batch<T: RecordEncode>(
        &mut self,
        items: &[T],
    ) -> Result<std::ops::RangeInclusive<u64>, JournalError> {
        let first = self.next_seq;
        for item in items {
            if let Err(e) = self.stage(item) {
                self.discard_staged();
                return Err(e);
            }
        }
        let last = self.commit()?;
        Ok(first..=last)
    }

    /// Drops the staged records (their sequence numbers are given again).
    pub fn discard_staged(&mut self) {
        self.next_seq -= self.batch_records as u64;
        self.batch.clear();
        self.batch_records = 0;
    }

    /// Deletes closed segments every record of which has a sequence number at most `seq`; see
    /// [`prune_through`].
    pub fn prune_through(&mut self, seq: u64) -> Result<usize, JournalError> {
        prune_through(&self.dir, seq)
    }
}

impl Drop for Journal {
    /// Stops a spare still being filled (within one chunk) and waits for its thread, so that no
    /// thread writes into the directory after the journal is gone.
    fn drop(&mut self) {
        if let Some(spare) = self.spare.take() {
            spare.cancel.store(true, Ordering::Relaxed);
            let _ = spare.thread.join();
        }
    }
}

/// Creates [`SPARE_SEGMENT_NAME`] in `dir`, writes `size` zero bytes into it and syncs it (if
/// `sync`): a segment file whose blocks are allocated and initialised, waiting for its header.
/// If `cancel` is set it stops, removes the file and fails with [`JournalError::Closed`].
fn make_spare(
    dir: &Path,
    size: u64,
    sync: bool,
    cancel: &AtomicBool,
) -> Result<File, JournalError> {
    let path = dir.join(SPARE_SEGMENT_NAME);
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .map_err(io_err(&path))?;
    if !zero_fill(&f, &path, 0, size, &|| cancel.load(Ordering::Relaxed))? {
        drop(f);
        let _ = fs::remove_file(&path);
        return Err(JournalError::Closed);
    }
    if sync {
        f.sync_all().map_err(io_err(&path))?;
    }
    Ok(f)
}

/// Deletes closed segments of the journal in `dir` every record of which has a sequence
/// number at most `seq` (records a snapshot at `seq` makes unnecessary). The last segment,
/// the one being written, is never deleted, so this is safe while a writer runs: a segment
/// it creates meanwhile is simply not seen. Returns the number of files removed.
pub fn prune_through(dir: &Path, seq: u64) -> Result<usize, JournalError> {
    let segments = list_segments(dir)?;
    let mut removed = 0;
    for pair in segments.windows(2) {
        let (_, path) = &pair[0];
        let (next_first, _) = pair[1];
        if next_first <= seq.saturating_add(1) {
            fs::remove_file(path).map_err(io_err(path))?;
            removed += 1;
        }
    }
    if removed > 0 {
        sync_dir(dir)?;
    }
    Ok(removed)
}

// ---------------------------------------------------------------------------------------------
// Group-commit writer thread
// ---------------------------------------------------------------------------------------------

/// Settings of a [`JournalWriter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriterOptions {
    /// Commands that may wait in the queue; [`JournalWriter::submit`] blocks when it is full.
    pub queue_depth: usize,
    /// Most records per batch.
    pub batch_records_max: usize,
}

impl Default for WriterOptions {
    fn default() -> Self {
        Self {
            queue_depth: QUEUE_DEPTH_DEFAULT,
            batch_records_max: BATCH_RECORDS_MAX,
        }
    }
}

#[derive(Debug, Default)]
struct Progress {
    durable_seq: u64,
    failed: Option<String>,
    stopped: bool,
}

#[derive(Debug, Default)]
struct Shared {
    progress: Mutex<Progress>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Progress> {
        // A panic while holding this lock can only come from a bug in this file; the data
        // (two numbers) stays meaningful, so go on with it.
        self.progress.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wait_for(&self, seq: u64) -> Result<(), JournalError> {
        let mut p = self.lock();
        loop {
            if p.durable_seq >= seq {
                return Ok(());
            }
            if let Some(why) = &p.failed {
                return Err(JournalError::Poisoned(why.clone()));
            }
            if p.stopped {
                return Err(JournalError::Closed);
            }
            p = self.changed.wait(p).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// The promise that one submitted command will be durable: [`Ticket::wait`] returns once the
/// batch holding it has been synced, or with the error that stopped the journal.
#[derive(Debug, Clone)]
#[must_use = "a command is not durable until its ticket says so"]
pub struct Ticket {
    seq: u64,
    shared: Arc<Shared>,
}

impl Ticket {
    /// The sequence number the journal gave the command.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Whether the command is durable now.
    pub fn is_durable(&self) -> bool {
        self.shared.lock().durable_seq >= self.seq
    }

    /// Blocks until the command is durable.
    pub fn wait(&self) -> Result<(), JournalError> {
        self.shared.wait_for(self.seq)
    }
}

/// Follows the durable sequence number of a [`JournalWriter`] from any thread.
#[derive(Debug, Clone)]
pub struct DurableWatch {
    shared: Arc<Shared>,
}

impl DurableWatch {
    /// Sequence number of the last durable command.
    pub fn durable_seq(&self) -> u64 {
        self.shared.lock().durable_seq
    }

    /// Blocks until every command up to `seq` is durable.
    pub fn wait_durable(&self, seq: u64) -> Result<(), JournalError> {
        self.shared.wait_for(seq)
    }

    /// Blocks until the durable sequence number moves past `seen` and returns it. Fails with
    /// [`JournalError::Closed`] once the writer has stopped with nothing more to report, or
    /// with the error that stopped it.
    pub fn wait_past(&self, seen: u64) -> Result<u64, JournalError> {
        self.shared.wait_for(seen + 1)?;
        Ok(self.durable_seq())
    }
}

/// A [`Journal`] run by its own thread behind a bounded queue: the engine thread submits
/// commands and goes on; the writer thread takes whatever has queued up, writes it as one
/// batch, syncs once, and then completes every ticket of the batch.
#[derive(Debug)]
pub struct JournalWriter<T: RecordEncode + Send + 'static> {
    tx: Option<SyncSender<T>>,
    shared: Arc<Shared>,
    next_seq: u64,
    thread: Option<JoinHandle<Journal>>,
}

impl<T: RecordEncode + Send + 'static> JournalWriter<T> {
    /// Starts the writer thread over an open journal (nothing may be staged in it).
    pub fn spawn(journal: Journal, options: WriterOptions) -> Result<Self, JournalError> {
        if options.queue_depth == 0 || options.queue_depth > QUEUE_DEPTH_MAX {
            return Err(JournalError::InvalidOptions(format!(
                "queue_depth {} outside 1..={QUEUE_DEPTH_MAX}",
                options.queue_depth
            )));
        }
        if options.batch_records_max == 0 || options.batch_records_max > BATCH_RECORDS_MAX {
            return Err(JournalError::InvalidOptions(format!(
                "batch_records_max {} outside 1..={BATCH_RECORDS_MAX}",
                options.batch_records_max
            )));
        }
        if journal.staged() != 0 {
            return Err(JournalError::InvalidOptions(
                "journal has staged records".into(),
            ));
        }
        let (tx, rx) = mpsc::sync_channel(options.queue_depth);
        let shared = Arc::new(Shared::default());
        shared.lock().durable_seq = journal.durable_seq();
        let next_seq = journal.next_seq();
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("journal-writer".into())
            .spawn(move || run_writer(journal, rx, thread_shared, options.batch_records_max))
            .map_err(|source| JournalError::Io {
                path: PathBuf::from("journal-writer"),
                source,
            })?;
        Ok(Self {
            tx: Some(tx),
            shared,
            next_seq,
            thread: Some(thread),
        })
    }

    /// Queues a command for the journal and returns its ticket; blocks while the queue is full.
    /// Sequence numbers are given in submission order.
    pub fn submit(&mut self, item: T) -> Result<Ticket, JournalError> {
        if let Some(why) = &self.shared.lock().failed {
            return Err(JournalError::Poisoned(why.clone()));
        }
        let tx = self.tx.as_ref().ok_or(JournalError::Closed)?;
        tx.send(item)
            .map_err(|_| match &self.shared.lock().failed {
                Some(why) => JournalError::Poisoned(why.clone()),
                None => JournalError::Closed,
            })?;
        let seq = self.next_seq;
        self.next_seq += 1;
        Ok(Ticket {
            seq,
            shared: Arc::clone(&self.shared),
        })
    }

    /// Sequence number of the last durable command.
    pub fn durable_seq(&self) -> u64 {
        self.shared.lock().durable_seq
    }

    /// Sequence number the next submitted command gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Blocks until every command up to `seq` is durable.
    pub fn wait_durable(&self, seq: u64) -> Result<(), JournalError> {
        self.shared.wait_for(seq)
    }

    /// Blocks until the durable sequence number moves past `seen` (or the journal fails) and
    /// returns it; lets a caller acknowledge commands batch by batch.
    pub fn wait_past(&self, seen: u64) -> Result<u64, JournalError> {
        self.watch().wait_past(seen)
    }

    /// A handle another thread can use to follow durability (e.g. the thread that answers
    /// clients), while this one keeps submitting.
    pub fn watch(&self) -> DurableWatch {
        DurableWatch {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Writes everything queued, stops the thread and gives the journal back.
    pub fn close(mut self) -> Result<Journal, JournalError> {
        self.tx.take();
        let journal = self
            .thread
            .take()
            .ok_or(JournalError::Closed)?
            .join()
            .map_err(|_| JournalError::Poisoned("journal writer thread panicked".into()))?;
        if let Some(why) = &self.shared.lock().failed {
            return Err(JournalError::Poisoned(why.clone()));
        }
        Ok(journal)
    }
}

impl<T: RecordEncode + Send + 'static> Drop for JournalWriter<T> {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run_writer<T: RecordEncode>(
    mut journal: Journal,
    rx: Receiver<T>,
    shared: Arc<Shared>,
    batch_records_max: usize,
) -> Journal {
    let _stop = StopOnDrop(Arc::clone(&shared));
    let fail = |why: String| {
        let mut p = shared.lock();
        p.failed = Some(why);
        shared.changed.notify_all();
    };
    'outer: while let Ok(first) = rx.recv() {
        if let Err(e) = journal.stage(&first) {
            fail(e.to_string());
            break;
        }
        // Take whatever else is already queued: that is the whole of group commit. The batch
        // grows while the previous sync runs, so its size adapts to the load.
        while journal.staged() < batch_records_max && journal.staged_bytes() < BATCH_BYTES_MAX {
            match rx.try_recv() {
                Ok(item) => {
                    if let Err(e) = journal.stage(&item) {
                        fail(e.to_string());
                        break 'outer;
                    }
                }
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        match journal.commit() {
            Ok(durable) => {
                let mut p = shared.lock();
                p.durable_seq = durable;
                shared.changed.notify_all();
            }
            Err(e) => {
                fail(e.to_string());
                break;
            }
        }
    }
    journal
}

/// Marks the writer stopped when its thread ends, normally or by a panic, so that no
/// [`Ticket::wait`] can block for ever on a thread that is gone.
struct StopOnDrop(Arc<Shared>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        let mut p = self.0.lock();
        p.stopped = true;
        self.0.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(records: &[(u64, &[u8])], first_seq: u64) -> Vec<u8> {
        let mut out = encode_segment_header(first_seq).to_vec();
        for (seq, payload) in records {
            encode_record(&mut out, *seq, payload).unwrap();
        }
        out
    }

    type Records = Vec<(u64, Vec<u8>)>;

    fn collect(bytes: &[u8], last: bool) -> (Records, Result<Option<SegmentEnd>, String>) {
        let path = Path::new("seg");
        let mut it = match SegmentRecords::new(bytes, path, last) {
            Ok(it) => it,
            Err(e) => return (vec![], Err(e.to_string())),
        };
        let mut got = vec![];
        for r in it.by_ref() {
            match r {
                Ok(r) => got.push((r.seq, r.payload.to_vec())),
                Err(e) => return (got, Err(e.to_string())),
            }
        }
        (got, Ok(it.end().cloned()))
    }

    #[test]
    fn reads_back_what_was_framed() {
        let bytes = segment(&[(7, b"a"), (8, b""), (9, b"hello")], 7);
        let (got, end) = collect(&bytes, true);
        assert_eq!(
            got,
            vec![(7, b"a".to_vec()), (8, vec![]), (9, b"hello".to_vec())]
        );
        assert_eq!(end, Ok(Some(SegmentEnd::Clean)));
    }

    #[test]
    fn every_truncation_of_the_last_record_is_a_torn_tail() {
        let full = segment(&[(1, b"first"), (2, b"second record")], 1);
        let good = segment(&[(1, b"first")], 1).len();
        for cut in good + 1..full.len() {
            let (got, end) = collect(&full[..cut], true);
            assert_eq!(got, vec![(1, b"first".to_vec())], "cut {cut}");
            match end {
                Ok(Some(SegmentEnd::Torn { offset, .. })) => assert_eq!(offset, good as u64),
                other => panic!("cut {cut}: {other:?}"),
            }
            // A closed segment may not end torn.
            assert!(collect(&full[..cut], false).1.is_err());
        }
    }

    #[test]
    fn damage_before_a_valid_record_is_corruption_with_offset() {
        let mut bytes = segment(&[(1, b"one"), (2, b"two"), (3, b"three")], 1);
        let second = segment(&[(1, b"one")], 1).len();
        bytes[second + RECORD_HEADER_LEN] ^= 0x40; // flip a payload bit of record 2
        let (got, end) = collect(&bytes, true);
        assert_eq!(got.len(), 1);
        let err = end.unwrap_err();
        assert!(err.contains(&format!("at byte {second}")), "{err}");
        assert!(err.contains("seg"), "{err}");
    }

    #[test]
    fn damaged_last_record_is_torn() {
        let mut bytes = segment(&[(1, b"one"), (2, b"two")], 1);
        let n = bytes.len();
        bytes[n - 1] ^= 1;
        let (got, end) = collect(&bytes, true);
        assert_eq!(got.len(), 1);
        assert!(matches!(
            end,
            Ok(Some(SegmentEnd::Torn {
                what: "record checksum mismatch",
                ..
            }))
        ));
    }

    #[test]
    fn a_zero_tail_ends_the_segment_cleanly() {
        let records = segment(&[(1, b"one"), (2, b"two")], 1);
        let used = records.len();
        for tail in [1usize, 15, 16, 17, 4000] {
            let mut bytes = records.clone();
            bytes.resize(used + tail, 0);
            for last in [true, false] {
                let mut it = SegmentRecords::new(&bytes, Path::new("seg"), last).unwrap();
                assert_eq!(
                    it.by_ref().map(|r| r.unwrap().seq).collect::<Vec<_>>(),
                    [1, 2]
                );
                assert_eq!(it.valid_len(), used as u64);
                assert_eq!(it.end(), Some(&SegmentEnd::Clean));
            }
        }
    }

    #[test]
    fn data_after_a_zero_header_is_torn_or_corrupt() {
        let mut bytes = segment(&[(1, b"one")], 1);
        let used = bytes.len();
        bytes.resize(used + 100, 0);
        bytes[used + 60] = 1;
        let (got, end) = collect(&bytes, true);
        assert_eq!(got.len(), 1);
        assert_eq!(
            end,
            Ok(Some(SegmentEnd::Torn {
                offset: used as u64,
                what: "zero record header followed by non-zero bytes"
            }))
        );
        assert!(collect(&bytes, false).1.is_err());
        // A valid record after the gap makes it corruption even in the last segment.
        let mut rec = vec![];
        encode_record(&mut rec, 2, b"two").unwrap();
        bytes[used + 60..used + 60 + rec.len()].copy_from_slice(&rec);
        let err = collect(&bytes, true).1.unwrap_err();
        assert!(err.contains(&format!("at byte {used}")), "{err}");
    }

    #[test]
    fn out_of_sequence_record_is_corruption() {
        let bytes = segment(&[(1, b"one"), (3, b"three")], 1);
        assert!(
            collect(&bytes, true)
                .1
                .unwrap_err()
                .contains("out of sequence")
        );
    }

    #[test]
    fn oversized_payload_is_refused() {
        let mut out = vec![];
        let big = vec![0u8; RECORD_PAYLOAD_MAX + 1];
        assert!(matches!(
            encode_record(&mut out, 1, &big),
            Err(JournalError::RecordTooLarge { .. })
        ));
        assert!(out.is_empty());
        encode_record(&mut out, 1, &big[..RECORD_PAYLOAD_MAX]).unwrap();
    }

    #[test]
    fn bad_headers_are_refused() {
        let mut h = encode_segment_header(5).to_vec();
        assert_eq!(parse_segment_header(&h), Ok(5));
        assert_eq!(parse_segment_header(&h[..10]), Err(HeaderFault::Short));
        h[20] ^= 1;
        assert!(matches!(parse_segment_header(&h), Err(HeaderFault::Bad(_))));
        assert!(matches!(
            parse_segment_header(&encode_segment_header(0)),
            Err(HeaderFault::Bad(_))
        ));
    }
}
