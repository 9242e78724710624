//! Persistence of incidents, problems and known errors. Every write runs in one transaction with
//! its history entry, its outbox event and (for creates) its idempotency key.

pub mod filters;
pub mod incidents;
pub mod known_errors;
pub mod problems;
pub mod search;

use std::sync::Arc;

use sea_orm::{ConnectionTrait, DatabaseConnection, Value};

use itsm_proto::common::{FieldChange, HistoryEntry};
use itsm_runtime::db::{stmt, timestamp};
use itsm_runtime::outbox::EventFeed;
use itsm_runtime::{CallContext, Error};

use crate::convert::etag;
use crate::domain::diff::FieldDiff;
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

/// One page of a listing.
pub struct Page<T> {
    pub items: Vec<T>,
    /// Sort key of the last item when there may be more.
    pub next_key: Option<Vec<serde_json::Value>>,
}

/// Record kinds in the shared history and search tables.
pub const INCIDENT: &str = "incident";
pub const PROBLEM: &str = "problem";
pub const KNOWN_ERROR: &str = "known_error";

/// `ABORTED` unless `expected` is empty or the record's current etag.
pub fn check_etag(expected: &str, version: i64, name: &str) -> Result<(), Error> {
    if expected.is_empty() || expected == etag(version) {
        Ok(())
    } else {
        Err(Error::Aborted(format!(
            "etag mismatch: {name} was changed since it was read (current etag {})",
            etag(version)
        )))
    }
}

/// Appends a history entry in the caller's transaction.
#[allow(clippy::too_many_arguments)] // each is one column of the entry
pub async fn record_history(
    txn: &impl ConnectionTrait,
    ctx: &CallContext,
    kind: &str,
    record_id: &str,
    version: i64,
    change_time: i64,
    action: &str,
    diffs: &[FieldDiff],
    reason: &str,
) -> Result<(), Error> {
    let changes = serde_json::to_string(diffs).map_err(|e| Error::Internal(e.to_string()))?;
    txn.execute_raw(stmt(
        txn.get_database_backend(),
        "INSERT INTO record_history (tenant_id, kind, record_id, version, change_time, actor, action, changes, reason) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        [
            ctx.tenant.as_str().into(),
            kind.into(),
            record_id.into(),
            version.into(),
            change_time.into(),
            ctx.principal.as_str().into(),
            action.into(),
            changes.into(),
            reason.into(),
        ],
    ))
    .await?;
    Ok(())
}

/// A record's history after entry `after_id`, oldest first: (entry id, entry, reason).
pub async fn history(
    db: &impl ConnectionTrait,
    tenant: &str,
    kind: &str,
    record_id: &str,
    after_id: i64,
    limit: u64,
) -> Result<Vec<(i64, HistoryEntry, String)>, Error> {
    let rows = db
        .query_all_raw(stmt(
            db.get_database_backend(),
            "SELECT id, version, change_time, actor, action, changes, reason FROM record_history \
             WHERE tenant_id = $1 AND kind = $2 AND record_id = $3 AND id > $4 ORDER BY id LIMIT $5",
            [tenant.into(), kind.into(), record_id.into(), after_id.into(), Value::from(limit as i64)],
        ))
        .await?;
    rows.iter()
        .map(|row| {
            let changes: String = row.try_get("", "changes")?;
            let diffs: Vec<FieldDiff> = serde_json::from_str(&changes).unwrap_or_default();
            let entry = HistoryEntry {
                version: row.try_get("", "version")?,
                change_time: Some(timestamp(row.try_get("", "change_time")?)),
                actor: row.try_get("", "actor")?,
                source: itsm_proto::common::ChangeSource::User as i32,
                source_reference: String::new(),
                action: row.try_get("", "action")?,
                changes: diffs.iter().map(field_change).collect(),
            };
            Ok((row.try_get("", "id")?, entry, row.try_get("", "reason")?))
        })
        .collect()
}

pub fn field_change(diff: &FieldDiff) -> FieldChange {
    FieldChange {
        field: diff.field.clone(),
        old_value: diff.old_value.clone(),
        new_value: diff.new_value.clone(),
    }
}

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

/// The time of a change to a record last changed at `previous`: now, but always later.
pub fn after(previous: i64) -> i64 {
    std::cmp::max(itsm_runtime::db::now_micros(), previous + 1)
}
