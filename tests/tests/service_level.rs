//! Service level management end to end through the gateway: an incident raised from a ticket is
//! measured by its agreement's clock — paused while on hold, resumed, warned, breached and
//! stopped when resolved — and the warning escalates the ticket in the service desk.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::time::{Duration, Instant};

use tonic::Code;
use tonic_types::StatusExt;

use itsm_e2e::{Suite, authed};
use itsm_proto::cmdb::cmdb_service_client::CmdbServiceClient;
use itsm_proto::cmdb::{ConfigurationItem, CreateConfigurationItemRequest};
use itsm_proto::delivery::service_level_service_client::ServiceLevelServiceClient;
use itsm_proto::delivery::*;
use itsm_proto::incident::incident_service_client::IncidentServiceClient;
use itsm_proto::incident::{
    AssignIncidentRequest, GetIncidentRequest, Incident, IncidentState, OnHoldReason, ResolutionCode,
    ResolveIncidentRequest, UpdateIncidentRequest,
};
use itsm_proto::servicedesk::service_desk_service_client::ServiceDeskServiceClient;
use itsm_proto::servicedesk::{
    CreateSupportGroupRequest, CreateTicketRequest, GetTicketRequest, SupportGroup, Ticket, TicketType,
};
use itsm_runtime::testing::TestBackend;

fn every_day() -> Vec<DayHours> {
    (1..=7)
        .map(|day| DayHours { day, spans: vec![TimeSpan { start: "00:00".into(), end: "24:00".into() }] })
        .collect()
}

fn seconds(s: i64) -> prost_types::Duration {
    prost_types::Duration { seconds: s, nanos: 0 }
}

