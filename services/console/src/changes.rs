//! Change pages: the change calendar (week and month), a change with its risk, approvals,
//! conflicts and changesets, and whether a service may deploy now.
//!
//! Every page reads through the gateway with the signed-in user's token, so the gateway's role
//! table decides who sees changes (a requester's ListChanges is PERMISSION_DENIED: the 403 page).
//! Approving and rejecting are forms posted with the session's CSRF token; the console refuses
//! them before any call to users without a role that approves changes, then answers with
//! post/redirect/get: back to the change, or to the calendar page the form was on.
//!
//! Days are UTC days: a change shows on every day its planned window overlaps.

use std::collections::{BTreeSet, HashMap};

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use chrono::{Datelike, Days, Months, NaiveDate, NaiveTime, Utc};
use serde::Deserialize;
use tonic::{Code, Status};

use itsm_proto::change::{
    ApprovalDecision, ApprovalRule, ApproveChangeRequest, BlackoutWindow, CanDeployRequest, Change,
    ChangeConflict, ChangeState, ChangeType, Changeset, ChangesetAuthorization, CheckChangeConflictsRequest,
    ConflictKind, GetChangeRequest, ListBlackoutWindowsRequest, ListChangesRequest, ListChangesetsRequest,
    ListMaintenanceWindowsRequest, MaintenanceWindow, RejectChangeRequest, Risk,
};
use itsm_proto::cmdb::{BatchGetConfigurationItemsRequest, ConfigurationItem, ListConfigurationItemsRequest};

use crate::calls::{authed, form_errors, page_error};
use crate::forms::{FieldKind, FieldView, FormErrors, FormView, sentence};
use crate::pages::{CHANGE_ROLES, Layout, PageError, Section, render};
use crate::session::{Session, safe_next};
use crate::views::{TimeView, is_record_number, number_of, time_view};
use crate::{AppState, form_status};

/// The calendar's address; an approval posted from it may return only here.
const CALENDAR_PATH: &str = "/changes/calendar";
/// Changes asked for per ListChanges call while filling a calendar page.
const CALENDAR_PAGE_SIZE: usize = 200;
/// Most changes one calendar page shows; the page says when more were left out.
const MAX_CALENDAR_CHANGES: usize = 500;
/// Changesets shown on a change page (newest first).
const CHANGESETS_SHOWN: i32 = 50;
/// Most CIs named in one BatchGetConfigurationItems call (the CMDB's limit).
const MAX_CI_LOOKUP: usize = 1000;
/// Longest service name or id the can-deploy form looks up.
const MAX_SERVICE_CHARS: usize = 300;
/// Longest first line of a changeset message shown.
const CHANGESET_TITLE_CHARS: usize = 120;
/// Years the calendar shows: keeps every date computed from an address far from chrono's limits.
const FIRST_YEAR: i32 = 1971;
const LAST_YEAR: i32 = 9998;
/// The CMDB class of business services (a name may match a server and the service it runs).
const BUSINESS_SERVICE_CLASS: &str = "business_service";

/// This area's routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/changes", get(changes_start))
        .route("/changes/calendar", get(calendar))
        .route("/changes/can-deploy", get(can_deploy))
        .route("/changes/{number}", get(change))
        .route("/changes/{number}/approve", post(approve))
        .route("/changes/{number}/reject", post(reject))
}

/// GET `/changes`: the calendar is where the area starts.
async fn changes_start() -> Redirect {
    Redirect::to(CALENDAR_PATH)
}

// ---- labels ----------------------------------------------------------------------------------

/// A change state for people, and a CSS class for its badge.
fn state_label(state: i32) -> (&'static str, &'static str) {
    match ChangeState::try_from(state) {
        Ok(ChangeState::New) => ("New", "state-new"),
        Ok(ChangeState::Assess) => ("Assess", "state-progress"),
        Ok(ChangeState::Authorize) => ("Awaiting approval", "state-pending"),
        Ok(ChangeState::Scheduled) => ("Scheduled", "state-scheduled"),
        Ok(ChangeState::Implement) => ("Implement", "state-progress"),
        Ok(ChangeState::Review) => ("Review", "state-resolved"),
        Ok(ChangeState::Closed) => ("Closed", "state-closed"),
        Ok(ChangeState::Cancelled) => ("Cancelled", "state-closed"),
        Ok(ChangeState::Failed) => ("Failed", "state-failed"),
        _ => ("Unknown", "state-new"),
    }
}

/// A change type for people.
fn type_label(kind: i32) -> &'static str {
    match ChangeType::try_from(kind) {
        Ok(ChangeType::Standard) => "Standard",
        Ok(ChangeType::Normal) => "Normal",
        Ok(ChangeType::Emergency) => "Emergency",
        _ => "Unknown",
    }
}

/// A risk class for people, and its CSS class (each class has its colour).
fn risk_label(risk: i32) -> (&'static str, &'static str) {
    match Risk::try_from(risk) {
        Ok(Risk::Low) => ("Low", "risk-low"),
        Ok(Risk::Moderate) => ("Moderate", "risk-moderate"),
        Ok(Risk::High) => ("High", "risk-high"),
        Ok(Risk::VeryHigh) => ("Very high", "risk-very-high"),
        _ => ("Not assessed", "risk-unknown"),
    }
}

/// A risk factor's name (`RiskFactor.factor`) for people; an unknown one as it is.
fn factor_label(factor: &str) -> String {
    match factor {
        "ci_criticality" => "CI criticality".to_string(),
        "blast_radius" => "Blast radius".to_string(),
        "change_type" => "Change type".to_string(),
        "failure_history" => "Failure history".to_string(),
        "schedule_conflicts" => "Schedule conflicts".to_string(),
        "questionnaire" => "Risk questionnaire".to_string(),
        other => other.to_string(),
    }
}

/// Why two changes conflict, for people.
fn conflict_label(kind: i32) -> &'static str {
    match ConflictKind::try_from(kind) {
        Ok(ConflictKind::SameCi) => "Both change this CI",
        Ok(ConflictKind::InOurImpactGraph) => "It changes this CI, which depends on this change's CIs",
        Ok(ConflictKind::InTheirImpactGraph) => "This CI of the change depends on what it changes",
        _ => "Overlapping window on a shared CI",
    }
}

/// Whether a changeset is covered by an authorised change, for people, and a CSS class.
fn authorization_label(authorization: i32) -> (&'static str, &'static str) {
    match ChangesetAuthorization::try_from(authorization) {
        Ok(ChangesetAuthorization::Authorized) => ("Authorised", "auth-ok"),
        Ok(ChangesetAuthorization::Unauthorized) => ("Not authorised", "auth-bad"),
        Ok(ChangesetAuthorization::Unlinked) => ("Not linked", "auth-bad"),
        _ => ("Unknown", "auth-unknown"),
    }
}

/// A confirmation for `?done=…` after an approval or rejection went through.
fn notice(done: &str) -> &'static str {
    match done {
        "approved" => "Change approved: it has every approval it needs and is scheduled.",
        "approval-recorded" => "Your approval was recorded; the change still needs more approvals.",
        "approval-outvoted" => {
            "Your approval was recorded, but the approvers' majority rejected the change: it went back to New."
        }
        "rejected" => "Change rejected: it went back to New for rework.",
        "rejection-recorded" => {
            "Your rejection was recorded; the change still awaits the other approvers' decisions."
        }
        "rejection-outvoted" => {
            "Your rejection was recorded, but the approvers' majority approved the change: it is scheduled."
        }
        _ => "",
    }
}

// ---- times -----------------------------------------------------------------------------------

