//! Problems: create from incidents or proactively, the problem state machine, links to the
//! incidents they explain and the changes that fix them.

use sea_orm::sea_query::{Expr, SimpleExpr};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, QueryFilter,
    TransactionTrait,
};

use itsm_proto::common::FieldChange;
use itsm_proto::incident::ProblemChanged;
use itsm_runtime::db::{now_micros, stmt};
use itsm_runtime::error::Violations;
use itsm_runtime::filter::Expr as Filter;
use itsm_runtime::idempotency::{self, Claim};
use itsm_runtime::keyset;
use itsm_runtime::numbers;
use itsm_runtime::outbox::{self, NewEvent};
use itsm_runtime::{CallContext, Error};

use super::{PROBLEM, Page, Repository};
use crate::convert::{INCIDENT_PREFIX, PROBLEM_NUMBER, PROBLEM_PREFIX, list_from, list_to, problem_to_proto};
use crate::domain::problem::ProblemState;
use crate::entity::{incident, problem};
use itsm_runtime::history::{self, FieldDiff, NewEntry, change_time, check_etag, diff};
use itsm_runtime::sql_filter::{self as filters, Field, PRIORITIES};

pub const CREATE_METHOD: &str = "CreateProblem";
pub const ORDER_FIELDS: &[&str] = &["number", "priority", "create_time", "update_time"];

pub fn problem_name(number: &str) -> String {
    format!("{PROBLEM_PREFIX}{number}")
}

/// What a caller gives to create a problem.
#[derive(Debug, Clone, Default)]
pub struct NewProblem {
    pub short_description: String,
    pub description: String,
    /// 1-5; 0 = from the linked incidents (their highest), else P3.
    pub priority: i32,
    pub root_cause: String,
    pub workaround: String,
    pub configuration_items: Vec<String>,
    pub incidents: Vec<String>,
    pub assignment_group: String,
    pub assignee: String,
}

impl Repository {
    pub async fn find_problem(
        db: &impl ConnectionTrait,
        tenant: &str,
        number: &str,
    ) -> Result<Option<problem::Model>, Error> {
        Ok(problem::Entity::find()
            .filter(problem::Column::TenantId.eq(tenant))
            .filter(problem::Column::Number.eq(number))
            .one(db)
            .await?)
    }

    pub async fn get_problem(&self, ctx: &CallContext, number: &str) -> Result<problem::Model, Error> {
        Self::find_problem(&self.db, &ctx.tenant, number)
            .await?
            .ok_or_else(|| Error::NotFound(problem_name(number)))
    }

