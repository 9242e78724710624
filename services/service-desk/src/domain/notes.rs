//! Ticket notes: an agent's internal work note, or a comment the requester reads too. Numbers
//! match `itsm.servicedesk.v1.TicketNoteVisibility`.

use std::fmt;

use crate::domain::lifecycle::TicketState;

/// Who may read a note.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visibility {
    /// Agents only.
    WorkNote = 1,
    /// The requester as well.
    Comment = 2,
}

impl Visibility {
    /// The visibility a request names; `None` for UNSPECIFIED and unknown numbers.
    pub fn from_i32(value: i32) -> Option<Self> {
        match value {
            1 => Some(Self::WorkNote),
            2 => Some(Self::Comment),
            _ => None,
        }
    }

    /// The action of the ticket history entry (and `TicketChanged` event) that records the note.
    pub fn action(self) -> &'static str {
        match self {
            Self::WorkNote => WORK_NOTE_ACTION,
            Self::Comment => "comment",
        }
    }
}

/// The history action of a work note: requesters do not see these entries.
pub const WORK_NOTE_ACTION: &str = "work_note";

/// The states in which a ticket takes notes: all but the final ones (a RESOLVED ticket may
/// still be discussed, and reopened).
pub const NOTE_STATES: [TicketState; 4] =
    [TicketState::New, TicketState::InProgress, TicketState::Pending, TicketState::Resolved];

/// Why a ticket in `state` takes no notes, naming the states that do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClosedToNotes(pub TicketState);

impl fmt::Display for ClosedToNotes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = NOTE_STATES.iter().map(|s| s.name()).collect();
        let listed = match names.split_last() {
            Some((last, [])) => (*last).to_string(),
            Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
            None => String::new(),
        };
        write!(f, "a {} ticket takes no notes; notes can be added to {listed} tickets", self.0)
    }
}

/// Whether a ticket in `state` takes notes.
pub fn check_open_to_notes(state: TicketState) -> Result<(), ClosedToNotes> {
    if NOTE_STATES.contains(&state) { Ok(()) } else { Err(ClosedToNotes(state)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_states_take_no_notes() {
        for state in TicketState::ALL {
            let final_state = matches!(state, TicketState::Closed | TicketState::Cancelled);
            assert_eq!(check_open_to_notes(state).is_err(), final_state, "{state}");
        }
        let message = check_open_to_notes(TicketState::Closed).unwrap_err().to_string();
        assert!(message.starts_with("a CLOSED ticket takes no notes;"), "{message}");
        assert!(message.ends_with("to NEW, IN_PROGRESS, PENDING or RESOLVED tickets"), "{message}");
    }

    #[test]
    fn visibilities_and_their_history_actions() {
        assert_eq!(Visibility::from_i32(1), Some(Visibility::WorkNote));
        assert_eq!(Visibility::from_i32(2), Some(Visibility::Comment));
        assert_eq!(Visibility::from_i32(0), None);
        assert_eq!(Visibility::from_i32(3), None);
        assert_eq!(Visibility::WorkNote.action(), WORK_NOTE_ACTION);
        assert_eq!(Visibility::Comment.action(), "comment");
    }
}
