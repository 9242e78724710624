//! Service catalogue rules: form fields with types, answers checked against them, and when a
//! request needs approval.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Numbers match `itsm.servicedesk.v1.VariableType`.
pub const STRING: i32 = 1;
pub const INTEGER: i32 = 2;
pub const BOOLEAN: i32 = 3;
pub const CHOICE: i32 = 4;
pub const DATE: i32 = 5;
/// Numbers match `itsm.servicedesk.v1.ApprovalPolicy`.
pub const APPROVAL_NONE: i32 = 1;
pub const APPROVAL_MANAGER: i32 = 2;
pub const APPROVAL_ABOVE_THRESHOLD: i32 = 3;
const DEFAULT_MAX_LENGTH: usize = 1_000;

/// One form field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Variable {
    pub id: String,
    pub label: String,
    pub kind: i32,
    pub required: bool,
    pub options: Vec<String>,
    pub min: i64,
    pub max: i64,
    pub max_length: i32,
}

/// An amount of money in nanos of its currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Amount {
    pub currency: String,
    pub nanos: i128,
}

/// Problems with a form definition: (field suffix, description).
pub fn check_definition(variables: &[Variable]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (i, v) in variables.iter().enumerate() {
        let ok_id = !v.id.is_empty()
            && v.id.len() <= 64
            && v.id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !ok_id {
            out.push((
                format!("variables[{i}].id"),
                "must be lower case letters, digits and _ (1-64)".into(),
            ));
        }
        if variables[..i].iter().any(|o| o.id == v.id) {
            out.push((format!("variables[{i}].id"), format!("`{}` is used twice", v.id)));
        }
        if !(STRING..=DATE).contains(&v.kind) {
            out.push((
                format!("variables[{i}].type"),
                "must be STRING, INTEGER, BOOLEAN, CHOICE or DATE".into(),
            ));
        }
        if v.kind == CHOICE && v.options.is_empty() {
            out.push((format!("variables[{i}].options"), "a CHOICE needs options".into()));
        }
        if v.kind == INTEGER && v.min > v.max && !(v.min == 0 && v.max == 0) {
            out.push((format!("variables[{i}].max"), "must not be below min".into()));
        }
    }
    out
}

/// Checks answers against the form: (variable id, description) per problem. Unknown answers are
/// problems too, so nothing a form does not ask for is stored.
pub fn check_answers(variables: &[Variable], answers: &BTreeMap<String, String>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for v in variables {
        let Some(answer) = answers.get(&v.id).map(|a| a.trim()).filter(|a| !a.is_empty()) else {
            if v.required {
                out.push((v.id.clone(), format!("{} is required", v.label)));
            }
            continue;
        };
        let problem = match v.kind {
            STRING => {
                let max = if v.max_length > 0 { v.max_length as usize } else { DEFAULT_MAX_LENGTH };
                (answer.chars().count() > max).then(|| format!("at most {max} characters"))
            }
            INTEGER => match answer.parse::<i64>() {
                Err(_) => Some("must be a whole number".to_string()),
                Ok(n) if !(v.min == 0 && v.max == 0) && (n < v.min || n > v.max) => {
                    Some(format!("must be between {} and {}", v.min, v.max))
                }
                Ok(_) => None,
            },
            BOOLEAN => (!matches!(answer, "true" | "false")).then(|| "must be true or false".to_string()),
            CHOICE => (!v.options.iter().any(|o| o == answer))
                .then(|| format!("must be one of: {}", v.options.join(", "))),
            DATE => chrono::NaiveDate::parse_from_str(answer, "%Y-%m-%d")
                .err()
                .map(|_| "must be a date, YYYY-MM-DD".to_string()),
            _ => Some("has an unknown type".to_string()),
        };
        if let Some(problem) = problem {
            out.push((v.id.clone(), problem));
        }
    }
    for key in answers.keys() {
        if !variables.iter().any(|v| &v.id == key) {
            out.push((key.clone(), "the form has no such field".into()));
        }
    }
    out
}

/// Whether a request for an item costing `cost` needs its requester's manager's approval.
pub fn needs_approval(policy: i32, cost: &Amount, threshold: &Amount) -> bool {
    match policy {
        APPROVAL_MANAGER => true,
        // Another currency than the threshold's cannot be compared: ask.
        APPROVAL_ABOVE_THRESHOLD => cost.currency != threshold.currency || cost.nanos >= threshold.nanos,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn var(id: &str, kind: i32, required: bool) -> Variable {
        Variable {
            id: id.into(),
            label: id.into(),
            kind,
            required,
            options: vec![],
            min: 0,
            max: 0,
            max_length: 0,
        }
    }

    #[test]
    fn answers_are_checked_by_type() {
        let form = vec![
            var("reason", STRING, true),
            Variable { min: 1, max: 4, ..var("count", INTEGER, true) },
            var("urgent", BOOLEAN, false),
            Variable { options: vec!["13\"".into(), "15\"".into()], ..var("size", CHOICE, true) },
            var("needed_by", DATE, false),
        ];
        let answers = |pairs: &[(&str, &str)]| {
            pairs.iter().map(|(k, v)| ((*k).to_string(), (*v).to_string())).collect()
        };
        assert!(
            check_answers(&form, &answers(&[("reason", "new hire"), ("count", "2"), ("size", "15\"")]))
                .is_empty()
        );
        let bad = check_answers(
            &form,
            &answers(&[
                ("count", "two"),
                ("urgent", "yes"),
                ("size", "17\""),
                ("needed_by", "31/12/2026"),
                ("colour", "red"),
            ]),
        );
        let fields: Vec<&str> = bad.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(fields, ["reason", "count", "urgent", "size", "needed_by", "colour"]);
        assert_eq!(
            check_answers(&form, &answers(&[("reason", "x"), ("count", "9"), ("size", "13\"")]))[0].1,
            "must be between 1 and 4"
        );
    }

    #[test]
    fn definitions_and_approval() {
        assert!(check_definition(&[var("ok_1", STRING, false)]).is_empty());
        assert_eq!(
            check_definition(&[var("Bad Id", STRING, false), var("c", CHOICE, false), var("c", 9, false)])
                .len(),
            4
        );
        let eur = |units: i128| Amount { currency: "EUR".into(), nanos: units * 1_000_000_000 };
        assert!(!needs_approval(APPROVAL_NONE, &eur(5000), &eur(0)));
        assert!(needs_approval(APPROVAL_MANAGER, &eur(0), &eur(0)));
        assert!(needs_approval(APPROVAL_ABOVE_THRESHOLD, &eur(1000), &eur(500)));
        assert!(!needs_approval(APPROVAL_ABOVE_THRESHOLD, &eur(100), &eur(500)));
        assert!(needs_approval(
            APPROVAL_ABOVE_THRESHOLD,
            &Amount { currency: "USD".into(), nanos: 1 },
            &eur(500)
        ));
    }
}
