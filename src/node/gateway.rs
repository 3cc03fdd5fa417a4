//! The gateway layer in front of every service: per-IP and per-key rate limits (governor),
//! bearer-token authentication, and the limits on open streams and order rates that the
//! services consult. A refused call never reaches a service.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tracing::Instrument as _;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tonic::Status;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tower::{Layer, Service};

use super::auth::{Caller, KeyStore};
use super::core::Core;
use super::errors::{ApiReject, detail_of, rate_limited};
use super::limits::{STREAMS_MAX, STREAMS_PER_ACCOUNT_MAX};
use super::metrics::Metrics;

/// Rate limits, per second, with bursts of the same size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    /// RPC calls per API key.
    pub calls_per_key: u32,
    /// RPC calls per client IP address (before authentication, so forged keys are bounded).
    pub calls_per_ip: u32,
    /// Orders (unary or streamed) per account.
    pub orders_per_account: u32,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            calls_per_key: 2_000,
            calls_per_ip: 5_000,
            orders_per_account: 200_000,
        }
    }
}

fn quota(per_second: u32) -> Quota {
    let n = NonZeroU32::new(per_second.max(1)).unwrap_or(NonZeroU32::MIN);
    Quota::per_second(n).allow_burst(n)
}

/// Shared state of the gateway.
pub struct Gateway {
    pub keys: Arc<KeyStore>,
    per_key: DefaultKeyedRateLimiter<String>,
    per_ip: DefaultKeyedRateLimiter<IpAddr>,
    orders: DefaultKeyedRateLimiter<u64>,
    streams: Arc<tokio::sync::Semaphore>,
    streams_per_account: Mutex<HashMap<u64, usize>>,
    metrics: Metrics,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway").finish_non_exhaustive()
    }
}

/// Held while a stream is open; frees its slots when dropped.
#[derive(Debug)]
pub struct StreamGuard {
    gateway: Arc<Gateway>,
    account: u64,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        if let Ok(mut m) = self.gateway.streams_per_account.lock()
            && let Some(n) = m.get_mut(&self.account)
        {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.account);
            }
        }
        self.gateway.metrics.open_streams.dec();
    }
}

fn wait_ms(not_until: &governor::NotUntil<governor::clock::QuantaInstant>) -> u64 {
    not_until
        .wait_time_from(DefaultClock::default().now())
        .as_millis()
        .max(1) as u64
}

impl Gateway {
    /// A gateway over `keys` with `limits`.
    pub fn new(keys: Arc<KeyStore>, limits: RateLimits, metrics: Metrics) -> Arc<Gateway> {
        Arc::new(Gateway {
            keys,
            per_key: RateLimiter::keyed(quota(limits.calls_per_key)),
            per_ip: RateLimiter::keyed(quota(limits.calls_per_ip)),
            orders: RateLimiter::keyed(quota(limits.orders_per_account)),
            streams: Arc::new(tokio::sync::Semaphore::new(STREAMS_MAX)),
            streams_per_account: Mutex::new(HashMap::new()),
            metrics,
        })
    }

    /// Forgets limiter state of idle keys and addresses (bounds memory).
    pub fn housekeeping(&self) {
        self.per_key.retain_recent();
        self.per_ip.retain_recent();
        self.orders.retain_recent();
    }

    /// Counts one order of `account` against its rate.
    pub fn order_allowed(&self, account: u64) -> Result<(), Status> {
        self.orders
            .check_key(&account)
            .map_err(|nu| rate_limited(wait_ms(&nu), "orders per account"))
    }

    /// Opens a stream slot for `account`.
    pub fn open_stream(self: &Arc<Self>, account: u64) -> Result<StreamGuard, Status> {
        let permit = self
            .streams
            .clone()
            .try_acquire_owned()
            .map_err(|_| ApiReject::TooManyStreams.status("", "node"))?;
        {
            let mut m = self
                .streams_per_account
                .lock()
                .map_err(|_| ApiReject::Internal.status("", ""))?;
            let n = m.entry(account).or_insert(0);
            if *n >= STREAMS_PER_ACCOUNT_MAX {
                return Err(ApiReject::TooManyStreams.status("", "account"));
            }
            *n += 1;
        }
        self.metrics.open_streams.inc();
        Ok(StreamGuard {
            gateway: self.clone(),
            account,
            _permit: permit,
        })
    }

    async fn admit<B>(&self, req: &mut http::Request<B>) -> Result<(), Status> {
        if let Some(ip) = remote_ip(req)
            && let Err(nu) = self.per_ip.check_key(&ip)
        {
            return Err(rate_limited(wait_ms(&nu), "calls per IP address"));
        }
        let path = req.uri().path();
        if path.starts_with("/grpc.health.") || path.starts_with("/grpc.reflection.") {
            return Ok(());
        }
        let header = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let caller: Caller = self.keys.verify(header.as_deref(), Core::now_us()).await?;
        if let Err(nu) = self.per_key.check_key(&caller.key_id) {
            return Err(rate_limited(wait_ms(&nu), "calls per API key"));
        }
        req.extensions_mut().insert(caller);
        Ok(())
    }
}

fn remote_ip<B>(req: &http::Request<B>) -> Option<IpAddr> {
    let ext = req.extensions();
    ext.get::<TcpConnectInfo>()
        .and_then(|i| i.remote_addr())
        .or_else(|| {
            ext.get::<TlsConnectInfo<TcpConnectInfo>>()
                .and_then(|i| i.get_ref().remote_addr())
        })
        .map(|a| a.ip())
}

/// The tower layer that puts a [`Gateway`] in front of the services.
#[derive(Debug, Clone)]
pub struct GatewayLayer {
    pub gateway: Arc<Gateway>,
}

impl<S> Layer<S> for GatewayLayer {
    type Service = GatewayService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        GatewayService {
            inner,
            gateway: self.gateway.clone(),
        }
    }
}

/// See [`GatewayLayer`].
#[derive(Debug, Clone)]
pub struct GatewayService<S> {
    inner: S,
    gateway: Arc<Gateway>,
}

impl<S, B, ResBody> Service<http::Request<B>> for GatewayService<S>
where
    S: Service<http::Request<B>, Response = http::Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = http::Response<ResBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        // The clone is not ready; keep the ready one for this call (tower's usual dance).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let gateway = self.gateway.clone();
        // One span per call (a stream is one call): exported when OpenTelemetry is on, free
        // when nothing listens. It names the method only; never a credential or a payload.
        let span = tracing::info_span!("rpc", rpc.system = "grpc", rpc.method = %req.uri().path());
        Box::pin(
            async move {
                match gateway.admit(&mut req).await {
                    Ok(()) => inner.call(req).await,
                    Err(status) => {
                        if let Some(d) = detail_of(&status) {
                            gateway.metrics.reject(d.code);
                        }
                        Ok(status.into_http())
                    }
                }
            }
            .instrument(span),
        )
    }
}
