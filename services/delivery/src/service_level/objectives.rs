//! SLOs imported from OpenSLO, their SLI samples, error budget and multi-window burn-rate
//! alerts. When any of an SLO's alert windows starts firing, an alert episode begins and opens
//! one incident in the incident service (at the severity of the fastest window firing); the
//! episode ends when no window fires. The episode, with the request id its incident is created
//! under, is stored before the call, so a retry after a failure creates the same incident, never
//! a second one.

use chrono::{DateTime, TimeDelta, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, IntoActiveModel,
    QueryFilter, QueryOrder, TransactionTrait,
};
use serde::{Deserialize, Serialize};
use tonic::transport::Channel;

use itsm_proto::common::AuditInfo;
use itsm_proto::delivery::{
    BurnRateAlert, ServiceLevelObjective, SliSample as SampleProto, SloBudgetHistory, SloBudgetPoint,
};
use itsm_proto::incident::incident_service_client::IncidentServiceClient;
use itsm_proto::incident::{CreateIncidentRequest, Incident};
use itsm_runtime::db::{micros, now_micros, timestamp};
use itsm_runtime::error::Violations;
use itsm_runtime::{CallContext, Error};

use super::convert::duration_of;
use crate::domain::error_budget::{self, HistoryQuery};
use crate::domain::openslo::{
    self, OpenSloObject, RefOrInline, SliSample, Slo, budget_remaining, burn_rate, standard_alert_windows,
};
use crate::entity::{objective, sample};

pub const PREFIX: &str = "serviceLevelObjectives/";
const MAX_SAMPLES: usize = 10_000;
const CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// One alert window as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Window {
    factor: f64,
    long_seconds: i64,
    short_seconds: i64,
}

/// The SLO's alert episode.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Episode {
    firing: bool,
    /// Idempotency key of the episode's incident.
    request_id: String,
    /// The incident it opened ("" until the incident service answered).
    incident: String,
}

/// The SLO's alert windows: its own burn-rate conditions (long window = lookback, short = a
/// twelfth, as the SRE workbook pairs them), else the workbook's standard three.
fn windows_of(
    slo: &Slo,
    conditions: &[openslo::AlertCondition],
    policies: &[openslo::AlertPolicy],
) -> Vec<Window> {
    let mut found = Vec::new();
    let mut add = |c: &openslo::AlertCondition| {
        let long = c.condition.lookback_window.num_seconds().max(60);
        found.push(Window {
            factor: c.condition.threshold,
            long_seconds: long,
            short_seconds: (long / 12).max(60),
        });
    };
    let by_name = |name: &str| conditions.iter().find(|c| c.metadata.name == name);
    let policy_by_name = |name: &str| policies.iter().find(|p| p.metadata.name == name);
    for entry in &slo.alert_policies {
        let policy = match entry {
            RefOrInline::Inline(p) => Some(p.as_ref()),
            RefOrInline::Ref(name) => policy_by_name(name),
        };
        for condition in policy.map(|p| p.conditions.as_slice()).unwrap_or_default() {
            match condition {
                RefOrInline::Inline(c) => add(c),
                RefOrInline::Ref(name) => {
                    if let Some(c) = by_name(name) {
                        add(c);
                    }
                }
            }
        }
    }
    if found.is_empty() {
        found = standard_alert_windows(slo.time_window.duration)
            .into_iter()
            .map(|w| Window {
                factor: w.factor,
                long_seconds: w.long.num_seconds(),
                short_seconds: w.short.num_seconds(),
            })
            .collect();
    }
    found
}

pub fn name_of(resource: &str, field: &str) -> Result<String, Error> {
    resource
        .strip_prefix(PREFIX)
        .filter(|n| !n.is_empty() && n.len() <= 63)
        .map(str::to_string)
        .ok_or_else(|| Error::invalid(field, "must be `serviceLevelObjectives/{name}`"))
}

/// SLOs, samples and alerting.
#[derive(Clone)]
pub struct Objectives {
    pub db: DatabaseConnection,
    pub incidents: Option<Channel>,
    pub internal_token: String,
}

