//! Settlement of the node's trades and transfers on the consortium ledger, through the same
//! `settlement::replica::Replica` that consensus drives, over the embedded `FileStore` in
//! `<data>/ledger/`. Two modes:
//! - single-process (the demo's default): one validator, this node, which certifies and
//!   commits its own blocks;
//! - consortium (`[consortium]` in the configuration, [`super::consortium`]): the node submits
//!   its signed, gated batches to the consortium's validators and its replica follows their
//!   chain, verifying every block it pulls.
//!
//! # Layout
//! - Ids: [`ledger_account`] maps an engine (account, asset) to a ledger account; transfer ids
//!   carry their kind in the high byte (1 deposit, 2 withdrawal, 3 trade leg, 4 fee leg) and are
//!   derived from the engine seq, the trade's index in its command and the leg, so settling the
//!   same trade twice is `exists`, never a second movement.
//! - [`TradeFeed`]: what the journal thread hands over once a batch is durable (the
//!   trades of each command), plus the watermarks: the durable seq, the settled seq (every
//!   trade of every command up to it is on the ledger) and an overflow mark. The feed is a
//!   bounded queue that never blocks: when it is full the items are dropped and the settler
//!   re-derives them from the journal (latest snapshot at or below the settled seq, replayed).
//! - [`LedgerHub`]: the ledger handle. A settler thread cuts blocks from a bounded queue (at
//!   most `LEDGER_BLOCK_TRANSFERS_MAX` transfers, or `LEDGER_BLOCK_INTERVAL_MS` after the first
//!   waiting item), asks the compliance gate for each leg, signs each block's transfer batch
//!   once with the custodian's secp256k1 key, dry-runs it (leaving out what would fail, so no
//!   id is burnt), certifies it with the validator's Ed25519 key and commits it (durable), or,
//!   on a consortium, submits its batches and follows the chain until they are committed; then
//!   it moves the settled seq (`settled_seq` file, then memory).
//! - `LedgerSvc` and the ledger half of `Accounts` (ListTransfers, GetStatement).
//!
//! Architecture Invariant: the ledger carries pseudonymous ids (the engine account number in
//! `user_data`), amounts and hashes; never a name or an address.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::{Duration, Instant};

use hsm::{KeyAlgorithm, KeyStore, SecretBytes, Signature};
use kyc_aml::gate::decision::{Outcome, SignedDecision};
use matching_engine::journal::{self, JournalError};
use matching_engine::recovery::{JOURNAL_DIR, SNAPSHOT_DIR, SNAPSHOTS_KEPT_DEFAULT};
use matching_engine::snapshot::SnapshotStore;
use matching_engine::{Command, Engine, EngineConfig, Event, MarketConfig, MarketId};
use rempart_proto::v1 as pb;
use rempart_proto::v1::Role;
use settlement::block::{CommitCertificate, CommittedBlock, Vote, VoteSignature};
use settlement::dvp::{CODE_DVP_BASE, CODE_DVP_FEE, CODE_DVP_QUOTE, DvpTrade, FeeLeg};
use settlement::ledger::verified::SignatureCache;
use settlement::ledger::{
    AccountFlags, Batch, BatchResults, BatchSignature, CreateAccountResult, CreateTransferResult,
    GateApproval, NewAccount, Transfer, TransferEntry, TransferFlags, TransferRecord,
    batch_signing_digest,
};
use settlement::membership::{GenesisConfig, MembershipCertificate, RIGHTS_ALL, TrustedCa};
use settlement::replica::Replica;
use settlement::store::BlockStore;
use settlement::store::file::FileStore;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::auth::Caller;
use super::compliance::{Compliance, GateActivity, GateRequest, GateVerdict};
use super::consortium::{ConsortiumClient, ConsortiumOptions};
use super::core::{Core, FEE_ACCOUNT};
use super::errors::ApiReject;
use super::gateway::Gateway;
use super::hub::{ASSETS, asset_code, asset_decimals, asset_id, time_us_of, timestamp};
use super::limits::{
    CONSORTIUM_BATCH_TRANSFERS_MAX, LEDGER_BLOCK_INTERVAL_MS, LEDGER_BLOCK_TRANSFERS_MAX,
    LEDGER_DIRECT_QUEUE_DEPTH, LEDGER_FEED_DEPTH, LEDGER_GATE_RETRY_S, LEDGER_LIST_SCAN_MAX,
    LEDGER_PENDING_TRADES_MAX, LEDGER_SETTLED_WRITE_MS, LEDGER_STATEMENT_MOVEMENTS_MAX,
    LIST_TRANSFERS_DEFAULT, LIST_TRANSFERS_MAX,
};
use super::metrics::Metrics;
use super::services::caller;

/// On a consortium, how often an idle settler pulls new blocks.
const CONSORTIUM_FOLLOW_MS: u64 = 200;
/// On a consortium, when a batch that did not settle is tried again.
const CONSORTIUM_RETRY_MS: u64 = 2_000;

/// Directory of the ledger under the node's data directory.
pub const LEDGER_DIR: &str = "ledger";
/// The genesis configuration (what `rempart ledger verify` reads).
pub const GENESIS_FILE: &str = "genesis.json";
/// The settled-seq watermark file.
pub const SETTLED_FILE: &str = "settled_seq";
/// The key store holding the custodian's controller key and the validator's key.
pub const KEYS_DIR: &str = "keys";
/// Environment variable with the ledger key store's passphrase.
pub const PASSPHRASE_ENV: &str = "REMPART_LEDGER_KEYS_PASSPHRASE";
/// Passphrase used when [`PASSPHRASE_ENV`] is unset (demo and development only; a warning is
/// logged).
const DEMO_PASSPHRASE: &[u8] = b"rempart-demo-ledger-keys";

const LABEL_CUSTODIAN: &str = "ledger-custodian";
const LABEL_VALIDATOR: &str = "ledger-validator-1";
const LABEL_CA: &str = "ledger-institution-ca";
/// This node's validator id in its membership of one.
const VALIDATOR_ID: u64 = 1;
/// Chain id of a node's single-validator ledger.
const CHAIN_ID: &str = "rempart-single";
/// Institution named in the membership certificate.
const INSTITUTION: &str = "rempart-exchange";

/// Transfer kind of a deposit (high byte of its id).
pub const KIND_DEPOSIT: u8 = 1;
/// Transfer kind of a trade's base or quote leg.
pub const KIND_TRADE: u8 = 3;
/// Transfer kind of a trade's fee leg.
pub const KIND_FEE: u8 = 4;
/// Transfer code of a deposit (omnibus → customer).
pub const CODE_DEPOSIT: u16 = 1;
/// Transfer code of a withdrawal (customer → omnibus).
pub const CODE_WITHDRAWAL: u16 = 2;
/// Account code of a customer (and the fee) account.
pub const ACCOUNT_CODE_CUSTOMER: u16 = 1;
/// Account code of an asset's omnibus (issuer) account.
pub const ACCOUNT_CODE_OMNIBUS: u16 = 2;

/// Ledger account of an engine (account, asset): `(account << 16) | asset`.
pub fn ledger_account(account: u64, asset: u16) -> u128 {
    (u128::from(account) << 16) | u128::from(asset)
}

/// The engine (account, asset) of a ledger account made by [`ledger_account`], or `None` for
/// the omnibus accounts.
pub fn engine_account(id: u128) -> Option<(u64, u16)> {
    if id >> 80 != 0 {
        return None;
    }
    Some(((id >> 16) as u64, id as u16))
}

/// The omnibus account of an asset: the issuer side of deposits and withdrawals. It has no
/// balance limit, so its balance is minus what customers hold of the asset.
pub fn omnibus_account(asset: u16) -> u128 {
    (1u128 << 100) | u128::from(asset)
}

/// Transfer id of leg `leg` of the `index`-th trade of the command with engine seq `seq`.
pub fn trade_leg_id(kind: u8, seq: u64, index: u32, leg: u8) -> u128 {
    (u128::from(kind) << 120) | (u128::from(seq) << 40) | (u128::from(index) << 8) | u128::from(leg)
}

/// Transfer id of the demo's opening deposit of (account, asset): kind 1, then a marker bit
/// (112) that keeps it apart from custody's numbered deposits (kind 1 and 2, the number in the
/// low bits).
pub fn demo_deposit_id(account: u64, asset: u16) -> u128 {
    (u128::from(KIND_DEPOSIT) << 120) | (1u128 << 112) | ledger_account(account, asset)
}

/// A trade as settlement needs it: amounts in minor units, from the engine's `Trade` event and
/// its market's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SettleTrade {
    /// Engine seq of the command that made it.
    pub seq: u64,
    /// Its index among that command's trades.
    pub index: u32,
    /// Engine trade id.
    pub trade_id: u64,
    /// Engine time of the command.
    pub time_us: u64,
    pub base_asset: u16,
    pub quote_asset: u16,
    /// Base minor units from seller to buyer.
    pub base_amount: u64,
    /// Quote minor units from buyer to seller (before fees).
    pub quote_amount: u64,
    pub buyer: u64,
    pub seller: u64,
    /// Quote minor units the buyer pays to the fee account.
    pub buy_fee: u64,
    /// Quote minor units the seller pays to the fee account.
    pub sell_fee: u64,
}

/// The trades of one applied command (empty if it made none).
pub fn trades_of(
    cmd: &Command,
    events: &[Event],
    config_of: impl Fn(MarketId) -> Option<MarketConfig>,
) -> Vec<SettleTrade> {
    let mut out = Vec::new();
    for event in events {
        if let Event::Trade {
            trade_id,
            market,
            price,
            qty,
            buy_account,
            sell_account,
            buy_fee,
            sell_fee,
            ..
        } = *event
        {
            let Some(cfg) = config_of(market) else {
                // A trade always happens in a market the engine knows; the read model and the
                // replayed engine hold every market, so this is unreachable in practice.
                tracing::error!(market, trade_id, "trade in an unknown market; not settled");
                continue;
            };
            let tick_value = cfg.tick_value_quote_minor().unwrap_or(1);
            let notional = u128::from(price) * u128::from(qty) * u128::from(tick_value);
            out.push(SettleTrade {
                seq: cmd.seq,
                index: out.len() as u32,
                trade_id,
                time_us: cmd.time_us,
                base_asset: cfg.base_asset,
                quote_asset: cfg.quote_asset,
                base_amount: qty * cfg.lot_size_base_minor,
                quote_amount: notional as u64,
                buyer: buy_account,
                seller: sell_account,
                buy_fee,
                sell_fee,
            });
        }
    }
    out
}