    /// The incidents these names denote in the tenant; unknown ones are violations of `field[i]`.
    pub(crate) async fn linked_incidents(
        db: &impl ConnectionTrait,
        tenant: &str,
        names: &[String],
        field: &str,
    ) -> Result<Vec<incident::Model>, Error> {
        let mut violations = Violations::new();
        let mut found = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let number = name.strip_prefix(INCIDENT_PREFIX).unwrap_or_default();
            match Self::find_incident(db, tenant, number).await? {
                Some(model) => found.push(model),
                None => violations.add(format!("{field}[{i}]"), format!("{name} does not exist")),
            }
        }
        violations.into_result()?;
        Ok(found)
    }

    pub async fn create_problem(
        &self,
        ctx: &CallContext,
        new: NewProblem,
        request_id: &str,
        request_hash: &str,
    ) -> Result<problem::Model, Error> {
        for _ in 0..3 {
            let txn = self.db.begin().await?;
            match idempotency::claim(&txn, &ctx.tenant, CREATE_METHOD, request_id, request_hash).await? {
                Claim::Fresh => {}
                Claim::Done(name) => {
                    let number = name.trim_start_matches(PROBLEM_PREFIX).to_string();
                    let found = Self::find_problem(&txn, &ctx.tenant, &number).await?;
                    txn.commit().await?;
                    return found.ok_or(Error::NotFound(name));
                }
                Claim::LostRace => {
                    txn.rollback().await?;
                    continue;
                }
            }
            let incidents =
                Self::linked_incidents(&txn, &ctx.tenant, &new.incidents, "problem.incidents").await?;
            let priority = if new.priority > 0 {
                new.priority
            } else {
                incidents.iter().map(|i| i.priority).filter(|p| *p > 0).min().unwrap_or(3)
            };
            let mut cis = new.configuration_items.clone();
            if cis.is_empty() {
                // Proposed from the incidents it explains; the caller edits it later.
                for i in &incidents {
                    for ci in list_from(&i.configuration_items) {
                        if !cis.contains(&ci) {
                            cis.push(ci);
                        }
                    }
                }
            }
            let now = now_micros();
            let model = problem::Model {
                id: uuid::Uuid::now_v7().to_string(),
                tenant_id: ctx.tenant.clone(),
                number: numbers::next(&txn, &ctx.tenant, PROBLEM_NUMBER).await?,
                short_description: new.short_description,
                description: new.description,
                state: ProblemState::New as i32,
                priority,
                root_cause: new.root_cause,
                workaround: new.workaround,
                configuration_items: list_to(&cis),
                incidents: list_to(&new.incidents),
                assignment_group: new.assignment_group,
                assignee: new.assignee,
                known_error: String::new(),
                changes: "[]".into(),
                resolution_notes: String::new(),
                version: 1,
                create_time: now,
                update_time: now,
                creator: ctx.principal.clone(),
                updater: ctx.principal.clone(),
            };
            model.clone().into_active_model().reset_all().insert(&txn).await?;
            write_incident_links(&txn, &model, &new.incidents).await?;
            let changes = diff(None, Some(&model));
            history::record(
                &txn,
                ctx,
                NewEntry {
                    kind: PROBLEM,
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
            idempotency::complete(&txn, &ctx.tenant, CREATE_METHOD, request_id, &problem_name(&model.number))
                .await?;
            txn.commit().await?;
            self.feed.notify_committed();
            return Ok(model);
        }
        Err(Error::Aborted("concurrent creates with the same request_id; retry".into()))
    }

    /// Loads, checks the etag, lets `change` edit a copy (checking incident links exist), stores.
    pub async fn change_problem(
        &self,
        ctx: &CallContext,
        number: &str,
        expected_etag: &str,
        action: &str,
        reason: &str,
        change: impl FnOnce(&mut problem::Model) -> Result<(), Error>,
    ) -> Result<problem::Model, Error> {
        let txn = self.db.begin().await?;
        let current = Self::find_problem(&txn, &ctx.tenant, number)
            .await?
            .ok_or_else(|| Error::NotFound(problem_name(number)))?;
        check_etag(expected_etag, current.version, &problem_name(number))?;
        let mut after = current.clone();
        change(&mut after)?;
        let stored = self.store_problem(&txn, ctx, &current, after, action, reason).await?;
        txn.commit().await?;
        self.feed.notify_committed();
        Ok(stored)
    }

    pub(crate) async fn store_problem(
        &self,
        txn: &impl ConnectionTrait,
        ctx: &CallContext,
        current: &problem::Model,
        mut after: problem::Model,
        action: &str,
        reason: &str,
    ) -> Result<problem::Model, Error> {
        let changes = diff(Some(current), Some(&after));
        if changes.is_empty() {
            return Ok(current.clone());
        }
        let incidents = list_from(&after.incidents);
        if after.incidents != current.incidents {
            Self::linked_incidents(txn, &ctx.tenant, &incidents, "problem.incidents").await?;
        }
        let now = change_time(current.update_time);
        after.version = current.version + 1;
        after.update_time = now;
        after.updater.clone_from(&ctx.principal);
        let mut active = after.clone().into_active_model().reset_all();
        active.id = sea_orm::ActiveValue::NotSet;
        active.tenant_id = sea_orm::ActiveValue::NotSet;
        let result = problem::Entity::update_many()
            .set(active)
            .filter(problem::Column::Id.eq(current.id.as_str()))
            .filter(problem::Column::Version.eq(current.version))
            .exec(txn)
            .await?;
        if result.rows_affected != 1 {
            return Err(Error::Aborted(format!(
                "{} was changed concurrently; read it again",
                problem_name(&current.number)
            )));
        }
        if after.incidents != current.incidents {
            write_incident_links(txn, &after, &incidents).await?;
        }
        history::record(
            txn,
            ctx,
            NewEntry {
                kind: PROBLEM,
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

    pub async fn delete_problem(
        &self,
        ctx: &CallContext,
        number: &str,
        expected_etag: &str,
    ) -> Result<(), Error> {
        let txn = self.db.begin().await?;
        let current = Self::find_problem(&txn, &ctx.tenant, number)
            .await?
            .ok_or_else(|| Error::NotFound(problem_name(number)))?;
        check_etag(expected_etag, current.version, &problem_name(number))?;
        problem::Entity::delete_many().filter(problem::Column::Id.eq(current.id.as_str())).exec(&txn).await?;
        write_incident_links(&txn, &current, &[]).await?;
        let now = change_time(current.update_time);
        let changes = diff(Some(&current), None);
        history::record(
            &txn,
            ctx,
            NewEntry {
                kind: PROBLEM,
                record_id: &current.id,
                version: current.version + 1,
                change_time: now,
                action: "delete",
                changes: &changes,
                reason: "",
            },
        )
        .await?;
        emit(&txn, ctx, Some(&current), &current, "delete", &changes).await?;
        txn.commit().await?;
        self.feed.notify_committed();
        Ok(())
    }

    pub async fn list_problems(
        &self,
        ctx: &CallContext,
        filter: Option<&Filter>,
        order: (&str, bool),
        after: Option<Vec<serde_json::Value>>,
        limit: u64,
    ) -> Result<Page<problem::Model>, Error> {
        let (field, descending) = order;
        let column = match field {
            "number" => problem::Column::Number,
            "priority" => problem::Column::Priority,
            "update_time" => problem::Column::UpdateTime,
            _ => problem::Column::CreateTime,
        };
        let mut query = problem::Entity::find().filter(problem::Column::TenantId.eq(ctx.tenant.as_str()));
        if let Some(filter) = filter {
            query =
                query.filter(filters::condition(filter, &ctx.tenant, &problem_field, PROBLEM_FILTER_FIELDS)?);
        }
        keyset::page(&self.db, query, column, problem::Column::Id, descending, after, limit, |m| {
            let value = match field {
                "number" => serde_json::json!(m.number),
                "priority" => serde_json::json!(m.priority),
                "update_time" => serde_json::json!(m.update_time),
                _ => serde_json::json!(m.create_time),
            };
            (value, m.id.clone())
        })
        .await
    }

    /// Records that `change` (a change-service name) fixes the problem and puts the problem in
    /// FIX_IN_PROGRESS; linking the same change again changes nothing.
    pub async fn link_change(
        &self,
        ctx: &CallContext,
        number: &str,
        change: &str,
    ) -> Result<problem::Model, Error> {
        let txn = self.db.begin().await?;
        let current = Self::find_problem(&txn, &ctx.tenant, number)
            .await?
            .ok_or_else(|| Error::NotFound(problem_name(number)))?;
        let mut changes = list_from(&current.changes);
        if changes.iter().any(|c| c == change) {
            txn.commit().await?;
            return Ok(current);
        }
        changes.push(change.to_string());
        let mut after = current.clone();
        after.changes = list_to(&changes);
        // Raising the fix is the move into FIX_IN_PROGRESS (the root cause is known by now).
        after.state = ProblemState::FixInProgress as i32;
        txn.execute_raw(stmt(
            txn.get_database_backend(),
            "INSERT INTO problem_changes (tenant_id, change, problem_id) VALUES ($1, $2, $3)",
            [ctx.tenant.as_str().into(), change.into(), current.id.as_str().into()],
        ))
        .await?;
        let stored = self.store_problem(&txn, ctx, &current, after, "raise_change", change).await?;
        txn.commit().await?;
        self.feed.notify_committed();
        Ok(stored)
    }

    /// The problem a change was raised for, if any.
    pub async fn problem_for_change(
        db: &impl ConnectionTrait,
        tenant: &str,
        change: &str,
    ) -> Result<Option<problem::Model>, Error> {
        let row = db
            .query_one_raw(stmt(
                db.get_database_backend(),
                "SELECT p.number FROM problem_changes c JOIN problems p ON p.id = c.problem_id \
                 WHERE c.tenant_id = $1 AND c.change = $2",
                [tenant.into(), change.into()],
            ))
            .await?;
        match row {
            Some(row) => Self::find_problem(db, tenant, &row.try_get::<String>("", "number")?).await,
            None => Ok(None),
        }
    }
}

async fn write_incident_links(
    txn: &impl ConnectionTrait,
    model: &problem::Model,
    incidents: &[String],
) -> Result<(), Error> {
    let backend = txn.get_database_backend();
    txn.execute_raw(stmt(
        backend,
        "DELETE FROM problem_incidents WHERE problem_id = $1",
        [model.id.as_str().into()],
    ))
    .await?;
    let mut seen = std::collections::BTreeSet::new();
    for incident in incidents.iter().filter(|i| seen.insert(i.as_str())) {
        txn.execute_raw(stmt(
            backend,
            "INSERT INTO problem_incidents (problem_id, incident, tenant_id) VALUES ($1, $2, $3)",
            [model.id.as_str().into(), incident.as_str().into(), model.tenant_id.as_str().into()],
        ))
        .await?;
    }
    Ok(())
}

async fn emit(
    txn: &impl ConnectionTrait,
    ctx: &CallContext,
    before: Option<&problem::Model>,
    after: &problem::Model,
    action: &str,
    changes: &[FieldDiff],
) -> Result<(), Error> {
    let name = problem_name(&after.number);
    let payload = ProblemChanged {
        action: action.to_string(),
        problem: Some(problem_to_proto(after)),
        previous_state: before.map_or(0, |b| b.state),
        changes: changes.iter().map(FieldChange::from).collect(),
    };
    outbox::append(txn, NewEvent::of(&payload, &name, &ctx.tenant, &ctx.principal)).await?;
    Ok(())
}

/// Moves a problem through its state machine; RESOLVED needs a root cause.
pub fn transition(m: &mut problem::Model, to: ProblemState) -> Result<(), Error> {
    let from = ProblemState::from_i32(m.state)
        .ok_or_else(|| Error::Internal(format!("{} has unknown state {}", m.number, m.state)))?;
    if from == to {
        return Ok(());
    }
    from.check(to).map_err(|e| Error::FailedPrecondition(e.to_string()))?;
    if matches!(to, ProblemState::FixInProgress | ProblemState::Resolved) && m.root_cause.trim().is_empty() {
        return Err(Error::FailedPrecondition(format!(
            "{} needs a root cause before it moves to {to}",
            problem_name(&m.number)
        )));
    }
    m.state = to as i32;
    Ok(())
}

pub const PROBLEM_FILTER_FIELDS: &[&str] = &[
    "state",
    "priority",
    "assignment_group",
    "assignee",
    "known_error",
    "configuration_items",
    "incidents",
    "create_time",
    "update_time",
];

const STATES: &[(i32, &str)] = &[
    (1, "NEW"),
    (2, "ASSESSED"),
    (3, "ROOT_CAUSE_ANALYSIS"),
    (4, "FIX_IN_PROGRESS"),
    (5, "RESOLVED"),
    (6, "CLOSED"),
];

fn problem_field(member: &str) -> Option<Field> {
    use problem::Column as C;
    let col = |c: C| -> SimpleExpr { Expr::col((problem::Entity, c)) };
    Some(match member {
        "state" => Field::Enum { column: col(C::State), values: STATES, prefix: "PROBLEM_STATE_" },
        "priority" => Field::Enum { column: col(C::Priority), values: PRIORITIES, prefix: "PRIORITY_" },
        "assignment_group" => Field::Text(col(C::AssignmentGroup)),
        "assignee" => Field::Text(col(C::Assignee)),
        "known_error" => Field::Text(col(C::KnownError)),
        "create_time" => Field::Time(col(C::CreateTime)),
        "update_time" => Field::Time(col(C::UpdateTime)),
        "incidents" => Field::Member {
            id: col(C::Id),
            table: "problem_incidents",
            owner: "problem_id",
            column: "incident",
        },
        // Problems keep their CIs as a JSON array: the quoted name is matched in it.
        "configuration_items" => Field::Contains(col(C::ConfigurationItems)),
        _ => return None,
    })
}
