//! Incidents, problems and known errors in the agent workspace.
//!
//! `/agent/incidents` lists incidents by view (assigned to me, my groups, unassigned, all open)
//! with live SLA countdowns; `/agent/incidents/{number}` shows one with its CIs, its timeline (work
//! notes included) and the actions its state allows — assign to me, put in progress, on hold,
//! escalate, resolve, close, reopen — and links it to a problem. `/problems`, `/problems/{number}`
//! and `/known-errors/{number}` show problem management's records with their actions (root cause
//! and workaround, the next state, a known error from the problem, publishing).
//!
//! Each action is a form posted with the session's CSRF token and the record's etag, answered with
//! a 303 back to the record and a notice (post/redirect/get). A refused one shows the page again
//! (422): errors next to their fields, the rest — FAILED_PRECONDITION's message naming the legal
//! transitions, a stale etag — at the top of the page.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;
use tonic::{Code, Status};

use itsm_proto::cmdb::BatchGetConfigurationItemsRequest;
use itsm_proto::delivery::service_level_service_client::ServiceLevelServiceClient;
use itsm_proto::delivery::{ListSlaClocksRequest, SlaClock};
use itsm_proto::incident::{
    AddWorkNoteRequest, AssignIncidentRequest, CloseIncidentRequest, CreateKnownErrorRequest,
    EscalateIncidentRequest, EscalationKind, GetIncidentRequest, GetKnownErrorRequest, GetProblemRequest,
    Incident, IncidentState, KnownError, KnownErrorStatus, ListIncidentTimelineRequest, ListIncidentsRequest,
    ListKnownErrorsRequest, ListProblemsRequest, NoteKind, OnHoldReason, Problem, ProblemState,
    ReopenIncidentRequest, ResolutionCode, ResolveIncidentRequest, TimelineEntry as IncidentHistoryEntry,
    UpdateIncidentRequest, UpdateKnownErrorRequest, UpdateProblemRequest,
};
use itsm_proto::servicedesk::{ListSupportGroupsRequest, SupportGroup};

use crate::AppState;
use crate::calls::{authed, form_errors, page_error};
use crate::forms::{FieldKind, FieldView, FormErrors, FormView, request_id_of};
use crate::listing::{PageQuery, Pager, pager, query_escape};
use crate::pages::{AGENT_ROLES, Layout, PageError, Section, render};
use crate::portal::DoneQuery;
use crate::session::{Session, SessionData};
use crate::views::{
    ChangeView, TimeView, TimelineEntry, is_record_number, number_of, priority_label, time_view,
};

/// Rows per page of a list.
const PAGE_SIZE: i32 = 25;
/// Timeline entries per call, and the most calls one page makes (the oldest come first, so a long
/// history is read on rather than cut before its latest entries).
const TIMELINE_PAGE_SIZE: i32 = 500;
const TIMELINE_PAGES: usize = 4;
/// Groups named in the "my groups" filter at most: 20 names of ~75 characters stay well inside
/// the API's filter limits (2,000 characters, 64 comparisons).
const MAX_GROUPS_IN_FILTER: usize = 20;
/// Records whose SLA clocks one call asks for: a page's worth, ~35 filter characters each.
const SLA_RECORDS_PER_CALL: usize = 25;
/// Suggested known errors fetched for an incident at most (one call each).
const MAX_KNOWN_ERRORS_SHOWN: usize = 5;

/// Incidents still being worked.
const OPEN_INCIDENT_STATES: &str =
    "(state = \"NEW\" OR state = \"ASSIGNED\" OR state = \"IN_PROGRESS\" OR state = \"ON_HOLD\")";
/// Problems still being worked.
const OPEN_PROBLEM_STATES: &str = concat!(
    "(state = \"NEW\" OR state = \"ASSESSED\" OR state = \"ROOT_CAUSE_ANALYSIS\"",
    " OR state = \"FIX_IN_PROGRESS\")"
);

/// Roles the gateway lets write problems and known errors (its role table). Only decides which
/// forms a page offers; the API stays the judge.
const PROBLEM_WRITERS: &[&str] = &["problem-manager", "tier2", "tier3", "admin"];

/// `itsm.incident.v1.ResolutionCode` values a resolution form offers.
const RESOLUTION_CODES: [(&str, &str); 6] = [
    ("1", "Solved permanently"),
    ("2", "Solved with a workaround"),
    ("3", "Not solved"),
    ("4", "Duplicate"),
    ("5", "Not reproducible"),
    ("6", "Closed by the caller"),
];

/// `itsm.incident.v1.OnHoldReason` values.
const ON_HOLD_REASONS: [(&str, &str); 3] =
    [("1", "Awaiting the caller"), ("2", "Awaiting a vendor"), ("3", "Awaiting a change")];

/// This area's routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/agent/incidents", get(incidents))
        .route("/agent/incidents/{number}", get(incident))
        .route("/agent/incidents/{number}/notes", post(add_note))
        .route("/agent/incidents/{number}/assign", post(assign_to_me))
        .route("/agent/incidents/{number}/start", post(start_work))
        .route("/agent/incidents/{number}/hold", post(put_on_hold))
        .route("/agent/incidents/{number}/escalate", post(escalate))
        .route("/agent/incidents/{number}/resolve", post(resolve))
        .route("/agent/incidents/{number}/close", post(close))
        .route("/agent/incidents/{number}/reopen", post(reopen))
        .route("/agent/incidents/{number}/problem", post(link_problem))
        .route("/problems", get(problems))
        .route("/problems/{number}", get(problem))
        .route("/problems/{number}/root-cause", post(record_root_cause))
        .route("/problems/{number}/state", post(move_problem))
        .route("/problems/{number}/known-errors", post(create_known_error))
        .route("/known-errors/{number}", get(known_error))
        .route("/known-errors/{number}/status", post(set_known_error_status))
}

// ---- who may see what -----------------------------------------------------------------------

/// Incident pages are the agent workspace's.
fn require_agent(session: &Session) -> Result<(), PageError> {
    if session.data.has_any_role(AGENT_ROLES) {
        return Ok(());
    }
    Err(PageError::Forbidden(
        "Incidents are worked in the agent workspace, which your roles do not include.".into(),
    ))
}

/// Problem and known-error pages: agents (who link incidents to problems and use known errors)
/// and problem managers.
fn require_problem_reader(session: &Session) -> Result<(), PageError> {
    if session.data.has_any_role(AGENT_ROLES) || session.data.has_any_role(&["problem-manager"]) {
        return Ok(());
    }
    Err(PageError::Forbidden("Problems and known errors are for agents and problem managers.".into()))
}

/// The record number of an address, or 404.
fn checked<'a>(number: &'a str, what: &str) -> Result<&'a str, PageError> {
    if is_record_number(number) {
        Ok(number)
    } else {
        Err(PageError::NotFound(format!("No {what} {number}.")))
    }
}

fn incident_name(number: &str) -> String {
    format!("incidents/{number}")
}

fn problem_name(number: &str) -> String {
    format!("problems/{number}")
}

fn known_error_name(number: &str) -> String {
    format!("knownErrors/{number}")
}

/// `text` inside a double-quoted AIP-160 filter string.
fn filter_quote(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}

/// An update mask of `paths`.
fn mask(paths: &[&str]) -> Option<prost_types::FieldMask> {
    Some(prost_types::FieldMask { paths: paths.iter().map(|p| (*p).to_string()).collect() })
}

/// The number of a `choices` value posted by a select, `None` when it is not one of them.
fn choice_number(posted: &str, choices: &[(&str, &str)]) -> Option<i32> {
    let posted = posted.trim();
    choices.iter().find(|(value, _)| *value == posted).and_then(|(value, _)| value.parse().ok())
}

/// Errors with one message next to `field`.
fn field_error(field: &str, description: impl Into<String>) -> FormErrors {
    let mut errors = FormErrors::default();
    errors.add(field, description);
    errors
}

/// The errors of a refused call; `fields` maps the request's field paths to the form's field names.
fn refused_call(status: &Status, page: &str, fields: &[(&str, &str)]) -> Result<FormErrors, PageError> {
    form_errors(status, page, &|path| {
        fields.iter().find(|(api, _)| *api == path).map(|(_, form)| (*form).to_string())
    })
}

// ---- refused forms ----------------------------------------------------------------------------

/// A form the console or the API refused: which one, what was posted and what was wrong.
#[derive(Debug, Default)]
struct Refused {
    /// The form's name on its page ("" = none was refused).
    form: &'static str,
    values: HashMap<&'static str, String>,
    errors: FormErrors,
}

impl Refused {
    fn new(form: &'static str, errors: FormErrors, values: Vec<(&'static str, String)>) -> Self {
        Self { form, values: values.into_iter().collect(), errors }
    }

    /// What `field` of `form` shows: the posted value when that form was refused, else `default`.
    fn value(&self, form: &str, field: &str, default: &str) -> String {
        if self.form == form
            && let Some(value) = self.values.get(field)
        {
            return value.clone();
        }
        default.to_string()
    }

    fn errors_of(&self, form: &str) -> FormErrors {
        if self.form == form { self.errors.clone() } else { FormErrors::default() }
    }
}

/// The forms of one page, each with its refusal's errors next to its fields. What belongs to no
/// field of it — and everything of a refused form the page no longer offers (its state moved on,
/// or it has no fields) — goes to the top of the page.
struct PageForms<'a> {
    refused: &'a Refused,
    refused_shown: bool,
    messages: Vec<String>,
}

impl<'a> PageForms<'a> {
    fn new(refused: &'a Refused) -> Self {
        Self { refused, refused_shown: false, messages: Vec::new() }
    }

    /// The form `name` with `fields`.
    fn form(&mut self, name: &str, fields: Vec<FieldView>) -> FormView {
        let mut view = FormView::new(fields, &self.refused.errors_of(name));
        if self.refused.form == name {
            self.refused_shown = true;
        }
        self.messages.append(&mut view.messages);
        view
    }

    /// The messages for the top of the page.
    fn messages(mut self) -> Vec<String> {
        if !self.refused_shown {
            self.messages.extend(FormView::new(Vec::new(), &self.refused.errors).messages);
        }
        self.messages
    }
}

// ---- what the pages show ------------------------------------------------------------------------

