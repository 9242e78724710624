//! The gateway: the one public endpoint. It authenticates callers, routes every public gRPC
//! service to the process that owns it, serves health and a reflection that lists all public
//! services, and answers composite reads (`OverviewService`). Beside its gRPC endpoint it serves
//! the web console (`itsm-console`) over HTTP, which calls back into that endpoint like any client.

pub mod api_keys;
pub mod audit;
pub mod auth;
pub mod authz;
pub mod circuit;
pub mod limits;
pub mod overview;
pub mod proxy;
pub use itsm_runtime::rpc_table;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tonic_health::ServingStatus;
use tonic_health::pb::health_check_response::ServingStatus as Wire;
use tonic_health::pb::health_client::HealthClient;

use itsm_proto::gateway::overview_service_server::OverviewServiceServer;
use itsm_runtime::server::GrpcServer;
use itsm_runtime::{Error, Settings};

pub const SERVICE: &str = "gateway";

/// The web console's listener, bound by the caller, and what `itsm up` adds to it.
pub struct ConsoleListener {
    pub listener: TcpListener,
    /// A file with a development admin token; the sign-in page then offers to use it
    /// (`itsm up` only).
    pub dev_token_file: Option<PathBuf>,
}

impl ConsoleListener {
    pub fn new(listener: TcpListener) -> Self {
        Self { listener, dev_token_file: None }
    }
}

/// Runs the gateway on `listener` until `shutdown` completes, and the web console on
/// `console.listen` beside it when `console.enabled`.
pub async fn serve(
    settings: Settings,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let console = if settings.console.enabled {
        let listen = settings.console.listen.clone();
        let bound = TcpListener::bind(listen.as_str())
            .await
            .map_err(|e| Error::invalid("console.listen", format!("cannot bind {listen}: {e}")))?;
        Some(ConsoleListener::new(bound))
    } else {
        None
    };
    serve_with_console(settings, listener, console, shutdown).await
}

/// Runs the gateway's gRPC endpoint on `listener` and, when `console` is given, the web console on
/// its listener, until `shutdown` completes; both stop together (when either ends, the other is
/// stopped too). The console calls the gRPC endpoint at `listener`'s address.
pub async fn serve_with_console(
    settings: Settings,
    listener: TcpListener,
    console: Option<ConsoleListener>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let Some(console) = console else {
        return serve_grpc(settings, listener, shutdown).await;
    };
    check_token_key(&settings)?;
    let grpc_addr = listener.local_addr().map_err(|e| Error::Internal(format!("gateway local addr: {e}")))?;
    let app = itsm_console::router(console_options(&settings, grpc_addr, console.dev_token_file)?)?;
    // One shutdown for two servers: a watch channel fans it out, and each server's end stops the
    // other (a console that failed does not leave a gateway running without it, and vice versa).
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let stop = Arc::new(stop);
    let forward = {
        let stop = stop.clone();
        tokio::spawn(async move {
            shutdown.await;
            stop.send_replace(true);
        })
    };
    let console_task = {
        let stop = stop.clone();
        let stopped = stopped.clone();
        tokio::spawn(async move {
            let result = itsm_console::serve_router(app, console.listener, until_stopped(stopped)).await;
            stop.send_replace(true);
            result
        })
    };
    let result = serve_grpc(settings, listener, until_stopped(stopped)).await;
    stop.send_replace(true);
    forward.abort();
    let console_result = console_task.await.unwrap_or_else(|e| Err(Error::Internal(format!("console: {e}"))));
    result.and(console_result)
}

/// Completes once `stopped` turns true (or its sender is gone).
async fn until_stopped(mut stopped: tokio::sync::watch::Receiver<bool>) {
    let _ = stopped.wait_for(|stop| *stop).await;
}

