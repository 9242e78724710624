//! The agent workspace: the work queues and a ticket with its timeline (which holds its notes),
//! work notes and comments on the ticket, the linked incident's work notes, escalation to the
//! next tier, resolution and linking knowledge articles. Each action is a form posted with the
//! session's CSRF token, then a redirect back to the ticket (post/redirect/get); a refused action
//! shows the page again with the errors next to the form and nothing written.

use std::collections::HashMap;

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use itsm_proto::incident::ListWorkNotesRequest;
use itsm_proto::servicedesk::{
    AddTicketNoteRequest, EscalateTicketRequest, GetTicketRequest, LinkArticleRequest, ListQueueRequest,
    ListSupportGroupsRequest, ListTicketHistoryRequest, Queue, ResolveTicketRequest, SuggestSolutionsRequest,
    TicketNoteVisibility, TicketState,
};

use crate::AppState;
use crate::calls::{authed, form_errors, page_error};
use crate::forms::{FieldKind, FieldView, FormErrors, FormView, request_id_of};
use crate::listing::{PageQuery, Pager, pager};
use crate::pages::{Layout, PageError, Section, render};
use crate::portal::{ArticleView, DoneQuery, notice};
use crate::session::Session;
use crate::views::{TicketView, TimeView, TimelineEntry, is_record_number, number_of, time_view, timeline};

/// Rows per page of a queue.
const PAGE_SIZE: i32 = 25;

/// The queues: address name, API queue, tab label.
const VIEWS: [(&str, Queue, &str); 4] = [
    ("mine", Queue::Mine, "Assigned to me"),
    ("group", Queue::MyGroups, "My groups"),
    ("unassigned", Queue::Unassigned, "Unassigned"),
    ("breaching", Queue::BreachingSoon, "Breaching soon"),
];

/// Support group resource names → display names, for showing groups by name. A failure leaves
/// the map empty (the pages then show resource names): it is decoration, not the page's point.
async fn group_names(state: &AppState, session: &Session) -> HashMap<String, String> {
    let request = ListSupportGroupsRequest { page_size: 1000, ..Default::default() };
    match state.gateway.desk().list_support_groups(authed(&session.data, request)).await {
        Ok(response) => {
            response.into_inner().support_groups.into_iter().map(|g| (g.name, g.display_name)).collect()
        }
        Err(status) => {
            tracing::debug!(code = ?status.code(), "support group names not available");
            HashMap::new()
        }
    }
}

// ---- queues --------------------------------------------------------------------------------------

/// `/agent/queue?view=mine|group|unassigned|breaching`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct QueueQuery {
    pub view: String,
    pub page: String,
    pub trail: String,
}

/// A tab of the queue page.
pub struct QueueTab {
    pub href: String,
    pub label: &'static str,
    pub current: bool,
}

#[derive(Template)]
#[template(path = "agent/queue.html")]
pub struct QueuePage {
    layout: Layout,
    heading: &'static str,
    tabs: Vec<QueueTab>,
    tickets: Vec<TicketView>,
    pager: Pager,
}

/// GET `/agent/queue`: one of the caller's queues, highest priority and oldest first.
pub async fn queue(
    State(state): State<AppState>,
    session: Session,
    Query(query): Query<QueueQuery>,
) -> Result<Response, PageError> {
    let (view, queue, heading) =
        VIEWS.iter().copied().find(|(name, _, _)| *name == query.view).unwrap_or(VIEWS[0]);
    let page = PageQuery { page: query.page, trail: query.trail };
    let request =
        ListQueueRequest { queue: queue as i32, page_size: PAGE_SIZE, page_token: page.page.clone() };
    let listed = state
        .gateway
        .desk()
        .list_queue(authed(&session.data, request))
        .await
        .map_err(|status| page_error(&status, &session.here))?
        .into_inner();
    let groups = group_names(&state, &session).await;
    let tabs = VIEWS
        .iter()
        .map(|(name, _, label)| QueueTab {
            href: format!("/agent/queue?view={name}"),
            label,
            current: *name == view,
        })
        .collect();
    let page_view = QueuePage {
        layout: Layout::new(heading, Some(&session.data), Section::Agent),
        heading,
        tabs,
        tickets: listed.tickets.iter().map(|t| TicketView::new(t, &groups)).collect(),
        pager: pager(&format!("/agent/queue?view={view}"), &page, &listed.next_page_token),
    };
    Ok(render(StatusCode::OK, &page_view))
}

// ---- one ticket ------------------------------------------------------------------------------

