//! Field checks every service's requests share; each adds a field violation.

use crate::error::Violations;

/// Longest short identifier-like value (principal, category, group id).
pub const MAX_NAME: usize = 200;

/// Free text: required (not blank) when `required`, at most `max` bytes.
pub fn text(v: &mut Violations, field: &str, value: &str, max: usize, required: bool) {
    if required && value.trim().is_empty() {
        v.add(field, "is required");
    } else if value.len() > max {
        v.add(field, format!("must be at most {max} bytes"));
    }
}

/// A support group name `supportGroups/{id}` (the service desk owns the groups); empty passes
/// unless `required`.
pub fn support_group(v: &mut Violations, field: &str, value: &str, required: bool) {
    if value.is_empty() {
        if required {
            v.add(field, "is required");
        }
        return;
    }
    let ok = value.strip_prefix("supportGroups/").is_some_and(|id| {
        !id.is_empty() && id.len() <= MAX_NAME && !id.contains('/') && !id.chars().any(char::is_whitespace)
    });
    if !ok {
        v.add(field, "must be `supportGroups/{id}`");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(check: impl FnOnce(&mut Violations)) -> usize {
        let mut v = Violations::new();
        check(&mut v);
        usize::from(!v.is_empty())
    }

    #[test]
    fn text_and_groups() {
        assert_eq!(fields(|v| text(v, "f", "  ", 10, true)), 1);
        assert_eq!(fields(|v| text(v, "f", "", 10, false)), 0);
        assert_eq!(fields(|v| text(v, "f", "12345678901", 10, false)), 1);
        assert_eq!(fields(|v| support_group(v, "g", "supportGroups/dba", true)), 0);
        assert_eq!(fields(|v| support_group(v, "g", "", false)), 0);
        assert_eq!(fields(|v| support_group(v, "g", "", true)), 1);
        for bad in ["dba", "supportGroups/", "supportGroups/a/b", "supportGroups/a b"] {
            assert_eq!(fields(|v| support_group(v, "g", bad, false)), 1, "{bad}");
        }
    }
}
