//! End-to-end harness: the whole suite started in-process on port 0, each service with a fresh
//! database of the chosen backend, wired together over gRPC exactly as `itsm up` does; and the
//! load generator of `itsm bench load` ([`load`]).

pub mod browser;
pub mod load;

use std::net::SocketAddr;
use std::time::Duration;

use tonic::transport::Channel;

use itsm_runtime::testing::{RunningServer, TestBackend, TestDatabase, settings_for};
use itsm_runtime::{Error, Settings};

/// Issuer/audience the suite's gateway accepts.
pub const ISSUER: &str = "itsm";
pub const AUDIENCE: &str = "itsm";

/// A running suite. Dropping it stops every server and drops the databases.
pub struct Suite {
    pub gateway: RunningServer,
    /// Where the web console listens, when the suite was started with it
    /// ([`Suite::start_with_console`]).
    pub console: Option<SocketAddr>,
    pub services: Vec<(&'static str, RunningServer)>,
    pub jwt_secret: String,
    /// Each service's database, by service name (kept after [`Suite::stop_service`], which stops
    /// the server only).
    databases: Vec<(&'static str, TestDatabase)>,
}

impl Suite {
    pub async fn start(backend: TestBackend) -> Result<Self, Error> {
        Self::start_with(backend, |_| {}).await
    }

    /// Starts the suite with `tune_gateway` for the gateway's settings.
    pub async fn start_with(
        backend: TestBackend,
        tune_gateway: impl FnOnce(&mut Settings),
    ) -> Result<Self, Error> {
        Self::start_tuned(backend, |_, _| {}, tune_gateway).await
    }

    /// Starts the suite with the web console beside the gateway, on a port of its own
    /// ([`Suite::console_url`]).
    pub async fn start_with_console(backend: TestBackend) -> Result<Self, Error> {
        Self::start_inner(backend, |_, _| {}, |_| {}, true).await
    }

    /// Starts the suite with the web console, `tune_gateway` adjusting the gateway's settings
    /// (e.g. its rate limits, which a benchmark walking thousands of pages as one user turns off).
    pub async fn start_with_console_tuned(
        backend: TestBackend,
        tune_gateway: impl FnOnce(&mut Settings),
    ) -> Result<Self, Error> {
        Self::start_inner(backend, |_, _| {}, tune_gateway, true).await
    }

    /// Starts the suite; `tune_service` adjusts each service's settings (by name) and
    /// `tune_gateway` the gateway's (e.g. its rate limits).
    pub async fn start_tuned(
        backend: TestBackend,
        tune_service: impl Fn(&str, &mut Settings),
        tune_gateway: impl FnOnce(&mut Settings),
    ) -> Result<Self, Error> {
        Self::start_inner(backend, tune_service, tune_gateway, false).await
    }

    async fn start_inner(
        backend: TestBackend,
        tune_service: impl Fn(&str, &mut Settings),
        tune_gateway: impl FnOnce(&mut Settings),
        with_console: bool,
    ) -> Result<Self, Error> {
        let jwt_secret = "e2e-secret-that-is-long-enough-for-hs256".to_string();
        let mut databases = Vec::new();
        let mut services = Vec::new();
        // Every service knows every other, as in a deployment: ports are bound first, so services
        // that follow each other's feeds (service desk and delivery, CMDB and change) can be told
        // where the other is before either runs.
        const NAMES: [&str; 5] = ["cmdb", "change", "incident", "service-desk", "delivery"];
        let mut listeners = Vec::new();
        let mut base = settings_for("");
        for name in NAMES {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .map_err(|e| Error::Internal(format!("bind: {e}")))?;
            let url = format!(
                "http://{}",
                listener.local_addr().map_err(|e| Error::Internal(format!("local addr: {e}")))?
            );
            match name {
                "service-desk" => base.upstream.service_desk = url,
                "incident" => base.upstream.incident = url,
                "change" => base.upstream.change = url,
                "cmdb" => base.upstream.cmdb = url,
                _ => base.upstream.delivery = url,
            }
            listeners.push(listener);
        }
        for (name, listener) in NAMES.into_iter().zip(listeners) {
            let db = TestDatabase::create(backend).await?;
            let mut settings = settings_for(&db.url);
            settings.auth.jwt_secret.clone_from(&jwt_secret);
            settings.upstream = base.upstream.clone();
            tune_service(name, &mut settings);
            let server = RunningServer::start_on(listener, move |listener, shutdown| async move {
                let stop = shutdown.wait();
                match name {
                    "service-desk" => itsm_service_desk::serve(settings, listener, stop).await,
                    "incident" => itsm_incident::serve(settings, listener, stop).await,
                    "change" => itsm_change::serve(settings, listener, stop).await,
                    "cmdb" => itsm_cmdb::serve(settings, listener, stop).await,
                    _ => itsm_delivery::serve(settings, listener, stop).await,
                }
            })
            .await?;
            services.push((name, server));
            databases.push((name, db));
        }
        let mut settings = settings_for("sqlite::memory:");
        settings.upstream = base.upstream;
        settings.auth.jwt_secret.clone_from(&jwt_secret);
        // The harness decides about the console: never on the default port 8080, where another
        // test's or a developer's console may listen.
        settings.console.enabled = false;
        tune_gateway(&mut settings);
        let console_listener = if with_console {
            Some(
                tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .map_err(|e| Error::Internal(format!("bind console: {e}")))?,
            )
        } else {
            None
        };
        let console = match &console_listener {
            Some(listener) => {
                Some(listener.local_addr().map_err(|e| Error::Internal(format!("console addr: {e}")))?)
            }
            None => None,
        };
        let gateway = RunningServer::start(move |listener, shutdown| async move {
            let console = console_listener.map(itsm_gateway::ConsoleListener::new);
            itsm_gateway::serve_with_console(settings, listener, console, shutdown.wait()).await
        })
        .await?;
        Ok(Self { gateway, console, services, jwt_secret, databases })
    }

    /// The web console's address (`http://127.0.0.1:<port>`), when the suite runs it.
    pub fn console_url(&self) -> Option<String> {
        self.console.map(|addr| format!("http://{addr}"))
    }

    /// A bearer token for `subject` in `tenant` with `roles`.
    pub fn token(&self, subject: &str, tenant: &str, roles: &[&str]) -> Result<String, Error> {
        self.token_valid_for(subject, tenant, roles, chrono_hours(1))
    }

    /// A bearer token for `subject` in `tenant` with `roles` that expires after `valid_for`.
    pub fn token_valid_for(
        &self,
        subject: &str,
        tenant: &str,
        roles: &[&str],
        valid_for: chrono::Duration,
    ) -> Result<String, Error> {
        let roles: Vec<String> = roles.iter().map(|r| (*r).to_string()).collect();
        itsm_gateway::auth::mint_token(&self.jwt_secret, ISSUER, AUDIENCE, subject, tenant, &roles, valid_for)
            .map_err(|e| Error::Internal(format!("mint token: {e}")))
    }

    pub async fn gateway_channel(&self) -> Result<Channel, Error> {
        tonic::transport::Endpoint::from_shared(self.gateway.url())
            .map_err(|e| Error::Internal(e.to_string()))?
            .timeout(Duration::from_secs(30))
            .connect()
            .await
            .map_err(|e| Error::Unavailable(format!("connect gateway: {e}")))
    }

    /// Stops one service (its process in a real deployment); the others keep running.
    pub async fn stop_service(&mut self, name: &str) -> Result<(), Error> {
        match self.services.iter().position(|(n, _)| *n == name) {
            Some(i) => self.services.remove(i).1.stop().await,
            None => Err(Error::NotFound(format!("service {name}"))),
        }
    }

    pub fn service(&self, name: &str) -> Option<&RunningServer> {
        self.services.iter().find(|(n, _)| *n == name).map(|(_, server)| server)
    }

    /// The database URL of service `name` (`"cmdb"`, `"service-desk"`, …), for a benchmark or
    /// test that seeds it directly; `None` for a name the suite does not run.
    pub fn database_url(&self, name: &str) -> Option<&str> {
        self.databases.iter().find(|(n, _)| *n == name).map(|(_, db)| db.url.as_str())
    }
}

fn chrono_hours(hours: i64) -> chrono::Duration {
    chrono::Duration::hours(hours)
}

/// A request carrying `authorization: Bearer <token>`.
pub fn authed<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    // A token with characters metadata cannot carry goes without; the call is then UNAUTHENTICATED.
    if let Ok(value) = format!("Bearer {token}").parse() {
        request.metadata_mut().insert("authorization", value);
    }
    request
}
