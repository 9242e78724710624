//! The change service's schema. Runtime tables (outbox, idempotency, cursors) come first.

use sea_orm_migration::prelude::*;

use itsm_runtime::db::execute_for_backend;
use itsm_runtime::history::CreateRecordHistory;
use itsm_runtime::numbers::CreateNumberSequences;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        let mut migrations = itsm_runtime::schema::migrations();
        migrations.push(Box::new(CreateNumberSequences));
        migrations.push(Box::new(CreateRecordHistory));
        migrations.push(Box::new(CreateChanges));
        migrations.push(Box::new(CreateChangesets));
        migrations.push(Box::new(CreateReleases));
        migrations.push(Box::new(itsm_runtime::documents::CreateDocuments));
        migrations.push(Box::new(AddServicesWindowsReviews));
        migrations.push(Box::new(AddImpactGraphs));
        migrations.push(Box::new(AddApprovalRules));
        migrations.push(Box::new(AddTemplates));
        migrations
    }
}

struct CreateChanges;

impl MigrationName for CreateChanges {
    fn name(&self) -> &str {
        "m20261125_300001_changes"
    }
}

/// The same text serves SQLite and Postgres.
const TABLES: &str = r"
CREATE TABLE changes (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    number TEXT NOT NULL,
    change_type INTEGER NOT NULL,
    state INTEGER NOT NULL,
    short_description TEXT NOT NULL,
    description TEXT NOT NULL,
    justification TEXT NOT NULL,
    implementation_plan TEXT NOT NULL,
    backout_plan TEXT NOT NULL,
    test_plan TEXT NOT NULL,
    configuration_items TEXT NOT NULL,
    planned_start_time BIGINT NOT NULL,
    planned_end_time BIGINT NOT NULL,
    risk INTEGER NOT NULL,
    risk_score INTEGER NOT NULL,
    risk_factors TEXT NOT NULL,
    risk_answers TEXT NOT NULL,
    max_criticality INTEGER NOT NULL,
    business_services INTEGER NOT NULL,
    assignment_group TEXT NOT NULL,
    assignee TEXT NOT NULL,
    approvals TEXT NOT NULL,
    required_approvals INTEGER NOT NULL,
    problem TEXT NOT NULL,
    conflicts TEXT NOT NULL,
    actual_start_time BIGINT NOT NULL,
    actual_end_time BIGINT NOT NULL,
    outcome INTEGER NOT NULL,
    version BIGINT NOT NULL,
    create_time BIGINT NOT NULL,
    update_time BIGINT NOT NULL,
    creator TEXT NOT NULL,
    updater TEXT NOT NULL
);
CREATE UNIQUE INDEX changes_by_number ON changes (tenant_id, number);
CREATE INDEX changes_by_start ON changes (tenant_id, planned_start_time, id);
CREATE INDEX changes_by_create ON changes (tenant_id, create_time, id);
CREATE INDEX changes_by_update ON changes (tenant_id, update_time, id);
CREATE TABLE change_cis (
    change_id TEXT NOT NULL,
    ci TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    state INTEGER NOT NULL,
    outcome INTEGER NOT NULL,
    planned_start_time BIGINT NOT NULL,
    planned_end_time BIGINT NOT NULL,
    PRIMARY KEY (change_id, ci)
);
CREATE INDEX change_cis_by_ci ON change_cis (tenant_id, ci, planned_start_time);
CREATE TABLE blackout_windows (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    display_name TEXT NOT NULL,
    reason TEXT NOT NULL,
    start_time BIGINT NOT NULL,
    end_time BIGINT NOT NULL,
    create_time BIGINT NOT NULL,
    creator TEXT NOT NULL
);
CREATE INDEX blackout_windows_by_end ON blackout_windows (tenant_id, end_time)";

#[async_trait::async_trait]
impl MigrationTrait for CreateChanges {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        execute_for_backend(manager.get_connection(), TABLES, TABLES).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for table in ["blackout_windows", "change_cis", "changes"] {
            db.execute_unprepared(&format!("DROP TABLE IF EXISTS {table}")).await?;
        }
        Ok(())
    }
}

struct CreateChangesets;

impl MigrationName for CreateChangesets {
    fn name(&self) -> &str {
        "m20261125_300002_changesets"
    }
}

/// Links are kept by change number, so a changeset naming a change that does not exist (yet) is
/// kept and reported, never dropped.
const CHANGESETS: &str = r"
CREATE TABLE changesets (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    repository TEXT NOT NULL,
    revision TEXT NOT NULL,
    author TEXT NOT NULL,
    committer TEXT NOT NULL,
    commit_time BIGINT NOT NULL,
    message TEXT NOT NULL,
    branch TEXT NOT NULL,
    files TEXT NOT NULL,
    create_time BIGINT NOT NULL,
    creator TEXT NOT NULL
);
CREATE UNIQUE INDEX changesets_by_revision ON changesets (tenant_id, repository, revision);
CREATE INDEX changesets_by_time ON changesets (tenant_id, commit_time, id);
CREATE INDEX changesets_by_author ON changesets (tenant_id, author, commit_time);
CREATE TABLE changeset_changes (
    changeset_id TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    change_name TEXT NOT NULL,
    change_number TEXT NOT NULL,
    source TEXT NOT NULL,
    PRIMARY KEY (changeset_id, change_number)
);
CREATE INDEX changeset_changes_by_change ON changeset_changes (tenant_id, change_number)";

