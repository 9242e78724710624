//! Relationships between CIs: validated (no self-relation, both ends in the tenant, no PART_OF
//! cycle), unique per (source, target, type), with history and events.

use sea_orm::sea_query::{Expr, SimpleExpr};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, EntityTrait, ExprTrait, IntoActiveModel,
    Order, QueryFilter, QueryOrder, QuerySelect, TransactionTrait,
};

use itsm_proto::cmdb::{Relationship, RelationshipChanged, RelationshipHistoryEntry};
use itsm_runtime::db::{now_micros, stmt};
use itsm_runtime::filter::{Expr as Filter, Op};
use itsm_runtime::idempotency::{self, Claim};
use itsm_runtime::outbox::{self, NewEvent};
use itsm_runtime::{CallContext, Error};

use super::{Page, Repository, WriteSource};
use crate::convert::more::{RELATIONSHIP_PREFIX, relationship_to_proto};
use crate::convert::{etag, parse_name, resource_name};
use crate::domain::impact::{Edge, End};
use crate::domain::relationships::{RelKind, is_redundant};
use crate::entity::relationship;

const CREATE_METHOD: &str = "CreateRelationship";

/// A relationship to create, already parsed.
pub struct NewRelationship {
    pub source_id: String,
    pub target_id: String,
    pub kind: RelKind,
    pub properties: serde_json::Value,
}

/// Outcome of [`Repository::relate_in`].
pub enum Related {
    Created(relationship::Model),
    Existing(relationship::Model),
}

impl Repository {
    pub async fn create_relationship(
        &self,
        ctx: &CallContext,
        new: NewRelationship,
        request_id: &str,
        request_hash: &str,
    ) -> Result<Relationship, Error> {
        for _ in 0..3 {
            let txn = self.db.begin().await?;
            match idempotency::claim(&txn, &ctx.tenant, CREATE_METHOD, request_id, request_hash).await? {
                Claim::Fresh => {}
                Claim::Done(name) => {
                    let id = name.trim_start_matches(RELATIONSHIP_PREFIX).to_string();
                    let found = find(&txn, &ctx.tenant, &id).await?;
                    txn.commit().await?;
                    return found.map(|m| relationship_to_proto(&m)).ok_or(Error::NotFound(name));
                }
                Claim::LostRace => {
                    txn.rollback().await?;
                    continue;
                }
            }
            let model = match self.relate_in(&txn, ctx, &new, &WriteSource::user(), "relationship").await? {
                Related::Created(model) => model,
                Related::Existing(existing) => {
                    return Err(Error::AlreadyExists(format!(
                        "{} already relates these CIs with this type",
                        format_args!("{RELATIONSHIP_PREFIX}{}", existing.id)
                    )));
                }
            };
            idempotency::complete(
                &txn,
                &ctx.tenant,
                CREATE_METHOD,
                request_id,
                &format!("{RELATIONSHIP_PREFIX}{}", model.id),
            )
            .await?;
            txn.commit().await?;
            self.feed.notify_committed();
            return Ok(relationship_to_proto(&model));
        }
        Err(Error::Aborted("concurrent creates with the same request_id; retry".into()))
    }

