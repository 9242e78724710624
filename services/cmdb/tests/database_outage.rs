//! PostgreSQL stopped and started again under a running service: calls fail with UNAVAILABLE
//! (never INTERNAL, never a crash) while it is down and succeed by themselves after it returns,
//! with nothing acknowledged lost. Uses a private PostgreSQL cluster so other tests are not
//! disturbed.
//!
//! The second test does it under a write load: four writers create CIs without pause while the
//! database is stopped and started again. Every failed call is UNAVAILABLE, calls succeed again
//! without the service being restarted, every acknowledged CI is stored, a stored CI nobody was
//! acknowledged is one whose call failed (its commit reached the database, its answer did not),
//! and the outbox holds exactly one create event per stored CI.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use prost::Message;
use sea_orm::{ConnectionTrait, Database, DatabaseBackend, Statement, Value};
use tokio::time::Instant;
use tonic::Code;
use tonic::transport::Channel;

use itsm_proto::cmdb::cmdb_service_client::CmdbServiceClient;
use itsm_proto::cmdb::{
    ConfigurationItem, ConfigurationItemChanged, CreateConfigurationItemRequest,
    ListConfigurationItemsRequest,
};
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

/// One page of every CI of acme.
fn list_page(page_token: String) -> tonic::Request<ListConfigurationItemsRequest> {
    let mut request = with_context(
        ListConfigurationItemsRequest { page_size: 500, page_token, ..Default::default() },
        "acme",
        "alice",
    );
    request.set_timeout(Duration::from_secs(5));
    request
}

/// Every CI of acme, page by page.
async fn list_all(cmdb: &mut CmdbServiceClient<Channel>) -> Vec<ConfigurationItem> {
    let mut items = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = cmdb.list_configuration_items(list_page(page_token)).await.unwrap().into_inner();
        items.extend(page.configuration_items);
        if page.next_page_token.is_empty() {
            return items;
        }
        page_token = page.next_page_token;
    }
}