impl Objectives {
    /// Parses and checks every document, then creates or replaces each SLO (one transaction).
    pub async fn import(
        &self,
        ctx: &CallContext,
        yaml: &str,
        business_service: &str,
    ) -> Result<Vec<objective::Model>, Error> {
        let objects = openslo::parse_documents(yaml).map_err(openslo_violations)?;
        let dangling = openslo::check_references(&objects);
        if !dangling.is_empty() {
            return Err(openslo_violations(dangling));
        }
        let conditions: Vec<openslo::AlertCondition> = objects
            .iter()
            .filter_map(|o| if let OpenSloObject::AlertCondition(c) = o { Some(c.clone()) } else { None })
            .collect();
        let policies: Vec<openslo::AlertPolicy> = objects
            .iter()
            .filter_map(|o| if let OpenSloObject::AlertPolicy(p) = o { Some(p.clone()) } else { None })
            .collect();
        let slos: Vec<&Slo> = objects
            .iter()
            .filter_map(|o| if let OpenSloObject::Slo(s) = o { Some(s) } else { None })
            .collect();
        if slos.is_empty() {
            return Err(Error::invalid("yaml", "holds no SLO (kind: SLO)"));
        }
        let txn = self.db.begin().await?;
        let now = now_micros();
        let mut stored = Vec::new();
        for slo in slos {
            let Some(target) = slo.objectives.first().map(|o| o.target) else { continue };
            let windows = windows_of(slo, &conditions, &policies);
            let existing = find(&txn, &ctx.tenant, &slo.metadata.name).await?;
            let mut m = objective::Model {
                id: existing.as_ref().map_or_else(|| uuid::Uuid::now_v7().to_string(), |e| e.id.clone()),
                tenant_id: ctx.tenant.clone(),
                slo_name: slo.metadata.name.clone(),
                display_name: slo.metadata.display_name.clone().unwrap_or_else(|| slo.metadata.name.clone()),
                service: slo.service.clone(),
                business_service: business_service.to_string(),
                target,
                window_seconds: slo.time_window.duration.num_seconds(),
                budgeting_method: format!("{:?}", slo.budgeting_method),
                alert_windows: serde_json::to_string(&windows).unwrap_or_else(|_| "[]".into()),
                episodes: serde_json::to_string(&Episode::default()).unwrap_or_else(|_| "{}".into()),
                create_time: existing.as_ref().map_or(now, |e| e.create_time),
                update_time: now,
                creator: existing.as_ref().map_or_else(|| ctx.principal.clone(), |e| e.creator.clone()),
                updater: ctx.principal.clone(),
            };
            if let Some(existing) = existing {
                // Replacing keeps the alert state of windows that did not change.
                let old_windows: Vec<Window> =
                    serde_json::from_str(&existing.alert_windows).unwrap_or_default();
                if old_windows == windows {
                    m.episodes = existing.episodes.clone();
                }
                objective::Entity::delete_by_id(existing.id.clone()).exec(&txn).await?;
            }
            m.clone().into_active_model().reset_all().insert(&txn).await?;
            stored.push(m);
        }
        txn.commit().await?;
        Ok(stored)
    }

    pub async fn get(&self, ctx: &CallContext, name: &str) -> Result<objective::Model, Error> {
        find(&self.db, &ctx.tenant, name).await?.ok_or_else(|| Error::NotFound(format!("{PREFIX}{name}")))
    }

    pub async fn list(
        &self,
        ctx: &CallContext,
        business_service: &str,
    ) -> Result<Vec<objective::Model>, Error> {
        let mut query = objective::Entity::find().filter(objective::Column::TenantId.eq(ctx.tenant.as_str()));
        if !business_service.is_empty() {
            query = query.filter(objective::Column::BusinessService.eq(business_service));
        }
        Ok(query.order_by_asc(objective::Column::SloName).all(&self.db).await?)
    }

    /// The SLO with its budget and alerts as of its newest sample.
    pub async fn view(&self, m: &objective::Model) -> Result<ServiceLevelObjective, Error> {
        let windows: Vec<Window> = serde_json::from_str(&m.alert_windows).unwrap_or_default();
        let episode: Episode = serde_json::from_str(&m.episodes).unwrap_or_default();
        let longest = windows.iter().map(|w| w.long_seconds).max().unwrap_or(0).max(m.window_seconds);
        let (samples, now) = self.samples(m, longest).await?;
        let window = TimeDelta::seconds(m.window_seconds);
        Ok(ServiceLevelObjective {
            name: format!("{PREFIX}{}", m.slo_name),
            display_name: m.display_name.clone(),
            service: m.service.clone(),
            business_service: m.business_service.clone(),
            target: m.target,
            time_window: Some(duration_of(window)),
            budgeting_method: m.budgeting_method.clone(),
            error_budget_remaining: now.and_then(|now| budget_remaining(&samples, m.target, now, window)),
            alerts: windows
                .iter()
                .map(|w| {
                    let rate = |d: i64| {
                        now.and_then(|now| burn_rate(&samples, m.target, now, TimeDelta::seconds(d)))
                    };
                    let (long, short) =
                        (rate(w.long_seconds).unwrap_or(0.0), rate(w.short_seconds).unwrap_or(0.0));
                    let firing = long > w.factor && short > w.factor;
                    BurnRateAlert {
                        factor: w.factor,
                        long_window: Some(duration_of(TimeDelta::seconds(w.long_seconds))),
                        short_window: Some(duration_of(TimeDelta::seconds(w.short_seconds))),
                        long_burn_rate: long,
                        short_burn_rate: short,
                        firing,
                        incident: if firing { episode.incident.clone() } else { String::new() },
                    }
                })
                .collect(),
            audit: Some(AuditInfo {
                create_time: Some(timestamp(m.create_time)),
                update_time: Some(timestamp(m.update_time)),
                creator: m.creator.clone(),
                updater: m.updater.clone(),
            }),
        })
    }

