//! Configuration item fields: validation and change tracking.

use std::collections::BTreeMap;

use itsm_runtime::error::Violations;

use super::classes::ClassRegistry;

pub const MAX_DISPLAY_NAME: usize = 200;
pub const MAX_DESCRIPTION: usize = 4000;
pub const MAX_PERSON: usize = 200;
pub const MAX_LABELS: usize = 64;
pub const MAX_LABEL_VALUE: usize = 63;
pub const MAX_ATTRIBUTES_BYTES: usize = 64 * 1024;
pub const MAX_ATTRIBUTES_DEPTH: usize = 8;

/// Lifecycle statuses (values of `itsm.cmdb.v1.LifecycleStatus`).
pub const LIFECYCLE_STATUSES: &[(i32, &str)] =
    &[(1, "PLANNED"), (2, "IN_BUILD"), (3, "IN_USE"), (4, "MAINTENANCE"), (5, "RETIRED")];
/// Criticalities (values of `itsm.cmdb.v1.Criticality`).
pub const CRITICALITIES: &[(i32, &str)] = &[(1, "LOW"), (2, "MEDIUM"), (3, "HIGH"), (4, "CRITICAL")];

/// The writable fields of a CI, as plain values.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CiFields {
    pub display_name: String,
    pub ci_class: String,
    pub description: String,
    pub lifecycle_status: i32,
    pub environment: String,
    pub criticality: i32,
    pub owner: String,
    pub support_group: String,
    pub labels: BTreeMap<String, String>,
    pub attributes: serde_json::Value,
}

/// Field names a caller may put in an update mask.
pub const UPDATABLE: &[&str] = &[
    "display_name",
    "ci_class",
    "description",
    "lifecycle_status",
    "environment",
    "criticality",
    "owner",
    "support_group",
    "labels",
    "attributes",
];

fn has_control_chars(s: &str) -> bool {
    s.chars().any(|c| c.is_control() && c != '\n' && c != '\t')
}

pub fn is_label_key(key: &str) -> bool {
    let mut chars = key.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase())
        && key.len() <= 63
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-' | '.' | '/'))
}

/// Parses an enum given by name (`IN_USE` or `LIFECYCLE_STATUS_IN_USE`) or number.
pub fn enum_value(table: &[(i32, &str)], prefix: &str, text: &str) -> Option<i32> {
    let upper = text.to_ascii_uppercase();
    let bare = upper.strip_prefix(prefix).unwrap_or(&upper);
    table.iter().find(|(n, name)| *name == bare || text.parse::<i32>().ok() == Some(*n)).map(|(n, _)| *n)
}

impl CiFields {
    /// Checks every field but the attributes (see `attributes::check`); `prefix` is the request
    /// path of the CI (`configuration_item`).
    pub fn validate(&self, classes: &ClassRegistry, prefix: &str, violations: &mut Violations) {
        let f = |name: &str| format!("{prefix}.{name}");
        let name = self.display_name.trim();
        if name.is_empty() {
            violations.add(f("display_name"), "is required");
        } else if self.display_name.chars().count() > MAX_DISPLAY_NAME {
            violations.add(f("display_name"), format!("at most {MAX_DISPLAY_NAME} characters"));
        } else if has_control_chars(&self.display_name) || name != self.display_name {
            violations.add(f("display_name"), "must not contain control characters or surrounding spaces");
        }
        if self.ci_class.is_empty() {
            violations.add(f("ci_class"), "is required");
        } else if classes.get(&self.ci_class).is_none() {
            violations
                .add(f("ci_class"), format!("unknown class; known classes: {}", classes.ids().join(", ")));
        }
        if self.description.chars().count() > MAX_DESCRIPTION {
            violations.add(f("description"), format!("at most {MAX_DESCRIPTION} characters"));
        }
        if !LIFECYCLE_STATUSES.iter().any(|(n, _)| *n == self.lifecycle_status) {
            violations
                .add(f("lifecycle_status"), "must be PLANNED, IN_BUILD, IN_USE, MAINTENANCE or RETIRED");
        }
        if self.criticality != 0 && !CRITICALITIES.iter().any(|(n, _)| *n == self.criticality) {
            violations.add(f("criticality"), "must be LOW, MEDIUM, HIGH or CRITICAL");
        }
        if self.environment.len() > 63
            || !self.environment.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            violations.add(f("environment"), "lower-case letters, digits and `-`, at most 63 characters");
        }
        for (field, value) in [("owner", &self.owner), ("support_group", &self.support_group)] {
            if value.chars().count() > MAX_PERSON || has_control_chars(value) {
                violations.add(f(field), format!("at most {MAX_PERSON} characters, no control characters"));
            }
        }
        if self.labels.len() > MAX_LABELS {
            violations.add(f("labels"), format!("at most {MAX_LABELS} labels"));
        }
        for (key, value) in &self.labels {
            if !is_label_key(key) {
                violations.add(
                    format!("{prefix}.labels[{key}]"),
                    "keys start with a lower-case letter and use a-z, 0-9, `_-./`, at most 63 characters",
                );
            }
            if value.chars().count() > MAX_LABEL_VALUE || has_control_chars(value) {
                violations.add(
                    format!("{prefix}.labels[{key}]"),
                    format!("values have at most {MAX_LABEL_VALUE} characters"),
                );
            }
        }
        let attributes_len = self.attributes.to_string().len();
        if attributes_len > MAX_ATTRIBUTES_BYTES {
            violations.add(f("attributes"), format!("at most {MAX_ATTRIBUTES_BYTES} bytes of JSON"));
        }
        if json_depth(&self.attributes) > MAX_ATTRIBUTES_DEPTH {
            violations.add(f("attributes"), format!("nested at most {MAX_ATTRIBUTES_DEPTH} levels"));
        }
    }

    /// The value of one field as JSON, for history entries.
    pub fn field_json(&self, field: &str) -> serde_json::Value {
        match field {
            "display_name" => self.display_name.clone().into(),
            "ci_class" => self.ci_class.clone().into(),
            "description" => self.description.clone().into(),
            "lifecycle_status" => self.lifecycle_status.into(),
            "environment" => self.environment.clone().into(),
            "criticality" => self.criticality.into(),
            "owner" => self.owner.clone().into(),
            "support_group" => self.support_group.clone().into(),
            "labels" => serde_json::to_value(&self.labels).unwrap_or_default(),
            "attributes" => self.attributes.clone(),
            _ => serde_json::Value::Null,
        }
    }

    /// Which fields differ from `before`, with both values (history and events).
    pub fn diff(before: Option<&CiFields>, after: Option<&CiFields>) -> Vec<FieldDiff> {
        UPDATABLE
            .iter()
            .filter_map(|field| {
                let old = before.map(|b| b.field_json(field));
                let new = after.map(|a| a.field_json(field));
                (old != new).then(|| FieldDiff {
                    field: (*field).to_string(),
                    old_value: old.map(|v| v.to_string()).unwrap_or_default(),
                    new_value: new.map(|v| v.to_string()).unwrap_or_default(),
                })
            })
            .collect()
    }
}

