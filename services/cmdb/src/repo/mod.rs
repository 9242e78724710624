//! Persistence of the CMDB. Every write runs in one transaction with its history entry, its
//! outbox event and (for creates) its idempotency key.

pub mod baselines;
pub mod classes;
pub mod graph_cache;
pub mod impact;
pub mod import;
pub mod items;
pub mod relationships;

use sea_orm::DatabaseConnection;

use itsm_proto::common::ChangeSource;
use itsm_runtime::outbox::EventFeed;

/// What caused a write, for history.
#[derive(Debug, Clone)]
pub struct WriteSource {
    pub source: ChangeSource,
    pub reference: String,
}

impl WriteSource {
    pub fn user() -> Self {
        Self { source: ChangeSource::User, reference: String::new() }
    }

    pub fn import(reference: &str) -> Self {
        Self { source: ChangeSource::Import, reference: reference.to_string() }
    }

    /// An implemented change request (`changes/CHG0000123`).
    pub fn change(name: &str) -> Self {
        Self { source: ChangeSource::Change, reference: name.to_string() }
    }

    /// A deployed release (`releases/RLS0000012`).
    pub fn release(name: &str) -> Self {
        Self { source: ChangeSource::Release, reference: name.to_string() }
    }
}

/// The CMDB's database and event feed, and the relationship graphs impact analysis walks.
#[derive(Clone)]
pub struct Repository {
    pub db: DatabaseConnection,
    pub feed: EventFeed,
    pub graphs: graph_cache::GraphCache,
}

impl Repository {
    pub fn new(db: DatabaseConnection, feed: EventFeed) -> Self {
        Self { db, feed, graphs: graph_cache::GraphCache::default() }
    }
}

/// One page of a listing.
pub struct Page<T> {
    pub items: Vec<T>,
    /// Sort key of the last item when there may be more.
    pub next_key: Option<Vec<serde_json::Value>>,
}
