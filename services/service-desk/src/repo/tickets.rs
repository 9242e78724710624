//! Tickets: create with routing, changes through the state machine, escalation between tiers,
//! following the linked incident, surveys, queues and the report.

use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseBackend, EntityTrait, IdenStatic,
    IntoActiveModel, QueryFilter, QuerySelect, Statement, TransactionTrait, Value,
};

use itsm_proto::common::FieldChange;
use itsm_proto::servicedesk::TicketChanged;
use itsm_runtime::db::stmt;
use itsm_runtime::filter::Expr as Filter;
use itsm_runtime::history::{self, NewEntry, change_time, check_etag, diff};
use itsm_runtime::idempotency::{self, Claim};
use itsm_runtime::outbox::{self, NewEvent};
use itsm_runtime::sql_filter::{self as filters, Field};
use itsm_runtime::{CallContext, Error, keyset, numbers};

use super::{Page, Repository, TICKET};
use crate::convert::{GROUP_PREFIX, TICKET_NUMBER, TICKET_PREFIX, group_name, ticket_name, ticket_to_proto};
use crate::domain::lifecycle::TicketState;
use crate::domain::notes::WORK_NOTE_ACTION;
use crate::domain::report::{self, Report, TicketFacts};
use crate::domain::tiers;
use crate::entity::{support_group, ticket};

pub const CREATE_METHOD: &str = "CreateTicket";
pub const ORDER_FIELDS: &[&str] = &["number", "create_time", "update_time"];

/// What a caller gives to create a ticket (checked by the API layer).
#[derive(Debug, Clone, Default)]
pub struct NewTicket {
    pub channel: i32,
    pub requester: String,
    pub organisation: String,
    pub category: String,
    pub short_description: String,
    pub description: String,
    pub ticket_type: i32,
    /// Group id (not name) when the caller routes it; else the rules decide.
    pub support_group: Option<String>,
    pub business_service: String,
    pub configuration_items: Vec<String>,
    pub impact: i32,
    pub urgency: i32,
    /// A catalogue request: the item's name, the answers, its state, its approver and (when it
    /// goes straight to fulfilment) the tasks to open.
    pub catalog_item: String,
    pub variables: std::collections::BTreeMap<String, String>,
    pub request_state: i32,
    pub approver: String,
    pub tasks: Vec<(String, String)>,
}

/// Where an escalation goes.
pub struct EscalationPlan {
    pub ticket: ticket::Model,
    pub target: support_group::Model,
}

fn state_of(m: &ticket::Model) -> Result<TicketState, Error> {
    TicketState::from_i32(m.state)
        .ok_or_else(|| Error::Internal(format!("{} has unknown state {}", m.number, m.state)))
}

/// Queue order: priority (unclassified last), then oldest first.
fn queue_key(m: &ticket::Model) -> String {
    let rank = if m.priority == 0 { 9 } else { m.priority };
    format!("{rank}:{:020}", m.open_time)
}

/// The open states, as stored.
fn open_states() -> Vec<i32> {
    TicketState::ALL.iter().filter(|s| s.is_open()).map(|s| *s as i32).collect()
}

/// Most index ranges (owners × open states) one queue page merges; 50 is 16 groups. Each range
/// adds a sub-select of about 250 bytes and five parameters. A caller in more groups gets the
/// same page from the `IN`-list query, which sorts all their open tickets (correct, only slower).
const MAX_QUEUE_RANGES: usize = 50;

/// A queue page as one statement over index ranges: per (owner, state) the next rows of
/// `tickets_by_assignee` or `tickets_by_group` in queue order, merged by queue order.
struct QueueRanges<'a> {
    /// `Assignee` or `SupportGroup`: the column the owners are values of.
    owner: ticket::Column,
    owners: &'a [&'a str],
    states: &'a [i32],
    unassigned_only: bool,
}

