//! `itsm.incident.v1.ProblemService`: problems, known errors and candidate problems.

use tonic::{Request, Response, Status};

use itsm_proto::incident::problem_service_server::ProblemService;
use itsm_proto::incident::{
    CreateKnownErrorRequest, CreateProblemRequest, DeleteKnownErrorRequest, DeleteKnownErrorResponse,
    DeleteProblemRequest, DeleteProblemResponse, GetKnownErrorRequest, GetProblemRequest, KnownError,
    ListCandidateProblemsRequest, ListCandidateProblemsResponse, ListKnownErrorsRequest,
    ListKnownErrorsResponse, ListProblemsRequest, ListProblemsResponse, Problem, RaiseChangeRequest,
    UpdateKnownErrorRequest, UpdateProblemRequest,
};
use itsm_runtime::db::now_micros;
use itsm_runtime::error::Violations;
use itsm_runtime::fieldmask::UpdateMask;
use itsm_runtime::paging::page_size;
use itsm_runtime::{CallContext, Error, idempotency};

use super::{
    Shared, check_ci_count, check_group, check_long, check_name, check_short, ci_references, listing,
    number_from,
};
use crate::convert::{
    INCIDENT_NUMBER, INCIDENT_PREFIX, KNOWN_ERROR_NUMBER, KNOWN_ERROR_PREFIX, PROBLEM_NUMBER, PROBLEM_PREFIX,
    known_error_to_proto, list_to, problem_to_proto,
};
use crate::domain::problem::{KNOWN_ERROR_STATUSES, ProblemState};
use crate::domain::text::query_words;
use crate::repo::known_errors::{self, NewKnownError};
use crate::repo::problems::{self, NewProblem};

pub struct ProblemApi(pub Shared);

pub const PROBLEM_UPDATABLE: &[&str] = &[
    "short_description",
    "description",
    "state",
    "priority",
    "root_cause",
    "workaround",
    "configuration_items",
    "incidents",
    "assignment_group",
    "assignee",
    "resolution_notes",
];

pub const KNOWN_ERROR_UPDATABLE: &[&str] =
    &["short_description", "symptoms", "workaround", "configuration_items", "status"];

fn problem_number(name: &str, field: &str) -> Result<String, Error> {
    number_from(name, PROBLEM_PREFIX, PROBLEM_NUMBER, field)
}

fn known_error_number(name: &str, field: &str) -> Result<String, Error> {
    number_from(name, KNOWN_ERROR_PREFIX, KNOWN_ERROR_NUMBER, field)
}

fn check_incident_names(v: &mut Violations, field: &str, names: &[String]) {
    for (i, name) in names.iter().enumerate() {
        if crate::convert::parse_number(name, INCIDENT_PREFIX, INCIDENT_NUMBER).is_none() {
            v.add(format!("{field}[{i}]"), "must be `incidents/INC0000123`");
        }
    }
    if names.len() > 1000 {
        v.add(field, "at most 1000 incidents");
    }
}

fn check_problem_fields(v: &mut Violations, p: &Problem, mask: Option<&UpdateMask>) {
    let has = |path: &str| mask.is_none_or(|m| m.contains(path));
    if has("short_description") {
        check_short(v, "problem.short_description", &p.short_description, true);
    }
    check_long(v, "problem.description", &p.description);
    check_long(v, "problem.root_cause", &p.root_cause);
    check_long(v, "problem.workaround", &p.workaround);
    check_long(v, "problem.resolution_notes", &p.resolution_notes);
    check_name(v, "problem.assignee", &p.assignee);
    check_group(v, "problem.assignment_group", &p.assignment_group, false);
    check_ci_count(v, "problem.configuration_items", &p.configuration_items);
    check_incident_names(v, "problem.incidents", &p.incidents);
    let priority_ok =
        if mask.is_some() { (1..=5).contains(&p.priority) } else { (0..=5).contains(&p.priority) };
    if has("priority") && !priority_ok {
        v.add("problem.priority", "must be P1-P5");
    }
}

