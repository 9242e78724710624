//! Between stored records and protobuf messages, and resource names.

use itsm_proto::common::AuditInfo;
use itsm_proto::servicedesk::{AssignmentRule, Shift, SupportGroup, Ticket, TicketNote, Webhook};
use itsm_runtime::db::timestamp;
use itsm_runtime::history::etag;

use crate::domain::shifts;
use crate::entity::{assignment_rule, support_group, ticket, ticket_note, webhook};

pub const TICKET_PREFIX: &str = "tickets/";
pub const TICKET_NUMBER: &str = "REQ";
pub const GROUP_PREFIX: &str = "supportGroups/";
pub const RULE_PREFIX: &str = "assignmentRules/";
pub const WEBHOOK_PREFIX: &str = "webhooks/";
pub const NOTIFICATION_PREFIX: &str = "notifications/";

pub fn ticket_name(number: &str) -> String {
    format!("{TICKET_PREFIX}{number}")
}

/// `tickets/{number}/notes/{id}`.
pub fn note_name(number: &str, id: &str) -> String {
    format!("{}/notes/{id}", ticket_name(number))
}

pub fn group_name(id: &str) -> String {
    format!("{GROUP_PREFIX}{id}")
}

/// `prefix{uuid}` → the id, when the name has exactly that form.
pub fn uuid_of(name: &str, prefix: &str) -> Option<String> {
    let id = name.strip_prefix(prefix)?;
    uuid::Uuid::parse_str(id).ok().filter(|u| u.hyphenated().to_string() == id).map(|_| id.to_string())
}

pub fn list_from(json: &str) -> Vec<String> {
    serde_json::from_str(json).unwrap_or_default()
}

pub fn list_to<T: serde::Serialize + ?Sized>(items: &T) -> String {
    serde_json::to_string(items).unwrap_or_else(|_| "[]".into())
}

pub fn time(micros: i64) -> Option<prost_types::Timestamp> {
    (micros > 0).then(|| timestamp(micros))
}

fn audit(create_time: i64, update_time: i64, creator: &str, updater: &str) -> Option<AuditInfo> {
    Some(AuditInfo {
        create_time: time(create_time),
        update_time: time(update_time),
        creator: creator.to_string(),
        updater: updater.to_string(),
    })
}

pub fn ticket_to_proto(m: &ticket::Model) -> Ticket {
    Ticket {
        name: ticket_name(&m.number),
        number: m.number.clone(),
        channel: m.channel,
        requester: m.requester.clone(),
        organisation: m.organisation.clone(),
        category: m.category.clone(),
        short_description: m.short_description.clone(),
        description: m.description.clone(),
        r#type: m.ticket_type,
        state: m.state,
        support_group: m.support_group.clone(),
        tier: m.tier,
        assignee: m.assignee.clone(),
        incident: m.incident.clone(),
        etag: etag(m.version),
        audit: audit(m.create_time, m.update_time, &m.creator, &m.updater),
        business_service: m.business_service.clone(),
        configuration_items: list_from(&m.configuration_items),
        impact: m.impact,
        urgency: m.urgency,
        priority: m.priority,
        resolution_notes: m.resolution_notes.clone(),
        open_time: time(m.open_time),
        first_response_time: time(m.first_response_time),
        resolve_time: time(m.resolve_time),
        close_time: time(m.close_time),
        escalation_count: m.escalation_count,
        max_tier: m.max_tier,
        survey_score: m.survey_score,
        survey_comment: m.survey_comment.clone(),
        catalog_item: m.catalog_item.clone(),
        variables: serde_json::from_str(&m.variables).unwrap_or_default(),
        request_state: m.request_state,
        approver: m.approver.clone(),
        sla_due_time: time(m.sla_due_time),
    }
}

pub fn note_to_proto(number: &str, m: &ticket_note::Model) -> TicketNote {
    TicketNote {
        name: note_name(number, &m.id),
        text: m.text.clone(),
        visibility: m.visibility,
        author: m.author.clone(),
        create_time: time(m.create_time),
    }
}

pub fn shifts_from(json: &str) -> Vec<shifts::Shift> {
    serde_json::from_str(json).unwrap_or_default()
}

pub fn shift_from_proto(s: &Shift) -> shifts::Shift {
    shifts::Shift {
        member: s.member.clone(),
        weekdays: s.weekdays.clone(),
        start_time: s.start_time.clone(),
        end_time: s.end_time.clone(),
        time_zone: s.time_zone.clone(),
    }
}

pub fn group_to_proto(m: &support_group::Model) -> SupportGroup {
    SupportGroup {
        name: group_name(&m.id),
        display_name: m.display_name.clone(),
        description: m.description.clone(),
        tier: m.tier,
        members: list_from(&m.members),
        etag: etag(m.version),
        audit: audit(m.create_time, m.update_time, &m.creator, &m.updater),
        manager: m.manager.clone(),
        assignment_method: m.assignment_method,
        shifts: shifts_from(&m.shifts)
            .into_iter()
            .map(|s| Shift {
                member: s.member,
                weekdays: s.weekdays,
                start_time: s.start_time,
                end_time: s.end_time,
                time_zone: s.time_zone,
            })
            .collect(),
        escalation_group: m.escalation_group.clone(),
        time_box_seconds: m.time_box_seconds,
    }
}

pub fn rule_to_proto(m: &assignment_rule::Model) -> AssignmentRule {
    AssignmentRule {
        name: format!("{RULE_PREFIX}{}", m.id),
        order: m.rule_order,
        category: m.category.clone(),
        business_service: m.business_service.clone(),
        configuration_item: m.configuration_item.clone(),
        support_group: m.support_group.clone(),
        allow_tier_skip: m.allow_tier_skip,
        audit: audit(m.create_time, m.create_time, &m.creator, &m.creator),
    }
}

pub fn webhook_to_proto(m: &webhook::Model) -> Webhook {
    Webhook {
        name: format!("{WEBHOOK_PREFIX}{}", m.id),
        url: m.url.clone(),
        // The secret is never given back.
        secret: String::new(),
        kinds: list_from(&m.kinds),
        audit: audit(m.create_time, m.create_time, &m.creator, &m.creator),
    }
}

pub fn article_to_proto(m: &crate::entity::article::Model) -> itsm_proto::servicedesk::Article {
    itsm_proto::servicedesk::Article {
        name: crate::repo::knowledge::article_name(&m.number),
        number: m.number.clone(),
        title: m.title.clone(),
        body: m.body.clone(),
        category: m.category.clone(),
        keywords: list_from(&m.keywords),
        state: m.state,
        revision: m.revision,
        solved_count: m.solved_count,
        link_count: m.link_count,
        etag: etag(m.version),
        audit: audit(m.create_time, m.update_time, &m.creator, &m.updater),
    }
}
