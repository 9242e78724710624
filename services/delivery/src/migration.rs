//! This service's schema: the runtime's tables (outbox, idempotency keys, consumer cursors), then
//! service level management's.

use sea_orm_migration::prelude::*;

use itsm_runtime::db::execute_for_backend;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        let mut migrations = itsm_runtime::schema::migrations();
        migrations.push(Box::new(CreateServiceLevel));
        migrations.push(Box::new(CreateObjectives));
        migrations.push(Box::new(CreateOutages));
        migrations.push(Box::new(AddClockCustomer));
        migrations.push(Box::new(CreateOfferings));
        migrations.push(Box::new(itsm_runtime::documents::CreateDocuments));
        migrations.push(Box::new(CreateCapacitySamples));
        migrations
    }
}

struct CreateServiceLevel;

impl MigrationName for CreateServiceLevel {
    fn name(&self) -> &str {
        "m20261125_600001_service_level"
    }
}

const TABLES: &str = r"
CREATE TABLE business_calendars (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    display_name TEXT NOT NULL,
    time_zone TEXT NOT NULL,
    weekly TEXT NOT NULL,
    holidays TEXT NOT NULL,
    exceptions TEXT NOT NULL,
    version BIGINT NOT NULL,
    create_time BIGINT NOT NULL,
    update_time BIGINT NOT NULL,
    creator TEXT NOT NULL,
    updater TEXT NOT NULL
);
CREATE UNIQUE INDEX business_calendars_by_name ON business_calendars (tenant_id, display_name);
CREATE TABLE service_level_agreements (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    display_name TEXT NOT NULL,
    agreement_type INTEGER NOT NULL,
    business_service TEXT NOT NULL,
    counterparty TEXT NOT NULL,
    targets TEXT NOT NULL,
    active BOOLEAN NOT NULL,
    version BIGINT NOT NULL,
    create_time BIGINT NOT NULL,
    update_time BIGINT NOT NULL,
    creator TEXT NOT NULL,
    updater TEXT NOT NULL
);
CREATE UNIQUE INDEX service_level_agreements_by_name ON service_level_agreements (tenant_id, display_name);
CREATE INDEX service_level_agreements_by_service ON service_level_agreements (tenant_id, business_service);
CREATE INDEX service_level_agreements_by_create ON service_level_agreements (tenant_id, create_time, id);
CREATE INDEX service_level_agreements_by_update ON service_level_agreements (tenant_id, update_time, id);
CREATE TABLE record_observations (
    tenant_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    record TEXT NOT NULL,
    sequence BIGINT NOT NULL,
    observed_time BIGINT NOT NULL,
    state TEXT NOT NULL,
    priority INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, event_id)
);
CREATE INDEX record_observations_by_record ON record_observations (tenant_id, record, observed_time);
CREATE TABLE sla_clocks (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    agreement_id TEXT NOT NULL,
    target_index INTEGER NOT NULL,
    metric INTEGER NOT NULL,
    record TEXT NOT NULL,
    business_service TEXT NOT NULL,
    state INTEGER NOT NULL,
    priority INTEGER NOT NULL,
    start_time BIGINT NOT NULL,
    due_time BIGINT NOT NULL,
    stop_time BIGINT NOT NULL,
    breach_time BIGINT NOT NULL,
    elapsed_ms BIGINT NOT NULL,
    target_ms BIGINT NOT NULL,
    warnings TEXT NOT NULL,
    warned TEXT NOT NULL,
    breach_emitted INTEGER NOT NULL,
    next_alert_time BIGINT NOT NULL,
    stale INTEGER NOT NULL,
    version BIGINT NOT NULL,
    create_time BIGINT NOT NULL,
    update_time BIGINT NOT NULL
);
CREATE UNIQUE INDEX sla_clocks_by_target ON sla_clocks (tenant_id, record, agreement_id, target_index);
CREATE INDEX sla_clocks_by_agreement ON sla_clocks (tenant_id, agreement_id);
CREATE INDEX sla_clocks_by_alert ON sla_clocks (next_alert_time);
CREATE INDEX sla_clocks_by_stale ON sla_clocks (stale);
CREATE INDEX sla_clocks_by_due ON sla_clocks (tenant_id, due_time, id);
CREATE INDEX sla_clocks_by_start ON sla_clocks (tenant_id, start_time, id);
CREATE INDEX sla_clocks_by_update ON sla_clocks (tenant_id, update_time, id)";

#[async_trait::async_trait]
impl MigrationTrait for CreateServiceLevel {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        execute_for_backend(manager.get_connection(), TABLES, TABLES).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for table in ["sla_clocks", "record_observations", "service_level_agreements", "business_calendars"] {
            db.execute_unprepared(&format!("DROP TABLE IF EXISTS {table}")).await?;
        }
        Ok(())
    }
}

struct CreateObjectives;

impl MigrationName for CreateObjectives {
    fn name(&self) -> &str {
        "m20261125_600002_objectives"
    }
}

