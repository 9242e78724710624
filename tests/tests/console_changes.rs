//! The change calendar of the web console in a real browser (headless Chromium through
//! chromedriver), against the whole suite on SQLite and PostgreSQL.
//!
//! Seeded through gRPC: a server in the CMDB (medium criticality), its maintenance window on
//! Wednesday of next week, a blackout window on that Friday, and two normal changes an engineer
//! raised on the server for that Wednesday, overlapping each other, both moved to AUTHORIZE
//! (awaiting approval). A change manager opens that week's calendar, signs in, sees both changes
//! with state and risk and the windows as bands on their days, and approves the first with its
//! inline Approve button: the calendar comes back with the notice, and through gRPC the change is
//! SCHEDULED with the manager's approval. The month view shows it too. The change page explains
//! the risk score factor by factor and lists the approval and the conflict with the second change;
//! approving it again (a stale form, posted by hand) says at the top of the form that it no longer
//! awaits approval. CanDeploy answers "no" for the server now (the change's window is next week),
//! with the service's reasons. A requester gets the 403 page for the calendar, and a forged
//! approval posted with the requester's own CSRF token is refused with 403 and changes nothing.
//!
//! Needs `/usr/bin/chromedriver` and `/usr/bin/chromium` (`apt-get install chromium
//! chromium-driver`). Without them the test says so and passes, except under CI (`CI` set), where
//! it fails. The SQLite run saves screenshots `change_calendar_week`, `change_calendar_month` and
//! `change` to `services/console/screenshots/`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use chrono::{Datelike, Days, NaiveDate, NaiveTime, Utc};
use fantoccini::{Client, Locator};
use tonic::transport::Channel;

use itsm_e2e::browser::*;
use itsm_e2e::{Suite, authed};
use itsm_proto::change::change_service_client::ChangeServiceClient;
use itsm_proto::change::{
    ApprovalDecision, BlackoutWindow, Change, ChangeState, ChangeType, CreateBlackoutWindowRequest,
    CreateChangeRequest, CreateMaintenanceWindowRequest, GetChangeRequest, MaintenanceWindow,
    UpdateChangeRequest,
};
use itsm_proto::cmdb::cmdb_service_client::CmdbServiceClient;
use itsm_proto::cmdb::{ConfigurationItem, CreateConfigurationItemRequest, Criticality};
use itsm_runtime::db::timestamp;
use itsm_runtime::testing::TestBackend;

/// Microseconds since the epoch at `hour`:00 UTC on `day`.
fn at(day: NaiveDate, hour: u32) -> i64 {
    day.and_time(NaiveTime::from_hms_opt(hour, 0, 0).unwrap()).and_utc().timestamp_micros()
}

fn mask(paths: &[&str]) -> Option<prost_types::FieldMask> {
    Some(prost_types::FieldMask { paths: paths.iter().map(|p| (*p).to_string()).collect() })
}

/// Moves change `name` to `state` (as the engineer who raised it).
async fn move_to(changes: &mut ChangeServiceClient<Channel>, name: &str, state: ChangeState, token: &str) {
    let request = UpdateChangeRequest {
        change: Some(Change { name: name.to_string(), state: state as i32, ..Default::default() }),
        update_mask: mask(&["state"]),
    };
    changes.update_change(authed(request, token)).await.unwrap();
}

/// Raises a normal change on `ci` for `window` as `token`, with the risk questionnaire's
/// `answers`, and moves it to AUTHORIZE (awaiting approval). Returns its number.
async fn raise_for_approval(
    changes: &mut ChangeServiceClient<Channel>,
    token: &str,
    ci: &str,
    summary: &str,
    window: (i64, i64),
    answers: &[(&str, bool)],
) -> String {
    let change = Change {
        r#type: ChangeType::Normal as i32,
        short_description: summary.into(),
        description: "Planned with the database team.".into(),
        configuration_items: vec![ci.to_string()],
        planned_start_time: Some(timestamp(window.0)),
        planned_end_time: Some(timestamp(window.1)),
        risk_answers: answers.iter().map(|(question, answer)| ((*question).to_string(), *answer)).collect(),
        ..Default::default()
    };
    let request = CreateChangeRequest { change: Some(change), request_id: uuid::Uuid::new_v4().to_string() };
    let created = changes.create_change(authed(request, token)).await.unwrap().into_inner();
    move_to(changes, &created.name, ChangeState::Assess, token).await;
    move_to(changes, &created.name, ChangeState::Authorize, token).await;
    created.number
}

/// The change `number` as the API has it.
async fn get(changes: &mut ChangeServiceClient<Channel>, number: &str, token: &str) -> Change {
    let request = GetChangeRequest { name: format!("changes/{number}") };
    changes.get_change(authed(request, token)).await.unwrap().into_inner()
}

