//! Support groups (tiers, members, shifts), assignment rules and webhooks: the desk's set-up.

use std::collections::HashMap;

use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, Order, PaginatorTrait,
    QueryFilter, QueryOrder, TransactionTrait, Value,
};

use itsm_runtime::db::{now_micros, stmt};
use itsm_runtime::filter::Expr as Filter;
use itsm_runtime::history::{self, NewEntry, change_time, check_etag, diff};
use itsm_runtime::keyset;
use itsm_runtime::sql_filter::{self as filters, Field};
use itsm_runtime::{CallContext, Error};

use super::{GROUP, Page, Repository};
use crate::convert::{group_name, list_from, shifts_from};
use crate::domain::assignment;
use crate::domain::lifecycle::TicketState;
use crate::domain::shifts;
use crate::entity::{assignment_rule, support_group, ticket, webhook};

pub const GROUP_ORDER_FIELDS: &[&str] = &["display_name", "tier", "create_time", "update_time"];

impl Repository {
    pub async fn find_group(
        db: &impl ConnectionTrait,
        tenant: &str,
        id: &str,
    ) -> Result<Option<support_group::Model>, Error> {
        Ok(support_group::Entity::find()
            .filter(support_group::Column::TenantId.eq(tenant))
            .filter(support_group::Column::Id.eq(id))
            .one(db)
            .await?)
    }

    pub async fn get_group(&self, ctx: &CallContext, id: &str) -> Result<support_group::Model, Error> {
        Self::find_group(&self.db, &ctx.tenant, id).await?.ok_or_else(|| Error::NotFound(group_name(id)))
    }

    async fn ensure_unique_name(
        txn: &impl ConnectionTrait,
        tenant: &str,
        name: &str,
        except: &str,
    ) -> Result<(), Error> {
        let clash = support_group::Entity::find()
            .filter(support_group::Column::TenantId.eq(tenant))
            .filter(support_group::Column::DisplayName.eq(name))
            .filter(support_group::Column::Id.ne(except))
            .one(txn)
            .await?;
        match clash {
            Some(other) => Err(Error::AlreadyExists(format!(
                "a support group named {name:?} exists: {}",
                group_name(&other.id)
            ))),
            None => Ok(()),
        }
    }

    pub async fn create_group(
        &self,
        ctx: &CallContext,
        mut model: support_group::Model,
    ) -> Result<support_group::Model, Error> {
        let txn = self.db.begin().await?;
        Self::ensure_unique_name(&txn, &ctx.tenant, &model.display_name, "").await?;
        let now = now_micros();
        model.id = uuid::Uuid::now_v7().to_string();
        model.tenant_id.clone_from(&ctx.tenant);
        model.version = 1;
        model.create_time = now;
        model.update_time = now;
        model.creator.clone_from(&ctx.principal);
        model.updater.clone_from(&ctx.principal);
        model.clone().into_active_model().reset_all().insert(&txn).await?;
        write_members(&txn, &model).await?;
        let changes = diff(None, Some(&model));
        let entry = NewEntry {
            kind: GROUP,
            record_id: &model.id,
            version: 1,
            change_time: now,
            action: "create",
            changes: &changes,
            reason: "",
        };
        history::record(&txn, ctx, entry).await?;
        txn.commit().await?;
        Ok(model)
    }

