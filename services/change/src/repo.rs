//! Persistence of changes: every write in one transaction with its CI links, history entry and
//! outbox event. Risk, conflicts and the approval policy are recomputed on every write from
//! the stored CMDB facts and the other changes.

use std::collections::{BTreeMap, BTreeSet};

use sea_orm::sea_query::{Expr, SimpleExpr};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, IntoActiveModel,
    QueryFilter, QueryOrder, TransactionTrait, Value,
};
use serde::{Deserialize, Serialize};

use itsm_proto::change::ChangeChanged;
use itsm_proto::common::FieldChange;
use itsm_runtime::db::{now_micros, placeholders, stmt};
use itsm_runtime::filter::Expr as Filter;
use itsm_runtime::history::{self, FieldDiff, NewEntry, change_time, check_etag, diff};
use itsm_runtime::idempotency::{self, Claim};
use itsm_runtime::keyset;
use itsm_runtime::numbers;
use itsm_runtime::outbox::{self, EventFeed, NewEvent};
use itsm_runtime::sql_filter::{self as filters, Field};
use itsm_runtime::{CallContext, Error};

use crate::convert::{CHANGE_NUMBER, CHANGE_PREFIX, change_name, change_to_proto};
use crate::domain::approval::{Rule, needed, rule_for};
use crate::domain::lifecycle::{ChangeState, ChangeType};
use crate::domain::maintenance::outside_windows;
use crate::domain::risk::{RiskInputs, assess};
use crate::entity::change;
use crate::records;
use itsm_proto::change::ApprovalRule;

pub const CREATE_METHOD: &str = "CreateChange";
pub const ORDER_FIELDS: &[&str] = &["number", "planned_start_time", "create_time", "update_time"];
const KIND: &str = "change";

#[derive(Clone)]
pub struct Repository {
    pub db: DatabaseConnection,
    pub feed: EventFeed,
}

pub use itsm_runtime::keyset::Page;

/// What the CMDB said about the affected CIs when they were last set.
#[derive(Debug, Clone, Default)]
pub struct CmdbFacts {
    pub max_criticality: i32,
    pub business_services: i32,
    /// Their names (maintenance windows of a service apply to its CIs' changes).
    pub business_service_names: Vec<String>,
    /// The CIs downstream of the affected CIs (the change's impact graph).
    pub impacted_cis: Vec<String>,
}

/// A decision recorded on a change (stored as JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub approver: String,
    pub approved: bool,
    pub comment: String,
    pub time: i64,
    /// The approver's roles when deciding (which approver groups they counted for).
    #[serde(default)]
    pub roles: Vec<String>,
}

/// A post-implementation review (stored as JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewRecord {
    pub notes: String,
    pub caused_incidents: Vec<String>,
    pub reviewer: String,
    pub time: i64,
}

pub fn review_of(model: &change::Model) -> Option<ReviewRecord> {
    if model.review.is_empty() { None } else { serde_json::from_str(&model.review).ok() }
}

pub fn decisions(model: &change::Model) -> Vec<Decision> {
    serde_json::from_str(&model.approvals).unwrap_or_default()
}

pub fn list_from(json: &str) -> Vec<String> {
    serde_json::from_str(json).unwrap_or_default()
}

pub fn list_to<T: Serialize>(items: &T) -> String {
    serde_json::to_string(items).unwrap_or_else(|_| "[]".into())
}

fn state_of(model: &change::Model) -> Result<(ChangeState, ChangeType), Error> {
    match (ChangeState::from_i32(model.state), ChangeType::from_i32(model.change_type)) {
        (Some(s), Some(t)) => Ok((s, t)),
        _ => Err(Error::Internal(format!("{} has an unknown state or type", model.number))),
    }
}

impl Repository {
    pub async fn find(
        db: &impl ConnectionTrait,
        tenant: &str,
        number: &str,
    ) -> Result<Option<change::Model>, Error> {
        Ok(change::Entity::find()
            .filter(change::Column::TenantId.eq(tenant))
            .filter(change::Column::Number.eq(number))
            .one(db)
            .await?)
    }

