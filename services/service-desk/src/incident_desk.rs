//! The service desk's side of incident management: raising the incident behind a ticket,
//! escalating it with the ticket, and following the incident's feed so the ticket (and its
//! requester) learn when it is resolved or closed.

use std::time::Duration;

use prost::Message;
use sea_orm::DatabaseTransaction;
use tonic::transport::Channel;

use itsm_proto::events::Event;
use itsm_proto::incident::incident_service_client::IncidentServiceClient;
use itsm_proto::incident::{
    CreateIncidentRequest, EscalateIncidentRequest, EscalationKind, GetIncidentRequest, Incident,
    IncidentChanged, IncidentState,
};
use itsm_runtime::consumer::EventHandler;
use itsm_runtime::{CallContext, Error, Settings};

use crate::domain::lifecycle::TicketState;
use crate::entity::ticket;
use crate::repo::Repository;
use crate::repo::tickets::{resolve, transition};

const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// The consumer's name, which keys its cursor.
pub const CONSUMER: &str = "service-desk/incident-events";

/// Calls the incident service as the caller.
#[derive(Clone)]
pub struct IncidentDesk {
    channel: Option<Channel>,
    internal_token: String,
}

fn from_status(status: &tonic::Status) -> Error {
    let message = format!("the incident service: {}", status.message());
    match status.code() {
        tonic::Code::InvalidArgument => Error::FailedPrecondition(message),
        tonic::Code::FailedPrecondition => Error::FailedPrecondition(message),
        tonic::Code::NotFound => Error::FailedPrecondition(message),
        tonic::Code::PermissionDenied => Error::PermissionDenied(message),
        // Its own dependencies (the CMDB) being down reaches the caller as what it is.
        code => Error::Unavailable(format!(
            "the incident service could not answer ({code:?}): {}",
            status.message()
        )),
    }
}

impl IncidentDesk {
    pub fn from_settings(settings: &Settings) -> Result<Self, Error> {
        let channel = itsm_runtime::upstream::channel(&settings.upstream.incident, "upstream.incident")?;
        Ok(Self { channel, internal_token: settings.auth.internal_token.clone() })
    }

    pub fn channel(&self) -> Option<Channel> {
        self.channel.clone()
    }

    fn client(&self) -> Result<IncidentServiceClient<Channel>, Error> {
        match &self.channel {
            Some(channel) => Ok(IncidentServiceClient::new(channel.clone())),
            None => {
                Err(Error::Unavailable("the incident service is not configured (upstream.incident)".into()))
            }
        }
    }

    fn request<T>(&self, ctx: &CallContext, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.set_timeout(CALL_TIMEOUT);
        ctx.apply(request.metadata_mut(), &self.internal_token);
        request
    }

    /// Raises the incident for a ticket; the ticket's id is the request_id, so a retried
    /// classification finds the incident it made the first time.
    pub async fn raise(
        &self,
        ctx: &CallContext,
        t: &ticket::Model,
        category: &str,
    ) -> Result<Incident, Error> {
        let incident = Incident {
            caller: t.requester.clone(),
            service_desk_ticket: crate::convert::ticket_name(&t.number),
            short_description: t.short_description.clone(),
            description: t.description.clone(),
            category: category.to_string(),
            business_service: t.business_service.clone(),
            configuration_items: crate::convert::list_from(&t.configuration_items),
            impact: t.impact,
            urgency: t.urgency,
            assignment_group: t.support_group.clone(),
            assignee: if t.support_group.is_empty() { String::new() } else { t.assignee.clone() },
            ..Default::default()
        };
        let request =
            self.request(ctx, CreateIncidentRequest { incident: Some(incident), request_id: t.id.clone() });
        let created = self.client()?.create_incident(request).await.map_err(|s| from_status(&s))?;
        Ok(created.into_inner())
    }

    /// Escalates the linked incident to `group` at `tier` (functional), unless it is there
    /// already (a retried ticket escalation); flags its manager too when asked.
    pub async fn escalate(
        &self,
        ctx: &CallContext,
        incident: &str,
        group: &str,
        tier: i32,
        reason: &str,
        notify_manager: bool,
    ) -> Result<(), Error> {
        let mut client = self.client()?;
        let current = client
            .get_incident(self.request(ctx, GetIncidentRequest { name: incident.to_string() }))
            .await
            .map_err(|s| from_status(&s))?
            .into_inner();
        let open = !matches!(
            IncidentState::try_from(current.state),
            Ok(IncidentState::Resolved | IncidentState::Closed | IncidentState::Cancelled)
        );
        if open && (current.support_tier < tier || current.assignment_group != group) {
            let escalate = EscalateIncidentRequest {
                name: incident.to_string(),
                kind: EscalationKind::Functional as i32,
                assignment_group: group.to_string(),
                support_tier: tier.max(current.support_tier + 1).min(3),
                reason: reason.to_string(),
                etag: String::new(),
            };
            if current.support_tier < tier {
                client.escalate_incident(self.request(ctx, escalate)).await.map_err(|s| from_status(&s))?;
            }
        }
        if open && notify_manager && !current.manager_escalated {
            let flag = EscalateIncidentRequest {
                name: incident.to_string(),
                kind: EscalationKind::Hierarchical as i32,
                reason: reason.to_string(),
                ..Default::default()
            };
            client.escalate_incident(self.request(ctx, flag)).await.map_err(|s| from_status(&s))?;
        }
        Ok(())
    }
}

