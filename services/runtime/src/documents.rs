//! Records that are read and written whole (in the delivery service: capacity resources and
//! plans, business impact analyses, continuity plans, exercises and invocations, cost items,
//! budgets, charge rates): one `documents` table per service, the message encoded with prost, and
//! the few columns that filters, order and uniqueness need. One create, get, list, update and
//! delete for all of them, instead of one copy per record type. Records that other queries join
//! or aggregate in SQL keep tables of their own.

use prost::Message;
use sea_orm::sea_query::{Expr, SimpleExpr};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, ExprTrait,
    IntoActiveModel, QueryFilter, QuerySelect, TransactionTrait,
};

use itsm_proto::common::AuditInfo;
use sea_orm_migration::prelude::{DbErr, MigrationName, MigrationTrait, SchemaManager};

use crate::context::CallContext;
use crate::db::{STATEMENT_BUDGET, chunks_within, execute_for_backend, now_micros, timestamp};
use crate::error::Error;
use crate::filter::{self, Expr as Filter};
use crate::history::{change_time, check_etag, etag};
use crate::idempotency::{self, Claim};
use crate::keyset::{self, Page};
use crate::paging::{PageTokens, page_size};
use crate::sql_filter::{self as filters, Field};

pub mod document {
    use sea_orm::entity::prelude::*;

    /// One record: its message encoded with prost, and the columns that filters, order and
    /// uniqueness need.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "documents")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub tenant_id: String,
        pub kind: String,
        pub subject: String,
        pub parent: String,
        pub period: String,
        pub display_name: String,
        pub state: String,
        pub owner: String,
        /// Set where at most one record of a kind may have the value (e.g. one BIA per service).
        pub unique_key: Option<String>,
        pub body: Vec<u8>,
        pub version: i64,
        pub create_time: i64,
        pub update_time: i64,
        pub creator: String,
        pub updater: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The `documents` table; a service that keeps records here adds it to its migrator.
pub struct CreateDocuments;

impl MigrationName for CreateDocuments {
    fn name(&self) -> &str {
        "m20261125_000003_documents"
    }
}

const DOCUMENTS: &str = r"
CREATE TABLE documents (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    parent TEXT NOT NULL,
    period TEXT NOT NULL,
    display_name TEXT NOT NULL,
    state TEXT NOT NULL,
    owner TEXT NOT NULL,
    unique_key TEXT,
    body BLOB NOT NULL,
    version BIGINT NOT NULL,
    create_time BIGINT NOT NULL,
    update_time BIGINT NOT NULL,
    creator TEXT NOT NULL,
    updater TEXT NOT NULL
);
CREATE UNIQUE INDEX documents_unique ON documents (tenant_id, kind, unique_key);
CREATE INDEX documents_by_time ON documents (tenant_id, kind, create_time, id);
CREATE INDEX documents_by_subject ON documents (tenant_id, kind, subject);
CREATE INDEX documents_by_period ON documents (tenant_id, kind, period, id);
CREATE INDEX documents_by_parent ON documents (tenant_id, kind, parent)";

#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for CreateDocuments {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        execute_for_backend(manager.get_connection(), DOCUMENTS, &DOCUMENTS.replace("BLOB", "BYTEA")).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared("DROP TABLE IF EXISTS documents").await?;
        Ok(())
    }
}

/// The indexed columns a record type maps its fields onto.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Column {
    Subject,
    Parent,
    Period,
    DisplayName,
    State,
    Owner,
}

/// A record type: its resource name prefix, the create method (for idempotency keys) and the
/// filter fields it offers.
pub struct Kind {
    /// "continuityPlans/".
    pub prefix: &'static str,
    pub create_method: &'static str,
    /// Filter field → column.
    pub filters: &'static [(&'static str, Column)],
}

impl Kind {
    fn kind(&self) -> &'static str {
        self.prefix.trim_end_matches('/')
    }

    pub fn name(&self, id: &str) -> String {
        format!("{}{id}", self.prefix)
    }

    /// The id of `name`, which must be `{prefix}{uuid}`.
    pub fn id_of(&self, name: &str, field: &str) -> Result<String, Error> {
        name.strip_prefix(self.prefix)
            .filter(|id| uuid::Uuid::parse_str(id).is_ok_and(|u| u.hyphenated().to_string() == *id))
            .map(str::to_string)
            .ok_or_else(|| Error::invalid(field, format!("must be `{}{{id}}`", self.prefix)))
    }
}

