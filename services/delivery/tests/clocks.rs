//! The SLA clock store on SQLite and PostgreSQL: observations applied once each in any order,
//! warning and breach events emitted exactly once however often the sweeper runs, and a changed
//! agreement recomputing its clocks.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use chrono::{TimeDelta, Utc};
use prost::Message;
use sea_orm::{ConnectionTrait, DatabaseConnection, TransactionTrait};

use itsm_delivery::domain::clock::Observation;
use itsm_delivery::entity::{agreement, calendar, clock};
use itsm_delivery::service_level::rules::{RESOLUTION_TIME, RecordFacts, TargetDef};
use itsm_delivery::service_level::store::{Alerts, Observed, ServiceLevel};
use itsm_proto::delivery::SlaClockChanged;
use itsm_runtime::CallContext;
use itsm_runtime::outbox::EventFeed;
use itsm_runtime::testing::{TestBackend, TestDatabase, settings_for};

const SERVICE: &str = "configurationItems/01a213c4-59ab-7505-ab02-99b2e4021c8f";
const RECORD: &str = "incidents/INC0000001";

async fn store(backend: TestBackend) -> (ServiceLevel, TestDatabase) {
    let database = TestDatabase::create(backend).await.unwrap();
    let db = itsm_runtime::db::connect(&settings_for(&database.url).database).await.unwrap();
    itsm_runtime::service::migrate::<itsm_delivery::migration::Migrator>(&db).await.unwrap();
    (ServiceLevel { feed: EventFeed::new(db.clone()), db }, database)
}

fn ctx() -> CallContext {
    CallContext { tenant: "acme".into(), principal: "alice".into(), roles: vec![] }
}

/// A 24×7 calendar and an agreement with one resolution target of `seconds`, warning at 50 %.
async fn agreement(s: &ServiceLevel, seconds: i64) -> agreement::Model {
    let whole_day = r#"[{"start_minute":0,"end_minute":1440}]"#;
    let cal = s
        .create_calendar(
            &ctx(),
            calendar::Model {
                id: String::new(),
                tenant_id: String::new(),
                display_name: "Always".into(),
                time_zone: "UTC".into(),
                weekly: format!("[{}]", [whole_day; 7].join(",")),
                holidays: "[]".into(),
                exceptions: "[]".into(),
                version: 0,
                create_time: 0,
                update_time: 0,
                creator: String::new(),
                updater: String::new(),
            },
        )
        .await
        .unwrap();
    let target = TargetDef {
        metric: RESOLUTION_TIME,
        condition: String::new(),
        duration_seconds: Some(seconds),
        availability_basis_points: 0,
        warning_percents: vec![50],
        calendar: cal.id,
        priority_durations: Default::default(),
        start_states: vec![],
        pause_states: vec![],
        stop_states: vec![],
        cancel_states: vec![],
    };
    s.create_agreement(
        &ctx(),
        agreement::Model {
            id: String::new(),
            tenant_id: String::new(),
            display_name: "Gold".into(),
            agreement_type: 1,
            business_service: SERVICE.into(),
            counterparty: String::new(),
            targets: serde_json::to_string(&vec![target]).unwrap(),
            active: true,
            version: 0,
            create_time: 0,
            update_time: 0,
            creator: String::new(),
            updater: String::new(),
        },
        "",
        "",
    )
    .await
    .unwrap()
}

async fn observe(s: &ServiceLevel, event: &str, sequence: i64, minutes_ago: i64, state: &str) -> Alerts {
    observe_at(s, event, sequence, Utc::now() - TimeDelta::minutes(minutes_ago), state).await
}

async fn observe_at(
    s: &ServiceLevel,
    event: &str,
    sequence: i64,
    time: chrono::DateTime<Utc>,
    state: &str,
) -> Alerts {
    let txn = s.db.begin().await.unwrap();
    let observed = Observed {
        record: RECORD,
        business_service: SERVICE,
        facts: RecordFacts { record_type: "incident".into(), priority: 3, ..Default::default() },
        observation: Observation { time, sequence, state: state.into(), priority: 3, event_id: event.into() },
    };
    let alerts = s.observe(&txn, "acme", observed, "tester").await.unwrap();
    txn.commit().await.unwrap();
    alerts
}

/// The clock events in the outbox, oldest first: (action, warning percent).
async fn events(db: &DatabaseConnection) -> Vec<(String, i32)> {
    let rows = db
        .query_all_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            "SELECT payload FROM outbox WHERE event_type = 'itsm.delivery.v1.SlaClockChanged' ORDER BY sequence",
        ))
        .await
        .unwrap();
    rows.iter()
        .map(|r| {
            let payload: Vec<u8> = r.try_get("", "payload").unwrap();
            let e = SlaClockChanged::decode(payload.as_slice()).unwrap();
            (e.action, e.warning_percent)
        })
        .collect()
}

async fn the_clock(s: &ServiceLevel) -> clock::Model {
    let page = s.list_clocks(&ctx(), None, ("start_time", false), None, 10).await.unwrap();
    assert_eq!(page.items.len(), 1);
    page.items.into_iter().next().unwrap()
}

