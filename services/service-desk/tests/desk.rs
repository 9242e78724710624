//! The service desk against real servers on port 0 (CMDB, incident service, service desk), each
//! with a fresh database, on SQLite and PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tonic::Code;
use tonic::transport::Channel;
use tonic_types::StatusExt;

use itsm_proto::cmdb::cmdb_service_client::CmdbServiceClient;
use itsm_proto::cmdb::{ConfigurationItem, CreateConfigurationItemRequest};
use itsm_proto::incident::incident_service_client::IncidentServiceClient;
use itsm_proto::incident::{GetIncidentRequest, ResolutionCode, ResolveIncidentRequest};
use itsm_proto::servicedesk::service_desk_service_client::ServiceDeskServiceClient;
use itsm_proto::servicedesk::*;
use itsm_runtime::Settings;
use itsm_runtime::testing::{
    RunningServer, TestBackend, TestDatabase, internal_channel, settings_for, with_context,
};

struct Desk {
    desk: ServiceDeskServiceClient<Channel>,
    /// The desk's own address (its event feed).
    desk_url: String,
    incidents_channel: Channel,
    incidents: IncidentServiceClient<Channel>,
    cmdb: CmdbServiceClient<Channel>,
    _servers: Vec<RunningServer>,
    _dbs: Vec<TestDatabase>,
}

async fn start(backend: TestBackend) -> Desk {
    start_with(backend, |_| {}).await
}

async fn start_with(backend: TestBackend, tune: impl FnOnce(&mut Settings)) -> Desk {
    let mut dbs = Vec::new();
    let db = TestDatabase::create(backend).await.unwrap();
    let settings = settings_for(&db.url);
    let cmdb = RunningServer::start(move |l, s| itsm_cmdb::serve(settings, l, s.wait())).await.unwrap();
    dbs.push(db);
    let db = TestDatabase::create(backend).await.unwrap();
    let mut settings = settings_for(&db.url);
    settings.upstream.cmdb = cmdb.url();
    let incident =
        RunningServer::start(move |l, s| itsm_incident::serve(settings, l, s.wait())).await.unwrap();
    dbs.push(db);
    let db = TestDatabase::create(backend).await.unwrap();
    let mut settings = settings_for(&db.url);
    settings.upstream.incident = incident.url();
    settings.service_desk.delivery_interval_ms = 50;
    settings.service_desk.webhook_backoff_ms = 50;
    settings.service_desk.time_box_interval_ms = 100;
    tune(&mut settings);
    let desk =
        RunningServer::start(move |l, s| itsm_service_desk::serve(settings, l, s.wait())).await.unwrap();
    dbs.push(db);
    Desk {
        desk: ServiceDeskServiceClient::new(internal_channel(&desk.url()).await.unwrap()),
        desk_url: desk.url(),
        incidents: IncidentServiceClient::new(internal_channel(&incident.url()).await.unwrap()),
        incidents_channel: internal_channel(&incident.url()).await.unwrap(),
        cmdb: CmdbServiceClient::new(internal_channel(&cmdb.url()).await.unwrap()),
        _servers: vec![desk, incident, cmdb],
        _dbs: dbs,
    }
}

fn req<T>(message: T) -> tonic::Request<T> {
    with_context(message, "acme", "alice")
}

fn as_user<T>(message: T, who: &str) -> tonic::Request<T> {
    with_context(message, "acme", who)
}

/// A call by `who` with exactly `roles`, as the gateway passes them on.
fn with_roles<T>(message: T, who: &str, roles: &[&str]) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    itsm_runtime::CallContext {
        tenant: "acme".into(),
        principal: who.into(),
        roles: roles.iter().map(|r| (*r).to_string()).collect(),
    }
    .apply(request.metadata_mut(), itsm_runtime::testing::TEST_INTERNAL_TOKEN);
    request
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

fn group(name: &str, tier: i32, members: &[&str]) -> SupportGroup {
    SupportGroup {
        display_name: name.into(),
        tier,
        members: members.iter().map(|m| (*m).to_string()).collect(),
        ..Default::default()
    }
}

fn ticket(text: &str, category: &str) -> Ticket {
    Ticket {
        short_description: text.into(),
        category: category.into(),
        r#type: TicketType::ServiceRequest as i32,
        requester: "rita".into(),
        ..Default::default()
    }
}

