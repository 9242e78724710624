//! Persistence of service level management: calendars, agreements, the records' observed states
//! and the SLA clocks computed from them. A clock is always recomputed from all its record's
//! observations (so late, duplicate and back-dated events give the same result), and its events
//! are written to the outbox in the same transaction as the clock, with what was already emitted
//! kept on the row: each warning and the breach go out exactly once.

use std::collections::BTreeSet;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, SimpleExpr};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, IntoActiveModel,
    QueryFilter, QueryOrder, TransactionTrait,
};

use itsm_proto::delivery::{SlaClockChanged, SlaClockState};
use itsm_runtime::db::now_micros;
use itsm_runtime::filter::Expr as Filter;
use itsm_runtime::history::{change_time, check_etag};
use itsm_runtime::idempotency::{self, Claim};
use itsm_runtime::keyset::{self, Page};
use itsm_runtime::outbox::{self, EventFeed, NewEvent};
use itsm_runtime::sql_filter::{self as filters, Field};
use itsm_runtime::{CallContext, Error};
use tracing::Instrument;

use super::convert::{AGREEMENT_PREFIX, CALENDAR_PREFIX, CLOCK_PREFIX, clock_to_proto};
use super::rules::{RecordFacts, TargetDef, applies, parse_condition};
use crate::domain::calendar::{BusinessCalendar, Exception, Holiday, Span};
use crate::domain::clock::{ClockComputation, ClockState, Observation, compute};
use crate::entity::{agreement, calendar, clock, observation};

pub const CREATE_AGREEMENT: &str = "CreateServiceLevelAgreement";
pub const AGREEMENT_ORDER: &[&str] = &["display_name", "create_time", "update_time"];
pub const AGREEMENT_FILTER: &[&str] = &["type", "active", "business_service", "counterparty", "display_name"];
pub const CLOCK_ORDER: &[&str] = &["due_time", "start_time", "update_time"];
pub const CLOCK_FILTER: &[&str] =
    &["record", "state", "metric", "business_service", "due_time", "start_time"];
/// Clocks the sweeper recomputes per pass.
const SWEEP_BATCH: u64 = 500;

#[derive(Clone)]
pub struct ServiceLevel {
    pub db: DatabaseConnection,
    pub feed: EventFeed,
}

/// What one sweep pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SweepPass {
    /// Clocks recomputed.
    pub clocks: usize,
    /// Alerts they raised (already counted in the metrics).
    pub alerts: Alerts,
}

/// SLA warnings and breaches raised by one transaction, counted once it commits.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Alerts {
    pub warnings: u64,
    pub breaches: u64,
}

impl Alerts {
    fn add(&mut self, other: Alerts) {
        self.warnings += other.warnings;
        self.breaches += other.breaches;
    }

    /// Adds these to `itsm.sla.warnings` and `itsm.sla.breaches`.
    pub fn record(self) {
        if self.warnings == 0 && self.breaches == 0 {
            return;
        }
        let counters = alert_counters();
        counters.0.add(self.warnings, &[]);
        counters.1.add(self.breaches, &[]);
    }
}

fn alert_counters() -> &'static (opentelemetry::metrics::Counter<u64>, opentelemetry::metrics::Counter<u64>) {
    static COUNTERS: std::sync::OnceLock<(
        opentelemetry::metrics::Counter<u64>,
        opentelemetry::metrics::Counter<u64>,
    )> = std::sync::OnceLock::new();
    COUNTERS.get_or_init(|| {
        let meter = itsm_runtime::telemetry::meter(crate::SERVICE);
        (
            meter.u64_counter("itsm.sla.warnings").with_description("SLA clock warnings raised").build(),
            meter.u64_counter("itsm.sla.breaches").with_description("SLA clock breaches raised").build(),
        )
    })
}

pub fn targets_of(m: &agreement::Model) -> Vec<TargetDef> {
    serde_json::from_str(&m.targets).unwrap_or_default()
}

/// The domain calendar of a stored one.
pub fn calendar_of(m: &calendar::Model) -> Result<BusinessCalendar, Error> {
    let time_zone = chrono_tz::Tz::from_str(&m.time_zone)
        .map_err(|_| Error::Internal(format!("calendar {} has an unknown time zone", m.id)))?;
    let days: Vec<Vec<Span>> = serde_json::from_str(&m.weekly).unwrap_or_default();
    let mut weekly: [Vec<Span>; 7] = Default::default();
    for (day, spans) in days.into_iter().take(7).enumerate() {
        weekly[day] = spans;
    }
    let holidays: Vec<Holiday> = serde_json::from_str(&m.holidays).unwrap_or_default();
    let exceptions: Vec<Exception> = serde_json::from_str(&m.exceptions).unwrap_or_default();
    Ok(BusinessCalendar { time_zone, weekly, holidays, exceptions })
}

