//! Helper process for the crash test (`tests/crash.rs`): recovers the engine from a data
//! directory, then applies the rest of a command stream through the engine and the
//! group-commit journal writer, printing `ack <seq>` for each command once its batch is
//! durable. The test kills it with SIGKILL at random points and checks what survived.
//!
//! Usage: `journal-child <data-dir> <stream-file> <snapshot-every>`; the stream file is a
//! sequence of `u32` little-endian lengths each followed by one encoded command.

use std::io::{BufWriter, Write};
use std::path::PathBuf;

use matching_engine::Command;
use matching_engine::codec::decode_command;
use matching_engine::engine::EngineConfig;
use matching_engine::journal::{JournalOptions, JournalWriter, WriterOptions};
use matching_engine::recovery::{self, JOURNAL_DIR, RecoveryOptions};

/// The fee account of the crash test's engine (the test's model uses the same).
pub const FEE_ACCOUNT: u64 = 1;
/// Largest stream file accepted.
const STREAM_BYTES_MAX: u64 = 64 * 1024 * 1024;

fn read_stream(path: &PathBuf) -> anyhow_free::Result<Vec<Command>> {
    let len = std::fs::metadata(path)?.len();
    if len > STREAM_BYTES_MAX {
        return Err(format!("stream file of {len} bytes too large").into());
    }
    let bytes = std::fs::read(path)?;
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let head = bytes.get(pos..pos + 4).ok_or("short length prefix")?;
        let n = u32::from_le_bytes(head.try_into()?) as usize;
        let body = bytes.get(pos + 4..pos + 4 + n).ok_or("short command")?;
        out.push(decode_command(body)?);
        pos += 4 + n;
    }
    Ok(out)
}

/// Boxed errors without pulling `anyhow` into the library crate's dependencies.
mod anyhow_free {
    pub type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;
}

fn main() -> anyhow_free::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 4 {
        return Err("usage: journal-child <data-dir> <stream-file> <snapshot-every>".into());
    }
    let dir = PathBuf::from(&args[1]);
    let stream = read_stream(&PathBuf::from(&args[2]))?;
    let snapshot_every: u64 = args[3].parse()?;

    let options = RecoveryOptions {
        // Small segments, so that a run crosses several rollovers.
        journal: JournalOptions {
            segment_bytes_max: 16 * 1024,
            sync: true,
        },
        snapshots_kept: 2,
        engine: EngineConfig {
            fee_account: FEE_ACCOUNT,
        },
    };
    let recovered = recovery::recover(&dir, &options)?;
    let mut engine = recovered.engine;
    let snapshots = recovered.snapshots;
    let start = recovered.journal.durable_seq();
    let mut writer = JournalWriter::<Command>::spawn(
        recovered.journal,
        WriterOptions {
            queue_depth: 1024,
            batch_records_max: 32,
        },
    )?;

    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    writeln!(out, "ready {start}")?;
    out.flush()?;
    let mut acked = start;
    let mut ack_up_to = |out: &mut BufWriter<_>, durable: u64| -> anyhow_free::Result<()> {
        if durable > acked {
            for seq in acked + 1..=durable {
                writeln!(out, "ack {seq}")?;
            }
            out.flush()?;
            acked = durable;
        }
        Ok(())
    };

    let mut events = Vec::new();
    for cmd in stream.iter().skip(start as usize) {
        if cmd.seq != writer.next_seq() {
            return Err(format!(
                "stream seq {} but journal expects {}",
                cmd.seq,
                writer.next_seq()
            )
            .into());
        }
        engine.apply(cmd, &mut events);
        events.clear();
        let _ticket = writer.submit(*cmd)?;
        ack_up_to(&mut out, writer.durable_seq())?;
        if snapshot_every > 0 && cmd.seq.is_multiple_of(snapshot_every) {
            writer.wait_durable(cmd.seq)?;
            recovery::take_snapshot(&snapshots, &dir.join(JOURNAL_DIR), &engine, cmd.seq)?;
            ack_up_to(&mut out, writer.durable_seq())?;
        }
    }
    let last = writer.next_seq() - 1;
    writer.wait_durable(last)?;
    ack_up_to(&mut out, last)?;
    writer.close()?;
    writeln!(out, "done {last}")?;
    out.flush()?;
    Ok(())
}
