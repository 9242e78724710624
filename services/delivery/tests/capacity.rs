//! The capacity sweep on both backends: samples past each resolution's retention are dropped,
//! the rest kept; a rising resource opens one warning (an outbox event) and a flat one none, and
//! the warning closes once the threshold is no longer forecast to be crossed.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use chrono::{TimeDelta, Utc};
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter};

use itsm_delivery::capacity::{Capacity, RESOURCES};
use itsm_delivery::entity::capacity_sample;
use itsm_proto::delivery::{CapacityResource, CapacityWarningAction};
use itsm_runtime::CallContext;
use itsm_runtime::documents::{Columns, Documents};
use itsm_runtime::outbox::EventFeed;
use itsm_runtime::testing::{TestBackend, TestDatabase, settings_for};

async fn sample(
    db: &sea_orm::DatabaseConnection,
    resource: &str,
    width: i64,
    at: chrono::DateTime<Utc>,
    v: f64,
) {
    capacity_sample::Model {
        resource_id: resource.into(),
        width_seconds: width,
        start_time: at.timestamp_micros(),
        tenant_id: "acme".into(),
        count: 1,
        min_value: v,
        max_value: v,
        sum_value: v,
    }
    .into_active_model()
    .insert(db)
    .await
    .unwrap();
}

async fn count(db: &sea_orm::DatabaseConnection, resource: &str, width: i64) -> usize {
    capacity_sample::Entity::find()
        .filter(capacity_sample::Column::ResourceId.eq(resource))
        .filter(capacity_sample::Column::WidthSeconds.eq(width))
        .all(db)
        .await
        .unwrap()
        .len()
}

async fn retention_and_warnings(backend: TestBackend) {
    let database = TestDatabase::create(backend).await.unwrap();
    let db = itsm_runtime::db::connect(&settings_for(&database.url).database).await.unwrap();
    itsm_runtime::service::migrate::<itsm_delivery::migration::Migrator>(&db).await.unwrap();
    let capacity = Capacity {
        documents: Documents { db: db.clone() },
        feed: EventFeed::new(db.clone()),
        incidents: None,
        changes: None,
        internal_token: String::new(),
    };
    let ctx = CallContext::system("acme");
    let resource = |name: &str| CapacityResource {
        display_name: name.into(),
        configuration_item: format!("configurationItems/{}", uuid::Uuid::now_v7()),
        metric: "disk_used_percent".into(),
        threshold: 90.0,
        forecast_step: Some(prost_types::Duration { seconds: 3600, nanos: 0 }),
        lead_time: Some(prost_types::Duration { seconds: 30 * 86_400, nanos: 0 }),
        warning_action: CapacityWarningAction::Event as i32,
        ..Default::default()
    };
    let rising =
        Documents::insert(&db, &RESOURCES, &ctx, Columns::default(), &resource("rising")).await.unwrap();
    let flat = Documents::insert(&db, &RESOURCES, &ctx, Columns::default(), &resource("flat")).await.unwrap();
    let now = Utc::now();
    // Ten days of hourly buckets: one rising 0.2 %/h from 40 %, one flat at 20 %.
    for h in 0..240 {
        let at = now - TimeDelta::hours(240 - h);
        sample(&db, &rising.id, 3600, at, 40.0 + 0.2 * h as f64).await;
        sample(&db, &flat.id, 3600, at, 20.0).await;
    }
    // Raw samples 8 days and 1 day old, an old daily bucket.
    sample(&db, &rising.id, 0, now - TimeDelta::days(8), 41.0).await;
    sample(&db, &rising.id, 0, now - TimeDelta::days(1), 85.0).await;
    sample(&db, &rising.id, 86_400, now - TimeDelta::days(400), 30.0).await;

    let opened = capacity.sweep(now).await.unwrap();
    assert_eq!(opened, 1, "the rising resource reaches 90 % within its lead time; the flat one never");
    assert_eq!(count(&db, &rising.id, 0).await, 1, "raw samples are kept 7 days");
    assert_eq!(count(&db, &rising.id, 3600).await, 240);
    assert_eq!(count(&db, &rising.id, 86_400).await, 1, "daily buckets are kept 2 years");
    let warned: CapacityResource =
        Documents::find(&db, &RESOURCES, "acme", &rising.id).await.unwrap().unwrap().body;
    assert!(warned.warning_time.is_some());
    let events = capacity.feed.read(0, &["itsm.delivery.v1.CapacityWarning".to_string()], 10).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].resource_name, rising.name);
    // Swept again: the warning is open already, nothing new.
    assert_eq!(capacity.sweep(now).await.unwrap(), 0);

    // A hundred days on: hourly buckets are past their 90 days; the old daily one past 2 years.
    // With no recent data the threshold is no longer forecast to be crossed: the warning closes.
    capacity.sweep(now + TimeDelta::days(100)).await.unwrap();
    let closed: CapacityResource =
        Documents::find(&db, &RESOURCES, "acme", &rising.id).await.unwrap().unwrap().body;
    assert!(closed.warning_time.is_none(), "{closed:?}");
    assert_eq!(count(&db, &rising.id, 3600).await, 0);
    assert_eq!(count(&db, &rising.id, 0).await, 0);
    capacity.sweep(now + TimeDelta::days(340)).await.unwrap();
    assert_eq!(count(&db, &rising.id, 86_400).await, 0);
}

itsm_runtime::db_tests!(retention_and_warnings);
