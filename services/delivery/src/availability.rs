//! `itsm.delivery.v1.AvailabilityService`: outages recorded by hand or opened and closed by the
//! incident service's major incidents (`MajorIncidentOutage` events), and availability reports
//! within the service's agreed hours.

use chrono::{DateTime, Utc};
use prost::Message;
use sea_orm::sea_query::{Expr, SimpleExpr};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction, EntityTrait,
    IntoActiveModel, QueryFilter, TransactionTrait,
};
use tonic::{Request, Response, Status};

use itsm_proto::common::AuditInfo;
use itsm_proto::delivery::availability_service_server::AvailabilityService;
use itsm_proto::delivery::{
    AvailabilityReport, CiAvailability, CreateOutageRequest, DeleteOutageRequest, DeleteOutageResponse,
    GetAvailabilityReportRequest, GetOutageRequest, ListOutagesRequest, ListOutagesResponse, Outage,
    OutageKind, UpdateOutageRequest,
};
use itsm_proto::events::Event;
use itsm_proto::incident::MajorIncidentOutage;
use itsm_runtime::consumer::EventHandler;
use itsm_runtime::db::{micros, now_micros, timestamp};
use itsm_runtime::error::Violations;
use itsm_runtime::fieldmask::UpdateMask;
use itsm_runtime::filter::{self, Expr as Filter};
use itsm_runtime::history::{change_time, check_etag, etag};
use itsm_runtime::idempotency::{self, Claim};
use itsm_runtime::keyset::{self, Page};
use itsm_runtime::paging::{PageTokens, page_size};
use itsm_runtime::sql_filter::{self as filters, Field};
use itsm_runtime::validate;
use itsm_runtime::{CallContext, Error};

use crate::domain::availability::{OutageSpan, figures, per_ci};
use crate::domain::calendar::BusinessCalendar;
use crate::entity::{agreement, outage};
use crate::service_level::convert::{AGREEMENT_PREFIX, CALENDAR_PREFIX, duration_of, id_of};
use crate::service_level::rules::AVAILABILITY;
use crate::service_level::store::{ServiceLevel, calendar_of, targets_of};

pub const PREFIX: &str = "outages/";
pub const CONSUMER: &str = "delivery/major-incident-outages";
const CREATE_METHOD: &str = "CreateOutage";
const UPDATABLE: &[&str] =
    &["configuration_item", "planned", "kind", "start_time", "end_time", "description", "cause"];
const ORDER: &[&str] = &["start_time", "create_time", "update_time"];
const FILTERS: &[&str] =
    &["service", "configuration_item", "planned", "kind", "cause", "start_time", "end_time"];
/// Longest period a report covers.
const MAX_REPORT_DAYS: i64 = 3 * 366;

fn time(micros: i64) -> Option<prost_types::Timestamp> {
    (micros > 0).then(|| timestamp(micros))
}

fn is_ci(name: &str) -> bool {
    name.strip_prefix("configurationItems/").is_some_and(|id| uuid::Uuid::parse_str(id).is_ok())
}

pub fn to_proto(m: &outage::Model) -> Outage {
    Outage {
        name: format!("{PREFIX}{}", m.id),
        service: m.service.clone(),
        configuration_item: m.configuration_item.clone(),
        planned: m.planned,
        kind: m.kind,
        start_time: time(m.start_time),
        end_time: time(m.end_time),
        description: m.description.clone(),
        cause: m.cause.clone(),
        etag: etag(m.version),
        audit: Some(AuditInfo {
            create_time: time(m.create_time),
            update_time: time(m.update_time),
            creator: m.creator.clone(),
            updater: m.updater.clone(),
        }),
    }
}

fn check(v: &mut Violations, o: &Outage, has: &dyn Fn(&str) -> bool) {
    if has("service") && !is_ci(&o.service) {
        v.add("outage.service", "must be `configurationItems/{id}`");
    }
    if has("configuration_item") && !o.configuration_item.is_empty() && !is_ci(&o.configuration_item) {
        v.add("outage.configuration_item", "must be `configurationItems/{id}` or empty");
    }
    if has("kind") && !matches!(OutageKind::try_from(o.kind), Ok(OutageKind::Full | OutageKind::Degraded)) {
        v.add("outage.kind", "must be FULL or DEGRADED");
    }
    if has("start_time") && o.start_time.is_none() {
        v.add("outage.start_time", "is required");
    }
    if has("description") {
        validate::text(v, "outage.description", &o.description, 4000, false);
    }
    if has("cause")
        && !o.cause.is_empty()
        && !(o.cause.starts_with("incidents/") || o.cause.starts_with("changes/"))
    {
        v.add("outage.cause", "must be `incidents/INC…` or `changes/CHG…`");
    }
}

