//! The incident service's schema. Runtime tables (outbox, idempotency, cursors) come first.

use sea_orm_migration::prelude::*;

use itsm_runtime::db::execute_for_backend;
use itsm_runtime::history::CreateRecordHistory;
use itsm_runtime::numbers::CreateNumberSequences;
use itsm_runtime::search::CreateSearchDocuments;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        let mut migrations = itsm_runtime::schema::migrations();
        migrations.push(Box::new(CreateNumberSequences));
        migrations.push(Box::new(CreateRecordHistory));
        migrations.push(Box::new(CreateSearchDocuments));
        migrations.push(Box::new(CreateIncidentTables));
        migrations
    }
}

struct CreateIncidentTables;

impl MigrationName for CreateIncidentTables {
    fn name(&self) -> &str {
        "m20261125_200001_incidents_problems_known_errors"
    }
}

/// Written for SQLite; the same text serves Postgres.
const TABLES: &str = r"
CREATE TABLE incidents (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    number TEXT NOT NULL,
    caller TEXT NOT NULL,
    service_desk_ticket TEXT NOT NULL,
    short_description TEXT NOT NULL,
    description TEXT NOT NULL,
    category TEXT NOT NULL,
    subcategory TEXT NOT NULL,
    business_service TEXT NOT NULL,
    configuration_items TEXT NOT NULL,
    impact INTEGER NOT NULL,
    urgency INTEGER NOT NULL,
    priority INTEGER NOT NULL,
    state INTEGER NOT NULL,
    on_hold_reason INTEGER NOT NULL,
    assignment_group TEXT NOT NULL,
    assignee TEXT NOT NULL,
    support_tier INTEGER NOT NULL,
    manager_escalated BOOLEAN NOT NULL,
    resolution_code INTEGER NOT NULL,
    resolution_notes TEXT NOT NULL,
    major BOOLEAN NOT NULL,
    parent_incident TEXT NOT NULL,
    possible_duplicates TEXT NOT NULL,
    known_errors TEXT NOT NULL,
    suggested_workaround TEXT NOT NULL,
    reassignment_count INTEGER NOT NULL,
    open_time BIGINT NOT NULL,
    first_response_time BIGINT NOT NULL,
    resolve_time BIGINT NOT NULL,
    close_time BIGINT NOT NULL,
    version BIGINT NOT NULL,
    create_time BIGINT NOT NULL,
    update_time BIGINT NOT NULL,
    creator TEXT NOT NULL,
    updater TEXT NOT NULL
);
CREATE UNIQUE INDEX incidents_by_number ON incidents (tenant_id, number);
CREATE INDEX incidents_by_open ON incidents (tenant_id, open_time, id);
CREATE INDEX incidents_by_update ON incidents (tenant_id, update_time, id);
CREATE INDEX incidents_by_priority ON incidents (tenant_id, priority, id);
CREATE INDEX incidents_by_state ON incidents (tenant_id, state, resolve_time);
CREATE INDEX incidents_resolved ON incidents (state, resolve_time);
CREATE INDEX incidents_by_parent ON incidents (tenant_id, parent_incident);
CREATE INDEX incidents_by_category ON incidents (tenant_id, category, subcategory, open_time);
CREATE TABLE incident_cis (
    incident_id TEXT NOT NULL,
    ci TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    open_time BIGINT NOT NULL,
    PRIMARY KEY (incident_id, ci)
);
CREATE INDEX incident_cis_by_ci ON incident_cis (tenant_id, ci, open_time);
CREATE TABLE incident_notes (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    incident_id TEXT NOT NULL,
    kind INTEGER NOT NULL,
    text TEXT NOT NULL,
    author TEXT NOT NULL,
    create_time BIGINT NOT NULL
);
CREATE INDEX incident_notes_by_incident ON incident_notes (tenant_id, incident_id, create_time, id);
CREATE TABLE problems (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    number TEXT NOT NULL,
    short_description TEXT NOT NULL,
    description TEXT NOT NULL,
    state INTEGER NOT NULL,
    priority INTEGER NOT NULL,
    root_cause TEXT NOT NULL,
    workaround TEXT NOT NULL,
    configuration_items TEXT NOT NULL,
    incidents TEXT NOT NULL,
    assignment_group TEXT NOT NULL,
    assignee TEXT NOT NULL,
    known_error TEXT NOT NULL,
    changes TEXT NOT NULL,
    resolution_notes TEXT NOT NULL,
    version BIGINT NOT NULL,
    create_time BIGINT NOT NULL,
    update_time BIGINT NOT NULL,
    creator TEXT NOT NULL,
    updater TEXT NOT NULL
);
CREATE UNIQUE INDEX problems_by_number ON problems (tenant_id, number);
CREATE INDEX problems_by_create ON problems (tenant_id, create_time, id);
CREATE INDEX problems_by_update ON problems (tenant_id, update_time, id);
CREATE INDEX problems_by_priority ON problems (tenant_id, priority, id);
CREATE TABLE problem_incidents (
    problem_id TEXT NOT NULL,
    incident TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    PRIMARY KEY (problem_id, incident)
);
CREATE INDEX problem_incidents_by_incident ON problem_incidents (tenant_id, incident);
CREATE TABLE problem_changes (
    tenant_id TEXT NOT NULL,
    change TEXT NOT NULL,
    problem_id TEXT NOT NULL,
    PRIMARY KEY (tenant_id, change)
);
CREATE TABLE known_errors (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    number TEXT NOT NULL,
    problem TEXT NOT NULL,
    short_description TEXT NOT NULL,
    symptoms TEXT NOT NULL,
    workaround TEXT NOT NULL,
    configuration_items TEXT NOT NULL,
    status INTEGER NOT NULL,
    version BIGINT NOT NULL,
    create_time BIGINT NOT NULL,
    update_time BIGINT NOT NULL,
    creator TEXT NOT NULL,
    updater TEXT NOT NULL
);
CREATE UNIQUE INDEX known_errors_by_number ON known_errors (tenant_id, number);
CREATE INDEX known_errors_by_create ON known_errors (tenant_id, create_time, id);
CREATE INDEX known_errors_by_update ON known_errors (tenant_id, update_time, id);
CREATE TABLE known_error_cis (
    known_error_id TEXT NOT NULL,
    ci TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    PRIMARY KEY (known_error_id, ci)
);
CREATE INDEX known_error_cis_by_ci ON known_error_cis (tenant_id, ci)";

#[async_trait::async_trait]
impl MigrationTrait for CreateIncidentTables {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        execute_for_backend(db, TABLES, TABLES).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for table in [
            "known_error_cis",
            "known_errors",
            "problem_changes",
            "problem_incidents",
            "problems",
            "incident_notes",
            "incident_cis",
            "incidents",
        ] {
            db.execute_unprepared(&format!("DROP TABLE IF EXISTS {table}")).await?;
        }
        Ok(())
    }
}