    /// The samples in the `seconds` before the newest one, and the newest one's time.
    async fn samples(
        &self,
        m: &objective::Model,
        seconds: i64,
    ) -> Result<(Vec<SliSample>, Option<DateTime<Utc>>), Error> {
        let newest = sample::Entity::find()
            .filter(sample::Column::SloId.eq(m.id.as_str()))
            .order_by_desc(sample::Column::EndTime)
            .one(&self.db)
            .await?;
        let Some(newest) = newest.and_then(|n| DateTime::from_timestamp_micros(n.end_time)) else {
            return Ok((Vec::new(), None));
        };
        let from = newest.checked_sub_signed(TimeDelta::seconds(seconds));
        Ok((self.samples_between(m, from, newest).await?, Some(newest)))
    }

    /// The SLO's error budget at every step of `query`'s range (its defaults resolved by
    /// [`HistoryQuery::resolve`]: the last point of the default range is the budget [`view`]
    /// reports). Reads the ends of the oldest and newest samples when a default needs them, then
    /// the samples the range, its first window and its first step cover in one query; never a
    /// query per point. INVALID_ARGUMENT for a range the SLO's window or samples make invalid.
    ///
    /// [`view`]: Self::view
    pub async fn budget_history(
        &self,
        m: &objective::Model,
        query: &HistoryQuery,
    ) -> Result<SloBudgetHistory, Error> {
        let window = TimeDelta::seconds(m.window_seconds);
        let bounds =
            if query.start.is_none() || query.end.is_none() { self.sample_bounds(m).await? } else { None };
        let range = query.resolve(window, bounds, Utc::now()).map_err(Error::InvalidArgument)?;
        let reach = window.max(range.step);
        let samples = self.samples_between(m, range.start.checked_sub_signed(reach), range.end).await?;
        let points = error_budget::history(&samples, m.target, window, &range);
        Ok(SloBudgetHistory {
            service_level_objective: format!("{PREFIX}{}", m.slo_name),
            target: m.target,
            time_window: Some(duration_of(window)),
            start_time: Some(timestamp(range.start.timestamp_micros())),
            end_time: Some(timestamp(range.end.timestamp_micros())),
            step: Some(prost_types::Duration {
                seconds: range.step.num_seconds(),
                nanos: range.step.subsec_nanos(),
            }),
            points: points
                .iter()
                .map(|p| SloBudgetPoint {
                    time: Some(timestamp(p.time.timestamp_micros())),
                    error_budget_remaining: p.remaining,
                    error_budget_consumed: p.consumed,
                    burn_rate: p.burn_rate,
                })
                .collect(),
        })
    }

    /// The ends of the SLO's oldest and newest samples; `None` without samples. Each is the first
    /// row of the (slo_id, end_time) key in one direction.
    async fn sample_bounds(
        &self,
        m: &objective::Model,
    ) -> Result<Option<(DateTime<Utc>, DateTime<Utc>)>, Error> {
        let oldest = sample::Entity::find()
            .filter(sample::Column::SloId.eq(m.id.as_str()))
            .order_by_asc(sample::Column::EndTime)
            .one(&self.db)
            .await?;
        let newest = sample::Entity::find()
            .filter(sample::Column::SloId.eq(m.id.as_str()))
            .order_by_desc(sample::Column::EndTime)
            .one(&self.db)
            .await?;
        let end_of =
            |row: Option<sample::Model>| row.and_then(|r| DateTime::from_timestamp_micros(r.end_time));
        Ok(end_of(oldest).zip(end_of(newest)))
    }

