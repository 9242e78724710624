//! Server bootstrap shared by every service: health per gRPC service, reflection v1 and v1alpha,
//! the event feed, tower layers (deadline, concurrency limit, load shedding, trace context,
//! internal trust), message size limits and graceful shutdown that drains in-flight calls.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::service::{Routes, RoutesBuilder};
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;
use tower_layer::Layer;
use tower_service::Service;
use tracing::Instrument;

use crate::config::Settings;
use crate::context::{INTERNAL_TOKEN_HEADER, TENANT_HEADER, tokens_match};
use crate::error::Error;

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

/// A shutdown signal that many servers can wait on.
#[derive(Clone)]
pub struct Shutdown(tokio::sync::watch::Receiver<bool>);

/// Fires a [`Shutdown`].
pub struct ShutdownTrigger(tokio::sync::watch::Sender<bool>);

impl Shutdown {
    pub fn new() -> (ShutdownTrigger, Shutdown) {
        let (tx, rx) = tokio::sync::watch::channel(false);
        (ShutdownTrigger(tx), Shutdown(rx))
    }

    /// Completes once the trigger fired (or was dropped).
    pub async fn wait(mut self) {
        let _ = self.0.wait_for(|fired| *fired).await;
    }
}

impl ShutdownTrigger {
    pub fn fire(&self) {
        let _ = self.0.send(true);
    }
}

/// Builds and runs one gRPC server.
pub struct GrpcServer {
    name: &'static str,
    settings: Settings,
    routes: RoutesBuilder,
    health: HealthReporter,
    services: Vec<&'static str>,
    reflection_services: Vec<String>,
    fallback: Option<axum::Router>,
    guard: Arc<dyn CallGuard>,
    /// gRPC-Web over HTTP/1.1 with this CORS policy (the gateway, for browsers).
    web: Option<tower_http::cors::CorsLayer>,
}

impl GrpcServer {
    /// `name` is the process's service name (`cmdb`, `gateway`, …), used in logs.
    pub fn new(name: &'static str, settings: &Settings) -> Self {
        let (health, health_service) = tonic_health::server::health_reporter();
        let mut routes = RoutesBuilder::default();
        routes.add_service(health_service);
        Self {
            name,
            settings: settings.clone(),
            routes,
            health,
            services: Vec::new(),
            reflection_services: Vec::new(),
            fallback: None,
            guard: Arc::new(InternalTokenGuard::new(&settings.auth.internal_token)),
            web: None,
        }
    }

    /// Replaces the default guard (the internal token check) — the gateway authenticates callers.
    pub fn guard(mut self, guard: Arc<dyn CallGuard>) -> Self {
        self.guard = guard;
        self
    }

    /// The health reporter, for servers whose status depends on others (the gateway).
    pub fn health_reporter(&self) -> HealthReporter {
        self.health.clone()
    }

    /// Adds a gRPC service; it gets its own health status and a reflection entry.
    pub fn add_service<S>(mut self, service: S) -> Self
    where
        S: Service<http::Request<Body>, Error = Infallible> + NamedService + Clone + Send + Sync + 'static,
        S::Response: axum::response::IntoResponse,
        S::Future: Send + 'static,
    {
        self.services.push(S::NAME);
        self.reflection_services.push(S::NAME.to_string());
        self.routes.add_service(service);
        self
    }

    /// Lists a service in reflection that this server answers through its fallback (the gateway).
    pub fn reflect_service(mut self, name: &str) -> Self {
        self.reflection_services.push(name.to_string());
        self
    }

    /// Also accepts gRPC-Web (HTTP/1.1, `application/grpc-web*`), translated to gRPC before the
    /// guard sees the call; `cors` answers browsers' preflights and marks allowed origins.
    pub fn grpc_web(mut self, cors: tower_http::cors::CorsLayer) -> Self {
        self.web = Some(cors);
        self
    }

    /// Requests for no registered service go here (the gateway's proxy).
    pub fn fallback(mut self, router: axum::Router) -> Self {
        self.fallback = Some(router);
        self
    }

