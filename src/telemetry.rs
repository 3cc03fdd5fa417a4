//! Process-wide telemetry: `tracing` to stderr, and, when an OTLP endpoint is configured,
//! OpenTelemetry trace export over gRPC (OTLP). Off unless configured: a node never dials a
//! collector nobody asked for.
//!
//! The SDK's batch span processor exports from its own OS thread and drives the exporter's
//! future with a plain executor, while the OTLP gRPC exporter (tonic, hyper) needs a Tokio
//! reactor. [`OnRuntime`] gives the exporter a small runtime of its own, so export works
//! whichever runtime (or none) the spans were recorded on. The endpoint comes from the node
//! configuration (`otlp_endpoint`), `--otlp-endpoint`, or the standard
//! `OTEL_EXPORTER_OTLP_ENDPOINT`; the standard `OTEL_BSP_*` variables tune batching.

use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// The service name spans carry (`service.name`).
pub const SERVICE_NAME: &str = "rempart";

/// How long shutdown waits for the last spans to reach the collector.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// Keeps the exporter alive; [`Telemetry::shutdown`] flushes what is buffered.
#[derive(Debug, Default)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Flushes and stops the exporter. Call it outside any Tokio runtime (after
    /// `block_on` returned): the exporter's own runtime is dropped here.
    pub fn shutdown(mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(e) = provider.shutdown_with_timeout(SHUTDOWN_TIMEOUT)
        {
            eprintln!("telemetry: flushing spans at shutdown failed: {e}");
        }
    }
}

/// The OTLP exporter on a runtime of its own (see the module docs).
#[derive(Debug)]
struct OnRuntime {
    inner: opentelemetry_otlp::SpanExporter,
    runtime: tokio::runtime::Runtime,
}

impl SpanExporter for OnRuntime {
    fn export(
        &self,
        batch: Vec<SpanData>,
    ) -> impl std::future::Future<Output = OTelSdkResult> + Send {
        // Called on the batch processor's thread, never on a Tokio worker.
        let outcome = self.runtime.block_on(self.inner.export(batch));
        std::future::ready(outcome)
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        let _entered = self.runtime.enter();
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        let _entered = self.runtime.enter();
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.inner.set_resource(resource);
    }
}

/// The endpoint to export to: the configured one, else `OTEL_EXPORTER_OTLP_ENDPOINT`.
/// An empty string means off.
pub fn endpoint_from(configured: Option<&str>) -> Option<String> {
    configured
        .map(str::to_string)
        .or_else(|| std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").ok())
        .filter(|e| !e.trim().is_empty())
}

/// Checks an endpoint's form before anything dials it: `http://` or `https://`, a host.
pub fn validate_endpoint(endpoint: &str) -> anyhow::Result<()> {
    let uri: http::Uri = endpoint
        .parse()
        .map_err(|e| anyhow::anyhow!("otlp_endpoint {endpoint:?}: {e}"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => anyhow::bail!("otlp_endpoint {endpoint:?}: must start with http:// or https://"),
    }
    if uri.host().is_none_or(str::is_empty) {
        anyhow::bail!("otlp_endpoint {endpoint:?}: no host");
    }
    Ok(())
}

/// Installs the global subscriber: stderr logs filtered by `RUST_LOG` (default `info`), and,
/// with an endpoint, an OpenTelemetry layer exporting `rempart`'s spans at INFO and above
/// whatever `RUST_LOG` says (the two are filtered separately).
pub fn init(endpoint: Option<&str>) -> anyhow::Result<Telemetry> {
    let env_filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_filter(env_filter);
    let Some(endpoint) = endpoint else {
        let _ = tracing_subscriber::registry().with(fmt).try_init();
        return Ok(Telemetry::default());
    };
    validate_endpoint(endpoint)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("otlp-export")
        .enable_all()
        .build()?;
    let inner = {
        let _entered = runtime.enter();
        opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .with_timeout(Duration::from_secs(10))
            .build()?
    };
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(OnRuntime { inner, runtime })
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(SERVICE_NAME)
                .build(),
        )
        .build();
    let otel = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer(SERVICE_NAME))
        .with_filter(
            tracing_subscriber::filter::Targets::new().with_target("rempart", tracing::Level::INFO),
        );
    let _ = tracing_subscriber::registry()
        .with(fmt)
        .with(otel)
        .try_init();
    tracing::info!(endpoint, "OpenTelemetry export on");
    Ok(Telemetry {
        provider: Some(provider),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_checked_before_use() {
        assert!(validate_endpoint("http://127.0.0.1:4317").is_ok());
        assert!(validate_endpoint("https://collector.city.example:4317").is_ok());
        for bad in ["127.0.0.1:4317", "ftp://h:1", "http://", "not a uri"] {
            assert!(validate_endpoint(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_empty_endpoint_means_off() {
        assert_eq!(endpoint_from(Some("  ")), None);
        assert_eq!(
            endpoint_from(Some("http://h:4317")).as_deref(),
            Some("http://h:4317")
        );
    }
}