/// A link of a tab bar or of the area's navigation.
pub struct Tab {
    pub id: String,
    pub href: String,
    pub label: &'static str,
    pub current: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Area {
    Incidents,
    Problems,
}

/// The area's navigation: ticket queues and incidents for agents, problems for all who see them.
fn area_nav(session: &SessionData, current: Area) -> Vec<Tab> {
    let tab = |id: &str, href: &str, label: &'static str, current: bool| Tab {
        id: format!("area-{id}"),
        href: href.to_string(),
        label,
        current,
    };
    let mut tabs = Vec::new();
    if session.has_any_role(AGENT_ROLES) {
        tabs.push(tab("queue", "/agent/queue", "Ticket queues", false));
        tabs.push(tab("incidents", "/agent/incidents", "Incidents", current == Area::Incidents));
    }
    tabs.push(tab("problems", "/problems", "Problems", current == Area::Problems));
    tabs
}

/// An incident state for people, and a CSS class for its badge.
fn incident_state_label(state: i32) -> (&'static str, &'static str) {
    match IncidentState::try_from(state) {
        Ok(IncidentState::New) => ("New", "state-new"),
        Ok(IncidentState::Assigned) => ("Assigned", "state-new"),
        Ok(IncidentState::InProgress) => ("In progress", "state-progress"),
        Ok(IncidentState::OnHold) => ("On hold", "state-pending"),
        Ok(IncidentState::Resolved) => ("Resolved", "state-resolved"),
        Ok(IncidentState::Closed) => ("Closed", "state-closed"),
        Ok(IncidentState::Cancelled) => ("Cancelled", "state-closed"),
        _ => ("Unknown", "state-new"),
    }
}

fn on_hold_label(reason: i32) -> &'static str {
    match OnHoldReason::try_from(reason) {
        Ok(OnHoldReason::AwaitingCaller) => "Awaiting the caller",
        Ok(OnHoldReason::AwaitingVendor) => "Awaiting a vendor",
        Ok(OnHoldReason::AwaitingChange) => "Awaiting a change",
        _ => "",
    }
}

fn resolution_label(code: i32) -> &'static str {
    match ResolutionCode::try_from(code) {
        Ok(ResolutionCode::SolvedPermanently) => "Solved permanently",
        Ok(ResolutionCode::SolvedWorkaround) => "Solved with a workaround",
        Ok(ResolutionCode::NotSolved) => "Not solved",
        Ok(ResolutionCode::Duplicate) => "Duplicate",
        Ok(ResolutionCode::NotReproducible) => "Not reproducible",
        Ok(ResolutionCode::ClosedByCaller) => "Closed by the caller",
        _ => "",
    }
}

fn problem_state_label(state: i32) -> (&'static str, &'static str) {
    match ProblemState::try_from(state) {
        Ok(ProblemState::New) => ("New", "state-new"),
        Ok(ProblemState::Assessed) => ("Assessed", "state-progress"),
        Ok(ProblemState::RootCauseAnalysis) => ("Root cause analysis", "state-progress"),
        Ok(ProblemState::FixInProgress) => ("Fix in progress", "state-progress"),
        Ok(ProblemState::Resolved) => ("Resolved", "state-resolved"),
        Ok(ProblemState::Closed) => ("Closed", "state-closed"),
        _ => ("Unknown", "state-new"),
    }
}

/// The states a problem may move to next (the proto's state machine: one step forward, or
/// straight to CLOSED from any open state).
fn problem_next_states(state: i32) -> &'static [ProblemState] {
    match ProblemState::try_from(state) {
        Ok(ProblemState::New) => &[ProblemState::Assessed, ProblemState::Closed],
        Ok(ProblemState::Assessed) => &[ProblemState::RootCauseAnalysis, ProblemState::Closed],
        Ok(ProblemState::RootCauseAnalysis) => &[ProblemState::FixInProgress, ProblemState::Closed],
        Ok(ProblemState::FixInProgress) => &[ProblemState::Resolved, ProblemState::Closed],
        Ok(ProblemState::Resolved) => &[ProblemState::Closed],
        _ => &[],
    }
}

fn known_error_status_label(status: i32) -> (&'static str, &'static str) {
    match KnownErrorStatus::try_from(status) {
        Ok(KnownErrorStatus::Draft) => ("Draft", "state-pending"),
        Ok(KnownErrorStatus::Published) => ("Published", "state-resolved"),
        Ok(KnownErrorStatus::Retired) => ("Retired", "state-closed"),
        _ => ("Unknown", "state-new"),
    }
}

/// The number of a resource name when it can be one in an address ("" otherwise).
fn linkable_number(name: &str) -> String {
    let number = number_of(name);
    if is_record_number(number) { number.to_string() } else { String::new() }
}

/// What an incident's state allows (the proto's state machine), for the actions a page offers.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Allowed {
    assign: bool,
    start: bool,
    hold: bool,
    escalate: bool,
    resolve: bool,
    close: bool,
    reopen: bool,
}

impl Allowed {
    /// For an incident in `state`; `mine` when it is assigned to the viewer.
    fn of(state: i32, mine: bool) -> Self {
        let state = IncidentState::try_from(state).ok();
        let open = matches!(
            state,
            Some(
                IncidentState::New
                    | IncidentState::Assigned
                    | IncidentState::InProgress
                    | IncidentState::OnHold
            )
        );
        let working = matches!(
            state,
            Some(IncidentState::Assigned | IncidentState::InProgress | IncidentState::OnHold)
        );
        let resolved = state == Some(IncidentState::Resolved);
        Self {
            assign: open && !mine,
            start: matches!(state, Some(IncidentState::Assigned | IncidentState::OnHold)),
            hold: matches!(state, Some(IncidentState::Assigned | IncidentState::InProgress)),
            escalate: open,
            resolve: working,
            close: resolved,
            reopen: resolved,
        }
    }
}

/// An incident as the pages show it.
pub struct IncidentView {
    pub number: String,
    pub summary: String,
    pub description: String,
    pub state: &'static str,
    pub state_class: &'static str,
    pub priority: String,
    pub tier: String,
    pub caller: String,
    pub assignee: String,
    /// The support group's display name (its resource name when unknown).
    pub group: String,
    pub category: String,
    pub on_hold_reason: &'static str,
    pub resolution_code: &'static str,
    pub resolution_notes: String,
    pub major: bool,
    pub manager_escalated: bool,
    /// The service desk ticket it came from ("" = none).
    pub ticket: String,
    pub opened: Option<TimeView>,
    pub resolved_at: Option<TimeView>,
    /// The earliest due time of its running SLA clocks.
    pub sla_due: Option<TimeView>,
    pub etag: String,
}

impl IncidentView {
    /// `incident`, with group names from `groups` (resource name → display name).
    fn new(incident: &Incident, groups: &HashMap<String, String>) -> Self {
        let (state, state_class) = incident_state_label(incident.state);
        Self {
            number: incident.number.clone(),
            summary: incident.short_description.clone(),
            description: incident.description.clone(),
            state,
            state_class,
            priority: priority_label(incident.priority),
            tier: if incident.support_tier > 0 {
                incident.support_tier.to_string()
            } else {
                "—".to_string()
            },
            caller: incident.caller.clone(),
            assignee: incident.assignee.clone(),
            group: groups
                .get(&incident.assignment_group)
                .cloned()
                .unwrap_or_else(|| incident.assignment_group.clone()),
            category: incident.category.clone(),
            on_hold_reason: on_hold_label(incident.on_hold_reason),
            resolution_code: resolution_label(incident.resolution_code),
            resolution_notes: incident.resolution_notes.clone(),
            major: incident.major,
            manager_escalated: incident.manager_escalated,
            ticket: linkable_number(&incident.service_desk_ticket),
            opened: time_view(incident.open_time.as_ref()),
            resolved_at: time_view(incident.resolve_time.as_ref()),
            sla_due: None,
            etag: incident.etag.clone(),
        }
    }
}

/// A problem as lists and pages show it.
pub struct ProblemView {
    pub number: String,
    pub summary: String,
    pub description: String,
    pub state: &'static str,
    pub state_class: &'static str,
    pub priority: String,
    pub root_cause: String,
    pub workaround: String,
    pub resolution_notes: String,
    pub assignee: String,
    /// Its known error's number ("" = none).
    pub known_error: String,
    pub incident_count: usize,
    pub etag: String,
}

impl ProblemView {
    fn new(problem: &Problem) -> Self {
        let (state, state_class) = problem_state_label(problem.state);
        Self {
            number: problem.number.clone(),
            summary: problem.short_description.clone(),
            description: problem.description.clone(),
            state,
            state_class,
            priority: priority_label(problem.priority),
            root_cause: problem.root_cause.clone(),
            workaround: problem.workaround.clone(),
            resolution_notes: problem.resolution_notes.clone(),
            assignee: problem.assignee.clone(),
            known_error: linkable_number(&problem.known_error),
            incident_count: problem.incidents.len(),
            etag: problem.etag.clone(),
        }
    }
}

/// A known error as pages show it.
pub struct KnownErrorView {
    pub number: String,
    pub summary: String,
    pub symptoms: String,
    pub workaround: String,
    pub status: &'static str,
    pub status_class: &'static str,
    /// The problem it was recorded from ("" = none).
    pub problem: String,
    pub etag: String,
}

impl KnownErrorView {
    fn new(known_error: &KnownError) -> Self {
        let (status, status_class) = known_error_status_label(known_error.status);
        Self {
            number: known_error.number.clone(),
            summary: known_error.short_description.clone(),
            symptoms: known_error.symptoms.clone(),
            workaround: known_error.workaround.clone(),
            status,
            status_class,
            problem: linkable_number(&known_error.problem),
            etag: known_error.etag.clone(),
        }
    }
}

/// A configuration item, linked to its CMDB page.
pub struct CiView {
    pub id: String,
    pub href: String,
    pub label: String,
}

/// `name` (`configurationItems/{id}`) with its display name from `labels` (the id when unknown).
fn ci_view(name: &str, labels: &HashMap<String, String>) -> CiView {
    let id = name.strip_prefix("configurationItems/").unwrap_or(name);
    CiView {
        id: id.to_string(),
        href: format!("/cmdb/items/{}", query_escape(id)),
        label: labels.get(name).cloned().unwrap_or_else(|| id.to_string()),
    }
}

