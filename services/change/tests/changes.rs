//! Changes against a real change service and CMDB on port 0, each with a fresh database, on
//! SQLite and PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::time::Duration;

use prost::Message;
use tokio_stream::StreamExt;
use tonic::Code;
use tonic::transport::Channel;
use tonic_types::StatusExt;

use itsm_proto::change::change_service_client::ChangeServiceClient;
use itsm_proto::change::release_service_client::ReleaseServiceClient;
use itsm_proto::change::*;
use itsm_proto::cmdb::cmdb_service_client::CmdbServiceClient;
use itsm_proto::cmdb::{
    ConfigurationItem, CreateConfigurationItemRequest, CreateRelationshipRequest, Relationship,
    RelationshipType,
};
use itsm_proto::events::WatchEventsRequest;
use itsm_proto::events::event_service_client::EventServiceClient;
use itsm_runtime::CallContext;
use itsm_runtime::db::{now_micros, timestamp};
use itsm_runtime::testing::{
    RunningServer, TEST_INTERNAL_TOKEN, TestBackend, TestDatabase, internal_channel, settings_for,
    with_context,
};

const HOUR: i64 = 3_600_000_000;

struct Suite {
    changes: ChangeServiceClient<Channel>,
    releases: ReleaseServiceClient<Channel>,
    cmdb: CmdbServiceClient<Channel>,
    server: RunningServer,
    _servers: RunningServer,
    _dbs: (TestDatabase, TestDatabase),
}

async fn start(backend: TestBackend) -> Suite {
    // The CMDB follows the change service's feed and the change service calls the CMDB: bind
    // the change service's port first so the CMDB can be told where it is.
    let change_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let change_url = format!("http://{}", change_listener.local_addr().unwrap());
    let cmdb_db = TestDatabase::create(backend).await.unwrap();
    let mut cmdb_settings = settings_for(&cmdb_db.url);
    cmdb_settings.upstream.change = change_url;
    let cmdb = RunningServer::start(move |l, s| itsm_cmdb::serve(cmdb_settings, l, s.wait())).await.unwrap();
    let db = TestDatabase::create(backend).await.unwrap();
    let mut settings = settings_for(&db.url);
    settings.upstream.cmdb = cmdb.url();
    let server =
        RunningServer::start_on(change_listener, move |l, s| itsm_change::serve(settings, l, s.wait()))
            .await
            .unwrap();
    Suite {
        changes: ChangeServiceClient::new(internal_channel(&server.url()).await.unwrap()),
        releases: ReleaseServiceClient::new(internal_channel(&server.url()).await.unwrap()),
        cmdb: CmdbServiceClient::new(internal_channel(&cmdb.url()).await.unwrap()),
        server,
        _servers: cmdb,
        _dbs: (cmdb_db, db),
    }
}

/// As `principal` with these roles, as the gateway would call.
fn as_user<T>(message: T, principal: &str, roles: &[&str]) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    CallContext {
        tenant: "acme".into(),
        principal: principal.into(),
        roles: roles.iter().map(|r| (*r).to_string()).collect(),
    }
    .apply(request.metadata_mut(), TEST_INTERNAL_TOKEN);
    request
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

fn mask(paths: &[&str]) -> Option<prost_types::FieldMask> {
    Some(prost_types::FieldMask { paths: paths.iter().map(|p| (*p).to_string()).collect() })
}

impl Suite {
    async fn ci(&mut self, name: &str, class: &str, criticality: i32, environment: &str) -> String {
        let ci = ConfigurationItem {
            display_name: name.into(),
            ci_class: class.into(),
            criticality,
            environment: environment.into(),
            ..Default::default()
        };
        self.cmdb
            .create_configuration_item(req(CreateConfigurationItemRequest {
                configuration_item: Some(ci),
                request_id: String::new(),
            }))
            .await
            .unwrap()
            .into_inner()
            .name
    }

    async fn create(&mut self, mut change: Change) -> Result<Change, tonic::Status> {
        // Standard changes come from a template: a general one unless the test names its own.
        if change.r#type == ChangeType::Standard as i32 && change.template.is_empty() {
            change.template = self.general_template().await;
        }
        self.changes
            .create_change(req(CreateChangeRequest { change: Some(change), request_id: String::new() }))
            .await
            .map(tonic::Response::into_inner)
    }

    async fn general_template(&mut self) -> String {
        let listed = self
            .changes
            .list_standard_change_templates(req(ListStandardChangeTemplatesRequest::default()))
            .await
            .unwrap()
            .into_inner();
        if let Some(t) = listed.standard_change_templates.into_iter().find(|t| t.display_name == "General") {
            return t.name;
        }
        self.changes
            .create_standard_change_template(req(CreateStandardChangeTemplateRequest {
                standard_change_template: Some(StandardChangeTemplate {
                    display_name: "General".into(),
                    implementation_plan: "Apply the documented procedure".into(),
                    backout_plan: "Restore the previous version".into(),
                    ..Default::default()
                }),
                request_id: String::new(),
            }))
            .await
            .unwrap()
            .into_inner()
            .name
    }

    async fn set_state(&mut self, name: &str, state: ChangeState) -> Result<Change, tonic::Status> {
        self.changes
            .update_change(req(UpdateChangeRequest {
                change: Some(Change { name: name.into(), state: state as i32, ..Default::default() }),
                update_mask: mask(&["state"]),
            }))
            .await
            .map(tonic::Response::into_inner)
    }
}

fn change(kind: ChangeType, cis: &[&str], start: i64, end: i64) -> Change {
    Change {
        r#type: kind as i32,
        short_description: "Upgrade the database".into(),
        configuration_items: cis.iter().map(|c| (*c).to_string()).collect(),
        planned_start_time: (start > 0).then(|| timestamp(start)),
        planned_end_time: (end > 0).then(|| timestamp(end)),
        ..Default::default()
    }
}

fn state(c: &Change) -> ChangeState {
    ChangeState::try_from(c.state).unwrap()
}