fn check_window(start: i64, end: i64) -> Result<(), Error> {
    if end > 0 && end <= start {
        return Err(Error::invalid("outage.end_time", "must be after start_time"));
    }
    Ok(())
}

/// Outages and reports.
#[derive(Clone)]
pub struct Availability {
    pub db: DatabaseConnection,
}

impl Availability {
    async fn find(db: &impl ConnectionTrait, tenant: &str, id: &str) -> Result<Option<outage::Model>, Error> {
        Ok(outage::Entity::find()
            .filter(outage::Column::TenantId.eq(tenant))
            .filter(outage::Column::Id.eq(id))
            .one(db)
            .await?)
    }

    async fn create(
        &self,
        ctx: &CallContext,
        mut m: outage::Model,
        request_id: &str,
        hash: &str,
    ) -> Result<outage::Model, Error> {
        for _ in 0..3 {
            let txn = self.db.begin().await?;
            match idempotency::claim(&txn, &ctx.tenant, CREATE_METHOD, request_id, hash).await? {
                Claim::Fresh => {}
                Claim::Done(name) => {
                    let found = Self::find(&txn, &ctx.tenant, name.trim_start_matches(PREFIX)).await?;
                    txn.commit().await?;
                    return found.ok_or(Error::NotFound(name));
                }
                Claim::LostRace => {
                    txn.rollback().await?;
                    continue;
                }
            }
            insert(&txn, ctx, &mut m).await?;
            idempotency::complete(&txn, &ctx.tenant, CREATE_METHOD, request_id, &format!("{PREFIX}{}", m.id))
                .await?;
            txn.commit().await?;
            return Ok(m);
        }
        Err(Error::Aborted("concurrent creates with the same request_id; retry".into()))
    }

    async fn list(
        &self,
        ctx: &CallContext,
        filter: Option<&Filter>,
        order: (&str, bool),
        after: Option<Vec<serde_json::Value>>,
        limit: u64,
    ) -> Result<Page<outage::Model>, Error> {
        let (field, descending) = order;
        let column = match field {
            "create_time" => outage::Column::CreateTime,
            "update_time" => outage::Column::UpdateTime,
            _ => outage::Column::StartTime,
        };
        let mut query = outage::Entity::find().filter(outage::Column::TenantId.eq(ctx.tenant.as_str()));
        if let Some(filter) = filter {
            query = query.filter(filters::condition(filter, &ctx.tenant, &outage_field, FILTERS)?);
        }
        keyset::page(&self.db, query, column, outage::Column::Id, descending, after, limit, |m| {
            let value = match field {
                "create_time" => serde_json::json!(m.create_time),
                "update_time" => serde_json::json!(m.update_time),
                _ => serde_json::json!(m.start_time),
            };
            (value, m.id.clone())
        })
        .await
    }

