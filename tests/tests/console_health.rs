//! The console's service health pages in a real browser (headless Chromium through chromedriver),
//! against the whole suite on SQLite and PostgreSQL. A business service gets an open incident, an
//! SLO with two hours of SLI samples, a capacity resource on the application it depends on whose
//! samples rise toward the threshold, and costs this month; a service owner opens `/health`, finds
//! the service's status line, opens the service and sees the open incident, the error budget with
//! its plot over time (falling from 100 % to 50 %, against a zero line), the capacity plot with its
//! threshold line, forecast line and expected crossing, and the cost. An unknown service is a 404;
//! a requester gets the 403 page.
//!
//! Needs `/usr/bin/chromedriver` and `/usr/bin/chromium` (see `console_browser.rs`). The SQLite run
//! saves the screenshots `health`, `health_slo` and `health_service` to `services/console/screenshots/`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use fantoccini::Locator;
use tonic::transport::Channel;

use itsm_e2e::browser::*;
use itsm_e2e::{Suite, authed};
use itsm_proto::cmdb::cmdb_service_client::CmdbServiceClient;
use itsm_proto::cmdb::{
    ConfigurationItem, CreateConfigurationItemRequest, CreateRelationshipRequest, Relationship,
    RelationshipType,
};
use itsm_proto::common::Money;
use itsm_proto::delivery::capacity_service_client::CapacityServiceClient;
use itsm_proto::delivery::finance_service_client::FinanceServiceClient;
use itsm_proto::delivery::service_level_service_client::ServiceLevelServiceClient;
use itsm_proto::delivery::{
    CapacityResource, CapacityResourceKind, CapacitySample, CapacityWarningAction, CostItem, CostPool,
    CostType, CreateCapacityResourceRequest, CreateCostItemRequest, ImportOpenSloRequest,
    RecordCapacitySamplesRequest, RecordSliSamplesRequest, SliSample,
};
use itsm_proto::incident::incident_service_client::IncidentServiceClient;
use itsm_proto::incident::{CreateIncidentRequest, Incident};
use itsm_runtime::testing::TestBackend;

const OPENSLO: &str = r#"
apiVersion: openslo/v1
kind: Service
metadata:
  name: checkout
  displayName: Checkout
spec:
  description: Takes the money
---
apiVersion: openslo/v1
kind: SLI
metadata:
  name: checkout-success
spec:
  ratioMetric:
    counter: true
    good:
      metricSource:
        type: Prometheus
        spec:
          query: sum(rate(http_requests_total{service="checkout",code!~"5.."}[1m]))
    total:
      metricSource:
        type: Prometheus
        spec:
          query: sum(rate(http_requests_total{service="checkout"}[1m]))
---
apiVersion: openslo/v1
kind: SLO
metadata:
  name: checkout-availability
  displayName: Checkout availability
spec:
  service: checkout
  indicatorRef: checkout-success
  timeWindow:
    - duration: 30d
      isRolling: true
  budgetingMethod: Occurrences
  objectives:
    - displayName: Good checkouts
      target: 0.999
"#;

async fn ci(cmdb: &mut CmdbServiceClient<Channel>, token: &str, name: &str, class: &str) -> String {
    cmdb.create_configuration_item(authed(
        CreateConfigurationItemRequest {
            configuration_item: Some(ConfigurationItem {
                display_name: name.into(),
                ci_class: class.into(),
                ..Default::default()
            }),
            request_id: String::new(),
        },
        token,
    ))
    .await
    .unwrap()
    .into_inner()
    .name
}

fn eur(units: i64, cents: i32) -> Money {
    Money { currency_code: "EUR".into(), units, nanos: cents * 10_000_000 }
}

fn at(seconds: i64) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds, nanos: 0 }
}

fn hours(h: i64) -> prost_types::Duration {
    prost_types::Duration { seconds: h * 3600, nanos: 0 }
}

