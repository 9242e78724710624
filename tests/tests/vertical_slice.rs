//! The CMDB configuration-item slice end to end through the gateway, on SQLite and PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use tonic::Code;
use tonic_types::StatusExt;

use itsm_e2e::{Suite, authed};
use itsm_proto::cmdb::cmdb_service_client::CmdbServiceClient;
use itsm_proto::cmdb::{
    ConfigurationItem, CreateConfigurationItemRequest, DeleteConfigurationItemRequest,
    GetConfigurationItemRequest, ListConfigurationItemHistoryRequest, ListConfigurationItemsRequest,
    UpdateConfigurationItemRequest,
};
use itsm_runtime::testing::TestBackend;

fn ci(name: &str, class: &str) -> ConfigurationItem {
    ConfigurationItem {
        display_name: name.into(),
        ci_class: class.into(),
        environment: "production".into(),
        labels: [("team".to_string(), "payments".to_string())].into(),
        ..ConfigurationItem::default()
    }
}

async fn crud_through_gateway(backend: TestBackend) {
    let suite = Suite::start(backend).await.unwrap();
    let token = suite.token("alice", "acme", &["admin"]).unwrap();
    let mut cmdb = CmdbServiceClient::new(suite.gateway_channel().await.unwrap());

    let created = cmdb
        .create_configuration_item(authed(
            CreateConfigurationItemRequest {
                configuration_item: Some(ci("web-01", "virtual_machine")),
                request_id: String::new(),
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(created.name.starts_with("configurationItems/"));
    assert_eq!(created.audit.as_ref().unwrap().creator, "alice", "principal comes from the token");

    let got = cmdb
        .get_configuration_item(authed(
            GetConfigurationItemRequest { name: created.name.clone(), read_time: None },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got, created);

    // Filter by the parent class finds the virtual machine.
    let listed = cmdb
        .list_configuration_items(authed(
            ListConfigurationItemsRequest {
                filter: "ci_class = server AND labels.team = payments".into(),
                ..Default::default()
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.configuration_items.len(), 1);

    let mut change = created.clone();
    change.owner = "bob".into();
    let updated = cmdb
        .update_configuration_item(authed(
            UpdateConfigurationItemRequest {
                configuration_item: Some(change),
                update_mask: Some(prost_types::FieldMask { paths: vec!["owner".into()] }),
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.owner, "bob");
    assert_ne!(updated.etag, created.etag);

    // The old etag is stale now.
    let mut stale = created.clone();
    stale.owner = "carol".into();
    let err = cmdb
        .update_configuration_item(authed(
            UpdateConfigurationItemRequest {
                configuration_item: Some(stale),
                update_mask: Some(prost_types::FieldMask { paths: vec!["owner".into()] }),
            },
            &token,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Aborted);

    let history = cmdb
        .list_configuration_item_history(authed(
            ListConfigurationItemHistoryRequest { name: created.name.clone(), ..Default::default() },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    let actions: Vec<&str> = history.entries.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["create", "update"]);
    assert_eq!(history.entries[1].actor, "alice");
    assert_eq!(history.entries[1].changes[0].field, "owner");

    // Another tenant cannot see it.
    let other = suite.token("mallory", "evil-corp", &["admin"]).unwrap();
    let err = cmdb
        .get_configuration_item(authed(
            GetConfigurationItemRequest { name: created.name.clone(), read_time: None },
            &other,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    cmdb.delete_configuration_item(authed(
        DeleteConfigurationItemRequest {
            name: created.name.clone(),
            etag: updated.etag.clone(),
            cascade: false,
        },
        &token,
    ))
    .await
    .unwrap();
    let err = cmdb
        .get_configuration_item(authed(
            GetConfigurationItemRequest { name: created.name.clone(), read_time: None },
            &token,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
}

async fn invalid_input_through_gateway(backend: TestBackend) {
    let suite = Suite::start(backend).await.unwrap();
    let token = suite.token("alice", "acme", &["admin"]).unwrap();
    let mut cmdb = CmdbServiceClient::new(suite.gateway_channel().await.unwrap());
    let err = cmdb
        .create_configuration_item(authed(
            CreateConfigurationItemRequest {
                configuration_item: Some(ci("", "spaceship")),
                request_id: "nope".into(),
            },
            &token,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let details = err.get_error_details();
    let fields: Vec<&str> =
        details.bad_request().unwrap().field_violations.iter().map(|v| v.field.as_str()).collect();
    assert_eq!(fields, ["request_id"]);

    let err = cmdb
        .create_configuration_item(authed(
            CreateConfigurationItemRequest {
                configuration_item: Some(ci("", "spaceship")),
                request_id: String::new(),
            },
            &token,
        ))
        .await
        .unwrap_err();
    let details = err.get_error_details();
    let mut fields: Vec<&str> =
        details.bad_request().unwrap().field_violations.iter().map(|v| v.field.as_str()).collect();
    fields.sort_unstable();
    assert_eq!(fields, ["configuration_item.ci_class", "configuration_item.display_name"]);

    // Nothing was written.
    let listed = cmdb
        .list_configuration_items(authed(ListConfigurationItemsRequest::default(), &token))
        .await
        .unwrap()
        .into_inner();
    assert!(listed.configuration_items.is_empty());
}

itsm_runtime::db_tests!(crud_through_gateway, invalid_input_through_gateway);