    pub async fn get(&self, ctx: &CallContext, number: &str) -> Result<change::Model, Error> {
        Self::find(&self.db, &ctx.tenant, number).await?.ok_or_else(|| Error::NotFound(change_name(number)))
    }

    /// The change an earlier create with this request_id made, if any.
    pub async fn created_before(
        &self,
        ctx: &CallContext,
        request_id: &str,
        hash: &str,
    ) -> Result<Option<change::Model>, Error> {
        match idempotency::lookup(&self.db, &ctx.tenant, CREATE_METHOD, request_id, hash).await? {
            Some(name) => Self::find(&self.db, &ctx.tenant, name.trim_start_matches(CHANGE_PREFIX)).await,
            None => Ok(None),
        }
    }

    pub async fn create(
        &self,
        ctx: &CallContext,
        mut model: change::Model,
        facts: CmdbFacts,
        request_id: &str,
        request_hash: &str,
    ) -> Result<change::Model, Error> {
        for _ in 0..3 {
            let txn = self.db.begin().await?;
            match idempotency::claim(&txn, &ctx.tenant, CREATE_METHOD, request_id, request_hash).await? {
                Claim::Fresh => {}
                Claim::Done(name) => {
                    let found = Self::find(&txn, &ctx.tenant, name.trim_start_matches(CHANGE_PREFIX)).await?;
                    txn.commit().await?;
                    return found.ok_or(Error::NotFound(name));
                }
                Claim::LostRace => {
                    txn.rollback().await?;
                    continue;
                }
            }
            let now = now_micros();
            model.id = uuid::Uuid::now_v7().to_string();
            model.tenant_id.clone_from(&ctx.tenant);
            model.number = numbers::next(&txn, &ctx.tenant, CHANGE_NUMBER).await?;
            model.state = ChangeState::New as i32;
            model.version = 1;
            model.create_time = now;
            model.update_time = now;
            model.creator.clone_from(&ctx.principal);
            model.updater.clone_from(&ctx.principal);
            model.max_criticality = facts.max_criticality;
            model.business_services = facts.business_services;
            model.business_service_names = list_to(&facts.business_service_names);
            model.impacted_cis = list_to(&facts.impacted_cis);
            reassess(&txn, &mut model).await?;
            model.clone().into_active_model().reset_all().insert(&txn).await?;
            write_links(&txn, &model).await?;
            refresh_conflicts(&txn, None, &model).await?;
            let changes = diff(None, Some(&model));
            let entry = NewEntry {
                kind: KIND,
                record_id: &model.id,
                version: 1,
                change_time: now,
                action: "create",
                changes: &changes,
                reason: "",
            };
            history::record(&txn, ctx, entry).await?;
            emit(&txn, ctx, None, &model, "create", &changes).await?;
            idempotency::complete(&txn, &ctx.tenant, CREATE_METHOD, request_id, &change_name(&model.number))
                .await?;
            txn.commit().await?;
            self.feed.notify_committed();
            return Ok(model);
        }
        Err(Error::Aborted("concurrent creates with the same request_id; retry".into()))
    }

