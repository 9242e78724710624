//! Outbox feed and event consumers against real databases (SQLite and PostgreSQL).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseConnection, DatabaseTransaction, TransactionTrait};
use sea_orm_migration::prelude::*;
use tokio_stream::StreamExt;

use itsm_proto::events::event_service_client::EventServiceClient;
use itsm_proto::events::{Event, GetFeedInfoResponse, WatchEventsRequest};
use itsm_runtime::consumer::{ConsumerOptions, EventConsumer, EventHandler, cursor_of};
use itsm_runtime::db::stmt;
use itsm_runtime::outbox::{self, EventFeed, NewEvent};
use itsm_runtime::server::GrpcServer;
use itsm_runtime::testing::{
    RunningServer, TEST_INTERNAL_TOKEN, TestBackend, TestDatabase, internal_channel, settings_for,
};
use itsm_runtime::{Error, db};

struct RuntimeOnly;

#[async_trait::async_trait]
impl MigratorTrait for RuntimeOnly {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        itsm_runtime::schema::migrations()
    }
}

struct Producer {
    db: DatabaseConnection,
    feed: EventFeed,
    server: RunningServer,
    _database: TestDatabase,
}

async fn producer(backend: TestBackend) -> Producer {
    let database = TestDatabase::create(backend).await.unwrap();
    let settings = settings_for(&database.url);
    let db = db::connect(&settings.database).await.unwrap();
    itsm_runtime::service::migrate::<RuntimeOnly>(&db).await.unwrap();
    let feed = EventFeed::new(db.clone());
    let served = feed.clone();
    let server = RunningServer::start(move |listener, shutdown| async move {
        GrpcServer::new("producer", &settings)
            .add_service(served.service())
            .serve(listener, shutdown.wait())
            .await
    })
    .await
    .unwrap();
    Producer { db, feed, server, _database: database }
}

impl Producer {
    async fn emit(&self, n: i64, kind: &str) {
        for i in 0..n {
            let txn = self.db.begin().await.unwrap();
            let payload = GetFeedInfoResponse { last_sequence: i };
            let mut event = NewEvent::of(&payload, "things/1", "acme", "alice");
            event.event_type = if kind == "a" { "test.A" } else { "test.B" }.to_string();
            outbox::append(&txn, event).await.unwrap();
            txn.commit().await.unwrap();
            self.feed.notify_committed();
        }
    }

    async fn client(&self) -> EventServiceClient<tonic::transport::Channel> {
        EventServiceClient::new(internal_channel(&self.server.url()).await.unwrap())
    }
}

fn watch(after: i64, types: &[&str]) -> tonic::Request<WatchEventsRequest> {
    let mut request = tonic::Request::new(WatchEventsRequest {
        after_sequence: after,
        types: types.iter().map(|t| (*t).to_string()).collect(),
    });
    request.metadata_mut().insert("x-itsm-internal-token", TEST_INTERNAL_TOKEN.parse().unwrap());
    request
}

