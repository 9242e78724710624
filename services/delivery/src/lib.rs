//! Service delivery (`itsm.delivery.v1`): service level management (business calendars,
//! agreements, SLA clocks driven by the incident and service desk feeds, SLOs from OpenSLO with
//! burn-rate alerts that open incidents) and availability management (outages, from major
//! incidents too, and availability reports), capacity management (resources, samples,
//! forecasts, warnings, plans), IT service continuity (BIA, plans, exercises, gaps, invocation)
//! and financial management (cost items, FOCUS import, allocation, budgets, chargeback).

pub mod availability;
pub mod capacity;
pub mod continuity;
pub mod domain;
pub mod entity;
pub mod finance;
pub mod migration;
pub mod service_level;

use std::future::Future;
use std::time::Duration;

use futures::FutureExt;
use tokio::net::TcpListener;

use itsm_proto::delivery::availability_service_server::AvailabilityServiceServer;
use itsm_proto::delivery::capacity_service_server::CapacityServiceServer;
use itsm_proto::delivery::continuity_service_server::ContinuityServiceServer;
use itsm_proto::delivery::finance_service_server::FinanceServiceServer;
use itsm_proto::delivery::service_level_service_server::ServiceLevelServiceServer;
use itsm_runtime::consumer::{ConsumerOptions, EventConsumer};
use itsm_runtime::{Error, Settings};

use service_level::feed::{INCIDENT_CONSUMER, IncidentFeed, TICKET_CONSUMER, TicketFeed};
use service_level::store::ServiceLevel;

pub const SERVICE: &str = "delivery";

fn consumer_options(name: &str, event_type: String, settings: &Settings) -> ConsumerOptions {
    let mut options = ConsumerOptions::new(name);
    options.types = vec![event_type];
    options.internal_token.clone_from(&settings.auth.internal_token);
    options
}

/// Runs the delivery service on `listener` until `shutdown` completes.
pub async fn serve(
    settings: Settings,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let max = settings.server.max_message_bytes;
    // Clocks follow the incident and ticket feeds (when those services are known).
    let incidents = itsm_runtime::upstream::channel(&settings.upstream.incident, "upstream.incident")?;
    let tickets = itsm_runtime::upstream::channel(&settings.upstream.service_desk, "upstream.service_desk")?;
    let incident_options = consumer_options(
        INCIDENT_CONSUMER,
        <itsm_proto::incident::IncidentChanged as prost::Name>::full_name(),
        &settings,
    );
    let ticket_options = consumer_options(
        TICKET_CONSUMER,
        <itsm_proto::servicedesk::TicketChanged as prost::Name>::full_name(),
        &settings,
    );
    let outage_options = consumer_options(
        availability::CONSUMER,
        <itsm_proto::incident::MajorIncidentOutage as prost::Name>::full_name(),
        &settings,
    );
    let sweep_interval = Duration::from_millis(settings.delivery.sla_sweep_interval_ms);
    let capacity_interval = Duration::from_millis(settings.delivery.capacity_sweep_interval_ms);
    // The catalogue checks business services in the CMDB.
    let cmdb = itsm_cmdb_client::CmdbDirectory::from_settings(&settings)?;
    // Burn-rate alerts open incidents.
    let incident_calls = incidents.clone();
    // Capacity warnings can raise changes.
    let change_calls = itsm_runtime::upstream::channel(&settings.upstream.change, "upstream.change")?;
    let internal_token = settings.auth.internal_token.clone();
    let shutdown = shutdown.shared();
    let stops = (shutdown.clone(), shutdown.clone(), shutdown.clone(), shutdown.clone(), shutdown.clone());
    itsm_runtime::service::run::<migration::Migrator>(
        SERVICE,
        settings,
        listener,
        shutdown,
        |server, state| {
            let store = ServiceLevel { db: state.db.clone(), feed: state.feed.clone() };
            let outages = availability::Availability { db: state.db.clone() };
            if let Some(channel) = incidents {
                let handler = IncidentFeed { store: store.clone(), pending: Default::default() };
                tokio::spawn(
                    EventConsumer::new(incident_options, state.db.clone(), channel.clone(), handler)
                        .notifying(state.feed.clone())
                        .run(stops.0),
                );
                // Major incidents open and close outages.
                let handler = availability::MajorIncidentOutages { availability: outages.clone() };
                tokio::spawn(
                    EventConsumer::new(outage_options, state.db.clone(), channel, handler)
                        .notifying(state.feed.clone())
                        .run(stops.3),
                );
            }
            if let Some(channel) = tickets {
                let handler = TicketFeed { store: store.clone(), pending: Default::default() };
                tokio::spawn(
                    EventConsumer::new(ticket_options, state.db.clone(), channel, handler)
                        .notifying(state.feed.clone())
                        .run(stops.1),
                );
            }
            tokio::spawn(service_level::feed::sweep(store.clone(), sweep_interval, stops.2));
            let objectives = service_level::objectives::Objectives {
                db: state.db.clone(),
                incidents: incident_calls.clone(),
                internal_token: internal_token.clone(),
            };
            let documents = itsm_runtime::documents::Documents { db: state.db.clone() };
            let capacity = capacity::Capacity {
                documents: documents.clone(),
                feed: state.feed.clone(),
                incidents: incident_calls.clone(),
                changes: change_calls,
                internal_token: internal_token.clone(),
            };
            tokio::spawn(capacity::sweep(capacity.clone(), capacity_interval, stops.4));
            let capacity_api = capacity::CapacityApi {
                capacity,
                cmdb: cmdb.clone(),
                page_tokens: state.page_tokens.clone(),
            };
            let continuity_api = continuity::ContinuityApi {
                documents: documents.clone(),
                cmdb: cmdb.clone(),
                incidents: incident_calls.clone(),
                internal_token: internal_token.clone(),
                page_tokens: state.page_tokens.clone(),
            };
            let finance_api =
                finance::FinanceApi { documents, cmdb: cmdb.clone(), page_tokens: state.page_tokens.clone() };
            let catalogue = service_level::catalogue::Catalogue { db: state.db.clone(), cmdb };
            let api = service_level::api::ServiceLevelApi {
                store,
                catalogue,
                objectives,
                page_tokens: state.page_tokens.clone(),
            };
            server
                .add_service(
                    ServiceLevelServiceServer::new(api)
                        .max_decoding_message_size(max)
                        .max_encoding_message_size(max),
                )
                .add_service(AvailabilityServiceServer::new(availability::AvailabilityApi {
                    availability: outages,
                    page_tokens: state.page_tokens.clone(),
                }))
                .add_service(
                    CapacityServiceServer::new(capacity_api)
                        .max_decoding_message_size(max)
                        .max_encoding_message_size(max),
                )
                .add_service(
                    ContinuityServiceServer::new(continuity_api)
                        .max_decoding_message_size(max)
                        .max_encoding_message_size(max),
                )
                .add_service(
                    FinanceServiceServer::new(finance_api)
                        .max_decoding_message_size(max)
                        .max_encoding_message_size(max),
                )
        },
    )
    .await
}
