//! `itsm.delivery.v1.ServiceLevelService`: validates, calls the store, converts.

use tonic::{Request, Response, Status};

use itsm_proto::delivery::service_level_service_server::ServiceLevelService;
use itsm_proto::delivery::{
    BusinessCalendar, CreateBusinessCalendarRequest, CreateServiceLevelAgreementRequest,
    DeleteBusinessCalendarRequest, DeleteBusinessCalendarResponse, DeleteServiceLevelAgreementRequest,
    DeleteServiceLevelAgreementResponse, ExplainSlaClockRequest, ExplainSlaClockResponse,
    GetBusinessCalendarRequest, GetServiceLevelAgreementRequest, GetServiceLevelObjectiveRequest,
    GetSlaClockRequest, ImportOpenSloRequest, ImportOpenSloResponse, ListBusinessCalendarsRequest,
    ListBusinessCalendarsResponse, ListServiceLevelAgreementsRequest, ListServiceLevelAgreementsResponse,
    ListServiceLevelObjectivesRequest, ListServiceLevelObjectivesResponse, ListSlaClocksRequest,
    ListSlaClocksResponse, RecordSliSamplesRequest, RecordSliSamplesResponse, ServiceLevelAgreement,
    ServiceLevelObjective, SlaClock, SlaClockSegment, UpdateBusinessCalendarRequest,
    UpdateServiceLevelAgreementRequest,
};
use itsm_proto::delivery::{
    CreateServiceOfferingRequest, DeleteServiceOfferingRequest, DeleteServiceOfferingResponse,
    GetServiceOfferingRequest, ListServiceOfferingsRequest, ListServiceOfferingsResponse, ServiceOffering,
    UpdateServiceOfferingRequest,
};
use itsm_proto::delivery::{
    CustomerAttainment, GetServiceLevelReportRequest, ServiceLevelReport, TargetAttainment,
};
use itsm_proto::delivery::{GetSloBudgetHistoryRequest, SloBudgetHistory};
use itsm_runtime::error::{FieldViolation, Violations};
use itsm_runtime::fieldmask::UpdateMask;
use itsm_runtime::paging::{PageTokens, page_size};
use itsm_runtime::validate::{self, MAX_NAME};
use itsm_runtime::{CallContext, Error, filter, idempotency};

use super::convert::{
    AGREEMENT_PREFIX, CALENDAR_PREFIX, CLOCK_PREFIX, agreement_to_proto, calendar_from_proto,
    calendar_to_proto, clock_to_proto, duration_of, id_of, targets_from_proto,
};
use super::objectives::{self, Objectives};
use super::store::{AGREEMENT_ORDER, CLOCK_ORDER, ServiceLevel};
use crate::domain::error_budget::HistoryQuery;
use crate::entity::agreement;

pub struct ServiceLevelApi {
    pub store: ServiceLevel,
    pub catalogue: super::catalogue::Catalogue,
    pub objectives: Objectives,
    pub page_tokens: PageTokens,
}

const AGREEMENT_UPDATABLE: &[&str] =
    &["display_name", "type", "business_service", "counterparty", "targets", "active"];

fn check_agreement_fields(v: &mut Violations, a: &ServiceLevelAgreement, has: &dyn Fn(&str) -> bool) {
    if has("display_name") {
        validate::text(v, "service_level_agreement.display_name", &a.display_name, MAX_NAME, true);
    }
    if has("type") && !(1..=3).contains(&a.r#type) {
        v.add("service_level_agreement.type", "must be SLA, OLA or UC");
    }
    let service_ok = a
        .business_service
        .strip_prefix("configurationItems/")
        .is_some_and(|id| uuid::Uuid::parse_str(id).is_ok());
    if has("business_service") && !service_ok {
        v.add("service_level_agreement.business_service", "must be `configurationItems/{id}`");
    }
    if has("counterparty") {
        validate::text(v, "service_level_agreement.counterparty", &a.counterparty, MAX_NAME, false);
    }
}