    /// The SLO's samples whose end lies in (from, to], oldest first (`from` `None`: every sample
    /// up to `to`): one range read on the (slo_id, end_time) key.
    async fn samples_between(
        &self,
        m: &objective::Model,
        from: Option<DateTime<Utc>>,
        to: DateTime<Utc>,
    ) -> Result<Vec<SliSample>, Error> {
        let mut query = sample::Entity::find()
            .filter(sample::Column::SloId.eq(m.id.as_str()))
            .filter(sample::Column::EndTime.lte(to.timestamp_micros()));
        if let Some(from) = from {
            query = query.filter(sample::Column::EndTime.gt(from.timestamp_micros()));
        }
        let rows = query.order_by_asc(sample::Column::EndTime).all(&self.db).await?;
        Ok(rows.iter().filter_map(sli_sample).collect())
    }

    /// Stores one message's samples (all checked first) and evaluates the alerts; returns how
    /// many were stored and the incidents opened.
    pub async fn record(
        &self,
        ctx: &CallContext,
        name: &str,
        samples: &[SampleProto],
    ) -> Result<(i64, Vec<String>), Error> {
        let mut v = Violations::new();
        if samples.len() > MAX_SAMPLES {
            v.add("samples", format!("at most {MAX_SAMPLES} per message"));
        }
        for (i, s) in samples.iter().enumerate() {
            if s.end_time.is_none() {
                v.add(format!("samples[{i}].end_time"), "is required");
            }
            if s.good > s.total {
                v.add(
                    format!("samples[{i}].good"),
                    format!("{} good of {} total: good must not exceed total", s.good, s.total),
                );
            }
            if i64::try_from(s.total).is_err() {
                v.add(format!("samples[{i}].total"), "is too large");
            }
        }
        v.into_result()?;
        let m = self.get(ctx, name).await?;
        let txn = self.db.begin().await?;
        for s in samples {
            let end = s.end_time.as_ref().map_or(0, micros);
            sample::Entity::delete_many()
                .filter(sample::Column::SloId.eq(m.id.as_str()))
                .filter(sample::Column::EndTime.eq(end))
                .exec(&txn)
                .await?;
            sample::Model {
                slo_id: m.id.clone(),
                end_time: end,
                good: i64::try_from(s.good).unwrap_or(i64::MAX),
                total: i64::try_from(s.total).unwrap_or(i64::MAX),
            }
            .into_active_model()
            .reset_all()
            .insert(&txn)
            .await?;
        }
        txn.commit().await?;
        let incidents = self.evaluate(ctx, &m.slo_name).await?;
        Ok((samples.len() as i64, incidents))
    }

    /// Re-reads the SLO, evaluates its windows as of its newest sample, starts or ends the alert
    /// episode, and opens the episode's incident if it has none yet.
    async fn evaluate(&self, ctx: &CallContext, name: &str) -> Result<Vec<String>, Error> {
        // Burn rates are read before the transaction: SQLite has one connection for both.
        let Some(m) = find(&self.db, &ctx.tenant, name).await? else { return Ok(Vec::new()) };
        let view = self.view(&m).await?;
        let txn = self.db.begin().await?;
        let Some(m) = find(&txn, &ctx.tenant, name).await? else { return Ok(Vec::new()) };
        let mut episode: Episode = serde_json::from_str(&m.episodes).unwrap_or_default();
        let windows: Vec<Window> = serde_json::from_str(&m.alert_windows).unwrap_or_default();
        // The fastest burn firing decides the incident's severity.
        let fastest = windows
            .iter()
            .zip(&view.alerts)
            .filter(|(_, alert)| alert.firing)
            .max_by(|(a, _), (b, _)| a.factor.total_cmp(&b.factor))
            .map(|(w, alert)| (w.clone(), alert.clone()));
        match (&fastest, episode.firing) {
            (Some(_), false) => {
                episode = Episode {
                    firing: true,
                    request_id: uuid::Uuid::new_v4().to_string(),
                    incident: String::new(),
                };
            }
            (None, true) => episode.firing = false,
            _ => {}
        }
        save_episode(&txn, &m, &episode).await?;
        txn.commit().await?;
        let Some((window, alert)) = fastest.filter(|_| episode.firing && episode.incident.is_empty()) else {
            return Ok(Vec::new());
        };
        let incident = self.open_incident(ctx, &m, &view, &window, &alert, &episode.request_id).await?;
        let txn = self.db.begin().await?;
        if let Some(current) = find(&txn, &ctx.tenant, name).await? {
            let mut stored: Episode = serde_json::from_str(&current.episodes).unwrap_or_default();
            if stored.request_id == episode.request_id {
                stored.incident.clone_from(&incident);
                save_episode(&txn, &current, &stored).await?;
            }
        }
        txn.commit().await?;
        Ok(vec![incident])
    }

