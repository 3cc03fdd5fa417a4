//! The gRPC services of `rempart.v1`: request validation, role and ownership checks, and the
//! translation between protobuf messages and engine commands and events.
//!
//! Custody lives in `node::custody`, Compliance in `node::compliance`, Ledger (and the ledger
//! half of Accounts: ListTransfers, GetStatement) in `node::settle`. Every order is
//! refused with KYC_REQUIRED unless compliance says its account may trade.

use std::pin::Pin;
use std::sync::Arc;

use matching_engine::{
    Aggressor, CommandKind, Event, MarketConfig, NewOrder, OrderType, PostOnly, RejectCode, Side,
    StpMode, TimeInForce, amount_from_decimal,
};
use rempart_proto::v1 as pb;
use rempart_proto::v1::Role;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::auth::Caller;
use super::core::{Applied, Core};
use super::decimal::{canonical, parse};
use super::errors::{ApiReject, detail_of, engine_status};
use super::gateway::Gateway;
use super::hub::{asset_code, asset_decimals, asset_id, market_symbol, time_us_of, timestamp};
use super::limits::{
    BOOK_DEPTH_MAX, CANDLES_MAX, LIST_ORDERS_MAX, LIST_TRADES_MAX, STREAM_IN_FLIGHT_MAX,
    TEXT_BYTES_MAX,
};

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

const TRADING: &[Role] = &[Role::Trader, Role::Merchant, Role::Admin];
const READERS: &[Role] = &[Role::Admin, Role::Regulator];
const ADMIN: &[Role] = &[Role::Admin];

/// Everything a service needs.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub core: Core,
    pub gateway: Arc<Gateway>,
    pub shutdown: watch::Receiver<bool>,
    pub compliance: super::compliance::Compliance,
    pub ledger: super::settle::LedgerHub,
    pub custody: super::custody::CustodyHub,
}

pub(super) fn caller<T>(req: &Request<T>) -> Result<Caller, Status> {
    req.extensions()
        .get::<Caller>()
        .cloned()
        .ok_or_else(|| ApiReject::MissingCredentials.status("", ""))
}

fn field_of(code: RejectCode) -> &'static str {
    use RejectCode as R;
    match code {
        R::PriceOffTick | R::InvalidPrice | R::PriceOutsideBand | R::PostOnlyWouldTake => "price",
        R::QtyOffLot | R::InvalidQuantity | R::QtyBelowMin | R::QtyAboveMax => "quantity",
        R::UnknownMarket => "market",
        R::UnknownOrder => "order_id",
        _ => "",
    }
}

impl Ctx {
    fn engine_reject(&self, code: RejectCode) -> Status {
        let status = engine_status(code, field_of(code));
        if let Some(d) = detail_of(&status) {
            self.core.metrics.reject(d.code);
        }
        status
    }

    fn market(&self, symbol: &str) -> Result<MarketConfig, Status> {
        let hub = self
            .core
            .hub
            .lock()
            .map_err(|_| ApiReject::Internal.status("", ""))?;
        hub.market_by_symbol(symbol)
            .map(|m| m.cfg)
            .ok_or_else(|| self.engine_reject(RejectCode::UnknownMarket))
    }

    fn order_id(&self, text: &str) -> Result<u64, Status> {
        text.parse()
            .map_err(|_| ApiReject::InvalidField.status("order_id", "not a decimal order id"))
    }
}

/// A prepared trading request, waiting for its engine outcome.
#[derive(Debug)]
enum Prepared {
    Place {
        cfg: MarketConfig,
        account: u64,
        client_order_id: String,
    },
    Cancel {
        cfg: MarketConfig,
        order_id: u64,
    },
    Amend {
        order_id: u64,
    },
}

