//! CI classes: the built-in tree plus each tenant's own classes, typed attributes inherited down
//! the tree, and natural keys for reconciliation.

use std::collections::{BTreeMap, HashSet};

/// Value type of an attribute (values of `itsm.cmdb.v1.AttributeType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttrType {
    String,
    Int,
    Bool,
    Enum,
    Timestamp,
    Reference,
    Json,
}

impl AttrType {
    pub fn from_proto(value: i32) -> Option<Self> {
        Some(match value {
            1 => Self::String,
            2 => Self::Int,
            3 => Self::Bool,
            4 => Self::Enum,
            5 => Self::Timestamp,
            6 => Self::Reference,
            7 => Self::Json,
            _ => return None,
        })
    }

    pub fn to_proto(self) -> i32 {
        match self {
            Self::String => 1,
            Self::Int => 2,
            Self::Bool => 3,
            Self::Enum => 4,
            Self::Timestamp => 5,
            Self::Reference => 6,
            Self::Json => 7,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AttrDef {
    pub name: String,
    pub kind: AttrType,
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    pub enum_values: Vec<String>,
    #[serde(default)]
    pub reference_class: String,
    #[serde(default)]
    pub description: String,
}

/// One class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassDef {
    pub id: String,
    pub display_name: String,
    pub parent: Option<String>,
    pub description: String,
    pub attributes: Vec<AttrDef>,
    pub natural_key: Vec<String>,
    pub builtin: bool,
}

fn attr(name: &str, kind: AttrType) -> AttrDef {
    AttrDef {
        name: name.into(),
        kind,
        required: false,
        enum_values: vec![],
        reference_class: String::new(),
        description: String::new(),
    }
}

fn one_of(name: &str, values: &[&str]) -> AttrDef {
    AttrDef { enum_values: values.iter().map(|v| (*v).to_string()).collect(), ..attr(name, AttrType::Enum) }
}

fn builtin(id: &str, display: &str, parent: Option<&str>, attributes: Vec<AttrDef>) -> ClassDef {
    ClassDef {
        id: id.into(),
        display_name: display.into(),
        parent: parent.map(Into::into),
        description: String::new(),
        attributes,
        natural_key: Vec::new(),
        builtin: true,
    }
}

/// The class tree every tenant starts with.
pub fn builtin_classes() -> Vec<ClassDef> {
    use AttrType::{Int, Json, String as Str};
    vec![
        builtin("business_service", "Business service", None, vec![attr("service_level", Str)]),
        builtin("technical_service", "Technical service", None, vec![]),
        builtin(
            "application",
            "Application",
            None,
            vec![attr("type", Str), attr("lifecycle", Str), attr("version", Str)],
        ),
        builtin("api", "API", Some("technical_service"), vec![attr("type", Str), attr("lifecycle", Str)]),
        builtin("database", "Database", Some("application"), vec![attr("engine", Str)]),
        builtin(
            "server",
            "Server",
            None,
            vec![attr("ip_address", Str), attr("os", Str), attr("cpu_count", Int), attr("memory_gb", Int)],
        ),
        builtin("virtual_machine", "Virtual machine", Some("server"), vec![attr("hypervisor", Str)]),
        builtin("container", "Container", None, vec![attr("images", Json)]),
        builtin("k8s_namespace", "Kubernetes namespace", None, vec![attr("cluster", Str)]),
        builtin(
            "k8s_workload",
            "Kubernetes workload",
            Some("container"),
            vec![
                one_of("kind", &["Deployment", "StatefulSet", "DaemonSet"]),
                attr("namespace", Str),
                attr("replicas", Int),
                attr("service_account", Str),
            ],
        ),
        builtin(
            "k8s_service",
            "Kubernetes service",
            Some("technical_service"),
            vec![attr("namespace", Str), attr("type", Str), attr("ports", Json), attr("selector", Json)],
        ),
        builtin(
            "k8s_ingress",
            "Kubernetes ingress",
            Some("technical_service"),
            vec![attr("namespace", Str), attr("hosts", Json)],
        ),
        builtin("network_device", "Network device", None, vec![attr("ip_address", Str), attr("model", Str)]),
        builtin(
            "cloud_resource",
            "Cloud resource",
            None,
            vec![attr("type", Str), attr("provider", Str), attr("region", Str), attr("resource_id", Str)],
        ),
        builtin("location", "Location", None, vec![attr("address", Str)]),
        builtin("team", "Team", None, vec![attr("type", Str), attr("email", Str)]),
    ]
}

/// The classes visible to one tenant: built-ins plus its own.
#[derive(Debug, Clone)]
pub struct ClassRegistry {
    classes: BTreeMap<String, ClassDef>,
}

/// Why a class definition is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassProblem {
    pub field: String,
    pub reason: String,
}

pub fn is_identifier(id: &str) -> bool {
    let mut chars = id.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase())
        && id.len() <= 63
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

impl ClassRegistry {
    pub fn new(custom: Vec<ClassDef>) -> Self {
        let mut classes: BTreeMap<String, ClassDef> =
            builtin_classes().into_iter().map(|c| (c.id.clone(), c)).collect();
        for class in custom {
            classes.entry(class.id.clone()).or_insert(class);
        }
        Self { classes }
    }

