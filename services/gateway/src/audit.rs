//! The audit log: every mutating call that passed the gateway (with its result) and every call
//! it refused for roles or rate, written to the gateway's own database by a background writer so
//! the call path never waits on it.

use sea_orm::sea_query::Expr;
use sea_orm::{ActiveModelTrait, ColumnTrait, DatabaseConnection, EntityTrait, IntoActiveModel, QueryFilter};
use sea_orm_migration::prelude::*;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status};

use itsm_proto::gateway::audit_service_server::AuditService;
use itsm_proto::gateway::{AuditEntry, ListAuditEntriesRequest, ListAuditEntriesResponse};
use itsm_runtime::db::{execute_for_backend, now_micros, timestamp};
use itsm_runtime::keyset;
use itsm_runtime::paging::{PageTokens, page_size};
use itsm_runtime::sql_filter::{self, Field};
use itsm_runtime::{CallContext, filter};

/// Entries waiting for the writer; beyond it callers wait (back-pressure, nothing is dropped).
const QUEUE: usize = 10_000;
const BATCH: usize = 200;

pub mod entry {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "audit_log")]
    pub struct Model {
        /// UUIDv7: time-ordered.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub time: i64,
        pub tenant_id: String,
        pub principal: String,
        pub roles: String,
        pub method: String,
        /// The resource the call acted on (`incidents/INC0000042`); empty when unknown.
        pub resource: String,
        pub code: i32,
        pub message: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Whether calls of `path` are audited when they succeed: everything that is not a read.
pub fn audited(path: &str) -> bool {
    let method = path.rsplit('/').next().unwrap_or_default();
    !crate::authz::is_read(method)
}

/// Where the gateway writes audit entries.
#[derive(Clone)]
pub struct AuditLog {
    tx: mpsc::Sender<entry::Model>,
}

impl AuditLog {
    /// Starts the writer on `db`; it ends (after writing what is queued) when every `AuditLog`
    /// clone is dropped.
    pub fn start(db: DatabaseConnection) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, mut rx) = mpsc::channel::<entry::Model>(QUEUE);
        let writer = tokio::spawn(async move {
            let mut batch = Vec::with_capacity(BATCH);
            while rx.recv_many(&mut batch, BATCH).await > 0 {
                let rows: Vec<entry::ActiveModel> =
                    batch.drain(..).map(|e| e.into_active_model().reset_all()).collect();
                if let Err(err) = entry::Entity::insert_many(rows).exec(&db).await {
                    tracing::error!(error = %err, "audit entries could not be written");
                }
            }
        });
        (Self { tx }, writer)
    }

    fn entry(call: &Call<'_>) -> entry::Model {
        entry::Model {
            id: uuid::Uuid::now_v7().to_string(),
            time: now_micros(),
            tenant_id: call.tenant.to_string(),
            principal: call.principal.to_string(),
            roles: call.roles.to_string(),
            method: call.method.to_string(),
            resource: call.resource.chars().take(500).collect(),
            code: call.code,
            message: call.message.chars().take(1000).collect(),
        }
    }

    /// Records from synchronous code (the admission guard); a full queue is logged, not awaited.
    pub fn record_now(&self, call: Call<'_>) {
        if self.tx.try_send(Self::entry(&call)).is_err() {
            tracing::error!(method = call.method, principal = call.principal, "audit queue full; entry lost");
        }
    }

    pub async fn record(&self, call: Call<'_>) {
        if self.tx.send(Self::entry(&call)).await.is_err() {
            tracing::error!(
                method = call.method,
                principal = call.principal,
                "audit writer stopped; entry lost"
            );
        }
    }
}

/// One audited call.
#[derive(Clone, Copy)]
pub struct Call<'a> {
    pub tenant: &'a str,
    pub principal: &'a str,
    /// Comma-separated, as the trusted context header carries them.
    pub roles: &'a str,
    pub method: &'a str,
    pub resource: &'a str,
    pub code: i32,
    pub message: &'a str,
}

/// The gateway's schema: the audit log and API keys.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(CreateAuditLog), Box::new(crate::api_keys::CreateApiKeys), Box::new(AddAuditResource)]
    }
}

struct CreateAuditLog;

