//! `itsm.change.v1.ChangeService`: validates, asks the CMDB, calls the repository.

use std::collections::BTreeMap;

use tonic::{Request, Response, Status};

use itsm_cmdb_client::{CiReference, CmdbDirectory};
use itsm_proto::change::change_service_server::ChangeService;
use itsm_proto::change::{
    ApprovalPolicy, CreateStandardChangeTemplateRequest, DeleteStandardChangeTemplateRequest,
    DeleteStandardChangeTemplateResponse, GetApprovalPolicyRequest, ListStandardChangeTemplatesRequest,
    ListStandardChangeTemplatesResponse, StandardChangeTemplate, UpdateApprovalPolicyRequest,
};
use itsm_proto::change::{
    ApproveChangeRequest, BlackoutWindow, CanDeployRequest, CanDeployResponse, Change, ChangeOutcome,
    Changeset, CreateBlackoutWindowRequest, CreateChangeRequest, DeleteBlackoutWindowRequest,
    DeleteBlackoutWindowResponse, DeleteChangeRequest, DeleteChangeResponse, GetChangeRequest,
    GetChangesetRequest, LinkChangesetRequest, ListBlackoutWindowsRequest, ListBlackoutWindowsResponse,
    ListChangesRequest, ListChangesResponse, ListChangesetsRequest, ListChangesetsResponse,
    ListUnauthorizedChangesetsRequest, ListUnauthorizedChangesetsResponse, RecordChangesetRequest,
    RejectChangeRequest, UpdateChangeRequest,
};
use itsm_proto::change::{
    CabMeeting, ChangeSuccessReport, CreateCabMeetingRequest, CreateMaintenanceWindowRequest,
    DeleteMaintenanceWindowRequest, DeleteMaintenanceWindowResponse, GetCabMeetingRequest,
    GetChangeSuccessReportRequest, GetRiskQuestionnaireRequest, ListCabMeetingsRequest,
    ListCabMeetingsResponse, ListMaintenanceWindowsRequest, ListMaintenanceWindowsResponse,
    MaintenanceWindow, RecordCabDecisionRequest, ReviewChangeRequest, RiskQuestionnaire,
    UpdateCabMeetingRequest, UpdateRiskQuestionnaireRequest,
};
use itsm_proto::change::{ChangeConflict, CheckChangeConflictsRequest, CheckChangeConflictsResponse};
use itsm_runtime::db::{micros, now_micros, timestamp};
use itsm_runtime::error::Violations;
use itsm_runtime::fieldmask::UpdateMask;
use itsm_runtime::numbers::is_number;
use itsm_runtime::paging::{PageTokens, page_size};
use itsm_runtime::validate::{self, MAX_NAME};
use itsm_runtime::{CallContext, Error, filter, idempotency};

use crate::changesets;
use crate::convert::{CHANGE_NUMBER, CHANGE_PREFIX, change_name, change_to_proto};
use crate::domain::approval::{Verdict, Vote, refusal, rule_for, verdict};
use crate::domain::lifecycle::{ChangeState, ChangeType, Mover};
use crate::domain::risk::{Question, built_in};
use crate::entity::change;
use crate::repo::{CmdbFacts, Decision, ORDER_FIELDS, Repository, decisions, list_from, list_to};

const MAX_SHORT: usize = 300;
const MAX_LONG: usize = 32 * 1024;
const MAX_CIS: usize = 100;

pub struct ChangeApi {
    pub repo: Repository,
    pub cmdb: CmdbDirectory,
    pub page_tokens: PageTokens,
}

/// Fields UpdateChange may change.
pub const UPDATABLE: &[&str] = &[
    "short_description",
    "description",
    "justification",
    "implementation_plan",
    "backout_plan",
    "test_plan",
    "configuration_items",
    "planned_start_time",
    "planned_end_time",
    "risk_answers",
    "problem",
    "assignment_group",
    "assignee",
    "state",
    "outcome",
];

/// What is frozen once a change has been submitted for authorisation.
const CONTENT: &[&str] = &[
    "short_description",
    "description",
    "justification",
    "implementation_plan",
    "backout_plan",
    "test_plan",
    "configuration_items",
    "planned_start_time",
    "planned_end_time",
    "risk_answers",
];

pub(crate) fn number(name: &str, field: &str) -> Result<String, Error> {
    if name.is_empty() {
        return Err(Error::invalid(field, "is required"));
    }
    name.strip_prefix(CHANGE_PREFIX)
        .filter(|n| is_number(n, CHANGE_NUMBER))
        .map(str::to_string)
        .ok_or_else(|| Error::invalid(field, "must be `changes/CHG0000123`"))
}