/// A history value (JSON) as text: strings without quotes, "" (unset) as "—", states and
/// priorities by name.
fn history_text(field: &str, json: &str) -> String {
    let parsed = serde_json::from_str::<serde_json::Value>(json);
    if let Ok(serde_json::Value::Number(n)) = &parsed
        && let Some(n) = n.as_i64().and_then(|n| i32::try_from(n).ok())
    {
        match field {
            "state" => return incident_state_label(n).0.to_string(),
            "priority" => return priority_label(n),
            _ => {}
        }
    }
    match parsed {
        _ if json.is_empty() => "—".to_string(),
        Ok(serde_json::Value::String(text)) if text.is_empty() => "—".to_string(),
        Ok(serde_json::Value::String(text)) => text,
        Ok(serde_json::Value::Null) => "—".to_string(),
        Ok(other) => other.to_string(),
        Err(_) => json.to_string(),
    }
}

/// The timeline of `entries`, oldest first.
fn incident_timeline_view(entries: &[IncidentHistoryEntry]) -> Vec<TimelineEntry> {
    let mut out = Vec::with_capacity(entries.len());
    for entry in entries {
        let Some(change) = &entry.change else { continue };
        out.push(TimelineEntry {
            when: time_view(change.change_time.as_ref()),
            actor: change.actor.clone(),
            action: change.action.clone(),
            reason: entry.reason.clone(),
            changes: change
                .changes
                .iter()
                .map(|c| ChangeView {
                    field: c.field.clone(),
                    from: history_text(&c.field, &c.old_value),
                    to: history_text(&c.field, &c.new_value),
                })
                .collect(),
        });
    }
    out
}

// ---- reads every page shares ------------------------------------------------------------------

/// The tenant's support groups (the service desk's). A failure gives none: groups name and offer
/// choices, the pages work without them.
async fn support_groups(state: &AppState, session: &Session) -> Vec<SupportGroup> {
    let request = ListSupportGroupsRequest { page_size: 1000, ..Default::default() };
    match state.gateway.desk().list_support_groups(authed(&session.data, request)).await {
        Ok(response) => response.into_inner().support_groups,
        Err(status) => {
            tracing::debug!(code = ?status.code(), "support groups not available");
            Vec::new()
        }
    }
}

fn group_names(groups: &[SupportGroup]) -> HashMap<String, String> {
    groups.iter().map(|g| (g.name.clone(), g.display_name.clone())).collect()
}

/// The names of the groups `subject` is a member of.
fn groups_of<'a>(groups: &'a [SupportGroup], subject: &str) -> Vec<&'a str> {
    groups.iter().filter(|g| g.members.iter().any(|m| m == subject)).map(|g| g.name.as_str()).collect()
}

/// A group as a choice: its name, and its display name with its tier.
fn group_choice(group: &SupportGroup) -> (String, String) {
    (group.name.clone(), format!("{} (tier {})", group.display_name, group.tier))
}

/// The groups an incident without one can be taken for: the user's own, or all when they are in
/// none (an admin).
fn assignment_choices(groups: &[SupportGroup], subject: &str) -> Vec<(String, String)> {
    let mine: Vec<&SupportGroup> = groups.iter().filter(|g| g.members.iter().any(|m| m == subject)).collect();
    let offered = if mine.is_empty() { groups.iter().collect() } else { mine };
    offered.into_iter().map(group_choice).collect()
}

/// CIs with their display names from the CMDB; without the CMDB they show by id.
async fn ci_views(state: &AppState, session: &Session, names: &[String]) -> Vec<CiView> {
    if names.is_empty() {
        return Vec::new();
    }
    let request = BatchGetConfigurationItemsRequest { names: names.to_vec() };
    let labels: HashMap<String, String> =
        match state.gateway.cmdb().batch_get_configuration_items(authed(&session.data, request)).await {
            Ok(response) => response
                .into_inner()
                .configuration_items
                .into_iter()
                .map(|ci| (ci.name, ci.display_name))
                .collect(),
            Err(status) => {
                tracing::debug!(code = ?status.code(), "configuration item names not available");
                HashMap::new()
            }
        };
    names.iter().map(|name| ci_view(name, &labels)).collect()
}

/// The filter of the SLA clocks of `records`.
fn records_filter(records: &[String]) -> String {
    let parts: Vec<String> = records.iter().map(|r| format!("record = \"{}\"", filter_quote(r))).collect();
    parts.join(" OR ")
}

/// Keeps in `due` the earliest due time per record among `clocks` (only running clocks have one).
fn earliest_due(due: &mut HashMap<String, prost_types::Timestamp>, clocks: &[SlaClock]) {
    for clock in clocks {
        let Some(at) = clock.due_time else { continue };
        if at.seconds == 0 && at.nanos == 0 {
            continue;
        }
        let earlier =
            due.get(&clock.record).is_none_or(|seen| (at.seconds, at.nanos) < (seen.seconds, seen.nanos));
        if earlier {
            due.insert(clock.record.clone(), at);
        }
    }
}

/// When each of `records` is due by its SLA clocks (the earliest running clock). A failure gives
/// none: the countdowns help, the list does not need them.
async fn sla_due_times(state: &AppState, session: &Session, records: &[String]) -> HashMap<String, TimeView> {
    if records.is_empty() {
        return HashMap::new();
    }
    let mut due = HashMap::new();
    for chunk in records.chunks(SLA_RECORDS_PER_CALL) {
        let request = ListSlaClocksRequest {
            page_size: 200,
            page_token: String::new(),
            filter: records_filter(chunk),
            order_by: "due_time".into(),
        };
        let mut clocks = ServiceLevelServiceClient::new(state.gateway.channel());
        match clocks.list_sla_clocks(authed(&session.data, request)).await {
            Ok(response) => earliest_due(&mut due, &response.into_inner().sla_clocks),
            Err(status) => {
                tracing::debug!(code = ?status.code(), "sla clocks not available");
                return HashMap::new();
            }
        }
    }
    due.into_iter().filter_map(|(record, at)| time_view(Some(&at)).map(|view| (record, view))).collect()
}

/// The known errors of `names`, for showing (the first few; each that cannot be read is left out).
async fn known_error_views(state: &AppState, session: &Session, names: &[String]) -> Vec<KnownErrorView> {
    let mut problems = state.gateway.problems();
    let mut out = Vec::new();
    for name in names.iter().take(MAX_KNOWN_ERRORS_SHOWN) {
        match problems
            .get_known_error(authed(&session.data, GetKnownErrorRequest { name: name.clone() }))
            .await
        {
            Ok(response) => out.push(KnownErrorView::new(&response.into_inner())),
            Err(status) => {
                tracing::debug!(code = ?status.code(), known_error = %name, "known error not shown");
            }
        }
    }
    out
}

// ---- incident lists -------------------------------------------------------------------------

/// The lists of `/agent/incidents?view=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IncidentList {
    Mine,
    Groups,
    Unassigned,
    Open,
}

/// Address name, list, tab label.
const INCIDENT_LISTS: [(&str, IncidentList, &str); 4] = [
    ("mine", IncidentList::Mine, "Assigned to me"),
    ("group", IncidentList::Groups, "My groups"),
    ("unassigned", IncidentList::Unassigned, "Unassigned"),
    ("open", IncidentList::Open, "All open"),
];

/// The ListIncidents filter of `list` for `subject`, a member of `my_groups`; `None` when the list
/// cannot hold anything (no groups).
fn list_filter(list: IncidentList, subject: &str, my_groups: &[&str]) -> Option<String> {
    match list {
        IncidentList::Mine => {
            Some(format!("assignee = \"{}\" AND {OPEN_INCIDENT_STATES}", filter_quote(subject)))
        }
        IncidentList::Groups => {
            if my_groups.is_empty() {
                return None;
            }
            let groups: Vec<String> = my_groups
                .iter()
                .take(MAX_GROUPS_IN_FILTER)
                .map(|g| format!("assignment_group = \"{}\"", filter_quote(g)))
                .collect();
            Some(format!("({}) AND {OPEN_INCIDENT_STATES}", groups.join(" OR ")))
        }
        IncidentList::Unassigned => Some(format!("assignee = \"\" AND {OPEN_INCIDENT_STATES}")),
        IncidentList::Open => Some(OPEN_INCIDENT_STATES.to_string()),
    }
}

/// `/agent/incidents?view=…&page=…` and `/problems?view=…&page=…` (`page_token` is taken for
/// `page`).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ListQuery {
    pub view: String,
    #[serde(alias = "page_token")]
    pub page: String,
    pub trail: String,
}

#[derive(Template)]
#[template(path = "incidents/list.html")]
pub struct IncidentListPage {
    layout: Layout,
    area: Vec<Tab>,
    heading: &'static str,
    tabs: Vec<Tab>,
    incidents: Vec<IncidentView>,
    /// Why the list is empty when that is not the incidents' doing ("" = it is not).
    empty_reason: &'static str,
    pager: Pager,
}

/// GET `/agent/incidents`: open incidents of one view, highest priority first.
pub async fn incidents(
    State(state): State<AppState>,
    session: Session,
    Query(query): Query<ListQuery>,
) -> Result<Response, PageError> {
    require_agent(&session)?;
    let (view, list, heading) =
        INCIDENT_LISTS.iter().copied().find(|(name, _, _)| *name == query.view).unwrap_or(INCIDENT_LISTS[0]);
    let page = PageQuery { page: query.page, trail: query.trail };
    let groups = support_groups(&state, &session).await;
    let my_groups = groups_of(&groups, &session.data.subject);
    let (listed, next_page_token, empty_reason) = match list_filter(list, &session.data.subject, &my_groups) {
        None => (Vec::new(), String::new(), "You are not a member of any support group."),
        Some(filter) => {
            let request = ListIncidentsRequest {
                page_size: PAGE_SIZE,
                page_token: page.page.clone(),
                filter,
                order_by: "priority".into(),
                query: String::new(),
            };
            let response = state
                .gateway
                .incidents()
                .list_incidents(authed(&session.data, request))
                .await
                .map_err(|status| page_error(&status, &session.here))?
                .into_inner();
            (response.incidents, response.next_page_token, "")
        }
    };
    let records: Vec<String> = listed.iter().map(|i| i.name.clone()).collect();
    let due = sla_due_times(&state, &session, &records).await;
    let names = group_names(&groups);
    let mut rows = Vec::with_capacity(listed.len());
    for incident in &listed {
        let mut row = IncidentView::new(incident, &names);
        row.sla_due = due.get(&incident.name).cloned();
        rows.push(row);
    }
    let tabs = INCIDENT_LISTS
        .iter()
        .map(|(name, _, label)| Tab {
            id: format!("view-{name}"),
            href: format!("/agent/incidents?view={name}"),
            label,
            current: *name == view,
        })
        .collect();
    let page_view = IncidentListPage {
        layout: Layout::new(heading, Some(&session.data), Section::Agent),
        area: area_nav(&session.data, Area::Incidents),
        heading,
        tabs,
        incidents: rows,
        empty_reason,
        pager: pager(&format!("/agent/incidents?view={view}"), &page, &next_page_token),
    };
    Ok(render(StatusCode::OK, &page_view))
}