/// A work note of the ticket's incident as the page shows it.
pub struct NoteView {
    pub author: String,
    pub text: String,
    pub when: Option<TimeView>,
}

/// A known error suggested for a ticket.
pub struct KnownErrorView {
    pub number: String,
    pub summary: String,
    pub workaround: String,
}

/// The posted note form: a work note, or a comment to the requester when
/// `visible_to_requester` is "true".
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct NoteForm {
    pub text: String,
    pub visible_to_requester: String,
    pub request_id: String,
}

/// Whether a ticket in `state` takes notes: every state but the final CLOSED and CANCELLED (the
/// service desk refuses the others).
pub fn takes_notes(state: i32) -> bool {
    matches!(
        TicketState::try_from(state),
        Ok(TicketState::New | TicketState::InProgress | TicketState::Pending | TicketState::Resolved)
    )
}

/// The timeline of a ticket's history, work notes marked as internal.
fn agent_timeline(entries: &[itsm_proto::servicedesk::TicketHistoryEntry]) -> Vec<TimelineEntry> {
    let mut out = timeline(entries);
    for entry in &mut out {
        if entry.action == "work_note" {
            entry.action = "work note (agents only)".to_string();
        }
    }
    out
}

/// The posted escalation form.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct EscalateForm {
    pub reason: String,
    pub notify_manager: String,
    pub etag: String,
}

/// The posted resolution form.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ResolveForm {
    pub resolution_notes: String,
    pub etag: String,
}

/// The posted link-an-article form.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct LinkForm {
    pub article: String,
    pub solved: String,
}

/// What the forms of a ticket page hold: the posted values and errors of the one that was
/// refused, empty for the others.
#[derive(Default)]
struct TicketForms {
    note: NoteForm,
    note_errors: FormErrors,
    escalate: EscalateForm,
    escalate_errors: FormErrors,
    resolve: ResolveForm,
    resolve_errors: FormErrors,
    link_errors: FormErrors,
}

#[derive(Template)]
#[template(path = "agent/ticket.html")]
pub struct AgentTicketPage {
    layout: Layout,
    csrf: String,
    notice: &'static str,
    ticket: TicketView,
    timeline: Vec<TimelineEntry>,
    /// The ticket takes notes (it is not CLOSED or CANCELLED).
    notes_open: bool,
    note_request_id: String,
    note_form: FormView,
    /// The linked incident's number ("" when none) and its work notes.
    incident_number: String,
    notes: Vec<NoteView>,
    /// Why the incident's work notes could not be read ("" = they were).
    notes_problem: String,
    escalate_form: FormView,
    resolve_form: FormView,
    articles: Vec<ArticleView>,
    known_errors: Vec<KnownErrorView>,
    link_messages: Vec<String>,
}

impl AgentTicketPage {
    pub fn has_notice(&self) -> bool {
        !self.notice.is_empty()
    }

    pub fn has_notes_problem(&self) -> bool {
        !self.notes_problem.is_empty()
    }

    pub fn has_suggestions(&self) -> bool {
        !self.articles.is_empty() || !self.known_errors.is_empty()
    }
}

