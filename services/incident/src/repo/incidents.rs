//! Incidents: create (with duplicate and known-error suggestions), changes through the state
//! machine, journal, timeline, listing with full-text search, auto-close and candidate problems.

use sea_orm::sea_query::{Expr, SimpleExpr};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, ExprTrait, IntoActiveModel, Order,
    PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, TransactionTrait, Value,
};

use itsm_proto::common::FieldChange;
use itsm_proto::incident::{CandidateKind, CandidateProblem, IncidentChanged, MajorIncidentOutage};
use itsm_runtime::db::{now_micros, placeholders, stmt, timestamp};
use itsm_runtime::filter::Expr as Filter;
use itsm_runtime::idempotency::{self, Claim};
use itsm_runtime::keyset;
use itsm_runtime::numbers;
use itsm_runtime::outbox::{self, NewEvent};
use itsm_runtime::{CallContext, Error};

use super::{INCIDENT, Page, Repository, write_links};
use crate::convert::{INCIDENT_NUMBER, INCIDENT_PREFIX, incident_to_proto, list_from, list_to};
use crate::domain::lifecycle::{IncidentState, ON_HOLD_REASONS};
use crate::domain::problem::PUBLISHED;
use crate::entity::{incident, note};
use itsm_runtime::history::{self, FieldDiff, NewEntry, change_time, check_etag, diff};
use itsm_runtime::search::{delete_document, matching, write_document};
use itsm_runtime::sql_filter::{self as filters, Field, LEVELS, PRIORITIES};

pub const CREATE_METHOD: &str = "CreateIncident";
pub const NOTE_METHOD: &str = "AddWorkNote";
/// Sort orders a listing accepts.
pub const ORDER_FIELDS: &[&str] = &["number", "priority", "open_time", "update_time"];
/// Most suggestions stored on a new incident.
const MAX_SUGGESTIONS: usize = 10;

/// What a caller gives to create an incident (checked by the API layer first).
#[derive(Debug, Clone, Default)]
pub struct NewIncident {
    pub caller: String,
    pub service_desk_ticket: String,
    pub short_description: String,
    pub description: String,
    pub category: String,
    pub subcategory: String,
    pub business_service: String,
    pub configuration_items: Vec<String>,
    pub impact: i32,
    pub urgency: i32,
    pub assignment_group: String,
    pub assignee: String,
}

pub fn incident_name(number: &str) -> String {
    format!("{INCIDENT_PREFIX}{number}")
}

fn state_of(model: &incident::Model) -> Result<IncidentState, Error> {
    IncidentState::from_i32(model.state)
        .ok_or_else(|| Error::Internal(format!("{} has unknown state {}", model.number, model.state)))
}

/// A major incident counts as an outage while it is open.
fn outage_open(model: &incident::Model) -> bool {
    model.major && IncidentState::from_i32(model.state).is_some_and(IncidentState::is_open)
}

impl Repository {
    pub async fn find_incident(
        db: &impl ConnectionTrait,
        tenant: &str,
        number: &str,
    ) -> Result<Option<incident::Model>, Error> {
        Ok(incident::Entity::find()
            .filter(incident::Column::TenantId.eq(tenant))
            .filter(incident::Column::Number.eq(number))
            .one(db)
            .await?)
    }

    async fn require_incident(
        db: &impl ConnectionTrait,
        tenant: &str,
        number: &str,
    ) -> Result<incident::Model, Error> {
        Self::find_incident(db, tenant, number).await?.ok_or_else(|| Error::NotFound(incident_name(number)))
    }

    pub async fn get_incident(&self, ctx: &CallContext, number: &str) -> Result<incident::Model, Error> {
        Self::require_incident(&self.db, &ctx.tenant, number).await
    }

    /// The incident an earlier create with this request_id made, if any (checked before the
    /// CMDB is asked, so a retry gets its first answer even while the CMDB is down).
    pub async fn created_before(
        &self,
        ctx: &CallContext,
        request_id: &str,
        hash: &str,
    ) -> Result<Option<incident::Model>, Error> {
        match idempotency::lookup(&self.db, &ctx.tenant, CREATE_METHOD, request_id, hash).await? {
            Some(name) => {
                let number = name.trim_start_matches(INCIDENT_PREFIX);
                Ok(Self::find_incident(&self.db, &ctx.tenant, number).await?)
            }
            None => Ok(None),
        }
    }