/// The column values of one record.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Columns {
    pub subject: String,
    pub parent: String,
    pub period: String,
    pub display_name: String,
    pub state: String,
    pub owner: String,
    pub unique_key: Option<String>,
}

/// A stored record with its message.
#[derive(Clone, Debug)]
pub struct Document<M> {
    pub id: String,
    pub name: String,
    pub columns: Columns,
    pub body: M,
    pub version: i64,
    pub create_time: i64,
    pub update_time: i64,
    pub creator: String,
    pub updater: String,
}

impl<M> Document<M> {
    pub fn etag(&self) -> String {
        etag(self.version)
    }

    pub fn audit(&self) -> AuditInfo {
        AuditInfo {
            create_time: Some(timestamp(self.create_time)),
            update_time: Some(timestamp(self.update_time)),
            creator: self.creator.clone(),
            updater: self.updater.clone(),
        }
    }
}

fn decode<M: Message + Default>(kind: &Kind, row: document::Model) -> Result<Document<M>, Error> {
    let body = M::decode(row.body.as_slice())
        .map_err(|e| Error::Internal(format!("stored {}{} does not decode: {e}", kind.prefix, row.id)))?;
    Ok(Document {
        name: kind.name(&row.id),
        id: row.id,
        columns: Columns {
            subject: row.subject,
            parent: row.parent,
            period: row.period,
            display_name: row.display_name,
            state: row.state,
            owner: row.owner,
            unique_key: row.unique_key,
        },
        body,
        version: row.version,
        create_time: row.create_time,
        update_time: row.update_time,
        creator: row.creator,
        updater: row.updater,
    })
}

fn row_of(kind: &Kind, ctx: &CallContext, id: String, columns: Columns, body: Vec<u8>) -> document::Model {
    let now = now_micros();
    document::Model {
        id,
        tenant_id: ctx.tenant.clone(),
        kind: kind.kind().to_string(),
        subject: columns.subject,
        parent: columns.parent,
        period: columns.period,
        display_name: columns.display_name,
        state: columns.state,
        owner: columns.owner,
        unique_key: columns.unique_key,
        body,
        version: 1,
        create_time: now,
        update_time: now,
        creator: ctx.principal.clone(),
        updater: ctx.principal.clone(),
    }
}

fn column_expr(column: Column) -> SimpleExpr {
    use document::Column as C;
    let c = match column {
        Column::Subject => C::Subject,
        Column::Parent => C::Parent,
        Column::Period => C::Period,
        Column::DisplayName => C::DisplayName,
        Column::State => C::State,
        Column::Owner => C::Owner,
    };
    Expr::col((document::Entity, c))
}

/// A listing request's paging, filter and order.
pub struct Listing<'a> {
    pub page_size: i32,
    pub page_token: &'a str,
    pub filter: &'a str,
    /// "create_time" (default, newest first), "update_time", "display_name" or "period", each
    /// optionally followed by " desc".
    pub order_by: &'a str,
}

const ORDER: &[&str] = &["create_time", "update_time", "display_name", "period"];

/// The table of records.
#[derive(Clone)]
pub struct Documents {
    pub db: DatabaseConnection,
}

impl Documents {
    pub async fn find<M: Message + Default>(
        db: &impl ConnectionTrait,
        kind: &Kind,
        tenant: &str,
        id: &str,
    ) -> Result<Option<Document<M>>, Error> {
        let row = document::Entity::find()
            .filter(document::Column::TenantId.eq(tenant))
            .filter(document::Column::Kind.eq(kind.kind()))
            .filter(document::Column::Id.eq(id))
            .one(db)
            .await?;
        row.map(|r| decode(kind, r)).transpose()
    }

    /// The record called `name` (NOT_FOUND when the tenant has none).
    pub async fn get<M: Message + Default>(
        &self,
        kind: &Kind,
        ctx: &CallContext,
        name: &str,
        field: &str,
    ) -> Result<Document<M>, Error> {
        let id = kind.id_of(name, field)?;
        Self::find(&self.db, kind, &ctx.tenant, &id).await?.ok_or_else(|| Error::NotFound(kind.name(&id)))
    }

