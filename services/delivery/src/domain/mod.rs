//! Service delivery rules in plain Rust: no gRPC, no SQL.

pub mod availability;
pub mod calendar;
pub mod clock;
pub mod openslo;
