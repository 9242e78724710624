//! `itsm.delivery.v1.CapacityService`: resources of CIs with thresholds, metric samples stored
//! raw, hourly and daily (each dropped past its retention), utilisation and forecasts, capacity
//! warnings (an event, optionally a problem) and capacity plans.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, TransactionTrait,
};
use tokio_stream::StreamExt;
use tonic::transport::Channel;
use tonic::{Request, Response, Status, Streaming};

use itsm_cmdb_client::{CiReference, CmdbDirectory};
use itsm_proto::change::change_service_client::ChangeServiceClient;
use itsm_proto::change::{Change, ChangeType, CreateChangeRequest};
use itsm_proto::delivery::capacity_service_server::CapacityService;
use itsm_proto::delivery::{
    CapacityAction, CapacityBucket, CapacityForecast, CapacityPlan, CapacityPlanState, CapacityResource,
    CapacityResourceKind, CapacityUtilisation, CapacityWarning, CapacityWarningAction,
    CreateCapacityPlanRequest, CreateCapacityResourceRequest, DeleteCapacityResourceRequest,
    DeleteCapacityResourceResponse, ForecastPoint, GetCapacityForecastRequest, GetCapacityPlanRequest,
    GetCapacityResourceRequest, ListCapacityPlansRequest, ListCapacityPlansResponse,
    ListCapacityResourcesRequest, ListCapacityResourcesResponse, RecordCapacitySamplesRequest,
    RecordCapacitySamplesResponse, UpdateCapacityPlanRequest, UpdateCapacityResourceRequest,
};
use itsm_proto::incident::problem_service_client::ProblemServiceClient;
use itsm_proto::incident::{CreateProblemRequest, Problem};
use itsm_runtime::db::{micros, stmt, timestamp};
use itsm_runtime::error::Violations;
use itsm_runtime::fieldmask::UpdateMask;
use itsm_runtime::idempotency;
use itsm_runtime::outbox::{self, EventFeed, NewEvent};
use itsm_runtime::paging::PageTokens;
use itsm_runtime::validate;
use itsm_runtime::{CallContext, Error};

use crate::domain::forecast::{
    self, Bucket, ForecastRequest, RetentionPolicy, Sample, threshold_crossing, utilisation, warning_due,
};
use crate::entity::capacity_sample;
use itsm_runtime::documents::document;
use itsm_runtime::documents::{Column, Columns, Document, Documents, Kind, Listing};

pub const RESOURCES: Kind = Kind {
    prefix: "capacityResources/",
    create_method: "CreateCapacityResource",
    filters: &[
        ("configuration_item", Column::Subject),
        ("metric", Column::Parent),
        ("display_name", Column::DisplayName),
        ("warning", Column::State),
    ],
};
pub const PLANS: Kind = Kind {
    prefix: "capacityPlans/",
    create_method: "CreateCapacityPlan",
    filters: &[("state", Column::State), ("owner", Column::Owner), ("display_name", Column::DisplayName)],
};

const UPDATABLE: &[&str] = &[
    "display_name",
    "metric",
    "unit",
    "threshold",
    "kind",
    "forecast_step",
    "season_length",
    "lead_time",
    "warning_action",
];
const PLAN_UPDATABLE: &[&str] = &["display_name", "capacity_resources", "actions", "state", "owner"];
const MAX_SAMPLES_PER_MESSAGE: usize = 10_000;
const HOUR: i64 = 3600;
const DAY: i64 = 86_400;
/// Stored resolutions: raw samples, hours, days (seconds; 0 = raw).
const WIDTHS: [i64; 3] = [0, HOUR, DAY];
const DEFAULT_LEAD_DAYS: i64 = 14;
const DEFAULT_HISTORY_DAYS: i64 = 30;
const MAX_HISTORY_DAYS: i64 = 730;
const MAX_HORIZON_DAYS: i64 = 365;
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

fn seconds(d: Option<&prost_types::Duration>) -> i64 {
    d.map_or(0, |d| d.seconds)
}

fn duration(seconds: i64) -> prost_types::Duration {
    prost_types::Duration { seconds, nanos: 0 }
}

/// The forecast step of a resource in seconds (an hour unless it says a day).
fn step_of(r: &CapacityResource) -> i64 {
    if seconds(r.forecast_step.as_ref()) == DAY { DAY } else { HOUR }
}

fn lead_of(r: &CapacityResource) -> i64 {
    match seconds(r.lead_time.as_ref()) {
        0 => DEFAULT_LEAD_DAYS * DAY,
        s => s,
    }
}

