//! The problem state machine. Numbers match `itsm.incident.v1.ProblemState`.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProblemState {
    New = 1,
    Assessed = 2,
    RootCauseAnalysis = 3,
    FixInProgress = 4,
    Resolved = 5,
    Closed = 6,
}

use ProblemState::{Assessed, Closed, FixInProgress, New, Resolved, RootCauseAnalysis};

impl ProblemState {
    pub const ALL: [ProblemState; 6] = [New, Assessed, RootCauseAnalysis, FixInProgress, Resolved, Closed];

    pub fn from_i32(value: i32) -> Option<Self> {
        Self::ALL.into_iter().find(|s| *s as i32 == value)
    }

    pub fn name(self) -> &'static str {
        match self {
            New => "NEW",
            Assessed => "ASSESSED",
            RootCauseAnalysis => "ROOT_CAUSE_ANALYSIS",
            FixInProgress => "FIX_IN_PROGRESS",
            Resolved => "RESOLVED",
            Closed => "CLOSED",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        let name = name.strip_prefix("PROBLEM_STATE_").unwrap_or(name);
        Self::ALL.into_iter().find(|s| s.name() == name)
    }

    pub fn is_open(self) -> bool {
        !matches!(self, Resolved | Closed)
    }

    /// Forward one step, or straight to CLOSED from any open state (a duplicate, or accepted risk).
    pub fn next_states(self) -> &'static [ProblemState] {
        match self {
            New => &[Assessed, Closed],
            Assessed => &[RootCauseAnalysis, Closed],
            RootCauseAnalysis => &[FixInProgress, Closed],
            FixInProgress => &[Resolved, Closed],
            Resolved => &[Closed],
            Closed => &[],
        }
    }

    pub fn check(self, to: ProblemState) -> Result<(), IllegalProblemTransition> {
        if self.next_states().contains(&to) {
            Ok(())
        } else {
            Err(IllegalProblemTransition { from: self, to })
        }
    }
}

impl fmt::Display for ProblemState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IllegalProblemTransition {
    pub from: ProblemState,
    pub to: ProblemState,
}

impl fmt::Display for IllegalProblemTransition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let legal: Vec<&str> = self.from.next_states().iter().map(|s| s.name()).collect();
        if legal.is_empty() {
            write!(f, "a problem in state {} cannot change state ({} is final)", self.from, self.from)
        } else {
            write!(
                f,
                "a problem cannot go from {} to {}; from {} it can go to {}",
                self.from,
                self.to,
                self.from,
                legal.join(", ")
            )
        }
    }
}

/// Publication status of a known error. Numbers match `itsm.incident.v1.KnownErrorStatus`.
pub const KNOWN_ERROR_STATUSES: &[(i32, &str)] = &[(1, "DRAFT"), (2, "PUBLISHED"), (3, "RETIRED")];
pub const PUBLISHED: i32 = 2;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pair_of_states() {
        let legal: &[(ProblemState, ProblemState)] = &[
            (New, Assessed),
            (Assessed, RootCauseAnalysis),
            (RootCauseAnalysis, FixInProgress),
            (FixInProgress, Resolved),
            (Resolved, Closed),
            (New, Closed),
            (Assessed, Closed),
            (RootCauseAnalysis, Closed),
            (FixInProgress, Closed),
        ];
        for from in ProblemState::ALL {
            for to in ProblemState::ALL {
                assert_eq!(from.check(to).is_ok(), legal.contains(&(from, to)), "{from} -> {to}");
            }
        }
    }

    #[test]
    fn an_illegal_move_names_the_legal_ones() {
        assert_eq!(
            New.check(Resolved).unwrap_err().to_string(),
            "a problem cannot go from NEW to RESOLVED; from NEW it can go to ASSESSED, CLOSED"
        );
        assert!(Closed.check(New).unwrap_err().to_string().contains("final"));
    }

    #[test]
    fn names_round_trip() {
        for state in ProblemState::ALL {
            assert_eq!(ProblemState::from_name(state.name()), Some(state));
            assert_eq!(ProblemState::from_i32(state as i32), Some(state));
        }
    }
}
