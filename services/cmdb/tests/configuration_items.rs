//! CMDB configuration items against a real server on port 0 with a fresh database, on SQLite
//! and PostgreSQL. Calls go straight to the service with the context the gateway would add.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::collections::HashSet;
use std::time::Duration;

use tokio_stream::StreamExt;
use tonic::Code;
use tonic_types::StatusExt;

use itsm_proto::cmdb::*;
use itsm_proto::events::WatchEventsRequest;
use itsm_proto::events::event_service_client::EventServiceClient;
use itsm_runtime::testing::{TestBackend, internal_channel, with_context};

mod common;

use common::{Cmdb, start};

fn item(name: &str, class: &str) -> ConfigurationItem {
    ConfigurationItem { display_name: name.into(), ci_class: class.into(), ..Default::default() }
}

fn create(ci: ConfigurationItem, request_id: &str) -> tonic::Request<CreateConfigurationItemRequest> {
    with_context(
        CreateConfigurationItemRequest { configuration_item: Some(ci), request_id: request_id.into() },
        "acme",
        "alice",
    )
}

fn list(
    filter: &str,
    order_by: &str,
    page_size: i32,
    page_token: &str,
) -> tonic::Request<ListConfigurationItemsRequest> {
    with_context(
        ListConfigurationItemsRequest {
            filter: filter.into(),
            order_by: order_by.into(),
            page_size,
            page_token: page_token.into(),
        },
        "acme",
        "alice",
    )
}

fn violations(status: &tonic::Status) -> Vec<String> {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let mut fields: Vec<String> = status
        .get_error_details()
        .bad_request()
        .map(|b| b.field_violations.iter().map(|v| v.field.clone()).collect())
        .unwrap_or_default();
    fields.sort();
    fields
}

async fn count(cmdb: &mut Cmdb) -> usize {
    cmdb.client
        .list_configuration_items(list("", "", 1000, ""))
        .await
        .unwrap()
        .into_inner()
        .configuration_items
        .len()
}

async fn validation_rejects_bad_input_and_writes_nothing(backend: TestBackend) {
    let mut cmdb = start(backend).await;
    let cases: Vec<(ConfigurationItem, &str)> = vec![
        (item("", "server"), "configuration_item.display_name"),
        (item("x", "spaceship"), "configuration_item.ci_class"),
        (
            ConfigurationItem { lifecycle_status: 42, ..item("x", "server") },
            "configuration_item.lifecycle_status",
        ),
        (ConfigurationItem { criticality: -3, ..item("x", "server") }, "configuration_item.criticality"),
        (
            ConfigurationItem { environment: "PROD; DROP TABLE".into(), ..item("x", "server") },
            "configuration_item.environment",
        ),
        (
            ConfigurationItem {
                labels: [("Bad Key".to_string(), "v".to_string())].into(),
                ..item("x", "server")
            },
            "configuration_item.labels[Bad Key]",
        ),
        (
            ConfigurationItem { display_name: "x".repeat(10_000), ..item("", "server") },
            "configuration_item.display_name",
        ),
    ];
    for (ci, field) in cases {
        let err = cmdb.client.create_configuration_item(create(ci, "")).await.unwrap_err();
        assert_eq!(violations(&err), vec![field.to_string()]);
    }
    let err = cmdb
        .client
        .create_configuration_item(with_context(CreateConfigurationItemRequest::default(), "acme", "alice"))
        .await
        .unwrap_err();
    assert_eq!(violations(&err), vec!["configuration_item".to_string()]);
    let err = cmdb
        .client
        .get_configuration_item(with_context(
            GetConfigurationItemRequest { name: "configurationItems/42".into(), read_time: None },
            "acme",
            "a",
        ))
        .await
        .unwrap_err();
    assert_eq!(violations(&err), vec!["name".to_string()]);
    assert_eq!(count(&mut cmdb).await, 0, "nothing may be written by a rejected request");

    // Duplicate name within a class is ALREADY_EXISTS.
    cmdb.client.create_configuration_item(create(item("db-01", "database"), "")).await.unwrap();
    let err = cmdb.client.create_configuration_item(create(item("db-01", "database"), "")).await.unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);
    assert_eq!(count(&mut cmdb).await, 1);
}

