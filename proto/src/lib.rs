//! Protobuf contracts of the ITSM suite: generated messages, clients and servers.
//!
//! Packages follow `itsm.<domain>.v1`; the Rust modules mirror them (`itsm_proto::itsm::cmdb::v1`).
//! Shorter aliases are re-exported at the crate root (`itsm_proto::cmdb`).

#![allow(clippy::all, clippy::pedantic, missing_docs)]

include!(concat!(env!("OUT_DIR"), "/itsm.rs"));

pub use itsm::change::v1 as change;
pub use itsm::cmdb::v1 as cmdb;
pub use itsm::common::v1 as common;
pub use itsm::delivery::v1 as delivery;
pub use itsm::events::v1 as events;
pub use itsm::gateway::v1 as gateway;
pub use itsm::incident::v1 as incident;
pub use itsm::servicedesk::v1 as servicedesk;

/// Encoded `FileDescriptorSet` of every ITSM proto, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/itsm_descriptor.bin"));

/// Fully qualified names of every public gRPC service, with the service that owns it.
/// The gateway routes by this table; `itsm up` and reflection tests read it too.
pub const PUBLIC_SERVICES: &[(&str, &str)] = &[
    ("itsm.servicedesk.v1.ServiceDeskService", "service-desk"),
    ("itsm.incident.v1.IncidentService", "incident"),
    ("itsm.incident.v1.ProblemService", "incident"),
    ("itsm.change.v1.ChangeService", "change"),
    ("itsm.change.v1.ReleaseService", "change"),
    ("itsm.cmdb.v1.CmdbService", "cmdb"),
    ("itsm.delivery.v1.ServiceLevelService", "delivery"),
    ("itsm.delivery.v1.AvailabilityService", "delivery"),
    ("itsm.delivery.v1.CapacityService", "delivery"),
    ("itsm.delivery.v1.ContinuityService", "delivery"),
    ("itsm.delivery.v1.FinanceService", "delivery"),
    ("itsm.gateway.v1.OverviewService", "gateway"),
    ("itsm.gateway.v1.AuditService", "gateway"),
    ("itsm.gateway.v1.ApiKeyService", "gateway"),
];