/// Checks the fields a caller may set (all of them on create, the masked ones on update).
fn check_fields(v: &mut Violations, c: &Change, has: &dyn Fn(&str) -> bool, questions: &[Question]) {
    let text = |v: &mut Violations, field: &str, value: &str, max: usize, required: bool| {
        if has(field) {
            validate::text(v, &format!("change.{field}"), value, max, required);
        }
    };
    text(v, "short_description", &c.short_description, MAX_SHORT, true);
    for (field, value) in [
        ("description", &c.description),
        ("justification", &c.justification),
        ("implementation_plan", &c.implementation_plan),
        ("backout_plan", &c.backout_plan),
        ("test_plan", &c.test_plan),
    ] {
        text(v, field, value, MAX_LONG, false);
    }
    text(v, "assignee", &c.assignee, MAX_NAME, false);
    if has("assignment_group") {
        validate::support_group(v, "change.assignment_group", &c.assignment_group, false);
    }
    if has("configuration_items") && c.configuration_items.len() > MAX_CIS {
        v.add("change.configuration_items", format!("at most {MAX_CIS} configuration items"));
    }
    if has("problem")
        && !c.problem.is_empty()
        && !c.problem.strip_prefix("problems/").is_some_and(|n| is_number(n, "PRB"))
    {
        v.add("change.problem", "must be `problems/PRB0000123`");
    }
    if has("risk_answers") {
        for key in c.risk_answers.keys() {
            if !questions.iter().any(|q| &q.id == key) {
                let ids: Vec<&str> = questions.iter().map(|q| q.id.as_str()).collect();
                v.add(
                    format!("change.risk_answers[{key}]"),
                    format!("unknown question; questions: {}", ids.join(", ")),
                );
            }
        }
    }
}

/// Planned window: both ends or neither, end after start.
fn check_window(v: &mut Violations, start: i64, end: i64) {
    match (start > 0, end > 0) {
        (true, true) if end <= start => v.add("change.planned_end_time", "must be after planned_start_time"),
        (true, false) => v.add("change.planned_end_time", "is required with planned_start_time"),
        (false, true) => v.add("change.planned_start_time", "is required with planned_end_time"),
        _ => {}
    }
}

impl ChangeApi {
    /// The template of a STANDARD change (which must name an existing one whose CIs cover the
    /// change's); other types must name none.
    async fn template_for(
        &self,
        ctx: &CallContext,
        c: &Change,
        kind: Option<ChangeType>,
    ) -> Result<Option<StandardChangeTemplate>, Error> {
        if kind != Some(ChangeType::Standard) {
            if !c.template.is_empty() {
                return Err(Error::invalid(
                    "change.template",
                    "only STANDARD changes are made from a template",
                ));
            }
            return Ok(None);
        }
        if c.template.is_empty() {
            return Err(Error::invalid(
                "change.template",
                "a STANDARD change is made from a pre-approved template",
            ));
        }
        let id = crate::records::TEMPLATES.id_of(&c.template, "change.template")?;
        let found = itsm_runtime::documents::Documents::find::<StandardChangeTemplate>(
            &self.repo.db,
            &crate::records::TEMPLATES,
            &ctx.tenant,
            &id,
        )
        .await?
        .ok_or_else(|| Error::invalid("change.template", format!("{} does not exist", c.template)))?;
        let template = found.body;
        if !template.configuration_items.is_empty() {
            let mut v = Violations::new();
            for (i, ci) in c.configuration_items.iter().enumerate() {
                if !template.configuration_items.contains(ci) {
                    v.add(
                        format!("change.configuration_items[{i}]"),
                        format!("{ci} is not one of the CIs template {} covers", c.template),
                    );
                }
            }
            v.into_result()?;
        }
        Ok(Some(template))
    }

    /// The tenant's risk questions (saved, else built in).
    async fn questions(&self, ctx: &CallContext) -> Result<Vec<Question>, Error> {
        let saved = crate::records::questions(&self.repo.db, &ctx.tenant).await?;
        Ok(if saved.is_empty() { built_in() } else { saved })
    }

    /// Checks the CIs in the CMDB and gathers what the risk assessment needs from it.
    async fn cmdb_facts(&self, ctx: &CallContext, cis: &[String]) -> Result<CmdbFacts, Error> {
        let refs: Vec<CiReference<'_>> = cis
            .iter()
            .enumerate()
            .map(|(i, name)| CiReference {
                field: format!("change.configuration_items[{i}]"),
                name,
                class: None,
            })
            .collect();
        let items = self.cmdb.check(ctx, &refs).await?;
        let mut services = std::collections::BTreeSet::new();
        let mut impacted = std::collections::BTreeSet::new();
        for ci in cis {
            let downstream = self.cmdb.downstream(ctx, ci).await?;
            services.extend(downstream.business_services);
            impacted.extend(downstream.items);
        }
        for ci in cis {
            impacted.remove(ci);
        }
        let impacted_services = services.len() as i32;
        // A business service among the CIs is its own service too (its windows apply to it).
        services.extend(
            cis.iter()
                .filter(|ci| {
                    items.get(*ci).is_some_and(|i| i.ci_class == itsm_cmdb_client::BUSINESS_SERVICE_CLASS)
                })
                .cloned(),
        );
        Ok(CmdbFacts {
            max_criticality: items.values().map(|ci| ci.criticality).max().unwrap_or(0),
            business_services: impacted_services,
            business_service_names: services.into_iter().collect(),
            impacted_cis: impacted.into_iter().collect(),
        })
    }