impl Desk {
    /// Closes a ticket (as an agent would once its requester confirmed the resolution).
    async fn close(&mut self, name: &str) {
        self.desk
            .update_ticket(req(UpdateTicketRequest {
                ticket: Some(Ticket {
                    name: name.to_string(),
                    state: TicketState::Closed as i32,
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask { paths: vec!["state".into()] }),
            }))
            .await
            .unwrap();
    }

    async fn group(&mut self, g: SupportGroup) -> SupportGroup {
        self.desk
            .create_support_group(req(CreateSupportGroupRequest {
                support_group: Some(g),
                request_id: String::new(),
            }))
            .await
            .unwrap()
            .into_inner()
    }

    async fn ticket(&mut self, t: Ticket) -> Result<Ticket, tonic::Status> {
        self.desk
            .create_ticket(req(CreateTicketRequest { ticket: Some(t), request_id: String::new() }))
            .await
            .map(tonic::Response::into_inner)
    }

    async fn escalate(
        &mut self,
        name: &str,
        group: &str,
        reason: &str,
        manager: bool,
    ) -> Result<Ticket, tonic::Status> {
        self.desk
            .escalate_ticket(req(EscalateTicketRequest {
                name: name.into(),
                reason: reason.into(),
                support_group: group.into(),
                etag: String::new(),
                notify_manager: manager,
            }))
            .await
            .map(tonic::Response::into_inner)
    }

    async fn get(&mut self, name: &str) -> Ticket {
        self.desk.get_ticket(req(GetTicketRequest { name: name.into() })).await.unwrap().into_inner()
    }

    async fn notifications(&mut self, ticket: &str) -> Vec<Notification> {
        self.desk
            .list_notifications(req(ListNotificationsRequest { ticket: ticket.into(), ..Default::default() }))
            .await
            .unwrap()
            .into_inner()
            .notifications
    }
}

async fn routing_round_robin_and_tiers(backend: TestBackend) {
    let mut d = start(backend).await;
    let l1 = d.group(group("Service desk", 1, &["ann", "abe"])).await;
    let l2 = d.group(group("Network", 2, &["ben"])).await;
    let l3 =
        d.group(SupportGroup { manager: "mia".into(), ..group("Network engineering", 3, &["cal"]) }).await;
    d.desk
        .create_assignment_rule(req(CreateAssignmentRuleRequest {
            assignment_rule: Some(AssignmentRule {
                order: 10,
                category: "network".into(),
                support_group: l1.name.clone(),
                ..Default::default()
            }),
        }))
        .await
        .unwrap();

    // Round robin among the group's members.
    let mut assignees = Vec::new();
    for i in 0..3 {
        let t = d.ticket(ticket(&format!("VPN {i}"), "network")).await.unwrap();
        assert_eq!(t.support_group, l1.name);
        assert_eq!(t.tier, 1);
        assert_eq!(t.state, TicketState::InProgress as i32, "assigned to a person: taken into work");
        assignees.push(t.assignee);
    }
    assert_eq!(assignees, ["ann", "abe", "ann"]);
    let name = d.ticket(ticket("Cannot reach the file server", "network")).await.unwrap().name;

    // Tier skips need a rule or a P1.
    let err = d.escalate(&name, &l3.name, "Needs an engineer", false).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("skips a tier"), "{}", err.message());
    let err = d.escalate(&name, "", "", false).await.unwrap_err();
    assert_eq!(violations(&err), vec!["reason"]);
    let t2 = d.escalate(&name, "", "Routing problem", false).await.unwrap();
    assert_eq!((t2.tier, t2.support_group.as_str(), t2.assignee.as_str()), (2, l2.name.as_str(), "ben"));
    assert_eq!(t2.escalation_count, 1);
    let t3 = d.escalate(&name, "", "Firmware bug", true).await.unwrap();
    assert_eq!((t3.tier, t3.max_tier), (3, 3));
    let err = d.escalate(&name, "", "more", false).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "nothing above tier 3");
    let kinds: Vec<(String, String)> =
        d.notifications(&name).await.into_iter().map(|n| (n.kind, n.recipient)).collect();
    assert!(kinds.contains(&("manager_escalation".to_string(), "mia".to_string())), "{kinds:?}");
    assert!(kinds.contains(&("ticket_escalated".to_string(), "rita".to_string())), "{kinds:?}");

    // Hand-back to tier 1.
    let back = d
        .desk
        .deescalate_ticket(req(DeescalateTicketRequest {
            name: name.clone(),
            reason: "Workaround documented; tier 1 can close".into(),
            support_group: l1.name.clone(),
            etag: String::new(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((back.tier, back.max_tier), (1, 3));

    // A rule that allows skipping.
    d.desk
        .create_assignment_rule(req(CreateAssignmentRuleRequest {
            assignment_rule: Some(AssignmentRule {
                order: 1,
                category: "vip".into(),
                support_group: l1.name.clone(),
                allow_tier_skip: true,
                ..Default::default()
            }),
        }))
        .await
        .unwrap();
    let vip = d.ticket(ticket("CEO laptop", "vip")).await.unwrap();
    assert_eq!(d.escalate(&vip.name, &l3.name, "VIP", false).await.unwrap().tier, 3);

    // The history says who moved it where and why.
    let history = d
        .desk
        .list_ticket_history(req(ListTicketHistoryRequest {
            parent: name.clone(),
            page_size: 50,
            page_token: String::new(),
        }))
        .await
        .unwrap()
        .into_inner();
    let actions: Vec<(&str, &str)> = history
        .entries
        .iter()
        .map(|e| (e.change.as_ref().unwrap().action.as_str(), e.reason.as_str()))
        .collect();
    assert_eq!(
        actions,
        [
            ("create", ""),
            ("escalate", "Routing problem"),
            ("escalate", "Firmware bug"),
            ("deescalate", "Workaround documented; tier 1 can close")
        ]
    );

    // Queues: mine, my groups, unassigned.
    let mine = d
        .desk
        .list_queue(as_user(ListQueueRequest { queue: Queue::Mine as i32, ..Default::default() }, "ann"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(mine.tickets.len(), 3, "two of her own, and the handed-back one by turn");
    let groups = d
        .desk
        .list_queue(as_user(ListQueueRequest { queue: Queue::MyGroups as i32, ..Default::default() }, "abe"))
        .await
        .unwrap()
        .into_inner();
    assert!(groups.tickets.len() >= 4, "{}", groups.tickets.len());
}

async fn least_loaded_and_shifts(backend: TestBackend) {
    let mut d = start(backend).await;
    // Off shift now: a half hour twelve hours away, every day.
    let off = chrono::Utc::now() + chrono::Duration::hours(12);
    let start = off.format("%H:00").to_string();
    let end = off.format("%H:30").to_string();
    let g = d
        .group(SupportGroup {
            assignment_method: AssignmentMethod::LeastLoaded as i32,
            shifts: vec![Shift {
                member: "night".into(),
                weekdays: (1..=7).collect(),
                start_time: start,
                end_time: end,
                time_zone: "UTC".into(),
            }],
            ..group("Apps", 1, &["night", "xena", "yuri"])
        })
        .await;
    let first = d.ticket(Ticket { support_group: g.name.clone(), ..ticket("a", "apps") }).await.unwrap();
    let second = d.ticket(Ticket { support_group: g.name.clone(), ..ticket("b", "apps") }).await.unwrap();
    let third = d.ticket(Ticket { support_group: g.name.clone(), ..ticket("c", "apps") }).await.unwrap();
    assert_eq!(first.assignee, "xena", "night is off shift; xena and yuri have nothing yet");
    assert_eq!(second.assignee, "yuri");
    assert_eq!(third.assignee, "xena");
    // A shift for a non-member or with a bad zone is refused.
    let err = d
        .desk
        .create_support_group(req(CreateSupportGroupRequest {
            support_group: Some(SupportGroup {
                shifts: vec![Shift {
                    member: "zed".into(),
                    weekdays: vec![1],
                    start_time: "09:00".into(),
                    end_time: "17:00".into(),
                    time_zone: "Nowhere/Land".into(),
                }],
                ..group("Bad", 1, &["amy"])
            }),
            request_id: String::new(),
        }))
        .await
        .unwrap_err();
    assert_eq!(violations(&err), vec!["support_group.shifts[0].member", "support_group.shifts[0].time_zone"]);
}

async fn ticket_follows_its_incident(backend: TestBackend) {
    let mut d = start(backend).await;
    let ci = d
        .cmdb
        .create_configuration_item(req(CreateConfigurationItemRequest {
            configuration_item: Some(ConfigurationItem {
                display_name: "mail-01".into(),
                ci_class: "server".into(),
                ..Default::default()
            }),
            request_id: String::new(),
        }))
        .await
        .unwrap()
        .into_inner()
        .name;
    let l1 = d.group(group("Desk", 1, &["ann"])).await;
    let l2 = d.group(group("Messaging", 2, &["ben"])).await;
    let created = d
        .ticket(Ticket {
            r#type: TicketType::Incident as i32,
            configuration_items: vec![ci.clone()],
            impact: 1,
            urgency: 2,
            ..ticket("Mail is not delivered", "email")
        })
        .await
        .unwrap();
    assert!(created.incident.starts_with("incidents/INC"), "{created:?}");
    assert_eq!(created.priority, 2);
    assert_eq!(created.support_group, l1.name);
    let incident = d
        .incidents
        .get_incident(req(GetIncidentRequest { name: created.incident.clone() }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(incident.service_desk_ticket, created.name);
    assert_eq!(incident.caller, "rita");
    assert_eq!(incident.assignment_group, l1.name);

    // Escalating the ticket escalates its incident.
    d.escalate(&created.name, &l2.name, "Queue stuck on the relay", false).await.unwrap();
    let incident = d
        .incidents
        .get_incident(req(GetIncidentRequest { name: created.incident.clone() }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((incident.support_tier, incident.assignment_group.as_str()), (2, l2.name.as_str()));

    // The ticket cannot be resolved past its incident; resolving the incident resolves it.
    let err = d
        .desk
        .resolve_ticket(req(ResolveTicketRequest {
            name: created.name.clone(),
            resolution_notes: "done".into(),
            etag: String::new(),
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    d.incidents
        .resolve_incident(req(ResolveIncidentRequest {
            name: created.incident.clone(),
            resolution_code: ResolutionCode::SolvedPermanently as i32,
            resolution_notes: "Restarted the relay".into(),
            etag: String::new(),
        }))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let resolved = loop {
        let t = d.get(&created.name).await;
        if t.state == TicketState::Resolved as i32 {
            break t;
        }
        assert!(tokio::time::Instant::now() < deadline, "the ticket did not follow its incident");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(resolved.resolution_notes, "Restarted the relay");
    let kinds: Vec<String> = d.notifications(&created.name).await.into_iter().map(|n| n.kind).collect();
    assert!(kinds.contains(&"ticket_resolved".to_string()), "{kinds:?}");

    // Only the requester answers the survey, once.
    let survey = |who: &str, score: i32| {
        as_user(AnswerSurveyRequest { name: created.name.clone(), score, comment: "quick".into() }, who)
    };
    let err = d.desk.answer_survey(survey("rita", 9)).await.unwrap_err();
    assert_eq!(violations(&err), vec!["score"]);
    let answered = d.desk.answer_survey(survey("rita", 4)).await.unwrap().into_inner();
    assert_eq!(answered.survey_score, 4);
    assert_eq!(d.desk.answer_survey(survey("rita", 5)).await.unwrap_err().code(), Code::FailedPrecondition);

    // Closing the incident closes the ticket.
    d.incidents
        .close_incident(req(itsm_proto::incident::CloseIncidentRequest {
            name: created.incident.clone(),
            etag: String::new(),
        }))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while d.get(&created.name).await.state != TicketState::Closed as i32 {
        assert!(tokio::time::Instant::now() < deadline, "the ticket did not close with its incident");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(d.get(&created.name).await.close_time.is_some());

    let report = d
        .desk
        .get_service_desk_report(req(GetServiceDeskReportRequest { window_days: 7 }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((report.tickets, report.resolved, report.first_contact_resolved), (1, 1, 0));
    assert_eq!(report.tiers[0].escalated, 1);
    assert_eq!(report.tiers[1].resolved, 1);
    assert_eq!(report.surveys, 1);
}

/// A local receiver that fails its first `failures` calls, then accepts; it keeps what it got.
async fn receiver(failures: usize) -> (String, Arc<Mutex<Vec<(axum::http::HeaderMap, String)>>>) {
    let got: Arc<Mutex<Vec<(axum::http::HeaderMap, String)>>> = Arc::default();
    let seen = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
            let seen = seen.clone();
            async move {
                let mut list = seen.lock().unwrap();
                list.push((headers, body));
                if list.len() <= failures {
                    axum::http::StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    axum::http::StatusCode::NO_CONTENT
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, got)
}

async fn webhook_delivery_with_retry(backend: TestBackend) {
    let mut d = start(backend).await;
    let (url, got) = receiver(1).await;
    let secret = "a-webhook-secret-of-some-length";
    let hook = d
        .desk
        .create_webhook(req(CreateWebhookRequest {
            webhook: Some(Webhook {
                url: url.clone(),
                secret: secret.into(),
                kinds: vec!["ticket_resolved".into()],
                ..Default::default()
            }),
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(hook.secret.is_empty(), "the secret is never given back");
    d.group(group("Desk", 1, &["ann"])).await;
    let t = d.ticket(ticket("New monitor", "hardware")).await.unwrap();
    d.desk
        .resolve_ticket(req(ResolveTicketRequest {
            name: t.name.clone(),
            resolution_notes: "Delivered to desk 4".into(),
            etag: String::new(),
        }))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let delivered = loop {
        let n = d.notifications(&t.name).await;
        if let Some(done) =
            n.into_iter().find(|n| n.kind == "ticket_resolved" && n.state == DeliveryState::Delivered as i32)
        {
            break done;
        }
        assert!(tokio::time::Instant::now() < deadline, "the notification was not delivered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(delivered.attempts, 2, "one failure, one success");
    let calls = got.lock().unwrap().clone();
    assert_eq!(calls.len(), 2);
    let (headers, body) = &calls[1];
    assert_eq!(
        headers["x-itsm-signature"].to_str().unwrap(),
        itsm_service_desk::deliverer::signature(secret, body.as_bytes())
    );
    assert_eq!(headers["x-itsm-event"].to_str().unwrap(), "ticket_resolved");
    assert_eq!(
        headers["x-itsm-delivery"], calls[0].0["x-itsm-delivery"],
        "a retry carries the same delivery id"
    );
    let json: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(json["recipient"], "rita");
    assert!(json["body"].as_str().unwrap().contains("Delivered to desk 4"));
    // The assignment notification had no subscriber.
    let assigned = d.notifications(&t.name).await.into_iter().find(|n| n.kind == "ticket_assigned").unwrap();
    assert_eq!(assigned.state, DeliveryState::NoSubscriber as i32);
}

async fn bad_input_writes_nothing(backend: TestBackend) {
    let mut d = start(backend).await;
    let missing = format!("supportGroups/{}", uuid::Uuid::now_v7());
    let err = d.ticket(Ticket { support_group: missing.clone(), ..ticket("x", "") }).await.unwrap_err();
    assert_eq!(violations(&err), vec!["ticket.support_group"]);
    let err =
        d.ticket(Ticket { support_group: "desk".into(), impact: 5, ..ticket("", "") }).await.unwrap_err();
    assert_eq!(violations(&err), vec!["ticket.impact", "ticket.short_description", "ticket.support_group"]);
    let listed = d.desk.list_tickets(req(ListTicketsRequest::default())).await.unwrap().into_inner();
    assert!(listed.tickets.is_empty());

    let l1 = d.group(group("Desk", 1, &["ann"])).await;
    d.group(group("Ops", 3, &["ops"])).await;
    let t = d.ticket(ticket("Printer", "")).await.unwrap();
    let err = d.escalate(&t.name, &missing, "why", false).await.unwrap_err();
    assert_eq!(violations(&err), vec!["support_group"]);
    let err = d.escalate(&t.name, "", "why", false).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "no tier-2 group, and no skipping");
    d.desk
        .resolve_ticket(req(ResolveTicketRequest {
            name: t.name.clone(),
            resolution_notes: "Paper jam cleared".into(),
            etag: String::new(),
        }))
        .await
        .unwrap();
    d.close(&t.name).await;
    let err = d.escalate(&t.name, "", "reopen please", false).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "a closed ticket is not escalated");
    let after = d.get(&t.name).await;
    assert_eq!((after.tier, after.escalation_count), (1, 0));
    // A group with open tickets is not deleted.
    let open = d.ticket(ticket("Another", "")).await.unwrap();
    assert_eq!(open.support_group, l1.name);
    let err = d
        .desk
        .delete_support_group(req(DeleteSupportGroupRequest { name: l1.name.clone(), etag: String::new() }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
}

async fn time_box_escalates_by_itself(backend: TestBackend) {
    let mut d = start(backend).await;
    let l1 = d.group(SupportGroup { time_box_seconds: 1, ..group("Desk", 1, &["ann"]) }).await;
    let l2 = d.group(group("Apps", 2, &["ben"])).await;
    let t = d.ticket(ticket("Report is wrong", "apps")).await.unwrap();
    assert_eq!(t.support_group, l1.name);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let moved = loop {
        let current = d.get(&t.name).await;
        if current.tier == 2 {
            break current;
        }
        assert!(tokio::time::Instant::now() < deadline, "the time box did not escalate the ticket");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        (moved.support_group.as_str(), moved.assignee.as_str(), moved.escalation_count),
        (l2.name.as_str(), "ben", 1)
    );
    let history = d
        .desk
        .list_ticket_history(req(ListTicketHistoryRequest {
            parent: t.name.clone(),
            page_size: 50,
            page_token: String::new(),
        }))
        .await
        .unwrap()
        .into_inner();
    let last = history.entries.last().unwrap();
    assert_eq!(last.change.as_ref().unwrap().actor, "system");
    assert!(last.reason.contains("time box"), "{}", last.reason);
    // Tier 2 has no time box: it stays there.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(d.get(&t.name).await.tier, 2);
}

async fn catalogue_requests_approval_and_fulfilment(backend: TestBackend) {
    use itsm_proto::common::Money;
    let mut d = start(backend).await;
    let desk = d.group(group("Desk", 1, &["ann"])).await;
    let buyers = d.group(group("Purchasing", 2, &["ben"])).await;
    let eur = |units: i64| Some(Money { currency_code: "EUR".into(), units, nanos: 0 });
    let item = d
        .desk
        .create_catalog_item(req(CreateCatalogItemRequest {
            catalog_item: Some(CatalogItem {
                display_name: "Laptop".into(),
                category: "hardware".into(),
                variables: vec![
                    CatalogVariable {
                        id: "model".into(),
                        r#type: VariableType::Choice as i32,
                        required: true,
                        options: vec!["13\"".into(), "15\"".into()],
                        ..Default::default()
                    },
                    CatalogVariable {
                        id: "count".into(),
                        r#type: VariableType::Integer as i32,
                        required: true,
                        min: 1,
                        max: 3,
                        ..Default::default()
                    },
                    CatalogVariable {
                        id: "needed_by".into(),
                        r#type: VariableType::Date as i32,
                        ..Default::default()
                    },
                ],
                approval_policy: ApprovalPolicy::ManagerAboveThreshold as i32,
                cost: eur(1200),
                cost_threshold: eur(1000),
                tasks: vec![
                    FulfilmentTaskTemplate {
                        title: "Order the laptop".into(),
                        support_group: buyers.name.clone(),
                    },
                    FulfilmentTaskTemplate {
                        title: "Image and hand over".into(),
                        support_group: desk.name.clone(),
                    },
                ],
                ..Default::default()
            }),
        }))
        .await
        .unwrap()
        .into_inner();
    let submit = |answers: &[(&str, &str)], manager: &str| {
        as_user(
            SubmitRequestRequest {
                catalog_item: item.name.clone(),
                variables: answers.iter().map(|(k, v)| ((*k).to_string(), (*v).to_string())).collect(),
                manager: manager.into(),
                request_id: String::new(),
            },
            "rita",
        )
    };
    // A form with wrong types: every wrong answer named, nothing written.
    let err = d
        .desk
        .submit_request(submit(
            &[("model", "17\""), ("count", "two"), ("needed_by", "soon"), ("colour", "red")],
            "mona",
        ))
        .await
        .unwrap_err();
    assert_eq!(
        violations(&err),
        vec!["variables[colour]", "variables[count]", "variables[model]", "variables[needed_by]"]
    );
    let err = d.desk.submit_request(submit(&[("model", "15\""), ("count", "1")], "")).await.unwrap_err();
    assert_eq!(violations(&err), vec!["manager"], "above the threshold the manager approves");
    assert!(
        d.desk
            .list_tickets(req(ListTicketsRequest::default()))
            .await
            .unwrap()
            .into_inner()
            .tickets
            .is_empty()
    );

    let t = d
        .desk
        .submit_request(submit(&[("model", "15\""), ("count", "1"), ("needed_by", "2026-12-01")], "mona"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (t.request_state, t.approver.as_str(), t.requester.as_str()),
        (RequestState::AwaitingApproval as i32, "mona", "rita")
    );
    assert_eq!(t.variables["model"], "15\"");
    let tasks = |d: &mut Desk| {
        let name = t.name.clone();
        let mut desk = d.desk.clone();
        async move {
            desk.list_fulfilment_tasks(req(ListFulfilmentTasksRequest { parent: name }))
                .await
                .unwrap()
                .into_inner()
                .tasks
        }
    };
    assert!(tasks(&mut d).await.is_empty(), "no work before approval");
    let kinds: Vec<(String, String)> =
        d.notifications(&t.name).await.into_iter().map(|n| (n.kind, n.recipient)).collect();
    assert!(kinds.contains(&("approval_requested".to_string(), "mona".to_string())), "{kinds:?}");

    let decide = |who: &str, approve: bool, comment: &str| {
        as_user(DecideRequestRequest { name: t.name.clone(), approve, comment: comment.into() }, who)
    };
    assert_eq!(
        d.desk.decide_request(decide("rita", true, "")).await.unwrap_err().code(),
        Code::PermissionDenied
    );
    let approved = d.desk.decide_request(decide("mona", true, "ok")).await.unwrap().into_inner();
    assert_eq!(approved.request_state, RequestState::InFulfilment as i32);
    assert_eq!(
        d.desk.decide_request(decide("mona", true, "")).await.unwrap_err().code(),
        Code::FailedPrecondition
    );
    let open = tasks(&mut d).await;
    assert_eq!(
        open.iter().map(|t| t.title.as_str()).collect::<Vec<_>>(),
        ["Order the laptop", "Image and hand over"]
    );
    let first = d
        .desk
        .complete_fulfilment_task(as_user(
            CompleteFulfilmentTaskRequest { name: open[0].name.clone() },
            "ben",
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(first.done && first.completed_by == "ben");
    assert_eq!(d.get(&t.name).await.request_state, RequestState::InFulfilment as i32);
    assert_eq!(
        d.desk
            .complete_fulfilment_task(req(CompleteFulfilmentTaskRequest { name: open[0].name.clone() }))
            .await
            .unwrap_err()
            .code(),
        Code::FailedPrecondition
    );
    d.desk
        .complete_fulfilment_task(as_user(
            CompleteFulfilmentTaskRequest { name: open[1].name.clone() },
            "ann",
        ))
        .await
        .unwrap();
    let fulfilled = d.get(&t.name).await;
    assert_eq!(
        (fulfilled.request_state, fulfilled.state),
        (RequestState::Fulfilled as i32, TicketState::Resolved as i32)
    );

    // A rejection needs a reason and cancels the request.
    let second = d
        .desk
        .submit_request(submit(&[("model", "13\""), ("count", "2")], "mona"))
        .await
        .unwrap()
        .into_inner();
    let reject = |comment: &str| {
        as_user(
            DecideRequestRequest { name: second.name.clone(), approve: false, comment: comment.into() },
            "mona",
        )
    };
    assert_eq!(violations(&d.desk.decide_request(reject("")).await.unwrap_err()), vec!["comment"]);
    let rejected = d.desk.decide_request(reject("One laptop per person")).await.unwrap().into_inner();
    assert_eq!(
        (rejected.request_state, rejected.state),
        (RequestState::Rejected as i32, TicketState::Cancelled as i32)
    );
    let kinds: Vec<String> = d.notifications(&second.name).await.into_iter().map(|n| n.kind).collect();
    assert!(kinds.contains(&"request_rejected".to_string()), "{kinds:?}");
}

async fn sla_warnings_escalate_and_order_the_queue(backend: TestBackend) {
    use itsm_proto::delivery::{SlaClock, SlaClockChanged, SlaClockState, TargetMetric};
    use itsm_runtime::outbox::{self, NewEvent};
    // Service level management is not built yet: a delivery service serves its feed, and the test
    // writes the clock events into that feed's outbox as it will.
    let delivery_db = TestDatabase::create(backend).await.unwrap();
    let mut delivery_settings = settings_for(&delivery_db.url);
    delivery_settings.upstream.incident.clear();
    let delivery =
        RunningServer::start(move |l, s| itsm_delivery::serve(delivery_settings, l, s.wait())).await.unwrap();
    let feed_db = itsm_runtime::db::connect(&settings_for(&delivery_db.url).database).await.unwrap();
    let delivery_url = delivery.url();
    let mut d = start_with(backend, move |s| s.upstream.delivery = delivery_url).await;
    d.group(group("Desk", 1, &["ann"])).await;
    let l2 = d.group(group("Apps", 2, &["ben"])).await;
    let first = d.ticket(ticket("Payroll export fails", "apps")).await.unwrap();
    let second = d.ticket(ticket("Slow report", "apps")).await.unwrap();
    let now = itsm_runtime::db::now_micros();
    let emit =
        |action: &str, record: &str, clock: &str, due_in_minutes: i64, state: SlaClockState, percent: i32| {
            SlaClockChanged {
                action: action.into(),
                clock: Some(SlaClock {
                    name: format!("slaClocks/{clock}"),
                    service_level_agreement: "serviceLevelAgreements/gold".into(),
                    metric: TargetMetric::ResolutionTime as i32,
                    record: record.into(),
                    state: state as i32,
                    due_time: Some(itsm_runtime::db::timestamp(now + due_in_minutes * 60_000_000)),
                    ..Default::default()
                }),
                warning_percent: percent,
            }
        };
    for payload in [
        emit("start", &second.name, "c2", 60, SlaClockState::Running, 0),
        emit("start", &first.name, "c1", 30, SlaClockState::Running, 0),
    ] {
        outbox::append(&feed_db, NewEvent::of(&payload, "slaClocks/x", "acme", "system")).await.unwrap();
    }
    let queue = |d: &mut Desk| {
        let mut desk = d.desk.clone();
        async move {
            desk.list_queue(as_user(
                ListQueueRequest { queue: Queue::BreachingSoon as i32, ..Default::default() },
                "ann",
            ))
            .await
            .unwrap()
            .into_inner()
            .tickets
            .into_iter()
            .map(|t| t.name)
            .collect::<Vec<_>>()
        }
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while queue(&mut d).await.len() < 2 {
        assert!(tokio::time::Instant::now() < deadline, "the clocks did not reach the desk");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(queue(&mut d).await, vec![first.name.clone(), second.name.clone()], "the soonest due first");

    // A warning escalates the ticket by itself, with the reason.
    outbox::append(
        &feed_db,
        NewEvent::of(
            &emit("warning", &first.name, "c1", 10, SlaClockState::Running, 75),
            "slaClocks/c1",
            "acme",
            "system",
        ),
    )
    .await
    .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let escalated = loop {
        let t = d.get(&first.name).await;
        if t.tier == 2 {
            break t;
        }
        assert!(tokio::time::Instant::now() < deadline, "the SLA warning did not escalate the ticket");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(escalated.support_group, l2.name);
    let history = d
        .desk
        .list_ticket_history(req(ListTicketHistoryRequest {
            parent: first.name.clone(),
            page_size: 50,
            page_token: String::new(),
        }))
        .await
        .unwrap()
        .into_inner();
    let reasons: Vec<&str> = history.entries.iter().map(|e| e.reason.as_str()).collect();
    assert!(reasons.iter().any(|r| r.starts_with("SLA warning: 75% of the resolution time")), "{reasons:?}");

    // A stopped clock leaves the queue.
    outbox::append(
        &feed_db,
        NewEvent::of(
            &emit("stop", &second.name, "c2", 0, SlaClockState::Met, 0),
            "slaClocks/c2",
            "acme",
            "system",
        ),
    )
    .await
    .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while d.get(&second.name).await.sla_due_time.is_some() {
        assert!(tokio::time::Instant::now() < deadline, "the stopped clock stayed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(delivery);
}

itsm_runtime::db_tests!(
    sla_warnings_escalate_and_order_the_queue,
    catalogue_requests_approval_and_fulfilment,
    time_box_escalates_by_itself,
    routing_round_robin_and_tiers,
    least_loaded_and_shifts,
    ticket_follows_its_incident,
    webhook_delivery_with_retry,
    bad_input_writes_nothing,
    knowledge_base_and_suggestions,
    ticket_notes_for_agents_and_requesters,
);

const AGENT: &[&str] = &["agent", "tier1"];
const REQUESTER: &[&str] = &["requester"];

/// The actions of a ticket's history as `who` reads it, page by page (`page_size` entries each).
async fn history_actions(d: &Desk, ticket: &str, who: &str, roles: &[&str], page_size: i32) -> Vec<String> {
    let mut desk = d.desk.clone();
    let mut actions = Vec::new();
    let mut page_token = String::new();
    for _ in 0..50 {
        let request = ListTicketHistoryRequest { parent: ticket.into(), page_size, page_token };
        let page = desk.list_ticket_history(with_roles(request, who, roles)).await.unwrap().into_inner();
        actions.extend(page.entries.iter().map(|e| e.change.as_ref().unwrap().action.clone()));
        if page.next_page_token.is_empty() {
            return actions;
        }
        page_token = page.next_page_token;
    }
    panic!("the history of {ticket} does not end");
}

async fn ticket_notes_for_agents_and_requesters(backend: TestBackend) {
    use itsm_proto::events::WatchEventsRequest;
    use itsm_proto::events::event_service_client::EventServiceClient;
    use prost::Message;
    use tokio_stream::StreamExt;

    let mut d = start(backend).await;
    d.group(group("Desk", 1, &["ann"])).await;
    let ritas = d.ticket(ticket("Printer jams on every page", "printing")).await.unwrap();
    let sams = d.ticket(Ticket { requester: "sam".into(), ..ticket("Badge lost", "access") }).await.unwrap();
    let add = |parent: &str, text: &str, visibility: TicketNoteVisibility| AddTicketNoteRequest {
        parent: parent.into(),
        text: text.into(),
        visibility: visibility as i32,
        request_id: String::new(),
    };
    let list = |parent: &str| ListTicketNotesRequest { parent: parent.into(), ..Default::default() };
    let texts =
        |listed: &ListTicketNotesResponse| listed.notes.iter().map(|n| n.text.clone()).collect::<Vec<_>>();

    // An agent's work note (trimmed) and the requester's comment.
    let work_note = add(&ritas.name, "  Toner is fine; suspect the fuser \n", TicketNoteVisibility::WorkNote);
    let note = d.desk.add_ticket_note(with_roles(work_note, "ann", AGENT)).await.unwrap().into_inner();
    assert!(note.name.starts_with(&format!("{}/notes/", ritas.name)), "{}", note.name);
    assert_eq!(
        (note.text.as_str(), note.author.as_str(), note.visibility),
        ("Toner is fine; suspect the fuser", "ann", TicketNoteVisibility::WorkNote as i32)
    );
    assert!(note.create_time.is_some());
    let comment = add(&ritas.name, "It also smells of burning", TicketNoteVisibility::Comment);
    let comment = d.desk.add_ticket_note(with_roles(comment, "rita", REQUESTER)).await.unwrap().into_inner();
    assert_eq!((comment.author.as_str(), comment.visibility), ("rita", TicketNoteVisibility::Comment as i32));

    // A requester writes comments, and only on her own tickets.
    let internal = add(&ritas.name, "Let me see the work notes", TicketNoteVisibility::WorkNote);
    let err = d.desk.add_ticket_note(with_roles(internal, "rita", REQUESTER)).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    let foreign = add(&sams.name, "Me too", TicketNoteVisibility::Comment);
    let err = d.desk.add_ticket_note(with_roles(foreign, "rita", REQUESTER)).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "another requester's ticket does not exist for her");

    // Agents read every note, oldest first; the requester the comments of her own tickets.
    let all =
        d.desk.list_ticket_notes(with_roles(list(&ritas.name), "ann", AGENT)).await.unwrap().into_inner();
    assert_eq!(texts(&all), ["Toner is fine; suspect the fuser", "It also smells of burning"]);
    let hers = d
        .desk
        .list_ticket_notes(with_roles(list(&ritas.name), "rita", REQUESTER))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(texts(&hers), ["It also smells of burning"]);
    let err = d.desk.list_ticket_notes(with_roles(list(&sams.name), "rita", REQUESTER)).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    // Paged.
    let first = ListTicketNotesRequest { page_size: 1, ..list(&ritas.name) };
    let first = d.desk.list_ticket_notes(with_roles(first, "ann", AGENT)).await.unwrap().into_inner();
    assert_eq!(texts(&first), ["Toner is fine; suspect the fuser"]);
    let second =
        ListTicketNotesRequest { page_size: 1, page_token: first.next_page_token, ..list(&ritas.name) };
    let second = d.desk.list_ticket_notes(with_roles(second, "ann", AGENT)).await.unwrap().into_inner();
    assert_eq!(texts(&second), ["It also smells of burning"]);
    assert!(second.next_page_token.is_empty());

    // Bad input is INVALID_ARGUMENT naming the field, and writes nothing.
    let too_long = "x".repeat(32 * 1024 + 1);
    for (text, visibility, field) in [
        ("", TicketNoteVisibility::WorkNote, "text"),
        ("   ", TicketNoteVisibility::Comment, "text"),
        (too_long.as_str(), TicketNoteVisibility::WorkNote, "text"),
        ("Fine text", TicketNoteVisibility::Unspecified, "visibility"),
    ] {
        let err = d
            .desk
            .add_ticket_note(with_roles(add(&ritas.name, text, visibility), "ann", AGENT))
            .await
            .unwrap_err();
        assert_eq!(violations(&err), vec![field], "{field}: {err:?}");
    }
    let err = d
        .desk
        .add_ticket_note(with_roles(
            add("tickets/nope", "Text", TicketNoteVisibility::WorkNote),
            "ann",
            AGENT,
        ))
        .await
        .unwrap_err();
    assert_eq!(violations(&err), vec!["parent"]);
    let err = d
        .desk
        .add_ticket_note(with_roles(
            AddTicketNoteRequest {
                request_id: "not-a-uuid".into(),
                ..add(&ritas.name, "Text", TicketNoteVisibility::WorkNote)
            },
            "ann",
            AGENT,
        ))
        .await
        .unwrap_err();
    assert_eq!(violations(&err), vec!["request_id"]);
    let unknown = add("tickets/REQ9999999", "Text", TicketNoteVisibility::WorkNote);
    let err = d.desk.add_ticket_note(with_roles(unknown, "ann", AGENT)).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let all =
        d.desk.list_ticket_notes(with_roles(list(&ritas.name), "ann", AGENT)).await.unwrap().into_inner();
    assert_eq!(all.notes.len(), 2, "refused notes wrote nothing");

    // A retry with the same request_id adds the note once.
    let once = AddTicketNoteRequest {
        request_id: uuid::Uuid::now_v7().to_string(),
        ..add(&ritas.name, "A new fuser is ordered", TicketNoteVisibility::Comment)
    };
    let added = d.desk.add_ticket_note(with_roles(once.clone(), "ann", AGENT)).await.unwrap().into_inner();
    let again = d.desk.add_ticket_note(with_roles(once, "ann", AGENT)).await.unwrap().into_inner();
    assert_eq!(added, again);
    let all =
        d.desk.list_ticket_notes(with_roles(list(&ritas.name), "ann", AGENT)).await.unwrap().into_inner();
    assert_eq!(all.notes.len(), 3);

    // The notes are in the ticket's history, the text as the reason; a requester's timeline
    // leaves the work notes out, also when read page by page.
    let history = d
        .desk
        .list_ticket_history(with_roles(
            ListTicketHistoryRequest { parent: ritas.name.clone(), page_size: 50, page_token: String::new() },
            "ann",
            AGENT,
        ))
        .await
        .unwrap()
        .into_inner();
    let entries: Vec<(&str, &str)> = history
        .entries
        .iter()
        .map(|e| (e.change.as_ref().unwrap().action.as_str(), e.reason.as_str()))
        .collect();
    assert!(entries.contains(&("work_note", "Toner is fine; suspect the fuser")), "{entries:?}");
    assert!(entries.contains(&("comment", "It also smells of burning")), "{entries:?}");
    let agents = history_actions(&d, &ritas.name, "ann", AGENT, 50).await;
    assert_eq!(agents, ["create", "work_note", "comment", "comment"]);
    for page_size in [1, 2, 50] {
        let hers = history_actions(&d, &ritas.name, "rita", REQUESTER, page_size).await;
        assert_eq!(hers, ["create", "comment", "comment"], "page size {page_size}");
    }

    // Each note is a change of its ticket on the desk's feed (its fields unchanged).
    let mut feed = EventServiceClient::new(internal_channel(&d.desk_url).await.unwrap());
    let watch =
        WatchEventsRequest { after_sequence: 0, types: vec!["itsm.servicedesk.v1.TicketChanged".into()] };
    let mut stream = feed.watch_events(req(watch)).await.unwrap().into_inner();
    let noted = loop {
        let event = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
            .event
            .unwrap();
        let changed = TicketChanged::decode(event.payload.unwrap().value.as_slice()).unwrap();
        if changed.action == "work_note" {
            assert_eq!(event.resource_name, ritas.name);
            break changed;
        }
    };
    assert!(noted.changes.is_empty(), "{:?}", noted.changes);
    let after = noted.ticket.unwrap();
    assert_eq!((after.name, after.state), (ritas.name.clone(), ritas.state));

    // A resolved ticket still takes notes; a closed one does not, and says which ones do.
    let done = d.ticket(ticket("Monitor flickers", "hardware")).await.unwrap();
    d.desk
        .resolve_ticket(req(ResolveTicketRequest {
            name: done.name.clone(),
            resolution_notes: "Replaced the cable".into(),
            etag: String::new(),
        }))
        .await
        .unwrap();
    let reply = add(&done.name, "It still flickers now and then", TicketNoteVisibility::Comment);
    d.desk.add_ticket_note(with_roles(reply, "rita", REQUESTER)).await.unwrap();
    d.close(&done.name).await;
    let late = add(&done.name, "One more thing", TicketNoteVisibility::WorkNote);
    let err = d.desk.add_ticket_note(with_roles(late, "ann", AGENT)).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("NEW, IN_PROGRESS, PENDING or RESOLVED"), "{}", err.message());
    let notes =
        d.desk.list_ticket_notes(with_roles(list(&done.name), "ann", AGENT)).await.unwrap().into_inner();
    assert_eq!(texts(&notes), ["It still flickers now and then"]);
}

async fn knowledge_base_and_suggestions(backend: TestBackend) {
    use itsm_proto::incident::problem_service_client::ProblemServiceClient;
    use itsm_proto::incident::{CreateKnownErrorRequest, KnownError, KnownErrorStatus};
    let mut d = start(backend).await;
    let create = |title: &str, body: &str, keywords: &[&str]| {
        req(CreateArticleRequest {
            article: Some(Article {
                title: title.into(),
                body: body.into(),
                keywords: keywords.iter().map(|k| (*k).to_string()).collect(),
                category: "email".into(),
                ..Default::default()
            }),
            request_id: String::new(),
        })
    };
    let err = d.desk.create_article(create("", "", &[])).await.unwrap_err();
    assert_eq!(violations(&err), vec!["article.body", "article.title"]);
    let vpn = d
        .desk
        .create_article(create(
            "Reset your VPN token",
            "Open the portal and choose Reset.",
            &["vpn", "token"],
        ))
        .await
        .unwrap()
        .into_inner();
    let mail = d
        .desk
        .create_article(create("Mailbox full", "Archive old mail.", &["quota"]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((vpn.number.as_str(), vpn.state, vpn.revision), ("KB0000001", ArticleState::Draft as i32, 1));

    let set_state = |a: &Article, state: ArticleState| {
        req(UpdateArticleRequest {
            article: Some(Article { name: a.name.clone(), state: state as i32, ..Default::default() }),
            update_mask: Some(prost_types::FieldMask { paths: vec!["state".into()] }),
        })
    };
    let err = d.desk.update_article(set_state(&vpn, ArticleState::Published)).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "a draft is reviewed before it is published");
    // An edit in review is a new revision.
    d.desk.update_article(set_state(&vpn, ArticleState::Review)).await.unwrap();
    let edited = d
        .desk
        .update_article(req(UpdateArticleRequest {
            article: Some(Article {
                name: vpn.name.clone(),
                body: "Open the self-service portal and choose Reset token.".into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask { paths: vec!["body".into()] }),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(edited.revision, 2);
    let published =
        d.desk.update_article(set_state(&vpn, ArticleState::Published)).await.unwrap().into_inner();
    assert_eq!(published.state, ArticleState::Published as i32);
    let err = d
        .desk
        .update_article(req(UpdateArticleRequest {
            article: Some(Article { name: vpn.name.clone(), title: "x".into(), ..Default::default() }),
            update_mask: Some(prost_types::FieldMask { paths: vec!["title".into()] }),
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "a published article is revised through DRAFT");
    let revisions = d
        .desk
        .list_article_revisions(req(ListArticleRevisionsRequest { parent: vpn.name.clone() }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(revisions.revisions.iter().map(|r| r.revision).collect::<Vec<_>>(), [1, 2]);

    // Search is stemmed; requesters see published articles only.
    let search = |query: &str, who: &str, roles: &[&str]| {
        let mut request =
            tonic::Request::new(ListArticlesRequest { query: query.into(), ..Default::default() });
        itsm_runtime::CallContext {
            tenant: "acme".into(),
            principal: who.into(),
            roles: roles.iter().map(|r| (*r).to_string()).collect(),
        }
        .apply(request.metadata_mut(), itsm_runtime::testing::TEST_INTERNAL_TOKEN);
        request
    };
    let found =
        d.desk.list_articles(search("resetting tokens", "ann", &["agent"])).await.unwrap().into_inner();
    assert_eq!(found.articles.iter().map(|a| a.name.clone()).collect::<Vec<_>>(), vec![vpn.name.clone()]);
    let drafts = d.desk.list_articles(search("mail", "rita", &["requester"])).await.unwrap().into_inner();
    assert!(drafts.articles.is_empty(), "the mail article is still a draft");
    let err = d
        .desk
        .get_article({
            let mut r = tonic::Request::new(GetArticleRequest { name: mail.name.clone() });
            itsm_runtime::CallContext {
                tenant: "acme".into(),
                principal: "rita".into(),
                roles: vec!["requester".into()],
            }
            .apply(r.metadata_mut(), itsm_runtime::testing::TEST_INTERNAL_TOKEN);
            r
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    // Tier-1 suggestions: the article and the incident service's known error on the ticket's CI.
    let ci = d
        .cmdb
        .create_configuration_item(req(CreateConfigurationItemRequest {
            configuration_item: Some(ConfigurationItem {
                display_name: "vpn-gw".into(),
                ci_class: "network_device".into(),
                ..Default::default()
            }),
            request_id: String::new(),
        }))
        .await
        .unwrap()
        .into_inner()
        .name;
    let mut problems = ProblemServiceClient::new(d.incidents_channel.clone());
    let ke = problems
        .create_known_error(req(CreateKnownErrorRequest {
            known_error: Some(KnownError {
                short_description: "Tokens expire after firmware update".into(),
                symptoms: "Login refused".into(),
                workaround: "Resync the token".into(),
                configuration_items: vec![ci.clone()],
                status: KnownErrorStatus::Published as i32,
                ..Default::default()
            }),
            request_id: String::new(),
        }))
        .await
        .unwrap()
        .into_inner();
    d.group(group("Desk", 1, &["ann"])).await;
    let t = d
        .ticket(Ticket { configuration_items: vec![ci.clone()], ..ticket("VPN token does not work", "vpn") })
        .await
        .unwrap();
    let suggested = d
        .desk
        .suggest_solutions(req(SuggestSolutionsRequest { ticket: t.name.clone() }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(suggested.articles.iter().map(|a| a.name.clone()).collect::<Vec<_>>(), vec![vpn.name.clone()]);
    assert_eq!(
        suggested.known_errors.iter().map(|k| k.name.clone()).collect::<Vec<_>>(),
        vec![ke.name.clone()]
    );
    assert!(suggested.unavailable.is_empty());

    // "This solved it" counts once per ticket.
    for _ in 0..2 {
        d.desk
            .link_article(req(LinkArticleRequest {
                name: vpn.name.clone(),
                ticket: t.name.clone(),
                solved: true,
            }))
            .await
            .unwrap();
    }
    let counted =
        d.desk.get_article(req(GetArticleRequest { name: vpn.name.clone() })).await.unwrap().into_inner();
    assert_eq!((counted.link_count, counted.solved_count), (1, 1));
    let err = d
        .desk
        .link_article(req(LinkArticleRequest {
            name: mail.name.clone(),
            ticket: t.name.clone(),
            solved: true,
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "drafts are not linked");
}
