//! The default CI class tree. (Classes as data, with typed attributes, come with the CMDB issue;
//! until then a CI's class must be one of these.)

/// (class, parent class) pairs; the root classes have no parent.
pub const DEFAULT_CLASSES: &[(&str, Option<&str>)] = &[
    ("business_service", None),
    ("technical_service", None),
    ("application", None),
    ("database", Some("application")),
    ("server", None),
    ("virtual_machine", Some("server")),
    ("container", None),
    ("k8s_namespace", None),
    ("k8s_workload", Some("container")),
    ("k8s_service", Some("technical_service")),
    ("network_device", None),
    ("cloud_resource", None),
    ("location", None),
];

pub fn is_known(class: &str) -> bool {
    DEFAULT_CLASSES.iter().any(|(name, _)| *name == class)
}

/// The class and all its descendants, for `ci_class = "server"` matching virtual machines too.
pub fn with_descendants(class: &str) -> Vec<&'static str> {
    let mut out: Vec<&'static str> =
        DEFAULT_CLASSES.iter().filter(|(n, _)| *n == class).map(|(n, _)| *n).collect();
    let mut i = 0;
    while i < out.len() {
        let parent = out[i];
        for (name, p) in DEFAULT_CLASSES {
            if *p == Some(parent) && !out.contains(name) {
                out.push(name);
            }
        }
        i += 1;
    }
    out
}

pub fn names() -> Vec<&'static str> {
    DEFAULT_CLASSES.iter().map(|(n, _)| *n).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subclasses_are_included() {
        assert_eq!(with_descendants("server"), vec!["server", "virtual_machine"]);
        assert_eq!(with_descendants("location"), vec!["location"]);
        assert!(with_descendants("nope").is_empty());
    }
}