/// `timestamp` in microseconds since the epoch; 0 when unset.
fn micros_of(timestamp: Option<&prost_types::Timestamp>) -> i64 {
    timestamp.map_or(0, |t| t.seconds.saturating_mul(1_000_000).saturating_add(i64::from(t.nanos) / 1_000))
}

/// Microseconds since the epoch at the start (00:00 UTC) of `day`.
fn day_start(day: NaiveDate) -> i64 {
    day.and_time(NaiveTime::MIN).and_utc().timestamp_micros()
}

/// `day` as the API's filters and `<time datetime>` write it.
fn day_text(day: NaiveDate) -> String {
    day.format("%Y-%m-%d").to_string()
}

/// `HH:MM` (UTC) of a time in microseconds.
fn clock(micros: i64) -> String {
    chrono::DateTime::from_timestamp_micros(micros).map(|t| t.format("%H:%M").to_string()).unwrap_or_default()
}

/// Whether [start, end) overlaps [from, to).
fn overlaps(start: i64, end: i64, from: i64, to: i64) -> bool {
    start < to && end > from
}

/// When a window [start, end) falls on the day [from, to): all of it, its start, its end or both.
fn time_on_day(start: i64, end: i64, from: i64, to: i64) -> String {
    match (start < from, end > to) {
        (true, true) => "all day".to_string(),
        (true, false) => format!("until {}", clock(end)),
        (false, true) => format!("from {}", clock(start)),
        (false, false) => format!("{}–{}", clock(start), clock(end)),
    }
}

/// The Monday of `day`'s week.
fn monday_of(day: NaiveDate) -> Option<NaiveDate> {
    day.checked_sub_days(Days::new(u64::from(day.weekday().num_days_from_monday())))
}

// ---- the calendar ------------------------------------------------------------------------------

/// Which calendar a page shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CalendarView {
    Week,
    Month,
}

impl CalendarView {
    /// `view=` of the address ("" is a week).
    fn parse(text: &str) -> Option<Self> {
        match text {
            "" | "week" => Some(Self::Week),
            "month" => Some(Self::Month),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Week => "week",
            Self::Month => "month",
        }
    }
}

/// The days one calendar page shows: a week, or the weeks (Monday to Sunday) holding a month.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Period {
    view: CalendarView,
    /// The Monday of the week, or the first of the month: what the page's address names.
    anchor: NaiveDate,
    /// The grid's first day (a Monday) and the day after its last (a Monday).
    first: NaiveDate,
    end: NaiveDate,
    /// The anchors of the periods before and after.
    previous: NaiveDate,
    next: NaiveDate,
}

impl Period {
    /// The `view` period holding `day`; `None` outside the years the calendar shows.
    fn of(view: CalendarView, day: NaiveDate) -> Option<Self> {
        if !(FIRST_YEAR..=LAST_YEAR).contains(&day.year()) {
            return None;
        }
        match view {
            CalendarView::Week => {
                let anchor = monday_of(day)?;
                let next = anchor.checked_add_days(Days::new(7))?;
                Some(Self {
                    view,
                    anchor,
                    first: anchor,
                    end: next,
                    previous: anchor.checked_sub_days(Days::new(7))?,
                    next,
                })
            }
            CalendarView::Month => {
                let anchor = day.with_day(1)?;
                let next = anchor.checked_add_months(Months::new(1))?;
                let last = next.pred_opt()?;
                Some(Self {
                    view,
                    anchor,
                    first: monday_of(anchor)?,
                    end: monday_of(last)?.checked_add_days(Days::new(7))?,
                    previous: anchor.checked_sub_months(Months::new(1))?,
                    next,
                })
            }
        }
    }

    /// Every day of the grid, in order (whole weeks).
    fn days(&self) -> Vec<NaiveDate> {
        self.first.iter_days().take_while(|day| *day < self.end).collect()
    }

    /// The address of the `view` page anchored at `anchor`.
    fn href(view: CalendarView, anchor: NaiveDate) -> String {
        format!("{CALENDAR_PATH}?view={}&start={}", view.name(), day_text(anchor))
    }

    /// This page's own address (where an approval posted from it comes back to).
    fn own_href(&self) -> String {
        Self::href(self.view, self.anchor)
    }

    fn heading(&self) -> String {
        match self.view {
            CalendarView::Week => format!("Change calendar: week of {}", self.anchor.format("%-d %B %Y")),
            CalendarView::Month => format!("Change calendar: {}", self.anchor.format("%B %Y")),
        }
    }

    /// `planned_start_time < <end> AND planned_end_time > <first>`: the changes whose planned
    /// window overlaps the grid (a change without a window has neither and is left out).
    fn filter(&self) -> String {
        format!(
            "planned_start_time < \"{}T00:00:00Z\" AND planned_end_time > \"{}T00:00:00Z\"",
            day_text(self.end),
            day_text(self.first)
        )
    }
}

/// `/changes/calendar?view=week|month&start=YYYY-MM-DD&done=…`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct CalendarQuery {
    pub view: String,
    pub start: String,
    pub done: String,
}

/// A change as the calendar shows it on one day.
pub struct EntryView {
    pub number: String,
    pub summary: String,
    pub state: &'static str,
    pub state_class: &'static str,
    pub risk: &'static str,
    pub risk_class: &'static str,
    /// When on this day: "10:00–12:00", "from 22:00", "until 02:00" or "all day".
    pub time_text: String,
    /// The first day the change shows on this page: that entry carries its element ids and the
    /// Approve form (a change over several days shows on each, the ids once).
    pub first: bool,
    /// Awaiting approval, and the user may approve: the entry has an Approve button.
    pub approvable: bool,
    pub etag: String,
}

/// A blackout or maintenance window on a day.
pub struct BandView {
    pub kind: &'static str,
    pub class: &'static str,
    pub name: String,
}

/// One day of the calendar.
pub struct DayView {
    /// `2026-03-04`.
    pub iso: String,
    /// `Wed 4 Mar`.
    pub label: String,
    /// In the month shown (a month grid also shows the days of its first and last weeks around it).
    pub in_period: bool,
    pub today: bool,
    /// A blackout window covers part of the day.
    pub blackout: bool,
    pub bands: Vec<BandView>,
    pub entries: Vec<EntryView>,
}

impl DayView {
    /// The cell's CSS classes.
    pub fn classes(&self) -> String {
        let mut classes = String::from("day");
        if !self.in_period {
            classes.push_str(" day--outside");
        }
        if self.today {
            classes.push_str(" day--today");
        }
        if self.blackout {
            classes.push_str(" day--blackout");
        }
        classes
    }
}

/// A blackout or maintenance window listed under the calendar.
pub struct WindowView {
    pub name: String,
    pub detail: String,
    pub start: Option<TimeView>,
    pub end: Option<TimeView>,
}

impl WindowView {
    fn new(
        name: &str,
        detail: String,
        start: Option<&prost_types::Timestamp>,
        end: Option<&prost_types::Timestamp>,
    ) -> Self {
        Self { name: name.to_string(), detail, start: time_view(start), end: time_view(end) }
    }
}

/// The blackout and maintenance windows overlapping a period, and why some could not be read.
#[derive(Default)]
struct PeriodWindows {
    blackouts: Vec<BlackoutWindow>,
    maintenance: Vec<MaintenanceWindow>,
    problems: Vec<String>,
}

#[derive(Template)]
#[template(path = "changes/calendar.html")]
pub struct CalendarPage {
    layout: Layout,
    csrf: String,
    notice: &'static str,
    heading: String,
    is_month: bool,
    week_href: String,
    month_href: String,
    previous_href: String,
    next_href: String,
    today_href: String,
    previous_label: &'static str,
    next_label: &'static str,
    today_label: &'static str,
    /// This page's address, posted with each Approve form.
    return_to: String,
    weeks: Vec<Vec<DayView>>,
    change_count: usize,
    more_not_shown: bool,
    max_shown: usize,
    blackouts: Vec<WindowView>,
    maintenance: Vec<WindowView>,
    windows_problems: Vec<String>,
}

