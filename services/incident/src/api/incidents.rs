//! `itsm.incident.v1.IncidentService`.

use tonic::{Request, Response, Status};

use itsm_proto::incident::incident_service_server::IncidentService;
use itsm_proto::incident::{
    AddWorkNoteRequest, AssignIncidentRequest, CloseIncidentRequest, CreateIncidentRequest,
    DeleteIncidentRequest, DeleteIncidentResponse, DemoteIncidentRequest, EscalateIncidentRequest,
    EscalationKind, GetIncidentRequest, Incident, ListIncidentTimelineRequest, ListIncidentTimelineResponse,
    ListIncidentsRequest, ListIncidentsResponse, ListWorkNotesRequest, ListWorkNotesResponse,
    PromoteIncidentRequest, ReopenIncidentRequest, ResolveIncidentRequest, TimelineEntry,
    UpdateIncidentRequest, WorkNote,
};
use itsm_runtime::error::Violations;
use itsm_runtime::fieldmask::UpdateMask;
use itsm_runtime::paging::{PageTokens, page_size};
use itsm_runtime::{CallContext, Error, idempotency};

use super::{
    Shared, check_ci_count, check_group, check_long, check_name, check_short, ci_references, level, listing,
    number_from,
};
use crate::convert::{INCIDENT_NUMBER, INCIDENT_PREFIX, incident_to_proto, list_to, note_to_proto};
use crate::domain::lifecycle::{IncidentState, RESOLUTION_CODES};
use crate::domain::text::{MAX_LONG, query_words};
use crate::repo::incidents::{
    self as rules, COMMENT, COMMUNICATION, NewIncident, ORDER_FIELDS, WORK_NOTE, incident_name,
};

pub struct IncidentApi(pub Shared);

/// Fields UpdateIncident may change.
pub const UPDATABLE: &[&str] = &[
    "caller",
    "short_description",
    "description",
    "category",
    "subcategory",
    "business_service",
    "configuration_items",
    "impact",
    "urgency",
    "state",
    "on_hold_reason",
    "parent_incident",
];

fn number(name: &str, field: &str) -> Result<String, Error> {
    number_from(name, INCIDENT_PREFIX, INCIDENT_NUMBER, field)
}

fn required_reason(reason: &str, field: &str) -> Result<(), Error> {
    let mut v = Violations::new();
    super::check_text(&mut v, field, reason, MAX_LONG, true);
    v.into_result()
}

fn respond(model: &crate::entity::incident::Model) -> Result<Response<Incident>, Status> {
    Ok(Response::new(incident_to_proto(model)))
}

impl IncidentApi {
    /// Checks that `parent` can be the parent of incident `number`: it exists, is a major
    /// incident, is open and is not the incident itself.
    async fn check_parent(&self, ctx: &CallContext, number: &str, parent: &str) -> Result<(), Error> {
        let field = "incident.parent_incident";
        let parent_number = super::number_from(parent, INCIDENT_PREFIX, INCIDENT_NUMBER, field)?;
        if parent_number == number {
            return Err(Error::invalid(field, "an incident cannot be its own parent"));
        }
        let parent = crate::repo::Repository::find_incident(&self.0.repo.db, &ctx.tenant, &parent_number)
            .await?
            .ok_or_else(|| {
                Error::invalid(field, format!("{} does not exist", incident_name(&parent_number)))
            })?;
        if !parent.major {
            return Err(Error::FailedPrecondition(format!(
                "{} is not a major incident; promote it before linking children",
                incident_name(&parent_number)
            )));
        }
        if !IncidentState::from_i32(parent.state).is_some_and(IncidentState::is_open) {
            return Err(Error::FailedPrecondition(format!(
                "{} is no longer open; children can be linked to open major incidents only",
                incident_name(&parent_number)
            )));
        }
        Ok(())
    }
}

