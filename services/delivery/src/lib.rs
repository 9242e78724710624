//! Service delivery: service level, availability, capacity, continuity and finance
//! (`itsm.delivery.v1`).
//!
//! This first version serves the contracts, health, reflection and its event feed; the RPCs of
//! the five services answer `UNIMPLEMENTED` until the delivery issues build them.

pub mod migration;

use std::future::Future;

use tokio::net::TcpListener;

use itsm_proto::delivery::availability_service_server::{AvailabilityService, AvailabilityServiceServer};
use itsm_proto::delivery::capacity_service_server::{CapacityService, CapacityServiceServer};
use itsm_proto::delivery::continuity_service_server::{ContinuityService, ContinuityServiceServer};
use itsm_proto::delivery::finance_service_server::{FinanceService, FinanceServiceServer};
use itsm_proto::delivery::service_level_service_server::{ServiceLevelService, ServiceLevelServiceServer};
use itsm_runtime::{Error, Settings};

pub const SERVICE: &str = "delivery";

struct DeliveryApi;

#[tonic::async_trait]
impl ServiceLevelService for DeliveryApi {}

#[tonic::async_trait]
impl AvailabilityService for DeliveryApi {}

#[tonic::async_trait]
impl CapacityService for DeliveryApi {}

#[tonic::async_trait]
impl ContinuityService for DeliveryApi {}

#[tonic::async_trait]
impl FinanceService for DeliveryApi {}

/// Runs the delivery service on `listener` until `shutdown` completes.
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
                .add_service(ServiceLevelServiceServer::new(DeliveryApi))
                .add_service(AvailabilityServiceServer::new(DeliveryApi))
                .add_service(CapacityServiceServer::new(DeliveryApi))
                .add_service(ContinuityServiceServer::new(DeliveryApi))
                .add_service(FinanceServiceServer::new(DeliveryApi))
        },
    )
    .await
}
