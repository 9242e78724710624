//! Event consumer: follows another service's feed and applies each event exactly once in effect.
//!
//! The cursor lives in the consumer's own database, and is advanced in the SAME transaction as
//! the handler's writes: after a crash either both happened or neither did. Several replicas may
//! run the same consumer; a lease row (owner + expiry) lets one of them work at a time, and a
//! standby takes over when the lease of a dead replica expires.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use sea_orm::{ConnectionTrait, DatabaseConnection, DatabaseTransaction, TransactionTrait, Value};
use tonic::transport::Channel;
use tracing::Instrument;

use itsm_proto::events::event_service_client::EventServiceClient;
use itsm_proto::events::{Event, WatchEventsRequest};

use crate::context::INTERNAL_TOKEN_HEADER;
use crate::db::{now_micros, stmt};
use crate::error::Error;

/// Applies one event inside the consumer's transaction.
#[tonic::async_trait]
pub trait EventHandler: Send + Sync + 'static {
    async fn handle(&self, txn: &DatabaseTransaction, event: &Event) -> Result<(), Error>;

    /// Called once the transaction `handle` wrote in has committed (metrics that must not
    /// count a rolled-back attempt). A transaction may hold several events: this is called for
    /// each of them, in order, and not for one that was parked as a dead letter.
    fn committed(&self, _event: &Event) {}
}

/// Settings of one consumer.
#[derive(Clone, Debug)]
pub struct ConsumerOptions {
    /// Unique per consumer (e.g. `service-desk/incident-events`); names the cursor row.
    pub name: String,
    /// Event types to receive (empty = all).
    pub types: Vec<String>,
    /// How long a replica's lease lasts without renewal.
    pub lease: Duration,
    /// Internal token to present to the producing service.
    pub internal_token: String,
}

impl ConsumerOptions {
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            types: Vec::new(),
            lease: Duration::from_secs(15),
            internal_token: String::new(),
        }
    }
}

/// One replica of a consumer.
pub struct EventConsumer<H> {
    options: ConsumerOptions,
    db: DatabaseConnection,
    source: Channel,
    handler: Arc<H>,
    replica: String,
    /// The consuming service (the part of the name before `/`), for telemetry.
    service: Arc<str>,
    metrics: ConsumerMetrics,
    /// The consuming service's own feed, woken when a handler's transaction wrote events.
    feed: Option<crate::outbox::EventFeed>,
}

/// How far a consumer is behind its feed.
struct ConsumerMetrics {
    lag: opentelemetry::metrics::Gauge<i64>,
    delay: opentelemetry::metrics::Histogram<f64>,
    attributes: [opentelemetry::KeyValue; 1],
}

impl ConsumerMetrics {
    fn new(service: &str, consumer: &str) -> Self {
        let meter = crate::telemetry::meter(service);
        Self {
            lag: meter
                .i64_gauge("itsm.events.consumer.lag")
                .with_unit("{event}")
                .with_description("Events the producer has committed that this consumer has not applied yet")
                .build(),
            delay: meter
                .f64_histogram("itsm.events.consumer.delay")
                .with_unit("s")
                .with_description("Time from an event's commit to its being applied by this consumer")
                .with_boundaries(vec![
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
                ])
                .build(),
            attributes: [opentelemetry::KeyValue::new("itsm.consumer", consumer.to_string())],
        }
    }
}

/// Most events applied in one transaction. Bounded because a handler that writes events holds
/// the service's outbox lock from its first write to the commit.
const MAX_BATCH: usize = 50;

enum Applied {
    Done,
    Duplicate,
    LostLease,
}

impl<H: EventHandler> EventConsumer<H> {
    pub fn new(options: ConsumerOptions, db: DatabaseConnection, source: Channel, handler: H) -> Self {
        let service: Arc<str> = Arc::from(options.name.split('/').next().unwrap_or_default());
        let metrics = ConsumerMetrics::new(&service, &options.name);
        Self {
            options,
            db,
            source,
            handler: Arc::new(handler),
            replica: uuid::Uuid::now_v7().to_string(),
            service,
            metrics,
            feed: None,
        }
    }

