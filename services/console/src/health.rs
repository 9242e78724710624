//! Service health: per business service, open incidents, SLA attainment, SLO error budgets (now
//! and over time), availability, capacity forecast and cost.
//!
//! `/health` lists the CMDB's business services, each with a status line; `/health/services/{id}`
//! shows one service. Like the gateway's composite views, each part of a page is its own call, and
//! a part that fails says "not available: <reason>" in its section while the rest of the page is
//! shown: only the list itself, a missing service, an expired session or a role the gateway refuses
//! the overview end in an error page.
//!
//! The plots are inline SVG drawn on the server (no script, no inline style): their geometry —
//! scales, axis ticks, polyline points, bars, the threshold line — is plain functions over numbers
//! at the end of this file, tested without gRPC types. Every plot has `role="img"`, an
//! `aria-label` and its numbers in a table under a `<details>`.

use std::collections::{BTreeMap, HashMap};

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use chrono::{DateTime, Datelike, Utc};
use serde::Deserialize;
use tonic::{Code, Status};

use itsm_proto::cmdb::{AnalyzeImpactRequest, ImpactDirection, ListConfigurationItemsRequest};
use itsm_proto::common::Money;
use itsm_proto::delivery::availability_service_client::AvailabilityServiceClient;
use itsm_proto::delivery::capacity_service_client::CapacityServiceClient;
use itsm_proto::delivery::finance_service_client::FinanceServiceClient;
use itsm_proto::delivery::service_level_service_client::ServiceLevelServiceClient;
use itsm_proto::delivery::{
    AvailabilityReport, CapacityForecast, CapacityResource, CostPool, GetAvailabilityReportRequest,
    GetCapacityForecastRequest, GetServiceLevelReportRequest, GetSloBudgetHistoryRequest,
    GetTotalCostOfOwnershipRequest, ListCapacityResourcesRequest, ListCostItemsRequest, ListOutagesRequest,
    ListServiceLevelAgreementsRequest, Outage, OutageKind, ServiceLevelObjective, SloBudgetHistory,
    TargetAttainment, TargetMetric, TotalCostOfOwnership,
};
use itsm_proto::gateway::{GetServiceHealthRequest, GetServiceHealthResponse, PartError, ServiceHealth};
use itsm_proto::incident::{Incident, IncidentState, ListIncidentsRequest};

use crate::AppState;
use crate::calls::{authed, page_error};
use crate::listing::{PageQuery, Pager, pager, query_escape};
use crate::pages::{HEALTH_ROLES, Layout, PageError, Section, render};
use crate::session::Session;
use crate::views::{TimeView, is_record_number, number_of, time_view};

/// Resource-name prefix of configuration items.
const CI_PREFIX: &str = "configurationItems/";
/// The CMDB class of business services (the filter includes its subclasses).
const BUSINESS_SERVICE_CLASS: &str = "business_service";
/// The period status lines, SLA attainment and availability cover: the last 30 days, as the
/// gateway's overview reports availability.
const PERIOD_SECONDS: i64 = 30 * 86_400;
/// Business services per page of `/health`.
const SERVICES_PER_PAGE: i32 = 20;
/// Pages of open incidents (1000 each) the status lines count at most.
const MAX_INCIDENT_PAGES: usize = 5;
/// Open incidents the gateway's overview returns at most.
const OVERVIEW_INCIDENT_LIMIT: usize = 100;
/// Outages the availability section lists, newest first.
const OUTAGES_SHOWN: i32 = 10;
/// Capacity resources the page forecasts at most (those with an open warning first).
const MAX_FORECASTS: usize = 6;
/// Pages of capacity resources (1000 each) read at most to find the service's.
const MAX_RESOURCE_PAGES: usize = 10;
/// Months of cost the page shows, ending with the current one.
const COST_MONTHS: u32 = 6;
/// Points a line of a plot draws at most (a month of hourly steps is 720).
const MAX_PLOT_POINTS: usize = 360;
/// Rows a plot's table shows at most per series.
const MAX_TABLE_ROWS: usize = 48;
/// Width of the error budget meter, in its viewBox.
const METER_WIDTH: f64 = 320.0;
/// SLOs whose error budget history the page draws at most (in the overview's order).
const MAX_BUDGET_HISTORIES: usize = 12;

/// This area's routes.
pub fn routes() -> Router<AppState> {
    Router::new().route("/health", get(services)).route("/health/services/{id}", get(service))
}

/// 403 for roles that do not read service health.
fn check_role(session: &Session) -> Result<(), PageError> {
    if session.data.has_any_role(HEALTH_ROLES) {
        return Ok(());
    }
    Err(PageError::Forbidden(
        "Service health is for those who work incidents, problems, changes and services.".into(),
    ))
}

/// Why a call's part of a page is missing, as its section says it.
fn unavailable(status: &Status) -> String {
    if status.message().is_empty() {
        status.code().description().to_string()
    } else {
        status.message().to_string()
    }
}

/// Why a part of the gateway's overview is missing.
fn part_reason(error: &PartError) -> String {
    if error.message.is_empty() {
        Code::from(error.code).description().to_string()
    } else {
        error.message.clone()
    }
}

fn timestamp(seconds: i64) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds, nanos: 0 }
}

/// A number as a page shows it, with a class for its colour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Figure {
    pub text: String,
    pub class: &'static str,
}

impl Figure {
    fn new(text: impl Into<String>, class: &'static str) -> Self {
        Self { text: text.into(), class }
    }

    fn not_available() -> Self {
        Self::new("not available", "status-unavailable")
    }
}

// ---- the list of business services -----------------------------------------------------------

/// One business service's status line.
pub struct ServiceLine {
    pub id: String,
    pub name: String,
    pub owner: String,
    pub incidents: Figure,
    pub sla: Figure,
    pub availability: Figure,
}

/// `/health`: the business services with their status lines.
#[derive(Template)]
#[template(path = "health/services.html")]
pub struct ServicesPage {
    layout: Layout,
    services: Vec<ServiceLine>,
    /// The parts of the status lines that could not be had, with why.
    problems: Vec<String>,
    pager: Pager,
}

/// Open incidents per business service; `complete` is false when there were more than the
/// status lines count (the counts are then lower bounds).
struct IncidentCounts {
    by_service: HashMap<String, usize>,
    complete: bool,
}

/// Met, breached and measured SLA clocks of one business service in a period.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Attainment {
    pub measured: i64,
    pub met: i64,
    pub breached: i64,
}

impl Attainment {
    fn add(&mut self, other: Attainment) {
        self.measured += other.measured;
        self.met += other.met;
        self.breached += other.breached;
    }

    /// Met of measured, in percent; `None` when nothing was measured.
    pub fn percent(&self) -> Option<f64> {
        (self.measured > 0).then(|| self.met as f64 * 100.0 / self.measured as f64)
    }
}

/// GET `/health`: the business services, each with its open incidents, SLA attainment and
/// availability over the last 30 days.
pub async fn services(
    State(state): State<AppState>,
    session: Session,
    Query(page): Query<PageQuery>,
) -> Result<Response, PageError> {
    check_role(&session)?;
    let request = ListConfigurationItemsRequest {
        page_size: SERVICES_PER_PAGE,
        page_token: page.page.clone(),
        filter: format!("ci_class = \"{BUSINESS_SERVICE_CLASS}\""),
        order_by: "display_name".into(),
    };
    let listed = state
        .gateway
        .cmdb()
        .list_configuration_items(authed(&session.data, request))
        .await
        .map_err(|status| page_error(&status, &session.here))?
        .into_inner();
    let names: Vec<String> = listed.configuration_items.iter().map(|ci| ci.name.clone()).collect();
    let now = Utc::now();
    let (incidents, attainment, availability) = if names.is_empty() {
        (
            Ok(IncidentCounts { by_service: HashMap::new(), complete: true }),
            Ok(HashMap::new()),
            HashMap::new(),
        )
    } else {
        tokio::join!(
            open_incident_counts(&state, &session, &names),
            attainment_by_service(&state, &session, now),
            availability_by_service(&state, &session, &names, now),
        )
    };

    let mut problems = Vec::new();
    if let Err(why) = &incidents {
        problems.push(format!("Open incidents: not available: {why}"));
    }
    if let Err(why) = &attainment {
        problems.push(format!("SLA attainment: not available: {why}"));
    }
    let mut availability_problems: Vec<&String> =
        availability.values().filter_map(|answer| answer.as_ref().err()).collect();
    availability_problems.sort();
    availability_problems.dedup();
    for why in availability_problems {
        problems.push(format!("Availability: not available: {why}"));
    }

    let mut lines = Vec::with_capacity(listed.configuration_items.len());
    for ci in &listed.configuration_items {
        let incidents = match &incidents {
            Ok(counts) => {
                let count = counts.by_service.get(&ci.name).copied().unwrap_or(0);
                let text = if counts.complete { count.to_string() } else { format!("{count}+") };
                Figure::new(text, if count == 0 { "status-ok" } else { "status-warn" })
            }
            Err(_) => Figure::not_available(),
        };
        let sla = match &attainment {
            Ok(by_service) => attainment_figure(&by_service.get(&ci.name).copied().unwrap_or_default()),
            Err(_) => Figure::not_available(),
        };
        let availability = match availability.get(&ci.name) {
            Some(Ok(report)) => availability_figure(report),
            _ => Figure::not_available(),
        };
        lines.push(ServiceLine {
            id: ci.name.strip_prefix(CI_PREFIX).unwrap_or(&ci.name).to_string(),
            name: if ci.display_name.is_empty() { ci.name.clone() } else { ci.display_name.clone() },
            owner: ci.owner.clone(),
            incidents,
            sla,
            availability,
        });
    }
    let view = ServicesPage {
        layout: Layout::new("Service health", Some(&session.data), Section::Health),
        services: lines,
        problems,
        pager: pager("/health", &page, &listed.next_page_token),
    };
    Ok(render(StatusCode::OK, &view))
}

/// Open incidents of `services`, counted per service.
async fn open_incident_counts(
    state: &AppState,
    session: &Session,
    services: &[String],
) -> Result<IncidentCounts, String> {
    // One query for the page: at most 20 services, well within the filter's 64 comparisons.
    let any_service: Vec<String> = services.iter().map(|s| format!("business_service = \"{s}\"")).collect();
    let filter = format!("state < RESOLVED AND ({})", any_service.join(" OR "));
    let mut client = state.gateway.incidents();
    let mut counts = IncidentCounts { by_service: HashMap::new(), complete: true };
    let mut page_token = String::new();
    for _ in 0..MAX_INCIDENT_PAGES {
        let request = ListIncidentsRequest {
            page_size: 1000,
            page_token: page_token.clone(),
            filter: filter.clone(),
            ..Default::default()
        };
        let page = client
            .list_incidents(authed(&session.data, request))
            .await
            .map_err(|status| unavailable(&status))?
            .into_inner();
        for incident in &page.incidents {
            *counts.by_service.entry(incident.business_service.clone()).or_default() += 1;
        }
        if page.next_page_token.is_empty() {
            return Ok(counts);
        }
        page_token = page.next_page_token;
    }
    counts.complete = false;
    Ok(counts)
}

/// SLA attainment of every business service over the last 30 days, from one report.
async fn attainment_by_service(
    state: &AppState,
    session: &Session,
    now: DateTime<Utc>,
) -> Result<HashMap<String, Attainment>, String> {
    let request = GetServiceLevelReportRequest {
        start_time: Some(timestamp(now.timestamp() - PERIOD_SECONDS)),
        end_time: Some(timestamp(now.timestamp())),
        ..Default::default()
    };
    let report = ServiceLevelServiceClient::new(state.gateway.channel())
        .get_service_level_report(authed(&session.data, request))
        .await
        .map_err(|status| unavailable(&status))?
        .into_inner();
    let mut by_service: HashMap<String, Attainment> = HashMap::new();
    for target in &report.targets {
        by_service.entry(target.business_service.clone()).or_default().add(attainment_of(target));
    }
    Ok(by_service)
}