impl QueueRanges<'_> {
    /// `limit + 1` rows of `tenant` after `after` (queue key, id), in queue order:
    ///
    /// ```sql
    /// SELECT * FROM (
    ///   SELECT * FROM (SELECT * FROM tickets WHERE tenant_id = $1 AND support_group = $2
    ///     AND state = $3 [AND assignee = ''] [AND (queue_key, id) > ($4, $5)]
    ///     ORDER BY queue_key, id LIMIT n) AS r0
    ///   UNION ALL SELECT * FROM (…next range…) AS r1 …
    /// ) AS q ORDER BY queue_key, id LIMIT n
    /// ```
    ///
    /// The page's rows are among the first `limit + 1` of their own range, so a range never
    /// needs more. Every range is a sub-select because SQLite allows ORDER BY and LIMIT in a
    /// compound's member only there (PostgreSQL takes both forms). Placeholders are numbered in
    /// the order they appear, as SQLite needs; the parameters are bound, only `n` (ours) is text.
    fn statement(
        &self,
        backend: DatabaseBackend,
        tenant: &str,
        after: Option<&(Value, String)>,
        limit: u64,
    ) -> Statement {
        let fetch = limit.saturating_add(1);
        let owner_column = self.owner.as_str();
        let mut values: Vec<Value> = Vec::new();
        let mut ranges = Vec::with_capacity(self.owners.len() * self.states.len());
        for owner in self.owners {
            for state in self.states {
                let mut conditions = vec![
                    format!("tenant_id = {}", bind(&mut values, tenant)),
                    format!("{owner_column} = {}", bind(&mut values, *owner)),
                    format!("state = {}", bind(&mut values, *state)),
                ];
                if self.unassigned_only {
                    // A literal, not a parameter: the partial index `tickets_unassigned_by_group`
                    // is only used when the query names its predicate.
                    conditions.push("assignee = ''".to_string());
                }
                if let Some((key, id)) = after {
                    // A row-value comparison, so the index serves it as the start of the range.
                    let key_mark = bind(&mut values, key.clone());
                    let id_mark = bind(&mut values, id.as_str());
                    conditions.push(format!("(queue_key, id) > ({key_mark}, {id_mark})"));
                }
                let (wanted, at) = (conditions.join(" AND "), ranges.len());
                ranges.push(format!(
                    "SELECT * FROM (SELECT * FROM tickets WHERE {wanted} \
                     ORDER BY queue_key, id LIMIT {fetch}) AS r{at}"
                ));
            }
        }
        let sql = format!(
            "SELECT * FROM ({}) AS q ORDER BY queue_key, id LIMIT {fetch}",
            ranges.join(" UNION ALL ")
        );
        stmt(backend, &sql, values)
    }
}

/// Appends `value` to `values` and returns its placeholder (`$n`, n its position).
fn bind(values: &mut Vec<Value>, value: impl Into<Value>) -> String {
    values.push(value.into());
    format!("${}", values.len())
}

fn not_open(m: &ticket::Model, what: &str) -> Result<(), Error> {
    let state = state_of(m)?;
    if state.is_open() {
        Ok(())
    } else {
        Err(Error::FailedPrecondition(format!(
            "{} is {state}; only NEW, IN_PROGRESS or PENDING tickets can be {what}",
            ticket_name(&m.number)
        )))
    }
}

impl Repository {
    pub async fn find_ticket(
        db: &impl ConnectionTrait,
        tenant: &str,
        number: &str,
    ) -> Result<Option<ticket::Model>, Error> {
        Ok(ticket::Entity::find()
            .filter(ticket::Column::TenantId.eq(tenant))
            .filter(ticket::Column::Number.eq(number))
            .one(db)
            .await?)
    }

    async fn require_ticket(
        db: &impl ConnectionTrait,
        tenant: &str,
        number: &str,
    ) -> Result<ticket::Model, Error> {
        Self::find_ticket(db, tenant, number).await?.ok_or_else(|| Error::NotFound(ticket_name(number)))
    }

    pub async fn get_ticket(&self, ctx: &CallContext, number: &str) -> Result<ticket::Model, Error> {
        Self::require_ticket(&self.db, &ctx.tenant, number).await
    }

    /// The group a field names, or a violation of that field.
    pub async fn named_group(
        db: &impl ConnectionTrait,
        tenant: &str,
        name: &str,
        field: &str,
    ) -> Result<support_group::Model, Error> {
        let id = crate::convert::uuid_of(name, GROUP_PREFIX)
            .ok_or_else(|| Error::invalid(field, "must be `supportGroups/{uuid}`"))?;
        Self::find_group(db, tenant, &id)
            .await?
            .ok_or_else(|| Error::invalid(field, format!("{name} does not exist")))
    }

