//! Snapshot files: the engine's whole state at one sequence number, so that recovery replays
//! only the journal records after it.
//!
//! A snapshot is written to a temporary file, synced, renamed into place and the directory
//! synced, so a reader sees either the whole new file or none of it. Its header carries the
//! sequence number, the engine's state hash at that number and a checksum of the payload;
//! a damaged snapshot is skipped in favour of an older one. The last `keep` snapshots are
//! kept. Layout: `docs/journal-format.md`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// First bytes of every snapshot file.
pub const SNAPSHOT_MAGIC: [u8; 8] = *b"RMPSNAP\0";
/// Version of the snapshot container layout.
pub const SNAPSHOT_VERSION: u32 = 1;
/// Bytes of the snapshot header.
pub const SNAPSHOT_HEADER_LEN: usize = 72;
/// Largest snapshot payload accepted (ten million orders encode to well under this).
pub const SNAPSHOT_BYTES_MAX: u64 = 2 * 1024 * 1024 * 1024;
/// Most snapshots kept on disk.
pub const SNAPSHOTS_KEPT_MAX: usize = 64;
/// Length of a state hash.
pub const STATE_HASH_LEN: usize = 32;

const PREFIX: &str = "snapshot-";
const SUFFIX: &str = ".snap";
const TMP_SUFFIX: &str = ".snap.tmp";

/// A failure to write or read snapshots.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    /// An operating-system call failed.
    #[error("snapshot I/O on {path}: {source}")]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// The error from the operating system.
        source: io::Error,
    },
    /// The file is not a valid snapshot.
    #[error("snapshot {path} invalid: {what}")]
    Invalid {
        /// The snapshot file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// Invalid settings or arguments.
    #[error("invalid snapshot request: {0}")]
    InvalidRequest(String),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> SnapshotError + '_ {
    move |source| SnapshotError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The header of a snapshot file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotHeader {
    /// Sequence number of the last command reflected in the state.
    pub seq: u64,
    /// The engine's state hash at `seq`; recovery checks the imported state against it.
    pub state_hash: [u8; STATE_HASH_LEN],
    /// Bytes of payload after the header.
    pub payload_len: u64,
    /// CRC32C of the payload.
    pub payload_crc: u32,
}

/// Encodes a snapshot header.
pub fn encode_header(h: &SnapshotHeader) -> [u8; SNAPSHOT_HEADER_LEN] {
    let mut b = [0u8; SNAPSHOT_HEADER_LEN];
    b[0..8].copy_from_slice(&SNAPSHOT_MAGIC);
    b[8..12].copy_from_slice(&SNAPSHOT_VERSION.to_le_bytes());
    // 12..16: flags, none defined.
    b[16..24].copy_from_slice(&h.seq.to_le_bytes());
    b[24..56].copy_from_slice(&h.state_hash);
    b[56..64].copy_from_slice(&h.payload_len.to_le_bytes());
    b[64..68].copy_from_slice(&h.payload_crc.to_le_bytes());
    let crc = crc32c::crc32c(&b[0..68]);
    b[68..72].copy_from_slice(&crc.to_le_bytes());
    b
}

/// Checks a whole snapshot file's bytes and returns its header and payload.
pub fn parse_snapshot(bytes: &[u8]) -> Result<(SnapshotHeader, &[u8]), &'static str> {
    if bytes.len() < SNAPSHOT_HEADER_LEN {
        return Err("shorter than a header");
    }
    let b = &bytes[..SNAPSHOT_HEADER_LEN];
    if b[0..8] != SNAPSHOT_MAGIC {
        return Err("bad magic");
    }
    if crc32c::crc32c(&b[0..68]) != u32::from_le_bytes(b[68..72].try_into().expect("4 bytes")) {
        return Err("header checksum mismatch");
    }
    if u32::from_le_bytes(b[8..12].try_into().expect("4 bytes")) != SNAPSHOT_VERSION {
        return Err("unsupported snapshot version");
    }
    let mut state_hash = [0u8; STATE_HASH_LEN];
    state_hash.copy_from_slice(&b[24..56]);
    let h = SnapshotHeader {
        seq: u64::from_le_bytes(b[16..24].try_into().expect("8 bytes")),
        state_hash,
        payload_len: u64::from_le_bytes(b[56..64].try_into().expect("8 bytes")),
        payload_crc: u32::from_le_bytes(b[64..68].try_into().expect("4 bytes")),
    };
    let payload = &bytes[SNAPSHOT_HEADER_LEN..];
    if payload.len() as u64 != h.payload_len {
        return Err("payload length differs from the header's");
    }
    if crc32c::crc32c(payload) != h.payload_crc {
        return Err("payload checksum mismatch");
    }
    Ok((h, payload))
}

