//! Change governance beyond one change: maintenance windows, the tenant's risk questionnaire,
//! CAB meetings (with emergency CABs) whose decisions are approvals, post-implementation reviews
//! and the change success report. The RPC methods in `api.rs` call these.

use std::collections::BTreeMap;

use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

use itsm_cmdb_client::CiReference;
use itsm_proto::change::{
    ApprovalPolicy, ApprovalPolicyRule, ApprovalRule, CabDecision, CabDecisionKind, CabMeeting,
    CabMeetingState, ChangeSuccessRate, ChangeSuccessReport, CreateCabMeetingRequest,
    CreateMaintenanceWindowRequest, GetChangeSuccessReportRequest, ListCabMeetingsRequest,
    ListCabMeetingsResponse, ListMaintenanceWindowsRequest, MaintenanceWindow, RecordCabDecisionRequest,
    ReviewChangeRequest, RiskQuestion, RiskQuestionnaire, UpdateApprovalPolicyRequest,
    UpdateCabMeetingRequest, UpdateRiskQuestionnaireRequest,
};
use itsm_proto::change::{
    CreateStandardChangeTemplateRequest, ListStandardChangeTemplatesRequest,
    ListStandardChangeTemplatesResponse, StandardChangeTemplate,
};
use itsm_runtime::db::{micros, now_micros, timestamp};
use itsm_runtime::documents::{Columns, Document, Documents, Listing};
use itsm_runtime::error::Violations;
use itsm_runtime::fieldmask::UpdateMask;
use itsm_runtime::numbers::is_number;
use itsm_runtime::validate;
use itsm_runtime::{CallContext, Error, idempotency};

use crate::api::{ChangeApi, number};
use crate::convert::change_name;
use crate::domain::approval::{Rule, built_in_policy};
use crate::domain::lifecycle::{ChangeState, ChangeType};
use crate::domain::risk::{Question, built_in, questionnaire_problems};
use crate::entity::change;
use crate::records::{
    APPROVAL_POLICIES, CAB_MEETINGS, MAINTENANCE_WINDOWS, POLICY_KEY, QUESTIONNAIRE_KEY, QUESTIONNAIRES,
    TEMPLATES,
};
use crate::repo::{ReviewRecord, list_from, review_of};

const MAX_AGENDA: usize = 100;
const MAX_MINUTES: usize = 64 * 1024;
const DEFAULT_REPORT_DAYS: i64 = 90;

fn window_present(d: Document<MaintenanceWindow>) -> MaintenanceWindow {
    MaintenanceWindow { name: d.name.clone(), audit: Some(d.audit()), ..d.body }
}

fn meeting_present(d: Document<CabMeeting>) -> CabMeeting {
    CabMeeting { name: d.name.clone(), etag: d.etag(), audit: Some(d.audit()), ..d.body }
}

fn meeting_columns(m: &CabMeeting) -> Columns {
    let state = CabMeetingState::try_from(m.state).unwrap_or(CabMeetingState::Scheduled);
    Columns {
        display_name: m.display_name.clone(),
        state: state.as_str_name().trim_start_matches("CAB_MEETING_STATE_").to_string(),
        subject: m.emergency.to_string(),
        ..Columns::default()
    }
}

impl ChangeApi {
    fn documents(&self) -> Documents {
        Documents { db: self.repo.db.clone() }
    }