/// The availability report of each of `services` over the last 30 days, asked concurrently; a
/// service whose report could not be had maps to why.
async fn availability_by_service(
    state: &AppState,
    session: &Session,
    services: &[String],
    now: DateTime<Utc>,
) -> HashMap<String, Result<AvailabilityReport, String>> {
    let mut calls = tokio::task::JoinSet::new();
    for service in services {
        let mut client = AvailabilityServiceClient::new(state.gateway.channel());
        let request = authed(
            &session.data,
            GetAvailabilityReportRequest {
                service: service.clone(),
                start_time: Some(timestamp(now.timestamp() - PERIOD_SECONDS)),
                end_time: Some(timestamp(now.timestamp())),
            },
        );
        let service = service.clone();
        calls.spawn(async move {
            let answer = client.get_availability_report(request).await;
            (service, answer.map(tonic::Response::into_inner).map_err(|status| unavailable(&status)))
        });
    }
    let mut reports = HashMap::new();
    while let Some(joined) = calls.join_next().await {
        match joined {
            Ok((service, answer)) => {
                reports.insert(service, answer);
            }
            // The service's line then says "not available".
            Err(err) => tracing::error!(error = %err, "availability report task failed"),
        }
    }
    reports
}

fn attainment_of(target: &TargetAttainment) -> Attainment {
    Attainment {
        measured: i64::from(target.measured),
        met: i64::from(target.met),
        breached: i64::from(target.breached),
    }
}

/// Attainment as a figure: green without breaches, amber with some; "no clocks" when nothing
/// was measured.
fn attainment_figure(attainment: &Attainment) -> Figure {
    match attainment.percent() {
        None => Figure::new("no clocks measured", "status-none"),
        Some(percent) => Figure::new(
            percent_text(percent, 1),
            if attainment.breached == 0 { "status-ok" } else { "status-warn" },
        ),
    }
}

/// Availability as a figure: green when it meets the agreement's target, red when not, plain
/// without a target.
fn availability_figure(report: &AvailabilityReport) -> Figure {
    let class = if report.target_basis_points <= 0 {
        "status-none"
    } else if report.target_met {
        "status-ok"
    } else {
        "status-bad"
    };
    Figure::new(percent_text(report.availability_percent, 2), class)
}

// ---- one business service --------------------------------------------------------------------

/// `/health/services/{id}?currency=EUR`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ServiceQuery {
    /// The currency costs are reported in (default: that of the most recent cost items).
    pub currency: String,
}

/// An open incident as the page lists it.
pub struct IncidentRow {
    pub number: String,
    /// Whether `number` can go into the incident page's address.
    pub linkable: bool,
    pub summary: String,
    pub state: &'static str,
    pub opened: Option<TimeView>,
    pub assignee: String,
    pub major: bool,
}

/// The open incidents of one priority.
pub struct PriorityGroup {
    /// `p1`…`p5`, or `none`.
    pub id: String,
    pub label: String,
    pub incidents: Vec<IncidentRow>,
}

/// The open incidents section.
pub struct IncidentsView {
    pub count: String,
    pub groups: Vec<PriorityGroup>,
}

/// Attainment of one target of an agreement.
pub struct AttainmentRow {
    pub agreement: String,
    pub target: String,
    pub measured: String,
    pub met: String,
    pub breached: String,
    pub attainment: Figure,
}

/// The SLA attainment section.
pub struct SlaView {
    pub rows: Vec<AttainmentRow>,
    pub overall: Figure,
}

/// How much of an SLO's error budget is left.
pub struct BudgetView {
    pub text: String,
    pub class: &'static str,
    /// Width of the meter's filled part, in its viewBox (of `METER_WIDTH`).
    pub fill: String,
}

/// One burn-rate alert as its table row shows it.
pub struct AlertRow {
    pub windows: String,
    pub factor: String,
    pub long_rate: String,
    pub short_rate: String,
    pub firing: bool,
    pub incident: String,
}

/// One bar of a bar chart, in viewBox units.
pub struct BarView {
    pub x: String,
    pub y: String,
    pub width: String,
    pub height: String,
    pub class: &'static str,
    /// What the bar says, for its `<title>`.
    pub title: String,
}

/// A horizontal mark over part of a plot (an alert's factor), in viewBox units.
pub struct MarkView {
    pub x1: String,
    pub x2: String,
    pub y: String,
    pub label: String,
    pub label_x: String,
    pub label_y: String,
}

/// The burn-rate bars of an SLO.
pub struct BurnPlot {
    pub axes: Axes,
    pub bars: Vec<BarView>,
    pub factors: Vec<MarkView>,
}

/// The plot of an SLO's error budget over time.
pub struct BudgetPlot {
    pub axes: Axes,
    /// `points` of the remaining budget's line.
    pub line: String,
    /// The zero line: below it the budget is overspent.
    pub zero: LineView,
}

/// One point of an SLO's error budget history as its table row shows it.
pub struct BudgetRow {
    pub time: String,
    pub remaining: String,
    pub consumed: String,
    pub burn_rate: String,
}

/// An SLO's error budget over time.
pub struct BudgetHistoryView {
    /// The period the history covers ("from … to …").
    pub period: String,
    /// The step between points, for people ("10 min").
    pub step: String,
    /// `None` when the period has no point (no SLI samples).
    pub plot: Option<BudgetPlot>,
    pub aria_label: String,
    /// What the line shows, in words: where it starts, where it ends, its lowest point.
    pub summary: String,
    pub rows: Vec<BudgetRow>,
    pub table_note: String,
}

/// An SLO with its error budget and burn rates.
pub struct SloView {
    pub id: String,
    pub name: String,
    pub target: String,
    pub window: String,
    pub method: String,
    pub budget: Option<BudgetView>,
    /// The budget over time, or why it is not available.
    pub history: Result<BudgetHistoryView, String>,
    pub burn: Option<BurnPlot>,
    pub alerts: Vec<AlertRow>,
    pub aria_label: String,
    pub meter_width: String,
}

/// The availability section's report.
pub struct AvailabilityView {
    pub percent: Figure,
    pub has_target: bool,
    pub target: String,
    pub target_met: bool,
    pub period: String,
    pub agreed: String,
    pub downtime: String,
    pub degraded: String,
    pub planned: String,
    pub breaks: String,
    pub mtbf: String,
    pub mtrs: String,
}

/// An outage as the availability section lists it.
pub struct OutageView {
    pub kind: &'static str,
    pub planned: bool,
    pub started: Option<TimeView>,
    pub ended: Option<TimeView>,
    pub description: String,
    pub cause: String,
    /// The cause's incident page ("" when the cause is not an incident).
    pub cause_href: String,
}

/// A horizontal line across a plot with its label (a threshold), in viewBox units.
pub struct LineView {
    pub x1: String,
    pub x2: String,
    pub y: String,
    pub label: String,
    pub label_x: String,
    pub label_y: String,
}

/// A vertical marker at a time (the expected crossing), with its label, in viewBox units.
pub struct MarkerView {
    pub x: String,
    pub y1: String,
    pub y2: String,
    pub label: String,
    pub label_x: String,
    pub label_y: String,
    pub anchor: &'static str,
}

/// A capacity resource's plot.
pub struct CapacityPlot {
    pub axes: Axes,
    pub history: String,
    pub forecast: String,
    pub band: String,
    pub threshold: LineView,
    pub crossing: Option<MarkerView>,
}

/// When a threshold may be crossed.
pub struct CrossingView {
    pub expected: Option<TimeView>,
    pub earliest: Option<TimeView>,
    pub latest: Option<TimeView>,
}

/// A row of a capacity plot's table.
pub struct CapacityRow {
    pub time: String,
    pub value: String,
    pub low: String,
    pub high: String,
}

/// One capacity resource with its forecast.
pub struct CapacityView {
    pub id: String,
    pub name: String,
    pub ci: String,
    pub metric: String,
    pub threshold: String,
    pub current: String,
    pub warning: bool,
    /// Why the forecast could not be had ("" = it could).
    pub unavailable: String,
    pub plot: Option<CapacityPlot>,
    pub crossing: CrossingView,
    pub has_crossing: bool,
    pub level: String,
    pub seasonal: bool,
    /// Why there is no forecast line although there is history ("" otherwise).
    pub note: String,
    pub aria_label: String,
    pub history_rows: Vec<CapacityRow>,
    pub forecast_rows: Vec<CapacityRow>,
    pub table_note: String,
}

/// The capacity section.
pub struct CapacitySection {
    pub resources: Vec<CapacityView>,
    /// Resources of the service not forecast on the page.
    pub more: usize,
}

/// One month of a service's cost.
pub struct MonthCost {
    pub label: String,
    pub direct: String,
    pub dedicated: String,
    pub shared: String,
    pub total: String,
}

/// One cost pool's share.
pub struct PoolRow {
    pub pool: &'static str,
    pub amount: String,
}

/// A link to the costs in another currency.
pub struct CurrencyLink {
    pub code: String,
    pub href: String,
}

/// A bar chart with its axes.
pub struct BarPlot {
    pub axes: Axes,
    pub bars: Vec<BarView>,
}

/// The cost section.
pub struct CostView {
    pub currency: String,
    pub period: String,
    pub months: Vec<MonthCost>,
    pub pools: Vec<PoolRow>,
    pub total: String,
    pub plot: Option<BarPlot>,
    pub other_currencies: Vec<CurrencyLink>,
    /// No cost items are recorded at all.
    pub nothing_recorded: bool,
    pub aria_label: String,
}

/// `/health/services/{id}`: each section holds its view, or why its part is not available.
#[derive(Template)]
#[template(path = "health/service.html")]
pub struct ServicePage {
    layout: Layout,
    name: String,
    description: String,
    owner: String,
    health: Figure,
    read_at: Option<TimeView>,
    incidents: Result<IncidentsView, String>,
    sla: Result<SlaView, String>,
    objectives: Result<Vec<SloView>, String>,
    availability: Result<AvailabilityView, String>,
    outages: Result<Vec<OutageView>, String>,
    capacity: Result<CapacitySection, String>,
    cost: Result<CostView, String>,
}

/// Overview failures that end the page instead of a section: sign in again, or the page the
/// status says.
fn ends_the_page(code: Code) -> bool {
    matches!(code, Code::Unauthenticated | Code::PermissionDenied | Code::NotFound | Code::InvalidArgument)
}

/// The overview's answer for `part`, or why that part is missing.
fn overview_part<'a>(
    overview: &'a Result<GetServiceHealthResponse, String>,
    part: &str,
) -> Result<&'a GetServiceHealthResponse, String> {
    let answer = overview.as_ref().map_err(String::clone)?;
    match answer.part_errors.iter().find(|e| e.part == part) {
        Some(error) => Err(part_reason(error)),
        None => Ok(answer),
    }
}