    /// Loads, checks the etag, lets `edit` change a copy (it enforces the rules), reassesses
    /// and stores, all in one transaction. `facts` replaces the stored CMDB facts when given.
    #[allow(clippy::too_many_arguments)] // the call's context, target, audit text and the edit
    pub async fn change(
        &self,
        ctx: &CallContext,
        number: &str,
        expected_etag: &str,
        action: &str,
        reason: &str,
        facts: Option<CmdbFacts>,
        edit: impl FnOnce(&mut change::Model, i64) -> Result<(), Error>,
    ) -> Result<change::Model, Error> {
        let txn = self.db.begin().await?;
        let current = Self::find(&txn, &ctx.tenant, number)
            .await?
            .ok_or_else(|| Error::NotFound(change_name(number)))?;
        check_etag(expected_etag, current.version, &change_name(number))?;
        let now = change_time(current.update_time);
        let mut after = current.clone();
        if let Some(facts) = facts {
            after.max_criticality = facts.max_criticality;
            after.business_services = facts.business_services;
            after.business_service_names = list_to(&facts.business_service_names);
            after.impacted_cis = list_to(&facts.impacted_cis);
        }
        edit(&mut after, now)?;
        reassess(&txn, &mut after).await?;
        let changes = diff(Some(&current), Some(&after));
        if changes.is_empty() && reason.is_empty() {
            txn.commit().await?;
            return Ok(current);
        }
        after.version = current.version + 1;
        after.update_time = now;
        after.updater.clone_from(&ctx.principal);
        let mut active = after.clone().into_active_model().reset_all();
        active.id = sea_orm::ActiveValue::NotSet;
        active.tenant_id = sea_orm::ActiveValue::NotSet;
        let result = change::Entity::update_many()
            .set(active)
            .filter(change::Column::Id.eq(current.id.as_str()))
            .filter(change::Column::Version.eq(current.version))
            .exec(&txn)
            .await?;
        if result.rows_affected != 1 {
            return Err(Error::Aborted(format!(
                "{} was changed concurrently; read it again",
                change_name(number)
            )));
        }
        write_links(&txn, &after).await?;
        refresh_conflicts(&txn, Some(&current), &after).await?;
        let entry = NewEntry {
            kind: KIND,
            record_id: &after.id,
            version: after.version,
            change_time: now,
            action,
            changes: &changes,
            reason,
        };
        history::record(&txn, ctx, entry).await?;
        emit(&txn, ctx, Some(&current), &after, action, &changes).await?;
        txn.commit().await?;
        self.feed.notify_committed();
        Ok(after)
    }

