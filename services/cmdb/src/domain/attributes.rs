//! Checking a CI's attributes against its class: known names, types, required values, enum
//! values; references are returned for the repository to check against the database.

use itsm_runtime::error::Violations;

use super::classes::{AttrDef, AttrType, ClassRegistry};

/// A reference attribute whose target must exist (and be of `class`, when set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingReference {
    pub field: String,
    pub target: String,
    pub class: String,
}

/// Validates `attributes` (a JSON object) for a CI of `class`. `prefix` is the request path of
/// the attributes (`configuration_item.attributes`).
pub fn check(
    registry: &ClassRegistry,
    class: &str,
    attributes: &serde_json::Value,
    prefix: &str,
    violations: &mut Violations,
) -> Vec<PendingReference> {
    let mut references = Vec::new();
    let Some(map) = attributes.as_object() else {
        violations.add(prefix, "must be an object");
        return references;
    };
    if registry.get(class).is_none() {
        return references; // the unknown class is reported on its own field
    }
    let defs = registry.effective_attributes(class);
    for (name, value) in map {
        let field = format!("{prefix}.{name}");
        let Some(def) = defs.iter().find(|d| &d.name == name) else {
            let known: Vec<&str> = defs.iter().map(|d| d.name.as_str()).collect();
            violations.add(
                field,
                if known.is_empty() {
                    format!("class {class} has no attributes")
                } else {
                    format!("not an attribute of class {class}; known: {}", known.join(", "))
                },
            );
            continue;
        };
        if value.is_null() {
            if def.required {
                violations.add(field, "is required");
            }
            continue;
        }
        if let Err(reason) = check_value(def, value) {
            violations.add(field.clone(), reason);
        } else if def.kind == AttrType::Reference
            && let Some(target) = value.as_str()
        {
            references.push(PendingReference {
                field,
                target: target.to_string(),
                class: def.reference_class.clone(),
            });
        }
    }
    for def in defs.iter().filter(|d| d.required) {
        if map.get(&def.name).is_none_or(serde_json::Value::is_null) {
            violations.add(format!("{prefix}.{}", def.name), "is required");
        }
    }
    references
}

fn check_value(def: &AttrDef, value: &serde_json::Value) -> Result<(), String> {
    match def.kind {
        AttrType::String => value.as_str().map(|_| ()).ok_or_else(|| "must be a string".to_string()),
        AttrType::Int => match value.as_f64() {
            Some(n) if n.fract() == 0.0 && n.abs() < 9.007_199_254_740_992e15 => Ok(()),
            _ => Err("must be a whole number".into()),
        },
        AttrType::Bool => value.as_bool().map(|_| ()).ok_or_else(|| "must be true or false".to_string()),
        AttrType::Enum => match value.as_str() {
            Some(v) if def.enum_values.iter().any(|e| e == v) => Ok(()),
            _ => Err(format!("must be one of {}", def.enum_values.join(", "))),
        },
        AttrType::Timestamp => match value.as_str().map(chrono::DateTime::parse_from_rfc3339) {
            Some(Ok(_)) => Ok(()),
            _ => Err("must be an RFC 3339 time, e.g. 2026-01-31T12:00:00Z".into()),
        },
        AttrType::Reference => match value.as_str() {
            Some(name) if crate::convert::parse_name(name).is_some() => Ok(()),
            _ => Err("must name a configuration item (configurationItems/{id})".into()),
        },
        AttrType::Json => Ok(()),
    }
}

/// The natural-key string of a CI: the key attributes' values joined by `/`.
pub fn natural_key(
    registry: &ClassRegistry,
    class: &str,
    display_name: &str,
    attributes: &serde_json::Value,
) -> String {
    registry
        .natural_key(class)
        .iter()
        .map(|key| {
            if key == "display_name" {
                display_name.to_string()
            } else {
                match attributes.get(key) {
                    Some(serde_json::Value::String(s)) => s.clone(),
                    Some(serde_json::Value::Null) | None => String::new(),
                    Some(other) => other.to_string(),
                }
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::classes::ClassDef;
    use serde_json::json;

    fn registry() -> ClassRegistry {
        let defs = vec![
            AttrDef { required: true, ..def("serial", AttrType::String) },
            def("cores", AttrType::Int),
            def("virtualised", AttrType::Bool),
            AttrDef { enum_values: vec!["a".into(), "b".into()], ..def("tier", AttrType::Enum) },
            def("bought", AttrType::Timestamp),
            AttrDef { reference_class: "location".into(), ..def("site", AttrType::Reference) },
        ];
        ClassRegistry::new(vec![ClassDef {
            id: "rack_server".into(),
            display_name: "Rack server".into(),
            parent: Some("server".into()),
            description: String::new(),
            attributes: defs,
            natural_key: vec!["serial".into()],
            builtin: false,
        }])
    }

    fn def(name: &str, kind: AttrType) -> AttrDef {
        AttrDef {
            name: name.into(),
            kind,
            required: false,
            enum_values: vec![],
            reference_class: String::new(),
            description: String::new(),
        }
    }

    fn fields(value: &serde_json::Value) -> Vec<String> {
        let mut v = Violations::new();
        check(&registry(), "rack_server", value, "a", &mut v);
        match v.into_result() {
            Ok(()) => vec![],
            Err(itsm_runtime::Error::InvalidArgument(list)) => list.into_iter().map(|x| x.field).collect(),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn types_are_checked() {
        assert!(fields(&json!({"serial": "S1", "cores": 8, "virtualised": false, "tier": "a", "bought": "2026-01-31T12:00:00Z"})).is_empty());
        assert_eq!(fields(&json!({"serial": 5})), ["a.serial"]);
        assert_eq!(fields(&json!({"serial": "S", "cores": 1.5})), ["a.cores"]);
        assert_eq!(fields(&json!({"serial": "S", "cores": "8"})), ["a.cores"]);
        assert_eq!(fields(&json!({"serial": "S", "virtualised": "yes"})), ["a.virtualised"]);
        assert_eq!(fields(&json!({"serial": "S", "tier": "c"})), ["a.tier"]);
        assert_eq!(fields(&json!({"serial": "S", "bought": "yesterday"})), ["a.bought"]);
        assert_eq!(fields(&json!({"serial": "S", "site": "the attic"})), ["a.site"]);
        assert_eq!(fields(&json!({"serial": "S", "colour": "red"})), ["a.colour"]);
        // Inherited from server.
        assert!(fields(&json!({"serial": "S", "os": "linux"})).is_empty());
    }

    #[test]
    fn required_attributes() {
        assert_eq!(fields(&json!({})), ["a.serial"]);
        assert_eq!(fields(&json!({"serial": null})), ["a.serial", "a.serial"]);
    }

    #[test]
    fn references_are_returned_for_checking() {
        let mut v = Violations::new();
        let id = uuid::Uuid::now_v7();
        let refs = check(
            &registry(),
            "rack_server",
            &json!({"serial": "S", "site": format!("configurationItems/{id}")}),
            "a",
            &mut v,
        );
        assert!(v.is_empty());
        assert_eq!(refs.len(), 1);
        assert_eq!(refs[0].class, "location");
    }

    #[test]
    fn natural_keys() {
        let r = registry();
        assert_eq!(natural_key(&r, "rack_server", "web-1", &json!({"serial": "S1"})), "S1");
        assert_eq!(natural_key(&r, "server", "web-1", &json!({})), "web-1");
    }
}
