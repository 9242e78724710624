//! The console's CMDB pages in a real browser (headless Chromium through chromedriver), against
//! the whole suite on SQLite and PostgreSQL. A business service → application → database →
//! server chain is seeded through gRPC (DEPENDS_ON, DEPENDS_ON, RUNS_ON); an agent searches
//! `/cmdb` with the API's filter language, opens the application and sees its attributes, its
//! history and the impact picture: the business service downstream (left: it stops working when
//! the application fails), the database and the server upstream (right: what the application
//! needs). At depth 1 the server, two steps away, is gone. A bad filter shows the API's error next
//! to the filter field; a requester gets the 403 page.
//!
//! Needs `/usr/bin/chromedriver` and `/usr/bin/chromium` (`apt-get install chromium
//! chromium-driver`); without them the test says so and passes, except under CI. The SQLite run
//! saves `cmdb_search.png` and `cmdb_item.png` to `services/console/screenshots/`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::time::Duration;

use fantoccini::{Client, Locator};
use tonic::transport::Channel;

use itsm_e2e::browser::*;
use itsm_e2e::{Suite, authed};
use itsm_proto::cmdb::cmdb_service_client::CmdbServiceClient;
use itsm_proto::cmdb::*;
use itsm_runtime::structs::json_to_struct;
use itsm_runtime::testing::TestBackend;

/// Creates a CI as `token` and returns it.
async fn create_ci(
    cmdb: &mut CmdbServiceClient<Channel>,
    token: &str,
    name: &str,
    class: &str,
    team: &str,
    criticality: Criticality,
    attributes: serde_json::Value,
) -> ConfigurationItem {
    let item = ConfigurationItem {
        display_name: name.into(),
        ci_class: class.into(),
        environment: "prod".into(),
        lifecycle_status: LifecycleStatus::InUse as i32,
        criticality: criticality as i32,
        owner: format!("{team}-team"),
        labels: [("team".to_string(), team.to_string())].into_iter().collect(),
        attributes: Some(json_to_struct(&attributes)),
        ..Default::default()
    };
    cmdb.create_configuration_item(authed(
        CreateConfigurationItemRequest { configuration_item: Some(item), request_id: String::new() },
        token,
    ))
    .await
    .unwrap_or_else(|e| panic!("create {name}: {e:?}"))
    .into_inner()
}

async fn relate(
    cmdb: &mut CmdbServiceClient<Channel>,
    token: &str,
    source: &ConfigurationItem,
    kind: RelationshipType,
    target: &ConfigurationItem,
) {
    let relationship = Relationship {
        source: source.name.clone(),
        target: target.name.clone(),
        r#type: kind as i32,
        ..Default::default()
    };
    cmdb.create_relationship(authed(
        CreateRelationshipRequest { relationship: Some(relationship), request_id: String::new() },
        token,
    ))
    .await
    .unwrap_or_else(|e| panic!("relate {} to {}: {e:?}", source.display_name, target.display_name));
}

/// The id in a CI's resource name (`configurationItems/{id}`), as the console's addresses and
/// element ids use it.
fn id_of(ci: &ConfigurationItem) -> String {
    ci.name.rsplit('/').next().unwrap().to_string()
}

/// How many elements match `css` on the page shown.
async fn count(browser: &Client, css: &str) -> usize {
    browser.find_all(Locator::Css(css)).await.unwrap().len()
}