    pub fn builtins() -> Self {
        Self::new(Vec::new())
    }

    pub fn get(&self, id: &str) -> Option<&ClassDef> {
        self.classes.get(id)
    }

    pub fn all(&self) -> impl Iterator<Item = &ClassDef> {
        self.classes.values()
    }

    pub fn ids(&self) -> Vec<&str> {
        self.classes.keys().map(String::as_str).collect()
    }

    /// The class and its ancestors, nearest first (cycles cannot occur: a parent must exist
    /// before its child).
    pub fn lineage(&self, id: &str) -> Vec<&ClassDef> {
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        let mut next = self.get(id);
        while let Some(class) = next {
            if !seen.insert(class.id.as_str()) {
                break;
            }
            out.push(class);
            next = class.parent.as_deref().and_then(|p| self.get(p));
        }
        out
    }

    /// Attributes of the class and its ancestors (the nearest definition wins).
    pub fn effective_attributes(&self, id: &str) -> Vec<&AttrDef> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for class in self.lineage(id) {
            for a in &class.attributes {
                if seen.insert(a.name.as_str()) {
                    out.push(a);
                }
            }
        }
        out
    }

    /// The natural key of the class: its own, else the nearest ancestor's, else display_name.
    pub fn natural_key(&self, id: &str) -> Vec<String> {
        self.lineage(id)
            .into_iter()
            .find(|c| !c.natural_key.is_empty())
            .map_or_else(|| vec!["display_name".to_string()], |c| c.natural_key.clone())
    }

    /// The class and all classes below it.
    pub fn with_descendants(&self, id: &str) -> Vec<String> {
        if !self.classes.contains_key(id) {
            return Vec::new();
        }
        let mut out = vec![id.to_string()];
        let mut i = 0;
        while i < out.len() {
            let parent = out[i].clone();
            for class in self.classes.values() {
                if class.parent.as_deref() == Some(parent.as_str()) && !out.contains(&class.id) {
                    out.push(class.id.clone());
                }
            }
            i += 1;
        }
        out
    }

    /// True when `id` is `ancestor` or below it.
    pub fn is_a(&self, id: &str, ancestor: &str) -> bool {
        self.lineage(id).iter().any(|c| c.id == ancestor)
    }

