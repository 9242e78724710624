//! `itsm.delivery.v1.ContinuityService`: business impact analyses, continuity plans checked
//! against the CMDB's dependency chain, exercises assessed against RTO and RPO, gap analysis,
//! and invocation (a major incident plus live tracking of the plan's steps).

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use sea_orm::TransactionTrait;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use itsm_cmdb_client::{BUSINESS_SERVICE_CLASS, CiReference, CmdbDirectory};
use itsm_proto::delivery::continuity_service_server::ContinuityService;
use itsm_proto::delivery::{
    AnalyzeContinuityGapsRequest, AnalyzeContinuityGapsResponse, BusinessImpactAnalysis, ContinuityExercise,
    ContinuityGap, ContinuityInvocation, ContinuityPlan, CreateBusinessImpactAnalysisRequest,
    CreateContinuityPlanRequest, DeleteContinuityPlanRequest, DeleteContinuityPlanResponse,
    GetBusinessImpactAnalysisRequest, GetContinuityInvocationRequest, GetContinuityPlanRequest, ImpactLevel,
    InvocationStep, InvocationStepState, InvokeContinuityPlanRequest, ListBusinessImpactAnalysesRequest,
    ListBusinessImpactAnalysesResponse, ListContinuityExercisesRequest, ListContinuityExercisesResponse,
    ListContinuityPlansRequest, ListContinuityPlansResponse, RecordContinuityExerciseRequest,
    RecoveryStrategy, ServiceContinuityGaps, ServiceCriticality, UpdateBusinessImpactAnalysisRequest,
    UpdateContinuityPlanRequest, UpdateInvocationStepRequest,
};
use itsm_proto::incident::incident_service_client::IncidentServiceClient;
use itsm_proto::incident::{CreateIncidentRequest, Incident, PromoteIncidentRequest};
use itsm_runtime::db::{micros, timestamp};
use itsm_runtime::error::{FieldViolation, Violations};
use itsm_runtime::fieldmask::UpdateMask;
use itsm_runtime::idempotency;
use itsm_runtime::paging::PageTokens;
use itsm_runtime::validate;
use itsm_runtime::{CallContext, Error};

use crate::domain::continuity::{
    self as rules, BackupPolicy, BusinessImpact, Criticality, ExerciseResult, Gap, ImpactStep,
    ServiceContinuityInput, StepProgress, StepState,
};
use crate::finance::decimal_of;
use itsm_runtime::documents::{Column, Columns, Document, Documents, Kind, Listing};

pub const ANALYSES: Kind = Kind {
    prefix: "businessImpactAnalyses/",
    create_method: "CreateBusinessImpactAnalysis",
    filters: &[("business_service", Column::Subject), ("owner", Column::Owner)],
};
pub const PLANS: Kind = Kind {
    prefix: "continuityPlans/",
    create_method: "CreateContinuityPlan",
    filters: &[
        ("business_service", Column::Subject),
        ("owner", Column::Owner),
        ("display_name", Column::DisplayName),
    ],
};
pub const EXERCISES: Kind = Kind {
    prefix: "continuityExercises/",
    create_method: "RecordContinuityExercise",
    filters: &[("continuity_plan", Column::Parent)],
};
pub const INVOCATIONS: Kind = Kind {
    prefix: "continuityInvocations/",
    create_method: "InvokeContinuityPlan",
    filters: &[("continuity_plan", Column::Parent), ("business_service", Column::Subject)],
};

const ANALYSIS_UPDATABLE: &[&str] =
    &["criticality", "rto", "rpo", "maximum_tolerable_downtime", "impact_over_time", "owner"];
const PLAN_UPDATABLE: &[&str] = &["display_name", "strategy", "steps", "owner", "backups"];
const DEFAULT_EXERCISE_DAYS: i64 = 365;
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

fn delta(d: Option<&prost_types::Duration>) -> TimeDelta {
    d.map_or(TimeDelta::zero(), |d| {
        TimeDelta::seconds(d.seconds) + TimeDelta::nanoseconds(i64::from(d.nanos))
    })
}

fn duration(d: TimeDelta) -> prost_types::Duration {
    let seconds = d.num_seconds();
    let nanos = (d - TimeDelta::seconds(seconds)).num_nanoseconds().unwrap_or(0) as i32;
    prost_types::Duration { seconds, nanos }
}

fn time(t: Option<&prost_types::Timestamp>) -> Option<DateTime<Utc>> {
    t.and_then(|t| DateTime::<Utc>::from_timestamp_micros(micros(t)))
}

fn ts(t: DateTime<Utc>) -> prost_types::Timestamp {
    timestamp(t.timestamp_micros())
}

/// Domain violations under a message field ("business_impact_analysis.rto").
fn prefixed(message: &str, violations: Vec<FieldViolation>) -> Error {
    Error::InvalidArgument(
        violations
            .into_iter()
            .map(|v| FieldViolation::new(format!("{message}.{}", v.field), v.description))
            .collect(),
    )
}

fn criticality_of(c: i32) -> Option<Criticality> {
    match ServiceCriticality::try_from(c).ok()? {
        ServiceCriticality::Low => Some(Criticality::Low),
        ServiceCriticality::Medium => Some(Criticality::Medium),
        ServiceCriticality::High => Some(Criticality::High),
        ServiceCriticality::Critical => Some(Criticality::Critical),
        ServiceCriticality::Unspecified => None,
    }
}

