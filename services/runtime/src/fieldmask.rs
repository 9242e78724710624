//! `google.protobuf.FieldMask` handling for Update methods (AIP-134).

use crate::error::{Error, Violations};

/// The fields an update touches, checked against the ones the resource lets callers change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateMask {
    paths: Vec<String>,
}

impl UpdateMask {
    /// `mask` as sent; `updatable` lists the paths a caller may change. An absent or empty mask
    /// is an error (we do not guess which fields were meant); `*` means every updatable field.
    pub fn parse(
        mask: Option<&prost_types::FieldMask>,
        updatable: &[&str],
        field: &str,
    ) -> Result<Self, Error> {
        let paths = mask.map(|m| m.paths.clone()).unwrap_or_default();
        if paths.is_empty() {
            return Err(Error::invalid(field, "is required; name the fields to change, or `*`"));
        }
        if paths.iter().any(|p| p == "*") {
            if paths.len() > 1 {
                return Err(Error::invalid(field, "`*` cannot be combined with other paths"));
            }
            return Ok(Self { paths: updatable.iter().map(|p| (*p).to_string()).collect() });
        }
        let mut violations = Violations::new();
        let mut seen = Vec::new();
        for path in &paths {
            if !updatable.contains(&path.as_str()) {
                violations.add(
                    field,
                    format!("`{path}` cannot be updated; updatable fields: {}", updatable.join(", ")),
                );
            } else if seen.contains(path) {
                violations.add(field, format!("`{path}` is named twice"));
            } else {
                seen.push(path.clone());
            }
        }
        violations.into_result()?;
        Ok(Self { paths: seen })
    }

    pub fn contains(&self, path: &str) -> bool {
        self.paths.iter().any(|p| p == path)
    }

    pub fn paths(&self) -> &[String] {
        &self.paths
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask(paths: &[&str]) -> prost_types::FieldMask {
        prost_types::FieldMask { paths: paths.iter().map(|p| (*p).to_string()).collect() }
    }

    #[test]
    fn accepts_updatable_paths() {
        let m = UpdateMask::parse(Some(&mask(&["a", "b"])), &["a", "b", "c"], "update_mask").unwrap();
        assert!(m.contains("a") && m.contains("b") && !m.contains("c"));
    }

    #[test]
    fn star_means_all() {
        let m = UpdateMask::parse(Some(&mask(&["*"])), &["a", "b"], "update_mask").unwrap();
        assert_eq!(m.paths(), ["a", "b"]);
    }

    #[test]
    fn rejects_unknown_duplicate_and_empty() {
        assert!(UpdateMask::parse(Some(&mask(&["name"])), &["a"], "update_mask").is_err());
        assert!(UpdateMask::parse(Some(&mask(&["a", "a"])), &["a"], "update_mask").is_err());
        assert!(UpdateMask::parse(Some(&mask(&[])), &["a"], "update_mask").is_err());
        assert!(UpdateMask::parse(None, &["a"], "update_mask").is_err());
        assert!(UpdateMask::parse(Some(&mask(&["*", "a"])), &["a"], "update_mask").is_err());
    }
}