fn micros_of(t: Option<DateTime<Utc>>) -> i64 {
    t.map_or(0, |t| t.timestamp_micros())
}

fn state_number(state: ClockState) -> i32 {
    (match state {
        ClockState::Pending => SlaClockState::Pending,
        ClockState::Running => SlaClockState::Running,
        ClockState::Paused => SlaClockState::Paused,
        ClockState::Met => SlaClockState::Met,
        ClockState::Breached => SlaClockState::Breached,
        ClockState::Cancelled => SlaClockState::Cancelled,
    }) as i32
}

fn percents(json: &str) -> BTreeSet<i32> {
    serde_json::from_str(json).unwrap_or_default()
}

fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "[]".into())
}

/// A record's state as its service's event reported it.
pub struct Observed<'a> {
    pub record: &'a str,
    pub business_service: &'a str,
    pub facts: RecordFacts,
    pub observation: Observation,
}

impl ServiceLevel {
    // ---- calendars ------------------------------------------------------------------------------

    pub async fn create_calendar(
        &self,
        ctx: &CallContext,
        mut m: calendar::Model,
    ) -> Result<calendar::Model, Error> {
        let txn = self.db.begin().await?;
        self.ensure_calendar_name_free(&txn, ctx, &m.display_name, None).await?;
        let now = now_micros();
        m.id = uuid::Uuid::now_v7().to_string();
        m.tenant_id.clone_from(&ctx.tenant);
        m.version = 1;
        m.create_time = now;
        m.update_time = now;
        m.creator.clone_from(&ctx.principal);
        m.updater.clone_from(&ctx.principal);
        m.clone().into_active_model().reset_all().insert(&txn).await?;
        txn.commit().await?;
        Ok(m)
    }

    async fn ensure_calendar_name_free(
        &self,
        db: &impl ConnectionTrait,
        ctx: &CallContext,
        name: &str,
        except: Option<&str>,
    ) -> Result<(), Error> {
        let found = calendar::Entity::find()
            .filter(calendar::Column::TenantId.eq(ctx.tenant.as_str()))
            .filter(calendar::Column::DisplayName.eq(name))
            .one(db)
            .await?;
        match found {
            Some(other) if Some(other.id.as_str()) != except => Err(Error::AlreadyExists(format!(
                "a calendar named {name:?} already exists: {CALENDAR_PREFIX}{}",
                other.id
            ))),
            _ => Ok(()),
        }
    }

    pub async fn find_calendar(
        db: &impl ConnectionTrait,
        tenant: &str,
        id: &str,
    ) -> Result<Option<calendar::Model>, Error> {
        Ok(calendar::Entity::find()
            .filter(calendar::Column::TenantId.eq(tenant))
            .filter(calendar::Column::Id.eq(id))
            .one(db)
            .await?)
    }