    /// Validates and inserts a relationship in the caller's transaction; an identical existing
    /// one is returned as `Existing`. `prefix` names the request field for errors.
    pub(crate) async fn relate_in(
        &self,
        txn: &impl ConnectionTrait,
        ctx: &CallContext,
        new: &NewRelationship,
        source: &WriteSource,
        prefix: &str,
    ) -> Result<Related, Error> {
        if new.source_id == new.target_id {
            return Err(Error::invalid(format!("{prefix}.target"), "a CI cannot be related to itself"));
        }
        for (field, id) in [("source", &new.source_id), ("target", &new.target_id)] {
            if Self::find(txn, &ctx.tenant, id).await?.is_none() {
                return Err(Error::FailedPrecondition(format!(
                    "{prefix}.{field}: {} does not exist in this tenant",
                    resource_name(id)
                )));
            }
        }
        if let Some(existing) = relationship::Entity::find()
            .filter(relationship::Column::TenantId.eq(ctx.tenant.as_str()))
            .filter(relationship::Column::SourceId.eq(new.source_id.as_str()))
            .filter(relationship::Column::TargetId.eq(new.target_id.as_str()))
            .filter(relationship::Column::RelType.eq(new.kind as i32))
            .one(txn)
            .await?
        {
            return Ok(Related::Existing(existing));
        }
        if new.kind == RelKind::PartOf
            && self.part_of_path_exists(txn, &ctx.tenant, &new.target_id, &new.source_id).await?
        {
            return Err(Error::FailedPrecondition(format!(
                "{} is already (transitively) part of {}: PART_OF must not form a cycle",
                resource_name(&new.target_id),
                resource_name(&new.source_id)
            )));
        }
        let now = now_micros();
        let model = relationship::Model {
            id: uuid::Uuid::now_v7().to_string(),
            tenant_id: ctx.tenant.clone(),
            source_id: new.source_id.clone(),
            target_id: new.target_id.clone(),
            rel_type: new.kind as i32,
            redundant: is_redundant(&new.properties),
            properties: new.properties.to_string(),
            version: 1,
            create_time: now,
            update_time: now,
            creator: ctx.principal.clone(),
            updater: ctx.principal.clone(),
        };
        model.clone().into_active_model().reset_all().insert(txn).await?;
        record(txn, ctx, &model, "create", source).await?;
        Ok(Related::Created(model))
    }

    /// True when `from` reaches `to` over PART_OF edges (`from` part of … part of `to`).
    async fn part_of_path_exists(
        &self,
        db: &impl ConnectionTrait,
        tenant: &str,
        from: &str,
        to: &str,
    ) -> Result<bool, Error> {
        let mut seen = std::collections::HashSet::from([from.to_string()]);
        let mut frontier = vec![from.to_string()];
        // PART_OF trees are shallow; the bound only guards against corrupt data.
        for _ in 0..64 {
            if frontier.is_empty() {
                return Ok(false);
            }
            let edges = TenantGraph { db, tenant }.edges(&frontier, End::Source, &[RelKind::PartOf]).await?;
            frontier.clear();
            for edge in edges {
                if edge.target == to {
                    return Ok(true);
                }
                if seen.insert(edge.target.clone()) {
                    frontier.push(edge.target);
                }
            }
        }
        Ok(false)
    }

    pub async fn get_relationship(&self, ctx: &CallContext, id: &str) -> Result<Relationship, Error> {
        find(&self.db, &ctx.tenant, id)
            .await?
            .map(|m| relationship_to_proto(&m))
            .ok_or_else(|| Error::NotFound(format!("{RELATIONSHIP_PREFIX}{id}")))
    }

    pub async fn delete_relationship(
        &self,
        ctx: &CallContext,
        id: &str,
        expected_etag: &str,
    ) -> Result<(), Error> {
        let txn = self.db.begin().await?;
        let current = find(&txn, &ctx.tenant, id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("{RELATIONSHIP_PREFIX}{id}")))?;
        if !expected_etag.is_empty() && expected_etag != etag(current.version) {
            return Err(Error::Aborted(format!("etag mismatch: current etag is {}", etag(current.version))));
        }
        self.delete_relationship_in(&txn, ctx, &current, &WriteSource::user()).await?;
        txn.commit().await?;
        self.feed.notify_committed();
        Ok(())
    }

    pub(crate) async fn delete_relationship_in(
        &self,
        txn: &impl ConnectionTrait,
        ctx: &CallContext,
        model: &relationship::Model,
        source: &WriteSource,
    ) -> Result<(), Error> {
        relationship::Entity::delete_many()
            .filter(relationship::Column::TenantId.eq(ctx.tenant.as_str()))
            .filter(relationship::Column::Id.eq(model.id.as_str()))
            .exec(txn)
            .await?;
        record(txn, ctx, model, "delete", source).await
    }

    pub async fn list_relationships(
        &self,
        ctx: &CallContext,
        filter: Option<&Filter>,
        after: Option<String>,
        limit: u64,
    ) -> Result<Page<Relationship>, Error> {
        let mut query =
            relationship::Entity::find().filter(relationship::Column::TenantId.eq(ctx.tenant.as_str()));
        if let Some(filter) = filter {
            query = query.filter(relationship_condition(filter)?);
        }
        if let Some(after) = after {
            query = query.filter(relationship::Column::Id.gt(after));
        }
        let rows =
            query.order_by(relationship::Column::Id, Order::Asc).limit(limit + 1).all(&self.db).await?;
        let more = rows.len() as u64 > limit;
        let rows: Vec<relationship::Model> = rows.into_iter().take(limit as usize).collect();
        let next_key = if more { rows.last().map(|r| vec![serde_json::json!(r.id)]) } else { None };
        Ok(Page { items: rows.iter().map(relationship_to_proto).collect(), next_key })
    }
}