async fn normal_change_approvals_and_can_deploy(backend: TestBackend) {
    let mut s = start(backend).await;
    let db = s.ci("db-01", "server", 2, "production").await;
    let now = now_micros();
    let created = s.create(change(ChangeType::Normal, &[&db], now - HOUR, now + HOUR)).await.unwrap();
    assert_eq!(created.number, "CHG0000001");
    assert_eq!(state(&created), ChangeState::New);
    assert_eq!(created.risk_factors.len(), 6, "every factor explains itself");
    assert_eq!(created.required_approvals, 1);
    assert_eq!(created.risk, Risk::Low as i32);
    let name = created.name.clone();

    let err = s.set_state(&name, ChangeState::Implement).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("from NEW it can go to ASSESS, CANCELLED"), "{}", err.message());
    // Approving a change that is not awaiting approval.
    let err = s
        .changes
        .approve_change(as_user(
            ApproveChangeRequest { name: name.clone(), ..Default::default() },
            "bob",
            &["cab-member"],
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    s.set_state(&name, ChangeState::Assess).await.unwrap();
    s.set_state(&name, ChangeState::Authorize).await.unwrap();
    let err = s.set_state(&name, ChangeState::Scheduled).await.unwrap_err();
    assert!(err.message().contains("ApproveChange"), "{}", err.message());

    // Separation of duties and roles.
    let approve = |who: &str, roles: &[&str]| {
        as_user(
            ApproveChangeRequest { name: name.clone(), comment: "ok".into(), etag: String::new() },
            who,
            roles,
        )
    };
    let err = s.changes.approve_change(approve("alice", &["change-manager"])).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(err.message().contains("separation of duties"));
    let err = s.changes.approve_change(approve("bob", &["agent"])).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);

    // Before approval, a deployment is not covered.
    let can = |at: i64| {
        req(CanDeployRequest {
            configuration_item: db.clone(),
            environment: "production".into(),
            deploy_time: Some(timestamp(at)),
        })
    };
    let answer = s.changes.can_deploy(can(now)).await.unwrap().into_inner();
    assert!(!answer.allowed);
    assert!(answer.reasons.iter().any(|r| r.contains("awaits approval")), "{:?}", answer.reasons);

    let scheduled = s.changes.approve_change(approve("bob", &["cab-member"])).await.unwrap().into_inner();
    assert_eq!(state(&scheduled), ChangeState::Scheduled);
    assert_eq!(scheduled.approvals.len(), 1);
    assert_eq!(scheduled.approvals[0].approver, "bob");

    let answer = s.changes.can_deploy(can(now)).await.unwrap().into_inner();
    assert!(answer.allowed, "{:?}", answer.reasons);
    assert_eq!(answer.changes, vec![name.clone()]);
    let outside = s.changes.can_deploy(can(now + 3 * HOUR)).await.unwrap().into_inner();
    assert!(!outside.allowed);
    assert!(
        outside.reasons.iter().any(|r| r.contains("no authorised change covers")),
        "{:?}",
        outside.reasons
    );
    let wrong_env = s
        .changes
        .can_deploy(req(CanDeployRequest {
            configuration_item: db.clone(),
            environment: "staging".into(),
            deploy_time: None,
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(!wrong_env.allowed);

    let implementing = s.set_state(&name, ChangeState::Implement).await.unwrap();
    assert!(implementing.actual_start_time.is_some());
    let reviewed = s.set_state(&name, ChangeState::Review).await.unwrap();
    assert_eq!(reviewed.outcome, ChangeOutcome::Successful as i32);
    assert_eq!(state(&s.set_state(&name, ChangeState::Closed).await.unwrap()), ChangeState::Closed);

    // The feed says when the change was implemented.
    let mut feed = EventServiceClient::new(internal_channel(&s.server.url()).await.unwrap());
    let mut stream = feed
        .watch_events(req(WatchEventsRequest { after_sequence: 0, types: vec![] }))
        .await
        .unwrap()
        .into_inner();
    let mut implemented = false;
    while !implemented {
        let event = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
            .event
            .unwrap();
        let payload = ChangeChanged::decode(event.payload.unwrap().value.as_slice()).unwrap();
        implemented = payload.previous_state == ChangeState::Implement as i32
            && payload.change.as_ref().unwrap().state == ChangeState::Review as i32;
    }
}

async fn standard_changes_skip_authorisation(backend: TestBackend) {
    let mut s = start(backend).await;
    let web = s.ci("web-01", "server", 1, "").await;
    let now = now_micros();
    let created = s.create(change(ChangeType::Standard, &[&web], now, now + HOUR)).await.unwrap();
    assert_eq!(created.required_approvals, 0);
    let err = s.set_state(&created.name, ChangeState::Assess).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(
        state(&s.set_state(&created.name, ChangeState::Scheduled).await.unwrap()),
        ChangeState::Scheduled
    );
    let normal = s.create(change(ChangeType::Normal, &[&web], now + 2 * HOUR, now + 3 * HOUR)).await.unwrap();
    assert_eq!(
        s.set_state(&normal.name, ChangeState::Scheduled).await.unwrap_err().code(),
        Code::FailedPrecondition
    );
}

async fn bad_input_writes_nothing(backend: TestBackend) {
    let mut s = start(backend).await;
    let app = s.ci("app-01", "server", 1, "").await;
    let now = now_micros();
    let missing = format!("configurationItems/{}", uuid::Uuid::now_v7());
    let cases: Vec<(Change, Vec<&str>)> = vec![
        (change(ChangeType::Normal, &[&app], now + HOUR, now), vec!["change.planned_end_time"]),
        (change(ChangeType::Normal, &[&app], now, 0), vec!["change.planned_end_time"]),
        (change(ChangeType::Unspecified, &[&app], 0, 0), vec!["change.type"]),
        (change(ChangeType::Normal, &[&missing], 0, 0), vec!["change.configuration_items[0]"]),
        (
            Change { short_description: String::new(), ..change(ChangeType::Normal, &[], 0, 0) },
            vec!["change.short_description"],
        ),
        (
            Change {
                risk_answers: [("is_friday".to_string(), true)].into(),
                ..change(ChangeType::Normal, &[], 0, 0)
            },
            vec!["change.risk_answers[is_friday]"],
        ),
    ];
    for (bad, fields) in cases {
        let err = s.create(bad.clone()).await.unwrap_err();
        assert_eq!(violations(&err), fields, "{bad:?}");
    }
    let listed = s.changes.list_changes(req(ListChangesRequest::default())).await.unwrap().into_inner();
    assert!(listed.changes.is_empty());
    // A change without a window cannot leave NEW.
    let draft = s.create(change(ChangeType::Normal, &[&app], 0, 0)).await.unwrap();
    assert_eq!(
        s.set_state(&draft.name, ChangeState::Assess).await.unwrap_err().code(),
        Code::FailedPrecondition
    );
}

async fn risk_factors_conflicts_and_failure_history(backend: TestBackend) {
    let mut s = start(backend).await;
    let db = s.ci("db-core", "server", 4, "").await;
    let payments = s.ci("Payments", "business_service", 3, "").await;
    s.cmdb
        .create_relationship(req(CreateRelationshipRequest {
            relationship: Some(Relationship {
                source: payments.clone(),
                target: db.clone(),
                r#type: RelationshipType::DependsOn as i32,
                ..Default::default()
            }),
            request_id: String::new(),
        }))
        .await
        .unwrap();
    let now = now_micros();
    let first = s.create(change(ChangeType::Normal, &[&db], now + HOUR, now + 3 * HOUR)).await.unwrap();
    let factor = |c: &Change, name: &str| c.risk_factors.iter().find(|f| f.factor == name).cloned().unwrap();
    assert_eq!(factor(&first, "ci_criticality").points, 20);
    assert_eq!(factor(&first, "blast_radius").points, 8);
    assert_eq!(
        factor(&first, "blast_radius").explanation,
        "1 business service(s) depend on the affected CIs"
    );
    assert_eq!(first.risk_score, 20 + 8 + 5);
    assert_eq!(first.risk, Risk::Moderate as i32);
    assert!(first.conflicts.is_empty());

    // Overlapping on the same CI: a conflict, and more risk.
    let second = s.create(change(ChangeType::Normal, &[&db], now + 2 * HOUR, now + 4 * HOUR)).await.unwrap();
    assert_eq!(second.conflicts, vec![first.name.clone()]);
    assert_eq!(factor(&second, "schedule_conflicts").points, 15);
    assert_eq!(second.risk, Risk::High as i32);
    assert_eq!(second.required_approvals, 2, "high risk needs two approvals");
    // Not overlapping: no conflict.
    let later = s.create(change(ChangeType::Normal, &[&db], now + 5 * HOUR, now + 6 * HOUR)).await.unwrap();
    assert!(later.conflicts.is_empty());

    // A failed change counts against the next one on the same CI.
    let name = first.name.clone();
    s.set_state(&name, ChangeState::Assess).await.unwrap();
    s.set_state(&name, ChangeState::Authorize).await.unwrap();
    let approve = |who: &str| {
        as_user(
            ApproveChangeRequest { name: name.clone(), comment: String::new(), etag: String::new() },
            who,
            &["cab-member"],
        )
    };
    s.changes.approve_change(approve("bob")).await.unwrap();
    let current =
        s.changes.get_change(req(GetChangeRequest { name: name.clone() })).await.unwrap().into_inner();
    if state(&current) != ChangeState::Scheduled {
        s.changes.approve_change(approve("carol")).await.unwrap();
    }
    s.set_state(&name, ChangeState::Implement).await.unwrap();
    let failed = s
        .changes
        .update_change(req(UpdateChangeRequest {
            change: Some(Change {
                name: name.clone(),
                state: ChangeState::Failed as i32,
                outcome: ChangeOutcome::BackedOut as i32,
                ..Default::default()
            }),
            update_mask: mask(&["state", "outcome"]),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(failed.outcome, ChangeOutcome::BackedOut as i32);
    let next = s.create(change(ChangeType::Normal, &[&db], now + 10 * HOUR, now + 11 * HOUR)).await.unwrap();
    assert_eq!(factor(&next, "failure_history").points, 20);
    assert_eq!(factor(&next, "failure_history").explanation, "1 of 1 past changes on these CIs failed");

    // A rejection sends the change back to NEW for rework.
    let name = later.name.clone();
    s.set_state(&name, ChangeState::Assess).await.unwrap();
    s.set_state(&name, ChangeState::Authorize).await.unwrap();
    let err = s
        .changes
        .reject_change(as_user(
            RejectChangeRequest { name: name.clone(), comment: String::new(), etag: String::new() },
            "bob",
            &["cab-member"],
        ))
        .await
        .unwrap_err();
    assert_eq!(violations(&err), vec!["comment"]);
    let rejected = s
        .changes
        .reject_change(as_user(
            RejectChangeRequest {
                name: name.clone(),
                comment: "No backout plan".into(),
                etag: String::new(),
            },
            "bob",
            &["cab-member"],
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(state(&rejected), ChangeState::New);
    assert_eq!(rejected.approvals[0].decision, ApprovalDecision::Rejected as i32);
}

async fn blackout_windows_allow_only_emergencies(backend: TestBackend) {
    let mut s = start(backend).await;
    let app = s.ci("erp-01", "server", 2, "").await;
    let now = now_micros();
    let blackout = |start: i64, end: i64| {
        req(CreateBlackoutWindowRequest {
            blackout_window: Some(BlackoutWindow {
                display_name: "Quarter close".into(),
                reason: "Finance closes the books".into(),
                start_time: Some(timestamp(start)),
                end_time: Some(timestamp(end)),
                ..Default::default()
            }),
        })
    };
    let err = s.changes.create_blackout_window(blackout(now + HOUR, now)).await.unwrap_err();
    assert_eq!(violations(&err), vec!["blackout_window.end_time"]);
    let window =
        s.changes.create_blackout_window(blackout(now - HOUR, now + 3 * HOUR)).await.unwrap().into_inner();
    let listed = s
        .changes
        .list_blackout_windows(req(ListBlackoutWindowsRequest { include_past: false }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.blackout_windows.len(), 1);

    // A normal change inside the blackout cannot be authorised.
    let normal = s.create(change(ChangeType::Normal, &[&app], now, now + HOUR)).await.unwrap();
    s.set_state(&normal.name, ChangeState::Assess).await.unwrap();
    let err = s.set_state(&normal.name, ChangeState::Authorize).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("Quarter close"), "{}", err.message());
    // Nor a standard one scheduled.
    let standard = s.create(change(ChangeType::Standard, &[&app], now, now + HOUR)).await.unwrap();
    assert_eq!(
        s.set_state(&standard.name, ChangeState::Scheduled).await.unwrap_err().code(),
        Code::FailedPrecondition
    );
    // An emergency may, and may deploy (on another CI, so the refused changes do not conflict).
    let hot = s.ci("erp-02", "server", 2, "").await;
    let emergency = s.create(change(ChangeType::Emergency, &[&hot], now - HOUR, now + HOUR)).await.unwrap();
    s.set_state(&emergency.name, ChangeState::Assess).await.unwrap();
    s.set_state(&emergency.name, ChangeState::Authorize).await.unwrap();
    let approved = s
        .changes
        .approve_change(as_user(
            ApproveChangeRequest {
                name: emergency.name.clone(),
                comment: String::new(),
                etag: String::new(),
            },
            "bob",
            &["cab-member"],
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(state(&approved), ChangeState::Scheduled);
    let can = s
        .changes
        .can_deploy(req(CanDeployRequest {
            configuration_item: hot.clone(),
            environment: String::new(),
            deploy_time: None,
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(can.allowed, "{:?}", can.reasons);
    // The refused normal change's CI: covered by nothing authorised, and inside the blackout.
    let refused = s
        .changes
        .can_deploy(req(CanDeployRequest {
            configuration_item: app.clone(),
            environment: String::new(),
            deploy_time: None,
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(!refused.allowed);

    // Without the blackout, the normal change goes ahead.
    s.changes
        .delete_blackout_window(req(DeleteBlackoutWindowRequest { name: window.name.clone() }))
        .await
        .unwrap();
    assert_eq!(
        state(&s.set_state(&normal.name, ChangeState::Authorize).await.unwrap()),
        ChangeState::Authorize
    );
}

/// Runs git in `dir` with a fixed identity and commit time, failing the test on error.
fn git(dir: &std::path::Path, args: &[&str], author: &str, time: &str) -> String {
    let (name, email) = author.split_once(" <").unwrap();
    let output = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", name)
        .env("GIT_AUTHOR_EMAIL", email.trim_end_matches('>'))
        .env("GIT_COMMITTER_NAME", "CI Bot")
        .env("GIT_COMMITTER_EMAIL", "ci@example.com")
        .env("GIT_AUTHOR_DATE", time)
        .env("GIT_COMMITTER_DATE", time)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .output()
        .unwrap();
    assert!(output.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap().trim().to_string()
}

async fn changesets_from_a_git_repository(backend: TestBackend) {
    let mut s = start(backend).await;
    let web = s.ci("web-01", "server", 1, "").await;
    let now = now_micros();
    // CHG0000001: a standard change, authorised by its template; CHG0000002: a normal change
    // still being assessed.
    let authorised = s.create(change(ChangeType::Standard, &[&web], now, now + HOUR)).await.unwrap();
    s.set_state(&authorised.name, ChangeState::Scheduled).await.unwrap();
    let assessed = s.create(change(ChangeType::Normal, &[&web], now, now + HOUR)).await.unwrap();
    s.set_state(&assessed.name, ChangeState::Assess).await.unwrap();
    assert_eq!((authorised.number.as_str(), assessed.number.as_str()), ("CHG0000001", "CHG0000002"));

    // A real repository with four commits.
    let repo = tempfile::tempdir().unwrap();
    let dir = repo.path();
    git(dir, &["init", "-q", "-b", "main"], "Ann Lee <ann@example.com>", "2026-03-01T10:00:00Z");
    let commits = [
        ("pool.conf", "CHG0000001: raise the pool size", "Ann Lee <ann@example.com>", "2026-03-01T10:00:00Z"),
        ("hotfix.sh", "hotfix straight to main", "Bob Stone <bob@example.com>", "2026-03-02T10:00:00Z"),
        ("README", "Typo, refs chg0009999", "Ann Lee <ann@example.com>", "2026-03-03T10:00:00Z"),
        (
            "schema.sql",
            "[CHG0000002] new index\n\nStill under review.",
            "Cy Doe <cy@example.com>",
            "2026-03-04T10:00:00Z",
        ),
    ];
    for (file, message, author, time) in commits {
        std::fs::write(dir.join(file), message).unwrap();
        git(dir, &["add", file], author, time);
        git(dir, &["commit", "-q", "-m", &message.replace("\\n", "\n")], author, time);
    }
    let first_hash = git(dir, &["rev-list", "--max-parents=0", "HEAD"], "A <a@b>", "2026-03-01T10:00:00Z");

    let imported = itsm_change::import::git_history(dir, None, None).unwrap();
    assert_eq!(imported.len(), 4);
    assert_eq!(imported[0].revision, first_hash, "oldest first");
    assert_eq!(imported[0].author, "Ann Lee <ann@example.com>");
    assert_eq!(imported[0].committer, "CI Bot <ci@example.com>");
    assert_eq!(imported[0].files, ["pool.conf"]);
    assert_eq!(imported[0].branch, "main");
    assert_eq!(imported[3].message, "[CHG0000002] new index\n\nStill under review.");
    let mut recorded = Vec::new();
    for changeset in &imported {
        let record = RecordChangesetRequest { changeset: Some(changeset.clone()), changes: vec![] };
        recorded.push(s.changes.record_changeset(req(record)).await.unwrap().into_inner());
    }
    let auth = |c: &Changeset| ChangesetAuthorization::try_from(c.authorization).unwrap();
    assert_eq!(auth(&recorded[0]), ChangesetAuthorization::Authorized);
    assert_eq!(recorded[0].changes, ["changes/CHG0000001"]);
    assert_eq!(auth(&recorded[1]), ChangesetAuthorization::Unlinked);
    // An unknown change number is kept and flagged, never dropped.
    assert_eq!(auth(&recorded[2]), ChangesetAuthorization::Unlinked);
    assert_eq!(recorded[2].unknown_changes, ["changes/CHG0009999"]);
    assert!(recorded[2].authorization_reason.contains("CHG0009999"));
    assert_eq!(auth(&recorded[3]), ChangesetAuthorization::Unauthorized);
    assert!(
        recorded[3].authorization_reason.contains("CHG0000002 is ASSESS"),
        "{}",
        recorded[3].authorization_reason
    );

    // Importing again changes nothing: one changeset per repository and revision.
    let again = RecordChangesetRequest { changeset: Some(imported[0].clone()), changes: vec![] };
    assert_eq!(s.changes.record_changeset(req(again)).await.unwrap().into_inner().name, recorded[0].name);

    // By change and by author.
    let list = |filter: &str| ListChangesetsRequest { filter: filter.into(), ..Default::default() };
    let by_change = s.changes.list_changesets(req(list("changes = \"changes/CHG0000001\""))).await.unwrap();
    assert_eq!(
        by_change.into_inner().changesets.iter().map(|c| c.name.clone()).collect::<Vec<_>>(),
        [recorded[0].name.clone()]
    );
    let by_author =
        s.changes.list_changesets(req(list("author = \"Ann Lee <ann@example.com>\""))).await.unwrap();
    let names: Vec<String> = by_author.into_inner().changesets.into_iter().map(|c| c.name).collect();
    assert_eq!(names, [recorded[2].name.clone(), recorded[0].name.clone()], "newest first");

    // The unauthorised-change report, newest first, then after an explicit link.
    let report = |s: &mut Suite| {
        let mut client = s.changes.clone();
        async move {
            client
                .list_unauthorized_changesets(req(ListUnauthorizedChangesetsRequest::default()))
                .await
                .unwrap()
                .into_inner()
                .changesets
                .into_iter()
                .map(|c| c.revision)
                .collect::<Vec<_>>()
        }
    };
    let revisions =
        |indexes: &[usize]| indexes.iter().map(|i| imported[*i].revision.clone()).collect::<Vec<_>>();
    assert_eq!(report(&mut s).await, revisions(&[3, 2, 1]));
    let linked = s
        .changes
        .link_changeset(req(LinkChangesetRequest {
            name: recorded[1].name.clone(),
            change: authorised.name.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(auth(&linked), ChangesetAuthorization::Authorized);
    assert_eq!(report(&mut s).await, revisions(&[3, 2]));
    // Once CHG0000002 is authorised, its changeset is covered too.
    s.set_state(&assessed.name, ChangeState::Authorize).await.unwrap();
    s.changes
        .approve_change(as_user(
            ApproveChangeRequest { name: assessed.name.clone(), comment: "ok".into(), etag: String::new() },
            "bob",
            &["cab-member"],
        ))
        .await
        .unwrap();
    assert_eq!(report(&mut s).await, revisions(&[2]));
    let window = ListUnauthorizedChangesetsRequest {
        start_time: Some(timestamp(1_772_000_000_000_000)),
        end_time: Some(timestamp(1_700_000_000_000_000)),
        ..Default::default()
    };
    assert_eq!(
        violations(&s.changes.list_unauthorized_changesets(req(window)).await.unwrap_err()),
        ["end_time"]
    );

    // Bad input.
    let err = s
        .changes
        .record_changeset(req(RecordChangesetRequest {
            changeset: Some(Changeset { message: "x".into(), ..Default::default() }),
            changes: vec!["CHG0000001".into()],
        }))
        .await
        .unwrap_err();
    assert_eq!(
        violations(&err),
        [
            "changes[0]",
            "changeset.author",
            "changeset.commit_time",
            "changeset.repository",
            "changeset.revision"
        ]
    );
    let err = s
        .changes
        .link_changeset(req(LinkChangesetRequest { name: recorded[1].name.clone(), change: "CHG1".into() }))
        .await
        .unwrap_err();
    assert_eq!(violations(&err), ["change"]);
    // Another tenant sees none of it.
    let theirs = with_context(GetChangesetRequest { name: recorded[0].name.clone() }, "globex", "gus");
    assert_eq!(s.changes.get_changeset(theirs).await.unwrap_err().code(), Code::NotFound);
}

async fn implemented_changes_are_recorded_in_the_cmdb_history(backend: TestBackend) {
    use itsm_proto::cmdb::ListConfigurationItemHistoryRequest;
    use itsm_proto::common::ChangeSource;
    let mut s = start(backend).await;
    let web = s.ci("web-01", "server", 1, "").await;
    let db = s.ci("db-01", "server", 1, "").await;
    let now = now_micros();
    let done = s.create(change(ChangeType::Standard, &[&web, &db], now, now + HOUR)).await.unwrap();
    let failed =
        s.create(change(ChangeType::Standard, &[&db], now + 2 * HOUR, now + 3 * HOUR)).await.unwrap();
    for (c, end) in [(&done, ChangeState::Review), (&failed, ChangeState::Failed)] {
        s.set_state(&c.name, ChangeState::Scheduled).await.unwrap();
        s.set_state(&c.name, ChangeState::Implement).await.unwrap();
        s.set_state(&c.name, end).await.unwrap();
    }
    let history = |s: &Suite, ci: &str| {
        let mut cmdb = s.cmdb.clone();
        let request = req(ListConfigurationItemHistoryRequest { name: ci.to_string(), ..Default::default() });
        async move { cmdb.list_configuration_item_history(request).await.unwrap().into_inner().entries }
    };
    let by_change = |entries: &[itsm_proto::common::HistoryEntry]| {
        entries
            .iter()
            .filter(|e| e.source == ChangeSource::Change as i32)
            .map(|e| (e.source_reference.clone(), e.action.clone(), e.actor.clone()))
            .collect::<Vec<_>>()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let web_entries = by_change(&history(&s, &web).await);
        let db_entries = by_change(&history(&s, &db).await);
        if web_entries.len() == 1 && db_entries.len() == 2 {
            assert_eq!(web_entries, [(done.name.clone(), "change implemented".into(), "alice".into())]);
            assert_eq!(
                db_entries,
                [
                    (done.name.clone(), "change implemented".into(), "alice".into()),
                    (failed.name.clone(), "change failed".into(), "alice".into())
                ]
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "CMDB history: web {web_entries:?}, db {db_entries:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The CI's `version` attribute and the releases named in its history.
async fn ci_version(s: &Suite, ci: &str) -> (Option<String>, Vec<String>) {
    use itsm_proto::cmdb::{GetConfigurationItemRequest, ListConfigurationItemHistoryRequest};
    use itsm_proto::common::ChangeSource;
    let mut cmdb = s.cmdb.clone();
    let item = cmdb
        .get_configuration_item(req(GetConfigurationItemRequest { name: ci.into(), ..Default::default() }))
        .await
        .unwrap()
        .into_inner();
    let version =
        item.attributes.as_ref().and_then(|a| a.fields.get("version")).and_then(|v| match &v.kind {
            Some(prost_types::value::Kind::StringValue(s)) => Some(s.clone()),
            _ => None,
        });
    let history = cmdb
        .list_configuration_item_history(req(ListConfigurationItemHistoryRequest {
            name: ci.into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .entries;
    let releases = history
        .iter()
        .filter(|e| e.source == ChangeSource::Release as i32)
        .map(|e| e.source_reference.clone())
        .collect();
    (version, releases)
}

async fn wait_for_version(s: &Suite, ci: &str, expected: Option<&str>, release_entries: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (version, releases) = ci_version(s, ci).await;
        if version.as_deref() == expected && releases.len() == release_entries {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{ci}: version {version:?}, release history {releases:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn releases_deploy_stage_by_stage_through_gates(backend: TestBackend) {
    let mut s = start(backend).await;
    let staging = s.ci("checkout-staging", "application", 1, "staging").await;
    let production = s.ci("checkout-prod", "application", 2, "production").await;
    let now = now_micros();
    let authorised = s
        .create(change(ChangeType::Standard, &[&staging, &production], now - HOUR, now + HOUR))
        .await
        .unwrap();
    s.set_state(&authorised.name, ChangeState::Scheduled).await.unwrap();
    let pending =
        s.create(change(ChangeType::Normal, &[&staging], now + 5 * HOUR, now + 6 * HOUR)).await.unwrap();
    let digest = "ab".repeat(32);
    let release = |changes: Vec<String>| Release {
        r#type: ReleaseType::Minor as i32,
        version: "2026.3.1".into(),
        short_description: "Checkout 2026.3.1".into(),
        changes,
        configuration_items: vec![staging.clone(), production.clone()],
        environments: vec!["staging".into(), "production".into()],
        artefacts: vec![Artefact {
            name: "checkout".into(),
            version: "2026.3.1".into(),
            sha256: digest.clone(),
            source: "oci://registry.example.com/shop/checkout".into(),
        }],
        ..Default::default()
    };
    let create = |r: Release| CreateReleaseRequest { release: Some(r), request_id: String::new() };

    // Bad input: format first, then references.
    let mut bad = release(vec!["CHG1".into()]);
    bad.artefacts[0].sha256 = "not-a-digest".into();
    bad.environments = vec!["staging".into(), "staging".into()];
    let err = s.releases.create_release(req(create(bad))).await.unwrap_err();
    assert_eq!(
        violations(&err),
        ["release.artefacts[0].sha256", "release.changes[0]", "release.environments[1]"]
    );
    let err =
        s.releases.create_release(req(create(release(vec!["changes/CHG0000099".into()])))).await.unwrap_err();
    assert_eq!(violations(&err), ["release.changes[0]"]);

    let created = s
        .releases
        .create_release(req(create(release(vec![authorised.name.clone()]))))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((created.number.as_str(), created.state), ("RLS0000001", ReleaseState::Planned as i32));
    assert_eq!(created.rollouts.len(), 2);
    let name = created.name.clone();
    let gates = |env: &str| CheckReleaseGatesRequest { name: name.clone(), environment: env.into() };
    let deploy =
        |env: &str| DeployReleaseRequest { name: name.clone(), environment: env.into(), etag: String::new() };
    let failed = |r: CheckReleaseGatesResponse| {
        r.gates.into_iter().filter(|g| !g.passed).map(|g| g.gate).collect::<Vec<_>>()
    };

    let err = s.releases.deploy_release(req(deploy("staging"))).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(
        err.message().contains("state:") && err.message().contains("test_evidence:"),
        "{}",
        err.message()
    );
    let set_state = |state: ReleaseState| UpdateReleaseRequest {
        release: Some(Release { name: name.clone(), state: state as i32, ..Default::default() }),
        update_mask: mask(&["state"]),
    };
    s.releases.update_release(req(set_state(ReleaseState::Build))).await.unwrap();
    s.releases.update_release(req(set_state(ReleaseState::Test))).await.unwrap();
    let err = s.releases.update_release(req(set_state(ReleaseState::Deploy))).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("DeployRelease"), "{}", err.message());

    assert_eq!(
        failed(s.releases.check_release_gates(req(gates("staging"))).await.unwrap().into_inner()),
        ["test_evidence"]
    );
    let evidence = AttachTestEvidenceRequest {
        name: name.clone(),
        evidence: Some(TestEvidence {
            description: "Regression suite: 1,204 passed".into(),
            url: "https://ci.example.com/runs/981".into(),
            ..Default::default()
        }),
    };
    s.releases.attach_test_evidence(req(evidence)).await.unwrap();
    assert_eq!(
        failed(s.releases.check_release_gates(req(gates("production"))).await.unwrap().into_inner()),
        ["previous_stage"]
    );
    let err = s.releases.deploy_release(req(deploy("production"))).await.unwrap_err();
    assert!(err.message().contains("previous stage \"staging\" is not deployed"), "{}", err.message());

    let deployed = s.releases.deploy_release(req(deploy("staging"))).await.unwrap().into_inner();
    assert_eq!(deployed.state, ReleaseState::Deploy as i32);
    assert_eq!(deployed.rollouts[0].status, RolloutStatus::Deployed as i32);
    assert_eq!(deployed.rollouts[0].deployed_by, "alice");
    // The CMDB takes the version on the staging CI only, naming the release.
    wait_for_version(&s, &staging, Some("2026.3.1"), 1).await;
    assert_eq!(ci_version(&s, &production).await, (None, vec![]));

    // Content is fixed once deployed.
    let relabel = UpdateReleaseRequest {
        release: Some(Release { name: name.clone(), version: "2026.3.2".into(), ..Default::default() }),
        update_mask: mask(&["version"]),
    };
    assert_eq!(s.releases.update_release(req(relabel)).await.unwrap_err().code(), Code::FailedPrecondition);

    s.releases.deploy_release(req(deploy("production"))).await.unwrap();
    wait_for_version(&s, &production, Some("2026.3.1"), 1).await;
    let rollback = |reason: &str| RollbackReleaseRequest {
        name: name.clone(),
        environment: "production".into(),
        reason: reason.into(),
        etag: String::new(),
    };
    assert_eq!(violations(&s.releases.rollback_release(req(rollback(""))).await.unwrap_err()), ["reason"]);
    let rolled =
        s.releases.rollback_release(req(rollback("checkout errors up 4x"))).await.unwrap().into_inner();
    assert_eq!(rolled.rollouts[1].status, RolloutStatus::RolledBack as i32);
    assert_eq!(rolled.rollouts[1].rollback_reason, "checkout errors up 4x");
    // The production CI had no version before the release: it has none again.
    wait_for_version(&s, &production, None, 2).await;
    let err = s.releases.rollback_release(req(rollback("again"))).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("deployed to: [staging]"), "{}", err.message());
    let err = s
        .releases
        .delete_release(req(DeleteReleaseRequest { name: name.clone(), etag: String::new() }))
        .await;
    assert_eq!(err.unwrap_err().code(), Code::FailedPrecondition);

    // A release bundling a change that is not authorised fails that gate.
    let other = s
        .releases
        .create_release(req(create(release(vec![pending.name.clone()]))))
        .await
        .unwrap()
        .into_inner();
    let check = CheckReleaseGatesRequest { name: other.name.clone(), environment: "staging".into() };
    let answer = s.releases.check_release_gates(req(check)).await.unwrap().into_inner();
    let gate = answer.gates.iter().find(|g| g.gate == "changes_authorised").unwrap();
    assert!(!gate.passed && gate.detail.contains("is NEW"), "{gate:?}");
    // Another tenant sees none of it.
    let theirs = with_context(GetReleaseRequest { name: name.clone() }, "globex", "gus");
    assert_eq!(s.releases.get_release(theirs).await.unwrap_err().code(), Code::NotFound);
}

async fn maintenance_windows_questionnaire_cab_and_review(backend: TestBackend) {
    let mut suite = start(backend).await;
    let payments = suite.ci("Payments", "business_service", 3, "").await;
    let db = suite.ci("payments-db", "database", 2, "production").await;
    suite
        .cmdb
        .create_relationship(req(CreateRelationshipRequest {
            relationship: Some(Relationship {
                source: payments.clone(),
                target: db.clone(),
                r#type: RelationshipType::DependsOn as i32,
                ..Default::default()
            }),
            request_id: String::new(),
        }))
        .await
        .unwrap();
    let t0 = now_micros() + 24 * HOUR;

    // The service's maintenance window: a change to its database fits it or needs one more approval.
    let window = suite
        .changes
        .create_maintenance_window(req(CreateMaintenanceWindowRequest {
            maintenance_window: Some(MaintenanceWindow {
                display_name: "Payments Sunday window".into(),
                configuration_items: vec![payments.clone()],
                start_time: Some(timestamp(t0 + 10 * HOUR)),
                end_time: Some(timestamp(t0 + 14 * HOUR)),
                ..Default::default()
            }),
            request_id: String::new(),
        }))
        .await
        .unwrap()
        .into_inner();
    let err = suite
        .changes
        .create_maintenance_window(req(CreateMaintenanceWindowRequest {
            maintenance_window: Some(MaintenanceWindow {
                display_name: "backwards".into(),
                configuration_items: vec![payments.clone()],
                start_time: Some(timestamp(t0 + 2 * HOUR)),
                end_time: Some(timestamp(t0 + HOUR)),
                ..Default::default()
            }),
            request_id: String::new(),
        }))
        .await
        .unwrap_err();
    assert_eq!(violations(&err), ["maintenance_window.end_time"]);
    let inside =
        suite.create(change(ChangeType::Normal, &[&db], t0 + 11 * HOUR, t0 + 12 * HOUR)).await.unwrap();
    let outside =
        suite.create(change(ChangeType::Normal, &[&db], t0 + 20 * HOUR, t0 + 21 * HOUR)).await.unwrap();
    assert_eq!(inside.business_services, std::slice::from_ref(&payments));
    assert!(!inside.outside_maintenance_window);
    assert!(outside.outside_maintenance_window);
    assert_eq!(
        outside.required_approvals,
        inside.required_approvals + 1,
        "outside the window: one more approval"
    );
    let listed = suite
        .changes
        .list_maintenance_windows(req(ListMaintenanceWindowsRequest {
            include_past: false,
            configuration_item: payments.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.maintenance_windows.len(), 1);
    assert_eq!(listed.maintenance_windows[0].name, window.name);

    // The tenant's own questionnaire replaces the built-in questions.
    let built_in =
        suite.changes.get_risk_questionnaire(req(GetRiskQuestionnaireRequest {})).await.unwrap().into_inner();
    assert!(built_in.built_in);
    assert_eq!(built_in.questions.len(), 3);
    let question = |id: &str, points: i32| RiskQuestion {
        id: id.into(),
        question: "Does it touch card payments?".into(),
        risky_answer: true,
        points,
    };
    let err = suite
        .changes
        .update_risk_questionnaire(req(UpdateRiskQuestionnaireRequest {
            risk_questionnaire: Some(RiskQuestionnaire {
                questions: vec![question("touches_cards", 30), question("touches_cards", 0)],
                ..Default::default()
            }),
        }))
        .await
        .unwrap_err();
    assert_eq!(
        violations(&err),
        ["risk_questionnaire.questions[1].id", "risk_questionnaire.questions[1].points"]
    );
    let saved = suite
        .changes
        .update_risk_questionnaire(req(UpdateRiskQuestionnaireRequest {
            risk_questionnaire: Some(RiskQuestionnaire {
                questions: vec![question("touches_cards", 30)],
                ..Default::default()
            }),
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(!saved.built_in);
    // (a window of its own: an overlapping change would conflict with `inside`)
    let mut answered = change(ChangeType::Normal, &[&db], t0 + 30 * HOUR, t0 + 31 * HOUR);
    answered.risk_answers.insert("touches_cards".into(), true);
    let answered = suite.create(answered).await.unwrap();
    let factor = answered.risk_factors.iter().find(|f| f.factor == "questionnaire").unwrap();
    assert_eq!(factor.points, 30, "{factor:?}");
    let mut stale = change(ChangeType::Normal, &[&db], t0 + 11 * HOUR, t0 + 12 * HOUR);
    stale.risk_answers.insert("tested_in_staging".into(), true);
    let err = suite.create(stale).await.unwrap_err();
    assert_eq!(violations(&err), ["change.risk_answers[tested_in_staging]"]);

    // A CAB meeting decides the change on its agenda; an emergency CAB only emergency changes.
    for s in [ChangeState::Assess, ChangeState::Authorize] {
        suite.set_state(&inside.name, s).await.unwrap();
    }
    let meeting = |agenda: Vec<String>, emergency: bool| CreateCabMeetingRequest {
        cab_meeting: Some(CabMeeting {
            display_name: "Weekly CAB".into(),
            start_time: Some(timestamp(now_micros())),
            emergency,
            agenda,
            attendees: vec!["carol".into(), "dave".into()],
            ..Default::default()
        }),
        request_id: String::new(),
    };
    let err =
        suite.changes.create_cab_meeting(req(meeting(vec![outside.name.clone()], false))).await.unwrap_err();
    assert_eq!(violations(&err), ["cab_meeting.agenda[0]"], "the change is not awaiting approval");
    let err =
        suite.changes.create_cab_meeting(req(meeting(vec![inside.name.clone()], true))).await.unwrap_err();
    assert_eq!(violations(&err), ["cab_meeting.agenda[0]"], "an emergency CAB takes emergency changes only");
    let cab = suite
        .changes
        .create_cab_meeting(req(meeting(vec![inside.name.clone()], false)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cab.state, CabMeetingState::Scheduled as i32);
    let decide = |change: &str, decision: CabDecisionKind, comment: &str| RecordCabDecisionRequest {
        cab_meeting: cab.name.clone(),
        change: change.into(),
        decision: decision as i32,
        comment: comment.into(),
    };
    let err = suite
        .changes
        .record_cab_decision(as_user(
            decide(&inside.name, CabDecisionKind::Defer, ""),
            "carol",
            &["cab-member"],
        ))
        .await
        .unwrap_err();
    assert_eq!(violations(&err), ["comment"]);
    let err = suite
        .changes
        .record_cab_decision(as_user(
            decide(&outside.name, CabDecisionKind::Approve, ""),
            "carol",
            &["cab-member"],
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "not on the agenda: {err:?}");
    let err = suite
        .changes
        .record_cab_decision(as_user(
            decide(&inside.name, CabDecisionKind::Approve, ""),
            "alice",
            &["cab-member"],
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "the requester cannot approve: {err:?}");
    let decided = suite
        .changes
        .record_cab_decision(as_user(
            decide(&inside.name, CabDecisionKind::Approve, "low risk"),
            "carol",
            &["cab-member"],
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(decided.state, CabMeetingState::Held as i32);
    assert_eq!(decided.decisions.len(), 1);
    assert_eq!(decided.decisions[0].decided_by, "carol");
    let approved = suite
        .changes
        .get_change(req(GetChangeRequest { name: inside.name.clone() }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(approved.approvals.len(), 1);
    assert!(approved.approvals[0].comment.starts_with("CAB Weekly CAB"), "{:?}", approved.approvals);
    assert_eq!(state(&approved), ChangeState::Scheduled, "one approval was required");

    // CanDeploy for the business service: the change to its database covers it in the window.
    let can_deploy = |at: i64| CanDeployRequest {
        configuration_item: payments.clone(),
        environment: String::new(),
        deploy_time: Some(timestamp(at)),
    };
    let yes =
        suite.changes.can_deploy(req(can_deploy(t0 + 11 * HOUR + HOUR / 2))).await.unwrap().into_inner();
    assert!(yes.allowed, "{:?}", yes.reasons);
    assert!(yes.reasons.iter().any(|r| r.contains(&inside.name)), "{:?}", yes.reasons);
    let no = suite.changes.can_deploy(req(can_deploy(t0 + 15 * HOUR))).await.unwrap().into_inner();
    assert!(!no.allowed);
    assert!(no.reasons.iter().any(|r| r.starts_with("no authorised change covers")), "{:?}", no.reasons);

    // Post-implementation review: only once implemented; the success report counts it.
    let review = |name: &str| ReviewChangeRequest {
        name: name.into(),
        review: Some(PostImplementationReview {
            notes: "Done in 40 minutes; one alert fired".into(),
            caused_incidents: vec!["incidents/INC0000042".into()],
            ..Default::default()
        }),
        etag: String::new(),
    };
    let err = suite.changes.review_change(req(review(&inside.name))).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    for s in [ChangeState::Implement, ChangeState::Review] {
        suite.set_state(&inside.name, s).await.unwrap();
    }
    let bad = ReviewChangeRequest {
        review: Some(PostImplementationReview {
            notes: "x".into(),
            caused_incidents: vec!["INC42".into()],
            ..Default::default()
        }),
        ..review(&inside.name)
    };
    assert_eq!(
        violations(&suite.changes.review_change(req(bad)).await.unwrap_err()),
        ["review.caused_incidents[0]"]
    );
    let reviewed = suite.changes.review_change(req(review(&inside.name))).await.unwrap().into_inner();
    let pir = reviewed.review.unwrap();
    assert_eq!((pir.caused_incidents.len(), pir.reviewer.as_str()), (1, "alice"));
    let report = suite
        .changes
        .get_change_success_report(req(GetChangeSuccessReportRequest::default()))
        .await
        .unwrap()
        .into_inner();
    let overall = report.overall.unwrap();
    assert_eq!((overall.implemented, overall.successful, overall.incidents_caused), (1, 1, 1));
    assert!((overall.success_rate_percent - 100.0).abs() < 1e-9);
    let by_service = report.by_business_service.iter().find(|r| r.key == payments).unwrap();
    assert_eq!(by_service.implemented, 1);
}

async fn conflicts_through_the_impact_graph_reach_both_changes(backend: TestBackend) {
    let mut suite = start(backend).await;
    let db = suite.ci("orders-db", "database", 2, "").await;
    let app = suite.ci("orders-app", "application", 2, "").await;
    let other = suite.ci("billing-app", "application", 2, "").await;
    suite
        .cmdb
        .create_relationship(req(CreateRelationshipRequest {
            relationship: Some(Relationship {
                source: app.clone(),
                target: db.clone(),
                r#type: RelationshipType::DependsOn as i32,
                ..Default::default()
            }),
            request_id: String::new(),
        }))
        .await
        .unwrap();
    let t0 = now_micros() + 24 * HOUR;
    let get = |suite: &mut Suite, name: String| {
        let mut changes = suite.changes.clone();
        async move { changes.get_change(req(GetChangeRequest { name })).await.unwrap().into_inner() }
    };
    // The database change's impact graph holds the app: a change to the app in an overlapping
    // window conflicts with it, and the earlier change's list shows the later one too.
    let on_db = suite.create(change(ChangeType::Normal, &[&db], t0 + HOUR, t0 + 3 * HOUR)).await.unwrap();
    let on_app =
        suite.create(change(ChangeType::Normal, &[&app], t0 + 2 * HOUR, t0 + 4 * HOUR)).await.unwrap();
    assert_eq!(
        on_app.conflicts,
        std::slice::from_ref(&on_db.name),
        "the app is in the db change's impact graph"
    );
    assert_eq!(get(&mut suite, on_db.name.clone()).await.conflicts, std::slice::from_ref(&on_app.name));
    let factor = on_app.risk_factors.iter().find(|f| f.factor == "schedule_conflicts").unwrap();
    assert_eq!(factor.points, 15);
    // Unrelated CI or a later window: no conflict.
    let unrelated =
        suite.create(change(ChangeType::Normal, &[&other], t0 + HOUR, t0 + 3 * HOUR)).await.unwrap();
    assert!(unrelated.conflicts.is_empty());
    let later =
        suite.create(change(ChangeType::Normal, &[&app], t0 + 10 * HOUR, t0 + 11 * HOUR)).await.unwrap();
    assert!(later.conflicts.is_empty());
    // On demand, with why: a proposed change to the database meets the app change in its impact
    // graph; one to the app sits in the database change's impact graph.
    let check = |cis: Vec<String>, from: i64, to: i64, exclude: &str| CheckChangeConflictsRequest {
        configuration_items: cis,
        planned_start_time: Some(timestamp(from)),
        planned_end_time: Some(timestamp(to)),
        exclude_change: exclude.into(),
    };
    let found = suite
        .changes
        .check_change_conflicts(req(check(
            vec![db.clone()],
            t0 + 2 * HOUR + HOUR / 2,
            t0 + 3 * HOUR,
            &on_db.name,
        )))
        .await
        .unwrap()
        .into_inner()
        .conflicts;
    assert_eq!(
        found,
        [ChangeConflict {
            change: on_app.name.clone(),
            kind: ConflictKind::InOurImpactGraph as i32,
            configuration_item: app.clone()
        }]
    );
    let found = suite
        .changes
        .check_change_conflicts(req(check(
            vec![app.clone()],
            t0 + HOUR + HOUR / 2,
            t0 + HOUR + HOUR * 3 / 4,
            "",
        )))
        .await
        .unwrap()
        .into_inner()
        .conflicts;
    assert_eq!(
        found,
        [ChangeConflict {
            change: on_db.name.clone(),
            kind: ConflictKind::InTheirImpactGraph as i32,
            configuration_item: app.clone()
        }]
    );
    let err = suite
        .changes
        .check_change_conflicts(req(check(vec![], t0 + 2 * HOUR, t0 + HOUR, "")))
        .await
        .unwrap_err();
    assert_eq!(violations(&err), ["configuration_items", "planned_end_time"]);

    // The change calendar: changes planned in a week, by start.
    let rfc = |t: i64| chrono::DateTime::<chrono::Utc>::from_timestamp_micros(t).unwrap().to_rfc3339();
    let calendar = suite
        .changes
        .list_changes(req(ListChangesRequest {
            filter: format!(
                "planned_start_time < \"{}\" AND planned_end_time > \"{}\"",
                rfc(t0 + 5 * HOUR),
                rfc(t0)
            ),
            order_by: "planned_start_time".into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    let mut names: Vec<String> = calendar.changes.iter().map(|c| c.name.clone()).collect();
    assert_eq!(names.last(), Some(&on_app.name), "ordered by start");
    names.sort();
    let mut expected = vec![on_db.name.clone(), on_app.name.clone(), unrelated.name.clone()];
    expected.sort();
    assert_eq!(names, expected, "the later change is outside the week shown");

    // Moving the app change away clears it from the db change's list.
    let moved = suite
        .changes
        .update_change(req(UpdateChangeRequest {
            change: Some(Change {
                name: on_app.name.clone(),
                planned_start_time: Some(timestamp(t0 + 20 * HOUR)),
                planned_end_time: Some(timestamp(t0 + 21 * HOUR)),
                ..Default::default()
            }),
            update_mask: mask(&["planned_start_time", "planned_end_time"]),
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(moved.conflicts.is_empty());
    assert!(get(&mut suite, on_db.name.clone()).await.conflicts.is_empty());
}

async fn approval_policies_any_all_and_majority(backend: TestBackend) {
    let mut suite = start(backend).await;
    let ci = suite.ci("ledger", "application", 2, "").await;
    let t0 = now_micros() + 24 * HOUR;
    let built_in =
        suite.changes.get_approval_policy(req(GetApprovalPolicyRequest {})).await.unwrap().into_inner();
    assert!(built_in.built_in);
    let set = |rules: Vec<ApprovalPolicyRule>| UpdateApprovalPolicyRequest {
        approval_policy: Some(ApprovalPolicy { rules, ..Default::default() }),
    };
    let rule = |rule: ApprovalRule, groups: &[&str], count: i32| ApprovalPolicyRule {
        r#type: ChangeType::Normal as i32,
        min_risk: 0,
        approver_groups: groups.iter().map(|g| (*g).to_string()).collect(),
        rule: rule as i32,
        count,
    };
    let err = suite
        .changes
        .update_approval_policy(req(set(vec![rule(ApprovalRule::Any, &["cab-member"], 0)])))
        .await
        .unwrap_err();
    assert_eq!(violations(&err), ["approval_policy.rules[0].count"]);
    let err = suite
        .changes
        .update_approval_policy(req(set(vec![rule(ApprovalRule::All, &["Not A Role"], 0)])))
        .await
        .unwrap_err();
    assert_eq!(violations(&err), ["approval_policy.rules[0].approver_groups"]);

    // ALL: one approval from each group.
    suite
        .changes
        .update_approval_policy(req(set(vec![rule(ApprovalRule::All, &["cab-member", "security"], 0)])))
        .await
        .unwrap();
    let awaiting = |suite: &mut Suite, start: i64| {
        let mut changes = suite.changes.clone();
        let ci = ci.clone();
        async move {
            let created = changes
                .create_change(req(CreateChangeRequest {
                    change: Some(change(ChangeType::Normal, &[&ci], start, start + HOUR)),
                    request_id: String::new(),
                }))
                .await
                .unwrap()
                .into_inner();
            for s in [ChangeState::Assess, ChangeState::Authorize] {
                changes
                    .update_change(req(UpdateChangeRequest {
                        change: Some(Change {
                            name: created.name.clone(),
                            state: s as i32,
                            ..Default::default()
                        }),
                        update_mask: mask(&["state"]),
                    }))
                    .await
                    .unwrap();
            }
            changes.get_change(req(GetChangeRequest { name: created.name })).await.unwrap().into_inner()
        }
    };
    let all = awaiting(&mut suite, t0).await;
    assert_eq!((all.approval_rule, all.required_approvals), (ApprovalRule::All as i32, 2));
    assert_eq!(all.approver_groups, ["cab-member", "security"]);
    let approve =
        |name: &str| ApproveChangeRequest { name: name.into(), comment: String::new(), etag: String::new() };
    let err = suite.changes.approve_change(as_user(approve(&all.name), "sam", &["agent"])).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    let after_cab = suite
        .changes
        .approve_change(as_user(approve(&all.name), "bob", &["cab-member"]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(state(&after_cab), ChangeState::Authorize, "security has not approved yet");
    let after_sec = suite
        .changes
        .approve_change(as_user(approve(&all.name), "sue", &["security"]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(state(&after_sec), ChangeState::Scheduled);

    // MAJORITY of a quorum of three: one rejection does not veto.
    suite
        .changes
        .update_approval_policy(req(set(vec![rule(ApprovalRule::Majority, &["cab-member"], 3)])))
        .await
        .unwrap();
    let majority = awaiting(&mut suite, t0 + 5 * HOUR).await;
    assert_eq!(majority.required_approvals, 3);
    let reject =
        RejectChangeRequest { name: majority.name.clone(), comment: "too risky".into(), etag: String::new() };
    let rejected_once =
        suite.changes.reject_change(as_user(reject, "bob", &["cab-member"])).await.unwrap().into_inner();
    assert_eq!(state(&rejected_once), ChangeState::Authorize);
    suite.changes.approve_change(as_user(approve(&majority.name), "carol", &["cab-member"])).await.unwrap();
    let decided = suite
        .changes
        .approve_change(as_user(approve(&majority.name), "dave", &["cab-member"]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(state(&decided), ChangeState::Scheduled, "two of three approved");

    // ANY with one approver: a rejection sends the change back.
    suite
        .changes
        .update_approval_policy(req(set(vec![rule(ApprovalRule::Any, &["change-manager"], 1)])))
        .await
        .unwrap();
    let any = awaiting(&mut suite, t0 + 10 * HOUR).await;
    let reject = RejectChangeRequest {
        name: any.name.clone(),
        comment: "no backout plan".into(),
        etag: String::new(),
    };
    let back =
        suite.changes.reject_change(as_user(reject, "mia", &["change-manager"])).await.unwrap().into_inner();
    assert_eq!(state(&back), ChangeState::New);
}

async fn standard_changes_come_from_templates_and_emergencies_are_reviewed(backend: TestBackend) {
    let mut suite = start(backend).await;
    let web = suite.ci("web-1", "server", 2, "").await;
    let db = suite.ci("db-1", "database", 2, "").await;
    let now = now_micros();
    let template = suite
        .changes
        .create_standard_change_template(req(CreateStandardChangeTemplateRequest {
            standard_change_template: Some(StandardChangeTemplate {
                display_name: "Patch web servers".into(),
                implementation_plan: "Drain, patch, reboot, undrain".into(),
                backout_plan: "Boot the previous kernel".into(),
                configuration_items: vec![web.clone()],
                ..Default::default()
            }),
            request_id: String::new(),
        }))
        .await
        .unwrap()
        .into_inner();
    let err = suite
        .changes
        .create_standard_change_template(req(CreateStandardChangeTemplateRequest {
            standard_change_template: Some(StandardChangeTemplate {
                display_name: "No plans".into(),
                ..Default::default()
            }),
            request_id: String::new(),
        }))
        .await
        .unwrap_err();
    assert_eq!(
        violations(&err),
        ["standard_change_template.backout_plan", "standard_change_template.implementation_plan"]
    );
    let mut from_template = change(ChangeType::Standard, &[&web], now + HOUR, now + 2 * HOUR);
    from_template.template = template.name.clone();
    let made = suite.create(from_template.clone()).await.unwrap();
    assert_eq!(made.template, template.name);
    assert_eq!(made.implementation_plan, "Drain, patch, reboot, undrain", "plans come from the template");
    assert_eq!(made.required_approvals, 0);
    // Outside the template's CIs, without a template, or a template on a normal change: refused.
    let mut elsewhere = from_template.clone();
    elsewhere.configuration_items = vec![db.clone()];
    assert_eq!(violations(&suite.create(elsewhere).await.unwrap_err()), ["change.configuration_items[0]"]);
    let mut bare = change(ChangeType::Standard, &[&web], now + HOUR, now + 2 * HOUR);
    bare.template = format!("standardChangeTemplates/{}", uuid::Uuid::now_v7());
    assert_eq!(violations(&suite.create(bare).await.unwrap_err()), ["change.template"]);
    let mut normal = change(ChangeType::Normal, &[&web], now + HOUR, now + 2 * HOUR);
    normal.template = template.name.clone();
    assert_eq!(violations(&suite.create(normal).await.unwrap_err()), ["change.template"]);

    // An emergency change is closed only after its retrospective review.
    let emergency =
        suite.create(change(ChangeType::Emergency, &[&db], now - HOUR, now + HOUR)).await.unwrap();
    for s in [ChangeState::Assess, ChangeState::Authorize] {
        suite.set_state(&emergency.name, s).await.unwrap();
    }
    suite
        .changes
        .approve_change(as_user(
            ApproveChangeRequest {
                name: emergency.name.clone(),
                comment: "ECAB".into(),
                etag: String::new(),
            },
            "erin",
            &["cab-member"],
        ))
        .await
        .unwrap();
    for s in [ChangeState::Implement, ChangeState::Review] {
        suite.set_state(&emergency.name, s).await.unwrap();
    }
    let err = suite.set_state(&emergency.name, ChangeState::Closed).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("retrospective review"), "{}", err.message());
    suite
        .changes
        .review_change(req(ReviewChangeRequest {
            name: emergency.name.clone(),
            review: Some(PostImplementationReview {
                notes: "Fixed the outage; no side effects".into(),
                ..Default::default()
            }),
            etag: String::new(),
        }))
        .await
        .unwrap();
    let closed = suite.set_state(&emergency.name, ChangeState::Closed).await.unwrap();
    assert_eq!(state(&closed), ChangeState::Closed);
}

itsm_runtime::db_tests!(
    standard_changes_come_from_templates_and_emergencies_are_reviewed,
    approval_policies_any_all_and_majority,
    conflicts_through_the_impact_graph_reach_both_changes,
    maintenance_windows_questionnaire_cab_and_review,
    releases_deploy_stage_by_stage_through_gates,
    implemented_changes_are_recorded_in_the_cmdb_history,
    changesets_from_a_git_repository,
    blackout_windows_allow_only_emergencies,
    normal_change_approvals_and_can_deploy,
    standard_changes_skip_authorisation,
    bad_input_writes_nothing,
    risk_factors_conflicts_and_failure_history,
);