async fn an_incident_on_hold_drives_its_clock_and_a_warning_escalates_the_ticket(backend: TestBackend) {
    let suite = Suite::start_tuned(
        backend,
        |name, settings| {
            // Warnings fall due between events; the desk acts on them in its escalation sweep.
            settings.delivery.sla_sweep_interval_ms = 100;
            if name == "service-desk" {
                settings.service_desk.time_box_interval_ms = 100;
            }
        },
        |_| {},
    )
    .await
    .unwrap();
    let admin = suite.token("alice", "acme", &["admin"]).unwrap();
    let channel = suite.gateway_channel().await.unwrap();
    let mut cmdb = CmdbServiceClient::new(channel.clone());
    let mut levels = ServiceLevelServiceClient::new(channel.clone());
    let mut incidents = IncidentServiceClient::new(channel.clone());
    let mut desk = ServiceDeskServiceClient::new(channel);

    let shop = cmdb
        .create_configuration_item(authed(
            CreateConfigurationItemRequest {
                configuration_item: Some(ConfigurationItem {
                    display_name: "Shop".into(),
                    ci_class: "business_service".into(),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner()
        .name;
    for (name, tier, member) in [("Desk", 1, "ann"), ("Apps", 2, "ben")] {
        desk.create_support_group(authed(
            CreateSupportGroupRequest {
                support_group: Some(SupportGroup {
                    display_name: name.into(),
                    tier,
                    members: vec![member.into()],
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            &admin,
        ))
        .await
        .unwrap();
    }

    // Bad input first: a time target needs a calendar; two holidays on one date overlap.
    let target = |calendar: &str| ServiceLevelTarget {
        metric: TargetMetric::ResolutionTime as i32,
        condition: r#"record_type = "incident""#.into(),
        duration: Some(seconds(3)),
        warning_percents: vec![50],
        calendar: calendar.into(),
        ..Default::default()
    };
    let agreement = |targets: Vec<ServiceLevelTarget>| CreateServiceLevelAgreementRequest {
        service_level_agreement: Some(ServiceLevelAgreement {
            display_name: "Shop gold".into(),
            r#type: AgreementType::Sla as i32,
            business_service: shop.clone(),
            counterparty: "Retail division".into(),
            targets,
            active: true,
            ..Default::default()
        }),
        request_id: String::new(),
    };
    let err =
        levels.create_service_level_agreement(authed(agreement(vec![target("")]), &admin)).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let fields: Vec<String> = err
        .get_error_details()
        .bad_request()
        .unwrap()
        .field_violations
        .iter()
        .map(|v| v.field.clone())
        .collect();
    assert_eq!(fields, ["service_level_agreement.targets[0].calendar"]);
    let holiday = |date: &str| Holiday { date: date.into(), name: "Closed".into() };
    let err = levels
        .create_business_calendar(authed(
            CreateBusinessCalendarRequest {
                business_calendar: Some(BusinessCalendar {
                    display_name: "Broken".into(),
                    time_zone: "Europe/Berlin".into(),
                    weekly_hours: every_day(),
                    holidays: vec![holiday("2026-12-25"), holiday("2026-12-25")],
                    ..Default::default()
                }),
            },
            &admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("holidays[1]"), "{}", err.message());
    assert!(
        levels
            .list_business_calendars(authed(ListBusinessCalendarsRequest {}, &admin))
            .await
            .unwrap()
            .into_inner()
            .business_calendars
            .is_empty()
    );

    let calendar = levels
        .create_business_calendar(authed(
            CreateBusinessCalendarRequest {
                business_calendar: Some(BusinessCalendar {
                    display_name: "Always".into(),
                    time_zone: "Europe/Berlin".into(),
                    weekly_hours: every_day(),
                    ..Default::default()
                }),
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    // And the tier-1 desk's response target on tickets (an OLA-style condition on the tier).
    let ticket_response = ServiceLevelTarget {
        metric: TargetMetric::ResponseTime as i32,
        condition: r#"record_type = "ticket" AND tier = "1""#.into(),
        duration: Some(seconds(600)),
        calendar: calendar.name.clone(),
        ..Default::default()
    };
    levels
        .create_service_level_agreement(authed(
            agreement(vec![target(&calendar.name), ticket_response]),
            &admin,
        ))
        .await
        .unwrap();

    // A ticket raises the incident; its clock starts.
    let ticket = desk
        .create_ticket(authed(
            CreateTicketRequest {
                ticket: Some(Ticket {
                    short_description: "Checkout fails".into(),
                    r#type: TicketType::Incident as i32,
                    business_service: shop.clone(),
                    requester: "rita".into(),
                    impact: 2,
                    urgency: 2,
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    let incident = ticket.incident.clone();
    assert!(!incident.is_empty(), "the ticket raised an incident");
    let clock = |levels: &ServiceLevelServiceClient<tonic::transport::Channel>| {
        let mut levels = levels.clone();
        let request = authed(
            ListSlaClocksRequest { filter: format!("record = \"{incident}\""), ..Default::default() },
            &admin,
        );
        async move { levels.list_sla_clocks(request).await.unwrap().into_inner().sla_clocks }
    };
    let wait_for = |what: &'static str, check: fn(&SlaClock) -> bool| {
        let clock = &clock;
        let levels = &levels;
        async move {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let clocks = clock(levels).await;
                if let Some(c) = clocks.iter().find(|c| check(c)) {
                    return c.clone();
                }
                assert!(Instant::now() < deadline, "{what}: {clocks:?}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    // The ticket's own clock comes from the service desk's feed: it stopped when work began.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let request = authed(
            ListSlaClocksRequest { filter: format!("record = \"{}\"", ticket.name), ..Default::default() },
            &admin,
        );
        let clocks = levels.clone().list_sla_clocks(request).await.unwrap().into_inner().sla_clocks;
        let met = |c: &SlaClock| {
            c.metric == TargetMetric::ResponseTime as i32 && c.state == SlaClockState::Met as i32
        };
        if clocks.iter().any(met) {
            break;
        }
        assert!(Instant::now() < deadline, "no response clock on the ticket: {clocks:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let started = wait_for("the clock starts", |c| c.state == SlaClockState::Running as i32).await;
    assert_eq!(started.metric, TargetMetric::ResolutionTime as i32);
    assert!(started.due_time.is_some());

    incidents
        .assign_incident(authed(
            AssignIncidentRequest {
                name: incident.clone(),
                assignment_group: "supportGroups/desk".into(),
                assignee: "ann".into(),
                ..Default::default()
            },
            &admin,
        ))
        .await
        .unwrap();
    let hold = UpdateIncidentRequest {
        incident: Some(Incident {
            name: incident.clone(),
            state: IncidentState::OnHold as i32,
            on_hold_reason: OnHoldReason::AwaitingCaller as i32,
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask { paths: vec!["state".into(), "on_hold_reason".into()] }),
    };
    incidents.update_incident(authed(hold, &admin)).await.unwrap();
    let paused = wait_for("on hold pauses the clock", |c| c.state == SlaClockState::Paused as i32).await;
    assert!(paused.due_time.is_none(), "a paused clock has no due time");
    // On hold for over a second: none of it counts.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let still = clock(&levels).await.remove(0);
    assert_eq!(still.state, SlaClockState::Paused as i32);
    let resume = UpdateIncidentRequest {
        incident: Some(Incident {
            name: incident.clone(),
            state: IncidentState::InProgress as i32,
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask { paths: vec!["state".into()] }),
    };
    incidents.update_incident(authed(resume, &admin)).await.unwrap();
    wait_for("resuming restarts it", |c| c.state == SlaClockState::Running as i32).await;

    // Half the time gone: the warning reaches the service desk, which escalates the ticket.
    wait_for("the warning", |c| c.warnings.contains(&50)).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let t = desk
            .get_ticket(authed(GetTicketRequest { name: ticket.name.clone() }, &admin))
            .await
            .unwrap()
            .into_inner();
        if t.tier == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "the SLA warning did not escalate the ticket: {t:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The 3 s target passes: breached; resolving stops it, still breached.
    let breached = wait_for("the breach", |c| c.state == SlaClockState::Breached as i32).await;
    assert!(breached.breach_time.is_some());
    incidents
        .resolve_incident(authed(
            ResolveIncidentRequest {
                name: incident.clone(),
                resolution_code: ResolutionCode::SolvedPermanently as i32,
                resolution_notes: "Restarted the checkout pods".into(),
                ..Default::default()
            },
            &admin,
        ))
        .await
        .unwrap();
    let stopped = wait_for("resolving stops it", |c| c.stop_time.is_some()).await;
    assert_eq!(stopped.state, SlaClockState::Breached as i32);
    let elapsed = stopped.elapsed.unwrap();
    let opened = incidents
        .get_incident(authed(GetIncidentRequest { name: incident.clone() }, &admin))
        .await
        .unwrap()
        .into_inner()
        .open_time
        .unwrap();
    let secs = |t: &prost_types::Timestamp| t.seconds as f64 + f64::from(t.nanos) / 1e9;
    let wall = secs(stopped.stop_time.as_ref().unwrap()) - secs(&opened);
    let counted = elapsed.seconds as f64 + f64::from(elapsed.nanos) / 1e9;
    assert!(counted + 1.0 < wall, "the 1.2 s on hold did not count: {counted} s of {wall} s");

    // The clock explains itself: running, paused (on hold), running, with the events behind them.
    let explained = levels
        .explain_sla_clock(authed(ExplainSlaClockRequest { name: stopped.name.clone() }, &admin))
        .await
        .unwrap()
        .into_inner();
    let running: Vec<bool> = explained.segments.iter().map(|s| s.running).collect();
    assert!(running.starts_with(&[true, false, true]), "{:?}", explained.segments);
    assert!(explained.segments.iter().all(|s| !s.cause_event.is_empty()));
    assert!(explained.explanation.iter().any(|l| l.contains("ON_HOLD")), "{:?}", explained.explanation);
    assert!(explained.explanation.iter().any(|l| l.contains("breach")), "{:?}", explained.explanation);
    assert_eq!(explained.calendar, calendar.name);

    // The report over the last hour: one measured clock, breached, and the breach listed.
    let report = levels
        .get_service_level_report(authed(
            GetServiceLevelReportRequest {
                business_service: shop.clone(),
                start_time: Some(prost_types::Timestamp { seconds: opened.seconds - 3600, nanos: 0 }),
                ..Default::default()
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    // The incident's resolution target was breached; the ticket's response target was met.
    let of = |metric: TargetMetric| report.targets.iter().find(|t| t.metric == metric as i32).unwrap();
    let t = of(TargetMetric::ResolutionTime);
    assert_eq!((t.measured, t.met, t.breached, t.attainment_percent), (1, 0, 1, 0.0));
    let t = of(TargetMetric::ResponseTime);
    assert_eq!((t.measured, t.met, t.breached, t.attainment_percent), (1, 1, 0, 100.0));
    assert_eq!(report.customers.iter().map(|c| c.measured).sum::<i32>(), 2);
    let breached: Vec<&str> = report.breaches.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(breached, [stopped.name.as_str()]);
    let err = levels
        .get_service_level_report(authed(GetServiceLevelReportRequest::default(), &admin))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    // Another tenant sees none of it.
    let other = suite.token("olga", "globex", &["admin"]).unwrap();
    let theirs = levels
        .get_sla_clock(authed(GetSlaClockRequest { name: stopped.name.clone() }, &other))
        .await
        .unwrap_err();
    assert_eq!(theirs.code(), Code::NotFound);
}

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

async fn a_burn_rate_alert_opens_one_incident_per_episode(backend: TestBackend) {
    use itsm_proto::incident::ListIncidentsRequest;
    let suite = Suite::start(backend).await.unwrap();
    let admin = suite.token("alice", "acme", &["admin"]).unwrap();
    let channel = suite.gateway_channel().await.unwrap();
    let mut levels = ServiceLevelServiceClient::new(channel.clone());
    let mut incidents = IncidentServiceClient::new(channel);

    // A document with a broken field is refused, naming it; nothing is stored.
    let broken = OPENSLO.replace("target: 0.999", "target: 1.5");
    let err = levels
        .import_open_slo(authed(
            ImportOpenSloRequest { yaml: broken, business_service: String::new() },
            &admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("spec.objectives[0].target"), "{}", err.message());
    let dangling = OPENSLO.replace("indicatorRef: checkout-success", "indicatorRef: nowhere");
    let err = levels
        .import_open_slo(authed(
            ImportOpenSloRequest { yaml: dangling, business_service: String::new() },
            &admin,
        ))
        .await
        .unwrap_err();
    assert!(err.message().contains("nowhere"), "{}", err.message());
    let listed = levels
        .list_service_level_objectives(authed(ListServiceLevelObjectivesRequest::default(), &admin))
        .await;
    assert!(listed.unwrap().into_inner().service_level_objectives.is_empty());

    let shop = CmdbServiceClient::new(suite.gateway_channel().await.unwrap())
        .create_configuration_item(authed(
            CreateConfigurationItemRequest {
                configuration_item: Some(ConfigurationItem {
                    display_name: "Shop".into(),
                    ci_class: "business_service".into(),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner()
        .name;
    let imported = levels
        .import_open_slo(authed(
            ImportOpenSloRequest { yaml: OPENSLO.into(), business_service: shop.clone() },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner()
        .service_level_objectives;
    assert_eq!(imported.len(), 1);
    let slo = &imported[0];
    assert_eq!((slo.name.as_str(), slo.target), ("serviceLevelObjectives/checkout-availability", 0.999));
    let factors: Vec<f64> = slo.alerts.iter().map(|a| a.factor).collect();
    assert_eq!(factors, [14.4, 6.0, 1.0], "the workbook's windows for a 30-day SLO");
    assert!(slo.error_budget_remaining.is_none(), "no samples yet");

    let minute = |m: i64| prost_types::Timestamp { seconds: 1_795_000_000 + m * 60, nanos: 0 };
    let sender = levels.clone();
    let send = |samples: Vec<SliSample>| {
        let mut levels = sender.clone();
        let request = authed(
            tokio_stream::iter(vec![RecordSliSamplesRequest {
                service_level_objective: slo.name.clone(),
                samples,
            }]),
            &admin,
        );
        async move { levels.record_sli_samples(request).await }
    };
    // good > total: refused, nothing stored.
    let err = send(vec![SliSample { end_time: Some(minute(0)), good: 11, total: 10 }]).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("samples[0].good"), "{}", err.message());

    // An hour of 0.01 % errors: within budget, no alert.
    let healthy: Vec<SliSample> =
        (0..60).map(|m| SliSample { end_time: Some(minute(m)), good: 9_999, total: 10_000 }).collect();
    let answer = send(healthy).await.unwrap().into_inner();
    assert_eq!((answer.recorded, answer.incidents.len()), (60, 0));
    // Then an hour at 5 % errors: 50× the sustainable rate, every window fires — one incident.
    let burning: Vec<SliSample> =
        (60..120).map(|m| SliSample { end_time: Some(minute(m)), good: 9_500, total: 10_000 }).collect();
    let answer = send(burning[..30].to_vec()).await.unwrap().into_inner();
    assert_eq!(answer.incidents.len(), 1, "the alert opened an incident");
    let incident = answer.incidents[0].clone();
    // Still burning: the same episode, no second incident.
    let answer = send(burning[30..].to_vec()).await.unwrap().into_inner();
    assert!(answer.incidents.is_empty(), "{:?}", answer.incidents);
    let view = levels
        .get_service_level_objective(authed(
            GetServiceLevelObjectiveRequest { name: slo.name.clone() },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    let fast = &view.alerts[0];
    assert!(fast.firing && fast.long_burn_rate > 14.4 && fast.short_burn_rate > 14.4, "{fast:?}");
    assert_eq!(fast.incident, incident);
    assert!(view.error_budget_remaining.unwrap() < 1.0);

    let opened = incidents
        .list_incidents(authed(
            ListIncidentsRequest { filter: r#"category = "slo""#.into(), ..Default::default() },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner()
        .incidents;
    assert_eq!(opened.len(), 1);
    assert_eq!(opened[0].name, incident);
    assert_eq!(opened[0].priority, 1, "the fastest burn pages");
    assert!(opened[0].short_description.contains("Checkout availability"), "{}", opened[0].short_description);
    assert!(opened[0].description.contains("14.4"), "{}", opened[0].description);

    // The error-budget policy: the gateway's CanDeploy refuses while the budget is spent, and the
    // service's health shows the SLO.
    let mut overview = itsm_proto::gateway::overview_service_client::OverviewServiceClient::new(
        suite.gateway_channel().await.unwrap(),
    );
    let can = overview
        .can_deploy(authed(
            itsm_proto::gateway::CanDeployRequest { service: shop.clone(), environment: String::new() },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(!can.allowed);
    assert!(can.reasons.iter().any(|r| r.contains("spent its error budget")), "{:?}", can.reasons);
    let health = overview
        .get_service_health(authed(
            itsm_proto::gateway::GetServiceHealthRequest { service: shop.clone() },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(health.service_level_objectives.len(), 1);
    assert!(health.availability.is_some(), "{:?}", health.part_errors);
    assert!(health.part_errors.is_empty(), "{:?}", health.part_errors);

    // Recovery: two hours of clean traffic end the episode; a new burn opens a new incident.
    let clean: Vec<SliSample> =
        (120..600).map(|m| SliSample { end_time: Some(minute(m)), good: 10_000, total: 10_000 }).collect();
    assert!(send(clean).await.unwrap().into_inner().incidents.is_empty());
    let view = levels
        .get_service_level_objective(authed(
            GetServiceLevelObjectiveRequest { name: slo.name.clone() },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(!view.alerts[0].firing, "{:?}", view.alerts[0]);
}

async fn major_incidents_become_outages_and_availability_is_reported(backend: TestBackend) {
    use itsm_proto::delivery::availability_service_client::AvailabilityServiceClient;
    use itsm_proto::incident::{CreateIncidentRequest, PromoteIncidentRequest};
    let suite = Suite::start(backend).await.unwrap();
    let admin = suite.token("alice", "acme", &["admin"]).unwrap();
    let channel = suite.gateway_channel().await.unwrap();
    let mut cmdb = CmdbServiceClient::new(channel.clone());
    let mut availability = AvailabilityServiceClient::new(channel.clone());
    let mut levels = ServiceLevelServiceClient::new(channel.clone());
    let mut incidents = IncidentServiceClient::new(channel);
    let shop = cmdb
        .create_configuration_item(authed(
            CreateConfigurationItemRequest {
                configuration_item: Some(ConfigurationItem {
                    display_name: "Shop".into(),
                    ci_class: "business_service".into(),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner()
        .name;
    // The agreement's availability target: 99.9 % around the clock.
    let calendar = levels
        .create_business_calendar(authed(
            CreateBusinessCalendarRequest {
                business_calendar: Some(BusinessCalendar {
                    display_name: "Always".into(),
                    time_zone: "UTC".into(),
                    weekly_hours: every_day(),
                    ..Default::default()
                }),
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    let agreement = levels
        .create_service_level_agreement(authed(
            CreateServiceLevelAgreementRequest {
                service_level_agreement: Some(ServiceLevelAgreement {
                    display_name: "Shop availability".into(),
                    r#type: AgreementType::Sla as i32,
                    business_service: shop.clone(),
                    targets: vec![ServiceLevelTarget {
                        metric: TargetMetric::Availability as i32,
                        availability_basis_points: 9990,
                        calendar: calendar.name.clone(),
                        ..Default::default()
                    }],
                    active: true,
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();

    // The catalogue: the service as offered, with its hours, owner, customers and agreements.
    let offering = |name: &str, service: &str| CreateServiceOfferingRequest {
        service_offering: Some(ServiceOffering {
            display_name: name.into(),
            business_service: service.into(),
            hours: calendar.name.clone(),
            owner: "Retail IT".into(),
            customers: vec!["Retail division".into(), "Outlets".into()],
            ..Default::default()
        }),
    };
    let gold = levels
        .create_service_offering(authed(offering("Shop — Gold", &shop), &admin))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(gold.service_level_agreements, std::slice::from_ref(&agreement.name));
    assert_eq!(gold.hours, calendar.name);
    let err =
        levels.create_service_offering(authed(offering("Shop — Gold", &shop), &admin)).await.unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);
    let err = levels.create_service_offering(authed(offering("Nothing", ""), &admin)).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("service_offering.business_service"), "{}", err.message());
    let by_customer = levels
        .list_service_offerings(authed(
            ListServiceOfferingsRequest { customer: "Outlets".into(), ..Default::default() },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner()
        .service_offerings;
    let names: Vec<&str> = by_customer.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(names, [gold.name.as_str()]);

    // Bad input: an outage that ends before it starts.
    let now = itsm_runtime::db::now_micros();
    let ts = itsm_runtime::db::timestamp;
    let err = availability
        .create_outage(authed(
            CreateOutageRequest {
                outage: Some(Outage {
                    service: shop.clone(),
                    kind: OutageKind::Full as i32,
                    start_time: Some(ts(now)),
                    end_time: Some(ts(now - 1_000_000)),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            &admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("end_time"), "{}", err.message());

    // A P1 promoted to major: the service is down until the incident is resolved.
    let incident = incidents
        .create_incident(authed(
            CreateIncidentRequest {
                incident: Some(Incident {
                    short_description: "Checkout down".into(),
                    business_service: shop.clone(),
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
    incidents
        .promote_incident(authed(
            PromoteIncidentRequest {
                name: incident.name.clone(),
                reason: "All checkouts fail".into(),
                etag: String::new(),
            },
            &admin,
        ))
        .await
        .unwrap();
    let outages = |availability: &AvailabilityServiceClient<tonic::transport::Channel>| {
        let mut availability = availability.clone();
        let request = authed(
            ListOutagesRequest { filter: format!("cause = \"{}\"", incident.name), ..Default::default() },
            &admin,
        );
        async move { availability.list_outages(request).await.unwrap().into_inner().outages }
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let opened = loop {
        if let Some(o) = outages(&availability).await.pop() {
            break o;
        }
        assert!(Instant::now() < deadline, "the major incident opened no outage");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        (opened.kind, opened.planned, opened.end_time.is_some()),
        (OutageKind::Full as i32, false, false)
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    incidents
        .assign_incident(authed(
            AssignIncidentRequest {
                name: incident.name.clone(),
                assignment_group: "supportGroups/sre".into(),
                assignee: "sam".into(),
                ..Default::default()
            },
            &admin,
        ))
        .await
        .unwrap();
    incidents
        .resolve_incident(authed(
            ResolveIncidentRequest {
                name: incident.name.clone(),
                resolution_code: ResolutionCode::SolvedPermanently as i32,
                resolution_notes: "Rolled back".into(),
                ..Default::default()
            },
            &admin,
        ))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let closed = loop {
        let o = outages(&availability).await.pop().unwrap();
        if o.end_time.is_some() {
            break o;
        }
        assert!(Instant::now() < deadline, "resolving did not end the outage");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    // The report over the last hour: one break of about a second, under the 99.9 % target.
    let report = availability
        .get_availability_report(authed(
            GetAvailabilityReportRequest {
                service: shop.clone(),
                start_time: Some(ts(now - 3_600_000_000)),
                end_time: Some(ts(itsm_runtime::db::now_micros())),
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(report.service_breaks, 1);
    let down = report.downtime.unwrap();
    let expected = closed.end_time.unwrap().seconds - closed.start_time.unwrap().seconds;
    assert!((down.seconds - expected).abs() <= 1 && down.seconds >= 1, "{down:?}");
    assert!(
        report.availability_percent < 100.0 && report.availability_percent > 99.0,
        "{}",
        report.availability_percent
    );
    assert_eq!(
        (report.target_basis_points, report.service_level_agreement.as_str()),
        (9990, agreement.name.as_str())
    );
    assert!(report.target_met, "a second in an hour is 99.97 %");
    assert_eq!(report.mtrs, report.downtime);
    assert_eq!(report.calendar, calendar.name);
    let err = availability
        .get_availability_report(authed(
            GetAvailabilityReportRequest { service: shop.clone(), ..Default::default() },
            &admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
}

itsm_runtime::db_tests!(
    major_incidents_become_outages_and_availability_is_reported,
    an_incident_on_hold_drives_its_clock_and_a_warning_escalates_the_ticket,
    a_burn_rate_alert_opens_one_incident_per_episode,
);
