//! Helper process for the crash test (`tests/crash.rs`): recovers the engine from a data
//! directory, then applies the rest of a command stream through the engine and the
//! group-commit journal writer. A second thread follows durability and prints `ack <seq>` for
//! each command once its batch is durable, as a node's response thread would. The test kills
//! the process with SIGKILL at random points and checks what survived.
//!
//! Usage: `journal-child <data-dir> <stream-file> <snapshot-every>`; the stream file is a
//! sequence of `u32` little-endian lengths each followed by one encoded command.
//!
//! Flow control: before every `CREDIT_COMMANDS` commands the child reads one byte from stdin
//! (the test sends one per `CREDIT_COMMANDS` acknowledgements it has read), so that it can
//! never finish the stream before the test's chosen kill point however the two processes are
//! scheduled. At end of input it stops asking.

use std::io::{BufWriter, Read, Write};
use std::path::PathBuf;

use matching_engine::Command;
use matching_engine::codec::decode_command;
use matching_engine::engine::EngineConfig;
use matching_engine::journal::{JournalError, JournalOptions, JournalWriter, WriterOptions};
use matching_engine::recovery::{self, JOURNAL_DIR, RecoveryOptions};

/// The fee account of the crash test's engine (the test's model uses the same).
const FEE_ACCOUNT: u64 = 1;
/// Largest stream file accepted.
const STREAM_BYTES_MAX: u64 = 64 * 1024 * 1024;
/// Commands submitted per byte of credit read from stdin.
const CREDIT_COMMANDS: usize = 50;

/// Boxed errors, so the library crate needs no `anyhow`.
type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn read_stream(path: &PathBuf) -> Result<Vec<Command>> {
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

fn main() -> Result<()> {
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

    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "ready {start}")?;
        out.flush()?;
    }
    // The response thread: acknowledges batch by batch as durability advances.
    let watch = writer.watch();
    let acker = std::thread::spawn(move || -> Result<()> {
        let mut out = BufWriter::new(std::io::stdout().lock());
        let mut seen = start;
        loop {
            match watch.wait_past(seen) {
                Ok(durable) => {
                    for seq in seen + 1..=durable {
                        writeln!(out, "ack {seq}")?;
                    }
                    out.flush()?;
                    seen = durable;
                }
                Err(JournalError::Closed) => return Ok(()),
                Err(e) => return Err(e.into()),
            }
        }
    });

    let mut stdin = std::io::stdin().lock();
    let mut credit_open = true;
    let mut events = Vec::new();
    for (i, cmd) in stream.iter().skip(start as usize).enumerate() {
        if credit_open && i % CREDIT_COMMANDS == 0 {
            let mut byte = [0u8; 1];
            if stdin.read(&mut byte)? == 0 {
                credit_open = false;
            }
        }
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
        if snapshot_every > 0 && cmd.seq.is_multiple_of(snapshot_every) {
            // Only durable state may be snapshotted.
            writer.wait_durable(cmd.seq)?;
            recovery::take_snapshot(&snapshots, &dir.join(JOURNAL_DIR), &engine, cmd.seq)?;
        }
    }
    let last = writer.next_seq() - 1;
    writer.wait_durable(last)?;
    writer.close()?;
    acker.join().map_err(|_| "ack thread panicked")??;
    let mut out = std::io::stdout().lock();
    writeln!(out, "done {last}")?;
    out.flush()?;
    Ok(())
}
