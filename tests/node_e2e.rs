//! End-to-end tests of the node: they start the real `rempart demo` binary on ephemeral ports
//! with a temporary data directory, read the printed addresses and API keys, and talk to it
//! with the generated tonic clients.

mod common;

use std::path::Path;
use std::process::Command;

use common::{Node, code_of, http_get, limit_on as limit, req};
use rempart_proto::v1 as pb;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

/// Starts the demo with extra command-line arguments.
fn start(data_dir: &Path, extra: &[&str]) -> Node {
    common::start_with(data_dir, |c| {
        c.args(extra);
    })
}

fn balance(b: &pb::GetBalancesResponse, asset: &str) -> pb::Balance {
    b.balances
        .iter()
        .find(|x| x.asset == asset)
        .cloned()
        .expect("asset present")
}

#[tokio::test]
async fn a_trade_fills_moves_balances_and_streams_market_data_in_sequence() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path(), &[]);
    let ch = node.channel().await;
    let (alice, bob) = (node.token("alice"), node.token("bob"));
    let mut trading = pb::trading_client::TradingClient::new(ch.clone());
    let mut md = pb::market_data_client::MarketDataClient::new(ch.clone());
    let mut accounts = pb::accounts_client::AccountsClient::new(ch.clone());

    let mut stream = md
        .stream_market_data(req(
            pb::StreamMarketDataRequest {
                markets: vec!["CITY/EUR".into()],
                channels: vec![],
            },
            &alice,
        ))
        .await
        .unwrap()
        .into_inner();
    let first = stream.message().await.unwrap().unwrap();
    let mut last_seq = first.sequence;
    assert!(matches!(
        first.event,
        Some(pb::market_data_event::Event::Snapshot(_))
    ));

    let sell = trading
        .place_order(req(limit("CITY/EUR", pb::Side::Sell, "1.50", "5"), &alice))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(sell.status, pb::OrderStatus::Open as i32);
    assert_eq!(sell.resting_quantity, "5");
    let buy = trading
        .place_order(req(limit("CITY/EUR", pb::Side::Buy, "1.5", "5"), &bob))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(buy.status, pb::OrderStatus::Filled as i32);
    assert_eq!(buy.fills.len(), 1);
    assert_eq!(buy.fills[0].price, "1.5");
    assert_eq!(buy.fills[0].quantity, "5");
    assert!(!buy.fills[0].maker);
    assert!(buy.sequence > sell.sequence);

    let bob_bal = accounts
        .get_balances(req(pb::GetBalancesRequest::default(), &bob))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(balance(&bob_bal, "CITY").total, "10000005");
    let alice_bal = accounts
        .get_balances(req(pb::GetBalancesRequest::default(), &alice))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(balance(&alice_bal, "CITY").total, "9999995");
    assert_eq!(balance(&alice_bal, "CITY").held, "0");

    let order = trading
        .get_order(req(
            pb::GetOrderRequest {
                order_id: sell.order_id.clone(),
                account_id: String::new(),
            },
            &alice,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(order.status, pb::OrderStatus::Filled as i32);
    assert_eq!(order.filled_quantity, "5");
    // Bob cannot see Alice's order.
    let err = trading
        .get_order(req(
            pb::GetOrderRequest {
                order_id: sell.order_id.clone(),
                account_id: String::new(),
            },
            &bob,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    // Market data: consecutive sequence numbers up to and including the trade.
    let mut saw_trade = false;
    while !saw_trade {
        let ev = stream.message().await.unwrap().unwrap();
        assert_eq!(ev.sequence, last_seq + 1, "gap in market data");
        last_seq = ev.sequence;
        if let Some(pb::market_data_event::Event::Trade(t)) = ev.event {
            assert_eq!(t.price, "1.5");
            assert_eq!(t.quantity, "5");
            assert_eq!(t.taker_side, pb::Side::Buy as i32);
            saw_trade = true;
        }
    }
    let trades = md
        .get_trades(req(
            pb::GetTradesRequest {
                market: "CITY/EUR".into(),
                limit: 10,
            },
            &bob,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(trades.trades.len(), 1);
    let candles = md
        .get_candles(req(
            pb::GetCandlesRequest {
                market: "CITY/EUR".into(),
                interval: pb::CandleInterval::CandleInterval1m as i32,
                start: None,
                end: None,
            },
            &bob,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(candles.candles.len(), 1);
    assert_eq!(candles.candles[0].volume, "5");

    // Prometheus endpoint answers with the node's metrics.
    let body = http_get(&node.metrics, "/metrics").await;
    assert!(
        body.contains("rempart_order_latency_seconds_bucket"),
        "{body}"
    );
    assert!(body.contains("rempart_engine_queue_depth"));
}

#[tokio::test]
async fn bad_inputs_and_bad_keys_get_precise_statuses_and_codes() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path(), &[]);
    let ch = node.channel().await;
    let alice = node.token("alice");
    let mut trading = pb::trading_client::TradingClient::new(ch.clone());

    let cases = [
        (
            limit("DOGE/EUR", pb::Side::Buy, "1", "1"),
            Code::NotFound,
            1001,
        ),
        (
            limit("CITY/EUR", pb::Side::Buy, "1.505", "1"),
            Code::InvalidArgument,
            1027,
        ),
        (
            limit("CITY/EUR", pb::Side::Buy, "1", "1.5"),
            Code::InvalidArgument,
            1028,
        ),
        (
            limit("CITY/EUR", pb::Side::Buy, "1e3", "1"),
            Code::InvalidArgument,
            9030,
        ),
        (
            limit("CITY/EUR", pb::Side::Buy, "-1", "1"),
            Code::InvalidArgument,
            1006,
        ),
        (
            limit("CITY/EUR", pb::Side::Unspecified, "1", "1"),
            Code::InvalidArgument,
            9031,
        ),
        (
            limit("CITY/EUR", pb::Side::Buy, "100000", "1000000"),
            Code::FailedPrecondition,
            1011,
        ),
    ];
    for (order, code, reject) in cases {
        let err = trading
            .place_order(req(order.clone(), &alice))
            .await
            .unwrap_err();
        assert_eq!(
            (err.code(), code_of(&err)),
            (code, reject),
            "{order:?}: {err:?}"
        );
    }

    // Oversize message: refused by the server's decoder, never reaching the engine.
    let mut big = limit("CITY/EUR", pb::Side::Buy, "1", "1");
    big.client_order_id = "7".repeat(100 * 1024);
    let err = trading.place_order(req(big, &alice)).await.unwrap_err();
    assert_eq!(err.code(), Code::OutOfRange, "{err:?}");

    // Missing, forged and expired keys.
    let mut echo = pb::diagnostics_client::DiagnosticsClient::new(ch.clone());
    let err = echo
        .echo(Request::new(pb::EchoRequest::default()))
        .await
        .unwrap_err();
    assert_eq!((err.code(), code_of(&err)), (Code::Unauthenticated, 9001));
    let (key_id, _) = alice.split_once('.').unwrap();
    let forged = format!("{key_id}.{}", "ab".repeat(32));
    let err = echo
        .echo(req(pb::EchoRequest::default(), &forged))
        .await
        .unwrap_err();
    assert_eq!((err.code(), code_of(&err)), (Code::Unauthenticated, 9002));
    let mut admin = pb::admin_client::AdminClient::new(ch.clone());
    let expired = admin
        .create_api_key(req(
            pb::CreateApiKeyRequest {
                account_id: "1001".into(),
                roles: vec![pb::Role::Trader as i32],
                label: "expired".into(),
                expires_at: Some(prost_types::Timestamp {
                    seconds: 1,
                    nanos: 0,
                }),
            },
            &node.token("admin"),
        ))
        .await
        .unwrap()
        .into_inner();
    let err = echo
        .echo(req(pb::EchoRequest::default(), &expired.token))
        .await
        .unwrap_err();
    assert_eq!((err.code(), code_of(&err)), (Code::Unauthenticated, 9003));
    // The detail decodes to the same code.
    let detail = decode_detail(&err);
    assert_eq!(detail.code, 9003);
    assert_eq!(detail.name, "KEY_EXPIRED");
}

fn decode_detail(status: &Status) -> pb::ErrorDetail {
    use prost::Message;
    #[derive(Clone, PartialEq, prost::Message)]
    struct RpcStatus {
        #[prost(int32, tag = "1")]
        code: i32,
        #[prost(string, tag = "2")]
        message: String,
        #[prost(message, repeated, tag = "3")]
        details: Vec<prost_types::Any>,
    }
    let rpc = RpcStatus::decode(status.details()).expect("google.rpc.Status");
    let any = &rpc.details[0];
    assert_eq!(any.type_url, "type.googleapis.com/rempart.v1.ErrorDetail");
    pb::ErrorDetail::decode(any.value.as_slice()).expect("ErrorDetail")
}

#[tokio::test]
async fn each_role_is_refused_what_it_may_not_do() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path(), &[]);
    let ch = node.channel().await;
    let mut trading = pb::trading_client::TradingClient::new(ch.clone());
    let mut accounts = pb::accounts_client::AccountsClient::new(ch.clone());
    let mut admin = pb::admin_client::AdminClient::new(ch.clone());
    let mut custody = pb::custody_client::CustodyClient::new(ch.clone());
    let mut compliance = pb::compliance_client::ComplianceClient::new(ch.clone());
    let order = limit("CITY/EUR", pb::Side::Buy, "1", "1");

    for who in ["regulator", "compliance", "approver"] {
        let err = trading
            .place_order(req(order.clone(), &node.token(who)))
            .await
            .unwrap_err();
        assert_eq!(
            (err.code(), code_of(&err)),
            (Code::PermissionDenied, 9010),
            "{who}"
        );
    }
    let err = admin
        .halt_market(req(
            pb::HaltMarketRequest {
                market: "CITY/EUR".into(),
                reason: String::new(),
            },
            &node.token("alice"),
        ))
        .await
        .unwrap_err();
    assert_eq!((err.code(), code_of(&err)), (Code::PermissionDenied, 9010));
    // A trader reads only its own account; a regulator reads any; a trader cannot act for one.
    let bobs = pb::GetBalancesRequest {
        account_id: "1002".into(),
    };
    let err = accounts
        .get_balances(req(bobs.clone(), &node.token("alice")))
        .await
        .unwrap_err();
    assert_eq!((err.code(), code_of(&err)), (Code::PermissionDenied, 9011));
    accounts
        .get_balances(req(bobs, &node.token("regulator")))
        .await
        .unwrap();
    let mut for_bob = order.clone();
    for_bob.account_id = "1002".into();
    let err = trading
        .place_order(req(for_bob, &node.token("alice")))
        .await
        .unwrap_err();
    assert_eq!((err.code(), code_of(&err)), (Code::PermissionDenied, 9011));
    // Custody approval: traders refused, approvers reach custody (no such withdrawal).
    let approve = pb::ApproveWithdrawalRequest {
        withdrawal_id: "1".into(),
    };
    let err = custody
        .approve_withdrawal(req(approve.clone(), &node.token("alice")))
        .await
        .unwrap_err();
    assert_eq!((err.code(), code_of(&err)), (Code::PermissionDenied, 9010));
    let err = custody
        .approve_withdrawal(req(approve, &node.token("approver")))
        .await
        .unwrap_err();
    assert_eq!((err.code(), code_of(&err)), (Code::NotFound, 2012));
    let err = compliance
        .update_case(req(
            pb::UpdateCaseRequest::default(),
            &node.token("regulator"),
        ))
        .await
        .unwrap_err();
    assert_eq!((err.code(), code_of(&err)), (Code::PermissionDenied, 9010));

    // The admin halts a market; orders are refused with the engine's code; resume restores.
    let halt = admin
        .halt_market(req(
            pb::HaltMarketRequest {
                market: "CITY/EUR".into(),
                reason: "test".into(),
            },
            &node.token("admin"),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(halt.state, pb::MarketState::Halted as i32);
    let err = trading
        .place_order(req(order.clone(), &node.token("alice")))
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), code_of(&err)),
        (Code::FailedPrecondition, 1004)
    );
    admin
        .resume_market(req(
            pb::ResumeMarketRequest {
                market: "CITY/EUR".into(),
            },
            &node.token("admin"),
        ))
        .await
        .unwrap();
    trading
        .place_order(req(order, &node.token("carol")))
        .await
        .unwrap();
}

#[tokio::test]
async fn rate_limits_answer_resource_exhausted_with_a_retry_hint() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path(), &["--calls-per-key", "3"]);
    let ch = node.channel().await;
    let mut echo = pb::diagnostics_client::DiagnosticsClient::new(ch);
    let alice = node.token("alice");
    let mut refused = None;
    // The burst is 3 calls; at most a few more can be refilled while these run.
    for _ in 0..50 {
        if let Err(e) = echo.echo(req(pb::EchoRequest::default(), &alice)).await {
            refused = Some(e);
            break;
        }
    }
    let err = refused.expect("a call over the limit is refused");
    assert_eq!((err.code(), code_of(&err)), (Code::ResourceExhausted, 9020));
    let pushback: u64 = err
        .metadata()
        .get("grpc-retry-pushback-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("pushback");
    assert!(pushback >= 1);
    assert_eq!(decode_detail(&err).retry_after_ms, pushback);
}

#[tokio::test]
async fn the_order_stream_answers_every_request_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path(), &[]);
    let ch = node.channel().await;
    let mut trading = pb::trading_client::TradingClient::new(ch);
    let alice = node.token("alice");
    let requests: Vec<pb::OrderStreamRequest> = (0..200u64)
        .map(|i| pb::OrderStreamRequest {
            request_id: 1000 + i,
            action: Some(pb::order_stream_request::Action::Place(limit(
                "CITY/EUR",
                pb::Side::Buy,
                // Every seventh request is off the tick grid.
                if i % 7 == 3 { "0.505" } else { "0.5" },
                "1",
            ))),
        })
        .collect();
    let mut responses = trading
        .order_stream(req(tokio_stream::iter(requests), &alice))
        .await
        .unwrap()
        .into_inner();
    let mut i = 0u64;
    while let Some(r) = responses.message().await.unwrap() {
        assert_eq!(r.request_id, 1000 + i);
        match r.result {
            Some(pb::order_stream_response::Result::Placed(p)) => {
                assert!(i % 7 != 3);
                assert_eq!(p.status, pb::OrderStatus::Open as i32);
            }
            Some(pb::order_stream_response::Result::Error(e)) => {
                assert_eq!(i % 7, 3);
                assert_eq!(e.grpc_code, Code::InvalidArgument as i32);
                assert_eq!(e.detail.map(|d| d.code), Some(1027));
            }
            other => panic!("unexpected {other:?}"),
        }
        i += 1;
    }
    assert_eq!(i, 200);
}

