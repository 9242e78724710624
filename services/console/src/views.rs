//! Records as the pages show them: tickets, their timeline, times and state names, turned from the
//! protobuf messages into plain strings and flags the templates print (templates do no logic).

use std::collections::HashMap;

use itsm_proto::servicedesk::{Ticket, TicketHistoryEntry, TicketState};

/// A point in time: `iso` for `<time datetime>`, `text` for people (UTC, to the minute).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeView {
    pub iso: String,
    pub text: String,
}

/// `timestamp` as a [`TimeView`]; `None` when unset or out of range.
pub fn time_view(timestamp: Option<&prost_types::Timestamp>) -> Option<TimeView> {
    let ts = timestamp?;
    if ts.seconds == 0 && ts.nanos == 0 {
        return None;
    }
    let at = chrono::DateTime::from_timestamp(ts.seconds, u32::try_from(ts.nanos).unwrap_or(0))?;
    Some(TimeView {
        iso: at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        text: at.format("%Y-%m-%d %H:%M UTC").to_string(),
    })
}

/// A ticket state for people, and a CSS class for its badge.
pub fn state_label(state: i32) -> (&'static str, &'static str) {
    match TicketState::try_from(state) {
        Ok(TicketState::New) => ("New", "state-new"),
        Ok(TicketState::InProgress) => ("In progress", "state-progress"),
        Ok(TicketState::Pending) => ("Pending", "state-pending"),
        Ok(TicketState::Resolved) => ("Resolved", "state-resolved"),
        Ok(TicketState::Closed) => ("Closed", "state-closed"),
        Ok(TicketState::Cancelled) => ("Cancelled", "state-closed"),
        _ => ("Unknown", "state-new"),
    }
}

/// `P1`..`P5`, or "—" before the ticket has a priority.
pub fn priority_label(priority: i32) -> String {
    if (1..=5).contains(&priority) { format!("P{priority}") } else { "—".to_string() }
}

/// The number of a ticket name (`tickets/REQ0000001` → `REQ0000001`).
pub fn number_of(name: &str) -> &str {
    name.rsplit('/').next().unwrap_or(name)
}

/// Whether `text` can be a record number in an address (`REQ0000001`, `KB0000002`): letters and
/// digits only, so it is safe in a resource name.
pub fn is_record_number(text: &str) -> bool {
    !text.is_empty() && text.len() <= 32 && text.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// A ticket as its pages show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketView {
    pub number: String,
    pub summary: String,
    pub description: String,
    pub state: &'static str,
    pub state_class: &'static str,
    pub priority: String,
    pub tier: String,
    pub category: String,
    pub requester: String,
    pub assignee: String,
    /// The support group's display name (its resource name when unknown).
    pub group: String,
    pub incident: String,
    pub resolution_notes: String,
    pub opened: Option<TimeView>,
    pub updated: Option<TimeView>,
    pub resolved_at: Option<TimeView>,
    pub sla_due: Option<TimeView>,
    pub survey_score: i32,
    pub survey_comment: String,
    pub etag: String,
    /// NEW, IN_PROGRESS or PENDING.
    pub is_open: bool,
    /// RESOLVED or CLOSED (the survey opens).
    pub is_done: bool,
}