fn level_of(l: i32) -> Option<rules::ImpactLevel> {
    match ImpactLevel::try_from(l).ok()? {
        ImpactLevel::Low => Some(rules::ImpactLevel::Low),
        ImpactLevel::Moderate => Some(rules::ImpactLevel::Moderate),
        ImpactLevel::High => Some(rules::ImpactLevel::High),
        ImpactLevel::Severe => Some(rules::ImpactLevel::Severe),
        ImpactLevel::Unspecified => None,
    }
}

/// The rules' view of an analysis, with the proto fields' violations.
fn impact_of(b: &BusinessImpactAnalysis) -> Result<BusinessImpact, Error> {
    let mut v = Violations::new();
    let criticality = criticality_of(b.criticality);
    if criticality.is_none() {
        v.add("business_impact_analysis.criticality", "must be LOW, MEDIUM, HIGH or CRITICAL");
    }
    for (name, d) in
        [("rto", &b.rto), ("rpo", &b.rpo), ("maximum_tolerable_downtime", &b.maximum_tolerable_downtime)]
    {
        if d.is_none() {
            v.add(format!("business_impact_analysis.{name}"), "is required");
        }
    }
    let mut steps = Vec::new();
    for (i, s) in b.impact_over_time.iter().enumerate() {
        let Some(level) = level_of(s.level) else {
            v.add(format!("business_impact_analysis.impact_over_time[{i}].level"), "must be LOW … SEVERE");
            continue;
        };
        steps.push(ImpactStep {
            after: delta(s.after.as_ref()),
            level,
            financial_per_hour: s.loss_per_hour.as_ref().map(decimal_of),
            description: s.description.clone(),
        });
    }
    v.into_result()?;
    let impact = BusinessImpact {
        business_service: b.business_service.clone(),
        criticality: criticality.unwrap_or(Criticality::Low),
        rto: delta(b.rto.as_ref()),
        rpo: delta(b.rpo.as_ref()),
        mtd: delta(b.maximum_tolerable_downtime.as_ref()),
        impact_over_time: steps,
    };
    rules::validate_bia(&impact).map_err(|violations| {
        // The rules call it `mtd`; the message field is longer.
        let renamed = violations
            .into_iter()
            .map(|v| {
                let field = if v.field == "mtd" { "maximum_tolerable_downtime".to_string() } else { v.field };
                let field = field.replace("financial_per_hour", "loss_per_hour");
                FieldViolation::new(field, v.description)
            })
            .collect();
        prefixed("business_impact_analysis", renamed)
    })?;
    Ok(impact)
}

fn strategy_of(s: i32) -> Option<rules::RecoveryStrategy> {
    use rules::RecoveryStrategy as R;
    match RecoveryStrategy::try_from(s).ok()? {
        RecoveryStrategy::ManualWorkaround => Some(R::ManualWorkaround),
        RecoveryStrategy::Reciprocal => Some(R::Reciprocal),
        RecoveryStrategy::Gradual => Some(R::GradualRecovery),
        RecoveryStrategy::Intermediate => Some(R::IntermediateRecovery),
        RecoveryStrategy::Fast => Some(R::FastRecovery),
        RecoveryStrategy::Immediate => Some(R::Immediate),
        RecoveryStrategy::Unspecified => None,
    }
}

/// The rules' view of a plan (steps ordered as listed, 1-based).
fn plan_of(p: &ContinuityPlan) -> rules::ContinuityPlan {
    rules::ContinuityPlan {
        business_service: p.business_service.clone(),
        strategy: strategy_of(p.strategy).unwrap_or(rules::RecoveryStrategy::ManualWorkaround),
        steps: p
            .steps
            .iter()
            .enumerate()
            .map(|(i, s)| rules::PlanStep {
                order: i as u32 + 1,
                title: s.title.clone(),
                owner: s.owner.clone(),
                expected: delta(s.expected_duration.as_ref()),
                recovers: s.recovers.clone(),
            })
            .collect(),
        last_exercised: time(p.last_test_time.as_ref()),
    }
}

fn check_plan(p: &ContinuityPlan, has: &dyn Fn(&str) -> bool) -> Result<(), Error> {
    let mut v = Violations::new();
    if has("display_name") {
        validate::text(&mut v, "continuity_plan.display_name", &p.display_name, 200, true);
    }
    if has("owner") {
        validate::text(&mut v, "continuity_plan.owner", &p.owner, 200, false);
    }
    if has("strategy") && strategy_of(p.strategy).is_none() {
        v.add("continuity_plan.strategy", "is required (MANUAL_WORKAROUND … IMMEDIATE)");
    }
    if has("steps") {
        for (i, s) in p.steps.iter().enumerate() {
            if s.expected_duration.is_none() {
                v.add(format!("continuity_plan.steps[{i}].expected_duration"), "is required");
            }
        }
    }
    if has("backups") {
        for (i, b) in p.backups.iter().enumerate() {
            if delta(b.interval.as_ref()) <= TimeDelta::zero() {
                v.add(format!("continuity_plan.backups[{i}].interval"), "must be positive");
            }
        }
    }
    v.into_result()?;
    if has("steps") {
        rules::validate_plan(&plan_of(p)).map_err(|violations| {
            let renamed = violations
                .into_iter()
                .filter(|v| v.field != "business_service")
                .map(|v| {
                    FieldViolation::new(v.field.replace(".expected", ".expected_duration"), v.description)
                })
                .collect::<Vec<_>>();
            if renamed.is_empty() {
                Error::invalid("continuity_plan", "is invalid")
            } else {
                prefixed("continuity_plan", renamed)
            }
        })?;
    }
    Ok(())
}