/// One create by a writer: when it started and ended, and the CI's name or the status code.
#[derive(Debug)]
struct Call {
    display_name: String,
    started: Instant,
    ended: Instant,
    outcome: Result<String, (Code, String)>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stopped_and_restarted_under_write_load() {
    const WRITERS: usize = 4;
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
    let channel = internal_channel(&server.url()).await.unwrap();

    // Writers create CIs without pause until told to stop. A success whose call started after
    // PostgreSQL was back is counted as it happens, so the test can wait for the recovery.
    let stop = Arc::new(AtomicBool::new(false));
    let restarted_at: Arc<OnceLock<Instant>> = Arc::new(OnceLock::new());
    let recovered = Arc::new(AtomicUsize::new(0));
    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let mut cmdb = CmdbServiceClient::new(channel.clone());
            let (stop, restarted_at, recovered) =
                (Arc::clone(&stop), Arc::clone(&restarted_at), Arc::clone(&recovered));
            tokio::spawn(async move {
                let mut calls = Vec::new();
                while !stop.load(Ordering::SeqCst) {
                    let display_name = format!("writer-{writer}-{}", calls.len());
                    let mut request = create(&display_name);
                    request.set_timeout(Duration::from_secs(5));
                    let started = Instant::now();
                    let outcome = cmdb
                        .create_configuration_item(request)
                        .await
                        .map(|response| response.into_inner().name)
                        .map_err(|status| (status.code(), status.message().to_string()));
                    let ended = Instant::now();
                    if outcome.is_ok() && restarted_at.get().is_some_and(|at| started >= *at) {
                        recovered.fetch_add(1, Ordering::SeqCst);
                    }
                    let failed = outcome.is_err();
                    calls.push(Call { display_name, started, ended, outcome });
                    if failed {
                        // A refused call can be quick: no busy loop while the database is down.
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
                calls
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_secs(1)).await;
    // pg_ctl blocks until it is done; the test body runs outside the runtime's two workers, so
    // the writers and the service keep running meanwhile.
    assert!(pg.stop(), "pg_ctl stop");
    let stopped = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let restarting = Instant::now();
    assert!(pg.restart(), "pg_ctl start");
    restarted_at.set(Instant::now()).unwrap();
    // The service recovers by itself (it is not restarted): a few seconds more of load, and then
    // as long as it takes for a call started after the restart to succeed, up to 30 s.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while recovered.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::SeqCst);
    let mut calls: Vec<Call> = Vec::new();
    for writer in writers {
        calls.extend(writer.await.unwrap());
    }
    let restarted = *restarted_at.get().unwrap();

    // (a) Every failure is UNAVAILABLE: a pool that cannot get a connection in time is
    // `DbErr::ConnectionAcquire(Timeout)`, which `itsm_runtime::db::classify_db_error` maps to
    // UNAVAILABLE like any other lost connection.
    let mut codes: BTreeMap<String, usize> = BTreeMap::new();
    for call in &calls {
        let code = match &call.outcome {
            Ok(_) => Code::Ok,
            Err((code, _)) => *code,
        };
        *codes.entry(format!("{code:?}")).or_default() += 1;
    }
    let acknowledged: HashMap<&str, &str> = calls
        .iter()
        .filter_map(|c| c.outcome.as_ref().ok().map(|name| (c.display_name.as_str(), name.as_str())))
        .collect();
    let failed: HashSet<&str> =
        calls.iter().filter(|c| c.outcome.is_err()).map(|c| c.display_name.as_str()).collect();
    eprintln!(
        "{} calls: {codes:?}; {} acknowledged, {} failed",
        calls.len(),
        acknowledged.len(),
        failed.len()
    );
    let wrong: Vec<String> = calls
        .iter()
        .filter_map(|c| match &c.outcome {
            Err((code, message)) if *code != Code::Unavailable => {
                Some(format!("{}: {code:?} {message}", c.display_name))
            }
            _ => None,
        })
        .collect();
    assert!(wrong.is_empty(), "failed calls must be UNAVAILABLE; answers: {codes:?}\n{}", wrong.join("\n"));

    // (b) Calls failed while the database was down, none succeeded then, and calls started after
    // it was back succeeded without the service being restarted.
    let while_down = |c: &&Call| c.started >= stopped && c.ended <= restarting;
    let failed_while_down =
        calls.iter().filter(|c| c.outcome.is_err() && c.started >= stopped && c.started < restarting).count();
    assert!(failed_while_down > 0, "no call failed while PostgreSQL was down: {codes:?}");
    let succeeded_while_down: Vec<&Call> =
        calls.iter().filter(while_down).filter(|c| c.outcome.is_ok()).collect();
    assert!(succeeded_while_down.is_empty(), "succeeded while PostgreSQL was down: {succeeded_while_down:?}");
    let after_restart = calls.iter().filter(|c| c.outcome.is_ok() && c.started >= restarted).count();
    assert!(after_restart > 0, "no call started after the restart succeeded: {codes:?}");

    // (c) Every acknowledged CI is stored, under the name it was acknowledged with.
    let mut cmdb = CmdbServiceClient::new(channel);
    let stored = list_all(&mut cmdb).await;
    let by_display_name: HashMap<&str, &str> =
        stored.iter().map(|c| (c.display_name.as_str(), c.name.as_str())).collect();
    assert_eq!(by_display_name.len(), stored.len(), "a CI was listed twice");
    let lost: Vec<(&str, &str)> = acknowledged
        .iter()
        .filter(|(display_name, name)| by_display_name.get(*display_name) != Some(*name))
        .map(|(display_name, name)| (*display_name, *name))
        .collect();
    assert!(lost.is_empty(), "{} acknowledged CIs are not stored as acknowledged: {lost:?}", lost.len());

    // (d) What is stored beyond the acknowledged is explained: a create whose commit reached
    // PostgreSQL but whose answer was lost is stored without an acknowledgement — so it must be
    // one of the failed calls, and there can be no more of them than failed calls.
    let unexplained: Vec<&str> = stored
        .iter()
        .map(|c| c.display_name.as_str())
        .filter(|d| !acknowledged.contains_key(d) && !failed.contains(d))
        .collect();
    assert!(unexplained.is_empty(), "stored CIs nobody tried to create: {unexplained:?}");
    assert!(stored.len() >= acknowledged.len());
    let unacknowledged = stored.len() - acknowledged.len();
    assert!(
        unacknowledged <= failed.len(),
        "{unacknowledged} stored CIs were not acknowledged, more than the {} failed calls",
        failed.len()
    );
    eprintln!("{} CIs stored, {unacknowledged} of them from calls that failed", stored.len());

    // The outbox, read directly: exactly one create event per stored CI — none lost with a
    // committed CI, none left by a rolled-back one, none written twice.
    let db = Database::connect(pg.url("itsm").as_str()).await.unwrap();
    let event_type = <ConfigurationItemChanged as prost::Name>::full_name();
    let rows = db
        .query_all_raw(Statement::from_sql_and_values(
            DatabaseBackend::Postgres,
            "SELECT resource_name, payload FROM outbox WHERE event_type = $1",
            [Value::from(event_type.clone())],
        ))
        .await
        .unwrap();
    db.close().await.unwrap();
    let mut creates: HashMap<String, usize> = HashMap::new();
    for row in &rows {
        let resource_name: String = row.try_get("", "resource_name").unwrap();
        let payload: Vec<u8> = row.try_get("", "payload").unwrap();
        let event = ConfigurationItemChanged::decode(payload.as_slice()).unwrap();
        assert_eq!(event.action, "create", "{resource_name}: only creates happened");
        assert_eq!(event.configuration_item.map(|c| c.name).as_deref(), Some(resource_name.as_str()));
        *creates.entry(resource_name).or_default() += 1;
    }
    let duplicated: Vec<(&String, &usize)> = creates.iter().filter(|(_, n)| **n > 1).collect();
    assert!(duplicated.is_empty(), "{event_type} written more than once: {duplicated:?}");
    let stored_names: HashSet<&str> = stored.iter().map(|c| c.name.as_str()).collect();
    let without_event: Vec<&&str> = stored_names.iter().filter(|n| !creates.contains_key(**n)).collect();
    assert!(without_event.is_empty(), "stored CIs without a create event: {without_event:?}");
    let without_ci: Vec<&String> = creates.keys().filter(|n| !stored_names.contains(n.as_str())).collect();
    assert!(without_ci.is_empty(), "create events of CIs that are not stored: {without_ci:?}");
    assert_eq!(rows.len(), stored.len());
    server.stop().await.unwrap();
}
