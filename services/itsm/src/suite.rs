//! `itsm up` (the whole suite in one process, one server and one SQLite file per service),
//! `itsm serve <service>` and `itsm migrate <service>`.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::ValueEnum;
use tokio::net::TcpListener;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use itsm_runtime::server::{Shutdown, shutdown_signal};
use itsm_runtime::{Error, Settings};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ServiceName {
    Gateway,
    ServiceDesk,
    Incident,
    Change,
    Cmdb,
    Delivery,
}

/// In port order: the gateway first, then 50052.. as in ARCHITECTURE.md.
pub const ALL: [ServiceName; 6] = [
    ServiceName::Gateway,
    ServiceName::ServiceDesk,
    ServiceName::Incident,
    ServiceName::Change,
    ServiceName::Cmdb,
    ServiceName::Delivery,
];

impl ServiceName {
    pub fn name(self) -> &'static str {
        match self {
            Self::Gateway => itsm_gateway::SERVICE,
            Self::ServiceDesk => itsm_service_desk::SERVICE,
            Self::Incident => itsm_incident::SERVICE,
            Self::Change => itsm_change::SERVICE,
            Self::Cmdb => itsm_cmdb::SERVICE,
            Self::Delivery => itsm_delivery::SERVICE,
        }
    }

    fn offset(self) -> u16 {
        ALL.iter().position(|s| *s == self).unwrap_or_default() as u16
    }
}

/// Runs one service until `shutdown` completes.
pub async fn serve_service(
    service: ServiceName,
    settings: Settings,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    match service {
        ServiceName::Gateway => itsm_gateway::serve(settings, listener, shutdown).await,
        ServiceName::ServiceDesk => itsm_service_desk::serve(settings, listener, shutdown).await,
        ServiceName::Incident => itsm_incident::serve(settings, listener, shutdown).await,
        ServiceName::Change => itsm_change::serve(settings, listener, shutdown).await,
        ServiceName::Cmdb => itsm_cmdb::serve(settings, listener, shutdown).await,
        ServiceName::Delivery => itsm_delivery::serve(settings, listener, shutdown).await,
    }
}

#[derive(clap::Args)]
pub struct UpArgs {
    /// Where each service keeps its SQLite file, and where the dev key and token are written.
    #[arg(long, default_value = "data")]
    pub data_dir: PathBuf,
    /// Address every service binds.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: IpAddr,
    /// Port of the gateway; the services take the next five. 0 picks free ports.
    #[arg(long, default_value_t = 50051)]
    pub base_port: u16,
}

/// Reads a secret kept in the data directory, creating it on first use.
fn dev_secret(dir: &Path, file: &str) -> Result<String, String> {
    let path = dir.join(file);
    if let Ok(existing) = std::fs::read_to_string(&path)
        && existing.trim().len() >= 32
    {
        return Ok(existing.trim().to_string());
    }
    let secret = random_hex(32);
    write_private(&path, &secret)?;
    Ok(secret)
}

fn random_hex(bytes: usize) -> String {
    let mut out = String::with_capacity(bytes * 2);
    while out.len() < bytes * 2 {
        out.push_str(&uuid::Uuid::new_v4().simple().to_string());
    }
    out.truncate(bytes * 2);
    out
}

fn write_private(path: &Path, content: &str) -> Result<(), String> {
    std::fs::write(path, content).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
    }
    Ok(())
}

/// The dev key's file name inside the data directory (read by `itsm token`).
pub const DEV_KEY_FILE: &str = "dev-jwt.key";
/// The admin token's file name inside the data directory (read by the client commands).
pub const DEV_TOKEN_FILE: &str = "dev-admin.token";

