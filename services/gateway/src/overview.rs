//! Composite reads (`itsm.gateway.v1.OverviewService`): one call fans out to the services
//! concurrently, as the caller, each part with its own deadline. A part that fails is reported in
//! `part_errors` and the rest is still answered; only the part the view is about (the incident)
//! fails the call.

use std::future::Future;
use std::time::Duration;

use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use itsm_proto::change::change_service_client::ChangeServiceClient;
use itsm_proto::change::{CanDeployRequest as ChangeCanDeploy, ListChangesRequest, ListChangesetsRequest};
use itsm_proto::cmdb::cmdb_service_client::CmdbServiceClient;
use itsm_proto::cmdb::{
    AnalyzeImpactRequest, BatchGetConfigurationItemsRequest, GetConfigurationItemRequest, ImpactDirection,
};
use itsm_proto::delivery::availability_service_client::AvailabilityServiceClient;
use itsm_proto::delivery::capacity_service_client::CapacityServiceClient;
use itsm_proto::delivery::service_level_service_client::ServiceLevelServiceClient;
use itsm_proto::delivery::{
    GetAvailabilityReportRequest, ListCapacityResourcesRequest, ListOutagesRequest,
    ListServiceLevelObjectivesRequest, ListSlaClocksRequest,
};
use itsm_proto::gateway::overview_service_server::OverviewService;
use itsm_proto::gateway::{
    CanDeployRequest, CanDeployResponse, GetIncidentOverviewRequest, GetIncidentOverviewResponse,
    GetServiceHealthRequest, GetServiceHealthResponse, PartError, ServiceHealth,
};
use itsm_proto::incident::incident_service_client::IncidentServiceClient;
use itsm_proto::incident::problem_service_client::ProblemServiceClient;
use itsm_proto::incident::{
    GetIncidentRequest, GetKnownErrorRequest, Incident, ListIncidentsRequest, ListProblemsRequest,
};
use itsm_proto::servicedesk::GetTicketRequest;
use itsm_proto::servicedesk::service_desk_service_client::ServiceDeskServiceClient;
use itsm_runtime::{CallContext, Error};

use crate::proxy::Routes;

/// How long one part may take.
const PART_TIMEOUT: Duration = Duration::from_secs(5);
/// The period of the availability in a service's health: 30 days.
const AVAILABILITY_PERIOD_MICROS: i64 = 30 * 86_400_000_000;

/// How far back "recent" changes reach before the incident opened.
const RECENT_CHANGES: Duration = Duration::from_secs(72 * 3600);

pub struct OverviewApi {
    pub routes: Routes,
    pub internal_token: String,
}

fn part_error(part: &str, status: &Status) -> PartError {
    PartError { part: part.to_string(), code: status.code() as i32, message: status.message().to_string() }
}

/// Runs one part; its failure becomes a `PartError`.
async fn part<T>(
    name: &str,
    call: impl Future<Output = Result<T, Status>>,
    errors: &mut Vec<PartError>,
) -> Option<T> {
    match call.await {
        Ok(value) => Some(value),
        Err(status) => {
            errors.push(part_error(name, &status));
            None
        }
    }
}

fn valid_ci(name: &str, field: &str) -> Result<(), Error> {
    let ok = name.strip_prefix("configurationItems/").is_some_and(|id| uuid::Uuid::parse_str(id).is_ok());
    if ok { Ok(()) } else { Err(Error::invalid(field, "must be `configurationItems/{uuid}`")) }
}

impl OverviewApi {
    /// The SLOs that measure `service` (imported with it as their business service).
    async fn objectives(
        &self,
        ctx: &CallContext,
        service: &str,
    ) -> Result<Vec<itsm_proto::delivery::ServiceLevelObjective>, Status> {
        let mut client =
            ServiceLevelServiceClient::new(self.channel("itsm.delivery.v1.ServiceLevelService")?);
        // Filtered by the delivery service: each SLO's budget costs a query there.
        let request = ListServiceLevelObjectivesRequest { business_service: service.to_string() };
        let listed = client.list_service_level_objectives(self.request(ctx, request)).await?;
        Ok(listed.into_inner().service_level_objectives)
    }