    async fn open_incident(
        &self,
        ctx: &CallContext,
        m: &objective::Model,
        view: &ServiceLevelObjective,
        window: &Window,
        alert: &BurnRateAlert,
        request_id: &str,
    ) -> Result<String, Error> {
        let Some(channel) = &self.incidents else {
            return Err(Error::Unavailable(
                "the incident service is not configured (upstream.incident)".into(),
            ));
        };
        let span = |s: i64| {
            if s % 3600 == 0 { format!("{}h", s / 3600) } else { format!("{}m", s / 60) }
        };
        // The fastest burns page: 14.4× spends 2 % of a 30-day budget in an hour.
        let (impact, urgency) = match window.factor {
            f if f >= 14.0 => (1, 1),
            f if f >= 6.0 => (1, 2),
            _ => (2, 2),
        };
        let budget = view
            .error_budget_remaining
            .map_or_else(|| "unknown".to_string(), |b| format!("{:.1} %", b * 100.0));
        let incident = Incident {
            short_description: format!(
                "SLO {} burning its error budget {}× ({} and {} windows)",
                m.display_name,
                window.factor,
                span(window.long_seconds),
                span(window.short_seconds)
            ),
            description: format!(
                "Service level objective {PREFIX}{} (service {}, target {:.3} % over {}): burn rate {:.1}× over {} and \
                 {:.1}× over {}, alert threshold {}×. Error budget remaining: {budget}.",
                m.slo_name,
                m.service,
                m.target * 100.0,
                span(m.window_seconds),
                alert.long_burn_rate,
                span(window.long_seconds),
                alert.short_burn_rate,
                span(window.short_seconds),
                window.factor
            ),
            category: "slo".into(),
            business_service: m.business_service.clone(),
            impact,
            urgency,
            ..Default::default()
        };
        let mut request = tonic::Request::new(CreateIncidentRequest {
            incident: Some(incident),
            request_id: request_id.to_string(),
        });
        request.set_timeout(CALL_TIMEOUT);
        ctx.apply(request.metadata_mut(), &self.internal_token);
        let created =
            IncidentServiceClient::new(channel.clone()).create_incident(request).await.map_err(|status| {
                Error::Unavailable(format!(
                    "the incident service did not open the alert's incident: {}",
                    status.message()
                ))
            })?;
        Ok(created.into_inner().name)
    }
}

/// A stored sample as the burn-rate arithmetic takes it; `None` for a row no sample could have
/// written (a time out of range, negative counts).
fn sli_sample(r: &sample::Model) -> Option<SliSample> {
    Some(SliSample {
        end: DateTime::from_timestamp_micros(r.end_time)?,
        good: u64::try_from(r.good).ok()?,
        total: u64::try_from(r.total).ok()?,
    })
}

async fn find(
    db: &impl ConnectionTrait,
    tenant: &str,
    name: &str,
) -> Result<Option<objective::Model>, Error> {
    Ok(objective::Entity::find()
        .filter(objective::Column::TenantId.eq(tenant))
        .filter(objective::Column::SloName.eq(name))
        .one(db)
        .await?)
}

async fn save_episode(
    txn: &impl ConnectionTrait,
    m: &objective::Model,
    episode: &Episode,
) -> Result<(), Error> {
    let json = serde_json::to_string(episode).unwrap_or_else(|_| "{}".into());
    if json == m.episodes {
        return Ok(());
    }
    objective::Entity::update_many()
        .col_expr(objective::Column::Episodes, sea_orm::sea_query::Expr::value(json))
        .filter(objective::Column::Id.eq(m.id.as_str()))
        .exec(txn)
        .await?;
    Ok(())
}

/// OpenSLO problems as field violations: "documents" locate the YAML document, then the field.
fn openslo_violations(errors: Vec<openslo::OpenSloError>) -> Error {
    let mut v = Violations::new();
    for e in errors {
        v.add(format!("yaml: {}: {}", e.location, e.field), e.message);
    }
    match v.into_result() {
        Err(err) => err,
        Ok(()) => Error::invalid("yaml", "is not valid OpenSLO"),
    }
}
