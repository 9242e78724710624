//! This service's schema: for now the runtime's tables (outbox, idempotency keys, consumer
//! cursors); the domain issue adds its own migrations after them.

use sea_orm_migration::prelude::*;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        itsm_runtime::schema::migrations()
    }
}