fn prepare_place(
    ctx: &Ctx,
    caller: &Caller,
    r: &pb::PlaceOrderRequest,
) -> Result<(CommandKind, Prepared), Status> {
    caller.require(TRADING)?;
    let account = caller.account_for(&r.account_id, ADMIN)?;
    let cfg = ctx.market(&r.market)?;
    let side = match pb::Side::try_from(r.side) {
        Ok(pb::Side::Buy) => Side::Buy,
        Ok(pb::Side::Sell) => Side::Sell,
        _ => return Err(ApiReject::MissingField.status("side", "")),
    };
    let order_type = match pb::OrderType::try_from(r.order_type) {
        Ok(pb::OrderType::Limit) => OrderType::Limit,
        Ok(pb::OrderType::Market) => OrderType::Market,
        _ => return Err(ApiReject::MissingField.status("order_type", "")),
    };
    let (time_in_force, post_only) = match (pb::TimeInForce::try_from(r.time_in_force), order_type)
    {
        (Ok(pb::TimeInForce::Unspecified), OrderType::Market) => (TimeInForce::Ioc, PostOnly::No),
        (Ok(pb::TimeInForce::Unspecified | pb::TimeInForce::Gtc), _) => {
            (TimeInForce::Gtc, PostOnly::No)
        }
        (Ok(pb::TimeInForce::Ioc), _) => (TimeInForce::Ioc, PostOnly::No),
        (Ok(pb::TimeInForce::Fok), _) => (TimeInForce::Fok, PostOnly::No),
        (Ok(pb::TimeInForce::PostOnly), _) => (TimeInForce::Gtc, PostOnly::Reject),
        _ => return Err(ApiReject::InvalidField.status("time_in_force", "")),
    };
    let price = match order_type {
        OrderType::Limit => {
            if r.price.is_empty() {
                return Err(ApiReject::MissingField.status("price", ""));
            }
            cfg.price_from_decimal(parse("price", &r.price)?)
                .map_err(|c| ctx.engine_reject(c))?
        }
        _ => {
            if !r.price.is_empty() {
                return Err(ApiReject::InvalidField.status("price", "market orders carry no price"));
            }
            0
        }
    };
    let qty = cfg
        .qty_from_decimal(parse("quantity", &r.quantity)?)
        .map_err(|c| ctx.engine_reject(c))?;
    let client_order_id = if r.client_order_id.is_empty() {
        0
    } else {
        r.client_order_id.parse().map_err(|_| {
            ApiReject::InvalidField.status("client_order_id", "decimal u64 expected")
        })?
    };
    if !ctx.compliance.may_trade(account) {
        return Err(ApiReject::KycRequired.status("account_id", ""));
    }
    ctx.gateway.order_allowed(account)?;
    let order = NewOrder {
        account,
        market: cfg.market,
        client_order_id,
        side,
        order_type,
        time_in_force,
        price,
        qty,
        stop_price: 0,
        protection_price: 0,
        expire_time_us: 0,
        post_only,
        iceberg_peak: 0,
        stp: StpMode::CancelNewest,
        session: 0,
    };
    Ok((
        CommandKind::PlaceOrder(order),
        Prepared::Place {
            cfg,
            account,
            client_order_id: r.client_order_id.clone(),
        },
    ))
}

fn prepare_cancel(
    ctx: &Ctx,
    caller: &Caller,
    r: &pb::CancelOrderRequest,
) -> Result<(CommandKind, Prepared), Status> {
    caller.require(TRADING)?;
    let account = caller.account_for(&r.account_id, ADMIN)?;
    let cfg = ctx.market(&r.market)?;
    let order_id = ctx.order_id(&r.order_id)?;
    Ok((
        CommandKind::Cancel {
            account,
            market: cfg.market,
            order_id,
        },
        Prepared::Cancel { cfg, order_id },
    ))
}

fn prepare_amend(
    ctx: &Ctx,
    caller: &Caller,
    r: &pb::AmendOrderRequest,
) -> Result<(CommandKind, Prepared), Status> {
    caller.require(TRADING)?;
    let account = caller.account_for(&r.account_id, ADMIN)?;
    let cfg = ctx.market(&r.market)?;
    let order_id = ctx.order_id(&r.order_id)?;
    let (cur_price, cur_open) = {
        let hub = ctx
            .core
            .hub
            .lock()
            .map_err(|_| ApiReject::Internal.status("", ""))?;
        match hub.orders.get(&order_id) {
            Some(o) if o.account == account && !o.closed => (o.price, o.open),
            _ => return Err(ctx.engine_reject(RejectCode::UnknownOrder)),
        }
    };
    let new_price = if r.new_price.is_empty() {
        cur_price
    } else {
        cfg.price_from_decimal(parse("new_price", &r.new_price)?)
            .map_err(|c| ctx.engine_reject(c))?
    };
    let new_qty = if r.new_quantity.is_empty() {
        cur_open
    } else {
        cfg.qty_from_decimal(parse("new_quantity", &r.new_quantity)?)
            .map_err(|c| ctx.engine_reject(c))?
    };
    Ok((
        CommandKind::Amend {
            account,
            market: cfg.market,
            order_id,
            new_price,
            new_qty,
        },
        Prepared::Amend { order_id },
    ))
}

fn rejected(ctx: &Ctx, applied: &Applied) -> Result<(), Status> {
    for e in &applied.events {
        if let Event::Rejected { code, .. } = e {
            return Err(ctx.engine_reject(*code));
        }
    }
    Ok(())
}

enum Finished {
    Placed(pb::PlaceOrderResponse),
    Cancelled(pb::CancelOrderResponse),
    Amended(pb::AmendOrderResponse),
}

