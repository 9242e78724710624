//! Ticket notes: agents' work notes and comments between the requester and the desk. Adding a
//! note is a change of its ticket: one transaction holds the note, the ticket's new version, its
//! history entry (`work_note` or `comment`, the text as the reason), its `TicketChanged` event and
//! the idempotency key.

use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter, TransactionTrait};

use itsm_runtime::history::change_time;
use itsm_runtime::idempotency::{self, Claim};
use itsm_runtime::{CallContext, Error, keyset};

use super::{Page, Repository};
use crate::convert::{note_name, ticket_name};
use crate::domain::lifecycle::TicketState;
use crate::domain::notes::{Visibility, check_open_to_notes};
use crate::entity::{ticket, ticket_note};

pub const NOTE_METHOD: &str = "AddTicketNote";

/// A note to add (checked by the API layer).
#[derive(Debug, Clone)]
pub struct NewNote {
    pub visibility: Visibility,
    /// Trimmed, not empty.
    pub text: String,
    /// The caller is only a requester: the ticket must be theirs (another's does not exist for
    /// them).
    pub requester_only: bool,
}

impl Repository {
    /// The ticket `number`, unless `requester_only` and it is not the caller's: then, as when it
    /// does not exist, NOT_FOUND (a requester learns nothing of others' tickets).
    pub async fn visible_ticket(
        db: &impl sea_orm::ConnectionTrait,
        ctx: &CallContext,
        number: &str,
        requester_only: bool,
    ) -> Result<ticket::Model, Error> {
        Repository::find_ticket(db, &ctx.tenant, number)
            .await?
            .filter(|t| !requester_only || t.requester == ctx.principal)
            .ok_or_else(|| Error::NotFound(ticket_name(number)))
    }

    /// Adds a note to ticket `number`; FAILED_PRECONDITION when the ticket is CLOSED or
    /// CANCELLED. A retry with the same `request_id` returns the first note.
    pub async fn add_ticket_note(
        &self,
        ctx: &CallContext,
        number: &str,
        new: NewNote,
        request_id: &str,
        request_hash: &str,
    ) -> Result<ticket_note::Model, Error> {
        let txn = self.db.begin().await?;
        match idempotency::claim(&txn, &ctx.tenant, NOTE_METHOD, request_id, request_hash).await? {
            Claim::Fresh => {}
            Claim::Done(name) => {
                let id = name.rsplit('/').next().unwrap_or_default().to_string();
                let found = ticket_note::Entity::find()
                    .filter(ticket_note::Column::TenantId.eq(ctx.tenant.as_str()))
                    .filter(ticket_note::Column::Id.eq(id))
                    .one(&txn)
                    .await?;
                txn.commit().await?;
                return found.ok_or(Error::NotFound(name));
            }
            Claim::LostRace => {
                return Err(Error::Aborted("a note with the same request_id is being added; retry".into()));
            }
        }
        let current = Self::visible_ticket(&txn, ctx, number, new.requester_only).await?;
        let state = TicketState::from_i32(current.state).ok_or_else(|| {
            Error::Internal(format!("{} has unknown state {}", current.number, current.state))
        })?;
        check_open_to_notes(state)
            .map_err(|e| Error::FailedPrecondition(format!("{}: {e}", ticket_name(number))))?;
        let now = change_time(current.update_time);
        let note = ticket_note::Model {
            id: uuid::Uuid::now_v7().to_string(),
            tenant_id: ctx.tenant.clone(),
            ticket_id: current.id.clone(),
            visibility: new.visibility as i32,
            text: new.text,
            author: ctx.principal.clone(),
            create_time: now,
        };
        note.clone().into_active_model().reset_all().insert(&txn).await?;
        // The ticket's fields stay as they are; its version, update time and history record the note.
        let after = current.clone();
        self.store_ticket(&txn, ctx, &current, after, new.visibility.action(), &note.text, now).await?;
        idempotency::complete(&txn, &ctx.tenant, NOTE_METHOD, request_id, &note_name(number, &note.id))
            .await?;
        txn.commit().await?;
        self.committed();
        Ok(note)
    }

    /// Ticket `number`'s notes, oldest first, after the (create time, id) key `after`; only the
    /// comments of the caller's own tickets when `requester_only`.
    pub async fn ticket_notes(
        &self,
        ctx: &CallContext,
        number: &str,
        requester_only: bool,
        after: Option<Vec<serde_json::Value>>,
        limit: u64,
    ) -> Result<Page<ticket_note::Model>, Error> {
        let ticket = Self::visible_ticket(&self.db, ctx, number, requester_only).await?;
        let mut query = ticket_note::Entity::find()
            .filter(ticket_note::Column::TenantId.eq(ctx.tenant.as_str()))
            .filter(ticket_note::Column::TicketId.eq(ticket.id.as_str()));
        if requester_only {
            query = query.filter(ticket_note::Column::Visibility.eq(Visibility::Comment as i32));
        }
        keyset::page(
            &self.db,
            query,
            ticket_note::Column::CreateTime,
            ticket_note::Column::Id,
            false,
            after,
            limit,
            |m| (serde_json::json!(m.create_time), m.id.clone()),
        )
        .await
    }
}
