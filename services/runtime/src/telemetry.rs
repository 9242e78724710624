//! Logs, traces and metrics.
//!
//! - Logs: `tracing` with plain or JSON lines; JSON lines carry the `trace_id` and `span_id`.
//! - Traces: `tracing-opentelemetry` over one tracer. W3C trace context travels in gRPC metadata
//!   and in the outbox. Every span is tagged with the service it ran in (through a value in its
//!   OpenTelemetry context that children inherit), so `itsm up`, which runs every service in one
//!   process, still exports each service's spans under its own `service.name`. Spans are queued
//!   (bounded by `telemetry.max_queue_size`) and exported by one background thread; a span that
//!   finds the queue full, or whose export fails, is counted in `itsm.telemetry.spans.dropped`.
//! - Metrics: one OpenTelemetry meter provider per service (again for its `service.name`),
//!   exported over OTLP every `telemetry.metrics_interval_ms`.
//!
//! Without an OTLP endpoint nothing is exported, but trace ids are still made and propagated,
//! so the logs of one request share a trace id across services.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use opentelemetry::metrics::{Meter, MeterProvider as _};
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{SpanContext, TraceContextExt, TracerProvider as _};
use opentelemetry::{Context as OtelContext, KeyValue};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider, SpanData, SpanExporter, SpanProcessor};
use tokio::sync::mpsc;
use tracing::Subscriber;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields, MakeWriter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{LogFormat, Settings, TelemetrySettings};

/// Span attribute naming the service a span ran in (`incident`, `gateway`, …).
pub const SERVICE_ATTRIBUTE: &str = "itsm.service";

/// The `service.name` of a service: `itsm-incident` for `incident`.
pub fn service_name(service: &str) -> String {
    if service.starts_with("itsm") { service.to_string() } else { format!("itsm-{service}") }
}

/// Carried in the OpenTelemetry context of a service's root spans; their children inherit it.
#[derive(Clone, Debug)]
struct ServiceTag(Arc<str>);

/// Flushes and stops export when dropped: keep it alive for the life of `main`.
#[must_use = "dropping the guard stops telemetry export"]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(state) = STATE.get() {
            state.shutdown_meters();
        }
        if let Some(provider) = self.provider.take()
            && let Err(err) = provider.shutdown()
        {
            eprintln!("telemetry: flushing spans failed: {err}");
        }
    }
}

/// Process-wide telemetry state, set by the first [`init`].
struct State {
    settings: TelemetrySettings,
    endpoint: String,
    default_service: String,
    export: Option<Arc<SpanExport>>,
    meters: Mutex<HashMap<String, SdkMeterProvider>>,
    /// Observable instruments whose callbacks must stay registered.
    kept: Mutex<Vec<Box<dyn std::any::Any + Send + Sync>>>,
}

static STATE: OnceLock<State> = OnceLock::new();

/// Installs the global subscriber. `default_service` is the `service.name` of spans and metrics
/// that belong to no service (`itsm` in `itsm up`, `itsm-incident` in `itsm serve incident`).
/// Safe to call twice (tests): the second call keeps the first subscriber.
pub fn init(settings: &Settings, default_service: &str) -> TelemetryGuard {
    init_with_writer(settings, default_service, std::io::stdout)
}