    fn channel(&self, service: &str) -> Result<Channel, Status> {
        self.routes
            .backend(service)
            .map(|(_, channel)| channel)
            .ok_or_else(|| Status::unavailable(format!("no route to {service}")))
    }

    /// A request to a backend as the caller, with the part's deadline.
    fn request<T>(&self, ctx: &CallContext, message: T) -> Request<T> {
        let mut request = Request::new(message);
        request.set_timeout(PART_TIMEOUT);
        ctx.apply(request.metadata_mut(), &self.internal_token);
        request
    }

    /// Open incidents on a business service, highest priority first.
    async fn open_incidents(&self, ctx: &CallContext, service: &str) -> Result<Vec<Incident>, Status> {
        let mut client = IncidentServiceClient::new(self.channel("itsm.incident.v1.IncidentService")?);
        let filter = format!("business_service = \"{service}\" AND state < RESOLVED");
        let listed = client
            .list_incidents(self.request(
                ctx,
                ListIncidentsRequest {
                    filter,
                    order_by: "priority".into(),
                    page_size: 100,
                    ..Default::default()
                },
            ))
            .await?;
        Ok(listed.into_inner().incidents)
    }
}

#[tonic::async_trait]
impl OverviewService for OverviewApi {
    async fn get_incident_overview(
        &self,
        request: Request<GetIncidentOverviewRequest>,
    ) -> Result<Response<GetIncidentOverviewResponse>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let name = request.into_inner().name;
        let mut incidents = IncidentServiceClient::new(self.channel("itsm.incident.v1.IncidentService")?);
        let incident = incidents
            .get_incident(self.request(&ctx, GetIncidentRequest { name: name.clone() }))
            .await?
            .into_inner();
        let mut cis: Vec<String> = Vec::new();
        if !incident.business_service.is_empty() {
            cis.push(incident.business_service.clone());
        }
        cis.extend(incident.configuration_items.iter().cloned());