impl CalendarPage {
    pub fn has_notice(&self) -> bool {
        !self.notice.is_empty()
    }
}

/// The changes whose planned window overlaps `period`, by planned start, through every page of
/// results up to [`MAX_CALENDAR_CHANGES`]; `true` when more were left out.
async fn changes_in(
    state: &AppState,
    session: &Session,
    period: &Period,
) -> Result<(Vec<Change>, bool), PageError> {
    let filter = period.filter();
    let mut client = state.gateway.changes();
    let mut changes: Vec<Change> = Vec::new();
    let mut page_token = String::new();
    loop {
        // One more than shown at most, to know whether there are more.
        let wanted = (MAX_CALENDAR_CHANGES + 1 - changes.len()).min(CALENDAR_PAGE_SIZE);
        let request = ListChangesRequest {
            page_size: i32::try_from(wanted).unwrap_or(1),
            page_token,
            filter: filter.clone(),
            order_by: "planned_start_time".into(),
        };
        let listed = client
            .list_changes(authed(&session.data, request))
            .await
            .map_err(|status| page_error(&status, &session.here))?
            .into_inner();
        changes.extend(listed.changes);
        if changes.len() > MAX_CALENDAR_CHANGES {
            changes.truncate(MAX_CALENDAR_CHANGES);
            return Ok((changes, true));
        }
        if listed.next_page_token.is_empty() {
            return Ok((changes, false));
        }
        page_token = listed.next_page_token;
    }
}

/// The blackout and maintenance windows overlapping `period`. They are what the calendar is laid
/// over, not its point: when they cannot be read, the page says so and shows the changes.
async fn windows_in(state: &AppState, session: &Session, period: &Period) -> PeriodWindows {
    let (from, to) = (day_start(period.first), day_start(period.end));
    // The lists hold windows ending after now unless asked for the past too.
    let include_past = from < Utc::now().timestamp_micros();
    let mut client = state.gateway.changes();
    let mut windows = PeriodWindows::default();
    let request = ListBlackoutWindowsRequest { include_past };
    match client.list_blackout_windows(authed(&session.data, request)).await {
        Ok(listed) => {
            windows.blackouts = listed
                .into_inner()
                .blackout_windows
                .into_iter()
                .filter(|w| {
                    let (start, end) = (micros_of(w.start_time.as_ref()), micros_of(w.end_time.as_ref()));
                    overlaps(start, end, from, to)
                })
                .collect();
        }
        Err(status) => {
            windows.problems.push(format!("Blackout windows cannot be shown now: {}", status.message()));
        }
    }
    let request = ListMaintenanceWindowsRequest { include_past, configuration_item: String::new() };
    match client.list_maintenance_windows(authed(&session.data, request)).await {
        Ok(listed) => {
            windows.maintenance = listed
                .into_inner()
                .maintenance_windows
                .into_iter()
                .filter(|w| {
                    let (start, end) = (micros_of(w.start_time.as_ref()), micros_of(w.end_time.as_ref()));
                    overlaps(start, end, from, to)
                })
                .collect();
        }
        Err(status) => {
            windows.problems.push(format!("Maintenance windows cannot be shown now: {}", status.message()));
        }
    }
    windows
}

/// The calendar's weeks: each day with the changes and windows overlapping it. A change awaiting
/// approval gets an Approve button (on its first day) when `can_approve`.
fn lay_out(
    period: &Period,
    today: NaiveDate,
    changes: &[Change],
    windows: &PeriodWindows,
    can_approve: bool,
) -> Vec<Vec<DayView>> {
    let mut shown: BTreeSet<&str> = BTreeSet::new();
    let mut weeks = Vec::new();
    let mut week = Vec::with_capacity(7);
    for day in period.days() {
        let from = day_start(day);
        let to = day.checked_add_days(Days::new(1)).map_or(i64::MAX, day_start);
        let mut entries = Vec::new();
        for change in changes {
            let start = micros_of(change.planned_start_time.as_ref());
            let end = micros_of(change.planned_end_time.as_ref());
            if !overlaps(start, end, from, to) {
                continue;
            }
            let first = shown.insert(change.number.as_str());
            let (state, state_class) = state_label(change.state);
            let (risk, risk_class) = risk_label(change.risk);
            entries.push(EntryView {
                number: change.number.clone(),
                summary: change.short_description.clone(),
                state,
                state_class,
                risk,
                risk_class,
                time_text: time_on_day(start, end, from, to),
                first,
                approvable: first && can_approve && change.state == ChangeState::Authorize as i32,
                etag: change.etag.clone(),
            });
        }
        let mut bands = Vec::new();
        for window in &windows.blackouts {
            let (start, end) = (micros_of(window.start_time.as_ref()), micros_of(window.end_time.as_ref()));
            if overlaps(start, end, from, to) {
                bands.push(BandView {
                    kind: "Blackout",
                    class: "band--blackout",
                    name: window.display_name.clone(),
                });
            }
        }
        let blackout = !bands.is_empty();
        for window in &windows.maintenance {
            let (start, end) = (micros_of(window.start_time.as_ref()), micros_of(window.end_time.as_ref()));
            if overlaps(start, end, from, to) {
                bands.push(BandView {
                    kind: "Maintenance",
                    class: "band--maintenance",
                    name: window.display_name.clone(),
                });
            }
        }
        week.push(DayView {
            iso: day_text(day),
            label: day.format("%a %-d %b").to_string(),
            in_period: period.view == CalendarView::Week || day.month() == period.anchor.month(),
            today: day == today,
            blackout,
            bands,
            entries,
        });
        if week.len() == 7 {
            weeks.push(std::mem::take(&mut week));
        }
    }
    if !week.is_empty() {
        weeks.push(week);
    }
    weeks
}

/// GET `/changes/calendar`: the changes planned in a week or a month, with the blackout and
/// maintenance windows of the period.
pub async fn calendar(
    State(state): State<AppState>,
    session: Session,
    Query(query): Query<CalendarQuery>,
) -> Result<Response, PageError> {
    let view = CalendarView::parse(query.view.trim())
        .ok_or_else(|| PageError::BadRequest("The calendar's view is week or month.".into()))?;
    let today = Utc::now().date_naive();
    let day = match query.start.trim() {
        "" => today,
        text => NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .map_err(|_| PageError::BadRequest("The calendar's start is a day written YYYY-MM-DD.".into()))?,
    };
    let period = Period::of(view, day).ok_or_else(|| {
        PageError::BadRequest(format!("The calendar shows the years {FIRST_YEAR} to {LAST_YEAR}."))
    })?;
    let (changes, more_not_shown) = changes_in(&state, &session, &period).await?;
    let windows = windows_in(&state, &session, &period).await;
    let weeks = lay_out(&period, today, &changes, &windows, session.data.has_any_role(CHANGE_ROLES));
    let blackouts = windows
        .blackouts
        .iter()
        .map(|w| {
            WindowView::new(&w.display_name, w.reason.clone(), w.start_time.as_ref(), w.end_time.as_ref())
        })
        .collect();
    let maintenance = windows
        .maintenance
        .iter()
        .map(|w| {
            let count = w.configuration_items.len();
            let detail = if count == 1 {
                "for 1 CI or business service".to_string()
            } else {
                format!("for {count} CIs or business services")
            };
            WindowView::new(&w.display_name, detail, w.start_time.as_ref(), w.end_time.as_ref())
        })
        .collect();
    let (previous_label, next_label, today_label) = match view {
        CalendarView::Week => ("Previous week", "Next week", "This week"),
        CalendarView::Month => ("Previous month", "Next month", "This month"),
    };
    let heading = period.heading();
    let page = CalendarPage {
        layout: Layout::new(heading.clone(), Some(&session.data), Section::Changes),
        csrf: session.data.csrf.clone(),
        notice: notice(&query.done),
        heading,
        is_month: view == CalendarView::Month,
        week_href: Period::href(CalendarView::Week, period.anchor),
        month_href: Period::href(CalendarView::Month, period.anchor),
        previous_href: Period::href(view, period.previous),
        next_href: Period::href(view, period.next),
        today_href: Period::href(view, today),
        previous_label,
        next_label,
        today_label,
        return_to: period.own_href(),
        weeks,
        change_count: changes.len(),
        more_not_shown,
        max_shown: MAX_CALENDAR_CHANGES,
        blackouts,
        maintenance,
        windows_problems: windows.problems,
    };
    Ok(render(StatusCode::OK, &page))
}