fn check_resource(v: &mut Violations, r: &CapacityResource, has: &dyn Fn(&str) -> bool) {
    if has("display_name") {
        validate::text(v, "capacity_resource.display_name", &r.display_name, 200, true);
    }
    if has("configuration_item")
        && r.configuration_item
            .strip_prefix("configurationItems/")
            .is_none_or(|id| uuid::Uuid::parse_str(id).is_err())
    {
        v.add("capacity_resource.configuration_item", "must be `configurationItems/{id}`");
    }
    if has("metric") {
        validate::text(v, "capacity_resource.metric", &r.metric, 100, true);
    }
    if has("unit") {
        validate::text(v, "capacity_resource.unit", &r.unit, 50, false);
    }
    if has("threshold") && !r.threshold.is_finite() {
        v.add("capacity_resource.threshold", "must be a finite number");
    }
    if has("kind") && CapacityResourceKind::try_from(r.kind).is_err() {
        v.add("capacity_resource.kind", "is not a resource kind");
    }
    if has("forecast_step") && !matches!(seconds(r.forecast_step.as_ref()), 0 | HOUR | DAY) {
        v.add("capacity_resource.forecast_step", "must be one hour (3600s) or one day (86400s)");
    }
    if has("season_length") && !(0..=400).contains(&r.season_length) {
        v.add("capacity_resource.season_length", "must be between 0 and 400 steps");
    }
    if has("lead_time") {
        let lead = seconds(r.lead_time.as_ref());
        if !(0..=MAX_HORIZON_DAYS * DAY).contains(&lead) {
            v.add("capacity_resource.lead_time", "must be between 0 and 365 days");
        }
    }
    if has("warning_action") && CapacityWarningAction::try_from(r.warning_action).is_err() {
        v.add("capacity_resource.warning_action", "must be EVENT, PROBLEM or CHANGE");
    }
}

fn resource_columns(r: &CapacityResource) -> Columns {
    Columns {
        subject: r.configuration_item.clone(),
        parent: r.metric.clone(),
        display_name: r.display_name.clone(),
        state: if r.warning_time.is_some() { "true".into() } else { "false".into() },
        ..Columns::default()
    }
}

fn present(d: Document<CapacityResource>) -> CapacityResource {
    CapacityResource { name: d.name.clone(), etag: d.etag(), audit: Some(d.audit()), ..d.body }
}

fn plan_columns(p: &CapacityPlan) -> Columns {
    let state = CapacityPlanState::try_from(p.state).unwrap_or(CapacityPlanState::Open);
    Columns {
        display_name: p.display_name.clone(),
        owner: p.owner.clone(),
        state: state.as_str_name().trim_start_matches("CAPACITY_PLAN_STATE_").to_string(),
        ..Columns::default()
    }
}

fn present_plan(d: Document<CapacityPlan>) -> CapacityPlan {
    CapacityPlan { name: d.name.clone(), etag: d.etag(), audit: Some(d.audit()), ..d.body }
}

fn check_plan(v: &mut Violations, p: &CapacityPlan, has: &dyn Fn(&str) -> bool) {
    if has("display_name") {
        validate::text(v, "capacity_plan.display_name", &p.display_name, 200, true);
    }
    if has("owner") {
        validate::text(v, "capacity_plan.owner", &p.owner, 200, false);
    }
    if has("capacity_resources") {
        for (i, r) in p.capacity_resources.iter().enumerate() {
            if RESOURCES.id_of(r, "").is_err() {
                v.add(format!("capacity_plan.capacity_resources[{i}]"), "must be `capacityResources/{id}`");
            }
        }
    }
    if has("state") && CapacityPlanState::try_from(p.state).is_err() {
        v.add("capacity_plan.state", "must be OPEN, DONE or CANCELLED");
    }
    if has("actions") {
        for (i, a) in p.actions.iter().enumerate() {
            validate::text(v, &format!("capacity_plan.actions[{i}].title"), &a.title, 200, true);
            validate::text(v, &format!("capacity_plan.actions[{i}].owner"), &a.owner, 200, false);
            if CapacityPlanState::try_from(a.state).is_err() {
                v.add(format!("capacity_plan.actions[{i}].state"), "must be OPEN, DONE or CANCELLED");
            }
            if !a.change.is_empty() && !a.change.starts_with("changes/") {
                v.add(format!("capacity_plan.actions[{i}].change"), "must be `changes/CHG…`");
            }
        }
    }
}

/// Samples, forecasts and warnings.
#[derive(Clone)]
pub struct Capacity {
    pub documents: Documents,
    pub feed: EventFeed,
    pub incidents: Option<Channel>,
    /// Warnings can raise changes.
    pub changes: Option<Channel>,
    pub internal_token: String,
}

impl Capacity {
    fn db(&self) -> &DatabaseConnection {
        &self.documents.db
    }

