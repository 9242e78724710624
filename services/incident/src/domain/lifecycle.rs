//! The incident state machine. Numbers match `itsm.incident.v1.IncidentState`.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IncidentState {
    New = 1,
    Assigned = 2,
    InProgress = 3,
    OnHold = 4,
    Resolved = 5,
    Closed = 6,
    Cancelled = 7,
}

use IncidentState::{Assigned, Cancelled, Closed, InProgress, New, OnHold, Resolved};

impl IncidentState {
    pub const ALL: [IncidentState; 7] = [New, Assigned, InProgress, OnHold, Resolved, Closed, Cancelled];

    pub fn from_i32(value: i32) -> Option<Self> {
        Self::ALL.into_iter().find(|s| *s as i32 == value)
    }

    /// The name used in filters and messages (`IN_PROGRESS`).
    pub fn name(self) -> &'static str {
        match self {
            New => "NEW",
            Assigned => "ASSIGNED",
            InProgress => "IN_PROGRESS",
            OnHold => "ON_HOLD",
            Resolved => "RESOLVED",
            Closed => "CLOSED",
            Cancelled => "CANCELLED",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        let name = name.strip_prefix("INCIDENT_STATE_").unwrap_or(name);
        Self::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Work still to do: counts for duplicates, escalation and major incidents.
    pub fn is_open(self) -> bool {
        matches!(self, New | Assigned | InProgress | OnHold)
    }

    /// States reachable in one step.
    pub fn next_states(self) -> &'static [IncidentState] {
        match self {
            New => &[Assigned, Cancelled],
            Assigned => &[InProgress, OnHold, Resolved, Cancelled],
            InProgress => &[OnHold, Resolved, Cancelled],
            OnHold => &[InProgress, Resolved, Cancelled],
            // Reopen goes back to work.
            Resolved => &[Closed, InProgress],
            Closed | Cancelled => &[],
        }
    }

    /// `Ok` when `self -> to` is legal; otherwise the message a caller reads, naming the legal moves.
    pub fn check(self, to: IncidentState) -> Result<(), IllegalTransition> {
        if self.next_states().contains(&to) { Ok(()) } else { Err(IllegalTransition { from: self, to }) }
    }
}

impl fmt::Display for IncidentState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A move the state machine does not allow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IllegalTransition {
    pub from: IncidentState,
    pub to: IncidentState,
}

impl fmt::Display for IllegalTransition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let legal: Vec<&str> = self.from.next_states().iter().map(|s| s.name()).collect();
        if legal.is_empty() {
            write!(f, "an incident in state {} cannot change state ({} is final)", self.from, self.from)
        } else {
            write!(
                f,
                "an incident cannot go from {} to {}; from {} it can go to {}",
                self.from,
                self.to,
                self.from,
                legal.join(", ")
            )
        }
    }
}

/// Why an incident waits. Numbers match `itsm.incident.v1.OnHoldReason`.
pub const ON_HOLD_REASONS: &[(i32, &str)] =
    &[(1, "AWAITING_CALLER"), (2, "AWAITING_VENDOR"), (3, "AWAITING_CHANGE")];

/// How an incident was resolved. Numbers match `itsm.incident.v1.ResolutionCode`.
pub const RESOLUTION_CODES: &[(i32, &str)] = &[
    (1, "SOLVED_PERMANENTLY"),
    (2, "SOLVED_WORKAROUND"),
    (3, "NOT_SOLVED"),
    (4, "DUPLICATE"),
    (5, "NOT_REPRODUCIBLE"),
    (6, "CLOSED_BY_CALLER"),
];

#[cfg(test)]
mod tests {
    use super::*;

    /// Every pair, legal or not, against the table in the issue and the proto.
    #[test]
    fn every_pair_of_states() {
        let legal: &[(IncidentState, IncidentState)] = &[
            (New, Assigned),
            (New, Cancelled),
            (Assigned, InProgress),
            (Assigned, OnHold),
            (Assigned, Resolved),
            (Assigned, Cancelled),
            (InProgress, OnHold),
            (InProgress, Resolved),
            (InProgress, Cancelled),
            (OnHold, InProgress),
            (OnHold, Resolved),
            (OnHold, Cancelled),
            (Resolved, Closed),
            (Resolved, InProgress),
        ];
        let mut checked = 0;
        for from in IncidentState::ALL {
            for to in IncidentState::ALL {
                let expected = legal.contains(&(from, to));
                assert_eq!(from.check(to).is_ok(), expected, "{from} -> {to}");
                checked += 1;
            }
        }
        assert_eq!(checked, 49);
    }

    #[test]
    fn an_illegal_move_names_the_legal_ones() {
        let err = InProgress.check(Closed).unwrap_err().to_string();
        assert_eq!(
            err,
            "an incident cannot go from IN_PROGRESS to CLOSED; from IN_PROGRESS it can go to ON_HOLD, RESOLVED, CANCELLED"
        );
        assert!(Closed.check(InProgress).unwrap_err().to_string().contains("CLOSED is final"));
    }

    #[test]
    fn names_round_trip() {
        for state in IncidentState::ALL {
            assert_eq!(IncidentState::from_name(state.name()), Some(state));
            assert_eq!(IncidentState::from_i32(state as i32), Some(state));
        }
        assert_eq!(IncidentState::from_name("INCIDENT_STATE_ON_HOLD"), Some(OnHold));
        assert_eq!(IncidentState::from_i32(0), None);
    }
}