/// A request's time as the domain takes it; a violation on `field` when it is not a valid
/// protobuf timestamp or not a representable time.
fn time_of(
    field: &str,
    time: Option<&prost_types::Timestamp>,
    violations: &mut Vec<FieldViolation>,
) -> Option<chrono::DateTime<chrono::Utc>> {
    let time = time?;
    let at = chrono::DateTime::from_timestamp_micros(itsm_runtime::db::micros(time))
        .filter(|_| (0..1_000_000_000).contains(&time.nanos));
    if at.is_none() {
        violations.push(FieldViolation::new(field, "is not a valid time"));
    }
    at
}

/// A request's duration as the domain takes it (to the microsecond); a violation on `field` when
/// its seconds and nanos disagree in sign or the nanos exceed a second.
fn duration_from(
    field: &str,
    duration: Option<&prost_types::Duration>,
    violations: &mut Vec<FieldViolation>,
) -> Option<chrono::TimeDelta> {
    let d = duration?;
    let signs_agree = (d.seconds >= 0 && d.nanos >= 0) || (d.seconds <= 0 && d.nanos <= 0);
    if !signs_agree || !(-999_999_999..=999_999_999).contains(&d.nanos) {
        violations.push(FieldViolation::new(field, "is not a valid duration"));
        return None;
    }
    let micros = d.seconds.saturating_mul(1_000_000).saturating_add(i64::from(d.nanos) / 1_000);
    Some(chrono::TimeDelta::microseconds(micros))
}

/// The range GetSloBudgetHistory asks for, with what is wrong with it whatever the SLO (every
/// violation at once).
fn history_query(r: &GetSloBudgetHistoryRequest) -> Result<HistoryQuery, Error> {
    let mut violations = Vec::new();
    let query = HistoryQuery {
        start: time_of("start_time", r.start_time.as_ref(), &mut violations),
        end: time_of("end_time", r.end_time.as_ref(), &mut violations),
        step: duration_from("step", r.step.as_ref(), &mut violations),
    };
    violations.extend(query.check());
    if violations.is_empty() { Ok(query) } else { Err(Error::InvalidArgument(violations)) }
}

impl ServiceLevelApi {
    /// Which calendar ids of the tenant exist (for target checks).
    async fn calendar_ids(&self, ctx: &CallContext) -> Result<Vec<String>, Error> {
        Ok(self.store.list_calendars(ctx).await?.into_iter().map(|c| c.id).collect())
    }
}