/// [`init`] with logs written to `writer` (tests read their own logs).
pub fn init_with_writer<W>(settings: &Settings, default_service: &str, writer: W) -> TelemetryGuard
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    if STATE.get().is_some() {
        return TelemetryGuard { provider: None };
    }
    let endpoint = if settings.telemetry.otlp_endpoint.is_empty() {
        std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").unwrap_or_default()
    } else {
        settings.telemetry.otlp_endpoint.clone()
    };
    let export = if endpoint.is_empty() {
        None
    } else {
        match SpanExport::start(&endpoint, &settings.telemetry) {
            Ok(export) => Some(Arc::new(export)),
            Err(err) => {
                eprintln!("telemetry: OTLP export not started: {err}");
                None
            }
        }
    };
    let state = State {
        settings: settings.telemetry.clone(),
        endpoint: if export.is_some() { endpoint } else { String::new() },
        default_service: default_service.to_string(),
        export: export.clone(),
        meters: Mutex::new(HashMap::new()),
        kept: Mutex::new(Vec::new()),
    };
    if STATE.set(state).is_err() {
        return TelemetryGuard { provider: None };
    }

    let mut builder = SdkTracerProvider::builder().with_sampler(Sampler::ParentBased(Box::new(
        Sampler::TraceIdRatioBased(settings.telemetry.sampling_ratio),
    )));
    if let Some(export) = &export {
        builder = builder.with_span_processor(ServiceRouter { export: export.clone() });
        observe_dropped_spans(export.clone());
    }
    let provider = builder.build();
    let otel_layer = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("itsm"))
        .with_location(false)
        .with_threads(false)
        .with_tracked_inactivity(false)
        .with_filter(tracing_subscriber::filter::DynFilterFn::new(|metadata, cx| {
            // SQL outside any span (consumer leases and cursors, idle sweeps) would each make
            // a trace of its own: noise. Inside a request, a consumer span or a sweep pass's
            // span, every statement is traced.
            *metadata.level() <= tracing::Level::INFO
                && (!metadata.is_span()
                    || !metadata.target().starts_with("sea_orm")
                    || cx.lookup_current().is_some())
        }));

    // SQL statements are spans for traces, not log lines.
    let level = if settings.log.level.contains("sea_orm") {
        settings.log.level.clone()
    } else {
        format!("{},sea_orm=warn", settings.log.level)
    };
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt_layer = match settings.log.format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .fmt_fields(JsonFields::new())
            .event_format(JsonLine)
            .with_writer(writer)
            .with_filter(filter)
            .boxed(),
        LogFormat::Plain => {
            tracing_subscriber::fmt::layer().with_target(true).with_writer(writer).with_filter(filter).boxed()
        }
    };
    let _ = tracing_subscriber::registry().with(otel_layer).with(fmt_layer).try_init();
    TelemetryGuard { provider: Some(provider) }
}

impl State {
    fn shutdown_meters(&self) {
        let meters: Vec<SdkMeterProvider> =
            self.meters.lock().map(|mut m| m.drain().map(|(_, p)| p).collect()).unwrap_or_default();
        for provider in meters {
            if let Err(err) = provider.shutdown() {
                eprintln!("telemetry: flushing metrics failed: {err}");
            }
        }
    }
}

/// The meter of `service` (`incident`, …): exported under its `service.name` when an OTLP
/// endpoint is configured, a no-op meter otherwise.
pub fn meter(service: &str) -> Meter {
    let Some(state) = STATE.get().filter(|s| !s.endpoint.is_empty()) else {
        return opentelemetry::global::meter("itsm");
    };
    let name = service_name(service);
    let mut meters = match state.meters.lock() {
        Ok(meters) => meters,
        Err(poisoned) => poisoned.into_inner(),
    };
    if let Some(provider) = meters.get(&name) {
        return provider.meter("itsm");
    }
    let Some(export) = &state.export else { return opentelemetry::global::meter("itsm") };
    // The exporter's channel runs on the export thread's runtime, like the span exporters.
    let built = {
        let _runtime = export.runtime.enter();
        opentelemetry_otlp::MetricExporter::builder()
            .with_tonic()
            .with_endpoint(state.endpoint.clone())
            .build()
    };
    match built {
        Ok(exporter) => {
            let reader = PeriodicReader::builder(exporter)
                .with_interval(Duration::from_millis(state.settings.metrics_interval_ms))
                .build();
            let provider = SdkMeterProvider::builder()
                .with_reader(reader)
                .with_resource(resource(&name, &state.settings))
                .build();
            let meter = provider.meter("itsm");
            meters.insert(name, provider);
            meter
        }
        Err(err) => {
            eprintln!("telemetry: OTLP metrics exporter for {name} not started: {err}");
            opentelemetry::global::meter("itsm")
        }
    }
}

