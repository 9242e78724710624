//! What an agreement's target says, as stored, and the rules a clock follows from it: default
//! start/pause/stop/cancel states per metric, and which records a target applies to.

use std::collections::BTreeMap;

use chrono::TimeDelta;
use serde::{Deserialize, Serialize};

use itsm_runtime::Error;
use itsm_runtime::filter::{self, Expr, Op};

use crate::domain::clock::ClockRules;

/// Metric numbers of `itsm.delivery.v1.TargetMetric`.
pub const RESPONSE_TIME: i32 = 1;
pub const RESOLUTION_TIME: i32 = 2;
pub const AVAILABILITY: i32 = 3;

/// Members a target's condition may name.
pub const CONDITION_FIELDS: &[&str] =
    &["priority", "category", "customer", "record_type", "support_group", "tier"];

/// A target as stored (JSON in the agreement row).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetDef {
    pub metric: i32,
    pub condition: String,
    /// Seconds; None when only `priority_durations` apply.
    pub duration_seconds: Option<i64>,
    pub availability_basis_points: i32,
    pub warning_percents: Vec<u8>,
    /// Calendar id (not the resource name).
    pub calendar: String,
    /// Seconds by priority (1 = P1).
    pub priority_durations: BTreeMap<i32, i64>,
    pub start_states: Vec<String>,
    pub pause_states: Vec<String>,
    pub stop_states: Vec<String>,
    pub cancel_states: Vec<String>,
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_string()).collect()
}

impl TargetDef {
    /// Whether the target is measured by a clock (availability targets come from outages).
    pub fn is_timed(&self) -> bool {
        matches!(self.metric, RESPONSE_TIME | RESOLUTION_TIME)
    }

    /// The clock rules, with the metric's defaults where the target names no states.
    pub fn clock_rules(&self) -> ClockRules {
        let or = |given: &[String], default: &[&str]| {
            if given.is_empty() { names(default) } else { given.to_vec() }
        };
        let (pause, stop): (&[&str], &[&str]) = if self.metric == RESPONSE_TIME {
            (&[], &["IN_PROGRESS", "ON_HOLD", "PENDING", "RESOLVED", "CLOSED"])
        } else {
            (&["ON_HOLD", "PENDING"], &["RESOLVED", "CLOSED"])
        };
        ClockRules {
            start_states: self.start_states.clone(),
            pause_states: or(&self.pause_states, pause),
            stop_states: or(&self.stop_states, stop),
            cancel_states: or(&self.cancel_states, &["CANCELLED"]),
            durations: self
                .priority_durations
                .iter()
                .map(|(priority, seconds)| (*priority, TimeDelta::seconds(*seconds)))
                .collect(),
            default_duration: self.duration_seconds.map(TimeDelta::seconds),
            warning_percents: self.warning_percents.clone(),
        }
    }
}

/// The facts about a record a condition is evaluated on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordFacts {
    /// "incident" or "ticket".
    pub record_type: String,
    pub priority: i32,
    pub category: String,
    pub customer: String,
    /// The assigned group ("supportGroups/…"), for OLAs between teams.
    pub support_group: String,
    /// The support tier (tickets; 0 = unknown).
    pub tier: i32,
}

impl RecordFacts {
    fn value(&self, member: &str) -> String {
        match member {
            "priority" => format!("P{}", self.priority),
            "category" => self.category.clone(),
            "customer" => self.customer.clone(),
            "record_type" => self.record_type.clone(),
            "support_group" => self.support_group.clone(),
            "tier" => self.tier.to_string(),
            _ => String::new(),
        }
    }
}

/// Parses a condition and checks it names only known members with `=` or `!=`.
pub fn parse_condition(text: &str, field: &str) -> Result<Option<Expr>, Error> {
    let parsed = filter::parse(text).map_err(|e| Error::invalid(field, e.to_string()))?;
    if let Some(expr) = &parsed {
        check(expr, field)?;
    }
    Ok(parsed)
}