    pub async fn create_ticket(
        &self,
        ctx: &CallContext,
        new: NewTicket,
        request_id: &str,
        request_hash: &str,
    ) -> Result<ticket::Model, Error> {
        for _ in 0..3 {
            let txn = self.db.begin().await?;
            match idempotency::claim(&txn, &ctx.tenant, CREATE_METHOD, request_id, request_hash).await? {
                Claim::Fresh => {}
                Claim::Done(name) => {
                    let found =
                        Self::find_ticket(&txn, &ctx.tenant, name.trim_start_matches(TICKET_PREFIX)).await?;
                    txn.commit().await?;
                    return found.ok_or(Error::NotFound(name));
                }
                Claim::LostRace => {
                    txn.rollback().await?;
                    continue;
                }
            }
            let now = itsm_runtime::db::now_micros();
            let mut model = ticket::Model {
                id: uuid::Uuid::now_v7().to_string(),
                tenant_id: ctx.tenant.clone(),
                number: numbers::next(&txn, &ctx.tenant, TICKET_NUMBER).await?,
                channel: new.channel,
                requester: if new.requester.is_empty() {
                    ctx.principal.clone()
                } else {
                    new.requester.clone()
                },
                organisation: new.organisation.clone(),
                category: new.category.clone(),
                short_description: new.short_description.clone(),
                description: new.description.clone(),
                ticket_type: new.ticket_type,
                state: TicketState::New as i32,
                support_group: String::new(),
                tier: 1,
                assignee: String::new(),
                incident: String::new(),
                business_service: new.business_service.clone(),
                configuration_items: crate::convert::list_to(&new.configuration_items),
                impact: new.impact,
                urgency: new.urgency,
                priority: 0,
                resolution_notes: String::new(),
                open_time: now,
                first_response_time: 0,
                resolve_time: 0,
                close_time: 0,
                escalation_count: 0,
                tier_time: now,
                max_tier: 1,
                survey_score: 0,
                survey_comment: String::new(),
                catalog_item: new.catalog_item.clone(),
                variables: serde_json::to_string(&new.variables).unwrap_or_else(|_| "{}".into()),
                request_state: new.request_state,
                approver: new.approver.clone(),
                sla_due_time: 0,
                sla_clocks: "{}".into(),
                escalation_reason: String::new(),
                queue_key: String::new(),
                version: 1,
                create_time: now,
                update_time: now,
                creator: ctx.principal.clone(),
                updater: ctx.principal.clone(),
            };
            let group = match &new.support_group {
                Some(id) => Self::find_group(&txn, &ctx.tenant, id).await?,
                None => self.route(&txn, &model).await?,
            };
            if let Some(group) = group {
                Self::give_to(&txn, &mut model, &group, now).await?;
            }
            model.queue_key = queue_key(&model);
            model.clone().into_active_model().reset_all().insert(&txn).await?;
            let changes = diff(None, Some(&model));
            let entry = NewEntry {
                kind: TICKET,
                record_id: &model.id,
                version: 1,
                change_time: now,
                action: "create",
                changes: &changes,
                reason: "",
            };
            history::record(&txn, ctx, entry).await?;
            emit(&txn, ctx, None, &model, "create", &changes).await?;
            if !model.assignee.is_empty() {
                Self::notify(&txn, "ticket_assigned", &model.assignee, &model, &[]).await?;
            }
            Self::open_tasks(&txn, &model, &new.tasks).await?;
            if !model.approver.is_empty() {
                Self::notify(&txn, "approval_requested", &model.approver, &model, &[]).await?;
            }
            idempotency::complete(&txn, &ctx.tenant, CREATE_METHOD, request_id, &ticket_name(&model.number))
                .await?;
            txn.commit().await?;
            self.committed();
            return Ok(model);
        }
        Err(Error::Aborted("concurrent creates with the same request_id; retry".into()))
    }

    /// The group the rules send a ticket to: the first matching rule's, else the first tier-1
    /// group; `None` when the desk has no groups yet.
    async fn route(
        &self,
        txn: &impl ConnectionTrait,
        ticket: &ticket::Model,
    ) -> Result<Option<support_group::Model>, Error> {
        if let Some(rule) = Self::matching_rule(txn, ticket).await?
            && let Some(id) = crate::convert::uuid_of(&rule.support_group, GROUP_PREFIX)
            && let Some(group) = Self::find_group(txn, &ticket.tenant_id, &id).await?
        {
            return Ok(Some(group));
        }
        Self::group_of_tier(txn, &ticket.tenant_id, 1).await
    }

    /// Puts the ticket in `group` at its tier, with a member chosen by the group's method.
    async fn give_to(
        txn: &impl ConnectionTrait,
        m: &mut ticket::Model,
        group: &support_group::Model,
        now: i64,
    ) -> Result<(), Error> {
        if m.support_group != group_name(&group.id) {
            m.tier_time = now;
        }
        m.support_group = group_name(&group.id);
        m.tier = group.tier;
        m.max_tier = m.max_tier.max(group.tier);
        m.assignee = Self::choose_member(txn, group).await?.unwrap_or_default();
        if !m.assignee.is_empty() {
            if m.first_response_time == 0 {
                m.first_response_time = now;
            }
            if m.state == TicketState::New as i32 {
                m.state = TicketState::InProgress as i32;
            }
        }
        Ok(())
    }

    /// Loads, checks the etag, lets `edit` change a copy, stores with history and event.
    pub async fn change_ticket(
        &self,
        ctx: &CallContext,
        number: &str,
        expected_etag: &str,
        action: &str,
        reason: &str,
        edit: impl FnOnce(&mut ticket::Model, i64) -> Result<(), Error>,
    ) -> Result<ticket::Model, Error> {
        let txn = self.db.begin().await?;
        let current = Self::require_ticket(&txn, &ctx.tenant, number).await?;
        check_etag(expected_etag, current.version, &ticket_name(number))?;
        let now = change_time(current.update_time);
        let mut after = current.clone();
        edit(&mut after, now)?;
        let stored = self.store_ticket(&txn, ctx, &current, after, action, reason, now).await?;
        if stored.state == TicketState::Resolved as i32 && current.state != TicketState::Resolved as i32 {
            Self::notify(&txn, "ticket_resolved", &stored.requester, &stored, &[]).await?;
        }
        txn.commit().await?;
        self.committed();
        Ok(stored)
    }

