//! Persistence of the service desk. Every write runs in one transaction with its history entry,
//! its outbox event, the notifications it causes and (for creates) its idempotency key.

pub mod catalog;
pub mod groups;
pub mod knowledge;
pub mod notes;
pub mod notifications;
pub mod tickets;

use sea_orm::DatabaseConnection;
use tokio::sync::Notify;

use itsm_runtime::outbox::EventFeed;

pub use itsm_runtime::keyset::Page;

#[derive(Clone)]
pub struct Repository {
    pub db: DatabaseConnection,
    pub feed: EventFeed,
    /// Wakes the webhook deliverer when notifications were committed.
    pub deliveries: std::sync::Arc<Notify>,
}

impl Repository {
    /// After a commit that wrote notifications or events.
    pub fn committed(&self) {
        self.feed.notify_committed();
        self.deliveries.notify_one();
    }
}

pub const TICKET: &str = "ticket";
pub const GROUP: &str = "support_group";
