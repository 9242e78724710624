//! `GetSloBudgetHistory` against a real delivery server with a fresh database, on SQLite and
//! PostgreSQL: a day of good samples then half a day at half the sustainable error rate give a
//! budget that holds at 1 and then falls linearly, and whose last point is the budget
//! `GetServiceLevelObjective` reports; bad ranges and steps are INVALID_ARGUMENT naming their
//! fields; an unknown SLO, or one of another tenant, is NOT_FOUND; an SLO without samples has no
//! points.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use tonic::Code;
use tonic::transport::Channel;
use tonic_types::StatusExt;

use itsm_proto::delivery::service_level_service_client::ServiceLevelServiceClient;
use itsm_proto::delivery::{
    GetServiceLevelObjectiveRequest, GetSloBudgetHistoryRequest, ImportOpenSloRequest,
    RecordSliSamplesRequest, SliSample, SloBudgetHistory,
};
use itsm_runtime::testing::{
    RunningServer, TestBackend, TestDatabase, internal_channel, settings_for, with_context,
};

/// A one-day rolling SLO of 99.9 %. Its standard alerts fire above a burn rate of 1 at the
/// slowest, which the samples below stay under: no alert calls the (absent) incident service.
const OPENSLO: &str = r#"
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
    - duration: 1d
      isRolling: true
  budgetingMethod: Occurrences
  objectives:
    - displayName: Good checkouts
      target: 0.999
"#;

const NAME: &str = "serviceLevelObjectives/checkout-availability";
/// Samples every ten minutes from here on.
const BASE: i64 = 1_790_000_400;
const STEP_SECONDS: i64 = 600;

fn at(seconds: i64) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds, nanos: 0 }
}

fn seconds(s: i64) -> prost_types::Duration {
    prost_types::Duration { seconds: s, nanos: 0 }
}

/// The end of the `k`th sample.
fn sample_end(k: i64) -> i64 {
    BASE + k * STEP_SECONDS
}