    #[allow(clippy::too_many_arguments)] // the transaction, who, before, after and why
    pub(crate) async fn store_ticket(
        &self,
        txn: &impl ConnectionTrait,
        ctx: &CallContext,
        current: &ticket::Model,
        mut after: ticket::Model,
        action: &str,
        reason: &str,
        now: i64,
    ) -> Result<ticket::Model, Error> {
        after.queue_key = queue_key(&after);
        let changes = diff(Some(current), Some(&after));
        if changes.is_empty() && reason.is_empty() {
            return Ok(current.clone());
        }
        after.version = current.version + 1;
        after.update_time = now;
        after.updater.clone_from(&ctx.principal);
        let mut active = after.clone().into_active_model().reset_all();
        active.id = sea_orm::ActiveValue::NotSet;
        active.tenant_id = sea_orm::ActiveValue::NotSet;
        let result = ticket::Entity::update_many()
            .set(active)
            .filter(ticket::Column::Id.eq(current.id.as_str()))
            .filter(ticket::Column::Version.eq(current.version))
            .exec(txn)
            .await?;
        if result.rows_affected != 1 {
            return Err(Error::Aborted(format!(
                "{} was changed concurrently; read it again",
                ticket_name(&current.number)
            )));
        }
        let entry = NewEntry {
            kind: TICKET,
            record_id: &after.id,
            version: after.version,
            change_time: now,
            action,
            changes: &changes,
            reason,
        };
        history::record(txn, ctx, entry).await?;
        emit(txn, ctx, Some(current), &after, action, &changes).await?;
        Ok(after)
    }

    /// Works out where an escalation goes, and checks it is allowed (read-only; `escalate`
    /// checks again inside its transaction).
    pub async fn plan_escalation(
        &self,
        ctx: &CallContext,
        number: &str,
        explicit: &str,
    ) -> Result<EscalationPlan, Error> {
        Self::plan(&self.db, &ctx.tenant, number, explicit).await
    }

    async fn plan(
        db: &impl ConnectionTrait,
        tenant: &str,
        number: &str,
        explicit: &str,
    ) -> Result<EscalationPlan, Error> {
        let ticket = Self::require_ticket(db, tenant, number).await?;
        not_open(&ticket, "escalated")?;
        let target = if !explicit.is_empty() {
            Self::named_group(db, tenant, explicit, "support_group").await?
        } else {
            let current = match crate::convert::uuid_of(&ticket.support_group, GROUP_PREFIX) {
                Some(id) => Self::find_group(db, tenant, &id).await?,
                None => None,
            };
            let next = match current.as_ref().map(|g| g.escalation_group.as_str()).filter(|g| !g.is_empty()) {
                Some(name) => match crate::convert::uuid_of(name, GROUP_PREFIX) {
                    Some(id) => Self::find_group(db, tenant, &id).await?,
                    None => None,
                },
                None => None,
            };
            match next {
                Some(group) => group,
                None => Self::group_of_tier(db, tenant, ticket.tier + 1).await?.ok_or_else(|| {
                    Error::FailedPrecondition(format!(
                        "no support group of tier {} to escalate to",
                        ticket.tier + 1
                    ))
                })?,
            }
        };
        let skip_allowed = Self::matching_rule(db, &ticket).await?.is_some_and(|r| r.allow_tier_skip);
        tiers::check_escalation(ticket.tier, target.tier, skip_allowed, ticket.priority)
            .map_err(|e| Error::FailedPrecondition(format!("{}: {e}", ticket_name(&ticket.number))))?;
        Ok(EscalationPlan { ticket, target })
    }

    /// Moves the ticket up to the planned group, records why and notifies.
    pub async fn escalate(
        &self,
        ctx: &CallContext,
        number: &str,
        expected_etag: &str,
        explicit: &str,
        reason: &str,
        notify_manager: bool,
    ) -> Result<ticket::Model, Error> {
        let txn = self.db.begin().await?;
        let plan = Self::plan(&txn, &ctx.tenant, number, explicit).await?;
        let current = plan.ticket;
        check_etag(expected_etag, current.version, &ticket_name(number))?;
        let now = change_time(current.update_time);
        let mut after = current.clone();
        Self::give_to(&txn, &mut after, &plan.target, now).await?;
        after.escalation_count += 1;
        // Any automatic escalation waiting for this ticket is done by this one.
        after.escalation_reason.clear();
        let stored = self.store_ticket(&txn, ctx, &current, after, "escalate", reason, now).await?;
        let why = [("reason", reason.to_string())];
        Self::notify(&txn, "ticket_escalated", &stored.requester, &stored, &why).await?;
        if notify_manager && !plan.target.manager.is_empty() {
            Self::notify(&txn, "manager_escalation", &plan.target.manager, &stored, &why).await?;
        }
        if !stored.assignee.is_empty() {
            Self::notify(&txn, "ticket_assigned", &stored.assignee, &stored, &why).await?;
        }
        txn.commit().await?;
        self.committed();
        Ok(stored)
    }

