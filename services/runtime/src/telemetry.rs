//! Logs and traces: `tracing` with plain or JSON logs, plus an OTLP/gRPC trace exporter when an
//! endpoint is configured. W3C trace context travels in gRPC metadata and in the outbox.

use std::collections::HashMap;

use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{LogFormat, Settings};

/// Flushes and shuts the exporter down when dropped: keep it alive for the life of `main`.
#[must_use = "dropping the guard stops trace export"]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(err) = provider.shutdown()
        {
            eprintln!("telemetry: flushing spans failed: {err}");
        }
    }
}

/// Installs the global subscriber. `service_name` becomes the `service.name` resource attribute.
/// Safe to call twice (tests): the second call keeps the first subscriber.
pub fn init(settings: &Settings, service_name: &str) -> TelemetryGuard {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&settings.log.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt_layer = match settings.log.format {
        LogFormat::Json => {
            tracing_subscriber::fmt::layer().json().with_current_span(true).flatten_event(true).boxed()
        }
        LogFormat::Plain => tracing_subscriber::fmt::layer().with_target(true).boxed(),
    };

    let endpoint = if settings.telemetry.otlp_endpoint.is_empty() {
        std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").unwrap_or_default()
    } else {
        settings.telemetry.otlp_endpoint.clone()
    };
    let provider = if endpoint.is_empty() {
        None
    } else {
        match build_provider(&endpoint, settings, service_name) {
            Ok(provider) => Some(provider),
            Err(err) => {
                eprintln!("telemetry: OTLP exporter not started: {err}");
                None
            }
        }
    };
    let otel_layer = provider
        .as_ref()
        .map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer(service_name.to_string())));

    let _ = tracing_subscriber::registry().with(filter).with(fmt_layer).with(otel_layer).try_init();
    TelemetryGuard { provider }
}

fn build_provider(
    endpoint: &str,
    settings: &Settings,
    service_name: &str,
) -> Result<SdkTracerProvider, Box<dyn std::error::Error>> {
    let exporter =
        opentelemetry_otlp::SpanExporter::builder().with_tonic().with_endpoint(endpoint).build()?;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(service_name.to_string())
        .with_attributes([
            opentelemetry::KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
            opentelemetry::KeyValue::new("deployment.environment", settings.telemetry.environment.clone()),
        ])
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            settings.telemetry.sampling_ratio,
        ))))
        .with_resource(resource)
        .build())
}

/// The current span's W3C `traceparent` and `tracestate` ("" when not traced).
pub fn current_trace_context() -> (String, String) {
    let cx = tracing::Span::current().context();
    let mut carrier: HashMap<String, String> = HashMap::new();
    TraceContextPropagator::new().inject_context(&cx, &mut carrier);
    (carrier.remove("traceparent").unwrap_or_default(), carrier.remove("tracestate").unwrap_or_default())
}

/// Writes the current trace context into outgoing gRPC metadata.
pub fn inject_into_metadata(metadata: &mut tonic::metadata::MetadataMap) {
    let (traceparent, tracestate) = current_trace_context();
    for (key, value) in [("traceparent", traceparent), ("tracestate", tracestate)] {
        if !value.is_empty()
            && let Ok(v) = value.parse()
        {
            metadata.insert(key, v);
        }
    }
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// Makes `span` a child of the remote span named in the request headers (if any).
pub fn set_remote_parent(span: &tracing::Span, headers: &http::HeaderMap) {
    let parent = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    let _ = span.set_parent(parent);
}