    pub async fn delete(&self, ctx: &CallContext, number: &str, expected_etag: &str) -> Result<(), Error> {
        let txn = self.db.begin().await?;
        let current = Self::find(&txn, &ctx.tenant, number)
            .await?
            .ok_or_else(|| Error::NotFound(change_name(number)))?;
        check_etag(expected_etag, current.version, &change_name(number))?;
        let (state, _) = state_of(&current)?;
        if !matches!(state, ChangeState::New | ChangeState::Cancelled) {
            return Err(Error::FailedPrecondition(format!(
                "{} is {state}; only NEW or CANCELLED changes can be deleted (cancel it first)",
                change_name(number)
            )));
        }
        change::Entity::delete_many().filter(change::Column::Id.eq(current.id.as_str())).exec(&txn).await?;
        txn.execute_raw(stmt(
            txn.get_database_backend(),
            "DELETE FROM change_cis WHERE change_id = $1",
            [current.id.as_str().into()],
        ))
        .await?;
        let now = change_time(current.update_time);
        let changes = diff(Some(&current), None);
        let entry = NewEntry {
            kind: KIND,
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
        self.feed.notify_committed();
        Ok(())
    }

    pub async fn list(
        &self,
        ctx: &CallContext,
        filter: Option<&Filter>,
        order: (&str, bool),
        after: Option<Vec<serde_json::Value>>,
        limit: u64,
    ) -> Result<Page<change::Model>, Error> {
        let (field, descending) = order;
        let column = match field {
            "number" => change::Column::Number,
            "planned_start_time" => change::Column::PlannedStartTime,
            "update_time" => change::Column::UpdateTime,
            _ => change::Column::CreateTime,
        };
        let mut query = change::Entity::find().filter(change::Column::TenantId.eq(ctx.tenant.as_str()));
        if let Some(filter) = filter {
            query = query.filter(filters::condition(filter, &ctx.tenant, &change_field, FILTER_FIELDS)?);
        }
        keyset::page(&self.db, query, column, change::Column::Id, descending, after, limit, |m| {
            let value = match field {
                "number" => serde_json::json!(m.number),
                "planned_start_time" => serde_json::json!(m.planned_start_time),
                "update_time" => serde_json::json!(m.update_time),
                _ => serde_json::json!(m.create_time),
            };
            (value, m.id.clone())
        })
        .await
    }

    /// Changes on `ci` whose window covers `at`, in states from AUTHORIZE to IMPLEMENT.
    pub async fn covering(&self, ctx: &CallContext, ci: &str, at: i64) -> Result<Vec<change::Model>, Error> {
        let rows = self
            .db
            .query_all_raw(stmt(
                self.db.get_database_backend(),
                "SELECT c.number FROM change_cis l JOIN changes c ON c.id = l.change_id \
                 WHERE l.tenant_id = $1 AND l.ci = $2 AND l.state IN (3, 4, 5) \
                 AND l.planned_start_time <= $3 AND l.planned_end_time >= $3 ORDER BY c.number",
                [ctx.tenant.as_str().into(), ci.into(), at.into()],
            ))
            .await?;
        let mut found = Vec::new();
        for row in rows {
            let number: String = row.try_get("", "number")?;
            if let Some(model) = Self::find(&self.db, &ctx.tenant, &number).await? {
                found.push(model);
            }
        }
        Ok(found)
    }

    /// Changes in SCHEDULED, IMPLEMENT or REVIEW whose window holds `at` and whose CIs serve
    /// `service` (a business service is deployed through its components).
    pub async fn covering_service(
        &self,
        ctx: &CallContext,
        service: &str,
        at: i64,
    ) -> Result<Vec<change::Model>, Error> {
        // The JSON list holds the name quoted; names are `configurationItems/{uuid}`, so the
        // pattern has no LIKE wildcards of its own.
        let pattern = format!("%\"{service}\"%");
        Ok(change::Entity::find()
            .filter(change::Column::TenantId.eq(ctx.tenant.as_str()))
            .filter(change::Column::State.is_in([3, 4, 5]))
            .filter(change::Column::PlannedStartTime.lte(at))
            .filter(change::Column::PlannedEndTime.gte(at))
            .filter(change::Column::BusinessServiceNames.like(pattern))
            .order_by_asc(change::Column::Number)
            .all(&self.db)
            .await?)
    }
}

/// Recomputes conflicts, failure history, risk and the approval policy of `model` from the
/// other changes in the tenant (inside the writing transaction).
async fn reassess(txn: &impl ConnectionTrait, model: &mut change::Model) -> Result<(), Error> {
    let cis = list_from(&model.configuration_items);
    let (state, kind) = state_of(model)?;
    let conflicts = if state.is_open() && model.planned_start_time > 0 && !cis.is_empty() {
        conflicts_of(txn, model).await?
    } else {
        list_from(&model.conflicts)
    };
    let (past, failed) = if cis.is_empty() {
        (0, 0)
    } else {
        let mut values: Vec<Value> = vec![model.tenant_id.as_str().into(), model.id.as_str().into()];
        let list = placeholders(&mut values, &cis);
        let rows = txn
            .query_all_raw(stmt(
                txn.get_database_backend(),
                &format!(
                    "SELECT DISTINCT change_id, outcome FROM change_cis \
                     WHERE tenant_id = $1 AND change_id <> $2 AND outcome > 0 AND ci IN ({list})"
                ),
                values,
            ))
            .await?;
        let outcomes: Vec<i32> =
            rows.iter().map(|r| r.try_get::<i32>("", "outcome")).collect::<Result<_, _>>()?;
        (outcomes.len() as i32, outcomes.iter().filter(|o| **o != 1).count() as i32)
    };
    let answers: BTreeMap<String, bool> = serde_json::from_str(&model.risk_answers).unwrap_or_default();
    let questions = records::questions(txn, &model.tenant_id).await?;
    let assessment = assess(&RiskInputs {
        change_type: Some(kind),
        max_criticality: model.max_criticality,
        business_services: model.business_services,
        past_changes: past,
        past_failures: failed,
        conflicts: conflicts.len() as i32,
        answers,
        questions,
    });
    // Once decided, the policy a change was authorised under stays.
    if matches!(state, ChangeState::New | ChangeState::Assess | ChangeState::Authorize) {
        model.risk = assessment.level;
        model.risk_score = assessment.score;
        model.risk_factors = list_to(&assessment.factors);
        // Outside the maintenance windows of a CI or service that has some: one approval more.
        let mut targets = cis.clone();
        targets.extend(list_from(&model.business_service_names));
        let windows = records::windows(txn, &model.tenant_id).await?;
        model.outside_maintenance_window = model.planned_start_time > 0
            && outside_windows(&targets, model.planned_start_time, model.planned_end_time, &windows)
                .is_some();
        let policy = records::policy(txn, &model.tenant_id).await?;
        let rule = rule_for(&policy, kind, assessment.level);
        model.required_approvals = needed(&rule, kind, i32::from(model.outside_maintenance_window));
        model.approval_rule = match rule.rule {
            Rule::Any => ApprovalRule::Any,
            Rule::All => ApprovalRule::All,
            Rule::Majority => ApprovalRule::Majority,
        } as i32;
        model.approver_groups = list_to(&rule.groups);
    }
    model.conflicts = list_to(&conflicts);
    Ok(())
}

/// Other open changes whose window overlaps `model`'s and that touch one of its CIs, a CI of its
/// impact graph, or whose impact graph holds one of its CIs (names, sorted).
async fn conflicts_of(txn: &impl ConnectionTrait, model: &change::Model) -> Result<Vec<String>, Error> {
    let probe = ConflictProbe {
        tenant: &model.tenant_id,
        exclude_id: &model.id,
        cis: list_from(&model.configuration_items),
        impacted: list_from(&model.impacted_cis),
        start: model.planned_start_time,
        end: model.planned_end_time,
    };
    let names: BTreeSet<String> =
        conflict_details(txn, &probe).await?.into_iter().map(|c| c.change).collect();
    Ok(names.into_iter().collect())
}

/// What a conflict check looks for.
pub struct ConflictProbe<'a> {
    pub tenant: &'a str,
    /// The change's own id ("" for a proposed change).
    pub exclude_id: &'a str,
    pub cis: Vec<String>,
    /// CIs downstream of `cis`.
    pub impacted: Vec<String>,
    pub start: i64,
    pub end: i64,
}