    /// Gives the ticket back to a lower tier's group.
    pub async fn deescalate(
        &self,
        ctx: &CallContext,
        number: &str,
        expected_etag: &str,
        group: &str,
        reason: &str,
    ) -> Result<ticket::Model, Error> {
        let txn = self.db.begin().await?;
        let current = Self::require_ticket(&txn, &ctx.tenant, number).await?;
        check_etag(expected_etag, current.version, &ticket_name(number))?;
        not_open(&current, "handed back")?;
        let target = Self::named_group(&txn, &ctx.tenant, group, "support_group").await?;
        tiers::check_deescalation(current.tier, target.tier)
            .map_err(|e| Error::FailedPrecondition(format!("{}: {e}", ticket_name(number))))?;
        let now = change_time(current.update_time);
        let mut after = current.clone();
        Self::give_to(&txn, &mut after, &target, now).await?;
        let stored = self.store_ticket(&txn, ctx, &current, after, "deescalate", reason, now).await?;
        if !stored.assignee.is_empty() {
            Self::notify(&txn, "ticket_assigned", &stored.assignee, &stored, &[]).await?;
        }
        txn.commit().await?;
        self.committed();
        Ok(stored)
    }

    /// The ticket linked to an incident, if any.
    pub async fn ticket_of_incident(
        db: &impl ConnectionTrait,
        tenant: &str,
        incident: &str,
    ) -> Result<Option<ticket::Model>, Error> {
        Ok(ticket::Entity::find()
            .filter(ticket::Column::TenantId.eq(tenant))
            .filter(ticket::Column::Incident.eq(incident))
            .one(db)
            .await?)
    }

    pub async fn delete_ticket(
        &self,
        ctx: &CallContext,
        number: &str,
        expected_etag: &str,
    ) -> Result<(), Error> {
        let txn = self.db.begin().await?;
        let current = Self::require_ticket(&txn, &ctx.tenant, number).await?;
        check_etag(expected_etag, current.version, &ticket_name(number))?;
        ticket::Entity::delete_many().filter(ticket::Column::Id.eq(current.id.as_str())).exec(&txn).await?;
        let now = change_time(current.update_time);
        let changes = diff(Some(&current), None);
        let entry = NewEntry {
            kind: TICKET,
            record_id: &current.id,
            version: current.version + 1,
            change_time: now,
            action: "delete",
            changes: &changes,
            reason: "",
        };
        history::record(&txn, ctx, entry).await?;
        emit(&txn, ctx, Some(&current), &current, "delete", &changes).await?;
        txn.commit().await?;
        self.committed();
        Ok(())
    }

    pub async fn list_tickets(
        &self,
        ctx: &CallContext,
        filter: Option<&Filter>,
        order: (&str, bool),
        after: Option<Vec<serde_json::Value>>,
        limit: u64,
    ) -> Result<Page<ticket::Model>, Error> {
        let (field, descending) = order;
        let column = match field {
            "number" => ticket::Column::Number,
            "update_time" => ticket::Column::UpdateTime,
            _ => ticket::Column::CreateTime,
        };
        let mut query = ticket::Entity::find().filter(ticket::Column::TenantId.eq(ctx.tenant.as_str()));
        if let Some(filter) = filter {
            query =
                query.filter(filters::condition(filter, &ctx.tenant, &ticket_field, TICKET_FILTER_FIELDS)?);
        }
        keyset::page(&self.db, query, column, ticket::Column::Id, descending, after, limit, |m| {
            let value = match field {
                "number" => serde_json::json!(m.number),
                "update_time" => serde_json::json!(m.update_time),
                _ => serde_json::json!(m.create_time),
            };
            (value, m.id.clone())
        })
        .await
    }

    /// Open tickets assigned to `assignee` (Some) or of `groups`, unassigned only when asked;
    /// in queue order (queue key, then id), `limit` after `after` (the previous page's
    /// `next_key`). The page is what `keyset::page` would return for the same rows. No groups
    /// (and no assignee) is an empty page.
    ///
    /// `state` and `support_group` are lists, and with `IN` lists no index yields the rows in
    /// queue order: PostgreSQL would read every open ticket of the groups and sort them, for
    /// every page. Each (group or assignee, state) pair is one range of `tickets_by_group` /
    /// `tickets_by_assignee` already in queue order, so the page reads at most a page from each
    /// range and merges them: its cost grows with the ranges, not with the backlog.
    pub async fn queue(
        &self,
        ctx: &CallContext,
        assignee: Option<&str>,
        groups: &[String],
        unassigned_only: bool,
        after: Option<Vec<serde_json::Value>>,
        limit: u64,
    ) -> Result<Page<ticket::Model>, Error> {
        let open = open_states();
        let (owner, mut owners): (ticket::Column, Vec<&str>) = match assignee {
            Some(who) => (ticket::Column::Assignee, vec![who]),
            None => (ticket::Column::SupportGroup, groups.iter().map(String::as_str).collect()),
        };
        // A group named twice would be merged twice and its tickets listed twice.
        owners.sort_unstable();
        owners.dedup();
        if owners.is_empty() {
            // What `support_group IN ()` gives (sea-query writes it as `1 = 2`).
            return Ok(Page { items: Vec::new(), next_key: None });
        }
        if owners.len() * open.len() > MAX_QUEUE_RANGES {
            return self.queue_sorted(ctx, owner, &owners, &open, unassigned_only, after, limit).await;
        }
        let after = match after {
            Some(key) => Some(keyset::parse_key(&key)?),
            None => None,
        };
        let merged = QueueRanges { owner, owners: &owners, states: &open, unassigned_only };
        let statement = merged.statement(self.db.get_database_backend(), &ctx.tenant, after.as_ref(), limit);
        let rows = ticket::Entity::find().from_raw_sql(statement).all(&self.db).await?;
        // As `keyset::page`: one row past the page says whether there is a next one.
        let more = rows.len() as u64 > limit;
        let items: Vec<ticket::Model> = rows.into_iter().take(limit as usize).collect();
        let next_key = match (more, items.last()) {
            (true, Some(last)) => {
                Some(vec![serde_json::json!(last.queue_key), serde_json::Value::String(last.id.clone())])
            }
            _ => None,
        };
        Ok(Page { items, next_key })
    }