fn check(expr: &Expr, field: &str) -> Result<(), Error> {
    match expr {
        Expr::And(parts) | Expr::Or(parts) => parts.iter().try_for_each(|p| check(p, field)),
        Expr::Not(inner) => check(inner, field),
        Expr::Compare { member, op, .. } => {
            if !CONDITION_FIELDS.contains(&member.as_str()) {
                return Err(Error::invalid(
                    field,
                    format!("unknown field `{member}`; conditions use {}", CONDITION_FIELDS.join(", ")),
                ));
            }
            if !matches!(op, Op::Eq | Op::Ne) {
                return Err(Error::invalid(field, format!("`{member}` can only be compared with = or !=")));
            }
            Ok(())
        }
    }
}

/// Whether a parsed condition holds for the record (no condition: it always does).
pub fn applies(condition: Option<&Expr>, facts: &RecordFacts) -> bool {
    fn eval(expr: &Expr, facts: &RecordFacts) -> bool {
        match expr {
            Expr::And(parts) => parts.iter().all(|p| eval(p, facts)),
            Expr::Or(parts) => parts.iter().any(|p| eval(p, facts)),
            Expr::Not(inner) => !eval(inner, facts),
            Expr::Compare { member, op, value } => {
                let equal = facts.value(member).eq_ignore_ascii_case(value);
                if matches!(op, Op::Ne) { !equal } else { equal }
            }
        }
    }
    condition.is_none_or(|c| eval(c, facts))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(record_type: &str, priority: i32) -> RecordFacts {
        RecordFacts {
            record_type: record_type.into(),
            priority,
            category: "network".into(),
            customer: "acme".into(),
            support_group: "supportGroups/dba".into(),
            tier: 2,
        }
    }

    #[test]
    fn conditions_select_records() {
        let c = parse_condition(r#"record_type = "incident" AND (priority = "P1" OR priority = "P2")"#, "c")
            .unwrap();
        assert!(applies(c.as_ref(), &facts("incident", 1)));
        assert!(applies(c.as_ref(), &facts("incident", 2)));
        assert!(!applies(c.as_ref(), &facts("incident", 3)));
        assert!(!applies(c.as_ref(), &facts("ticket", 1)));
        // An OLA of the tier-2 database team.
        let c = parse_condition(r#"support_group = "supportGroups/dba" AND tier = "2""#, "c").unwrap();
        assert!(applies(c.as_ref(), &facts("ticket", 1)));
        let c = parse_condition(r#"tier = "1""#, "c").unwrap();
        assert!(!applies(c.as_ref(), &facts("ticket", 1)));
        let c = parse_condition(r#"category != "network""#, "c").unwrap();
        assert!(!applies(c.as_ref(), &facts("ticket", 1)));
        assert!(applies(None, &facts("ticket", 1)));
    }

    #[test]
    fn conditions_name_known_fields_with_equality_only() {
        assert!(parse_condition(r#"state = "NEW""#, "c").is_err());
        assert!(parse_condition(r#"priority > "P2""#, "c").is_err());
        assert!(parse_condition("priority = ", "c").is_err());
    }

    #[test]
    fn defaults_by_metric() {
        let mut t = TargetDef {
            metric: RESOLUTION_TIME,
            condition: String::new(),
            duration_seconds: Some(3600),
            availability_basis_points: 0,
            warning_percents: vec![50],
            calendar: "c".into(),
            priority_durations: BTreeMap::from([(1, 600)]),
            start_states: vec![],
            pause_states: vec![],
            stop_states: vec![],
            cancel_states: vec![],
        };
        let rules = t.clock_rules();
        assert_eq!(rules.pause_states, ["ON_HOLD", "PENDING"]);
        assert_eq!(rules.stop_states, ["RESOLVED", "CLOSED"]);
        assert_eq!(rules.durations[&1], TimeDelta::seconds(600));
        t.metric = RESPONSE_TIME;
        t.pause_states = vec!["WAITING".into()];
        let rules = t.clock_rules();
        assert_eq!(rules.pause_states, ["WAITING"]);
        assert!(rules.stop_states.contains(&"IN_PROGRESS".to_string()));
    }
}