/// GET `/health/services/{id}`: one business service — open incidents by priority, SLA
/// attainment, SLO error budgets and burn rates, availability and outages, capacity forecasts and
/// cost per month.
pub async fn service(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Query(query): Query<ServiceQuery>,
) -> Result<Response, PageError> {
    check_role(&session)?;
    let Ok(parsed) = uuid::Uuid::parse_str(&id) else {
        return Err(PageError::NotFound("There is no business service at this address.".into()));
    };
    let id = parsed.to_string();
    let name = format!("{CI_PREFIX}{id}");
    let now = Utc::now();
    // The budget histories need the overview's SLOs; they follow it while the other parts run.
    let overview_and_histories = async {
        let overview = service_health(&state, &session, &name).await;
        let histories = match &overview {
            Ok(answer) => budget_histories(&state, &session, &answer.service_level_objectives).await,
            Err(_) => HashMap::new(),
        };
        (overview, histories)
    };
    let ((overview, histories), sla, outages, capacity, cost) = tokio::join!(
        overview_and_histories,
        sla_attainment(&state, &session, &name, now),
        recent_outages(&state, &session, &name),
        capacity_forecasts(&state, &session, &name),
        cost_per_month(&state, &session, &name, &id, &query.currency, now),
    );
    let overview: Result<GetServiceHealthResponse, String> = match overview {
        Ok(answer) => Ok(answer),
        Err(status) if ends_the_page(status.code()) => return Err(page_error(&status, &session.here)),
        Err(status) => Err(unavailable(&status)),
    };
    if let Ok(answer) = &overview {
        let missing =
            answer.part_errors.iter().any(|e| e.part == "service" && Code::from(e.code) == Code::NotFound);
        if missing {
            return Err(PageError::NotFound("There is no business service at this address.".into()));
        }
    }

    let incidents = overview_part(&overview, "open_incidents").map(|a| incidents_view(&a.open_incidents));
    let objectives = overview_part(&overview, "service_level_objectives").map(|a| {
        a.service_level_objectives
            .iter()
            .map(|slo| slo_view(slo, histories.get(&slo.name)))
            .collect::<Vec<_>>()
    });
    let availability = overview_part(&overview, "availability")
        .and_then(|a| a.availability.as_ref().map(availability_view).ok_or_else(|| "no report".to_string()));
    let (service_name, description, owner, health, read_at) = match &overview {
        Ok(answer) => {
            let ci = answer.service.clone().unwrap_or_default();
            let service_name = if ci.display_name.is_empty() { id.clone() } else { ci.display_name };
            (
                service_name,
                ci.description,
                ci.owner,
                health_figure(answer.health),
                time_view(answer.read_time.as_ref()),
            )
        }
        Err(_) => {
            (id.clone(), String::new(), String::new(), health_figure(ServiceHealth::Unknown as i32), None)
        }
    };
    let page = ServicePage {
        layout: Layout::new(format!("{service_name} · Service health"), Some(&session.data), Section::Health),
        name: service_name,
        description,
        owner,
        health,
        read_at,
        incidents,
        sla,
        objectives,
        availability,
        outages,
        capacity,
        cost,
    };
    Ok(render(StatusCode::OK, &page))
}

/// The gateway's composite view of the service.
async fn service_health(
    state: &AppState,
    session: &Session,
    service: &str,
) -> Result<GetServiceHealthResponse, Status> {
    let request = GetServiceHealthRequest { service: service.to_string() };
    Ok(state.gateway.overview().get_service_health(authed(&session.data, request)).await?.into_inner())
}

/// The error budget history of each of `objectives` (at most [`MAX_BUDGET_HISTORIES`]) over its
/// default range — the SLO's window up to its newest sample — by SLO name, each the history or
/// why it is not available. The calls run concurrently.
async fn budget_histories(
    state: &AppState,
    session: &Session,
    objectives: &[ServiceLevelObjective],
) -> HashMap<String, Result<SloBudgetHistory, String>> {
    let mut calls = tokio::task::JoinSet::new();
    for slo in objectives.iter().take(MAX_BUDGET_HISTORIES) {
        let mut client = state.gateway.service_levels();
        let name = slo.name.clone();
        let request =
            authed(&session.data, GetSloBudgetHistoryRequest { name: name.clone(), ..Default::default() });
        calls.spawn(async move {
            let answer = client.get_slo_budget_history(request).await;
            (name, answer.map(tonic::Response::into_inner).map_err(|status| unavailable(&status)))
        });
    }
    let mut histories = HashMap::new();
    while let Some(joined) = calls.join_next().await {
        match joined {
            Ok((name, answer)) => {
                histories.insert(name, answer);
            }
            // The SLO's history then says "not available".
            Err(err) => tracing::error!(error = %err, "budget history task failed"),
        }
    }
    histories
}

/// Attainment of the service's agreements over the last 30 days, per target.
async fn sla_attainment(
    state: &AppState,
    session: &Session,
    service: &str,
    now: DateTime<Utc>,
) -> Result<SlaView, String> {
    let mut reports = ServiceLevelServiceClient::new(state.gateway.channel());
    let mut agreements = reports.clone();
    let report_request = GetServiceLevelReportRequest {
        business_service: service.to_string(),
        start_time: Some(timestamp(now.timestamp() - PERIOD_SECONDS)),
        end_time: Some(timestamp(now.timestamp())),
        ..Default::default()
    };
    let agreements_request = ListServiceLevelAgreementsRequest {
        page_size: 100,
        filter: format!("business_service = \"{service}\""),
        ..Default::default()
    };
    let (report, listed) = tokio::join!(
        reports.get_service_level_report(authed(&session.data, report_request)),
        agreements.list_service_level_agreements(authed(&session.data, agreements_request)),
    );
    let report = report.map_err(|status| unavailable(&status))?.into_inner();
    // Names are decoration: without them the rows show the agreements' resource names.
    let names: HashMap<String, String> = match listed {
        Ok(listed) => listed
            .into_inner()
            .service_level_agreements
            .into_iter()
            .map(|a| (a.name, a.display_name))
            .collect(),
        Err(status) => {
            tracing::debug!(code = ?status.code(), "agreement names not available");
            HashMap::new()
        }
    };
    Ok(sla_view(&report.targets, &names))
}

/// The service's latest outages, newest first.
async fn recent_outages(
    state: &AppState,
    session: &Session,
    service: &str,
) -> Result<Vec<OutageView>, String> {
    let request = ListOutagesRequest {
        page_size: OUTAGES_SHOWN,
        filter: format!("service = \"{service}\""),
        order_by: "start_time desc".into(),
        ..Default::default()
    };
    let listed = AvailabilityServiceClient::new(state.gateway.channel())
        .list_outages(authed(&session.data, request))
        .await
        .map_err(|status| unavailable(&status))?
        .into_inner();
    Ok(listed.outages.iter().map(outage_view).collect())
}

/// Forecasts of the capacity resources of the service and of the CIs it depends on.
async fn capacity_forecasts(
    state: &AppState,
    session: &Session,
    service: &str,
) -> Result<CapacitySection, String> {
    // What the service needs (upstream: what could make it fail), as the gateway's overview
    // finds the resources that warn.
    let request = AnalyzeImpactRequest {
        configuration_item: service.to_string(),
        direction: ImpactDirection::Upstream as i32,
        max_depth: 10,
        max_items: 10_000,
        ..Default::default()
    };
    let impact = state
        .gateway
        .cmdb()
        .analyze_impact(authed(&session.data, request))
        .await
        .map_err(|status| unavailable(&status))?
        .into_inner();
    let mut cis: HashMap<String, String> =
        impact.items.into_iter().map(|item| (item.configuration_item, item.display_name)).collect();
    cis.insert(service.to_string(), "this service".to_string());

    // The API filters resources by one CI at a time; the tenant's resources are read page by
    // page and kept when they belong to one of these CIs.
    let mut client = CapacityServiceClient::new(state.gateway.channel());
    let mut resources: Vec<CapacityResource> = Vec::new();
    let mut page_token = String::new();
    for _ in 0..MAX_RESOURCE_PAGES {
        let request = ListCapacityResourcesRequest {
            page_size: 1000,
            page_token: page_token.clone(),
            ..Default::default()
        };
        let page = client
            .list_capacity_resources(authed(&session.data, request))
            .await
            .map_err(|status| unavailable(&status))?
            .into_inner();
        resources
            .extend(page.capacity_resources.into_iter().filter(|r| cis.contains_key(&r.configuration_item)));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    // Open warnings first, then by name.
    resources.sort_by(|a, b| {
        b.warning_time
            .is_some()
            .cmp(&a.warning_time.is_some())
            .then_with(|| a.display_name.cmp(&b.display_name))
    });
    let more = resources.len().saturating_sub(MAX_FORECASTS);
    resources.truncate(MAX_FORECASTS);

    let mut calls = tokio::task::JoinSet::new();
    for (index, resource) in resources.iter().enumerate() {
        let mut client = client.clone();
        let request = authed(
            &session.data,
            GetCapacityForecastRequest { capacity_resource: resource.name.clone(), ..Default::default() },
        );
        calls.spawn(async move {
            let answer = client.get_capacity_forecast(request).await;
            (index, answer.map(tonic::Response::into_inner).map_err(|status| unavailable(&status)))
        });
    }
    let mut forecasts: Vec<Result<CapacityForecast, String>> =
        resources.iter().map(|_| Err("the forecast was not answered".to_string())).collect();
    while let Some(joined) = calls.join_next().await {
        match joined {
            Ok((index, answer)) => {
                if let Some(slot) = forecasts.get_mut(index) {
                    *slot = answer;
                }
            }
            Err(err) => tracing::error!(error = %err, "capacity forecast task failed"),
        }
    }
    let views = resources
        .iter()
        .zip(&forecasts)
        .map(|(resource, forecast)| {
            let ci = cis.get(&resource.configuration_item).map_or("", String::as_str);
            capacity_view(resource, forecast, ci)
        })
        .collect();
    Ok(CapacitySection { resources: views, more })
}

/// The service's cost per month over the last months, in `asked` when it is a currency code,
/// else in the currency of the most recent cost items.
async fn cost_per_month(
    state: &AppState,
    session: &Session,
    service: &str,
    id: &str,
    asked: &str,
    now: DateTime<Utc>,
) -> Result<CostView, String> {
    let mut finance = FinanceServiceClient::new(state.gateway.channel());
    let (start, end) = month_range(now.year(), now.month(), COST_MONTHS);
    // The total cost of ownership is asked in one currency; the currencies in use are those of
    // the most recent cost items.
    let request =
        ListCostItemsRequest { page_size: 200, order_by: "period desc".into(), ..Default::default() };
    let items = finance
        .list_cost_items(authed(&session.data, request))
        .await
        .map_err(|status| unavailable(&status))?
        .into_inner();
    let mut currencies: Vec<String> = Vec::new();
    for item in &items.cost_items {
        let Some(amount) = &item.amount else { continue };
        if !amount.currency_code.is_empty() && !currencies.contains(&amount.currency_code) {
            currencies.push(amount.currency_code.clone());
        }
    }
    let currency = if is_currency_code(asked) {
        asked.to_string()
    } else if let Some(first) = currencies.first() {
        first.clone()
    } else {
        return Ok(CostView {
            currency: String::new(),
            period: format!("{} to {}", month_label(&start), month_label(&end)),
            months: Vec::new(),
            pools: Vec::new(),
            total: String::new(),
            plot: None,
            other_currencies: Vec::new(),
            nothing_recorded: true,
            aria_label: String::new(),
        });
    };
    let request = GetTotalCostOfOwnershipRequest {
        business_service: service.to_string(),
        currency_code: currency.clone(),
        start_period: start,
        end_period: end,
        ..Default::default()
    };
    let tco = finance
        .get_total_cost_of_ownership(authed(&session.data, request))
        .await
        .map_err(|status| unavailable(&status))?
        .into_inner();
    Ok(cost_view(&tco, &currency, &currencies, id))
}

// ---- views of the sections ---------------------------------------------------------------------

fn health_figure(health: i32) -> Figure {
    match ServiceHealth::try_from(health) {
        Ok(ServiceHealth::Healthy) => Figure::new("Healthy", "status-ok"),
        Ok(ServiceHealth::Degraded) => Figure::new("Degraded", "status-warn"),
        Ok(ServiceHealth::Down) => Figure::new("Down", "status-bad"),
        _ => Figure::new("Unknown", "status-none"),
    }
}

fn incident_state(state: i32) -> &'static str {
    match IncidentState::try_from(state) {
        Ok(IncidentState::New) => "New",
        Ok(IncidentState::Assigned) => "Assigned",
        Ok(IncidentState::InProgress) => "In progress",
        Ok(IncidentState::OnHold) => "On hold",
        Ok(IncidentState::Resolved) => "Resolved",
        Ok(IncidentState::Closed) => "Closed",
        Ok(IncidentState::Cancelled) => "Cancelled",
        _ => "Unknown",
    }
}