    /// The queue with `IN` lists and one sort over all their rows: for callers with more
    /// ranges than [`MAX_QUEUE_RANGES`], where one statement merging them all would be large.
    #[allow(clippy::too_many_arguments)] // the owners, the states and the page
    async fn queue_sorted(
        &self,
        ctx: &CallContext,
        owner: ticket::Column,
        owners: &[&str],
        open: &[i32],
        unassigned_only: bool,
        after: Option<Vec<serde_json::Value>>,
        limit: u64,
    ) -> Result<Page<ticket::Model>, Error> {
        let mut query = ticket::Entity::find()
            .filter(ticket::Column::TenantId.eq(ctx.tenant.as_str()))
            .filter(ticket::Column::State.is_in(open.iter().copied()))
            .filter(owner.is_in(owners.iter().copied()));
        if unassigned_only {
            query = query.filter(ticket::Column::Assignee.eq(""));
        }
        keyset::page(
            &self.db,
            query,
            ticket::Column::QueueKey,
            ticket::Column::Id,
            false,
            after,
            limit,
            |m| (serde_json::json!(m.queue_key), m.id.clone()),
        )
        .await
    }

    /// Figures over the tickets opened since `since`.
    pub async fn report(&self, ctx: &CallContext, since: i64) -> Result<Report, Error> {
        let rows: Vec<(i64, i64, i64, i32, i32, i32)> = ticket::Entity::find()
            .select_only()
            .column(ticket::Column::OpenTime)
            .column(ticket::Column::FirstResponseTime)
            .column(ticket::Column::ResolveTime)
            .column(ticket::Column::MaxTier)
            .column(ticket::Column::EscalationCount)
            .column(ticket::Column::SurveyScore)
            .filter(ticket::Column::TenantId.eq(ctx.tenant.as_str()))
            .filter(ticket::Column::OpenTime.gte(since))
            .into_tuple()
            .all(&self.db)
            .await?;
        let facts: Vec<TicketFacts> = rows
            .into_iter()
            .map(
                |(open_time, first_response_time, resolve_time, max_tier, escalation_count, survey_score)| {
                    TicketFacts {
                        open_time,
                        first_response_time,
                        resolve_time,
                        max_tier,
                        escalation_count,
                        survey_score,
                    }
                },
            )
            .collect();
        Ok(report::compute(&facts))
    }

    /// The ticket's history after entry `after_id`, oldest first: (change, reason). Without
    /// `work_notes` the entries of work notes are left out (a requester's view).
    pub async fn ticket_history(
        &self,
        ctx: &CallContext,
        number: &str,
        work_notes: bool,
        after_id: i64,
        limit: u64,
    ) -> Result<Page<(itsm_proto::common::HistoryEntry, String)>, Error> {
        let ticket = Self::require_ticket(&self.db, &ctx.tenant, number).await?;
        // Requesters do not see work notes: left out by the query, so a page is one read.
        let hidden = (!work_notes).then_some(WORK_NOTE_ACTION);
        let mut rows =
            history::list_without(&self.db, &ctx.tenant, TICKET, &ticket.id, after_id, limit + 1, hidden)
                .await?;
        let more = rows.len() as u64 > limit;
        rows.truncate(limit as usize);
        let cursor = rows.last().map_or(after_id, |(id, _, _)| *id);
        let items = rows.into_iter().map(|(_, entry, reason)| (entry, reason)).collect();
        let next_key = more.then(|| vec![serde_json::json!(cursor)]);
        Ok(Page { items, next_key })
    }
}

async fn emit(
    txn: &impl ConnectionTrait,
    ctx: &CallContext,
    before: Option<&ticket::Model>,
    after: &ticket::Model,
    action: &str,
    changes: &[itsm_runtime::history::FieldDiff],
) -> Result<(), Error> {
    let name = ticket_name(&after.number);
    let payload = TicketChanged {
        action: action.to_string(),
        ticket: Some(ticket_to_proto(after)),
        previous_state: before.map_or(0, |b| b.state),
        changes: changes.iter().map(FieldChange::from).collect(),
    };
    outbox::append(txn, NewEvent::of(&payload, &name, &ctx.tenant, &ctx.principal)).await?;
    Ok(())
}

/// Moves the ticket to `to` when the machine allows it.
pub fn transition(m: &mut ticket::Model, to: TicketState) -> Result<(), Error> {
    let from = state_of(m)?;
    if from == to {
        return Ok(());
    }
    from.check(to).map_err(|e| Error::FailedPrecondition(e.to_string()))?;
    m.state = to as i32;
    Ok(())
}