fn present_analysis(d: Document<BusinessImpactAnalysis>) -> BusinessImpactAnalysis {
    BusinessImpactAnalysis { name: d.name.clone(), etag: d.etag(), audit: Some(d.audit()), ..d.body }
}

fn present_plan(d: Document<ContinuityPlan>) -> ContinuityPlan {
    ContinuityPlan { name: d.name.clone(), etag: d.etag(), audit: Some(d.audit()), ..d.body }
}

fn plan_columns(p: &ContinuityPlan) -> Columns {
    Columns {
        subject: p.business_service.clone(),
        display_name: p.display_name.clone(),
        owner: p.owner.clone(),
        ..Columns::default()
    }
}

/// The CMDB's dependency chain: CI → the CIs it needs.
struct DependencyGraph {
    needs: HashMap<String, Vec<String>>,
}

impl DependencyGraph {
    /// Everything `root` needs, directly or not (without `root`).
    fn closure(&self, root: &str) -> Vec<String> {
        let mut seen: HashSet<&str> = HashSet::from([root]);
        let mut queue = VecDeque::from([root]);
        let mut out = Vec::new();
        while let Some(ci) = queue.pop_front() {
            for next in self.needs.get(ci).into_iter().flatten() {
                if seen.insert(next.as_str()) {
                    out.push(next.clone());
                    queue.push_back(next.as_str());
                }
            }
        }
        out
    }
}

fn step_state_of(s: StepState) -> InvocationStepState {
    match s {
        StepState::Pending => InvocationStepState::Pending,
        StepState::InProgress => InvocationStepState::InProgress,
        StepState::Done => InvocationStepState::Done,
        StepState::Skipped => InvocationStepState::Skipped,
        StepState::Failed => InvocationStepState::Failed,
    }
}

fn state_of(s: i32) -> Option<StepState> {
    match InvocationStepState::try_from(s).ok()? {
        InvocationStepState::Pending => Some(StepState::Pending),
        InvocationStepState::InProgress => Some(StepState::InProgress),
        InvocationStepState::Done => Some(StepState::Done),
        InvocationStepState::Skipped => Some(StepState::Skipped),
        InvocationStepState::Failed => Some(StepState::Failed),
        InvocationStepState::Unspecified => None,
    }
}

fn progress_of(steps: &[InvocationStep]) -> Vec<StepProgress> {
    steps
        .iter()
        .map(|s| StepProgress {
            order: s.step as u32,
            state: state_of(s.state).unwrap_or(StepState::Pending),
            started: time(s.start_time.as_ref()),
            finished: time(s.finish_time.as_ref()),
        })
        .collect()
}

/// The continuity API.
pub struct ContinuityApi {
    pub documents: Documents,
    pub cmdb: CmdbDirectory,
    pub incidents: Option<Channel>,
    pub internal_token: String,
    pub page_tokens: PageTokens,
}

impl ContinuityApi {
    async fn graph(&self, ctx: &CallContext) -> Result<DependencyGraph, Error> {
        let mut needs: HashMap<String, Vec<String>> = HashMap::new();
        for d in self.cmdb.dependencies(ctx).await? {
            needs.entry(d.consumer).or_default().push(d.provider);
        }
        Ok(DependencyGraph { needs })
    }

    async fn analysis_of(
        &self,
        ctx: &CallContext,
        service: &str,
    ) -> Result<Option<Document<BusinessImpactAnalysis>>, Error> {
        Ok(Documents::all_where(&self.documents.db, &ANALYSES, &ctx.tenant, Column::Subject, service)
            .await?
            .pop())
    }

    /// The plan's critical path through its steps and the CMDB chain.
    async fn estimate(
        &self,
        ctx: &CallContext,
        plan: &ContinuityPlan,
    ) -> Result<prost_types::Duration, Error> {
        let graph = self.graph(ctx).await?;
        Ok(duration(rules::estimate_recovery(&plan_of(plan), &graph.needs).total))
    }

    async fn check_plan_cis(
        &self,
        ctx: &CallContext,
        p: &ContinuityPlan,
        has: &(dyn Fn(&str) -> bool + Sync),
    ) -> Result<(), Error> {
        let mut refs = Vec::new();
        if has("business_service") {
            refs.push(CiReference {
                field: "continuity_plan.business_service".into(),
                name: &p.business_service,
                class: Some(BUSINESS_SERVICE_CLASS),
            });
        }
        if has("steps") {
            for (i, s) in p.steps.iter().enumerate() {
                for (j, ci) in s.recovers.iter().enumerate() {
                    refs.push(CiReference {
                        field: format!("continuity_plan.steps[{i}].recovers[{j}]"),
                        name: ci,
                        class: None,
                    });
                }
            }
        }
        if has("backups") {
            for (i, b) in p.backups.iter().enumerate() {
                refs.push(CiReference {
                    field: format!("continuity_plan.backups[{i}].configuration_item"),
                    name: &b.configuration_item,
                    class: None,
                });
            }
        }
        self.cmdb.check(ctx, &refs).await.map(|_| ())
    }