fn check_known_error_fields(v: &mut Violations, k: &KnownError, mask: Option<&UpdateMask>) {
    let has = |path: &str| mask.is_none_or(|m| m.contains(path));
    if has("short_description") {
        check_short(v, "known_error.short_description", &k.short_description, true);
    }
    if has("symptoms") {
        super::check_text(v, "known_error.symptoms", &k.symptoms, crate::domain::text::MAX_LONG, true);
    }
    if has("workaround") {
        super::check_text(v, "known_error.workaround", &k.workaround, crate::domain::text::MAX_LONG, true);
    }
    check_ci_count(v, "known_error.configuration_items", &k.configuration_items);
    let status_ok =
        KNOWN_ERROR_STATUSES.iter().any(|(s, _)| *s == k.status) || (mask.is_none() && k.status == 0);
    if has("status") && !status_ok {
        v.add("known_error.status", "must be DRAFT, PUBLISHED or RETIRED");
    }
}

#[tonic::async_trait]
impl ProblemService for ProblemApi {
    async fn create_problem(
        &self,
        request: Request<CreateProblemRequest>,
    ) -> Result<Response<Problem>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let request = request.into_inner();
        let Some(p) = request.problem.as_ref() else {
            return Err(Error::invalid("problem", "is required").into());
        };
        idempotency::validate_request_id(&request.request_id, "request_id")?;
        let mut v = Violations::new();
        check_problem_fields(&mut v, p, None);
        v.into_result()?;
        self.0.cmdb.check(&ctx, &ci_references("problem", &p.configuration_items, None)).await?;
        let hash = idempotency::request_hash(&request);
        let new = NewProblem {
            short_description: p.short_description.trim().to_string(),
            description: p.description.clone(),
            priority: p.priority,
            root_cause: p.root_cause.clone(),
            workaround: p.workaround.clone(),
            configuration_items: p.configuration_items.clone(),
            incidents: p.incidents.clone(),
            assignment_group: p.assignment_group.clone(),
            assignee: p.assignee.clone(),
        };
        let created = self.0.repo.create_problem(&ctx, new, &request.request_id, &hash).await?;
        Ok(Response::new(problem_to_proto(&created)))
    }

    async fn get_problem(&self, request: Request<GetProblemRequest>) -> Result<Response<Problem>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let number = problem_number(&request.get_ref().name, "name")?;
        Ok(Response::new(problem_to_proto(&self.0.repo.get_problem(&ctx, &number).await?)))
    }

    async fn list_problems(
        &self,
        request: Request<ListProblemsRequest>,
    ) -> Result<Response<ListProblemsResponse>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let r = request.into_inner();
        let size = page_size(r.page_size, "page_size")?;
        let l = listing(
            &self.0.page_tokens,
            &ctx.tenant,
            "problems",
            &r.filter,
            &r.order_by,
            "",
            &r.page_token,
            problems::ORDER_FIELDS,
            ("create_time", true),
        )?;
        let page = self.0.repo.list_problems(&ctx, l.filter.as_ref(), l.order, l.after, size).await?;
        let next_page_token = self.0.page_tokens.next(&l.fingerprint, page.next_key)?;
        Ok(Response::new(ListProblemsResponse {
            problems: page.items.iter().map(problem_to_proto).collect(),
            next_page_token,
        }))
    }

    async fn update_problem(
        &self,
        request: Request<UpdateProblemRequest>,
    ) -> Result<Response<Problem>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let request = request.into_inner();
        let Some(p) = request.problem else {
            return Err(Error::invalid("problem", "is required").into());
        };
        let number = problem_number(&p.name, "problem.name")?;
        let mask = UpdateMask::parse(request.update_mask.as_ref(), PROBLEM_UPDATABLE, "update_mask")?;
        let mut v = Violations::new();
        check_problem_fields(&mut v, &p, Some(&mask));
        let target = if mask.contains("state") {
            let state = ProblemState::from_i32(p.state);
            if state.is_none() {
                v.add("problem.state", "must be a problem state");
            }
            state
        } else {
            None
        };
        v.into_result()?;
        if mask.contains("configuration_items") {
            self.0.cmdb.check(&ctx, &ci_references("problem", &p.configuration_items, None)).await?;
        }
        let updated = self
            .0
            .repo
            .change_problem(&ctx, &number, &p.etag, "update", "", |m| {
                for path in mask.paths() {
                    match path.as_str() {
                        "short_description" => m.short_description = p.short_description.trim().to_string(),
                        "description" => m.description.clone_from(&p.description),
                        "priority" => m.priority = p.priority,
                        "root_cause" => m.root_cause.clone_from(&p.root_cause),
                        "workaround" => m.workaround.clone_from(&p.workaround),
                        "configuration_items" => m.configuration_items = list_to(&p.configuration_items),
                        "incidents" => m.incidents = list_to(&p.incidents),
                        "assignment_group" => m.assignment_group.clone_from(&p.assignment_group),
                        "assignee" => m.assignee.clone_from(&p.assignee),
                        "resolution_notes" => m.resolution_notes.clone_from(&p.resolution_notes),
                        _ => {}
                    }
                }
                if let Some(to) = target {
                    problems::transition(m, to)?;
                }
                Ok(())
            })
            .await?;
        Ok(Response::new(problem_to_proto(&updated)))
    }

    async fn delete_problem(
        &self,
        request: Request<DeleteProblemRequest>,
    ) -> Result<Response<DeleteProblemResponse>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let number = problem_number(&request.get_ref().name, "name")?;
        self.0.repo.delete_problem(&ctx, &number, &request.get_ref().etag).await?;
        Ok(Response::new(DeleteProblemResponse {}))
    }

    async fn create_known_error(
        &self,
        request: Request<CreateKnownErrorRequest>,
    ) -> Result<Response<KnownError>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let request = request.into_inner();
        let Some(k) = request.known_error.as_ref() else {
            return Err(Error::invalid("known_error", "is required").into());
        };
        idempotency::validate_request_id(&request.request_id, "request_id")?;
        let mut v = Violations::new();
        check_known_error_fields(&mut v, k, None);
        if !k.problem.is_empty()
            && crate::convert::parse_number(&k.problem, PROBLEM_PREFIX, PROBLEM_NUMBER).is_none()
        {
            v.add("known_error.problem", "must be `problems/PRB0000123`");
        }
        v.into_result()?;
        self.0.cmdb.check(&ctx, &ci_references("known_error", &k.configuration_items, None)).await?;
        let hash = idempotency::request_hash(&request);
        let new = NewKnownError {
            problem: k.problem.clone(),
            short_description: k.short_description.trim().to_string(),
            symptoms: k.symptoms.clone(),
            workaround: k.workaround.clone(),
            configuration_items: k.configuration_items.clone(),
            status: k.status,
        };
        let created = self.0.repo.create_known_error(&ctx, new, &request.request_id, &hash).await?;
        Ok(Response::new(known_error_to_proto(&created)))
    }

    async fn get_known_error(
        &self,
        request: Request<GetKnownErrorRequest>,
    ) -> Result<Response<KnownError>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let number = known_error_number(&request.get_ref().name, "name")?;
        Ok(Response::new(known_error_to_proto(&self.0.repo.get_known_error(&ctx, &number).await?)))
    }

    async fn list_known_errors(
        &self,
        request: Request<ListKnownErrorsRequest>,
    ) -> Result<Response<ListKnownErrorsResponse>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let r = request.into_inner();
        let size = page_size(r.page_size, "page_size")?;
        if r.query.len() > 1000 {
            return Err(Error::invalid("query", "must be at most 1000 bytes").into());
        }
        let words = query_words(&r.query);
        let l = listing(
            &self.0.page_tokens,
            &ctx.tenant,
            "knownErrors",
            &r.filter,
            &r.order_by,
            &words.join(" "),
            &r.page_token,
            known_errors::ORDER_FIELDS,
            ("create_time", true),
        )?;
        let page =
            self.0.repo.list_known_errors(&ctx, l.filter.as_ref(), &words, l.order, l.after, size).await?;
        let next_page_token = self.0.page_tokens.next(&l.fingerprint, page.next_key)?;
        Ok(Response::new(ListKnownErrorsResponse {
            known_errors: page.items.iter().map(known_error_to_proto).collect(),
            next_page_token,
        }))
    }

    async fn update_known_error(
        &self,
        request: Request<UpdateKnownErrorRequest>,
    ) -> Result<Response<KnownError>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let request = request.into_inner();
        let Some(k) = request.known_error else {
            return Err(Error::invalid("known_error", "is required").into());
        };
        let number = known_error_number(&k.name, "known_error.name")?;
        let mask = UpdateMask::parse(request.update_mask.as_ref(), KNOWN_ERROR_UPDATABLE, "update_mask")?;
        let mut v = Violations::new();
        check_known_error_fields(&mut v, &k, Some(&mask));
        v.into_result()?;
        if mask.contains("configuration_items") {
            self.0.cmdb.check(&ctx, &ci_references("known_error", &k.configuration_items, None)).await?;
        }
        let updated = self
            .0
            .repo
            .change_known_error(&ctx, &number, &k.etag, |m| {
                for path in mask.paths() {
                    match path.as_str() {
                        "short_description" => m.short_description = k.short_description.trim().to_string(),
                        "symptoms" => m.symptoms.clone_from(&k.symptoms),
                        "workaround" => m.workaround.clone_from(&k.workaround),
                        "configuration_items" => m.configuration_items = list_to(&k.configuration_items),
                        "status" => m.status = k.status,
                        _ => {}
                    }
                }
                Ok(())
            })
            .await?;
        Ok(Response::new(known_error_to_proto(&updated)))
    }

    async fn delete_known_error(
        &self,
        request: Request<DeleteKnownErrorRequest>,
    ) -> Result<Response<DeleteKnownErrorResponse>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let number = known_error_number(&request.get_ref().name, "name")?;
        self.0.repo.delete_known_error(&ctx, &number, &request.get_ref().etag).await?;
        Ok(Response::new(DeleteKnownErrorResponse {}))
    }

    async fn list_candidate_problems(
        &self,
        request: Request<ListCandidateProblemsRequest>,
    ) -> Result<Response<ListCandidateProblemsResponse>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let r = request.into_inner();
        let rules = &self.0.repo.rules;
        let mut v = Violations::new();
        if !(0..=366).contains(&r.window_days) {
            v.add("window_days", "must be 1-366 (0 = the configured default)");
        }
        if r.min_incidents != 0 && r.min_incidents < 2 {
            v.add("min_incidents", "must be at least 2 (0 = the configured default)");
        }
        v.into_result()?;
        let days = if r.window_days == 0 {
            i64::from(rules.candidate_window_days)
        } else {
            i64::from(r.window_days)
        };
        let min = if r.min_incidents == 0 {
            i64::from(rules.candidate_min_incidents)
        } else {
            i64::from(r.min_incidents)
        };
        let limit = page_size(r.page_size, "page_size")? as usize;
        let since = now_micros() - days * 86_400_000_000;
        let candidates = self.0.repo.candidate_problems(&ctx, since, min, limit).await?;
        Ok(Response::new(ListCandidateProblemsResponse { candidates }))
    }

    async fn raise_change(&self, request: Request<RaiseChangeRequest>) -> Result<Response<Problem>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let r = request.into_inner();
        let number = problem_number(&r.name, "name")?;
        let mut v = Violations::new();
        if r.request_id.is_empty() {
            v.add("request_id", "is required, so a retry raises no second change");
        } else if idempotency::validate_request_id(&r.request_id, "request_id").is_err() {
            v.add("request_id", "must be a UUID");
        }
        check_short(&mut v, "short_description", &r.short_description, false);
        check_long(&mut v, "description", &r.description);
        v.into_result()?;
        let problem = self.0.repo.get_problem(&ctx, &number).await?;
        let state = ProblemState::from_i32(problem.state);
        let raisable = matches!(
            state,
            Some(ProblemState::Assessed | ProblemState::RootCauseAnalysis | ProblemState::FixInProgress)
        );
        if !raisable || problem.root_cause.trim().is_empty() {
            return Err(Error::FailedPrecondition(format!(
                "{} is {} {}; a change is raised for an ASSESSED, ROOT_CAUSE_ANALYSIS or FIX_IN_PROGRESS \
                 problem with a root cause",
                r.name,
                state.map_or("in an unknown state", ProblemState::name),
                if problem.root_cause.trim().is_empty() { "without a root cause" } else { "" }
            ))
            .into());
        }
        let change = crate::change_desk::change_for(&problem, &r.short_description, &r.description);
        let change_name = self.0.changes.create(&ctx, change, &r.request_id).await?;
        let linked = self.0.repo.link_change(&ctx, &number, &change_name).await?;
        Ok(Response::new(problem_to_proto(&linked)))
    }
}