/// A snapshot read back from disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedSnapshot {
    /// The file it came from.
    pub path: PathBuf,
    /// Its header.
    pub header: SnapshotHeader,
    /// Its payload (the encoded engine state).
    pub payload: Vec<u8>,
}

/// What [`SnapshotStore::latest_valid`] found: the snapshot chosen (with what the caller made
/// of it) and why every newer one was passed over.
pub type LatestValid<T> = (Option<(LoadedSnapshot, T)>, Vec<SnapshotError>);

/// The snapshots of one directory.
#[derive(Debug, Clone)]
pub struct SnapshotStore {
    dir: PathBuf,
    keep: usize,
}

impl SnapshotStore {
    /// Opens (creating) a snapshot directory that keeps the last `keep` snapshots.
    pub fn open(dir: &Path, keep: usize) -> Result<Self, SnapshotError> {
        if keep == 0 || keep > SNAPSHOTS_KEPT_MAX {
            return Err(SnapshotError::InvalidRequest(format!(
                "keep {keep} outside 1..={SNAPSHOTS_KEPT_MAX}"
            )));
        }
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            keep,
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Snapshot files by sequence number, oldest first (not checked).
    pub fn list(&self) -> Result<Vec<(u64, PathBuf)>, SnapshotError> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(io_err(&self.dir))? {
            let entry = entry.map_err(io_err(&self.dir))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let Some(stem) = name
                .strip_prefix(PREFIX)
                .and_then(|n| n.strip_suffix(SUFFIX))
            else {
                continue;
            };
            if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            if let Ok(seq) = stem.parse::<u64>() {
                out.push((seq, entry.path()));
            }
        }
        out.sort_unstable_by_key(|(seq, _)| *seq);
        Ok(out)
    }

    /// Writes a snapshot of the state at `seq` atomically, then deletes all but the newest
    /// `keep` snapshots. Returns the new file's path.
    pub fn write(
        &self,
        seq: u64,
        state_hash: &[u8; STATE_HASH_LEN],
        payload: &[u8],
    ) -> Result<PathBuf, SnapshotError> {
        if payload.len() as u64 > SNAPSHOT_BYTES_MAX {
            return Err(SnapshotError::InvalidRequest(format!(
                "payload of {} bytes exceeds {SNAPSHOT_BYTES_MAX}",
                payload.len()
            )));
        }
        let header = encode_header(&SnapshotHeader {
            seq,
            state_hash: *state_hash,
            payload_len: payload.len() as u64,
            payload_crc: crc32c::crc32c(payload),
        });
        let name = format!("{PREFIX}{seq:020}");
        let tmp = self.dir.join(format!("{name}{TMP_SUFFIX}"));
        let path = self.dir.join(format!("{name}{SUFFIX}"));
        {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&tmp)
                .map_err(io_err(&tmp))?;
            f.write_all(&header).map_err(io_err(&tmp))?;
            f.write_all(payload).map_err(io_err(&tmp))?;
            f.sync_all().map_err(io_err(&tmp))?;
        }
        fs::rename(&tmp, &path).map_err(io_err(&path))?;
        sync_dir(&self.dir)?;
        self.prune()?;
        Ok(path)
    }

    fn prune(&self) -> Result<(), SnapshotError> {
        // A temporary file left by a write that crashed is never read; remove it.
        for entry in fs::read_dir(&self.dir).map_err(io_err(&self.dir))? {
            let path = entry.map_err(io_err(&self.dir))?.path();
            let is_tmp = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(PREFIX) && n.ends_with(TMP_SUFFIX));
            if is_tmp {
                fs::remove_file(&path).map_err(io_err(&path))?;
            }
        }
        let all = self.list()?;
        let excess = all.len().saturating_sub(self.keep);
        for (_, path) in &all[..excess] {
            fs::remove_file(path).map_err(io_err(path))?;
        }
        if excess > 0 {
            sync_dir(&self.dir)?;
        }
        Ok(())
    }

    /// Sequence number of the oldest snapshot kept (journal records up to it may be pruned).
    pub fn oldest_seq(&self) -> Result<Option<u64>, SnapshotError> {
        Ok(self.list()?.first().map(|(seq, _)| *seq))
    }

    /// Reads one snapshot file and checks it.
    pub fn load(path: &Path) -> Result<LoadedSnapshot, SnapshotError> {
        let len = fs::metadata(path).map_err(io_err(path))?.len();
        if len > SNAPSHOT_BYTES_MAX + SNAPSHOT_HEADER_LEN as u64 {
            return Err(SnapshotError::Invalid {
                path: path.to_path_buf(),
                what: format!("file of {len} bytes is larger than any snapshot"),
            });
        }
        let bytes = fs::read(path).map_err(io_err(path))?;
        let (header, payload) = parse_snapshot(&bytes).map_err(|what| SnapshotError::Invalid {
            path: path.to_path_buf(),
            what: what.to_string(),
        })?;
        let payload = payload.to_vec();
        Ok(LoadedSnapshot {
            path: path.to_path_buf(),
            header,
            payload,
        })
    }

    /// The newest snapshot that passes `accept` (checksums are always checked first), with
    /// the reasons every newer one was passed over. `accept` lets recovery also refuse a
    /// snapshot whose state does not decode or import.
    pub fn latest_valid<T>(
        &self,
        mut accept: impl FnMut(&LoadedSnapshot) -> Result<T, String>,
    ) -> Result<LatestValid<T>, SnapshotError> {
        let mut skipped = Vec::new();
        for (seq, path) in self.list()?.into_iter().rev() {
            let loaded = match Self::load(&path) {
                Ok(l) => l,
                Err(e @ SnapshotError::Invalid { .. }) => {
                    skipped.push(e);
                    continue;
                }
                Err(e) => return Err(e),
            };
            if loaded.header.seq != seq {
                skipped.push(SnapshotError::Invalid {
                    path,
                    what: format!(
                        "header seq {} differs from the name's {seq}",
                        loaded.header.seq
                    ),
                });
                continue;
            }
            match accept(&loaded) {
                Ok(t) => return Ok((Some((loaded, t)), skipped)),
                Err(what) => skipped.push(SnapshotError::Invalid { path, what }),
            }
        }
        Ok((None, skipped))
    }
}