    /// Whether a deployment to `configuration_item` in `environment` at `at` is covered by an
    /// authorised change, with the reasons (CanDeploy, and the release gates).
    pub async fn deploy_decision(
        &self,
        ctx: &CallContext,
        configuration_item: &str,
        environment: &str,
        at: i64,
    ) -> Result<CanDeployResponse, Error> {
        let refs =
            [CiReference { field: "configuration_item".into(), name: configuration_item, class: None }];
        let items = self.cmdb.check(ctx, &refs).await?;
        let when =
            chrono::DateTime::from_timestamp_micros(at).map_or_else(|| at.to_string(), |t| t.to_rfc3339());
        let mut reasons = Vec::new();
        let mut blocked = false;
        if let Some(ci) = items.get(configuration_item)
            && !environment.is_empty()
            && !ci.environment.is_empty()
            && ci.environment != environment
        {
            blocked = true;
            reasons.push(format!(
                "{} is in environment {:?}, not {:?}",
                configuration_item, ci.environment, environment
            ));
        }
        let mut covering = self.repo.covering(ctx, configuration_item, at).await?;
        // A business service is covered by a change to it or to the CIs that serve it.
        if items
            .get(configuration_item)
            .is_some_and(|ci| ci.ci_class == itsm_cmdb_client::BUSINESS_SERVICE_CLASS)
        {
            for c in self.repo.covering_service(ctx, configuration_item, at).await? {
                if !covering.iter().any(|k| k.id == c.id) {
                    covering.push(c);
                }
            }
        }
        let blackouts = self.repo.blackouts_overlapping(ctx, at, at).await?;
        let mut authorising = Vec::new();
        for c in &covering {
            let name = change_name(&c.number);
            let conflicts = list_from(&c.conflicts);
            match ChangeState::from_i32(c.state) {
                Some(ChangeState::Authorize) => {
                    reasons.push(format!("{name} covers it but still awaits approval"));
                }
                Some(_) if !conflicts.is_empty() => {
                    reasons.push(format!("{name} covers it but conflicts with {}", conflicts.join(", ")));
                }
                Some(_) if c.change_type != ChangeType::Emergency as i32 && !blackouts.is_empty() => {
                    reasons.push(format!(
                        "{name} covers it, but {} is inside blackout window {:?}: {}",
                        when, blackouts[0].display_name, blackouts[0].reason
                    ));
                }
                Some(state) => {
                    reasons.push(format!(
                        "{name} ({state}) authorises changes to {} from {} to {}",
                        configuration_item,
                        timestamp_text(c.planned_start_time),
                        timestamp_text(c.planned_end_time)
                    ));
                    authorising.push(name);
                }
                None => {}
            }
        }
        if authorising.is_empty() {
            reasons.push(format!("no authorised change covers {configuration_item} at {when}"));
        }
        let allowed = !blocked && !authorising.is_empty();
        Ok(CanDeployResponse {
            allowed,
            reasons,
            changes: covering.iter().map(|c| change_name(&c.number)).collect(),
        })
    }

    pub(crate) async fn decide(
        &self,
        ctx: &CallContext,
        name: &str,
        etag: &str,
        approved: bool,
        comment: &str,
    ) -> Result<change::Model, Error> {
        let number = number(name, "name")?;
        let stored = self.repo.get(ctx, &number).await?;
        let blackouts =
            self.repo.blackouts_overlapping(ctx, stored.planned_start_time, stored.planned_end_time).await?;
        let policy = crate::records::policy(&self.repo.db, &ctx.tenant).await?;
        let principal = ctx.principal.clone();
        let roles = ctx.roles.clone();
        let action = if approved { "approve" } else { "reject" };
        self.repo
            .change(ctx, &number, etag, action, comment, None, |m, now| {
                let state = ChangeState::from_i32(m.state);
                if state != Some(ChangeState::Authorize) {
                    return Err(Error::FailedPrecondition(format!(
                        "{} is {}, not awaiting approval (AUTHORIZE)",
                        change_name(&m.number),
                        state.map_or("in an unknown state", ChangeState::name)
                    )));
                }
                let kind = ChangeType::from_i32(m.change_type).unwrap_or(ChangeType::Normal);
                let rule = rule_for(&policy, kind, m.risk);
                if let Some(reason) = refusal(&principal, &roles, &rule.groups, &m.creator, &m.assignee) {
                    return Err(Error::PermissionDenied(reason));
                }
                let mut list = decisions(m);
                if list.iter().any(|d| d.approver == principal) {
                    return Err(Error::FailedPrecondition(format!(
                        "{principal} has already decided on {}",
                        change_name(&m.number)
                    )));
                }
                list.push(Decision {
                    approver: principal.clone(),
                    approved,
                    comment: comment.to_string(),
                    time: now,
                    roles: roles.clone(),
                });
                let votes: Vec<Vote> = list
                    .iter()
                    .map(|d| Vote {
                        approver: d.approver.clone(),
                        roles: d.roles.clone(),
                        approved: d.approved,
                    })
                    .collect();
                m.approvals = list_to(&list);
                match verdict(&rule, &votes, i32::from(m.outside_maintenance_window)) {
                    Verdict::Rejected => m.state = ChangeState::New as i32,
                    Verdict::Approved => {
                        if let Some(reason) = crate::repo::blackout_refusal(m.change_type, &blackouts) {
                            return Err(Error::FailedPrecondition(format!(
                                "{}: {reason}",
                                change_name(&m.number)
                            )));
                        }
                        m.state = ChangeState::Scheduled as i32;
                    }
                    Verdict::Pending => {}
                }
                Ok(())
            })
            .await
    }
}