    pub async fn create_maintenance_window(
        &self,
        ctx: &CallContext,
        r: CreateMaintenanceWindowRequest,
    ) -> Result<MaintenanceWindow, Error> {
        let Some(w) = r.maintenance_window.as_ref() else {
            return Err(Error::invalid("maintenance_window", "is required"));
        };
        let mut v = Violations::new();
        validate::text(&mut v, "maintenance_window.display_name", &w.display_name, 200, true);
        if w.configuration_items.is_empty() || w.configuration_items.len() > 100 {
            v.add("maintenance_window.configuration_items", "must name 1 to 100 CIs or business services");
        }
        let (start, end) = (w.start_time.as_ref().map_or(0, micros), w.end_time.as_ref().map_or(0, micros));
        if start <= 0 {
            v.add("maintenance_window.start_time", "is required");
        } else if end <= start {
            v.add("maintenance_window.end_time", "must be after start_time");
        }
        v.into_result()?;
        let refs: Vec<CiReference<'_>> = w
            .configuration_items
            .iter()
            .enumerate()
            .map(|(i, name)| CiReference {
                field: format!("maintenance_window.configuration_items[{i}]"),
                name,
                class: None,
            })
            .collect();
        self.cmdb.check(ctx, &refs).await?;
        let body = MaintenanceWindow { name: String::new(), audit: None, ..w.clone() };
        let columns = Columns { display_name: w.display_name.clone(), ..Columns::default() };
        let hash = idempotency::request_hash(&r);
        let d =
            self.documents().create(&MAINTENANCE_WINDOWS, ctx, &r.request_id, &hash, columns, &body).await?;
        Ok(window_present(d))
    }

    pub async fn list_maintenance_windows(
        &self,
        ctx: &CallContext,
        r: &ListMaintenanceWindowsRequest,
    ) -> Result<Vec<MaintenanceWindow>, Error> {
        let now = now_micros();
        let mut windows: Vec<MaintenanceWindow> =
            Documents::all::<MaintenanceWindow>(&self.repo.db, &MAINTENANCE_WINDOWS, &ctx.tenant)
                .await?
                .into_iter()
                .map(window_present)
                .filter(|w| r.include_past || w.end_time.as_ref().map_or(0, micros) > now)
                .filter(|w| {
                    r.configuration_item.is_empty() || w.configuration_items.contains(&r.configuration_item)
                })
                .collect();
        windows.sort_by_key(|w| w.start_time.as_ref().map_or(0, micros));
        Ok(windows)
    }

    pub async fn delete_maintenance_window(&self, ctx: &CallContext, name: &str) -> Result<(), Error> {
        let id = MAINTENANCE_WINDOWS.id_of(name, "name")?;
        self.documents().delete(&MAINTENANCE_WINDOWS, ctx, &id, "").await
    }

    pub async fn risk_questionnaire(&self, ctx: &CallContext) -> Result<RiskQuestionnaire, Error> {
        let saved = Documents::singleton::<RiskQuestionnaire>(
            &self.repo.db,
            &QUESTIONNAIRES,
            &ctx.tenant,
            QUESTIONNAIRE_KEY,
        )
        .await?;
        Ok(match saved {
            Some(d) => {
                RiskQuestionnaire { etag: d.etag(), audit: Some(d.audit()), built_in: false, ..d.body }
            }
            None => RiskQuestionnaire {
                questions: built_in()
                    .into_iter()
                    .map(|q| RiskQuestion {
                        id: q.id,
                        question: q.question,
                        risky_answer: q.risky_answer,
                        points: q.points,
                    })
                    .collect(),
                built_in: true,
                etag: String::new(),
                audit: None,
            },
        })
    }

    pub async fn update_risk_questionnaire(
        &self,
        ctx: &CallContext,
        r: UpdateRiskQuestionnaireRequest,
    ) -> Result<RiskQuestionnaire, Error> {
        let Some(q) = r.risk_questionnaire else {
            return Err(Error::invalid("risk_questionnaire", "is required"));
        };
        let questions: Vec<Question> = q
            .questions
            .iter()
            .map(|x| Question {
                id: x.id.clone(),
                question: x.question.clone(),
                risky_answer: x.risky_answer,
                points: x.points,
            })
            .collect();
        let problems = questionnaire_problems(&questions);
        if !problems.is_empty() {
            let mut v = Violations::new();
            for (field, description) in problems {
                v.add(format!("risk_questionnaire.{field}"), description);
            }
            v.into_result()?;
        }
        let body = RiskQuestionnaire {
            questions: q.questions.clone(),
            built_in: false,
            etag: String::new(),
            audit: None,
        };
        let stored =
            self.documents().save_singleton(&QUESTIONNAIRES, ctx, QUESTIONNAIRE_KEY, &q.etag, body).await?;
        Ok(RiskQuestionnaire {
            etag: stored.etag(),
            audit: Some(stored.audit()),
            built_in: false,
            ..stored.body
        })
    }