fn sync_dir(dir: &Path) -> Result<(), SnapshotError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_reads_and_keeps_the_last_n() {
        let dir = tempfile::tempdir().unwrap();
        let store = SnapshotStore::open(dir.path(), 2).unwrap();
        for seq in [10u64, 20, 30] {
            store
                .write(seq, &[seq as u8; 32], format!("state {seq}").as_bytes())
                .unwrap();
        }
        let seqs: Vec<u64> = store.list().unwrap().into_iter().map(|(s, _)| s).collect();
        assert_eq!(seqs, vec![20, 30]);
        let (got, skipped) = store.latest_valid(|_| Ok(())).unwrap();
        let (snap, ()) = got.unwrap();
        assert!(skipped.is_empty());
        assert_eq!(snap.header.seq, 30);
        assert_eq!(snap.header.state_hash, [30u8; 32]);
        assert_eq!(snap.payload, b"state 30");
        assert_eq!(store.oldest_seq().unwrap(), Some(20));
    }

    #[test]
    fn a_damaged_newest_snapshot_falls_back_to_the_previous() {
        let dir = tempfile::tempdir().unwrap();
        let store = SnapshotStore::open(dir.path(), 3).unwrap();
        store.write(1, &[1; 32], b"one").unwrap();
        let newest = store.write(2, &[2; 32], b"two").unwrap();
        let mut bytes = fs::read(&newest).unwrap();
        let n = bytes.len();
        bytes[n - 1] ^= 0xff;
        fs::write(&newest, &bytes).unwrap();
        let (got, skipped) = store.latest_valid(|_| Ok(())).unwrap();
        assert_eq!(got.unwrap().0.header.seq, 1);
        assert_eq!(skipped.len(), 1);
        assert!(
            skipped[0].to_string().contains("payload checksum mismatch"),
            "{}",
            skipped[0]
        );
        // The caller may refuse a snapshot too.
        let (got, skipped) = store
            .latest_valid(|_| Err::<(), _>("no".to_string()))
            .unwrap();
        assert!(got.is_none());
        assert_eq!(skipped.len(), 2);
    }

    #[test]
    fn every_truncation_and_bit_flip_is_detected() {
        let header = SnapshotHeader {
            seq: 7,
            state_hash: [9; 32],
            payload_len: 5,
            payload_crc: crc32c::crc32c(b"hello"),
        };
        let mut file = encode_header(&header).to_vec();
        file.extend_from_slice(b"hello");
        assert_eq!(parse_snapshot(&file), Ok((header, &b"hello"[..])));
        for cut in 0..file.len() {
            assert!(parse_snapshot(&file[..cut]).is_err());
        }
        for i in 0..file.len() {
            for bit in 0..8 {
                let mut f = file.clone();
                f[i] ^= 1 << bit;
                assert!(parse_snapshot(&f).is_err(), "flip {i}:{bit}");
            }
        }
    }

    #[test]
    fn leftover_temporary_files_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let store = SnapshotStore::open(dir.path(), 1).unwrap();
        let tmp = dir.path().join("snapshot-00000000000000000099.snap.tmp");
        fs::write(&tmp, b"partial").unwrap();
        assert!(store.list().unwrap().is_empty());
        // The next snapshot written clears it away.
        store.write(5, &[5; 32], b"five").unwrap();
        assert!(!tmp.exists());
        assert!(SnapshotStore::open(dir.path(), 0).is_err());
    }
}