#[tonic::async_trait]
impl ChangeService for ChangeApi {
    async fn create_change(&self, request: Request<CreateChangeRequest>) -> Result<Response<Change>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let request = request.into_inner();
        let Some(c) = request.change.as_ref() else {
            return Err(Error::invalid("change", "is required").into());
        };
        idempotency::validate_request_id(&request.request_id, "request_id")?;
        let mut v = Violations::new();
        let kind = ChangeType::from_i32(c.r#type);
        if kind.is_none() {
            v.add("change.type", "must be STANDARD, NORMAL or EMERGENCY");
        }
        let questions = self.questions(&ctx).await?;
        check_fields(&mut v, c, &|_| true, &questions);
        let start = c.planned_start_time.as_ref().map_or(0, micros);
        let end = c.planned_end_time.as_ref().map_or(0, micros);
        check_window(&mut v, start, end);
        v.into_result()?;
        let hash = idempotency::request_hash(&request);
        if let Some(earlier) = self.repo.created_before(&ctx, &request.request_id, &hash).await? {
            return Ok(Response::new(change_to_proto(&earlier)));
        }
        // A standard change comes from a pre-approved template (and fills its plans from it).
        let template = self.template_for(&ctx, c, kind).await?;
        let plan = |own: &String, from: fn(&StandardChangeTemplate) -> &String| match &template {
            Some(t) if own.trim().is_empty() => from(t).clone(),
            _ => own.clone(),
        };
        let facts = self.cmdb_facts(&ctx, &c.configuration_items).await?;
        let answers: BTreeMap<&String, &bool> = c.risk_answers.iter().collect();
        let model = change::Model {
            id: String::new(),
            tenant_id: String::new(),
            number: String::new(),
            change_type: c.r#type,
            state: ChangeState::New as i32,
            short_description: c.short_description.trim().to_string(),
            description: c.description.clone(),
            justification: c.justification.clone(),
            implementation_plan: plan(&c.implementation_plan, |t| &t.implementation_plan),
            backout_plan: plan(&c.backout_plan, |t| &t.backout_plan),
            test_plan: plan(&c.test_plan, |t| &t.test_plan),
            configuration_items: list_to(&c.configuration_items),
            planned_start_time: start,
            planned_end_time: end,
            risk: 0,
            risk_score: 0,
            risk_factors: "[]".into(),
            risk_answers: list_to(&answers),
            max_criticality: 0,
            business_services: 0,
            assignment_group: c.assignment_group.clone(),
            assignee: c.assignee.clone(),
            approvals: "[]".into(),
            required_approvals: 0,
            problem: c.problem.clone(),
            conflicts: "[]".into(),
            actual_start_time: 0,
            actual_end_time: 0,
            outcome: 0,
            business_service_names: "[]".into(),
            impacted_cis: "[]".into(),
            approval_rule: 0,
            approver_groups: "[]".into(),
            template: template.as_ref().map(|_| c.template.clone()).unwrap_or_default(),
            outside_maintenance_window: false,
            review: String::new(),
            version: 0,
            create_time: 0,
            update_time: 0,
            creator: String::new(),
            updater: String::new(),
        };
        let created = self.repo.create(&ctx, model, facts, &request.request_id, &hash).await?;
        Ok(Response::new(change_to_proto(&created)))
    }

