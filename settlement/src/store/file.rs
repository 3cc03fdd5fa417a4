//! The embedded block store: `blocks.log`, an append-only file of block records, and
//! `applied`, a 12-byte marker holding the applied height. Layout in docs/ledger-format.md.
//!
//! Why a plain log and not an embedded database: blocks are written once, in order, and read
//! back in order on replay; a log gives exactly that with one `fsync` per record, and a
//! per-record checksum lets the store name the first damaged block, which a page-level
//! database error would not.
//!
//! Crash rules: a record is appended and synced before the marker moves, so every record up to
//! the marker is complete; bytes after the marker's record are an append interrupted by a
//! crash and are cut off on open. A record up to the marker that fails its checksum, does not
//! decode, or breaks the hash chain is corruption: the store refuses to open and names the
//! height.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::{BlockStore, StoreError};
use crate::block::CommittedBlock;
use crate::crypto::Hash32;
use crate::ledger::BlockEffects;
use crate::limits::BLOCK_BYTES_MAX;

/// First bytes of `blocks.log`.
pub const LOG_MAGIC: &[u8; 8] = b"RMPBLK01";
/// Bytes before a record's payload: length (u32) and CRC32C (u32).
pub const RECORD_HEADER_BYTES: u64 = 8;
/// Name of the log file.
pub const LOG_FILE: &str = "blocks.log";
/// Name of the marker file.
pub const MARKER_FILE: &str = "applied";

/// The append-only file store.
#[derive(Debug)]
pub struct FileStore {
    dir: PathBuf,
    log: File,
    marker: File,
    /// Offset of each record (index = height - 1), and the end of the last.
    offsets: Vec<u64>,
    end: u64,
    /// Hash of each stored block (index = height - 1), for the chain check and idempotence.
    hashes: Vec<Hash32>,
    /// Opened for verification only.
    read_only: bool,
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> StoreError {
    let context = context.into();
    move |source| StoreError::Io { context, source }
}

impl FileStore {
    /// Opens (creating if absent) the store in `dir`, checking every record up to the marker.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        Self::open_with(dir, false)
    }

    /// Opens an existing store without changing anything (no creation, no truncation of an
    /// interrupted append): for `rempart ledger verify`. Appending to it fails.
    pub fn open_read_only(dir: &Path) -> Result<Self, StoreError> {
        Self::open_with(dir, true)
    }