#[tonic::async_trait]
impl IncidentService for IncidentApi {
    async fn create_incident(
        &self,
        request: Request<CreateIncidentRequest>,
    ) -> Result<Response<Incident>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let request = request.into_inner();
        let Some(incident) = request.incident.as_ref() else {
            return Err(Error::invalid("incident", "is required").into());
        };
        idempotency::validate_request_id(&request.request_id, "request_id")?;
        let mut v = Violations::new();
        check_short(&mut v, "incident.short_description", &incident.short_description, true);
        check_long(&mut v, "incident.description", &incident.description);
        check_name(&mut v, "incident.caller", &incident.caller);
        check_name(&mut v, "incident.category", &incident.category);
        check_name(&mut v, "incident.subcategory", &incident.subcategory);
        check_name(&mut v, "incident.assignee", &incident.assignee);
        check_group(&mut v, "incident.assignment_group", &incident.assignment_group, false);
        if !incident.assignee.is_empty() && incident.assignment_group.is_empty() {
            v.add("incident.assignee", "needs an assignment_group");
        }
        if !incident.service_desk_ticket.is_empty() && !incident.service_desk_ticket.starts_with("tickets/") {
            v.add("incident.service_desk_ticket", "must be `tickets/{number}`");
        }
        check_ci_count(&mut v, "incident.configuration_items", &incident.configuration_items);
        let impact = level(&mut v, "incident.impact", incident.impact, 3);
        let urgency = level(&mut v, "incident.urgency", incident.urgency, 3);
        v.into_result()?;
        let hash = idempotency::request_hash(&request);
        if let Some(earlier) = self.0.repo.created_before(&ctx, &request.request_id, &hash).await? {
            return respond(&earlier);
        }
        let refs = ci_references("incident", &incident.configuration_items, Some(&incident.business_service));
        self.0.cmdb.check(&ctx, &refs).await?;
        let new = NewIncident {
            caller: incident.caller.clone(),
            service_desk_ticket: incident.service_desk_ticket.clone(),
            short_description: incident.short_description.trim().to_string(),
            description: incident.description.clone(),
            category: incident.category.clone(),
            subcategory: incident.subcategory.clone(),
            business_service: incident.business_service.clone(),
            configuration_items: incident.configuration_items.clone(),
            impact,
            urgency,
            assignment_group: incident.assignment_group.clone(),
            assignee: incident.assignee.clone(),
        };
        let created = self.0.repo.create_incident(&ctx, new, &request.request_id, &hash).await?;
        respond(&created)
    }

    async fn get_incident(&self, request: Request<GetIncidentRequest>) -> Result<Response<Incident>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let number = number(&request.get_ref().name, "name")?;
        respond(&self.0.repo.get_incident(&ctx, &number).await?)
    }

    async fn list_incidents(
        &self,
        request: Request<ListIncidentsRequest>,
    ) -> Result<Response<ListIncidentsResponse>, Status> {
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
            "incidents",
            &r.filter,
            &r.order_by,
            &words.join(" "),
            &r.page_token,
            ORDER_FIELDS,
            ("open_time", true),
        )?;
        let page =
            self.0.repo.list_incidents(&ctx, l.filter.as_ref(), &words, l.order, l.after, size).await?;
        let next_page_token = self.0.page_tokens.next(&l.fingerprint, page.next_key)?;
        Ok(Response::new(ListIncidentsResponse {
            incidents: page.items.iter().map(incident_to_proto).collect(),
            next_page_token,
        }))
    }

    async fn update_incident(
        &self,
        request: Request<UpdateIncidentRequest>,
    ) -> Result<Response<Incident>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let request = request.into_inner();
        let Some(incoming) = request.incident else {
            return Err(Error::invalid("incident", "is required").into());
        };
        let number = number(&incoming.name, "incident.name")?;
        let mask = UpdateMask::parse(request.update_mask.as_ref(), UPDATABLE, "update_mask")?;
        let mut v = Violations::new();
        let has = |p: &str| mask.contains(p);
        if has("short_description") {
            check_short(&mut v, "incident.short_description", &incoming.short_description, true);
        }
        check_long(&mut v, "incident.description", &incoming.description);
        check_name(&mut v, "incident.caller", &incoming.caller);
        check_name(&mut v, "incident.category", &incoming.category);
        check_name(&mut v, "incident.subcategory", &incoming.subcategory);
        check_ci_count(&mut v, "incident.configuration_items", &incoming.configuration_items);
        let impact = if has("impact") { level(&mut v, "incident.impact", incoming.impact, 3) } else { 0 };
        let urgency = if has("urgency") { level(&mut v, "incident.urgency", incoming.urgency, 3) } else { 0 };
        let target_state = if has("state") {
            match IncidentState::from_i32(incoming.state) {
                Some(s) => Some(s),
                None => {
                    v.add("incident.state", "must be IN_PROGRESS, ON_HOLD or CANCELLED");
                    None
                }
            }
        } else {
            None
        };
        if has("on_hold_reason") && !has("state") {
            v.add("update_mask", "`on_hold_reason` changes together with `state`");
        }
        v.into_result()?;
        let cis = if has("configuration_items") { incoming.configuration_items.as_slice() } else { &[] };
        let service = has("business_service").then_some(incoming.business_service.as_str());
        self.0.cmdb.check(&ctx, &ci_references("incident", cis, service)).await?;
        if has("parent_incident") && !incoming.parent_incident.is_empty() {
            self.check_parent(&ctx, &number, &incoming.parent_incident).await?;
        }
        let priority = self.0.repo.rules.priority.clone();
        let updated = self
            .0
            .repo
            .change_incident(&ctx, &number, &incoming.etag, "update", "", |m, now| {
                let state = IncidentState::from_i32(m.state);
                let editable = state.is_some_and(IncidentState::is_open);
                let only_state = mask.paths().iter().all(|p| p == "state" || p == "on_hold_reason");
                if !editable && !only_state {
                    return Err(Error::FailedPrecondition(format!(
                        "{} is {}; only open incidents can be edited (reopen it first)",
                        incident_name(&m.number),
                        state.map_or("in an unknown state", IncidentState::name)
                    )));
                }
                for path in mask.paths() {
                    match path.as_str() {
                        "caller" => m.caller.clone_from(&incoming.caller),
                        "short_description" => {
                            m.short_description = incoming.short_description.trim().to_string();
                        }
                        "description" => m.description.clone_from(&incoming.description),
                        "category" => m.category.clone_from(&incoming.category),
                        "subcategory" => m.subcategory.clone_from(&incoming.subcategory),
                        "business_service" => m.business_service.clone_from(&incoming.business_service),
                        "configuration_items" => {
                            m.configuration_items = list_to(&incoming.configuration_items);
                        }
                        "impact" => m.impact = impact,
                        "urgency" => m.urgency = urgency,
                        "parent_incident" => {
                            if m.major && !incoming.parent_incident.is_empty() {
                                return Err(Error::FailedPrecondition(format!(
                                    "{} is a major incident itself and cannot be a child",
                                    incident_name(&m.number)
                                )));
                            }
                            m.parent_incident.clone_from(&incoming.parent_incident);
                        }
                        _ => {}
                    }
                }
                m.priority = priority.priority(m.impact, m.urgency);
                if let Some(to) = target_state {
                    rules::set_state(m, to, incoming.on_hold_reason, now)?;
                }
                Ok(())
            })
            .await?;
        respond(&updated)
    }

    async fn delete_incident(
        &self,
        request: Request<DeleteIncidentRequest>,
    ) -> Result<Response<DeleteIncidentResponse>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let number = number(&request.get_ref().name, "name")?;
        if !ctx.has_role("admin") {
            return Err(Error::PermissionDenied(
                "only an admin deletes incidents; cancel or close it instead".into(),
            )
            .into());
        }
        self.0.repo.delete_incident(&ctx, &number, &request.get_ref().etag).await?;
        Ok(Response::new(DeleteIncidentResponse {}))
    }

    async fn resolve_incident(
        &self,
        request: Request<ResolveIncidentRequest>,
    ) -> Result<Response<Incident>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let r = request.into_inner();
        let number = number(&r.name, "name")?;
        let mut v = Violations::new();
        if !RESOLUTION_CODES.iter().any(|(c, _)| *c == r.resolution_code) {
            v.add("resolution_code", "is required: how the incident was resolved");
        }
        super::check_text(&mut v, "resolution_notes", &r.resolution_notes, MAX_LONG, true);
        v.into_result()?;
        let resolved = self
            .0
            .repo
            .resolve_incident(&ctx, &number, &r.etag, r.resolution_code, r.resolution_notes.trim())
            .await?;
        respond(&resolved)
    }

    async fn close_incident(
        &self,
        request: Request<CloseIncidentRequest>,
    ) -> Result<Response<Incident>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let r = request.into_inner();
        let number = number(&r.name, "name")?;
        let closed = self.0.repo.change_incident(&ctx, &number, &r.etag, "close", "", rules::close).await?;
        respond(&closed)
    }

    async fn reopen_incident(
        &self,
        request: Request<ReopenIncidentRequest>,
    ) -> Result<Response<Incident>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let r = request.into_inner();
        let number = number(&r.name, "name")?;
        required_reason(&r.reason, "reason")?;
        let reopened = self
            .0
            .repo
            .change_incident(&ctx, &number, &r.etag, "reopen", r.reason.trim(), |m, _| rules::reopen(m))
            .await?;
        respond(&reopened)
    }

    async fn assign_incident(
        &self,
        request: Request<AssignIncidentRequest>,
    ) -> Result<Response<Incident>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let r = request.into_inner();
        let number = number(&r.name, "name")?;
        let mut v = Violations::new();
        check_group(&mut v, "assignment_group", &r.assignment_group, true);
        check_name(&mut v, "assignee", &r.assignee);
        v.into_result()?;
        let assigned = self
            .0
            .repo
            .change_incident(&ctx, &number, &r.etag, "assign", "", |m, now| {
                rules::assign(m, &r.assignment_group, &r.assignee, now)
            })
            .await?;
        respond(&assigned)
    }

    async fn add_work_note(
        &self,
        request: Request<AddWorkNoteRequest>,
    ) -> Result<Response<WorkNote>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let r = request.into_inner();
        let number = number(&r.name, "name")?;
        idempotency::validate_request_id(&r.request_id, "request_id")?;
        let mut v = Violations::new();
        super::check_text(&mut v, "text", &r.text, MAX_LONG, true);
        let kind = match r.kind {
            0 => WORK_NOTE,
            WORK_NOTE | COMMENT | COMMUNICATION => r.kind,
            _ => {
                v.add("kind", "must be WORK_NOTE, COMMENT or COMMUNICATION");
                WORK_NOTE
            }
        };
        v.into_result()?;
        let hash = idempotency::request_hash(&r);
        let (number, note) = self.0.repo.add_note(&ctx, &number, kind, &r.text, &r.request_id, &hash).await?;
        Ok(Response::new(note_to_proto(&number, &note)))
    }

    async fn list_work_notes(
        &self,
        request: Request<ListWorkNotesRequest>,
    ) -> Result<Response<ListWorkNotesResponse>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let r = request.into_inner();
        let number = number(&r.parent, "parent")?;
        let size = page_size(r.page_size, "page_size")?;
        let fingerprint = PageTokens::fingerprint(&[&ctx.tenant, "workNotes", &number]);
        let after = match self.0.page_tokens.decode(&r.page_token, &fingerprint)? {
            None => None,
            Some(key) => match key.as_slice() {
                [serde_json::Value::Number(t), serde_json::Value::String(id)] => {
                    Some((t.as_i64().unwrap_or_default(), id.clone()))
                }
                _ => return Err(Error::invalid("page_token", "invalid page token").into()),
            },
        };
        let page = self.0.repo.notes(&ctx, &number, after, size).await?;
        let next_page_token = self.0.page_tokens.next(&fingerprint, page.next_key)?;
        Ok(Response::new(ListWorkNotesResponse {
            work_notes: page.items.iter().map(|n| note_to_proto(&number, n)).collect(),
            next_page_token,
        }))
    }

    async fn escalate_incident(
        &self,
        request: Request<EscalateIncidentRequest>,
    ) -> Result<Response<Incident>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let r = request.into_inner();
        let number = number(&r.name, "name")?;
        let mut v = Violations::new();
        super::check_text(&mut v, "reason", &r.reason, MAX_LONG, true);
        let kind = EscalationKind::try_from(r.kind).unwrap_or(EscalationKind::Unspecified);
        match kind {
            EscalationKind::Functional => {
                check_group(&mut v, "assignment_group", &r.assignment_group, true);
                if !(0..=3).contains(&r.support_tier) {
                    v.add("support_tier", "must be 1, 2 or 3");
                }
            }
            EscalationKind::Hierarchical => {}
            EscalationKind::Unspecified => v.add("kind", "must be FUNCTIONAL or HIERARCHICAL"),
        }
        v.into_result()?;
        let reason = r.reason.trim().to_string();
        let escalated = self
            .0
            .repo
            .change_incident(&ctx, &number, &r.etag, "escalate", &reason, |m, now| {
                let state = IncidentState::from_i32(m.state);
                if !state.is_some_and(IncidentState::is_open) {
                    return Err(Error::FailedPrecondition(format!(
                        "{} is {}; only open incidents can be escalated",
                        incident_name(&m.number),
                        state.map_or("in an unknown state", IncidentState::name)
                    )));
                }
                if kind == EscalationKind::Hierarchical {
                    m.manager_escalated = true;
                    return Ok(());
                }
                let tier = if r.support_tier == 0 { m.support_tier + 1 } else { r.support_tier };
                if tier <= m.support_tier || tier > 3 {
                    return Err(Error::FailedPrecondition(format!(
                        "{} is at tier {}; functional escalation goes to a higher tier (at most 3)",
                        incident_name(&m.number),
                        m.support_tier
                    )));
                }
                rules::assign(m, &r.assignment_group, "", now)?;
                m.support_tier = tier;
                Ok(())
            })
            .await?;
        respond(&escalated)
    }

    async fn promote_incident(
        &self,
        request: Request<PromoteIncidentRequest>,
    ) -> Result<Response<Incident>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let r = request.into_inner();
        let number = number(&r.name, "name")?;
        required_reason(&r.reason, "reason")?;
        let promoted = self
            .0
            .repo
            .change_incident(&ctx, &number, &r.etag, "promote", r.reason.trim(), |m, _| {
                let state = IncidentState::from_i32(m.state);
                if !state.is_some_and(IncidentState::is_open) {
                    return Err(Error::FailedPrecondition(format!(
                        "{} is {}; only open incidents can become major",
                        incident_name(&m.number),
                        state.map_or("in an unknown state", IncidentState::name)
                    )));
                }
                if m.major {
                    return Err(Error::FailedPrecondition(format!(
                        "{} is already major",
                        incident_name(&m.number)
                    )));
                }
                if !m.parent_incident.is_empty() {
                    return Err(Error::FailedPrecondition(format!(
                        "{} is a child of {}; unlink it before promoting it",
                        incident_name(&m.number),
                        m.parent_incident
                    )));
                }
                m.major = true;
                Ok(())
            })
            .await?;
        respond(&promoted)
    }

    async fn demote_incident(
        &self,
        request: Request<DemoteIncidentRequest>,
    ) -> Result<Response<Incident>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let r = request.into_inner();
        let number = number(&r.name, "name")?;
        required_reason(&r.reason, "reason")?;
        let filter =
            itsm_runtime::filter::parse(&format!("parent_incident = \"{}\"", incident_name(&number)))?;
        let children =
            self.0.repo.list_incidents(&ctx, filter.as_ref(), &[], ("open_time", false), None, 1000).await?;
        let open: Vec<&str> = children
            .items
            .iter()
            .filter(|c| IncidentState::from_i32(c.state).is_some_and(IncidentState::is_open))
            .map(|c| c.number.as_str())
            .collect();
        if !open.is_empty() {
            return Err(Error::FailedPrecondition(format!(
                "{} has open child incidents ({}); resolve or unlink them first",
                incident_name(&number),
                open.join(", ")
            ))
            .into());
        }
        let demoted = self
            .0
            .repo
            .change_incident(&ctx, &number, &r.etag, "demote", r.reason.trim(), |m, _| {
                if !m.major {
                    return Err(Error::FailedPrecondition(format!(
                        "{} is not a major incident",
                        incident_name(&m.number)
                    )));
                }
                m.major = false;
                Ok(())
            })
            .await?;
        respond(&demoted)
    }

    async fn list_incident_timeline(
        &self,
        request: Request<ListIncidentTimelineRequest>,
    ) -> Result<Response<ListIncidentTimelineResponse>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let r = request.into_inner();
        let number = number(&r.parent, "parent")?;
        let size = page_size(r.page_size, "page_size")?;
        let fingerprint = PageTokens::fingerprint(&[&ctx.tenant, "timeline", &number]);
        let after = self.0.page_tokens.decode_number(&r.page_token, &fingerprint)?;
        let page = self.0.repo.timeline(&ctx, &number, after, size).await?;
        let next_page_token = self.0.page_tokens.next(&fingerprint, page.next_key)?;
        Ok(Response::new(ListIncidentTimelineResponse {
            entries: page
                .items
                .into_iter()
                .map(|(change, reason)| TimelineEntry { change: Some(change), reason })
                .collect(),
            next_page_token,
        }))
    }
}