// ---- one incident ---------------------------------------------------------------------------

#[derive(Template)]
#[template(path = "incidents/incident.html")]
pub struct IncidentPage {
    layout: Layout,
    area: Vec<Tab>,
    csrf: String,
    notice: &'static str,
    /// Messages of a refused action (the API's, e.g. which transitions are legal).
    messages: Vec<String>,
    incident: IncidentView,
    cis: Vec<CiView>,
    problems: Vec<ProblemView>,
    known_errors: Vec<KnownErrorView>,
    suggested_workaround: String,
    /// Numbers of possible duplicates.
    duplicates: Vec<String>,
    timeline: Vec<TimelineEntry>,
    /// More history than the page reads.
    timeline_truncated: bool,
    note_request_id: String,
    note_form: FormView,
    /// The incident's group, sent with "assign to me" ("" = the form asks for one).
    assign_group: String,
    assign_form: Option<FormView>,
    can_start: bool,
    hold_form: Option<FormView>,
    escalate_form: Option<FormView>,
    resolve_form: Option<FormView>,
    can_close: bool,
    reopen_form: Option<FormView>,
    link_form: FormView,
}

impl IncidentPage {
    pub fn has_notice(&self) -> bool {
        !self.notice.is_empty()
    }

    pub fn has_state_actions(&self) -> bool {
        self.assign_form.is_some() || self.can_start || self.can_close
    }
}

/// A confirmation for `?done=…` on an incident.
fn incident_notice(done: &str) -> &'static str {
    match done {
        "noted" => "The work note was added.",
        "assigned" => "The incident is assigned to you.",
        "started" => "The incident is in progress.",
        "held" => "The incident is on hold.",
        "escalated" => "The incident was escalated.",
        "resolved" => "The incident was resolved.",
        "closed" => "The incident was closed.",
        "reopened" => "The incident was reopened.",
        "linked" => "The incident is linked to the problem.",
        _ => "",
    }
}

/// The whole timeline of `name`, oldest first, and whether it goes on beyond what was read.
async fn incident_timeline(
    state: &AppState,
    session: &Session,
    name: &str,
) -> Result<(Vec<TimelineEntry>, bool), Status> {
    let mut incidents = state.gateway.incidents();
    let mut entries = Vec::new();
    let mut page_token = String::new();
    for _ in 0..TIMELINE_PAGES {
        let request = ListIncidentTimelineRequest {
            parent: name.to_string(),
            page_size: TIMELINE_PAGE_SIZE,
            page_token: page_token.clone(),
        };
        let response = incidents.list_incident_timeline(authed(&session.data, request)).await?.into_inner();
        entries.extend(incident_timeline_view(&response.entries));
        if response.next_page_token.is_empty() {
            return Ok((entries, false));
        }
        page_token = response.next_page_token;
    }
    Ok((entries, true))
}

/// The problems `incident` is linked to. A failure gives none (logged): the incident page shows
/// without them.
async fn linked_problems(state: &AppState, session: &Session, incident: &str) -> Vec<ProblemView> {
    let request = ListProblemsRequest {
        page_size: 50,
        page_token: String::new(),
        filter: format!("incidents = \"{}\"", filter_quote(incident)),
        order_by: "create_time desc".into(),
    };
    match state.gateway.problems().list_problems(authed(&session.data, request)).await {
        Ok(response) => response.into_inner().problems.iter().map(ProblemView::new).collect(),
        Err(status) => {
            tracing::debug!(code = ?status.code(), "linked problems not available");
            Vec::new()
        }
    }
}

/// The incident page of `number`, with the values and errors of a `refused` form.
async fn incident_page(
    state: &AppState,
    session: &Session,
    number: &str,
    notice: &'static str,
    refused: &Refused,
    status: StatusCode,
) -> Result<Response, PageError> {
    let name = incident_name(number);
    let incident = state
        .gateway
        .incidents()
        .get_incident(authed(&session.data, GetIncidentRequest { name: name.clone() }))
        .await
        .map_err(|status| page_error(&status, &session.here))?
        .into_inner();
    let records = [name.clone()];
    let (timeline, groups, cis, problems, known_errors, due) = tokio::join!(
        incident_timeline(state, session, &name),
        support_groups(state, session),
        ci_views(state, session, &incident.configuration_items),
        linked_problems(state, session, &name),
        known_error_views(state, session, &incident.known_errors),
        sla_due_times(state, session, &records),
    );
    let (timeline, timeline_truncated) = timeline.map_err(|status| page_error(&status, &session.here))?;
    let mut view = IncidentView::new(&incident, &group_names(&groups));
    view.sla_due = due.get(&name).cloned();
    let allowed = Allowed::of(incident.state, incident.assignee == session.data.subject);
    let mut forms = PageForms::new(refused);

    let note_form = forms.form(
        "note",
        vec![
            FieldView::new("note-text", "text", "Work note", FieldKind::TextArea)
                .required(true)
                .value(refused.value("note", "text", ""))
                .hint("Internal: visible to agents only. It is kept in the timeline."),
        ],
    );
    let note_request_id = request_id_of(&refused.value("note", "request_id", ""));

    let assign_choices = assignment_choices(&groups, &session.data.subject);
    let needs_group = incident.assignment_group.is_empty();
    let assign_form = (allowed.assign && !(needs_group && assign_choices.is_empty())).then(|| {
        let mut fields = Vec::new();
        if needs_group {
            let first = assign_choices.first().map(|(value, _)| value.as_str()).unwrap_or_default();
            fields.push(
                FieldView::new("assign-group", "group", "Group", FieldKind::Select)
                    .required(true)
                    .value(refused.value("assign", "group", first))
                    .choices(assign_choices.iter().map(|(value, label)| (value.as_str(), label.as_str())))
                    .hint("The incident has no group yet: the group you work it for."),
            );
        }
        forms.form("assign", fields)
    });

    let hold_form = allowed.hold.then(|| {
        forms.form(
            "hold",
            vec![
                FieldView::new("hold-on_hold_reason", "on_hold_reason", "Why it waits", FieldKind::Select)
                    .required(true)
                    .value(refused.value("hold", "on_hold_reason", ""))
                    .choices(ON_HOLD_REASONS)
                    .hint("The SLA clocks pause while the incident is on hold."),
            ],
        )
    });

    let tier = incident.support_tier.max(1);
    let higher: Vec<(String, String)> = groups.iter().filter(|g| g.tier > tier).map(group_choice).collect();
    // The current group's escalation group when it is one of them, else the first.
    let next_group = groups
        .iter()
        .find(|g| g.name == incident.assignment_group)
        .map(|g| g.escalation_group.as_str())
        .filter(|wanted| higher.iter().any(|(value, _)| value.as_str() == *wanted))
        .or_else(|| higher.first().map(|(value, _)| value.as_str()))
        .unwrap_or_default();
    let escalate_form = allowed.escalate.then(|| {
        let default_kind = if higher.is_empty() { "manager" } else { "tier" };
        let group_hint = if higher.is_empty() {
            "No group of a higher tier exists: ask the group's manager instead."
        } else {
            "For a higher tier: the group that takes the incident over."
        };
        forms.form(
            "escalate",
            vec![
                FieldView::new("escalate-kind", "kind", "Escalate", FieldKind::Radio)
                    .required(true)
                    .value(refused.value("escalate", "kind", default_kind))
                    .choices([
                        ("tier", "To a group of a higher tier"),
                        ("manager", "To the group's manager"),
                    ]),
                FieldView::new("escalate-group", "group", "Group of the higher tier", FieldKind::Select)
                    .value(refused.value("escalate", "group", next_group))
                    .choices(higher.iter().map(|(value, label)| (value.as_str(), label.as_str())))
                    .hint(group_hint),
                FieldView::new("escalate-reason", "reason", "Reason", FieldKind::TextArea)
                    .required(true)
                    .value(refused.value("escalate", "reason", ""))
                    .hint("Why; recorded in the timeline."),
            ],
        )
    });

    let resolve_form = allowed.resolve.then(|| {
        forms.form(
            "resolve",
            vec![
                FieldView::new(
                    "resolve-resolution_code",
                    "resolution_code",
                    "Resolution code",
                    FieldKind::Select,
                )
                .required(true)
                .value(refused.value("resolve", "resolution_code", ""))
                .choices(RESOLUTION_CODES),
                FieldView::new(
                    "resolve-resolution_notes",
                    "resolution_notes",
                    "Resolution notes",
                    FieldKind::TextArea,
                )
                .required(true)
                .value(refused.value("resolve", "resolution_notes", ""))
                .hint("What was done; the caller sees it."),
            ],
        )
    });

    let reopen_form = allowed.reopen.then(|| {
        forms.form(
            "reopen",
            vec![
                FieldView::new(
                    "reopen-reason",
                    "reason",
                    "Why the resolution did not hold",
                    FieldKind::TextArea,
                )
                .required(true)
                .value(refused.value("reopen", "reason", "")),
            ],
        )
    });

    let link_form = forms.form(
        "link",
        vec![
            FieldView::new("link-problem", "problem", "Problem number", FieldKind::Text)
                .required(true)
                .max_length(40)
                .value(refused.value("link", "problem", ""))
                .hint("For example PRB0000001."),
        ],
    );

    let duplicates = incident
        .possible_duplicates
        .iter()
        .map(String::as_str)
        .map(linkable_number)
        .filter(|number| !number.is_empty())
        .collect();
    let page = IncidentPage {
        layout: Layout::new(format!("{} {}", view.number, view.summary), Some(&session.data), Section::Agent),
        area: area_nav(&session.data, Area::Incidents),
        csrf: session.data.csrf.clone(),
        notice,
        messages: forms.messages(),
        cis,
        problems,
        known_errors,
        suggested_workaround: incident.suggested_workaround.clone(),
        duplicates,
        timeline,
        timeline_truncated,
        note_request_id,
        note_form,
        assign_group: incident.assignment_group.clone(),
        assign_form,
        can_start: allowed.start,
        hold_form,
        escalate_form,
        resolve_form,
        can_close: allowed.close,
        reopen_form,
        link_form,
        incident: view,
    };
    Ok(render(status, &page))
}