    async fn get_change(&self, request: Request<GetChangeRequest>) -> Result<Response<Change>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let number = number(&request.get_ref().name, "name")?;
        Ok(Response::new(change_to_proto(&self.repo.get(&ctx, &number).await?)))
    }

    async fn list_changes(
        &self,
        request: Request<ListChangesRequest>,
    ) -> Result<Response<ListChangesResponse>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let r = request.into_inner();
        let size = page_size(r.page_size, "page_size")?;
        let parsed = filter::parse(&r.filter)?;
        let order = filter::parse_order_by(&r.order_by, ORDER_FIELDS)?.unwrap_or(("create_time", true));
        let fingerprint = PageTokens::fingerprint(&[&ctx.tenant, "changes", &r.filter, &r.order_by]);
        let after = self.page_tokens.decode(&r.page_token, &fingerprint)?;
        let page = self.repo.list(&ctx, parsed.as_ref(), order, after, size).await?;
        let next_page_token = self.page_tokens.next(&fingerprint, page.next_key)?;
        Ok(Response::new(ListChangesResponse {
            changes: page.items.iter().map(change_to_proto).collect(),
            next_page_token,
        }))
    }

    async fn update_change(&self, request: Request<UpdateChangeRequest>) -> Result<Response<Change>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let request = request.into_inner();
        let Some(c) = request.change else {
            return Err(Error::invalid("change", "is required").into());
        };
        let number = number(&c.name, "change.name")?;
        let mask = UpdateMask::parse(request.update_mask.as_ref(), UPDATABLE, "update_mask")?;
        let mut v = Violations::new();
        let questions = self.questions(&ctx).await?;
        check_fields(&mut v, &c, &|p| mask.contains(p), &questions);
        let target = if mask.contains("state") {
            let state = ChangeState::from_i32(c.state);
            if state.is_none() {
                v.add("change.state", "must be a change state");
            }
            state
        } else {
            None
        };
        if mask.contains("outcome") && !mask.contains("state") {
            v.add("update_mask", "`outcome` is set together with `state` (leaving IMPLEMENT)");
        }
        let outcome = ChangeOutcome::try_from(c.outcome).unwrap_or(ChangeOutcome::Unspecified);
        v.into_result()?;
        let facts = if mask.contains("configuration_items") {
            Some(self.cmdb_facts(&ctx, &c.configuration_items).await?)
        } else {
            None
        };
        // Blackouts over the window the change will have (checked again below only by state).
        let blackouts = if matches!(target, Some(ChangeState::Authorize | ChangeState::Scheduled)) {
            let stored = self.repo.get(&ctx, &number).await?;
            let start = if mask.contains("planned_start_time") {
                c.planned_start_time.as_ref().map_or(0, micros)
            } else {
                stored.planned_start_time
            };
            let end = if mask.contains("planned_end_time") {
                c.planned_end_time.as_ref().map_or(0, micros)
            } else {
                stored.planned_end_time
            };
            self.repo.blackouts_overlapping(&ctx, start, end).await?
        } else {
            Vec::new()
        };
        // Set when this update ends the change (CLOSED or CANCELLED), for the outcome metric.
        let ended = std::sync::atomic::AtomicBool::new(false);
        let updated = self
            .repo
            .change(&ctx, &number, &c.etag, "update", "", facts, |m, now| {
                let state = ChangeState::from_i32(m.state)
                    .ok_or_else(|| Error::Internal(format!("{} has an unknown state", m.number)))?;
                let kind = ChangeType::from_i32(m.change_type)
                    .ok_or_else(|| Error::Internal(format!("{} has an unknown type", m.number)))?;
                let editing_content = mask.paths().iter().any(|p| CONTENT.contains(&p.as_str()));
                if editing_content && !matches!(state, ChangeState::New | ChangeState::Assess) {
                    return Err(Error::FailedPrecondition(format!(
                        "{} is {state}; its plan, window and CIs can change only in NEW or ASSESS \
                         (a rejected change returns to NEW)",
                        change_name(&m.number)
                    )));
                }
                for path in mask.paths() {
                    match path.as_str() {
                        "short_description" => m.short_description = c.short_description.trim().to_string(),
                        "description" => m.description.clone_from(&c.description),
                        "justification" => m.justification.clone_from(&c.justification),
                        "implementation_plan" => m.implementation_plan.clone_from(&c.implementation_plan),
                        "backout_plan" => m.backout_plan.clone_from(&c.backout_plan),
                        "test_plan" => m.test_plan.clone_from(&c.test_plan),
                        "configuration_items" => m.configuration_items = list_to(&c.configuration_items),
                        "planned_start_time" => {
                            m.planned_start_time = c.planned_start_time.as_ref().map_or(0, micros);
                        }
                        "planned_end_time" => {
                            m.planned_end_time = c.planned_end_time.as_ref().map_or(0, micros);
                        }
                        "risk_answers" => {
                            let answers: BTreeMap<&String, &bool> = c.risk_answers.iter().collect();
                            m.risk_answers = list_to(&answers);
                        }
                        "problem" => m.problem.clone_from(&c.problem),
                        "assignment_group" => m.assignment_group.clone_from(&c.assignment_group),
                        "assignee" => m.assignee.clone_from(&c.assignee),
                        _ => {}
                    }
                }
                let mut v = Violations::new();
                check_window(&mut v, m.planned_start_time, m.planned_end_time);
                v.into_result()?;
                let Some(to) = target else { return Ok(()) };
                if to == state {
                    return Ok(());
                }
                state.check(to, kind, Mover::Update).map_err(|e| Error::FailedPrecondition(e.to_string()))?;
                // Emergency changes are authorised in haste and reviewed afterwards.
                if to == ChangeState::Closed && kind == ChangeType::Emergency && m.review.is_empty() {
                    return Err(Error::FailedPrecondition(format!(
                        "{} is an emergency change: record its retrospective review (ReviewChange) before CLOSED",
                        change_name(&m.number)
                    )));
                }
                if state == ChangeState::New
                    && (m.planned_start_time == 0 || list_from(&m.configuration_items).is_empty())
                {
                    return Err(Error::FailedPrecondition(format!(
                        "{} needs a planned window and at least one configuration item before it leaves NEW",
                        change_name(&m.number)
                    )));
                }
                if matches!(to, ChangeState::Authorize | ChangeState::Scheduled)
                    && let Some(reason) = crate::repo::blackout_refusal(m.change_type, &blackouts)
                {
                    return Err(Error::FailedPrecondition(format!("{}: {reason}", change_name(&m.number))));
                }
                match to {
                    ChangeState::Authorize => m.approvals = "[]".into(),
                    ChangeState::Implement => m.actual_start_time = now,
                    ChangeState::Review if state == ChangeState::Implement => {
                        m.actual_end_time = now;
                        m.outcome = ChangeOutcome::Successful as i32;
                    }
                    ChangeState::Failed => {
                        m.actual_end_time = now;
                        m.outcome =
                            if outcome == ChangeOutcome::BackedOut { outcome } else { ChangeOutcome::Failed }
                                as i32;
                    }
                    _ => {}
                }
                m.state = to as i32;
                ended.store(
                    matches!(to, ChangeState::Closed | ChangeState::Cancelled),
                    std::sync::atomic::Ordering::Relaxed,
                );
                Ok(())
            })
            .await?;
        if ended.load(std::sync::atomic::Ordering::Relaxed) {
            record_change_end(&updated);
        }
        Ok(Response::new(change_to_proto(&updated)))
    }

    async fn delete_change(
        &self,
        request: Request<DeleteChangeRequest>,
    ) -> Result<Response<DeleteChangeResponse>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let number = number(&request.get_ref().name, "name")?;
        self.repo.delete(&ctx, &number, &request.get_ref().etag).await?;
        Ok(Response::new(DeleteChangeResponse {}))
    }

    async fn approve_change(
        &self,
        request: Request<ApproveChangeRequest>,
    ) -> Result<Response<Change>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let r = request.into_inner();
        let mut v = Violations::new();
        validate::text(&mut v, "comment", &r.comment, MAX_LONG, false);
        v.into_result()?;
        let decided = self.decide(&ctx, &r.name, &r.etag, true, r.comment.trim()).await?;
        Ok(Response::new(change_to_proto(&decided)))
    }

    async fn reject_change(&self, request: Request<RejectChangeRequest>) -> Result<Response<Change>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let r = request.into_inner();
        let mut v = Violations::new();
        validate::text(&mut v, "comment", &r.comment, MAX_LONG, true);
        v.into_result()?;
        let decided = self.decide(&ctx, &r.name, &r.etag, false, r.comment.trim()).await?;
        Ok(Response::new(change_to_proto(&decided)))
    }

    async fn can_deploy(
        &self,
        request: Request<CanDeployRequest>,
    ) -> Result<Response<CanDeployResponse>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let r = request.into_inner();
        let mut v = Violations::new();
        validate::text(&mut v, "environment", &r.environment, MAX_NAME, false);
        v.into_result()?;
        if r.configuration_item.is_empty() {
            return Err(Error::invalid("configuration_item", "is required").into());
        }
        let at = r.deploy_time.as_ref().map_or_else(now_micros, micros);
        Ok(Response::new(self.deploy_decision(&ctx, &r.configuration_item, &r.environment, at).await?))
    }

    async fn create_blackout_window(
        &self,
        request: Request<CreateBlackoutWindowRequest>,
    ) -> Result<Response<BlackoutWindow>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let Some(w) = request.into_inner().blackout_window else {
            return Err(Error::invalid("blackout_window", "is required").into());
        };
        let mut v = Violations::new();
        validate::text(&mut v, "blackout_window.display_name", &w.display_name, MAX_NAME, true);
        validate::text(&mut v, "blackout_window.reason", &w.reason, MAX_LONG, true);
        let start = w.start_time.as_ref().map_or(0, micros);
        let end = w.end_time.as_ref().map_or(0, micros);
        if start == 0 {
            v.add("blackout_window.start_time", "is required");
        }
        if end <= start {
            v.add("blackout_window.end_time", "must be after start_time");
        }
        v.into_result()?;
        let model = crate::entity::blackout_window::Model {
            id: String::new(),
            tenant_id: String::new(),
            display_name: w.display_name.trim().to_string(),
            reason: w.reason.trim().to_string(),
            start_time: start,
            end_time: end,
            create_time: 0,
            creator: String::new(),
        };
        Ok(Response::new(blackout_to_proto(&self.repo.create_blackout(&ctx, model).await?)))
    }

    async fn list_blackout_windows(
        &self,
        request: Request<ListBlackoutWindowsRequest>,
    ) -> Result<Response<ListBlackoutWindowsResponse>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let after = (!request.get_ref().include_past).then(now_micros);
        let windows = self.repo.blackouts(&ctx, after).await?;
        Ok(Response::new(ListBlackoutWindowsResponse {
            blackout_windows: windows.iter().map(blackout_to_proto).collect(),
        }))
    }

    async fn delete_blackout_window(
        &self,
        request: Request<DeleteBlackoutWindowRequest>,
    ) -> Result<Response<DeleteBlackoutWindowResponse>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let name = &request.get_ref().name;
        let id = name
            .strip_prefix("blackoutWindows/")
            .filter(|id| uuid::Uuid::parse_str(id).is_ok())
            .ok_or_else(|| Error::invalid("name", "must be `blackoutWindows/{uuid}`"))?;
        self.repo.delete_blackout(&ctx, id).await?;
        Ok(Response::new(DeleteBlackoutWindowResponse {}))
    }

    async fn create_maintenance_window(
        &self,
        request: Request<CreateMaintenanceWindowRequest>,
    ) -> Result<Response<MaintenanceWindow>, Status> {
        let ctx = CallContext::from_request(&request)?;
        Ok(Response::new(ChangeApi::create_maintenance_window(self, &ctx, request.into_inner()).await?))
    }

    async fn list_maintenance_windows(
        &self,
        request: Request<ListMaintenanceWindowsRequest>,
    ) -> Result<Response<ListMaintenanceWindowsResponse>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let maintenance_windows = ChangeApi::list_maintenance_windows(self, &ctx, request.get_ref()).await?;
        Ok(Response::new(ListMaintenanceWindowsResponse { maintenance_windows }))
    }

    async fn delete_maintenance_window(
        &self,
        request: Request<DeleteMaintenanceWindowRequest>,
    ) -> Result<Response<DeleteMaintenanceWindowResponse>, Status> {
        let ctx = CallContext::from_request(&request)?;
        ChangeApi::delete_maintenance_window(self, &ctx, &request.get_ref().name).await?;
        Ok(Response::new(DeleteMaintenanceWindowResponse {}))
    }

    async fn get_risk_questionnaire(
        &self,
        request: Request<GetRiskQuestionnaireRequest>,
    ) -> Result<Response<RiskQuestionnaire>, Status> {
        let ctx = CallContext::from_request(&request)?;
        Ok(Response::new(self.risk_questionnaire(&ctx).await?))
    }

    async fn update_risk_questionnaire(
        &self,
        request: Request<UpdateRiskQuestionnaireRequest>,
    ) -> Result<Response<RiskQuestionnaire>, Status> {
        let ctx = CallContext::from_request(&request)?;
        Ok(Response::new(ChangeApi::update_risk_questionnaire(self, &ctx, request.into_inner()).await?))
    }

    async fn check_change_conflicts(
        &self,
        request: Request<CheckChangeConflictsRequest>,
    ) -> Result<Response<CheckChangeConflictsResponse>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let r = request.into_inner();
        let mut v = Violations::new();
        if r.configuration_items.is_empty() || r.configuration_items.len() > MAX_CIS {
            v.add("configuration_items", format!("must name 1 to {MAX_CIS} CIs"));
        }
        let (start, end) =
            (r.planned_start_time.as_ref().map_or(0, micros), r.planned_end_time.as_ref().map_or(0, micros));
        if start <= 0 {
            v.add("planned_start_time", "is required");
        } else if end <= start {
            v.add("planned_end_time", "must be after planned_start_time");
        }
        v.into_result()?;
        let exclude_id = if r.exclude_change.is_empty() {
            String::new()
        } else {
            self.repo.get(&ctx, &number(&r.exclude_change, "exclude_change")?).await?.id
        };
        let facts = self.cmdb_facts(&ctx, &r.configuration_items).await?;
        let probe = crate::repo::ConflictProbe {
            tenant: &ctx.tenant,
            exclude_id: &exclude_id,
            cis: r.configuration_items.clone(),
            impacted: facts.impacted_cis,
            start,
            end,
        };
        let conflicts = crate::repo::conflict_details(&self.repo.db, &probe)
            .await?
            .into_iter()
            .map(|c| ChangeConflict { change: c.change, kind: c.kind, configuration_item: c.ci })
            .collect();
        Ok(Response::new(CheckChangeConflictsResponse { conflicts }))
    }

    async fn create_standard_change_template(
        &self,
        request: Request<CreateStandardChangeTemplateRequest>,
    ) -> Result<Response<StandardChangeTemplate>, Status> {
        let ctx = CallContext::from_request(&request)?;
        Ok(Response::new(ChangeApi::create_template(self, &ctx, request.into_inner()).await?))
    }

    async fn list_standard_change_templates(
        &self,
        request: Request<ListStandardChangeTemplatesRequest>,
    ) -> Result<Response<ListStandardChangeTemplatesResponse>, Status> {
        let ctx = CallContext::from_request(&request)?;
        Ok(Response::new(ChangeApi::list_templates(self, &ctx, request.get_ref()).await?))
    }

    async fn delete_standard_change_template(
        &self,
        request: Request<DeleteStandardChangeTemplateRequest>,
    ) -> Result<Response<DeleteStandardChangeTemplateResponse>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let id = crate::records::TEMPLATES.id_of(&request.get_ref().name, "name")?;
        itsm_runtime::documents::Documents { db: self.repo.db.clone() }
            .delete(&crate::records::TEMPLATES, &ctx, &id, "")
            .await?;
        Ok(Response::new(DeleteStandardChangeTemplateResponse {}))
    }

    async fn get_approval_policy(
        &self,
        request: Request<GetApprovalPolicyRequest>,
    ) -> Result<Response<ApprovalPolicy>, Status> {
        let ctx = CallContext::from_request(&request)?;
        Ok(Response::new(self.approval_policy(&ctx).await?))
    }

    async fn update_approval_policy(
        &self,
        request: Request<UpdateApprovalPolicyRequest>,
    ) -> Result<Response<ApprovalPolicy>, Status> {
        let ctx = CallContext::from_request(&request)?;
        Ok(Response::new(ChangeApi::update_approval_policy(self, &ctx, request.into_inner()).await?))
    }

    async fn create_cab_meeting(
        &self,
        request: Request<CreateCabMeetingRequest>,
    ) -> Result<Response<CabMeeting>, Status> {
        let ctx = CallContext::from_request(&request)?;
        Ok(Response::new(ChangeApi::create_cab_meeting(self, &ctx, request.into_inner()).await?))
    }

    async fn get_cab_meeting(
        &self,
        request: Request<GetCabMeetingRequest>,
    ) -> Result<Response<CabMeeting>, Status> {
        let ctx = CallContext::from_request(&request)?;
        Ok(Response::new(ChangeApi::get_cab_meeting(self, &ctx, &request.get_ref().name).await?))
    }

    async fn list_cab_meetings(
        &self,
        request: Request<ListCabMeetingsRequest>,
    ) -> Result<Response<ListCabMeetingsResponse>, Status> {
        let ctx = CallContext::from_request(&request)?;
        Ok(Response::new(ChangeApi::list_cab_meetings(self, &ctx, request.get_ref()).await?))
    }

    async fn update_cab_meeting(
        &self,
        request: Request<UpdateCabMeetingRequest>,
    ) -> Result<Response<CabMeeting>, Status> {
        let ctx = CallContext::from_request(&request)?;
        Ok(Response::new(ChangeApi::update_cab_meeting(self, &ctx, request.into_inner()).await?))
    }

    async fn record_cab_decision(
        &self,
        request: Request<RecordCabDecisionRequest>,
    ) -> Result<Response<CabMeeting>, Status> {
        let ctx = CallContext::from_request(&request)?;
        Ok(Response::new(ChangeApi::record_cab_decision(self, &ctx, request.into_inner()).await?))
    }

    async fn review_change(&self, request: Request<ReviewChangeRequest>) -> Result<Response<Change>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let reviewed = ChangeApi::review_change(self, &ctx, request.into_inner()).await?;
        Ok(Response::new(change_to_proto(&reviewed)))
    }

    async fn get_change_success_report(
        &self,
        request: Request<GetChangeSuccessReportRequest>,
    ) -> Result<Response<ChangeSuccessReport>, Status> {
        let ctx = CallContext::from_request(&request)?;
        Ok(Response::new(self.change_success_report(&ctx, request.get_ref()).await?))
    }

    async fn record_changeset(
        &self,
        request: Request<RecordChangesetRequest>,
    ) -> Result<Response<Changeset>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let r = request.into_inner();
        let (model, links) = changesets::validate_record(r.changeset.as_ref(), &r.changes)?;
        Ok(Response::new(self.repo.record_changeset(&ctx, model, links).await?))
    }

    async fn get_changeset(
        &self,
        request: Request<GetChangesetRequest>,
    ) -> Result<Response<Changeset>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let id = changesets::changeset_id(&request.get_ref().name, "name")?;
        Ok(Response::new(self.repo.get_changeset(&ctx, &id).await?))
    }

    async fn list_changesets(
        &self,
        request: Request<ListChangesetsRequest>,
    ) -> Result<Response<ListChangesetsResponse>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let r = request.into_inner();
        let size = page_size(r.page_size, "page_size")?;
        let parsed = filter::parse(&r.filter)?;
        let fingerprint = PageTokens::fingerprint(&[&ctx.tenant, "changesets", &r.filter]);
        let after = self.page_tokens.decode(&r.page_token, &fingerprint)?;
        let (changesets, next) = self.repo.list_changesets(&ctx, parsed.as_ref(), None, after, size).await?;
        let next_page_token = self.page_tokens.next(&fingerprint, next)?;
        Ok(Response::new(ListChangesetsResponse { changesets, next_page_token }))
    }

    async fn link_changeset(
        &self,
        request: Request<LinkChangesetRequest>,
    ) -> Result<Response<Changeset>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let r = request.into_inner();
        let id = changesets::changeset_id(&r.name, "name")?;
        Ok(Response::new(self.repo.link_changeset(&ctx, &id, &r.change).await?))
    }

    async fn list_unauthorized_changesets(
        &self,
        request: Request<ListUnauthorizedChangesetsRequest>,
    ) -> Result<Response<ListUnauthorizedChangesetsResponse>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let r = request.into_inner();
        let size = page_size(r.page_size, "page_size")?;
        let start = r.start_time.as_ref().map_or(0, micros);
        let end = r.end_time.as_ref().map_or(0, micros);
        if start > 0 && end > 0 && end <= start {
            return Err(Error::invalid("end_time", "must be after start_time").into());
        }
        let fingerprint = PageTokens::fingerprint(&[
            &ctx.tenant,
            "unauthorized-changesets",
            &r.repository,
            &start.to_string(),
            &end.to_string(),
        ]);
        let after = self.page_tokens.decode(&r.page_token, &fingerprint)?;
        let (changesets, next) =
            self.repo.list_changesets(&ctx, None, Some((&r.repository, start, end)), after, size).await?;
        let next_page_token = self.page_tokens.next(&fingerprint, next)?;
        Ok(Response::new(ListUnauthorizedChangesetsResponse { changesets, next_page_token }))
    }
}

