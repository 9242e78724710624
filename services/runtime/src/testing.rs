//! Test harness: a fresh database per test (a temporary SQLite file, or a Postgres database
//! created for the test and dropped afterwards) and servers on port 0, so tests run in parallel
//! without sharing state. Used by every service's tests and the end-to-end suite.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use sea_orm::{ConnectionTrait, Database};
use tokio::net::TcpListener;

use crate::Error;
use crate::config::Settings;
use crate::server::{Shutdown, ShutdownTrigger};

/// Admin connection for creating test databases; override with `ITSM_TEST_POSTGRES_URL`.
pub const DEFAULT_POSTGRES_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
/// Internal token used by test servers and clients.
pub const TEST_INTERNAL_TOKEN: &str = "test-internal-token";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestBackend {
    Sqlite,
    Postgres,
}

/// Generates `mod <name> { sqlite(), postgres() }` test pairs for `async fn <name>(TestBackend)`.
#[macro_export]
macro_rules! db_tests {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name($crate::testing::TestBackend::Sqlite).await;
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name($crate::testing::TestBackend::Postgres).await;
                }
            }
        )*
    };
}

/// A database that exists for one test.
pub struct TestDatabase {
    pub url: String,
    pub backend: TestBackend,
    _dir: Option<tempfile::TempDir>,
    postgres: Option<(String, String)>,
}

pub fn postgres_admin_url() -> String {
    std::env::var("ITSM_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_POSTGRES_ADMIN_URL.to_string())
}

fn with_database(admin_url: &str, database: &str) -> String {
    match admin_url.rfind('/') {
        Some(slash)
            if admin_url[..slash].contains("://") && slash > admin_url.find("://").unwrap_or(0) + 2 =>
        {
            format!("{}/{database}", &admin_url[..slash])
        }
        _ => format!("{admin_url}/{database}"),
    }
}

impl TestDatabase {
    /// A fresh database; `UNAVAILABLE` when PostgreSQL cannot be reached.
    pub async fn create(backend: TestBackend) -> Result<Self, Error> {
        match backend {
            TestBackend::Sqlite => {
                let dir = tempfile::tempdir().map_err(|e| Error::Internal(format!("temp dir: {e}")))?;
                let url = format!("sqlite://{}", dir.path().join("test.db").display());
                Ok(Self { url, backend, _dir: Some(dir), postgres: None })
            }
            TestBackend::Postgres => {
                let admin = postgres_admin_url();
                let name = format!("itsm_test_{}", uuid::Uuid::new_v4().simple());
                let conn = Database::connect(admin.as_str()).await.map_err(|e| {
                    Error::Unavailable(format!(
                        "PostgreSQL at {} is not reachable: {e}",
                        crate::db::redact_url(&admin)
                    ))
                })?;
                conn.execute_unprepared(&format!("CREATE DATABASE {name}")).await?;
                let _ = conn.close().await;
                Ok(Self {
                    url: with_database(&admin, &name),
                    backend,
                    _dir: None,
                    postgres: Some((admin, name)),
                })
            }
        }
    }

    /// Another database of the same backend (a second service in the same test).
    pub async fn another(&self) -> Result<Self, Error> {
        Self::create(self.backend).await
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Some((admin, name)) = self.postgres.take() {
            // Drop runs outside async context; use a small runtime on a helper thread.
            let _ = std::thread::spawn(move || {
                let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                    return;
                };
                rt.block_on(async move {
                    if let Ok(conn) = Database::connect(admin.as_str()).await {
                        let _ = conn
                            .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                            .await;
                        let _ = conn.close().await;
                    }
                });
            })
            .join();
        }
    }
}