/// The ticket page of `number` with `forms` (values and errors of a refused form).
async fn ticket_page(
    state: &AppState,
    session: &Session,
    number: &str,
    notice: &'static str,
    forms: TicketForms,
    status: StatusCode,
) -> Result<Response, PageError> {
    let name = format!("tickets/{number}");
    let mut desk = state.gateway.desk();
    let ticket = desk
        .get_ticket(authed(&session.data, GetTicketRequest { name: name.clone() }))
        .await
        .map_err(|status| page_error(&status, &session.here))?
        .into_inner();
    let history =
        ListTicketHistoryRequest { parent: name.clone(), page_size: 200, page_token: String::new() };
    let entries = desk
        .list_ticket_history(authed(&session.data, history))
        .await
        .map_err(|status| page_error(&status, &session.here))?
        .into_inner()
        .entries;
    let groups = group_names(state, session).await;
    let view = TicketView::new(&ticket, &groups);

    // The incident's own work notes, for reading here (they are added on the incident's page).
    let (mut notes, mut notes_problem) = (Vec::new(), String::new());
    if view.has_incident() {
        let request =
            ListWorkNotesRequest { parent: view.incident.clone(), page_size: 200, page_token: String::new() };
        match state.gateway.incidents().list_work_notes(authed(&session.data, request)).await {
            Ok(response) => {
                notes = response
                    .into_inner()
                    .work_notes
                    .iter()
                    .map(|n| NoteView {
                        author: n.author.clone(),
                        text: n.text.clone(),
                        when: time_view(n.create_time.as_ref()),
                    })
                    .collect();
            }
            Err(status) => notes_problem = format!("The work notes cannot be shown: {}", status.message()),
        }
    }

    // Suggestions are help, not the page: when they cannot be had, the page shows without them.
    let (mut articles, mut known_errors) = (Vec::new(), Vec::new());
    if view.is_open {
        let request = SuggestSolutionsRequest { ticket: name };
        match desk.suggest_solutions(authed(&session.data, request)).await {
            Ok(response) => {
                let found = response.into_inner();
                articles = found.articles.iter().map(ArticleView::new).collect();
                known_errors = found
                    .known_errors
                    .iter()
                    .map(|k| KnownErrorView {
                        number: k.number.clone(),
                        summary: k.short_description.clone(),
                        workaround: k.workaround.clone(),
                    })
                    .collect();
            }
            Err(status) => tracing::debug!(code = ?status.code(), "no solution suggestions"),
        }
    }

    let note_fields = vec![
        FieldView::new("note-text", "text", "Note", FieldKind::TextArea)
            .required(true)
            .value(forms.note.text.as_str())
            .hint("A work note is internal: visible to agents only."),
        FieldView::new(
            "note-visible_to_requester",
            "visible_to_requester",
            "Send it to the requester as a comment",
            FieldKind::Checkbox,
        )
        .value(forms.note.visible_to_requester.as_str()),
    ];
    let escalate_fields = vec![
        FieldView::new("escalate-reason", "reason", "Reason", FieldKind::TextArea)
            .required(true)
            .value(forms.escalate.reason.as_str())
            .hint("Why the next tier should take it; recorded in the ticket's history."),
        FieldView::new(
            "escalate-notify_manager",
            "notify_manager",
            "Also notify the group's manager",
            FieldKind::Checkbox,
        )
        .value(forms.escalate.notify_manager.as_str()),
    ];
    let resolve_fields = vec![
        FieldView::new("resolve-resolution_notes", "resolution_notes", "Resolution", FieldKind::TextArea)
            .required(true)
            .value(forms.resolve.resolution_notes.as_str())
            .hint("What was done; the requester sees it."),
    ];
    let note_request_id = request_id_of(&forms.note.request_id);
    let page = AgentTicketPage {
        layout: Layout::new(format!("{} {}", view.number, view.summary), Some(&session.data), Section::Agent),
        csrf: session.data.csrf.clone(),
        notice,
        timeline: agent_timeline(&entries),
        notes_open: takes_notes(ticket.state),
        note_request_id,
        note_form: FormView::new(note_fields, &forms.note_errors),
        incident_number: number_of(&ticket.incident).to_string(),
        notes,
        notes_problem,
        escalate_form: FormView::new(escalate_fields, &forms.escalate_errors),
        resolve_form: FormView::new(resolve_fields, &forms.resolve_errors),
        articles,
        known_errors,
        link_messages: FormView::new(Vec::new(), &forms.link_errors).messages,
        ticket: view,
    };
    Ok(render(status, &page))
}

/// The ticket number of an address, or 404.
fn checked(number: &str) -> Result<&str, PageError> {
    if is_record_number(number) {
        Ok(number)
    } else {
        Err(PageError::NotFound(format!("No ticket {number}.")))
    }
}

/// GET `/agent/tickets/{number}`.
pub async fn ticket(
    State(state): State<AppState>,
    session: Session,
    Path(number): Path<String>,
    Query(done): Query<DoneQuery>,
) -> Result<Response, PageError> {
    let number = checked(&number)?;
    ticket_page(&state, &session, number, notice(&done.done), TicketForms::default(), StatusCode::OK).await
}

/// Back to the ticket page with a confirmation.
fn back_to_ticket(number: &str, what: &str) -> Response {
    Redirect::to(&format!("/agent/tickets/{number}?done={what}")).into_response()
}

