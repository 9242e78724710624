//! The requester portal: my tickets, raising a ticket, a ticket with its timeline (which holds
//! its comments), comments and survey, the service catalogue with forms generated from each item's
//! variables, and the knowledge base.

use std::collections::HashMap;

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use tonic::Code;

use itsm_proto::common::Money;
use itsm_proto::servicedesk::{
    AddTicketNoteRequest, AnswerSurveyRequest, ApprovalPolicy, Article, CatalogItem, CatalogVariable,
    Channel, CreateTicketRequest, GetArticleRequest, GetCatalogItemRequest, GetTicketRequest,
    ListArticlesRequest, ListCatalogItemsRequest, ListTicketHistoryRequest, ListTicketsRequest,
    SubmitRequestRequest, Ticket, TicketNoteVisibility, VariableType,
};

use crate::agent::takes_notes;
use crate::calls::{authed, form_errors, page_error};
use crate::forms::{FieldKind, FieldView, FormErrors, FormView, LEVELS, level, request_id_of};
use crate::listing::{PageQuery, Pager, pager, query_escape};
use crate::pages::{Layout, PageError, Section, render};
use crate::session::Session;
use crate::views::{TicketView, TimelineEntry, is_record_number, number_of, timeline};
use crate::{AppState, form_status};

/// Rows per page of a list.
const PAGE_SIZE: i32 = 20;
/// Longest excerpt of an article in a list.
const EXCERPT_CHARS: usize = 240;

/// `text` inside a double-quoted AIP-160 filter string.
fn filter_quote(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}

/// A confirmation for `?done=…` after a form went through (post/redirect/get).
pub fn notice(done: &str) -> &'static str {
    match done {
        "created" => "Your ticket was raised. The service desk will be in touch.",
        "requested" => "Your request was submitted.",
        "survey" => "Thank you for your answer.",
        "escalated" => "The ticket was escalated to the next tier.",
        "resolved" => "The ticket was resolved.",
        "noted" => "The work note was added.",
        "commented" => "The comment was added.",
        "linked" => "The article was linked to the ticket.",
        _ => "",
    }
}

/// `?done=` of a page shown after a form.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct DoneQuery {
    pub done: String,
}

// ---- my tickets ----------------------------------------------------------------------------

#[derive(Template)]
#[template(path = "portal/home.html")]
pub struct HomePage {
    layout: Layout,
    tickets: Vec<TicketView>,
    pager: Pager,
}

/// GET `/portal`: the tickets the signed-in user raised, newest first.
pub async fn home(
    State(state): State<AppState>,
    session: Session,
    Query(page): Query<PageQuery>,
) -> Result<Response, PageError> {
    let request = ListTicketsRequest {
        page_size: PAGE_SIZE,
        page_token: page.page.clone(),
        filter: format!("requester = \"{}\"", filter_quote(&session.data.subject)),
        order_by: "create_time desc".into(),
    };
    let listed = state
        .gateway
        .desk()
        .list_tickets(authed(&session.data, request))
        .await
        .map_err(|status| page_error(&status, &session.here))?
        .into_inner();
    let groups = HashMap::new();
    let view = HomePage {
        layout: Layout::new("My tickets", Some(&session.data), Section::Portal),
        tickets: listed.tickets.iter().map(|t| TicketView::new(t, &groups)).collect(),
        pager: pager("/portal", &page, &listed.next_page_token),
    };
    Ok(render(StatusCode::OK, &view))
}

// ---- raise a ticket ------------------------------------------------------------------------

/// The posted new-ticket form.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct NewTicketForm {
    pub short_description: String,
    pub description: String,
    pub category: String,
    pub impact: String,
    pub urgency: String,
    pub request_id: String,
}

#[derive(Template)]
#[template(path = "portal/new_ticket.html")]
pub struct NewTicketPage {
    layout: Layout,
    csrf: String,
    request_id: String,
    form: FormView,
}