    /// Records of a kind with `column = value` (all of them; for small sets such as one
    /// service's plans).
    pub async fn all_where<M: Message + Default>(
        db: &impl ConnectionTrait,
        kind: &Kind,
        tenant: &str,
        column: Column,
        value: &str,
    ) -> Result<Vec<Document<M>>, Error> {
        let rows = document::Entity::find()
            .filter(document::Column::TenantId.eq(tenant))
            .filter(document::Column::Kind.eq(kind.kind()))
            .filter(ExprTrait::eq(column_expr(column), Expr::val(value)))
            .all(db)
            .await?;
        rows.into_iter().map(|r| decode(kind, r)).collect()
    }

    /// The one record of a kind a tenant keeps under `key` (settings such as a policy).
    pub async fn singleton<M: Message + Default>(
        db: &impl ConnectionTrait,
        kind: &Kind,
        tenant: &str,
        key: &str,
    ) -> Result<Option<Document<M>>, Error> {
        Ok(Self::all_where(db, kind, tenant, Column::Subject, key).await?.into_iter().next())
    }

    /// Saves the tenant's record under `key`: replaces it (if `etag`, when set, matches) or
    /// creates it (a concurrent first save is ALREADY_EXISTS, as the key is unique).
    pub async fn save_singleton<M: Message + Default + PartialEq>(
        &self,
        kind: &Kind,
        ctx: &CallContext,
        key: &str,
        etag: &str,
        body: M,
    ) -> Result<Document<M>, Error> {
        let columns = Columns { subject: key.into(), unique_key: Some(key.into()), ..Columns::default() };
        match Self::singleton::<M>(&self.db, kind, &ctx.tenant, key).await? {
            Some(current) => {
                self.update(kind, ctx, &current.id, etag, |_: &Document<M>| Ok((columns, body))).await
            }
            None => self.create(kind, ctx, "", "", columns, &body).await,
        }
    }

    /// Every record of a kind in the tenant.
    pub async fn all<M: Message + Default>(
        db: &impl ConnectionTrait,
        kind: &Kind,
        tenant: &str,
    ) -> Result<Vec<Document<M>>, Error> {
        let rows = document::Entity::find()
            .filter(document::Column::TenantId.eq(tenant))
            .filter(document::Column::Kind.eq(kind.kind()))
            .all(db)
            .await?;
        rows.into_iter().map(|r| decode(kind, r)).collect()
    }

    /// Inserts a record in the caller's transaction (no idempotency key).
    pub async fn insert<M: Message + Default>(
        db: &impl ConnectionTrait,
        kind: &Kind,
        ctx: &CallContext,
        columns: Columns,
        body: &M,
    ) -> Result<Document<M>, Error> {
        Self::insert_with_id(db, kind, ctx, &uuid::Uuid::now_v7().to_string(), columns, body).await
    }

    /// [`Self::insert`] with an id chosen by the caller (who named the record before storing it).
    pub async fn insert_with_id<M: Message + Default>(
        db: &impl ConnectionTrait,
        kind: &Kind,
        ctx: &CallContext,
        id: &str,
        columns: Columns,
        body: &M,
    ) -> Result<Document<M>, Error> {
        let row = row_of(kind, ctx, id.to_string(), columns, body.encode_to_vec());
        row.clone().into_active_model().reset_all().insert(db).await.map_err(|e| {
            match crate::db::classify_db_error(e) {
                Error::AlreadyExists(_) => {
                    Error::AlreadyExists(format!("a {} with the same key already exists", kind.kind()))
                }
                other => other,
            }
        })?;
        decode(kind, row)
    }

    /// Inserts many records in the caller's transaction, in multi-row statements.
    pub async fn insert_many<M: Message + Default>(
        db: &impl ConnectionTrait,
        kind: &Kind,
        ctx: &CallContext,
        records: Vec<(Columns, M)>,
    ) -> Result<Vec<String>, Error> {
        let mut ids = Vec::with_capacity(records.len());
        let rows: Vec<document::Model> = records
            .into_iter()
            .map(|(columns, body)| {
                let row = row_of(kind, ctx, uuid::Uuid::now_v7().to_string(), columns, body.encode_to_vec());
                ids.push(row.id.clone());
                row
            })
            .collect();
        // Statements under the budget (see `db::STATEMENT_BUDGET`): a row is its body and
        // columns plus about 200 bytes of ids, numbers and SQL.
        let size = |r: &document::Model| {
            200 + r.body.len() + r.subject.len() + r.parent.len() + r.display_name.len() + r.owner.len()
        };
        for chunk in chunks_within(&rows, size, STATEMENT_BUDGET) {
            let models = chunk.iter().map(|r| r.clone().into_active_model().reset_all());
            document::Entity::insert_many(models).exec(db).await?;
        }
        Ok(ids)
    }