fn finish(ctx: &Ctx, prepared: Prepared, applied: Applied) -> Result<Finished, Status> {
    rejected(ctx, &applied)?;
    match prepared {
        Prepared::Place {
            cfg,
            account,
            client_order_id,
        } => {
            let mut order_id = 0;
            let mut qty = 0;
            let mut filled = 0;
            let mut cancelled = false;
            let mut fills = Vec::new();
            for e in &applied.events {
                match *e {
                    Event::Accepted {
                        order_id: id,
                        account: a,
                        qty: q,
                        ..
                    } if a == account && order_id == 0 => {
                        order_id = id;
                        qty = q;
                    }
                    Event::Trade {
                        trade_id,
                        price,
                        qty: q,
                        buy_order,
                        sell_order,
                        aggressor,
                        ..
                    } if order_id != 0 && (buy_order == order_id || sell_order == order_id) => {
                        filled += q;
                        let maker = (aggressor == Aggressor::Buy && sell_order == order_id)
                            || (aggressor == Aggressor::Sell && buy_order == order_id);
                        fills.push(pb::Fill {
                            trade_id: trade_id.to_string(),
                            price: canonical(cfg.price_to_decimal(price)),
                            quantity: canonical(cfg.qty_to_decimal(q)),
                            maker,
                            time: Some(timestamp(applied.time_us)),
                        });
                    }
                    Event::OrderCancelled { order_id: id, .. } if id == order_id => {
                        cancelled = true;
                    }
                    _ => {}
                }
            }
            let resting = if cancelled { 0 } else { qty - filled };
            let status = if filled == qty {
                pb::OrderStatus::Filled
            } else if cancelled {
                pb::OrderStatus::Cancelled
            } else if filled > 0 {
                pb::OrderStatus::PartiallyFilled
            } else {
                pb::OrderStatus::Open
            };
            Ok(Finished::Placed(pb::PlaceOrderResponse {
                order_id: order_id.to_string(),
                client_order_id,
                status: status as i32,
                fills,
                filled_quantity: canonical(cfg.qty_to_decimal(filled)),
                resting_quantity: canonical(cfg.qty_to_decimal(resting)),
                sequence: applied.seq,
                accepted_at: Some(timestamp(applied.time_us)),
            }))
        }
        Prepared::Cancel { cfg, order_id } => {
            let qty = applied
                .events
                .iter()
                .find_map(|e| match *e {
                    Event::OrderCancelled {
                        order_id: id, qty, ..
                    } if id == order_id => Some(qty),
                    _ => None,
                })
                .unwrap_or(0);
            Ok(Finished::Cancelled(pb::CancelOrderResponse {
                order_id: order_id.to_string(),
                cancelled_quantity: canonical(cfg.qty_to_decimal(qty)),
                sequence: applied.seq,
            }))
        }
        Prepared::Amend { order_id } => {
            let hub = ctx
                .core
                .hub
                .lock()
                .map_err(|_| ApiReject::Internal.status("", ""))?;
            let order = hub.orders.get(&order_id).map(|o| hub.order_pb(o));
            Ok(Finished::Amended(pb::AmendOrderResponse {
                order,
                fills: Vec::new(),
                sequence: applied.seq,
            }))
        }
    }
}

async fn run(ctx: &Ctx, prepared: (CommandKind, Prepared)) -> Result<Finished, Status> {
    let (kind, prepared) = prepared;
    let applied = ctx.core.command(kind).await?;
    finish(ctx, prepared, applied)
}

fn unexpected() -> Status {
    ApiReject::Internal.status("", "unexpected outcome")
}

/// `rempart.v1.Trading`.
#[derive(Debug, Clone)]
pub struct TradingSvc(pub Ctx);

#[tonic::async_trait]
impl pb::trading_server::Trading for TradingSvc {
    async fn place_order(
        &self,
        req: Request<pb::PlaceOrderRequest>,
    ) -> Result<Response<pb::PlaceOrderResponse>, Status> {
        let c = caller(&req)?;
        match run(&self.0, prepare_place(&self.0, &c, req.get_ref())?).await? {
            Finished::Placed(r) => Ok(Response::new(r)),
            _ => Err(unexpected()),
        }
    }

    async fn cancel_order(
        &self,
        req: Request<pb::CancelOrderRequest>,
    ) -> Result<Response<pb::CancelOrderResponse>, Status> {
        let c = caller(&req)?;
        match run(&self.0, prepare_cancel(&self.0, &c, req.get_ref())?).await? {
            Finished::Cancelled(r) => Ok(Response::new(r)),
            _ => Err(unexpected()),
        }
    }

    async fn amend_order(
        &self,
        req: Request<pb::AmendOrderRequest>,
    ) -> Result<Response<pb::AmendOrderResponse>, Status> {
        let c = caller(&req)?;
        match run(&self.0, prepare_amend(&self.0, &c, req.get_ref())?).await? {
            Finished::Amended(r) => Ok(Response::new(r)),
            _ => Err(unexpected()),
        }
    }

    async fn mass_cancel(
        &self,
        req: Request<pb::MassCancelRequest>,
    ) -> Result<Response<pb::MassCancelResponse>, Status> {
        let c = caller(&req)?;
        c.require(TRADING)?;
        let r = req.get_ref();
        let account = c.account_for(&r.account_id, ADMIN)?;
        let market = if r.market.is_empty() {
            None
        } else {
            Some(self.0.market(&r.market)?.market)
        };
        let applied = self
            .0
            .core
            .command(CommandKind::MassCancel { account, market })
            .await?;
        rejected(&self.0, &applied)?;
        let order_ids: Vec<String> = applied
            .events
            .iter()
            .filter_map(|e| match e {
                Event::OrderCancelled { order_id, .. } => Some(order_id.to_string()),
                _ => None,
            })
            .collect();
        Ok(Response::new(pb::MassCancelResponse {
            sequence: if order_ids.is_empty() { 0 } else { applied.seq },
            order_ids,
        }))
    }

