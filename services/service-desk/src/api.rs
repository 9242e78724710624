//! `itsm.servicedesk.v1.ServiceDeskService`: validates, calls the incident service where a
//! ticket needs it, and the repository.

use tonic::{Request, Response, Status};

use itsm_proto::servicedesk::service_desk_service_server::ServiceDeskService;
use itsm_proto::servicedesk::*;
use itsm_runtime::error::Violations;
use itsm_runtime::fieldmask::UpdateMask;
use itsm_runtime::history::etag;
use itsm_runtime::numbers::is_number;
use itsm_runtime::paging::{PageTokens, page_size};
use itsm_runtime::validate::{self, MAX_NAME};
use itsm_runtime::{CallContext, Error, filter, idempotency};

use crate::convert::{
    GROUP_PREFIX, RULE_PREFIX, TICKET_NUMBER, TICKET_PREFIX, WEBHOOK_PREFIX, article_to_proto,
    group_to_proto, list_to, note_to_proto, rule_to_proto, shift_from_proto, ticket_to_proto, uuid_of,
    webhook_to_proto,
};
use crate::domain::lifecycle::TicketState;
use crate::domain::notes::Visibility;
use crate::domain::{catalog, knowledge, shifts, templates};
use crate::entity::{article, assignment_rule, catalog_item, support_group, ticket, webhook};
use crate::incident_desk::IncidentDesk;
use crate::repo::Repository;
use crate::repo::catalog::CATALOG_PREFIX;
use crate::repo::groups::GROUP_ORDER_FIELDS;
use crate::repo::knowledge::{ARTICLE_NUMBER, ARTICLE_PREFIX, keywords_to};
use crate::repo::notes::NewNote;
use crate::repo::tickets::{NewTicket, ORDER_FIELDS, resolve, transition};

const MAX_SHORT: usize = 300;
const MAX_LONG: usize = 32 * 1024;
const MAX_CIS: usize = 100;
const MAX_MEMBERS: usize = 500;

pub struct ServiceDeskApi {
    pub repo: Repository,
    pub incidents: IncidentDesk,
    pub page_tokens: PageTokens,
}

pub const TICKET_UPDATABLE: &[&str] = &[
    "requester",
    "organisation",
    "category",
    "short_description",
    "description",
    "business_service",
    "configuration_items",
    "impact",
    "urgency",
    "assignee",
    "state",
];

pub const GROUP_UPDATABLE: &[&str] = &[
    "display_name",
    "description",
    "tier",
    "members",
    "manager",
    "assignment_method",
    "shifts",
    "escalation_group",
];

fn number(name: &str, field: &str) -> Result<String, Error> {
    if name.is_empty() {
        return Err(Error::invalid(field, "is required"));
    }
    name.strip_prefix(TICKET_PREFIX)
        .filter(|n| is_number(n, TICKET_NUMBER))
        .map(str::to_string)
        .ok_or_else(|| Error::invalid(field, "must be `tickets/REQ0000123`"))
}

fn group_id(name: &str, field: &str) -> Result<String, Error> {
    if name.is_empty() {
        return Err(Error::invalid(field, "is required"));
    }
    uuid_of(name, GROUP_PREFIX).ok_or_else(|| Error::invalid(field, "must be `supportGroups/{uuid}`"))
}

fn ci_name_ok(name: &str) -> bool {
    name.strip_prefix("configurationItems/").is_some_and(|id| uuid::Uuid::parse_str(id).is_ok())
}

/// Checks the ticket fields a caller may set (all on create, the masked ones on update).
fn check_ticket(v: &mut Violations, t: &Ticket, has: &dyn Fn(&str) -> bool) {
    if has("short_description") {
        validate::text(v, "ticket.short_description", &t.short_description, MAX_SHORT, true);
    }
    validate::text(v, "ticket.description", &t.description, MAX_LONG, false);
    for (field, value) in [
        ("ticket.requester", &t.requester),
        ("ticket.organisation", &t.organisation),
        ("ticket.category", &t.category),
        ("ticket.assignee", &t.assignee),
    ] {
        validate::text(v, field, value, MAX_NAME, false);
    }
    if has("configuration_items") {
        if t.configuration_items.len() > MAX_CIS {
            v.add("ticket.configuration_items", format!("at most {MAX_CIS} configuration items"));
        }
        for (i, ci) in t.configuration_items.iter().enumerate() {
            if !ci_name_ok(ci) {
                v.add(format!("ticket.configuration_items[{i}]"), "must be `configurationItems/{uuid}`");
            }
        }
    }
    if has("business_service") && !t.business_service.is_empty() && !ci_name_ok(&t.business_service) {
        v.add("ticket.business_service", "must be `configurationItems/{uuid}`");
    }
    for (field, value) in [("impact", t.impact), ("urgency", t.urgency)] {
        if has(field) && !(0..=3).contains(&value) {
            v.add(format!("ticket.{field}"), "must be HIGH, MEDIUM or LOW (1-3)");
        }
    }
}

fn check_group(v: &mut Violations, g: &SupportGroup, has: &dyn Fn(&str) -> bool) {
    if has("display_name") {
        validate::text(v, "support_group.display_name", &g.display_name, MAX_NAME, true);
    }
    validate::text(v, "support_group.description", &g.description, MAX_LONG, false);
    validate::text(v, "support_group.manager", &g.manager, MAX_NAME, false);
    if has("tier") && !(1..=3).contains(&g.tier) {
        v.add("support_group.tier", "must be 1, 2 or 3");
    }
    if has("members") {
        if g.members.len() > MAX_MEMBERS {
            v.add("support_group.members", format!("at most {MAX_MEMBERS} members"));
        }
        for (i, m) in g.members.iter().enumerate() {
            if m.trim().is_empty() || m.len() > MAX_NAME {
                v.add(format!("support_group.members[{i}]"), "must be a principal");
            }
        }
    }
    if has("assignment_method") && !(0..=3).contains(&g.assignment_method) {
        v.add("support_group.assignment_method", "must be ROUND_ROBIN, LEAST_LOADED or QUEUE");
    }
    if has("shifts") {
        for (i, s) in g.shifts.iter().enumerate() {
            if let Err((part, why)) = shifts::check(&shift_from_proto(s)) {
                v.add(format!("support_group.shifts[{i}].{part}"), why);
            }
            if !g.members.contains(&s.member) {
                v.add(format!("support_group.shifts[{i}].member"), "must be a member of the group");
            }
        }
    }
    if has("escalation_group")
        && !g.escalation_group.is_empty()
        && uuid_of(&g.escalation_group, GROUP_PREFIX).is_none()
    {
        v.add("support_group.escalation_group", "must be `supportGroups/{uuid}`");
    }
}

/// Escalates a ticket and the incident behind it: the incident first (it is idempotent for a
/// retry), then the ticket, which checks the move again in its transaction.
#[allow(clippy::too_many_arguments)] // the call's context and the escalation's parts
pub async fn escalate(
    repo: &Repository,
    incidents: &IncidentDesk,
    ctx: &CallContext,
    number: &str,
    etag: &str,
    group: &str,
    reason: &str,
    notify_manager: bool,
) -> Result<ticket::Model, Error> {
    let plan = repo.plan_escalation(ctx, number, group).await?;
    let target = crate::convert::group_name(&plan.target.id);
    if !plan.ticket.incident.is_empty() {
        incidents
            .escalate(ctx, &plan.ticket.incident, &target, plan.target.tier, reason, notify_manager)
            .await?;
    }
    repo.escalate(ctx, number, etag, &target, reason, notify_manager).await
}

