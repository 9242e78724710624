//! The three-tier service desk end to end through the gateway: a ticket arrives, tier 1
//! classifies it as an incident, escalates to tier 2, then tier 3; tier 3 resolves the incident;
//! the ticket is resolved from the incident feed; the requester answers the survey; the report
//! counts it. On SQLite and PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::time::Duration;

use itsm_e2e::{Suite, authed};
use itsm_proto::incident::incident_service_client::IncidentServiceClient;
use itsm_proto::incident::{GetIncidentRequest, ResolutionCode, ResolveIncidentRequest};
use itsm_proto::servicedesk::service_desk_service_client::ServiceDeskServiceClient;
use itsm_proto::servicedesk::*;
use itsm_runtime::testing::TestBackend;

async fn three_tiers_to_a_happy_requester(backend: TestBackend) {
    let suite = Suite::start(backend).await.unwrap();
    let admin = suite.token("lead", "acme", &["admin"]).unwrap();
    let tier1 = suite.token("ann", "acme", &["agent", "tier1"]).unwrap();
    let tier3 = suite.token("cal", "acme", &["agent", "tier3"]).unwrap();
    let rita = suite.token("rita", "acme", &["requester"]).unwrap();
    let channel = suite.gateway_channel().await.unwrap();
    let mut desk = ServiceDeskServiceClient::new(channel.clone());
    let mut incidents = IncidentServiceClient::new(channel);

    let mut groups = Vec::new();
    for (name, tier, member) in
        [("Service desk", 1, "ann"), ("Applications", 2, "ben"), ("Developers", 3, "cal")]
    {
        let group = desk
            .create_support_group(authed(
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
            .unwrap()
            .into_inner();
        groups.push(group.name);
    }

    // The requester raises a ticket through the portal.
    let ticket = desk
        .create_ticket(authed(
            CreateTicketRequest {
                ticket: Some(Ticket {
                    channel: Channel::Portal as i32,
                    short_description: "Invoices export crashes".into(),
                    category: "finance-app".into(),
                    ..Default::default()
                }),
                request_id: uuid::Uuid::new_v4().to_string(),
            },
            &rita,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ticket.requester, "rita", "the requester comes from the token");
    assert_eq!((ticket.support_group.as_str(), ticket.assignee.as_str()), (groups[0].as_str(), "ann"));

    // Tier 1 classifies it as an incident, then escalates twice.
    let classified = desk
        .classify_ticket(authed(
            ClassifyTicketRequest {
                name: ticket.name.clone(),
                r#type: TicketType::Incident as i32,
                category: "finance-app".into(),
                ..Default::default()
            },
            &tier1,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(classified.incident.starts_with("incidents/"));
    for (reason, group) in
        [("Reproducible; needs application support", &groups[1]), ("Bug in the export code", &groups[2])]
    {
        let escalated = desk
            .escalate_ticket(authed(
                EscalateTicketRequest {
                    name: ticket.name.clone(),
                    reason: reason.into(),
                    ..Default::default()
                },
                &tier1,
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(&escalated.support_group, group);
    }
    let incident = incidents
        .get_incident(authed(GetIncidentRequest { name: classified.incident.clone() }, &tier3))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((incident.support_tier, &incident.assignment_group), (3, &groups[2]));

    // Tier 3 resolves the incident; the ticket follows from the feed.
    incidents
        .resolve_incident(authed(
            ResolveIncidentRequest {
                name: classified.incident.clone(),
                resolution_code: ResolutionCode::SolvedPermanently as i32,
                resolution_notes: "Fixed the date parser in 4.2.1".into(),
                etag: String::new(),
            },
            &tier3,
        ))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let current = desk
            .get_ticket(authed(GetTicketRequest { name: ticket.name.clone() }, &rita))
            .await
            .unwrap()
            .into_inner();
        if current.state == TicketState::Resolved as i32 {
            assert_eq!(current.resolution_notes, "Fixed the date parser in 4.2.1");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the ticket did not follow its incident");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    desk.answer_survey(authed(
        AnswerSurveyRequest { name: ticket.name.clone(), score: 5, comment: "Thanks!".into() },
        &rita,
    ))
    .await
    .unwrap();
    let report = desk
        .get_service_desk_report(authed(GetServiceDeskReportRequest { window_days: 1 }, &admin))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((report.tickets, report.resolved, report.first_contact_resolved), (1, 1, 0));
    assert_eq!(
        report.tiers.iter().map(|t| (t.tier, t.tickets, t.escalated, t.resolved)).collect::<Vec<_>>(),
        [(1, 1, 1, 0), (2, 1, 1, 0), (3, 1, 0, 1)]
    );
    assert_eq!((report.surveys, report.mean_survey_score), (1, 5.0));
}

itsm_runtime::db_tests!(three_tiers_to_a_happy_requester);