/// Open incidents grouped by priority, P1 first; those without a priority last.
fn incidents_view(incidents: &[Incident]) -> IncidentsView {
    let mut by_priority: BTreeMap<i32, Vec<IncidentRow>> = BTreeMap::new();
    for incident in incidents {
        let key = if (1..=5).contains(&incident.priority) { incident.priority } else { 6 };
        let number = if incident.number.is_empty() {
            number_of(&incident.name).to_string()
        } else {
            incident.number.clone()
        };
        by_priority.entry(key).or_default().push(IncidentRow {
            linkable: is_record_number(&number),
            number,
            summary: incident.short_description.clone(),
            state: incident_state(incident.state),
            opened: time_view(incident.open_time.as_ref()),
            assignee: incident.assignee.clone(),
            major: incident.major,
        });
    }
    let groups = by_priority
        .into_iter()
        .map(|(key, incidents)| PriorityGroup {
            id: if key <= 5 { format!("p{key}") } else { "none".to_string() },
            label: if key <= 5 { format!("P{key}") } else { "No priority yet".to_string() },
            incidents,
        })
        .collect();
    // The overview returns at most 100: more than that reads "100+".
    let count = if incidents.len() >= OVERVIEW_INCIDENT_LIMIT {
        format!("{}+", incidents.len())
    } else {
        incidents.len().to_string()
    };
    IncidentsView { count, groups }
}

fn metric_label(metric: i32) -> &'static str {
    match TargetMetric::try_from(metric) {
        Ok(TargetMetric::ResponseTime) => "Response time",
        Ok(TargetMetric::ResolutionTime) => "Resolution time",
        Ok(TargetMetric::Availability) => "Availability",
        _ => "Target",
    }
}

/// Attainment per agreement and target, by agreement name, with the overall figure.
fn sla_view(targets: &[TargetAttainment], agreements: &HashMap<String, String>) -> SlaView {
    let mut rows = Vec::with_capacity(targets.len());
    let mut total = Attainment::default();
    for target in targets {
        let counts = attainment_of(target);
        total.add(counts);
        let agreement = agreements
            .get(&target.service_level_agreement)
            .filter(|name| !name.is_empty())
            .cloned()
            .unwrap_or_else(|| target.service_level_agreement.clone());
        rows.push(AttainmentRow {
            agreement,
            target: format!("{} (target {})", metric_label(target.metric), target.target_index + 1),
            measured: target.measured.to_string(),
            met: target.met.to_string(),
            breached: target.breached.to_string(),
            attainment: attainment_figure(&counts),
        });
    }
    rows.sort_by(|a, b| a.agreement.cmp(&b.agreement).then_with(|| a.target.cmp(&b.target)));
    SlaView { rows, overall: attainment_figure(&total) }
}

/// A budget's colour: green above half, amber while some is left, red when spent.
fn budget_class(remaining: f64) -> &'static str {
    if remaining > 0.5 {
        "status-ok"
    } else if remaining > 0.0 {
        "status-warn"
    } else {
        "status-bad"
    }
}

/// An SLO as its section shows it; `history` is its budget history as [`budget_histories`] found
/// it (`None`: not asked, as the page draws at most [`MAX_BUDGET_HISTORIES`]).
fn slo_view(slo: &ServiceLevelObjective, history: Option<&Result<SloBudgetHistory, String>>) -> SloView {
    let short_name = slo.name.strip_prefix("serviceLevelObjectives/").unwrap_or(&slo.name);
    let name = if slo.display_name.is_empty() { short_name.to_string() } else { slo.display_name.clone() };
    let history = match history {
        Some(Ok(history)) => Ok(budget_history_view(history, &name)),
        Some(Err(why)) => Err(why.clone()),
        None => Err(format!("the page draws the budget history of the first {MAX_BUDGET_HISTORIES} SLOs")),
    };
    let budget = slo.error_budget_remaining.map(|remaining| BudgetView {
        text: percent_text(remaining * 100.0, 1),
        class: budget_class(remaining),
        fill: coord(meter_fill(remaining, METER_WIDTH)),
    });
    let numbers: Vec<BurnAlertNumbers> = slo
        .alerts
        .iter()
        .map(|a| BurnAlertNumbers {
            factor: a.factor,
            long_rate: a.long_burn_rate,
            short_rate: a.short_burn_rate,
            long_seconds: a.long_window.as_ref().map_or(0, |d| d.seconds),
            short_seconds: a.short_window.as_ref().map_or(0, |d| d.seconds),
        })
        .collect();
    let burn = burn_chart(&numbers, &PLOT).map(|chart| BurnPlot {
        axes: chart.axes,
        bars: chart
            .bars
            .iter()
            .map(|b| BarView {
                x: coord(b.bar.x),
                y: coord(b.bar.y),
                width: coord(b.bar.width),
                height: coord(b.bar.height),
                class: match (b.long, b.over) {
                    (true, false) => "bar bar--long",
                    (true, true) => "bar bar--long bar--over",
                    (false, false) => "bar bar--short",
                    (false, true) => "bar bar--short bar--over",
                },
                title: format!("{} window: burn rate {}", duration_text(b.seconds), rate_text(b.rate)),
            })
            .collect(),
        factors: chart
            .factors
            .iter()
            .map(|f| MarkView {
                x1: coord(f.x1),
                x2: coord(f.x2),
                y: coord(f.y),
                label: format!("×{}", rate_text(f.factor)),
                label_x: coord(f.x2),
                label_y: coord(f.y - 4.0),
            })
            .collect(),
    });
    let alerts = slo
        .alerts
        .iter()
        .map(|a| AlertRow {
            windows: format!(
                "{} and {}",
                a.long_window.as_ref().map_or_else(|| "—".to_string(), |d| duration_text(d.seconds)),
                a.short_window.as_ref().map_or_else(|| "—".to_string(), |d| duration_text(d.seconds)),
            ),
            factor: format!("×{}", rate_text(a.factor)),
            long_rate: rate_text(a.long_burn_rate),
            short_rate: rate_text(a.short_burn_rate),
            firing: a.firing,
            incident: Some(number_of(&a.incident))
                .filter(|number| is_record_number(number))
                .unwrap_or_default()
                .to_string(),
        })
        .collect();
    SloView {
        id: html_id(short_name),
        aria_label: format!(
            "Burn rates of {name} now over each alert window (bars), against each alert's factor (marks)"
        ),
        name,
        target: percent_text(slo.target * 100.0, 3),
        window: slo.time_window.as_ref().map_or_else(|| "—".to_string(), |d| duration_text(d.seconds)),
        method: slo.budgeting_method.clone(),
        budget,
        history,
        burn,
        alerts,
        meter_width: coord(METER_WIDTH),
    }
}

/// An SLO's error budget history as its plot, summary and table show it (`name`: the SLO's
/// name for people).
fn budget_history_view(history: &SloBudgetHistory, name: &str) -> BudgetHistoryView {
    let day = |t: Option<&prost_types::Timestamp>| time_view(t).map_or_else(|| "—".to_string(), |t| t.text);
    let period = format!("from {} to {}", day(history.start_time.as_ref()), day(history.end_time.as_ref()));
    let window = history.time_window.as_ref().map_or_else(|| "—".to_string(), |d| duration_text(d.seconds));
    let step = history.step.as_ref().map_or_else(|| "—".to_string(), |d| duration_text(d.seconds));
    let percent = |ratio: f64| percent_text(ratio * 100.0, 1);
    let points: Vec<(f64, f64)> = history
        .points
        .iter()
        .filter_map(|p| Some((seconds_of(p.time.as_ref()?), p.error_budget_remaining * 100.0)))
        .collect();
    let series = BudgetSeries {
        points,
        start: history.start_time.as_ref().map_or(f64::NAN, seconds_of),
        end: history.end_time.as_ref().map_or(f64::NAN, seconds_of),
    };
    let plot = budget_chart(&series, &PLOT).map(|chart| BudgetPlot {
        axes: chart.axes,
        line: chart.line,
        zero: LineView {
            x1: coord(PLOT.left),
            x2: coord(PLOT.right),
            y: coord(chart.zero_y),
            label: "0 %: budget spent".to_string(),
            label_x: coord(PLOT.left + 4.0),
            label_y: coord(chart.zero_y - 4.0),
        },
    });
    let summary = match (history.points.first(), history.points.last()) {
        (Some(first), Some(last)) => {
            let lowest = history
                .points
                .iter()
                .min_by(|a, b| a.error_budget_remaining.total_cmp(&b.error_budget_remaining))
                .unwrap_or(last);
            format!(
                "{} left on {}, {} on {}; the lowest was {} on {}.",
                percent(first.error_budget_remaining),
                day(first.time.as_ref()),
                percent(last.error_budget_remaining),
                day(last.time.as_ref()),
                percent(lowest.error_budget_remaining),
                day(lowest.time.as_ref()),
            )
        }
        _ => String::new(),
    };
    let rows: Vec<BudgetRow> = thin(&history.points, MAX_TABLE_ROWS)
        .iter()
        .map(|p| BudgetRow {
            time: day(p.time.as_ref()),
            remaining: percent(p.error_budget_remaining),
            consumed: percent_text(p.error_budget_consumed * 100.0, 2),
            burn_rate: rate_text(p.burn_rate),
        })
        .collect();
    let table_note = if history.points.len() > rows.len() {
        format!("Evenly sampled: {} of {} points.", rows.len(), history.points.len())
    } else {
        String::new()
    };
    BudgetHistoryView {
        aria_label: format!(
            "Error budget remaining of {name} over time, {period}, every {step}, over a rolling {window} window \
             (line), against zero, where the budget is spent (dashed line). {summary}"
        ),
        period,
        step,
        plot,
        summary,
        rows,
        table_note,
    }
}

fn availability_view(report: &AvailabilityReport) -> AvailabilityView {
    let duration =
        |d: Option<&prost_types::Duration>| d.map_or_else(|| "—".to_string(), |d| duration_text(d.seconds));
    let day =
        |t: Option<&prost_types::Timestamp>| time_view(t).map(|t| t.text).unwrap_or_else(|| "—".to_string());
    AvailabilityView {
        percent: availability_figure(report),
        has_target: report.target_basis_points > 0,
        target: percent_text(f64::from(report.target_basis_points) / 100.0, 2),
        target_met: report.target_met,
        period: format!("{} to {}", day(report.start_time.as_ref()), day(report.end_time.as_ref())),
        agreed: duration(report.agreed_time.as_ref()),
        downtime: duration(report.downtime.as_ref()),
        degraded: duration(report.degraded_time.as_ref()),
        planned: duration(report.planned_downtime.as_ref()),
        breaks: report.service_breaks.to_string(),
        mtbf: duration(report.mtbf.as_ref()),
        mtrs: duration(report.mtrs.as_ref()),
    }
}

fn outage_view(outage: &Outage) -> OutageView {
    let cause_href = match outage.cause.strip_prefix("incidents/") {
        Some(number) if is_record_number(number) => format!("/agent/incidents/{number}"),
        _ => String::new(),
    };
    OutageView {
        kind: match OutageKind::try_from(outage.kind) {
            Ok(OutageKind::Full) => "Full",
            Ok(OutageKind::Degraded) => "Degraded",
            _ => "—",
        },
        planned: outage.planned,
        started: time_view(outage.start_time.as_ref()),
        ended: time_view(outage.end_time.as_ref()),
        description: outage.description.clone(),
        cause: number_of(&outage.cause).to_string(),
        cause_href,
    }
}

/// A capacity value with its unit ("80 percent").
fn with_unit(value: f64, unit: &str) -> String {
    if unit.is_empty() { number_text(value) } else { format!("{} {unit}", number_text(value)) }
}

