//! sea-orm entities of the incident service's tables. Times are microseconds since the epoch
//! (0 = not yet); lists are JSON arrays of resource names.

pub mod incident;
pub mod known_error;
pub mod note;
pub mod problem;