/// Whether metrics and spans are exported (work done only for metrics can be skipped when not).
pub fn exporting() -> bool {
    STATE.get().is_some_and(|s| !s.endpoint.is_empty())
}

/// Keeps an observable instrument (and so its callback) for the life of the process.
pub fn keep<T: Send + Sync + 'static>(instrument: T) {
    if let Some(state) = STATE.get()
        && let Ok(mut kept) = state.kept.lock()
    {
        kept.push(Box::new(instrument));
    }
}

/// Spans dropped so far because the export queue was full or an export failed.
pub fn dropped_spans() -> u64 {
    STATE
        .get()
        .and_then(|s| s.export.as_ref())
        .map_or(0, |e| e.dropped_full.load(Ordering::Relaxed) + e.dropped_failed.load(Ordering::Relaxed))
}

/// Asks the exporter to send every finished span now, waiting up to `timeout`.
pub fn flush(timeout: Duration) {
    if let Some(export) = STATE.get().and_then(|s| s.export.as_ref()) {
        let _ = export.request(ControlKind::Flush, timeout);
    }
    if let Some(state) = STATE.get() {
        let meters: Vec<SdkMeterProvider> =
            state.meters.lock().map(|m| m.values().cloned().collect()).unwrap_or_default();
        for provider in meters {
            let _ = provider.force_flush();
        }
    }
}

fn observe_dropped_spans(export: Arc<SpanExport>) {
    let default_service = STATE.get().map(|s| s.default_service.clone()).unwrap_or_default();
    let counter = meter(&default_service)
        .u64_observable_counter("itsm.telemetry.spans.dropped")
        .with_unit("{span}")
        .with_description("Spans not exported: the export queue was full, or the export failed")
        .with_callback(move |observer| {
            observer.observe(
                export.dropped_full.load(Ordering::Relaxed),
                &[KeyValue::new("reason", "queue_full")],
            );
            observer.observe(
                export.dropped_failed.load(Ordering::Relaxed),
                &[KeyValue::new("reason", "export_failed")],
            );
        })
        .build();
    keep(counter);
}

fn resource(service_name: &str, settings: &TelemetrySettings) -> Resource {
    Resource::builder()
        .with_service_name(service_name.to_string())
        .with_attributes([
            KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
            KeyValue::new("deployment.environment", settings.environment.clone()),
        ])
        .build()
}

// ---------------------------------------------------------------------------------------------
// Span export: a bounded queue and one thread that batches per service.

#[derive(Debug)]
struct SpanExport {
    spans: mpsc::Sender<SpanData>,
    control: mpsc::UnboundedSender<ControlMessage>,
    dropped_full: AtomicU64,
    dropped_failed: Arc<AtomicU64>,
    runtime: tokio::runtime::Handle,
}

#[derive(Debug)]
struct ControlMessage(ControlKind, std::sync::mpsc::Sender<()>);

#[derive(Debug, Clone, Copy, PartialEq)]
enum ControlKind {
    Flush,
    Shutdown,
}

impl SpanExport {
    fn start(endpoint: &str, settings: &TelemetrySettings) -> Result<Self, String> {
        let (spans, spans_rx) = mpsc::channel(settings.max_queue_size);
        let (control, control_rx) = mpsc::unbounded_channel();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .thread_name("itsm-telemetry")
            .build()
            .map_err(|e| format!("telemetry runtime: {e}"))?;
        let handle = runtime.handle().clone();
        let dropped_failed = Arc::new(AtomicU64::new(0));
        let worker = ExportWorker {
            endpoint: endpoint.to_string(),
            settings: settings.clone(),
            exporters: HashMap::new(),
            dropped_failed: dropped_failed.clone(),
        };
        std::thread::Builder::new()
            .name("itsm-telemetry".into())
            .spawn(move || runtime.block_on(worker.run(spans_rx, control_rx)))
            .map_err(|e| format!("telemetry thread: {e}"))?;
        Ok(Self { spans, control, dropped_full: AtomicU64::new(0), dropped_failed, runtime: handle })
    }