// ---- one change ------------------------------------------------------------------------------

/// A configuration item a page links to (`/cmdb/items/{id}`).
pub struct CiLink {
    /// The id in `configurationItems/{id}`.
    pub id: String,
    /// Its display name, or its resource name when the CMDB could not name it.
    pub label: String,
    /// Class and environment, "" when unknown.
    pub detail: String,
}

impl CiLink {
    fn new(name: &str, known: &HashMap<String, ConfigurationItem>) -> Self {
        match known.get(name) {
            Some(ci) => {
                let detail = if ci.environment.is_empty() {
                    ci.ci_class.clone()
                } else {
                    format!("{}, {}", ci.ci_class, ci.environment)
                };
                Self { id: number_of(name).to_string(), label: ci.display_name.clone(), detail }
            }
            None => Self { id: number_of(name).to_string(), label: name.to_string(), detail: String::new() },
        }
    }

    pub fn has_detail(&self) -> bool {
        !self.detail.is_empty()
    }
}

/// One factor of the risk score.
pub struct FactorView {
    pub label: String,
    pub points: i32,
    pub explanation: String,
}

/// One recorded approval or rejection.
pub struct ApprovalView {
    pub approver: String,
    pub decision: &'static str,
    pub decision_class: &'static str,
    pub comment: String,
    pub when: Option<TimeView>,
}

/// A change this one conflicts with.
pub struct ConflictView {
    pub number: String,
    pub kind: &'static str,
    /// Where they meet (none for conflicts found when the change was saved).
    pub ci: Option<CiLink>,
}

/// A blackout window over the change's planned window.
pub struct BlackoutView {
    pub name: String,
    pub reason: String,
    pub start: Option<TimeView>,
    pub end: Option<TimeView>,
}

/// A changeset linked to the change.
pub struct ChangesetView {
    /// The first 12 characters of the revision.
    pub revision: String,
    pub repository: String,
    pub author: String,
    /// The first line of its message.
    pub title: String,
    pub when: Option<TimeView>,
    pub authorization: &'static str,
    pub authorization_class: &'static str,
    pub reason: String,
}

/// A change as its page shows it.
pub struct ChangeView {
    pub number: String,
    pub summary: String,
    pub description: String,
    pub justification: String,
    pub implementation_plan: String,
    pub backout_plan: String,
    pub test_plan: String,
    pub state: &'static str,
    pub state_class: &'static str,
    pub kind: &'static str,
    pub risk: &'static str,
    pub risk_class: &'static str,
    pub risk_score: i32,
    pub factors: Vec<FactorView>,
    pub start: Option<TimeView>,
    pub end: Option<TimeView>,
    pub requested_by: String,
    pub assignee: String,
    pub group: String,
    pub cis: Vec<CiLink>,
    pub services: Vec<CiLink>,
    pub approvals: Vec<ApprovalView>,
    /// What the approval policy asks and what is still needed.
    pub approval_status: String,
    pub outside_maintenance_window: bool,
    /// In AUTHORIZE: approvals are being collected.
    pub awaiting: bool,
    pub etag: String,
    /// The calendar week of its planned start (the calendar's current week without one).
    pub calendar_href: String,
}

impl ChangeView {
    /// `change`, with CI names from `known` (resource name → CI).
    fn new(change: &Change, known: &HashMap<String, ConfigurationItem>) -> Self {
        let (state, state_class) = state_label(change.state);
        let (risk, risk_class) = risk_label(change.risk);
        let start = chrono::DateTime::from_timestamp_micros(micros_of(change.planned_start_time.as_ref()));
        let calendar_href = match start.as_ref().map(chrono::DateTime::date_naive).and_then(monday_of) {
            Some(monday) if change.planned_start_time.is_some() => Period::href(CalendarView::Week, monday),
            _ => CALENDAR_PATH.to_string(),
        };
        Self {
            number: change.number.clone(),
            summary: change.short_description.clone(),
            description: change.description.clone(),
            justification: change.justification.clone(),
            implementation_plan: change.implementation_plan.clone(),
            backout_plan: change.backout_plan.clone(),
            test_plan: change.test_plan.clone(),
            state,
            state_class,
            kind: type_label(change.r#type),
            risk,
            risk_class,
            risk_score: change.risk_score,
            factors: change
                .risk_factors
                .iter()
                .map(|f| FactorView {
                    label: factor_label(&f.factor),
                    points: f.points,
                    explanation: f.explanation.clone(),
                })
                .collect(),
            start: time_view(change.planned_start_time.as_ref()),
            end: time_view(change.planned_end_time.as_ref()),
            requested_by: change.audit.as_ref().map(|a| a.creator.clone()).unwrap_or_default(),
            assignee: change.assignee.clone(),
            group: change.assignment_group.clone(),
            cis: change.configuration_items.iter().map(|name| CiLink::new(name, known)).collect(),
            services: change.business_services.iter().map(|name| CiLink::new(name, known)).collect(),
            approvals: change
                .approvals
                .iter()
                .map(|a| {
                    let (decision, decision_class) = match ApprovalDecision::try_from(a.decision) {
                        Ok(ApprovalDecision::Approved) => ("Approved", "decision-approved"),
                        Ok(ApprovalDecision::Rejected) => ("Rejected", "decision-rejected"),
                        _ => ("Unknown", "decision-unknown"),
                    };
                    ApprovalView {
                        approver: a.approver.clone(),
                        decision,
                        decision_class,
                        comment: a.comment.clone(),
                        when: time_view(a.decide_time.as_ref()),
                    }
                })
                .collect(),
            approval_status: approval_status(change),
            outside_maintenance_window: change.outside_maintenance_window,
            awaiting: change.state == ChangeState::Authorize as i32,
            etag: change.etag.clone(),
            calendar_href,
        }
    }
}

/// "1 approval", "2 approvals".
fn approvals_text(count: usize) -> String {
    if count == 1 { "1 approval".to_string() } else { format!("{count} approvals") }
}

/// What the change's approval rule asks, and what is still missing while it awaits approval.
fn approval_status(change: &Change) -> String {
    if change.r#type == ChangeType::Standard as i32 {
        return "A standard change is pre-approved: it needs no approval.".to_string();
    }
    let approved =
        change.approvals.iter().filter(|a| a.decision == ApprovalDecision::Approved as i32).count();
    let rejected =
        change.approvals.iter().filter(|a| a.decision == ApprovalDecision::Rejected as i32).count();
    let required = usize::try_from(change.required_approvals).unwrap_or(0);
    let groups = if change.approver_groups.is_empty() {
        "the approvers".to_string()
    } else {
        change.approver_groups.join(", ")
    };
    if change.state != ChangeState::Authorize as i32 {
        let (state, _) = state_label(change.state);
        if required == 0 {
            return format!("Not awaiting approval (state: {state}).");
        }
        return format!(
            "Not awaiting approval (state: {state}). Its approval policy asks for {} from {groups}.",
            approvals_text(required)
        );
    }
    match ApprovalRule::try_from(change.approval_rule) {
        Ok(ApprovalRule::All) => format!(
            "Needs an approval from someone in each of {groups} ({} in all); {approved} given so far. \
             One rejection sends it back to New.",
            approvals_text(required)
        ),
        Ok(ApprovalRule::Majority) => format!(
            "Needs {required} people of {groups} to decide, then more approvals than rejections; \
             {} of {required} have decided.",
            approved + rejected
        ),
        _ => format!(
            "Needs {} from {groups}: {approved} given, {} still needed. One rejection sends it back to New.",
            approvals_text(required),
            required.saturating_sub(approved)
        ),
    }
}