    fn open_with(dir: &Path, read_only: bool) -> Result<Self, StoreError> {
        let log_path = dir.join(LOG_FILE);
        if read_only && !log_path.exists() {
            return Err(StoreError::Io {
                context: format!("open {}", log_path.display()),
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
            });
        }
        if !read_only {
            std::fs::create_dir_all(dir).map_err(io(format!("create {}", dir.display())))?;
        }
        let marker_path = dir.join(MARKER_FILE);
        let fresh = !log_path.exists();
        if !fresh && !marker_path.exists() {
            // Without the marker, nothing tells complete records from an interrupted append;
            // guessing could drop decided blocks.
            return Err(StoreError::Corrupt {
                height: 0,
                reason: format!("{} is missing", marker_path.display()),
            });
        }
        let mut log = OpenOptions::new()
            .read(true)
            .write(!read_only)
            .create(!read_only)
            .truncate(false)
            .open(&log_path)
            .map_err(io(format!("open {}", log_path.display())))?;
        let marker = OpenOptions::new()
            .read(true)
            .write(!read_only)
            .create(!read_only)
            .truncate(false)
            .open(&marker_path)
            .map_err(io(format!("open {}", marker_path.display())))?;
        if fresh {
            log.write_all(LOG_MAGIC).map_err(io("write log header"))?;
            log.sync_all().map_err(io("sync log"))?;
            sync_dir(dir)?;
        }
        let mut store = Self {
            dir: dir.to_path_buf(),
            log,
            marker,
            offsets: Vec::new(),
            end: LOG_MAGIC.len() as u64,
            hashes: Vec::new(),
            read_only,
        };
        let applied = store.read_marker()?;
        store.scan(applied)?;
        Ok(store)
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn read_marker(&mut self) -> Result<u64, StoreError> {
        let mut bytes = Vec::new();
        (&self.marker)
            .read_to_end(&mut bytes)
            .map_err(io("read applied marker"))?;
        if bytes.is_empty() {
            return Ok(0);
        }
        if bytes.len() != 12 {
            return Err(StoreError::Corrupt {
                height: 0,
                reason: format!("applied marker has {} bytes, expected 12", bytes.len()),
            });
        }
        let (height, crc) = bytes.split_at(8);
        if crc32c::crc32c(height) != u32::from_le_bytes(crc.try_into().unwrap_or_default()) {
            return Err(StoreError::Corrupt {
                height: 0,
                reason: "applied marker fails its checksum".into(),
            });
        }
        Ok(u64::from_le_bytes(height.try_into().unwrap_or_default()))
    }

    fn write_marker(&self, height: u64) -> Result<(), StoreError> {
        let mut bytes = [0u8; 12];
        bytes[..8].copy_from_slice(&height.to_le_bytes());
        let crc = crc32c::crc32c(&bytes[..8]);
        bytes[8..].copy_from_slice(&crc.to_le_bytes());
        // 12 bytes at offset 0 lie in one disk sector, which disks write atomically.
        self.marker
            .write_all_at(&bytes, 0)
            .map_err(io("write applied marker"))?;
        self.marker.sync_data().map_err(io("sync applied marker"))
    }

    fn scan(&mut self, applied: u64) -> Result<(), StoreError> {
        let len = self.log.metadata().map_err(io("stat log"))?.len();
        let mut magic = [0u8; 8];
        if len < 8 {
            return Err(StoreError::Corrupt {
                height: 0,
                reason: "log file shorter than its header".into(),
            });
        }
        self.log
            .read_exact_at(&mut magic, 0)
            .map_err(io("read log header"))?;
        if &magic != LOG_MAGIC {
            return Err(StoreError::Corrupt {
                height: 0,
                reason: "log file header is not RMPBLK01".into(),
            });
        }
        let mut offset = LOG_MAGIC.len() as u64;
        for height in 1..=applied {
            let corrupt = |reason: String| StoreError::Corrupt { height, reason };
            let block = self
                .read_record(offset, len)
                .map_err(|reason| match reason {
                    RecordFault::Io(error) => StoreError::Io {
                        context: format!("read block {height}"),
                        source: error,
                    },
                    RecordFault::Bad(reason) => corrupt(reason),
                })?;
            let (block, size) = block;
            if block.block.header.height != height {
                return Err(corrupt(format!(
                    "record holds height {}",
                    block.block.header.height
                )));
            }
            if let Some(previous) = self.hashes.last()
                && block.block.header.previous_hash != *previous
            {
                return Err(corrupt("previous-hash link broken".into()));
            }
            if block.certificate.vote.block_hash != block.block.hash() {
                return Err(corrupt("certificate is for another block".into()));
            }
            self.offsets.push(offset);
            self.hashes.push(block.block.hash());
            offset += size;
        }
        self.end = offset;
        if len > offset && !self.read_only {
            // An append that a crash interrupted before its marker moved: not applied.
            self.log.set_len(offset).map_err(io("truncate log tail"))?;
            self.log.sync_all().map_err(io("sync log"))?;
        }
        Ok(())
    }

    fn read_record(
        &self,
        offset: u64,
        file_len: u64,
    ) -> Result<(CommittedBlock, u64), RecordFault> {
        if offset + RECORD_HEADER_BYTES > file_len {
            return Err(RecordFault::Bad("record missing (log too short)".into()));
        }
        let mut header = [0u8; 8];
        self.log
            .read_exact_at(&mut header, offset)
            .map_err(RecordFault::Io)?;
        let size = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as u64;
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        if size as usize > BLOCK_BYTES_MAX {
            return Err(RecordFault::Bad(format!(
                "record length {size} above the limit"
            )));
        }
        if offset + RECORD_HEADER_BYTES + size > file_len {
            return Err(RecordFault::Bad("record truncated".into()));
        }
        let mut payload = vec![0u8; size as usize];
        self.log
            .read_exact_at(&mut payload, offset + RECORD_HEADER_BYTES)
            .map_err(RecordFault::Io)?;
        if crc32c::crc32c(&payload) != crc {
            return Err(RecordFault::Bad("record fails its CRC32C checksum".into()));
        }
        let block = CommittedBlock::decode(&payload)
            .map_err(|error| RecordFault::Bad(format!("record does not decode: {error}")))?;
        Ok((block, RECORD_HEADER_BYTES + size))
    }
}

enum RecordFault {
    Io(std::io::Error),
    Bad(String),
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(format!("sync {}", dir.display())))
}

impl BlockStore for FileStore {
    fn applied_height(&self) -> Result<u64, StoreError> {
        Ok(self.hashes.len() as u64)
    }

    fn append(
        &mut self,
        block: &CommittedBlock,
        _effects: &BlockEffects,
    ) -> Result<(), StoreError> {
        let height = block.block.header.height;
        if self.read_only {
            return Err(StoreError::Io {
                context: format!("append block {height} to a store opened read-only"),
                source: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
            });
        }
        let next = self.hashes.len() as u64 + 1;
        let hash = block.block.hash();
        if height < next {
            return match self.hashes.get(height.saturating_sub(1) as usize) {
                Some(stored) if *stored == hash && height > 0 => Ok(()),
                _ => Err(StoreError::Conflict { height }),
            };
        }
        if height > next {
            return Err(StoreError::Gap {
                expected: next,
                got: height,
            });
        }
        let payload = block.encode();
        let mut record = Vec::with_capacity(payload.len() + 8);
        record.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        record.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
        record.extend_from_slice(&payload);
        self.log
            .write_all_at(&record, self.end)
            .map_err(io(format!("append block {height}")))?;
        self.log
            .sync_data()
            .map_err(io(format!("sync block {height}")))?;
        self.write_marker(height)?;
        self.offsets.push(self.end);
        self.end += record.len() as u64;
        self.hashes.push(hash);
        Ok(())
    }

    fn read(&self, height: u64) -> Result<CommittedBlock, StoreError> {
        let Some(&offset) = height
            .checked_sub(1)
            .and_then(|index| self.offsets.get(index as usize))
        else {
            return Err(StoreError::NotFound(height));
        };
        self.read_record(offset, self.end)
            .map(|(block, _)| block)
            .map_err(|fault| match fault {
                RecordFault::Io(source) => StoreError::Io {
                    context: format!("read block {height}"),
                    source,
                },
                RecordFault::Bad(reason) => StoreError::Corrupt { height, reason },
            })
    }

    fn block_hash(&self, height: u64) -> Result<Hash32, StoreError> {
        height
            .checked_sub(1)
            .and_then(|index| self.hashes.get(index as usize))
            .copied()
            .ok_or(StoreError::NotFound(height))
    }
}