async fn watch_streams_history_then_follows_new_events(backend: TestBackend) {
    let p = producer(backend).await;
    p.emit(3, "a").await;
    p.emit(2, "b").await;
    let mut client = p.client().await;
    let mut stream = client.watch_events(watch(1, &["test.A"])).await.unwrap().into_inner();
    let mut next = async || {
        tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
            .event
            .unwrap()
    };
    assert_eq!(next().await.sequence, 2);
    assert_eq!(next().await.sequence, 3);
    // Follows: a new matching event arrives without re-asking; B events are filtered out.
    p.emit(1, "b").await;
    p.emit(1, "a").await;
    let event = next().await;
    assert_eq!(
        (event.sequence, event.r#type.as_str(), event.tenant.as_str(), event.actor.as_str()),
        (7, "test.A", "acme", "alice")
    );
    assert_eq!(event.payload.unwrap().type_url, "type.googleapis.com/itsm.events.v1.GetFeedInfoResponse");

    let mut bad = client.clone();
    let err = bad.watch_events(watch(-1, &[])).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    let err = bad.watch_events(watch(0, &[""])).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
}

/// Writers that interleave (an event appended, the commit delayed) must still be seen by a
/// concurrent watcher in sequence order with none skipped.
async fn outbox_order_holds_under_concurrent_writers(backend: TestBackend) {
    let p = producer(backend).await;
    let mut client = p.client().await;
    let mut stream = client.watch_events(watch(0, &[])).await.unwrap().into_inner();
    let writers = 6;
    let per_writer = 15;
    let mut tasks = Vec::new();
    for w in 0..writers {
        let db = p.db.clone();
        let feed = p.feed.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..per_writer {
                let txn = db.begin().await.unwrap();
                let payload = GetFeedInfoResponse { last_sequence: i };
                outbox::append(&txn, NewEvent::of(&payload, "things/1", "acme", "alice")).await.unwrap();
                // Hold the transaction open after the append so commits interleave.
                tokio::time::sleep(Duration::from_millis(((w * 7 + i * 3) % 5) as u64)).await;
                txn.commit().await.unwrap();
                feed.notify_committed();
            }
        }));
    }
    let total = (writers * per_writer) as usize;
    let mut seen = Vec::new();
    while seen.len() < total {
        let message = tokio::time::timeout(Duration::from_secs(20), stream.next()).await;
        let Ok(Some(Ok(message))) = message else { break };
        seen.push(message.event.unwrap().sequence);
    }
    for task in tasks {
        task.await.unwrap();
    }
    let expected: Vec<i64> = (1..=total as i64).collect();
    assert_eq!(seen, expected, "the watcher must see every sequence, in order, with none skipped");
}

/// Records every event it applies (no unique constraint, so a double apply would show).
struct Recorder {
    slow: Duration,
}

#[tonic::async_trait]
impl EventHandler for Recorder {
    async fn handle(&self, txn: &DatabaseTransaction, event: &Event) -> Result<(), Error> {
        tokio::time::sleep(self.slow).await;
        txn.execute_raw(stmt(
            txn.get_database_backend(),
            "INSERT INTO applied (event_id, sequence) VALUES ($1, $2)",
            [event.id.as_str().into(), event.sequence.into()],
        ))
        .await?;
        Ok(())
    }
}

async fn consumer_db(backend: TestBackend) -> (TestDatabase, DatabaseConnection) {
    let database = TestDatabase::create(backend).await.unwrap();
    let db = db::connect(&settings_for(&database.url).database).await.unwrap();
    itsm_runtime::service::migrate::<RuntimeOnly>(&db).await.unwrap();
    db.execute_unprepared("CREATE TABLE applied (event_id TEXT NOT NULL, sequence BIGINT NOT NULL)")
        .await
        .unwrap();
    (database, db)
}

async fn applied(db: &DatabaseConnection) -> (i64, i64) {
    let row = db
        .query_one_raw(stmt(
            db.get_database_backend(),
            "SELECT COUNT(*) AS n, COUNT(DISTINCT event_id) AS d FROM applied",
            [],
        ))
        .await
        .unwrap()
        .unwrap();
    (row.try_get("", "n").unwrap(), row.try_get("", "d").unwrap())
}

