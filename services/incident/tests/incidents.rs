//! Incidents against a real incident service and CMDB on port 0, each with a fresh database, on
//! SQLite and PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::time::Duration;

use prost::Message;
use tokio_stream::StreamExt;
use tonic::Code;

use itsm_proto::events::WatchEventsRequest;
use itsm_proto::events::event_service_client::EventServiceClient;
use itsm_proto::incident::*;
use itsm_runtime::testing::{TestBackend, internal_channel};

mod common;

use common::{as_user, incident, req, start, start_with, start_with_changes, violations};

fn mask(paths: &[&str]) -> Option<prost_types::FieldMask> {
    Some(prost_types::FieldMask { paths: paths.iter().map(|p| (*p).to_string()).collect() })
}

fn state(i: &Incident) -> IncidentState {
    IncidentState::try_from(i.state).unwrap()
}

async fn lifecycle_timeline_and_etags(backend: TestBackend) {
    let mut s = start(backend).await;
    let server = s.ci("db-01", "server").await;
    let service = s.ci("Payments", "business_service").await;
    let created = s
        .create(Incident {
            impact: 1,
            urgency: 2,
            business_service: service.clone(),
            caller: "carol".into(),
            ..incident("Payments are slow", &[&server])
        })
        .await;
    assert_eq!(created.number, "INC0000001");
    assert_eq!(created.name, "incidents/INC0000001");
    assert_eq!(state(&created), IncidentState::New);
    assert_eq!(created.priority, Priority::P2 as i32, "high impact, medium urgency is P2");
    assert!(created.open_time.is_some() && created.first_response_time.is_none());
    let name = created.name.clone();

    // Closing or resolving an incident nobody works on yet is not a legal move.
    let err = s
        .incidents
        .close_incident(req(CloseIncidentRequest { name: name.clone(), etag: String::new() }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("from NEW it can go to ASSIGNED, CANCELLED"), "{}", err.message());

    let assigned = s
        .incidents
        .assign_incident(req(AssignIncidentRequest {
            name: name.clone(),
            assignment_group: "supportGroups/dba".into(),
            assignee: "dave".into(),
            etag: created.etag.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(state(&assigned), IncidentState::Assigned);
    assert!(assigned.first_response_time.is_some());

    // A stale etag loses.
    let stale = s
        .incidents
        .assign_incident(req(AssignIncidentRequest {
            name: name.clone(),
            assignment_group: "supportGroups/net".into(),
            assignee: String::new(),
            etag: created.etag.clone(),
        }))
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::Aborted);

    let update = |i: Incident, paths: &[&str]| {
        req(UpdateIncidentRequest { incident: Some(i), update_mask: mask(paths) })
    };
    let working = s
        .incidents
        .update_incident(update(
            Incident { name: name.clone(), state: IncidentState::InProgress as i32, ..Default::default() },
            &["state"],
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(state(&working), IncidentState::InProgress);

    // ON_HOLD needs its reason.
    let err = s
        .incidents
        .update_incident(update(
            Incident { name: name.clone(), state: IncidentState::OnHold as i32, ..Default::default() },
            &["state"],
        ))
        .await
        .unwrap_err();
    assert_eq!(violations(&err), vec!["incident.on_hold_reason"]);
    let held = s
        .incidents
        .update_incident(update(
            Incident {
                name: name.clone(),
                state: IncidentState::OnHold as i32,
                on_hold_reason: OnHoldReason::AwaitingVendor as i32,
                ..Default::default()
            },
            &["state", "on_hold_reason"],
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(state(&held), IncidentState::OnHold);
    assert_eq!(held.on_hold_reason, OnHoldReason::AwaitingVendor as i32);

    // Resolving needs a code and notes; the rejected call leaves the incident as it was.
    let err = s
        .incidents
        .resolve_incident(req(ResolveIncidentRequest { name: name.clone(), ..Default::default() }))
        .await
        .unwrap_err();
    assert_eq!(violations(&err), vec!["resolution_code", "resolution_notes"]);
    let unchanged =
        s.incidents.get_incident(req(GetIncidentRequest { name: name.clone() })).await.unwrap().into_inner();
    assert_eq!(unchanged.etag, held.etag);

    // Closing an open incident directly is illegal, and says what is legal.
    let err = s
        .incidents
        .close_incident(req(CloseIncidentRequest { name: name.clone(), etag: String::new() }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("IN_PROGRESS, RESOLVED, CANCELLED"), "{}", err.message());

    // Raising the impact recomputes the priority.
    let raised = s
        .incidents
        .update_incident(update(
            Incident { name: name.clone(), urgency: 1, ..Default::default() },
            &["urgency"],
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(raised.priority, Priority::P1 as i32);

    let resolve = ResolveIncidentRequest {
        name: name.clone(),
        resolution_code: ResolutionCode::SolvedWorkaround as i32,
        resolution_notes: "Restarted the connection pool".into(),
        etag: String::new(),
    };
    let resolved = s.incidents.resolve_incident(req(resolve.clone())).await.unwrap().into_inner();
    assert_eq!(state(&resolved), IncidentState::Resolved);
    assert!(resolved.resolve_time.is_some());
    let err = s
        .incidents
        .reopen_incident(req(ReopenIncidentRequest {
            name: name.clone(),
            reason: String::new(),
            etag: String::new(),
        }))
        .await
        .unwrap_err();
    assert_eq!(violations(&err), vec!["reason"]);
    let reopened = s
        .incidents
        .reopen_incident(req(ReopenIncidentRequest {
            name: name.clone(),
            reason: "Slow again".into(),
            etag: String::new(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(state(&reopened), IncidentState::InProgress);
    assert!(reopened.resolve_time.is_none() && reopened.resolution_code == 0);
    s.incidents.resolve_incident(req(resolve)).await.unwrap();
    let closed = s
        .incidents
        .close_incident(as_user(CloseIncidentRequest { name: name.clone(), etag: String::new() }, "carol"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(state(&closed), IncidentState::Closed);
    assert!(closed.close_time.is_some());
    let err = s
        .incidents
        .reopen_incident(req(ReopenIncidentRequest {
            name: name.clone(),
            reason: "again".into(),
            etag: String::new(),
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);

    // The timeline has every change with who, when and why.
    let timeline = s
        .incidents
        .list_incident_timeline(req(ListIncidentTimelineRequest {
            parent: name.clone(),
            page_size: 3,
            page_token: String::new(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(timeline.entries.len(), 3);
    let rest = s
        .incidents
        .list_incident_timeline(req(ListIncidentTimelineRequest {
            parent: name.clone(),
            page_size: 100,
            page_token: timeline.next_page_token,
        }))
        .await
        .unwrap()
        .into_inner();
    let entries: Vec<TimelineEntry> = timeline.entries.into_iter().chain(rest.entries).collect();
    let actions: Vec<&str> = entries.iter().map(|e| e.change.as_ref().unwrap().action.as_str()).collect();
    assert_eq!(
        actions,
        ["create", "assign", "update", "update", "update", "resolve", "reopen", "resolve", "close"]
    );
    let reopen = &entries[6];
    assert_eq!(reopen.reason, "Slow again");
    assert_eq!(reopen.change.as_ref().unwrap().actor, "alice");
    assert_eq!(entries[8].change.as_ref().unwrap().actor, "carol");
    let assign = entries[1].change.as_ref().unwrap();
    assert!(
        assign.changes.iter().any(|c| c.field == "assignment_group" && c.new_value == "supportGroups/dba")
    );
    let versions: Vec<i64> = entries.iter().map(|e| e.change.as_ref().unwrap().version).collect();
    assert_eq!(versions, (1..=9).collect::<Vec<i64>>());
}

async fn bad_input_is_rejected_and_writes_nothing(backend: TestBackend) {
    let mut s = start(backend).await;
    let server = s.ci("web-01", "server").await;
    let missing = format!("configurationItems/{}", uuid::Uuid::now_v7());
    let cases: Vec<(Incident, Vec<&str>)> = vec![
        (incident("", &[]), vec!["incident.short_description"]),
        (incident("x", &[&missing]), vec!["incident.configuration_items[0]"]),
        (incident("x", &["servers/1"]), vec!["incident.configuration_items[0]"]),
        (Incident { impact: 7, ..incident("x", &[]) }, vec!["incident.impact"]),
        (Incident { urgency: -1, ..incident("x", &[]) }, vec!["incident.urgency"]),
        (
            Incident { business_service: server.clone(), ..incident("x", &[]) },
            vec!["incident.business_service"],
        ),
        (
            Incident { assignment_group: "dba".into(), ..incident("x", &[]) },
            vec!["incident.assignment_group"],
        ),
        (
            Incident { short_description: "x".repeat(301), ..incident("", &[]) },
            vec!["incident.short_description"],
        ),
    ];
    for (bad, fields) in cases {
        let err = s
            .incidents
            .create_incident(req(CreateIncidentRequest {
                incident: Some(bad.clone()),
                request_id: String::new(),
            }))
            .await
            .unwrap_err();
        assert_eq!(violations(&err), fields, "{bad:?}");
    }
    let err = s.incidents.create_incident(req(CreateIncidentRequest::default())).await.unwrap_err();
    assert_eq!(violations(&err), vec!["incident"]);
    let err =
        s.incidents.get_incident(req(GetIncidentRequest { name: "incidents/42".into() })).await.unwrap_err();
    assert_eq!(violations(&err), vec!["name"]);
    let err = s
        .incidents
        .get_incident(req(GetIncidentRequest { name: "incidents/INC0000009".into() }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = s
        .incidents
        .list_incidents(req(ListIncidentsRequest {
            filter: "state = \"SLEEPING\"".into(),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(violations(&err), vec!["filter"]);
    let listed = s.incidents.list_incidents(req(ListIncidentsRequest::default())).await.unwrap().into_inner();
    assert!(listed.incidents.is_empty(), "a rejected create must write nothing");
    // Numbers were not consumed by the rejected creates either.
    assert_eq!(s.create(incident("first real one", &[&server])).await.number, "INC0000001");
}

async fn cmdb_down_is_unavailable(backend: TestBackend) {
    let mut s = start(backend).await;
    let server = s.ci("app-01", "server").await;
    s.cmdb_server.take().unwrap().stop().await.unwrap();
    let err = s
        .incidents
        .create_incident(req(CreateIncidentRequest {
            incident: Some(incident("x", &[&server])),
            request_id: String::new(),
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    // Without CIs there is nothing to check.
    assert_eq!(s.create(incident("no CI", &[])).await.number, "INC0000001");
}

async fn idempotent_create(backend: TestBackend) {
    let mut s = start(backend).await;
    let id = uuid::Uuid::new_v4().to_string();
    let make = |text: &str| {
        req(CreateIncidentRequest { incident: Some(incident(text, &[])), request_id: id.clone() })
    };
    let first = s.incidents.create_incident(make("printer jam")).await.unwrap().into_inner();
    let again = s.incidents.create_incident(make("printer jam")).await.unwrap().into_inner();
    assert_eq!(first.name, again.name);
    let err = s.incidents.create_incident(make("something else")).await.unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);
    let listed = s.incidents.list_incidents(req(ListIncidentsRequest::default())).await.unwrap().into_inner();
    assert_eq!(listed.incidents.len(), 1);
}

async fn major_incident_children_and_outage_events(backend: TestBackend) {
    let mut s = start(backend).await;
    let lb = s.ci("lb-01", "server").await;
    let parent = s.create(incident("Site down", &[&lb])).await;
    let child_a = s.create(incident("Cannot log in", &[&lb])).await;
    let child_b = s.create(incident("Checkout fails", &[&lb])).await;
    let link = |child: &Incident, parent: &str| {
        req(UpdateIncidentRequest {
            incident: Some(Incident {
                name: child.name.clone(),
                parent_incident: parent.into(),
                ..Default::default()
            }),
            update_mask: mask(&["parent_incident"]),
        })
    };
    // Children attach to major incidents only.
    let err = s.incidents.update_incident(link(&child_a, &parent.name)).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    let err = s
        .incidents
        .promote_incident(req(PromoteIncidentRequest {
            name: parent.name.clone(),
            reason: String::new(),
            etag: String::new(),
        }))
        .await
        .unwrap_err();
    assert_eq!(violations(&err), vec!["reason"]);
    let major = s
        .incidents
        .promote_incident(req(PromoteIncidentRequest {
            name: parent.name.clone(),
            reason: "All customers affected".into(),
            etag: String::new(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(major.major);
    s.incidents.update_incident(link(&child_a, &parent.name)).await.unwrap();
    s.incidents.update_incident(link(&child_b, &parent.name)).await.unwrap();

    // Communications go on major incidents only.
    let note = |name: &str, kind: NoteKind| {
        req(AddWorkNoteRequest {
            name: name.into(),
            text: "Next update in 30 minutes".into(),
            kind: kind as i32,
            request_id: String::new(),
        })
    };
    s.incidents.add_work_note(note(&parent.name, NoteKind::Communication)).await.unwrap();
    let err = s.incidents.add_work_note(note(&child_a.name, NoteKind::Communication)).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);

    // A major incident with open children cannot be demoted.
    let err = s
        .incidents
        .demote_incident(req(DemoteIncidentRequest {
            name: parent.name.clone(),
            reason: "not that bad".into(),
            etag: String::new(),
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(
        err.message().contains(&child_a.number) && err.message().contains(&child_b.number),
        "{}",
        err.message()
    );

    s.incidents
        .assign_incident(req(AssignIncidentRequest {
            name: parent.name.clone(),
            assignment_group: "supportGroups/noc".into(),
            assignee: String::new(),
            etag: String::new(),
        }))
        .await
        .unwrap();
    s.incidents
        .resolve_incident(req(ResolveIncidentRequest {
            name: parent.name.clone(),
            resolution_code: ResolutionCode::SolvedPermanently as i32,
            resolution_notes: "Replaced the load balancer".into(),
            etag: String::new(),
        }))
        .await
        .unwrap();
    for child in [&child_a, &child_b] {
        let got = s
            .incidents
            .get_incident(req(GetIncidentRequest { name: child.name.clone() }))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(state(&got), IncidentState::Resolved, "{} follows its parent", child.number);
        assert_eq!(got.resolution_code, ResolutionCode::SolvedPermanently as i32);
        assert!(got.resolution_notes.contains(&parent.name));
    }

    // The feed carries the outage's start and end for availability management.
    let mut feed = EventServiceClient::new(internal_channel(&s.incident_server.url()).await.unwrap());
    let mut stream = feed
        .watch_events(req(WatchEventsRequest {
            after_sequence: 0,
            types: vec!["itsm.incident.v1.MajorIncidentOutage".into()],
        }))
        .await
        .unwrap()
        .into_inner();
    let mut actions = Vec::new();
    while actions.len() < 2 {
        let event = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
            .event
            .unwrap();
        let outage = MajorIncidentOutage::decode(event.payload.unwrap().value.as_slice()).unwrap();
        assert_eq!(outage.incident, parent.name);
        assert_eq!(outage.configuration_items, vec![lb.clone()]);
        actions.push(outage.action.clone());
        if outage.action == "end" {
            assert!(outage.end_time.is_some());
        }
    }
    assert_eq!(actions, ["start", "end"]);
}

async fn duplicates_and_known_error_suggestions(backend: TestBackend) {
    let mut s = start(backend).await;
    let mail = s.ci("mail-01", "server").await;
    let other = s.ci("web-09", "server").await;
    let known = s
        .problems
        .create_known_error(req(CreateKnownErrorRequest {
            known_error: Some(KnownError {
                short_description: "Mail queue stalls after certificate renewal".into(),
                symptoms: "Outgoing mail stays queued".into(),
                workaround: "Restart the mail transfer agent".into(),
                configuration_items: vec![mail.clone()],
                status: KnownErrorStatus::Published as i32,
                ..Default::default()
            }),
            request_id: String::new(),
        }))
        .await
        .unwrap()
        .into_inner();
    let first = s.create(incident("Mail not delivered", &[&mail])).await;
    assert!(first.possible_duplicates.is_empty());
    assert_eq!(first.known_errors, vec![known.name.clone()]);
    assert_eq!(first.suggested_workaround, "Restart the mail transfer agent");
    let second = s.create(incident("Mails stuck", &[&mail])).await;
    assert_eq!(second.possible_duplicates, vec![first.name.clone()]);
    // Another category or another CI is no duplicate, and gets no suggestion.
    let other_category =
        s.create(Incident { category: "hardware".into(), ..incident("Mail box full", &[&mail]) }).await;
    assert!(other_category.possible_duplicates.is_empty());
    let elsewhere = s.create(incident("Web slow", &[&other])).await;
    assert!(elsewhere.possible_duplicates.is_empty() && elsewhere.known_errors.is_empty());
    // Known errors are searchable by text and CI.
    let by_text = s
        .problems
        .list_known_errors(req(ListKnownErrorsRequest {
            query: "certificates renewed".into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_text.known_errors.len(), 1, "stemmed words match");
    let by_ci = s
        .problems
        .list_known_errors(req(ListKnownErrorsRequest {
            filter: format!("configuration_items = \"{other}\""),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(by_ci.known_errors.is_empty());
}

async fn full_text_search_with_filters(backend: TestBackend) {
    let mut s = start(backend).await;
    let a = s.create(Incident { impact: 1, urgency: 1, ..incident("Printer on floor 3 jams", &[]) }).await;
    let b = s.create(incident("Printers offline in Berlin", &[])).await;
    s.create(incident("VPN drops every hour", &[])).await;
    s.incidents
        .add_work_note(req(AddWorkNoteRequest {
            name: b.name.clone(),
            text: "Toner cartridge replaced".into(),
            kind: 0,
            request_id: String::new(),
        }))
        .await
        .unwrap();
    let search = |query: &str, filter: &str| {
        req(ListIncidentsRequest {
            query: query.into(),
            filter: filter.into(),
            order_by: "number".into(),
            ..Default::default()
        })
    };
    let names = |r: ListIncidentsResponse| r.incidents.into_iter().map(|i| i.name).collect::<Vec<_>>();
    assert_eq!(
        names(s.incidents.list_incidents(search("printer", "")).await.unwrap().into_inner()),
        [a.name.clone(), b.name.clone()]
    );
    assert_eq!(
        names(s.incidents.list_incidents(search("printer", "priority = \"P1\"")).await.unwrap().into_inner()),
        vec![a.name.clone()]
    );
    assert_eq!(
        names(s.incidents.list_incidents(search("toner", "")).await.unwrap().into_inner()),
        vec![b.name.clone()],
        "notes are searched"
    );
    assert!(
        names(s.incidents.list_incidents(search("printer vpn", "")).await.unwrap().into_inner()).is_empty(),
        "every word must match"
    );
    // Query syntax of either database is only words to us.
    for hostile in
        ["\" OR 1=1 --", "NEAR(printer vpn)", "printer*", "'); DROP TABLE incidents; --", "a & !b | c:*"]
    {
        s.incidents.list_incidents(search(hostile, "")).await.unwrap();
    }
    assert_eq!(names(s.incidents.list_incidents(search("", "")).await.unwrap().into_inner()).len(), 3);
}

async fn problems_known_errors_and_candidates(backend: TestBackend) {
    let mut s = start(backend).await;
    let db = s.ci("db-02", "server").await;
    let mut recurring = Vec::new();
    for i in 0..3 {
        let created = s
            .create(Incident { impact: 1, urgency: 2, ..incident(&format!("DB timeout {i}"), &[&db]) })
            .await;
        recurring.push(created.name);
    }
    let candidates = s
        .problems
        .list_candidate_problems(req(ListCandidateProblemsRequest {
            window_days: 7,
            min_incidents: 3,
            page_size: 10,
        }))
        .await
        .unwrap()
        .into_inner()
        .candidates;
    let on_ci = candidates
        .iter()
        .find(|c| c.kind == CandidateKind::ConfigurationItem as i32)
        .expect("the CI is a candidate");
    assert_eq!(on_ci.key, db);
    assert_eq!(on_ci.incident_count, 3);
    assert!(on_ci.open_problems.is_empty());
    assert!(candidates.iter().any(|c| c.kind == CandidateKind::Category as i32 && c.key == "software"));
    let none = s
        .problems
        .list_candidate_problems(req(ListCandidateProblemsRequest {
            window_days: 7,
            min_incidents: 4,
            page_size: 10,
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(none.candidates.is_empty());

    let err = s
        .problems
        .create_problem(req(CreateProblemRequest {
            problem: Some(Problem {
                short_description: "x".into(),
                incidents: vec!["incidents/INC0000099".into()],
                ..Default::default()
            }),
            request_id: String::new(),
        }))
        .await
        .unwrap_err();
    assert_eq!(violations(&err), vec!["problem.incidents[0]"]);
    let problem = s
        .problems
        .create_problem(req(CreateProblemRequest {
            problem: Some(Problem {
                short_description: "Database timeouts".into(),
                incidents: recurring.clone(),
                ..Default::default()
            }),
            request_id: String::new(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(problem.number, "PRB0000001");
    assert_eq!(problem.priority, Priority::P2 as i32, "from the incidents it explains");
    assert_eq!(problem.configuration_items, vec![db.clone()]);
    let candidates = s
        .problems
        .list_candidate_problems(req(ListCandidateProblemsRequest {
            window_days: 7,
            min_incidents: 3,
            page_size: 10,
        }))
        .await
        .unwrap()
        .into_inner()
        .candidates;
    assert!(candidates.iter().all(|c| c.open_problems == vec![problem.name.clone()]));

    let move_to = |to: ProblemState, extra: Problem, paths: &[&str]| {
        let mut paths = paths.to_vec();
        paths.push("state");
        req(UpdateProblemRequest {
            problem: Some(Problem { name: problem.name.clone(), state: to as i32, ..extra }),
            update_mask: mask(&paths),
        })
    };
    let err = s
        .problems
        .update_problem(move_to(ProblemState::Resolved, Problem::default(), &[]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("from NEW it can go to ASSESSED, CLOSED"), "{}", err.message());
    s.problems.update_problem(move_to(ProblemState::Assessed, Problem::default(), &[])).await.unwrap();
    s.problems
        .update_problem(move_to(ProblemState::RootCauseAnalysis, Problem::default(), &[]))
        .await
        .unwrap();
    let err = s
        .problems
        .update_problem(move_to(ProblemState::FixInProgress, Problem::default(), &[]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "a fix needs a root cause");
    let fixing = s
        .problems
        .update_problem(move_to(
            ProblemState::FixInProgress,
            Problem {
                root_cause: "Connection pool too small".into(),
                workaround: "Restart the app".into(),
                ..Default::default()
            },
            &["root_cause", "workaround"],
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(fixing.state, ProblemState::FixInProgress as i32);

    // A known error recorded from the problem is linked both ways and suggested on new incidents.
    let known = s
        .problems
        .create_known_error(req(CreateKnownErrorRequest {
            known_error: Some(KnownError {
                problem: problem.name.clone(),
                short_description: "DB pool exhaustion".into(),
                symptoms: "Timeouts under load".into(),
                workaround: "Restart the app".into(),
                configuration_items: vec![db.clone()],
                status: KnownErrorStatus::Published as i32,
                ..Default::default()
            }),
            request_id: String::new(),
        }))
        .await
        .unwrap()
        .into_inner();
    let linked = s
        .problems
        .get_problem(req(GetProblemRequest { name: problem.name.clone() }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(linked.known_error, known.name);
    let next = s.create(incident("DB timeout again", &[&db])).await;
    assert_eq!(next.known_errors, vec![known.name.clone()]);
    assert_eq!(next.suggested_workaround, "Restart the app");
    let listed = s
        .problems
        .list_problems(req(ListProblemsRequest {
            filter: format!("incidents = \"{}\"", recurring[0]),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.problems.len(), 1);
}

async fn configured_priority_matrix(backend: TestBackend) {
    let mut s =
        start_with(backend, |settings| settings.incident.priority_matrix = "1,1,2; 1,2,3; 2,3,4".into())
            .await;
    let created = s.create(Incident { impact: 1, urgency: 2, ..incident("x", &[]) }).await;
    assert_eq!(created.priority, Priority::P1 as i32);
    let created = s.create(Incident { impact: 3, urgency: 3, ..incident("y", &[]) }).await;
    assert_eq!(created.priority, Priority::P4 as i32);
}

async fn auto_close_and_escalation(backend: TestBackend) {
    let mut s = start(backend).await;
    let created = s.create(incident("Laptop broken", &[])).await;
    let escalate = |kind: EscalationKind, group: &str, tier: i32, reason: &str| {
        req(EscalateIncidentRequest {
            name: created.name.clone(),
            kind: kind as i32,
            assignment_group: group.into(),
            support_tier: tier,
            reason: reason.into(),
            etag: String::new(),
        })
    };
    let err =
        s.incidents.escalate_incident(escalate(EscalationKind::Functional, "", 0, "")).await.unwrap_err();
    assert_eq!(violations(&err), vec!["assignment_group", "reason"]);
    let tier2 = s
        .incidents
        .escalate_incident(escalate(
            EscalationKind::Functional,
            "supportGroups/desktop-l2",
            0,
            "Needs hardware repair",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(tier2.support_tier, 2);
    assert_eq!(tier2.assignment_group, "supportGroups/desktop-l2");
    assert_eq!(state(&tier2), IncidentState::Assigned);
    let err = s
        .incidents
        .escalate_incident(escalate(EscalationKind::Functional, "supportGroups/desk", 1, "back down"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    let flagged = s
        .incidents
        .escalate_incident(escalate(EscalationKind::Hierarchical, "", 0, "VIP waiting"))
        .await
        .unwrap()
        .into_inner();
    assert!(flagged.manager_escalated);

    s.incidents
        .resolve_incident(req(ResolveIncidentRequest {
            name: created.name.clone(),
            resolution_code: ResolutionCode::SolvedPermanently as i32,
            resolution_notes: "Replaced the keyboard".into(),
            etag: String::new(),
        }))
        .await
        .unwrap();
    // The sweeper's query, with a cutoff a day ahead (as if seven days had passed).
    let settings = itsm_runtime::testing::settings_for(&s.incident_db.url);
    let db = itsm_runtime::db::connect(&settings.database).await.unwrap();
    let repo = itsm_incident::repo::Repository {
        feed: itsm_runtime::outbox::EventFeed::new(db.clone()),
        db,
        rules: std::sync::Arc::new(itsm_incident::rules(&settings).unwrap()),
    };
    assert_eq!(
        repo.close_resolved_before(itsm_runtime::db::now_micros() - 60_000_000, 100, 7).await.unwrap(),
        0
    );
    assert_eq!(
        repo.close_resolved_before(itsm_runtime::db::now_micros() + 86_400_000_000, 100, 7).await.unwrap(),
        1
    );
    let got = s
        .incidents
        .get_incident(req(GetIncidentRequest { name: created.name.clone() }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(state(&got), IncidentState::Closed);
    let timeline = s
        .incidents
        .list_incident_timeline(req(ListIncidentTimelineRequest {
            parent: created.name.clone(),
            page_size: 100,
            page_token: String::new(),
        }))
        .await
        .unwrap()
        .into_inner();
    let last = timeline.entries.last().unwrap();
    assert_eq!(last.change.as_ref().unwrap().actor, "system");
    assert!(last.reason.contains("automatically"));
}

async fn raise_change_round_trip(backend: TestBackend) {
    use itsm_proto::change::{
        ApproveChangeRequest, Change, ChangeState, GetChangeRequest, ListChangesRequest, UpdateChangeRequest,
    };
    let mut s = start_with_changes(backend).await;
    let db = s.ci("db-07", "server").await;
    let incident = s.create(incident("Nightly batch times out", &[&db])).await;
    let problem = s
        .problems
        .create_problem(req(CreateProblemRequest {
            problem: Some(Problem {
                short_description: "Batch timeouts".into(),
                incidents: vec![incident.name.clone()],
                ..Default::default()
            }),
            request_id: String::new(),
        }))
        .await
        .unwrap()
        .into_inner();
    let raise = |request_id: &str| {
        req(RaiseChangeRequest {
            name: problem.name.clone(),
            short_description: String::new(),
            description: "Add an index".into(),
            request_id: request_id.into(),
        })
    };
    let err = s.problems.raise_change(raise("")).await.unwrap_err();
    assert_eq!(violations(&err), vec!["request_id"]);
    // No root cause yet: nothing to fix.
    let request_id = uuid::Uuid::new_v4().to_string();
    let err = s.problems.raise_change(raise(&request_id)).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    s.problems
        .update_problem(req(UpdateProblemRequest {
            problem: Some(Problem {
                name: problem.name.clone(),
                state: ProblemState::Assessed as i32,
                root_cause: "Missing index on batch_runs".into(),
                ..Default::default()
            }),
            update_mask: mask(&["state", "root_cause"]),
        }))
        .await
        .unwrap();
    let raised = s.problems.raise_change(raise(&request_id)).await.unwrap().into_inner();
    assert_eq!(raised.changes, vec!["changes/CHG0000001".to_string()]);
    assert_eq!(raised.state, ProblemState::FixInProgress as i32);
    // A retry raises no second change.
    let again = s.problems.raise_change(raise(&request_id)).await.unwrap().into_inner();
    assert_eq!(again.changes, raised.changes);
    let changes = s.changes.as_mut().unwrap();
    let listed = changes.list_changes(req(ListChangesRequest::default())).await.unwrap().into_inner();
    assert_eq!(listed.changes.len(), 1);
    let change = changes
        .get_change(req(GetChangeRequest { name: raised.changes[0].clone() }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(change.problem, problem.name);
    assert_eq!(change.configuration_items, vec![db.clone()]);
    assert!(change.description.contains("Missing index on batch_runs"));

    // Take the change through to implemented; the problem follows.
    let now = itsm_runtime::db::now_micros();
    let set = |state: ChangeState, paths: &[&str]| {
        req(UpdateChangeRequest {
            change: Some(Change {
                name: change.name.clone(),
                state: state as i32,
                planned_start_time: Some(itsm_runtime::db::timestamp(now)),
                planned_end_time: Some(itsm_runtime::db::timestamp(now + 3_600_000_000)),
                ..Default::default()
            }),
            update_mask: mask(paths),
        })
    };
    changes
        .update_change(set(ChangeState::Assess, &["state", "planned_start_time", "planned_end_time"]))
        .await
        .unwrap();
    changes.update_change(set(ChangeState::Authorize, &["state"])).await.unwrap();
    let mut approve =
        tonic::Request::new(ApproveChangeRequest { name: change.name.clone(), ..Default::default() });
    itsm_runtime::CallContext {
        tenant: common::TENANT.into(),
        principal: "bob".into(),
        roles: vec!["cab-member".into()],
    }
    .apply(approve.metadata_mut(), itsm_runtime::testing::TEST_INTERNAL_TOKEN);
    changes.approve_change(approve).await.unwrap();
    changes.update_change(set(ChangeState::Implement, &["state"])).await.unwrap();
    let unresolved = s
        .problems
        .get_problem(req(GetProblemRequest { name: problem.name.clone() }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(unresolved.state, ProblemState::FixInProgress as i32, "implementing is not implemented");
    changes.update_change(set(ChangeState::Review, &["state"])).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let current = s
            .problems
            .get_problem(req(GetProblemRequest { name: problem.name.clone() }))
            .await
            .unwrap()
            .into_inner();
        if current.state == ProblemState::Resolved as i32 {
            assert!(current.resolution_notes.contains("CHG0000001"), "{}", current.resolution_notes);
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the problem was not resolved by the change event");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn listing_pages_by_keyset(backend: TestBackend) {
    let mut s = start(backend).await;
    for i in 0..7 {
        s.create(Incident {
            impact: 1 + i % 3,
            urgency: 1 + (i / 3) % 3,
            ..incident(&format!("incident {i}"), &[])
        })
        .await;
    }
    for order_by in ["number", "priority desc", "open_time", "update_time desc"] {
        let mut token = String::new();
        let mut seen = Vec::new();
        loop {
            let page = s
                .incidents
                .list_incidents(req(ListIncidentsRequest {
                    page_size: 3,
                    page_token: token.clone(),
                    order_by: order_by.into(),
                    ..Default::default()
                }))
                .await
                .unwrap()
                .into_inner();
            seen.extend(page.incidents.into_iter().map(|i| (i.number, i.priority)));
            if page.next_page_token.is_empty() {
                break;
            }
            token = page.next_page_token;
        }
        assert_eq!(seen.len(), 7, "{order_by}: every incident once");
        let mut numbers: Vec<&String> = seen.iter().map(|(n, _)| n).collect();
        numbers.dedup();
        assert_eq!(numbers.len(), 7, "{order_by}");
        if order_by == "priority desc" {
            assert!(seen.windows(2).all(|w| w[0].1 >= w[1].1), "{seen:?}");
        }
    }
    // A token from another query is refused.
    let first = s
        .incidents
        .list_incidents(req(ListIncidentsRequest {
            page_size: 2,
            order_by: "number".into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    let err = s
        .incidents
        .list_incidents(req(ListIncidentsRequest {
            page_size: 2,
            order_by: "priority".into(),
            page_token: first.next_page_token,
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(violations(&err), vec!["page_token"]);
}

itsm_runtime::db_tests!(
    listing_pages_by_keyset,
    raise_change_round_trip,
    lifecycle_timeline_and_etags,
    bad_input_is_rejected_and_writes_nothing,
    cmdb_down_is_unavailable,
    idempotent_create,
    major_incident_children_and_outage_events,
    duplicates_and_known_error_suggestions,
    full_text_search_with_filters,
    problems_known_errors_and_candidates,
    configured_priority_matrix,
    auto_close_and_escalation,
);
