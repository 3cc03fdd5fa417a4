//! Throughput of the ledger state machine alone: applies blocks of DvP trades (base, quote and
//! two fee legs, linked), each batch signed once by the custodian and each transfer approved by
//! the gate (its approval binds the transfer id), verifying every signature as a validator
//! does. Signing happens before the clock
//! starts (it is the clients' cost); applying, verifying and hashing are timed.
//!
//! `cargo run --release -p settlement --bin ledger-bench -- --transfers 200000`
//! prints one JSON object with `transfers_per_sec`.

use std::time::Instant;

use settlement::dvp::{DvpTrade, FeeLeg, dvp_transfers};
use settlement::ledger::{
    AccountFlags, Batch, BatchResults, CreateTransferResult, Ledger, LedgerConfig, Transfer,
    TransferFlags,
};
use settlement::testkit::{self, batch_signed, decision, new_account, signed_entry};

const CITY: u32 = 1;
const EUR: u32 = 2;
const CUSTOMERS: u128 = 1_000;
const FEE_ACCOUNT: u128 = 3;

struct Options {
    transfers: usize,
    block_transfers: usize,
    batch_transfers: usize,
    verify_threads: usize,
}

fn parse() -> Result<Options, String> {
    let mut options = Options {
        transfers: 200_000,
        block_transfers: 8_000,
        batch_transfers: 400,
        verify_threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .ok_or_else(|| format!("{flag} needs a value"))?
            .parse::<usize>()
            .map_err(|e| format!("{flag}: {e}"))?;
        match flag.as_str() {
            "--transfers" => options.transfers = value,
            "--block" => options.block_transfers = value,
            "--batch" => options.batch_transfers = value,
            "--threads" => options.verify_threads = value.max(1),
            other => return Err(format!("unknown option {other}")),
        }
    }
    // Legs come four to a trade; batches and blocks hold whole trades.
    options.batch_transfers = (options.batch_transfers / 4).max(1) * 4;
    options.block_transfers =
        (options.block_transfers / options.batch_transfers).max(1) * options.batch_transfers;
    Ok(options)
}

/// CPU seconds (user + system) this process has used, from /proc (Linux); None elsewhere. The
/// machine is shared, so wall-clock throughput depends on other load; CPU time does not.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // Linux reports these in clock ticks of 1/100 s (USER_HZ) on every mainstream platform.
    Some((utime + stime) / 100.0)
}

fn customer_base(index: u128) -> u128 {
    1_000 + index * 2
}