    /// The gaps of one service.
    async fn gaps_of(
        &self,
        ctx: &CallContext,
        graph: &DependencyGraph,
        service: &str,
        exercise_period: TimeDelta,
    ) -> Result<ServiceContinuityGaps, Error> {
        let analysis = self.analysis_of(ctx, service).await?;
        let plans: Vec<Document<ContinuityPlan>> =
            Documents::all_where(&self.documents.db, &PLANS, &ctx.tenant, Column::Subject, service).await?;
        // The most recently created plan is the service's plan.
        let plan = plans.into_iter().max_by_key(|p| p.create_time);
        let impact = match &analysis {
            Some(a) => Some(impact_of(&a.body)?),
            None => None,
        };
        let rules_plan = plan.as_ref().map(|p| plan_of(&p.body));
        let dependencies = graph.closure(service);
        // Data lives in databases and storage; those need backups.
        let mut data_cis = HashSet::new();
        for chunk in dependencies.chunks(1000) {
            for (name, ci) in self.cmdb.lookup(ctx, chunk).await? {
                if ci.ci_class.contains("database") || ci.ci_class.contains("storage") {
                    data_cis.insert(name);
                }
            }
        }
        let backups: HashMap<String, BackupPolicy> = plan
            .iter()
            .flat_map(|p| p.body.backups.iter())
            .map(|b| (b.configuration_item.clone(), BackupPolicy { interval: delta(b.interval.as_ref()) }))
            .collect();
        let gaps = rules::analyse_gaps(ServiceContinuityInput {
            business_service: service,
            bia: impact.as_ref(),
            plan: rules_plan.as_ref(),
            dependencies: &dependencies,
            deps: &graph.needs,
            backups: &backups,
            data_cis: &data_cis,
            now: Utc::now(),
            exercise_period,
        });
        let estimate = rules_plan.as_ref().map(|p| rules::estimate_recovery(p, &graph.needs).total);
        Ok(ServiceContinuityGaps {
            business_service: service.to_string(),
            continuity_plan: plan.as_ref().map(|p| p.name.clone()).unwrap_or_default(),
            business_impact_analysis: analysis.as_ref().map(|a| a.name.clone()).unwrap_or_default(),
            rto: impact.as_ref().map(|i| duration(i.rto)),
            estimated_recovery_time: estimate.map(duration),
            dependencies: dependencies.len() as i32,
            gaps: gaps
                .iter()
                .map(|g| ContinuityGap {
                    code: g.code().to_string(),
                    description: g.describe(),
                    configuration_item: match g {
                        Gap::UnrecoveredDependency { ci }
                        | Gap::NoBackup { ci }
                        | Gap::BackupIntervalExceedsRpo { ci, .. } => ci.clone(),
                        Gap::StepOrder(o) => o.ci.clone(),
                        _ => String::new(),
                    },
                })
                .collect(),
        })
    }

    /// An invocation with its live status.
    async fn present_invocation(
        &self,
        ctx: &CallContext,
        d: Document<ContinuityInvocation>,
    ) -> Result<ContinuityInvocation, Error> {
        let mut out =
            ContinuityInvocation { name: d.name.clone(), etag: d.etag(), audit: Some(d.audit()), ..d.body };
        let plan_id = PLANS.id_of(&out.continuity_plan, "continuity_plan")?;
        let Some(plan) =
            Documents::find::<ContinuityPlan>(&self.documents.db, &PLANS, &ctx.tenant, &plan_id).await?
        else {
            return Ok(out);
        };
        let graph = self.graph(ctx).await?;
        let rto = self
            .analysis_of(ctx, &out.business_service)
            .await?
            .and_then(|a| a.body.rto)
            .map(|r| delta(Some(&r)));
        let declared = time(out.declare_time.as_ref()).unwrap_or_else(Utc::now);
        let status = rules::invocation_eta(
            &plan_of(&plan.body),
            &graph.needs,
            &progress_of(&out.steps),
            declared,
            Utc::now(),
            rto,
        );
        out.elapsed = Some(duration(status.elapsed));
        out.remaining_estimate = Some(duration(status.remaining_estimate));
        out.expected_recovery_time = Some(ts(status.expected_recovery_at));
        out.rto_deadline = status.rto_deadline.map(ts);
        out.on_track = status.on_track;
        out.steps_done = status.steps_done as i32;
        Ok(out)
    }