impl Repository {
    /// Relationship changes at either end of a CI, oldest first, after history row `after`.
    pub async fn relationship_history(
        &self,
        ctx: &CallContext,
        ci_id: &str,
        after: i64,
        limit: u64,
    ) -> Result<Page<RelationshipHistoryEntry>, Error> {
        let backend = self.db.get_database_backend();
        let rows = self
            .db
            .query_all_raw(stmt(
                backend,
                &format!(
                    "SELECT id, relationship_id, source_id, target_id, rel_type, action, change_time, actor, source, \
                     source_reference FROM relationship_history \
                     WHERE tenant_id = $1 AND (source_id = $2 OR target_id = $2) AND id > $3 ORDER BY id LIMIT {}",
                    limit + 1
                ),
                [ctx.tenant.as_str().into(), ci_id.into(), after.into()],
            ))
            .await?;
        let more = rows.len() as u64 > limit;
        let mut entries = Vec::new();
        let mut last = None;
        for row in rows.iter().take(limit as usize) {
            last = Some(row.try_get::<i64>("", "id")?);
            entries.push(RelationshipHistoryEntry {
                relationship: format!(
                    "{RELATIONSHIP_PREFIX}{}",
                    row.try_get::<String>("", "relationship_id")?
                ),
                source: resource_name(&row.try_get::<String>("", "source_id")?),
                target: resource_name(&row.try_get::<String>("", "target_id")?),
                r#type: row.try_get("", "rel_type")?,
                action: row.try_get("", "action")?,
                change_time: Some(itsm_runtime::db::timestamp(row.try_get("", "change_time")?)),
                actor: row.try_get("", "actor")?,
                change_source: row.try_get("", "source")?,
                source_reference: row.try_get("", "source_reference")?,
            });
        }
        let next_key = if more { last.map(|id| vec![serde_json::json!(id)]) } else { None };
        Ok(Page { items: entries, next_key })
    }
}

async fn find(
    db: &impl ConnectionTrait,
    tenant: &str,
    id: &str,
) -> Result<Option<relationship::Model>, Error> {
    Ok(relationship::Entity::find()
        .filter(relationship::Column::TenantId.eq(tenant))
        .filter(relationship::Column::Id.eq(id))
        .one(db)
        .await?)
}

/// History row + outbox event for a relationship change.
async fn record(
    txn: &impl ConnectionTrait,
    ctx: &CallContext,
    model: &relationship::Model,
    action: &str,
    source: &WriteSource,
) -> Result<(), Error> {
    txn.execute_raw(stmt(
        txn.get_database_backend(),
        "INSERT INTO relationship_history (tenant_id, relationship_id, source_id, target_id, rel_type, action, \
         change_time, actor, source, source_reference, properties) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        [
            ctx.tenant.as_str().into(),
            model.id.as_str().into(),
            model.source_id.as_str().into(),
            model.target_id.as_str().into(),
            model.rel_type.into(),
            action.into(),
            now_micros().into(),
            ctx.principal.as_str().into(),
            (source.source as i32).into(),
            source.reference.as_str().into(),
            model.properties.as_str().into(),
        ],
    ))
    .await?;
    let name = format!("{RELATIONSHIP_PREFIX}{}", model.id);
    let payload =
        RelationshipChanged { action: action.to_string(), relationship: Some(relationship_to_proto(model)) };
    outbox::append(txn, NewEvent::of(&payload, &name, &ctx.tenant, &ctx.principal)).await?;
    Ok(())
}

/// Fields a relationship filter may name.
pub const RELATIONSHIP_FILTER_FIELDS: &[&str] = &["source", "target", "ci", "type"];

