//! Picking the member of a group who gets a ticket.

use std::collections::HashMap;

/// Numbers match `itsm.servicedesk.v1.AssignmentMethod`.
pub const ROUND_ROBIN: i32 = 1;
pub const LEAST_LOADED: i32 = 2;
pub const QUEUE: i32 = 3;

/// The member to assign, or `None` (nobody on shift, or the group works from its queue).
/// `last` is the member the group gave the previous ticket (round robin goes on after it);
/// `load` counts each member's open tickets (least loaded; ties go to the first in member order).
pub fn pick<'a>(
    method: i32,
    on_shift: &[&'a String],
    last: &str,
    load: &HashMap<String, i64>,
) -> Option<&'a String> {
    if on_shift.is_empty() {
        return None;
    }
    match method {
        QUEUE => None,
        LEAST_LOADED => on_shift.iter().copied().min_by_key(|m| load.get(m.as_str()).copied().unwrap_or(0)),
        _ => {
            let after = on_shift.iter().position(|m| m.as_str() == last).map_or(0, |i| i + 1);
            Some(on_shift[after % on_shift.len()])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_robin_takes_turns_among_those_on_shift() {
        let (a, b, c) = ("a".to_string(), "b".to_string(), "c".to_string());
        let on = vec![&a, &b, &c];
        let none = HashMap::new();
        assert_eq!(pick(ROUND_ROBIN, &on, "", &none), Some(&a));
        assert_eq!(pick(ROUND_ROBIN, &on, "a", &none), Some(&b));
        assert_eq!(pick(ROUND_ROBIN, &on, "c", &none), Some(&a));
        // The last one went off shift: start again from the top.
        assert_eq!(pick(ROUND_ROBIN, &[&b, &c], "a", &none), Some(&b));
        assert_eq!(pick(ROUND_ROBIN, &[], "a", &none), None);
    }

    #[test]
    fn least_loaded_and_queue() {
        let (a, b) = ("a".to_string(), "b".to_string());
        let load: HashMap<String, i64> = [("a".to_string(), 3), ("b".to_string(), 1)].into();
        assert_eq!(pick(LEAST_LOADED, &[&a, &b], "", &load), Some(&b));
        assert_eq!(pick(LEAST_LOADED, &[&a, &b], "", &HashMap::new()), Some(&a));
        assert_eq!(pick(QUEUE, &[&a, &b], "", &load), None);
    }
}
