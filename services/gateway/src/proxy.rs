//! Routes each public gRPC service to the service process that owns it. Unary and streaming
//! calls pass through as HTTP/2 streams, with metadata and `grpc-timeout` (the deadline) intact.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use tonic::transport::Channel;
use tower::ServiceExt;

use itsm_runtime::{Error, Settings};

/// Backend channels by gRPC service name.
#[derive(Clone)]
pub struct Routes {
    by_service: Arc<HashMap<&'static str, (&'static str, Channel)>>,
    audit: Option<crate::audit::AuditLog>,
}

impl Routes {
    /// One lazily connected channel per backend, from `upstream.*` settings.
    pub fn from_settings(settings: &Settings) -> Result<Self, Error> {
        let upstream = &settings.upstream;
        let mut channels: HashMap<&'static str, Channel> = HashMap::new();
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
                channels.insert(backend, channel);
            }
        }
        let by_service = itsm_proto::PUBLIC_SERVICES
            .iter()
            .filter_map(|(service, backend)| {
                channels.get(backend).map(|ch| (*service, (*backend, ch.clone())))
            })
            .collect();
        Ok(Self { by_service: Arc::new(by_service), audit: None })
    }

    /// Records mutating calls and their results in the audit log.
    pub fn with_audit(mut self, audit: crate::audit::AuditLog) -> Self {
        self.audit = Some(audit);
        self
    }

    /// Routes from an explicit table (tests, and deployments that route differently).
    pub fn from_channels(table: impl IntoIterator<Item = (&'static str, &'static str, Channel)>) -> Self {
        let by_service =
            table.into_iter().map(|(service, backend, channel)| (service, (backend, channel))).collect();
        Self { by_service: Arc::new(by_service), audit: None }
    }

    /// The backend name and channel for a gRPC service.
    pub fn backend(&self, service: &str) -> Option<(&'static str, Channel)> {
        self.by_service.get(service).cloned()
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
        let path = request.uri().path();
        let service = path.trim_start_matches('/').split('/').next().unwrap_or_default();
        let Some((backend, channel)) = self.backend(service) else {
            return tonic::Status::unimplemented(format!("unknown service {service}")).into_http();
        };
        let audit = self.audit.as_ref().filter(|_| crate::audit::audited(path)).map(|log| {
            let header = |key: &str| {
                request.headers().get(key).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string()
            };
            (
                log.clone(),
                path.to_string(),
                header(itsm_runtime::context::TENANT_HEADER),
                header(itsm_runtime::context::PRINCIPAL_HEADER),
                header(itsm_runtime::context::ROLES_HEADER),
            )
        });
        let response = match channel.oneshot(request.map(tonic::body::Body::new)).await {
            Ok(response) => response,
            Err(err) => {
                tracing::warn!(backend, error = %err, "backend unavailable");
                tonic::Status::unavailable(format!("{backend} service unavailable")).into_http()
            }
        };
        if let Some((log, path, tenant, principal, roles)) = audit {
            // An error comes as a trailers-only response (status in the headers); a success
            // carries its status in the trailers, after the body, so no status here means OK.
            let code = response
                .headers()
                .get("grpc-status")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<i32>().ok())
                .unwrap_or(0);
            let message = response
                .headers()
                .get("grpc-message")
                .and_then(|v| v.to_str().ok())
                .map(percent_decode)
                .unwrap_or_default();
            log.record(&tenant, &principal, &roles, &path, code, &message).await;
        }
        response
    }
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
