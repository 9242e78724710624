//! Which fields a change touched, from what to what: the history every record keeps.

use serde::{Deserialize, Serialize};

/// One changed field, values as display text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldDiff {
    pub field: String,
    pub old_value: String,
    pub new_value: String,
}

/// Bookkeeping columns that change on every write and say nothing about the record.
const IGNORED: &[&str] =
    &["id", "tenant_id", "version", "create_time", "update_time", "creator", "updater", "number"];

fn display(value: Option<&serde_json::Value>) -> String {
    match value {
        None | Some(serde_json::Value::Null) => String::new(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// Fields that differ between `before` and `after` (either may be absent: create, delete), in
/// field order of `after` (or `before`).
pub fn diff<T: Serialize>(before: Option<&T>, after: Option<&T>) -> Vec<FieldDiff> {
    let object = |record: Option<&T>| match record.map(serde_json::to_value) {
        Some(Ok(serde_json::Value::Object(map))) => map,
        _ => serde_json::Map::new(),
    };
    let (old, new) = (object(before), object(after));
    let keys = if new.is_empty() { &old } else { &new };
    keys.keys()
        .filter(|k| !IGNORED.contains(&k.as_str()))
        .filter_map(|k| {
            let (o, n) = (display(old.get(k)), display(new.get(k)));
            let unset = |s: &str| s.is_empty() || s == "0" || s == "false" || s == "[]";
            if o == n || (before.is_none() && unset(&n)) {
                return None;
            }
            Some(FieldDiff { field: k.clone(), old_value: o, new_value: n })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Rec {
        id: &'static str,
        version: i64,
        title: &'static str,
        state: i32,
        tags: Vec<&'static str>,
    }

    #[test]
    fn reports_changed_fields_only() {
        let a = Rec { id: "1", version: 1, title: "disk full", state: 1, tags: vec![] };
        let b = Rec { id: "1", version: 2, title: "disk full", state: 3, tags: vec!["db"] };
        let changes = diff(Some(&a), Some(&b));
        assert_eq!(
            changes,
            vec![
                FieldDiff { field: "state".into(), old_value: "1".into(), new_value: "3".into() },
                FieldDiff { field: "tags".into(), old_value: "[]".into(), new_value: "[\"db\"]".into() },
            ]
        );
    }

    #[test]
    fn a_create_lists_the_fields_that_were_set() {
        let a = Rec { id: "1", version: 1, title: "disk full", state: 0, tags: vec![] };
        let changes = diff(None, Some(&a));
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].field, "title");
        assert!(diff(Some(&a), None).iter().any(|c| c.field == "title" && c.new_value.is_empty()));
    }
}