/// One changed field, values JSON-encoded ("" when absent).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FieldDiff {
    pub field: String,
    pub old_value: String,
    pub new_value: String,
}

fn json_depth(value: &serde_json::Value) -> usize {
    match value {
        serde_json::Value::Object(map) => 1 + map.values().map(json_depth).max().unwrap_or(0),
        serde_json::Value::Array(items) => 1 + items.iter().map(json_depth).max().unwrap_or(0),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> CiFields {
        CiFields {
            display_name: "db-01".into(),
            ci_class: "database".into(),
            lifecycle_status: 3,
            environment: "production".into(),
            criticality: 3,
            labels: [("team".to_string(), "payments".to_string())].into(),
            attributes: serde_json::json!({"engine": "postgres"}),
            ..CiFields::default()
        }
    }

    fn errors(fields: &CiFields) -> Vec<String> {
        let mut v = Violations::new();
        fields.validate(&ClassRegistry::builtins(), "ci", &mut v);
        match v.into_result() {
            Ok(()) => vec![],
            Err(itsm_runtime::Error::InvalidArgument(list)) => list.into_iter().map(|v| v.field).collect(),
            Err(other) => panic!("{other}"),
        }
    }

    #[test]
    fn valid_ci_passes() {
        assert!(errors(&valid()).is_empty());
    }

    #[test]
    fn each_rule_names_its_field() {
        type Mutation = Box<dyn Fn(&mut CiFields)>;
        let cases: Vec<(Mutation, &str)> = vec![
            (Box::new(|c| c.display_name.clear()), "ci.display_name"),
            (Box::new(|c| c.display_name = "x".repeat(201)), "ci.display_name"),
            (Box::new(|c| c.display_name = " padded".into()), "ci.display_name"),
            (Box::new(|c| c.ci_class = "spaceship".into()), "ci.ci_class"),
            (Box::new(|c| c.ci_class.clear()), "ci.ci_class"),
            (Box::new(|c| c.lifecycle_status = 0), "ci.lifecycle_status"),
            (Box::new(|c| c.lifecycle_status = 99), "ci.lifecycle_status"),
            (Box::new(|c| c.criticality = 7), "ci.criticality"),
            (Box::new(|c| c.environment = "Prod Env".into()), "ci.environment"),
            (
                Box::new(|c| {
                    c.labels.insert("Bad Key".into(), "v".into());
                }),
                "ci.labels[Bad Key]",
            ),
            (
                Box::new(|c| {
                    c.labels.insert("k".into(), "v".repeat(64));
                }),
                "ci.labels[k]",
            ),
            (Box::new(|c| c.owner = "o\u{0}".into()), "ci.owner"),
            (Box::new(|c| c.attributes = serde_json::json!({"a": "x".repeat(70_000)})), "ci.attributes"),
        ];
        for (mutate, field) in cases {
            let mut ci = valid();
            mutate(&mut ci);
            assert_eq!(errors(&ci), vec![field.to_string()], "{field}");
        }
    }

    #[test]
    fn diff_lists_changed_fields_only() {
        let before = valid();
        let mut after = valid();
        after.owner = "alice".into();
        let diff = CiFields::diff(Some(&before), Some(&after));
        assert_eq!(
            diff,
            vec![FieldDiff {
                field: "owner".into(),
                old_value: "\"\"".into(),
                new_value: "\"alice\"".into()
            }]
        );
        assert_eq!(CiFields::diff(None, Some(&after)).len(), UPDATABLE.len());
    }

    #[test]
    fn enum_names_parse() {
        assert_eq!(enum_value(LIFECYCLE_STATUSES, "LIFECYCLE_STATUS_", "in_use"), Some(3));
        assert_eq!(enum_value(LIFECYCLE_STATUSES, "LIFECYCLE_STATUS_", "LIFECYCLE_STATUS_RETIRED"), Some(5));
        assert_eq!(enum_value(CRITICALITIES, "CRITICALITY_", "2"), Some(2));
        assert_eq!(enum_value(CRITICALITIES, "CRITICALITY_", "huge"), None);
    }
}