impl TicketView {
    /// `ticket`, with group names from `groups` (resource name → display name).
    pub fn new(ticket: &Ticket, groups: &HashMap<String, String>) -> Self {
        let (state, state_class) = state_label(ticket.state);
        let state_enum = TicketState::try_from(ticket.state).ok();
        Self {
            number: ticket.number.clone(),
            summary: ticket.short_description.clone(),
            description: ticket.description.clone(),
            state,
            state_class,
            priority: priority_label(ticket.priority),
            tier: if ticket.tier > 0 { ticket.tier.to_string() } else { "—".to_string() },
            category: ticket.category.clone(),
            requester: ticket.requester.clone(),
            assignee: ticket.assignee.clone(),
            group: groups.get(&ticket.support_group).cloned().unwrap_or_else(|| ticket.support_group.clone()),
            incident: ticket.incident.clone(),
            resolution_notes: ticket.resolution_notes.clone(),
            opened: time_view(ticket.open_time.as_ref()),
            updated: time_view(ticket.audit.as_ref().and_then(|a| a.update_time.as_ref())),
            resolved_at: time_view(ticket.resolve_time.as_ref()),
            sla_due: time_view(ticket.sla_due_time.as_ref()),
            survey_score: ticket.survey_score,
            survey_comment: ticket.survey_comment.clone(),
            etag: ticket.etag.clone(),
            is_open: matches!(
                state_enum,
                Some(TicketState::New | TicketState::InProgress | TicketState::Pending)
            ),
            is_done: matches!(state_enum, Some(TicketState::Resolved | TicketState::Closed)),
        }
    }

    pub fn has_incident(&self) -> bool {
        !self.incident.is_empty()
    }

    pub fn is_surveyed(&self) -> bool {
        self.survey_score > 0
    }
}

/// One changed field of a timeline entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeView {
    pub field: String,
    pub from: String,
    pub to: String,
}

/// One entry of a ticket's timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimelineEntry {
    pub when: Option<TimeView>,
    pub actor: String,
    pub action: String,
    pub reason: String,
    pub changes: Vec<ChangeView>,
}

impl TimelineEntry {
    pub fn has_reason(&self) -> bool {
        !self.reason.is_empty()
    }
}

/// A history value (JSON) as text: strings without quotes, "" (unset) as "—".
fn history_value(json: &str) -> String {
    if json.is_empty() {
        return "—".to_string();
    }
    match serde_json::from_str::<serde_json::Value>(json) {
        Ok(serde_json::Value::String(text)) if text.is_empty() => "—".to_string(),
        Ok(serde_json::Value::String(text)) => text,
        Ok(serde_json::Value::Null) => "—".to_string(),
        Ok(other) => other.to_string(),
        Err(_) => json.to_string(),
    }
}

/// The timeline of `entries`, oldest first.
pub fn timeline(entries: &[TicketHistoryEntry]) -> Vec<TimelineEntry> {
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
                    from: history_value(&c.old_value),
                    to: history_value(&c.new_value),
                })
                .collect(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_iso_for_machines_and_minutes_for_people() {
        let view = time_view(Some(&prost_types::Timestamp { seconds: 1_700_000_000, nanos: 0 })).unwrap();
        assert_eq!(view.iso, "2023-11-14T22:13:20Z");
        assert_eq!(view.text, "2023-11-14 22:13 UTC");
        assert_eq!(time_view(Some(&prost_types::Timestamp::default())), None);
        assert_eq!(time_view(None), None);
    }

    #[test]
    fn tickets_read_for_people() {
        let mut groups = HashMap::new();
        groups.insert("supportGroups/1".to_string(), "Service desk".to_string());
        let ticket = Ticket {
            number: "REQ0000001".into(),
            state: TicketState::Resolved as i32,
            priority: 2,
            tier: 1,
            support_group: "supportGroups/1".into(),
            ..Default::default()
        };
        let view = TicketView::new(&ticket, &groups);
        assert_eq!(
            (view.state, view.priority.as_str(), view.group.as_str()),
            ("Resolved", "P2", "Service desk")
        );
        assert!(view.is_done && !view.is_open && !view.is_surveyed());
        assert_eq!(priority_label(0), "—");
        assert_eq!(number_of("tickets/REQ0000001"), "REQ0000001");
        assert!(is_record_number("REQ0000001") && !is_record_number("../x") && !is_record_number(""));
    }

    #[test]
    fn history_values_lose_their_json_quotes() {
        assert_eq!(history_value("\"IN_PROGRESS\""), "IN_PROGRESS");
        assert_eq!(history_value("2"), "2");
        assert_eq!(history_value(""), "—");
        assert_eq!(history_value("\"\""), "—");
        assert_eq!(history_value("not json"), "not json");
    }
}