#[tokio::test]
async fn sigkill_then_restart_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = start(dir.path(), &[]);
    let ch = node.channel().await;
    let alice = node.token("alice");
    let bob = node.token("bob");
    let mut trading = pb::trading_client::TradingClient::new(ch);
    let mut acked = Vec::new();
    for i in 0..40u64 {
        let price = format!("0.{:02}", 10 + i);
        let r = trading
            .place_order(req(limit("CITY/EUR", pb::Side::Buy, &price, "2"), &alice))
            .await
            .unwrap()
            .into_inner();
        acked.push(r.order_id);
    }
    // One trade too.
    trading
        .place_order(req(limit("CITY/EUR", pb::Side::Sell, "0.49", "2"), &bob))
        .await
        .unwrap();
    node.child.kill().unwrap();
    node.child.wait().unwrap();

    let node2 = start(dir.path(), &[]);
    assert!(node2.tokens.is_empty(), "keys are not created twice");
    let ch = node2.channel().await;
    let mut trading = pb::trading_client::TradingClient::new(ch.clone());
    let open = trading
        .list_orders(req(
            pb::ListOrdersRequest {
                market: "CITY/EUR".into(),
                open_only: true,
                account_id: String::new(),
                limit: 1000,
            },
            &alice,
        ))
        .await
        .unwrap()
        .into_inner();
    let open_ids: Vec<String> = open.orders.iter().map(|o| o.order_id.clone()).collect();
    // The best bid (0.49) traded with Bob's sell; the other 39 still rest.
    assert_eq!(open_ids.len(), 39);
    for id in &acked[..39] {
        assert!(open_ids.contains(id), "order {id} lost");
    }
    let mut accounts = pb::accounts_client::AccountsClient::new(ch);
    let b = accounts
        .get_balances(req(pb::GetBalancesRequest::default(), &bob))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(balance(&b, "CITY").total, "9999998");
}

