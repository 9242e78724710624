//! The gateway: authentication, routing of every public service (unary and streaming),
//! reflection that lists every public service, and internal trust on the services.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::time::Duration;

use tokio_stream::StreamExt;
use tonic::Code;

use itsm_e2e::{Suite, authed};
use itsm_proto::cmdb::ListConfigurationItemsRequest;
use itsm_proto::cmdb::cmdb_service_client::CmdbServiceClient;
use itsm_runtime::testing::{TEST_INTERNAL_TOKEN, TestBackend};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_without_a_valid_token_are_unauthenticated() {
    let suite = Suite::start(TestBackend::Sqlite).await.unwrap();
    let mut cmdb = CmdbServiceClient::new(suite.gateway_channel().await.unwrap());
    let err = cmdb.list_configuration_items(ListConfigurationItemsRequest::default()).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);

    let forged = itsm_gateway::auth::mint_token(
        "a-different-secret-of-enough-length",
        "itsm",
        "itsm",
        "alice",
        "acme",
        &["admin".into()],
        chrono::Duration::hours(1),
    )
    .unwrap();
    let err = cmdb
        .list_configuration_items(authed(ListConfigurationItemsRequest::default(), &forged))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);

    // A client cannot smuggle its own tenant or internal token past the gateway.
    let token = suite.token("alice", "acme", &["admin"]).unwrap();
    let mut request = authed(ListConfigurationItemsRequest::default(), &token);
    request.metadata_mut().insert("x-itsm-tenant", "other".parse().unwrap());
    request.metadata_mut().insert("x-itsm-internal-token", "guess".parse().unwrap());
    cmdb.list_configuration_items(request).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_public_rpc_is_routed_to_its_owner() {
    // Each public service answers through the gateway; services whose RPCs are not built yet
    // answer UNIMPLEMENTED from their own process (proving the call arrived there), and the
    // unknown service is UNIMPLEMENTED from the gateway.
    let suite = Suite::start(TestBackend::Sqlite).await.unwrap();
    let token = suite.token("alice", "acme", &["admin"]).unwrap();
    let channel = suite.gateway_channel().await.unwrap();
    let mut client = tonic::client::Grpc::new(channel);
    for (service, owner) in itsm_proto::PUBLIC_SERVICES {
        let method = match *service {
            "itsm.cmdb.v1.CmdbService" => "ListConfigurationItems",
            _ => "DoesNotExist",
        };
        let path: http::uri::PathAndQuery = format!("/{service}/{method}").parse().unwrap();
        client.ready().await.unwrap();
        let codec = tonic_prost::ProstCodec::<
            ListConfigurationItemsRequest,
            itsm_proto::cmdb::ListConfigurationItemsResponse,
        >::default();
        let result =
            client.unary(authed(ListConfigurationItemsRequest::default(), &token), path, codec).await;
        match *service {
            "itsm.cmdb.v1.CmdbService" => assert!(result.is_ok(), "{service}: {result:?}"),
            _ => {
                let status = result.unwrap_err();
                assert_eq!(status.code(), Code::Unimplemented, "{service} (owner {owner}): {status:?}");
                // Answered by the owning service, not by the gateway's "unknown service".
                assert!(!status.message().contains("unknown service"), "{service}: {status:?}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_reject_direct_calls_without_the_internal_token() {
    let suite = Suite::start(TestBackend::Sqlite).await.unwrap();
    let channel =
        itsm_runtime::testing::internal_channel(&suite.service("cmdb").unwrap().url()).await.unwrap();
    let mut cmdb = CmdbServiceClient::new(channel);
    let mut request = tonic::Request::new(ListConfigurationItemsRequest::default());
    request.metadata_mut().insert("x-itsm-tenant", "acme".parse().unwrap());
    request.metadata_mut().insert("x-itsm-principal", "mallory".parse().unwrap());
    let err = cmdb.list_configuration_items(request).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);

    let ok = itsm_runtime::testing::with_context(ListConfigurationItemsRequest::default(), "acme", "alice");
    cmdb.list_configuration_items(ok).await.unwrap();
    assert_eq!(TEST_INTERNAL_TOKEN, "test-internal-token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_lists_every_public_service() {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let suite = Suite::start(TestBackend::Sqlite).await.unwrap();
    let mut client = ServerReflectionClient::new(suite.gateway_channel().await.unwrap());
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream =
        client.server_reflection_info(tokio_stream::iter(vec![request])).await.unwrap().into_inner();
    let response = stream.next().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected {response:?}")
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for (service, _) in itsm_proto::PUBLIC_SERVICES {
        assert!(names.iter().any(|n| n == service), "{service} missing from {names:?}");
    }
    assert!(names.iter().any(|n| n == "grpc.health.v1.Health"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_health_reports_each_routed_service() {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;

    let suite = Suite::start(TestBackend::Sqlite).await.unwrap();
    let mut health = HealthClient::new(suite.gateway_channel().await.unwrap());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    for (service, _) in itsm_proto::PUBLIC_SERVICES {
        loop {
            let status = health
                .check(HealthCheckRequest { service: (*service).to_string() })
                .await
                .map(|r| r.into_inner().status)
                .ok();
            if status == Some(ServingStatus::Serving as i32) {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{service} not SERVING at the gateway: {status:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_calls_pass_through_the_proxy() {
    // Route the CMDB's event feed (a server-streaming RPC) through a gateway proxy and watch it.
    use itsm_proto::events::WatchEventsRequest;
    use itsm_proto::events::event_service_client::EventServiceClient;
    use itsm_runtime::server::GrpcServer;
    use itsm_runtime::testing::RunningServer;

    let suite = Suite::start(TestBackend::Sqlite).await.unwrap();
    let token = suite.token("alice", "acme", &["admin"]).unwrap();
    let mut cmdb = CmdbServiceClient::new(suite.gateway_channel().await.unwrap());
    for i in 0..3 {
        let item = itsm_proto::cmdb::ConfigurationItem {
            display_name: format!("app-{i}"),
            ci_class: "application".into(),
            ..Default::default()
        };
        cmdb.create_configuration_item(authed(
            itsm_proto::cmdb::CreateConfigurationItemRequest {
                configuration_item: Some(item),
                request_id: String::new(),
            },
            &token,
        ))
        .await
        .unwrap();
    }
    let backend =
        itsm_runtime::testing::internal_channel(&suite.service("cmdb").unwrap().url()).await.unwrap();
    let routes =
        itsm_gateway::proxy::Routes::from_channels([("itsm.events.v1.EventService", "cmdb", backend)])
            .unwrap();
    let mut settings = itsm_runtime::testing::settings_for("sqlite::memory:");
    settings.auth.jwt_secret.clone_from(&suite.jwt_secret);
    let guard = itsm_gateway::auth::BearerGuard::new(&suite.jwt_secret, "itsm", "itsm", TEST_INTERNAL_TOKEN);
    let proxy = RunningServer::start(move |listener, shutdown| async move {
        GrpcServer::new("gateway", &settings)
            .guard(std::sync::Arc::new(guard))
            .fallback(routes.into_router())
            .serve(listener, shutdown.wait())
            .await
    })
    .await
    .unwrap();
    let channel = itsm_runtime::testing::internal_channel(&proxy.url()).await.unwrap();
    let mut events = EventServiceClient::new(channel);
    let mut stream = events
        .watch_events(authed(WatchEventsRequest { after_sequence: 0, types: vec![] }, &token))
        .await
        .unwrap()
        .into_inner();
    let mut sequences = Vec::new();
    while sequences.len() < 3 {
        let message =
            tokio::time::timeout(Duration::from_secs(10), stream.next()).await.unwrap().unwrap().unwrap();
        let event = message.event.unwrap();
        assert_eq!(event.r#type, "itsm.cmdb.v1.ConfigurationItemChanged");
        sequences.push(event.sequence);
    }
    assert_eq!(sequences, [1, 2, 3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_principal_over_its_rate_limit_is_told_when_to_retry() {
    use tonic_types::StatusExt;
    let suite = Suite::start_with(TestBackend::Sqlite, |settings| {
        settings.gateway.rate_limit_per_second = 1;
        settings.gateway.rate_limit_burst = 3;
    })
    .await
    .unwrap();
    let alice = suite.token("alice", "acme", &["admin"]).unwrap();
    let bob = suite.token("bob", "acme", &["admin"]).unwrap();
    let mut cmdb = CmdbServiceClient::new(suite.gateway_channel().await.unwrap());
    for _ in 0..3 {
        cmdb.list_configuration_items(authed(ListConfigurationItemsRequest::default(), &alice))
            .await
            .unwrap();
    }
    let status = cmdb
        .list_configuration_items(authed(ListConfigurationItemsRequest::default(), &alice))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    let retry = status.get_error_details().retry_info().cloned().expect("a RetryInfo detail");
    assert!(retry.retry_delay.unwrap() > std::time::Duration::ZERO);
    // Bob has his own budget.
    cmdb.list_configuration_items(authed(ListConfigurationItemsRequest::default(), &bob)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutating_and_refused_calls_are_audited_per_tenant() {
    use itsm_proto::cmdb::{ConfigurationItem, CreateConfigurationItemRequest};
    use itsm_proto::gateway::ListAuditEntriesRequest;
    use itsm_proto::gateway::audit_service_client::AuditServiceClient;
    let suite = Suite::start(TestBackend::Sqlite).await.unwrap();
    let admin = suite.token("alice", "acme", &["admin"]).unwrap();
    let agent = suite.token("ann", "acme", &["agent"]).unwrap();
    let other = suite.token("olga", "globex", &["admin"]).unwrap();
    let channel = suite.gateway_channel().await.unwrap();
    let mut cmdb = CmdbServiceClient::new(channel.clone());
    let mut audit = AuditServiceClient::new(channel);
    let create = |name: &str, token: &str| {
        authed(
            CreateConfigurationItemRequest {
                configuration_item: Some(ConfigurationItem {
                    display_name: name.into(),
                    ci_class: "server".into(),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            token,
        )
    };
    let created = cmdb.create_configuration_item(create("web-01", &admin)).await.unwrap().into_inner();
    let err = cmdb.create_configuration_item(create("", &admin)).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = cmdb.create_configuration_item(create("web-02", &agent)).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    cmdb.list_configuration_items(authed(ListConfigurationItemsRequest::default(), &admin)).await.unwrap();
    // Only admins read the log.
    let err = audit.list_audit_entries(authed(ListAuditEntriesRequest::default(), &agent)).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let entries = loop {
        let entries = audit
            .list_audit_entries(authed(ListAuditEntriesRequest::default(), &admin))
            .await
            .unwrap()
            .into_inner()
            .audit_entries;
        if entries.len() >= 4 {
            break entries;
        }
        assert!(tokio::time::Instant::now() < deadline, "audit entries did not arrive: {entries:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let seen: Vec<(&str, &str, i32)> = entries
        .iter()
        .map(|e| (e.principal.as_str(), e.method.rsplit('/').next().unwrap(), e.code))
        .collect();
    // Newest first; reads are not audited; the refused read of the log itself is.
    assert_eq!(
        seen,
        [
            ("ann", "ListAuditEntries", Code::PermissionDenied as i32),
            ("ann", "CreateConfigurationItem", Code::PermissionDenied as i32),
            ("alice", "CreateConfigurationItem", Code::InvalidArgument as i32),
            ("alice", "CreateConfigurationItem", 0),
        ]
    );
    assert_eq!(entries[3].roles, vec!["admin".to_string()]);
    // The resource each call acted on: the created CI; nothing for calls refused or invalid.
    assert_eq!(entries[3].resource, created.name);
    assert!(entries[..3].iter().all(|e| e.resource.is_empty()), "{entries:?}");
    let about = audit
        .list_audit_entries(authed(
            ListAuditEntriesRequest {
                filter: format!("resource = \"{}\"", created.name),
                ..Default::default()
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(about.audit_entries.len(), 1);
    let denied = audit
        .list_audit_entries(authed(
            ListAuditEntriesRequest { filter: "code != OK".into(), ..Default::default() },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(denied.audit_entries.len(), 3);
    // Another tenant's admin sees none of it.
    let theirs = audit
        .list_audit_entries(authed(ListAuditEntriesRequest::default(), &other))
        .await
        .unwrap()
        .into_inner();
    assert!(theirs.audit_entries.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_carry_their_roles_until_revoked() {
    use itsm_proto::gateway::api_key_service_client::ApiKeyServiceClient;
    use itsm_proto::gateway::{ApiKey, CreateApiKeyRequest, ListApiKeysRequest, RevokeApiKeyRequest};
    let suite = Suite::start(TestBackend::Sqlite).await.unwrap();
    let admin = suite.token("alice", "acme", &["admin"]).unwrap();
    let channel = suite.gateway_channel().await.unwrap();
    let mut keys = ApiKeyServiceClient::new(channel.clone());
    let mut cmdb = CmdbServiceClient::new(channel);
    let create = |roles: &[&str]| {
        authed(
            CreateApiKeyRequest {
                api_key: Some(ApiKey {
                    display_name: "monitoring".into(),
                    roles: roles.iter().map(|r| (*r).to_string()).collect(),
                    ..Default::default()
                }),
            },
            &admin,
        )
    };
    let err = keys.create_api_key(create(&["overlord"])).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let key = keys.create_api_key(create(&["agent"])).await.unwrap().into_inner();
    assert!(key.secret.starts_with("itsm_"), "the secret is shown once");
    let listed = keys.list_api_keys(authed(ListApiKeysRequest {}, &admin)).await.unwrap().into_inner();
    assert_eq!(listed.api_keys.len(), 1);
    assert!(listed.api_keys[0].secret.is_empty(), "and never again");

    // The key reads as an agent, and is refused what agents may not do.
    cmdb.list_configuration_items(authed(ListConfigurationItemsRequest::default(), &key.secret))
        .await
        .unwrap();
    let err = cmdb
        .create_configuration_item(authed(
            itsm_proto::cmdb::CreateConfigurationItemRequest::default(),
            &key.secret,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    // A guessed secret with the right id is refused; so is the key itself once revoked.
    // The last character changed (to one it is not: a fixed '0' would be the secret itself one
    // time in sixteen).
    let last = key.secret.chars().last().unwrap();
    let forged = format!("{}{}", &key.secret[..key.secret.len() - 1], if last == '0' { '1' } else { '0' });
    let err = cmdb
        .list_configuration_items(authed(ListConfigurationItemsRequest::default(), &forged))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    // An agent cannot manage keys.
    let agent = suite.token("ann", "acme", &["agent"]).unwrap();
    let err = keys.list_api_keys(authed(ListApiKeysRequest {}, &agent)).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let revoked = keys
        .revoke_api_key(authed(RevokeApiKeyRequest { name: key.name.clone() }, &admin))
        .await
        .unwrap()
        .into_inner();
    assert!(revoked.revoke_time.is_some());
    let err = cmdb
        .list_configuration_items(authed(ListConfigurationItemsRequest::default(), &key.secret))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
}

/// A gRPC-Web frame of `message` (the same framing as gRPC).
fn web_frame(message: &impl prost::Message) -> Vec<u8> {
    let body = message.encode_to_vec();
    let mut frame = vec![0];
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(&body);
    frame
}

/// The trailers frame (flag 0x80) of a gRPC-Web response body, as text.
fn web_trailers(body: &[u8]) -> String {
    let mut rest = body;
    while rest.len() >= 5 {
        let len = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
        if rest[0] & 0x80 != 0 {
            return String::from_utf8_lossy(&rest[5..5 + len]).into_owned();
        }
        rest = &rest[5 + len..];
    }
    String::new()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browsers_call_through_grpc_web_from_allowed_origins() {
    let suite = Suite::start_with(TestBackend::Sqlite, |settings| {
        settings.gateway.cors_allowed_origins = vec!["https://console.example.com".into()];
    })
    .await
    .unwrap();
    let token = suite.token("alice", "acme", &["admin"]).unwrap();
    let url = format!("{}/itsm.cmdb.v1.CmdbService/ListConfigurationItems", suite.gateway.url());
    // reqwest speaks HTTP/1.1 to an http:// URL, as a browser's fetch does.
    let http = reqwest::Client::new();
    let call = |token: Option<&str>| {
        let mut request = http
            .post(&url)
            .header("content-type", "application/grpc-web+proto")
            .header("x-grpc-web", "1")
            .header("origin", "https://console.example.com")
            .body(web_frame(&ListConfigurationItemsRequest::default()));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };

    let response = call(Some(&token)).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), reqwest::Version::HTTP_11);
    let headers = response.headers().clone();
    assert!(headers["content-type"].to_str().unwrap().starts_with("application/grpc-web"), "{headers:?}");
    assert_eq!(headers["access-control-allow-origin"], "https://console.example.com");
    let body = response.bytes().await.unwrap();
    assert!(web_trailers(&body).contains("grpc-status:0"), "{body:?}");

    // The same authentication as native gRPC.
    let response = call(None).await.unwrap();
    let status = response.headers().get("grpc-status").map(|v| v.to_str().unwrap().to_string());
    let body = response.bytes().await.unwrap();
    let status = status.unwrap_or_else(|| web_trailers(&body));
    assert!(status.contains("16"), "expected UNAUTHENTICATED, got {status}");

    // Preflight: allowed origin gets the policy, another origin gets none.
    let preflight = |origin: &'static str| {
        http.request(reqwest::Method::OPTIONS, &url)
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "authorization,content-type,x-grpc-web")
            .send()
    };
    let allowed = preflight("https://console.example.com").await.unwrap();
    assert!(allowed.status().is_success(), "{}", allowed.status());
    assert_eq!(allowed.headers()["access-control-allow-origin"], "https://console.example.com");
    let allowed_headers = allowed.headers()["access-control-allow-headers"].to_str().unwrap().to_lowercase();
    assert!(allowed_headers.contains("authorization") && allowed_headers.contains("x-grpc-web"));
    let other = preflight("https://evil.example.net").await.unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_backend_fails_fast_once_its_circuit_opens() {
    let mut suite = Suite::start_with(TestBackend::Sqlite, |settings| {
        settings.gateway.circuit_failure_threshold = 3;
        settings.gateway.circuit_open_ms = 60_000;
    })
    .await
    .unwrap();
    let token = suite.token("alice", "acme", &["admin"]).unwrap();
    let channel = suite.gateway_channel().await.unwrap();
    let mut cmdb = CmdbServiceClient::new(channel.clone());
    cmdb.list_configuration_items(authed(ListConfigurationItemsRequest::default(), &token)).await.unwrap();
    suite.stop_service("cmdb").await.unwrap();

    // The first read tries three times (retries), which opens the circuit.
    let err = cmdb
        .list_configuration_items(authed(ListConfigurationItemsRequest::default(), &token))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    let started = std::time::Instant::now();
    let err = cmdb
        .list_configuration_items(authed(ListConfigurationItemsRequest::default(), &token))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    assert!(err.message().contains("next try in"), "{}", err.message());
    assert!(started.elapsed() < Duration::from_millis(500), "took {:?}", started.elapsed());

    // Other backends are not affected.
    let mut incidents = itsm_proto::incident::incident_service_client::IncidentServiceClient::new(channel);
    incidents
        .list_incidents(authed(itsm_proto::incident::ListIncidentsRequest::default(), &token))
        .await
        .unwrap();
}

/// A refused write is answered without an empty DATA frame: h2 clients (0.4.18+) end a
/// connection after 100 empty DATA frames as a flood, so refused writes through one connection
/// used to fail with RESOURCE_EXHAUSTED ("too_many_data_frames") instead of their own status.
/// Found by `tenancy_under_load`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_refused_writes_on_one_connection_keep_their_status() {
    let suite =
        Suite::start_with(TestBackend::Sqlite, |g| g.gateway.rate_limit_per_second = 0).await.unwrap();
    let admin = suite.token("alice", "acme", &["admin"]).unwrap();
    let cmdb = CmdbServiceClient::new(suite.gateway_channel().await.unwrap());
    let mut tasks = Vec::new();
    for task in 0..8 {
        let (mut cmdb, admin) = (cmdb.clone(), admin.clone());
        tasks.push(tokio::spawn(async move {
            for attempt in 0..25 {
                let request = itsm_proto::cmdb::UpdateConfigurationItemRequest {
                    configuration_item: Some(itsm_proto::cmdb::ConfigurationItem {
                        name: "configurationItems/01a21519-0000-7000-8000-000000000000".into(),
                        display_name: "renamed".into(),
                        etag: "W/\"1\"".into(),
                        ..Default::default()
                    }),
                    update_mask: Some(prost_types::FieldMask { paths: vec!["display_name".into()] }),
                };
                let err = cmdb.update_configuration_item(authed(request, &admin)).await.unwrap_err();
                assert_eq!(err.code(), Code::NotFound, "task {task} attempt {attempt}: {err:?}");
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
}