/// One conflict found: the other change's name, why (`ConflictKind` number) and where.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ConflictFound {
    pub change: String,
    pub kind: i32,
    pub ci: String,
}

/// Open changes overlapping the probe's window on a shared CI or through either impact graph.
pub async fn conflict_details(
    db: &impl ConnectionTrait,
    probe: &ConflictProbe<'_>,
) -> Result<Vec<ConflictFound>, Error> {
    let mut found = BTreeSet::new();
    // (table, the CIs of this change matched against it, ConflictKind)
    let probes: [(&str, &[String], i32); 3] = [
        ("change_cis", &probe.cis, 1),
        ("change_cis", &probe.impacted, 2),
        ("change_impacts", &probe.cis, 3),
    ];
    for (table, cis, kind) in probes {
        for chunk in cis.chunks(itsm_runtime::db::MAX_IN_LIST) {
            let mut values: Vec<Value> =
                vec![probe.tenant.into(), probe.exclude_id.into(), probe.end.into(), probe.start.into()];
            let list = placeholders(&mut values, chunk);
            let rows = db
                .query_all_raw(stmt(
                    db.get_database_backend(),
                    &format!(
                        "SELECT DISTINCT c.number, l.ci FROM {table} l JOIN changes c ON c.id = l.change_id \
                         WHERE l.tenant_id = $1 AND l.change_id <> $2 AND l.state IN (1, 2, 3, 4, 5) \
                         AND l.planned_start_time < $3 AND l.planned_end_time > $4 AND l.ci IN ({list})"
                    ),
                    values,
                ))
                .await?;
            for r in &rows {
                found.insert(ConflictFound {
                    change: change_name(&r.try_get::<String>("", "number")?),
                    kind,
                    ci: r.try_get::<String>("", "ci")?,
                });
            }
        }
    }
    Ok(found.into_iter().collect())
}

/// After `model` was written: the open changes it conflicted with before or conflicts with now
/// get their (output-only) conflict lists recomputed, so a change scheduled later shows up on
/// the earlier one too, and one that moved away disappears from it.
async fn refresh_conflicts(
    txn: &impl ConnectionTrait,
    before: Option<&change::Model>,
    model: &change::Model,
) -> Result<(), Error> {
    let mut affected: BTreeSet<String> = list_from(&model.conflicts).into_iter().collect();
    if let Some(before) = before {
        affected.extend(list_from(&before.conflicts));
    }
    for name in affected {
        let number = name.trim_start_matches(CHANGE_PREFIX);
        let Some(other) = change::Entity::find()
            .filter(change::Column::TenantId.eq(model.tenant_id.as_str()))
            .filter(change::Column::Number.eq(number))
            .one(txn)
            .await?
        else {
            continue;
        };
        let open = ChangeState::from_i32(other.state).is_some_and(ChangeState::is_open);
        if !open || other.planned_start_time == 0 {
            continue;
        }
        let conflicts = list_to(&conflicts_of(txn, &other).await?);
        if conflicts != other.conflicts {
            txn.execute_raw(stmt(
                txn.get_database_backend(),
                "UPDATE changes SET conflicts = $1 WHERE id = $2",
                [conflicts.into(), other.id.as_str().into()],
            ))
            .await?;
        }
    }
    Ok(())
}