    /// Stores one message's samples (all or none) and the resource's latest value.
    async fn record(&self, ctx: &CallContext, message: &RecordCapacitySamplesRequest) -> Result<i64, Error> {
        let id = RESOURCES.id_of(&message.capacity_resource, "capacity_resource")?;
        let mut v = Violations::new();
        if message.samples.len() > MAX_SAMPLES_PER_MESSAGE {
            v.add("samples", format!("at most {MAX_SAMPLES_PER_MESSAGE} per message"));
        }
        let mut samples = Vec::with_capacity(message.samples.len());
        for (i, s) in message.samples.iter().enumerate() {
            let at = s.time.as_ref().map(micros).and_then(DateTime::<Utc>::from_timestamp_micros);
            match at {
                Some(at) if at.timestamp() > 0 => {
                    if forecast::validate_sample(s.value).is_err() {
                        v.add(format!("samples[{i}].value"), "must be a finite number");
                    }
                    samples.push(Sample { at, value: s.value });
                }
                _ => v.add(format!("samples[{i}].time"), "is required (after 1970)"),
            }
        }
        v.into_result()?;
        if samples.is_empty() {
            return Ok(0);
        }
        let txn = self.db().begin().await?;
        let resource: Document<CapacityResource> = Documents::find(&txn, &RESOURCES, &ctx.tenant, &id)
            .await?
            .ok_or_else(|| Error::NotFound(RESOURCES.name(&id)))?;
        for width in WIDTHS {
            let buckets = if width == 0 {
                // Raw samples: one row per distinct time.
                forecast::downsample(&samples, TimeDelta::microseconds(1))
            } else {
                forecast::downsample(&samples, TimeDelta::seconds(width))
            }
            .map_err(|e| Error::invalid("samples", e.to_string()))?;
            upsert_buckets(&txn, &ctx.tenant, &id, width, &buckets).await?;
        }
        let latest = samples.iter().max_by_key(|s| s.at).map(|s| (s.at, s.value));
        if let Some((at, value)) = latest {
            let observed = resource.body.observe_time.as_ref().map_or(0, micros);
            if at.timestamp_micros() >= observed {
                Documents::update_in(
                    &txn,
                    &RESOURCES,
                    ctx,
                    &id,
                    "",
                    |current: &Document<CapacityResource>| {
                        let mut after = current.body.clone();
                        after.current_value = value;
                        after.observe_time = Some(timestamp(at.timestamp_micros()));
                        Ok((current.columns.clone(), after))
                    },
                )
                .await?;
            }
        }
        txn.commit().await?;
        Ok(samples.len() as i64)
    }

    /// Buckets of `width` seconds of a resource from `from` (micros), oldest first.
    async fn buckets(&self, resource_id: &str, width: i64, from: i64) -> Result<Vec<Bucket>, Error> {
        let rows = capacity_sample::Entity::find()
            .filter(capacity_sample::Column::ResourceId.eq(resource_id))
            .filter(capacity_sample::Column::WidthSeconds.eq(width))
            .filter(capacity_sample::Column::StartTime.gte(from))
            .order_by_asc(capacity_sample::Column::StartTime)
            .all(self.db())
            .await?;
        Ok(rows
            .into_iter()
            .filter_map(|r| {
                Some(Bucket {
                    start: DateTime::<Utc>::from_timestamp_micros(r.start_time)?,
                    width: TimeDelta::seconds(width),
                    count: r.count.max(0) as u64,
                    min: r.min_value,
                    max: r.max_value,
                    mean: if r.count > 0 { r.sum_value / r.count as f64 } else { 0.0 },
                })
            })
            .collect())
    }