fn relationship_condition(expr: &Filter) -> Result<Condition, Error> {
    Ok(match expr {
        Filter::And(parts) => parts
            .iter()
            .try_fold(Condition::all(), |c, p| Ok::<_, Error>(c.add(relationship_condition(p)?)))?,
        Filter::Or(parts) => parts
            .iter()
            .try_fold(Condition::any(), |c, p| Ok::<_, Error>(c.add(relationship_condition(p)?)))?,
        Filter::Not(inner) => relationship_condition(inner)?.not(),
        Filter::Compare { member, op, value } => {
            if !matches!(op, Op::Eq | Op::Ne) {
                return Err(Error::invalid("filter", format!("`{member}` supports only = and !=")));
            }
            let ci_id = || {
                parse_name(value).ok_or_else(|| {
                    Error::invalid(
                        "filter",
                        format!("`{member}` takes a CI name (configurationItems/{{id}})"),
                    )
                })
            };
            let eq = |column: relationship::Column, v: sea_orm::Value| -> SimpleExpr {
                if *op == Op::Eq { Expr::col(column).eq(v) } else { Expr::col(column).ne(v) }
            };
            match member.as_str() {
                "source" => Condition::all().add(eq(relationship::Column::SourceId, ci_id()?.into())),
                "target" => Condition::all().add(eq(relationship::Column::TargetId, ci_id()?.into())),
                "ci" => {
                    let id = ci_id()?;
                    let either = Condition::any()
                        .add(Expr::col(relationship::Column::SourceId).eq(id.clone()))
                        .add(Expr::col(relationship::Column::TargetId).eq(id));
                    if *op == Op::Eq { either } else { either.not() }
                }
                "type" => {
                    let kind = RelKind::parse(value).ok_or_else(|| {
                        Error::invalid("filter", format!("`{value}` is not a relationship type"))
                    })?;
                    Condition::all().add(eq(relationship::Column::RelType, (kind as i32).into()))
                }
                other => {
                    return Err(Error::invalid(
                        "filter",
                        format!(
                            "unknown field `{other}`; filterable: {}",
                            RELATIONSHIP_FILTER_FIELDS.join(", ")
                        ),
                    ));
                }
            }
        }
    })
}

/// Checks a relationship filter before any query runs.
pub fn check_relationship_filter(expr: &Filter) -> Result<(), Error> {
    relationship_condition(expr).map(|_| ())
}

/// The relationship graph of one tenant as stored, read level by level (the PART_OF cycle check,
/// inside the writing transaction).
pub struct TenantGraph<'a, C> {
    pub db: &'a C,
    pub tenant: &'a str,
}

impl<C: ConnectionTrait + Sync> TenantGraph<'_, C> {
    /// Every edge of one of `kinds` whose `end` is one of `ids`, as the connection sees them
    /// (inside a write's transaction, that includes its own writes).
    pub async fn edges(
        &self,
        ids: &[String],
        end: End,
        kinds: &[RelKind],
    ) -> Result<Vec<Edge<String>>, Error> {
        let column = match end {
            End::Source => relationship::Column::SourceId,
            End::Target => relationship::Column::TargetId,
        };
        let kinds: Vec<i32> = kinds.iter().map(|k| *k as i32).collect();
        // Chunks run concurrently on the pool: one level of a wide walk is many chunks.
        let queries = ids.chunks(itsm_runtime::db::MAX_IN_LIST).map(|chunk| {
            relationship::Entity::find()
                .select_only()
                .column(relationship::Column::SourceId)
                .column(relationship::Column::TargetId)
                .column(relationship::Column::RelType)
                .column(relationship::Column::Redundant)
                .filter(relationship::Column::TenantId.eq(self.tenant))
                .filter(ExprTrait::is_in(Expr::col(column), chunk.iter().map(String::as_str)))
                .filter(ExprTrait::is_in(Expr::col(relationship::Column::RelType), kinds.clone()))
                .into_tuple::<(String, String, i32, bool)>()
                .all(self.db)
        });
        let mut edges = Vec::new();
        for rows in futures::future::try_join_all(queries).await? {
            edges.extend(rows.into_iter().filter_map(|(source, target, kind, redundant)| {
                RelKind::from_proto(kind).map(|kind| Edge { source, target, kind, redundant })
            }));
        }
        Ok(edges)
    }
}