/// GET `/agent/incidents/{number}`.
pub async fn incident(
    State(state): State<AppState>,
    session: Session,
    Path(number): Path<String>,
    Query(done): Query<DoneQuery>,
) -> Result<Response, PageError> {
    require_agent(&session)?;
    let number = checked(&number, "incident")?;
    incident_page(&state, &session, number, incident_notice(&done.done), &Refused::default(), StatusCode::OK)
        .await
}

fn incident_path(number: &str) -> String {
    format!("/agent/incidents/{number}")
}

/// Where an incident action ends: back to the incident with a notice (303), or its page again
/// with the refused form (422).
async fn incident_answer(
    state: &AppState,
    session: &Session,
    number: &str,
    outcome: Result<&'static str, Refused>,
) -> Result<Response, PageError> {
    match outcome {
        Ok(done) => Ok(Redirect::to(&format!("{}?done={done}", incident_path(number))).into_response()),
        Err(refused) => {
            incident_page(state, session, number, "", &refused, StatusCode::UNPROCESSABLE_ENTITY).await
        }
    }
}

/// The posted work-note form.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct NoteForm {
    pub text: String,
    pub request_id: String,
}

/// POST `/agent/incidents/{number}/notes`: adds a work note (once per page, by its request id).
pub async fn add_note(
    State(state): State<AppState>,
    session: Session,
    Path(number): Path<String>,
    Form(form): Form<NoteForm>,
) -> Result<Response, PageError> {
    require_agent(&session)?;
    let number = checked(&number, "incident")?;
    let mut errors = FormErrors::default();
    if form.text.trim().is_empty() {
        errors.add("text", "is required");
    } else {
        let request = AddWorkNoteRequest {
            name: incident_name(number),
            text: form.text.trim().to_string(),
            kind: NoteKind::WorkNote as i32,
            request_id: request_id_of(&form.request_id),
        };
        match state.gateway.incidents().add_work_note(authed(&session.data, request)).await {
            Ok(_) => return incident_answer(&state, &session, number, Ok("noted")).await,
            Err(status) => errors = refused_call(&status, &incident_path(number), &[("text", "text")])?,
        }
    }
    let refused = Refused::new("note", errors, vec![("text", form.text), ("request_id", form.request_id)]);
    incident_answer(&state, &session, number, Err(refused)).await
}

/// The posted "assign to me" form.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct AssignForm {
    pub group: String,
    pub etag: String,
}

/// POST `/agent/incidents/{number}/assign`: assigns the incident to the signed-in agent, in its
/// group (or the one chosen when it has none).
pub async fn assign_to_me(
    State(state): State<AppState>,
    session: Session,
    Path(number): Path<String>,
    Form(form): Form<AssignForm>,
) -> Result<Response, PageError> {
    require_agent(&session)?;
    let number = checked(&number, "incident")?;
    let mut errors = FormErrors::default();
    if form.group.trim().is_empty() {
        errors.add("group", "Choose the group you work the incident for");
    } else {
        let request = AssignIncidentRequest {
            name: incident_name(number),
            assignment_group: form.group.trim().to_string(),
            assignee: session.data.subject.clone(),
            etag: form.etag.clone(),
        };
        match state.gateway.incidents().assign_incident(authed(&session.data, request)).await {
            Ok(_) => return incident_answer(&state, &session, number, Ok("assigned")).await,
            Err(status) => {
                errors = refused_call(&status, &incident_path(number), &[("assignment_group", "group")])?;
            }
        }
    }
    let refused = Refused::new("assign", errors, vec![("group", form.group)]);
    incident_answer(&state, &session, number, Err(refused)).await
}

/// The posted form of an action that only needs the etag (in progress, close).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct EtagForm {
    pub etag: String,
}

/// POST `/agent/incidents/{number}/start`: puts the incident in progress.
pub async fn start_work(
    State(state): State<AppState>,
    session: Session,
    Path(number): Path<String>,
    Form(form): Form<EtagForm>,
) -> Result<Response, PageError> {
    require_agent(&session)?;
    let number = checked(&number, "incident")?;
    let request = UpdateIncidentRequest {
        incident: Some(Incident {
            name: incident_name(number),
            state: IncidentState::InProgress as i32,
            etag: form.etag,
            ..Default::default()
        }),
        update_mask: mask(&["state"]),
    };
    let outcome = match state.gateway.incidents().update_incident(authed(&session.data, request)).await {
        Ok(_) => Ok("started"),
        Err(status) => {
            Err(Refused::new("start", refused_call(&status, &incident_path(number), &[])?, Vec::new()))
        }
    };
    incident_answer(&state, &session, number, outcome).await
}

/// The posted on-hold form.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct HoldForm {
    pub on_hold_reason: String,
    pub etag: String,
}

/// POST `/agent/incidents/{number}/hold`: puts the incident on hold for a reason.
pub async fn put_on_hold(
    State(state): State<AppState>,
    session: Session,
    Path(number): Path<String>,
    Form(form): Form<HoldForm>,
) -> Result<Response, PageError> {
    require_agent(&session)?;
    let number = checked(&number, "incident")?;
    let mut errors = FormErrors::default();
    match choice_number(&form.on_hold_reason, &ON_HOLD_REASONS) {
        None => errors.add("on_hold_reason", "Choose why the incident waits"),
        Some(reason) => {
            let request = UpdateIncidentRequest {
                incident: Some(Incident {
                    name: incident_name(number),
                    state: IncidentState::OnHold as i32,
                    on_hold_reason: reason,
                    etag: form.etag.clone(),
                    ..Default::default()
                }),
                update_mask: mask(&["state", "on_hold_reason"]),
            };
            match state.gateway.incidents().update_incident(authed(&session.data, request)).await {
                Ok(_) => return incident_answer(&state, &session, number, Ok("held")).await,
                Err(status) => {
                    let fields = [("incident.on_hold_reason", "on_hold_reason")];
                    errors = refused_call(&status, &incident_path(number), &fields)?;
                }
            }
        }
    }
    let refused = Refused::new("hold", errors, vec![("on_hold_reason", form.on_hold_reason)]);
    incident_answer(&state, &session, number, Err(refused)).await
}

/// The posted escalation form.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct EscalateForm {
    /// `tier` (functional, to a group of a higher tier) or `manager` (hierarchical).
    pub kind: String,
    pub group: String,
    pub reason: String,
    pub etag: String,
}

/// POST `/agent/incidents/{number}/escalate`: to a group of a higher tier, or to the group's
/// manager.
pub async fn escalate(
    State(state): State<AppState>,
    session: Session,
    Path(number): Path<String>,
    Form(form): Form<EscalateForm>,
) -> Result<Response, PageError> {
    require_agent(&session)?;
    let number = checked(&number, "incident")?;
    let mut errors = FormErrors::default();
    let kind = match form.kind.as_str() {
        "tier" => Some(EscalationKind::Functional),
        "manager" => Some(EscalationKind::Hierarchical),
        _ => None,
    };
    let functional = kind == Some(EscalationKind::Functional);
    if kind.is_none() {
        errors.add("kind", "Choose where the incident goes");
    }
    if functional && form.group.trim().is_empty() {
        errors.add("group", "Choose the group of the higher tier");
    }
    if form.reason.trim().is_empty() {
        errors.add("reason", "is required");
    }
    if errors.is_empty()
        && let Some(kind) = kind
    {
        let group = if functional { form.group.trim().to_string() } else { String::new() };
        // The group's own tier; 0 lets the service take the next one.
        let support_tier = if functional {
            support_groups(&state, &session).await.iter().find(|g| g.name == group).map_or(0, |g| g.tier)
        } else {
            0
        };
        let request = EscalateIncidentRequest {
            name: incident_name(number),
            kind: kind as i32,
            assignment_group: group,
            support_tier,
            reason: form.reason.trim().to_string(),
            etag: form.etag.clone(),
        };
        match state.gateway.incidents().escalate_incident(authed(&session.data, request)).await {
            Ok(_) => return incident_answer(&state, &session, number, Ok("escalated")).await,
            Err(status) => {
                let fields = [
                    ("reason", "reason"),
                    ("assignment_group", "group"),
                    ("support_tier", "group"),
                    ("kind", "kind"),
                ];
                errors = refused_call(&status, &incident_path(number), &fields)?;
            }
        }
    }
    let refused = Refused::new(
        "escalate",
        errors,
        vec![("kind", form.kind), ("group", form.group), ("reason", form.reason)],
    );
    incident_answer(&state, &session, number, Err(refused)).await
}

/// The posted resolution form.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ResolveForm {
    pub resolution_code: String,
    pub resolution_notes: String,
    pub etag: String,
}

/// POST `/agent/incidents/{number}/resolve`: resolves with a resolution code and notes.
pub async fn resolve(
    State(state): State<AppState>,
    session: Session,
    Path(number): Path<String>,
    Form(form): Form<ResolveForm>,
) -> Result<Response, PageError> {
    require_agent(&session)?;
    let number = checked(&number, "incident")?;
    let mut errors = FormErrors::default();
    let code = choice_number(&form.resolution_code, &RESOLUTION_CODES);
    if code.is_none() {
        errors.add("resolution_code", "Choose how the incident was resolved");
    }
    if form.resolution_notes.trim().is_empty() {
        errors.add("resolution_notes", "is required");
    }
    if errors.is_empty()
        && let Some(code) = code
    {
        let request = ResolveIncidentRequest {
            name: incident_name(number),
            resolution_code: code,
            resolution_notes: form.resolution_notes.trim().to_string(),
            etag: form.etag.clone(),
        };
        match state.gateway.incidents().resolve_incident(authed(&session.data, request)).await {
            Ok(_) => return incident_answer(&state, &session, number, Ok("resolved")).await,
            Err(status) => {
                let fields =
                    [("resolution_code", "resolution_code"), ("resolution_notes", "resolution_notes")];
                errors = refused_call(&status, &incident_path(number), &fields)?;
            }
        }
    }
    let refused = Refused::new(
        "resolve",
        errors,
        vec![("resolution_code", form.resolution_code), ("resolution_notes", form.resolution_notes)],
    );
    incident_answer(&state, &session, number, Err(refused)).await
}

