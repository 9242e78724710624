//! PostgreSQL stopped and started again under a running service: calls fail with UNAVAILABLE
//! (never INTERNAL, never a crash) while it is down and succeed by themselves after it returns,
//! with nothing acknowledged lost. Uses a private PostgreSQL cluster so other tests are not
//! disturbed.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::time::Duration;

use sea_orm::{ConnectionTrait, Database};
use tonic::Code;

use itsm_proto::cmdb::cmdb_service_client::CmdbServiceClient;
use itsm_proto::cmdb::{ConfigurationItem, CreateConfigurationItemRequest, ListConfigurationItemsRequest};
use itsm_runtime::testing::{PrivatePostgres, RunningServer, internal_channel, settings_for, with_context};

fn create(name: &str) -> tonic::Request<CreateConfigurationItemRequest> {
    let item =
        ConfigurationItem { display_name: name.into(), ci_class: "server".into(), ..Default::default() };
    with_context(
        CreateConfigurationItemRequest { configuration_item: Some(item), request_id: String::new() },
        "acme",
        "alice",
    )
}

fn list() -> tonic::Request<ListConfigurationItemsRequest> {
    let mut request = with_context(ListConfigurationItemsRequest::default(), "acme", "alice");
    request.set_timeout(Duration::from_secs(5));
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stopped_and_restarted_under_a_running_service() {
    let pg = PrivatePostgres::start().expect("PostgreSQL binaries (initdb, pg_ctl) are needed for this test");
    let admin = Database::connect(pg.url("postgres").as_str()).await.unwrap();
    admin.execute_unprepared("CREATE DATABASE itsm").await.unwrap();
    admin.close().await.unwrap();

    let mut settings = settings_for(&pg.url("itsm"));
    settings.database.acquire_timeout_ms = 1_000;
    settings.database.connect_timeout_ms = 1_000;
    let server =
        RunningServer::start(move |listener, shutdown| itsm_cmdb::serve(settings, listener, shutdown.wait()))
            .await
            .unwrap();
    let mut cmdb = CmdbServiceClient::new(internal_channel(&server.url()).await.unwrap());
    let before = cmdb.create_configuration_item(create("before")).await.unwrap().into_inner();

    assert!(pg.stop(), "pg_ctl stop");
    for attempt in 0..5 {
        let err = cmdb.list_configuration_items(list()).await.unwrap_err();
        assert_eq!(err.code(), Code::Unavailable, "attempt {attempt}: {err:?}");
        let err = cmdb.create_configuration_item(create(&format!("during-{attempt}"))).await.unwrap_err();
        assert_eq!(err.code(), Code::Unavailable, "attempt {attempt}: {err:?}");
    }

    assert!(pg.restart(), "pg_ctl start");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let items = loop {
        match cmdb.list_configuration_items(list()).await {
            Ok(response) => break response.into_inner().configuration_items,
            Err(err) => {
                assert_eq!(err.code(), Code::Unavailable, "{err:?}");
                assert!(tokio::time::Instant::now() < deadline, "the service did not recover");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    let names: Vec<&str> = items.iter().map(|c| c.display_name.as_str()).collect();
    assert_eq!(names, ["before"], "the acknowledged write survived; the failed ones left nothing");
    assert_eq!(items[0].name, before.name);
    cmdb.create_configuration_item(create("after")).await.unwrap();
    server.stop().await.unwrap();
}