async fn wait_applied(db: &DatabaseConnection, at_least: i64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while applied(db).await.0 < at_least {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {:?} applied, waiting for {at_least}",
            applied(db).await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn options(lease_ms: u64) -> ConsumerOptions {
    let mut options = ConsumerOptions::new("test/feed");
    options.lease = Duration::from_millis(lease_ms);
    options.internal_token = TEST_INTERNAL_TOKEN.to_string();
    options
}

async fn consumer_killed_mid_stream_resumes_without_loss_or_duplicates(backend: TestBackend) {
    let p = producer(backend).await;
    p.emit(120, "a").await;
    let (_database, db) = consumer_db(backend).await;
    let source = internal_channel(&p.server.url()).await.unwrap();

    let first = EventConsumer::new(
        options(400),
        db.clone(),
        source.clone(),
        Recorder { slow: Duration::from_millis(2) },
    );
    let task = tokio::spawn(first.run(std::future::pending()));
    wait_applied(&db, 30).await;
    task.abort(); // a crash: whatever transaction was open is rolled back
    let _ = task.await;
    let (count_at_kill, _) = applied(&db).await;
    assert!(count_at_kill < 120, "the kill must land mid-stream");

    p.emit(60, "b").await;
    let second = EventConsumer::new(options(400), db.clone(), source, Recorder { slow: Duration::ZERO });
    let stop = Arc::new(tokio::sync::Notify::new());
    let stopper = stop.clone();
    let task = tokio::spawn(second.run(async move { stopper.notified().await }));
    wait_applied(&db, 180).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.notify_one();
    task.await.unwrap();

    assert_eq!(applied(&db).await, (180, 180), "every event applied exactly once");
    assert_eq!(cursor_of(&db, "test/feed").await.unwrap(), 180);
}

async fn replicas_share_one_cursor(backend: TestBackend) {
    let p = producer(backend).await;
    let (_database, db) = consumer_db(backend).await;
    let source = internal_channel(&p.server.url()).await.unwrap();
    let running = Arc::new(AtomicBool::new(true));
    let mut tasks = Vec::new();
    for _ in 0..3 {
        let consumer =
            EventConsumer::new(options(300), db.clone(), source.clone(), Recorder { slow: Duration::ZERO });
        let running = running.clone();
        tasks.push(tokio::spawn(consumer.run(async move {
            while running.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })));
    }
    for _ in 0..4 {
        p.emit(25, "a").await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_applied(&db, 100).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    running.store(false, Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(applied(&db).await, (100, 100));
}

/// Writes like [`Recorder`], but fails for good on every seventh event (after writing, so a
/// half-applied event would show) and once, for a while, cannot reach a dependency.
struct Flaky {
    unavailable_once: AtomicBool,
}

#[tonic::async_trait]
impl EventHandler for Flaky {
    async fn handle(&self, txn: &DatabaseTransaction, event: &Event) -> Result<(), Error> {
        txn.execute_raw(stmt(
            txn.get_database_backend(),
            "INSERT INTO applied (event_id, sequence) VALUES ($1, $2)",
            [event.id.as_str().into(), event.sequence.into()],
        ))
        .await?;
        if event.sequence == 40 && self.unavailable_once.swap(false, Ordering::SeqCst) {
            return Err(Error::Unavailable("dependency down".into()));
        }
        if event.sequence % 7 == 0 {
            return Err(Error::Internal(format!("cannot apply {}", event.sequence)));
        }
        Ok(())
    }
}

/// Events waiting on the stream are applied in batches; within one, an event that fails for
/// good is parked as a dead letter without undoing the rest, and one that cannot be applied now
/// rolls the batch back to be applied again, once.
async fn batches_park_poison_events_and_retry_unavailable_ones(backend: TestBackend) {
    let p = producer(backend).await;
    p.emit(150, "a").await;
    let (_database, db) = consumer_db(backend).await;
    let source = internal_channel(&p.server.url()).await.unwrap();
    let consumer = EventConsumer::new(
        options(400),
        db.clone(),
        source,
        Flaky { unavailable_once: AtomicBool::new(true) },
    );
    let stop = Arc::new(tokio::sync::Notify::new());
    let stopper = stop.clone();
    let task = tokio::spawn(consumer.run(async move { stopper.notified().await }));
    let poison = 150 / 7;
    wait_applied(&db, 150 - poison).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while cursor_of(&db, "test/feed").await.unwrap() < 150 {
        assert!(tokio::time::Instant::now() < deadline, "the cursor did not reach the last event");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.notify_one();
    task.await.unwrap();

    assert_eq!(applied(&db).await, (150 - poison, 150 - poison), "each good event once, no poison writes");
    let row = db
        .query_one_raw(stmt(
            db.get_database_backend(),
            "SELECT COUNT(*) AS n, MIN(sequence) AS first FROM consumer_dead_letters WHERE consumer = 'test/feed'",
            [],
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.try_get::<i64>("", "n").unwrap(), poison);
    assert_eq!(row.try_get::<i64>("", "first").unwrap(), 7);
}

itsm_runtime::db_tests!(
    watch_streams_history_then_follows_new_events,
    outbox_order_holds_under_concurrent_writers,
    consumer_killed_mid_stream_resumes_without_loss_or_duplicates,
    replicas_share_one_cursor,
    batches_park_poison_events_and_retry_unavailable_ones,
);