    /// Wakes `feed`'s watchers after each applied event, so events the handler wrote (an SLA
    /// clock that paused, a ticket that followed its incident) go out at once instead of at the
    /// feed's next poll.
    pub fn notifying(mut self, feed: crate::outbox::EventFeed) -> Self {
        self.feed = Some(feed);
        self
    }

    /// Runs until `shutdown` completes. Errors are retried with backoff; they never end the loop.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut backoff = Duration::from_millis(100);
        loop {
            tokio::select! {
                () = &mut shutdown => return,
                result = self.run_once() => {
                    match result {
                        Ok(()) => backoff = Duration::from_millis(100),
                        Err(err) => {
                            tracing::warn!(consumer = %self.options.name, error = %err, "event consumer interrupted");
                            backoff = (backoff * 2).min(Duration::from_secs(5));
                        }
                    }
                }
            }
            tokio::select! {
                () = &mut shutdown => return,
                () = tokio::time::sleep(backoff) => {}
            }
        }
    }

    /// Takes the lease (or waits as a standby), then streams and applies events until the
    /// stream ends, an error occurs or the lease is lost.
    async fn run_once(&self) -> Result<(), Error> {
        self.ensure_cursor().await?;
        if !self.try_lease().await? {
            // Standby: another replica holds the lease; look again in a third of its length.
            tokio::time::sleep(self.options.lease / 3).await;
            return Ok(());
        }
        let after = self.cursor().await?;
        let mut client = EventServiceClient::new(self.source.clone());
        let mut request = tonic::Request::new(WatchEventsRequest {
            after_sequence: after,
            types: self.options.types.clone(),
        });
        if !self.options.internal_token.is_empty()
            && let Ok(value) = self.options.internal_token.parse()
        {
            request.metadata_mut().insert(INTERNAL_TOKEN_HEADER, value);
        }
        let mut stream = client
            .watch_events(request)
            .await
            .map_err(|s| Error::Unavailable(format!("event feed: {}", s.message())))?
            .into_inner();
        let mut renew = tokio::time::interval(self.options.lease / 3);
        renew.tick().await;
        loop {
            tokio::select! {
                message = stream.message() => {
                    let message = message.map_err(|s| Error::Unavailable(format!("event feed: {}", s.message())))?;
                    let Some(event) = message.and_then(|m| m.event) else { return Ok(()) };
                    // Events already waiting on the stream go into the same transaction: a
                    // consumer that fell behind catches up with one commit per batch, not per event.
                    let mut batch = vec![event];
                    let mut interrupted = None;
                    while batch.len() < MAX_BATCH {
                        match stream.message().now_or_never() {
                            Some(Ok(Some(message))) => batch.extend(message.event),
                            Some(Ok(None)) => {
                                interrupted = Some(Ok(()));
                                break;
                            }
                            Some(Err(s)) => {
                                interrupted = Some(Err(Error::Unavailable(format!("event feed: {}", s.message()))));
                                break;
                            }
                            None => break,
                        }
                    }
                    match self.apply_batch(&batch).await? {
                        Applied::Done | Applied::Duplicate => {}
                        Applied::LostLease => return Ok(()),
                    }
                    if let Some(end) = interrupted {
                        return end;
                    }
                }
                _ = renew.tick() => {
                    if !self.try_lease().await? {
                        return Ok(());
                    }
                    self.record_lag(&mut client).await;
                }
            }
        }
    }

    /// Applies `event` in a consumer span linked to the span that wrote the event.
    async fn apply_traced(&self, event: &Event) -> Result<Applied, Error> {
        let applied = self.apply(event).instrument(self.span(event)).await?;
        self.record_delay(event);
        Ok(applied)
    }

    /// The consumer span of one event, linked to the span that wrote it.
    fn span(&self, event: &Event) -> tracing::Span {
        let span = tracing::info_span!(
            "consume",
            otel.name = %format!("consume {}", event.r#type),
            otel.kind = "consumer",
            messaging.system = "itsm",
            messaging.operation.type = "process",
            messaging.destination.name = %self.options.name,
            messaging.message.id = %event.id,
            itsm.event.sequence = event.sequence,
            itsm.tenant = %event.tenant,
        );
        crate::telemetry::set_root(&span, &self.service);
        crate::telemetry::link_to(&span, &event.traceparent, &event.tracestate);
        span
    }

    fn record_delay(&self, event: &Event) {
        if let Some(at) = &event.occurred_at {
            let committed = at.seconds as f64 + f64::from(at.nanos) / 1e9;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(committed);
            self.metrics.delay.record((now - committed).max(0.0), &self.metrics.attributes);
        }
    }

    /// Applies consecutive events in one transaction: the cursor moves once to the last, each
    /// event's writes sit in a savepoint so that one that fails for good is parked as a dead
    /// letter without undoing the others. When some were applied already (a redelivery after a
    /// reconnect) or the lease moved, they go one at a time, which sorts both out.
    async fn apply_batch(&self, events: &[Event]) -> Result<Applied, Error> {
        let (Some(first), Some(last)) = (events.first(), events.last()) else { return Ok(Applied::Done) };
        if events.len() == 1 {
            return self.apply_traced(first).await;
        }
        let txn = self.db.begin().await?;
        if !self.advance(&txn, first.sequence, last.sequence).await? {
            txn.rollback().await?;
            for event in events {
                if let Applied::LostLease = self.apply_traced(event).await? {
                    return Ok(Applied::LostLease);
                }
            }
            return Ok(Applied::Done);
        }
        let mut parked = vec![false; events.len()];
        for (event, parked) in events.iter().zip(parked.iter_mut()) {
            let savepoint = txn.begin().await?;
            match self.handler.handle(&savepoint, event).instrument(self.span(event)).await {
                Ok(()) => savepoint.commit().await?,
                Err(err @ Error::Unavailable(_)) => {
                    savepoint.rollback().await?;
                    txn.rollback().await?;
                    return Err(err);
                }
                Err(Error::Aborted(_)) => {
                    // A lost race (an optimistic write met a concurrent one), more likely while a
                    // batch holds its locks: the events go again one at a time, as before batching.
                    savepoint.rollback().await?;
                    txn.rollback().await?;
                    for event in events {
                        if let Applied::LostLease = self.apply_traced(event).await? {
                            return Ok(Applied::LostLease);
                        }
                    }
                    return Ok(Applied::Done);
                }
                Err(err) => {
                    savepoint.rollback().await?;
                    self.park(&txn, event, &err).await?;
                    *parked = true;
                }
            }
        }
        txn.commit().await?;
        for (event, parked) in events.iter().zip(parked) {
            if !parked {
                self.handler.committed(event);
            }
            self.record_delay(event);
        }
        if let Some(feed) = &self.feed {
            feed.notify_committed();
        }
        Ok(Applied::Done)
    }

    /// Moves the cursor to `to` and renews the lease, if this replica holds it and the cursor
    /// is before `from` (nothing from `from` on was applied yet).
    async fn advance(&self, txn: &DatabaseTransaction, from: i64, to: i64) -> Result<bool, Error> {
        let lease_until = now_micros() + self.options.lease.as_micros() as i64;
        let advanced = txn
            .execute_raw(stmt(
                txn.get_database_backend(),
                "UPDATE consumer_cursors SET last_sequence = $1, lease_expires_at = $2 \
                 WHERE consumer = $3 AND lease_owner = $4 AND last_sequence < $5",
                [
                    to.into(),
                    lease_until.into(),
                    self.options.name.as_str().into(),
                    self.replica.as_str().into(),
                    from.into(),
                ],
            ))
            .await?;
        Ok(advanced.rows_affected() == 1)
    }

    /// Records an event that cannot be applied (a permanent failure would block the feed
    /// forever), in the transaction that moves the cursor past it.
    async fn park(&self, txn: &DatabaseTransaction, event: &Event, err: &Error) -> Result<(), Error> {
        tracing::error!(consumer = %self.options.name, sequence = event.sequence, event_id = %event.id,
            error = %err, "event could not be applied; parked as dead letter");
        txn.execute_raw(stmt(
            txn.get_database_backend(),
            "INSERT INTO consumer_dead_letters (consumer, sequence, event_id, event_type, error, create_time) \
             VALUES ($1, $2, $3, $4, $5, $6)",
            [
                self.options.name.as_str().into(),
                event.sequence.into(),
                event.id.as_str().into(),
                event.r#type.as_str().into(),
                err.to_string().into(),
                now_micros().into(),
            ],
        ))
        .await?;
        Ok(())
    }

    /// Records how many events the producer has that this consumer has not applied.
    async fn record_lag(&self, client: &mut EventServiceClient<Channel>) {
        let mut request = tonic::Request::new(itsm_proto::events::GetFeedInfoRequest {});
        if !self.options.internal_token.is_empty()
            && let Ok(value) = self.options.internal_token.parse()
        {
            request.metadata_mut().insert(INTERNAL_TOKEN_HEADER, value);
        }
        let (Ok(head), Ok(cursor)) = (client.get_feed_info(request).await, self.cursor().await) else {
            return;
        };
        self.metrics.lag.record((head.into_inner().last_sequence - cursor).max(0), &self.metrics.attributes);
    }

    async fn apply(&self, event: &Event) -> Result<Applied, Error> {
        let txn = self.db.begin().await?;
        if !self.advance(&txn, event.sequence, event.sequence).await? {
            txn.rollback().await?;
            return Ok(if self.holds_lease().await? { Applied::Duplicate } else { Applied::LostLease });
        }
        match self.handler.handle(&txn, event).await {
            Ok(()) => {}
            Err(err @ Error::Unavailable(_)) => {
                txn.rollback().await?;
                return Err(err);
            }
            Err(err) => {
                // Undo the handler's writes, then park the event with the cursor moved past it.
                txn.rollback().await?;
                let txn = self.db.begin().await?;
                if self.advance(&txn, event.sequence, event.sequence).await? {
                    self.park(&txn, event, &err).await?;
                }
                txn.commit().await?;
                return Ok(Applied::Done);
            }
        }
        txn.commit().await?;
        self.handler.committed(event);
        if let Some(feed) = &self.feed {
            feed.notify_committed();
        }
        Ok(Applied::Done)
    }

    async fn ensure_cursor(&self) -> Result<(), Error> {
        let backend = self.db.get_database_backend();
        self.db
            .execute_raw(stmt(
                backend,
                "INSERT INTO consumer_cursors (consumer, last_sequence, lease_owner, lease_expires_at) \
                 VALUES ($1, 0, '', 0) ON CONFLICT (consumer) DO NOTHING",
                [self.options.name.as_str().into()],
            ))
            .await?;
        Ok(())
    }

    /// Takes or renews the lease; false when another live replica holds it.
    async fn try_lease(&self) -> Result<bool, Error> {
        let backend = self.db.get_database_backend();
        let now = now_micros();
        let values: [Value; 4] = [
            self.replica.as_str().into(),
            (now + self.options.lease.as_micros() as i64).into(),
            self.options.name.as_str().into(),
            now.into(),
        ];
        let result = self
            .db
            .execute_raw(stmt(
                backend,
                "UPDATE consumer_cursors SET lease_owner = $1, lease_expires_at = $2 \
                 WHERE consumer = $3 AND (lease_owner = $1 OR lease_expires_at < $4)",
                values,
            ))
            .await?;
        Ok(result.rows_affected() == 1)
    }

    async fn holds_lease(&self) -> Result<bool, Error> {
        let backend = self.db.get_database_backend();
        let row = self
            .db
            .query_one_raw(stmt(
                backend,
                "SELECT lease_owner, lease_expires_at FROM consumer_cursors WHERE consumer = $1",
                [self.options.name.as_str().into()],
            ))
            .await?;
        Ok(match row {
            Some(row) => {
                let owner: String = row.try_get("", "lease_owner")?;
                let until: i64 = row.try_get("", "lease_expires_at")?;
                owner == self.replica && until >= now_micros()
            }
            None => false,
        })
    }

    async fn cursor(&self) -> Result<i64, Error> {
        cursor_of(&self.db, &self.options.name).await
    }
}

/// The last sequence a consumer applied (0 when it never ran).
pub async fn cursor_of(db: &impl ConnectionTrait, consumer: &str) -> Result<i64, Error> {
    let row = db
        .query_one_raw(stmt(
            db.get_database_backend(),
            "SELECT last_sequence FROM consumer_cursors WHERE consumer = $1",
            [consumer.into()],
        ))
        .await?;
    Ok(match row {
        Some(row) => row.try_get("", "last_sequence")?,
        None => 0,
    })
}
