//! Settlement of the node's trades on its single-validator ledger, end to end: the real
//! `rempart demo` binary, its gRPC API, a SIGKILL and restart, and `rempart ledger verify` on
//! the data directory it leaves.

mod common;

use std::collections::HashSet;

use common::{assert_ledger_equals_engine, code_of, limit, req, settled_view, start, verify};
use rempart_proto::v1 as pb;
use tonic::Code;
use tonic::transport::Channel;

/// One trade: `seller` rests a sell, `buyer` takes it.
async fn trade(ch: &Channel, seller: &str, buyer: &str, price: &str, qty: &str) {
    let mut trading = pb::trading_client::TradingClient::new(ch.clone());
    trading
        .place_order(req(limit(pb::Side::Sell, price, qty), seller))
        .await
        .expect("sell");
    let buy = trading
        .place_order(req(limit(pb::Side::Buy, price, qty), buyer))
        .await
        .expect("buy")
        .into_inner();
    assert_eq!(
        buy.status,
        pb::OrderStatus::Filled as i32,
        "the buy must fill"
    );
}

/// Every movement of the caller's account, newest first, through every page.
async fn all_transfers(ch: &Channel, token: &str) -> Vec<pb::Transfer> {
    common::all_transfers(ch, token, "", 7).await
}

