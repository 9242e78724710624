//! Change and release management (`itsm.change.v1`).
//!
//! This first version serves the contracts, health, reflection and its event feed; the RPCs of
//! `ChangeService` and `ReleaseService` answer `UNIMPLEMENTED` until the change issue builds them.

pub mod migration;

use std::future::Future;

use tokio::net::TcpListener;

use itsm_proto::change::change_service_server::{ChangeService, ChangeServiceServer};
use itsm_proto::change::release_service_server::{ReleaseService, ReleaseServiceServer};
use itsm_runtime::{Error, Settings};

pub const SERVICE: &str = "change";

struct ChangeApi;

#[tonic::async_trait]
impl ChangeService for ChangeApi {}

struct ReleaseApi;

#[tonic::async_trait]
impl ReleaseService for ReleaseApi {}

/// Runs the change service on `listener` until `shutdown` completes.
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
                .add_service(ChangeServiceServer::new(ChangeApi))
                .add_service(ReleaseServiceServer::new(ReleaseApi))
        },
    )
    .await
}