/// Posts a form to `action` from the page the browser shows, with that page's CSRF token (from
/// its sign-out form) and `fields`: what a stale or forged form does, without its page.
async fn post_by_hand(browser: &Client, action: &str, fields: &[(&str, &str)]) {
    let fields: serde_json::Value =
        fields.iter().map(|(name, value)| serde_json::json!([name, value])).collect();
    browser
        .execute(
            "const [action, fields] = arguments;
             const form = document.createElement('form');
             form.method = 'post';
             form.action = action;
             const add = (name, value) => {
               const input = document.createElement('input');
               input.type = 'hidden';
               input.name = name;
               input.value = value;
               form.appendChild(input);
             };
             add('csrf', document.querySelector('input[name=csrf]').value);
             for (const [name, value] of fields) { add(name, value); }
             document.body.appendChild(form);
             form.submit();",
            vec![serde_json::json!(action), fields],
        )
        .await
        .unwrap();
}

async fn change_calendar_in_a_browser(backend: TestBackend) {
    let Some(driver) = Chromedriver::start().await else { return };
    let suite = Suite::start_with_console(backend).await.unwrap();
    let console = suite.console_url().unwrap();
    let shots = screenshot_dir(backend);
    let shots = shots.as_deref();
    let carl = suite.token("carl", "acme", &["change-manager"]).unwrap();
    let eve = suite.token("eve", "acme", &["tier2"]).unwrap();
    let rita = suite.token("rita", "acme", &["requester"]).unwrap();
    let channel = suite.gateway_channel().await.unwrap();
    let mut cmdb = CmdbServiceClient::new(channel.clone());
    let mut changes = ChangeServiceClient::new(channel);

    // Next week, in UTC days: its Monday (the calendar's start), Wednesday and Friday.
    let today = Utc::now().date_naive();
    let monday = today - Days::new(u64::from(today.weekday().num_days_from_monday())) + Days::new(7);
    let wednesday = monday + Days::new(2);
    let friday = monday + Days::new(4);

    // The server, its maintenance window around the changes, and a blackout on Friday (change
    // managers keep the CMDB and the windows).
    let server = cmdb
        .create_configuration_item(authed(
            CreateConfigurationItemRequest {
                configuration_item: Some(ConfigurationItem {
                    display_name: "orders-db".into(),
                    ci_class: "server".into(),
                    environment: "production".into(),
                    criticality: Criticality::Medium as i32,
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            &carl,
        ))
        .await
        .unwrap()
        .into_inner()
        .name;
    changes
        .create_maintenance_window(authed(
            CreateMaintenanceWindowRequest {
                maintenance_window: Some(MaintenanceWindow {
                    display_name: "orders-db patch window".into(),
                    configuration_items: vec![server.clone()],
                    start_time: Some(timestamp(at(wednesday, 8))),
                    end_time: Some(timestamp(at(wednesday, 14))),
                    ..Default::default()
                }),
                request_id: uuid::Uuid::new_v4().to_string(),
            },
            &carl,
        ))
        .await
        .unwrap();
    changes
        .create_blackout_window(authed(
            CreateBlackoutWindowRequest {
                blackout_window: Some(BlackoutWindow {
                    display_name: "Quarter close".into(),
                    reason: "Finance closes the books".into(),
                    start_time: Some(timestamp(at(friday, 0))),
                    end_time: Some(timestamp(at(friday, 23))),
                    ..Default::default()
                }),
            },
            &carl,
        ))
        .await
        .unwrap();

    // Two normal changes an engineer raised, overlapping on the server, both awaiting approval.
    let first = raise_for_approval(
        &mut changes,
        &eve,
        &server,
        "Upgrade orders-db to PostgreSQL 17",
        (at(wednesday, 10), at(wednesday, 12)),
        &[("requires_downtime", true), ("tested_in_staging", true), ("backout_tested", true)],
    )
    .await;
    let second = raise_for_approval(
        &mut changes,
        &eve,
        &server,
        "Rotate orders-db TLS certificates",
        (at(wednesday, 11), at(wednesday, 13)),
        &[],
    )
    .await;
    assert_eq!(get(&mut changes, &first, &carl).await.state, ChangeState::Authorize as i32);

    // A change manager opens next week's calendar: signed out, the console asks for a token first.
    let browser = driver.browser().await;
    let week = format!("/changes/calendar?view=week&start={monday}");
    browser.goto(&format!("{console}{week}")).await.unwrap();
    sign_in(&browser, &carl).await;
    let entry = text_of(&browser, &format!("cal-{first}")).await;
    assert!(entry.contains("Upgrade orders-db to PostgreSQL 17"), "{entry}");
    wait_for(&browser, &format!("cal-{second}")).await;
    assert_eq!(location(&browser).await.0, "/changes/calendar", "back on the calendar after signing in");
    let on_wednesday = text_of(&browser, &format!("day-{wednesday}")).await;
    for expected in ["Maintenance: orders-db patch window", "Awaiting approval", "Risk: ", "10:00–12:00"] {
        assert!(on_wednesday.contains(expected), "{expected:?} in {on_wednesday}");
    }
    assert!(text_of(&browser, &format!("day-{friday}")).await.contains("Blackout: Quarter close"));
    assert!(text_of(&browser, "calendar-utc").await.contains("UTC"));
    wait_for(&browser, &format!("approve-{second}")).await;
    screenshot(&browser, shots, "change_calendar_week").await;
    assert_contrast(&browser, "change_calendar_week").await;

    // Approve, inline: back on the same week with the notice; the change is scheduled.
    click(&browser, &format!("approve-{first}")).await;
    assert!(text_of(&browser, "notice").await.contains("Change approved"));
    let (path, query) = location(&browser).await;
    assert_eq!(path, "/changes/calendar");
    let start = format!("start={monday}");
    for expected in ["view=week", start.as_str(), "done=approved"] {
        assert!(query.contains(expected), "{expected:?} in {query}");
    }
    let approved = get(&mut changes, &first, &carl).await;
    assert_eq!(approved.state, ChangeState::Scheduled as i32);
    assert_eq!(approved.approvals.len(), 1, "{:?}", approved.approvals);
    assert_eq!(approved.approvals[0].approver, "carl");
    assert_eq!(approved.approvals[0].decision, ApprovalDecision::Approved as i32);
    wait_for(&browser, &format!("approve-{second}")).await;
    assert!(
        browser.find(Locator::Id(&format!("approve-{first}"))).await.is_err(),
        "a scheduled change has no Approve button"
    );

    // The month view shows it too.
    browser.goto(&format!("{console}/changes/calendar?view=month&start={wednesday}")).await.unwrap();
    let heading = text_of(&browser, "calendar-heading").await;
    assert!(heading.contains(&wednesday.format("%B %Y").to_string()), "{heading}");
    assert!(text_of(&browser, &format!("cal-{first}")).await.contains("Upgrade orders-db"));
    let on_wednesday = text_of(&browser, &format!("day-{wednesday}")).await;
    assert!(on_wednesday.contains("Scheduled") && on_wednesday.contains(&second), "{on_wednesday}");
    screenshot(&browser, shots, "change_calendar_month").await;
    assert_contrast(&browser, "change_calendar_month").await;

    // The change page: the risk explained, the approval, the conflict with the second change.
    click(&browser, &format!("cal-{first}")).await;
    assert_eq!(text_of(&browser, "change-number").await, first);
    assert_eq!(text_of(&browser, "change-state").await, "Scheduled");
    let factors = text_of(&browser, "risk-factors").await;
    assert!(factors.contains("requires_downtime") && factors.contains("medium"), "{factors}");
    assert!(text_of(&browser, "risk-summary").await.contains(&format!("score of {}", approved.risk_score)));
    let approvals = text_of(&browser, "approvals").await;
    assert!(approvals.contains("carl") && approvals.contains("Approved"), "{approvals}");
    assert!(text_of(&browser, "change-conflicts").await.contains(&second));
    assert!(text_of(&browser, "change-cis").await.contains("orders-db"));
    assert!(browser.find(Locator::Id("approve-form")).await.is_err(), "nothing left to decide");
    screenshot(&browser, shots, "change").await;
    assert_contrast(&browser, "change").await;

    // Approving it again (a stale form): the service's reason at the top of the form.
    post_by_hand(&browser, &format!("/changes/{first}/approve"), &[("etag", ""), ("comment", "again")]).await;
    let refused = text_of(&browser, "approve-messages").await;
    assert!(refused.contains("not awaiting approval"), "{refused}");
    assert_eq!(get(&mut changes, &first, &carl).await.approvals.len(), 1);

    // Can the server deploy now? No: the change's window is next week.
    browser.goto(&format!("{console}/changes/can-deploy")).await.unwrap();
    type_into(&browser, "service", "orders-db").await;
    type_into(&browser, "environment", "production").await;
    click(&browser, "can-deploy-submit").await;
    let verdict = text_of(&browser, "deploy-verdict").await;
    assert!(verdict.starts_with("No: orders-db"), "{verdict}");
    let reasons = text_of(&browser, "deploy-reasons").await;
    assert!(reasons.contains("no authorised change covers"), "{reasons}");

    // A requester: no Changes in the navigation, the 403 page for the calendar, and a forged
    // approval (with the requester's own CSRF token) refused without a change.
    sign_out(&browser).await;
    sign_in(&browser, &rita).await;
    wait_for(&browser, "my-tickets").await;
    assert!(browser.find(Locator::Css("a[href='/changes/calendar']")).await.is_err());
    browser.goto(&format!("{console}{week}")).await.unwrap();
    assert_eq!(text_of(&browser, "error-heading").await, "You do not have access to this page");
    browser.goto(&format!("{console}/portal")).await.unwrap();
    wait_for(&browser, "my-tickets").await;
    post_by_hand(
        &browser,
        &format!("/changes/{second}/approve"),
        &[("etag", ""), ("return_to", week.as_str())],
    )
    .await;
    assert_eq!(text_of(&browser, "error-heading").await, "You do not have access to this page");
    let untouched = get(&mut changes, &second, &carl).await;
    assert_eq!(untouched.state, ChangeState::Authorize as i32);
    assert!(untouched.approvals.is_empty(), "{:?}", untouched.approvals);

    browser.close().await.unwrap();
    drop(driver);
}

itsm_runtime::db_tests!(change_calendar_in_a_browser);
