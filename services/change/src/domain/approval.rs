//! Who must approve a change, and who may.

use super::lifecycle::ChangeType;
use super::risk::{HIGH, VERY_HIGH};

/// Roles that may approve or reject changes.
pub const APPROVER_ROLES: &[&str] = &["change-manager", "cab-member", "admin"];

/// Approvals a change needs before it is scheduled: none for standard changes (pre-approved),
/// one from the emergency CAB for emergencies, and for normal changes one, two (high risk) or
/// three (very high risk: a CAB majority).
pub fn required_approvals(kind: ChangeType, risk: i32) -> i32 {
    match kind {
        ChangeType::Standard => 0,
        ChangeType::Emergency => 1,
        ChangeType::Normal if risk >= VERY_HIGH => 3,
        ChangeType::Normal if risk >= HIGH => 2,
        ChangeType::Normal => 1,
    }
}

/// Why `principal` may not decide on a change, if so. Separation of duties: whoever requested or
/// implements a change does not approve it.
pub fn refusal(principal: &str, roles: &[String], requester: &str, assignee: &str) -> Option<String> {
    if !roles.iter().any(|r| APPROVER_ROLES.contains(&r.as_str())) {
        return Some(format!("approving changes needs one of the roles {}", APPROVER_ROLES.join(", ")));
    }
    if principal == requester {
        return Some("separation of duties: the requester of a change cannot approve or reject it".into());
    }
    if !assignee.is_empty() && principal == assignee {
        return Some("separation of duties: the implementer of a change cannot approve or reject it".into());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::risk::{LOW, MODERATE};

    #[test]
    fn policy_by_type_and_risk() {
        assert_eq!(required_approvals(ChangeType::Standard, VERY_HIGH), 0);
        assert_eq!(required_approvals(ChangeType::Emergency, VERY_HIGH), 1);
        assert_eq!(required_approvals(ChangeType::Normal, LOW), 1);
        assert_eq!(required_approvals(ChangeType::Normal, MODERATE), 1);
        assert_eq!(required_approvals(ChangeType::Normal, HIGH), 2);
        assert_eq!(required_approvals(ChangeType::Normal, VERY_HIGH), 3);
    }

    #[test]
    fn separation_of_duties_and_roles() {
        let cab = vec!["cab-member".to_string()];
        assert_eq!(refusal("bob", &cab, "alice", "carol"), None);
        assert!(refusal("alice", &cab, "alice", "carol").unwrap().contains("requester"));
        assert!(refusal("carol", &cab, "alice", "carol").unwrap().contains("implementer"));
        assert!(refusal("bob", &["agent".to_string()], "alice", "").unwrap().contains("roles"));
    }
}