fn capacity_view(
    resource: &CapacityResource,
    forecast: &Result<CapacityForecast, String>,
    ci: &str,
) -> CapacityView {
    let short_name = resource.name.strip_prefix("capacityResources/").unwrap_or(&resource.name);
    let name =
        if resource.display_name.is_empty() { short_name.to_string() } else { resource.display_name.clone() };
    let mut view = CapacityView {
        id: html_id(short_name),
        name,
        ci: ci.to_string(),
        metric: resource.metric.clone(),
        threshold: with_unit(resource.threshold, &resource.unit),
        current: if resource.observe_time.is_some() {
            with_unit(resource.current_value, &resource.unit)
        } else {
            "—".to_string()
        },
        warning: resource.warning_time.is_some(),
        unavailable: String::new(),
        plot: None,
        crossing: CrossingView { expected: None, earliest: None, latest: None },
        has_crossing: false,
        level: String::new(),
        seasonal: false,
        note: String::new(),
        aria_label: String::new(),
        history_rows: Vec::new(),
        forecast_rows: Vec::new(),
        table_note: String::new(),
    };
    let forecast = match forecast {
        Ok(forecast) => forecast,
        Err(why) => {
            view.unavailable = why.clone();
            return view;
        }
    };
    view.level = percent_text(forecast.level_percent, 0);
    view.seasonal = forecast.seasonal;
    view.warning = view.warning || forecast.warning;
    view.crossing = CrossingView {
        expected: time_view(forecast.expected_crossing_time.as_ref()),
        earliest: time_view(forecast.earliest_crossing_time.as_ref()),
        latest: time_view(forecast.latest_crossing_time.as_ref()),
    };
    view.has_crossing = view.crossing.expected.is_some() || view.crossing.earliest.is_some();

    let history: Vec<(f64, f64)> =
        forecast.history.iter().filter_map(|b| Some((seconds_of(b.start_time.as_ref()?), b.mean))).collect();
    let steps: Vec<ForecastStep> = forecast
        .points
        .iter()
        .filter_map(|p| {
            Some(ForecastStep {
                time: seconds_of(p.time.as_ref()?),
                value: p.value,
                lower: p.lower,
                upper: p.upper,
            })
        })
        .collect();
    if !history.is_empty() && steps.is_empty() {
        view.note = "No forecast yet: there is too little history.".to_string();
    }
    let series = CapacitySeries {
        history,
        forecast: steps,
        threshold: forecast.threshold,
        crossing: forecast.expected_crossing_time.as_ref().map(seconds_of),
    };
    let threshold = with_unit(forecast.threshold, &resource.unit);
    view.plot = capacity_chart(&series, &PLOT).map(|chart| {
        let crossing = chart.crossing_x.map(|x| {
            let when = view.crossing.expected.as_ref().map_or_else(String::new, |t| t.text.clone());
            let (anchor, label_x) = if x > PLOT.left + (PLOT.right - PLOT.left) * 0.6 {
                ("end", x - 4.0)
            } else {
                ("start", x + 4.0)
            };
            MarkerView {
                x: coord(x),
                y1: coord(PLOT.top),
                y2: coord(PLOT.bottom),
                label: format!("expected crossing {when}"),
                label_x: coord(label_x),
                label_y: coord(PLOT.top + 12.0),
                anchor,
            }
        });
        CapacityPlot {
            axes: chart.axes,
            history: chart.history,
            forecast: chart.forecast,
            band: chart.band,
            threshold: LineView {
                x1: coord(PLOT.left),
                x2: coord(PLOT.right),
                y: coord(chart.threshold_y),
                label: format!("threshold {threshold}"),
                label_x: coord(PLOT.left + 4.0),
                label_y: coord(chart.threshold_y - 4.0),
            },
            crossing,
        }
    });
    let crossing_text = match &view.crossing.expected {
        Some(when) => format!("; expected to cross it at {}", when.text),
        None => "; not expected to cross it within the forecast".to_string(),
    };
    view.aria_label = format!(
        "{}: measured {} (line) and its forecast (dashed line) with its {} prediction band, against the threshold of {threshold}{crossing_text}",
        view.name, view.metric, view.level
    );

    let history_rows: Vec<CapacityRow> = thin(&forecast.history, MAX_TABLE_ROWS)
        .iter()
        .map(|b| CapacityRow {
            time: time_view(b.start_time.as_ref()).map(|t| t.text).unwrap_or_default(),
            value: number_text(b.mean),
            low: number_text(b.min),
            high: number_text(b.max),
        })
        .collect();
    let forecast_rows: Vec<CapacityRow> = thin(&forecast.points, MAX_TABLE_ROWS)
        .iter()
        .map(|p| CapacityRow {
            time: time_view(p.time.as_ref()).map(|t| t.text).unwrap_or_default(),
            value: number_text(p.value),
            low: number_text(p.lower),
            high: number_text(p.upper),
        })
        .collect();
    if forecast.history.len() > history_rows.len() || forecast.points.len() > forecast_rows.len() {
        view.table_note = format!(
            "Evenly sampled: {} of {} measured steps and {} of {} forecast steps.",
            history_rows.len(),
            forecast.history.len(),
            forecast_rows.len(),
            forecast.points.len()
        );
    }
    view.history_rows = history_rows;
    view.forecast_rows = forecast_rows;
    view
}

fn pool_label(pool: i32) -> &'static str {
    match CostPool::try_from(pool) {
        Ok(CostPool::Hardware) => "Hardware",
        Ok(CostPool::Software) => "Software",
        Ok(CostPool::People) => "People",
        Ok(CostPool::Facilities) => "Facilities",
        Ok(CostPool::Cloud) => "Cloud",
        Ok(CostPool::Services) => "Services",
        _ => "Other",
    }
}

fn cost_view(tco: &TotalCostOfOwnership, currency: &str, currencies: &[String], id: &str) -> CostView {
    let months: Vec<MonthCost> = tco
        .months
        .iter()
        .map(|m| MonthCost {
            label: month_label(&m.period),
            direct: money_text(m.direct.as_ref()),
            dedicated: money_text(m.dedicated.as_ref()),
            shared: money_text(m.shared.as_ref()),
            total: money_text(m.total.as_ref()),
        })
        .collect();
    let values: Vec<f64> = tco.months.iter().map(|m| m.total.as_ref().map_or(0.0, money_value)).collect();
    let labels: Vec<String> = months.iter().map(|m| m.label.clone()).collect();
    let plot = bar_chart(&values, &labels, &PLOT).map(|chart| BarPlot {
        axes: chart.axes,
        bars: chart
            .bars
            .iter()
            .zip(&months)
            .map(|(bar, month)| BarView {
                x: coord(bar.x),
                y: coord(bar.y),
                width: coord(bar.width),
                height: coord(bar.height),
                class: "bar bar--cost",
                title: format!("{}: {}", month.label, month.total),
            })
            .collect(),
    });
    let period = match (tco.months.first(), tco.months.last()) {
        (Some(first), Some(last)) => {
            format!("{} to {}", month_label(&first.period), month_label(&last.period))
        }
        _ => String::new(),
    };
    CostView {
        currency: currency.to_string(),
        aria_label: format!("Cost of the service per month in {currency}, {period}"),
        period,
        months,
        pools: tco
            .by_pool
            .iter()
            .map(|p| PoolRow { pool: pool_label(p.pool), amount: money_text(p.amount.as_ref()) })
            .collect(),
        total: money_text(tco.total.as_ref()),
        plot,
        other_currencies: currencies
            .iter()
            .filter(|code| code.as_str() != currency)
            .map(|code| CurrencyLink {
                code: code.clone(),
                href: format!("/health/services/{id}?currency={}#section-cost", query_escape(code)),
            })
            .collect(),
        nothing_recorded: false,
    }
}

// ---- text ------------------------------------------------------------------------------------

/// `text` as part of an element id: ASCII letters, digits, `-` and `_` stay, anything else is `-`.
pub fn html_id(text: &str) -> String {
    text.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '-' }).collect()
}

/// `99.95 %` with `decimals` places.
pub fn percent_text(percent: f64, decimals: usize) -> String {
    format!("{percent:.decimals$} %")
}

/// A measured value: whole numbers without decimals, others with two.
pub fn number_text(value: f64) -> String {
    if value.fract().abs() < 1e-9 && value.abs() < 1e15 {
        format!("{value:.0}")
    } else {
        format!("{value:.2}")
    }
}

/// A burn rate or factor: `14.4`, `0.52`, `6`.
pub fn rate_text(rate: f64) -> String {
    let text = format!("{rate:.2}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text.is_empty() || text == "-" { "0".to_string() } else { text.to_string() }
}

/// A length of time for people: `45 min`, `2 h 5 min`, `3 d 4 h`.
pub fn duration_text(seconds: i64) -> String {
    let seconds = seconds.max(0);
    let (days, hours, minutes) = (seconds / 86_400, seconds % 86_400 / 3600, seconds % 3600 / 60);
    match (days, hours, minutes) {
        (0, 0, 0) if seconds > 0 => format!("{seconds} s"),
        (0, 0, m) => format!("{m} min"),
        (0, h, 0) => format!("{h} h"),
        (0, h, m) => format!("{h} h {m} min"),
        (d, 0, _) => format!("{d} d"),
        (d, h, _) => format!("{d} d {h} h"),
    }
}

/// `1234567` as `1,234,567`.
fn group_thousands(units: u64) -> String {
    let digits = units.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// `EUR 1,234.50`: whole units and cents (fractions of a cent are not shown); "—" for none.
pub fn money_text(amount: Option<&Money>) -> String {
    let Some(amount) = amount else { return "—".to_string() };
    let sign = if amount.units < 0 || amount.nanos < 0 { "-" } else { "" };
    let cents = amount.nanos.unsigned_abs() / 10_000_000;
    format!("{} {sign}{}.{cents:02}", amount.currency_code, group_thousands(amount.units.unsigned_abs()))
}

/// An amount as a number, for a bar's height only (amounts themselves are never floats).
fn money_value(amount: &Money) -> f64 {
    amount.units as f64 + f64::from(amount.nanos) / 1e9
}

/// Whether `text` looks like an ISO 4217 code (three capital letters).
pub fn is_currency_code(text: &str) -> bool {
    text.len() == 3 && text.bytes().all(|b| b.is_ascii_uppercase())
}

/// The first and last month (`YYYY-MM`) of the `count` months ending with `month` of `year`.
pub fn month_range(year: i32, month: u32, count: u32) -> (String, String) {
    let last = i64::from(year) * 12 + i64::from(month) - 1;
    let first = last - i64::from(count.max(1)) + 1;
    let label = |index: i64| format!("{:04}-{:02}", index.div_euclid(12), index.rem_euclid(12) + 1);
    (label(first), label(last))
}

/// `2026-11` as `Nov 2026` (anything else as it is).
pub fn month_label(period: &str) -> String {
    chrono::NaiveDate::parse_from_str(&format!("{period}-01"), "%Y-%m-%d")
        .map_or_else(|_| period.to_string(), |day| day.format("%b %Y").to_string())
}

/// A timestamp as Unix seconds with its fraction.
fn seconds_of(time: &prost_types::Timestamp) -> f64 {
    time.seconds as f64 + f64::from(time.nanos) / 1e9
}

// ---- plot geometry -------------------------------------------------------------------------------
//
// Plain numbers in, viewBox coordinates and labels out: no gRPC types, no templates.

/// Where a plot draws inside its viewBox: room on the left for value labels, below for the time
/// or category labels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Frame {
    pub width: f64,
    pub height: f64,
    pub left: f64,
    pub right: f64,
    pub top: f64,
    pub bottom: f64,
}

/// Every plot's frame: a 640 × 240 viewBox (the stylesheet scales it to the column).
pub const PLOT: Frame =
    Frame { width: 640.0, height: 240.0, left: 56.0, right: 628.0, top: 14.0, bottom: 212.0 };

/// A linear map from data values onto viewBox coordinates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scale {
    domain: (f64, f64),
    range: (f64, f64),
}

impl Scale {
    /// Maps `domain` onto `range` (a y scale maps onto (bottom, top): larger values higher). An
    /// empty domain is widened by one either side, so a single value lands in the middle.
    pub fn new(domain: (f64, f64), range: (f64, f64)) -> Self {
        let (low, high) = domain;
        let domain = if low.is_finite() && high.is_finite() && high > low {
            (low, high)
        } else if low.is_finite() {
            (low - 1.0, low + 1.0)
        } else {
            (0.0, 1.0)
        };
        Self { domain, range }
    }