    pub async fn create_incident(
        &self,
        ctx: &CallContext,
        new: NewIncident,
        request_id: &str,
        request_hash: &str,
    ) -> Result<incident::Model, Error> {
        for _ in 0..3 {
            let txn = self.db.begin().await?;
            match idempotency::claim(&txn, &ctx.tenant, CREATE_METHOD, request_id, request_hash).await? {
                Claim::Fresh => {}
                Claim::Done(name) => {
                    let number = name.trim_start_matches(INCIDENT_PREFIX).to_string();
                    let found = Self::find_incident(&txn, &ctx.tenant, &number).await?;
                    txn.commit().await?;
                    return found.ok_or(Error::NotFound(name));
                }
                Claim::LostRace => {
                    txn.rollback().await?;
                    continue;
                }
            }
            let now = now_micros();
            let number = numbers::next(&txn, &ctx.tenant, INCIDENT_NUMBER).await?;
            let mut cis = new.configuration_items.clone();
            if !new.business_service.is_empty() && !cis.contains(&new.business_service) {
                cis.push(new.business_service.clone());
            }
            let duplicates = self.possible_duplicates(&txn, &ctx.tenant, &cis, &new.category, now).await?;
            let (known_errors, workaround) = self.known_errors_on(&txn, &ctx.tenant, &cis).await?;
            let assigned = !new.assignment_group.is_empty();
            let model = incident::Model {
                id: uuid::Uuid::now_v7().to_string(),
                tenant_id: ctx.tenant.clone(),
                number,
                caller: if new.caller.is_empty() { ctx.principal.clone() } else { new.caller },
                service_desk_ticket: new.service_desk_ticket,
                short_description: new.short_description,
                description: new.description,
                category: new.category,
                subcategory: new.subcategory,
                business_service: new.business_service,
                configuration_items: list_to(&new.configuration_items),
                impact: new.impact,
                urgency: new.urgency,
                priority: self.rules.priority.priority(new.impact, new.urgency),
                state: if assigned { IncidentState::Assigned } else { IncidentState::New } as i32,
                on_hold_reason: 0,
                assignment_group: new.assignment_group,
                assignee: new.assignee,
                support_tier: 1,
                manager_escalated: false,
                resolution_code: 0,
                resolution_notes: String::new(),
                major: false,
                parent_incident: String::new(),
                possible_duplicates: list_to(&duplicates),
                known_errors: list_to(&known_errors),
                suggested_workaround: workaround,
                reassignment_count: 0,
                open_time: now,
                first_response_time: if assigned { now } else { 0 },
                resolve_time: 0,
                close_time: 0,
                version: 1,
                create_time: now,
                update_time: now,
                creator: ctx.principal.clone(),
                updater: ctx.principal.clone(),
            };
            model.clone().into_active_model().reset_all().insert(&txn).await?;
            write_links(&txn, "incident_cis", "incident_id", &model.id, &ctx.tenant, &cis, Some(now)).await?;
            write_document(&txn, INCIDENT, &model.id, &ctx.tenant, &search_body(&model, &[])).await?;
            let changes = diff(None, Some(&model));
            history::record(
                &txn,
                ctx,
                NewEntry {
                    kind: INCIDENT,
                    record_id: &model.id,
                    version: 1,
                    change_time: now,
                    action: "create",
                    changes: &changes,
                    reason: "",
                },
            )
            .await?;
            emit(&txn, ctx, None, &model, "create", &changes).await?;
            idempotency::complete(
                &txn,
                &ctx.tenant,
                CREATE_METHOD,
                request_id,
                &incident_name(&model.number),
            )
            .await?;
            txn.commit().await?;
            self.feed.notify_committed();
            return Ok(model);
        }
        Err(Error::Aborted("concurrent creates with the same request_id; retry".into()))
    }

    /// Open incidents opened in the duplicate window that share a CI and the category, newest
    /// first. One bounded query per CI, each walking that CI's links newest first
    /// (`incident_cis_by_ci`) and stopping at the limit: the cost does not grow with the number
    /// of incidents on a CI, as one DISTINCT over all of them did (10 ms per create at 2,000).
    async fn possible_duplicates(
        &self,
        txn: &impl ConnectionTrait,
        tenant: &str,
        cis: &[String],
        category: &str,
        now: i64,
    ) -> Result<Vec<String>, Error> {
        let open: Vec<String> =
            IncidentState::ALL.iter().filter(|s| s.is_open()).map(|s| (*s as i32).to_string()).collect();
        let sql = format!(
            "SELECT i.number, i.open_time FROM incident_cis c JOIN incidents i ON i.id = c.incident_id \
             WHERE c.tenant_id = $1 AND c.ci = $2 AND c.open_time >= $3 AND i.category = $4 \
             AND i.state IN ({}) ORDER BY c.open_time DESC LIMIT {MAX_SUGGESTIONS}",
            open.join(", ")
        );
        let mut found: Vec<(i64, String)> = Vec::new();
        for ci in cis {
            let values: [Value; 4] = [
                tenant.into(),
                ci.as_str().into(),
                (now - self.rules.duplicate_window_micros).into(),
                category.into(),
            ];
            for row in txn.query_all_raw(stmt(txn.get_database_backend(), &sql, values)).await? {
                let number: String = row.try_get("", "number")?;
                if !found.iter().any(|(_, n)| *n == number) {
                    found.push((row.try_get("", "open_time")?, number));
                }
            }
        }
        found.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        found.truncate(MAX_SUGGESTIONS);
        Ok(found.into_iter().map(|(_, number)| incident_name(&number)).collect())
    }