    pub async fn get_calendar(&self, ctx: &CallContext, id: &str) -> Result<calendar::Model, Error> {
        Self::find_calendar(&self.db, &ctx.tenant, id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("{CALENDAR_PREFIX}{id}")))
    }

    pub async fn list_calendars(&self, ctx: &CallContext) -> Result<Vec<calendar::Model>, Error> {
        Ok(calendar::Entity::find()
            .filter(calendar::Column::TenantId.eq(ctx.tenant.as_str()))
            .order_by_asc(calendar::Column::DisplayName)
            .all(&self.db)
            .await?)
    }

    /// Replaces a calendar's definition; the clocks counting on it are recomputed by the sweeper.
    pub async fn update_calendar(
        &self,
        ctx: &CallContext,
        id: &str,
        etag: &str,
        replacement: calendar::Model,
    ) -> Result<calendar::Model, Error> {
        let txn = self.db.begin().await?;
        let current = Self::find_calendar(&txn, &ctx.tenant, id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("{CALENDAR_PREFIX}{id}")))?;
        check_etag(etag, current.version, &format!("{CALENDAR_PREFIX}{id}"))?;
        self.ensure_calendar_name_free(&txn, ctx, &replacement.display_name, Some(id)).await?;
        let mut after = current.clone();
        after.display_name = replacement.display_name;
        after.time_zone = replacement.time_zone;
        after.weekly = replacement.weekly;
        after.holidays = replacement.holidays;
        after.exceptions = replacement.exceptions;
        after.version = current.version + 1;
        after.update_time = change_time(current.update_time);
        after.updater.clone_from(&ctx.principal);
        let mut active = after.clone().into_active_model().reset_all();
        active.id = sea_orm::ActiveValue::NotSet;
        active.tenant_id = sea_orm::ActiveValue::NotSet;
        let done = calendar::Entity::update_many()
            .set(active)
            .filter(calendar::Column::Id.eq(id))
            .filter(calendar::Column::Version.eq(current.version))
            .exec(&txn)
            .await?;
        if done.rows_affected != 1 {
            return Err(Error::Aborted(format!(
                "{CALENDAR_PREFIX}{id} was changed concurrently; read it again"
            )));
        }
        for a in self.agreements_using_calendar(&txn, &ctx.tenant, id).await? {
            mark_stale(&txn, &ctx.tenant, &a.id).await?;
        }
        txn.commit().await?;
        Ok(after)
    }

    async fn agreements_using_calendar(
        &self,
        db: &impl ConnectionTrait,
        tenant: &str,
        id: &str,
    ) -> Result<Vec<agreement::Model>, Error> {
        let all = agreement::Entity::find().filter(agreement::Column::TenantId.eq(tenant)).all(db).await?;
        Ok(all.into_iter().filter(|a| targets_of(a).iter().any(|t| t.calendar == id)).collect())
    }

    pub async fn delete_calendar(&self, ctx: &CallContext, id: &str) -> Result<(), Error> {
        let txn = self.db.begin().await?;
        Self::find_calendar(&txn, &ctx.tenant, id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("{CALENDAR_PREFIX}{id}")))?;
        let users = self.agreements_using_calendar(&txn, &ctx.tenant, id).await?;
        if !users.is_empty() {
            let names: Vec<String> = users.iter().map(|a| format!("{AGREEMENT_PREFIX}{}", a.id)).collect();
            return Err(Error::FailedPrecondition(format!(
                "{CALENDAR_PREFIX}{id} is used by {}; change their targets first",
                names.join(", ")
            )));
        }
        calendar::Entity::delete_many().filter(calendar::Column::Id.eq(id)).exec(&txn).await?;
        txn.commit().await?;
        Ok(())
    }

    // ---- agreements -----------------------------------------------------------------------------

    pub async fn find_agreement(
        db: &impl ConnectionTrait,
        tenant: &str,
        id: &str,
    ) -> Result<Option<agreement::Model>, Error> {
        Ok(agreement::Entity::find()
            .filter(agreement::Column::TenantId.eq(tenant))
            .filter(agreement::Column::Id.eq(id))
            .one(db)
            .await?)
    }

    pub async fn get_agreement(&self, ctx: &CallContext, id: &str) -> Result<agreement::Model, Error> {
        Self::find_agreement(&self.db, &ctx.tenant, id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("{AGREEMENT_PREFIX}{id}")))
    }

    async fn ensure_agreement_name_free(
        db: &impl ConnectionTrait,
        tenant: &str,
        name: &str,
        except: Option<&str>,
    ) -> Result<(), Error> {
        let found = agreement::Entity::find()
            .filter(agreement::Column::TenantId.eq(tenant))
            .filter(agreement::Column::DisplayName.eq(name))
            .one(db)
            .await?;
        match found {
            Some(other) if Some(other.id.as_str()) != except => Err(Error::AlreadyExists(format!(
                "an agreement named {name:?} already exists: {AGREEMENT_PREFIX}{}",
                other.id
            ))),
            _ => Ok(()),
        }
    }

    pub async fn create_agreement(
        &self,
        ctx: &CallContext,
        mut m: agreement::Model,
        request_id: &str,
        hash: &str,
    ) -> Result<agreement::Model, Error> {
        for _ in 0..3 {
            let txn = self.db.begin().await?;
            match idempotency::claim(&txn, &ctx.tenant, CREATE_AGREEMENT, request_id, hash).await? {
                Claim::Fresh => {}
                Claim::Done(name) => {
                    let found =
                        Self::find_agreement(&txn, &ctx.tenant, name.trim_start_matches(AGREEMENT_PREFIX))
                            .await?;
                    txn.commit().await?;
                    return found.ok_or(Error::NotFound(name));
                }
                Claim::LostRace => {
                    txn.rollback().await?;
                    continue;
                }
            }
            Self::ensure_agreement_name_free(&txn, &ctx.tenant, &m.display_name, None).await?;
            let now = now_micros();
            m.id = uuid::Uuid::now_v7().to_string();
            m.tenant_id.clone_from(&ctx.tenant);
            m.version = 1;
            m.create_time = now;
            m.update_time = now;
            m.creator.clone_from(&ctx.principal);
            m.updater.clone_from(&ctx.principal);
            m.clone().into_active_model().reset_all().insert(&txn).await?;
            idempotency::complete(
                &txn,
                &ctx.tenant,
                CREATE_AGREEMENT,
                request_id,
                &format!("{AGREEMENT_PREFIX}{}", m.id),
            )
            .await?;
            txn.commit().await?;
            return Ok(m);
        }
        Err(Error::Aborted("concurrent creates with the same request_id; retry".into()))
    }

    /// Applies `edit` to the agreement; its clocks are recomputed against the new definition.
    pub async fn update_agreement(
        &self,
        ctx: &CallContext,
        id: &str,
        etag: &str,
        edit: impl FnOnce(&mut agreement::Model),
    ) -> Result<agreement::Model, Error> {
        let txn = self.db.begin().await?;
        let current = Self::find_agreement(&txn, &ctx.tenant, id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("{AGREEMENT_PREFIX}{id}")))?;
        check_etag(etag, current.version, &format!("{AGREEMENT_PREFIX}{id}"))?;
        let mut after = current.clone();
        edit(&mut after);
        if after == current {
            txn.commit().await?;
            return Ok(current);
        }
        Self::ensure_agreement_name_free(&txn, &ctx.tenant, &after.display_name, Some(id)).await?;
        after.version = current.version + 1;
        after.update_time = change_time(current.update_time);
        after.updater.clone_from(&ctx.principal);
        let mut active = after.clone().into_active_model().reset_all();
        active.id = sea_orm::ActiveValue::NotSet;
        active.tenant_id = sea_orm::ActiveValue::NotSet;
        let done = agreement::Entity::update_many()
            .set(active)
            .filter(agreement::Column::Id.eq(id))
            .filter(agreement::Column::Version.eq(current.version))
            .exec(&txn)
            .await?;
        if done.rows_affected != 1 {
            return Err(Error::Aborted(format!(
                "{AGREEMENT_PREFIX}{id} was changed concurrently; read it again"
            )));
        }
        mark_stale(&txn, &ctx.tenant, id).await?;
        txn.commit().await?;
        self.feed.notify_committed();
        Ok(after)
    }

    /// Deletes an agreement; its clocks are cancelled (by the sweeper, which finds it gone).
    pub async fn delete_agreement(&self, ctx: &CallContext, id: &str, etag: &str) -> Result<(), Error> {
        let txn = self.db.begin().await?;
        let current = Self::find_agreement(&txn, &ctx.tenant, id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("{AGREEMENT_PREFIX}{id}")))?;
        check_etag(etag, current.version, &format!("{AGREEMENT_PREFIX}{id}"))?;
        agreement::Entity::delete_many().filter(agreement::Column::Id.eq(id)).exec(&txn).await?;
        mark_stale(&txn, &ctx.tenant, id).await?;
        txn.commit().await?;
        Ok(())
    }

    pub async fn list_agreements(
        &self,
        ctx: &CallContext,
        filter: Option<&Filter>,
        order: (&str, bool),
        after: Option<Vec<serde_json::Value>>,
        limit: u64,
    ) -> Result<Page<agreement::Model>, Error> {
        let (field, descending) = order;
        let column = match field {
            "display_name" => agreement::Column::DisplayName,
            "update_time" => agreement::Column::UpdateTime,
            _ => agreement::Column::CreateTime,
        };
        let mut query = agreement::Entity::find().filter(agreement::Column::TenantId.eq(ctx.tenant.as_str()));
        if let Some(filter) = filter {
            query =
                query.filter(filters::condition(filter, &ctx.tenant, &agreement_field, AGREEMENT_FILTER)?);
        }
        keyset::page(&self.db, query, column, agreement::Column::Id, descending, after, limit, |m| {
            let value = match field {
                "display_name" => serde_json::json!(m.display_name),
                "update_time" => serde_json::json!(m.update_time),
                _ => serde_json::json!(m.create_time),
            };
            (value, m.id.clone())
        })
        .await
    }

    // ---- clocks ---------------------------------------------------------------------------------

    pub async fn get_clock(&self, ctx: &CallContext, id: &str) -> Result<clock::Model, Error> {
        clock::Entity::find()
            .filter(clock::Column::TenantId.eq(ctx.tenant.as_str()))
            .filter(clock::Column::Id.eq(id))
            .one(&self.db)
            .await?
            .ok_or_else(|| Error::NotFound(format!("{CLOCK_PREFIX}{id}")))
    }

    pub async fn list_clocks(
        &self,
        ctx: &CallContext,
        filter: Option<&Filter>,
        order: (&str, bool),
        after: Option<Vec<serde_json::Value>>,
        limit: u64,
    ) -> Result<Page<clock::Model>, Error> {
        let (field, descending) = order;
        let column = match field {
            "due_time" => clock::Column::DueTime,
            "update_time" => clock::Column::UpdateTime,
            _ => clock::Column::StartTime,
        };
        let mut query = clock::Entity::find().filter(clock::Column::TenantId.eq(ctx.tenant.as_str()));
        if let Some(filter) = filter {
            query = query.filter(filters::condition(filter, &ctx.tenant, &clock_field, CLOCK_FILTER)?);
        }
        keyset::page(&self.db, query, column, clock::Column::Id, descending, after, limit, |m| {
            let value = match field {
                "due_time" => serde_json::json!(m.due_time),
                "update_time" => serde_json::json!(m.update_time),
                _ => serde_json::json!(m.start_time),
            };
            (value, m.id.clone())
        })
        .await
    }

    /// The clock's computation as of now, with the calendar it counts on (ExplainSlaClock).
    pub async fn explain(
        &self,
        ctx: &CallContext,
        id: &str,
    ) -> Result<(clock::Model, ClockComputation, Option<calendar::Model>), Error> {
        let row = self.get_clock(ctx, id).await?;
        let (computation, calendar) = computation_for(&self.db, &row, Utc::now()).await?;
        Ok((row, computation, calendar))
    }

    /// Clocks that stopped in [from, to) as MET or BREACHED, and breached clocks still running
    /// whose breach fell in it; optionally of one business service and one customer.
    pub async fn measured_clocks(
        &self,
        ctx: &CallContext,
        business_service: &str,
        customer: &str,
        from: i64,
        to: i64,
    ) -> Result<Vec<clock::Model>, Error> {
        let stopped_in = sea_orm::Condition::all()
            .add(clock::Column::StopTime.gte(from))
            .add(clock::Column::StopTime.lt(to))
            .add(clock::Column::State.is_in([SlaClockState::Met as i32, SlaClockState::Breached as i32]));
        let breached_running = sea_orm::Condition::all()
            .add(clock::Column::StopTime.eq(0))
            .add(clock::Column::State.eq(SlaClockState::Breached as i32))
            .add(clock::Column::BreachTime.gte(from))
            .add(clock::Column::BreachTime.lt(to));
        let mut query = clock::Entity::find()
            .filter(clock::Column::TenantId.eq(ctx.tenant.as_str()))
            .filter(sea_orm::Condition::any().add(stopped_in).add(breached_running));
        if !business_service.is_empty() {
            query = query.filter(clock::Column::BusinessService.eq(business_service));
        }
        if !customer.is_empty() {
            query = query.filter(clock::Column::Customer.eq(customer));
        }
        Ok(query.all(&self.db).await?)
    }

    // ---- the engine -----------------------------------------------------------------------------

    /// Records a record's observed state (once per event), starts the clocks of the targets that
    /// apply to it and recomputes all its clocks, in the caller's transaction.
    pub async fn observe(
        &self,
        txn: &impl ConnectionTrait,
        tenant: &str,
        observed: Observed<'_>,
        actor: &str,
    ) -> Result<Alerts, Error> {
        let o = &observed.observation;
        let seen = observation::Entity::find()
            .filter(observation::Column::TenantId.eq(tenant))
            .filter(observation::Column::EventId.eq(o.event_id.as_str()))
            .one(txn)
            .await?;
        if seen.is_some() {
            return Ok(Alerts::default());
        }
        observation::Model {
            tenant_id: tenant.to_string(),
            event_id: o.event_id.clone(),
            record: observed.record.to_string(),
            sequence: o.sequence,
            observed_time: o.time.timestamp_micros(),
            state: o.state.clone(),
            priority: o.priority,
        }
        .into_active_model()
        .reset_all()
        .insert(txn)
        .await?;

        if !observed.business_service.is_empty() {
            let agreements = agreement::Entity::find()
                .filter(agreement::Column::TenantId.eq(tenant))
                .filter(agreement::Column::BusinessService.eq(observed.business_service))
                .filter(agreement::Column::Active.eq(true))
                .all(txn)
                .await?;
            for a in &agreements {
                for (index, target) in targets_of(a).iter().enumerate() {
                    let condition = parse_condition(&target.condition, "condition").ok().flatten();
                    if target.is_timed() && applies(condition.as_ref(), &observed.facts) {
                        ensure_clock(txn, tenant, a, index as i32, target.metric, &observed).await?;
                    }
                }
            }
        }
        let clocks = clock::Entity::find()
            .filter(clock::Column::TenantId.eq(tenant))
            .filter(clock::Column::Record.eq(observed.record))
            .all(txn)
            .await?;
        let now = Utc::now();
        let mut alerts = Alerts::default();
        for row in clocks {
            alerts.add(recompute(txn, row, now, actor).await?);
        }
        Ok(alerts)
    }

    /// One pass of the sweeper: clocks whose warning or breach fell due, and clocks whose
    /// definition changed. Returns how many were recomputed and the alerts they raised.
    pub async fn sweep(&self, now: DateTime<Utc>) -> Result<SweepPass, Error> {
        let due = clock::Entity::find()
            .filter(
                sea_orm::Condition::any().add(clock::Column::Stale.eq(1)).add(
                    sea_orm::Condition::all()
                        .add(clock::Column::NextAlertTime.gt(0))
                        .add(clock::Column::NextAlertTime.lte(now.timestamp_micros())),
                ),
            )
            .limit_rows(SWEEP_BATCH)
            .all(&self.db)
            .await?;
        let clocks = due.len();
        if clocks == 0 {
            return Ok(SweepPass::default());
        }
        // A pass that has work is one trace (an idle pass is not traced at all).
        let span = tracing::info_span!("sweep", otel.name = "sweep SLA clocks", itsm.clocks = clocks);
        itsm_runtime::telemetry::set_root(&span, &std::sync::Arc::from(crate::SERVICE));
        let alerts = self.sweep_clocks(due, now).instrument(span).await?;
        self.feed.notify_committed();
        Ok(SweepPass { clocks, alerts })
    }

    async fn sweep_clocks(&self, due: Vec<clock::Model>, now: DateTime<Utc>) -> Result<Alerts, Error> {
        let mut total = Alerts::default();
        for row in due {
            let txn = self.db.begin().await?;
            // Read again inside the transaction: a consumer may have recomputed it meanwhile.
            let fresh = clock::Entity::find_by_id(row.id.clone()).one(&txn).await?;
            let alerts = match fresh {
                Some(fresh) => recompute(&txn, fresh, now, "sla").await?,
                None => Alerts::default(),
            };
            txn.commit().await?;
            alerts.record();
            total.add(alerts);
        }
        Ok(total)
    }
}