    pub async fn update_group(
        &self,
        ctx: &CallContext,
        id: &str,
        expected_etag: &str,
        edit: impl FnOnce(&mut support_group::Model),
    ) -> Result<support_group::Model, Error> {
        let txn = self.db.begin().await?;
        let current =
            Self::find_group(&txn, &ctx.tenant, id).await?.ok_or_else(|| Error::NotFound(group_name(id)))?;
        check_etag(expected_etag, current.version, &group_name(id))?;
        let mut after = current.clone();
        edit(&mut after);
        let changes = diff(Some(&current), Some(&after));
        if changes.is_empty() {
            txn.commit().await?;
            return Ok(current);
        }
        Self::ensure_unique_name(&txn, &ctx.tenant, &after.display_name, id).await?;
        let now = change_time(current.update_time);
        after.version = current.version + 1;
        after.update_time = now;
        after.updater.clone_from(&ctx.principal);
        let result = support_group::Entity::update_many()
            .set(after.clone().into_active_model().reset_all())
            .filter(support_group::Column::Id.eq(id))
            .filter(support_group::Column::Version.eq(current.version))
            .exec(&txn)
            .await?;
        if result.rows_affected != 1 {
            return Err(Error::Aborted(format!(
                "{} was changed concurrently; read it again",
                group_name(id)
            )));
        }
        write_members(&txn, &after).await?;
        let entry = NewEntry {
            kind: GROUP,
            record_id: id,
            version: after.version,
            change_time: now,
            action: "update",
            changes: &changes,
            reason: "",
        };
        history::record(&txn, ctx, entry).await?;
        txn.commit().await?;
        Ok(after)
    }

    pub async fn delete_group(&self, ctx: &CallContext, id: &str, expected_etag: &str) -> Result<(), Error> {
        let txn = self.db.begin().await?;
        let current =
            Self::find_group(&txn, &ctx.tenant, id).await?.ok_or_else(|| Error::NotFound(group_name(id)))?;
        check_etag(expected_etag, current.version, &group_name(id))?;
        let open: Vec<i32> = TicketState::ALL.iter().filter(|s| s.is_open()).map(|s| *s as i32).collect();
        let tickets = ticket::Entity::find()
            .filter(ticket::Column::TenantId.eq(ctx.tenant.as_str()))
            .filter(ticket::Column::SupportGroup.eq(group_name(id)))
            .filter(ticket::Column::State.is_in(open))
            .count(&txn)
            .await?;
        if tickets > 0 {
            return Err(Error::FailedPrecondition(format!(
                "{} has {tickets} open ticket(s); move them to another group first",
                group_name(id)
            )));
        }
        support_group::Entity::delete_many().filter(support_group::Column::Id.eq(id)).exec(&txn).await?;
        txn.execute_raw(stmt(
            txn.get_database_backend(),
            "DELETE FROM group_members WHERE group_id = $1",
            [id.into()],
        ))
        .await?;
        let changes = diff(Some(&current), None);
        let now = change_time(current.update_time);
        let entry = NewEntry {
            kind: GROUP,
            record_id: id,
            version: current.version + 1,
            change_time: now,
            action: "delete",
            changes: &changes,
            reason: "",
        };
        history::record(&txn, ctx, entry).await?;
        txn.commit().await?;
        Ok(())
    }

    pub async fn list_groups(
        &self,
        ctx: &CallContext,
        filter: Option<&Filter>,
        order: (&str, bool),
        after: Option<Vec<serde_json::Value>>,
        limit: u64,
    ) -> Result<Page<support_group::Model>, Error> {
        let (field, descending) = order;
        let column = match field {
            "tier" => support_group::Column::Tier,
            "create_time" => support_group::Column::CreateTime,
            "update_time" => support_group::Column::UpdateTime,
            _ => support_group::Column::DisplayName,
        };
        let mut query =
            support_group::Entity::find().filter(support_group::Column::TenantId.eq(ctx.tenant.as_str()));
        if let Some(filter) = filter {
            query = query.filter(filters::condition(filter, &ctx.tenant, &group_field, GROUP_FILTER_FIELDS)?);
        }
        keyset::page(&self.db, query, column, support_group::Column::Id, descending, after, limit, |m| {
            let value = match field {
                "tier" => serde_json::json!(m.tier),
                "create_time" => serde_json::json!(m.create_time),
                "update_time" => serde_json::json!(m.update_time),
                _ => serde_json::json!(m.display_name),
            };
            (value, m.id.clone())
        })
        .await
    }