    /// Opens the invocation's major incident (idempotent on the invocation's id).
    async fn open_major_incident(
        &self,
        ctx: &CallContext,
        invocation: &Document<ContinuityInvocation>,
        plan: &Document<ContinuityPlan>,
    ) -> Result<String, Error> {
        let Some(channel) = &self.incidents else {
            return Err(Error::Unavailable(
                "the incident service is not configured (upstream.incident)".into(),
            ));
        };
        let mut client = IncidentServiceClient::new(channel.clone());
        let incident = Incident {
            short_description: format!(
                "Disaster declared: {} ({})",
                plan.body.display_name, invocation.body.business_service
            )
            .chars()
            .take(200)
            .collect(),
            description: format!(
                "Continuity plan {} invoked as {}. {}",
                plan.name, invocation.name, invocation.body.description
            ),
            category: "continuity".into(),
            business_service: invocation.body.business_service.clone(),
            impact: 1,
            urgency: 1,
            ..Default::default()
        };
        let mut request = Request::new(CreateIncidentRequest {
            incident: Some(incident),
            request_id: invocation.id.clone(),
        });
        request.set_timeout(CALL_TIMEOUT);
        ctx.apply(request.metadata_mut(), &self.internal_token);
        let unavailable =
            |s: Status| Error::Unavailable(format!("the incident service did not answer: {}", s.message()));
        let created = client.create_incident(request).await.map_err(unavailable)?.into_inner();
        if !created.major {
            let mut request = Request::new(PromoteIncidentRequest {
                name: created.name.clone(),
                reason: format!("Continuity plan {} invoked ({})", plan.name, invocation.name),
                etag: String::new(),
            });
            request.set_timeout(CALL_TIMEOUT);
            ctx.apply(request.metadata_mut(), &self.internal_token);
            client.promote_incident(request).await.map_err(unavailable)?;
        }
        Ok(created.name)
    }
}