    async fn update(
        &self,
        ctx: &CallContext,
        id: &str,
        etag: &str,
        edit: impl FnOnce(&mut outage::Model),
    ) -> Result<outage::Model, Error> {
        let txn = self.db.begin().await?;
        let current = Self::find(&txn, &ctx.tenant, id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("{PREFIX}{id}")))?;
        check_etag(etag, current.version, &format!("{PREFIX}{id}"))?;
        let mut after = current.clone();
        edit(&mut after);
        check_window(after.start_time, after.end_time)?;
        let stored =
            if after == current { current } else { store_update(&txn, ctx, &current, after).await? };
        txn.commit().await?;
        Ok(stored)
    }

    async fn delete(&self, ctx: &CallContext, id: &str, etag: &str) -> Result<(), Error> {
        let txn = self.db.begin().await?;
        let current = Self::find(&txn, &ctx.tenant, id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("{PREFIX}{id}")))?;
        check_etag(etag, current.version, &format!("{PREFIX}{id}"))?;
        outage::Entity::delete_by_id(current.id).exec(&txn).await?;
        txn.commit().await?;
        Ok(())
    }

    /// The service's report over [from, to).
    async fn report(
        &self,
        ctx: &CallContext,
        service: &str,
        from: i64,
        to: i64,
    ) -> Result<AvailabilityReport, Error> {
        // The agreed hours and target: the first active agreement with an AVAILABILITY target.
        let agreements = agreement::Entity::find()
            .filter(agreement::Column::TenantId.eq(ctx.tenant.as_str()))
            .filter(agreement::Column::BusinessService.eq(service))
            .filter(agreement::Column::Active.eq(true))
            .all(&self.db)
            .await?;
        let chosen = agreements.iter().find_map(|a| {
            targets_of(a).into_iter().find(|t| t.metric == AVAILABILITY).map(|t| (a.clone(), t))
        });
        let mut calendar = BusinessCalendar::always();
        let mut calendar_name = String::new();
        if let Some((_, target)) = &chosen
            && !target.calendar.is_empty()
            && let Some(row) = ServiceLevel::find_calendar(&self.db, &ctx.tenant, &target.calendar).await?
        {
            calendar = calendar_of(&row)?;
            calendar_name = format!("{CALENDAR_PREFIX}{}", row.id);
        }
        let rows = outage::Entity::find()
            .filter(outage::Column::TenantId.eq(ctx.tenant.as_str()))
            .filter(outage::Column::Service.eq(service))
            .filter(outage::Column::StartTime.lt(to))
            .filter(
                sea_orm::Condition::any()
                    .add(outage::Column::EndTime.eq(0))
                    .add(outage::Column::EndTime.gt(from)),
            )
            .all(&self.db)
            .await?;
        let at = |m: i64| DateTime::<Utc>::from_timestamp_micros(m).unwrap_or_default();
        let spans: Vec<OutageSpan> = rows
            .iter()
            .map(|o| OutageSpan {
                start: at(o.start_time),
                end: (o.end_time > 0).then(|| at(o.end_time)),
                planned: o.planned,
                full: o.kind == OutageKind::Full as i32,
                configuration_item: o.configuration_item.clone(),
            })
            .collect();
        let f = figures(&calendar, at(from), at(to), &spans);
        let target = chosen.as_ref().map_or(0, |(_, t)| t.availability_basis_points);
        let percent = f.availability * 100.0;
        Ok(AvailabilityReport {
            service: service.to_string(),
            start_time: Some(timestamp(from)),
            end_time: Some(timestamp(to)),
            agreed_time: Some(duration_of(f.agreed)),
            downtime: Some(duration_of(f.downtime)),
            degraded_time: Some(duration_of(f.degraded)),
            planned_downtime: Some(duration_of(f.planned)),
            availability_percent: percent,
            service_level_agreement: chosen
                .as_ref()
                .map(|(a, _)| format!("{AGREEMENT_PREFIX}{}", a.id))
                .unwrap_or_default(),
            target_basis_points: target,
            target_met: target == 0 || percent * 100.0 >= f64::from(target),
            service_breaks: f.breaks as i32,
            mtbf: f.mtbf.map(duration_of),
            mtbsi: f.mtbsi.map(duration_of),
            mtrs: f.mtrs.map(duration_of),
            configuration_items: per_ci(&calendar, at(from), at(to), &spans)
                .into_iter()
                .map(|(ci, c)| CiAvailability {
                    configuration_item: ci,
                    downtime: Some(duration_of(c.downtime)),
                    service_breaks: c.breaks as i32,
                    mtrs: c.mtrs.map(duration_of),
                })
                .collect(),
            calendar: calendar_name,
        })
    }
}

async fn insert(txn: &impl ConnectionTrait, ctx: &CallContext, m: &mut outage::Model) -> Result<(), Error> {
    let now = now_micros();
    m.id = uuid::Uuid::now_v7().to_string();
    m.tenant_id.clone_from(&ctx.tenant);
    m.version = 1;
    m.create_time = now;
    m.update_time = now;
    m.creator.clone_from(&ctx.principal);
    m.updater.clone_from(&ctx.principal);
    m.clone().into_active_model().reset_all().insert(txn).await?;
    Ok(())
}