fn new_ticket_page(
    session: &Session,
    form: &NewTicketForm,
    request_id: String,
    errors: &FormErrors,
) -> Response {
    let fields = vec![
        FieldView::new("short_description", "short_description", "Summary", FieldKind::Text)
            .required(true)
            .max_length(300)
            .value(form.short_description.as_str())
            .hint("One line: what is wrong, or what you need."),
        FieldView::new("description", "description", "Description", FieldKind::TextArea)
            .value(form.description.as_str())
            .hint("What happened, since when, and what you already tried."),
        FieldView::new("category", "category", "Category", FieldKind::Text)
            .value(form.category.as_str())
            .hint("For example email, laptop or finance-app. Leave it empty if you are not sure."),
        FieldView::new("impact", "impact", "Impact", FieldKind::Select)
            .value(form.impact.as_str())
            .choices(LEVELS)
            .hint("How many people are affected."),
        FieldView::new("urgency", "urgency", "Urgency", FieldKind::Select)
            .value(form.urgency.as_str())
            .choices(LEVELS)
            .hint("How soon it must be fixed."),
    ];
    let page = NewTicketPage {
        layout: Layout::new("Raise a ticket", Some(&session.data), Section::Portal),
        csrf: session.data.csrf.clone(),
        request_id,
        form: FormView::new(fields, errors),
    };
    render(form_status(!errors.is_empty()), &page)
}

/// Where a CreateTicket field violation shows.
fn ticket_field(path: &str) -> Option<String> {
    let field = path.strip_prefix("ticket.")?;
    ["short_description", "description", "category", "impact", "urgency"]
        .contains(&field)
        .then_some(field.to_string())
}

/// GET `/portal/tickets/new`.
pub async fn new_ticket(session: Session) -> Response {
    let request_id = uuid::Uuid::new_v4().to_string();
    new_ticket_page(&session, &NewTicketForm::default(), request_id, &FormErrors::default())
}

/// POST `/portal/tickets/new`: raises the ticket, or shows the form again with each error next to
/// its field and nothing written.
pub async fn create_ticket(
    State(state): State<AppState>,
    session: Session,
    Form(form): Form<NewTicketForm>,
) -> Result<Response, PageError> {
    let request_id = request_id_of(&form.request_id);
    let mut errors = FormErrors::default();
    if form.short_description.trim().is_empty() {
        errors.add("short_description", "is required");
    }
    let impact = level(&form.impact);
    if impact.is_none() {
        errors.add("impact", "must be high, medium or low");
    }
    let urgency = level(&form.urgency);
    if urgency.is_none() {
        errors.add("urgency", "must be high, medium or low");
    }
    if !errors.is_empty() {
        return Ok(new_ticket_page(&session, &form, request_id, &errors));
    }
    let ticket = Ticket {
        channel: Channel::Portal as i32,
        short_description: form.short_description.trim().to_string(),
        description: form.description.trim().to_string(),
        category: form.category.trim().to_string(),
        impact: impact.unwrap_or_default(),
        urgency: urgency.unwrap_or_default(),
        ..Default::default()
    };
    let request = CreateTicketRequest { ticket: Some(ticket), request_id: request_id.clone() };
    match state.gateway.desk().create_ticket(authed(&session.data, request)).await {
        Ok(created) => {
            let number = created.into_inner().number;
            Ok(Redirect::to(&format!("/portal/tickets/{}?done=created", query_escape(&number)))
                .into_response())
        }
        Err(status) => {
            let errors = form_errors(&status, "/portal/tickets/new", &ticket_field)?;
            Ok(new_ticket_page(&session, &form, request_id, &errors))
        }
    }
}

// ---- one ticket ------------------------------------------------------------------------------

/// The posted survey.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct SurveyForm {
    pub score: String,
    pub comment: String,
}

/// The posted comment on a ticket.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct CommentForm {
    pub text: String,
    pub request_id: String,
}

#[derive(Template)]
#[template(path = "portal/ticket.html")]
pub struct TicketPage {
    layout: Layout,
    csrf: String,
    ticket: TicketView,
    /// The history, when the user's roles may read it.
    timeline: Vec<TimelineEntry>,
    timeline_shown: bool,
    notice: &'static str,
    /// The survey form, while the survey is open to this user.
    survey: Option<FormView>,
    /// The ticket takes comments (it is not CLOSED or CANCELLED).
    comments_open: bool,
    comment_request_id: String,
    comment_form: FormView,
}

impl TicketPage {
    pub fn has_notice(&self) -> bool {
        !self.notice.is_empty()
    }
}

