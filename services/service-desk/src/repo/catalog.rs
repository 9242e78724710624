//! The service catalogue: items with their forms, requests awaiting approval, fulfilment tasks.

use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, Order, QueryFilter,
    QueryOrder, TransactionTrait,
};

use itsm_runtime::db::now_micros;
use itsm_runtime::history::change_time;
use itsm_runtime::{CallContext, Error, keyset};

use super::{Page, Repository};
use crate::convert::ticket_name;
use crate::entity::{catalog_item, fulfilment_task, ticket};
use crate::repo::tickets::{resolve, transition};

pub const CATALOG_PREFIX: &str = "catalogItems/";
/// Numbers match `itsm.servicedesk.v1.RequestState`.
pub const AWAITING_APPROVAL: i32 = 1;
pub const IN_FULFILMENT: i32 = 2;
pub const REJECTED: i32 = 3;
pub const FULFILLED: i32 = 4;

impl Repository {
    pub async fn create_catalog_item(
        &self,
        ctx: &CallContext,
        mut item: catalog_item::Model,
    ) -> Result<catalog_item::Model, Error> {
        item.id = uuid::Uuid::now_v7().to_string();
        item.tenant_id.clone_from(&ctx.tenant);
        item.create_time = now_micros();
        item.creator.clone_from(&ctx.principal);
        item.clone().into_active_model().reset_all().insert(&self.db).await?;
        Ok(item)
    }

    pub async fn find_catalog_item(
        db: &impl ConnectionTrait,
        tenant: &str,
        id: &str,
    ) -> Result<Option<catalog_item::Model>, Error> {
        Ok(catalog_item::Entity::find()
            .filter(catalog_item::Column::TenantId.eq(tenant))
            .filter(catalog_item::Column::Id.eq(id))
            .one(db)
            .await?)
    }

    pub async fn list_catalog_items(
        &self,
        ctx: &CallContext,
        after: Option<Vec<serde_json::Value>>,
        limit: u64,
    ) -> Result<Page<catalog_item::Model>, Error> {
        let query =
            catalog_item::Entity::find().filter(catalog_item::Column::TenantId.eq(ctx.tenant.as_str()));
        keyset::page(
            &self.db,
            query,
            catalog_item::Column::DisplayName,
            catalog_item::Column::Id,
            false,
            after,
            limit,
            |m| (serde_json::json!(m.display_name), m.id.clone()),
        )
        .await
    }

    /// Opens a request's fulfilment tasks, in order (none when it still awaits approval).
    pub(crate) async fn open_tasks(
        txn: &impl ConnectionTrait,
        t: &ticket::Model,
        tasks: &[(String, String)],
    ) -> Result<(), Error> {
        if t.request_state != IN_FULFILMENT {
            return Ok(());
        }
        for (position, (title, group)) in tasks.iter().enumerate() {
            fulfilment_task::Model {
                id: uuid::Uuid::now_v7().to_string(),
                tenant_id: t.tenant_id.clone(),
                ticket_id: t.id.clone(),
                position: position as i32,
                title: title.clone(),
                support_group: group.clone(),
                done: false,
                completed_by: String::new(),
                complete_time: 0,
            }
            .into_active_model()
            .reset_all()
            .insert(txn)
            .await?;
        }
        Ok(())
    }

    /// The approver's decision on a request awaiting approval.
    pub async fn decide_request(
        &self,
        ctx: &CallContext,
        number: &str,
        approve: bool,
        comment: &str,
        tasks: Vec<(String, String)>,
    ) -> Result<ticket::Model, Error> {
        let txn = self.db.begin().await?;
        let current = Self::find_ticket(&txn, &ctx.tenant, number)
            .await?
            .ok_or_else(|| Error::NotFound(ticket_name(number)))?;
        if current.request_state != AWAITING_APPROVAL {
            return Err(Error::FailedPrecondition(format!(
                "{} is not awaiting approval",
                ticket_name(number)
            )));
        }
        if current.approver != ctx.principal {
            return Err(Error::PermissionDenied(format!(
                "{} is for {} to approve",
                ticket_name(number),
                current.approver
            )));
        }
        let now = change_time(current.update_time);
        let mut after = current.clone();
        let action = if approve {
            after.request_state = IN_FULFILMENT;
            "approve"
        } else {
            after.request_state = REJECTED;
            transition(&mut after, crate::domain::lifecycle::TicketState::Cancelled)?;
            "reject"
        };
        let stored = self.store_ticket(&txn, ctx, &current, after, action, comment, now).await?;
        if approve {
            Self::open_tasks(&txn, &stored, &tasks).await?;
        } else {
            Self::notify(
                &txn,
                "request_rejected",
                &stored.requester,
                &stored,
                &[("reason", comment.to_string())],
            )
            .await?;
        }
        txn.commit().await?;
        self.committed();
        Ok(stored)
    }

    pub async fn tasks_of(
        db: &impl ConnectionTrait,
        ticket_id: &str,
    ) -> Result<Vec<fulfilment_task::Model>, Error> {
        Ok(fulfilment_task::Entity::find()
            .filter(fulfilment_task::Column::TicketId.eq(ticket_id))
            .order_by(fulfilment_task::Column::Position, Order::Asc)
            .all(db)
            .await?)
    }

    /// Marks a task done; the last one fulfils the request (the ticket is resolved).
    pub async fn complete_task(
        &self,
        ctx: &CallContext,
        number: &str,
        task_id: &str,
    ) -> Result<fulfilment_task::Model, Error> {
        let txn = self.db.begin().await?;
        let current = Self::find_ticket(&txn, &ctx.tenant, number)
            .await?
            .ok_or_else(|| Error::NotFound(ticket_name(number)))?;
        let task = fulfilment_task::Entity::find()
            .filter(fulfilment_task::Column::Id.eq(task_id))
            .filter(fulfilment_task::Column::TicketId.eq(current.id.as_str()))
            .one(&txn)
            .await?
            .ok_or_else(|| Error::NotFound(format!("{}/tasks/{task_id}", ticket_name(number))))?;
        if task.done {
            return Err(Error::FailedPrecondition(format!("the task {:?} is already done", task.title)));
        }
        if current.request_state != IN_FULFILMENT {
            return Err(Error::FailedPrecondition(format!("{} is not in fulfilment", ticket_name(number))));
        }
        let now = change_time(current.update_time);
        let mut done = task.clone();
        done.done = true;
        done.completed_by.clone_from(&ctx.principal);
        done.complete_time = now;
        done.clone().into_active_model().reset_all().update(&txn).await?;
        let open = Self::tasks_of(&txn, &current.id).await?.iter().filter(|t| !t.done).count();
        let reason = format!("task done: {}", task.title);
        let mut after = current.clone();
        let action = if open == 0 {
            after.request_state = FULFILLED;
            resolve(&mut after, "Fulfilled: every task is done", now)?;
            "resolve"
        } else {
            "task"
        };
        let stored = self.store_ticket(&txn, ctx, &current, after, action, &reason, now).await?;
        if open == 0 {
            Self::notify(&txn, "ticket_resolved", &stored.requester, &stored, &[]).await?;
        }
        txn.commit().await?;
        self.committed();
        Ok(done)
    }
}