trait LimitRows {
    fn limit_rows(self, n: u64) -> Self;
}

impl<E: EntityTrait> LimitRows for sea_orm::Select<E> {
    fn limit_rows(self, n: u64) -> Self {
        sea_orm::QuerySelect::limit(self, n)
    }
}

async fn mark_stale(txn: &impl ConnectionTrait, tenant: &str, agreement_id: &str) -> Result<(), Error> {
    clock::Entity::update_many()
        .col_expr(clock::Column::Stale, Expr::value(1))
        .filter(clock::Column::TenantId.eq(tenant))
        .filter(clock::Column::AgreementId.eq(agreement_id))
        .exec(txn)
        .await?;
    Ok(())
}

async fn ensure_clock(
    txn: &impl ConnectionTrait,
    tenant: &str,
    a: &agreement::Model,
    index: i32,
    metric: i32,
    observed: &Observed<'_>,
) -> Result<(), Error> {
    let record = observed.record;
    let exists = clock::Entity::find()
        .filter(clock::Column::TenantId.eq(tenant))
        .filter(clock::Column::Record.eq(record))
        .filter(clock::Column::AgreementId.eq(a.id.as_str()))
        .filter(clock::Column::TargetIndex.eq(index))
        .one(txn)
        .await?
        .is_some();
    if exists {
        return Ok(());
    }
    let now = now_micros();
    clock::Model {
        id: uuid::Uuid::now_v7().to_string(),
        tenant_id: tenant.to_string(),
        agreement_id: a.id.clone(),
        target_index: index,
        metric,
        record: record.to_string(),
        business_service: a.business_service.clone(),
        state: SlaClockState::Pending as i32,
        priority: 0,
        start_time: 0,
        due_time: 0,
        stop_time: 0,
        breach_time: 0,
        elapsed_ms: 0,
        target_ms: -1,
        warnings: "[]".into(),
        warned: "[]".into(),
        breach_emitted: 0,
        next_alert_time: 0,
        stale: 0,
        version: 0,
        create_time: now,
        update_time: now,
        customer: observed.facts.customer.clone(),
    }
    .into_active_model()
    .reset_all()
    .insert(txn)
    .await?;
    Ok(())
}

