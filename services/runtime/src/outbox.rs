//! Transactional outbox: a service writes its domain events into its own `outbox` table in the
//! same transaction as the change, and serves them as an ordered feed (`EventService`).
//!
//! Order: `sequence` must grow in commit order, or a watcher reading "after N" could miss a row
//! that commits later with a smaller number. SQLite has one writer, so that holds; on Postgres
//! every appender takes a transaction-scoped advisory lock first, which serialises the (short)
//! tail of writing transactions from the outbox insert to their commit.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use sea_orm::{ConnectionTrait, DatabaseConnection, QueryResult, Value};
use tokio::sync::{Notify, mpsc};
use tonic::{Request, Response, Status};

use itsm_proto::events::event_service_server::{EventService, EventServiceServer};
use itsm_proto::events::{
    Event, GetFeedInfoRequest, GetFeedInfoResponse, WatchEventsRequest, WatchEventsResponse,
};

use crate::bulk::{BulkInsert, Column, Scalar};
use crate::db::{now_micros, stmt, timestamp};
use crate::error::Error;

/// Advisory lock key that serialises outbox appends on Postgres ("itsmoutb" in ASCII).
const OUTBOX_LOCK_KEY: i64 = 0x6974_736d_6f75_7462;
/// Largest batch read from the table per query.
const BATCH: i64 = 256;
/// How often a watcher looks for rows written by another replica of the service.
const POLL_INTERVAL: Duration = Duration::from_millis(250);
/// Most event types one watch may filter on.
const MAX_TYPES: usize = 64;
const TYPE_URL_PREFIX: &str = "type.googleapis.com/";

/// An event to append. `payload` is any prost message; its full name becomes the type URL.
pub struct NewEvent<'a> {
    pub event_type: String,
    pub resource_name: &'a str,
    pub tenant: &'a str,
    pub actor: &'a str,
    pub payload_type: String,
    pub payload: Vec<u8>,
}

impl<'a> NewEvent<'a> {
    /// An event whose type is the payload message's full name (`itsm.cmdb.v1.ConfigurationItemChanged`).
    pub fn of<M: prost::Name>(
        payload: &M,
        resource_name: &'a str,
        tenant: &'a str,
        actor: &'a str,
    ) -> NewEvent<'a> {
        let full_name = M::full_name();
        NewEvent {
            event_type: full_name.clone(),
            resource_name,
            tenant,
            actor,
            payload_type: full_name,
            payload: payload.encode_to_vec(),
        }
    }
}

/// Appends an event; call it with the transaction that makes the change.
pub async fn append(db: &impl ConnectionTrait, event: NewEvent<'_>) -> Result<(), Error> {
    append_many(db, std::slice::from_ref(&event)).await
}

/// Appends events in order, in the caller's transaction: one statement on PostgreSQL however
/// many there are, a few on SQLite (see [`BulkInsert`]).
pub async fn append_many(db: &impl ConnectionTrait, events: &[NewEvent<'_>]) -> Result<(), Error> {
    let (traceparent, tracestate) = crate::telemetry::current_trace_context();
    let now = now_micros();
    let text = |f: &dyn Fn(&NewEvent<'_>) -> String| Column::Text(events.iter().map(f).collect());
    BulkInsert::new("outbox")
        .column("event_id", text(&|_| uuid::Uuid::now_v7().to_string()))
        .column("event_type", text(&|e| e.event_type.clone()))
        .column("resource_name", text(&|e| e.resource_name.to_string()))
        .column("tenant_id", text(&|e| e.tenant.to_string()))
        .column("actor", text(&|e| e.actor.to_string()))
        .column("occurred_at", Column::Same(Scalar::BigInt(now)))
        .column("traceparent", Column::Same(Scalar::Text(traceparent)))
        .column("tracestate", Column::Same(Scalar::Text(tracestate)))
        .column("payload_type", text(&|e| e.payload_type.clone()))
        .column("payload", Column::Bytes(events.iter().map(|e| e.payload.clone()).collect()))
        // The lock is taken in the same statement (no extra round trip) and held until the
        // transaction ends; it is re-entrant, so every append may take it.
        .execute_serialised(db, Some(OUTBOX_LOCK_KEY))
        .await
}

/// A service's event feed: reads its outbox and wakes watchers when a write commits.
#[derive(Clone)]
pub struct EventFeed {
    db: DatabaseConnection,
    committed: Arc<Notify>,
}

impl EventFeed {
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db, committed: Arc::new(Notify::new()) }
    }

    /// Tell watchers that a transaction with events has committed (they also poll, so a missed
    /// call only delays delivery).
    pub fn notify_committed(&self) {
        self.committed.notify_waiters();
    }

    /// Events after `after` (optionally of some types), oldest first, at most `limit`.
    pub async fn read(&self, after: i64, types: &[String], limit: i64) -> Result<Vec<Event>, Error> {
        read_in(&self.db, &EventRange { after, ..EventRange::default() }, types, limit).await
    }

    /// Highest committed sequence.
    pub async fn last_sequence(&self) -> Result<i64, Error> {
        last_sequence_in(&self.db).await
    }

    /// The gRPC service that streams this feed.
    pub fn service(&self) -> EventServiceServer<EventFeedService> {
        EventServiceServer::new(EventFeedService { feed: self.clone() })
    }
}