/// The console's options: it calls the gRPC endpoint at `grpc_addr` (loopback when the endpoint
/// listens on every address); its session key is `console.session_key`, else `auth.jwt_secret`.
fn console_options(
    settings: &Settings,
    grpc_addr: SocketAddr,
    dev_token_file: Option<PathBuf>,
) -> Result<itsm_console::ConsoleOptions, Error> {
    let mut target = grpc_addr;
    if target.ip().is_unspecified() {
        target.set_ip(if target.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    let session_key = if settings.console.session_key.is_empty() {
        settings.auth.jwt_secret.clone()
    } else {
        settings.console.session_key.clone()
    };
    if session_key.is_empty() {
        return Err(Error::invalid(
            "console.session_key",
            "the console needs a session key when auth.jwt_secret is empty (at least 32 characters)",
        ));
    }
    Ok(itsm_console::ConsoleOptions {
        gateway_url: format!("http://{target}"),
        session_key,
        secure_cookies: settings.console.secure_cookies,
        dev_token_file,
    })
}

/// The gateway verifies bearer tokens with `auth.jwt_secret` (16+ characters) or only with the
/// keys of `auth.jwks_file`.
fn check_token_key(settings: &Settings) -> Result<(), Error> {
    let secret = &settings.auth.jwt_secret;
    let jwks_only = secret.is_empty() && !settings.auth.jwks_file.is_empty();
    if secret.len() < 16 && !jwks_only {
        return Err(Error::invalid(
            "auth.jwt_secret",
            "the gateway needs a token key of at least 16 characters (or only auth.jwks_file)",
        ));
    }
    Ok(())
}

/// Runs the gateway's gRPC endpoint on `listener` until `shutdown` completes.
async fn serve_grpc(
    settings: Settings,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    check_token_key(&settings)?;
    let db = itsm_runtime::db::connect(&settings.database).await?;
    if settings.database.migrate_on_start {
        itsm_runtime::service::migrate::<audit::Migrator>(&db).await?;
    }
    let (audit_log, audit_writer) = audit::AuditLog::start(db.clone());
    let keys = api_keys::KeyStore::default();
    keys.load(&db).await?;
    let key_follower = tokio::spawn(keys.clone().follow(db.clone()));
    let routes = proxy::Routes::from_settings(&settings)?.with_audit(audit_log.clone());
    let limits = Arc::new(limits::PrincipalLimits::new(&settings.gateway));
    let guard = auth::BearerGuard::new(
        &settings.auth.jwt_secret,
        &settings.auth.jwt_issuer,
        &settings.auth.jwt_audience,
        &settings.auth.internal_token,
    )
    .with_limits(limits.clone())
    .with_audit(audit_log)
    .with_api_keys(keys.clone());
    let guard = if settings.auth.jwks_file.is_empty() {
        guard
    } else {
        let jwks = auth::Jwks::load(std::path::Path::new(&settings.auth.jwks_file))
            .map_err(|e| Error::invalid("auth.jwks_file", e))?;
        guard.with_jwks(jwks)
    };
    let mut server = GrpcServer::new(SERVICE, &settings)
        .guard(Arc::new(guard))
        .add_service(OverviewServiceServer::new(overview::OverviewApi {
            routes: routes.clone(),
            internal_token: settings.auth.internal_token.clone(),
        }))
        .add_service(itsm_proto::gateway::api_key_service_server::ApiKeyServiceServer::new(
            api_keys::ApiKeyApi { db: db.clone(), store: keys },
        ))
        .add_service(itsm_proto::gateway::audit_service_server::AuditServiceServer::new(audit::AuditApi {
            db,
            page_tokens: itsm_runtime::paging::PageTokens::new(&settings.paging.token_secret),
        }))
        .fallback(routes.clone().into_router());
    if settings.gateway.grpc_web {
        server = server.grpc_web(cors(&settings.gateway.cors_allowed_origins));
    }
    for (service, backend) in itsm_proto::PUBLIC_SERVICES {
        if *backend != SERVICE {
            server = server.reflect_service(service);
        }
    }
    let health = server.health_reporter();
    let watcher = tokio::spawn(watch_backends(routes, health));
    let sweeper = tokio::spawn(async move {
        let mut ticker = tokio::time::interval(Duration::from_secs(60));
        loop {
            ticker.tick().await;
            limits.forget_idle();
        }
    });
    let result = server.serve(listener, shutdown).await;
    watcher.abort();
    sweeper.abort();
    key_follower.abort();
    // The server (and with it every audit sender) is gone: let the writer finish the queue.
    let _ = audit_writer.await;
    result
}

/// The CORS policy for gRPC-Web from browsers on `origins` (`*` = any).
fn cors(origins: &[String]) -> tower_http::cors::CorsLayer {
    use tower_http::cors::{AllowOrigin, CorsLayer};
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        // Checked at start-up (config validation), so every origin is a valid header value.
        AllowOrigin::list(origins.iter().filter_map(|o| http::HeaderValue::from_str(o).ok()))
    };
    let header = http::HeaderName::from_static;
    CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([http::Method::POST])
        .allow_headers([
            http::header::AUTHORIZATION,
            http::header::CONTENT_TYPE,
            header("x-grpc-web"),
            header("x-user-agent"),
            header("grpc-timeout"),
        ])
        .expose_headers([header("grpc-status"), header("grpc-message"), header("grpc-status-details-bin")])
        .max_age(Duration::from_secs(24 * 3600))
}

/// Mirrors each routed service's health (as its backend reports it) in the gateway's own
/// health service, so a probe of the gateway tells which parts of the suite are up.
async fn watch_backends(routes: proxy::Routes, health: tonic_health::server::HealthReporter) {
    let mut ticker = tokio::time::interval(Duration::from_secs(2));
    loop {
        ticker.tick().await;
        for (service, backend) in itsm_proto::PUBLIC_SERVICES {
            if *backend == SERVICE {
                continue;
            }
            let Some((_, channel)) = routes.backend(service) else { continue };
            let mut client = HealthClient::new(channel);
            let mut request =
                tonic::Request::new(tonic_health::pb::HealthCheckRequest { service: (*service).to_string() });
            request.set_timeout(Duration::from_secs(1));
            let status = match client.check(request).await {
                Ok(resp) if resp.get_ref().status == Wire::Serving as i32 => ServingStatus::Serving,
                _ => ServingStatus::NotServing,
            };
            health.set_service_status(*service, status).await;
        }
    }
}