    /// Serves until `shutdown` completes, then stops accepting, reports NOT_SERVING and drains
    /// in-flight calls for up to `server.shutdown_grace_ms`.
    pub async fn serve(
        mut self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), Error> {
        let mut reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(itsm_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET);
        let mut reflection_alpha = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(itsm_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET);
        for name in self.reflection_services.iter().map(String::as_str).chain(["grpc.health.v1.Health"]) {
            reflection = reflection.with_service_name(name);
            reflection_alpha = reflection_alpha.with_service_name(name);
        }
        let reflection = reflection.build_v1().map_err(|e| Error::Internal(format!("reflection: {e}")))?;
        let reflection_alpha =
            reflection_alpha.build_v1alpha().map_err(|e| Error::Internal(format!("reflection: {e}")))?;
        self.routes.add_service(reflection);
        self.routes.add_service(reflection_alpha);

        for service in &self.services {
            self.health.set_service_status(*service, ServingStatus::Serving).await;
        }
        self.health.set_service_status("", ServingStatus::Serving).await;

        let mut routes: Routes = self.routes.routes();
        if let Some(fallback) = self.fallback.take() {
            routes = Routes::from(routes.into_axum_router().fallback_service(fallback));
        }

        let local_addr = listener.local_addr().map_err(|e| Error::Internal(e.to_string()))?;
        tracing::info!(service = self.name, address = %local_addr, "serving gRPC");
        if self.settings.auth.internal_token.is_empty() && self.name != "gateway" {
            tracing::warn!(
                service = self.name,
                "auth.internal_token is empty: calls are not checked for the gateway's credential"
            );
        }

        let stopping = Arc::new(Notify::new());
        let signal = {
            let health = self.health.clone();
            let services = self.services.clone();
            let stopping = stopping.clone();
            async move {
                shutdown.await;
                for service in services {
                    health.set_service_status(service, ServingStatus::NotServing).await;
                }
                health.set_service_status("", ServingStatus::NotServing).await;
                stopping.notify_one();
            }
        };

        let server_settings = &self.settings.server;
        let builder = tonic::transport::Server::builder()
            .timeout(Duration::from_millis(server_settings.request_timeout_ms))
            .concurrency_limit_per_connection(server_settings.concurrency_limit)
            .load_shed(true)
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            // Large responses (impact analyses, list pages) should not stall on 64 KiB windows.
            .initial_stream_window_size(Some(4 << 20))
            .initial_connection_window_size(Some(8 << 20));
        let call_layer = CallLayer::new(self.name, self.guard.clone()).with_address(local_addr);
        let serve: Pin<Box<dyn Future<Output = Result<(), tonic::transport::Error>> + Send>> =
            match self.web.take() {
                // Layers run outside in: CORS answers preflights, gRPC-Web becomes gRPC, then the guard.
                Some(cors) => Box::pin(
                    builder
                        .accept_http1(true)
                        .layer(cors)
                        .layer(tonic_web::GrpcWebLayer::new())
                        .layer(call_layer)
                        .add_routes(routes)
                        .serve_with_incoming_shutdown(incoming(listener), signal),
                ),
                None => Box::pin(
                    builder
                        .layer(call_layer)
                        .add_routes(routes)
                        .serve_with_incoming_shutdown(incoming(listener), signal),
                ),
            };

        let grace = Duration::from_millis(server_settings.shutdown_grace_ms);
        tokio::select! {
            result = serve => result.map_err(|e| Error::Internal(format!("server: {e}")))?,
            () = async { stopping.notified().await; tokio::time::sleep(grace).await } => {
                tracing::warn!(service = self.name, "shutdown grace period over; dropping remaining calls");
            }
        }
        tracing::info!(service = self.name, "stopped");
        Ok(())
    }
}

/// Accepted connections with Nagle's algorithm off: `serve_with_incoming` ignores the builder's
/// TCP settings, and small gRPC responses would otherwise wait for delayed ACKs (~40 ms).
fn incoming(listener: TcpListener) -> impl futures::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    use futures::StreamExt;
    TcpListenerStream::new(listener).map(|accepted| {
        if let Ok(stream) = &accepted {
            let _ = stream.set_nodelay(true);
        }
        accepted
    })
}

/// Paths any caller may use without credentials (probes, reflection).
pub fn is_open_path(path: &str) -> bool {
    path.starts_with("/grpc.health.v1.Health/") || path.starts_with("/grpc.reflection.")
}

/// Decides whether a call may proceed, and may rewrite its headers (the gateway replaces the
/// caller's credentials with the trusted call context).
pub trait CallGuard: Send + Sync + 'static {
    /// `Err(status)` answers the call with that status without running it.
    fn admit(&self, path: &str, headers: &mut http::HeaderMap) -> Result<(), tonic::Status>;
}

/// Services behind the gateway: calls must carry the shared internal token.
pub struct InternalTokenGuard {
    token: String,
}

impl InternalTokenGuard {
    pub fn new(token: &str) -> Self {
        Self { token: token.to_string() }
    }
}

impl CallGuard for InternalTokenGuard {
    fn admit(&self, path: &str, headers: &mut http::HeaderMap) -> Result<(), tonic::Status> {
        if self.token.is_empty() || is_open_path(path) {
            return Ok(());
        }
        let given = headers.get(INTERNAL_TOKEN_HEADER).map(http::HeaderValue::as_bytes).unwrap_or_default();
        if tokens_match(given, self.token.as_bytes()) {
            Ok(())
        } else {
            Err(tonic::Status::unauthenticated("calls to this service must come through the gateway"))
        }
    }
}