impl MigrationName for CreateAuditLog {
    fn name(&self) -> &str {
        "m20261125_500001_audit_log"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateAuditLog {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let sql = "CREATE TABLE audit_log (
    id TEXT PRIMARY KEY,
    time BIGINT NOT NULL,
    tenant_id TEXT NOT NULL,
    principal TEXT NOT NULL,
    roles TEXT NOT NULL,
    method TEXT NOT NULL,
    code INTEGER NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX audit_log_by_time ON audit_log (tenant_id, time, id)";
        execute_for_backend(manager.get_connection(), sql, sql).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared("DROP TABLE IF EXISTS audit_log").await?;
        Ok(())
    }
}

/// The resource each call acted on, so an auditor can ask "who touched INC0000042".
struct AddAuditResource;

impl MigrationName for AddAuditResource {
    fn name(&self) -> &str {
        "m20261125_500003_audit_resource"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for AddAuditResource {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let sql = "ALTER TABLE audit_log ADD COLUMN resource TEXT NOT NULL DEFAULT '';
CREATE INDEX audit_log_by_resource ON audit_log (tenant_id, resource, time)";
        execute_for_backend(manager.get_connection(), sql, sql).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let conn = manager.get_connection();
        conn.execute_unprepared("DROP INDEX IF EXISTS audit_log_by_resource").await?;
        conn.execute_unprepared("ALTER TABLE audit_log DROP COLUMN resource").await?;
        Ok(())
    }
}

const FILTER_FIELDS: &[&str] = &["principal", "method", "resource", "code", "time"];

fn field(member: &str) -> Option<Field> {
    use entry::Column as C;
    let col = |c: C| Expr::col((entry::Entity, c));
    Some(match member {
        "principal" => Field::Text(col(C::Principal)),
        "method" => Field::Text(col(C::Method)),
        "resource" => Field::Text(col(C::Resource)),
        "code" => Field::Enum { column: col(C::Code), values: CODES, prefix: "" },
        "time" => Field::Time(col(C::Time)),
        _ => return None,
    })
}

/// Status codes by number and name, so filters can say `code = 7` or `code = PERMISSION_DENIED`.
const CODES: &[(i32, &str)] = &[
    (0, "0"),
    (0, "OK"),
    (3, "3"),
    (3, "INVALID_ARGUMENT"),
    (5, "5"),
    (5, "NOT_FOUND"),
    (6, "6"),
    (6, "ALREADY_EXISTS"),
    (7, "7"),
    (7, "PERMISSION_DENIED"),
    (8, "8"),
    (8, "RESOURCE_EXHAUSTED"),
    (9, "9"),
    (9, "FAILED_PRECONDITION"),
    (10, "10"),
    (10, "ABORTED"),
    (13, "13"),
    (13, "INTERNAL"),
    (14, "14"),
    (14, "UNAVAILABLE"),
    (16, "16"),
    (16, "UNAUTHENTICATED"),
];

pub struct AuditApi {
    pub db: DatabaseConnection,
    pub page_tokens: PageTokens,
}

#[tonic::async_trait]
impl AuditService for AuditApi {
    async fn list_audit_entries(
        &self,
        request: Request<ListAuditEntriesRequest>,
    ) -> Result<Response<ListAuditEntriesResponse>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let r = request.into_inner();
        let size = page_size(r.page_size, "page_size")?;
        let parsed = filter::parse(&r.filter)?;
        let fingerprint = PageTokens::fingerprint(&[&ctx.tenant, "audit", &r.filter]);
        let after = self.page_tokens.decode(&r.page_token, &fingerprint)?;
        let mut query = entry::Entity::find().filter(entry::Column::TenantId.eq(ctx.tenant.as_str()));
        if let Some(parsed) = &parsed {
            query = query.filter(sql_filter::condition(parsed, &ctx.tenant, &field, FILTER_FIELDS)?);
        }
        let page =
            keyset::page(&self.db, query, entry::Column::Time, entry::Column::Id, true, after, size, |m| {
                (serde_json::json!(m.time), m.id.clone())
            })
            .await?;
        let next_page_token = self.page_tokens.next(&fingerprint, page.next_key)?;
        Ok(Response::new(ListAuditEntriesResponse {
            audit_entries: page
                .items
                .into_iter()
                .map(|m| AuditEntry {
                    name: format!("auditEntries/{}", m.id),
                    time: Some(timestamp(m.time)),
                    tenant: m.tenant_id,
                    principal: m.principal,
                    roles: m.roles.split(',').filter(|r| !r.is_empty()).map(String::from).collect(),
                    method: m.method,
                    resource: m.resource,
                    code: m.code,
                    message: m.message,
                })
                .collect(),
            next_page_token,
        }))
    }
}
