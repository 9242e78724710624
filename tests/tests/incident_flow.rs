//! Incident and problem management end to end through the gateway, with the CMDB and the change
//! service behind it, on SQLite and PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::time::Duration;

use tonic::Code;

use itsm_e2e::{Suite, authed};
use itsm_proto::change::change_service_client::ChangeServiceClient;
use itsm_proto::change::{ApproveChangeRequest, Change, ChangeState, UpdateChangeRequest};
use itsm_proto::cmdb::cmdb_service_client::CmdbServiceClient;
use itsm_proto::cmdb::{ConfigurationItem, CreateConfigurationItemRequest};
use itsm_proto::incident::incident_service_client::IncidentServiceClient;
use itsm_proto::incident::problem_service_client::ProblemServiceClient;
use itsm_proto::incident::*;
use itsm_runtime::db::{now_micros, timestamp};
use itsm_runtime::testing::TestBackend;

fn mask(paths: &[&str]) -> Option<prost_types::FieldMask> {
    Some(prost_types::FieldMask { paths: paths.iter().map(|p| (*p).to_string()).collect() })
}

async fn incident_to_problem_to_change(backend: TestBackend) {
    let suite = Suite::start(backend).await.unwrap();
    let alice = suite.token("alice", "acme", &["agent", "problem-manager"]).unwrap();
    let configurer = suite.token("carl", "acme", &["change-manager"]).unwrap();
    let bob = suite.token("bob", "acme", &["cab-member"]).unwrap();
    let mallory = suite.token("mallory", "globex", &["admin"]).unwrap();
    let channel = suite.gateway_channel().await.unwrap();
    let mut cmdb = CmdbServiceClient::new(channel.clone());
    let mut incidents = IncidentServiceClient::new(channel.clone());
    let mut problems = ProblemServiceClient::new(channel.clone());
    let mut changes = ChangeServiceClient::new(channel);

    let server = cmdb
        .create_configuration_item(authed(
            CreateConfigurationItemRequest {
                configuration_item: Some(ConfigurationItem {
                    display_name: "db-01".into(),
                    ci_class: "server".into(),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            &configurer,
        ))
        .await
        .unwrap()
        .into_inner()
        .name;

    // The incident service checks the CI in the CMDB, as the caller, in the caller's tenant.
    let create = |text: &str, cis: Vec<String>, token: &str| {
        authed(
            CreateIncidentRequest {
                incident: Some(Incident {
                    short_description: text.into(),
                    configuration_items: cis,
                    impact: 1,
                    urgency: 1,
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            token,
        )
    };
    let incident = incidents
        .create_incident(create("Orders fail", vec![server.clone()], &alice))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(incident.priority, Priority::P1 as i32);
    assert_eq!(incident.audit.as_ref().unwrap().creator, "alice");
    assert_eq!(incident.caller, "alice", "the caller defaults to the principal from the token");
    let err =
        incidents.create_incident(create("Foreign CI", vec![server.clone()], &mallory)).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "another tenant's CI does not exist for globex");
    let err = incidents
        .get_incident(authed(GetIncidentRequest { name: incident.name.clone() }, &mallory))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "another tenant's incident is not visible");

    let problem = problems
        .create_problem(authed(
            CreateProblemRequest {
                problem: Some(Problem {
                    short_description: "Orders fail under load".into(),
                    incidents: vec![incident.name.clone()],
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            &alice,
        ))
        .await
        .unwrap()
        .into_inner();
    problems
        .update_problem(authed(
            UpdateProblemRequest {
                problem: Some(Problem {
                    name: problem.name.clone(),
                    state: ProblemState::Assessed as i32,
                    root_cause: "Connection pool of 5".into(),
                    ..Default::default()
                }),
                update_mask: mask(&["state", "root_cause"]),
            },
            &alice,
        ))
        .await
        .unwrap();
    let raised = problems
        .raise_change(authed(
            RaiseChangeRequest {
                name: problem.name.clone(),
                short_description: "Raise the pool to 50".into(),
                description: String::new(),
                request_id: uuid::Uuid::new_v4().to_string(),
            },
            &alice,
        ))
        .await
        .unwrap()
        .into_inner();
    let change_name = raised.changes[0].clone();

    let now = now_micros();
    let set = |state: ChangeState, paths: &[&str]| {
        authed(
            UpdateChangeRequest {
                change: Some(Change {
                    name: change_name.clone(),
                    state: state as i32,
                    planned_start_time: Some(timestamp(now)),
                    planned_end_time: Some(timestamp(now + 3_600_000_000)),
                    ..Default::default()
                }),
                update_mask: mask(paths),
            },
            &alice,
        )
    };
    changes
        .update_change(set(ChangeState::Assess, &["state", "planned_start_time", "planned_end_time"]))
        .await
        .unwrap();
    changes.update_change(set(ChangeState::Authorize, &["state"])).await.unwrap();
    // alice raised it: separation of duties keeps her from approving it.
    let approve =
        |token: &str| authed(ApproveChangeRequest { name: change_name.clone(), ..Default::default() }, token);
    assert_eq!(changes.approve_change(approve(&alice)).await.unwrap_err().code(), Code::PermissionDenied);
    changes.approve_change(approve(&bob)).await.unwrap();
    changes.update_change(set(ChangeState::Implement, &["state"])).await.unwrap();
    changes.update_change(set(ChangeState::Review, &["state"])).await.unwrap();

    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let current = problems
            .get_problem(authed(GetProblemRequest { name: problem.name.clone() }, &alice))
            .await
            .unwrap()
            .into_inner();
        if current.state == ProblemState::Resolved as i32 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the problem did not follow its implemented change");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

itsm_runtime::db_tests!(incident_to_problem_to_change);
