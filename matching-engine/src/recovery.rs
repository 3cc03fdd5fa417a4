//! Restart: the newest valid snapshot plus the journal records after it give back the engine
//! exactly as it was at the last durable command; and the other half of the bargain, taking a
//! snapshot only of state whose commands are durable.
//!
//! A data directory holds `journal/` (segments) and `snapshots/`. [`recover`] loads the
//! newest snapshot that passes its checksums, decodes, imports and hashes to the value in its
//! header (else the next older one), opens the journal (cutting a torn tail), replays every
//! record after the snapshot's sequence number, and returns the engine with the journal ready
//! to append. [`take_snapshot`] writes a snapshot and prunes journal segments that no kept
//! snapshot needs.

use std::path::{Path, PathBuf};

use crate::codec::{decode_command, decode_state, encode_state};
use crate::engine::{Engine, EngineConfig};
use crate::journal::{self, Journal, JournalError, JournalOptions};
use crate::snapshot::{SnapshotError, SnapshotStore};

/// Sub-directory of the data directory holding journal segments.
pub const JOURNAL_DIR: &str = "journal";
/// Sub-directory of the data directory holding snapshots.
pub const SNAPSHOT_DIR: &str = "snapshots";
/// Snapshots kept by default.
pub const SNAPSHOTS_KEPT_DEFAULT: usize = 3;

/// A failure to recover or to snapshot.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecoveryError {
    /// The journal failed or is corrupt.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The snapshot directory failed.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    /// The journal ends before the newest usable snapshot: that snapshot holds commands that
    /// were never durable, which [`take_snapshot`] forbids.
    #[error("journal ends at {journal_seq}, before the snapshot at {snapshot_seq}")]
    JournalBehindSnapshot {
        /// Last durable journal record.
        journal_seq: u64,
        /// Sequence number of the snapshot.
        snapshot_seq: u64,
    },
    /// A snapshot was requested of state not yet durable in the journal.
    #[error("engine is at {engine_seq} but the journal is durable only to {durable_seq}")]
    NotDurable {
        /// The engine's last applied sequence number.
        engine_seq: u64,
        /// The journal's durable sequence number.
        durable_seq: u64,
    },
}

/// Settings of [`recover`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecoveryOptions {
    /// The journal's settings.
    pub journal: JournalOptions,
    /// Snapshots kept.
    pub snapshots_kept: usize,
    /// Configuration of the engine when no snapshot exists.
    pub engine: EngineConfig,
}

/// The outcome of [`recover`].
#[derive(Debug)]
pub struct Recovered {
    /// The engine at the last durable command.
    pub engine: Engine,
    /// The journal, ready to append the command after `engine.last_seq()`.
    pub journal: Journal,
    /// The snapshot store (for [`take_snapshot`]).
    pub snapshots: SnapshotStore,
    /// Sequence number of the snapshot started from (0: started empty).
    pub snapshot_seq: u64,
    /// Journal records replayed after the snapshot.
    pub replayed: u64,
    /// The torn tail cut from the journal, if any: file, offset, what was found.
    pub torn: Option<(PathBuf, u64, &'static str)>,
    /// Newer snapshots passed over, and why.
    pub skipped_snapshots: Vec<SnapshotError>,
}

fn import(payload: &[u8], expected_hash: &[u8; 32], seq: u64) -> Result<Engine, String> {
    let state = decode_state(payload).map_err(|e| format!("state does not decode: {e}"))?;
    if state.last_seq != seq {
        return Err(format!(
            "state is at {} but the header says {seq}",
            state.last_seq
        ));
    }
    let engine = Engine::import_state(&state).map_err(|e| format!("state refused: {e}"))?;
    if engine.state_hash() != *expected_hash {
        return Err("imported state hashes differently from the header".into());
    }
    Ok(engine)
}

/// Rebuilds the engine from the data directory `dir` (created if missing).
pub fn recover(dir: &Path, options: &RecoveryOptions) -> Result<Recovered, RecoveryError> {
    let snapshots = SnapshotStore::open(&dir.join(SNAPSHOT_DIR), options.snapshots_kept)?;
    let (chosen, skipped_snapshots) = snapshots
        .latest_valid(|snap| import(&snap.payload, &snap.header.state_hash, snap.header.seq))?;
    let (mut engine, snapshot_seq) = match chosen {
        Some((snap, engine)) => (engine, snap.header.seq),
        None => (Engine::new(options.engine), 0),
    };
    let mut events = Vec::with_capacity(256);
    let (journal, end) = Journal::open(
        &dir.join(JOURNAL_DIR),
        options.journal,
        snapshot_seq,
        |seq, payload| {
            let cmd = decode_command(payload).map_err(|e| JournalError::Replay {
                seq,
                what: e.to_string(),
            })?;
            if cmd.seq != seq {
                return Err(JournalError::Replay {
                    seq,
                    what: format!("command carries seq {}", cmd.seq),
                });
            }
            // No market data during a replay: nobody reads it, and the state is the same.
            engine.apply_replay(&cmd, &mut events);
            events.clear();
            Ok(())
        },
    )?;
    if journal.durable_seq() < snapshot_seq {
        return Err(RecoveryError::JournalBehindSnapshot {
            journal_seq: journal.durable_seq(),
            snapshot_seq,
        });
    }
    Ok(Recovered {
        engine,
        journal,
        snapshots,
        snapshot_seq,
        replayed: end.replayed,
        torn: end.torn,
        skipped_snapshots,
    })
}

/// Writes a snapshot of `engine`, whose every command must already be durable
/// (`durable_seq` is the journal's), then deletes journal segments older than the oldest kept
/// snapshot. Returns the snapshot's sequence number.
pub fn take_snapshot(
    snapshots: &SnapshotStore,
    journal_dir: &Path,
    engine: &Engine,
    durable_seq: u64,
) -> Result<u64, RecoveryError> {
    let seq = engine.last_seq();
    if seq > durable_seq {
        return Err(RecoveryError::NotDurable {
            engine_seq: seq,
            durable_seq,
        });
    }
    let state = engine.export_state();
    let mut payload = Vec::new();
    encode_state(&mut payload, &state);
    snapshots.write(seq, &engine.state_hash(), &payload)?;
    if let Some(oldest) = snapshots.oldest_seq()? {
        journal::prune_through(journal_dir, oldest)?;
    }
    Ok(seq)
}
