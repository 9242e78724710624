//! End-to-end harness: the whole suite started in-process on port 0, each service with a fresh
//! database of the chosen backend, wired together over gRPC exactly as `itsm up` does.

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
    pub services: Vec<(&'static str, RunningServer)>,
    pub jwt_secret: String,
    _databases: Vec<TestDatabase>,
}

impl Suite {
    pub async fn start(backend: TestBackend) -> Result<Self, Error> {
        Self::start_with(backend, |_| {}).await
    }

    /// Starts the suite; `tune_gateway` adjusts the gateway's settings (e.g. its rate limits).
    pub async fn start_with(
        backend: TestBackend,
        tune_gateway: impl FnOnce(&mut Settings),
    ) -> Result<Self, Error> {
        let jwt_secret = "e2e-secret-that-is-long-enough-for-hs256".to_string();
        let mut databases = Vec::new();
        let mut services = Vec::new();
        // Each service knows only the ones started before it (dependencies first); `settings_for`
        // starts with no upstream at all.
        let mut base = settings_for("");
        for name in ["cmdb", "change", "incident", "service-desk", "delivery"] {
            let db = TestDatabase::create(backend).await?;
            let mut settings = settings_for(&db.url);
            settings.auth.jwt_secret.clone_from(&jwt_secret);
            settings.upstream = base.upstream.clone();
            let server = RunningServer::start(move |listener, shutdown| async move {
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
            match name {
                "service-desk" => base.upstream.service_desk = server.url(),
                "incident" => base.upstream.incident = server.url(),
                "change" => base.upstream.change = server.url(),
                "cmdb" => base.upstream.cmdb = server.url(),
                _ => base.upstream.delivery = server.url(),
            }
            services.push((name, server));
            databases.push(db);
        }
        let mut settings = settings_for("sqlite::memory:");
        settings.upstream = base.upstream;
        settings.auth.jwt_secret.clone_from(&jwt_secret);
        tune_gateway(&mut settings);
        let gateway = RunningServer::start(move |listener, shutdown| async move {
            itsm_gateway::serve(settings, listener, shutdown.wait()).await
        })
        .await?;
        Ok(Self { gateway, services, jwt_secret, _databases: databases })
    }

    /// A bearer token for `subject` in `tenant` with `roles`.
    pub fn token(&self, subject: &str, tenant: &str, roles: &[&str]) -> Result<String, Error> {
        let roles: Vec<String> = roles.iter().map(|r| (*r).to_string()).collect();
        itsm_gateway::auth::mint_token(
            &self.jwt_secret,
            ISSUER,
            AUDIENCE,
            subject,
            tenant,
            &roles,
            chrono_hours(1),
        )
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