fn survey_fields(form: &SurveyForm) -> Vec<FieldView> {
    vec![
        FieldView::new(
            "score",
            "score",
            "How satisfied are you with how this was handled?",
            FieldKind::Radio,
        )
        .required(true)
        .value(form.score.as_str())
        .choices([
            ("1", "1 – very unhappy"),
            ("2", "2 – unhappy"),
            ("3", "3 – neither"),
            ("4", "4 – happy"),
            ("5", "5 – very happy"),
        ]),
        FieldView::new("survey-comment", "comment", "Comment", FieldKind::TextArea)
            .value(form.comment.as_str())
            .hint("Optional: what went well, what could be better."),
    ]
}

fn comment_fields(form: &CommentForm) -> Vec<FieldView> {
    vec![
        FieldView::new("comment-text", "text", "Comment", FieldKind::TextArea)
            .required(true)
            .value(form.text.as_str())
            .hint("Anything the service desk should know; it shows in the timeline."),
    ]
}

async fn portal_ticket_page(
    state: &AppState,
    session: &Session,
    number: &str,
    notice: &'static str,
    survey: (&SurveyForm, &FormErrors),
    comment: (&CommentForm, &FormErrors),
    status: StatusCode,
) -> Result<Response, PageError> {
    if !is_record_number(number) {
        return Err(PageError::NotFound(format!("No ticket {number}.")));
    }
    let name = format!("tickets/{number}");
    let mut desk = state.gateway.desk();
    let ticket = desk
        .get_ticket(authed(&session.data, GetTicketRequest { name: name.clone() }))
        .await
        .map_err(|status| page_error(&status, &session.here))?
        .into_inner();
    let history = ListTicketHistoryRequest { parent: name, page_size: 200, page_token: String::new() };
    let (entries, timeline_shown) = match desk.list_ticket_history(authed(&session.data, history)).await {
        Ok(response) => (timeline(&response.into_inner().entries), true),
        // The detailed history is the service desk's (the gateway's role table); a requester
        // sees the key dates.
        Err(status) if status.code() == Code::PermissionDenied => (Vec::new(), false),
        Err(status) => return Err(page_error(&status, &session.here)),
    };
    let view = TicketView::new(&ticket, &HashMap::new());
    let survey_open = view.is_done && !view.is_surveyed() && ticket.requester == session.data.subject;
    // The same request id while a refused comment is shown again, so a resend adds it once.
    let comment_request_id = request_id_of(&comment.0.request_id);
    let page = TicketPage {
        layout: Layout::new(
            format!("{} {}", view.number, view.summary),
            Some(&session.data),
            Section::Portal,
        ),
        csrf: session.data.csrf.clone(),
        ticket: view,
        timeline: entries,
        timeline_shown,
        notice,
        survey: survey_open.then(|| FormView::new(survey_fields(survey.0), survey.1)),
        comments_open: takes_notes(ticket.state),
        comment_request_id,
        comment_form: FormView::new(comment_fields(comment.0), comment.1),
    };
    Ok(render(status, &page))
}

/// GET `/portal/tickets/{number}`.
pub async fn ticket(
    State(state): State<AppState>,
    session: Session,
    Path(number): Path<String>,
    Query(done): Query<DoneQuery>,
) -> Result<Response, PageError> {
    let survey = (&SurveyForm::default(), &FormErrors::default());
    let comment = (&CommentForm::default(), &FormErrors::default());
    portal_ticket_page(&state, &session, &number, notice(&done.done), survey, comment, StatusCode::OK).await
}

/// POST `/portal/tickets/{number}/survey`: records the requester's answer.
pub async fn answer_survey(
    State(state): State<AppState>,
    session: Session,
    Path(number): Path<String>,
    Form(form): Form<SurveyForm>,
) -> Result<Response, PageError> {
    if !is_record_number(&number) {
        return Err(PageError::NotFound(format!("No ticket {number}.")));
    }
    let page = format!("/portal/tickets/{number}");
    let mut errors = FormErrors::default();
    match form.score.trim().parse::<i32>() {
        Ok(score) if (1..=5).contains(&score) => {
            let request = AnswerSurveyRequest {
                name: format!("tickets/{number}"),
                score,
                comment: form.comment.trim().to_string(),
            };
            match state.gateway.desk().answer_survey(authed(&session.data, request)).await {
                Ok(_) => return Ok(Redirect::to(&format!("{page}?done=survey")).into_response()),
                Err(status) => {
                    errors = form_errors(&status, &page, &|path| {
                        matches!(path, "score" | "comment").then_some(path.to_string())
                    })?;
                }
            }
        }
        _ => errors.add("score", "Choose how satisfied you are, from 1 to 5"),
    }
    let status = StatusCode::UNPROCESSABLE_ENTITY;
    let comment = (&CommentForm::default(), &FormErrors::default());
    portal_ticket_page(&state, &session, &number, "", (&form, &errors), comment, status).await
}