    /// Published known errors on any of these CIs, newest first, and the first one's workaround.
    async fn known_errors_on(
        &self,
        txn: &impl ConnectionTrait,
        tenant: &str,
        cis: &[String],
    ) -> Result<(Vec<String>, String), Error> {
        if cis.is_empty() {
            return Ok((Vec::new(), String::new()));
        }
        let mut values: Vec<Value> = vec![tenant.into(), PUBLISHED.into()];
        let list = placeholders(&mut values, cis);
        let rows = txn
            .query_all_raw(stmt(
                txn.get_database_backend(),
                &format!(
                    "SELECT DISTINCT k.number, k.workaround, k.update_time FROM known_error_cis c \
                     JOIN known_errors k ON k.id = c.known_error_id \
                     WHERE c.tenant_id = $1 AND k.status = $2 AND c.ci IN ({list}) \
                     ORDER BY k.update_time DESC LIMIT {MAX_SUGGESTIONS}"
                ),
                values,
            ))
            .await?;
        let mut names = Vec::new();
        let mut workaround = String::new();
        for row in &rows {
            let number: String = row.try_get("", "number")?;
            if names.is_empty() {
                workaround = row.try_get("", "workaround")?;
            }
            names.push(format!("{}{number}", crate::convert::KNOWN_ERROR_PREFIX));
        }
        Ok((names, workaround))
    }

    /// Loads the incident, checks the etag, lets `change` edit a copy (it enforces the rules
    /// and may refuse), and stores the result with history and events, all in one transaction.
    pub async fn change_incident(
        &self,
        ctx: &CallContext,
        number: &str,
        expected_etag: &str,
        action: &str,
        reason: &str,
        change: impl FnOnce(&mut incident::Model, i64) -> Result<(), Error>,
    ) -> Result<incident::Model, Error> {
        let txn = self.db.begin().await?;
        let current = Self::require_incident(&txn, &ctx.tenant, number).await?;
        check_etag(expected_etag, current.version, &incident_name(number))?;
        let now = change_time(current.update_time);
        let mut after = current.clone();
        change(&mut after, now)?;
        let stored = self.store_change(&txn, ctx, &current, after, action, reason, now).await?;
        txn.commit().await?;
        self.feed.notify_committed();
        Ok(stored)
    }

    /// Resolves an incident and, when it is a parent, every open child with it.
    pub async fn resolve_incident(
        &self,
        ctx: &CallContext,
        number: &str,
        expected_etag: &str,
        code: i32,
        notes: &str,
    ) -> Result<incident::Model, Error> {
        let txn = self.db.begin().await?;
        let current = Self::require_incident(&txn, &ctx.tenant, number).await?;
        check_etag(expected_etag, current.version, &incident_name(number))?;
        let now = change_time(current.update_time);
        let mut after = current.clone();
        resolve(&mut after, code, notes, now)?;
        let stored = self.store_change(&txn, ctx, &current, after, "resolve", notes, now).await?;
        let children = incident::Entity::find()
            .filter(incident::Column::TenantId.eq(ctx.tenant.as_str()))
            .filter(incident::Column::ParentIncident.eq(incident_name(number)))
            .all(&txn)
            .await?;
        for child in children {
            let Some(state) = IncidentState::from_i32(child.state) else { continue };
            if !state.is_open() {
                continue;
            }
            let child_notes = format!("Resolved with its parent {}: {notes}", incident_name(number));
            let mut resolved = child.clone();
            if state == IncidentState::New {
                // A child nobody picked up yet still follows its parent.
                resolved.state = IncidentState::Assigned as i32;
            }
            let at = std::cmp::max(now, child.update_time + 1);
            resolve(&mut resolved, code, &child_notes, at)?;
            self.store_change(&txn, ctx, &child, resolved, "resolve", &child_notes, at).await?;
        }
        txn.commit().await?;
        self.feed.notify_committed();
        Ok(stored)
    }