pub async fn up(base: Settings, args: UpArgs) -> Result<(), String> {
    let started = Instant::now();
    let _telemetry = itsm_runtime::telemetry::init(&base, "itsm");
    std::fs::create_dir_all(&args.data_dir)
        .map_err(|e| format!("cannot create {}: {e}", args.data_dir.display()))?;
    let data_dir = std::fs::canonicalize(&args.data_dir).map_err(|e| e.to_string())?;
    let jwt_secret = if base.auth.jwt_secret.is_empty() {
        dev_secret(&data_dir, DEV_KEY_FILE)?
    } else {
        base.auth.jwt_secret.clone()
    };
    let paging_secret = dev_secret(&data_dir, "dev-paging.key")?;
    let internal_token = random_hex(32);

    // Bind every port first, so each service knows where the others are (also with port 0).
    let mut listeners = Vec::new();
    for service in ALL {
        let port = if args.base_port == 0 { 0 } else { args.base_port + service.offset() };
        let addr = SocketAddr::new(args.bind, port);
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| format!("{}: cannot bind {addr}: {e}", service.name()))?;
        let local = listener.local_addr().map_err(|e| e.to_string())?;
        listeners.push((service, listener, local));
    }
    let url_of = |wanted: ServiceName| {
        listeners
            .iter()
            .find(|(s, _, _)| *s == wanted)
            .map(|(_, _, a)| format!("http://{a}"))
            .unwrap_or_default()
    };
    // The web console beside the gateway; `--base-port 0` picks a free port for it too.
    let mut console = None;
    if base.console.enabled {
        let mut addr: SocketAddr = base
            .console
            .listen
            .parse()
            .map_err(|_| format!("console.listen: expected host:port, got `{}`", base.console.listen))?;
        if args.base_port == 0 {
            addr.set_port(0);
        }
        let listener =
            TcpListener::bind(addr).await.map_err(|e| format!("console: cannot bind {addr}: {e}"))?;
        let local = listener.local_addr().map_err(|e| e.to_string())?;
        console = Some((listener, local));
    }
    let console_addr = console.as_ref().map(|(_, addr)| *addr);
    let mut upstream = base.upstream.clone();
    upstream.service_desk = url_of(ServiceName::ServiceDesk);
    upstream.incident = url_of(ServiceName::Incident);
    upstream.change = url_of(ServiceName::Change);
    upstream.cmdb = url_of(ServiceName::Cmdb);
    upstream.delivery = url_of(ServiceName::Delivery);

    let (trigger, shutdown) = Shutdown::new();
    let mut tasks = Vec::new();
    let mut endpoints = Vec::new();
    for (service, listener, addr) in listeners {
        let mut settings = base.clone();
        settings.server.listen_addr = addr.to_string();
        settings.database.url =
            format!("sqlite://{}", data_dir.join(format!("{}.db", service.name())).display());
        settings.auth.internal_token.clone_from(&internal_token);
        settings.auth.jwt_secret.clone_from(&jwt_secret);
        settings.paging.token_secret.clone_from(&paging_secret);
        settings.upstream = upstream.clone();
        endpoints.push((service, addr));
        let stop = shutdown.clone().wait();
        let task = if service == ServiceName::Gateway {
            // The console offers to sign in with the dev admin token written below.
            let console = console.take().map(|(console_listener, _)| itsm_gateway::ConsoleListener {
                listener: console_listener,
                dev_token_file: Some(data_dir.join(DEV_TOKEN_FILE)),
            });
            tokio::spawn(itsm_gateway::serve_with_console(settings, listener, console, stop))
        } else {
            tokio::spawn(serve_service(service, settings, listener, stop))
        };
        tasks.push((service, task));
    }

    if let Err(message) = wait_all_serving(&endpoints, &tasks).await {
        trigger.fire();
        return Err(message);
    }
    let token = itsm_gateway::auth::mint_token(
        &jwt_secret,
        &base.auth.jwt_issuer,
        &base.auth.jwt_audience,
        "dev-admin",
        "default",
        &["admin".to_string()],
        chrono::Duration::days(30),
    )
    .map_err(|e| format!("cannot mint the dev token: {e}"))?;
    let token_path = data_dir.join(DEV_TOKEN_FILE);
    write_private(&token_path, &token)?;

    println!("itsm up: all services SERVING in {} ms", started.elapsed().as_millis());
    for (service, addr) in &endpoints {
        println!("  {:<13} {addr}", service.name());
    }
    println!("gateway: http://{}   (dev admin token: {})", endpoints[0].1, token_path.display());
    if let Some(addr) = console_addr {
        println!("console: http://{addr}   (sign in as the dev admin)");
    }
    println!(
        "try:     grpcurl -plaintext -H \"authorization: Bearer $(cat {})\" {} list",
        token_path.display(),
        endpoints[0].1
    );
    println!("stop with Ctrl-C");

    shutdown_signal().await;
    println!("itsm up: stopping");
    trigger.fire();
    let deadline = Duration::from_secs(10);
    let mut failures = Vec::new();
    for (service, task) in tasks {
        match tokio::time::timeout(deadline, task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(err))) => failures.push(format!("{}: {err}", service.name())),
            Ok(Err(err)) => failures.push(format!("{}: {err}", service.name())),
            Err(_) => failures.push(format!("{}: did not stop within {deadline:?}", service.name())),
        }
    }
    if failures.is_empty() {
        println!("itsm up: stopped");
        Ok(())
    } else {
        Err(failures.join("; "))
    }
}