/// Settings for a service under test: its database, internal token, quick timeouts.
pub fn settings_for(database_url: &str) -> Settings {
    let mut settings = Settings::default();
    settings.database.url = database_url.to_string();
    settings.database.startup_retry_ms = 5_000;
    settings.database.max_connections = 5;
    settings.auth.internal_token = TEST_INTERNAL_TOKEN.to_string();
    settings.auth.jwt_secret = "test-jwt-secret-with-enough-length".to_string();
    settings.server.shutdown_grace_ms = 2_000;
    // The web console binds 127.0.0.1:8080 by default; a test that wants it binds port 0.
    settings.console.enabled = false;
    // No other service unless the test names it: the default addresses (127.0.0.1:5005x) could
    // reach someone else's server, such as an `itsm up` on the same machine.
    settings.upstream = crate::config::UpstreamSettings {
        service_desk: String::new(),
        incident: String::new(),
        change: String::new(),
        cmdb: String::new(),
        delivery: String::new(),
    };
    settings
}

/// A server started by a test; stops when dropped.
pub struct RunningServer {
    pub addr: SocketAddr,
    trigger: Option<ShutdownTrigger>,
    handle: Option<tokio::task::JoinHandle<Result<(), crate::Error>>>,
}

impl RunningServer {
    /// Binds 127.0.0.1:0 and runs `serve(listener, shutdown)` in a task. Waits until the port
    /// answers gRPC health before returning.
    pub async fn start<F, Fut>(serve: F) -> Result<Self, Error>
    where
        F: FnOnce(TcpListener, Shutdown) -> Fut,
        Fut: Future<Output = Result<(), crate::Error>> + Send + 'static,
    {
        let listener =
            TcpListener::bind("127.0.0.1:0").await.map_err(|e| Error::Internal(format!("bind: {e}")))?;
        Self::start_on(listener, serve).await
    }