/// POST `/agent/incidents/{number}/close`: closes a resolved incident.
pub async fn close(
    State(state): State<AppState>,
    session: Session,
    Path(number): Path<String>,
    Form(form): Form<EtagForm>,
) -> Result<Response, PageError> {
    require_agent(&session)?;
    let number = checked(&number, "incident")?;
    let request = CloseIncidentRequest { name: incident_name(number), etag: form.etag };
    let outcome = match state.gateway.incidents().close_incident(authed(&session.data, request)).await {
        Ok(_) => Ok("closed"),
        Err(status) => {
            Err(Refused::new("close", refused_call(&status, &incident_path(number), &[])?, Vec::new()))
        }
    };
    incident_answer(&state, &session, number, outcome).await
}

/// The posted reopen form.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ReopenForm {
    pub reason: String,
    pub etag: String,
}

/// POST `/agent/incidents/{number}/reopen`: back to work on a resolved incident, with the reason.
pub async fn reopen(
    State(state): State<AppState>,
    session: Session,
    Path(number): Path<String>,
    Form(form): Form<ReopenForm>,
) -> Result<Response, PageError> {
    require_agent(&session)?;
    let number = checked(&number, "incident")?;
    let mut errors = FormErrors::default();
    if form.reason.trim().is_empty() {
        errors.add("reason", "is required");
    } else {
        let request = ReopenIncidentRequest {
            name: incident_name(number),
            reason: form.reason.trim().to_string(),
            etag: form.etag.clone(),
        };
        match state.gateway.incidents().reopen_incident(authed(&session.data, request)).await {
            Ok(_) => return incident_answer(&state, &session, number, Ok("reopened")).await,
            Err(status) => errors = refused_call(&status, &incident_path(number), &[("reason", "reason")])?,
        }
    }
    let refused = Refused::new("reopen", errors, vec![("reason", form.reason)]);
    incident_answer(&state, &session, number, Err(refused)).await
}

/// The posted link-to-a-problem form.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct LinkForm {
    pub problem: String,
}

/// A problem number as typed (`PRB0000001`, `prb0000001` or `problems/PRB0000001`), upper-cased;
/// `None` when it cannot be one.
fn problem_number_of(text: &str) -> Option<String> {
    let text = text.trim();
    let number = text.strip_prefix("problems/").unwrap_or(text).to_ascii_uppercase();
    let digits = number.strip_prefix("PRB")?;
    let well_formed = !digits.is_empty() && digits.len() <= 20 && digits.bytes().all(|b| b.is_ascii_digit());
    well_formed.then_some(number)
}

/// Adds `incident` to the incidents of problem `number`, with the problem's etag so a concurrent
/// edit of the problem is not lost. `None` when it is linked (or already was), else the form's
/// errors: the problem number's next to its field.
async fn link_to_problem(
    state: &AppState,
    session: &Session,
    incident: &str,
    number: &str,
    page: &str,
) -> Result<Option<FormErrors>, PageError> {
    let name = problem_name(number);
    let mut problems = state.gateway.problems();
    let problem =
        match problems.get_problem(authed(&session.data, GetProblemRequest { name: name.clone() })).await {
            Ok(response) => response.into_inner(),
            Err(status) if status.code() == Code::NotFound => {
                return Ok(Some(field_error("problem", format!("There is no problem {number}."))));
            }
            Err(status) => return form_errors(&status, page, &|_| None).map(Some),
        };
    if problem.incidents.iter().any(|linked| linked == incident) {
        return Ok(None);
    }
    let mut incidents = problem.incidents;
    incidents.push(incident.to_string());
    let request = UpdateProblemRequest {
        problem: Some(Problem { name, incidents, etag: problem.etag, ..Default::default() }),
        update_mask: mask(&["incidents"]),
    };
    match problems.update_problem(authed(&session.data, request)).await {
        Ok(_) => Ok(None),
        Err(status) if status.code() == Code::PermissionDenied => Ok(Some(field_error(
            "problem",
            "Your roles cannot change problems: ask a problem manager or a tier-2 or tier-3 engineer \
             to link it.",
        ))),
        Err(status) => form_errors(&status, page, &|path| {
            (path == "problem.name" || path.starts_with("problem.incidents")).then_some("problem".to_string())
        })
        .map(Some),
    }
}

/// POST `/agent/incidents/{number}/problem`: links the incident to a problem by its number.
pub async fn link_problem(
    State(state): State<AppState>,
    session: Session,
    Path(number): Path<String>,
    Form(form): Form<LinkForm>,
) -> Result<Response, PageError> {
    require_agent(&session)?;
    let number = checked(&number, "incident")?;
    let page = incident_path(number);
    let incident = incident_name(number);
    // The problem service takes any well-formed incident name: make sure this one exists for the
    // user before it is linked.
    state
        .gateway
        .incidents()
        .get_incident(authed(&session.data, GetIncidentRequest { name: incident.clone() }))
        .await
        .map_err(|status| page_error(&status, &page))?;
    let errors = match problem_number_of(&form.problem) {
        None => field_error("problem", "Enter a problem number, such as PRB0000001"),
        Some(problem) => match link_to_problem(&state, &session, &incident, &problem, &page).await? {
            None => return incident_answer(&state, &session, number, Ok("linked")).await,
            Some(errors) => errors,
        },
    };
    let refused = Refused::new("link", errors, vec![("problem", form.problem)]);
    incident_answer(&state, &session, number, Err(refused)).await
}

// ---- problems -------------------------------------------------------------------------------

/// Address name, filter ("" = all), tab label.
const PROBLEM_LISTS: [(&str, &str, &str); 2] =
    [("open", OPEN_PROBLEM_STATES, "Open problems"), ("all", "", "All problems")];

#[derive(Template)]
#[template(path = "incidents/problems.html")]
pub struct ProblemListPage {
    layout: Layout,
    area: Vec<Tab>,
    heading: &'static str,
    tabs: Vec<Tab>,
    problems: Vec<ProblemView>,
    pager: Pager,
}

/// GET `/problems`: problems, newest first.
pub async fn problems(
    State(state): State<AppState>,
    session: Session,
    Query(query): Query<ListQuery>,
) -> Result<Response, PageError> {
    require_problem_reader(&session)?;
    let (view, filter, heading) =
        PROBLEM_LISTS.iter().copied().find(|(name, _, _)| *name == query.view).unwrap_or(PROBLEM_LISTS[0]);
    let page = PageQuery { page: query.page, trail: query.trail };
    let request = ListProblemsRequest {
        page_size: PAGE_SIZE,
        page_token: page.page.clone(),
        filter: filter.to_string(),
        order_by: "create_time desc".into(),
    };
    let listed = state
        .gateway
        .problems()
        .list_problems(authed(&session.data, request))
        .await
        .map_err(|status| page_error(&status, &session.here))?
        .into_inner();
    let tabs = PROBLEM_LISTS
        .iter()
        .map(|(name, _, label)| Tab {
            id: format!("view-{name}"),
            href: format!("/problems?view={name}"),
            label,
            current: *name == view,
        })
        .collect();
    let page_view = ProblemListPage {
        layout: Layout::new(heading, Some(&session.data), Section::Agent),
        area: area_nav(&session.data, Area::Problems),
        heading,
        tabs,
        problems: listed.problems.iter().map(ProblemView::new).collect(),
        pager: pager(&format!("/problems?view={view}"), &page, &listed.next_page_token),
    };
    Ok(render(StatusCode::OK, &page_view))
}

#[derive(Template)]
#[template(path = "incidents/problem.html")]
pub struct ProblemPage {
    layout: Layout,
    area: Vec<Tab>,
    csrf: String,
    notice: &'static str,
    messages: Vec<String>,
    problem: ProblemView,
    group: String,
    cis: Vec<CiView>,
    /// Numbers of the linked incidents.
    incidents: Vec<String>,
    /// Whether the viewer may open incident pages (agents).
    incident_links: bool,
    known_errors: Vec<KnownErrorView>,
    /// Numbers of the change requests raised for it.
    changes: Vec<String>,
    root_cause_form: Option<FormView>,
    state_form: Option<FormView>,
    known_error_form: Option<FormView>,
    known_error_request_id: String,
}

impl ProblemPage {
    pub fn has_notice(&self) -> bool {
        !self.notice.is_empty()
    }
}

/// A confirmation for `?done=…` on a problem.
fn problem_notice(done: &str) -> &'static str {
    match done {
        "root-cause" => "The root cause and workaround were recorded.",
        "state" => "The problem moved to its next state.",
        _ => "",
    }
}

/// The known errors recorded from problem `name`. A failure gives none (logged).
async fn problem_known_errors(state: &AppState, session: &Session, name: &str) -> Vec<KnownErrorView> {
    let request = ListKnownErrorsRequest {
        page_size: 50,
        page_token: String::new(),
        filter: format!("problem = \"{}\"", filter_quote(name)),
        order_by: "create_time desc".into(),
        query: String::new(),
    };
    match state.gateway.problems().list_known_errors(authed(&session.data, request)).await {
        Ok(response) => response.into_inner().known_errors.iter().map(KnownErrorView::new).collect(),
        Err(status) => {
            tracing::debug!(code = ?status.code(), "known errors of the problem not available");
            Vec::new()
        }
    }
}