/// Resolves: a NEW ticket is taken into work first (someone resolved it).
pub fn resolve(m: &mut ticket::Model, notes: &str, now: i64) -> Result<(), Error> {
    if m.state == TicketState::New as i32 {
        transition(m, TicketState::InProgress)?;
    }
    transition(m, TicketState::Resolved)?;
    m.resolution_notes = notes.to_string();
    m.resolve_time = now;
    if m.first_response_time == 0 {
        m.first_response_time = now;
    }
    Ok(())
}

pub const TICKET_FILTER_FIELDS: &[&str] = &[
    "state",
    "type",
    "channel",
    "requester",
    "organisation",
    "category",
    "support_group",
    "tier",
    "assignee",
    "incident",
    "business_service",
    "priority",
    "open_time",
    "update_time",
];

const STATES: &[(i32, &str)] =
    &[(1, "NEW"), (2, "IN_PROGRESS"), (3, "PENDING"), (4, "RESOLVED"), (5, "CLOSED"), (6, "CANCELLED")];
const TYPES: &[(i32, &str)] = &[(1, "INCIDENT"), (2, "SERVICE_REQUEST")];
const CHANNELS: &[(i32, &str)] =
    &[(1, "PORTAL"), (2, "EMAIL"), (3, "PHONE"), (4, "CHAT"), (5, "API"), (6, "MONITORING")];
const TIERS: &[(i32, &str)] = &[(1, "1"), (2, "2"), (3, "3")];

fn ticket_field(member: &str) -> Option<Field> {
    use ticket::Column as C;
    let col = |c: C| Expr::col((ticket::Entity, c));
    Some(match member {
        "state" => Field::Enum { column: col(C::State), values: STATES, prefix: "TICKET_STATE_" },
        "type" => Field::Enum { column: col(C::TicketType), values: TYPES, prefix: "TICKET_TYPE_" },
        "channel" => Field::Enum { column: col(C::Channel), values: CHANNELS, prefix: "CHANNEL_" },
        "tier" => Field::Enum { column: col(C::Tier), values: TIERS, prefix: "" },
        "priority" => Field::Enum {
            column: col(C::Priority),
            values: itsm_runtime::sql_filter::PRIORITIES,
            prefix: "PRIORITY_",
        },
        "requester" => Field::Text(col(C::Requester)),
        "organisation" => Field::Text(col(C::Organisation)),
        "category" => Field::Text(col(C::Category)),
        "support_group" => Field::Text(col(C::SupportGroup)),
        "assignee" => Field::Text(col(C::Assignee)),
        "incident" => Field::Text(col(C::Incident)),
        "business_service" => Field::Text(col(C::BusinessService)),
        "open_time" => Field::Time(col(C::OpenTime)),
        "update_time" => Field::Time(col(C::UpdateTime)),
        _ => return None,
    })
}

impl Repository {
    /// Sets type and category, links the incident raised for it, and routes it to `group` when
    /// one is given (or when it has none yet, by the rules).
    #[allow(clippy::too_many_arguments)] // the classification's parts
    pub async fn classify(
        &self,
        ctx: &CallContext,
        number: &str,
        expected_etag: &str,
        ticket_type: i32,
        category: &str,
        group: Option<support_group::Model>,
        incident: Option<(String, i32)>,
    ) -> Result<ticket::Model, Error> {
        let txn = self.db.begin().await?;
        let current = Self::require_ticket(&txn, &ctx.tenant, number).await?;
        check_etag(expected_etag, current.version, &ticket_name(number))?;
        not_open(&current, "classified")?;
        let now = change_time(current.update_time);
        let mut after = current.clone();
        after.ticket_type = ticket_type;
        if !category.is_empty() {
            after.category = category.to_string();
        }
        if let Some((name, priority)) = incident {
            after.incident = name;
            after.priority = priority;
        }
        let target = match group {
            Some(group) => Some(group),
            None if after.support_group.is_empty() => self.route(&txn, &after).await?,
            None => None,
        };
        if let Some(group) = target {
            Self::give_to(&txn, &mut after, &group, now).await?;
        }
        let stored = self.store_ticket(&txn, ctx, &current, after, "classify", "", now).await?;
        if !stored.assignee.is_empty() && stored.assignee != current.assignee {
            Self::notify(&txn, "ticket_assigned", &stored.assignee, &stored, &[]).await?;
        }
        txn.commit().await?;
        self.committed();
        Ok(stored)
    }
}

impl Repository {
    /// Open tickets with an automatic escalation waiting: (tenant, number, reason).
    pub async fn pending_escalations(&self, limit: u64) -> Result<Vec<(String, String, String)>, Error> {
        let open: Vec<i32> = TicketState::ALL.iter().filter(|s| s.is_open()).map(|s| *s as i32).collect();
        Ok(ticket::Entity::find()
            .select_only()
            .column(ticket::Column::TenantId)
            .column(ticket::Column::Number)
            .column(ticket::Column::EscalationReason)
            .filter(ticket::Column::EscalationReason.ne(""))
            .filter(ticket::Column::State.is_in(open))
            .limit(limit)
            .into_tuple()
            .all(&self.db)
            .await?)
    }