/// `{real}` is the floating-point type of the backend.
const OBJECTIVES: &str = r"
CREATE TABLE service_level_objectives (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    slo_name TEXT NOT NULL,
    display_name TEXT NOT NULL,
    service TEXT NOT NULL,
    business_service TEXT NOT NULL,
    target {real} NOT NULL,
    window_seconds BIGINT NOT NULL,
    budgeting_method TEXT NOT NULL,
    alert_windows TEXT NOT NULL,
    episodes TEXT NOT NULL,
    create_time BIGINT NOT NULL,
    update_time BIGINT NOT NULL,
    creator TEXT NOT NULL,
    updater TEXT NOT NULL
);
CREATE UNIQUE INDEX service_level_objectives_by_name ON service_level_objectives (tenant_id, slo_name);
CREATE TABLE sli_samples (
    slo_id TEXT NOT NULL,
    end_time BIGINT NOT NULL,
    good BIGINT NOT NULL,
    total BIGINT NOT NULL,
    PRIMARY KEY (slo_id, end_time)
)";

#[async_trait::async_trait]
impl MigrationTrait for CreateObjectives {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let sqlite = OBJECTIVES.replace("{real}", "REAL");
        let postgres = OBJECTIVES.replace("{real}", "DOUBLE PRECISION");
        execute_for_backend(manager.get_connection(), &sqlite, &postgres).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for table in ["sli_samples", "service_level_objectives"] {
            db.execute_unprepared(&format!("DROP TABLE IF EXISTS {table}")).await?;
        }
        Ok(())
    }
}

struct CreateOutages;

impl MigrationName for CreateOutages {
    fn name(&self) -> &str {
        "m20261125_600003_outages"
    }
}

const OUTAGES: &str = r"
CREATE TABLE outages (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    service TEXT NOT NULL,
    configuration_item TEXT NOT NULL,
    planned BOOLEAN NOT NULL,
    kind INTEGER NOT NULL,
    start_time BIGINT NOT NULL,
    end_time BIGINT NOT NULL,
    description TEXT NOT NULL,
    cause TEXT NOT NULL,
    version BIGINT NOT NULL,
    create_time BIGINT NOT NULL,
    update_time BIGINT NOT NULL,
    creator TEXT NOT NULL,
    updater TEXT NOT NULL
);
CREATE INDEX outages_by_service ON outages (tenant_id, service, start_time);
CREATE INDEX outages_by_start ON outages (tenant_id, start_time, id);
CREATE INDEX outages_by_cause ON outages (tenant_id, cause)";

#[async_trait::async_trait]
impl MigrationTrait for CreateOutages {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        execute_for_backend(manager.get_connection(), OUTAGES, OUTAGES).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared("DROP TABLE IF EXISTS outages").await?;
        Ok(())
    }
}

/// Reports attain per customer: each clock keeps its record's customer.
struct AddClockCustomer;

impl MigrationName for AddClockCustomer {
    fn name(&self) -> &str {
        "m20261125_600004_clock_customer"
    }
}

const CLOCK_CUSTOMER: &str = r"
ALTER TABLE sla_clocks ADD COLUMN customer TEXT NOT NULL DEFAULT '';
CREATE INDEX sla_clocks_by_stop ON sla_clocks (tenant_id, stop_time)";

#[async_trait::async_trait]
impl MigrationTrait for AddClockCustomer {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        execute_for_backend(manager.get_connection(), CLOCK_CUSTOMER, CLOCK_CUSTOMER).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared("DROP INDEX IF EXISTS sla_clocks_by_stop").await?;
        db.execute_unprepared("ALTER TABLE sla_clocks DROP COLUMN customer").await?;
        Ok(())
    }
}

struct CreateOfferings;

impl MigrationName for CreateOfferings {
    fn name(&self) -> &str {
        "m20261125_600005_service_offerings"
    }
}

const OFFERINGS: &str = r"
CREATE TABLE service_offerings (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    display_name TEXT NOT NULL,
    business_service TEXT NOT NULL,
    description TEXT NOT NULL,
    hours TEXT NOT NULL,
    owner TEXT NOT NULL,
    customers TEXT NOT NULL,
    version BIGINT NOT NULL,
    create_time BIGINT NOT NULL,
    update_time BIGINT NOT NULL,
    creator TEXT NOT NULL,
    updater TEXT NOT NULL
);
CREATE UNIQUE INDEX service_offerings_by_name ON service_offerings (tenant_id, display_name);
CREATE INDEX service_offerings_by_service ON service_offerings (tenant_id, business_service)";

#[async_trait::async_trait]
impl MigrationTrait for CreateOfferings {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        execute_for_backend(manager.get_connection(), OFFERINGS, OFFERINGS).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared("DROP TABLE IF EXISTS service_offerings").await?;
        Ok(())
    }
}

struct CreateCapacitySamples;

impl MigrationName for CreateCapacitySamples {
    fn name(&self) -> &str {
        "m20261125_600006_capacity_samples"
    }
}

const CAPACITY_SAMPLES: &str = r"
CREATE TABLE capacity_samples (
    resource_id TEXT NOT NULL,
    width_seconds BIGINT NOT NULL,
    start_time BIGINT NOT NULL,
    tenant_id TEXT NOT NULL,
    count BIGINT NOT NULL,
    min_value DOUBLE PRECISION NOT NULL,
    max_value DOUBLE PRECISION NOT NULL,
    sum_value DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (resource_id, width_seconds, start_time)
)";

#[async_trait::async_trait]
impl MigrationTrait for CreateCapacitySamples {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        execute_for_backend(manager.get_connection(), CAPACITY_SAMPLES, CAPACITY_SAMPLES).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared("DROP TABLE IF EXISTS capacity_samples").await?;
        Ok(())
    }
}