/// The posted approve or reject form (`return_to`: the calendar page it was posted from).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct DecisionForm {
    pub comment: String,
    pub etag: String,
    pub return_to: String,
}

/// The decision forms of a change page: the posted values and errors of the one that was refused,
/// empty for the other.
#[derive(Default)]
struct DecisionForms {
    approve: DecisionForm,
    approve_errors: FormErrors,
    reject: DecisionForm,
    reject_errors: FormErrors,
}

#[derive(Template)]
#[template(path = "changes/change.html")]
pub struct ChangePage {
    layout: Layout,
    csrf: String,
    notice: &'static str,
    change: ChangeView,
    /// The user's roles approve changes.
    can_decide: bool,
    approve_form: FormView,
    reject_form: FormView,
    conflicts: Vec<ConflictView>,
    /// Why the conflicts shown are the stored ones ("" = checked now).
    conflicts_problem: String,
    blackouts: Vec<BlackoutView>,
    blackouts_problem: String,
    changesets: Vec<ChangesetView>,
    changesets_more: bool,
    changesets_problem: String,
}

impl ChangePage {
    pub fn has_notice(&self) -> bool {
        !self.notice.is_empty()
    }

    /// The Approve and Reject forms are shown.
    pub fn decision_open(&self) -> bool {
        self.change.awaiting && self.can_decide
    }

    /// The decision panel is shown: the forms, or what a refused decision was told.
    pub fn show_decisions(&self) -> bool {
        self.decision_open() || self.approve_form.has_messages() || self.reject_form.has_messages()
    }
}

/// The change number of an address, or 404.
fn checked(number: &str) -> Result<&str, PageError> {
    if number.starts_with("CHG") && is_record_number(number) {
        Ok(number)
    } else {
        Err(PageError::NotFound(format!("No change {number}.")))
    }
}

/// `text` inside a double-quoted AIP-160 filter string.
fn quoted(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}

/// The CIs of `names` by resource name. A failure leaves the map empty (the page then shows
/// resource names): names are decoration, not the page's point.
async fn ci_names(
    state: &AppState,
    session: &Session,
    names: Vec<String>,
) -> HashMap<String, ConfigurationItem> {
    let mut unique: Vec<String> = names.into_iter().collect::<BTreeSet<_>>().into_iter().collect();
    unique.truncate(MAX_CI_LOOKUP);
    if unique.is_empty() {
        return HashMap::new();
    }
    let request = BatchGetConfigurationItemsRequest { names: unique };
    match state.gateway.cmdb().batch_get_configuration_items(authed(&session.data, request)).await {
        Ok(found) => {
            found.into_inner().configuration_items.into_iter().map(|ci| (ci.name.clone(), ci)).collect()
        }
        Err(status) => {
            tracing::debug!(code = ?status.code(), "configuration item names not available");
            HashMap::new()
        }
    }
}

/// The changes `change` conflicts with: checked now (CheckChangeConflicts) while it is open and
/// has CIs and a window, else those found when it was last saved (`Change.conflicts`). A failed
/// check falls back to the saved ones and says why.
async fn conflicts_of(state: &AppState, session: &Session, change: &Change) -> (Vec<ChangeConflict>, String) {
    let stored = || {
        change
            .conflicts
            .iter()
            .map(|name| ChangeConflict { change: name.clone(), kind: 0, configuration_item: String::new() })
            .collect::<Vec<_>>()
    };
    let open = matches!(
        ChangeState::try_from(change.state),
        Ok(ChangeState::New
            | ChangeState::Assess
            | ChangeState::Authorize
            | ChangeState::Scheduled
            | ChangeState::Implement)
    );
    let start = micros_of(change.planned_start_time.as_ref());
    let end = micros_of(change.planned_end_time.as_ref());
    if !open || start <= 0 || end <= start || change.configuration_items.is_empty() {
        return (stored(), String::new());
    }
    let request = CheckChangeConflictsRequest {
        configuration_items: change.configuration_items.clone(),
        planned_start_time: change.planned_start_time,
        planned_end_time: change.planned_end_time,
        exclude_change: change.name.clone(),
    };
    match state.gateway.changes().check_change_conflicts(authed(&session.data, request)).await {
        Ok(checked) => (checked.into_inner().conflicts, String::new()),
        Err(status) => (
            stored(),
            format!(
                "The conflicts could not be checked now ({}); these are the ones found when the change \
                 was last saved.",
                status.message()
            ),
        ),
    }
}

/// The blackout windows over `change`'s planned window (only emergency changes may be authorised
/// or deployed inside one), and why they could not be read.
async fn blackouts_over(state: &AppState, session: &Session, change: &Change) -> (Vec<BlackoutView>, String) {
    let start = micros_of(change.planned_start_time.as_ref());
    let end = micros_of(change.planned_end_time.as_ref());
    if start <= 0 || end <= start {
        return (Vec::new(), String::new());
    }
    let request = ListBlackoutWindowsRequest { include_past: true };
    match state.gateway.changes().list_blackout_windows(authed(&session.data, request)).await {
        Ok(listed) => {
            let mut over = Vec::new();
            for w in &listed.get_ref().blackout_windows {
                // Inclusive at both ends, as the change service judges a blackout.
                let (from, to) = (micros_of(w.start_time.as_ref()), micros_of(w.end_time.as_ref()));
                if from <= end && to >= start {
                    over.push(BlackoutView {
                        name: w.display_name.clone(),
                        reason: w.reason.clone(),
                        start: time_view(w.start_time.as_ref()),
                        end: time_view(w.end_time.as_ref()),
                    });
                }
            }
            (over, String::new())
        }
        Err(status) => (Vec::new(), format!("Blackout windows cannot be shown now: {}", status.message())),
    }
}

/// The changesets linked to `change`, newest first; whether more are linked than shown; and why
/// they could not be read.
async fn changesets_of(
    state: &AppState,
    session: &Session,
    change: &Change,
) -> (Vec<ChangesetView>, bool, String) {
    let request = ListChangesetsRequest {
        page_size: CHANGESETS_SHOWN,
        page_token: String::new(),
        filter: format!("changes = \"{}\"", quoted(&change.name)),
    };
    match state.gateway.changes().list_changesets(authed(&session.data, request)).await {
        Ok(listed) => {
            let listed = listed.into_inner();
            let views = listed.changesets.iter().map(changeset_view).collect();
            (views, !listed.next_page_token.is_empty(), String::new())
        }
        Err(status) => (Vec::new(), false, format!("Changesets cannot be shown now: {}", status.message())),
    }
}

fn changeset_view(changeset: &Changeset) -> ChangesetView {
    let (authorization, authorization_class) = authorization_label(changeset.authorization);
    ChangesetView {
        revision: changeset.revision.chars().take(12).collect(),
        repository: changeset.repository.clone(),
        author: changeset.author.clone(),
        title: changeset
            .message
            .lines()
            .next()
            .unwrap_or_default()
            .chars()
            .take(CHANGESET_TITLE_CHARS)
            .collect(),
        when: time_view(changeset.commit_time.as_ref()),
        authorization,
        authorization_class,
        reason: changeset.authorization_reason.clone(),
    }
}

