//! Each tenant's relationship graph in memory, kept current with the database, for impact
//! analysis. A tenant's graph is loaded on its first analysis from one snapshot, together with
//! the outbox position that snapshot includes; before every analysis it is brought forward by
//! the CMDB's own outbox events after that position (CI and relationship changes). So a write
//! committed before the call is always seen, whichever replica made it, and a call with nothing
//! new costs one indexed `MAX(sequence)` read. A graph not used for [`IDLE_EVICTION`] is dropped.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use prost::{Message, Name};
use sea_orm::{
    AccessMode, ColumnTrait, DatabaseBackend, DatabaseConnection, EntityTrait, IsolationLevel, QueryFilter,
    QuerySelect, TransactionTrait,
};
use tokio::sync::{OwnedRwLockReadGuard, RwLock};

use itsm_proto::cmdb::{ConfigurationItemChanged, RelationshipChanged};
use itsm_proto::events::Event;
use itsm_runtime::Error;
use itsm_runtime::outbox::{self, EventRange};

use crate::convert::parse_name;
use crate::domain::graph::{RelationshipGraph, key_of};
use crate::domain::relationships::RelKind;
use crate::entity::{configuration_item as ci, relationship};

/// A graph unused this long is dropped (and loaded again when next needed).
pub const IDLE_EVICTION: Duration = Duration::from_secs(30 * 60);
/// Events read per catch-up query.
const EVENT_PAGE: i64 = 2_000;
/// More events than this since the last analysis: loading again is cheaper than replaying.
const REPLAY_LIMIT: usize = 200_000;

/// A tenant's graph and the outbox sequence it includes every event up to.
pub struct IndexedGraph {
    pub graph: RelationshipGraph,
    /// Moved forward under the read lock too, past sequences with no event of the tenant.
    cursor: AtomicI64,
}

struct Slot {
    graph: Arc<RwLock<Option<IndexedGraph>>>,
    used: Instant,
}

/// The graphs of the tenants analysed recently.
#[derive(Clone, Default)]
pub struct GraphCache {
    tenants: Arc<Mutex<HashMap<String, Slot>>>,
}

impl GraphCache {
    /// The tenant's graph with every committed write applied, held for reading. Callers copy
    /// out what they need and drop the guard before their own database reads.
    pub async fn current(
        &self,
        db: &DatabaseConnection,
        tenant: &str,
    ) -> Result<OwnedRwLockReadGuard<Option<IndexedGraph>>, Error> {
        let slot = self.slot(tenant)?;
        let last = outbox::last_sequence_in(db).await?;
        {
            let read = slot.clone().read_owned().await;
            if let Some(indexed) = read.as_ref() {
                let cursor = indexed.cursor.load(Ordering::Acquire);
                if cursor >= last {
                    return Ok(read);
                }
                // Writes of other tenants (or of no graph event) only move the cursor.
                let range = EventRange { after: cursor, through: Some(last), tenant: Some(tenant) };
                if outbox::read_in(db, &range, &graph_event_types(), 1).await?.is_empty() {
                    indexed.cursor.fetch_max(last, Ordering::AcqRel);
                    return Ok(read);
                }
            }
        }
        let mut write = slot.write_owned().await;
        // Caught up in place: a call cancelled half-way leaves the graph consistent with its
        // cursor, and a failed load leaves the previous graph in place.
        let reload = match write.as_mut() {
            Some(indexed) if indexed.cursor.load(Ordering::Acquire) >= last => false,
            Some(indexed) => matches!(catch_up(db, tenant, indexed, last).await?, CaughtUp::TooFarBehind),
            None => true,
        };
        if reload {
            *write = Some(load(db, tenant).await?);
        }
        Ok(write.downgrade())
    }

    fn slot(&self, tenant: &str) -> Result<Arc<RwLock<Option<IndexedGraph>>>, Error> {
        let mut tenants =
            self.tenants.lock().map_err(|_| Error::Internal("graph cache lock poisoned".into()))?;
        let now = Instant::now();
        // Only graphs nobody holds are dropped.
        tenants.retain(|name, slot| {
            name == tenant
                || now.duration_since(slot.used) < IDLE_EVICTION
                || Arc::strong_count(&slot.graph) > 1
        });
        let slot = tenants
            .entry(tenant.to_string())
            .or_insert_with(|| Slot { graph: Arc::new(RwLock::new(None)), used: now });
        slot.used = now;
        Ok(slot.graph.clone())
    }
}

/// Event types that change the graph.
fn graph_event_types() -> Vec<String> {
    vec![ConfigurationItemChanged::full_name(), RelationshipChanged::full_name()]
}