async fn idempotent_create(backend: TestBackend) {
    let mut cmdb = start(backend).await;
    let request_id = uuid::Uuid::new_v4().to_string();
    let first = cmdb
        .client
        .create_configuration_item(create(item("web-01", "server"), &request_id))
        .await
        .unwrap()
        .into_inner();
    let again = cmdb
        .client
        .create_configuration_item(create(item("web-01", "server"), &request_id))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first, again, "a retry returns the first result");
    let err = cmdb
        .client
        .create_configuration_item(create(item("web-02", "server"), &request_id))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists, "same request_id, different body");
    assert_eq!(count(&mut cmdb).await, 1);

    // Many concurrent retries of one create make exactly one record.
    let request_id = uuid::Uuid::new_v4().to_string();
    let mut calls = Vec::new();
    for _ in 0..8 {
        let mut client = cmdb.client.clone();
        let request_id = request_id.clone();
        calls.push(tokio::spawn(async move {
            client
                .create_configuration_item(create(item("app-1", "application"), &request_id))
                .await
                .map(|r| r.into_inner().name)
        }));
    }
    let mut names = HashSet::new();
    for call in calls {
        names.insert(call.await.unwrap().unwrap());
    }
    assert_eq!(names.len(), 1);
    assert_eq!(count(&mut cmdb).await, 2);
}

