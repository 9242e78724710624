//! Service desk rules in plain Rust: no gRPC, no SQL.

pub mod assignment;
pub mod catalog;
pub mod knowledge;
pub mod lifecycle;
pub mod notes;
pub mod report;
pub mod shifts;
pub mod templates;
pub mod tiers;