/// Which events of an outbox to read: after a sequence, up to another, of one tenant.
#[derive(Debug, Clone, Default)]
pub struct EventRange<'a> {
    pub after: i64,
    /// Last sequence to read (none: no upper bound).
    pub through: Option<i64>,
    pub tenant: Option<&'a str>,
}

/// Events in `range` (optionally of some types), oldest first, at most `limit`, read on `db`
/// (a transaction reads its own snapshot).
pub async fn read_in(
    db: &impl ConnectionTrait,
    range: &EventRange<'_>,
    types: &[String],
    limit: i64,
) -> Result<Vec<Event>, Error> {
    let mut sql = String::from(
        "SELECT sequence, event_id, event_type, resource_name, tenant_id, actor, occurred_at, \
         traceparent, tracestate, payload_type, payload FROM outbox WHERE sequence > $1",
    );
    let mut values: Vec<Value> = vec![range.after.into()];
    if let Some(through) = range.through {
        values.push(through.into());
        sql.push_str(&format!(" AND sequence <= ${}", values.len()));
    }
    if let Some(tenant) = range.tenant {
        values.push(tenant.into());
        sql.push_str(&format!(" AND tenant_id = ${}", values.len()));
    }
    if !types.is_empty() {
        let first = values.len() + 1;
        let placeholders: Vec<String> = (0..types.len()).map(|i| format!("${}", first + i)).collect();
        sql.push_str(&format!(" AND event_type IN ({})", placeholders.join(", ")));
        values.extend(types.iter().map(|t| Value::from(t.as_str())));
    }
    sql.push_str(&format!(" ORDER BY sequence LIMIT {limit}"));
    let rows = db.query_all_raw(stmt(db.get_database_backend(), &sql, values)).await?;
    rows.iter().map(event_from_row).collect()
}

/// Highest committed sequence (as `db` sees it: a transaction, at its snapshot).
pub async fn last_sequence_in(db: &impl ConnectionTrait) -> Result<i64, Error> {
    let row = db
        .query_one_raw(stmt(
            db.get_database_backend(),
            "SELECT COALESCE(MAX(sequence), 0) AS last FROM outbox",
            [],
        ))
        .await?;
    Ok(match row {
        Some(row) => row.try_get("", "last")?,
        None => 0,
    })
}

fn event_from_row(row: &QueryResult) -> Result<Event, Error> {
    let payload_type: String = row.try_get("", "payload_type")?;
    Ok(Event {
        sequence: row.try_get("", "sequence")?,
        id: row.try_get("", "event_id")?,
        r#type: row.try_get("", "event_type")?,
        resource_name: row.try_get("", "resource_name")?,
        tenant: row.try_get("", "tenant_id")?,
        actor: row.try_get("", "actor")?,
        occurred_at: Some(timestamp(row.try_get("", "occurred_at")?)),
        traceparent: row.try_get("", "traceparent")?,
        tracestate: row.try_get("", "tracestate")?,
        payload: Some(prost_types::Any {
            type_url: format!("{TYPE_URL_PREFIX}{payload_type}"),
            value: row.try_get("", "payload")?,
        }),
    })
}

/// `itsm.events.v1.EventService` over an [`EventFeed`].
pub struct EventFeedService {
    feed: EventFeed,
}

type EventStream = Pin<Box<dyn Stream<Item = Result<WatchEventsResponse, Status>> + Send>>;

#[tonic::async_trait]
impl EventService for EventFeedService {
    async fn watch_events(
        &self,
        request: Request<WatchEventsRequest>,
    ) -> Result<Response<EventStream>, Status> {
        let request = request.into_inner();
        if request.after_sequence < 0 {
            return Err(Error::invalid("after_sequence", "must not be negative").into());
        }
        if request.types.len() > MAX_TYPES {
            return Err(Error::invalid("types", format!("at most {MAX_TYPES} types")).into());
        }
        if let Some(bad) = request.types.iter().position(|t| t.is_empty() || t.len() > 200) {
            return Err(Error::invalid(format!("types[{bad}]"), "must be a non-empty event type").into());
        }
        let feed = self.feed.clone();
        let (tx, rx) = mpsc::channel::<Result<WatchEventsResponse, Status>>(BATCH as usize);
        tokio::spawn(async move {
            let mut cursor = request.after_sequence;
            loop {
                // Register interest before reading, so a commit between read and wait is not missed.
                let committed = feed.committed.notified();
                let batch = match feed.read(cursor, &request.types, BATCH).await {
                    Ok(batch) => batch,
                    Err(err) => {
                        let _ = tx.send(Err(err.into())).await;
                        return;
                    }
                };
                let empty = batch.is_empty();
                for event in batch {
                    cursor = event.sequence;
                    if tx.send(Ok(WatchEventsResponse { event: Some(event) })).await.is_err() {
                        return; // the watcher went away
                    }
                }
                if empty {
                    tokio::select! {
                        () = committed => {}
                        () = tokio::time::sleep(POLL_INTERVAL) => {}
                        () = tx.closed() => return,
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }

    async fn get_feed_info(
        &self,
        _request: Request<GetFeedInfoRequest>,
    ) -> Result<Response<GetFeedInfoResponse>, Status> {
        let last_sequence = self.feed.last_sequence().await?;
        Ok(Response::new(GetFeedInfoResponse { last_sequence }))
    }
}