/// Loads a tenant's graph from one snapshot, with the outbox sequence the snapshot includes.
async fn load(db: &DatabaseConnection, tenant: &str) -> Result<IndexedGraph, Error> {
    let started = Instant::now();
    // Postgres: one snapshot for the three reads; SQLite: a read transaction is one already.
    let txn = match db.get_database_backend() {
        DatabaseBackend::Postgres => {
            db.begin_with_config(Some(IsolationLevel::RepeatableRead), Some(AccessMode::ReadOnly)).await?
        }
        _ => db.begin().await?,
    };
    let cursor = outbox::last_sequence_in(&txn).await?;
    let mut graph = RelationshipGraph::default();
    {
        let mut items = ci::Entity::find()
            .select_only()
            .column(ci::Column::Id)
            .column(ci::Column::CiClass)
            .filter(ci::Column::TenantId.eq(tenant))
            .into_tuple::<(String, String)>()
            .stream(&txn)
            .await?;
        while let Some((id, class)) = items.try_next().await? {
            if let Some(key) = key_of(&id) {
                graph.set_class(key, &class);
            }
        }
    }
    {
        let mut edges = relationship::Entity::find()
            .select_only()
            .column(relationship::Column::SourceId)
            .column(relationship::Column::TargetId)
            .column(relationship::Column::RelType)
            .column(relationship::Column::Redundant)
            .filter(relationship::Column::TenantId.eq(tenant))
            .into_tuple::<(String, String, i32, bool)>()
            .stream(&txn)
            .await?;
        while let Some((source, target, kind, redundant)) = edges.try_next().await? {
            if let (Some(source), Some(target), Some(kind)) =
                (key_of(&source), key_of(&target), RelKind::from_proto(kind))
            {
                // The table's unique key already rules out duplicates.
                graph.add_loaded_edge(source, target, kind, redundant);
            }
        }
    }
    txn.commit().await?;
    graph.shrink();
    tracing::info!(
        tenant,
        nodes = graph.node_count(),
        edges = graph.edge_count(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "relationship graph loaded for impact analysis"
    );
    Ok(IndexedGraph { graph, cursor: AtomicI64::new(cursor) })
}

enum CaughtUp {
    Yes,
    TooFarBehind,
}

/// Applies the tenant's graph events after the graph's cursor, through `last`, moving the
/// cursor with each event applied.
async fn catch_up(
    db: &DatabaseConnection,
    tenant: &str,
    indexed: &mut IndexedGraph,
    last: i64,
) -> Result<CaughtUp, Error> {
    let types = graph_event_types();
    let mut applied = 0;
    loop {
        let after = indexed.cursor.load(Ordering::Acquire);
        let range = EventRange { after, through: Some(last), tenant: Some(tenant) };
        let events = outbox::read_in(db, &range, &types, EVENT_PAGE).await?;
        for event in &events {
            apply(&mut indexed.graph, event);
            indexed.cursor.store(event.sequence, Ordering::Release);
        }
        applied += events.len();
        if (events.len() as i64) < EVENT_PAGE {
            break;
        }
        if applied >= REPLAY_LIMIT {
            return Ok(CaughtUp::TooFarBehind);
        }
    }
    indexed.cursor.fetch_max(last, Ordering::AcqRel);
    Ok(CaughtUp::Yes)
}

/// One CI or relationship event applied to the graph; other payloads are ignored.
fn apply(graph: &mut RelationshipGraph, event: &Event) {
    let Some(payload) = &event.payload else { return };
    let key = |name: &str| parse_name(name).as_deref().and_then(key_of);
    if payload.type_url.ends_with(RelationshipChanged::NAME) {
        let Ok(changed) = RelationshipChanged::decode(payload.value.as_slice()) else { return };
        let Some(rel) = changed.relationship else { return };
        let (Some(source), Some(target), Some(kind)) =
            (key(&rel.source), key(&rel.target), RelKind::from_proto(rel.r#type))
        else {
            return;
        };
        match changed.action.as_str() {
            "create" => {
                let redundant = rel
                    .properties
                    .as_ref()
                    .and_then(|p| p.fields.get("redundant"))
                    .is_some_and(|v| matches!(v.kind, Some(prost_types::value::Kind::BoolValue(true))));
                graph.add_edge(source, target, kind, redundant);
            }
            "delete" => graph.remove_edge(source, target, kind),
            _ => {}
        }
    } else if payload.type_url.ends_with(ConfigurationItemChanged::NAME) {
        let Ok(changed) = ConfigurationItemChanged::decode(payload.value.as_slice()) else { return };
        let Some(item) = changed.configuration_item else { return };
        let Some(ci) = key(&item.name) else { return };
        match changed.action.as_str() {
            "delete" => graph.remove_ci(ci),
            _ => graph.set_class(ci, &item.ci_class),
        }
    }
}