/// The problem page of `number`, with the values and errors of a `refused` form.
async fn problem_page(
    state: &AppState,
    session: &Session,
    number: &str,
    notice: &'static str,
    refused: &Refused,
    status: StatusCode,
) -> Result<Response, PageError> {
    let name = problem_name(number);
    let problem = state
        .gateway
        .problems()
        .get_problem(authed(&session.data, GetProblemRequest { name: name.clone() }))
        .await
        .map_err(|status| page_error(&status, &session.here))?
        .into_inner();
    let (cis, known_errors, groups) = tokio::join!(
        ci_views(state, session, &problem.configuration_items),
        problem_known_errors(state, session, &name),
        support_groups(state, session),
    );
    let writer = session.data.has_any_role(PROBLEM_WRITERS);
    let open = ProblemState::try_from(problem.state).is_ok_and(|s| {
        !matches!(s, ProblemState::Resolved | ProblemState::Closed | ProblemState::Unspecified)
    });
    let mut forms = PageForms::new(refused);

    let root_cause_form = (writer && open).then(|| {
        forms.form(
            "root-cause",
            vec![
                FieldView::new("root-cause-root_cause", "root_cause", "Root cause", FieldKind::TextArea)
                    .required(true)
                    .value(refused.value("root-cause", "root_cause", &problem.root_cause)),
                FieldView::new("root-cause-workaround", "workaround", "Workaround", FieldKind::TextArea)
                    .value(refused.value("root-cause", "workaround", &problem.workaround))
                    .hint("How to reduce or avoid the impact until the fix is in place."),
            ],
        )
    });

    let next_states: Vec<(String, &'static str)> = problem_next_states(problem.state)
        .iter()
        .map(|s| ((*s as i32).to_string(), problem_state_label(*s as i32).0))
        .collect();
    let state_form = (writer && !next_states.is_empty()).then(|| {
        let first = next_states.first().map(|(value, _)| value.as_str()).unwrap_or_default();
        forms.form(
            "state",
            vec![
                FieldView::new("state-state", "state", "Next state", FieldKind::Select)
                    .required(true)
                    .value(refused.value("state", "state", first))
                    .choices(next_states.iter().map(|(value, label)| (value.as_str(), *label))),
            ],
        )
    });

    let known_error_form = (writer && problem.known_error.is_empty()).then(|| {
        forms.form(
            "known-error",
            vec![
                FieldView::new(
                    "new-known-error-short_description",
                    "short_description",
                    "Summary",
                    FieldKind::Text,
                )
                .required(true)
                .max_length(300)
                .value(refused.value(
                    "known-error",
                    "short_description",
                    &problem.short_description,
                )),
                FieldView::new("new-known-error-symptoms", "symptoms", "Symptoms", FieldKind::TextArea)
                    .required(true)
                    .value(refused.value("known-error", "symptoms", ""))
                    .hint("How the error shows itself: agents match incidents by it."),
                FieldView::new("new-known-error-workaround", "workaround", "Workaround", FieldKind::TextArea)
                    .required(true)
                    .value(refused.value("known-error", "workaround", &problem.workaround)),
                FieldView::new(
                    "new-known-error-publish",
                    "publish",
                    "Publish it to agents now",
                    FieldKind::Checkbox,
                )
                .value(refused.value("known-error", "publish", "true")),
            ],
        )
    });
    let known_error_request_id = request_id_of(&refused.value("known-error", "request_id", ""));

    let group = group_names(&groups)
        .remove(&problem.assignment_group)
        .unwrap_or_else(|| problem.assignment_group.clone());
    let incidents =
        problem.incidents.iter().map(String::as_str).map(linkable_number).filter(|n| !n.is_empty()).collect();
    let changes = problem.changes.iter().map(|name| number_of(name).to_string()).collect();
    let view = ProblemView::new(&problem);
    let page = ProblemPage {
        layout: Layout::new(format!("{} {}", view.number, view.summary), Some(&session.data), Section::Agent),
        area: area_nav(&session.data, Area::Problems),
        csrf: session.data.csrf.clone(),
        notice,
        messages: forms.messages(),
        group,
        cis,
        incidents,
        incident_links: session.data.has_any_role(AGENT_ROLES),
        known_errors,
        changes,
        root_cause_form,
        state_form,
        known_error_form,
        known_error_request_id,
        problem: view,
    };
    Ok(render(status, &page))
}

/// GET `/problems/{number}`.
pub async fn problem(
    State(state): State<AppState>,
    session: Session,
    Path(number): Path<String>,
    Query(done): Query<DoneQuery>,
) -> Result<Response, PageError> {
    require_problem_reader(&session)?;
    let number = checked(&number, "problem")?;
    problem_page(&state, &session, number, problem_notice(&done.done), &Refused::default(), StatusCode::OK)
        .await
}

fn problem_path(number: &str) -> String {
    format!("/problems/{number}")
}

/// Where a problem action ends: back to the problem with a notice (303), or its page again with
/// the refused form (422).
async fn problem_answer(
    state: &AppState,
    session: &Session,
    number: &str,
    outcome: Result<&'static str, Refused>,
) -> Result<Response, PageError> {
    match outcome {
        Ok(done) => Ok(Redirect::to(&format!("{}?done={done}", problem_path(number))).into_response()),
        Err(refused) => {
            problem_page(state, session, number, "", &refused, StatusCode::UNPROCESSABLE_ENTITY).await
        }
    }
}

/// The posted root-cause form.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RootCauseForm {
    pub root_cause: String,
    pub workaround: String,
    pub etag: String,
}

/// POST `/problems/{number}/root-cause`: records the root cause and the workaround.
pub async fn record_root_cause(
    State(state): State<AppState>,
    session: Session,
    Path(number): Path<String>,
    Form(form): Form<RootCauseForm>,
) -> Result<Response, PageError> {
    require_problem_reader(&session)?;
    let number = checked(&number, "problem")?;
    let mut errors = FormErrors::default();
    if form.root_cause.trim().is_empty() {
        errors.add("root_cause", "is required");
    } else {
        let request = UpdateProblemRequest {
            problem: Some(Problem {
                name: problem_name(number),
                root_cause: form.root_cause.trim().to_string(),
                workaround: form.workaround.trim().to_string(),
                etag: form.etag.clone(),
                ..Default::default()
            }),
            update_mask: mask(&["root_cause", "workaround"]),
        };
        match state.gateway.problems().update_problem(authed(&session.data, request)).await {
            Ok(_) => return problem_answer(&state, &session, number, Ok("root-cause")).await,
            Err(status) => {
                let fields = [("problem.root_cause", "root_cause"), ("problem.workaround", "workaround")];
                errors = refused_call(&status, &problem_path(number), &fields)?;
            }
        }
    }
    let refused = Refused::new(
        "root-cause",
        errors,
        vec![("root_cause", form.root_cause), ("workaround", form.workaround)],
    );
    problem_answer(&state, &session, number, Err(refused)).await
}

/// The posted next-state form.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ProblemStateForm {
    pub state: String,
    pub etag: String,
}

/// POST `/problems/{number}/state`: moves the problem on (the API says which moves are legal).
pub async fn move_problem(
    State(state): State<AppState>,
    session: Session,
    Path(number): Path<String>,
    Form(form): Form<ProblemStateForm>,
) -> Result<Response, PageError> {
    require_problem_reader(&session)?;
    let number = checked(&number, "problem")?;
    let mut errors = FormErrors::default();
    let target = form
        .state
        .trim()
        .parse::<i32>()
        .ok()
        .and_then(|n| ProblemState::try_from(n).ok())
        .filter(|s| *s != ProblemState::Unspecified);
    match target {
        None => errors.add("state", "Choose the next state"),
        Some(target) => {
            let request = UpdateProblemRequest {
                problem: Some(Problem {
                    name: problem_name(number),
                    state: target as i32,
                    etag: form.etag.clone(),
                    ..Default::default()
                }),
                update_mask: mask(&["state"]),
            };
            match state.gateway.problems().update_problem(authed(&session.data, request)).await {
                Ok(_) => return problem_answer(&state, &session, number, Ok("state")).await,
                Err(status) => {
                    errors = refused_call(&status, &problem_path(number), &[("problem.state", "state")])?;
                }
            }
        }
    }
    let refused = Refused::new("state", errors, vec![("state", form.state)]);
    problem_answer(&state, &session, number, Err(refused)).await
}

/// The posted new-known-error form.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct KnownErrorForm {
    pub short_description: String,
    pub symptoms: String,
    pub workaround: String,
    pub publish: String,
    pub request_id: String,
}

/// POST `/problems/{number}/known-errors`: records a known error from the problem (on its CIs),
/// then shows it.
pub async fn create_known_error(
    State(state): State<AppState>,
    session: Session,
    Path(number): Path<String>,
    Form(form): Form<KnownErrorForm>,
) -> Result<Response, PageError> {
    require_problem_reader(&session)?;
    let number = checked(&number, "problem")?;
    let page = problem_path(number);
    let mut errors = FormErrors::default();
    for (field, value) in [
        ("short_description", &form.short_description),
        ("symptoms", &form.symptoms),
        ("workaround", &form.workaround),
    ] {
        if value.trim().is_empty() {
            errors.add(field, "is required");
        }
    }
    if errors.is_empty() {
        let problem = state
            .gateway
            .problems()
            .get_problem(authed(&session.data, GetProblemRequest { name: problem_name(number) }))
            .await
            .map_err(|status| page_error(&status, &page))?
            .into_inner();
        let status =
            if form.publish == "true" { KnownErrorStatus::Published } else { KnownErrorStatus::Draft };
        let request = CreateKnownErrorRequest {
            known_error: Some(KnownError {
                problem: problem.name,
                short_description: form.short_description.trim().to_string(),
                symptoms: form.symptoms.trim().to_string(),
                workaround: form.workaround.trim().to_string(),
                configuration_items: problem.configuration_items,
                status: status as i32,
                ..Default::default()
            }),
            request_id: request_id_of(&form.request_id),
        };
        match state.gateway.problems().create_known_error(authed(&session.data, request)).await {
            Ok(created) => {
                let created = created.into_inner().number;
                if !is_record_number(&created) {
                    return problem_answer(&state, &session, number, Ok("")).await;
                }
                return Ok(Redirect::to(&format!("/known-errors/{created}?done=created")).into_response());
            }
            Err(status) => {
                let fields = [
                    ("known_error.short_description", "short_description"),
                    ("known_error.symptoms", "symptoms"),
                    ("known_error.workaround", "workaround"),
                    ("known_error.status", "publish"),
                ];
                errors = refused_call(&status, &page, &fields)?;
            }
        }
    }
    let refused = Refused::new(
        "known-error",
        errors,
        vec![
            ("short_description", form.short_description),
            ("symptoms", form.symptoms),
            ("workaround", form.workaround),
            ("publish", form.publish),
            ("request_id", form.request_id),
        ],
    );
    problem_answer(&state, &session, number, Err(refused)).await
}

// ---- known errors ---------------------------------------------------------------------------