fn approve_fields(form: &DecisionForm) -> Vec<FieldView> {
    vec![
        FieldView::new("approve-comment", "comment", "Comment", FieldKind::TextArea)
            .value(form.comment.as_str())
            .hint("Optional: conditions or remarks, kept with your approval."),
    ]
}

fn reject_fields(form: &DecisionForm) -> Vec<FieldView> {
    vec![
        FieldView::new("reject-comment", "comment", "Reason", FieldKind::TextArea)
            .required(true)
            .value(form.comment.as_str())
            .hint("Why the change is rejected: it goes back to New and is reworked from this."),
    ]
}

/// `errors` with each field's error moved to the top of its form, for a form that is not shown.
fn on_top(mut errors: FormErrors, label: &str) -> FormErrors {
    for description in std::mem::take(&mut errors.fields).into_values() {
        errors.add_form(sentence(label, &description));
    }
    errors
}

/// The page of change `number` with `forms` (values and errors of a refused decision).
async fn change_page(
    state: &AppState,
    session: &Session,
    number: &str,
    notice: &'static str,
    forms: DecisionForms,
    status: StatusCode,
) -> Result<Response, PageError> {
    let request = GetChangeRequest { name: format!("changes/{number}") };
    let change = state
        .gateway
        .changes()
        .get_change(authed(&session.data, request))
        .await
        .map_err(|status| page_error(&status, &session.here))?
        .into_inner();
    let (conflicts, conflicts_problem) = conflicts_of(state, session, &change).await;
    let (blackouts, blackouts_problem) = blackouts_over(state, session, &change).await;
    let (changesets, changesets_more, changesets_problem) = changesets_of(state, session, &change).await;
    let mut wanted = change.configuration_items.clone();
    wanted.extend(change.business_services.iter().cloned());
    wanted.extend(
        conflicts.iter().filter(|c| !c.configuration_item.is_empty()).map(|c| c.configuration_item.clone()),
    );
    let known = ci_names(state, session, wanted).await;
    let conflicts = conflicts
        .iter()
        .map(|c| ConflictView {
            number: number_of(&c.change).to_string(),
            kind: conflict_label(c.kind),
            ci: (!c.configuration_item.is_empty()).then(|| CiLink::new(&c.configuration_item, &known)),
        })
        .collect();
    let view = ChangeView::new(&change, &known);
    let can_decide = session.data.has_any_role(CHANGE_ROLES);
    // Without the forms (the change no longer awaits approval) a field's error goes on top.
    let (approve_errors, reject_errors) = if view.awaiting && can_decide {
        (forms.approve_errors, forms.reject_errors)
    } else {
        (on_top(forms.approve_errors, "Comment"), on_top(forms.reject_errors, "Reason"))
    };
    let page = ChangePage {
        layout: Layout::new(
            format!("{} {}", view.number, view.summary),
            Some(&session.data),
            Section::Changes,
        ),
        csrf: session.data.csrf.clone(),
        notice,
        can_decide,
        approve_form: FormView::new(approve_fields(&forms.approve), &approve_errors),
        reject_form: FormView::new(reject_fields(&forms.reject), &reject_errors),
        conflicts,
        conflicts_problem,
        blackouts,
        blackouts_problem,
        changesets,
        changesets_more,
        changesets_problem,
        change: view,
    };
    Ok(render(status, &page))
}

/// `?done=` of a change page shown after a decision.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ChangeQuery {
    pub done: String,
}

/// GET `/changes/{number}`.
pub async fn change(
    State(state): State<AppState>,
    session: Session,
    Path(number): Path<String>,
    Query(query): Query<ChangeQuery>,
) -> Result<Response, PageError> {
    let number = checked(&number)?;
    change_page(&state, &session, number, notice(&query.done), DecisionForms::default(), StatusCode::OK).await
}

/// Refuses a decision of a user whose roles do not approve changes, before any call (the gateway
/// would refuse it too; this way nothing is even asked).
fn may_decide(session: &Session) -> Result<(), PageError> {
    if session.data.has_any_role(CHANGE_ROLES) {
        Ok(())
    } else {
        Err(PageError::Forbidden(
            "Approving or rejecting a change needs the change-manager, cab-member or admin role.".into(),
        ))
    }
}

/// What a decision form shows for a failed call. The roles were checked before the call, so a
/// PERMISSION_DENIED is the service's separation of duties (the requester or implementer of a
/// change does not decide on it): said at the top of the form, like FAILED_PRECONDITION.
fn decision_errors(status: &Status, page: &str) -> Result<FormErrors, PageError> {
    if status.code() == Code::PermissionDenied {
        let mut errors = FormErrors::default();
        errors.add_form(status.message());
        return Ok(errors);
    }
    form_errors(status, page, &|path| (path == "comment").then(|| "comment".to_string()))
}

/// `return_to` when it is a calendar page of this console: an approval from the calendar goes
/// back there. Anything else (another page, another site) is `None`, so the form cannot be made
/// into an open redirect.
fn calendar_return(return_to: &str) -> Option<&str> {
    let rest = return_to.strip_prefix(CALENDAR_PATH)?;
    if !(rest.is_empty() || rest.starts_with('?')) {
        return None;
    }
    (safe_next(return_to) == return_to).then_some(return_to)
}

/// `path` with `done=<done>` in its query (replacing one it had).
fn with_done(path: &str, done: &str) -> String {
    let (base, query) = path.split_once('?').unwrap_or((path, ""));
    let done_pair = format!("done={done}");
    let mut pairs: Vec<&str> =
        query.split('&').filter(|pair| !pair.is_empty() && !pair.starts_with("done=")).collect();
    pairs.push(&done_pair);
    format!("{base}?{}", pairs.join("&"))
}

/// After a decision: back to the calendar page the form was on, else to the change.
fn back(return_to: &str, number: &str, done: &str) -> Response {
    let target = match calendar_return(return_to) {
        Some(calendar) => with_done(calendar, done),
        None => format!("/changes/{number}?done={done}"),
    };
    Redirect::to(&target).into_response()
}

/// POST `/changes/{number}/approve`: records the user's approval.
pub async fn approve(
    State(state): State<AppState>,
    session: Session,
    Path(number): Path<String>,
    Form(form): Form<DecisionForm>,
) -> Result<Response, PageError> {
    let number = checked(&number)?;
    may_decide(&session)?;
    let page = format!("/changes/{number}");
    let request = ApproveChangeRequest {
        name: format!("changes/{number}"),
        comment: form.comment.trim().to_string(),
        etag: form.etag.trim().to_string(),
    };
    let errors = match state.gateway.changes().approve_change(authed(&session.data, request)).await {
        Ok(decided) => {
            let done = match ChangeState::try_from(decided.into_inner().state) {
                Ok(ChangeState::Scheduled) => "approved",
                Ok(ChangeState::New) => "approval-outvoted",
                _ => "approval-recorded",
            };
            return Ok(back(&form.return_to, number, done));
        }
        Err(status) => decision_errors(&status, &page)?,
    };
    let forms = DecisionForms { approve: form, approve_errors: errors, ..Default::default() };
    change_page(&state, &session, number, "", forms, StatusCode::UNPROCESSABLE_ENTITY).await
}

