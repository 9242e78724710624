//! The ticket state machine. Numbers match `itsm.servicedesk.v1.TicketState`.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TicketState {
    New = 1,
    InProgress = 2,
    Pending = 3,
    Resolved = 4,
    Closed = 5,
    Cancelled = 6,
}

use TicketState::{Cancelled, Closed, InProgress, New, Pending, Resolved};

impl TicketState {
    pub const ALL: [TicketState; 6] = [New, InProgress, Pending, Resolved, Closed, Cancelled];

    pub fn from_i32(value: i32) -> Option<Self> {
        Self::ALL.into_iter().find(|s| *s as i32 == value)
    }

    pub fn name(self) -> &'static str {
        match self {
            New => "NEW",
            InProgress => "IN_PROGRESS",
            Pending => "PENDING",
            Resolved => "RESOLVED",
            Closed => "CLOSED",
            Cancelled => "CANCELLED",
        }
    }

    pub fn is_open(self) -> bool {
        matches!(self, New | InProgress | Pending)
    }

    pub fn next_states(self) -> &'static [TicketState] {
        match self {
            New => &[InProgress, Cancelled],
            InProgress => &[Pending, Resolved, Cancelled],
            Pending => &[InProgress, Resolved, Cancelled],
            Resolved => &[Closed, InProgress],
            Closed | Cancelled => &[],
        }
    }

    pub fn check(self, to: TicketState) -> Result<(), IllegalTransition> {
        if self.next_states().contains(&to) { Ok(()) } else { Err(IllegalTransition { from: self, to }) }
    }
}

impl fmt::Display for TicketState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IllegalTransition {
    pub from: TicketState,
    pub to: TicketState,
}

impl fmt::Display for IllegalTransition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let legal: Vec<&str> = self.from.next_states().iter().map(|s| s.name()).collect();
        if legal.is_empty() {
            write!(f, "a ticket in state {} cannot change state ({} is final)", self.from, self.from)
        } else {
            write!(
                f,
                "a ticket cannot go from {} to {}; from {} it can go to {}",
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

    #[test]
    fn every_pair_of_states() {
        let legal = [
            (New, InProgress),
            (New, Cancelled),
            (InProgress, Pending),
            (InProgress, Resolved),
            (InProgress, Cancelled),
            (Pending, InProgress),
            (Pending, Resolved),
            (Pending, Cancelled),
            (Resolved, Closed),
            (Resolved, InProgress),
        ];
        for from in TicketState::ALL {
            for to in TicketState::ALL {
                assert_eq!(from.check(to).is_ok(), legal.contains(&(from, to)), "{from} -> {to}");
            }
        }
        assert_eq!(
            New.check(Resolved).unwrap_err().to_string(),
            "a ticket cannot go from NEW to RESOLVED; from NEW it can go to IN_PROGRESS, CANCELLED"
        );
    }
}