fn main() {
    let options = match parse() {
        Ok(options) => options,
        Err(error) => {
            eprintln!("ledger-bench: {error}");
            std::process::exit(2);
        }
    };
    let gate = testkit::ed25519("gate", 0);
    let issuer = testkit::controller("issuer", 0);
    let custodian = testkit::controller("custodian", 0);
    let mut ledger = Ledger::new(&LedgerConfig {
        gate_keys: vec![gate.public_key()],
        genesis_hash: [0; 32],
        verify_threads: options.verify_threads,
    });

    // Setup (untimed): issuers, a fee account, customers with both assets, funded.
    let holder = AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS;
    let mut accounts = vec![
        new_account(1, CITY, 0, &issuer),
        new_account(2, EUR, 0, &issuer),
        new_account(FEE_ACCOUNT, EUR, holder, &custodian),
    ];
    for index in 0..CUSTOMERS {
        accounts.push(new_account(customer_base(index), CITY, holder, &custodian));
        accounts.push(new_account(
            customer_base(index) + 1,
            EUR,
            holder,
            &custodian,
        ));
    }
    let mut height = 1;
    let mut now_us = 1_000_000;
    ledger
        .apply_block(height, now_us, &[Batch::CreateAccounts(accounts)])
        .expect("setup accounts");
    let mut mints = Vec::new();
    for index in 0..CUSTOMERS {
        for (offset, ledger_id, issuer_account) in [(0, CITY, 1), (1, EUR, 2)] {
            // Above every DvP leg id (trade ids stay below 2^119).
            let id = (1u128 << 127) + index * 2 + offset;
            let transfer = Transfer {
                id,
                debit_account_id: issuer_account,
                credit_account_id: customer_base(index) + offset,
                amount: 1_000_000_000_000,
                pending_id: 0,
                user_data: 0,
                timeout_s: 0,
                ledger: ledger_id,
                code: 1,
                flags: TransferFlags(0),
                decision_hash: decision(id),
            };
            mints.push(signed_entry(transfer, &issuer, &gate));
        }
    }
    height += 1;
    now_us += 1_000_000;
    ledger
        .apply_block(
            height,
            now_us,
            &[Batch::CreateTransfers {
                entries: mints,
                batch_signature: None,
            }],
        )
        .expect("setup mints");

    // Workload (signed before timing).
    let trades = options.transfers.div_ceil(4);
    let mut all_legs = Vec::with_capacity(trades * 4);
    for trade in 0..trades as u128 {
        let seller = trade % CUSTOMERS;
        let buyer = (trade * 7 + 1) % CUSTOMERS;
        let buyer = if buyer == seller {
            (buyer + 1) % CUSTOMERS
        } else {
            buyer
        };
        let legs = dvp_transfers(
            &DvpTrade {
                trade_id: 1 + trade,
                base_ledger: CITY,
                quote_ledger: EUR,
                base_amount: 1_000 + trade % 97,
                quote_amount: 250 + trade % 13,
                seller_base_account_id: customer_base(seller),
                seller_quote_account_id: customer_base(seller) + 1,
                buyer_base_account_id: customer_base(buyer),
                buyer_quote_account_id: customer_base(buyer) + 1,
                fees: vec![
                    FeeLeg {
                        payer_account_id: customer_base(buyer) + 1,
                        payee_account_id: FEE_ACCOUNT,
                        ledger: EUR,
                        amount: 1,
                    },
                    FeeLeg {
                        payer_account_id: customer_base(seller) + 1,
                        payee_account_id: FEE_ACCOUNT,
                        ledger: EUR,
                        amount: 1,
                    },
                ],
            },
            decision(1_000_000 + trade),
        )
        .expect("valid trade");
        all_legs.extend(legs);
    }
    let batches: Vec<Batch> = all_legs
        .chunks(options.batch_transfers)
        .map(|chunk| batch_signed(chunk, &custodian, &gate))
        .collect();
    let per_block = options.block_transfers / options.batch_transfers;
    let blocks: Vec<&[Batch]> = batches.chunks(per_block).collect();

    let cpu_before = cpu_seconds();
    let started = Instant::now();
    let mut applied = 0usize;
    for block in &blocks {
        height += 1;
        now_us += 200_000;
        let outcome = ledger
            .apply_block(height, now_us, block)
            .expect("benchmark block applies");
        for batch in &outcome.results {
            if let BatchResults::Transfers(results) = batch {
                applied += results
                    .iter()
                    .filter(|r| **r == CreateTransferResult::Ok)
                    .count();
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu_s = match (cpu_before, cpu_seconds()) {
        (Some(before), Some(after)) => after - before,
        _ => 0.0,
    };
    if applied != all_legs.len() {
        eprintln!(
            "ledger-bench: only {applied} of {} transfers applied",
            all_legs.len()
        );
        std::process::exit(1);
    }
    ledger
        .check_invariants_full()
        .expect("invariants hold after the run");
    println!(
        "{{\"transfers_per_sec\":{:.0},\"transfers\":{},\"blocks\":{},\"block_transfers\":{},\"batch_transfers\":{},\"gate_signatures\":{},\"batch_signatures\":{},\"verify_threads\":{},\"elapsed_s\":{:.3},\"cpu_s\":{:.2},\"transfers_per_cpu_sec\":{:.0}}}",
        applied as f64 / elapsed,
        applied,
        blocks.len(),
        options.block_transfers,
        options.batch_transfers,
        all_legs.len(),
        batches.len(),
        options.verify_threads,
        elapsed,
        cpu_s,
        if cpu_s > 0.0 {
            applied as f64 / cpu_s
        } else {
            0.0
        }
    );
}