        let ticket = async {
            if incident.service_desk_ticket.is_empty() {
                return Ok(None);
            }
            let mut client =
                ServiceDeskServiceClient::new(self.channel("itsm.servicedesk.v1.ServiceDeskService")?);
            let ticket = client
                .get_ticket(
                    self.request(&ctx, GetTicketRequest { name: incident.service_desk_ticket.clone() }),
                )
                .await?;
            Ok(Some(ticket.into_inner()))
        };
        let items = async {
            if cis.is_empty() {
                return Ok(Vec::new());
            }
            let mut client = CmdbServiceClient::new(self.channel("itsm.cmdb.v1.CmdbService")?);
            let found = client
                .batch_get_configuration_items(
                    self.request(&ctx, BatchGetConfigurationItemsRequest { names: cis.clone() }),
                )
                .await?;
            Ok(found.into_inner().configuration_items)
        };
        let clocks = async {
            let mut client =
                ServiceLevelServiceClient::new(self.channel("itsm.delivery.v1.ServiceLevelService")?);
            let filter = format!("record = \"{}\"", incident.name);
            let listed = client
                .list_sla_clocks(self.request(&ctx, ListSlaClocksRequest { filter, ..Default::default() }))
                .await?;
            Ok(listed.into_inner().sla_clocks)
        };
        let changes = async {
            if cis.is_empty() {
                return Ok(Vec::new());
            }
            let opened = incident.open_time.as_ref().map_or(0, |t| t.seconds);
            let since = chrono::DateTime::from_timestamp(opened - RECENT_CHANGES.as_secs() as i64, 0)
                .map(|t| t.to_rfc3339())
                .unwrap_or_default();
            let any_ci: Vec<String> =
                cis.iter().map(|ci| format!("configuration_items = \"{ci}\"")).collect();
            let filter = format!("({}) AND planned_start_time >= \"{since}\"", any_ci.join(" OR "));
            let mut client = ChangeServiceClient::new(self.channel("itsm.change.v1.ChangeService")?);
            let listed = client
                .list_changes(
                    self.request(&ctx, ListChangesRequest { filter, page_size: 100, ..Default::default() }),
                )
                .await?;
            Ok(listed.into_inner().changes)
        };
        let (ticket, items, clocks, changes) = tokio::join!(ticket, items, clocks, changes);
        let mut part_errors = Vec::new();
        let ticket = part("ticket", async { ticket }, &mut part_errors).await.flatten();
        let configuration_items =
            part("configuration_items", async { items }, &mut part_errors).await.unwrap_or_default();
        let sla_clocks = part("sla_clocks", async { clocks }, &mut part_errors).await.unwrap_or_default();
        let recent_changes =
            part("recent_changes", async { changes }, &mut part_errors).await.unwrap_or_default();
        // The changesets that implemented those changes (who changed what, and when).
        let changesets = async {
            if recent_changes.is_empty() {
                return Ok(Vec::new());
            }
            let any_change: Vec<String> =
                recent_changes.iter().map(|c| format!("changes = \"{}\"", c.name)).collect();
            let mut client = ChangeServiceClient::new(self.channel("itsm.change.v1.ChangeService")?);
            let listed = client
                .list_changesets(self.request(
                    &ctx,
                    ListChangesetsRequest {
                        filter: any_change.join(" OR "),
                        page_size: 100,
                        ..Default::default()
                    },
                ))
                .await?;
            Ok(listed.into_inner().changesets)
        };
        let recent_changesets =
            part("recent_changesets", changesets, &mut part_errors).await.unwrap_or_default();
        let impacted = async {
            let mut client = CmdbServiceClient::new(self.channel("itsm.cmdb.v1.CmdbService")?);
            let mut services = std::collections::BTreeSet::new();
            for ci in &incident.configuration_items {
                let answer = client
                    .analyze_impact(self.request(
                        &ctx,
                        AnalyzeImpactRequest {
                            configuration_item: ci.clone(),
                            direction: ImpactDirection::Downstream as i32,
                            max_items: 1,
                            ..Default::default()
                        },
                    ))
                    .await?;
                services
                    .extend(answer.into_inner().business_services.into_iter().map(|s| s.configuration_item));
            }
            Ok(services.into_iter().collect::<Vec<_>>())
        };
        let problems = async {
            let mut client = ProblemServiceClient::new(self.channel("itsm.incident.v1.ProblemService")?);
            let filter = format!("incidents = \"{}\"", incident.name);
            let listed = client
                .list_problems(self.request(&ctx, ListProblemsRequest { filter, ..Default::default() }))
                .await?;
            let problems = listed.into_inner().problems;
            let mut names: std::collections::BTreeSet<String> =
                incident.known_errors.iter().cloned().collect();
            names.extend(problems.iter().map(|p| p.known_error.clone()).filter(|k| !k.is_empty()));
            let mut known_errors = Vec::new();
            for name in names {
                let found = client.get_known_error(self.request(&ctx, GetKnownErrorRequest { name })).await?;
                known_errors.push(found.into_inner());
            }
            Ok((problems, known_errors))
        };
        let (impacted, problems) = tokio::join!(impacted, problems);
        let impacted_business_services =
            part("impacted_business_services", async { impacted }, &mut part_errors)
                .await
                .unwrap_or_default();
        let (problems, known_errors) =
            part("problems", async { problems }, &mut part_errors).await.unwrap_or_default();
        Ok(Response::new(GetIncidentOverviewResponse {
            incident: Some(incident),
            ticket,
            configuration_items,
            sla_clocks,
            recent_changes,
            part_errors,
            recent_changesets,
            impacted_business_services,
            problems,
            known_errors,
        }))
    }

    async fn get_service_health(
        &self,
        request: Request<GetServiceHealthRequest>,
    ) -> Result<Response<GetServiceHealthResponse>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let service = request.into_inner().service;
        valid_ci(&service, "service")?;
        let ci = async {
            let mut client = CmdbServiceClient::new(self.channel("itsm.cmdb.v1.CmdbService")?);
            let found =
                client
                    .get_configuration_item(self.request(
                        &ctx,
                        GetConfigurationItemRequest { name: service.clone(), read_time: None },
                    ))
                    .await?;
            Ok(found.into_inner())
        };
        let incidents = self.open_incidents(&ctx, &service);
        let outages = async {
            let mut client =
                AvailabilityServiceClient::new(self.channel("itsm.delivery.v1.AvailabilityService")?);
            let filter = format!("service = \"{service}\"");
            let listed = client
                .list_outages(self.request(&ctx, ListOutagesRequest { filter, ..Default::default() }))
                .await?;
            // Ongoing: not ended yet.
            Ok(listed.into_inner().outages.into_iter().filter(|o| o.end_time.is_none()).collect::<Vec<_>>())
        };
        let objectives = self.objectives(&ctx, &service);
        let availability = async {
            let mut client =
                AvailabilityServiceClient::new(self.channel("itsm.delivery.v1.AvailabilityService")?);
            let now = itsm_runtime::db::now_micros();
            let report = client
                .get_availability_report(self.request(
                    &ctx,
                    GetAvailabilityReportRequest {
                        service: service.clone(),
                        start_time: Some(itsm_runtime::db::timestamp(now - AVAILABILITY_PERIOD_MICROS)),
                        end_time: Some(itsm_runtime::db::timestamp(now)),
                    },
                ))
                .await?;
            Ok(report.into_inner())
        };
        let upcoming = async {
            let mut client = ChangeServiceClient::new(self.channel("itsm.change.v1.ChangeService")?);
            let filter = format!("configuration_items = \"{service}\" AND state = SCHEDULED");
            let listed = client
                .list_changes(self.request(&ctx, ListChangesRequest { filter, ..Default::default() }))
                .await?;
            Ok(listed.into_inner().changes)
        };
        let changes = async {
            let mut client = ChangeServiceClient::new(self.channel("itsm.change.v1.ChangeService")?);
            let filter = format!("configuration_items = \"{service}\" AND state = IMPLEMENT");
            let listed = client
                .list_changes(self.request(&ctx, ListChangesRequest { filter, ..Default::default() }))
                .await?;
            Ok(listed.into_inner().changes)
        };
        let capacity = async {
            // The service's dependencies (upstream: what could cause it to fail), then the
            // warning resources among them.
            let mut cmdb = CmdbServiceClient::new(self.channel("itsm.cmdb.v1.CmdbService")?);
            let dependencies = cmdb
                .analyze_impact(self.request(
                    &ctx,
                    AnalyzeImpactRequest {
                        configuration_item: service.clone(),
                        direction: ImpactDirection::Upstream as i32,
                        max_depth: 10,
                        max_items: 10_000,
                        ..Default::default()
                    },
                ))
                .await?
                .into_inner();
            let mut names: std::collections::HashSet<String> =
                dependencies.items.into_iter().map(|i| i.configuration_item).collect();
            names.insert(service.clone());
            let mut client = CapacityServiceClient::new(self.channel("itsm.delivery.v1.CapacityService")?);
            let mut warnings = Vec::new();
            let mut page_token = String::new();
            loop {
                let page = client
                    .list_capacity_resources(self.request(
                        &ctx,
                        ListCapacityResourcesRequest {
                            page_size: 1000,
                            page_token: page_token.clone(),
                            filter: "warning = \"true\"".into(),
                            order_by: String::new(),
                        },
                    ))
                    .await?
                    .into_inner();
                warnings.extend(
                    page.capacity_resources.into_iter().filter(|r| names.contains(&r.configuration_item)),
                );
                if page.next_page_token.is_empty() {
                    break;
                }
                page_token = page.next_page_token;
            }
            Ok(warnings)
        };
        let (ci, incidents, outages, changes, objectives, availability, upcoming, capacity) =
            tokio::join!(ci, incidents, outages, changes, objectives, availability, upcoming, capacity);
        let mut part_errors = Vec::new();
        let ci = part("service", async { ci }, &mut part_errors).await;
        let service_level_objectives =
            part("service_level_objectives", async { objectives }, &mut part_errors)
                .await
                .unwrap_or_default();
        let availability = part("availability", async { availability }, &mut part_errors).await;
        let upcoming_changes =
            part("upcoming_changes", async { upcoming }, &mut part_errors).await.unwrap_or_default();
        let capacity_warnings =
            part("capacity_warnings", async { capacity }, &mut part_errors).await.unwrap_or_default();
        let open_incidents = part("open_incidents", async { incidents }, &mut part_errors).await;
        let ongoing_outages = part("ongoing_outages", async { outages }, &mut part_errors).await;
        let active_changes =
            part("active_changes", async { changes }, &mut part_errors).await.unwrap_or_default();
        let serious =
            open_incidents.as_ref().is_some_and(|list| list.iter().any(|i| (1..=2).contains(&i.priority)));
        let health = match (&open_incidents, &ongoing_outages) {
            (_, Some(outages)) if !outages.is_empty() => ServiceHealth::Degraded,
            (Some(_), _) if serious => ServiceHealth::Degraded,
            (Some(_), Some(_)) => ServiceHealth::Healthy,
            // Without the incidents or the outages it cannot be told healthy.
            _ => ServiceHealth::Unknown,
        };
        Ok(Response::new(GetServiceHealthResponse {
            service: ci,
            health: health as i32,
            open_incidents: open_incidents.unwrap_or_default(),
            ongoing_outages: ongoing_outages.unwrap_or_default(),
            active_changes,
            read_time: Some(itsm_runtime::db::timestamp(itsm_runtime::db::now_micros())),
            part_errors,
            service_level_objectives,
            availability,
            upcoming_changes,
            capacity_warnings,
        }))
    }

    async fn can_deploy(
        &self,
        request: Request<CanDeployRequest>,
    ) -> Result<Response<CanDeployResponse>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let r = request.into_inner();
        valid_ci(&r.service, "service")?;
        let change = async {
            let mut client = ChangeServiceClient::new(self.channel("itsm.change.v1.ChangeService")?);
            let answer = client
                .can_deploy(self.request(
                    &ctx,
                    ChangeCanDeploy {
                        configuration_item: r.service.clone(),
                        environment: r.environment.clone(),
                        deploy_time: None,
                    },
                ))
                .await?;
            Ok(answer.into_inner())
        };
        let incidents = self.open_incidents(&ctx, &r.service);
        // The error-budget policy: no deployment while an SLO of the service has spent its budget.
        let budget = self.objectives(&ctx, &r.service);
        let (change, incidents, budget) = tokio::join!(change, incidents, budget);
        let mut part_errors = Vec::new();
        let mut reasons = Vec::new();
        let mut blocked = false;
        if let Some(answer) = part("change_window", async { change }, &mut part_errors).await {
            blocked |= !answer.allowed;
            reasons.extend(answer.reasons);
        }
        if let Some(open) = part("open_incidents", async { incidents }, &mut part_errors).await {
            for incident in open.iter().filter(|i| (1..=2).contains(&i.priority)) {
                blocked = true;
                reasons.push(format!("{} (P{}) is open on the service", incident.name, incident.priority));
            }
        }
        if let Some(objectives) = part("error_budget", async { budget }, &mut part_errors).await {
            for slo in &objectives {
                match slo.error_budget_remaining {
                    Some(left) if left <= 0.0 => {
                        blocked = true;
                        reasons.push(format!(
                            "{} has spent its error budget ({:.1} % left): deployments wait for it to recover",
                            slo.name,
                            left * 100.0
                        ));
                    }
                    Some(left) => {
                        reasons.push(format!("{}: {:.1} % of the error budget left", slo.name, left * 100.0));
                    }
                    None => {}
                }
            }
        }
        for e in &part_errors {
            reasons.push(format!("{} could not be checked: {}", e.part, e.message));
        }
        Ok(Response::new(CanDeployResponse {
            allowed: !blocked && part_errors.is_empty(),
            reasons,
            part_errors,
        }))
    }
}