    /// The first group of `tier` by name, if any.
    pub async fn group_of_tier(
        db: &impl ConnectionTrait,
        tenant: &str,
        tier: i32,
    ) -> Result<Option<support_group::Model>, Error> {
        Ok(support_group::Entity::find()
            .filter(support_group::Column::TenantId.eq(tenant))
            .filter(support_group::Column::Tier.eq(tier))
            .order_by(support_group::Column::DisplayName, Order::Asc)
            .one(db)
            .await?)
    }

    /// Names of the groups `member` belongs to.
    pub async fn groups_of(
        db: &impl ConnectionTrait,
        tenant: &str,
        member: &str,
    ) -> Result<Vec<String>, Error> {
        let rows = db
            .query_all_raw(stmt(
                db.get_database_backend(),
                "SELECT group_id FROM group_members WHERE tenant_id = $1 AND member = $2",
                [tenant.into(), member.into()],
            ))
            .await?;
        rows.iter().map(|r| Ok(group_name(&r.try_get::<String>("", "group_id")?))).collect()
    }

    /// The member of `group` who gets the next ticket (by its method, among those on shift), and
    /// remembers it for round robin. `None`: the ticket waits in the group's queue.
    pub async fn choose_member(
        txn: &impl ConnectionTrait,
        group: &support_group::Model,
    ) -> Result<Option<String>, Error> {
        let members = list_from(&group.members);
        let shifts = shifts_from(&group.shifts);
        let on_shift = shifts::on_shift(&members, &shifts, chrono::Utc::now());
        let mut load = HashMap::new();
        if group.assignment_method == assignment::LEAST_LOADED {
            let open: Vec<String> =
                TicketState::ALL.iter().filter(|s| s.is_open()).map(|s| (*s as i32).to_string()).collect();
            let rows = txn
                .query_all_raw(stmt(
                    txn.get_database_backend(),
                    &format!(
                        "SELECT assignee, COUNT(*) AS n FROM tickets WHERE tenant_id = $1 AND assignee <> '' \
                         AND state IN ({}) GROUP BY assignee",
                        open.join(", ")
                    ),
                    [group.tenant_id.as_str().into()],
                ))
                .await?;
            for row in rows {
                load.insert(row.try_get::<String>("", "assignee")?, row.try_get::<i64>("", "n")?);
            }
        }
        let picked =
            assignment::pick(group.assignment_method, &on_shift, &group.last_assigned, &load).cloned();
        if let Some(member) = &picked {
            txn.execute_raw(stmt(
                txn.get_database_backend(),
                "UPDATE support_groups SET last_assigned = $1 WHERE id = $2",
                [member.as_str().into(), group.id.as_str().into()],
            ))
            .await?;
        }
        Ok(picked)
    }

    pub async fn create_rule(
        &self,
        ctx: &CallContext,
        mut rule: assignment_rule::Model,
    ) -> Result<assignment_rule::Model, Error> {
        rule.id = uuid::Uuid::now_v7().to_string();
        rule.tenant_id.clone_from(&ctx.tenant);
        rule.create_time = now_micros();
        rule.creator.clone_from(&ctx.principal);
        rule.clone().into_active_model().reset_all().insert(&self.db).await?;
        Ok(rule)
    }

    pub async fn rules(
        db: &impl ConnectionTrait,
        tenant: &str,
    ) -> Result<Vec<assignment_rule::Model>, Error> {
        Ok(assignment_rule::Entity::find()
            .filter(assignment_rule::Column::TenantId.eq(tenant))
            .order_by(assignment_rule::Column::RuleOrder, Order::Asc)
            .order_by(assignment_rule::Column::Id, Order::Asc)
            .all(db)
            .await?)
    }

