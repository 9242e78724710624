//! Service delivery rules in plain Rust: no gRPC, no SQL.

pub mod allocation;
pub mod availability;
pub mod calendar;
pub mod clock;
pub mod continuity;
pub mod error_budget;
pub mod focus;
pub mod forecast;
pub mod money;
pub mod openslo;