async fn write_links(txn: &impl ConnectionTrait, model: &change::Model) -> Result<(), Error> {
    let backend = txn.get_database_backend();
    txn.execute_raw(stmt(backend, "DELETE FROM change_cis WHERE change_id = $1", [model.id.as_str().into()]))
        .await?;
    let cis: BTreeSet<String> = list_from(&model.configuration_items).into_iter().collect();
    for ci in cis {
        txn.execute_raw(stmt(
            backend,
            "INSERT INTO change_cis (change_id, ci, tenant_id, state, outcome, planned_start_time, planned_end_time) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            [
                model.id.as_str().into(),
                ci.into(),
                model.tenant_id.as_str().into(),
                model.state.into(),
                model.outcome.into(),
                model.planned_start_time.into(),
                model.planned_end_time.into(),
            ],
        ))
        .await?;
    }
    txn.execute_raw(stmt(
        backend,
        "DELETE FROM change_impacts WHERE change_id = $1",
        [model.id.as_str().into()],
    ))
    .await?;
    let impacted: BTreeSet<String> = list_from(&model.impacted_cis).into_iter().collect();
    let impacted: Vec<String> = impacted.into_iter().collect();
    // 6 values, ~120 bytes a row: 80 rows a statement stay under the budget.
    for chunk in impacted.chunks(80) {
        let mut sql = String::from(
            "INSERT INTO change_impacts (change_id, ci, tenant_id, state, planned_start_time, planned_end_time) VALUES ",
        );
        let mut values: Vec<Value> = Vec::with_capacity(chunk.len() * 6);
        for (i, ci) in chunk.iter().enumerate() {
            let n = i * 6;
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!(
                "(${}, ${}, ${}, ${}, ${}, ${})",
                n + 1,
                n + 2,
                n + 3,
                n + 4,
                n + 5,
                n + 6
            ));
            values.extend([
                model.id.as_str().into(),
                ci.as_str().into(),
                model.tenant_id.as_str().into(),
                model.state.into(),
                model.planned_start_time.into(),
                model.planned_end_time.into(),
            ]);
        }
        txn.execute_raw(stmt(backend, &sql, values)).await?;
    }
    Ok(())
}

async fn emit(
    txn: &impl ConnectionTrait,
    ctx: &CallContext,
    before: Option<&change::Model>,
    after: &change::Model,
    action: &str,
    changes: &[FieldDiff],
) -> Result<(), Error> {
    let name = change_name(&after.number);
    let payload = ChangeChanged {
        action: action.to_string(),
        change: Some(change_to_proto(after)),
        previous_state: before.map_or(0, |b| b.state),
        changes: changes.iter().map(FieldChange::from).collect(),
    };
    outbox::append(txn, NewEvent::of(&payload, &name, &ctx.tenant, &ctx.principal)).await?;
    Ok(())
}

pub const FILTER_FIELDS: &[&str] = &[
    "state",
    "type",
    "risk",
    "assignment_group",
    "assignee",
    "problem",
    "configuration_items",
    "planned_start_time",
    "planned_end_time",
    "create_time",
    "update_time",
];

const STATES: &[(i32, &str)] = &[
    (1, "NEW"),
    (2, "ASSESS"),
    (3, "AUTHORIZE"),
    (4, "SCHEDULED"),
    (5, "IMPLEMENT"),
    (6, "REVIEW"),
    (7, "CLOSED"),
    (8, "CANCELLED"),
    (9, "FAILED"),
];
const TYPES: &[(i32, &str)] = &[(1, "STANDARD"), (2, "NORMAL"), (3, "EMERGENCY")];
const RISKS: &[(i32, &str)] = &[(1, "LOW"), (2, "MODERATE"), (3, "HIGH"), (4, "VERY_HIGH")];