    /// Asks the worker to export everything queued (and to stop, for `Shutdown`); waits for it.
    fn request(&self, kind: ControlKind, timeout: Duration) -> OTelSdkResult {
        let (reply, answered) = std::sync::mpsc::channel();
        self.control
            .send(ControlMessage(kind, reply))
            .map_err(|_| opentelemetry_sdk::error::OTelSdkError::AlreadyShutdown)?;
        answered.recv_timeout(timeout).map_err(|_| opentelemetry_sdk::error::OTelSdkError::Timeout(timeout))
    }
}

struct ExportWorker {
    endpoint: String,
    settings: TelemetrySettings,
    exporters: HashMap<String, opentelemetry_otlp::SpanExporter>,
    dropped_failed: Arc<AtomicU64>,
}

impl ExportWorker {
    async fn run(
        mut self,
        mut spans: mpsc::Receiver<SpanData>,
        mut control: mpsc::UnboundedReceiver<ControlMessage>,
    ) {
        let batch_size = self.settings.max_export_batch_size;
        let mut interval = tokio::time::interval(Duration::from_millis(self.settings.export_delay_ms));
        let mut pending: Vec<SpanData> = Vec::with_capacity(batch_size);
        loop {
            tokio::select! {
                message = control.recv() => {
                    let Some(ControlMessage(kind, reply)) = message else { break };
                    while let Ok(span) = spans.try_recv() {
                        pending.push(span);
                    }
                    self.export(&mut pending).await;
                    let _ = reply.send(());
                    if kind == ControlKind::Shutdown {
                        for exporter in self.exporters.values_mut() {
                            let _ = exporter.shutdown();
                        }
                        break;
                    }
                }
                received = spans.recv_many(&mut pending, batch_size) => {
                    if received == 0 {
                        self.export(&mut pending).await;
                        break;
                    }
                    if pending.len() >= batch_size {
                        self.export(&mut pending).await;
                    }
                }
                _ = interval.tick() => self.export(&mut pending).await,
            }
        }
    }

    /// Exports `pending` grouped by service, then empties it.
    async fn export(&mut self, pending: &mut Vec<SpanData>) {
        if pending.is_empty() {
            return;
        }
        let mut by_service: HashMap<String, Vec<SpanData>> = HashMap::new();
        for mut span in pending.drain(..) {
            let mut service = None;
            span.attributes.retain_mut(|kv| {
                if kv.key.as_str() == SERVICE_ATTRIBUTE {
                    service = Some(kv.value.as_str().into_owned());
                } else if kv.key.as_str() == "db.statement" {
                    *kv = KeyValue::new("db.query.text", sanitize_sql(&kv.value.as_str()));
                }
                true
            });
            let name = service.map_or_else(String::new, |s| service_name(&s));
            by_service.entry(name).or_default().push(span);
        }
        for (service, batch) in by_service {
            let count = batch.len() as u64;
            let service = if service.is_empty() {
                STATE.get().map(|s| s.default_service.clone()).unwrap_or_default()
            } else {
                service
            };
            let exporter = match self.exporter(&service) {
                Ok(exporter) => exporter,
                Err(err) => {
                    eprintln!("telemetry: span exporter for {service}: {err}");
                    self.dropped_failed.fetch_add(count, Ordering::Relaxed);
                    continue;
                }
            };
            if exporter.export(batch).await.is_err() {
                self.dropped_failed.fetch_add(count, Ordering::Relaxed);
            }
        }
    }

    fn exporter(&mut self, service: &str) -> Result<&opentelemetry_otlp::SpanExporter, String> {
        if !self.exporters.contains_key(service) {
            let mut exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(self.endpoint.clone())
                .build()
                .map_err(|e| e.to_string())?;
            exporter.set_resource(&resource(service, &self.settings));
            self.exporters.insert(service.to_string(), exporter);
        }
        self.exporters.get(service).ok_or_else(|| "exporter missing".to_string())
    }
}

/// Tags spans with their service and hands finished sampled spans to the export queue.
#[derive(Debug)]
struct ServiceRouter {
    export: Arc<SpanExport>,
}

