//! Every bound of the node in one place, so that load turns into refusals (with codes), never
//! into unbounded memory or time.

/// Most async worker threads the node's API runtime may be given (`api_threads`).
pub const API_THREADS_MAX: usize = 256;
/// Largest gRPC message the server decodes or encodes, in bytes.
pub const MESSAGE_BYTES_MAX: usize = 64 * 1024;
/// Commands waiting for the engine thread; senders wait (backpressure) when it is full.
pub const ENGINE_QUEUE_DEPTH: usize = 64 * 1024;
/// Most commands the engine thread takes in one group-commit batch.
pub const ENGINE_BATCH_MAX: usize = 4 * 1024;
/// Batches applied by the engine and waiting for their journal sync before acknowledgement.
pub const ACK_QUEUE_DEPTH: usize = 1024;
/// Open streaming RPCs (order streams and market-data streams) in the whole node.
pub const STREAMS_MAX: usize = 1024;
/// Open streaming RPCs per account.
pub const STREAMS_PER_ACCOUNT_MAX: usize = 16;
/// Requests of one OrderStream submitted to the engine and not yet answered.
pub const STREAM_IN_FLIGHT_MAX: usize = 4096;
/// Market-data events buffered for subscribers; a subscriber further behind is cut off.
pub const MARKET_DATA_BUFFER: usize = 64 * 1024;
/// Trades kept per market for GetTrades and GetCandles.
pub const TRADES_KEPT_MAX: usize = 100_000;
/// Closed (filled or cancelled) orders kept in memory for GetOrder and ListOrders.
pub const CLOSED_ORDERS_KEPT_MAX: usize = 100_000;
/// Orders returned by ListOrders at most.
pub const LIST_ORDERS_MAX: usize = 1000;
/// Trades returned by GetTrades at most.
pub const LIST_TRADES_MAX: usize = 1000;
/// Candles returned by GetCandles at most.
pub const CANDLES_MAX: usize = 1000;
/// Price levels per side in GetOrderBook at most.
pub const BOOK_DEPTH_MAX: usize = 500;
/// Longest free-text field (labels, reasons), in bytes.
pub const TEXT_BYTES_MAX: usize = 512;
/// API keys the node holds.
pub const API_KEYS_MAX: usize = 100_000;
/// Argon2id verifications running at once (each costs ~20 MiB and tens of milliseconds).
pub const ARGON2_CONCURRENT_MAX: usize = 2;
/// Longest accepted bearer token, in bytes.
pub const TOKEN_BYTES_MAX: usize = 256;
/// Largest HTTP request head the metrics endpoint reads, in bytes.
pub const METRICS_REQUEST_BYTES_MAX: usize = 8 * 1024;
/// Levels per side loaded from the engine into the read model at start.
pub const L2_SNAPSHOT_DEPTH: usize = 1000;
/// Commands between two engine snapshots (a snapshot bounds restart time).
pub const SNAPSHOT_EVERY_COMMANDS: u64 = 1_000_000;
/// Transfers in one block of the node's ledger (a block must fit in one gRPC message when
/// served by Ledger.GetBlock, ~250 bytes per transfer).
pub const LEDGER_BLOCK_TRANSFERS_MAX: usize = 192;
/// Transfers per batch at most when settling on a consortium (and never more than the
/// validators' `block_entries_max`): each batch waits for a consortium commit, so batches are
/// larger than the single-process ledger's blocks.
pub const CONSORTIUM_BATCH_TRANSFERS_MAX: usize = 2_048;
/// A block is cut at most this long after the first transfer started waiting.
pub const LEDGER_BLOCK_INTERVAL_MS: u64 = 20;
/// Durable commands with trades queued for settlement; beyond it they are dropped from the
/// queue and re-derived from the journal (order entry never waits for settlement).
pub const LEDGER_FEED_DEPTH: usize = 16 * 1024;
/// Trades taken from the queue and waiting for a block.
pub const LEDGER_PENDING_TRADES_MAX: usize = 8 * 1024;
/// Deposits and withdrawals waiting for a block; beyond it callers are refused (LEDGER_BUSY).
pub const LEDGER_DIRECT_QUEUE_DEPTH: usize = 4 * 1024;
/// Seconds before a trade the gate did not approve (or the ledger would refuse) is retried.
pub const LEDGER_GATE_RETRY_S: u64 = 30;
/// Shortest interval between two writes of the settled-seq file.
pub const LEDGER_SETTLED_WRITE_MS: u64 = 50;
/// Transfers returned by Accounts.ListTransfers when the page size is 0.
pub const LIST_TRANSFERS_DEFAULT: usize = 100;
/// Transfers returned by Accounts.ListTransfers at most.
pub const LIST_TRANSFERS_MAX: usize = 1000;
/// Movements one ListTransfers page scans at most (with an asset filter).
pub const LEDGER_LIST_SCAN_MAX: usize = 100_000;
/// Movements one statement lists at most.
pub const LEDGER_STATEMENT_MOVEMENTS_MAX: usize = 1000;
/// How long the engine thread waits for settlement to reach a due snapshot's seq.
pub const SNAPSHOT_SETTLE_WAIT_MS: u64 = 100;
/// Commands between two such waits while settlement lags (the snapshot is retried without
/// waiting after every batch in between).
pub const SNAPSHOT_RETRY_COMMANDS: u64 = 250_000;
/// How long the shutdown snapshot waits for settlement to catch up (else it is skipped).
pub const SHUTDOWN_SETTLE_WAIT_MS: u64 = 10_000;
/// Withdrawals returned by one ListWithdrawals page at most.
pub const LIST_WITHDRAWALS_MAX: usize = 500;
/// Withdrawals one ListWithdrawals page looks at most (with a status filter).
pub const LIST_WITHDRAWALS_SCAN_MAX: usize = 100_000;
/// Largest amount one withdrawal or deposit may carry, in minor units.
pub const CUSTODY_AMOUNT_MINOR_MAX: u64 = 1_000_000_000_000_000;
/// Longest deposit id, client_request_id or originator address, in bytes.
pub const CUSTODY_ID_BYTES_MAX: usize = 128;
/// Deposits custody keeps (withdrawals are bounded by `custody::limits::WITHDRAWALS_MAX`).
pub const CUSTODY_DEPOSITS_MAX: usize = 1_000_000;
/// Longest line of the custody record log, in bytes (a longer line is damage).
pub const CUSTODY_RECORD_BYTES_MAX: usize = 64 * 1024;
/// Least time between two proof-of-reserves publications, in microseconds (each one walks
/// the engine's whole state on the engine thread).
pub const POR_REFRESH_MIN_US: u64 = 10_000_000;