/// The clock's computation as of `now` from its agreement, calendar and record observations; a
/// clock whose agreement or target is gone is cancelled.
async fn computation_for(
    db: &impl ConnectionTrait,
    row: &clock::Model,
    now: DateTime<Utc>,
) -> Result<(ClockComputation, Option<calendar::Model>), Error> {
    let agreement = ServiceLevel::find_agreement(db, &row.tenant_id, &row.agreement_id).await?;
    let target = agreement.as_ref().and_then(|a| targets_of(a).into_iter().nth(row.target_index as usize));
    let Some(target) = target else {
        return Ok((cancelled("the agreement or its target was removed"), None));
    };
    let Some(calendar_row) = ServiceLevel::find_calendar(db, &row.tenant_id, &target.calendar).await? else {
        return Ok((cancelled("the target's calendar was removed"), None));
    };
    let calendar = calendar_of(&calendar_row)?;
    let rows = observation::Entity::find()
        .filter(observation::Column::TenantId.eq(row.tenant_id.as_str()))
        .filter(observation::Column::Record.eq(row.record.as_str()))
        .all(db)
        .await?;
    let observations: Vec<Observation> = rows
        .into_iter()
        .filter_map(|o| {
            Some(Observation {
                time: DateTime::from_timestamp_micros(o.observed_time)?,
                sequence: o.sequence,
                state: o.state,
                priority: o.priority,
                event_id: o.event_id,
            })
        })
        .collect();
    Ok((compute(&target.clock_rules(), &calendar, &observations, now), Some(calendar_row)))
}

