//! Relationship types and the rules a relationship must follow.

/// How two CIs relate (values of `itsm.cmdb.v1.RelationshipType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RelKind {
    DependsOn = 1,
    RunsOn = 2,
    PartOf = 3,
    ConnectsTo = 4,
    OwnedBy = 5,
}

impl RelKind {
    pub const ALL: [RelKind; 5] =
        [Self::DependsOn, Self::RunsOn, Self::PartOf, Self::ConnectsTo, Self::OwnedBy];

    pub fn from_proto(value: i32) -> Option<Self> {
        Self::ALL.into_iter().find(|k| *k as i32 == value)
    }

    /// Parses `DEPENDS_ON`, `RELATIONSHIP_TYPE_DEPENDS_ON` or the number.
    pub fn parse(text: &str) -> Option<Self> {
        let upper = text.to_ascii_uppercase();
        let bare = upper.strip_prefix("RELATIONSHIP_TYPE_").unwrap_or(&upper);
        Self::ALL.into_iter().find(|k| k.name() == bare || text.parse::<i32>().ok() == Some(*k as i32))
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::DependsOn => "DEPENDS_ON",
            Self::RunsOn => "RUNS_ON",
            Self::PartOf => "PART_OF",
            Self::ConnectsTo => "CONNECTS_TO",
            Self::OwnedBy => "OWNED_BY",
        }
    }

    /// The types an impact analysis follows when the caller names none.
    pub fn default_impact() -> Vec<RelKind> {
        vec![Self::DependsOn, Self::RunsOn, Self::PartOf]
    }
}

/// Whether a relationship's properties mark it as one of several redundant providers.
pub fn is_redundant(properties: &serde_json::Value) -> bool {
    properties.get("redundant").and_then(serde_json::Value::as_bool).unwrap_or(false)
}

/// Checks properties: an object, `redundant` a bool, `weight` a number ≥ 0.
pub fn check_properties(properties: &serde_json::Value) -> Result<(), (String, String)> {
    let Some(map) = properties.as_object() else {
        return Err(("properties".into(), "must be an object".into()));
    };
    if let Some(v) = map.get("redundant")
        && !v.is_boolean()
    {
        return Err(("properties.redundant".into(), "must be true or false".into()));
    }
    if let Some(v) = map.get("weight")
        && !v.as_f64().is_some_and(|w| w >= 0.0 && w.is_finite())
    {
        return Err(("properties.weight".into(), "must be a number ≥ 0".into()));
    }
    if properties.to_string().len() > 8 * 1024 {
        return Err(("properties".into(), "at most 8 KiB of JSON".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_parse() {
        assert_eq!(RelKind::parse("depends_on"), Some(RelKind::DependsOn));
        assert_eq!(RelKind::parse("RELATIONSHIP_TYPE_PART_OF"), Some(RelKind::PartOf));
        assert_eq!(RelKind::parse("4"), Some(RelKind::ConnectsTo));
        assert_eq!(RelKind::parse("hosts"), None);
        assert_eq!(RelKind::from_proto(0), None);
    }

    #[test]
    fn properties() {
        assert!(check_properties(&json!({"redundant": true, "weight": 0.5})).is_ok());
        assert!(check_properties(&json!({"redundant": "yes"})).is_err());
        assert!(check_properties(&json!({"weight": -1})).is_err());
        assert!(check_properties(&json!([1])).is_err());
        assert!(is_redundant(&json!({"redundant": true})));
        assert!(!is_redundant(&json!({})));
    }
}