fn timestamp_text(micros: i64) -> String {
    let t = timestamp(micros);
    chrono::DateTime::from_timestamp(t.seconds, 0).map_or_else(|| micros.to_string(), |d| d.to_rfc3339())
}

fn blackout_to_proto(m: &crate::entity::blackout_window::Model) -> BlackoutWindow {
    BlackoutWindow {
        name: format!("blackoutWindows/{}", m.id),
        display_name: m.display_name.clone(),
        reason: m.reason.clone(),
        start_time: Some(timestamp(m.start_time)),
        end_time: Some(timestamp(m.end_time)),
        audit: Some(itsm_proto::common::AuditInfo {
            create_time: Some(timestamp(m.create_time)),
            update_time: Some(timestamp(m.create_time)),
            creator: m.creator.clone(),
            updater: m.creator.clone(),
        }),
    }
}

/// Counts an ended change in `itsm.changes.closed` by outcome: successful, unsuccessful (failed
/// or backed out) or cancelled. The change success rate is successful / (successful +
/// unsuccessful).
fn record_change_end(change: &crate::entity::change::Model) {
    static CLOSED: std::sync::OnceLock<opentelemetry::metrics::Counter<u64>> = std::sync::OnceLock::new();
    let counter = CLOSED.get_or_init(|| {
        itsm_runtime::telemetry::meter(crate::SERVICE)
            .u64_counter("itsm.changes.closed")
            .with_description("Changes ended, by outcome")
            .build()
    });
    let outcome = if change.state == ChangeState::Cancelled as i32 {
        "cancelled"
    } else if change.outcome == ChangeOutcome::Successful as i32 {
        "successful"
    } else {
        "unsuccessful"
    };
    counter.add(1, &[opentelemetry::KeyValue::new("itsm.change.outcome", outcome)]);
}