/// Follows the incident feed: the ticket behind an incident is resolved, closed or reopened
/// with it, and takes its priority.
pub struct LinkedIncidents {
    pub repo: Repository,
}

#[tonic::async_trait]
impl EventHandler for LinkedIncidents {
    async fn handle(&self, txn: &DatabaseTransaction, event: &Event) -> Result<(), Error> {
        let Some(payload) = &event.payload else { return Ok(()) };
        let Ok(changed) = IncidentChanged::decode(payload.value.as_slice()) else { return Ok(()) };
        let Some(incident) = changed.incident else { return Ok(()) };
        let Some(current) = Repository::ticket_of_incident(txn, &event.tenant, &incident.name).await? else {
            return Ok(());
        };
        let ctx =
            CallContext { tenant: event.tenant.clone(), principal: event.actor.clone(), roles: Vec::new() };
        let now = itsm_runtime::history::change_time(current.update_time);
        let mut after = current.clone();
        after.priority = incident.priority;
        let state = TicketState::from_i32(current.state);
        let (action, reason) = match IncidentState::try_from(incident.state) {
            Ok(IncidentState::Resolved) if state.is_some_and(TicketState::is_open) => {
                resolve(&mut after, &incident.resolution_notes, now)?;
                ("resolve", format!("{} was resolved", incident.name))
            }
            Ok(IncidentState::Closed)
                if state != Some(TicketState::Closed) && state != Some(TicketState::Cancelled) =>
            {
                if state.is_some_and(TicketState::is_open) {
                    resolve(&mut after, &incident.resolution_notes, now)?;
                }
                transition(&mut after, TicketState::Closed)?;
                after.close_time = now;
                ("close", format!("{} was closed", incident.name))
            }
            Ok(IncidentState::InProgress) if state == Some(TicketState::Resolved) => {
                transition(&mut after, TicketState::InProgress)?;
                after.resolve_time = 0;
                ("reopen", format!("{} was reopened", incident.name))
            }
            _ => ("update", String::new()),
        };
        let stored = self.repo.store_ticket(txn, &ctx, &current, after, action, &reason, now).await?;
        if action == "resolve" || (action == "close" && current.state != TicketState::Resolved as i32) {
            Repository::notify(txn, "ticket_resolved", &stored.requester, &stored, &[]).await?;
        }
        Ok(())
    }
}

impl IncidentDesk {
    /// Published known errors on any of `cis`, or matching every word of `query`; newest first.
    pub async fn known_errors(
        &self,
        ctx: &CallContext,
        cis: &[String],
        query: &str,
    ) -> Result<Vec<itsm_proto::incident::KnownError>, Error> {
        use itsm_proto::incident::ListKnownErrorsRequest;
        use itsm_proto::incident::problem_service_client::ProblemServiceClient;
        let Some(channel) = &self.channel else {
            return Err(Error::Unavailable(
                "the incident service is not configured (upstream.incident)".into(),
            ));
        };
        let mut client = ProblemServiceClient::new(channel.clone());
        let mut found: Vec<itsm_proto::incident::KnownError> = Vec::new();
        let mut asks: Vec<ListKnownErrorsRequest> = cis
            .iter()
            .take(10)
            .map(|ci| ListKnownErrorsRequest {
                filter: format!("status = PUBLISHED AND configuration_items = \"{ci}\""),
                page_size: 10,
                ..Default::default()
            })
            .collect();
        if !query.trim().is_empty() {
            asks.push(ListKnownErrorsRequest {
                filter: "status = PUBLISHED".into(),
                query: query.to_string(),
                page_size: 10,
                ..Default::default()
            });
        }
        for ask in asks {
            let listed =
                client.list_known_errors(self.request(ctx, ask)).await.map_err(|s| from_status(&s))?;
            for ke in listed.into_inner().known_errors {
                if !found.iter().any(|k| k.name == ke.name) {
                    found.push(ke);
                }
            }
        }
        Ok(found)
    }
}