async fn update_with_mask_etag_and_history(backend: TestBackend) {
    let mut cmdb = start(backend).await;
    let created = cmdb
        .client
        .create_configuration_item(create(item("web-01", "server"), ""))
        .await
        .unwrap()
        .into_inner();
    let before_update = prost_types::Timestamp::from(std::time::SystemTime::now());
    tokio::time::sleep(Duration::from_millis(5)).await;

    let update = |ci: ConfigurationItem, paths: &[&str]| {
        with_context(
            UpdateConfigurationItemRequest {
                configuration_item: Some(ci),
                update_mask: Some(prost_types::FieldMask {
                    paths: paths.iter().map(|p| (*p).to_string()).collect(),
                }),
            },
            "acme",
            "bob",
        )
    };
    // Only masked fields change.
    let mut change = created.clone();
    change.owner = "bob".into();
    change.description = "ignored: not in the mask".into();
    let updated =
        cmdb.client.update_configuration_item(update(change, &["owner"])).await.unwrap().into_inner();
    assert_eq!(updated.owner, "bob");
    assert_eq!(updated.description, "");
    assert_eq!(updated.audit.as_ref().unwrap().updater, "bob");

    // Stale etag → ABORTED, nothing changes.
    let mut stale = created.clone();
    stale.owner = "carol".into();
    assert_eq!(
        cmdb.client.update_configuration_item(update(stale, &["owner"])).await.unwrap_err().code(),
        Code::Aborted
    );

    // Bad masks and bad values → INVALID_ARGUMENT.
    let err = cmdb.client.update_configuration_item(update(updated.clone(), &["etag"])).await.unwrap_err();
    assert_eq!(violations(&err), vec!["update_mask".to_string()]);
    let err = cmdb.client.update_configuration_item(update(updated.clone(), &[])).await.unwrap_err();
    assert_eq!(violations(&err), vec!["update_mask".to_string()]);
    let mut bad = updated.clone();
    bad.ci_class = "spaceship".into();
    let err = cmdb.client.update_configuration_item(update(bad, &["ci_class"])).await.unwrap_err();
    assert_eq!(violations(&err), vec!["configuration_item.ci_class".to_string()]);

    // Concurrent updates with the same etag: exactly one wins.
    let mut calls = Vec::new();
    for i in 0..6 {
        let mut client = cmdb.client.clone();
        let mut change = updated.clone();
        change.owner = format!("owner-{i}");
        let request = update(change, &["owner"]);
        calls.push(tokio::spawn(async move {
            client.update_configuration_item(request).await.map(tonic::Response::into_inner)
        }));
    }
    let mut winners = 0;
    for call in calls {
        match call.await.unwrap() {
            Ok(_) => winners += 1,
            Err(status) => assert_eq!(status.code(), Code::Aborted),
        }
    }
    assert_eq!(winners, 1);

    let history = cmdb
        .client
        .list_configuration_item_history(with_context(
            ListConfigurationItemHistoryRequest {
                name: created.name.clone(),
                page_size: 1,
                page_token: String::new(),
            },
            "acme",
            "alice",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(history.entries.len(), 1);
    assert_eq!(history.entries[0].action, "create");
    let rest = cmdb
        .client
        .list_configuration_item_history(with_context(
            ListConfigurationItemHistoryRequest {
                name: created.name.clone(),
                page_size: 10,
                page_token: history.next_page_token,
            },
            "acme",
            "alice",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rest.entries.len(), 2, "owner update + the one concurrent winner");
    assert_eq!(rest.entries[0].actor, "bob");
    assert_eq!(rest.entries[0].changes.len(), 1);
    assert_eq!(rest.entries[0].changes[0].old_value, "\"\"");
    assert_eq!(rest.entries[0].changes[0].new_value, "\"bob\"");

    // Read as it was before the update.
    let old = cmdb
        .client
        .get_configuration_item(with_context(
            GetConfigurationItemRequest { name: created.name.clone(), read_time: Some(before_update) },
            "acme",
            "alice",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(old.owner, "");
    assert_eq!(old.etag, created.etag);
}

async fn keyset_paging_filter_and_tokens(backend: TestBackend) {
    let mut cmdb = start(backend).await;
    for i in 0..25 {
        let class = if i % 5 == 0 { "virtual_machine" } else { "application" };
        let mut ci = item(&format!("ci-{i:02}"), class);
        if i % 2 == 0 {
            ci.labels.insert("team".into(), "payments".into());
        }
        cmdb.client.create_configuration_item(create(ci, "")).await.unwrap();
    }
    // Another tenant's CI is never listed.
    cmdb.client
        .create_configuration_item(with_context(
            CreateConfigurationItemRequest {
                configuration_item: Some(item("ci-99", "application")),
                request_id: String::new(),
            },
            "other",
            "eve",
        ))
        .await
        .unwrap();

    for order in ["", "display_name desc", "create_time", "update_time desc"] {
        let mut seen = Vec::new();
        let mut token = String::new();
        loop {
            let page =
                cmdb.client.list_configuration_items(list("", order, 10, &token)).await.unwrap().into_inner();
            assert!(page.configuration_items.len() <= 10);
            seen.extend(page.configuration_items.into_iter().map(|c| c.display_name));
            if page.next_page_token.is_empty() {
                break;
            }
            token = page.next_page_token;
        }
        let mut expected: Vec<String> = (0..25).map(|i| format!("ci-{i:02}")).collect();
        if order.ends_with("desc") {
            expected.reverse();
        }
        assert_eq!(seen, expected, "order {order:?}");
    }

    let page = cmdb.client.list_configuration_items(list("", "", 10, "")).await.unwrap().into_inner();
    // A token is bound to its query: another filter or order → INVALID_ARGUMENT.
    let err = cmdb
        .client
        .list_configuration_items(list("ci_class = server", "", 10, &page.next_page_token))
        .await
        .unwrap_err();
    assert_eq!(violations(&err), vec!["page_token".to_string()]);
    // Tampered.
    let mut tampered = page.next_page_token.clone().into_bytes();
    let last = tampered.len() - 1;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let err = cmdb
        .client
        .list_configuration_items(list("", "", 10, &String::from_utf8(tampered).unwrap()))
        .await
        .unwrap_err();
    assert_eq!(violations(&err), vec!["page_token".to_string()]);
    // Another tenant cannot reuse it.
    let err = cmdb
        .client
        .list_configuration_items(with_context(
            ListConfigurationItemsRequest {
                page_size: 10,
                page_token: page.next_page_token.clone(),
                ..Default::default()
            },
            "other",
            "eve",
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    let names = |filter: &'static str| {
        let mut client = cmdb.client.clone();
        async move {
            client.list_configuration_items(list(filter, "", 1000, "")).await.map(|r| {
                r.into_inner().configuration_items.into_iter().map(|c| c.display_name).collect::<Vec<_>>()
            })
        }
    };
    assert_eq!(names("ci_class = server").await.unwrap().len(), 5, "a class includes its subclasses");
    assert_eq!(names("ci_class != server").await.unwrap().len(), 20);
    assert_eq!(names("labels.team = payments").await.unwrap().len(), 13);
    assert_eq!(
        names("ci_class = server AND labels.team = payments").await.unwrap(),
        ["ci-00", "ci-10", "ci-20"]
    );
    assert_eq!(
        names(r#"display_name = "ci-01" OR display_name = "ci-02""#).await.unwrap(),
        ["ci-01", "ci-02"]
    );
    assert_eq!(names("NOT labels.team = payments").await.unwrap().len(), 12);
    assert_eq!(names("lifecycle_status = PLANNED").await.unwrap().len(), 25);
    assert_eq!(
        names(r#"display_name = "x' OR '1'='1""#).await.unwrap().len(),
        0,
        "values are bound, never spliced"
    );
    for bad in [
        "nonsense = 1",
        "ci_class = spaceship",
        "display_name > a",
        "(ci_class = server",
        "create_time > yesterday",
    ] {
        let err = names(bad).await.unwrap_err();
        assert_eq!(violations(&err), vec!["filter".to_string()], "{bad}");
    }
    let err = cmdb.client.list_configuration_items(list("", "etag", 10, "")).await.unwrap_err();
    assert_eq!(violations(&err), vec!["order_by".to_string()]);
    let err = cmdb.client.list_configuration_items(list("", "", -1, "")).await.unwrap_err();
    assert_eq!(violations(&err), vec!["page_size".to_string()]);
    let huge = cmdb.client.list_configuration_items(list("", "", i32::MAX, "")).await.unwrap().into_inner();
    assert_eq!(huge.configuration_items.len(), 25, "page_size above the maximum is coerced, not an error");
}

async fn delete_and_batch_get_and_events(backend: TestBackend) {
    let mut cmdb = start(backend).await;
    let a =
        cmdb.client.create_configuration_item(create(item("a", "server"), "")).await.unwrap().into_inner();
    let b =
        cmdb.client.create_configuration_item(create(item("b", "server"), "")).await.unwrap().into_inner();
    let err = cmdb
        .client
        .delete_configuration_item(with_context(
            DeleteConfigurationItemRequest { name: a.name.clone(), etag: "W/\"9\"".into(), cascade: false },
            "acme",
            "alice",
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Aborted);
    cmdb.client
        .delete_configuration_item(with_context(
            DeleteConfigurationItemRequest { name: a.name.clone(), etag: a.etag.clone(), cascade: false },
            "acme",
            "alice",
        ))
        .await
        .unwrap();
    let err = cmdb
        .client
        .delete_configuration_item(with_context(
            DeleteConfigurationItemRequest { name: a.name.clone(), etag: String::new(), cascade: false },
            "acme",
            "alice",
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    let batch = cmdb
        .client
        .batch_get_configuration_items(with_context(
            BatchGetConfigurationItemsRequest { names: vec![b.name.clone(), a.name.clone()] },
            "acme",
            "alice",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(batch.configuration_items.len(), 1);
    assert_eq!(batch.missing_names, vec![a.name.clone()]);
    let foreign = cmdb
        .client
        .batch_get_configuration_items(with_context(
            BatchGetConfigurationItemsRequest { names: vec![b.name.clone()] },
            "other",
            "eve",
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(foreign.configuration_items.is_empty(), "another tenant's CI is missing, not visible");

    // The feed has create, create, delete in commit order, each naming its CI and actor.
    let mut events = EventServiceClient::new(internal_channel(&cmdb.server.url()).await.unwrap());
    let mut request = tonic::Request::new(WatchEventsRequest { after_sequence: 0, types: vec![] });
    request
        .metadata_mut()
        .insert("x-itsm-internal-token", itsm_runtime::testing::TEST_INTERNAL_TOKEN.parse().unwrap());
    let mut stream = events.watch_events(request).await.unwrap().into_inner();
    let mut got = Vec::new();
    while got.len() < 3 {
        let event = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
            .event
            .unwrap();
        let payload: ConfigurationItemChanged = event.payload.as_ref().unwrap().to_msg().unwrap();
        got.push((
            event.sequence,
            event.resource_name.clone(),
            payload.action,
            event.actor.clone(),
            event.tenant.clone(),
        ));
    }
    assert_eq!(
        got,
        vec![
            (1, a.name.clone(), "create".to_string(), "alice".to_string(), "acme".to_string()),
            (2, b.name.clone(), "create".to_string(), "alice".to_string(), "acme".to_string()),
            (3, a.name.clone(), "delete".to_string(), "alice".to_string(), "acme".to_string()),
        ]
    );
}

async fn calls_need_a_tenant(backend: TestBackend) {
    let cmdb = start(backend).await;
    let mut client = cmdb.client.clone();
    let mut request = tonic::Request::new(ListConfigurationItemsRequest::default());
    request
        .metadata_mut()
        .insert("x-itsm-internal-token", itsm_runtime::testing::TEST_INTERNAL_TOKEN.parse().unwrap());
    assert_eq!(client.list_configuration_items(request).await.unwrap_err().code(), Code::Unauthenticated);
}

itsm_runtime::db_tests!(
    validation_rejects_bad_input_and_writes_nothing,
    idempotent_create,
    update_with_mask_etag_and_history,
    keyset_paging_filter_and_tokens,
    delete_and_batch_get_and_events,
    calls_need_a_tenant,
);
