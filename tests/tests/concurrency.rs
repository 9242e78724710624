//! Concurrency through the gateway, on SQLite and PostgreSQL (issue 14): parallel updates of one
//! record with the same etag — exactly one wins, the others are ABORTED and nothing is lost —
//! and parallel creates with the same request_id — one record, every caller gets it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use futures::future::join_all;
use tonic::Code;

use itsm_e2e::{Suite, authed};
use itsm_proto::cmdb::cmdb_service_client::CmdbServiceClient;
use itsm_proto::cmdb::{
    ConfigurationItem, CreateConfigurationItemRequest, GetConfigurationItemRequest,
    ListConfigurationItemsRequest, UpdateConfigurationItemRequest,
};
use itsm_proto::common::Money;
use itsm_proto::delivery::finance_service_client::FinanceServiceClient;
use itsm_proto::delivery::{
    CostItem, CostPool, CostType, CreateCostItemRequest, GetCostItemRequest, ListCostItemsRequest,
    UpdateCostItemRequest,
};
use itsm_proto::incident::incident_service_client::IncidentServiceClient;
use itsm_proto::incident::{
    CreateIncidentRequest, GetIncidentRequest, Incident, ListIncidentsRequest, UpdateIncidentRequest,
};
use itsm_runtime::testing::TestBackend;

const RACERS: usize = 8;

fn mask(path: &str) -> Option<prost_types::FieldMask> {
    Some(prost_types::FieldMask { paths: vec![path.into()] })
}

/// Exactly one OK; every other answer ABORTED. Returns the winner's index.
fn one_winner<T: std::fmt::Debug>(results: &[Result<T, tonic::Status>]) -> usize {
    let winners: Vec<usize> = results.iter().enumerate().filter(|(_, r)| r.is_ok()).map(|(i, _)| i).collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    for r in results.iter().filter_map(|r| r.as_ref().err()) {
        assert_eq!(r.code(), Code::Aborted, "{r:?}");
    }
    winners[0]
}

