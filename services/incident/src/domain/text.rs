//! Text rules: field limits and what full-text search reads.

/// Longest one-line summary.
pub const MAX_SHORT: usize = 300;
/// Longest free text (description, notes, root cause, workaround).
pub const MAX_LONG: usize = 32 * 1024;
/// Longest short identifier-like field (category, principal, group name).
pub const MAX_NAME: usize = 200;
/// Most CIs on one record.
pub const MAX_CIS: usize = 100;
pub use itsm_runtime::search::{fts5_query, query_words};
