//! The service desk's schema. Runtime tables (outbox, idempotency, cursors) come first.

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
        migrations.push(Box::new(CreateServiceDeskTables));
        migrations.push(Box::new(CreateSearchDocuments));
        migrations.push(Box::new(CreateKnowledgeBase));
        migrations.push(Box::new(CreateTicketNotes));
        migrations.push(Box::new(CreateUnassignedQueueIndex));
        migrations
    }
}

struct CreateServiceDeskTables;

impl MigrationName for CreateServiceDeskTables {
    fn name(&self) -> &str {
        "m20261125_400001_tickets_groups_notifications"
    }
}

/// The same text serves SQLite and Postgres.
const TABLES: &str = r"
CREATE TABLE tickets (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    number TEXT NOT NULL,
    channel INTEGER NOT NULL,
    requester TEXT NOT NULL,
    organisation TEXT NOT NULL,
    category TEXT NOT NULL,
    short_description TEXT NOT NULL,
    description TEXT NOT NULL,
    ticket_type INTEGER NOT NULL,
    state INTEGER NOT NULL,
    support_group TEXT NOT NULL,
    tier INTEGER NOT NULL,
    assignee TEXT NOT NULL,
    incident TEXT NOT NULL,
    business_service TEXT NOT NULL,
    configuration_items TEXT NOT NULL,
    impact INTEGER NOT NULL,
    urgency INTEGER NOT NULL,
    priority INTEGER NOT NULL,
    resolution_notes TEXT NOT NULL,
    open_time BIGINT NOT NULL,
    first_response_time BIGINT NOT NULL,
    resolve_time BIGINT NOT NULL,
    close_time BIGINT NOT NULL,
    escalation_count INTEGER NOT NULL,
    tier_time BIGINT NOT NULL,
    max_tier INTEGER NOT NULL,
    survey_score INTEGER NOT NULL,
    survey_comment TEXT NOT NULL,
    catalog_item TEXT NOT NULL,
    variables TEXT NOT NULL,
    request_state INTEGER NOT NULL,
    approver TEXT NOT NULL,
    sla_due_time BIGINT NOT NULL,
    sla_clocks TEXT NOT NULL,
    escalation_reason TEXT NOT NULL,
    queue_key TEXT NOT NULL,
    version BIGINT NOT NULL,
    create_time BIGINT NOT NULL,
    update_time BIGINT NOT NULL,
    creator TEXT NOT NULL,
    updater TEXT NOT NULL
);
CREATE UNIQUE INDEX tickets_by_number ON tickets (tenant_id, number);
CREATE INDEX tickets_by_create ON tickets (tenant_id, create_time, id);
CREATE INDEX tickets_by_update ON tickets (tenant_id, update_time, id);
CREATE INDEX tickets_by_open ON tickets (tenant_id, open_time);
CREATE INDEX tickets_by_assignee ON tickets (tenant_id, assignee, state, queue_key, id);
CREATE INDEX tickets_by_group ON tickets (tenant_id, support_group, state, queue_key, id);
CREATE INDEX tickets_by_incident ON tickets (tenant_id, incident);
CREATE TABLE support_groups (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    display_name TEXT NOT NULL,
    description TEXT NOT NULL,
    tier INTEGER NOT NULL,
    members TEXT NOT NULL,
    manager TEXT NOT NULL,
    assignment_method INTEGER NOT NULL,
    shifts TEXT NOT NULL,
    escalation_group TEXT NOT NULL,
    time_box_seconds INTEGER NOT NULL,
    last_assigned TEXT NOT NULL,
    version BIGINT NOT NULL,
    create_time BIGINT NOT NULL,
    update_time BIGINT NOT NULL,
    creator TEXT NOT NULL,
    updater TEXT NOT NULL
);
CREATE UNIQUE INDEX support_groups_by_name ON support_groups (tenant_id, display_name);
CREATE INDEX support_groups_by_tier ON support_groups (tenant_id, tier, display_name);
CREATE TABLE group_members (
    group_id TEXT NOT NULL,
    member TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    PRIMARY KEY (group_id, member)
);
CREATE INDEX group_members_by_member ON group_members (tenant_id, member);
CREATE TABLE assignment_rules (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    rule_order INTEGER NOT NULL,
    category TEXT NOT NULL,
    business_service TEXT NOT NULL,
    configuration_item TEXT NOT NULL,
    support_group TEXT NOT NULL,
    allow_tier_skip BOOLEAN NOT NULL,
    create_time BIGINT NOT NULL,
    creator TEXT NOT NULL
);
CREATE INDEX assignment_rules_by_order ON assignment_rules (tenant_id, rule_order, id);
CREATE TABLE webhooks (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    url TEXT NOT NULL,
    secret TEXT NOT NULL,
    kinds TEXT NOT NULL,
    create_time BIGINT NOT NULL,
    creator TEXT NOT NULL
);
CREATE INDEX webhooks_by_tenant ON webhooks (tenant_id);
CREATE TABLE notifications (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    recipient TEXT NOT NULL,
    subject TEXT NOT NULL,
    body TEXT NOT NULL,
    ticket TEXT NOT NULL,
    create_time BIGINT NOT NULL
);
CREATE INDEX notifications_by_time ON notifications (tenant_id, create_time, id);
CREATE INDEX notifications_by_ticket ON notifications (tenant_id, ticket, create_time);
CREATE TABLE deliveries (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    notification_id TEXT NOT NULL,
    webhook_id TEXT NOT NULL,
    state INTEGER NOT NULL,
    attempts INTEGER NOT NULL,
    next_attempt_time BIGINT NOT NULL,
    last_error TEXT NOT NULL,
    update_time BIGINT NOT NULL
);
CREATE INDEX deliveries_due ON deliveries (state, next_attempt_time);
CREATE INDEX deliveries_by_notification ON deliveries (notification_id)";