    pub async fn approval_policy(&self, ctx: &CallContext) -> Result<ApprovalPolicy, Error> {
        let saved = Documents::singleton::<ApprovalPolicy>(
            &self.repo.db,
            &APPROVAL_POLICIES,
            &ctx.tenant,
            POLICY_KEY,
        )
        .await?;
        Ok(match saved {
            Some(d) => ApprovalPolicy { etag: d.etag(), audit: Some(d.audit()), built_in: false, ..d.body },
            None => ApprovalPolicy {
                rules: built_in_policy()
                    .into_iter()
                    .map(|r| ApprovalPolicyRule {
                        r#type: r.change_type.map_or(0, |t| t as i32),
                        min_risk: r.min_risk,
                        approver_groups: r.groups,
                        rule: match r.rule {
                            Rule::Any => ApprovalRule::Any,
                            Rule::All => ApprovalRule::All,
                            Rule::Majority => ApprovalRule::Majority,
                        } as i32,
                        count: r.count,
                    })
                    .collect(),
                built_in: true,
                etag: String::new(),
                audit: None,
            },
        })
    }

    pub async fn update_approval_policy(
        &self,
        ctx: &CallContext,
        r: UpdateApprovalPolicyRequest,
    ) -> Result<ApprovalPolicy, Error> {
        let Some(p) = r.approval_policy else { return Err(Error::invalid("approval_policy", "is required")) };
        let mut v = Violations::new();
        if p.rules.is_empty() || p.rules.len() > 20 {
            v.add("approval_policy.rules", "must hold 1 to 20 rules");
        }
        for (i, rule) in p.rules.iter().enumerate() {
            let field = |f: &str| format!("approval_policy.rules[{i}].{f}");
            if rule.r#type != 0 && ChangeType::from_i32(rule.r#type).is_none() {
                v.add(field("type"), "must be STANDARD, NORMAL, EMERGENCY or unset");
            }
            if !(0..=4).contains(&rule.min_risk) {
                v.add(field("min_risk"), "must be LOW … VERY_HIGH or unset");
            }
            let group_ok = |g: &String| {
                !g.is_empty()
                    && g.len() <= 64
                    && g.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            };
            if rule.approver_groups.is_empty()
                || rule.approver_groups.len() > 10
                || !rule.approver_groups.iter().all(group_ok)
            {
                v.add(field("approver_groups"), "must name 1 to 10 roles (lower case, digits, '-')");
            }
            match ApprovalRule::try_from(rule.rule) {
                Ok(ApprovalRule::Any | ApprovalRule::Majority) if !(1..=20).contains(&rule.count) => {
                    v.add(field("count"), "must be 1 to 20 for ANY and MAJORITY");
                }
                Ok(ApprovalRule::Unspecified) | Err(_) => {
                    v.add(field("rule"), "must be ANY, ALL or MAJORITY");
                }
                _ => {}
            }
        }
        v.into_result()?;
        let body =
            ApprovalPolicy { rules: p.rules.clone(), built_in: false, etag: String::new(), audit: None };
        let stored =
            self.documents().save_singleton(&APPROVAL_POLICIES, ctx, POLICY_KEY, &p.etag, body).await?;
        Ok(ApprovalPolicy {
            etag: stored.etag(),
            audit: Some(stored.audit()),
            built_in: false,
            ..stored.body
        })
    }

    pub async fn create_template(
        &self,
        ctx: &CallContext,
        r: CreateStandardChangeTemplateRequest,
    ) -> Result<StandardChangeTemplate, Error> {
        let Some(t) = r.standard_change_template.as_ref() else {
            return Err(Error::invalid("standard_change_template", "is required"));
        };
        let mut v = Violations::new();
        validate::text(&mut v, "standard_change_template.display_name", &t.display_name, 200, true);
        for (field, value, required) in [
            ("description", &t.description, false),
            ("implementation_plan", &t.implementation_plan, true),
            ("backout_plan", &t.backout_plan, true),
            ("test_plan", &t.test_plan, false),
        ] {
            validate::text(&mut v, &format!("standard_change_template.{field}"), value, 32 * 1024, required);
        }
        if t.configuration_items.len() > 100 {
            v.add("standard_change_template.configuration_items", "at most 100 CIs");
        }
        v.into_result()?;
        let refs: Vec<CiReference<'_>> = t
            .configuration_items
            .iter()
            .enumerate()
            .map(|(i, name)| CiReference {
                field: format!("standard_change_template.configuration_items[{i}]"),
                name,
                class: None,
            })
            .collect();
        self.cmdb.check(ctx, &refs).await?;
        let body = StandardChangeTemplate { name: String::new(), audit: None, ..t.clone() };
        let columns = Columns { display_name: t.display_name.clone(), ..Columns::default() };
        let hash = idempotency::request_hash(&r);
        let d = self.documents().create(&TEMPLATES, ctx, &r.request_id, &hash, columns, &body).await?;
        Ok(StandardChangeTemplate { name: d.name.clone(), audit: Some(d.audit()), ..d.body })
    }

    pub async fn list_templates(
        &self,
        ctx: &CallContext,
        r: &ListStandardChangeTemplatesRequest,
    ) -> Result<ListStandardChangeTemplatesResponse, Error> {
        let listing = Listing {
            page_size: r.page_size,
            page_token: &r.page_token,
            filter: "",
            order_by: "display_name",
        };
        let (items, next_page_token) = self
            .documents()
            .list::<StandardChangeTemplate>(&TEMPLATES, ctx, &self.page_tokens, &listing)
            .await?;
        Ok(ListStandardChangeTemplatesResponse {
            standard_change_templates: items
                .into_iter()
                .map(|d| StandardChangeTemplate { name: d.name.clone(), audit: Some(d.audit()), ..d.body })
                .collect(),
            next_page_token,
        })
    }

    /// Each agenda item is a change awaiting approval (an emergency change for an emergency CAB).
    async fn check_agenda(&self, ctx: &CallContext, agenda: &[String], emergency: bool) -> Result<(), Error> {
        let mut v = Violations::new();
        if agenda.len() > MAX_AGENDA {
            v.add("cab_meeting.agenda", format!("at most {MAX_AGENDA} changes"));
        }
        for (i, name) in agenda.iter().enumerate() {
            let field = format!("cab_meeting.agenda[{i}]");
            let Ok(number) = number(name, &field) else {
                v.add(field, "must be `changes/CHG0001234`");
                continue;
            };
            match self.repo.get(ctx, &number).await {
                Ok(c) => {
                    if c.state != ChangeState::Authorize as i32 {
                        v.add(field, format!("{name} is not awaiting approval (AUTHORIZE)"));
                    } else if emergency && c.change_type != ChangeType::Emergency as i32 {
                        v.add(
                            field,
                            format!("{name} is not an emergency change; an emergency CAB decides only those"),
                        );
                    }
                }
                Err(Error::NotFound(_)) => v.add(field, format!("{name} does not exist")),
                Err(other) => return Err(other),
            }
        }
        v.into_result()
    }

    pub async fn create_cab_meeting(
        &self,
        ctx: &CallContext,
        r: CreateCabMeetingRequest,
    ) -> Result<CabMeeting, Error> {
        let Some(m) = r.cab_meeting.as_ref() else {
            return Err(Error::invalid("cab_meeting", "is required"));
        };
        let mut v = Violations::new();
        validate::text(&mut v, "cab_meeting.display_name", &m.display_name, 200, true);
        validate::text(&mut v, "cab_meeting.minutes", &m.minutes, MAX_MINUTES, false);
        if m.start_time.is_none() {
            v.add("cab_meeting.start_time", "is required");
        }
        if m.attendees.len() > 100 {
            v.add("cab_meeting.attendees", "at most 100 attendees");
        }
        v.into_result()?;
        self.check_agenda(ctx, &m.agenda, m.emergency).await?;
        let body = CabMeeting {
            name: String::new(),
            etag: String::new(),
            audit: None,
            decisions: Vec::new(),
            state: CabMeetingState::Scheduled as i32,
            ..m.clone()
        };
        let hash = idempotency::request_hash(&r);
        let d = self
            .documents()
            .create(&CAB_MEETINGS, ctx, &r.request_id, &hash, meeting_columns(&body), &body)
            .await?;
        Ok(meeting_present(d))
    }

    pub async fn get_cab_meeting(&self, ctx: &CallContext, name: &str) -> Result<CabMeeting, Error> {
        Ok(meeting_present(self.documents().get(&CAB_MEETINGS, ctx, name, "name").await?))
    }

    pub async fn list_cab_meetings(
        &self,
        ctx: &CallContext,
        r: &ListCabMeetingsRequest,
    ) -> Result<ListCabMeetingsResponse, Error> {
        let listing =
            Listing { page_size: r.page_size, page_token: &r.page_token, filter: &r.filter, order_by: "" };
        let (items, next_page_token) =
            self.documents().list::<CabMeeting>(&CAB_MEETINGS, ctx, &self.page_tokens, &listing).await?;
        Ok(ListCabMeetingsResponse {
            cab_meetings: items.into_iter().map(meeting_present).collect(),
            next_page_token,
        })
    }

    pub async fn update_cab_meeting(
        &self,
        ctx: &CallContext,
        r: UpdateCabMeetingRequest,
    ) -> Result<CabMeeting, Error> {
        let Some(m) = r.cab_meeting else { return Err(Error::invalid("cab_meeting", "is required")) };
        let id = CAB_MEETINGS.id_of(&m.name, "cab_meeting.name")?;
        let mask = UpdateMask::parse(
            r.update_mask.as_ref(),
            &["display_name", "start_time", "agenda", "attendees", "minutes", "state"],
            "update_mask",
        )?;
        let mut v = Violations::new();
        if mask.contains("display_name") {
            validate::text(&mut v, "cab_meeting.display_name", &m.display_name, 200, true);
        }
        if mask.contains("minutes") {
            validate::text(&mut v, "cab_meeting.minutes", &m.minutes, MAX_MINUTES, false);
        }
        if mask.contains("start_time") && m.start_time.is_none() {
            v.add("cab_meeting.start_time", "is required");
        }
        if mask.contains("state")
            && !matches!(CabMeetingState::try_from(m.state), Ok(s) if s != CabMeetingState::Unspecified)
        {
            v.add("cab_meeting.state", "must be SCHEDULED, HELD or CANCELLED");
        }
        v.into_result()?;
        let current: Document<CabMeeting> =
            self.documents().get(&CAB_MEETINGS, ctx, &m.name, "cab_meeting.name").await?;
        if mask.contains("agenda") {
            // Changes already on the agenda may have moved on; only new ones must await approval.
            let added: Vec<String> =
                m.agenda.iter().filter(|c| !current.body.agenda.contains(c)).cloned().collect();
            self.check_agenda(ctx, &added, current.body.emergency).await?;
        }
        let etag = if m.etag.is_empty() { current.etag() } else { m.etag.clone() };
        let stored = self
            .documents()
            .update(&CAB_MEETINGS, ctx, &id, &etag, |current: &Document<CabMeeting>| {
                let mut after = current.body.clone();
                if mask.contains("display_name") {
                    after.display_name.clone_from(&m.display_name);
                }
                if mask.contains("start_time") {
                    after.start_time = m.start_time;
                }
                if mask.contains("agenda") {
                    after.agenda.clone_from(&m.agenda);
                }
                if mask.contains("attendees") {
                    after.attendees.clone_from(&m.attendees);
                }
                if mask.contains("minutes") {
                    after.minutes.clone_from(&m.minutes);
                }
                if mask.contains("state") {
                    after.state = m.state;
                }
                Ok((meeting_columns(&after), after))
            })
            .await?;
        Ok(meeting_present(stored))
    }

    /// The CAB's decision: an approval or rejection of the change by the caller (the change's
    /// own rules apply: approver roles, separation of duties, one decision per person), recorded
    /// in the meeting; a deferral only in the meeting.
    pub async fn record_cab_decision(
        &self,
        ctx: &CallContext,
        r: RecordCabDecisionRequest,
    ) -> Result<CabMeeting, Error> {
        let meeting: Document<CabMeeting> =
            self.documents().get(&CAB_MEETINGS, ctx, &r.cab_meeting, "cab_meeting").await?;
        number(&r.change, "change")?;
        let mut v = Violations::new();
        let kind = CabDecisionKind::try_from(r.decision).unwrap_or(CabDecisionKind::Unspecified);
        if kind == CabDecisionKind::Unspecified {
            v.add("decision", "must be APPROVE, REJECT or DEFER");
        }
        let needs_comment = matches!(kind, CabDecisionKind::Reject | CabDecisionKind::Defer);
        validate::text(&mut v, "comment", &r.comment, 32 * 1024, needs_comment);
        v.into_result()?;
        if meeting.body.state == CabMeetingState::Cancelled as i32 {
            return Err(Error::FailedPrecondition(format!(
                "{} was cancelled; legal states to decide in: SCHEDULED, HELD",
                meeting.name
            )));
        }
        if !meeting.body.agenda.contains(&r.change) {
            return Err(Error::FailedPrecondition(format!(
                "{} is not on the agenda of {}",
                r.change, meeting.name
            )));
        }
        if kind != CabDecisionKind::Defer {
            let comment = format!("CAB {}: {}", meeting.body.display_name, r.comment.trim());
            self.decide(ctx, &r.change, "", kind == CabDecisionKind::Approve, comment.trim_end_matches(": "))
                .await?;
        }
        let decision = CabDecision {
            change: r.change.clone(),
            decision: kind as i32,
            comment: r.comment.trim().to_string(),
            decided_by: ctx.principal.clone(),
            decide_time: Some(timestamp(now_micros())),
        };
        let stored = self
            .documents()
            .update(&CAB_MEETINGS, ctx, &meeting.id, "", |current: &Document<CabMeeting>| {
                let mut after = current.body.clone();
                after.decisions.push(decision);
                if after.state == CabMeetingState::Scheduled as i32 {
                    after.state = CabMeetingState::Held as i32;
                }
                Ok((meeting_columns(&after), after))
            })
            .await?;
        Ok(meeting_present(stored))
    }

    pub async fn review_change(
        &self,
        ctx: &CallContext,
        r: ReviewChangeRequest,
    ) -> Result<change::Model, Error> {
        let number = number(&r.name, "name")?;
        let Some(review) = r.review else { return Err(Error::invalid("review", "is required")) };
        let mut v = Violations::new();
        validate::text(&mut v, "review.notes", &review.notes, 32 * 1024, true);
        if review.caused_incidents.len() > 100 {
            v.add("review.caused_incidents", "at most 100 incidents");
        }
        for (i, incident) in review.caused_incidents.iter().enumerate() {
            if !incident.strip_prefix("incidents/").is_some_and(|n| is_number(n, "INC")) {
                v.add(format!("review.caused_incidents[{i}]"), "must be `incidents/INC0001234`");
            }
        }
        v.into_result()?;
        let principal = ctx.principal.clone();
        self.repo
            .change(ctx, &number, &r.etag, "review", "", None, |m, now| {
                let state = ChangeState::from_i32(m.state);
                if !matches!(state, Some(ChangeState::Review | ChangeState::Failed)) {
                    return Err(Error::FailedPrecondition(format!(
                        "{} is {}; a post-implementation review is recorded in REVIEW or FAILED",
                        change_name(&m.number),
                        state.map_or("in an unknown state", ChangeState::name)
                    )));
                }
                let mut incidents = review.caused_incidents.clone();
                incidents.sort();
                incidents.dedup();
                m.review = serde_json::to_string(&ReviewRecord {
                    notes: review.notes.trim().to_string(),
                    caused_incidents: incidents,
                    reviewer: principal,
                    time: now,
                })
                .map_err(|e| Error::Internal(e.to_string()))?;
                Ok(())
            })
            .await
    }

    pub async fn change_success_report(
        &self,
        ctx: &CallContext,
        r: &GetChangeSuccessReportRequest,
    ) -> Result<ChangeSuccessReport, Error> {
        let end = r.end_time.as_ref().map_or_else(now_micros, micros);
        let start = r.start_time.as_ref().map_or(end - DEFAULT_REPORT_DAYS * 86_400_000_000, micros);
        if end <= start {
            return Err(Error::invalid("end_time", "must be after start_time"));
        }
        let rows = change::Entity::find()
            .filter(change::Column::TenantId.eq(ctx.tenant.as_str()))
            .filter(change::Column::Outcome.gt(0))
            .filter(change::Column::ActualEndTime.gte(start))
            .filter(change::Column::ActualEndTime.lt(end))
            .all(&self.repo.db)
            .await?;
        let mut overall = Tally::default();
        let mut by_service: BTreeMap<String, Tally> = BTreeMap::new();
        let mut by_team: BTreeMap<String, Tally> = BTreeMap::new();
        for m in &rows {
            let caused = review_of(m).map_or(0, |r| r.caused_incidents.len() as i32);
            overall.add(m.outcome, caused);
            for service in list_from(&m.business_service_names) {
                by_service.entry(service).or_default().add(m.outcome, caused);
            }
            if !m.assignment_group.is_empty() {
                by_team.entry(m.assignment_group.clone()).or_default().add(m.outcome, caused);
            }
        }
        Ok(ChangeSuccessReport {
            start_time: Some(timestamp(start)),
            end_time: Some(timestamp(end)),
            overall: Some(overall.rate(String::new())),
            by_business_service: by_service.into_iter().map(|(k, t)| t.rate(k)).collect(),
            by_team: by_team.into_iter().map(|(k, t)| t.rate(k)).collect(),
        })
    }
}

