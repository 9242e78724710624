//! Persistence of incidents, problems and known errors. Every write runs in one transaction with
//! its history entry, its outbox event and (for creates) its idempotency key.

pub mod incidents;
pub mod known_errors;
pub mod problems;

use std::sync::Arc;

use sea_orm::{ConnectionTrait, DatabaseConnection};

use itsm_runtime::Error;
use itsm_runtime::db::stmt;
use itsm_runtime::outbox::EventFeed;

use crate::domain::priority::PriorityMatrix;

/// Rules the organisation configures (`[incident]` settings).
#[derive(Debug, Clone)]
pub struct Rules {
    pub priority: PriorityMatrix,
    pub duplicate_window_micros: i64,
    pub candidate_window_days: u32,
    pub candidate_min_incidents: u32,
}

/// The service's database, event feed and rules.
#[derive(Clone)]
pub struct Repository {
    pub db: DatabaseConnection,
    pub feed: EventFeed,
    pub rules: Arc<Rules>,
}

pub use itsm_runtime::keyset::Page;

/// Record kinds in the shared history and search tables.
pub const INCIDENT: &str = "incident";
pub const PROBLEM: &str = "problem";
pub const KNOWN_ERROR: &str = "known_error";

/// Replaces the CI links of a record (`incident_cis` or `known_error_cis`).
pub async fn write_links(
    txn: &impl ConnectionTrait,
    table: &str,
    owner_column: &str,
    owner_id: &str,
    tenant: &str,
    values: &[String],
    open_time: Option<i64>,
) -> Result<(), Error> {
    let backend = txn.get_database_backend();
    txn.execute_raw(stmt(
        backend,
        &format!("DELETE FROM {table} WHERE {owner_column} = $1"),
        [owner_id.into()],
    ))
    .await?;
    let mut seen = std::collections::BTreeSet::new();
    for value in values.iter().filter(|v| seen.insert(v.as_str())) {
        match open_time {
            Some(at) => {
                txn.execute_raw(stmt(
                    backend,
                    &format!("INSERT INTO {table} ({owner_column}, ci, tenant_id, open_time) VALUES ($1, $2, $3, $4)"),
                    [owner_id.into(), value.as_str().into(), tenant.into(), at.into()],
                ))
                .await?;
            }
            None => {
                txn.execute_raw(stmt(
                    backend,
                    &format!("INSERT INTO {table} ({owner_column}, ci, tenant_id) VALUES ($1, $2, $3)"),
                    [owner_id.into(), value.as_str().into(), tenant.into()],
                ))
                .await?;
            }
        }
    }
    Ok(())
}
