//! OpenTelemetry export, end to end: the test runs a real OTLP/gRPC collector (the
//! `opentelemetry-proto` TraceService, in this process), starts the `rempart demo` binary
//! pointed at it, calls the API, and checks that the node's spans reach the collector with the
//! service name and the RPC method, and never a credential. Without an endpoint nothing is
//! exported (the node starts and serves as before: the other end-to-end tests).

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use rempart_proto::v1 as pb;
use tonic::{Request, Response, Status};

/// What the collector received: (service.name, span name, attributes as strings).
type Received = Arc<Mutex<Vec<(String, String, HashMap<String, String>)>>>;

#[derive(Clone, Default)]
struct Collector {
    received: Received,
}

fn text(v: &Option<opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let mut received = self.received.lock().expect("lock");
        for rs in request.into_inner().resource_spans {
            let service = rs
                .resource
                .as_ref()
                .and_then(|r| r.attributes.iter().find(|a| a.key == "service.name"))
                .map(|a| text(&a.value))
                .unwrap_or_default();
            for ss in rs.scope_spans {
                for span in ss.spans {
                    let attrs = span
                        .attributes
                        .iter()
                        .map(|a| (a.key.clone(), text(&a.value)))
                        .collect();
                    received.push((service.clone(), span.name, attrs));
                }
            }
        }
        Ok(Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_an_otlp_collector() {
    let collector = Collector::default();
    let received = collector.received.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind collector");
    let collector_addr = listener.local_addr().expect("addr");
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(collector))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let node = common::start_with(dir.path(), |c| {
        c.arg("--otlp-endpoint")
            .arg(format!("http://{collector_addr}"))
            .env("OTEL_BSP_SCHEDULE_DELAY", "100");
    });
    let (grpc, token) = (node.grpc.clone(), node.token("alice"));

    let channel = tonic::transport::Channel::from_shared(format!("http://{grpc}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    let mut diag = pb::diagnostics_client::DiagnosticsClient::new(channel.clone());
    let mut md = pb::market_data_client::MarketDataClient::new(channel);
    let mut echo = Request::new(pb::EchoRequest {
        payload: b"otlp".to_vec(),
    });
    echo.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("ascii"),
    );
    diag.echo(echo).await.expect("echo");
    let mut book = Request::new(pb::GetOrderBookRequest {
        market: "CITY/EUR".into(),
        depth: 5,
    });
    book.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("ascii"),
    );
    md.get_order_book(book).await.expect("book");

    // The batch processor exports every 100 ms here; allow a slow machine 60 s before
    // declaring the spans lost (this is a deadline for failure, not a latency assertion).
    let wanted = [
        "/rempart.v1.Diagnostics/Echo",
        "/rempart.v1.MarketData/GetOrderBook",
    ];
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let seen: Vec<String> = received
            .lock()
            .expect("lock")
            .iter()
            .filter(|(_, name, _)| name == "rpc")
            .filter_map(|(_, _, a)| a.get("rpc.method").cloned())
            .collect();
        if wanted.iter().all(|w| seen.iter().any(|s| s == w)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "spans not exported; collector saw {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(node);

    let received = received.lock().expect("lock");
    for (service, name, attrs) in received.iter() {
        assert_eq!(service, "rempart", "span {name} has service {service}");
        for v in attrs.values() {
            assert!(!v.contains(&token), "a span carries the API key");
        }
    }
}