#[tonic::async_trait]
impl ServiceLevelService for ServiceLevelApi {
    async fn create_business_calendar(
        &self,
        request: Request<CreateBusinessCalendarRequest>,
    ) -> Result<Response<BusinessCalendar>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let Some(c) = request.into_inner().business_calendar else {
            return Err(Error::invalid("business_calendar", "is required").into());
        };
        let model = calendar_from_proto(&c)?;
        Ok(Response::new(calendar_to_proto(&self.store.create_calendar(&ctx, model).await?)))
    }

    async fn get_business_calendar(
        &self,
        request: Request<GetBusinessCalendarRequest>,
    ) -> Result<Response<BusinessCalendar>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let id = id_of(&request.get_ref().name, CALENDAR_PREFIX, "name")?;
        Ok(Response::new(calendar_to_proto(&self.store.get_calendar(&ctx, &id).await?)))
    }

    async fn list_business_calendars(
        &self,
        request: Request<ListBusinessCalendarsRequest>,
    ) -> Result<Response<ListBusinessCalendarsResponse>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let calendars = self.store.list_calendars(&ctx).await?;
        Ok(Response::new(ListBusinessCalendarsResponse {
            business_calendars: calendars.iter().map(calendar_to_proto).collect(),
        }))
    }

    async fn update_business_calendar(
        &self,
        request: Request<UpdateBusinessCalendarRequest>,
    ) -> Result<Response<BusinessCalendar>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let Some(c) = request.into_inner().business_calendar else {
            return Err(Error::invalid("business_calendar", "is required").into());
        };
        let id = id_of(&c.name, CALENDAR_PREFIX, "business_calendar.name")?;
        let replacement = calendar_from_proto(&c)?;
        Ok(Response::new(calendar_to_proto(
            &self.store.update_calendar(&ctx, &id, &c.etag, replacement).await?,
        )))
    }

    async fn delete_business_calendar(
        &self,
        request: Request<DeleteBusinessCalendarRequest>,
    ) -> Result<Response<DeleteBusinessCalendarResponse>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let id = id_of(&request.get_ref().name, CALENDAR_PREFIX, "name")?;
        self.store.delete_calendar(&ctx, &id).await?;
        Ok(Response::new(DeleteBusinessCalendarResponse {}))
    }

    async fn create_service_level_agreement(
        &self,
        request: Request<CreateServiceLevelAgreementRequest>,
    ) -> Result<Response<ServiceLevelAgreement>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let request = request.into_inner();
        let Some(a) = request.service_level_agreement.as_ref() else {
            return Err(Error::invalid("service_level_agreement", "is required").into());
        };
        idempotency::validate_request_id(&request.request_id, "request_id")?;
        let calendars = self.calendar_ids(&ctx).await?;
        let mut v = Violations::new();
        check_agreement_fields(&mut v, a, &|_| true);
        let targets = targets_from_proto(&mut v, &a.targets, &|id| calendars.iter().any(|c| c == id));
        v.into_result()?;
        let model = agreement::Model {
            id: String::new(),
            tenant_id: String::new(),
            display_name: a.display_name.clone(),
            agreement_type: a.r#type,
            business_service: a.business_service.clone(),
            counterparty: a.counterparty.clone(),
            targets: serde_json::to_string(&targets).unwrap_or_else(|_| "[]".into()),
            active: a.active,
            version: 0,
            create_time: 0,
            update_time: 0,
            creator: String::new(),
            updater: String::new(),
        };
        let hash = idempotency::request_hash(&request);
        let created = self.store.create_agreement(&ctx, model, &request.request_id, &hash).await?;
        Ok(Response::new(agreement_to_proto(&created)))
    }

    async fn get_service_level_agreement(
        &self,
        request: Request<GetServiceLevelAgreementRequest>,
    ) -> Result<Response<ServiceLevelAgreement>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let id = id_of(&request.get_ref().name, AGREEMENT_PREFIX, "name")?;
        Ok(Response::new(agreement_to_proto(&self.store.get_agreement(&ctx, &id).await?)))
    }

    async fn list_service_level_agreements(
        &self,
        request: Request<ListServiceLevelAgreementsRequest>,
    ) -> Result<Response<ListServiceLevelAgreementsResponse>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let r = request.into_inner();
        let size = page_size(r.page_size, "page_size")?;
        let parsed = filter::parse(&r.filter)?;
        let order = filter::parse_order_by(&r.order_by, AGREEMENT_ORDER)?.unwrap_or(("create_time", false));
        let fingerprint = PageTokens::fingerprint(&[&ctx.tenant, "agreements", &r.filter, &r.order_by]);
        let after = self.page_tokens.decode(&r.page_token, &fingerprint)?;
        let page = self.store.list_agreements(&ctx, parsed.as_ref(), order, after, size).await?;
        let next_page_token = self.page_tokens.next(&fingerprint, page.next_key)?;
        Ok(Response::new(ListServiceLevelAgreementsResponse {
            service_level_agreements: page.items.iter().map(agreement_to_proto).collect(),
            next_page_token,
        }))
    }

    async fn update_service_level_agreement(
        &self,
        request: Request<UpdateServiceLevelAgreementRequest>,
    ) -> Result<Response<ServiceLevelAgreement>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let request = request.into_inner();
        let Some(a) = request.service_level_agreement else {
            return Err(Error::invalid("service_level_agreement", "is required").into());
        };
        let id = id_of(&a.name, AGREEMENT_PREFIX, "service_level_agreement.name")?;
        let mask = UpdateMask::parse(request.update_mask.as_ref(), AGREEMENT_UPDATABLE, "update_mask")?;
        let calendars = self.calendar_ids(&ctx).await?;
        let mut v = Violations::new();
        check_agreement_fields(&mut v, &a, &|p| mask.contains(p));
        let targets = if mask.contains("targets") {
            Some(targets_from_proto(&mut v, &a.targets, &|id| calendars.iter().any(|c| c == id)))
        } else {
            None
        };
        v.into_result()?;
        let updated = self
            .store
            .update_agreement(&ctx, &id, &a.etag, |m| {
                if mask.contains("display_name") {
                    m.display_name.clone_from(&a.display_name);
                }
                if mask.contains("type") {
                    m.agreement_type = a.r#type;
                }
                if mask.contains("business_service") {
                    m.business_service.clone_from(&a.business_service);
                }
                if mask.contains("counterparty") {
                    m.counterparty.clone_from(&a.counterparty);
                }
                if let Some(targets) = &targets {
                    m.targets = serde_json::to_string(targets).unwrap_or_else(|_| "[]".into());
                }
                if mask.contains("active") {
                    m.active = a.active;
                }
            })
            .await?;
        Ok(Response::new(agreement_to_proto(&updated)))
    }

    async fn delete_service_level_agreement(
        &self,
        request: Request<DeleteServiceLevelAgreementRequest>,
    ) -> Result<Response<DeleteServiceLevelAgreementResponse>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let r = request.into_inner();
        let id = id_of(&r.name, AGREEMENT_PREFIX, "name")?;
        self.store.delete_agreement(&ctx, &id, &r.etag).await?;
        Ok(Response::new(DeleteServiceLevelAgreementResponse {}))
    }

    async fn get_sla_clock(
        &self,
        request: Request<GetSlaClockRequest>,
    ) -> Result<Response<SlaClock>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let id = id_of(&request.get_ref().name, CLOCK_PREFIX, "name")?;
        Ok(Response::new(clock_to_proto(&self.store.get_clock(&ctx, &id).await?)))
    }

    async fn list_sla_clocks(
        &self,
        request: Request<ListSlaClocksRequest>,
    ) -> Result<Response<ListSlaClocksResponse>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let r = request.into_inner();
        let size = page_size(r.page_size, "page_size")?;
        let parsed = filter::parse(&r.filter)?;
        let order = filter::parse_order_by(&r.order_by, CLOCK_ORDER)?.unwrap_or(("start_time", false));
        let fingerprint = PageTokens::fingerprint(&[&ctx.tenant, "clocks", &r.filter, &r.order_by]);
        let after = self.page_tokens.decode(&r.page_token, &fingerprint)?;
        let page = self.store.list_clocks(&ctx, parsed.as_ref(), order, after, size).await?;
        let next_page_token = self.page_tokens.next(&fingerprint, page.next_key)?;
        Ok(Response::new(ListSlaClocksResponse {
            sla_clocks: page.items.iter().map(clock_to_proto).collect(),
            next_page_token,
        }))
    }

    async fn explain_sla_clock(
        &self,
        request: Request<ExplainSlaClockRequest>,
    ) -> Result<Response<ExplainSlaClockResponse>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let id = id_of(&request.get_ref().name, CLOCK_PREFIX, "name")?;
        let (row, computation, calendar) = self.store.explain(&ctx, &id).await?;
        let ts = |t: chrono::DateTime<chrono::Utc>| itsm_runtime::db::timestamp(t.timestamp_micros());
        Ok(Response::new(ExplainSlaClockResponse {
            clock: Some(clock_to_proto(&row)),
            segments: computation
                .segments
                .iter()
                .map(|s| SlaClockSegment {
                    start_time: Some(ts(s.start)),
                    end_time: s.end.map(ts),
                    running: s.running,
                    counted: Some(duration_of(s.counted)),
                    cause_event: s.cause.clone(),
                    reason: s.reason.clone(),
                })
                .collect(),
            explanation: computation.explanation,
            calendar: calendar.map(|c| format!("{CALENDAR_PREFIX}{}", c.id)).unwrap_or_default(),
        }))
    }

    async fn import_open_slo(
        &self,
        request: Request<ImportOpenSloRequest>,
    ) -> Result<Response<ImportOpenSloResponse>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let r = request.into_inner();
        let mut v = Violations::new();
        if r.yaml.trim().is_empty() {
            v.add("yaml", "is required");
        } else if r.yaml.len() > 1024 * 1024 {
            v.add("yaml", "at most 1 MiB");
        }
        let service_ok = r
            .business_service
            .strip_prefix("configurationItems/")
            .is_some_and(|id| uuid::Uuid::parse_str(id).is_ok());
        if !r.business_service.is_empty() && !service_ok {
            v.add("business_service", "must be `configurationItems/{id}`");
        }
        v.into_result()?;
        let stored = self.objectives.import(&ctx, &r.yaml, &r.business_service).await?;
        let mut service_level_objectives = Vec::with_capacity(stored.len());
        for m in &stored {
            service_level_objectives.push(self.objectives.view(m).await?);
        }
        Ok(Response::new(ImportOpenSloResponse { service_level_objectives }))
    }

    async fn get_service_level_objective(
        &self,
        request: Request<GetServiceLevelObjectiveRequest>,
    ) -> Result<Response<ServiceLevelObjective>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let name = objectives::name_of(&request.get_ref().name, "name")?;
        let m = self.objectives.get(&ctx, &name).await?;
        Ok(Response::new(self.objectives.view(&m).await?))
    }

    async fn list_service_level_objectives(
        &self,
        request: Request<ListServiceLevelObjectivesRequest>,
    ) -> Result<Response<ListServiceLevelObjectivesResponse>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let business_service = &request.get_ref().business_service;
        let mut service_level_objectives = Vec::new();
        for m in self.objectives.list(&ctx, business_service).await? {
            service_level_objectives.push(self.objectives.view(&m).await?);
        }
        Ok(Response::new(ListServiceLevelObjectivesResponse { service_level_objectives }))
    }

    async fn get_slo_budget_history(
        &self,
        request: Request<GetSloBudgetHistoryRequest>,
    ) -> Result<Response<SloBudgetHistory>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let r = request.into_inner();
        let name = objectives::name_of(&r.name, "name")?;
        let query = history_query(&r)?;
        let m = self.objectives.get(&ctx, &name).await?;
        Ok(Response::new(self.objectives.budget_history(&m, &query).await?))
    }

    async fn record_sli_samples(
        &self,
        request: Request<tonic::Streaming<RecordSliSamplesRequest>>,
    ) -> Result<Response<RecordSliSamplesResponse>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let mut stream = request.into_inner();
        let mut response = RecordSliSamplesResponse::default();
        // Each message is checked and stored on its own: an earlier message's samples stay when a
        // later one is refused, and the error says which message.
        let mut index = 0;
        while let Some(message) = stream.message().await? {
            let name = objectives::name_of(&message.service_level_objective, "service_level_objective")?;
            let (recorded, incidents) =
                self.objectives.record(&ctx, &name, &message.samples).await.map_err(|e| {
                    if index == 0 { e } else { Error::invalid("messages", format!("message {index}: {e}")) }
                })?;
            response.recorded += recorded;
            response.incidents.extend(incidents);
            index += 1;
        }
        Ok(Response::new(response))
    }

    async fn get_service_level_report(
        &self,
        request: Request<GetServiceLevelReportRequest>,
    ) -> Result<Response<ServiceLevelReport>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let r = request.into_inner();
        let from = r.start_time.as_ref().map_or(0, itsm_runtime::db::micros);
        let to = r.end_time.as_ref().map_or_else(itsm_runtime::db::now_micros, itsm_runtime::db::micros);
        let mut v = Violations::new();
        if from <= 0 {
            v.add("start_time", "is required");
        } else if to <= from {
            v.add("end_time", "must be after start_time");
        }
        validate::text(&mut v, "customer", &r.customer, MAX_NAME, false);
        v.into_result()?;
        let clocks = self.store.measured_clocks(&ctx, &r.business_service, &r.customer, from, to).await?;
        let report = super::report::attainment(&clocks);
        let mut breaches: Vec<&crate::entity::clock::Model> = clocks
            .iter()
            .filter(|c| c.state == itsm_proto::delivery::SlaClockState::Breached as i32)
            .collect();
        breaches.sort_by_key(|c| std::cmp::Reverse(c.breach_time));
        Ok(Response::new(ServiceLevelReport {
            start_time: Some(itsm_runtime::db::timestamp(from)),
            end_time: Some(itsm_runtime::db::timestamp(to)),
            targets: report
                .targets
                .into_iter()
                .map(|t| TargetAttainment {
                    service_level_agreement: format!("{AGREEMENT_PREFIX}{}", t.agreement),
                    target_index: t.target_index,
                    metric: t.metric,
                    business_service: t.business_service,
                    measured: t.counts.measured,
                    met: t.counts.met,
                    breached: t.counts.breached,
                    attainment_percent: t.counts.percent(),
                })
                .collect(),
            customers: report
                .customers
                .into_iter()
                .map(|(customer, c)| CustomerAttainment {
                    customer,
                    measured: c.measured,
                    met: c.met,
                    breached: c.breached,
                    attainment_percent: c.percent(),
                })
                .collect(),
            breaches: breaches.into_iter().take(100).map(clock_to_proto).collect(),
        }))
    }

    async fn create_service_offering(
        &self,
        request: Request<CreateServiceOfferingRequest>,
    ) -> Result<Response<ServiceOffering>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let Some(o) = request.into_inner().service_offering else {
            return Err(Error::invalid("service_offering", "is required").into());
        };
        Ok(Response::new(self.catalogue.create(&ctx, &o).await?))
    }

    async fn get_service_offering(
        &self,
        request: Request<GetServiceOfferingRequest>,
    ) -> Result<Response<ServiceOffering>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let id = id_of(&request.get_ref().name, super::catalogue::PREFIX, "name")?;
        Ok(Response::new(self.catalogue.get(&ctx, &id).await?))
    }

    async fn list_service_offerings(
        &self,
        request: Request<ListServiceOfferingsRequest>,
    ) -> Result<Response<ListServiceOfferingsResponse>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let r = request.into_inner();
        let service_offerings = self.catalogue.list(&ctx, &r.business_service, &r.customer).await?;
        Ok(Response::new(ListServiceOfferingsResponse { service_offerings }))
    }

    async fn update_service_offering(
        &self,
        request: Request<UpdateServiceOfferingRequest>,
    ) -> Result<Response<ServiceOffering>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let r = request.into_inner();
        let Some(o) = r.service_offering else {
            return Err(Error::invalid("service_offering", "is required").into());
        };
        let id = id_of(&o.name, super::catalogue::PREFIX, "service_offering.name")?;
        let mask = UpdateMask::parse(r.update_mask.as_ref(), super::catalogue::UPDATABLE, "update_mask")?;
        Ok(Response::new(self.catalogue.update(&ctx, &id, &o, &|p| mask.contains(p)).await?))
    }

    async fn delete_service_offering(
        &self,
        request: Request<DeleteServiceOfferingRequest>,
    ) -> Result<Response<DeleteServiceOfferingResponse>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let r = request.into_inner();
        let id = id_of(&r.name, super::catalogue::PREFIX, "name")?;
        self.catalogue.delete(&ctx, &id, &r.etag).await?;
        Ok(Response::new(DeleteServiceOfferingResponse {}))
    }
}
