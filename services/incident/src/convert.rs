//! Between stored records and protobuf messages, and resource names.

use itsm_proto::common::AuditInfo;
use itsm_proto::incident::{Incident, KnownError, Problem, WorkNote};
use itsm_runtime::db::timestamp;
use itsm_runtime::numbers::is_number;

use crate::entity::{incident, known_error, note, problem};

pub const INCIDENT_PREFIX: &str = "incidents/";
pub const PROBLEM_PREFIX: &str = "problems/";
pub const KNOWN_ERROR_PREFIX: &str = "knownErrors/";
pub const INCIDENT_NUMBER: &str = "INC";
pub const PROBLEM_NUMBER: &str = "PRB";
pub const KNOWN_ERROR_NUMBER: &str = "KE";

/// `incidents/INC0001234` → `INC0001234` when the name has that form.
pub fn parse_number(name: &str, prefix: &str, number_prefix: &str) -> Option<String> {
    name.strip_prefix(prefix).filter(|n| is_number(n, number_prefix)).map(str::to_string)
}

pub use itsm_runtime::history::etag;

/// A JSON array of names, as stored.
pub fn list_from(json: &str) -> Vec<String> {
    serde_json::from_str(json).unwrap_or_default()
}

pub fn list_to(items: &[String]) -> String {
    serde_json::to_string(items).unwrap_or_else(|_| "[]".into())
}

fn time(micros: i64) -> Option<prost_types::Timestamp> {
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

pub fn incident_to_proto(m: &incident::Model) -> Incident {
    Incident {
        name: format!("{INCIDENT_PREFIX}{}", m.number),
        number: m.number.clone(),
        caller: m.caller.clone(),
        service_desk_ticket: m.service_desk_ticket.clone(),
        short_description: m.short_description.clone(),
        description: m.description.clone(),
        category: m.category.clone(),
        subcategory: m.subcategory.clone(),
        business_service: m.business_service.clone(),
        configuration_items: list_from(&m.configuration_items),
        impact: m.impact,
        urgency: m.urgency,
        priority: m.priority,
        state: m.state,
        on_hold_reason: m.on_hold_reason,
        assignment_group: m.assignment_group.clone(),
        assignee: m.assignee.clone(),
        resolution_code: m.resolution_code,
        resolution_notes: m.resolution_notes.clone(),
        major: m.major,
        parent_incident: m.parent_incident.clone(),
        open_time: time(m.open_time),
        first_response_time: time(m.first_response_time),
        resolve_time: time(m.resolve_time),
        close_time: time(m.close_time),
        etag: etag(m.version),
        audit: audit(m.create_time, m.update_time, &m.creator, &m.updater),
        support_tier: m.support_tier,
        manager_escalated: m.manager_escalated,
        possible_duplicates: list_from(&m.possible_duplicates),
        known_errors: list_from(&m.known_errors),
        suggested_workaround: m.suggested_workaround.clone(),
        reassignment_count: m.reassignment_count,
    }
}

pub fn note_to_proto(number: &str, m: &note::Model) -> WorkNote {
    WorkNote {
        name: format!("{INCIDENT_PREFIX}{number}/workNotes/{}", m.id),
        text: m.text.clone(),
        kind: m.kind,
        author: m.author.clone(),
        create_time: time(m.create_time),
    }
}

pub fn problem_to_proto(m: &problem::Model) -> Problem {
    Problem {
        name: format!("{PROBLEM_PREFIX}{}", m.number),
        number: m.number.clone(),
        short_description: m.short_description.clone(),
        description: m.description.clone(),
        state: m.state,
        priority: m.priority,
        root_cause: m.root_cause.clone(),
        workaround: m.workaround.clone(),
        configuration_items: list_from(&m.configuration_items),
        incidents: list_from(&m.incidents),
        assignment_group: m.assignment_group.clone(),
        assignee: m.assignee.clone(),
        known_error: m.known_error.clone(),
        etag: etag(m.version),
        audit: audit(m.create_time, m.update_time, &m.creator, &m.updater),
        changes: list_from(&m.changes),
        resolution_notes: m.resolution_notes.clone(),
    }
}

pub fn known_error_to_proto(m: &known_error::Model) -> KnownError {
    KnownError {
        name: format!("{KNOWN_ERROR_PREFIX}{}", m.number),
        number: m.number.clone(),
        problem: m.problem.clone(),
        short_description: m.short_description.clone(),
        symptoms: m.symptoms.clone(),
        workaround: m.workaround.clone(),
        configuration_items: list_from(&m.configuration_items),
        status: m.status,
        etag: etag(m.version),
        audit: audit(m.create_time, m.update_time, &m.creator, &m.updater),
    }
}