/// A caller who is only a requester: sees and raises only their own tickets.
fn requester_only(ctx: &CallContext) -> bool {
    ctx.has_role("requester")
        && !["agent", "tier1", "tier2", "tier3", "admin"].iter().any(|r| ctx.has_role(r))
}

impl ServiceDeskApi {
    /// The ticket, unless a requester asks for someone else's (then it does not exist for them).
    async fn visible_ticket(&self, ctx: &CallContext, number: &str) -> Result<ticket::Model, Error> {
        Repository::visible_ticket(&self.repo.db, ctx, number, requester_only(ctx)).await
    }

    /// Raises the incident behind a ticket (when it has none) and records the classification.
    async fn classify_as(
        &self,
        ctx: &CallContext,
        current: &ticket::Model,
        ticket_type: i32,
        category: &str,
        group: Option<support_group::Model>,
        etag: &str,
    ) -> Result<ticket::Model, Error> {
        let incident = if ticket_type == TicketType::Incident as i32 && current.incident.is_empty() {
            let mut routed = current.clone();
            if let Some(g) = &group {
                routed.support_group = crate::convert::group_name(&g.id);
            }
            let category = if category.is_empty() { current.category.as_str() } else { category };
            let raised = self.incidents.raise(ctx, &routed, category).await?;
            Some((raised.name, raised.priority))
        } else {
            None
        };
        self.repo.classify(ctx, &current.number, etag, ticket_type, category, group, incident).await
    }

    async fn existing_group(
        &self,
        ctx: &CallContext,
        name: &str,
        field: &str,
    ) -> Result<Option<support_group::Model>, Error> {
        if name.is_empty() {
            return Ok(None);
        }
        Ok(Some(Repository::named_group(&self.repo.db, &ctx.tenant, name, field).await?))
    }
}

