//! Routes each public gRPC service to the service process that owns it. Unary and streaming
//! calls pass through as HTTP/2 streams, with metadata and `grpc-timeout` (the deadline) intact.
//!
//! On the way, per backend: a circuit breaker answers UNAVAILABLE at once while the backend
//! cannot be reached; reads that fail with UNAVAILABLE are retried within a retry budget (writes
//! never are: the gateway cannot know whether they were applied); mutating calls are written to
//! the audit log with the resource they acted on.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use tonic::transport::Channel;
use tonic_types::{ErrorDetails, StatusExt};
use tower::ServiceExt;
use tower::retry::budget::{Budget, TpsBudget};

use itsm_runtime::config::GatewaySettings;
use itsm_runtime::{Error, Settings};

use crate::circuit::CircuitBreaker;
use crate::rpc_table::{self, RpcTable};

/// A gRPC frame header: compression flag and length.
const FRAME_HEADER: usize = 5;
/// First wait before a retry; doubled for each further one.
const RETRY_BACKOFF: Duration = Duration::from_millis(25);

#[derive(Clone)]
struct Backend {
    name: &'static str,
    channel: Channel,
    circuit: Arc<CircuitBreaker>,
}

/// How reads are retried.
struct RetryPolicy {
    attempts: u32,
    budget: TpsBudget,
}

/// Backend channels by gRPC service name.
#[derive(Clone)]
pub struct Routes {
    by_service: Arc<HashMap<&'static str, Backend>>,
    audit: Option<crate::audit::AuditLog>,
    retry: Arc<RetryPolicy>,
    rpcs: Arc<RpcTable>,
    max_message_bytes: usize,
}

impl Routes {
    /// One lazily connected channel per backend, from `upstream.*` settings.
    pub fn from_settings(settings: &Settings) -> Result<Self, Error> {
        let upstream = &settings.upstream;
        let mut table = Vec::new();
        for (backend, url) in [
            ("service-desk", &upstream.service_desk),
            ("incident", &upstream.incident),
            ("change", &upstream.change),
            ("cmdb", &upstream.cmdb),
            ("delivery", &upstream.delivery),
        ] {
            // A backend with no address is not routed: its calls are UNIMPLEMENTED here.
            let field = format!("upstream.{}", backend.replace('-', "_"));
            if let Some(channel) = itsm_runtime::upstream::channel(url, &field)? {
                for (service, owner) in itsm_proto::PUBLIC_SERVICES {
                    if *owner == backend {
                        table.push((*service, backend, channel.clone()));
                    }
                }
            }
        }
        Self::with_settings(table, &settings.gateway, settings.server.max_message_bytes)
    }

    /// Routes from an explicit table (tests, and deployments that route differently).
    pub fn from_channels(
        table: impl IntoIterator<Item = (&'static str, &'static str, Channel)>,
    ) -> Result<Self, Error> {
        Self::with_settings(table, &GatewaySettings::default(), Settings::default().server.max_message_bytes)
    }

    /// Routes from a table with the gateway's retry and circuit settings.
    pub fn with_settings(
        table: impl IntoIterator<Item = (&'static str, &'static str, Channel)>,
        gateway: &GatewaySettings,
        max_message_bytes: usize,
    ) -> Result<Self, Error> {
        let mut circuits: HashMap<&'static str, Arc<CircuitBreaker>> = HashMap::new();
        let by_service = table
            .into_iter()
            .map(|(service, name, channel)| {
                // One breaker per backend process, shared by the services it serves.
                let circuit = circuits
                    .entry(name)
                    .or_insert_with(|| {
                        Arc::new(CircuitBreaker::new(
                            gateway.circuit_failure_threshold,
                            Duration::from_millis(gateway.circuit_open_ms),
                        ))
                    })
                    .clone();
                (service, Backend { name, channel, circuit })
            })
            .collect();
        let rpcs = RpcTable::of_suite().map_err(|e| Error::Internal(format!("protobuf descriptors: {e}")))?;
        let retry = RetryPolicy {
            attempts: gateway.read_retries,
            // Always allow a few retries a second, so a quiet gateway can still retry.
            budget: TpsBudget::new(Duration::from_secs(10), 5, gateway.retry_budget_percent as f32 / 100.0),
        };
        Ok(Self {
            by_service: Arc::new(by_service),
            audit: None,
            retry: Arc::new(retry),
            rpcs: Arc::new(rpcs),
            max_message_bytes,
        })
    }

    /// Records mutating calls and their results in the audit log.
    pub fn with_audit(mut self, audit: crate::audit::AuditLog) -> Self {
        self.audit = Some(audit);
        self
    }

    /// The backend name and channel for a gRPC service.
    pub fn backend(&self, service: &str) -> Option<(&'static str, Channel)> {
        self.by_service.get(service).map(|b| (b.name, b.channel.clone()))
    }

