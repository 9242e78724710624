//! The change service's whole-message records (`itsm_runtime::documents`): maintenance windows,
//! the tenant's risk questionnaire and CAB meetings.

use sea_orm::ConnectionTrait;

use itsm_proto::change::{ApprovalPolicy, ApprovalRule, MaintenanceWindow, RiskQuestionnaire};
use itsm_runtime::Error;
use itsm_runtime::db::micros;
use itsm_runtime::documents::{Column, Documents, Kind};

use crate::domain::approval::{PolicyRule, Rule};
use crate::domain::lifecycle::ChangeType;
use crate::domain::maintenance::Window;
use crate::domain::risk::Question;

pub const MAINTENANCE_WINDOWS: Kind =
    Kind { prefix: "maintenanceWindows/", create_method: "CreateMaintenanceWindow", filters: &[] };
pub const QUESTIONNAIRES: Kind =
    Kind { prefix: "riskQuestionnaires/", create_method: "UpdateRiskQuestionnaire", filters: &[] };
pub const CAB_MEETINGS: Kind = Kind {
    prefix: "cabMeetings/",
    create_method: "CreateCabMeeting",
    filters: &[("state", Column::State), ("emergency", Column::Subject)],
};
pub const APPROVAL_POLICIES: Kind =
    Kind { prefix: "approvalPolicies/", create_method: "UpdateApprovalPolicy", filters: &[] };
pub const TEMPLATES: Kind =
    Kind { prefix: "standardChangeTemplates/", create_method: "CreateStandardChangeTemplate", filters: &[] };
/// The one approval policy record of a tenant.
pub const POLICY_KEY: &str = "approval-policy";
/// The one questionnaire record of a tenant.
pub const QUESTIONNAIRE_KEY: &str = "questionnaire";

/// The tenant's maintenance windows as the rules see them.
pub async fn windows(db: &impl ConnectionTrait, tenant: &str) -> Result<Vec<Window>, Error> {
    Ok(Documents::all::<MaintenanceWindow>(db, &MAINTENANCE_WINDOWS, tenant)
        .await?
        .into_iter()
        .map(|d| Window {
            targets: d.body.configuration_items,
            start: d.body.start_time.as_ref().map_or(0, micros),
            end: d.body.end_time.as_ref().map_or(0, micros),
        })
        .collect())
}

/// The tenant's saved questionnaire (empty: none saved, the built-in questions apply).
pub async fn questions(db: &impl ConnectionTrait, tenant: &str) -> Result<Vec<Question>, Error> {
    let saved =
        Documents::singleton::<RiskQuestionnaire>(db, &QUESTIONNAIRES, tenant, QUESTIONNAIRE_KEY).await?;
    Ok(saved
        .map(|d| {
            d.body
                .questions
                .into_iter()
                .map(|q| Question {
                    id: q.id,
                    question: q.question,
                    risky_answer: q.risky_answer,
                    points: q.points,
                })
                .collect()
        })
        .unwrap_or_default())
}

/// A proto policy rule as the rules see it (None when its rule is unset).
pub fn policy_rule_of(r: &itsm_proto::change::ApprovalPolicyRule) -> Option<PolicyRule> {
    let rule = match ApprovalRule::try_from(r.rule).ok()? {
        ApprovalRule::Any => Rule::Any,
        ApprovalRule::All => Rule::All,
        ApprovalRule::Majority => Rule::Majority,
        ApprovalRule::Unspecified => return None,
    };
    Some(PolicyRule {
        change_type: ChangeType::from_i32(r.r#type),
        min_risk: r.min_risk,
        groups: r.approver_groups.clone(),
        rule,
        count: r.count,
    })
}

/// The tenant's saved approval policy (empty: none saved, the built-in policy applies).
pub async fn policy(db: &impl ConnectionTrait, tenant: &str) -> Result<Vec<PolicyRule>, Error> {
    let saved = Documents::singleton::<ApprovalPolicy>(db, &APPROVAL_POLICIES, tenant, POLICY_KEY).await?;
    Ok(saved.map(|d| d.body.rules.iter().filter_map(policy_rule_of).collect()).unwrap_or_default())
}
