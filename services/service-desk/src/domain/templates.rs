//! Notification templates: a subject and a body per kind, with `{placeholders}` filled from the
//! ticket and the event.

use std::collections::BTreeMap;

/// (kind, subject, body).
pub const TEMPLATES: &[(&str, &str, &str)] = &[
    (
        "ticket_resolved",
        "{number} resolved: {short_description}",
        "Your ticket {number} was resolved.\n\n{resolution_notes}\n\nIf the problem persists, reply within a few days and we will reopen it.",
    ),
    (
        "ticket_escalated",
        "{number} escalated to tier {tier}",
        "Ticket {number} ({short_description}) was escalated to {support_group} (tier {tier}).\n\nReason: {reason}",
    ),
    (
        "manager_escalation",
        "Attention needed: {number}",
        "Ticket {number} ({short_description}) in {support_group} needs a manager's attention.\n\nReason: {reason}",
    ),
    (
        "approval_requested",
        "Approval needed: {number}",
        "{requester} requested {short_description} ({number}). Approve or reject it in the portal.",
    ),
    (
        "request_rejected",
        "{number} was not approved",
        "Your request {number} ({short_description}) was not approved.\n\n{reason}",
    ),
    (
        "ticket_assigned",
        "{number} assigned to you",
        "Ticket {number} ({short_description}) was assigned to you in {support_group}.",
    ),
];

/// The subject and body of `kind` with `values` filled in; unknown placeholders stay as written.
pub fn render(kind: &str, values: &BTreeMap<&str, String>) -> Option<(String, String)> {
    let (_, subject, body) = TEMPLATES.iter().find(|(k, ..)| *k == kind)?;
    let fill = |text: &str| {
        values.iter().fold(text.to_string(), |out, (key, value)| out.replace(&format!("{{{key}}}"), value))
    };
    Some((fill(subject), fill(body)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_placeholders() {
        let values: BTreeMap<&str, String> = [
            ("number", "REQ0000001".to_string()),
            ("short_description", "VPN down".to_string()),
            ("resolution_notes", "Restarted the concentrator".to_string()),
        ]
        .into();
        let (subject, body) = render("ticket_resolved", &values).unwrap();
        assert_eq!(subject, "REQ0000001 resolved: VPN down");
        assert!(body.contains("Restarted the concentrator"));
        assert!(render("no_such_kind", &values).is_none());
    }
}