    /// Creates a record once per request_id: a retry returns the first result.
    pub async fn create<M: Message + Default>(
        &self,
        kind: &Kind,
        ctx: &CallContext,
        request_id: &str,
        hash: &str,
        columns: Columns,
        body: &M,
    ) -> Result<Document<M>, Error> {
        idempotency::validate_request_id(request_id, "request_id")?;
        for _ in 0..3 {
            let txn = self.db.begin().await?;
            match idempotency::claim(&txn, &ctx.tenant, kind.create_method, request_id, hash).await? {
                Claim::Fresh => {}
                Claim::Done(name) => {
                    let id = name.trim_start_matches(kind.prefix).to_string();
                    let found = Self::find(&txn, kind, &ctx.tenant, &id).await?;
                    txn.commit().await?;
                    return found.ok_or(Error::NotFound(name));
                }
                Claim::LostRace => {
                    txn.rollback().await?;
                    continue;
                }
            }
            let stored = Self::insert(&txn, kind, ctx, columns, body).await?;
            idempotency::complete(&txn, &ctx.tenant, kind.create_method, request_id, &stored.name).await?;
            txn.commit().await?;
            return Ok(stored);
        }
        Err(Error::Aborted("concurrent creates with the same request_id; retry".into()))
    }

    /// One page of a kind's records.
    pub async fn list<M: Message + Default>(
        &self,
        kind: &Kind,
        ctx: &CallContext,
        page_tokens: &PageTokens,
        listing: &Listing<'_>,
    ) -> Result<(Vec<Document<M>>, String), Error> {
        let size = page_size(listing.page_size, "page_size")?;
        let parsed = filter::parse(listing.filter)?;
        let order = filter::parse_order_by(listing.order_by, ORDER)?.unwrap_or(("create_time", true));
        let fingerprint =
            PageTokens::fingerprint(&[&ctx.tenant, kind.prefix, listing.filter, listing.order_by]);
        let after = page_tokens.decode(listing.page_token, &fingerprint)?;
        let page = self.page(kind, ctx, parsed.as_ref(), order, after, size).await?;
        let next = page_tokens.next(&fingerprint, page.next_key)?;
        let items = page.items.into_iter().map(|r| decode(kind, r)).collect::<Result<Vec<_>, _>>()?;
        Ok((items, next))
    }

    async fn page(
        &self,
        kind: &Kind,
        ctx: &CallContext,
        parsed: Option<&Filter>,
        (field, descending): (&str, bool),
        after: Option<Vec<serde_json::Value>>,
        limit: u64,
    ) -> Result<Page<document::Model>, Error> {
        use document::Column as C;
        let column = match field {
            "update_time" => C::UpdateTime,
            "display_name" => C::DisplayName,
            "period" => C::Period,
            _ => C::CreateTime,
        };
        let mut query = document::Entity::find()
            .filter(C::TenantId.eq(ctx.tenant.as_str()))
            .filter(C::Kind.eq(kind.kind()));
        if let Some(parsed) = parsed {
            let field_of = |member: &str| {
                kind.filters
                    .iter()
                    .find(|(name, _)| *name == member)
                    .map(|(_, column)| Field::Text(column_expr(*column)))
            };
            let known: Vec<&str> = kind.filters.iter().map(|(name, _)| *name).collect();
            query = query.filter(filters::condition(parsed, &ctx.tenant, &field_of, &known)?);
        }
        keyset::page(&self.db, query, column, C::Id, descending, after, limit, |m| {
            let value = match field {
                "update_time" => serde_json::json!(m.update_time),
                "display_name" => serde_json::json!(m.display_name),
                "period" => serde_json::json!(m.period),
                _ => serde_json::json!(m.create_time),
            };
            (value, m.id.clone())
        })
        .await
    }