fn cancelled(why: &str) -> ClockComputation {
    ClockComputation {
        state: ClockState::Cancelled,
        start: None,
        stop: None,
        segments: Vec::new(),
        elapsed: chrono::TimeDelta::zero(),
        target: None,
        priority: 0,
        due: None,
        breach_time: None,
        warnings: Vec::new(),
        next_alert: None,
        explanation: vec![format!("cancelled: {why}")],
    }
}

/// Recomputes one clock, stores it and emits what changed, in the caller's transaction.
async fn recompute(
    txn: &impl ConnectionTrait,
    row: clock::Model,
    now: DateTime<Utc>,
    actor: &str,
) -> Result<Alerts, Error> {
    let (c, _) = computation_for(txn, &row, now).await?;
    let mut after = row.clone();
    // A clock cancelled because its agreement went keeps what it had counted.
    if c.state == ClockState::Cancelled && c.start.is_none() && row.start_time > 0 {
        after.state = state_number(ClockState::Cancelled);
        after.due_time = 0;
        after.next_alert_time = 0;
    } else {
        after.state = state_number(c.state);
        after.priority = c.priority;
        after.start_time = micros_of(c.start);
        after.due_time = micros_of(c.due);
        after.stop_time = micros_of(c.stop);
        after.breach_time = micros_of(c.breach_time);
        after.elapsed_ms = c.elapsed.num_milliseconds();
        after.target_ms = c.target.map_or(-1, |t| t.num_milliseconds());
        after.warnings = to_json(&c.warnings.iter().map(|(p, _)| i32::from(*p)).collect::<Vec<_>>());
        after.next_alert_time = micros_of(c.next_alert);
    }
    after.stale = 0;

    let before_state = SlaClockState::try_from(row.state).unwrap_or(SlaClockState::Pending);
    let after_state = SlaClockState::try_from(after.state).unwrap_or(SlaClockState::Pending);
    let mut actions: Vec<(&str, i32)> = Vec::new();
    let started = |s: SlaClockState| !matches!(s, SlaClockState::Pending | SlaClockState::Unspecified);
    if !started(before_state) && started(after_state) && after.start_time > 0 {
        actions.push(("start", 0));
    }
    match (before_state, after_state) {
        (SlaClockState::Running, SlaClockState::Paused) => actions.push(("pause", 0)),
        (SlaClockState::Paused, SlaClockState::Running) => actions.push(("resume", 0)),
        (SlaClockState::Met | SlaClockState::Breached, SlaClockState::Running) if row.stop_time > 0 => {
            actions.push(("resume", 0));
        }
        _ => {}
    }
    if after.stop_time > 0 && row.stop_time == 0 {
        actions.push(("stop", 0));
    }
    if after_state == SlaClockState::Cancelled && before_state != SlaClockState::Cancelled {
        actions.push(("cancel", 0));
    }
    let mut warned = percents(&row.warned);
    for percent in percents(&after.warnings) {
        if warned.insert(percent) {
            actions.push(("warning", percent));
        }
    }
    after.warned = to_json(&warned);
    if after.breach_time > 0 && row.breach_emitted == 0 {
        actions.push(("breach", 0));
        after.breach_emitted = 1;
    }
    let moved =
        after.due_time != row.due_time || after.target_ms != row.target_ms || after.state != row.state;
    if actions.is_empty() && moved && started(after_state) {
        actions.push(("recompute", 0));
    }
    let unchanged =
        clock::Model { version: row.version, update_time: row.update_time, ..after.clone() } == row;
    if unchanged {
        return Ok(Alerts::default());
    }
    after.version = row.version + 1;
    after.update_time = change_time(row.update_time);
    let mut active = after.clone().into_active_model().reset_all();
    active.id = sea_orm::ActiveValue::NotSet;
    let done = clock::Entity::update_many()
        .set(active)
        .filter(clock::Column::Id.eq(row.id.as_str()))
        .filter(clock::Column::Version.eq(row.version))
        .exec(txn)
        .await?;
    if done.rows_affected != 1 {
        return Err(Error::Aborted(format!("{CLOCK_PREFIX}{} was recomputed concurrently", row.id)));
    }
    let proto = clock_to_proto(&after);
    let mut alerts = Alerts::default();
    for (action, warning_percent) in actions {
        match action {
            "warning" => alerts.warnings += 1,
            "breach" => alerts.breaches += 1,
            _ => {}
        }
        let payload =
            SlaClockChanged { action: action.to_string(), clock: Some(proto.clone()), warning_percent };
        outbox::append(txn, NewEvent::of(&payload, &proto.name, &after.tenant_id, actor)).await?;
    }
    Ok(alerts)
}