fn req<T>(message: T) -> tonic::Request<T> {
    with_context(message, "acme", "alice")
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

async fn history(
    client: &mut ServiceLevelServiceClient<Channel>,
    request: GetSloBudgetHistoryRequest,
) -> Result<SloBudgetHistory, tonic::Status> {
    client.get_slo_budget_history(req(request)).await.map(tonic::Response::into_inner)
}

fn named(name: &str) -> GetSloBudgetHistoryRequest {
    GetSloBudgetHistoryRequest { name: name.into(), ..Default::default() }
}

async fn budget_history(backend: TestBackend) {
    let db = TestDatabase::create(backend).await.unwrap();
    let settings = settings_for(&db.url);
    let server = RunningServer::start(move |listener, shutdown| {
        itsm_delivery::serve(settings, listener, shutdown.wait())
    })
    .await
    .unwrap();
    let mut client = ServiceLevelServiceClient::new(internal_channel(&server.url()).await.unwrap());

    for yaml in [OPENSLO.to_string(), OPENSLO.replace("checkout-availability", "checkout-quiet")] {
        client
            .import_open_slo(req(ImportOpenSloRequest { yaml, business_service: String::new() }))
            .await
            .unwrap();
    }

    // A day of good events (samples 1-144), then twelve hours at 0.05 % bad (145-216): half the
    // 0.1 % the objective allows, a burn rate of 0.5.
    let samples: Vec<SliSample> = (1..=216)
        .map(|k| SliSample {
            end_time: Some(at(sample_end(k))),
            good: if k <= 144 { 10_000 } else { 9_995 },
            total: 10_000,
        })
        .collect();
    let recorded = client
        .record_sli_samples(req(tokio_stream::iter(vec![RecordSliSamplesRequest {
            service_level_objective: NAME.into(),
            samples,
        }])))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((recorded.recorded, recorded.incidents.len()), (216, 0));

    let slo = client
        .get_service_level_objective(req(GetServiceLevelObjectiveRequest { name: NAME.into() }))
        .await
        .unwrap()
        .into_inner();
    // The window holds samples 73-216: 360 bad of 1,440,000 against a budget of 1,440.
    let current = slo.error_budget_remaining.unwrap();
    assert!((current - 0.75).abs() < 1e-9, "{current}");

    // The default: the SLO's window up to its newest sample, every ten minutes.
    let series = history(&mut client, named(NAME)).await.unwrap();
    assert_eq!(series.service_level_objective, NAME);
    assert_eq!(series.target, 0.999);
    assert_eq!(series.time_window, Some(seconds(86_400)));
    assert_eq!(series.end_time, Some(at(sample_end(216))));
    assert_eq!(series.start_time, Some(at(sample_end(72))));
    assert_eq!(series.step, Some(seconds(STEP_SECONDS)));
    let points = &series.points;
    assert_eq!(points.len(), 145);
    assert_eq!(points[0].time, Some(at(sample_end(72))));
    let last = points.last().unwrap();
    assert_eq!(last.time, Some(at(sample_end(216))));
    assert_eq!(last.error_budget_remaining, current, "the last point is the current budget");
    // Whole while the window saw only good events, then falling by the same amount each step.
    for point in &points[..=72] {
        assert_eq!(point.error_budget_remaining, 1.0, "{point:?}");
        assert_eq!((point.error_budget_consumed, point.burn_rate), (0.0, 0.0), "{point:?}");
    }
    for (i, pair) in points[72..].windows(2).enumerate() {
        let fall = pair[0].error_budget_remaining - pair[1].error_budget_remaining;
        assert!((fall - 1.0 / 288.0).abs() < 1e-9, "step {i}: {fall}");
        assert!((pair[1].error_budget_consumed - 1.0 / 288.0).abs() < 1e-9, "{:?}", pair[1]);
        assert!((pair[1].burn_rate - 0.5).abs() < 1e-9, "{:?}", pair[1]);
    }

    // A range and step of the caller's: the bad half day, hourly.
    let hourly = history(
        &mut client,
        GetSloBudgetHistoryRequest {
            name: NAME.into(),
            start_time: Some(at(sample_end(144))),
            end_time: Some(at(sample_end(216))),
            step: Some(seconds(3_600)),
        },
    )
    .await
    .unwrap();
    assert_eq!(hourly.points.len(), 13);
    assert_eq!(hourly.points[0].error_budget_remaining, 1.0);
    assert_eq!(hourly.points.last().unwrap().error_budget_remaining, current);
    assert!((hourly.points[1].burn_rate - 0.5).abs() < 1e-9);

    // Bad input names its fields, every one at once.
    let zero_step = GetSloBudgetHistoryRequest { step: Some(seconds(0)), ..named(NAME) };
    assert_eq!(violations(&history(&mut client, zero_step).await.unwrap_err()), ["step"]);
    let backwards = GetSloBudgetHistoryRequest {
        start_time: Some(at(sample_end(100))),
        end_time: Some(at(sample_end(100))),
        step: Some(seconds(-60)),
        ..named(NAME)
    };
    assert_eq!(violations(&history(&mut client, backwards).await.unwrap_err()), ["end_time", "step"]);
    // A second apart over the default day: 86,401 points.
    let dense = GetSloBudgetHistoryRequest { step: Some(seconds(1)), ..named(NAME) };
    let err = history(&mut client, dense).await.unwrap_err();
    assert_eq!(violations(&err), ["step"]);
    assert!(err.message().contains("1000"), "{}", err.message());
    let late = GetSloBudgetHistoryRequest { start_time: Some(at(sample_end(300))), ..named(NAME) };
    assert_eq!(violations(&history(&mut client, late).await.unwrap_err()), ["start_time"]);
    assert_eq!(violations(&history(&mut client, named("checkout")).await.unwrap_err()), ["name"]);

    // Unknown, and another tenant's: NOT_FOUND.
    let err = history(&mut client, named("serviceLevelObjectives/nowhere")).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    let err = client.get_slo_budget_history(with_context(named(NAME), "globex", "gina")).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");

    // No samples: no points, as the SLO's budget is not known.
    let quiet = history(&mut client, named("serviceLevelObjectives/checkout-quiet")).await.unwrap();
    assert!(quiet.points.is_empty(), "{:?}", quiet.points);
    assert!(quiet.end_time.is_some() && quiet.step.is_some());

    server.stop().await.unwrap();
}

itsm_runtime::db_tests!(budget_history);
