//! VCS changesets and the changes that authorise them: which change numbers a commit message
//! names, and whether the linked changes make a changeset authorised.

use std::collections::BTreeSet;

use super::lifecycle::ChangeState;

/// Change numbers (`CHG0001234`, any case, as a whole word) in a commit message, upper-cased.
pub fn change_numbers(message: &str, prefix: &str, min_digits: usize) -> BTreeSet<String> {
    let upper = message.to_ascii_uppercase();
    let bytes = upper.as_bytes();
    let mut found = BTreeSet::new();
    let mut from = 0;
    while let Some(at) = upper[from..].find(prefix).map(|i| i + from) {
        let digits_start = at + prefix.len();
        let digits_end = bytes[digits_start..]
            .iter()
            .position(|b| !b.is_ascii_digit())
            .map_or(bytes.len(), |n| digits_start + n);
        let word_before = at > 0 && bytes[at - 1].is_ascii_alphanumeric();
        let word_after = digits_end < bytes.len()
            && (bytes[digits_end].is_ascii_alphabetic() || bytes[digits_end] == b'_');
        if digits_end - digits_start >= min_digits && !word_before && !word_after {
            found.insert(upper[at..digits_end].to_string());
        }
        from = digits_start;
    }
    found
}

/// Whether a changeset is covered by an authorised change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coverage {
    Authorized = 1,
    Unauthorized = 2,
    Unlinked = 3,
}

/// States a change reaches only after it was authorised.
fn was_authorised(state: ChangeState) -> bool {
    matches!(
        state,
        ChangeState::Scheduled
            | ChangeState::Implement
            | ChangeState::Review
            | ChangeState::Closed
            | ChangeState::Failed
    )
}

/// The coverage of a changeset from its links: `(number, state)` for linked changes that exist,
/// and the numbers that name no change. The reason names the changes that decided it.
pub fn coverage(linked: &[(String, ChangeState)], unknown: &[String]) -> (Coverage, String) {
    let authorising: Vec<&str> =
        linked.iter().filter(|(_, state)| was_authorised(*state)).map(|(n, _)| n.as_str()).collect();
    if !authorising.is_empty() {
        return (Coverage::Authorized, format!("authorised by {}", authorising.join(", ")));
    }
    if !linked.is_empty() {
        let states: Vec<String> = linked.iter().map(|(n, s)| format!("{n} is {}", s.name())).collect();
        return (Coverage::Unauthorized, format!("no linked change was authorised: {}", states.join(", ")));
    }
    if unknown.is_empty() {
        (Coverage::Unlinked, "names no change (no change number in its message, no link)".into())
    } else {
        (Coverage::Unlinked, format!("names no existing change: {}", unknown.join(", ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numbers(message: &str) -> Vec<String> {
        change_numbers(message, "CHG", 7).into_iter().collect()
    }

    #[test]
    fn finds_whole_change_numbers_in_any_case() {
        assert_eq!(numbers("CHG0000012: fix login"), ["CHG0000012"]);
        assert_eq!(numbers("Refs chg0000012 and (CHG0000345)."), ["CHG0000012", "CHG0000345"]);
        assert_eq!(numbers("fix [CHG0000012] again CHG0000012"), ["CHG0000012"]);
        assert_eq!(numbers("CHG00012 is too short"), Vec::<String>::new());
        assert_eq!(numbers("XCHG0000012 and CHG0000012abc are other words"), Vec::<String>::new());
        assert_eq!(numbers("CHG00000123 has more digits"), ["CHG00000123"]);
        assert_eq!(numbers("no number"), Vec::<String>::new());
    }

    #[test]
    fn coverage_needs_an_authorised_change() {
        let scheduled = ("CHG0000001".to_string(), ChangeState::Scheduled);
        let assess = ("CHG0000002".to_string(), ChangeState::Assess);
        let cancelled = ("CHG0000003".to_string(), ChangeState::Cancelled);
        assert_eq!(coverage(&[assess.clone(), scheduled.clone()], &[]).0, Coverage::Authorized);
        let (c, why) = coverage(&[assess, cancelled], &[]);
        assert_eq!(c, Coverage::Unauthorized);
        assert!(why.contains("CHG0000002 is ASSESS") && why.contains("CHG0000003 is CANCELLED"), "{why}");
        let (c, why) = coverage(&[], &["CHG0009999".into()]);
        assert_eq!(c, Coverage::Unlinked);
        assert!(why.contains("CHG0009999"));
        assert_eq!(coverage(&[], &[]).0, Coverage::Unlinked);
        for state in [ChangeState::Implement, ChangeState::Review, ChangeState::Closed, ChangeState::Failed] {
            assert_eq!(coverage(&[("C".into(), state)], &[]).0, Coverage::Authorized, "{state}");
        }
        for state in [ChangeState::New, ChangeState::Authorize] {
            assert_eq!(coverage(&[("C".into(), state)], &[]).0, Coverage::Unauthorized, "{state}");
        }
    }
}