    /// Checks a new custom class against the registry.
    pub fn check_new(&self, class: &ClassDef) -> Vec<ClassProblem> {
        let mut problems = Vec::new();
        let mut add =
            |field: &str, reason: String| problems.push(ClassProblem { field: field.into(), reason });
        if !is_identifier(&class.id) {
            add("ci_class_id", "lower snake case, starting with a letter, at most 63 characters".into());
        } else if self.classes.contains_key(&class.id) {
            add("ci_class_id", format!("class {} already exists", class.id));
        }
        if class.display_name.trim().is_empty() || class.display_name.len() > 200 {
            add("ci_class.display_name", "is required, at most 200 characters".into());
        }
        match class.parent.as_deref() {
            Some(parent) if !self.classes.contains_key(parent) => {
                add("ci_class.parent", format!("unknown class {parent}"));
            }
            _ => {}
        }
        let inherited: Vec<&AttrDef> =
            class.parent.as_deref().map(|p| self.effective_attributes(p)).unwrap_or_default();
        let mut names = HashSet::new();
        for (i, a) in class.attributes.iter().enumerate() {
            let field = format!("ci_class.attributes[{i}]");
            if !is_identifier(&a.name) || a.name == "display_name" {
                add(
                    &format!("{field}.name"),
                    "lower snake case, starting with a letter; not display_name".into(),
                );
            }
            if !names.insert(a.name.clone()) || inherited.iter().any(|p| p.name == a.name) {
                add(
                    &format!("{field}.name"),
                    format!("attribute {} is defined twice (here or in a parent)", a.name),
                );
            }
            if a.kind == AttrType::Enum && a.enum_values.is_empty() {
                add(&format!("{field}.enum_values"), "an ENUM attribute needs its values".into());
            }
            if a.kind != AttrType::Enum && !a.enum_values.is_empty() {
                add(&format!("{field}.enum_values"), "only ENUM attributes have values".into());
            }
            if a.kind == AttrType::Reference
                && !a.reference_class.is_empty()
                && !self.classes.contains_key(&a.reference_class)
            {
                add(&format!("{field}.reference_class"), format!("unknown class {}", a.reference_class));
            }
        }
        let all: Vec<&str> =
            inherited.iter().copied().chain(&class.attributes).map(|a| a.name.as_str()).collect();
        for (i, key) in class.natural_key.iter().enumerate() {
            if key != "display_name" && !all.contains(&key.as_str()) {
                add(&format!("ci_class.natural_key[{i}]"), format!("{key} is not an attribute of the class"));
            }
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn custom(id: &str, parent: &str, attributes: Vec<AttrDef>, natural_key: &[&str]) -> ClassDef {
        ClassDef {
            id: id.into(),
            display_name: id.into(),
            parent: Some(parent.into()),
            description: String::new(),
            attributes,
            natural_key: natural_key.iter().map(|k| (*k).to_string()).collect(),
            builtin: false,
        }
    }

    #[test]
    fn subclasses_are_included() {
        let r = ClassRegistry::builtins();
        assert_eq!(r.with_descendants("server"), vec!["server", "virtual_machine"]);
        assert_eq!(r.with_descendants("location"), vec!["location"]);
        assert!(r.with_descendants("nope").is_empty());
        assert!(r.is_a("k8s_workload", "container"));
        assert!(!r.is_a("container", "k8s_workload"));
    }

    #[test]
    fn attributes_and_keys_are_inherited() {
        let linux = custom("linux_server", "server", vec![attr("kernel", AttrType::String)], &["ip_address"]);
        let r = ClassRegistry::new(vec![linux]);
        let names: Vec<String> =
            r.effective_attributes("linux_server").into_iter().map(|a| a.name.clone()).collect();
        assert_eq!(names, ["kernel", "ip_address", "os", "cpu_count", "memory_gb"]);
        assert_eq!(r.natural_key("linux_server"), ["ip_address"]);
        assert_eq!(r.natural_key("server"), ["display_name"]);
        assert_eq!(r.with_descendants("server"), vec!["server", "linux_server", "virtual_machine"]);
    }

    #[test]
    fn new_class_rules() {
        let r = ClassRegistry::builtins();
        let ok = custom("linux_server", "server", vec![attr("kernel", AttrType::String)], &["kernel"]);
        assert!(r.check_new(&ok).is_empty());
        let fields = |c: &ClassDef| r.check_new(c).into_iter().map(|p| p.field).collect::<Vec<_>>();
        assert_eq!(fields(&custom("Bad Id", "server", vec![], &[])), ["ci_class_id"]);
        assert_eq!(fields(&custom("server", "server", vec![], &[])), ["ci_class_id"]);
        assert_eq!(fields(&custom("x", "nothing", vec![], &[])), ["ci_class.parent"]);
        assert_eq!(
            fields(&custom("x", "server", vec![attr("os", AttrType::String)], &[])),
            ["ci_class.attributes[0].name"]
        );
        assert_eq!(
            fields(&custom("x", "server", vec![attr("e", AttrType::Enum)], &[])),
            ["ci_class.attributes[0].enum_values"]
        );
        assert_eq!(fields(&custom("x", "server", vec![], &["serial"])), ["ci_class.natural_key[0]"]);
    }
}