type ServiceTask = tokio::task::JoinHandle<Result<(), Error>>;

async fn wait_all_serving(
    endpoints: &[(ServiceName, SocketAddr)],
    tasks: &[(ServiceName, ServiceTask)],
) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    for (service, addr) in endpoints {
        loop {
            if let Some((_, task)) = tasks.iter().find(|(s, _)| s == service)
                && task.is_finished()
            {
                return Err(format!("{} stopped during start-up (see the log above)", service.name()));
            }
            if is_serving(*addr).await {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!("{} did not report SERVING within 60 s", service.name()));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
    Ok(())
}

async fn is_serving(addr: SocketAddr) -> bool {
    let Ok(endpoint) = tonic::transport::Endpoint::from_shared(format!("http://{addr}")) else {
        return false;
    };
    let Ok(channel) = endpoint.connect().await else { return false };
    let mut client = HealthClient::new(channel);
    matches!(
        client.check(tonic_health::pb::HealthCheckRequest { service: String::new() }).await,
        Ok(resp) if resp.get_ref().status == ServingStatus::Serving as i32
    )
}

pub async fn serve_one(settings: Settings, service: ServiceName) -> Result<(), String> {
    let _telemetry = itsm_runtime::telemetry::init(&settings, &format!("itsm-{}", service.name()));
    let listener = TcpListener::bind(&settings.server.listen_addr)
        .await
        .map_err(|e| format!("cannot bind {} (server.listen_addr): {e}", settings.server.listen_addr))?;
    serve_service(service, settings, listener, shutdown_signal()).await.map_err(|e| e.to_string())
}

pub async fn migrate(settings: Settings, service: ServiceName) -> Result<(), String> {
    use itsm_runtime::service::migrate;
    let db = itsm_runtime::db::connect(&settings.database).await.map_err(|e| e.to_string())?;
    let result = match service {
        ServiceName::ServiceDesk => migrate::<itsm_service_desk::migration::Migrator>(&db).await,
        ServiceName::Incident => migrate::<itsm_incident::migration::Migrator>(&db).await,
        ServiceName::Change => migrate::<itsm_change::migration::Migrator>(&db).await,
        ServiceName::Cmdb => migrate::<itsm_cmdb::migration::Migrator>(&db).await,
        ServiceName::Delivery => migrate::<itsm_delivery::migration::Migrator>(&db).await,
        // The gateway's own tables: the audit log and API keys.
        ServiceName::Gateway => migrate::<itsm_gateway::audit::Migrator>(&db).await,
    };
    result.map_err(|e| e.to_string())?;
    println!("{}: migrations applied", service.name());
    Ok(())
}