/// The DvP legs of a trade (base, quote, then each non-zero fee), linked, with their ids, and
/// for each leg the engine account whose money it moves (the payer, asked to the gate).
pub fn trade_transfers(trade: &SettleTrade) -> Vec<(Transfer, u64)> {
    let mut fees = Vec::new();
    let mut payers = vec![trade.seller, trade.buyer];
    for (payer, amount) in [(trade.buyer, trade.buy_fee), (trade.seller, trade.sell_fee)] {
        if amount > 0 {
            fees.push(FeeLeg {
                payer_account_id: ledger_account(payer, trade.quote_asset),
                payee_account_id: ledger_account(FEE_ACCOUNT, trade.quote_asset),
                ledger: u32::from(trade.quote_asset),
                amount: u128::from(amount),
            });
            payers.push(payer);
        }
    }
    let dvp = DvpTrade {
        trade_id: u128::from(trade.trade_id),
        base_ledger: u32::from(trade.base_asset),
        quote_ledger: u32::from(trade.quote_asset),
        base_amount: u128::from(trade.base_amount),
        quote_amount: u128::from(trade.quote_amount),
        seller_base_account_id: ledger_account(trade.seller, trade.base_asset),
        seller_quote_account_id: ledger_account(trade.seller, trade.quote_asset),
        buyer_base_account_id: ledger_account(trade.buyer, trade.base_asset),
        buyer_quote_account_id: ledger_account(trade.buyer, trade.quote_asset),
        fees,
    };
    let legs = match settlement::dvp::dvp_transfers(&dvp, [0; 32]) {
        Ok(legs) => legs,
        Err(error) => {
            // Zero amounts or ids out of range cannot come from the engine (a trade moves at
            // least one lot, trade ids start at 1); log rather than settle something else.
            tracing::error!(trade_id = trade.trade_id, %error, "trade cannot become DvP legs");
            return Vec::new();
        }
    };
    legs.into_iter()
        .zip(payers)
        .enumerate()
        .map(|(leg, (mut transfer, payer))| {
            let kind = if transfer.code == CODE_DVP_FEE {
                KIND_FEE
            } else {
                KIND_TRADE
            };
            transfer.id = trade_leg_id(kind, trade.seq, trade.index, leg as u8);
            (transfer, payer)
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The feed from the journal thread
// ---------------------------------------------------------------------------------------------

/// The trades of one durable command.
#[derive(Debug, Clone)]
pub struct SettleItem {
    pub seq: u64,
    pub trades: Vec<SettleTrade>,
}

#[derive(Debug)]
struct FeedShared {
    /// Every trade of every command up to this seq is on the ledger.
    settled: AtomicU64,
    /// The last durable engine seq whose trades were handed to the feed (or dropped).
    durable: AtomicU64,
    /// Set when items were dropped; cleared by the settler before it replays the journal.
    overflow: AtomicBool,
    /// Highest seq dropped.
    dropped_upto: AtomicU64,
    /// Wakes whoever waits for the settled seq (the engine thread, before a snapshot).
    settled_lock: Mutex<()>,
    settled_cv: Condvar,
}

/// The sending side of the settlement feed, held by the engine path. Never blocks.
#[derive(Debug, Clone)]
pub struct TradeFeed {
    tx: SyncSender<SettleItem>,
    shared: Arc<FeedShared>,
}

/// The receiving side, handed to [`LedgerHub::open`].
#[derive(Debug)]
pub struct FeedReceiver {
    rx: Receiver<SettleItem>,
    shared: Arc<FeedShared>,
}

/// Makes the feed for a node whose data directory is `data_dir`: reads the settled watermark
/// (0 for a new ledger).
pub fn feed(data_dir: &Path) -> anyhow::Result<(TradeFeed, FeedReceiver)> {
    let settled = read_settled(&data_dir.join(LEDGER_DIR))?;
    let shared = Arc::new(FeedShared {
        settled: AtomicU64::new(settled),
        durable: AtomicU64::new(0),
        overflow: AtomicBool::new(false),
        dropped_upto: AtomicU64::new(0),
        settled_lock: Mutex::new(()),
        settled_cv: Condvar::new(),
    });
    let (tx, rx) = std::sync::mpsc::sync_channel(LEDGER_FEED_DEPTH);
    Ok((
        TradeFeed {
            tx,
            shared: shared.clone(),
        },
        FeedReceiver { rx, shared },
    ))
}

impl TradeFeed {
    /// Hands over the trades of a durable command. If the queue is full the item is dropped
    /// and marked: the settler re-derives it from the journal.
    pub fn publish(&self, item: SettleItem) {
        let seq = item.seq;
        if self.shared.overflow.load(Ordering::Acquire) {
            self.mark_dropped(seq);
            return;
        }
        match self.tx.try_send(item) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.mark_dropped(seq);
            }
        }
    }

    fn mark_dropped(&self, seq: u64) {
        // The seq first, then the flag: a settler that clears the flag and then reads the seq
        // either sees this seq or finds the flag set again.
        self.shared.dropped_upto.fetch_max(seq, Ordering::AcqRel);
        self.shared.overflow.store(true, Ordering::Release);
    }

    /// Every command up to `seq` is durable and its trades were handed over.
    pub fn durable(&self, seq: u64) {
        self.shared.durable.fetch_max(seq, Ordering::AcqRel);
    }

    /// Every trade of every command up to this seq is on the ledger.
    pub fn settled_seq(&self) -> u64 {
        self.shared.settled.load(Ordering::Acquire)
    }

    /// Waits at most `timeout` for the settled seq to reach `seq`; true if it did.
    pub fn wait_settled(&self, seq: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut guard = self
            .shared
            .settled_lock
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        loop {
            if self.settled_seq() >= seq {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            guard = match self.shared.settled_cv.wait_timeout(guard, deadline - now) {
                Ok((g, _)) => g,
                Err(e) => e.into_inner().0,
            };
        }
    }
}

fn read_settled(dir: &Path) -> anyhow::Result<u64> {
    let path = dir.join(SETTLED_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => text
            .trim()
            .parse()
            .map_err(|_| anyhow::anyhow!("{} is not a sequence number", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(anyhow::anyhow!("reading {}: {e}", path.display())),
    }
}

fn write_settled(dir: &Path, seq: u64) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = dir.join(format!("{SETTLED_FILE}.tmp"));
    {
        let mut f = std::fs::File::create(&tmp)?;
        writeln!(f, "{seq}")?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, dir.join(SETTLED_FILE))?;
    std::fs::File::open(dir)?.sync_all()
}

/// Replays the engine from the newest snapshot at or below `after_seq` through the journal,
/// handing `on_item` the trades of every command in `(after_seq, through_seq]`. Read-only: it
/// runs beside the live engine. Snapshots never get ahead of the settled seq (the engine thread
/// waits for it), so such a snapshot and the journal after it exist.
pub fn replay_trades(
    data_dir: &Path,
    after_seq: u64,
    through_seq: u64,
    mut on_item: impl FnMut(SettleItem) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    if through_seq <= after_seq {
        return Ok(());
    }
    let snapshots = SnapshotStore::open(&data_dir.join(SNAPSHOT_DIR), SNAPSHOTS_KEPT_DEFAULT)?;
    let mut start = None;
    for (seq, path) in snapshots.list()?.into_iter().rev() {
        if seq > after_seq {
            continue;
        }
        match import_snapshot(&path, seq) {
            Ok(engine) => {
                start = Some((engine, seq));
                break;
            }
            Err(e) => tracing::warn!(path = %path.display(), error = %e, "snapshot skipped"),
        }
    }
    let (mut engine, from) = start.unwrap_or_else(|| {
        (
            Engine::new(EngineConfig {
                fee_account: FEE_ACCOUNT,
            }),
            0,
        )
    });
    engine.set_full_invariant_checks(false);
    let mut events = Vec::with_capacity(256);
    let mut failure: Option<anyhow::Error> = None;
    journal::read_dir(&data_dir.join(JOURNAL_DIR), from, |seq, payload| {
        if seq > through_seq {
            return Ok(());
        }
        let cmd =
            matching_engine::codec::decode_command(payload).map_err(|e| JournalError::Replay {
                seq,
                what: e.to_string(),
            })?;
        events.clear();
        engine.apply(&cmd, &mut events);
        if seq > after_seq {
            let trades = trades_of(&cmd, &events, |m| engine.market_config(m).copied());
            if !trades.is_empty()
                && let Err(e) = on_item(SettleItem { seq, trades })
            {
                failure = Some(e);
                return Err(JournalError::Replay {
                    seq,
                    what: "settlement stopped".into(),
                });
            }
        }
        Ok(())
    })
    .map_err(|e| {
        failure
            .take()
            .unwrap_or_else(|| anyhow::anyhow!("journal: {e}"))
    })?;
    if engine.last_seq() < through_seq {
        anyhow::bail!(
            "journal ends at {} but commands up to {through_seq} are durable",
            engine.last_seq()
        );
    }
    Ok(())
}

fn import_snapshot(path: &Path, seq: u64) -> anyhow::Result<Engine> {
    let loaded = SnapshotStore::load(path)?;
    let state = matching_engine::codec::decode_state(&loaded.payload)
        .map_err(|e| anyhow::anyhow!("state does not decode: {e}"))?;
    if state.last_seq != seq || loaded.header.seq != seq {
        anyhow::bail!("snapshot is not at seq {seq}");
    }
    let engine = Engine::import_state(&state).map_err(|e| anyhow::anyhow!("{e}"))?;
    if engine.state_hash() != loaded.header.state_hash {
        anyhow::bail!("imported state hashes differently from the header");
    }
    Ok(engine)
}

// ---------------------------------------------------------------------------------------------
// The hub
// ---------------------------------------------------------------------------------------------

/// One movement of an engine account, in commit order.
#[derive(Debug, Clone, Copy)]
struct Movement {
    id: u128,
    time_us: u64,
    height: u64,
    asset: u16,
    /// True if it credits the account.
    credit: bool,
    amount: u128,
    /// The account's balance of `asset` after it (credits - debits, posted).
    balance_after: u128,
    code: u16,
    user_data: u128,
}

#[derive(Debug)]
struct State {
    replica: Replica<FileStore>,
    /// Engine account → its movements in commit order.
    movements: HashMap<u64, Vec<Movement>>,
    /// (engine account, asset) → balance after its last movement.
    balances: HashMap<(u64, u16), u128>,
}

impl State {
    /// Adds a transfer the ledger applied to the movements of the accounts it touched (in
    /// commit order, so each running balance follows from the previous one).
    fn index(&mut self, record: &TransferRecord) {
        for (id, credit) in [
            (record.debit_account_id, false),
            (record.credit_account_id, true),
        ] {
            let Some((account, asset)) = engine_account(id) else {
                continue;
            };
            let balance = self.balances.entry((account, asset)).or_insert(0);
            *balance = if credit {
                balance.wrapping_add(record.amount_applied)
            } else {
                balance.wrapping_sub(record.amount_applied)
            };
            let balance_after = *balance;
            self.movements.entry(account).or_default().push(Movement {
                id: record.transfer.id,
                time_us: record.timestamp_us,
                height: record.height,
                asset,
                credit,
                amount: record.amount_applied,
                balance_after,
                code: record.transfer.code,
                user_data: record.transfer.user_data,
            });
        }
    }
}

/// A deposit or withdrawal waiting for a block.
#[derive(Debug)]
struct Direct {
    transfer: Transfer,
    gate: GateApproval,
    reply: oneshot::Sender<Result<u64, Status>>,
}

#[derive(Debug)]
struct Inner {
    state: RwLock<State>,
    direct_tx: SyncSender<Direct>,
    height_tx: watch::Sender<u64>,
    feed: Arc<FeedShared>,
    stop: AtomicBool,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    gate_key: [u8; 32],
    dir: PathBuf,
}

/// The node's handle on its ledger. Cheap to clone.
#[derive(Clone, Debug)]
pub struct LedgerHub {
    inner: Arc<Inner>,
}

/// Keys the ledger uses, from the ledger's key store.
#[derive(Debug)]
struct Keys {
    store: Arc<dyn KeyStore>,
    custodian: [u8; 33],
}

/// The ledger key store's passphrase from `env`: a demo node falls back to the public demo
/// passphrase (with a warning); any other node refuses to start without one.
fn keystore_passphrase(
    demo: bool,
    env: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<SecretBytes> {
    match env(PASSPHRASE_ENV) {
        Some(v) if !v.is_empty() => Ok(SecretBytes::new(v.into_bytes())),
        _ if demo => {
            tracing::warn!(
                "{PASSPHRASE_ENV} is unset: the ledger key store uses the built-in demo \
                 passphrase (NOT FOR PRODUCTION)"
            );
            Ok(SecretBytes::new(DEMO_PASSPHRASE.to_vec()))
        }
        _ => anyhow::bail!(
            "{PASSPHRASE_ENV} must be set: it protects the ledger's custodian and validator keys"
        ),
    }
}

fn ensure_key(
    store: &dyn KeyStore,
    label: &str,
    algorithm: KeyAlgorithm,
) -> anyhow::Result<Vec<u8>> {
    match store.public_key(label) {
        Ok(key) => Ok(key.bytes),
        Err(hsm::HsmError::KeyNotFound(_)) => {
            store.generate_key(label, algorithm)?;
            Ok(store.public_key(label)?.bytes)
        }
        Err(e) => Err(e.into()),
    }
}

fn sign_ed25519(store: &dyn KeyStore, label: &str, message: &[u8]) -> anyhow::Result<[u8; 64]> {
    match store.sign(label, message)? {
        Signature::Ed25519(sig) => Ok(sig),
        Signature::Secp256k1 { .. } => anyhow::bail!("key {label} is not Ed25519"),
    }
}

fn array<const N: usize>(bytes: &[u8], what: &str) -> anyhow::Result<[u8; N]> {
    bytes
        .try_into()
        .map_err(|_| anyhow::anyhow!("{what}: {} bytes, expected {N}", bytes.len()))
}

/// Reads `dir/genesis.json`, or writes a membership of one (this node's validator, certified by
/// its institution's CA) with the gate's key when the ledger is new.
fn genesis(dir: &Path, store: &dyn KeyStore, gate_key: [u8; 32]) -> anyhow::Result<GenesisConfig> {
    let path = dir.join(GENESIS_FILE);
    let validator: [u8; 32] = array(
        &ensure_key(store, LABEL_VALIDATOR, KeyAlgorithm::Ed25519)?,
        "validator key",
    )?;
    if path.exists() {
        let text = std::fs::read_to_string(&path)
            .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
        let genesis: GenesisConfig = serde_json::from_str(&text)
            .map_err(|e| anyhow::anyhow!("parsing {}: {e}", path.display()))?;
        if !genesis.gate_keys.contains(&gate_key) {
            anyhow::bail!(
                "the compliance gate's key is not in {}: its decisions would be refused",
                path.display()
            );
        }
        let ours = genesis
            .validators
            .iter()
            .any(|v| v.validator_id == VALIDATOR_ID && v.public_key == validator);
        if !ours {
            anyhow::bail!("{} does not name this node's validator key", path.display());
        }
        return Ok(genesis);
    }
    let ca: [u8; 32] = array(
        &ensure_key(store, LABEL_CA, KeyAlgorithm::Ed25519)?,
        "CA key",
    )?;
    let signature = sign_ed25519(
        store,
        LABEL_CA,
        &MembershipCertificate::signing_bytes(VALIDATOR_ID, INSTITUTION, &validator, RIGHTS_ALL),
    )?;
    let genesis = GenesisConfig {
        chain_id: CHAIN_ID.into(),
        trusted_cas: vec![TrustedCa {
            institution: INSTITUTION.into(),
            public_key: ca,
        }],
        validators: vec![MembershipCertificate {
            validator_id: VALIDATOR_ID,
            institution: INSTITUTION.into(),
            public_key: validator,
            rights: RIGHTS_ALL,
            ca_key: ca,
            signature,
        }],
        gate_keys: vec![gate_key],
    };
    genesis.verify()?;
    write_genesis(dir, &genesis)?;
    Ok(genesis)
}

/// The consortium's genesis for the ledger in `dir`: read from the configured file, checked
/// (certificates, this node's gate key listed) and kept as `dir/genesis.json`; a ledger that
/// already belongs to another chain is refused.
fn consortium_genesis(
    dir: &Path,
    options: &ConsortiumOptions,
    gate_key: [u8; 32],
) -> anyhow::Result<GenesisConfig> {
    let file = &options.genesis_file;
    let text = std::fs::read_to_string(file)
        .map_err(|e| anyhow::anyhow!("consortium genesis {}: {e}", file.display()))?;
    let genesis: GenesisConfig = serde_json::from_str(&text)
        .map_err(|e| anyhow::anyhow!("consortium genesis {}: {e}", file.display()))?;
    genesis
        .verify()
        .map_err(|e| anyhow::anyhow!("consortium genesis {}: {e}", file.display()))?;
    if !genesis.gate_keys.contains(&gate_key) {
        anyhow::bail!(
            "the consortium genesis {} does not list this node's compliance gate key {}:              validators would refuse every transfer it settles; the consortium adds it to              gate_keys (`--print-gate-key` prints it)",
            file.display(),
            hex::encode(gate_key)
        );
    }
    let path = dir.join(GENESIS_FILE);
    if path.exists() {
        let text = std::fs::read_to_string(&path)
            .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
        let ours: GenesisConfig = serde_json::from_str(&text)
            .map_err(|e| anyhow::anyhow!("parsing {}: {e}", path.display()))?;
        if ours != genesis {
            anyhow::bail!(
                "the ledger in {} belongs to chain {:?} (its {GENESIS_FILE}), not to the                  consortium chain {:?} of {}: use another data directory",
                dir.display(),
                ours.chain_id,
                genesis.chain_id,
                file.display()
            );
        }
        return Ok(genesis);
    }
    write_genesis(dir, &genesis)?;
    Ok(genesis)
}

/// Writes `dir/genesis.json` durably (a temporary file synced, renamed, the directory synced).
fn write_genesis(dir: &Path, genesis: &GenesisConfig) -> anyhow::Result<()> {
    let tmp = dir.join(format!("{GENESIS_FILE}.tmp"));
    std::fs::write(&tmp, serde_json::to_string_pretty(genesis)?)?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, dir.join(GENESIS_FILE))?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

/// What [`LedgerHub::open`] needs.
#[derive(Debug)]
pub struct LedgerOptions {
    /// The node's data directory (the ledger lives in `<data>/ledger`).
    pub data_dir: PathBuf,
    /// The compliance gate (its key goes into the genesis; it decides every trade leg).
    pub compliance: Compliance,
    pub metrics: Metrics,
    /// Runtime the gate's futures run on.
    pub runtime: tokio::runtime::Handle,
    /// A demo node may keep its ledger keys under the public demo passphrase.
    pub demo: bool,
    /// Settle on this consortium instead of certifying blocks alone.
    pub consortium: Option<ConsortiumOptions>,
}

impl LedgerHub {
    /// Opens (or creates) the node's ledger, replays it, and starts the settler thread, which
    /// first settles the trades of every durable command after the settled seq.
    pub fn open(options: LedgerOptions, feed: FeedReceiver) -> anyhow::Result<LedgerHub> {
        let dir = options.data_dir.join(LEDGER_DIR);
        std::fs::create_dir_all(&dir)
            .map_err(|e| anyhow::anyhow!("ledger dir {}: {e}", dir.display()))?;
        let store: Arc<dyn KeyStore> = Arc::new(hsm::software::SoftwareKeyStore::open(
            dir.join(KEYS_DIR),
            &keystore_passphrase(options.demo, &|name| std::env::var(name).ok())?,
        )?);
        let gate_key = options.compliance.gate_public_key();
        let (genesis, consortium) = match &options.consortium {
            Some(c) => (
                consortium_genesis(&dir, c, gate_key)?,
                Some(Arc::new(ConsortiumClient::new(c)?)),
            ),
            None => (genesis(&dir, store.as_ref(), gate_key)?, None),
        };
        // Dry runs name a member as the block's proposer; only a single-process ledger's
        // blocks are really proposed here.
        let proposer = genesis
            .validators
            .first()
            .map(|v| v.validator_id)
            .unwrap_or(VALIDATOR_ID);
        let custodian: [u8; 33] = array(
            &ensure_key(store.as_ref(), LABEL_CUSTODIAN, KeyAlgorithm::Secp256k1)?,
            "custodian key",
        )?;
        let file_store = FileStore::open(&dir)
            .map_err(|e| anyhow::anyhow!("ledger block store {}: {e}", dir.display()))?;
        let mut replica = Replica::open(&genesis, file_store, 2)
            .map_err(|e| anyhow::anyhow!("ledger {}: {e}", dir.display()))?;
        // A gate signature the dry run verified is not verified again when the block commits
        // (here, or pulled back from the consortium): only successes are cached, so no
        // verdict can change.
        replica.use_signature_cache(Arc::new(SignatureCache::new()));
        let mut state = State {
            replica,
            movements: HashMap::new(),
            balances: HashMap::new(),
        };
        // Rebuild the per-account index from the stored blocks.
        let height = state.replica.height();
        for h in 1..=height {
            let block = state.replica.store().read(h)?;
            for batch in &block.block.batches {
                if let Batch::CreateTransfers { entries, .. } = batch {
                    for entry in entries {
                        if let Some(record) = state.replica.ledger().transfer(entry.transfer.id)
                            && record.height == h
                        {
                            let record = *record;
                            state.index(&record);
                        }
                    }
                }
            }
        }
        options.metrics.ledger_height.set(height as i64);
        tracing::info!(
            height,
            settled_seq = feed.shared.settled.load(Ordering::Acquire),
            "ledger opened"
        );
        let (direct_tx, direct_rx) = std::sync::mpsc::sync_channel(LEDGER_DIRECT_QUEUE_DEPTH);
        let (height_tx, _) = watch::channel(height);
        let inner = Arc::new(Inner {
            state: RwLock::new(state),
            direct_tx,
            height_tx,
            feed: feed.shared.clone(),
            stop: AtomicBool::new(false),
            thread: Mutex::new(None),
            gate_key,
            dir: dir.clone(),
        });
        let hub = LedgerHub { inner };
        let settler = Settler {
            hub: hub.clone(),
            data_dir: options.data_dir,
            feed_rx: feed.rx,
            direct_rx,
            keys: Keys { store, custodian },
            compliance: options.compliance,
            metrics: options.metrics,
            runtime: options.runtime,
            pending: BTreeMap::new(),
            blocked: BTreeMap::new(),
            direct: Vec::new(),
            safe_seq: hub.inner.feed.settled.load(Ordering::Acquire),
            first_waiting: None,
            last_settled_write: None,
            consortium,
            proposer,
            last_sync: None,
            block_transfers_max: LEDGER_BLOCK_TRANSFERS_MAX,
            batches_sized: false,
        };
        let thread = std::thread::Builder::new()
            .name("settler".into())
            .spawn(move || settler.run())?;
        *hub.inner.thread.lock().unwrap_or_else(|e| e.into_inner()) = Some(thread);
        Ok(hub)
    }

    /// Omnibus → customer, after an approved gate decision. Idempotent on `transfer_id`.
    pub async fn settle_deposit(
        &self,
        transfer_id: u128,
        account: u64,
        asset: u16,
        amount: u64,
        decision: &SignedDecision,
    ) -> Result<u64, Status> {
        self.settle_direct(
            transfer_id,
            omnibus_account(asset),
            ledger_account(account, asset),
            asset,
            amount,
            CODE_DEPOSIT,
            decision,
        )
        .await
    }

    /// Customer → omnibus (the coins left custody). Idempotent on `transfer_id`.
    pub async fn settle_withdrawal(
        &self,
        transfer_id: u128,
        account: u64,
        asset: u16,
        amount: u64,
        decision: &SignedDecision,
    ) -> Result<u64, Status> {
        self.settle_direct(
            transfer_id,
            ledger_account(account, asset),
            omnibus_account(asset),
            asset,
            amount,
            CODE_WITHDRAWAL,
            decision,
        )
        .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn settle_direct(
        &self,
        transfer_id: u128,
        debit: u128,
        credit: u128,
        asset: u16,
        amount: u64,
        code: u16,
        decision: &SignedDecision,
    ) -> Result<u64, Status> {
        if asset_code(asset).is_none() {
            return Err(ApiReject::InvalidField.status("asset", "unknown asset"));
        }
        if amount == 0 {
            return Err(ApiReject::InvalidField.status("amount", "must be positive"));
        }
        if transfer_id == 0 || transfer_id == u128::MAX {
            return Err(ApiReject::InvalidField.status("transfer_id", "0 and 2^128-1 are reserved"));
        }
        if decision.outcome != Outcome::Approve || decision.transfer_id != transfer_id {
            return Err(ApiReject::LedgerRefused.status(
                "decision",
                "the gate decision is not an approval of this transfer",
            ));
        }
        let transfer = Transfer {
            id: transfer_id,
            debit_account_id: debit,
            credit_account_id: credit,
            amount: u128::from(amount),
            pending_id: 0,
            user_data: transfer_id,
            timeout_s: 0,
            ledger: u32::from(asset),
            code,
            flags: TransferFlags(0),
            decision_hash: decision.hash,
        };
        let gate = GateApproval {
            gate_key: self.inner.gate_key,
            signature: decision.signature,
        };
        let (reply, rx) = oneshot::channel();
        match self.inner.direct_tx.try_send(Direct {
            transfer,
            gate,
            reply,
        }) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                return Err(ApiReject::LedgerBusy.status("", "settlement queue full"));
            }
            Err(TrySendError::Disconnected(_)) => {
                return Err(ApiReject::LedgerStopped.status("", "the settler stopped"));
            }
        }
        rx.await
            .map_err(|_| ApiReject::LedgerStopped.status("", "the settler stopped"))?
    }

    /// Puts the demo's opening deposits on the ledger (omnibus → customer, each approved by
    /// the gate), so that ledger balances equal the engine's from the start. Idempotent: a
    /// deposit already on the ledger is skipped.
    pub async fn seed_demo_deposits(
        &self,
        compliance: &Compliance,
        deposits: &[(u64, u16, u64)],
    ) -> anyhow::Result<()> {
        for &(account, asset, amount) in deposits {
            let id = demo_deposit_id(account, asset);
            if self.transfer(id).is_some() {
                continue;
            }
            let verdict = compliance
                .check(GateRequest {
                    transfer_id: id,
                    activity: GateActivity::Deposit,
                    account,
                    asset,
                    amount,
                    counterparty: None,
                    time_us: Core::now_us(),
                })
                .await
                .map_err(|s| anyhow::anyhow!("gate for demo deposit: {}", s.message()))?;
            match verdict {
                GateVerdict::Approved(decision) => {
                    self.settle_deposit(id, account, asset, amount, &decision)
                        .await
                        .map_err(|s| {
                            anyhow::anyhow!("demo deposit on the ledger: {}", s.message())
                        })?;
                }
                GateVerdict::Held { case_id, reason } => {
                    anyhow::bail!("the gate held demo deposit {id} (case {case_id}): {reason}")
                }
                GateVerdict::Rejected { code, reason } => {
                    anyhow::bail!("the gate rejected demo deposit {id} ({code}): {reason}")
                }
            }
        }
        Ok(())
    }

    /// Every trade of every command up to this engine seq is on the ledger.
    pub fn settled_seq(&self) -> u64 {
        self.inner.feed.settled.load(Ordering::Acquire)
    }

    /// Waits (at most `timeout`) until every durable command's trades are settled.
    pub async fn drain(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let durable = self.inner.feed.durable.load(Ordering::Acquire);
            if self.settled_seq() >= durable {
                return true;
            }
            if Instant::now() >= deadline {
                tracing::warn!(
                    durable,
                    settled = self.settled_seq(),
                    "settlement did not catch up before shutdown; the next start settles the rest"
                );
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Stops the settler thread (after [`LedgerHub::drain`] and the engine's stop).
    pub async fn stop(&self) {
        self.inner.stop.store(true, Ordering::Release);
        let thread = self
            .inner
            .thread
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(t) = thread {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
    }

    fn committed(&self, height: u64) -> Result<CommittedBlock, Status> {
        let state = self.inner.state.read().unwrap_or_else(|e| e.into_inner());
        if height == 0 || height > state.replica.height() {
            return Err(ApiReject::LedgerUnknownBlock.status("height", ""));
        }
        state.replica.store().read(height).map_err(|e| {
            tracing::error!(height, error = %e, "reading a ledger block");
            ApiReject::Internal.status("", "reading the block store")
        })
    }

    /// The replica's committed height.
    fn height(&self) -> u64 {
        let state = self.inner.state.read().unwrap_or_else(|e| e.into_inner());
        state.replica.height()
    }

    fn transfer(&self, id: u128) -> Option<TransferRecord> {
        let state = self.inner.state.read().unwrap_or_else(|e| e.into_inner());
        state.replica.ledger().transfer(id).copied()
    }
}

// ---------------------------------------------------------------------------------------------
// The settler thread
// ---------------------------------------------------------------------------------------------

/// A trade waiting for a block, keyed by (seq, index).
type TradeKey = (u64, u32);
/// A trade with its legs and, for each leg, the engine account that pays.
type TradeLegs = (TradeKey, SettleTrade, Vec<(Transfer, u64)>);
/// The gate's answer for one trade: (decision hash, approval) per leg, or why not.
type GateAnswer = Result<Vec<([u8; 32], GateApproval)>, String>;

#[derive(Debug)]
struct Settler {
    hub: LedgerHub,
    data_dir: PathBuf,
    feed_rx: Receiver<SettleItem>,
    direct_rx: Receiver<Direct>,
    keys: Keys,
    compliance: Compliance,
    metrics: Metrics,
    runtime: tokio::runtime::Handle,
    pending: BTreeMap<TradeKey, SettleTrade>,
    /// Trades the gate did not approve (held or rejected), retried later; the settled seq
    /// cannot pass them.
    blocked: BTreeMap<TradeKey, (SettleTrade, Instant)>,
    direct: Vec<Direct>,
    /// Every trade up to this seq was received (pending, blocked or settled).
    safe_seq: u64,
    first_waiting: Option<Instant>,
    last_settled_write: Option<Instant>,
    /// The consortium's validators, when the node settles on a consortium.
    consortium: Option<Arc<ConsortiumClient>>,
    /// The validator named as proposer in dry runs.
    proposer: u64,
    /// When the replica last pulled the consortium's new blocks.
    last_sync: Option<Instant>,
    /// Transfers per block (single process) or per submitted batch (consortium: sized to the
    /// validators' `block_entries_max` once one answers).
    block_transfers_max: usize,
    /// Consortium mode: `block_transfers_max` follows the validators' answer already.
    batches_sized: bool,
}

/// What one entry of a block's transfer batch belongs to.
#[derive(Debug, Clone, Copy)]
enum Owner {
    Direct(usize),
    Trade(TradeKey),
}

impl Settler {
    fn run(mut self) {
        let shared = self.hub.inner.feed.clone();
        // Everything durable at start (recovered by the engine) whose trades may not be on the
        // ledger yet is re-derived from the journal.
        let settled = shared.settled.load(Ordering::Acquire);
        let durable = shared.durable.load(Ordering::Acquire);
        if durable > settled {
            shared.dropped_upto.fetch_max(durable, Ordering::AcqRel);
            shared.overflow.store(true, Ordering::Release);
        }
        let mut retry_at = Instant::now();
        loop {
            if self.hub.inner.stop.load(Ordering::Acquire) {
                break;
            }
            if let Err(e) = self.step(&shared, &mut retry_at) {
                tracing::error!(error = %e, "settlement failed; retrying in 1 s");
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        for d in self.direct.drain(..) {
            let _ = d.reply.send(Err(
                ApiReject::LedgerStopped.status("", "the node is stopping")
            ));
        }
    }

    fn step(&mut self, shared: &FeedShared, retry_at: &mut Instant) -> anyhow::Result<()> {
        // 1. Dropped items: re-derive them from the journal.
        if Instant::now() >= *retry_at && shared.overflow.swap(false, Ordering::AcqRel) {
            let target = shared.dropped_upto.load(Ordering::Acquire);
            let after = shared.settled.load(Ordering::Acquire);
            if let Err(e) = self.catch_up(after, target) {
                shared.overflow.store(true, Ordering::Release);
                *retry_at = Instant::now() + Duration::from_secs(1);
                return Err(e);
            }
        }
        // 2. Read the durable mark, then drain the feed: every item up to the mark is now here,
        // unless something was dropped meanwhile.
        let durable = shared.durable.load(Ordering::Acquire);
        match self
            .direct_rx
            .recv_timeout(Duration::from_millis(LEDGER_BLOCK_INTERVAL_MS / 2 + 1))
        {
            Ok(d) => self.push_direct(d),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {}
        }
        while self.direct.len() < self.block_transfers_max {
            match self.direct_rx.try_recv() {
                Ok(d) => self.push_direct(d),
                Err(_) => break,
            }
        }
        let mut drained_all = false;
        while self.pending.len() < LEDGER_PENDING_TRADES_MAX {
            match self.feed_rx.try_recv() {
                Ok(item) => self.push_item(item),
                Err(_) => {
                    drained_all = true;
                    break;
                }
            }
        }
        if drained_all && !shared.overflow.load(Ordering::Acquire) {
            self.safe_seq = self.safe_seq.max(durable);
        }
        // 3. Retry blocked trades whose time has come.
        let now = Instant::now();
        let due: Vec<TradeKey> = self
            .blocked
            .iter()
            .filter(|(_, (_, at))| *at <= now)
            .map(|(k, _)| *k)
            .collect();
        for key in due {
            if let Some((trade, _)) = self.blocked.remove(&key) {
                self.pending.insert(key, trade);
                self.first_waiting.get_or_insert(now);
            }
        }
        // 4. Cut blocks while due.
        while self.block_due() {
            self.cut_block()?;
        }
        self.publish_settled(shared)?;
        // 5. On a consortium, follow the chain (other custodians' blocks too) when idle.
        if self.consortium.is_some()
            && self
                .last_sync
                .is_none_or(|t| t.elapsed() >= Duration::from_millis(CONSORTIUM_FOLLOW_MS))
        {
            self.last_sync = Some(Instant::now());
            self.sync()?;
        }
        Ok(())
    }

    fn push_direct(&mut self, d: Direct) {
        self.first_waiting.get_or_insert_with(Instant::now);
        self.direct.push(d);
    }

    fn push_item(&mut self, item: SettleItem) {
        if item.seq <= self.hub.inner.feed.settled.load(Ordering::Acquire) {
            return;
        }
        for trade in item.trades {
            let key = (trade.seq, trade.index);
            if !self.blocked.contains_key(&key) {
                self.pending.insert(key, trade);
            }
        }
        self.first_waiting.get_or_insert_with(Instant::now);
    }

    fn waiting_transfers(&self) -> usize {
        self.direct.len() + self.pending.len() * 2
    }

    fn block_due(&self) -> bool {
        if self.direct.is_empty() && self.pending.is_empty() {
            return false;
        }
        self.waiting_transfers() >= self.block_transfers_max
            || self
                .first_waiting
                .is_some_and(|t| t.elapsed() >= Duration::from_millis(LEDGER_BLOCK_INTERVAL_MS))
    }

    fn catch_up(&mut self, after: u64, target: u64) -> anyhow::Result<()> {
        if target <= after {
            return Ok(());
        }
        tracing::info!(after, target, "settling trades from the journal");
        let data_dir = self.data_dir.clone();
        replay_trades(&data_dir, after, target, |item| {
            self.push_item(item);
            while self.pending.len() >= LEDGER_PENDING_TRADES_MAX {
                self.cut_block()?;
            }
            Ok(())
        })?;
        self.safe_seq = self.safe_seq.max(target);
        Ok(())
    }

    /// Moves the settled seq to the highest seq below every trade still waiting.
    fn publish_settled(&mut self, shared: &FeedShared) -> anyhow::Result<()> {
        let mut settled = self.safe_seq;
        if let Some(((seq, _), _)) = self.pending.first_key_value() {
            settled = settled.min(seq - 1);
        }
        if let Some(((seq, _), _)) = self.blocked.first_key_value() {
            settled = settled.min(seq - 1);
        }
        let previous = shared.settled.load(Ordering::Acquire);
        let durable = shared.durable.load(Ordering::Acquire);
        // The watermark is published only once persisted, and persisted at most every
        // `LEDGER_SETTLED_WRITE_MS` (a lagging file only means more `exists` after a crash).
        if settled > previous
            && self
                .last_settled_write
                .is_none_or(|t| t.elapsed() >= Duration::from_millis(LEDGER_SETTLED_WRITE_MS))
        {
            write_settled(&self.hub.inner.dir, settled)?;
            self.last_settled_write = Some(Instant::now());
            {
                let _guard = shared
                    .settled_lock
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                shared.settled.store(settled, Ordering::Release);
            }
            shared.settled_cv.notify_all();
        }
        let settled = settled.max(previous);
        self.metrics
            .settlement_lag_seq
            .set(durable.saturating_sub(settled) as i64);
        let oldest = self
            .pending
            .values()
            .next()
            .map(|t| t.time_us)
            .into_iter()
            .chain(self.blocked.values().next().map(|(t, _)| t.time_us))
            .min();
        let lag_s = oldest
            .map(|t| Core::now_us().saturating_sub(t) as f64 / 1e6)
            .unwrap_or(0.0);
        self.metrics.settlement_lag_seconds.set(lag_s);
        self.metrics
            .settlement_blocked_trades
            .set(self.blocked.len() as i64);
        Ok(())
    }

    /// Builds, gates, signs, dry-runs, certifies and commits one block.
    fn cut_block(&mut self) -> anyhow::Result<()> {
        if self.consortium.is_some() {
            // What is already on the chain must be known before deciding what to submit.
            self.sync()?;
        }
        let take = self.direct.len().min(self.block_transfers_max);
        let directs: Vec<Direct> = self.direct.drain(..take).collect();
        let mut budget = self.block_transfers_max - take;
        let mut trades: Vec<TradeLegs> = Vec::new();
        while let Some((&key, &trade)) = self.pending.first_key_value() {
            let legs = trade_transfers(&trade);
            // Already on the ledger (settled before a crash moved the watermark): a linked
            // chain submitted again would not be `exists` but fail as a whole.
            if legs
                .first()
                .is_some_and(|(leg, _)| self.hub.transfer(leg.id).is_some())
            {
                self.pending.remove(&key);
                continue;
            }
            if legs.len() > budget {
                break;
            }
            budget -= legs.len();
            self.pending.remove(&key);
            if legs.is_empty() {
                continue;
            }
            trades.push((key, trade, legs));
        }
        self.first_waiting = if self.direct.is_empty() && self.pending.is_empty() {
            None
        } else {
            Some(Instant::now())
        };
        // The gate decides every trade leg (deposits and withdrawals come decided).
        let approvals = self.gate(&trades)?;
        let mut entries: Vec<(TransferEntry, Owner)> = Vec::new();
        for (i, d) in directs.iter().enumerate() {
            entries.push((
                TransferEntry {
                    transfer: d.transfer,
                    gate: Some(d.gate),
                    signature: None,
                },
                Owner::Direct(i),
            ));
        }
        let now = Instant::now();
        for ((key, trade, legs), approval) in trades.iter().zip(approvals) {
            match approval {
                Ok(gates) => {
                    for ((transfer, _), (hash, gate)) in legs.iter().zip(gates) {
                        let mut transfer = *transfer;
                        transfer.decision_hash = hash;
                        entries.push((
                            TransferEntry {
                                transfer,
                                gate: Some(gate),
                                signature: None,
                            },
                            Owner::Trade(*key),
                        ));
                    }
                }
                Err(reason) => {
                    tracing::warn!(
                        seq = key.0,
                        trade_id = trade.trade_id,
                        reason,
                        "trade not approved by the gate; settlement retried later"
                    );
                    self.blocked.insert(
                        *key,
                        (*trade, now + Duration::from_secs(LEDGER_GATE_RETRY_S)),
                    );
                }
            }
        }
        let mut replies: Vec<Option<Result<u64, Status>>> = directs.iter().map(|_| None).collect();
        // Propose; leave out whatever would fail (so no id is marked failed), then commit.
        let committed = loop {
            if entries.is_empty() {
                break None;
            }
            let (block, outcome, owners) = self.propose(&entries)?;
            let mut failed_direct = Vec::new();
            let mut failed_trades = Vec::new();
            for results in &outcome.results {
                match results {
                    BatchResults::Accounts(results) => {
                        for r in results {
                            if !matches!(r, CreateAccountResult::Ok | CreateAccountResult::Exists) {
                                anyhow::bail!(
                                    "the ledger refused to open an account: {}",
                                    r.message()
                                );
                            }
                        }
                    }
                    BatchResults::Transfers(results) => {
                        for (owner, r) in owners.iter().zip(results) {
                            if is_settled(*r) {
                                continue;
                            }
                            match owner {
                                Owner::Direct(i) => failed_direct.push((*i, *r)),
                                Owner::Trade(k) => failed_trades.push((*k, *r)),
                            }
                        }
                    }
                }
            }
            if failed_direct.is_empty() && failed_trades.is_empty() {
                break Some((block, owners));
            }
            for (i, r) in failed_direct {
                replies[i] = Some(Err(ApiReject::LedgerRefused
                    .status("", &format!("ledger result {} ({})", r.code(), r.message()))));
                entries.retain(|(_, o)| !matches!(o, Owner::Direct(j) if *j == i));
            }
            for (k, r) in failed_trades {
                if entries
                    .iter()
                    .any(|(_, o)| matches!(o, Owner::Trade(x) if *x == k))
                {
                    if let Some((_, trade, _)) = trades.iter().find(|(key, _, _)| *key == k) {
                        tracing::error!(
                            seq = k.0,
                            trade_id = trade.trade_id,
                            code = r.code(),
                            result = r.message(),
                            "a trade would fail on the ledger; left out and retried later"
                        );
                        self.blocked
                            .insert(k, (*trade, now + Duration::from_secs(LEDGER_GATE_RETRY_S)));
                    }
                    entries.retain(|(_, o)| !matches!(o, Owner::Trade(x) if *x == k));
                }
            }
        };
        if let Some((block, _)) = committed {
            let submitted = if self.consortium.is_some() {
                match self.submit(block) {
                    Ok(height) => Some(height),
                    Err(error) => {
                        // Nothing is lost: the trades wait and are submitted again (settling
                        // twice is `exists`), the callers of deposits and withdrawals are
                        // told and may retry with the same id.
                        tracing::error!(%error, "the consortium did not settle a batch; retried");
                        let retry = now + Duration::from_millis(CONSORTIUM_RETRY_MS);
                        for (key, trade, _) in &trades {
                            if entries
                                .iter()
                                .any(|(_, o)| matches!(o, Owner::Trade(x) if x == key))
                            {
                                self.blocked.insert(*key, (*trade, retry));
                            }
                        }
                        for (e, o) in &entries {
                            if let Owner::Direct(j) = o
                                && replies[*j].is_none()
                            {
                                replies[*j] = Some(Err(ApiReject::LedgerBusy.status(
                                    "",
                                    &format!(
                                        "transfer {} not settled on the consortium yet: {error}",
                                        e.transfer.id
                                    ),
                                )));
                            }
                        }
                        None
                    }
                }
            } else {
                Some(self.commit(block)?)
            };
            if let Some(height) = submitted {
                // On a consortium, the ledger may still refuse what the dry run accepted (its
                // state moved): such trades wait and are retried, such deposits are refused.
                for (key, trade, legs) in &trades {
                    let included = entries
                        .iter()
                        .any(|(_, o)| matches!(o, Owner::Trade(x) if x == key));
                    if included
                        && legs
                            .iter()
                            .any(|(leg, _)| self.hub.transfer(leg.id).is_none())
                    {
                        tracing::error!(
                            seq = key.0,
                            trade_id = trade.trade_id,
                            "a trade was not settled by the ledger; retried later"
                        );
                        self.blocked.insert(
                            *key,
                            (*trade, now + Duration::from_secs(LEDGER_GATE_RETRY_S)),
                        );
                    }
                }
                for (e, o) in &entries {
                    if let Owner::Direct(j) = o
                        && replies[*j].is_none()
                        && self.hub.transfer(e.transfer.id).is_none()
                    {
                        replies[*j] = Some(Err(ApiReject::LedgerRefused
                            .status("", "the consortium ledger did not settle the transfer")));
                    }
                }
                for (e, o) in &entries {
                    if let Owner::Direct(j) = o
                        && replies[*j].is_none()
                    {
                        let h = self
                            .hub
                            .transfer(e.transfer.id)
                            .map(|r| r.height)
                            .unwrap_or(height);
                        replies[*j] = Some(Ok(h));
                    }
                }
            }
        }
        for (d, reply) in directs.into_iter().zip(replies) {
            let _ = d.reply.send(reply.unwrap_or_else(|| {
                Err(ApiReject::Internal.status("", "transfer left out of the block"))
            }));
        }
        Ok(())
    }

    /// Asks the gate about every leg of every trade, concurrently on the runtime. Per trade:
    /// the (decision hash, approval) of each leg, or why it is not approved.
    fn gate(&self, trades: &[TradeLegs]) -> anyhow::Result<Vec<GateAnswer>> {
        if trades.is_empty() {
            return Ok(Vec::new());
        }
        let gate_key = self.hub.inner.gate_key;
        let mut requests = Vec::new();
        for (_, trade, legs) in trades {
            for (transfer, payer) in legs {
                requests.push(GateRequest {
                    transfer_id: transfer.id,
                    activity: GateActivity::Trade,
                    account: *payer,
                    asset: transfer.ledger as u16,
                    amount: transfer.amount as u64,
                    counterparty: None,
                    time_us: trade.time_us,
                });
            }
        }
        let compliance = self.compliance.clone();
        let verdicts = self.runtime.block_on(async move {
            let mut set = tokio::task::JoinSet::new();
            for (i, req) in requests.into_iter().enumerate() {
                let compliance = compliance.clone();
                set.spawn(async move { (i, compliance.check(req).await) });
            }
            let mut out = Vec::new();
            while let Some(joined) = set.join_next().await {
                out.push(joined.map_err(|e| anyhow::anyhow!("gate task: {e}"))?);
            }
            out.sort_by_key(|(i, _)| *i);
            anyhow::Ok(out)
        })?;
        let mut verdicts = verdicts.into_iter();
        let mut out = Vec::new();
        for (_, _, legs) in trades {
            let mut approvals = Vec::new();
            let mut refusal = None;
            for (transfer, _) in legs {
                let Some((_, verdict)) = verdicts.next() else {
                    anyhow::bail!("the gate answered fewer legs than asked");
                };
                match verdict {
                    Ok(GateVerdict::Approved(decision))
                        if decision.outcome == Outcome::Approve
                            && decision.transfer_id == transfer.id =>
                    {
                        approvals.push((
                            decision.hash,
                            GateApproval {
                                gate_key,
                                signature: decision.signature,
                            },
                        ));
                    }
                    Ok(GateVerdict::Approved(_)) => {
                        refusal.get_or_insert_with(|| "approval for another transfer".to_string());
                    }
                    Ok(GateVerdict::Held { case_id, reason }) => {
                        refusal.get_or_insert_with(|| format!("held (case {case_id}): {reason}"));
                    }
                    Ok(GateVerdict::Rejected { code, reason }) => {
                        refusal.get_or_insert_with(|| format!("rejected ({code}): {reason}"));
                    }
                    Err(status) => {
                        refusal.get_or_insert_with(|| {
                            format!("gate unavailable: {}", status.message())
                        });
                    }
                }
            }
            out.push(match refusal {
                None => Ok(approvals),
                Some(r) => Err(r),
            });
        }
        Ok(out)
    }

    /// The block for `entries` (accounts to open first), signed once by the custodian, with
    /// the dry-run outcome and the owner of each transfer entry.
    fn propose(
        &mut self,
        entries: &[(TransferEntry, Owner)],
    ) -> anyhow::Result<(
        settlement::block::Block,
        settlement::ledger::BlockOutcome,
        Vec<Owner>,
    )> {
        let mut state = self
            .hub
            .inner
            .state
            .write()
            .unwrap_or_else(|e| e.into_inner());
        let mut new_accounts: Vec<NewAccount> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (entry, _) in entries {
            for id in [
                entry.transfer.debit_account_id,
                entry.transfer.credit_account_id,
            ] {
                if state.replica.ledger().account(id).is_none() && seen.insert(id) {
                    new_accounts.push(self.new_account(id, entry.transfer.ledger));
                }
            }
        }
        let mut batches = Vec::new();
        if !new_accounts.is_empty() {
            batches.push(Batch::CreateAccounts(new_accounts));
        }
        let transfers: Vec<Transfer> = entries.iter().map(|(e, _)| e.transfer).collect();
        if !transfers.is_empty() {
            let digest = batch_signing_digest(&self.keys.custodian, &transfers);
            let signature = match self.keys.store.sign(LABEL_CUSTODIAN, &digest)? {
                Signature::Secp256k1 { rs, .. } => rs,
                Signature::Ed25519(_) => anyhow::bail!("the custodian key is not secp256k1"),
            };
            batches.push(Batch::CreateTransfers {
                entries: entries.iter().map(|(e, _)| *e).collect(),
                batch_signature: Some(BatchSignature {
                    signer: self.keys.custodian,
                    signature,
                }),
            });
        }
        let timestamp_us = Core::now_us().max(state.replica.ledger().timestamp_us() + 1);
        let (block, outcome) =
            state
                .replica
                .propose_with_outcome(self.proposer, timestamp_us, batches)?;
        let owners = entries.iter().map(|(_, o)| *o).collect();
        Ok((block, outcome, owners))
    }

    fn new_account(&self, id: u128, ledger: u32) -> NewAccount {
        match engine_account(id) {
            Some((account, _)) => NewAccount {
                id,
                user_data: u128::from(account),
                ledger,
                code: ACCOUNT_CODE_CUSTOMER,
                flags: AccountFlags(AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS),
                controller: self.keys.custodian,
            },
            None => NewAccount {
                id,
                user_data: 0,
                ledger,
                code: ACCOUNT_CODE_OMNIBUS,
                flags: AccountFlags(0),
                controller: self.keys.custodian,
            },
        }
    }

    /// Certifies the block with the validator's key (a membership of one: one signature is
    /// the quorum) and commits it: checked, applied, stored durably. Returns its height.
    fn commit(&mut self, block: settlement::block::Block) -> anyhow::Result<u64> {
        let height = block.header.height;
        let vote = Vote {
            height,
            round: 0,
            block_hash: block.hash(),
        };
        let signature = sign_ed25519(
            self.keys.store.as_ref(),
            LABEL_VALIDATOR,
            &vote.signing_bytes(),
        )?;
        let committed = CommittedBlock {
            block,
            certificate: CommitCertificate {
                vote,
                signatures: vec![VoteSignature {
                    validator: VALIDATOR_ID,
                    signature,
                }],
            },
        };
        self.apply_committed(committed)
    }

    /// Commits a certified block into the replica (which checks its chain link, certificate and
    /// execution) and indexes its transfers. Returns its height.
    fn apply_committed(&mut self, committed: CommittedBlock) -> anyhow::Result<u64> {
        let height = committed.block.header.height;
        let mut state = self
            .hub
            .inner
            .state
            .write()
            .unwrap_or_else(|e| e.into_inner());
        let outcome = state.replica.commit(committed)?;
        let mut created = 0u64;
        for record in &outcome.effects.transfers {
            if record.height == height {
                state.index(record);
                created += 1;
            }
        }
        drop(state);
        self.metrics.ledger_height.set(height as i64);
        self.metrics.settled_transfers.inc_by(created);
        self.hub.inner.height_tx.send_replace(height);
        Ok(height)
    }

    /// Consortium mode: submits the block's batches (accounts first) to the validators, then
    /// follows the chain to the height the committing validator reported, so that every
    /// transfer's final result is in the replica. Returns the replica's height.
    fn submit(&mut self, block: settlement::block::Block) -> anyhow::Result<u64> {
        let Some(client) = self.consortium.clone() else {
            anyhow::bail!("not on a consortium");
        };
        let started = Instant::now();
        let outcome = self.submit_and_follow(&client, block);
        let label = if outcome.is_ok() {
            self.metrics
                .consortium_commit_seconds
                .observe(started.elapsed().as_secs_f64());
            "committed"
        } else {
            "failed"
        };
        self.metrics
            .consortium_batches
            .with_label_values(&[label])
            .inc();
        outcome
    }

    fn submit_and_follow(
        &mut self,
        client: &ConsortiumClient,
        block: settlement::block::Block,
    ) -> anyhow::Result<u64> {
        let mut accounts = Vec::new();
        let mut transfers = Vec::new();
        for batch in &block.batches {
            self.runtime.block_on(client.submit(batch))?;
            match batch {
                Batch::CreateAccounts(new) => accounts.extend(new.iter().map(|a| a.id)),
                Batch::CreateTransfers { entries, .. } => {
                    transfers.extend(entries.iter().map(|e| e.transfer.id));
                }
            }
        }
        // Validators' answers are hints; the batch counts as settled once the verified chain
        // carries each of its accounts and each transfer's final result (on the ledger, or
        // failed).
        let deadline = Instant::now() + super::consortium::SUBMIT_DEADLINE;
        loop {
            // A validator that cannot serve (or serves a block that does not verify) is passed
            // over by the next pull; the batch is committed already and must not be failed.
            let height = match self.sync() {
                Ok(height) => height,
                Err(error) if Instant::now() < deadline => {
                    tracing::warn!(%error, "following the consortium; retrying");
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
                Err(error) => return Err(error),
            };
            let carried = {
                let state = self
                    .hub
                    .inner
                    .state
                    .read()
                    .unwrap_or_else(|e| e.into_inner());
                let ledger = state.replica.ledger();
                accounts.iter().all(|id| ledger.account(*id).is_some())
                    && transfers
                        .iter()
                        .all(|id| ledger.transfer(*id).is_some() || ledger.failure(*id).is_some())
            };
            if carried {
                return Ok(height);
            }
            if Instant::now() >= deadline {
                anyhow::bail!(
                    "validators answered committed, but the verified chain (height {height}) \
                     does not carry the batch"
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Consortium mode: pulls and commits the consortium's blocks after the replica's height
    /// until the validator asked has no more. Returns the replica's height.
    fn sync(&mut self) -> anyhow::Result<u64> {
        let Some(client) = self.consortium.clone() else {
            return Ok(self.hub.height());
        };
        if !self.batches_sized
            && let Some(max) = self.runtime.block_on(client.block_entries_max())
        {
            self.block_transfers_max = max.clamp(1, CONSORTIUM_BATCH_TRANSFERS_MAX);
            self.batches_sized = true;
            tracing::info!(
                batch_transfers_max = self.block_transfers_max,
                "sized consortium batches to the validators' blocks"
            );
        }
        loop {
            let from = self.hub.height() + 1;
            let served = self.runtime.block_on(client.blocks(from))?;
            let (got, their_height) = (served.blocks.len(), served.height);
            for committed in served.blocks {
                let height = committed.block.header.height;
                if let Err(e) = self.apply_committed(committed) {
                    // Only a faulty validator serves such a block: ask another one next.
                    client.distrust(served.validator);
                    self.metrics.consortium_bad_blocks.inc();
                    anyhow::bail!(
                        "a block pulled from the consortium at height {height} does not verify: {e}"
                    );
                }
            }
            let height = self.hub.height();
            if got == 0 || height >= their_height {
                return Ok(height);
            }
        }
    }
}

/// True if a transfer result leaves the transfer on the ledger (new or already there).
fn is_settled(r: CreateTransferResult) -> bool {
    matches!(r, CreateTransferResult::Ok | CreateTransferResult::Exists)
}

// ---------------------------------------------------------------------------------------------
// gRPC: the Ledger service and the ledger half of Accounts
// ---------------------------------------------------------------------------------------------

const LEDGER_READERS: &[Role] = &[Role::Admin, Role::Regulator];

/// Canonical decimal text of `minor` units with `decimals` places.
pub fn minor_to_decimal(minor: u128, decimals: u8, negative: bool) -> String {
    let digits = minor.to_string();
    let d = usize::from(decimals);
    let (int, frac) = if digits.len() > d {
        let (i, f) = digits.split_at(digits.len() - d);
        (i.to_string(), f.to_string())
    } else {
        ("0".to_string(), format!("{digits:0>d$}"))
    };
    let frac = frac.trim_end_matches('0');
    let sign = if negative && minor != 0 { "-" } else { "" };
    if frac.is_empty() {
        format!("{sign}{int}")
    } else {
        format!("{sign}{int}.{frac}")
    }
}

fn asset_text(ledger: u32) -> String {
    u16::try_from(ledger)
        .ok()
        .and_then(asset_code)
        .map(str::to_string)
        .unwrap_or_else(|| ledger.to_string())
}

fn amount_text(amount: u128, ledger: u32, negative: bool) -> String {
    let decimals = u16::try_from(ledger)
        .ok()
        .and_then(asset_decimals)
        .unwrap_or(0);
    minor_to_decimal(amount, decimals, negative)
}

/// The id of the chain a transfer belongs to: a trade's legs share their base leg's id.
fn linked_id(transfer: &Transfer) -> String {
    match transfer.code {
        CODE_DVP_BASE | CODE_DVP_QUOTE | CODE_DVP_FEE => {
            let chain = (transfer.id & !((1u128 << 8) - 1) & ((1u128 << 120) - 1))
                | (u128::from(KIND_TRADE) << 120);
            chain.to_string()
        }
        _ => String::new(),
    }
}

fn ledger_transfer_pb(record: &TransferRecord) -> pb::LedgerTransfer {
    let t = &record.transfer;
    pb::LedgerTransfer {
        transfer_id: t.id.to_string(),
        debit_account: record.debit_account_id.to_string(),
        credit_account: record.credit_account_id.to_string(),
        asset: asset_text(t.ledger),
        amount: amount_text(record.amount_applied, t.ledger, false),
        linked_id: linked_id(t),
        gate_decision_hash: hex::encode(t.decision_hash),
        block_height: record.height,
        time: Some(timestamp(record.timestamp_us)),
    }
}

fn transfer_kind_pb(code: u16) -> pb::TransferKind {
    match code {
        CODE_DEPOSIT => pb::TransferKind::Deposit,
        CODE_WITHDRAWAL => pb::TransferKind::Withdrawal,
        CODE_DVP_BASE | CODE_DVP_QUOTE => pb::TransferKind::Trade,
        CODE_DVP_FEE => pb::TransferKind::Fee,
        _ => pb::TransferKind::Unspecified,
    }
}

fn movement_pb(m: &Movement) -> pb::Transfer {
    let reference = match m.code {
        CODE_DVP_BASE | CODE_DVP_QUOTE | CODE_DVP_FEE => m.user_data.to_string(),
        _ => m.id.to_string(),
    };
    pb::Transfer {
        transfer_id: m.id.to_string(),
        kind: transfer_kind_pb(m.code) as i32,
        asset: asset_text(u32::from(m.asset)),
        amount: amount_text(m.amount, u32::from(m.asset), !m.credit),
        reference,
        time: Some(timestamp(m.time_us)),
        block_height: m.height,
    }
}

impl LedgerHub {
    fn block_pb(&self, height: u64) -> Result<pb::Block, Status> {
        let committed = self.committed(height)?;
        let block = &committed.block;
        let mut transfers = Vec::new();
        for batch in &block.batches {
            if let Batch::CreateTransfers { entries, .. } = batch {
                for entry in entries {
                    // Only what this block applied (a resubmission that was `exists` is not a
                    // transfer of this block).
                    if let Some(record) = self.transfer(entry.transfer.id)
                        && record.height == height
                    {
                        transfers.push(ledger_transfer_pb(&record));
                    }
                }
            }
        }
        Ok(pb::Block {
            height,
            hash: hex::encode(block.hash()),
            previous_hash: hex::encode(block.header.previous_hash),
            time: Some(timestamp(block.header.timestamp_us)),
            transfers,
            signers: committed
                .certificate
                .signatures
                .iter()
                .map(|s| s.validator.to_string())
                .collect(),
        })
    }

    fn movements_of(&self, account: u64) -> Vec<Movement> {
        let state = self.inner.state.read().unwrap_or_else(|e| e.into_inner());
        state.movements.get(&account).cloned().unwrap_or_default()
    }

    /// Accounts.ListTransfers: newest first, paged by position in the account's history.
    pub fn list_transfers(
        &self,
        account: u64,
        req: &pb::ListTransfersRequest,
    ) -> Result<pb::ListTransfersResponse, Status> {
        let asset = if req.asset.is_empty() {
            None
        } else {
            Some(
                asset_id(&req.asset)
                    .ok_or_else(|| ApiReject::InvalidField.status("asset", "unknown asset"))?,
            )
        };
        let page = req.page.clone().unwrap_or_default();
        let size = match page.page_size as usize {
            0 => LIST_TRANSFERS_DEFAULT,
            n => n.min(LIST_TRANSFERS_MAX),
        };
        let state = self.inner.state.read().unwrap_or_else(|e| e.into_inner());
        let empty = Vec::new();
        let movements = state.movements.get(&account).unwrap_or(&empty);
        let mut end = if page.page_token.is_empty() {
            movements.len()
        } else {
            page.page_token
                .parse::<usize>()
                .ok()
                .filter(|n| *n <= movements.len())
                .ok_or_else(|| {
                    ApiReject::InvalidField.status("page.page_token", "not a token of this listing")
                })?
        };
        let mut out = Vec::new();
        let mut scanned = 0;
        while end > 0 && out.len() < size && scanned < LEDGER_LIST_SCAN_MAX {
            end -= 1;
            scanned += 1;
            let m = &movements[end];
            if asset.is_none_or(|a| a == m.asset) {
                out.push(movement_pb(m));
            }
        }
        Ok(pb::ListTransfersResponse {
            transfers: out,
            page: Some(pb::PageResponse {
                next_page_token: if end == 0 {
                    String::new()
                } else {
                    end.to_string()
                },
            }),
        })
    }

    /// Accounts.GetStatement: positions at `since` and `as_of` from the ledger, and the
    /// movements between (oldest first, at most `LEDGER_STATEMENT_MOVEMENTS_MAX`).
    pub async fn statement(
        &self,
        core: &Core,
        account: u64,
        req: &pb::GetStatementRequest,
    ) -> Result<pb::Statement, Status> {
        let now = Core::now_us();
        let as_of = req.as_of.as_ref().map(time_us_of).unwrap_or(now);
        let since = req.since.as_ref().map(time_us_of).unwrap_or(0);
        if since > as_of {
            return Err(ApiReject::InvalidField.status("since", "after as_of"));
        }
        // Held amounts are the engine's, and only known for now.
        let held: HashMap<u16, u64> = if as_of >= now {
            core.balances(account)
                .await?
                .1
                .into_iter()
                .map(|(asset, _, held)| (asset, held))
                .collect()
        } else {
            HashMap::new()
        };
        let sequence = self.settled_seq();
        let movements = self.movements_of(account);
        let first = movements.partition_point(|m| m.time_us < since);
        let last = movements.partition_point(|m| m.time_us <= as_of);
        if last - first > LEDGER_STATEMENT_MOVEMENTS_MAX {
            return Err(ApiReject::LedgerResultTooLarge.status(
                "since",
                &format!(
                    "{} movements in the period, at most {LEDGER_STATEMENT_MOVEMENTS_MAX}; narrow it",
                    last - first
                ),
            ));
        }
        let position_at = |end: usize, asset: u16| -> u128 {
            movements[..end]
                .iter()
                .rev()
                .find(|m| m.asset == asset)
                .map(|m| m.balance_after)
                .unwrap_or(0)
        };
        let positions = ASSETS
            .iter()
            .map(|(asset, code, decimals)| pb::Position {
                asset: (*code).into(),
                opening: minor_to_decimal(position_at(first, *asset), *decimals, false),
                closing: minor_to_decimal(position_at(last, *asset), *decimals, false),
                held: minor_to_decimal(
                    u128::from(held.get(asset).copied().unwrap_or(0)),
                    *decimals,
                    false,
                ),
            })
            .collect();
        Ok(pb::Statement {
            account_id: account.to_string(),
            since: Some(timestamp(since)),
            as_of: Some(timestamp(as_of)),
            positions,
            movements: movements[first..last].iter().map(movement_pb).collect(),
            sequence,
        })
    }
}

/// `rempart.v1.Ledger`, answered from the node's ledger.
#[derive(Debug, Clone)]
pub struct LedgerSvc {
    pub ledger: LedgerHub,
    pub gateway: Arc<Gateway>,
    pub shutdown: watch::Receiver<bool>,
}

fn parse_u128(text: &str, field: &str) -> Result<u128, Status> {
    text.parse()
        .map_err(|_| ApiReject::InvalidField.status(field, "not a decimal 128-bit id"))
}

fn may_read(caller: &Caller, record: &TransferRecord) -> bool {
    if caller.has_any(LEDGER_READERS) {
        return true;
    }
    [record.debit_account_id, record.credit_account_id]
        .iter()
        .any(|id| engine_account(*id).is_some_and(|(account, _)| account == caller.account))
}

type BlockStream =
    std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<pb::Block, Status>> + Send>>;

#[tonic::async_trait]
impl pb::ledger_server::Ledger for LedgerSvc {
    async fn get_block(
        &self,
        req: Request<pb::GetBlockRequest>,
    ) -> Result<Response<pb::Block>, Status> {
        caller(&req)?.require(LEDGER_READERS)?;
        Ok(Response::new(self.ledger.block_pb(req.get_ref().height)?))
    }

    async fn get_transfer(
        &self,
        req: Request<pb::GetTransferRequest>,
    ) -> Result<Response<pb::LedgerTransfer>, Status> {
        let c = caller(&req)?;
        c.require(&[Role::Admin, Role::Regulator, Role::Trader, Role::Merchant])?;
        let id = parse_u128(&req.get_ref().transfer_id, "transfer_id")?;
        // Another account's transfer is answered exactly like an unknown one: its existence
        // is not disclosed.
        match self.ledger.transfer(id) {
            Some(record) if may_read(&c, &record) => Ok(Response::new(ledger_transfer_pb(&record))),
            _ => Err(ApiReject::LedgerUnknownTransfer.status("transfer_id", "")),
        }
    }

    type StreamBlocksStream = BlockStream;

    async fn stream_blocks(
        &self,
        req: Request<pb::StreamBlocksRequest>,
    ) -> Result<Response<Self::StreamBlocksStream>, Status> {
        let c = caller(&req)?;
        c.require(LEDGER_READERS)?;
        let guard = self.gateway.open_stream(c.account)?;
        let ledger = self.ledger.clone();
        let mut heights = ledger.inner.height_tx.subscribe();
        let from = req.get_ref().from_height;
        let mut next = if from == 0 {
            *heights.borrow_and_update() + 1
        } else {
            from
        };
        let (tx, rx) = mpsc::channel(16);
        let mut shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            let _guard = guard;
            loop {
                let head = *heights.borrow_and_update();
                while next <= head {
                    let block = ledger.block_pb(next);
                    let failed = block.is_err();
                    // A slow reader waits here (channel of 16): the stream is bounded and the
                    // blocks come from the store, so it never misses one.
                    if tx.send(block).await.is_err() || failed {
                        return;
                    }
                    next += 1;
                }
                tokio::select! {
                    changed = heights.changed() => if changed.is_err() { return },
                    _ = shutdown.changed() => return,
                    _ = tx.closed() => return,
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_demo_node_keeps_ledger_keys_under_the_demo_passphrase() {
        let unset = |_: &str| None;
        let empty = |_: &str| Some(String::new());
        let set = |name: &str| (name == PASSPHRASE_ENV).then(|| "operator secret".to_string());
        let err = keystore_passphrase(false, &unset).unwrap_err().to_string();
        assert!(err.contains(PASSPHRASE_ENV), "{err}");
        assert!(keystore_passphrase(false, &empty).is_err());
        assert_eq!(
            keystore_passphrase(false, &set).unwrap().expose(),
            b"operator secret"
        );
        assert_eq!(
            keystore_passphrase(true, &unset).unwrap().expose(),
            DEMO_PASSPHRASE
        );
    }

    #[test]
    fn ids_keep_kind_account_and_asset_apart() {
        assert_eq!(ledger_account(1001, 2), (1001 << 16) | 2);
        assert_eq!(engine_account(ledger_account(1001, 2)), Some((1001, 2)));
        assert_eq!(engine_account(omnibus_account(2)), None);
        let id = trade_leg_id(KIND_FEE, u64::MAX, u32::MAX, 3);
        assert_eq!((id >> 120) as u8, KIND_FEE);
        assert_ne!(
            trade_leg_id(KIND_TRADE, 5, 0, 1),
            trade_leg_id(KIND_TRADE, 5, 1, 0)
        );
        assert_ne!(
            trade_leg_id(KIND_TRADE, 5, 0, 0),
            trade_leg_id(KIND_TRADE, 6, 0, 0)
        );
    }

    fn trade(buy_fee: u64, sell_fee: u64) -> SettleTrade {
        SettleTrade {
            seq: 42,
            index: 1,
            trade_id: 7,
            time_us: 1,
            base_asset: 1,
            quote_asset: 2,
            base_amount: 5_000_000,
            quote_amount: 1_000,
            buyer: 1001,
            seller: 1002,
            buy_fee,
            sell_fee,
        }
    }

    #[test]
    fn a_trade_becomes_a_linked_dvp_chain_with_fee_legs() {
        let legs = trade_transfers(&trade(3, 4));
        assert_eq!(legs.len(), 4);
        let (base, payer) = legs[0];
        assert_eq!(payer, 1002);
        assert_eq!(base.debit_account_id, ledger_account(1002, 1));
        assert_eq!(base.credit_account_id, ledger_account(1001, 1));
        assert_eq!(base.amount, 5_000_000);
        assert_eq!(base.id, trade_leg_id(KIND_TRADE, 42, 1, 0));
        let (quote, payer) = legs[1];
        assert_eq!(payer, 1001);
        assert_eq!(quote.debit_account_id, ledger_account(1001, 2));
        assert_eq!(quote.amount, 1_000);
        assert_eq!(legs[2].0.credit_account_id, ledger_account(FEE_ACCOUNT, 2));
        assert_eq!(legs[2].1, 1001);
        assert_eq!(legs[3].1, 1002);
        assert_eq!((legs[3].0.id >> 120) as u8, KIND_FEE);
        // Every leg but the last is linked to the next.
        for (t, _) in &legs[..3] {
            assert!(t.flags.has(TransferFlags::LINKED));
        }
        assert!(!legs[3].0.flags.has(TransferFlags::LINKED));
        // Legs share their chain id.
        let chains: Vec<String> = legs.iter().map(|(t, _)| linked_id(t)).collect();
        assert!(chains.iter().all(|c| *c == chains[0]));
        // Zero fees make no legs.
        assert_eq!(trade_transfers(&trade(0, 0)).len(), 2);
        assert_eq!(trade_transfers(&trade(0, 9)).len(), 3);
    }

    #[test]
    fn amounts_print_as_canonical_decimals() {
        assert_eq!(minor_to_decimal(0, 2, false), "0");
        assert_eq!(minor_to_decimal(5, 2, false), "0.05");
        assert_eq!(minor_to_decimal(150, 2, true), "-1.5");
        assert_eq!(minor_to_decimal(1_000_000, 6, false), "1");
        assert_eq!(minor_to_decimal(1_234_567, 6, false), "1.234567");
        assert_eq!(minor_to_decimal(u128::MAX, 0, false), u128::MAX.to_string());
    }

    #[test]
    fn trades_of_computes_amounts_from_the_market() {
        let cfg = matching_engine::demo_markets()[0];
        let cmd = Command {
            seq: 9,
            time_us: 100,
            kind: matching_engine::CommandKind::Tick,
        };
        let ev = Event::Trade {
            trade_id: 3,
            market: cfg.market,
            price: 250,
            qty: 4,
            buy_order: 1,
            buy_account: 1001,
            sell_order: 2,
            sell_account: 1002,
            aggressor: matching_engine::Aggressor::Buy,
            buy_fee: 1,
            sell_fee: 2,
            buy_remaining: 0,
            sell_remaining: 0,
        };
        let trades = trades_of(&cmd, &[ev, ev], |m| (m == cfg.market).then_some(cfg));
        assert_eq!(trades.len(), 2);
        assert_eq!(trades[1].index, 1);
        let tick = cfg.tick_value_quote_minor().unwrap();
        assert_eq!(trades[0].quote_amount, 250 * 4 * tick);
        assert_eq!(trades[0].base_amount, 4 * cfg.lot_size_base_minor);
        assert_eq!(trades[0].seq, 9);
        assert!(trades_of(&cmd, &[ev], |_| None).is_empty());
    }

    #[test]
    fn the_settled_watermark_survives_a_restart_and_waits_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(LEDGER_DIR)).unwrap();
        let (feed, _rx) = feed(dir.path()).unwrap();
        assert_eq!(feed.settled_seq(), 0);
        assert!(!feed.wait_settled(1, Duration::from_millis(1)));
        write_settled(&dir.path().join(LEDGER_DIR), 77).unwrap();
        let (feed, _rx) = feed_again(dir.path());
        assert_eq!(feed.settled_seq(), 77);
        assert!(feed.wait_settled(77, Duration::ZERO));
    }

    fn feed_again(dir: &Path) -> (TradeFeed, FeedReceiver) {
        feed(dir).unwrap()
    }

    /// Writes a journal (market, deposits, `pairs` crossing order pairs) with a snapshot after
    /// the first half, as the node would; returns the seqs of the commands that traded.
    fn journal_with_trades(dir: &Path, pairs: u64) -> Vec<u64> {
        use matching_engine::journal::{JournalWriter, WriterOptions};
        use matching_engine::recovery::{recover, take_snapshot};
        use matching_engine::{CommandKind, NewOrder, OrderType, PostOnly, Side, StpMode};
        use matching_engine::{TimeInForce, demo_markets};
        let recovered = recover(dir, &crate::node::core::recovery_options()).unwrap();
        let mut engine = recovered.engine;
        let mut writer = JournalWriter::spawn(recovered.journal, WriterOptions::default()).unwrap();
        let cfg = demo_markets()[0];
        let order = |account, side| {
            CommandKind::PlaceOrder(NewOrder {
                account,
                market: cfg.market,
                client_order_id: 0,
                side,
                order_type: OrderType::Limit,
                time_in_force: TimeInForce::Gtc,
                price: cfg.max_price / 2,
                qty: cfg.min_qty.max(1),
                stop_price: 0,
                protection_price: 0,
                expire_time_us: 0,
                post_only: PostOnly::No,
                iceberg_peak: 0,
                stp: StpMode::None,
                session: 0,
            })
        };
        let mut kinds = vec![CommandKind::CreateMarket(cfg)];
        for account in [1001, 1002] {
            for asset in [cfg.base_asset, cfg.quote_asset] {
                kinds.push(CommandKind::Deposit {
                    account,
                    asset,
                    amount: u64::MAX / 4,
                });
            }
        }
        for _ in 0..pairs {
            kinds.push(order(1001, Side::Sell));
            kinds.push(order(1002, Side::Buy));
        }
        let mut traded = Vec::new();
        let half = kinds.len() as u64 / 2;
        for (i, kind) in kinds.into_iter().enumerate() {
            let cmd = Command {
                seq: writer.next_seq(),
                time_us: 1_000 + i as u64,
                kind,
            };
            let mut events = Vec::new();
            engine.apply(&cmd, &mut events);
            if events.iter().any(|e| matches!(e, Event::Trade { .. })) {
                traded.push(cmd.seq);
            }
            writer.submit(cmd).unwrap().wait().unwrap();
            if cmd.seq == half {
                let snapshots =
                    SnapshotStore::open(&dir.join(SNAPSHOT_DIR), SNAPSHOTS_KEPT_DEFAULT).unwrap();
                take_snapshot(&snapshots, &dir.join(JOURNAL_DIR), &engine, cmd.seq).unwrap();
            }
        }
        writer.close().unwrap();
        traded
    }

    #[test]
    fn replaying_the_journal_finds_exactly_the_unsettled_trades() {
        let dir = tempfile::tempdir().unwrap();
        let traded = journal_with_trades(dir.path(), 20);
        assert_eq!(traded.len(), 20);
        let last = *traded.last().unwrap();
        for after in [0, traded[3], traded[15], last] {
            let mut seen = Vec::new();
            replay_trades(dir.path(), after, last, |item| {
                assert_eq!(item.trades.len(), 1);
                assert_eq!(item.trades[0].seller, 1001);
                assert_eq!(item.trades[0].buyer, 1002);
                seen.push(item.seq);
                Ok(())
            })
            .unwrap();
            let expected: Vec<u64> = traded.iter().copied().filter(|s| *s > after).collect();
            assert_eq!(seen, expected, "after {after}");
        }
        // Up to a seq the journal does not hold: refused, not silently short.
        assert!(replay_trades(dir.path(), 0, last + 5, |_| Ok(())).is_err());
        // A failure of the consumer stops the replay with that failure.
        let err = replay_trades(dir.path(), 0, last, |_| anyhow::bail!("ledger down")).unwrap_err();
        assert!(err.to_string().contains("ledger down"), "{err}");
    }

    #[test]
    fn a_full_feed_drops_and_marks_instead_of_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let (feed, rx) = feed(dir.path()).unwrap();
        for seq in 1..=(LEDGER_FEED_DEPTH as u64 + 10) {
            feed.publish(SettleItem {
                seq,
                trades: Vec::new(),
            });
        }
        assert!(rx.shared.overflow.load(Ordering::Acquire));
        assert_eq!(
            rx.shared.dropped_upto.load(Ordering::Acquire),
            LEDGER_FEED_DEPTH as u64 + 10
        );
        assert_eq!(rx.rx.try_iter().count(), LEDGER_FEED_DEPTH);
    }
}