#[async_trait::async_trait]
impl MigrationTrait for CreateChangesets {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        execute_for_backend(manager.get_connection(), CHANGESETS, CHANGESETS).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for table in ["changeset_changes", "changesets"] {
            db.execute_unprepared(&format!("DROP TABLE IF EXISTS {table}")).await?;
        }
        Ok(())
    }
}

struct CreateReleases;

impl MigrationName for CreateReleases {
    fn name(&self) -> &str {
        "m20261125_300003_releases"
    }
}

const RELEASES: &str = r"
CREATE TABLE releases (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    number TEXT NOT NULL,
    release_type INTEGER NOT NULL,
    state INTEGER NOT NULL,
    version_label TEXT NOT NULL,
    short_description TEXT NOT NULL,
    description TEXT NOT NULL,
    changes TEXT NOT NULL,
    configuration_items TEXT NOT NULL,
    environments TEXT NOT NULL,
    artefacts TEXT NOT NULL,
    evidence TEXT NOT NULL,
    rollouts TEXT NOT NULL,
    planned_release_time BIGINT NOT NULL,
    version BIGINT NOT NULL,
    create_time BIGINT NOT NULL,
    update_time BIGINT NOT NULL,
    creator TEXT NOT NULL,
    updater TEXT NOT NULL
);
CREATE UNIQUE INDEX releases_by_number ON releases (tenant_id, number);
CREATE INDEX releases_by_planned ON releases (tenant_id, planned_release_time, id);
CREATE INDEX releases_by_create ON releases (tenant_id, create_time, id);
CREATE INDEX releases_by_update ON releases (tenant_id, update_time, id)";

#[async_trait::async_trait]
impl MigrationTrait for CreateReleases {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        execute_for_backend(manager.get_connection(), RELEASES, RELEASES).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared("DROP TABLE IF EXISTS releases").await?;
        Ok(())
    }
}

struct AddServicesWindowsReviews;

impl MigrationName for AddServicesWindowsReviews {
    fn name(&self) -> &str {
        "m20261125_300004_services_windows_reviews"
    }
}

/// The names of the business services behind the affected CIs (maintenance windows of a
/// service apply to its CIs' changes), whether the window lies outside them, and the
/// post-implementation review (JSON; "" = none).
const SERVICES_WINDOWS_REVIEWS: &str =
    "ALTER TABLE changes ADD COLUMN business_service_names TEXT NOT NULL DEFAULT '[]';
ALTER TABLE changes ADD COLUMN outside_maintenance_window BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE changes ADD COLUMN review TEXT NOT NULL DEFAULT ''";

#[async_trait::async_trait]
impl MigrationTrait for AddServicesWindowsReviews {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        execute_for_backend(manager.get_connection(), SERVICES_WINDOWS_REVIEWS, SERVICES_WINDOWS_REVIEWS)
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for column in ["review", "outside_maintenance_window", "business_service_names"] {
            db.execute_unprepared(&format!("ALTER TABLE changes DROP COLUMN {column}")).await?;
        }
        Ok(())
    }
}

struct AddImpactGraphs;

impl MigrationName for AddImpactGraphs {
    fn name(&self) -> &str {
        "m20261125_300005_impact_graphs"
    }
}

/// Each change's impact graph (the CIs downstream of its CIs), as JSON on the change and as rows
/// the conflict query joins, like `change_cis`.
const IMPACT_GRAPHS: &str = "ALTER TABLE changes ADD COLUMN impacted_cis TEXT NOT NULL DEFAULT '[]';
CREATE TABLE change_impacts (
    change_id TEXT NOT NULL,
    ci TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    state INTEGER NOT NULL,
    planned_start_time BIGINT NOT NULL,
    planned_end_time BIGINT NOT NULL,
    PRIMARY KEY (change_id, ci)
);
CREATE INDEX change_impacts_by_ci ON change_impacts (tenant_id, ci)";

#[async_trait::async_trait]
impl MigrationTrait for AddImpactGraphs {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        execute_for_backend(manager.get_connection(), IMPACT_GRAPHS, IMPACT_GRAPHS).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared("DROP TABLE IF EXISTS change_impacts").await?;
        db.execute_unprepared("ALTER TABLE changes DROP COLUMN impacted_cis").await?;
        Ok(())
    }
}

struct AddApprovalRules;

impl MigrationName for AddApprovalRules {
    fn name(&self) -> &str {
        "m20261125_300006_approval_rules"
    }
}

/// The approval policy rule (ApprovalRule number) and groups deciding a change.
const APPROVAL_RULES: &str = "ALTER TABLE changes ADD COLUMN approval_rule INTEGER NOT NULL DEFAULT 0;
ALTER TABLE changes ADD COLUMN approver_groups TEXT NOT NULL DEFAULT '[]'";

#[async_trait::async_trait]
impl MigrationTrait for AddApprovalRules {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        execute_for_backend(manager.get_connection(), APPROVAL_RULES, APPROVAL_RULES).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for column in ["approver_groups", "approval_rule"] {
            db.execute_unprepared(&format!("ALTER TABLE changes DROP COLUMN {column}")).await?;
        }
        Ok(())
    }
}

struct AddTemplates;

impl MigrationName for AddTemplates {
    fn name(&self) -> &str {
        "m20261125_300007_templates"
    }
}

/// The standard change template a change was made from ("" for others).
const TEMPLATES: &str = "ALTER TABLE changes ADD COLUMN template TEXT NOT NULL DEFAULT ''";

#[async_trait::async_trait]
impl MigrationTrait for AddTemplates {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        execute_for_backend(manager.get_connection(), TEMPLATES, TEMPLATES).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared("ALTER TABLE changes DROP COLUMN template").await?;
        Ok(())
    }
}
