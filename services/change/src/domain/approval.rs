//! Who must approve a change, and who may.

use super::lifecycle::ChangeType;
use super::risk::{HIGH, VERY_HIGH};

/// Approvals a change needs before it is scheduled: none for standard changes (pre-approved),
/// one from the emergency CAB for emergencies, and for normal changes one, two (high risk) or
/// three (very high risk: a CAB majority).
pub fn required_approvals(kind: ChangeType, risk: i32) -> i32 {
    needed(&rule_for(&built_in_policy(), kind, risk), kind, 0)
}

/// How the approvals of a rule's groups decide a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// `count` approvals from anyone in the groups; one rejection sends it back.
    Any,
    /// One approval from someone in each group; one rejection sends it back.
    All,
    /// Once `count` people of the groups have decided (the quorum), more approvals than
    /// rejections authorise it, otherwise it goes back; a rejection alone does not.
    Majority,
}

/// One rule of an approval policy: which changes it applies to and who decides how. Groups are
/// roles (`change-manager`, `cab-member`, …); an admin counts as every group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyRule {
    /// None: any type.
    pub change_type: Option<ChangeType>,
    /// Lowest risk it applies to (0: any).
    pub min_risk: i32,
    pub groups: Vec<String>,
    pub rule: Rule,
    /// ANY: approvals needed; MAJORITY: the quorum; ALL: unused.
    pub count: i32,
}

/// The built-in policy: one approver, two for high risk, a CAB majority of three for very high
/// risk, one emergency CAB member for emergencies (the rules are tried in order).
pub fn built_in_policy() -> Vec<PolicyRule> {
    let groups = || vec!["change-manager".to_string(), "cab-member".to_string()];
    vec![
        PolicyRule {
            change_type: Some(ChangeType::Standard),
            min_risk: 0,
            groups: groups(),
            rule: Rule::Any,
            count: 0,
        },
        PolicyRule {
            change_type: Some(ChangeType::Emergency),
            min_risk: 0,
            groups: groups(),
            rule: Rule::Any,
            count: 1,
        },
        PolicyRule {
            change_type: None,
            min_risk: VERY_HIGH,
            groups: groups(),
            rule: Rule::Majority,
            count: 3,
        },
        PolicyRule { change_type: None, min_risk: HIGH, groups: groups(), rule: Rule::Any, count: 2 },
        PolicyRule { change_type: None, min_risk: 0, groups: groups(), rule: Rule::Any, count: 1 },
    ]
}

/// The first rule of `policy` for a change of this type and risk (the built-in policy's when
/// none matches).
pub fn rule_for(policy: &[PolicyRule], kind: ChangeType, risk: i32) -> PolicyRule {
    let matches = |r: &PolicyRule| r.change_type.is_none_or(|t| t == kind) && risk >= r.min_risk;
    policy
        .iter()
        .find(|r| matches(r))
        .cloned()
        .or_else(|| built_in_policy().into_iter().find(|r| matches(r)))
        .unwrap_or(PolicyRule {
            change_type: None,
            min_risk: 0,
            groups: Vec::new(),
            rule: Rule::Any,
            count: 1,
        })
}

/// Approvals needed before the change can be scheduled under `rule`, with `extra` more (a
/// change outside its maintenance windows).
pub fn needed(rule: &PolicyRule, kind: ChangeType, extra: i32) -> i32 {
    if kind == ChangeType::Standard {
        return 0;
    }
    let base = match rule.rule {
        Rule::Any | Rule::Majority => rule.count.max(1),
        Rule::All => rule.groups.len().max(1) as i32,
    };
    base + extra
}

/// One decision as the rules see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vote {
    pub approver: String,
    pub roles: Vec<String>,
    pub approved: bool,
}

/// Where a change awaiting approval stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Pending,
    Approved,
    Rejected,
}

fn in_group(roles: &[String], group: &str) -> bool {
    roles.iter().any(|r| r == group || r == "admin")
}

/// The verdict of the votes so far under `rule` (with `extra` approvals more needed).
pub fn verdict(rule: &PolicyRule, votes: &[Vote], extra: i32) -> Verdict {
    let counted: Vec<&Vote> =
        votes.iter().filter(|v| rule.groups.iter().any(|g| in_group(&v.roles, g))).collect();
    let approvals = counted.iter().filter(|v| v.approved).count() as i32;
    let rejections = counted.len() as i32 - approvals;
    match rule.rule {
        Rule::Any | Rule::All if rejections > 0 => Verdict::Rejected,
        Rule::Any if approvals >= rule.count.max(1) + extra => Verdict::Approved,
        Rule::All => {
            let every_group =
                rule.groups.iter().all(|g| counted.iter().any(|v| v.approved && in_group(&v.roles, g)));
            if every_group && approvals >= rule.groups.len() as i32 + extra {
                Verdict::Approved
            } else {
                Verdict::Pending
            }
        }
        Rule::Majority if counted.len() as i32 >= rule.count.max(1) + extra => {
            if approvals > rejections {
                Verdict::Approved
            } else {
                Verdict::Rejected
            }
        }
        _ => Verdict::Pending,
    }
}