impl SpanProcessor for ServiceRouter {
    fn on_start(&self, span: &mut opentelemetry_sdk::trace::Span, cx: &OtelContext) {
        if let Some(tag) = cx.get::<ServiceTag>() {
            let value = opentelemetry::Value::String(tag.0.clone().into());
            opentelemetry::trace::Span::set_attribute(span, KeyValue::new(SERVICE_ATTRIBUTE, value));
        }
    }

    fn on_end(&self, span: SpanData) {
        if !span.span_context.is_sampled() {
            return;
        }
        if self.export.spans.try_send(span).is_err() {
            self.export.dropped_full.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.export.request(ControlKind::Flush, Duration::from_secs(5))
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.export.request(ControlKind::Shutdown, timeout)
    }
}

/// Replaces string and number literals with `?`: statements are parameterised, but a literal
/// written into SQL text must not carry data into traces.
pub fn sanitize_sql(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    let mut previous: char = ' ';
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                // Skip to the closing quote; '' inside a literal is an escaped quote.
                while let Some(d) = chars.next() {
                    if d == '\'' {
                        if chars.peek() == Some(&'\'') {
                            chars.next();
                        } else {
                            break;
                        }
                    }
                }
                out.push('?');
                previous = '?';
            }
            '0'..='9' if !(previous.is_alphanumeric() || previous == '_' || previous == '$') => {
                while chars.peek().is_some_and(|d| d.is_ascii_digit() || *d == '.') {
                    chars.next();
                }
                out.push('?');
                previous = '?';
            }
            _ => {
                out.push(c);
                previous = c;
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Context propagation.

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
        if value.is_empty() {
            metadata.remove(key);
        } else if let Ok(v) = value.parse() {
            metadata.insert(key, v);
        }
    }
}

struct HeaderInjector<'a>(&'a mut http::HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) =
            (http::HeaderName::from_bytes(key.as_bytes()), http::HeaderValue::from_str(&value))
        {
            self.0.insert(name, value);
        }
    }
}

/// Replaces the trace context in forwarded HTTP headers with the current span's (the gateway's
/// proxy: the backend's span is a child of the gateway's, not of the client's).
pub fn inject_into_headers(headers: &mut http::HeaderMap) {
    headers.remove("traceparent");
    headers.remove("tracestate");
    let cx = tracing::Span::current().context();
    TraceContextPropagator::new().inject_context(&cx, &mut HeaderInjector(headers));
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

/// Makes `span` a span of `service`, child of the remote span named in the request headers
/// (if any).
pub fn set_remote_parent(span: &tracing::Span, headers: &http::HeaderMap, service: &Arc<str>) {
    let parent = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    let _ = span.set_parent(parent.with_value(ServiceTag(service.clone())));
}

/// Makes `span` a root span of `service` (event consumers, sweeps).
pub fn set_root(span: &tracing::Span, service: &Arc<str>) {
    let _ = span.set_parent(OtelContext::new().with_value(ServiceTag(service.clone())));
}

/// Links `span` (not yet entered) to the span a W3C `traceparent` names: a consumer's span to
/// the span that wrote the event.
pub fn link_to(span: &tracing::Span, traceparent: &str, tracestate: &str) {
    if let Some(context) = remote_span_context(traceparent, tracestate) {
        span.add_link(context);
    }
}

fn remote_span_context(traceparent: &str, tracestate: &str) -> Option<SpanContext> {
    if traceparent.is_empty() {
        return None;
    }
    let carrier: HashMap<String, String> = [
        ("traceparent".to_string(), traceparent.to_string()),
        ("tracestate".to_string(), tracestate.to_string()),
    ]
    .into_iter()
    .collect();
    let cx = TraceContextPropagator::new().extract(&carrier);
    let context = cx.span().span_context().clone();
    context.is_valid().then_some(context)
}

// ---------------------------------------------------------------------------------------------
// JSON log lines.

/// One JSON object per event: timestamp, level, target, the event's fields, the innermost
/// span's name and fields, and the OpenTelemetry trace and span ids.
struct JsonLine;

impl<S, N> FormatEvent<S, N> for JsonLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let metadata = event.metadata();
        let mut line = serde_json::Map::new();
        line.insert(
            "timestamp".into(),
            chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true).into(),
        );
        line.insert("level".into(), metadata.level().as_str().into());
        line.insert("target".into(), metadata.target().into());
        event.record(&mut JsonVisitor(&mut line));
        if let Some(span) = ctx.lookup_current() {
            let mut fields = span
                .extensions()
                .get::<FormattedFields<N>>()
                .and_then(|f| serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(f).ok())
                .unwrap_or_default();
            fields.insert("name".into(), span.name().into());
            line.insert("span".into(), fields.into());
        }
        let cx = tracing::Span::current().context();
        let span_context = cx.span().span_context().clone();
        if span_context.is_valid() {
            line.insert("trace_id".into(), span_context.trace_id().to_string().into());
            line.insert("span_id".into(), span_context.span_id().to_string().into());
        }
        writeln!(writer, "{}", serde_json::Value::Object(line))
    }
}