/// POST `/portal/tickets/{number}/comments`: adds a comment to the ticket (the service desk
/// reads it; work notes stay internal), or shows the page again with the error next to the field
/// and nothing written.
pub async fn add_comment(
    State(state): State<AppState>,
    session: Session,
    Path(number): Path<String>,
    Form(form): Form<CommentForm>,
) -> Result<Response, PageError> {
    if !is_record_number(&number) {
        return Err(PageError::NotFound(format!("No ticket {number}.")));
    }
    let page = format!("/portal/tickets/{number}");
    let mut errors = FormErrors::default();
    if form.text.trim().is_empty() {
        errors.add("text", "is required");
    } else {
        let request = AddTicketNoteRequest {
            parent: format!("tickets/{number}"),
            text: form.text.trim().to_string(),
            visibility: TicketNoteVisibility::Comment as i32,
            request_id: request_id_of(&form.request_id),
        };
        match state.gateway.desk().add_ticket_note(authed(&session.data, request)).await {
            Ok(_) => return Ok(Redirect::to(&format!("{page}?done=commented")).into_response()),
            Err(status) => {
                errors = form_errors(&status, &page, &|path| (path == "text").then_some("text".to_string()))?;
            }
        }
    }
    let survey = (&SurveyForm::default(), &FormErrors::default());
    let status = StatusCode::UNPROCESSABLE_ENTITY;
    portal_ticket_page(&state, &session, &number, "", survey, (&form, &errors), status).await
}

// ---- service catalogue -------------------------------------------------------------------------

/// A catalogue item as the pages show it.
pub struct CatalogItemView {
    /// The id in `catalogItems/{id}` (and in the page's address).
    pub id: String,
    pub name: String,
    pub description: String,
    pub category: String,
    /// "" when the item has no cost.
    pub cost: String,
    /// Someone must approve requests for it.
    pub needs_approval: bool,
}

impl CatalogItemView {
    fn new(item: &CatalogItem) -> Self {
        Self {
            id: number_of(&item.name).to_string(),
            name: item.display_name.clone(),
            description: item.description.clone(),
            category: item.category.clone(),
            cost: item.cost.as_ref().map(money).unwrap_or_default(),
            needs_approval: approval_asked(item.approval_policy),
        }
    }

    pub fn has_cost(&self) -> bool {
        !self.cost.is_empty()
    }
}

/// Whether the item's policy may ask the requester's manager to approve.
fn approval_asked(policy: i32) -> bool {
    matches!(
        ApprovalPolicy::try_from(policy),
        Ok(ApprovalPolicy::Manager | ApprovalPolicy::ManagerAboveThreshold)
    )
}

/// `EUR 1200` or `EUR 1200.50`; "" for no amount.
fn money(amount: &Money) -> String {
    if amount.currency_code.is_empty() && amount.units == 0 && amount.nanos == 0 {
        return String::new();
    }
    let cents = (amount.nanos / 10_000_000).unsigned_abs();
    if cents == 0 {
        format!("{} {}", amount.currency_code, amount.units)
    } else {
        format!("{} {}.{cents:02}", amount.currency_code, amount.units)
    }
}

#[derive(Template)]
#[template(path = "portal/catalog.html")]
pub struct CatalogPage {
    layout: Layout,
    items: Vec<CatalogItemView>,
    pager: Pager,
}