async fn store_update(
    txn: &impl ConnectionTrait,
    ctx: &CallContext,
    current: &outage::Model,
    mut after: outage::Model,
) -> Result<outage::Model, Error> {
    after.version = current.version + 1;
    after.update_time = change_time(current.update_time);
    after.updater.clone_from(&ctx.principal);
    let mut active = after.clone().into_active_model().reset_all();
    active.id = sea_orm::ActiveValue::NotSet;
    active.tenant_id = sea_orm::ActiveValue::NotSet;
    let done = outage::Entity::update_many()
        .set(active)
        .filter(outage::Column::Id.eq(current.id.as_str()))
        .filter(outage::Column::Version.eq(current.version))
        .exec(txn)
        .await?;
    if done.rows_affected != 1 {
        return Err(Error::Aborted(format!(
            "{PREFIX}{} was changed concurrently; read it again",
            current.id
        )));
    }
    Ok(after)
}

const KINDS: &[(i32, &str)] = &[(1, "FULL"), (2, "DEGRADED")];

fn outage_field(member: &str) -> Option<Field> {
    use outage::Column as C;
    let col = |c: C| -> SimpleExpr { Expr::col((outage::Entity, c)) };
    Some(match member {
        "service" => Field::Text(col(C::Service)),
        "configuration_item" => Field::Text(col(C::ConfigurationItem)),
        "planned" => Field::Bool(col(C::Planned)),
        "kind" => Field::Enum { column: col(C::Kind), values: KINDS, prefix: "OUTAGE_KIND_" },
        "cause" => Field::Text(col(C::Cause)),
        "start_time" => Field::Time(col(C::StartTime)),
        "end_time" => Field::Time(col(C::EndTime)),
        _ => return None,
    })
}

pub struct AvailabilityApi {
    pub availability: Availability,
    pub page_tokens: PageTokens,
}

#[tonic::async_trait]
impl AvailabilityService for AvailabilityApi {
    async fn create_outage(&self, request: Request<CreateOutageRequest>) -> Result<Response<Outage>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let request = request.into_inner();
        let Some(o) = request.outage.as_ref() else {
            return Err(Error::invalid("outage", "is required").into());
        };
        idempotency::validate_request_id(&request.request_id, "request_id")?;
        let mut v = Violations::new();
        check(&mut v, o, &|_| true);
        v.into_result()?;
        let (start, end) = (o.start_time.as_ref().map_or(0, micros), o.end_time.as_ref().map_or(0, micros));
        check_window(start, end)?;
        let m = outage::Model {
            id: String::new(),
            tenant_id: String::new(),
            service: o.service.clone(),
            configuration_item: o.configuration_item.clone(),
            planned: o.planned,
            kind: o.kind,
            start_time: start,
            end_time: end,
            description: o.description.clone(),
            cause: o.cause.clone(),
            version: 0,
            create_time: 0,
            update_time: 0,
            creator: String::new(),
            updater: String::new(),
        };
        let hash = idempotency::request_hash(&request);
        Ok(Response::new(to_proto(&self.availability.create(&ctx, m, &request.request_id, &hash).await?)))
    }

    async fn get_outage(&self, request: Request<GetOutageRequest>) -> Result<Response<Outage>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let id = id_of(&request.get_ref().name, PREFIX, "name")?;
        let found = Availability::find(&self.availability.db, &ctx.tenant, &id).await?;
        Ok(Response::new(to_proto(&found.ok_or_else(|| Error::NotFound(format!("{PREFIX}{id}")))?)))
    }

    async fn list_outages(
        &self,
        request: Request<ListOutagesRequest>,
    ) -> Result<Response<ListOutagesResponse>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let r = request.into_inner();
        let size = page_size(r.page_size, "page_size")?;
        let parsed = filter::parse(&r.filter)?;
        let order = filter::parse_order_by(&r.order_by, ORDER)?.unwrap_or(("start_time", true));
        let fingerprint = PageTokens::fingerprint(&[&ctx.tenant, "outages", &r.filter, &r.order_by]);
        let after = self.page_tokens.decode(&r.page_token, &fingerprint)?;
        let page = self.availability.list(&ctx, parsed.as_ref(), order, after, size).await?;
        let next_page_token = self.page_tokens.next(&fingerprint, page.next_key)?;
        Ok(Response::new(ListOutagesResponse {
            outages: page.items.iter().map(to_proto).collect(),
            next_page_token,
        }))
    }

    async fn update_outage(&self, request: Request<UpdateOutageRequest>) -> Result<Response<Outage>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let request = request.into_inner();
        let Some(o) = request.outage else { return Err(Error::invalid("outage", "is required").into()) };
        let id = id_of(&o.name, PREFIX, "outage.name")?;
        let mask = UpdateMask::parse(request.update_mask.as_ref(), UPDATABLE, "update_mask")?;
        let mut v = Violations::new();
        check(&mut v, &o, &|p| mask.contains(p));
        v.into_result()?;
        let stored = self
            .availability
            .update(&ctx, &id, &o.etag, |after| {
                if mask.contains("configuration_item") {
                    after.configuration_item.clone_from(&o.configuration_item);
                }
                if mask.contains("planned") {
                    after.planned = o.planned;
                }
                if mask.contains("kind") {
                    after.kind = o.kind;
                }
                if mask.contains("start_time") {
                    after.start_time = o.start_time.as_ref().map_or(0, micros);
                }
                if mask.contains("end_time") {
                    after.end_time = o.end_time.as_ref().map_or(0, micros);
                }
                if mask.contains("description") {
                    after.description.clone_from(&o.description);
                }
                if mask.contains("cause") {
                    after.cause.clone_from(&o.cause);
                }
            })
            .await?;
        Ok(Response::new(to_proto(&stored)))
    }

    async fn delete_outage(
        &self,
        request: Request<DeleteOutageRequest>,
    ) -> Result<Response<DeleteOutageResponse>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let r = request.into_inner();
        let id = id_of(&r.name, PREFIX, "name")?;
        self.availability.delete(&ctx, &id, &r.etag).await?;
        Ok(Response::new(DeleteOutageResponse {}))
    }

    async fn get_availability_report(
        &self,
        request: Request<GetAvailabilityReportRequest>,
    ) -> Result<Response<AvailabilityReport>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let r = request.into_inner();
        let mut v = Violations::new();
        if !is_ci(&r.service) {
            v.add("service", "must be `configurationItems/{id}`");
        }
        let from = r.start_time.as_ref().map_or(0, micros);
        let to = r.end_time.as_ref().map_or_else(now_micros, micros);
        if from <= 0 {
            v.add("start_time", "is required");
        } else if to <= from {
            v.add("end_time", "must be after start_time");
        } else if to - from > MAX_REPORT_DAYS * 86_400_000_000 {
            v.add("end_time", format!("a report covers at most {MAX_REPORT_DAYS} days"));
        }
        v.into_result()?;
        Ok(Response::new(self.availability.report(&ctx, &r.service, from, to).await?))
    }
}