#[tonic::async_trait]
impl ServiceDeskService for ServiceDeskApi {
    async fn create_ticket(&self, request: Request<CreateTicketRequest>) -> Result<Response<Ticket>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let request = request.into_inner();
        let Some(t) = request.ticket.as_ref() else {
            return Err(Error::invalid("ticket", "is required").into());
        };
        idempotency::validate_request_id(&request.request_id, "request_id")?;
        let mut v = Violations::new();
        check_ticket(&mut v, t, &|_| true);
        if !(0..=6).contains(&t.channel) {
            v.add("ticket.channel", "must be a channel");
        }
        if !(0..=2).contains(&t.r#type) {
            v.add("ticket.type", "must be INCIDENT or SERVICE_REQUEST");
        }
        if !t.support_group.is_empty() && uuid_of(&t.support_group, GROUP_PREFIX).is_none() {
            v.add("ticket.support_group", "must be `supportGroups/{uuid}`");
        }
        v.into_result()?;
        let group = self.existing_group(&ctx, &t.support_group, "ticket.support_group").await?;
        let new = NewTicket {
            channel: if t.channel == 0 { Channel::Api as i32 } else { t.channel },
            // A requester raises tickets for themselves only.
            requester: if requester_only(&ctx) { ctx.principal.clone() } else { t.requester.clone() },
            organisation: t.organisation.clone(),
            category: t.category.clone(),
            short_description: t.short_description.trim().to_string(),
            description: t.description.clone(),
            ticket_type: t.r#type,
            support_group: group.map(|g| g.id),
            business_service: t.business_service.clone(),
            configuration_items: t.configuration_items.clone(),
            impact: t.impact,
            urgency: t.urgency,
            ..Default::default()
        };
        let hash = idempotency::request_hash(&request);
        let created = self.repo.create_ticket(&ctx, new, &request.request_id, &hash).await?;
        // An incident ticket gets its incident at once; if the incident service cannot take it now,
        // the ticket stays recorded and a retry (same request_id) or ClassifyTicket raises it.
        if created.ticket_type == TicketType::Incident as i32 && created.incident.is_empty() {
            let classified = self
                .classify_as(&ctx, &created, created.ticket_type, "", None, &etag(created.version))
                .await?;
            return Ok(Response::new(ticket_to_proto(&classified)));
        }
        Ok(Response::new(ticket_to_proto(&created)))
    }

    async fn get_ticket(&self, request: Request<GetTicketRequest>) -> Result<Response<Ticket>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let number = number(&request.get_ref().name, "name")?;
        Ok(Response::new(ticket_to_proto(&self.visible_ticket(&ctx, &number).await?)))
    }

    async fn list_tickets(
        &self,
        request: Request<ListTicketsRequest>,
    ) -> Result<Response<ListTicketsResponse>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let r = request.into_inner();
        let size = page_size(r.page_size, "page_size")?;
        let mut parsed = filter::parse(&r.filter)?;
        if requester_only(&ctx) {
            // Their own tickets only, whatever else the filter says.
            let own = filter::Expr::Compare {
                member: "requester".into(),
                op: filter::Op::Eq,
                value: ctx.principal.clone(),
            };
            parsed = Some(match parsed {
                Some(other) => filter::Expr::And(vec![own, other]),
                None => own,
            });
        }
        let order = filter::parse_order_by(&r.order_by, ORDER_FIELDS)?.unwrap_or(("create_time", true));
        let fingerprint =
            PageTokens::fingerprint(&[&ctx.tenant, &ctx.principal, "tickets", &r.filter, &r.order_by]);
        let after = self.page_tokens.decode(&r.page_token, &fingerprint)?;
        let page = self.repo.list_tickets(&ctx, parsed.as_ref(), order, after, size).await?;
        let next_page_token = self.page_tokens.next(&fingerprint, page.next_key)?;
        Ok(Response::new(ListTicketsResponse {
            tickets: page.items.iter().map(ticket_to_proto).collect(),
            next_page_token,
        }))
    }

    async fn update_ticket(&self, request: Request<UpdateTicketRequest>) -> Result<Response<Ticket>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let request = request.into_inner();
        let Some(t) = request.ticket else {
            return Err(Error::invalid("ticket", "is required").into());
        };
        let number = number(&t.name, "ticket.name")?;
        let mask = UpdateMask::parse(request.update_mask.as_ref(), TICKET_UPDATABLE, "update_mask")?;
        let mut v = Violations::new();
        check_ticket(&mut v, &t, &|p| mask.contains(p));
        let target = if mask.contains("state") {
            match TicketState::from_i32(t.state) {
                Some(
                    s @ (TicketState::InProgress
                    | TicketState::Pending
                    | TicketState::Cancelled
                    | TicketState::Closed),
                ) => Some(s),
                _ => {
                    v.add(
                        "ticket.state",
                        "Update sets IN_PROGRESS, PENDING, CANCELLED or CLOSED; ResolveTicket resolves",
                    );
                    None
                }
            }
        } else {
            None
        };
        v.into_result()?;
        let updated = self
            .repo
            .change_ticket(&ctx, &number, &t.etag, "update", "", |m, now| {
                let content = mask.paths().iter().any(|p| p != "state");
                if content && !TicketState::from_i32(m.state).is_some_and(TicketState::is_open) {
                    return Err(Error::FailedPrecondition(format!(
                        "{} is no longer open; only its state can change",
                        crate::convert::ticket_name(&m.number)
                    )));
                }
                for path in mask.paths() {
                    match path.as_str() {
                        "requester" => m.requester.clone_from(&t.requester),
                        "organisation" => m.organisation.clone_from(&t.organisation),
                        "category" => m.category.clone_from(&t.category),
                        "short_description" => m.short_description = t.short_description.trim().to_string(),
                        "description" => m.description.clone_from(&t.description),
                        "business_service" => m.business_service.clone_from(&t.business_service),
                        "configuration_items" => m.configuration_items = list_to(&t.configuration_items),
                        "impact" => m.impact = t.impact,
                        "urgency" => m.urgency = t.urgency,
                        "assignee" => {
                            m.assignee.clone_from(&t.assignee);
                            if !m.assignee.is_empty() {
                                if m.first_response_time == 0 {
                                    m.first_response_time = now;
                                }
                                if m.state == TicketState::New as i32 {
                                    m.state = TicketState::InProgress as i32;
                                }
                            }
                        }
                        _ => {}
                    }
                }
                if let Some(to) = target {
                    transition(m, to)?;
                    if to == TicketState::Closed {
                        m.close_time = now;
                    }
                }
                Ok(())
            })
            .await?;
        Ok(Response::new(ticket_to_proto(&updated)))
    }

    async fn delete_ticket(
        &self,
        request: Request<DeleteTicketRequest>,
    ) -> Result<Response<DeleteTicketResponse>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let number = number(&request.get_ref().name, "name")?;
        if !ctx.has_role("admin") {
            return Err(Error::PermissionDenied(
                "only an admin deletes tickets; cancel or close it instead".into(),
            )
            .into());
        }
        self.repo.delete_ticket(&ctx, &number, &request.get_ref().etag).await?;
        Ok(Response::new(DeleteTicketResponse {}))
    }

    async fn classify_ticket(
        &self,
        request: Request<ClassifyTicketRequest>,
    ) -> Result<Response<Ticket>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let r = request.into_inner();
        let number = number(&r.name, "name")?;
        let mut v = Violations::new();
        if !matches!(TicketType::try_from(r.r#type), Ok(TicketType::Incident | TicketType::ServiceRequest)) {
            v.add("type", "must be INCIDENT or SERVICE_REQUEST");
        }
        validate::text(&mut v, "category", &r.category, MAX_NAME, false);
        if !r.support_group.is_empty() && uuid_of(&r.support_group, GROUP_PREFIX).is_none() {
            v.add("support_group", "must be `supportGroups/{uuid}`");
        }
        v.into_result()?;
        let group = self.existing_group(&ctx, &r.support_group, "support_group").await?;
        let current = self.repo.get_ticket(&ctx, &number).await?;
        if !TicketState::from_i32(current.state).is_some_and(TicketState::is_open) {
            return Err(Error::FailedPrecondition(format!(
                "{} is no longer open and cannot be classified",
                r.name
            ))
            .into());
        }
        let classified = self.classify_as(&ctx, &current, r.r#type, &r.category, group, &r.etag).await?;
        Ok(Response::new(ticket_to_proto(&classified)))
    }

    async fn escalate_ticket(
        &self,
        request: Request<EscalateTicketRequest>,
    ) -> Result<Response<Ticket>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let r = request.into_inner();
        let number = number(&r.name, "name")?;
        let mut v = Violations::new();
        validate::text(&mut v, "reason", &r.reason, MAX_LONG, true);
        if !r.support_group.is_empty() && uuid_of(&r.support_group, GROUP_PREFIX).is_none() {
            v.add("support_group", "must be `supportGroups/{uuid}`");
        }
        v.into_result()?;
        let plan = self.repo.plan_escalation(&ctx, &number, &r.support_group).await?;
        if !plan.ticket.incident.is_empty() {
            let group = crate::convert::group_name(&plan.target.id);
            self.incidents
                .escalate(
                    &ctx,
                    &plan.ticket.incident,
                    &group,
                    plan.target.tier,
                    r.reason.trim(),
                    r.notify_manager,
                )
                .await?;
        }
        let target = crate::convert::group_name(&plan.target.id);
        let escalated =
            self.repo.escalate(&ctx, &number, &r.etag, &target, r.reason.trim(), r.notify_manager).await?;
        Ok(Response::new(ticket_to_proto(&escalated)))
    }

    async fn deescalate_ticket(
        &self,
        request: Request<DeescalateTicketRequest>,
    ) -> Result<Response<Ticket>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let r = request.into_inner();
        let number = number(&r.name, "name")?;
        let mut v = Violations::new();
        validate::text(&mut v, "reason", &r.reason, MAX_LONG, true);
        if let Err(Error::InvalidArgument(fields)) = group_id(&r.support_group, "support_group") {
            for f in fields {
                v.add(f.field, f.description);
            }
        }
        v.into_result()?;
        let handed = self.repo.deescalate(&ctx, &number, &r.etag, &r.support_group, r.reason.trim()).await?;
        Ok(Response::new(ticket_to_proto(&handed)))
    }

    async fn resolve_ticket(
        &self,
        request: Request<ResolveTicketRequest>,
    ) -> Result<Response<Ticket>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let r = request.into_inner();
        let number = number(&r.name, "name")?;
        let mut v = Violations::new();
        validate::text(&mut v, "resolution_notes", &r.resolution_notes, MAX_LONG, true);
        v.into_result()?;
        let notes = r.resolution_notes.trim().to_string();
        let resolved = self
            .repo
            .change_ticket(&ctx, &number, &r.etag, "resolve", &notes, |m, now| {
                if !m.incident.is_empty() {
                    return Err(Error::FailedPrecondition(format!(
                        "{} follows its incident {}; resolve the incident",
                        crate::convert::ticket_name(&m.number),
                        m.incident
                    )));
                }
                resolve(m, &notes, now)
            })
            .await?;
        Ok(Response::new(ticket_to_proto(&resolved)))
    }

    async fn answer_survey(&self, request: Request<AnswerSurveyRequest>) -> Result<Response<Ticket>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let r = request.into_inner();
        let number = number(&r.name, "name")?;
        let mut v = Violations::new();
        if !(1..=5).contains(&r.score) {
            v.add("score", "must be 1-5");
        }
        validate::text(&mut v, "comment", &r.comment, MAX_LONG, false);
        v.into_result()?;
        let principal = ctx.principal.clone();
        let admin = ctx.has_role("admin");
        let answered = self
            .repo
            .change_ticket(&ctx, &number, "", "survey", "", |m, _| {
                if m.requester != principal && !admin {
                    return Err(Error::PermissionDenied("only the requester answers the survey".into()));
                }
                if !matches!(
                    TicketState::from_i32(m.state),
                    Some(TicketState::Resolved | TicketState::Closed)
                ) {
                    return Err(Error::FailedPrecondition(
                        "the survey opens when the ticket is resolved".into(),
                    ));
                }
                if m.survey_score != 0 {
                    return Err(Error::FailedPrecondition("the survey was already answered".into()));
                }
                m.survey_score = r.score;
                m.survey_comment = r.comment.trim().to_string();
                Ok(())
            })
            .await?;
        Ok(Response::new(ticket_to_proto(&answered)))
    }

    async fn list_queue(
        &self,
        request: Request<ListQueueRequest>,
    ) -> Result<Response<ListQueueResponse>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let r = request.into_inner();
        let size = page_size(r.page_size, "page_size")?;
        let queue = Queue::try_from(r.queue).unwrap_or(Queue::Unspecified);
        if queue == Queue::Unspecified {
            return Err(
                Error::invalid("queue", "must be MINE, MY_GROUPS, UNASSIGNED or BREACHING_SOON").into()
            );
        }
        let fingerprint =
            PageTokens::fingerprint(&[&ctx.tenant, &ctx.principal, "queue", queue.as_str_name()]);
        let after = self.page_tokens.decode(&r.page_token, &fingerprint)?;
        let groups = Repository::groups_of(&self.repo.db, &ctx.tenant, &ctx.principal).await?;
        let page = match queue {
            Queue::Mine => self.repo.queue(&ctx, Some(&ctx.principal), &[], false, after, size).await?,
            Queue::MyGroups => self.repo.queue(&ctx, None, &groups, false, after, size).await?,
            Queue::BreachingSoon => self.repo.breaching_soon(&ctx, &groups, after, size).await?,
            _ => self.repo.queue(&ctx, None, &groups, true, after, size).await?,
        };
        let next_page_token = self.page_tokens.next(&fingerprint, page.next_key)?;
        Ok(Response::new(ListQueueResponse {
            tickets: page.items.iter().map(ticket_to_proto).collect(),
            next_page_token,
        }))
    }

    async fn list_ticket_history(
        &self,
        request: Request<ListTicketHistoryRequest>,
    ) -> Result<Response<ListTicketHistoryResponse>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let r = request.into_inner();
        let number = number(&r.parent, "parent")?;
        let size = page_size(r.page_size, "page_size")?;
        // A requester reads the timeline of their own tickets only (NOT_FOUND for others').
        self.visible_ticket(&ctx, &number).await?;
        let fingerprint = PageTokens::fingerprint(&[&ctx.tenant, "ticketHistory", &number]);
        let after = self.page_tokens.decode_number(&r.page_token, &fingerprint)?;
        // Work notes are internal: a requester's timeline leaves them out.
        let work_notes = !requester_only(&ctx);
        let page = self.repo.ticket_history(&ctx, &number, work_notes, after, size).await?;
        let next_page_token = self.page_tokens.next(&fingerprint, page.next_key)?;
        Ok(Response::new(ListTicketHistoryResponse {
            entries: page
                .items
                .into_iter()
                .map(|(change, reason)| TicketHistoryEntry { change: Some(change), reason })
                .collect(),
            next_page_token,
        }))
    }

    async fn add_ticket_note(
        &self,
        request: Request<AddTicketNoteRequest>,
    ) -> Result<Response<TicketNote>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let r = request.into_inner();
        let number = number(&r.parent, "parent")?;
        idempotency::validate_request_id(&r.request_id, "request_id")?;
        let mut v = Violations::new();
        validate::text(&mut v, "text", &r.text, MAX_LONG, true);
        let visibility = match Visibility::from_i32(r.visibility) {
            Some(visibility) => visibility,
            None => {
                v.add("visibility", "must be WORK_NOTE or COMMENT");
                Visibility::WorkNote
            }
        };
        v.into_result()?;
        let requester = requester_only(&ctx);
        if requester && visibility == Visibility::WorkNote {
            return Err(Error::PermissionDenied(
                "work notes are internal to agents; a requester adds comments (visibility COMMENT)".into(),
            )
            .into());
        }
        let hash = idempotency::request_hash(&r);
        let new = NewNote { visibility, text: r.text.trim().to_string(), requester_only: requester };
        let note = self.repo.add_ticket_note(&ctx, &number, new, &r.request_id, &hash).await?;
        Ok(Response::new(note_to_proto(&number, &note)))
    }

    async fn list_ticket_notes(
        &self,
        request: Request<ListTicketNotesRequest>,
    ) -> Result<Response<ListTicketNotesResponse>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let r = request.into_inner();
        let number = number(&r.parent, "parent")?;
        let size = page_size(r.page_size, "page_size")?;
        // A requester reads the comments of their own tickets only (NOT_FOUND for others').
        let requester = requester_only(&ctx);
        let scope = if requester { "comments" } else { "all" };
        let fingerprint = PageTokens::fingerprint(&[&ctx.tenant, "ticketNotes", &number, scope]);
        let after = self.page_tokens.decode(&r.page_token, &fingerprint)?;
        let page = self.repo.ticket_notes(&ctx, &number, requester, after, size).await?;
        let next_page_token = self.page_tokens.next(&fingerprint, page.next_key)?;
        Ok(Response::new(ListTicketNotesResponse {
            notes: page.items.iter().map(|n| note_to_proto(&number, n)).collect(),
            next_page_token,
        }))
    }

    async fn create_support_group(
        &self,
        request: Request<CreateSupportGroupRequest>,
    ) -> Result<Response<SupportGroup>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let request = request.into_inner();
        let Some(g) = request.support_group else {
            return Err(Error::invalid("support_group", "is required").into());
        };
        let mut v = Violations::new();
        check_group(&mut v, &g, &|_| true);
        v.into_result()?;
        if let Some(next) =
            self.existing_group(&ctx, &g.escalation_group, "support_group.escalation_group").await?
            && next.tier <= g.tier
        {
            return Err(
                Error::invalid("support_group.escalation_group", "must be a group of a higher tier").into()
            );
        }
        let shifts: Vec<shifts::Shift> = g.shifts.iter().map(shift_from_proto).collect();
        let model = support_group::Model {
            id: String::new(),
            tenant_id: String::new(),
            display_name: g.display_name.trim().to_string(),
            description: g.description.clone(),
            tier: g.tier,
            members: list_to(&g.members),
            manager: g.manager.clone(),
            assignment_method: if g.assignment_method == 0 {
                AssignmentMethod::RoundRobin as i32
            } else {
                g.assignment_method
            },
            shifts: list_to(&shifts),
            escalation_group: g.escalation_group.clone(),
            time_box_seconds: g.time_box_seconds,
            last_assigned: String::new(),
            version: 0,
            create_time: 0,
            update_time: 0,
            creator: String::new(),
            updater: String::new(),
        };
        let created = self.repo.create_group(&ctx, model).await?;
        Ok(Response::new(group_to_proto(&created)))
    }

    async fn get_support_group(
        &self,
        request: Request<GetSupportGroupRequest>,
    ) -> Result<Response<SupportGroup>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let id = group_id(&request.get_ref().name, "name")?;
        Ok(Response::new(group_to_proto(&self.repo.get_group(&ctx, &id).await?)))
    }

    async fn list_support_groups(
        &self,
        request: Request<ListSupportGroupsRequest>,
    ) -> Result<Response<ListSupportGroupsResponse>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let r = request.into_inner();
        let size = page_size(r.page_size, "page_size")?;
        let parsed = filter::parse(&r.filter)?;
        let order =
            filter::parse_order_by(&r.order_by, GROUP_ORDER_FIELDS)?.unwrap_or(("display_name", false));
        let fingerprint = PageTokens::fingerprint(&[&ctx.tenant, "supportGroups", &r.filter, &r.order_by]);
        let after = self.page_tokens.decode(&r.page_token, &fingerprint)?;
        let page = self.repo.list_groups(&ctx, parsed.as_ref(), order, after, size).await?;
        let next_page_token = self.page_tokens.next(&fingerprint, page.next_key)?;
        Ok(Response::new(ListSupportGroupsResponse {
            support_groups: page.items.iter().map(group_to_proto).collect(),
            next_page_token,
        }))
    }

    async fn update_support_group(
        &self,
        request: Request<UpdateSupportGroupRequest>,
    ) -> Result<Response<SupportGroup>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let request = request.into_inner();
        let Some(g) = request.support_group else {
            return Err(Error::invalid("support_group", "is required").into());
        };
        let id = group_id(&g.name, "support_group.name")?;
        let mask = UpdateMask::parse(request.update_mask.as_ref(), GROUP_UPDATABLE, "update_mask")?;
        let mut v = Violations::new();
        check_group(&mut v, &g, &|p| mask.contains(p) && p != "shifts");
        v.into_result()?;
        if mask.contains("escalation_group") {
            self.existing_group(&ctx, &g.escalation_group, "support_group.escalation_group").await?;
        }
        let mut shift_violations = Violations::new();
        let updated = self
            .repo
            .update_group(&ctx, &id, &g.etag, |m| {
                for path in mask.paths() {
                    match path.as_str() {
                        "display_name" => m.display_name = g.display_name.trim().to_string(),
                        "description" => m.description.clone_from(&g.description),
                        "tier" => m.tier = g.tier,
                        "members" => m.members = list_to(&g.members),
                        "manager" => m.manager.clone_from(&g.manager),
                        "assignment_method" => m.assignment_method = g.assignment_method.max(1),
                        "shifts" => {
                            let members = crate::convert::list_from(&m.members);
                            let list: Vec<shifts::Shift> = g.shifts.iter().map(shift_from_proto).collect();
                            for (i, s) in list.iter().enumerate() {
                                if let Err((part, why)) = shifts::check(s) {
                                    shift_violations.add(format!("support_group.shifts[{i}].{part}"), why);
                                }
                                if !members.contains(&s.member) {
                                    shift_violations.add(
                                        format!("support_group.shifts[{i}].member"),
                                        "must be a member of the group",
                                    );
                                }
                            }
                            m.shifts = list_to(&list);
                        }
                        "escalation_group" => m.escalation_group.clone_from(&g.escalation_group),
                        "time_box_seconds" => m.time_box_seconds = g.time_box_seconds,
                        _ => {}
                    }
                }
            })
            .await;
        shift_violations.into_result()?;
        Ok(Response::new(group_to_proto(&updated?)))
    }

    async fn delete_support_group(
        &self,
        request: Request<DeleteSupportGroupRequest>,
    ) -> Result<Response<DeleteSupportGroupResponse>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let id = group_id(&request.get_ref().name, "name")?;
        self.repo.delete_group(&ctx, &id, &request.get_ref().etag).await?;
        Ok(Response::new(DeleteSupportGroupResponse {}))
    }

    async fn create_assignment_rule(
        &self,
        request: Request<CreateAssignmentRuleRequest>,
    ) -> Result<Response<AssignmentRule>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let Some(rule) = request.into_inner().assignment_rule else {
            return Err(Error::invalid("assignment_rule", "is required").into());
        };
        let mut v = Violations::new();
        validate::text(&mut v, "assignment_rule.category", &rule.category, MAX_NAME, false);
        for (field, value) in
            [("business_service", &rule.business_service), ("configuration_item", &rule.configuration_item)]
        {
            if !value.is_empty() && !ci_name_ok(value) {
                v.add(format!("assignment_rule.{field}"), "must be `configurationItems/{uuid}`");
            }
        }
        if let Err(Error::InvalidArgument(fields)) =
            group_id(&rule.support_group, "assignment_rule.support_group")
        {
            for f in fields {
                v.add(f.field, f.description);
            }
        }
        v.into_result()?;
        Repository::named_group(
            &self.repo.db,
            &ctx.tenant,
            &rule.support_group,
            "assignment_rule.support_group",
        )
        .await?;
        let model = assignment_rule::Model {
            id: String::new(),
            tenant_id: String::new(),
            rule_order: rule.order,
            category: rule.category.clone(),
            business_service: rule.business_service.clone(),
            configuration_item: rule.configuration_item.clone(),
            support_group: rule.support_group.clone(),
            allow_tier_skip: rule.allow_tier_skip,
            create_time: 0,
            creator: String::new(),
        };
        Ok(Response::new(rule_to_proto(&self.repo.create_rule(&ctx, model).await?)))
    }

    async fn list_assignment_rules(
        &self,
        request: Request<ListAssignmentRulesRequest>,
    ) -> Result<Response<ListAssignmentRulesResponse>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let rules = Repository::rules(&self.repo.db, &ctx.tenant).await?;
        Ok(Response::new(ListAssignmentRulesResponse {
            assignment_rules: rules.iter().map(rule_to_proto).collect(),
        }))
    }

    async fn delete_assignment_rule(
        &self,
        request: Request<DeleteAssignmentRuleRequest>,
    ) -> Result<Response<DeleteAssignmentRuleResponse>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let id = uuid_of(&request.get_ref().name, RULE_PREFIX)
            .ok_or_else(|| Error::invalid("name", "must be `assignmentRules/{uuid}`"))?;
        self.repo.delete_rule(&ctx, &id).await?;
        Ok(Response::new(DeleteAssignmentRuleResponse {}))
    }

    async fn create_webhook(
        &self,
        request: Request<CreateWebhookRequest>,
    ) -> Result<Response<Webhook>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let Some(hook) = request.into_inner().webhook else {
            return Err(Error::invalid("webhook", "is required").into());
        };
        let mut v = Violations::new();
        match reqwest::Url::parse(&hook.url) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {}
            _ => v.add("webhook.url", "must be an http:// or https:// URL"),
        }
        if hook.secret.len() < 16 || hook.secret.len() > 256 {
            v.add("webhook.secret", "must be 16-256 characters");
        }
        for (i, kind) in hook.kinds.iter().enumerate() {
            if !templates::TEMPLATES.iter().any(|(k, ..)| k == kind) {
                let known: Vec<&str> = templates::TEMPLATES.iter().map(|(k, ..)| *k).collect();
                v.add(format!("webhook.kinds[{i}]"), format!("unknown kind; kinds: {}", known.join(", ")));
            }
        }
        v.into_result()?;
        let model = webhook::Model {
            id: String::new(),
            tenant_id: String::new(),
            url: hook.url.clone(),
            secret: hook.secret.clone(),
            kinds: list_to(&hook.kinds),
            create_time: 0,
            creator: String::new(),
        };
        Ok(Response::new(webhook_to_proto(&self.repo.create_webhook(&ctx, model).await?)))
    }

    async fn list_webhooks(
        &self,
        request: Request<ListWebhooksRequest>,
    ) -> Result<Response<ListWebhooksResponse>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let hooks = Repository::webhooks(&self.repo.db, &ctx.tenant).await?;
        Ok(Response::new(ListWebhooksResponse { webhooks: hooks.iter().map(webhook_to_proto).collect() }))
    }

    async fn delete_webhook(
        &self,
        request: Request<DeleteWebhookRequest>,
    ) -> Result<Response<DeleteWebhookResponse>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let id = uuid_of(&request.get_ref().name, WEBHOOK_PREFIX)
            .ok_or_else(|| Error::invalid("name", "must be `webhooks/{uuid}`"))?;
        self.repo.delete_webhook(&ctx, &id).await?;
        Ok(Response::new(DeleteWebhookResponse {}))
    }

    async fn list_notifications(
        &self,
        request: Request<ListNotificationsRequest>,
    ) -> Result<Response<ListNotificationsResponse>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let r = request.into_inner();
        let size = page_size(r.page_size, "page_size")?;
        if !r.ticket.is_empty() {
            number(&r.ticket, "ticket")?;
        }
        let fingerprint = PageTokens::fingerprint(&[&ctx.tenant, "notifications", &r.ticket]);
        let after = self.page_tokens.decode(&r.page_token, &fingerprint)?;
        let page = self.repo.notifications(&ctx, &r.ticket, after, size).await?;
        let next_page_token = self.page_tokens.next(&fingerprint, page.next_key)?;
        Ok(Response::new(ListNotificationsResponse { notifications: page.items, next_page_token }))
    }

    async fn get_service_desk_report(
        &self,
        request: Request<GetServiceDeskReportRequest>,
    ) -> Result<Response<ServiceDeskReport>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let days = request.get_ref().window_days;
        if !(0..=366).contains(&days) {
            return Err(Error::invalid("window_days", "must be 1-366 (0 = 30)").into());
        }
        let days = if days == 0 { 30 } else { i64::from(days) };
        let since = itsm_runtime::db::now_micros() - days * 86_400_000_000;
        let report = self.repo.report(&ctx, since).await?;
        Ok(Response::new(ServiceDeskReport {
            tickets: report.tickets,
            resolved: report.resolved,
            first_contact_resolved: report.first_contact_resolved,
            first_contact_resolution_rate: report.first_contact_resolution_rate,
            tiers: report
                .tiers
                .into_iter()
                .map(|t| TierFigures {
                    tier: t.tier,
                    tickets: t.tickets,
                    escalated: t.escalated,
                    escalation_rate: t.escalation_rate,
                    mean_time_to_respond_seconds: t.mean_time_to_respond_seconds,
                    mean_time_to_resolve_seconds: t.mean_time_to_resolve_seconds,
                    resolved: t.resolved,
                })
                .collect(),
            mean_survey_score: report.mean_survey_score,
            surveys: report.surveys,
        }))
    }

    async fn create_article(
        &self,
        request: Request<CreateArticleRequest>,
    ) -> Result<Response<Article>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let request = request.into_inner();
        let Some(a) = request.article.as_ref() else {
            return Err(Error::invalid("article", "is required").into());
        };
        idempotency::validate_request_id(&request.request_id, "request_id")?;
        let mut v = Violations::new();
        check_article(&mut v, a, &|_| true);
        v.into_result()?;
        let model = article::Model {
            id: String::new(),
            tenant_id: String::new(),
            number: String::new(),
            title: a.title.trim().to_string(),
            body: a.body.clone(),
            category: a.category.clone(),
            keywords: keywords_to(&a.keywords),
            state: 0,
            revision: 0,
            solved_count: 0,
            link_count: 0,
            version: 0,
            create_time: 0,
            update_time: 0,
            creator: String::new(),
            updater: String::new(),
        };
        let hash = idempotency::request_hash(&request);
        let created = self.repo.create_article(&ctx, model, &request.request_id, &hash).await?;
        Ok(Response::new(article_to_proto(&created)))
    }

    async fn get_article(&self, request: Request<GetArticleRequest>) -> Result<Response<Article>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let number = article_number(&request.get_ref().name, "name")?;
        let found = self.repo.get_article(&ctx, &number).await?;
        if requester_only(&ctx) && found.state != knowledge::PUBLISHED {
            return Err(Error::NotFound(request.get_ref().name.clone()).into());
        }
        Ok(Response::new(article_to_proto(&found)))
    }

    async fn list_articles(
        &self,
        request: Request<ListArticlesRequest>,
    ) -> Result<Response<ListArticlesResponse>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let r = request.into_inner();
        let size = page_size(r.page_size, "page_size")?;
        if r.query.len() > 1000 {
            return Err(Error::invalid("query", "must be at most 1000 bytes").into());
        }
        let words = itsm_runtime::search::query_words(&r.query);
        let parsed = filter::parse(&r.filter)?;
        let published_only = requester_only(&ctx);
        let fingerprint = PageTokens::fingerprint(&[
            &ctx.tenant,
            "articles",
            &r.filter,
            &words.join(" "),
            if published_only { "published" } else { "all" },
        ]);
        let after = self.page_tokens.decode(&r.page_token, &fingerprint)?;
        let page =
            self.repo.list_articles(&ctx, parsed.as_ref(), &words, published_only, after, size).await?;
        let next_page_token = self.page_tokens.next(&fingerprint, page.next_key)?;
        Ok(Response::new(ListArticlesResponse {
            articles: page.items.iter().map(article_to_proto).collect(),
            next_page_token,
        }))
    }

    async fn update_article(
        &self,
        request: Request<UpdateArticleRequest>,
    ) -> Result<Response<Article>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let request = request.into_inner();
        let Some(a) = request.article else {
            return Err(Error::invalid("article", "is required").into());
        };
        let number = article_number(&a.name, "article.name")?;
        let mask = UpdateMask::parse(request.update_mask.as_ref(), ARTICLE_UPDATABLE, "update_mask")?;
        let mut v = Violations::new();
        check_article(&mut v, &a, &|p| mask.contains(p));
        if mask.contains("state") && !(1..=4).contains(&a.state) {
            v.add("article.state", "must be DRAFT, REVIEW, PUBLISHED or RETIRED");
        }
        v.into_result()?;
        let updated = self
            .repo
            .change_article(&ctx, &number, &a.etag, |m| {
                let content = mask.paths().iter().any(|p| p != "state");
                if content && !knowledge::editable(m.state) {
                    return Err(Error::FailedPrecondition(format!(
                        "{} is {}; move it to DRAFT to revise it",
                        a.name,
                        knowledge::name(m.state)
                    )));
                }
                for path in mask.paths() {
                    match path.as_str() {
                        "title" => m.title = a.title.trim().to_string(),
                        "body" => m.body.clone_from(&a.body),
                        "category" => m.category.clone_from(&a.category),
                        "keywords" => m.keywords = keywords_to(&a.keywords),
                        _ => {}
                    }
                }
                if mask.contains("state") {
                    knowledge::check(m.state, a.state).map_err(Error::FailedPrecondition)?;
                    m.state = a.state;
                }
                Ok(())
            })
            .await?;
        Ok(Response::new(article_to_proto(&updated)))
    }

    async fn list_article_revisions(
        &self,
        request: Request<ListArticleRevisionsRequest>,
    ) -> Result<Response<ListArticleRevisionsResponse>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let number = article_number(&request.get_ref().parent, "parent")?;
        let revisions = self.repo.revisions(&ctx, &number).await?;
        Ok(Response::new(ListArticleRevisionsResponse {
            revisions: revisions
                .into_iter()
                .map(|(revision, title, body, keywords, author, at)| ArticleRevision {
                    revision,
                    title,
                    body,
                    keywords,
                    author,
                    create_time: crate::convert::time(at),
                })
                .collect(),
        }))
    }

    async fn link_article(&self, request: Request<LinkArticleRequest>) -> Result<Response<Article>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let r = request.into_inner();
        let number = article_number(&r.name, "name")?;
        let ticket = self::number(&r.ticket, "ticket")?;
        self.repo
            .get_ticket(&ctx, &ticket)
            .await
            .map_err(|_| Error::invalid("ticket", format!("{} does not exist", r.ticket)))?;
        let linked = self.repo.link_article(&ctx, &number, &r.ticket, r.solved).await?;
        Ok(Response::new(article_to_proto(&linked)))
    }

    async fn suggest_solutions(
        &self,
        request: Request<SuggestSolutionsRequest>,
    ) -> Result<Response<SuggestSolutionsResponse>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let number = self::number(&request.get_ref().ticket, "ticket")?;
        let ticket = self.repo.get_ticket(&ctx, &number).await?;
        let words =
            itsm_runtime::search::query_words(&format!("{} {}", ticket.short_description, ticket.category));
        let articles = self.repo.suggest_articles(&ctx, &words, 10).await?;
        let cis = crate::convert::list_from(&ticket.configuration_items);
        let mut unavailable = Vec::new();
        let known_errors = match self.incidents.known_errors(&ctx, &cis, &ticket.short_description).await {
            Ok(found) => found,
            Err(err) => {
                tracing::info!(error = %err, "known errors not available for suggestions");
                unavailable.push("known_errors".to_string());
                Vec::new()
            }
        };
        Ok(Response::new(SuggestSolutionsResponse {
            articles: articles.iter().map(article_to_proto).collect(),
            known_errors,
            unavailable,
        }))
    }

    async fn create_catalog_item(
        &self,
        request: Request<CreateCatalogItemRequest>,
    ) -> Result<Response<CatalogItem>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let Some(item) = request.into_inner().catalog_item else {
            return Err(Error::invalid("catalog_item", "is required").into());
        };
        let mut v = Violations::new();
        validate::text(&mut v, "catalog_item.display_name", &item.display_name, MAX_SHORT, true);
        validate::text(&mut v, "catalog_item.description", &item.description, MAX_LONG, false);
        validate::text(&mut v, "catalog_item.category", &item.category, MAX_NAME, false);
        let variables: Vec<catalog::Variable> = item.variables.iter().map(variable_from_proto).collect();
        for (field, problem) in catalog::check_definition(&variables) {
            v.add(format!("catalog_item.{field}"), problem);
        }
        if !(0..=3).contains(&item.approval_policy) {
            v.add("catalog_item.approval_policy", "must be NONE, MANAGER or MANAGER_ABOVE_THRESHOLD");
        }
        let cost = amount(&mut v, "catalog_item.cost", item.cost.as_ref());
        let threshold = amount(&mut v, "catalog_item.cost_threshold", item.cost_threshold.as_ref());
        if item.approval_policy == catalog::APPROVAL_ABOVE_THRESHOLD && item.cost_threshold.is_none() {
            v.add("catalog_item.cost_threshold", "is required with MANAGER_ABOVE_THRESHOLD");
        }
        for (i, task) in item.tasks.iter().enumerate() {
            validate::text(&mut v, &format!("catalog_item.tasks[{i}].title"), &task.title, MAX_SHORT, true);
            validate::support_group(
                &mut v,
                &format!("catalog_item.tasks[{i}].support_group"),
                &task.support_group,
                true,
            );
        }
        v.into_result()?;
        for (i, task) in item.tasks.iter().enumerate() {
            Repository::named_group(
                &self.repo.db,
                &ctx.tenant,
                &task.support_group,
                &format!("catalog_item.tasks[{i}].support_group"),
            )
            .await?;
        }
        let tasks: Vec<(String, String)> =
            item.tasks.iter().map(|t| (t.title.trim().to_string(), t.support_group.clone())).collect();
        let model = catalog_item::Model {
            id: String::new(),
            tenant_id: String::new(),
            display_name: item.display_name.trim().to_string(),
            description: item.description.clone(),
            category: item.category.clone(),
            variables: list_to(&variables),
            approval_policy: if item.approval_policy == 0 {
                catalog::APPROVAL_NONE
            } else {
                item.approval_policy
            },
            cost: serde_json::to_string(&cost).unwrap_or_default(),
            cost_threshold: serde_json::to_string(&threshold).unwrap_or_default(),
            tasks: list_to(&tasks),
            create_time: 0,
            creator: String::new(),
        };
        let created = self.repo.create_catalog_item(&ctx, model).await?;
        Ok(Response::new(catalog_item_to_proto(&created)))
    }

    async fn get_catalog_item(
        &self,
        request: Request<GetCatalogItemRequest>,
    ) -> Result<Response<CatalogItem>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let id = uuid_of(&request.get_ref().name, CATALOG_PREFIX)
            .ok_or_else(|| Error::invalid("name", "must be `catalogItems/{uuid}`"))?;
        let item = Repository::find_catalog_item(&self.repo.db, &ctx.tenant, &id)
            .await?
            .ok_or_else(|| Error::NotFound(request.get_ref().name.clone()))?;
        Ok(Response::new(catalog_item_to_proto(&item)))
    }

    async fn list_catalog_items(
        &self,
        request: Request<ListCatalogItemsRequest>,
    ) -> Result<Response<ListCatalogItemsResponse>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let r = request.into_inner();
        let size = page_size(r.page_size, "page_size")?;
        let fingerprint = PageTokens::fingerprint(&[&ctx.tenant, "catalogItems"]);
        let after = self.page_tokens.decode(&r.page_token, &fingerprint)?;
        let page = self.repo.list_catalog_items(&ctx, after, size).await?;
        let next_page_token = self.page_tokens.next(&fingerprint, page.next_key)?;
        Ok(Response::new(ListCatalogItemsResponse {
            catalog_items: page.items.iter().map(catalog_item_to_proto).collect(),
            next_page_token,
        }))
    }

    async fn submit_request(
        &self,
        request: Request<SubmitRequestRequest>,
    ) -> Result<Response<Ticket>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let request = request.into_inner();
        idempotency::validate_request_id(&request.request_id, "request_id")?;
        let id = uuid_of(&request.catalog_item, CATALOG_PREFIX)
            .ok_or_else(|| Error::invalid("catalog_item", "must be `catalogItems/{uuid}`"))?;
        let item =
            Repository::find_catalog_item(&self.repo.db, &ctx.tenant, &id).await?.ok_or_else(|| {
                Error::invalid("catalog_item", format!("{} does not exist", request.catalog_item))
            })?;
        let variables: Vec<catalog::Variable> = serde_json::from_str(&item.variables).unwrap_or_default();
        let answers: std::collections::BTreeMap<String, String> =
            request.variables.iter().map(|(k, v)| (k.clone(), v.trim().to_string())).collect();
        let mut v = Violations::new();
        for (key, problem) in catalog::check_answers(&variables, &answers) {
            v.add(format!("variables[{key}]"), problem);
        }
        let cost: catalog::Amount = serde_json::from_str(&item.cost).unwrap_or_default();
        let threshold: catalog::Amount = serde_json::from_str(&item.cost_threshold).unwrap_or_default();
        let approval = catalog::needs_approval(item.approval_policy, &cost, &threshold);
        validate::text(&mut v, "manager", &request.manager, MAX_NAME, approval);
        if approval && request.manager.trim() == ctx.principal {
            v.add("manager", "must be someone else than the requester");
        }
        v.into_result()?;
        let tasks: Vec<(String, String)> = serde_json::from_str(&item.tasks).unwrap_or_default();
        let new = NewTicket {
            channel: Channel::Portal as i32,
            requester: ctx.principal.clone(),
            category: item.category.clone(),
            short_description: item.display_name.clone(),
            description: item.description.clone(),
            ticket_type: TicketType::ServiceRequest as i32,
            catalog_item: request.catalog_item.clone(),
            variables: answers,
            request_state: if approval {
                crate::repo::catalog::AWAITING_APPROVAL
            } else {
                crate::repo::catalog::IN_FULFILMENT
            },
            approver: if approval { request.manager.trim().to_string() } else { String::new() },
            tasks,
            ..Default::default()
        };
        let hash = idempotency::request_hash(&request);
        let created = self.repo.create_ticket(&ctx, new, &request.request_id, &hash).await?;
        Ok(Response::new(ticket_to_proto(&created)))
    }

    async fn decide_request(
        &self,
        request: Request<DecideRequestRequest>,
    ) -> Result<Response<Ticket>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let r = request.into_inner();
        let number = number(&r.name, "name")?;
        let mut v = Violations::new();
        validate::text(&mut v, "comment", &r.comment, MAX_LONG, !r.approve);
        v.into_result()?;
        let current = self.repo.get_ticket(&ctx, &number).await?;
        let tasks: Vec<(String, String)> = match uuid_of(&current.catalog_item, CATALOG_PREFIX) {
            Some(id) => match Repository::find_catalog_item(&self.repo.db, &ctx.tenant, &id).await? {
                Some(item) => serde_json::from_str(&item.tasks).unwrap_or_default(),
                None => Vec::new(),
            },
            None => Vec::new(),
        };
        let decided = self.repo.decide_request(&ctx, &number, r.approve, r.comment.trim(), tasks).await?;
        Ok(Response::new(ticket_to_proto(&decided)))
    }

    async fn list_fulfilment_tasks(
        &self,
        request: Request<ListFulfilmentTasksRequest>,
    ) -> Result<Response<ListFulfilmentTasksResponse>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let number = number(&request.get_ref().parent, "parent")?;
        let current = self.repo.get_ticket(&ctx, &number).await?;
        let tasks = Repository::tasks_of(&self.repo.db, &current.id).await?;
        Ok(Response::new(ListFulfilmentTasksResponse {
            tasks: tasks.iter().map(|t| task_to_proto(&number, t)).collect(),
        }))
    }

    async fn complete_fulfilment_task(
        &self,
        request: Request<CompleteFulfilmentTaskRequest>,
    ) -> Result<Response<FulfilmentTask>, Status> {
        let ctx = CallContext::from_request(&request)?;
        let name = &request.get_ref().name;
        let bad = || Error::invalid("name", "must be `tickets/REQ0000123/tasks/{uuid}`");
        let (ticket, task) = name.split_once("/tasks/").ok_or_else(bad)?;
        let number = number(ticket, "name")?;
        uuid::Uuid::parse_str(task).map_err(|_| bad())?;
        let done = self.repo.complete_task(&ctx, &number, task).await?;
        Ok(Response::new(task_to_proto(&number, &done)))
    }
}