/// GET `/portal/catalog`.
pub async fn catalog(
    State(state): State<AppState>,
    session: Session,
    Query(page): Query<PageQuery>,
) -> Result<Response, PageError> {
    let request = ListCatalogItemsRequest { page_size: PAGE_SIZE, page_token: page.page.clone() };
    let listed = state
        .gateway
        .desk()
        .list_catalog_items(authed(&session.data, request))
        .await
        .map_err(|status| page_error(&status, &session.here))?
        .into_inner();
    let view = CatalogPage {
        layout: Layout::new("Service catalogue", Some(&session.data), Section::Portal),
        items: listed.catalog_items.iter().map(CatalogItemView::new).collect(),
        pager: pager("/portal/catalog", &page, &listed.next_page_token),
    };
    Ok(render(StatusCode::OK, &view))
}

#[derive(Template)]
#[template(path = "portal/catalog_item.html")]
pub struct CatalogItemPage {
    layout: Layout,
    csrf: String,
    request_id: String,
    item: CatalogItemView,
    form: FormView,
}

/// The form field of a catalogue variable, posted as `v_<id>`.
fn variable_field(variable: &CatalogVariable, value: &str) -> FieldView {
    let name = format!("v_{}", variable.id);
    let kind = match VariableType::try_from(variable.r#type) {
        Ok(VariableType::Integer) => FieldKind::Number,
        Ok(VariableType::Boolean) => FieldKind::Checkbox,
        Ok(VariableType::Choice) => FieldKind::Select,
        Ok(VariableType::Date) => FieldKind::Date,
        _ => FieldKind::Text,
    };
    let label = if variable.label.is_empty() { variable.id.clone() } else { variable.label.clone() };
    let mut field = FieldView::new(name.clone(), name, label, kind).required(variable.required).value(value);
    match kind {
        FieldKind::Number if variable.min != 0 || variable.max != 0 => {
            field = field.bounds(Some(variable.min), Some(variable.max));
        }
        FieldKind::Select => {
            field = field.choices(variable.options.iter().map(|o| (o.as_str(), o.as_str())));
        }
        FieldKind::Text => {
            let max = if variable.max_length > 0 { variable.max_length } else { 1000 };
            field = field.max_length(usize::try_from(max).unwrap_or(1000));
        }
        FieldKind::Date => field = field.hint("YYYY-MM-DD"),
        _ => {}
    }
    field
}

fn catalog_fields(item: &CatalogItem, values: &HashMap<String, String>) -> Vec<FieldView> {
    let mut fields: Vec<FieldView> = item
        .variables
        .iter()
        .map(|v| {
            let value = values.get(&format!("v_{}", v.id)).map(String::as_str).unwrap_or_default();
            variable_field(v, value)
        })
        .collect();
    if approval_asked(item.approval_policy) {
        let manager = values.get("manager").map(String::as_str).unwrap_or_default();
        fields.push(
            FieldView::new("manager", "manager", "Your manager", FieldKind::Text)
                .required(item.approval_policy == ApprovalPolicy::Manager as i32)
                .value(manager)
                .hint("The person who approves this request (their user name)."),
        );
    }
    fields
}

/// Where a SubmitRequest field violation shows: `variables[<id>]` on `v_<id>`, `manager` on the
/// manager field.
fn request_field(path: &str) -> Option<String> {
    if path == "manager" {
        return Some("manager".into());
    }
    let id = path.strip_prefix("variables[")?.strip_suffix(']')?;
    Some(format!("v_{id}"))
}

async fn fetch_item(state: &AppState, session: &Session, id: &str) -> Result<CatalogItem, PageError> {
    if uuid::Uuid::parse_str(id).is_err() {
        return Err(PageError::NotFound("No such catalogue item.".into()));
    }
    let request = GetCatalogItemRequest { name: format!("catalogItems/{id}") };
    Ok(state
        .gateway
        .desk()
        .get_catalog_item(authed(&session.data, request))
        .await
        .map_err(|status| page_error(&status, &session.here))?
        .into_inner())
}

fn catalog_item_page(
    session: &Session,
    item: &CatalogItem,
    values: &HashMap<String, String>,
    request_id: String,
    errors: &FormErrors,
) -> Response {
    let page = CatalogItemPage {
        layout: Layout::new(item.display_name.clone(), Some(&session.data), Section::Portal),
        csrf: session.data.csrf.clone(),
        request_id,
        item: CatalogItemView::new(item),
        form: FormView::new(catalog_fields(item, values), errors),
    };
    render(form_status(!errors.is_empty()), &page)
}