    /// Open tickets of `groups` with an SLA due time, the soonest first.
    pub async fn breaching_soon(
        &self,
        ctx: &CallContext,
        groups: &[String],
        after: Option<Vec<serde_json::Value>>,
        limit: u64,
    ) -> Result<Page<ticket::Model>, Error> {
        let open: Vec<i32> = TicketState::ALL.iter().filter(|s| s.is_open()).map(|s| *s as i32).collect();
        let query = ticket::Entity::find()
            .filter(ticket::Column::TenantId.eq(ctx.tenant.as_str()))
            .filter(ticket::Column::State.is_in(open))
            .filter(ticket::Column::SupportGroup.is_in(groups.iter().map(String::as_str)))
            .filter(ticket::Column::SlaDueTime.gt(0));
        keyset::page(
            &self.db,
            query,
            ticket::Column::SlaDueTime,
            ticket::Column::Id,
            false,
            after,
            limit,
            |m| (serde_json::json!(m.sla_due_time), m.id.clone()),
        )
        .await
    }

    /// Open tickets whose group's time box has run out at `now`: (tenant, number, group name, box).
    pub async fn time_boxed_out(
        &self,
        now: i64,
        limit: u64,
    ) -> Result<Vec<(String, String, String, i32)>, Error> {
        let boxed = crate::entity::support_group::Entity::find()
            .filter(crate::entity::support_group::Column::TimeBoxSeconds.gt(0))
            .all(&self.db)
            .await?;
        let open: Vec<i32> = TicketState::ALL.iter().filter(|s| s.is_open()).map(|s| *s as i32).collect();
        let mut due = Vec::new();
        for group in boxed {
            let cutoff = now - i64::from(group.time_box_seconds) * 1_000_000;
            let rows: Vec<String> = ticket::Entity::find()
                .select_only()
                .column(ticket::Column::Number)
                .filter(ticket::Column::TenantId.eq(group.tenant_id.as_str()))
                .filter(ticket::Column::SupportGroup.eq(group_name(&group.id)))
                .filter(ticket::Column::State.is_in(open.clone()))
                .filter(ticket::Column::TierTime.lt(cutoff))
                .limit(limit)
                .into_tuple()
                .all(&self.db)
                .await?;
            due.extend(
                rows.into_iter()
                    .map(|n| (group.tenant_id.clone(), n, group_name(&group.id), group.time_box_seconds)),
            );
        }
        Ok(due)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The numbers of the `$n` placeholders of `sql`, in the order they appear.
    fn placeholders_of(sql: &str) -> Vec<usize> {
        let mut found = Vec::new();
        let mut rest = sql;
        while let Some(at) = rest.find('$') {
            rest = &rest[at + 1..];
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            found.push(digits.parse().unwrap());
        }
        found
    }

    #[test]
    fn queue_ranges_number_their_placeholders_in_binding_order() {
        let owners = ["supportGroups/a", "supportGroups/b"];
        let states = open_states();
        let key = (Value::from("1:00000000000000000042"), "id-7".to_string());
        // (unassigned only, after, parameters of one range)
        let cases = [(false, None, 3), (true, None, 3), (false, Some(&key), 5), (true, Some(&key), 5)];
        for (unassigned_only, after, per_range) in cases {
            let ranges = QueueRanges {
                owner: ticket::Column::SupportGroup,
                owners: &owners,
                states: &states,
                unassigned_only,
            };
            let statement = ranges.statement(DatabaseBackend::Sqlite, "acme", after, 25);
            let values = statement.values.map(|v| v.0).unwrap_or_default();
            assert_eq!(values.len(), owners.len() * states.len() * per_range, "{}", statement.sql);
            // Each number used once, ascending: what SQLite needs to bind them by position.
            assert_eq!(
                placeholders_of(&statement.sql),
                (1..=values.len()).collect::<Vec<_>>(),
                "{}",
                statement.sql
            );
            assert_eq!(&values[..3], &[Value::from("acme"), Value::from("supportGroups/a"), Value::from(1)]);
            assert_eq!(statement.sql.matches(" UNION ALL ").count(), owners.len() * states.len() - 1);
            // One row past the page, from every range and from the merge.
            assert_eq!(statement.sql.matches("LIMIT 26").count(), owners.len() * states.len() + 1);
        }
    }

    #[test]
    fn an_assignee_queue_reads_one_range_per_open_state() {
        let states = open_states();
        assert_eq!(states, [1, 2, 3], "NEW, IN_PROGRESS, PENDING");
        let ranges = QueueRanges {
            owner: ticket::Column::Assignee,
            owners: &["ann"],
            states: &states,
            unassigned_only: false,
        };
        let statement = ranges.statement(DatabaseBackend::Postgres, "acme", None, 10);
        assert_eq!(statement.sql.matches("assignee = $").count(), 3, "{}", statement.sql);
        assert!(!statement.sql.contains("support_group"), "{}", statement.sql);
    }
}