// Multi-threaded: the client's connection task must keep running (and close the connection)
// while this test blocks in `wait()` for the node to exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_and_exits_zero_and_health_and_reflection_answer() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = start(dir.path(), &[]);
    let ch = node.channel().await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(ch.clone());
    for service in rempart_proto::SERVICE_NAMES {
        let r = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.to_string(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            r.status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32
        );
    }
    for v1 in [true, false] {
        let services = list_services(ch.clone(), v1).await;
        for name in rempart_proto::SERVICE_NAMES {
            assert!(services.contains(&name.to_string()), "{v1}: {services:?}");
        }
    }
    // Close our connection: the node drains until every client connection is gone.
    drop(health);
    drop(ch);
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(node.child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let exit = node.child.wait().unwrap();
    assert_eq!(exit.code(), Some(0));
    // The shutdown left a snapshot; a restart recovers from it.
    assert!(
        dir.path()
            .join("snapshots")
            .read_dir()
            .unwrap()
            .next()
            .is_some()
    );
}

async fn list_services(ch: Channel, v1: bool) -> Vec<String> {
    if v1 {
        use tonic_reflection::pb::v1::{
            ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
            server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
        };
        let mut c = ServerReflectionClient::new(ch);
        let req = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut s = c
            .server_reflection_info(tokio_stream::iter(vec![req]))
            .await
            .unwrap()
            .into_inner();
        match s.message().await.unwrap().unwrap().message_response {
            Some(MessageResponse::ListServicesResponse(l)) => {
                l.service.into_iter().map(|s| s.name).collect()
            }
            other => panic!("{other:?}"),
        }
    } else {
        use tonic_reflection::pb::v1alpha::{
            ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
            server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
        };
        let mut c = ServerReflectionClient::new(ch);
        let req = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut s = c
            .server_reflection_info(tokio_stream::iter(vec![req]))
            .await
            .unwrap()
            .into_inner();
        match s.message().await.unwrap().unwrap().message_response {
            Some(MessageResponse::ListServicesResponse(l)) => {
                l.service.into_iter().map(|s| s.name).collect()
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn node_config_refuses_bad_settings_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("node.toml");
    std::fs::write(
        &config,
        format!(
            "role = \"validator\"\ndata_dir = \"{}\"\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_rempart"))
        .args(["node", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("validator") && stderr.contains("validator_config"),
        "{stderr}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_rempart"))
        .args(["node", "--config"])
        .arg(&config)
        .env("REMPART_ROLE", "gateway")
        .env("REMPART_POSTGRES_URL", "mysql://127.0.0.1/test")
        .output()
        .unwrap();
    // postgres_url is wired (the compliance store); a URL of another database is refused.
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("postgres_url"), "{stderr}");
}