    async fn get_order(
        &self,
        req: Request<pb::GetOrderRequest>,
    ) -> Result<Response<pb::Order>, Status> {
        let c = caller(&req)?;
        c.require(&[Role::Trader, Role::Merchant, Role::Admin, Role::Regulator])?;
        let r = req.get_ref();
        let account = c.account_for(&r.account_id, READERS)?;
        let order_id = self.0.order_id(&r.order_id)?;
        let hub = self
            .0
            .core
            .hub
            .lock()
            .map_err(|_| ApiReject::Internal.status("", ""))?;
        match hub.orders.get(&order_id) {
            // Another account's order is "unknown" to the caller: no existence leak.
            Some(o) if o.account == account || (r.account_id.is_empty() && c.has_any(READERS)) => {
                Ok(Response::new(hub.order_pb(o)))
            }
            _ => Err(ApiReject::UnknownOrder.status("order_id", "")),
        }
    }

    async fn list_orders(
        &self,
        req: Request<pb::ListOrdersRequest>,
    ) -> Result<Response<pb::ListOrdersResponse>, Status> {
        let c = caller(&req)?;
        c.require(&[Role::Trader, Role::Merchant, Role::Admin, Role::Regulator])?;
        let r = req.get_ref();
        let account = c.account_for(&r.account_id, READERS)?;
        let limit = match r.limit as usize {
            0 => 100,
            n => n.min(LIST_ORDERS_MAX),
        };
        let market = if r.market.is_empty() {
            None
        } else {
            Some(self.0.market(&r.market)?.market)
        };
        let hub = self
            .0
            .core
            .hub
            .lock()
            .map_err(|_| ApiReject::Internal.status("", ""))?;
        let orders = hub
            .by_account
            .get(&account)
            .map(|ids| {
                ids.iter()
                    .rev()
                    .filter_map(|id| hub.orders.get(id))
                    .filter(|o| market.is_none_or(|m| m == o.market))
                    .filter(|o| !r.open_only || !o.closed)
                    .take(limit)
                    .map(|o| hub.order_pb(o))
                    .collect()
            })
            .unwrap_or_default();
        Ok(Response::new(pb::ListOrdersResponse { orders }))
    }

    type OrderStreamStream = BoxStream<pb::OrderStreamResponse>;

    async fn order_stream(
        &self,
        req: Request<Streaming<pb::OrderStreamRequest>>,
    ) -> Result<Response<Self::OrderStreamStream>, Status> {
        let c = caller(&req)?;
        c.require(TRADING)?;
        let guard = self.0.gateway.open_stream(c.account)?;
        let mut inbound = req.into_inner();
        let (out_tx, out_rx) = mpsc::channel(STREAM_IN_FLIGHT_MAX);
        type Pending = (
            u64,
            Result<(Prepared, oneshot::Receiver<Result<Applied, Status>>), Status>,
        );
        let (pending_tx, mut pending_rx) = mpsc::channel::<Pending>(STREAM_IN_FLIGHT_MAX);
        let ctx = self.0.clone();
        let mut shutdown = self.0.shutdown.clone();
        tokio::spawn(async move {
            loop {
                let msg = tokio::select! {
                    m = inbound.message() => m,
                    _ = shutdown.changed() => break,
                };
                let Ok(Some(m)) = msg else { break };
                let prepared = match &m.action {
                    Some(pb::order_stream_request::Action::Place(p)) => prepare_place(&ctx, &c, p),
                    Some(pb::order_stream_request::Action::Cancel(p)) => {
                        prepare_cancel(&ctx, &c, p)
                    }
                    Some(pb::order_stream_request::Action::Amend(p)) => prepare_amend(&ctx, &c, p),
                    None => Err(ApiReject::MissingField.status("action", "")),
                };
                let pending = match prepared {
                    Ok((kind, prepared)) => ctx.core.submit(kind).await.map(|rx| (prepared, rx)),
                    Err(s) => Err(s),
                };
                if pending_tx.send((m.request_id, pending)).await.is_err() {
                    break;
                }
            }
        });
        let ctx = self.0.clone();
        tokio::spawn(async move {
            let _guard = guard;
            while let Some((request_id, pending)) = pending_rx.recv().await {
                let outcome = match pending {
                    Ok((prepared, rx)) => match rx.await {
                        Ok(Ok(applied)) => finish(&ctx, prepared, applied),
                        Ok(Err(s)) => Err(s),
                        Err(_) => Err(ApiReject::ShuttingDown.status("", "")),
                    },
                    Err(s) => Err(s),
                };
                use pb::order_stream_response::Result as R;
                let result = match outcome {
                    Ok(Finished::Placed(r)) => R::Placed(r),
                    Ok(Finished::Cancelled(r)) => R::Cancelled(r),
                    Ok(Finished::Amended(r)) => R::Amended(r),
                    Err(s) => R::Error(pb::StreamError {
                        grpc_code: s.code() as i32,
                        detail: detail_of(&s),
                    }),
                };
                let response = pb::OrderStreamResponse {
                    request_id,
                    result: Some(result),
                };
                if out_tx.send(Ok(response)).await.is_err() {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(out_rx))))
    }
}

/// `rempart.v1.MarketData`.
#[derive(Debug, Clone)]
pub struct MarketDataSvc(pub Ctx);

fn channel_of(ev: &pb::MarketDataEvent) -> pb::Channel {
    use pb::market_data_event::Event as E;
    match ev.event {
        Some(E::Trade(_)) => pb::Channel::Trades,
        Some(E::L2Update(_)) | Some(E::Snapshot(_)) => pb::Channel::L2,
        Some(E::Bbo(_)) => pb::Channel::Bbo,
        _ => pb::Channel::Unspecified,
    }
}

#[tonic::async_trait]
impl pb::market_data_server::MarketData for MarketDataSvc {
    async fn get_order_book(
        &self,
        req: Request<pb::GetOrderBookRequest>,
    ) -> Result<Response<pb::OrderBookSnapshot>, Status> {
        caller(&req)?;
        let r = req.get_ref();
        let depth = match r.depth as usize {
            0 => 50,
            n => n.min(BOOK_DEPTH_MAX),
        };
        let hub = self
            .0
            .core
            .hub
            .lock()
            .map_err(|_| ApiReject::Internal.status("", ""))?;
        let md = hub
            .market_by_symbol(&r.market)
            .ok_or_else(|| self.0.engine_reject(RejectCode::UnknownMarket))?;
        Ok(Response::new(md.snapshot(depth, hub.last_time_us)))
    }

