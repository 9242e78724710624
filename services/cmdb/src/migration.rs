//! The CMDB's schema. Runtime tables (outbox, idempotency, cursors) come first.

use sea_orm_migration::prelude::*;

use itsm_runtime::db::execute_for_backend;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        let mut migrations = itsm_runtime::schema::migrations();
        migrations.push(Box::new(CreateConfigurationItems));
        migrations
    }
}

struct CreateConfigurationItems;

impl MigrationName for CreateConfigurationItems {
    fn name(&self) -> &str {
        "m20261125_100001_configuration_items"
    }
}

const TABLES: &str = r"
CREATE TABLE configuration_items (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    display_name TEXT NOT NULL,
    ci_class TEXT NOT NULL,
    description TEXT NOT NULL,
    lifecycle_status INTEGER NOT NULL,
    environment TEXT NOT NULL,
    criticality INTEGER NOT NULL,
    owner TEXT NOT NULL,
    support_group TEXT NOT NULL,
    labels TEXT NOT NULL,
    attributes TEXT NOT NULL,
    natural_key TEXT NOT NULL,
    version BIGINT NOT NULL,
    create_time BIGINT NOT NULL,
    update_time BIGINT NOT NULL,
    creator TEXT NOT NULL,
    updater TEXT NOT NULL
);
CREATE UNIQUE INDEX configuration_items_natural_key ON configuration_items (tenant_id, ci_class, natural_key);
CREATE INDEX configuration_items_by_name ON configuration_items (tenant_id, display_name, id);
CREATE INDEX configuration_items_by_create ON configuration_items (tenant_id, create_time, id);
CREATE INDEX configuration_items_by_update ON configuration_items (tenant_id, update_time, id);
CREATE INDEX configuration_items_by_id ON configuration_items (tenant_id, id);
CREATE TABLE ci_labels (
    ci_id TEXT NOT NULL,
    key TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (ci_id, key)
);
CREATE INDEX ci_labels_by_value ON ci_labels (tenant_id, key, value, ci_id);
CREATE TABLE ci_classes (
    tenant_id TEXT NOT NULL,
    class_id TEXT NOT NULL,
    display_name TEXT NOT NULL,
    parent TEXT NOT NULL,
    description TEXT NOT NULL,
    attributes TEXT NOT NULL,
    natural_key TEXT NOT NULL,
    version BIGINT NOT NULL,
    create_time BIGINT NOT NULL,
    update_time BIGINT NOT NULL,
    creator TEXT NOT NULL,
    updater TEXT NOT NULL,
    PRIMARY KEY (tenant_id, class_id)
);
CREATE TABLE ci_relationships (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    source_id TEXT NOT NULL,
    target_id TEXT NOT NULL,
    rel_type INTEGER NOT NULL,
    redundant BOOLEAN NOT NULL,
    properties TEXT NOT NULL,
    version BIGINT NOT NULL,
    create_time BIGINT NOT NULL,
    update_time BIGINT NOT NULL,
    creator TEXT NOT NULL,
    updater TEXT NOT NULL
);
CREATE UNIQUE INDEX ci_relationships_unique ON ci_relationships (tenant_id, source_id, target_id, rel_type);
CREATE INDEX ci_relationships_by_target ON ci_relationships (tenant_id, target_id, rel_type, source_id);
CREATE INDEX ci_relationships_by_source ON ci_relationships (tenant_id, source_id, rel_type, target_id);
CREATE TABLE baselines (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    display_name TEXT NOT NULL,
    filter TEXT NOT NULL,
    item_count INTEGER NOT NULL,
    snapshot TEXT NOT NULL,
    create_time BIGINT NOT NULL,
    creator TEXT NOT NULL
);
CREATE INDEX baselines_by_time ON baselines (tenant_id, create_time, id)";

#[async_trait::async_trait]
impl MigrationTrait for CreateConfigurationItems {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        let history_sqlite = r"
CREATE TABLE ci_history (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id TEXT NOT NULL,
    ci_id TEXT NOT NULL,
    version BIGINT NOT NULL,
    change_time BIGINT NOT NULL,
    actor TEXT NOT NULL,
    source INTEGER NOT NULL,
    source_reference TEXT NOT NULL,
    action TEXT NOT NULL,
    changes TEXT NOT NULL,
    snapshot TEXT NOT NULL
);
CREATE UNIQUE INDEX ci_history_by_ci ON ci_history (tenant_id, ci_id, version);
CREATE TABLE relationship_history (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id TEXT NOT NULL,
    relationship_id TEXT NOT NULL,
    source_id TEXT NOT NULL,
    target_id TEXT NOT NULL,
    rel_type INTEGER NOT NULL,
    action TEXT NOT NULL,
    change_time BIGINT NOT NULL,
    actor TEXT NOT NULL,
    source INTEGER NOT NULL,
    source_reference TEXT NOT NULL,
    properties TEXT NOT NULL
);
CREATE INDEX relationship_history_by_source ON relationship_history (tenant_id, source_id, id);
CREATE INDEX relationship_history_by_target ON relationship_history (tenant_id, target_id, id)";
        let history_postgres = history_sqlite
            .replace("INTEGER PRIMARY KEY AUTOINCREMENT", "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY");
        execute_for_backend(
            db,
            &format!("{TABLES};\n{history_sqlite}"),
            &format!("{TABLES};\n{history_postgres}"),
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for table in [
            "relationship_history",
            "baselines",
            "ci_relationships",
            "ci_classes",
            "ci_history",
            "ci_labels",
            "configuration_items",
        ] {
            db.execute_unprepared(&format!("DROP TABLE IF EXISTS {table}")).await?;
        }
        Ok(())
    }
}
