//! The service desk: tickets, support groups and tiers (`itsm.servicedesk.v1`).
//!
//! This first version serves the contract, health, reflection and its event feed; the RPCs of
//! `ServiceDeskService` answer `UNIMPLEMENTED` until the service-desk issue builds them.

pub mod migration;

use std::future::Future;

use tokio::net::TcpListener;

use itsm_proto::servicedesk::service_desk_service_server::{ServiceDeskService, ServiceDeskServiceServer};
use itsm_runtime::{Error, Settings};

pub const SERVICE: &str = "service-desk";

struct ServiceDeskApi;

#[tonic::async_trait]
impl ServiceDeskService for ServiceDeskApi {}

/// Runs the service desk on `listener` until `shutdown` completes.
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
        |server, _state| server.add_service(ServiceDeskServiceServer::new(ServiceDeskApi)),
    )
    .await
}