/// POST `/changes/{number}/reject`: records the user's rejection, with the reason.
pub async fn reject(
    State(state): State<AppState>,
    session: Session,
    Path(number): Path<String>,
    Form(form): Form<DecisionForm>,
) -> Result<Response, PageError> {
    let number = checked(&number)?;
    may_decide(&session)?;
    let page = format!("/changes/{number}");
    let mut errors = FormErrors::default();
    if form.comment.trim().is_empty() {
        errors.add("comment", "is required");
    } else {
        let request = RejectChangeRequest {
            name: format!("changes/{number}"),
            comment: form.comment.trim().to_string(),
            etag: form.etag.trim().to_string(),
        };
        match state.gateway.changes().reject_change(authed(&session.data, request)).await {
            Ok(decided) => {
                let done = match ChangeState::try_from(decided.into_inner().state) {
                    Ok(ChangeState::New) => "rejected",
                    Ok(ChangeState::Scheduled) => "rejection-outvoted",
                    _ => "rejection-recorded",
                };
                return Ok(back(&form.return_to, number, done));
            }
            Err(status) => errors = decision_errors(&status, &page)?,
        }
    }
    let forms = DecisionForms { reject: form, reject_errors: errors, ..Default::default() };
    change_page(&state, &session, number, "", forms, StatusCode::UNPROCESSABLE_ENTITY).await
}

// ---- can a service deploy ----------------------------------------------------------------------

/// `/changes/can-deploy?service=<CI name or id>&environment=<environment>`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct CanDeployQuery {
    pub service: String,
    pub environment: String,
}

/// The CanDeploy answer as the page shows it.
pub struct DeployAnswer {
    pub allowed: bool,
    /// The CI asked about, by name.
    pub service: String,
    pub environment: String,
    pub reasons: Vec<String>,
    /// Numbers of the changes whose window covers the deployment.
    pub changes: Vec<String>,
}

#[derive(Template)]
#[template(path = "changes/can_deploy.html")]
pub struct CanDeployPage {
    layout: Layout,
    form: FormView,
    answer: Option<DeployAnswer>,
}

/// A CI the can-deploy form named: its resource name and what to call it.
struct NamedCi {
    name: String,
    label: String,
}

/// The CI `text` names: `configurationItems/{id}`, its id, or its display name (a business
/// service first when a server and a service share the name). `Err` holds what to tell the user.
async fn resolve_service(
    state: &AppState,
    session: &Session,
    text: &str,
) -> Result<Result<NamedCi, String>, PageError> {
    if text.chars().count() > MAX_SERVICE_CHARS {
        return Ok(Err(format!("Give at most {MAX_SERVICE_CHARS} characters.")));
    }
    let id = text.strip_prefix("configurationItems/").unwrap_or(text);
    if uuid::Uuid::parse_str(id).is_ok() {
        let name = format!("configurationItems/{id}");
        let known = ci_names(state, session, vec![name.clone()]).await;
        let label = known.get(&name).map_or_else(|| text.to_string(), |ci| ci.display_name.clone());
        return Ok(Ok(NamedCi { name, label }));
    }
    let request = ListConfigurationItemsRequest {
        page_size: 10,
        page_token: String::new(),
        filter: format!("display_name = \"{}\"", quoted(text)),
        order_by: String::new(),
    };
    let found = match state.gateway.cmdb().list_configuration_items(authed(&session.data, request)).await {
        Ok(listed) => listed.into_inner().configuration_items,
        Err(status) if status.code() == Code::InvalidArgument => {
            return Ok(Err(format!("“{text}” cannot be looked up: {}", status.message())));
        }
        Err(status) => return Err(page_error(&status, &session.here)),
    };
    let services: Vec<&ConfigurationItem> =
        found.iter().filter(|ci| ci.ci_class == BUSINESS_SERVICE_CLASS).collect();
    let chosen: &ConfigurationItem = match (found.as_slice(), services.as_slice()) {
        ([only], _) => only,
        ([], _) => {
            return Ok(Err(format!("No configuration item is named “{text}”. Give its name or its id.")));
        }
        (_, [only]) => only,
        _ => {
            let classes: Vec<&str> = found.iter().map(|ci| ci.ci_class.as_str()).collect();
            return Ok(Err(format!(
                "Several configuration items are named “{text}” ({}). Give the id of the one you mean.",
                classes.join(", ")
            )));
        }
    };
    Ok(Ok(NamedCi { name: chosen.name.clone(), label: chosen.display_name.clone() }))
}

/// Where a CanDeploy field violation shows.
fn deploy_field(path: &str) -> Option<String> {
    match path {
        "configuration_item" => Some("service".to_string()),
        "environment" => Some("environment".to_string()),
        _ => None,
    }
}