pub const ARTICLE_UPDATABLE: &[&str] = &["title", "body", "category", "keywords", "state"];

fn article_number(name: &str, field: &str) -> Result<String, Error> {
    if name.is_empty() {
        return Err(Error::invalid(field, "is required"));
    }
    name.strip_prefix(ARTICLE_PREFIX)
        .filter(|n| is_number(n, ARTICLE_NUMBER))
        .map(str::to_string)
        .ok_or_else(|| Error::invalid(field, "must be `articles/KB0000123`"))
}

fn check_article(v: &mut Violations, a: &Article, has: &dyn Fn(&str) -> bool) {
    if has("title") {
        validate::text(v, "article.title", &a.title, MAX_SHORT, true);
    }
    if has("body") {
        validate::text(v, "article.body", &a.body, 256 * 1024, true);
    }
    validate::text(v, "article.category", &a.category, MAX_NAME, false);
    if has("keywords") {
        if a.keywords.len() > 50 {
            v.add("article.keywords", "at most 50 keywords");
        }
        for (i, k) in a.keywords.iter().enumerate() {
            if k.trim().is_empty() || k.len() > 100 {
                v.add(format!("article.keywords[{i}]"), "must be 1-100 characters");
            }
        }
    }
}

fn variable_from_proto(v: &CatalogVariable) -> catalog::Variable {
    catalog::Variable {
        id: v.id.clone(),
        label: if v.label.is_empty() { v.id.clone() } else { v.label.clone() },
        kind: v.r#type,
        required: v.required,
        options: v.options.clone(),
        min: v.min,
        max: v.max,
        max_length: v.max_length,
    }
}