    /// Where `value` lands.
    pub fn at(&self, value: f64) -> f64 {
        let ((d0, d1), (r0, r1)) = (self.domain, self.range);
        r0 + (value - d0) / (d1 - d0) * (r1 - r0)
    }
}

/// A coordinate as SVG takes it: one decimal.
pub fn coord(value: f64) -> String {
    format!("{value:.1}")
}

/// The smallest and largest finite value, `None` when there is none.
pub fn min_max(values: impl IntoIterator<Item = f64>) -> Option<(f64, f64)> {
    let mut out: Option<(f64, f64)> = None;
    for value in values {
        if !value.is_finite() {
            continue;
        }
        out = Some(match out {
            None => (value, value),
            Some((low, high)) => (low.min(value), high.max(value)),
        });
    }
    out
}

/// A "nice" step — 1, 2 or 5 × 10^k — that cuts `span` into at most `max_ticks` intervals.
pub fn nice_step(span: f64, max_ticks: usize) -> f64 {
    if !span.is_finite() || span <= 0.0 {
        return 1.0;
    }
    let rough = span / max_ticks.max(1) as f64;
    let magnitude = 10f64.powf(rough.log10().floor());
    for multiple in [1.0, 2.0, 5.0] {
        if multiple * magnitude >= rough {
            return multiple * magnitude;
        }
    }
    10.0 * magnitude
}

/// A value axis for data from `low` to `high`: the domain widened to whole steps, the step and
/// the ticks (bottom to top).
pub fn value_axis(low: f64, high: f64, max_ticks: usize) -> (f64, f64, f64, Vec<f64>) {
    let (low, high) = if high > low { (low, high) } else { (low - 1.0, low + 1.0) };
    let step = nice_step(high - low, max_ticks);
    let first = (low / step).floor() * step;
    let last = (high / step).ceil() * step;
    let count = ((last - first) / step).round().max(0.0) as usize;
    let ticks = (0..=count).map(|i| first + step * i as f64).collect();
    (first, last, step, ticks)
}

/// A value tick's label: as many decimals as the step needs, thousands as `k`, millions as `M`,
/// billions as `G`.
pub fn value_label(value: f64, step: f64) -> String {
    let decimals = |step: f64| -> usize {
        if step >= 1.0 || step <= 0.0 || !step.is_finite() {
            0
        } else {
            (-step.log10().floor()).clamp(0.0, 6.0) as usize
        }
    };
    // No "-0" for the tick at zero.
    let value = if value.abs() < step.abs() / 2.0 { 0.0 } else { value };
    for (unit, suffix) in [(1e9, "G"), (1e6, "M"), (1e3, "k")] {
        if step >= unit {
            let scaled = value / unit;
            let places = decimals(step / unit);
            return format!("{scaled:.places$}{suffix}");
        }
    }
    let places = decimals(step);
    format!("{value:.places$}")
}

/// Steps a time axis may take, in seconds: hours to a year.
const TIME_STEPS: [i64; 12] = [
    3_600,
    3 * 3_600,
    6 * 3_600,
    12 * 3_600,
    86_400,
    2 * 86_400,
    7 * 86_400,
    14 * 86_400,
    28 * 86_400,
    91 * 86_400,
    182 * 86_400,
    364 * 86_400,
];

/// Ticks at whole multiples of the smallest step that gives at most `max_ticks` of them between
/// `start` and `end` (Unix seconds, UTC), and that step.
pub fn time_ticks(start: i64, end: i64, max_ticks: usize) -> (i64, Vec<i64>) {
    let max = i64::try_from(max_ticks.max(1)).unwrap_or(i64::MAX);
    let span = end.saturating_sub(start).max(0);
    let step =
        TIME_STEPS.iter().copied().find(|step| span / step < max).unwrap_or(TIME_STEPS[TIME_STEPS.len() - 1]);
    let mut at = start.div_euclid(step) * step;
    if at < start {
        at += step;
    }
    let mut ticks = Vec::new();
    while at <= end && ticks.len() < max_ticks.max(1) {
        ticks.push(at);
        at += step;
    }
    (step, ticks)
}

/// A time tick's label: the day for steps of a day or more, and for midnight; the hour otherwise.
pub fn time_label(at: i64, step: i64) -> String {
    let Some(time) = DateTime::from_timestamp(at, 0) else { return String::new() };
    if step >= 86_400 || at.rem_euclid(86_400) == 0 {
        time.format("%-d %b").to_string()
    } else {
        time.format("%H:%M").to_string()
    }
}

/// At most `max` of `items`, evenly spaced, always with the first and the last (a plot keeps
/// its ends).
pub fn thin<T: Clone>(items: &[T], max: usize) -> Vec<T> {
    if items.len() <= max || max < 2 {
        return items.to_vec();
    }
    let stride = (items.len() - 1).div_ceil(max - 1);
    let last = items.len() - 1;
    let mut out: Vec<T> = items.iter().step_by(stride).cloned().collect();
    if !last.is_multiple_of(stride) {
        out.push(items[last].clone());
    }
    out
}

/// SVG `points` of `series` ((x, y) in data units) on the scales, kept inside `frame`:
/// "x,y x,y …". Points with a value that is not a number are left out.
pub fn polyline_points(series: &[(f64, f64)], x: &Scale, y: &Scale, frame: &Frame) -> String {
    let mut out = String::with_capacity(series.len() * 12);
    for (vx, vy) in series {
        if !vx.is_finite() || !vy.is_finite() {
            continue;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        let px = x.at(*vx).clamp(frame.left, frame.right);
        let py = y.at(*vy).clamp(frame.top, frame.bottom);
        out.push_str(&format!("{px:.1},{py:.1}"));
    }
    out
}

/// One forecast step in plain numbers: its time (Unix seconds), the point forecast and its
/// prediction interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ForecastStep {
    pub time: f64,
    pub value: f64,
    pub lower: f64,
    pub upper: f64,
}

/// SVG `points` of the polygon around a prediction band: along the upper bounds, back along
/// the lower ones.
pub fn band_points(steps: &[ForecastStep], x: &Scale, y: &Scale, frame: &Frame) -> String {
    let mut outline: Vec<(f64, f64)> = steps.iter().map(|s| (s.time, s.upper)).collect();
    outline.extend(steps.iter().rev().map(|s| (s.time, s.lower)));
    polyline_points(&outline, x, y, frame)
}

/// Axis ticks and gridlines of a plot, as the template draws them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Axes {
    pub view_box: String,
    pub left: String,
    pub right: String,
    pub top: String,
    pub bottom: String,
    /// Where the value labels end (right-aligned left of the frame).
    pub y_label_x: String,
    /// Where the time or category labels sit (below the frame).
    pub x_label_y: String,
    pub y_ticks: Vec<Tick>,
    pub x_ticks: Vec<Tick>,
}

/// One tick: where its gridline or label goes and what it says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tick {
    pub at: String,
    /// Where its label's baseline goes (a value label sits centred on its gridline).
    pub label_at: String,
    pub label: String,
}

/// The axes of `frame` with value ticks `values` (labelled for `step`) on `y` and the x ticks
/// `x_ticks` (position, label).
pub fn axes(frame: &Frame, y: &Scale, values: &[f64], step: f64, x_ticks: Vec<(f64, String)>) -> Axes {
    Axes {
        view_box: format!("0 0 {} {}", frame.width, frame.height),
        left: coord(frame.left),
        right: coord(frame.right),
        top: coord(frame.top),
        bottom: coord(frame.bottom),
        y_label_x: coord(frame.left - 6.0),
        x_label_y: coord(frame.bottom + 18.0),
        y_ticks: values
            .iter()
            .map(|value| {
                let at = y.at(*value);
                Tick { at: coord(at), label_at: coord(at + 4.0), label: value_label(*value, step) }
            })
            .collect(),
        x_ticks: x_ticks
            .into_iter()
            .map(|(at, label)| Tick { at: coord(at), label_at: coord(at), label })
            .collect(),
    }
}

/// A capacity resource's numbers for its plot: measured means (time, value), the forecast, the
/// threshold and the expected crossing (Unix seconds).
#[derive(Debug, Clone, PartialEq)]
pub struct CapacitySeries {
    pub history: Vec<(f64, f64)>,
    pub forecast: Vec<ForecastStep>,
    pub threshold: f64,
    pub crossing: Option<f64>,
}

/// A capacity plot's geometry.
#[derive(Debug, Clone, PartialEq)]
pub struct CapacityChart {
    pub axes: Axes,
    /// `points` of the measured line.
    pub history: String,
    /// `points` of the forecast line, starting at the last measured point ("" without a forecast).
    pub forecast: String,
    /// `points` of the prediction band's polygon ("" without a forecast).
    pub band: String,
    /// Where the threshold's horizontal line goes.
    pub threshold_y: f64,
    /// Where the expected crossing's vertical marker goes, when it is within the plot.
    pub crossing_x: Option<f64>,
}

/// The plot of `series` in `frame`: time across, from the first measurement to the end of the
/// forecast; values up, from zero (or below, for negative values) to a little above the
/// threshold, the measurements and the point forecast. The band is clipped to the frame: a wide
/// interval far ahead does not flatten the rest. `None` without a single point.
pub fn capacity_chart(series: &CapacitySeries, frame: &Frame) -> Option<CapacityChart> {
    let times = series.history.iter().map(|p| p.0).chain(series.forecast.iter().map(|s| s.time));
    let (start, end) = min_max(times)?;
    let values = series
        .history
        .iter()
        .map(|p| p.1)
        .chain(series.forecast.iter().map(|s| s.value))
        .chain(std::iter::once(series.threshold));
    let (low, high) = min_max(values)?;
    let low = low.min(0.0);
    let high = high + (high - low) * 0.05;
    let (bottom, top, step, ticks) = value_axis(low, high, 5);
    let x = Scale::new((start, end), (frame.left, frame.right));
    let y = Scale::new((bottom, top), (frame.bottom, frame.top));

    let history = polyline_points(&thin(&series.history, MAX_PLOT_POINTS), &x, &y, frame);
    let steps = thin(&series.forecast, MAX_PLOT_POINTS);
    let (forecast, band) = if steps.is_empty() {
        (String::new(), String::new())
    } else {
        // The forecast line continues from the last measurement, so the two lines join.
        let mut line: Vec<(f64, f64)> = series.history.last().copied().into_iter().collect();
        line.extend(steps.iter().map(|s| (s.time, s.value)));
        (polyline_points(&line, &x, &y, frame), band_points(&steps, &x, &y, frame))
    };
    let (time_step, tick_times) = time_ticks(start as i64, end as i64, 6);
    let x_ticks = tick_times.iter().map(|t| (x.at(*t as f64), time_label(*t, time_step))).collect();
    Some(CapacityChart {
        axes: axes(frame, &y, &ticks, step, x_ticks),
        history,
        forecast,
        band,
        threshold_y: y.at(series.threshold).clamp(frame.top, frame.bottom),
        crossing_x: series.crossing.filter(|t| (start..=end).contains(t)).map(|t| x.at(t)),
    })
}

/// An SLO's error budget history in plain numbers: (time in Unix seconds, budget remaining in
/// percent) oldest first, and the range the history covers (not a number when unknown).
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetSeries {
    pub points: Vec<(f64, f64)>,
    pub start: f64,
    pub end: f64,
}

/// An error budget plot's geometry.
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetChart {
    pub axes: Axes,
    /// `points` of the remaining budget's line.
    pub line: String,
    /// Where the zero line goes (the budget spent); always inside the frame, above its bottom.
    pub zero_y: f64,
}