    type StreamMarketDataStream = BoxStream<pb::MarketDataEvent>;

    async fn stream_market_data(
        &self,
        req: Request<pb::StreamMarketDataRequest>,
    ) -> Result<Response<Self::StreamMarketDataStream>, Status> {
        let c = caller(&req)?;
        let r = req.into_inner();
        if r.markets.is_empty() {
            return Err(ApiReject::MissingField.status("markets", ""));
        }
        let mut channels: Vec<pb::Channel> = r
            .channels
            .iter()
            .filter_map(|c| pb::Channel::try_from(*c).ok())
            .filter(|c| *c != pb::Channel::Unspecified)
            .collect();
        if channels.is_empty() {
            channels = vec![pb::Channel::Trades, pb::Channel::L2, pb::Channel::Bbo];
        }
        let guard = self.0.gateway.open_stream(c.account)?;
        let (mut rx, snapshots) = {
            let hub = self
                .0
                .core
                .hub
                .lock()
                .map_err(|_| ApiReject::Internal.status("", ""))?;
            let mut snapshots = Vec::new();
            for m in &r.markets {
                let md = hub
                    .market_by_symbol(m)
                    .ok_or_else(|| self.0.engine_reject(RejectCode::UnknownMarket))?;
                if channels.contains(&pb::Channel::L2) {
                    let snap = md.snapshot(BOOK_DEPTH_MAX, hub.last_time_us);
                    snapshots.push(pb::MarketDataEvent {
                        market: md.symbol.clone(),
                        sequence: md.seq,
                        time: snap.time,
                        event: Some(pb::market_data_event::Event::Snapshot(snap)),
                    });
                }
            }
            // Subscribing under the hub lock: nothing can be published between the snapshots
            // and the first streamed event.
            (self.0.core.md_tx.subscribe(), snapshots)
        };
        let (out_tx, out_rx) = mpsc::channel(1024);
        let mut shutdown = self.0.shutdown.clone();
        let markets = r.markets;
        tokio::spawn(async move {
            let _guard = guard;
            for s in snapshots {
                if out_tx.send(Ok(s)).await.is_err() {
                    return;
                }
            }
            loop {
                let ev = tokio::select! {
                    ev = rx.recv() => ev,
                    _ = shutdown.changed() => return,
                };
                match ev {
                    Ok(ev) => {
                        if markets.contains(&ev.market)
                            && channels.contains(&channel_of(&ev))
                            && out_tx.send(Ok((*ev).clone())).await.is_err()
                        {
                            return;
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                        let _ = out_tx
                            .send(Ok(pb::MarketDataEvent {
                                market: String::new(),
                                sequence: 0,
                                time: None,
                                event: Some(pb::market_data_event::Event::Lagged(pb::Lagged {
                                    missed,
                                })),
                            }))
                            .await;
                        return;
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(out_rx))))
    }

    async fn get_trades(
        &self,
        req: Request<pb::GetTradesRequest>,
    ) -> Result<Response<pb::GetTradesResponse>, Status> {
        caller(&req)?;
        let r = req.get_ref();
        let limit = match r.limit as usize {
            0 => 100,
            n => n.min(LIST_TRADES_MAX),
        };
        let hub = self
            .0
            .core
            .hub
            .lock()
            .map_err(|_| ApiReject::Internal.status("", ""))?;
        let md = hub
            .market_by_symbol(&r.market)
            .ok_or_else(|| self.0.engine_reject(RejectCode::UnknownMarket))?;
        let trades = md.trades.iter().rev().take(limit).cloned().collect();
        Ok(Response::new(pb::GetTradesResponse { trades }))
    }

    async fn get_candles(
        &self,
        req: Request<pb::GetCandlesRequest>,
    ) -> Result<Response<pb::GetCandlesResponse>, Status> {
        caller(&req)?;
        let r = req.get_ref();
        let width_us: u64 = match pb::CandleInterval::try_from(r.interval) {
            Ok(pb::CandleInterval::CandleInterval1m) => 60_000_000,
            Ok(pb::CandleInterval::CandleInterval5m) => 300_000_000,
            Ok(pb::CandleInterval::CandleInterval1h) => 3_600_000_000,
            Ok(pb::CandleInterval::CandleInterval1d) => 86_400_000_000,
            _ => return Err(ApiReject::MissingField.status("interval", "")),
        };
        let start = r.start.as_ref().map(time_us_of).unwrap_or(0);
        let end = r.end.as_ref().map(time_us_of).unwrap_or(u64::MAX);
        let hub = self
            .0
            .core
            .hub
            .lock()
            .map_err(|_| ApiReject::Internal.status("", ""))?;
        let md = hub
            .market_by_symbol(&r.market)
            .ok_or_else(|| self.0.engine_reject(RejectCode::UnknownMarket))?;
        let mut candles: Vec<(
            u64,
            rust_decimal::Decimal,
            rust_decimal::Decimal,
            rust_decimal::Decimal,
            rust_decimal::Decimal,
            rust_decimal::Decimal,
            u64,
        )> = Vec::new();
        for t in &md.trades {
            let time = t.time.as_ref().map(time_us_of).unwrap_or(0);
            let open_time = time - time % width_us;
            if open_time < start || open_time >= end {
                continue;
            }
            let (Ok(price), Ok(qty)) = (t.price.parse(), t.quantity.parse()) else {
                continue;
            };
            match candles.last_mut() {
                Some(c) if c.0 == open_time => {
                    c.2 = c.2.max(price);
                    c.3 = c.3.min(price);
                    c.4 = price;
                    c.5 += qty;
                    c.6 += 1;
                }
                _ => {
                    if candles.len() >= CANDLES_MAX {
                        candles.remove(0);
                    }
                    candles.push((open_time, price, price, price, price, qty, 1));
                }
            }
        }
        let candles = candles
            .into_iter()
            .map(|c| pb::Candle {
                open_time: Some(timestamp(c.0)),
                open: canonical(c.1),
                high: canonical(c.2),
                low: canonical(c.3),
                close: canonical(c.4),
                volume: canonical(c.5),
                trade_count: c.6,
            })
            .collect();
        Ok(Response::new(pb::GetCandlesResponse { candles }))
    }
}

/// `rempart.v1.Accounts`.
#[derive(Debug, Clone)]
pub struct AccountsSvc(pub Ctx);

#[tonic::async_trait]
impl pb::accounts_server::Accounts for AccountsSvc {
    async fn get_balances(
        &self,
        req: Request<pb::GetBalancesRequest>,
    ) -> Result<Response<pb::GetBalancesResponse>, Status> {
        let c = caller(&req)?;
        c.require(&[Role::Trader, Role::Merchant, Role::Admin, Role::Regulator])?;
        let account = c.account_for(&req.get_ref().account_id, READERS)?;
        let (seq, list) = self.0.core.balances(account).await?;
        let balances = list
            .into_iter()
            .map(|(asset, available, held)| {
                let d = asset_decimals(asset).unwrap_or(0);
                let av = matching_engine::amount_to_decimal(available, d);
                let he = matching_engine::amount_to_decimal(held, d);
                pb::Balance {
                    asset: asset_code(asset).unwrap_or("?").into(),
                    total: canonical(av + he),
                    available: canonical(av),
                    held: canonical(he),
                }
            })
            .collect();
        Ok(Response::new(pb::GetBalancesResponse {
            account_id: account.to_string(),
            balances,
            sequence: seq,
        }))
    }

    async fn list_transfers(
        &self,
        req: Request<pb::ListTransfersRequest>,
    ) -> Result<Response<pb::ListTransfersResponse>, Status> {
        let c = caller(&req)?;
        let account = c.account_for(&req.get_ref().account_id, READERS)?;
        Ok(Response::new(
            self.0.ledger.list_transfers(account, req.get_ref())?,
        ))
    }

    async fn get_statement(
        &self,
        req: Request<pb::GetStatementRequest>,
    ) -> Result<Response<pb::Statement>, Status> {
        let c = caller(&req)?;
        let account = c.account_for(&req.get_ref().account_id, READERS)?;
        Ok(Response::new(
            self.0
                .ledger
                .statement(&self.0.core, account, req.get_ref())
                .await?,
        ))
    }
}

/// `rempart.v1.Admin`.
#[derive(Debug, Clone)]
pub struct AdminSvc(pub Ctx);

impl AdminSvc {
    fn info(&self, market: u32) -> Result<pb::MarketInfo, Status> {
        let hub = self
            .0
            .core
            .hub
            .lock()
            .map_err(|_| ApiReject::Internal.status("", ""))?;
        let md = hub
            .markets
            .get(&market)
            .ok_or_else(|| self.0.engine_reject(RejectCode::UnknownMarket))?;
        Ok(pb::MarketInfo {
            market: md.symbol.clone(),
            base_asset: asset_code(md.cfg.base_asset).unwrap_or("?").into(),
            quote_asset: asset_code(md.cfg.quote_asset).unwrap_or("?").into(),
            tick_size: canonical(md.cfg.tick_size()),
            lot_size: canonical(md.cfg.lot_size()),
            state: match md.phase {
                matching_engine::MarketPhase::Continuous => pb::MarketState::Continuous,
                matching_engine::MarketPhase::Halted => pb::MarketState::Halted,
                matching_engine::MarketPhase::Auction => pb::MarketState::Auction,
            } as i32,
        })
    }

    async fn phase(
        &self,
        caller: &Caller,
        symbol: &str,
        make: impl FnOnce(u32) -> CommandKind,
    ) -> Result<(pb::MarketInfo, Applied), Status> {
        caller.require(ADMIN)?;
        let market = self.0.market(symbol)?.market;
        let applied = self.0.core.command(make(market)).await?;
        rejected(&self.0, &applied)?;
        Ok((self.info(market)?, applied))
    }
}

fn roles_of(roles: &[i32]) -> Result<Vec<Role>, Status> {
    let roles: Vec<Role> = roles
        .iter()
        .map(|r| Role::try_from(*r).ok().filter(|r| *r != Role::Unspecified))
        .collect::<Option<_>>()
        .ok_or_else(|| ApiReject::InvalidField.status("roles", "unknown role"))?;
    if roles.is_empty() {
        return Err(ApiReject::MissingField.status("roles", ""));
    }
    Ok(roles)
}

#[tonic::async_trait]
impl pb::admin_server::Admin for AdminSvc {
    async fn create_market(
        &self,
        req: Request<pb::CreateMarketRequest>,
    ) -> Result<Response<pb::MarketInfo>, Status> {
        let c = caller(&req)?;
        c.require(ADMIN)?;
        let r = req.get_ref();
        let base = asset_id(&r.base_asset)
            .ok_or_else(|| self.0.engine_reject(RejectCode::UnknownAsset))?;
        let quote = asset_id(&r.quote_asset)
            .ok_or_else(|| self.0.engine_reject(RejectCode::UnknownAsset))?;
        let tick = parse("tick_size", &r.tick_size)?.normalize();
        let lot = parse("lot_size", &r.lot_size)?;
        let base_decimals = asset_decimals(base).unwrap_or(0);
        let lot_minor =
            amount_from_decimal(lot, base_decimals).map_err(|c| self.0.engine_reject(c))?;
        let market = {
            let hub = self
                .0
                .core
                .hub
                .lock()
                .map_err(|_| ApiReject::Internal.status("", ""))?;
            hub.markets.keys().max().copied().unwrap_or(0) + 1
        };
        let cfg = MarketConfig {
            market,
            base_asset: base,
            quote_asset: quote,
            base_decimals,
            quote_decimals: asset_decimals(quote).unwrap_or(0),
            tick_mantissa: u64::try_from(tick.mantissa()).unwrap_or(0),
            tick_scale: tick.scale() as u8,
            lot_size_base_minor: lot_minor,
            min_qty: 1,
            max_qty: 1_000_000,
            max_price: 100_000_000,
            band_bps: 0,
            band_action: matching_engine::BandAction::Reject,
            reference_price: 0,
            market_protection_bps: 500,
            maker_fee_bps: 10,
            taker_fee_bps: 20,
        };
        let applied = self.0.core.command(CommandKind::CreateMarket(cfg)).await?;
        rejected(&self.0, &applied)?;
        let _ = market_symbol(&cfg);
        Ok(Response::new(self.info(market)?))
    }

    async fn halt_market(
        &self,
        req: Request<pb::HaltMarketRequest>,
    ) -> Result<Response<pb::MarketInfo>, Status> {
        let c = caller(&req)?;
        let (info, _) = self
            .phase(&c, &req.get_ref().market, |market| CommandKind::Halt {
                market,
            })
            .await?;
        Ok(Response::new(info))
    }

    async fn resume_market(
        &self,
        req: Request<pb::ResumeMarketRequest>,
    ) -> Result<Response<pb::MarketInfo>, Status> {
        let c = caller(&req)?;
        let (info, _) = self
            .phase(&c, &req.get_ref().market, |market| CommandKind::Resume {
                market,
            })
            .await?;
        Ok(Response::new(info))
    }

    async fn start_auction(
        &self,
        req: Request<pb::StartAuctionRequest>,
    ) -> Result<Response<pb::MarketInfo>, Status> {
        let c = caller(&req)?;
        let (info, _) = self
            .phase(&c, &req.get_ref().market, |market| {
                CommandKind::StartAuction { market }
            })
            .await?;
        Ok(Response::new(info))
    }

    async fn uncross(
        &self,
        req: Request<pb::UncrossRequest>,
    ) -> Result<Response<pb::UncrossResponse>, Status> {
        let c = caller(&req)?;
        let symbol = req.get_ref().market.clone();
        let cfg = self.0.market(&symbol)?;
        let (info, applied) = self
            .phase(&c, &symbol, |market| CommandKind::Uncross { market })
            .await?;
        let (price, volume) = applied
            .events
            .iter()
            .find_map(|e| match *e {
                Event::Uncrossed { price, volume, .. } => Some((price, volume)),
                _ => None,
            })
            .unwrap_or((0, 0));
        let trade_count = applied
            .events
            .iter()
            .filter(|e| matches!(e, Event::Trade { .. }))
            .count() as u64;
        Ok(Response::new(pb::UncrossResponse {
            market: Some(info),
            price: if price == 0 {
                String::new()
            } else {
                canonical(cfg.price_to_decimal(price))
            },
            volume: canonical(cfg.qty_to_decimal(volume)),
            trade_count,
        }))
    }

    async fn create_api_key(
        &self,
        req: Request<pb::CreateApiKeyRequest>,
    ) -> Result<Response<pb::CreateApiKeyResponse>, Status> {
        let c = caller(&req)?;
        c.require(ADMIN)?;
        let r = req.into_inner();
        let account: u64 = r
            .account_id
            .parse()
            .map_err(|_| ApiReject::InvalidField.status("account_id", "decimal account id"))?;
        let roles = roles_of(&r.roles)?;
        if r.label.len() > TEXT_BYTES_MAX {
            return Err(ApiReject::FieldTooLong.status("label", ""));
        }
        let expires_us = r.expires_at.as_ref().map(time_us_of).unwrap_or(0).max(
            // A timestamp at or before the epoch means "already expired", never "never".
            if r.expires_at.is_some() { 1 } else { 0 },
        );
        let keys = self.0.gateway.keys.clone();
        let now = Core::now_us();
        let key = tokio::task::spawn_blocking(move || {
            keys.create(account, &roles, &r.label, now, expires_us)
        })
        .await
        .map_err(|_| ApiReject::Internal.status("", ""))?
        .map_err(|e| ApiReject::InvalidField.status("", &e.to_string()))?;
        Ok(Response::new(pb::CreateApiKeyResponse {
            key_id: key.key_id.clone(),
            token: key.token.as_str().to_string(),
            created_at: Some(timestamp(key.created_us)),
        }))
    }

    async fn revoke_api_key(
        &self,
        req: Request<pb::RevokeApiKeyRequest>,
    ) -> Result<Response<pb::RevokeApiKeyResponse>, Status> {
        let c = caller(&req)?;
        c.require(ADMIN)?;
        let key_id = req.into_inner().key_id;
        match self.0.gateway.keys.revoke(&key_id) {
            Ok(true) => Ok(Response::new(pb::RevokeApiKeyResponse { key_id })),
            Ok(false) => Err(ApiReject::InvalidField.status("key_id", "unknown key")),
            Err(e) => Err(ApiReject::Internal.status("", &e.to_string())),
        }
    }

    async fn set_roles(
        &self,
        req: Request<pb::SetRolesRequest>,
    ) -> Result<Response<pb::SetRolesResponse>, Status> {
        let c = caller(&req)?;
        c.require(ADMIN)?;
        let r = req.into_inner();
        let roles = roles_of(&r.roles)?;
        match self.0.gateway.keys.set_roles(&r.key_id, &roles) {
            Ok(true) => Ok(Response::new(pb::SetRolesResponse {
                key_id: r.key_id,
                roles: r.roles,
            })),
            Ok(false) => Err(ApiReject::InvalidField.status("key_id", "unknown key")),
            Err(e) => Err(ApiReject::Internal.status("", &e.to_string())),
        }
    }
}

/// `rempart.v1.Diagnostics`.
#[derive(Debug, Clone)]
pub struct DiagnosticsSvc;

#[tonic::async_trait]
impl pb::diagnostics_server::Diagnostics for DiagnosticsSvc {
    async fn echo(
        &self,
        req: Request<pb::EchoRequest>,
    ) -> Result<Response<pb::EchoResponse>, Status> {
        caller(&req)?;
        Ok(Response::new(pb::EchoResponse {
            payload: req.into_inner().payload,
        }))
    }
}
