//! Tables every service has: the outbox, idempotency keys and event-consumer cursors.
//! Each service's migrator runs these before its own.

use sea_orm_migration::prelude::*;

use crate::db::execute_for_backend;

/// The runtime's migrations, to put first in a service's `MigratorTrait::migrations()`.
pub fn migrations() -> Vec<Box<dyn MigrationTrait>> {
    vec![Box::new(CreateRuntimeTables)]
}

struct CreateRuntimeTables;

/// SQLite DDL; the Postgres text is derived from it (identity column, BYTEA).
const RUNTIME_TABLES: &str = r"CREATE TABLE outbox (
                sequence INTEGER PRIMARY KEY AUTOINCREMENT,
                event_id TEXT NOT NULL UNIQUE,
                event_type TEXT NOT NULL,
                resource_name TEXT NOT NULL,
                tenant_id TEXT NOT NULL,
                actor TEXT NOT NULL,
                occurred_at BIGINT NOT NULL,
                traceparent TEXT NOT NULL,
                tracestate TEXT NOT NULL,
                payload_type TEXT NOT NULL,
                payload BLOB NOT NULL
            );
            CREATE TABLE idempotency_keys (
                tenant_id TEXT NOT NULL,
                method TEXT NOT NULL,
                request_id TEXT NOT NULL,
                request_hash TEXT NOT NULL,
                resource_name TEXT NOT NULL,
                create_time BIGINT NOT NULL,
                PRIMARY KEY (tenant_id, method, request_id)
            );
            CREATE TABLE consumer_dead_letters (
                consumer TEXT NOT NULL,
                sequence BIGINT NOT NULL,
                event_id TEXT NOT NULL,
                event_type TEXT NOT NULL,
                error TEXT NOT NULL,
                create_time BIGINT NOT NULL,
                PRIMARY KEY (consumer, sequence)
            );
            CREATE TABLE consumer_cursors (
                consumer TEXT PRIMARY KEY,
                last_sequence BIGINT NOT NULL,
                lease_owner TEXT NOT NULL,
                lease_expires_at BIGINT NOT NULL
            )";

impl MigrationName for CreateRuntimeTables {
    fn name(&self) -> &str {
        "m20261125_000001_runtime_tables"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateRuntimeTables {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        let postgres = RUNTIME_TABLES
            .replace("INTEGER PRIMARY KEY AUTOINCREMENT", "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY")
            .replace("BLOB", "BYTEA");
        execute_for_backend(db, RUNTIME_TABLES, &postgres).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for table in ["consumer_dead_letters", "consumer_cursors", "idempotency_keys", "outbox"] {
            db.execute_unprepared(&format!("DROP TABLE IF EXISTS {table}")).await?;
        }
        Ok(())
    }
}