/// The plot of `series` in `frame`: time across the history's whole range (so a gap before the
/// first sample shows as one); the budget remaining up, labelled in percent, from a little below
/// zero — or below the lowest point, when overspent — to 100 % or the highest point. Zero is
/// always on the axis and above the frame's bottom, so its line stands apart from the time
/// axis. `None` without a point.
pub fn budget_chart(series: &BudgetSeries, frame: &Frame) -> Option<BudgetChart> {
    let (first, last) = min_max(series.points.iter().map(|p| p.0))?;
    let (low, high) = min_max(series.points.iter().map(|p| p.1))?;
    let (start, end) = if series.start.is_finite() && series.end.is_finite() {
        (series.start.min(first), series.end.max(last))
    } else {
        (first, last)
    };
    let (low, high) = (low.min(0.0), high.max(100.0));
    let (bottom, top, step, ticks) = value_axis(low - (high - low) * 0.1, high, 6);
    let x = Scale::new((start, end), (frame.left, frame.right));
    let y = Scale::new((bottom, top), (frame.bottom, frame.top));
    let line = polyline_points(&thin(&series.points, MAX_PLOT_POINTS), &x, &y, frame);
    let (time_step, tick_times) = time_ticks(start as i64, end as i64, 6);
    let x_ticks = tick_times.iter().map(|t| (x.at(*t as f64), time_label(*t, time_step))).collect();
    let mut chart_axes = axes(frame, &y, &ticks, step, x_ticks);
    for tick in &mut chart_axes.y_ticks {
        tick.label = format!("{} %", tick.label);
    }
    Some(BudgetChart { axes: chart_axes, line, zero_y: y.at(0.0).clamp(frame.top, frame.bottom) })
}

/// A bar's rectangle in viewBox units.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bar {
    pub x: f64,
    pub y: f64,
    pub width: f64,
    pub height: f64,
}

/// The bar in slot `index` of width `slot` from the frame's left, from the axis's zero (or the
/// frame's edge when zero is outside) to `value`; it fills 80 % of its slot, centred.
fn slot_bar(index: usize, slot: f64, value: f64, frame: &Frame, y: &Scale) -> Bar {
    let width = slot * 0.8;
    let base = y.at(0.0).clamp(frame.top, frame.bottom);
    let end = if value.is_finite() { y.at(value).clamp(frame.top, frame.bottom) } else { base };
    Bar {
        x: frame.left + slot * index as f64 + (slot - width) / 2.0,
        y: end.min(base),
        width,
        height: (base - end).abs(),
    }
}

/// A bar chart's geometry.
#[derive(Debug, Clone, PartialEq)]
pub struct BarChart {
    pub axes: Axes,
    pub bars: Vec<Bar>,
}

/// `values` as bars side by side across the frame, each labelled below with its `labels` entry;
/// the value axis runs from zero (or the lowest value, when negative). `None` without values.
pub fn bar_chart(values: &[f64], labels: &[String], frame: &Frame) -> Option<BarChart> {
    if values.is_empty() {
        return None;
    }
    let (low, high) = min_max(values.iter().copied()).unwrap_or((0.0, 0.0));
    let (low, high) = (low.min(0.0), high.max(0.0));
    // All zero: an axis from zero up, not around it.
    let (low, high) = if high > low { (low, high) } else { (0.0, 1.0) };
    let (bottom, top, step, ticks) = value_axis(low, high, 5);
    let y = Scale::new((bottom, top), (frame.bottom, frame.top));
    let slot = (frame.right - frame.left) / values.len() as f64;
    let bars: Vec<Bar> = values.iter().enumerate().map(|(i, v)| slot_bar(i, slot, *v, frame, &y)).collect();
    let x_ticks =
        bars.iter().zip(labels).map(|(bar, label)| (bar.x + bar.width / 2.0, label.clone())).collect();
    Some(BarChart { axes: axes(frame, &y, &ticks, step, x_ticks), bars })
}

/// One burn-rate alert in plain numbers: its factor, the burn rates now over its long and short
/// windows, and the windows' lengths in seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BurnAlertNumbers {
    pub factor: f64,
    pub long_rate: f64,
    pub short_rate: f64,
    pub long_seconds: i64,
    pub short_seconds: i64,
}

/// A burn-rate bar: which window it is, its rate, and whether the rate is above the factor.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BurnBar {
    pub bar: Bar,
    pub long: bool,
    pub over: bool,
    pub rate: f64,
    pub seconds: i64,
}

/// An alert's factor as a horizontal mark over its two bars.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FactorMark {
    pub x1: f64,
    pub x2: f64,
    pub y: f64,
    pub factor: f64,
}

/// The burn-rate chart's geometry.
#[derive(Debug, Clone, PartialEq)]
pub struct BurnChart {
    pub axes: Axes,
    pub bars: Vec<BurnBar>,
    pub factors: Vec<FactorMark>,
}

/// Each alert's two burn rates as a pair of bars (long window, short window) with the alert's
/// factor marked across the pair; pairs are a slot apart. The value axis runs from zero to a
/// little above the largest rate or factor. `None` without alerts.
pub fn burn_chart(alerts: &[BurnAlertNumbers], frame: &Frame) -> Option<BurnChart> {
    if alerts.is_empty() {
        return None;
    }
    let values = alerts.iter().flat_map(|a| [a.factor, a.long_rate, a.short_rate]);
    let (_, high) = min_max(values).unwrap_or((0.0, 1.0));
    let (bottom, top, step, ticks) = value_axis(0.0, high.max(1.0) * 1.1, 5);
    let y = Scale::new((bottom, top), (frame.bottom, frame.top));
    // Two slots per alert and one between alerts.
    let slot = (frame.right - frame.left) / (alerts.len() * 3 - 1) as f64;
    let mut bars = Vec::with_capacity(alerts.len() * 2);
    let mut factors = Vec::with_capacity(alerts.len());
    let mut x_ticks = Vec::with_capacity(alerts.len() * 2);
    for (i, alert) in alerts.iter().enumerate() {
        for (offset, long, rate, seconds) in [
            (0, true, alert.long_rate, alert.long_seconds),
            (1, false, alert.short_rate, alert.short_seconds),
        ] {
            let bar = slot_bar(i * 3 + offset, slot, rate, frame, &y);
            x_ticks.push((bar.x + bar.width / 2.0, duration_text(seconds)));
            bars.push(BurnBar { bar, long, over: rate > alert.factor, rate, seconds });
        }
        let x1 = frame.left + slot * (i * 3) as f64;
        factors.push(FactorMark {
            x1,
            x2: x1 + slot * 2.0,
            y: y.at(alert.factor).clamp(frame.top, frame.bottom),
            factor: alert.factor,
        });
    }
    Some(BurnChart { axes: axes(frame, &y, &ticks, step, x_ticks), bars, factors })
}