    /// Utilisation over `history` and a forecast `horizon` ahead.
    async fn forecast(
        &self,
        resource: &Document<CapacityResource>,
        history: i64,
        horizon: i64,
        level: f64,
        now: DateTime<Utc>,
    ) -> Result<CapacityForecast, Error> {
        let r = &resource.body;
        let step = step_of(r);
        let from = now.timestamp_micros() - history * 1_000_000;
        let buckets = self.buckets(&resource.id, step, from).await?;
        let mut out = CapacityForecast {
            capacity_resource: resource.name.clone(),
            threshold: r.threshold,
            level_percent: level * 100.0,
            history: buckets
                .iter()
                .map(|b| CapacityBucket {
                    start_time: Some(timestamp(b.start.timestamp_micros())),
                    count: b.count as i64,
                    min: b.min,
                    max: b.max,
                    mean: b.mean,
                })
                .collect(),
            ..Default::default()
        };
        out.utilisation = utilisation(&buckets, r.threshold).map(|u| CapacityUtilisation {
            mean: u.mean,
            peak: u.peak,
            p95: u.p95,
            over_threshold_share: u.over_threshold_share,
            samples: u.samples as i64,
        });
        let Some(last) = buckets.last() else { return Ok(out) };
        let step_delta = TimeDelta::seconds(step);
        let series = forecast::regular_series(&buckets, step_delta)
            .map_err(|e| Error::FailedPrecondition(format!("cannot forecast: {e}")))?;
        let horizon_steps = usize::try_from((horizon / step).max(1)).unwrap_or(1);
        let request = ForecastRequest {
            series,
            season_length: usize::try_from(r.season_length).ok().filter(|s| *s > 1),
            horizon: horizon_steps,
            level,
        };
        let f = match forecast::forecast(&request) {
            Ok(f) => f,
            // Too little history is an answer (no forecast yet), not a failure.
            Err(forecast::ForecastError::TooFewPoints { .. }) => return Ok(out),
            Err(e) => return Err(Error::FailedPrecondition(format!("cannot forecast: {e}"))),
        };
        let at = |k: usize| timestamp((last.start + step_delta * k as i32).timestamp_micros());
        out.points = (0..f.point.len())
            .map(|i| ForecastPoint {
                time: Some(at(i + 1)),
                value: f.point[i],
                lower: f.lower[i],
                upper: f.upper[i],
            })
            .collect();
        let crossing = threshold_crossing(&f, r.threshold);
        out.earliest_crossing_time = crossing.earliest.map(at);
        out.expected_crossing_time = crossing.expected.map(at);
        out.latest_crossing_time = crossing.latest.map(at);
        // Lead time counts from now, the forecast from the last bucket.
        let lag = ((now - last.start).num_seconds() / step).max(0);
        let lead_steps = usize::try_from((lead_of(r) / step - lag).max(0)).unwrap_or(0);
        out.warning = warning_due(&crossing, lead_steps);
        out.seasonal = f.seasonal;
        Ok(out)
    }

    /// Forecasts every resource, opens and closes capacity warnings, and drops samples past
    /// retention. Returns the warnings opened.
    pub async fn sweep(&self, now: DateTime<Utc>) -> Result<usize, Error> {
        let policy = RetentionPolicy::default();
        for (width, tier) in WIDTHS.iter().zip(policy.tiers.iter()) {
            let cutoff = (now - tier.keep_for).timestamp_micros();
            capacity_sample::Entity::delete_many()
                .filter(capacity_sample::Column::WidthSeconds.eq(*width))
                .filter(capacity_sample::Column::StartTime.lt(cutoff))
                .exec(self.db())
                .await?;
        }
        let rows = document::Entity::find()
            .filter(document::Column::Kind.eq(RESOURCES.prefix.trim_end_matches('/')))
            .all(self.db())
            .await?;
        let mut opened = 0;
        for row in rows {
            let ctx = CallContext::system(row.tenant_id.clone());
            let Some(resource) =
                Documents::find::<CapacityResource>(self.db(), &RESOURCES, &ctx.tenant, &row.id).await?
            else {
                continue;
            };
            let horizon = lead_of(&resource.body).max(7 * DAY);
            let f = match self.forecast(&resource, DEFAULT_HISTORY_DAYS * DAY, horizon, 0.95, now).await {
                Ok(f) => f,
                Err(err) => {
                    tracing::warn!(resource = %resource.name, error = %err, "capacity forecast failed");
                    continue;
                }
            };
            if self.apply_warning(&ctx, &resource, &f, now).await? {
                opened += 1;
            }
        }
        Ok(opened)
    }