async fn service_health_in_a_browser(backend: TestBackend) {
    let Some(driver) = Chromedriver::start().await else { return };
    let suite = Suite::start_with_console(backend).await.unwrap();
    let console = suite.console_url().unwrap();
    let shots = screenshot_dir(backend);
    let shots = shots.as_deref();
    let admin = suite.token("lead", "acme", &["admin"]).unwrap();
    let owner = suite.token("olivia", "acme", &["service-owner"]).unwrap();
    let rita = suite.token("rita", "acme", &["requester"]).unwrap();
    let channel = suite.gateway_channel().await.unwrap();
    let mut cmdb = CmdbServiceClient::new(channel.clone());
    let mut incidents = IncidentServiceClient::new(channel.clone());
    let mut levels = ServiceLevelServiceClient::new(channel.clone());
    let mut capacity = CapacityServiceClient::new(channel.clone());
    let mut finance = FinanceServiceClient::new(channel);

    // The business service and the application it depends on.
    let checkout = ci(&mut cmdb, &admin, "Checkout", "business_service").await;
    let app = ci(&mut cmdb, &admin, "checkout-app", "application").await;
    cmdb.create_relationship(authed(
        CreateRelationshipRequest {
            relationship: Some(Relationship {
                source: checkout.clone(),
                target: app.clone(),
                r#type: RelationshipType::DependsOn as i32,
                ..Default::default()
            }),
            request_id: String::new(),
        },
        &admin,
    ))
    .await
    .unwrap();
    let service_id = checkout.strip_prefix("configurationItems/").unwrap().to_string();

    // One open incident on it.
    let incident = incidents
        .create_incident(authed(
            CreateIncidentRequest {
                incident: Some(Incident {
                    short_description: "Payments time out".into(),
                    business_service: checkout.clone(),
                    impact: 2,
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

    // An SLO with an hour without errors, then an hour at 0.1 % errors: 0.05 % over the two hours,
    // half the sustainable rate, so half the budget is left, and no alert fires (a firing alert
    // would open a second incident): the fastest window's burn rate is 1, far below its 14.4.
    let slo = levels
        .import_open_slo(authed(
            ImportOpenSloRequest { yaml: OPENSLO.into(), business_service: checkout.clone() },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner()
        .service_level_objectives
        .remove(0);
    let now = chrono::Utc::now().timestamp();
    let last_minute = now - now % 60;
    let samples: Vec<SliSample> = (0..120)
        .map(|m| SliSample {
            end_time: Some(at(last_minute - (119 - m) * 60)),
            good: if m < 60 { 10_000 } else { 9_990 },
            total: 10_000,
        })
        .collect();
    let recorded = levels
        .record_sli_samples(authed(
            tokio_stream::iter(vec![RecordSliSamplesRequest {
                service_level_objective: slo.name.clone(),
                samples,
            }]),
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((recorded.recorded, recorded.incidents.len()), (120, 0));

    // The application's CPU: fourteen days of hourly samples rising 0.1 %/h with a daily cycle of
    // ±5 %, which reaches the 80 % threshold about a week after the last sample.
    let resource = capacity
        .create_capacity_resource(authed(
            CreateCapacityResourceRequest {
                capacity_resource: Some(CapacityResource {
                    display_name: "checkout-app CPU".into(),
                    configuration_item: app.clone(),
                    metric: "cpu_utilization".into(),
                    unit: "percent".into(),
                    threshold: 80.0,
                    kind: CapacityResourceKind::Cpu as i32,
                    forecast_step: Some(hours(1)),
                    season_length: 24,
                    lead_time: Some(hours(30 * 24)),
                    warning_action: CapacityWarningAction::Event as i32,
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    let start = now - 14 * 86_400;
    let value = |h: i64| 30.0 + 0.1 * h as f64 + 5.0 * ((h % 24) as f64 / 24.0 * std::f64::consts::TAU).sin();
    let samples: Vec<CapacitySample> =
        (0..14 * 24).map(|h| CapacitySample { time: Some(at(start + h * 3600)), value: value(h) }).collect();
    let messages: Vec<RecordCapacitySamplesRequest> = samples
        .chunks(100)
        .map(|chunk| RecordCapacitySamplesRequest {
            capacity_resource: resource.name.clone(),
            samples: chunk.to_vec(),
        })
        .collect();
    capacity.record_capacity_samples(authed(tokio_stream::iter(messages), &admin)).await.unwrap();
    let resource_id = resource.name.strip_prefix("capacityResources/").unwrap().to_string();

    // This month's costs: the service's own team, and hosting of the application only it uses.
    let period = chrono::Utc::now().format("%Y-%m").to_string();
    for (name, on, amount, pool) in [
        ("Checkout team", &checkout, eur(100, 0), CostPool::People),
        ("checkout-app hosting", &app, eur(1_234, 50), CostPool::Cloud),
    ] {
        finance
            .create_cost_item(authed(
                CreateCostItemRequest {
                    cost_item: Some(CostItem {
                        display_name: name.into(),
                        amount: Some(amount),
                        period: period.clone(),
                        configuration_item: on.clone(),
                        cost_type: CostType::Opex as i32,
                        cost_center: "CC-SHOP".into(),
                        pool: pool as i32,
                        ..Default::default()
                    }),
                    request_id: uuid::Uuid::new_v4().to_string(),
                },
                &admin,
            ))
            .await
            .unwrap();
    }

    // The service owner signs in on the way to /health and finds the service's status line.
    let browser = driver.browser().await;
    browser.goto(&format!("{console}/health")).await.unwrap();
    sign_in(&browser, &owner).await;
    wait_for(&browser, "health-heading").await;
    assert_eq!(location(&browser).await.0, "/health");
    assert_eq!(text_of(&browser, &format!("service-{service_id}-incidents")).await, "1");
    let availability = text_of(&browser, &format!("service-{service_id}-availability")).await;
    assert!(availability.ends_with('%'), "{availability}");
    screenshot(&browser, shots, "health").await;
    assert_contrast(&browser, "health").await;

    // The service: its open incident, linked to the agent's incident page.
    click(&browser, &format!("service-{service_id}")).await;
    assert_eq!(text_of(&browser, "service-name").await, "Checkout");
    assert_eq!(location(&browser).await.0, format!("/health/services/{service_id}"));
    assert_eq!(text_of(&browser, "open-incident-count").await, "1");
    let link_id = format!("incident-{}", incident.number);
    wait_for(&browser, &link_id).await;
    let link = browser.find(Locator::Id(&link_id)).await.unwrap();
    let href = link.attr("href").await.unwrap().unwrap();
    assert_eq!(href, format!("/agent/incidents/{}", incident.number));

    // The SLO: half the budget left, and its burn rates as a plot.
    let objectives = text_of(&browser, "section-slo").await;
    assert!(objectives.contains("Checkout availability"), "{objectives}");
    assert_eq!(text_of(&browser, "slo-checkout-availability-budget").await, "50.0 %");
    let burn = browser.find(Locator::Id("slo-checkout-availability-burn")).await.unwrap();
    assert_eq!(burn.attr("role").await.unwrap().as_deref(), Some("img"));

    // The budget over time: since the first sample (the SLO is younger than its window), one point
    // a minute, from 100 % down to the 50 % left now, as an image saying so, over a zero line.
    let budget_plot = browser.find(Locator::Id("slo-checkout-availability-budget-plot")).await.unwrap();
    assert_eq!(budget_plot.tag_name().await.unwrap(), "svg");
    assert_eq!(budget_plot.attr("role").await.unwrap().as_deref(), Some("img"));
    let label = budget_plot.attr("aria-label").await.unwrap().unwrap();
    assert!(label.starts_with("Error budget remaining of Checkout availability over time"), "{label}");
    assert!(label.contains("every 1 min"), "{label}");
    assert!(label.contains("100.0 % left on") && label.contains(", 50.0 % on"), "{label}");
    let line = browser.find(Locator::Id("slo-checkout-availability-budget-line")).await.unwrap();
    assert_eq!(line.tag_name().await.unwrap(), "polyline");
    let points = line.attr("points").await.unwrap().unwrap();
    assert_eq!(points.split(' ').count(), 120, "{points}");
    let zero = browser.find(Locator::Id("slo-checkout-availability-budget-zero")).await.unwrap();
    assert_eq!(zero.tag_name().await.unwrap(), "line");
    let (y1, y2) = (zero.attr("y1").await.unwrap(), zero.attr("y2").await.unwrap());
    assert!(y1.is_some() && y1 == y2, "a horizontal line: {y1:?} {y2:?}");
    let summary = text_of(&browser, "slo-checkout-availability-budget-summary").await;
    assert!(summary.starts_with("100.0 % left on"), "{summary}");
    browser.find(Locator::Id("slo-checkout-availability-budget-table")).await.unwrap();

    // Availability over the last 30 days, without outages.
    assert!(text_of(&browser, "availability-percent").await.ends_with('%'));
    wait_for(&browser, "outages-none").await;

    // The capacity plot: history, forecast, the threshold line and the expected crossing.
    let plot = browser.find(Locator::Id(&format!("capacity-{resource_id}-plot"))).await.unwrap();
    assert_eq!(plot.attr("role").await.unwrap().as_deref(), Some("img"));
    let label = plot.attr("aria-label").await.unwrap().unwrap();
    assert!(label.contains("threshold of 80 percent"), "{label}");
    let threshold = browser.find(Locator::Id(&format!("capacity-{resource_id}-threshold"))).await.unwrap();
    assert_eq!(threshold.tag_name().await.unwrap(), "line");
    let (y1, y2) = (threshold.attr("y1").await.unwrap(), threshold.attr("y2").await.unwrap());
    assert!(y1.is_some() && y1 == y2, "a horizontal line: {y1:?} {y2:?}");
    let forecast = browser.find(Locator::Id(&format!("capacity-{resource_id}-forecast"))).await.unwrap();
    assert_eq!(forecast.tag_name().await.unwrap(), "polyline");
    let points = forecast.attr("points").await.unwrap().unwrap();
    assert!(points.split(' ').count() > 100, "{points}");
    let history = browser.find(Locator::Id(&format!("capacity-{resource_id}-history"))).await.unwrap();
    assert_eq!(history.tag_name().await.unwrap(), "polyline");
    browser.find(Locator::Id(&format!("capacity-{resource_id}-band"))).await.unwrap();
    browser.find(Locator::Id(&format!("capacity-{resource_id}-crossing"))).await.unwrap();
    let crossing = text_of(&browser, &format!("capacity-{resource_id}-crossing-text")).await;
    assert!(crossing.starts_with("Expected to cross the threshold at"), "{crossing}");

    // The cost: what reached the service this month, directly and through its application.
    assert_eq!(text_of(&browser, "cost-total").await, "EUR 1,334.50");
    let cost_plot = browser.find(Locator::Id("cost-plot")).await.unwrap();
    assert_eq!(cost_plot.attr("role").await.unwrap().as_deref(), Some("img"));
    browser.find(Locator::Id("cost-table")).await.unwrap();

    // Nothing failed on the way: no section says "not available".
    let page = browser.find(Locator::Id("main")).await.unwrap().text().await.unwrap();
    assert!(!page.contains("not available"), "{page}");

    browser.goto(&format!("{console}/health/services/{service_id}#section-slo")).await.unwrap();
    wait_for(&browser, "slo-heading").await;
    screenshot(&browser, shots, "health_slo").await;

    browser.goto(&format!("{console}/health/services/{service_id}#section-capacity")).await.unwrap();
    wait_for(&browser, &format!("capacity-{resource_id}-plot")).await;
    screenshot(&browser, shots, "health_service").await;
    assert_contrast(&browser, "health_service").await;

    // A service that does not exist is a 404.
    browser.goto(&format!("{console}/health/services/{}", uuid::Uuid::new_v4())).await.unwrap();
    assert_eq!(text_of(&browser, "error-heading").await, "Page not found");

    // A requester may not read service health.
    browser.goto(&format!("{console}/health")).await.unwrap();
    sign_out(&browser).await;
    sign_in(&browser, &rita).await;
    wait_for(&browser, "my-tickets").await;
    browser.goto(&format!("{console}/health/services/{service_id}")).await.unwrap();
    assert_eq!(text_of(&browser, "error-heading").await, "You do not have access to this page");

    browser.close().await.unwrap();
    drop(driver);
}

itsm_runtime::db_tests!(service_health_in_a_browser);