#[async_trait::async_trait]
impl MigrationTrait for CreateServiceDeskTables {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        execute_for_backend(manager.get_connection(), TABLES, TABLES).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for table in [
            "deliveries",
            "notifications",
            "webhooks",
            "assignment_rules",
            "group_members",
            "support_groups",
            "tickets",
        ] {
            db.execute_unprepared(&format!("DROP TABLE IF EXISTS {table}")).await?;
        }
        Ok(())
    }
}

struct CreateKnowledgeBase;

impl MigrationName for CreateKnowledgeBase {
    fn name(&self) -> &str {
        "m20261125_400002_knowledge_base"
    }
}

const KNOWLEDGE: &str = r"
CREATE TABLE articles (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    number TEXT NOT NULL,
    title TEXT NOT NULL,
    body TEXT NOT NULL,
    category TEXT NOT NULL,
    keywords TEXT NOT NULL,
    state INTEGER NOT NULL,
    revision INTEGER NOT NULL,
    solved_count INTEGER NOT NULL,
    link_count INTEGER NOT NULL,
    version BIGINT NOT NULL,
    create_time BIGINT NOT NULL,
    update_time BIGINT NOT NULL,
    creator TEXT NOT NULL,
    updater TEXT NOT NULL
);
CREATE UNIQUE INDEX articles_by_number ON articles (tenant_id, number);
CREATE INDEX articles_by_update ON articles (tenant_id, update_time, id);
CREATE TABLE article_revisions (
    article_id TEXT NOT NULL,
    revision INTEGER NOT NULL,
    title TEXT NOT NULL,
    body TEXT NOT NULL,
    keywords TEXT NOT NULL,
    author TEXT NOT NULL,
    create_time BIGINT NOT NULL,
    PRIMARY KEY (article_id, revision)
);
CREATE TABLE catalog_items (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    display_name TEXT NOT NULL,
    description TEXT NOT NULL,
    category TEXT NOT NULL,
    variables TEXT NOT NULL,
    approval_policy INTEGER NOT NULL,
    cost TEXT NOT NULL,
    cost_threshold TEXT NOT NULL,
    tasks TEXT NOT NULL,
    create_time BIGINT NOT NULL,
    creator TEXT NOT NULL
);
CREATE INDEX catalog_items_by_name ON catalog_items (tenant_id, display_name, id);
CREATE TABLE fulfilment_tasks (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    ticket_id TEXT NOT NULL,
    position INTEGER NOT NULL,
    title TEXT NOT NULL,
    support_group TEXT NOT NULL,
    done BOOLEAN NOT NULL,
    completed_by TEXT NOT NULL,
    complete_time BIGINT NOT NULL
);
CREATE INDEX fulfilment_tasks_by_ticket ON fulfilment_tasks (ticket_id, position);
CREATE TABLE article_links (
    article_id TEXT NOT NULL,
    ticket TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    solved BOOLEAN NOT NULL,
    create_time BIGINT NOT NULL,
    PRIMARY KEY (article_id, ticket)
)";

#[async_trait::async_trait]
impl MigrationTrait for CreateKnowledgeBase {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        execute_for_backend(manager.get_connection(), KNOWLEDGE, KNOWLEDGE).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for table in ["fulfilment_tasks", "catalog_items", "article_links", "article_revisions", "articles"] {
            db.execute_unprepared(&format!("DROP TABLE IF EXISTS {table}")).await?;
        }
        Ok(())
    }
}

struct CreateTicketNotes;

impl MigrationName for CreateTicketNotes {
    fn name(&self) -> &str {
        "m20261125_400003_ticket_notes"
    }
}

/// Work notes and comments on tickets, read per ticket in the order they were written. The same
/// text serves SQLite and Postgres.
const TICKET_NOTES: &str = r"
CREATE TABLE ticket_notes (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    ticket_id TEXT NOT NULL,
    visibility INTEGER NOT NULL,
    text TEXT NOT NULL,
    author TEXT NOT NULL,
    create_time BIGINT NOT NULL
);
CREATE INDEX ticket_notes_by_ticket ON ticket_notes (tenant_id, ticket_id, create_time, id)";

#[async_trait::async_trait]
impl MigrationTrait for CreateTicketNotes {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        execute_for_backend(manager.get_connection(), TICKET_NOTES, TICKET_NOTES).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared("DROP TABLE IF EXISTS ticket_notes").await?;
        Ok(())
    }
}

struct CreateUnassignedQueueIndex;

impl MigrationName for CreateUnassignedQueueIndex {
    fn name(&self) -> &str {
        "m20261126_400004_unassigned_queue_index"
    }
}

/// The unassigned queue in queue order per (group, state) range: `tickets_by_group` alone would
/// walk past every assigned ticket ahead of the next unassigned one. Partial, so it holds only
/// the tickets waiting for someone (the query names `assignee = ''` as a literal, which both
/// PostgreSQL and SQLite need to use a partial index).
const UNASSIGNED_QUEUE_INDEX: &str = "CREATE INDEX tickets_unassigned_by_group \
    ON tickets (tenant_id, support_group, state, queue_key, id) WHERE assignee = ''";

#[async_trait::async_trait]
impl MigrationTrait for CreateUnassignedQueueIndex {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        execute_for_backend(manager.get_connection(), UNASSIGNED_QUEUE_INDEX, UNASSIGNED_QUEUE_INDEX).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("DROP INDEX IF EXISTS tickets_unassigned_by_group")
            .await?;
        Ok(())
    }
}
