//! Composite views through the gateway: an incident with its ticket, CIs, SLA clocks and recent
//! changes; with a backend stopped the view still answers at once with the part reported missing.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::time::{Duration, Instant};

use tonic::Code;

use itsm_e2e::{Suite, authed};
use itsm_proto::change::change_service_client::ChangeServiceClient;
use itsm_proto::change::{Change, ChangeType, Changeset, CreateChangeRequest, RecordChangesetRequest};
use itsm_proto::cmdb::cmdb_service_client::CmdbServiceClient;
use itsm_proto::cmdb::{ConfigurationItem, CreateConfigurationItemRequest};
use itsm_proto::gateway::overview_service_client::OverviewServiceClient;
use itsm_proto::gateway::{
    CanDeployRequest, GetIncidentOverviewRequest, GetServiceHealthRequest, ServiceHealth,
};
use itsm_proto::servicedesk::service_desk_service_client::ServiceDeskServiceClient;
use itsm_proto::servicedesk::{CreateTicketRequest, Ticket, TicketType};
use itsm_runtime::db::{now_micros, timestamp};
use itsm_runtime::testing::TestBackend;

async fn incident_overview_and_partial_answers(backend: TestBackend) {
    let mut suite = Suite::start(backend).await.unwrap();
    let admin = suite.token("lead", "acme", &["admin"]).unwrap();
    let channel = suite.gateway_channel().await.unwrap();
    let mut cmdb = CmdbServiceClient::new(channel.clone());
    let mut desk = ServiceDeskServiceClient::new(channel.clone());
    let mut changes = ChangeServiceClient::new(channel.clone());
    let mut overview = OverviewServiceClient::new(channel);

    let ci = |name: &str, class: &str| {
        let request = authed(
            CreateConfigurationItemRequest {
                configuration_item: Some(ConfigurationItem {
                    display_name: name.into(),
                    ci_class: class.into(),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            &admin,
        );
        let mut cmdb = cmdb.clone();
        async move { cmdb.create_configuration_item(request).await.unwrap().into_inner().name }
    };
    let db = ci("db-01", "server").await;
    let shop = ci("Shop", "business_service").await;
    // The shop depends on the database: a database incident impacts it.
    cmdb.create_relationship(authed(
        itsm_proto::cmdb::CreateRelationshipRequest {
            relationship: Some(itsm_proto::cmdb::Relationship {
                source: shop.clone(),
                target: db.clone(),
                r#type: itsm_proto::cmdb::RelationshipType::DependsOn as i32,
                ..Default::default()
            }),
            request_id: String::new(),
        },
        &admin,
    ))
    .await
    .unwrap();
    drop(cmdb);
    let change = changes
        .create_change(authed(
            CreateChangeRequest {
                change: Some(Change {
                    r#type: ChangeType::Normal as i32,
                    short_description: "Patch the database".into(),
                    configuration_items: vec![db.clone()],
                    planned_start_time: Some(timestamp(now_micros() - 3_600_000_000)),
                    planned_end_time: Some(timestamp(now_micros() + 3_600_000_000)),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    // The commit that implemented the change, recorded from the VCS.
    let changeset = changes
        .record_changeset(authed(
            RecordChangesetRequest {
                changeset: Some(Changeset {
                    repository: "git@example.com:shop/db.git".into(),
                    revision: "3f2a9c1".into(),
                    author: "Ann Lee <ann@example.com>".into(),
                    commit_time: Some(timestamp(now_micros() - 1_800_000_000)),
                    message: format!("{}: raise max_connections", change.number),
                    ..Default::default()
                }),
                changes: vec![],
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    let ticket = desk
        .create_ticket(authed(
            CreateTicketRequest {
                ticket: Some(Ticket {
                    short_description: "Checkout is down".into(),
                    r#type: TicketType::Incident as i32,
                    business_service: shop.clone(),
                    configuration_items: vec![db.clone()],
                    impact: 1,
                    urgency: 1,
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();

    let view = overview
        .get_incident_overview(authed(GetIncidentOverviewRequest { name: ticket.incident.clone() }, &admin))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(view.incident.as_ref().unwrap().name, ticket.incident);
    assert_eq!(view.ticket.as_ref().unwrap().name, ticket.name);
    assert_eq!(
        view.configuration_items.iter().map(|c| c.name.clone()).collect::<Vec<_>>(),
        vec![shop.clone(), db.clone()]
    );
    assert_eq!(
        view.recent_changes.iter().map(|c| c.name.clone()).collect::<Vec<_>>(),
        vec![change.name.clone()]
    );
    assert_eq!(
        view.recent_changesets.iter().map(|c| c.name.clone()).collect::<Vec<_>>(),
        vec![changeset.name.clone()]
    );
    assert_eq!(view.impacted_business_services, std::slice::from_ref(&shop));
    assert!(view.problems.is_empty() && view.known_errors.is_empty());
    // No agreement covers the service: no clocks, and every part answered.
    assert!(view.sla_clocks.is_empty());
    assert!(view.part_errors.is_empty(), "{:?}", view.part_errors);

    let health = overview
        .get_service_health(authed(GetServiceHealthRequest { service: shop.clone() }, &admin))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(health.open_incidents.len(), 1);
    assert_eq!(health.health, ServiceHealth::Degraded as i32, "an open P1 on the service");
    let can = overview
        .can_deploy(authed(
            CanDeployRequest { service: shop.clone(), environment: "production".into() },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(!can.allowed);
    assert!(can.reasons.iter().any(|r| r.contains(&ticket.incident)), "{:?}", can.reasons);

    // The change service goes down: the view answers at once, without that part.
    suite.stop_service("change").await.unwrap();
    let started = Instant::now();
    let view = overview
        .get_incident_overview(authed(GetIncidentOverviewRequest { name: ticket.incident.clone() }, &admin))
        .await
        .unwrap()
        .into_inner();
    assert!(started.elapsed() < Duration::from_secs(8), "no hang past the part deadline");
    assert!(view.ticket.is_some() && !view.configuration_items.is_empty());
    assert!(view.recent_changes.is_empty());
    assert!(
        view.part_errors.iter().any(|e| e.part == "recent_changes" && e.code == Code::Unavailable as i32),
        "{:?}",
        view.part_errors
    );
    let can = overview
        .can_deploy(authed(CanDeployRequest { service: shop.clone(), environment: String::new() }, &admin))
        .await
        .unwrap()
        .into_inner();
    assert!(!can.allowed, "fails closed");
    assert!(can.part_errors.iter().any(|e| e.part == "change_window"));
}

itsm_runtime::db_tests!(incident_overview_and_partial_answers);