    /// Writes `after` over `current` (optimistic: the version must not have moved), with its
    /// CI links, search text, history entry and events. A no-op when nothing changed.
    #[allow(clippy::too_many_arguments)]
    async fn store_change(
        &self,
        txn: &impl ConnectionTrait,
        ctx: &CallContext,
        current: &incident::Model,
        mut after: incident::Model,
        action: &str,
        reason: &str,
        now: i64,
    ) -> Result<incident::Model, Error> {
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
        let result = incident::Entity::update_many()
            .set(active)
            .filter(incident::Column::TenantId.eq(ctx.tenant.as_str()))
            .filter(incident::Column::Id.eq(current.id.as_str()))
            .filter(incident::Column::Version.eq(current.version))
            .exec(txn)
            .await?;
        if result.rows_affected != 1 {
            return Err(Error::Aborted(format!(
                "{} was changed concurrently; read it again",
                incident_name(&current.number)
            )));
        }
        if after.configuration_items != current.configuration_items
            || after.business_service != current.business_service
        {
            let mut cis = list_from(&after.configuration_items);
            if !after.business_service.is_empty() {
                cis.push(after.business_service.clone());
            }
            write_links(
                txn,
                "incident_cis",
                "incident_id",
                &after.id,
                &ctx.tenant,
                &cis,
                Some(after.open_time),
            )
            .await?;
        }
        if after.short_description != current.short_description || after.description != current.description {
            self.refresh_document(txn, &after).await?;
        }
        history::record(
            txn,
            ctx,
            NewEntry {
                kind: INCIDENT,
                record_id: &after.id,
                version: after.version,
                change_time: now,
                action,
                changes: &changes,
                reason,
            },
        )
        .await?;
        emit(txn, ctx, Some(current), &after, action, &changes).await?;
        Ok(after)
    }

    async fn refresh_document(
        &self,
        txn: &impl ConnectionTrait,
        model: &incident::Model,
    ) -> Result<(), Error> {
        let notes: Vec<String> = note::Entity::find()
            .select_only()
            .column(note::Column::Text)
            .filter(note::Column::TenantId.eq(model.tenant_id.as_str()))
            .filter(note::Column::IncidentId.eq(model.id.as_str()))
            .order_by(note::Column::CreateTime, Order::Asc)
            .into_tuple()
            .all(txn)
            .await?;
        write_document(txn, INCIDENT, &model.id, &model.tenant_id, &search_body(model, &notes)).await
    }

    /// Adds a journal entry. A comment or communication from someone other than the caller is the
    /// first response when there was none yet.
    pub async fn add_note(
        &self,
        ctx: &CallContext,
        number: &str,
        kind: i32,
        text: &str,
        request_id: &str,
        request_hash: &str,
    ) -> Result<(String, note::Model), Error> {
        let txn = self.db.begin().await?;
        match idempotency::claim(&txn, &ctx.tenant, NOTE_METHOD, request_id, request_hash).await? {
            Claim::Fresh => {}
            Claim::Done(name) => {
                let id = name.rsplit('/').next().unwrap_or_default().to_string();
                let found = note::Entity::find_by_id(id).one(&txn).await?;
                txn.commit().await?;
                return found.map(|n| (number.to_string(), n)).ok_or(Error::NotFound(name));
            }
            Claim::LostRace => {
                return Err(Error::Aborted("a note with the same request_id is being added; retry".into()));
            }
        }
        let current = Self::require_incident(&txn, &ctx.tenant, number).await?;
        if kind == COMMUNICATION && !current.major {
            return Err(Error::FailedPrecondition(format!(
                "{} is not a major incident; communications are logged on major incidents only (use a comment)",
                incident_name(number)
            )));
        }
        let now = change_time(current.update_time);
        let model = note::Model {
            id: uuid::Uuid::now_v7().to_string(),
            tenant_id: ctx.tenant.clone(),
            incident_id: current.id.clone(),
            kind,
            text: text.to_string(),
            author: ctx.principal.clone(),
            create_time: now,
        };
        model.clone().into_active_model().reset_all().insert(&txn).await?;
        let mut after = current.clone();
        if kind != WORK_NOTE && current.first_response_time == 0 && ctx.principal != current.caller {
            after.first_response_time = now;
        }
        let action = match kind {
            COMMENT => "comment",
            COMMUNICATION => "communication",
            _ => "work_note",
        };
        let stored = self.store_change(&txn, ctx, &current, after, action, text, now).await?;
        self.refresh_document(&txn, &stored).await?;
        let name = crate::convert::note_to_proto(number, &model).name;
        idempotency::complete(&txn, &ctx.tenant, NOTE_METHOD, request_id, &name).await?;
        txn.commit().await?;
        self.feed.notify_committed();
        Ok((number.to_string(), model))
    }

    /// An incident's journal, oldest first, after note `after` (create time, id).
    pub async fn notes(
        &self,
        ctx: &CallContext,
        number: &str,
        after: Option<(i64, String)>,
        limit: u64,
    ) -> Result<Page<note::Model>, Error> {
        let incident = Self::require_incident(&self.db, &ctx.tenant, number).await?;
        let mut query = note::Entity::find()
            .filter(note::Column::TenantId.eq(ctx.tenant.as_str()))
            .filter(note::Column::IncidentId.eq(incident.id.as_str()));
        if let Some((time, id)) = after {
            let key = Expr::tuple([Expr::col(note::Column::CreateTime), Expr::col(note::Column::Id)]);
            query = query.filter(key.gt(Expr::tuple([Expr::val(time), Expr::val(id)])));
        }
        let rows = query
            .order_by(note::Column::CreateTime, Order::Asc)
            .order_by(note::Column::Id, Order::Asc)
            .limit(limit + 1)
            .all(&self.db)
            .await?;
        let more = rows.len() as u64 > limit;
        let items: Vec<note::Model> = rows.into_iter().take(limit as usize).collect();
        let next_key = match (more, items.last()) {
            (true, Some(last)) => Some(vec![serde_json::json!(last.create_time), serde_json::json!(last.id)]),
            _ => None,
        };
        Ok(Page { items, next_key })
    }