    /// Replaces a record's message and columns in the caller's transaction, if `etag` (when
    /// set) matches; `edit` gets the current record and returns the new columns and message.
    pub async fn update_in<M: Message + Default + PartialEq>(
        db: &impl ConnectionTrait,
        kind: &Kind,
        ctx: &CallContext,
        id: &str,
        etag: &str,
        edit: impl FnOnce(&Document<M>) -> Result<(Columns, M), Error>,
    ) -> Result<Document<M>, Error> {
        // The row is locked for the read-modify-write: a write without an etag (a stream of
        // samples, a consumer) waits for a concurrent one instead of failing with ABORTED, and a
        // write with an etag sees the version the other committed. SQLite has no row locks and
        // needs none: its writers are serialised.
        let row = document::Entity::find()
            .filter(document::Column::TenantId.eq(ctx.tenant.as_str()))
            .filter(document::Column::Kind.eq(kind.kind()))
            .filter(document::Column::Id.eq(id))
            .lock_exclusive()
            .one(db)
            .await
            .map_err(crate::db::classify_db_error)?;
        let current: Document<M> =
            row.map(|r| decode(kind, r)).transpose()?.ok_or_else(|| Error::NotFound(kind.name(id)))?;
        check_etag(etag, current.version, &current.name)?;
        let (columns, body) = edit(&current)?;
        if columns == current.columns && body == current.body {
            return Ok(current);
        }
        let update_time = change_time(current.update_time);
        let done = document::Entity::update_many()
            .col_expr(document::Column::Subject, Expr::value(columns.subject.clone()))
            .col_expr(document::Column::Parent, Expr::value(columns.parent.clone()))
            .col_expr(document::Column::Period, Expr::value(columns.period.clone()))
            .col_expr(document::Column::DisplayName, Expr::value(columns.display_name.clone()))
            .col_expr(document::Column::State, Expr::value(columns.state.clone()))
            .col_expr(document::Column::Owner, Expr::value(columns.owner.clone()))
            .col_expr(document::Column::UniqueKey, Expr::value(columns.unique_key.clone()))
            .col_expr(document::Column::Body, Expr::value(body.encode_to_vec()))
            .col_expr(document::Column::Version, Expr::value(current.version + 1))
            .col_expr(document::Column::UpdateTime, Expr::value(update_time))
            .col_expr(document::Column::Updater, Expr::value(ctx.principal.clone()))
            .filter(document::Column::Id.eq(id))
            .filter(document::Column::Version.eq(current.version))
            .exec(db)
            .await
            .map_err(crate::db::classify_db_error)?;
        if done.rows_affected != 1 {
            return Err(Error::Aborted(format!("{} was changed concurrently; read it again", current.name)));
        }
        Ok(Document {
            columns,
            body,
            version: current.version + 1,
            update_time,
            updater: ctx.principal.clone(),
            ..current
        })
    }

    /// [`Self::update_in`] in a transaction of its own.
    pub async fn update<M: Message + Default + PartialEq>(
        &self,
        kind: &Kind,
        ctx: &CallContext,
        id: &str,
        etag: &str,
        edit: impl FnOnce(&Document<M>) -> Result<(Columns, M), Error>,
    ) -> Result<Document<M>, Error> {
        let txn = self.db.begin().await?;
        let stored = Self::update_in(&txn, kind, ctx, id, etag, edit).await?;
        txn.commit().await?;
        Ok(stored)
    }

    /// Deletes a record if `etag` (when set) matches.
    pub async fn delete(&self, kind: &Kind, ctx: &CallContext, id: &str, etag: &str) -> Result<(), Error> {
        let txn = self.db.begin().await?;
        let current = document::Entity::find()
            .filter(document::Column::TenantId.eq(ctx.tenant.as_str()))
            .filter(document::Column::Kind.eq(kind.kind()))
            .filter(document::Column::Id.eq(id))
            .one(&txn)
            .await?
            .ok_or_else(|| Error::NotFound(kind.name(id)))?;
        check_etag(etag, current.version, &kind.name(id))?;
        document::Entity::delete_by_id(current.id).exec(&txn).await?;
        txn.commit().await?;
        Ok(())
    }
}
