//! The knowledge article life cycle. Numbers match `itsm.servicedesk.v1.ArticleState`.

pub const DRAFT: i32 = 1;
pub const REVIEW: i32 = 2;
pub const PUBLISHED: i32 = 3;
pub const RETIRED: i32 = 4;

pub fn name(state: i32) -> &'static str {
    match state {
        DRAFT => "DRAFT",
        REVIEW => "REVIEW",
        PUBLISHED => "PUBLISHED",
        RETIRED => "RETIRED",
        _ => "UNSPECIFIED",
    }
}

pub fn next_states(state: i32) -> &'static [i32] {
    match state {
        DRAFT => &[REVIEW],
        REVIEW => &[PUBLISHED, DRAFT],
        PUBLISHED => &[RETIRED, DRAFT],
        RETIRED => &[DRAFT],
        _ => &[],
    }
}

/// `Err(reason naming the legal moves)` when `from -> to` is not allowed.
pub fn check(from: i32, to: i32) -> Result<(), String> {
    if from == to || next_states(from).contains(&to) {
        return Ok(());
    }
    let legal: Vec<&str> = next_states(from).iter().map(|s| name(*s)).collect();
    Err(format!(
        "an article cannot go from {} to {}; from {} it can go to {}",
        name(from),
        name(to),
        name(from),
        legal.join(", ")
    ))
}

/// Content may change while the article is being written or reviewed.
pub fn editable(state: i32) -> bool {
    matches!(state, DRAFT | REVIEW)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pair_of_states() {
        let legal = [
            (DRAFT, REVIEW),
            (REVIEW, PUBLISHED),
            (REVIEW, DRAFT),
            (PUBLISHED, RETIRED),
            (PUBLISHED, DRAFT),
            (RETIRED, DRAFT),
        ];
        for from in [DRAFT, REVIEW, PUBLISHED, RETIRED] {
            for to in [DRAFT, REVIEW, PUBLISHED, RETIRED] {
                assert_eq!(
                    check(from, to).is_ok(),
                    from == to || legal.contains(&(from, to)),
                    "{from} -> {to}"
                );
            }
        }
        assert_eq!(
            check(DRAFT, PUBLISHED).unwrap_err(),
            "an article cannot go from DRAFT to PUBLISHED; from DRAFT it can go to REVIEW"
        );
        assert!(editable(DRAFT) && editable(REVIEW) && !editable(PUBLISHED) && !editable(RETIRED));
    }
}