/// Why `principal` may not decide on a change, if so. Separation of duties: whoever requested or
/// implements a change does not approve it.
pub fn refusal(
    principal: &str,
    roles: &[String],
    groups: &[String],
    requester: &str,
    assignee: &str,
) -> Option<String> {
    if !groups.iter().any(|g| in_group(roles, g)) {
        return Some(format!("approving this change needs one of the roles {}", groups.join(", ")));
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
        let groups = vec!["cab-member".to_string(), "change-manager".to_string()];
        assert_eq!(refusal("bob", &cab, &groups, "alice", "carol"), None);
        assert!(refusal("alice", &cab, &groups, "alice", "carol").unwrap().contains("requester"));
        assert!(refusal("carol", &cab, &groups, "alice", "carol").unwrap().contains("implementer"));
        assert!(refusal("bob", &["agent".to_string()], &groups, "alice", "").unwrap().contains("roles"));
        assert_eq!(
            refusal("bob", &["admin".to_string()], &groups, "alice", ""),
            None,
            "admins count as every group"
        );
    }

    fn vote(who: &str, role: &str, approved: bool) -> Vote {
        Vote { approver: who.into(), roles: vec![role.into()], approved }
    }

    fn rule(rule: Rule, groups: &[&str], count: i32) -> PolicyRule {
        PolicyRule {
            change_type: None,
            min_risk: 0,
            groups: groups.iter().map(|g| (*g).to_string()).collect(),
            rule,
            count,
        }
    }

    #[test]
    fn any_all_and_majority() {
        let any = rule(Rule::Any, &["cab-member"], 2);
        assert_eq!(verdict(&any, &[vote("a", "cab-member", true)], 0), Verdict::Pending);
        let two = [vote("a", "cab-member", true), vote("b", "cab-member", true)];
        assert_eq!(verdict(&any, &two, 0), Verdict::Approved);
        assert_eq!(verdict(&any, &two, 1), Verdict::Pending, "outside the maintenance window: one more");
        assert_eq!(verdict(&any, &[vote("a", "agent", true), vote("b", "agent", true)], 0), Verdict::Pending);
        assert_eq!(verdict(&any, &[vote("a", "cab-member", false)], 0), Verdict::Rejected);

        let all = rule(Rule::All, &["cab-member", "security"], 0);
        let cab_only = [vote("a", "cab-member", true), vote("b", "cab-member", true)];
        assert_eq!(verdict(&all, &cab_only, 0), Verdict::Pending, "security has not approved");
        let both = [vote("a", "cab-member", true), vote("s", "security", true)];
        assert_eq!(verdict(&all, &both, 0), Verdict::Approved);
        assert_eq!(needed(&all, ChangeType::Normal, 0), 2);

        let majority = rule(Rule::Majority, &["cab-member"], 3);
        let split = [vote("a", "cab-member", true), vote("b", "cab-member", false)];
        assert_eq!(verdict(&majority, &split, 0), Verdict::Pending, "a rejection alone does not decide");
        let mut three = split.to_vec();
        three.push(vote("c", "cab-member", true));
        assert_eq!(verdict(&majority, &three, 0), Verdict::Approved);
        three[2].approved = false;
        assert_eq!(verdict(&majority, &three, 0), Verdict::Rejected);
    }

    #[test]
    fn the_first_matching_rule_applies() {
        let policy = vec![
            PolicyRule {
                change_type: Some(ChangeType::Normal),
                min_risk: HIGH,
                ..rule(Rule::All, &["cab-member", "security"], 0)
            },
            rule(Rule::Any, &["change-manager"], 1),
        ];
        assert_eq!(rule_for(&policy, ChangeType::Normal, VERY_HIGH).rule, Rule::All);
        assert_eq!(rule_for(&policy, ChangeType::Normal, LOW).rule, Rule::Any);
        assert_eq!(rule_for(&policy, ChangeType::Emergency, VERY_HIGH).groups, ["change-manager"]);
        assert_eq!(rule_for(&[], ChangeType::Normal, VERY_HIGH).rule, Rule::Majority, "built in");
    }
}