#[derive(Template)]
#[template(path = "incidents/known_error.html")]
pub struct KnownErrorPage {
    layout: Layout,
    area: Vec<Tab>,
    csrf: String,
    notice: &'static str,
    messages: Vec<String>,
    known_error: KnownErrorView,
    /// The source problem's summary ("" = unknown or none).
    problem_summary: String,
    cis: Vec<CiView>,
    can_publish: bool,
    can_retire: bool,
}

impl KnownErrorPage {
    pub fn has_notice(&self) -> bool {
        !self.notice.is_empty()
    }
}

/// A confirmation for `?done=…` on a known error.
fn known_error_notice(done: &str) -> &'static str {
    match done {
        "created" => "The known error was recorded.",
        "published" => "The known error is published: agents are offered it on matching incidents.",
        "retired" => "The known error was retired.",
        _ => "",
    }
}

/// The known error page of `number`, with the errors of a `refused` status change.
async fn known_error_page(
    state: &AppState,
    session: &Session,
    number: &str,
    notice: &'static str,
    refused: &Refused,
    status: StatusCode,
) -> Result<Response, PageError> {
    let mut problems = state.gateway.problems();
    let known_error = problems
        .get_known_error(authed(&session.data, GetKnownErrorRequest { name: known_error_name(number) }))
        .await
        .map_err(|status| page_error(&status, &session.here))?
        .into_inner();
    let cis = ci_views(state, session, &known_error.configuration_items).await;
    let mut problem_summary = String::new();
    if !known_error.problem.is_empty() {
        let request = GetProblemRequest { name: known_error.problem.clone() };
        match problems.get_problem(authed(&session.data, request)).await {
            Ok(problem) => problem_summary = problem.into_inner().short_description,
            Err(status) => tracing::debug!(code = ?status.code(), "source problem not shown"),
        }
    }
    let writer = session.data.has_any_role(PROBLEM_WRITERS);
    let current = KnownErrorStatus::try_from(known_error.status).ok();
    let page = KnownErrorPage {
        layout: Layout::new(
            format!("{} {}", known_error.number, known_error.short_description),
            Some(&session.data),
            Section::Agent,
        ),
        area: area_nav(&session.data, Area::Problems),
        csrf: session.data.csrf.clone(),
        notice,
        messages: PageForms::new(refused).messages(),
        known_error: KnownErrorView::new(&known_error),
        problem_summary,
        cis,
        can_publish: writer && current != Some(KnownErrorStatus::Published),
        can_retire: writer && current == Some(KnownErrorStatus::Published),
    };
    Ok(render(status, &page))
}

/// GET `/known-errors/{number}`.
pub async fn known_error(
    State(state): State<AppState>,
    session: Session,
    Path(number): Path<String>,
    Query(done): Query<DoneQuery>,
) -> Result<Response, PageError> {
    require_problem_reader(&session)?;
    let number = checked(&number, "known error")?;
    let notice = known_error_notice(&done.done);
    known_error_page(&state, &session, number, notice, &Refused::default(), StatusCode::OK).await
}

/// The posted status form.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct KnownErrorStatusForm {
    /// `published` or `retired`.
    pub status: String,
    pub etag: String,
}

/// POST `/known-errors/{number}/status`: publishes or retires the known error.
pub async fn set_known_error_status(
    State(state): State<AppState>,
    session: Session,
    Path(number): Path<String>,
    Form(form): Form<KnownErrorStatusForm>,
) -> Result<Response, PageError> {
    require_problem_reader(&session)?;
    let number = checked(&number, "known error")?;
    let (status, done) = match form.status.as_str() {
        "published" => (KnownErrorStatus::Published, "published"),
        "retired" => (KnownErrorStatus::Retired, "retired"),
        _ => return Err(PageError::BadRequest("A known error is published or retired.".into())),
    };
    let request = UpdateKnownErrorRequest {
        known_error: Some(KnownError {
            name: known_error_name(number),
            status: status as i32,
            etag: form.etag,
            ..Default::default()
        }),
        update_mask: mask(&["status"]),
    };
    match state.gateway.problems().update_known_error(authed(&session.data, request)).await {
        Ok(_) => Ok(Redirect::to(&format!("/known-errors/{number}?done={done}")).into_response()),
        Err(status) => {
            let errors = refused_call(&status, &format!("/known-errors/{number}"), &[])?;
            let refused = Refused::new("status", errors, Vec::new());
            known_error_page(&state, &session, number, "", &refused, StatusCode::UNPROCESSABLE_ENTITY).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_view_filter_parses_within_the_apis_limits() {
        let long: Vec<String> =
            (0..40).map(|i| format!("supportGroups/{}-{i:02}", uuid::Uuid::nil())).collect();
        let groups: Vec<&str> = long.iter().map(String::as_str).collect();
        for (_, list, _) in INCIDENT_LISTS {
            let filter = list_filter(list, "ann \"the\" agent", &groups).unwrap();
            assert!(itsm_runtime::filter::parse(&filter).is_ok(), "{filter}");
        }
        assert_eq!(list_filter(IncidentList::Groups, "ann", &[]), None, "no groups, nothing to list");
        assert!(
            list_filter(IncidentList::Mine, "ann", &[]).unwrap().starts_with("assignee = \"ann\" AND (state"),
        );
        for (_, filter, _) in PROBLEM_LISTS {
            assert!(itsm_runtime::filter::parse(filter).is_ok(), "{filter}");
        }
        let records: Vec<String> = (0..PAGE_SIZE).map(|i| format!("incidents/INC{i:010}")).collect();
        assert!(itsm_runtime::filter::parse(&records_filter(&records)).is_ok());
    }

    #[test]
    fn actions_follow_the_incident_state_machine() {
        let new = Allowed::of(IncidentState::New as i32, false);
        assert!(new.assign && new.escalate && !new.resolve && !new.start && !new.hold && !new.close);
        let assigned = Allowed::of(IncidentState::Assigned as i32, true);
        assert!(!assigned.assign && assigned.start && assigned.hold && assigned.resolve && !assigned.reopen);
        let working = Allowed::of(IncidentState::InProgress as i32, true);
        assert!(!working.start && working.hold && working.resolve && working.escalate);
        let held = Allowed::of(IncidentState::OnHold as i32, false);
        assert!(held.assign && held.start && !held.hold && held.resolve);
        let resolved = Allowed::of(IncidentState::Resolved as i32, true);
        assert!(resolved.close && resolved.reopen && !resolved.resolve && !resolved.escalate);
        assert_eq!(Allowed::of(IncidentState::Closed as i32, false), Allowed::default());
        assert_eq!(Allowed::of(IncidentState::Cancelled as i32, false), Allowed::default());
        assert_eq!(
            problem_next_states(ProblemState::New as i32),
            [ProblemState::Assessed, ProblemState::Closed]
        );
        assert!(problem_next_states(ProblemState::Closed as i32).is_empty());
    }

    #[test]
    fn problem_numbers_are_taken_as_typed() {
        assert_eq!(problem_number_of(" PRB0000001 ").as_deref(), Some("PRB0000001"));
        assert_eq!(problem_number_of("prb0000002").as_deref(), Some("PRB0000002"));
        assert_eq!(problem_number_of("problems/PRB0000003").as_deref(), Some("PRB0000003"));
        for bad in ["", "PRB", "INC0000001", "PRB12x", "../PRB1", "PRB 1"] {
            assert_eq!(problem_number_of(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_earliest_running_clock_is_the_due_time() {
        let clock = |record: &str, seconds: i64| SlaClock {
            record: record.into(),
            due_time: Some(prost_types::Timestamp { seconds, nanos: 0 }),
            ..Default::default()
        };
        let mut due = HashMap::new();
        let stopped = SlaClock { record: "incidents/INC2".into(), ..Default::default() };
        earliest_due(&mut due, &[clock("incidents/INC1", 2_000), clock("incidents/INC1", 1_000), stopped]);
        earliest_due(&mut due, &[clock("incidents/INC1", 1_500)]);
        assert_eq!(due.get("incidents/INC1").map(|t| t.seconds), Some(1_000));
        assert!(!due.contains_key("incidents/INC2"), "a stopped clock has no due time");
    }

    #[test]
    fn history_values_read_for_people() {
        assert_eq!(history_text("state", "2"), "Assigned");
        assert_eq!(history_text("priority", "1"), "P1");
        assert_eq!(history_text("assignee", "\"ann\""), "ann");
        assert_eq!(history_text("assignee", "\"\""), "—");
        assert_eq!(history_text("support_tier", "2"), "2");
        assert_eq!(history_text("state", ""), "—");
    }

    #[test]
    fn a_refused_form_keeps_its_values_and_errors_the_page_no_longer_offers_go_on_top() {
        let mut errors = FormErrors::default();
        errors.add("resolution_notes", "is required");
        errors.add_form(
            "an incident cannot go from NEW to RESOLVED; from NEW it can go to ASSIGNED, CANCELLED",
        );
        let refused = Refused::new("resolve", errors, vec![("resolution_code", "2".into())]);
        assert_eq!(refused.value("resolve", "resolution_code", ""), "2");
        assert_eq!(refused.value("reopen", "resolution_code", "x"), "x");

        let mut forms = PageForms::new(&refused);
        let shown = forms.form(
            "resolve",
            vec![FieldView::new("r", "resolution_notes", "Resolution notes", FieldKind::TextArea)],
        );
        assert_eq!(shown.fields[0].error, "Resolution notes is required");
        assert_eq!(forms.messages().len(), 1, "the state's message goes on top");

        let mut forms = PageForms::new(&refused);
        let other = forms.form("note", Vec::new());
        assert!(other.messages.is_empty());
        let top = forms.messages();
        assert!(top.iter().any(|m| m.contains("from NEW it can go to")), "{top:?}");
        assert!(top.iter().any(|m| m.contains("resolution_notes")), "{top:?}");
    }

    #[test]
    fn cis_link_to_the_cmdb_by_id() {
        let mut labels = HashMap::new();
        labels.insert("configurationItems/abc".to_string(), "db-01".to_string());
        let ci = ci_view("configurationItems/abc", &labels);
        assert_eq!((ci.href.as_str(), ci.label.as_str()), ("/cmdb/items/abc", "db-01"));
        assert_eq!(ci_view("configurationItems/a b", &HashMap::new()).href, "/cmdb/items/a%20b");
        assert_eq!(linkable_number("problems/PRB0000001"), "PRB0000001");
        assert_eq!(linkable_number(""), "");
    }
}