    /// The incident's timeline after entry `after_id`: (entry id, change, reason).
    pub async fn timeline(
        &self,
        ctx: &CallContext,
        number: &str,
        after_id: i64,
        limit: u64,
    ) -> Result<Page<(itsm_proto::common::HistoryEntry, String)>, Error> {
        let incident = Self::require_incident(&self.db, &ctx.tenant, number).await?;
        let rows = history::list(&self.db, &ctx.tenant, INCIDENT, &incident.id, after_id, limit + 1).await?;
        let more = rows.len() as u64 > limit;
        let rows: Vec<_> = rows.into_iter().take(limit as usize).collect();
        let next_key = match (more, rows.last()) {
            (true, Some((id, _, _))) => Some(vec![serde_json::json!(id)]),
            _ => None,
        };
        Ok(Page { items: rows.into_iter().map(|(_, entry, reason)| (entry, reason)).collect(), next_key })
    }

    /// Deletes an incident with its journal and links; its history stays, ending in "delete".
    pub async fn delete_incident(
        &self,
        ctx: &CallContext,
        number: &str,
        expected_etag: &str,
    ) -> Result<(), Error> {
        let txn = self.db.begin().await?;
        let current = Self::require_incident(&txn, &ctx.tenant, number).await?;
        check_etag(expected_etag, current.version, &incident_name(number))?;
        let children = incident::Entity::find()
            .filter(incident::Column::TenantId.eq(ctx.tenant.as_str()))
            .filter(incident::Column::ParentIncident.eq(incident_name(number)))
            .count(&txn)
            .await?;
        if children > 0 {
            return Err(Error::FailedPrecondition(format!(
                "{} is the parent of {children} incident(s); unlink them first",
                incident_name(number)
            )));
        }
        let result = incident::Entity::delete_many()
            .filter(incident::Column::Id.eq(current.id.as_str()))
            .filter(incident::Column::Version.eq(current.version))
            .exec(&txn)
            .await?;
        if result.rows_affected != 1 {
            return Err(Error::Aborted(format!(
                "{} was changed concurrently; read it again",
                incident_name(number)
            )));
        }
        note::Entity::delete_many()
            .filter(note::Column::IncidentId.eq(current.id.as_str()))
            .exec(&txn)
            .await?;
        write_links(&txn, "incident_cis", "incident_id", &current.id, &ctx.tenant, &[], None).await?;
        delete_document(&txn, INCIDENT, &current.id).await?;
        let now = change_time(current.update_time);
        let changes = diff(Some(&current), None);
        history::record(
            &txn,
            ctx,
            NewEntry {
                kind: INCIDENT,
                record_id: &current.id,
                version: current.version + 1,
                change_time: now,
                action: "delete",
                changes: &changes,
                reason: "",
            },
        )
        .await?;
        let mut gone = current.clone();
        gone.version += 1;
        gone.update_time = now;
        emit(&txn, ctx, Some(&current), &gone, "delete", &changes).await?;
        txn.commit().await?;
        self.feed.notify_committed();
        Ok(())
    }

    /// A page of incidents matching the filter and the search words, in `order`.
    pub async fn list_incidents(
        &self,
        ctx: &CallContext,
        filter: Option<&Filter>,
        words: &[String],
        order: (&str, bool),
        after: Option<Vec<serde_json::Value>>,
        limit: u64,
    ) -> Result<Page<incident::Model>, Error> {
        let (field, descending) = order;
        let column = match field {
            "number" => incident::Column::Number,
            "priority" => incident::Column::Priority,
            "update_time" => incident::Column::UpdateTime,
            _ => incident::Column::OpenTime,
        };
        let mut query = incident::Entity::find().filter(incident::Column::TenantId.eq(ctx.tenant.as_str()));
        if let Some(filter) = filter {
            query = query.filter(filters::condition(
                filter,
                &ctx.tenant,
                &incident_field,
                INCIDENT_FILTER_FIELDS,
            )?);
        }
        if !words.is_empty() {
            let id = r#""incidents"."id""#;
            query = query.filter(matching(self.db.get_database_backend(), id, INCIDENT, &ctx.tenant, words));
        }
        keyset::page(&self.db, query, column, incident::Column::Id, descending, after, limit, |m| {
            let value = match field {
                "number" => serde_json::json!(m.number),
                "priority" => serde_json::json!(m.priority),
                "update_time" => serde_json::json!(m.update_time),
                _ => serde_json::json!(m.open_time),
            };
            (value, m.id.clone())
        })
        .await
    }