    /// Opens a warning (event, then the problem if asked) when one is due and none is open;
    /// closes it when it no longer is. True when one was opened.
    async fn apply_warning(
        &self,
        ctx: &CallContext,
        resource: &Document<CapacityResource>,
        f: &CapacityForecast,
        now: DateTime<Utc>,
    ) -> Result<bool, Error> {
        let open = resource.body.warning_time.is_some();
        if f.warning == open {
            return Ok(false);
        }
        let txn = self.db().begin().await?;
        let stored = Documents::update_in(
            &txn,
            &RESOURCES,
            ctx,
            &resource.id,
            &resource.etag(),
            |current: &Document<CapacityResource>| {
                let mut after = current.body.clone();
                after.warning_time = f.warning.then(|| timestamp(now.timestamp_micros()));
                if !f.warning {
                    after.problem.clear();
                    after.change.clear();
                }
                Ok((resource_columns(&after), after))
            },
        )
        .await?;
        if f.warning {
            let event = CapacityWarning {
                capacity_resource: resource.name.clone(),
                configuration_item: resource.body.configuration_item.clone(),
                threshold: resource.body.threshold,
                earliest_crossing_time: f.earliest_crossing_time,
                expected_crossing_time: f.expected_crossing_time,
                problem: String::new(),
            };
            outbox::append(&txn, NewEvent::of(&event, &resource.name, &ctx.tenant, "system")).await?;
        }
        txn.commit().await?;
        self.feed.notify_committed();
        // Stored first, then the call: the request id (from the warning's time) makes a retried
        // sweep find the same problem or change instead of opening another.
        let action = CapacityWarningAction::try_from(resource.body.warning_action).ok();
        let raises = matches!(action, Some(CapacityWarningAction::Problem | CapacityWarningAction::Change));
        if f.warning && raises {
            let problem = action == Some(CapacityWarningAction::Problem);
            let raised = if problem {
                self.raise_problem(ctx, &stored, f).await?
            } else {
                self.raise_change(ctx, &stored, f).await?
            };
            Documents::update(
                &self.documents,
                &RESOURCES,
                ctx,
                &stored.id,
                "",
                |current: &Document<CapacityResource>| {
                    let mut after: CapacityResource = current.body.clone();
                    if problem {
                        after.problem = raised;
                    } else {
                        after.change = raised;
                    }
                    Ok((current.columns.clone(), after))
                },
            )
            .await?;
        }
        Ok(f.warning)
    }

    async fn raise_change(
        &self,
        ctx: &CallContext,
        resource: &Document<CapacityResource>,
        f: &CapacityForecast,
    ) -> Result<String, Error> {
        let Some(channel) = &self.changes else {
            return Err(Error::Unavailable("the change service is not configured (upstream.change)".into()));
        };
        let r = &resource.body;
        let (summary, request_id) = warning_summary(resource, f);
        let change = Change {
            r#type: ChangeType::Normal as i32,
            short_description: format!("Capacity: add to {} before it reaches its threshold", r.display_name)
                .chars()
                .take(300)
                .collect(),
            description: summary.clone(),
            justification: summary,
            configuration_items: vec![r.configuration_item.clone()],
            ..Default::default()
        };
        let mut request = Request::new(CreateChangeRequest { change: Some(change), request_id });
        request.set_timeout(CALL_TIMEOUT);
        ctx.apply(request.metadata_mut(), &self.internal_token);
        let created =
            ChangeServiceClient::new(channel.clone()).create_change(request).await.map_err(|s| {
                Error::Unavailable(format!(
                    "the change service did not open the capacity change: {}",
                    s.message()
                ))
            })?;
        Ok(created.into_inner().name)
    }

    async fn raise_problem(
        &self,
        ctx: &CallContext,
        resource: &Document<CapacityResource>,
        f: &CapacityForecast,
    ) -> Result<String, Error> {
        let Some(channel) = &self.incidents else {
            return Err(Error::Unavailable(
                "the incident service is not configured (upstream.incident)".into(),
            ));
        };
        let r = &resource.body;
        let (description, request_id) = warning_summary(resource, f);
        let problem = Problem {
            short_description: format!("Capacity: {} may reach its threshold", r.display_name),
            description,
            configuration_items: vec![r.configuration_item.clone()],
            ..Default::default()
        };
        let mut request = Request::new(CreateProblemRequest { problem: Some(problem), request_id });
        request.set_timeout(CALL_TIMEOUT);
        ctx.apply(request.metadata_mut(), &self.internal_token);
        let created =
            ProblemServiceClient::new(channel.clone()).create_problem(request).await.map_err(|s| {
                Error::Unavailable(format!(
                    "the incident service did not open the capacity problem: {}",
                    s.message()
                ))
            })?;
        Ok(created.into_inner().name)
    }
}

/// What a warning says, and the request id that makes raising it idempotent (from the resource
/// and the warning's time).
fn warning_summary(resource: &Document<CapacityResource>, f: &CapacityForecast) -> (String, String) {
    let r = &resource.body;
    let when = f
        .earliest_crossing_time
        .and_then(|t| DateTime::<Utc>::from_timestamp(t.seconds, 0))
        .map_or_else(|| "soon".to_string(), |t| t.to_rfc3339());
    let seed = format!("{}|{}", resource.name, r.warning_time.as_ref().map_or(0, micros));
    let summary = format!(
        "{} ({}) on {} is forecast to reach {} {} as early as {when}; current value {} {}.",
        r.display_name, r.metric, r.configuration_item, r.threshold, r.unit, r.current_value, r.unit
    );
    (summary, uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, seed.as_bytes()).to_string())
}

