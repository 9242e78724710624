//! The history every record keeps: which fields a change touched, from what to what, who, when
//! and why. One `record_history` table per service serves all its record kinds; entries are
//! written in the same transaction as the change.

use sea_orm::{ConnectionTrait, Value};
use sea_orm_migration::prelude::*;
use serde::{Deserialize, Serialize};

use itsm_proto::common::{ChangeSource, FieldChange, HistoryEntry};

use crate::context::CallContext;
use crate::db::{execute_for_backend, now_micros, stmt, timestamp};
use crate::error::Error;

/// One changed field, values as display text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldDiff {
    pub field: String,
    pub old_value: String,
    pub new_value: String,
}

/// Bookkeeping columns that change on every write and say nothing about the record.
const IGNORED: &[&str] =
    &["id", "tenant_id", "version", "create_time", "update_time", "creator", "updater", "number"];

fn display(value: Option<&serde_json::Value>) -> String {
    match value {
        None | Some(serde_json::Value::Null) => String::new(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// Fields that differ between `before` and `after` (either may be absent: create, delete), in
/// field order of `after` (or `before`).
pub fn diff<T: Serialize>(before: Option<&T>, after: Option<&T>) -> Vec<FieldDiff> {
    let object = |record: Option<&T>| match record.map(serde_json::to_value) {
        Some(Ok(serde_json::Value::Object(map))) => map,
        _ => serde_json::Map::new(),
    };
    let (old, new) = (object(before), object(after));
    let keys = if new.is_empty() { &old } else { &new };
    keys.keys()
        .filter(|k| !IGNORED.contains(&k.as_str()))
        .filter_map(|k| {
            let (o, n) = (display(old.get(k)), display(new.get(k)));
            let unset = |s: &str| s.is_empty() || s == "0" || s == "false" || s == "[]";
            if o == n || (before.is_none() && unset(&n)) {
                return None;
            }
            Some(FieldDiff { field: k.clone(), old_value: o, new_value: n })
        })
        .collect()
}

impl From<&FieldDiff> for FieldChange {
    fn from(diff: &FieldDiff) -> Self {
        FieldChange {
            field: diff.field.clone(),
            old_value: diff.old_value.clone(),
            new_value: diff.new_value.clone(),
        }
    }
}

/// Weak etag of a record version.
pub fn etag(version: i64) -> String {
    format!("W/\"{version}\"")
}

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

/// The time of a change to a record last changed at `previous`: now, but always later, so
/// history stays ordered even when clocks step back.
pub fn change_time(previous: i64) -> i64 {
    std::cmp::max(now_micros(), previous + 1)
}

/// One history entry to append.
pub struct NewEntry<'a> {
    pub kind: &'a str,
    pub record_id: &'a str,
    pub version: i64,
    pub change_time: i64,
    pub action: &'a str,
    pub changes: &'a [FieldDiff],
    /// Reason or note given with the change ("" when none).
    pub reason: &'a str,
}

/// Appends an entry in the caller's transaction, as the caller's principal.
pub async fn record(txn: &impl ConnectionTrait, ctx: &CallContext, entry: NewEntry<'_>) -> Result<(), Error> {
    let changes = serde_json::to_string(entry.changes).map_err(|e| Error::Internal(e.to_string()))?;
    txn.execute_raw(stmt(
        txn.get_database_backend(),
        "INSERT INTO record_history (tenant_id, kind, record_id, version, change_time, actor, action, changes, reason) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        [
            ctx.tenant.as_str().into(),
            entry.kind.into(),
            entry.record_id.into(),
            entry.version.into(),
            entry.change_time.into(),
            ctx.principal.as_str().into(),
            entry.action.into(),
            changes.into(),
            entry.reason.into(),
        ],
    ))
    .await?;
    Ok(())
}

/// A record's history after entry `after_id`, oldest first: (entry id, entry, reason).
pub async fn list(
    db: &impl ConnectionTrait,
    tenant: &str,
    kind: &str,
    record_id: &str,
    after_id: i64,
    limit: u64,
) -> Result<Vec<(i64, HistoryEntry, String)>, Error> {
    list_without(db, tenant, kind, record_id, after_id, limit, None).await
}

/// [`list`] without the entries of action `hidden` (what a reader may not see), filtered in the
/// query so that a page is one read however many entries are hidden.
pub async fn list_without(
    db: &impl ConnectionTrait,
    tenant: &str,
    kind: &str,
    record_id: &str,
    after_id: i64,
    limit: u64,
    hidden: Option<&str>,
) -> Result<Vec<(i64, HistoryEntry, String)>, Error> {
    let mut values: Vec<Value> = vec![tenant.into(), kind.into(), record_id.into(), after_id.into()];
    let mut sql = String::from(
        "SELECT id, version, change_time, actor, action, changes, reason FROM record_history \
         WHERE tenant_id = $1 AND kind = $2 AND record_id = $3 AND id > $4",
    );
    // Placeholders in the order of their values (SQLite numbers them as they appear).
    if let Some(hidden) = hidden {
        values.push(hidden.into());
        sql.push_str(&format!(" AND action <> ${}", values.len()));
    }
    values.push(Value::from(limit as i64));
    sql.push_str(&format!(" ORDER BY id LIMIT ${}", values.len()));
    let rows = db.query_all_raw(stmt(db.get_database_backend(), &sql, values)).await?;
    rows.iter()
        .map(|row| {
            let changes: String = row.try_get("", "changes")?;
            let diffs: Vec<FieldDiff> = serde_json::from_str(&changes).unwrap_or_default();
            let entry = HistoryEntry {
                version: row.try_get("", "version")?,
                change_time: Some(timestamp(row.try_get("", "change_time")?)),
                actor: row.try_get("", "actor")?,
                source: ChangeSource::User as i32,
                source_reference: String::new(),
                action: row.try_get("", "action")?,
                changes: diffs.iter().map(FieldChange::from).collect(),
            };
            Ok((row.try_get("", "id")?, entry, row.try_get("", "reason")?))
        })
        .collect()
}

/// The migration that creates `record_history`; services that use this module add it.
pub struct CreateRecordHistory;

impl MigrationName for CreateRecordHistory {
    fn name(&self) -> &str {
        "m20261125_000003_record_history"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateRecordHistory {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let sqlite = "CREATE TABLE record_history (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    record_id TEXT NOT NULL,
    version BIGINT NOT NULL,
    change_time BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    changes TEXT NOT NULL,
    reason TEXT NOT NULL
);
CREATE INDEX record_history_by_record ON record_history (tenant_id, kind, record_id, id)";
        let postgres = sqlite
            .replace("INTEGER PRIMARY KEY AUTOINCREMENT", "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY");
        execute_for_backend(manager.get_connection(), sqlite, &postgres).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared("DROP TABLE IF EXISTS record_history").await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Rec {
        id: &'static str,
        version: i64,
        title: &'static str,
        state: i32,
        tags: Vec<&'static str>,
    }

    #[test]
    fn reports_changed_fields_only() {
        let a = Rec { id: "1", version: 1, title: "disk full", state: 1, tags: vec![] };
        let b = Rec { id: "1", version: 2, title: "disk full", state: 3, tags: vec!["db"] };
        let changes = diff(Some(&a), Some(&b));
        assert_eq!(
            changes,
            vec![
                FieldDiff { field: "state".into(), old_value: "1".into(), new_value: "3".into() },
                FieldDiff { field: "tags".into(), old_value: "[]".into(), new_value: "[\"db\"]".into() },
            ]
        );
    }

    #[test]
    fn a_create_lists_the_fields_that_were_set() {
        let a = Rec { id: "1", version: 1, title: "disk full", state: 0, tags: vec![] };
        let changes = diff(None, Some(&a));
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].field, "title");
        assert!(diff(Some(&a), None).iter().any(|c| c.field == "title" && c.new_value.is_empty()));
    }
}