    /// Starts `serve` on a listener bound beforehand, so others can be given its address before
    /// it runs (services that follow each other's feeds).
    pub async fn start_on<F, Fut>(listener: TcpListener, serve: F) -> Result<Self, Error>
    where
        F: FnOnce(TcpListener, Shutdown) -> Fut,
        Fut: Future<Output = Result<(), crate::Error>> + Send + 'static,
    {
        let addr = listener.local_addr().map_err(|e| Error::Internal(format!("local addr: {e}")))?;
        let (trigger, shutdown) = Shutdown::new();
        let handle = tokio::spawn(serve(listener, shutdown));
        let mut server = Self { addr, trigger: Some(trigger), handle: Some(handle) };
        server.wait_serving().await?;
        Ok(server)
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    async fn wait_serving(&mut self) -> Result<(), Error> {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
        let endpoint = tonic::transport::Endpoint::from_shared(self.url())
            .map_err(|e| Error::Internal(format!("endpoint: {e}")))?;
        loop {
            if let Ok(channel) = endpoint.connect().await {
                let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
                if let Ok(resp) =
                    health.check(tonic_health::pb::HealthCheckRequest { service: String::new() }).await
                    && resp.into_inner().status
                        == tonic_health::pb::health_check_response::ServingStatus::Serving as i32
                {
                    return Ok(());
                }
            }
            if self.handle.as_ref().is_some_and(tokio::task::JoinHandle::is_finished) {
                let reason = match self.handle.take() {
                    Some(handle) => match handle.await {
                        Ok(Err(err)) => err.to_string(),
                        Ok(Ok(())) => "it stopped".to_string(),
                        Err(err) => err.to_string(),
                    },
                    None => String::new(),
                };
                return Err(Error::Unavailable(format!(
                    "server at {} exited during start-up: {reason}",
                    self.addr
                )));
            }
            if tokio::time::Instant::now() > deadline {
                return Err(Error::Unavailable(format!("server at {} did not become SERVING", self.addr)));
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// Stops the server and waits for it to finish draining.
    pub async fn stop(mut self) -> Result<(), crate::Error> {
        if let Some(trigger) = self.trigger.take() {
            trigger.fire();
        }
        match self.handle.take() {
            Some(handle) => handle.await.unwrap_or_else(|e| Err(crate::Error::Internal(e.to_string()))),
            None => Ok(()),
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        if let Some(trigger) = self.trigger.take() {
            trigger.fire();
        }
    }
}

/// A channel to a test server that carries the internal token and a call context, as the gateway
/// would send them.
pub async fn internal_channel(url: &str) -> Result<tonic::transport::Channel, Error> {
    tonic::transport::Endpoint::from_shared(url.to_string())
        .map_err(|e| Error::invalid("url", e.to_string()))?
        .initial_stream_window_size(4 << 20)
        .initial_connection_window_size(8 << 20)
        .connect()
        .await
        .map_err(|e| Error::Unavailable(format!("connect {url}: {e}")))
}

/// Metadata for a direct call to a service as tenant `tenant` by `principal` (what the gateway adds).
pub fn with_context<T>(message: T, tenant: &str, principal: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    crate::CallContext { tenant: tenant.into(), principal: principal.into(), roles: vec!["admin".into()] }
        .apply(request.metadata_mut(), TEST_INTERNAL_TOKEN);
    request
}

/// A PostgreSQL server of the test's own (initdb + pg_ctl on a free port), for tests that stop
/// and restart the database under a running service without disturbing other tests.
pub struct PrivatePostgres {
    pub port: u16,
    dir: tempfile::TempDir,
    bin: PathBuf,
}

fn postgres_bin_dir() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> =
        std::fs::read_dir("/usr/lib/postgresql").ok()?.flatten().map(|e| e.path().join("bin")).collect();
    dirs.sort();
    dirs.into_iter().rev().find(|d| d.join("pg_ctl").exists())
}

fn run_as_postgres(bin: &Path, tool: &str, args: &[&str]) -> std::io::Result<std::process::Output> {
    let program = bin.join(tool);
    // PostgreSQL refuses to run as root; CI runs as root, so drop to the `postgres` user there.
    let is_root = Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0")).unwrap_or(false);
    if is_root {
        Command::new("runuser").arg("-u").arg("postgres").arg("--").arg(program).args(args).output()
    } else {
        Command::new(program).args(args).output()
    }
}

impl PrivatePostgres {
    /// Creates and starts a cluster; `None` when no PostgreSQL binaries are installed.
    pub fn start() -> Option<Self> {
        let bin = postgres_bin_dir()?;
        let dir = tempfile::Builder::new().prefix("itsm-pg-").tempdir_in("/tmp").ok()?;
        let data = dir.path().join("data");
        let port = std::net::TcpListener::bind("127.0.0.1:0").ok()?.local_addr().ok()?.port();
        let _ = Command::new("chmod").arg("777").arg(dir.path()).status();
        let _ = Command::new("chown").arg("postgres").arg(dir.path()).status();
        let data_str = data.to_string_lossy().to_string();
        let out =
            run_as_postgres(&bin, "initdb", &["-D", &data_str, "-A", "trust", "-U", "postgres", "--no-sync"])
                .ok()?;
        if !out.status.success() {
            eprintln!("initdb failed: {}", String::from_utf8_lossy(&out.stderr));
            return None;
        }
        let pg = Self { port, dir, bin };
        pg.start_server().then_some(pg)
    }

    fn data_dir(&self) -> String {
        self.dir.path().join("data").to_string_lossy().to_string()
    }

    fn start_server(&self) -> bool {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("log").to_string_lossy().to_string();
        run_as_postgres(
            &self.bin,
            "pg_ctl",
            &["-D", &self.data_dir(), "-o", &options, "-l", &log, "-w", "start"],
        )
        .map(|o| o.status.success())
        .unwrap_or(false)
    }

    /// Starts the server again after [`stop`](Self::stop).
    pub fn restart(&self) -> bool {
        self.start_server()
    }

    /// Stops the server (fast mode: connections are terminated).
    pub fn stop(&self) -> bool {
        run_as_postgres(&self.bin, "pg_ctl", &["-D", &self.data_dir(), "-m", "fast", "-w", "stop"])
            .map(|o| o.status.success())
            .unwrap_or(false)
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ =
            run_as_postgres(&self.bin, "pg_ctl", &["-D", &self.data_dir(), "-m", "immediate", "-w", "stop"]);
    }
}