/// Width of a meter's filled part for `ratio` (clamped to 0..1) of `width`.
pub fn meter_fill(ratio: f64, width: f64) -> f64 {
    if ratio.is_finite() { ratio.clamp(0.0, 1.0) * width } else { 0.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn scales_map_linearly_and_survive_an_empty_domain() {
        let x = Scale::new((0.0, 10.0), (56.0, 628.0));
        assert!(close(x.at(0.0), 56.0) && close(x.at(10.0), 628.0) && close(x.at(5.0), 342.0));
        // A y scale runs upwards: larger values nearer the top.
        let y = Scale::new((0.0, 100.0), (212.0, 14.0));
        assert!(close(y.at(0.0), 212.0) && close(y.at(100.0), 14.0) && close(y.at(50.0), 113.0));
        let flat = Scale::new((5.0, 5.0), (0.0, 100.0));
        assert!(close(flat.at(5.0), 50.0), "a single value lands in the middle");
        let broken = Scale::new((f64::NAN, 1.0), (0.0, 100.0));
        assert!(broken.at(0.5).is_finite());
    }

    #[test]
    fn value_axes_use_nice_steps_and_cover_the_data() {
        assert!(close(nice_step(100.0, 5), 20.0));
        assert!(close(nice_step(7.0, 5), 2.0));
        assert!(close(nice_step(0.3, 5), 0.1));
        assert!(close(nice_step(0.0, 5), 1.0));
        let (low, high, step, ticks) = value_axis(0.0, 84.0, 5);
        assert!(close(low, 0.0) && close(high, 100.0) && close(step, 20.0));
        assert_eq!(ticks.len(), 6);
        let (low, high, _, ticks) = value_axis(-3.0, 7.0, 5);
        assert!(low <= -3.0 && high >= 7.0 && ticks.len() >= 3);
        let (low, high, _, _) = value_axis(5.0, 5.0, 5);
        assert!(low < 5.0 && high > 5.0, "a flat series still gets an axis");
    }

    #[test]
    fn value_labels_carry_the_steps_precision_and_scale() {
        assert_eq!(value_label(40.0, 20.0), "40");
        assert_eq!(value_label(0.5, 0.1), "0.5");
        assert_eq!(value_label(2000.0, 1000.0), "2k");
        assert_eq!(value_label(1500.0, 500.0), "1500");
        assert_eq!(value_label(3e9, 1e9), "3G");
        assert_eq!(value_label(-1e-12, 0.1), "0.0", "no minus zero");
    }

    #[test]
    fn time_ticks_fall_on_whole_steps_within_the_span() {
        let day = 86_400;
        let start = 20_000 * day + 5 * 3_600;
        let (step, ticks) = time_ticks(start, start + 14 * day, 6);
        assert_eq!(step, 7 * day);
        assert!(ticks.len() <= 6 && !ticks.is_empty());
        assert!(ticks.iter().all(|t| t % step == 0 && *t >= start && *t <= start + 14 * day));
        let (step, ticks) = time_ticks(start, start + 10 * 3_600, 6);
        assert_eq!(step, 3 * 3_600);
        // 06:00, 09:00, 12:00 and 15:00: the span's end is a whole step.
        assert_eq!(ticks.len(), 4);
        assert_eq!(time_label(20_000 * day, day), "4 Oct");
        assert_eq!(time_label(20_000 * day, 3 * 3_600), "4 Oct", "midnight shows the day");
        assert_eq!(time_label(20_000 * day + 3 * 3_600, 3 * 3_600), "03:00");
        assert!(time_ticks(10, 5, 6).1.is_empty(), "an empty span has no ticks");
    }

    #[test]
    fn thinning_keeps_both_ends_and_the_bound() {
        let items: Vec<u32> = (0..10).collect();
        assert_eq!(thin(&items, 4), [0, 3, 6, 9]);
        let items: Vec<u32> = (0..11).collect();
        assert_eq!(thin(&items, 4), [0, 4, 8, 10]);
        assert_eq!(thin(&items, 20), items);
        let many: Vec<u32> = (0..720).collect();
        let thinned = thin(&many, MAX_PLOT_POINTS);
        assert!(thinned.len() <= MAX_PLOT_POINTS);
        assert_eq!((thinned[0], thinned[thinned.len() - 1]), (0, 719));
    }

    #[test]
    fn polylines_are_coordinates_in_the_frame() {
        let frame = PLOT;
        let x = Scale::new((0.0, 2.0), (frame.left, frame.right));
        let y = Scale::new((0.0, 100.0), (frame.bottom, frame.top));
        let points = polyline_points(&[(0.0, 0.0), (1.0, f64::NAN), (2.0, 100.0)], &x, &y, &frame);
        assert_eq!(points, "56.0,212.0 628.0,14.0", "a missing value is left out");
        let clipped = polyline_points(&[(1.0, 1000.0)], &x, &y, &frame);
        assert_eq!(clipped, "342.0,14.0", "values off the scale stay in the frame");
        let steps = [
            ForecastStep { time: 0.0, value: 50.0, lower: 40.0, upper: 60.0 },
            ForecastStep { time: 2.0, value: 50.0, lower: 40.0, upper: 60.0 },
        ];
        let band = band_points(&steps, &x, &y, &frame);
        assert_eq!(band, "56.0,93.2 628.0,93.2 628.0,132.8 56.0,132.8", "upper bounds out, lower back");
    }

    fn rising() -> CapacitySeries {
        let hour = 3_600.0;
        CapacitySeries {
            history: (0..48).map(|h| (f64::from(h) * hour, 30.0 + f64::from(h))).collect(),
            forecast: (48..96)
                .map(|h| {
                    let value = 30.0 + f64::from(h);
                    ForecastStep { time: f64::from(h) * hour, value, lower: value - 5.0, upper: value + 5.0 }
                })
                .collect(),
            threshold: 100.0,
            crossing: Some(70.0 * hour),
        }
    }

    #[test]
    fn the_capacity_plot_has_history_forecast_band_threshold_and_crossing() {
        let series = rising();
        let chart = capacity_chart(&series, &PLOT).unwrap();
        // Values from 0 to 125 + 5 %: a nice axis of 0..140 in steps of 20 … or 0..200 in 50s.
        let top_label = chart.axes.y_ticks.last().unwrap().label.clone();
        let top: f64 = top_label.parse().unwrap();
        assert!(top >= 125.0, "{top_label}");
        assert_eq!(chart.axes.y_ticks[0].label, "0");
        let y = Scale::new((0.0, top), (PLOT.bottom, PLOT.top));
        assert!(close(chart.threshold_y, y.at(100.0)), "the threshold line sits at its value");
        assert_eq!(chart.history.split(' ').count(), 48);
        // The forecast joins the last measurement, then runs to the right edge.
        assert_eq!(chart.forecast.split(' ').count(), 49);
        assert_eq!(chart.forecast.split(' ').next(), chart.history.split(' ').next_back());
        assert!(chart.forecast.ends_with(&format!("{},{}", coord(PLOT.right), coord(y.at(125.0)))));
        assert_eq!(chart.band.split(' ').count(), 96);
        let x = Scale::new((0.0, 95.0 * 3_600.0), (PLOT.left, PLOT.right));
        assert!(close(chart.crossing_x.unwrap(), x.at(70.0 * 3_600.0)));
        assert!(!chart.axes.x_ticks.is_empty());
        assert_eq!(chart.axes.view_box, "0 0 640 240");
    }

    #[test]
    fn a_capacity_plot_without_a_forecast_or_points() {
        let mut series = rising();
        series.forecast.clear();
        series.crossing = Some(1e12);
        let chart = capacity_chart(&series, &PLOT).unwrap();
        assert!(chart.forecast.is_empty() && chart.band.is_empty());
        assert_eq!(chart.crossing_x, None, "a crossing beyond the plot is not drawn");
        let empty =
            CapacitySeries { history: Vec::new(), forecast: Vec::new(), threshold: 80.0, crossing: None };
        assert!(capacity_chart(&empty, &PLOT).is_none());
    }

    #[test]
    fn the_budget_plot_has_a_line_over_its_range_and_a_zero_line_above_the_axis() {
        let hour = 3_600.0;
        // A day without samples, then a day falling from 100 % to 40 %.
        let series = BudgetSeries {
            points: (24..=48).map(|h| (f64::from(h) * hour, 100.0 - 2.5 * f64::from(h - 24))).collect(),
            start: 0.0,
            end: 48.0 * hour,
        };
        let chart = budget_chart(&series, &PLOT).unwrap();
        let labels: Vec<&str> = chart.axes.y_ticks.iter().map(|t| t.label.as_str()).collect();
        assert_eq!(labels, ["-20 %", "0 %", "20 %", "40 %", "60 %", "80 %", "100 %"]);
        let y = Scale::new((-20.0, 100.0), (PLOT.bottom, PLOT.top));
        assert!(close(chart.zero_y, y.at(0.0)) && chart.zero_y < PLOT.bottom, "zero stands apart");
        assert_eq!(chart.line.split(' ').count(), 25);
        // The line starts in the middle: the range's first day had no points.
        let x = Scale::new((0.0, 48.0 * hour), (PLOT.left, PLOT.right));
        let first = format!("{},{}", coord(x.at(24.0 * hour)), coord(y.at(100.0)));
        assert!(chart.line.starts_with(&first), "{} vs {first}", chart.line);
        assert!(chart.line.ends_with(&format!("{},{}", coord(PLOT.right), coord(y.at(40.0)))));
        assert!(!chart.axes.x_ticks.is_empty());

        // Overspent: the axis reaches below the lowest point; zero is still on it.
        let overspent = BudgetSeries { points: vec![(0.0, 100.0), (hour, -150.0)], start: 0.0, end: hour };
        let chart = budget_chart(&overspent, &PLOT).unwrap();
        let bottom: f64 = chart.axes.y_ticks[0].label.trim_end_matches(" %").parse().unwrap();
        assert!(bottom < -150.0, "{bottom}");
        assert!(chart.axes.y_ticks.iter().any(|t| t.label == "0 %"));
        assert!(chart.zero_y > PLOT.top && chart.zero_y < PLOT.bottom);

        // No points: no plot; an unknown range: the points' own.
        let empty = BudgetSeries { points: Vec::new(), start: 0.0, end: hour };
        assert!(budget_chart(&empty, &PLOT).is_none());
        let unknown =
            BudgetSeries { points: vec![(0.0, 50.0), (hour, 50.0)], start: f64::NAN, end: f64::NAN };
        let chart = budget_chart(&unknown, &PLOT).unwrap();
        assert!(chart.line.starts_with(&format!("{},", coord(PLOT.left))), "{}", chart.line);
    }

    #[test]
    fn bars_stand_on_zero_in_their_slots() {
        let labels: Vec<String> = ["Oct 2026", "Nov 2026"].iter().map(|s| (*s).to_string()).collect();
        let chart = bar_chart(&[50.0, 100.0], &labels, &PLOT).unwrap();
        let slot = (PLOT.right - PLOT.left) / 2.0;
        let [first, second] = [chart.bars[0], chart.bars[1]];
        assert!(close(first.width, slot * 0.8));
        assert!(close(first.x, PLOT.left + slot * 0.1));
        assert!(close(second.x, PLOT.left + slot * 1.1));
        assert!(close(first.y + first.height, PLOT.bottom) && close(second.y + second.height, PLOT.bottom));
        assert!(close(second.y, PLOT.top), "the largest bar reaches the top of a 0..100 axis");
        assert!(close(first.height * 2.0, second.height));
        let labelled: Vec<&str> = chart.axes.x_ticks.iter().map(|t| t.label.as_str()).collect();
        assert_eq!(labelled, ["Oct 2026", "Nov 2026"]);
        assert!(bar_chart(&[], &[], &PLOT).is_none());
        let zero = bar_chart(&[0.0], &labels, &PLOT).unwrap();
        assert!(close(zero.bars[0].height, 0.0));
    }

    #[test]
    fn burn_rates_are_paired_bars_under_their_factor() {
        let alerts = [
            BurnAlertNumbers {
                factor: 14.4,
                long_rate: 20.0,
                short_rate: 2.0,
                long_seconds: 3_600,
                short_seconds: 300,
            },
            BurnAlertNumbers {
                factor: 1.0,
                long_rate: 0.5,
                short_rate: 0.0,
                long_seconds: 259_200,
                short_seconds: 21_600,
            },
        ];
        let chart = burn_chart(&alerts, &PLOT).unwrap();
        assert_eq!(chart.bars.len(), 4);
        assert_eq!(chart.factors.len(), 2);
        let over: Vec<bool> = chart.bars.iter().map(|b| b.over).collect();
        assert_eq!(over, [true, false, false, false]);
        let long: Vec<bool> = chart.bars.iter().map(|b| b.long).collect();
        assert_eq!(long, [true, false, true, false]);
        let labels: Vec<&str> = chart.axes.x_ticks.iter().map(|t| t.label.as_str()).collect();
        assert_eq!(labels, ["1 h", "5 min", "3 d", "6 h"]);
        // The factor's mark spans its pair, at the factor's height.
        let slot = (PLOT.right - PLOT.left) / 5.0;
        assert!(close(chart.factors[1].x1, PLOT.left + slot * 3.0));
        assert!(close(chart.factors[1].x2, PLOT.left + slot * 5.0));
        assert!(chart.factors[0].y < chart.factors[1].y, "a larger factor sits higher");
        let first = chart.bars[0].bar;
        assert!(first.y < chart.factors[0].y, "a rate above its factor rises past the mark");
        assert!(burn_chart(&[], &PLOT).is_none());
    }

    #[test]
    fn meters_fill_their_share() {
        assert!(close(meter_fill(0.5, 320.0), 160.0));
        assert!(close(meter_fill(-0.3, 320.0), 0.0));
        assert!(close(meter_fill(1.7, 320.0), 320.0));
        assert!(close(meter_fill(f64::NAN, 320.0), 0.0));
    }

    #[test]
    fn texts_read_for_people() {
        assert_eq!(duration_text(300), "5 min");
        assert_eq!(duration_text(3_600), "1 h");
        assert_eq!(duration_text(7_500), "2 h 5 min");
        assert_eq!(duration_text(259_200), "3 d");
        assert_eq!(duration_text(30 * 86_400 + 7_200), "30 d 2 h");
        assert_eq!(duration_text(20), "20 s");
        assert_eq!(duration_text(0), "0 min");
        assert_eq!(percent_text(99.954, 2), "99.95 %");
        assert_eq!(rate_text(14.4), "14.4");
        assert_eq!(rate_text(6.0), "6");
        assert_eq!(rate_text(0.0), "0");
        assert_eq!(rate_text(0.504), "0.5");
        assert_eq!(number_text(80.0), "80");
        assert_eq!(number_text(46.754), "46.75");
        assert_eq!(html_id("checkout-availability"), "checkout-availability");
        assert_eq!(html_id("a b/c"), "a-b-c");
    }

    #[test]
    fn money_is_exact_to_the_cent() {
        let amount = Money { currency_code: "EUR".into(), units: 1_334, nanos: 500_000_000 };
        assert_eq!(money_text(Some(&amount)), "EUR 1,334.50");
        let big = Money { currency_code: "USD".into(), units: 1_234_567, nanos: 0 };
        assert_eq!(money_text(Some(&big)), "USD 1,234,567.00");
        let negative = Money { currency_code: "EUR".into(), units: 0, nanos: -250_000_000 };
        assert_eq!(money_text(Some(&negative)), "EUR -0.25");
        assert_eq!(money_text(None), "—");
        assert!(close(money_value(&amount), 1_334.5));
        assert!(is_currency_code("EUR") && !is_currency_code("eur") && !is_currency_code("EURO"));
    }

    #[test]
    fn months_count_back_across_years() {
        assert_eq!(month_range(2026, 11, 6), ("2026-06".to_string(), "2026-11".to_string()));
        assert_eq!(month_range(2026, 2, 6), ("2025-09".to_string(), "2026-02".to_string()));
        assert_eq!(month_range(2026, 1, 1), ("2026-01".to_string(), "2026-01".to_string()));
        assert_eq!(month_label("2026-11"), "Nov 2026");
        assert_eq!(month_label("later"), "later");
    }

    #[test]
    fn attainment_reads_as_a_figure() {
        let none = Attainment::default();
        assert_eq!(none.percent(), None);
        assert_eq!(attainment_figure(&none).class, "status-none");
        let some = Attainment { measured: 8, met: 6, breached: 2 };
        assert_eq!(attainment_figure(&some), Figure::new("75.0 %", "status-warn"));
        let all = Attainment { measured: 4, met: 4, breached: 0 };
        assert_eq!(attainment_figure(&all), Figure::new("100.0 %", "status-ok"));
    }

    #[test]
    fn incidents_group_by_priority_with_the_highest_first() {
        let incident = |number: &str, priority: i32| Incident {
            name: format!("incidents/{number}"),
            number: number.into(),
            priority,
            state: IncidentState::InProgress as i32,
            ..Default::default()
        };
        let view = incidents_view(&[
            incident("INC2", 3),
            incident("INC1", 1),
            incident("INC3", 3),
            incident("INC4", 0),
        ]);
        assert_eq!(view.count, "4");
        let groups: Vec<(&str, usize)> =
            view.groups.iter().map(|g| (g.label.as_str(), g.incidents.len())).collect();
        assert_eq!(groups, [("P1", 1), ("P3", 2), ("No priority yet", 1)]);
        assert_eq!(view.groups[0].incidents[0].state, "In progress");
        assert!(view.groups[0].incidents[0].linkable);
    }
}