    /// Whether the backend of `service` is known to be unreachable right now.
    pub fn circuit_open(&self, service: &str) -> bool {
        self.by_service.get(service).is_some_and(|b| b.circuit.is_open(Instant::now()))
    }

    /// The axum fallback that forwards calls for routed services.
    pub fn into_router(self) -> axum::Router {
        let routes = self;
        axum::Router::new().fallback_service(tower::service_fn(
            move |request: http::Request<axum::body::Body>| {
                let routes = routes.clone();
                async move { Ok::<_, Infallible>(routes.forward(request).await) }
            },
        ))
    }

    async fn forward(&self, request: http::Request<axum::body::Body>) -> http::Response<tonic::body::Body> {
        let path = request.uri().path().to_string();
        let service = path.trim_start_matches('/').split('/').next().unwrap_or_default();
        let Some(backend) = self.by_service.get(service).cloned() else {
            return tonic::Status::unimplemented(format!("unknown service {service}")).into_http();
        };
        let method = self.rpcs.get(&path);
        let read = !crate::audit::audited(&path);
        let audit = self.audit.as_ref().filter(|_| !read);
        let (mut parts, body) = request.into_parts();
        // gRPC-Web calls arrive as HTTP/1.1; the backend speaks HTTP/2.
        parts.version = http::Version::HTTP_2;
        // The backend's span is a child of the gateway's, not of the client's.
        itsm_runtime::telemetry::inject_into_headers(&mut parts.headers);

        // Unary requests are small: buffer them so a read can be sent again and a write's
        // resource can be read for the audit log.
        let unary_request = method.is_some_and(|m| !m.client_streaming);
        let buffer = unary_request && ((read && self.retry.attempts > 0) || audit.is_some());
        let mut body = if buffer {
            match Limited::new(body, self.max_message_bytes + FRAME_HEADER).collect().await {
                Ok(collected) => RequestBody::Buffered(collected.to_bytes()),
                Err(err) => {
                    return tonic::Status::resource_exhausted(format!("request could not be read: {err}"))
                        .into_http();
                }
            }
        } else {
            RequestBody::Streaming(Some(body))
        };

        let deadline = grpc_timeout(&parts.headers).map(|t| Instant::now() + t);
        if read {
            self.retry.budget.deposit();
        }
        let mut attempt = 0;
        let response = loop {
            if let Err(wait) = backend.circuit.admit(Instant::now()) {
                break circuit_open(backend.name, wait);
            }
            let Some(outgoing) = body.next_request(&parts) else {
                break tonic::Status::unavailable(format!("{} service unavailable", backend.name))
                    .into_http();
            };
            let response = match backend.channel.clone().oneshot(outgoing).await {
                Ok(response) => {
                    backend.circuit.succeeded();
                    response
                }
                Err(err) => {
                    backend.circuit.failed(Instant::now());
                    tracing::warn!(backend = backend.name, error = %err, "backend unavailable");
                    tonic::Status::unavailable(format!("{} service unavailable", backend.name)).into_http()
                }
            };
            attempt += 1;
            let backoff = RETRY_BACKOFF * 2u32.saturating_pow(attempt - 1);
            let retry = read
                && body.replayable()
                && header_status(&response) == Some(tonic::Code::Unavailable as i32)
                && attempt <= self.retry.attempts
                && deadline.is_none_or(|d| Instant::now() + backoff < d)
                && self.retry.budget.withdraw();
            if !retry {
                break response;
            }
            tracing::debug!(backend = backend.name, path, attempt, "retrying a read");
            tokio::time::sleep(backoff).await;
        };

        let Some(audit) = audit else { return response };
        let header = |key: &str| parts.headers.get(key).and_then(|v| v.to_str().ok()).unwrap_or_default();
        let (tenant, principal, roles) = (
            header(itsm_runtime::context::TENANT_HEADER),
            header(itsm_runtime::context::PRINCIPAL_HEADER),
            header(itsm_runtime::context::ROLES_HEADER),
        );
        let request_message = match (&body, method) {
            (RequestBody::Buffered(bytes), Some(m)) => rpc_table::decode_frame(&m.input, bytes),
            _ => None,
        };
        // A unary response is read whole (it is one message) to name the resource and to see
        // its status in the trailers; a streaming one passes through untouched.
        let (response, status, response_message) = match method.filter(|m| !m.server_streaming) {
            Some(m) => match read_whole(response).await {
                Ok((response, status, data)) => (response, status, rpc_table::decode_frame(&m.output, &data)),
                Err(status) => (status.clone().into_http(), status, None),
            },
            None => {
                let status = header_status(&response).map_or_else(
                    || tonic::Status::ok(""),
                    |code| tonic::Status::new(code.into(), header_message(&response)),
                );
                (response, status, None)
            }
        };
        let resource = rpc_table::resource_name(request_message.as_ref(), response_message.as_ref());
        // The answer names the record a write made (a create's number); it wins over the request's.
        rpc_table::record_resource(&tracing::Span::current(), &resource);
        audit
            .record(crate::audit::Call {
                tenant,
                principal,
                roles,
                method: &path,
                resource: &resource,
                code: status.code() as i32,
                message: status.message(),
            })
            .await;
        response
    }
}