async fn one_update_wins_per_etag_and_one_create_per_request_id(backend: TestBackend) {
    let suite = Suite::start(backend).await.unwrap();
    let admin = suite.token("ada", "acme", &["admin"]).unwrap();
    let channel = suite.gateway_channel().await.unwrap();
    let cmdb = CmdbServiceClient::new(channel.clone());
    let incidents = IncidentServiceClient::new(channel.clone());
    let finance = FinanceServiceClient::new(channel.clone());

    // The same request_id from many callers at once: one CI, one incident, one cost item.
    let request_id = uuid::Uuid::new_v4().to_string();
    let cis = join_all((0..RACERS).map(|_| {
        let mut cmdb = cmdb.clone();
        let request = authed(
            CreateConfigurationItemRequest {
                configuration_item: Some(ConfigurationItem {
                    display_name: "db-race".into(),
                    ci_class: "server".into(),
                    ..Default::default()
                }),
                request_id: request_id.clone(),
            },
            &admin,
        );
        async move { cmdb.create_configuration_item(request).await.map(tonic::Response::into_inner) }
    }))
    .await;
    let ci = cis[0].as_ref().unwrap().clone();
    assert!(cis.iter().all(|r| r.as_ref().is_ok_and(|c| c.name == ci.name)), "{cis:?}");
    let listed = cmdb
        .clone()
        .list_configuration_items(authed(
            ListConfigurationItemsRequest {
                filter: "display_name = \"db-race\"".into(),
                ..Default::default()
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.configuration_items.len(), 1);

    let request_id = uuid::Uuid::new_v4().to_string();
    let created = join_all((0..RACERS).map(|_| {
        let mut incidents = incidents.clone();
        let request = authed(
            CreateIncidentRequest {
                incident: Some(Incident {
                    short_description: "Disk full on db-race".into(),
                    configuration_items: vec![ci.name.clone()],
                    impact: 2,
                    urgency: 2,
                    ..Default::default()
                }),
                request_id: request_id.clone(),
            },
            &admin,
        );
        async move { incidents.create_incident(request).await.map(tonic::Response::into_inner) }
    }))
    .await;
    let incident = created[0].as_ref().unwrap().clone();
    assert!(created.iter().all(|r| r.as_ref().is_ok_and(|i| i.name == incident.name)), "{created:?}");
    let listed = incidents
        .clone()
        .list_incidents(authed(ListIncidentsRequest { page_size: 100, ..Default::default() }, &admin))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.incidents.len(), 1);

    let request_id = uuid::Uuid::new_v4().to_string();
    let costs = join_all((0..RACERS).map(|_| {
        let mut finance = finance.clone();
        let request = authed(
            CreateCostItemRequest {
                cost_item: Some(CostItem {
                    display_name: "Disk".into(),
                    amount: Some(Money { currency_code: "EUR".into(), units: 10, nanos: 0 }),
                    period: "2026-11".into(),
                    configuration_item: ci.name.clone(),
                    cost_type: CostType::Opex as i32,
                    pool: CostPool::Hardware as i32,
                    ..Default::default()
                }),
                request_id: request_id.clone(),
            },
            &admin,
        );
        async move { finance.create_cost_item(request).await.map(tonic::Response::into_inner) }
    }))
    .await;
    let cost = costs[0].as_ref().unwrap().clone();
    assert!(costs.iter().all(|r| r.as_ref().is_ok_and(|c| c.name == cost.name)), "{costs:?}");
    let listed = finance
        .clone()
        .list_cost_items(authed(ListCostItemsRequest { page_size: 100, ..Default::default() }, &admin))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.cost_items.len(), 1);

    // Everyone updates with the etag they read: one wins, the rest are ABORTED, the winner's
    // value is what is stored — no lost update, no silent overwrite.
    let updates = join_all((0..RACERS).map(|i| {
        let mut cmdb = cmdb.clone();
        let request = authed(
            UpdateConfigurationItemRequest {
                configuration_item: Some(ConfigurationItem {
                    name: ci.name.clone(),
                    description: format!("writer {i}"),
                    etag: ci.etag.clone(),
                    ..Default::default()
                }),
                update_mask: mask("description"),
            },
            &admin,
        );
        async move { cmdb.update_configuration_item(request).await.map(tonic::Response::into_inner) }
    }))
    .await;
    let winner = one_winner(&updates);
    let stored = cmdb
        .clone()
        .get_configuration_item(authed(
            GetConfigurationItemRequest { name: ci.name.clone(), read_time: None },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stored.description, format!("writer {winner}"));

    let updates = join_all((0..RACERS).map(|i| {
        let mut incidents = incidents.clone();
        let request = authed(
            UpdateIncidentRequest {
                incident: Some(Incident {
                    name: incident.name.clone(),
                    description: format!("writer {i}"),
                    etag: incident.etag.clone(),
                    ..Default::default()
                }),
                update_mask: mask("description"),
            },
            &admin,
        );
        async move { incidents.update_incident(request).await.map(tonic::Response::into_inner) }
    }))
    .await;
    let winner = one_winner(&updates);
    let stored = incidents
        .clone()
        .get_incident(authed(GetIncidentRequest { name: incident.name.clone() }, &admin))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stored.description, format!("writer {winner}"));

    let updates = join_all((0..RACERS).map(|i| {
        let mut finance = finance.clone();
        let request = authed(
            UpdateCostItemRequest {
                cost_item: Some(CostItem {
                    name: cost.name.clone(),
                    display_name: format!("writer {i}"),
                    etag: cost.etag.clone(),
                    ..Default::default()
                }),
                update_mask: mask("display_name"),
            },
            &admin,
        );
        async move { finance.update_cost_item(request).await.map(tonic::Response::into_inner) }
    }))
    .await;
    let winner = one_winner(&updates);
    let stored = finance
        .clone()
        .get_cost_item(authed(GetCostItemRequest { name: cost.name.clone() }, &admin))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stored.display_name, format!("writer {winner}"));
}

itsm_runtime::db_tests!(one_update_wins_per_etag_and_one_create_per_request_id);