/// GET `/portal/catalog/{id}`: the item and its request form.
pub async fn catalog_item(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let item = fetch_item(&state, &session, &id).await?;
    let request_id = uuid::Uuid::new_v4().to_string();
    Ok(catalog_item_page(&session, &item, &HashMap::new(), request_id, &FormErrors::default()))
}

/// POST `/portal/catalog/{id}`: submits the request, or shows the form again with each error next
/// to its field.
pub async fn submit_request(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let item = fetch_item(&state, &session, &id).await?;
    let values: HashMap<String, String> = pairs.into_iter().collect();
    let request_id = request_id_of(values.get("request_id").map(String::as_str).unwrap_or_default());
    let mut errors = FormErrors::default();
    let mut answers = HashMap::new();
    for variable in &item.variables {
        let key = format!("v_{}", variable.id);
        let answer = values.get(&key).map(|a| a.trim().to_string()).unwrap_or_default();
        if variable.r#type == VariableType::Boolean as i32 {
            // An unticked box is not posted: it is an answer too.
            let ticked = if answer == "true" { "true" } else { "false" };
            answers.insert(variable.id.clone(), ticked.to_string());
        } else if answer.is_empty() {
            if variable.required {
                errors.add(&key, "is required");
            }
        } else {
            answers.insert(variable.id.clone(), answer);
        }
    }
    let manager = values.get("manager").map(|m| m.trim().to_string()).unwrap_or_default();
    if item.approval_policy == ApprovalPolicy::Manager as i32 && manager.is_empty() {
        errors.add("manager", "is required");
    }
    if !errors.is_empty() {
        return Ok(catalog_item_page(&session, &item, &values, request_id, &errors));
    }
    let request = SubmitRequestRequest {
        catalog_item: item.name.clone(),
        variables: answers,
        manager,
        request_id: request_id.clone(),
    };
    match state.gateway.desk().submit_request(authed(&session.data, request)).await {
        Ok(created) => {
            let number = created.into_inner().number;
            Ok(Redirect::to(&format!("/portal/tickets/{}?done=requested", query_escape(&number)))
                .into_response())
        }
        Err(status) => {
            let errors = form_errors(&status, &format!("/portal/catalog/{id}"), &request_field)?;
            Ok(catalog_item_page(&session, &item, &values, request_id, &errors))
        }
    }
}

// ---- knowledge -----------------------------------------------------------------------------------

/// An article as the pages show it.
pub struct ArticleView {
    pub number: String,
    pub title: String,
    pub category: String,
    pub excerpt: String,
    pub body: String,
    pub keywords: String,
}

impl ArticleView {
    pub fn new(article: &Article) -> Self {
        let mut excerpt: String = article.body.chars().take(EXCERPT_CHARS).collect();
        if article.body.chars().count() > EXCERPT_CHARS {
            excerpt.push('…');
        }
        Self {
            number: article.number.clone(),
            title: article.title.clone(),
            category: article.category.clone(),
            excerpt,
            body: article.body.clone(),
            keywords: article.keywords.join(", "),
        }
    }
}

/// `/portal/knowledge?q=`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct KnowledgeQuery {
    pub q: String,
    pub page: String,
    pub trail: String,
}

#[derive(Template)]
#[template(path = "portal/knowledge.html")]
pub struct KnowledgePage {
    layout: Layout,
    query: String,
    searched: bool,
    articles: Vec<ArticleView>,
    pager: Pager,
}

/// GET `/portal/knowledge?q=`: published articles, all of them or those matching every word.
pub async fn knowledge(
    State(state): State<AppState>,
    session: Session,
    Query(query): Query<KnowledgeQuery>,
) -> Result<Response, PageError> {
    let words = query.q.trim().to_string();
    let page = PageQuery { page: query.page, trail: query.trail };
    let request = ListArticlesRequest {
        page_size: PAGE_SIZE,
        page_token: page.page.clone(),
        filter: "state = \"PUBLISHED\"".into(),
        query: words.clone(),
    };
    let listed = state
        .gateway
        .desk()
        .list_articles(authed(&session.data, request))
        .await
        .map_err(|status| page_error(&status, &session.here))?
        .into_inner();
    let base = if words.is_empty() {
        "/portal/knowledge".to_string()
    } else {
        format!("/portal/knowledge?q={}", query_escape(&words))
    };
    let view = KnowledgePage {
        layout: Layout::new("Knowledge base", Some(&session.data), Section::Portal),
        searched: !words.is_empty(),
        query: words,
        articles: listed.articles.iter().map(ArticleView::new).collect(),
        pager: pager(&base, &page, &listed.next_page_token),
    };
    Ok(render(StatusCode::OK, &view))
}