/// Adds `buckets` into the stored ones of the same resource, width and start.
async fn upsert_buckets(
    db: &impl ConnectionTrait,
    tenant: &str,
    resource_id: &str,
    width: i64,
    buckets: &[Bucket],
) -> Result<(), Error> {
    let backend = db.get_database_backend();
    let (least, greatest) = match backend {
        sea_orm::DatabaseBackend::Postgres => ("LEAST", "GREATEST"),
        _ => ("MIN", "MAX"),
    };
    // 8 values and ~150 bytes a row: 60 rows stay under `db::STATEMENT_BUDGET`.
    for chunk in buckets.chunks(60) {
        let mut sql = String::from(
            "INSERT INTO capacity_samples (resource_id, width_seconds, start_time, tenant_id, count, min_value, \
             max_value, sum_value) VALUES ",
        );
        let mut values: Vec<sea_orm::Value> = Vec::with_capacity(chunk.len() * 8);
        for (i, b) in chunk.iter().enumerate() {
            let n = i * 8;
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!(
                "(${}, ${}, ${}, ${}, ${}, ${}, ${}, ${})",
                n + 1,
                n + 2,
                n + 3,
                n + 4,
                n + 5,
                n + 6,
                n + 7,
                n + 8
            ));
            values.extend([
                resource_id.into(),
                width.into(),
                b.start.timestamp_micros().into(),
                tenant.into(),
                (b.count as i64).into(),
                b.min.into(),
                b.max.into(),
                (b.mean * b.count as f64).into(),
            ]);
        }
        sql.push_str(&format!(
            " ON CONFLICT (resource_id, width_seconds, start_time) DO UPDATE SET \
             count = capacity_samples.count + excluded.count, \
             min_value = {least}(capacity_samples.min_value, excluded.min_value), \
             max_value = {greatest}(capacity_samples.max_value, excluded.max_value), \
             sum_value = capacity_samples.sum_value + excluded.sum_value"
        ));
        db.execute_raw(stmt(backend, &sql, values)).await?;
    }
    Ok(())
}

/// Forecasts and warnings on a timer.
pub async fn sweep(capacity: Capacity, interval: Duration, stop: impl std::future::Future<Output = ()>) {
    tokio::pin!(stop);
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = &mut stop => return,
            _ = ticker.tick() => {
                // Each pass (retention, forecasts, warnings raised) is one trace.
                let span = tracing::info_span!("sweep", otel.name = "sweep capacity");
                itsm_runtime::telemetry::set_root(&span, &std::sync::Arc::from(crate::SERVICE));
                if let Err(err) = tracing::Instrument::instrument(capacity.sweep(Utc::now()), span).await {
                    tracing::warn!(error = %err, "capacity sweep failed; retrying on the next tick");
                }
            }
        }
    }
}

/// The capacity API.
pub struct CapacityApi {
    pub capacity: Capacity,
    pub cmdb: CmdbDirectory,
    pub page_tokens: PageTokens,
}