/// Opens and closes outages from the incident service's major incidents.
pub struct MajorIncidentOutages {
    pub availability: Availability,
}

#[tonic::async_trait]
impl EventHandler for MajorIncidentOutages {
    async fn handle(&self, txn: &DatabaseTransaction, event: &Event) -> Result<(), Error> {
        let Some(payload) = &event.payload else { return Ok(()) };
        let Ok(o) = MajorIncidentOutage::decode(payload.value.as_slice()) else { return Ok(()) };
        // Availability is measured per business service; an incident without one has no outage.
        if o.business_service.is_empty() {
            return Ok(());
        }
        let ctx =
            CallContext { tenant: event.tenant.clone(), principal: event.actor.clone(), roles: Vec::new() };
        let open = outage::Entity::find()
            .filter(outage::Column::TenantId.eq(event.tenant.as_str()))
            .filter(outage::Column::Cause.eq(o.incident.as_str()))
            .filter(outage::Column::EndTime.eq(0))
            .one(txn)
            .await?;
        match (o.action.as_str(), open) {
            ("start", None) => {
                // A P1 major incident is the service down; anything less, degraded.
                let kind = if o.priority == 1 { OutageKind::Full } else { OutageKind::Degraded };
                let mut m = outage::Model {
                    id: String::new(),
                    tenant_id: String::new(),
                    service: o.business_service.clone(),
                    configuration_item: o.configuration_items.first().cloned().unwrap_or_default(),
                    planned: false,
                    kind: kind as i32,
                    start_time: o.start_time.as_ref().map_or_else(now_micros, micros),
                    end_time: 0,
                    description: format!("Major incident {}", o.incident),
                    cause: o.incident.clone(),
                    version: 0,
                    create_time: 0,
                    update_time: 0,
                    creator: String::new(),
                    updater: String::new(),
                };
                insert(txn, &ctx, &mut m).await?;
            }
            ("end", Some(current)) => {
                let mut after = current.clone();
                after.end_time =
                    o.end_time.as_ref().map_or_else(now_micros, micros).max(current.start_time + 1);
                store_update(txn, &ctx, &current, after).await?;
            }
            _ => {}
        }
        Ok(())
    }
}
