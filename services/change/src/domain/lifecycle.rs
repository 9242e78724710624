//! The change state machine. Numbers match `itsm.change.v1.ChangeState` and `ChangeType`.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChangeState {
    New = 1,
    Assess = 2,
    Authorize = 3,
    Scheduled = 4,
    Implement = 5,
    Review = 6,
    Closed = 7,
    Cancelled = 8,
    Failed = 9,
}

use ChangeState::{Assess, Authorize, Cancelled, Closed, Failed, Implement, New, Review, Scheduled};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChangeType {
    Standard = 1,
    Normal = 2,
    Emergency = 3,
}

impl ChangeType {
    pub fn from_i32(value: i32) -> Option<Self> {
        [Self::Standard, Self::Normal, Self::Emergency].into_iter().find(|t| *t as i32 == value)
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Standard => "STANDARD",
            Self::Normal => "NORMAL",
            Self::Emergency => "EMERGENCY",
        }
    }
}

/// Who makes a move: the requester through UpdateChange, or the approval process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mover {
    Update,
    Approvals,
}

impl ChangeState {
    pub const ALL: [ChangeState; 9] =
        [New, Assess, Authorize, Scheduled, Implement, Review, Closed, Cancelled, Failed];

    pub fn from_i32(value: i32) -> Option<Self> {
        Self::ALL.into_iter().find(|s| *s as i32 == value)
    }

    pub fn name(self) -> &'static str {
        match self {
            New => "NEW",
            Assess => "ASSESS",
            Authorize => "AUTHORIZE",
            Scheduled => "SCHEDULED",
            Implement => "IMPLEMENT",
            Review => "REVIEW",
            Closed => "CLOSED",
            Cancelled => "CANCELLED",
            Failed => "FAILED",
        }
    }

    /// Not finished: counts for conflicts.
    pub fn is_open(self) -> bool {
        matches!(self, New | Assess | Authorize | Scheduled | Implement)
    }

    /// States reachable in one step for a change of `kind`, and who makes each move.
    pub fn next_states(self, kind: ChangeType) -> Vec<(ChangeState, Mover)> {
        use Mover::{Approvals, Update};
        match self {
            New if kind == ChangeType::Standard => vec![(Scheduled, Update), (Cancelled, Update)],
            New => vec![(Assess, Update), (Cancelled, Update)],
            Assess => vec![(Authorize, Update), (Cancelled, Update)],
            Authorize => vec![(Scheduled, Approvals), (New, Approvals), (Cancelled, Update)],
            Scheduled => vec![(Implement, Update), (Cancelled, Update)],
            Implement => vec![(Review, Update), (Failed, Update)],
            Review => vec![(Closed, Update)],
            Failed => vec![(Review, Update), (Closed, Update)],
            Closed | Cancelled => vec![],
        }
    }

    /// `Ok` when `mover` may take a change of `kind` from `self` to `to`; else the reason,
    /// naming the legal moves.
    pub fn check(self, to: ChangeState, kind: ChangeType, mover: Mover) -> Result<(), IllegalTransition> {
        match self.next_states(kind).iter().find(|(s, _)| *s == to) {
            Some((_, m)) if *m == mover => Ok(()),
            found => Err(IllegalTransition { from: self, to, kind, by_approval: found.is_some() }),
        }
    }
}

impl fmt::Display for ChangeState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IllegalTransition {
    pub from: ChangeState,
    pub to: ChangeState,
    pub kind: ChangeType,
    /// The move exists but belongs to the approval process.
    pub by_approval: bool,
}

impl fmt::Display for IllegalTransition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.by_approval {
            return write!(
                f,
                "a change goes from {} to {} through ApproveChange / RejectChange, not by setting its state",
                self.from, self.to
            );
        }
        let legal: Vec<&str> = self
            .from
            .next_states(self.kind)
            .iter()
            .filter(|(_, m)| *m == Mover::Update)
            .map(|(s, _)| s.name())
            .collect();
        if self.from.next_states(self.kind).is_empty() {
            write!(f, "a change in state {} cannot change state ({} is final)", self.from, self.from)
        } else {
            write!(
                f,
                "a {} change cannot go from {} to {}; from {} it can go to {}",
                self.kind.name(),
                self.from,
                self.to,
                self.from,
                legal.join(", ")
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ChangeType::{Emergency, Normal, Standard};

    #[test]
    fn every_pair_of_states_for_every_type() {
        let by_update: &[(ChangeState, ChangeState)] = &[
            (New, Assess),
            (New, Cancelled),
            (Assess, Authorize),
            (Assess, Cancelled),
            (Authorize, Cancelled),
            (Scheduled, Implement),
            (Scheduled, Cancelled),
            (Implement, Review),
            (Implement, Failed),
            (Review, Closed),
            (Failed, Review),
            (Failed, Closed),
        ];
        let by_approval: &[(ChangeState, ChangeState)] = &[(Authorize, Scheduled), (Authorize, New)];
        for kind in [Normal, Emergency, Standard] {
            for from in ChangeState::ALL {
                for to in ChangeState::ALL {
                    let standard_shortcut = kind == Standard && from == New && to == Scheduled;
                    let assess_for_standard = kind == Standard && from == New && to == Assess;
                    let update_ok =
                        (by_update.contains(&(from, to)) && !assess_for_standard) || standard_shortcut;
                    assert_eq!(
                        from.check(to, kind, Mover::Update).is_ok(),
                        update_ok,
                        "{kind:?} {from} -> {to}"
                    );
                    let approval_ok = by_approval.contains(&(from, to));
                    assert_eq!(
                        from.check(to, kind, Mover::Approvals).is_ok(),
                        approval_ok,
                        "{kind:?} {from} -> {to}"
                    );
                }
            }
        }
    }

    #[test]
    fn messages_name_the_legal_moves() {
        let err = New.check(Implement, Normal, Mover::Update).unwrap_err().to_string();
        assert_eq!(
            err,
            "a NORMAL change cannot go from NEW to IMPLEMENT; from NEW it can go to ASSESS, CANCELLED"
        );
        let err = Authorize.check(Scheduled, Normal, Mover::Update).unwrap_err().to_string();
        assert!(err.contains("ApproveChange"), "{err}");
        assert!(Closed.check(New, Normal, Mover::Update).unwrap_err().to_string().contains("final"));
    }
}