/// POST `/agent/tickets/{number}/notes`: adds a work note to the ticket, or a comment the
/// requester reads too.
pub async fn add_note(
    State(state): State<AppState>,
    session: Session,
    Path(number): Path<String>,
    Form(form): Form<NoteForm>,
) -> Result<Response, PageError> {
    let number = checked(&number)?;
    let page = format!("/agent/tickets/{number}");
    let mut errors = FormErrors::default();
    if form.text.trim().is_empty() {
        errors.add("text", "is required");
    } else {
        let comment = form.visible_to_requester == "true";
        let visibility = if comment { TicketNoteVisibility::Comment } else { TicketNoteVisibility::WorkNote };
        let request_id = request_id_of(&form.request_id);
        let request = AddTicketNoteRequest {
            parent: format!("tickets/{number}"),
            text: form.text.trim().to_string(),
            visibility: visibility as i32,
            request_id,
        };
        match state.gateway.desk().add_ticket_note(authed(&session.data, request)).await {
            Ok(_) => return Ok(back_to_ticket(number, if comment { "commented" } else { "noted" })),
            Err(status) => {
                errors = form_errors(&status, &page, &|path| match path {
                    "text" => Some("text".to_string()),
                    "visibility" => Some("visible_to_requester".to_string()),
                    _ => None,
                })?;
            }
        }
    }
    let forms = TicketForms { note: form, note_errors: errors, ..Default::default() };
    ticket_page(&state, &session, number, "", forms, StatusCode::UNPROCESSABLE_ENTITY).await
}

/// POST `/agent/tickets/{number}/escalate`: moves the ticket to the next tier.
pub async fn escalate(
    State(state): State<AppState>,
    session: Session,
    Path(number): Path<String>,
    Form(form): Form<EscalateForm>,
) -> Result<Response, PageError> {
    let number = checked(&number)?;
    let page = format!("/agent/tickets/{number}");
    let mut errors = FormErrors::default();
    if form.reason.trim().is_empty() {
        errors.add("reason", "is required");
    } else {
        let request = EscalateTicketRequest {
            name: format!("tickets/{number}"),
            reason: form.reason.trim().to_string(),
            support_group: String::new(),
            etag: form.etag.clone(),
            notify_manager: form.notify_manager == "true",
        };
        match state.gateway.desk().escalate_ticket(authed(&session.data, request)).await {
            Ok(_) => return Ok(back_to_ticket(number, "escalated")),
            Err(status) => {
                errors =
                    form_errors(&status, &page, &|path| (path == "reason").then_some("reason".to_string()))?;
            }
        }
    }
    let forms = TicketForms { escalate: form, escalate_errors: errors, ..Default::default() };
    ticket_page(&state, &session, number, "", forms, StatusCode::UNPROCESSABLE_ENTITY).await
}

/// POST `/agent/tickets/{number}/resolve`: resolves the ticket with its resolution notes.
pub async fn resolve(
    State(state): State<AppState>,
    session: Session,
    Path(number): Path<String>,
    Form(form): Form<ResolveForm>,
) -> Result<Response, PageError> {
    let number = checked(&number)?;
    let page = format!("/agent/tickets/{number}");
    let mut errors = FormErrors::default();
    if form.resolution_notes.trim().is_empty() {
        errors.add("resolution_notes", "is required");
    } else {
        let request = ResolveTicketRequest {
            name: format!("tickets/{number}"),
            resolution_notes: form.resolution_notes.trim().to_string(),
            etag: form.etag.clone(),
        };
        match state.gateway.desk().resolve_ticket(authed(&session.data, request)).await {
            Ok(_) => return Ok(back_to_ticket(number, "resolved")),
            Err(status) => {
                errors = form_errors(&status, &page, &|path| {
                    (path == "resolution_notes").then_some("resolution_notes".to_string())
                })?;
            }
        }
    }
    let forms = TicketForms { resolve: form, resolve_errors: errors, ..Default::default() };
    ticket_page(&state, &session, number, "", forms, StatusCode::UNPROCESSABLE_ENTITY).await
}

/// POST `/agent/tickets/{number}/articles`: links a suggested article to the ticket.
pub async fn link_article(
    State(state): State<AppState>,
    session: Session,
    Path(number): Path<String>,
    Form(form): Form<LinkForm>,
) -> Result<Response, PageError> {
    let number = checked(&number)?;
    let page = format!("/agent/tickets/{number}");
    let article = form.article.trim();
    let mut errors = FormErrors::default();
    match article.strip_prefix("articles/") {
        Some(article_number) if is_record_number(article_number) => {
            let request = LinkArticleRequest {
                name: article.to_string(),
                ticket: format!("tickets/{number}"),
                solved: form.solved == "true",
            };
            match state.gateway.desk().link_article(authed(&session.data, request)).await {
                Ok(_) => return Ok(back_to_ticket(number, "linked")),
                Err(status) => errors = form_errors(&status, &page, &|_| None)?,
            }
        }
        _ => errors.add_form("Choose an article to link."),
    }
    let forms = TicketForms { link_errors: errors, ..Default::default() };
    ticket_page(&state, &session, number, "", forms, StatusCode::UNPROCESSABLE_ENTITY).await
}