/// Outcomes counted for one key.
#[derive(Default)]
struct Tally {
    implemented: i32,
    successful: i32,
    failed: i32,
    backed_out: i32,
    incidents: i32,
}

impl Tally {
    fn add(&mut self, outcome: i32, incidents: i32) {
        self.implemented += 1;
        match outcome {
            1 => self.successful += 1,
            3 => self.backed_out += 1,
            _ => self.failed += 1,
        }
        self.incidents += incidents;
    }

    fn rate(&self, key: String) -> ChangeSuccessRate {
        ChangeSuccessRate {
            key,
            implemented: self.implemented,
            successful: self.successful,
            failed: self.failed,
            backed_out: self.backed_out,
            success_rate_percent: if self.implemented == 0 {
                0.0
            } else {
                f64::from(self.successful) * 100.0 / f64::from(self.implemented)
            },
            incidents_caused: self.incidents,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tallies_count_outcomes_and_incidents() {
        let mut t = Tally::default();
        t.add(1, 0);
        t.add(1, 2);
        t.add(2, 1);
        t.add(3, 0);
        let r = t.rate("supportGroups/x".into());
        assert_eq!(
            (r.implemented, r.successful, r.failed, r.backed_out, r.incidents_caused),
            (4, 2, 1, 1, 3)
        );
        assert!((r.success_rate_percent - 50.0).abs() < 1e-9);
        assert_eq!(Tally::default().rate(String::new()).success_rate_percent, 0.0);
    }
}