/// Money as stored (nanos of its currency); problems become violations of `field`.
fn amount(v: &mut Violations, field: &str, money: Option<&itsm_proto::common::Money>) -> catalog::Amount {
    let Some(m) = money else { return catalog::Amount::default() };
    if m.currency_code.len() != 3 || !m.currency_code.bytes().all(|b| b.is_ascii_uppercase()) {
        v.add(format!("{field}.currency_code"), "must be an ISO 4217 code, e.g. EUR");
    }
    if !(-999_999_999..=999_999_999).contains(&m.nanos)
        || (m.units > 0 && m.nanos < 0)
        || (m.units < 0 && m.nanos > 0)
    {
        v.add(format!("{field}.nanos"), "must be -999999999..999999999 with the sign of units");
    }
    catalog::Amount {
        currency: m.currency_code.clone(),
        nanos: i128::from(m.units) * 1_000_000_000 + i128::from(m.nanos),
    }
}

fn money(a: &catalog::Amount) -> Option<itsm_proto::common::Money> {
    (!a.currency.is_empty()).then(|| itsm_proto::common::Money {
        currency_code: a.currency.clone(),
        units: i64::try_from(a.nanos / 1_000_000_000).unwrap_or(i64::MAX),
        nanos: i32::try_from(a.nanos % 1_000_000_000).unwrap_or(0),
    })
}