fn change_field(member: &str) -> Option<Field> {
    use change::Column as C;
    let col = |c: C| -> SimpleExpr { Expr::col((change::Entity, c)) };
    Some(match member {
        "state" => Field::Enum { column: col(C::State), values: STATES, prefix: "CHANGE_STATE_" },
        "type" => Field::Enum { column: col(C::ChangeType), values: TYPES, prefix: "CHANGE_TYPE_" },
        "risk" => Field::Enum { column: col(C::Risk), values: RISKS, prefix: "RISK_" },
        "assignment_group" => Field::Text(col(C::AssignmentGroup)),
        "assignee" => Field::Text(col(C::Assignee)),
        "problem" => Field::Text(col(C::Problem)),
        "planned_start_time" => Field::Time(col(C::PlannedStartTime)),
        "planned_end_time" => Field::Time(col(C::PlannedEndTime)),
        "create_time" => Field::Time(col(C::CreateTime)),
        "update_time" => Field::Time(col(C::UpdateTime)),
        "configuration_items" => {
            Field::Member { id: col(C::Id), table: "change_cis", owner: "change_id", column: "ci" }
        }
        _ => return None,
    })
}

impl Repository {
    pub async fn create_blackout(
        &self,
        ctx: &CallContext,
        mut window: crate::entity::blackout_window::Model,
    ) -> Result<crate::entity::blackout_window::Model, Error> {
        use sea_orm::ActiveModelTrait;
        window.id = uuid::Uuid::now_v7().to_string();
        window.tenant_id.clone_from(&ctx.tenant);
        window.create_time = now_micros();
        window.creator.clone_from(&ctx.principal);
        window.clone().into_active_model().reset_all().insert(&self.db).await?;
        Ok(window)
    }

    /// Blackout windows of the tenant ending after `after` (all when `None`), soonest first.
    pub async fn blackouts(
        &self,
        ctx: &CallContext,
        after: Option<i64>,
    ) -> Result<Vec<crate::entity::blackout_window::Model>, Error> {
        use crate::entity::blackout_window as b;
        use sea_orm::QueryOrder;
        let mut query = b::Entity::find().filter(b::Column::TenantId.eq(ctx.tenant.as_str()));
        if let Some(at) = after {
            query = query.filter(b::Column::EndTime.gt(at));
        }
        Ok(query.order_by_asc(b::Column::StartTime).all(&self.db).await?)
    }

    /// Blackout windows overlapping [start, end].
    pub async fn blackouts_overlapping(
        &self,
        ctx: &CallContext,
        start: i64,
        end: i64,
    ) -> Result<Vec<crate::entity::blackout_window::Model>, Error> {
        use crate::entity::blackout_window as b;
        Ok(b::Entity::find()
            .filter(b::Column::TenantId.eq(ctx.tenant.as_str()))
            .filter(b::Column::StartTime.lte(end))
            .filter(b::Column::EndTime.gte(start))
            .all(&self.db)
            .await?)
    }

    pub async fn delete_blackout(&self, ctx: &CallContext, id: &str) -> Result<(), Error> {
        use crate::entity::blackout_window as b;
        let result = b::Entity::delete_many()
            .filter(b::Column::TenantId.eq(ctx.tenant.as_str()))
            .filter(b::Column::Id.eq(id))
            .exec(&self.db)
            .await?;
        if result.rows_affected == 0 {
            return Err(Error::NotFound(format!("blackoutWindows/{id}")));
        }
        Ok(())
    }
}

/// Why a non-emergency change may not be authorised or scheduled in these blackouts, if so.
pub fn blackout_refusal(kind: i32, blackouts: &[crate::entity::blackout_window::Model]) -> Option<String> {
    if kind == ChangeType::Emergency as i32 {
        return None;
    }
    blackouts.first().map(|b| {
        format!(
            "the planned window overlaps blackout window {:?} (blackoutWindows/{}): {}; only emergency changes are allowed then",
            b.display_name, b.id, b.reason
        )
    })
}