    /// Closes incidents resolved before `cutoff` (any tenant), at most `limit` per call; returns
    /// how many were closed.
    pub async fn close_resolved_before(&self, cutoff: i64, limit: u64, days: u32) -> Result<usize, Error> {
        let due: Vec<(String, String, i64)> = incident::Entity::find()
            .select_only()
            .column(incident::Column::TenantId)
            .column(incident::Column::Number)
            .column(incident::Column::Version)
            .filter(incident::Column::State.eq(IncidentState::Resolved as i32))
            .filter(incident::Column::ResolveTime.lt(cutoff))
            .order_by(incident::Column::ResolveTime, Order::Asc)
            .limit(limit)
            .into_tuple()
            .all(&self.db)
            .await?;
        let mut closed = 0;
        let reason = format!("closed automatically {days} day(s) after resolution");
        for (tenant, number, version) in due {
            let ctx = CallContext::system(tenant);
            let result = self
                .change_incident(&ctx, &number, &crate::convert::etag(version), "close", &reason, |m, now| {
                    close(m, now)
                })
                .await;
            match result {
                Ok(_) => closed += 1,
                // Reopened or edited meanwhile: the next sweep looks again.
                Err(Error::Aborted(_) | Error::FailedPrecondition(_)) => {}
                Err(err) => return Err(err),
            }
        }
        Ok(closed)
    }

    /// CIs and categories with at least `min` incidents opened since `since`, highest first.
    pub async fn candidate_problems(
        &self,
        ctx: &CallContext,
        since: i64,
        min: i64,
        limit: usize,
    ) -> Result<Vec<CandidateProblem>, Error> {
        let backend = self.db.get_database_backend();
        let tenant = ctx.tenant.as_str();
        let by_ci = self
            .db
            .query_all_raw(stmt(
                backend,
                "SELECT ci, COUNT(*) AS n, MIN(open_time) AS first_time, MAX(open_time) AS last_time \
                 FROM incident_cis WHERE tenant_id = $1 AND open_time >= $2 \
                 GROUP BY ci HAVING COUNT(*) >= $3 ORDER BY n DESC, ci LIMIT $4",
                [tenant.into(), since.into(), min.into(), (limit as i64).into()],
            ))
            .await?;
        let by_category = self
            .db
            .query_all_raw(stmt(
                backend,
                "SELECT category, subcategory, COUNT(*) AS n, MIN(open_time) AS first_time, MAX(open_time) AS last_time \
                 FROM incidents WHERE tenant_id = $1 AND open_time >= $2 AND category <> '' \
                 GROUP BY category, subcategory HAVING COUNT(*) >= $3 ORDER BY n DESC, category, subcategory LIMIT $4",
                [tenant.into(), since.into(), min.into(), (limit as i64).into()],
            ))
            .await?;
        let mut candidates = Vec::new();
        for row in &by_ci {
            let ci: String = row.try_get("", "ci")?;
            let incidents = self
                .db
                .query_all_raw(stmt(
                    backend,
                    "SELECT i.number FROM incident_cis c JOIN incidents i ON i.id = c.incident_id \
                     WHERE c.tenant_id = $1 AND c.ci = $2 AND c.open_time >= $3 ORDER BY c.open_time DESC LIMIT 20",
                    [tenant.into(), ci.as_str().into(), since.into()],
                ))
                .await?;
            candidates.push(candidate(CandidateKind::ConfigurationItem, ci, row, &incidents)?);
        }
        for row in &by_category {
            let category: String = row.try_get("", "category")?;
            let subcategory: String = row.try_get("", "subcategory")?;
            let incidents = self
                .db
                .query_all_raw(stmt(
                    backend,
                    "SELECT number FROM incidents WHERE tenant_id = $1 AND category = $2 AND subcategory = $3 \
                     AND open_time >= $4 ORDER BY open_time DESC LIMIT 20",
                    [tenant.into(), category.as_str().into(), subcategory.as_str().into(), since.into()],
                ))
                .await?;
            let key = if subcategory.is_empty() { category } else { format!("{category}/{subcategory}") };
            candidates.push(candidate(CandidateKind::Category, key, row, &incidents)?);
        }
        candidates.sort_by(|a, b| b.incident_count.cmp(&a.incident_count).then_with(|| a.key.cmp(&b.key)));
        candidates.truncate(limit);
        for c in &mut candidates {
            c.open_problems = self.open_problems_for(tenant, &c.incidents).await?;
        }
        Ok(candidates)
    }