enum RequestBody {
    Buffered(Bytes),
    Streaming(Option<axum::body::Body>),
}

impl RequestBody {
    /// The request for the next attempt; a streaming body can be sent once.
    fn next_request(&mut self, parts: &http::request::Parts) -> Option<http::Request<tonic::body::Body>> {
        let body = match self {
            RequestBody::Buffered(bytes) => tonic::body::Body::new(http_body_util::Full::new(bytes.clone())),
            RequestBody::Streaming(body) => tonic::body::Body::new(body.take()?),
        };
        let mut request = http::Request::new(body);
        *request.method_mut() = parts.method.clone();
        *request.uri_mut() = parts.uri.clone();
        *request.version_mut() = parts.version;
        *request.headers_mut() = parts.headers.clone();
        Some(request)
    }

    fn replayable(&self) -> bool {
        matches!(self, RequestBody::Buffered(_))
    }
}

fn circuit_open(backend: &str, wait: Duration) -> http::Response<tonic::body::Body> {
    tonic::Status::with_error_details(
        tonic::Code::Unavailable,
        format!("{backend} service unavailable (not reachable; next try in {} ms)", wait.as_millis().max(1)),
        ErrorDetails::with_retry_info(Some(wait)),
    )
    .into_http()
}

/// The caller's deadline from `grpc-timeout` (`100m` = 100 ms; units H M S m u n).
fn grpc_timeout(headers: &http::HeaderMap) -> Option<Duration> {
    let text = headers.get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = text.split_at(text.len().checked_sub(1)?);
    let value: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(value.saturating_mul(3600)),
        "M" => Duration::from_secs(value.saturating_mul(60)),
        "S" => Duration::from_secs(value),
        "m" => Duration::from_millis(value),
        "u" => Duration::from_micros(value),
        "n" => Duration::from_nanos(value),
        _ => return None,
    })
}

/// The status of a trailers-only response (an error answered before any message).
fn header_status<B>(response: &http::Response<B>) -> Option<i32> {
    response.headers().get("grpc-status").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok())
}

fn header_message<B>(response: &http::Response<B>) -> String {
    response
        .headers()
        .get("grpc-message")
        .and_then(|v| v.to_str().ok())
        .map(percent_decode)
        .unwrap_or_default()
}

/// Reads a unary response whole: the response to pass on (same head, same data and trailers),
/// its status, and its data.
async fn read_whole(
    response: http::Response<tonic::body::Body>,
) -> Result<(http::Response<tonic::body::Body>, tonic::Status, Bytes), tonic::Status> {
    let (parts, body) = response.into_parts();
    let collected = body.collect().await.map_err(|err| {
        tonic::Status::unavailable(format!("the backend's answer broke off: {}", err.message()))
    })?;
    let trailers = collected.trailers().cloned();
    let data = collected.to_bytes();
    let status = parts
        .headers
        .get("grpc-status")
        .or_else(|| trailers.as_ref().and_then(|t| t.get("grpc-status")))
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .map_or_else(
            || tonic::Status::ok(""),
            |code| {
                let message = parts
                    .headers
                    .get("grpc-message")
                    .or_else(|| trailers.as_ref().and_then(|t| t.get("grpc-message")))
                    .and_then(|v| v.to_str().ok())
                    .map(percent_decode)
                    .unwrap_or_default();
                tonic::Status::new(code.into(), message)
            },
        );
    // No empty DATA frame: an error answer is trailers-only, and h2 clients (0.4.18+) end a
    // connection that has received 100 empty DATA frames as a flood (GOAWAY ENHANCE_YOUR_CALM),
    // which the 101st refused write through one connection used to trigger.
    let mut frames = Vec::with_capacity(2);
    if !data.is_empty() {
        frames.push(Ok::<_, Infallible>(http_body::Frame::data(data.clone())));
    }
    if let Some(trailers) = trailers {
        frames.push(Ok(http_body::Frame::trailers(trailers)));
    }
    let body = tonic::body::Body::new(http_body_util::StreamBody::new(futures::stream::iter(frames)));
    Ok((http::Response::from_parts(parts, body), status, data))
}

/// gRPC percent-encodes `grpc-message`.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(value) = u8::from_str_radix(&text[i + 1..i + 3], 16)
        {
            out.push(value);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
