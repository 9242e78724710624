//! Notifications and their webhook deliveries. A notification is written in the transaction of
//! the change that caused it, with one delivery per subscribed webhook; the deliverer works the
//! deliveries afterwards.

use std::collections::BTreeMap;

use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, ExprTrait, IntoActiveModel, Order,
    QueryFilter, QueryOrder, QuerySelect,
};

use itsm_proto::servicedesk::{DeliveryState, Notification};
use itsm_runtime::db::now_micros;
use itsm_runtime::{CallContext, Error};

use super::{Page, Repository};
use crate::convert::{NOTIFICATION_PREFIX, list_from, ticket_name, time};
use crate::domain::templates;
use crate::entity::{delivery, notification, ticket, webhook};

/// A delivery due now, with what it needs.
pub struct DueDelivery {
    pub delivery: delivery::Model,
    pub notification: notification::Model,
    pub webhook: webhook::Model,
}

impl Repository {
    /// Writes a notification of `kind` about `ticket` to `recipient` (rendered from its
    /// template) and a delivery for each webhook that wants it, in the caller's transaction.
    pub async fn notify(
        txn: &impl ConnectionTrait,
        kind: &str,
        recipient: &str,
        ticket: &ticket::Model,
        extra: &[(&'static str, String)],
    ) -> Result<(), Error> {
        let mut values: BTreeMap<&str, String> = BTreeMap::new();
        values.insert("number", ticket.number.clone());
        values.insert("short_description", ticket.short_description.clone());
        values.insert("resolution_notes", ticket.resolution_notes.clone());
        values.insert("support_group", ticket.support_group.clone());
        values.insert("tier", ticket.tier.to_string());
        values.insert("requester", ticket.requester.clone());
        for (key, value) in extra {
            values.insert(key, value.clone());
        }
        let (subject, body) = templates::render(kind, &values)
            .ok_or_else(|| Error::Internal(format!("no notification template for {kind}")))?;
        let now = now_micros();
        let model = notification::Model {
            id: uuid::Uuid::now_v7().to_string(),
            tenant_id: ticket.tenant_id.clone(),
            kind: kind.to_string(),
            recipient: recipient.to_string(),
            subject,
            body,
            ticket: ticket_name(&ticket.number),
            create_time: now,
        };
        model.clone().into_active_model().reset_all().insert(txn).await?;
        for hook in Self::webhooks(txn, &ticket.tenant_id).await? {
            let kinds = list_from(&hook.kinds);
            if !kinds.is_empty() && !kinds.iter().any(|k| k == kind) {
                continue;
            }
            delivery::Model {
                id: uuid::Uuid::now_v7().to_string(),
                tenant_id: ticket.tenant_id.clone(),
                notification_id: model.id.clone(),
                webhook_id: hook.id.clone(),
                state: DeliveryState::Pending as i32,
                attempts: 0,
                next_attempt_time: now,
                last_error: String::new(),
                update_time: now,
            }
            .into_active_model()
            .reset_all()
            .insert(txn)
            .await?;
        }
        Ok(())
    }

    /// Notifications newest first (of one ticket when `ticket` is set), with their delivery state.
    pub async fn notifications(
        &self,
        ctx: &CallContext,
        ticket: &str,
        after: Option<Vec<serde_json::Value>>,
        limit: u64,
    ) -> Result<Page<Notification>, Error> {
        let mut query =
            notification::Entity::find().filter(notification::Column::TenantId.eq(ctx.tenant.as_str()));
        if !ticket.is_empty() {
            query = query.filter(notification::Column::Ticket.eq(ticket));
        }
        let page = itsm_runtime::keyset::page(
            &self.db,
            query,
            notification::Column::CreateTime,
            notification::Column::Id,
            true,
            after,
            limit,
            |m| (serde_json::json!(m.create_time), m.id.clone()),
        )
        .await?;
        let mut items = Vec::with_capacity(page.items.len());
        for n in &page.items {
            let deliveries = delivery::Entity::find()
                .filter(delivery::Column::NotificationId.eq(n.id.as_str()))
                .all(&self.db)
                .await?;
            let state = if deliveries.is_empty() {
                DeliveryState::NoSubscriber
            } else if deliveries.iter().any(|d| d.state == DeliveryState::Failed as i32) {
                DeliveryState::Failed
            } else if deliveries.iter().all(|d| d.state == DeliveryState::Delivered as i32) {
                DeliveryState::Delivered
            } else {
                DeliveryState::Pending
            };
            let last_error =
                deliveries.iter().map(|d| d.last_error.as_str()).find(|e| !e.is_empty()).unwrap_or("");
            items.push(Notification {
                name: format!("{NOTIFICATION_PREFIX}{}", n.id),
                kind: n.kind.clone(),
                recipient: n.recipient.clone(),
                subject: n.subject.clone(),
                body: n.body.clone(),
                ticket: n.ticket.clone(),
                state: state as i32,
                attempts: deliveries.iter().map(|d| d.attempts).sum(),
                last_error: last_error.to_string(),
                create_time: time(n.create_time),
            });
        }
        Ok(Page { items, next_key: page.next_key })
    }

    /// Pending deliveries whose time has come, oldest first.
    pub async fn due_deliveries(&self, now: i64, limit: u64) -> Result<Vec<DueDelivery>, Error> {
        let rows = delivery::Entity::find()
            .filter(delivery::Column::State.eq(DeliveryState::Pending as i32))
            .filter(Expr::col(delivery::Column::NextAttemptTime).lte(now))
            .order_by(delivery::Column::NextAttemptTime, Order::Asc)
            .limit(limit)
            .all(&self.db)
            .await?;
        let mut due = Vec::with_capacity(rows.len());
        for d in rows {
            let n = notification::Entity::find_by_id(d.notification_id.clone()).one(&self.db).await?;
            let w = webhook::Entity::find_by_id(d.webhook_id.clone()).one(&self.db).await?;
            match (n, w) {
                (Some(notification), Some(webhook)) => {
                    due.push(DueDelivery { delivery: d, notification, webhook });
                }
                // The webhook was deleted: nothing left to deliver to.
                _ => {
                    self.finish_delivery(&d, DeliveryState::Failed, "the webhook was deleted", now).await?;
                }
            }
        }
        Ok(due)
    }

    /// Records an attempt: delivered, failed for good, or to retry at `retry_at`.
    pub async fn record_attempt(
        &self,
        d: &delivery::Model,
        outcome: Result<(), String>,
        retry_at: Option<i64>,
    ) -> Result<(), Error> {
        let now = now_micros();
        let mut row = d.clone();
        row.attempts += 1;
        row.update_time = now;
        match (outcome, retry_at) {
            (Ok(()), _) => {
                row.state = DeliveryState::Delivered as i32;
                row.last_error.clear();
            }
            (Err(error), Some(at)) => {
                row.last_error = error;
                row.next_attempt_time = at;
            }
            (Err(error), None) => {
                row.state = DeliveryState::Failed as i32;
                row.last_error = error;
            }
        }
        row.into_active_model().reset_all().update(&self.db).await?;
        Ok(())
    }

    async fn finish_delivery(
        &self,
        d: &delivery::Model,
        state: DeliveryState,
        error: &str,
        now: i64,
    ) -> Result<(), Error> {
        let mut row = d.clone();
        row.state = state as i32;
        row.last_error = error.to_string();
        row.update_time = now;
        row.into_active_model().reset_all().update(&self.db).await?;
        Ok(())
    }
}