struct JsonVisitor<'a>(&'a mut serde_json::Map<String, serde_json::Value>);

impl tracing::field::Visit for JsonVisitor<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().into(), format!("{value:?}").into());
    }

    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_i64(&mut self, field: &tracing::field::Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_bool(&mut self, field: &tracing::field::Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_f64(&mut self, field: &tracing::field::Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_leave_sql_text() {
        assert_eq!(
            sanitize_sql("SELECT * FROM t WHERE a = 'x''y' AND b = 42 AND c = $1 AND d2 = 3.5"),
            "SELECT * FROM t WHERE a = ? AND b = ? AND c = $1 AND d2 = ?"
        );
        assert_eq!(sanitize_sql("INSERT INTO t2 (a) VALUES ($1)"), "INSERT INTO t2 (a) VALUES ($1)");
    }

    #[test]
    fn service_names() {
        assert_eq!(service_name("incident"), "itsm-incident");
        assert_eq!(service_name("itsm-cmdb"), "itsm-cmdb");
        assert_eq!(service_name("itsm"), "itsm");
    }

    fn span(sampled: bool) -> SpanData {
        use opentelemetry::trace::{SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState};
        let flags = if sampled { TraceFlags::SAMPLED } else { TraceFlags::default() };
        SpanData {
            span_context: SpanContext::new(
                TraceId::from(7u128),
                SpanId::from(9u64),
                flags,
                false,
                TraceState::default(),
            ),
            parent_span_id: SpanId::INVALID,
            parent_span_is_remote: false,
            span_kind: SpanKind::Internal,
            name: "work".into(),
            start_time: std::time::SystemTime::now(),
            end_time: std::time::SystemTime::now(),
            attributes: vec![KeyValue::new(SERVICE_ATTRIBUTE, "incident")],
            dropped_attributes_count: 0,
            events: Default::default(),
            links: Default::default(),
            status: Status::Unset,
            instrumentation_scope: Default::default(),
        }
    }

    #[test]
    fn every_span_not_exported_is_counted() {
        let settings =
            TelemetrySettings { max_queue_size: 1, max_export_batch_size: 1, ..Default::default() };
        // Nothing listens on the discard port: every export fails.
        let export = Arc::new(SpanExport::start("http://127.0.0.1:9", &settings).unwrap());
        let router = ServiceRouter { export: export.clone() };
        for _ in 0..5 {
            router.on_end(span(true));
        }
        router.on_end(span(false));
        router.force_flush().unwrap();
        let full = export.dropped_full.load(Ordering::Relaxed);
        let failed = export.dropped_failed.load(Ordering::Relaxed);
        assert_eq!(
            full + failed,
            5,
            "queue full {full} + export failed {failed}; unsampled spans are not queued"
        );
        router.shutdown_with_timeout(Duration::from_secs(5)).unwrap();
    }

    #[test]
    fn traceparent_round_trips_into_a_link_context() {
        let context = remote_span_context("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "")
            .expect("valid");
        assert_eq!(context.trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert!(remote_span_context("", "").is_none());
        assert!(remote_span_context("garbage", "").is_none());
    }
}
