//! An in-process OTLP/gRPC receiver: what the suite exports, kept in memory, so tests can assert
//! on traces and metrics and benchmarks can export without a collector.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

/// One received span, flattened.
#[derive(Clone, Debug)]
pub struct ReceivedSpan {
    /// `service.name` of the resource that exported it.
    pub service: String,
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    pub name: String,
    /// OTLP span kind: 1 internal, 2 server, 3 client, 4 producer, 5 consumer.
    pub kind: i32,
    pub attributes: BTreeMap<String, String>,
    /// Linked spans as (trace id, span id).
    pub links: Vec<(String, String)>,
}

impl ReceivedSpan {
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

/// One received metric data series: its name and the service that exported it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ReceivedMetric {
    pub service: String,
    pub name: String,
}

#[derive(Default)]
struct Received {
    spans: Vec<ReceivedSpan>,
    span_count: u64,
    metrics: Vec<ReceivedMetric>,
    /// Latest value per (service, metric, attributes) of sums and gauges.
    values: BTreeMap<(String, String, String), f64>,
}

/// A running receiver; stops when dropped.
pub struct OtlpReceiver {
    endpoint: String,
    received: Arc<Mutex<Received>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl OtlpReceiver {
    /// Listens on 127.0.0.1 on a free port, on a thread and runtime of its own (so it outlives
    /// the runtime of the test that started it). With `keep_spans` false only counts spans (for
    /// benchmarks, where keeping them would measure our memory, not the suite's).
    pub fn start(keep_spans: bool) -> std::io::Result<Self> {
        let received = Arc::new(Mutex::new(Received::default()));
        let sink = Sink { received: received.clone(), keep_spans };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (ready, bound) = std::sync::mpsc::channel::<std::io::Result<String>>();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        std::thread::Builder::new().name("otlp-receiver".into()).spawn(move || {
            runtime.block_on(async move {
                let listener = match TcpListener::bind("127.0.0.1:0").await {
                    Ok(listener) => listener,
                    Err(err) => {
                        let _ = ready.send(Err(err));
                        return;
                    }
                };
                let _ = ready.send(listener.local_addr().map(|a| format!("http://{a}")));
                let _ = tonic::transport::Server::builder()
                    .add_service(TraceServiceServer::new(sink.clone()).max_decoding_message_size(64 << 20))
                    .add_service(MetricsServiceServer::new(sink).max_decoding_message_size(64 << 20))
                    .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
                        let _ = stopped.await;
                    })
                    .await;
            });
        })?;
        let endpoint = bound.recv().map_err(|e| std::io::Error::other(e.to_string()))??;
        Ok(Self { endpoint, received, stop: Some(stop) })
    }

    /// `http://127.0.0.1:port`, for `telemetry.otlp_endpoint`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Spans kept so far.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.received.lock().map(|r| r.spans.clone()).unwrap_or_default()
    }

    /// Spans received so far (kept or not).
    pub fn span_count(&self) -> u64 {
        self.received.lock().map(|r| r.span_count).unwrap_or_default()
    }

    /// Metric series received so far (one entry per export of each metric).
    pub fn metrics(&self) -> Vec<ReceivedMetric> {
        self.received.lock().map(|r| r.metrics.clone()).unwrap_or_default()
    }

    /// The latest value of a sum or gauge data point of `metric` exported by `service` whose
    /// attributes, written `key=value` and joined by `,` in key order, are `attributes`.
    pub fn value(&self, service: &str, metric: &str, attributes: &str) -> Option<f64> {
        self.received.lock().ok()?.values.get(&(service.into(), metric.into(), attributes.into())).copied()
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

#[derive(Clone)]
struct Sink {
    received: Arc<Mutex<Received>>,
    keep_spans: bool,
}

fn text(value: Option<&AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn attributes(list: &[KeyValue]) -> BTreeMap<String, String> {
    list.iter().map(|kv| (kv.key.clone(), text(kv.value.as_ref()))).collect()
}

fn service_of(resource: Option<&Resource>) -> String {
    resource
        .map(|r| attributes(&r.attributes))
        .and_then(|a| a.get("service.name").cloned())
        .unwrap_or_default()
}

fn joined(list: &[KeyValue]) -> String {
    attributes(list).iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}

#[tonic::async_trait]
impl TraceService for Sink {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let request = request.into_inner();
        let mut received = self.received.lock().map_err(|_| tonic::Status::internal("receiver poisoned"))?;
        for resource_spans in &request.resource_spans {
            let service = service_of(resource_spans.resource.as_ref());
            for scope in &resource_spans.scope_spans {
                received.span_count += scope.spans.len() as u64;
                if !self.keep_spans {
                    continue;
                }
                for span in &scope.spans {
                    received.spans.push(ReceivedSpan {
                        service: service.clone(),
                        trace_id: hex::encode(&span.trace_id),
                        span_id: hex::encode(&span.span_id),
                        parent_span_id: hex::encode(&span.parent_span_id),
                        name: span.name.clone(),
                        kind: span.kind,
                        attributes: attributes(&span.attributes),
                        links: span
                            .links
                            .iter()
                            .map(|l| (hex::encode(&l.trace_id), hex::encode(&l.span_id)))
                            .collect(),
                    });
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

#[tonic::async_trait]
impl MetricsService for Sink {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        use opentelemetry_proto::tonic::metrics::v1::metric::Data;
        use opentelemetry_proto::tonic::metrics::v1::number_data_point::Value;
        let request = request.into_inner();
        let mut received = self.received.lock().map_err(|_| tonic::Status::internal("receiver poisoned"))?;
        for resource_metrics in &request.resource_metrics {
            let service = service_of(resource_metrics.resource.as_ref());
            for scope in &resource_metrics.scope_metrics {
                for metric in &scope.metrics {
                    received
                        .metrics
                        .push(ReceivedMetric { service: service.clone(), name: metric.name.clone() });
                    let points = match &metric.data {
                        Some(Data::Sum(sum)) => sum.data_points.as_slice(),
                        Some(Data::Gauge(gauge)) => gauge.data_points.as_slice(),
                        _ => &[],
                    };
                    for point in points {
                        let value = match point.value {
                            Some(Value::AsDouble(d)) => d,
                            Some(Value::AsInt(i)) => i as f64,
                            None => continue,
                        };
                        received
                            .values
                            .insert((service.clone(), metric.name.clone(), joined(&point.attributes)), value);
                    }
                }
            }
        }
        Ok(tonic::Response::new(ExportMetricsServiceResponse { partial_success: None }))
    }
}