const CLOCK_STATES: &[(i32, &str)] =
    &[(1, "RUNNING"), (2, "PAUSED"), (3, "MET"), (4, "BREACHED"), (5, "CANCELLED"), (6, "PENDING")];
const METRICS: &[(i32, &str)] = &[(1, "RESPONSE_TIME"), (2, "RESOLUTION_TIME"), (3, "AVAILABILITY")];
const AGREEMENT_TYPES: &[(i32, &str)] = &[(1, "SLA"), (2, "OLA"), (3, "UC")];

fn clock_field(member: &str) -> Option<Field> {
    use clock::Column as C;
    let col = |c: C| -> SimpleExpr { Expr::col((clock::Entity, c)) };
    Some(match member {
        "record" => Field::Text(col(C::Record)),
        "state" => Field::Enum { column: col(C::State), values: CLOCK_STATES, prefix: "SLA_CLOCK_STATE_" },
        "metric" => Field::Enum { column: col(C::Metric), values: METRICS, prefix: "TARGET_METRIC_" },
        "business_service" => Field::Text(col(C::BusinessService)),
        "due_time" => Field::Time(col(C::DueTime)),
        "start_time" => Field::Time(col(C::StartTime)),
        _ => return None,
    })
}

fn agreement_field(member: &str) -> Option<Field> {
    use agreement::Column as C;
    let col = |c: C| -> SimpleExpr { Expr::col((agreement::Entity, c)) };
    Some(match member {
        "type" => {
            Field::Enum { column: col(C::AgreementType), values: AGREEMENT_TYPES, prefix: "AGREEMENT_TYPE_" }
        }
        "active" => Field::Bool(col(C::Active)),
        "business_service" => Field::Text(col(C::BusinessService)),
        "counterparty" => Field::Text(col(C::Counterparty)),
        "display_name" => Field::Text(col(C::DisplayName)),
        _ => return None,
    })
}