#[derive(Template)]
#[template(path = "portal/article.html")]
pub struct ArticlePage {
    layout: Layout,
    article: ArticleView,
}

/// GET `/portal/knowledge/{number}`.
pub async fn article(
    State(state): State<AppState>,
    session: Session,
    Path(number): Path<String>,
) -> Result<Response, PageError> {
    if !is_record_number(&number) {
        return Err(PageError::NotFound(format!("No article {number}.")));
    }
    let request = GetArticleRequest { name: format!("articles/{number}") };
    let found = state
        .gateway
        .desk()
        .get_article(authed(&session.data, request))
        .await
        .map_err(|status| page_error(&status, &session.here))?
        .into_inner();
    let view = ArticlePage {
        layout: Layout::new(found.title.clone(), Some(&session.data), Section::Portal),
        article: ArticleView::new(&found),
    };
    Ok(render(StatusCode::OK, &view))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_are_open_until_the_ticket_is_closed_or_cancelled() {
        use itsm_proto::servicedesk::TicketState;
        for state in [TicketState::New, TicketState::InProgress, TicketState::Pending, TicketState::Resolved]
        {
            assert!(takes_notes(state as i32), "{state:?}");
        }
        for state in [TicketState::Closed, TicketState::Cancelled, TicketState::Unspecified] {
            assert!(!takes_notes(state as i32), "{state:?}");
        }
        assert_eq!(notice("commented"), "The comment was added.");
    }

    #[test]
    fn create_ticket_violations_map_to_the_form() {
        assert_eq!(ticket_field("ticket.short_description").as_deref(), Some("short_description"));
        assert_eq!(ticket_field("ticket.impact").as_deref(), Some("impact"));
        assert_eq!(ticket_field("ticket.channel"), None);
        assert_eq!(ticket_field("request_id"), None);
    }

    #[test]
    fn submit_request_violations_map_to_the_generated_fields() {
        assert_eq!(request_field("variables[laptop_model]").as_deref(), Some("v_laptop_model"));
        assert_eq!(request_field("manager").as_deref(), Some("manager"));
        assert_eq!(request_field("catalog_item"), None);
    }

    #[test]
    fn variables_become_typed_fields() {
        let choice = CatalogVariable {
            id: "size".into(),
            label: "Screen size".into(),
            r#type: VariableType::Choice as i32,
            required: true,
            options: vec!["13\"".into(), "15\"".into()],
            ..Default::default()
        };
        let field = variable_field(&choice, "15\"");
        assert_eq!((field.name.as_str(), field.kind, field.required), ("v_size", FieldKind::Select, true));
        assert_eq!(field.choices.iter().filter(|c| c.selected).count(), 1);
        let count = CatalogVariable {
            id: "count".into(),
            r#type: VariableType::Integer as i32,
            min: 1,
            max: 4,
            ..Default::default()
        };
        let field = variable_field(&count, "");
        assert_eq!((field.label.as_str(), field.min.as_str(), field.max.as_str()), ("count", "1", "4"));
        let text =
            CatalogVariable { id: "why".into(), r#type: VariableType::String as i32, ..Default::default() };
        assert_eq!(variable_field(&text, "").max_length, "1000");
    }

    #[test]
    fn money_and_filters_read_right() {
        let amount = Money { currency_code: "EUR".into(), units: 1200, nanos: 500_000_000 };
        assert_eq!(money(&amount), "EUR 1200.50");
        assert_eq!(money(&Money { currency_code: "EUR".into(), units: 3, nanos: 0 }), "EUR 3");
        assert_eq!(money(&Money::default()), "");
        assert_eq!(filter_quote(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(notice("survey"), "Thank you for your answer.");
        assert_eq!(notice("<script>"), "");
    }
}