/// Waits until the browser shows a page whose query contains `part`.
async fn wait_for_query(browser: &Client, part: &str) {
    let deadline = tokio::time::Instant::now() + PAGE_TIMEOUT;
    while !location(browser).await.1.contains(part) {
        assert!(tokio::time::Instant::now() < deadline, "no page with `{part}` in its address");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn cmdb_in_a_browser(backend: TestBackend) {
    let Some(driver) = Chromedriver::start().await else { return };
    let suite = Suite::start_with_console(backend).await.unwrap();
    let console = suite.console_url().unwrap();
    let shots = screenshot_dir(backend);
    let shots = shots.as_deref();
    let admin = suite.token("lead", "acme", &["admin"]).unwrap();
    let ann = suite.token("ann", "acme", &["agent", "tier1"]).unwrap();
    let rita = suite.token("rita", "acme", &["requester"]).unwrap();

    // A business service → application → database → server chain.
    let mut cmdb = CmdbServiceClient::new(suite.gateway_channel().await.unwrap());
    let service = create_ci(
        &mut cmdb,
        &admin,
        "Online payments",
        "business_service",
        "payments",
        Criticality::Critical,
        serde_json::json!({ "service_level": "gold" }),
    )
    .await;
    let app = create_ci(
        &mut cmdb,
        &admin,
        "payments-api",
        "application",
        "payments",
        Criticality::High,
        serde_json::json!({ "version": "4.2.1", "type": "web" }),
    )
    .await;
    let db = create_ci(
        &mut cmdb,
        &admin,
        "payments-db",
        "database",
        "payments",
        Criticality::High,
        serde_json::json!({ "engine": "postgres" }),
    )
    .await;
    let server = create_ci(
        &mut cmdb,
        &admin,
        "db-host-01",
        "server",
        "infra",
        Criticality::Medium,
        serde_json::json!({ "ip_address": "10.0.0.5", "os": "linux", "cpu_count": 8 }),
    )
    .await;
    relate(&mut cmdb, &admin, &service, RelationshipType::DependsOn, &app).await;
    relate(&mut cmdb, &admin, &app, RelationshipType::DependsOn, &db).await;
    relate(&mut cmdb, &admin, &db, RelationshipType::RunsOn, &server).await;
    // A change, so the history has more than the creation.
    cmdb.update_configuration_item(authed(
        UpdateConfigurationItemRequest {
            configuration_item: Some(ConfigurationItem {
                name: app.name.clone(),
                owner: "payments-platform".into(),
                etag: app.etag.clone(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask { paths: vec!["owner".into()] }),
        },
        &admin,
    ))
    .await
    .unwrap();
    let (service_id, app_id, db_id, server_id) = (id_of(&service), id_of(&app), id_of(&db), id_of(&server));

    // An agent searches with the API's filter language.
    let browser = driver.browser().await;
    browser.goto(&format!("{console}/cmdb")).await.unwrap();
    sign_in(&browser, &ann).await;
    assert_eq!(text_of(&browser, "cmdb-heading").await, "Configuration items");
    assert_eq!(location(&browser).await.0, "/cmdb", "back on the page sign-in was asked for");
    wait_for(&browser, "filter-examples").await;
    type_into(&browser, "filter", r#"labels.team = "payments" AND environment = "prod""#).await;
    click(&browser, "search-submit").await;
    wait_for(&browser, &format!("ci-{app_id}")).await;
    let (path, query) = location(&browser).await;
    assert_eq!(path, "/cmdb");
    assert!(query.contains("filter=labels.team"), "{query}");
    let rows = text_of(&browser, "items").await;
    assert!(rows.contains("payments-api") && rows.contains("Online payments"), "{rows}");
    assert!(!rows.contains("db-host-01"), "the server is another team's: {rows}");
    let row = text_of(&browser, &format!("row-{app_id}")).await;
    for expected in ["payments-api", "application", "In use", "prod", "High", "payments-platform"] {
        assert!(row.contains(expected), "{expected} in {row}");
    }
    screenshot(&browser, shots, "cmdb_search").await;
    assert_contrast(&browser, "cmdb_search").await;

    // The application: attributes, relationships, history and the impact picture (depth 2).
    click(&browser, &format!("ci-{app_id}")).await;
    assert_eq!(text_of(&browser, "ci-name").await, "payments-api");
    assert_eq!(location(&browser).await.0, format!("/cmdb/items/{app_id}"));
    assert_eq!(text_of(&browser, "ci-class").await, "application");
    assert_eq!(text_of(&browser, "ci-owner").await, "payments-platform");
    assert_eq!(text_of(&browser, "ci-environment").await, "prod");
    assert_eq!(text_of(&browser, "attribute-version-value").await, "4.2.1");
    assert_eq!(text_of(&browser, "attribute-type-value").await, "web");
    assert_eq!(text_of(&browser, "attribute-lifecycle-value").await, "—", "class attributes show unset");
    assert!(text_of(&browser, "labels").await.contains("payments"));
    let relationships = text_of(&browser, "relationships").await;
    assert!(
        relationships.contains("is used by") && relationships.contains("Online payments"),
        "{relationships}"
    );
    assert!(relationships.contains("depends on") && relationships.contains("payments-db"), "{relationships}");
    let history = text_of(&browser, "history").await;
    assert!(history.contains("create") && history.contains("update"), "{history}");
    assert!(history.contains("owner") && history.contains("payments-team → payments-platform"), "{history}");
    assert!(history.contains("lead") && history.contains("source: user"), "{history}");

    wait_for(&browser, "impact-svg").await;
    let svg = browser.find(Locator::Id("impact-svg")).await.unwrap();
    assert_eq!(svg.attr("role").await.unwrap().as_deref(), Some("img"));
    assert!(svg.attr("aria-label").await.unwrap().unwrap().contains("payments-api"));
    assert!(count(&browser, "#impact-svg > title").await == 1, "the picture has a title");
    // Downstream (left): what stops working when the application fails — the business service.
    assert_eq!(count(&browser, &format!("#impact-downstream #impact-node-{service_id}")).await, 1);
    // Upstream (right): what the application needs — the database, and the server it runs on.
    assert_eq!(count(&browser, &format!("#impact-upstream #impact-node-{db_id}")).await, 1);
    assert_eq!(count(&browser, &format!("#impact-upstream #impact-node-{server_id}")).await, 1);
    assert_eq!(count(&browser, "#impact-center #impact-root").await, 1);
    let service_node = browser.find(Locator::Id(&format!("impact-node-{service_id}"))).await.unwrap();
    assert!(service_node.attr("class").await.unwrap().unwrap().contains("impact-node--service"));
    assert!(
        service_node.attr("href").await.unwrap().unwrap().ends_with(&format!("/cmdb/items/{service_id}"))
    );
    let server_node = browser.find(Locator::Id(&format!("impact-node-{server_id}"))).await.unwrap();
    assert!(!server_node.attr("class").await.unwrap().unwrap().contains("impact-node--service"));
    // Each node is left of the next along the chain: service, application, database, server.
    let mut xs = Vec::new();
    for id in [format!("impact-node-{service_id}"), "impact-root".to_string(), format!("impact-node-{db_id}")]
    {
        xs.push(browser.find(Locator::Id(&id)).await.unwrap().rectangle().await.unwrap().0);
    }
    xs.push(server_node.rectangle().await.unwrap().0);
    assert!(xs.windows(2).all(|pair| pair[0] < pair[1]), "left to right: {xs:?}");
    assert_eq!(count(&browser, "#impact-svg .impact-edge").await, 3);
    // The same CIs as tables, with their depth.
    let downstream = text_of(&browser, &format!("downstream-row-{service_id}")).await;
    assert!(
        downstream.contains("Online payments") && downstream.contains("business service"),
        "{downstream}"
    );
    let upstream = text_of(&browser, &format!("upstream-row-{server_id}")).await;
    assert!(upstream.contains("db-host-01") && upstream.contains('2') && upstream.contains("payments-db"));
    screenshot(&browser, shots, "cmdb_item").await;
    assert_contrast(&browser, "cmdb_item").await;

    // Depth 1: the server, two steps away, is gone; the database stays.
    browser.find(Locator::Id("depth")).await.unwrap().select_by_value("1").await.unwrap();
    click(&browser, "depth-submit").await;
    wait_for_query(&browser, "depth=1").await;
    wait_for(&browser, "impact-svg").await;
    assert_eq!(count(&browser, &format!("#impact-node-{server_id}")).await, 0);
    assert_eq!(count(&browser, &format!("#upstream-row-{server_id}")).await, 0);
    assert_eq!(count(&browser, &format!("#impact-upstream #impact-node-{db_id}")).await, 1);
    assert_eq!(count(&browser, &format!("#impact-downstream #impact-node-{service_id}")).await, 1);
    assert_eq!(count(&browser, "#impact-svg .impact-edge").await, 2);
    let depth = browser.find(Locator::Id("depth")).await.unwrap().prop("value").await.unwrap();
    assert_eq!(depth.as_deref(), Some("1"));

    // A bad filter: the API's error next to the filter field, the filter kept as typed.
    browser.goto(&format!("{console}/cmdb")).await.unwrap();
    type_into(&browser, "filter", "name = ").await;
    click(&browser, "search-submit").await;
    let error = text_of(&browser, "filter-error").await;
    assert!(error.contains("Filter is not valid") && error.contains("expected a value"), "{error}");
    let filter = browser.find(Locator::Id("filter")).await.unwrap();
    assert_eq!(filter.attr("aria-invalid").await.unwrap().as_deref(), Some("true"));
    assert!(filter.attr("aria-describedby").await.unwrap().unwrap().contains("filter-error"));
    assert_eq!(filter.prop("value").await.unwrap().as_deref(), Some("name = "));
    assert_eq!(count(&browser, "#items").await, 0, "no results for a refused filter");

    // A requester has no CMDB: the 403 page.
    sign_out(&browser).await;
    sign_in(&browser, &rita).await;
    wait_for(&browser, "my-tickets").await;
    browser.goto(&format!("{console}/cmdb")).await.unwrap();
    assert_eq!(text_of(&browser, "error-heading").await, "You do not have access to this page");
    browser.goto(&format!("{console}/cmdb/items/{app_id}")).await.unwrap();
    assert_eq!(text_of(&browser, "error-heading").await, "You do not have access to this page");

    browser.close().await.unwrap();
    drop(driver);
}

itsm_runtime::db_tests!(cmdb_in_a_browser);