async fn warnings_and_breach_are_emitted_exactly_once(backend: TestBackend) {
    let (s, _db) = store(backend).await;
    agreement(&s, 3600).await;
    // Every alert raised, by observations and sweeps: what `itsm.sla.*` count once committed.
    let mut counted = Alerts::default();
    let mut count = |a: Alerts| {
        counted = Alerts { warnings: counted.warnings + a.warnings, breaches: counted.breaches + a.breaches }
    };
    // Opened 50 minutes ago: the 50 % warning (30 min) is already behind it.
    count(observe(&s, "e1", 1, 50, "NEW").await);
    let c = the_clock(&s).await;
    assert_eq!(c.state, 1, "running");
    for _ in 0..3 {
        count(s.sweep(Utc::now()).await.unwrap().alerts);
    }
    count(observe(&s, "e2", 2, 40, "IN_PROGRESS").await);
    assert_eq!(events(&s.db).await, [("start".to_string(), 0), ("warning".to_string(), 50)]);
    // An hour and a bit later, as far as the sweeper is concerned: breached, once.
    for _ in 0..3 {
        count(s.sweep(Utc::now() + TimeDelta::minutes(15)).await.unwrap().alerts);
    }
    let c = the_clock(&s).await;
    assert_eq!(c.next_alert_time, 0, "nothing more falls due");
    // The sweep looks ahead only to pick clocks; their state is computed as of now, so the breach
    // waits for its real time. Make it real by back-dating the opening instead: re-observe.
    count(observe(&s, "e0", 0, 70, "NEW").await);
    let c = the_clock(&s).await;
    assert_eq!(c.state, 4, "breached: opened 70 minutes ago with a 60 minute target");
    for _ in 0..3 {
        count(s.sweep(Utc::now()).await.unwrap().alerts);
    }
    count(observe(&s, "e3", 3, 1, "RESOLVED").await);
    let actions = events(&s.db).await;
    assert_eq!(actions.iter().filter(|(a, _)| a == "warning").count(), 1, "{actions:?}");
    assert_eq!(actions.iter().filter(|(a, _)| a == "breach").count(), 1, "{actions:?}");
    assert_eq!(actions.last().unwrap().0, "stop");
    assert_eq!(counted, Alerts { warnings: 1, breaches: 1 }, "each alert is counted once, like its event");
}

async fn duplicates_and_order_do_not_change_the_clock(backend: TestBackend) {
    let (ordered, _a) = store(backend).await;
    let (shuffled, _b) = store(backend).await;
    agreement(&ordered, 7200).await;
    agreement(&shuffled, 7200).await;
    let now = Utc::now();
    let events = [("e1", 1, 60, "NEW"), ("e2", 2, 50, "ON_HOLD"), ("e3", 3, 20, "IN_PROGRESS")];
    for (id, seq, ago, state) in events {
        observe_at(&ordered, id, seq, now - TimeDelta::minutes(ago), state).await;
    }
    for (id, seq, ago, state) in [events[2], events[0], events[2], events[1], events[0]] {
        observe_at(&shuffled, id, seq, now - TimeDelta::minutes(ago), state).await;
    }
    let (a, b) = (the_clock(&ordered).await, the_clock(&shuffled).await);
    assert_eq!(
        (a.state, a.start_time, a.priority, a.target_ms),
        (b.state, b.start_time, b.priority, b.target_ms)
    );
    // Counted: 10 min before the hold and the 20 min since it ended (as of slightly different nows).
    for c in [&a, &b] {
        assert!((30 * 60_000..31 * 60_000).contains(&c.elapsed_ms), "{}", c.elapsed_ms);
    }
}

async fn a_shorter_target_recomputes_and_breaches(backend: TestBackend) {
    let (s, _db) = store(backend).await;
    let a = agreement(&s, 7200).await;
    observe(&s, "e1", 1, 90, "NEW").await;
    assert_eq!(the_clock(&s).await.state, 1);
    s.update_agreement(&ctx(), &a.id, "", |m| {
        let mut targets: Vec<TargetDef> = serde_json::from_str(&m.targets).unwrap();
        targets[0].duration_seconds = Some(3600);
        m.targets = serde_json::to_string(&targets).unwrap();
    })
    .await
    .unwrap();
    assert_eq!(the_clock(&s).await.stale, 1);
    s.sweep(Utc::now()).await.unwrap();
    let c = the_clock(&s).await;
    assert_eq!((c.state, c.stale, c.target_ms), (4, 0, 3_600_000), "breached against the new target");
    assert_eq!(events(&s.db).await.iter().filter(|(a, _)| a == "breach").count(), 1);
    // Deleting the agreement cancels its clocks.
    s.delete_agreement(&ctx(), &a.id, "").await.unwrap();
    s.sweep(Utc::now()).await.unwrap();
    assert_eq!(the_clock(&s).await.state, 5);
    assert_eq!(events(&s.db).await.last().unwrap().0, "cancel");
}

itsm_runtime::db_tests!(
    warnings_and_breach_are_emitted_exactly_once,
    duplicates_and_order_do_not_change_the_clock,
    a_shorter_target_recomputes_and_breaches,
);