/// While spans are exported, a unary call's request is read on its way to the handler for the
/// resource it names (`itsm.resource`, `itsm.number` on `span`).
fn probe_resource(request: http::Request<Body>, path: &str, span: &tracing::Span) -> http::Request<Body> {
    if !crate::telemetry::exporting() || span.is_disabled() {
        return request;
    }
    let Some(method) =
        crate::rpc_table::RpcTable::suite().and_then(|table| table.get(path)).filter(|m| !m.client_streaming)
    else {
        return request;
    };
    let (parts, body) = request.into_parts();
    let probe = crate::rpc_table::ResourceProbe::new(body, method.input.clone(), span.clone());
    http::Request::from_parts(parts, Body::new(probe))
}

/// Per call: a server span (child of the caller's trace context), the RPC duration metric and
/// the [`CallGuard`].
#[derive(Clone)]
pub struct CallLayer {
    /// The service this server is, inherited by every span of its calls.
    service: Arc<str>,
    guard: Arc<dyn CallGuard>,
    address: Option<std::net::SocketAddr>,
    duration: opentelemetry::metrics::Histogram<f64>,
}

impl CallLayer {
    pub fn new(service: &'static str, guard: Arc<dyn CallGuard>) -> Self {
        let duration = crate::telemetry::meter(service)
            .f64_histogram("rpc.server.call.duration")
            .with_unit("s")
            .with_description("Duration of RPCs handled, by method and gRPC status code")
            .with_boundaries(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0,
                2.5, 5.0, 7.5, 10.0,
            ])
            .build();
        Self { service: Arc::from(service), guard, address: None, duration }
    }

    /// The address the server listens on (`server.address` / `server.port` of its spans).
    pub fn with_address(mut self, address: std::net::SocketAddr) -> Self {
        self.address = Some(address);
        self
    }
}

impl<S> Layer<S> for CallLayer {
    type Service = CallService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CallService { inner, layer: self.clone() }
    }
}

#[derive(Clone)]
pub struct CallService<S> {
    inner: S,
    layer: CallLayer,
}

/// Records one call's duration with its method and status.
struct CallMetric {
    started: std::time::Instant,
    histogram: opentelemetry::metrics::Histogram<f64>,
    service: String,
    method: String,
}

impl CallMetric {
    fn record(self, code: i64) {
        self.histogram.record(
            self.started.elapsed().as_secs_f64(),
            &[
                opentelemetry::KeyValue::new("rpc.system", "grpc"),
                opentelemetry::KeyValue::new("rpc.service", self.service),
                opentelemetry::KeyValue::new("rpc.method", self.method),
                opentelemetry::KeyValue::new("rpc.grpc.status_code", code),
            ],
        );
    }
}

impl<S, ResBody> Service<http::Request<Body>> for CallService<S>
where
    S: Service<http::Request<Body>, Response = http::Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = http::Response<ResBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        let path = request.uri().path().to_string();
        let (rpc_service, rpc_method) =
            path.trim_start_matches('/').split_once('/').unwrap_or((path.as_str(), ""));
        let metric = CallMetric {
            started: std::time::Instant::now(),
            histogram: self.layer.duration.clone(),
            service: rpc_service.to_string(),
            method: rpc_method.to_string(),
        };
        let span = tracing::info_span!(
            "rpc",
            otel.name = %path.trim_start_matches('/'),
            otel.kind = "server",
            rpc.system = "grpc",
            rpc.service = %rpc_service,
            rpc.method = %rpc_method,
            rpc.grpc.status_code = tracing::field::Empty,
            server.address = tracing::field::Empty,
            server.port = tracing::field::Empty,
            itsm.tenant = tracing::field::Empty,
            // The record the call names or acted on (`incidents/INC0000042`) and its number.
            itsm.resource = tracing::field::Empty,
            itsm.number = tracing::field::Empty,
        );
        if let Some(address) = self.layer.address {
            span.record("server.address", tracing::field::display(address.ip()));
            span.record("server.port", address.port());
        }
        crate::telemetry::set_remote_parent(&span, request.headers(), &self.layer.service);

        if let Err(status) = self.layer.guard.admit(&path, request.headers_mut()) {
            span.record("rpc.grpc.status_code", status.code() as i32);
            metric.record(status.code() as i64);
            return Box::pin(async move { Ok(status.into_http::<ResBody>()) });
        }
        if let Some(tenant) = request.headers().get(TENANT_HEADER).and_then(|v| v.to_str().ok()) {
            span.record("itsm.tenant", tenant);
        }
        let request = probe_resource(request, &path, &span);

        // Take the service that was driven to readiness, leave a fresh clone in its place.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(
            async move {
                let response = inner.call(request).await?;
                // A unary error comes "trailers-only", its status in the headers; a success's
                // status follows in the trailers and is 0.
                let code = response
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<i64>().ok())
                    .unwrap_or(0);
                tracing::Span::current().record("rpc.grpc.status_code", code);
                // An access log line, off unless `itsm_runtime::access=debug`.
                tracing::debug!(target: "itsm_runtime::access", code, elapsed_ms = metric.started.elapsed().as_secs_f64() * 1000.0, "call finished");
                metric.record(code);
                Ok(response)
            }
            .instrument(span),
        )
    }
}