#[tonic::async_trait]
impl CapacityService for CapacityApi {
    async fn create_capacity_resource(
        &self,
        request: Request<CreateCapacityResourceRequest>,
    ) -> Result<Response<CapacityResource>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let r = request.into_inner();
        let Some(c) = r.capacity_resource.as_ref() else {
            return Err(Error::invalid("capacity_resource", "is required").into());
        };
        let mut v = Violations::new();
        check_resource(&mut v, c, &|_| true);
        v.into_result()?;
        self.cmdb
            .check(
                &ctx,
                &[CiReference {
                    field: "capacity_resource.configuration_item".into(),
                    name: &c.configuration_item,
                    class: None,
                }],
            )
            .await?;
        let body = CapacityResource {
            name: String::new(),
            etag: String::new(),
            audit: None,
            current_value: 0.0,
            observe_time: None,
            warning_time: None,
            problem: String::new(),
            forecast_step: Some(duration(step_of(c))),
            lead_time: Some(duration(lead_of(c))),
            warning_action: if c.warning_action == 0 {
                CapacityWarningAction::Event as i32
            } else {
                c.warning_action
            },
            ..c.clone()
        };
        let hash = idempotency::request_hash(&r);
        let stored = self
            .capacity
            .documents
            .create(&RESOURCES, &ctx, &r.request_id, &hash, resource_columns(&body), &body)
            .await?;
        Ok(Response::new(present(stored)))
    }

    async fn get_capacity_resource(
        &self,
        request: Request<GetCapacityResourceRequest>,
    ) -> Result<Response<CapacityResource>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let d = self.capacity.documents.get(&RESOURCES, &ctx, &request.get_ref().name, "name").await?;
        Ok(Response::new(present(d)))
    }

    async fn list_capacity_resources(
        &self,
        request: Request<ListCapacityResourcesRequest>,
    ) -> Result<Response<ListCapacityResourcesResponse>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let r = request.get_ref();
        let listing = Listing {
            page_size: r.page_size,
            page_token: &r.page_token,
            filter: &r.filter,
            order_by: &r.order_by,
        };
        let (items, next_page_token) = self
            .capacity
            .documents
            .list::<CapacityResource>(&RESOURCES, &ctx, &self.page_tokens, &listing)
            .await?;
        Ok(Response::new(ListCapacityResourcesResponse {
            capacity_resources: items.into_iter().map(present).collect(),
            next_page_token,
        }))
    }

    async fn update_capacity_resource(
        &self,
        request: Request<UpdateCapacityResourceRequest>,
    ) -> Result<Response<CapacityResource>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let r = request.into_inner();
        let Some(c) = r.capacity_resource else {
            return Err(Error::invalid("capacity_resource", "is required").into());
        };
        let id = RESOURCES.id_of(&c.name, "capacity_resource.name")?;
        let mask = UpdateMask::parse(r.update_mask.as_ref(), UPDATABLE, "update_mask")?;
        let mut v = Violations::new();
        check_resource(&mut v, &c, &|p| mask.contains(p));
        v.into_result()?;
        let stored = self
            .capacity
            .documents
            .update(&RESOURCES, &ctx, &id, &c.etag, |current: &Document<CapacityResource>| {
                let mut after = current.body.clone();
                if mask.contains("display_name") {
                    after.display_name.clone_from(&c.display_name);
                }
                if mask.contains("metric") {
                    after.metric.clone_from(&c.metric);
                }
                if mask.contains("unit") {
                    after.unit.clone_from(&c.unit);
                }
                if mask.contains("threshold") {
                    after.threshold = c.threshold;
                }
                if mask.contains("kind") {
                    after.kind = c.kind;
                }
                if mask.contains("forecast_step") {
                    after.forecast_step = Some(duration(step_of(&c)));
                }
                if mask.contains("season_length") {
                    after.season_length = c.season_length;
                }
                if mask.contains("lead_time") {
                    after.lead_time = Some(duration(lead_of(&c)));
                }
                if mask.contains("warning_action") {
                    after.warning_action = c.warning_action.max(CapacityWarningAction::Event as i32);
                }
                Ok((resource_columns(&after), after))
            })
            .await?;
        Ok(Response::new(present(stored)))
    }

    async fn delete_capacity_resource(
        &self,
        request: Request<DeleteCapacityResourceRequest>,
    ) -> Result<Response<DeleteCapacityResourceResponse>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let r = request.get_ref();
        let id = RESOURCES.id_of(&r.name, "name")?;
        self.capacity.documents.delete(&RESOURCES, &ctx, &id, &r.etag).await?;
        capacity_sample::Entity::delete_many()
            .filter(capacity_sample::Column::ResourceId.eq(id.as_str()))
            .filter(capacity_sample::Column::TenantId.eq(ctx.tenant.as_str()))
            .exec(self.capacity.db())
            .await
            .map_err(Error::from)?;
        Ok(Response::new(DeleteCapacityResourceResponse {}))
    }

    async fn record_capacity_samples(
        &self,
        request: Request<Streaming<RecordCapacitySamplesRequest>>,
    ) -> Result<Response<RecordCapacitySamplesResponse>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let mut stream = request.into_inner();
        let mut recorded = 0_i64;
        let mut messages = 0_i32;
        while let Some(message) = stream.next().await {
            let message = message?;
            recorded += self.capacity.record(&ctx, &message).await?;
            messages += 1;
        }
        Ok(Response::new(RecordCapacitySamplesResponse { samples_recorded: recorded, messages }))
    }

    async fn get_capacity_forecast(
        &self,
        request: Request<GetCapacityForecastRequest>,
    ) -> Result<Response<CapacityForecast>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let r = request.into_inner();
        let mut v = Violations::new();
        let history = match seconds(r.history.as_ref()) {
            0 => DEFAULT_HISTORY_DAYS * DAY,
            s if !(0..=MAX_HISTORY_DAYS * DAY).contains(&s) => {
                v.add("history", "must be between 0 and 730 days");
                0
            }
            s => s,
        };
        let horizon = match seconds(r.horizon.as_ref()) {
            0 => DEFAULT_HISTORY_DAYS * DAY,
            s if !(0..=MAX_HORIZON_DAYS * DAY).contains(&s) => {
                v.add("horizon", "must be between 0 and 365 days");
                0
            }
            s => s,
        };
        let level = match r.level_percent {
            0.0 => 0.95,
            p if (50.0..=99.9).contains(&p) => p / 100.0,
            _ => {
                v.add("level_percent", "must be between 50 and 99.9");
                0.95
            }
        };
        v.into_result()?;
        let resource =
            self.capacity.documents.get(&RESOURCES, &ctx, &r.capacity_resource, "capacity_resource").await?;
        Ok(Response::new(self.capacity.forecast(&resource, history, horizon, level, Utc::now()).await?))
    }

    async fn create_capacity_plan(
        &self,
        request: Request<CreateCapacityPlanRequest>,
    ) -> Result<Response<CapacityPlan>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let r = request.into_inner();
        let Some(p) = r.capacity_plan.as_ref() else {
            return Err(Error::invalid("capacity_plan", "is required").into());
        };
        let mut v = Violations::new();
        check_plan(&mut v, p, &|_| true);
        v.into_result()?;
        self.check_resources(&ctx, &p.capacity_resources).await?;
        let body = CapacityPlan {
            name: String::new(),
            etag: String::new(),
            audit: None,
            state: p.state.max(CapacityPlanState::Open as i32),
            actions: p
                .actions
                .iter()
                .map(|a| CapacityAction { state: a.state.max(CapacityPlanState::Open as i32), ..a.clone() })
                .collect(),
            ..p.clone()
        };
        let hash = idempotency::request_hash(&r);
        let d = self
            .capacity
            .documents
            .create(&PLANS, &ctx, &r.request_id, &hash, plan_columns(&body), &body)
            .await?;
        Ok(Response::new(present_plan(d)))
    }

    async fn get_capacity_plan(
        &self,
        request: Request<GetCapacityPlanRequest>,
    ) -> Result<Response<CapacityPlan>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let d = self.capacity.documents.get(&PLANS, &ctx, &request.get_ref().name, "name").await?;
        Ok(Response::new(present_plan(d)))
    }

    async fn list_capacity_plans(
        &self,
        request: Request<ListCapacityPlansRequest>,
    ) -> Result<Response<ListCapacityPlansResponse>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let r = request.get_ref();
        let listing =
            Listing { page_size: r.page_size, page_token: &r.page_token, filter: &r.filter, order_by: "" };
        let (items, next_page_token) =
            self.capacity.documents.list::<CapacityPlan>(&PLANS, &ctx, &self.page_tokens, &listing).await?;
        Ok(Response::new(ListCapacityPlansResponse {
            capacity_plans: items.into_iter().map(present_plan).collect(),
            next_page_token,
        }))
    }

    async fn update_capacity_plan(
        &self,
        request: Request<UpdateCapacityPlanRequest>,
    ) -> Result<Response<CapacityPlan>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let r = request.into_inner();
        let Some(p) = r.capacity_plan else {
            return Err(Error::invalid("capacity_plan", "is required").into());
        };
        let id = PLANS.id_of(&p.name, "capacity_plan.name")?;
        let mask = UpdateMask::parse(r.update_mask.as_ref(), PLAN_UPDATABLE, "update_mask")?;
        let mut v = Violations::new();
        check_plan(&mut v, &p, &|f| mask.contains(f));
        v.into_result()?;
        if mask.contains("capacity_resources") {
            self.check_resources(&ctx, &p.capacity_resources).await?;
        }
        let stored = self
            .capacity
            .documents
            .update(&PLANS, &ctx, &id, &p.etag, |current: &Document<CapacityPlan>| {
                let mut after = current.body.clone();
                if mask.contains("display_name") {
                    after.display_name.clone_from(&p.display_name);
                }
                if mask.contains("capacity_resources") {
                    after.capacity_resources.clone_from(&p.capacity_resources);
                }
                if mask.contains("actions") {
                    after.actions.clone_from(&p.actions);
                }
                if mask.contains("state") {
                    after.state = p.state.max(CapacityPlanState::Open as i32);
                }
                if mask.contains("owner") {
                    after.owner.clone_from(&p.owner);
                }
                Ok((plan_columns(&after), after))
            })
            .await?;
        Ok(Response::new(present_plan(stored)))
    }
}

impl CapacityApi {
    /// Every named resource exists in the caller's tenant.
    async fn check_resources(&self, ctx: &CallContext, names: &[String]) -> Result<(), Error> {
        let mut v = Violations::new();
        let mut seen = BTreeMap::new();
        for (i, name) in names.iter().enumerate() {
            let Ok(id) = RESOURCES.id_of(name, "") else { continue };
            if seen.insert(id.clone(), ()).is_some() {
                continue;
            }
            let found: Option<Document<CapacityResource>> =
                Documents::find(self.capacity.db(), &RESOURCES, &ctx.tenant, &id).await?;
            if found.is_none() {
                v.add(format!("capacity_plan.capacity_resources[{i}]"), format!("{name} does not exist"));
            }
        }
        v.into_result()
    }
}
