//! Between stored changes and protobuf messages.

use itsm_proto::change::{Approval, ApprovalDecision, Change, PostImplementationReview, RiskFactor};
use itsm_proto::common::AuditInfo;
use itsm_runtime::db::timestamp;
use itsm_runtime::history::etag;

use crate::domain::risk::Factor;
use crate::entity::change;
use crate::repo::{decisions, list_from, review_of};

pub const CHANGE_PREFIX: &str = "changes/";
pub const CHANGE_NUMBER: &str = "CHG";

pub fn change_name(number: &str) -> String {
    format!("{CHANGE_PREFIX}{number}")
}

fn time(micros: i64) -> Option<prost_types::Timestamp> {
    (micros > 0).then(|| timestamp(micros))
}

pub fn change_to_proto(m: &change::Model) -> Change {
    let factors: Vec<Factor> = serde_json::from_str(&m.risk_factors).unwrap_or_default();
    Change {
        name: change_name(&m.number),
        number: m.number.clone(),
        r#type: m.change_type,
        state: m.state,
        short_description: m.short_description.clone(),
        description: m.description.clone(),
        justification: m.justification.clone(),
        implementation_plan: m.implementation_plan.clone(),
        backout_plan: m.backout_plan.clone(),
        test_plan: m.test_plan.clone(),
        configuration_items: list_from(&m.configuration_items),
        planned_start_time: time(m.planned_start_time),
        planned_end_time: time(m.planned_end_time),
        risk: m.risk,
        assignment_group: m.assignment_group.clone(),
        assignee: m.assignee.clone(),
        approvals: decisions(m)
            .into_iter()
            .map(|d| Approval {
                approver: d.approver,
                decision: if d.approved { ApprovalDecision::Approved } else { ApprovalDecision::Rejected }
                    as i32,
                comment: d.comment,
                decide_time: time(d.time),
            })
            .collect(),
        etag: etag(m.version),
        audit: Some(AuditInfo {
            create_time: time(m.create_time),
            update_time: time(m.update_time),
            creator: m.creator.clone(),
            updater: m.updater.clone(),
        }),
        risk_factors: factors
            .into_iter()
            .map(|f| RiskFactor { factor: f.factor, points: f.points, explanation: f.explanation })
            .collect(),
        risk_score: m.risk_score,
        risk_answers: serde_json::from_str(&m.risk_answers).unwrap_or_default(),
        problem: m.problem.clone(),
        required_approvals: m.required_approvals,
        conflicts: list_from(&m.conflicts),
        actual_start_time: time(m.actual_start_time),
        actual_end_time: time(m.actual_end_time),
        outcome: m.outcome,
        business_services: list_from(&m.business_service_names),
        outside_maintenance_window: m.outside_maintenance_window,
        approval_rule: m.approval_rule,
        approver_groups: list_from(&m.approver_groups),
        template: m.template.clone(),
        review: review_of(m).map(|r| PostImplementationReview {
            notes: r.notes,
            caused_incidents: r.caused_incidents,
            reviewer: r.reviewer,
            review_time: time(r.time),
        }),
    }
}