#[tokio::test]
async fn a_trade_settles_as_a_gated_linked_dvp_and_the_ledger_equals_the_engine() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path());
    let ch = node.channel().await;
    let t = |name: &str| node.tokens[name].clone();
    let (alice, bob, carol, regulator) = (t("alice"), t("bob"), t("carol"), t("regulator"));

    trade(&ch, &alice, &bob, "2", "10").await;
    let (balances, statement) = settled_view(&ch, &alice).await;
    assert_ledger_equals_engine(&balances, &statement);
    let (balances, statement) = settled_view(&ch, &bob).await;
    assert_ledger_equals_engine(&balances, &statement);

    // Alice's movements: her demo deposits, then the trade's legs touching her.
    let movements = all_transfers(&ch, &alice).await;
    let deposits = movements
        .iter()
        .filter(|m| m.kind == pb::TransferKind::Deposit as i32)
        .count();
    assert_eq!(deposits, 3, "one opening deposit per asset");
    let base = movements
        .iter()
        .find(|m| m.kind == pb::TransferKind::Trade as i32 && m.asset == "CITY")
        .expect("the base leg");
    assert_eq!(base.amount, "-10", "alice delivered 10 CITY");
    let quote = movements
        .iter()
        .find(|m| m.kind == pb::TransferKind::Trade as i32 && m.asset == "EUR")
        .expect("the quote leg");
    assert_eq!(quote.amount, "20", "alice was paid 20 EUR");
    assert!(base.block_height > 0);
    assert_eq!(
        statement.movements.len(),
        all_transfers(&ch, &bob).await.len(),
        "a statement since the opening lists every movement"
    );

    // The leg on the ledger: gated, linked, in a certified block.
    let mut ledger = pb::ledger_client::LedgerClient::new(ch.clone());
    let leg = ledger
        .get_transfer(req(
            pb::GetTransferRequest {
                transfer_id: base.transfer_id.clone(),
            },
            &regulator,
        ))
        .await
        .expect("regulator reads the leg")
        .into_inner();
    assert_eq!(leg.gate_decision_hash.len(), 64);
    assert_ne!(leg.gate_decision_hash, "0".repeat(64));
    assert!(!leg.linked_id.is_empty());
    assert_eq!(leg.asset, "CITY");
    assert_eq!(leg.amount, "10");
    let block = ledger
        .get_block(req(
            pb::GetBlockRequest {
                height: leg.block_height,
            },
            &regulator,
        ))
        .await
        .expect("regulator reads the block")
        .into_inner();
    let chain: Vec<&pb::LedgerTransfer> = block
        .transfers
        .iter()
        .filter(|x| x.linked_id == leg.linked_id)
        .collect();
    assert!(
        chain.len() >= 2,
        "base and quote legs (and fees) settle in one linked chain"
    );
    let hashes: HashSet<&str> = chain
        .iter()
        .map(|x| x.gate_decision_hash.as_str())
        .collect();
    assert_eq!(
        hashes.len(),
        chain.len(),
        "each leg has its own gate decision"
    );
    assert_eq!(block.signers, vec!["1".to_string()]);
    assert_eq!(block.hash.len(), 64);

    // Bob, the counterparty, reads the leg; Carol, a stranger, gets the same answer as for an
    // unknown id; a trader may not read blocks.
    ledger
        .get_transfer(req(
            pb::GetTransferRequest {
                transfer_id: base.transfer_id.clone(),
            },
            &bob,
        ))
        .await
        .expect("the counterparty reads the leg");
    let err = ledger
        .get_transfer(req(
            pb::GetTransferRequest {
                transfer_id: base.transfer_id.clone(),
            },
            &carol,
        ))
        .await
        .unwrap_err();
    assert_eq!((err.code(), code_of(&err)), (Code::NotFound, 9080));
    let err = ledger
        .get_block(req(pb::GetBlockRequest { height: 1 }, &alice))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = ledger
        .get_block(req(pb::GetBlockRequest { height: 1_000_000 }, &regulator))
        .await
        .unwrap_err();
    assert_eq!((err.code(), code_of(&err)), (Code::NotFound, 9081));
    let err = ledger
        .get_transfer(req(
            pb::GetTransferRequest {
                transfer_id: "not a number".into(),
            },
            &regulator,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    // StreamBlocks from height 1 replays the chain in order.
    let mut stream = ledger
        .stream_blocks(req(pb::StreamBlocksRequest { from_height: 1 }, &regulator))
        .await
        .expect("stream blocks")
        .into_inner();
    let mut height = 0;
    while height < leg.block_height {
        let b = stream.message().await.expect("stream").expect("a block");
        assert_eq!(b.height, height + 1, "blocks in order, none missing");
        height = b.height;
    }

    // A statement of a period before the trade shows no trade movement.
    let mut accounts = pb::accounts_client::AccountsClient::new(ch.clone());
    let before = accounts
        .get_statement(req(
            pb::GetStatementRequest {
                account_id: String::new(),
                // One microsecond before the trade's block (block times strictly increase,
                // so the deposits' block is at or before it).
                as_of: leg.time.map(|mut t| {
                    if t.nanos >= 1_000 {
                        t.nanos -= 1_000;
                    } else {
                        t.seconds -= 1;
                        t.nanos += 1_000_000_000 - 1_000;
                    }
                    t
                }),
                since: None,
            },
            &alice,
        ))
        .await
        .expect("statement")
        .into_inner();
    assert!(
        before
            .movements
            .iter()
            .all(|m| m.kind == pb::TransferKind::Deposit as i32)
    );
    let city = before.positions.iter().find(|p| p.asset == "CITY").unwrap();
    assert_eq!(city.closing, "10000000");

    drop(stream);
    drop(node);
    let report = verify(dir.path());
    assert_eq!(report["ok"], true);
    // The demo's 8 opening deposits, then the trade's base and quote legs (and fee legs).
    let transfers = report["transfers"].as_u64().unwrap();
    assert!((8 + 2..=8 + 4).contains(&transfers), "{report}");
}

#[tokio::test]
async fn after_a_sigkill_every_acknowledged_trade_settles_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    const TRADES: usize = 12;
    // Keys are printed at the first start only; they stay valid across restarts.
    let tokens = {
        let node = start(dir.path());
        let ch = node.channel().await;
        let (alice, bob) = (node.tokens["alice"].clone(), node.tokens["bob"].clone());
        for i in 0..TRADES {
            let (seller, buyer) = if i % 2 == 0 {
                (&alice, &bob)
            } else {
                (&bob, &alice)
            };
            trade(&ch, seller, buyer, "3", "1").await;
        }
        // SIGKILL (Drop) right after the last acknowledgement: the newest trades may not be
        // on the ledger yet.
        node.tokens.clone()
    };
    // And as if the watermark's last writes had been lost too: every trade of the journal is
    // settled again at the restart, and must still appear exactly once.
    std::fs::write(dir.path().join("ledger").join("settled_seq"), "0\n").unwrap();
    let node = start(dir.path());
    let ch = node.channel().await;
    for name in ["alice", "bob"] {
        let (balances, statement) = settled_view(&ch, &tokens[name]).await;
        assert_ledger_equals_engine(&balances, &statement);
        let movements = all_transfers(&ch, &tokens[name]).await;
        let ids: HashSet<&str> = movements.iter().map(|m| m.transfer_id.as_str()).collect();
        assert_eq!(ids.len(), movements.len(), "no transfer listed twice");
        // Each trade touches both parties once on its base (CITY) leg.
        let base_legs: HashSet<&str> = movements
            .iter()
            .filter(|m| m.kind == pb::TransferKind::Trade as i32 && m.asset == "CITY")
            .map(|m| m.reference.as_str())
            .collect();
        assert_eq!(base_legs.len(), TRADES, "every trade settled exactly once");
        assert_eq!(
            movements
                .iter()
                .filter(|m| m.kind == pb::TransferKind::Trade as i32 && m.asset == "CITY")
                .count(),
            TRADES
        );
    }
    drop(ch);
    drop(node);
    let report = verify(dir.path());
    assert_eq!(report["ok"], true);
}