#[tonic::async_trait]
impl ContinuityService for ContinuityApi {
    async fn create_business_impact_analysis(
        &self,
        request: Request<CreateBusinessImpactAnalysisRequest>,
    ) -> Result<Response<BusinessImpactAnalysis>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let r = request.into_inner();
        let Some(b) = r.business_impact_analysis.as_ref() else {
            return Err(Error::invalid("business_impact_analysis", "is required").into());
        };
        let mut v = Violations::new();
        validate::text(&mut v, "business_impact_analysis.owner", &b.owner, 200, false);
        v.into_result()?;
        impact_of(b)?;
        self.cmdb
            .check(
                &ctx,
                &[CiReference {
                    field: "business_impact_analysis.business_service".into(),
                    name: &b.business_service,
                    class: Some(BUSINESS_SERVICE_CLASS),
                }],
            )
            .await?;
        let body =
            BusinessImpactAnalysis { name: String::new(), etag: String::new(), audit: None, ..b.clone() };
        let columns = Columns {
            subject: b.business_service.clone(),
            owner: b.owner.clone(),
            unique_key: Some(b.business_service.clone()),
            ..Columns::default()
        };
        let hash = idempotency::request_hash(&r);
        let d = self.documents.create(&ANALYSES, &ctx, &r.request_id, &hash, columns, &body).await.map_err(
            |e| match e {
                Error::AlreadyExists(_) => Error::AlreadyExists(format!(
                    "{} already has a business impact analysis; update it",
                    b.business_service
                )),
                other => other,
            },
        )?;
        Ok(Response::new(present_analysis(d)))
    }

    async fn get_business_impact_analysis(
        &self,
        request: Request<GetBusinessImpactAnalysisRequest>,
    ) -> Result<Response<BusinessImpactAnalysis>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let d = self.documents.get(&ANALYSES, &ctx, &request.get_ref().name, "name").await?;
        Ok(Response::new(present_analysis(d)))
    }

    async fn list_business_impact_analyses(
        &self,
        request: Request<ListBusinessImpactAnalysesRequest>,
    ) -> Result<Response<ListBusinessImpactAnalysesResponse>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let r = request.get_ref();
        let listing =
            Listing { page_size: r.page_size, page_token: &r.page_token, filter: &r.filter, order_by: "" };
        let (items, next_page_token) = self
            .documents
            .list::<BusinessImpactAnalysis>(&ANALYSES, &ctx, &self.page_tokens, &listing)
            .await?;
        Ok(Response::new(ListBusinessImpactAnalysesResponse {
            business_impact_analyses: items.into_iter().map(present_analysis).collect(),
            next_page_token,
        }))
    }

    async fn update_business_impact_analysis(
        &self,
        request: Request<UpdateBusinessImpactAnalysisRequest>,
    ) -> Result<Response<BusinessImpactAnalysis>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let r = request.into_inner();
        let Some(b) = r.business_impact_analysis else {
            return Err(Error::invalid("business_impact_analysis", "is required").into());
        };
        let id = ANALYSES.id_of(&b.name, "business_impact_analysis.name")?;
        let mask = UpdateMask::parse(r.update_mask.as_ref(), ANALYSIS_UPDATABLE, "update_mask")?;
        let stored = self
            .documents
            .update(&ANALYSES, &ctx, &id, &b.etag, |current: &Document<BusinessImpactAnalysis>| {
                let mut after = current.body.clone();
                if mask.contains("criticality") {
                    after.criticality = b.criticality;
                }
                if mask.contains("rto") {
                    after.rto = b.rto;
                }
                if mask.contains("rpo") {
                    after.rpo = b.rpo;
                }
                if mask.contains("maximum_tolerable_downtime") {
                    after.maximum_tolerable_downtime = b.maximum_tolerable_downtime;
                }
                if mask.contains("impact_over_time") {
                    after.impact_over_time.clone_from(&b.impact_over_time);
                }
                if mask.contains("owner") {
                    let mut v = Violations::new();
                    validate::text(&mut v, "business_impact_analysis.owner", &b.owner, 200, false);
                    v.into_result()?;
                    after.owner.clone_from(&b.owner);
                }
                // The whole analysis must still hold together (e.g. RTO within the MTD).
                impact_of(&after)?;
                let columns = Columns { owner: after.owner.clone(), ..current.columns.clone() };
                Ok((columns, after))
            })
            .await?;
        Ok(Response::new(present_analysis(stored)))
    }

    async fn create_continuity_plan(
        &self,
        request: Request<CreateContinuityPlanRequest>,
    ) -> Result<Response<ContinuityPlan>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let r = request.into_inner();
        let Some(p) = r.continuity_plan.as_ref() else {
            return Err(Error::invalid("continuity_plan", "is required").into());
        };
        check_plan(p, &|_| true)?;
        self.check_plan_cis(&ctx, p, &|_| true).await?;
        let mut body = ContinuityPlan {
            name: String::new(),
            etag: String::new(),
            audit: None,
            last_test_time: None,
            ..p.clone()
        };
        body.estimated_recovery_time = Some(self.estimate(&ctx, &body).await?);
        let hash = idempotency::request_hash(&r);
        let d = self.documents.create(&PLANS, &ctx, &r.request_id, &hash, plan_columns(&body), &body).await?;
        Ok(Response::new(present_plan(d)))
    }

    async fn get_continuity_plan(
        &self,
        request: Request<GetContinuityPlanRequest>,
    ) -> Result<Response<ContinuityPlan>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let d = self.documents.get(&PLANS, &ctx, &request.get_ref().name, "name").await?;
        Ok(Response::new(present_plan(d)))
    }

    async fn list_continuity_plans(
        &self,
        request: Request<ListContinuityPlansRequest>,
    ) -> Result<Response<ListContinuityPlansResponse>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let r = request.get_ref();
        let listing =
            Listing { page_size: r.page_size, page_token: &r.page_token, filter: &r.filter, order_by: "" };
        let (items, next_page_token) =
            self.documents.list::<ContinuityPlan>(&PLANS, &ctx, &self.page_tokens, &listing).await?;
        Ok(Response::new(ListContinuityPlansResponse {
            continuity_plans: items.into_iter().map(present_plan).collect(),
            next_page_token,
        }))
    }

    async fn update_continuity_plan(
        &self,
        request: Request<UpdateContinuityPlanRequest>,
    ) -> Result<Response<ContinuityPlan>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let r = request.into_inner();
        let Some(p) = r.continuity_plan else {
            return Err(Error::invalid("continuity_plan", "is required").into());
        };
        let id = PLANS.id_of(&p.name, "continuity_plan.name")?;
        let mask = UpdateMask::parse(r.update_mask.as_ref(), PLAN_UPDATABLE, "update_mask")?;
        check_plan(&p, &|f| mask.contains(f))?;
        self.check_plan_cis(&ctx, &p, &|f| mask.contains(f)).await?;
        let current: Document<ContinuityPlan> =
            self.documents.get(&PLANS, &ctx, &p.name, "continuity_plan.name").await?;
        let mut after = current.body.clone();
        if mask.contains("display_name") {
            after.display_name.clone_from(&p.display_name);
        }
        if mask.contains("strategy") {
            after.strategy = p.strategy;
        }
        if mask.contains("steps") {
            after.steps.clone_from(&p.steps);
        }
        if mask.contains("owner") {
            after.owner.clone_from(&p.owner);
        }
        if mask.contains("backups") {
            after.backups.clone_from(&p.backups);
        }
        after.estimated_recovery_time = Some(self.estimate(&ctx, &after).await?);
        // The etag sent, or the version read above: a concurrent edit in between is ABORTED.
        let etag = if p.etag.is_empty() { current.etag() } else { p.etag.clone() };
        let stored = self
            .documents
            .update(&PLANS, &ctx, &id, &etag, |_: &Document<ContinuityPlan>| {
                Ok((plan_columns(&after), after.clone()))
            })
            .await?;
        Ok(Response::new(present_plan(stored)))
    }

    async fn delete_continuity_plan(
        &self,
        request: Request<DeleteContinuityPlanRequest>,
    ) -> Result<Response<DeleteContinuityPlanResponse>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let r = request.get_ref();
        let id = PLANS.id_of(&r.name, "name")?;
        self.documents.delete(&PLANS, &ctx, &id, &r.etag).await?;
        Ok(Response::new(DeleteContinuityPlanResponse {}))
    }

    async fn record_continuity_exercise(
        &self,
        request: Request<RecordContinuityExerciseRequest>,
    ) -> Result<Response<ContinuityExercise>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let r = request.into_inner();
        let Some(e) = r.continuity_exercise.as_ref() else {
            return Err(Error::invalid("continuity_exercise", "is required").into());
        };
        let plan: Document<ContinuityPlan> = self
            .documents
            .get(&PLANS, &ctx, &e.continuity_plan, "continuity_exercise.continuity_plan")
            .await?;
        let mut v = Violations::new();
        let performed = time(e.perform_time.as_ref());
        if performed.is_none() && e.scheduled_time.is_none() {
            v.add(
                "continuity_exercise.scheduled_time",
                "set scheduled_time, or perform_time for an exercise done",
            );
        }
        if performed.is_some() {
            for (name, d) in
                [("achieved_recovery_time", &e.achieved_recovery_time), ("data_loss", &e.data_loss)]
            {
                match d {
                    None => {
                        v.add(format!("continuity_exercise.{name}"), "is required for a performed exercise");
                    }
                    Some(d) if delta(Some(d)) < TimeDelta::zero() => {
                        v.add(format!("continuity_exercise.{name}"), "must not be negative");
                    }
                    Some(_) => {}
                }
            }
        }
        for (i, f) in e.findings.iter().enumerate() {
            validate::text(&mut v, &format!("continuity_exercise.findings[{i}]"), f, 2000, true);
        }
        for (i, a) in e.follow_up_actions.iter().enumerate() {
            validate::text(
                &mut v,
                &format!("continuity_exercise.follow_up_actions[{i}].title"),
                &a.title,
                200,
                true,
            );
        }
        v.into_result()?;
        let mut body = ContinuityExercise {
            name: String::new(),
            audit: None,
            rto_met: false,
            rpo_met: false,
            rto_margin: None,
            rpo_margin: None,
            ..e.clone()
        };
        if performed.is_some()
            && let Some(analysis) = self.analysis_of(&ctx, &plan.body.business_service).await?
        {
            let impact = impact_of(&analysis.body)?;
            let result = ExerciseResult {
                achieved_recovery: delta(e.achieved_recovery_time.as_ref()),
                data_loss: delta(e.data_loss.as_ref()),
            };
            let a =
                rules::assess_exercise(&impact, &result).map_err(|v| prefixed("continuity_exercise", v))?;
            body.rto_met = a.rto_met;
            body.rpo_met = a.rpo_met;
            body.rto_margin = Some(duration(a.rto_margin));
            body.rpo_margin = Some(duration(a.rpo_margin));
        }
        idempotency::validate_request_id(&r.request_id, "request_id")?;
        let hash = idempotency::request_hash(&r);
        let columns = Columns {
            parent: plan.name.clone(),
            subject: plan.body.business_service.clone(),
            ..Columns::default()
        };
        let d = self.documents.create(&EXERCISES, &ctx, &r.request_id, &hash, columns, &body).await?;
        // The plan remembers its latest exercise (for gap analysis).
        if let Some(at) = performed
            && time(plan.body.last_test_time.as_ref()).is_none_or(|last| last < at)
        {
            self.documents
                .update(&PLANS, &ctx, &plan.id, "", |current: &Document<ContinuityPlan>| {
                    let mut after = current.body.clone();
                    after.last_test_time = Some(ts(at));
                    Ok((current.columns.clone(), after))
                })
                .await?;
        }
        Ok(Response::new(ContinuityExercise { name: d.name.clone(), audit: Some(d.audit()), ..d.body }))
    }

    async fn list_continuity_exercises(
        &self,
        request: Request<ListContinuityExercisesRequest>,
    ) -> Result<Response<ListContinuityExercisesResponse>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let r = request.get_ref();
        PLANS.id_of(&r.continuity_plan, "continuity_plan")?;
        // The name is checked above, so it is safe inside the filter text.
        let filter = format!("continuity_plan = \"{}\"", r.continuity_plan);
        let listing =
            Listing { page_size: r.page_size, page_token: &r.page_token, filter: &filter, order_by: "" };
        let (items, next_page_token) =
            self.documents.list::<ContinuityExercise>(&EXERCISES, &ctx, &self.page_tokens, &listing).await?;
        Ok(Response::new(ListContinuityExercisesResponse {
            continuity_exercises: items
                .into_iter()
                .map(|d| ContinuityExercise { name: d.name.clone(), audit: Some(d.audit()), ..d.body })
                .collect(),
            next_page_token,
        }))
    }

    async fn analyze_continuity_gaps(
        &self,
        request: Request<AnalyzeContinuityGapsRequest>,
    ) -> Result<Response<AnalyzeContinuityGapsResponse>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let r = request.into_inner();
        let period = match r.exercise_period.as_ref().map(|d| delta(Some(d))) {
            None => TimeDelta::days(DEFAULT_EXERCISE_DAYS),
            Some(p) if p <= TimeDelta::zero() => {
                return Err(Error::invalid("exercise_period", "must be positive").into());
            }
            Some(p) => p,
        };
        let services: Vec<String> = if r.business_service.is_empty() {
            let mut all: Vec<String> =
                Documents::all::<BusinessImpactAnalysis>(&self.documents.db, &ANALYSES, &ctx.tenant)
                    .await?
                    .into_iter()
                    .map(|d| d.columns.subject)
                    .chain(
                        Documents::all::<ContinuityPlan>(&self.documents.db, &PLANS, &ctx.tenant)
                            .await?
                            .into_iter()
                            .map(|d| d.columns.subject),
                    )
                    .collect();
            all.sort();
            all.dedup();
            all
        } else {
            self.cmdb
                .check(
                    &ctx,
                    &[CiReference {
                        field: "business_service".into(),
                        name: &r.business_service,
                        class: Some(BUSINESS_SERVICE_CLASS),
                    }],
                )
                .await?;
            vec![r.business_service.clone()]
        };
        let graph = self.graph(&ctx).await?;
        let mut out = Vec::with_capacity(services.len());
        for service in services {
            out.push(self.gaps_of(&ctx, &graph, &service, period).await?);
        }
        Ok(Response::new(AnalyzeContinuityGapsResponse { services: out }))
    }

    async fn invoke_continuity_plan(
        &self,
        request: Request<InvokeContinuityPlanRequest>,
    ) -> Result<Response<ContinuityInvocation>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let r = request.into_inner();
        let plan: Document<ContinuityPlan> =
            self.documents.get(&PLANS, &ctx, &r.continuity_plan, "continuity_plan").await?;
        let mut v = Violations::new();
        validate::text(&mut v, "description", &r.description, 4000, true);
        v.into_result()?;
        let now = Utc::now();
        let body = ContinuityInvocation {
            continuity_plan: plan.name.clone(),
            business_service: plan.body.business_service.clone(),
            description: r.description.clone(),
            declare_time: Some(ts(now)),
            steps: plan
                .body
                .steps
                .iter()
                .enumerate()
                .map(|(i, s)| InvocationStep {
                    step: i as i32 + 1,
                    title: s.title.clone(),
                    owner: s.owner.clone(),
                    state: InvocationStepState::Pending as i32,
                    start_time: None,
                    finish_time: None,
                })
                .collect(),
            ..Default::default()
        };
        let columns = Columns {
            parent: plan.name.clone(),
            subject: plan.body.business_service.clone(),
            ..Columns::default()
        };
        let hash = idempotency::request_hash(&r);
        let stored = self.documents.create(&INVOCATIONS, &ctx, &r.request_id, &hash, columns, &body).await?;
        // Recorded first; the incident call is keyed on the invocation, so a retry finds it.
        let stored = if stored.body.incident.is_empty() {
            let incident = self.open_major_incident(&ctx, &stored, &plan).await?;
            self.documents
                .update(&INVOCATIONS, &ctx, &stored.id, "", |current: &Document<ContinuityInvocation>| {
                    let mut after = current.body.clone();
                    after.incident = incident;
                    Ok((current.columns.clone(), after))
                })
                .await?
        } else {
            stored
        };
        Ok(Response::new(self.present_invocation(&ctx, stored).await?))
    }

    async fn get_continuity_invocation(
        &self,
        request: Request<GetContinuityInvocationRequest>,
    ) -> Result<Response<ContinuityInvocation>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let d = self.documents.get(&INVOCATIONS, &ctx, &request.get_ref().name, "name").await?;
        Ok(Response::new(self.present_invocation(&ctx, d).await?))
    }

    async fn update_invocation_step(
        &self,
        request: Request<UpdateInvocationStepRequest>,
    ) -> Result<Response<ContinuityInvocation>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let r = request.into_inner();
        let id = INVOCATIONS.id_of(&r.continuity_invocation, "continuity_invocation")?;
        let Some(to) = state_of(r.state) else {
            return Err(
                Error::invalid("state", "must be IN_PROGRESS, DONE, SKIPPED, FAILED or PENDING").into()
            );
        };
        let invocation: Document<ContinuityInvocation> =
            self.documents.get(&INVOCATIONS, &ctx, &r.continuity_invocation, "continuity_invocation").await?;
        let plan_id = PLANS.id_of(&invocation.body.continuity_plan, "continuity_plan")?;
        let plan: Document<ContinuityPlan> =
            Documents::find(&self.documents.db, &PLANS, &ctx.tenant, &plan_id).await?.ok_or_else(|| {
                Error::FailedPrecondition(format!(
                    "the invoked plan {} was deleted",
                    invocation.body.continuity_plan
                ))
            })?;
        let order =
            u32::try_from(r.step).ok().filter(|s| *s >= 1 && (*s as usize) <= invocation.body.steps.len());
        let Some(order) = order else {
            return Err(
                Error::invalid("step", format!("must be 1 to {}", invocation.body.steps.len())).into()
            );
        };
        let graph = self.graph(&ctx).await?;
        let progress = progress_of(&invocation.body.steps);
        if to == StepState::InProgress
            && let Err(blocked) = rules::can_start(&plan_of(&plan.body), &graph.needs, &progress, order)
        {
            return Err(Error::FailedPrecondition(format!("step {order} cannot start: {blocked}")).into());
        }
        let now = Utc::now();
        let current = progress
            .iter()
            .find(|p| p.order == order)
            .copied()
            .unwrap_or_else(|| StepProgress::pending(order));
        let next = rules::transition_step(&current, to, now)
            .map_err(|e| Error::FailedPrecondition(e.to_string()))?;
        let txn = self.documents.db.begin().await.map_err(Error::from)?;
        let stored = Documents::update_in(
            &txn,
            &INVOCATIONS,
            &ctx,
            &id,
            &invocation.etag(),
            |current: &Document<ContinuityInvocation>| {
                let mut after = current.body.clone();
                if let Some(step) = after.steps.iter_mut().find(|s| s.step as u32 == order) {
                    step.state = step_state_of(next.state) as i32;
                    step.start_time = next.started.map(ts);
                    step.finish_time = next.finished.map(ts);
                }
                Ok((current.columns.clone(), after))
            },
        )
        .await?;
        txn.commit().await.map_err(Error::from)?;
        Ok(Response::new(self.present_invocation(&ctx, stored).await?))
    }
}
