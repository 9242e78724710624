//! The incident service: incidents, problems and known errors (`itsm.incident.v1`).
//!
//! This first version serves the contracts, health, reflection and its event feed; the RPCs of
//! `IncidentService` and `ProblemService` answer `UNIMPLEMENTED` until the incident issue builds
//! them on the pattern of the CMDB.

pub mod migration;

use std::future::Future;

use tokio::net::TcpListener;

use itsm_proto::incident::incident_service_server::{IncidentService, IncidentServiceServer};
use itsm_proto::incident::problem_service_server::{ProblemService, ProblemServiceServer};
use itsm_runtime::{Error, Settings};

pub const SERVICE: &str = "incident";

struct IncidentApi;

#[tonic::async_trait]
impl IncidentService for IncidentApi {}

struct ProblemApi;

#[tonic::async_trait]
impl ProblemService for ProblemApi {}

/// Runs the incident service on `listener` until `shutdown` completes.
pub async fn serve(
    settings: Settings,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    itsm_runtime::service::run::<migration::Migrator>(
        SERVICE,
        settings,
        listener,
        shutdown,
        |server, _state| {
            server
                .add_service(IncidentServiceServer::new(IncidentApi))
                .add_service(ProblemServiceServer::new(ProblemApi))
        },
    )
    .await
}