    pub async fn delete_rule(&self, ctx: &CallContext, id: &str) -> Result<(), Error> {
        let result = assignment_rule::Entity::delete_many()
            .filter(assignment_rule::Column::TenantId.eq(ctx.tenant.as_str()))
            .filter(assignment_rule::Column::Id.eq(id))
            .exec(&self.db)
            .await?;
        if result.rows_affected == 0 {
            return Err(Error::NotFound(format!("{}{id}", crate::convert::RULE_PREFIX)));
        }
        Ok(())
    }

    /// The first rule whose conditions the ticket meets.
    pub async fn matching_rule(
        db: &impl ConnectionTrait,
        ticket: &ticket::Model,
    ) -> Result<Option<assignment_rule::Model>, Error> {
        let cis = list_from(&ticket.configuration_items);
        Ok(Self::rules(db, &ticket.tenant_id).await?.into_iter().find(|r| {
            (r.category.is_empty() || r.category == ticket.category)
                && (r.business_service.is_empty() || r.business_service == ticket.business_service)
                && (r.configuration_item.is_empty() || cis.contains(&r.configuration_item))
        }))
    }

    pub async fn create_webhook(
        &self,
        ctx: &CallContext,
        mut hook: webhook::Model,
    ) -> Result<webhook::Model, Error> {
        hook.id = uuid::Uuid::now_v7().to_string();
        hook.tenant_id.clone_from(&ctx.tenant);
        hook.create_time = now_micros();
        hook.creator.clone_from(&ctx.principal);
        hook.clone().into_active_model().reset_all().insert(&self.db).await?;
        Ok(hook)
    }

    pub async fn webhooks(db: &impl ConnectionTrait, tenant: &str) -> Result<Vec<webhook::Model>, Error> {
        Ok(webhook::Entity::find()
            .filter(webhook::Column::TenantId.eq(tenant))
            .order_by(webhook::Column::CreateTime, Order::Asc)
            .all(db)
            .await?)
    }

    pub async fn delete_webhook(&self, ctx: &CallContext, id: &str) -> Result<(), Error> {
        let result = webhook::Entity::delete_many()
            .filter(webhook::Column::TenantId.eq(ctx.tenant.as_str()))
            .filter(webhook::Column::Id.eq(id))
            .exec(&self.db)
            .await?;
        if result.rows_affected == 0 {
            return Err(Error::NotFound(format!("{}{id}", crate::convert::WEBHOOK_PREFIX)));
        }
        Ok(())
    }
}

async fn write_members(txn: &impl ConnectionTrait, group: &support_group::Model) -> Result<(), Error> {
    let backend = txn.get_database_backend();
    txn.execute_raw(stmt(
        backend,
        "DELETE FROM group_members WHERE group_id = $1",
        [group.id.as_str().into()],
    ))
    .await?;
    let mut members = list_from(&group.members);
    members.sort();
    members.dedup();
    for member in members {
        let values: [Value; 3] = [group.id.as_str().into(), member.into(), group.tenant_id.as_str().into()];
        txn.execute_raw(stmt(
            backend,
            "INSERT INTO group_members (group_id, member, tenant_id) VALUES ($1, $2, $3)",
            values,
        ))
        .await?;
    }
    Ok(())
}

pub const GROUP_FILTER_FIELDS: &[&str] = &["display_name", "tier", "manager", "create_time", "update_time"];
const TIERS: &[(i32, &str)] = &[(1, "1"), (2, "2"), (3, "3")];

fn group_field(member: &str) -> Option<Field> {
    use sea_orm::sea_query::Expr;
    use support_group::Column as C;
    let col = |c: C| Expr::col((support_group::Entity, c));
    Some(match member {
        "display_name" => Field::Text(col(C::DisplayName)),
        "tier" => Field::Enum { column: col(C::Tier), values: TIERS, prefix: "" },
        "manager" => Field::Text(col(C::Manager)),
        "create_time" => Field::Time(col(C::CreateTime)),
        "update_time" => Field::Time(col(C::UpdateTime)),
        _ => return None,
    })
}