/// GET `/changes/can-deploy`: the form, and for a named service whether it may deploy now and why.
/// A question, not an action: the form is sent with GET (no CSRF token in the address), so the
/// answer's address can be shared.
pub async fn can_deploy(
    State(state): State<AppState>,
    session: Session,
    Query(query): Query<CanDeployQuery>,
) -> Result<Response, PageError> {
    let service = query.service.trim();
    let environment = query.environment.trim();
    let mut errors = FormErrors::default();
    let mut answer = None;
    if !service.is_empty() {
        match resolve_service(&state, &session, service).await? {
            Err(problem) => errors.add("service", problem),
            Ok(ci) => {
                let request = CanDeployRequest {
                    configuration_item: ci.name.clone(),
                    environment: environment.to_string(),
                    deploy_time: None,
                };
                match state.gateway.changes().can_deploy(authed(&session.data, request)).await {
                    Ok(decided) => {
                        let decided = decided.into_inner();
                        answer = Some(DeployAnswer {
                            allowed: decided.allowed,
                            service: ci.label,
                            environment: environment.to_string(),
                            reasons: decided.reasons,
                            changes: decided.changes.iter().map(|name| number_of(name).to_string()).collect(),
                        });
                    }
                    Err(status) => errors = form_errors(&status, &session.here, &deploy_field)?,
                }
            }
        }
    }
    let fields = vec![
        FieldView::new("service", "service", "Service", FieldKind::Text)
            .required(true)
            .max_length(MAX_SERVICE_CHARS)
            .value(service)
            .hint("The business service or CI being deployed: its name (e.g. checkout) or its id."),
        FieldView::new("environment", "environment", "Environment", FieldKind::Text)
            .max_length(200)
            .value(environment)
            .hint("For example production. Leave it empty to ask for the CI's own environment."),
    ];
    let page = CanDeployPage {
        layout: Layout::new("Can a service deploy now?", Some(&session.data), Section::Changes),
        form: FormView::new(fields, &errors),
        answer,
    };
    Ok(render(form_status(!errors.is_empty()), &page))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(text: &str) -> NaiveDate {
        NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap()
    }

    fn at(text: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(text).unwrap().timestamp_micros()
    }

    fn timestamp(text: &str) -> Option<prost_types::Timestamp> {
        let micros = at(text);
        Some(prost_types::Timestamp { seconds: micros / 1_000_000, nanos: 0 })
    }

    #[test]
    fn a_week_runs_monday_to_sunday_and_a_month_covers_whole_weeks() {
        let week = Period::of(CalendarView::Week, date("2026-03-04")).unwrap();
        assert_eq!(
            (week.anchor, week.first, week.end),
            (date("2026-03-02"), date("2026-03-02"), date("2026-03-09"))
        );
        assert_eq!((week.previous, week.next), (date("2026-02-23"), date("2026-03-09")));
        assert_eq!(week.days().len(), 7);
        assert_eq!(week.own_href(), "/changes/calendar?view=week&start=2026-03-02");
        assert_eq!(
            week.filter(),
            "planned_start_time < \"2026-03-09T00:00:00Z\" AND planned_end_time > \"2026-03-02T00:00:00Z\""
        );

        // March 2026 starts on a Sunday and ends on a Tuesday: six weeks.
        let month = Period::of(CalendarView::Month, date("2026-03-31")).unwrap();
        assert_eq!(
            (month.anchor, month.first, month.end),
            (date("2026-03-01"), date("2026-02-23"), date("2026-04-06"))
        );
        assert_eq!((month.previous, month.next), (date("2026-02-01"), date("2026-04-01")));
        assert_eq!(month.days().len(), 42);
        assert_eq!(month.heading(), "Change calendar: March 2026");
        // February 2027 starts on a Monday and ends on a Sunday: exactly four weeks.
        let february = Period::of(CalendarView::Month, date("2027-02-10")).unwrap();
        assert_eq!(february.days().len(), 28);

        assert!(Period::of(CalendarView::Week, date("1970-01-05")).is_none());
        assert!(Period::of(CalendarView::Month, date("9999-12-01")).is_none());
        assert_eq!(CalendarView::parse(""), Some(CalendarView::Week));
        assert_eq!(CalendarView::parse("month"), Some(CalendarView::Month));
        assert_eq!(CalendarView::parse("year"), None);
    }

    /// Number, first day, approvable and time of each entry of `day`.
    fn entries(day: &DayView) -> Vec<(&str, bool, bool, &str)> {
        day.entries.iter().map(|e| (e.number.as_str(), e.first, e.approvable, e.time_text.as_str())).collect()
    }

    #[test]
    fn changes_show_on_every_day_they_overlap_with_ids_and_approve_once() {
        let week = Period::of(CalendarView::Week, date("2026-03-02")).unwrap();
        let overnight = Change {
            number: "CHG0000001".into(),
            state: ChangeState::Authorize as i32,
            risk: Risk::High as i32,
            planned_start_time: timestamp("2026-03-03T22:00:00Z"),
            planned_end_time: timestamp("2026-03-04T02:00:00Z"),
            ..Default::default()
        };
        let scheduled = Change {
            number: "CHG0000002".into(),
            state: ChangeState::Scheduled as i32,
            planned_start_time: timestamp("2026-03-04T10:00:00Z"),
            planned_end_time: timestamp("2026-03-04T12:00:00Z"),
            ..Default::default()
        };
        let windows = PeriodWindows {
            blackouts: vec![BlackoutWindow {
                display_name: "Quarter close".into(),
                start_time: timestamp("2026-03-06T00:00:00Z"),
                end_time: timestamp("2026-03-07T00:00:00Z"),
                ..Default::default()
            }],
            ..Default::default()
        };
        let weeks = lay_out(&week, date("2026-03-04"), &[overnight, scheduled], &windows, true);
        assert_eq!(weeks.len(), 1);
        let days = &weeks[0];
        let numbers = |i: usize| entries(&days[i]);
        assert!(numbers(0).is_empty());
        assert_eq!(numbers(1), [("CHG0000001", true, true, "from 22:00")]);
        assert_eq!(
            numbers(2),
            [("CHG0000001", false, false, "until 02:00"), ("CHG0000002", true, false, "10:00–12:00")]
        );
        assert_eq!(days[1].entries[0].risk_class, "risk-high");
        assert!(days[2].today && days[2].classes().contains("day--today"));
        assert!(days[4].blackout && !days[5].blackout, "the blackout ends at midnight");
        assert_eq!(days[4].bands[0].name, "Quarter close");
        assert_eq!(days[2].label, "Wed 4 Mar");

        let change = Change {
            number: "CHG0000003".into(),
            state: ChangeState::Authorize as i32,
            planned_start_time: timestamp("2026-03-02T08:00:00Z"),
            planned_end_time: timestamp("2026-03-02T09:00:00Z"),
            ..Default::default()
        };
        let weeks = lay_out(&week, date("2026-03-04"), &[change], &PeriodWindows::default(), false);
        assert!(!weeks[0][0].entries[0].approvable, "only roles that approve get the button");
    }

    #[test]
    fn a_month_grid_marks_the_days_around_the_month() {
        let month = Period::of(CalendarView::Month, date("2026-03-01")).unwrap();
        let weeks = lay_out(&month, date("2000-01-01"), &[], &PeriodWindows::default(), true);
        assert_eq!(weeks.len(), 6);
        assert!(!weeks[0][0].in_period && weeks[0][6].in_period, "23 Feb is outside, 1 Mar inside");
        assert!(weeks[0][0].classes().contains("day--outside"));
        assert!(!weeks[5][2].in_period, "1 April is outside");
    }

    #[test]
    fn approvals_return_only_to_a_calendar_page() {
        assert_eq!(
            calendar_return("/changes/calendar?view=week&start=2026-03-02"),
            Some("/changes/calendar?view=week&start=2026-03-02")
        );
        assert_eq!(calendar_return("/changes/calendar"), Some("/changes/calendar"));
        for bad in [
            "",
            "https://evil.example/changes/calendar",
            "//evil.example/changes/calendar",
            "/changes/calendarx",
            "/changes/CHG0000001",
            "/changes/calendar?\nx",
            "/changes/calendar/..\\evil",
        ] {
            assert_eq!(calendar_return(bad), None, "{bad:?}");
        }
        assert_eq!(
            with_done("/changes/calendar?view=week&done=rejected&start=2026-03-02", "approved"),
            "/changes/calendar?view=week&start=2026-03-02&done=approved"
        );
        assert_eq!(with_done("/changes/calendar", "approved"), "/changes/calendar?done=approved");
        let response = back("https://evil.example/", "CHG0000001", "approved");
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        assert_eq!(
            response.headers().get(axum::http::header::LOCATION).unwrap(),
            "/changes/CHG0000001?done=approved"
        );
    }

    #[test]
    fn the_approval_status_says_what_is_still_needed() {
        let mut change = Change {
            r#type: ChangeType::Normal as i32,
            state: ChangeState::Authorize as i32,
            required_approvals: 2,
            approval_rule: ApprovalRule::Any as i32,
            approver_groups: vec!["change-manager".into(), "cab-member".into()],
            approvals: vec![itsm_proto::change::Approval {
                approver: "carl".into(),
                decision: ApprovalDecision::Approved as i32,
                ..Default::default()
            }],
            ..Default::default()
        };
        let status = approval_status(&change);
        assert!(
            status.contains("2 approvals from change-manager, cab-member: 1 given, 1 still needed"),
            "{status}"
        );
        change.approval_rule = ApprovalRule::Majority as i32;
        assert!(approval_status(&change).contains("1 of 2 have decided"));
        change.state = ChangeState::Scheduled as i32;
        assert!(approval_status(&change).starts_with("Not awaiting approval (state: Scheduled)"));
        change.r#type = ChangeType::Standard as i32;
        assert!(approval_status(&change).contains("pre-approved"));
    }

    #[test]
    fn labels_and_addresses() {
        assert_eq!(risk_label(Risk::VeryHigh as i32), ("Very high", "risk-very-high"));
        assert_eq!(risk_label(0), ("Not assessed", "risk-unknown"));
        assert_eq!(state_label(ChangeState::Authorize as i32).0, "Awaiting approval");
        assert_eq!(factor_label("blast_radius"), "Blast radius");
        assert_eq!(factor_label("custom"), "custom");
        assert!(checked("CHG0000001").is_ok());
        assert!(checked("REQ0000001").is_err() && checked("CHG../x").is_err());
        assert_eq!(quoted(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(
            time_on_day(
                at("2026-03-01T00:00:00Z"),
                at("2026-03-09T00:00:00Z"),
                at("2026-03-04T00:00:00Z"),
                at("2026-03-05T00:00:00Z")
            ),
            "all day"
        );
        assert_eq!(notice("approved"), "Change approved: it has every approval it needs and is scheduled.");
        assert_eq!(notice("<script>"), "");
        assert_eq!(deploy_field("configuration_item").as_deref(), Some("service"));
    }
}