    async fn open_problems_for(&self, tenant: &str, incidents: &[String]) -> Result<Vec<String>, Error> {
        if incidents.is_empty() {
            return Ok(Vec::new());
        }
        let mut values: Vec<Value> = vec![tenant.into()];
        let list = placeholders(&mut values, incidents);
        let rows = self
            .db
            .query_all_raw(stmt(
                self.db.get_database_backend(),
                &format!(
                    "SELECT DISTINCT p.number FROM problem_incidents l JOIN problems p ON p.id = l.problem_id \
                     WHERE l.tenant_id = $1 AND l.incident IN ({list}) AND p.state IN (1, 2, 3, 4) ORDER BY p.number"
                ),
                values,
            ))
            .await?;
        rows.iter()
            .map(|r| Ok(format!("{}{}", crate::convert::PROBLEM_PREFIX, r.try_get::<String>("", "number")?)))
            .collect()
    }
}

fn candidate(
    kind: CandidateKind,
    key: String,
    row: &sea_orm::QueryResult,
    incidents: &[sea_orm::QueryResult],
) -> Result<CandidateProblem, Error> {
    Ok(CandidateProblem {
        kind: kind as i32,
        key,
        incident_count: i32::try_from(row.try_get::<i64>("", "n")?).unwrap_or(i32::MAX),
        incidents: incidents
            .iter()
            .map(|r| Ok(incident_name(&r.try_get::<String>("", "number")?)))
            .collect::<Result<_, Error>>()?,
        first_open_time: Some(timestamp(row.try_get("", "first_time")?)),
        last_open_time: Some(timestamp(row.try_get("", "last_time")?)),
        open_problems: Vec::new(),
    })
}

pub const WORK_NOTE: i32 = 1;
pub const COMMENT: i32 = 2;
pub const COMMUNICATION: i32 = 3;

/// The searchable text of an incident.
fn search_body(model: &incident::Model, notes: &[String]) -> String {
    let mut body = format!("{}\n{}", model.short_description, model.description);
    for note in notes {
        body.push('\n');
        body.push_str(note);
    }
    body
}

/// The IncidentChanged event, plus a MajorIncidentOutage event when an outage starts or ends.
async fn emit(
    txn: &impl ConnectionTrait,
    ctx: &CallContext,
    before: Option<&incident::Model>,
    after: &incident::Model,
    action: &str,
    changes: &[FieldDiff],
) -> Result<(), Error> {
    let name = incident_name(&after.number);
    let payload = IncidentChanged {
        action: action.to_string(),
        incident: Some(incident_to_proto(after)),
        previous_state: before.map_or(0, |b| b.state),
        changes: changes.iter().map(FieldChange::from).collect(),
    };
    outbox::append(txn, NewEvent::of(&payload, &name, &ctx.tenant, &ctx.principal)).await?;
    let was = before.is_some_and(outage_open);
    let is = action != "delete" && outage_open(after);
    if was != is {
        let outage = MajorIncidentOutage {
            action: if is { "start" } else { "end" }.to_string(),
            incident: name.clone(),
            business_service: after.business_service.clone(),
            configuration_items: list_from(&after.configuration_items),
            start_time: Some(timestamp(if is { after.update_time } else { after.open_time })),
            end_time: (!is).then(|| timestamp(after.update_time)),
            priority: after.priority,
        };
        outbox::append(txn, NewEvent::of(&outage, &name, &ctx.tenant, &ctx.principal)).await?;
    }
    Ok(())
}

// --- Transitions: each checks the state machine and the fields the target state needs. ---

fn illegal(from: IncidentState, to: IncidentState) -> Error {
    match from.check(to) {
        Err(e) => Error::FailedPrecondition(e.to_string()),
        Ok(()) => Error::Internal("transition check disagrees with itself".into()),
    }
}

/// Moves `m` to `to` if the machine allows it.
pub fn transition(m: &mut incident::Model, to: IncidentState) -> Result<(), Error> {
    let from = state_of(m)?;
    if from == to {
        return Ok(());
    }
    from.check(to).map_err(|_| illegal(from, to))?;
    m.state = to as i32;
    if to != IncidentState::OnHold {
        m.on_hold_reason = 0;
    }
    Ok(())
}

pub fn resolve(m: &mut incident::Model, code: i32, notes: &str, now: i64) -> Result<(), Error> {
    transition(m, IncidentState::Resolved)?;
    m.resolution_code = code;
    m.resolution_notes = notes.to_string();
    m.resolve_time = now;
    Ok(())
}

pub fn close(m: &mut incident::Model, now: i64) -> Result<(), Error> {
    transition(m, IncidentState::Closed)?;
    m.close_time = now;
    Ok(())
}