fn catalog_item_to_proto(m: &catalog_item::Model) -> CatalogItem {
    let variables: Vec<catalog::Variable> = serde_json::from_str(&m.variables).unwrap_or_default();
    let tasks: Vec<(String, String)> = serde_json::from_str(&m.tasks).unwrap_or_default();
    CatalogItem {
        name: format!("{CATALOG_PREFIX}{}", m.id),
        display_name: m.display_name.clone(),
        description: m.description.clone(),
        category: m.category.clone(),
        variables: variables
            .into_iter()
            .map(|v| CatalogVariable {
                id: v.id,
                label: v.label,
                r#type: v.kind,
                required: v.required,
                options: v.options,
                min: v.min,
                max: v.max,
                max_length: v.max_length,
            })
            .collect(),
        approval_policy: m.approval_policy,
        cost: money(&serde_json::from_str(&m.cost).unwrap_or_default()),
        cost_threshold: money(&serde_json::from_str(&m.cost_threshold).unwrap_or_default()),
        tasks: tasks
            .into_iter()
            .map(|(title, support_group)| FulfilmentTaskTemplate { title, support_group })
            .collect(),
        audit: Some(itsm_proto::common::AuditInfo {
            create_time: crate::convert::time(m.create_time),
            update_time: crate::convert::time(m.create_time),
            creator: m.creator.clone(),
            updater: m.creator.clone(),
        }),
    }
}

fn task_to_proto(number: &str, t: &crate::entity::fulfilment_task::Model) -> FulfilmentTask {
    FulfilmentTask {
        name: format!("{}/tasks/{}", crate::convert::ticket_name(number), t.id),
        title: t.title.clone(),
        support_group: t.support_group.clone(),
        done: t.done,
        completed_by: t.completed_by.clone(),
        complete_time: crate::convert::time(t.complete_time),
    }
}
