//! The proxy against a scripted backend: reads are retried on UNAVAILABLE within the budget,
//! writes never are, and an unreachable backend opens its circuit.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use prost::Message;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::Code;
use tonic::transport::{Channel, Endpoint};

use itsm_gateway::proxy::Routes;
use itsm_proto::cmdb::cmdb_service_client::CmdbServiceClient;
use itsm_proto::cmdb::{ConfigurationItem, GetConfigurationItemRequest, UpdateConfigurationItemRequest};
use itsm_runtime::config::GatewaySettings;

/// A backend that answers its first `failures` calls with UNAVAILABLE, then an empty
/// configuration item; it counts every call.
async fn flaky_backend(failures: u32) -> (String, Arc<AtomicU32>) {
    let calls = Arc::new(AtomicU32::new(0));
    let seen = calls.clone();
    let router = axum::Router::new().fallback(move |_request: http::Request<axum::body::Body>| {
        let seen = seen.clone();
        async move {
            let n = seen.fetch_add(1, Ordering::SeqCst);
            if n < failures {
                return tonic::Status::unavailable("warming up").into_http::<axum::body::Body>();
            }
            let message = ConfigurationItem { name: "configurationItems/ci-1".into(), ..Default::default() };
            let body = message.encode_to_vec();
            let mut frame = vec![0];
            frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
            frame.extend_from_slice(&body);
            let mut trailers = http::HeaderMap::new();
            trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
            let frames = vec![
                Ok::<_, Infallible>(http_body::Frame::data(bytes::Bytes::from(frame))),
                Ok(http_body::Frame::trailers(trailers)),
            ];
            let mut response = http::Response::new(axum::body::Body::new(http_body_util::StreamBody::new(
                futures::stream::iter(frames),
            )));
            response.headers_mut().insert("content-type", http::HeaderValue::from_static("application/grpc"));
            response
        }
    });
    (serve(router).await, calls)
}

async fn serve(router: axum::Router) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_routes(tonic::service::Routes::from(router))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    format!("http://{address}")
}

/// A gateway proxy in front of `backend_url` for the CMDB service, and a client of it.
async fn proxy(backend_url: &str, settings: GatewaySettings) -> CmdbServiceClient<Channel> {
    let backend = Endpoint::from_shared(backend_url.to_string()).unwrap().connect_lazy();
    let routes =
        Routes::with_settings([("itsm.cmdb.v1.CmdbService", "cmdb", backend)], &settings, 4 << 20).unwrap();
    let url = serve(routes.into_router()).await;
    CmdbServiceClient::new(Endpoint::from_shared(url).unwrap().connect_lazy())
}

fn get() -> GetConfigurationItemRequest {
    GetConfigurationItemRequest { name: "configurationItems/ci-1".into(), ..Default::default() }
}

#[tokio::test]
async fn a_read_that_meets_unavailable_is_retried() {
    let (url, calls) = flaky_backend(2).await;
    let mut client = proxy(&url, GatewaySettings { read_retries: 2, ..Default::default() }).await;
    let item = client.get_configuration_item(get()).await.unwrap().into_inner();
    assert_eq!(item.name, "configurationItems/ci-1");
    assert_eq!(calls.load(Ordering::SeqCst), 3, "two failures and the answer");
}

#[tokio::test]
async fn retries_stop_at_the_configured_count() {
    let (url, calls) = flaky_backend(5).await;
    let mut client = proxy(&url, GatewaySettings { read_retries: 1, ..Default::default() }).await;
    let err = client.get_configuration_item(get()).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn writes_are_never_retried() {
    let (url, calls) = flaky_backend(1).await;
    let mut client = proxy(&url, GatewaySettings { read_retries: 3, ..Default::default() }).await;
    let err = client.update_configuration_item(UpdateConfigurationItemRequest::default()).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    assert_eq!(calls.load(Ordering::SeqCst), 1, "the gateway cannot know whether a write was applied");
}

#[tokio::test]
async fn the_retry_budget_caps_retries_under_sustained_failure() {
    // Every call fails: without a budget each of 200 reads would cost 1 + 3 attempts.
    let (url, calls) = flaky_backend(u32::MAX).await;
    let settings = GatewaySettings { read_retries: 3, retry_budget_percent: 10, ..Default::default() };
    let mut client = proxy(&url, settings).await;
    for _ in 0..200 {
        let err = client.get_configuration_item(get()).await.unwrap_err();
        assert_eq!(err.code(), Code::Unavailable);
    }
    let attempts = calls.load(Ordering::SeqCst);
    // 200 reads, 10 % of them as retries plus the budget's floor (5 a second for 10 s).
    assert!(attempts <= 200 + 20 + 50, "{attempts} attempts: the budget did not hold");
    assert!(attempts > 200, "some retries are allowed");
}

#[tokio::test]
async fn an_unreachable_backend_opens_its_circuit_and_fails_fast() {
    // A port nothing listens on.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let settings = GatewaySettings {
        read_retries: 0,
        circuit_failure_threshold: 2,
        circuit_open_ms: 60_000,
        ..Default::default()
    };
    let mut client = proxy(&url, settings).await;
    for _ in 0..2 {
        let err = client.get_configuration_item(get()).await.unwrap_err();
        assert_eq!(err.code(), Code::Unavailable);
        assert!(!err.message().contains("next try"), "{}", err.message());
    }
    let started = Instant::now();
    let err = client.get_configuration_item(get()).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    assert!(err.message().contains("next try in"), "{}", err.message());
    use tonic_types::StatusExt;
    let retry = err.get_details_retry_info().expect("retry info");
    assert!(retry.retry_delay.unwrap() > Duration::from_secs(50));
    assert!(started.elapsed() < Duration::from_secs(1), "an open circuit answers without trying");
}