pub fn reopen(m: &mut incident::Model) -> Result<(), Error> {
    let from = state_of(m)?;
    if from != IncidentState::Resolved {
        return Err(Error::FailedPrecondition(format!(
            "only a RESOLVED incident can be reopened; {} is {from}",
            incident_name(&m.number)
        )));
    }
    transition(m, IncidentState::InProgress)?;
    m.resolution_code = 0;
    m.resolution_notes.clear();
    m.resolve_time = 0;
    Ok(())
}

/// Assigns (or reassigns) within an open incident; NEW becomes ASSIGNED.
pub fn assign(m: &mut incident::Model, group: &str, assignee: &str, now: i64) -> Result<(), Error> {
    let from = state_of(m)?;
    if !from.is_open() {
        return Err(Error::FailedPrecondition(format!(
            "{} is {from}; only NEW, ASSIGNED, IN_PROGRESS or ON_HOLD incidents can be assigned",
            incident_name(&m.number)
        )));
    }
    let had = !m.assignment_group.is_empty();
    if had && (m.assignment_group != group || m.assignee != assignee) {
        m.reassignment_count += 1;
    }
    m.assignment_group = group.to_string();
    m.assignee = assignee.to_string();
    if from == IncidentState::New {
        m.state = IncidentState::Assigned as i32;
    }
    if m.first_response_time == 0 {
        m.first_response_time = now;
    }
    Ok(())
}

/// Puts an incident on hold for a reason, or takes it back to work.
pub fn set_state(
    m: &mut incident::Model,
    to: IncidentState,
    on_hold_reason: i32,
    now: i64,
) -> Result<(), Error> {
    match to {
        IncidentState::InProgress | IncidentState::OnHold | IncidentState::Cancelled => {}
        other => {
            return Err(Error::invalid(
                "incident.state",
                format!(
                    "Update sets IN_PROGRESS, ON_HOLD or CANCELLED; {other} has its own method \
                     (AssignIncident, ResolveIncident, CloseIncident)"
                ),
            ));
        }
    }
    if to == IncidentState::OnHold && !ON_HOLD_REASONS.iter().any(|(v, _)| *v == on_hold_reason) {
        return Err(Error::invalid("incident.on_hold_reason", "is required when the state is ON_HOLD"));
    }
    transition(m, to)?;
    if to == IncidentState::OnHold {
        m.on_hold_reason = on_hold_reason;
    }
    if to == IncidentState::InProgress && m.first_response_time == 0 {
        m.first_response_time = now;
    }
    Ok(())
}

/// Filterable fields of incidents.
pub const INCIDENT_FILTER_FIELDS: &[&str] = &[
    "state",
    "priority",
    "impact",
    "urgency",
    "category",
    "subcategory",
    "caller",
    "assignment_group",
    "assignee",
    "major",
    "parent_incident",
    "business_service",
    "configuration_items",
    "service_desk_ticket",
    "support_tier",
    "open_time",
    "update_time",
    "resolve_time",
];

const STATES: &[(i32, &str)] = &[
    (1, "NEW"),
    (2, "ASSIGNED"),
    (3, "IN_PROGRESS"),
    (4, "ON_HOLD"),
    (5, "RESOLVED"),
    (6, "CLOSED"),
    (7, "CANCELLED"),
];
const TIERS: &[(i32, &str)] = &[(1, "1"), (2, "2"), (3, "3")];

fn incident_field(member: &str) -> Option<Field> {
    use incident::Column as C;
    let col = |c: C| -> SimpleExpr { Expr::col((incident::Entity, c)) };
    Some(match member {
        "state" => Field::Enum { column: col(C::State), values: STATES, prefix: "INCIDENT_STATE_" },
        "priority" => Field::Enum { column: col(C::Priority), values: PRIORITIES, prefix: "PRIORITY_" },
        "impact" => Field::Enum { column: col(C::Impact), values: LEVELS, prefix: "IMPACT_" },
        "urgency" => Field::Enum { column: col(C::Urgency), values: LEVELS, prefix: "URGENCY_" },
        "support_tier" => Field::Enum { column: col(C::SupportTier), values: TIERS, prefix: "" },
        "category" => Field::Text(col(C::Category)),
        "subcategory" => Field::Text(col(C::Subcategory)),
        "caller" => Field::Text(col(C::Caller)),
        "assignment_group" => Field::Text(col(C::AssignmentGroup)),
        "assignee" => Field::Text(col(C::Assignee)),
        "parent_incident" => Field::Text(col(C::ParentIncident)),
        "business_service" => Field::Text(col(C::BusinessService)),
        "service_desk_ticket" => Field::Text(col(C::ServiceDeskTicket)),
        "major" => Field::Bool(col(C::Major)),
        "open_time" => Field::Time(col(C::OpenTime)),
        "update_time" => Field::Time(col(C::UpdateTime)),
        "resolve_time" => Field::Time(col(C::ResolveTime)),
        "configuration_items" => {
            Field::Member { id: col(C::Id), table: "incident_cis", owner: "incident_id", column: "ci" }
        }
        _ => return None,
    })
}
