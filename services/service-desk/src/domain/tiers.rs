//! Escalation between support tiers: up one tier at a time unless a rule allows skipping or the
//! ticket is P1; down (hand-back) to any lower tier.

pub const MAX_TIER: i32 = 3;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TierError {
    #[error("the ticket is at tier {current}; escalation goes to a higher tier (at most {MAX_TIER})")]
    NotHigher { current: i32 },
    #[error(
        "escalating from tier {current} to tier {target} skips a tier; that needs an assignment rule \
         that allows skipping, or a P1 ticket"
    )]
    SkipNotAllowed { current: i32, target: i32 },
    #[error("the ticket is at tier {current}; de-escalation goes to a lower tier")]
    NotLower { current: i32 },
}

/// Checks an escalation from `current` to `target`.
pub fn check_escalation(
    current: i32,
    target: i32,
    skip_allowed: bool,
    priority: i32,
) -> Result<(), TierError> {
    if target <= current || target > MAX_TIER {
        return Err(TierError::NotHigher { current });
    }
    if target > current + 1 && !skip_allowed && priority != 1 {
        return Err(TierError::SkipNotAllowed { current, target });
    }
    Ok(())
}

pub fn check_deescalation(current: i32, target: i32) -> Result<(), TierError> {
    if target >= current || target < 1 { Err(TierError::NotLower { current }) } else { Ok(()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_tier_up_always_skipping_with_a_rule_or_p1() {
        assert!(check_escalation(1, 2, false, 3).is_ok());
        assert!(check_escalation(2, 3, false, 0).is_ok());
        assert_eq!(
            check_escalation(1, 3, false, 2),
            Err(TierError::SkipNotAllowed { current: 1, target: 3 })
        );
        assert!(check_escalation(1, 3, true, 3).is_ok());
        assert!(check_escalation(1, 3, false, 1).is_ok());
        assert_eq!(check_escalation(3, 3, true, 1), Err(TierError::NotHigher { current: 3 }));
        assert_eq!(check_escalation(2, 1, true, 1), Err(TierError::NotHigher { current: 2 }));
        assert!(check_escalation(3, 4, true, 1).is_err());
    }

    #[test]
    fn down_to_any_lower_tier() {
        assert!(check_deescalation(3, 1).is_ok());
        assert!(check_deescalation(2, 1).is_ok());
        assert!(check_deescalation(1, 1).is_err());
        assert!(check_deescalation(2, 3).is_err());
        assert!(check_deescalation(2, 0).is_err());
    }
}
